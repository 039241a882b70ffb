//! The geolocation check on a real, well-georeferenced scene with coastlines: the shared
//! Landsat 7 subset over the Bahamas (rasterio's RGB.byte.tif, UTM 18N, 300 m pixels).
//! Landsat's own geolocation is good to tens of metres, so the estimate must be near zero: seen
//! here (-0.44 E, -0.82 N) km — the GLOBE mask's own coastline differs from GSHHG's by ~0.5 km,
//! and the shallow Bahamas banks put image edges where the mask has none. The same scene with
//! its georeferencing moved by a known amount must report that amount (relative to the
//! unmoved scene, which removes the reference's bias). Confidence is low here (~0.07: a second
//! correlation peak of nearly the same height from the banks) and is only required to be
//! non-zero: the confidence is deliberately conservative.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing
)]
mod common;

use gdal::raster::Buffer;
use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};
use gdal::{Dataset, DriverManager};
use raster::landmask::{estimate_offset, EstimatorParams, GeoGrid, Grid};

const SCENE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/geotiff/RGB.byte.tif"
);
const STEP: f64 = 0.005;

/// Band 1 (red) of the scene, moved `east_m`/`north_m` metres in UTM, resampled onto a
/// 0.005° EPSG:4326 grid covering it (NaN outside the scene / at its nodata 0).
fn scene_on_grid(east_m: f64, north_m: f64) -> Grid<f32> {
    assert!(
        std::path::Path::new(SCENE).is_file(),
        "test data missing: {SCENE}"
    );
    let src = Dataset::open(SCENE).unwrap();
    let mem = DriverManager::get_driver_by_name("MEM").unwrap();
    let (w, h) = src.raster_size();
    let mut moved = mem.create_with_band_type::<u8, _>("", w, h, 1).unwrap();
    let mut gt = src.geo_transform().unwrap();
    gt[0] += east_m;
    gt[3] += north_m;
    moved.set_geo_transform(&gt).unwrap();
    moved.set_projection(&src.projection()).unwrap();
    let data = src
        .rasterband(1)
        .unwrap()
        .read_as::<u8>((0, 0), (w, h), (w, h), None)
        .unwrap();
    let mut band = moved.rasterband(1).unwrap();
    band.set_no_data_value(Some(0.0)).unwrap();
    let mut buf = Buffer::new((w, h), data.data().to_vec());
    band.write((0, 0), (w, h), &mut buf).unwrap();

    // Bahamas grid: 79.0-76.5 W, 23.5-25.6 N.
    let (west, north) = (-79.0, 25.6);
    let (gw, gh) = (((2.5) / STEP) as usize, ((2.1) / STEP) as usize);
    let mut dst = mem.create_with_band_type::<f32, _>("", gw, gh, 1).unwrap();
    dst.set_geo_transform(&[west, STEP, 0.0, north, 0.0, -STEP])
        .unwrap();
    let mut srs = SpatialRef::from_epsg(4326).unwrap();
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    dst.set_spatial_ref(&srs).unwrap();
    {
        let mut b = dst.rasterband(1).unwrap();
        b.set_no_data_value(Some(f64::NAN)).unwrap();
        b.fill(f64::NAN, None).unwrap();
    }
    gdal::raster::reproject(&moved, &dst).unwrap();
    let out = dst
        .rasterband(1)
        .unwrap()
        .read_as::<f32>((0, 0), (gw, gh), (gw, gh), None)
        .unwrap();
    let data: Vec<f32> = out
        .data()
        .iter()
        .map(|v| if *v > 0.0 { *v } else { f32::NAN })
        .collect();
    let geo = GeoGrid::new(west, STEP, north, -STEP, gw, gh).unwrap();
    Grid::new(geo, data).unwrap()
}

fn estimate(east_m: f64, north_m: f64) -> raster::landmask::OffsetReport {
    let img = scene_on_grid(east_m, north_m);
    let mask = common::open_mask().resample_to(&img.geo).unwrap();
    let r = estimate_offset(&img, &mask, &EstimatorParams::new(15.0)).unwrap();
    println!("moved ({east_m} m E, {north_m} m N): {r:?}");
    r
}

#[test]
fn landsat_bahamas_scene_lands_where_the_mask_says() {
    let r = estimate(0.0, 0.0);
    let (e, n) = (r.offset_east_km.unwrap(), r.offset_north_km.unwrap());
    assert!(r.confidence > 0.0, "confidence {}", r.confidence);
    assert!(e.hypot(n) < 1.5, "offset ({e:.2}, {n:.2}) km");
}

#[test]
fn landsat_scene_moved_by_a_known_amount_reports_it() {
    let base = estimate(0.0, 0.0);
    let r = estimate(6000.0, -3000.0);
    let (e, n) = (r.offset_east_km.unwrap(), r.offset_north_km.unwrap());
    let (e0, n0) = (base.offset_east_km.unwrap(), base.offset_north_km.unwrap());
    assert!(r.confidence > 0.0, "confidence {}", r.confidence);
    // Relative to the unmoved scene (removes the mask's own bias): within 0.5 km.
    assert!((e - e0 - 6.0).abs() < 0.5, "east {e:.2} (base {e0:.2})");
    assert!((n - n0 + 3.0).abs() < 0.5, "north {n:.2} (base {n0:.2})");
}
