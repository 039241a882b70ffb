//! Render WebMercatorQuad tiles (256×256 RGBA) from Cloud Optimized GeoTIFFs with GDAL.
//!
//! Two paths:
//! - **Fast path** (web-optimized COG, i.e. written by the GDAL COG driver with
//!   `TILING_SCHEME=GoogleMapsCompatible`, see <https://gdal.org/drivers/raster/cog.html>): the
//!   raster is EPSG:3857 with the pixel size of one WebMercatorQuad zoom `zmax`, its origin on
//!   the pixel grid of that zoom, and each overview halves the size, so zoom `zmax - k` is
//!   overview `k` and a tile is a 256×256 window at integer offsets: one RasterIO, no
//!   resampling, values bit-exact.
//! - **General path** (any CRS, e.g. EPSG:4326 or UTM, or over-zoom): a 33×33 grid (every
//!   8 pixels) of the tile's EPSG:3857 points is transformed to the source CRS with OGR and
//!   pixel centres in between are interpolated bilinearly, but with an error bound: per 16×16
//!   cell the interpolation error is measured against the exactly transformed inner grid
//!   nodes, and every pixel centre whose interpolated position lies within that bound of a
//!   decision boundary (a raster edge, or a source pixel edge for the nearest pick) is
//!   transformed exactly; cells with a large error (low zoom: Web Mercator latitude is far
//!   from linear over a tile) are transformed exactly throughout. So validity and nearest
//!   picks equal those of an exact per-pixel transformation (GDAL's approximate transformer
//!   tolerates 0.125 px instead). The overview whose pixel is not coarser than the output
//!   pixel is chosen, the covering window is read once and sampled with nearest or bilinear
//!   (weights renormalised over valid pixels, a pixel is valid when any neighbour with
//!   weight > 0 is valid — GDAL warper behaviour).
//!   We do this ourselves instead of `gdal::raster::reproject` because that safe wrapper is
//!   fixed to bilinear and never uses overviews (a zoom-2 tile of a big scene would read the
//!   full resolution raster).
//!
//! Value → byte follows rio-tiler (TiTiler): `rescale=min,max` maps linearly and truncates
//! (`numpy.astype(uint8)`); without rescale values are clipped to 0..255. Colormap `rdylgn` is
//! the ColorBrewer 11-class RdYlGn (colorbrewer2.org, Cynthia Brewer) linearly interpolated to
//! 256 entries, as matplotlib builds its `RdYlGn` map; the input is first rescaled to a byte
//! (default range [-1, 1], NDVI).
//!
//! Masking: a source pixel is invalid when all selected bands equal their nodata value (NaN
//! nodata matches NaN), when the alpha band is 0, or when the per-dataset mask is 0. Invalid →
//! RGBA alpha 0. A tile with no valid pixel is [`Tile::Empty`].
//!
//! Threading: a GDAL `Dataset` is `Send`, not `Sync`, so [`TilePool`] runs N worker threads,
//! each with its own small cache of open datasets, fed by one channel; replies come back
//! through a future ([`TileFuture`]) or blocking.
//!
//! Encoding (image 0.25): PNG with alpha, JPEG (alpha dropped, masked pixels black), WebP
//! **lossless only** (`image` 0.25's `WebPEncoder` only has `new_lossless`; lossy WebP would
//! need libwebp).

use super::tms::{self, TileId, TILE_SIZE};
use crate::Error;
use gdal::raster::{ColorInterpretation, GdalDataType, RasterBand};
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::Dataset;
use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

const TS: usize = TILE_SIZE as usize;
const NPIX: usize = TS * TS;
/// Grid step (pixels) of exactly transformed points in the general path.
const GRID_STEP: usize = 8;
/// Grid nodes per axis.
const GRID_N: usize = TS / GRID_STEP + 1;
/// Side (pixels) of the cells whose interpolation error is measured: 2×2 grid cells, so the
/// 5 inner nodes of a cell are exact references for the bilinear interpolation of its corners.
const CELL: usize = 2 * GRID_STEP;
/// Floor of the error bound (source pixels): rounding of the interpolation arithmetic.
const EPS_PX: f64 = 1e-6;
/// Largest source window (pixels per axis) read in one go; bigger windows are decimated by
/// GDAL RasterIO (nearest) — only hit for rasters without overviews at low zoom.
const MAX_WINDOW: usize = 2048;

/// Resampling used by the general path (the fast path never resamples).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Resampling {
    #[default]
    Nearest,
    Bilinear,
}

/// Named colormaps for single-band data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Colormap {
    /// ColorBrewer RdYlGn (red = low, green = high).
    RdYlGn,
}

impl Colormap {
    /// Parses TiTiler-style names (`rdylgn`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "rdylgn" => Some(Self::RdYlGn),
            _ => None,
        }
    }

    /// 256-entry RGB table.
    pub fn table(&self) -> [[u8; 3]; 256] {
        // ColorBrewer RdYlGn, 11 classes.
        const ANCHORS: [[u8; 3]; 11] = [
            [0xa5, 0x00, 0x26],
            [0xd7, 0x30, 0x27],
            [0xf4, 0x6d, 0x43],
            [0xfd, 0xae, 0x61],
            [0xfe, 0xe0, 0x8b],
            [0xff, 0xff, 0xbf],
            [0xd9, 0xef, 0x8b],
            [0xa6, 0xd9, 0x6a],
            [0x66, 0xbd, 0x63],
            [0x1a, 0x98, 0x50],
            [0x00, 0x68, 0x37],
        ];
        let mut t = [[0u8; 3]; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let pos = i as f64 / 255.0 * 10.0;
            let k = (pos.floor() as usize).min(9);
            let f = pos - k as f64;
            let a = ANCHORS.get(k).copied().unwrap_or([0; 3]);
            let b = ANCHORS.get(k + 1).copied().unwrap_or(a);
            for c in 0..3 {
                let va = f64::from(a[c]) / 255.0;
                let vb = f64::from(b[c]) / 255.0;
                // matplotlib: float colour in [0,1], then ×255 truncated to uint8 by rio-tiler.
                e[c] = ((va + (vb - va) * f) * 255.0).clamp(0.0, 255.0) as u8;
            }
        }
        t
    }
}

/// What to render.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderOptions {
    /// 1-based band indexes (TiTiler `bidx`); empty = all non-alpha bands (at most 3; 1 → grey).
    pub bidx: Vec<usize>,
    /// Per-band (min, max); one entry applies to all bands; empty = clip to 0..255.
    pub rescale: Vec<(f64, f64)>,
    /// Colormap for a single band; its range is `rescale[0]` or [-1, 1].
    pub colormap: Option<Colormap>,
    /// Resampling of the general path.
    pub resampling: Resampling,
    /// Band math instead of `bidx` (one output band, e.g. NDVI from red and NIR).
    pub expression: Option<Expression>,
}

