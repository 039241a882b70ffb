//! The soft-symbol front end: channel symbols from a QPSK demodulator in, decoded bits out.
//!
//! ```text
//!  soft-i8 / hard bytes
//!        │
//!        ├─(80k)── marker search ─ derotate ─ strip marker ─ deinterleave ─┐
//!        │                                                                 │
//!        └─(72k)── phase search ─ derotate ──────────────────────────────── ├─ differential
//!                                                                            │  decode (opt.)
//!                                                       Viterbi ◄────────────┘
//!                                                          │
//!                                       re-encode check ◄──┤ (channel BER, loss of phase lock)
//!                                                          ▼
//!                                      packed bits → frame sync (ASM, inverted ASM)
//! ```
//!
//! **Phase ambiguity.** A QPSK receiver may lock in any of 4 rotations, and the I/Q order may be
//! swapped: 8 cases ([`PhaseCase`]). The convolutional code is transparent, so the 8 cases fall
//! into 4 pairs that differ by 180° = inverted decoded bits; frame sync resolves that half with
//! the inverted ASM (0xE53003E2). The other half is found here: each of the 4 derotations × 2
//! symbol-pair alignments is Viterbi-decoded over a window, the decoded bits are re-encoded and
//! compared with the hard decisions, and the case that agrees best (below a threshold) locks. The
//! same comparison runs continuously; a window that disagrees too much (a phase jump or a symbol
//! slip) drops the lock and the search runs again on the following symbols (a *re-acquisition*).
//!
//! **Meteor 80k** (interleaved): an 8-bit marker 0x27 precedes every 72 data soft bits. The
//! marker is searched in all 8 phase cases at every offset of the 80-bit period; the data is
//! derotated from the marker's case *before* the convolutional deinterleaver (36 branches,
//! delay unit 2048 blocks of 36 soft bits), because a rotation mixes the two channels, which the
//! deinterleaver would otherwise tear 72 × 2048 soft bits apart.
//!
//! **Differential coding** (Meteor-M N2-2 and later): per channel, `c[t] = y[t] XOR y[t-2]`,
//! soft: sign of `−y[t]·y[t−2]`, magnitude `sqrt(|y[t]·y[t−2]|)`.
//!
//! Everything is done in fixed blocks of the symbol stream, so the output depends only on the
//! symbols, never on how they were split when pushed.

use serde::{Deserialize, Serialize};

use crate::conv::{branch_bits, Viterbi, G1, G2};

/// The inner (channel) code of a downlink, as profiles declare it (`[inner]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InnerSpec {
    /// `conv` (CCSDS k=7 r=1/2) or `none` (uncoded: soft symbols are sliced).
    pub code: InnerCode,
    /// The G2 output is inverted (CCSDS 131.0 §3.3 option); false for Meteor-M.
    #[serde(default)]
    pub g2_inverted: bool,
    /// Per-channel differential coding after the convolutional encoder (Meteor-M N2-2 and later).
    #[serde(default)]
    pub differential: bool,
    /// Channel interleaver.
    #[serde(default)]
    pub interleaver: InterleaverKind,
}

/// Inner code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum InnerCode {
    /// CCSDS k=7 r=1/2 convolutional code, G1=171o, G2=133o.
    Conv,
    /// No inner code.
    None,
}

/// Channel interleaver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum InterleaverKind {
    /// None.
    #[default]
    None,
    /// Meteor-M 80 kbit/s mode: marker 0x27 every 72 soft bits, 36 branches, delay 2048.
    #[serde(rename = "meteor-80k")]
    Meteor80k,
}

/// How soft symbols arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SoftFormat {
    /// One signed byte per channel bit, positive = 1, (I, Q) pairs.
    SoftI8,
    /// Packed hard channel bits, MSB first (1 → +127, 0 → −127).
    Hard,
}

/// One of the 8 QPSK phase ambiguities: a rotation of the constellation, then optionally an
/// I/Q swap, as the channel applied them to the transmitted (I, Q) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PhaseCase(u8);

impl PhaseCase {
    /// All 8 cases.
    pub const ALL: [PhaseCase; 8] = [
        PhaseCase(0),
        PhaseCase(1),
        PhaseCase(2),
        PhaseCase(3),
        PhaseCase(4),
        PhaseCase(5),
        PhaseCase(6),
        PhaseCase(7),
    ];

    /// A case from its rotation (0, 90, 180 or 270 degrees; others are taken modulo 360 and
    /// rounded down to a multiple of 90) and swap.
    pub fn new(rotation_deg: u16, swap: bool) -> Self {
        let r = ((rotation_deg % 360) / 90) as u8;
        PhaseCase(r | if swap { 4 } else { 0 })
    }

    /// Index 0..8 (rotation/90 + 4 × swap).
    pub fn index(self) -> u8 {
        self.0
    }

    /// Rotation in degrees.
    pub fn rotation_deg(self) -> u16 {
        u16::from(self.0 & 3) * 90
    }

    /// I/Q swapped.
    pub fn swapped(self) -> bool {
        self.0 & 4 != 0
    }

    /// The same case rotated by a further 180° (what an inverted ASM reveals).
    pub fn plus_180(self) -> Self {
        PhaseCase((self.0 & 4) | ((self.0 + 2) & 3))
    }

    /// Stable label, e.g. `"0"`, `"90"`, `"180+swap"`.
    pub fn label(self) -> &'static str {
        const L: [&str; 8] = [
            "0", "90", "180", "270", "0+swap", "90+swap", "180+swap", "270+swap",
        ];
        L.get(usize::from(self.0 & 7)).copied().unwrap_or("0")
    }

    /// What the channel does to a transmitted pair (rotate, then swap).
    pub fn apply(self, i: i8, q: i8) -> (i8, i8) {
        let n = |x: i8| x.saturating_neg();
        let (a, b) = match self.0 & 3 {
            0 => (i, q),
            1 => (n(q), i),
            2 => (n(i), n(q)),
            _ => (q, n(i)),
        };
        if self.swapped() {
            (b, a)
        } else {
            (a, b)
        }
    }

    /// Undoes [`PhaseCase::apply`] on a received pair.
    pub fn undo(self, a: i8, b: i8) -> (i8, i8) {
        let n = |x: i8| x.saturating_neg();
        let (a, b) = if self.swapped() { (b, a) } else { (a, b) };
        match self.0 & 3 {
            0 => (a, b),
            1 => (b, n(a)),
            2 => (n(a), n(b)),
            _ => (n(b), a),
        }
    }
}

