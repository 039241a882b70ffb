//! The whole link-layer chain behind one sans-IO object.
//!
//! `push` bytes in, `poll` [`Event`]s out, read [`Stats`]. Stages, in order:
//! frame sync ([`crate::sync`]) → PN derandomization ([`crate::pn`]) → Reed-Solomon
//! ([`crate::rs`]) → TM/AOS header, FECF ([`crate::frame`]) → VC frame counters ([`crate::vc`])
//! → space packets ([`crate::packet`]). Headers are read only after Reed-Solomon. No stage ever
//! ends the stream: bad frames become [`Event::Rejected`] and a counter.
//!
//! Work is done lazily inside `poll`, one frame at a time, so the event sequence depends only on
//! the bytes pushed, never on how they were split.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::error::Error;
use crate::frame::{FrameHeader, FrameLayout};
use crate::packet::{
    DropReason, Packet, PacketAssembler, PacketEvent, PacketStream, PrimaryHeader, SequenceTracker,
};
use crate::pn::Derandomizer;
use crate::profile::Profile;
use crate::rs::{BlockOutcome, CodewordOutcome, MaskedCheck, ReedSolomon};
use crate::soft::{SoftEvent, SoftFormat, SoftFront};
use crate::stats::{Rejections, Stats, SyncCounters};
use crate::sync::{SyncEvent, SyncedFrame, Synchronizer};

/// Soft symbols processed per unit of work (bounds the latency of `poll`).
const SOFT_BUDGET: usize = 64 * 1024;
use crate::vc::{Continuity, VcTracker};

/// What the input bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InputFormat {
    /// Unaligned bit stream (hard decisions, MSB first) containing ASM-prefixed CADUs.
    Bits,
    /// Byte-aligned CADUs (ASM included).
    Cadu,
    /// Bare transfer frames of the profile's length after RS (no ASM, no RS parity, no PN).
    Frames,
    /// Concatenated space packets (no frames at all).
    Packets,
    /// Soft channel symbols before the inner code: one signed byte per channel bit, positive =
    /// 1, (I, Q) pairs. Needs a profile with an `[inner]` section.
    SoftI8,
    /// Hard channel bits before the inner code, packed MSB first. Needs an `[inner]` section.
    Hard,
}

impl InputFormat {
    /// The name as written in configuration and on the command line.
    pub fn label(self) -> &'static str {
        match self {
            Self::Bits => "bits",
            Self::Cadu => "cadu",
            Self::Frames => "frames",
            Self::Packets => "packets",
            Self::SoftI8 => "soft-i8",
            Self::Hard => "hard",
        }
    }

    /// Whether the input is channel symbols before the inner code.
    pub fn is_channel_symbols(self) -> bool {
        matches!(self, Self::SoftI8 | Self::Hard)
    }
}

impl std::str::FromStr for InputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bits" => Ok(Self::Bits),
            "cadu" => Ok(Self::Cadu),
            "frames" => Ok(Self::Frames),
            "packets" => Ok(Self::Packets),
            "soft-i8" => Ok(Self::SoftI8),
            "hard" => Ok(Self::Hard),
            other => Err(format!(
                "unknown input format {other:?} (expected bits, cadu, frames, packets, soft-i8 or hard)"
            )),
        }
    }
}

/// Which events the caller wants; everything is counted either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Emit [`Event::RawCadu`] with each synchronized CADU as received (before PN and RS).
    pub raw_cadus: bool,
    /// Emit [`Event::Frame`] for good non-fill frames.
    pub frames: bool,
    /// Also emit fill frames as [`Event::Frame`].
    pub fill_frames: bool,
    /// Reassemble (and count) space packets and emit [`Event::Packet`]; false skips the
    /// packet layer entirely.
    pub packets: bool,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        Self {
            raw_cadus: false,
            frames: true,
            fill_frames: false,
            packets: true,
        }
    }
}

/// A CADU and its decoding, known beforehand ([`Decoder::push_decoded`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedCadu {
    /// The CADU as received: marker and frame, polarity corrected (an [`Event::RawCadu`]).
    pub raw: Bytes,
    /// The frame after Reed-Solomon, parity removed ([`Frame::data`]).
    pub frame: Bytes,
    /// The Reed-Solomon outcome ([`Frame::rs`]; `None` on a link without RS).
    pub rs: Option<BlockOutcome>,
}

/// Known decodings held for frames the synchronizer has not reached yet.
const MAX_KNOWN: usize = 1024;

/// [`Event::RawCadu`]s carved from one allocation.
const RAW_PER_POOL: usize = 64;

/// How a frame was synchronized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameSync {
    /// Bit position of the ASM in the input stream.
    pub stream_bit: u64,
    /// Frame arrived inverted and was re-inverted.
    pub inverted: bool,
    /// Slip applied at this frame, in bits.
    pub slip_bits: i8,
    /// Emitted while coasting without an ASM.
    pub flywheel: bool,
    /// ASM bit errors.
    pub asm_bit_errors: u8,
}

/// A good transfer frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Parsed header and part ranges (indexes into `data`).
    pub header: FrameHeader,
    /// Frame bytes after Reed-Solomon (parity removed).
    pub data: Bytes,
    /// Reed-Solomon outcome, if the link is RS-coded.
    pub rs: Option<BlockOutcome>,
    /// Synchronization details, if the input was a bit stream or CADUs.
    pub sync: Option<FrameSync>,
    /// Continuity on its virtual channel.
    pub continuity: Continuity,
    /// Fill (idle) frame.
    pub fill: bool,
}

/// Why a frame was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// A Reed-Solomon codeword was beyond correction.
    RsUncorrectable,
    /// FECF mismatch.
    CrcFailed,
    /// Wrong transfer frame version.
    BadVersion,
    /// Spacecraft id not in the profile.
    UnexpectedScid(u16),
    /// Too short for its layout.
    TooShort,
    /// Virtual channel not in the profile's `frame.vcids`.
    UnknownVcid(u8),
}

impl RejectReason {
    /// Stable snake_case label (for metrics and JSON).
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::RsUncorrectable => "rs_uncorrectable",
            RejectReason::CrcFailed => "crc_failed",
            RejectReason::BadVersion => "bad_version",
            RejectReason::UnexpectedScid(_) => "unexpected_scid",
            RejectReason::TooShort => "too_short",
            RejectReason::UnknownVcid(_) => "unknown_vcid",
        }
    }
}

