//! Link counters in the shape of NASA RT-STPS's reports, as plain data.
//!
//! Accounting identity (checked by tests): every frame that enters the chain (`cadus`) is either
//! `frames.good` or exactly one of `frames.rejected.*`.

use std::collections::BTreeMap;

use serde::Serialize;

/// Synchronizer counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SyncCounters {
    /// Times lock was acquired.
    pub locks: u64,
    /// Times lock was lost (flywheel exhausted).
    pub lost: u64,
    /// Frames whose ASM was found at the expected place.
    pub lock_frames: u64,
    /// Frames emitted with the true ASM polarity.
    pub true_frames: u64,
    /// Frames emitted with the inverted polarity (and re-inverted).
    pub inverted_frames: u64,
    /// Frames found after a ±1–2 bit slip.
    pub slipped_frames: u64,
    /// Frames emitted by coasting without an ASM.
    pub flywheel_frames: u64,
    /// Polarity flips while locked.
    pub polarity_changes: u64,
    /// Bits skipped while searching.
    pub bits_discarded: u64,
    /// Bits of an incomplete frame at end of stream.
    pub truncated_bits: u64,
}

/// Reed-Solomon counters (codewords, plus frames).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RsCounters {
    /// Codewords with a zero syndrome.
    pub clean: u64,
    /// Codewords corrected.
    pub corrected: u64,
    /// Symbols corrected in total.
    pub corrected_symbols: u64,
    /// Codewords beyond correction.
    pub uncorrectable: u64,
    /// Frames whose codewords were all clean.
    pub frames_clean: u64,
    /// Frames with at least one corrected and no uncorrectable codeword.
    pub frames_corrected: u64,
    /// Frames with an uncorrectable codeword (rejected).
    pub frames_uncorrectable: u64,
}

/// FECF (CRC-16) counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CrcCounters {
    /// Frames whose FECF matched.
    pub ok: u64,
    /// Frames whose FECF did not match (rejected).
    pub failed: u64,
}

/// Frames rejected, by reason. Each rejected frame is in exactly one of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Rejections {
    /// Reed-Solomon could not correct a codeword.
    pub rs_uncorrectable: u64,
    /// FECF mismatch.
    pub crc_failed: u64,
    /// Transfer frame version differs from the profile's.
    pub bad_version: u64,
    /// Spacecraft id not in the profile.
    pub unexpected_scid: u64,
    /// Frame too short for its layout.
    pub too_short: u64,
    /// Virtual channel not in the profile's `frame.vcids`.
    pub unknown_vcid: u64,
}

impl Rejections {
    /// All rejected frames.
    pub fn total(&self) -> u64 {
        self.rs_uncorrectable
            + self.crc_failed
            + self.bad_version
            + self.unexpected_scid
            + self.too_short
            + self.unknown_vcid
    }
}

/// Frame counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FrameCounters {
    /// Frames with a good header (fill frames included).
    pub good: u64,
    /// Of `good`, fill (idle) frames.
    pub fill: u64,
    /// Rejected frames by reason.
    pub rejected: Rejections,
    /// Good frames per VCID.
    pub by_vcid: BTreeMap<u8, u64>,
    /// Frames missing per VCID, from the VC frame counter.
    pub missing_by_vcid: BTreeMap<u8, u64>,
    /// Counter discontinuities per VCID.
    pub gaps_by_vcid: BTreeMap<u8, u64>,
    /// Counter resets / backward jumps per VCID (only VCIDs that had one).
    pub resets_by_vcid: BTreeMap<u8, u64>,
}

/// Packet counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PacketCounters {
    /// Complete packets delivered (idle packets excluded).
    pub total: u64,
    /// Bytes of delivered packets.
    pub bytes: u64,
    /// Idle packets (APID 0x7FF) seen and discarded.
    pub idle: u64,
    /// Delivered packets per APID.
    pub by_apid: BTreeMap<u16, u64>,
    /// Sequence-count discontinuities, all APIDs.
    pub sequence_gaps: u64,
    /// Packets missing according to sequence counts, all APIDs.
    pub missing: u64,
    /// Sequence-count discontinuities per APID (only APIDs that had one).
    pub sequence_gaps_by_apid: BTreeMap<u16, u64>,
    /// Packets dropped, by reason (partial packets are dropped, never merged).
    pub dropped: BTreeMap<&'static str, u64>,
    /// Bytes of dropped partial packets.
    pub dropped_bytes: u64,
}

/// Everything the decoder counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Input bytes pushed.
    pub bytes_in: u64,
    /// Frames that entered the chain (synchronized CADUs or bare frames).
    pub cadus: u64,
    /// Bytes pushed after `finish` (ignored).
    pub bytes_ignored_after_finish: u64,
    /// Synchronizer counters.
    pub sync: SyncCounters,
    /// Reed-Solomon counters.
    pub rs: RsCounters,
    /// FECF counters.
    pub crc: CrcCounters,
    /// Frame counters.
    pub frames: FrameCounters,
    /// Packet counters.
    pub packets: PacketCounters,
    /// Soft-symbol front end and link quality (only for `soft-i8` / `hard` input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner: Option<crate::soft::InnerCounters>,
}
