#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use raster::landmask::{GeoGrid, Grid, LandMask};

/// The mask GeoTIFF built by `make landmask` (scripts/make_landmask.py), or `$DOWNLINK_LANDMASK`.
/// `make test` builds it first; a missing mask is a failure, never a skip.
pub fn landmask_path() -> std::path::PathBuf {
    match std::env::var_os("DOWNLINK_LANDMASK") {
        Some(p) => p.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/landmask.tif"),
    }
}

pub fn open_mask() -> LandMask {
    let p = landmask_path();
    assert!(
        p.is_file(),
        "land mask {} is missing: run `make landmask` (or set DOWNLINK_LANDMASK)",
        p.display()
    );
    LandMask::open(&p).expect("open land mask")
}

/// xorshift64* + Box-Muller.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((v >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// 3x3 binomial blur (≈ Gaussian σ 0.7 px), NaN-propagating.
pub fn blur3(v: &[f32], w: usize, h: usize) -> Vec<f32> {
    let k = [0.25f32, 0.5, 0.25];
    let mut out = v.to_vec();
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let mut acc = 0.0;
            for (j, ky) in k.iter().enumerate() {
                for (i, kx) in k.iter().enumerate() {
                    acc += ky * kx * v[(y + j - 1) * w + (x + i - 1)];
                }
            }
            out[y * w + x] = acc;
        }
    }
    out
}

/// Render a fake 8-bit-like image of the reference `mask_at_shift` (land fraction 0..255
/// evaluated at p - shift), land/sea levels, blur, Gaussian noise, quantised to counts.
pub fn render(frac: &Grid<u8>, land: f32, sea: f32, noise: f64, seed: u64) -> Grid<f32> {
    let (w, h) = (frac.geo.width, frac.geo.height);
    let base: Vec<f32> = frac
        .data
        .iter()
        .map(|&f| sea + (land - sea) * f32::from(f) / 255.0)
        .collect();
    let b = blur3(&base, w, h);
    let mut rng = Rng::new(seed);
    let data = b
        .iter()
        .map(|v| {
            (v + (noise * rng.normal()) as f32)
                .round()
                .clamp(0.0, 255.0)
        })
        .collect();
    Grid::new(frac.geo, data).unwrap()
}

/// Grid shifted so that sampling the reference on it gives the reference at p - (dx, dy) km.
pub fn shifted_geo(g: &GeoGrid, east_km: f64, north_km: f64) -> GeoGrid {
    let (km_lon, km_lat) = raster::landmask::grid::km_per_degree(g.center_lat());
    GeoGrid {
        lon0: g.lon0 - east_km / km_lon,
        lat0: g.lat0 - north_km / km_lat,
        ..*g
    }
}

/// 144–152 E, 6–12 S at 0.01°.
pub fn png_grid() -> GeoGrid {
    GeoGrid::new(144.0, 0.01, -6.0, -0.01, 800, 600).unwrap()
}

/// A north-up EPSG:4326 GeoTIFF gridded continuously across the antimeridian, as a pass is:
/// 170°E … 190°E (= 170°W), 5°S … 10°S at 0.05° (400 × 100 px), `bands` Byte bands holding the
/// ramp 40 + column / 2 (column 100 = 175°E → 90, column 300 = 175°W → 190).
pub fn across_antimeridian_tif(path: &std::path::Path, bands: usize) {
    use gdal::raster::Buffer;
    let (w, h) = (400usize, 100usize);
    let drv = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
    let mut ds = drv
        .create_with_band_type::<u8, _>(path, w, h, bands)
        .unwrap();
    ds.set_geo_transform(&[170.0, 0.05, 0.0, -5.0, 0.0, -0.05])
        .unwrap();
    let wkt = gdal::spatial_ref::SpatialRef::from_epsg(4326)
        .unwrap()
        .to_wkt()
        .unwrap();
    ds.set_projection(&wkt).unwrap();
    for b in 1..=bands {
        let data: Vec<u8> = (0..w * h).map(|i| (40 + (i % w) / 2) as u8).collect();
        let mut buf = Buffer::new((w, h), data);
        ds.rasterband(b)
            .unwrap()
            .write((0, 0), (w, h), &mut buf)
            .unwrap();
    }
}