/// Soft XOR of two soft bits (differential decoding): sign of `−x·y`, magnitude
/// `sqrt(|x·y|)` rounded, at most 127.
#[inline]
pub fn soft_xor(x: i8, y: i8) -> i8 {
    let p = f32::from(x.unsigned_abs()) * f32::from(y.unsigned_abs());
    let m = (p.sqrt() + 0.5).min(127.0) as i8;
    if (x < 0) == (y < 0) {
        -m
    } else {
        m
    }
}

/// Link-quality and front-end counters of the soft-symbol path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InnerCounters {
    /// Soft symbols (channel bits) received.
    pub soft_bits: u64,
    /// Soft symbols skipped while searching for the phase or the interleaver marker.
    pub soft_bits_discarded: u64,
    /// Bits out of the Viterbi decoder.
    pub decoded_bits: u64,
    /// Channel bits compared with the re-encoded decoded bits (erasures excluded).
    pub channel_bits_compared: u64,
    /// Of those, how many disagreed: `channel_bit_errors / channel_bits_compared` estimates the
    /// channel bit error rate before Viterbi.
    pub channel_bit_errors: u64,
    /// Times the phase (or marker) locked.
    pub phase_locks: u64,
    /// Times the lock was lost and searched for again mid-stream (phase jump, slip).
    pub reacquisitions: u64,
    /// Current phase case (`"0"`, `"90+swap"` …), if locked. The 180° half is taken from the
    /// polarity of the last synchronized frame.
    pub phase_case: Option<&'static str>,
    /// 80k interleaver markers found where expected (at most 1 bit error).
    pub markers_ok: u64,
    /// 80k interleaver markers missing or damaged.
    pub markers_bad: u64,
    /// Erasure soft bits pushed at end of stream to flush the 80k deinterleaver.
    pub flush_soft_bits: u64,
}

impl InnerCounters {
    /// Estimated channel bit error rate before Viterbi (re-encoded decoded bits vs. the hard
    /// decisions), if anything was compared.
    pub fn channel_ber(&self) -> Option<f64> {
        (self.channel_bits_compared > 0)
            .then(|| self.channel_bit_errors as f64 / self.channel_bits_compared as f64)
    }
}

/// Something the soft front end reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SoftEvent {
    /// The phase (or the 80k marker) locked at this soft-bit position.
    PhaseLocked {
        /// Soft-bit position in the input.
        soft_bit: u64,
        /// The case found (before the 180° half that frame sync resolves).
        case: PhaseCase,
        /// Soft-bit offset of the symbol pairs (0 or 1) or of the marker within its period.
        offset: u8,
    },
    /// The lock was lost at this soft-bit position (a phase jump, slip or loss of signal).
    PhaseLost {
        /// Soft-bit position in the input.
        soft_bit: u64,
    },
}

/// Soft bits of the phase-search window.
pub const SEARCH_WINDOW: usize = 8192;
/// Soft bits processed per block while locked.
const BLOCK: usize = 2048;
/// Decoded bits per re-encode check window.
const CHECK_WINDOW: u64 = 4096;
/// A window disagreeing more than this (per mille) loses the lock, as does one disagreeing
/// 50 per mille and half again more than the running level.
const LOSS_PER_MILLE: u64 = 250;
/// The phase search accepts a case disagreeing at most this much (per mille).
const LOCK_PER_MILLE: u64 = 220;

/// 80k: soft bits per marker period, marker bits, data soft bits per period.
pub const MARKER_PERIOD: usize = 80;
/// 80k marker value, 8 bits, sent one bit per soft symbol.
pub const MARKER: u8 = 0x27;
const MARKER_BITS: usize = 8;
const DATA_PER_PERIOD: usize = MARKER_PERIOD - MARKER_BITS;
/// 80k interleaver: branches (soft bits per block).
pub const BRANCHES: usize = 36;
/// 80k interleaver: delay unit in blocks.
pub const DELAY: usize = 2048;
/// Marker periods examined by the 80k marker search.
const MARKER_SEARCH_PERIODS: usize = 64;
/// Consecutive damaged markers that drop the 80k lock.
const MARKER_LOSS: u32 = 8;

/// The convolutional deinterleaver of the Meteor-M 80k mode: branch `i` of each 36-soft-bit
/// block is delayed by `2048 × (35 − i)` blocks; positions not yet received are erasures (0).
pub struct Deinterleaver {
    ring: Vec<i8>,
    slots: usize,
    block: u64,
}

impl std::fmt::Debug for Deinterleaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deinterleaver")
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

impl Default for Deinterleaver {
    fn default() -> Self {
        Self::new()
    }
}

impl Deinterleaver {
    /// An empty deinterleaver (about 2.6 MB).
    pub fn new() -> Self {
        let slots = (BRANCHES - 1) * DELAY + 1;
        Self {
            ring: vec![0; slots * BRANCHES],
            slots,
            block: 0,
        }
    }

    /// Soft bits that must be pushed after the last real one to flush everything out.
    pub fn span() -> usize {
        (BRANCHES - 1) * DELAY * BRANCHES
    }

    /// Pushes one block of 36 soft bits and writes the deinterleaved block to `out`.
    pub fn push_block(&mut self, input: &[i8; BRANCHES], out: &mut [i8; BRANCHES]) {
        let slot = (self.block % self.slots as u64) as usize;
        if let Some(dst) = self.ring.get_mut(slot * BRANCHES..(slot + 1) * BRANCHES) {
            dst.copy_from_slice(input);
        }
        for (i, o) in out.iter_mut().enumerate() {
            let delay = (DELAY * (BRANCHES - 1 - i)) as u64;
            *o = match self.block.checked_sub(delay) {
                Some(b) => {
                    let s = (b % self.slots as u64) as usize;
                    self.ring.get(s * BRANCHES + i).copied().unwrap_or(0)
                }
                None => 0,
            };
        }
        self.block += 1;
    }
}

