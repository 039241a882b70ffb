//! End-to-end: WMTS and WMS 1.3.0 of the real daemon over two Sentinel-2 scenes of Muri
//! (`../shared/data/change/muri-ag`, 2020-08-07 and 2021-08-12) imported with `downlink archive
//! add`. Between the dates a clearing opened in the forest (NDVI 0.877 → 0.501 at its centre,
//! the data's README), so the NDVI layer's red channel there tells which date was drawn:
//! about 16 (dark green) for 2020, about 135 (light green) for 2021. Then OWSLib, GDAL's WMS
//! driver and QGIS (PyQGIS, headless) draw the same layers (tests/clients/wms_clients.py).
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

const OLD: &str = "2020-08-07T10:25:59Z";
const NEW: &str = "2021-08-12T10:25:59Z";
/// The centre of the larger clearing (README: 8.35338–8.35604 E, 47.26990–47.27161 N).
const LON: f64 = 8.35471;
const LAT: f64 = 47.27075;
const R: f64 = 6_378_137.0;

fn merc(lon: f64, lat: f64) -> (f64, f64) {
    (
        lon.to_radians() * R,
        (std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0)
            .tan()
            .ln()
            * R,
    )
}

/// A daemon with both Muri scenes in collection `muri`.
fn muri_daemon() -> Daemon {
    let d = Daemon::start("eos", "");
    for (file, when) in [
        ("change/muri-ag/S2_L2A_T32TMT_20200807_red_nir.tif", OLD),
        ("change/muri-ag/S2_L2A_T32TMT_20210812_red_nir.tif", NEW),
    ] {
        archive_add(&d, file, "muri", when);
    }
    d
}

/// The median red value of the opaque pixels in the 5×5 around (col, row) of a PNG.
fn red_at(png: &[u8], col: u32, row: u32) -> u8 {
    let img = image::load_from_memory(png).unwrap().into_rgba8();
    let mut v: Vec<u8> = (row - 2..=row + 2)
        .flat_map(|r| (col - 2..=col + 2).map(move |c| (c, r)))
        .map(|(c, r)| *img.get_pixel(c, r))
        .filter(|p| p[3] > 0)
        .map(|p| p[0])
        .collect();
    assert!(!v.is_empty(), "no opaque pixel at the clearing");
    v.sort_unstable();
    v[v.len() / 2]
}

/// Which date the NDVI layer drew at the clearing.
fn date_of(red: u8) -> &'static str {
    if red < 70 {
        "old"
    } else {
        "new"
    }
}

fn get_ok(d: &Daemon, path: &str) -> (String, Vec<u8>) {
    let (st, head, body) = http(d.http, "GET", path, &[], b"");
    assert_eq!(
        st,
        200,
        "{path}: {head}\n{}",
        String::from_utf8_lossy(&body)
    );
    (head.to_ascii_lowercase(), body)
}

