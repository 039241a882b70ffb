//! Placing decoded 8 x 112 strips into per-channel images on a common MCU-row grid.
//!
//! # Row numbering
//!
//! Every packet of one MCU row (8 image lines) carries the same timestamp, in all channels,
//! and successive rows are [`NOMINAL_ROW_PERIOD_MS`] apart (1228 or 1232 ms steps in the
//! sample pass, mean 1231.2 ms over 24 rows). The row of a packet is therefore derived from
//! its time: `row = anchor_row + round((t - anchor_t) / period)` where the anchor is the
//! known row nearest in time, so rounding never accumulates drift and a missing packet, a
//! missing row or a missing channel simply leaves nodata without shifting anything.
//! Because the time is shared by all channels, all channels share one row numbering and the
//! composite lines up. Times wrap at Moscow midnight (86 400 000 ms); differences are taken
//! modulo one day.
//!
//! The CCSDS sequence counter is *not* used for placement: on Meteor-M N2 it is a single
//! counter for all APIDs of the virtual channel (43 counts per row with 3 channels +
//! telemetry in the sample, but the interleave depends on which channels are on), and it
//! wraps every 16384 counts (~381 rows, ~7.8 min). It is used as a *cross-check* instead:
//! the assembler learns the per-row step from the same (APID, MCU id) in adjacent rows,
//! and once learned (seen 3 times) rejects a packet whose counter is not exactly
//! `rows x step` (mod 16384) away from the nearest packet in the same slot of the same
//! channel. This catches corrupt time codes that would otherwise create stray rows; only
//! the first packet of each (channel, slot) is unchecked.
//!
//! # Output origin
//!
//! Image row 0 is the earliest MCU row for which *any* image channel has a decoded packet
//! and the height runs to the latest such row; every channel image has this same height.
//! This is also what georef-lrpt does for its reference PNG (it starts every channel at its
//! first packet, prepends rows to the channels that started later than the one with the
//! earliest timestamp, and sizes the image by the channel that extends furthest), so the
//! sample reference lines up row for row. Note that the sample reference
//! `2022_12_20_20_25_30.png` (1568 x 200 = 25 MCU rows) is decoded from *all three*
//! `2022_12_20_20_25_{30,40,50}.vcdu` files (its test globs `*.vcdu`, merges the VCDUs by
//! frame counter and names the output after the first file); the `_30` file alone gives the
//! first 9 of those rows (72 lines).

use std::collections::BTreeMap;

use super::idct::decode_strip;
use super::packet::{
    is_image_apid, parse_space_packet, ImagePacket, IMAGE_WIDTH, LINES_PER_ROW, PACKETS_PER_ROW,
    STRIP_WIDTH,
};
use crate::Error;

/// Nominal time between two MCU rows (8 lines) in ms, measured on the 2022-12-20 sample
/// (29 548 ms over 24 rows); only used to count rows across gaps, with anchoring on the
/// nearest known row.
pub const NOMINAL_ROW_PERIOD_MS: f64 = 1231.2;
const DAY_MS: i64 = 86_400_000;
const SEQ_MOD: i64 = 1 << 14;

/// Tuning of the row grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AssemblerConfig {
    /// Time between MCU rows in ms.
    pub row_period_ms: f64,
    /// Largest distance (in MCU rows) of a new row from the nearest known row; packets
    /// further away (corrupt time codes) are rejected. Default 1000 rows (~20 min).
    pub max_row_gap: i64,
    /// Largest distance (ms) of a packet time from its row slot. Default 300 ms (~period/4).
    pub grid_tolerance_ms: i64,
    /// Largest image, first to last row (default 4096 rows ≈ 84 min, longer than any pass):
    /// bounds memory whatever the time codes say.
    pub max_span_rows: i64,
}

impl Default for AssemblerConfig {
    fn default() -> Self {
        Self {
            row_period_ms: NOMINAL_ROW_PERIOD_MS,
            max_row_gap: 1000,
            grid_tolerance_ms: 300,
            max_span_rows: 4096,
        }
    }
}