/// Band math on a tile (TiTiler's `expression`). Only the normalized difference is offered:
/// `(bA-bB)/(bA+bB)`, e.g. NDVI = `(b2-b1)/(b2+b1)` for band 1 = red, band 2 = NIR. A pixel
/// whose two bands sum to zero (or to a non-finite value) has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expression {
    /// `(a - b) / (a + b)`, 1-based band indexes.
    NormalizedDifference { a: usize, b: usize },
}

impl Expression {
    /// Parses `(bA-bB)/(bA+bB)` (spaces ignored, `B` or `b`); None for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let t: String = text
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        let (num, den) = t.split_once(")/(")?;
        let num = num.strip_prefix('(')?;
        let den = den.strip_suffix(')')?;
        let band = |s: &str| {
            s.strip_prefix('b')?
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
        };
        let (a, b) = num.split_once('-')?;
        let (c, d) = den.split_once('+')?;
        let (a, b) = (band(a)?, band(b)?);
        let (c, d) = (band(c)?, band(d)?);
        let same = (a, b) == (c, d) || (a, b) == (d, c);
        (same && a != b).then_some(Self::NormalizedDifference { a, b })
    }

    /// The expression in the form [`Expression::parse`] reads.
    pub fn text(&self) -> String {
        match self {
            Self::NormalizedDifference { a, b } => format!("(b{a}-b{b})/(b{a}+b{b})"),
        }
    }

    fn bands(&self) -> [usize; 2] {
        match self {
            Self::NormalizedDifference { a, b } => [*a, *b],
        }
    }
}

/// Output encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    Png,
    /// Quality 1..=100.
    Jpeg(u8),
    /// Lossless WebP (VP8L).
    WebpLossless,
}

impl Format {
    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg(_) => "image/jpeg",
            Format::WebpLossless => "image/webp",
        }
    }
}

/// A rendered tile.
#[derive(Debug, Clone, PartialEq)]
pub enum Tile {
    /// No valid pixel (outside the raster or all nodata): HTTP 204 or a transparent tile.
    Empty,
    /// 256×256 RGBA, row-major, 4 bytes per pixel.
    Rgba(Vec<u8>),
}

/// Which path rendered a tile (for tests and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenderPath {
    Fast,
    General,
}

/// Layout facts about an open source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceInfo {
    pub width: usize,
    pub height: usize,
    pub band_count: usize,
    pub band_types: Vec<GdalDataType>,
    pub nodata: Vec<Option<f64>>,
    /// 1-based alpha band index.
    pub alpha_band: Option<usize>,
    /// Per-dataset mask band (e.g. JPEG COG internal mask).
    pub per_dataset_mask: bool,
    pub geo_transform: [f64; 6],
    /// Overview sizes, largest first.
    pub overviews: Vec<(usize, usize)>,
    /// When web-optimized: the zoom of the full-resolution level.
    pub web_max_zoom: Option<u8>,
    /// Lowest zoom the fast path serves (`web_max_zoom - usable overview count`).
    pub web_min_zoom: Option<u8>,
    /// (west, south, east, north) in degrees.
    pub bounds_lonlat: [f64; 4],
    /// Approximate pixel size in EPSG:3857 metres at the raster centre.
    pub res_3857: f64,
}

impl SourceInfo {
    /// (minzoom, maxzoom) as advertised in TileJSON.
    pub fn zoom_range(&self) -> Result<(u8, u8), Error> {
        if let (Some(lo), Some(hi)) = (self.web_min_zoom, self.web_max_zoom) {
            return Ok((lo, hi));
        }
        tms::zoom_range(self.res_3857, self.width, self.height)
    }
}

struct WebLayout {
    zmax: u8,
    /// Global pixel column/row (at zmax) of the raster origin.
    col0: i64,
    row0: i64,
    /// For k = 0..: None = full resolution, Some(i) = overview index i.
    levels: Vec<Option<usize>>,
}

/// One open COG. Not `Sync`: keep one per thread (see [`TilePool`]).
pub struct TileSource {
    path: String,
    ds: Dataset,
    info: SourceInfo,
    web: Option<WebLayout>,
    /// EPSG:3857 → source CRS (None when the source is EPSG:3857).
    to_src: Option<CoordTransform>,
    inv_gt: [f64; 6],
}

fn gerr(path: &str) -> impl Fn(gdal::errors::GdalError) -> Error + '_ {
    move |source| Error::Gdal {
        context: format!("reading {path}"),
        source,
    }
}

fn invert_gt(gt: &[f64; 6]) -> Option<[f64; 6]> {
    let det = gt[1] * gt[5] - gt[2] * gt[4];
    if det.abs() < 1e-300 || !det.is_finite() {
        return None;
    }
    let inv = 1.0 / det;
    let a = gt[5] * inv;
    let b = -gt[2] * inv;
    let d = -gt[4] * inv;
    let e = gt[1] * inv;
    Some([-gt[0] * a - gt[3] * b, a, b, -gt[0] * d - gt[3] * e, d, e])
}

fn near_int(v: f64) -> Option<i64> {
    let r = v.round();
    ((v - r).abs() < 1e-6 && r.abs() < 9e15).then_some(r as i64)
}

fn is_3857(srs: &SpatialRef) -> bool {
    if srs.auth_name().as_deref() == Some("EPSG") && srs.auth_code().ok() == Some(3857) {
        return true;
    }
    SpatialRef::from_epsg(3857)
        .map(|w| &w == srs)
        .unwrap_or(false)
}