#[test]
fn wmts_layers_zooms_and_time_default() {
    let d = muri_daemon();
    let (_, xml) = get_ok(&d, "/stac/collections/muri/WMTSCapabilities.xml");
    let xml = String::from_utf8(xml).unwrap();
    // One layer per render, the visual one under the collection's own name.
    for id in ["muri", "muri:red", "muri:nir", "muri:ndvi"] {
        assert!(
            xml.contains(&format!("<ows:Identifier>{id}</ows:Identifier>")),
            "{id}: {xml}"
        );
    }
    // 10 m pixels at 47° N are 14.7 m in Web Mercator: zoom 14 (9.55 m) shows each of them.
    assert!(xml.contains("<TileMatrix>14</TileMatrix>"), "{xml}");
    assert!(!xml.contains("<TileMatrix>15</TileMatrix>"), "{xml}");
    assert!(xml.contains(&format!("<Default>{NEW}</Default>")), "{xml}");
    assert!(xml.contains(&format!("<Value>{OLD}</Value>")), "{xml}");
    // Bands are rescaled (2–98 % of the data); NDVI is a normalized difference with RdYlGn.
    assert!(xml.contains("bidx=1&amp;rescale="), "{xml}");
    assert!(
        xml.contains("expression=%28b2-b1%29%2F%28b2%2Bb1%29"),
        "{xml}"
    );
    assert!(xml.contains("<ows:Value>KVP</ows:Value>"), "{xml}");

    // The z14 tile over the clearing, at each date, by datetime, by `{Time}` left
    // unsubstituted (as QGIS sends it) and in KVP without TIME (as OWSLib does).
    let n = f64::from(1u32 << 14);
    let (x, y) = merc(LON, LAT);
    let gx = (x / (2.0 * std::f64::consts::PI * R) + 0.5) * n * 256.0;
    let gy = (0.5 - y / (2.0 * std::f64::consts::PI * R)) * n * 256.0;
    let (tx, ty) = ((gx / 256.0) as u32, (gy / 256.0) as u32);
    let (px, py) = ((gx as u32) % 256, (gy as u32) % 256);
    let ndvi =
        "assets=red%2Cnir&rescale=-1%2C1&colormap_name=rdylgn&expression=%28b2-b1%29%2F%28b2%2Bb1%29";
    let tile = |dt: &str| {
        get_ok(
            &d,
            &format!("/stac/collections/muri/tiles/WebMercatorQuad/14/{tx}/{ty}.png?{ndvi}{dt}"),
        )
        .1
    };
    let old = tile(&format!("&datetime={OLD}"));
    let new = tile(&format!("&datetime={NEW}"));
    assert_eq!(date_of(red_at(&old, px, py)), "old");
    assert_eq!(date_of(red_at(&new, px, py)), "new");
    assert_eq!(
        tile("&datetime=%7BTime%7D"),
        new,
        "{{Time}} is the default date"
    );
    assert_eq!(
        tile("&datetime="),
        new,
        "an empty datetime is the default date"
    );
    let kvp = |time: &str| {
        get_ok(
            &d,
            &format!(
                "/stac/collections/muri/tiles?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0\
                 &LAYER=muri:ndvi&STYLE=default&TILEMATRIXSET=WebMercatorQuad&TILEMATRIX=14\
                 &TILEROW={ty}&TILECOL={tx}&FORMAT=image/png{time}"
            ),
        )
        .1
    };
    assert_eq!(kvp(""), new);
    assert_eq!(kvp(&format!("&TIME={OLD}")), old);
    let (st, _, _) = http(
        d.http,
        "GET",
        "/stac/collections/muri/tiles?SERVICE=WMTS&REQUEST=GetTile&LAYER=nope&TILEMATRIXSET=WebMercatorQuad&TILEMATRIX=1&TILEROW=0&TILECOL=0&FORMAT=image/png",
        &[],
        b"",
    );
    assert_eq!(st, 404);
}