/// What [`Assembler::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushOutcome {
    /// Decoded and placed at grid row `row`, columns `mcu_id * 8 .. + 112`.
    Placed {
        /// APID (channel).
        apid: u16,
        /// Grid row (relative to the first packet's row; may be negative).
        row: i64,
        /// MCU id of the packet.
        mcu_id: u8,
    },
    /// The slot was already filled; the packet was ignored (first one wins).
    Duplicate {
        /// APID (channel).
        apid: u16,
        /// Grid row.
        row: i64,
        /// MCU id of the packet.
        mcu_id: u8,
    },
    /// Not an MSU-MR image APID (e.g. 70, telemetry); ignored.
    NotImage {
        /// APID of the ignored packet.
        apid: u16,
    },
}

/// Per-channel counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Packets decoded and placed.
    pub packets_ok: u64,
    /// Packets with a malformed header or undecodable entropy data.
    pub packets_bad: u64,
    /// Packets whose slot was already filled.
    pub packets_duplicate: u64,
    /// Packets rejected because their time did not fit the row grid or disagreed with the
    /// sequence counter.
    pub packets_bad_time: u64,
    /// Packet slots missing between the channel's first and last row (filled in by
    /// [`Assembler::build`]).
    pub packets_missing: u64,
    /// Sequence count of the last packet pushed for this channel (diagnostics).
    pub last_seq_count: Option<u16>,
}

/// Counters not tied to one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AssemblerStats {
    /// Packets of non-image APIDs.
    pub non_image_packets: u64,
    /// Buffers given to [`Assembler::push_space_packet`] that are not valid space packets.
    pub malformed_space_packets: u64,
}

struct RowBuf {
    pixels: Vec<u8>,
    /// Sequence count of the packet placed in each slot (`None` = slot empty).
    seqs: [Option<u16>; PACKETS_PER_ROW],
    time_ms: u32,
}

#[derive(Default)]
struct Channel {
    rows: BTreeMap<i64, RowBuf>,
    stats: ChannelStats,
}

/// Accumulates MSU-MR packets of all channels. Pure computation; feed packets in any order.
pub struct Assembler {
    cfg: AssemblerConfig,
    /// Grid row -> time (ms of day) of the first packet seen in that row. Row 0 = first row.
    grid: BTreeMap<i64, u32>,
    channels: BTreeMap<u16, Channel>,
    seq_model: SeqModel,
    stats: AssemblerStats,
}

/// Learns how many sequence counts the VC advances per MCU row (43 in the sample: 3 x 14
/// image packets + 1 telemetry packet), from the same (APID, slot) in adjacent rows.
#[derive(Default)]
struct SeqModel {
    hits: BTreeMap<i64, u32>,
}

impl SeqModel {
    fn observe(&mut self, d: i64) {
        *self.hits.entry(d).or_insert(0) += 1;
    }
    /// Most frequent per-row step once seen at least 3 times.
    fn counts_per_row(&self) -> Option<i64> {
        self.hits
            .iter()
            .max_by_key(|(_, &n)| n)
            .filter(|(_, &n)| n >= 3)
            .map(|(&d, _)| d)
    }
}

/// `a - b` for 14-bit sequence counts, wrapped into [-8192, 8192).
fn seq_diff(a: u16, b: u16) -> i64 {
    let d = i64::from(a) - i64::from(b);
    (d + SEQ_MOD / 2).rem_euclid(SEQ_MOD) - SEQ_MOD / 2
}

