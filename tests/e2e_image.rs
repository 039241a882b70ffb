//! End-to-end: `downlink image` on the real Meteor-M2 LRPT capture.
//!
//! One run of all three recordings (`2022_12_20_20_25_{30,40,50}.vcdu`, bare VCDUs, decoded as
//! one stream) is shared by most tests; the land mask comes from `DOWNLINK_LANDMASK` or
//! `build/landmask.tif` (`make landmask`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use gdal::raster::{ColorInterpretation, GdalDataType};
use gdal::{Dataset, Metadata};
use image::{GrayAlphaImage, RgbaImage};
use serde_json::Value;

/// The three recordings of the pass, in order.
const VCDU: [&str; 3] = [
    "vcdu/meteor-m2/2022_12_20_20_25_30.vcdu",
    "vcdu/meteor-m2/2022_12_20_20_25_40.vcdu",
    "vcdu/meteor-m2/2022_12_20_20_25_50.vcdu",
];
const TLE: &str = "tle/meteor-m2_40069_2022-12-20.tle";
/// 1568 x 200 RGBA: R = APID 68, G = APID 65, B = APID 64, alpha 0 where any has no data.
/// Made by its project from all three recordings decoded as one stream.
const REFERENCE: &str = "expected/meteor-m2/2022_12_20_20_25_30.png";
const PASS_ID: &str = "e2e-meteor-m2-20221220";
const WIDTH: u32 = 1568;
const COG_VALIDATOR: &str =
    "/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py";

fn data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    assert!(p.exists(), "test data missing: {}", p.display());
    p
}

/// The land/sea mask: `DOWNLINK_LANDMASK`, else `build/landmask.tif`. Never skipped.
fn landmask() -> PathBuf {
    let p = std::env::var_os("DOWNLINK_LANDMASK").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/landmask.tif"),
        PathBuf::from,
    );
    assert!(
        p.is_file(),
        "land mask {} is missing: run `make landmask` (or point DOWNLINK_LANDMASK at one)",
        p.display()
    );
    p
}

fn downlink<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(args)
        .output()
        .expect("run downlink")
}

/// `downlink image --profile P --format frames --tle T --date D --out OUT FILES…` (no land
/// mask, no pass id: add them with `extra`).
fn image_args(
    profile: &str,
    tle: &Path,
    date: &str,
    out: &Path,
    files: &[PathBuf],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "image",
        "--profile",
        profile,
        "--format",
        "frames",
        "--date",
        date,
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push("--tle".into());
    args.push(tle.into());
    args.push("--out".into());
    args.push(out.into());
    args.extend(files.iter().map(OsString::from));
    args
}

/// A full, successful `downlink image` run of `files` into `out` with the land mask.
fn run_image(out: &Path, files: &[&str], pass_id: Option<&str>) -> Output {
    let files: Vec<PathBuf> = files.iter().map(|f| data(f)).collect();
    let mut args = image_args("meteor-lrpt", &data(TLE), "2022-12-20", out, &files);
    args.push("--landmask".into());
    args.push(landmask().into());
    if let Some(id) = pass_id {
        args.push("--pass-id".into());
        args.push(id.into());
    }
    downlink(&args)
}

fn listing_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "status {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// Scratch directories for the shared run live under Cargo's target tmp dir; ones left by
/// earlier test processes (a `static` is never dropped) are pruned once they are stale.
fn scratch_dir() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let stale = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(6 * 3600));
            if stale && e.file_name().to_string_lossy().starts_with("e2e_image-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    tempfile::Builder::new()
        .prefix("e2e_image-")
        .tempdir_in(root)
        .unwrap()
}

/// The shared run of the whole pass.
struct Run {
    _dir: tempfile::TempDir,
    out: PathBuf,
    listing: Value,
    /// File names in the output directory right after the run (before any test read it).
    files: Vec<String>,
}

