//! Change alerts on the real multi-date sets in `shared/data/change` (see its README for the
//! reference figures, computed independently with numpy/GDAL).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, TimeZone, Utc};
use gdal::raster::Buffer;
use gdal::Dataset;
use raster::change::{run, BandSource, Confidence, Outcome, Params, Scene};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data/change");

fn data(rel: &str) -> PathBuf {
    let p = Path::new(DATA).join(rel);
    assert!(p.is_file(), "test data missing: {}", p.display());
    p
}

fn band(path: &Path, band: usize) -> BandSource {
    BandSource {
        path: path.to_path_buf(),
        band,
        scale: None,
        offset: None,
    }
}

fn scene(id: &str, dt: DateTime<Utc>, path: &Path, red: usize, nir: usize) -> Scene {
    Scene {
        id: id.into(),
        datetime: dt,
        red: band(path, red),
        nir: band(path, nir),
    }
}

fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 10, 30, 0).unwrap()
}

fn muri(which: &str) -> PathBuf {
    data(&format!("muri-ag/S2_L2A_T32TMT_{which}_red_nir.tif"))
}

fn muri_scenes() -> Vec<Scene> {
    vec![
        scene("s2-20200807", day(2020, 8, 7), &muri("20200807"), 1, 2),
        scene("s2-20210812", day(2021, 8, 12), &muri("20210812"), 1, 2),
    ]
}

fn go(scenes: &[Scene], params: &Params) -> (tempfile::TempDir, Outcome) {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        scenes,
        params,
        &dir.path().join("work"),
        &dir.path().join("out"),
    )
    .unwrap();
    (dir, out)
}

fn forest_params() -> Params {
    Params {
        mask: Some(data("muri-ag/forest_wa.geojson")),
        ..Params::default()
    }
}

fn within(a: f64, expected: f64, rel: f64) -> bool {
    (a - expected).abs() <= expected * rel
}

fn contains(b: [f64; 4], lon: f64, lat: f64) -> bool {
    b[0] <= lon && lon <= b[2] && b[1] <= lat && lat <= b[3]
}

/// The README's two clearings: 1.36 ha (8.35338–8.35604 E, 47.26990–47.27161 N) and
/// 0.84 ha (8.35640–8.35865 E, 47.27288–47.27379 N).
fn assert_two_clearings(out: &Outcome) {
    let a = &out.alerts;
    assert_eq!(a.len(), 2, "alerts: {a:#?}");
    assert!(within(a[0].area_ha, 1.36, 0.10), "{}", a[0].area_ha);
    assert!(within(a[1].area_ha, 0.84, 0.10), "{}", a[1].area_ha);
    assert!(contains(a[0].bbox, 8.3547, 47.2708), "{:?}", a[0].bbox);
    assert!(contains(a[1].bbox, 8.3575, 47.2733), "{:?}", a[1].bbox);
    // The README's boxes hold ours (a few metres of slack for the corners).
    let e = 5e-5;
    assert!(a[0].bbox[0] >= 8.35338 - e && a[0].bbox[2] <= 8.35604 + e);
    assert!(a[0].bbox[1] >= 47.26990 - e && a[0].bbox[3] <= 47.27161 + e);
    assert!(a[1].bbox[0] >= 8.35640 - e && a[1].bbox[2] <= 8.35865 + e);
    assert!(a[1].bbox[1] >= 47.27288 - e && a[1].bbox[3] <= 47.27379 + e);
}

#[test]
fn muri_forest_two_clearings() {
    let (dir, out) = go(&muri_scenes(), &forest_params());
    println!("{:#?}", out.alerts);
    assert_two_clearings(&out);
    for a in &out.alerts {
        assert_eq!(a.confidence, Confidence::Low, "seen once");
        assert_eq!(a.first_detected, day(2021, 8, 12));
        assert_eq!(a.source_items, vec!["s2-20200807", "s2-20210812"]);
        assert!(a.mean_dndvi < -0.3 && a.baseline_ndvi > 0.8, "{a:?}");
    }
    // Same pixels as the reference before the MMU: 320 loss px in the forest (our cloud test
    // drops the saturated object's pixels, which are outside the forest).
    assert!(
        within(out.loss_px_before_mmu as f64, 320.0, 0.10),
        "{}",
        out.loss_px_before_mmu
    );
    raster::products::validate_cog(&out.dndvi_cog).unwrap();
    raster::products::validate_cog(&out.loss_cog).unwrap();
    drop(dir);
}

