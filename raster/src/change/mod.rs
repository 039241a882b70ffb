//! Vegetation-loss change alerts over a time series of red/NIR scenes (GLAD/DETER style).
//!
//! Input: the scenes of one collection ([`Scene`]: where its red and NIR samples are, their
//! scale/offset, its acquisition time), in any order; they are processed in acquisition order.
//! Output: alert polygons ([`Alert`]), a ΔNDVI COG and a loss-mask COG on the grid of the
//! newest scene ([`run`]).
//!
//! # Per pixel
//! - **Validity**: a sample is invalid when either band is nodata (a declared nodata that the
//!   band's data type cannot hold, e.g. −9999 on UInt16, is ignored and reported in
//!   [`Outcome::warnings`]), when red + NIR ≤ 0, or when the [`CloudTest`] flags it.
//! - **Cloud/shadow test** (for sensors without a shipped mask), on reflectance (the band's
//!   scale/offset; without one, Byte counts are read as DN/255 and 16-bit counts as DN/10000):
//!   *cloud* where red ≥ `red_min` and NDVI ≤ `ndvi_max` (bright and white/grey: thick cloud,
//!   haze over bare ground, snow); *shadow* where NIR < `nir_dark` (cloud shadow over
//!   vegetation, deep water). It misses thin cirrus and haze over vegetation (red stays low,
//!   NDVI only drops a little) and faint shadows; it also flags bright bare sand, salt and
//!   snow as cloud. A missed cloud shows up as a `low` alert that the next clear look
//!   contradicts (see below), which is why a single sighting is never `high`.
//! - **Baseline**: the `baseline_percentile` (50 = median) of the NDVI of the last
//!   `baseline_looks` valid observations (no older than `baseline_days` when set). A scene on
//!   another grid or CRS is warped onto the newest scene's grid (bilinear); its NDVI enters the
//!   baseline as the maximum over a (2·`shift_px`+1)² neighbourhood, so a sub-pixel
//!   (co-registration) offset at a forest edge does not look like loss. Scenes already on the
//!   newest grid are used pixel for pixel.
//! - **Detection**: loss where NDVI − baseline ≤ −`drop`, inside the mask polygons when given
//!   (a pixel is inside when the polygon contains its centre). The first detection freezes the
//!   pixel's baseline. A later valid observation that is again ≤ −`drop` below it *confirms*
//!   the loss; one that is not *contradicts* it (re-greening, a missed cloud).
//!
//! # Per alert
//! 8-connected components of detected pixels, labelled in the blocked pass itself (a
//! union-find over provisional labels across block seams, see `components`), which also sums
//! each component's pixels, states, ΔNDVI and baseline. Area is computed on the authalic sphere
//! (Lambert azimuthal equal-area projection centred on the grid), so it is correct for
//! EPSG:4326 grids as well as projected ones: components whose summed per-pixel area reaches
//! 98 % of `mmu_ha` are drawn as polygons (GDALPolygonize, 8CONNECTED, candidates only) and
//! measured exactly on the polygon; those under `mmu_ha` are dropped. Confidence: the state most of its pixels are in
//! (ties go to the lower): `contradicted` by a later look, `high` (confirmed by a later look),
//! `low` (seen once).
//! Contradicted alerts are kept (downgraded), never deleted.
//!
//! # Memory
//! Rows are processed in blocks of `block_rows` through all scenes; per-pixel state lives only
//! for the current block. On disk in the work directory: the ΔNDVI (Float32, uncompressed), the
//! provisional labels, then the candidate numbers and loss codes (ZSTD), a warped copy of a
//! scene on another grid (its own data type); scratch rows are flushed out of GDAL's block
//! cache as they are written. What grows is per component (a label, its sums: about 60 bytes)
//! and per alert (its polygon), not per pixel.
//!
//! # Threads
//! The inputs are read and classified on a thread of their own, at most a few blocks (one
//! NDVI block per scene each) ahead of the detection and labelling; the ΔNDVI COG is written on
//! its own thread once the pass is over, while the polygons are drawn and measured, and the
//! loss COG while the alerts' geometries are written. Each GDAL dataset is used by one thread.

use crate::Error;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use gdal::raster::{Buffer, GdalDataType, RasterCreationOptions};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::vector::{FieldDefn, Geometry, LayerAccess, LayerOptions, OGRFieldType};
use gdal::{Dataset, DriverManager, GeoTransform};
use serde::Serialize;
use serde_json::Value;

use crate::products::{gdal_warp, polygonize, write_cog_from_path, CogOptions};

mod components;
mod geojson;
use components::{Acc, Labeller, Pixel, MAX_LABEL};

/// Creation options of the ΔNDVI scratch raster (no codec: it is read twice by the COG writer).
const RAW: &[&str] = &[];
/// Creation options of the sparse scratch rasters (labels, candidate numbers, loss codes).
const PACKED: &[&str] = &["COMPRESS=ZSTD", "ZSTD_LEVEL=1"];
/// Columns per equal-area pixel-size sample.
const AREA_CHUNK: usize = 512;
/// Components whose per-pixel area is within this fraction under the MMU are still drawn and
/// measured as polygons (the per-pixel area is an approximation of the polygon's).
const MMU_MARGIN: f64 = 0.02;

type Result<T> = std::result::Result<T, Error>;

fn gd<T>(r: gdal::errors::Result<T>, context: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|source| Error::Gdal {
        context: context(),
        source,
    })
}

/// One band of a scene: a raster file and a band number (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct BandSource {
    /// The raster file.
    pub path: PathBuf,
    /// Band number in it, from 1.
    pub band: usize,
    /// Scale to reflectance when the catalog declares one (else the file's, else by type).
    pub scale: Option<f64>,
    /// Offset to reflectance when the catalog declares one (else the file's, else 0).
    pub offset: Option<f64>,
}

/// One observation: an item's red and NIR bands.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    /// Item id.
    pub id: String,
    /// Acquisition time.
    pub datetime: DateTime<Utc>,
    /// Red band.
    pub red: BandSource,
    /// Near-infrared band.
    pub nir: BandSource,
}

/// Cloud/shadow test thresholds (reflectance); see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CloudTest {
    /// Cloud: red reflectance at least this…
    pub red_min: f64,
    /// …and NDVI at most this.
    pub ndvi_max: f64,
    /// Shadow: NIR reflectance below this.
    pub nir_dark: f64,
}

impl Default for CloudTest {
    fn default() -> Self {
        Self {
            red_min: 0.20,
            ndvi_max: 0.15,
            nir_dark: 0.04,
        }
    }
}

/// Parameters of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Loss threshold: NDVI − baseline ≤ −drop.
    pub drop: f64,
    /// Minimum mapping unit, hectares.
    pub mmu_ha: f64,
    /// Valid looks in the baseline (1 = the previous clear look).
    pub baseline_looks: usize,
    /// Percentile of the baseline looks (50 = median, 90 = a high percentile).
    pub baseline_percentile: f64,
    /// Baseline looks older than this many days before an observation are dropped.
    pub baseline_days: Option<u32>,
    /// Only scenes acquired at or after this detect (earlier ones only build the baseline).
    pub since: Option<DateTime<Utc>>,
    /// Cloud/shadow test; `None` disables it.
    pub cloud: Option<CloudTest>,
    /// Mask polygons (any OGR vector file): detections only inside.
    pub mask: Option<PathBuf>,
    /// Neighbourhood radius (pixels) of the baseline maximum for warped scenes.
    pub shift_px: usize,
    /// Rows per processing block.
    pub block_rows: usize,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            drop: 0.30,
            mmu_ha: 0.5,
            baseline_looks: 3,
            baseline_percentile: 50.0,
            baseline_days: None,
            since: None,
            cloud: Some(CloudTest::default()),
            mask: None,
            shift_px: 1,
            block_rows: 128,
        }
    }
}

