//! End-to-end tests of the product writers against the real GDAL 3.6.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic
)]

use std::path::Path;
use std::process::Command;

use gdal::raster::{ColorInterpretation, GdalDataType};
use gdal::{Dataset, Metadata};
use raster::products::*;
use raster::Error;

/// GDAL's COG validator (Debian python3-gdal).
const COG_VALIDATOR: &str =
    "/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py";
const PYTHON: &str = "/usr/bin/python3";

const W: usize = MSU_MR_WIDTH;

struct Swath {
    height: usize,
    bands: Vec<(Vec<u8>, Vec<bool>, &'static str)>,
    gcps: Vec<Gcp>,
}

/// Plausible MSU-MR-like geometry around 10°S 147°E: ~25° of longitude
/// across (edges stretched by a cubic term, like the real scan), 0.0075°
/// of latitude per line (1.5° per 200 lines), with a small heading skew.
fn geolocate(pixel: f64, line: f64, height: usize) -> (f64, f64) {
    let u = pixel / W as f64 - 0.5;
    let t = line - height as f64 / 2.0;
    let lon = 147.0 + 22.0 * u + 12.0 * u.powi(3) + 0.0015 * t;
    let lat = -10.0 - 0.0075 * t + 0.4 * u * u;
    (lat, lon)
}

/// Band 1 "VIS": gradient across (0 at x=0 → valid zero), band 2 "NIR":
/// gradient along, band 3: product pattern. Lines 40..44 are lost (invalid
/// in all bands); band 2 additionally misses columns 700..710.
fn synthetic_swath(height: usize) -> Swath {
    synthetic_swath_gcp_step(height, 25)
}

fn synthetic_swath_gcp_step(height: usize, gcp_line_step: usize) -> Swath {
    let area = W * height;
    let mut b1 = vec![0u8; area];
    let mut b2 = vec![0u8; area];
    let mut b3 = vec![0u8; area];
    let mut v1 = vec![true; area];
    let mut v2 = vec![true; area];
    for y in 0..height {
        for x in 0..W {
            let i = y * W + x;
            b1[i] = (x * 255 / (W - 1)) as u8;
            b2[i] = (20 + y * 200 / height) as u8;
            b3[i] = ((x / 8 + y / 8) % 200 + 30) as u8;
            if (40..44).contains(&y) {
                v1[i] = false;
                v2[i] = false;
            }
            if (700..710).contains(&x) {
                v2[i] = false;
            }
        }
    }
    let v3 = v1.clone();
    let mut gcps = Vec::new();
    let mut lines: Vec<usize> = (0..height).step_by(gcp_line_step).collect();
    if lines.last() != Some(&(height - 1)) {
        lines.push(height - 1);
    }
    for &line in &lines {
        for col in (0..W).step_by(112).chain([W - 1]) {
            let (pixel, lf) = (col as f64 + 0.5, line as f64 + 0.5);
            let (lat, lon) = geolocate(pixel, lf, height);
            gcps.push(Gcp {
                pixel,
                line: lf,
                lat,
                lon,
            });
        }
    }
    Swath {
        height,
        bands: vec![
            (b1, v1, "MSU-MR ch1 VIS 0.5-0.7um"),
            (b2, v2, "MSU-MR ch2 NIR 0.7-1.1um"),
            (b3, v3, "MSU-MR ch3 1.6-1.8um"),
        ],
        gcps,
    }
}

impl Swath {
    fn band_refs(&self) -> Vec<Band<'_>> {
        self.bands
            .iter()
            .map(|(p, v, d)| Band {
                pixels: p,
                valid: v,
                description: d,
            })
            .collect()
    }
}

const LINK_JSON: &str = r#"{"frames_ok":1234,"frames_corrected":56,"frames_lost":7}"#;

fn write_raw(dir: &Path, swath: &Swath) -> std::path::PathBuf {
    let raw = dir.join("raw_swath.tif");
    write_raw_gcp_tiff(
        &raw,
        W,
        swath.height,
        &swath.band_refs(),
        &swath.gcps,
        &[
            ("DOWNLINK_PASS_ID", "M2-3_20240101T0102Z"),
            ("LINK_QUALITY", LINK_JSON),
        ],
    )
    .unwrap();
    raw
}

