//! The CCSDS rate-1/2 convolutional code (CCSDS 131.0-B, §3): constraint length 7,
//! G1 = 171 (octal), G2 = 133 (octal), with the optional inversion of the G2 output.
//!
//! [`ConvEncoder`] is the transmitter (used by tests and to rehearse links); [`Viterbi`] is the
//! soft-decision maximum-likelihood decoder, streaming with a bounded traceback.
//!
//! Register convention: the shift register holds the last 7 input bits with the newest bit in the
//! least significant position, so the generators read as `0x4F` (171o bit-reversed) and `0x6D`
//! (133o bit-reversed). Both generators have odd weight, so the code is *transparent*: inverting
//! every input bit inverts every output symbol. A 180° carrier phase error therefore only
//! inverts the decoded bits, which frame sync resolves with the inverted ASM.
//!
//! # Soft symbols
//! Soft symbols are `i8`, **positive = bit 1**, magnitude = confidence, 0 = erasure, in
//! (G1, G2) order per data bit. `-128` is treated as `-127`.
//!
//! # Viterbi
//! 64 states, add-compare-select with unsigned 8-bit saturating path metrics. Each symbol costs
//! its 5-bit quantised distance from the hypothesis, `(127 ± r) >> 3`, less the smaller of the two
//! (so the likelier bit costs 0 and the other 0..=31; subtracting the same amount from every
//! branch of a step changes no decision); a branch costs 0..=62 and the likeliest branch of a step
//! costs 0. The minimum metric is subtracted every [`RENORM`] steps only: with the likeliest
//! branch free the best metric grows slowly (by at most 31 a step even on garbage), and a path more
//! than about 255 worse than the best saturates, which only affects hopeless paths (4-bit costs
//! lost frames of the 80k capture that 5-bit costs recover). Decisions are kept for
//! [`TRACEBACK`] + [`CHUNK`] steps; each traceback from the best state releases [`CHUNK`] bits, so
//! memory is bounded and the output depends only on the symbols, never on how they were pushed.
//! An AVX-512 kernel (AVX-512 F/BW/VBMI), an AVX2 kernel (AVX2 and BMI2), chosen at run time in
//! that order, and the portable kernel are bit-identical (decoded bits and path metrics).
//!
//! The AVX2 kernel: the branch costs of 16 symbol pairs are built per vector pass (one 4-byte
//! table per step), a step is one broadcast of that table, two byte shuffles for the branch
//! costs of the 32 butterflies, four saturating adds, two minima, two compare + movemask for
//! the decisions and two unpacks + two lane permutes for the new state order, with no horizontal
//! reduction except at the renormalisation.

/// G1 generator polynomial in the newest-bit-LSB register convention (171 octal).
pub const G1: u8 = 0x4F;
/// G2 generator polynomial in the newest-bit-LSB register convention (133 octal).
pub const G2: u8 = 0x6D;
/// Constraint length.
pub const K: u32 = 7;
/// Trellis states.
pub const STATES: usize = 64;
/// Steps traced back before a decoded bit is released (about 14 constraint lengths).
pub const TRACEBACK: usize = 96;
/// Bits released per traceback.
pub const CHUNK: usize = 1024;

/// The two channel bits (G1, G2) for a 7-bit register value (newest bit in bit 0).
#[inline]
pub fn branch_bits(reg: u8, g2_inverted: bool) -> (u8, u8) {
    let g1 = ((reg & G1).count_ones() & 1) as u8;
    let g2 = ((reg & G2).count_ones() & 1) as u8 ^ u8::from(g2_inverted);
    (g1, g2)
}

/// Convolutional encoder (CCSDS k=7 r=1/2). Starts in the all-zero state.
#[derive(Clone, Debug, Default)]
pub struct ConvEncoder {
    reg: u8,
    g2_inverted: bool,
}

impl ConvEncoder {
    /// An encoder; `g2_inverted` inverts the G2 output as CCSDS 131.0 §3.3 allows.
    pub fn new(g2_inverted: bool) -> Self {
        Self {
            reg: 0,
            g2_inverted,
        }
    }

    /// Encodes one data bit into its (G1, G2) channel bits.
    #[inline]
    pub fn push_bit(&mut self, bit: bool) -> (u8, u8) {
        self.reg = ((self.reg << 1) | u8::from(bit)) & 0x7F;
        branch_bits(self.reg, self.g2_inverted)
    }

    /// Encodes `data` (MSB first) and appends two channel bits (0 or 1) per data bit.
    pub fn encode_bits(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.reserve(data.len() * 16);
        for byte in data {
            for i in (0..8).rev() {
                let (a, b) = self.push_bit((byte >> i) & 1 == 1);
                out.push(a);
                out.push(b);
            }
        }
    }

    /// Encodes `data` (MSB first) and appends two soft symbols per data bit: bit 1 → +amplitude,
    /// bit 0 → −amplitude (amplitude is clamped to 1..=127).
    pub fn encode_soft(&mut self, data: &[u8], amplitude: i8, out: &mut Vec<i8>) {
        let a = amplitude.clamp(1, 127);
        out.reserve(data.len() * 16);
        for byte in data {
            for i in (0..8).rev() {
                let (x, y) = self.push_bit((byte >> i) & 1 == 1);
                out.push(if x == 1 { a } else { -a });
                out.push(if y == 1 { a } else { -a });
            }
        }
    }
}