impl Params {
    /// Checks the parameters; all problems in one message.
    pub fn validate(&self) -> Result<()> {
        let mut bad = Vec::new();
        if !(self.drop > 0.0 && self.drop <= 2.0) {
            bad.push(format!("drop must be in (0, 2], got {}", self.drop));
        }
        if !(self.mmu_ha >= 0.0 && self.mmu_ha.is_finite()) {
            bad.push(format!("mmu_ha must be ≥ 0, got {}", self.mmu_ha));
        }
        if !(1..=16).contains(&self.baseline_looks) {
            bad.push(format!(
                "baseline_looks must be 1..=16, got {}",
                self.baseline_looks
            ));
        }
        if !(0.0..=100.0).contains(&self.baseline_percentile) {
            bad.push(format!(
                "baseline_percentile must be 0..=100, got {}",
                self.baseline_percentile
            ));
        }
        if self.shift_px > 3 {
            bad.push(format!("shift_px must be 0..=3, got {}", self.shift_px));
        }
        if self.block_rows == 0 {
            bad.push("block_rows must be ≥ 1".to_string());
        }
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Error::ChangeInput(bad.join("; ")))
        }
    }
}

/// Alert confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Confidence {
    /// A later valid observation contradicted most of it (downgraded, kept).
    Contradicted,
    /// Seen once.
    Low,
    /// Confirmed by a later valid observation.
    High,
}

impl Confidence {
    /// `low`, `high`, `contradicted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contradicted => "contradicted",
            Self::Low => "low",
            Self::High => "high",
        }
    }
}

/// One alert polygon.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Stable within a run: `<first_detected YYYYMMDD>-<n>` (n by area, largest first).
    pub id: String,
    /// Equal-area size, hectares.
    pub area_ha: f64,
    /// Pixels.
    pub n_px: u64,
    /// First scene that showed the loss.
    pub first_detected: DateTime<Utc>,
    /// Last scene that observed it (confirmed or contradicted).
    pub last_observed: DateTime<Utc>,
    /// Confidence.
    pub confidence: Confidence,
    /// Mean ΔNDVI at first detection.
    pub mean_dndvi: f64,
    /// Mean baseline NDVI.
    pub baseline_ndvi: f64,
    /// Items that went into it (baseline looks, detection, later looks).
    pub source_items: Vec<String>,
    /// RFC 7946 geometry (lon/lat), as compact JSON text: a `Value` per coordinate took
    /// ~120 bytes per vertex, and scenes give tens of thousands of alerts.
    pub geometry: String,
    /// `[w, s, e, n]`.
    pub bbox: [f64; 4],
}

/// Counts of one scene's samples on the target grid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SceneStats {
    /// Item id.
    pub id: String,
    /// Valid samples.
    pub valid: u64,
    /// Nodata in either band.
    pub nodata: u64,
    /// red + NIR ≤ 0.
    pub nonpositive: u64,
    /// Flagged as cloud.
    pub cloud: u64,
    /// Flagged as shadow.
    pub shadow: u64,
    /// Warped onto the newest scene's grid.
    pub warped: bool,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Alerts ≥ MMU, largest first.
    pub alerts: Vec<Alert>,
    /// Detected pixels before the MMU.
    pub loss_px_before_mmu: u64,
    /// Components before the MMU.
    pub components_before_mmu: usize,
    /// Per scene, in acquisition order.
    pub scenes: Vec<SceneStats>,
    /// Things worth telling the operator (ignored nodata, …).
    pub warnings: Vec<String>,
    /// ΔNDVI COG (newest look vs its baseline; NaN = no value).
    pub dndvi_cog: PathBuf,
    /// Loss-mask COG (0 none, 1 low, 2 high, 3 contradicted; alerts ≥ MMU only).
    pub loss_cog: PathBuf,
    /// Grid of the outputs: width, height.
    pub size: (usize, usize),
}

/// What a feature says beyond the alert itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeatureOptions<'a> {
    /// The mask used (file name), or `null`.
    pub mask: Option<&'a str>,
    /// The source collection, as a `collection` property when given.
    pub collection: Option<&'a str>,
    /// Prefix of feature ids (`PREFIX-<alert id>`), making them unique across runs.
    pub id_prefix: Option<&'a str>,
}

/// A feature's properties as written (keys in alphabetical order, as `serde_json` maps keep
/// them).
#[derive(Serialize)]
struct PropertiesOut<'a> {
    area_ha: f64,
    baseline_ndvi: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<&'a str>,
    confidence: &'static str,
    first_detected: String,
    id: &'a str,
    last_observed: String,
    mask: Option<&'a str>,
    mean_dndvi: f64,
    n_px: u64,
    source_items: &'a [String],
}

impl Alert {
    /// Writes the alert as one compact RFC 7946 Feature.
    pub fn write_feature(
        &self,
        w: &mut impl std::io::Write,
        opts: &FeatureOptions<'_>,
    ) -> std::io::Result<()> {
        let t = |d: &DateTime<Utc>| d.to_rfc3339_opts(SecondsFormat::Secs, true);
        let r4 = |x: f64| (x * 1e4).round() / 1e4;
        let id = match opts.id_prefix {
            Some(p) => format!("{p}-{}", self.id),
            None => self.id.clone(),
        };
        let properties = PropertiesOut {
            area_ha: r4(self.area_ha),
            baseline_ndvi: r4(self.baseline_ndvi),
            collection: opts.collection,
            confidence: self.confidence.as_str(),
            first_detected: t(&self.first_detected),
            id: &id,
            last_observed: t(&self.last_observed),
            mask: opts.mask,
            mean_dndvi: r4(self.mean_dndvi),
            n_px: self.n_px,
            source_items: &self.source_items,
        };
        // The geometry is already JSON text: written as it is, between serialized parts.
        w.write_all(b"{\"bbox\":")?;
        serde_json::to_writer(&mut *w, &self.bbox).map_err(std::io::Error::other)?;
        w.write_all(b",\"geometry\":")?;
        w.write_all(self.geometry.as_bytes())?;
        w.write_all(b",\"id\":")?;
        serde_json::to_writer(&mut *w, &id).map_err(std::io::Error::other)?;
        w.write_all(b",\"properties\":")?;
        serde_json::to_writer(&mut *w, &properties).map_err(std::io::Error::other)?;
        w.write_all(b",\"type\":\"Feature\"}")
    }

    /// The alert as an RFC 7946 Feature value.
    pub fn to_feature(&self, opts: &FeatureOptions<'_>) -> std::io::Result<Value> {
        let mut buf = Vec::new();
        self.write_feature(&mut buf, opts)?;
        serde_json::from_slice(&buf).map_err(std::io::Error::other)
    }
}

/// Writes the alerts as an RFC 7946 FeatureCollection, one feature per line, without holding
/// the collection in memory.
pub fn write_feature_collection(
    alerts: &[Alert],
    opts: &FeatureOptions<'_>,
    w: &mut impl std::io::Write,
) -> std::io::Result<()> {
    w.write_all(b"{\"features\":[")?;
    for (i, a) in alerts.iter().enumerate() {
        w.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        a.write_feature(w, opts)?;
    }
    w.write_all(b"\n],\"type\":\"FeatureCollection\"}\n")
}

/// The target grid.
struct Grid {
    width: usize,
    height: usize,
    /// Rows per processing block (scratch rasters are tiled to match).
    block_rows: usize,
    gt: GeoTransform,
    wkt: String,
    srs: SpatialRef,
}

/// A band ready to read on the target grid.
struct ReadBand {
    ds: usize,
    band: usize,
    /// Read as UInt16.
    u16: bool,
    scale: f64,
    offset: f64,
    nodata: Option<f64>,
}

struct OpenScene {
    red: ReadBand,
    nir: ReadBand,
    warped: bool,
    /// Both bands are UInt16 (read as they are).
    u16: bool,
}

fn default_scale(ty: GdalDataType) -> f64 {
    match ty {
        GdalDataType::UInt8 => 1.0 / 255.0,
        GdalDataType::UInt16 | GdalDataType::Int16 => 1e-4,
        _ => 1.0,
    }
}

/// Whether a declared nodata value can occur in a band of type `ty`.
pub fn nodata_representable(nd: f64, ty: GdalDataType) -> bool {
    if nd.is_nan() {
        return !ty.is_integer();
    }
    if !ty.is_integer() {
        return ty != GdalDataType::Float32 || (nd as f32) as f64 == nd || nd.is_infinite();
    }
    if nd.fract() != 0.0 {
        return false;
    }
    let bits = i32::from(ty.bits());
    let (lo, hi) = if ty.is_signed() {
        (-(2f64.powi(bits - 1)), 2f64.powi(bits - 1) - 1.0)
    } else {
        (0.0, 2f64.powi(bits) - 1.0)
    };
    (lo..=hi).contains(&nd)
}

