//! End-to-end: `downlink decode` on the real Meteor-M soft-symbol captures (../shared/data/soft,
//! ground truth in its README).
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

fn json(args: &[&str]) -> serde_json::Value {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(args)
        .output()
        .expect("run downlink");
    assert!(
        out.status.success(),
        "status {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

#[test]
fn decode_json_on_soft_and_hard_captures() {
    let hard = data("soft/m22_72k.hard");
    let v = json(&[
        "decode",
        hard.to_str().unwrap(),
        "--profile",
        "meteor-lrpt-72k",
        "--format",
        "hard",
        "--json",
        "--quiet",
    ]);
    // The existing keys are unchanged ...
    for key in [
        "bytes_in", "cadus", "sync", "rs", "crc", "frames", "packets", "timing",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    assert_eq!(v["bytes_in"], 19000);
    assert_eq!(v["frames"]["good"], 8);
    assert_eq!(v["frames"]["by_vcid"]["5"], 8);
    assert_eq!(v["packets"]["total"], 42);
    assert_eq!(v["packets"]["by_apid"]["64"], 14);
    assert_eq!(v["packets"]["by_apid"]["66"], 13);
    assert_eq!(v["frames"]["rejected"]["unknown_vcid"], 0);
    // ... and the soft path adds `inner`.
    let inner = &v["inner"];
    assert_eq!(inner["soft_bits"], 152_000);
    assert_eq!(inner["phase_locks"], 1);
    assert_eq!(inner["reacquisitions"], 0);
    assert_eq!(inner["phase_case"], "0");
    let ber = inner["channel_ber"].as_f64().unwrap();
    assert!((0.0..0.05).contains(&ber), "{ber}");

    let soft = data("soft/m2_72k_8bitsoft.s");
    let v = json(&[
        "decode",
        soft.to_str().unwrap(),
        "--profile",
        "meteor-m2-lrpt-72k",
        "--format",
        "soft-i8",
        "--json",
        "--quiet",
    ]);
    assert_eq!(v["frames"]["good"], 1);
    assert_eq!(v["packets"]["by_apid"]["65"], 1);
    assert_eq!(v["inner"]["phase_case"], "180");
    assert_eq!(v["sync"]["inverted_frames"], 1);

    // Bit-stream input keeps its old shape: no `inner` key.
    let v = json(&[
        "decode",
        hard.to_str().unwrap(),
        "--profile",
        "meteor-lrpt",
        "--json",
        "--quiet",
    ]);
    assert!(v.get("inner").is_none(), "{v}");
}
