//! Raw swath-geometry GeoTIFF with ground control points.

use crate::Error;
use std::path::Path;

use gdal::raster::Buffer;
use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};
use gdal::{DriverManager, Metadata};

use super::atomic::TempOutput;
use super::{check_band, checked_area, creation_options, Band, GdalContext, Result};

/// Nodata value of the raw (and warped) Byte products.
///
/// Valid samples whose count is 0 are written as 1, so that 0 means "no
/// data" and nothing else. For MSU-MR counts this costs one count at the
/// very bottom of the range (a true 0 occurs only in deep shadow / night
/// side and is indistinguishable from 1 within the instrument noise).
pub const RAW_NODATA: u8 = 0;

/// A ground control point in GDAL raster space.
///
/// `pixel`/`line` follow GDAL's convention: (0, 0) is the *top-left corner*
/// of the first pixel, so the centre of pixel `i` of line `j` is
/// `(i + 0.5, j + 0.5)`. `lat`/`lon` are WGS 84 degrees (EPSG:4326).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcp {
    /// Column, 0 ..= width.
    pub pixel: f64,
    /// Row, 0 ..= height.
    pub line: f64,
    /// Geodetic latitude, degrees north.
    pub lat: f64,
    /// Longitude, degrees east.
    pub lon: f64,
}

/// Per-pixel geolocation of a swath on a regular grid of pixel centres (GDAL
/// geolocation arrays): sample `(i, j)`, row-major, is the ground point of the
/// centre of column `i * pixel_step`, line `j * line_step`. The grid must cover
/// the raster (its last sample column/line at or beyond the last image ones).
#[derive(Debug, Clone, Copy)]
pub struct Geolocation<'a> {
    /// Samples per row.
    pub width: usize,
    /// Sample rows.
    pub height: usize,
    /// Image columns between samples.
    pub pixel_step: usize,
    /// Image lines between sample rows.
    pub line_step: usize,
    /// Longitudes, degrees east, `width * height`.
    pub lon: &'a [f64],
    /// Latitudes, degrees north, `width * height`.
    pub lat: &'a [f64],
}

impl Geolocation<'_> {
    fn check(&self, raster_width: usize, raster_height: usize) -> Result<()> {
        let area = checked_area(self.width, self.height)?;
        for (what, v) in [("geolocation lon", self.lon), ("geolocation lat", self.lat)] {
            if v.len() != area {
                return Err(Error::SizeMismatch {
                    what: what.into(),
                    expected: area,
                    actual: v.len(),
                });
            }
        }
        let covers = |samples: usize, step: usize, len: usize| {
            step >= 1 && (samples - 1).saturating_mul(step) + 1 >= len
        };
        if !covers(self.width, self.pixel_step, raster_width)
            || !covers(self.height, self.line_step, raster_height)
        {
            return Err(Error::InvalidParameter {
                name: "geolocation",
                reason: format!(
                    "{}x{} samples every {} columns / {} lines do not cover {raster_width}x{raster_height}",
                    self.width, self.height, self.pixel_step, self.line_step
                ),
            });
        }
        let bad = self
            .lon
            .iter()
            .zip(self.lat)
            .position(|(lon, lat)| !(lon.is_finite() && lat.is_finite() && lat.abs() <= 90.0));
        if let Some(i) = bad {
            return Err(Error::InvalidParameter {
                name: "geolocation",
                reason: format!("sample {i} is not a valid longitude/latitude"),
            });
        }
        Ok(())
    }

    /// `GEOLOCATION` metadata items pointing at `arrays` (band 1 longitude,
    /// band 2 latitude), as GDAL's geolocation-array transformer reads them.
    fn metadata(&self, arrays: &str, srs_wkt: &str) -> Vec<(&'static str, String)> {
        // With PIXEL_CENTER, GDAL places sample i at image coordinate
        // OFFSET + (i + 0.5) * STEP; sample i is the centre of column
        // i * STEP, i.e. coordinate i * STEP + 0.5.
        let offset = |step: usize| (0.5 - 0.5 * step as f64).to_string();
        vec![
            ("SRS", srs_wkt.into()),
            ("X_DATASET", arrays.into()),
            ("X_BAND", "1".into()),
            ("Y_DATASET", arrays.into()),
            ("Y_BAND", "2".into()),
            ("PIXEL_OFFSET", offset(self.pixel_step)),
            ("LINE_OFFSET", offset(self.line_step)),
            ("PIXEL_STEP", self.pixel_step.to_string()),
            ("LINE_STEP", self.line_step.to_string()),
            ("GEOREFERENCING_CONVENTION", "PIXEL_CENTER".into()),
        ]
    }
}