fn full() -> &'static Run {
    static FULL: OnceLock<Run> = OnceLock::new();
    FULL.get_or_init(|| {
        let dir = scratch_dir();
        let out = dir.path().join("pass");
        let listing = listing_of(&run_image(&out, &VCDU, Some(PASS_ID)));
        let mut files: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        Run {
            _dir: dir,
            out,
            listing,
            files,
        }
    })
}

fn products<'a>(listing: &'a Value, kind: &str) -> Vec<&'a Value> {
    listing["products"]
        .as_array()
        .expect("products is an array")
        .iter()
        .filter(|p| p["kind"] == kind)
        .collect()
}

fn product<'a>(listing: &'a Value, kind: &str, apid: Option<u64>) -> &'a Value {
    let found: Vec<&Value> = products(listing, kind)
        .into_iter()
        .filter(|p| p["apid"].as_u64() == apid)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} product for APID {apid:?}");
    found[0]
}

fn path_of(p: &Value) -> PathBuf {
    PathBuf::from(p["path"].as_str().expect("product path"))
}

// ---------------------------------------------------------------------------------------
// Pixel helpers.

fn gray_alpha(path: &Path) -> GrayAlphaImage {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        img.color(),
        image::ColorType::La8,
        "{} is 8-bit grey + alpha",
        path.display()
    );
    let img = img.to_luma_alpha8();
    assert!(
        img.pixels().all(|p| p[1] == 0 || p[1] == 255),
        "{}: alpha is a 0/255 validity mask",
        path.display()
    );
    img
}

fn rgba(path: &Path) -> RgbaImage {
    let img = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        img.color(),
        image::ColorType::Rgba8,
        "{} is RGBA8",
        path.display()
    );
    img.to_rgba8()
}

/// The raw channel PNGs of a run combined like the reference: R = 68, G = 65, B = 64, alpha
/// 255 only where all three are valid; colour 0 where transparent (as in the reference).
fn combined(listing: &Value) -> RgbaImage {
    let ch = |apid| gray_alpha(&path_of(product(listing, "raw_png", Some(apid))));
    let (r, g, b) = (ch(68), ch(65), ch(64));
    assert_eq!(r.dimensions(), g.dimensions());
    assert_eq!(r.dimensions(), b.dimensions());
    let (w, h) = r.dimensions();
    RgbaImage::from_fn(w, h, |x, y| {
        let (pr, pg, pb) = (r.get_pixel(x, y), g.get_pixel(x, y), b.get_pixel(x, y));
        if pr[1] == 255 && pg[1] == 255 && pb[1] == 255 {
            image::Rgba([pr[0], pg[0], pb[0], 255])
        } else {
            image::Rgba([0, 0, 0, 0])
        }
    })
}

/// How an RGBA image compares with the reference over its first `rows` lines.
#[derive(Debug)]
struct Comparison {
    alpha_mismatches: u64,
    /// Pixels opaque in both.
    opaque: u64,
    /// Of those, pixels whose colour differs.
    colour_mismatches: u64,
    psnr_db: f64,
}

fn compare(ours: &RgbaImage, reference: &RgbaImage, rows: u32) -> Comparison {
    assert_eq!(ours.width(), reference.width());
    assert!(ours.height() >= rows && reference.height() >= rows);
    let (mut alpha_mismatches, mut opaque, mut colour_mismatches) = (0u64, 0u64, 0u64);
    let mut sq = 0.0f64;
    for y in 0..rows {
        for x in 0..ours.width() {
            let (a, b) = (ours.get_pixel(x, y), reference.get_pixel(x, y));
            if a[3] != b[3] {
                alpha_mismatches += 1;
            }
            if a[3] == 255 && b[3] == 255 {
                opaque += 1;
                if a.0[..3] != b.0[..3] {
                    colour_mismatches += 1;
                }
                for c in 0..3 {
                    let d = f64::from(a[c]) - f64::from(b[c]);
                    sq += d * d;
                }
            }
        }
    }
    assert!(opaque > 0, "no pixel is opaque in both images");
    let mse = sq / (3.0 * opaque as f64);
    let psnr_db = if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    };
    Comparison {
        alpha_mismatches,
        opaque,
        colour_mismatches,
        psnr_db,
    }
}

