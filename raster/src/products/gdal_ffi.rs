//! Minimal `unsafe` bridge to GDAL C functions the `gdal` 0.19 crate does
//! not wrap. This is the only file of the products module allowed to use
//! `unsafe`.
//!
//! Wrapped: `GDALWarp()` — the library entry point behind the `gdalwarp`
//! program (gdal_utils.h, "GDALWarp", available since GDAL 2.1), called
//! in-process; plus reading the thread-local CPL error message.
//!
//! Why not `gdal::raster::reproject`: it calls `GDALReprojectImage()`, which
//! builds its transformer with GCP use *disabled* and offers no choice of
//! transformer, output extent or warp options, so it cannot warp a
//! GCP-only swath at all, let alone with a thin-plate spline.
//!
//! Ownership rules enforced here:
//! * the `GDALWarpAppOptions*` is owned by [`WarpAppOptions`] and freed in
//!   its `Drop` on every path;
//! * the source dataset handle is only *borrowed* for the duration of the
//!   call (GDALWarp neither closes nor retains it for non-VRT outputs, and
//!   the callers never request VRT output — see [`gdal_warp`]);
//! * the returned dataset handle is new and exclusively ours; it is handed
//!   to `gdal::Dataset`, whose `Drop` calls `GDALClose()`.
#![allow(unsafe_code)]

use crate::Error;
use std::ffi::{c_int, CStr, CString};
use std::ptr;

use gdal::cpl::CslStringList;
use gdal::Dataset;

use super::{GdalContext, Result};

/// Owner of a `GDALWarpAppOptions*`.
struct WarpAppOptions(ptr::NonNull<gdal_sys::GDALWarpAppOptions>);

impl Drop for WarpAppOptions {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful GDALWarpAppOptionsNew()
        // (non-null, checked) and is freed exactly once, here.
        unsafe { gdal_sys::GDALWarpAppOptionsFree(self.0.as_ptr()) }
    }
}

/// Clears the calling thread's CPL error state.
fn reset_cpl_error() {
    // SAFETY: no arguments; touches only GDAL's thread-local error state.
    unsafe { gdal_sys::CPLErrorReset() }
}