/// Cross-check of the time-derived row with the sequence counter: the packet in the same
/// slot of the nearest row of this channel must be `rows * counts_per_row` counts away,
/// modulo the 14-bit counter period (the time code fixes the number of rows, so the
/// wrap-around is not ambiguous). Only applied once the step is learned; the first packet of
/// each (channel, slot) cannot be checked.
fn check_sequence(
    ch: &Channel,
    counts_per_row: Option<i64>,
    row: i64,
    slot: usize,
    seq: u16,
) -> Result<(), Error> {
    let Some(p) = counts_per_row else {
        return Ok(());
    };
    let with_slot = |r: (&i64, &RowBuf)| r.1.seqs.get(slot).copied().flatten().map(|s| (*r.0, s));
    let below = ch.rows.range(..row).rev().find_map(with_slot);
    let above = ch.rows.range(row + 1..).find_map(with_slot);
    let nearest = [below, above]
        .into_iter()
        .flatten()
        .min_by_key(|(r, _)| (r - row).abs());
    let Some((r0, s0)) = nearest else {
        return Ok(());
    };
    let expected = (i64::from(s0) + (row - r0) * p).rem_euclid(SEQ_MOD);
    if i64::from(seq) != expected {
        return Err(Error::SequenceMismatch {
            seq,
            expected: expected as u16,
        });
    }
    Ok(())
}

impl Default for Assembler {
    fn default() -> Self {
        Self::new()
    }
}

/// Difference `a - b` of two ms-of-day values, wrapped into [-12 h, 12 h).
fn wrap_diff(a: u32, b: u32) -> i64 {
    let d = i64::from(a) - i64::from(b);
    (d + DAY_MS / 2).rem_euclid(DAY_MS) - DAY_MS / 2
}

impl Assembler {
    /// New assembler with the default configuration.
    pub fn new() -> Self {
        Self::with_config(AssemblerConfig::default())
    }

    /// New assembler with an explicit configuration.
    /// A non-finite or non-positive `row_period_ms` is replaced by the default.
    pub fn with_config(mut cfg: AssemblerConfig) -> Self {
        if !(cfg.row_period_ms.is_finite() && cfg.row_period_ms > 0.0) {
            cfg.row_period_ms = NOMINAL_ROW_PERIOD_MS;
        }
        Self {
            cfg,
            grid: BTreeMap::new(),
            channels: BTreeMap::new(),
            seq_model: SeqModel::default(),
            stats: AssemblerStats::default(),
        }
    }

    /// Global counters.
    pub fn stats(&self) -> AssemblerStats {
        self.stats
    }

    /// Counters of one channel, if any packet of it was pushed.
    pub fn channel_stats(&self, apid: u16) -> Option<ChannelStats> {
        self.channels.get(&apid).map(|c| c.stats)
    }

    /// Grid row for a packet time, without modifying the grid.
    fn locate(&self, t: u32) -> Result<i64, Error> {
        let Some(&origin) = self.grid.get(&0) else {
            return Ok(0);
        };
        let period = self.cfg.row_period_ms;
        let est = (wrap_diff(t, origin) as f64 / period).round() as i64;
        let below = self.grid.range(..=est).next_back();
        let above = self.grid.range(est.saturating_add(1)..).next();
        let anchor = [below, above]
            .into_iter()
            .flatten()
            .min_by_key(|(_, &at)| wrap_diff(t, at).abs());
        let Some((&arow, &at)) = anchor else {
            return Ok(0);
        };
        let dt = wrap_diff(t, at);
        let k = (dt as f64 / period).round() as i64;
        if k.checked_abs().is_none_or(|a| a > self.cfg.max_row_gap) {
            return Err(Error::TimeOutOfRange {
                ms_of_day: t,
                rows: k,
                limit: self.cfg.max_row_gap,
            });
        }
        let residual = dt - (k as f64 * period).round() as i64;
        if residual.abs() > self.cfg.grid_tolerance_ms {
            return Err(Error::OffGrid {
                ms_of_day: t,
                residual_ms: residual,
            });
        }
        let row = arow + k;
        if let (Some((&lo, _)), Some((&hi, _))) =
            (self.grid.first_key_value(), self.grid.last_key_value())
        {
            let span = row.max(hi).saturating_sub(row.min(lo));
            if span >= self.cfg.max_span_rows {
                return Err(Error::TimeOutOfRange {
                    ms_of_day: t,
                    rows: span,
                    limit: self.cfg.max_span_rows,
                });
            }
        }
        Ok(row)
    }

