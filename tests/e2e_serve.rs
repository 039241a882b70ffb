//! End-to-end: the real `downlink serve` on loopback, fed real captures over UDP in random
//! datagram sizes. Pass records must equal `downlink decode --json` on the same file, and the raw
//! archive must hold every CADU byte-exact. Only 127.0.0.1 is ever used.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

#[test]
fn every_real_capture_over_udp_equals_decode_json_and_is_archived_byte_exact() {
    for (file, profile) in [
        ("cadu/aqua.20241206T175646.dat", "eos"),
        ("cadu/metopb.20241206T152751.dat", "metop"),
        ("cadu/noaa20.20241206T162710.dat", "jpss"),
        ("cadu/npp.20241206T173815.dat", "jpss"),
    ] {
        let mut d = Daemon::start(profile, "");
        let path = data(file);
        let bytes = std::fs::read(&path).unwrap();
        d.send(&random_datagrams(&bytes, bytes.len() as u64));
        let recs = d.wait_passes(1);
        assert_eq!(recs.len(), 1, "{file}");
        let rec = &recs[0];
        assert_eq!(
            rec["counters"],
            decode_json(&path, profile),
            "{file}: pass counters"
        );
        assert!(
            rec["drops"].as_object().unwrap().values().all(|v| v == 0),
            "{file}: {}",
            rec["drops"]
        );
        let dir = d.archive.join("passes").join(rec["id"].as_str().unwrap());
        let raw = std::fs::read(dir.join("cadus.raw")).unwrap();
        assert!(raw == aligned_cadus(&bytes), "{file}: raw archive differs");
        // The operator API lists the pass and exposes metrics.
        let list = d.get("/api/v1/passes").unwrap();
        assert!(list.contains(rec["id"].as_str().unwrap()), "{list}");
        let one = d
            .get(&format!("/api/v1/passes/{}", rec["id"].as_str().unwrap()))
            .unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&one).unwrap(),
            *rec
        );
        let png = d
            .get_bytes(&format!(
                "/api/v1/passes/{}/plot.png",
                rec["id"].as_str().unwrap()
            ))
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{file}: plot");
        assert_eq!(png, std::fs::read(dir.join("plot.png")).unwrap());
        let metrics = d.get("/metrics").unwrap();
        assert!(
            metrics.contains("downlink_frames_good_total{input=\"xband\"} 1023"),
            "{metrics}"
        );
        assert!(d.get("/api/v1/passes/..%2Fetc").is_none());
        assert!(d.stop().success(), "{file}: exit status");
    }
}

#[test]
fn bad_datagrams_are_counted_and_the_capture_still_decodes() {
    let mut d = Daemon::start("eos", "max_datagram = 8000");
    let bytes = std::fs::read(data("cadu/aqua.20241206T175646.dat")).unwrap();
    let mut dgrams = Vec::new();
    // Whole-CADU-sized datagrams of the capture, with bad ones in between: oversize
    // (truncated) and empty ones never reach the decoder; random garbage does, and the
    // synchronizer must discard it and re-acquire without losing a real frame. The chunks are
    // the realigned CADUs, so garbage lands between frames, never inside one.
    let mut rng = Rng(77);
    for (i, c) in aligned_cadus(&bytes).chunks(1024).enumerate() {
        dgrams.push(c.to_vec());
        if i % 100 == 50 {
            dgrams.push(vec![0x55; 9000]);
            dgrams.push(Vec::new());
        }
        if i % 200 == 120 {
            dgrams.push((0..1500).map(|_| rng.below(256) as u8).collect());
        }
    }
    d.send(&dgrams);
    let recs = d.wait_passes(1);
    let c = &recs[0]["counters"];
    assert_eq!(c["frames"]["good"], 1023, "{c}");
    assert_eq!(c["frames"]["rejected"]["rs_uncorrectable"], 0, "{c}");
    assert_eq!(
        c["sync"]["lost"], 5,
        "one loss of lock per garbage burst: {c}"
    );
    assert!(
        c["sync"]["bits_discarded"].as_u64().unwrap() >= 5 * 1500 * 8,
        "{c}"
    );
    assert!(
        c["sync"]["bits_discarded"].as_u64().unwrap() >= 5 * 1500 * 8,
        "{c}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
    let drops = &status["inputs"][0]["drops"];
    // i = 50, 150, …, 950 within the capture's 1024 chunks: 10 of each.
    assert_eq!(drops["truncated"], 10, "{drops}");
    assert_eq!(drops["empty"], 10, "{drops}");
    assert_eq!(status["inputs"][0]["datagrams"], dgrams.len());
    assert!(d.stop().success());
}

#[test]
fn sources_outside_the_allow_list_are_dropped_and_counted() {
    let mut d = Daemon::start("eos", "allow = [\"10.0.0.0/8\"]");
    let bytes = std::fs::read(data("cadu/snpp_7cadus_2vcids.dat")).unwrap();
    let dgrams = random_datagrams(&bytes, 5);
    d.send(&dgrams);
    let t0 = Instant::now();
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
        if status["inputs"][0]["drops"]["not_allowed"] == dgrams.len() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !d.archive.join("passes").exists()
            || std::fs::read_dir(d.archive.join("passes")).unwrap().count() == 0
    );
    assert!(d.stop().success());
}

