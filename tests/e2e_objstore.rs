//! End-to-end: a station daemon whose archive store is an S3 bucket on a real Garage node
//! (single node on loopback, tests/common/garage.rs). The real Meteor-M2 pass is replayed over
//! UDP; after LOS and its products, every file of the pass directory (raw data, indexes,
//! record, product COGs) is in the bucket with identical bytes, GDAL reads the COG straight
//! from the bucket (`/vsis3/`), and the counters say so. Then the faults: Garage down during
//! and after the pass (failures counted by reason, `store` degraded, retried with backoff),
//! the daemon killed (-9) before the upload could complete and restarted (the pass is taken up
//! again), Garage back: the pass is uploaded, nothing lost, health clear; a kill -9 in the
//! middle of a pass's upload resumes from its manifest. Also: multipart uploads and their
//! ETags, `downlink validate`'s probe object, STAC `s3` alternates, a `file://` store.
//! Without the `garage` binary this is skipped with a message, except under `CI=true`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::garage::Garage;
use common::*;

const BUCKET: &str = "downlink-test";
const PREFIX: &str = "station-1";

fn status(d: &Daemon) -> serde_json::Value {
    json_of(d.http, "/api/v1/status")
}

fn metric(d: &Daemon, series: &str) -> u64 {
    let m = d.get("/metrics").unwrap();
    m.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

fn within(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A Meteor station daemon uploading to `g`'s bucket; credentials from a credentials file
/// (`env_creds` false) or the environment. Returns the daemon, the TLE directory, and the
/// command that starts it again.
fn station(g: &Garage, env_creds: bool) -> (Daemon, tempfile::TempDir, Command) {
    let tle_dir = tempfile::tempdir().unwrap();
    let tle = tle_dir.path().join("weather.txt");
    std::fs::write(&tle, meteor_tle_for_todays_pass()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let creds = dir.path().join("s3-credentials");
    std::fs::write(
        &creds,
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            g.key_id, g.secret
        ),
    )
    .unwrap();
    let creds_line = if env_creds {
        String::new()
    } else {
        format!("credentials_file = \"{}\"", creds.display())
    };
    let cfg = format!(
        r#"
[archive]
path = "{archive}"
fsync_interval = "100ms"
store = "s3://{BUCKET}/{PREFIX}"
[archive.s3]
endpoint = "{endpoint}"
region = "garage"
allow_http = true
{creds_line}
[http]
listen = "127.0.0.1:0"
[pass]
los_timeout = "700ms"
[imaging]
tle = ["{tle}"]
[[input]]
name = "xband"
listen = "udp://127.0.0.1:0"
format = "frames"
profile = "meteor-lrpt"
"#,
        archive = archive.display(),
        endpoint = g.endpoint(),
        tle = tle.display(),
    );
    let path = dir.path().join("downlink.toml");
    std::fs::write(&path, cfg).unwrap();
    let cmd = || {
        let mut c = serve_cmd(&path);
        if env_creds {
            c.env("AWS_ACCESS_KEY_ID", &g.key_id)
                .env("AWS_SECRET_ACCESS_KEY", &g.secret);
        } else {
            c.env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY");
        }
        c
    };
    let d = Daemon::launch(cmd(), dir, archive);
    (d, tle_dir, cmd())
}

/// Every file of the pass directory that is uploaded (not the manifest, no hidden files), by
/// path relative to it.
fn local_files(dir: &Path) -> Vec<(String, PathBuf)> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<(String, PathBuf)>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "uploaded.json" || name.contains(".tmp-") {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, p));
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// The pass's objects in the bucket are the local files, byte for byte, and its manifest is
/// there too; returns the key of a product COG.
fn assert_pass_in_bucket(g: &Garage, d: &Daemon, id: &str) -> String {
    let dir = d.archive.join("passes").join(id);
    let files = local_files(&dir);
    assert!(files.iter().any(|(r, _)| r == "pass.json"), "{files:?}");
    let cogs: Vec<&String> = files
        .iter()
        .map(|(r, _)| r)
        .filter(|r| r.starts_with("products/") && r.ends_with(".tif") && !r.ends_with(".gcp.tif"))
        .collect();
    assert!(!cogs.is_empty(), "no product COG in {files:?}");
    let listed = g.list(&format!("{PREFIX}/passes/{id}"));
    let keys: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    for (rel, path) in &files {
        let key = format!("{PREFIX}/passes/{id}/{rel}");
        assert!(
            keys.contains(&key.as_str()),
            "{key} not in the bucket: {keys:?}"
        );
        let remote = g.get(&key).unwrap().unwrap();
        let local = std::fs::read(path).unwrap();
        assert!(
            remote == local,
            "{key}: {} bytes in the bucket, {} here, or not the same bytes",
            remote.len(),
            local.len()
        );
    }
    // Nothing else but the manifest, which lists every object with its SHA-256.
    assert_eq!(listed.len(), files.len() + 1, "{keys:?}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &g.get(&format!("{PREFIX}/passes/{id}/uploaded.json"))
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["complete"], true);
    assert_eq!(manifest["objects"].as_object().unwrap().len(), files.len());
    let local_manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("uploaded.json")).unwrap()).unwrap();
    assert_eq!(local_manifest, manifest);
    let cog = cogs
        .iter()
        .find(|r| r.as_str() == "products/composite.tif")
        .unwrap_or(&cogs[0]);
    format!("{PREFIX}/passes/{id}/{cog}")
}

