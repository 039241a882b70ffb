//! Peer driver: the `ccsds` crate (crates.io `ccsds` = "=0.1.0-beta.25", bmflynn/ccsds-rs) run
//! over an in-memory CADU byte stream, for side-by-side benchmarks against Downlink's decoder.
//!
//! Stages run (all from `ccsds::framing`, in the order its own `FrameDecoder::decode` uses):
//! 1. **Frame sync** — `Synchronizer::new(reader, 1020)` iterated: exact-match ASM search at all
//!    8 bit shifts (CCSDS 131.0-B-5 §9), no bit-error tolerance, no lock/flywheel; each block is
//!    the 1020 bytes after an ASM, returned byte-aligned in a new `Vec`. The reader is a
//!    `std::io::Cursor` over memory, so no file IO is timed (it pulls one byte per `read` call
//!    while scanning, then `read_exact`s the block).
//! 2. **PN derandomization** — `DefaultDerandomizer::derandomize` (§10), the whole 1020 bytes.
//! 3. **VCDU header decode** — `VCDUHeader::decode` on the *derandomized but not yet corrected*
//!    bytes (this is how `FrameDecoder` does it).
//! 4. **Reed–Solomon** — `DefaultReedSolomon::new(4)` (§4: RS(255,223), E=16, I=4, dual basis;
//!    decoding by the `rs2` crate); returns the 892-byte frame without parity and an
//!    [`Integrity`] per frame (`Ok` / `Corrected` / `Uncorrectable` / `Skipped`).
//! 5. **Frame bookkeeping** — the per-VCID missing-frame count `FrameDecoder`'s iterator computes
//!    (`missing_frames`). Packet reassembly (`decode_framed_packets`) is *not* included.
//!
//! Differences from the stock pipeline that this driver can switch (see [`PeerConfig`]):
//! - Stock `DefaultReedSolomon` **skips RS on fill frames** (VCID 63 in the *uncorrected*
//!   header) and reports `Integrity::Skipped`. Downlink RS-decodes every frame, so by default
//!   this driver wraps the RS stage so fill frames are decoded too (`rs_fill_frames: true`);
//!   6 % of the Aqua capture's frames are fill.
//! - Stock `FrameDecoder::decode` runs stages 1–3 on a thread it spawns, RS on a rayon pool it
//!   builds per call (default size = number of CPUs, `with_integrity_threads(n)` to set it) and
//!   stage 5 on the caller's thread, connected by crossbeam channels. It cannot run on one
//!   thread. [`Threading::Inline`] calls the same public stage functions in the same order on
//!   the calling thread only — the one-core figure to compare with. (It also skips one
//!   redundant 1020-byte `.to_vec()` that `FrameDecoder` makes after PN: ~20 ns of ~100 µs.)
//!
//! The RS outcome is per frame: the crate stops at the first uncorrectable codeword of a frame
//! and does not report how many symbols it corrected, so codeword-level counts are not available
//! from its public pipeline (call `rs2::correct_message` directly for that, as the tests do).
//!
//! Gotchas (each pinned by a test below):
//! - A truncated last CADU is not dropped: `Synchronizer::block` ignores the EOF of `read_exact`
//!   and yields 1020 zero bytes, which become a frame that passes RS as `Ok`.
//! - The header carried in `DecodedFrame` is the pre-RS one; at 8 errors/codeword ~17 % of frames
//!   carry a header that differs from their corrected data, and in stock mode some data frames
//!   read as VCID 63 are passed through uncorrected as `Skipped`.
//! - [`PeerCounts::missing_frames`] is meaningless on the repeated benchmark streams (the VC
//!   counters jump back at every repeat); it is there only so the bookkeeping work is done.
//! - Sync needs an exact ASM; a CADU whose ASM has one bit error is lost. The streams built by
//!   `cadu_stream` never touch the ASM, so here the sync is always locked and costs ~nothing
//!   (measured ~30 Gbit/s alone): the timing is essentially the crate's RS.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ccsds::framing::{
    missing_frames, DefaultDerandomizer, DefaultReedSolomon, Derandomizer, FrameDecoder, Integrity,
    IntegrityAlgorithm, Synchronizer, VCDUHeader, Vcid,
};

/// Frame length after the ASM given to the synchronizer: 4 × 255 interleaved codeword bytes.
pub const BLOCK_LEN: usize = 1020;
/// RS interleave depth.
pub const INTERLEAVE: u8 = 4;

/// How the `ccsds` pipeline is threaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threading {
    /// Every stage on the calling thread, no threads spawned (one core).
    Inline,
    /// The crate's own `FrameDecoder::decode`: 1 spawned thread for sync + PN + header, a rayon
    /// pool of `rs_threads` threads (`None` = rayon's default, the number of CPUs) for RS, and
    /// the caller's thread for bookkeeping.
    FrameDecoder {
        /// Passed to `FrameDecoder::with_integrity_threads`.
        rs_threads: Option<u32>,
    },
}

