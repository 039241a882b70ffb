//! Meteor-M N2 LRPT MSU-MR image decoding (pure computation, no IO).
//!
//! # Data path
//!
//! The LRPT virtual channel (VCID 5) carries CCSDS space packets. APIDs 64..=69 are
//! the six MSU-MR channels (only three are transmitted at a time, e.g. 64, 65 and 68),
//! APID 70 is telemetry. Each image packet carries 14 JPEG-like compressed 8x8 blocks
//! ("MCUs") of one channel, i.e. an 8-line x 112-pixel strip. A full MSU-MR line is
//! 1568 pixels = 196 MCUs = 14 packets; one "MCU row" is 8 image lines.
//!
//! # Packet layout (user data field, after the 6-byte CCSDS primary header)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | day (always 0 on Meteor-M N2) |
//! | 2 | 4 | milliseconds of day, **Moscow time (UTC+3)**, big-endian |
//! | 6 | 2 | microseconds |
//! | 8 | 1 | MCU id: index of the first MCU of the packet in the line, 0..=182 step 14 |
//! | 9 | 2 | scan header: quantization-table id (byte 9), DC/AC Huffman table ids (nibbles of byte 10); always 0 |
//! | 11 | 3 | segment header: 16-bit quality marker (0xFFF0 observed) and the 8-bit quality factor Q |
//! | 14 | .. | entropy-coded data for 14 MCUs, MSB first, no 0xFF byte stuffing, no markers |
//!
//! All packets of one MCU row carry the same timestamp, across all channels; successive
//! rows are ~1231 ms apart (8 lines). The CCSDS sequence counter is **shared by all APIDs
//! of the virtual channel** (it increments by one per packet of any APID; in the sample
//! pass the rows are laid out as 14 x APID 64, 14 x APID 65, 14 x APID 68, 1 x APID 70 =
//! 43 counts per MCU row), so per-APID continuity checks on it are meaningless.
//!
//! # Compression ("JPEG for BIS-MW")
//!
//! Baseline sequential JPEG (ITU-T T.81) on single 8x8 luminance blocks:
//! * quantization: the T.81 Annex K.1 luminance table scaled by the per-packet quality
//!   factor Q with the IJG convention: `S = 5000 / Q` for Q < 50, `S = 200 - 2 Q`
//!   otherwise, `q = (table * S + 50) / 100` clamped to 1..=255
//!   (jradio, used for the reference image, applies `200 - 2 Q` also for Q <= 20 and does
//!   not clamp at 255; the two agree for Q >= 21, and the sample uses Q = 75..=100);
//! * entropy coding: the T.81 Annex K.3 standard DC-luminance and AC-luminance Huffman
//!   tables (Tables K.3 and K.5), zig-zag order (T.81 Figure A.6);
//! * the DC predictor is reset to 0 at the start of every packet (the first MCU of a packet
//!   carries its absolute DC value), so each packet decodes independently;
//! * inverse DCT as in T.81 A.3.3, level shift +128, clamp to 0..=255.
//!
//! # Sources
//! * "Image compression algorithm for JPEG for equipment BIS-MW (adopter MSU-MR to LRPT)",
//!   and the packet/timestamp notes, <http://meteor.robonuka.ru/for-experts/soft/>
//!   (also notes the faulty sequence flags of BIS-MW).
//! * O. Spiropoulos, "Image Source Packet Details" and "Meteor M N1 LRPT Scanline",
//!   <http://web.aanet.com.au/~ospiropo/meteor/packet_details.html>,
//!   <http://web.aanet.com.au/~ospiropo/meteor/scanline.html> (MCU id, 14 MCUs per packet,
//!   8-line blocks, per-VC sequence counter).
//! * ITU-T T.81 (1992) | ISO/IEC 10918-1, Annex A (IDCT, zig-zag), Annex F.2.2 (Huffman
//!   decoding, RECEIVE/EXTEND), Annex K.1/K.3 (tables).
//! * IJG libjpeg `jcparam.c` description of `jpeg_quality_scaling` (quality -> percentage).
//! * Behaviour of the reference image (georef-lrpt / jradio, Apache-2.0) was studied only
//!   to explain its vertical origin; no code was taken. See [`assembler`].
//!
//! Module layout: [`packet`] (user-data parsing), [`huffman`] (entropy decoding),
//! [`idct`] (dequantization + IDCT), [`assembler`] (placing strips into images).

pub mod assembler;
pub mod huffman;
pub mod idct;
pub mod packet;

pub use assembler::{
    AssembledImage, Assembler, AssemblerConfig, AssemblerStats, ChannelImage, ChannelStats,
    PushOutcome,
};
pub use huffman::decode_coefficients;
pub use idct::{decode_strip, quantization_table, Strip};
pub use packet::{
    is_image_apid, parse_space_packet, ImagePacket, MsuTime, SpacePacketRef, IMAGE_WIDTH,
    LINES_PER_ROW, MCUS_PER_LINE, MCU_PER_PACKET, PACKETS_PER_ROW, STRIP_WIDTH,
};

/// Errors of the MSU-MR decoder and assembler. Every malformed input maps to one of these;
/// nothing in this module panics on bad data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MsuMrError {
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
}
