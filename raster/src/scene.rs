//! Scene products from an imaging instrument's packets: the chain behind `downlink image` and
//! the daemon's LOS step.
//!
//! packets → MSU-MR swath images (nodata where packets are missing) → per-line UTC times →
//! SGP4 + scan geometry → geolocation arrays (`geolocation.tif`) and a GCP grid (columns dense
//! toward the swath edges) → raw swath PNG + GCP GeoTIFF per channel → one warp of all channels
//! to EPSG:4326 through the geolocation arrays → geolocation QA against the land mask →
//! per-channel analytic COG, RGB composite COG, count-NDVI COG, thumbnail, `products.json`.
//!
//! Everything runs on the calling thread: GDAL datasets are `Send` but not `Sync`, so one thread
//! owns them from creation to drop. The daemon calls this from a dedicated worker thread.

use crate::Error;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::catalog::item::SunAngles;
use crate::landmask::LandMask;
use crate::products::{self as prod, Band, CogOptions, GcpTransform, RasterFormat, WarpOptions};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use decoder::profile::ImagingSpec;
use decoder::{Decoder, DecoderOptions, Event, InputFormat, Profile, Stats};
use imagery::geoloc::{
    expand_row_times, interpolate_line_times, Geolocator, ScanGeometry, LRPT_LINES_PER_ROW,
    MSU_MR_LINE_PERIOD_S,
};
use imagery::msumr::{AssembledImage, Assembler};
use imagery::orbit::{Propagator, UtcTime};
use imagery::qa::{estimate_offset, EstimatorParams, OffsetReport};
use imagery::time::DayClock;
use imagery::tle::{TleRecord, TleSet};
use serde::Serialize;

type Result<T, E = Error> = std::result::Result<T, E>;

fn product_err(step: impl Into<String>) -> impl FnOnce(Error) -> Error {
    let step = step.into();
    move |source| Error::Step {
        step,
        source: Box::new(source),
    }
}

/// How the instrument's time of day becomes a UTC instant.
#[derive(Clone, Copy, Debug)]
pub enum PassDate {
    /// The UTC date of the first image line (`--date`).
    Date(NaiveDate),
    /// An instant near the pass, such as the daemon's clock at AOS.
    Near(DateTime<Utc>),
}

/// Image packets (in arrival order) and the link-layer counters of the decode that produced
/// them.
pub struct PassPackets {
    /// Packets on the instrument's APIDs, whole (primary header included).
    pub packets: Vec<Bytes>,
    /// Link-layer counters of the decode.
    pub stats: Stats,
}

/// Decodes files (one continuous stream) and keeps the packets of the profile's imaging APIDs.
pub fn collect_packets(
    profile: &Profile,
    format: InputFormat,
    files: &[PathBuf],
) -> Result<PassPackets> {
    let mut inputs = Vec::with_capacity(files.len());
    for path in files {
        let f = std::fs::File::open(path).map_err(|source| Error::Io {
            context: "reading",
            path: path.clone(),
            source,
        })?;
        inputs.push((path.clone(), f));
    }
    collect(profile, format, inputs)
}

/// As [`collect_packets`], from one reader (e.g. an archived pass read through its indexes or
/// references); `what` names it in errors.
pub fn collect_packets_from(
    profile: &Profile,
    format: InputFormat,
    input: impl std::io::Read,
    what: &Path,
) -> Result<PassPackets> {
    collect(profile, format, [(what.to_owned(), input)])
}

fn collect<R: std::io::Read>(
    profile: &Profile,
    format: InputFormat,
    inputs: impl IntoIterator<Item = (PathBuf, R)>,
) -> Result<PassPackets> {
    let spec = profile
        .imaging
        .as_ref()
        .ok_or_else(|| Error::NoInstrument(profile.name.clone()))?;
    let wanted: Vec<u16> = spec.channels.iter().map(|c| c.apid).collect();
    let options = DecoderOptions {
        raw_cadus: false,
        frames: false,
        fill_frames: false,
        packets: true,
    };
    let mut dec = Decoder::new(profile, format, options)?;
    let mut packets = Vec::new();
    let mut keep = |dec: &mut Decoder| {
        while let Some(ev) = dec.poll() {
            if let Event::Packet { packet, .. } = ev {
                if wanted.contains(&packet.apid()) {
                    packets.push(packet.data);
                }
            }
        }
    };
    let mut buf = vec![0u8; 1 << 20];
    for (path, mut f) in inputs {
        let io = |source| Error::Io {
            context: "reading",
            path: path.clone(),
            source,
        };
        loop {
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            dec.push(buf.get(..n).unwrap_or_default());
            keep(&mut dec);
        }
    }
    dec.finish();
    keep(&mut dec);
    Ok(PassPackets {
        packets,
        stats: dec.stats(),
    })
}

