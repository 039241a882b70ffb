//! Golden tests on real third-party captures (../shared/data, see its README for provenance and
//! the independently verified per-VCID counts).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;

use common::*;
use decoder::{Event, InputFormat};

fn by_vcid(pairs: &[(u8, u64)]) -> BTreeMap<u8, u64> {
    pairs.iter().copied().collect()
}

fn check_capture(file: &str, profile: &str, shift: u64, expected: &[(u8, u64)]) -> decoder::Stats {
    let input = data(&format!("cadu/{file}"));
    let (events, s) = decode(profile, InputFormat::Bits, &input);
    assert_eq!(s.cadus, 1023, "{file}: whole CADUs");
    assert_eq!(s.frames.good, 1023, "{file}");
    assert_eq!(
        s.frames.by_vcid,
        by_vcid(expected),
        "{file}: frames per VCID"
    );
    assert_eq!(s.sync.locks, 1, "{file}");
    assert_eq!(s.sync.lost, 0, "{file}");
    assert_eq!(s.sync.inverted_frames, 0, "{file}");
    assert_eq!(s.sync.slipped_frames + s.sync.flywheel_frames, 0, "{file}");
    assert_eq!(s.rs.uncorrectable, 0, "{file}");
    assert_eq!(s.rs.clean + s.rs.corrected, 1023 * 4, "{file}");
    let locked = events.iter().find_map(|e| match e {
        Event::Locked { stream_bit, .. } => Some(*stream_bit),
        _ => None,
    });
    assert_eq!(locked.map(|b| b % 8), Some(shift), "{file}: ASM bit shift");
    // The partial frame before the first ASM is discarded, the partial one at the end truncated.
    assert!(
        s.sync.truncated_bits > 0 && s.sync.truncated_bits < 1024 * 8,
        "{file}"
    );
    s
}

#[test]
fn aqua() {
    let s = check_capture(
        "aqua.20241206T175646.dat",
        "eos",
        1,
        &[(30, 828), (35, 121), (63, 63), (5, 9), (10, 2)],
    );
    assert_eq!(s.frames.fill, 63);
    assert!(s.packets.total > 0);
}

#[test]
fn metop_b() {
    let s = check_capture(
        "metopb.20241206T152751.dat",
        "metop",
        6,
        &[
            (10, 531),
            (9, 211),
            (24, 133),
            (63, 114),
            (29, 14),
            (15, 11),
            (34, 3),
            (12, 3),
            (27, 2),
            (3, 1),
        ],
    );
    assert!(s.packets.total > 0);
}

#[test]
fn noaa20() {
    let s = check_capture(
        "noaa20.20241206T162710.dat",
        "jpss",
        1,
        &[(16, 943), (6, 79), (1, 1)],
    );
    assert!(s.packets.total > 0);
}

#[test]
fn snpp() {
    let s = check_capture("npp.20241206T173815.dat", "jpss", 2, &[(16, 945), (63, 78)]);
    // VC 16 carries VIIRS science packets (APIDs 800-826), no frame is missing, so the only
    // dropped partial packets are the ones cut by the start and end of the recording.
    assert_eq!(s.frames.missing_by_vcid.get(&16), Some(&0));
    assert!(!s.packets.by_apid.is_empty());
    assert!(
        s.packets.by_apid.keys().all(|a| (800..=826).contains(a)),
        "{:?}",
        s.packets.by_apid
    );
    assert_eq!(s.packets.by_apid.values().sum::<u64>(), s.packets.total);
    assert_eq!(s.packets.dropped.get("frame_gap"), None);
    assert!(
        s.packets.dropped.values().sum::<u64>() <= 1,
        "{:?}",
        s.packets.dropped
    );
}

/// Another decoder's published summary (data/cadu/snpp_synchronized_cadus.txt): 65 CADUs, no RS
/// corrections, one VC16 frame missing, 12 packets (APID 802 ×1, 803 ×11; 803 misses seq 9860).
#[test]
fn snpp_synchronized_matches_reference_decoder() {
    let input = data("cadu/snpp_synchronized_cadus.dat");
    for format in [InputFormat::Cadu, InputFormat::Bits] {
        let (events, s) = decode("jpss", format, &input);
        assert_eq!(s.cadus, 65);
        assert_eq!(s.frames.by_vcid, by_vcid(&[(16, 65)]));
        assert_eq!(s.rs.corrected + s.rs.uncorrectable, 0);
        assert_eq!(s.frames.missing_by_vcid.get(&16), Some(&1));
        assert_eq!(s.packets.total, 12);
        assert_eq!(
            s.packets.by_apid,
            [(802u16, 1u64), (803, 11)].into_iter().collect()
        );
        assert_eq!(s.packets.sequence_gaps, 1);
        assert_eq!(s.packets.missing, 1);
        let pk = packets(&events);
        let sizes: Vec<usize> = pk.iter().map(|p| p.data.len()).collect();
        assert_eq!(
            sizes,
            [3006, 180, 4090, 5098, 5058, 5026, 5122, 5090, 5106, 5130, 5074, 5118]
        );
        let seqs: Vec<(u16, u16)> = pk
            .iter()
            .map(|p| (p.header.apid, p.header.sequence_count))
            .collect();
        assert_eq!(seqs[0], (802, 9875));
        assert_eq!(seqs[1], (803, 9859));
        assert_eq!(
            seqs[2..].iter().map(|s| s.1).collect::<Vec<_>>(),
            (9861..=9870).collect::<Vec<_>>()
        );
        // Checksum another decoder printed for its packet output (md5 of the packets in order).
        let all: Vec<u8> = pk.iter().flat_map(|p| p.data.iter().copied()).collect();
        assert_eq!(all.len(), 53098);
        let digest = md5::compute(&all);
        assert_eq!(format!("{digest:x}"), "5e11051d86c46ddc3500904c99bbe978");
    }
}