// ---------------------------------------------------------------------------------------
// Geodesy helpers.

/// Great-circle distance, km (mean Earth radius).
fn haversine_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0088 * h.sqrt().asin()
}

/// Longitude difference `b - a` in (-180, 180].
fn dlon(a: f64, b: f64) -> f64 {
    let d = (b - a).rem_euclid(360.0);
    if d > 180.0 {
        d - 360.0
    } else {
        d
    }
}

/// Latitude and longitude at `pixel` on one GCP line (sorted by pixel), interpolated
/// linearly between its neighbouring GCPs.
fn along_line(line: &[Gcp], pixel: f64) -> (f64, f64) {
    let seg = line
        .windows(2)
        .find(|w| w[0].pixel <= pixel && pixel <= w[1].pixel)
        .unwrap_or_else(|| panic!("pixel {pixel} outside the GCP line"));
    let (a, b) = (seg[0], seg[1]);
    let f = (pixel - a.pixel) / (b.pixel - a.pixel);
    (a.lat + f * (b.lat - a.lat), a.lon + f * dlon(a.lon, b.lon))
}

#[derive(Clone, Copy, Debug)]
struct Gcp {
    pixel: f64,
    line: f64,
    lon: f64,
    lat: f64,
}

fn gcps_of(path: &Path) -> Vec<Gcp> {
    let ds = Dataset::open(path).unwrap();
    ds.gcps()
        .iter()
        .map(|g| Gcp {
            pixel: g.pixel(),
            line: g.line(),
            lon: g.x(),
            lat: g.y(),
        })
        .collect()
}