/// Writes geolocation arrays as a two-band Float64 GeoTIFF (band 1
/// longitude, band 2 latitude, DEFLATE + floating-point predictor), the file
/// that [`write_raw_gcp_tiff_with_geolocation`] references. Longitudes are
/// unwrapped across the antimeridian the same way as GCP longitudes.
pub fn write_geolocation_arrays(path: &Path, geo: &Geolocation<'_>) -> Result<()> {
    geo.check(1, 1)?;
    let lon = continuous(geo.lon)?;
    let tmp = TempOutput::new(path)?;
    let driver =
        DriverManager::get_driver_by_name("GTiff").ctx(|| "loading GTiff driver".into())?;
    let options = creation_options(&[
        ("COMPRESS", "DEFLATE".into()),
        ("PREDICTOR", "3".into()),
        ("INTERLEAVE", "BAND".into()),
    ])?;
    let ds = driver
        .create_with_band_type_with_options::<f64, _>(
            tmp.path(),
            geo.width,
            geo.height,
            2,
            &options,
        )
        .ctx(|| format!("creating {}", path.display()))?;
    for (i, (values, name)) in [(lon, "longitude"), (geo.lat.to_vec(), "latitude")]
        .into_iter()
        .enumerate()
    {
        let mut band = ds
            .rasterband(i + 1)
            .ctx(|| format!("opening band {}", i + 1))?;
        band.set_description(name)
            .ctx(|| "setting band description".into())?;
        let mut buf = Buffer::new((geo.width, geo.height), values);
        band.write((0, 0), (geo.width, geo.height), &mut buf)
            .ctx(|| format!("writing {name}"))?;
    }
    ds.close().ctx(|| format!("closing {}", path.display()))?;
    tmp.commit()
}

