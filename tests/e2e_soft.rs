//! End-to-end: a whole real Meteor-M2 LRPT pass arrives as soft symbols straight from a
//! (rehearsed) QPSK demodulator, and the daemon makes the same MSU-MR products as from the clean
//! frames.
//!
//! The shared capture (`vcdu/meteor-m2/*.vcdu`: 256 bare VCDUs after Reed-Solomon) is turned
//! back into what the satellite sent: each VCDU gets its RS(255,223) I=4 parity (conventional
//! basis), the CCSDS PN and the ASM (1024-byte CADUs), with fill CADUs (VCID 63) at both ends and
//! a block of them in the middle. `downlink replay --encode conv` then convolutionally encodes
//! the stream, maps it to QPSK int8 soft symbols, adds Gaussian noise at Eb/N0 = 3 dB, turns the
//! constellation by 90°, swaps I and Q and drops a few symbols once in the middle of the stream
//! (inside the fill block, so no image data is lost to the slip itself), and sends it over UDP
//! to a daemon whose input is `format = "soft-i8"` with the Meteor-M N2 profile. The daemon must
//! find the phase, ride through the slip (frame sync re-locks at the new bit offset), and produce
//! raw channel PNGs identical to those of a daemon fed the clean frames (PSNR ∞); its pass
//! record, metrics and plot carry the link quality (estimated channel BER, phase case,
//! re-acquisitions).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Symbols the replay drops once, mid-stream.
const SLIP_SYMBOLS: u64 = 3;
/// Fill CADUs before and after the pass, and in its middle (where the slip lands).
const FILL_EDGE: usize = 8;
const FILL_MID: usize = 16;
/// The soft-symbol profile of Meteor-M N2 (72k, no differential coding).
const SOFT_PROFILE: &str = "meteor-m2-lrpt-72k";

/// A Meteor fill VCDU (AOS version 1, SCID 0, VCID 63, idle M_PDU), 892 bytes.
fn fill_vcdu(counter: u32) -> Vec<u8> {
    let mut v = vec![0u8; 892];
    v[0] = 0x40; // version 01, SCID 0 (high bits)
    v[1] = 0x3F; // SCID 0 (low bits), VCID 63
    v[2..5].copy_from_slice(&counter.to_be_bytes()[1..]);
    // Insert zone (2 bytes) then the M_PDU header: first-header pointer 0x7FE = idle data.
    v[8] = 0x07;
    v[9] = 0xFE;
    v
}

/// The shared Meteor-M2 pass as the CADU stream the satellite sent (see the module docs).
fn meteor_cadu_stream() -> Vec<u8> {
    let profile = decoder::Profile::builtin("meteor-lrpt").unwrap();
    let rs = decoder::rs::ReedSolomon::new(profile.rs_params().unwrap()).unwrap();
    let pn = decoder::pn::Derandomizer::new(1020);
    let mut vcdus = Vec::new();
    for s in ["30", "40", "50"] {
        let b = std::fs::read(data(&format!("vcdu/meteor-m2/2022_12_20_20_25_{s}.vcdu"))).unwrap();
        assert_eq!(b.len() % 892, 0);
        vcdus.extend(b.chunks(892).map(<[u8]>::to_vec));
    }
    assert_eq!(vcdus.len(), 256);
    let half = vcdus.len() / 2;
    let mut fill = 0u32;
    let mut fills = |n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                fill += 1;
                fill_vcdu(fill)
            })
            .collect()
    };
    let mut frames = fills(FILL_EDGE);
    frames.extend_from_slice(&vcdus[..half]);
    frames.extend(fills(FILL_MID));
    frames.extend_from_slice(&vcdus[half..]);
    frames.extend(fills(FILL_EDGE));
    let mut out = Vec::with_capacity(frames.len() * 1024);
    for f in frames {
        let mut block = f;
        block.resize(1020, 0);
        rs.encode(&mut block).unwrap();
        pn.apply(&mut block);
        out.extend_from_slice(&[0x1A, 0xCF, 0xFC, 0x1D]);
        out.extend_from_slice(&block);
    }
    out
}

