//! End-to-end: `/api/v1/passes` over a station's years of passes. 10,000 pass records (written
//! into the archive before the daemon starts) plus a pass cut short by `kill -9` and recovered
//! at restart: the list pages newest first through its cursor, the recovered pass is listed with
//! its AOS/LOS, passes added after start (by the daemon and by another process) appear, and
//! unknown parameters are refused. Prints the latency of the first and of a deep page.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::time::{Duration, Instant, SystemTime};

mod common;
use common::*;

const SYNTHETIC: usize = 10_000;

/// Pass id of a synthetic pass `i`: ten a day from 2023-01-01, every 2 h 24 min.
fn synthetic(i: usize) -> (String, String, String) {
    let aos = SystemTime::UNIX_EPOCH + Duration::from_secs(1_672_531_200 + i as u64 * 8640);
    let los = aos + Duration::from_secs(600);
    let t = humantime::format_rfc3339_seconds(aos).to_string();
    let compact: String = t.chars().filter(|c| *c != '-' && *c != ':').collect();
    (
        format!("{compact}-xband"),
        humantime::format_rfc3339_millis(aos).to_string(),
        humantime::format_rfc3339_millis(los).to_string(),
    )
}

fn write_record(passes: &std::path::Path, i: usize) {
    let (id, aos, los) = synthetic(i);
    let dir = passes.join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    // The shape the pipeline writes (older records have fewer keys: they are read too).
    let rec = serde_json::json!({
        "id": id, "input": "xband", "profile": "jpss", "spacecraft": "Suomi NPP", "scid": 157,
        "aos": aos, "los": los, "duration_s": 600.0,
        "counters": {"frames": {"good": i}, "packets": {"total": 2 * i}, "rs": {"uncorrectable": 0}},
        "link_quality": null,
        "drops": {"empty": 0, "kernel_overflow": 0, "not_allowed": 0, "queue_full": 0, "truncated": 0},
        "suspect": false,
        "archive": {"state": "complete", "io_errors": {}, "not_archived": {"cadus": 0, "frames": 0, "packets": 0}, "poisoned": false},
        "archive_io_errors": 0, "plot": "plot.png", "timeline": "timeline.json",
    });
    std::fs::write(dir.join("pass.json"), rec.to_string()).unwrap();
}

