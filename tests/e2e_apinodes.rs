//! End-to-end: scale-out roles on one S3 bucket (a real Garage node, tests/common/garage.rs)
//! and one pgstac database (scripts/pgstac/pgstac-cluster.sh). A **station** (a UDP input,
//! `[http] enabled = false`: no HTTP listener at all) receives the real Meteor-M2 pass, makes
//! its products at LOS and uploads everything; two **API nodes** (HTTP, no inputs, each its
//! own empty `archive.path`), started before the pass, serve it without a restart: the item
//! in `/stac/search` of both, tiles byte-identical from both and equal to the tile drawn from
//! the station's local files, HTTP Range reads of the COG proxied from the store equal to the
//! station's file, HEAD/416/304 answers, WMTS layers and WMS maps equal to the local files',
//! stac-api-validator and stac-validator against an API node, a deleted object answered 404,
//! and `gdalinfo /vsis3/…` reading the COG straight from the bucket. Then Garage stops: an API
//! node answers asset (and uncached tile) requests 503 at once, counted by reason, `store`
//! degraded; Garage back, the reads and tiles work again and the degradation clears. A SIGHUP
//! asking the station for an HTTP listener is refused (it needs a restart).
//! Without Garage or PostgreSQL + PostGIS this is skipped with a message, except under
//! `CI=true`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

mod common;
use common::garage::Garage;
use common::*;

#[path = "../archive/tests/common/pgstac.rs"]
mod pgstac_cluster;

const BUCKET: &str = "downlink-apinodes";
const PREFIX: &str = "site-a";
const COLL: &str = "meteor-m2-msu-mr";

fn within(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn metric(port: u16, series: &str) -> u64 {
    let (_, _, body) = http(port, "GET", "/metrics", &[], b"");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics"))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The z tile (x, y) over a longitude/latitude, Web Mercator.
fn tile_at(lon: f64, lat: f64, z: u32) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = (lon + 180.0) / 360.0 * n;
    let lat = lat.to_radians();
    let y = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0 * n;
    (x as u32, y as u32)
}

/// `[archive]` on `g`'s bucket and `[catalog]` on `db`.
fn shared_sections(archive: &Path, g: &Garage, db: &str) -> String {
    format!(
        "[archive]\npath = \"{}\"\nfsync_interval = \"100ms\"\nstore = \"s3://{BUCKET}/{PREFIX}\"\n\
         [archive.s3]\nendpoint = \"{}\"\nregion = \"garage\"\nallow_http = true\n\
         [catalog]\nurl = \"{db}\"\n",
        archive.display(),
        g.endpoint()
    )
}

fn with_creds(mut c: Command, g: &Garage) -> Command {
    c.env("AWS_ACCESS_KEY_ID", &g.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &g.secret);
    c
}

/// An API node: HTTP, no inputs, its own empty archive, the shared store and catalog.
fn api_node(g: &Garage, db: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = dir.path().join("downlink.toml");
    std::fs::write(
        &config,
        format!(
            "{}[http]\nlisten = \"127.0.0.1:0\"\n",
            shared_sections(&archive, g, db)
        ),
    )
    .unwrap();
    Daemon::launch(with_creds(serve_cmd(&config), g), dir, archive)
}

/// A station without HTTP: killed on drop.
struct Station {
    child: Child,
    log: PathBuf,
    config: PathBuf,
    archive: PathBuf,
    udp: u16,
    _dir: tempfile::TempDir,
    _tle: tempfile::TempDir,
}

impl Drop for Station {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- station log ----\n{}", tail(&self.log, 60));
        }
    }
}