/// Reads TLE files and picks the set for `norad_id` whose epoch is nearest `near` (any set for
/// it when `near` is unknown).
pub fn choose_tle(
    files: &[PathBuf],
    norad_id: u32,
    near: Option<DateTime<Utc>>,
) -> Result<TleRecord> {
    let mut best: Option<(i64, TleRecord)> = None;
    let mut seen = 0usize;
    let mut problems = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Tle {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let (set, errors) = TleSet::parse_lenient(&text);
        problems.extend(errors.iter().map(|e| format!("{}: {e}", path.display())));
        if set.is_empty() {
            let message = errors
                .first()
                .map_or_else(|| "no TLE in the file".to_owned(), ToString::to_string);
            return Err(Error::Tle {
                path: path.clone(),
                message,
            });
        }
        for rec in set.records() {
            seen += 1;
            if rec.norad_id != u64::from(norad_id) {
                continue;
            }
            let epoch_us = tle_epoch(rec).map_or(0, UtcTime::unix_micros);
            let distance = near.map_or(0, |n| (n.timestamp_micros() - epoch_us).abs());
            if best.as_ref().is_none_or(|(d, _)| distance < *d) {
                best = Some((distance, rec.clone()));
            }
        }
    }
    best.map(|(_, r)| r).ok_or_else(|| Error::NoTle {
        norad_id,
        detail: if problems.is_empty() {
            format!(
                "{seen} sets in {} file(s), none for this spacecraft",
                files.len()
            )
        } else {
            format!(
                "{seen} valid sets in {} file(s), none for this spacecraft; rejected: {}",
                files.len(),
                problems.join("; ")
            )
        },
    })
}

/// A TLE whose epoch is further than this from the pass is used, with a warning in the
/// products listing (`tle.warning`) and the log: SGP4 errors grow by kilometres a day.
pub const TLE_MAX_AGE_DAYS: f64 = 14.0;

/// The warning for a TLE `age_hours` from the pass (positive: epoch before the pass), if stale.
fn stale_tle_warning(age_hours: f64) -> Option<String> {
    let days = age_hours / 24.0;
    (days.abs() > TLE_MAX_AGE_DAYS).then(|| {
        format!(
            "TLE epoch is {:.0} days {} the pass (more than {TLE_MAX_AGE_DAYS:.0}): geolocation \
             may be off by many kilometres; import a newer set with `downlink tle import`",
            days.abs(),
            if days >= 0.0 { "before" } else { "after" }
        )
    })
}

fn tle_epoch(rec: &TleRecord) -> Option<UtcTime> {
    Propagator::new(&rec.elements).ok().map(|p| p.epoch())
}

/// What to make and where.
pub struct ImageRequest<'a> {
    /// The spacecraft profile (must have `[imaging]`).
    pub profile: &'a Profile,
    /// Packets and link counters.
    pub pass: &'a PassPackets,
    /// The spacecraft's TLE.
    pub tle: &'a TleRecord,
    /// Date source for the instrument's time of day.
    pub date: PassDate,
    /// Output directory (created).
    pub out_dir: &'a Path,
    /// Pass id recorded in every product (provenance).
    pub pass_id: &'a str,
    /// Land/sea mask for the geolocation check; `None` = no check.
    pub landmask: Option<&'a Path>,
}

/// One file written.
#[derive(Clone, Debug, Serialize)]
pub struct Product {
    /// `raw_png`, `raw_gcp_tiff`, `raw_composite_png`, `analytic`, `composite`, `ndvi`,
    /// `thumbnail`, `geolocation` (the geolocation arrays the raw GeoTIFFs reference).
    pub kind: &'static str,
    /// Channel APID for per-channel products.
    pub apid: Option<u16>,
    /// Channel name (`"1"` …) for per-channel products.
    pub channel: Option<String>,
    /// Where it is.
    pub path: PathBuf,
    /// Its media type.
    pub media_type: &'static str,
    /// Size in bytes.
    pub bytes: u64,
}

/// The geolocation check of one raster.
#[derive(Clone, Debug, Serialize)]
pub struct GeolocationQa {
    /// Channel (APID) the estimate was made on.
    pub apid: u16,
    /// Image features lie this far east of where the land mask puts them (km); `None` = no
    /// estimate (too little coastline, or no clear peak).
    pub offset_east_km: Option<f64>,
    /// … and this far north (km).
    pub offset_north_km: Option<f64>,
    /// Length of the offset vector (km).
    pub offset_km: Option<f64>,
    /// 0 (no information) … 1 (sharp, unambiguous peak over a long coastline).
    pub confidence: f64,
    /// `confidence` ≥ 0.5: the offset can be trusted. Below that the coast is not visible
    /// enough (clouds, night, little land) and the offset is only the best of weak guesses.
    pub reliable: bool,
    /// Normalized cross-correlation at the peak.
    pub peak_ncc: f64,
    /// Coastline length inside valid pixels (km).
    pub coastline_km: f64,
    /// The peak lies on the edge of the search window: the true offset may be larger.
    pub at_search_edge: bool,
    /// Estimator.
    pub method: &'static str,
    /// Reference data set.
    pub reference: String,
}