fn same_grid(ds: &Dataset, grid: &Grid) -> bool {
    let Ok(gt) = ds.geo_transform() else {
        return false;
    };
    let same_srs = match ds.spatial_ref() {
        Ok(s) => s == grid.srs,
        Err(_) => false,
    };
    let tol = grid.gt[1].abs() * 1e-6;
    same_srs
        && ds.raster_size() == (grid.width, grid.height)
        && gt
            .iter()
            .zip(grid.gt.iter())
            .all(|(a, b)| (a - b).abs() <= tol)
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| Error::ChangeInput(format!("path {} is not UTF-8", p.display())))
}

/// Bounding box of a grid in another SRS (corner points), `[xmin, ymin, xmax, ymax]`.
fn grid_bounds_in(grid: &Grid, to: &SpatialRef) -> Result<[f64; 4]> {
    let mut from = grid.srs.clone();
    from.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut to = to.clone();
    to.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ct = gd(CoordTransform::new(&from, &to), || {
        "coordinate transform".into()
    })?;
    let (w, h) = (grid.width as f64, grid.height as f64);
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for i in 0..=8 {
        for j in 0..=8 {
            let (c, r) = (w * f64::from(i) / 8.0, h * f64::from(j) / 8.0);
            xs.push(grid.gt[0] + c * grid.gt[1] + r * grid.gt[2]);
            ys.push(grid.gt[3] + c * grid.gt[4] + r * grid.gt[5]);
        }
    }
    let mut zs = vec![0.0; xs.len()];
    gd(ct.transform_coords(&mut xs, &mut ys, &mut zs), || {
        "transforming the grid corners".into()
    })?;
    let fold = |v: &[f64], f: fn(f64, f64) -> f64, init: f64| v.iter().copied().fold(init, f);
    Ok([
        fold(&xs, f64::min, f64::INFINITY),
        fold(&ys, f64::min, f64::INFINITY),
        fold(&xs, f64::max, f64::NEG_INFINITY),
        fold(&ys, f64::max, f64::NEG_INFINITY),
    ])
}

struct Inputs {
    datasets: Vec<Dataset>,
    scenes: Vec<OpenScene>,
    warnings: Vec<String>,
}

fn open_inputs(scenes: &[Scene], grid: &Grid, work: &Path) -> Result<Inputs> {
    let mut datasets: Vec<Dataset> = Vec::new();
    let mut by_path: BTreeMap<PathBuf, (usize, bool)> = BTreeMap::new();
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    for (k, s) in scenes.iter().enumerate() {
        let mut bands = Vec::new();
        for (what, b) in [("red", &s.red), ("nir", &s.nir)] {
            let src = gd(Dataset::open(&b.path), || {
                format!("opening {} ({what} of {})", b.path.display(), s.id)
            })?;
            let count = src.raster_count();
            if b.band == 0 || b.band > count {
                return Err(Error::ChangeInput(format!(
                    "item {}: {what} is band {} of {}, which has {count} band(s)",
                    s.id,
                    b.band,
                    b.path.display()
                )));
            }
            let band = gd(src.rasterband(b.band), || format!("band {}", b.band))?;
            let ty = band.band_type();
            let nodata = match band.no_data_value() {
                Some(nd) if !nodata_representable(nd, ty) => {
                    warnings.push(format!(
                        "item {}: {what} band declares nodata {nd}, which a {} band cannot hold: ignored",
                        s.id,
                        ty.name()
                    ));
                    None
                }
                other => other,
            };
            let scale = b
                .scale
                .or(band.scale())
                .unwrap_or_else(|| default_scale(ty));
            let offset = b.offset.or(band.offset()).unwrap_or(0.0);
            let (idx, warped) = match by_path.get(&b.path) {
                Some(&v) => v,
                None => {
                    let src_srs = src.spatial_ref().map_err(|_| {
                        Error::ChangeInput(format!(
                            "item {}: {} has no coordinate reference system",
                            s.id,
                            b.path.display()
                        ))
                    })?;
                    let v = if same_grid(&src, grid) {
                        datasets.push(src);
                        (datasets.len() - 1, false)
                    } else {
                        // The newest grid's extent, seen from this scene's CRS, must overlap it.
                        let [x0, y0, x1, y1] = grid_bounds_in(grid, &src_srs)?;
                        let gt = gd(src.geo_transform(), || "geotransform".into())?;
                        let (sw, sh) = src.raster_size();
                        let sx = [gt[0], gt[0] + sw as f64 * gt[1] + sh as f64 * gt[2]];
                        let sy = [gt[3], gt[3] + sw as f64 * gt[4] + sh as f64 * gt[5]];
                        let overlap = x0 < sx[0].max(sx[1])
                            && x1 > sx[0].min(sx[1])
                            && y0 < sy[0].max(sy[1])
                            && y1 > sy[0].min(sy[1]);
                        if !overlap {
                            return Err(Error::ChangeInput(format!(
                                "item {}: {} does not overlap the newest scene's grid (different place or CRS mismatch)",
                                s.id,
                                b.path.display()
                            )));
                        }
                        let dst = work.join(format!("warp-{k}-{what}.tif"));
                        let ext = [
                            grid.gt[0],
                            grid.gt[3] + grid.height as f64 * grid.gt[5],
                            grid.gt[0] + grid.width as f64 * grid.gt[1],
                            grid.gt[3],
                        ];
                        let args: Vec<String> = [
                            "-of",
                            "GTiff",
                            "-t_srs",
                            &grid.wkt,
                            "-te",
                            &ext[0].to_string(),
                            &ext[1].to_string(),
                            &ext[2].to_string(),
                            &ext[3].to_string(),
                            "-ts",
                            &grid.width.to_string(),
                            &grid.height.to_string(),
                            "-r",
                            "bilinear",
                            "-co",
                            "TILED=YES",
                        ]
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                        let w = gdal_warp(&src, path_str(&dst)?, &args)?;
                        datasets.push(w);
                        (datasets.len() - 1, true)
                    };
                    by_path.insert(b.path.clone(), v);
                    v
                }
            };
            // The type of what is read (a warped copy keeps its source's type).
            let read_ty = match datasets.get(idx).map(|d| d.rasterband(b.band)) {
                Some(Ok(rb)) => rb.band_type(),
                _ => ty,
            };
            bands.push(ReadBand {
                ds: idx,
                band: b.band,
                u16: read_ty == GdalDataType::UInt16,
                scale,
                offset,
                nodata,
            });
            let _ = warped;
        }
        let (Some(nir), Some(red)) = (bands.pop(), bands.pop()) else {
            return Err(Error::ChangeInput("internal: band list".into()));
        };
        let warped = by_path.get(&s.red.path).is_some_and(|v| v.1)
            || by_path.get(&s.nir.path).is_some_and(|v| v.1);
        let u16 = red.u16 && nir.u16;
        out.push(OpenScene {
            red,
            nir,
            warped,
            u16,
        });
    }
    Ok(Inputs {
        datasets,
        scenes: out,
        warnings,
    })
}

#[derive(Clone, Copy)]
enum Why {
    // In this order: `classify_block` counts by discriminant.
    Valid,
    Nodata,
    NonPositive,
    Cloud,
    Shadow,
}

#[inline(always)]
fn classify(
    r_raw: f64,
    n_raw: f64,
    red: &ReadBand,
    nir: &ReadBand,
    cloud: Option<&CloudTest>,
) -> (Why, f32) {
    let is_nd = |v: f64, nd: Option<f64>| v.is_nan() || nd.is_some_and(|nd| v == nd);
    if is_nd(r_raw, red.nodata) || is_nd(n_raw, nir.nodata) {
        return (Why::Nodata, f32::NAN);
    }
    let r = r_raw * red.scale + red.offset;
    let n = n_raw * nir.scale + nir.offset;
    if r + n <= 0.0 {
        return (Why::NonPositive, f32::NAN);
    }
    let ndvi = (n - r) / (n + r);
    if let Some(c) = cloud {
        if r >= c.red_min && ndvi <= c.ndvi_max {
            return (Why::Cloud, f32::NAN);
        }
        if n < c.nir_dark {
            return (Why::Shadow, f32::NAN);
        }
    }
    (Why::Valid, ndvi as f32)
}

