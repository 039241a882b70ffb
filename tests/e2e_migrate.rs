//! End-to-end: `downlink archive migrate` moves a local archive made by the real daemon (the
//! Meteor-M2 pass replayed over UDP, its products at LOS, a GeoTIFF imported with `downlink
//! archive add`, and an older closed pass of big raw files) into a bucket of a real Garage node
//! and a real PostgreSQL + pgstac database. Checked: a dry run writes nothing; a run killed
//! (-9) mid-upload resumes without sending verified objects again (summary counters, the
//! objects' modification times in Garage) and ends verified; every object is byte-identical to
//! its file; a daemon on the migrated configuration answers `/stac/search` as the local one did
//! (ids, bboxes, datetimes), its items carry `s3` alternates, its uploader finds nothing left to
//! send, and it draws the same tile (from the local files, which stay); objects overwritten in
//! the bucket make `--verify-only` fail naming them, and a migrate run uploads them again.
//! Without Garage or PostgreSQL + pgstac this is skipped with a message, except under `CI=true`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;
use common::garage::Garage;
use common::*;

#[path = "../archive/tests/common/pgstac.rs"]
mod pgstac_cluster;

const BUCKET: &str = "downlink-migrate";
const PREFIX: &str = "agency/archive";
/// The older pass: big raw files, so that a kill lands in the middle of the upload.
const BIG: &str = "20200101T000000Z-xband";

fn tile_at(lon: f64, lat: f64, z: u32) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = (lon + 180.0) / 360.0 * n;
    let lat = lat.to_radians();
    let y = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0 * n;
    (x as u32, y as u32)
}

/// (collection, id, bbox, datetime, start_datetime) of every item `/stac/search` answers.
fn search(port: u16) -> Vec<(String, String, String, String, String)> {
    let v = json_of(port, "/stac/search?limit=100");
    let mut out: Vec<_> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["collection"].as_str().unwrap().to_owned(),
                f["id"].as_str().unwrap().to_owned(),
                f["bbox"].to_string(),
                f["properties"]["datetime"].to_string(),
                f["properties"]["start_datetime"].to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Every file `migrate` puts in the store, by archive-relative path: the files of each pass
/// directory (not its manifest, no hidden files) and the imported item's asset files.
fn local_files(archive: &Path, item: &serde_json::Value) -> BTreeMap<String, PathBuf> {
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<String, PathBuf>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "uploaded.json" {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(archive, &archive.join("passes"), &mut out);
    for a in item["assets"].as_object().unwrap().values() {
        let href = a["href"].as_str().unwrap();
        let rel = &href[href.find("collections/").unwrap()..];
        out.insert(rel.to_owned(), archive.join(rel));
    }
    out
}

/// Key -> (size, last modified) of every object in the bucket.
fn objects(g: &Garage) -> BTreeMap<String, (u64, String)> {
    let client = g.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        client
            .list(None)
            .map_ok(|m| {
                (
                    m.location.to_string(),
                    (m.size, m.last_modified.to_rfc3339()),
                )
            })
            .try_collect()
            .await
            .unwrap()
    })
}

/// Overwrites object `key` with other bytes of the same length.
fn overwrite(g: &Garage, key: &str) {
    let mut bytes = g.get(key).unwrap().unwrap();
    for b in &mut bytes {
        *b = !*b;
    }
    let client = g.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use object_store::ObjectStore;
        client
            .put(&object_store::path::Path::from(key), bytes.into())
            .await
            .unwrap();
    });
}

fn migrate_cmd(g: &Garage, config: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_downlink"));
    c.args(["archive", "migrate", "--config"])
        .arg(config)
        .args(["--to", &format!("s3://{BUCKET}/{PREFIX}")])
        .args(extra)
        .env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret);
    c
}

/// Runs a migrate command; its exit status, JSON summary (`--json`) and stderr.
fn migrate(g: &Garage, config: &Path, extra: &[&str]) -> (Output, serde_json::Value, String) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let out = migrate_cmd(g, config, &args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON summary ({e}): {err}"));
    (out, summary, err)
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} missing: {v}"))
}

