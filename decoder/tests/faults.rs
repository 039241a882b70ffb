//! Injected faults with known ground truth, on the real Aqua capture realigned to bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use decoder::{Event, InputFormat, RejectReason};

const CADU: usize = 1024;

fn aqua_cadus() -> Vec<Vec<u8>> {
    let c = aligned_cadus(&data("cadu/aqua.20241206T175646.dat"), 1);
    assert_eq!(c.len(), 1023);
    c
}

fn flat(cadus: &[Vec<u8>]) -> Vec<u8> {
    cadus.concat()
}

/// XORs `n` errors into each of the 4 interleaved codewords of a CADU's frame (never 0).
fn corrupt(cadu: &mut [u8], n: usize, rng: &mut Rng, codewords: &[usize]) {
    for &c in codewords {
        let mut pos: Vec<usize> = Vec::new();
        while pos.len() < n {
            let j = rng.below(255) as usize;
            if !pos.contains(&j) {
                pos.push(j);
            }
        }
        for j in pos {
            let v = 1 + rng.below(255) as u8;
            cadu[4 + j * 4 + c] ^= v;
        }
    }
}

fn frame_bytes(events: &[Event]) -> Vec<Vec<u8>> {
    frames(events).iter().map(|f| f.data.to_vec()).collect()
}

#[test]
fn up_to_16_errors_per_codeword_are_corrected_to_the_original_bytes() {
    let clean = aqua_cadus();
    let (ref_events, ref_stats) = decode("eos", InputFormat::Cadu, &flat(&clean));
    assert_eq!(ref_stats.rs.corrected, 0);
    for n in [1usize, 8, 16] {
        let mut rng = Rng(n as u64 * 1000 + 1);
        let mut bad = clean.clone();
        for c in &mut bad {
            corrupt(c, n, &mut rng, &[0, 1, 2, 3]);
        }
        let (events, s) = decode("eos", InputFormat::Cadu, &flat(&bad));
        assert_eq!(s.frames.good, 1023, "n={n}");
        assert_eq!(s.rs.corrected, 1023 * 4, "n={n}");
        assert_eq!(s.rs.corrected_symbols, 1023 * 4 * n as u64, "n={n}");
        assert_eq!(s.rs.uncorrectable, 0);
        assert_eq!(
            frame_bytes(&events),
            frame_bytes(&ref_events),
            "n={n}: corrected bytes"
        );
        assert_eq!(s.packets, ref_stats.packets, "n={n}");
    }
}

#[test]
fn seventeen_errors_are_flagged_and_never_passed_as_good() {
    let clean = aqua_cadus();
    let (ref_events, ref_stats) = decode("eos", InputFormat::Cadu, &flat(&clean));
    let ref_packets: Vec<Vec<u8>> = packets(&ref_events)
        .iter()
        .map(|p| p.data.to_vec())
        .collect();
    // Hit frames on VC 30 (which continues to the end), two of them back to back.
    let vc30: Vec<usize> = frames(&ref_events)
        .iter()
        .filter(|f| f.header.vcid == 30)
        .map(|f| (f.sync.unwrap().stream_bit / (CADU as u64 * 8)) as usize)
        .collect();
    let hit = [vc30[10], vc30[400], vc30[401], vc30[700]];
    assert_eq!(
        hit[2],
        hit[1] + 1,
        "frames 400 and 401 of VC 30 are adjacent in this capture"
    );
    let mut bad = clean;
    let mut rng = Rng(17);
    for &i in &hit {
        corrupt(&mut bad[i], 17 + (i % 3) * 5, &mut rng, &[0]);
    }
    let (events, s) = decode("eos", InputFormat::Cadu, &flat(&bad));
    assert_eq!(s.frames.rejected.rs_uncorrectable, hit.len() as u64);
    assert_eq!(s.rs.uncorrectable, hit.len() as u64);
    assert_eq!(s.rs.frames_uncorrectable, hit.len() as u64);
    assert_eq!(s.frames.good, 1023 - hit.len() as u64);
    let rejected: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Rejected {
                stream_bit,
                reason: RejectReason::RsUncorrectable,
            } => *stream_bit,
            _ => None,
        })
        .collect();
    assert_eq!(
        rejected,
        hit.iter()
            .map(|&i| (i * CADU * 8) as u64)
            .collect::<Vec<_>>()
    );
    // The lost frames appear as missing on their virtual channels.
    let missing: u64 = s.frames.missing_by_vcid.values().sum();
    let ref_missing: u64 = ref_stats.frames.missing_by_vcid.values().sum();
    assert_eq!(missing - ref_missing, hit.len() as u64);
    // Every good frame is byte-identical to the clean decode.
    let good = frame_bytes(&events);
    let reference = frame_bytes(&ref_events);
    assert!(good.iter().all(|f| reference.contains(f)));
    // Packets broken by the lost frames are dropped, never merged: every packet delivered is
    // byte-identical to one of the clean run, and some were dropped.
    let got: Vec<Vec<u8>> = packets(&events).iter().map(|p| p.data.to_vec()).collect();
    assert!(got.len() < ref_packets.len());
    for p in &got {
        assert!(
            ref_packets.contains(p),
            "a delivered packet is not one of the originals"
        );
    }
    assert!(
        s.packets.dropped.get("frame_gap").copied().unwrap_or(0) > 0,
        "{:?}",
        s.packets
    );
}