fn assert_valid_cog(path: &Path) {
    assert!(
        Path::new(COG_VALIDATOR).is_file(),
        "GDAL's COG validator is missing: {COG_VALIDATOR}"
    );
    let out = Command::new("/usr/bin/python3")
        .arg(COG_VALIDATOR)
        .arg(path)
        .output()
        .expect("run the COG validator");
    assert!(
        out.status.success(),
        "{} fails validate_cloud_optimized_geotiff.py ({:?}):\n{}{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn channel_name(p: &Value) -> &str {
    p["channel"].as_str().expect("channel name")
}

// ---------------------------------------------------------------------------------------
// 1. The full pass.

#[test]
fn full_pass_lists_every_product_and_matches_the_reference_image() {
    let run = full();
    let v = &run.listing;
    assert_eq!(v["pass_id"], PASS_ID);
    assert_eq!(v["norad_id"], 40069);
    assert_eq!(v["instrument"], "msu-mr");
    assert_eq!(v["channels"], serde_json::json!([64, 65, 68]));
    assert_eq!(v["lines"], 200);
    for apid in ["64", "65", "68"] {
        let ch = &v["link_quality"]["image_channels"][apid];
        assert!(
            ch["packets_ok"].as_u64().unwrap() > 0,
            "link_quality.image_channels.{apid}: {ch}"
        );
    }

    // Every listed file exists with the listed size, inside the output directory.
    let all = v["products"].as_array().unwrap();
    for p in all {
        let path = path_of(p);
        assert!(
            path.starts_with(&run.out),
            "{} outside --out",
            path.display()
        );
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        assert_eq!(Some(len), p["bytes"].as_u64(), "size of {}", path.display());
        assert!(p["media_type"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // And nothing else is left there (no temporary swath file).
    let mut want: Vec<String> = all
        .iter()
        .map(|p| {
            path_of(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .chain(["products.json".to_owned()])
        .collect();
    want.sort();
    assert_eq!(run.files, want, "files in the output directory");

    // Kinds: per channel, and one of each scene product.
    let mut kinds: BTreeMap<(String, Option<u64>), usize> = BTreeMap::new();
    for p in all {
        *kinds
            .entry((p["kind"].as_str().unwrap().to_owned(), p["apid"].as_u64()))
            .or_default() += 1;
    }
    for apid in [64, 65, 68] {
        for kind in ["raw_png", "raw_gcp_tiff", "analytic"] {
            assert_eq!(
                kinds.get(&(kind.to_owned(), Some(apid))),
                Some(&1),
                "{kind} for APID {apid}: {kinds:?}"
            );
        }
    }
    for kind in [
        "raw_composite_png",
        "composite",
        "thumbnail",
        "ndvi",
        "geolocation",
    ] {
        assert_eq!(
            kinds.get(&(kind.to_owned(), None)),
            Some(&1),
            "{kind}: {kinds:?}"
        );
    }
    assert_eq!(all.len(), 14, "{kinds:?}");

    // The raw channel images against the reference.
    for apid in [64, 65, 68] {
        let img = gray_alpha(&path_of(product(v, "raw_png", Some(apid))));
        assert_eq!(img.dimensions(), (WIDTH, 200), "APID {apid}");
    }
    let reference = rgba(&data(REFERENCE));
    assert_eq!(reference.dimensions(), (WIDTH, 200));
    let ours = combined(v);
    let c = compare(&ours, &reference, 200);
    eprintln!(
        "raw channels (R=68 G=65 B=64) vs reference: PSNR {:.2} dB over {} pixels opaque in both; {c:?}",
        c.psnr_db, c.opaque
    );
    assert_eq!(c.alpha_mismatches, 0, "{c:?}");
    assert!(c.psnr_db >= 45.0, "PSNR {:.2} dB < 45: {c:?}", c.psnr_db);

    let composite = rgba(&path_of(product(v, "raw_composite_png", None)));
    assert_eq!(composite.dimensions(), (WIDTH, 200));
    let c = compare(&composite, &reference, 200);
    eprintln!("composite.raw.png vs reference: {c:?}");
    assert_eq!(c.alpha_mismatches, 0, "{c:?}");
    assert!(c.psnr_db >= 45.0, "PSNR {:.2} dB < 45: {c:?}", c.psnr_db);
    // The raw composite is exactly the three raw channels (where it is opaque).
    let c = compare(&composite, &ours, 200);
    assert_eq!((c.alpha_mismatches, c.colour_mismatches), (0, 0), "{c:?}");
}

// ---------------------------------------------------------------------------------------
// 2. The first recording alone.

#[test]
fn first_recording_alone_reproduces_the_top_of_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("first-file");
    let v = listing_of(&run_image(&out, &VCDU[..1], None));
    assert_eq!(v["lines"], 72);
    assert_eq!(v["channels"], serde_json::json!([64, 65, 68]));
    // Without --pass-id the pass id is the output directory's name.
    assert_eq!(v["pass_id"], "first-file");

    let ours = combined(&v);
    assert_eq!(ours.dimensions(), (WIDTH, 72));
    let reference = rgba(&data(REFERENCE));
    // The first 8 MCU rows are identical, alpha and colour.
    let c = compare(&ours, &reference, 64);
    eprintln!("first recording, lines 0..64 vs reference: {c:?}");
    assert_eq!((c.alpha_mismatches, c.colour_mismatches), (0, 0), "{c:?}");
    let top = |img: &RgbaImage| -> Vec<u8> { img.as_raw()[..(WIDTH as usize * 64 * 4)].to_vec() };
    assert!(
        top(&ours) == top(&reference),
        "lines 0..64 differ byte-wise"
    );

    // In the 9th row the reference holds packets that only the second recording carries.
    let missing = (64..72)
        .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
        .filter(|&(x, y)| reference.get_pixel(x, y)[3] == 255 && ours.get_pixel(x, y)[3] == 0)
        .count();
    eprintln!("lines 64..72: {missing} pixels valid in the reference only");
    assert!(
        missing > 0,
        "row 9 should lack the second recording's packets"
    );
}

// ---------------------------------------------------------------------------------------
// 3. The GeoTIFFs through GDAL.

#[test]
fn raw_gcp_tiffs_carry_gcps_and_provenance() {
    let v = &full().listing;
    let gcp_tiffs = products(v, "raw_gcp_tiff");
    assert_eq!(gcp_tiffs.len(), 3);
    for p in gcp_tiffs {
        let path = path_of(p);
        let name = channel_name(p);
        let ds = Dataset::open(&path).unwrap();
        assert_eq!(
            ds.raster_size(),
            (WIDTH as usize, 200),
            "{}",
            path.display()
        );
        assert!(!ds.gcps().is_empty(), "{}: no GCPs", path.display());
        let srs = ds.gcp_spatial_ref().expect("GCP spatial reference");
        assert_eq!(srs.auth_name().as_deref(), Some("EPSG"));
        assert_eq!(srs.auth_code().unwrap(), 4326, "{}", path.display());
        // Georeferenced by GCPs alone: no geotransform.
        assert!(
            ds.geo_transform().is_err(),
            "{}: unexpected geotransform {:?}",
            path.display(),
            ds.geo_transform()
        );

        let band = ds.rasterband(1).unwrap();
        assert_eq!(band.band_type(), GdalDataType::UInt8);
        assert_eq!(band.no_data_value(), Some(0.0), "{}", path.display());
        let desc = band.description().unwrap();
        assert!(
            desc.contains(&format!("channel {name}")),
            "{}: band description {desc:?} names channel {name}",
            path.display()
        );

        assert_eq!(
            ds.metadata_item("DOWNLINK_PASS_ID", "").as_deref(),
            Some(PASS_ID)
        );
        let lq: Value = serde_json::from_str(
            &ds.metadata_item("DOWNLINK_LINK_QUALITY", "")
                .expect("DOWNLINK_LINK_QUALITY"),
        )
        .expect("DOWNLINK_LINK_QUALITY is JSON");
        assert_eq!(lq["frames_good"], 256);
        assert_eq!(lq, v["link_quality"], "metadata agrees with the listing");
    }
}

/// The Sun over the middle of the swath at mid-pass (2022-12-20 20:25:26.4 UTC, the GCP at
/// 11.107°S 146.954°E): dawn. Cross-checked with the independent `astral` 3.2 (PyPI):
/// elevation 7.90° (no refraction), azimuth 112.45°.
#[test]
fn the_pass_records_the_sun_at_dawn() {
    let v = &full().listing;
    let el = v["sun"]["elevation"].as_f64().unwrap();
    let az = v["sun"]["azimuth"].as_f64().unwrap();
    assert!((el - 7.90).abs() < 0.05, "{}", v["sun"]);
    assert!((az - 112.45).abs() < 0.05, "{}", v["sun"]);
}

#[test]
fn analytic_cogs_are_north_up_epsg4326_grids() {
    let v = &full().listing;
    let sub = &v["subsatellite_first"];
    let (sub_lat, sub_lon) = (sub["lat"].as_f64().unwrap(), sub["lon"].as_f64().unwrap());
    let bbox: Vec<f64> = v["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let analytic = products(v, "analytic");
    assert_eq!(analytic.len(), 3);
    for p in analytic {
        let path = path_of(p);
        let name = channel_name(p);
        let ds = Dataset::open(&path).unwrap();
        let srs = ds.spatial_ref().unwrap();
        assert_eq!(srs.auth_code().unwrap(), 4326, "{}", path.display());
        let gt = ds.geo_transform().unwrap();
        assert!((gt[1] - 0.01).abs() < 1e-9, "{}: {gt:?}", path.display());
        assert!((gt[5] + 0.01).abs() < 1e-9, "{}: {gt:?}", path.display());
        assert_eq!((gt[2], gt[4]), (0.0, 0.0), "{}: north-up", path.display());

        let band = ds.rasterband(1).unwrap();
        assert_eq!(band.band_type(), GdalDataType::UInt8);
        assert_eq!(band.no_data_value(), Some(0.0), "{}", path.display());
        let desc = band.description().unwrap();
        assert!(
            desc.contains(&format!("channel {name}")),
            "{}: band description {desc:?}",
            path.display()
        );

        let qa: Value = serde_json::from_str(
            &ds.metadata_item("DOWNLINK_GEOLOCATION_QA", "")
                .expect("DOWNLINK_GEOLOCATION_QA"),
        )
        .expect("DOWNLINK_GEOLOCATION_QA is JSON");
        let conf = qa["confidence"].as_f64().expect("confidence is a number");
        assert!((0.0..=1.0).contains(&conf), "confidence {conf}");
        assert_eq!(qa["apid"], p["apid"], "QA of its own channel");

        let (w, h) = ds.raster_size();
        let (west, north) = (gt[0], gt[3]);
        let (east, south) = (west + gt[1] * w as f64, north + gt[5] * h as f64);
        assert!(
            (west..=east).contains(&sub_lon) && (south..=north).contains(&sub_lat),
            "{}: bounds [{west}, {south}, {east}, {north}] miss the sub-satellite point {sub_lat}, {sub_lon}",
            path.display()
        );
        for (got, listed) in [west, south, east, north].iter().zip(&bbox) {
            assert!(
                (got - listed).abs() < 1e-6,
                "bounds vs listing bbox {bbox:?}"
            );
        }
    }
}

#[test]
fn ndvi_composite_and_thumbnail() {
    let v = &full().listing;

    // NDVI: Float32, NaN nodata, values in [-1, 1].
    let ndvi = path_of(product(v, "ndvi", None));
    let ds = Dataset::open(&ndvi).unwrap();
    let band = ds.rasterband(1).unwrap();
    assert_eq!(band.band_type(), GdalDataType::Float32);
    assert!(
        band.no_data_value().is_some_and(f64::is_nan),
        "NDVI nodata {:?}",
        band.no_data_value()
    );
    assert_eq!(band.description().unwrap(), "NDVI");
    let values = band.read_band_as::<f32>().unwrap();
    let finite: Vec<f32> = values
        .data()
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    assert!(!finite.is_empty(), "NDVI has no valid pixel");
    let (lo, hi) = finite
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    eprintln!(
        "NDVI: {} valid of {} pixels, range [{lo}, {hi}]",
        finite.len(),
        values.data().len()
    );
    assert!(lo >= -1.0 && hi <= 1.0, "NDVI range [{lo}, {hi}]");
    // Same grid as the analytic bands.
    let ch1 = Dataset::open(path_of(product(v, "analytic", Some(64)))).unwrap();
    assert_eq!(ds.raster_size(), ch1.raster_size());
    assert_eq!(ds.geo_transform().unwrap(), ch1.geo_transform().unwrap());

    // Composite: RGB + alpha.
    let composite = path_of(product(v, "composite", None));
    let ds = Dataset::open(&composite).unwrap();
    assert_eq!(ds.raster_count(), 4);
    let interp: Vec<ColorInterpretation> = (1..=4)
        .map(|i| ds.rasterband(i).unwrap().color_interpretation())
        .collect();
    assert_eq!(
        interp,
        [
            ColorInterpretation::RedBand,
            ColorInterpretation::GreenBand,
            ColorInterpretation::BlueBand,
            ColorInterpretation::AlphaBand
        ]
    );
    let alpha = ds.rasterband(4).unwrap().read_band_as::<u8>().unwrap();
    assert!(alpha.data().contains(&255) && alpha.data().contains(&0));
    let (cw, ch) = ds.raster_size();

    // Thumbnail: a PNG, long side at most 512, the composite's shape.
    let thumb = path_of(product(v, "thumbnail", None));
    let bytes = std::fs::read(&thumb).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "thumbnail is a PNG"
    );
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png).unwrap();
    let (tw, th) = (img.width(), img.height());
    eprintln!("thumbnail {tw}x{th} of composite {cw}x{ch}");
    assert!(tw.max(th) <= 512 && tw.min(th) > 0, "thumbnail {tw}x{th}");
    let (ra, rb) = (f64::from(tw) / f64::from(th), cw as f64 / ch as f64);
    assert!(
        (ra / rb - 1.0).abs() < 0.02,
        "aspect {ra} vs composite {rb}"
    );
}

#[test]
fn cogs_pass_gdal_validator() {
    let v = &full().listing;
    let mut cogs: Vec<&Value> = products(v, "analytic");
    cogs.push(product(v, "composite", None));
    cogs.push(product(v, "ndvi", None));
    assert_eq!(cogs.len(), 5);
    for p in cogs {
        assert!(p["media_type"]
            .as_str()
            .unwrap()
            .contains("profile=cloud-optimized"));
        assert_valid_cog(&path_of(p));
    }
}

// ---------------------------------------------------------------------------------------
// 4. Geolocation.

#[test]
fn geolocation_follows_the_orbit_and_scan_geometry() {
    let v = &full().listing;
    let sub = &v["subsatellite_first"];
    let (sub_lat, sub_lon) = (sub["lat"].as_f64().unwrap(), sub["lon"].as_f64().unwrap());
    eprintln!("sub-satellite point at the first line: {sub}");
    assert!(
        (sub_lat - -10.1).abs() < 0.2 && (sub_lon - 146.9).abs() < 0.2,
        "sub-satellite point {sub_lat}, {sub_lon} not near 10.1 S 146.9 E"
    );

    let gcps = gcps_of(&path_of(product(v, "raw_gcp_tiff", Some(64))));
    let first_line = gcps.iter().map(|g| g.line).fold(f64::INFINITY, f64::min);
    let last_line = gcps
        .iter()
        .map(|g| g.line)
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(
        first_line < 1.0 && last_line > 198.0,
        "GCP lines {first_line}..{last_line}"
    );
    let on_line = |line: f64| -> Vec<Gcp> {
        let mut l: Vec<Gcp> = gcps.iter().copied().filter(|g| g.line == line).collect();
        l.sort_by(|a, b| a.pixel.total_cmp(&b.pixel));
        l
    };
    let nearest = |line: &[Gcp], pixel: f64| -> Gcp {
        *line
            .iter()
            .min_by(|a, b| (a.pixel - pixel).abs().total_cmp(&(b.pixel - pixel).abs()))
            .unwrap()
    };
    let first = on_line(first_line);
    let last = on_line(last_line);

    // The centre column is close to the sub-satellite point. Not closer than ≈ 30 km: the
    // scan geometry applies roll 2.0° and pitch 0.4° (georef-lrpt's tuning), which move the
    // boresight ≈ 825 km × tan(2.04°) ≈ 29.4 km off nadir.
    let centre = nearest(&first, 784.0);
    let d = haversine_km(sub_lat, sub_lon, centre.lat, centre.lon);
    eprintln!("GCP {centre:?} is {d:.2} km from the sub-satellite point");
    assert!(
        d < 35.0,
        "centre GCP {d:.1} km from the sub-satellite point"
    );

    // Swath width edge to edge.
    let (c0, cn) = (first[0], first[first.len() - 1]);
    assert!(
        c0.pixel <= 1.0 && cn.pixel >= f64::from(WIDTH) - 1.0,
        "{c0:?} {cn:?}"
    );
    let swath = haversine_km(c0.lat, c0.lon, cn.lat, cn.lon);
    eprintln!("swath {swath:.1} km");
    assert!((2600.0..=3100.0).contains(&swath), "swath {swath:.1} km");

    // Direction of flight from the data; column 0 must be right of track.
    let centre_last = nearest(&last, 784.0);
    let southbound = centre_last.lat < centre.lat;
    let k = centre.lat.to_radians().cos();
    let along = (
        dlon(centre.lon, centre_last.lon) * k,
        centre_last.lat - centre.lat,
    );
    let to_c0 = (dlon(centre.lon, c0.lon) * k, c0.lat - centre.lat);
    let cross = along.0 * to_c0.1 - along.1 * to_c0.0;
    eprintln!(
        "pass is {}",
        if southbound {
            "southbound"
        } else {
            "northbound"
        }
    );
    assert!(
        cross < 0.0,
        "column 0 is not right of the track: {along:?} {to_c0:?}"
    );
    let c0_west = dlon(cn.lon, c0.lon) < 0.0;
    assert_eq!(
        c0_west, southbound,
        "column 0 should be west on a southbound pass, east on a northbound one: {c0:?} {cn:?}"
    );

    // Independent reference: georef-lrpt's expected GCPs for this recording
    // (src/test/resources/expected/2022_12_20_20_25_30.vrt, line 0.5; its pixel P is our
    // P - 1). Its line 0 uses the same first-row time stamp as ours.
    let georef = |pixel: f64, lat: f64, lon: f64, tol_km: f64| {
        let (glat, glon) = along_line(&first, pixel);
        let d = haversine_km(glat, glon, lat, lon);
        eprintln!("pixel {pixel}: {d:.2} km from georef-lrpt");
        assert!(
            d < tol_km,
            "pixel {pixel}: {d:.2} km from georef-lrpt's GCP"
        );
    };
    georef(0.5, -8.290_716_756_079_693, 135.372_864_371_157_2, 6.0);
    georef(1567.5, -12.039_967_777_260_19, 161.579_343_206_235_34, 6.0);
    // Its pixels 768.5 and 800.5, interpolated to its 785.5 (our 784.5).
    let f = 17.0 / 32.0;
    let lat = -10.213_935_119_751_966 + f * (-10.257_469_328_895_397 - -10.213_935_119_751_966);
    let lon = 146.996_621_341_598_74 + f * (147.290_290_069_065_92 - 146.996_621_341_598_74);
    georef(784.5, lat, lon, 3.0);
}

// ---------------------------------------------------------------------------------------
// 5. Errors.

/// Runs `downlink image` expecting a usage error before anything is written.
fn image_error(profile: &str, tle: &Path, date: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let args = image_args(profile, tle, date, &out, &[data(VCDU[0])]);
    let o = downlink(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(2),
        "status {:?}, stderr: {stderr}",
        o.status
    );
    assert!(
        o.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!out.exists(), "{} created on error", out.display());
    stderr
}

#[test]
fn profile_without_imager_is_refused() {
    let e = image_error("jpss", &data(TLE), "2022-12-20");
    assert!(e.contains("no imaging instrument"), "{e}");
}

#[test]
fn tle_file_without_the_spacecraft_is_refused() {
    let e = image_error(
        "meteor-lrpt",
        &data("tle/noaa20_noaa18_snpp_2024-12-01.tle"),
        "2022-12-20",
    );
    assert!(e.contains("no TLE for NORAD 40069"), "{e}");
}

#[test]
fn invalid_date_is_refused() {
    let e = image_error("meteor-lrpt", &data(TLE), "2022-13-01");
    assert!(e.contains("--date"), "{e}");
}

#[test]
fn tle_with_bad_checksum_is_refused_naming_the_file() {
    let text = std::fs::read_to_string(data(TLE)).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let l2 = lines
        .iter_mut()
        .find(|l| l.starts_with("2 40069"))
        .expect("line 2 of 40069");
    // One digit of the inclination (column 9 onwards) changed: the checksum no longer fits.
    let i = l2
        .char_indices()
        .skip(8)
        .find(|(_, c)| c.is_ascii_digit())
        .map(|(i, _)| i)
        .unwrap();
    let d = l2.as_bytes()[i] - b'0';
    l2.replace_range(i..=i, &((d + 1) % 10).to_string());
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("corrupted_40069.tle");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    assert_ne!(std::fs::read_to_string(&bad).unwrap().trim(), text.trim());

    let e = image_error("meteor-lrpt", &bad, "2022-12-20");
    assert!(
        e.contains(&bad.display().to_string()),
        "names the file: {e}"
    );
    assert!(e.contains("checksum"), "{e}");
}

// ---------------------------------------------------------------------------------------
// 6. products.json.

#[test]
fn products_json_equals_the_printed_listing() {
    let run = full();
    let text = std::fs::read(run.out.join("products.json")).unwrap();
    let written: Value = serde_json::from_slice(&text).expect("products.json is JSON");
    assert_eq!(written, run.listing);
}
