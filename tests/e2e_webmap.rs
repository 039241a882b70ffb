//! End-to-end: the web map in headless Chromium over the real daemon (offline basemap, legends,
//! default rescales, NDVI of a red/NIR import, the pass panel drawn from the timeline JSON),
//! and the pass timeline itself: `GET /api/v1/passes/{id}/timeline` agrees with the pass
//! record's counters, and `plot.png` is a drawn plot with axes. Only 127.0.0.1 is used.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::path::Path;
use std::process::Command;

mod common;
use common::*;

#[test]
fn pass_timeline_json_matches_the_record_and_the_plot_has_axes() {
    let (d, _tle) = meteor_daemon("");
    send_meteor_pass(&d, 5);
    let rec = d.wait_passes(1).remove(0);
    let id = rec["id"].as_str().unwrap();
    assert_eq!(rec["timeline"], "timeline.json");
    let t = json_of(d.http, &format!("/api/v1/passes/{id}/timeline"));
    let dir = d.archive.join("passes").join(id);
    assert_eq!(
        t,
        serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(dir.join("timeline.json")).unwrap()
        )
        .unwrap()
    );
    assert_eq!(t["aos"], rec["aos"]);
    assert_eq!(t["los"], rec["los"]);
    assert_eq!(t["bucket_s"], 1);
    let series = |k: &str| -> Vec<u64> {
        t[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    };
    let good = series("frames_good");
    let n = good.len();
    assert!(n >= 1, "{t}");
    for k in ["frames_rejected", "rs_corrected"] {
        assert_eq!(series(k).len(), n, "{k}");
    }
    assert_eq!(t["locked"].as_array().unwrap().len(), n);
    // Every second's counts add up to the pass record's totals.
    let c = &rec["counters"];
    assert_eq!(
        good.iter().sum::<u64>(),
        c["frames"]["good"].as_u64().unwrap(),
        "{c}"
    );
    assert_eq!(
        series("rs_corrected").iter().sum::<u64>(),
        c["rs"]["corrected"].as_u64().unwrap(),
        "{c}"
    );
    assert!(good.iter().sum::<u64>() > 0);
    // The lock runs tile the timeline without overlap; gaps lie inside it.
    let lock = t["lock"].as_array().unwrap();
    let mut at = 0;
    for r in lock {
        assert_eq!(r["start_s"].as_u64().unwrap(), at, "{t}");
        at = r["end_s"].as_u64().unwrap();
    }
    assert_eq!(at as usize, n);
    for g in t["gaps"].as_array().unwrap() {
        let (a, b) = (g["start_s"].as_u64().unwrap(), g["end_s"].as_u64().unwrap());
        assert!(a < b && (b as usize) < n, "{g}");
        assert!(good[a as usize..b as usize].iter().all(|&v| v == 0), "{g}");
    }

    let png = d
        .get_bytes(&format!("/api/v1/passes/{id}/plot.png"))
        .unwrap();
    assert_eq!(png, std::fs::read(dir.join("plot.png")).unwrap());
    let img = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (900, 360));
    let shots = artifacts("plot");
    std::fs::write(shots.join("plot.png"), &png).unwrap();
    // The x axis runs across the width under the lock strip; the series and the AOS/LOS
    // lines are drawn in their colours; there is text (tick labels) left of the plots.
    let black = |y: u32| {
        (0..900)
            .filter(|&x| img.get_pixel(x, y).0 == [0, 0, 0])
            .count()
    };
    assert!((250..340).any(|y| black(y) > 700), "no x axis");
    let count = |c: [u8; 3]| img.pixels().filter(|p| p.0 == c).count();
    assert!(count([40, 160, 60]) > 500, "good frames / lock");
    assert!(count([40, 70, 160]) > 300, "AOS/LOS lines");
    let text = (0..60u32)
        .flat_map(|x| (0..360u32).map(move |y| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&v| v < 160))
        .count();
    assert!(text > 150, "no tick labels ({text} dark pixels)");
    // A pass id that is not a plain name is refused; an unknown one is 404.
    assert_eq!(
        http(d.http, "GET", "/api/v1/passes/..%2Fetc/timeline", &[], b"").0,
        400
    );
    assert_eq!(
        http(d.http, "GET", "/api/v1/passes/nope/timeline", &[], b"").0,
        404
    );
}

