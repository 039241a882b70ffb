//! End-to-end: the real `downlink` binary on real captures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    assert!(p.exists(), "test data missing: {}", p.display());
    p
}

fn downlink(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(args)
        .output()
        .expect("run downlink")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "status {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

#[test]
fn decode_json_reports_rt_stps_counters() {
    let aqua = data("cadu/aqua.20241206T175646.dat");
    let v = json(&downlink(&[
        "decode",
        aqua.to_str().unwrap(),
        "--profile",
        "eos",
        "--json",
    ]));
    assert_eq!(v["cadus"], 1023);
    assert_eq!(v["frames"]["good"], 1023);
    let by_vcid = v["frames"]["by_vcid"].as_object().unwrap();
    let mut got: Vec<(String, u64)> = by_vcid
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect();
    got.sort();
    let mut want: Vec<(String, u64)> = [("10", 2), ("30", 828), ("35", 121), ("5", 9), ("63", 63)]
        .iter()
        .map(|(k, n)| (k.to_string(), *n))
        .collect();
    want.sort();
    assert_eq!(got, want);
    for key in [
        "locks",
        "lost",
        "inverted_frames",
        "slipped_frames",
        "flywheel_frames",
    ] {
        assert!(v["sync"][key].is_u64(), "sync.{key}");
    }
    for key in ["clean", "corrected", "corrected_symbols", "uncorrectable"] {
        assert!(v["rs"][key].is_u64(), "rs.{key}");
    }
    assert_eq!(
        v["rs"]["clean"].as_u64().unwrap() + v["rs"]["corrected"].as_u64().unwrap(),
        4092
    );
    assert!(v["crc"]["ok"].is_u64() && v["crc"]["failed"].is_u64());
    assert!(v["frames"]["missing_by_vcid"].is_object());
    assert!(v["packets"]["total"].as_u64().unwrap() > 0);
    assert!(v["packets"]["by_apid"].is_object());
    assert!(v["packets"]["sequence_gaps"].is_u64());
}

/// The CYGNSS per-APID demux must equal ccsdspy's split_by_apid/ byte for byte.
#[test]
fn packets_out_equals_reference_split_by_apid() {
    let tlm = data("packets/cygnss/CYGNSS_F7_L0_2022_086_10_15_V01_F__first101pkts.tlm");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pk");
    let v = json(&downlink(&[
        "decode",
        tlm.to_str().unwrap(),
        "--profile",
        "jpss",
        "--format",
        "packets",
        "--packets-out",
        out.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["packets"]["total"], 101);
    let reference = data("packets/cygnss/split_by_apid");
    let mut want: Vec<String> = std::fs::read_dir(&reference)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().replace(".tlm", ""))
        .collect();
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .replace(".pkts", "")
        })
        .collect();
    got.sort();
    assert_eq!(got, want);
    for name in want {
        let a = std::fs::read(reference.join(format!("{name}.tlm"))).unwrap();
        let b = std::fs::read(out.join(format!("{name}.pkts"))).unwrap();
        assert!(a == b, "{name}: {} vs {} bytes", a.len(), b.len());
    }
}

#[test]
fn frames_out_holds_every_good_frame() {
    let f = data("cadu/snpp_synchronized_cadus.dat");
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames.bin");
    let v = json(&downlink(&[
        "decode",
        f.to_str().unwrap(),
        "--profile",
        "jpss",
        "--format",
        "cadu",
        "--frames-out",
        frames.to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(v["frames"]["good"], 65);
    let bytes = std::fs::read(&frames).unwrap();
    assert_eq!(bytes.len(), 65 * 892);
    // frame 0 header: AOS version 01, SCID 157, VCID 16
    assert_eq!(&bytes[..2], &[0x40 | (157 >> 2), ((157 & 3) << 6) | 16]);
}

#[test]
fn text_report_and_profiles_round_trip() {
    let list = downlink(&["profiles"]);
    assert!(list.status.success());
    let text = String::from_utf8(list.stdout).unwrap();
    for n in ["eos", "jpss", "jpss2", "metop", "meteor-lrpt"] {
        assert!(text.contains(n), "{n} missing from {text}");
    }
    // A profile printed by `profiles NAME` loads back from a file and decodes the same.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("mine.toml");
    let shown = downlink(&["profiles", "jpss"]);
    assert!(shown.status.success());
    std::fs::write(&p, &shown.stdout).unwrap();
    let f = data("cadu/snpp_7cadus_2vcids.dat");
    let out = downlink(&[
        "decode",
        f.to_str().unwrap(),
        "--profile",
        p.to_str().unwrap(),
        "--format",
        "cadu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.contains("good 7 (fill 0)"), "{report}");
    assert!(report.contains("vcid 16"), "{report}");
}

#[test]
fn bad_profiles_get_clear_errors() {
    let f = data("cadu/snpp_7cadus_2vcids.dat");
    let out = downlink(&["decode", f.to_str().unwrap(), "--profile", "voyager"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown profile") && err.contains("meteor-lrpt"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    let shown = String::from_utf8(downlink(&["profiles", "eos"]).stdout).unwrap();
    std::fs::write(
        &p,
        shown
            .replace("interleave = 4", "interleave = 9")
            .replace("e = 16", "e = 3"),
    )
    .unwrap();
    let out = downlink(&[
        "decode",
        f.to_str().unwrap(),
        "--profile",
        p.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rs.interleave") && err.contains("rs.e"),
        "all problems at once: {err}"
    );

    let out = downlink(&["decode", "/nonexistent/capture.dat", "--profile", "eos"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/capture.dat"));
}