    /// Push one complete CCSDS space packet (primary header + data field).
    pub fn push_space_packet(&mut self, packet: &[u8]) -> Result<PushOutcome, Error> {
        match parse_space_packet(packet) {
            Ok(sp) => self.push(sp.apid, sp.seq_count, sp.data),
            Err(e) => {
                self.stats.malformed_space_packets += 1;
                Err(e)
            }
        }
    }

    /// Push one packet: `apid`, CCSDS `seq_count` and the packet data field (secondary
    /// header included). Errors are also counted in the channel statistics; an error never
    /// affects other packets.
    pub fn push(&mut self, apid: u16, seq_count: u16, data: &[u8]) -> Result<PushOutcome, Error> {
        if !is_image_apid(apid) {
            self.stats.non_image_packets += 1;
            return Ok(PushOutcome::NotImage { apid });
        }
        let located = ImagePacket::parse(data).map(|p| (p, self.locate(p.time().ms_of_day)));
        let ch = self.channels.entry(apid).or_default();
        ch.stats.last_seq_count = Some(seq_count);
        let (pkt, row) = match located {
            Ok((p, Ok(row))) => (p, row),
            Ok((_, Err(e))) => {
                ch.stats.packets_bad_time += 1;
                return Err(e);
            }
            Err(e) => {
                ch.stats.packets_bad += 1;
                return Err(e);
            }
        };
        let mcu_id = pkt.mcu_id();
        let slot = pkt.slot();
        let already = ch
            .rows
            .get(&row)
            .and_then(|r| r.seqs.get(slot).copied())
            .flatten()
            .is_some();
        if already {
            ch.stats.packets_duplicate += 1;
            return Ok(PushOutcome::Duplicate { apid, row, mcu_id });
        }
        let counts_per_row = self.seq_model.counts_per_row();
        if let Err(e) = check_sequence(ch, counts_per_row, row, slot, seq_count) {
            ch.stats.packets_bad_time += 1;
            return Err(e);
        }
        let strip = match decode_strip(&pkt) {
            Ok(s) => s,
            Err(e) => {
                ch.stats.packets_bad += 1;
                return Err(e);
            }
        };
        let t = pkt.time().ms_of_day;
        let buf = ch.rows.entry(row).or_insert_with(|| RowBuf {
            pixels: vec![0u8; LINES_PER_ROW * IMAGE_WIDTH],
            seqs: [None; PACKETS_PER_ROW],
            time_ms: t,
        });
        let x0 = pkt.column();
        for (y, src) in strip.pixels.chunks_exact(STRIP_WIDTH).enumerate() {
            let off = y * IMAGE_WIDTH + x0;
            if let Some(dst) = buf.pixels.get_mut(off..off + STRIP_WIDTH) {
                dst.copy_from_slice(src);
            }
        }
        if let Some(f) = buf.seqs.get_mut(slot) {
            *f = Some(seq_count);
        }
        ch.stats.packets_ok += 1;
        for nb in [row - 1, row + 1] {
            let prev = ch
                .rows
                .get(&nb)
                .and_then(|r| r.seqs.get(slot).copied().flatten());
            if let Some(ps) = prev {
                let d = seq_diff(seq_count, ps) * (row - nb);
                if d > 0 {
                    self.seq_model.observe(d);
                }
            }
        }
        self.grid.entry(row).or_insert(t);
        Ok(PushOutcome::Placed { apid, row, mcu_id })
    }

