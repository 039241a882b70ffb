//! Packet reassembly: from the packet zones of M_PDUs / TM frame data fields with their
//! First Header Pointer ([`PacketAssembler`], CCSDS 732.0-B-4 section 4.1.4 and 132.0-B-3
//! section 4.1.2.7), and from a plain stream of concatenated packets ([`PacketStream`]).

use super::view::{Packet, PrimaryHeader};
use super::{FHP_IDLE, FHP_NO_HEADER, MAX_PACKET_LEN, PRIMARY_HEADER_LEN};
use bytes::{Bytes, BytesMut};

/// Why bytes were discarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
#[non_exhaustive]
pub enum PacketEvent {
    /// A complete packet (never an idle packet).
    Packet(Packet),
    /// A complete packet (never an idle packet) of an assembler that does not keep packet
    /// bytes ([`PacketAssembler::without_data`]): its header and length only.
    Counted {
        /// Its primary header.
        header: PrimaryHeader,
        /// Its length, primary header included.
        len: usize,
    },
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

    /// Counts a complete packet of `len` bytes; true when it is not an idle packet (and is
    /// handed on).
    fn count_complete(&mut self, header: PrimaryHeader, len: usize) -> bool {
        let idle = header.is_idle();
        let (n, bytes) = if idle {
            (&mut self.idle_packets, &mut self.idle_bytes)
        } else {
            (&mut self.packets, &mut self.packet_bytes)
        };
        Self::add(n, 1);
        Self::add(bytes, len);
        !idle
    }

    fn record_packet(&mut self, out: &mut Vec<PacketEvent>, header: PrimaryHeader, data: Bytes) {
        if self.count_complete(header, data.len()) {
            out.push(PacketEvent::Packet(Packet { header, data }));
        }
    }

    /// [`AssemblerStats::record_packet`] of a packet whose bytes are not kept.
    fn record_counted(&mut self, out: &mut Vec<PacketEvent>, header: PrimaryHeader, len: usize) {
        if self.count_complete(header, len) {
            out.push(PacketEvent::Counted { header, len });
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

/// Bytes as the assemblers read them: `data` XOR `mask` (the PN sequence over a packet zone
/// still randomized as received, so that only the bytes read are derandomized), or `data`
/// itself when `mask` is empty ([`Zone::plain`]). Bytes past the end of a shorter mask are
/// read as they are.
#[derive(Clone, Copy)]
struct Zone<'a> {
    data: &'a [u8],
    mask: &'a [u8],
}

impl<'a> Zone<'a> {
    /// `data` as it is.
    fn plain(data: &'a [u8]) -> Self {
        Zone { data, mask: &[] }
    }

    fn len(self) -> usize {
        self.data.len()
    }

    fn is_empty(self) -> bool {
        self.data.is_empty()
    }

    /// Its first `n` bytes (`None` when it is shorter).
    fn first(self, n: usize) -> Option<Zone<'a>> {
        Some(Zone {
            data: self.data.get(..n)?,
            mask: self.mask.get(..n.min(self.mask.len())).unwrap_or_default(),
        })
    }

    /// Its bytes from `at` on (`None` when it is shorter).
    fn from(self, at: usize) -> Option<Zone<'a>> {
        Some(Zone {
            data: self.data.get(at..)?,
            mask: self.mask.get(at.min(self.mask.len())..).unwrap_or_default(),
        })
    }

    /// Its bytes, unmasked, written over the start of `dst` (as many as both have).
    fn read_into(self, dst: &mut [u8]) {
        let n = dst.len().min(self.data.len());
        for (d, s) in dst.iter_mut().zip(self.data) {
            *d = *s;
        }
        for (d, m) in dst.iter_mut().take(n).zip(self.mask) {
            *d ^= *m;
        }
    }

    /// Its first `N` bytes, unmasked.
    fn array<const N: usize>(self) -> Option<[u8; N]> {
        let mut a = [0u8; N];
        self.first(N)?.read_into(&mut a);
        Some(a)
    }

