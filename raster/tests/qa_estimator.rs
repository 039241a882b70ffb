#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
mod common;
use common::*;
use raster::landmask::{estimate_offset, EstimatorParams, GeoGrid, Grid};

fn run_shift(
    east: f64,
    north: f64,
    land: f32,
    sea: f32,
    noise: f64,
) -> raster::landmask::OffsetReport {
    let m = open_mask();
    let g = png_grid();
    let reference = m.resample_to(&g).unwrap();
    let shifted = m.resample_to(&shifted_geo(&g, east, north)).unwrap();
    let mut img = render(
        &Grid {
            geo: g,
            data: shifted.data,
        },
        land,
        sea,
        noise,
        7,
    );
    img.geo = g;
    let t = std::time::Instant::now();
    let r = estimate_offset(&img, &reference, &EstimatorParams::new(15.0)).unwrap();
    println!(
        "shift ({east},{north}) land {land} sea {sea} noise {noise}: {r:?} in {:?}",
        t.elapsed()
    );
    r
}

fn assert_close(r: &raster::landmask::OffsetReport, east: f64, north: f64) {
    let e = r.offset_east_km.unwrap();
    let n = r.offset_north_km.unwrap();
    assert!((e - east).abs() < 0.5, "east {e} vs {east}");
    assert!((n - north).abs() < 0.5, "north {n} vs {north}");
}

#[test]
fn recovers_known_shift_land_bright() {
    let r = run_shift(3.2, -1.7, 120.0, 60.0, 5.0);
    assert_close(&r, 3.2, -1.7);
    assert!(r.confidence > 0.8, "confidence {}", r.confidence);
    assert!(r.coastline_km > 500.0);
    assert!(!r.at_search_edge);
}

#[test]
fn recovers_known_shift_inverted_contrast() {
    let r = run_shift(-4.6, 2.3, 80.0, 110.0, 6.0);
    assert_close(&r, -4.6, 2.3);
    assert!(r.confidence > 0.7, "confidence {}", r.confidence);
}

#[test]
fn zero_shift_is_zero() {
    let r = run_shift(0.0, 0.0, 120.0, 60.0, 5.0);
    assert_close(&r, 0.0, 0.0);
    assert!(r.offset_east_km.unwrap().abs() < 0.3 && r.offset_north_km.unwrap().abs() < 0.3);
}

#[test]
fn survives_nodata_and_clouds() {
    let m = open_mask();
    let g = png_grid();
    let reference = m.resample_to(&g).unwrap();
    let shifted = m.resample_to(&shifted_geo(&g, 2.4, 3.1)).unwrap();
    let mut img = render(
        &Grid {
            geo: g,
            data: shifted.data,
        },
        120.0,
        60.0,
        5.0,
        11,
    );
    let (w, h) = (g.width, g.height);
    let mut rng = Rng::new(99);
    // 25 bright "clouds" (discs, radius 10..40 px) and a nodata stripe on the west.
    for _ in 0..25 {
        let cx = rng.uniform() * w as f64;
        let cy = rng.uniform() * h as f64;
        let rad = 10.0 + 30.0 * rng.uniform();
        for y in 0..h {
            for x in 0..w {
                let d = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
                if d < rad {
                    img.data[y * w + x] = 220.0 + (5.0 * rng.normal()) as f32;
                }
            }
        }
    }
    for y in 0..h {
        for x in 0..150 {
            img.data[y * w + x] = f32::NAN;
        }
    }
    let r = estimate_offset(&img, &reference, &EstimatorParams::new(15.0)).unwrap();
    println!("clouds+nodata: {r:?}");
    assert_close(&r, 2.4, 3.1);
    assert!(r.confidence > 0.5, "confidence {}", r.confidence);
}

#[test]
fn open_ocean_gives_no_estimate() {
    let m = open_mask();
    let g = GeoGrid::new(-120.0, 0.01, -30.0, -0.01, 500, 500).unwrap();
    let reference = m.resample_to(&g).unwrap();
    assert!(
        reference.data.iter().all(|v| *v == 0),
        "window not open ocean"
    );
    let mut rng = Rng::new(3);
    let img = Grid::new(
        g,
        (0..g.len())
            .map(|_| 60.0 + (5.0 * rng.normal()) as f32)
            .collect(),
    )
    .unwrap();
    let r = estimate_offset(&img, &reference, &EstimatorParams::new(15.0)).unwrap();
    println!("open ocean: {r:?}");
    assert_eq!(r.confidence, 0.0);
    assert!(r.offset_east_km.is_none() && r.offset_north_km.is_none());
}