fn run_python_validator(path: &Path) -> String {
    let out = Command::new(PYTHON)
        .arg(COG_VALIDATOR)
        .arg(path)
        .output()
        .expect("running the GDAL COG validator");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "validator failed on {path:?}: {text}");
    assert!(
        text.contains("is a valid cloud optimized GeoTIFF"),
        "unexpected validator output: {text}"
    );
    text
}

fn pixel_of(gt: &[f64; 6], lon: f64, lat: f64) -> (usize, usize) {
    (
        ((lon - gt[0]) / gt[1]).floor() as usize,
        ((lat - gt[3]) / gt[5]).floor() as usize,
    )
}

#[test]
fn raw_gcp_tiff_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let swath = synthetic_swath(200);
    let raw = write_raw(dir.path(), &swath);
    let ds = Dataset::open(&raw).unwrap();
    assert_eq!(ds.raster_size(), (W, 200));
    assert_eq!(ds.raster_count(), 3);
    // Swath geometry: GCPs only, no geotransform.
    assert!(ds.geo_transform().is_err());
    // GCPs: count, CRS authority, x = lon, y = lat.
    let gcps = ds.gcps();
    assert_eq!(gcps.len(), swath.gcps.len());
    assert_eq!(gcps.len(), 9 * 15); // lines 0,25..175,199 × 15 columns
    assert_eq!(ds.gcp_spatial_ref().unwrap().auth_code().unwrap(), 4326);
    for (got, want) in gcps.iter().zip(&swath.gcps) {
        assert_eq!(got.pixel(), want.pixel);
        assert_eq!(got.line(), want.line);
        assert!((got.x() - want.lon).abs() < 1e-9, "x must be longitude");
        assert!((got.y() - want.lat).abs() < 1e-9, "y must be latitude");
    }
    // Metadata items.
    assert_eq!(
        ds.metadata_item("DOWNLINK_PASS_ID", "").as_deref(),
        Some("M2-3_20240101T0102Z")
    );
    let lq: serde_json::Value =
        serde_json::from_str(&ds.metadata_item("LINK_QUALITY", "").unwrap()).unwrap();
    assert_eq!(lq["frames_lost"], 7);
    assert_eq!(
        ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE")
            .as_deref(),
        Some("DEFLATE")
    );
    for (i, (pixels, valid, desc)) in swath.bands.iter().enumerate() {
        let band = ds.rasterband(i + 1).unwrap();
        assert_eq!(band.band_type(), GdalDataType::UInt8);
        assert_eq!(band.no_data_value(), Some(0.0));
        assert_eq!(band.description().unwrap(), *desc);
        assert_eq!(band.block_size(), (256, 256));
        let data = band.read_band_as::<u8>().unwrap().into_shape_and_vec().1;
        for ((&got, &p), &v) in data.iter().zip(pixels).zip(valid) {
            let want = if v { p.max(1) } else { 0 };
            assert_eq!(got, want);
        }
    }
    // Valid zeros were lifted to 1, lost lines are nodata.
    let b1 = ds.rasterband(1).unwrap().read_band_as::<u8>().unwrap();
    assert_eq!(b1.data()[10 * W], 1);
    assert_eq!(b1.data()[41 * W + 800], 0);
}