#[test]
fn wms_capabilities_getmap_in_each_crs_and_counted_exceptions() {
    let d = muri_daemon();
    let (head, caps) = get_ok(&d, "/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0");
    assert!(head.contains("content-type: text/xml"), "{head}");
    let caps = String::from_utf8(caps).unwrap();
    for want in [
        "<WMS_Capabilities version=\"1.3.0\"",
        "<Name>muri</Name>",
        "<Name>muri:red</Name>",
        "<Name>muri:nir</Name>",
        "<Name>muri:ndvi</Name>",
        "<CRS>EPSG:3857</CRS>",
        "<CRS>EPSG:4326</CRS>",
        "<CRS>CRS:84</CRS>",
        "<EX_GeographicBoundingBox>",
        "<westBoundLongitude>8.329",
        "<BoundingBox CRS=\"EPSG:4326\" minx=\"47.24",
        &format!("<Dimension name=\"time\" units=\"ISO8601\" default=\"{NEW}\""),
        &format!(">{OLD},{NEW}</Dimension>"),
        "<Format>image/jpeg</Format>",
    ] {
        assert!(caps.contains(want), "{want}: {caps}");
    }

    // A 320×200 view around the clearing: its centre is pixel (160, 100).
    let (w0, s0, e0, n0) = (LON - 0.008, LAT - 0.005, LON + 0.008, LAT + 0.005);
    let map = |crs: &str, bbox: String, rest: &str| {
        format!(
            "/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS=muri:ndvi&STYLES=\
             &CRS={crs}&BBOX={bbox}&WIDTH=320&HEIGHT=200&FORMAT=image/png&TRANSPARENT=TRUE{rest}"
        )
    };
    let lat_lon = format!("{s0},{w0},{n0},{e0}");
    let lon_lat = format!("{w0},{s0},{e0},{n0}");
    let (mx0, my0) = merc(w0, s0);
    let (mx1, my1) = merc(e0, n0);
    let metres = format!("{mx0},{my0},{mx1},{my1}");
    for (crs, bbox) in [
        ("EPSG:4326", &lat_lon),
        ("CRS:84", &lon_lat),
        ("EPSG:3857", &metres),
    ] {
        for (time, want) in [
            (format!("&TIME={OLD}"), "old"),
            (format!("&TIME={NEW}"), "new"),
            (String::new(), "new"),
            // A day, a range, and an instant that snaps to the nearest listed datetime.
            ("&TIME=2020-08-07".to_owned(), "old"),
            (
                "&TIME=2020-01-01T00:00:00Z/2020-12-31T00:00:00Z".to_owned(),
                "old",
            ),
            ("&TIME=2021-08-12T00:00:00Z".to_owned(), "new"),
        ] {
            let (head, png) = get_ok(&d, &map(crs, bbox.clone(), &time));
            assert!(head.contains("content-type: image/png"), "{head}");
            assert_eq!(date_of(red_at(&png, 160, 100)), want, "{crs} {time}");
        }
    }
    // The same place, the same picture, whichever CRS says it in degrees.
    assert_eq!(
        get_ok(&d, &map("EPSG:4326", lat_lon.clone(), "")).1,
        get_ok(&d, &map("CRS:84", lon_lat.clone(), "")).1
    );
    // EPSG:4326 read with longitude first would be a place in the sea off Somalia: empty.
    let (_, png) = get_ok(&d, &map("EPSG:4326", lon_lat.clone(), ""));
    let img = image::load_from_memory(&png).unwrap().into_rgba8();
    assert!(img.pixels().all(|p| p[3] == 0));
    // Opaque on the background colour; JPEG.
    let (_, png) = get_ok(
        &d,
        &map("EPSG:4326", lat_lon.clone(), "&BGCOLOR=0x0000FF")
            .replace("TRANSPARENT=TRUE", "TRANSPARENT=FALSE"),
    );
    let img = image::load_from_memory(&png).unwrap().into_rgba8();
    assert!(img.pixels().all(|p| p[3] == 255));
    let (head, jpg) = get_ok(
        &d,
        &map("EPSG:3857", metres.clone(), "").replace("image/png", "image/jpeg"),
    );
    assert!(head.contains("content-type: image/jpeg"), "{head}");
    assert_eq!(&jpg[..2], &[0xFF, 0xD8]);
    assert_eq!(date_of(red_at(&jpg, 160, 100)), "new");

    // Bad requests are OGC service exceptions, counted by code.
    let bad = [
        (map("EPSG:32632", metres.clone(), ""), "InvalidCRS"),
        (
            map("EPSG:3857", metres.clone(), "").replace("muri:ndvi", "muri:nope"),
            "LayerNotDefined",
        ),
        (
            map("EPSG:3857", metres.clone(), "").replace("muri:ndvi", "nope"),
            "LayerNotDefined",
        ),
        (
            map("EPSG:3857", metres.clone(), "").replace("image/png", "image/gif"),
            "InvalidFormat",
        ),
        (
            map("EPSG:3857", metres.clone(), "").replace("STYLES=", "STYLES=fancy"),
            "StyleNotDefined",
        ),
        (
            map("EPSG:3857", metres.clone(), "&TIME=yesterday"),
            "InvalidDimensionValue",
        ),
        (
            map("EPSG:3857", metres.clone(), "").replace("WIDTH=320", "WIDTH=9999"),
            "InvalidParameterValue",
        ),
        (
            "/wms?SERVICE=WMS&REQUEST=GetFeatureInfo".to_owned(),
            "OperationNotSupported",
        ),
        ("/wms?SERVICE=WMS".to_owned(), "MissingParameterValue"),
    ];
    for (path, code) in &bad {
        let (st, head, body) = http(d.http, "GET", path, &[], b"");
        let body = String::from_utf8_lossy(&body);
        assert_eq!(st, 400, "{path}: {body}");
        assert!(head.to_ascii_lowercase().contains("text/xml"), "{head}");
        assert!(body.contains("<ServiceExceptionReport"), "{body}");
        assert!(
            body.contains(&format!("<ServiceException code=\"{code}\">")),
            "{path}: {body}"
        );
    }
    let (_, metrics) = get_ok(&d, "/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    for (code, n) in [
        ("InvalidCRS", 1),
        ("LayerNotDefined", 2),
        ("InvalidFormat", 1),
        ("StyleNotDefined", 1),
        ("InvalidDimensionValue", 1),
        ("InvalidParameterValue", 1),
        ("OperationNotSupported", 1),
        ("MissingParameterValue", 1),
        ("NoApplicableCode", 0),
    ] {
        let line = format!("downlink_wms_exceptions_total{{code=\"{code}\"}} {n}\n");
        assert!(metrics.contains(&line), "{line}{metrics}");
    }
    let status = json_of(d.http, "/api/v1/status");
    assert_eq!(status["wms_exceptions"]["LayerNotDefined"], 2, "{status}");
}

