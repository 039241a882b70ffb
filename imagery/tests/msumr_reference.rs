//! Decode the real Meteor-M N2 sample pass and compare with georef-lrpt's reference PNG.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use decoder::{Decoder, DecoderOptions, Event, InputFormat, Profile};
use imagery::msumr::{parse_space_packet, AssembledImage, Assembler};

/// Shared third-party data (reference PNG). Change here if the data moves.
const SHARED_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");
const APIDS: [u16; 4] = [64, 65, 68, 70];

/// Space packets of the named slice (`30`, `40`, `50`, or `all` = the three files as one
/// stream), reassembled from `SHARED_DATA/vcdu/meteor-m2/*.vcdu` by our own decoder, in
/// arrival order.
fn load(slice: &str) -> Vec<Vec<u8>> {
    let files: Vec<String> = match slice {
        "all" => ["30", "40", "50"].iter().map(|s| vcdu_path(s)).collect(),
        s => vec![vcdu_path(s)],
    };
    let profile = Profile::builtin("meteor-lrpt").unwrap();
    let mut dec = Decoder::new(&profile, InputFormat::Frames, DecoderOptions::default()).unwrap();
    let mut out = Vec::new();
    let drain = |dec: &mut Decoder, out: &mut Vec<Vec<u8>>| {
        while let Some(ev) = dec.poll() {
            if let Event::Packet { packet, .. } = ev {
                if APIDS.contains(&packet.apid()) {
                    out.push(packet.data.to_vec());
                }
            }
        }
    };
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_else(|e| panic!("{f}: {e}"));
        dec.push(&bytes);
        drain(&mut dec, &mut out);
    }
    dec.finish();
    drain(&mut dec, &mut out);
    out
}

fn vcdu_path(slice: &str) -> String {
    format!("{SHARED_DATA}/vcdu/meteor-m2/2022_12_20_20_25_{slice}.vcdu")
}

fn assemble<'a>(packets: impl IntoIterator<Item = &'a Vec<u8>>) -> AssembledImage {
    let mut a = Assembler::new();
    for p in packets {
        a.push_space_packet(p).expect("sample packets decode");
    }
    a.build()
}

