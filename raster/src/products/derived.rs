//! Products derived on the warped EPSG:4326 grid: count NDVI (Float32),
//! RGB + alpha composite, PNG thumbnail.

use crate::Error;
use std::path::Path;

use gdal::raster::{Buffer, ColorInterpretation, GdalDataType, GdalType};
use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};
use gdal::{Dataset, DriverManager, Metadata};

use super::atomic::TempOutput;
use super::cog::{write_cog, CogOptions};
use super::png::write_png_rgba;
use super::{check_band, checked_area, creation_options, Band, GdalContext, Result};

/// Nodata of the NDVI product: NaN.
///
/// Chosen over -9999 because it cannot collide with any NDVI value, it
/// propagates through arithmetic (a forgotten mask shows up as NaN, not as
/// a plausible-looking -9999 average), and GDAL, QGIS, rasterio and numpy
/// all treat a NaN nodata tag natively. Test with `is_nan()`, never `==`.
pub const NDVI_NODATA: f32 = f32::NAN;

/// A north-up EPSG:4326 raster grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoGrid {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// GDAL geotransform: `[lon0, dlon, 0, lat0, 0, -dlat]` (x = longitude).
    pub geo_transform: [f64; 6],
}

/// An owned band read from a grid dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct GridBand {
    /// Values (nodata positions hold the nodata value).
    pub pixels: Vec<u8>,
    /// `false` where the value equals the band's nodata.
    pub valid: Vec<bool>,
    /// GDAL band description.
    pub description: String,
}

impl GridBand {
    /// Borrowed view for the writers.
    pub fn as_band(&self) -> Band<'_> {
        Band {
            pixels: &self.pixels,
            valid: &self.valid,
            description: &self.description,
        }
    }
}

/// Container of a derived product.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RasterFormat {
    /// Tiled GeoTIFF, DEFLATE (+ predictor), BIGTIFF=IF_SAFER.
    GeoTiff,
    /// Cloud Optimized GeoTIFF with these options.
    Cog(CogOptions),
}

/// Reads all bands of an 8-bit EPSG:4326 grid dataset (e.g. the output of
/// [`super::warp_to_epsg4326`]).
pub fn read_grid_bands(ds: &Dataset) -> Result<(GeoGrid, Vec<GridBand>)> {
    let srs = ds.spatial_ref().ctx(|| "reading grid SRS".into())?;
    if srs.auth_code().ok() != Some(4326) {
        return Err(Error::Dataset(format!(
            "grid SRS is not EPSG:4326 (authority code {:?})",
            srs.auth_code().ok()
        )));
    }
    let geo_transform = ds.geo_transform().ctx(|| "reading geotransform".into())?;
    let (width, height) = ds.raster_size();
    let grid = GeoGrid {
        width,
        height,
        geo_transform,
    };
    check_grid(&grid)?;
    let mut out = Vec::with_capacity(ds.raster_count());
    for index in 1..=ds.raster_count() {
        let band = ds
            .rasterband(index)
            .ctx(|| format!("opening band {index}"))?;
        if band.band_type() != GdalDataType::UInt8 {
            return Err(Error::Dataset(format!(
                "band {index} is {:?}, expected UInt8",
                band.band_type()
            )));
        }
        let nodata = band.no_data_value();
        let pixels = band
            .read_band_as::<u8>()
            .ctx(|| format!("reading band {index}"))?
            .into_shape_and_vec()
            .1;
        let valid = pixels
            .iter()
            .map(|&p| nodata != Some(f64::from(p)))
            .collect();
        out.push(GridBand {
            pixels,
            valid,
            description: band.description().unwrap_or_default(),
        });
    }
    Ok((grid, out))
}

/// Count NDVI, `(NIR - VIS) / (NIR + VIS)` on raw counts; [`NDVI_NODATA`]
/// where either input is invalid or both are 0.
///
/// MSU-MR LRPT counts are *not calibrated* to reflectance (gain/offset per
/// channel unknown, no solar-zenith correction), so this is a relative
/// vegetation index: useful for contrast within one pass, not comparable
/// to calibrated NDVI products or between passes/satellites.
pub fn compute_count_ndvi(vis: &Band<'_>, nir: &Band<'_>) -> Result<Vec<f32>> {
    let area = vis.pixels.len();
    check_band(vis, area, "VIS")?;
    check_band(nir, area, "NIR")?;
    Ok(vis
        .pixels
        .iter()
        .zip(vis.valid)
        .zip(nir.pixels.iter().zip(nir.valid))
        .map(|((&v, &v_ok), (&n, &n_ok))| {
            let (v, n) = (f32::from(v), f32::from(n));
            if v_ok && n_ok && v + n > 0.0 {
                (n - v) / (n + v)
            } else {
                NDVI_NODATA
            }
        })
        .collect())
}