#[test]
fn pass_raw_files_and_cogs_land_in_garage_byte_identical() {
    let Some(g) = Garage::start(BUCKET) else {
        return;
    };
    let (d, _tle, _) = station(&g, false);
    let st = status(&d);
    assert_eq!(
        st["store"]["store"],
        format!("s3://{BUCKET}/{PREFIX}"),
        "{}",
        st["store"]
    );
    assert_eq!(st["store"]["state"], "ok");
    send_meteor_pass(&d, 7);
    let id = wait_catalogued(&d);
    within(Duration::from_secs(60), "the pass uploaded", || {
        let s = status(&d)["store"].clone();
        s["uploaded_passes"] == 1 && s["queued_passes"] == 0
    });
    let cog = assert_pass_in_bucket(&g, &d, &id);
    let st = status(&d)["store"].clone();
    let files = local_files(&d.archive.join("passes").join(&id));
    assert_eq!(st["uploaded_objects"], files.len() as u64, "{st}");
    let bytes: u64 = files.iter().map(|(_, p)| p.metadata().unwrap().len()).sum();
    assert_eq!(st["uploaded_bytes"], bytes, "{st}");
    assert_eq!(st["failures"]["unreachable"], 0, "{st}");
    assert_eq!(metric(&d, "downlink_store_uploaded_passes_total"), 1);
    assert_eq!(metric(&d, "downlink_store_queued_passes"), 0);
    assert_eq!(metric(&d, "downlink_degraded{component=\"store\"}"), 0);
    assert!(d.log_text().contains("pass uploaded to the store"));

    // The STAC item's assets carry their object as an `s3` alternate (alternate assets
    // extension), once the pass is uploaded.
    let items = json_of(d.http, "/stac/collections/meteor-m2-msu-mr/items");
    let item = &items["features"][0];
    assert!(
        item["stac_extensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("alternate-assets")),
        "{}",
        item["stac_extensions"]
    );
    let assets = item["assets"].as_object().unwrap();
    let mut alternates = Vec::new();
    for (key, a) in assets {
        let Some(href) = a["alternate"]["s3"]["href"].as_str() else {
            continue;
        };
        let object = href
            .strip_prefix(&format!("s3://{BUCKET}/"))
            .unwrap_or_else(|| panic!("{key}: {href}"));
        assert!(
            object.starts_with(&format!("{PREFIX}/passes/{id}/")),
            "{key}: {href}"
        );
        assert!(
            g.get(object).unwrap().is_some(),
            "{key}: {href} not in the bucket"
        );
        alternates.push(object.to_owned());
    }
    assert!(alternates.len() >= 3, "{assets:?}");
    assert!(
        alternates.contains(&cog),
        "{cog} not an alternate: {alternates:?}"
    );

    // GDAL reads the COG straight from the bucket, at its alternate href.
    let gdalinfo = Path::new("/usr/bin/gdalinfo");
    if need(gdalinfo, "apt-get install gdal-bin") {
        let out = Command::new(gdalinfo)
            .arg(format!("/vsis3/{BUCKET}/{cog}"))
            .env("AWS_S3_ENDPOINT", &g.s3_addr)
            .env("AWS_HTTPS", "NO")
            .env("AWS_VIRTUAL_HOSTING", "FALSE")
            .env("AWS_REGION", "garage")
            .env("AWS_ACCESS_KEY_ID", &g.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &g.secret)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Driver: GTiff") && text.contains("LAYOUT=COG"),
            "gdalinfo /vsis3/: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A restart finds nothing to upload again.
    let mut d = d;
    d.stop();
    let mut cmd = serve_cmd(&d.config);
    cmd.env_remove("AWS_ACCESS_KEY_ID");
    d.respawn(cmd);
    within(Duration::from_secs(10), "the start scan", || {
        d.log_text().contains("uploads taken up from the archive")
    });
    let st = status(&d)["store"].clone();
    assert_eq!(
        (st["taken_up"].as_u64(), st["queued_passes"].as_u64()),
        (Some(0), Some(0)),
        "{st}"
    );
}

#[test]
fn store_down_during_the_pass_then_kill9_then_back_uploads_everything() {
    let Some(mut g) = Garage::start(BUCKET) else {
        return;
    };
    let (mut d, _tle, _) = station(&g, true);
    // The store goes away before the pass: received, archived and catalogued locally anyway.
    g.stop();
    send_meteor_pass(&d, 11);
    let id = wait_catalogued(&d);
    within(Duration::from_secs(60), "upload failures counted", || {
        status(&d)["store"]["failures"]["unreachable"]
            .as_u64()
            .is_some_and(|n| n >= 2)
    });
    let st = status(&d);
    assert_eq!(st["store"]["state"], "failing", "{}", st["store"]);
    assert_eq!(st["store"]["queued_passes"], 1, "{}", st["store"]);
    assert!(
        st["store"]["queued_bytes"].as_u64().unwrap() > 0,
        "{}",
        st["store"]
    );
    assert_eq!(st["store"]["uploaded_passes"], 0);
    assert!(
        st["health"]["problems"]["store"].is_string(),
        "{}",
        st["health"]
    );
    assert_eq!(metric(&d, "downlink_degraded{component=\"store\"}"), 1);
    assert!(
        metric(
            &d,
            "downlink_store_upload_failures_total{reason=\"unreachable\"}"
        ) >= 2
    );
    let (code, _, _) = http(d.http, "GET", "/api/v1/health", &[], b"");
    assert_eq!(code, 503);
    let dir = d.archive.join("passes").join(&id);
    let before = local_files(&dir);
    assert!(
        !dir.join("uploaded.json").exists() || {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("uploaded.json")).unwrap()).unwrap();
            m["complete"] == false
        }
    );

    // kill -9 before the upload could complete; the new process takes the pass up again.
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let mut cmd = serve_cmd(&d.config);
    cmd.env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret);
    d.respawn(cmd);
    within(
        Duration::from_secs(20),
        "the pass taken up after the restart",
        || {
            let s = status(&d)["store"].clone();
            s["taken_up"] == 1 && s["queued_passes"] == 1
        },
    );
    within(Duration::from_secs(30), "failures counted again", || {
        status(&d)["store"]["failures"]["unreachable"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    });

    // The store comes back: the pass is uploaded, nothing lost, health clear.
    g.resume();
    within(
        Duration::from_secs(90),
        "the pass uploaded after the store came back",
        || {
            let s = status(&d)["store"].clone();
            s["uploaded_passes"] == 1 && s["queued_passes"] == 0
        },
    );
    assert_pass_in_bucket(&g, &d, &id);
    // Every local file is still there (nothing deleted), unchanged.
    assert_eq!(local_files(&dir), before);
    let st = status(&d);
    assert_eq!(st["store"]["state"], "ok");
    assert!(
        st["health"]["problems"]["store"].is_null(),
        "{}",
        st["health"]
    );
    assert_eq!(metric(&d, "downlink_degraded{component=\"store\"}"), 0);
    assert_eq!(st["store"]["queued_bytes"], 0);
    assert!(d.log_text().contains("object store reachable again"));

    // Idle, the store is probed: down again with nothing to upload, `store` is degraded
    // within a probe interval and clears once it is back.
    let failures = |d: &Daemon| {
        status(d)["store"]["failures"]["unreachable"]
            .as_u64()
            .unwrap()
    };
    let before = failures(&d);
    g.stop();
    within(
        Duration::from_secs(40),
        "the idle store probe failing",
        || status(&d)["health"]["problems"]["store"].is_string(),
    );
    assert!(failures(&d) > before);
    assert_eq!(status(&d)["store"]["state"], "failing");
    g.resume();
    within(
        Duration::from_secs(40),
        "the idle store probe passing",
        || status(&d)["health"]["problems"]["store"].is_null(),
    );
    assert_eq!(status(&d)["store"]["state"], "ok");
}