#[test]
fn snpp_seven_cadus_two_vcids() {
    let input = data("cadu/snpp_7cadus_2vcids.dat");
    let (_, s) = decode("jpss", InputFormat::Cadu, &input);
    assert_eq!(s.frames.by_vcid, by_vcid(&[(16, 3), (6, 4)]));
    assert_eq!(s.frames.good, 7);
}

/// Meteor-M2 LRPT bare VCDUs (no ASM/RS/PN) reassemble to MSU-MR packets on APIDs 64, 65, 68
/// and telemetry on 70.
#[test]
fn meteor_vcdus_to_packets() {
    let mut input = Vec::new();
    for t in ["30", "40", "50"] {
        input.extend(data(&format!("vcdu/meteor-m2/2022_12_20_20_25_{t}.vcdu")));
    }
    assert_eq!(input.len(), 256 * 892);
    let (events, s) = decode("meteor-lrpt", InputFormat::Frames, &input);
    assert_eq!(s.cadus, 256);
    assert_eq!(s.frames.good, 256);
    assert_eq!(s.frames.by_vcid, by_vcid(&[(5, 256)]));
    let apids: Vec<u16> = s.packets.by_apid.keys().copied().collect();
    assert_eq!(apids, vec![64, 65, 68, 70]);
    // MSU-MR image packets carry 14 MCUs each; every image packet has a plausible size.
    for p in packets(&events) {
        assert!(p.data.len() > 6 && p.data.len() <= 2048, "{}", p.data.len());
    }
    // One frame is missing inside the _40 file and the files are not back to back.
    assert_eq!(s.frames.missing_by_vcid.get(&5), Some(&3));
    // MSU-MR sends a line of 8-pixel MCU rows as 14 packets (1568 px / 8 / 14 MCUs per packet):
    // APID 68 arrives complete in every 10-second file, 8 MCU rows each.
    for t in ["30", "40", "50"] {
        let (_, f) = decode(
            "meteor-lrpt",
            InputFormat::Frames,
            &data(&format!("vcdu/meteor-m2/2022_12_20_20_25_{t}.vcdu")),
        );
        assert_eq!(f.packets.by_apid[&68], 8 * 14, "file {t}");
    }
    // Partial packets are only dropped at the frame gaps and the end of the stream.
    let reasons: Vec<&str> = s.packets.dropped.keys().copied().collect();
    assert_eq!(reasons, vec!["end_of_stream", "frame_gap"]);
}

#[test]
fn viirs_packet_file() {
    let input = data("packets/viirs/viirs_packets.dat");
    let (_, s) = decode("jpss", InputFormat::Packets, &input);
    assert_eq!(s.packets.total, 100);
    let apids: Vec<u16> = s.packets.by_apid.keys().copied().collect();
    assert_eq!(apids, vec![806, 808, 809, 811, 812, 821, 826]);
    assert!(s.packets.dropped.is_empty());
}

/// Pushing the same capture in random chunk sizes (1 byte … 64 KiB) yields identical events.
#[test]
fn chunking_does_not_change_events() {
    for (file, profile) in [
        ("cadu/aqua.20241206T175646.dat", "eos"),
        ("cadu/metopb.20241206T152751.dat", "metop"),
    ] {
        let input = data(file);
        let (whole, s0) = decode(profile, InputFormat::Bits, &input);
        for seed in [1u64, 7, 0xDEAD_BEEF] {
            let mut rng = Rng(seed);
            let (ev, s) = decode_chunked(profile, InputFormat::Bits, &input, &mut |_| {
                // Mix of tiny and large chunks.
                match rng.below(4) {
                    0 => 1 + rng.below(16) as usize,
                    1 => 1 + rng.below(1500) as usize,
                    _ => 1 + rng.below(65536) as usize,
                }
            });
            assert_eq!(s, s0, "{file} seed {seed}: stats differ");
            assert!(ev == whole, "{file} seed {seed}: events differ");
        }
    }
}