#[test]
fn web_map_basemap_legend_ndvi_and_pass_timeline_in_headless_chromium() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let web = repo.join("web");
    if !browser_ready(&web) {
        return;
    }
    // Two scenes of the same place a month apart, a red/NIR uint16 pair (Sentinel-2 over Muri,
    // two years), and a real pass.
    let (d, _tle) = meteor_daemon("");
    for (file, collection, when) in [
        (
            "geotiff/RGB.byte.tif",
            "landsat-imports",
            "2024-08-01T13:45:00Z",
        ),
        (
            "geotiff/rgb-byte-tenth.tif",
            "landsat-imports",
            "2024-09-01T13:45:00Z",
        ),
        (
            "change/muri-ag/S2_L2A_T32TMT_20200807_red_nir.tif",
            "muri-ag",
            "2020-08-07T10:25:59Z",
        ),
        (
            "change/muri-ag/S2_L2A_T32TMT_20210812_red_nir.tif",
            "muri-ag",
            "2021-08-12T10:25:59Z",
        ),
    ] {
        archive_add(&d, file, collection, when);
    }
    send_meteor_pass(&d, 11);
    let id = wait_catalogued(&d);
    let base = format!("http://127.0.0.1:{}", d.http);
    let item = json_of(
        d.http,
        &format!("/stac/collections/meteor-m2-msu-mr/items/{id}"),
    );
    let (cx, cy) = centroid(&item);

    let shots = artifacts("webmap");
    for f in [
        "webmap.png",
        "webmap-basemap.png",
        "webmap-ndvi-rednir.png",
        "webmap-uint16.png",
    ] {
        let _ = std::fs::remove_file(shots.join(f));
    }
    let out = Command::new("node")
        .arg(web.join("tests/webmap.mjs"))
        .arg(&base)
        .arg(&shots)
        .arg("landsat-imports")
        .arg("meteor-m2-msu-mr")
        .arg(format!("{cx},{cy}"))
        .arg("muri-ag")
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
    eprintln!("{f:#}");
    // The basemap: every layer present in both maps and drawn (rendered features).
    for layer in [
        "basemap-land",
        "basemap-coastline",
        "basemap-borders",
        "basemap-places",
        "basemap-countries",
    ] {
        assert!(
            f["basemap"][layer].as_u64().unwrap() > 0,
            "{layer} not drawn: {f}"
        );
    }
    // Legends: one per layer shown, the NDVI ones with the RdYlGn ramp.
    assert_eq!(f["legend_ndvi"]["colormap"], "rdylgn", "{f}");
    assert_eq!(f["legend_rednir"]["colormap"], "rdylgn", "{f}");
    assert_eq!(f["legend_uint16"]["colormap"], "gray", "{f}");
    // A uint16 band is not white: most of the scene is in the grey ramp, not saturated.
    let white = f["uint16"]["white_fraction"].as_f64().unwrap();
    assert!(white < 0.2, "uint16 layer renders white: {f}");
    assert!(f["uint16"]["scene_pixels"].as_u64().unwrap() > 1000, "{f}");
    // The red/NIR import has an NDVI layer that renders, mostly green (vegetation).
    assert_eq!(f["rednir_layer"]["kind"], "ndvi-browser", "{f}");
    assert!(f["rednir_ndvi"]["green"].as_u64().unwrap() > 1000, "{f}");
    // The panel: the image time (the item's), and the pass timeline drawn from its JSON.
    let panel = f["panel"].as_str().unwrap();
    assert!(panel.contains(&id), "{f}");
    assert!(panel.contains("frames good 256"), "{f}");
    let dt = item["properties"]["start_datetime"]
        .as_str()
        .or(item["properties"]["datetime"].as_str())
        .unwrap();
    assert!(
        panel.contains(&format!("image time {}", &dt[..19].replace('T', " "))),
        "{dt}: {f}"
    );
    assert!(f["timeline"]["seconds"].as_u64().unwrap() >= 1, "{f}");
    assert!(f["timeline"]["polylines"].as_u64().unwrap() >= 3, "{f}");
    // The swipe is back in the middle after a collection change; a bare /map/ opens on the
    // collection with the latest data.
    assert_eq!(f["swipe_after_change"], 0.5, "{f}");
    let cols = json_of(d.http, "/stac/collections");
    let latest = |c: &serde_json::Value| {
        let i = &c["extent"]["temporal"]["interval"][0];
        i[1].as_str().or(i[0].as_str()).unwrap_or("").to_owned()
    };
    let newest = cols["collections"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|c| latest(c))
        .unwrap();
    assert_eq!(f["default_collection"], newest["id"], "{f}");
    for shot in [
        "webmap.png",
        "webmap-basemap.png",
        "webmap-ndvi-rednir.png",
        "webmap-uint16.png",
    ] {
        let png = std::fs::read(shots.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{shot}");
    }
}
