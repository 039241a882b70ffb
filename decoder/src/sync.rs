//! Frame synchronizer: an unaligned hard-decision bit stream in, frames out.
//!
//! Implements the receiving side of CCSDS 131.0-B-4 (TM Synchronization and Channel Coding)
//! **section 9, "Frame synchronization"**: every transfer frame (or RS/LDPC codeblock) is
//! preceded by an Attached Sync Marker, `0x1ACFFC1D` for uncoded/RS/convolutional links
//! (section 9.3.3). The acquisition strategy — search, confirm, lock, flywheel — follows the
//! usual ground-station practice described in CCSDS 130.1-G (the TM coding green book) and in
//! NASA's RT-STPS frame synchronizer. Input is bytes, bits MSB first, with no assumption about
//! where the marker lies inside a byte. Sans-IO: [`Synchronizer::push`] bytes,
//! [`Synchronizer::poll`] [`SyncEvent`]s, [`Synchronizer::finish`] at end of stream.
//!
//! # States
//! Notation: `L` = `asm_bits`, `P` = `L + 8 * frame_len` (the period, bits from one ASM to the
//! next). All positions are bit offsets in the whole input stream (`stream_bit`).
//!
//! - **SEARCH** — the marker (or its bitwise inverse, when `allow_inverted`) is looked for at
//!   *every* bit offset (only byte offsets when `byte_aligned`) with at most `search_tolerance`
//!   bit errors; the earliest offset wins. Because `2 * tolerance < L` is enforced, a window can
//!   never match both polarities. A hit at `h` moves to CHECK.
//! - **CHECK** — the marker must reappear, same polarity, at `h + P`, `h + 2P`, …
//!   (`check_frames` times, `check_tolerance` errors). Only then is a [`SyncEvent::Locked`]
//!   emitted, followed by the `check_frames` frames starting at `h`. A failed check is a false
//!   alarm: SEARCH resumes one bit after `h` (one byte when `byte_aligned`). At `finish()` a check
//!   that would need bits beyond the end of the stream fails the same way, so a stream shorter
//!   than `check_frames` periods plus one marker never locks.
//! - **LOCK** — at the expected position `e` (one period after the previous marker):
//!   1. marker within `lock_tolerance` → frame;
//!   2. else, if `allow_inverted`, the *inverted* marker within `lock_tolerance` at `e` →
//!      [`SyncEvent::PolarityChanged`] and the frame, re-inverted;
//!   3. else the marker (current polarity) at `e ± 1 ..= e ± max_slip_bits`; the fewest errors
//!      wins, ties go to the smaller slip, then to `+` (bits inserted) → frame with
//!      `slip_bits` set, and the next expected position follows the slipped marker;
//!   4. else **FLYWHEEL**: the frame at `e` is coasted (`flywheel = true`, `asm_bit_errors` is
//!      the count at `e`) and the next period is examined the same way. A marker found by
//!      rules 1–3 returns to LOCK. After `flywheel_frames` consecutive coasted frames, the next
//!      miss declares [`SyncEvent::Lost`].
//!
//! # Where SEARCH restarts after a loss
//! Coasted frames are **held back** (at most `flywheel_frames` of them) until the flywheel
//! resolves: when a marker is found again they are emitted (in order, before the new frame);
//! when sync is lost they are **dropped, not emitted**, and SEARCH restarts at the first coasted
//! position `q0` — that is the `stream_bit` of [`SyncEvent::Lost`]. Nothing at or after `q0` has
//! been emitted, so no bit is ever emitted twice; and a real frame whose marker lies anywhere
//! after the last frame emitted with a marker is found again by SEARCH (e.g. after garbage of any
//! length was inserted into the stream). The only frames that cannot be recovered are those
//! whose marker lies *inside* a frame already emitted (bits deleted from a locked stream by more
//! than `max_slip_bits`): recovering them would emit those bits twice.
//!
//! At `finish()` held coasted frames are emitted (the flywheel was not exhausted), and the bits
//! from the expected position to the end of the stream are reported as
//! [`SyncEvent::Truncated`] (if any).
//!
//! # Accounting identity
//! [`SyncEvent::Discarded`] aggregates one contiguous run of bits skipped while searching; it is
//! emitted when the run ends (at the next `Locked`) or at `finish()`. The counter
//! [`SyncStats::bits_discarded`] is updated live, as the search advances. A slip of `+s` skips
//! `s` bits ([`SyncStats::slip_bits_skipped`]); a slip of `-s` starts the marker `s` bits before
//! the end of the previous frame, so those bits serve twice ([`SyncStats::slip_bits_reused`]).
//! Every frame accounts for `P` bits (its marker and its data). After `finish()` and polling
//! until `None`:
//!
//! ```text
//! 8 * bytes_in + slip_bits_reused
//!     == bits_discarded + P * frames + truncated_bits + slip_bits_skipped
//! ```
//! and `frames == lock_frames + flywheel_frames == true_frames + inverted_frames`.
//!
//! # Chunking and memory
//! Every decision waits until the bits it needs are present (a LOCK decision waits for the whole
//! frame plus `max_slip_bits`), and never looks further, so the event sequence is identical
//! whatever sizes the input is pushed in. Bits that can no longer be part of a frame are dropped:
//! the buffer holds at most the unprocessed input plus `max(check_frames, flywheel_frames) + 1`
//! periods, plus up to 4 KiB of dead bytes not yet compacted (compaction is amortized: it runs
//! when `poll` returns `None` and at `push`, and moves only the live tail). Garbage of any
//! length does not grow it ([`Synchronizer::buffered_len`]). Poll until `None` between pushes,
//! or the pushed bytes simply accumulate.
//!
//! # Records
//! An archive keeps the CADUs it synchronized back to back (`cadus.raw`), each whole, marker
//! first and polarity corrected. [`Synchronizer::take_record`] takes such a record as it stands,
//! neither buffered nor copied: as the frame rule 1 of LOCK finds at the expected position, and
//! from SEARCH as a lock at once (a record needs no CHECK: whoever wrote it had locked). Bytes
//! pushed after records go on in LOCK from the end of the last one, so a damaged record is
//! coasted, slipped or lost like any frame; records after pushed bytes are refused while any
//! bit is held. The accounting identity holds either way.
//!
//! # Speed
//! Frame data are realigned with a 64-bit shift-and-or. SEARCH computes, per block of 512 bit
//! offsets, the popcount of `window XOR marker` for every offset in a form the compiler
//! vectorizes; the same Rust code is compiled a second time with AVX2+POPCNT enabled and chosen
//! at run time (`is_x86_feature_detected!`), bit-identical to the portable path. Byte-aligned
//! exact search uses `memchr::memmem`.

use std::collections::VecDeque;
use std::fmt;

use crate::error::Error;
use bytes::BytesMut;
use memchr::memmem;

/// The CCSDS 32-bit attached sync marker (CCSDS 131.0-B-4 §9.3.3).
pub const CCSDS_ASM: u64 = 0x1ACF_FC1D;

/// Largest accepted `frame_len` (bytes after the marker).
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Frames' data are carved from blocks of this many frames (one allocation per block).
const FRAMES_PER_POOL: usize = 64;
/// Compact the input buffer only when at least this many bytes are dead (amortization).
const COMPACT_MIN: usize = 4096;
/// Byte offsets examined per search-kernel block (8 bit offsets each).
const BLOCK: usize = 64;
/// Bytes a kernel block reads: 64 windows of 8 bytes, plus one byte so that every window of up
/// to 64 bits starting in the block fits.
const BLOCK_BYTES: usize = BLOCK + 8;

/// Frame-synchronizer configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncParams {
    /// The marker, right-aligned in the `u64` (the first transmitted bit is bit `asm_bits - 1`).
    pub asm: u64,
    /// Marker length in bits, 8..=64 (32 for CCSDS `0x1ACFFC1D`).
    pub asm_bits: u8,
    /// Bytes after the marker (1020 for a 1024-byte CADU).
    pub frame_len: usize,
    /// Max marker bit errors accepted in SEARCH.
    pub search_tolerance: u8,
    /// Max marker bit errors accepted when confirming in CHECK.
    pub check_tolerance: u8,
    /// Max marker bit errors accepted at the expected position in LOCK/FLYWHEEL (and at the
    /// slipped positions).
    pub lock_tolerance: u8,
    /// Consecutive confirmations needed before LOCK (>= 1).
    pub check_frames: u8,
    /// Frames coasted with a missing marker before the next miss declares loss.
    pub flywheel_frames: u8,
    /// 0..=2: also look at the expected position ±1..=max bits.
    pub max_slip_bits: u8,
    /// Accept the inverted marker (BPSK 180° ambiguity) and invert the frame.
    pub allow_inverted: bool,
    /// Input is known to be byte-aligned: SEARCH only looks at byte offsets (memmem fast path
    /// when `search_tolerance == 0`). LOCK still follows slips, if allowed.
    pub byte_aligned: bool,
}

impl Default for SyncParams {
    /// CCSDS marker, 1024-byte CADUs (1020 bytes after the marker), and these tolerances:
    ///
    /// - `search_tolerance: 2` — random data match a 32-bit marker with ≤ 2 errors (either
    ///   polarity) at ~2.5e-7 of bit offsets (a false alarm every ~500 KB, each rejected by
    ///   CHECK), while a marker is missed only when ≥ 3 of its 32 bits are wrong (~5e-6 at a
    ///   post-Viterbi BER of 1e-3).
    /// - `check_tolerance: 3` — a false alarm also passes CHECK with probability ~1.3e-6.
    /// - `lock_tolerance: 4` — once the position is known, a random window passes only with
    ///   probability ~4e-5, and the marker's own sidelobes are far away (shifted by 1 or 2 bits
    ///   it differs from itself in 11 and 13 bits), so slips cannot be mistaken for errors.
    fn default() -> Self {
        SyncParams {
            asm: CCSDS_ASM,
            asm_bits: 32,
            frame_len: 1020,
            search_tolerance: 2,
            check_tolerance: 3,
            lock_tolerance: 4,
            check_frames: 1,
            flywheel_frames: 3,
            max_slip_bits: 2,
            allow_inverted: true,
            byte_aligned: false,
        }
    }
}