#[test]
fn a_local_archive_migrates_to_garage_and_pgstac_resumable_and_verified() {
    let Some(cluster) = pgstac_cluster::cluster() else {
        return;
    };
    let Some(g) = Garage::start(BUCKET) else {
        return;
    };
    let db = cluster.fresh_database();

    // The local archive, made by the real daemon: a received pass with products, an import.
    let (mut d, _tle) = meteor_daemon("");
    send_meteor_pass(&d, 5);
    let pass_id = wait_catalogued(&d);
    let imported = archive_add(
        &d,
        "change/muri-ag/S2_L2A_T32TMT_20210812_red_nir.tif",
        "muri",
        "2021-08-12T10:25:59Z",
    );
    let imported_id = imported["id"].as_str().unwrap().to_owned();
    let before = search(d.http);
    assert_eq!(before.len(), 2, "{before:?}");
    let (lon, lat) = centroid(&imported);
    let (x, y) = tile_at(lon, lat, 12);
    let tile = format!(
        "/stac/collections/muri/items/{imported_id}/tiles/WebMercatorQuad/12/{x}/{y}.png?assets=visual"
    );
    let tile_before = d.get_bytes(&tile).unwrap();
    assert!(tile_before.len() > 1000, "{} bytes", tile_before.len());
    d.stop();

    // An older closed pass of big raw files (received before products existed).
    let big = d.archive.join("passes").join(BIG);
    std::fs::create_dir_all(&big).unwrap();
    let mut rng = Rng(0x3141_5926_5358_9793);
    let base: Vec<u8> = (0..9 * 1024 * 1024 + 1)
        .map(|_| rng.below(256) as u8)
        .collect();
    for i in 0..8u8 {
        let mut b = base.clone();
        b[..64].fill(i);
        std::fs::write(big.join(format!("part-{i:02}.raw")), &b).unwrap();
    }
    std::fs::write(
        big.join("pass.json"),
        format!(r#"{{"id": "{BIG}", "input": "xband", "profile": "eos"}}"#),
    )
    .unwrap();
    let files = local_files(&d.archive, &imported);
    assert!(files.contains_key(&format!("passes/{pass_id}/pass.json")));
    assert!(files.keys().any(|k| k.starts_with("collections/muri/")));
    let total_bytes: u64 = files
        .values()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();

    // The configuration the station runs on after the migration.
    let migrated = d.config.with_file_name("migrated.toml");
    let text = std::fs::read_to_string(&d.config).unwrap().replace(
        "fsync_interval = \"100ms\"\n",
        &format!(
            "fsync_interval = \"100ms\"\nstore = \"s3://{BUCKET}/{PREFIX}\"\n[archive.s3]\n\
             endpoint = \"{}\"\nregion = \"garage\"\nallow_http = true\n",
            g.endpoint()
        ),
    ) + &format!("[catalog]\nurl = \"{db}\"\n");
    std::fs::write(&migrated, text).unwrap();

    // A dry run says what it would do and writes nothing.
    let (out, s, err) = migrate(&g, &migrated, &["--dry-run"]);
    assert!(out.status.success(), "{err}");
    assert_eq!(n(&s, "objects"), files.len() as u64, "{s}");
    assert_eq!(n(&s, "bytes"), total_bytes, "{s}");
    assert_eq!(n(&s, "uploaded_objects"), files.len() as u64, "{s}");
    assert_eq!(n(&s, "passes"), 2, "{s}");
    assert_eq!(n(&s, "items"), 2, "{s}");
    assert_eq!(n(&s, "items_upserted"), 2, "{s}");
    assert!(objects(&g).is_empty(), "the dry run wrote to the bucket");
    assert!(!big.join("uploaded.json").exists());

    // A run killed (-9) once the big pass is partly uploaded.
    let mut child = migrate_cmd(&g, &migrated, &["--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let done_before = loop {
        let m: Option<serde_json::Value> = std::fs::read(big.join("uploaded.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(k) = m.and_then(|m| m["objects"].as_object().map(|o| o.len())) {
            if k >= 1 {
                child.kill().unwrap();
                child.wait().unwrap();
                break k;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "migrate ended before it could be killed"
        );
        assert!(t0.elapsed() < Duration::from_secs(120), "nothing uploaded");
        std::thread::sleep(Duration::from_millis(5));
    };
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(big.join("uploaded.json")).unwrap()).unwrap();
    let verified_before = m["objects"].as_object().unwrap().len();
    assert!(verified_before >= done_before);
    assert!(
        verified_before < 9,
        "the whole pass went up before the kill"
    );
    assert_eq!(m["complete"], false);
    let early = objects(&g);
    let early_keys: Vec<String> = m["objects"]
        .as_object()
        .unwrap()
        .keys()
        .map(|rel| format!("{PREFIX}/passes/{BIG}/{rel}"))
        .collect();
    for k in &early_keys {
        assert!(early.contains_key(k), "{k} verified but not in the bucket");
    }
    // Nothing is published before its bytes are in the store.
    assert_eq!(search_pg(&db), 0);

    // The rerun resumes: what was verified is not sent again; it ends verified.
    std::thread::sleep(Duration::from_millis(1100));
    let (out, s, err) = migrate(&g, &migrated, &[]);
    assert!(out.status.success(), "{err}\n{s}");
    assert_eq!(n(&s, "skipped_objects"), verified_before as u64, "{s}");
    assert_eq!(
        n(&s, "uploaded_objects"),
        (files.len() - verified_before) as u64,
        "{s}"
    );
    assert_eq!(n(&s, "items_upserted"), 2, "{s}");
    assert_eq!(n(&s, "repaired_objects"), 0, "{s}");
    let v = &s["verification"];
    assert_eq!(v["mismatches"], serde_json::json!([]), "{s}");
    assert_eq!(n(v, "objects"), files.len() as u64, "{s}");
    assert_eq!(n(v, "bytes"), total_bytes, "{s}");
    assert!(n(v, "by_etag") > 0, "{s}");
    assert_eq!(n(v, "target_items"), 2, "{s}");
    assert_eq!(n(v, "other_items"), 0, "{s}");
    let after = objects(&g);
    for k in &early_keys {
        assert_eq!(after[k], early[k], "{k} was uploaded again");
    }

    // Every object is its file, byte for byte; besides, only the passes' manifests.
    for (rel, path) in &files {
        let key = format!("{PREFIX}/{rel}");
        let remote = g.get(&key).unwrap();
        assert!(
            remote.as_deref() == Some(std::fs::read(path).unwrap().as_slice()),
            "{key} differs from {}",
            path.display()
        );
    }
    let extra: Vec<&String> = after
        .keys()
        .filter(|k| !files.contains_key(k.strip_prefix(&format!("{PREFIX}/")).unwrap()))
        .collect();
    assert_eq!(
        extra,
        [
            &format!("{PREFIX}/passes/{BIG}/uploaded.json"),
            &format!("{PREFIX}/passes/{pass_id}/uploaded.json")
        ],
        "{extra:?}"
    );
    // Local data is all there.
    for path in files.values() {
        assert!(path.is_file(), "{} gone", path.display());
    }

    // A third run has nothing to send or publish; the catalog named on the command line.
    let no_catalog = migrated.with_file_name("no-catalog.toml");
    let text = std::fs::read_to_string(&migrated).unwrap();
    std::fs::write(&no_catalog, &text[..text.find("[catalog]").unwrap()]).unwrap();
    let (out, s, err) = migrate(&g, &no_catalog, &["--catalog", &db]);
    assert!(out.status.success(), "{err}");
    assert_eq!(n(&s, "uploaded_objects"), 0, "{s}");
    assert_eq!(n(&s, "skipped_objects"), files.len() as u64, "{s}");
    assert_eq!(n(&s, "items_unchanged"), 2, "{s}");
    assert_eq!(s["catalog"], db.as_str(), "{s}");

    // A daemon on the migrated configuration: the same search results, alternates naming the
    // objects, nothing left to upload, the same tile (its COGs still read from local files).
    let mut cmd = serve_cmd(&migrated);
    cmd.env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret);
    d.respawn(cmd);
    assert_eq!(search(d.http), before);
    let item = json_of(
        d.http,
        &format!("/stac/collections/muri/items/{imported_id}"),
    );
    let visual = &item["assets"]["visual"];
    let alt = visual["alternate"]["s3"]["href"].as_str().unwrap();
    assert!(
        alt.starts_with(&format!("s3://{BUCKET}/{PREFIX}/collections/muri/")),
        "{visual}"
    );
    assert!(files.contains_key(
        alt.strip_prefix(&format!("s3://{BUCKET}/{PREFIX}/"))
            .unwrap()
    ));
    let t0 = Instant::now();
    while !d.log_text().contains("uploads taken up from the archive") {
        assert!(t0.elapsed() < Duration::from_secs(20), "{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = json_of(d.http, "/api/v1/status")["store"].clone();
    assert_eq!(
        (st["taken_up"].as_u64(), st["queued_passes"].as_u64()),
        (Some(0), Some(0)),
        "{st}"
    );
    assert_eq!(d.get_bytes(&tile).unwrap(), tile_before, "the tile differs");
    d.stop();

    // Objects overwritten in the bucket (a single-part COG, a multipart raw file): the
    // verification names them; a migrate run uploads them again.
    let cog = format!(
        "{PREFIX}/{}",
        alt.strip_prefix(&format!("s3://{BUCKET}/{PREFIX}/"))
            .unwrap()
    );
    let raw = format!("{PREFIX}/passes/{BIG}/part-07.raw");
    overwrite(&g, &cog);
    overwrite(&g, &raw);
    let (out, s, err) = migrate(&g, &migrated, &["--verify-only"]);
    assert!(!out.status.success(), "{s}");
    let mismatches = s["verification"]["mismatches"].as_array().unwrap();
    assert_eq!(mismatches.len(), 2, "{s}");
    for key in [&cog, &raw] {
        assert!(
            err.contains(&format!("downlink: mismatch: {key}: its bytes differ")),
            "{key} not named:\n{err}"
        );
    }
    assert!(err.contains("not verified: 2 mismatch(es)"), "{err}");
    let (out, s, err) = migrate(&g, &migrated, &[]);
    assert!(out.status.success(), "{err}\n{s}");
    assert_eq!(n(&s, "repaired_objects"), 2, "{s}");
    for key in [&cog, &raw] {
        let rel = key.strip_prefix(&format!("{PREFIX}/")).unwrap();
        assert!(
            g.get(key).unwrap().as_deref() == Some(std::fs::read(&files[rel]).unwrap().as_slice()),
            "{key} not repaired"
        );
    }
    // Another station's item in the shared catalog: counted, not a mismatch.
    {
        use archive::catalog::{empty_extent_collection, Catalog, PgstacCatalog};
        let cat =
            PgstacCatalog::open(archive::catalog::pgstac::parse_url(&db, None).unwrap()).unwrap();
        cat.upsert_collection(
            &empty_extent_collection("other-station", "another station").unwrap(),
        )
        .unwrap();
        let mut it = stac::Item::new("20261201T101010Z-other");
        it.collection = Some("other-station".into());
        it.bbox = Some(stac::Bbox::new(-60.0, -25.0, -58.0, -23.0));
        it.geometry = Some(
            serde_json::from_value(serde_json::json!({"type": "Polygon", "coordinates":
                [[[-60.0, -25.0], [-58.0, -25.0], [-58.0, -23.0], [-60.0, -23.0], [-60.0, -25.0]]]}))
            .unwrap(),
        );
        it.properties.datetime = Some("2026-12-01T10:10:10Z".parse().unwrap());
        cat.upsert_item(&it).unwrap();
    }
    // The summary people read.
    let out = migrate_cmd(&g, &migrated, &["--verify-only"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("verified     {} object(s)", files.len())),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("0 mismatch(es)"), "{text}");
    assert!(text.contains("(1 not from this archive)"), "{text}");
}

/// Items in the pgstac database.
fn search_pg(url: &str) -> i64 {
    let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
    c.query_one("SELECT count(*) FROM pgstac.items", &[])
        .unwrap()
        .get(0)
}