    /// Appends its bytes, unmasked, to `buf`.
    fn append_to(self, buf: &mut BytesMut) {
        let at = buf.len();
        buf.extend_from_slice(self.data);
        if let Some(tail) = buf.get_mut(at..) {
            for (d, m) in tail.iter_mut().zip(self.mask) {
                *d ^= *m;
            }
        }
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
    /// Header known, `have < total` bytes of it seen; `buf` holds them (allocated with
    /// capacity `total`), or nothing when packet bytes are not kept.
    Body {
        header: PrimaryHeader,
        total: usize,
        buf: BytesMut,
        have: usize,
    },
}

impl Partial {
    /// The first header bytes of a packet (up to 5: a zone ends within its header).
    fn header_from(bytes: Zone<'_>) -> Self {
        let mut buf = [0u8; PRIMARY_HEADER_LEN];
        bytes.read_into(&mut buf);
        Partial::Header {
            buf,
            len: bytes.len().min(PRIMARY_HEADER_LEN),
        }
    }

    /// A packet of `total` bytes begun by `bytes` (its header first).
    fn body_from(header: PrimaryHeader, total: usize, bytes: Zone<'_>, keep: bool) -> Self {
        let mut buf = BytesMut::new();
        if keep {
            buf.reserve(total);
            bytes.append_to(&mut buf);
        }
        Partial::Body {
            header,
            total,
            buf,
            have: bytes.len(),
        }
    }

    fn buffered(&self) -> usize {
        match self {
            Partial::Header { len, .. } => *len,
            Partial::Body { have, .. } => *have,
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
    /// Packet bytes are copied out ([`PacketEvent::Packet`]), or only counted
    /// ([`PacketEvent::Counted`]).
    keep: bool,
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
            keep: true,
        }
    }

    /// An assembler that checks and counts packets exactly as [`PacketAssembler::new`] but
    /// does not copy their bytes: each complete packet is a [`PacketEvent::Counted`] (header
    /// and length) instead of a [`PacketEvent::Packet`]; drops and counters are the same.
    pub fn without_data(max_packet_len: usize) -> Self {
        Self {
            keep: false,
            ..Self::new(max_packet_len)
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
        self.push(first_header_pointer, Zone::plain(zone), continuous, out);
    }

    /// [`PacketAssembler::push_zone`] of a zone still randomized as received: its bytes are
    /// `zone` XOR `mask` (the PN sequence over the zone; bytes past a shorter mask are taken
    /// as they are). Only the bytes the assembler reads are derandomized: the packets'
    /// headers, and the packets' bytes when it keeps them. The same events and counters as
    /// `push_zone` of the derandomized zone.
    pub fn push_masked_zone(
        &mut self,
        first_header_pointer: u16,
        zone: &[u8],
        mask: &[u8],
        continuous: bool,
        out: &mut Vec<PacketEvent>,
    ) {
        let zone = Zone { data: zone, mask };
        self.push(first_header_pointer, zone, continuous, out);
    }

    fn push(
        &mut self,
        first_header_pointer: u16,
        zone: Zone<'_>,
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
            if let Some(rest) = zone.from(start) {
                self.extract(rest, out);
            }
        }
    }

