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

use bytes::{Bytes, BytesMut};
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

/// Packet sequence flags (CCSDS 133.0-B-2, Packet Sequence Control field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SequenceFlags {
    /// `00`: continuation segment of user data.
    Continuation,
    /// `01`: first segment.
    First,
    /// `10`: last segment.
    Last,
    /// `11`: unsegmented user data.
    Unsegmented,
}

impl SequenceFlags {
    /// From the 2-bit field value (higher bits are ignored).
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => Self::Continuation,
            1 => Self::First,
            2 => Self::Last,
            _ => Self::Unsegmented,
        }
    }

    /// The 2-bit field value.
    pub fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0,
            Self::First => 1,
            Self::Last => 2,
            Self::Unsegmented => 3,
        }
    }
}

/// Errors from [`SpacePacket::new_checked`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketError {
    /// The buffer is shorter than a primary header.
    #[error("space packet too short: need {need} bytes, got {got}")]
    TooShort {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        got: usize,
    },
    /// The buffer length differs from the length in the primary header.
    #[error("space packet length mismatch: header says {header_says} bytes, buffer has {got}")]
    LengthMismatch {
        /// Total packet length according to the primary header.
        header_says: usize,
        /// Buffer length.
        got: usize,
    },
}

/// The decoded 6-byte packet primary header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryHeader {
    /// Packet version number (3 bits; 0 for CCSDS version-1 packets).
    pub version: u8,
    /// Packet type bit: true for telecommand, false for telemetry.
    pub telecommand: bool,
    /// Secondary header flag.
    pub secondary_header: bool,
    /// Application process identifier (11 bits).
    pub apid: u16,
    /// Sequence flags.
    pub sequence_flags: SequenceFlags,
    /// Packet sequence count or packet name (14 bits).
    pub sequence_count: u16,
    /// Packet data length field: data field length minus one.
    pub data_length_field: u16,
}

impl PrimaryHeader {
    /// Decodes a header from exactly six bytes.
    pub fn from_bytes(b: &[u8; PRIMARY_HEADER_LEN]) -> Self {
        let [b0, b1, b2, b3, b4, b5] = *b;
        let id = u16::from_be_bytes([b0, b1]);
        let seq = u16::from_be_bytes([b2, b3]);
        Self {
            version: b0 >> 5,
            telecommand: id & 0x1000 != 0,
            secondary_header: id & 0x0800 != 0,
            apid: id & 0x07FF,
            sequence_flags: SequenceFlags::from_bits(b2 >> 6),
            sequence_count: seq & 0x3FFF,
            data_length_field: u16::from_be_bytes([b4, b5]),
        }
    }

    /// Parses the primary header at the start of `buf`; `None` if `buf` is shorter than 6 bytes.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        buf.first_chunk::<PRIMARY_HEADER_LEN>()
            .map(Self::from_bytes)
    }

    /// Encodes the header (fields wider than their bit width are truncated).
    pub fn to_bytes(&self) -> [u8; PRIMARY_HEADER_LEN] {
        let id = (u16::from(self.version & 0x7) << 13)
            | (u16::from(self.telecommand) << 12)
            | (u16::from(self.secondary_header) << 11)
            | (self.apid & 0x07FF);
        let seq = (u16::from(self.sequence_flags.bits()) << 14) | (self.sequence_count & 0x3FFF);
        let [a, b] = id.to_be_bytes();
        let [c, d] = seq.to_be_bytes();
        let [e, f] = self.data_length_field.to_be_bytes();
        [a, b, c, d, e, f]
    }

    /// Total packet length: 6 + data length field + 1 (7 ..= 65542).
    pub fn total_len(&self) -> usize {
        PRIMARY_HEADER_LEN + usize::from(self.data_length_field) + 1
    }

    /// True for idle packets (APID `0x7FF`).
    pub fn is_idle(&self) -> bool {
        self.apid == IDLE_APID
    }
}

/// Checked view of one whole space packet (smoltcp style): [`SpacePacket::new_checked`]
/// validates the length once, after which all accessors are infallible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpacePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SpacePacket<T> {
    /// Wraps `buf`, which must hold exactly one packet (6 + data length field + 1 bytes).
    /// The version number is not checked; see [`SpacePacket::version`].
    pub fn new_checked(buf: T) -> Result<Self, PacketError> {
        let bytes = buf.as_ref();
        let header = PrimaryHeader::parse(bytes).ok_or(PacketError::TooShort {
            need: PRIMARY_HEADER_LEN,
            got: bytes.len(),
        })?;
        if header.total_len() != bytes.len() {
            return Err(PacketError::LengthMismatch {
                header_says: header.total_len(),
                got: bytes.len(),
            });
        }
        Ok(Self { buffer: buf })
    }

    fn header_bytes(&self) -> [u8; PRIMARY_HEADER_LEN] {
        // Length validated in new_checked; the fallback is unreachable.
        self.buffer
            .as_ref()
            .first_chunk::<PRIMARY_HEADER_LEN>()
            .copied()
            .unwrap_or_default()
    }

    /// The decoded primary header.
    pub fn header(&self) -> PrimaryHeader {
        PrimaryHeader::from_bytes(&self.header_bytes())
    }

    /// Packet version number (0 for CCSDS packets).
    pub fn version(&self) -> u8 {
        self.header().version
    }

    /// Packet type bit set (telecommand).
    pub fn is_telecommand(&self) -> bool {
        self.header().telecommand
    }

    /// Secondary header flag.
    pub fn has_secondary_header(&self) -> bool {
        self.header().secondary_header
    }

    /// Application process identifier.
    pub fn apid(&self) -> u16 {
        self.header().apid
    }

    /// Sequence flags.
    pub fn sequence_flags(&self) -> SequenceFlags {
        self.header().sequence_flags
    }

    /// 14-bit sequence count.
    pub fn sequence_count(&self) -> u16 {
        self.header().sequence_count
    }

    /// Raw packet data length field (data field length − 1).
    pub fn data_length_field(&self) -> u16 {
        self.header().data_length_field
    }

    /// Total packet length (equals the buffer length).
    pub fn total_len(&self) -> usize {
        self.header().total_len()
    }

    /// True for idle packets (APID `0x7FF`).
    pub fn is_idle(&self) -> bool {
        self.apid() == IDLE_APID
    }

    /// The packet data field (secondary header, if any, and user data): all bytes after the
    /// primary header.
    pub fn data(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(PRIMARY_HEADER_LEN..)
            .unwrap_or_default()
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// Returns the wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// One reassembled packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Its primary header.
    pub header: PrimaryHeader,
    /// The whole packet, including the primary header.
    pub data: Bytes,
}

impl Packet {
    /// APID.
    pub fn apid(&self) -> u16 {
        self.header.apid
    }

    /// The packet data field (after the primary header).
    pub fn data_field(&self) -> &[u8] {
        self.data.get(PRIMARY_HEADER_LEN..).unwrap_or_default()
    }
}

/// Why bytes were discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A packet in progress was broken by a lost/uncorrectable frame: dropped, never merged
    /// with later bytes.
    FrameGap,
    /// The first-header pointer disagrees with where the packet in progress ends.
    HeaderMismatch,
    /// The first-header pointer points outside the packet zone.
    BadPointer,
    /// Declared length exceeds the configured `max_packet_len`.
    TooLong,
    /// Primary header version != 0 (sync to the data lost).
    BadVersion,
    /// Partial packet at flush.
    EndOfStream,
}

/// Output of the assemblers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PacketEvent {
    /// A complete packet (never an idle packet).
    Packet(Packet),
    /// Discarded bytes. `apid` is known when the discarded bytes included a trusted header.
    Dropped {
        /// APID of the dropped packet, when known.
        apid: Option<u16>,
        /// Number of input bytes discarded by this event.
        bytes: usize,
        /// Why.
        reason: DropReason,
    },
}

