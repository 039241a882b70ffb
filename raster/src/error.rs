//! The raster side's one error type: products, raster import and STAC items, the scene
//! pipeline, the land mask, tiles and change alerts.

use std::path::PathBuf;

use crate::tiles::render::Format;

/// Every way a raster call can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- shared
    /// The archive (ids, catalog, durable writes) refused or failed.
    #[error(transparent)]
    Archive(#[from] archive::Error),
    /// A step of a longer job failed; `step` says which.
    #[error("{step}: {source}")]
    Step {
        /// The step (e.g. "writing the COG").
        step: String,
        /// What failed in it.
        #[source]
        source: Box<Error>,
    },

    // ---- products
    /// Zero or absurd image dimensions.
    #[error("invalid image dimensions {width}x{height}: {reason}")]
    InvalidDimensions {
        /// Width in pixels.
        width: usize,
        /// Height in lines.
        height: usize,
        /// Why they were rejected.
        reason: &'static str,
    },
    /// An input slice does not have `width * height` (or `4 *`) elements.
    #[error("{what}: expected {expected} elements, got {actual}")]
    SizeMismatch {
        /// Which input.
        what: String,
        /// Expected length.
        expected: usize,
        /// Actual length.
        actual: usize,
    },
    /// A product needs at least one band (or exactly N bands).
    #[error("wrong number of bands: {0}")]
    BandCount(String),
    /// A ground control point is unusable.
    #[error("GCP #{index} invalid: {reason}")]
    InvalidGcp {
        /// Index in the input slice.
        index: usize,
        /// Why.
        reason: String,
    },
    /// Not enough GCPs for the requested transform.
    #[error("{count} GCPs is too few: the {transform} transform needs at least {needed}")]
    TooFewGcps {
        /// GCPs available.
        count: usize,
        /// GCPs needed.
        needed: usize,
        /// Transform name.
        transform: &'static str,
    },
    /// The GCP longitudes span more than 180° even after unwrapping at the
    /// antimeridian, so no continuous longitude range exists.
    #[error("GCP longitudes span {span_deg:.1} degrees; cannot form a continuous longitude range")]
    LongitudeSpan {
        /// Span in degrees.
        span_deg: f64,
    },
    /// Metadata key rejected (must be `[A-Za-z0-9_.-]+`).
    #[error("invalid metadata key {0:?} (allowed: A-Z a-z 0-9 _ . -)")]
    InvalidMetadataKey(String),
    /// A parameter is out of range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Why.
        reason: String,
    },
    /// A path is not valid UTF-8 (GDAL takes C strings; we require UTF-8).
    #[error("path is not valid UTF-8 or contains NUL: {0:?}")]
    BadPath(PathBuf),
    /// Error returned by the `gdal` crate.
    #[error("GDAL error while {context}: {source}")]
    Gdal {
        /// What we were doing.
        context: String,
        /// Underlying error.
        #[source]
        source: gdal::errors::GdalError,
    },
    /// Error from a raw GDAL C call (see `gdal_ffi`).
    #[error("GDAL {call} failed: {message}")]
    GdalCall {
        /// C function name.
        call: &'static str,
        /// `CPLGetLastErrorMsg()` text, or our own description.
        message: String,
    },
    /// Dataset content not as expected (wrong type, no GCPs, ...).
    #[error("unexpected dataset content: {0}")]
    Dataset(String),
    /// PNG encoding failed.
    #[error("PNG encoding {path:?}: {source}")]
    Png {
        /// Destination.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: image::ImageError,
    },
    /// File system error.
    #[error("I/O error while {context} {path:?}: {source}")]
    Io {
        /// What we were doing.
        context: &'static str,
        /// Path concerned.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid Cloud Optimized GeoTIFF.
    #[error("{path:?} is not a valid COG: {}", problems.join("; "))]
    NotCog {
        /// File checked.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<String>,
    },

    // ---- raster import and items
    /// The raster has no CRS (or no geotransform), so it cannot be placed on the globe.
    #[error("{0}: not georeferenced (no CRS or geotransform)")]
    NotGeoreferenced(PathBuf),
    /// Fewer than 3 footprint points could be transformed to EPSG:4326.
    #[error("{0}: footprint could not be transformed to EPSG:4326")]
    Footprint(PathBuf),
    /// No raster bands.
    #[error("{0}: no raster bands")]
    NoBands(PathBuf),
    /// The COG validator refused an output.
    #[error("{path}: not a valid COG: {report}")]
    InvalidCog {
        /// The file.
        path: PathBuf,
        /// Validator output.
        report: String,
    },
    /// Building the STAC item failed.
    #[error("stac: {0}")]
    Stac(String),
    /// The item id is taken and replacing was not asked for.
    #[error("item {id:?} already exists in collection {collection:?}: give --replace to replace it (its old files are removed once the new item is committed), or --id for another id")]
    Exists {
        /// Collection id.
        collection: String,
        /// Item id.
        id: String,
    },
    /// The import request does not fit the files (band names, file list).
    #[error("{0}")]
    Request(String),

    // ---- item listing
    /// Listing inconsistent.
    #[error("listing: {0}")]
    Listing(String),
    /// JSON conversion.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),

    // ---- the scene pipeline
    /// The profile has no `[imaging]` section.
    #[error("profile {0} has no imaging instrument ([imaging] section)")]
    NoInstrument(String),
    /// No image packet could be placed.
    #[error("no {instrument} image data in the input ({packets} packets on imaging APIDs)")]
    NoImage {
        /// Instrument.
        instrument: String,
        /// Packets seen on the instrument's APIDs.
        packets: u64,
    },
    /// No TLE for the spacecraft.
    #[error("no TLE for NORAD {norad_id}: {detail}")]
    NoTle {
        /// Catalogue number wanted.
        norad_id: u32,
        /// What was searched.
        detail: String,
    },
    /// A TLE file could not be read or parsed.
    #[error("TLE {path}: {message}")]
    Tle {
        /// File.
        path: PathBuf,
        /// Problem.
        message: String,
    },
    /// Orbit propagation or geolocation failed.
    #[error("geolocation: {0}")]
    Geolocation(String),
    /// The decoder refused the profile or input format.
    #[error("decoder: {0}")]
    Decoder(#[from] decoder::Error),

    // ---- the land mask
    /// The file is not a usable land mask.
    #[error("{path} is not a usable land mask: {reason}")]
    LandMask {
        /// The mask file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The requested window is invalid or does not intersect the mask.
    #[error("bad window request: {0}")]
    Window(String),
    /// Building the output grid failed.
    #[error(transparent)]
    Imagery(#[from] imagery::Error),

    // ---- tile matrix sets
    #[error("zoom {z} out of range 0..={max}")]
    Zoom { z: u32, max: u8 },
    #[error("tile column {x} out of range at zoom {z} (must be < {n})")]
    Column { z: u8, x: u64, n: u64 },
    #[error("tile row {y} out of range at zoom {z} (must be < {n})")]
    Row { z: u8, y: u64, n: u64 },
    #[error("invalid bounding box {0:?}: {1}")]
    BBox([f64; 4], &'static str),
    #[error("invalid resolution {0}")]
    Resolution(f64),
    #[error("invalid document parameter: {0}")]
    TileParam(String),

    // ---- tile rendering
    #[error("{path}: band {band} does not exist (dataset has {count})")]
    Band {
        path: String,
        band: usize,
        count: usize,
    },
    #[error("{path}: {msg}")]
    Unsupported { path: String, msg: String },
    #[error("bad render options: {0}")]
    RenderOptions(String),
    #[error("encoding {format:?}: {msg}")]
    Encode { format: Format, msg: String },
    #[error("tile pool: {0}")]
    Pool(String),
    /// Every queue slot of the pool is taken: the caller should answer "busy, retry".
    #[error("tile queue full")]
    Busy,

    // ---- change alerts
    /// Bad parameters or inputs (the message says which and why).
    #[error("{0}")]
    ChangeInput(String),
}

/// The raster side's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