#[test]
fn a_big_pass_found_at_start_goes_up_in_parts_verified() {
    let Some(g) = Garage::start(BUCKET) else {
        return;
    };
    // A closed pass already in the archive when the daemon starts (received before the store
    // was configured): 20 MiB + 1 byte of raw data (three parts) and an index in a subdirectory.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let id = "20200101T000000Z-xband";
    let pass = archive.join("passes").join(id);
    std::fs::create_dir_all(pass.join("frames")).unwrap();
    let mut rng = Rng(0x5eed_1234_5678_9abc);
    let raw: Vec<u8> = (0..20 * 1024 * 1024 + 1)
        .map(|_| rng.below(256) as u8)
        .collect();
    std::fs::write(pass.join("cadus.raw"), &raw).unwrap();
    std::fs::write(pass.join("frames/vc1.idx"), b"index").unwrap();
    std::fs::write(
        pass.join("pass.json"),
        format!(r#"{{"id": "{id}", "input": "xband", "profile": "eos"}}"#),
    )
    .unwrap();
    let cfg = eos_udp_config(&archive, "").replace(
        "fsync_interval = \"100ms\"\n",
        &format!(
            "fsync_interval = \"100ms\"\nstore = \"s3://{BUCKET}\"\n[archive.s3]\nendpoint = \"{}\"\nregion = \"garage\"\nallow_http = true\n",
            g.endpoint()
        ),
    );
    let path = dir.path().join("downlink.toml");
    std::fs::write(&path, cfg).unwrap();
    // `downlink validate` writes, reads and deletes a probe object; a wrong secret fails it
    // and the message names the field, not the secret.
    let validate = |secret: &str| {
        Command::new(env!("CARGO_BIN_EXE_downlink"))
            .args(["validate", "--config"])
            .arg(&path)
            .env("AWS_ACCESS_KEY_ID", &g.key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .output()
            .unwrap()
    };
    let ok = validate(&g.secret);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success()
            && text.contains(&format!(
                "store    s3://{BUCKET} (probe object written, read and deleted)"
            )),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        g.list("").iter().all(|(k, _)| !k.contains("probe")),
        "probe left behind"
    );
    let bad = validate("0000000000000000000000000000000000000000000000000000000000000bad");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success()
            && err.contains("archive.store s3://")
            && err.contains("probe")
            && !err.contains("0bad"),
        "{err}"
    );
    let mut cmd = serve_cmd(&path);
    cmd.env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret);
    let d = Daemon::launch(cmd, dir, archive);
    within(Duration::from_secs(60), "the old pass uploaded", || {
        let s = status(&d)["store"].clone();
        s["uploaded_passes"] == 1 && s["queued_passes"] == 0
    });
    let st = status(&d)["store"].clone();
    assert_eq!(st["taken_up"], 1, "{st}");
    assert_eq!(st["uploaded_objects"], 3, "{st}");
    let remote = g.get(&format!("passes/{id}/cadus.raw")).unwrap().unwrap();
    assert!(remote == raw, "cadus.raw differs: {} bytes", remote.len());
    assert_eq!(
        g.get(&format!("passes/{id}/frames/vc1.idx"))
            .unwrap()
            .unwrap(),
        b"index"
    );
    // The manifest holds the store's multipart ETag (checked against the parts' MD5s) and
    // the SHA-256 of the whole file.
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pass.join("uploaded.json")).unwrap()).unwrap();
    let obj = &m["objects"]["cadus.raw"];
    assert!(obj["etag"].as_str().unwrap().ends_with("-3"), "{obj}");
    assert_eq!(obj["size"], raw.len() as u64);
    assert_eq!(obj["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn a_file_store_in_another_directory_gets_a_verified_copy() {
    // `store = "file:///DIR"` naming another directory (a mounted share): no server needed.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let share = dir.path().join("share");
    let id = "20200102T000000Z-xband";
    let pass = archive.join("passes").join(id);
    std::fs::create_dir_all(&pass).unwrap();
    let mut rng = Rng(0x0dd_ba11_cafe_f00d);
    let raw: Vec<u8> = (0..9 * 1024 * 1024).map(|_| rng.below(256) as u8).collect();
    std::fs::write(pass.join("cadus.raw"), &raw).unwrap();
    std::fs::write(
        pass.join("pass.json"),
        format!(r#"{{"id": "{id}", "input": "xband", "profile": "eos"}}"#),
    )
    .unwrap();
    let cfg = eos_udp_config(&archive, "").replace(
        "fsync_interval = \"100ms\"\n",
        &format!(
            "fsync_interval = \"100ms\"\nstore = \"file://{}\"\n",
            share.display()
        ),
    );
    let path = dir.path().join("downlink.toml");
    std::fs::write(&path, cfg).unwrap();
    let d = Daemon::launch(serve_cmd(&path), dir, archive);
    within(Duration::from_secs(60), "the pass copied", || {
        let s = status(&d)["store"].clone();
        s["uploaded_passes"] == 1 && s["queued_passes"] == 0
    });
    let copy = share.join("passes").join(id);
    assert!(std::fs::read(copy.join("cadus.raw")).unwrap() == raw);
    assert_eq!(
        std::fs::read(copy.join("pass.json")).unwrap(),
        std::fs::read(pass.join("pass.json")).unwrap()
    );
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(copy.join("uploaded.json")).unwrap()).unwrap();
    assert_eq!(m["complete"], true);
    assert_eq!(m["store"], format!("file://{}", share.display()));
    assert_eq!(
        status(&d)["store"]["uploaded_bytes"],
        raw.len() as u64 + std::fs::metadata(pass.join("pass.json")).unwrap().len()
    );
}

#[test]
fn kill9_mid_upload_resumes_from_the_manifest() {
    let Some(g) = Garage::start(BUCKET) else {
        return;
    };
    // A closed pass of 16 files of 9 MiB + 1 (two parts each) and its record.
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let id = "20200103T000000Z-xband";
    let pass = archive.join("passes").join(id);
    std::fs::create_dir_all(&pass).unwrap();
    let mut rng = Rng(0x1234_abcd_5678_ef01);
    let base: Vec<u8> = (0..9 * 1024 * 1024 + 1)
        .map(|_| rng.below(256) as u8)
        .collect();
    let mut files = Vec::new();
    for i in 0..16u8 {
        let mut b = base.clone();
        b[..64].fill(i);
        let name = format!("part-{i:02}.bin");
        std::fs::write(pass.join(&name), &b).unwrap();
        files.push((name, b));
    }
    let record = format!(r#"{{"id": "{id}", "input": "xband", "profile": "eos"}}"#);
    std::fs::write(pass.join("pass.json"), &record).unwrap();
    files.push(("pass.json".into(), record.into_bytes()));
    let cfg = eos_udp_config(&archive, "").replace(
        "fsync_interval = \"100ms\"\n",
        &format!(
            "fsync_interval = \"100ms\"\nstore = \"s3://{BUCKET}/{PREFIX}\"\n[archive.s3]\nendpoint = \"{}\"\nregion = \"garage\"\nallow_http = true\n",
            g.endpoint()
        ),
    );
    let path = dir.path().join("downlink.toml");
    std::fs::write(&path, cfg).unwrap();
    let cmd = || {
        let mut c = serve_cmd(&path);
        c.env("AWS_ACCESS_KEY_ID", &g.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &g.secret);
        c
    };
    let mut d = Daemon::launch(cmd(), dir, archive);
    // Killed as soon as the first object is in: the pass is half uploaded.
    let t0 = Instant::now();
    loop {
        let s = status(&d)["store"].clone();
        if s["uploaded_objects"].as_u64().unwrap() >= 1 {
            assert_eq!(
                s["uploaded_passes"], 0,
                "the whole pass went up before the kill: {s}"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no object uploaded: {s}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    d.child.kill().unwrap();
    d.child.wait().unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pass.join("uploaded.json")).unwrap()).unwrap();
    assert_eq!(m["complete"], false);
    let done_before = m["objects"].as_object().unwrap().len();
    assert!((1..files.len()).contains(&done_before), "{done_before}");

    // The restart takes the pass up and sends only what the manifest does not hold.
    d.respawn(cmd());
    within(
        Duration::from_secs(120),
        "the pass uploaded after the restart",
        || {
            let s = status(&d)["store"].clone();
            s["uploaded_passes"] == 1 && s["queued_passes"] == 0
        },
    );
    let s = status(&d)["store"].clone();
    assert_eq!(s["taken_up"], 1, "{s}");
    assert_eq!(
        s["uploaded_objects"].as_u64().unwrap() as usize,
        files.len() - done_before,
        "{s}"
    );
    for (name, bytes) in &files {
        let remote = g.get(&format!("{PREFIX}/passes/{id}/{name}")).unwrap();
        assert!(
            remote.as_deref() == Some(bytes.as_slice()),
            "{name} differs"
        );
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pass.join("uploaded.json")).unwrap()).unwrap();
    assert_eq!(m["complete"], true);
    assert_eq!(m["objects"].as_object().unwrap().len(), files.len());
}