/// Writes a single-band Float32 count-NDVI raster (band description
/// `"NDVI"`, nodata NaN, metadata `NDVI_KIND` explaining the count NDVI
/// plus the caller's `metadata`). GeoTIFF uses DEFLATE + floating-point
/// predictor (3).
pub fn write_ndvi(
    path: &Path,
    grid: &GeoGrid,
    vis: &Band<'_>,
    nir: &Band<'_>,
    metadata: &[(&str, &str)],
    format: &RasterFormat,
) -> Result<()> {
    let area = check_grid(grid)?;
    check_band(vis, area, "VIS")?;
    check_band(nir, area, "NIR")?;
    let ndvi = compute_count_ndvi(vis, nir)?;
    let mut ds = mem_dataset::<f32>(grid, 1)?;
    ds.set_metadata_item(
        "NDVI_KIND",
        "count NDVI: (NIR-VIS)/(NIR+VIS) on uncalibrated MSU-MR counts",
        "",
    )
    .ctx(|| "setting NDVI_KIND".into())?;
    set_metadata(&mut ds, metadata)?;
    {
        let mut band = ds.rasterband(1).ctx(|| "opening NDVI band".into())?;
        band.set_no_data_value(Some(f64::from(NDVI_NODATA)))
            .ctx(|| "setting NDVI nodata".into())?;
        band.set_description("NDVI")
            .ctx(|| "setting NDVI description".into())?;
        let mut buf = Buffer::new((grid.width, grid.height), ndvi);
        band.write((0, 0), (grid.width, grid.height), &mut buf)
            .ctx(|| "writing NDVI".into())?;
    }
    save(
        &ds,
        path,
        format,
        &[("PREDICTOR", "3".into()), ("INTERLEAVE", "BAND".into())],
    )
}

