//! The decoder crate's one error type. Bad *data* is never an error (it is an event and a
//! counter); `Error` is for bad configuration and misuse.

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
#[derive(Debug, thiserror::Error)]
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
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