#[test]
fn sigterm_mid_pass_closes_and_archives_the_pass() {
    let mut d = Daemon::start("jpss", "");
    let bytes = std::fs::read(data("cadu/npp.20241206T173815.dat")).unwrap();
    // Half the capture, then SIGTERM while the pass is still open (LOS timeout not reached).
    d.send(&random_datagrams(&bytes[..bytes.len() / 2], 9));
    std::thread::sleep(Duration::from_millis(300));
    let archive = d.archive.clone();
    assert!(d.stop().success());
    // (the archive lives in d's temp dir, still alive here)
    // Pass directories only (not the merge lock file beside them).
    let passes: Vec<_> = std::fs::read_dir(archive.join("passes"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(passes.len(), 1, "{passes:?}");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(passes[0].path().join("pass.json")).unwrap())
            .unwrap();
    let good = rec["counters"]["frames"]["good"].as_u64().unwrap();
    assert!((500..=512).contains(&good), "{good}");
}

#[test]
fn downlink_replay_feeds_the_daemon_clean_and_impaired() {
    let mut d = Daemon::start("eos", "");
    let path = data("cadu/aqua.20241206T175646.dat");
    let to = format!("udp://127.0.0.1:{}", d.udp);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "replay",
            path.to_str().unwrap(),
            "--to",
            &to,
            "--rate",
            "100Mbit",
            "--datagram-size",
            "1316",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        let out = Command::new(env!("CARGO_BIN_EXE_downlink"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[]);
    let recs = d.wait_passes(1);
    assert_eq!(
        recs[0]["counters"],
        decode_json(&path, "eos"),
        "clean replay = decode --json"
    );
    // Second pass: random bit errors and the stream inverted halfway.
    run(&["--ber", "2e-4", "--invert-after", "524288", "--seed", "7"]);
    let recs = d.wait_passes(2);
    let c = &recs[1]["counters"];
    assert!(c["rs"]["corrected"].as_u64().unwrap() > 100, "{c}");
    assert!(c["sync"]["inverted_frames"].as_u64().unwrap() > 400, "{c}");
    assert!(c["frames"]["good"].as_u64().unwrap() >= 1015, "{c}");
    assert!(d.stop().success());
}

#[test]
fn tcp_input_decodes_a_stream() {
    let mut d = Daemon::start_on("tcp", "eos", "");
    let path = data("cadu/aqua.20241206T175646.dat");
    let bytes = std::fs::read(&path).unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", d.udp)).unwrap();
    for c in bytes.chunks(777) {
        s.write_all(c).unwrap();
    }
    drop(s);
    let recs = d.wait_passes(1);
    assert_eq!(
        recs[0]["counters"],
        decode_json(&path, "eos"),
        "TCP pass = decode --json"
    );
    assert!(d.stop().success());
}

#[test]
fn kill_9_mid_pass_then_restart_recovers_the_pass_from_the_raw_archive() {
    let mut d = Daemon::start("jpss", "");
    let bytes = std::fs::read(data("cadu/npp.20241206T173815.dat")).unwrap();
    d.send(&random_datagrams(&bytes[..bytes.len() / 2], 11));
    // Once the decoder has taken 400 frames (a loaded machine may lag the sender), then past a
    // few fsync intervals (100 ms), well inside the LOS timeout (700 ms).
    let t0 = Instant::now();
    loop {
        let st: serde_json::Value =
            serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
        let good = st["inputs"][0]["current"]["frames"]["good"]
            .as_u64()
            .unwrap_or(0);
        if good >= 400 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "decoder stuck: {st}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    d.kill9_and_restart();
    let recs = d.wait_passes(1);
    let rec = &recs[0];
    assert_eq!(rec["interrupted"], true, "{rec}");
    let good = rec["counters"]["frames"]["good"].as_u64().unwrap();
    assert!((400..=512).contains(&good), "frames recovered: {good}");
    let dir = d.archive.join("passes").join(rec["id"].as_str().unwrap());
    let raw = std::fs::metadata(dir.join("cadus.raw")).unwrap().len();
    assert_eq!(raw % 1024, 0, "a torn CADU is trimmed");
    assert_eq!(raw / 1024, rec["counters"]["cadus"].as_u64().unwrap());
    // The recovery is counted (the PassRecovery event), in the status and in /metrics.
    let st: serde_json::Value = serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
    let recovered = &st["archive"]["recovered_passes"];
    assert_eq!(recovered["recovered"], 1, "{st}");
    assert_eq!(
        (recovered["failed"].as_u64(), recovered["left"].as_u64()),
        (Some(0), Some(0))
    );
    let metrics = d.get("/metrics").unwrap();
    assert!(
        metrics.contains("downlink_passes_recovered_total{result=\"recovered\"} 1\n"),
        "{metrics}"
    );
    // The restarted daemon keeps working: a new pass after recovery.
    d.send(&random_datagrams(&bytes, 12));
    let recs = d.wait_passes(2);
    assert_eq!(recs[1]["counters"]["frames"]["good"], 1023);
    assert!(d.stop().success());
}

#[test]
fn sighup_with_a_bad_config_keeps_running_and_a_good_one_is_applied() {
    let mut d = Daemon::start("eos", "");
    let good = std::fs::read_to_string(&d.config).unwrap();
    let hup = |d: &Daemon| {
        let pid = d.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    };
    let status = |d: &Daemon| -> serde_json::Value {
        serde_json::from_str(&d.get("/api/v1/status").unwrap_or_default()).unwrap_or_default()
    };
    let wait_for = |d: &Daemon, what: &dyn Fn(&serde_json::Value) -> bool| {
        let t0 = Instant::now();
        loop {
            let s = status(d);
            if what(&s) {
                return s;
            }
            assert!(t0.elapsed() < Duration::from_secs(15), "{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // 1. Invalid config: reported, old config keeps running and decoding.
    std::fs::write(
        &d.config,
        good.replace("los_timeout = \"700ms\"", "los_timeout = \"soon\""),
    )
    .unwrap();
    hup(&d);
    let s = wait_for(&d, &|s| s["reloads"]["last"]["ok"] == false);
    assert!(
        s["reloads"]["last"]["error"]
            .as_str()
            .unwrap()
            .contains("pass.los_timeout"),
        "{s}"
    );
    let bytes = std::fs::read(data("cadu/aqua.20241206T175646.dat")).unwrap();
    d.send(&random_datagrams(&bytes, 21));
    assert_eq!(d.wait_passes(1)[0]["counters"]["frames"]["good"], 1023);
    // 2. Valid config with a renamed input: applied.
    std::fs::write(
        &d.config,
        good.replace("name = \"xband\"", "name = \"lband\""),
    )
    .unwrap();
    hup(&d);
    let s = wait_for(&d, &|s| s["inputs"][0]["name"] == "lband");
    assert_eq!(s["reloads"]["last"]["ok"], true);
    assert_eq!(s["reloads"]["ok"], 1, "{s}");
    assert_eq!(s["reloads"]["failed"], 1, "{s}");
    d.send(&random_datagrams(&bytes, 22));
    let recs = d.wait_passes(2);
    assert!(
        recs.iter().any(|r| r["input"] == "lband"),
        "new passes use the new config"
    );
    assert!(d.stop().success());
}

#[test]
fn tcp_connect_input_retries_until_the_server_is_up_and_reconnects() {
    // The server's socket is bound (so the port is ours) but not listening: the daemon's
    // connections are refused, and it must keep retrying until the server listens.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    sock.bind(&any.into()).unwrap();
    let port = sock.local_addr().unwrap().as_socket().unwrap().port();
    let target = format!("tcp-connect://127.0.0.1:{port}");
    let mut d = Daemon::start_on(&target, "eos", "reconnect = \"100ms\"");
    std::thread::sleep(Duration::from_millis(400));
    sock.listen(8).unwrap();
    let server: std::net::TcpListener = sock.into();
    let path = data("cadu/aqua.20241206T175646.dat");
    let bytes = std::fs::read(&path).unwrap();
    let (mut conn, _) = server.accept().unwrap();
    conn.write_all(&bytes).unwrap();
    drop(conn);
    let recs = d.wait_passes(1);
    assert_eq!(
        recs[0]["counters"],
        decode_json(&path, "eos"),
        "tcp-connect pass = decode --json"
    );
    // After the server closed the connection the daemon reconnects.
    let (_again, _) = server.accept().unwrap();
    let status: serde_json::Value =
        serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
    assert!(
        status["inputs"][0]["reconnects"].as_u64().unwrap() >= 2,
        "{status}"
    );
    assert!(d.stop().success());
}

#[test]
fn systemd_socket_activation_passes_the_udp_socket() {
    // The test is the service manager: it binds the socket and passes it as fd 3.
    let mut d = Daemon::start_socket_activated("jpss");
    let status: serde_json::Value =
        serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
    assert_eq!(
        status["inputs"][0]["local_addr"],
        format!("127.0.0.1:{}", d.udp),
        "{status}"
    );
    assert_eq!(status["inputs"][0]["listen"], "systemd://xband", "{status}");
    let bytes = std::fs::read(data("cadu/npp.20241206T173815.dat")).unwrap();
    d.send(&random_datagrams(&bytes, 31));
    let recs = d.wait_passes(1);
    let good = recs[0]["counters"]["frames"]["good"].as_u64().unwrap();
    assert!(
        good >= 1023,
        "frames through the systemd-passed socket: {good}"
    );
    assert!(d.stop().success());
}

#[test]
fn webhooks_receive_aos_los_and_the_pass_record() {
    // A webhook receiver on loopback that answers 204 and keeps every JSON body.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let sink = bodies.clone();
    std::thread::spawn(move || {
        for conn in server.incoming().flatten().take(3) {
            let mut conn = conn;
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut raw = Vec::new();
            let mut buf = vec![0u8; 65536];
            loop {
                let n = conn.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        assert!(head.starts_with("POST /hook?token=x HTTP/1.1"), "{head}");
                        sink.lock()
                            .unwrap()
                            .push(serde_json::from_str(&body[..len]).unwrap());
                        conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                            .unwrap();
                        break;
                    }
                }
            }
        }
    });
    let mut d = Daemon::start(
        "eos",
        &format!("\n[[webhook]]\nurl = \"http://127.0.0.1:{port}/hook?token=x\"\n"),
    );
    let bytes = std::fs::read(data("cadu/aqua.20241206T175646.dat")).unwrap();
    d.send(&random_datagrams(&bytes, 41));
    let recs = d.wait_passes(1);
    let t0 = Instant::now();
    while bodies.lock().unwrap().len() < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{:?}",
            bodies.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = bodies.lock().unwrap().clone();
    let events: Vec<&str> = got.iter().map(|b| b["event"].as_str().unwrap()).collect();
    assert_eq!(
        events.iter().filter(|e| **e == "aos").count(),
        1,
        "{events:?}"
    );
    assert!(
        events.contains(&"los") && events.contains(&"pass_record"),
        "{events:?}"
    );
    let record = got.iter().find(|b| b["event"] == "pass_record").unwrap();
    assert_eq!(record["data"], recs[0]);
    let status: serde_json::Value =
        serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
    assert_eq!(status["webhooks"]["sent"], 3, "{status}");
    assert!(d.stop().success());
}
#[test]
fn a_meteor_pass_gets_georeferenced_products_at_los() {
    let (d, _tle) = meteor_daemon(&format!("landmask = \"{}\"\n", landmask().display()));
    send_meteor_pass(&d, 40069);
    let rec = d.wait_passes(1).remove(0);
    assert_eq!(rec["counters"]["frames"]["good"], 256);
    let id = rec["id"].as_str().unwrap().to_owned();
    let listing_path = d
        .archive
        .join("passes")
        .join(&id)
        .join("products/products.json");
    let t0 = Instant::now();
    while !listing_path.exists() {
        let status = d.get("/api/v1/status").unwrap_or_default();
        assert!(
            !status.contains("\"failed\":1"),
            "products failed: {status}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no products after LOS; status: {:?}",
            d.get("/api/v1/status")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let listing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&listing_path).unwrap()).unwrap();
    assert_eq!(listing["pass_id"], id.as_str());
    assert_eq!(listing["channels"], serde_json::json!([64, 65, 68]));
    assert_eq!(listing["lines"], 200);
    // Same link counters as the pass record: the products were made from the archive.
    assert_eq!(
        listing["link_quality"]["frames_good"],
        rec["counters"]["frames"]["good"]
    );
    let kinds: Vec<&str> = listing["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    for k in [
        "raw_png",
        "raw_gcp_tiff",
        "analytic",
        "composite",
        "ndvi",
        "thumbnail",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    for p in listing["products"].as_array().unwrap() {
        let path = Path::new(p["path"].as_str().unwrap());
        assert_eq!(
            std::fs::metadata(path).unwrap().len(),
            p["bytes"].as_u64().unwrap(),
            "{}",
            path.display()
        );
    }
    // The QA ran against the configured mask (one estimate per channel).
    assert_eq!(listing["geolocation_qa"].as_array().unwrap().len(), 3);
    // The first image line is dated by the daemon's clock: today's Moscow 23:25 → 20:25 UTC.
    assert!(
        listing["start"]
            .as_str()
            .unwrap()
            .ends_with("20:25:11.064Z"),
        "{}",
        listing["start"]
    );

    // Served over HTTP: the listing and the files; nothing outside the product directory.
    let served: serde_json::Value =
        serde_json::from_str(&d.get(&format!("/api/v1/passes/{id}/products")).unwrap()).unwrap();
    assert_eq!(served, listing);
    let png = d
        .get_bytes(&format!("/api/v1/passes/{id}/products/ch1.raw.png"))
        .unwrap();
    assert_eq!(
        png,
        std::fs::read(
            d.archive
                .join("passes")
                .join(&id)
                .join("products/ch1.raw.png")
        )
        .unwrap()
    );
    assert!(d
        .get_bytes(&format!("/api/v1/passes/{id}/products/..%2Fpass.json"))
        .is_none());
    assert!(d
        .get_bytes(&format!("/api/v1/passes/{id}/products/.swath.gcp.tif"))
        .is_none());
    // products.json is published before the set is catalogued and counted: wait for that.
    let t0 = Instant::now();
    let status = loop {
        let status: serde_json::Value =
            serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
        if status["products"]["ok"] != 0 || t0.elapsed() > Duration::from_secs(60) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["products"]["ok"], 1, "{}", status["products"]);
    assert_eq!(status["products"]["failed"], 0);
    let metrics = d.get("/metrics").unwrap();
    assert!(
        metrics.contains("downlink_product_passes_total{result=\"ok\"} 1"),
        "{metrics}"
    );
}
/// The id `archive add` gives RGB.byte.tif in landsat-imports at 2024-08-01T13:45:00Z.
const IMPORTED: &str = "landsat-imports-20240801T134500Z-RGB.byte";

#[test]
fn stac_api_serves_received_passes_and_imported_rasters() {
    // An imported raster (the shared Landsat subset over the Bahamas) and a received pass.
    let (d, _tle) = meteor_daemon("");
    let added = archive_add(
        &d,
        "geotiff/RGB.byte.tif",
        "landsat-imports",
        "2024-08-01T13:45:00Z",
    );
    assert_eq!(added["id"], IMPORTED);
    send_meteor_pass(&d, 7);
    let id = wait_catalogued(&d);
    let p = d.http;
    let base = format!("http://127.0.0.1:{p}");

    // Landing page, conformance, collections.
    let landing = json_of(p, "/stac");
    assert_eq!(landing["type"], "Catalog");
    // The OpenAPI description the landing page points to (rel=service-desc), and its HTML page.
    let desc = landing["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "service-desc")
        .unwrap();
    assert_eq!(desc["href"], format!("http://127.0.0.1:{p}/stac/api"));
    let (st, head, body) = http(p, "GET", "/stac/api", &[], b"");
    assert_eq!(st, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/vnd.oai.openapi+json;version=3.0"),
        "{head}"
    );
    let oas: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(oas["openapi"], "3.0.3");
    assert!(oas["paths"]["/search"]["post"].is_object());
    let (st, _, html) = http(p, "GET", "/stac/api.html", &[], b"");
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&html).contains("/stac/search"));
    let conf = json_of(p, "/stac/conformance");
    for c in ["core", "collections", "item-search", "ogcapi-features"] {
        assert!(
            conf["conformsTo"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x.as_str().unwrap().ends_with(c)),
            "{c}"
        );
    }
    let cols = json_of(p, "/stac/collections");
    let mut ids: Vec<&str> = cols["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["landsat-imports", "meteor-m2-msu-mr"]);

    // The pass item: absolute asset URLs, provenance, link to the pass record.
    let item = json_of(p, &format!("/stac/collections/meteor-m2-msu-mr/items/{id}"));
    assert_eq!(item["properties"]["downlink:pass_id"], id.as_str());
    // Dawn over the swath, as on the 2022 pass whose ground track this one repeats.
    let sun = item["properties"]["view:sun_elevation"].as_f64().unwrap();
    assert!((-10.0..25.0).contains(&sun), "{sun}");
    assert!(item["stac_extensions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().contains("/view/")));
    assert_eq!(
        item["properties"]["downlink:link_quality"]["frames_good"],
        256
    );
    let href = item["assets"]["ch1"]["href"].as_str().unwrap();
    assert!(
        href.starts_with(&format!("{base}/stac/assets/passes/{id}/products/")),
        "{href}"
    );
    let via = item["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "via")
        .unwrap();
    assert_eq!(via["href"], format!("{base}/api/v1/passes/{id}"));
    assert!(item["assets"]["visual"]["href"]
        .as_str()
        .unwrap()
        .ends_with("composite.web.tif"));

    // Search: space, time, collections, ids, GET and POST, paging.
    let by_bbox = |b: &str| -> Vec<String> {
        let v = json_of(p, &format!("/stac/search?bbox={b}"));
        v["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(by_bbox("140,-15,160,-5"), vec![id.clone()]);
    assert_eq!(by_bbox("-79,23.5,-76.5,25.6"), [IMPORTED]);
    assert!(by_bbox("0,0,1,1").is_empty());
    let later = json_of(p, "/stac/search?datetime=2024-01-01T00:00:00Z/..");
    let later_ids: Vec<&str> = later["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(later_ids.contains(&IMPORTED));
    let post = http(p, "POST", "/stac/search", &[("Content-Type", "application/json")], br#"{"collections":["landsat-imports"],"intersects":{"type":"Point","coordinates":[-77.8,24.5]}}"#);
    assert_eq!(post.0, 200);
    let post: serde_json::Value = serde_json::from_slice(&post.2).unwrap();
    assert_eq!(post["features"].as_array().unwrap().len(), 1);
    // Paging with limit=1 visits both items exactly once.
    let mut seen = Vec::new();
    let mut next = Some(format!("{base}/stac/search?limit=1"));
    while let Some(url) = next.take() {
        let v = json_of(p, url.strip_prefix(&base).unwrap());
        for f in v["features"].as_array().unwrap() {
            seen.push(f["id"].as_str().unwrap().to_owned());
        }
        next = v["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "next")
            .map(|l| l["href"].as_str().unwrap().to_owned());
        assert!(seen.len() <= 2, "{seen:?}");
    }
    seen.sort();
    let mut want = vec![IMPORTED.to_owned(), id.clone()];
    want.sort();
    assert_eq!(seen, want);

    // Bad input is a 4xx with a JSON description, never a 5xx.
    for bad in [
        "/stac/search?bbox=1,2",
        "/stac/search?datetime=yesterday",
        "/stac/search?limit=0",
        "/stac/search?token=nonsense",
        "/stac/search?intersects=%7Bnope",
        "/stac/search?bbox=0,0,1,1&intersects=%7B%22type%22%3A%22Point%22%2C%22coordinates%22%3A%5B0.5%2C0.5%5D%7D",
    ] {
        let (st, _, body) = http(p, "GET", bad, &[], b"");
        assert_eq!(st, 400, "{bad}: {}", String::from_utf8_lossy(&body));
    }
    assert_eq!(http(p, "GET", "/stac/collections/nope", &[], b"").0, 404);
    assert_eq!(
        http(
            p,
            "GET",
            "/stac/collections/meteor-m2-msu-mr/items/nope",
            &[],
            b""
        )
        .0,
        404
    );
    assert_eq!(http(p, "POST", "/stac/search", &[], b"{not json").0, 400);

    // Assets: HTTP Range, and GDAL opens the COG straight from the station.
    let asset_path = href.strip_prefix(&base).unwrap();
    let (st, head, part) = http(p, "GET", asset_path, &[("Range", "bytes=0-15")], b"");
    assert_eq!(st, 206, "{head}");
    let local = d.archive.join("passes").join(&id).join("products/ch1.tif");
    assert_eq!(part, std::fs::read(&local).unwrap()[..16]);
    let gi = Command::new("gdalinfo")
        .arg(format!("/vsicurl/{href}"))
        .output()
        .unwrap();
    let gi_out = String::from_utf8_lossy(&gi.stdout);
    assert!(
        gi.status.success() && gi_out.contains("LAYOUT=COG") && gi_out.contains("\"EPSG\",4326"),
        "{gi_out}"
    );

    // Tiles of the visual asset: a tile over the pass, ETag/304, empty and bad tiles.
    let tj = json_of(
        p,
        &format!("/stac/collections/meteor-m2-msu-mr/items/{id}/WebMercatorQuad/tilejson.json"),
    );
    assert_eq!(tj["tilejson"], "3.0.0");
    assert!(tj["tiles"][0]
        .as_str()
        .unwrap()
        .contains("/tiles/WebMercatorQuad/{z}/{x}/{y}.png"));
    // The z6 tile containing 148°E 10°S (x 58, y 33): the pass is where the 2022 one was.
    let bb: Vec<f64> = item["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        bb[0] < 148.0 && bb[2] > 148.0 && bb[1] < -10.0 && bb[3] > -10.0,
        "{bb:?}"
    );
    // The geometry is the swath outline, not the bbox: a slanted swath misses some corners.
    assert_eq!(item["geometry"]["type"], "Polygon");
    assert!(
        item["geometry"]["coordinates"][0].as_array().unwrap().len() > 5,
        "{}",
        item["geometry"]
    );
    let inside = |x: f64, y: f64| {
        let body = serde_json::json!({
            "collections": ["meteor-m2-msu-mr"],
            "intersects": {"type": "Point", "coordinates": [x, y]},
        });
        let (st, _, b) = http(
            p,
            "POST",
            "/stac/search",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        );
        assert_eq!(st, 200);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        !v["features"].as_array().unwrap().is_empty()
    };
    let corners = [
        (bb[0] + 0.05, bb[1] + 0.05),
        (bb[0] + 0.05, bb[3] - 0.05),
        (bb[2] - 0.05, bb[1] + 0.05),
        (bb[2] - 0.05, bb[3] - 0.05),
    ];
    let hit = corners.iter().filter(|(x, y)| inside(*x, *y)).count();
    assert!(
        hit < 4,
        "every bbox corner matched: the footprint is the bbox"
    );
    let (cx, cy) = centroid(&item);
    assert!(inside(cx, cy), "the middle of the swath matches");
    let tile =
        format!("/stac/collections/meteor-m2-msu-mr/items/{id}/tiles/WebMercatorQuad/6/58/33.png");
    let (st, head, png) = http(p, "GET", &tile, &[], b"");
    assert_eq!(st, 200, "{tile} bbox {bb:?}: {head}");
    assert!(png.starts_with(b"\x89PNG"));
    let etag = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("etag: ")
                .or_else(|| l.strip_prefix("ETag: "))
        })
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(
        http(p, "GET", &tile, &[("If-None-Match", &etag)], b"").0,
        304
    );
    let far =
        format!("/stac/collections/meteor-m2-msu-mr/items/{id}/tiles/WebMercatorQuad/6/10/33.png");
    assert_eq!(http(p, "GET", &far, &[], b"").0, 204);
    // The second request came from the tile cache.
    let st: serde_json::Value = serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
    assert!(
        st["tile_cache"]["hits"].as_u64().unwrap() >= 1,
        "{}",
        st["tile_cache"]
    );
    // The same figures in /metrics, for Prometheus.
    let hits = st["tile_cache"]["hits"].as_u64().unwrap();
    let metrics = d.get("/metrics").unwrap();
    let hit_line = metrics
        .lines()
        .find_map(|l| l.strip_prefix("downlink_tile_cache_requests_total{result=\"hit\"} "))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(hit_line.parse::<u64>().unwrap() >= hits, "{metrics}");

    // Collection mosaic with a time filter (before/after): the pass's time has the tile, a range
    // before any scene has none.
    let when = item["properties"]["datetime"].as_str().unwrap().to_owned();
    let mosaic = |dt: &str| {
        http(
            p,
            "GET",
            &format!("/stac/collections/meteor-m2-msu-mr/tiles/WebMercatorQuad/6/58/33.png?datetime={dt}"),
            &[],
            b"",
        )
    };
    let (st, _, m) = mosaic(&format!("{when}/.."));
    assert_eq!(st, 200);
    assert_eq!(m, png, "the mosaic's only scene is the item");
    assert_eq!(mosaic("../2000-01-01T00:00:00Z").0, 204);
    assert_eq!(mosaic("not-a-date").0, 400);
    assert_eq!(
        http(
            p,
            "GET",
            "/stac/collections/nope/tiles/WebMercatorQuad/6/58/33.png",
            &[],
            b""
        )
        .0,
        404
    );
    // WMTS with a Time dimension listing the scene (QGIS reads this).
    let (st, _, xml) = http(
        p,
        "GET",
        "/stac/collections/meteor-m2-msu-mr/WMTSCapabilities.xml",
        &[],
        b"",
    );
    assert_eq!(st, 200);
    let xml = String::from_utf8(xml).unwrap();
    assert!(
        xml.contains("<ows:Identifier>Time</ows:Identifier>")
            || xml.contains("Time</ows:Identifier>"),
        "{xml}"
    );
    assert!(xml.contains(&when[..19]), "{xml}");
    assert!(
        xml.contains("{TileMatrix}/{TileCol}/{TileRow}.png"),
        "{xml}"
    );

    // TiTiler's repeated parameters and comma lists are the same request (and one cache entry);
    // a band that does not exist is a 400 that does not reveal server paths.
    let (st, _, a) = http(p, "GET", &format!("{tile}?bidx=1&bidx=2&bidx=3"), &[], b"");
    assert_eq!(st, 200);
    let (st, _, b) = http(p, "GET", &format!("{tile}?bidx=01,2,3"), &[], b"");
    assert_eq!(st, 200);
    assert_eq!(a, b);
    let (st, _, body) = http(p, "GET", &format!("{tile}?bidx=9"), &[], b"");
    assert_eq!(st, 400);
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("band 9 does not exist"), "{body}");
    assert!(!body.contains(&*d.archive.to_string_lossy()), "{body}");
    for bad in [
        "?bidx=0",
        "?rescale=1",
        "?rescale=a,b",
        "?assets=x&assets=y",
    ] {
        let (st, _, body) = http(p, "GET", &format!("{tile}{bad}"), &[], b"");
        assert_eq!(st, 400, "{bad}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "BadRequest", "{bad}");
    }
    let (st, _, body) = http(p, "GET", "/stac/search?limit=1&limit=2", &[], b"");
    assert_eq!(st, 400);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());

    for bad in ["6/64/0.png", "25/0/0.png", "x/1/1.png", "6/58/33.gif"] {
        let u =
            format!("/stac/collections/meteor-m2-msu-mr/items/{id}/tiles/WebMercatorQuad/{bad}");
        assert_eq!(http(p, "GET", &u, &[], b"").0, 400, "{bad}");
    }
}

#[test]
fn stac_validators_and_the_web_map_in_headless_chromium() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let web = repo.join("web");
    if !browser_ready(&web) {
        return;
    }
    // Two scenes of the same place a month apart (the second one coarser), and a real pass.
    let (d, _tle) = meteor_daemon("");
    for (file, when) in [
        ("geotiff/RGB.byte.tif", "2024-08-01T13:45:00Z"),
        ("geotiff/rgb-byte-tenth.tif", "2024-09-01T13:45:00Z"),
    ] {
        archive_add(&d, file, "landsat-imports", when);
    }
    send_meteor_pass(&d, 11);
    let id = wait_catalogued(&d);
    let base = format!("http://127.0.0.1:{}", d.http);
    let item = json_of(
        d.http,
        &format!("/stac/collections/meteor-m2-msu-mr/items/{id}"),
    );
    let (cx, cy) = centroid(&item);

    // stac-api-validator (core, features, item-search, paging) and stac-validator, offline
    // schemas from pinned PyPI packages; the venv is kept in target/ between runs.
    let out = Command::new("bash")
        .arg(repo.join("scripts/stac-validate/stac-validate.sh"))
        .arg(repo.join("target/stac-validate"))
        .arg(format!("{base}/stac"))
        .arg("landsat-imports")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("Errors: none"), "{log}");
    assert!(
        log.contains("stac-validator: ") && log.contains(" 0 failed"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "PASS {base}/stac/collections/meteor-m2-msu-mr/items/{id}"
        )),
        "{log}"
    );

    // The web map: tiles render, the time slider changes them, a click on the pass shows its
    // quality. The screenshots stay in target/test-artifacts/webmap/.
    let shots = artifacts("webmap");
    let _ = std::fs::remove_file(shots.join("webmap.png"));
    let out = Command::new("node")
        .arg(web.join("tests/webmap.mjs"))
        .arg(&base)
        .arg(&shots)
        .arg("landsat-imports")
        .arg("meteor-m2-msu-mr")
        .arg(format!("{cx},{cy}"))
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
    assert_eq!(
        f["times"],
        serde_json::json!(["2024-08-01T13:45:00Z", "2024-09-01T13:45:00Z"])
    );
    assert!(
        f["panel"].as_str().unwrap().contains(&id),
        "the click should show the pass item: {f}"
    );
    assert!(
        f["panel"].as_str().unwrap().contains("frames good 256"),
        "{f}"
    );
    let png = std::fs::read(shots.join("webmap.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
}

/// Run only by `a_failing_test_prints_the_daemon_log`, which expects it to fail.
#[test]
#[ignore = "fails on purpose: a_failing_test_prints_the_daemon_log runs it and checks its output"]
fn deliberately_failing_test_with_a_daemon() {
    let d = Daemon::start("jpss", "");
    assert_eq!(d.http, 0, "this test fails on purpose");
}

#[test]
fn a_failing_test_prints_the_daemon_log() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "deliberately_failing_test_with_a_daemon",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the deliberate failure failed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("this test fails on purpose"), "{text}");
    assert!(text.contains("---- daemon log"), "no daemon log:\n{text}");
    assert!(
        text.contains("downlink serving http=127.0.0.1:"),
        "the log is the daemon's:\n{text}"
    );
}

#[test]
fn an_https_webhook_trusts_the_ca_in_its_config_and_an_untrusted_receiver_is_counted() {
    // A TLS receiver on loopback with its own certificate, which the agency's CA file holds.
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("agency-ca.pem");
    std::fs::write(&ca_file, certified.cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let tls = std::sync::Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap(),
    );
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = paths.clone();
    std::thread::spawn(move || {
        for tcp in server.incoming().flatten() {
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let conn = rustls::ServerConnection::new(tls.clone()).unwrap();
            let mut s = rustls::StreamOwned::new(conn, tcp);
            let mut raw = Vec::new();
            let mut buf = vec![0u8; 65536];
            // A client that refuses the certificate ends the handshake: the read fails.
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).to_string();
                let Some((head, body)) = text.split_once("\r\n\r\n") else {
                    continue;
                };
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len {
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    sink.lock().unwrap().push(path);
                    let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
                    s.conn.send_close_notify();
                    let _ = s.flush();
                    break;
                }
            }
        }
    });
    let hooks = format!(
        "\n[[webhook]]\nurl = \"https://127.0.0.1:{port}/trusted\"\nevents = [\"los\"]\nca_file = \"{}\"\n\
         [[webhook]]\nurl = \"https://127.0.0.1:{port}/untrusted\"\nevents = [\"los\"]\n",
        ca_file.display()
    );
    let mut d = Daemon::start("eos", &hooks);
    let bytes = std::fs::read(data("cadu/aqua.20241206T175646.dat")).unwrap();
    d.send(&random_datagrams(&bytes, 43));
    d.wait_passes(1);
    let t0 = Instant::now();
    let status = loop {
        let st: serde_json::Value =
            serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
        if st["webhooks"]["sent"] == 1 && st["webhooks"]["failed"] == 1 {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(*paths.lock().unwrap(), ["/trusted"], "{status}");
    assert!(d.stop().success());
}