/// Removes or inserts bits right before CADU `at` (index into the aligned CADU list).
fn with_bits_changed(cadus: &[Vec<u8>], edits: &[(usize, isize)], shift: usize) -> Vec<u8> {
    let mut bits = vec![false; shift];
    let mut rng = Rng(99);
    for (i, c) in cadus.iter().enumerate() {
        for &(at, delta) in edits {
            if at == i {
                if delta < 0 {
                    for _ in 0..(-delta) {
                        bits.pop();
                    }
                } else {
                    for _ in 0..delta {
                        bits.push(rng.below(2) == 1);
                    }
                }
            }
        }
        bits.extend(to_bits(c));
    }
    from_bits(&bits)
}

#[test]
fn one_and_two_bit_slips_are_followed() {
    let cadus = aqua_cadus();
    // 1 bit lost before frame 100, 2 bits gained before 300, 1 gained before 600, 2 lost before 900.
    let input = with_bits_changed(&cadus, &[(100, -1), (300, 2), (600, 1), (900, -2)], 3);
    let (events, s) = decode("eos", InputFormat::Bits, &input);
    assert_eq!(s.sync.slipped_frames, 4, "{:?}", s.sync);
    assert_eq!(s.sync.locks, 1);
    assert_eq!(s.sync.lost, 0);
    // A deleted bit damages the last byte of the frame before it; RS repairs that.
    assert_eq!(s.frames.good, 1023);
    assert_eq!(s.frames.rejected.total(), 0);
    let slipped_events = frames(&events)
        .iter()
        .filter(|f| f.sync.is_some_and(|y| y.slip_bits != 0))
        .count();
    // Fill frames are counted but not emitted as Frame events.
    assert!((1..=4).contains(&slipped_events));
}

#[test]
fn stream_inverted_mid_capture() {
    let cadus = aqua_cadus();
    let mut bits = vec![true; 5];
    for (i, c) in cadus.iter().enumerate() {
        let b = to_bits(c);
        if i >= 600 {
            bits.extend(b.iter().map(|x| !x));
        } else {
            bits.extend(b);
        }
    }
    let (events, s) = decode("eos", InputFormat::Bits, &from_bits(&bits));
    assert_eq!(s.frames.good, 1023);
    assert_eq!(s.sync.inverted_frames, 423);
    assert_eq!(s.sync.true_frames, 600);
    assert_eq!(s.sync.lost, 0);
    assert_eq!(s.sync.polarity_changes, 1);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::PolarityChanged { inverted: true, .. })));
}

#[test]
fn stream_inverted_from_the_start() {
    let cadus = aqua_cadus();
    let inv: Vec<u8> = flat(&cadus).iter().map(|b| !b).collect();
    let (events, s) = decode("eos", InputFormat::Bits, &inv);
    assert_eq!(s.frames.good, 1023);
    assert_eq!(s.sync.inverted_frames, 1023);
    assert!(
        matches!(events.first(), Some(Event::Locked { inverted: true, .. })),
        "{:?}",
        events.first()
    );
}

