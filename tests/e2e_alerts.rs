//! End-to-end: change alerts in the real `downlink serve`. Scenes are imported with
//! `downlink archive add --bands red,nir` from another process while the daemon runs; the
//! daemon notices, publishes the alerts item, serves it at /api/v1/alerts and /stac, and posts
//! the webhook event `alert`. Bad inputs are reported and the daemon keeps serving.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MURI_2020: &str = "change/muri-ag/S2_L2A_T32TMT_20200807_red_nir.tif";
const MURI_2021: &str = "change/muri-ag/S2_L2A_T32TMT_20210812_red_nir.tif";

/// `downlink archive add FILE --collection C --datetime T [--bands B]` into the daemon's archive.
fn add(d: &Daemon, file: &str, collection: &str, when: &str, bands: Option<&str>) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_downlink"));
    c.args(["archive", "add"])
        .arg(data(file))
        .args(["--collection", collection, "--datetime", when])
        .arg("--archive")
        .arg(&d.archive);
    if let Some(b) = bands {
        c.args(["--bands", b]);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A loopback webhook receiver answering 204; the JSON bodies it got.
fn receiver() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = bodies.clone();
    std::thread::spawn(move || {
        for mut conn in server.incoming().flatten() {
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut raw = Vec::new();
            let mut buf = vec![0u8; 65536];
            loop {
                let n = conn.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
                let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if raw.len() >= end + 4 + len {
                    sink.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&raw[end + 4..end + 4 + len]).unwrap());
                    conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                        .unwrap();
                    break;
                }
            }
        }
    });
    (port, bodies)
}

fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn muri_alerts_over_http_stac_and_webhook() {
    let (hook, bodies) = receiver();
    let mask = data("change/muri-ag/forest_wa.geojson");
    let sections = format!(
        "[[alerts]]\ncollection = \"muri\"\nmask = \"{}\"\ndrop = 0.3\nmmu_ha = 0.5\n\
         [[webhook]]\nurl = \"http://127.0.0.1:{hook}/hook\"\nevents = [\"alert\"]\n",
        mask.display()
    );
    let mut d = Daemon::start_full("udp", "eos", "bits", "", &sections);
    // The later date first: alerts follow acquisition time, not the order of import.
    add(
        &d,
        MURI_2021,
        "muri",
        "2021-08-12T10:30:00Z",
        Some("red,nir"),
    );
    add(
        &d,
        MURI_2020,
        "muri",
        "2020-08-07T10:30:00Z",
        Some("red,nir"),
    );

    let fc = wait_for("two alerts", 60, || {
        let (st, head, body) = http(d.http, "GET", "/api/v1/alerts?collection=muri", &[], b"");
        assert!(
            st == 200 || st == 503,
            "{head}\n{}",
            String::from_utf8_lossy(&body)
        );
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (v["features"].as_array()?.len() == 2).then_some(v)
    });
    let f = fc["features"].as_array().unwrap();
    let area = |i: usize| f[i]["properties"]["area_ha"].as_f64().unwrap();
    assert!((area(0) - 1.36).abs() <= 0.136, "{fc}");
    assert!((area(1) - 0.84).abs() <= 0.084, "{fc}");
    for x in f {
        let p = &x["properties"];
        assert_eq!(p["collection"], "muri");
        assert_eq!(p["confidence"], "low");
        assert_eq!(p["mask"], "forest_wa.geojson");
        assert_eq!(p["first_detected"], "2021-08-12T10:30:00Z");
        assert_eq!(p["source_items"].as_array().unwrap().len(), 2);
        assert_eq!(x["geometry"]["type"], "Polygon");
    }
    // Filters.
    let n = |q: &str| {
        json_of(d.http, &format!("/api/v1/alerts?{q}"))["features"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(n("min_area_ha=1"), 1);
    assert_eq!(n("confidence=high"), 0);
    assert_eq!(n("confidence=low,high"), 2);
    assert_eq!(n("bbox=8.353,47.269,8.357,47.272"), 1);
    assert_eq!(n("bbox=-75,-9,-74,-8"), 0);
    assert_eq!(n("datetime=2021-01-01T00:00:00Z/.."), 2);
    assert_eq!(n("datetime=../2021-01-01T00:00:00Z"), 0);
    assert_eq!(n("collection=nothing"), 0);
    let (st, _, _) = http(d.http, "GET", "/api/v1/alerts?confidence=maybe", &[], b"");
    assert_eq!(st, 400);

    // The alerts item in /stac, with its assets and derived_from links.
    let items = json_of(d.http, "/stac/collections/alerts-muri/items");
    let items = items["features"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    let it = &items[0];
    for k in ["alerts", "dndvi", "loss"] {
        assert!(it["assets"][k]["href"].is_string(), "{it}");
    }
    let derived = it["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rel"] == "derived_from")
        .count();
    assert_eq!(derived, 2, "{it}");
    assert_eq!(it["properties"]["downlink:alerts"]["low"], 2);

    // The webhook.
    let body = wait_for("the alert webhook", 20, || {
        bodies
            .lock()
            .unwrap()
            .iter()
            .find(|b| {
                b["event"] == "alert"
                    && b["data"]["features"]
                        .as_array()
                        .is_some_and(|f| f.len() == 2)
            })
            .cloned()
    });
    assert_eq!(body["data"]["collection"], "muri");
    assert_eq!(body["data"]["alerts_collection"], "alerts-muri");

    let status = json_of(d.http, "/api/v1/status");
    assert!(
        status["alerts"]["muri"]["runs"].as_u64().unwrap() >= 1,
        "{status}"
    );
    let metrics = d.get("/metrics").unwrap();
    assert!(metrics.contains("downlink_alert_runs_total"), "{metrics}");

    // The web map's alerts layer in headless Chromium; the screenshot stays in
    // target/test-artifacts/alerts/.
    web_map_shows_the_alerts(&d);
    d.stop();
}

fn web_map_shows_the_alerts(d: &Daemon) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let web = repo.join("web");
    if !browser_ready(&web) {
        return;
    }
    let shots = repo.join("target/test-artifacts/alerts");
    std::fs::create_dir_all(&shots).unwrap();
    // The centre of the larger clearing.
    let out = Command::new("node")
        .arg(web.join("tests/alerts.mjs"))
        .arg(format!("http://127.0.0.1:{}", d.http))
        .arg(&shots)
        .arg("muri")
        .arg("8.35471,47.27075")
        .current_dir(&web)
        .output()
        .unwrap();
    let found = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{found}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f: serde_json::Value = serde_json::from_str(found.trim()).unwrap();
    assert_eq!(f["rendered"], 2, "{f}");
    let panel = f["panel"].as_str().unwrap();
    assert!(panel.contains("1.3") && panel.contains(" ha"), "{f}");
    assert!(panel.contains("2021-08-12T10:30:00Z"), "{f}");
    assert!(
        panel.contains("before: muri-2020") && panel.contains("after: muri-2021"),
        "{f}"
    );
    let address = f["address"].as_str().unwrap();
    assert!(
        address.contains("alerts=1") && address.contains("alerts_confidence=low%2Chigh"),
        "{f}"
    );
    assert_eq!(f["errors"], serde_json::json!([]), "{f}");
    assert!(std::fs::read(shots.join("alerts.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
}

#[test]
fn bad_inputs_are_reported_and_the_daemon_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let bad_mask = dir.path().join("mask.geojson");
    std::fs::write(&bad_mask, "{ this is not GeoJSON").unwrap();
    let sections = format!(
        "[[alerts]]\ncollection = \"one\"\n\
         [[alerts]]\ncollection = \"nobands\"\n\
         [[alerts]]\ncollection = \"badmask\"\nmask = \"{}\"\n\
         [[alerts]]\ncollection = \"mixed\"\n",
        bad_mask.display()
    );
    let mut d = Daemon::start_full("udp", "eos", "bits", "", &sections);
    add(
        &d,
        MURI_2020,
        "one",
        "2020-08-07T10:30:00Z",
        Some("red,nir"),
    );
    // Bands named, but neither red nor NIR.
    add(
        &d,
        MURI_2020,
        "nobands",
        "2020-08-07T10:30:00Z",
        Some("green,blue"),
    );
    add(
        &d,
        MURI_2021,
        "nobands",
        "2021-08-12T10:30:00Z",
        Some("green,blue"),
    );
    add(
        &d,
        MURI_2020,
        "badmask",
        "2020-08-07T10:30:00Z",
        Some("red,nir"),
    );
    add(
        &d,
        MURI_2021,
        "badmask",
        "2021-08-12T10:30:00Z",
        Some("red,nir"),
    );
    add(
        &d,
        "change/pucallpa-landsat/landsat_pucallpa_2015.tif",
        "mixed",
        "2015-07-01T00:00:00Z",
        Some("swir16,nir,red,green"),
    );
    add(
        &d,
        MURI_2021,
        "mixed",
        "2021-08-12T10:30:00Z",
        Some("red,nir"),
    );

    let expect = [
        ("one", "at least two"),
        ("nobands", "eo:common_name \"red\""),
        ("badmask", "mask.geojson"),
        ("mixed", "does not overlap"),
    ];
    let status = wait_for("four failures", 90, || {
        let s = json_of(d.http, "/api/v1/status");
        expect
            .iter()
            .all(|(c, m)| {
                s["alerts"][c]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains(m))
            })
            .then_some(s)
    });
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&status["alerts"]).unwrap()
    );
    assert_eq!(status["alerts"]["one"]["failures"]["too_few_items"], 1);
    // No alerts item was published, and none half-written on disk.
    let cols = json_of(d.http, "/stac/collections");
    let ids: Vec<&str> = cols["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert!(ids.iter().all(|i| !i.starts_with("alerts-")), "{ids:?}");
    assert!(
        !d.archive
            .join("collections/alerts-badmask")
            .join("2021/08/12")
            .exists()
            || std::fs::read_dir(d.archive.join("collections/alerts-badmask/2021/08/12"))
                .unwrap()
                .flatten()
                .all(|e| std::fs::read_dir(e.path()).unwrap().next().is_none())
    );
    assert_eq!(
        json_of(d.http, "/api/v1/alerts")["features"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let metrics = d.get("/metrics").unwrap();
    assert!(
        metrics.contains("downlink_alert_run_failures_total{reason=\"input\"} 3"),
        "{metrics}"
    );
    // Still serving and healthy.
    assert_eq!(json_of(d.http, "/api/v1/health")["state"], "ok");
    d.stop();
}