impl TileSource {
    /// Opens a raster read-only and inspects its layout.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let p = path.as_ref().display().to_string();
        let ds = Dataset::open(path.as_ref()).map_err(gerr(&p))?;
        let (width, height) = ds.raster_size();
        let band_count = ds.raster_count();
        if band_count == 0 || width == 0 || height == 0 {
            return Err(Error::Unsupported {
                path: p,
                msg: "no raster bands".into(),
            });
        }
        let gt = ds.geo_transform().map_err(gerr(&p))?;
        let inv_gt = invert_gt(&gt).ok_or_else(|| Error::Unsupported {
            path: p.clone(),
            msg: "singular geotransform".into(),
        })?;
        let mut band_types = Vec::with_capacity(band_count);
        let mut nodata = Vec::with_capacity(band_count);
        let mut alpha_band = None;
        let mut per_dataset_mask = false;
        let mut overviews = Vec::new();
        for i in 1..=band_count {
            let b = ds.rasterband(i).map_err(gerr(&p))?;
            band_types.push(b.band_type());
            nodata.push(b.no_data_value());
            if b.color_interpretation() == ColorInterpretation::AlphaBand && alpha_band.is_none() {
                alpha_band = Some(i);
            }
            if i == 1 {
                let flags = b.mask_flags().map_err(gerr(&p))?;
                per_dataset_mask =
                    flags.is_per_dataset() && !flags.is_alpha() && !flags.is_nodata();
                let n = b.overview_count().map_err(gerr(&p))?;
                for k in 0..usize::try_from(n).unwrap_or(0) {
                    let o = b.overview(k).map_err(gerr(&p))?;
                    overviews.push(o.size());
                }
            }
        }
        let mut src_srs = ds.spatial_ref().map_err(gerr(&p))?;
        src_srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let mut merc = SpatialRef::from_epsg(3857).map_err(gerr(&p))?;
        merc.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let mut wgs = SpatialRef::from_epsg(4326).map_err(gerr(&p))?;
        wgs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
        let src_is_3857 = is_3857(&src_srs);
        // Bounds in lon/lat and resolution in 3857.
        let w = width as f64;
        let h = height as f64;
        let ax = |c: f64, r: f64| (gt[0] + c * gt[1] + r * gt[2], gt[3] + c * gt[4] + r * gt[5]);
        // A geographic grid running past ±180° is read through `lon_wrap`, so tiles on the
        // other side of the line find its pixels.
        let wrap = archive::catalog::geom::lon_wrap_for_grid(src_srs.is_geographic(), &gt, width);
        let to_src = match (src_is_3857, wrap) {
            (true, _) => None,
            (false, Some(def)) => {
                let mut s = SpatialRef::from_proj4(def).map_err(gerr(&p))?;
                s.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
                Some(CoordTransform::new(&merc, &s).map_err(gerr(&p))?)
            }
            (false, None) => Some(CoordTransform::new(&merc, &src_srs).map_err(gerr(&p))?),
        };
        let corners = [ax(0.0, 0.0), ax(w, 0.0), ax(0.0, h), ax(w, h)];
        let (minx, maxx, miny, maxy) = corners.iter().fold(
            (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
            |(a, b, c, d), (x, y)| (a.min(*x), b.max(*x), c.min(*y), d.max(*y)),
        );
        let to_wgs = CoordTransform::new(&src_srs, &wgs).map_err(gerr(&p))?;
        let bl = to_wgs
            .transform_bounds(&[minx, miny, maxx, maxy], 21)
            .map_err(gerr(&p))?;
        let bounds_lonlat = if wrap.is_some() {
            // West > east: the bounds cross the antimeridian.
            let fold = |x: f64| {
                if x > 180.0 {
                    x - 360.0
                } else if x < -180.0 {
                    x + 360.0
                } else {
                    x
                }
            };
            [fold(minx), bl[1].max(-90.0), fold(maxx), bl[3].min(90.0)]
        } else {
            [
                bl[0].max(-180.0),
                bl[1].max(-90.0),
                bl[2].min(180.0),
                bl[3].min(90.0),
            ]
        };
        let res_3857 = {
            let (cx, cy) = ax(w / 2.0, h / 2.0);
            let (cx2, cy2) = ax(w / 2.0 + 1.0, h / 2.0 + 1.0);
            let to_m = CoordTransform::new(&src_srs, &merc).map_err(gerr(&p))?;
            let mut xs = [cx, cx2];
            let mut ys = [cy, cy2];
            to_m.transform_coords(&mut xs, &mut ys, &mut [])
                .map_err(gerr(&p))?;
            (((xs[1] - xs[0]).abs() + (ys[1] - ys[0]).abs()) / 2.0).max(1e-9)
        };
        let web = if src_is_3857 {
            detect_web_layout(&gt, width, height, &overviews)
        } else {
            None
        };
        let info = SourceInfo {
            width,
            height,
            band_count,
            band_types,
            nodata,
            alpha_band,
            per_dataset_mask,
            geo_transform: gt,
            web_max_zoom: web.as_ref().map(|l| l.zmax),
            web_min_zoom: web.as_ref().map(|l| {
                l.zmax
                    .saturating_sub(u8::try_from(l.levels.len() - 1).unwrap_or(0))
            }),
            overviews,
            bounds_lonlat,
            res_3857,
        };
        Ok(Self {
            path: p,
            ds,
            info,
            web,
            to_src,
            inv_gt,
        })
    }

    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Which path would render `tile`.
    pub fn path_for(&self, tile: &TileId) -> RenderPath {
        match &self.web {
            Some(l) if tile.z <= l.zmax && usize::from(l.zmax - tile.z) < l.levels.len() => {
                RenderPath::Fast
            }
            _ => RenderPath::General,
        }
    }

    fn resolve_bands(&self, opts: &RenderOptions) -> Result<Vec<usize>, Error> {
        let n = self.info.band_count;
        if let Some(ex) = &opts.expression {
            if !opts.bidx.is_empty() {
                return Err(Error::RenderOptions(
                    "expression and bidx exclude each other".into(),
                ));
            }
            if opts.rescale.len() > 1 {
                return Err(Error::RenderOptions(
                    "an expression takes one rescale range".into(),
                ));
            }
            let bands = ex.bands();
            for b in bands {
                if b == 0 || b > n {
                    return Err(Error::Band {
                        path: self.path.clone(),
                        band: b,
                        count: n,
                    });
                }
            }
            return Ok(bands.to_vec());
        }
        let bands: Vec<usize> = if opts.bidx.is_empty() {
            let non_alpha: Vec<usize> = (1..=n)
                .filter(|b| Some(*b) != self.info.alpha_band)
                .collect();
            if non_alpha.len() >= 3 && opts.colormap.is_none() {
                non_alpha.into_iter().take(3).collect()
            } else {
                non_alpha.into_iter().take(1).collect()
            }
        } else {
            opts.bidx.clone()
        };
        for b in &bands {
            if *b == 0 || *b > n {
                return Err(Error::Band {
                    path: self.path.clone(),
                    band: *b,
                    count: n,
                });
            }
        }
        if bands.len() != 1 && bands.len() != 3 {
            return Err(Error::RenderOptions(format!(
                "need 1 or 3 bands, got {}",
                bands.len()
            )));
        }
        if opts.colormap.is_some() && bands.len() != 1 {
            return Err(Error::RenderOptions(
                "colormap needs exactly one band".into(),
            ));
        }
        if opts.rescale.len() > 1 && opts.rescale.len() != bands.len() {
            return Err(Error::RenderOptions(format!(
                "{} rescale ranges for {} bands",
                opts.rescale.len(),
                bands.len()
            )));
        }
        for (lo, hi) in &opts.rescale {
            if !(lo.is_finite() && hi.is_finite()) || lo == hi {
                return Err(Error::RenderOptions(format!("bad rescale {lo},{hi}")));
            }
        }
        Ok(bands)
    }

