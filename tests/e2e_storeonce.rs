//! End-to-end: the store-once pass archive. A real Aqua capture sent over UDP is archived as
//! `cadus.raw` plus its indexes (no per-VC or per-APID copies), and the HTTP API gives each
//! APID's packets byte for byte as `downlink decode --packets-out` gives them from the same
//! capture, and each VC's frames as `--frames-out` does. A pass cut short by `kill -9`, its
//! indexes torn, has them rebuilt from `cadus.raw` at the restart and reads the same way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

/// `downlink decode FILE --format FORMAT --packets-out DIR --frames-out FILE`: per-APID packet
/// files by APID and the good frames split by VCID (AOS: low 6 bits of the second byte).
fn decode_reference(file: &Path, format: &str) -> (BTreeMap<u16, Vec<u8>>, BTreeMap<u8, Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames.bin");
    let out = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args([
            "decode",
            file.to_str().unwrap(),
            "--profile",
            "eos",
            "--format",
            format,
        ])
        .arg("--packets-out")
        .arg(dir.path().join("pk"))
        .arg("--frames-out")
        .arg(&frames)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut packets = BTreeMap::new();
    for e in std::fs::read_dir(dir.path().join("pk")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let apid: u16 = name
            .strip_prefix("apid")
            .unwrap()
            .strip_suffix(".pkts")
            .unwrap()
            .parse()
            .unwrap();
        packets.insert(apid, std::fs::read(e.path()).unwrap());
    }
    let mut by_vc: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    for f in std::fs::read(&frames).unwrap().chunks_exact(892) {
        by_vc.entry(f[1] & 0x3F).or_default().extend_from_slice(f);
    }
    (packets, by_vc)
}

/// The body of a 200 answer (streamed: chunked transfer encoding, decoded by `http`).
fn body_of(d: &Daemon, path: &str) -> Vec<u8> {
    let (st, head, body) = http(d.http, "GET", path, &[], b"");
    assert_eq!(st, 200, "{path}: {head}");
    assert!(head.contains("application/octet-stream"), "{head}");
    body
}

/// Everything the API gives for the pass equals the reference decode.
fn assert_served(
    d: &Daemon,
    id: &str,
    packets: &BTreeMap<u16, Vec<u8>>,
    frames: &BTreeMap<u8, Vec<u8>>,
) {
    let data: serde_json::Value =
        serde_json::from_str(&d.get(&format!("/api/v1/passes/{id}/data")).unwrap()).unwrap();
    let apids: Vec<u64> = packets.keys().map(|a| u64::from(*a)).collect();
    let vcids: Vec<u64> = frames.keys().map(|v| u64::from(*v)).collect();
    assert_eq!(data["apids"], serde_json::json!(apids), "{data}");
    assert_eq!(data["vcids"], serde_json::json!(vcids), "{data}");
    for (apid, want) in packets {
        let got = body_of(d, &format!("/api/v1/passes/{id}/packets/{apid}"));
        assert!(
            &got == want,
            "APID {apid}: {} vs {} bytes",
            got.len(),
            want.len()
        );
    }
    for (vcid, want) in frames {
        let got = body_of(d, &format!("/api/v1/passes/{id}/frames/{vcid}"));
        assert!(
            &got == want,
            "VC {vcid}: {} vs {} bytes",
            got.len(),
            want.len()
        );
    }
}

#[test]
fn a_pass_is_stored_once_and_served_per_apid_and_per_vc() {
    let d = Daemon::start("eos", "");
    let capture = data("cadu/aqua.20241206T175646.dat");
    let bytes = std::fs::read(&capture).unwrap();
    d.send(&random_datagrams(&bytes, 13));
    let recs = d.wait_passes(1);
    let id = recs[0]["id"].as_str().unwrap().to_owned();
    let dir = d.archive.join("passes").join(&id);

    // Each byte once: no per-VC or per-APID copies, the indexes 8 bytes a frame and a packet.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        !dir.join("frames").exists() && !dir.join("packets").exists(),
        "{names:?}"
    );
    let len = |n: &str| std::fs::metadata(dir.join(n)).unwrap().len();
    let raw = len("cadus.raw");
    assert_eq!(raw, aligned_cadus(&bytes).len() as u64);
    let c = &recs[0]["counters"];
    let frames = c["frames"]["good"].as_u64().unwrap() - c["frames"]["fill"].as_u64().unwrap();
    assert_eq!(len("frames.idx"), 8 * frames, "{names:?}");
    assert_eq!(
        len("packets.idx"),
        8 * c["packets"]["total"].as_u64().unwrap()
    );
    let data_bytes = raw + len("frames.idx") + len("packets.idx");
    eprintln!(
        "input {} B, pass data {data_bytes} B ({:.3} per input byte)",
        bytes.len(),
        data_bytes as f64 / bytes.len() as f64
    );
    assert!(data_bytes * 100 < bytes.len() as u64 * 102, "{data_bytes}");

    let (packets, by_vc) = decode_reference(&capture, "bits");
    assert!(packets.len() >= 3, "{:?}", packets.keys());
    assert_served(&d, &id, &packets, &by_vc);

    // Bad numbers and unknown passes.
    let (st, _, _) = http(
        d.http,
        "GET",
        &format!("/api/v1/passes/{id}/frames/64"),
        &[],
        b"",
    );
    assert_eq!(st, 400);
    let (st, _, _) = http(
        d.http,
        "GET",
        &format!("/api/v1/passes/{id}/packets/2048"),
        &[],
        b"",
    );
    assert_eq!(st, 400);
    let (st, _, _) = http(
        d.http,
        "GET",
        "/api/v1/passes/20990101T000000Z-xband/packets/1",
        &[],
        b"",
    );
    assert_eq!(st, 404);
    let (st, _, _) = http(
        d.http,
        "GET",
        "/api/v1/passes/..%2f..%2fetc/packets/1",
        &[],
        b"",
    );
    assert!(st == 400 || st == 404, "{st}");
}