#[test]
fn garbage_between_frames_is_discarded_and_sync_reacquired() {
    let cadus = aqua_cadus();
    let mut rng = Rng(4242);
    let mut bits = Vec::new();
    for (i, c) in cadus.iter().enumerate() {
        // (A lone frame between two garbage runs could not be confirmed by the next ASM.)
        if i == 200 || i == 400 || i == 650 {
            // odd bit counts move the alignment too
            let n = 8 * (5000 + i) + (i % 7);
            bits.extend((0..n).map(|_| rng.below(2) == 1));
        }
        bits.extend(to_bits(c));
    }
    let (_, s) = decode("eos", InputFormat::Bits, &from_bits(&bits));
    assert_eq!(s.frames.good, 1023, "every real frame recovered: {s:?}");
    assert_eq!(s.sync.lost, 3);
    assert_eq!(s.sync.locks, 4);
    assert!(s.sync.bits_discarded > 0);
    // Frames coasted into the garbage are held back and dropped when sync is declared lost,
    // so nothing from the garbage is passed on and no bit is emitted twice.
    assert_eq!(s.sync.flywheel_frames, 0);
    assert_eq!(s.frames.rejected.total(), 0);
    assert_eq!(s.cadus, 1023);
}

#[test]
fn corrupted_asm_is_bridged_by_the_flywheel() {
    let mut cadus = aqua_cadus();
    cadus[50][..4].copy_from_slice(&[0x55, 0x55, 0x55, 0x55]);
    cadus[51][..4].copy_from_slice(&[0x00, 0x00, 0x00, 0x00]);
    let (_, s) = decode("eos", InputFormat::Bits, &flat(&cadus));
    assert_eq!(s.sync.flywheel_frames, 2);
    assert_eq!(s.sync.lost, 0);
    assert_eq!(s.frames.good, 1023, "data behind a bad ASM is still good");
}

#[test]
fn truncated_tail_is_reported() {
    let cadus = aqua_cadus();
    let mut input = flat(&cadus[..1000]);
    input.extend_from_slice(&cadus[1000][..500]);
    let (events, s) = decode("eos", InputFormat::Bits, &input);
    assert_eq!(s.frames.good, 1000);
    assert_eq!(s.sync.truncated_bits, 500 * 8);
    let truncated: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Truncated { bits, .. } => Some(*bits),
            _ => None,
        })
        .collect();
    assert_eq!(truncated, vec![4000]);
}

#[test]
fn garbage_only_never_locks_and_never_panics() {
    let mut rng = Rng(5);
    let junk: Vec<u8> = (0..4_000_000).map(|_| rng.next() as u8).collect();
    for format in [
        InputFormat::Bits,
        InputFormat::Cadu,
        InputFormat::Frames,
        InputFormat::Packets,
    ] {
        let (_, s) = decode("eos", format, &junk);
        if matches!(format, InputFormat::Bits | InputFormat::Cadu) {
            assert_eq!(s.sync.locks, 0, "{format:?}");
            assert_eq!(s.frames.good, 0, "{format:?}");
        }
    }
}

/// A decoder of the Aqua link's CADUs with raw CADUs on.
fn raw_cadu_decoder() -> decoder::Decoder {
    let p = decoder::Profile::builtin("eos").unwrap();
    let opts = decoder::DecoderOptions {
        raw_cadus: true,
        ..decoder::DecoderOptions::default()
    };
    decoder::Decoder::new(&p, InputFormat::Cadu, opts).unwrap()
}

/// Runs `cadus` one by one through a decoder with raw CADUs on, `known` choosing per CADU
/// whether it goes in by `push_decoded` (with that decoding) or by `push`.
fn decode_cadus(
    cadus: &[Vec<u8>],
    known: &dyn Fn(usize) -> Option<decoder::DecodedCadu>,
) -> (Vec<Event>, decoder::Stats) {
    decode_cadus_with(raw_cadu_decoder(), cadus, known)
}

/// [`decode_cadus`] through the decoder `d`.
fn decode_cadus_with(
    mut d: decoder::Decoder,
    cadus: &[Vec<u8>],
    known: &dyn Fn(usize) -> Option<decoder::DecodedCadu>,
) -> (Vec<Event>, decoder::Stats) {
    let mut events = Vec::new();
    for (k, c) in cadus.iter().enumerate() {
        match known(k) {
            Some(kd) => {
                assert_eq!(kd.raw, c[..]);
                d.push_decoded(kd);
            }
            None => d.push(c),
        }
        while let Some(e) = d.poll() {
            events.push(e);
        }
    }
    d.finish();
    while let Some(e) = d.poll() {
        events.push(e);
    }
    (events, d.stats())
}