/// Counters of a [`PacketAssembler`] or [`PacketStream`].
///
/// Every input byte ends up in exactly one of `packet_bytes`, `idle_bytes`, `dropped_bytes`,
/// `skipped_bytes` or the assembler's [`PacketAssembler::buffered`] bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssemblerStats {
    /// Complete non-idle packets emitted.
    pub packets: u64,
    /// Complete idle packets (counted, not emitted).
    pub idle_packets: u64,
    /// `Dropped` events emitted.
    pub dropped: u64,
    /// Sum of `bytes` over `Dropped` events.
    pub dropped_bytes: u64,
    /// `Dropped` events with [`DropReason::FrameGap`].
    pub frame_gap_drops: u64,
    /// `Dropped` events with [`DropReason::HeaderMismatch`].
    pub header_mismatch: u64,
    /// `Dropped` events with [`DropReason::BadPointer`].
    pub bad_pointer: u64,
    /// `Dropped` events with [`DropReason::TooLong`].
    pub too_long: u64,
    /// `Dropped` events with [`DropReason::BadVersion`].
    pub bad_version: u64,
    /// `Dropped` events with [`DropReason::EndOfStream`].
    pub end_of_stream: u64,
    /// Zones with FHP `0x7FE` (idle data only).
    pub idle_zones: u64,
    /// Bytes discarded silently: while waiting for a first-header pointer after a loss of sync
    /// (no event; the packets they belong to started in frames not seen), and partial idle
    /// packets broken by a frame gap or flush.
    pub skipped_bytes: u64,
    /// Bytes of emitted packets.
    pub packet_bytes: u64,
    /// Bytes of complete idle packets plus idle-only zones.
    pub idle_bytes: u64,
}

impl AssemblerStats {
    fn add(counter: &mut u64, n: usize) {
        *counter = counter.saturating_add(n as u64);
    }

    fn record_drop(
        &mut self,
        out: &mut Vec<PacketEvent>,
        apid: Option<u16>,
        bytes: usize,
        reason: DropReason,
    ) {
        Self::add(&mut self.dropped, 1);
        Self::add(&mut self.dropped_bytes, bytes);
        let counter = match reason {
            DropReason::FrameGap => &mut self.frame_gap_drops,
            DropReason::HeaderMismatch => &mut self.header_mismatch,
            DropReason::BadPointer => &mut self.bad_pointer,
            DropReason::TooLong => &mut self.too_long,
            DropReason::BadVersion => &mut self.bad_version,
            DropReason::EndOfStream => &mut self.end_of_stream,
        };
        Self::add(counter, 1);
        out.push(PacketEvent::Dropped {
            apid,
            bytes,
            reason,
        });
    }

    fn record_packet(&mut self, out: &mut Vec<PacketEvent>, header: PrimaryHeader, data: Bytes) {
        if header.is_idle() {
            Self::add(&mut self.idle_packets, 1);
            Self::add(&mut self.idle_bytes, data.len());
        } else {
            Self::add(&mut self.packets, 1);
            Self::add(&mut self.packet_bytes, data.len());
            out.push(PacketEvent::Packet(Packet { header, data }));
        }
    }

    /// A partial packet is abandoned. Idle packets lose nothing, so they are only counted as
    /// skipped bytes, except for anomalies that must be reported.
    fn drop_partial(
        &mut self,
        out: &mut Vec<PacketEvent>,
        header: Option<PrimaryHeader>,
        bytes: usize,
        reason: DropReason,
    ) {
        let silent = matches!(reason, DropReason::FrameGap | DropReason::EndOfStream)
            && header.is_some_and(|h| h.is_idle());
        if silent {
            Self::add(&mut self.skipped_bytes, bytes);
        } else if bytes > 0 {
            self.record_drop(out, header.map(|h| h.apid), bytes, reason);
        }
    }
}

/// Checks a header before buffering its packet: returns the total length.
fn validate(header: &PrimaryHeader, max_packet_len: usize) -> Result<usize, DropReason> {
    if header.version != 0 {
        Err(DropReason::BadVersion)
    } else if header.total_len() > max_packet_len {
        Err(DropReason::TooLong)
    } else {
        Ok(header.total_len())
    }
}

/// Partial packet state shared by both assemblers.
#[derive(Debug)]
enum Partial {
    /// 1..=5 header bytes seen (0 only transiently in [`PacketStream`]).
    Header {
        buf: [u8; PRIMARY_HEADER_LEN],
        len: usize,
    },
    /// Header known, `buf.len() < total`; `buf` was allocated with capacity `total`.
    Body {
        header: PrimaryHeader,
        total: usize,
        buf: BytesMut,
    },
}

impl Partial {
    fn header_from(bytes: &[u8]) -> Self {
        let mut buf = [0u8; PRIMARY_HEADER_LEN];
        for (d, s) in buf.iter_mut().zip(bytes) {
            *d = *s;
        }
        Partial::Header {
            buf,
            len: bytes.len().min(PRIMARY_HEADER_LEN),
        }
    }

    fn body_from(header: PrimaryHeader, total: usize, bytes: &[u8]) -> Self {
        let mut buf = BytesMut::with_capacity(total);
        buf.extend_from_slice(bytes);
        Partial::Body { header, total, buf }
    }

    fn buffered(&self) -> usize {
        match self {
            Partial::Header { len, .. } => *len,
            Partial::Body { buf, .. } => buf.len(),
        }
    }

    fn header(&self) -> Option<PrimaryHeader> {
        match self {
            Partial::Header { .. } => None,
            Partial::Body { header, .. } => Some(*header),
        }
    }
}

/// Assembler state for one virtual channel.
#[derive(Debug)]
enum State {
    /// Sync lost (start, after a gap or an error): discard until a first-header pointer.
    Hunting,
    /// At a packet boundary: the next zone must start with a packet header.
    Boundary,
    /// A packet in progress.
    InPacket(Partial),
}

/// Reassembles space packets from the packet zones of ONE virtual channel (AOS M_PDU or TM
/// frame data field with the FHP in the frame header).
///
/// A packet in progress is checked against each new first-header pointer; on disagreement,
/// or when `continuous` is false, it is dropped (never merged with later bytes) and extraction
/// resumes at the pointer. Idle packets are counted, not emitted. A zone with FHP `0x7FE`
/// is idle data and leaves the state untouched (a packet in progress is checked against the
/// next data zone's pointer).
#[derive(Debug)]
pub struct PacketAssembler {
    max_packet_len: usize,
    state: State,
    stats: AssemblerStats,
}

impl Default for PacketAssembler {
    fn default() -> Self {
        Self::new(MAX_PACKET_LEN)
    }
}

