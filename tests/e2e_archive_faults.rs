//! End-to-end: the archive's disk fails under the real `downlink serve` — full (a small tmpfs)
//! or read-only (`passes/` remounted read-only) — while a real capture arrives over UDP on
//! loopback. The failure must be visible in `/metrics`, `/api/v1/status` and `/api/v1/health`
//! within a second, the log must stay short, the pass must be listed (as incomplete) meanwhile
//! and reappear with its counts once the disk works again, and no record may claim frames that
//! are not on disk. Needs root for `mount` (CI runs as root).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// AOS frame data length of the `eos` profile (1020-byte frame, RS(255,223) I=4 parity off).
const EOS_FRAME: u64 = 892;
const EOS_CADU: u64 = 1024;

fn mount(args: &[&str]) -> bool {
    Command::new("mount")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (and the test is skipped) only outside CI when mounting is not permitted.
    fn new(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        if mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            at.to_str().unwrap(),
        ]) {
            return Some(Tmpfs(at.to_owned()));
        }
        assert!(
            std::env::var("CI").is_err(),
            "cannot mount a tmpfs (root needed): this test must run in CI"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Bind mounts on top first, then the tmpfs itself.
        for _ in 0..3 {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A daemon on `archive`, its log in `dir/daemon.log`.
fn daemon(dir: &Path, archive: &Path) -> (Daemon, PathBuf) {
    let work = tempfile::tempdir_in(dir).unwrap();
    let config = work.path().join("downlink.toml");
    std::fs::write(&config, eos_udp_config(archive, "")).unwrap();
    let d = Daemon::launch(serve_cmd(&config), work, archive.to_owned());
    let log = d.log.clone();
    (d, log)
}

fn status(d: &Daemon) -> serde_json::Value {
    serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap()
}

fn metric(d: &Daemon, series: &str) -> u64 {
    let m = d.get("/metrics").unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

/// Polls `f` every 20 ms until it holds; how long it took.
fn within(limit: Duration, what: &str, f: impl Fn() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

fn send_aqua(d: &Daemon) {
    let bytes = std::fs::read(data("cadu/aqua.20241206T175646.dat")).unwrap();
    d.send(&random_datagrams(&bytes, 7));
}

fn listed(d: &Daemon) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&d.get("/api/v1/passes").unwrap()).unwrap();
    v["passes"].as_array().unwrap().clone()
}

/// Frames archived: the records of the pass's frame index (8 bytes per frame), each naming a
/// whole record of `cadus.raw` (or of `frames.raw` when raw CADUs are not kept).
fn frames_on_disk(pass_dir: &Path) -> u64 {
    let idx = std::fs::read(pass_dir.join("frames.idx")).unwrap_or_default();
    let len = |name: &str| std::fs::metadata(pass_dir.join(name)).map_or(0, |m| m.len());
    let cadus = len("cadus.raw") / EOS_CADU + len("frames.raw") / EOS_FRAME;
    for r in idx.chunks_exact(8) {
        let record = u64::from(u32::from_le_bytes(r[..4].try_into().unwrap()));
        assert!(record < cadus, "frames.idx names CADU {record} of {cadus}");
    }
    idx.len() as u64 / 8
}

/// The record's claim: frames delivered (fill frames are never archived) minus those it says
/// are not archived — must be exactly what the frame files hold.
fn assert_record_matches_disk(d: &Daemon, rec: &serde_json::Value) {
    let dir = d.archive.join("passes").join(rec["id"].as_str().unwrap());
    let good = rec["counters"]["frames"]["good"].as_u64().unwrap();
    let fill = rec["counters"]["frames"]["fill"].as_u64().unwrap();
    let not = rec["archive"]["not_archived"]["frames"].as_u64().unwrap();
    assert_eq!(
        good - fill - not,
        frames_on_disk(&dir),
        "the record claims frames that are not on disk: {rec}"
    );
}

fn log_lines(log: &Path) -> usize {
    std::fs::read_to_string(log).unwrap().lines().count()
}

#[test]
fn a_full_disk_is_visible_at_once_and_the_pass_comes_back_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let Some(_fs) = Tmpfs::new(&archive, "8m") else {
        return;
    };
    let (d, log) = daemon(dir.path(), &archive);
    // Fill the disk, then leave ~300 KB: the pass (~3 MB of files) runs out mid-way.
    let filler = archive.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0xA5u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
    }
    let full = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(full - 300 * 1024)
        .unwrap();
    let lines_before = log_lines(&log);
    send_aqua(&d);
    let sent = Instant::now();
    within(Duration::from_secs(1), "write errors in /metrics", || {
        metric(&d, "downlink_archive_io_errors_total{op=\"write\"}") > 0
    });
    assert!(sent.elapsed() < Duration::from_secs(1));
    let st = status(&d);
    assert_eq!(st["health"]["state"], "degraded", "{st}");
    assert!(st["health"]["problems"]["archive"].is_string(), "{st}");
    assert_eq!(metric(&d, "downlink_degraded{component=\"archive\"}"), 1);
    let (code, _, _) = http(d.http, "GET", "/api/v1/health", &[], b"");
    assert_eq!(code, 503);
    // LOS: the record does not fit either; the pass is listed as incomplete, with its counts.
    within(
        Duration::from_secs(10),
        "the pass listed as incomplete",
        || {
            listed(&d)
                .iter()
                .any(|p| p["archive"] == "incomplete" && p["frames_good"] == 1023)
        },
    );
    assert_eq!(metric(&d, "downlink_pass_records_pending"), 1);
    assert!(metric(&d, "downlink_frames_unarchived_total{input=\"xband\"}") > 0);
    // Give the retries a few rounds: the daemon stays degraded all along (no flapping while
    // buffers still take writes), and the log stays short (one line per pass and failure kind).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        let st = status(&d);
        assert_eq!(st["health"]["state"], "degraded", "{st}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = log_lines(&log) - lines_before;
    assert!(
        lines <= 12,
        "{lines} log lines for one full-disk pass:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // Space returns: the record is written within a retry period and says what is on disk.
    std::fs::remove_file(&filler).unwrap();
    within(
        Duration::from_secs(6),
        "the record written when space returned",
        || d.passes_now().len() == 1,
    );
    let rec = d.wait_passes(1).remove(0);
    assert_eq!(rec["counters"]["frames"]["good"], 1023);
    assert_eq!(rec["archive"]["state"], "incomplete", "{rec}");
    assert!(
        rec["archive"]["not_archived"]["frames"].as_u64().unwrap() > 0,
        "{rec}"
    );
    assert_record_matches_disk(&d, &rec);
    let p = listed(&d);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0]["frames_good"], 1023);
    assert_eq!(metric(&d, "downlink_pass_records_pending"), 0);
    // The next pass archives completely and the daemon is healthy again.
    send_aqua(&d);
    within(Duration::from_secs(20), "second pass", || {
        d.passes_now().len() == 2
    });
    let recs = d.wait_passes(2);
    let second = recs.iter().find(|r| r["id"] != rec["id"]).unwrap();
    assert_eq!(second["archive"]["state"], "complete", "{second}");
    assert_record_matches_disk(&d, second);
    within(Duration::from_secs(2), "healthy again", || {
        status(&d)["health"]["state"] == "ok"
    });
}

