//! `downlink archive add`: one STAC item from one or more georeferenced rasters, with the
//! metadata that analysis clients (odc-stac, stackstac, GDAL) need to load every band without
//! hand-given grids.
//!
//! - **One single-band analytic COG asset per source band** (lossless ZSTD + PREDICTOR, source
//!   CRS and grid), keyed by the band's name: stackstac cannot read a multi-band asset, and a
//!   per-band asset is what Sentinel-2/Landsat STAC items publish. Alpha bands are not assets
//!   (they become the COG's mask). A visual web-optimized COG (from the first file) and a PNG
//!   thumbnail complete the item.
//! - Band names (`eo:common_name`, eo extension v2.0.0) come from `--bands` in order across the
//!   files, else from a GeoTIFF band description that is a common name, else from the colour
//!   interpretation of a 3+-band file (Red, Green, Blue).
//! - Every analytic asset carries STAC 1.1 `bands` (`name`, `eo:common_name`, `description`,
//!   `nodata`, `data_type`, `statistics` from GDAL's approximate statistics over the COG's
//!   overviews, `raster:scale`/`raster:offset` when the band declares them), `gsd`,
//!   `proj:code`, `proj:shape`, `proj:transform`, `proj:bbox` (projection v2.0.0, whose schema
//!   refuses the older `proj:epsg`).
//! - The footprint is the outline of the valid data (GDAL's mask of band 1, read decimated to
//!   at most [`MASK_SIZE`] pixels a side): per row the first and last valid pixel, joined
//!   into one ring, simplified (Ramer–Douglas–Peucker, `geo`) and densified in pixel space
//!   before it is projected to EPSG:4326. A raster whose mask is all valid gets its rectangle.
//! - Ids: `--id`, else [`default_item_id`] (collection + datetime + file stem). An existing
//!   id is refused unless `replace`; a replaced item's files are removed only after the new
//!   item is committed (the catalog write is the commit point), and the new files are written
//!   into a fresh directory so the old item stays whole until then.

use crate::Error;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use gdal::raster::{ColorInterpretation, ResampleAlg};
use gdal::spatial_ref::{AxisMappingStrategy, SpatialRef};
use gdal::{Dataset, DriverManager, Metadata};
use geo::{Densify, Euclidean, Simplify};
use serde_json::{json, Map, Value};
use stac::{Asset, Item};

use super::geom::{rings_to_geojson, Pos};
use super::item::{EO_EXT, FILE_EXT};
use super::layout::{item_dir, validate_id, COLLECTIONS_DIR, MAX_ID_LEN};
use super::raster::{
    footprint_of_pixel_ring, gd, io, raster_info, validate_cog, write_visual, ConfigGuard,
    RasterInfo, COG_MEDIA_TYPE, PROJ_EXT,
};
use super::store::{local_href, Catalog};

/// The `eo:common_name` a band description names: the whole description (`"nir"`), or the one
/// word of it that is a common name (`"B04 red 665nm"` → `red`). None when no word or more
/// than one is, or for "red edge", whose common name is `rededge` (never `red`).
pub fn common_name_in(description: &str) -> Option<String> {
    let d = description.trim().to_ascii_lowercase();
    if EO_COMMON_NAMES.contains(&d.as_str()) {
        return Some(d);
    }
    let words: Vec<&str> = d
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if words.contains(&"edge") {
        return None;
    }
    let mut names = words.iter().filter(|w| EO_COMMON_NAMES.contains(w));
    match (names.next(), names.next()) {
        (Some(one), None) => Some((*one).to_owned()),
        _ => None,
    }
}

/// The `eo:common_name` values of the eo extension v2.0.0.
pub const EO_COMMON_NAMES: &[&str] = &[
    "pan",
    "coastal",
    "blue",
    "green",
    "green05",
    "yellow",
    "red",
    "rededge",
    "rededge071",
    "rededge075",
    "rededge078",
    "nir",
    "nir08",
    "nir09",
    "cirrus",
    "swir16",
    "swir22",
    "lwir",
    "lwir11",
    "lwir12",
];

/// raster extension v2.0.0 (`raster:scale`, `raster:offset` in `bands`), declared when used.
pub const RASTER_EXT: &str = "https://stac-extensions.github.io/raster/v2.0.0/schema.json";