    fn band(&self, i: usize) -> Result<RasterBand<'_>, Error> {
        self.ds.rasterband(i).map_err(gerr(&self.path))
    }

    /// Renders one tile to RGBA.
    pub fn render(&self, tile: &TileId, opts: &RenderOptions) -> Result<Tile, Error> {
        self.render_via(tile, opts, self.path_for(tile))
    }

    /// Renders through a chosen path ([`RenderPath::Fast`] falls back to the general path
    /// when the tile is not served by the web-optimized layout). For tests and diagnostics.
    pub fn render_via(
        &self,
        tile: &TileId,
        opts: &RenderOptions,
        path: RenderPath,
    ) -> Result<Tile, Error> {
        let bands = self.resolve_bands(opts)?;
        let path = if self.path_for(tile) == RenderPath::Fast {
            path
        } else {
            RenderPath::General
        };
        let raw = match path {
            RenderPath::Fast => self.read_fast(tile, &bands)?,
            RenderPath::General => self.read_general(tile, &bands, opts.resampling)?,
        };
        match raw {
            None => Ok(Tile::Empty),
            Some(raw) => match &opts.expression {
                Some(ex) => match apply_expression(&raw, ex) {
                    Some(raw) => Ok(self.colorize(&raw, &bands[..1], opts)),
                    None => Ok(Tile::Empty),
                },
                None => Ok(self.colorize(&raw, &bands, opts)),
            },
        }
    }

    /// Renders and encodes one tile.
    pub fn render_encoded(
        &self,
        tile: &TileId,
        opts: &RenderOptions,
        format: Format,
    ) -> Result<Encoded, Error> {
        match self.render(tile, opts)? {
            Tile::Empty => Ok(Encoded::Empty),
            Tile::Rgba(px) => Ok(Encoded::Image {
                bytes: encode(&px, format)?,
                content_type: format.content_type(),
            }),
        }
    }

    /// Reads band `b` (1-based) of overview `ovr` (None = full res) over a window into a
    /// f32 buffer of `buf` size.
    fn read_window(
        &self,
        b: usize,
        ovr: Option<usize>,
        off: (isize, isize),
        win: (usize, usize),
        buf: (usize, usize),
    ) -> Result<Vec<f32>, Error> {
        let band = self.band(b)?;
        let band = match ovr {
            Some(i) => band.overview(i).map_err(gerr(&self.path))?,
            None => band,
        };
        let mut out = vec![0f32; buf.0 * buf.1];
        band.read_into_slice(off, win, buf, &mut out, None)
            .map_err(gerr(&self.path))?;
        Ok(out)
    }

    fn read_mask_window(
        &self,
        ovr: Option<usize>,
        off: (isize, isize),
        win: (usize, usize),
        buf: (usize, usize),
    ) -> Result<Vec<u8>, Error> {
        let band = self.band(1)?;
        let band = match ovr {
            Some(i) => band.overview(i).map_err(gerr(&self.path))?,
            None => band,
        };
        let mask = band.open_mask_band().map_err(gerr(&self.path))?;
        let mut out = vec![0u8; buf.0 * buf.1];
        mask.read_into_slice(off, win, buf, &mut out, None)
            .map_err(gerr(&self.path))?;
        Ok(out)
    }

    /// Reads the selected bands and a validity mask for a window; returns (band values,
    /// validity) of `buf` size.
    fn read_source(
        &self,
        bands: &[usize],
        ovr: Option<usize>,
        off: (isize, isize),
        win: (usize, usize),
        buf: (usize, usize),
    ) -> Result<(Vec<Vec<f32>>, Vec<bool>), Error> {
        let n = buf.0 * buf.1;
        let mut vals = Vec::with_capacity(bands.len());
        for b in bands {
            vals.push(self.read_window(*b, ovr, off, win, buf)?);
        }
        let mut valid = vec![true; n];
        let nodatas: Vec<Option<f64>> = bands
            .iter()
            .map(|b| self.info.nodata.get(b - 1).copied().flatten())
            .collect();
        if nodatas.iter().all(|v| v.is_some()) && !nodatas.is_empty() {
            for (i, ok) in valid.iter_mut().enumerate() {
                let all_nd = vals.iter().zip(&nodatas).all(|(v, nd)| {
                    let x = v.get(i).copied().unwrap_or(f32::NAN);
                    match nd {
                        Some(nd) if nd.is_nan() => x.is_nan(),
                        Some(nd) => f64::from(x) == *nd || x == (*nd as f32),
                        None => false,
                    }
                });
                if all_nd {
                    *ok = false;
                }
            }
        }
        // Float data: NaN is never a displayable value.
        for v in &vals {
            for (ok, x) in valid.iter_mut().zip(v) {
                if x.is_nan() {
                    *ok = false;
                }
            }
        }
        if let Some(a) = self.info.alpha_band {
            let alpha = self.read_window(a, ovr, off, win, buf)?;
            for (ok, x) in valid.iter_mut().zip(&alpha) {
                if *x <= 0.0 {
                    *ok = false;
                }
            }
        } else if self.info.per_dataset_mask {
            let m = self.read_mask_window(ovr, off, win, buf)?;
            for (ok, x) in valid.iter_mut().zip(&m) {
                if *x == 0 {
                    *ok = false;
                }
            }
        }
        Ok((vals, valid))
    }

    fn read_fast(&self, tile: &TileId, bands: &[usize]) -> Result<Option<RawTile>, Error> {
        let Some(l) = &self.web else {
            return Ok(None);
        };
        let k = l.zmax - tile.z;
        let ovr = l.levels.get(usize::from(k)).copied().flatten();
        let (lw, lh) = match ovr {
            Some(i) => self.info.overviews.get(i).copied().unwrap_or((0, 0)),
            None => (self.info.width, self.info.height),
        };
        let ox = i64::from(tile.x) * TS as i64 - (l.col0 >> k);
        let oy = i64::from(tile.y) * TS as i64 - (l.row0 >> k);
        let x0 = ox.max(0);
        let y0 = oy.max(0);
        let x1 = (ox + TS as i64).min(lw as i64);
        let y1 = (oy + TS as i64).min(lh as i64);
        if x1 <= x0 || y1 <= y0 {
            return Ok(None);
        }
        let ww = (x1 - x0) as usize;
        let wh = (y1 - y0) as usize;
        let (vals, valid) =
            self.read_source(bands, ovr, (x0 as isize, y0 as isize), (ww, wh), (ww, wh))?;
        let dx = (x0 - ox) as usize;
        let dy = (y0 - oy) as usize;
        let mut raw = RawTile::new(bands.len());
        for r in 0..wh {
            let src = r * ww..(r + 1) * ww;
            let dst = (dy + r) * TS + dx..(dy + r) * TS + dx + ww;
            for (b, v) in vals.iter().enumerate() {
                if let (Some(d), Some(s)) = (
                    raw.vals.get_mut(b).and_then(|d| d.get_mut(dst.clone())),
                    v.get(src.clone()),
                ) {
                    d.copy_from_slice(s);
                }
            }
            if let (Some(d), Some(s)) = (raw.valid.get_mut(dst), valid.get(src)) {
                d.copy_from_slice(s);
            }
        }
        Ok(raw.any_valid().then_some(raw))
    }

    /// EPSG:3857 metres → full-resolution source pixel coordinates, in place; points the
    /// transformation fails on become NaN.
    fn to_source_pixels(&self, xs: &mut [f64], ys: &mut [f64]) {
        if let Some(t) = &self.to_src {
            // Failed points come back non-finite; the call may report an error for them.
            let _partial = t.transform_coords(xs, ys, &mut []);
        }
        let ig = self.inv_gt;
        for (x, y) in xs.iter_mut().zip(ys.iter_mut()) {
            if x.is_finite() && y.is_finite() {
                let (u, v) = (
                    ig[0] + *x * ig[1] + *y * ig[2],
                    ig[3] + *x * ig[4] + *y * ig[5],
                );
                *x = u;
                *y = v;
            } else {
                *x = f64::NAN;
                *y = f64::NAN;
            }
        }
    }

    /// Full-resolution source pixel coordinates of every output pixel centre, as exact as a
    /// per-pixel transformation wherever it decides something.
    ///
    /// `us`/`vs` are the exactly transformed `GRID_N`² grid nodes. Per `CELL`-sized cell the
    /// error of bilinear interpolation over the cell corners is measured at its 5 inner nodes
    /// (per axis). Pixel centres are interpolated over the twice finer grid, whose error is
    /// about a quarter of that (quadratic term), so the measured value is a bound with a
    /// safety factor of ~4. A pixel centre is then transformed exactly when its interpolated
    /// position is within that bound of a decision boundary: a raster edge (validity) or a
    /// source pixel edge of the sampled buffer (nearest pick; for bilinear the edge where
    /// the set of weighted neighbours changes). Cells with a failed node or a bound of a
    /// quarter buffer pixel or more (low zoom, strongly non-linear) are transformed exactly
    /// throughout. `win` = (window origin u, v in full-res pixels, full-res pixels per buffer
    /// pixel x, y).
    fn pixel_positions(
        &self,
        tile: &TileId,
        us: &[f64],
        vs: &[f64],
        win: [f64; 4],
        resampling: Resampling,
    ) -> (Vec<f64>, Vec<f64>) {
        let [ox, oy, bx, by] = win;
        let w = self.info.width as f64;
        let h = self.info.height as f64;
        let shift = match resampling {
            Resampling::Nearest => 0.0,
            Resampling::Bilinear => 0.5,
        };
        // Distance (buffer pixels) of a buffer coordinate to the nearest decision edge.
        let edge_dist = |s: f64| {
            let f = s - shift;
            let fr = f - f.floor();
            fr.min(1.0 - fr)
        };
        let node = |i: usize, j: usize| {
            let k = j * GRID_N + i;
            (
                us.get(k).copied().unwrap_or(f64::NAN),
                vs.get(k).copied().unwrap_or(f64::NAN),
            )
        };
        let mut pu = vec![f64::NAN; NPIX];
        let mut pv = vec![f64::NAN; NPIX];
        let mut todo: Vec<usize> = Vec::new();
        let cells = TS / CELL;
        for cy in 0..cells {
            for cx in 0..cells {
                let (i0, j0) = (cx * 2, cy * 2);
                let mut n = [[(0.0f64, 0.0f64); 3]; 3];
                let mut finite = true;
                for (b, row) in n.iter_mut().enumerate() {
                    for (a, p) in row.iter_mut().enumerate() {
                        *p = node(i0 + a, j0 + b);
                        finite &= p.0.is_finite() && p.1.is_finite();
                    }
                }
                let c = |a: usize, b: usize| {
                    n.get(b)
                        .and_then(|r| r.get(a))
                        .copied()
                        .unwrap_or((f64::NAN, f64::NAN))
                };
                let (mut eu, mut ev) = (0.0f64, 0.0f64);
                for (a, b) in [(1, 0), (0, 1), (1, 1), (2, 1), (1, 2)] {
                    let (tx, ty) = (a as f64 / 2.0, b as f64 / 2.0);
                    let lin = |f: fn((f64, f64)) -> f64| {
                        let top = f(c(0, 0)) * (1.0 - tx) + f(c(2, 0)) * tx;
                        let bot = f(c(0, 2)) * (1.0 - tx) + f(c(2, 2)) * tx;
                        top * (1.0 - ty) + bot * ty
                    };
                    eu = eu.max((lin(|p| p.0) - c(a, b).0).abs());
                    ev = ev.max((lin(|p| p.1) - c(a, b).1).abs());
                }
                let (mu, mv) = (eu + EPS_PX, ev + EPS_PX);
                let exact_all = !(finite && mu.is_finite() && mv.is_finite())
                    || mu / bx >= 0.25
                    || mv / by >= 0.25;
                if exact_all {
                    for py in cy * CELL..(cy + 1) * CELL {
                        todo.extend((cx * CELL..(cx + 1) * CELL).map(|px| py * TS + px));
                    }
                    continue;
                }
                // Interpolate over the four GRID_STEP sub-cells.
                let step = GRID_STEP as f64;
                for (b, a) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let (p00, p10, p01, p11) = (c(a, b), c(a + 1, b), c(a, b + 1), c(a + 1, b + 1));
                    for ry in 0..GRID_STEP {
                        let ty = (ry as f64 + 0.5) / step;
                        let l = (p00.0 + (p01.0 - p00.0) * ty, p00.1 + (p01.1 - p00.1) * ty);
                        let r = (p10.0 + (p11.0 - p10.0) * ty, p10.1 + (p11.1 - p10.1) * ty);
                        let py = cy * CELL + b * GRID_STEP + ry;
                        for rx in 0..GRID_STEP {
                            let tx = (rx as f64 + 0.5) / step;
                            let u = l.0 + (r.0 - l.0) * tx;
                            let v = l.1 + (r.1 - l.1) * tx;
                            if u < -mu || v < -mv || u >= w + mu || v >= h + mv {
                                continue; // outside the raster whatever the error
                            }
                            let o = py * TS + cx * CELL + a * GRID_STEP + rx;
                            if u < mu
                                || v < mv
                                || u >= w - mu
                                || v >= h - mv
                                || edge_dist((u - ox) / bx) <= mu / bx
                                || edge_dist((v - oy) / by) <= mv / by
                            {
                                todo.push(o);
                            } else if let (Some(du), Some(dv)) = (pu.get_mut(o), pv.get_mut(o)) {
                                *du = u;
                                *dv = v;
                            }
                        }
                    }
                }
            }
        }
        if !todo.is_empty() {
            let tgt = tile.geo_transform();
            let mut xs: Vec<f64> = todo
                .iter()
                .map(|o| tgt[0] + ((o % TS) as f64 + 0.5) * tgt[1])
                .collect();
            let mut ys: Vec<f64> = todo
                .iter()
                .map(|o| tgt[3] + ((o / TS) as f64 + 0.5) * tgt[5])
                .collect();
            self.to_source_pixels(&mut xs, &mut ys);
            for ((o, u), v) in todo.iter().zip(xs).zip(ys) {
                if let (Some(du), Some(dv)) = (pu.get_mut(*o), pv.get_mut(*o)) {
                    *du = u;
                    *dv = v;
                }
            }
        }
        (pu, pv)
    }

    fn read_general(
        &self,
        tile: &TileId,
        bands: &[usize],
        resampling: Resampling,
    ) -> Result<Option<RawTile>, Error> {
        // 1. Grid of tile-edge positions (pixel units) → source full-res pixel coordinates.
        let tgt = tile.geo_transform();
        let g = GRID_N;
        let mut us = Vec::with_capacity(g * g);
        let mut vs = Vec::with_capacity(g * g);
        for j in 0..g {
            for i in 0..g {
                us.push(tgt[0] + (i * GRID_STEP) as f64 * tgt[1]);
                vs.push(tgt[3] + (j * GRID_STEP) as f64 * tgt[5]);
            }
        }
        self.to_source_pixels(&mut us, &mut vs);
        // 2. Bounding window and source pixels per output pixel.
        let (mut umin, mut umax, mut vmin, mut vmax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        let mut scale = f64::MAX;
        for j in 0..g {
            for i in 0..g {
                let k = j * g + i;
                let (Some(u), Some(v)) = (us.get(k).copied(), vs.get(k).copied()) else {
                    continue;
                };
                if !(u.is_finite() && v.is_finite()) {
                    continue;
                }
                umin = umin.min(u);
                umax = umax.max(u);
                vmin = vmin.min(v);
                vmax = vmax.max(v);
                if i + 1 < g && j + 1 < g {
                    let u1 = us.get(k + 1).copied().unwrap_or(f64::NAN);
                    let v1 = vs.get(k + 1).copied().unwrap_or(f64::NAN);
                    let u2 = us.get(k + g).copied().unwrap_or(f64::NAN);
                    let v2 = vs.get(k + g).copied().unwrap_or(f64::NAN);
                    let sx = ((u1 - u).powi(2) + (v1 - v).powi(2)).sqrt();
                    let sy = ((u2 - u).powi(2) + (v2 - v).powi(2)).sqrt();
                    let s = sx.min(sy) / GRID_STEP as f64;
                    if s.is_finite() {
                        scale = scale.min(s);
                    }
                }
            }
        }
        let w = self.info.width as f64;
        let h = self.info.height as f64;
        if umin > umax || umax < 0.0 || vmax < 0.0 || umin > w || vmin > h {
            return Ok(None);
        }
        // 3. Overview: the coarsest whose pixel is not coarser than the output pixel.
        let mut ovr: Option<usize> = None;
        let (mut fx, mut fy) = (1.0f64, 1.0f64);
        if scale.is_finite() && scale > 1.0 {
            for (i, (ow, oh)) in self.info.overviews.iter().enumerate() {
                let f = w / *ow as f64;
                if f <= scale * 1.0001 {
                    ovr = Some(i);
                    fx = f;
                    fy = h / *oh as f64;
                }
            }
        }
        let (lw, lh) = match ovr {
            Some(i) => self.info.overviews.get(i).copied().unwrap_or((1, 1)),
            None => (self.info.width, self.info.height),
        };
        let x0 = ((umin / fx).floor() as i64 - 2).clamp(0, lw as i64);
        let y0 = ((vmin / fy).floor() as i64 - 2).clamp(0, lh as i64);
        let x1 = ((umax / fx).ceil() as i64 + 2).clamp(0, lw as i64);
        let y1 = ((vmax / fy).ceil() as i64 + 2).clamp(0, lh as i64);
        if x1 <= x0 || y1 <= y0 {
            return Ok(None);
        }
        let win = ((x1 - x0) as usize, (y1 - y0) as usize);
        let dec = (win.0.max(win.1) as f64 / MAX_WINDOW as f64).max(1.0);
        let buf = (
            ((win.0 as f64 / dec).ceil() as usize).max(1),
            ((win.1 as f64 / dec).ceil() as usize).max(1),
        );
        // Full-res pixel → buffer pixel.
        let bx = fx * win.0 as f64 / buf.0 as f64;
        let by = fy * win.1 as f64 / buf.1 as f64;
        let (vals, valid) = self.read_source(bands, ovr, (x0 as isize, y0 as isize), win, buf)?;
        let int_types: Vec<bool> = bands
            .iter()
            .map(|b| {
                self.info
                    .band_types
                    .get(b - 1)
                    .map(|t| t.is_integer())
                    .unwrap_or(false)
            })
            .collect();
        // 4. Source position of every output pixel centre, then sample.
        let ox = x0 as f64 * fx; // window origin in full-res pixels
        let oy = y0 as f64 * fy;
        let (pu, pv) = self.pixel_positions(tile, &us, &vs, [ox, oy, bx, by], resampling);
        let mut raw = RawTile::new(bands.len());
        let (bw, bh) = (buf.0 as i64, buf.1 as i64);
        for py in 0..TS {
            for px in 0..TS {
                let o = py * TS + px;
                let u = pu.get(o).copied().unwrap_or(f64::NAN);
                let v = pv.get(o).copied().unwrap_or(f64::NAN);
                if !(u.is_finite() && v.is_finite()) || u < 0.0 || v < 0.0 || u >= w || v >= h {
                    continue;
                }
                // Buffer coordinates.
                let su = (u - ox) / bx;
                let sv = (v - oy) / by;
                match resampling {
                    Resampling::Nearest => {
                        let ix = (su.floor() as i64).clamp(0, bw - 1);
                        let iy = (sv.floor() as i64).clamp(0, bh - 1);
                        let s = (iy * bw + ix) as usize;
                        if valid.get(s).copied().unwrap_or(false) {
                            for (b, vb) in vals.iter().enumerate() {
                                if let (Some(d), Some(x)) =
                                    (raw.vals.get_mut(b).and_then(|d| d.get_mut(o)), vb.get(s))
                                {
                                    *d = *x;
                                }
                            }
                            if let Some(ok) = raw.valid.get_mut(o) {
                                *ok = true;
                            }
                        }
                    }
                    Resampling::Bilinear => {
                        let fu = su - 0.5;
                        let fv = sv - 0.5;
                        let ix = fu.floor() as i64;
                        let iy = fv.floor() as i64;
                        let ax = fu - ix as f64;
                        let ay = fv - iy as f64;
                        let mut acc = [0f64; 3];
                        let mut wsum = 0.0;
                        for (dy, wy) in [(0i64, 1.0 - ay), (1, ay)] {
                            for (dx, wx) in [(0i64, 1.0 - ax), (1, ax)] {
                                let wgt = wx * wy;
                                if wgt <= 0.0 {
                                    continue;
                                }
                                let cx = (ix + dx).clamp(0, bw - 1);
                                let cy = (iy + dy).clamp(0, bh - 1);
                                let s = (cy * bw + cx) as usize;
                                if !valid.get(s).copied().unwrap_or(false) {
                                    continue;
                                }
                                wsum += wgt;
                                for (b, vb) in vals.iter().enumerate() {
                                    if let (Some(a), Some(x)) = (acc.get_mut(b), vb.get(s)) {
                                        *a += wgt * f64::from(*x);
                                    }
                                }
                            }
                        }
                        if wsum > 1e-6 {
                            for (b, a) in acc.iter().enumerate().take(vals.len()) {
                                let mut val = a / wsum;
                                if int_types.get(b).copied().unwrap_or(false) {
                                    // GDAL's warper rounds to the (integer) source type.
                                    val = (val + 0.5).floor();
                                }
                                if let Some(d) = raw.vals.get_mut(b).and_then(|d| d.get_mut(o)) {
                                    *d = val as f32;
                                }
                            }
                            if let Some(ok) = raw.valid.get_mut(o) {
                                *ok = true;
                            }
                        }
                    }
                }
            }
        }
        Ok(raw.any_valid().then_some(raw))
    }

    fn colorize(&self, raw: &RawTile, bands: &[usize], opts: &RenderOptions) -> Tile {
        let mut out = vec![0u8; NPIX * 4];
        let range = |b: usize| -> Option<(f64, f64)> {
            if opts.rescale.len() == 1 {
                opts.rescale.first().copied()
            } else {
                opts.rescale.get(b).copied()
            }
        };
        let to_byte = |x: f32, r: Option<(f64, f64)>| -> u8 {
            let x = f64::from(x);
            match r {
                Some((lo, hi)) => {
                    let t = ((x.clamp(lo.min(hi), lo.max(hi)) - lo) / (hi - lo)) * 255.0;
                    t.clamp(0.0, 255.0) as u8
                }
                None => x.clamp(0.0, 255.0) as u8,
            }
        };
        if let Some(cm) = opts.colormap {
            let table = cm.table();
            let r = range(0).or(Some((-1.0, 1.0)));
            let vals = raw.vals.first().map(|v| v.as_slice()).unwrap_or(&[]);
            for ((px, x), ok) in out.chunks_exact_mut(4).zip(vals).zip(&raw.valid) {
                if *ok {
                    let c = table
                        .get(usize::from(to_byte(*x, r)))
                        .copied()
                        .unwrap_or([0; 3]);
                    px.copy_from_slice(&[c[0], c[1], c[2], 255]);
                }
            }
        } else if bands.len() == 1 {
            let r = range(0);
            let vals = raw.vals.first().map(|v| v.as_slice()).unwrap_or(&[]);
            for ((px, x), ok) in out.chunks_exact_mut(4).zip(vals).zip(&raw.valid) {
                if *ok {
                    let g = to_byte(*x, r);
                    px.copy_from_slice(&[g, g, g, 255]);
                }
            }
        } else {
            let rs = [range(0), range(1), range(2)];
            for (i, (px, ok)) in out.chunks_exact_mut(4).zip(&raw.valid).enumerate() {
                if *ok {
                    for (c, (vb, r)) in raw.vals.iter().zip(rs).enumerate().take(3) {
                        if let (Some(d), Some(x)) = (px.get_mut(c), vb.get(i)) {
                            *d = to_byte(*x, r);
                        }
                    }
                    if let Some(a) = px.get_mut(3) {
                        *a = 255;
                    }
                }
            }
        }
        Tile::Rgba(out)
    }
}

