use super::*;
use crate::Error;
use bytes::Bytes;
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
            PacketEvent::Dropped { .. } | PacketEvent::Counted { .. } => None,
        })
        .collect()
}

/// The events of an assembler that keeps packet bytes as one that does not gives them.
fn without_bytes(events: &[PacketEvent]) -> Vec<PacketEvent> {
    events
        .iter()
        .map(|e| match e {
            PacketEvent::Packet(p) => PacketEvent::Counted {
                header: p.header,
                len: p.data.len(),
            },
            other => other.clone(),
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
        self.feed(lost, asm, |asm, fhp, zone, continuous, out| {
            asm.push_zone(fhp, zone, continuous, out);
        })
    }

    /// [`Layout::run`] with each zone still randomized: XORed with a random mask ([`masked`])
    /// and pushed with it.
    fn run_masked(
        &self,
        lost: &[bool],
        asm: &mut PacketAssembler,
        rng: &mut Rng,
    ) -> Vec<PacketEvent> {
        self.feed(lost, asm, |asm, fhp, zone, continuous, out| {
            let (mask, sent) = masked(zone, rng);
            asm.push_masked_zone(fhp, &sent, &mask, continuous, out);
        })
    }

    /// The zones not `lost` through `push` (the zone after a lost one not continuous), then
    /// the end of the stream, the bytes accounted for after each.
    fn feed(
        &self,
        lost: &[bool],
        asm: &mut PacketAssembler,
        mut push: impl FnMut(&mut PacketAssembler, u16, &[u8], bool, &mut Vec<PacketEvent>),
    ) -> Vec<PacketEvent> {
        let mut out = Vec::new();
        let mut prev_lost = false;
        let mut fed = 0u64;
        for ((fhp, zone), &l) in self.zones.iter().zip(lost) {
            if !l {
                push(asm, *fhp, zone, !prev_lost, &mut out);
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

/// A random mask over `zone` (now and then shorter than it, or longer, as the PN sequence over
/// a frame is longer than its packet zone) and the zone XORed with it where both have bytes.
fn masked(zone: &[u8], rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let n = match rng.range(0, 5) {
        0 => rng.range(0, zone.len() + 1),
        1 => zone.len() + rng.range(1, 64),
        _ => zone.len(),
    };
    let mask: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
    let mut sent = zone.to_vec();
    for (s, m) in sent.iter_mut().zip(&mask) {
        *s ^= m;
    }
    (mask, sent)
}

fn assert_accounting(asm: &PacketAssembler, fed: u64) {
    let s = asm.stats();
    assert_eq!(
        s.packet_bytes + s.idle_bytes + s.dropped_bytes + s.skipped_bytes + asm.buffered() as u64,
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
        Error::PacketTooShort { need: 6, got: 5 }
    );
    assert_eq!(
        SpacePacket::new_checked(&viirs[..9317]).unwrap_err(),
        Error::PacketLengthMismatch {
            header_says: 9318,
            got: 9317
        }
    );
    assert_eq!(
        SpacePacket::new_checked(&viirs[..9319]).unwrap_err(),
        Error::PacketLengthMismatch {
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
        // Without packet bytes: the same events (headers and lengths) and counters.
        let mut counting = PacketAssembler::without_data(MAX_PACKET_LEN);
        let counted = layout.run(&lost, &mut counting);
        assert!(
            counted == without_bytes(&out),
            "iteration {iter} size {size}"
        );
        assert_eq!(counting.stats(), asm.stats());
        // Zones still randomized, read through their masks: the same, kept or counted (the
        // masks drawn from a generator of their own, so the layouts stay the same).
        let mut masks = Rng(0x5EED ^ iter as u64);
        let mut through = PacketAssembler::default();
        assert!(layout.run_masked(&lost, &mut through, &mut masks) == out);
        assert_eq!(through.stats(), asm.stats());
        let mut through = PacketAssembler::without_data(MAX_PACKET_LEN);
        assert!(layout.run_masked(&lost, &mut through, &mut masks) == without_bytes(&out));
        assert_eq!(through.stats(), asm.stats());
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
    for case in 0..200u64 {
        let max = rng.range(0, 3000);
        let mut asm = PacketAssembler::new(max);
        let mut counting = PacketAssembler::without_data(max);
        let mut counted = Vec::new();
        let mut out = Vec::new();
        // The same zones still randomized, read through their masks.
        let mut through = PacketAssembler::new(max);
        let mut through_out = Vec::new();
        let mut masks = Rng(0x5EED ^ case);
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
            let continuous = rng.chance(80);
            asm.push_zone(fhp, &zone, continuous, &mut out);
            counting.push_zone(fhp, &zone, continuous, &mut counted);
            let (mask, sent) = masked(&zone, &mut masks);
            through.push_masked_zone(fhp, &sent, &mask, continuous, &mut through_out);
            assert_eq!(through.stats(), asm.stats());
            fed += len as u64;
            assert_accounting(&asm, fed);
            assert_eq!(counting.stats(), asm.stats());
            assert_eq!(counting.buffered(), asm.buffered());
        }
        asm.flush(&mut out);
        counting.flush(&mut counted);
        through.flush(&mut through_out);
        assert_accounting(&asm, fed);
        assert_eq!(asm.buffered(), 0);
        assert_eq!(counting.stats(), asm.stats());
        assert!(counted == without_bytes(&out));
        assert!(through_out == out);
        assert_eq!(through.stats(), asm.stats());
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