/// The listing `downlink image` prints and writes as `products.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Listing {
    /// Pass id (provenance).
    pub pass_id: String,
    /// Spacecraft name.
    pub spacecraft: String,
    /// NORAD id.
    pub norad_id: u32,
    /// Instrument.
    pub instrument: String,
    /// First and last image line (UTC, RFC 3339).
    pub start: Option<String>,
    /// Last image line.
    pub end: Option<String>,
    /// Image lines (swath geometry).
    pub lines: usize,
    /// Channels present.
    pub channels: Vec<u16>,
    /// TLE used: epoch and its distance from the first line.
    pub tle: serde_json::Value,
    /// Sub-satellite point at the first image line.
    pub subsatellite_first: Option<serde_json::Value>,
    /// The Sun at the middle of the swath at mid-pass (STAC `view:sun_elevation` /
    /// `view:sun_azimuth`).
    pub sun: Option<SunAngles>,
    /// EPSG:4326 bounds of the warped products `[west, south, east, north]`.
    pub bbox: Option<[f64; 4]>,
    /// Outline of the swath (lon, lat), from the border of the GCP grid: the first line, the
    /// last column, the last line and the first column. Longitudes may wrap at ±180°.
    pub footprint: Vec<[f64; 2]>,
    /// Geolocation check per channel, best first.
    pub geolocation_qa: Vec<GeolocationQa>,
    /// Link quality: decoder counters and per-channel image packet counters.
    pub link_quality: serde_json::Value,
    /// Files written.
    pub products: Vec<Product>,
    /// Milliseconds per step.
    pub timing_ms: BTreeMap<&'static str, u64>,
}

/// Solar elevation and azimuth at the GCP nearest the middle of the image (middle column,
/// middle line) at the time halfway between the first and the last line.
fn sun_at_mid_pass(
    first: Option<UtcTime>,
    last: Option<UtcTime>,
    gcps: &[prod::Gcp],
) -> Option<SunAngles> {
    let (first, last) = (first?, last?);
    let mid_t = first.add_seconds(last.seconds_since(first) / 2.0);
    let (pmax, lmax) = gcps.iter().fold((0.0_f64, 0.0_f64), |(p, l), g| {
        (p.max(g.pixel), l.max(g.line))
    });
    let centre = gcps
        .iter()
        .filter(|g| g.lat.is_finite() && g.lon.is_finite())
        .min_by(|a, b| {
            let d = |g: &prod::Gcp| {
                (g.pixel - pmax / 2.0).abs() / pmax.max(1.0)
                    + (g.line - lmax / 2.0).abs() / lmax.max(1.0)
            };
            d(a).total_cmp(&d(b))
        })?;
    let s = imagery::sun::sun_position(mid_t, centre.lat, centre.lon);
    Some(SunAngles {
        elevation: (s.elevation_deg * 100.0).round() / 100.0,
        azimuth: ((s.azimuth_deg * 100.0).round() / 100.0).rem_euclid(360.0),
    })
}

/// The border of a GCP grid as one ring (lon, lat), counter-clockwise in image order: along
/// the first line, down the last column, back along the last line, up the first column.
fn swath_outline(gcps: &[prod::Gcp]) -> Vec<[f64; 2]> {
    let ok: Vec<&prod::Gcp> = gcps
        .iter()
        .filter(|g| g.lat.is_finite() && g.lon.is_finite())
        .collect();
    let (Some(l0), Some(l1), Some(p0), Some(p1)) = (
        ok.iter().map(|g| g.line).reduce(f64::min),
        ok.iter().map(|g| g.line).reduce(f64::max),
        ok.iter().map(|g| g.pixel).reduce(f64::min),
        ok.iter().map(|g| g.pixel).reduce(f64::max),
    ) else {
        return Vec::new();
    };
    if l0 >= l1 || p0 >= p1 {
        return Vec::new();
    }
    let side = |keep: &dyn Fn(&prod::Gcp) -> bool, key: &dyn Fn(&prod::Gcp) -> f64, rev: bool| {
        let mut v: Vec<&prod::Gcp> = ok.iter().copied().filter(|g| keep(g)).collect();
        v.sort_by(|a, b| key(a).total_cmp(&key(b)));
        if rev {
            v.reverse();
        }
        v.into_iter().map(|g| [g.lon, g.lat]).collect::<Vec<_>>()
    };
    let mut ring = side(&|g| g.line == l0, &|g| g.pixel, false);
    let down = side(&|g| g.pixel == p1, &|g| g.line, false);
    let back = side(&|g| g.line == l1, &|g| g.pixel, true);
    let up = side(&|g| g.pixel == p0, &|g| g.line, true);
    // Consecutive sides share their corner point.
    for s in [down, back, up] {
        ring.extend(s.into_iter().skip(1));
    }
    if ring.len() < 4 {
        return Vec::new();
    }
    ring
}