fn detect_web_layout(
    gt: &[f64; 6],
    width: usize,
    height: usize,
    overviews: &[(usize, usize)],
) -> Option<WebLayout> {
    if gt[2] != 0.0 || gt[4] != 0.0 || gt[1] <= 0.0 || (gt[1] + gt[5]).abs() > gt[1] * 1e-9 {
        return None;
    }
    let zmax = (0..=tms::MAX_ZOOM).find(|z| {
        let r = tms::resolution(*z);
        (r - gt[1]).abs() / r < 1e-9
    })?;
    let col0 = near_int((gt[0] + tms::ORIGIN_SHIFT) / gt[1])?;
    let row0 = near_int((tms::ORIGIN_SHIFT - gt[3]) / gt[1])?;
    let mut levels = vec![None];
    for k in 1..=zmax {
        let f = 1usize << k;
        let (c, r) = (1i64 << k, 1i64 << k);
        if !width.is_multiple_of(f) || !height.is_multiple_of(f) || col0 % c != 0 || row0 % r != 0 {
            break;
        }
        let want = (width / f, height / f);
        match overviews.iter().position(|o| *o == want) {
            Some(i) => levels.push(Some(i)),
            None => break,
        }
    }
    Some(WebLayout {
        zmax,
        col0,
        row0,
        levels,
    })
}