/// Classifies the samples of `red` and `nir` into `nd` (NDVI, NaN where invalid), counting
/// the reasons of the samples in `own` (the block's own rows, not its halo) into `st`.
fn classify_block<T: Copy + Into<f64>>(
    (red, nir): (&[T], &[T]),
    (rb, nb): (&ReadBand, &ReadBand),
    cloud: Option<&CloudTest>,
    own: std::ops::Range<usize>,
    nd: &mut [f32],
    st: &mut SceneStats,
) {
    let px = |(r, n): (&T, &T)| classify((*r).into(), (*n).into(), rb, nb, cloud);
    let (head, rest) = nd.split_at_mut(own.start.min(nd.len()));
    let (mid, tail) = rest.split_at_mut(own.len().min(rest.len()));
    let pairs = red.iter().zip(nir);
    // The halo rows: NDVI only.
    for (v, rn) in head.iter_mut().zip(pairs.clone()) {
        *v = px(rn).1;
    }
    for (v, rn) in tail.iter_mut().zip(pairs.clone().skip(own.end)) {
        *v = px(rn).1;
    }
    let mut counts = [0u64; 5];
    for (v, rn) in mid.iter_mut().zip(pairs.skip(own.start)) {
        let (why, x) = px(rn);
        if let Some(c) = counts.get_mut(why as usize) {
            *c += 1;
        }
        *v = x;
    }
    let [valid, nodata, nonpositive, cloud, shadow] = counts;
    st.valid += valid;
    st.nodata += nodata;
    st.nonpositive += nonpositive;
    st.cloud += cloud;
    st.shadow += shadow;
}

/// One band's samples of a block: 16-bit counts as they are (the common case: no conversion
/// in GDAL), anything else as f64.
#[derive(Default)]
struct Samples {
    u16: Vec<u16>,
    f64: Vec<f64>,
}

/// Reads rows into `out` (resized; its allocation is reused from block to block).
fn read_rows<T: gdal::raster::GdalType + Copy + Default>(
    ds: &Dataset,
    band: usize,
    (row0, rows): (usize, usize),
    width: usize,
    out: &mut Vec<T>,
) -> Result<()> {
    let b = gd(ds.rasterband(band), || format!("band {band}"))?;
    reset(out, rows * width, T::default());
    gd(
        b.read_into_slice((0, row0 as isize), (width, rows), (width, rows), out, None),
        || format!("reading rows {row0}..{}", row0 + rows),
    )
}

/// `v` as `n` copies of `x`, keeping its allocation (blocks reuse their buffers: fresh
/// multi-MB allocations per block cost a page fault per page).
fn reset<T: Copy>(v: &mut Vec<T>, n: usize, x: T) {
    v.clear();
    v.resize(n, x);
}

/// `v` with length `n`, its contents left as they are where it already had them (buffers
/// whose values are only read where they were written for this block).
fn size_to<T: Copy>(v: &mut Vec<T>, n: usize, x: T) {
    v.resize(n, x);
}

/// Temporary rasters on the target grid.
struct Scratch {
    ds: Dataset,
}

impl Scratch {
    fn create<T: gdal::raster::GdalType>(
        path: &Path,
        grid: &Grid,
        nodata: Option<f64>,
        options: &[&str],
    ) -> Result<Self> {
        let driver = gd(DriverManager::get_driver_by_name("GTiff"), || {
            "GTiff driver".into()
        })?;
        // Tiles one processing block high, so that each block writes whole tiles.
        let tile_rows = grid.block_rows.div_ceil(16).clamp(1, 16) * 16;
        let tiling = [
            "TILED=YES".to_string(),
            "BLOCKXSIZE=256".to_string(),
            format!("BLOCKYSIZE={tile_rows}"),
        ];
        let opts = RasterCreationOptions::from_iter(
            tiling
                .iter()
                .map(String::as_str)
                .chain(options.iter().copied()),
        );
        let mut ds = gd(
            driver.create_with_band_type_with_options::<T, _>(
                path,
                grid.width,
                grid.height,
                1,
                &opts,
            ),
            || format!("creating {}", path.display()),
        )?;
        gd(ds.set_geo_transform(&grid.gt), || "set geotransform".into())?;
        gd(ds.set_projection(&grid.wkt), || "set projection".into())?;
        if let Some(nd) = nodata {
            let mut b = gd(ds.rasterband(1), || "band 1".into())?;
            gd(b.set_no_data_value(Some(nd)), || "set nodata".into())?;
        }
        Ok(Self { ds })
    }

    /// Writes whole rows and flushes them out of GDAL's block cache (the rows are written
    /// once, top to bottom: caching them would only fill the cache).
    /// Gives `data` back for reuse.
    fn write<T: gdal::raster::GdalType + Copy>(
        &mut self,
        row0: usize,
        width: usize,
        data: Vec<T>,
    ) -> Result<Vec<T>> {
        let data = self.write_window((0, row0), (width, data.len() / width.max(1)), data)?;
        gd(self.ds.flush_cache(), || "flushing a scratch raster".into())?;
        Ok(data)
    }

    fn write_window<T: gdal::raster::GdalType + Copy>(
        &self,
        (col0, row0): (usize, usize),
        (cols, rows): (usize, usize),
        data: Vec<T>,
    ) -> Result<Vec<T>> {
        let mut b = gd(self.ds.rasterband(1), || "band 1".into())?;
        let mut buf = Buffer::new((cols, rows), data);
        gd(
            b.write((col0 as isize, row0 as isize), (cols, rows), &mut buf),
            || format!("writing rows {row0}..{}", row0 + rows),
        )?;
        Ok(buf.into_shape_and_vec().1)
    }

    fn read_window<T: gdal::raster::GdalType + Copy>(
        &self,
        (col0, row0): (usize, usize),
        (cols, rows): (usize, usize),
    ) -> Result<Vec<T>> {
        let b = gd(self.ds.rasterband(1), || "band 1".into())?;
        let buf = gd(
            b.read_as::<T>(
                (col0 as isize, row0 as isize),
                (cols, rows),
                (cols, rows),
                None,
            ),
            || format!("reading rows {row0}..{}", row0 + rows),
        )?;
        Ok(buf.into_shape_and_vec().1)
    }

    /// Sets to 0 the pixels of this (u8) raster where `ids` holds `id`, within the pixel
    /// window of `env` (an envelope in the grid's CRS).
    fn clear_where(
        &mut self,
        ids: &Scratch,
        id: u32,
        env: &gdal::vector::Envelope,
        grid: &Grid,
    ) -> Result<()> {
        let (gt, w, h) = (&grid.gt, grid.width as f64, grid.height as f64);
        let px = |x: f64| ((x - gt[0]) / gt[1]).clamp(0.0, w);
        let py = |y: f64| ((y - gt[3]) / gt[5]).clamp(0.0, h);
        let (ca, cb) = (px(env.MinX), px(env.MaxX));
        let (ra, rb) = (py(env.MinY), py(env.MaxY));
        let c0 = (ca.min(cb).floor() as usize).saturating_sub(1);
        let c1 = ((ca.max(cb).ceil() as usize) + 1).min(grid.width);
        let r0 = (ra.min(rb).floor() as usize).saturating_sub(1);
        let r1 = ((ra.max(rb).ceil() as usize) + 1).min(grid.height);
        if c1 <= c0 || r1 <= r0 {
            return Ok(());
        }
        let win = ((c0, r0), (c1 - c0, r1 - r0));
        let idv = ids.read_window::<u32>(win.0, win.1)?;
        let mut v = self.read_window::<u8>(win.0, win.1)?;
        for (x, i) in v.iter_mut().zip(&idv) {
            if *i == id {
                *x = 0;
            }
        }
        self.write_window(win.0, win.1, v).map(drop)
    }