/// Step timer.
struct Steps {
    t: Instant,
    ms: BTreeMap<&'static str, u64>,
}

impl Steps {
    fn new() -> Self {
        Self {
            t: Instant::now(),
            ms: BTreeMap::new(),
        }
    }
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        *self.ms.entry(name).or_default() += now.duration_since(self.t).as_millis() as u64;
        self.t = now;
    }
}

/// Grid resolution of the warped products (≈ 1.1 km, the MSU-MR nadir pixel), aligned to
/// multiples of itself so passes overlay pixel for pixel.
const GRID_DEG: f64 = 0.01;
/// Geolocation arrays: one sample every 4 columns (bilinear interpolation between them
/// stays within ≈0.02 px of the scan model at the swath edges) and every 8 lines (one MCU
/// row; the model is linear in time along track).
const GEOLOC_PIXEL_STEP: usize = 4;
/// See [`GEOLOC_PIXEL_STEP`].
const GEOLOC_LINE_STEP: usize = 8;
/// GCP columns: at most 56 apart, closer where the scan curves so that linear
/// interpolation between them stays within this many pixels of the scan model (a
/// thin-plate spline through them then stays within ≈0.15 px, `tests/e2e_geoloc.rs`).
const GCP_TOLERANCE_PX: f64 = 0.05;
/// About how many GCPs the raw GeoTIFFs carry (1596 for the 200-line test pass).
const GCP_BUDGET: usize = 1600;
/// File name of the geolocation arrays beside the raw GeoTIFFs.
pub const GEOLOCATION_FILE: &str = "geolocation.tif";

/// How the swath is warped onto the analytic grid: through the geolocation arrays (exact
/// to the scan model), onto `GRID_DEG` aligned pixels, with GDAL's approximating
/// transformer held to 1/8 output pixel.
pub fn warp_options() -> WarpOptions {
    WarpOptions {
        resolution_deg: Some(GRID_DEG),
        target_aligned_pixels: true,
        transform: GcpTransform::GeolocationArrays,
        error_threshold_px: 0.125,
        ..WarpOptions::default()
    }
}

/// Largest shift the geolocation check looks for.
const QA_RADIUS_KM: f64 = 20.0;

/// Runs the whole chain. Returns the listing (also written as `products.json`). Each file
/// appears atomically in `req.out_dir` (temporary name, fsync, rename); for a set that appears
/// all at once, see [`make_products_in`].
pub fn make_products(req: &ImageRequest<'_>) -> Result<Listing> {
    make_products_in(req, req.out_dir)
}