/// Packs bits (one 0/1 value per byte, any nonzero counts as 1) MSB first; a partial last
/// byte is padded with zeros.
pub fn pack_bits(bits: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bits.len().div_ceil(8));
    let whole = bits.chunks_exact(8);
    let rest = whole.remainder();
    out.extend(whole.map(|c| {
        let mut le = [0u8; 8];
        le.copy_from_slice(c);
        // Bit 0 of each byte: whether the byte is nonzero.
        let mut x = u64::from_le_bytes(le);
        x |= x >> 4;
        x |= x >> 2;
        x |= x >> 1;
        x &= 0x0101_0101_0101_0101;
        // Gathers bit 8k (the k-th value) into bit 63 − k: distinct product bits, no carries.
        (x.wrapping_mul(0x8040_2010_0804_0201) >> 56) as u8
    }));
    if !rest.is_empty() {
        out.push(
            rest.iter()
                .enumerate()
                .fold(0u8, |acc, (i, b)| acc | (u8::from(*b != 0) << (7 - i))),
        );
    }
    out
}

/// Per-channel differential encoding as Meteor-M N2-2 and later apply after the convolutional
/// encoder: `t[n] = c[n] XOR t[n-2]` over the interleaved (G1, G2) channel bits, so each channel
/// is differentially coded on its own. `state` holds the last two transmitted bits (start `[0, 0]`).
pub fn differential_encode(bits: &mut [u8], state: &mut [u8; 2]) {
    for (i, b) in bits.iter_mut().enumerate() {
        if let Some(slot) = state.get_mut(i & 1) {
            *b = (*b & 1) ^ *slot;
            *slot = *b;
        }
    }
}

/// Which Viterbi kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Trellis steps between two renormalisations of the path metrics (subtraction of the minimum).
pub const RENORM: u32 = 16;

/// Cost of a soft symbol `r` if the channel bit were 0 (index 0) or 1 (index 1): the 5-bit
/// quantised distances `(127 ± r) >> 3` less the smaller of the two, so the likelier bit costs 0
/// and the other 0..=31 (an erasure costs 0 either way).
#[inline]
fn symbol_costs(r: i8) -> [u8; 2] {
    let r = i16::from(r).max(-127);
    let c0 = ((127 + r) >> 3) as u8;
    let c1 = ((127 - r) >> 3) as u8;
    [c0.saturating_sub(c1), c1.saturating_sub(c0)]
}

/// The four branch costs of a symbol pair as bytes of a `u32`: byte `(s1 << 1) | s2` is the
/// cost of hypothesis (G1 = s1, G2 = s2). The likeliest hypothesis costs 0.
#[inline]
fn branch_table(a: i8, b: i8) -> u32 {
    let ca = symbol_costs(a);
    let cb = symbol_costs(b);
    u32::from_le_bytes([ca[0] + cb[0], ca[0] + cb[1], ca[1] + cb[0], ca[1] + cb[1]])
}

/// [`branch_table`] of every whole pair of `pairs`, into `out` (cleared first).
fn branch_tables_portable(pairs: &[i8], out: &mut Vec<u32>) {
    out.clear();
    out.extend(pairs.chunks_exact(2).map(|p| match p {
        [a, b] => branch_table(*a, *b),
        _ => 0,
    }));
}

/// Per-butterfly expected channel bits: for butterfly `j` (new states 2j and 2j+1, old states
/// j and j+32), the symbols of the branch old j → new 2j (register `2j`).
// Evaluated at compile time with constant bounds: an out-of-range index would not compile.
#[allow(clippy::indexing_slicing)]
const fn butterfly_symbols(g2_inverted: bool) -> [[u8; 32]; 2] {
    let mut out = [[0u8; 32]; 2];
    let mut j = 0;
    while j < 32 {
        let reg = (2 * j) as u8;
        out[0][j] = ((reg & G1).count_ones() & 1) as u8;
        out[1][j] = (((reg & G2).count_ones() & 1) as u8) ^ (g2_inverted as u8);
        j += 1;
    }
    out
}

/// Traces back over `decisions` (oldest first) from `state` and writes the bits decided at the
/// oldest `released.len()` steps into `released` (one 0/1 value per byte).
///
/// A decision word holds bit j for new state 2j and bit 32 + j for new state 2j + 1 (set: the
/// survivor comes from old state j + 32), so the word is indexed by y = rotr6(state), which is
/// tracked instead of the state: one step earlier, y' = ((y & 1) << 5) | ((y >> 1) & 15) |
/// (decision << 4), and the bit decided at a step is the newest register bit, y >> 5.
#[inline(always)]
fn trace(decisions: &[u64], state: usize, released: &mut [u8]) {
    let mut y = (((state & 1) << 5) | (state >> 1)) as u64;
    let (old, newer) = decisions.split_at(released.len().min(decisions.len()));
    let step =
        |y: u64, d: u64| ((y & 1) << 5) | ((y >> 1) & 15) | ((d.wrapping_shr(y as u32) & 1) << 4);
    for d in newer.iter().rev() {
        y = step(y, *d);
    }
    for (d, slot) in old.iter().zip(released.iter_mut()).rev() {
        *slot = (y >> 5) as u8;
        y = step(y, *d);
    }
}