/// The transmitter side of the Meteor-M 80k interleaver (for tests and rehearsals): branch `i`
/// is delayed by `2048 × i` blocks, and the marker is inserted before every 72 soft bits.
pub struct Interleaver {
    inner: Vec<i8>,
    slots: usize,
    block: u64,
    pending: Vec<i8>,
}

impl std::fmt::Debug for Interleaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interleaver")
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

impl Default for Interleaver {
    fn default() -> Self {
        Self::new()
    }
}

impl Interleaver {
    /// An interleaver whose delay lines start as erasures (0).
    pub fn new() -> Self {
        let slots = (BRANCHES - 1) * DELAY + 1;
        Self {
            inner: vec![0; slots * BRANCHES],
            slots,
            block: 0,
            pending: Vec::new(),
        }
    }

    /// Interleaves soft symbols and appends the channel stream (markers as ±`amplitude`) to
    /// `out`; whole 72-symbol periods are emitted, the rest is kept.
    pub fn push(&mut self, soft: &[i8], amplitude: i8, out: &mut Vec<i8>) {
        self.pending.extend_from_slice(soft);
        let whole = self.pending.len() / DATA_PER_PERIOD * DATA_PER_PERIOD;
        let take: Vec<i8> = self.pending.drain(..whole).collect();
        let a = amplitude.clamp(1, 127);
        for period in take.chunks_exact(DATA_PER_PERIOD) {
            for k in (0..MARKER_BITS).rev() {
                out.push(if (MARKER >> k) & 1 == 1 { a } else { -a });
            }
            for blk in period.chunks_exact(BRANCHES) {
                let slot = (self.block % self.slots as u64) as usize;
                if let Some(dst) = self.inner.get_mut(slot * BRANCHES..(slot + 1) * BRANCHES) {
                    dst.copy_from_slice(blk);
                }
                for i in 0..BRANCHES {
                    let delay = (DELAY * i) as u64;
                    let v = match self.block.checked_sub(delay) {
                        Some(b) => {
                            let s = (b % self.slots as u64) as usize;
                            self.inner.get(s * BRANCHES + i).copied().unwrap_or(0)
                        }
                        None => 0,
                    };
                    out.push(v);
                }
                self.block += 1;
            }
        }
    }
}

/// The marker's 8 soft-bit signs as received under `case` (pairs aligned on the marker start).
fn marker_pattern(case: PhaseCase) -> [i8; MARKER_BITS] {
    let mut p = [0i8; MARKER_BITS];
    for k in 0..MARKER_BITS / 2 {
        let bit = |n: usize| {
            if (MARKER >> (7 - n)) & 1 == 1 {
                1i8
            } else {
                -1
            }
        };
        let (a, b) = case.apply(bit(2 * k), bit(2 * k + 1));
        if let Some(s) = p.get_mut(2 * k) {
            *s = a;
        }
        if let Some(s) = p.get_mut(2 * k + 1) {
            *s = b;
        }
    }
    p
}

fn marker_errors(soft: &[i8], pattern: &[i8; MARKER_BITS]) -> u32 {
    soft.iter()
        .zip(pattern)
        .map(|(s, p)| u32::from((*s > 0) != (*p > 0) || *s == 0))
        .sum()
}

/// The 4 derotations tried by the 72k phase search (the other 4 differ by 180°).
const SEARCH_CASES: [PhaseCase; 4] = [PhaseCase(0), PhaseCase(1), PhaseCase(4), PhaseCase(5)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lock {
    Searching,
    Locked { case: PhaseCase },
}

/// Re-encodes decoded bits and compares them with the hard decisions of the channel bits.
#[derive(Debug)]
struct Checker {
    /// The decoded bits so far, newest in bit 0 (the encoder register is its low 7 bits).
    reg: u64,
    /// Per (7-bit register value << 4 | hard decisions of the step): the channel bits that
    /// disagree with the re-encoded ones (low 16 bits) and the channel bits compared (high 16).
    table: [u32; 2048],
    /// All ones when G2 is inverted (the bit-plane re-encoder's G2 flip).
    g2_flip: u64,
    /// Whether the bit planes are packed with AVX-512 BW (checked at run time).
    simd_planes: bool,
    /// Hard decisions (bit 0: G1 value, bit 1: G2 value, bit 2: G1 erased, bit 3: G2 erased) of
    /// steps whose decoded bit has not come out yet, from `head` on.
    hard: Vec<u8>,
    head: usize,
    window_bits: u64,
    window_compared: u64,
    window_errors: u64,
    /// Running disagreement (per mille) of the windows since lock.
    level: u64,
}

/// Bit `shift` of each of 64 bytes, packed into a word (byte i → bit i).
#[inline]
fn pack_plane(bytes: &[u8], shift: u32) -> u64 {
    let mut w = 0u64;
    for (k, c) in bytes.chunks_exact(8).take(8).enumerate() {
        let x = match <[u8; 8]>::try_from(c) {
            Ok(a) => (u64::from_le_bytes(a) >> shift) & 0x0101_0101_0101_0101,
            Err(_) => 0,
        };
        // Byte i (0 or 1) lands on bit 56 + i; no two partial products meet.
        w |= (x.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * k);
    }
    w
}

/// The bit planes of 64 steps: decoded bits, G1 and G2 hard values, G1 and G2 erasures.
#[inline]
fn planes(bits: &[u8], hard: &[u8], simd: bool) -> [u64; 5] {
    #[cfg(target_arch = "x86_64")]
    if simd {
        if let (Ok(b), Ok(h)) = (<&[u8; 64]>::try_from(bits), <&[u8; 64]>::try_from(hard)) {
            return planes_x86::planes(b, h);
        }
    }
    let _ = simd;
    [
        pack_plane(bits, 0),
        pack_plane(hard, 0),
        pack_plane(hard, 1),
        pack_plane(hard, 2),
        pack_plane(hard, 3),
    ]
}

fn planes_simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod planes_x86 {
    //! Bit planes with one AVX-512 BW byte test per plane.
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512bw")]
    fn planes_avx512(bits: &[u8; 64], hard: &[u8; 64]) -> [u64; 5] {
        // SAFETY: both arrays are exactly 64 bytes; unaligned loads.
        let b = unsafe { _mm512_loadu_si512(bits.as_ptr().cast::<__m512i>()) };
        // SAFETY: as above.
        let h = unsafe { _mm512_loadu_si512(hard.as_ptr().cast::<__m512i>()) };
        [
            _mm512_test_epi8_mask(b, _mm512_set1_epi8(1)),
            _mm512_test_epi8_mask(h, _mm512_set1_epi8(1)),
            _mm512_test_epi8_mask(h, _mm512_set1_epi8(2)),
            _mm512_test_epi8_mask(h, _mm512_set1_epi8(4)),
            _mm512_test_epi8_mask(h, _mm512_set1_epi8(8)),
        ]
    }

    /// The hard-decision flags of the pairs of `soft`, 32 pairs per vector, appended to `hard`
    /// as `Checker::push_pairs` builds them; returns the symbols left for the scalar code.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn push_flags_avx512<'a>(soft: &'a [i8], hard: &mut Vec<u8>) -> &'a [i8] {
        let whole = soft.len() / 64 * 64;
        let (vec_in, rest) = soft.split_at(whole);
        let start = hard.len();
        hard.resize(start + whole / 2, 0);
        let out = hard.get_mut(start..).unwrap_or_default();
        // Bit values per symbol: G1 (even bytes) sets bits 0 and 2, G2 (odd bytes) 1 and 3.
        let pos_val = _mm512_set1_epi16(0x0201);
        let zero_val = _mm512_set1_epi16(0x0804);
        let ones = _mm512_set1_epi8(1);
        let zero = _mm512_setzero_si512();
        for (src, dst) in vec_in.chunks_exact(64).zip(out.chunks_exact_mut(32)) {
            // SAFETY: `src` is 64 bytes; unaligned load.
            let v = unsafe { _mm512_loadu_si512(src.as_ptr().cast::<__m512i>()) };
            let pos = _mm512_cmpgt_epi8_mask(v, zero);
            let nil = _mm512_cmpeq_epi8_mask(v, zero);
            let bits = _mm512_or_si512(
                _mm512_maskz_mov_epi8(pos, pos_val),
                _mm512_maskz_mov_epi8(nil, zero_val),
            );
            // The two symbols' bits of a pair are disjoint: their sum is their union.
            let pairs = _mm512_maddubs_epi16(bits, ones);
            let flags = _mm512_cvtepi16_epi8(pairs);
            // SAFETY: `dst` is 32 bytes; unaligned store.
            unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast::<__m256i>(), flags) };
        }
        rest
    }

    pub(super) fn push_flags<'a>(soft: &'a [i8], hard: &mut Vec<u8>) -> &'a [i8] {
        // SAFETY: only called when `planes_simd_available()` reported avx512f and avx512bw.
        unsafe { push_flags_avx512(soft, hard) }
    }

    pub(super) fn planes(bits: &[u8; 64], hard: &[u8; 64]) -> [u64; 5] {
        // SAFETY: only called when `planes_simd_available()` reported avx512f and avx512bw.
        unsafe { planes_avx512(bits, hard) }
    }
}