/// Stable snake_case label of a packet drop reason.
pub fn drop_label(r: DropReason) -> &'static str {
    match r {
        DropReason::FrameGap => "frame_gap",
        DropReason::HeaderMismatch => "header_mismatch",
        DropReason::BadPointer => "bad_pointer",
        DropReason::TooLong => "too_long",
        DropReason::BadVersion => "bad_version",
        DropReason::EndOfStream => "end_of_stream",
    }
}

/// Something that happened on the link.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Synchronization acquired.
    Locked {
        /// Bit position of the first ASM.
        stream_bit: u64,
        /// Polarity.
        inverted: bool,
    },
    /// Synchronization lost (flywheel exhausted).
    LockLost {
        /// Bit position where it was lost.
        stream_bit: u64,
    },
    /// Polarity flipped while locked.
    PolarityChanged {
        /// Where.
        stream_bit: u64,
        /// New polarity.
        inverted: bool,
    },
    /// Bits skipped while searching for sync.
    Discarded {
        /// Where the run started.
        stream_bit: u64,
        /// Length of the run.
        bits: u64,
    },
    /// Incomplete frame at end of stream.
    Truncated {
        /// Where it started.
        stream_bit: u64,
        /// Its length.
        bits: u64,
    },
    /// A synchronized CADU as received: ASM + frame, polarity corrected, before PN and RS.
    RawCadu {
        /// Bit position of the ASM.
        stream_bit: u64,
        /// The bytes.
        data: Bytes,
    },
    /// A frame that was rejected (it is in exactly one rejection counter).
    Rejected {
        /// Bit position of its ASM, if synchronized.
        stream_bit: Option<u64>,
        /// Why.
        reason: RejectReason,
    },
    /// A good frame.
    Frame(Frame),
    /// Frames missing on a virtual channel.
    Gap {
        /// Virtual channel.
        vcid: u8,
        /// Frames missing before `vc_count`.
        missing: u32,
        /// Count of the frame after the gap.
        vc_count: u32,
    },
    /// The soft-symbol front end locked its phase (or the 80k marker).
    PhaseLocked {
        /// Soft-bit position in the input.
        soft_bit: u64,
        /// The phase case (before the 180° half that frame sync resolves).
        case: crate::soft::PhaseCase,
    },
    /// The soft-symbol front end lost its phase lock (phase jump, slip, loss of signal) and
    /// searches again.
    PhaseLost {
        /// Soft-bit position in the input.
        soft_bit: u64,
    },
    /// A complete space packet.
    Packet {
        /// Virtual channel it came on (None for packet-stream input).
        vcid: Option<u8>,
        /// The packet.
        packet: Packet,
    },
    /// A complete space packet of a virtual channel, when the decoder does not keep packet
    /// bytes ([`Decoder::without_packet_data`]): instead of [`Event::Packet`].
    PacketCounted {
        /// Virtual channel it came on.
        vcid: u8,
        /// Its primary header.
        header: PrimaryHeader,
        /// Its length, primary header included.
        len: usize,
    },
    /// A partial packet dropped (never merged with later bytes).
    PacketDropped {
        /// Virtual channel.
        vcid: Option<u8>,
        /// APID if its header had been read.
        apid: Option<u16>,
        /// Bytes dropped.
        bytes: usize,
        /// Why.
        reason: DropReason,
    },
    /// A packet's sequence count skipped.
    SequenceGap {
        /// APID.
        apid: u16,
        /// Packets missing.
        missing: u16,
    },
}

const DROP_REASONS: [DropReason; 6] = [
    DropReason::FrameGap,
    DropReason::HeaderMismatch,
    DropReason::BadPointer,
    DropReason::TooLong,
    DropReason::BadVersion,
    DropReason::EndOfStream,
];

fn drop_index(r: DropReason) -> usize {
    DROP_REASONS.iter().position(|d| *d == r).unwrap_or(0)
}

enum Front {
    Sync(Box<Synchronizer>),
    Soft {
        soft: Box<SoftFront>,
        sync: Box<Synchronizer>,
        /// Decoded bits (0/1 per byte) not yet packed into whole bytes.
        bits: Vec<u8>,
        sync_finished: bool,
    },
    Frames {
        buf: BytesMut,
        len: usize,
        pos: u64,
    },
    Packets(PacketStream),
}

fn invalid(profile: &Profile, path: &str, e: &dyn std::fmt::Display) -> Error {
    Error::InvalidProfile {
        name: profile.name.clone(),
        problems: vec![crate::error::Problem {
            path: path.into(),
            message: e.to_string(),
        }],
    }
}

/// A frame after Reed-Solomon and its outcome, known beforehand ([`DecodedCadu`] less the raw
/// CADU).
type Known = (Bytes, Option<BlockOutcome>);

/// A synchronized CADU's frame: the bytes after the marker, or its decoding known beforehand
/// (a record found clean as received goes to [`Decoder::on_clean_record`] instead).
enum Body {
    Data(BytesMut),
    Known(Bytes, Option<BlockOutcome>),
}

/// What is known of a record's decoding beforehand ([`Decoder::push_record_decoded`],
/// [`Decoder::push_record_checked`]).
enum Hint {
    Decoded(Known),
    /// Checked: Reed-Solomon-clean as received (true), or not (false: decoded, not checked
    /// again).
    Checked(bool),
}

/// The Reed-Solomon check of a link's CADUs as they are received, still randomized
/// ([`ReedSolomon::is_clean_masked`]): what [`Decoder::push_record`] checks first, on its own,
/// so that records can be checked on another thread than their decoder's and handed to it by
/// [`Decoder::push_record_checked`].
#[derive(Debug)]
pub struct RecordCheck {
    asm: usize,
    rs: ReedSolomon,
    check: MaskedCheck,
}

impl RecordCheck {
    /// The check of `profile`'s CADUs; `None` on a link without Reed-Solomon (nothing to
    /// check).
    pub fn new(profile: &Profile) -> Result<Option<RecordCheck>, Error> {
        let Some(p) = profile.rs_params() else {
            return Ok(None);
        };
        let rs = ReedSolomon::new(p).map_err(|e| invalid(profile, "rs", &e))?;
        let check = pn_check(profile, &rs)?;
        Ok(Some(RecordCheck {
            asm: profile.asm_len(),
            rs,
            check,
        }))
    }