impl SyncParams {
    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &'static str, value: u64, expected: &'static str| {
            Err(Error::SyncParam {
                field,
                value,
                expected,
            })
        };
        if !(8..=64).contains(&self.asm_bits) {
            return bad("asm_bits", self.asm_bits.into(), "8..=64");
        }
        if self.asm_bits < 64 && self.asm >> self.asm_bits != 0 {
            return bad("asm", self.asm, "a value that fits in asm_bits bits");
        }
        if self.frame_len == 0 || self.frame_len > MAX_FRAME_LEN {
            return bad(
                "frame_len",
                self.frame_len as u64,
                "1..=1048576 (MAX_FRAME_LEN)",
            );
        }
        for (field, tol) in [
            ("search_tolerance", self.search_tolerance),
            ("check_tolerance", self.check_tolerance),
            ("lock_tolerance", self.lock_tolerance),
        ] {
            if u32::from(tol) * 2 >= u32::from(self.asm_bits) {
                return bad(field, tol.into(), "less than asm_bits / 2");
            }
        }
        if self.check_frames == 0 {
            return bad("check_frames", 0, "at least 1");
        }
        if self.max_slip_bits > 2 {
            return bad("max_slip_bits", self.max_slip_bits.into(), "0..=2");
        }
        Ok(())
    }

    /// Bits from one marker to the next: `asm_bits + 8 * frame_len`.
    pub fn period_bits(&self) -> u64 {
        u64::from(self.asm_bits) + 8 * self.frame_len as u64
    }
}

/// Synchronizer state, see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncState {
    /// Looking for a marker at any offset.
    Search,
    /// A marker was found; waiting for it to repeat one period later.
    Check,
    /// Markers found where expected.
    Lock,
    /// Coasting over missing markers.
    Flywheel,
}

/// One frame, realigned to bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedFrame {
    /// Exactly `frame_len` bytes following the marker, realigned, polarity-corrected.
    /// Frames are carved from shared blocks of 64 frames (one allocation per block; each frame
    /// is independently mutable); a block is freed when all its frames are dropped.
    pub data: BytesMut,
    /// Bit position of the marker's first bit in the whole input stream.
    pub stream_bit: u64,
    /// The marker (and so the frame) arrived inverted; `data` has been re-inverted.
    pub inverted: bool,
    /// Marker bit errors (for flywheel frames: the count at the expected position).
    pub asm_bit_errors: u8,
    /// Slip applied at this frame, -2..=2 (positive: bits were inserted before the marker).
    pub slip_bits: i8,
    /// The marker was not found; the frame was emitted by coasting.
    pub flywheel: bool,
}

/// What [`Synchronizer::poll`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// A frame.
    Frame(SyncedFrame),
    /// CHECK succeeded; the frames from `stream_bit` on follow.
    Locked {
        /// Position of the first confirmed marker.
        stream_bit: u64,
        /// Polarity of the lock.
        inverted: bool,
    },
    /// The flywheel was exhausted; SEARCH restarts at `stream_bit` (the first coasted,
    /// never-emitted position).
    Lost {
        /// Where SEARCH restarts.
        stream_bit: u64,
    },
    /// The inverted marker was found at the expected position while locked.
    PolarityChanged {
        /// Position of that marker.
        stream_bit: u64,
        /// New polarity.
        inverted: bool,
    },
    /// A contiguous run of bits skipped while searching.
    Discarded {
        /// First skipped bit.
        stream_bit: u64,
        /// Number of bits skipped.
        bits: u64,
    },
    /// At `finish()`: an incomplete trailing frame (from its expected marker position).
    Truncated {
        /// Expected marker position.
        stream_bit: u64,
        /// Bits present from there to the end of the stream.
        bits: u64,
    },
}

/// Counters, see the accounting identity in the module documentation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Bytes accepted by `push`.
    pub bytes_in: u64,
    /// Frames emitted.
    pub frames: u64,
    /// Frames emitted with their marker found.
    pub lock_frames: u64,
    /// Frames emitted by coasting.
    pub flywheel_frames: u64,
    /// Frames whose marker was found at a slipped position.
    pub slipped_frames: u64,
    /// Frames of normal polarity.
    pub true_frames: u64,
    /// Frames that arrived inverted.
    pub inverted_frames: u64,
    /// `Locked` events.
    pub locks: u64,
    /// `Lost` events.
    pub lost: u64,
    /// Bits skipped while searching (updated live).
    pub bits_discarded: u64,
    /// Bits reported in `Truncated`.
    pub truncated_bits: u64,
    /// Bits skipped by positive slips.
    pub slip_bits_skipped: u64,
    /// Bits used twice by negative slips.
    pub slip_bits_reused: u64,
}

/// Search kernel implementation (chosen at run time; both give identical results).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("popcnt") {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Search,
    Check {
        hit: u64,
        inverted: bool,
        errors: u8,
        confirmed: u8,
    },
    Lock {
        expected: u64,
        inverted: bool,
        /// Consecutive coasted frames held back, at `expected - k * P` for `k in 1..=misses`.
        misses: u8,
        /// Errors already measured at `expected` by CHECK (same polarity).
        verified: Option<u8>,
    },
}

/// A search hit, position relative to the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hit {
    rel: usize,
    errors: u8,
    inverted: bool,
}

/// Everything the search kernels need, by value.
#[derive(Clone, Copy, Debug)]
struct Matcher {
    asm: u64,
    bits: u32,
    tol: u32,
    allow_inverted: bool,
    /// Prefilter on the first `min(bits, 32)` marker bits (exact for `bits <= 32`).
    pf_asm: u64,
    pf_shr: u32,
    pf_lo: u32,
    pf_span: u32,
}

impl Matcher {
    fn new(asm: u64, bits: u8, tol: u8, allow_inverted: bool) -> Matcher {
        let bits = u32::from(bits);
        let tol = u32::from(tol);
        let pbits = bits.min(32);
        let pf_asm = asm >> (bits - pbits);
        // A prefix count `c` can belong to a match iff c <= tol, or (inverted) c >= pbits - tol.
        // Written as one unsigned compare: no match iff c - (tol + 1) < span.
        // (Saturating: with a long marker and a huge tolerance the prefilter passes everything,
        // which is slow but still exact, since hits are verified on the whole marker.)
        let pf_span = if allow_inverted {
            pbits.saturating_sub(2 * tol + 1)
        } else {
            pbits.saturating_sub(tol)
        };
        Matcher {
            asm,
            bits,
            tol,
            allow_inverted,
            pf_asm,
            pf_shr: 64 - pbits,
            pf_lo: tol + 1,
            pf_span,
        }
    }

    /// Full classification of a `bits`-bit window.
    #[inline]
    fn classify(&self, w: u64) -> Option<(u8, bool)> {
        let d = (w ^ self.asm).count_ones();
        if d <= self.tol {
            Some((d as u8, false))
        } else if self.allow_inverted && self.bits - d <= self.tol {
            Some(((self.bits - d) as u8, true))
        } else {
            None
        }
    }

    #[inline]
    fn check_at(&self, buf: &[u8], rel: usize) -> Option<Hit> {
        let w = window(buf, rel, self.bits)?;
        let (errors, inverted) = self.classify(w)?;
        Some(Hit {
            rel,
            errors,
            inverted,
        })
    }
}

/// The `bits`-bit window starting at bit `rel` of `buf` (MSB first), right-aligned.
#[inline]
fn window(buf: &[u8], rel: usize, bits: u32) -> Option<u64> {
    let k = rel / 8;
    let s = (rel % 8) as u32;
    let nbytes = (s + bits).div_ceil(8) as usize;
    let src = buf.get(k..k.checked_add(nbytes)?)?;
    let mut a = [0u8; 16];
    a.get_mut(..src.len())?.copy_from_slice(src);
    let v = u128::from_be_bytes(a);
    Some(((v << s) >> (128 - bits)) as u64)
}

#[inline(always)]
fn load_be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    if let Some(src) = b.get(..8) {
        a.copy_from_slice(src);
    }
    u64::from_be_bytes(a)
}

/// Whether any of the 512 bit offsets of a block passes the prefilter. Written as plain
/// element-wise loops over fixed-size arrays of `u32` lanes so that the compiler vectorizes it:
/// the 32-bit window at bit offset `8i + j` is `(A[i] << j) | (B[i] >> (8 - j))`, with `A[i]` the
/// four bytes at `i` and `B[i]` the fifth.
#[inline(always)]
fn block_any(block: &[u8], m: &Matcher) -> bool {
    let mut a = [0u32; BLOCK];
    let mut b = [0u32; BLOCK];
    for ((sa, sb), win) in a.iter_mut().zip(b.iter_mut()).zip(block.windows(5)) {
        if let [b0, b1, b2, b3, b4] = *win {
            *sa = u32::from_be_bytes([b0, b1, b2, b3]);
            *sb = u32::from(b4);
        }
    }
    let asm = m.pf_asm as u32;
    let shr = m.pf_shr - 32;
    let mut acc = 0u32;
    for j in 0..8u32 {
        for (&x, &y) in a.iter().zip(b.iter()) {
            let w = ((x << j) | (y >> (8 - j))) >> shr;
            let c = (w ^ asm).count_ones();
            acc |= u32::from(c.wrapping_sub(m.pf_lo) >= m.pf_span);
        }
    }
    acc != 0
}

/// Scans blocks starting at byte `k` while `k < k_end`; returns the first block whose
/// prefilter fires (if any) and where the scan stopped.
#[inline(always)]
fn scan_blocks_impl(buf: &[u8], mut k: usize, k_end: usize, m: &Matcher) -> (Option<usize>, usize) {
    while k < k_end {
        let Some(block) = buf.get(k..k + BLOCK_BYTES) else {
            break;
        };
        if block_any(block, m) {
            return (Some(k), k);
        }
        k += BLOCK;
    }
    (None, k)
}