impl Checker {
    fn new(g2_inverted: bool) -> Self {
        let mut table = [0u32; 2048];
        for (i, v) in table.iter_mut().enumerate() {
            let (a, b) = branch_bits((i >> 4) as u8, g2_inverted);
            let enc = a | (b << 1);
            let h = (i & 15) as u8;
            // Erased symbols (bits 2, 3) are not compared.
            let valid = !(h >> 2) & 3;
            let diff = (enc ^ h) & valid;
            *v = diff.count_ones() | (valid.count_ones() << 16);
        }
        Self {
            reg: 0,
            table,
            g2_flip: if g2_inverted { u64::MAX } else { 0 },
            simd_planes: planes_simd_available(),
            hard: Vec::new(),
            head: 0,
            window_bits: 0,
            window_compared: 0,
            window_errors: 0,
            level: 0,
        }
    }

    fn push_pairs(&mut self, soft: &[i8]) {
        if self.head > 4096 && self.head * 2 > self.hard.len() {
            self.hard.drain(..self.head);
            self.head = 0;
        }
        #[cfg(target_arch = "x86_64")]
        let soft = if self.simd_planes {
            planes_x86::push_flags(soft, &mut self.hard)
        } else {
            soft
        };
        self.hard.extend(soft.chunks_exact(2).map(|p| match p {
            [a, b] => {
                u8::from(*a > 0)
                    | (u8::from(*b > 0) << 1)
                    | (u8::from(*a == 0) << 2)
                    | (u8::from(*b == 0) << 3)
            }
            _ => 0,
        }));
    }

    fn reset(&mut self, level: u64) {
        self.level = level;
        self.reg = 0;
        self.hard.clear();
        self.head = 0;
        self.window_bits = 0;
        self.window_compared = 0;
        self.window_errors = 0;
    }

    /// Compares decoded bits; returns true when a window disagreed beyond the loss threshold.
    fn check(&mut self, bits: &[u8], c: &mut InnerCounters) -> bool {
        let mut lost = false;
        let hard = self.hard.get(self.head..).unwrap_or_default();
        let n = bits.len().min(hard.len());
        let mut bits = bits.get(..n).unwrap_or_default();
        let mut hard = hard.get(..n).unwrap_or_default();
        while !bits.is_empty() {
            // Up to the end of the current window.
            let take = usize::try_from(CHECK_WINDOW - self.window_bits)
                .unwrap_or(usize::MAX)
                .min(bits.len());
            let (b_now, b_rest) = bits.split_at(take);
            let (h_now, h_rest) = hard.split_at(take);
            let mut reg = self.reg;
            // 64 steps at a time on bit planes, then step by step through the table.
            let blocks = take / 64 * 64;
            let (b_blk, b_tail) = b_now.split_at(blocks);
            let (h_blk, h_tail) = h_now.split_at(blocks);
            for (b, h) in b_blk.chunks_exact(64).zip(h_blk.chunks_exact(64)) {
                let (errors, compared) = self.block(&mut reg, b, h);
                self.window_errors += errors;
                self.window_compared += compared;
            }
            // Per window at most 2 × 4096 in each 16-bit half: no carry between them.
            let mut acc = 0u32;
            for (bit, h) in b_tail.iter().zip(h_tail) {
                reg = (reg << 1) | u64::from(bit & 1);
                let i = (((reg & 0x7F) as usize) << 4) | usize::from(h & 15);
                acc += self.table.get(i & 2047).copied().unwrap_or(0);
            }
            self.reg = reg;
            self.window_errors += u64::from(acc & 0xFFFF);
            self.window_compared += u64::from(acc >> 16);
            self.window_bits += take as u64;
            if self.window_bits == CHECK_WINDOW {
                c.channel_bits_compared += self.window_compared;
                c.channel_bit_errors += self.window_errors;
                if self.window_compared > CHECK_WINDOW / 2 {
                    let e = self.window_errors * 1000 / self.window_compared;
                    // A phase jump or slip raises the disagreement abruptly (a 90-degree jump
                    // by about 140 per mille on a clean link); slow changes of the signal
                    // level only move the running level.
                    if e > LOSS_PER_MILLE || (e > self.level + 50 && e * 2 > self.level * 3) {
                        lost = true;
                    } else {
                        self.level = (3 * self.level + e) / 4;
                    }
                }
                self.window_bits = 0;
                self.window_compared = 0;
                self.window_errors = 0;
            }
            bits = b_rest;
            hard = h_rest;
        }
        self.head += n;
        lost
    }

