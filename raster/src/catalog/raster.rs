//! Raster inspection and import with GDAL (3.6): footprint in EPSG:4326, an analytic COG
//! (lossless ZSTD + PREDICTOR, same CRS) and a visual web-optimized COG
//! (GoogleMapsCompatible, 8-bit, YCbCr JPEG q85 with an internal mask).
//!
//! Visual COG choices (GDAL 3.6 COG driver, <https://gdal.org/drivers/raster/cog.html>):
//! JPEG cannot carry an alpha band well (a 2-band gray+alpha JPEG compresses alpha lossily);
//! with a 3-band source plus a per-dataset mask the driver writes YCbCr JPEG with a
//! lossless internal mask, so single-band sources are expanded to 3 equal bands (palette
//! sources through their colour table). WEBP would turn the mask into a 4th (lossy) band.
//! Non-Byte bands are stretched 2 %–98 % (GDAL histogram) to 1..255 through a VRT `LUT`,
//! which clamps outside the range.

use crate::Error;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::{Dataset, DriverManager};
use serde_json::{json, Map, Value};
use stac::Item;

use super::geom::{footprint_bbox, split_antimeridian, Pos};
use super::layout::validate_id;
use super::store::Catalog;

/// COG media type.
pub const COG_MEDIA_TYPE: &str = "image/tiff; application=geotiff; profile=cloud-optimized";
/// Projection extension v2.
pub const PROJ_EXT: &str = "https://stac-extensions.github.io/projection/v2.0.0/schema.json";
/// Points sampled per raster edge for the footprint (corners and midpoints included).
pub const EDGE_SAMPLES: usize = 8;
/// The COG validator shipped with Debian's python3-gdal.
pub const COG_VALIDATOR: &str =
    "/usr/lib/python3/dist-packages/osgeo_utils/samples/validate_cloud_optimized_geotiff.py";

pub(crate) fn gd(context: impl Into<String>) -> impl FnOnce(gdal::errors::GdalError) -> Error {
    let context = context.into();
    move |source| Error::Gdal { context, source }
}
pub(crate) fn io(
    context: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        context,
        path,
        source,
    }
}

/// What import and the item builder need to know about a raster.
#[derive(Debug, Clone, PartialEq)]
pub struct RasterInfo {
    /// Width, height in pixels.
    pub size: (usize, usize),
    /// GDAL geotransform.
    pub geo_transform: [f64; 6],
    /// `AUTH:CODE` when the CRS has one (e.g. `EPSG:32618`).
    pub proj_code: Option<String>,
    /// CRS as WKT2.
    pub wkt: String,
    /// Per band: GDAL data type name (`Byte`, `UInt16`, `Float32`, ...).
    pub band_types: Vec<String>,
    /// Per band nodata.
    pub nodata: Vec<Option<f64>>,
    /// Whether band 1 has a colour table.
    pub paletted: bool,
    /// Footprint rings in EPSG:4326 lon/lat (1, or 2 if split at the antimeridian).
    pub footprint: Vec<Vec<Pos>>,
    /// STAC bbox `[w, s, e, n]`.
    pub bbox: [f64; 4],
}

impl RasterInfo {
    /// STAC `proj:transform` (first 6 of the 9 affine coefficients, row-major `a b c d e f`
    /// with x = a*col + b*row + c).
    pub fn proj_transform(&self) -> [f64; 6] {
        let g = self.geo_transform;
        [g[1], g[2], g[0], g[4], g[5], g[3]]
    }

    /// STAC `proj:shape` `[rows, cols]`.
    pub fn proj_shape(&self) -> [usize; 2] {
        [self.size.1, self.size.0]
    }

    /// STAC data type name (`uint8`, `float32`, ...) of band 1.
    pub fn stac_data_type(&self) -> Option<&'static str> {
        stac_data_type_name(self.band_types.first()?)
    }

    /// Projection fields for an asset or item (`proj:code` or `proj:wkt2`, shape,
    /// transform, bbox in the native CRS is omitted).
    pub fn proj_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        match &self.proj_code {
            Some(c) => {
                m.insert("proj:code".into(), json!(c));
            }
            None => {
                m.insert("proj:code".into(), Value::Null);
                m.insert("proj:wkt2".into(), json!(self.wkt));
            }
        }
        m.insert("proj:shape".into(), json!(self.proj_shape()));
        m.insert("proj:transform".into(), json!(self.proj_transform()));
        m
    }
}

