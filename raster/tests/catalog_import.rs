//! Import of the shared GeoTIFFs: bbox vs gdalinfo, COG validation, catalog round trip.
//! (The pass Item of real Meteor products is tested end to end in tests/e2e_stac.rs.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use archive::catalog::{Catalog, SearchParams, SqliteCatalog};
use chrono::{TimeZone, Utc};
use raster::catalog::item::empty_extent_collection;
use raster::catalog::raster::{import_raster, inspect, validate_cog};
use raster::Error;

/// Shared data root (single constant; the lead may change it).
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");

fn geotiff(name: &str) -> PathBuf {
    Path::new(DATA).join("geotiff").join(name)
}

/// gdalinfo -json wgs84Extent corners.
fn gdalinfo_corners(p: &Path) -> Vec<[f64; 2]> {
    let out = Command::new("gdalinfo")
        .arg("-json")
        .arg(p)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["wgs84Extent"]["coordinates"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| [c[0].as_f64().unwrap(), c[1].as_f64().unwrap()])
        .collect()
}

fn setup() -> (tempfile::TempDir, SqliteCatalog) {
    let dir = tempfile::tempdir().unwrap();
    let cat = SqliteCatalog::open(dir.path().join("catalog.sqlite")).unwrap();
    cat.upsert_collection(&empty_extent_collection("imports", "imported rasters").unwrap())
        .unwrap();
    (dir, cat)
}

fn check_against_gdalinfo(src: &Path, tol: f64) -> raster::catalog::raster::RasterInfo {
    let info = inspect(src).unwrap();
    let corners = gdalinfo_corners(src);
    let [w, s, e, n] = info.bbox;
    let cw = corners.iter().map(|c| c[0]).fold(f64::INFINITY, f64::min);
    let ce = corners
        .iter()
        .map(|c| c[0])
        .fold(f64::NEG_INFINITY, f64::max);
    let cs = corners.iter().map(|c| c[1]).fold(f64::INFINITY, f64::min);
    let cn = corners
        .iter()
        .map(|c| c[1])
        .fold(f64::NEG_INFINITY, f64::max);
    println!(
        "{}: bbox {:?} gdalinfo corners bbox {:?}",
        src.display(),
        info.bbox,
        [cw, cs, ce, cn]
    );
    // Our bbox samples edges too, so it contains gdalinfo's corner box and is close to it.
    for (ours, theirs) in [(w, cw), (s, cs), (e, ce), (n, cn)] {
        assert!((ours - theirs).abs() <= tol, "{ours} vs {theirs}");
    }
    assert!(w <= cw + 1e-7 && s <= cs + 1e-7 && e >= ce - 1e-7 && n >= cn - 1e-7);
    // Each gdalinfo corner is a vertex of our footprint ring.
    let ring = &info.footprint[0];
    for c in &corners {
        assert!(
            ring.iter()
                .any(|p| (p[0] - c[0]).abs() < 1e-6 && (p[1] - c[1]).abs() < 1e-6),
            "corner {c:?} missing"
        );
    }
    info
}

#[test]
fn bboxes_match_gdalinfo() {
    let i = check_against_gdalinfo(&geotiff("RGB.byte.tif"), 0.02);
    assert_eq!(i.proj_code.as_deref(), Some("EPSG:32618"));
    let i = check_against_gdalinfo(&geotiff("shade.tif"), 1e-6);
    assert_eq!(i.proj_code.as_deref(), Some("EPSG:3857"));
    let i = check_against_gdalinfo(&geotiff("world.byte.tif"), 1e-9);
    assert_eq!(i.bbox, [-180.0, -75.0, 180.0, 75.0]);
    assert_eq!(i.proj_shape(), [1200, 2880]);
    assert_eq!(i.proj_transform(), [0.125, 0.0, -180.0, 0.0, -0.125, 75.0]);
    let i = check_against_gdalinfo(&geotiff("byte.tif"), 0.001);
    assert_eq!(i.proj_code.as_deref(), Some("EPSG:26711"));
}