/// Writes a multi-band swath-geometry GeoTIFF.
///
/// * Byte, one band per [`Band`], band description = `Band::description`.
/// * nodata = [`RAW_NODATA`] (0): invalid samples are 0; valid samples with
///   count 0 are stored as 1 (documented, lossy by one count).
/// * GCPs in EPSG:4326, stored with x = longitude, y = latitude
///   (traditional GIS axis order, as GeoTIFF always stores them).
///   If the swath crosses the antimeridian, longitudes are *unwrapped* to a
///   continuous range (negative ones +360°, e.g. 179 → 181) so that the
///   warp sees a smooth surface; the warped grid then has x beyond 180,
///   which GDAL, QGIS and PROJ accept for EPSG:4326.
/// * `metadata` items go to the default dataset domain (keys must match
///   `[A-Za-z0-9_.-]+`; values are free text, e.g. JSON link counters).
/// * Tiled 256×256, DEFLATE + horizontal predictor, band-interleaved,
///   BIGTIFF=IF_SAFER.
pub fn write_raw_gcp_tiff(
    path: &Path,
    width: usize,
    height: usize,
    bands: &[Band<'_>],
    gcps: &[Gcp],
    metadata: &[(&str, &str)],
) -> Result<()> {
    write_raw_gcp_tiff_with_geolocation(path, width, height, bands, gcps, None, metadata)
}

/// As [`write_raw_gcp_tiff`], plus `GEOLOCATION` metadata referencing
/// geolocation arrays written with [`write_geolocation_arrays`]:
/// `geolocation = (reference, arrays)`, where `reference` is the arrays'
/// file name as GDAL should open it (GDAL 3.6 resolves a relative name
/// against the working directory, not against this file). GDAL applies the
/// arrays with `gdalwarp -geoloc` / `METHOD=GEOLOC_ARRAY`; without it, tools
/// use the GCPs.
pub fn write_raw_gcp_tiff_with_geolocation(
    path: &Path,
    width: usize,
    height: usize,
    bands: &[Band<'_>],
    gcps: &[Gcp],
    geolocation: Option<(&str, &Geolocation<'_>)>,
    metadata: &[(&str, &str)],
) -> Result<()> {
    if let Some((_, geo)) = geolocation {
        geo.check(width, height)?;
    }
    let area = checked_area(width, height)?;
    if bands.is_empty() {
        return Err(Error::BandCount("at least one band required".into()));
    }
    for (i, band) in bands.iter().enumerate() {
        check_band(band, area, &format!("band {}", i + 1))?;
    }
    validate_gcps(gcps, width, height)?;
    let lons = continuous_longitudes(gcps)?;
    for (key, _) in metadata {
        check_metadata_key(key)?;
    }

    let tmp = TempOutput::new(path)?;
    let driver =
        DriverManager::get_driver_by_name("GTiff").ctx(|| "loading GTiff driver".into())?;
    let options = creation_options(&[
        ("TILED", "YES".into()),
        ("BLOCKXSIZE", "256".into()),
        ("BLOCKYSIZE", "256".into()),
        ("COMPRESS", "DEFLATE".into()),
        ("ZLEVEL", "6".into()),
        ("PREDICTOR", "2".into()),
        ("INTERLEAVE", "BAND".into()),
        ("BIGTIFF", "IF_SAFER".into()),
    ])?;
    let mut ds = driver
        .create_with_band_type_with_options::<u8, _>(
            tmp.path(),
            width,
            height,
            bands.len(),
            &options,
        )
        .ctx(|| format!("creating {}", path.display()))?;

    let mut srs = SpatialRef::from_epsg(4326).ctx(|| "building EPSG:4326".into())?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let gdal_gcps = gcps
        .iter()
        .zip(&lons)
        .enumerate()
        .map(|(i, (g, &lon))| gdal::Gcp {
            id: (i + 1).to_string(),
            info: String::new(),
            pixel: g.pixel,
            line: g.line,
            x: lon,
            y: g.lat,
            z: 0.0,
        })
        .collect();
    ds.set_gcps(gdal_gcps, &srs).ctx(|| "setting GCPs".into())?;

    for (key, value) in metadata {
        ds.set_metadata_item(key, value, "")
            .ctx(|| format!("setting metadata item {key}"))?;
    }
    if let Some((reference, geo)) = geolocation {
        // GDAL 3.6's geolocation transformer wants WKT here, not "EPSG:4326".
        let wkt = srs.to_wkt().ctx(|| "EPSG:4326 as WKT".into())?;
        for (key, value) in geo.metadata(reference, &wkt) {
            ds.set_metadata_item(key, &value, "GEOLOCATION")
                .ctx(|| format!("setting GEOLOCATION item {key}"))?;
        }
    }

    let mut encoded = vec![RAW_NODATA; area];
    for (i, band) in bands.iter().enumerate() {
        for ((dst, &p), &v) in encoded.iter_mut().zip(band.pixels).zip(band.valid) {
            *dst = if v { p.max(1) } else { RAW_NODATA };
        }
        let mut gband = ds
            .rasterband(i + 1)
            .ctx(|| format!("opening band {}", i + 1))?;
        gband
            .set_no_data_value(Some(f64::from(RAW_NODATA)))
            .ctx(|| "setting nodata".into())?;
        gband
            .set_description(band.description)
            .ctx(|| "setting band description".into())?;
        // Buffer takes ownership; hand it the scratch vector and take it back.
        let mut buf = Buffer::new((width, height), std::mem::take(&mut encoded));
        gband
            .write((0, 0), (width, height), &mut buf)
            .ctx(|| format!("writing band {}", i + 1))?;
        encoded = buf.into_shape_and_vec().1;
    }
    ds.close().ctx(|| format!("closing {}", path.display()))?;
    tmp.commit()
}

fn check_metadata_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidMetadataKey(key.to_owned()))
    }
}

fn validate_gcps(gcps: &[Gcp], width: usize, height: usize) -> Result<()> {
    if gcps.len() < 3 {
        return Err(Error::TooFewGcps {
            count: gcps.len(),
            needed: 3,
            transform: "any GCP",
        });
    }
    let (w, h) = (width as f64, height as f64);
    for (index, g) in gcps.iter().enumerate() {
        let reason = if !(g.pixel.is_finite() && g.line.is_finite()) {
            Some("non-finite pixel/line".to_owned())
        } else if !(0.0..=w).contains(&g.pixel) || !(0.0..=h).contains(&g.line) {
            Some(format!(
                "pixel/line ({}, {}) outside the {width}x{height} raster",
                g.pixel, g.line
            ))
        } else if !g.lat.is_finite() || !(-90.0..=90.0).contains(&g.lat) {
            Some(format!("latitude {} outside [-90, 90]", g.lat))
        } else if !g.lon.is_finite() || !(-180.0..=360.0).contains(&g.lon) {
            Some(format!("longitude {} outside [-180, 360]", g.lon))
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidGcp { index, reason });
        }
    }
    Ok(())
}

/// Plain longitudes made continuous the way [`continuous_longitudes`] does.
fn continuous(lon: &[f64]) -> Result<Vec<f64>> {
    let gcps: Vec<Gcp> = lon
        .iter()
        .map(|&lon| Gcp {
            pixel: 0.0,
            line: 0.0,
            lat: 0.0,
            lon,
        })
        .collect();
    continuous_longitudes(&gcps)
}