#[test]
fn muri_without_mask_cropland_harvest_shows() {
    let (_dir, out) = go(&muri_scenes(), &Params::default());
    let total: f64 = out.alerts.iter().map(|a| a.area_ha).sum();
    println!("{} alerts, {total:.2} ha", out.alerts.len());
    // Reference: 63 components ≥ 50 px, 177.68 ha, almost all cropland.
    assert!(
        within(out.alerts.len() as f64, 63.0, 0.15),
        "{}",
        out.alerts.len()
    );
    assert!(within(total, 177.68, 0.10), "{total}");
    // The largest is a harvested field (1819 px before the MMU), far bigger than a clearing.
    assert!(out.alerts[0].area_ha > 10.0);
}

#[test]
fn muri_reprojected_earlier_date_same_two_clearings() {
    // The earlier date in Swiss LV95 at 10 m: a different CRS and a sub-pixel offset.
    let dir = tempfile::tempdir().unwrap();
    let lv95 = dir.path().join("2020_lv95.tif");
    let st = Command::new("gdalwarp")
        .args([
            "-q",
            "-t_srs",
            "EPSG:2056",
            "-tr",
            "10",
            "10",
            "-r",
            "bilinear",
        ])
        .arg(muri("20200807"))
        .arg(&lv95)
        .status()
        .unwrap();
    assert!(st.success());
    let scenes = vec![
        scene("s2-20200807-lv95", day(2020, 8, 7), &lv95, 1, 2),
        scene("s2-20210812", day(2021, 8, 12), &muri("20210812"), 1, 2),
    ];
    for k in 0..=1 {
        let p = Params {
            shift_px: k,
            ..forest_params()
        };
        let (_d, o) = go(&scenes, &p);
        println!(
            "shift {k}: {:?} before mmu {}",
            o.alerts
                .iter()
                .map(|a| (a.area_ha, a.n_px))
                .collect::<Vec<_>>(),
            o.loss_px_before_mmu
        );
    }
    let (_d, out) = go(&scenes, &forest_params());
    assert!(out.scenes[0].warped && !out.scenes[1].warped);
    assert_two_clearings(&out);
}

#[test]
fn sub_pixel_offset_raises_no_alert() {
    // The same 2021 image as the earlier date, its georeference off by 0.9 pixel (9 m east,
    // 9 m south): nothing changed, so any alert would come from the offset at field edges.
    let dir = tempfile::tempdir().unwrap();
    let shifted = dir.path().join("shifted.tif");
    let st = Command::new("gdal_translate")
        .args(["-q", "-a_ullr", "449289", "5236221", "453579", "5232661"])
        .arg(muri("20210812"))
        .arg(&shifted)
        .status()
        .unwrap();
    assert!(st.success());
    let scenes = vec![
        scene("shifted", day(2021, 8, 1), &shifted, 1, 2),
        scene("s2-20210812", day(2021, 8, 12), &muri("20210812"), 1, 2),
    ];
    let unguarded = Params {
        shift_px: 0,
        mmu_ha: 0.0,
        ..Params::default()
    };
    let (_a, raw) = go(&scenes, &unguarded);
    let (_b, out) = go(
        &scenes,
        &Params {
            mmu_ha: 0.0,
            ..Params::default()
        },
    );
    println!(
        "loss px from a 0.9-pixel offset: unguarded {}, guarded {}",
        raw.loss_px_before_mmu, out.loss_px_before_mmu
    );
    assert!(out.scenes[0].warped);
    assert!(
        raw.loss_px_before_mmu > 0,
        "the offset must matter for the test to mean anything"
    );
    // A few isolated pixels remain (texture a 0.9-pixel shift moves by more than `drop`);
    // none forms an alert at the default 0.5 ha.
    assert!(out.loss_px_before_mmu * 50 <= raw.loss_px_before_mmu);
    let (_c, alerts) = go(&scenes, &Params::default());
    assert_eq!(alerts.alerts.len(), 0, "{:#?}", alerts.alerts);
}

#[test]
fn order_of_inputs_does_not_matter() {
    let mut rev = muri_scenes();
    rev.reverse();
    let (_a, fwd) = go(&muri_scenes(), &forest_params());
    let (_b, bwd) = go(&rev, &forest_params());
    assert_eq!(fwd.alerts, bwd.alerts);
    assert_two_clearings(&bwd);
}

fn pucallpa(year: i32) -> Scene {
    let p = data(&format!("pucallpa-landsat/landsat_pucallpa_{year}.tif"));
    // Band 2 = NIR, band 3 = red.
    scene(&format!("landsat-{year}"), day(year, 7, 1), &p, 3, 2)
}