/// Like [`make_products`], but writes the files into `work_dir` (created) while the listing
/// records them under `req.out_dir`: the daemon builds the set in a staging directory and
/// renames it onto `req.out_dir` once complete.
pub fn make_products_in(req: &ImageRequest<'_>, work_dir: &Path) -> Result<Listing> {
    let mut steps = Steps::new();
    let spec = req
        .profile
        .imaging
        .as_ref()
        .ok_or_else(|| Error::NoInstrument(req.profile.name.clone()))?;
    std::fs::create_dir_all(work_dir).map_err(|source| Error::Io {
        context: "creating",
        path: work_dir.to_owned(),
        source,
    })?;

    // 1. Swath images.
    let mut asm = Assembler::new();
    for p in &req.pass.packets {
        // Bad packets are counted by the assembler; they never stop the pass.
        let _ = asm.push_space_packet(p);
    }
    let img = asm.build();
    let channels: Vec<u16> = spec
        .channels
        .iter()
        .map(|c| c.apid)
        .filter(|a| img.channel(*a).is_some_and(|c| c.valid.iter().any(|v| *v)))
        .collect();
    if channels.is_empty() || img.height == 0 {
        return Err(Error::NoImage {
            instrument: spec.instrument.clone(),
            packets: req.pass.packets.len() as u64,
        });
    }
    steps.lap("decode_image");

    // 2. Line times and geolocation.
    let times = line_times(&img, req.date);
    let propagator =
        Propagator::new(&req.tle.elements).map_err(|e| Error::Geolocation(e.to_string()))?;
    let tle_epoch = propagator.epoch();
    let geo = Geolocator::new(propagator, ScanGeometry::MSU_MR_LRPT);
    let mid_time = times
        .iter()
        .flatten()
        .nth(times.iter().flatten().count() / 2);
    let gcp_columns = match mid_time {
        Some(t) => geo.scan_adaptive_columns(*t, 56, GCP_TOLERANCE_PX),
        None => Ok(Vec::new()),
    }
    .map_err(|e| Error::Geolocation(e.to_string()))?;
    // GCP rows: every 16 lines or sparser, so a thin-plate spline through all GCPs stays a
    // few seconds' solve for users (its cost grows with the cube of the count).
    let gcp_rows = (GCP_BUDGET / gcp_columns.len().max(1)).max(2);
    let step_lines = (img.height / gcp_rows).max(LRPT_LINES_PER_ROW * 2);
    let gcps = geo
        .gcp_grid_at_columns(&times, img.width, step_lines, &gcp_columns)
        .map_err(|e| Error::Geolocation(e.to_string()))?;
    let gcps: Vec<prod::Gcp> = gcps
        .iter()
        .map(|g| prod::Gcp {
            pixel: g.pixel,
            line: g.line,
            lat: g.lat_deg,
            lon: g.lon_deg,
        })
        .collect();
    let arrays = geo
        .geolocation_arrays(&times, img.width, GEOLOC_PIXEL_STEP, GEOLOC_LINE_STEP)
        .map_err(|e| Error::Geolocation(e.to_string()))?;
    let geolocation = prod::Geolocation {
        width: arrays.width,
        height: arrays.height,
        pixel_step: arrays.pixel_step,
        line_step: arrays.line_step,
        lon: &arrays.lon_deg,
        lat: &arrays.lat_deg,
    };
    let first = times.iter().flatten().next().copied();
    let last = times.iter().flatten().last().copied();
    let subsat = first.and_then(|t| geo.propagator().subsatellite_point(t).ok());
    steps.lap("geolocate");

    // Provenance on every product.
    let link = link_quality(&req.pass.stats, &img);
    let link_text = link.to_string();
    let start = first.map(rfc3339);
    let end = last.map(rfc3339);
    let tle_text = format!("{}\n{}", req.tle.line1, req.tle.line2);
    let base_meta: Vec<(&str, String)> = vec![
        ("DOWNLINK_PASS_ID", req.pass_id.to_owned()),
        ("DOWNLINK_SPACECRAFT", spec.spacecraft.clone()),
        ("DOWNLINK_NORAD_ID", spec.norad_id.to_string()),
        ("DOWNLINK_INSTRUMENT", spec.instrument.clone()),
        ("DOWNLINK_START", start.clone().unwrap_or_default()),
        ("DOWNLINK_END", end.clone().unwrap_or_default()),
        ("DOWNLINK_TLE", tle_text),
        ("DOWNLINK_LINK_QUALITY", link_text),
    ];
    let name_of = |apid: u16| {
        spec.channels
            .iter()
            .find(|c| c.apid == apid)
            .map_or_else(|| apid.to_string(), |c| c.name.clone())
    };
    let describe = |apid: u16| {
        spec.channels.iter().find(|c| c.apid == apid).map_or_else(
            || format!("APID {apid}"),
            |c| {
                format!(
                    "{} channel {} ({:.2}-{:.2} um)",
                    spec.instrument.to_uppercase(),
                    c.name,
                    c.center_um - c.fwhm_um / 2.0,
                    c.center_um + c.fwhm_um / 2.0
                )
            },
        )
    };
    let descriptions: BTreeMap<u16, String> = channels.iter().map(|a| (*a, describe(*a))).collect();
    let mut products = Vec::new();
    let out = |name: String| work_dir.join(name);
    let product = |kind, channel, written: PathBuf, media_type| {
        product(kind, channel, &written, req.out_dir, media_type)
    };

    // 3. Raw swath products per channel, georeferenced by GCPs and by the geolocation
    // arrays they share (referenced by file name, as GDAL resolves it from the directory).
    let arrays_path = out(GEOLOCATION_FILE.into());
    prod::write_geolocation_arrays(&arrays_path, &geolocation)
        .map_err(product_err("geolocation arrays"))?;
    products.push(product(
        "geolocation",
        None,
        arrays_path.clone(),
        "image/tiff; application=geotiff",
    ));
    let mut bands = Vec::new();
    for apid in &channels {
        let Some(ch) = img.channel(*apid) else {
            continue;
        };
        let ch_name = name_of(*apid);
        let png = out(format!("ch{ch_name}.raw.png"));
        prod::write_png_gray(&png, ch.width, ch.height, &ch.pixels, &ch.valid)
            .map_err(product_err(format!("raw PNG of APID {apid}")))?;
        products.push(product(
            "raw_png",
            Some((*apid, ch_name.clone())),
            png,
            "image/png",
        ));
        let desc = descriptions.get(apid).map_or("", String::as_str);
        let band = Band {
            pixels: &ch.pixels,
            valid: &ch.valid,
            description: desc,
        };
        let tif = out(format!("ch{ch_name}.gcp.tif"));
        let meta = with(&base_meta, &[("DOWNLINK_PRODUCT", "raw_gcp_tiff")]);
        prod::write_raw_gcp_tiff_with_geolocation(
            &tif,
            ch.width,
            ch.height,
            &[band],
            &gcps,
            Some((GEOLOCATION_FILE, &geolocation)),
            &as_refs(&meta),
        )
        .map_err(product_err(format!("raw GCP GeoTIFF of APID {apid}")))?;
        products.push(product(
            "raw_gcp_tiff",
            Some((*apid, ch_name)),
            tif,
            "image/tiff; application=geotiff",
        ));
        bands.push(band);
    }
    if let Some([r, g, b]) = composite_bands(spec, &channels) {
        if let Some(rgba) = img.to_rgba(r, g, b) {
            let png = out("composite.raw.png".into());
            prod::write_png_rgba(&png, img.width, img.height, &rgba)
                .map_err(product_err("raw composite PNG"))?;
            products.push(product("raw_composite_png", None, png, "image/png"));
        }
    }
    steps.lap("raw_products");

    // 4. One warp of all channels onto the EPSG:4326 grid.
    let all = out(".swath.gcp.tif".into());
    let arrays_ref = arrays_path.to_str().ok_or_else(|| Error::Step {
        step: "swath GeoTIFF".into(),
        source: Box::new(Error::BadPath(arrays_path.clone())),
    })?;
    prod::write_raw_gcp_tiff_with_geolocation(
        &all,
        img.width,
        img.height,
        &bands,
        &gcps,
        Some((arrays_ref, &geolocation)),
        &[],
    )
    .map_err(product_err("swath GCP GeoTIFF"))?;
    let warped = {
        let src = gdal::Dataset::open(&all).map_err(|e| Error::Gdal {
            context: format!("opening the swath {}", all.display()),
            source: e,
        })?;
        prod::warp_to_epsg4326_mem(&src, &warp_options())
            .map_err(product_err("warp to EPSG:4326"))?
    };
    let _ = std::fs::remove_file(&all);
    let (grid, grid_bands) =
        prod::read_grid_bands(&warped).map_err(product_err("reading the warped grid"))?;
    drop(warped);
    let gt = grid.geo_transform;
    let bbox = [
        gt[0],
        gt[3] + gt[5] * grid.height as f64,
        gt[0] + gt[1] * grid.width as f64,
        gt[3],
    ];
    steps.lap("warp");

    // 5. Geolocation QA per channel.
    let mut qa = Vec::new();
    if let Some(mask_path) = req.landmask {
        let mask = LandMask::open(mask_path).map_err(|e| Error::Step {
            step: "land mask".into(),
            source: Box::new(e),
        })?;
        let reference = mask
            .source()
            .map_or_else(|| mask_path.display().to_string(), str::to_owned);
        if let Ok(g) =
            imagery::qa::GeoGrid::new(gt[0], gt[1], gt[3], gt[5], grid.width, grid.height)
        {
            if let Ok(m) = mask.resample_to(&g) {
                for (apid, b) in channels.iter().zip(&grid_bands) {
                    let data: Vec<f32> = b
                        .pixels
                        .iter()
                        .zip(&b.valid)
                        .map(|(&p, &v)| if v { f32::from(p) } else { f32::NAN })
                        .collect();
                    let Ok(image) = imagery::qa::Grid::new(g, data) else {
                        continue;
                    };
                    if let Ok(r) = estimate_offset(&image, &m, &EstimatorParams::new(QA_RADIUS_KM))
                    {
                        qa.push(qa_record(*apid, &r, &reference));
                    }
                }
            }
        }
        qa.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    }
    steps.lap("geolocation_qa");

    // 6. Analytic COGs, composite, NDVI, thumbnail.
    let cog = RasterFormat::Cog(CogOptions::default());
    let qa_json = |apid: Option<u16>| {
        let pick = match apid {
            Some(a) => qa.iter().find(|q| q.apid == a),
            None => qa.first(),
        };
        pick.map_or_else(
            || {
                serde_json::json!({"status": if req.landmask.is_some() { "no estimate" } else { "no land mask configured" }})
                    .to_string()
            },
            |q| serde_json::to_string(q).unwrap_or_default(),
        )
    };
    for (apid, b) in channels.iter().zip(&grid_bands) {
        let ch_name = name_of(*apid);
        let path = out(format!("ch{ch_name}.tif"));
        let q = qa_json(Some(*apid));
        let meta = with(
            &base_meta,
            &[
                ("DOWNLINK_PRODUCT", "analytic"),
                ("DOWNLINK_GEOLOCATION_QA", &q),
            ],
        );
        prod::write_grid_band(&path, &grid, &b.as_band(), &as_refs(&meta), &cog)
            .map_err(product_err(format!("analytic COG of APID {apid}")))?;
        products.push(product(
            "analytic",
            Some((*apid, ch_name)),
            path,
            "image/tiff; application=geotiff; profile=cloud-optimized",
        ));
    }
    let band_of = |apid: u16| {
        channels
            .iter()
            .position(|a| *a == apid)
            .and_then(|i| grid_bands.get(i))
    };
    let q_any = qa_json(None);
    if let Some([r, g, b]) = composite_bands(spec, &channels) {
        if let (Some(r), Some(g), Some(b)) = (band_of(r), band_of(g), band_of(b)) {
            let rgb = [&r.as_band(), &g.as_band(), &b.as_band()];
            let path = out("composite.tif".into());
            let meta = with(
                &base_meta,
                &[
                    ("DOWNLINK_PRODUCT", "composite"),
                    ("DOWNLINK_GEOLOCATION_QA", &q_any),
                ],
            );
            prod::write_rgb_composite(&path, &grid, rgb, &as_refs(&meta), &cog)
                .map_err(product_err("composite COG"))?;
            products.push(product(
                "composite",
                None,
                path,
                "image/tiff; application=geotiff; profile=cloud-optimized",
            ));
            let thumb = out("thumbnail.png".into());
            prod::write_rgb_thumbnail(&thumb, grid.width, grid.height, rgb, 512)
                .map_err(product_err("thumbnail"))?;
            products.push(product("thumbnail", None, thumb, "image/png"));
        }
    }
    if let Some([vis, nir]) = spec.ndvi {
        if let (Some(v), Some(n)) = (band_of(vis), band_of(nir)) {
            let path = out("ndvi.tif".into());
            let meta = with(
                &base_meta,
                &[
                    ("DOWNLINK_PRODUCT", "ndvi"),
                    ("DOWNLINK_GEOLOCATION_QA", &q_any),
                ],
            );
            prod::write_ndvi(
                &path,
                &grid,
                &v.as_band(),
                &n.as_band(),
                &as_refs(&meta),
                &cog,
            )
            .map_err(product_err("NDVI COG"))?;
            products.push(product(
                "ndvi",
                None,
                path,
                "image/tiff; application=geotiff; profile=cloud-optimized",
            ));
        }
    }
    steps.lap("cogs");

    let tle_age_hours = first.map(|f| f.seconds_since(tle_epoch) / 3600.0);
    let tle_warning = tle_age_hours.and_then(stale_tle_warning);
    if let Some(w) = &tle_warning {
        tracing::warn!(pass = %req.pass_id, norad = spec.norad_id, "{w}");
    }
    let listing = Listing {
        pass_id: req.pass_id.to_owned(),
        spacecraft: spec.spacecraft.clone(),
        norad_id: spec.norad_id,
        instrument: spec.instrument.clone(),
        start,
        end,
        lines: img.height,
        channels: channels.clone(),
        tle: serde_json::json!({
            "line1": req.tle.line1, "line2": req.tle.line2,
            "epoch": rfc3339(tle_epoch),
            "age_hours": tle_age_hours,
            "warning": tle_warning,
        }),
        subsatellite_first: subsat
            .map(|g| serde_json::json!({"lat": g.lat_deg, "lon": g.lon_deg, "alt_km": g.alt_km})),
        bbox: Some(bbox),
        sun: sun_at_mid_pass(first, last, &gcps),
        footprint: swath_outline(&gcps),
        geolocation_qa: qa,
        link_quality: link,
        products,
        timing_ms: steps.ms,
    };
    let json_path = work_dir.join("products.json");
    let text = serde_json::to_vec_pretty(&listing)?;
    archive::write_atomic(&json_path, &text)?;
    Ok(listing)
}