/// Longest side of the decimated validity mask the footprint is traced on.
pub const MASK_SIZE: usize = 512;
/// Longest side of the PNG thumbnail.
pub const THUMBNAIL_SIZE: usize = 256;
/// Metres per degree on the equator (WGS 84 semi-major axis × π / 180).
const M_PER_DEG: f64 = 111_319.490_793;

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportSpec<'a> {
    /// The rasters; one item, one analytic asset per band.
    pub files: &'a [PathBuf],
    /// Collection id (must exist).
    pub collection: &'a str,
    /// Acquisition time.
    pub datetime: DateTime<Utc>,
    /// `eo:common_name` of each band, in order across the files.
    pub bands: Option<&'a [String]>,
    /// Item id; `None` = [`default_item_id`].
    pub id: Option<&'a str>,
    /// Replace an existing item of the same id.
    pub replace: bool,
}

/// The outcome of an import.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The committed item (hrefs relative to the archive root).
    pub item: Item,
    /// The item it replaced, if any.
    pub replaced: Option<Item>,
    /// Files of the replaced item removed after the commit.
    pub removed: Vec<PathBuf>,
    /// Files of the replaced item that could not be removed (path, error).
    pub not_removed: Vec<(PathBuf, String)>,
}

/// `<collection>-<YYYYMMDDTHHMMSSZ>-<stem>`, characters outside `[A-Za-z0-9._-]` replaced
/// by `_`, cut to [`MAX_ID_LEN`] bytes: stable for the same file, collection and time, and
/// distinct for the same file name at another time or in another collection.
pub fn default_item_id(collection: &str, datetime: DateTime<Utc>, stem: &str) -> String {
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut id = format!(
        "{collection}-{}-{}",
        datetime.format("%Y%m%dT%H%M%SZ"),
        stem.trim_start_matches('.')
    );
    id.truncate(MAX_ID_LEN);
    id.trim_end_matches(['-', '.']).to_string()
}

/// A footprint in EPSG:4326 (rings split at the antimeridian) and its bbox `[w, s, e, n]`.
pub type Footprint = (Vec<Vec<Pos>>, [f64; 4]);

/// One analytic band to write.
struct BandPlan {
    file: usize,
    band: usize,
    key: String,
    common_name: Option<String>,
    description: Option<String>,
}

fn color_common_name(ci: &ColorInterpretation) -> Option<&'static str> {
    match ci {
        ColorInterpretation::RedBand => Some("red"),
        ColorInterpretation::GreenBand => Some("green"),
        ColorInterpretation::BlueBand => Some("blue"),
        _ => None,
    }
}

fn request(msg: String) -> Error {
    Error::Request(msg)
}

