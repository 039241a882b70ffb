//! End-to-end: how exactly the georeferencing of `downlink image`'s products follows the
//! MSU-MR scan model, at every pixel of the real Meteor-M2 pass (swath edges included).
//!
//! MSU-MR's ground pixel grows from ≈1 km at nadir to 5–7 km at ±55°, so a spline through a
//! GCP every 56 columns departs from the scan model by pixels near the edges. The products
//! therefore also carry per-pixel geolocation arrays (`geolocation.tif`, referenced by the
//! raw GeoTIFFs' `GEOLOCATION` metadata), and the analytic grid is warped through them.
//!
//! Measured here, in the product's own pixels:
//! * `raw_gcp_tiff` through GDAL's geolocation-array transformer (`METHOD=GEOLOC_ARRAY`, what
//!   `gdalwarp -geoloc` applies), opened from the product directory as a user would: every
//!   pixel centre's GDAL lon/lat against the exact model, the ground offset converted to raw
//!   pixels with the model's local Jacobian. The thin-plate spline through the GCPs
//!   (`METHOD=GCP_TPS`, `gdalwarp -tps`, what tools without geolocation arrays use) is
//!   held to the same bound, in both directions.
//! * the analytic COGs: every output pixel of every other row (all of them near the swath
//!   edges) mapped to the raw image by the warper's own transformer chain (GenImgProj with
//!   the pipeline's method, wrapped in the approximating transformer at the pipeline's error
//!   threshold), then the exact model's lon/lat at that raw position through the COG's
//!   geotransform, compared with the output pixel centre, in output pixels. That the COGs
//!   really are that warp is checked by re-warping a raw GeoTIFF with the pipeline's options
//!   and comparing the pixels.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    // GDAL's transformers (GDALCreateGenImgProjTransformer2, GDALCreateApproxTransformer)
    // have no safe wrapper in the gdal crate; they are called through gdal-sys below.
    unsafe_code
)]