    /// The disagreeing and compared channel bits of 64 steps (`bits`: decoded 0/1 values,
    /// `hard`: their steps' hard decisions), as the table would count them, on bit planes: the
    /// decoded bits packed into one word, re-encoded with shifts and XORs (one per tap of G1 and
    /// G2), compared with the packed hard decisions.
    fn block(&self, reg: &mut u64, bits: &[u8], hard: &[u8]) -> (u64, u64) {
        let [w, h1, h2, e1, e2] = planes(bits, hard, self.simd_planes);
        // Bit 7 + i = decoded bit i of the block; bits 0..7 = the 7 bits before it, oldest low.
        let v = (u128::from(w) << 7) | u128::from(((*reg & 0x7F) as u8).reverse_bits() >> 1);
        // Register bit k (k steps back) of every step: bit 7 - k on.
        let encode = |g: u8| {
            (0..7)
                .filter(|k| g >> k & 1 == 1)
                .fold(0u64, |x, k| x ^ (v >> (7 - k)) as u64)
        };
        let g1 = encode(G1);
        let g2 = encode(G2) ^ self.g2_flip;
        let (v1, v2) = (!e1, !e2);
        *reg = w.reverse_bits();
        let errors = ((g1 ^ h1) & v1).count_ones() + ((g2 ^ h2) & v2).count_ones();
        (
            u64::from(errors),
            u64::from(v1.count_ones() + v2.count_ones()),
        )
    }

    /// Adds the partial window to the counters (end of stream, loss of lock).
    fn settle(&mut self, c: &mut InnerCounters) {
        c.channel_bits_compared += self.window_compared;
        c.channel_bit_errors += self.window_errors;
        self.window_bits = 0;
        self.window_compared = 0;
        self.window_errors = 0;
    }
}

/// Re-encode disagreement (per mille) of a trial decode of `soft` (already derotated pairs).
fn trial(soft: &[i8], g2_inverted: bool, simd: bool) -> u64 {
    let mut v = Viterbi::new(g2_inverted);
    if !simd {
        v = v.without_simd();
    }
    let mut bits = Vec::with_capacity(soft.len() / 2);
    v.decode(soft, &mut bits);
    v.flush(&mut bits);
    let mut reg = 0u8;
    let (mut n, mut e) = (0u64, 0u64);
    for (k, (bit, p)) in bits.iter().zip(soft.chunks_exact(2)).enumerate() {
        reg = ((reg << 1) | (bit & 1)) & 0x7F;
        if k < 16 {
            continue;
        }
        let (g1, g2) = branch_bits(reg, g2_inverted);
        if let [a, b] = p {
            if *a != 0 {
                n += 1;
                e += u64::from(g1 != u8::from(*a > 0));
            }
            if *b != 0 {
                n += 1;
                e += u64::from(g2 != u8::from(*b > 0));
            }
        }
    }
    if n < 64 {
        return 1000;
    }
    e * 1000 / n
}

/// Derotates pairs and applies differential decoding, carrying `prev` (the last derotated
/// pair) across calls.
fn derotate_into(case: PhaseCase, diff: bool, prev: &mut [i8; 2], pairs: &[i8], out: &mut Vec<i8>) {
    if case == PhaseCase(0) && !diff {
        out.extend_from_slice(pairs.get(..pairs.len() & !1).unwrap_or_default());
        return;
    }
    for p in pairs.chunks_exact(2) {
        if let [a, b] = p {
            let (x, y) = case.undo(*a, *b);
            if diff {
                out.push(soft_xor(x, prev[0]));
                out.push(soft_xor(y, prev[1]));
                *prev = [x, y];
            } else {
                out.push(x);
                out.push(y);
            }
        }
    }
}

/// The soft-symbol front end. Push raw input bytes, then call [`SoftFront::process`] to obtain
/// decoded bits (one 0/1 value per byte) and events.
pub struct SoftFront {
    spec: InnerSpec,
    format: SoftFormat,
    simd: bool,
    /// Input soft bits; those before `head` are consumed.
    pending: Vec<i8>,
    head: usize,
    /// Soft-bit position of `pending[head]` in the input.
    pos: u64,
    lock: Lock,
    viterbi: Viterbi,
    checker: Checker,
    prev: [i8; 2],
    deint: Option<Box<Deinterleaver>>,
    bad_markers: u32,
    finished: bool,
    done: bool,
    flush_interleaver: bool,
    counters: InnerCounters,
    events: std::collections::VecDeque<SoftEvent>,
    scratch: Vec<i8>,
}