/// Per-line UTC times: one stamp per 8-line MCU row (the first line's), the other lines one
/// line period apart; rows without packets interpolated.
pub fn line_times(img: &AssembledImage, date: PassDate) -> Vec<Option<UtcTime>> {
    let first_ms = img.line_time_ms.iter().flatten().next().copied();
    let mut clock = match (date, first_ms) {
        (PassDate::Date(d), Some(ms)) => DayClock::moscow_on_date(d, ms),
        (PassDate::Near(t), _) => DayClock::moscow(t),
        (PassDate::Date(d), None) => DayClock::moscow(d.and_time(chrono::NaiveTime::MIN).and_utc()),
    };
    let rows: Vec<Option<UtcTime>> = img
        .line_time_ms
        .iter()
        .step_by(LRPT_LINES_PER_ROW)
        .map(|ms| ms.map(|ms| UtcTime::from_unix_micros(clock.resolve(ms).timestamp_micros())))
        .collect();
    let rows = interpolate_line_times(&rows);
    let mut lines = expand_row_times(&rows, LRPT_LINES_PER_ROW, MSU_MR_LINE_PERIOD_S);
    lines.truncate(img.height);
    lines
}

fn rfc3339(t: UtcTime) -> String {
    DateTime::<Utc>::from_timestamp_micros(t.unix_micros())
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// The composite's bands: for each of red, green, blue the first listed APID present.
fn composite_bands(spec: &ImagingSpec, present: &[u16]) -> Option<[u16; 3]> {
    let mut out = [0u16; 3];
    if spec.composite.len() != 3 {
        return None;
    }
    for (slot, prefs) in out.iter_mut().zip(&spec.composite) {
        *slot = *prefs.iter().find(|a| present.contains(a))?;
    }
    Some(out)
}

fn link_quality(stats: &Stats, img: &AssembledImage) -> serde_json::Value {
    let channels: BTreeMap<String, serde_json::Value> = img
        .channels
        .iter()
        .map(|(apid, c)| {
            (
                apid.to_string(),
                serde_json::json!({
                    "packets_ok": c.stats.packets_ok,
                    "packets_bad": c.stats.packets_bad,
                    "packets_duplicate": c.stats.packets_duplicate,
                    "packets_bad_time": c.stats.packets_bad_time,
                    "packets_missing": c.stats.packets_missing,
                    "valid_fraction": c.valid.iter().filter(|v| **v).count() as f64 / c.valid.len().max(1) as f64,
                }),
            )
        })
        .collect();
    serde_json::json!({
        "frames_good": stats.frames.good,
        "frames_rejected": stats.frames.rejected.total(),
        "frames_missing": stats.frames.missing_by_vcid.values().sum::<u64>(),
        "rs_corrected": stats.rs.corrected,
        "rs_uncorrectable": stats.rs.uncorrectable,
        "packets": stats.packets.total,
        "packet_sequence_gaps": stats.packets.sequence_gaps,
        "image_channels": channels,
    })
}

fn qa_record(apid: u16, r: &OffsetReport, reference: &str) -> GeolocationQa {
    GeolocationQa {
        apid,
        offset_east_km: r.offset_east_km,
        offset_north_km: r.offset_north_km,
        offset_km: r
            .offset_east_km
            .zip(r.offset_north_km)
            .map(|(e, n)| e.hypot(n)),
        confidence: r.confidence,
        reliable: r.confidence >= 0.5 && r.offset_east_km.is_some(),
        peak_ncc: r.peak_ncc,
        coastline_km: r.coastline_km,
        at_search_edge: r.at_search_edge,
        method: r.method,
        reference: reference.to_owned(),
    }
}

/// The listing entry of a file written at `written`, recorded under `final_dir` (its name kept).
fn product(
    kind: &'static str,
    channel: Option<(u16, String)>,
    written: &Path,
    final_dir: &Path,
    media_type: &'static str,
) -> Product {
    let bytes = std::fs::metadata(written).map_or(0, |m| m.len());
    let (apid, channel) = channel.map_or((None, None), |(a, n)| (Some(a), Some(n)));
    let path = written
        .file_name()
        .map_or_else(|| written.to_owned(), |n| final_dir.join(n));
    Product {
        kind,
        apid,
        channel,
        path,
        media_type,
        bytes,
    }
}

fn with<'a>(base: &'a [(&'a str, String)], extra: &[(&'a str, &str)]) -> Vec<(&'a str, String)> {
    let mut v = base.to_vec();
    v.extend(extra.iter().map(|(k, val)| (*k, (*val).to_owned())));
    v
}