/// `push_decoded` (what a merge feeds the final decode with: the chosen copies' frames as
/// another decoder made them) gives exactly the events and counters of decoding the CADUs:
/// clean, corrected and uncorrectable frames, a CADU whose marker has bit errors (its known
/// decoding does not match the marker the synchronizer sees, so it is decoded), and the known
/// frame really stands in for Reed-Solomon (a deliberately different one shows through).
#[test]
fn known_decodings_give_the_events_and_counters_of_decoding() {
    let mut cadus = impaired_aqua(0x5eed);
    cadus[500][1] ^= 0x01;
    // What a first decoder made of each CADU: its raw bytes, frame and RS outcome.
    let (first, _) = decode_cadus(&cadus, &|_| None);
    let mut known = known_decodings(&first, cadus.len());
    assert!(known[3].as_ref().unwrap().rs.is_some_and(|o| !o.is_clean()));
    assert!(known[7].is_none(), "uncorrectable: no frame");
    // The CADU with marker bit errors: its raw CADU carries the ideal marker, so what is
    // pushed differs from the CADU as stored; give it the stored bytes with the known frame.
    if let Some(k) = known[500].as_mut() {
        k.raw = bytes::Bytes::from(cadus[500].clone());
    }
    let with = |k: usize| {
        known[k].clone().or_else(|| {
            (k % 10 == 7).then(|| decoder::DecodedCadu {
                raw: bytes::Bytes::from(cadus[k].clone()),
                frame: bytes::Bytes::from(vec![0u8; 1]),
                rs: None,
            })
        })
    };
    let (events, stats) = decode_cadus(&cadus, &with);
    assert_eq!(stats, decode_cadus(&cadus, &|_| None).1);
    assert_eq!(events, first);
    assert!(stats.rs.frames_corrected > 0 && stats.rs.frames_uncorrectable > 0);

    // A known frame that is not what RS would give shows through: it was not decoded again.
    let lie = lie(known[4].as_ref().unwrap());
    let (events, _) = decode_cadus(&cadus, &|k| (k == 4).then(|| lie.clone()));
    assert_eq!(frames_of_cadu(&events, 4), vec![lie.frame.to_vec()]);
}

/// The damaged Aqua capture of these tests: 5 errors in two codewords of every tenth CADU from
/// the fourth (corrected), 17 in one codeword of every tenth from the eighth (uncorrectable).
fn impaired_aqua(seed: u64) -> Vec<Vec<u8>> {
    let mut cadus = aqua_cadus();
    let mut rng = Rng(seed);
    for (k, c) in cadus.iter_mut().enumerate() {
        match k % 10 {
            3 => corrupt(c, 5, &mut rng, &[0, 2]),
            7 => corrupt(c, 17, &mut rng, &[1]),
            _ => {}
        }
    }
    cadus
}

/// What a decoder made of each CADU (by its position): its raw bytes, frame and RS outcome.
fn known_decodings(events: &[Event], cadus: usize) -> Vec<Option<decoder::DecodedCadu>> {
    let mut known = vec![None; cadus];
    let mut raw = None;
    for e in events {
        match e {
            Event::RawCadu { stream_bit, data } => raw = Some((*stream_bit, data.clone())),
            Event::Frame(f) => {
                let (bit, data) = raw.take().unwrap();
                known[(bit / 8 / CADU as u64) as usize] = Some(decoder::DecodedCadu {
                    raw: data,
                    frame: f.data.clone(),
                    rs: f.rs,
                });
            }
            _ => {}
        }
    }
    known
}

/// `known` with one byte of its frame changed (not what Reed-Solomon gives).
fn lie(known: &decoder::DecodedCadu) -> decoder::DecodedCadu {
    let mut f = known.frame.to_vec();
    f[100] ^= 0xff;
    decoder::DecodedCadu {
        frame: bytes::Bytes::from(f),
        ..known.clone()
    }
}

/// The frames delivered from CADU `k`.
fn frames_of_cadu(events: &[Event], k: usize) -> Vec<Vec<u8>> {
    frames(events)
        .into_iter()
        .filter(|x| {
            x.sync
                .is_some_and(|s| s.stream_bit == (k * CADU) as u64 * 8)
        })
        .map(|x| x.data.to_vec())
        .collect()
}