/// Which variant of the `ccsds` pipeline to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerConfig {
    /// Thread layout.
    pub threading: Threading,
    /// `true`: RS-decode fill frames (VCID 63) too, like Downlink; `false`: stock behaviour
    /// (fill frames are `Skipped`, their parity is just stripped).
    pub rs_fill_frames: bool,
}

impl PeerConfig {
    /// The fair one-core comparison: all stages inline, RS on every frame.
    pub const ONE_CORE: Self = Self {
        threading: Threading::Inline,
        rs_fill_frames: true,
    };
    /// The crate exactly as its README uses it (`FrameDecoder` with default threads, fill frames
    /// skipped).
    pub const STOCK: Self = Self {
        threading: Threading::FrameDecoder { rs_threads: None },
        rs_fill_frames: false,
    };
}

/// What the `ccsds` pipeline reported for one input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Blocks the synchronizer produced (ASMs found with a whole block after them).
    pub blocks_synced: u64,
    /// Frames the pipeline produced (`Ok(DecodedFrame)`), whatever their integrity.
    pub frames_out: u64,
    /// Frames whose 4 codewords all had zero syndromes (`Integrity::Ok`).
    pub rs_ok: u64,
    /// Frames with at least one corrected codeword and none uncorrectable (`Corrected`).
    pub rs_corrected: u64,
    /// Frames with at least one uncorrectable codeword (`Uncorrectable`).
    pub rs_uncorrectable: u64,
    /// Frames on which RS was not run (`Skipped`: fill frames in stock mode).
    pub rs_skipped: u64,
    /// `Err` items from the pipeline (e.g. a block of the wrong length for RS).
    pub errors: u64,
    /// Sum of the per-VCID missing-frame counts (from uncorrected headers).
    pub missing_frames: u64,
}

impl PeerCounts {
    fn add_integrity(&mut self, integrity: Option<&Integrity>) {
        self.frames_out += 1;
        match integrity {
            Some(Integrity::Ok | Integrity::NoErrors) => self.rs_ok += 1,
            Some(Integrity::Corrected) => self.rs_corrected += 1,
            Some(Integrity::Uncorrectable | Integrity::HasErrors) => self.rs_uncorrectable += 1,
            Some(Integrity::Skipped) | None => self.rs_skipped += 1,
        }
    }
}

/// `DefaultReedSolomon`, but fill frames are decoded too: the crate's RS skips a frame purely
/// because its (uncorrected) header says VCID 63, so we hand it a header copy with another VCID.
struct RsEveryFrame(DefaultReedSolomon);

impl IntegrityAlgorithm for RsEveryFrame {
    fn perform(&self, header: &VCDUHeader, cadu_dat: &[u8]) -> ccsds::Result<(Integrity, Vec<u8>)> {
        if header.vcid == VCDUHeader::FILL {
            let mut h = header.clone();
            h.vcid = 0;
            self.0.perform(&h, cadu_dat)
        } else {
            self.0.perform(header, cadu_dat)
        }
    }
}

fn integrity_algorithm(cfg: &PeerConfig) -> Box<dyn IntegrityAlgorithm> {
    let rs = DefaultReedSolomon::new(INTERLEAVE);
    if cfg.rs_fill_frames {
        Box::new(RsEveryFrame(rs))
    } else {
        Box::new(rs)
    }
}

/// Runs the `ccsds` crate's sync + PN + header + RS pipeline over `input` (a CADU byte stream,
/// ASMs at any bit offset) on the calling thread only, RS-decoding every frame
/// ([`PeerConfig::ONE_CORE`]).
pub fn ccsds_decode_bytes(input: &[u8]) -> PeerCounts {
    ccsds_decode_bytes_with(input, &PeerConfig::ONE_CORE)
}

/// Like [`ccsds_decode_bytes`] with an explicit pipeline variant.
///
/// [`Threading::FrameDecoder`] needs a `'static` reader, so it copies `input` into a `Vec` first
/// (one memcpy, ~1 ms per 10 MB — negligible next to the decode).
pub fn ccsds_decode_bytes_with(input: &[u8], cfg: &PeerConfig) -> PeerCounts {
    match cfg.threading {
        Threading::Inline => decode_inline(input, cfg),
        Threading::FrameDecoder { rs_threads } => decode_frame_decoder(input, cfg, rs_threads),
    }
}

/// Per-VCID missing-frame tracking exactly as `FrameDecoder`'s iterator does it.
#[derive(Default)]
struct MissingTracker(HashMap<Vcid, u32>);