struct RawTile {
    vals: Vec<Vec<f32>>,
    valid: Vec<bool>,
}

/// The tile's values of an expression, as a one-band tile; None when no pixel has a value.
fn apply_expression(raw: &RawTile, ex: &Expression) -> Option<RawTile> {
    let Expression::NormalizedDifference { .. } = ex;
    let (a, b) = match raw.vals.as_slice() {
        [a, b] => (a, b),
        _ => return None,
    };
    let mut out = RawTile::new(1);
    let vals = out.vals.first_mut()?;
    for (((o, ok), (x, y)), was) in vals
        .iter_mut()
        .zip(out.valid.iter_mut())
        .zip(a.iter().zip(b))
        .zip(&raw.valid)
    {
        let (x, y) = (f64::from(*x), f64::from(*y));
        let sum = x + y;
        if *was && sum.is_finite() && sum != 0.0 {
            *o = ((x - y) / sum) as f32;
            *ok = true;
        }
    }
    out.any_valid().then_some(out)
}

impl RawTile {
    fn new(n: usize) -> Self {
        Self {
            vals: vec![vec![0f32; NPIX]; n],
            valid: vec![false; NPIX],
        }
    }
    fn any_valid(&self) -> bool {
        self.valid.iter().any(|v| *v)
    }
}

