//! End-to-end: the roles of `downlink serve`. A station (inputs and HTTP) and an API node (HTTP
//! and no inputs) share one archive; what the station's archive gains is served by the API
//! node without a restart, and both draw the same tile bytes.
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

/// An API node: the station's archive, HTTP on a port of its own, no inputs.
fn api_node(archive: &std::path::Path) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("downlink.toml");
    std::fs::write(
        &config,
        format!(
            "[archive]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            archive.display()
        ),
    )
    .unwrap();
    Daemon::launch(serve_cmd(&config), dir, archive.to_owned())
}

/// The z12 tile (x, y) over a longitude/latitude, Web Mercator.
fn tile_at(lon: f64, lat: f64, z: u32) -> (u32, u32) {
    let n = f64::from(1u32 << z);
    let x = (lon + 180.0) / 360.0 * n;
    let lat = lat.to_radians();
    let y = (1.0 - (lat.tan() + 1.0 / lat.cos()).ln() / std::f64::consts::PI) / 2.0 * n;
    (x as u32, y as u32)
}

#[test]
fn an_api_node_serves_what_the_station_archives_without_restart() {
    let station = Daemon::start("eos", "");
    let api = api_node(&station.archive);

    // validate names the role; the API node has no inputs.
    let v = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(["validate", "--config"])
        .arg(&api.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        v.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        text.contains("role     API node (HTTP, no inputs)"),
        "{text}"
    );
    let sv = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(["validate", "--config"])
        .arg(&station.config)
        .output()
        .unwrap();
    let st = String::from_utf8_lossy(&sv.stdout);
    assert!(
        st.contains("role     station and API (1 input, HTTP)"),
        "{st}"
    );
    let status = json_of(api.http, "/api/v1/status");
    assert_eq!(status["inputs"], serde_json::json!([]), "{status}");
    assert_eq!(
        json_of(station.http, "/api/v1/status")["inputs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Nothing yet, on either node.
    let search = "/stac/search?collections=muri";
    assert_eq!(json_of(api.http, search)["features"], serde_json::json!([]));

    // The station's archive gains an item; the API node serves it without a restart.
    let item = archive_add(
        &station,
        "change/muri-ag/S2_L2A_T32TMT_20210812_red_nir.tif",
        "muri",
        "2021-08-12T10:25:59Z",
    );
    let id = item["id"].as_str().unwrap().to_owned();
    let t0 = Instant::now();
    let features = loop {
        let f = json_of(api.http, search)["features"].clone();
        if f.as_array().is_some_and(|a| !a.is_empty()) {
            break f;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the API node does not list {id}:\n{}",
            api.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(features[0]["id"], id.as_str());
    assert_eq!(
        json_of(station.http, search)["features"][0]["id"],
        id.as_str()
    );

    // The same tile, byte for byte, from both nodes.
    let (lon, lat) = centroid(&features[0]);
    let (x, y) = tile_at(lon, lat, 12);
    let path = format!(
        "/stac/collections/muri/items/{id}/tiles/WebMercatorQuad/12/{x}/{y}.png?assets=visual"
    );
    let a = api
        .get_bytes(&path)
        .unwrap_or_else(|| panic!("{path} from the API node"));
    let s = station
        .get_bytes(&path)
        .unwrap_or_else(|| panic!("{path} from the station"));
    assert!(a.len() > 1000, "{} bytes", a.len());
    assert_eq!(a, s, "the nodes drew different bytes");
}