/// STAC data type name (`uint8`, `float32`, ...) of a GDAL data type name (`Byte`, ...).
pub fn stac_data_type_name(gdal_type: &str) -> Option<&'static str> {
    Some(match gdal_type {
        "Byte" => "uint8",
        "Int8" => "int8",
        "UInt16" => "uint16",
        "Int16" => "int16",
        "UInt32" => "uint32",
        "Int32" => "int32",
        "UInt64" => "uint64",
        "Int64" => "int64",
        "Float32" => "float32",
        "Float64" => "float64",
        "CInt16" => "cint16",
        "CInt32" => "cint32",
        "CFloat32" => "cfloat32",
        "CFloat64" => "cfloat64",
        _ => return None,
    })
}
fn wgs84() -> Result<SpatialRef, Error> {
    let mut s = SpatialRef::from_epsg(4326).map_err(gd("EPSG:4326"))?;
    s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    Ok(s)
}

/// Read size, CRS, geotransform, bands and the EPSG:4326 footprint of an open dataset.
pub fn raster_info(ds: &Dataset, path: &Path) -> Result<RasterInfo, Error> {
    let not_geo = || Error::NotGeoreferenced(path.to_path_buf());
    let mut srs = ds.spatial_ref().map_err(|_| not_geo())?;
    let wkt = srs.to_wkt().map_err(gd("to_wkt"))?;
    if wkt.is_empty() {
        return Err(not_geo());
    }
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let gt = ds.geo_transform().map_err(|_| not_geo())?;
    let size = ds.raster_size();
    let proj_code = match (srs.auth_name(), srs.auth_code()) {
        (Some(n), Ok(c)) => Some(format!("{n}:{c}")),
        _ => None,
    };
    let mut band_types = Vec::new();
    let mut nodata = Vec::new();
    let mut paletted = false;
    for (i, b) in ds.rasterbands().enumerate() {
        let b = b.map_err(gd("band"))?;
        band_types.push(b.band_type().name());
        nodata.push(b.no_data_value());
        if i == 0 {
            paletted = b.color_table().is_some();
        }
    }
    if band_types.is_empty() {
        return Err(Error::NoBands(path.to_path_buf()));
    }

    // Sample the pixel-space boundary clockwise from the top-left corner.
    let (w, h) = (size.0 as f64, size.1 as f64);
    let n = EDGE_SAMPLES;
    let mut pix: Vec<(f64, f64)> = Vec::with_capacity(4 * n);
    for i in 0..n {
        let t = i as f64 / n as f64;
        pix.push((t * w, 0.0));
    }
    for i in 0..n {
        let t = i as f64 / n as f64;
        pix.push((w, t * h));
    }
    for i in 0..n {
        let t = i as f64 / n as f64;
        pix.push((w - t * w, h));
    }
    for i in 0..n {
        let t = i as f64 / n as f64;
        pix.push((0.0, h - t * h));
    }
    let (footprint, bbox) = footprint_of_pixel_ring(&srs, &gt, &pix, path)?;
    Ok(RasterInfo {
        size,
        geo_transform: gt,
        proj_code,
        wkt,
        band_types,
        nodata,
        paletted,
        footprint,
        bbox,
    })
}