    /// Build the images of all channels on the common grid (see the module docs for the
    /// origin). Can be called repeatedly; the assembler is not consumed.
    pub fn build(&self) -> AssembledImage {
        let rows_with_data = || {
            self.channels
                .values()
                .flat_map(|c| c.rows.keys().next().into_iter().chain(c.rows.keys().last()))
        };
        let first = rows_with_data().min();
        let last = rows_with_data().max();
        let (first_row, n_rows) = match (first, last) {
            (Some(&f), Some(&l)) => (f, usize::try_from(l - f + 1).unwrap_or(0)),
            _ => (0, 0),
        };
        let height = n_rows * LINES_PER_ROW;
        let line_time = |row: i64| -> Option<u32> { self.grid.get(&row).copied() };
        let line_time_ms: Vec<Option<u32>> = (0..height)
            .map(|y| line_time(first_row + (y / LINES_PER_ROW) as i64))
            .collect();
        let channels = self
            .channels
            .iter()
            .map(|(&apid, ch)| {
                let mut pixels = vec![0u8; IMAGE_WIDTH * height];
                let mut valid = vec![false; IMAGE_WIDTH * height];
                let mut lt = vec![None; height];
                for (&row, buf) in &ch.rows {
                    let Ok(r) = usize::try_from(row - first_row) else {
                        continue;
                    };
                    let y0 = r * LINES_PER_ROW;
                    for y in 0..LINES_PER_ROW {
                        if let Some(t) = lt.get_mut(y0 + y) {
                            *t = Some(buf.time_ms);
                        }
                        let src = buf.pixels.get(y * IMAGE_WIDTH..(y + 1) * IMAGE_WIDTH);
                        let base = (y0 + y) * IMAGE_WIDTH;
                        for (slot, f) in buf.seqs.iter().enumerate() {
                            if f.is_none() {
                                continue;
                            }
                            let (a, b) = (slot * STRIP_WIDTH, (slot + 1) * STRIP_WIDTH);
                            if let (Some(dst), Some(s)) = (
                                pixels.get_mut(base + a..base + b),
                                src.and_then(|s| s.get(a..b)),
                            ) {
                                dst.copy_from_slice(s);
                            }
                            if let Some(v) = valid.get_mut(base + a..base + b) {
                                v.fill(true);
                            }
                        }
                    }
                }
                let mut stats = ch.stats;
                if let (Some(f), Some(l)) = (ch.rows.keys().next(), ch.rows.keys().last()) {
                    let slots = u64::try_from(l - f + 1).unwrap_or(0) * PACKETS_PER_ROW as u64;
                    let filled: u64 = ch
                        .rows
                        .values()
                        .map(|r| r.seqs.iter().flatten().count() as u64)
                        .sum();
                    stats.packets_missing = slots.saturating_sub(filled);
                }
                (
                    apid,
                    ChannelImage {
                        apid,
                        width: IMAGE_WIDTH,
                        height,
                        pixels,
                        valid,
                        line_time_ms: lt,
                        stats,
                    },
                )
            })
            .collect();
        AssembledImage {
            width: IMAGE_WIDTH,
            height,
            first_row,
            line_time_ms,
            channels,
            stats: self.stats,
        }
    }
}

/// One channel on the common grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelImage {
    /// APID (64..=69).
    pub apid: u16,
    /// Always 1568.
    pub width: usize,
    /// Same for all channels of one [`AssembledImage`].
    pub height: usize,
    /// `width * height` pixels, row-major; 0 where `valid` is false.
    pub pixels: Vec<u8>,
    /// `width * height` validity flags (false = nodata).
    pub valid: Vec<bool>,
    /// Time code (ms of day, Moscow time) of the packets of this channel on each line;
    /// all 8 lines of an MCU row carry the row's packet time. `None` where this channel has
    /// no packet in the row.
    pub line_time_ms: Vec<Option<u32>>,
    /// Counters.
    pub stats: ChannelStats,
}

/// All channels on one grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledImage {
    /// Always 1568.
    pub width: usize,
    /// Image height in lines (multiple of 8).
    pub height: usize,
    /// Grid row (relative to the first pushed packet's row) of image row 0.
    pub first_row: i64,
    /// Time code (ms of day, Moscow time) of each line from any channel; `None` for MCU rows
    /// with no decoded packet at all.
    pub line_time_ms: Vec<Option<u32>>,
    /// Channel images by APID.
    pub channels: BTreeMap<u16, ChannelImage>,
    /// Global counters.
    pub stats: AssemblerStats,
}

impl AssembledImage {
    /// Channel image by APID.
    pub fn channel(&self, apid: u16) -> Option<&ChannelImage> {
        self.channels.get(&apid)
    }