impl PacketAssembler {
    /// A new assembler; packets declaring more than `max_packet_len` bytes are dropped
    /// ([`DropReason::TooLong`]) and sync is re-acquired at the next first-header pointer.
    pub fn new(max_packet_len: usize) -> Self {
        Self {
            max_packet_len,
            state: State::Hunting,
            stats: AssemblerStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Bytes held for a packet in progress.
    pub fn buffered(&self) -> usize {
        match &self.state {
            State::InPacket(p) => p.buffered(),
            State::Hunting | State::Boundary => 0,
        }
    }

    /// Feeds one frame's packet zone. Completed packets and drops are appended to `out`.
    pub fn push_zone(
        &mut self,
        first_header_pointer: u16,
        zone: &[u8],
        continuous: bool,
        out: &mut Vec<PacketEvent>,
    ) {
        if !continuous {
            if let State::InPacket(p) = &self.state {
                let (h, n) = (p.header(), p.buffered());
                self.stats.drop_partial(out, h, n, DropReason::FrameGap);
            }
            self.state = State::Hunting;
        }
        let ptr = match first_header_pointer {
            FHP_IDLE => {
                AssemblerStats::add(&mut self.stats.idle_zones, 1);
                AssemblerStats::add(&mut self.stats.idle_bytes, zone.len());
                return;
            }
            FHP_NO_HEADER => None,
            p if usize::from(p) < zone.len() => Some(usize::from(p)),
            _ => {
                let state = std::mem::replace(&mut self.state, State::Hunting);
                let (header, partial) = match &state {
                    State::InPacket(p) => (p.header(), p.buffered()),
                    State::Hunting | State::Boundary => (None, 0),
                };
                self.stats.record_drop(
                    out,
                    header.map(|h| h.apid),
                    partial + zone.len(),
                    DropReason::BadPointer,
                );
                return;
            }
        };

        let state = std::mem::replace(&mut self.state, State::Hunting);
        let resume = match state {
            State::Hunting => {
                let skip = ptr.unwrap_or(zone.len());
                AssemblerStats::add(&mut self.stats.skipped_bytes, skip);
                ptr
            }
            State::Boundary => match ptr {
                Some(0) => Some(0),
                None if zone.is_empty() => {
                    self.state = State::Boundary;
                    None
                }
                other => {
                    // Bytes that continue a packet whose start we did not see.
                    let n = other.unwrap_or(zone.len());
                    self.stats
                        .record_drop(out, None, n, DropReason::HeaderMismatch);
                    other
                }
            },
            State::InPacket(partial) => self.continue_partial(partial, ptr, zone, out),
        };
        if let Some(start) = resume {
            self.extract(zone.get(start..).unwrap_or_default(), out);
        }
    }

    /// Continues a packet in progress with the next zone. Sets `self.state` when the zone is
    /// used up; returns the offset where extraction of new packets resumes.
    fn continue_partial(
        &mut self,
        partial: Partial,
        ptr: Option<usize>,
        zone: &[u8],
        out: &mut Vec<PacketEvent>,
    ) -> Option<usize> {
        let discard = ptr.unwrap_or(zone.len());
        let (header, total, mut buf) = match partial {
            Partial::Body { header, total, buf } => (header, total, buf),
            Partial::Header { buf: hbuf, len } => {
                let need = PRIMARY_HEADER_LEN.saturating_sub(len);
                let head = match zone.get(..need) {
                    Some(head) if ptr.is_none_or(|p| p >= need) => head,
                    _ => {
                        if ptr.is_none() {
                            // Zone shorter than the rest of the header: keep collecting.
                            let mut buf = hbuf;
                            for (d, s) in buf.iter_mut().skip(len).zip(zone) {
                                *d = *s;
                            }
                            let len = (len + zone.len()).min(PRIMARY_HEADER_LEN);
                            self.state = State::InPacket(Partial::Header { buf, len });
                            return None;
                        }
                        // A new header starts before ours is complete.
                        self.stats.record_drop(
                            out,
                            None,
                            len + discard,
                            DropReason::HeaderMismatch,
                        );
                        return ptr;
                    }
                };
                let mut full = hbuf;
                for (d, s) in full.iter_mut().skip(len).zip(head) {
                    *d = *s;
                }
                let header = PrimaryHeader::from_bytes(&full);
                match validate(&header, self.max_packet_len) {
                    Ok(total) => {
                        let mut buf = BytesMut::with_capacity(total);
                        buf.extend_from_slice(full.get(..len).unwrap_or_default());
                        (header, total, buf)
                    }
                    Err(reason) => {
                        let apid = (reason == DropReason::TooLong).then_some(header.apid);
                        self.stats.record_drop(out, apid, len + discard, reason);
                        return ptr;
                    }
                }
            }
        };
        let remaining = total.saturating_sub(buf.len());
        let consistent = match ptr {
            None => remaining >= zone.len(),
            Some(p) => remaining == p,
        };
        if !consistent {
            self.stats.record_drop(
                out,
                Some(header.apid),
                buf.len() + discard,
                DropReason::HeaderMismatch,
            );
            return ptr;
        }
        let take = remaining.min(zone.len());
        buf.extend_from_slice(zone.get(..take).unwrap_or_default());
        if buf.len() >= total {
            self.stats.record_packet(out, header, buf.freeze());
            self.state = State::Boundary;
            ptr
        } else {
            self.state = State::InPacket(Partial::Body { header, total, buf });
            None
        }
    }

    /// Extracts packets from `rest`, which starts at a packet header.
    fn extract(&mut self, mut rest: &[u8], out: &mut Vec<PacketEvent>) {
        loop {
            let Some(hb) = rest.first_chunk::<PRIMARY_HEADER_LEN>() else {
                self.state = if rest.is_empty() {
                    State::Boundary
                } else {
                    State::InPacket(Partial::header_from(rest))
                };
                return;
            };
            let header = PrimaryHeader::from_bytes(hb);
            match validate(&header, self.max_packet_len) {
                Err(reason) => {
                    let apid = (reason == DropReason::TooLong).then_some(header.apid);
                    self.stats.record_drop(out, apid, rest.len(), reason);
                    self.state = State::Hunting;
                    return;
                }
                Ok(total) => match rest.split_at_checked(total) {
                    Some((pkt, tail)) => {
                        self.stats
                            .record_packet(out, header, Bytes::copy_from_slice(pkt));
                        rest = tail;
                    }
                    None => {
                        self.state = State::InPacket(Partial::body_from(header, total, rest));
                        return;
                    }
                },
            }
        }
    }

    /// End of stream: a packet in progress is dropped ([`DropReason::EndOfStream`]) and the
    /// assembler waits for a first-header pointer again.
    pub fn flush(&mut self, out: &mut Vec<PacketEvent>) {
        if let State::InPacket(p) = &self.state {
            let (h, n) = (p.header(), p.buffered());
            self.stats.drop_partial(out, h, n, DropReason::EndOfStream);
        }
        self.state = State::Hunting;
    }
}

/// Stream state beyond the shared partial packet.
#[derive(Debug)]
enum StreamState {
    Packet(Partial),
    /// Skipping the body of a too-long packet.
    Skip {
        apid: u16,
        remaining: usize,
        consumed: usize,
    },
}

/// Splits a plain stream of concatenated packets (a `.dat`/`.tlm` packet file), pushed in any
/// chunk sizes.
///
/// A packet longer than `max_packet_len` is skipped using its declared length (one
/// [`DropReason::TooLong`] event once skipped). A header with version != 0 means sync is lost:
/// the stream is searched byte by byte for a header with version 0 and an acceptable length,
/// and the bytes passed over are reported as one [`DropReason::BadVersion`] event.
#[derive(Debug)]
pub struct PacketStream {
    max_packet_len: usize,
    state: StreamState,
    hunted: usize,
    stats: AssemblerStats,
}

impl Default for PacketStream {
    fn default() -> Self {
        Self::new(MAX_PACKET_LEN)
    }
}

const EMPTY: StreamState = StreamState::Packet(Partial::Header {
    buf: [0; PRIMARY_HEADER_LEN],
    len: 0,
});

impl PacketStream {
    /// A new splitter.
    pub fn new(max_packet_len: usize) -> Self {
        Self {
            max_packet_len,
            state: EMPTY,
            hunted: 0,
            stats: AssemblerStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Bytes held for a packet in progress (including bytes under examination while
    /// searching for sync).
    pub fn buffered(&self) -> usize {
        match &self.state {
            StreamState::Packet(p) => p.buffered(),
            StreamState::Skip { .. } => 0,
        }
    }

    fn end_hunt(&mut self, out: &mut Vec<PacketEvent>) {
        if self.hunted > 0 {
            self.stats
                .record_drop(out, None, self.hunted, DropReason::BadVersion);
            self.hunted = 0;
        }
    }

    /// Checks a header; on success returns its total length. While hunting, a too-long header
    /// is treated as noise rather than as a packet to skip.
    fn check(&self, header: &PrimaryHeader) -> Result<usize, DropReason> {
        match validate(header, self.max_packet_len) {
            Err(DropReason::TooLong) if self.hunted > 0 => Err(DropReason::BadVersion),
            other => other,
        }
    }

    /// Feeds bytes.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<PacketEvent>) {
        let mut rest = data;
        loop {
            let state = std::mem::replace(&mut self.state, EMPTY);
            match state {
                StreamState::Skip {
                    apid,
                    remaining,
                    consumed,
                } => {
                    let take = remaining.min(rest.len());
                    rest = rest.get(take..).unwrap_or_default();
                    let (remaining, consumed) = (remaining - take, consumed + take);
                    if remaining == 0 {
                        self.stats
                            .record_drop(out, Some(apid), consumed, DropReason::TooLong);
                    } else {
                        self.state = StreamState::Skip {
                            apid,
                            remaining,
                            consumed,
                        };
                        return;
                    }
                }
                StreamState::Packet(Partial::Body {
                    header,
                    total,
                    mut buf,
                }) => {
                    let take = total.saturating_sub(buf.len()).min(rest.len());
                    let (head, tail) = rest.split_at_checked(take).unwrap_or((rest, &[]));
                    buf.extend_from_slice(head);
                    rest = tail;
                    if buf.len() >= total {
                        self.stats.record_packet(out, header, buf.freeze());
                    } else {
                        self.state = StreamState::Packet(Partial::Body { header, total, buf });
                        return;
                    }
                }
                StreamState::Packet(Partial::Header { len: 0, .. }) => {
                    // Fast path: parse straight from the input; a packet wholly inside `data`
                    // is copied once.
                    let Some(hb) = rest.first_chunk::<PRIMARY_HEADER_LEN>() else {
                        if !rest.is_empty() {
                            self.state = StreamState::Packet(Partial::header_from(rest));
                        }
                        return;
                    };
                    let header = PrimaryHeader::from_bytes(hb);
                    match self.check(&header) {
                        Err(DropReason::TooLong) => {
                            self.end_hunt(out);
                            self.state = StreamState::Skip {
                                apid: header.apid,
                                remaining: header.total_len(),
                                consumed: 0,
                            };
                        }
                        Err(_) => {
                            self.hunted += 1;
                            rest = rest.get(1..).unwrap_or_default();
                        }
                        Ok(total) => {
                            self.end_hunt(out);
                            match rest.split_at_checked(total) {
                                Some((pkt, tail)) => {
                                    self.stats.record_packet(
                                        out,
                                        header,
                                        Bytes::copy_from_slice(pkt),
                                    );
                                    rest = tail;
                                }
                                None => {
                                    self.state = StreamState::Packet(Partial::body_from(
                                        header, total, rest,
                                    ));
                                    return;
                                }
                            }
                        }
                    }
                }
                StreamState::Packet(Partial::Header { mut buf, mut len }) => {
                    let need = PRIMARY_HEADER_LEN.saturating_sub(len);
                    let (head, tail) = rest
                        .split_at_checked(need)
                        .unwrap_or((rest, Default::default()));
                    for (d, s) in buf.iter_mut().skip(len).zip(head) {
                        *d = *s;
                    }
                    len += head.len();
                    rest = tail;
                    if len < PRIMARY_HEADER_LEN {
                        self.state = StreamState::Packet(Partial::Header { buf, len });
                        return;
                    }
                    let header = PrimaryHeader::from_bytes(&buf);
                    match self.check(&header) {
                        Err(DropReason::TooLong) => {
                            self.end_hunt(out);
                            self.state = StreamState::Skip {
                                apid: header.apid,
                                remaining: header.total_len() - PRIMARY_HEADER_LEN,
                                consumed: PRIMARY_HEADER_LEN,
                            };
                        }
                        Err(_) => {
                            self.hunted += 1;
                            buf.rotate_left(1);
                            self.state = StreamState::Packet(Partial::Header {
                                buf,
                                len: PRIMARY_HEADER_LEN - 1,
                            });
                        }
                        Ok(total) => {
                            self.end_hunt(out);
                            self.state =
                                StreamState::Packet(Partial::body_from(header, total, &buf));
                        }
                    }
                }
            }
        }
    }

    /// End of stream: reports bytes passed over while searching for sync, then any partial
    /// packet ([`DropReason::EndOfStream`], or [`DropReason::TooLong`] for a packet being
    /// skipped).
    pub fn flush(&mut self, out: &mut Vec<PacketEvent>) {
        self.end_hunt(out);
        match std::mem::replace(&mut self.state, EMPTY) {
            StreamState::Skip { apid, consumed, .. } => {
                self.stats
                    .record_drop(out, Some(apid), consumed, DropReason::TooLong);
            }
            StreamState::Packet(p) => {
                let (h, n) = (p.header(), p.buffered());
                self.stats.drop_partial(out, h, n, DropReason::EndOfStream);
            }
        }
    }
}

/// Per-APID packet counters and sequence-count gap accounting.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const VIIRS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/packets/viirs/viirs_packets.dat"
    );
    const CYGNSS: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/packets/cygnss/CYGNSS_F7_L0_2022_086_10_15_V01_F__first101pkts.tlm"
    );
    const CYGNSS_SPLIT: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/packets/cygnss/split_by_apid"
    );
    const EUROPA: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/packets/europa-clipper/ecm_raw2.bin"
    );

    /// Small deterministic PRNG (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in lo..=hi.
        fn range(&mut self, lo: usize, hi: usize) -> usize {
            lo + (self.next() % (hi - lo + 1) as u64) as usize
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    fn packets_of(events: &[PacketEvent]) -> Vec<Packet> {
        events
            .iter()
            .filter_map(|e| match e {
                PacketEvent::Packet(p) => Some(p.clone()),
                PacketEvent::Dropped { .. } => None,
            })
            .collect()
    }

    fn split_file(bytes: &[u8]) -> Vec<Packet> {
        let mut s = PacketStream::default();
        let mut out = Vec::new();
        s.push(bytes, &mut out);
        s.flush(&mut out);
        assert!(
            out.iter().all(|e| matches!(e, PacketEvent::Packet(_))),
            "unexpected drops: {:?}",
            s.stats()
        );
        assert_eq!(s.stats().packet_bytes, bytes.len() as u64);
        packets_of(&out)
    }

    fn make_packet(apid: u16, seq: u16, total: usize, rng: &mut Rng) -> Vec<u8> {
        let h = PrimaryHeader {
            version: 0,
            telecommand: false,
            secondary_header: false,
            apid,
            sequence_flags: SequenceFlags::Unsegmented,
            sequence_count: seq,
            data_length_field: (total - PRIMARY_HEADER_LEN - 1) as u16,
        };
        let mut v = h.to_bytes().to_vec();
        v.extend((PRIMARY_HEADER_LEN..total).map(|_| rng.next() as u8));
        v
    }

    fn idle_packet(total: usize) -> Vec<u8> {
        let h = PrimaryHeader {
            version: 0,
            telecommand: false,
            secondary_header: false,
            apid: IDLE_APID,
            sequence_flags: SequenceFlags::Unsegmented,
            sequence_count: 0,
            data_length_field: (total - PRIMARY_HEADER_LEN - 1) as u16,
        };
        let mut v = h.to_bytes().to_vec();
        v.resize(total, 0x55);
        v
    }

    /// Packets laid out contiguously and cut into fixed-size zones with their FHPs, as an
    /// M_PDU / TM packet service would. The stream is padded with an idle packet so that
    /// the last zone is full.
    struct Layout {
        packets: Vec<Vec<u8>>,
        starts: Vec<usize>,
        size: usize,
        zones: Vec<(u16, Vec<u8>)>,
    }

    impl Layout {
        fn new(mut packets: Vec<Vec<u8>>, size: usize) -> Self {
            assert!(size > 0 && size < usize::from(FHP_IDLE));
            let len: usize = packets.iter().map(Vec::len).sum();
            let mut pad = (size - len % size) % size;
            while pad != 0 && pad < 7 {
                pad += size;
            }
            while pad > 0 {
                let n = pad.min(MAX_PACKET_LEN);
                let n = if pad - n != 0 && pad - n < 7 {
                    n - 7
                } else {
                    n
                };
                packets.push(idle_packet(n));
                pad -= n;
            }
            let mut starts = Vec::new();
            let mut stream = Vec::new();
            for p in &packets {
                starts.push(stream.len());
                stream.extend_from_slice(p);
            }
            assert_eq!(stream.len() % size, 0);
            let zones = stream
                .chunks(size)
                .enumerate()
                .map(|(z, chunk)| {
                    let lo = z * size;
                    let fhp = starts
                        .iter()
                        .find(|&&s| s >= lo && s < lo + size)
                        .map_or(FHP_NO_HEADER, |&s| (s - lo) as u16);
                    (fhp, chunk.to_vec())
                })
                .collect();
            Self {
                packets,
                starts,
                size,
                zones,
            }
        }

        fn zone_of(&self, offset: usize) -> usize {
            offset / self.size
        }

        /// Number of packet headers split across a zone boundary.
        fn split_headers(&self) -> usize {
            self.starts
                .iter()
                .filter(|&&s| self.zone_of(s) != self.zone_of(s + PRIMARY_HEADER_LEN - 1))
                .count()
        }

        /// Events expected when the zones flagged in `lost` are not delivered (the zone after
        /// a lost one arrives with continuous = false; the last zone must not be lost).
        fn expected(&self, lost: &[bool]) -> Vec<PacketEvent> {
            let mut ev = Vec::new();
            for (p, &s) in self.packets.iter().zip(&self.starts) {
                let (first, last) = (self.zone_of(s), self.zone_of(s + p.len() - 1));
                if lost[first] {
                    continue; // start never seen: silently skipped
                }
                match (first..=last).find(|&z| lost[z]) {
                    None => {
                        let h = PrimaryHeader::parse(p).unwrap();
                        if !h.is_idle() {
                            ev.push(PacketEvent::Packet(Packet {
                                header: h,
                                data: Bytes::from(p.clone()),
                            }));
                        }
                    }
                    Some(z) => {
                        let got = z * self.size - s;
                        let apid = PrimaryHeader::parse(p).unwrap().apid;
                        if got < PRIMARY_HEADER_LEN {
                            ev.push(PacketEvent::Dropped {
                                apid: None,
                                bytes: got,
                                reason: DropReason::FrameGap,
                            });
                        } else if apid != IDLE_APID {
                            ev.push(PacketEvent::Dropped {
                                apid: Some(apid),
                                bytes: got,
                                reason: DropReason::FrameGap,
                            });
                        }
                    }
                }
            }
            ev
        }

        fn run(&self, lost: &[bool], asm: &mut PacketAssembler) -> Vec<PacketEvent> {
            let mut out = Vec::new();
            let mut prev_lost = false;
            let mut fed = 0u64;
            for ((fhp, zone), &l) in self.zones.iter().zip(lost) {
                if !l {
                    asm.push_zone(*fhp, zone, !prev_lost, &mut out);
                    fed += zone.len() as u64;
                    assert_accounting(asm, fed);
                }
                prev_lost = l;
            }
            asm.flush(&mut out);
            assert_accounting(asm, fed);
            out
        }
    }

    fn assert_accounting(asm: &PacketAssembler, fed: u64) {
        let s = asm.stats();
        assert_eq!(
            s.packet_bytes
                + s.idle_bytes
                + s.dropped_bytes
                + s.skipped_bytes
                + asm.buffered() as u64,
            fed,
            "{s:?}"
        );
    }

    fn viirs_with_idle() -> (Vec<Vec<u8>>, usize) {
        let viirs = split_file(&std::fs::read(VIIRS).unwrap());
        let mut v = Vec::new();
        let mut idle = 0;
        for (i, p) in viirs.iter().enumerate() {
            v.push(p.data.to_vec());
            if i % 9 == 4 {
                v.push(idle_packet(7 + i * 13));
                idle += 1;
            }
        }
        (v, idle)
    }

    // ---- primary header / checked view -------------------------------------------------

    #[test]
    fn header_fields_of_real_packets() {
        let viirs = std::fs::read(VIIRS).unwrap();
        let h = PrimaryHeader::parse(&viirs).unwrap();
        assert_eq!(
            h,
            PrimaryHeader {
                version: 0,
                telecommand: false,
                secondary_header: true,
                apid: 826,
                sequence_flags: SequenceFlags::Unsegmented,
                sequence_count: 992,
                data_length_field: 0x245F,
            }
        );
        assert_eq!(h.total_len(), 9318);
        assert_eq!(h.to_bytes().as_slice(), &viirs[..6]);
        let p = SpacePacket::new_checked(&viirs[..9318]).unwrap();
        assert_eq!(p.version(), 0);
        assert!(!p.is_telecommand());
        assert!(p.has_secondary_header());
        assert_eq!(p.apid(), 826);
        assert_eq!(p.sequence_flags(), SequenceFlags::Unsegmented);
        assert_eq!(p.sequence_count(), 992);
        assert_eq!(p.data_length_field(), 0x245F);
        assert_eq!(p.total_len(), 9318);
        assert!(!p.is_idle());
        assert_eq!(p.data(), &viirs[6..9318]);
        assert_eq!(p.into_inner().len(), 9318);

        let cygnss = std::fs::read(CYGNSS).unwrap();
        let h = PrimaryHeader::parse(&cygnss).unwrap();
        assert_eq!((h.apid, h.sequence_count, h.total_len()), (391, 0, 1680));
    }

    #[test]
    fn checked_view_errors() {
        let viirs = std::fs::read(VIIRS).unwrap();
        assert_eq!(
            SpacePacket::new_checked(&viirs[..5]).unwrap_err(),
            PacketError::TooShort { need: 6, got: 5 }
        );
        assert_eq!(
            SpacePacket::new_checked(&viirs[..9317]).unwrap_err(),
            PacketError::LengthMismatch {
                header_says: 9318,
                got: 9317
            }
        );
        assert_eq!(
            SpacePacket::new_checked(&viirs[..9319]).unwrap_err(),
            PacketError::LengthMismatch {
                header_says: 9318,
                got: 9319
            }
        );
        assert!(PrimaryHeader::parse(&viirs[..5]).is_none());
        let idle = idle_packet(7);
        let p = SpacePacket::new_checked(idle.as_slice()).unwrap();
        assert!(p.is_idle());
        assert_eq!(p.data(), &[0x55]);
    }

    #[test]
    fn header_round_trip_all_fields() {
        let mut rng = Rng(7);
        for _ in 0..2000 {
            let b: [u8; 6] = std::array::from_fn(|_| rng.next() as u8);
            let h = PrimaryHeader::from_bytes(&b);
            assert_eq!(h.to_bytes(), b);
            assert_eq!(PrimaryHeader::from_bytes(&h.to_bytes()), h);
        }
        for bits in 0..4 {
            assert_eq!(SequenceFlags::from_bits(bits).bits(), bits);
        }
    }

    // ---- packet files -----------------------------------------------------------------

    #[test]
    fn viirs_packet_file() {
        let bytes = std::fs::read(VIIRS).unwrap();
        let pkts = split_file(&bytes);
        assert_eq!(pkts.len(), 100);
        let apids: BTreeSet<u16> = pkts.iter().map(Packet::apid).collect();
        assert_eq!(apids, BTreeSet::from([806, 808, 809, 811, 812, 821, 826]));
        let count = |f| pkts.iter().filter(|p| p.header.sequence_flags == f).count();
        assert_eq!(count(SequenceFlags::First), 6);
        assert_eq!(count(SequenceFlags::Continuation), 88);
        assert_eq!(count(SequenceFlags::Last), 5);
        assert_eq!(count(SequenceFlags::Unsegmented), 1);
        let joined: Vec<u8> = pkts.iter().flat_map(|p| p.data.iter().copied()).collect();
        assert_eq!(joined, bytes);
        for p in &pkts {
            let v = SpacePacket::new_checked(&p.data[..]).unwrap();
            assert_eq!(v.header(), p.header);
        }

        // Same result for any chunking, including one byte at a time.
        let mut rng = Rng(0x5EED);
        for round in 0..6 {
            let mut s = PacketStream::new(MAX_PACKET_LEN);
            let mut out = Vec::new();
            let mut rest = bytes.as_slice();
            while !rest.is_empty() {
                let n = if round == 0 {
                    1
                } else {
                    rng.range(1, 4000).min(rest.len())
                };
                let (a, b) = rest.split_at(n);
                s.push(a, &mut out);
                rest = b;
            }
            s.flush(&mut out);
            assert_eq!(packets_of(&out), pkts, "round {round}");
            assert_eq!(out.len(), 100);
            assert_eq!(s.stats().packets, 100);
        }
    }

    #[test]
    fn cygnss_split_by_apid_byte_for_byte() {
        let pkts = split_file(&std::fs::read(CYGNSS).unwrap());
        assert_eq!(pkts.len(), 101);
        let mut by_apid: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        for p in &pkts {
            by_apid
                .entry(p.apid())
                .or_default()
                .extend_from_slice(&p.data);
        }
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(CYGNSS_SPLIT).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let apid: u16 = name
                .strip_prefix("apid")
                .and_then(|n| n.strip_suffix(".tlm"))
                .unwrap()
                .parse()
                .unwrap();
            files.insert(apid, std::fs::read(&path).unwrap());
        }
        assert_eq!(files.len(), 7);
        assert_eq!(
            by_apid.keys().copied().collect::<Vec<_>>(),
            files.keys().copied().collect::<Vec<_>>()
        );
        for (apid, want) in &files {
            assert!(by_apid[apid] == *want, "APID {apid} differs");
        }
    }

    #[test]
    fn cygnss_sequence_gaps() {
        let pkts = split_file(&std::fs::read(CYGNSS).unwrap());
        let mut t = SequenceTracker::new();
        let mut gaps = Vec::new();
        for p in &pkts {
            if let Some(m) = t.observe(&p.header, p.data.len()) {
                gaps.push((p.apid(), p.header.sequence_count, m));
            }
        }
        assert_eq!(t.total_gaps(), 9);
        // The data: APIDs 384, 386 and 392 advance their count by 10 per packet (9 missing
        // each time); the others are contiguous.
        let per: Vec<(u16, u64, u64, u64)> = t
            .by_apid()
            .map(|(a, c)| (a, c.packets, c.sequence_gaps, c.missing))
            .collect();
        assert_eq!(
            per,
            vec![
                (384, 4, 3, 27),
                (386, 4, 3, 27),
                (391, 1, 0, 0),
                (392, 4, 3, 27),
                (393, 40, 0, 0),
                (394, 39, 0, 0),
                (1313, 9, 0, 0),
            ]
        );
        assert!(gaps.iter().all(|&(_, _, m)| m == 9));
        assert!(gaps.contains(&(392, 1750, 9)));
        assert_eq!(t.total_missing(), 81);
        assert_eq!(t.get(393).unwrap().bytes, 5600);
        assert_eq!(t.get(1313).unwrap().bytes, 2448);
    }

    #[test]
    fn europa_clipper_crc() {
        let crc = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);
        assert_eq!(crc.checksum(b"123456789"), 0x29B1);
        let bytes = std::fs::read(EUROPA).unwrap();
        let pkts = split_file(&bytes);
        assert_eq!(pkts.len(), 1030);
        for p in &pkts {
            let (body, fecf) = p.data.split_at(p.data.len() - 2);
            assert_eq!(
                crc.checksum(body),
                u16::from_be_bytes([fecf[0], fecf[1]]),
                "APID {} count {}",
                p.apid(),
                p.header.sequence_count
            );
        }
        // A flipped bit is caught (the check is not vacuous).
        let mut bad = pkts[0].data.to_vec();
        bad[10] ^= 1;
        let (body, fecf) = bad.split_at(bad.len() - 2);
        assert_ne!(crc.checksum(body), u16::from_be_bytes([fecf[0], fecf[1]]));
    }

    // ---- packet stream errors ---------------------------------------------------------

    #[test]
    fn stream_resyncs_after_bad_version() {
        let bytes = std::fs::read(VIIRS).unwrap();
        let mut input = vec![0xFF; 5];
        input.extend_from_slice(&bytes);
        for chunk in [1, 3, 7, 100_000] {
            let mut s = PacketStream::default();
            let mut out = Vec::new();
            for c in input.chunks(chunk) {
                s.push(c, &mut out);
            }
            s.flush(&mut out);
            assert_eq!(
                out[0],
                PacketEvent::Dropped {
                    apid: None,
                    bytes: 5,
                    reason: DropReason::BadVersion
                }
            );
            assert_eq!(packets_of(&out).len(), 100, "chunk {chunk}");
            assert_eq!(out.len(), 101);
            assert_eq!(s.stats().bad_version, 1);
        }
    }

    #[test]
    fn stream_skips_too_long_and_reports_end_of_stream() {
        let mut rng = Rng(3);
        let big = make_packet(10, 0, 2000, &mut rng);
        let small = make_packet(11, 0, 50, &mut rng);
        let tail = make_packet(12, 0, 40, &mut rng);
        let mut input = big.clone();
        input.extend_from_slice(&small);
        input.extend_from_slice(&tail[..25]);
        for chunk in [1, 5, 64, 10_000] {
            let mut s = PacketStream::new(1000);
            let mut out = Vec::new();
            for c in input.chunks(chunk) {
                s.push(c, &mut out);
            }
            s.flush(&mut out);
            assert_eq!(
                out,
                vec![
                    PacketEvent::Dropped {
                        apid: Some(10),
                        bytes: 2000,
                        reason: DropReason::TooLong
                    },
                    PacketEvent::Packet(Packet {
                        header: PrimaryHeader::parse(&small).unwrap(),
                        data: Bytes::from(small.clone())
                    }),
                    PacketEvent::Dropped {
                        apid: Some(12),
                        bytes: 25,
                        reason: DropReason::EndOfStream
                    },
                ],
                "chunk {chunk}"
            );
            let st = s.stats();
            assert_eq!((st.too_long, st.end_of_stream, st.packets), (1, 1, 1));
        }
    }

    #[test]
    fn stream_random_garbage_never_panics_and_accounts() {
        let mut rng = Rng(99);
        for _ in 0..300 {
            let mut input = Vec::new();
            for _ in 0..rng.range(0, 20) {
                if rng.chance(50) {
                    let n = rng.range(7, 300);
                    input.extend(make_packet(rng.range(0, 2047) as u16, 0, n, &mut rng));
                } else {
                    input.extend((0..rng.range(0, 40)).map(|_| rng.next() as u8));
                }
            }
            let mut s = PacketStream::new(rng.range(0, 400));
            let mut out = Vec::new();
            let mut rest = input.as_slice();
            while !rest.is_empty() {
                let (a, b) = rest.split_at(rng.range(1, 64).min(rest.len()));
                s.push(a, &mut out);
                rest = b;
            }
            s.flush(&mut out);
            let st = s.stats();
            assert_eq!(
                st.packet_bytes + st.idle_bytes + st.dropped_bytes + st.skipped_bytes,
                input.len() as u64
            );
            assert_eq!(s.buffered(), 0);
            for e in &out {
                if let PacketEvent::Packet(p) = e {
                    SpacePacket::new_checked(&p.data[..]).unwrap();
                }
            }
        }
    }

    // ---- frame packet zones -----------------------------------------------------------

    #[test]
    fn mpdu_reassembly_of_viirs() {
        let (packets, idle) = viirs_with_idle();
        for size in [884, 882, 100, 7, 3, 1] {
            let layout = Layout::new(packets.clone(), size);
            if size < 884 {
                assert!(layout.split_headers() > 0, "size {size}");
            }
            let lost = vec![false; layout.zones.len()];
            let mut asm = PacketAssembler::default();
            let out = layout.run(&lost, &mut asm);
            let expected = layout.expected(&lost);
            assert_eq!(expected.len(), 100);
            assert!(out == expected, "size {size}");
            let st = asm.stats();
            assert_eq!(st.packets, 100);
            // Inserted idle packets plus the final padding packet(s).
            assert!(st.idle_packets >= idle as u64, "size {size}");
            assert_eq!(st.idle_packets as usize, layout.packets.len() - 100);
            assert_eq!((st.dropped, st.skipped_bytes), (0, 0), "size {size}");
        }
    }

    #[test]
    fn mpdu_header_split_across_zones() {
        // Packet A (20 bytes) + first 3 header bytes of B in zone 1; rest of B in zone 2.
        let mut rng = Rng(1);
        let a = make_packet(100, 1, 20, &mut rng);
        let b = make_packet(101, 2, 30, &mut rng);
        let mut z1 = a.clone();
        z1.extend_from_slice(&b[..3]);
        let mut asm = PacketAssembler::default();
        let mut out = Vec::new();
        asm.push_zone(0, &z1, true, &mut out);
        assert_eq!(asm.buffered(), 3);
        asm.push_zone(FHP_NO_HEADER, &b[3..5], true, &mut out); // still inside the header
        assert_eq!(asm.buffered(), 5);
        asm.push_zone(FHP_NO_HEADER, &b[5..], true, &mut out);
        assert_eq!(packets_of(&out).len(), 2);
        assert_eq!(packets_of(&out)[0].data, a);
        assert_eq!(packets_of(&out)[1].data, b);
        assert_eq!(asm.stats().dropped, 0);
    }

    #[test]
    fn mpdu_lost_zone_drops_exactly_the_touching_packets() {
        let (packets, _) = viirs_with_idle();
        for size in [884, 100, 7] {
            let layout = Layout::new(packets.clone(), size);
            let n = layout.zones.len();
            for k in [0, 1, n / 3, n / 2, n - 2] {
                let mut lost = vec![false; n];
                lost[k] = true;
                let mut asm = PacketAssembler::default();
                let out = layout.run(&lost, &mut asm);
                assert!(out == layout.expected(&lost), "size {size} lost {k}");
                // Independent check: every emitted packet is an original and does not touch
                // the lost zone.
                let lo = k * size;
                let hi = lo + size;
                for p in packets_of(&out) {
                    let i = layout
                        .packets
                        .iter()
                        .position(|q| q[..] == p.data[..])
                        .unwrap();
                    let s = layout.starts[i];
                    assert!(s + p.data.len() <= lo || s >= hi);
                }
                let st = asm.stats();
                assert_eq!(st.dropped, st.frame_gap_drops);
                assert!(st.frame_gap_drops <= 1);
            }
        }
        // A zone lying inside a large VIIRS packet: losing it must drop that packet.
        let layout = Layout::new(packets.clone(), 884);
        let k = (1..layout.zones.len())
            .find(|&k| {
                layout.starts.iter().zip(&layout.packets).any(|(&s, p)| {
                    s < k * 884 && s + p.len() > (k + 1) * 884 && p[0..2] != [0x07, 0xFF]
                }) && k > 40
            })
            .unwrap();
        let mut lost = vec![false; layout.zones.len()];
        lost[k] = true;
        let mut asm = PacketAssembler::default();
        let out = layout.run(&lost, &mut asm);
        assert_eq!(asm.stats().frame_gap_drops, 1);
        assert!(packets_of(&out).len() < 100);
    }

    #[test]
    fn mpdu_header_mismatch_resyncs_at_pointer() {
        // Hand-made: packet A (20 bytes) in progress, next zone says a header starts at 4.
        let mut rng = Rng(2);
        let a = make_packet(100, 1, 20, &mut rng);
        let b = make_packet(101, 2, 12, &mut rng);
        let mut z2 = vec![0xAA; 4];
        z2.extend_from_slice(&b);
        let mut asm = PacketAssembler::default();
        let mut out = Vec::new();
        asm.push_zone(0, &a[..10], true, &mut out);
        asm.push_zone(4, &z2, true, &mut out);
        assert_eq!(
            out,
            vec![
                PacketEvent::Dropped {
                    apid: Some(100),
                    bytes: 14,
                    reason: DropReason::HeaderMismatch
                },
                PacketEvent::Packet(Packet {
                    header: PrimaryHeader::parse(&b).unwrap(),
                    data: Bytes::from(b.clone())
                }),
            ]
        );
        // A header starting while the packet in progress should still be running: 0x7FF
        // zone shorter than needed is fine, but a zone where the packet ends early without a
        // pointer is a mismatch.
        let mut asm = PacketAssembler::default();
        let mut out = Vec::new();
        asm.push_zone(0, &a[..10], true, &mut out);
        asm.push_zone(FHP_NO_HEADER, &z2, true, &mut out);
        assert_eq!(
            out,
            vec![PacketEvent::Dropped {
                apid: Some(100),
                bytes: 26,
                reason: DropReason::HeaderMismatch
            }]
        );
        assert_eq!(asm.stats().header_mismatch, 1);

        // Real data: a zone is lost but the frame layer wrongly says "continuous". The FHP
        // of the following zone exposes it: the packet in progress is dropped (never merged)
        // and extraction resumes at the pointer.
        let (packets, _) = viirs_with_idle();
        let layout = Layout::new(packets, 884);
        let k = (2..layout.zones.len() - 1)
            .find(|&k| {
                let end_prev = k * layout.size;
                // A non-idle packet with a complete header is in progress across zone k, and
                // zone k+1 has a header.
                let in_progress = layout.starts.iter().zip(&layout.packets).any(|(&s, p)| {
                    s + 6 <= end_prev && s + p.len() > end_prev && p[0..2] != [0x07, 0xFF]
                });
                in_progress && layout.zones[k + 1].0 != FHP_NO_HEADER
            })
            .unwrap();
        let mut asm = PacketAssembler::default();
        let mut out = Vec::new();
        for (z, (fhp, zone)) in layout.zones.iter().enumerate() {
            if z != k {
                asm.push_zone(*fhp, zone, true, &mut out);
            }
        }
        asm.flush(&mut out);
        let st = asm.stats();
        assert_eq!((st.header_mismatch, st.dropped), (1, 1));
        let mut lost = vec![false; layout.zones.len()];
        lost[k] = true;
        let want: Vec<Packet> = packets_of(&layout.expected(&lost));
        assert_eq!(packets_of(&out), want);
    }

    #[test]
    fn mpdu_bad_pointer_and_recovery() {
        let mut rng = Rng(4);
        let a = make_packet(100, 1, 20, &mut rng);
        let b = make_packet(101, 2, 12, &mut rng);
        let mut asm = PacketAssembler::default();
        let mut out = Vec::new();
        asm.push_zone(0, &a[..10], true, &mut out);
        asm.push_zone(10, &a[10..], true, &mut out); // pointer == zone length: outside
        asm.push_zone(0x700, &[1, 2, 3], true, &mut out); // no packet in progress
        asm.push_zone(FHP_NO_HEADER, &[9; 8], true, &mut out); // hunting: skipped
        asm.push_zone(0, &b, true, &mut out);
        assert_eq!(
            out,
            vec![
                PacketEvent::Dropped {
                    apid: Some(100),
                    bytes: 20,
                    reason: DropReason::BadPointer
                },
                PacketEvent::Dropped {
                    apid: None,
                    bytes: 3,
                    reason: DropReason::BadPointer
                },
                PacketEvent::Packet(Packet {
                    header: PrimaryHeader::parse(&b).unwrap(),
                    data: Bytes::from(b.clone())
                }),
            ]
        );
        let st = asm.stats();
        assert_eq!((st.bad_pointer, st.skipped_bytes, st.packets), (2, 8, 1));
    }

    #[test]
    fn mpdu_idle_zone_too_long_and_bad_version() {
        let mut rng = Rng(5);
        let a = make_packet(100, 1, 20, &mut rng);
        let big = make_packet(102, 3, 300, &mut rng);
        let b = make_packet(101, 2, 12, &mut rng);
        let mut asm = PacketAssembler::new(200);
        let mut out = Vec::new();
        // Idle-only zone (0x7FE) between two parts of A leaves A intact.
        asm.push_zone(0, &a[..10], true, &mut out);
        asm.push_zone(FHP_IDLE, &[0x55; 50], true, &mut out);
        asm.push_zone(FHP_NO_HEADER, &a[10..], true, &mut out);
        // Too long: dropped, resync at the next pointer.
        asm.push_zone(0, &big[..100], true, &mut out);
        let mut z = big[100..].to_vec();
        z.extend_from_slice(&b);
        asm.push_zone(200, &z, true, &mut out);
        // Version 7 header: sync lost, rest of zone dropped.
        asm.push_zone(0, &[0xE0, 0, 0, 0, 0, 3, 1, 2, 3, 4], true, &mut out);
        asm.push_zone(0, &b, true, &mut out);
        let pb = PacketEvent::Packet(Packet {
            header: PrimaryHeader::parse(&b).unwrap(),
            data: Bytes::from(b.clone()),
        });
        assert_eq!(
            out,
            vec![
                PacketEvent::Packet(Packet {
                    header: PrimaryHeader::parse(&a).unwrap(),
                    data: Bytes::from(a.clone())
                }),
                PacketEvent::Dropped {
                    apid: Some(102),
                    bytes: 100,
                    reason: DropReason::TooLong
                },
                pb.clone(),
                PacketEvent::Dropped {
                    apid: None,
                    bytes: 10,
                    reason: DropReason::BadVersion
                },
                pb,
            ]
        );
        let st = asm.stats();
        assert_eq!((st.idle_zones, st.too_long, st.bad_version), (1, 1, 1));
        assert_eq!(st.skipped_bytes, 200);
    }

    #[test]
    fn mpdu_end_of_stream_and_gap_in_header() {
        let mut rng = Rng(6);
        let a = make_packet(100, 1, 20, &mut rng);
        let mut asm = PacketAssembler::default();
        let mut out = Vec::new();
        asm.push_zone(0, &a[..4], true, &mut out);
        // Gap while only 4 header bytes are known: APID unknown.
        asm.push_zone(FHP_NO_HEADER, &a[8..], false, &mut out);
        asm.push_zone(0, &a[..15], true, &mut out);
        asm.flush(&mut out);
        assert_eq!(
            out,
            vec![
                PacketEvent::Dropped {
                    apid: None,
                    bytes: 4,
                    reason: DropReason::FrameGap
                },
                PacketEvent::Dropped {
                    apid: Some(100),
                    bytes: 15,
                    reason: DropReason::EndOfStream
                },
            ]
        );
        assert_eq!(asm.stats().skipped_bytes, 12);
        assert_eq!(asm.buffered(), 0);
    }

    /// Property test (seeded loop): random packets, zone sizes and lost zones. Every emitted
    /// packet is an original byte for byte, and emitted + dropped + unseen accounts for all.
    #[test]
    fn mpdu_property_random_layouts_and_losses() {
        let mut rng = Rng(0xC0FFEE);
        let (mut total_drops, mut total_split, mut total_unseen) = (0, 0, 0);
        for iter in 0..400 {
            let n = rng.range(1, 60);
            let big = rng.chance(20);
            let packets: Vec<Vec<u8>> = (0..n)
                .map(|i| {
                    let len = rng.range(7, if big { 3000 } else { 300 });
                    if rng.chance(10) {
                        idle_packet(len)
                    } else {
                        make_packet(rng.range(0, 2046) as u16, i as u16, len, &mut rng)
                    }
                })
                .collect();
            let size = match rng.range(0, 3) {
                0 => rng.range(1, 8),
                1 => rng.range(1, 100),
                _ => rng.range(100, 2000),
            };
            let layout = Layout::new(packets, size);
            let nz = layout.zones.len();
            let p_loss = rng.range(0, 30) as u64;
            let mut lost: Vec<bool> = (0..nz).map(|_| rng.chance(p_loss)).collect();
            lost[nz - 1] = false;
            let mut asm = PacketAssembler::default();
            let out = layout.run(&lost, &mut asm);
            let expected = layout.expected(&lost);
            assert!(out == expected, "iteration {iter} size {size}");
            // Accounting by packet: each original is emitted, counted as idle, broken by a
            // lost zone (one drop event unless it is an idle packet whose header was seen)
            // or never started (its first byte was in a lost zone).
            let st = asm.stats();
            let (mut unseen, mut broken) = (0u64, 0u64);
            for (p, &s) in layout.packets.iter().zip(&layout.starts) {
                let (first, last) = (layout.zone_of(s), layout.zone_of(s + p.len() - 1));
                if lost[first] {
                    unseen += 1;
                } else if lost[first..=last].iter().any(|&l| l) {
                    broken += 1;
                }
            }
            let emitted = packets_of(&out).len() as u64;
            assert_eq!(st.dropped, st.frame_gap_drops);
            assert!(st.dropped <= broken);
            assert_eq!(
                emitted + st.idle_packets + broken + unseen,
                layout.packets.len() as u64,
                "iteration {iter}"
            );
            total_drops += st.dropped;
            total_split += layout.split_headers();
            total_unseen += unseen;
            for p in packets_of(&out) {
                assert!(layout.packets.iter().any(|q| q[..] == p.data[..]));
            }
        }
        // The random cases really exercise losses, unseen starts and split headers.
        assert!(total_drops > 100 && total_unseen > 100 && total_split > 100);
    }

    #[test]
    fn assembler_random_input_never_panics_and_accounts() {
        let mut rng = Rng(0xBAD);
        for _ in 0..200 {
            let mut asm = PacketAssembler::new(rng.range(0, 3000));
            let mut out = Vec::new();
            let mut fed = 0u64;
            for _ in 0..rng.range(1, 40) {
                let len = rng.range(0, 300);
                let mut zone: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if rng.chance(50) && len > 6 {
                    zone[0] &= 0x1F; // plausible version-0 header
                }
                let fhp = match rng.range(0, 4) {
                    0 => FHP_NO_HEADER,
                    1 => FHP_IDLE,
                    2 => rng.next() as u16,
                    _ => rng.range(0, len) as u16,
                };
                asm.push_zone(fhp, &zone, rng.chance(80), &mut out);
                fed += len as u64;
                assert_accounting(&asm, fed);
            }
            asm.flush(&mut out);
            assert_accounting(&asm, fed);
            assert_eq!(asm.buffered(), 0);
            for e in &out {
                if let PacketEvent::Packet(p) = e {
                    let v = SpacePacket::new_checked(&p.data[..]).unwrap();
                    assert_eq!(v.version(), 0);
                }
            }
        }
    }

    // ---- sequence counts --------------------------------------------------------------

    fn hdr(apid: u16, seq: u16) -> PrimaryHeader {
        PrimaryHeader {
            version: 0,
            telecommand: false,
            secondary_header: false,
            apid,
            sequence_flags: SequenceFlags::Unsegmented,
            sequence_count: seq,
            data_length_field: 0,
        }
    }

    #[test]
    fn sequence_count_wraps_at_16384() {
        let mut t = SequenceTracker::default();
        for seq in [16382, 16383, 0, 1] {
            assert_eq!(t.observe(&hdr(5, seq), 7), None, "seq {seq}");
        }
        assert_eq!(t.total_gaps(), 0);
        // Gap across the wrap: 16383 -> 2 misses 0 and 1.
        assert_eq!(t.observe(&hdr(6, 16383), 7), None);
        assert_eq!(t.observe(&hdr(6, 2), 7), Some(2));
        // APIDs are independent.
        assert_eq!(t.observe(&hdr(5, 2), 7), None);
        assert_eq!(t.observe(&hdr(5, 10), 7), Some(7));
        assert_eq!(t.total_gaps(), 2);
        assert_eq!(
            t.get(5).unwrap(),
            ApidCounters {
                packets: 6,
                bytes: 42,
                sequence_gaps: 1,
                missing: 7
            }
        );
        assert_eq!(t.by_apid().count(), 2);
    }
}