/// Runs `cadus` through a decoder with raw CADUs on as records ([`decoder::Decoder::push_record`],
/// or `push_record_decoded` where `known` gives a decoding) until one is refused, then pushes
/// that one and everything after it, as a merge's reader of `cadus.raw` does; `tail` is pushed
/// last. Returns the events, the counters and how many records were taken.
fn decode_records(
    cadus: &[Vec<u8>],
    known: &dyn Fn(usize) -> Option<decoder::DecodedCadu>,
    tail: &[u8],
) -> (Vec<Event>, decoder::Stats, usize) {
    let take = |d: &mut decoder::Decoder, k: usize, raw: bytes::Bytes| match known(k) {
        Some(kd) => d.push_record_decoded(kd).map_err(|kd| kd.raw),
        None => d.push_record(raw),
    };
    decode_records_by(raw_cadu_decoder(), cadus, &take, tail)
}

/// [`decode_records`] through the decoder `d`, `take` giving it each record.
#[allow(clippy::type_complexity)]
fn decode_records_by(
    mut d: decoder::Decoder,
    cadus: &[Vec<u8>],
    take: &dyn Fn(&mut decoder::Decoder, usize, bytes::Bytes) -> Result<(), bytes::Bytes>,
    tail: &[u8],
) -> (Vec<Event>, decoder::Stats, usize) {
    let mut events = Vec::new();
    let mut taken = 0;
    let mut pushing = false;
    for (k, c) in cadus.iter().enumerate() {
        let raw = bytes::Bytes::from(c.clone());
        if !pushing {
            let refused = take(&mut d, k, raw).err();
            match refused {
                None => taken += 1,
                Some(back) => {
                    assert_eq!(back, c[..], "given back untouched");
                    pushing = true;
                }
            }
        }
        if pushing {
            d.push(c);
        }
        while let Some(e) = d.poll() {
            events.push(e);
        }
    }
    d.push(tail);
    d.finish();
    while let Some(e) = d.poll() {
        events.push(e);
    }
    (events, d.stats(), taken)
}

/// Records (`cadus.raw` read back, CADU by CADU, no copy) give exactly the events and counters
/// of pushing the same bytes: clean, corrected and uncorrectable frames; at the first CADU that
/// is not a record (a marker bit error) the rest is pushed and goes on in lock from there; a
/// CADU cut short at the end is reported truncated; the records' raw CADUs are the records
/// themselves.
#[test]
fn records_decode_as_the_pushed_stream_does() {
    let cadus = impaired_aqua(0xcad0);
    let tail = cadus[9][..300].to_vec();
    let whole = [flat(&cadus), tail.clone()].concat();
    let (pushed, pushed_stats) = decode("eos", InputFormat::Cadu, &whole);
    let raw_on = |events: Vec<Event>| -> Vec<Event> {
        events
            .into_iter()
            .filter(|e| !matches!(e, Event::RawCadu { .. }))
            .collect()
    };
    let (events, stats, taken) = decode_records(&cadus, &|_| None, &tail);
    assert_eq!(taken, cadus.len());
    assert_eq!(stats, pushed_stats);
    assert_eq!(raw_on(events.clone()), pushed);
    assert!(stats.sync.truncated_bits == 300 * 8 && stats.sync.locks == 1);
    assert!(stats.rs.frames_corrected > 0 && stats.rs.frames_uncorrectable > 0);
    let raws: Vec<&bytes::Bytes> = events
        .iter()
        .filter_map(|e| match e {
            Event::RawCadu { data, .. } => Some(data),
            _ => None,
        })
        .collect();
    assert_eq!(raws.len(), cadus.len());
    assert!(raws.iter().zip(&cadus).all(|(r, c)| r[..] == c[..]));

    // A marker bit error: that CADU is no record; it and the rest are pushed, in lock.
    let mut bent = cadus.clone();
    bent[500][1] ^= 0x01;
    let (events, stats, taken) = decode_records(&bent, &|_| None, &tail);
    assert_eq!(taken, 500);
    let (pushed, pushed_stats) = decode("eos", InputFormat::Cadu, &[flat(&bent), tail].concat());
    assert_eq!(stats, pushed_stats);
    assert_eq!(raw_on(events), pushed);
    assert_eq!(stats.sync.lock_frames, cadus.len() as u64);
}

