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