/// Encodes a 256×256 RGBA buffer.
pub fn encode(rgba: &[u8], format: Format) -> Result<Vec<u8>, Error> {
    encode_sized(rgba, TILE_SIZE, TILE_SIZE, format)
}

/// Encodes a `width`×`height` RGBA buffer (row-major, 4 bytes per pixel).
pub fn encode_sized(
    rgba: &[u8],
    width: u32,
    height: u32,
    format: Format,
) -> Result<Vec<u8>, Error> {
    use image::codecs::{jpeg::JpegEncoder, png, webp::WebPEncoder};
    use image::{ExtendedColorType, ImageEncoder};
    let want = width as usize * height as usize * 4;
    if rgba.len() != want || want == 0 {
        return Err(Error::Encode {
            format,
            msg: format!("buffer has {} bytes, want {want}", rgba.len()),
        });
    }
    let mut out = Vec::with_capacity(32 * 1024);
    let e = |m: image::ImageError| Error::Encode {
        format,
        msg: m.to_string(),
    };
    match format {
        Format::Png => png::PngEncoder::new_with_quality(
            &mut out,
            png::CompressionType::Fast,
            png::FilterType::Adaptive,
        )
        .write_image(rgba, width, height, ExtendedColorType::Rgba8)
        .map_err(e)?,
        Format::Jpeg(q) => {
            let rgb: Vec<u8> = rgba
                .chunks_exact(4)
                .flat_map(|p| match p {
                    [r, g, b, a] if *a > 0 => [*r, *g, *b],
                    _ => [0, 0, 0],
                })
                .collect();
            JpegEncoder::new_with_quality(&mut out, q.clamp(1, 100))
                .write_image(&rgb, width, height, ExtendedColorType::Rgb8)
                .map_err(e)?
        }
        Format::WebpLossless => WebPEncoder::new_lossless(&mut out)
            .write_image(rgba, width, height, ExtendedColorType::Rgba8)
            .map_err(e)?,
    }
    Ok(out)
}