/// Decide the analytic assets: which bands, their names and keys.
fn plan_bands(
    datasets: &[(PathBuf, Dataset, RasterInfo)],
    names: Option<&[String]>,
) -> Result<Vec<BandPlan>, Error> {
    let mut plan = Vec::new();
    for (f, (_, ds, _)) in datasets.iter().enumerate() {
        let count = ds.raster_count();
        for b in 1..=count {
            let band = ds.rasterband(b).map_err(gd("band"))?;
            let ci = band.color_interpretation();
            if matches!(ci, ColorInterpretation::AlphaBand) {
                continue;
            }
            let description = band.description().ok().filter(|d| !d.trim().is_empty());
            let from_desc = description.as_deref().and_then(common_name_in);
            let from_ci = (count >= 3)
                .then(|| color_common_name(&ci).map(str::to_owned))
                .flatten();
            plan.push(BandPlan {
                file: f,
                band: b,
                key: String::new(),
                common_name: from_desc.or(from_ci),
                description,
            });
        }
    }
    if let Some(names) = names {
        if names.len() != plan.len() {
            return Err(request(format!(
                "--bands names {} band(s) ({}), but the file(s) hold {} (alpha bands excluded)",
                names.len(),
                names.join(","),
                plan.len()
            )));
        }
        for (p, n) in plan.iter_mut().zip(names) {
            let n = n.trim();
            if !EO_COMMON_NAMES.contains(&n) {
                return Err(request(format!(
                    "--bands: {n:?} is not an eo:common_name (one of {})",
                    EO_COMMON_NAMES.join(", ")
                )));
            }
            p.common_name = Some(n.to_owned());
        }
    }
    // Keys: the common name when it is unique in the item, else `b<N>` (N counts bands
    // across the files from 1); a single unnamed band is `data`.
    let mut seen = BTreeSet::new();
    let dup: BTreeSet<String> = plan
        .iter()
        .filter_map(|p| p.common_name.clone())
        .filter(|n| !seen.insert(n.clone()))
        .collect();
    if names.is_some() && !dup.is_empty() {
        return Err(request(format!(
            "--bands: {} given more than once",
            dup.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    let single = plan.len() == 1;
    for (i, p) in plan.iter_mut().enumerate() {
        p.key = match &p.common_name {
            Some(n) if !dup.contains(n) => n.clone(),
            _ if single => "data".to_owned(),
            _ => format!("b{}", i + 1),
        };
    }
    Ok(plan)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A VRT of band `band` of `src` alone (nodata, scale/offset and a per-dataset or alpha
/// mask carried over).
fn single_band_vrt(
    ds: &Dataset,
    src: &Path,
    info: &RasterInfo,
    band: usize,
) -> Result<String, Error> {
    let b = ds.rasterband(band).map_err(gd("band"))?;
    let srcname = xml_escape(&src.to_string_lossy());
    let g = info.geo_transform;
    let ty = b.band_type().name();
    let mut x = format!(
        "<VRTDataset rasterXSize=\"{}\" rasterYSize=\"{}\"><SRS>{}</SRS><GeoTransform>{:.17e},{:.17e},{:.17e},{:.17e},{:.17e},{:.17e}</GeoTransform><VRTRasterBand dataType=\"{ty}\" band=\"1\">",
        info.size.0, info.size.1, xml_escape(&info.wkt), g[0], g[1], g[2], g[3], g[4], g[5]
    );
    if let Some(nd) = b.no_data_value() {
        x.push_str(&format!("<NoDataValue>{nd:.17e}</NoDataValue>"));
    }
    if let Ok(d) = b.description() {
        if !d.is_empty() {
            x.push_str(&format!("<Description>{}</Description>", xml_escape(&d)));
        }
    }
    if let Some(s) = b.scale() {
        x.push_str(&format!("<Scale>{s:.17e}</Scale>"));
    }
    if let Some(o) = b.offset() {
        x.push_str(&format!("<Offset>{o:.17e}</Offset>"));
    }
    x.push_str(&format!(
        "<SimpleSource><SourceFilename relativeToVRT=\"0\">{srcname}</SourceFilename><SourceBand>{band}</SourceBand></SimpleSource></VRTRasterBand>"
    ));
    let flags = b.mask_flags().map_err(gd("mask flags"))?;
    if b.no_data_value().is_none() && (flags.is_per_dataset() || flags.is_alpha()) {
        x.push_str(&format!(
            "<MaskBand><VRTRasterBand dataType=\"Byte\"><SimpleSource><SourceFilename relativeToVRT=\"0\">{srcname}</SourceFilename><SourceBand>mask,{band}</SourceBand></SimpleSource></VRTRasterBand></MaskBand>"
        ));
    }
    x.push_str("</VRTDataset>");
    Ok(x)
}

/// Write band `band` of `src` as a single-band lossless COG at `dst` (through `tmp`,
/// validated, fsynced, renamed).
fn write_band_cog(
    ds: &Dataset,
    src: &Path,
    info: &RasterInfo,
    band: usize,
    tmp: &Path,
    dst: &Path,
) -> Result<(), Error> {
    let cog = DriverManager::get_driver_by_name("COG").map_err(gd("COG driver"))?;
    let mut opts = gdal::cpl::CslStringList::new();
    for (k, v) in [
        ("COMPRESS", "ZSTD"),
        ("LEVEL", "1"),
        ("PREDICTOR", "YES"),
        ("BIGTIFF", "IF_SAFER"),
        ("NUM_THREADS", "2"),
        ("OVERVIEW_RESAMPLING", "AVERAGE"),
        // Overviews made from full resolution, never taken from the source: a source that has
        // its own (a COG) would hand them through the single-band VRT, and GDAL 3.6 reads
        // those back as nodata (empty overviews, and no statistics).
        ("OVERVIEWS", "IGNORE_EXISTING"),
    ] {
        opts.set_name_value(k, v).map_err(gd("creation option"))?;
    }
    if ds.raster_count() == 1 {
        // The source as it is (a colour table included).
        ds.create_copy(&cog, tmp, &opts)
    } else {
        let vrt =
            Dataset::open(single_band_vrt(ds, src, info, band)?).map_err(gd("open band VRT"))?;
        vrt.create_copy(&cog, tmp, &opts)
    }
    .map_err(gd(format!("analytic COG {}", tmp.display())))?;
    validate_cog(tmp)?;
    crate::sync_file(tmp).map_err(|e| Error::Stac(e.to_string()))?;
    std::fs::rename(tmp, dst).map_err(io("renaming onto", dst))?;
    Ok(())
}

/// Ground sample distance in metres of a grid: the square root of the pixel area, with
/// degrees taken at the grid's centre latitude.
pub fn gsd(info: &RasterInfo) -> Option<f64> {
    let g = info.geo_transform;
    let area = (g[1] * g[5] - g[2] * g[4]).abs();
    if !(area.is_finite() && area > 0.0) {
        return None;
    }
    let srs = SpatialRef::from_wkt(&info.wkt).ok()?;
    let m = if srs.is_geographic() {
        let lat = (info.bbox[1] + info.bbox[3]) / 2.0;
        area.sqrt() * M_PER_DEG * lat.to_radians().cos().abs().sqrt()
    } else {
        area.sqrt() * srs.linear_units()
    };
    (m.is_finite() && m > 0.0).then(|| (m * 1000.0).round() / 1000.0)
}

/// `proj:bbox` in the raster's own CRS: `[minx, miny, maxx, maxy]` of its four corners.
pub fn proj_bbox(info: &RasterInfo) -> [f64; 4] {
    let g = info.geo_transform;
    let (w, h) = (info.size.0 as f64, info.size.1 as f64);
    let corners = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)]
        .map(|(c, r)| (g[0] + c * g[1] + r * g[2], g[3] + c * g[4] + r * g[5]));
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for (x, y) in corners {
        b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
    }
    b
}

/// The projection fields (extension v2.0.0) of an asset: `proj:code` (or `proj:wkt2` when the
/// CRS has no code), `proj:shape`, `proj:transform`, `proj:bbox`. No `proj:epsg`: the v2.0.0
/// schema replaced it by `proj:code` and refuses it (an item carrying both fails validation).
pub fn asset_proj_fields(info: &RasterInfo) -> Map<String, Value> {
    let mut m = info.proj_fields();
    m.insert("proj:bbox".into(), json!(proj_bbox(info)));
    m
}

/// The STAC 1.1 band object of band `band` of an analytic COG: data type, nodata, GDAL's
/// approximate statistics (from overviews), scale/offset when declared.
pub fn band_metadata(ds: &Dataset, band: usize) -> Result<Map<String, Value>, Error> {
    let b = ds.rasterband(band).map_err(gd("band"))?;
    let mut m = Map::new();
    let dt = super::raster::stac_data_type_name(&b.band_type().name());
    if let Some(dt) = dt {
        m.insert("data_type".into(), json!(dt));
    }
    if let Some(nd) = b.no_data_value() {
        // STAC 1.1 writes a NaN nodata as the string "nan".
        m.insert(
            "nodata".into(),
            if nd.is_nan() {
                json!("nan")
            } else if nd.is_infinite() {
                json!(if nd > 0.0 { "inf" } else { "-inf" })
            } else {
                json!(nd)
            },
        );
    }
    if let Ok(Some(st)) = b.get_statistics(true, true) {
        let mut s = Map::new();
        for (k, v) in [
            ("minimum", st.min),
            ("maximum", st.max),
            ("mean", st.mean),
            ("stddev", st.std_dev),
        ] {
            if v.is_finite() {
                s.insert(k.into(), json!(v));
            }
        }
        if !s.is_empty() {
            m.insert("statistics".into(), Value::Object(s));
        }
    }
    if let Some(s) = b.scale().filter(|s| *s != 1.0) {
        m.insert("raster:scale".into(), json!(s));
    }
    if let Some(o) = b.offset().filter(|o| *o != 0.0) {
        m.insert("raster:offset".into(), json!(o));
    }
    Ok(m)
}

/// The outline of the valid data of `ds` in EPSG:4326 (see the module docs); `None` when band
/// 1 has no mask (every pixel valid) or no pixel is valid.
pub fn valid_data_footprint(
    ds: &Dataset,
    info: &RasterInfo,
    path: &Path,
) -> Result<Option<Footprint>, Error> {
    let b = ds.rasterband(1).map_err(gd("band"))?;
    let flags = b.mask_flags().map_err(gd("mask flags"))?;
    if flags.is_all_valid() {
        return Ok(None);
    }
    let (w, h) = info.size;
    let f = (w.max(h) as f64 / MASK_SIZE as f64).max(1.0);
    let (mw, mh) = (
        ((w as f64 / f).round() as usize).max(1),
        ((h as f64 / f).round() as usize).max(1),
    );
    let mask = b.open_mask_band().map_err(gd("mask band"))?;
    let buf = mask
        .read_as::<u8>(
            (0, 0),
            (w, h),
            (mw, mh),
            Some(ResampleAlg::NearestNeighbour),
        )
        .map_err(gd("read mask"))?;
    let data = buf.data();
    let (sx, sy) = (w as f64 / mw as f64, h as f64 / mh as f64);
    let mut left: Vec<(f64, f64)> = Vec::new();
    let mut right: Vec<(f64, f64)> = Vec::new();
    for r in 0..mh {
        let row = data.get(r * mw..(r + 1) * mw).unwrap_or(&[]);
        let first = row.iter().position(|v| *v != 0);
        let last = row.iter().rposition(|v| *v != 0);
        if let (Some(a), Some(z)) = (first, last) {
            let (top, bottom) = (r as f64 * sy, (r + 1) as f64 * sy);
            left.push((a as f64 * sx, top));
            left.push((a as f64 * sx, bottom));
            right.push(((z + 1) as f64 * sx, top));
            right.push(((z + 1) as f64 * sx, bottom));
        }
    }
    if left.is_empty() {
        return Ok(None);
    }
    // Counter-clockwise on screen is clockwise in pixel space (rows grow down): down the
    // left side, up the right side.
    let mut ring: Vec<geo::Coord<f64>> = left
        .iter()
        .chain(right.iter().rev())
        .map(|&(x, y)| geo::coord! { x: x, y: y })
        .collect();
    if let Some(first) = ring.first().copied() {
        ring.push(first);
    }
    let line = geo::LineString::new(ring);
    // Within two decimated pixels of the traced outline; edges no longer than 1/16 of the
    // raster's size so that a projected straight edge stays close to its true curve.
    let simple = line.simplify(2.0 * sx.max(sy));
    let dense = Euclidean.densify(&simple, w.max(h) as f64 / 16.0);
    let pix: Vec<(f64, f64)> = dense
        .coords()
        .map(|c| (c.x, c.y))
        .collect::<Vec<_>>()
        .split_last()
        .map(|(_, rest)| rest.to_vec())
        .unwrap_or_default();
    if pix.len() < 3 {
        return Ok(None);
    }
    let mut srs = ds.spatial_ref().map_err(gd("spatial ref"))?;
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    footprint_of_pixel_ring(&srs, &info.geo_transform, &pix, path).map(Some)
}

/// An RGBA PNG of at most [`THUMBNAIL_SIZE`] pixels a side from a 3-band 8-bit raster with a
/// mask (the visual COG: its overviews are read).
pub fn write_thumbnail(visual: &Path, dst: &Path) -> Result<(), Error> {
    let ds = Dataset::open(visual).map_err(gd(format!("open {}", visual.display())))?;
    let (w, h) = ds.raster_size();
    let f = (w.max(h) as f64 / THUMBNAIL_SIZE as f64).max(1.0);
    let (tw, th) = (
        ((w as f64 / f).round() as usize).max(1),
        ((h as f64 / f).round() as usize).max(1),
    );
    let mut planes = Vec::new();
    for i in 1..=3usize.min(ds.raster_count()) {
        let b = ds.rasterband(i).map_err(gd("band"))?;
        planes.push(
            b.read_as::<u8>((0, 0), (w, h), (tw, th), Some(ResampleAlg::Average))
                .map_err(gd("read visual"))?
                .into_shape_and_vec()
                .1,
        );
        if i == 1 {
            let m = b.open_mask_band().map_err(gd("mask band"))?;
            let alpha = m
                .read_as::<u8>(
                    (0, 0),
                    (w, h),
                    (tw, th),
                    Some(ResampleAlg::NearestNeighbour),
                )
                .map_err(gd("read mask"))?
                .into_shape_and_vec()
                .1;
            planes.push(alpha);
        }
    }
    // planes: [band1, alpha, band2, band3]
    let get = |p: usize, i: usize| planes.get(p).and_then(|v| v.get(i)).copied();
    let mut rgba = Vec::with_capacity(tw * th * 4);
    for i in 0..tw * th {
        let r = get(0, i).unwrap_or(0);
        let a = get(1, i).unwrap_or(255);
        rgba.extend([r, get(2, i).unwrap_or(r), get(3, i).unwrap_or(r), a]);
    }
    let img = image::RgbaImage::from_raw(tw as u32, th as u32, rgba)
        .ok_or_else(|| Error::Stac("thumbnail buffer size".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::Stac(format!("thumbnail PNG: {e}")))?;
    crate::write_atomic(dst, &png).map_err(|e| Error::Stac(e.to_string()))?;
    Ok(())
}

fn file_size(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

/// A fresh directory for the item's files: its layout directory, or when that already exists
/// (the item being replaced, or a leftover), a sibling with a unique suffix.
fn fresh_dir(root: &Path, collection: &str, id: &str, dt: DateTime<Utc>) -> Result<PathBuf, Error> {
    let base = root.join(item_dir(collection, id, dt)?);
    if !base.exists() {
        return Ok(base);
    }
    let alt = format!(
        "{id}.r{}-{}",
        Utc::now().format("%Y%m%dT%H%M%S"),
        crate::unique_suffix()
    );
    Ok(root.join(item_dir(collection, &alt, dt)?))
}

/// Import `spec.files` as one item (see the module docs). The collection must exist.
pub fn import_item(
    catalog: &dyn Catalog,
    root: &Path,
    spec: &ImportSpec<'_>,
) -> Result<Imported, Error> {
    validate_id("collection", spec.collection)?;
    let first = spec
        .files
        .first()
        .ok_or_else(|| request("no file to import".into()))?;
    let stem = first
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id = match spec.id {
        Some(i) => i.to_owned(),
        None => default_item_id(spec.collection, spec.datetime, &stem),
    };
    validate_id("item", &id)?;
    let old = catalog.item(spec.collection, &id)?;
    if old.is_some() && !spec.replace {
        return Err(Error::Exists {
            collection: spec.collection.to_owned(),
            id,
        });
    }

    // Statistics must not leave .aux.xml files next to the sources or the COGs.
    gdal::config::set_thread_local_config_option("GDAL_PAM_ENABLED", "NO").map_err(gd("config"))?;
    let _guard = ConfigGuard("GDAL_PAM_ENABLED");
    let mut datasets = Vec::new();
    for f in spec.files {
        let ds = Dataset::open(f).map_err(gd(format!("open {}", f.display())))?;
        let info = raster_info(&ds, f)?;
        datasets.push((f.clone(), ds, info));
    }
    let plan = plan_bands(&datasets, spec.bands)?;

    let dir = fresh_dir(root, spec.collection, &id, spec.datetime)?;
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let written = write_item_files(&datasets, &plan, &dir, root, spec, &id);
    let item = match written {
        Ok(item) => item,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let committed = if old.is_some() {
        catalog.upsert_item(&item)
    } else {
        catalog.insert_item(&item)
    };
    if let Err(e) = committed {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(match e {
            archive::Error::ItemExists { collection, id } => Error::Exists { collection, id },
            e => e.into(),
        });
    }
    let (removed, not_removed) = match &old {
        Some(o) => remove_item_files(root, o, Some(&item)),
        None => (Vec::new(), Vec::new()),
    };
    Ok(Imported {
        item,
        replaced: old,
        removed,
        not_removed,
    })
}

fn write_item_files(
    datasets: &[(PathBuf, Dataset, RasterInfo)],
    plan: &[BandPlan],
    dir: &Path,
    root: &Path,
    spec: &ImportSpec<'_>,
    id: &str,
) -> Result<Item, Error> {
    let href = |p: &Path| {
        p.strip_prefix(root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let mut item = Item::new(id);
    item.collection = Some(spec.collection.to_owned());
    item.properties.datetime = Some(spec.datetime);
    item.extensions = vec![EO_EXT.to_owned(), PROJ_EXT.to_owned(), FILE_EXT.to_owned()];
    let mut gsds = Vec::new();
    let mut codes = BTreeSet::new();
    for p in plan {
        let Some((src, ds, info)) = datasets.get(p.file) else {
            continue;
        };
        let dst = dir.join(format!("{}.tif", p.key));
        let tmp = dir.join(format!(".{}.tif.tmp", p.key));
        write_band_cog(ds, src, info, p.band, &tmp, &dst)?;
        let out = Dataset::open(&dst).map_err(gd(format!("open {}", dst.display())))?;
        let oinfo = raster_info(&out, &dst)?;
        let mut bm = Map::new();
        bm.insert("name".into(), json!(p.key));
        if let Some(c) = &p.common_name {
            bm.insert("eo:common_name".into(), json!(c));
        }
        if let Some(d) = &p.description {
            bm.insert("description".into(), json!(d));
        }
        bm.extend(band_metadata(&out, 1)?);
        let mut a = Asset::new(href(&dst)).role("data");
        a.r#type = Some(COG_MEDIA_TYPE.to_owned());
        let file_name = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        a.title = Some(match &p.common_name {
            Some(c) => format!("{c} ({file_name} band {})", p.band),
            None => format!("{file_name} band {}", p.band),
        });
        a.bands =
            vec![serde_json::from_value(Value::Object(bm))
                .map_err(|e| Error::Stac(e.to_string()))?];
        a.additional_fields.extend(asset_proj_fields(&oinfo));
        if let Some(g) = gsd(&oinfo) {
            a.additional_fields.insert("gsd".into(), json!(g));
            gsds.push(g);
        }
        if let Some(s) = file_size(&dst) {
            a.additional_fields.insert("file:size".into(), json!(s));
        }
        codes.insert(oinfo.proj_code.clone());
        item.assets.insert(p.key.clone(), a);
    }

    let (first_src, first_ds, first_info) = datasets
        .first()
        .ok_or_else(|| request("no file to import".into()))?;
    let visual = dir.join("visual.tif");
    let tmp_v = dir.join(".visual.tif.tmp");
    write_visual(first_ds, first_src, first_info, &tmp_v)?;
    validate_cog(&tmp_v)?;
    crate::sync_file(&tmp_v).map_err(|e| Error::Stac(e.to_string()))?;
    std::fs::rename(&tmp_v, &visual).map_err(io("renaming onto", &visual))?;
    let vds = Dataset::open(&visual).map_err(gd("open visual"))?;
    let vinfo = raster_info(&vds, &visual)?;
    let mut va = Asset::new(href(&visual)).role("visual");
    va.r#type = Some(COG_MEDIA_TYPE.to_owned());
    va.title = Some("visual (8-bit, web mercator)".into());
    va.additional_fields.extend(asset_proj_fields(&vinfo));
    item.assets.insert("visual".into(), va);
    let thumb = dir.join("thumbnail.png");
    write_thumbnail(&visual, &thumb)?;
    let mut ta = Asset::new(href(&thumb)).role("thumbnail");
    ta.r#type = Some("image/png".into());
    ta.title = Some("thumbnail".into());
    item.assets.insert("thumbnail".into(), ta);

    let (footprint, bbox) = match valid_data_footprint(first_ds, first_info, first_src)? {
        Some(fb) => fb,
        None => (first_info.footprint.clone(), first_info.bbox),
    };
    item.geometry = Some(
        serde_json::from_value(rings_to_geojson(&footprint))
            .map_err(|e| Error::Stac(e.to_string()))?,
    );
    let [w, s, e, n] = bbox;
    item.bbox = Some(stac::Bbox::new(w, s, e, n));
    let scaled = item.assets.values().flat_map(|a| a.bands.iter()).any(|b| {
        b.additional_fields.contains_key("raster:scale")
            || b.additional_fields.contains_key("raster:offset")
    });
    if scaled {
        item.extensions.push(RASTER_EXT.to_owned());
    }
    let props = &mut item.properties.additional_fields;
    if let Some(g) = gsds.iter().copied().reduce(f64::min) {
        props.insert("gsd".into(), json!(g));
    }
    // One CRS for every analytic asset: also on the item.
    if let [Some(code)] = codes.iter().collect::<Vec<_>>().as_slice() {
        props.insert("proj:code".into(), json!(code));
    }
    // `updated` versions the item: the tile cache and ETags of a replaced item change with it.
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    item.properties.created = Some(now.clone());
    item.properties.updated = Some(now);
    let props = &mut item.properties.additional_fields;
    props.insert(
        "downlink:sources".into(),
        json!(spec
            .files
            .iter()
            .map(|f| f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default())
            .collect::<Vec<_>>()),
    );
    crate::sync_dir(&visual).map_err(|e| Error::Stac(e.to_string()))?;
    Ok(item)
}

/// Removes the local files of `old` (hrefs inside the archive root) that `keep` does not
/// reference, then the directories left empty up to the collection's directory.
/// Returns (removed, failed with their errors).
pub fn remove_item_files(
    root: &Path,
    old: &Item,
    keep: Option<&Item>,
) -> (Vec<PathBuf>, Vec<(PathBuf, String)>) {
    let kept: BTreeSet<&str> = keep
        .map(|k| k.assets.values().map(|a| a.href.as_str()).collect())
        .unwrap_or_default();
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    let mut dirs = BTreeSet::new();
    for a in old.assets.values() {
        let Some(rel) = local_href(&a.href) else {
            continue;
        };
        if kept.contains(a.href.as_str()) || kept.contains(rel) {
            continue;
        }
        let p = root.join(rel);
        match std::fs::remove_file(&p) {
            Ok(()) => removed.push(p.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failed.push((p.clone(), e.to_string())),
        }
        if let Some(parent) = p.parent() {
            dirs.insert(parent.to_path_buf());
            let _ = crate::sync_dir(&p);
        }
    }
    // Empty directories up to (not including) collections/<collection>.
    let stop = root.join(COLLECTIONS_DIR);
    for d in dirs {
        let mut cur = Some(d.as_path());
        while let Some(c) = cur {
            if c == stop || c.parent() == Some(stop.as_path()) || !c.starts_with(&stop) {
                break;
            }
            if std::fs::remove_dir(c).is_err() {
                break;
            }
            cur = c.parent();
        }
    }
    (removed, failed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {

    #[test]
    fn common_names_from_band_descriptions() {
        for (d, want) in [
            ("nir", Some("nir")),
            (" Red ", Some("red")),
            ("B04 red 665nm", Some("red")),
            ("B08 nir 842nm", Some("nir")),
            ("B8A nir08", Some("nir08")),
            ("Red edge 1", None),
            ("red/nir", None),
            ("B04", None),
            ("", None),
        ] {
            assert_eq!(common_name_in(d).as_deref(), want, "{d:?}");
        }
    }

    use super::*;
    use chrono::TimeZone;

    #[test]
    fn default_ids_are_stable_valid_and_distinct_per_time_and_collection() {
        let t = Utc.with_ymd_and_hms(2021, 8, 12, 10, 25, 59).unwrap();
        let id = default_item_id("muri", t, "S2 L2A/red+nir");
        assert_eq!(id, "muri-20210812T102559Z-S2_L2A_red_nir");
        assert_eq!(default_item_id("muri", t, "S2 L2A/red+nir"), id);
        validate_id("item", &id).unwrap();
        let later = t + chrono::Duration::days(1);
        assert_ne!(default_item_id("muri", later, "S2 L2A/red+nir"), id);
        assert_ne!(default_item_id("other", t, "S2 L2A/red+nir"), id);
        // Hidden-file stems and very long ones still make valid ids.
        validate_id("item", &default_item_id("c", t, ".hidden")).unwrap();
        let long = default_item_id("c", t, &"x".repeat(300));
        assert_eq!(long.len(), MAX_ID_LEN);
        validate_id("item", &long).unwrap();
    }
}
