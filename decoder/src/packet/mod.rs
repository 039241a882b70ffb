//! Space packet layer.
//!
//! * CCSDS 133.0-B-2 *Space Packet Protocol*, section 4.1 (Space Packet), in particular the
//!   6-byte Packet Primary Header of section 4.1.3: version (3 bits), type (1), secondary header
//!   flag (1), APID (11), sequence flags (2), sequence count (14), packet data length (16, = data
//!   field length − 1). APID `0x7FF` is the idle packet.
//! * Packet extraction from transfer frames with the First Header Pointer:
//!   - AOS M_PDU, CCSDS 732.0-B-4 section 4.1.4 (M_PDU header: 5 spare bits + 11-bit FHP,
//!     followed by the packet zone);
//!   - TM Transfer Frame data field, CCSDS 132.0-B-3 section 4.1.2.7 (FHP in the TM primary
//!     header's data field status).
//!
//!   In both, the FHP is the offset in the packet zone of the first byte of the first packet
//!   header that starts in this frame; `0x7FF` means no header starts in this frame and
//!   `0x7FE` means the zone carries only idle data. The frame layer strips the frame and gives
//!   [`PacketAssembler::push_zone`] the pointer and the zone of one virtual channel.
//! * [`PacketStream`] splits a plain stream of concatenated packets (packet files).
//! * [`SequenceTracker`] counts packets per APID and gaps in the 14-bit sequence count.
//!
//! Sans-IO: no I/O, no clock, no panics on any input. Bad input becomes
//! [`PacketEvent::Dropped`] events and counters in [`AssemblerStats`].

mod mpdu;
#[cfg(test)]
mod tests;
mod view;

pub use mpdu::{AssemblerStats, DropReason, PacketAssembler, PacketEvent, PacketStream};
pub use view::{Packet, PrimaryHeader, SequenceFlags, SpacePacket};

use std::collections::BTreeMap;

/// First-header pointer value: no packet header starts in this frame.
pub const FHP_NO_HEADER: u16 = 0x7FF;
/// First-header pointer value: the packet zone contains only idle data.
pub const FHP_IDLE: u16 = 0x7FE;
/// APID of idle packets.
pub const IDLE_APID: u16 = 0x7FF;
/// Length of the space packet primary header.
pub const PRIMARY_HEADER_LEN: usize = 6;
/// Largest possible space packet: 6-byte header + 65536-byte data field.
pub const MAX_PACKET_LEN: usize = PRIMARY_HEADER_LEN + 0x1_0000;
/// Number of distinct sequence-count values (14-bit counter).
pub const SEQUENCE_COUNT_MODULUS: u16 = 1 << 14;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApidCounters {
    /// Packets observed.
    pub packets: u64,
    /// Bytes observed (sum of `len` passed to [`SequenceTracker::observe`]).
    pub bytes: u64,
    /// Number of discontinuities in the sequence count.
    pub sequence_gaps: u64,
    /// Packets missing according to the sequence count (modulo 16384).
    pub missing: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct ApidEntry {
    counters: ApidCounters,
    last: Option<u16>,
}

/// Per-APID packet counters and gaps in the 14-bit sequence count (wraps at 16384, so
/// 16383 → 0 is not a gap). A count that does not follow the previous one is one gap of
/// `(count − previous − 1) mod 16384` missing packets; a repeated count is a duplicate, not a
/// gap.
#[derive(Clone, Debug, Default)]
pub struct SequenceTracker {
    apids: BTreeMap<u16, ApidEntry>,
}

impl SequenceTracker {
    /// A new tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one packet of `len` bytes; returns the number of packets missing before this
    /// one on its APID, if there is a gap.
    pub fn observe(&mut self, header: &PrimaryHeader, len: usize) -> Option<u16> {
        let entry = self.apids.entry(header.apid).or_default();
        let c = &mut entry.counters;
        c.packets = c.packets.saturating_add(1);
        c.bytes = c.bytes.saturating_add(len as u64);
        let count = header.sequence_count & (SEQUENCE_COUNT_MODULUS - 1);
        let gap = entry.last.and_then(|last| {
            let expected = (last + 1) % SEQUENCE_COUNT_MODULUS;
            let missing = count.wrapping_sub(expected) % SEQUENCE_COUNT_MODULUS;
            // A repeated count (missing == modulus - 1) is a duplicate, not a near-full wrap.
            (missing != 0 && count != last).then_some(missing)
        });
        if let Some(m) = gap {
            c.sequence_gaps = c.sequence_gaps.saturating_add(1);
            c.missing = c.missing.saturating_add(u64::from(m));
        }
        entry.last = Some(count);
        gap
    }

    /// Counters per APID, in APID order.
    pub fn by_apid(&self) -> impl Iterator<Item = (u16, ApidCounters)> + '_ {
        self.apids.iter().map(|(a, e)| (*a, e.counters))
    }

    /// Counters of one APID.
    pub fn get(&self, apid: u16) -> Option<ApidCounters> {
        self.apids.get(&apid).map(|e| e.counters)
    }

    /// Sequence gaps over all APIDs.
    pub fn total_gaps(&self) -> u64 {
        self.apids
            .values()
            .map(|e| e.counters.sequence_gaps)
            .fold(0, u64::saturating_add)
    }

    /// Missing packets over all APIDs.
    pub fn total_missing(&self) -> u64 {
        self.apids
            .values()
            .map(|e| e.counters.missing)
            .fold(0, u64::saturating_add)
    }
}