/// An encoded tile.
#[derive(Debug, Clone, PartialEq)]
pub enum Encoded {
    Empty,
    Image {
        bytes: Vec<u8>,
        content_type: &'static str,
    },
}

// ---------------------------------------------------------------- pool

struct Slot {
    value: Option<Result<Encoded, Error>>,
    waker: Option<Waker>,
}

struct Shared {
    slot: Mutex<Slot>,
    cv: Condvar,
}

/// Reply of [`TilePool::submit`]: `.await` it or call [`TileFuture::wait`].
pub struct TileFuture {
    shared: Arc<Shared>,
}

impl TileFuture {
    /// Blocks the calling thread until the tile is ready.
    pub fn wait(self) -> Result<Encoded, Error> {
        let mut g = self
            .shared
            .slot
            .lock()
            .map_err(|_| Error::Pool("poisoned".into()))?;
        loop {
            if let Some(v) = g.value.take() {
                return v;
            }
            g = self
                .shared
                .cv
                .wait(g)
                .map_err(|_| Error::Pool("poisoned".into()))?;
        }
    }
}

impl Future for TileFuture {
    type Output = Result<Encoded, Error>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.shared.slot.lock() {
            Err(_) => Poll::Ready(Err(Error::Pool("poisoned".into()))),
            Ok(mut g) => match g.value.take() {
                Some(v) => Poll::Ready(v),
                None => {
                    g.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            },
        }
    }
}

fn fulfil(shared: &Shared, v: Result<Encoded, Error>) {
    if let Ok(mut g) = shared.slot.lock() {
        g.value = Some(v);
        if let Some(w) = g.waker.take() {
            w.wake();
        }
        shared.cv.notify_all();
    }
}

struct Job {
    path: PathBuf,
    tile: TileId,
    opts: RenderOptions,
    format: Format,
    reply: Arc<Shared>,
}

/// N worker threads, each with its own open datasets (LRU of `max_open` per thread).
#[derive(Debug)]
pub struct TilePool {
    tx: Option<mpsc::SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl TilePool {
    /// `threads` renderers, `max_open` datasets kept open per thread, and at most
    /// `max_queued` tiles waiting: beyond that [`TilePool::submit`] answers
    /// [`Error::Busy`] at once, so a burst of requests cannot pile up unbounded work.
    pub fn new(threads: usize, max_open: usize, max_queued: usize) -> Result<Self, Error> {
        let (tx, rx) = mpsc::sync_channel::<Job>(max_queued.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(threads.max(1));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let h = std::thread::Builder::new()
                .name(format!("tile-render-{i}"))
                .spawn(move || worker(&rx, max_open.max(1)))
                .map_err(|e| Error::Pool(e.to_string()))?;
            workers.push(h);
        }
        Ok(Self {
            tx: Some(tx),
            workers,
        })
    }

    /// Queues a tile; never blocks. A full queue resolves the future to
    /// [`Error::Busy`]; a job whose future was dropped before a worker took it is
    /// skipped (a map client cancels tiles it panned away from).
    pub fn submit(
        &self,
        path: impl Into<PathBuf>,
        tile: TileId,
        opts: RenderOptions,
        format: Format,
    ) -> TileFuture {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                value: None,
                waker: None,
            }),
            cv: Condvar::new(),
        });
        let job = Job {
            path: path.into(),
            tile,
            opts,
            format,
            reply: Arc::clone(&shared),
        };
        match &self.tx {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => {}
                Err(mpsc::TrySendError::Full(job)) => fulfil(&job.reply, Err(Error::Busy)),
                Err(mpsc::TrySendError::Disconnected(job)) => {
                    fulfil(&job.reply, Err(Error::Pool("workers gone".into())));
                }
            },
            None => fulfil(&shared, Err(Error::Pool("pool closed".into()))),
        }
        TileFuture { shared }
    }
}

impl Drop for TilePool {
    fn drop(&mut self) {
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(rx: &Mutex<mpsc::Receiver<Job>>, max_open: usize) {
    let mut cache: VecDeque<(PathBuf, TileSource)> = VecDeque::new();
    loop {
        let job = match rx.lock() {
            Ok(g) => match g.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
            Err(_) => return,
        };
        // Nobody waits for it any more (the future was dropped): skip the work.
        if Arc::strong_count(&job.reply) == 1 {
            continue;
        }
        let pos = cache.iter().position(|(p, _)| *p == job.path);
        let res = match pos {
            Some(i) => {
                if let Some(e) = cache.remove(i) {
                    cache.push_front(e);
                }
                Ok(())
            }
            None => TileSource::open(&job.path).map(|s| {
                cache.push_front((job.path.clone(), s));
                cache.truncate(max_open);
            }),
        };
        let out = res.and_then(|()| match cache.front() {
            Some((_, src)) => src.render_encoded(&job.tile, &job.opts, job.format),
            None => Err(Error::Pool("cache empty".into())),
        });
        fulfil(&job.reply, out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn normalized_difference_parses_and_computes() {
        let nd = Expression::NormalizedDifference { a: 2, b: 1 };
        for ok in ["(b2-b1)/(b2+b1)", "( B2 - B1 ) / ( B1 + B2 )"] {
            assert_eq!(Expression::parse(ok), Some(nd), "{ok}");
        }
        assert_eq!(Expression::parse(&nd.text()), Some(nd));
        for bad in [
            "b2-b1",
            "(b2-b1)/(b2+b3)",
            "(b1-b1)/(b1+b1)",
            "(b0-b1)/(b0+b1)",
            "",
        ] {
            assert_eq!(Expression::parse(bad), None, "{bad}");
        }
        let mut raw = RawTile::new(2);
        raw.vals[0][0] = 3.0;
        raw.vals[1][0] = 1.0;
        raw.valid[0] = true;
        // Both zero: no value; invalid source pixel: no value.
        raw.valid[1] = true;
        raw.vals[0][2] = 5.0;
        let out = apply_expression(&raw, &nd).unwrap();
        assert_eq!(out.vals.len(), 1);
        assert!((out.vals[0][0] - 0.5).abs() < 1e-6);
        assert_eq!(&out.valid[..3], &[true, false, false]);
    }
}