#[test]
fn owslib_gdal_and_qgis_draw_the_dates_they_ask_for() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // QGIS 3.22 and GDAL's Python bindings come from Debian (TEST_APT_PKGS in the Makefile);
    // OWSLib from PyPI, pinned, in a venv in target/ that sees the system packages.
    let python = Path::new("/usr/bin/python3");
    let have = Command::new(python)
        .args(["-c", "import qgis.core, osgeo.gdal"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3-qgis and python3-gdal are missing: make test-deps"
        );
        eprintln!("SKIPPED: python3-qgis / python3-gdal missing (make test-deps)");
        return;
    }
    let venv = repo.join("target/wms-clients-venv");
    let reqs = repo.join("tests/clients/requirements-wms.txt");
    let stamp = venv.join("requirements-wms.txt");
    let wanted = std::fs::read(&reqs).unwrap();
    if std::fs::read(&stamp).ok().as_deref() != Some(&wanted[..]) {
        let _ = std::fs::remove_dir_all(&venv);
        let st = Command::new(python)
            .args(["-m", "venv", "--system-site-packages"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(st.success(), "python3 -m venv failed");
        let st = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", "-r"])
            .arg(&reqs)
            .status()
            .unwrap();
        assert!(st.success(), "pip install -r {} failed", reqs.display());
        std::fs::write(&stamp, &wanted).unwrap();
    }

    let d = muri_daemon();
    let out_dir = repo.join("target/wms-clients-out");
    let out = Command::new(venv.join("bin/python"))
        .arg("-W")
        .arg("ignore")
        .arg(repo.join("tests/clients/wms_clients.py"))
        .arg(format!("http://127.0.0.1:{}", d.http))
        .args(["muri", OLD, NEW])
        .arg(&out_dir)
        .env("QT_QPA_PLATFORM", "offscreen")
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    eprintln!("{log}");
    assert!(
        out.status.success() && log.contains("all clients passed"),
        "{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every client checked both dates.
    for client in [
        "OWSLib WMTS GetTile",
        "OWSLib WMS GetMap EPSG:4326",
        "OWSLib WMS GetMap EPSG:3857",
        "GDAL WMS driver (WMS: URL",
        "GDAL WMS driver (XML",
        "QGIS XYZ",
        "QGIS WMTS",
        "QGIS WMS-T, temporal controller",
    ] {
        for date in ["the old date", "the new date"] {
            assert!(
                log.lines()
                    .any(|l| l.starts_with("ok ") && l.contains(client) && l.contains(date)),
                "{client} / {date}:\n{log}"
            );
        }
    }
}