fn scan_blocks_portable(buf: &[u8], k: usize, k_end: usize, m: &Matcher) -> (Option<usize>, usize) {
    scan_blocks_impl(buf, k, k_end, m)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
fn scan_blocks_avx2(buf: &[u8], k: usize, k_end: usize, m: &Matcher) -> (Option<usize>, usize) {
    scan_blocks_impl(buf, k, k_end, m)
}

#[allow(unsafe_code)]
fn scan_blocks(
    kernel: Kernel,
    buf: &[u8],
    k: usize,
    k_end: usize,
    m: &Matcher,
) -> (Option<usize>, usize) {
    match kernel {
        Kernel::Portable => scan_blocks_portable(buf, k, k_end, m),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Kernel::Avx2` is only ever selected after `is_x86_feature_detected!`
        // reported both `avx2` and `popcnt` on this CPU (see `Kernel::detect`).
        Kernel::Avx2 => unsafe { scan_blocks_avx2(buf, k, k_end, m) },
    }
}

/// Earliest match at a bit offset `>= from` (relative to `buf`), or the first offset that could
/// not be examined yet.
fn find_bits(buf: &[u8], from: usize, m: &Matcher, kernel: Kernel) -> Result<Hit, usize> {
    let total = buf.len().saturating_mul(8);
    // Offsets `o < limit` have a whole window in the buffer.
    let Some(limit) = (total + 1).checked_sub(m.bits as usize) else {
        return Err(from);
    };
    if from >= limit {
        return Err(from);
    }
    let mut o = from;
    while !o.is_multiple_of(8) && o < limit {
        if let Some(h) = m.check_at(buf, o) {
            return Ok(h);
        }
        o += 1;
    }
    if o < limit {
        let mut k = o / 8;
        // Block at `k` reads bytes k..k+72: every offset in it has a whole window.
        let k_end = buf.len().saturating_sub(BLOCK_BYTES - 1);
        loop {
            let (flagged, stop) = scan_blocks(kernel, buf, k, k_end, m);
            k = stop;
            let Some(kb) = flagged else { break };
            for off in kb * 8..(kb + BLOCK) * 8 {
                if let Some(h) = m.check_at(buf, off) {
                    return Ok(h);
                }
            }
            // Prefilter false positive (markers longer than 32 bits only).
            k = kb + BLOCK;
        }
        o = o.max(k * 8);
    }
    while o < limit {
        if let Some(h) = m.check_at(buf, o) {
            return Ok(h);
        }
        o += 1;
    }
    Err(limit.max(from))
}

/// Exact byte-aligned finders for the marker and (optionally) its inverse.
#[derive(Clone)]
struct Finders {
    asm: memmem::Finder<'static>,
    inv: Option<memmem::Finder<'static>>,
    len: usize,
}

/// Earliest match at a byte offset, starting at bit `from` rounded up to a byte.
fn find_bytes(
    buf: &[u8],
    from: usize,
    m: &Matcher,
    finders: Option<&Finders>,
) -> Result<Hit, usize> {
    let k0 = from.div_ceil(8);
    let Some(hay) = buf.get(k0..) else {
        return Err(from);
    };
    if let Some(f) = finders {
        let a = f.asm.find(hay);
        let limit = a.map_or(hay.len(), |a| (a + f.len - 1).min(hay.len()));
        let i = f
            .inv
            .as_ref()
            .and_then(|inv| hay.get(..limit).and_then(|h| inv.find(h)));
        let hit = match (a, i) {
            (_, Some(i)) => Some((i, true)),
            (Some(a), None) => Some((a, false)),
            (None, None) => None,
        };
        return match hit {
            Some((idx, inverted)) => Ok(Hit {
                rel: (k0 + idx) * 8,
                errors: 0,
                inverted,
            }),
            None => Err(((k0 + (hay.len() + 1).saturating_sub(f.len)) * 8).max(from)),
        };
    }
    let shift = 64 - m.bits;
    let mut k = k0;
    for win in hay.windows(8) {
        if let Some((errors, inverted)) = m.classify(load_be64(win) >> shift) {
            return Ok(Hit {
                rel: k * 8,
                errors,
                inverted,
            });
        }
        k += 1;
    }
    // Fewer than 8 bytes left: shorter markers may still fit.
    while k * 8 + m.bits as usize <= buf.len() * 8 {
        if let Some(h) = m.check_at(buf, k * 8) {
            return Ok(h);
        }
        k += 1;
    }
    Err((k * 8).max(from))
}

/// Copies `out.len()` bytes starting at bit `bit` of `src`, XOR-ing with 0xFF if `invert`.
/// Returns false (leaving `out` untouched) if `src` is too short.
fn extract_bits(src: &[u8], bit: usize, out: &mut [u8], invert: bool) -> bool {
    let n = out.len();
    let k = bit / 8;
    let s = (bit % 8) as u32;
    let mask64 = if invert { u64::MAX } else { 0 };
    let mask8 = mask64 as u8;
    if s == 0 {
        let Some(src) = src.get(k..k + n) else {
            return false;
        };
        if invert {
            for (o, i) in out.iter_mut().zip(src) {
                *o = !*i;
            }
        } else {
            out.copy_from_slice(src);
        }
        return true;
    }
    let Some(src) = src.get(k..=k + n) else {
        return false;
    };
    let mut out_chunks = out.chunks_exact_mut(8);
    let nexts = src.get(8..).unwrap_or(&[]).iter().step_by(8);
    for ((o, c), &nb) in (&mut out_chunks).zip(src.chunks_exact(8)).zip(nexts) {
        let v = (load_be64(c) << s) | u64::from(nb >> (8 - s));
        o.copy_from_slice(&(v ^ mask64).to_be_bytes());
    }
    let rest = out_chunks.into_remainder();
    let done = n - rest.len();
    let tail = src.get(done..).unwrap_or(&[]);
    for (o, pair) in rest.iter_mut().zip(tail.windows(2)) {
        if let [a, b] = *pair {
            *o = ((a << s) | (b >> (8 - s))) ^ mask8;
        }
    }
    true
}

/// The frame synchronizer. See the module documentation.
pub struct Synchronizer {
    p: SyncParams,
    period: u64,
    bits: u32,
    search: Matcher,
    finders: Option<Finders>,
    kernel: Kernel,
    buf: Vec<u8>,
    /// Stream byte index of `buf[0]`.
    base_byte: u64,
    mode: Mode,
    /// SEARCH: next offset to examine (bits before it in the current run are discarded).
    search_pos: u64,
    /// Start of the current discarded run.
    run_start: u64,
    finished: bool,
    done: bool,
    events: VecDeque<SyncEvent>,
    pool: BytesMut,
    stats: SyncStats,
}

impl fmt::Debug for Synchronizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Synchronizer")
            .field("params", &self.p)
            .field("state", &self.state())
            .field("kernel", &self.kernel)
            .field("buffered", &self.buf.len())
            .field("pending_events", &self.events.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Synchronizer {
    /// Validates `p` and builds a synchronizer in SEARCH.
    pub fn new(p: SyncParams) -> Result<Self, Error> {
        p.validate()?;
        let search = Matcher::new(p.asm, p.asm_bits, p.search_tolerance, p.allow_inverted);
        let finders = (p.byte_aligned && p.search_tolerance == 0 && p.asm_bits.is_multiple_of(8))
            .then(|| {
                let n = usize::from(p.asm_bits / 8);
                let bytes = p.asm.to_be_bytes();
                let pat = bytes.get(8 - n..).unwrap_or(&[]).to_vec();
                let inv: Vec<u8> = pat.iter().map(|b| !b).collect();
                Finders {
                    asm: memmem::Finder::new(&pat).into_owned(),
                    inv: p
                        .allow_inverted
                        .then(|| memmem::Finder::new(&inv).into_owned()),
                    len: n,
                }
            });
        Ok(Synchronizer {
            period: p.period_bits(),
            bits: u32::from(p.asm_bits),
            search,
            finders,
            kernel: Kernel::detect(),
            buf: Vec::new(),
            base_byte: 0,
            mode: Mode::Search,
            search_pos: 0,
            run_start: 0,
            finished: false,
            done: false,
            events: VecDeque::new(),
            pool: BytesMut::new(),
            stats: SyncStats::default(),
            p,
        })
    }

    /// The parameters in use.
    pub fn params(&self) -> &SyncParams {
        &self.p
    }

    /// Appends input bytes (bits MSB first). Ignored after [`finish`](Self::finish).
    pub fn push(&mut self, data: &[u8]) {
        if self.finished || data.is_empty() {
            return;
        }
        self.compact();
        self.buf.extend_from_slice(data);
        self.stats.bytes_in += data.len() as u64;
    }

    /// Takes one whole CADU standing where the stream now is, without buffering or copying
    /// it: a record of an archive's `cadus.raw`, which a synchronizer wrote marker first, whole
    /// and polarity corrected (see "Records" in the module documentation). It is taken only
    /// when it is exactly one period of whole bytes starting with the exact marker, and the
    /// synchronizer holds no pushed bits: it is in SEARCH with everything before discarded, or
    /// in LOCK (true polarity, no coasted frame) expecting the next marker exactly here. It
    /// then counts as a frame found in LOCK by rule 1, with no marker error. Returns its stream
    /// bit and whether it starts a lock (from SEARCH: no CHECK; the caller reports the
    /// `Locked`), or `None` with nothing changed: then push it, and the rest of the stream.
    pub fn take_record(&mut self, raw: &[u8]) -> Option<(u64, bool)> {
        if self.finished
            || self.done
            || !self.buf.is_empty()
            || !self.events.is_empty()
            || !self.bits.is_multiple_of(8)
            || raw.len() as u64 * 8 != self.period
            || window(raw, 0, self.bits) != Some(self.p.asm)
        {
            return None;
        }
        let pos = self.base_bit();
        let locks = match self.mode {
            // Nothing was discarded and not yet reported (at the start, or after records).
            Mode::Search if self.search_pos == pos && self.run_start == pos => true,
            Mode::Lock {
                expected,
                inverted: false,
                misses: 0,
                verified: None,
            } if expected == pos => false,
            _ => return None,
        };
        if locks {
            self.stats.locks += 1;
        }
        self.base_byte += raw.len() as u64;
        let end = self.base_bit();
        self.search_pos = end;
        self.run_start = end;
        let s = &mut self.stats;
        s.bytes_in += raw.len() as u64;
        s.frames += 1;
        s.lock_frames += 1;
        s.true_frames += 1;
        self.mode = Mode::Lock {
            expected: end,
            inverted: false,
            misses: 0,
            verified: None,
        };
        Some((pos, locks))
    }

    /// Declares the end of the stream; [`poll`](Self::poll) then drains the remaining events.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Next event, doing the work lazily; `None` means more input is needed (or, after
    /// `finish()`, that everything has been reported).
    pub fn poll(&mut self) -> Option<SyncEvent> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Some(ev);
            }
            if !self.step() {
                // Waiting for input: a good moment to drop dead bytes.
                self.compact();
                return None;
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> SyncStats {
        self.stats
    }

    /// Current state.
    pub fn state(&self) -> SyncState {
        match self.mode {
            Mode::Search => SyncState::Search,
            Mode::Check { .. } => SyncState::Check,
            Mode::Lock { misses: 0, .. } => SyncState::Lock,
            Mode::Lock { .. } => SyncState::Flywheel,
        }
    }

    /// Bytes of input currently held (unprocessed input plus the frames still needed).
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Allocated size of the input buffer.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Name of the search kernel in use ("avx2" or "portable").
    pub fn kernel_name(&self) -> &'static str {
        match self.kernel {
            Kernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
        }
    }

    /// Forces the portable search kernel (for benchmarks and tests; results are identical).
    #[doc(hidden)]
    pub fn force_portable_kernel(&mut self) {
        self.kernel = Kernel::Portable;
    }

    // ----- internals -------------------------------------------------------------------

    fn base_bit(&self) -> u64 {
        self.base_byte * 8
    }

    fn end_bit(&self) -> u64 {
        self.base_bit() + self.buf.len() as u64 * 8
    }

    fn rel(&self, abs: u64) -> Option<usize> {
        usize::try_from(abs.checked_sub(self.base_bit())?).ok()
    }

    fn window_at(&self, abs: u64) -> Option<u64> {
        window(&self.buf, self.rel(abs)?, self.bits)
    }

    /// Marker bit errors at `abs` for the given polarity (`None` if not in the buffer).
    fn errors_at(&self, abs: u64, inverted: bool) -> Option<u32> {
        let d = (self.window_at(abs)? ^ self.p.asm).count_ones();
        Some(if inverted { self.bits - d } else { d })
    }

    /// First stream bit still needed.
    fn keep_from(&self) -> u64 {
        match self.mode {
            Mode::Search => self.search_pos,
            Mode::Check { hit, .. } => hit,
            Mode::Lock {
                expected, misses, ..
            } => (expected - u64::from(misses) * self.period)
                .saturating_sub(u64::from(self.p.max_slip_bits)),
        }
    }

    fn compact(&mut self) {
        let keep_byte = (self.keep_from() / 8).saturating_sub(self.base_byte);
        let dead = usize::try_from(keep_byte)
            .unwrap_or(usize::MAX)
            .min(self.buf.len());
        if dead >= COMPACT_MIN && dead * 2 >= self.buf.len() {
            self.buf.drain(..dead);
            self.base_byte += dead as u64;
            let floor = self.buf.len().max(1 << 16);
            if self.buf.capacity() > 4 * floor {
                self.buf.shrink_to(2 * floor);
            }
        }
    }

    fn advance_discard(&mut self, to: u64) {
        if to > self.search_pos {
            self.stats.bits_discarded += to - self.search_pos;
            self.search_pos = to;
        }
    }

    fn close_run(&mut self, end: u64) {
        let bits = end.saturating_sub(self.run_start);
        if bits > 0 {
            self.events.push_back(SyncEvent::Discarded {
                stream_bit: self.run_start,
                bits,
            });
        }
        self.run_start = end;
    }

    /// One unit of work; false when nothing more can be done with the input at hand.
    fn step(&mut self) -> bool {
        if self.done {
            return false;
        }
        match self.mode {
            Mode::Search => self.step_search(),
            Mode::Check {
                hit,
                inverted,
                errors,
                confirmed,
            } => self.step_check(hit, inverted, errors, confirmed),
            Mode::Lock {
                expected,
                inverted,
                misses,
                verified,
            } => self.step_lock(expected, inverted, misses, verified),
        }
    }

    fn step_search(&mut self) -> bool {
        let base = self.base_bit();
        let Some(from) = self.rel(self.search_pos) else {
            return false;
        };
        let found = if self.p.byte_aligned {
            find_bytes(&self.buf, from, &self.search, self.finders.as_ref())
        } else {
            find_bits(&self.buf, from, &self.search, self.kernel)
        };
        match found {
            Ok(h) => {
                let pos = base + h.rel as u64;
                self.advance_discard(pos);
                self.mode = Mode::Check {
                    hit: pos,
                    inverted: h.inverted,
                    errors: h.errors,
                    confirmed: 0,
                };
                true
            }
            Err(next) => {
                self.advance_discard(base + next as u64);
                if !self.finished {
                    return false;
                }
                let end = self.end_bit();
                self.advance_discard(end);
                self.close_run(end);
                self.done = true;
                true
            }
        }
    }

    fn step_check(&mut self, hit: u64, inverted: bool, errors: u8, confirmed: u8) -> bool {
        let pos = hit + (u64::from(confirmed) + 1) * self.period;
        if pos + u64::from(self.bits) > self.end_bit() {
            if !self.finished {
                return false;
            }
            self.false_alarm(hit);
            return true;
        }
        match self.errors_at(pos, inverted) {
            Some(d) if d <= u32::from(self.p.check_tolerance) => {
                let confirmed = confirmed + 1;
                if confirmed >= self.p.check_frames {
                    self.lock(hit, inverted, errors, d as u8);
                } else {
                    self.mode = Mode::Check {
                        hit,
                        inverted,
                        errors,
                        confirmed,
                    };
                }
            }
            _ => self.false_alarm(hit),
        }
        true
    }

    fn false_alarm(&mut self, hit: u64) {
        self.mode = Mode::Search;
        self.advance_discard(hit + 1);
    }

    fn lock(&mut self, hit: u64, inverted: bool, errors: u8, last_errors: u8) {
        self.close_run(hit);
        self.events.push_back(SyncEvent::Locked {
            stream_bit: hit,
            inverted,
        });
        self.stats.locks += 1;
        let n = u64::from(self.p.check_frames);
        for i in 0..n {
            let pos = hit + i * self.period;
            let e = if i == 0 {
                u32::from(errors)
            } else {
                self.errors_at(pos, inverted).unwrap_or(self.bits)
            };
            self.emit_frame(pos, inverted, e, 0, false);
        }
        self.mode = Mode::Lock {
            expected: hit + n * self.period,
            inverted,
            misses: 0,
            verified: Some(last_errors),
        };
    }

    fn step_lock(
        &mut self,
        expected: u64,
        inverted: bool,
        misses: u8,
        verified: Option<u8>,
    ) -> bool {
        let period = self.period;
        let max_slip = u64::from(self.p.max_slip_bits);
        let end = self.end_bit();
        if !self.finished && end < expected + period + max_slip {
            return false;
        }
        let q0 = expected - u64::from(misses) * period;
        if expected + period > end {
            // Only reachable after finish(): no whole frame left.
            self.flush_flywheel(q0, misses, inverted);
            let bits = end.saturating_sub(expected);
            if bits > 0 {
                self.events.push_back(SyncEvent::Truncated {
                    stream_bit: expected,
                    bits,
                });
                self.stats.truncated_bits += bits;
            }
            self.mode = Mode::Lock {
                expected,
                inverted,
                misses: 0,
                verified: None,
            };
            self.done = true;
            return true;
        }
        if let Some(v) = verified {
            // Already confirmed by CHECK (at check_tolerance, same polarity).
            self.accept(q0, misses, inverted, expected, u32::from(v), 0, false);
            return true;
        }
        let tol = u32::from(self.p.lock_tolerance);
        if let Some(d) = self.errors_at(expected, inverted) {
            if d <= tol {
                self.accept(q0, misses, inverted, expected, d, 0, false);
                return true;
            }
            if self.p.allow_inverted && self.bits - d <= tol {
                self.accept(q0, misses, inverted, expected, self.bits - d, 0, true);
                return true;
            }
        }
        let mut best: Option<(u32, i8, u64)> = None;
        for s in 1..=self.p.max_slip_bits {
            for (sign, pos) in [
                (1i8, expected.checked_add(u64::from(s))),
                (-1i8, expected.checked_sub(u64::from(s))),
            ] {
                let Some(pos) = pos else { continue };
                if pos + period > end {
                    continue;
                }
                let Some(d) = self.errors_at(pos, inverted) else {
                    continue;
                };
                if d <= tol && best.is_none_or(|(b, _, _)| d < b) {
                    best = Some((d, sign * s as i8, pos));
                }
            }
        }
        if let Some((d, slip, pos)) = best {
            self.accept(q0, misses, inverted, pos, d, slip, false);
            return true;
        }
        if misses >= self.p.flywheel_frames {
            // Drop the held coasted frames; SEARCH re-examines everything from q0.
            self.events.push_back(SyncEvent::Lost { stream_bit: q0 });
            self.stats.lost += 1;
            self.mode = Mode::Search;
            self.search_pos = q0;
            self.run_start = q0;
        } else {
            self.mode = Mode::Lock {
                expected: expected + period,
                inverted,
                misses: misses + 1,
                verified: None,
            };
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        q0: u64,
        misses: u8,
        inverted: bool,
        pos: u64,
        errors: u32,
        slip: i8,
        flip: bool,
    ) {
        self.flush_flywheel(q0, misses, inverted);
        let inverted = inverted ^ flip;
        if flip {
            self.events.push_back(SyncEvent::PolarityChanged {
                stream_bit: pos,
                inverted,
            });
        }
        if slip > 0 {
            self.stats.slip_bits_skipped += slip.unsigned_abs() as u64;
        } else if slip < 0 {
            self.stats.slip_bits_reused += slip.unsigned_abs() as u64;
        }
        self.emit_frame(pos, inverted, errors, slip, false);
        self.mode = Mode::Lock {
            expected: pos + self.period,
            inverted,
            misses: 0,
            verified: None,
        };
    }

    fn flush_flywheel(&mut self, q0: u64, misses: u8, inverted: bool) {
        for i in 0..u64::from(misses) {
            let pos = q0 + i * self.period;
            let e = self.errors_at(pos, inverted).unwrap_or(self.bits);
            self.emit_frame(pos, inverted, e, 0, true);
        }
    }

    fn emit_frame(&mut self, pos: u64, inverted: bool, errors: u32, slip: i8, flywheel: bool) {
        let fl = self.p.frame_len;
        if self.pool.capacity() < fl {
            self.pool.reserve(fl * FRAMES_PER_POOL);
        }
        self.pool.resize(fl, 0);
        let data_rel = self.rel(pos + u64::from(self.bits));
        let ok = data_rel.is_some_and(|r| extract_bits(&self.buf, r, &mut self.pool, inverted));
        debug_assert!(ok, "frame data must be buffered");
        let data = self.pool.split_to(fl);
        let s = &mut self.stats;
        s.frames += 1;
        if flywheel {
            s.flywheel_frames += 1;
        } else {
            s.lock_frames += 1;
        }
        if slip != 0 {
            s.slipped_frames += 1;
        }
        if inverted {
            s.inverted_frames += 1;
        } else {
            s.true_frames += 1;
        }
        self.events.push_back(SyncEvent::Frame(SyncedFrame {
            data,
            stream_bit: pos,
            inverted,
            asm_bit_errors: errors.min(u32::from(u8::MAX)) as u8,
            slip_bits: slip,
            flywheel,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! data {
        ($f:literal) => {
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/data/",
                $f
            ))
            .unwrap()
        };
    }

    /// splitmix64: small deterministic PRNG for tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// MSB-first bit writer.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        nbits: u64,
    }
    impl BitWriter {
        fn bit(&mut self, b: bool) {
            if self.nbits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if b {
                *self.bytes.last_mut().unwrap() |= 0x80 >> (self.nbits % 8);
            }
            self.nbits += 1;
        }
        fn bits(&mut self, v: u64, n: u32) {
            for i in (0..n).rev() {
                self.bit(v >> i & 1 == 1);
            }
        }
        fn drop_bits(&mut self, n: u64) {
            self.nbits -= n;
            self.bytes.truncate(self.nbits.div_ceil(8) as usize);
            if !self.nbits.is_multiple_of(8) {
                let keep = 0xFFu8 << (8 - self.nbits % 8);
                *self.bytes.last_mut().unwrap() &= keep;
            }
        }
        fn random_bits(&mut self, rng: &mut Rng, n: u64) {
            for _ in 0..n {
                self.bit(rng.next() & 1 == 1);
            }
        }
        /// Marker (with `flip` bits flipped at distinct positions) + payload, optionally inverted.
        fn frame(&mut self, p: &SyncParams, payload: &[u8], flip: &[u32], invert: bool) -> u64 {
            let pos = self.nbits;
            let mut asm = p.asm;
            for &f in flip {
                asm ^= 1 << f;
            }
            let m = if p.asm_bits == 64 {
                u64::MAX
            } else {
                (1u64 << p.asm_bits) - 1
            };
            if invert {
                asm = !asm & m;
            }
            self.bits(asm, p.asm_bits.into());
            for &b in payload {
                self.bits(u64::from(if invert { !b } else { b }), 8);
            }
            pos
        }
    }

    fn collect(s: &mut Synchronizer, out: &mut Vec<SyncEvent>) {
        while let Some(e) = s.poll() {
            out.push(e);
        }
    }

    /// Runs a whole stream; `chunk` = None pushes it at once, else random chunk sizes in
    /// 1..=max from a seeded PRNG.
    fn run_chunked(
        p: SyncParams,
        input: &[u8],
        chunk: Option<(u64, u64)>,
    ) -> (Vec<SyncEvent>, SyncStats) {
        let mut s = Synchronizer::new(p).unwrap();
        let mut ev = Vec::new();
        match chunk {
            None => {
                s.push(input);
                collect(&mut s, &mut ev);
            }
            Some((seed, max)) => {
                let mut rng = Rng(seed);
                let mut rest = input;
                while !rest.is_empty() {
                    let n = (1 + rng.below(max) as usize).min(rest.len());
                    let (a, b) = rest.split_at(n);
                    s.push(a);
                    collect(&mut s, &mut ev);
                    rest = b;
                }
            }
        }
        s.finish();
        collect(&mut s, &mut ev);
        assert_eq!(s.poll(), None);
        let st = s.stats();
        check_consistency(&p, &ev, &st);
        (ev, st)
    }

    fn run(p: SyncParams, input: &[u8]) -> (Vec<SyncEvent>, SyncStats) {
        run_chunked(p, input, None)
    }

    fn frames(ev: &[SyncEvent]) -> Vec<&SyncedFrame> {
        ev.iter()
            .filter_map(|e| match e {
                SyncEvent::Frame(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn count(ev: &[SyncEvent], pred: impl Fn(&SyncEvent) -> bool) -> usize {
        ev.iter().filter(|e| pred(e)).count()
    }

    /// Events agree with stats, and the accounting identity holds.
    fn check_consistency(p: &SyncParams, ev: &[SyncEvent], st: &SyncStats) {
        let fr = frames(ev);
        assert_eq!(st.frames, fr.len() as u64);
        assert_eq!(st.frames, st.lock_frames + st.flywheel_frames);
        assert_eq!(st.frames, st.true_frames + st.inverted_frames);
        assert_eq!(
            st.flywheel_frames,
            fr.iter().filter(|f| f.flywheel).count() as u64
        );
        assert_eq!(
            st.inverted_frames,
            fr.iter().filter(|f| f.inverted).count() as u64
        );
        assert_eq!(
            st.slipped_frames,
            fr.iter().filter(|f| f.slip_bits != 0).count() as u64
        );
        let slip_pos: u64 = fr
            .iter()
            .filter(|f| f.slip_bits > 0)
            .map(|f| f.slip_bits as u64)
            .sum();
        let slip_neg: u64 = fr
            .iter()
            .filter(|f| f.slip_bits < 0)
            .map(|f| f.slip_bits.unsigned_abs() as u64)
            .sum();
        assert_eq!(st.slip_bits_skipped, slip_pos);
        assert_eq!(st.slip_bits_reused, slip_neg);
        let disc: u64 = ev
            .iter()
            .map(|e| match e {
                SyncEvent::Discarded { bits, .. } => *bits,
                _ => 0,
            })
            .sum();
        assert_eq!(st.bits_discarded, disc);
        let trunc: u64 = ev
            .iter()
            .map(|e| match e {
                SyncEvent::Truncated { bits, .. } => *bits,
                _ => 0,
            })
            .sum();
        assert_eq!(st.truncated_bits, trunc);
        assert_eq!(
            st.locks as usize,
            count(ev, |e| matches!(e, SyncEvent::Locked { .. }))
        );
        assert_eq!(
            st.lost as usize,
            count(ev, |e| matches!(e, SyncEvent::Lost { .. }))
        );
        // Every input bit accounted for.
        assert_eq!(
            8 * st.bytes_in + st.slip_bits_reused,
            st.bits_discarded
                + p.period_bits() * st.frames
                + st.truncated_bits
                + st.slip_bits_skipped
        );
        // No bit emitted twice: frames (marker + data) do not overlap, except by a negative
        // slip's reused bits, and are in stream order.
        for w in fr.windows(2) {
            let overlap = if w[1].slip_bits < 0 {
                u64::from(w[1].slip_bits.unsigned_abs())
            } else {
                0
            };
            assert!(w[0].stream_bit + p.period_bits() <= w[1].stream_bit + overlap);
        }
        for f in &fr {
            assert_eq!(f.data.len(), p.frame_len);
        }
    }

    // ----- real captures ------------------------------------------------------------------

    fn pn_table() -> Vec<u8> {
        let pn = data!("vectors/ccsds_pn_255.bin");
        assert_eq!(&pn[..4], &[0xff, 0x48, 0x0e, 0xc0]);
        pn
    }

    fn check_capture(input: &[u8], shift: u64, scid: u16, vcids: &[(u8, usize)]) {
        let p = SyncParams::default();
        let (ev, st) = run(p, input);
        let fr = frames(&ev);
        assert_eq!(fr.len(), 1023);
        let first = fr[0].stream_bit;
        assert_eq!(first % 8, shift);
        // One lock at the first frame, preceded by the discarded partial frame.
        assert_eq!(
            ev[0],
            SyncEvent::Discarded {
                stream_bit: 0,
                bits: first
            }
        );
        assert_eq!(
            ev[1],
            SyncEvent::Locked {
                stream_bit: first,
                inverted: false
            }
        );
        assert_eq!(st.locks, 1);
        assert_eq!(st.lost, 0);
        assert_eq!(count(&ev, |e| matches!(e, SyncEvent::Lost { .. })), 0);
        for (i, f) in fr.iter().enumerate() {
            assert_eq!(f.stream_bit, first + i as u64 * 8192);
            assert!(!f.flywheel && !f.inverted && f.slip_bits == 0);
            assert!(f.asm_bit_errors <= p.lock_tolerance);
        }
        // The tail after the last whole CADU.
        let end = first + 1023 * 8192;
        let total = input.len() as u64 * 8;
        assert_eq!(
            ev.last(),
            Some(&SyncEvent::Truncated {
                stream_bit: end,
                bits: total - end
            })
        );
        assert_eq!(st.frames, 1023);
        // Frames start right after the marker: derandomized AOS headers give the spacecraft
        // and the per-VCID counts of the data README.
        let pn = pn_table();
        let mut per_vcid = std::collections::BTreeMap::new();
        for f in &fr {
            let b0 = f.data[0] ^ pn[0];
            let b1 = f.data[1] ^ pn[1];
            assert_eq!(b0 >> 6, 1, "AOS version 2");
            assert_eq!((u16::from(b0 & 0x3f) << 2) | u16::from(b1 >> 6), scid);
            *per_vcid.entry(b1 & 0x3f).or_insert(0usize) += 1;
        }
        let want: std::collections::BTreeMap<u8, usize> = vcids.iter().copied().collect();
        assert_eq!(per_vcid, want);
    }

    #[test]
    fn aqua_capture() {
        let d = data!("cadu/aqua.20241206T175646.dat");
        check_capture(
            &d,
            1,
            154,
            &[(30, 828), (35, 121), (63, 63), (5, 9), (10, 2)],
        );
    }

    #[test]
    fn metopb_capture() {
        let d = data!("cadu/metopb.20241206T152751.dat");
        let v = [
            (10, 531),
            (9, 211),
            (24, 133),
            (63, 114),
            (29, 14),
            (15, 11),
            (34, 3),
            (12, 3),
            (27, 2),
            (3, 1),
        ];
        check_capture(&d, 6, 11, &v);
    }

    #[test]
    fn noaa20_capture() {
        let d = data!("cadu/noaa20.20241206T162710.dat");
        check_capture(&d, 1, 159, &[(16, 943), (6, 79), (1, 1)]);
    }

    #[test]
    fn npp_capture() {
        let d = data!("cadu/npp.20241206T173815.dat");
        check_capture(&d, 2, 157, &[(16, 945), (63, 78)]);
    }

    #[test]
    fn aqua_frame_bytes_match_manual_realignment() {
        let d = data!("cadu/aqua.20241206T175646.dat");
        let (ev, _) = run(SyncParams::default(), &d);
        let fr = frames(&ev);
        // Bit-by-bit reference for a few frames.
        for f in [fr[0], fr[500], fr[1022]] {
            let start = f.stream_bit + 32;
            for (i, &b) in f.data.iter().enumerate() {
                let mut v = 0u8;
                for j in 0..8 {
                    let bit = start + i as u64 * 8 + j;
                    v = v << 1 | (d[(bit / 8) as usize] >> (7 - bit % 8) & 1);
                }
                assert_eq!(b, v);
            }
        }
    }

    #[test]
    fn snpp_byte_aligned_captures() {
        let d65 = data!("cadu/snpp_synchronized_cadus.dat");
        let d7 = data!("cadu/snpp_7cadus_2vcids.dat");
        for (d, n) in [(&d65, 65usize), (&d7, 7)] {
            for byte_aligned in [true, false] {
                for search_tolerance in [0, 2] {
                    let p = SyncParams {
                        byte_aligned,
                        search_tolerance,
                        ..SyncParams::default()
                    };
                    let (ev, st) = run(p, d);
                    let fr = frames(&ev);
                    assert_eq!(fr.len(), n, "aligned={byte_aligned} tol={search_tolerance}");
                    assert_eq!(st.bits_discarded, 0);
                    assert_eq!(st.truncated_bits, 0);
                    assert_eq!(
                        ev[0],
                        SyncEvent::Locked {
                            stream_bit: 0,
                            inverted: false
                        }
                    );
                    for (i, f) in fr.iter().enumerate() {
                        assert_eq!(f.stream_bit, i as u64 * 8192);
                        assert_eq!(&f.data[..], &d[i * 1024 + 4..(i + 1) * 1024]);
                    }
                }
            }
        }
    }

    #[test]
    fn chunking_does_not_change_events_real() {
        let d = data!("cadu/aqua.20241206T175646.dat");
        let p = SyncParams::default();
        let (whole, _) = run(p, &d);
        for seed in [1, 2, 3] {
            let (ev, _) = run_chunked(p, &d, Some((seed, 65536)));
            assert_eq!(ev, whole, "seed {seed}");
        }
        // Small chunks over a shorter piece (still crossing many frame boundaries).
        let piece = &d[..200_000];
        let (whole, _) = run(p, piece);
        assert!(frames(&whole).len() > 190);
        let (ev, _) = run_chunked(p, piece, Some((7, 16)));
        assert_eq!(ev, whole);
        let (ev, _) = run_chunked(p, piece, Some((8, 1)));
        assert_eq!(ev, whole);
    }

    #[test]
    fn byte_aligned_memmem_chunking() {
        let d = data!("cadu/snpp_synchronized_cadus.dat");
        let mut junk = Rng(99).bytes(3000);
        junk.extend_from_slice(&d);
        let p = SyncParams {
            byte_aligned: true,
            search_tolerance: 0,
            ..SyncParams::default()
        };
        let (whole, _) = run(p, &junk);
        assert_eq!(frames(&whole).len(), 65);
        for seed in [4, 5] {
            assert_eq!(run_chunked(p, &junk, Some((seed, 700))).0, whole);
        }
        assert_eq!(run_chunked(p, &junk, Some((6, 1))).0, whole);
    }

    // ----- synthetic streams --------------------------------------------------------------

    fn payloads(rng: &mut Rng, n: usize, len: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| rng.bytes(len)).collect()
    }

    /// Non-flywheel frames' payloads, in order.
    fn good_payloads(ev: &[SyncEvent]) -> Vec<Vec<u8>> {
        frames(ev)
            .iter()
            .filter(|f| !f.flywheel)
            .map(|f| f.data.to_vec())
            .collect()
    }

    #[test]
    fn slips_of_one_and_two_bits() {
        let p = SyncParams::default();
        let mut rng = Rng(11);
        let pl = payloads(&mut rng, 20, p.frame_len);
        let mut w = BitWriter::default();
        w.random_bits(&mut rng, 5 * 8 + 3);
        let mut pos = Vec::new();
        for (i, f) in pl.iter().enumerate() {
            pos.push(w.frame(&p, f, &[], false));
            if i == 6 {
                w.random_bits(&mut rng, 1); // insert 1 bit before frame 7
            }
            if i == 12 {
                w.drop_bits(2); // delete the last 2 bits of frame 12
            }
        }
        let (ev, st) = run(p, &w.bytes);
        let fr = frames(&ev);
        assert_eq!(fr.len(), 20);
        assert_eq!(st.slipped_frames, 2);
        assert_eq!(st.flywheel_frames, 0);
        assert_eq!(st.locks, 1);
        for (i, f) in fr.iter().enumerate() {
            assert_eq!(f.stream_bit, pos[i]);
            let want_slip = match i {
                7 => 1,
                13 => -2,
                _ => 0,
            };
            assert_eq!(f.slip_bits, want_slip, "frame {i}");
            if i != 12 {
                assert_eq!(&f.data[..], &pl[i][..], "frame {i}");
            }
        }
        // Frame 12 lost its last 2 bits: everything before them is intact.
        assert_eq!(&fr[12].data[..1019], &pl[12][..1019]);
        assert_eq!(st.slip_bits_skipped, 1);
        assert_eq!(st.slip_bits_reused, 2);
    }

    #[test]
    fn slip_beyond_max_is_lost_and_reacquired() {
        let p = SyncParams::default();
        let mut rng = Rng(12);
        let pl = payloads(&mut rng, 16, p.frame_len);
        let mut w = BitWriter::default();
        for (i, f) in pl.iter().enumerate() {
            w.frame(&p, f, &[], false);
            if i == 4 {
                w.random_bits(&mut rng, 3);
            }
        }
        let (ev, st) = run(p, &w.bytes);
        assert_eq!(st.lost, 1);
        assert_eq!(st.locks, 2);
        // The coasted frames were held back and dropped: every real frame comes out once.
        assert_eq!(good_payloads(&ev), pl);
        assert_eq!(st.flywheel_frames, 0);
        let lost_at = ev.iter().find_map(|e| match e {
            SyncEvent::Lost { stream_bit } => Some(*stream_bit),
            _ => None,
        });
        assert_eq!(lost_at, Some(5 * p.period_bits()));
        assert!(ev.contains(&SyncEvent::Discarded {
            stream_bit: 5 * p.period_bits(),
            bits: 3
        }));
    }

    #[test]
    fn polarity_inversion_mid_stream() {
        let p = SyncParams::default();
        let mut rng = Rng(13);
        let pl = payloads(&mut rng, 20, p.frame_len);
        let mut w = BitWriter::default();
        w.random_bits(&mut rng, 77);
        let mut pos = Vec::new();
        for (i, f) in pl.iter().enumerate() {
            pos.push(w.frame(&p, f, &[], i >= 10));
        }
        let (ev, st) = run(p, &w.bytes);
        assert_eq!(good_payloads(&ev), pl);
        assert_eq!(st.inverted_frames, 10);
        assert_eq!(st.true_frames, 10);
        let changes: Vec<_> = ev
            .iter()
            .filter(|e| matches!(e, SyncEvent::PolarityChanged { .. }))
            .collect();
        assert_eq!(
            changes,
            vec![&SyncEvent::PolarityChanged {
                stream_bit: pos[10],
                inverted: true
            }]
        );
        // The event comes right before the first inverted frame.
        let i = ev
            .iter()
            .position(|e| matches!(e, SyncEvent::PolarityChanged { .. }))
            .unwrap();
        assert!(matches!(&ev[i + 1], SyncEvent::Frame(f) if f.inverted && f.stream_bit == pos[10]));
    }

    #[test]
    fn inverted_from_the_start_and_not_allowed() {
        let p = SyncParams::default();
        let mut rng = Rng(14);
        let pl = payloads(&mut rng, 5, p.frame_len);
        let mut w = BitWriter::default();
        w.random_bits(&mut rng, 13);
        for f in &pl {
            w.frame(&p, f, &[], true);
        }
        let (ev, _) = run(p, &w.bytes);
        assert!(ev.contains(&SyncEvent::Locked {
            stream_bit: 13,
            inverted: true
        }));
        assert_eq!(good_payloads(&ev), pl);
        assert!(frames(&ev).iter().all(|f| f.inverted));
        let no_inv = SyncParams {
            allow_inverted: false,
            ..p
        };
        let (ev, st) = run(no_inv, &w.bytes);
        assert_eq!(st.frames, 0);
        assert_eq!(
            ev,
            vec![SyncEvent::Discarded {
                stream_bit: 0,
                bits: w.bytes.len() as u64 * 8
            }]
        );
    }

    #[test]
    fn garbage_between_frames_every_real_frame_recovered() {
        let p = SyncParams::default();
        let mut rng = Rng(15);
        let pl = payloads(&mut rng, 40, p.frame_len);
        let mut w = BitWriter::default();
        w.random_bits(&mut rng, 1234);
        let garbage = [(9usize, 5000 * 8 + 3), (19, 100 * 8), (29, 3 * 8192 + 5)];
        for (i, f) in pl.iter().enumerate() {
            w.frame(&p, f, &[], false);
            if let Some(&(_, g)) = garbage.iter().find(|(at, _)| *at == i) {
                w.random_bits(&mut rng, g);
            }
        }
        let (ev, st) = run(p, &w.bytes);
        assert_eq!(good_payloads(&ev), pl, "every real frame, once, in order");
        assert_eq!(st.lost, 3);
        assert_eq!(st.locks, 4);
        assert_eq!(st.flywheel_frames, 0);
        assert_eq!(count(&ev, |e| matches!(e, SyncEvent::Discarded { .. })), 4);
        let relocks: Vec<_> = ev
            .iter()
            .filter(|e| matches!(e, SyncEvent::Locked { .. }))
            .collect();
        assert_eq!(relocks.len(), 4);
    }

    #[test]
    fn asm_bit_errors_within_tolerance_and_flywheel() {
        let p = SyncParams::default();
        let mut rng = Rng(16);
        let pl = payloads(&mut rng, 12, p.frame_len);
        // Errors per frame's marker: search 2, check 3, then lock 4, one too many (6: flywheel),
        // lock again.
        let errs: [&[u32]; 12] = [
            &[0, 31],
            &[3, 9, 17],
            &[1, 2, 3, 4],
            &[],
            &[5, 6, 7, 8, 9, 10],
            &[30],
            &[0, 1, 2, 3],
            &[],
            &[],
            &[],
            &[],
            &[],
        ];
        let mut w = BitWriter::default();
        w.random_bits(&mut rng, 3);
        for (f, e) in pl.iter().zip(errs) {
            w.frame(&p, f, e, false);
        }
        let (ev, st) = run(p, &w.bytes);
        let fr = frames(&ev);
        assert_eq!(fr.len(), 12);
        for (i, (f, e)) in fr.iter().zip(errs).enumerate() {
            assert_eq!(f.asm_bit_errors as usize, e.len(), "frame {i}");
            assert_eq!(f.flywheel, i == 4, "frame {i}");
            assert_eq!(&f.data[..], &pl[i][..], "frame {i}");
        }
        assert_eq!(st.flywheel_frames, 1);
        assert_eq!(st.lost, 0);
        // Too many errors for SEARCH on the first marker: lock comes one frame later.
        let mut w = BitWriter::default();
        w.frame(&p, &pl[0], &[0, 1, 2], false);
        for f in &pl[1..] {
            w.frame(&p, f, &[], false);
        }
        let (ev, _) = run(p, &w.bytes);
        assert_eq!(
            ev[1],
            SyncEvent::Locked {
                stream_bit: p.period_bits(),
                inverted: false
            }
        );
        assert_eq!(good_payloads(&ev), pl[1..].to_vec());
    }

    #[test]
    fn flywheel_frames_are_held_until_resolved() {
        let p = SyncParams::default();
        let mut rng = Rng(17);
        let pl = payloads(&mut rng, 10, p.frame_len);
        let mut w = BitWriter::default();
        for (i, f) in pl.iter().enumerate() {
            let e: &[u32] = if (3..6).contains(&i) {
                &[0, 1, 2, 3, 4, 5, 6, 7]
            } else {
                &[]
            };
            w.frame(&p, f, e, false);
        }
        let mut s = Synchronizer::new(p).unwrap();
        let bytes = &w.bytes;
        let per = 1024usize;
        // Feed frames one by one: the three coasted frames come out only when frame 6's
        // marker is seen.
        let mut ev = Vec::new();
        for i in 0..10 {
            s.push(&bytes[i * per..(i + 1) * per]);
            collect(&mut s, &mut ev);
            if (4..=6).contains(&i) {
                assert_eq!(s.state(), SyncState::Flywheel, "after frame {i}");
                assert_eq!(frames(&ev).len(), 3);
            }
        }
        s.finish();
        collect(&mut s, &mut ev);
        let fr = frames(&ev);
        assert_eq!(fr.len(), 10);
        assert_eq!(fr.iter().filter(|f| f.flywheel).count(), 3);
        assert_eq!(good_payloads(&ev).len(), 7);
        for (f, want) in fr.iter().zip(&pl) {
            assert_eq!(&f.data[..], &want[..]);
        }
        // With flywheel_frames = 2 the same stream loses lock and reacquires at frame 6; the
        // frames 3..=5 are not emitted and their bits are discarded.
        let p2 = SyncParams {
            flywheel_frames: 2,
            ..p
        };
        let (ev, st) = run(p2, bytes);
        assert_eq!(st.lost, 1);
        assert!(ev.contains(&SyncEvent::Lost {
            stream_bit: 3 * p.period_bits()
        }));
        assert!(ev.contains(&SyncEvent::Discarded {
            stream_bit: 3 * p.period_bits(),
            bits: 3 * p.period_bits()
        }));
        assert_eq!(good_payloads(&ev), [&pl[..3], &pl[6..]].concat());
        // At finish, held coasted frames are emitted.
        let cut = &bytes[..6 * per];
        let (ev, _) = run(p, cut);
        let fr = frames(&ev);
        assert_eq!(fr.len(), 6);
        assert!(fr[3].flywheel && fr[4].flywheel && fr[5].flywheel);
    }

    #[test]
    fn truncated_tail() {
        let p = SyncParams::default();
        let mut rng = Rng(18);
        let pl = payloads(&mut rng, 4, p.frame_len);
        let mut w = BitWriter::default();
        w.random_bits(&mut rng, 21);
        let mut last = 0;
        for f in &pl {
            last = w.frame(&p, f, &[], false);
        }
        let tail_start = last + p.period_bits();
        w.frame(&p, &pl[0][..300], &[], false);
        w.random_bits(&mut rng, 5);
        let total = w.bytes.len() as u64 * 8;
        let (ev, st) = run(p, &w.bytes);
        assert_eq!(st.frames, 4);
        assert_eq!(
            ev.last(),
            Some(&SyncEvent::Truncated {
                stream_bit: tail_start,
                bits: total - tail_start
            })
        );
        assert_eq!(
            total - tail_start,
            // marker + 300 bytes + 5 random bits + 6 bits of zero padding to a whole byte
            // (21 + 4 * 8192 + 2437 bits written = 2 mod 8)
            32 + 300 * 8 + 5 + 6
        );
    }

    #[test]
    fn false_alarm_resumes_one_bit_after_the_hit() {
        // Marker 0xFF: a stray 1 bit right before the first marker makes a hit one bit early
        // (at 16), whose check fails (the frame's last data bit is 0); the real marker at 17
        // must then be found.
        let p = SyncParams {
            asm: 0xFF,
            asm_bits: 8,
            frame_len: 16,
            search_tolerance: 0,
            check_tolerance: 0,
            lock_tolerance: 0,
            allow_inverted: false,
            ..SyncParams::default()
        };
        let pl: Vec<Vec<u8>> = (0..6u8).map(|i| vec![0x54 ^ i << 4; 16]).collect();
        let mut w = BitWriter::default();
        w.bits(0, 16);
        w.bit(true);
        for f in &pl {
            w.frame(&p, f, &[], false);
        }
        let (ev, _) = run(p, &w.bytes);
        assert_eq!(
            ev[0],
            SyncEvent::Discarded {
                stream_bit: 0,
                bits: 17
            }
        );
        assert_eq!(
            ev[1],
            SyncEvent::Locked {
                stream_bit: 17,
                inverted: false
            }
        );
        assert_eq!(good_payloads(&ev), pl);
        // Same with byte_aligned: the hit at byte 2 fails, SEARCH resumes at byte 3.
        let pa = SyncParams {
            byte_aligned: true,
            ..p
        };
        let mut w = BitWriter::default();
        w.bits(0, 16);
        w.bits(0xFF, 8); // false marker: one period later is a data byte (0x54), not 0xFF
        for f in &pl {
            w.frame(&pa, f, &[], false);
        }
        let (ev, _) = run(pa, &w.bytes);
        assert_eq!(
            ev[1],
            SyncEvent::Locked {
                stream_bit: 24,
                inverted: false
            }
        );
        assert_eq!(good_payloads(&ev), pl);
    }

    #[test]
    fn single_frame_never_locks() {
        let p = SyncParams::default();
        let mut w = BitWriter::default();
        w.frame(&p, &Rng(19).bytes(p.frame_len), &[], false);
        let (ev, st) = run(p, &w.bytes);
        assert_eq!(st.frames, 0);
        assert_eq!(st.locks, 0);
        assert_eq!(
            ev,
            vec![SyncEvent::Discarded {
                stream_bit: 0,
                bits: 8192
            }]
        );
    }

    #[test]
    fn check_frames_two() {
        let p = SyncParams {
            check_frames: 2,
            ..SyncParams::default()
        };
        let mut rng = Rng(20);
        let pl = payloads(&mut rng, 6, p.frame_len);
        let mut w = BitWriter::default();
        w.random_bits(&mut rng, 9);
        for f in &pl {
            w.frame(&p, f, &[], false);
        }
        let mut s = Synchronizer::new(p).unwrap();
        let mut ev = Vec::new();
        // Two whole frames plus the third marker are not enough to confirm twice.
        s.push(&w.bytes[..(9 + 2 * 8192 + 16) / 8]);
        collect(&mut s, &mut ev);
        assert_eq!(s.state(), SyncState::Check);
        assert!(frames(&ev).is_empty());
        s.push(&w.bytes[(9 + 2 * 8192 + 16) / 8..]);
        s.finish();
        collect(&mut s, &mut ev);
        assert_eq!(
            ev[1],
            SyncEvent::Locked {
                stream_bit: 9,
                inverted: false
            }
        );
        assert_eq!(good_payloads(&ev), pl);
    }

    #[test]
    fn long_and_short_markers() {
        for (asm, bits, frame_len) in [
            (0x0347_76C7_2728_95B0u64, 64u8, 100usize),
            (0x1ACF_FC1D_0000_0001 >> 4, 60, 37),
            (0x00FA_F320_u64, 24, 50),
            (0xB5u64, 8, 3),
        ] {
            let p = SyncParams {
                asm,
                asm_bits: bits,
                frame_len,
                search_tolerance: if bits >= 24 { 2 } else { 0 },
                check_tolerance: if bits >= 24 { 3 } else { 0 },
                lock_tolerance: if bits >= 24 { 4 } else { 1 },
                check_frames: if bits == 8 { 4 } else { 1 },
                ..SyncParams::default()
            };
            let mut rng = Rng(u64::from(bits));
            let pl = payloads(&mut rng, 30, frame_len);
            let mut w = BitWriter::default();
            w.random_bits(&mut rng, 2 * 8192 + 5);
            let mut pos = Vec::new();
            for f in &pl {
                pos.push(w.frame(&p, f, &[], false));
            }
            let (ev, _) = run(p, &w.bytes);
            let fr = frames(&ev);
            if bits == 8 {
                // An 8-bit marker over random data may lock early on a false marker; the real
                // frames must still all come out.
                let good: Vec<_> = fr.iter().filter(|f| pos.contains(&f.stream_bit)).collect();
                assert!(good.len() >= 25, "8-bit marker: {}", good.len());
                continue;
            }
            assert_eq!(
                fr.iter().map(|f| f.stream_bit).collect::<Vec<_>>(),
                pos,
                "asm_bits {bits}"
            );
            assert_eq!(good_payloads(&ev), pl, "asm_bits {bits}");
        }
    }

    /// Everything at once, pushed whole, byte by byte and in random chunks.
    #[test]
    fn chunking_does_not_change_events_synthetic() {
        let p = SyncParams::default();
        let mut rng = Rng(21);
        let pl = payloads(&mut rng, 30, p.frame_len);
        let mut w = BitWriter::default();
        w.random_bits(&mut rng, 4000);
        for (i, f) in pl.iter().enumerate() {
            let e: &[u32] = match i {
                3 => &[1, 5, 9],
                11 => &[0, 1, 2, 3, 4, 5, 6],
                _ => &[],
            };
            w.frame(&p, f, e, (14..22).contains(&i));
            match i {
                5 => w.random_bits(&mut rng, 1),
                8 => w.drop_bits(2),
                17 => w.random_bits(&mut rng, 3000),
                24 => w.random_bits(&mut rng, 2),
                _ => {}
            }
        }
        w.random_bits(&mut rng, 777);
        let (whole, st) = run(p, &w.bytes);
        assert!(st.slipped_frames >= 3 && st.lost >= 1 && st.flywheel_frames >= 1);
        assert!(count(&whole, |e| matches!(e, SyncEvent::PolarityChanged { .. })) >= 1);
        for chunk in [
            Some((1, 1)),
            Some((2, 3)),
            Some((3, 100)),
            Some((4, 5000)),
            Some((5, 65536)),
        ] {
            assert_eq!(run_chunked(p, &w.bytes, chunk).0, whole, "{chunk:?}");
        }
    }

    #[test]
    fn all_garbage_never_locks_and_memory_stays_bounded() {
        let p = SyncParams::default();
        let mut s = Synchronizer::new(p).unwrap();
        let mut rng = Rng(22);
        let chunk = 65536;
        let total_chunks = 800; // 50 MiB
        let mut max_buf = 0;
        let mut ev = Vec::new();
        let mut data = vec![0u8; chunk];
        for _ in 0..total_chunks {
            for c in data.chunks_exact_mut(8) {
                c.copy_from_slice(&rng.next().to_le_bytes());
            }
            s.push(&data);
            collect(&mut s, &mut ev);
            max_buf = max_buf.max(s.buffered_len());
            assert!(s.buffer_capacity() <= 4 * chunk);
        }
        assert!(ev.is_empty(), "{ev:?}");
        assert!(max_buf <= chunk + 2 * 1024 + 16, "buffer grew to {max_buf}");
        s.finish();
        collect(&mut s, &mut ev);
        let bits = total_chunks as u64 * chunk as u64 * 8;
        assert_eq!(
            ev,
            vec![SyncEvent::Discarded {
                stream_bit: 0,
                bits
            }]
        );
        assert_eq!(s.stats().bits_discarded, bits);
        assert_eq!(s.stats().locks, 0);
    }

    #[test]
    fn bits_discarded_is_live() {
        let mut s = Synchronizer::new(SyncParams::default()).unwrap();
        s.push(&Rng(23).bytes(100_000));
        assert_eq!(s.poll(), None);
        // Every offset whose 32-bit window is complete has been examined; only the last 31
        // bits are still pending.
        assert_eq!(s.state(), SyncState::Search);
        assert_eq!(s.stats().bits_discarded, 800_000 - 31);
        assert!(s.buffered_len() <= 4 + 1);
    }

    #[test]
    fn memory_stays_bounded_while_locked() {
        let d = data!("cadu/noaa20.20241206T162710.dat");
        let mut s = Synchronizer::new(SyncParams::default()).unwrap();
        let mut ev = Vec::new();
        let mut max_buf = 0;
        for c in d.chunks(1000) {
            s.push(c);
            max_buf = max_buf.max(s.buffered_len());
            collect(&mut s, &mut ev);
        }
        assert_eq!(frames(&ev).len(), 1023);
        assert_eq!(s.state(), SyncState::Lock);
        // One chunk, one frame plus slip margin still needed, and at most COMPACT_MIN of
        // not-yet-compacted dead bytes.
        assert!(max_buf <= 1000 + 1025 + COMPACT_MIN, "{max_buf}");
    }

    #[test]
    fn push_after_finish_is_ignored() {
        let mut s = Synchronizer::new(SyncParams::default()).unwrap();
        s.push(&[1, 2, 3]);
        s.finish();
        s.push(&[4, 5, 6]);
        assert_eq!(
            s.poll(),
            Some(SyncEvent::Discarded {
                stream_bit: 0,
                bits: 24
            })
        );
        assert_eq!(s.poll(), None);
        assert_eq!(s.stats().bytes_in, 3);
        // Empty stream.
        let mut s = Synchronizer::new(SyncParams::default()).unwrap();
        s.finish();
        assert_eq!(s.poll(), None);
    }

    // ----- kernels ------------------------------------------------------------------------

    fn naive_window(buf: &[u8], o: usize, bits: u32) -> u64 {
        let mut v = 0u64;
        for i in 0..bits as usize {
            let b = o + i;
            v = v << 1 | u64::from(buf[b / 8] >> (7 - b % 8) & 1);
        }
        v
    }

    fn all_hits(buf: &[u8], m: &Matcher, kernel: Option<Kernel>, byte_aligned: bool) -> Vec<Hit> {
        let mut out = Vec::new();
        let mut from = 0;
        loop {
            let r = match kernel {
                Some(k) => find_bits(buf, from, m, k),
                None => find_bytes(buf, from, m, None),
            };
            match r {
                Ok(h) => {
                    out.push(h);
                    from = h.rel + 1;
                }
                Err(next) => {
                    let limit = (buf.len() * 8 + 1).saturating_sub(m.bits as usize);
                    if byte_aligned {
                        assert_eq!(next, limit.div_ceil(8) * 8);
                    } else {
                        assert_eq!(next, limit.max(from));
                    }
                    return out;
                }
            }
        }
    }

    fn naive_hits(buf: &[u8], m: &Matcher, step: usize) -> Vec<Hit> {
        let mut out = Vec::new();
        let mut o = 0;
        while o + m.bits as usize <= buf.len() * 8 {
            if let Some((errors, inverted)) = m.classify(naive_window(buf, o, m.bits)) {
                out.push(Hit {
                    rel: o,
                    errors,
                    inverted,
                });
            }
            o += step;
        }
        out
    }

    fn kernels() -> Vec<Kernel> {
        let mut k = vec![Kernel::Portable];
        if Kernel::detect() != Kernel::Portable {
            k.push(Kernel::detect());
        }
        k
    }

    #[test]
    fn search_kernels_match_naive() {
        let mut rng = Rng(24);
        for (bits, tol, inv) in [
            (32u8, 3u8, true),
            (32, 0, false),
            (8, 1, true),
            (13, 2, false),
            (24, 4, true),
            (40, 5, true),
            (57, 3, true),
            (58, 2, false),
            (64, 7, true),
            (64, 31, false),
        ] {
            let asm = rng.next() >> (64 - u32::from(bits));
            let m = Matcher::new(asm, bits, tol, inv);
            for len in [0usize, 1, 5, 8, 71, 72, 73, 200, 1500] {
                let mut buf = rng.bytes(len);
                // Plant markers (some inverted, some with errors) at random bit offsets.
                for _ in 0..len / 40 {
                    let o = rng.below((len * 8).saturating_sub(64).max(1) as u64) as usize;
                    let mut v = asm ^ (1u64 << rng.below(u64::from(bits)));
                    if inv && rng.next() & 1 == 1 {
                        v = !v;
                    }
                    for i in 0..bits as usize {
                        let b = o + i;
                        if b / 8 < len {
                            let bit = v >> (bits as usize - 1 - i) & 1;
                            buf[b / 8] =
                                buf[b / 8] & !(0x80 >> (b % 8)) | ((bit as u8) << (7 - b % 8));
                        }
                    }
                }
                let want = naive_hits(&buf, &m, 1);
                for k in kernels() {
                    assert_eq!(
                        all_hits(&buf, &m, Some(k), false),
                        want,
                        "bits {bits} tol {tol} len {len} {k:?}"
                    );
                }
                let want8 = naive_hits(&buf, &m, 8);
                assert_eq!(
                    all_hits(&buf, &m, None, true),
                    want8,
                    "bytes: bits {bits} tol {tol} len {len}"
                );
            }
        }
    }

    #[test]
    fn kernels_agree_on_random_data() {
        let mut rng = Rng(25);
        let buf = rng.bytes(1 << 20);
        let m = Matcher::new(CCSDS_ASM, 32, 4, true);
        let ks = kernels();
        let hits: Vec<_> = ks
            .iter()
            .map(|&k| all_hits(&buf, &m, Some(k), false))
            .collect();
        assert!(
            hits[0].len() > 10,
            "tolerance 4 finds false alarms in 1 MiB"
        );
        for h in &hits[1..] {
            assert_eq!(h, &hits[0]);
        }
        // And through the synchronizer, on a real capture.
        let d = data!("cadu/npp.20241206T173815.dat");
        let mut a = Synchronizer::new(SyncParams::default()).unwrap();
        a.force_portable_kernel();
        let mut b = Synchronizer::new(SyncParams::default()).unwrap();
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        for s in [&mut a, &mut b] {
            s.push(&buf[..300_000]);
            s.push(&d);
            s.finish();
        }
        collect(&mut a, &mut ea);
        collect(&mut b, &mut eb);
        assert_eq!(ea, eb);
        assert_eq!(frames(&ea).len(), 1023);
    }

    #[test]
    fn memmem_finder_matches_naive() {
        let mut rng = Rng(26);
        let p = SyncParams {
            byte_aligned: true,
            search_tolerance: 0,
            ..SyncParams::default()
        };
        let s = Synchronizer::new(p).unwrap();
        let f = s.finders.as_ref().unwrap();
        for len in [0usize, 3, 4, 5, 100, 5000] {
            let mut buf = rng.bytes(len);
            for _ in 0..len / 50 {
                let at = rng.below((len - 3) as u64) as usize;
                let pat = if rng.next() & 1 == 1 {
                    [0x1A, 0xCF, 0xFC, 0x1D]
                } else {
                    [0xE5, 0x30, 0x03, 0xE2]
                };
                buf[at..at + 4].copy_from_slice(&pat);
            }
            let mut got = Vec::new();
            let mut from = 0;
            while let Ok(h) = find_bytes(&buf, from, &s.search, Some(f)) {
                got.push(h);
                from = h.rel + 1;
            }
            assert_eq!(got, naive_hits(&buf, &s.search, 8), "len {len}");
        }
    }

    #[test]
    fn extract_bits_matches_naive() {
        let mut rng = Rng(27);
        let src = rng.bytes(64);
        for n in 0..40 {
            for bit in 0..(64 - n - 1) * 8 {
                for invert in [false, true] {
                    let mut out = vec![0u8; n];
                    assert!(extract_bits(&src, bit, &mut out, invert));
                    let want: Vec<u8> = (0..n)
                        .map(|i| {
                            naive_window(&src, bit + 8 * i, 8) as u8 ^ if invert { 0xFF } else { 0 }
                        })
                        .collect();
                    assert_eq!(out, want, "n {n} bit {bit}");
                }
            }
        }
        let mut out = [0u8; 8];
        assert!(!extract_bits(&src, 57 * 8, &mut out, false));
        assert!(!extract_bits(&src, 56 * 8 + 1, &mut out, false));
        assert!(extract_bits(&src, 56 * 8, &mut out, false));
    }

    #[test]
    fn invalid_params_are_rejected() {
        let d = SyncParams::default();
        let cases = [
            (SyncParams { asm_bits: 7, ..d }, "asm_bits", 7),
            (SyncParams { asm_bits: 65, ..d }, "asm_bits", 65),
            (
                SyncParams {
                    asm: 0x1_1ACF_FC1D,
                    ..d
                },
                "asm",
                0x1_1ACF_FC1D,
            ),
            (SyncParams { frame_len: 0, ..d }, "frame_len", 0),
            (
                SyncParams {
                    frame_len: MAX_FRAME_LEN + 1,
                    ..d
                },
                "frame_len",
                MAX_FRAME_LEN as u64 + 1,
            ),
            (
                SyncParams {
                    search_tolerance: 16,
                    ..d
                },
                "search_tolerance",
                16,
            ),
            (
                SyncParams {
                    check_tolerance: 16,
                    ..d
                },
                "check_tolerance",
                16,
            ),
            (
                SyncParams {
                    lock_tolerance: 200,
                    ..d
                },
                "lock_tolerance",
                200,
            ),
            (
                SyncParams {
                    check_frames: 0,
                    ..d
                },
                "check_frames",
                0,
            ),
            (
                SyncParams {
                    max_slip_bits: 3,
                    ..d
                },
                "max_slip_bits",
                3,
            ),
        ];
        for (p, f, v) in cases {
            match Synchronizer::new(p) {
                Err(Error::SyncParam { field, value, .. }) => {
                    assert_eq!((field, value), (f, v));
                }
                other => panic!("{f}: {other:?}"),
            }
        }
        let msg = SyncParams {
            max_slip_bits: 3,
            ..d
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(msg.contains("max_slip_bits") && msg.contains('3'), "{msg}");
        assert!(Synchronizer::new(SyncParams {
            asm: 0xFFFF_FFFF_FFFF_FFFF,
            asm_bits: 64,
            lock_tolerance: 31,
            ..d
        })
        .is_ok());
        assert_eq!(d.period_bits(), 8192);
    }

    #[test]
    fn default_tolerances_vs_marker_sidelobes() {
        // The documented claim: the marker shifted by 1 or 2 bits differs from itself in 11
        // and 13 of the overlapping bits, far above lock_tolerance.
        let a = CCSDS_ASM as u32;
        assert_eq!((((a >> 1) ^ a) & 0x7FFF_FFFF).count_ones(), 11);
        assert_eq!((((a >> 2) ^ a) & 0x3FFF_FFFF).count_ones(), 13);
        assert!(u32::from(SyncParams::default().lock_tolerance) * 2 < 11);
    }
}