/// Soft-decision Viterbi decoder for the CCSDS k=7 r=1/2 code, streaming.
///
/// Feed soft symbol pairs with [`Viterbi::decode`]; decoded bits (one 0/1 value per byte) come out
/// [`TRACEBACK`] + up to [`CHUNK`] steps late; [`Viterbi::flush`] releases the rest.
pub struct Viterbi {
    g2_inverted: bool,
    /// Expected G1/G2 bit per butterfly as 0x00/0xFF masks.
    sym_mask: [[u8; 32]; 2],
    metrics: [u8; STATES],
    /// Steps since the last renormalisation (0..RENORM).
    since_renorm: u32,
    /// Decision words: bit j = choice for new state 2j, bit 32+j = for new state 2j+1.
    decisions: Vec<u64>,
    /// Branch tables of the steps being decoded (scratch).
    tables: Vec<u32>,
    /// A soft value held over when an odd number of symbols was pushed.
    half: Option<i8>,
    kernel: Kernel,
    steps: u64,
}

impl std::fmt::Debug for Viterbi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viterbi")
            .field("g2_inverted", &self.g2_inverted)
            .field("kernel", &self.kernel)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl Viterbi {
    /// A decoder starting with no knowledge of the encoder state.
    pub fn new(g2_inverted: bool) -> Self {
        let syms = butterfly_symbols(g2_inverted);
        let mut sym_mask = [[0u8; 32]; 2];
        for (m, s) in sym_mask.iter_mut().zip(syms.iter()) {
            for (d, v) in m.iter_mut().zip(s.iter()) {
                *d = if *v == 1 { 0xFF } else { 0 };
            }
        }
        Self {
            g2_inverted,
            sym_mask,
            metrics: [0; STATES],
            since_renorm: 0,
            decisions: Vec::with_capacity(TRACEBACK + CHUNK + 64),
            tables: Vec::with_capacity(TRACEBACK + CHUNK + 64),
            half: None,
            kernel: Self::best_kernel(),
            steps: 0,
        }
    }

    fn best_kernel() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 =
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("bmi2");
            if avx2
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vbmi")
            {
                return Kernel::Avx512;
            }
            if avx2 {
                return Kernel::Avx2;
            }
        }
        Kernel::Portable
    }

    /// The same decoder restricted to the portable kernel (bit-identical; for tests/benches).
    pub fn without_simd(mut self) -> Self {
        self.kernel = Kernel::Portable;
        self
    }

    /// The same decoder without the AVX-512 kernel: the AVX2 one where the CPU has it, else the
    /// portable one (bit-identical; for tests/benches).
    pub fn without_avx512(mut self) -> Self {
        #[cfg(target_arch = "x86_64")]
        if self.kernel == Kernel::Avx512 {
            self.kernel = Kernel::Avx2;
        }
        self
    }

    /// Whether a SIMD kernel (AVX2 or AVX-512) runs.
    pub fn uses_simd(&self) -> bool {
        self.kernel != Kernel::Portable
    }

    /// The kernel that runs: `"avx512"`, `"avx2"` or `"portable"`.
    pub fn kernel_name(&self) -> &'static str {
        match self.kernel {
            Kernel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => "avx512",
        }
    }

    /// Whether G2 is inverted.
    pub fn g2_inverted(&self) -> bool {
        self.g2_inverted
    }

    /// Trellis steps (data bits) processed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Forgets everything (after a phase change or slip).
    pub fn reset(&mut self) {
        self.metrics = [0; STATES];
        self.since_renorm = 0;
        self.decisions.clear();
        self.half = None;
    }

    /// Decodes soft symbols (G1, G2 interleaved; an odd trailing symbol is kept for the next
    /// call) and appends released bits (0/1) to `out`.
    pub fn decode(&mut self, soft: &[i8], out: &mut Vec<u8>) {
        let mut soft = soft;
        if let Some(h) = self.half.take() {
            match soft.split_first() {
                Some((b, rest)) => {
                    self.run(&[h, *b], out);
                    soft = rest;
                }
                None => {
                    self.half = Some(h);
                    return;
                }
            }
        }
        let even = soft.len() & !1;
        let (pairs, tail) = soft.split_at(even);
        self.half = tail.first().copied();
        // Process in pieces that end at traceback boundaries.
        let mut rest = pairs;
        while !rest.is_empty() {
            let room = (TRACEBACK + CHUNK)
                .saturating_sub(self.decisions.len())
                .max(1);
            let take = (room * 2).min(rest.len());
            let (now, later) = rest.split_at(take);
            self.run(now, out);
            rest = later;
        }
    }

    fn run(&mut self, pairs: &[i8], out: &mut Vec<u8>) {
        let mut tables = std::mem::take(&mut self.tables);
        match self.kernel {
            Kernel::Portable => {
                branch_tables_portable(pairs, &mut tables);
                self.acs_portable(&tables);
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                avx2::branch_tables(pairs, &mut tables);
                avx2::acs(self, &tables);
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                avx2::branch_tables(pairs, &mut tables);
                avx512::acs(self, &tables);
            }
        }
        self.tables = tables;
        self.steps += (pairs.len() / 2) as u64;
        if self.decisions.len() >= TRACEBACK + CHUNK {
            self.traceback(CHUNK, out);
        }
    }

    /// Releases every remaining decided bit (end of stream).
    pub fn flush(&mut self, out: &mut Vec<u8>) {
        let n = self.decisions.len();
        self.traceback(n, out);
    }

    fn best_state(&self) -> usize {
        let mut best = 0usize;
        let mut m = u8::MAX;
        for (s, v) in self.metrics.iter().enumerate() {
            if *v < m {
                m = *v;
                best = s;
            }
        }
        best
    }

    /// Traces back over all stored decisions from the best state and releases the oldest
    /// `release` bits, keeping the rest.
    fn traceback(&mut self, release: usize, out: &mut Vec<u8>) {
        let release = release.min(self.decisions.len());
        let state = self.best_state();
        let start = out.len();
        out.resize(start + release, 0);
        let released = out.get_mut(start..).unwrap_or_default();
        match self.kernel {
            Kernel::Portable => trace(&self.decisions, state, released),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::trace(&self.decisions, state, released),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => avx512::trace(&self.decisions, state, released),
        }
        self.decisions.drain(..release);
    }

    fn acs_portable(&mut self, tables: &[u32]) {
        for t in tables {
            let table = t.to_le_bytes();
            let mut next = [0u8; STATES];
            let mut dec = 0u64;
            let (lo_half, hi_half) = self.metrics.split_at(32);
            let [s1s, s2s] = &self.sym_mask;
            for (j, (((lo, hi), (s1, s2)), out)) in lo_half
                .iter()
                .zip(hi_half)
                .zip(s1s.iter().zip(s2s))
                .zip(next.chunks_exact_mut(2))
                .enumerate()
            {
                let idx = usize::from((s1 & 2) | (s2 & 1));
                let m = table.get(idx).copied().unwrap_or(0);
                let mc = table.get(idx ^ 3).copied().unwrap_or(0);
                let e0 = lo.saturating_add(m);
                let e1 = hi.saturating_add(mc);
                let o0 = lo.saturating_add(mc);
                let o1 = hi.saturating_add(m);
                let even = e0.min(e1);
                let odd = o0.min(o1);
                if let [e, o] = out {
                    *e = even;
                    *o = odd;
                }
                dec |= u64::from(even == e1) << j;
                dec |= u64::from(odd == o1) << (32 + j);
            }
            self.metrics = next;
            // Every RENORM steps the minimum is subtracted: with the likeliest branch costing
            // 0, the best metric grows slowly, and only hopeless paths reach saturation.
            self.since_renorm += 1;
            if self.since_renorm == RENORM {
                self.since_renorm = 0;
                let min = self.metrics.iter().copied().min().unwrap_or(0);
                for m in &mut self.metrics {
                    *m -= min;
                }
            }
            self.decisions.push(dec);
        }
    }
}