    /// Reads whole rows (read once, top to bottom: dropped from GDAL's block cache after).
    fn read<T: gdal::raster::GdalType + Copy + Default>(
        &mut self,
        row0: usize,
        rows: usize,
        width: usize,
        out: &mut Vec<T>,
    ) -> Result<()> {
        reset(out, rows * width, T::default());
        let b = gd(self.ds.rasterband(1), || "band 1".into())?;
        gd(
            b.read_into_slice((0, row0 as isize), (width, rows), (width, rows), out, None),
            || format!("reading rows {row0}..{}", row0 + rows),
        )?;
        gd(self.ds.flush_cache(), || "flushing a scratch raster".into())
    }
}

/// Equal-area size (m²) of the pixels of rows `row0..row0 + rows`, one value per row and
/// [`AREA_CHUNK`] columns (the cell's corners projected with `to_ea`; not finite → ∞, so
/// that the component is measured as a polygon).
fn pixel_areas(grid: &Grid, to_ea: &CoordTransform, row0: usize, rows: usize) -> Result<Vec<f64>> {
    let chunks = grid.width.div_ceil(AREA_CHUNK).max(1);
    let cols: Vec<usize> = (0..=chunks)
        .map(|j| (j * AREA_CHUNK).min(grid.width))
        .collect();
    let mut xs = Vec::with_capacity((rows + 1) * cols.len());
    let mut ys = Vec::with_capacity(xs.capacity());
    for r in row0..=row0 + rows {
        for &c in &cols {
            xs.push(grid.gt[0] + c as f64 * grid.gt[1]);
            ys.push(grid.gt[3] + r as f64 * grid.gt[5]);
        }
    }
    let mut zs = vec![0.0; xs.len()];
    if to_ea.transform_coords(&mut xs, &mut ys, &mut zs).is_err() {
        return Ok(vec![f64::INFINITY; rows * chunks]);
    }
    let n = cols.len();
    let mut out = Vec::with_capacity(rows * chunks);
    for i in 0..rows {
        for j in 0..chunks {
            let q = [
                i * n + j,
                i * n + j + 1,
                (i + 1) * n + j + 1,
                (i + 1) * n + j,
            ];
            let mut twice = 0.0;
            for k in 0..4 {
                let (a, b) = (q[k], q[(k + 1) % 4]);
                twice += xs[a] * ys[b] - xs[b] * ys[a];
            }
            let px = (cols[j + 1] - cols[j]) as f64;
            let a = twice.abs() / 2.0 / px;
            out.push(if a.is_finite() { a } else { f64::INFINITY });
        }
    }
    Ok(out)
}

/// [`percentile`] of one value (the same arithmetic, so the same bits).
#[inline(always)]
#[allow(clippy::eq_op)] // `a - a`: as `percentile` computes `b - a` with `b == a`.
fn one_percentile(a: f32, p: f64) -> f32 {
    let pos = p / 100.0 * 0.0;
    a + (a - a) * (pos - pos.floor()) as f32
}

fn percentile(vals: &mut [f32], p: f64) -> f32 {
    vals.sort_by(|a, b| a.total_cmp(b));
    let n = vals.len();
    if n == 0 {
        return f32::NAN;
    }
    // Linear interpolation between closest ranks (numpy's default).
    let pos = p / 100.0 * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let (a, b) = (vals[lo.min(n - 1)], vals[hi.min(n - 1)]);
    a + (b - a) * (pos - lo as f64) as f32
}

/// Opens the mask file, transforms its polygons to the grid's CRS and burns them (1) into a
/// scratch raster.
fn rasterize_mask(mask: &Path, grid: &Grid, work: &Path) -> Result<Scratch> {
    let bad = |why: String| Error::ChangeInput(format!("mask {}: {why}", mask.display()));
    let vds = Dataset::open_ex(
        mask,
        gdal::DatasetOptions {
            open_flags: gdal::GdalOpenFlags::GDAL_OF_VECTOR,
            ..Default::default()
        },
    )
    .map_err(|e| bad(format!("not a readable vector file ({e})")))?;
    let mut target = grid.srs.clone();
    target.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut geoms = Vec::new();
    for mut layer in vds.layers() {
        let mut lsrs = match layer.spatial_ref() {
            Some(s) => s,
            None => return Err(bad("a layer has no coordinate reference system".into())),
        };
        lsrs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let ct = gd(CoordTransform::new(&lsrs, &target), || {
            "mask transform".into()
        })?;
        for f in layer.features() {
            if let Some(g) = f.geometry() {
                let t = g
                    .transform(&ct)
                    .map_err(|e| bad(format!("transforming a polygon: {e}")))?;
                geoms.push(t);
            }
        }
    }
    if geoms.is_empty() {
        return Err(bad("no polygons".into()));
    }
    let mut s = Scratch::create::<u8>(&work.join("mask.tif"), grid, None, PACKED)?;
    let burn = vec![1.0; geoms.len()];
    gd(
        gdal::raster::rasterize(&mut s.ds, &[1], &geoms, &burn, None),
        || "rasterizing the mask".into(),
    )?;
    Ok(s)
}

/// One scene's samples of one block, classified: NDVI (NaN where invalid, halo rows
/// included) and the reasons counted over the block's own rows.
type Classified = Result<(Vec<f32>, SceneStats)>;

/// The reading half of the pass, on its own thread: it owns the inputs, reads each block of
/// each scene in the order the pass consumes them, classifies the samples and sends them on
/// (`out`, bounded: at most a few blocks ahead). NDVI buffers come back through `spent` to be
/// reused. Returns when the pass is done, when reading fails (the error is sent), or when the
/// pass hangs up.
fn read_and_classify(
    mut datasets: Vec<Dataset>,
    opened: &[OpenScene],
    (width, height): (usize, usize),
    params: &Params,
    out: &std::sync::mpsc::SyncSender<Classified>,
    spent: &std::sync::mpsc::Receiver<Vec<f32>>,
) {
    // Block height of each input: its cached blocks are dropped once the pass is past them.
    let block_rows: Vec<usize> = datasets
        .iter()
        .map(|d| d.rasterband(1).map_or(1, |b| b.block_size().1.max(1)))
        .collect();
    let (mut red, mut nir) = (Samples::default(), Samples::default());
    let cloud = params.cloud.as_ref();
    let mut block =
        |datasets: &[Dataset], row0: usize, rows: usize, open: &OpenScene| -> Classified {
            let halo = if open.warped { params.shift_px } else { 0 };
            let r_lo = row0.saturating_sub(halo);
            let nrows = (row0 + rows + halo).min(height) - r_lo;
            let (Some(rds), Some(nds)) = (datasets.get(open.red.ds), datasets.get(open.nir.ds))
            else {
                return Err(Error::ChangeInput("internal: dataset index".into()));
            };
            let mut nd = spent.try_recv().unwrap_or_default();
            size_to(&mut nd, nrows * width, f32::NAN);
            let mut st = SceneStats::default();
            // Count only the block's own rows (not the halo).
            let own = (row0 - r_lo) * width..(row0 - r_lo + rows) * width;
            let bands = (&open.red, &open.nir);
            if open.u16 {
                read_rows(rds, open.red.band, (r_lo, nrows), width, &mut red.u16)?;
                read_rows(nds, open.nir.band, (r_lo, nrows), width, &mut nir.u16)?;
                classify_block((&red.u16, &nir.u16), bands, cloud, own, &mut nd, &mut st);
            } else {
                read_rows(rds, open.red.band, (r_lo, nrows), width, &mut red.f64)?;
                read_rows(nds, open.nir.band, (r_lo, nrows), width, &mut nir.f64)?;
                classify_block((&red.f64, &nir.f64), bands, cloud, own, &mut nd, &mut st);
            }
            Ok((nd, st))
        };
    let mut row0 = 0;
    while row0 < height {
        let rows = params.block_rows.min(height - row0);
        for open in opened {
            let c = block(&datasets, row0, rows, open);
            let failed = c.is_err();
            if out.send(c).is_err() || failed {
                return;
            }
        }
        row0 += rows;
        // Input blocks wholly above the next block are not read again.
        for (d, &bh) in datasets.iter_mut().zip(&block_rows) {
            if row0 % bh == 0 || row0 == height {
                if let Err(e) = gd(d.flush_cache(), || "flushing an input".into()) {
                    let _ = out.send(Err(e));
                    return;
                }
            }
        }
    }
}

