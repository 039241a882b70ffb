//! End-to-end: `downlink validate` on the issue's minimal config, the shipped example, and a
//! config with several problems (all reported at once, with field paths).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Command, Output};

fn downlink(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(args)
        .output()
        .expect("run downlink")
}

const MINIMAL: &str = r#"
[archive]
path = "/var/lib/downlink"
[http]
listen = "127.0.0.1:8080"
[pass]
los_timeout = "10s"
[[input]]
name = "xband"
listen = "udp://0.0.0.0:5000"
format = "bits"
profile = "jpss"
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn the_issue_config_is_valid_as_written() {
    let dir = tempfile::tempdir().unwrap();
    // The archive is relative to the config file, so validating creates it in `dir`.
    let p = write(
        dir.path(),
        "downlink.toml",
        &MINIMAL.replace("/var/lib/downlink", "archive"),
    );
    let out = downlink(&["validate", "--config", &p]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("ok") && text.contains("xband") && text.contains("udp://0.0.0.0:5000"),
        "{text}"
    );
    assert!(dir.path().join("archive/passes").is_dir());
}

#[test]
fn the_shipped_example_config_is_valid() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/downlink.toml");
    // validate probes the archive directory (creating it), so point it into a temporary one.
    let text = std::fs::read_to_string(&example).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let here = text.replace(
        "path = \"/var/lib/downlink\"",
        &format!(
            "path = {:?}",
            dir.path().join("archive").display().to_string()
        ),
    );
    assert_ne!(here, text, "the example no longer sets archive.path");
    let p = write(dir.path(), "downlink.toml", &here);
    let out = downlink(&["validate", "--config", &p]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = downlink(&["example-config"]);
    assert_eq!(printed.stdout, std::fs::read(&example).unwrap());
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = MINIMAL
        .replace("\"10s\"", "\"ten\"")
        .replace("udp://0.0.0.0:5000", "udp:/x")
        .replace("\"jpss\"", "\"voyager\"")
        .replace(
            "format = \"bits\"",
            "format = \"bits\"\nallow = [\"10.1.2.3/8\"]\nrcvbuf = \"1KiB\"",
        );
    let p = write(dir.path(), "bad.toml", &bad);
    let out = downlink(&["validate", "--config", &p]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for path in [
        "`pass.los_timeout`",
        "`input[0].listen`",
        "`input[0].profile`",
        "`input[0].allow[0]`",
        "`input[0].rcvbuf`",
    ] {
        assert!(err.contains(path), "{path} missing from:\n{err}");
    }
    assert!(err.contains("5 problems"), "{err}");
}

#[test]
fn unknown_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "x.toml",
        &MINIMAL.replace("[pass]", "[pass]\nlos_timout = \"3s\""),
    );
    let out = downlink(&["validate", "--config", &p]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("los_timout"), "{err}");
}