#[test]
fn warp_cog_ndvi_composite_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let swath = synthetic_swath(200);
    let raw = write_raw(dir.path(), &swath);
    let src = Dataset::open(&raw).unwrap();

    // --- warp (TPS, suggested output) ---
    let warped_path = dir.path().join("warped.tif");
    let warped = warp_to_epsg4326(&src, &warped_path, &WarpOptions::default()).unwrap();
    assert_eq!(warped.spatial_ref().unwrap().auth_code().unwrap(), 4326);
    assert!(warped.gcps().is_empty());
    let gt = warped.geo_transform().unwrap();
    let (ww, wh) = warped.raster_size();
    println!("warped grid {ww}x{wh}, gt {gt:?}");
    assert!(gt[1] > 0.0 && gt[5] < 0.0 && gt[2] == 0.0 && gt[4] == 0.0);
    let (west, north) = (gt[0], gt[3]);
    let (east, south) = (gt[0] + gt[1] * ww as f64, gt[3] + gt[5] * wh as f64);
    let lon_min = swath.gcps.iter().map(|g| g.lon).fold(f64::MAX, f64::min);
    let lon_max = swath.gcps.iter().map(|g| g.lon).fold(f64::MIN, f64::max);
    let lat_min = swath.gcps.iter().map(|g| g.lat).fold(f64::MAX, f64::min);
    let lat_max = swath.gcps.iter().map(|g| g.lat).fold(f64::MIN, f64::max);
    println!("GCP extent lon {lon_min:.3}..{lon_max:.3} lat {lat_min:.3}..{lat_max:.3}");
    println!("warped extent lon {west:.3}..{east:.3} lat {south:.3}..{north:.3}");
    assert!(west <= lon_min && east >= lon_max && south <= lat_min && north >= lat_max);
    // Not absurdly larger than the swath either (within 0.5°).
    assert!(lon_min - west < 0.5 && east - lon_max < 0.5);
    assert!(lat_min - south < 0.5 && north - lat_max < 0.5);
    // Metadata and band descriptions carried over.
    assert_eq!(
        warped.metadata_item("DOWNLINK_PASS_ID", "").as_deref(),
        Some("M2-3_20240101T0102Z")
    );
    assert_eq!(
        warped.metadata_item("LINK_QUALITY", "").as_deref(),
        Some(LINK_JSON)
    );
    for (i, (_, _, desc)) in swath.bands.iter().enumerate() {
        let band = warped.rasterband(i + 1).unwrap();
        assert_eq!(band.band_type(), GdalDataType::UInt8);
        assert_eq!(band.no_data_value(), Some(0.0));
        assert_eq!(band.description().unwrap(), *desc);
    }
    // Geolocation: at every interior GCP the warped across-track gradient
    // (band 1) must equal the source count of that pixel (TPS interpolates
    // the GCPs exactly; bilinear blur of a linear ramp is nil).
    let (grid, bands) = read_grid_bands(&warped).unwrap();
    assert_eq!(grid.geo_transform, gt);
    let mut checked = 0;
    let mut max_err = 0i32;
    for g in &swath.gcps {
        if g.line < 2.0 || g.line > 198.0 || g.pixel < 2.0 || g.pixel > W as f64 - 2.0 {
            continue;
        }
        if (38.0..46.0).contains(&g.line) {
            continue;
        }
        let (x, y) = pixel_of(&gt, g.lon, g.lat);
        let got = bands[0].pixels[y * ww + x] as i32;
        let want = ((g.pixel - 0.5) as usize * 255 / (W - 1)).max(1) as i32;
        max_err = max_err.max((got - want).abs());
        checked += 1;
    }
    println!("checked {checked} GCP positions, max |warped - source| = {max_err} counts");
    assert!(checked > 90);
    // Output pixel ≈ 0.015° wide near the edges where the source pixel is
    // ~0.025° of longitude: allow 3 counts (~18 source pixels of ramp).
    assert!(max_err <= 3, "max error {max_err}");
    // Nodata is preserved: outside the skewed swath and in lost lines.
    let nodata = bands[0].valid.iter().filter(|v| !**v).count();
    assert!(nodata > 0);
    assert!(bands[0].valid[pixel_of(&gt, 147.0, -10.0).1 * ww + pixel_of(&gt, 147.0, -10.0).0]);
    // Bilinear at the suggested (~1.8 km) pixel size bridges the 4 lost
    // lines (GDAL widens the kernel when downsampling); nearest at a fine
    // grid keeps them as nodata.
    let fine = warp_to_epsg4326_mem(
        &src,
        &WarpOptions {
            resolution_deg: Some(0.002),
            resampling: Resampling::Nearest,
            ..WarpOptions::default()
        },
    )
    .unwrap();
    let fgt = fine.geo_transform().unwrap();
    let (fw, _) = fine.raster_size();
    let fb = fine.rasterband(1).unwrap().read_band_as::<u8>().unwrap();
    let (lat, lon) = geolocate(784.0, 42.0, 200);
    let (x, y) = pixel_of(&fgt, lon, lat);
    assert_eq!(fb.data()[y * fw + x], 0, "lost line must stay nodata");
    let (lat, lon) = geolocate(784.0, 60.0, 200);
    let (x, y) = pixel_of(&fgt, lon, lat);
    assert_eq!(fb.data()[y * fw + x], (783 * 255 / (W - 1)) as u8);

    // --- imposed, aligned resolution ---
    let coarse = warp_to_epsg4326_mem(
        &src,
        &WarpOptions {
            resolution_deg: Some(0.05),
            target_aligned_pixels: true,
            resampling: Resampling::Cubic,
            ..WarpOptions::default()
        },
    )
    .unwrap();
    let cgt = coarse.geo_transform().unwrap();
    assert!((cgt[1] - 0.05).abs() < 1e-12 && (cgt[5] + 0.05).abs() < 1e-12);
    assert!(((cgt[0] / 0.05).round() * 0.05 - cgt[0]).abs() < 1e-9);
    assert_eq!(coarse.rasterband(1).unwrap().no_data_value(), Some(0.0));

    // Polynomial order 2 also works (for comparison) but TPS is default.
    let poly = warp_to_epsg4326_mem(
        &src,
        &WarpOptions {
            transform: GcpTransform::Polynomial(2),
            ..WarpOptions::default()
        },
    )
    .unwrap();
    assert_eq!(poly.spatial_ref().unwrap().auth_code().unwrap(), 4326);

    // --- COG (DEFLATE) + validators ---
    let cog_path = dir.path().join("warped_cog.tif");
    let report = write_cog(&warped, &cog_path, &CogOptions::default()).unwrap();
    println!("COG report {report:?}");
    assert_eq!(report.compression.as_deref(), Some("DEFLATE"));
    assert!(report.overview_count >= 1);
    assert_eq!(report.block_size, (512, 512));
    assert_eq!(validate_cog(&cog_path).unwrap(), report);
    println!("{}", run_python_validator(&cog_path).trim());
    let cog = Dataset::open(&cog_path).unwrap();
    assert_eq!(cog.spatial_ref().unwrap().auth_code().unwrap(), 4326);
    assert_eq!(cog.geo_transform().unwrap(), gt);
    assert_eq!(cog.rasterband(1).unwrap().no_data_value(), Some(0.0));
    assert_eq!(
        cog.metadata_item("DOWNLINK_PASS_ID", "").as_deref(),
        Some("M2-3_20240101T0102Z")
    );
    // Lossless: identical pixels.
    let a = cog.rasterband(2).unwrap().read_band_as::<u8>().unwrap();
    assert_eq!(a.data(), bands[1].pixels.as_slice());
    // A plain tiled GeoTIFF is not a COG.
    match validate_cog(&warped_path) {
        Err(Error::NotCog { problems, .. }) => {
            println!("plain GeoTIFF rejected: {problems:?}");
            assert!(problems.iter().any(|p| p.contains("ghost area")));
        }
        other => panic!("plain GeoTIFF accepted as COG: {other:?}"),
    }

    // ZSTD variant.
    let zstd_path = dir.path().join("warped_zstd.tif");
    let zr = write_cog(
        &warped,
        &zstd_path,
        &CogOptions {
            compression: CogCompression::Zstd { level: 9 },
            ..CogOptions::default()
        },
    )
    .unwrap();
    assert_eq!(zr.compression.as_deref(), Some("ZSTD"));
    run_python_validator(&zstd_path);

    // --- NDVI on the warped grid ---
    let (vis, nir) = (bands[0].as_band(), bands[1].as_band());
    let ndvi_path = dir.path().join("ndvi.tif");
    write_ndvi(
        &ndvi_path,
        &grid,
        &vis,
        &nir,
        &[("DOWNLINK_PASS_ID", "M2-3_20240101T0102Z")],
        &RasterFormat::Cog(CogOptions::default()),
    )
    .unwrap();
    run_python_validator(&ndvi_path);
    let nd = Dataset::open(&ndvi_path).unwrap();
    assert_eq!(nd.spatial_ref().unwrap().auth_code().unwrap(), 4326);
    assert_eq!(nd.geo_transform().unwrap(), gt);
    let nb = nd.rasterband(1).unwrap();
    assert_eq!(nb.band_type(), GdalDataType::Float32);
    assert!(nb.no_data_value().unwrap().is_nan());
    assert_eq!(nb.description().unwrap(), "NDVI");
    assert!(nd
        .metadata_item("NDVI_KIND", "")
        .unwrap()
        .contains("uncalibrated"));
    let values = nb.read_band_as::<f32>().unwrap().into_shape_and_vec().1;
    let mut finite = 0;
    for (i, &got) in values.iter().enumerate() {
        let (v, n) = (vis.pixels[i], nir.pixels[i]);
        if vis.valid[i] && nir.valid[i] {
            let want = (n as f32 - v as f32) / (n as f32 + v as f32);
            assert_eq!(got, want, "pixel {i}");
            finite += 1;
        } else {
            assert!(got.is_nan(), "pixel {i} should be NaN");
        }
    }
    assert!(finite > ww * wh / 2);

    // --- RGB composite + thumbnail ---
    let rgb_path = dir.path().join("rgb.tif");
    let rgb = [
        &bands[2].as_band(),
        &bands[1].as_band(),
        &bands[0].as_band(),
    ];
    write_rgb_composite(&rgb_path, &grid, rgb, &[], &RasterFormat::GeoTiff).unwrap();
    let cds = Dataset::open(&rgb_path).unwrap();
    assert_eq!(cds.raster_count(), 4);
    assert_eq!(cds.spatial_ref().unwrap().auth_code().unwrap(), 4326);
    let interps: Vec<_> = (1..=4)
        .map(|i| cds.rasterband(i).unwrap().color_interpretation())
        .collect();
    assert_eq!(
        interps,
        vec![
            ColorInterpretation::RedBand,
            ColorInterpretation::GreenBand,
            ColorInterpretation::BlueBand,
            ColorInterpretation::AlphaBand
        ]
    );
    let alpha = cds.rasterband(4).unwrap().read_band_as::<u8>().unwrap();
    for (i, &a) in alpha.data().iter().enumerate() {
        let all = bands.iter().all(|b| b.valid[i]);
        assert_eq!(a, if all { 255 } else { 0 });
    }
    let rgb_cog = dir.path().join("rgb_cog.tif");
    write_rgb_composite(
        &rgb_cog,
        &grid,
        rgb,
        &[],
        &RasterFormat::Cog(CogOptions::default()),
    )
    .unwrap();
    run_python_validator(&rgb_cog);

    let thumb = dir.path().join("thumb.png");
    let (tw, th) = write_rgb_thumbnail(&thumb, grid.width, grid.height, rgb, 512).unwrap();
    assert_eq!(tw.max(th), 512);
    let img = image::open(&thumb).unwrap().to_rgba8();
    assert_eq!((img.width() as usize, img.height() as usize), (tw, th));
    assert!(img.pixels().any(|p| p.0[3] == 0) && img.pixels().any(|p| p.0[3] == 255));

    // --- grey PNG of the raw band ---
    let png = dir.path().join("ch1.png");
    let (p, v, _) = &swath.bands[0];
    write_png_gray(&png, W, swath.height, p, v).unwrap();
    let g = image::open(&png).unwrap().to_luma_alpha8();
    assert_eq!(g.get_pixel(1567, 0).0, [255, 255]);
    assert_eq!(g.get_pixel(10, 41).0, [0, 0]);

    // Nothing but final products is left in the directory (no temp files).
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn ndvi_known_grid_values_geotiff() {
    let dir = tempfile::tempdir().unwrap();
    let grid = GeoGrid {
        width: 3,
        height: 2,
        geo_transform: [147.0, 0.01, 0.0, -10.0, 0.0, -0.01],
    };
    let vis = [10u8, 50, 0, 100, 30, 20];
    let nir = [30u8, 50, 0, 0, 90, 60];
    let vv = [true, true, true, true, false, true];
    let nv = [true, true, true, true, true, true];
    let path = dir.path().join("ndvi_small.tif");
    write_ndvi(
        &path,
        &grid,
        &Band {
            pixels: &vis,
            valid: &vv,
            description: "vis",
        },
        &Band {
            pixels: &nir,
            valid: &nv,
            description: "nir",
        },
        &[],
        &RasterFormat::GeoTiff,
    )
    .unwrap();
    let ds = Dataset::open(&path).unwrap();
    assert_eq!(ds.geo_transform().unwrap(), grid.geo_transform);
    let b = ds.rasterband(1).unwrap();
    assert_eq!(b.band_type(), GdalDataType::Float32);
    let v = b.read_band_as::<f32>().unwrap().into_shape_and_vec().1;
    assert_eq!(v[0], 0.5);
    assert_eq!(v[1], 0.0);
    assert!(v[2].is_nan());
    assert_eq!(v[3], -1.0);
    assert!(v[4].is_nan());
    assert_eq!(v[5], 0.5);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.tif");
    let px = vec![1u8; 20];
    let ok = vec![true; 20];
    let band = Band {
        pixels: &px,
        valid: &ok,
        description: "b",
    };
    let gcps = [
        Gcp {
            pixel: 0.0,
            line: 0.0,
            lat: 0.0,
            lon: 0.0,
        },
        Gcp {
            pixel: 5.0,
            line: 0.0,
            lat: 0.0,
            lon: 1.0,
        },
        Gcp {
            pixel: 0.0,
            line: 4.0,
            lat: -1.0,
            lon: 0.0,
        },
    ];
    assert!(matches!(
        write_raw_gcp_tiff(&p, 4, 4, &[band], &gcps, &[]),
        Err(Error::SizeMismatch { .. })
    ));
    assert!(matches!(
        write_raw_gcp_tiff(&p, 5, 4, &[], &gcps, &[]),
        Err(Error::BandCount(_))
    ));
    assert!(matches!(
        write_raw_gcp_tiff(&p, 5, 4, &[band], &gcps, &[("BAD KEY", "x")]),
        Err(Error::InvalidMetadataKey(_))
    ));
    assert!(!p.exists());
    write_raw_gcp_tiff(&p, 5, 4, &[band], &gcps, &[]).unwrap();
    let ds = Dataset::open(&p).unwrap();
    assert!(matches!(
        warp_to_epsg4326_mem(
            &ds,
            &WarpOptions {
                transform: GcpTransform::Polynomial(2),
                ..WarpOptions::default()
            }
        ),
        Err(Error::TooFewGcps {
            count: 3,
            needed: 6,
            ..
        })
    ));
    assert!(matches!(
        warp_to_epsg4326_mem(
            &ds,
            &WarpOptions {
                resolution_deg: Some(-1.0),
                ..WarpOptions::default()
            }
        ),
        Err(Error::InvalidParameter { .. })
    ));
    // A dataset without GCPs.
    let mem = gdal::DriverManager::get_driver_by_name("MEM")
        .unwrap()
        .create_with_band_type::<u8, _>("", 4, 4, 1)
        .unwrap();
    assert!(matches!(
        warp_to_epsg4326_mem(&mem, &WarpOptions::default()),
        Err(Error::TooFewGcps { count: 0, .. })
    ));
    // Missing file for validation is an I/O error.
    assert!(matches!(
        validate_cog(&dir.path().join("nope.tif")),
        Err(Error::Io { .. })
    ));
}