#[test]
fn rotated_without_crs_is_refused_and_with_crs_footprint_is_rotated() {
    let src = geotiff("rotated.tif");
    assert!(matches!(inspect(&src), Err(Error::NotGeoreferenced(_))));
    // Same rotated geotransform, scaled to metres in UTM 18N so it lands on Earth.
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("rotated_utm.tif");
    let st = Command::new("gdal_translate")
        .args(["-q", "-a_srs", "EPSG:32618"])
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success());
    // Move it into the UTM zone: edit the geotransform origin.
    let py = format!(
        "from osgeo import gdal\nds=gdal.Open('{}',1)\ngt=ds.GetGeoTransform()\nds.SetGeoTransform((500000+gt[0]*100,gt[1]*100,gt[2]*100,4500000+gt[3]*100,gt[4]*100,gt[5]*100))\nds=None\n",
        dst.display()
    );
    assert!(Command::new("/usr/bin/python3")
        .args(["-c", &py])
        .status()
        .unwrap()
        .success());
    let info = check_against_gdalinfo(&dst, 0.01);
    let ring = &info.footprint[0];
    // 4 corners of a rotated rectangle: no two corners share a longitude.
    let corners = gdalinfo_corners(&dst);
    let lons: Vec<f64> = corners.iter().take(4).map(|c| c[0]).collect();
    for a in 0..4 {
        for b in (a + 1)..4 {
            assert!((lons[a] - lons[b]).abs() > 1e-3, "not rotated: {lons:?}");
        }
    }
    assert_eq!(ring.len(), 33); // 4 edges x 8 samples + closing vertex
    println!("rotated footprint corners {corners:?}");
}