    /// Whether the CADU `raw` (marker first) is a clean codeword as received: false for any
    /// error, and for a CADU of the wrong length.
    pub fn is_clean(&self, raw: &[u8]) -> bool {
        raw.get(self.asm..)
            .is_some_and(|coded| self.rs.is_clean_masked(coded, &self.check))
    }
}

/// The check of `profile`'s Reed-Solomon blocks as received: the syndromes of the PN sequence
/// over a block (zero on a link without PN).
fn pn_check(profile: &Profile, rs: &ReedSolomon) -> Result<MaskedCheck, Error> {
    let mut mask = vec![0u8; rs.block_len()];
    if profile.cadu.pn {
        Derandomizer::new(profile.coded_frame_len()).apply(&mut mask);
    }
    rs.masked_check(&mask)
        .map_err(|e| invalid(profile, "rs", &e))
}

/// The decoder: one per input stream.
pub struct Decoder {
    profile: Profile,
    options: DecoderOptions,
    front: Front,
    asm_bytes: Vec<u8>,
    pn: Option<Derandomizer>,
    rs: Option<ReedSolomon>,
    /// The Reed-Solomon check of a record as received, randomized (with `rs`).
    clean_check: Option<MaskedCheck>,
    /// Frames carry their bytes ([`Decoder::without_frame_data`]).
    frame_data: bool,
    /// Where the head of a clean record's frame, not kept, is derandomized to read its
    /// header (reused from frame to frame).
    clean_head: Vec<u8>,
    layout: FrameLayout,
    fecf: crc::Crc<u16>,
    packet_vc: [bool; 64],
    fill_vcid: Option<u8>,
    vcs: VcTracker,
    assemblers: Vec<Option<PacketAssembler>>,
    /// Packets of virtual channels are copied out ([`Event::Packet`]) or only counted
    /// ([`Event::PacketCounted`]).
    packet_data: bool,
    sequences: SequenceTracker,
    scratch: Vec<PacketEvent>,
    events: VecDeque<Event>,
    /// CADUs pushed with their decoding known ([`Decoder::push_decoded`]), by the stream bit
    /// of their marker.
    known: VecDeque<(u64, DecodedCadu)>,
    /// Where [`Event::RawCadu`]s are carved from.
    raw_pool: BytesMut,
    finished: bool,
    flushed: bool,
    // counters kept here (others live in the stages and are gathered by `stats`)
    bytes_in: u64,
    cadus: u64,
    rs_counts: crate::stats::RsCounters,
    crc_ok: u64,
    good: u64,
    fill: u64,
    rejected: Rejections,
    dropped: [u64; 6],
    dropped_bytes: u64,
    polarity_changes: u64,
    frames_truncated_bits: u64,
    ignored_after_finish: u64,
    /// Polarity of the last synchronized frame (the 180° half of the phase case).
    last_inverted: bool,
}

impl Decoder {
    /// This decoder, not keeping the bytes of the space packets it reassembles from frames:
    /// they are checked and counted exactly as before (every counter, drop and sequence gap
    /// the same) and each complete one is an [`Event::PacketCounted`] (its header and length)
    /// instead of an [`Event::Packet`], without copying it. For a caller that indexes or
    /// counts packets and has their frames (the merge's final decode). Packets of a
    /// packet-stream input are kept as always. Meant for a new decoder: a virtual channel
    /// whose packets began before the call keeps their bytes.
    #[must_use]
    pub fn without_packet_data(mut self) -> Self {
        self.packet_data = false;
        self
    }

    /// This decoder, not copying out the frames of records ([`Decoder::push_record`]) that
    /// arrive Reed-Solomon-clean: such a frame is checked as received (still randomized, see
    /// [`ReedSolomon::is_clean_masked`]), its header read from a derandomized copy of its
    /// head, and its packets, when it reassembles them, read from the CADU through the PN
    /// sequence ([`PacketAssembler::push_masked_zone`]: only the bytes read are
    /// derandomized). It is counted and tracked, and its packets reassembled, exactly as
    /// before; its [`Event::Frame`] has an empty `data` (never empty otherwise). Its bytes are
    /// those of its CADU after the marker, derandomized, less the parity. For a caller that
    /// needs a frame's header, outcome and packets, and has its CADU (a merge's reader of a
    /// station copy, and its final decode). Frames keep their bytes on a link with a FECF
    /// (checked over the whole frame) or without Reed-Solomon, and when they were corrected
    /// or synchronized from pushed bytes.
    #[must_use]
    pub fn without_frame_data(mut self) -> Self {
        self.frame_data = false;
        self
    }