use std::ffi::{c_char, c_int, c_void, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use gdal::{Dataset, Metadata};
use imagery::geoloc::{LineFrame, ScanGeometry};
use imagery::msumr::Assembler;
use imagery::orbit::Propagator;
use raster::products::{self as prod, GcpTransform};
use raster::scene::{self, PassDate};
use serde_json::Value;

const VCDU: [&str; 3] = [
    "vcdu/meteor-m2/2022_12_20_20_25_30.vcdu",
    "vcdu/meteor-m2/2022_12_20_20_25_40.vcdu",
    "vcdu/meteor-m2/2022_12_20_20_25_50.vcdu",
];
const TLE: &str = "tle/meteor-m2_40069_2022-12-20.tle";
/// The goal: georeferencing within a quarter pixel of the scan model everywhere.
const MAX_PX: f64 = 0.25;
/// km per degree of latitude on the mean sphere.
const KM_PER_DEG: f64 = std::f64::consts::PI / 180.0 * 6371.0088;

fn data(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    assert!(p.exists(), "test data missing: {}", p.display());
    p
}

/// The exact scan model of the pass: the orbital frame of every image line.
struct Exact {
    geometry: ScanGeometry,
    frames: Vec<LineFrame>,
    width: usize,
}

impl Exact {
    fn of_real_pass() -> Self {
        let profile = decoder::Profile::builtin("meteor-lrpt").unwrap();
        let files: Vec<PathBuf> = VCDU.iter().map(|f| data(f)).collect();
        let pass = scene::collect_packets(&profile, decoder::InputFormat::Frames, &files).unwrap();
        let mut asm = Assembler::new();
        for p in &pass.packets {
            let _ = asm.push_space_packet(p);
        }
        let img = asm.build();
        let date = chrono::NaiveDate::from_ymd_opt(2022, 12, 20).unwrap();
        let times = scene::line_times(&img, PassDate::Date(date));
        let tle = scene::choose_tle(&[data(TLE)], 40069, None).unwrap();
        let geo = imagery::geoloc::Geolocator::new(
            Propagator::new(&tle.elements).unwrap(),
            ScanGeometry::MSU_MR_LRPT,
        );
        let frames = times
            .iter()
            .map(|t| geo.line_frame(t.expect("every line has a time")).unwrap())
            .collect();
        Self {
            geometry: *geo.geometry(),
            frames,
            width: img.width,
        }
    }

    fn height(&self) -> usize {
        self.frames.len()
    }

    /// (lon, lat) of column coordinate `x` on line `line` (pixel-corner convention).
    fn at(&self, line: usize, x: f64) -> (f64, f64) {
        let p = self.frames[line].locate(&self.geometry, x).unwrap();
        (p.lon_deg, p.lat_deg)
    }

    /// (lon, lat) at raw image coordinates `(x, y)` (pixel-corner convention, the centre of
    /// line `l` at `y = l + 0.5`): exact across the line, linear in time between lines.
    fn at_xy(&self, x: f64, y: f64) -> (f64, f64) {
        let l = (y - 0.5).floor().clamp(0.0, (self.height() - 2) as f64);
        let f = y - 0.5 - l;
        let (a, b) = (self.at(l as usize, x), self.at(l as usize + 1, x));
        (a.0 + f * (b.0 - a.0), a.1 + f * (b.1 - a.1))
    }

    /// Distance, in raw pixels, between the pixel centre `(col, line)` and the raw position
    /// whose exact ground point is `(lon, lat)` (local linearisation of the model).
    fn raw_px_error(&self, line: usize, col: usize, lon: f64, lat: f64) -> f64 {
        let x = col as f64 + 0.5;
        let p = self.at(line, x);
        let en = |q: (f64, f64)| {
            (
                (q.0 - p.0) * KM_PER_DEG * p.1.to_radians().cos(),
                (q.1 - p.1) * KM_PER_DEG,
            )
        };
        let d = |a: (f64, f64), b: (f64, f64), n: f64| {
            let (a, b) = (en(a), en(b));
            ((b.0 - a.0) / n, (b.1 - a.1) / n)
        };
        let jc = d(self.at(line, x - 0.5), self.at(line, x + 0.5), 1.0);
        let (l0, l1) = (line.saturating_sub(1), (line + 1).min(self.height() - 1));
        let jl = d(self.at(l0, x), self.at(l1, x), (l1 - l0) as f64);
        let (e, n) = en((lon, lat));
        let det = jc.0 * jl.1 - jl.0 * jc.1;
        let dc = (jl.1 * e - jl.0 * n) / det;
        let dl = (-jc.1 * e + jc.0 * n) / det;
        dc.hypot(dl)
    }
}

/// A GDAL transformer chain: GenImgProj, optionally inside the approximating transformer
/// (what `gdalwarp -et` uses).
struct Transformer {
    gen_img: *mut c_void,
    approx: *mut c_void,
}

impl Transformer {
    fn new(src: &Dataset, dst: Option<&Dataset>, options: &[&str], max_error: f64) -> Self {
        let owned: Vec<CString> = options.iter().map(|o| CString::new(*o).unwrap()).collect();
        let mut ptrs: Vec<*mut c_char> = owned.iter().map(|s| s.as_ptr().cast_mut()).collect();
        ptrs.push(std::ptr::null_mut());
        let dst = dst.map_or(std::ptr::null_mut(), Dataset::c_dataset);
        // SAFETY: both datasets outlive the transformer (it is used and dropped inside the
        // test's scope); the option list is NUL-terminated and outlives the call.
        let gen_img = unsafe {
            gdal_sys::GDALCreateGenImgProjTransformer2(src.c_dataset(), dst, ptrs.as_mut_ptr())
        };
        assert!(!gen_img.is_null(), "no transformer for {options:?}");
        let approx = if max_error > 0.0 {
            // SAFETY: gen_img is a valid GenImgProj transformer.
            unsafe {
                gdal_sys::GDALCreateApproxTransformer(
                    Some(gdal_sys::GDALGenImgProjTransform),
                    gen_img,
                    max_error,
                )
            }
        } else {
            std::ptr::null_mut()
        };
        Self { gen_img, approx }
    }

    /// Transforms the points in place; `false` where GDAL reports failure.
    fn transform(&self, dst_to_src: bool, x: &mut [f64], y: &mut [f64]) -> Vec<bool> {
        let n = x.len();
        assert_eq!(y.len(), n);
        let mut z = vec![0.0; n];
        let mut ok: Vec<c_int> = vec![0; n];
        if self.approx.is_null() {
            // SAFETY: the transformer is valid; every array has n elements.
            unsafe {
                gdal_sys::GDALGenImgProjTransform(
                    self.gen_img,
                    c_int::from(dst_to_src),
                    n as c_int,
                    x.as_mut_ptr(),
                    y.as_mut_ptr(),
                    z.as_mut_ptr(),
                    ok.as_mut_ptr(),
                )
            };
        } else {
            // SAFETY: the transformer is valid; every array has n elements.
            unsafe {
                gdal_sys::GDALApproxTransform(
                    self.approx,
                    c_int::from(dst_to_src),
                    n as c_int,
                    x.as_mut_ptr(),
                    y.as_mut_ptr(),
                    z.as_mut_ptr(),
                    ok.as_mut_ptr(),
                )
            };
        }
        ok.into_iter().map(|v| v != 0).collect()
    }
}

impl Drop for Transformer {
    fn drop(&mut self) {
        if !self.approx.is_null() {
            // SAFETY: created above, destroyed once; it does not own the GenImgProj one.
            unsafe { gdal_sys::GDALDestroyApproxTransformer(self.approx) };
        }
        // SAFETY: created above, destroyed once, after the transformer that used it.
        unsafe { gdal_sys::GDALDestroyGenImgProjTransformer(self.gen_img) };
    }
}

/// Largest error, where, and the largest error of every raw column.
struct Worst {
    max: f64,
    at: (f64, f64),
    per_column: Vec<f64>,
    count: usize,
}

impl Worst {
    fn new(width: usize) -> Self {
        Self {
            max: 0.0,
            at: (f64::NAN, f64::NAN),
            per_column: vec![0.0; width],
            count: 0,
        }
    }

    fn add(&mut self, x: f64, y: f64, err: f64) {
        assert!(err.is_finite(), "error at raw ({x}, {y}) is {err}");
        self.count += 1;
        let col = (x.max(0.0) as usize).min(self.per_column.len() - 1);
        self.per_column[col] = self.per_column[col].max(err);
        if err > self.max {
            self.max = err;
            self.at = (x, y);
        }
    }

    fn describe(&self, what: &str, unit: &str) -> String {
        let edge =
            |r: std::ops::Range<usize>| self.per_column[r].iter().copied().fold(0.0_f64, f64::max);
        let w = self.per_column.len();
        format!(
            "{what}: max {:.3} {unit} at raw column {:.1}, line {:.1} ({} points); \
             max in columns 0-99 {:.3}, nadir 684-883 {:.3}, last 100 {:.3}",
            self.max,
            self.at.0,
            self.at.1,
            self.count,
            edge(0..100),
            edge(w / 2 - 100..w / 2 + 100),
            edge(w - 100..w)
        )
    }
}

/// Every pixel centre of the raw image through GDAL's transformer `method`, against the
/// exact model, in raw pixels.
fn raw_errors(exact: &Exact, raw: &Dataset, method: &str) -> Worst {
    let (w, h) = (exact.width, exact.height());
    let t = Transformer::new(raw, None, &[&format!("METHOD={method}")], 0.0);
    let mut worst = Worst::new(w);
    for line in 0..h {
        let mut x: Vec<f64> = (0..w).map(|c| c as f64 + 0.5).collect();
        let mut y = vec![line as f64 + 0.5; w];
        let ok = t.transform(false, &mut x, &mut y);
        for c in 0..w {
            assert!(ok[c], "{method}: GDAL failed at column {c}, line {line}");
            let err = exact.raw_px_error(line, c, x[c], y[c]);
            worst.add(c as f64 + 0.5, line as f64 + 0.5, err);
        }
    }
    worst
}

/// The exact lon/lat of every pixel centre of the raw image back through GDAL's transformer
/// `method` (the direction a warp uses), against the pixel centre, in raw pixels.
fn raw_inverse_errors(exact: &Exact, raw: &Dataset, method: &str) -> Worst {
    let (w, h) = (exact.width, exact.height());
    let t = Transformer::new(raw, None, &[&format!("METHOD={method}")], 0.0);
    let mut worst = Worst::new(w);
    for line in 0..h {
        let (mut x, mut y): (Vec<f64>, Vec<f64>) =
            (0..w).map(|c| exact.at(line, c as f64 + 0.5)).unzip();
        let ok = t.transform(true, &mut x, &mut y);
        for c in 0..w {
            assert!(ok[c], "{method}: GDAL failed at column {c}, line {line}");
            let (cx, cy) = (c as f64 + 0.5, line as f64 + 0.5);
            worst.add(cx, cy, (x[c] - cx).hypot(y[c] - cy));
        }
    }
    worst
}

/// Output pixels of `cog` mapped to the raw image by the warper's transformer chain; the
/// exact model's lon/lat there through the COG's geotransform, against the output pixel
/// centre, in output pixels. Every other row; in it every other pixel, and every pixel
/// that lands within 32 columns of a swath edge.
fn cog_errors(exact: &Exact, raw: &Dataset, cog: &Dataset) -> Worst {
    let opts = scene::warp_options();
    let method = match opts.transform {
        GcpTransform::GeolocationArrays => "METHOD=GEOLOC_ARRAY",
        GcpTransform::ThinPlateSpline => "METHOD=GCP_TPS",
        GcpTransform::Polynomial(_) => "METHOD=GCP_POLYNOMIAL",
        other => panic!("no GDAL transformer method for {other:?}"),
    };
    let t = Transformer::new(raw, Some(cog), &[method], opts.error_threshold_px);
    let gt = cog.geo_transform().unwrap();
    let (cw, ch) = cog.raster_size();
    let (w, h) = (exact.width as f64, exact.height() as f64);
    let mut worst = Worst::new(exact.width);
    for row in (0..ch).step_by(2) {
        let mut x: Vec<f64> = (0..cw).map(|i| i as f64 + 0.5).collect();
        let mut y = vec![row as f64 + 0.5; cw];
        let ok = t.transform(true, &mut x, &mut y);
        for i in 0..cw {
            let (sx, sy) = (x[i], y[i]);
            let inside = ok[i] && (0.0..=w).contains(&sx) && (0.0..=h).contains(&sy);
            let near_edge = sx < 32.0 || sx > w - 32.0;
            if !inside || !(i % 2 == 0 || near_edge) {
                continue;
            }
            let (lon, lat) = exact.at_xy(sx, sy);
            let (px, py) = ((lon - gt[0]) / gt[1], (lat - gt[3]) / gt[5]);
            let err = (px - (i as f64 + 0.5)).hypot(py - (row as f64 + 0.5));
            worst.add(sx, sy, err);
        }
    }
    worst
}

fn run_image(out: &Path) -> Value {
    let files: Vec<PathBuf> = VCDU.iter().map(|f| data(f)).collect();
    let output = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(["image", "--profile", "meteor-lrpt", "--format", "frames"])
        .args(["--date", "2022-12-20", "--tle"])
        .arg(data(TLE))
        .arg("--out")
        .arg(out)
        .args(&files)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "downlink image failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.join("products.json")).unwrap()).unwrap()
}

fn products<'a>(listing: &'a Value, kind: &str) -> Vec<&'a Value> {
    listing["products"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == kind)
        .collect()
}