    /// Continues a packet in progress with the next zone. Sets `self.state` when the zone is
    /// used up; returns the offset where extraction of new packets resumes.
    fn continue_partial(
        &mut self,
        partial: Partial,
        ptr: Option<usize>,
        zone: Zone<'_>,
        out: &mut Vec<PacketEvent>,
    ) -> Option<usize> {
        let discard = ptr.unwrap_or(zone.len());
        let (header, total, mut buf, mut have) = match partial {
            Partial::Body {
                header,
                total,
                buf,
                have,
            } => (header, total, buf, have),
            Partial::Header { buf: hbuf, len } => {
                let need = PRIMARY_HEADER_LEN.saturating_sub(len);
                let head = match zone.first(need) {
                    Some(head) if ptr.is_none_or(|p| p >= need) => head,
                    _ => {
                        if ptr.is_none() {
                            // Zone shorter than the rest of the header: keep collecting.
                            let mut buf = hbuf;
                            if let Some(rest) = buf.get_mut(len..) {
                                zone.read_into(rest);
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
                if let Some(rest) = full.get_mut(len..) {
                    head.read_into(rest);
                }
                let header = PrimaryHeader::from_bytes(&full);
                match validate(&header, self.max_packet_len) {
                    Ok(total) => {
                        let mut buf = BytesMut::new();
                        if self.keep {
                            buf.reserve(total);
                            buf.extend_from_slice(full.get(..len).unwrap_or_default());
                        }
                        (header, total, buf, len)
                    }
                    Err(reason) => {
                        let apid = (reason == DropReason::TooLong).then_some(header.apid);
                        self.stats.record_drop(out, apid, len + discard, reason);
                        return ptr;
                    }
                }
            }
        };
        let remaining = total.saturating_sub(have);
        let consistent = match ptr {
            None => remaining >= zone.len(),
            Some(p) => remaining == p,
        };
        if !consistent {
            self.stats.record_drop(
                out,
                Some(header.apid),
                have + discard,
                DropReason::HeaderMismatch,
            );
            return ptr;
        }
        let take = remaining.min(zone.len());
        if let (true, Some(part)) = (self.keep, zone.first(take)) {
            part.append_to(&mut buf);
        }
        have += take;
        if have >= total {
            if self.keep {
                self.stats.record_packet(out, header, buf.freeze());
            } else {
                self.stats.record_counted(out, header, total);
            }
            self.state = State::Boundary;
            ptr
        } else {
            self.state = State::InPacket(Partial::Body {
                header,
                total,
                buf,
                have,
            });
            None
        }
    }

    /// Extracts packets from `rest`, which starts at a packet header.
    fn extract(&mut self, mut rest: Zone<'_>, out: &mut Vec<PacketEvent>) {
        loop {
            let Some(hb) = rest.array::<PRIMARY_HEADER_LEN>() else {
                self.state = if rest.is_empty() {
                    State::Boundary
                } else {
                    State::InPacket(Partial::header_from(rest))
                };
                return;
            };
            let header = PrimaryHeader::from_bytes(&hb);
            match validate(&header, self.max_packet_len) {
                Err(reason) => {
                    let apid = (reason == DropReason::TooLong).then_some(header.apid);
                    self.stats.record_drop(out, apid, rest.len(), reason);
                    self.state = State::Hunting;
                    return;
                }
                Ok(total) => match (rest.first(total), rest.from(total)) {
                    (Some(pkt), Some(tail)) => {
                        if self.keep {
                            let mut data = BytesMut::with_capacity(total);
                            pkt.append_to(&mut data);
                            self.stats.record_packet(out, header, data.freeze());
                        } else {
                            self.stats.record_counted(out, header, total);
                        }
                        rest = tail;
                    }
                    _ => {
                        self.state =
                            State::InPacket(Partial::body_from(header, total, rest, self.keep));
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
                    ..
                }) => {
                    // (A packet stream always keeps packet bytes: `have` is `buf.len()`.)
                    let take = total.saturating_sub(buf.len()).min(rest.len());
                    let (head, tail) = rest.split_at_checked(take).unwrap_or((rest, &[]));
                    buf.extend_from_slice(head);
                    rest = tail;
                    if buf.len() >= total {
                        self.stats.record_packet(out, header, buf.freeze());
                    } else {
                        let have = buf.len();
                        self.state = StreamState::Packet(Partial::Body {
                            header,
                            total,
                            buf,
                            have,
                        });
                        return;
                    }
                }
                StreamState::Packet(Partial::Header { len: 0, .. }) => {
                    // Fast path: parse straight from the input; a packet wholly inside `data`
                    // is copied once.
                    let Some(hb) = rest.first_chunk::<PRIMARY_HEADER_LEN>() else {
                        if !rest.is_empty() {
                            self.state =
                                StreamState::Packet(Partial::header_from(Zone::plain(rest)));
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
                                        header,
                                        total,
                                        Zone::plain(rest),
                                        true,
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
                            self.state = StreamState::Packet(Partial::body_from(
                                header,
                                total,
                                Zone::plain(&buf),
                                true,
                            ));
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