fn page(d: &Daemon, query: &str) -> serde_json::Value {
    json_of(d.http, &format!("/api/v1/passes{query}"))
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    v["passes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Median wall time of `n` requests of `path` (ms), each answered 200.
fn median_ms(d: &Daemon, path: &str, n: usize) -> f64 {
    let mut t: Vec<f64> = (0..n)
        .map(|_| {
            let t0 = Instant::now();
            let (st, _, body) = http(d.http, "GET", path, &[], b"");
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
            ms
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[n / 2]
}

#[test]
fn ten_thousand_passes_page_newest_first_with_the_recovered_one_and_new_ones() {
    // A pass cut short by kill -9 (its record is rebuilt from cadus.raw at the restart).
    let mut d = Daemon::start("jpss", "");
    let bytes = std::fs::read(data("cadu/npp.20241206T173815.dat")).unwrap();
    d.send(&random_datagrams(&bytes[..bytes.len() / 2], 21));
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
    std::thread::sleep(Duration::from_millis(300));
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let killed_at = SystemTime::now();
    let passes = d.archive.join("passes");
    let crashed: Vec<String> = std::fs::read_dir(&passes)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(crashed.len(), 1, "{crashed:?}");
    let crashed = crashed[0].clone();
    assert!(!passes.join(&crashed).join("pass.json").exists());

    // Years of passes, on disk before the daemon starts again.
    let t0 = Instant::now();
    for i in 0..SYNTHETIC {
        write_record(&passes, i);
    }
    eprintln!("wrote {SYNTHETIC} records in {:?}", t0.elapsed());
    d.respawn(serve_cmd(&d.config.clone()));

    // The index is built at start (every record read once); the first request may wait for it.
    let t0 = Instant::now();
    let first = page(&d, "");
    let cold_ms = t0.elapsed().as_secs_f64() * 1e3;
    assert_eq!(first["total"], SYNTHETIC + 1, "{}", first["total"]);
    assert_eq!(first["limit"], 100);
    let first_ids = ids(&first);
    assert_eq!(first_ids.len(), 100);
    // Newest first: the recovered pass (AOS today), then the synthetic ones from the newest.
    assert_eq!(first_ids[0], crashed);
    for (k, id) in first_ids[1..].iter().enumerate() {
        assert_eq!(*id, synthetic(SYNTHETIC - 1 - k).0);
    }
    let rec = &first["passes"][0];
    assert_eq!(rec["archive"], "interrupted", "{rec}");
    assert_eq!(rec["spacecraft"], "Suomi NPP", "{rec}");
    let aos = humantime::parse_rfc3339(rec["aos"].as_str().unwrap()).unwrap();
    let los = humantime::parse_rfc3339(rec["los"].as_str().unwrap()).unwrap();
    assert!(aos <= los && los <= killed_at, "{rec}");
    assert!(
        killed_at.duration_since(aos).unwrap() < Duration::from_secs(60),
        "{rec}"
    );
    assert!(rec["frames_good"].as_u64().unwrap() >= 400, "{rec}");
    let full: serde_json::Value =
        serde_json::from_str(&d.get(&format!("/api/v1/passes/{crashed}")).unwrap()).unwrap();
    assert_eq!(full["interrupted"], true);
    assert_eq!(full["aos"], rec["aos"]);
    assert_eq!(full["scid"], 157);

    // The next link leads to the next page.
    let next = first["next"].as_str().unwrap();
    assert_eq!(
        first["links"][0]["href"],
        format!("/api/v1/passes?limit=100&before={next}")
    );
    let second = page(&d, &format!("?before={next}"));
    assert_eq!(ids(&second)[0], synthetic(SYNTHETIC - 100).0);

    // Walking every page of 1000 gives every pass once, in order.
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("?limit=1000&before={c}"),
            None => "?limit=1000".to_owned(),
        };
        let p = page(&d, &q);
        all.extend(ids(&p));
        pages += 1;
        match p["next"].as_str() {
            Some(n) => cursor = Some(n.to_owned()),
            None => break,
        }
        assert!(pages <= 11);
    }
    assert_eq!(all.len(), SYNTHETIC + 1);
    assert_eq!(all[0], crashed);
    for (k, id) in all[1..].iter().enumerate() {
        assert_eq!(*id, synthetic(SYNTHETIC - 1 - k).0);
    }

    // A deep page: before a pass id (or a cursor) 9,000 passes down.
    let deep_id = synthetic(1000).0;
    let deep = page(&d, &format!("?before={deep_id}&limit=100"));
    let deep_ids = ids(&deep);
    assert_eq!(deep_ids.len(), 100);
    assert_eq!(deep_ids[0], synthetic(999).0);
    assert_eq!(deep_ids[99], synthetic(900).0);
    let last = page(&d, &format!("?before={}", synthetic(3).0));
    assert_eq!(ids(&last).len(), 3);
    assert!(last["next"].is_null());

    // Refused: unknown or doubled parameters, bad limits, unknown ids.
    for q in [
        "?bbox=1,2,3,4",
        "?limit=0",
        "?limit=1001",
        "?limit=x",
        "?limit=1&limit=2",
        "?before=nope",
    ] {
        let (st, _, body) = http(d.http, "GET", &format!("/api/v1/passes{q}"), &[], b"");
        assert_eq!(st, 400, "{q}: {}", String::from_utf8_lossy(&body));
        let e: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(e["code"], "InvalidParameterValue", "{q}");
    }

    // Latency at 10,000 passes (index built).
    let first_ms = median_ms(&d, "/api/v1/passes", 7);
    let deep_ms = median_ms(&d, &format!("/api/v1/passes?before={deep_id}"), 7);
    let big_ms = median_ms(&d, "/api/v1/passes?limit=1000", 7);
    eprintln!(
        "passes={} first request after start={cold_ms:.1} ms; median of 7: first page={first_ms:.2} ms, deep page={deep_ms:.2} ms, limit=1000 page={big_ms:.2} ms ({} build)",
        SYNTHETIC + 1,
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );

    // A pass another process adds is listed (the passes directory changed).
    let (outside, _, _) = synthetic(SYNTHETIC + 100); // newer than every synthetic pass
    write_record(&passes, SYNTHETIC + 100);
    let p = page(&d, "?limit=5");
    assert_eq!(p["total"], SYNTHETIC + 2);
    assert!(ids(&p).contains(&outside), "{p}");

    // A pass the daemon itself records is listed first.
    d.send(&random_datagrams(&bytes, 22));
    let t0 = Instant::now();
    let newest = loop {
        let p = page(&d, "?limit=1");
        if p["total"] == SYNTHETIC + 3 {
            break p;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{p}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let n = &newest["passes"][0];
    assert_eq!(n["input"], "xband");
    assert_eq!(n["archive"], "complete", "{n}");
    assert_eq!(n["frames_good"], 1023, "{n}");
    assert_eq!(n["spacecraft"], "Suomi NPP");
    assert!(n["los"].as_str().unwrap() >= n["aos"].as_str().unwrap());
    assert!(d.stop().success());
}