fn station(g: &Garage, db: &str) -> Station {
    let tle_dir = tempfile::tempdir().unwrap();
    let tle = tle_dir.path().join("weather.txt");
    std::fs::write(&tle, meteor_tle_for_todays_pass()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = dir.path().join("downlink.toml");
    std::fs::write(
        &config,
        format!(
            "{}[http]\nenabled = false\n[pass]\nlos_timeout = \"700ms\"\n[imaging]\ntle = [\"{}\"]\n\
             [[input]]\nname = \"xband\"\nlisten = \"udp://127.0.0.1:0\"\nformat = \"frames\"\n\
             profile = \"meteor-lrpt\"\n",
            shared_sections(&archive, g, db),
            tle.display()
        ),
    )
    .unwrap();
    // `downlink validate` names the role.
    let v = with_creds(
        {
            let mut c = Command::new(env!("CARGO_BIN_EXE_downlink"));
            c.args(["validate", "--config"]).arg(&config);
            c
        },
        g,
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success() && text.contains("role     station (1 input, no HTTP)"),
        "{text}{}",
        String::from_utf8_lossy(&v.stderr)
    );
    let log = dir.path().join("daemon.log");
    let child = spawn_logged(&mut with_creds(serve_cmd(&config), g), &log);
    let mut st = Station {
        child,
        log,
        config,
        archive,
        udp: 0,
        _dir: dir,
        _tle: tle_dir,
    };
    within(Duration::from_secs(20), "the station serving", || {
        std::fs::read_to_string(&st.log).is_ok_and(|t| t.contains("downlink serving"))
    });
    let text = std::fs::read_to_string(&st.log).unwrap();
    assert!(text.contains("http.enabled = false"), "{text}");
    // With no HTTP to ask, the station's start-up line names the port it bound for port 0.
    let listening = logged_field(&text, "downlink serving", "listening").unwrap();
    st.udp = listening
        .strip_prefix("xband=udp://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("listening={listening}"));
    st
}

fn send_pass(st: &Station, seed: u64) {
    let mut bytes = Vec::new();
    for s in ["30", "40", "50"] {
        bytes.extend(
            std::fs::read(data(&format!("vcdu/meteor-m2/2022_12_20_20_25_{s}.vcdu"))).unwrap(),
        );
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for (i, c) in random_datagrams(&bytes, seed).iter().enumerate() {
        sock.send_to(c, ("127.0.0.1", st.udp)).unwrap();
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(1));
        }
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

#[test]
fn a_station_without_http_and_two_api_nodes_share_one_bucket_and_one_pgstac() {
    let Some(mut g) = Garage::start(BUCKET) else {
        return;
    };
    let Some(cluster) = pgstac_cluster::cluster() else {
        return;
    };
    let db = cluster.fresh_database();
    // The API nodes run before the pass: what the station publishes appears without restart.
    let a = api_node(&g, &db);
    let b = api_node(&g, &db);
    assert!(search_ids(a.http).is_empty());
    let st = station(&g, &db);
    send_pass(&st, 7);

    // The pass is catalogued (in pgstac) and uploaded (its manifest complete in the bucket).
    let t0 = Instant::now();
    let id = loop {
        let ids = search_ids(a.http);
        if let Some(id) = ids.first() {
            let m = g.get(&format!("{PREFIX}/passes/{id}/uploaded.json"));
            if let Some(Some(m)) = m {
                let m: serde_json::Value = serde_json::from_slice(&m).unwrap();
                if m["complete"] == true && m["products"] == true {
                    break id.clone();
                }
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "the pass was not catalogued and uploaded:\n{}",
            tail(&st.log, 40)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    within(
        Duration::from_secs(15),
        "the item on the second node",
        || search_ids(b.http) == vec![id.clone()],
    );
    assert_eq!(search_ids(a.http), vec![id.clone()]);
    for n in [&a, &b] {
        assert!(
            !n.archive.join("passes").join(&id).exists(),
            "an API node holds the pass locally"
        );
    }

    // The item as an API node serves it: asset hrefs on the node, `s3` alternates.
    let item = json_of(a.http, &format!("/stac/collections/{COLL}/items/{id}"));
    let visual = item["assets"]["visual"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let asset_path = &visual[visual.find("/stac/assets/").unwrap()..];
    let rel = asset_path.strip_prefix("/stac/assets/").unwrap().to_owned();
    assert!(
        item["assets"]["visual"]["alternate"]["s3"]["href"]
            .as_str()
            .is_some_and(|h| h == format!("s3://{BUCKET}/{PREFIX}/{rel}")),
        "{}",
        item["assets"]["visual"]
    );
    // The pass record the item links to comes from the store too.
    let (code, _, record) = http(b.http, "GET", &format!("/api/v1/passes/{id}"), &[], b"");
    assert_eq!(code, 200);
    assert!(
        record == std::fs::read(st.archive.join("passes").join(&id).join("pass.json")).unwrap()
    );
    // Both nodes list the pass (its record is only in the store), with the station's figures.
    let station_record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    for node in [&a, &b] {
        within(
            Duration::from_secs(20),
            "the pass in /api/v1/passes",
            || {
                json_of(node.http, "/api/v1/passes")["passes"]
                    .as_array()
                    .is_some_and(|l| !l.is_empty())
            },
        );
        let list = json_of(node.http, "/api/v1/passes");
        assert_eq!(list["total"], 1, "{list}");
        let listed = &list["passes"][0];
        assert_eq!(listed["id"], id.as_str(), "{list}");
        assert_eq!(listed["aos"], station_record["aos"], "{list}");
        assert_eq!(
            listed["frames_good"], station_record["counters"]["frames"]["good"],
            "{list}"
        );
    }
    // Its product files come from the store through the pass routes too, byte-identical.
    let listing = json_of(b.http, &format!("/api/v1/passes/{id}/products"));
    let files: Vec<String> = listing["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["path"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(files.len() >= 2, "{listing}");
    for f in &files {
        let (code, head, body) = http(
            b.http,
            "GET",
            &format!("/api/v1/passes/{id}/products/{f}"),
            &[],
            b"",
        );
        assert_eq!(code, 200, "{f}: {head}");
        let local =
            std::fs::read(st.archive.join("passes").join(&id).join("products").join(f)).unwrap();
        assert!(body == local, "{f} differs from the station's file");
    }
    let (code, head, _) = http(
        b.http,
        "GET",
        &format!("/api/v1/passes/{id}/products/{}", files[0]),
        &[("Range", "bytes=0-9")],
        b"",
    );
    assert_eq!(code, 206, "{head}");
    let local = std::fs::read(st.archive.join(&rel)).unwrap();
    let size = local.len();
    assert!(size > 10_000, "{rel}: {size} bytes");

    // Range reads through the API node equal the station's file.
    let (code, head, body) = http(
        a.http,
        "GET",
        asset_path,
        &[("Range", "bytes=100-1099")],
        b"",
    );
    assert_eq!(code, 206, "{head}");
    assert_eq!(
        header(&head, "content-range"),
        Some(format!("bytes 100-1099/{size}").as_str()),
        "{head}"
    );
    assert_eq!(header(&head, "content-length"), Some("1000"), "{head}");
    assert_eq!(header(&head, "accept-ranges"), Some("bytes"), "{head}");
    assert!(
        header(&head, "content-type").is_some_and(|t| t.contains("image/tiff")),
        "{head}"
    );
    assert_eq!(body, &local[100..1100]);
    let etag = header(&head, "etag").unwrap().to_owned();
    let (code, head, body) = http(b.http, "GET", asset_path, &[("Range", "bytes=-500")], b"");
    assert_eq!(code, 206, "{head}");
    assert_eq!(body, &local[size - 500..]);
    let (code, _, body) = http(a.http, "GET", asset_path, &[], b"");
    assert_eq!(code, 200);
    assert!(body == local, "the whole file differs");
    let (code, head, body) = http(a.http, "HEAD", asset_path, &[], b"");
    assert_eq!(code, 200, "{head}");
    assert_eq!(
        header(&head, "content-length"),
        Some(size.to_string().as_str())
    );
    assert!(body.is_empty());
    let (code, head, _) = http(
        a.http,
        "GET",
        asset_path,
        &[("Range", &format!("bytes={size}-"))],
        b"",
    );
    assert_eq!(code, 416, "{head}");
    assert_eq!(
        header(&head, "content-range"),
        Some(format!("bytes */{size}").as_str())
    );
    let (code, _, _) = http(a.http, "GET", asset_path, &[("If-None-Match", &etag)], b"");
    assert_eq!(code, 304);
    let status = json_of(a.http, "/api/v1/status");
    assert!(
        status["store_reads"]["assets"].as_u64().unwrap() >= 5,
        "{}",
        status["store_reads"]
    );
    assert_eq!(status["store_reads"]["failures"]["unreachable"], 0);

    // A tile is the same bytes from both API nodes (GDAL /vsis3/) and from a node reading the
    // station's local files (no store: the files under its archive.path).
    let reader_dir = tempfile::tempdir().unwrap();
    let reader_cfg = reader_dir.path().join("downlink.toml");
    std::fs::write(
        &reader_cfg,
        format!(
            "[archive]\npath = \"{}\"\n[catalog]\nurl = \"{db}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            st.archive.display()
        ),
    )
    .unwrap();
    let local_node = Daemon::launch(serve_cmd(&reader_cfg), reader_dir, st.archive.clone());
    let (lon, lat) = centroid(&item);
    let tile = |z: u32| {
        let (x, y) = tile_at(lon, lat, z);
        format!("/stac/collections/{COLL}/items/{id}/tiles/WebMercatorQuad/{z}/{x}/{y}.png")
    };
    let t6 = tile(6);
    let from = |n: &Daemon| {
        let (code, head, png) = http(n.http, "GET", &t6, &[], b"");
        assert_eq!(code, 200, "{t6}: {head}");
        png
    };
    let (ta, tb, tl) = (from(&a), from(&b), from(&local_node));
    assert!(
        ta.starts_with(b"\x89PNG") && ta.len() > 1000,
        "{}",
        ta.len()
    );
    assert_eq!(ta, tb, "the API nodes drew different bytes");
    assert_eq!(ta, tl, "the store's tile differs from the local file's");
    // WMTS layers (the sources inspected through /vsis3/) are those of the local files.
    let wmts = |n: &Daemon| {
        let (code, _, body) = http(
            n.http,
            "GET",
            &format!("/stac/collections/{COLL}/WMTSCapabilities.xml"),
            &[],
            b"",
        );
        assert_eq!(code, 200);
        let text = String::from_utf8(body).unwrap();
        let ids: Vec<String> = text
            .split("<ows:Identifier>")
            .skip(1)
            .filter_map(|s| s.split('<').next())
            .map(str::to_owned)
            .filter(|s| s.starts_with(COLL))
            .collect();
        ids
    };
    let layers = wmts(&a);
    assert!(layers.contains(&COLL.to_owned()), "{layers:?}");
    assert_eq!(layers, wmts(&local_node));
    // WMS GetMap (the same renderer, several tiles stitched) too.
    let getmap = format!(
        "/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={COLL}&STYLES=&CRS=CRS:84\
         &BBOX={},{},{},{}&WIDTH=300&HEIGHT=200&FORMAT=image/png&TRANSPARENT=TRUE",
        lon - 3.0,
        lat - 2.0,
        lon + 3.0,
        lat + 2.0
    );
    let (code, head, wa) = http(a.http, "GET", &getmap, &[], b"");
    assert_eq!(code, 200, "{getmap}: {head}");
    assert!(
        header(&head, "content-type") == Some("image/png") && wa.len() > 1000,
        "{head}: {} bytes",
        wa.len()
    );
    assert_eq!(wa, http(local_node.http, "GET", &getmap, &[], b"").2);

    // GDAL reads the COG straight from the bucket.
    let gdalinfo = Path::new("/usr/bin/gdalinfo");
    if need(gdalinfo, "apt-get install gdal-bin") {
        let out = Command::new(gdalinfo)
            .arg(format!("/vsis3/{BUCKET}/{PREFIX}/{rel}"))
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
            out.status.success() && text.contains("LAYOUT=COG"),
            "gdalinfo /vsis3/: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // A second pass (stac-api-validator pages with limit=1), then the validators against an
    // API node, offline schemas, as tests/e2e_serve.rs runs them.
    send_pass(&st, 8);
    within(
        Duration::from_secs(180),
        "the second pass on the API node",
        || search_ids(b.http).len() == 2,
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(repo.join("scripts/stac-validate/stac-validate.sh"))
        .arg(repo.join("target/stac-validate"))
        .arg(format!("http://127.0.0.1:{}/stac", b.http))
        .arg(COLL)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    // The one thing the offline schema mirror cannot check: the alternate assets extension
    // the uploader adds (its schema is in no pinned PyPI distribution). Every other check
    // passes, and every asset the validator fetched came through the API node from the store.
    const NO_OFFLINE_SCHEMA: &str = "alternate-assets/v1.2.0/schema.json";
    for class in [
        "Validating STAC API - Core conformance class",
        "Validating STAC API - Features conformance class",
        "Validating STAC API - Item Search conformance class",
        "Validating STAC API - Item Search - Filter Extension - CQL2-Text conformance class",
    ] {
        assert!(log.contains(class), "{class} not validated:\n{log}\n{err}");
    }
    let errors_at = log
        .lines()
        .position(|l| l.starts_with("Errors:"))
        .unwrap_or_else(|| panic!("no stac-api-validator verdict:\n{log}\n{err}"));
    let errors: Vec<&str> = log
        .lines()
        .skip(errors_at + 1)
        .take_while(|l| l.starts_with("- "))
        .collect();
    for e in &errors {
        assert!(e.contains(NO_OFFLINE_SCHEMA), "stac-api-validator: {e}");
    }
    for l in log.lines().filter(|l| l.contains("\"error_message\"")) {
        assert!(l.contains(NO_OFFLINE_SCHEMA), "stac-validator: {l}");
    }
    let mut fetched_assets = 0;
    for part in log.split("\"assets_validated\"").skip(1) {
        let valid = part.split("\"request_valid\"").nth(1).unwrap();
        let (valid, invalid) = valid.split_once("\"request_invalid\"").unwrap();
        fetched_assets += valid.matches("/stac/assets/").count();
        let invalid = invalid.split(']').next().unwrap();
        assert!(
            !invalid.contains("/stac/assets/"),
            "assets not served: {invalid}"
        );
    }
    // Links too (the pass record the item links to is read from the store).
    for part in log.split("\"request_invalid\": [").skip(1) {
        let invalid = part.split(']').next().unwrap();
        assert!(!invalid.contains("http"), "not served: {invalid}");
    }
    assert!(
        fetched_assets >= 8,
        "{fetched_assets} assets fetched:\n{log}"
    );

    // An object the store lost is a 404 (counted), not a 503.
    let gone = item["assets"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.as_str() != "visual")
        .find_map(|(_, a)| {
            let h = a["href"].as_str()?;
            Some(h[h.find("/stac/assets/")?..].to_owned())
        })
        .unwrap();
    let gone_key = format!("{PREFIX}/{}", gone.strip_prefix("/stac/assets/").unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use object_store::ObjectStore;
        g.client()
            .delete(&object_store::path::Path::from(gone_key.as_str()))
            .await
            .unwrap();
    });
    let (code, _, _) = http(b.http, "GET", &gone, &[], b"");
    assert_eq!(code, 404, "{gone}");
    assert_eq!(
        json_of(b.http, "/api/v1/status")["store_reads"]["not_found"],
        1
    );

    // The store goes down: asset reads answer 503 at once (no hang), counted by reason, and
    // `store` is degraded; a tile never drawn before cannot be read either.
    g.stop();
    let t0 = Instant::now();
    let (code, head, _) = http(a.http, "GET", asset_path, &[("Range", "bytes=0-99")], b"");
    assert_eq!(code, 503, "{head}");
    assert!(header(&head, "retry-after").is_some(), "{head}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "{:?} for a 503",
        t0.elapsed()
    );
    let status = json_of(a.http, "/api/v1/status");
    assert!(
        status["store_reads"]["failures"]["unreachable"]
            .as_u64()
            .unwrap()
            >= 1,
        "{}",
        status["store_reads"]
    );
    assert!(
        status["health"]["problems"]["store"].is_string(),
        "{}",
        status["health"]
    );
    assert!(
        metric(
            a.http,
            "downlink_store_read_failures_total{reason=\"unreachable\"}"
        ) >= 1
    );
    assert_eq!(metric(a.http, "downlink_degraded{component=\"store\"}"), 1);
    let (code, _, _) = http(a.http, "GET", "/api/v1/health", &[], b"");
    assert_eq!(code, 503);
    let (code, head, _) = http(b.http, "GET", &tile(9), &[], b"");
    assert_eq!(code, 503, "{head}");
    assert!(a
        .log_text()
        .contains("reading from the object store failed"));
    // The catalog still answers: search works while the store is down.
    assert_eq!(search_ids(a.http).len(), 2);
    // The second pass's COG, never opened by this node: its open fails too.
    let id2 = search_ids(a.http).into_iter().find(|i| *i != id).unwrap();
    let tile2 = tile(6).replace(&id, &id2);
    let (code, head, _) = http(a.http, "GET", &tile2, &[], b"");
    assert_eq!(code, 503, "{head}");
    for n in [&a, &b] {
        assert!(
            json_of(n.http, "/api/v1/status")["store_reads"]["failures"]["gdal"]
                .as_u64()
                .unwrap()
                >= 1
        );
    }

    // Back: reads work again and the degradation clears.
    g.resume();
    within(
        Duration::from_secs(30),
        "reads from the store again",
        || http(a.http, "GET", asset_path, &[("Range", "bytes=0-99")], b"").0 == 206,
    );
    within(Duration::from_secs(30), "store health clear", || {
        json_of(a.http, "/api/v1/status")["health"]["problems"]
            .get("store")
            .is_none()
    });
    // Nothing of the outage sticks in GDAL's caches: both tiles draw now, as on the other node.
    within(
        Duration::from_secs(30),
        "tiles from the store again",
        || {
            http(b.http, "GET", &tile(9), &[], b"").0 == 200
                && http(a.http, "GET", &tile2, &[], b"").0 == 200
        },
    );
    assert_eq!(
        http(a.http, "GET", &tile2, &[], b"").2,
        http(b.http, "GET", &tile2, &[], b"").2
    );
    assert_eq!(
        http(a.http, "GET", &tile(9), &[], b"").2,
        http(b.http, "GET", &tile(9), &[], b"").2
    );
    // Opening an HTTP listener needs a restart: a SIGHUP that asks for one is refused and the
    // station keeps running as it was.
    let text = std::fs::read_to_string(&st.config).unwrap();
    std::fs::write(
        &st.config,
        text.replace("enabled = false\n", "enabled = true\n"),
    )
    .unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &st.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    within(Duration::from_secs(10), "the reload refused", || {
        std::fs::read_to_string(&st.log)
            .is_ok_and(|t| t.contains("reload refused") && t.contains("http.enabled changed"))
    });

    // A tile drawn from the store clears what the failed ones degraded.
    within(
        Duration::from_secs(5),
        "store health clear on the other node",
        || {
            json_of(b.http, "/api/v1/status")["health"]["problems"]
                .get("store")
                .is_none()
        },
    );

    // A raster imported at the station with `archive add --config` goes up to the store and is
    // published with its s3 alternates: an API node serves its bytes.
    let tif = data("change/muri-ag/S2_L2A_T32TMT_20210812_red_nir.tif");
    let mut add = Command::new(env!("CARGO_BIN_EXE_downlink"));
    add.args(["archive", "add", "--config"])
        .arg(&st.config)
        .arg(&tif)
        .args(["--collection", "muri", "--datetime", "2021-08-12T10:30:00Z"])
        .args(["--bands", "red,nir"]);
    let out = with_creds(add, &g).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("uploaded to s3://{BUCKET}/{PREFIX}")),
        "{err}"
    );
    let item: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let assets = item["assets"].as_object().unwrap();
    assert!(assets.len() >= 2, "{item}");
    let mut files = 0;
    for (k, a_) in assets {
        let Some(alt) = a_["alternate"]["s3"]["href"].as_str() else {
            continue;
        };
        let rel = alt
            .strip_prefix(&format!("s3://{BUCKET}/{PREFIX}/"))
            .unwrap_or_else(|| panic!("{k}: {alt}"));
        let local = std::fs::read(st.archive.join(rel)).unwrap();
        let (code, head, body) = http(a.http, "GET", &format!("/stac/assets/{rel}"), &[], b"");
        assert_eq!(code, 200, "{k}: {head}");
        assert!(
            body == local,
            "{k}: the API node's bytes differ from the station's file"
        );
        files += 1;
    }
    assert!(files >= 1, "no asset with an s3 alternate: {item}");
    let found = json_of(
        b.http,
        &format!(
            "/stac/collections/muri/items/{}",
            item["id"].as_str().unwrap()
        ),
    );
    for (k, a_) in assets {
        // The API serves hrefs absolute (its asset route); the alternates are as published.
        assert_eq!(found["assets"][k]["alternate"], a_["alternate"], "{k}");
        let rel = a_["href"].as_str().unwrap();
        assert!(
            found["assets"][k]["href"]
                .as_str()
                .is_some_and(|h| h.ends_with(&format!("/stac/assets/{rel}"))),
            "{k}: {}",
            found["assets"][k]
        );
    }
}