/// A record with its decoding known stands in for decoding it (as `push_decoded`), without
/// a byte comparison: the events and counters are those of decoding, and a known frame that
/// is not what RS would give shows through.
#[test]
fn known_records_give_the_events_and_counters_of_decoding() {
    let cadus = impaired_aqua(0x5eed);
    let (first, first_stats, _) = decode_records(&cadus, &|_| None, &[]);
    let known = known_decodings(&first, cadus.len());
    let (events, stats, taken) = decode_records(&cadus, &|k| known[k].clone(), &[]);
    assert_eq!(taken, cadus.len());
    assert_eq!(stats, first_stats);
    assert_eq!(events, first);
    let lie = lie(known[4].as_ref().unwrap());
    let (events, _, _) = decode_records(&cadus, &|k| (k == 4).then(|| lie.clone()), &[]);
    assert_eq!(frames_of_cadu(&events, 4), vec![lie.frame.to_vec()]);
}

/// What is not a record, or comes while pushed bits are held, is given back untouched and
/// nothing is counted: a short or long CADU, an inexact or inverted marker, garbage pushed
/// before (not yet reported as discarded), a CADU pushed before (its lock look-ahead held).
#[test]
fn what_is_not_a_record_is_given_back() {
    let cadus = aqua_cadus();
    let p = decoder::Profile::builtin("eos").unwrap();
    let fresh = || {
        decoder::Decoder::new(&p, InputFormat::Cadu, decoder::DecoderOptions::default()).unwrap()
    };
    let good = bytes::Bytes::from(cadus[0].clone());
    let inverted: Vec<u8> = cadus[0].iter().map(|b| !b).collect();
    let mut bent = cadus[0].clone();
    bent[3] ^= 0x80;
    for bad in [
        good.slice(..CADU - 1),
        bytes::Bytes::from([&cadus[0][..], &[0u8][..]].concat()),
        bytes::Bytes::from(bent),
        bytes::Bytes::from(inverted),
    ] {
        let mut d = fresh();
        assert_eq!(d.push_record(bad.clone()), Err(bad));
        assert!(d.poll().is_none());
        assert_eq!(d.stats(), fresh().stats());
    }
    let mut d = fresh();
    d.push(&[0x55; 3]);
    while d.poll().is_some() {}
    assert_eq!(d.push_record(good.clone()), Err(good.clone()));
    let mut d = fresh();
    d.push(&cadus[0]);
    d.push(&cadus[1]);
    while d.poll().is_some() {}
    assert_eq!(d.push_record(good.clone()), Err(good.clone()));
    // Frames input has no synchronizer: given back.
    let mut d =
        decoder::Decoder::new(&p, InputFormat::Frames, decoder::DecoderOptions::default()).unwrap();
    assert_eq!(d.push_record(good.clone()), Err(good));
}

/// A decoder that does not keep packet bytes (the merge's final decode) counts and checks
/// exactly the packets of one that does: the same counters, drops and sequence gaps, and a
/// `PacketCounted` with the header and length of each packet, in order. On the Aqua capture
/// with corrected and uncorrectable frames (so packets are broken and dropped).
#[test]
fn packets_counted_without_their_bytes_are_the_packets_delivered() {
    let cadus = impaired_aqua(0xc0de);
    let (kept, kept_stats) = decode_cadus(&cadus, &|_| None);
    let (counted, counted_stats) =
        decode_cadus_with(raw_cadu_decoder().without_packet_data(), &cadus, &|_| None);
    assert_eq!(
        serde_json::to_value(&counted_stats).unwrap(),
        serde_json::to_value(&kept_stats).unwrap()
    );
    let as_counted: Vec<Event> = kept
        .iter()
        .map(|e| match e {
            Event::Packet {
                vcid: Some(vcid),
                packet,
            } => Event::PacketCounted {
                vcid: *vcid,
                header: packet.header,
                len: packet.data.len(),
            },
            other => other.clone(),
        })
        .collect();
    assert!(kept_stats.packets.total > 100, "{:?}", kept_stats.packets);
    assert!(kept_stats.packets.dropped.values().sum::<u64>() > 0);
    assert!(counted == as_counted, "events differ");
    assert!(!counted.iter().any(|e| matches!(e, Event::Packet { .. })));
}