/// Writes an RGB + alpha composite (4 × Byte: red, green, blue, alpha).
/// Alpha is 255 where all three inputs are valid, else 0 (and RGB 0).
/// GeoTIFF: `PHOTOMETRIC=RGB`, `ALPHA=YES`, DEFLATE + predictor 2.
pub fn write_rgb_composite(
    path: &Path,
    grid: &GeoGrid,
    rgb: [&Band<'_>; 3],
    metadata: &[(&str, &str)],
    format: &RasterFormat,
) -> Result<()> {
    let area = check_grid(grid)?;
    for (band, name) in rgb.iter().zip(["red", "green", "blue"]) {
        check_band(band, area, name)?;
    }
    let mut ds = mem_dataset::<u8>(grid, 4)?;
    set_metadata(&mut ds, metadata)?;
    let alpha: Vec<u8> = (0..area)
        .map(|i| {
            let all = rgb.iter().all(|b| b.valid.get(i).copied().unwrap_or(false));
            if all {
                255
            } else {
                0
            }
        })
        .collect();
    let interps = [
        ColorInterpretation::RedBand,
        ColorInterpretation::GreenBand,
        ColorInterpretation::BlueBand,
        ColorInterpretation::AlphaBand,
    ];
    for (index, interp) in interps.into_iter().enumerate() {
        let (data, description): (Vec<u8>, &str) = match rgb.get(index) {
            Some(b) => (
                b.pixels
                    .iter()
                    .zip(&alpha)
                    .map(|(&p, &a)| if a == 0 { 0 } else { p })
                    .collect(),
                b.description,
            ),
            None => (alpha.clone(), "alpha"),
        };
        let mut band = ds
            .rasterband(index + 1)
            .ctx(|| format!("opening composite band {}", index + 1))?;
        band.set_color_interpretation(interp)
            .ctx(|| "setting colour interpretation".into())?;
        band.set_description(description)
            .ctx(|| "setting band description".into())?;
        let mut buf = Buffer::new((grid.width, grid.height), data);
        band.write((0, 0), (grid.width, grid.height), &mut buf)
            .ctx(|| format!("writing composite band {}", index + 1))?;
    }
    save(
        &ds,
        path,
        format,
        &[
            ("PREDICTOR", "2".into()),
            ("PHOTOMETRIC", "RGB".into()),
            ("ALPHA", "YES".into()),
        ],
    )
}

/// Writes one analytic band on the grid: Byte, nodata 0 ([`super::RAW_NODATA`], the raw
/// products' convention: invalid samples are 0, valid 0 counts are stored as 1), the band
/// description and the dataset `metadata` items.
pub fn write_grid_band(
    path: &Path,
    grid: &GeoGrid,
    band: &Band<'_>,
    metadata: &[(&str, &str)],
    format: &RasterFormat,
) -> Result<()> {
    let area = check_grid(grid)?;
    check_band(band, area, band.description)?;
    let mut ds = mem_dataset::<u8>(grid, 1)?;
    set_metadata(&mut ds, metadata)?;
    {
        let mut b = ds.rasterband(1).ctx(|| "opening band".into())?;
        b.set_no_data_value(Some(f64::from(super::RAW_NODATA)))
            .ctx(|| "setting nodata".into())?;
        b.set_description(band.description)
            .ctx(|| "setting band description".into())?;
        let data: Vec<u8> = band
            .pixels
            .iter()
            .zip(band.valid)
            .map(|(&p, &v)| if v { p.max(1) } else { super::RAW_NODATA })
            .collect();
        let mut buf = Buffer::new((grid.width, grid.height), data);
        b.write((0, 0), (grid.width, grid.height), &mut buf)
            .ctx(|| "writing band".into())?;
    }
    save(&ds, path, format, &[("PREDICTOR", "2".into())])
}

/// Writes an RGBA PNG thumbnail whose long side is at most `max_side`
/// pixels (never upscaled). Area-average of the valid pixels; alpha is the
/// valid fraction of each output cell (soft swath edges). Returns the
/// thumbnail size.
pub fn write_rgb_thumbnail(
    path: &Path,
    width: usize,
    height: usize,
    rgb: [&Band<'_>; 3],
    max_side: usize,
) -> Result<(usize, usize)> {
    let area = checked_area(width, height)?;
    for (band, name) in rgb.iter().zip(["red", "green", "blue"]) {
        check_band(band, area, name)?;
    }
    if max_side == 0 {
        return Err(Error::InvalidParameter {
            name: "max_side",
            reason: "must be > 0".into(),
        });
    }
    let long = width.max(height);
    let (ow, oh) = if long <= max_side {
        (width, height)
    } else {
        (
            ((width * max_side + long / 2) / long).max(1),
            ((height * max_side + long / 2) / long).max(1),
        )
    };
    // Source column → output column; the ranges [ox*w/ow, (ox+1)*w/ow)
    // partition 0..w because ow <= w.
    let mut col_map = vec![0usize; width];
    for ox in 0..ow {
        for slot in col_map
            .iter_mut()
            .take((ox + 1) * width / ow)
            .skip(ox * width / ow)
        {
            *slot = ox;
        }
    }
    #[derive(Clone, Copy, Default)]
    struct Acc {
        sum: [u64; 3],
        valid: u64,
        total: u64,
    }
    let mut rgba = Vec::with_capacity(ow * oh * 4);
    fn rows<'a>(
        b: &Band<'a>,
        width: usize,
    ) -> (
        std::slice::ChunksExact<'a, u8>,
        std::slice::ChunksExact<'a, bool>,
    ) {
        (b.pixels.chunks_exact(width), b.valid.chunks_exact(width))
    }
    let [r_band, g_band, b_band] = rgb;
    let (mut r_rows, mut g_rows, mut b_rows) = (
        rows(r_band, width),
        rows(g_band, width),
        rows(b_band, width),
    );
    for oy in 0..oh {
        let y0 = oy * height / oh;
        let y1 = (oy + 1) * height / oh;
        let mut acc = vec![Acc::default(); ow];
        for _ in y0..y1 {
            let (Some(rp), Some(rv), Some(gp), Some(gv), Some(bp), Some(bv)) = (
                r_rows.0.next(),
                r_rows.1.next(),
                g_rows.0.next(),
                g_rows.1.next(),
                b_rows.0.next(),
                b_rows.1.next(),
            ) else {
                break;
            };
            for (x, &ox) in col_map.iter().enumerate() {
                let Some(a) = acc.get_mut(ox) else { continue };
                a.total += 1;
                let px = |p: &[u8], v: &[bool]| match (p.get(x), v.get(x)) {
                    (Some(&p), Some(true)) => Some(u64::from(p)),
                    _ => None,
                };
                if let (Some(r), Some(g), Some(b)) = (px(rp, rv), px(gp, gv), px(bp, bv)) {
                    a.sum[0] += r;
                    a.sum[1] += g;
                    a.sum[2] += b;
                    a.valid += 1;
                }
            }
        }
        for a in &acc {
            if a.valid == 0 {
                rgba.extend_from_slice(&[0, 0, 0, 0]);
            } else {
                let avg = |s: u64| ((s + a.valid / 2) / a.valid) as u8;
                let alpha = ((255 * a.valid + a.total / 2) / a.total.max(1)) as u8;
                rgba.extend_from_slice(&[avg(a.sum[0]), avg(a.sum[1]), avg(a.sum[2]), alpha]);
            }
        }
    }
    write_png_rgba(path, ow, oh, &rgba)?;
    Ok((ow, oh))
}

fn check_grid(grid: &GeoGrid) -> Result<usize> {
    let gt = grid.geo_transform;
    if gt.iter().any(|v| !v.is_finite())
        || gt[1] <= 0.0
        || gt[5] >= 0.0
        || gt[2] != 0.0
        || gt[4] != 0.0
    {
        return Err(Error::InvalidParameter {
            name: "geo_transform",
            reason: format!("{gt:?} is not a finite north-up grid"),
        });
    }
    checked_area(grid.width, grid.height)
}

fn mem_dataset<T: GdalType>(grid: &GeoGrid, bands: usize) -> Result<Dataset> {
    let driver = DriverManager::get_driver_by_name("MEM").ctx(|| "loading MEM driver".into())?;
    let mut ds = driver
        .create_with_band_type::<T, _>("", grid.width, grid.height, bands)
        .ctx(|| "creating in-memory dataset".into())?;
    ds.set_geo_transform(&grid.geo_transform)
        .ctx(|| "setting geotransform".into())?;
    let mut srs = SpatialRef::from_epsg(4326).ctx(|| "building EPSG:4326".into())?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    ds.set_spatial_ref(&srs).ctx(|| "setting SRS".into())?;
    Ok(ds)
}

fn set_metadata(ds: &mut Dataset, metadata: &[(&str, &str)]) -> Result<()> {
    for (key, value) in metadata {
        let ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(Error::InvalidMetadataKey((*key).to_owned()));
        }
        ds.set_metadata_item(key, value, "")
            .ctx(|| format!("setting metadata item {key}"))?;
    }
    Ok(())
}

