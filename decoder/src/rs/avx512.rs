//! AVX-512 + GFNI syndrome kernel of the Reed-Solomon decoder (selected at runtime after
//! [`available`]). Bit-identical to [`super::codec`]'s portable syndromes; the other decoding
//! steps keep using [`super::avx2`].
//!
//! `GF2P8AFFINEQB` multiplies every byte by an 8×8 GF(2) bit matrix, one matrix per 64-bit
//! lane, so multiplying by a constant of GF(2^8) (and the dual → conventional basis change,
//! also GF(2)-linear) is one instruction for 64 bytes. Polyphase Horner: pad the codeword with
//! leading zeros to a multiple of 8 symbols (L = 8M) and split the transmitted index
//! u = 8m + q; then
//!
//! S_i = Σ_u r_u·x_i^(L-1-u) = Σ_q x_i^(7-q) · Σ_m r_(8m+q)·(x_i^8)^(M-1-m),
//!
//! so one qword per syndrome i holds the 8 phases q, all multiplied by the same x_i^8 per
//! Horner step: per 8 symbols of a codeword, `acc = affine(acc, x_i^8) ^ broadcast(symbols)`
//! on 2E/8 vectors (the symbols gathered out of the interleaved block with one `VPERMB`).
//! The Horner runs in the wire basis (the step matrix is T⁻¹·x_i^8·T); at the end the
//! qword is converted (T) and its 8 phases folded with their weights x_i^(7-q) in three
//! halving steps (x_i^4, x_i^2, x_i).
//!
//! Throughput: steps go in pairs, `acc·x^16 ^ b0·x^8 ^ b1` (two affines and one three-way XOR,
//! only the first affine on the dependency chain), and codewords in groups whose sizes differ
//! by at most one, with at most 12 accumulators, which stay in registers (enough independent
//! chains to hide the instruction's latency).

use super::gf::{gmul, wire, Row, MAX_ROOTS};
use super::MAX_INTERLEAVE;
use super::N;
use core::arch::x86_64::*;

/// Syndrome vectors per codeword at most (32 syndromes, 8 per vector).
const ROWS: usize = MAX_ROOTS / 8;
/// Accumulator registers per group of codewords processed together (of the 32 vector
/// registers; the rest hold the step matrices, the gather indices and temporaries).
const GROUP_REGS: usize = 12;

/// Whether this CPU runs the kernel (AVX-512 F/BW/VBMI and GFNI), and AVX2 for the error path
/// that `Kernel::Avx512Gfni` shares with `Kernel::Avx2`.
pub(super) fn available() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vbmi")
        && std::is_x86_feature_detected!("gfni")
}

/// GF2P8AFFINEQB matrices and gather indices of one (E, interleave, basis, virtual fill). Lane l
/// of row r is syndrome
/// i = 8r + l, x_i = β^(j0+i).
#[derive(Clone, Debug)]
pub(super) struct GfniTables {
    /// Wire-basis multiply by x_i^8 (the Horner step).
    step: [[u64; 8]; ROWS],
    /// Wire-basis multiply by x_i^16 (two Horner steps at once).
    step2: [[u64; 8]; ROWS],
    /// Conventional-basis multiply by x_i^4, x_i^2, x_i (folding the 8 phases).
    fold: [[[u64; 8]; ROWS]; 3],
    /// Wire → conventional basis.
    to_conv: u64,
    /// 2E/8 vectors per codeword.
    rows: usize,
    /// Leading zero symbols that pad a codeword to a multiple of 8.
    pad: usize,
    /// `VPERMB` indices (one qword, broadcast) gathering 8 rows of codeword c out of 8·I
    /// interleaved bytes: byte q = q·I + c.
    gather: [u64; MAX_INTERLEAVE],
    /// The interleave I the gather indices are for.
    il: usize,
}

/// The GF2P8AFFINEQB matrix (one qword) of the GF(2)-linear byte map `f`: output bit i is the
/// parity of (byte 7−i of the qword) AND (input byte).
pub(super) fn matrix(f: impl Fn(u8) -> u8) -> u64 {
    let mut a = 0u64;
    for i in 0..8 {
        let mut row = 0u64;
        for k in 0..8 {
            if (f(1 << k) >> i) & 1 != 0 {
                row |= 1 << k;
            }
        }
        a |= row << (8 * (7 - i));
    }
    a
}