/// The EPSG:4326 footprint (rings split at the antimeridian) and bbox of a ring of pixel
/// positions `(col, row)` of a raster with CRS `srs` (traditional GIS axis order) and
/// geotransform `gt`. Points outside the projection's domain are skipped.
pub(crate) fn footprint_of_pixel_ring(
    srs: &SpatialRef,
    gt: &[f64; 6],
    pix: &[(f64, f64)],
    path: &Path,
) -> Result<(Vec<Vec<Pos>>, [f64; 4]), Error> {
    let ct = CoordTransform::new(srs, &wgs84()?).map_err(gd("CoordTransform"))?;
    let mut ring: Vec<Pos> = Vec::with_capacity(pix.len());
    for &(px, py) in pix {
        let mut x = [gt[0] + px * gt[1] + py * gt[2]];
        let mut y = [gt[3] + px * gt[4] + py * gt[5]];
        // One point at a time: points outside the projection's domain are skipped.
        if ct.transform_coords(&mut x, &mut y, &mut []).is_ok()
            && x[0].is_finite()
            && y[0].is_finite()
        {
            ring.push([x[0], y[0].clamp(-90.0, 90.0)]);
        }
    }
    if ring.len() < 3 {
        return Err(Error::Footprint(path.to_path_buf()));
    }
    // Make the ring counter-clockwise (RFC 7946 §3.1.6) before closing it.
    let area2: f64 = (0..ring.len())
        .filter_map(|i| {
            let a = ring.get(i)?;
            let b = ring.get((i + 1) % ring.len())?;
            Some(a[0] * b[1] - b[0] * a[1])
        })
        .sum();
    if area2 < 0.0 {
        ring.reverse();
    }
    let footprint = split_antimeridian(&ring);
    let bbox = footprint_bbox(&footprint).ok_or_else(|| Error::Footprint(path.to_path_buf()))?;
    Ok((footprint, bbox))
}

/// Open a raster and read its [`RasterInfo`].
pub fn inspect(path: &Path) -> Result<RasterInfo, Error> {
    let ds = Dataset::open(path).map_err(gd(format!("open {}", path.display())))?;
    raster_info(&ds, path)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// 2 % and 98 % points of a band from a 1024-bucket GDAL histogram (nodata excluded).
fn percentile_stretch(ds: &Dataset, band: usize) -> Result<(f64, f64), Error> {
    let b = ds.rasterband(band).map_err(gd("band"))?;
    let st = b
        .get_statistics(true, true)
        .map_err(gd("statistics"))?
        .ok_or_else(|| Error::Stac("no statistics".into()))?;
    if !(st.min.is_finite() && st.max.is_finite()) || st.max <= st.min {
        return Ok((st.min, st.min + 1.0));
    }
    let hist = b
        .histogram(st.min, st.max, 1024, false, true)
        .map_err(gd("histogram"))?;
    let counts = hist.counts();
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Ok((st.min, st.max));
    }
    let bucket = (st.max - st.min) / counts.len() as f64;
    let at = |q: f64| {
        let target = (total as f64 * q).ceil() as u64;
        let mut acc = 0u64;
        for (i, c) in counts.iter().enumerate() {
            acc += c;
            if acc >= target {
                return st.min + (i as f64 + 0.5) * bucket;
            }
        }
        st.max
    };
    let (lo, hi) = (at(0.02), at(0.98));
    Ok(if hi > lo { (lo, hi) } else { (st.min, st.max) })
}

/// A geographic raster whose longitudes run past ±180° (see
/// [`super::geom::lon_wrap_for_grid`]): the PROJ definition to read it with, and the
/// GoogleMapsCompatible zoom level matching its resolution (the automatic choice would take
/// the whole world's width as the extent and pick a very coarse level).
fn across_antimeridian(info: &RasterInfo) -> Option<(&'static str, u32)> {
    let g = info.geo_transform;
    let geographic =
        gdal::spatial_ref::SpatialRef::from_wkt(&info.wkt).is_ok_and(|s| s.is_geographic());
    let wrap = super::geom::lon_wrap_for_grid(geographic, &g, info.size.0)?;
    // Metres per pixel at the equator → the closest level (156543.03 m/px at zoom 0).
    let res_m = g[1] * 111_319.490_793;
    let z = (156_543.033_928 / res_m).log2().round().clamp(0.0, 22.0);
    Some((wrap, z as u32))
}