#[test]
fn pucallpa_pair_matches_expected_areas() {
    // expected/dn_ndvi_2015_2020_drop0.30.json: 4424 px, 3537.09 ha, largest 809.12 ha
    // (river) and 752.50 ha; no MMU, no cloud test (a DN stretch has no reflectance).
    let params = Params {
        mmu_ha: 0.0,
        baseline_looks: 1,
        cloud: None,
        ..Params::default()
    };
    let (_d, out) = go(&[pucallpa(2020), pucallpa(2015)], &params);
    let total: f64 = out.alerts.iter().map(|a| a.area_ha).sum();
    println!(
        "{} alerts {total:.1} ha, largest {:.1} {:.1}",
        out.alerts.len(),
        out.alerts[0].area_ha,
        out.alerts[1].area_ha
    );
    assert_eq!(out.loss_px_before_mmu, 4424);
    assert_eq!(out.alerts.len(), 449);
    assert!(within(total, 3537.09, 0.10), "{total}");
    assert!(within(out.alerts[0].area_ha, 809.12, 0.10));
    assert!(within(out.alerts[1].area_ha, 752.50, 0.10));
}

#[test]
fn pucallpa_series_baseline_and_rising_confidence() {
    let years = [1985, 1990, 1995, 2000, 2005, 2010, 2015, 2020];
    let params = Params {
        mmu_ha: 5.0,
        cloud: None,
        ..Params::default()
    };
    let y2010 = day(2010, 7, 1);
    // Up to 2010: what 2010 shows is seen once.
    let upto: Vec<Scene> = years[..6].iter().map(|&y| pucallpa(y)).collect();
    let (_a, before) = go(
        &upto,
        &Params {
            mmu_ha: 0.0,
            ..params.clone()
        },
    );
    let first_2010: Vec<_> = before
        .alerts
        .iter()
        .filter(|a| a.first_detected == y2010)
        .collect();
    assert!(!first_2010.is_empty());
    assert!(first_2010.iter().all(|a| a.confidence == Confidence::Low));
    // All 8 epochs, added newest first: 2015 confirms some of 2010's alerts.
    let mut all: Vec<Scene> = years.iter().map(|&y| pucallpa(y)).collect();
    all.reverse();
    let (_b, after) = go(&all, &params);
    for a in after.alerts.iter().filter(|a| a.first_detected == y2010) {
        println!(
            "2010 alert {:.1} ha {:?} last {}",
            a.area_ha, a.confidence, a.last_observed
        );
    }
    let high: Vec<_> = after
        .alerts
        .iter()
        .filter(|a| a.first_detected == y2010 && a.confidence == Confidence::High)
        .collect();
    assert!(!high.is_empty());
    // Each confirmed one was low at the same place before the confirming epoch.
    let overlap =
        |a: [f64; 4], b: [f64; 4]| a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
    for h in &high {
        assert!(first_2010.iter().any(|a| overlap(a.bbox, h.bbox)), "{h:?}");
        assert!(h.last_observed > y2010);
    }
    // The baseline is the earlier looks (3 by default): 1995, 2000, 2005 for a 2010 alert.
    let a = high[0];
    assert_eq!(
        a.source_items[..4],
        [
            "landsat-1995",
            "landsat-2000",
            "landsat-2005",
            "landsat-2010"
        ]
    );
    // Areas are equal-area: a 0.000808° pixel at 8.4° S is 0.80 ha.
    assert!(after.alerts.iter().all(|a| a.area_ha >= 5.0));
    let per_px = a.area_ha / a.n_px as f64;
    assert!(within(per_px, 0.7996, 0.005), "{per_px}");
}

/// Copies `src` and writes `red`/`nir` raw values into the pixel box `rows × cols`.
fn paste(
    src: &Path,
    dst: &Path,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    red: u16,
    nir: u16,
) {
    std::fs::copy(src, dst).unwrap();
    let ds = Dataset::open_ex(
        dst,
        gdal::DatasetOptions {
            open_flags: gdal::GdalOpenFlags::GDAL_OF_UPDATE,
            ..Default::default()
        },
    )
    .unwrap();
    let (w, h) = (cols.len(), rows.len());
    for (b, v) in [(1, red), (2, nir)] {
        let mut band = ds.rasterband(b).unwrap();
        let mut buf = Buffer::new((w, h), vec![v; w * h]);
        band.write((cols.start as isize, rows.start as isize), (w, h), &mut buf)
            .unwrap();
    }
}