/// A daemon with one soft-symbol UDP input on the Meteor-M N2 profile and the moved TLE; its
/// LOS timeout leaves room for a slow (debug) decoder to re-acquire after the slip.
fn soft_daemon(tle: &Path) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let cfg = format!(
        r#"
[archive]
path = "{}"
fsync_interval = "100ms"
[http]
listen = "127.0.0.1:0"
[pass]
los_timeout = "3s"
[imaging]
tle = ["{}"]
[[input]]
name = "xband"
listen = "udp://127.0.0.1:0"
format = "soft-i8"
profile = "{SOFT_PROFILE}"
queue_datagrams = 65536
"#,
        archive.display(),
        tle.display()
    );
    let path = dir.path().join("downlink.toml");
    std::fs::write(&path, cfg).unwrap();
    Daemon::launch(serve_cmd(&path), dir, archive)
}

/// The raw channel PNGs of the pass's products, by file name, as 8-bit gray + alpha pixels.
fn raw_pngs(d: &Daemon, id: &str) -> Vec<(String, image::GrayAlphaImage)> {
    let dir = d.archive.join("passes").join(id).join("products");
    let listing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("products.json")).unwrap()).unwrap();
    let mut out: Vec<(String, image::GrayAlphaImage)> = listing["products"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "raw_png")
        .map(|p| {
            let path = PathBuf::from(p["path"].as_str().unwrap());
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, image::open(&path).unwrap().to_luma_alpha8())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// PSNR in dB of two equally sized images (infinite when identical).
fn psnr(a: &image::GrayAlphaImage, b: &image::GrayAlphaImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let n = a.as_raw().len() as f64;
    let mse: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / n;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Waits until the one pass of `d` has its products (listing on disk); its id.
fn wait_products(d: &Daemon) -> String {
    let rec = d.wait_passes(1).remove(0);
    let id = rec["id"].as_str().unwrap().to_owned();
    let listing = d
        .archive
        .join("passes")
        .join(&id)
        .join("products/products.json");
    let t0 = Instant::now();
    while !listing.is_file() {
        let st: serde_json::Value =
            serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
        assert_eq!(st["products"]["failed"], 0, "{}", st["products"]);
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "no products for {id}: {}",
            st["products"]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    id
}

#[test]
fn soft_symbol_pass_over_udp_makes_the_same_products_as_clean_frames() {
    // The reference: the clean frames, as every other imaging test sends them.
    let (mut clean, _tle_dir) = meteor_daemon("");
    send_meteor_pass(&clean, 15);
    let clean_id = wait_products(&clean);
    let want = raw_pngs(&clean, &clean_id);
    let clean_rec = clean.wait_passes(1).remove(0);
    clean.stop();
    assert_eq!(want.len(), 3, "three MSU-MR channels in this pass");

    let work = tempfile::tempdir().unwrap();
    let cadus = work.path().join("meteor.cadu");
    let stream = meteor_cadu_stream();
    std::fs::write(&cadus, &stream).unwrap();
    let tle = work.path().join("weather.txt");
    std::fs::write(&tle, meteor_tle_for_todays_pass()).unwrap();
    let d = soft_daemon(&tle);
    let out = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .arg("replay")
        .arg(&cadus)
        .args(["--to", &format!("udp://127.0.0.1:{}", d.udp)])
        .args([
            "--encode",
            "conv",
            "--ebn0",
            "3",
            "--rotate",
            "90",
            "--swap-iq",
        ])
        .args(["--slip-symbols", &SLIP_SYMBOLS.to_string()])
        .args([
            "--rate",
            "40Mbit",
            "--datagram-size",
            "1400",
            "--seed",
            "15",
            "-q",
        ])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let soft_bytes = (stream.len() as u64 * 8 - SLIP_SYMBOLS) * 2;
    assert!(
        summary.contains(&format!("{soft_bytes} bytes")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("{SLIP_SYMBOLS} symbols slipped")),
        "{summary}"
    );
    assert!(!summary.contains("refused"), "{summary}");

    let id = wait_products(&d);
    let recs = d.wait_passes(1);
    assert_eq!(recs.len(), 1, "one pass, not split by the slip");
    let rec = &recs[0];
    let st: serde_json::Value = serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
    assert!(
        st["inputs"][0]["drops"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| n == 0),
        "datagrams dropped: {}",
        st["inputs"][0]["drops"]
    );

    // The image: every raw channel PNG pixel for pixel as from the clean frames.
    let got = raw_pngs(&d, &id);
    assert_eq!(
        got.iter().map(|g| &g.0).collect::<Vec<_>>(),
        want.iter().map(|w| &w.0).collect::<Vec<_>>()
    );
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        let p = psnr(g, w);
        eprintln!("{name}: PSNR {p} dB vs the clean frames");
        assert!(p.is_infinite(), "{name}: PSNR {p:.2} dB, not identical");
    }
    // Every VCDU of the capture came through (VCID 5: the same 3 missing as the recording
    // itself has), and the same packets.
    let c = &rec["counters"];
    let w = &clean_rec["counters"];
    assert_eq!(c["frames"]["by_vcid"]["5"], 256, "{c}");
    assert_eq!(c["frames"]["by_vcid"]["5"], w["frames"]["by_vcid"]["5"]);
    assert_eq!(
        c["frames"]["missing_by_vcid"]["5"],
        w["frames"]["missing_by_vcid"]["5"]
    );
    // The slip, inside the fill block, cost at most the fill frames around it.
    let fill_lost = c["frames"]["missing_by_vcid"]["63"].as_u64().unwrap_or(0);
    assert!(fill_lost <= 2, "{c}");
    assert_eq!(c["packets"]["by_apid"], w["packets"]["by_apid"]);

    // Link quality: the estimated channel BER matches the noise the replay added (its summary
    // counts the truth, erasures excluded as the decoder does: 7.6 % at 3 dB with this
    // quantization), and the phase case is the one the replay applied.
    let lq = &rec["link_quality"];
    let ber = lq["channel_ber"].as_f64().unwrap();
    let truth: f64 = summary
        .split("(BER ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((truth - 0.0762).abs() < 0.002, "{summary}");
    assert!(
        (ber / truth - 1.0).abs() < 0.02,
        "estimated channel BER {ber} vs {truth} added: {lq}"
    );
    // The replay turned the constellation by 90° and then swapped I and Q: the case undone.
    assert_eq!(lq["phase_case"], "90+swap", "{lq}");
    // Whole symbols slipped keep the pair alignment and the phase: the Viterbi decoder rides
    // through the slip without losing the phase lock, and the frame synchronizer finds the ASM
    // again at its new bit offset.
    assert_eq!(lq["phase_locks"], 1, "{lq}");
    assert_eq!(lq["reacquisitions"], 0, "{lq}");
    assert_eq!(
        (&c["sync"]["locks"], &c["sync"]["lost"]),
        (&serde_json::json!(2), &serde_json::json!(1)),
        "the slip must show as one loss and re-lock of the frame sync: {}",
        c["sync"]
    );
    let metrics = d.get("/metrics").unwrap();
    let metric = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(
        metric("downlink_channel_bits_total{input=\"xband\"}"),
        lq["channel_bits"].as_u64().unwrap()
    );
    assert_eq!(
        metric("downlink_channel_bit_errors_total{input=\"xband\"}"),
        lq["channel_bit_errors"].as_u64().unwrap()
    );
    assert_eq!(
        metric("downlink_phase_reacquisitions_total{input=\"xband\"}"),
        0
    );
    // The plot has the channel BER panel.
    let plot = image::load_from_memory(
        &d.get_bytes(&format!("/api/v1/passes/{id}/plot.png"))
            .unwrap(),
    )
    .unwrap()
    .to_rgb8();
    assert!(
        plot.pixels().any(|p| p.0 == [60, 90, 200]),
        "no channel BER trace in the plot"
    );
}