/// A decoder that does not keep the bytes of frames that arrive clean (a merge's reader of a
/// station copy) gives the events and counters of one that does, except that those frames
/// have no bytes: exactly the RS-clean records, whose frame is their CADU derandomized, less the
/// parity.
/// Corrected frames, and every frame after a CADU that is not a record, keep their bytes.
/// Then a decoder given every record by `push_record_checked` with what that found (a merge's
/// final decode, and a copy's decoder behind its fetcher) gives the events and counters of
/// decoding them all, and a CADU it is told is clean is not checked again (a corrected one
/// shows through uncorrected).
#[test]
fn frames_of_clean_records_without_their_bytes_are_the_frames_decoded() {
    let mut cadus = impaired_aqua(0xf4a3);
    cadus[700][2] ^= 0x10; // a marker bit error: pushed from here on
    let frames_only = || {
        let p = decoder::Profile::builtin("eos").unwrap();
        let opts = decoder::DecoderOptions {
            raw_cadus: true,
            packets: false,
            ..decoder::DecoderOptions::default()
        };
        decoder::Decoder::new(&p, InputFormat::Cadu, opts).unwrap()
    };
    let record = |d: &mut decoder::Decoder, _: usize, raw: bytes::Bytes| d.push_record(raw);
    let (kept, kept_stats, _) = decode_records_by(frames_only(), &cadus, &record, &[]);
    let (unopened, unopened_stats, taken) =
        decode_records_by(frames_only().without_frame_data(), &cadus, &record, &[]);
    assert_eq!(taken, 700);
    assert_eq!(unopened_stats, kept_stats);
    assert_eq!(unopened.len(), kept.len());
    let (mut empty, mut raw) = (0, None);
    for (u, k) in unopened.iter().zip(&kept) {
        match (u, k) {
            (Event::RawCadu { data, .. }, _) => {
                assert_eq!(u, k);
                raw = Some(data.clone());
            }
            (Event::Frame(u), Event::Frame(k)) if u.data.is_empty() => {
                empty += 1;
                assert!(k.rs.is_some_and(|o| o.is_clean()));
                assert_eq!(
                    u.sync.map(|s| s.stream_bit < 700 * CADU as u64 * 8),
                    Some(true)
                );
                let raw = raw.as_ref().unwrap();
                assert_eq!(derandomized(raw), k.data);
                let mut u = u.clone();
                u.data = k.data.clone();
                assert_eq!(&u, k);
            }
            _ => assert_eq!(u, k),
        }
    }
    let clean_taken = frames(&kept)
        .iter()
        .filter(|f| {
            f.rs.is_some_and(|o| o.is_clean())
                && f.sync.is_some_and(|s| s.stream_bit < 700 * CADU as u64 * 8)
        })
        .count();
    assert_eq!(
        empty, clean_taken,
        "exactly the clean records come without bytes"
    );
    assert!(empty > 400, "{empty}");

    // Every record pushed as checked: clean, or not (decoded without a second check).
    let clean: Vec<bool> = {
        let mut clean = vec![false; cadus.len()];
        let mut at = None;
        for e in &unopened {
            match e {
                Event::RawCadu { stream_bit, .. } => at = Some(*stream_bit),
                Event::Frame(f) if f.data.is_empty() => {
                    clean[(at.unwrap() / 8 / CADU as u64) as usize] = true;
                }
                _ => {}
            }
        }
        clean
    };
    let take = |d: &mut decoder::Decoder, k: usize, raw: bytes::Bytes| {
        d.push_record_checked(raw, clean[k])
    };
    let (events, stats, taken) = decode_records_by(raw_cadu_decoder(), &cadus, &take, &[]);
    let (first, first_stats, _) = decode_records(&cadus, &|_| None, &[]);
    assert_eq!(taken, 700);
    assert_eq!(stats, first_stats);
    assert_eq!(events, first);
    // A corrected CADU pushed as clean: its frame is the derandomized CADU, uncorrected.
    let told = |d: &mut decoder::Decoder, k: usize, raw: bytes::Bytes| {
        if k == 3 {
            d.push_record_checked(raw, true)
        } else {
            d.push_record(raw)
        }
    };
    let (events, stats, _) = decode_records_by(raw_cadu_decoder(), &cadus[..10], &told, &[]);
    let uncorrected = derandomized(&cadus[3]);
    assert_eq!(frames_of_cadu(&events, 3), vec![uncorrected.to_vec()]);
    assert_ne!(frames_of_cadu(&first, 3), vec![uncorrected.to_vec()]);
    assert_eq!(stats.rs.frames_corrected, 0);
}

