//! GCP swath → regular EPSG:4326 grid, with GDAL's warper.
//!
//! Mechanism: `GDALWarp()` (the in-process library form of `gdalwarp`, see
//! `gdal_ffi.rs`) with `-tps -t_srs EPSG:4326` (or `-geoloc`, see
//! [`GcpTransform::GeolocationArrays`]). It
//! 1. builds a GenImgProj transformer from the source GCPs with the
//!    thin-plate-spline method (`METHOD=GCP_TPS`), which passes exactly
//!    through every GCP — a global polynomial cannot follow the
//!    scan geometry over a 2800 km swath (pixel size grows ~3× towards the
//!    edges and the edges curve) — but between GCPs 56 columns apart it
//!    departs from the MSU-MR scan model by up to ≈2.5 source pixels near
//!    the swath edges, where geolocation arrays stay within ≈0.02 px;
//! 2. computes the output extent and pixel size from that transformer
//!    (`GDALSuggestedWarpOutput2`), unless a resolution is imposed;
//! 3. creates the output with destination nodata, initialises it to nodata
//!    (`INIT_DEST=NO_DATA`) and warps in chunks with the chosen kernel,
//!    treating source nodata per band (`UNIFIED_SRC_NODATA=NO`);
//! 4. copies dataset metadata and band descriptions to the output.
//!
//! Behaviour worth knowing:
//! * the suggested pixel size keeps the source pixel count along the
//!   output diagonal (~0.016° for a 200-line pass, ~0.013° for 1600
//!   lines), coarser than the 1 km nadir pixel; impose `resolution_deg`
//!   (e.g. 0.01) for a fixed grid;
//! * when the output pixel is larger than the source pixel, GDAL widens the
//!   bilinear/cubic kernel, so gaps narrower than about one output pixel
//!   (a few lost lines) are bridged by valid neighbours; use
//!   [`Resampling::Nearest`] or a finer grid to keep them as nodata;
//! * cost: ~3 s for a 1568×1600 swath with 975 TPS GCPs, ~1.7–1.9 s with
//!   255 (one GCP row every 100 lines), ~1.5 s with a cubic polynomial, on
//!   a shared 2-core machine. A TPS with 1596 GCPs (what the daemon writes
//!   for 200 lines) takes ~5 s in `gdalwarp -tps`; geolocation arrays
//!   (every 4 columns × 8 lines) warp 200 lines in ~0.6 s with `-et 0.125`,
//!   about the cost of the former 406-GCP TPS warp at `-et 0.5`.
//!
//! Doc: <https://gdal.org/programs/gdalwarp.html>,
//! <https://gdal.org/api/gdal_alg.html> (GDALCreateGenImgProjTransformer2).

use crate::Error;
use std::path::Path;

use gdal::{Dataset, Metadata};

use super::atomic::TempOutput;
use super::gdal_ffi::gdal_warp;
use super::{path_str, GdalContext, Result};

/// Resampling kernel of the warp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Resampling {
    /// Nearest neighbour: keeps original counts (good for classification).
    Nearest,
    /// Bilinear (default): smooth, never overshoots, so valid Byte values
    /// (≥ 1) can never become the nodata value 0.
    #[default]
    Bilinear,
    /// Cubic convolution: sharper; may overshoot at edges (GDAL clamps to
    /// the Byte range).
    Cubic,
}

impl Resampling {
    fn gdal_name(self) -> &'static str {
        match self {
            Self::Nearest => "near",
            Self::Bilinear => "bilinear",
            Self::Cubic => "cubic",
        }
    }
}

/// How GCPs become a pixel ↔ lat/lon transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GcpTransform {
    /// Thin plate spline through all GCPs (default). Cost grows with the
    /// cube of the GCP count at set-up (dense solve): keep it to a few
    /// hundred / ~1000 GCPs.
    #[default]
    ThinPlateSpline,
    /// Least-squares polynomial of order 1..=3 — only for short, narrow
    /// scenes; poor over a full MSU-MR swath.
    Polynomial(u8),
    /// The source's `GEOLOCATION` arrays (`-geoloc`, `METHOD=GEOLOC_ARRAY`),
    /// see [`super::write_raw_gcp_tiff_with_geolocation`]: bilinear
    /// interpolation between per-pixel samples, exact to the scan model
    /// where the GCP spline is not (swath edges); cost linear in the pass
    /// length.
    GeolocationArrays,
}

/// Options of [`warp_to_epsg4326`].
#[derive(Debug, Clone, PartialEq)]
pub struct WarpOptions {
    /// Output pixel size in degrees (both axes). `None`: GDAL's suggested
    /// size, which keeps roughly the source pixel count along the diagonal.
    pub resolution_deg: Option<f64>,
    /// Align the grid on multiples of the resolution (`-tap`), so products
    /// of different passes share pixel boundaries. Needs `resolution_deg`.
    pub target_aligned_pixels: bool,
    /// Resampling kernel.
    pub resampling: Resampling,
    /// GCP transform.
    pub transform: GcpTransform,
    /// Max error (output pixels) of the approximating transformer (`-et`);
    /// 0 evaluates the exact transform at every pixel (slow with TPS).
    pub error_threshold_px: f64,
    /// Warp worker threads (`-multi -wo NUM_THREADS=n`); `None` = 1.
    pub threads: Option<usize>,
    /// Warp working memory in MiB (`-wm`).
    pub memory_mb: u32,
}

impl Default for WarpOptions {
    fn default() -> Self {
        Self {
            resolution_deg: None,
            target_aligned_pixels: false,
            resampling: Resampling::Bilinear,
            transform: GcpTransform::ThinPlateSpline,
            error_threshold_px: 0.125,
            threads: None,
            memory_mb: 256,
        }
    }
}