#[test]
fn a_crashed_pass_gets_its_indexes_rebuilt_from_cadus_raw() {
    let mut d = Daemon::start("eos", "");
    let capture = data("cadu/aqua.20241206T175646.dat");
    let bytes = std::fs::read(&capture).unwrap();
    d.send(&random_datagrams(&bytes[..bytes.len() * 2 / 3], 5));
    let t0 = Instant::now();
    loop {
        let st: serde_json::Value =
            serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
        if st["inputs"][0]["current"]["frames"]["good"]
            .as_u64()
            .unwrap_or(0)
            >= 400
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "decoder stuck: {st}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Past one fsync interval: what was acknowledged is on disk.
    std::thread::sleep(Duration::from_millis(300));
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let passes = d.archive.join("passes");
    let id = std::fs::read_dir(&passes)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    let dir = passes.join(&id);
    assert!(!dir.join("pass.json").exists());
    // The indexes torn (shorter than the data) and missing, as a crash may leave them.
    let fx = std::fs::read(dir.join("frames.idx")).unwrap();
    assert!(fx.len() >= 8 * 100, "{} bytes of index", fx.len());
    std::fs::write(dir.join("frames.idx"), &fx[..fx.len() / 3 + 5]).unwrap();
    std::fs::remove_file(dir.join("packets.idx")).unwrap();

    d.respawn(serve_cmd(&d.config.clone()));
    let recs = d.wait_passes(1);
    assert_eq!(recs[0]["interrupted"], true, "{}", recs[0]);
    let c = &recs[0]["counters"];
    let frames = c["frames"]["good"].as_u64().unwrap() - c["frames"]["fill"].as_u64().unwrap();
    assert!(frames >= 400, "{c}");
    assert_eq!(
        std::fs::metadata(dir.join("frames.idx")).unwrap().len(),
        8 * frames
    );
    assert_eq!(
        std::fs::metadata(dir.join("packets.idx")).unwrap().len(),
        8 * c["packets"]["total"].as_u64().unwrap()
    );
    // What the recovered pass serves is what its CADUs decode to.
    let (packets, by_vc) = decode_reference(&dir.join("cadus.raw"), "cadu");
    assert!(!packets.is_empty());
    assert_served(&d, &id, &packets, &by_vc);
}

/// SIGHUP, then waits until the configuration generation moved past `from`.
fn reload(d: &Daemon, from: u64) {
    let pid = d.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    let t0 = Instant::now();
    loop {
        let s: serde_json::Value = serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
        if s["reloads"]["generation"].as_u64().unwrap() > from {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "reload not applied: {s}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `archive.keep_raw_cadus` switched by a reload while a decoder waits for its next pass: the
/// pass is archived as that decoder delivers it (raw CADUs or frames), every frame of it.
#[test]
fn keep_raw_cadus_switched_by_reloads_between_passes_loses_no_frame() {
    let d = Daemon::start("eos", "");
    let capture = data("cadu/aqua.20241206T175646.dat");
    let bytes = std::fs::read(&capture).unwrap();
    let (packets, by_vc) = decode_reference(&capture, "bits");
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    let generation = |d: &Daemon| {
        let s: serde_json::Value = serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
        s["reloads"]["generation"].as_u64().unwrap()
    };
    let mut kept = Vec::new();
    for (n, keep) in [(1, false), (2, true)] {
        let g = generation(&d);
        std::fs::write(
            &d.config,
            cfg.replace(
                "[archive]\n",
                &format!("[archive]\nkeep_raw_cadus = {keep}\n"),
            ),
        )
        .unwrap();
        reload(&d, g);
        d.send(&random_datagrams(&bytes, 40 + n));
        let recs = d.wait_passes(n as usize);
        let rec = recs.last().unwrap();
        let id = rec["id"].as_str().unwrap();
        let dir = d.archive.join("passes").join(id);
        assert_eq!(rec["archive"]["not_archived"]["frames"], 0, "{rec}");
        assert_eq!(rec["archive"]["not_archived"]["packets"], 0, "{rec}");
        let c = &rec["counters"];
        let frames = c["frames"]["good"].as_u64().unwrap() - c["frames"]["fill"].as_u64().unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("frames.idx")).unwrap().len(),
            8 * frames
        );
        kept.push((
            std::fs::metadata(dir.join("cadus.raw")).is_ok_and(|m| m.len() > 0),
            dir.join("frames.raw").exists(),
        ));
        assert_served(&d, id, &packets, &by_vc);
    }
    // Pass 1: its decoder was built before the reload, with raw CADUs. Pass 2: its decoder was
    // built after the first reload (at LOS), without them, so it keeps frames.
    assert_eq!(kept, vec![(true, false), (false, true)]);
}