/// A decoder that does not keep the frames of clean records still reassembles their packets,
/// read from each CADU through the PN sequence: the same packets (or, not keeping their
/// bytes either, the same headers and lengths: the merge's final decode), drops, sequence gaps
/// and counters as a decoder that keeps every frame; only the clean records' frames come
/// without bytes.
#[test]
fn packets_of_clean_records_without_their_frames_are_the_packets_decoded() {
    let mut cadus = impaired_aqua(0x51c3);
    cadus[650][1] ^= 0x04; // a marker bit error: pushed from here on
    let record = |d: &mut decoder::Decoder, _: usize, raw: bytes::Bytes| d.push_record(raw);
    let (kept, kept_stats, _) = decode_records_by(raw_cadu_decoder(), &cadus, &record, &[]);
    let (unkept, unkept_stats, taken) = decode_records_by(
        raw_cadu_decoder().without_frame_data(),
        &cadus,
        &record,
        &[],
    );
    assert_eq!(taken, 650);
    assert_eq!(unkept_stats, kept_stats);
    assert_eq!(unkept.len(), kept.len());
    let mut empty = 0;
    for (u, k) in unkept.iter().zip(&kept) {
        match (u, k) {
            (Event::Frame(u), Event::Frame(k)) if u.data.is_empty() => {
                empty += 1;
                assert!(k.rs.is_some_and(|o| o.is_clean()));
                let mut u = u.clone();
                u.data = k.data.clone();
                assert_eq!(&u, k);
            }
            _ => assert_eq!(u, k),
        }
    }
    let packets = |ev: &[Event]| {
        ev.iter()
            .filter_map(|e| match e {
                Event::Packet {
                    vcid: Some(v),
                    packet,
                } => Some((*v, packet.header, packet.data.len())),
                Event::PacketCounted { vcid, header, len } => Some((*vcid, *header, *len)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let whole = packets(&kept);
    assert!(whole.len() > 500, "{}", whole.len());
    assert!(empty > 400, "{empty}");
    assert!(
        kept_stats.packets.dropped.values().sum::<u64>() > 0,
        "{:?}",
        kept_stats.packets
    );

    // Neither frames' nor packets' bytes kept (the merge's final decode): the same packets.
    let (counted, counted_stats, _) = decode_records_by(
        raw_cadu_decoder()
            .without_packet_data()
            .without_frame_data(),
        &cadus,
        &record,
        &[],
    );
    assert_eq!(counted_stats, kept_stats);
    assert_eq!(packets(&counted), whole);
}

/// The record check on its own (a merge's fetcher) says clean exactly for the CADUs a decoder
/// finds clean: on the impaired Aqua capture (clean, corrected and uncorrectable CADUs), and
/// never for a CADU of the wrong length. A link without Reed-Solomon has nothing to check.
#[test]
fn the_record_check_finds_clean_what_decoding_finds_clean() {
    let cadus = impaired_aqua(0x0c4e);
    let p = decoder::Profile::builtin("eos").unwrap();
    let check = decoder::RecordCheck::new(&p).unwrap().unwrap();
    let (events, _) = decode_cadus(&cadus, &|_| None);
    let mut decoded_clean = vec![false; cadus.len()];
    let mut at = None;
    for e in &events {
        match e {
            Event::RawCadu { stream_bit, .. } => at = Some(*stream_bit),
            Event::Frame(f) => {
                decoded_clean[(at.unwrap() / 8 / CADU as u64) as usize] =
                    f.rs.is_some_and(|o| o.is_clean());
            }
            _ => {}
        }
    }
    let checked: Vec<bool> = cadus.iter().map(|c| check.is_clean(c)).collect();
    // Fill frames are not delivered as frames: compare the CADUs that gave one.
    let fill = |c: &Vec<u8>| (c[5] ^ 0x48) & 0x3F == 63;
    for (k, c) in cadus.iter().enumerate() {
        if !fill(c) {
            assert_eq!(checked[k], decoded_clean[k], "CADU {k}");
        }
    }
    assert!(checked.iter().filter(|&&c| c).count() > 500);
    assert!(checked.iter().filter(|&&c| !c).count() > 150);
    assert!(!check.is_clean(&cadus[0][..CADU - 1]));
    assert!(!check.is_clean(&[&cadus[0][..], &[0u8][..]].concat()));
    let mut no_rs = p.clone();
    no_rs.rs = None;
    assert!(decoder::RecordCheck::new(&no_rs).unwrap().is_none());
}

/// The frame of an Aqua CADU as it stands, without Reed-Solomon: the bytes after the marker,
/// derandomized, less the parity.
fn derandomized(cadu: &[u8]) -> bytes::Bytes {
    let mut frame = cadu[4..4 + 892].to_vec();
    decoder::pn::Derandomizer::new(1020).apply(&mut frame);
    bytes::Bytes::from(frame)
}