/// Warps a GCP dataset (e.g. from [`super::write_raw_gcp_tiff`]) onto a
/// regular EPSG:4326 grid, written as a GeoTIFF at `dst` (tiled 256×256,
/// DEFLATE + predictor 2, BIGTIFF=IF_SAFER) via a temporary file and an
/// atomic rename. Returns the output, reopened read-only.
///
/// Nodata: the source bands' nodata (0 for our raw products) is used as
/// both source and destination nodata; without source nodata the output
/// still uses 0 for "outside the swath".
pub fn warp_to_epsg4326(src: &Dataset, dst: &Path, opts: &WarpOptions) -> Result<Dataset> {
    let tmp = TempOutput::new(dst)?;
    let mut args = build_args(src, opts)?;
    for (k, v) in [
        ("TILED", "YES"),
        ("BLOCKXSIZE", "256"),
        ("BLOCKYSIZE", "256"),
        ("COMPRESS", "DEFLATE"),
        ("PREDICTOR", "2"),
        ("BIGTIFF", "IF_SAFER"),
    ] {
        args.push("-co".into());
        args.push(format!("{k}={v}"));
    }
    args.push("-of".into());
    args.push("GTiff".into());
    let out = gdal_warp(src, path_str(tmp.path())?, &args)?;
    out.close()
        .ctx(|| format!("closing warped {}", dst.display()))?;
    tmp.commit()?;
    Dataset::open(dst).ctx(|| format!("reopening {}", dst.display()))
}

/// As [`warp_to_epsg4326`] but into an in-memory (`MEM`) dataset, for
/// products derived straight away (COG, NDVI, composites).
pub fn warp_to_epsg4326_mem(src: &Dataset, opts: &WarpOptions) -> Result<Dataset> {
    let mut args = build_args(src, opts)?;
    args.push("-of".into());
    args.push("MEM".into());
    gdal_warp(src, "", &args)
}

/// Path convenience: opens `src` and calls [`warp_to_epsg4326`].
pub fn warp_file_to_epsg4326(src: &Path, dst: &Path, opts: &WarpOptions) -> Result<Dataset> {
    let ds = Dataset::open(src).ctx(|| format!("opening {}", src.display()))?;
    warp_to_epsg4326(&ds, dst, opts)
}

fn build_args(src: &Dataset, opts: &WarpOptions) -> Result<Vec<String>> {
    let gcp_count = src.gcps().len();
    let (needed, name, method_flag) = match opts.transform {
        GcpTransform::GeolocationArrays => {
            if src.metadata_domain("GEOLOCATION").is_none() {
                return Err(Error::Dataset("source has no GEOLOCATION metadata".into()));
            }
            (0, "geolocation array", vec!["-geoloc".to_owned()])
        }
        GcpTransform::ThinPlateSpline => (3, "thin plate spline", vec!["-tps".to_owned()]),
        GcpTransform::Polynomial(order @ 1..=3) => {
            let o = usize::from(order);
            (
                (o + 1) * (o + 2) / 2,
                "polynomial",
                vec!["-order".to_owned(), order.to_string()],
            )
        }
        GcpTransform::Polynomial(order) => {
            return Err(Error::InvalidParameter {
                name: "polynomial order",
                reason: format!("{order} not in 1..=3"),
            })
        }
    };
    if gcp_count < needed {
        return Err(Error::TooFewGcps {
            count: gcp_count,
            needed,
            transform: name,
        });
    }
    if src.raster_count() == 0 {
        return Err(Error::Dataset("source has no raster bands".into()));
    }

    let mut args: Vec<String> = vec!["-t_srs".into(), "EPSG:4326".into()];
    args.extend(method_flag);
    args.extend(["-r".into(), opts.resampling.gdal_name().into()]);

    let nodata: Vec<Option<f64>> = src
        .rasterbands()
        .map(|b| b.map(|b| b.no_data_value()))
        .collect::<std::result::Result<_, _>>()
        .ctx(|| "reading source nodata".into())?;
    let src_nodata: Option<Vec<f64>> = nodata.into_iter().collect();
    match src_nodata {
        Some(values) => {
            let list = values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            args.extend(["-srcnodata".into(), list.clone(), "-dstnodata".into(), list]);
        }
        None => args.extend(["-dstnodata".into(), "0".into()]),
    }
    args.extend([
        "-wo".into(),
        "INIT_DEST=NO_DATA".into(),
        "-wo".into(),
        "UNIFIED_SRC_NODATA=NO".into(),
    ]);

    if let Some(res) = opts.resolution_deg {
        if !(res.is_finite() && res > 0.0 && res < 10.0) {
            return Err(Error::InvalidParameter {
                name: "resolution_deg",
                reason: format!("{res} not in (0, 10)"),
            });
        }
        args.extend(["-tr".into(), res.to_string(), res.to_string()]);
        if opts.target_aligned_pixels {
            args.push("-tap".into());
        }
    } else if opts.target_aligned_pixels {
        return Err(Error::InvalidParameter {
            name: "target_aligned_pixels",
            reason: "requires resolution_deg".into(),
        });
    }
    if !(opts.error_threshold_px.is_finite() && opts.error_threshold_px >= 0.0) {
        return Err(Error::InvalidParameter {
            name: "error_threshold_px",
            reason: format!("{} must be >= 0", opts.error_threshold_px),
        });
    }
    args.extend(["-et".into(), opts.error_threshold_px.to_string()]);
    args.extend(["-wm".into(), opts.memory_mb.max(16).to_string()]);
    if let Some(n) = opts.threads {
        if n > 1 {
            args.extend(["-multi".into(), "-wo".into(), format!("NUM_THREADS={n}")]);
        }
    }
    Ok(args)
}