#[test]
fn coast_outside_valid_image_gives_no_estimate() {
    // Real coast in the reference but the image is all nodata.
    let m = open_mask();
    let g = png_grid();
    let reference = m.resample_to(&g).unwrap();
    let img = Grid::new(g, vec![f32::NAN; g.len()]).unwrap();
    let r = estimate_offset(&img, &reference, &EstimatorParams::new(15.0)).unwrap();
    assert_eq!(r.coastline_km, 0.0);
    assert_eq!(r.confidence, 0.0);
    assert!(r.offset_east_km.is_none());
}

#[test]
fn pure_noise_gives_low_confidence() {
    let m = open_mask();
    let g = png_grid();
    let reference = m.resample_to(&g).unwrap();
    for seed in [1u64, 2, 3] {
        let mut rng = Rng::new(seed);
        let img = Grid::new(
            g,
            (0..g.len())
                .map(|_| 100.0 + (20.0 * rng.normal()) as f32)
                .collect(),
        )
        .unwrap();
        let r = estimate_offset(&img, &reference, &EstimatorParams::new(15.0)).unwrap();
        println!("noise seed {seed}: {r:?}");
        assert!(r.confidence < 0.2, "confidence {}", r.confidence);
        assert!(r.peak_ncc < 0.1);
    }
}

#[test]
fn sub_pixel_accuracy_over_many_shifts() {
    let m = open_mask();
    let g = png_grid();
    let reference = m.resample_to(&g).unwrap();
    let mut rng = Rng::new(2024);
    let (mut se, mut worst) = (0.0f64, 0.0f64);
    let n = 12;
    for i in 0..n {
        let east = -8.0 + 16.0 * rng.uniform();
        let north = -8.0 + 16.0 * rng.uniform();
        let shifted = m.resample_to(&shifted_geo(&g, east, north)).unwrap();
        let img = render(
            &Grid {
                geo: g,
                data: shifted.data,
            },
            120.0,
            60.0,
            5.0,
            100 + i,
        );
        let r = estimate_offset(&img, &reference, &EstimatorParams::new(12.0)).unwrap();
        let de = r.offset_east_km.unwrap() - east;
        let dn = r.offset_north_km.unwrap() - north;
        let err = (de * de + dn * dn).sqrt();
        println!(
            "true ({east:6.2},{north:6.2}) err ({de:+.3},{dn:+.3}) conf {:.2}",
            r.confidence
        );
        se += err * err;
        worst = worst.max(err);
        assert!(r.confidence > 0.8);
    }
    let rms = (se / n as f64).sqrt();
    println!("RMS error {rms:.3} km, worst {worst:.3} km");
    assert!(rms < 0.3 && worst < 0.5, "rms {rms} worst {worst}");
}

#[test]
fn confidence_grows_with_contrast() {
    // Land/sea contrast 0.5..16 counts against noise sigma 5 counts.
    let m = open_mask();
    let g = png_grid();
    let reference = m.resample_to(&g).unwrap();
    let shifted = m.resample_to(&shifted_geo(&g, 3.2, -1.7)).unwrap();
    let mut confs = Vec::new();
    for c in [0.5f32, 2.0, 4.0, 8.0, 16.0] {
        let img = render(
            &Grid {
                geo: g,
                data: shifted.data.clone(),
            },
            60.0 + c,
            60.0,
            5.0,
            5,
        );
        let r = estimate_offset(&img, &reference, &EstimatorParams::new(15.0)).unwrap();
        println!(
            "contrast {c}: {:?} {:?} peak {:.3} second {:.3} conf {:.2}",
            r.offset_east_km, r.offset_north_km, r.peak_ncc, r.second_ncc, r.confidence
        );
        confs.push(r.confidence);
    }
    assert!(confs[0] < 0.1, "{confs:?}");
    assert!(confs.windows(2).all(|p| p[1] >= p[0]), "{confs:?}");
    assert!(confs[4] > 0.9, "{confs:?}");
}