fn as_refs<'a>(v: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    v.iter().map(|(k, val)| (*k, val.as_str())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_tle_gets_a_warning_either_way() {
        assert_eq!(stale_tle_warning(0.0), None);
        assert_eq!(stale_tle_warning(14.0 * 24.0), None);
        assert_eq!(stale_tle_warning(-14.0 * 24.0), None);
        let old = stale_tle_warning(3.0 * 365.0 * 24.0).unwrap();
        assert!(old.contains("1095 days before the pass"), "{old}");
        let future = stale_tle_warning(-20.0 * 24.0).unwrap();
        assert!(future.contains("20 days after the pass"), "{future}");
    }

    #[test]
    fn swath_outline_walks_the_grid_border() {
        let mut gcps = Vec::new();
        for line in [0.0, 10.0, 20.0] {
            for pixel in [0.0, 5.0, 10.0] {
                gcps.push(prod::Gcp {
                    pixel,
                    line,
                    lat: -line,
                    lon: 100.0 + pixel,
                });
            }
        }
        let ring = swath_outline(&gcps);
        assert_eq!(
            ring,
            [
                [100.0, 0.0],
                [105.0, 0.0],
                [110.0, 0.0],
                [110.0, -10.0],
                [110.0, -20.0],
                [105.0, -20.0],
                [100.0, -20.0],
                [100.0, -10.0],
                [100.0, 0.0],
            ]
        );
        assert!(
            swath_outline(gcps.get(..3).unwrap_or_default()).is_empty(),
            "one line is no area"
        );
    }
}