impl MissingTracker {
    fn update(&mut self, header: &VCDUHeader) -> u32 {
        if header.vcid == VCDUHeader::FILL {
            return 0;
        }
        let missing = self
            .0
            .get(&header.vcid)
            .map_or(0, |last| missing_frames(header.counter, *last));
        self.0.insert(header.vcid, header.counter);
        missing
    }
}

fn decode_inline(input: &[u8], cfg: &PeerConfig) -> PeerCounts {
    let mut counts = PeerCounts::default();
    let rs = integrity_algorithm(cfg);
    let pn = DefaultDerandomizer;
    let mut missing = MissingTracker::default();
    let blocks = Synchronizer::new(Cursor::new(input), BLOCK_LEN)
        .into_iter()
        .filter_map(Result::ok);
    for block in blocks {
        counts.blocks_synced += 1;
        let block = pn.derandomize(&block);
        let Some(header) = VCDUHeader::decode(&block) else {
            continue; // FrameDecoder skips such blocks silently too
        };
        match rs.perform(&header, &block) {
            Ok((status, _frame)) => {
                counts.add_integrity(Some(&status));
                counts.missing_frames += u64::from(missing.update(&header));
            }
            Err(_) => counts.errors += 1,
        }
    }
    counts
}

fn decode_frame_decoder(input: &[u8], cfg: &PeerConfig, rs_threads: Option<u32>) -> PeerCounts {
    let mut counts = PeerCounts::default();
    // Counted on the producer thread, read after the iterator is drained.
    let synced = Arc::new(AtomicU64::new(0));
    let synced_in = Arc::clone(&synced);
    let blocks = Synchronizer::new(Cursor::new(input.to_vec()), BLOCK_LEN)
        .into_iter()
        .filter_map(Result::ok)
        .inspect(move |_| {
            synced_in.fetch_add(1, Ordering::Relaxed);
        });
    let mut decoder = FrameDecoder::new()
        .with_integrity(integrity_algorithm(cfg))
        .with_derandomization(Box::new(DefaultDerandomizer));
    if let Some(n) = rs_threads {
        decoder = decoder.with_integrity_threads(n);
    }
    for item in decoder.decode(blocks) {
        match item {
            Ok(frame) => {
                counts.add_integrity(frame.integrity.as_ref());
                counts.missing_frames += u64::from(frame.missing);
            }
            Err(_) => counts.errors += 1,
        }
    }
    counts.blocks_synced = synced.load(Ordering::Relaxed);
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cadu_stream::{extract_aligned_cadus, make_cadu_stream, CADU_LEN};

    const AQUA: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/cadu/aqua.20241206T175646.dat"
    );
    /// Fill frames (VCID 63) in the Aqua capture (shared/data/README.md).
    const AQUA_FILL: u64 = 63;

    fn aqua_raw() -> Vec<u8> {
        std::fs::read(AQUA).unwrap()
    }

    fn aqua_cadus() -> Vec<u8> {
        extract_aligned_cadus(&aqua_raw()).unwrap().0
    }

    #[test]
    fn raw_unaligned_capture_one_core() {
        // The raw file (ASM at bit shift 1) goes through the crate's bit-level sync.
        let c = ccsds_decode_bytes(&aqua_raw());
        assert_eq!(c.blocks_synced, 1023);
        assert_eq!(c.frames_out, 1023);
        assert_eq!(c.rs_ok, 1023, "{c:?}");
        assert_eq!(c.errors, 0);
    }

    #[test]
    fn stock_pipeline_skips_fill_frames() {
        let c = ccsds_decode_bytes_with(&aqua_raw(), &PeerConfig::STOCK);
        assert_eq!(c.frames_out, 1023);
        assert_eq!(c.rs_skipped, AQUA_FILL);
        assert_eq!(c.rs_ok, 1023 - AQUA_FILL);
        assert_eq!(c.blocks_synced, 1023);
    }

    #[test]
    fn all_variants_agree_on_clean_aligned_stream() {
        let s = make_cadu_stream(&aqua_cadus(), 1100, 0, 1);
        let inline = ccsds_decode_bytes(&s);
        assert_eq!(inline.frames_out, 1100);
        assert_eq!(inline.rs_ok, 1100);
        assert_eq!(inline.rs_corrected + inline.rs_uncorrectable, 0);
        for threads in [Some(1), None] {
            let cfg = PeerConfig {
                threading: Threading::FrameDecoder {
                    rs_threads: threads,
                },
                rs_fill_frames: true,
            };
            assert_eq!(ccsds_decode_bytes_with(&s, &cfg), inline, "{threads:?}");
        }
        let stock_inline = PeerConfig {
            threading: Threading::Inline,
            rs_fill_frames: false,
        };
        let a = ccsds_decode_bytes_with(&s, &stock_inline);
        let b = ccsds_decode_bytes_with(&s, &PeerConfig::STOCK);
        assert_eq!(a, b);
        assert!(a.rs_skipped > 0);
    }

    #[test]
    fn every_frame_corrected_at_8_and_16_errors() {
        let base = aqua_cadus();
        for e in [8usize, 16] {
            let s = make_cadu_stream(&base, 1100, e, 100 + e as u64);
            let c = ccsds_decode_bytes(&s);
            assert_eq!(c.frames_out, 1100, "e={e}");
            assert_eq!(c.rs_corrected, 1100, "e={e}: {c:?}");
            assert_eq!(c.rs_ok + c.rs_uncorrectable + c.rs_skipped, 0, "e={e}");
        }
    }

    #[test]
    fn seventeen_errors_are_uncorrectable() {
        let s = make_cadu_stream(&aqua_cadus(), 200, 17, 5);
        let c = ccsds_decode_bytes(&s);
        assert_eq!(c.frames_out, 200);
        assert_eq!(c.rs_uncorrectable, 200, "{c:?}");
    }

    /// Codeword-level check with the RS decoder the crate uses (`rs2`): after PN removal every
    /// codeword reports exactly `e` corrected symbols and the corrected frame equals the clean
    /// one.
    #[test]
    fn each_codeword_corrects_exactly_e_symbols() {
        let base = aqua_cadus();
        let pn = DefaultDerandomizer;
        for e in [0usize, 8, 16] {
            let s = make_cadu_stream(&base, 300, e, 9 + e as u64);
            for (noisy, clean) in s.chunks_exact(CADU_LEN).zip(base.chunks_exact(CADU_LEN)) {
                let noisy = pn.derandomize(&noisy[4..]);
                let clean = pn.derandomize(&clean[4..]);
                for cw in 0..4 {
                    let sym: Vec<u8> = noisy.iter().skip(cw).step_by(4).copied().collect();
                    let want: Vec<u8> = clean.iter().skip(cw).step_by(4).copied().collect();
                    let out = rs2::correct_message(&sym);
                    let expected = if e == 0 {
                        rs2::RSState::Ok
                    } else {
                        rs2::RSState::Corrected(e as i32)
                    };
                    assert_eq!(out.state, expected);
                    assert_eq!(out.message.unwrap(), want);
                }
            }
        }
    }

    /// Gotcha: `DecodedFrame::frame.header` is decoded *before* RS, so on frames whose header
    /// bytes were hit it disagrees with the corrected data, and in stock mode some data frames
    /// whose VCID was corrupted to 63 are passed through uncorrected as `Skipped`.
    #[test]
    fn frame_decoder_header_is_pre_rs() {
        let base = aqua_cadus();
        let s = make_cadu_stream(&base, 4092, 8, 77);
        let blocks = Synchronizer::new(Cursor::new(s), BLOCK_LEN)
            .into_iter()
            .filter_map(Result::ok);
        let frames: Vec<_> = FrameDecoder::new()
            .with_integrity(Box::new(RsEveryFrame(DefaultReedSolomon::new(INTERLEAVE))))
            .with_derandomization(Box::new(DefaultDerandomizer))
            .with_integrity_threads(1)
            .decode(blocks)
            .map(Result::unwrap)
            .collect();
        assert_eq!(frames.len(), 4092);
        let stale = frames
            .iter()
            .filter(|f| VCDUHeader::decode(&f.frame.data).unwrap() != f.frame.header)
            .count();
        // Each of the 6 header bytes is hit with probability 8/255: 1-(1-8/255)^6 = 17.5 %.
        assert!((500..1000).contains(&stale), "stale headers: {stale}");

        let clean =
            ccsds_decode_bytes_with(&make_cadu_stream(&base, 4092, 0, 0), &PeerConfig::STOCK);
        let noisy =
            ccsds_decode_bytes_with(&make_cadu_stream(&base, 4092, 8, 77), &PeerConfig::STOCK);
        assert_eq!(clean.rs_skipped, 4 * AQUA_FILL);
        assert_ne!(noisy.rs_skipped, clean.rs_skipped);
    }

    #[test]
    fn garbage_and_empty_input_do_not_panic() {
        assert_eq!(ccsds_decode_bytes(&[]), PeerCounts::default());
        let c = ccsds_decode_bytes(&[0x5a; 10_000]);
        assert_eq!(c.frames_out, 0);
        // Gotcha: a truncated last CADU is NOT dropped: the crate's `Synchronizer::block` ignores
        // the EOF from `read_exact` and yields a block of zeros, which becomes a frame -- and
        // passes RS as `Ok` (all-zero on air = the PN sequence after derandomization, which is a
        // valid codeword).
        let s = make_cadu_stream(&aqua_cadus(), 3, 0, 0);
        let c = ccsds_decode_bytes(&s[..s.len() - 10]);
        assert_eq!(c.frames_out, 3);
        assert_eq!(c.rs_ok, 3);
    }
}