/// VRT (XML) that turns `src` into 3 Byte bands (+ per-dataset mask from the source's
/// band-1 mask when the source has nodata).
fn visual_vrt(ds: &Dataset, src: &Path, info: &RasterInfo) -> Result<String, Error> {
    let srcname = xml_escape(&src.to_string_lossy());
    let g = info.geo_transform;
    let srs = across_antimeridian(info).map_or_else(|| info.wkt.clone(), |(w, _)| w.to_owned());
    let mut x = format!(
        "<VRTDataset rasterXSize=\"{}\" rasterYSize=\"{}\"><SRS>{}</SRS><GeoTransform>{:.17e},{:.17e},{:.17e},{:.17e},{:.17e},{:.17e}</GeoTransform>",
        info.size.0,
        info.size.1,
        xml_escape(&srs),
        g[0], g[1], g[2], g[3], g[4], g[5]
    );
    let nb = info.band_types.len();
    let interp = ["Red", "Green", "Blue"];
    for (i, ci) in interp.iter().enumerate() {
        let (src_band, palette_comp) = if info.paletted && nb == 1 {
            (1, Some(i + 1))
        } else if nb >= 3 {
            (i + 1, None)
        } else {
            (1, None)
        };
        let ty = info.band_types.get(src_band - 1).map(String::as_str);
        let body = if let Some(c) = palette_comp {
            format!("<ColorTableComponent>{c}</ColorTableComponent>")
        } else if ty != Some("Byte") {
            let (lo, hi) = percentile_stretch(ds, src_band)?;
            format!("<LUT>{lo:.17e}:1,{hi:.17e}:255</LUT>")
        } else {
            String::new()
        };
        x.push_str(&format!(
            "<VRTRasterBand dataType=\"Byte\" band=\"{}\"><ColorInterp>{ci}</ColorInterp><ComplexSource><SourceFilename relativeToVRT=\"0\">{srcname}</SourceFilename><SourceBand>{src_band}</SourceBand>{body}</ComplexSource></VRTRasterBand>",
            i + 1
        ));
    }
    // Nodata or an alpha band: carry band 1's mask (GDAL derives it from either).
    let masked = info.nodata.iter().any(Option::is_some)
        || ds
            .rasterband(1)
            .and_then(|b| b.mask_flags())
            .is_ok_and(|f| !f.is_all_valid());
    if masked {
        x.push_str(&format!(
            "<MaskBand><VRTRasterBand dataType=\"Byte\"><SimpleSource><SourceFilename relativeToVRT=\"0\">{srcname}</SourceFilename><SourceBand>mask,1</SourceBand></SimpleSource></VRTRasterBand></MaskBand>"
        ));
    }
    x.push_str("</VRTDataset>");
    Ok(x)
}

fn cog_options(pairs: &[(&str, &str)]) -> Result<gdal::cpl::CslStringList, Error> {
    let mut o = gdal::cpl::CslStringList::new();
    for (k, v) in pairs {
        o.set_name_value(k, v).map_err(gd("creation option"))?;
    }
    Ok(o)
}