/// Reference PNG as (width, height, RGBA bytes).
fn reference() -> (u32, u32, Vec<u8>) {
    let path = format!("{SHARED_DATA}/expected/meteor-m2/2022_12_20_20_25_30.png");
    let img = image::open(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .to_rgba8();
    (img.width(), img.height(), img.into_raw())
}

struct Cmp {
    both_opaque: usize,
    alpha_mismatch: usize,
    differing_px: usize,
    max_abs: u8,
    psnr: f64,
}

/// Compare `ours` (RGBA, `h` lines) with the first `h` lines of the reference.
fn compare(ours: &[u8], refr: &[u8], ignore_where_ours_transparent: bool) -> Cmp {
    let mut c = Cmp {
        both_opaque: 0,
        alpha_mismatch: 0,
        differing_px: 0,
        max_abs: 0,
        psnr: f64::INFINITY,
    };
    let mut sq = 0f64;
    for (o, r) in ours.chunks_exact(4).zip(refr.chunks_exact(4)) {
        if o[3] != r[3] && !(ignore_where_ours_transparent && o[3] == 0) {
            c.alpha_mismatch += 1;
        }
        if o[3] == 255 && r[3] == 255 {
            c.both_opaque += 1;
            let mut diff = false;
            for k in 0..3 {
                let d = o[k].abs_diff(r[k]);
                c.max_abs = c.max_abs.max(d);
                sq += f64::from(d) * f64::from(d);
                diff |= d != 0;
            }
            c.differing_px += usize::from(diff);
        }
    }
    if sq > 0.0 {
        let mse = sq / (3.0 * c.both_opaque as f64);
        c.psnr = 10.0 * (255.0f64 * 255.0 / mse).log10();
    }
    c
}

#[test]
fn full_sample_matches_reference_png() {
    let packets = load("all");
    let img = assemble(&packets);
    // Same result when fed in arrival (sequence-count) order instead of per-APID order.
    let mut by_seq: Vec<&Vec<u8>> = packets.iter().collect();
    by_seq.sort_by_key(|p| parse_space_packet(p).unwrap().seq_count);
    let img2 = assemble(by_seq);
    assert!(img2.to_rgba(68, 65, 64) == img.to_rgba(68, 65, 64));
    assert!(img2.line_time_ms == img.line_time_ms && img2.height == img.height);

    let (rw, rh, refr) = reference();
    assert_eq!((img.width, img.height), (rw as usize, rh as usize));
    let ours = img.to_rgba(68, 65, 64).unwrap();
    let c = compare(&ours, &refr, false);
    println!(
        "pk_all vs reference: {}x{}, opaque in both {}, alpha mismatches {}, differing px {}, max |diff| {}, PSNR {:.2} dB",
        img.width, img.height, c.both_opaque, c.alpha_mismatch, c.differing_px, c.max_abs, c.psnr
    );
    for apid in [64, 65, 68] {
        let ch = img.channel(apid).unwrap();
        println!("  APID {apid}: {:?}", ch.stats);
    }
    assert_eq!(c.alpha_mismatch, 0);
    assert!(c.psnr >= 45.0, "PSNR {}", c.psnr);
    assert!(c.both_opaque > 1568 * 150);
    // Only exact .5 ties of the IDCT (2 pixels, APID 64, value 18.5) may round differently
    // from the reference's FFT-based double IDCT.
    assert!(c.differing_px <= 2 && c.max_abs <= 1);

    // Row times: first line is the earliest packet time, rows step by 1228/1232 ms.
    assert_eq!(img.line_time_ms[0], Some(84_311_064));
    assert_eq!(img.line_time_ms[199], Some(84_340_612));
    for w in img.line_time_ms.chunks(8).collect::<Vec<_>>().windows(2) {
        let d = w[1][0].unwrap() - w[0][0].unwrap();
        assert!(d == 1228 || d == 1232, "row step {d}");
    }
    // APID 64 has no packet in the first row (sent before the recording started) and lost
    // 18 packets at the slice boundaries; APID 65 starts mid-row (MCU 70).
    let c64 = img.channel(64).unwrap();
    assert_eq!(c64.line_time_ms[0], None);
    assert_eq!(c64.line_time_ms[8], Some(84_312_296));
    assert_eq!(c64.stats.packets_ok, 318);
    assert_eq!(c64.stats.packets_missing, 24 * 14 - 318);
    assert_eq!(img.channel(65).unwrap().stats.packets_missing, 5);
    assert_eq!(img.stats.non_image_packets, 24);
}

#[test]
fn first_slice_matches_top_of_reference() {
    // The reference PNG is named after the _30 file but georef-lrpt's Main globs all three
    // 2022_12_20_20_25_*.vcdu files into one stream; the _30 slice alone covers its first 9
    // MCU rows, starting at the same (earliest) row.
    let img = assemble(&load("30"));
    assert_eq!(img.height, 72);
    let (rw, _, refr) = reference();
    let ours = img.to_rgba(68, 65, 64).unwrap();
    let top = &refr[..(rw as usize * img.height * 4)];
    let c = compare(&ours, top, true);
    println!(
        "pk_30 vs reference top {} lines: opaque in both {}, alpha mismatches (where we have data) {}, differing px {}, max |diff| {}, PSNR {:.2} dB",
        img.height, c.both_opaque, c.alpha_mismatch, c.differing_px, c.max_abs, c.psnr
    );
    assert_eq!(c.alpha_mismatch, 0);
    assert!(c.psnr >= 45.0);
    assert!(c.both_opaque > 1568 * 50);
    // The first 8 MCU rows are complete in the slice: alpha must match exactly there. Only
    // the 9th row differs: the slice has 5 APID 64 packets and no APID 65/68 packets of it,
    // the full stream has 8 APID 64 packets and all 65/68 packets there.
    let n = rw as usize * 64 * 4;
    let strict = compare(&ours[..n], &refr[..n], false);
    assert_eq!(strict.alpha_mismatch, 0);
    let lax = compare(&ours, top, false);
    println!(
        "  pixels where only the reference has data: {}",
        lax.alpha_mismatch
    );
    assert_eq!(lax.alpha_mismatch, 8 * 112 * 8);
}

#[test]
fn corrupted_packets_never_panic() {
    let packets = load("30");
    let mut a = Assembler::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) as usize
    };
    let (mut ok, mut err) = (0u64, 0u64);
    for p in &packets {
        let sp = parse_space_packet(p).unwrap();
        for _ in 0..20 {
            let mut d = sp.data.to_vec();
            let flips = 1 + next() % 8;
            for _ in 0..flips {
                let bit = next() % (d.len() * 8);
                d[bit / 8] ^= 1 << (bit % 8);
            }
            let cut = if next() % 4 == 0 {
                next() % d.len()
            } else {
                d.len()
            };
            match a.push(sp.apid, sp.seq_count, &d[..cut]) {
                Ok(_) => ok += 1,
                Err(_) => err += 1,
            }
        }
    }
    let img = a.build();
    let s: u64 = [64u16, 65, 68]
        .iter()
        .map(|&ap| {
            let st = img.channel(ap).unwrap().stats;
            st.packets_ok + st.packets_bad + st.packets_duplicate + st.packets_bad_time
        })
        .sum();
    println!(
        "corrupted: {ok} accepted, {err} rejected, height {}",
        img.height
    );
    assert_eq!(s + img.stats.non_image_packets, ok + err);
    assert!(err > 0 && ok > 0);
}