#[test]
fn a_read_only_passes_directory_keeps_the_record_until_it_is_writable() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let Some(fs) = Tmpfs::new(&archive, "32m") else {
        return;
    };
    let (d, log) = daemon(dir.path(), &archive);
    let passes = archive.join("passes");
    let p = passes.to_str().unwrap();
    assert!(mount(&["--bind", p, p]) && mount(&["-o", "remount,bind,ro", p]));
    let lines_before = log_lines(&log);
    send_aqua(&d);
    let sent = Instant::now();
    within(Duration::from_secs(2), "create errors in /metrics", || {
        metric(&d, "downlink_archive_io_errors_total{op=\"create\"}") > 0
    });
    assert!(sent.elapsed() < Duration::from_secs(2));
    assert_eq!(status(&d)["health"]["state"], "degraded");
    within(
        Duration::from_secs(10),
        "the pass listed as incomplete",
        || {
            listed(&d)
                .iter()
                .any(|p| p["archive"] == "incomplete" && p["frames_good"] == 1023)
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let lines = log_lines(&log) - lines_before;
    assert!(
        lines <= 12,
        "{lines} log lines:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // Writable again: the record appears; nothing was archived, and it says so.
    assert!(mount(&["-o", "remount,bind,rw", p]));
    within(Duration::from_secs(6), "the record written", || {
        d.passes_now().len() == 1
    });
    let rec = d.wait_passes(1).remove(0);
    assert_eq!(rec["counters"]["frames"]["good"], 1023);
    assert_eq!(rec["archive"]["state"], "incomplete");
    assert_eq!(rec["archive"]["not_archived"]["frames"], 960, "{rec}");
    assert_record_matches_disk(&d, &rec);
    drop(fs);
}