    /// RGBA composite (`width * height * 4` bytes): R, G, B from the given APIDs, alpha 255
    /// where all three are valid, otherwise the pixel is (0, 0, 0, 0). `None` if a channel
    /// is absent.
    pub fn to_rgba(&self, r: u16, g: u16, b: u16) -> Option<Vec<u8>> {
        let (cr, cg, cb) = (self.channel(r)?, self.channel(g)?, self.channel(b)?);
        let mut out = vec![0u8; self.width * self.height * 4];
        let planes = cr
            .pixels
            .iter()
            .zip(&cr.valid)
            .zip(cg.pixels.iter().zip(&cg.valid))
            .zip(cb.pixels.iter().zip(&cb.valid));
        for (px, (((&rv, &rok), (&gv, &gok)), (&bv, &bok))) in out.chunks_exact_mut(4).zip(planes) {
            if rok && gok && bok {
                px.copy_from_slice(&[rv, gv, bv, 255]);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A minimal valid packet: 14 MCUs with DC category 0 and EOB (00 1010 per MCU).
    fn flat_packet(ms: u32, mcu_id: u8) -> Vec<u8> {
        let mut d = vec![0, 0];
        d.extend_from_slice(&ms.to_be_bytes());
        d.extend_from_slice(&[0, 0, mcu_id, 0, 0, 0xff, 0xf0, 50]);
        // 14 * 6 bits = 84 bits -> 11 bytes, pad with ones.
        let mut bits: Vec<u8> = Vec::new();
        for _ in 0..14 {
            bits.extend_from_slice(&[0, 0, 1, 0, 1, 0]);
        }
        while !bits.len().is_multiple_of(8) {
            bits.push(1);
        }
        d.extend(
            bits.chunks(8)
                .map(|c| c.iter().fold(0u8, |a, &b| (a << 1) | b)),
        );
        d
    }

    #[test]
    fn image_span_is_bounded_whatever_the_time_codes_say() {
        let mut a = Assembler::with_config(AssemblerConfig {
            max_row_gap: 50,
            max_span_rows: 100,
            ..AssemblerConfig::default()
        });
        let t0 = 84_312_296u32;
        let at = |rows: u32| t0 + (f64::from(rows) * NOMINAL_ROW_PERIOD_MS).round() as u32;
        // Walking forward 40 rows at a time stays within max_row_gap but not within the span.
        assert!(a.push(64, 1, &flat_packet(t0, 0)).is_ok());
        assert!(a.push(64, 2, &flat_packet(at(40), 0)).is_ok());
        assert!(a.push(64, 3, &flat_packet(at(80), 0)).is_ok());
        assert!(matches!(
            a.push(64, 4, &flat_packet(at(120), 0)),
            Err(Error::TimeOutOfRange { limit: 100, .. })
        ));
        assert!(a.build().height <= 100 * 8);
    }

    #[test]
    fn rows_from_time_with_gaps_and_any_order() {
        let mut a = Assembler::new();
        let t0 = 84_312_296u32;
        // Channel 65 first, rows 0 and 3 (rows 1, 2 lost), then channel 64 one row *earlier*.
        assert_eq!(
            a.push(65, 10, &flat_packet(t0, 0)),
            Ok(PushOutcome::Placed {
                apid: 65,
                row: 0,
                mcu_id: 0
            })
        );
        assert!(matches!(
            a.push(65, 11, &flat_packet(t0 + 3 * 1232 - 4, 182)),
            Ok(PushOutcome::Placed { row: 3, .. })
        ));
        assert!(matches!(
            a.push(64, 12, &flat_packet(t0 - 1232, 14)),
            Ok(PushOutcome::Placed { row: -1, .. })
        ));
        assert!(matches!(
            a.push(64, 13, &flat_packet(t0 - 1232, 14)),
            Ok(PushOutcome::Duplicate { row: -1, .. })
        ));
        assert!(matches!(
            a.push(70, 14, &[0; 20]),
            Ok(PushOutcome::NotImage { apid: 70 })
        ));
        assert!(matches!(
            a.push(64, 15, &flat_packet(t0 + 600, 0)),
            Err(Error::OffGrid { .. })
        ));
        assert!(matches!(
            a.push(64, 16, &flat_packet(t0 + 2_000_000, 0)),
            Err(Error::TimeOutOfRange { .. })
        ));
        assert!(a.push(64, 17, &[0; 10]).is_err());
        let img = a.build();
        assert_eq!(img.first_row, -1);
        assert_eq!(img.height, 5 * 8);
        let c64 = img.channel(64).unwrap();
        let c65 = img.channel(65).unwrap();
        assert_eq!(c64.height, c65.height);
        // 64's strip at row 0 of the image, columns 112..224, value 128 (flat DC 0).
        assert!(c64.valid[112] && !c64.valid[111] && !c64.valid[224]);
        assert_eq!(c64.pixels[7 * 1568 + 150], 128);
        assert!(!c64.valid[8 * 1568 + 150]);
        // 65 at image rows 1 and 4.
        assert!(c65.valid[8 * 1568] && c65.valid[32 * 1568 + 1567]);
        assert!(!c65.valid[16 * 1568] && !c65.valid[24 * 1568]);
        assert_eq!(c65.line_time_ms[8], Some(t0));
        assert_eq!(c65.line_time_ms[0], None);
        assert_eq!(img.line_time_ms[0], Some(t0 - 1232));
        assert_eq!(img.line_time_ms[16], None);
        assert_eq!(c64.stats.packets_ok, 1);
        assert_eq!(c64.stats.packets_duplicate, 1);
        assert_eq!(c64.stats.packets_bad_time, 2);
        assert_eq!(c64.stats.packets_bad, 1);
        assert_eq!(c65.stats.packets_missing, 4 * 14 - 2);
        assert_eq!(img.stats.non_image_packets, 1);
        assert!(img.to_rgba(65, 65, 64).unwrap().iter().all(|&v| v == 0));
    }

    #[test]
    fn sequence_counter_cross_check() {
        let mut a = Assembler::new();
        let t0 = 84_311_064u32;
        let t = |r: u32| t0 + r * 1232;
        // Counter near wrap-around: 16300 + 43 * r crosses 16384.
        let seq = |r: u16| (16_300 + 43 * r) % 16_384;
        for r in 0..4u16 {
            a.push(64, seq(r), &flat_packet(t(u32::from(r)), 0))
                .unwrap();
        }
        // Step learned (3 observations): a packet 7 rows on must carry seq(10).
        assert_eq!(
            a.push(64, seq(10) + 1, &flat_packet(t(10), 0)),
            Err(Error::SequenceMismatch {
                seq: seq(10) + 1,
                expected: seq(10)
            })
        );
        // A corrupted time code pointing 20 rows ahead is caught the same way.
        assert!(matches!(
            a.push(64, seq(4), &flat_packet(t(24), 0)),
            Err(Error::SequenceMismatch { .. })
        ));
        assert!(matches!(
            a.push(64, seq(10), &flat_packet(t(10), 0)),
            Ok(PushOutcome::Placed { row: 10, .. })
        ));
        // Another slot has no reference packet yet: accepted unchecked.
        assert!(a.push(64, 5, &flat_packet(t(5), 14)).is_ok());
        assert_eq!(a.channel_stats(64).unwrap().packets_bad_time, 2);
        assert_eq!(a.build().height, 11 * 8);
    }

    #[test]
    fn midnight_wrap() {
        let mut a = Assembler::new();
        let t0 = 86_400_000 - 1000;
        a.push(64, 0, &flat_packet(t0, 0)).unwrap();
        assert!(matches!(
            a.push(64, 1, &flat_packet(t0 + 1232 - 86_400_000, 0)),
            Ok(PushOutcome::Placed { row: 1, .. })
        ));
        assert_eq!(a.build().height, 16);
    }

    #[test]
    fn empty_assembler() {
        let img = Assembler::new().build();
        assert_eq!(img.height, 0);
        assert!(img.channels.is_empty());
        assert!(img.to_rgba(68, 65, 64).is_none());
    }
}
