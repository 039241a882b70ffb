//! End-to-end: products at LOS survive `kill -9`. The real `downlink serve` on loopback receives
//! the shared Meteor-M2 capture again and again and is killed at seeded moments spread over the
//! product phase; after each restart every pass must have its whole product set (published
//! under its final paths, the visual COG included) and exactly one catalog item, with no
//! temporary file, staging directory or job record left. Only 127.0.0.1 is ever used.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::*;

const KINDS: [&str; 6] = [
    "raw_png",
    "raw_gcp_tiff",
    "analytic",
    "composite",
    "ndvi",
    "thumbnail",
];

fn status(d: &Daemon) -> serde_json::Value {
    serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap()
}

fn pass_dirs(d: &Daemon) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(d.archive.join("passes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("pass.json").is_file())
        .collect();
    v.sort();
    v
}

fn item_ids(d: &Daemon) -> Vec<String> {
    let (code, _, body) = http(
        d.http,
        "GET",
        "/stac/collections/meteor-m2-msu-mr/items?limit=100",
        &[],
        b"",
    );
    if code != 200 {
        return Vec::new();
    }
    let items: serde_json::Value = serde_json::from_slice(&body).unwrap();
    items["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

fn log_of(d: &Daemon) -> std::path::PathBuf {
    d.log.clone()
}

/// Waits until at least `n` passes are closed (a pass the loaded test machine split in two
/// counts twice), every one has its set and no job is left, and the catalog holds one item per
/// pass; how many passes.
fn wait_done(d: &Daemon, n: usize) -> usize {
    let t0 = Instant::now();
    loop {
        let st = status(d);
        assert_eq!(
            st["products"]["failed"],
            0,
            "{}\n{}",
            st["products"],
            tail(&log_of(d), 40)
        );
        let dirs = pass_dirs(d);
        let complete = dirs.len() >= n
            && dirs.iter().all(|p| {
                p.join("products/products.json").is_file() && !p.join("products.job").exists()
            });
        if complete && item_ids(d).len() == dirs.len() {
            return dirs.len();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "{n} passes not done: {} closed; status {}\n{}",
            dirs.len(),
            st["products"],
            tail(&log_of(d), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Names under `dir` (recursively) that only an unfinished write leaves.
fn leftovers(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.')
            || name.contains(".tmp")
            || name.contains(".old-")
            || name == "products.job"
            || name == "products.failed"
        {
            out.push(e.path().display().to_string());
        }
        if e.file_type().unwrap().is_dir() {
            leftovers(&e.path(), out);
        }
    }
}

/// Every pass: a whole set under its final paths, one catalog item, nothing left over.
fn check_archive(d: &Daemon, n: usize) {
    let dirs = pass_dirs(d);
    assert_eq!(dirs.len(), n);
    let mut ids = BTreeSet::new();
    for dir in &dirs {
        let id = dir.file_name().unwrap().to_string_lossy().into_owned();
        let products = dir.join("products");
        let listing: serde_json::Value =
            serde_json::from_slice(&std::fs::read(products.join("products.json")).unwrap())
                .unwrap();
        assert_eq!(listing["pass_id"], id.as_str());
        assert_eq!(listing["channels"], serde_json::json!([64, 65, 68]));
        let list = listing["products"].as_array().unwrap();
        let kinds: BTreeSet<&str> = list.iter().map(|p| p["kind"].as_str().unwrap()).collect();
        for k in KINDS {
            assert!(kinds.contains(k), "{id}: {k} missing from {kinds:?}");
        }
        for p in list {
            let path = Path::new(p["path"].as_str().unwrap());
            assert_eq!(
                path.parent(),
                Some(products.as_path()),
                "{}",
                path.display()
            );
            assert_eq!(
                std::fs::metadata(path).unwrap().len(),
                p["bytes"].as_u64().unwrap(),
                "{}",
                path.display()
            );
        }
        assert!(
            products.join("composite.web.tif").is_file(),
            "{id}: no visual COG"
        );
        let mut left = Vec::new();
        leftovers(dir, &mut left);
        assert!(left.is_empty(), "{id}: left over: {left:?}");
        ids.insert(id);
    }
    let items = item_ids(d);
    assert_eq!(items.len(), n, "one item per pass: {items:?}");
    assert_eq!(items.into_iter().collect::<BTreeSet<_>>(), ids);
}

#[test]
fn kill_9_during_product_making_still_gives_every_pass_its_whole_set_once() {
    let (mut d, _tle) = meteor_daemon("");

    // The first pass, undisturbed, measures the product phase: from the pass record to the
    // catalog item.
    send_meteor_pass(&d, 1);
    d.wait_passes(1);
    let t0 = Instant::now();
    let mut passes = wait_done(&d, 1);
    let phase = t0.elapsed();
    check_archive(&d, passes);
    assert_eq!(status(&d)["products"]["ok"], 1);

    // Ten kills, run k somewhere in the k-th tenth of the phase (seeded).
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut interrupted, mut cleaned, mut recovered) = (0, 0, 0);
    let mut record = None;
    for run in 0..10u64 {
        let n = passes + 1;
        send_meteor_pass(&d, 100 + run);
        let new = d.wait_passes(n).pop().unwrap();
        let dir = d.archive.join("passes").join(new["id"].as_str().unwrap());
        let frac = (run as f64 + rng.below(1000) as f64 / 1000.0) / 10.0;
        std::thread::sleep(phase.mul_f64(frac));
        if let Ok(r) = std::fs::read(dir.join("products.job")) {
            record = Some((dir.clone(), r));
        }
        if !dir.join("products/products.json").exists() {
            interrupted += 1;
        }
        d.kill9_and_restart();
        passes = wait_done(&d, n);
        let st = status(&d);
        cleaned += st["products"]["cleaned"].as_u64().unwrap();
        recovered += st["products"]["recovered"].as_u64().unwrap();
        check_archive(&d, passes);
    }
    eprintln!(
        "product phase {phase:?}: {interrupted} of 10 kills before the set was published; \
         {recovered} jobs taken up and {cleaned} leftovers removed after restarts"
    );
    // The kills did land inside the phase, and restarts did the recovery work.
    assert!(
        interrupted >= 3,
        "only {interrupted} kills interrupted a set"
    );
    assert!(recovered >= interrupted, "{recovered} < {interrupted}");
    assert!(cleaned >= 1, "no staging directory was ever cleaned up");

    // Idempotent: a job record for a pass whose set is complete and catalogued (as after a
    // crash just before the record is removed) only catalogues it again — same set, no new item.
    let (dir, rec) = record.expect("a job record was seen");
    let listing_before = std::fs::read(dir.join("products/products.json")).unwrap();
    std::fs::write(dir.join("products.job"), rec).unwrap();
    d.kill9_and_restart();
    assert_eq!(wait_done(&d, passes), passes);
    let st = status(&d);
    assert_eq!(st["products"]["ok"], 1, "{}", st["products"]);
    assert_eq!(st["products"]["last"]["made"], false, "{}", st["products"]);
    assert_eq!(
        std::fs::read(dir.join("products/products.json")).unwrap(),
        listing_before
    );
    check_archive(&d, passes);
    let metrics = d.get("/metrics").unwrap();
    assert!(
        metrics.contains("downlink_product_passes_recovered_total 1"),
        "{metrics}"
    );
}