#[test]
fn synthetic_cloud_raises_no_alert_and_missed_haze_is_contradicted() {
    let dir = tempfile::tempdir().unwrap();
    // A thick cloud (reflectance 0.5 in both bands) over the larger clearing on the second date.
    let cloudy = dir.path().join("cloudy.tif");
    paste(&muri("20210812"), &cloudy, 60..95, 175..210, 5000, 5200);
    let scenes = vec![
        scene("s2-20200807", day(2020, 8, 7), &muri("20200807"), 1, 2),
        scene("s2-20210812-cloud", day(2021, 8, 12), &cloudy, 1, 2),
    ];
    let (_a, out) = go(&scenes, &forest_params());
    assert_eq!(out.alerts.len(), 1, "{:#?}", out.alerts);
    assert!(within(out.alerts[0].area_ha, 0.84, 0.10));
    assert!(out.scenes[1].cloud >= 35 * 35);
    assert!(out.alerts.iter().all(|a| a.confidence != Confidence::High));

    // A haze the test misses (red 0.09, NIR 0.20: NDVI 0.38) inside the forest on a middle
    // date, then a clear date with the forest intact: the alert is kept, contradicted.
    let hazy = dir.path().join("hazy.tif");
    paste(&muri("20200807"), &hazy, 130..150, 190..210, 900, 2000);
    let scenes = vec![
        scene("a", day(2020, 8, 7), &muri("20200807"), 1, 2),
        scene("b-haze", day(2020, 9, 1), &hazy, 1, 2),
        scene("c-clear", day(2020, 10, 1), &muri("20200807"), 1, 2),
    ];
    let params = forest_params();
    let (_b, two) = go(&scenes[..2], &params);
    let haze_alert = |o: &Outcome| {
        o.alerts
            .iter()
            .find(|a| a.first_detected == day(2020, 9, 1))
            .cloned()
    };
    let low = haze_alert(&two).expect("the haze is a low alert after two dates");
    assert_eq!(low.confidence, Confidence::Low);
    let (_c, three) = go(&scenes, &params);
    let after = haze_alert(&three).expect("kept after the clear date");
    assert_eq!(after.confidence, Confidence::Contradicted);
    assert_eq!(after.last_observed, day(2020, 10, 1));
    assert!(within(after.area_ha, low.area_ha, 1e-9));
}

#[test]
fn bad_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w");
    let o = dir.path().join("o");
    // One scene.
    let e = run(&muri_scenes()[..1], &Params::default(), &w, &o).unwrap_err();
    assert!(e.to_string().contains("at least two scenes"), "{e}");
    // A band that is not there.
    let mut s = muri_scenes();
    s[0].nir.band = 5;
    let e = run(&s, &Params::default(), &w, &o).unwrap_err();
    assert!(e.to_string().contains("has 2 band(s)"), "{e}");
    // A place that does not overlap (Peru into Switzerland).
    let s = vec![pucallpa(2015), muri_scenes().remove(1)];
    let e = run(&s, &Params::default(), &w, &o).unwrap_err();
    assert!(e.to_string().contains("does not overlap"), "{e}");
    // A mask that does not parse.
    let bad = dir.path().join("bad.geojson");
    std::fs::write(&bad, "{ not json").unwrap();
    let p = Params {
        mask: Some(bad),
        ..Params::default()
    };
    let e = run(&muri_scenes(), &p, &w, &o).unwrap_err();
    assert!(e.to_string().contains("bad.geojson"), "{e}");
    assert!(!o.join("dndvi.tif").exists() && !o.join("loss.tif").exists());
    // Bad parameters, all at once.
    let p = Params {
        drop: -1.0,
        baseline_looks: 0,
        ..Params::default()
    };
    let e = run(&muri_scenes(), &p, &w, &o).unwrap_err();
    assert!(e.to_string().contains("drop") && e.to_string().contains("baseline_looks"));
}

#[test]
fn nodata_the_type_cannot_hold_is_ignored() {
    use gdal::raster::GdalDataType;
    use raster::change::nodata_representable;
    assert!(!nodata_representable(-9999.0, GdalDataType::UInt16));
    assert!(!nodata_representable(256.0, GdalDataType::UInt8));
    assert!(!nodata_representable(0.5, GdalDataType::Int16));
    assert!(nodata_representable(0.0, GdalDataType::UInt8));
    assert!(nodata_representable(-32768.0, GdalDataType::Int16));
    assert!(nodata_representable(f64::NAN, GdalDataType::Float32));
    // A file declaring -9999 on UInt16: the run warns and still finds the clearings.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("nd.tif");
    std::fs::copy(muri("20200807"), &f).unwrap();
    {
        let ds = Dataset::open_ex(
            &f,
            gdal::DatasetOptions {
                open_flags: gdal::GdalOpenFlags::GDAL_OF_UPDATE,
                ..Default::default()
            },
        )
        .unwrap();
        for b in 1..=2 {
            ds.rasterband(b)
                .unwrap()
                .set_no_data_value(Some(-9999.0))
                .unwrap();
        }
    }
    let s = vec![
        scene("a", day(2020, 8, 7), &f, 1, 2),
        scene("b", day(2021, 8, 12), &muri("20210812"), 1, 2),
    ];
    let (_d, out) = go(&s, &forest_params());
    assert!(
        out.warnings.iter().any(|w| w.contains("-9999")),
        "{:?}",
        out.warnings
    );
    assert_two_clearings(&out);
}
