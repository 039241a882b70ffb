//! The imaging chain's one error type: TLE parsing, orbit propagation, geolocation, MSU-MR
//! decoding, and the geolocation QA grids and estimator.

use crate::orbit::UtcTime;
use crate::qa::GeoGrid;

/// Errors of the imaging chain.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- orbit propagation (orbit.rs)
    /// The `sgp4` crate rejected the elements at initialisation.
    #[error("SGP4 initialisation failed for NORAD {norad_id}: {source}")]
    Sgp4Init {
        /// Satellite catalogue number.
        norad_id: u64,
        /// Error from the `sgp4` crate.
        #[source]
        source: sgp4::ElementsError,
    },
    /// The `sgp4` crate failed to propagate (diverging eccentricity etc.).
    #[error("SGP4 propagation failed for NORAD {norad_id} at {minutes} min from epoch: {source}")]
    Sgp4Propagation {
        /// Satellite catalogue number.
        norad_id: u64,
        /// Minutes since the element epoch.
        minutes: f64,
        /// Error from the `sgp4` crate.
        #[source]
        source: sgp4::Error,
    },
    /// The propagated radius is below one Earth radius (Vallado error code 6).
    #[error("NORAD {norad_id} has decayed at {minutes} min from epoch (radius {radius_km:.3} km)")]
    Decayed {
        /// Satellite catalogue number.
        norad_id: u64,
        /// Minutes since the element epoch.
        minutes: f64,
        /// Propagated geocentric radius.
        radius_km: f64,
    },
    /// The element epoch could not be represented as a [`UtcTime`].
    #[error("element epoch {0} is out of range")]
    Epoch(String),
    // ---- geolocation (geoloc.rs)
    /// Grid steps must be at least 1.
    #[error("GCP grid steps must be >= 1 (lines {step_lines}, columns {step_cols})")]
    InvalidStep {
        /// Requested line step.
        step_lines: usize,
        /// Requested column step.
        step_cols: usize,
    },
    /// The image width does not match the scan geometry.
    #[error("image width {width} does not match the scan geometry width {geometry_width}")]
    WidthMismatch {
        /// Image width passed in.
        width: usize,
        /// Width the geometry was built for.
        geometry_width: usize,
    },
    /// The orbital frame is degenerate (zero velocity or position).
    #[error("degenerate orbital frame at {0}")]
    DegenerateFrame(UtcTime),
    /// Geolocation arrays need at least two lines with a time.
    #[error("fewer than two image lines have a time")]
    TooFewLineTimes,
    /// A look ray of the geolocation grid misses the Earth.
    #[error("a look ray at {0} misses the Earth")]
    RayMissesEarth(UtcTime),
    // ---- MSU-MR decoding (msumr/mod.rs)
    /// A buffer is shorter than the structure it must hold.
    #[error("{what}: {len} bytes, need at least {need}")]
    TooShort {
        /// Which structure was being parsed.
        what: &'static str,
        /// Bytes available.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The CCSDS length field disagrees with the buffer length.
    #[error("space packet length field says {declared} data bytes, buffer holds {available}")]
    LengthMismatch {
        /// Data length from the primary header (length field + 1).
        declared: usize,
        /// Data bytes present after the primary header.
        available: usize,
    },
    /// MCU id is not one of 0, 14, ..., 182.
    #[error("invalid MCU id {0}: must be a multiple of 14 in 0..=182")]
    InvalidMcuId(u8),
    /// Quality factor outside 1..=100.
    #[error("invalid quality factor {0}: must be 1..=100")]
    InvalidQuality(u8),
    /// No DC Huffman code matches the bit stream.
    #[error("MCU {mcu}: invalid DC Huffman code at bit {bit}")]
    BadDcCode {
        /// MCU index within the packet (0..14).
        mcu: usize,
        /// Bit offset in the entropy-coded data.
        bit: usize,
    },
    /// No AC Huffman code matches the bit stream.
    #[error("MCU {mcu}: invalid AC Huffman code at bit {bit}")]
    BadAcCode {
        /// MCU index within the packet (0..14).
        mcu: usize,
        /// Bit offset in the entropy-coded data.
        bit: usize,
    },
    /// A run of zeros pushed the coefficient index past 63.
    #[error("MCU {mcu}: AC run reaches coefficient {index} (> 63)")]
    CoefficientOverflow {
        /// MCU index within the packet (0..14).
        mcu: usize,
        /// Zig-zag index that was reached.
        index: usize,
    },
    /// The entropy-coded data ended before all 14 MCUs were decoded.
    #[error("MCU {mcu}: entropy data exhausted (needed bit {needed}, have {available})")]
    DataExhausted {
        /// MCU index within the packet (0..14).
        mcu: usize,
        /// Bit position that was required.
        needed: usize,
        /// Bits available.
        available: usize,
    },
    /// The packet time is too far from every row already in the image.
    #[error("packet time {ms_of_day} ms is {rows} MCU rows from the image (limit {limit})")]
    TimeOutOfRange {
        /// Packet millisecond of day.
        ms_of_day: u32,
        /// Distance in MCU rows from the nearest known row.
        rows: i64,
        /// Configured limit.
        limit: i64,
    },
    /// The sequence counter disagrees with the row derived from the packet time.
    #[error("sequence count {seq} does not match the time-derived row (expected {expected})")]
    SequenceMismatch {
        /// Sequence count of the packet.
        seq: u16,
        /// Count predicted from the same slot in the nearest row.
        expected: u16,
    },
    /// The packet time falls between two MCU-row slots.
    #[error("packet time {ms_of_day} ms is {residual_ms} ms off the MCU-row grid")]
    OffGrid {
        /// Packet millisecond of day.
        ms_of_day: u32,
        /// Distance from the nearest row slot in ms.
        residual_ms: i64,
    },
    // ---- QA grids (qa/grid.rs)
    /// Geotransform values unusable (zero/non-finite steps, zero size, ...).
    #[error("invalid grid geometry: {0}")]
    GridGeometry(String),
    /// `data.len()` does not match `width * height`.
    #[error("grid data length {got} does not match {width}x{height}")]
    GridLength {
        /// Actual length.
        got: usize,
        /// Grid width.
        width: usize,
        /// Grid height.
        height: usize,
    },
    // ---- QA offset estimator (qa/offset.rs)
    /// Image and mask are not on the same grid.
    #[error("image grid {image:?} differs from mask grid {mask:?}")]
    GridMismatch {
        /// Image geometry.
        image: GeoGrid,
        /// Mask geometry.
        mask: GeoGrid,
    },
    /// Parameters out of range.
    #[error("bad estimator parameter: {0}")]
    BadEstimatorParams(String),
    // ---- TLE parsing (tle.rs)
    /// An element line is not exactly 69 characters (trailing whitespace ignored).
    #[error("line {line_no}: TLE line {which} has {len} characters, expected 69")]
    BadLength {
        /// 1-based line number in the input text.
        line_no: usize,
        /// 1 or 2.
        which: u8,
        /// Length found.
        len: usize,
    },
    /// The column-69 checksum digit does not match the line contents.
    #[error("line {line_no}: TLE line {which} checksum mismatch: column 69 says {found}, contents give {expected}")]
    Checksum {
        /// 1-based line number in the input text.
        line_no: usize,
        /// 1 or 2.
        which: u8,
        /// Checksum computed from columns 1..=68.
        expected: u8,
        /// Character found in column 69 (as written).
        found: char,
    },
    /// A line 1 was not followed by a line 2 (or a line 2 appeared without a line 1).
    #[error("line {line_no}: {what}")]
    Structure {
        /// 1-based line number in the input text.
        line_no: usize,
        /// Description of what was expected.
        what: &'static str,
    },
    /// The line contains non-ASCII characters.
    #[error("line {line_no}: TLE line contains non-ASCII characters")]
    NonAscii {
        /// 1-based line number in the input text.
        line_no: usize,
    },
    /// The `sgp4` crate rejected the element fields of the record starting at `line_no`.
    #[error("line {line_no}: {source}")]
    TleFields {
        /// 1-based line number of element line 1.
        line_no: usize,
        /// Field-level error from the `sgp4` crate.
        #[source]
        source: sgp4::TleError,
    },
    /// The input held no TLE at all.
    #[error("no TLE found in input")]
    NoTle,
}