/// Run the GDAL COG validator on `path`.
pub fn validate_cog(path: &Path) -> Result<(), Error> {
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(COG_VALIDATOR)
        .arg(path)
        .output()
        .map_err(io("running the COG validator", COG_VALIDATOR))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::InvalidCog {
            path: path.to_path_buf(),
            report: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

/// Restores a thread-local GDAL config option on drop.
pub(crate) struct ConfigGuard(pub(crate) &'static str);
impl Drop for ConfigGuard {
    fn drop(&mut self) {
        let _ = gdal::config::clear_thread_local_config_option(self.0);
    }
}

/// Paths written by [`write_cogs`].
#[derive(Debug, Clone)]
pub struct CogPair {
    /// Lossless COG in the source CRS.
    pub analytic: PathBuf,
    /// 8-bit web-optimized (EPSG:3857 GoogleMapsCompatible) COG.
    pub visual: PathBuf,
}

/// Write `<stem>.tif` (analytic) and `<stem>.visual.tif` into `dir` via temp names +
/// rename, and validate both.
pub fn write_cogs(src: &Path, dir: &Path, stem: &str) -> Result<(CogPair, RasterInfo), Error> {
    validate_id("file", stem)?;
    // Statistics must not leave .aux.xml files next to the (read-only, shared) source.
    gdal::config::set_thread_local_config_option("GDAL_PAM_ENABLED", "NO").map_err(gd("config"))?;
    let _guard = ConfigGuard("GDAL_PAM_ENABLED");
    let ds = Dataset::open(src).map_err(gd(format!("open {}", src.display())))?;
    let info = raster_info(&ds, src)?;
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let cog = DriverManager::get_driver_by_name("COG").map_err(gd("COG driver"))?;

    let analytic = dir.join(format!("{stem}.tif"));
    let visual = dir.join(format!("{stem}.visual.tif"));
    let tmp_a = dir.join(format!(".{stem}.tif.tmp"));
    let tmp_v = dir.join(format!(".{stem}.visual.tif.tmp"));

    let opts = cog_options(&[
        ("COMPRESS", "ZSTD"),
        ("LEVEL", "1"),
        ("PREDICTOR", "YES"),
        ("BIGTIFF", "IF_SAFER"),
        ("NUM_THREADS", "2"),
        ("OVERVIEW_RESAMPLING", "AVERAGE"),
    ])?;
    ds.create_copy(&cog, &tmp_a, &opts)
        .map_err(gd(format!("analytic COG {}", tmp_a.display())))?;

    write_visual(&ds, src, &info, &tmp_v)?;
    validate_cog(&tmp_a)?;
    validate_cog(&tmp_v)?;
    std::fs::rename(&tmp_a, &analytic).map_err(io("renaming onto", &analytic))?;
    std::fs::rename(&tmp_v, &visual).map_err(io("renaming onto", &visual))?;
    Ok((CogPair { analytic, visual }, info))
}

/// Writes only the visual web-optimized COG of `src` at `dst` (temp name, validation,
/// rename): 8-bit, EPSG:3857 GoogleMapsCompatible tiling, JPEG with an internal mask, so a
/// map tile is one block read.
pub fn write_visual_cog(src: &Path, dst: &Path) -> Result<RasterInfo, Error> {
    gdal::config::set_thread_local_config_option("GDAL_PAM_ENABLED", "NO").map_err(gd("config"))?;
    let _guard = ConfigGuard("GDAL_PAM_ENABLED");
    let ds = Dataset::open(src).map_err(gd(format!("open {}", src.display())))?;
    let info = raster_info(&ds, src)?;
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dst.with_file_name(format!(".{name}.tmp"));
    write_visual(&ds, src, &info, &tmp)?;
    if let Err(e) = validate_cog(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, dst).map_err(io("renaming onto", dst))?;
    Ok(info)
}

pub(crate) fn write_visual(
    ds: &Dataset,
    src: &Path,
    info: &RasterInfo,
    tmp_v: &Path,
) -> Result<(), Error> {
    let cog = DriverManager::get_driver_by_name("COG").map_err(gd("COG driver"))?;
    let vrt_xml = visual_vrt(ds, src, info)?;
    let vrt = Dataset::open(&vrt_xml).map_err(gd("open visual VRT"))?;
    let zoom = across_antimeridian(info).map(|(_, z)| z.to_string());
    let mut pairs = vec![
        ("TILING_SCHEME", "GoogleMapsCompatible"),
        ("COMPRESS", "JPEG"),
        ("QUALITY", "85"),
        ("BIGTIFF", "IF_SAFER"),
        ("NUM_THREADS", "2"),
        ("RESAMPLING", "BILINEAR"),
        ("OVERVIEW_RESAMPLING", "AVERAGE"),
    ];
    if let Some(z) = &zoom {
        pairs.push(("ZOOM_LEVEL", z));
    }
    let vopts = cog_options(&pairs)?;
    vrt.create_copy(&cog, tmp_v, &vopts)
        .map_err(gd(format!("visual COG {}", tmp_v.display())))?;
    Ok(())
}

/// Import one georeferenced raster as a new item with the default id (see
/// [`super::import::import_item`], which this calls): one analytic COG per band, a visual
/// COG, a thumbnail, then the catalog insert (the commit point). The collection must exist.
/// Asset hrefs are relative to `archive_root`.
pub fn import_raster(
    catalog: &dyn Catalog,
    archive_root: &Path,
    src_path: &Path,
    collection: &str,
    datetime: DateTime<Utc>,
) -> Result<Item, Error> {
    let files = [src_path.to_path_buf()];
    let spec = super::import::ImportSpec {
        files: &files,
        collection,
        datetime,
        bands: None,
        id: None,
        replace: false,
    };
    Ok(super::import::import_item(catalog, archive_root, &spec)?.item)
}