impl GfniTables {
    /// `pow` is [`super::gf::SyndTables::pow`]: row p holds x_i^p (conventional basis).
    pub(super) fn new(
        nroots: usize,
        n_t: usize,
        interleave: usize,
        pow: &[Row; N],
        to_conv: &[u8; 256],
        to_wire: &[u8; 256],
    ) -> Self {
        let mut t = GfniTables {
            step: [[0; 8]; ROWS],
            step2: [[0; 8]; ROWS],
            fold: [[[0; 8]; ROWS]; 3],
            to_conv: matrix(|w| wire(to_conv, w)),
            rows: nroots / 8,
            pad: (8 - n_t % 8) % 8,
            gather: core::array::from_fn(|c| {
                u64::from_le_bytes(core::array::from_fn(|q| (q * interleave + c) as u8))
            }),
            il: interleave,
        };
        // x_i^p of every syndrome i
        let x = |p: usize| pow.get(p).map_or([0; 32], |r| r.to_bytes());
        let (x8, x16) = (x(8), x(16));
        let fold_x = [x(4), x(2), x(1)];
        for i in 0..nroots {
            let (r, l) = (i / 8, i % 8);
            for (xn, st) in [(&x8, &mut t.step), (&x16, &mut t.step2)] {
                if let (Some(m), Some(&xn)) = (st.get_mut(r).and_then(|s| s.get_mut(l)), xn.get(i))
                {
                    *m = matrix(|w| wire(to_wire, gmul(wire(to_conv, w), xn)));
                }
            }
            for (f, xk) in t.fold.iter_mut().zip(&fold_x) {
                if let (Some(m), Some(&xk)) = (f.get_mut(r).and_then(|s| s.get_mut(l)), xk.get(i)) {
                    *m = matrix(|c| gmul(c, xk));
                }
            }
        }
        t
    }
}

/// `GF2P8AFFINEQB` of each byte of `x` with the matrix `m` (tests: the matrix layout against
/// the instruction). Panics where [`available`] is false.
#[cfg(test)]
pub(super) fn affine_bytes(m: u64, x: &[u8; 64]) -> [u8; 64] {
    assert!(available(), "AVX-512F and GFNI are needed");
    #[target_feature(enable = "avx512f,gfni")]
    fn run(m: u64, x: &[u8; 64]) -> [u8; 64] {
        // SAFETY: reads exactly the 64 bytes of `x` (unaligned load allowed).
        let v = unsafe { _mm512_loadu_si512(x.as_ptr().cast::<__m512i>()) };
        let r = _mm512_gf2p8affine_epi64_epi8::<0>(v, _mm512_set1_epi64(m as i64));
        let mut out = [0u8; 64];
        // SAFETY: writes exactly the 64 bytes of `out` (unaligned store allowed).
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast::<__m512i>(), r) };
        out
    }
    // SAFETY: `available()` (AVX-512F and GFNI) was asserted above.
    unsafe { run(m, x) }
}

/// The 8 matrices of one row as a vector.
#[target_feature(enable = "avx512f")]
#[inline]
fn load8(a: &[u64; 8]) -> __m512i {
    // SAFETY: reads exactly the 64 bytes of `a` (unaligned load allowed); AVX-512F is enabled.
    unsafe { _mm512_loadu_si512(a.as_ptr().cast::<__m512i>()) }
}

/// The accumulators after a first, single Horner step (from zero: just the 8 symbols per
/// codeword of `rows8`, 8 rows of the interleaved block, zero-extended, in every qword).
// Indexed by `from_fn` (g < G: in bounds).
#[allow(clippy::indexing_slicing)]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,gfni")]
#[inline]
fn start<const G: usize, const R: usize>(idx: &[__m512i; G], rows8: __m512i) -> [[__m512i; R]; G] {
    core::array::from_fn(|g| [_mm512_permutexvar_epi8(idx[g], rows8); R])
}

