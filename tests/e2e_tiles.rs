//! End-to-end: map tiles rendered from the real Meteor-M2 products (`downlink image` output):
//! an EPSG:4326 COG through the general path agrees with GDAL's own web-optimized copy; NDVI
//! colormap and RGBA alpha.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use gdal::{Dataset, DriverManager};
use raster::tiles::render::*;
use raster::tiles::tms::{self, TileId};

/// The Meteor-M2 products of the shared capture, made once by the real binary.
fn sample(name: &str) -> String {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("tiles-sample-{}", std::process::id()));
        let mut args: Vec<String> = [
            "image",
            "--profile",
            "meteor-lrpt",
            "--format",
            "frames",
            "--tle",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(data("tle/meteor-m2_40069_2022-12-20.tle"));
        args.extend(["--date".into(), "2022-12-20".into(), "--out".into()]);
        args.push(dir.display().to_string());
        for s in ["30", "40", "50"] {
            args.push(data(&format!("vcdu/meteor-m2/2022_12_20_20_25_{s}.vcdu")));
        }
        let out = Command::new(env!("CARGO_BIN_EXE_downlink"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    });
    let p = dir.join(name);
    assert!(p.is_file(), "{} missing", p.display());
    p.display().to_string()
}

fn data(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    assert!(p.exists(), "test data missing: {}", p.display());
    p.display().to_string()
}

#[test]
fn epsg4326_general_vs_web_cog() {
    // ch1.tif (EPSG:4326) through the general path vs a web-optimized copy made by GDAL.
    let p = sample("ch1.tif");
    let web = format!(
        "{}/ch1_web_test_{}.tif",
        env!("CARGO_TARGET_TMPDIR"),
        std::process::id()
    );
    let src_ds = Dataset::open(&p).unwrap();
    let cog = DriverManager::get_driver_by_name("COG").unwrap();
    let o: gdal::raster::RasterCreationOptions = [
        "TILING_SCHEME=GoogleMapsCompatible",
        "COMPRESS=DEFLATE",
        "RESAMPLING=NEAREST",
    ]
    .into_iter()
    .collect();
    src_ds.create_copy(&cog, &web, &o).unwrap();
    let a = TileSource::open(&p).unwrap();
    let b = TileSource::open(&web).unwrap();
    assert_eq!(a.info().web_max_zoom, None);
    assert_eq!(b.info().web_max_zoom, Some(7));
    assert_eq!(a.info().zoom_range().unwrap().1, 7);
    let opts = RenderOptions::default();
    // Tile containing (148, -11) at z7.
    let r = tms::tiles_for_bbox([148.0, -11.0, 148.0, -11.0], 7).unwrap()[0];
    let t = TileId::new(7, r.min_x.into(), r.min_y.into()).unwrap();
    let (ta, tb) = (a.render(&t, &opts).unwrap(), b.render(&t, &opts).unwrap());
    let (Tile::Rgba(va), Tile::Rgba(vb)) = (&ta, &tb) else {
        panic!()
    };
    let mut same = 0;
    let mut n = 0;
    for (pa, pb) in va.chunks_exact(4).zip(vb.chunks_exact(4)) {
        if pa[3] == 255 && pb[3] == 255 {
            n += 1;
            if pa == pb {
                same += 1;
            }
        }
    }
    // Both are nearest resamplings of the same grid: almost all pixels agree.
    assert!(n > 10000, "valid {n}");
    eprintln!("same {same}/{n}");
    assert!(same as f64 / n as f64 > 0.99, "{same}/{n}");
    // Far away: empty; source nodata (0) → alpha 0 somewhere in an edge tile.
    assert_eq!(
        a.render(&TileId::new(7, 0, 0).unwrap(), &opts).unwrap(),
        Tile::Empty
    );
    std::fs::remove_file(&web).ok();
}

#[test]
fn ndvi_colormap_and_rgba_alpha() {
    let p = sample("ndvi.tif");
    let s = TileSource::open(&p).unwrap();
    let t = TileId::new(6, 58, 33).unwrap();
    let opts = RenderOptions {
        colormap: Some(Colormap::RdYlGn),
        resampling: Resampling::Bilinear,
        ..Default::default()
    };
    let Tile::Rgba(v) = s.render(&t, &opts).unwrap() else {
        panic!("empty")
    };
    let table = Colormap::RdYlGn.table();
    let (mut tr, mut op) = (0, 0);
    for p in v.chunks_exact(4) {
        if p[3] == 0 {
            tr += 1
        } else {
            op += 1;
            assert!(table.iter().any(|c| c[..] == p[..3]));
        }
    }
    assert!(tr > 0 && op > 0, "{tr} {op}");
    assert_eq!(table[0], [0xa5, 0x00, 0x26]);
    assert_eq!(table[255], [0x00, 0x68, 0x37]);
    let c = sample("composite.tif");
    let s = TileSource::open(&c).unwrap();
    assert_eq!(s.info().alpha_band, Some(4));
    let Tile::Rgba(v) = s.render(&t, &RenderOptions::default()).unwrap() else {
        panic!()
    };
    assert!(v.chunks_exact(4).any(|p| p[3] == 0) && v.chunks_exact(4).any(|p| p[3] == 255));
}