/// Copy of the calling thread's last CPL error message, or `fallback` when
/// GDAL recorded none.
fn last_cpl_error(fallback: &str) -> String {
    // SAFETY: CPLGetLastErrorMsg() never returns NULL per its contract, but
    // we check anyway; the string is thread-local and valid until the next
    // CPL call on this thread, and we copy it out immediately.
    let p = unsafe { gdal_sys::CPLGetLastErrorMsg() };
    let msg = if p.is_null() {
        String::new()
    } else {
        // SAFETY: `p` is non-null and points to GDAL's NUL-terminated thread-local message,
        // valid until the next CPL call on this thread; it is copied out at once.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    };
    if msg.is_empty() {
        fallback.to_owned()
    } else {
        msg
    }
}

/// Runs `GDALWarp()` on one source dataset with `gdalwarp`-style `args`
/// (e.g. `["-t_srs", "EPSG:4326", "-tps", "-of", "GTiff"]`), creating the
/// new dataset `dest` (a file path, or `""` for `-of MEM`).
///
/// `args` must not select the VRT format (the result would keep a pointer
/// to `src`, which could then be dropped first); this is checked.
pub(crate) fn gdal_warp(src: &Dataset, dest: &str, args: &[String]) -> Result<Dataset> {
    if args
        .windows(2)
        .any(|w| matches!(w, [flag, fmt] if flag == "-of" && fmt.eq_ignore_ascii_case("VRT")))
    {
        return Err(Error::InvalidParameter {
            name: "warp output format",
            reason: "VRT output would borrow the source dataset".into(),
        });
    }
    let mut argv = CslStringList::new();
    for arg in args {
        argv.add_string(arg)
            .ctx(|| format!("passing warp argument {arg:?}"))?;
    }
    let c_dest = CString::new(dest).map_err(|_| Error::BadPath(dest.into()))?;

    reset_cpl_error();
    // SAFETY: `argv.as_ptr()` is a NULL-terminated CSL list (or NULL when
    // empty, which GDAL accepts) owned by `argv`, alive for the whole call;
    // GDALWarpAppOptionsNew only reads it (the `char**` type is historical)
    // and copies what it keeps. The second argument may be NULL (it is only
    // used by the gdalwarp binary).
    let raw_opts = unsafe { gdal_sys::GDALWarpAppOptionsNew(argv.as_ptr(), ptr::null_mut()) };
    let opts = match ptr::NonNull::new(raw_opts) {
        Some(p) => WarpAppOptions(p),
        None => {
            return Err(Error::GdalCall {
                call: "GDALWarpAppOptionsNew",
                message: last_cpl_error("invalid warp arguments"),
            })
        }
    };

    let mut src_handles = [src.c_dataset()];
    let mut usage_error: c_int = 0;
    reset_cpl_error();
    // SAFETY:
    // * `c_dest` is a valid NUL-terminated string alive for the call;
    // * hDstDS = NULL asks GDALWarp to create a new dataset named `c_dest`;
    // * `src_handles` is a 1-element array holding a valid open dataset
    //   handle borrowed from `src`, which outlives the call; `&Dataset`
    //   being !Sync guarantees no other thread uses it concurrently;
    //   GDALWarp does not close it nor (non-VRT output, checked above)
    //   keep it;
    // * `opts` is non-null and valid until dropped after this call;
    // * `usage_error` is a valid `int*` out-parameter.
    let handle = unsafe {
        gdal_sys::GDALWarp(
            c_dest.as_ptr(),
            ptr::null_mut(),
            1,
            src_handles.as_mut_ptr(),
            opts.0.as_ptr(),
            &mut usage_error,
        )
    };
    drop(opts);
    if handle.is_null() {
        return Err(Error::GdalCall {
            call: "GDALWarp",
            message: last_cpl_error(if usage_error != 0 {
                "usage error in warp arguments"
            } else {
                "warp failed without a message"
            }),
        });
    }
    // SAFETY: `handle` is a non-null dataset handle freshly created by
    // GDALWarp and owned by nobody else; `Dataset` takes ownership and
    // calls GDALClose() exactly once when dropped.
    let ds = unsafe { Dataset::from_c_dataset(handle) };
    if usage_error != 0 {
        // Should not happen with a non-null result; `ds` is closed on return.
        return Err(Error::GdalCall {
            call: "GDALWarp",
            message: last_cpl_error("usage error in warp arguments"),
        });
    }
    Ok(ds)
}

/// Runs `GDALPolygonize()` (gdal_alg.h): one polygon per 8-connected (or 4-connected) region of
/// equal pixel value in `band` where `mask` is non-zero, written to `layer` with the pixel
/// value in its field number `field`.
pub(crate) fn polygonize<L: gdal::vector::LayerAccess>(
    band: &gdal::raster::RasterBand<'_>,
    mask: &gdal::raster::RasterBand<'_>,
    layer: &L,
    field: c_int,
    eight_connected: bool,
) -> Result<()> {
    let mut opts = CslStringList::new();
    if eight_connected {
        opts.set_name_value("8CONNECTED", "8")
            .ctx(|| "polygonize options".into())?;
    }
    // SAFETY: the handle is borrowed from a live band that outlives its use below.
    let h_band = unsafe { band.c_rasterband() };
    // SAFETY: as above, for the mask band.
    let h_mask = unsafe { mask.c_rasterband() };
    // SAFETY: as above, for the layer.
    let h_layer = unsafe { layer.c_layer() };
    reset_cpl_error();
    // SAFETY: the band, mask and layer handles are borrowed from live `gdal` objects that
    // outlive the call (their owners are borrowed for it, and `!Sync` keeps other threads
    // away); `opts` is a valid CSL list owned for the call; a NULL progress function and
    // argument are accepted by GDAL. GDALPolygonize neither closes nor keeps the handles.
    let err = unsafe {
        gdal_sys::GDALPolygonize(
            h_band,
            h_mask,
            h_layer,
            field,
            opts.as_ptr(),
            None,
            ptr::null_mut(),
        )
    };
    if err != gdal_sys::CPLErr::CE_None {
        return Err(Error::GdalCall {
            call: "GDALPolygonize",
            message: last_cpl_error("polygonize failed"),
        });
    }
    Ok(())
}