fn channel_file(listing: &Value, kind: &str, channel: &str) -> String {
    let p = products(listing, kind)
        .into_iter()
        .find(|p| p["channel"] == channel)
        .unwrap_or_else(|| panic!("no {kind} for channel {channel}"));
    let path = PathBuf::from(p["path"].as_str().unwrap());
    path.file_name().unwrap().to_str().unwrap().to_owned()
}

/// The only test in this file: it changes the working directory to the product directory
/// (GDAL 3.6 opens the geolocation arrays' file name relative to it, as a user's
/// `cd products && gdalwarp -geoloc …` does).
#[test]
fn products_follow_the_scan_model_to_a_quarter_pixel_everywhere() {
    let dir = tempfile::Builder::new()
        .prefix("e2e_geoloc-")
        .tempdir()
        .unwrap();
    let out = dir.path().join("products");
    let listing = run_image(&out);
    let exact = Exact::of_real_pass();
    assert_eq!(listing["lines"].as_u64(), Some(exact.height() as u64));
    assert_eq!(products(&listing, "geolocation").len(), 1);
    std::env::set_current_dir(&out).unwrap();

    let mut report = Vec::new();
    for channel in ["1", "2", "5"] {
        let raw_name = channel_file(&listing, "raw_gcp_tiff", channel);
        let raw = Dataset::open(&raw_name).unwrap();
        assert_eq!(
            raw.metadata_domain("GEOLOCATION")
                .unwrap_or_default()
                .iter()
                .find(|i| i.starts_with("X_DATASET=")),
            Some(&format!("X_DATASET={}", scene::GEOLOCATION_FILE))
        );
        let geoloc = raw_errors(&exact, &raw, "GEOLOC_ARRAY");
        report.push(geoloc.describe(&format!("ch{channel} raw_gcp_tiff GEOLOC_ARRAY"), "px"));
        assert!(
            geoloc.max <= MAX_PX,
            "{}",
            geoloc.describe("raw_gcp_tiff through its geolocation arrays", "px")
        );
        if channel == "1" {
            // The GCPs alone, as `gdalwarp -tps` applies them: both directions.
            let forward = raw_errors(&exact, &raw, "GCP_TPS");
            let inverse = raw_inverse_errors(&exact, &raw, "GCP_TPS");
            for (t, dir) in [
                (&forward, "pixel to lon/lat"),
                (&inverse, "lon/lat to pixel"),
            ] {
                let what = format!("ch1 raw_gcp_tiff GCP_TPS {dir}");
                report.push(t.describe(&what, "px"));
                assert!(t.max <= MAX_PX, "{}", t.describe(&what, "px"));
            }
        }

        let cog_name = channel_file(&listing, "analytic", channel);
        let cog = Dataset::open(&cog_name).unwrap();
        let warped = cog_errors(&exact, &raw, &cog);
        report.push(warped.describe(&format!("ch{channel} analytic COG"), "output px"));
        assert!(
            warped.max <= MAX_PX,
            "{}",
            warped.describe("analytic COG", "output px")
        );

        // The COG is that warp: re-warping the raw GeoTIFF with the pipeline's options gives
        // the same grid and the same pixels.
        let again = prod::warp_to_epsg4326_mem(&raw, &scene::warp_options()).unwrap();
        assert_eq!(again.geo_transform().unwrap(), cog.geo_transform().unwrap());
        assert_eq!(again.raster_size(), cog.raster_size());
        let a = again.rasterband(1).unwrap().read_band_as::<u8>().unwrap();
        let b = cog.rasterband(1).unwrap().read_band_as::<u8>().unwrap();
        // Wherever both hold data the counts are equal; only the swath's outline may differ
        // by a pixel (the pipeline warps all channels in one pass, here one channel alone).
        let pairs = || a.data().iter().zip(b.data());
        let differ = pairs()
            .filter(|(x, y)| **x != 0 && **y != 0 && x != y)
            .count();
        assert_eq!(differ, 0, "ch{channel}: the COG is not the pipeline's warp");
        let outline = pairs().filter(|(x, y)| (**x == 0) != (**y == 0)).count();
        assert!(
            outline * 200 < a.data().len(),
            "ch{channel}: {outline} pixels differ in coverage"
        );
    }
    // Composite and NDVI share the analytic grid.
    let grid = Dataset::open(channel_file(&listing, "analytic", "1"))
        .unwrap()
        .geo_transform()
        .unwrap();
    for kind in ["composite", "ndvi"] {
        let p = products(&listing, kind)[0]["path"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            Dataset::open(&p).unwrap().geo_transform().unwrap(),
            grid,
            "{kind}"
        );
    }
    eprintln!("{}", report.join("\n"));
}
