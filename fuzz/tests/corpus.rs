//! Runs every fuzz target over its seed corpus on stable: the committed seeds in corpus/<target>/
//! (regressions and hand-made edge cases) plus seeds cut on the fly from the real captures in
//! ../shared/data (they are not copied into the repository).
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;

fn shared(rel: &str) -> Vec<u8> {
    let p = format!("{}/../../shared/data/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn committed(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut seeds = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            seeds.push(std::fs::read(e.path()).unwrap());
        }
    }
    seeds
}

/// Runs `f` over the committed seeds, the real ones, their truncations and bit-flipped copies;
/// returns how deep each real seed got (frames, packets or codewords, as the target counts).
fn run(target: &str, f: fn(&[u8]) -> u64, real: Vec<Vec<u8>>) -> Vec<u64> {
    let mut seeds = committed(target);
    let n_committed = seeds.len();
    assert!(!real.is_empty(), "{target}: no seeds cut from real data");
    seeds.extend(real);
    let mut depth = Vec::new();
    for (k, s) in seeds.iter().enumerate() {
        let d = f(s);
        if k >= n_committed {
            depth.push(d);
        }
        for cut in [0, 1, 5, 6, 7, 64, 895, 1024] {
            f(&s[..cut.min(s.len())]);
        }
        let mut flipped = s.clone();
        for (i, b) in flipped.iter_mut().enumerate().step_by(97) {
            *b ^= 1 << (i % 8);
        }
        f(&flipped);
    }
    depth
}

fn with_sel(sel: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![sel];
    v.extend_from_slice(body);
    v
}

#[test]
fn sync_corpus() {
    let aqua = shared("cadu/aqua.20241206T175646.dat");
    // selector & 0x3F == 0x3F -> real 1020-byte CCSDS frames; others: short synthetic frames
    let real = vec![
        with_sel(0x00, &aqua[..8192]),
        with_sel(0x3F, &aqua[..16384]),
        with_sel(0x7F, &shared("cadu/snpp_7cadus_2vcids.dat")),
        with_sel(0x81, &aqua[100_000..140_000]),
    ];
    let d = run("sync", downlink_fuzz::sync, real);
    // The 1020-byte seeds lock: 15 frames of the Aqua cut, 7 byte-aligned SNPP CADUs.
    assert_eq!(d, vec![0, 15, 7, 0], "sync seeds reach LOCK");
}

#[test]
fn frame_header_corpus() {
    let m = shared("vcdu/meteor-m2/2022_12_20_20_25_30.vcdu");
    let real = (0u8..=255)
        .step_by(7)
        .map(|sel| with_sel(sel, &m[..892]))
        .collect();
    let d = run("frame_header", downlink_fuzz::frame_header, real);
    assert!(
        d.iter().any(|&x| x > 0),
        "some layouts parse the real header"
    );
}

#[test]
fn mpdu_corpus() {
    // Real M_PDUs: Meteor frames' FHP + packet zone, in the target's record format.
    let m = shared("vcdu/meteor-m2/2022_12_20_20_25_30.vcdu");
    let mut rec = Vec::new();
    for f in m.chunks_exact(892).take(8) {
        let zone = &f[10..];
        let fhp = u16::from_be_bytes([f[8], f[9]]) & 0x7FF;
        for (k, part) in zone.chunks(881).enumerate() {
            let p = if k == 0 { fhp } else { 0x7FF };
            rec.extend_from_slice(&p.to_be_bytes());
            rec.push(((part.len() - 1) / 4) as u8);
            rec.push(0);
            rec.extend_from_slice(part);
        }
    }
    let viirs = shared("packets/viirs/viirs_packets.dat");
    // Real first-header pointers for the VIIRS packets cut into 881-byte zones.
    let mut starts = Vec::new();
    let mut at = 0;
    while at + 6 <= viirs.len() {
        starts.push(at);
        at += 7 + usize::from(u16::from_be_bytes([viirs[at + 4], viirs[at + 5]]));
    }
    let mut rec2 = Vec::new();
    for (i, part) in viirs[..20_000].chunks(881).enumerate() {
        let lo = i * 881;
        let fhp = starts
            .iter()
            .find(|&&s| s >= lo && s < lo + part.len())
            .map_or(0x7FF, |&s| (s - lo) as u16);
        rec2.extend_from_slice(&fhp.to_be_bytes());
        rec2.extend_from_slice(&[220, 0]);
        rec2.extend_from_slice(part);
    }
    let d = run("mpdu", downlink_fuzz::mpdu, vec![rec, rec2]);
    // 8 Meteor zones carry dozens of MSU-MR packets; 20 KB of VIIRS only a few big ones.
    assert!(
        d[0] > 10 && d[1] >= 3,
        "real M_PDUs reassemble packets: {d:?}"
    );
}

#[test]
fn space_packet_corpus() {
    let real = vec![
        shared("packets/viirs/viirs_packets.dat")[..30_000].to_vec(),
        shared("packets/cygnss/CYGNSS_F7_L0_2022_086_10_15_V01_F__first101pkts.tlm"),
        shared("packets/europa-clipper/ecm_raw2.bin")[..20_000].to_vec(),
    ];
    let d = run("space_packet", downlink_fuzz::space_packet, real);
    assert_eq!(d[1], 101, "all CYGNSS packets");
    assert!(d[0] >= 5 && d[2] > 50, "{d:?}");
}

#[test]
fn reed_solomon_corpus() {
    let cw = shared("vectors/rs255_223_dualbasis_codeword.bin");
    let real = vec![
        with_sel(0x20, &cw),
        with_sel(0x00, &cw),
        with_sel(0x27, &cw.repeat(8)),
    ];
    let d = run("reed_solomon", downlink_fuzz::reed_solomon, real);
    assert_eq!(d[0], 1, "the dual-basis codeword decodes");
}

#[test]
fn decoder_corpus() {
    let npp = shared("cadu/npp.20241206T173815.dat");
    let names: Vec<&str> = decoder::Profile::builtin_names().collect();
    let jpss = names.iter().position(|n| *n == "jpss").unwrap() as u8;
    let meteor = names.iter().position(|n| *n == "meteor-lrpt").unwrap() as u8;
    let real = vec![
        with_sel(jpss, &npp[..64 * 1024]),
        with_sel(jpss | 0x10, &shared("cadu/snpp_7cadus_2vcids.dat")),
        with_sel(
            meteor | 0x20,
            &shared("vcdu/meteor-m2/2022_12_20_20_25_30.vcdu"),
        ),
        with_sel(
            jpss | 0x30,
            &shared("packets/viirs/viirs_packets.dat")[..40_000],
        ),
    ];
    let d = run("decoder", downlink_fuzz::decoder, real);
    assert!(
        d.iter().all(|&x| x > 0),
        "every real seed yields frames or packets: {d:?}"
    );
}

#[test]
fn soft_corpus() {
    let m2 = shared("soft/m2_72k_8bitsoft.s");
    let hard = shared("soft/m22_72k.hard");
    let k80 = shared("soft/m22_80k_soft.s");
    let real = vec![
        with_sel(0, &m2),
        with_sel(1 | 4, &hard),
        with_sel(2 | 8, &k80[..60_000]),
    ];
    let d = run("soft", downlink_fuzz::soft, real);
    // The 72k seeds decode whole: 1 frame + 1 packet, 8 frames + 42 packets.
    assert_eq!(d[..2], [2, 50], "soft seeds reach the packet layer: {d:?}");
}