#[test]
fn import_shared_rasters_writes_valid_cogs_and_items() {
    let (dir, cat) = setup();
    let root = dir.path().join("archive");
    let t = Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap();
    for name in ["RGB.byte.tif", "shade.tif", "world.byte.tif", "byte.tif"] {
        let item = import_raster(&cat, &root, &geotiff(name), "imports", t).unwrap();
        // One single-band analytic asset per band: `data` for one band, else by colour.
        let key = if item.assets.contains_key("data") {
            "data"
        } else {
            "red"
        };
        let data = root.join(&item.assets[key].href);
        let visual = root.join(&item.assets["visual"].href);
        validate_cog(&data).unwrap();
        validate_cog(&visual).unwrap();
        assert!(data.starts_with(root.join("collections/imports/2024/05/06")));
        let vi = inspect(&visual).unwrap();
        assert_eq!(vi.proj_code.as_deref(), Some("EPSG:3857"));
        assert_eq!(vi.band_types, vec!["Byte"; 3]);
        let di = inspect(&data).unwrap();
        assert_eq!(di.proj_code, inspect(&geotiff(name)).unwrap().proj_code);
        println!(
            "{name}: analytic {} B, visual {} B, bbox {:?}",
            std::fs::metadata(&data).unwrap().len(),
            std::fs::metadata(&visual).unwrap().len(),
            item.bbox
        );
        let back = cat.item("imports", &item.id).unwrap().unwrap();
        assert_eq!(back, item);
        std::fs::write(
            dir.path().join(format!("{}.json", item.id)),
            serde_json::to_string_pretty(&item).unwrap(),
        )
        .unwrap();
    }
    // No temp files left; no .aux.xml written next to the shared sources.
    let leftovers: Vec<_> = walk(&root)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(!geotiff("RGB.byte.tif.aux.xml").exists());
    let page = cat
        .search(&SearchParams {
            bbox: Some([-78.0, 23.0, -76.0, 26.0]),
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<_> = page.items.iter().map(|i| i.id.as_str()).collect();
    assert!(
        ids.contains(&"imports-20240506T070809Z-RGB.byte")
            && ids.contains(&"imports-20240506T070809Z-world.byte"),
        "{ids:?}"
    );
    assert!(!ids.contains(&"imports-20240506T070809Z-shade"));
    if let Ok(dst) = std::env::var("CATALOG_ITEMS_OUT") {
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                std::fs::copy(&p, Path::new(&dst).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let q = e.path();
            if q.is_dir() {
                out.extend(walk(&q));
            } else {
                out.push(q);
            }
        }
    }
    out
}

/// A pass across the antimeridian is gridded continuously (170°E … 190°E). Its web-optimized
/// visual COG must hold both sides of the line at the source's resolution — GDAL alone makes an
/// empty, whole-world, coarse one.
#[test]
fn a_raster_across_the_antimeridian_gets_a_visual_cog_with_both_sides() {
    use gdal::Dataset;
    use raster::catalog::raster::write_visual_cog;

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("across.tif");
    common::across_antimeridian_tif(&src, 3);
    let dst = dir.path().join("across.visual.tif");
    let info = write_visual_cog(&src, &dst).unwrap();
    assert!(
        info.bbox[0] > info.bbox[2],
        "west > east across ±180: {:?}",
        info.bbox
    );

    let v = Dataset::open(&dst).unwrap();
    let (vw, vh) = v.raster_size();
    let gt = v.geo_transform().unwrap();
    // 0.05° ≈ 5.6 km → zoom 5 (4.9 km/px): 8192 px across the world.
    assert_eq!(vw, 8192, "{gt:?}");
    let mask = v
        .rasterband(1)
        .unwrap()
        .open_mask_band()
        .unwrap()
        .read_as::<u8>((0, 0), (vw, vh), (vw, vh), None)
        .unwrap();
    let lon = |col: usize| (gt[0] + (col as f64 + 0.5) * gt[1]) / 20_037_508.342_789_244 * 180.0;
    let valid_cols: Vec<f64> = (0..vw)
        .filter(|c| (0..vh).any(|r| mask.data()[r * vw + c] > 0))
        .map(lon)
        .collect();
    let east_side = valid_cols
        .iter()
        .filter(|l| (170.5..179.5).contains(*l))
        .count();
    let west_side = valid_cols
        .iter()
        .filter(|l| (-179.5..-170.5).contains(*l))
        .count();
    assert!(
        east_side > 100 && west_side > 100,
        "{east_side} {west_side}"
    );
    assert!(
        valid_cols.iter().all(|l| *l >= 169.9 || *l <= -169.9),
        "nothing outside 170°E…170°W"
    );
}

/// A source that is itself a COG (it has overviews, like a downloaded web-optimized scene):
/// every per-band asset's overviews hold the band's data, not nodata. GDAL's COG driver would
/// take the source's overviews through the single-band VRT, and those read back empty.
#[test]
fn per_band_cogs_of_a_cog_source_have_overviews_with_data() {
    use raster::catalog::import::{import_item, ImportSpec};
    let (dir, cat) = setup();
    let src = dir.path().join("rgb_cog.tif");
    let st = Command::new("gdal_translate")
        .args([
            "-q",
            "-of",
            "COG",
            "-co",
            "TILING_SCHEME=GoogleMapsCompatible",
        ])
        .args(["-co", "COMPRESS=DEFLATE"])
        .arg(geotiff("RGB.byte.tif"))
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    let archive = dir.path().join("archive");
    let files = vec![src];
    let done = import_item(
        &cat,
        &archive,
        &ImportSpec {
            files: &files,
            collection: "imports",
            datetime: Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0).unwrap(),
            bands: None,
            id: Some("rgbcog"),
            replace: false,
        },
    )
    .unwrap();
    for key in ["red", "green", "blue"] {
        let a = &done.item.assets[key];
        let ds = gdal::Dataset::open(archive.join(&a.href)).unwrap();
        let band = ds.rasterband(1).unwrap();
        let valid = |b: &gdal::raster::RasterBand<'_>| {
            let (w, h) = b.size();
            let m = b.open_mask_band().unwrap();
            let px = m.read_as::<u8>((0, 0), (w, h), (w, h), None).unwrap();
            px.data().iter().filter(|v| **v > 0).count() as f64 / (w * h) as f64
        };
        let full = valid(&band);
        assert!(full > 0.3, "{key}: {full}");
        let n = band.overview_count().unwrap();
        assert!(n >= 2, "{key}: {n} overviews");
        for i in 0..n {
            let o = band.overview(i as usize).unwrap();
            let f = valid(&o);
            assert!(
                (f - full).abs() < 0.05,
                "{key}: overview {i} has {f:.3} valid pixels, full resolution {full:.3}"
            );
        }
        // The statistics were computed (they need valid pixels in the overviews).
        let a = serde_json::to_value(a).unwrap();
        assert!(
            a["bands"][0]["statistics"]["maximum"].as_f64().unwrap() > 0.0,
            "{key}: {a}"
        );
    }
}