impl std::fmt::Debug for SoftFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftFront")
            .field("spec", &self.spec)
            .field("format", &self.format)
            .field("lock", &self.lock)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl SoftFront {
    /// A front end for `spec`'s inner code reading `format`.
    pub fn new(spec: &InnerSpec, format: SoftFormat) -> Self {
        let deint = (spec.interleaver == InterleaverKind::Meteor80k)
            .then(|| Box::new(Deinterleaver::new()));
        let viterbi = Viterbi::new(spec.g2_inverted);
        Self {
            spec: spec.clone(),
            format,
            simd: viterbi.uses_simd(),
            pending: Vec::new(),
            head: 0,
            pos: 0,
            lock: Lock::Searching,
            viterbi,
            checker: Checker::new(spec.g2_inverted),
            prev: [0; 2],
            deint,
            bad_markers: 0,
            finished: false,
            done: false,
            flush_interleaver: true,
            counters: InnerCounters::default(),
            events: std::collections::VecDeque::new(),
            scratch: Vec::new(),
        }
    }

    /// Restricts the Viterbi decoder to its portable kernel (bit-identical; tests, benches).
    pub fn without_simd(mut self) -> Self {
        self.simd = false;
        self.viterbi = Viterbi::new(self.spec.g2_inverted).without_simd();
        self
    }

    /// Switches to the portable Viterbi kernel; call before pushing (state is reset).
    pub fn force_portable(&mut self) {
        self.simd = false;
        self.viterbi = Viterbi::new(self.spec.g2_inverted).without_simd();
    }

    /// Whether the 80k deinterleaver is flushed with erasures at end of stream (default true):
    /// frames still inside the interleaver come out, at the cost of decoding 2.6 M erasures.
    pub fn set_flush_interleaver(&mut self, on: bool) {
        self.flush_interleaver = on;
    }

    /// Feeds raw input bytes (soft-i8 bytes or packed hard bits).
    pub fn push(&mut self, data: &[u8]) {
        if self.finished {
            return;
        }
        match self.format {
            SoftFormat::SoftI8 => self
                .pending
                .extend(data.iter().map(|b| (*b as i8).max(-127))),
            SoftFormat::Hard => {
                for b in data {
                    for k in (0..8).rev() {
                        self.pending
                            .push(if (b >> k) & 1 == 1 { 127 } else { -127 });
                    }
                }
            }
        }
        self.counters.soft_bits += match self.format {
            SoftFormat::SoftI8 => data.len() as u64,
            SoftFormat::Hard => data.len() as u64 * 8,
        };
    }

    /// Marks the end of the input.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// The counters.
    pub fn counters(&self) -> InnerCounters {
        self.counters
    }

    /// The current phase case, if locked.
    pub fn phase_case(&self) -> Option<PhaseCase> {
        match self.lock {
            Lock::Locked { case } => Some(case),
            Lock::Searching => None,
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SoftEvent> {
        self.events.pop_front()
    }

    /// Whether everything has been processed after `finish`.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Processes buffered input (at most about `budget` soft bits) and appends decoded bits
    /// (0/1 per byte) to `out`. Returns false when nothing could be done.
    pub fn process(&mut self, budget: usize, out: &mut Vec<u8>) -> bool {
        if self.done {
            return false;
        }
        let before_pos = self.pos;
        let before_out = out.len();
        let mut used = 0usize;
        while used < budget {
            let progressed = match self.spec.code {
                InnerCode::None => self.step_uncoded(out),
                InnerCode::Conv if self.deint.is_some() => self.step_80k(out),
                InnerCode::Conv => self.step_72k(out),
            };
            if !progressed {
                break;
            }
            used = (self.pos - before_pos) as usize;
            // Hand out the bits decoded so far before anything after an event, so that events
            // interleave with frames the same way however the input was split.
            if !self.events.is_empty() {
                break;
            }
        }
        if self.finished && used < budget && !self.done && self.events.is_empty() {
            self.end_of_stream(out);
            self.done = true;
        }
        self.counters.decoded_bits += (out.len() - before_out) as u64;
        self.pos != before_pos || out.len() != before_out || self.done
    }

    /// The unconsumed input.
    fn avail(&self) -> &[i8] {
        self.pending.get(self.head..).unwrap_or_default()
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.avail().len());
        self.head += n;
        self.pos += n as u64;
        if self.head == self.pending.len() {
            self.pending.clear();
            self.head = 0;
        } else if self.head > 1 << 16 && self.head * 2 > self.pending.len() {
            self.pending.drain(..self.head);
            self.head = 0;
        }
    }

    fn discard(&mut self, n: usize) {
        let n = n.min(self.avail().len());
        self.counters.soft_bits_discarded += n as u64;
        self.consume(n);
    }

    fn step_uncoded(&mut self, out: &mut Vec<u8>) -> bool {
        let n = self.avail().len();
        if n == 0 {
            return false;
        }
        out.extend(self.avail().iter().map(|s| u8::from(*s > 0)));
        self.consume(n);
        true
    }

    fn decode_into(&mut self, soft: &[i8], out: &mut Vec<u8>) -> bool {
        self.checker.push_pairs(soft);
        let start = out.len();
        self.viterbi.decode(soft, out);
        let bits = out.get(start..).unwrap_or_default();
        self.checker.check(bits, &mut self.counters)
    }

    fn lose_lock(&mut self, out: &mut Vec<u8>) {
        self.viterbi.flush(out);
        self.viterbi.reset();
        self.checker.settle(&mut self.counters);
        self.checker.reset(0);
        self.prev = [0; 2];
        self.lock = Lock::Searching;
        self.counters.phase_case = None;
        self.events
            .push_back(SoftEvent::PhaseLost { soft_bit: self.pos });
    }

    fn locked(&mut self, case: PhaseCase, offset: u8) {
        if self.counters.phase_locks > 0 {
            self.counters.reacquisitions += 1;
        }
        self.counters.phase_locks += 1;
        self.counters.phase_case = Some(case.label());
        self.lock = Lock::Locked { case };
        self.events.push_back(SoftEvent::PhaseLocked {
            soft_bit: self.pos,
            case,
            offset,
        });
    }

    /// Tries the 4 derotations × 2 pair alignments on `window` soft bits; returns the best
    /// (case, offset) if it is good enough.
    fn search(&self, window: usize) -> Option<(PhaseCase, u8, u64)> {
        let mut best: Option<(u64, PhaseCase, u8)> = None;
        let mut buf = Vec::with_capacity(window);
        for offset in 0..2u8 {
            let src = self
                .avail()
                .get(usize::from(offset)..window)
                .unwrap_or_default();
            for case in SEARCH_CASES {
                buf.clear();
                let mut prev = [0i8; 2];
                derotate_into(case, self.spec.differential, &mut prev, src, &mut buf);
                let score = trial(&buf, self.spec.g2_inverted, self.simd);
                if best.is_none_or(|(s, _, _)| score < s) {
                    best = Some((score, case, offset));
                }
            }
        }
        best.filter(|(s, _, _)| *s <= LOCK_PER_MILLE)
            .map(|(s, c, o)| (c, o, s))
    }

    fn step_72k(&mut self, out: &mut Vec<u8>) -> bool {
        match self.lock {
            Lock::Searching => {
                let window = if self.avail().len() >= SEARCH_WINDOW {
                    SEARCH_WINDOW
                } else if self.finished && self.avail().len() >= 512 {
                    self.avail().len()
                } else {
                    return false;
                };
                match self.search(window) {
                    Some((case, offset, score)) => {
                        self.discard(usize::from(offset));
                        self.checker.reset(score);
                        self.locked(case, offset);
                    }
                    None => self.discard(window / 2),
                }
                true
            }
            Lock::Locked { case } => {
                let n = if self.avail().len() >= BLOCK {
                    BLOCK
                } else if self.finished && self.avail().len() >= 2 {
                    self.avail().len() & !1
                } else {
                    return false;
                };
                let lost = if case == PhaseCase(0) && !self.spec.differential {
                    // Nothing to derotate: decode straight from the input buffer.
                    let pending = std::mem::take(&mut self.pending);
                    let src = pending.get(self.head..self.head + n).unwrap_or_default();
                    let lost = self.decode_into(src, out);
                    self.pending = pending;
                    lost
                } else {
                    let mut buf = std::mem::take(&mut self.scratch);
                    buf.clear();
                    let src = self
                        .pending
                        .get(self.head..self.head + n)
                        .unwrap_or_default();
                    derotate_into(case, self.spec.differential, &mut self.prev, src, &mut buf);
                    let lost = self.decode_into(&buf, out);
                    self.scratch = buf;
                    lost
                };
                self.consume(n);
                if lost {
                    self.lose_lock(out);
                }
                true
            }
        }
    }

    fn search_marker(&self) -> Option<(PhaseCase, u8)> {
        let need = MARKER_PERIOD * MARKER_SEARCH_PERIODS + MARKER_PERIOD;
        let buf = self.avail().get(..need)?;
        let patterns = PhaseCase::ALL.map(marker_pattern);
        let mut best: Option<(u32, PhaseCase, u8)> = None;
        for off in 0..MARKER_PERIOD {
            for (case, pat) in PhaseCase::ALL.iter().zip(&patterns) {
                let errs: u32 = (0..MARKER_SEARCH_PERIODS)
                    .map(|k| {
                        let s = off + k * MARKER_PERIOD;
                        marker_errors(buf.get(s..s + MARKER_BITS).unwrap_or_default(), pat)
                    })
                    .sum();
                if best.is_none_or(|(e, _, _)| errs < e) {
                    best = Some((errs, *case, off as u8));
                }
            }
        }
        let limit = (MARKER_SEARCH_PERIODS * MARKER_BITS / 10) as u32;
        best.filter(|(e, _, _)| *e <= limit).map(|(_, c, o)| (c, o))
    }

    fn step_80k(&mut self, out: &mut Vec<u8>) -> bool {
        match self.lock {
            Lock::Searching => {
                let need = MARKER_PERIOD * MARKER_SEARCH_PERIODS + MARKER_PERIOD;
                if self.avail().len() < need {
                    return false;
                }
                match self.search_marker() {
                    Some((case, off)) => {
                        self.discard(usize::from(off));
                        self.bad_markers = 0;
                        self.locked(case, off);
                    }
                    None => self.discard(MARKER_PERIOD * MARKER_SEARCH_PERIODS / 2),
                }
                true
            }
            Lock::Locked { case } => {
                let periods = (self.avail().len() / MARKER_PERIOD).min(BLOCK / MARKER_PERIOD);
                if periods == 0 {
                    return false;
                }
                let pattern = marker_pattern(case);
                let mut buf = std::mem::take(&mut self.scratch);
                buf.clear();
                let mut lost_at = None;
                for k in 0..periods {
                    let s = k * MARKER_PERIOD;
                    let at = self.head + s;
                    let Some(period) = self.pending.get(at..at + MARKER_PERIOD) else {
                        break;
                    };
                    let (marker, data) = period.split_at(MARKER_BITS);
                    if marker_errors(marker, &pattern) <= 1 {
                        self.counters.markers_ok += 1;
                        self.bad_markers = 0;
                    } else {
                        self.counters.markers_bad += 1;
                        self.bad_markers += 1;
                    }
                    let mut derot = [0i8; DATA_PER_PERIOD];
                    for (d, p) in derot.chunks_exact_mut(2).zip(data.chunks_exact(2)) {
                        if let ([x, y], [a, b]) = (d, p) {
                            (*x, *y) = case.undo(*a, *b);
                        }
                    }
                    self.deinterleave_period(&derot, &mut buf);
                    if self.bad_markers >= MARKER_LOSS {
                        lost_at = Some(k + 1);
                        break;
                    }
                }
                let used = lost_at.unwrap_or(periods) * MARKER_PERIOD;
                self.decode_into(&buf, out);
                self.scratch = buf;
                self.consume(used);
                if lost_at.is_some() {
                    // The deinterleaver keeps its contents: after the marker is found again the
                    // branches line up as before (a slip only loses the symbols in between).
                    self.lock = Lock::Searching;
                    self.counters.phase_case = None;
                    self.events
                        .push_back(SoftEvent::PhaseLost { soft_bit: self.pos });
                }
                true
            }
        }
    }

    /// Deinterleaves one period of 72 derotated data soft bits and appends the differentially
    /// decoded result (if the profile says so) to `buf`.
    fn deinterleave_period(&mut self, data: &[i8; DATA_PER_PERIOD], buf: &mut Vec<i8>) {
        let Some(d) = self.deint.as_mut() else {
            return;
        };
        for half in data.chunks_exact(BRANCHES) {
            let mut inb = [0i8; BRANCHES];
            inb.copy_from_slice(half);
            let mut o = [0i8; BRANCHES];
            d.push_block(&inb, &mut o);
            for p in o.chunks_exact(2) {
                if let [x, y] = p {
                    if self.spec.differential {
                        buf.push(soft_xor(*x, self.prev[0]));
                        buf.push(soft_xor(*y, self.prev[1]));
                        self.prev = [*x, *y];
                    } else {
                        buf.push(*x);
                        buf.push(*y);
                    }
                }
            }
        }
    }

    fn end_of_stream(&mut self, out: &mut Vec<u8>) {
        if self.deint.is_some() && self.flush_interleaver && self.counters.phase_locks > 0 {
            let zeros = [0i8; DATA_PER_PERIOD];
            let periods = Deinterleaver::span() / DATA_PER_PERIOD;
            let mut buf = Vec::with_capacity(BLOCK);
            for k in 0..periods {
                self.deinterleave_period(&zeros, &mut buf);
                if buf.len() >= BLOCK || k + 1 == periods {
                    self.decode_into(&buf, out);
                    buf.clear();
                }
            }
            self.counters.flush_soft_bits += (periods * DATA_PER_PERIOD) as u64;
        }
        let start = out.len();
        self.viterbi.flush(out);
        let bits = out.get(start..).unwrap_or_default();
        self.checker.check(bits, &mut self.counters);
        self.checker.settle(&mut self.counters);
        let rest = self.avail().len();
        self.discard(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_plane_check_counts_as_the_table() {
        let mut seed = 11u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        for g2_inverted in [false, true] {
            let n = 20_000;
            // Soft symbols with erasures, and decoded bits that mostly follow a real code.
            let data: Vec<u8> = (0..n).map(|_| (next() & 1) as u8).collect();
            let mut soft = Vec::new();
            crate::conv::ConvEncoder::new(g2_inverted).encode_soft(&data, 60, &mut soft);
            for x in soft.iter_mut() {
                match next() % 16 {
                    0 => *x = 0,
                    1 => *x = -*x,
                    _ => {}
                }
            }
            let bits: Vec<u8> = data
                .iter()
                .map(|b| if next() % 50 == 0 { b ^ 1 } else { *b })
                .collect();
            // Reference: one bit at a time (the table path only).
            let mut reference = InnerCounters::default();
            let mut one = Checker::new(g2_inverted);
            one.push_pairs(&soft);
            let mut lost_one = 0;
            for b in bits.chunks(1) {
                lost_one += usize::from(one.check(b, &mut reference));
            }
            one.settle(&mut reference);
            // Random pieces, most long enough for the 64-step blocks.
            let mut counted = InnerCounters::default();
            let mut many = Checker::new(g2_inverted);
            many.push_pairs(&soft);
            let mut lost_many = 0;
            let mut at = 0;
            while at < bits.len() {
                let end = (at + 1 + (next() % 700) as usize).min(bits.len());
                lost_many += usize::from(many.check(&bits[at..end], &mut counted));
                at = end;
            }
            many.settle(&mut counted);
            assert!(reference.channel_bit_errors > 1000, "{reference:?}");
            assert!(
                reference.channel_bits_compared < 2 * n as u64,
                "{reference:?}"
            );
            assert_eq!(counted, reference, "g2_inverted {g2_inverted}");
            assert_eq!(lost_many, lost_one);
            // The portable bit planes and flags too, where the AVX-512 ones ran above.
            let mut portable = InnerCounters::default();
            let mut p = Checker::new(g2_inverted);
            p.simd_planes = false;
            p.push_pairs(&soft);
            assert_eq!(p.hard, many.hard, "hard-decision flags");
            for b in bits.chunks(640) {
                p.check(b, &mut portable);
            }
            p.settle(&mut portable);
            assert_eq!(portable, reference, "portable, g2_inverted {g2_inverted}");
        }
    }

    #[test]
    fn phase_cases_undo_what_they_apply() {
        for c in PhaseCase::ALL {
            for (i, q) in [(100i8, -50i8), (-127, 3), (0, 127)] {
                assert_eq!(
                    c.undo(c.apply(i, q).0, c.apply(i, q).1),
                    (i, q),
                    "{}",
                    c.label()
                );
            }
        }
        assert_eq!(PhaseCase::new(90, false).apply(10, 20), (-20, 10));
        assert_eq!(PhaseCase::new(0, true).apply(10, 20), (20, 10));
        assert_eq!(
            PhaseCase::new(90, true).plus_180(),
            PhaseCase::new(270, true)
        );
    }

    #[test]
    fn marker_patterns_are_distinct() {
        let pats: Vec<_> = PhaseCase::ALL.iter().map(|c| marker_pattern(*c)).collect();
        for (i, a) in pats.iter().enumerate() {
            for b in pats.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn soft_xor_is_xor() {
        assert!(soft_xor(100, 100) < 0);
        assert_eq!(soft_xor(-100, -20), -45);
        assert_eq!(soft_xor(100, -20), 45);
        assert_eq!(soft_xor(127, -127), 127);
        assert_eq!(soft_xor(-128, -128), -127);
        assert_eq!(soft_xor(0, 50), 0);
    }

    #[test]
    fn interleaver_and_deinterleaver_invert_each_other() {
        let mut tx = Interleaver::new();
        let mut rx = Deinterleaver::new();
        let n = DATA_PER_PERIOD * 8;
        let data: Vec<i8> = (0..n).map(|k| ((k % 120) as i8) + 1).collect();
        let mut chan = Vec::new();
        tx.push(&data, 100, &mut chan);
        let zeros = vec![1i8; Deinterleaver::span()];
        tx.push(&zeros, 100, &mut chan);
        let mut got = Vec::new();
        for period in chan.chunks_exact(MARKER_PERIOD) {
            let data = period.get(MARKER_BITS..).unwrap_or_default();
            for blk in data.chunks_exact(BRANCHES) {
                let mut i = [0i8; BRANCHES];
                i.copy_from_slice(blk);
                let mut o = [0i8; BRANCHES];
                rx.push_block(&i, &mut o);
                got.extend_from_slice(&o);
            }
        }
        let delay = Deinterleaver::span();
        assert_eq!(got.get(delay..delay + n).unwrap_or_default(), &data[..]);
    }
}