/// Writes one of the run's COGs from its scratch raster (on the calling thread, which is one
/// of the run's own: the setting below is thread-local).
///
/// GDAL's COG driver first computes the overviews into a temporary file next to the COG,
/// ZSTD-compressed at GDAL's default level 9, then recompresses them into the COG. Level 9
/// resets megabytes of match tables for every tile of that file and took longer than the
/// COG's own compression; level 1 (`ZSTD_LEVEL_OVERVIEW`, GDAL's setting for overview files,
/// read in the calling thread) gives the same pixels at a fraction of the time. (Writing the
/// temporary file uncompressed is faster still, but GDAL then computes the smaller levels
/// differently: other overview pixels.)
fn write_product_cog(
    src: &Path,
    dst: &Path,
    opts: &CogOptions,
) -> Result<crate::products::CogReport> {
    let key = "ZSTD_LEVEL_OVERVIEW";
    gd(
        gdal::config::set_thread_local_config_option(key, "1"),
        || key.into(),
    )?;
    let written = write_cog_from_path(src, dst, opts);
    gd(gdal::config::clear_thread_local_config_option(key), || {
        key.into()
    })?;
    written
}

/// Caps GDAL's raster block cache at `value` (`GDAL_CACHEMAX` syntax: MB, or `N%` of RAM) unless
/// the environment sets `GDAL_CACHEMAX`. A run reads and writes each block once, so a small
/// cache is enough; GDAL's default (5 % of RAM) only grows the process with the scene.
pub fn cap_block_cache(value: &str) -> std::result::Result<(), gdal::errors::GdalError> {
    if std::env::var_os("GDAL_CACHEMAX").is_none() {
        gdal::config::set_config_option("GDAL_CACHEMAX", value)?;
    }
    Ok(())
}

