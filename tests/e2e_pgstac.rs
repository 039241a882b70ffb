//! End-to-end: the daemon with its catalog on PostgreSQL + PostGIS + pgstac (a throwaway
//! cluster on a Unix socket, scripts/pgstac/pgstac-cluster.sh). The real Meteor-M2 pass is
//! replayed over UDP on loopback; its item is in `/stac/search` of that daemon and of a second
//! daemon on the same archive and database, without restart. PostgreSQL then goes away
//! mid-run: both daemons report the catalog degraded, a pass received meanwhile is catalogued
//! once PostgreSQL is back, and the database holds each item exactly once, complete.
//! Without PostgreSQL 15 + PostGIS this is skipped with a message, except under `CI=true`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

#[path = "../archive/tests/common/pgstac.rs"]
mod pgstac_cluster;

/// The tests stop and start the one cluster of this process: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn status(port: u16) -> serde_json::Value {
    json_of(port, "/api/v1/status")
}

fn within(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn search_ids(port: u16) -> Vec<String> {
    let (code, _, body) = http(port, "GET", "/stac/search?limit=100", &[], b"");
    if code != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

/// (collection, id, asset count) of every row of `pgstac.items`.
fn rows(url: &str) -> Vec<(String, String, i64)> {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query(
        "SELECT collection, id, (SELECT count(*) FROM jsonb_object_keys(content->'assets'))
         FROM pgstac.items ORDER BY collection, id",
        &[],
    )
    .unwrap()
    .into_iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[test]
fn pass_catalogued_in_pgstac_seen_by_a_second_daemon_and_survives_a_postgres_outage() {
    let _one = serial();
    let Some(cluster) = pgstac_cluster::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let (mut station, _tle) = meteor_daemon(&format!("[catalog]\nurl = \"{url}\"\n"));
    assert!(
        station.log_text().contains("catalog: pgstac"),
        "{}",
        station.log_text()
    );
    // No SQLite catalog beside the archive: the catalog is the database.
    send_meteor_pass(&station, 7);
    let id = wait_catalogued(&station);
    let first = rows(&url);
    assert_eq!(first.len(), 1, "{first:?}");
    let (coll, item_id, assets) = first[0].clone();
    assert_eq!(coll, "meteor-m2-msu-mr");
    assert!(assets >= 3, "{first:?}");
    assert_eq!(item_id, id);
    assert_eq!(search_ids(station.http), vec![item_id.clone()]);
    assert!(!station.archive.join("catalog.sqlite").exists());

    // A second daemon (its own input, nothing sent to it) on the same archive and database.
    let dir2 = tempfile::tempdir().unwrap();
    let cfg2 = dir2.path().join("downlink.toml");
    std::fs::write(
        &cfg2,
        format!(
            "[archive]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[catalog]\nurl = \"{url}\"\n\
             [[input]]\nname = \"idle\"\nlisten = \"udp://127.0.0.1:0\"\nformat = \"frames\"\n\
             profile = \"meteor-lrpt\"\n",
            station.archive.display()
        ),
    )
    .unwrap();
    let archive = station.archive.clone();
    let api = Daemon::launch(serve_cmd(&cfg2), dir2, archive);
    assert_eq!(search_ids(api.http), vec![item_id.clone()]);
    let item = json_of(
        api.http,
        &format!("/stac/collections/{coll}/items/{item_id}"),
    );
    assert_eq!(item["id"], item_id.as_str());
    // Its assets are served by the second daemon too (same archive, catalogued hrefs).
    let href = item["assets"]
        .as_object()
        .unwrap()
        .values()
        .find_map(|a| a["href"].as_str().filter(|h| h.contains("/stac/assets/")))
        .unwrap()
        .to_owned();
    let path = &href[href.find("/stac/assets/").unwrap()..];
    let (code, _, body) = http(api.http, "GET", path, &[], b"");
    assert_eq!(code, 200, "{path}");
    assert!(!body.is_empty());

    // The collection's extent is the item's (widened in the item's transaction); sortby,
    // filter and fields go through the pgstac search.
    let c = json_of(api.http, &format!("/stac/collections/{coll}"));
    assert_eq!(
        c["extent"]["temporal"]["interval"][0][0], item["properties"]["start_datetime"],
        "{c}"
    );
    assert!(c["extent"]["temporal"]["interval"][0][0].is_string(), "{c}");
    let bbox = c["extent"]["spatial"]["bbox"][0].as_array().unwrap();
    assert!(
        bbox.iter().all(|v| v.as_f64().unwrap().abs() < 180.0),
        "{c}"
    );
    let v = json_of(
        api.http,
        "/stac/search?sortby=-datetime&fields=id&filter=view:sun_elevation%20%3E%20-90&filter-lang=cql2-text",
    );
    let f = &v["features"][0];
    assert_eq!(f["id"], item_id.as_str(), "{v}");
    assert!(f.get("assets").is_none(), "{v}");
    let v = json_of(
        api.http,
        "/stac/search?filter=view:sun_elevation%20%3E%2090&filter-lang=cql2-text",
    );
    assert_eq!(v["features"].as_array().unwrap().len(), 0, "{v}");

    // PostgreSQL goes away: both daemons say the catalog is degraded.
    let script = pgstac_cluster::script();
    let st = Command::new(&script)
        .arg("stop")
        .arg(&cluster.dir)
        .status()
        .unwrap();
    assert!(st.success());
    for port in [station.http, api.http] {
        within(Duration::from_secs(15), "catalog degraded", || {
            status(port)["health"]["problems"]["catalog"].is_string()
        });
        let (code, _, _) = http(port, "GET", "/api/v1/health", &[], b"");
        assert_eq!(code, 503);
        let (code, _, _) = http(port, "GET", "/stac/search", &[], b"");
        assert_eq!(code, 503, "search while the database is down");
    }
    // A pass received meanwhile: its products are made, the catalog refuses them (counted),
    // and the job waits for a retry.
    send_meteor_pass(&station, 8);
    within(Duration::from_secs(180), "the catalog refusal", || {
        status(station.http)["products"]["catalog_failed"]
            .as_u64()
            .unwrap()
            >= 1
    });
    // PostgreSQL is back: both recover, and the retried pass is catalogued.
    let st = Command::new(&script)
        .arg("restart")
        .arg(&cluster.dir)
        .status()
        .unwrap();
    assert!(st.success());
    for port in [station.http, api.http] {
        within(Duration::from_secs(15), "catalog healthy again", || {
            status(port)["health"]["problems"].get("catalog").is_none()
        });
    }
    within(
        Duration::from_secs(120),
        "the retried pass catalogued",
        || status(station.http)["products"]["ok"].as_u64().unwrap() >= 2,
    );
    assert!(
        status(station.http)["catalog"]["reopened"]
            .as_u64()
            .unwrap()
            >= 1
    );
    // Each item once and whole: the rows in pgstac are what both daemons find.
    let after = rows(&url);
    assert_eq!(after.len(), 2, "{after:?}");
    for (c, i, n) in &after {
        assert_eq!(c, "meteor-m2-msu-mr");
        assert!(*n >= 3, "{i}: {n} assets");
    }
    let mut want: Vec<String> = after.iter().map(|r| r.1.clone()).collect();
    want.sort();
    for port in [station.http, api.http] {
        let mut got = search_ids(port);
        got.sort();
        assert_eq!(got, want);
    }
    let passes = station.passes_now();
    assert_eq!(passes.len(), 2, "{passes:?}");
    eprintln!("pgstac e2e: {} item(s) for 2 passes: {want:?}", after.len());
    station.stop();
}

/// `downlink validate` with `[catalog] url`: ok against a pgstac database (saying so), and a
/// clear refusal for an unreachable server, a database without pgstac and a user without
/// pgstac's rights; the password (from `password_file`) is never printed.
#[test]
fn validate_checks_the_pgstac_database() {
    let _one = serial();
    let Some(cluster) = pgstac_cluster::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let db = url
        .split('/')
        .nth(3)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    cluster.psql(&db, "CREATE ROLE reader LOGIN");
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pgpassword");
    std::fs::write(&pw, "not-shown-anywhere\n").unwrap();
    let validate = |catalog_url: &str| {
        let cfg = dir.path().join("downlink.toml");
        std::fs::write(
            &cfg,
            format!(
                "[archive]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[catalog]\n\
                 url = \"{catalog_url}\"\npassword_file = \"{}\"\n[[input]]\nname = \"a\"\n\
                 listen = \"udp://127.0.0.1:0\"\nformat = \"frames\"\nprofile = \"meteor-lrpt\"\n",
                dir.path().join("archive").display(),
                pw.display()
            ),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_downlink"))
            .args(["validate", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("not-shown-anywhere"), "{text}");
        (out.status.success(), text)
    };
    let (ok, text) = validate(&url);
    assert!(ok, "{text}");
    assert!(
        text.contains("catalog  pgstac 0.9.12 at postgresql://"),
        "{text}"
    );
    let (ok, text) = validate(&url.replace("host=", "host=/nonexistent"));
    assert!(!ok);
    assert!(text.contains("the database cannot be reached"), "{text}");
    let (ok, text) = validate(&cluster.url("postgres"));
    assert!(!ok);
    assert!(text.contains("pgstac is not installed"), "{text}");
    let (ok, text) = validate(&url.replace("postgres@", "reader@"));
    assert!(!ok);
    assert!(text.contains("GRANT pgstac_ingest"), "{text}");
    cluster.psql(&db, "GRANT pgstac_ingest TO reader");
    let (ok, text) = validate(&url.replace("postgres@", "reader@"));
    assert!(ok, "{text}");
}

/// A daemon started while PostgreSQL is down runs with its catalog degraded (STAC API 503) and
/// takes it up, verified, once PostgreSQL is there.
#[test]
fn daemon_started_before_postgres_recovers_its_catalog() {
    let _one = serial();
    let Some(cluster) = pgstac_cluster::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let script = pgstac_cluster::script();
    let cluster_ctl = |what: &str| {
        let st = Command::new(&script)
            .arg(what)
            .arg(&cluster.dir)
            .status()
            .unwrap();
        assert!(st.success(), "pgstac-cluster.sh {what}");
    };
    cluster_ctl("stop");
    let d = Daemon::start_full(
        "udp",
        "meteor-lrpt",
        "frames",
        "",
        &format!("[catalog]\nurl = \"{url}\"\n"),
    );
    within(Duration::from_secs(15), "catalog degraded", || {
        status(d.http)["health"]["problems"]["catalog"].is_string()
    });
    let (code, _, _) = http(d.http, "GET", "/stac/search", &[], b"");
    assert_eq!(code, 503);
    cluster_ctl("restart");
    within(Duration::from_secs(15), "catalog healthy", || {
        status(d.http)["health"]["problems"]
            .get("catalog")
            .is_none()
    });
    let v = json_of(d.http, "/stac/search");
    assert_eq!(v["features"].as_array().unwrap().len(), 0);
}

/// `downlink archive …` and `downlink alerts run` with `--config` use the configured catalog:
/// with `[catalog] url`, items go to pgstac (not to a SQLite file in the archive), are listed
/// from there, and an API node on that database serves them.
#[test]
fn archive_and_alerts_commands_use_the_configured_pgstac_catalog() {
    let _one = serial();
    let Some(cluster) = pgstac_cluster::cluster() else {
        return;
    };
    let url = cluster.fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let cfg = dir.path().join("downlink.toml");
    std::fs::write(
        &cfg,
        format!(
            "[archive]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n[catalog]\nurl = \"{url}\"\n",
            archive.display()
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_downlink"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "downlink {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    for (file, when) in [
        (
            "change/muri-ag/S2_L2A_T32TMT_20200807_red_nir.tif",
            "2020-08-07T10:30:00Z",
        ),
        (
            "change/muri-ag/S2_L2A_T32TMT_20210812_red_nir.tif",
            "2021-08-12T10:30:00Z",
        ),
    ] {
        let f = data(file);
        cli(&[
            "archive",
            "add",
            f.to_str().unwrap(),
            "--collection",
            "muri",
            "--datetime",
            when,
            "--bands",
            "red,nir",
        ]);
    }
    assert!(
        !archive.join("catalog.sqlite").exists(),
        "the CLI wrote a SQLite catalog beside the configured pgstac one"
    );
    let in_db = rows(&url);
    assert_eq!(
        in_db.iter().filter(|(c, _, _)| c == "muri").count(),
        2,
        "{in_db:?}"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&cli(&["archive", "list", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    let mask = data("change/muri-ag/forest_wa.geojson");
    let fc: serde_json::Value = serde_json::from_str(&cli(&[
        "alerts",
        "run",
        "--collection",
        "muri",
        "--mask",
        mask.to_str().unwrap(),
        "--drop",
        "0.3",
        "--mmu-ha",
        "0.5",
    ]))
    .unwrap();
    assert_eq!(fc["features"].as_array().unwrap().len(), 2, "{fc}");
    let in_db = rows(&url);
    assert_eq!(
        in_db.iter().filter(|(c, _, _)| c == "alerts-muri").count(),
        1,
        "{in_db:?}"
    );
    assert!(!archive.join("catalog.sqlite").exists());

    // An API node on the same database serves what the commands published.
    let node = Daemon::launch(serve_cmd(&cfg), dir, archive);
    within(Duration::from_secs(30), "the items on the API node", || {
        let ids = search_ids(node.http);
        ids.len() == 3 && ids.iter().any(|i| i.ends_with("-alerts"))
    });
}
