//! The decoder crate's one error type. Bad *data* in a stream is never an error (it is an event
//! and a counter); `Error` is for bad configuration and misuse, and for the checked views
//! (a frame header, a space packet) that a caller asks to parse one buffer.

use std::fmt;

/// One problem found while validating a profile, named by its field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `rs.interleave`.
    pub path: String,
    /// What is wrong, with the bad value.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.path, self.message)
    }
}

/// Errors of the decoder crate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The profile text is not valid TOML for a profile (syntax, type or unknown key).
    #[error("profile {source_name}: {message}")]
    ProfileSyntax {
        /// Where the text came from (file name or built-in name).
        source_name: String,
        /// The parser's message, which names the key and position.
        message: String,
    },
    /// The profile parsed but is inconsistent; every problem is listed.
    #[error("profile {name:?} is invalid:\n{}", list(.problems))]
    InvalidProfile {
        /// Profile name.
        name: String,
        /// All problems found.
        problems: Vec<Problem>,
    },
    /// No built-in profile has this name.
    #[error("unknown profile {name:?} (built-in profiles: {known})")]
    UnknownProfile {
        /// Name asked for.
        name: String,
        /// Comma-separated built-in names.
        known: String,
    },
    /// A [`SyncParams`](crate::sync::SyncParams) field is out of range.
    #[error("sync parameter `{field}` must be {expected}, got {value}")]
    SyncParam {
        /// Field name in `SyncParams`.
        field: &'static str,
        /// The rejected value.
        value: u64,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// Reed-Solomon E is not 8 or 16.
    #[error("Reed-Solomon E must be 8 or 16, got {e}")]
    RsInvalidE {
        /// The value given.
        e: u8,
    },
    /// Reed-Solomon interleave depth outside 1..=8.
    #[error("Reed-Solomon interleave depth must be 1..=8, got {interleave}")]
    RsInvalidInterleave {
        /// The value given.
        interleave: u8,
    },
    /// Reed-Solomon virtual fill would leave no data symbol.
    #[error("Reed-Solomon virtual fill must be 0..={max} for E={e}, got {virtual_fill}")]
    RsInvalidVirtualFill {
        /// The value given.
        virtual_fill: u8,
        /// The largest allowed for this E.
        max: u8,
        /// The E it was checked against.
        e: u8,
    },
    /// The block handed to Reed-Solomon decode/encode has the wrong length.
    #[error("Reed-Solomon block must be {expected} bytes, got {got}")]
    RsWrongLength {
        /// I·(255 − virtual fill).
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A transfer frame is shorter than its header and trailer need (from
    /// [`FrameHeader::parse`](crate::frame::FrameHeader::parse); the decoder counts it as a
    /// rejected frame).
    #[error("frame of {got} bytes is shorter than the {need} bytes its layout needs")]
    FrameTooShort {
        /// Bytes the layout needs.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// The transfer frame version number does not match the profile.
    #[error("transfer frame version {found}, expected {expected}")]
    FrameVersion {
        /// Version found on the wire.
        found: u8,
        /// Version the profile expects.
        expected: u8,
    },
    /// A space packet buffer is shorter than a primary header (from
    /// [`SpacePacket::new_checked`](crate::packet::SpacePacket::new_checked)).
    #[error("space packet too short: need {need} bytes, got {got}")]
    PacketTooShort {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// A space packet buffer's length differs from the length in its primary header.
    #[error("space packet length mismatch: header says {header_says} bytes, buffer has {got}")]
    PacketLengthMismatch {
        /// Total packet length according to the primary header.
        header_says: usize,
        /// Buffer length.
        got: usize,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