/// Runs the change detection over `scenes` (any order; at least two). Intermediate files go
/// to `work` (created; the caller removes it), the two COGs to `out_dir` as `dndvi.tif` and
/// `loss.tif`.
pub fn run(scenes: &[Scene], params: &Params, work: &Path, out_dir: &Path) -> Result<Outcome> {
    params.validate()?;
    if scenes.len() < 2 {
        return Err(Error::ChangeInput(format!(
            "change detection needs at least two scenes, got {}",
            scenes.len()
        )));
    }
    let mut order: Vec<&Scene> = scenes.iter().collect();
    order.sort_by(|a, b| a.datetime.cmp(&b.datetime).then(a.id.cmp(&b.id)));
    let scenes: Vec<Scene> = order.into_iter().cloned().collect();
    let Some(newest) = scenes.last() else {
        return Err(Error::ChangeInput("no scenes".into()));
    };
    for p in [work, out_dir] {
        std::fs::create_dir_all(p)
            .map_err(|e| Error::ChangeInput(format!("creating {}: {e}", p.display())))?;
    }

    // The newest scene's red band defines the grid.
    let gds = gd(Dataset::open(&newest.red.path), || {
        format!("opening {}", newest.red.path.display())
    })?;
    let srs = gds.spatial_ref().map_err(|_| {
        Error::ChangeInput(format!(
            "item {}: {} has no coordinate reference system",
            newest.id,
            newest.red.path.display()
        ))
    })?;
    let gt = gd(gds.geo_transform(), || {
        "geotransform of the newest scene".into()
    })?;
    if gt[2] != 0.0 || gt[4] != 0.0 {
        return Err(Error::ChangeInput(format!(
            "item {}: rotated grids are not supported",
            newest.id
        )));
    }
    let (width, height) = gds.raster_size();
    let grid = Grid {
        width,
        height,
        block_rows: params.block_rows,
        gt,
        wkt: gd(srs.to_wkt(), || "CRS to WKT".into())?,
        srs,
    };
    drop(gds);

    let mut inputs = open_inputs(&scenes, &grid, work)?;
    let mut mask = match &params.mask {
        Some(m) => Some(rasterize_mask(m, &grid, work)?),
        None => None,
    };

    // Equal-area sizes: Lambert azimuthal equal-area on the WGS 84 authalic sphere, centred
    // on the grid (equal-area everywhere; the centre only limits shape distortion).
    let mut src_srs = grid.srs.clone();
    src_srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut wgs = gd(SpatialRef::from_epsg(4326), || "EPSG:4326".into())?;
    wgs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let to_ll = gd(CoordTransform::new(&src_srs, &wgs), || {
        "to EPSG:4326".into()
    })?;
    let [x0, y0, x1, y1] = grid_bounds_in(&grid, &wgs)?;
    let mut laea = gd(
        SpatialRef::from_proj4(&format!(
            "+proj=laea +lat_0={} +lon_0={} +R=6371007.181 +units=m +no_defs",
            (y0 + y1) / 2.0,
            (x0 + x1) / 2.0
        )),
        || "equal-area projection".into(),
    )?;
    laea.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let to_ea = gd(CoordTransform::new(&src_srs, &laea), || {
        "to equal-area".into()
    })?;

    // The only full-grid intermediates: ΔNDVI (uncompressed: it is noise to a codec and is
    // read twice by the COG writer) and the provisional component label of each detected
    // pixel with its state (`label << 2 | code`, mostly zeros: ZSTD).
    let mut s_dnew = Scratch::create::<f32>(&work.join("dndvi.tif"), &grid, Some(f64::NAN), RAW)?;
    let mut s_label = Scratch::create::<u32>(&work.join("label.tif"), &grid, None, PACKED)?;

    let looks = params.baseline_looks;
    let ne = scenes.len();
    let mut stats: Vec<SceneStats> = scenes
        .iter()
        .zip(&inputs.scenes)
        .map(|(s, o)| SceneStats {
            id: s.id.clone(),
            warped: o.warped,
            ..Default::default()
        })
        .collect();
    let drop_t = -params.drop as f32;
    let mut loss_px_before = 0u64;
    let mut labeller = Labeller::new(width);
    let too_many = |_| {
        Error::ChangeInput(format!(
            "more than {MAX_LABEL} provisional loss components: raise drop or use a mask"
        ))
    };

    // Per-block buffers, allocated once.
    let (mut hist, mut hist_e, mut hist_n) = (Vec::new(), Vec::new(), Vec::new());
    let (mut code, mut base, mut dfirst) = (Vec::new(), Vec::new(), Vec::new());
    let (mut first, mut last, mut dnew) = (Vec::new(), Vec::new(), Vec::new());
    let mut inmask = Vec::new();
    let (mut guard, mut lab) = (Vec::new(), Vec::new());
    // The inputs are read and classified on a thread of their own, a block ahead of the
    // detection and labelling here: the two halves take about the same time.
    let datasets = std::mem::take(&mut inputs.datasets);
    let opened = &inputs.scenes;
    std::thread::scope(|sc| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Classified>(ne.max(2));
        let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Vec<f32>>();
        sc.spawn(move || {
            read_and_classify(datasets, opened, (width, height), params, &tx, &spent_rx)
        });
        let mut row0 = 0;
        while row0 < height {
            let rows = params.block_rows.min(height - row0);
            let npx = rows * width;
            // Only the counts, states and ΔNDVI start afresh: the history, baseline and
            // first/last figures are read only where this block wrote them.
            size_to(&mut hist, npx * looks, 0f32);
            size_to(&mut hist_e, npx * looks, 0u16);
            reset(&mut hist_n, npx, 0u8);
            reset(&mut code, npx, 0u8);
            size_to(&mut base, npx, f32::NAN);
            size_to(&mut dfirst, npx, f32::NAN);
            size_to(&mut first, npx, 0u16);
            size_to(&mut last, npx, 0u16);
            reset(&mut dnew, npx, f32::NAN);
            match &mut mask {
                Some(m) => m.read::<u8>(row0, rows, width, &mut inmask)?,
                None => reset(&mut inmask, npx, 1u8),
            }
            let mut scratch = vec![0f32; looks];
            for (e, (scene, open)) in scenes.iter().zip(&inputs.scenes).enumerate() {
                let halo = if open.warped { params.shift_px } else { 0 };
                let r_lo = row0.saturating_sub(halo);
                let nrows = (row0 + rows + halo).min(height) - r_lo;
                let (nd, counts) = match rx.recv() {
                    Ok(c) => c?,
                    Err(_) => {
                        return Err(Error::ChangeInput("internal: the reader stopped".into()))
                    }
                };
                let st = &mut stats[e];
                st.valid += counts.valid;
                st.nodata += counts.nodata;
                st.nonpositive += counts.nonpositive;
                st.cloud += counts.cloud;
                st.shadow += counts.shadow;
                // Baseline contribution of a warped scene: where its neighbourhood (±`shift_px`)
                // spans an edge (max − min ≥ drop), the neighbourhood minimum, i.e. the largest
                // (least negative) ΔNDVI over shifts of up to `shift_px` pixels; elsewhere the
                // pixel itself (texture inside a stand must not shrink real clearings).
                let ndguard: Option<&[f32]> = (halo > 0).then(|| {
                    let out = &mut guard;
                    reset(out, npx, f32::NAN);
                    for r in 0..rows {
                        let ar = row0 + r - r_lo;
                        for c in 0..width {
                            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
                            for dr in ar.saturating_sub(halo)..=(ar + halo).min(nrows - 1) {
                                for dc in c.saturating_sub(halo)..=(c + halo).min(width - 1) {
                                    let v = nd[dr * width + dc];
                                    if !v.is_nan() {
                                        lo = lo.min(v);
                                        hi = hi.max(v);
                                    }
                                }
                            }
                            let v = nd[ar * width + c];
                            out[r * width + c] = if hi - lo >= params.drop as f32 { lo } else { v };
                        }
                    }
                    &guard[..]
                });
                let detect_ok = e >= 1 && params.since.is_none_or(|s| scene.datetime >= s);
                let newest_e = e + 1 == ne;
                let days = params
                    .baseline_days
                    .map(|d| chrono::Duration::days(i64::from(d)));
                for p in 0..npx {
                    let v = nd[(row0 - r_lo) * width + p];
                    if v.is_nan() {
                        continue;
                    }
                    let vb = match &ndguard {
                        Some(m) => m[p],
                        None => v,
                    };
                    let h = &mut hist[p * looks..(p + 1) * looks];
                    let he = &mut hist_e[p * looks..(p + 1) * looks];
                    let hn = &mut hist_n[p];
                    if let Some(days) = days {
                        while *hn > 0 && scene.datetime - scenes[usize::from(he[0])].datetime > days
                        {
                            h.copy_within(1.., 0);
                            he.copy_within(1.., 0);
                            *hn -= 1;
                        }
                    }
                    match code[p] {
                        0 => {
                            if *hn > 0 {
                                let k = usize::from(*hn);
                                let b = if k == 1 {
                                    // One look: the percentile of one value, without the sort.
                                    one_percentile(h[0], params.baseline_percentile)
                                } else {
                                    scratch[..k].copy_from_slice(&h[..k]);
                                    percentile(&mut scratch[..k], params.baseline_percentile)
                                };
                                let d = v - b;
                                if newest_e {
                                    dnew[p] = d;
                                }
                                if detect_ok && inmask[p] != 0 && d <= drop_t {
                                    code[p] = 1;
                                    base[p] = b;
                                    dfirst[p] = d;
                                    first[p] = e as u16;
                                    last[p] = e as u16;
                                    loss_px_before += 1;
                                    continue;
                                }
                            }
                            if usize::from(*hn) == looks {
                                h.copy_within(1.., 0);
                                he.copy_within(1.., 0);
                                *hn -= 1;
                            }
                            h[usize::from(*hn)] = vb;
                            he[usize::from(*hn)] = e as u16;
                            *hn += 1;
                        }
                        c => {
                            let d = v - base[p];
                            if newest_e {
                                dnew[p] = d;
                            }
                            if c != 3 {
                                code[p] = if d <= drop_t { 2 } else { 3 };
                                last[p] = e as u16;
                            }
                        }
                    }
                }
                // Back to the reader for a later block (it allocates if none is back yet).
                let _ = spent_tx.send(nd);
            }
            // Components: label the block's rows, carrying each pixel's figures into its
            // component; the label raster keeps `label << 2 | code`.
            let areas = pixel_areas(&grid, &to_ea, row0, rows)?;
            let chunks = areas.len() / rows.max(1);
            reset(&mut lab, npx, 0u32);
            for r in 0..rows {
                let o = r * width;
                let row_areas = &areas[r * chunks..(r + 1) * chunks];
                let labels = labeller
                    .row(|c| {
                        let p = o + c;
                        (code[p] != 0).then(|| Pixel {
                            code: code[p],
                            dfirst: dfirst[p],
                            base: base[p],
                            first: first[p],
                            last: last[p],
                            area_m2: row_areas[c / AREA_CHUNK],
                        })
                    })
                    .map_err(too_many)?;
                for (c, &l) in labels.iter().enumerate() {
                    if l != 0 {
                        lab[o + c] = (l << 2) | u32::from(code[o + c]);
                    }
                }
            }
            lab = s_label.write(row0, width, std::mem::take(&mut lab))?;
            dnew = s_dnew.write(row0, width, std::mem::take(&mut dnew))?;
            row0 += rows;
        }
        Ok(())
    })?;
    drop(s_dnew);

    // Products. The ΔNDVI COG is final once the pass is over: it is written on its own thread
    // while the polygons are drawn and measured here; the loss COG once the polygons under the
    // MMU are off it, while the alerts' geometries are written.
    let dndvi_cog = out_dir.join("dndvi.tif");
    let loss_cog = out_dir.join("loss.tif");
    let s_dnew_path = work.join("dndvi.tif");
    let s_loss_path = work.join("loss.tif");
    // Compression is most of the writing: on every core.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // ΔNDVI is float noise to a codec: ZSTD level 1 (the archive's codec for analytic COGs)
    // compresses it a little better than DEFLATE level 1 (164 vs 177 MB on the Meteor-sized
    // benchmark) in about half the time, and DEFLATE was the largest cost of a run.
    let cog = CogOptions {
        compression: crate::products::CogCompression::Zstd { level: 1 },
        threads: Some(threads),
        ..CogOptions::default()
    };
    // The loss codes (mostly zeros) stay DEFLATE level 1.
    let loss_opts = CogOptions {
        compression: crate::products::CogCompression::Deflate { level: 1 },
        overview_resampling: crate::products::OverviewResampling::Nearest,
        ..cog.clone()
    };
    let joined = |h: std::thread::ScopedJoinHandle<'_, Result<_>>| {
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    };
    let (alerts, components) = std::thread::scope(|sc| -> Result<_> {
        let dndvi = sc.spawn(|| write_product_cog(&s_dnew_path, &dndvi_cog, &cog));

        // Candidates: components whose per-pixel area reaches the MMU (with a margin: the exact
        // area below is the polygon's, as GDALPolygonize draws it).
        let (mut map, comps) = labeller.finish();
        let components = comps.len();
        let min_m2 = params.mmu_ha * 1e4 * (1.0 - MMU_MARGIN);
        let mut cand: Vec<Acc> = Vec::new();
        let mut cand_of: Vec<u32> = Vec::with_capacity(comps.len());
        for a in &comps {
            if params.mmu_ha == 0.0 || a.area_m2 >= min_m2 {
                cand.push(*a);
                cand_of.push(cand.len() as u32);
            } else {
                cand_of.push(0);
            }
        }
        drop(comps);
        if let Some(m) = map.first_mut() {
            *m = 0;
        }
        for m in map.iter_mut().skip(1) {
            *m = cand_of.get(*m as usize).copied().unwrap_or(0);
        }
        drop(cand_of);

        // Candidate numbers (for the polygons) and the loss codes, candidates only.
        let mut s_id = Scratch::create::<u32>(&work.join("id.tif"), &grid, None, PACKED)?;
        let mut s_loss = Scratch::create::<u8>(&work.join("loss.tif"), &grid, None, PACKED)?;
        let (mut ids, mut loss) = (Vec::new(), Vec::new());
        let mut row0 = 0;
        while row0 < height {
            let rows = params.block_rows.min(height - row0);
            s_label.read::<u32>(row0, rows, width, &mut lab)?;
            reset(&mut ids, lab.len(), 0u32);
            reset(&mut loss, lab.len(), 0u8);
            for ((v, id), l) in lab.iter().zip(&mut ids).zip(&mut loss) {
                if *v != 0 {
                    let k = map.get((*v >> 2) as usize).copied().unwrap_or(0);
                    if k != 0 {
                        *id = k;
                        *l = (*v & 3) as u8;
                    }
                }
            }
            ids = s_id.write(row0, width, std::mem::take(&mut ids))?;
            loss = s_loss.write(row0, width, std::mem::take(&mut loss))?;
            row0 += rows;
        }
        drop(map);
        drop(s_label);

        // Polygons of the candidates (8-connected), exact equal-area sizes, the MMU.
        let mem_driver = gd(DriverManager::get_driver_by_name("Memory"), || {
            "Memory driver".into()
        })?;
        let mut mem = gd(mem_driver.create_vector_only(""), || {
            "memory vector dataset".into()
        })?;
        let layer = gd(
            mem.create_layer(LayerOptions {
                name: "loss",
                srs: Some(&grid.srs),
                ty: gdal::vector::OGRwkbGeometryType::wkbPolygon,
                options: None,
            }),
            || "memory layer".into(),
        )?;
        let fd = gd(FieldDefn::new("v", OGRFieldType::OFTInteger), || {
            "field".into()
        })?;
        gd(fd.add_to_layer(&layer), || "field".into())?;
        {
            let b = gd(s_id.ds.rasterband(1), || "id band".into())?;
            polygonize(&b, &b, &layer, 0, true)?;
        }
        // Per candidate: polygon(s) in the grid CRS and their equal-area size, in the order
        // GDALPolygonize returns them.
        let mut polys: Vec<(usize, f64, Geometry)> = Vec::new();
        let mut slot: Vec<Option<usize>> = vec![None; cand.len() + 1];
        let mut layer = layer;
        for f in layer.features() {
            let Some(g) = f.geometry() else { continue };
            let k = gd(f.field_as_integer(0), || "polygon value".into())?
                .and_then(|k| usize::try_from(k).ok())
                .unwrap_or(0);
            let m2 = gd(g.transform(&to_ea), || "polygon to equal-area".into())?.area();
            match slot.get(k).copied().flatten() {
                Some(i) => {
                    // One component drawn as several polygons: one alert.
                    if let Some(p) = polys.get_mut(i) {
                        p.1 += m2;
                        if let Some(u) = p.2.union(g) {
                            p.2 = u;
                        }
                    }
                }
                None => {
                    if let Some(s) = slot.get_mut(k) {
                        *s = Some(polys.len());
                    }
                    polys.push((k, m2, g.clone()));
                }
            }
        }

        drop(mem);
        let mut kept: Vec<(f64, Geometry, Acc)> = Vec::new();
        for (k, m2, g) in polys {
            let Some(a) = k.checked_sub(1).and_then(|i| cand.get(i)) else {
                continue;
            };
            if m2 / 1e4 >= params.mmu_ha {
                let ll = gd(g.transform(&to_ll), || "polygon to EPSG:4326".into())?;
                kept.push((m2, ll, *a));
            } else {
                // Under the MMU after all: off the loss raster.
                s_loss.clear_where(&s_id, k as u32, &g.envelope(), &grid)?;
            }
        }
        drop(cand);
        drop(s_id);
        drop(s_loss);
        let loss = sc.spawn(|| write_product_cog(&s_loss_path, &loss_cog, &loss_opts));
        kept.sort_by(|a, b| b.0.total_cmp(&a.0));

        let mut alerts = Vec::with_capacity(kept.len());
        // Each OGR polygon is freed once its alert holds the geometry text.
        for (m2, ll, a) in kept {
            if a.n == 0 {
                continue;
            }
            // The state most of its pixels are in (ties go to the lower confidence).
            let low = a.n - a.high - a.contra;
            let confidence = if a.contra >= a.high && a.contra >= low {
                Confidence::Contradicted
            } else if a.high > low {
                Confidence::High
            } else {
                Confidence::Low
            };
            let fe = usize::from(a.first);
            let le = usize::from(a.last).min(ne - 1);
            let from = fe.saturating_sub(looks);
            let source_items = scenes[from..=le].iter().map(|s| s.id.clone()).collect();
            let geometry = match geojson::geometry(&ll) {
                Some(g) => g,
                None => gd(ll.json(), || "GeoJSON".into())?,
            };
            let env = ll.envelope();
            let first_detected = scenes[fe].datetime;
            alerts.push(Alert {
                id: format!("{}-{}", first_detected.format("%Y%m%d"), alerts.len() + 1),
                area_ha: m2 / 1e4,
                n_px: a.n,
                first_detected,
                last_observed: scenes[le].datetime,
                confidence,
                mean_dndvi: a.sum_d / a.n as f64,
                baseline_ndvi: a.sum_base / a.n as f64,
                source_items,
                geometry,
                bbox: [env.MinX, env.MinY, env.MaxX, env.MaxY],
            });
        }
        joined(dndvi)?;
        joined(loss)?;
        Ok((alerts, components))
    })?;

    let mut warnings = inputs.warnings;
    warnings.sort();
    warnings.dedup();
    Ok(Outcome {
        alerts,
        loss_px_before_mmu: loss_px_before,
        components_before_mmu: components,
        scenes: stats,
        warnings,
        dndvi_cog,
        loss_cog,
        size: (width, height),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn alert(id: &str) -> Alert {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        Alert {
            id: id.into(),
            area_ha: 1.234_567,
            n_px: 42,
            first_detected: t("2021-08-12T10:30:00Z"),
            last_observed: t("2021-09-01T10:30:00Z"),
            confidence: Confidence::High,
            mean_dndvi: -0.456_78,
            baseline_ndvi: 0.812_34,
            source_items: vec!["a".into(), "b \"quoted\"".into()],
            geometry: r#"{"coordinates":[[[8.3,47.2],[8.4,47.2],[8.4,47.3],[8.3,47.2]]],"type":"Polygon"}"#
                .into(),
            bbox: [8.3, 47.2, 8.4, 47.3],
        }
    }

    /// The streamed FeatureCollection is one RFC 7946 document with a feature per line, each
    /// with its prefixed id, properties and the geometry as given.
    #[test]
    fn streamed_feature_collection_parses_back() {
        let alerts = [alert("20210812-1"), alert("20210812-2")];
        let opts = FeatureOptions {
            mask: Some("forest.geojson"),
            collection: Some("muri"),
            id_prefix: Some("item-alerts"),
        };
        let mut out = Vec::new();
        write_feature_collection(&alerts, &opts, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        let fc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(fc["type"], "FeatureCollection");
        let fs = fc["features"].as_array().unwrap();
        assert_eq!(fs.len(), 2);
        let f = &fs[1];
        assert_eq!(f["type"], "Feature");
        assert_eq!(f["id"], "item-alerts-20210812-2");
        assert_eq!(f["properties"]["id"], "item-alerts-20210812-2");
        assert_eq!(f["properties"]["collection"], "muri");
        assert_eq!(f["properties"]["mask"], "forest.geojson");
        assert_eq!(f["properties"]["confidence"], "high");
        assert_eq!(f["properties"]["area_ha"], 1.2346);
        assert_eq!(f["properties"]["source_items"][1], "b \"quoted\"");
        assert_eq!(f["geometry"]["type"], "Polygon");
        assert_eq!(f["geometry"]["coordinates"][0][2][1], 47.3);
        assert_eq!(f["bbox"][3], 47.3);
        // Without options: plain ids, no collection, mask null.
        let v = alerts[0].to_feature(&FeatureOptions::default()).unwrap();
        assert_eq!(v["id"], "20210812-1");
        assert!(v["properties"].get("collection").is_none());
        assert!(v["properties"]["mask"].is_null());
        // An empty run is a valid, empty collection.
        let mut out = Vec::new();
        write_feature_collection(&[], &opts, &mut out).unwrap();
        let fc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(fc["features"].as_array().unwrap().len(), 0);
    }
}