/// Two Horner steps, with rows 0..8 (`v0`) then rows 8..16 (`v1`):
/// acc·x^16 ^ b0·x^8 ^ b1, where only the first product is on the dependency chain.
// By value and indexed by `from_fn` (g < G, r < R: in bounds), so that the accumulators
// stay in registers across the loop.
#[allow(clippy::indexing_slicing)]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,gfni")]
#[inline]
fn feed2<const G: usize, const R: usize>(
    acc: [[__m512i; R]; G],
    idx: &[__m512i; G],
    step: &[__m512i; R],
    step2: &[__m512i; R],
    v0: __m512i,
    v1: __m512i,
) -> [[__m512i; R]; G] {
    core::array::from_fn(|g| {
        let b0 = _mm512_permutexvar_epi8(idx[g], v0);
        let b1 = _mm512_permutexvar_epi8(idx[g], v1);
        core::array::from_fn(|r| {
            _mm512_ternarylogic_epi64::<0x96>(
                _mm512_gf2p8affine_epi64_epi8::<0>(acc[g][r], step2[r]),
                _mm512_gf2p8affine_epi64_epi8::<0>(b0, step[r]),
                b1,
            )
        })
    })
}

/// Syndromes 8r..8r+8 of one codeword from its Horner accumulator (byte l = syndrome 8r+l).
#[target_feature(enable = "avx512f,gfni")]
#[inline]
fn finish(t: &GfniTables, r: usize, acc: __m512i) -> [u8; 8] {
    let [f4, f2, f1] = [0, 1, 2].map(|k| {
        t.fold
            .get(k)
            .and_then(|f| f.get(r))
            .map_or(_mm512_setzero_si512(), |m| load8(m))
    });
    let v = _mm512_gf2p8affine_epi64_epi8::<0>(acc, _mm512_set1_epi64(t.to_conv as i64));
    // phases q and q+4 (weights x^(7-q), x^(3-q)) -> q, weight x^(3-q)
    let v = _mm512_xor_si512(
        _mm512_gf2p8affine_epi64_epi8::<0>(v, f4),
        _mm512_srli_epi64::<32>(v),
    );
    let v = _mm512_xor_si512(
        _mm512_gf2p8affine_epi64_epi8::<0>(v, f2),
        _mm512_srli_epi64::<16>(v),
    );
    let v = _mm512_xor_si512(
        _mm512_gf2p8affine_epi64_epi8::<0>(v, f1),
        _mm512_srli_epi64::<8>(v),
    );
    // byte 0 of each qword
    (_mm_cvtsi128_si64(_mm512_cvtepi64_epi8(v)) as u64).to_le_bytes()
}

/// Syndromes of codewords c0..c0+G (R = 2E/8 vectors each) of a block with interleave `t.il`:
/// `head` (the first rows, zero-padded to 8 rows) if any, then `tail` (a multiple of 8 rows).
// Out of line: one register allocation per group shape (the accumulators stay in registers).
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,gfni")]
fn group<const G: usize, const R: usize>(
    t: &GfniTables,
    head: Option<&[u8; 64]>,
    tail: &[u8],
    c0: usize,
    out: &mut [[u8; MAX_ROOTS]; MAX_INTERLEAVE],
) -> u8 {
    let il = t.il;
    let step: [__m512i; R] =
        core::array::from_fn(|r| t.step.get(r).map_or(_mm512_setzero_si512(), |m| load8(m)));
    let idx: [__m512i; G] = core::array::from_fn(|g| {
        _mm512_set1_epi64(t.gather.get(c0 + g).copied().unwrap_or(0) as i64)
    });
    let step2: [__m512i; R] =
        core::array::from_fn(|r| t.step2.get(r).map_or(_mm512_setzero_si512(), |m| load8(m)));
    let mut acc = [[_mm512_setzero_si512(); R]; G];
    let len = 8 * il;
    // 8 rows (`len` bytes) of the block, zero-extended
    let rows8 = |chunk: &[u8]| {
        let n = chunk.len().min(len).min(64);
        let lmask: u64 = if n >= 64 { u64::MAX } else { (1 << n) - 1 };
        // SAFETY: `lmask` selects at most the first `chunk.len()` bytes; masked-off bytes are
        // not accessed (AVX-512 masked loads suppress them) and read as zero. AVX-512BW is
        // enabled in this function.
        unsafe { _mm512_maskz_loadu_epi8(lmask, chunk.as_ptr().cast::<i8>()) }
    };
    // Horner steps in pairs; an odd one first.
    let steps = usize::from(head.is_some()) + tail.len() / len;
    let mut rest = tail;
    if let Some(h) = head {
        // SAFETY: reads exactly the 64 bytes of `h` (unaligned load allowed).
        let v = unsafe { _mm512_loadu_si512(h.as_ptr().cast::<__m512i>()) };
        if steps % 2 == 1 {
            acc = start(&idx, v);
        } else if let Some((c, r)) = rest.split_at_checked(len) {
            acc = feed2(acc, &idx, &step, &step2, v, rows8(c));
            rest = r;
        }
    } else if steps % 2 == 1 {
        if let Some((c, r)) = rest.split_at_checked(len) {
            acc = start(&idx, rows8(c));
            rest = r;
        }
    }
    for pair in rest.chunks_exact(2 * len) {
        let (c0, c1) = pair.split_at(len);
        acc = feed2(acc, &idx, &step, &step2, rows8(c0), rows8(c1));
    }
    let mut mask = 0u8;
    for (g, a) in acc.iter().enumerate() {
        let Some(o) = out.get_mut(c0 + g) else {
            continue;
        };
        let mut nonzero = false;
        for (r, (x, dst)) in a.iter().zip(o.chunks_exact_mut(8)).enumerate() {
            let s = finish(t, r, *x);
            nonzero |= s != [0; 8];
            dst.copy_from_slice(&s);
        }
        for dst in o.iter_mut().skip(8 * R) {
            *dst = 0;
        }
        if nonzero {
            mask |= 1 << (c0 + g);
        }
    }
    mask
}