#[test]
fn other_slices_are_sane() {
    for slice in ["40", "50"] {
        let img = assemble(&load(slice));
        let h = img.height;
        println!("{slice}: height {h}");
        for apid in [64, 65, 68] {
            let ch = img.channel(apid).unwrap();
            assert_eq!(ch.height, h);
            assert_eq!(ch.stats.packets_bad, 0);
            assert_eq!(ch.stats.packets_bad_time, 0);
            println!("  APID {apid}: {:?}", ch.stats);
        }
        // ~10 s of recording = 8 or 9 MCU rows.
        assert!((64..=80).contains(&h), "{slice} height {h}");
        let times: Vec<u32> = img.line_time_ms.iter().flatten().copied().collect();
        assert_eq!(times.len(), h, "every row has a time");
    }
}

#[test]
fn corrupt_time_codes_do_not_move_or_add_rows() {
    // Clean stream first, then copies whose time code is corrupted: nothing may change
    // (their slots are taken; stray rows are rejected by the sequence-counter cross-check).
    let packets = load("all");
    let mut a = Assembler::new();
    for p in &packets {
        a.push_space_packet(p).unwrap();
    }
    let clean = a.build();
    let mut rejected = 0;
    for (i, p) in packets.iter().enumerate() {
        let sp = parse_space_packet(p).unwrap();
        if sp.apid == 70 {
            continue;
        }
        let mut d = sp.data.to_vec();
        // Shift the time by 1..=40 rows (multiples of 1232 ms) or flip a high time bit.
        let ms = u32::from_be_bytes([d[2], d[3], d[4], d[5]]);
        let bad = if i % 2 == 0 {
            ms + 1232 * (1 + (i as u32 % 40))
        } else {
            ms ^ (1 << (12 + i % 10))
        };
        d[2..6].copy_from_slice(&bad.to_be_bytes());
        if a.push(sp.apid, sp.seq_count, &d).is_err() {
            rejected += 1;
        }
    }
    let after = a.build();
    println!(
        "time-corrupted copies rejected: {rejected}, height {} -> {}",
        clean.height, after.height
    );
    assert_eq!(after.height, clean.height);
    assert!(after.to_rgba(68, 65, 64) == clean.to_rgba(68, 65, 64));
}