/// Copies the in-memory product to its file format via a temporary file.
fn save(
    ds: &Dataset,
    path: &Path,
    format: &RasterFormat,
    gtiff_extra: &[(&str, String)],
) -> Result<()> {
    match format {
        RasterFormat::Cog(opts) => write_cog(ds, path, opts).map(|_| ()),
        RasterFormat::GeoTiff => {
            let mut pairs: Vec<(&str, String)> = vec![
                ("TILED", "YES".into()),
                ("BLOCKXSIZE", "256".into()),
                ("BLOCKYSIZE", "256".into()),
                ("COMPRESS", "DEFLATE".into()),
                ("BIGTIFF", "IF_SAFER".into()),
            ];
            pairs.extend(gtiff_extra.iter().cloned());
            let options = creation_options(&pairs)?;
            let driver =
                DriverManager::get_driver_by_name("GTiff").ctx(|| "loading GTiff driver".into())?;
            let tmp = TempOutput::new(path)?;
            let out = ds
                .create_copy(&driver, tmp.path(), &options)
                .ctx(|| format!("writing {}", path.display()))?;
            out.close().ctx(|| format!("closing {}", path.display()))?;
            tmp.commit()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_ndvi_known_values() {
        let vis = [10u8, 50, 0, 100, 30, 0];
        let nir = [30u8, 50, 0, 0, 90, 40];
        let vv = [true, true, true, true, false, true];
        let nv = [true, true, true, true, true, true];
        let vis = Band {
            pixels: &vis,
            valid: &vv,
            description: "",
        };
        let nir = Band {
            pixels: &nir,
            valid: &nv,
            description: "",
        };
        let ndvi = compute_count_ndvi(&vis, &nir).unwrap();
        assert_eq!(ndvi[0], 0.5); // (30-10)/40
        assert_eq!(ndvi[1], 0.0);
        assert!(ndvi[2].is_nan()); // 0/0
        assert_eq!(ndvi[3], -1.0);
        assert!(ndvi[4].is_nan()); // VIS invalid
        assert_eq!(ndvi[5], 1.0);
    }

    #[test]
    fn grid_checks() {
        let g = GeoGrid {
            width: 2,
            height: 2,
            geo_transform: [147.0, 0.01, 0.0, -9.0, 0.0, -0.01],
        };
        assert_eq!(check_grid(&g).unwrap(), 4);
        let mut bad = g;
        bad.geo_transform[5] = 0.01;
        assert!(check_grid(&bad).is_err());
    }
}