#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,gfni")]
fn syndromes_avx512(
    t: &GfniTables,
    block: &[u8],
    out: &mut [[u8; MAX_ROOTS]; MAX_INTERLEAVE],
) -> u8 {
    let il = t.il;
    if !(1..=MAX_INTERLEAVE).contains(&il) {
        return 0;
    }
    // The first 8 − pad rows go, behind `pad` zero rows, into one 8-row buffer.
    let mut buf = [0u8; 64];
    let (head, tail) = if t.pad == 0 {
        (None, block)
    } else {
        let n = (8 - t.pad) * il;
        let Some((h, rest)) = block.split_at_checked(n) else {
            return 0;
        };
        let Some(dst) = buf.get_mut(t.pad * il..t.pad * il + n) else {
            return 0;
        };
        dst.copy_from_slice(h);
        (Some(&buf), rest)
    };
    // Groups whose sizes differ by at most one (E = 16, I = 7 as 3 + 2 + 2, not 3 + 3 + 1):
    // more independent Horner chains per group hide the latency of GF2P8AFFINEQB. Sizes are at
    // most GROUP_REGS / rows: 3 for E = 16 (4 rows), 6 for E = 8 (2 rows); other E are refused
    // by `RsParams::validate`.
    let max_group = GROUP_REGS / t.rows.max(1);
    let mut groups = il.div_ceil(max_group);
    let mut mask = 0u8;
    let mut c0 = 0;
    while c0 < il && groups > 0 {
        let g = (il - c0).div_ceil(groups);
        mask |= match (t.rows, g) {
            (4, 1) => group::<1, 4>(t, head, tail, c0, out),
            (4, 2) => group::<2, 4>(t, head, tail, c0, out),
            (4, 3) => group::<3, 4>(t, head, tail, c0, out),
            (2, 1) => group::<1, 2>(t, head, tail, c0, out),
            (2, 2) => group::<2, 2>(t, head, tail, c0, out),
            (2, 3) => group::<3, 2>(t, head, tail, c0, out),
            (2, 4) => group::<4, 2>(t, head, tail, c0, out),
            (2, 5) => group::<5, 2>(t, head, tail, c0, out),
            (2, 6) => group::<6, 2>(t, head, tail, c0, out),
            _ => 0,
        };
        c0 += g;
        groups -= 1;
    }
    mask
}

/// All 2E syndromes of the I codewords of `block` (same contract as
/// `ReedSolomon::syndromes`). The caller verified [`available`] when choosing this kernel.
pub(super) fn syndromes(
    t: &GfniTables,
    block: &[u8],
    out: &mut [[u8; MAX_ROOTS]; MAX_INTERLEAVE],
) -> u8 {
    // SAFETY: `Kernel::Avx512Gfni` is only selected after `available()` (AVX-512 F/BW/VBMI
    // and GFNI detected at runtime).
    unsafe { syndromes_avx512(t, block, out) }
}