    /// A decoder for `profile`'s link, reading `format`.
    pub fn new(
        profile: &Profile,
        format: InputFormat,
        options: DecoderOptions,
    ) -> Result<Self, Error> {
        profile.validate()?;
        let layout = profile.frame_layout();
        let front = match format {
            InputFormat::Bits | InputFormat::Cadu => {
                let params = profile.sync_params(format == InputFormat::Cadu);
                let sync = Synchronizer::new(params).map_err(|e| invalid(profile, "sync", &e))?;
                Front::Sync(Box::new(sync))
            }
            InputFormat::Frames => Front::Frames {
                buf: BytesMut::new(),
                len: layout.frame_len,
                pos: 0,
            },
            InputFormat::Packets => Front::Packets(PacketStream::new(profile.packets.max_len)),
            InputFormat::SoftI8 | InputFormat::Hard => {
                let Some(inner) = &profile.inner else {
                    return Err(invalid(
                        profile,
                        "inner",
                        &format!(
                            "input format {} needs the profile's [inner] section (the channel code)",
                            format.label()
                        ),
                    ));
                };
                let params = profile.sync_params(false);
                let sync = Synchronizer::new(params).map_err(|e| invalid(profile, "sync", &e))?;
                let sf = if format == InputFormat::Hard {
                    SoftFormat::Hard
                } else {
                    SoftFormat::SoftI8
                };
                Front::Soft {
                    soft: Box::new(SoftFront::new(inner, sf)),
                    sync: Box::new(sync),
                    bits: Vec::new(),
                    sync_finished: false,
                }
            }
        };
        let coded = matches!(
            format,
            InputFormat::Bits | InputFormat::Cadu | InputFormat::SoftI8 | InputFormat::Hard
        );
        let rs = match (coded, profile.rs_params()) {
            (true, Some(p)) => Some(ReedSolomon::new(p).map_err(|e| invalid(profile, "rs", &e))?),
            _ => None,
        };
        let pn = (coded && profile.cadu.pn).then(|| Derandomizer::new(profile.coded_frame_len()));
        // A record is checked as received (what a RecordCheck does, with this decoder's RS).
        let clean_check = match &rs {
            Some(rs) => Some(pn_check(profile, rs)?),
            None => None,
        };
        let fill_vcid = profile.frame.fill_vcid;
        let mut packet_vc = [false; 64];
        for (v, slot) in (0u8..).zip(packet_vc.iter_mut()) {
            *slot = if profile.packets.vcids.is_empty() {
                Some(v) != fill_vcid
            } else {
                profile.packets.vcids.contains(&v)
            };
        }
        let (asm, bits) = profile.asm().unwrap_or((0x1ACF_FC1D, 32));
        let asm_bytes = asm
            .to_be_bytes()
            .get(8 - usize::from(bits / 8).min(8)..)
            .unwrap_or_default()
            .to_vec();
        Ok(Self {
            profile: profile.clone(),
            options,
            front,
            asm_bytes,
            pn,
            rs,
            clean_check,
            frame_data: true,
            clean_head: Vec::new(),
            layout,
            fecf: crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740),
            packet_vc,
            fill_vcid,
            vcs: VcTracker::default(),
            assemblers: (0..64).map(|_| None).collect(),
            packet_data: true,
            sequences: SequenceTracker::default(),
            scratch: Vec::new(),
            events: VecDeque::new(),
            known: VecDeque::new(),
            raw_pool: BytesMut::new(),
            finished: false,
            flushed: false,
            bytes_in: 0,
            cadus: 0,
            rs_counts: Default::default(),
            crc_ok: 0,
            good: 0,
            fill: 0,
            rejected: Rejections::default(),
            dropped: [0; 6],
            dropped_bytes: 0,
            polarity_changes: 0,
            frames_truncated_bits: 0,
            ignored_after_finish: 0,
            last_inverted: false,
        })
    }

    /// Soft-symbol input only: whether the 80k deinterleaver is flushed with erasures at the end
    /// of the stream (default true; frames still inside the interleaver come out). Streaming
    /// figures are those without the flush.
    pub fn set_flush_interleaver(&mut self, on: bool) {
        if let Front::Soft { soft, .. } = &mut self.front {
            soft.set_flush_interleaver(on);
        }
    }

    /// Soft-symbol input only: restricts the Viterbi decoder to its portable kernel (the output
    /// is bit-identical; for tests and benchmarks).
    pub fn force_portable_viterbi(&mut self) {
        if let Front::Soft { soft, .. } = &mut self.front {
            soft.force_portable();
        }
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The options it was built with.
    pub fn options(&self) -> DecoderOptions {
        self.options
    }

    /// Feeds input bytes. Nothing is decoded until `poll`.
    pub fn push(&mut self, data: &[u8]) {
        if self.finished {
            // The stream has ended; later bytes would never be flushed. Count and ignore them.
            self.ignored_after_finish += data.len() as u64;
            return;
        }
        self.bytes_in += data.len() as u64;
        match &mut self.front {
            Front::Sync(s) => s.push(data),
            Front::Soft { soft, .. } => soft.push(data),
            Front::Frames { buf, .. } => buf.extend_from_slice(data),
            Front::Packets(p) => {
                let mut out = std::mem::take(&mut self.scratch);
                p.push(data, &mut out);
                self.take_packet_events(None, &mut out);
                self.scratch = out;
            }
        }
    }

    /// Feeds one CADU whose decoding is already known, e.g. the copy of a frame another decoder
    /// of the same profile decoded (a merge re-decodes the frames it chose). The result is what
    /// `push(&cadu.raw)` gives, events and counters alike, except that when the synchronizer
    /// finds this CADU (its marker where it was pushed, the same bytes after it) the known
    /// frame and Reed-Solomon outcome stand in for derandomizing and decoding it again. Any
    /// other frame (the synchronizer slipped, a CADU that does not match) is decoded as usual.
    /// Only for byte-aligned CADU input; with any other input format it is `push`.
    pub fn push_decoded(&mut self, cadu: DecodedCadu) {
        let at = self.bytes_in * 8;
        self.push(&cadu.raw);
        if self.finished || !matches!(self.front, Front::Sync(_)) {
            return;
        }
        // Bounded: hints the synchronizer never reached (it has not locked yet) are dropped,
        // and those frames simply decoded.
        if self.known.len() >= MAX_KNOWN {
            self.known.pop_front();
        }
        self.known.push_back((at, cadu));
    }

    /// The known decoding of the frame synchronized at `stream_bit` with `data` (after the
    /// marker), if [`Decoder::push_decoded`] gave one.
    fn take_known(&mut self, stream_bit: u64, data: &[u8]) -> Option<DecodedCadu> {
        while self.known.front().is_some_and(|(b, _)| *b < stream_bit) {
            self.known.pop_front();
        }
        let (b, k) = self.known.front()?;
        let asm = self.asm_bytes.len();
        let data_len = self.rs.as_ref().map_or(data.len(), ReedSolomon::data_len);
        let same = *b == stream_bit
            && k.raw.get(asm..) == Some(data)
            && k.raw.get(..asm) == Some(&self.asm_bytes[..])
            && k.frame.len() == data_len
            && k.rs.is_some() == self.rs.is_some();
        if !same {
            return None;
        }
        self.known.pop_front().map(|(_, k)| k)
    }

    /// Feeds one whole CADU, marker first, as it stands in the stream: a record of an
    /// archive's `cadus.raw` (CADUs back to back, each whole and polarity corrected, as the
    /// synchronizer wrote them). It is decoded at once, with no copy of it kept for
    /// [`Event::RawCadu`] (that event carries `raw` itself), and counted as a frame in lock
    /// ([`Synchronizer::take_record`]: the exact marker where the next one is expected; the
    /// first record locks without a check). Given back untouched when it is not such a record
    /// or the synchronizer holds pushed bytes (it is behind them): `push` it then, and the rest
    /// of the stream, which goes on in lock from the last record taken. Byte-aligned CADU and
    /// bit inputs only (any other front gives it back). After [`Decoder::finish`] it is counted
    /// as ignored, as `push` does. On a Reed-Solomon link a record is first checked as it is,
    /// still randomized ([`ReedSolomon::is_clean_masked`]): a clean one (most) is not copied
    /// whole, derandomized and decoded, only its frame derandomized into a copy (and not even
    /// that, on a link without a FECF, by a decoder [`Decoder::without_frame_data`]).
    pub fn push_record(&mut self, raw: Bytes) -> Result<(), Bytes> {
        match self.record(raw, None) {
            Ok(()) => Ok(()),
            Err((raw, _)) => Err(raw),
        }
    }

    /// [`Decoder::push_record`] of a CADU already checked as received, by a [`RecordCheck`] of
    /// the same profile on another thread, or by another decoder (a frame without its bytes
    /// from [`Decoder::without_frame_data`] was clean): `clean`, its frame is derandomized,
    /// not checked again; not clean, it is decoded without checking it again first. On a link
    /// without Reed-Solomon it is `push_record`. Given back untouched when the record cannot be
    /// taken.
    pub fn push_record_checked(&mut self, raw: Bytes, clean: bool) -> Result<(), Bytes> {
        match self.record(raw, Some(Hint::Checked(clean))) {
            Ok(()) => Ok(()),
            Err((raw, _)) => Err(raw),
        }
    }

    /// [`Decoder::push_record`] of a CADU whose decoding is already known (as
    /// [`Decoder::push_decoded`], without comparing bytes: the record is where the stream
    /// stands). Given back untouched when the record cannot be taken.
    pub fn push_record_decoded(&mut self, cadu: DecodedCadu) -> Result<(), DecodedCadu> {
        let DecodedCadu { raw, frame, rs } = cadu;
        match self.record(raw, Some(Hint::Decoded((frame, rs)))) {
            Ok(()) => Ok(()),
            Err((raw, known)) => {
                let (frame, rs) = match known {
                    Some(Hint::Decoded(k)) => k,
                    _ => Known::default(),
                };
                Err(DecodedCadu { raw, frame, rs })
            }
        }
    }

    fn record(&mut self, raw: Bytes, known: Option<Hint>) -> Result<(), (Bytes, Option<Hint>)> {
        if self.finished {
            self.ignored_after_finish += raw.len() as u64;
            return Ok(());
        }
        let Front::Sync(s) = &mut self.front else {
            return Err((raw, known));
        };
        let Some((stream_bit, locks)) = s.take_record(&raw) else {
            return Err((raw, known));
        };
        self.bytes_in += raw.len() as u64;
        if locks {
            self.events.push_back(Event::Locked {
                stream_bit,
                inverted: false,
            });
        }
        let sync = FrameSync {
            stream_bit,
            inverted: false,
            slip_bits: 0,
            flywheel: false,
            asm_bit_errors: 0,
        };
        let asm = self.asm_bytes.len();
        let clean = match (&known, &self.rs, &self.clean_check) {
            (Some(Hint::Checked(true)), Some(_), _) => true,
            (None, Some(rs), Some(check)) => {
                rs.is_clean_masked(raw.get(asm..).unwrap_or_default(), check)
            }
            _ => false,
        };
        if clean {
            self.on_clean_record(sync, raw);
            return Ok(());
        }
        let body = match known {
            Some(Hint::Decoded((frame, rs))) => Body::Known(frame, rs),
            _ => {
                let data = raw.get(asm..).unwrap_or_default();
                let len = data.len();
                if self.raw_pool.capacity() < len {
                    self.raw_pool.reserve(len * RAW_PER_POOL);
                }
                self.raw_pool.extend_from_slice(data);
                Body::Data(self.raw_pool.split_to(len))
            }
        };
        let raw = self.options.raw_cadus.then_some(raw);
        self.on_cadu(sync, raw, body);
        Ok(())
    }

    /// Marks the end of the input; `poll` then drains everything, including partial packets.
    pub fn finish(&mut self) {
        self.finished = true;
        match &mut self.front {
            Front::Sync(s) => s.finish(),
            Front::Soft { soft, .. } => soft.finish(),
            _ => {}
        }
    }

    /// The next event, or `None` when more input (or `finish`) is needed.
    pub fn poll(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Some(e);
            }
            if !self.step() {
                return None;
            }
        }
    }

    /// Advances by one unit of work; false when nothing more can be done now.
    fn step(&mut self) -> bool {
        match &mut self.front {
            Front::Sync(s) => match s.poll() {
                Some(ev) => self.on_sync_event(ev),
                None => self.flush_at_end(),
            },
            Front::Soft {
                soft,
                sync,
                bits,
                sync_finished,
            } => {
                if let Some(ev) = sync.poll() {
                    return self.on_sync_event(ev);
                }
                if let Some(ev) = soft.poll_event() {
                    let e = match ev {
                        SoftEvent::PhaseLocked { soft_bit, case, .. } => {
                            Event::PhaseLocked { soft_bit, case }
                        }
                        SoftEvent::PhaseLost { soft_bit } => Event::PhaseLost { soft_bit },
                    };
                    self.events.push_back(e);
                    return true;
                }
                if soft.process(SOFT_BUDGET, bits) {
                    let whole = bits.len() / 8 * 8;
                    let packed = crate::conv::pack_bits(bits.get(..whole).unwrap_or_default());
                    bits.drain(..whole);
                    sync.push(&packed);
                    return true;
                }
                if soft.is_done() && !*sync_finished {
                    *sync_finished = true;
                    self.frames_truncated_bits += bits.len() as u64;
                    bits.clear();
                    sync.finish();
                    return true;
                }
                self.flush_at_end()
            }
            Front::Frames { buf, len, pos } => {
                if buf.len() >= *len && *len > 0 {
                    let data = buf.split_to(*len);
                    let at = *pos;
                    *pos += (*len as u64) * 8;
                    self.cadus += 1;
                    self.on_decoded(data.freeze(), None, None, Some(at));
                    true
                } else if self.finished && !buf.is_empty() {
                    let bits = buf.len() as u64 * 8;
                    let stream_bit = *pos;
                    *pos += bits;
                    buf.clear();
                    self.frames_truncated_bits += bits;
                    self.events.push_back(Event::Truncated { stream_bit, bits });
                    true
                } else {
                    self.flush_at_end()
                }
            }
            Front::Packets(_) => self.flush_at_end(),
        }
    }

    fn on_sync_event(&mut self, ev: SyncEvent) -> bool {
        let other = match ev {
            SyncEvent::Frame(f) => {
                self.on_synced(f);
                return true;
            }
            other => other,
        };
        let e = match other {
            SyncEvent::Locked {
                stream_bit,
                inverted,
            } => Event::Locked {
                stream_bit,
                inverted,
            },
            SyncEvent::Lost { stream_bit } => Event::LockLost { stream_bit },
            SyncEvent::PolarityChanged {
                stream_bit,
                inverted,
            } => {
                self.polarity_changes += 1;
                Event::PolarityChanged {
                    stream_bit,
                    inverted,
                }
            }
            SyncEvent::Discarded { stream_bit, bits } => Event::Discarded { stream_bit, bits },
            SyncEvent::Truncated { stream_bit, bits } => Event::Truncated { stream_bit, bits },
            // Handled by the arm above.
            SyncEvent::Frame(_) => return true,
        };
        self.events.push_back(e);
        true
    }

    /// At end of stream, drops partial packets once.
    fn flush_at_end(&mut self) -> bool {
        if !self.finished || self.flushed {
            return false;
        }
        self.flushed = true;
        let mut out = std::mem::take(&mut self.scratch);
        if let Front::Packets(p) = &mut self.front {
            p.flush(&mut out);
            self.take_packet_events(None, &mut out);
        }
        for v in 0u8..64 {
            if let Some(Some(a)) = self.assemblers.get_mut(usize::from(v)) {
                a.flush(&mut out);
                self.take_packet_events(Some(v), &mut out);
            }
        }
        self.scratch = out;
        !self.events.is_empty()
    }

    fn on_synced(&mut self, f: SyncedFrame) {
        let sync = FrameSync {
            stream_bit: f.stream_bit,
            inverted: f.inverted,
            slip_bits: f.slip_bits,
            flywheel: f.flywheel,
            asm_bit_errors: f.asm_bit_errors,
        };
        let known = if self.known.is_empty() {
            None
        } else {
            self.take_known(f.stream_bit, &f.data)
        };
        let raw = match (&known, self.options.raw_cadus) {
            (_, false) => None,
            (Some(k), true) => Some(k.raw.clone()),
            (None, true) => Some(self.carve_raw(&f.data)),
        };
        let body = match known {
            Some(k) => Body::Known(k.frame, k.rs),
            None => Body::Data(f.data),
        };
        self.on_cadu(sync, raw, body);
    }

    /// `asm + data` as one [`Event::RawCadu`], carved from a block of CADUs (one allocation
    /// per `RAW_PER_POOL` CADUs).
    fn carve_raw(&mut self, data: &[u8]) -> Bytes {
        let len = self.asm_bytes.len() + data.len();
        if self.raw_pool.capacity() < len {
            self.raw_pool.reserve(len * RAW_PER_POOL);
        }
        self.raw_pool.extend_from_slice(&self.asm_bytes);
        self.raw_pool.extend_from_slice(data);
        self.raw_pool.split_to(len).freeze()
    }

    /// One synchronized CADU: its raw bytes (when asked for), then its frame, derandomized
    /// and decoded here or known beforehand.
    fn on_cadu(&mut self, sync: FrameSync, raw: Option<Bytes>, body: Body) {
        self.cadus += 1;
        self.last_inverted = sync.inverted;
        let stream_bit = sync.stream_bit;
        if let Some(data) = raw {
            self.events.push_back(Event::RawCadu { stream_bit, data });
        }
        let mut data = match body {
            Body::Known(frame, rs) => {
                // Derandomized and decoded before: the same bytes, the same outcome.
                if let Some(o) = &rs {
                    if !self.count_rs(o, stream_bit) {
                        return;
                    }
                }
                return self.on_decoded(frame, rs, Some(sync), Some(stream_bit));
            }
            Body::Data(data) => data,
        };
        if let Some(pn) = &self.pn {
            pn.apply(&mut data);
        }
        let mut outcome = None;
        if let Some(rs) = &self.rs {
            let o = match rs.decode(&mut data) {
                Ok(o) => o,
                Err(_) => {
                    // Wrong block length: cannot happen for a validated profile; count it.
                    self.reject(Some(stream_bit), RejectReason::TooShort);
                    return;
                }
            };
            let data_len = rs.data_len();
            if !self.count_rs(&o, stream_bit) {
                return;
            }
            data.truncate(data_len);
            outcome = Some(o);
        }
        self.on_decoded(data.freeze(), outcome, Some(sync), Some(stream_bit));
    }

    /// A record found (or known) Reed-Solomon-clean as received: counted as
    /// [`Decoder::on_cadu`] counts a CADU, with its [`Event::RawCadu`] when asked for, then its
    /// frame read out of it ([`Decoder::on_clean`]) without taking a second handle on its
    /// bytes (they may be shared with other threads: each handle is an atomic count).
    fn on_clean_record(&mut self, sync: FrameSync, raw: Bytes) {
        self.cadus += 1;
        self.last_inverted = sync.inverted;
        if !self.options.raw_cadus {
            return self.on_clean(&raw, sync);
        }
        let at = self.events.len();
        self.events.push_back(Event::RawCadu {
            stream_bit: sync.stream_bit,
            data: raw,
        });
        // Lent back by its event while the frame is read (what that adds comes after it:
        // nothing pops events but `poll`).
        let raw = match self.events.get_mut(at) {
            Some(Event::RawCadu { data, .. }) => std::mem::take(data),
            // (Pushed just above: never.)
            _ => Bytes::new(),
        };
        self.on_clean(&raw, sync);
        if let Some(Event::RawCadu { data, .. }) = self.events.get_mut(at) {
            *data = raw;
        }
    }

    /// The frame of a record found (or known) Reed-Solomon-clean as received: `raw` is the
    /// CADU, marker first, its frame randomized, parity included. The frame is a derandomized
    /// copy of the start of what follows the marker (no copy at all on a link without PN),
    /// or, when the decoder does not keep frames' bytes and no FECF needs them, it is not
    /// copied: its head is derandomized into a buffer reused for every such frame, to read
    /// the header, and its packets are read through the PN sequence
    /// ([`PacketAssembler::push_masked_zone`]).
    fn on_clean(&mut self, raw: &Bytes, sync: FrameSync) {
        let stream_bit = sync.stream_bit;
        let asm = self.asm_bytes.len();
        let coded = raw.get(asm..).unwrap_or_default();
        let Some(rs) = &self.rs else {
            return self.reject(Some(stream_bit), RejectReason::TooShort);
        };
        let (outcome, data_len) = (rs.clean_outcome(), rs.data_len());
        if !self.count_rs(&outcome, stream_bit) {
            return;
        }
        if !self.frame_data && !self.layout.fecf {
            let head_len = self.layout.head_len().min(data_len);
            let (Some(frame), Some(src)) = (coded.get(..data_len), coded.get(..head_len)) else {
                return self.reject(Some(stream_bit), RejectReason::TooShort);
            };
            let mut head = std::mem::take(&mut self.clean_head);
            head.clear();
            head.extend_from_slice(src);
            // Out of `self` while its pattern is lent to `on_frame` (it is put back below).
            let pn = self.pn.take();
            if let Some(pn) = &pn {
                pn.apply(&mut head);
            }
            match FrameHeader::parse_head(&self.layout, &head, data_len) {
                Ok(header) => {
                    let mask = pn.as_ref().map(Derandomizer::pattern).unwrap_or_default();
                    self.on_frame(
                        header,
                        Bytes::new(),
                        Some((frame, mask)),
                        Some(outcome),
                        Some(sync),
                        Some(stream_bit),
                    );
                }
                Err(e) => self.reject_header(Some(stream_bit), &e),
            }
            self.pn = pn;
            self.clean_head = head;
            return;
        }
        let data = match &self.pn {
            Some(pn) => {
                let Some(src) = coded.get(..data_len) else {
                    return self.reject(Some(stream_bit), RejectReason::TooShort);
                };
                if self.raw_pool.capacity() < data_len {
                    self.raw_pool.reserve(data_len * RAW_PER_POOL);
                }
                self.raw_pool.extend_from_slice(src);
                let mut data = self.raw_pool.split_to(data_len);
                pn.apply(&mut data);
                data.freeze()
            }
            None => {
                let end = (asm + data_len).min(raw.len());
                raw.slice(asm.min(end)..end)
            }
        };
        self.on_decoded(data, Some(outcome), Some(sync), Some(stream_bit));
    }

    /// Counts a frame's Reed-Solomon outcome; false (the frame rejected) when a codeword was
    /// uncorrectable.
    fn count_rs(&mut self, o: &BlockOutcome, stream_bit: u64) -> bool {
        let mut frame_has = (false, false);
        for c in o.codewords() {
            match c {
                CodewordOutcome::Clean => self.rs_counts.clean += 1,
                CodewordOutcome::Corrected { symbols } => {
                    self.rs_counts.corrected += 1;
                    self.rs_counts.corrected_symbols += u64::from(*symbols);
                    frame_has.0 = true;
                }
                CodewordOutcome::Uncorrectable => {
                    self.rs_counts.uncorrectable += 1;
                    frame_has.1 = true;
                }
            }
        }
        // Under cfg(fuzzing) frames go on despite RS so the fuzzer reaches the later stages.
        if frame_has.1 && !cfg!(fuzzing) {
            self.rs_counts.frames_uncorrectable += 1;
            self.reject(Some(stream_bit), RejectReason::RsUncorrectable);
            return false;
        }
        if frame_has.0 {
            self.rs_counts.frames_corrected += 1;
        } else {
            self.rs_counts.frames_clean += 1;
        }
        true
    }

    fn reject(&mut self, stream_bit: Option<u64>, reason: RejectReason) {
        let r = &mut self.rejected;
        match reason {
            RejectReason::RsUncorrectable => r.rs_uncorrectable += 1,
            RejectReason::CrcFailed => r.crc_failed += 1,
            RejectReason::BadVersion => r.bad_version += 1,
            RejectReason::UnexpectedScid(_) => r.unexpected_scid += 1,
            RejectReason::TooShort => r.too_short += 1,
            RejectReason::UnknownVcid(_) => r.unknown_vcid += 1,
        }
        self.events
            .push_back(Event::Rejected { stream_bit, reason });
    }

    fn on_decoded(
        &mut self,
        data: Bytes,
        rs: Option<BlockOutcome>,
        sync: Option<FrameSync>,
        stream_bit: Option<u64>,
    ) {
        // The FECF covers the whole frame, so it is checked before any header field is trusted:
        // on links without RS a corrupted header is a CRC failure, not a "bad version".
        if self.layout.fecf {
            let ok = data
                .len()
                .checked_sub(2)
                .and_then(|n| {
                    let (body, tail) = data.split_at(n);
                    let tail = <[u8; 2]>::try_from(tail).ok()?;
                    Some(u16::from_be_bytes(tail) == self.fecf.checksum(body))
                })
                .unwrap_or(false);
            if ok || cfg!(fuzzing) {
                self.crc_ok += 1;
            } else {
                return self.reject(stream_bit, RejectReason::CrcFailed);
            }
        }
        let header = match FrameHeader::parse(&self.layout, &data) {
            Ok(h) => h,
            Err(e) => return self.reject_header(stream_bit, &e),
        };
        self.on_frame(header, data, None, rs, sync, stream_bit);
    }

    /// A frame whose header could not be parsed.
    fn reject_header(&mut self, stream_bit: Option<u64>, e: &Error) {
        match e {
            Error::FrameVersion { .. } => self.reject(stream_bit, RejectReason::BadVersion),
            _ => self.reject(stream_bit, RejectReason::TooShort),
        }
    }

    /// A frame with its header parsed (and its FECF checked): `data` is its bytes, or empty
    /// when they are not kept ([`Decoder::without_frame_data`]); then `unkept` holds them as
    /// received and the PN sequence (empty without PN) that derandomizes them, which its
    /// packets are read through. Never reads `self.pn`: [`Decoder::on_clean`] lends the
    /// sequence out of it for the call.
    fn on_frame(
        &mut self,
        header: FrameHeader,
        data: Bytes,
        unkept: Option<(&[u8], &[u8])>,
        rs: Option<BlockOutcome>,
        sync: Option<FrameSync>,
        stream_bit: Option<u64>,
    ) {
        if !self.profile.accepts_scid(header.scid) {
            return self.reject(stream_bit, RejectReason::UnexpectedScid(header.scid));
        }
        if !self.profile.accepts_vcid(header.vcid) {
            return self.reject(stream_bit, RejectReason::UnknownVcid(header.vcid));
        }
        self.good += 1;
        let vcid = header.vcid;
        let continuity = self
            .vcs
            .observe(vcid, header.vc_count, header.vc_count_modulus);
        if let Continuity::Gap { missing } = continuity {
            self.events.push_back(Event::Gap {
                vcid,
                missing,
                vc_count: header.vc_count,
            });
        }
        let fill = Some(vcid) == self.fill_vcid;
        if fill {
            self.fill += 1;
        } else if self.options.packets
            && header.packet_data
            // A repeated frame (same VC count) would deliver its packets twice.
            && continuity != Continuity::Repeat
            && self
                .packet_vc
                .get(usize::from(vcid))
                .copied()
                .unwrap_or(false)
        {
            let max = self.profile.packets.max_len;
            let mut out = std::mem::take(&mut self.scratch);
            let pz = header.packet_zone.clone();
            let zone = match unkept {
                Some((bytes, mask)) => bytes
                    .get(pz.clone())
                    .map(|z| (z, mask.get(pz.start.min(mask.len())..).unwrap_or_default())),
                None => data.get(pz).map(|z| (z, &[][..])),
            };
            if let (Some(slot), Some((zone, mask))) =
                (self.assemblers.get_mut(usize::from(vcid)), zone)
            {
                let keep = self.packet_data;
                let asm = slot.get_or_insert_with(|| {
                    if keep {
                        PacketAssembler::new(max)
                    } else {
                        PacketAssembler::without_data(max)
                    }
                });
                asm.push_masked_zone(
                    header.first_header_pointer,
                    zone,
                    mask,
                    continuity.is_continuous(),
                    &mut out,
                );
            }
            self.take_packet_events(Some(vcid), &mut out);
            self.scratch = out;
        }
        if self.options.frames && (!fill || self.options.fill_frames) {
            self.events.push_back(Event::Frame(Frame {
                header,
                data,
                rs,
                sync,
                continuity,
                fill,
            }));
        }
    }

    /// A complete packet's sequence count: a gap is an event.
    fn observe_sequence(&mut self, header: &PrimaryHeader, len: usize) {
        if let Some(missing) = self.sequences.observe(header, len) {
            self.events.push_back(Event::SequenceGap {
                apid: header.apid,
                missing,
            });
        }
    }

    fn take_packet_events(&mut self, vcid: Option<u8>, out: &mut Vec<PacketEvent>) {
        for ev in out.drain(..) {
            match ev {
                PacketEvent::Packet(p) => {
                    self.observe_sequence(&p.header, p.data.len());
                    if self.options.packets {
                        self.events.push_back(Event::Packet { vcid, packet: p });
                    }
                }
                PacketEvent::Counted { header, len } => {
                    self.observe_sequence(&header, len);
                    // (Only the assemblers of virtual channels count without bytes.)
                    if let (true, Some(vcid)) = (self.options.packets, vcid) {
                        self.events
                            .push_back(Event::PacketCounted { vcid, header, len });
                    }
                }
                PacketEvent::Dropped {
                    apid,
                    bytes,
                    reason,
                } => {
                    if let Some(d) = self.dropped.get_mut(drop_index(reason)) {
                        *d += 1;
                    }
                    self.dropped_bytes += bytes as u64;
                    self.events.push_back(Event::PacketDropped {
                        vcid,
                        apid,
                        bytes,
                        reason,
                    });
                }
            }
        }
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> Stats {
        let mut s = Stats {
            bytes_in: self.bytes_in,
            cadus: self.cadus,
            rs: self.rs_counts,
            ..Stats::default()
        };
        let sync = match &self.front {
            Front::Sync(sy) => Some(&**sy),
            Front::Soft { sync, .. } => Some(&**sync),
            _ => None,
        };
        if let Front::Soft { soft, .. } = &self.front {
            s.inner = Some(soft.counters());
            if let (Some(inner), Some(case)) = (s.inner.as_mut(), soft.phase_case()) {
                let case = if self.last_inverted {
                    case.plus_180()
                } else {
                    case
                };
                inner.phase_case = Some(case.label());
            }
        }
        if let Some(sy) = sync {
            let x = sy.stats();
            s.sync = SyncCounters {
                locks: x.locks,
                lost: x.lost,
                lock_frames: x.lock_frames,
                true_frames: x.true_frames,
                inverted_frames: x.inverted_frames,
                slipped_frames: x.slipped_frames,
                flywheel_frames: x.flywheel_frames,
                polarity_changes: self.polarity_changes,
                bits_discarded: x.bits_discarded,
                truncated_bits: x.truncated_bits,
            };
        }
        s.sync.truncated_bits += self.frames_truncated_bits;
        s.bytes_ignored_after_finish = self.ignored_after_finish;
        s.crc.ok = self.crc_ok;
        s.crc.failed = self.rejected.crc_failed;
        s.frames.good = self.good;
        s.frames.fill = self.fill;
        s.frames.rejected = self.rejected;
        for (v, c) in self.vcs.iter() {
            s.frames.by_vcid.insert(v, c.frames);
            s.frames.missing_by_vcid.insert(v, c.missing);
            s.frames.gaps_by_vcid.insert(v, c.gaps);
            if c.resets > 0 {
                s.frames.resets_by_vcid.insert(v, c.resets);
            }
        }
        s.packets.idle = self
            .assemblers
            .iter()
            .flatten()
            .map(|a| a.stats().idle_packets)
            .sum::<u64>();
        if let Front::Packets(p) = &self.front {
            s.packets.idle += p.stats().idle_packets;
        }
        for (apid, c) in self.sequences.by_apid() {
            s.packets.by_apid.insert(apid, c.packets);
            if c.sequence_gaps > 0 {
                s.packets
                    .sequence_gaps_by_apid
                    .insert(apid, c.sequence_gaps);
            }
            s.packets.missing += c.missing;
            s.packets.total += c.packets;
            s.packets.bytes += c.bytes;
        }
        s.packets.sequence_gaps = self.sequences.total_gaps();
        for (r, n) in DROP_REASONS.iter().zip(self.dropped) {
            if n > 0 {
                s.packets.dropped.insert(drop_label(*r), n);
            }
        }
        s.packets.dropped_bytes = self.dropped_bytes;
        s
    }
}
