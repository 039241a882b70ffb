//! Reader for the global land/sea mask GeoTIFF made by `make_landmask.py`
//! (EPSG:4326, Byte, 1 = land, 0 = water, 30 arc-second cells, NOAA GLOBE ocean flag via
//! the PyPI package `global-land-mask` 1.0.0). Reads only the window that is asked for.
//!
//! Any north-up EPSG:4326 Byte raster with the same 0/1 meaning works; a raster spanning
//! exactly 360° of longitude is treated as global and windows may cross the antimeridian.

use crate::Error;
use std::path::{Path, PathBuf};

use gdal::raster::GdalDataType;
use gdal::{Dataset, Metadata};

pub use imagery::qa::{estimate_offset, grid, EstimatorParams, GeoGrid, Grid, OffsetReport};

/// An opened land mask.
pub struct LandMask {
    ds: Dataset,
    path: PathBuf,
    geo: GeoGrid,
    global: bool,
    source: Option<String>,
}

/// Largest supersampling factor per axis used by [`LandMask::resample_to`].
const MAX_SUPERSAMPLE: usize = 16;

impl LandMask {
    /// Open a mask GeoTIFF and check that it is a north-up lon/lat Byte raster.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let gerr = |context: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Gdal {
                context: format!("{context} ({})", path.display()),
                source,
            }
        };
        let fmt = |reason: String| Error::LandMask {
            path: path.clone(),
            reason,
        };
        let ds = Dataset::open(&path).map_err(gerr("opening", &path))?;
        let gt = ds
            .geo_transform()
            .map_err(gerr("reading geotransform", &path))?;
        if gt[2] != 0.0 || gt[4] != 0.0 {
            return Err(fmt("rotated geotransform".into()));
        }
        if gt[5] >= 0.0 || gt[1] <= 0.0 {
            return Err(fmt(format!("not north-up: dlon {} dlat {}", gt[1], gt[5])));
        }
        if let Ok(srs) = ds.spatial_ref() {
            if !srs.is_geographic() {
                return Err(fmt("CRS is not geographic (expected EPSG:4326)".into()));
            }
        }
        let band = ds.rasterband(1).map_err(gerr("opening band 1", &path))?;
        if band.band_type() != GdalDataType::UInt8 {
            return Err(fmt(format!(
                "band type {:?}, expected Byte",
                band.band_type()
            )));
        }
        let (w, h) = ds.raster_size();
        let geo = GeoGrid::new(gt[0], gt[1], gt[3], gt[5], w, h).map_err(|e| fmt(e.to_string()))?;
        let global = ((w as f64) * gt[1] - 360.0).abs() < 1e-6;
        let source = ds.metadata_item("SOURCE", "");
        Ok(LandMask {
            ds,
            path,
            geo,
            global,
            source,
        })
    }

    /// Geometry of the whole mask.
    pub fn geo(&self) -> GeoGrid {
        self.geo
    }

    /// The mask's `SOURCE` metadata item, if any (for provenance records).
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// True when the mask spans 360° of longitude (windows may wrap).
    pub fn is_global(&self) -> bool {
        self.global
    }

    /// Read the native-resolution window covering `west..east`, `south..north` (degrees),
    /// snapped outward to whole mask pixels. Values: 1 = land, 0 = water.
    ///
    /// For a global mask `west`/`east` may lie outside -180..180 (e.g. 170..190 crosses the
    /// antimeridian); the returned grid keeps the requested longitude frame. For a
    /// non-global mask the window is clipped to the raster.
    pub fn window(&self, west: f64, south: f64, east: f64, north: f64) -> Result<Grid<u8>, Error> {
        if ![west, south, east, north].iter().all(|v| v.is_finite()) {
            return Err(Error::Window("non-finite bounds".into()));
        }
        if west >= east || south >= north {
            return Err(Error::Window(format!(
                "empty bounds W{west} S{south} E{east} N{north}"
            )));
        }
        if east - west > 360.0 {
            return Err(Error::Window("wider than 360 degrees".into()));
        }
        let g = &self.geo;
        const EPS: f64 = 1e-7;
        let h = g.height as i64;
        let w = g.width as i64;
        let r0 = (((north - g.lat0) / g.dlat + EPS).floor() as i64).clamp(0, h);
        let r1 = (((south - g.lat0) / g.dlat - EPS).ceil() as i64).clamp(0, h);
        let mut c0 = ((west - g.lon0) / g.dlon + EPS).floor() as i64;
        let mut c1 = ((east - g.lon0) / g.dlon - EPS).ceil() as i64;
        if !self.global {
            c0 = c0.clamp(0, w);
            c1 = c1.clamp(0, w);
        } else if c1 - c0 > w {
            c1 = c0 + w;
        }
        if r1 <= r0 || c1 <= c0 {
            return Err(Error::Window(format!(
                "W{west} S{south} E{east} N{north} does not intersect the mask"
            )));
        }
        let out_w = (c1 - c0) as usize;
        let out_h = (r1 - r0) as usize;
        let mut data = vec![0u8; out_w * out_h];
        let band = self.ds.rasterband(1).map_err(|source| Error::Gdal {
            context: format!("opening band 1 ({})", self.path.display()),
            source,
        })?;
        let mut start = c0;
        while start < c1 {
            let src_c = start.rem_euclid(w);
            let seg = (c1 - start).min(w - src_c) as usize;
            let buf = band
                .read_as::<u8>(
                    (src_c as isize, r0 as isize),
                    (seg, out_h),
                    (seg, out_h),
                    None,
                )
                .map_err(|source| Error::Gdal {
                    context: format!("reading window ({})", self.path.display()),
                    source,
                })?;
            let off = (start - c0) as usize;
            for (row, src_row) in buf.data().chunks_exact(seg).enumerate() {
                let dst = row * out_w + off;
                if let Some(d) = data.get_mut(dst..dst + seg) {
                    d.copy_from_slice(src_row);
                }
            }
            start += seg as i64;
        }
        let geo = GeoGrid::new(
            g.lon0 + c0 as f64 * g.dlon,
            g.dlon,
            g.lat0 + r0 as f64 * g.dlat,
            g.dlat,
            out_w,
            out_h,
        )?;
        Ok(Grid::new(geo, data)?)
    }

    /// Resample the mask onto `target` as a land FRACTION per target pixel
    /// (0 = all water, 255 = all land), by point-supersampling each target pixel on a
    /// k×k lattice (k ≈ 2× the ratio of target to mask pixel size, at most 16).
    /// Pixels outside a non-global mask count as water.
    pub fn resample_to(&self, target: &GeoGrid) -> Result<Grid<u8>, Error> {
        target.validate()?;
        let (w, e) = target.lon_bounds();
        let (s, n) = target.lat_bounds();
        let mw = self.geo.dlon.abs();
        let mh = self.geo.dlat.abs();
        let win = self.window(w - mw, (s - mh).max(-90.0), e + mw, (n + mh).min(90.0))?;
        let kx = ((2.0 * target.dlon.abs() / mw).ceil() as usize).clamp(1, MAX_SUPERSAMPLE);
        let ky = ((2.0 * target.dlat.abs() / mh).ceil() as usize).clamp(1, MAX_SUPERSAMPLE);
        let total = (kx * ky) as u32;
        let wg = win.geo;
        let mut out = Vec::with_capacity(target.len());
        for r in 0..target.height {
            for c in 0..target.width {
                let mut land = 0u32;
                for j in 0..ky {
                    let lat = target.lat0 + (r as f64 + (j as f64 + 0.5) / ky as f64) * target.dlat;
                    let wr = ((lat - wg.lat0) / wg.dlat).floor();
                    for i in 0..kx {
                        let lon =
                            target.lon0 + (c as f64 + (i as f64 + 0.5) / kx as f64) * target.dlon;
                        let wc = ((lon - wg.lon0) / wg.dlon).floor();
                        if wc >= 0.0 && wr >= 0.0 && win.get(wc as usize, wr as usize) == Some(1) {
                            land += 1;
                        }
                    }
                }
                out.push(((land * 255 + total / 2) / total) as u8);
            }
        }
        Ok(Grid::new(*target, out)?)
    }
}