/// The SIMD kernels' walk over a run of steps: appends a decision word per table to
/// `v.decisions` and yields the run in pieces that end at the renormalisations, each piece's
/// tables and decision slots with whether the metrics are renormalised after it; `v.since_renorm`
/// is brought up to date.
#[cfg(target_arch = "x86_64")]
fn renorm_pieces<'a>(
    v: &'a mut Viterbi,
    tables: &'a [u32],
) -> impl Iterator<Item = (&'a [u32], &'a mut [u64], bool)> + 'a {
    let mut since = v.since_renorm;
    v.since_renorm = ((since as usize + tables.len()) % RENORM as usize) as u32;
    let start = v.decisions.len();
    v.decisions.resize(start + tables.len(), 0);
    let mut decisions = v.decisions.get_mut(start..).unwrap_or_default();
    let mut tables = tables;
    std::iter::from_fn(move || {
        if tables.is_empty() {
            return None;
        }
        let n = ((RENORM - since) as usize).min(tables.len());
        let (t_now, t_rest) = tables.split_at(n);
        let rest = std::mem::take(&mut decisions);
        let (d_now, d_rest) = rest.split_at_mut(n.min(rest.len()));
        tables = t_rest;
        decisions = d_rest;
        since += n as u32;
        let renorm = since == RENORM;
        if renorm {
            since = 0;
        }
        Some((t_now, d_now, renorm))
    })
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx2 {
    //! The add-compare-select loop over 64 states as two 32-lane vectors of u8 metrics
    //! (states 0..32 and 32..64), and the branch tables 16 symbol pairs at a time; both
    //! bit-identical to the portable code.
    use std::arch::x86_64::*;

    use super::{branch_table, Viterbi};

    /// `super::trace` compiled with BMI2 (one-uop variable shifts on its dependency chain).
    #[target_feature(enable = "bmi2")]
    fn trace_bmi2(decisions: &[u64], state: usize, released: &mut [u8]) {
        super::trace(decisions, state, released);
    }

    /// Branch tables of 16 symbol pairs (32 soft bytes) per iteration, as `branch_table`.
    #[target_feature(enable = "avx2")]
    fn branch_tables_avx2(pairs: &[i8], out: &mut Vec<u32>) {
        let n = pairs.len() / 2;
        out.clear();
        out.resize(n, 0);
        let whole = n / 16 * 16;
        let (vec_in, tail_in) = pairs.split_at(whole * 2);
        let (vec_out, tail_out) = out.split_at_mut(whole);
        let floor = _mm256_set1_epi8(-127);
        let k127 = _mm256_set1_epi8(127);
        let k254 = _mm256_set1_epi8(-2);
        let five = _mm256_set1_epi8(0x1F);
        // Per pair [d0a, d0b, d1a, d1b] -> [d0a, d0a, d1a, d1a] + [d0b, d1b, d0b, d1b].
        let sel_a = _mm256_setr_epi32(
            0x0202_0000,
            0x0606_0404,
            0x0A0A_0808,
            0x0E0E_0C0C,
            0x0202_0000,
            0x0606_0404,
            0x0A0A_0808,
            0x0E0E_0C0C,
        );
        let sel_b = _mm256_setr_epi32(
            0x0301_0301,
            0x0705_0705,
            0x0B09_0B09,
            0x0F0D_0F0D,
            0x0301_0301,
            0x0705_0705,
            0x0B09_0B09,
            0x0F0D_0F0D,
        );
        for (src, dst) in vec_in.chunks_exact(32).zip(vec_out.chunks_exact_mut(16)) {
            // SAFETY: `src` is 32 bytes; unaligned load.
            let v = unsafe { _mm256_loadu_si256(src.as_ptr().cast::<__m256i>()) };
            // r + 127 in 0..=254 (as u8) after clamping -128 to -127.
            let u = _mm256_add_epi8(_mm256_max_epi8(v, floor), k127);
            let c0 = _mm256_and_si256(_mm256_srli_epi16(u, 3), five);
            let c1 = _mm256_and_si256(_mm256_srli_epi16(_mm256_sub_epi8(k254, u), 3), five);
            let d0 = _mm256_subs_epu8(c0, c1);
            let d1 = _mm256_subs_epu8(c1, c0);
            let x_lo = _mm256_unpacklo_epi16(d0, d1);
            let x_hi = _mm256_unpackhi_epi16(d0, d1);
            let t_lo = _mm256_add_epi8(
                _mm256_shuffle_epi8(x_lo, sel_a),
                _mm256_shuffle_epi8(x_lo, sel_b),
            );
            let t_hi = _mm256_add_epi8(
                _mm256_shuffle_epi8(x_hi, sel_a),
                _mm256_shuffle_epi8(x_hi, sel_b),
            );
            let (d_lo, d_hi) = dst.split_at_mut(8);
            let first = _mm256_permute2x128_si256(t_lo, t_hi, 0x20);
            let second = _mm256_permute2x128_si256(t_lo, t_hi, 0x31);
            // SAFETY: `d_lo` is 8 u32 = 32 bytes; unaligned store.
            unsafe { _mm256_storeu_si256(d_lo.as_mut_ptr().cast::<__m256i>(), first) };
            // SAFETY: `d_hi` is 8 u32 = 32 bytes; unaligned store.
            unsafe { _mm256_storeu_si256(d_hi.as_mut_ptr().cast::<__m256i>(), second) };
        }
        for (p, o) in tail_in.chunks_exact(2).zip(tail_out) {
            if let [a, b] = p {
                *o = branch_table(*a, *b);
            }
        }
    }

    /// The minimum over both vectors, broadcast to every byte.
    #[target_feature(enable = "avx2")]
    fn min_all(lo: __m256i, hi: __m256i) -> __m256i {
        let mn = _mm256_min_epu8(lo, hi);
        let x = _mm_min_epu8(_mm256_castsi256_si128(mn), _mm256_extracti128_si256(mn, 1));
        let x = _mm_min_epu8(x, _mm_srli_epi16(x, 8));
        let x = _mm_minpos_epu16(_mm_and_si128(x, _mm_set1_epi16(0x00FF)));
        _mm256_broadcastb_epi8(x)
    }

    #[target_feature(enable = "avx2")]
    fn acs_avx2(v: &mut Viterbi, tables: &[u32]) {
        let (m0, m1) = v.metrics.split_at(32);
        // SAFETY: both halves are exactly 32 bytes (STATES = 64); unaligned loads.
        let mut lo = unsafe { _mm256_loadu_si256(m0.as_ptr().cast::<__m256i>()) };
        // SAFETY: as above.
        let mut hi = unsafe { _mm256_loadu_si256(m1.as_ptr().cast::<__m256i>()) };
        // SAFETY: each mask row is 32 bytes.
        let mask1 = unsafe { _mm256_loadu_si256(v.sym_mask[0].as_ptr().cast::<__m256i>()) };
        // SAFETY: as above.
        let mask2 = unsafe { _mm256_loadu_si256(v.sym_mask[1].as_ptr().cast::<__m256i>()) };
        // Per butterfly, the index (s1 << 1 | s2) of its branch symbols into a 4-entry cost table
        // repeated in every 32-bit lane; the complementary branch has index ^ 3.
        let idx = _mm256_or_si256(
            _mm256_and_si256(mask1, _mm256_set1_epi8(2)),
            _mm256_and_si256(mask2, _mm256_set1_epi8(1)),
        );
        let idx_c = _mm256_xor_si256(idx, _mm256_set1_epi8(3));
        for (t_now, d_now, renorm) in super::renorm_pieces(v, tables) {
            for (t, d) in t_now.iter().zip(d_now.iter_mut()) {
                let t = _mm256_set1_epi32(*t as i32);
                let m = _mm256_shuffle_epi8(t, idx);
                let mc = _mm256_shuffle_epi8(t, idx_c);
                let e1 = _mm256_adds_epu8(hi, mc);
                let o1 = _mm256_adds_epu8(hi, m);
                let even = _mm256_min_epu8(_mm256_adds_epu8(lo, m), e1);
                let odd = _mm256_min_epu8(_mm256_adds_epu8(lo, mc), o1);
                let de = _mm256_movemask_epi8(_mm256_cmpeq_epi8(even, e1)) as u32;
                let dodd = _mm256_movemask_epi8(_mm256_cmpeq_epi8(odd, o1)) as u32;
                *d = u64::from(de) | (u64::from(dodd) << 32);
                let ul = _mm256_unpacklo_epi8(even, odd);
                let uh = _mm256_unpackhi_epi8(even, odd);
                lo = _mm256_permute2x128_si256(ul, uh, 0x20);
                hi = _mm256_permute2x128_si256(ul, uh, 0x31);
            }
            if renorm {
                let mn = min_all(lo, hi);
                lo = _mm256_subs_epu8(lo, mn);
                hi = _mm256_subs_epu8(hi, mn);
            }
        }
        let (m0, m1) = v.metrics.split_at_mut(32);
        // SAFETY: both halves are exactly 32 bytes; unaligned stores.
        unsafe { _mm256_storeu_si256(m0.as_mut_ptr().cast::<__m256i>(), lo) };
        // SAFETY: as above.
        unsafe { _mm256_storeu_si256(m1.as_mut_ptr().cast::<__m256i>(), hi) };
    }

    pub(super) fn branch_tables(pairs: &[i8], out: &mut Vec<u32>) {
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("avx2")`.
        unsafe { branch_tables_avx2(pairs, out) }
    }

    pub(super) fn trace(decisions: &[u64], state: usize, released: &mut [u8]) {
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("bmi2")`.
        unsafe { trace_bmi2(decisions, state, released) }
    }

    pub(super) fn acs(v: &mut Viterbi, tables: &[u32]) {
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("avx2")`.
        unsafe { acs_avx2(v, tables) }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod avx512 {
    //! The add-compare-select loop over all 64 states in one 512-bit vector of u8 metrics
    //! (AVX-512 F/BW/VBMI), and its traceback; the decoded bits and metrics are bit-identical to
    //! the portable code.
    //!
    //! Lane `y` holds the metric of state `bitrev6(y)`, and bit `y` of a step's decision word is
    //! the choice of that state. The two predecessors of every new state are gathered with one
    //! byte permute each, and the decision word is the compare mask itself. Per step: two
    //! broadcasts from memory, one byte shuffle and one subtraction for the branch costs, two
    //! byte permutes, two saturating adds, one minimum and one compare into a mask register.
    //!
    //! In this order the traceback is two instructions a step: the predecessor of state `s` is
    //! `(s >> 1) | (x << 5)` (x = its decision), which is `y' = 2y + x` for `y = bitrev6(s)`
    //! taken modulo 64; `x` is bit `y mod 64` of the decision word (`bt`), added by `adc`. The
    //! decided bit of a step is the newest bit of the state, bit 5 of `y`.
    use std::arch::asm;
    use std::arch::x86_64::*;

    use super::{Viterbi, RENORM, STATES};

    /// The 6-bit reversal: lane of state `s`, and state of lane `s`.
    const fn rev6(s: usize) -> usize {
        let mut r = 0;
        let mut k = 0;
        while k < 6 {
            r |= ((s >> k) & 1) << (5 - k);
            k += 1;
        }
        r
    }

    /// Byte-permute indices: `reorder[y]` = rev6(y), the state of lane y and the lane of state
    /// y (the reversal is its own inverse, so one permute converts either way), and the lanes of
    /// the two predecessors j and j + 32 of new state `s = 2j + e` in lane `y = rev6(s)`.
    // Evaluated at compile time with constant bounds: an out-of-range index would not compile.
    #[allow(clippy::indexing_slicing)]
    const fn permutes() -> [[u8; STATES]; 3] {
        let mut t = [[0u8; STATES]; 3];
        let mut y = 0;
        while y < STATES {
            t[0][y] = rev6(y) as u8;
            let j = rev6(y) >> 1;
            t[1][y] = rev6(j) as u8;
            t[2][y] = rev6(j + 32) as u8;
            y += 1;
        }
        t
    }
    const PERMUTES: [[u8; STATES]; 3] = permutes();

    /// Traces back over `decisions` (oldest first, in this kernel's lane order) from `state`
    /// and writes the bits decided at the oldest `released.len()` steps into `released`, as
    /// `super::trace` does for the other kernels' order.
    pub(super) fn trace(decisions: &[u64], state: usize, released: &mut [u8]) {
        let mut y = rev6(state & 63) as u64;
        let (old, newer) = decisions.split_at(released.len().min(decisions.len()));
        for d in newer.iter().rev() {
            y = step(y, *d);
        }
        for (d, slot) in old.iter().zip(released.iter_mut()).rev() {
            *slot = ((y >> 5) & 1) as u8;
            y = step(y, *d);
        }
    }

    /// One step back: `2y + bit (y mod 64) of d`.
    #[inline(always)]
    fn step(mut y: u64, d: u64) -> u64 {
        // SAFETY: register-only arithmetic (`bt` sets the carry flag, `adc` adds it); no memory
        // or stack access.
        unsafe {
            asm!(
                "bt {d}, {y}",
                "adc {y}, {y}",
                d = in(reg) d,
                y = inout(reg) y,
                options(pure, nomem, nostack),
            );
        }
        y
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    fn load(b: &[u8; STATES]) -> __m512i {
        // SAFETY: `b` is exactly 64 bytes; unaligned load.
        unsafe { _mm512_loadu_si512(b.as_ptr().cast::<__m512i>()) }
    }

    /// The minimum over all 64 bytes, broadcast to every byte.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    fn min_all(m: __m512i) -> __m512i {
        let x = _mm512_min_epu8(m, _mm512_shuffle_i64x2::<0b0100_1110>(m, m));
        let x = _mm512_min_epu8(x, _mm512_shuffle_i64x2::<0b1011_0001>(x, x));
        let x = _mm512_min_epu8(x, _mm512_bsrli_epi128::<8>(x));
        let x = _mm512_min_epu8(x, _mm512_bsrli_epi128::<4>(x));
        let x = _mm512_min_epu8(x, _mm512_bsrli_epi128::<2>(x));
        let x = _mm512_min_epu8(x, _mm512_bsrli_epi128::<1>(x));
        _mm512_broadcastb_epi8(_mm512_castsi512_si128(x))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    fn acs_avx512(v: &mut Viterbi, tables: &[u32]) {
        let [reorder, pred_lo, pred_hi] = &PERMUTES;
        let reorder = load(reorder);
        let pred_lo = load(pred_lo);
        let pred_hi = load(pred_hi);
        let mut m = _mm512_permutexvar_epi8(reorder, load(&v.metrics));
        // Per lane of new state 2j + e, the index (s1 << 1 | s2) into the step's 4-entry cost
        // table of the branch from old state j (idx_j for e = 0, idx_j ^ 3 for e = 1) and from
        // old state j + 32 (the complement), as in the AVX2 kernel.
        let mut idx = [0u8; STATES];
        let [s1s, s2s] = &v.sym_mask;
        for (y, d) in idx.iter_mut().enumerate() {
            let state = rev6(y);
            let j = state >> 1;
            let s1 = s1s.get(j).copied().unwrap_or(0) & 2;
            let s2 = s2s.get(j).copied().unwrap_or(0) & 1;
            *d = (s1 | s2) ^ if state & 1 == 1 { 3 } else { 0 };
        }
        let idx_lo = load(&idx);
        for (t_now, d_now, renorm) in super::renorm_pieces(v, tables) {
            // The sum of a step's two complementary branch costs is the same for every
            // butterfly (the costs of both symbols' two values: table bytes 0 + 3), so the
            // second cost vector is that sum less the first: a subtraction instead of a
            // shuffle, whose port the permutes need. The sums are replicated into dwords here
            // on the scalar ports and broadcast from memory in the loop.
            let mut sums = [0u32; RENORM as usize];
            for (s, t) in sums.iter_mut().zip(t_now) {
                *s = ((t & 0xFF) + (t >> 24)) * 0x0101_0101;
            }
            for ((t, s), d) in t_now.iter().zip(&sums).zip(d_now.iter_mut()) {
                let t = _mm512_set1_epi32(*t as i32);
                let c_lo = _mm512_shuffle_epi8(t, idx_lo);
                let c_hi = _mm512_sub_epi8(_mm512_set1_epi32(*s as i32), c_lo);
                let a = _mm512_adds_epu8(_mm512_permutexvar_epi8(pred_lo, m), c_lo);
                let b = _mm512_adds_epu8(_mm512_permutexvar_epi8(pred_hi, m), c_hi);
                m = _mm512_min_epu8(a, b);
                *d = _mm512_cmpeq_epu8_mask(m, b);
            }
            if renorm {
                m = _mm512_subs_epu8(m, min_all(m));
            }
        }
        let natural = _mm512_permutexvar_epi8(reorder, m);
        // SAFETY: `metrics` is exactly 64 bytes; unaligned store.
        unsafe { _mm512_storeu_si512(v.metrics.as_mut_ptr().cast::<__m512i>(), natural) };
    }

    pub(super) fn acs(v: &mut Viterbi, tables: &[u32]) {
        // SAFETY: `Kernel::Avx512` is only selected after `is_x86_feature_detected!` reported
        // avx512f, avx512bw and avx512vbmi.
        unsafe { acs_avx512(v, tables) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn encoder_matches_the_ccsds_generators() {
        // An impulse gives the generator taps, oldest first: 171o = 1111001, 133o = 1011011.
        let mut e = ConvEncoder::new(false);
        let mut bits = Vec::new();
        e.encode_bits(&[0x80], &mut bits);
        let g1: Vec<u8> = bits.iter().step_by(2).take(7).copied().collect();
        let g2: Vec<u8> = bits.iter().skip(1).step_by(2).take(7).copied().collect();
        assert_eq!(g1, [1, 1, 1, 1, 0, 0, 1]);
        assert_eq!(g2, [1, 0, 1, 1, 0, 1, 1]);
        let mut e = ConvEncoder::new(true);
        let mut inv = Vec::new();
        e.encode_bits(&[0x80], &mut inv);
        let g2i: Vec<u8> = inv.iter().skip(1).step_by(2).take(7).copied().collect();
        assert_eq!(g2i, [0, 1, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn code_is_transparent() {
        let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5A).collect();
        let inv: Vec<u8> = data.iter().map(|b| !b).collect();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        ConvEncoder::new(false).encode_bits(&data, &mut a);
        ConvEncoder::new(false).encode_bits(&inv, &mut b);
        // After the register has filled with inverted bits, every symbol is inverted.
        for (x, y) in a.iter().zip(&b).skip(14) {
            assert_eq!(*x, 1 - *y);
        }
    }

    #[test]
    fn encode_soft_and_pack_agree_with_bits() {
        let data = [0x1A, 0xCF, 0xFC, 0x1D];
        let mut bits = Vec::new();
        ConvEncoder::new(false).encode_bits(&data, &mut bits);
        let mut soft = Vec::new();
        ConvEncoder::new(false).encode_soft(&data, 100, &mut soft);
        assert_eq!(bits.len(), 64);
        for (b, s) in bits.iter().zip(&soft) {
            assert_eq!(*s, if *b == 1 { 100 } else { -100 });
        }
        assert_eq!(pack_bits(&[1, 0, 1, 0, 0, 0, 0, 1, 1]), vec![0xA1, 0x80]);
        // Any nonzero value is a 1, whole bytes and a partial tail alike.
        let mut s = 5;
        let vals: Vec<u8> = (0..8003)
            .map(|_| match lcg(&mut s) % 4 {
                0 => 0,
                1 => 1,
                _ => lcg(&mut s) as u8,
            })
            .collect();
        let want: Vec<u8> = vals
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u8, |acc, (i, b)| acc | (u8::from(*b != 0) << (7 - i)))
            })
            .collect();
        assert_eq!(pack_bits(&vals), want);
    }

    #[test]
    fn differential_encoding_is_per_channel() {
        let mut bits = vec![1, 0, 0, 1, 0, 0, 1, 1];
        let mut st = [0, 0];
        differential_encode(&mut bits, &mut st);
        assert_eq!(bits, vec![1, 0, 1, 1, 1, 1, 0, 0]);
        assert_eq!(st, [0, 0]);
    }

    fn roundtrip(g2_inverted: bool, noise: i32, seed: u64) -> (Vec<u8>, Vec<u8>) {
        let mut s = seed;
        let data: Vec<u8> = (0..4000).map(|_| lcg(&mut s) as u8).collect();
        let mut soft = Vec::new();
        ConvEncoder::new(g2_inverted).encode_soft(&data, 64, &mut soft);
        for x in &mut soft {
            let n = (lcg(&mut s) % (2 * noise as u64 + 1)) as i32 - noise;
            *x = (i32::from(*x) + n).clamp(-127, 127) as i8;
        }
        let mut out = Vec::new();
        let mut v = Viterbi::new(g2_inverted);
        v.decode(&soft, &mut out);
        v.flush(&mut out);
        (pack_bits(&out), data)
    }

    #[test]
    fn viterbi_decodes_clean_and_noisy_symbols() {
        for inv in [false, true] {
            let (got, want) = roundtrip(inv, 0, 1);
            assert_eq!(got, want);
            // Uniform noise up to ±80 on ±64 flips about 5 % of the channel bits.
            let (got, want) = roundtrip(inv, 80, 2);
            let errs: u32 = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert!(errs <= 8, "{errs} bit errors in 32000");
        }
    }

    #[test]
    fn simd_and_portable_kernels_are_bit_identical() {
        let simd = Viterbi::new(false);
        eprintln!(
            "kernels compared: {}, {} and portable",
            simd.kernel_name(),
            Viterbi::new(false).without_avx512().kernel_name()
        );
        if !simd.uses_simd() {
            return;
        }
        for seed in 0..12u64 {
            let mut s = seed + 100;
            let data: Vec<u8> = (0..3000).map(|_| lcg(&mut s) as u8).collect();
            let mut soft = Vec::new();
            ConvEncoder::new(seed % 2 == 1).encode_soft(&data, 40 + (seed as i8) * 7, &mut soft);
            let noise = (seed * 20) as i64;
            for (k, x) in soft.iter_mut().enumerate() {
                let n = (lcg(&mut s) % (2 * noise as u64 + 1)) as i64 - noise;
                *x = (i64::from(*x) + n).clamp(-128, 127) as i8;
                // Stretches of pure garbage and of erasures.
                if seed >= 8 && (k / 5000) % 3 == 1 {
                    *x = if seed == 8 { 0 } else { lcg(&mut s) as i8 };
                }
            }
            let mut a = Viterbi::new(seed % 2 == 1);
            let mut b = Viterbi::new(seed % 2 == 1).without_simd();
            // The AVX2 kernel too where the best one is AVX-512.
            let mut c = Viterbi::new(seed % 2 == 1).without_avx512();
            let (mut oa, mut ob, mut oc) = (Vec::new(), Vec::new(), Vec::new());
            let mut at = 0;
            while at < soft.len() {
                let n = (1 + lcg(&mut s) % 3000) as usize;
                let end = (at + n).min(soft.len());
                a.decode(&soft[at..end], &mut oa);
                b.decode(&soft[at..end], &mut ob);
                c.decode(&soft[at..end], &mut oc);
                assert_eq!(a.metrics, b.metrics, "seed {seed} at {end}");
                assert_eq!(c.metrics, b.metrics, "seed {seed} at {end}");
                at = end;
            }
            a.flush(&mut oa);
            b.flush(&mut ob);
            c.flush(&mut oc);
            assert_eq!(oa, ob, "seed {seed}");
            assert_eq!(oc, ob, "seed {seed}");
            assert_eq!(oa.len(), soft.len() / 2);
        }
    }

    #[test]
    fn output_does_not_depend_on_how_symbols_are_split() {
        let mut s = 7;
        let soft: Vec<i8> = (0..20001).map(|_| lcg(&mut s) as i8).collect();
        let mut whole = Vec::new();
        let mut v = Viterbi::new(false);
        v.decode(&soft, &mut whole);
        v.flush(&mut whole);
        let mut parts = Vec::new();
        let mut v = Viterbi::new(false);
        for c in soft.chunks(7) {
            v.decode(c, &mut parts);
        }
        v.flush(&mut parts);
        assert_eq!(whole, parts);
        assert_eq!(whole.len(), 10000);
    }
}