/// Longitudes made continuous across the antimeridian (see
/// [`write_raw_gcp_tiff`]). Unchanged when the span is already < 180°.
pub(crate) fn continuous_longitudes(gcps: &[Gcp]) -> Result<Vec<f64>> {
    let span = |it: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = it.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x), hi.max(x))
        });
        hi - lo
    };
    let plain: Vec<f64> = gcps.iter().map(|g| g.lon).collect();
    let plain_span = span(&mut plain.iter().copied());
    if plain_span < 180.0 {
        return Ok(plain);
    }
    let shifted: Vec<f64> = plain
        .iter()
        .map(|&l| if l < 0.0 { l + 360.0 } else { l })
        .collect();
    let shifted_span = span(&mut shifted.iter().copied());
    if shifted_span < 180.0 {
        Ok(shifted)
    } else {
        Err(Error::LongitudeSpan {
            span_deg: shifted_span.min(plain_span),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(lon: f64) -> Gcp {
        Gcp {
            pixel: 0.0,
            line: 0.0,
            lat: 0.0,
            lon,
        }
    }

    #[test]
    fn longitudes_unwrap_across_antimeridian() {
        let plain = continuous_longitudes(&[g(170.0), g(179.0), g(-178.0)]).unwrap();
        assert_eq!(plain, vec![170.0, 179.0, 182.0]);
        let same = continuous_longitudes(&[g(-10.0), g(5.0), g(20.0)]).unwrap();
        assert_eq!(same, vec![-10.0, 5.0, 20.0]);
        assert!(matches!(
            continuous_longitudes(&[g(-170.0), g(-10.0), g(60.0), g(150.0)]),
            Err(Error::LongitudeSpan { .. })
        ));
    }

    #[test]
    fn metadata_keys_are_checked() {
        assert!(check_metadata_key("DOWNLINK_PASS_ID").is_ok());
        assert!(check_metadata_key("a.b-c").is_ok());
        assert!(check_metadata_key("").is_err());
        assert!(check_metadata_key("A=B").is_err());
        assert!(check_metadata_key("spa ce").is_err());
    }

    #[test]
    fn geolocation_must_cover_the_raster() {
        let (lon, lat) = (vec![10.0; 6], vec![-5.0; 6]);
        // 3 x 2 samples every 4 columns / 8 lines cover columns 0..=8, lines 0..=8.
        let geo = Geolocation {
            width: 3,
            height: 2,
            pixel_step: 4,
            line_step: 8,
            lon: &lon,
            lat: &lat,
        };
        assert!(geo.check(9, 9).is_ok());
        assert!(geo.check(10, 9).is_err());
        assert!(geo.check(9, 10).is_err());
        assert!(Geolocation {
            lon: &lon[..5],
            ..geo
        }
        .check(9, 9)
        .is_err());
        let mut bad = lat.clone();
        bad[4] = 91.0;
        assert!(Geolocation { lat: &bad, ..geo }.check(9, 9).is_err());
        // GDAL puts sample i at OFFSET + (i + 0.5) * STEP with PIXEL_CENTER: sample 0 must
        // land on the centre of column 0 (0.5), so OFFSET = 0.5 - STEP / 2.
        let meta = geo.metadata("g.tif", "WKT");
        let item = |k: &str| meta.iter().find(|(key, _)| *key == k).unwrap().1.clone();
        assert_eq!(item("PIXEL_OFFSET"), "-1.5");
        assert_eq!(item("LINE_OFFSET"), "-3.5");
        assert_eq!(item("X_DATASET"), "g.tif");
        assert_eq!(item("GEOREFERENCING_CONVENTION"), "PIXEL_CENTER");
    }

    #[test]
    fn gcps_are_validated() {
        let ok = [g(1.0), g(2.0), g(3.0)];
        assert!(validate_gcps(&ok, 10, 10).is_ok());
        assert!(matches!(
            validate_gcps(&ok[..2], 10, 10),
            Err(Error::TooFewGcps { count: 2, .. })
        ));
        let mut bad = ok;
        bad[1].pixel = 11.0;
        assert!(matches!(
            validate_gcps(&bad, 10, 10),
            Err(Error::InvalidGcp { index: 1, .. })
        ));
        let mut bad = ok;
        bad[2].lat = f64::NAN;
        assert!(matches!(
            validate_gcps(&bad, 10, 10),
            Err(Error::InvalidGcp { index: 2, .. })
        ));
    }
}
