//! Image products for Meteor-M MSU-MR swath imagery.
//!
//! Inputs are plain Rust arrays (row-major, `width * height` samples, one
//! `bool` validity flag per sample); outputs are files:
//!
//! | function | output |
//! | --- | --- |
//! | [`write_png_gray`] / [`write_png_rgba`] | 8-bit PNG (grey+alpha / RGBA), quick looks |
//! | [`write_raw_gcp_tiff`] | swath-geometry GeoTIFF, Byte, nodata 0, GCPs in EPSG:4326 (+ `GEOLOCATION` arrays, [`write_geolocation_arrays`]) |
//! | [`warp_to_epsg4326`] / [`warp_to_epsg4326_mem`] | regular lat/lon grid (GDAL warper, thin-plate spline) |
//! | [`write_cog`] / [`validate_cog`] | Cloud Optimized GeoTIFF via GDAL's COG driver |
//! | [`write_ndvi`] | Float32 "count NDVI", nodata NaN |
//! | [`write_rgb_composite`] / [`write_rgb_thumbnail`] | RGB+alpha GeoTIFF, ≤512 px PNG thumbnail |
//!
//! Every writer first writes to a hidden, uniquely named temporary file in the
//! destination directory, fsyncs it, renames it into place and fsyncs the
//! directory, so a reader never sees a half-written product (rename is atomic
//! on POSIX file systems within one directory) and a crash never loses a
//! published one.
//!
//! # Instrument
//!
//! MSU-MR scans 1568 pixels per line (LRPT, ~1 km at nadir, swath ≈ 2800 km).
//! Sources: "Meteor-M N2 LRPT" format description (planet.iitp.ru,
//! <http://planet.iitp.ru/index1.html>, MSU-MR section), and the WMO OSCAR
//! instrument page <https://space.oscar.wmo.int/instruments/view/msu_mr>.
//! LRPT transmits *uncalibrated* 8-bit counts (no on-board calibration
//! coefficients in the stream), which is why [`write_ndvi`] produces a
//! "count NDVI" (see there).
//!
//! # GDAL
//!
//! Built against GDAL 3.6 through the `gdal` 0.19 crate. The warp uses
//! GDAL's `GDALWarp()` library entry point (the function behind the
//! `gdalwarp` program, called in-process, not as a subprocess) through the
//! small FFI wrapper in `products/gdal_ffi.rs` – the only place with
//! `unsafe`; see [`warp_to_epsg4326`] for why.
//!
//! # Threads
//!
//! A `gdal::Dataset` is `Send` but not `Sync`; functions that take a
//! `&Dataset` must be called from the thread that owns it. The path-based
//! writers are independent and may run on different threads concurrently.

use crate::Error;

mod atomic;
mod cog;
mod derived;
mod gdal_ffi;
mod png;
mod swath;
mod warp;

pub(crate) use gdal_ffi::{gdal_warp, polygonize};

pub use cog::{
    validate_cog, write_cog, write_cog_from_path, CogCompression, CogOptions, CogReport,
    OverviewResampling,
};
pub use derived::{
    compute_count_ndvi, read_grid_bands, write_grid_band, write_ndvi, write_rgb_composite,
    write_rgb_thumbnail, GeoGrid, GridBand, RasterFormat, NDVI_NODATA,
};
pub use png::{write_png_gray, write_png_rgba};
pub use swath::{
    write_geolocation_arrays, write_raw_gcp_tiff, write_raw_gcp_tiff_with_geolocation, Gcp,
    Geolocation, RAW_NODATA,
};
pub use warp::{
    warp_file_to_epsg4326, warp_to_epsg4326, warp_to_epsg4326_mem, GcpTransform, Resampling,
    WarpOptions,
};

/// MSU-MR pixels per scan line (LRPT).
pub const MSU_MR_WIDTH: usize = 1568;

/// One 8-bit image band: `pixels` and `valid` are row-major, `width * height`
/// long. `description` becomes the GDAL band description where the product
/// keeps per-band names (e.g. `"MSU-MR ch1 0.5-0.7um"`).
#[derive(Debug, Clone, Copy)]
pub struct Band<'a> {
    /// Raw counts.
    pub pixels: &'a [u8],
    /// `false` where the sample is missing (lost packet, fill).
    pub valid: &'a [bool],
    /// Band description.
    pub description: &'a str,
}

/// Shorthand used throughout the module.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds context to `gdal` crate errors.
pub(crate) trait GdalContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> GdalContext<T> for std::result::Result<T, gdal::errors::GdalError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Gdal {
            context: context(),
            source,
        })
    }
}

/// Checks `width`/`height` and returns `width * height`.
pub(crate) fn checked_area(width: usize, height: usize) -> Result<usize> {
    if width == 0 || height == 0 {
        return Err(Error::InvalidDimensions {
            width,
            height,
            reason: "zero size",
        });
    }
    // GDAL and PNG both take 32-bit signed sizes.
    if width > i32::MAX as usize || height > i32::MAX as usize {
        return Err(Error::InvalidDimensions {
            width,
            height,
            reason: "dimension exceeds i32::MAX",
        });
    }
    width.checked_mul(height).ok_or(Error::InvalidDimensions {
        width,
        height,
        reason: "pixel count overflows usize",
    })
}

/// Checks one band's slices against `area`.
pub(crate) fn check_band(band: &Band<'_>, area: usize, name: &str) -> Result<()> {
    check_len(band.pixels.len(), area, || format!("{name} pixels"))?;
    check_len(band.valid.len(), area, || format!("{name} validity mask"))
}

pub(crate) fn check_len(
    actual: usize,
    expected: usize,
    what: impl FnOnce() -> String,
) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::SizeMismatch {
            what: what(),
            expected,
            actual,
        })
    }
}

/// UTF-8 view of a path, for GDAL.
pub(crate) fn path_str(path: &std::path::Path) -> Result<&str> {
    match path.to_str() {
        Some(s) if !s.contains('\0') => Ok(s),
        _ => Err(Error::BadPath(path.to_path_buf())),
    }
}

/// GDAL creation-option list from `KEY=VALUE` pairs.
pub(crate) fn creation_options(pairs: &[(&str, String)]) -> Result<gdal::cpl::CslStringList> {
    let mut list = gdal::cpl::CslStringList::new();
    for (key, value) in pairs {
        list.set_name_value(key, value)
            .ctx(|| format!("building option {key}={value}"))?;
    }
    Ok(list)
}
