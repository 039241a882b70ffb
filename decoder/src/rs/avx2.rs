//! AVX2 kernels of the Reed-Solomon decoder (selected at runtime after
//! `is_x86_feature_detected!("avx2")`): symbol-major syndromes, riBM, Chien search over 32
//! positions per vector, Forney and verification. Bit-identical to [`super::codec`]'s portable
//! path.

mod tables {
    //! Static tables of the AVX2 Chien search.
    use crate::rs::gf::{gmul_slow, Row, GF_CONST, MAX_E};

    /// `lo[v]` = (v·n) for n in 0..16, `hi[v]` = (v·(n<<4)): vpshufb tables multiplying by v.
    pub(super) struct MulNibbles {
        pub(super) lo: [[u8; 16]; 256],
        pub(super) hi: [[u8; 16]; 256],
    }

    /// Nibbles of β^(-i·p) for coefficient i = 0..=16 and p = 32w..32w+32 (w = 0..8).
    pub(super) struct ChienPowers {
        pub(super) lo: [[Row; 8]; MAX_E + 1],
        pub(super) hi: [[Row; 8]; MAX_E + 1],
    }

    // Const evaluation only: an out-of-range index is a compile error.
    #[allow(clippy::indexing_slicing)]
    const fn build_mul() -> MulNibbles {
        let mut lo = [[0u8; 16]; 256];
        let mut hi = [[0u8; 16]; 256];
        let mut v = 0;
        while v < 256 {
            let mut n = 0;
            while n < 16 {
                lo[v][n] = gmul_slow(v as u8, n as u8);
                hi[v][n] = gmul_slow(v as u8, (n << 4) as u8);
                n += 1;
            }
            v += 1;
        }
        MulNibbles { lo, hi }
    }

    // Const evaluation only.
    #[allow(clippy::indexing_slicing)]
    const fn build_powers() -> ChienPowers {
        let mut lo = [[Row([0; 4]); 8]; MAX_E + 1];
        let mut hi = [[Row([0; 4]); 8]; MAX_E + 1];
        let mut i = 0;
        while i <= MAX_E {
            let mut w = 0;
            while w < 8 {
                let mut lb = [0u8; 32];
                let mut hb = [0u8; 32];
                let mut b = 0;
                while b < 32 {
                    let p = 32 * w + b;
                    let e = (255 * 16 - (11 * i * p) % 255) % 255;
                    let x = GF_CONST.exp[e];
                    lb[b] = x & 15;
                    hb[b] = x >> 4;
                    b += 1;
                }
                lo[i][w] = row(&lb);
                hi[i][w] = row(&hb);
                w += 1;
            }
            i += 1;
        }
        ChienPowers { lo, hi }
    }

    // Const evaluation only.
    #[allow(clippy::indexing_slicing)]
    const fn row(b: &[u8; 32]) -> Row {
        let mut w = [0u64; 4];
        let mut k = 0;
        while k < 4 {
            let mut x = [0u8; 8];
            let mut j = 0;
            while j < 8 {
                x[j] = b[8 * k + j];
                j += 1;
            }
            w[k] = u64::from_ne_bytes(x);
            k += 1;
        }
        Row(w)
    }

    pub(super) static MUL_NIB: MulNibbles = build_mul();
    pub(super) static CHIEN_POW: ChienPowers = build_powers();
}

use self::tables::{CHIEN_POW, MUL_NIB};
use super::codec::{Correction, Locator};
use super::gf::{gexp, glog, nib_hi, nib_lo, Row, SyndTables, BETA_LOG, K, MAX_E, MAX_ROOTS};
use super::{MAX_INTERLEAVE, N};
use core::arch::x86_64::*;

#[target_feature(enable = "avx2")]
#[inline]
fn load(r: &Row) -> __m256i {
    // SAFETY: `Row` is 32 bytes and 32-byte aligned (`repr(C, align(32))`), so an aligned
    // 256-bit load from a valid reference to it is in bounds; AVX2 is enabled here.
    unsafe { _mm256_load_si256(r.0.as_ptr().cast::<__m256i>()) }
}

#[target_feature(enable = "avx2")]
#[inline]
fn broadcast16(b: &[u8; 16]) -> __m256i {
    // SAFETY: reads exactly the 16 bytes of `b` (unaligned load allowed).
    let x = unsafe { _mm_loadu_si128(b.as_ptr().cast::<__m128i>()) };
    _mm256_broadcastsi128_si256(x)
}

/// s_i · D_i for every byte i, bit-sliced: Σ_b bit_b(s_i)·(D_i·α^b).
#[target_feature(enable = "avx2")]
#[inline]
fn mul_d(s: __m256i, d: &[Row; 8]) -> __m256i {
    let zero = _mm256_setzero_si256();
    let mut x = s;
    let mut acc = zero;
    for r in d.iter().rev() {
        // the sign bit of each byte of x is bit b of s (b from 7 down to 0)
        acc = _mm256_xor_si256(acc, _mm256_blendv_epi8(zero, load(r), x));
        x = _mm256_add_epi8(x, x);
    }
    acc
}

#[target_feature(enable = "avx2")]
#[inline]
fn add_symbol(a: __m256i, tk: &[Row; 32], v: u8) -> __m256i {
    _mm256_xor_si256(
        a,
        _mm256_xor_si256(load(nib_lo(tk, v)), load(nib_hi(tk, v))),
    )
}

#[target_feature(enable = "avx2")]
fn syndromes_i<const I: usize>(
    t: &SyndTables,
    block: &[u8],
    head_len: usize,
    out: &mut [[u8; MAX_ROOTS]; MAX_INTERLEAVE],
) -> u8 {
    let mut acc = [_mm256_setzero_si256(); I];
    let Some((head, tail)) = block.split_at_checked(head_len * I) else {
        return 0;
    };
    for (row, tk) in head.chunks_exact(I).zip(t.pos.iter().skip(K - head_len)) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a = add_symbol(*a, tk, v);
        }
    }
    for chunk in tail.chunks_exact(K * I) {
        for a in acc.iter_mut() {
            *a = mul_d(*a, &t.dmul);
        }
        for (row, tk) in chunk.chunks_exact(I).zip(t.pos.iter()) {
            for (a, &v) in acc.iter_mut().zip(row) {
                *a = add_symbol(*a, tk, v);
            }
        }
    }
    let mut mask = 0u8;
    for (i, (a, o)) in acc.iter().zip(out.iter_mut()).enumerate() {
        if _mm256_testz_si256(*a, *a) == 0 {
            mask |= 1 << i;
        }
        // SAFETY: `o` is a valid, writable 32-byte array; unaligned store allowed.
        unsafe { _mm256_storeu_si256(o.as_mut_ptr().cast::<__m256i>(), *a) };
    }
    mask
}

/// Syndromes with AVX2 (caller verified AVX2 at runtime when choosing this kernel).
pub(super) fn syndromes(
    t: &SyndTables,
    block: &[u8],
    interleave: usize,
    head_len: usize,
    out: &mut [[u8; MAX_ROOTS]; MAX_INTERLEAVE],
) -> u8 {
    match interleave {
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("avx2")`.
        1 => unsafe { syndromes_i::<1>(t, block, head_len, out) },
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("avx2")`.
        2 => unsafe { syndromes_i::<2>(t, block, head_len, out) },
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("avx2")`.
        3 => unsafe { syndromes_i::<3>(t, block, head_len, out) },
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("avx2")`.
        4 => unsafe { syndromes_i::<4>(t, block, head_len, out) },
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("avx2")`.
        5 => unsafe { syndromes_i::<5>(t, block, head_len, out) },
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("avx2")`.
        6 => unsafe { syndromes_i::<6>(t, block, head_len, out) },
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("avx2")`.
        7 => unsafe { syndromes_i::<7>(t, block, head_len, out) },
        // SAFETY: `Kernel::Avx2` is only selected after `is_x86_feature_detected!("avx2")`.
        8 => unsafe { syndromes_i::<8>(t, block, head_len, out) },
        _ => 0,
    }
}

/// (v & 15, v >> 4) nibble vectors.
#[target_feature(enable = "avx2")]
#[inline]
fn nibbles(v: __m256i) -> (__m256i, __m256i) {
    let nib = _mm256_set1_epi8(0x0f);
    (
        _mm256_and_si256(v, nib),
        _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib),
    )
}

/// c·v for every byte of v.
#[target_feature(enable = "avx2")]
#[inline]
fn mul_scalar(c: u8, v: [__m256i; 2]) -> [__m256i; 2] {
    let ml = broadcast16(nib_table(&MUL_NIB.lo, c));
    let mh = broadcast16(nib_table(&MUL_NIB.hi, c));
    v.map(|x| {
        let (lo, hi) = nibbles(x);
        _mm256_xor_si256(_mm256_shuffle_epi8(ml, lo), _mm256_shuffle_epi8(mh, hi))
    })
}

/// Byte i of the result = byte i+1 of the 64-byte vector `v` (zero shifted in).
#[target_feature(enable = "avx2")]
#[inline]
fn shift_down(v: [__m256i; 2]) -> [__m256i; 2] {
    let [a, b] = v;
    [
        _mm256_alignr_epi8::<1>(_mm256_permute2x128_si256::<0x21>(a, b), a),
        _mm256_alignr_epi8::<1>(_mm256_permute2x128_si256::<0x81>(b, b), b),
    ]
}

#[target_feature(enable = "avx2")]
fn ribm_avx2(s: &[u8; MAX_ROOTS], t: usize) -> Option<Locator> {
    // δ(0) = θ(0) = (S_0 … S_{2t-1}, 0 … 0, 1 at 3t)
    let mut init = [0u8; 64];
    for (d, &sv) in init.iter_mut().zip(s.iter()).take(2 * t) {
        *d = sv;
    }
    if let Some(one) = init.get_mut(3 * t) {
        *one = 1;
    }
    let (init_lo, init_hi) = init.split_at(32);
    // SAFETY: reads the 32 bytes of `init_lo` (unaligned load).
    let delta_lo = unsafe { _mm256_loadu_si256(init_lo.as_ptr().cast::<__m256i>()) };
    // SAFETY: reads the 32 bytes of `init_hi` (unaligned load).
    let delta_hi = unsafe { _mm256_loadu_si256(init_hi.as_ptr().cast::<__m256i>()) };
    let mut delta = [delta_lo, delta_hi];
    let mut theta = delta;
    let mut gamma = 1u8;
    let mut k: isize = 0;
    for _ in 0..2 * t {
        let d0 = _mm256_cvtsi256_si32(delta[0]) as u8;
        let sh = shift_down(delta);
        let a = mul_scalar(gamma, sh);
        let b = mul_scalar(d0, theta);
        delta = [_mm256_xor_si256(a[0], b[0]), _mm256_xor_si256(a[1], b[1])];
        if d0 != 0 && k >= 0 {
            theta = sh;
            gamma = d0;
            k = -k - 1;
        } else {
            k += 1;
        }
    }
    // L = (2t − k)/2
    let l = usize::try_from(2 * t as isize - k).ok()? / 2;
    if l > t {
        return None;
    }
    let mut out = [0u8; 64];
    let (out_lo, out_hi) = out.split_at_mut(32);
    // SAFETY: writes the 32 bytes of `out_lo` (unaligned store).
    unsafe { _mm256_storeu_si256(out_lo.as_mut_ptr().cast::<__m256i>(), delta[0]) };
    // SAFETY: writes the 32 bytes of `out_hi` (unaligned store).
    unsafe { _mm256_storeu_si256(out_hi.as_mut_ptr().cast::<__m256i>(), delta[1]) };
    let mut lam = [0u8; MAX_ROOTS + 1];
    for (d, &o) in lam.iter_mut().zip(out.iter().skip(t)).take(t + 1) {
        *d = o;
    }
    let mut omega_h = [0u8; MAX_E];
    for (d, &o) in omega_h.iter_mut().zip(out.iter()).take(t) {
        *d = o;
    }
    Some(Locator { lam, l, omega_h })
}

/// Error locator by the reformulated inversionless Berlekamp–Massey algorithm
/// (Sarwate & Shanbhag, 2001), vectorised. Returns c·Λ and L for some c != 0 (and the
/// same multiple of the high-order evaluator ω^h(x) = x^-2t·[Λ(x)S(x)]_{>=2t}), or `None`
/// when L > t.
pub(super) fn ribm(s: &[u8; MAX_ROOTS], t: usize) -> Option<Locator> {
    // SAFETY: `Kernel::Avx2` and `Kernel::Avx512Gfni` (which uses this for its error path) are
    // only selected after `is_x86_feature_detected!("avx2")`.
    unsafe { ribm_avx2(s, t) }
}

/// Multiply every byte by α (x·v mod F(x)).
#[target_feature(enable = "avx2")]
#[inline]
fn xtime(v: __m256i) -> __m256i {
    let carry = _mm256_cmpgt_epi8(_mm256_setzero_si256(), v);
    _mm256_xor_si256(
        _mm256_add_epi8(v, v),
        _mm256_and_si256(carry, _mm256_set1_epi8(0x87u8 as i8)),
    )
}

#[target_feature(enable = "avx2")]
fn forney_avx2(loc: &Locator, e: usize, c: &mut Correction) -> Option<()> {
    let l = loc.l;
    // lanes 0..16: X_k^-1 (evaluate ω^h), lanes 16..32: X_k^-2 (evaluate Q with
    // Λ_odd(x) = x·Q(x²), Q_j = λ_(2j+1))
    let mut pts = [0u8; 32];
    let mut xl = [0usize; MAX_E];
    for (k, (&p, x)) in c.pos.iter().zip(xl.iter_mut()).enumerate().take(l) {
        *x = (BETA_LOG * p) % 255;
        let xinv = 255 - *x;
        if let Some(v) = pts.get_mut(k) {
            *v = gexp(xinv);
        }
        if let Some(v) = pts.get_mut(16 + k) {
            *v = gexp((2 * xinv) % 255);
        }
    }
    // SAFETY: reads exactly the 32 bytes of `pts`.
    let mut v = unsafe { _mm256_loadu_si256(pts.as_ptr().cast::<__m256i>()) };
    let mut vb = [v; 8];
    for b in vb.iter_mut().skip(1) {
        v = xtime(v);
        *b = v;
    }
    let zero = _mm256_setzero_si256();
    let mut acc = zero;
    for i in (0..l).rev() {
        // acc ← acc · pts (bit-sliced: Σ_b bit_b(acc)·pts·α^b)
        let mut x = acc;
        let mut prod = zero;
        for r in vb.iter().rev() {
            prod = _mm256_xor_si256(prod, _mm256_blendv_epi8(zero, *r, x));
            x = _mm256_add_epi8(x, x);
        }
        let w = loc.omega_h.get(i).copied().unwrap_or(0);
        let q = loc.lam.get(2 * i + 1).copied().unwrap_or(0);
        let coef = _mm256_setr_m128i(_mm_set1_epi8(w as i8), _mm_set1_epi8(q as i8));
        acc = _mm256_xor_si256(prod, coef);
    }
    let mut out = [0u8; 32];
    // SAFETY: writes exactly the 32 bytes of `out`.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast::<__m256i>(), acc) };
    // e_k = X^-j0·Ω(X^-1)/Λ_odd(X^-1), Ω(X^-1) = X^-2t·ω^h(X^-1), Λ_odd(X^-1) = X^-1·Q(X^-2)
    // => e_k = X^-(127+E)·ω^h(X^-1)/Q(X^-2)
    let xexp = 255 - (127 + e) % 255;
    for (k, (v, &x)) in c.val.iter_mut().zip(xl.iter()).enumerate().take(l) {
        let num = out.get(k).copied().unwrap_or(0);
        let den = out.get(16 + k).copied().unwrap_or(0);
        if num == 0 || den == 0 {
            return None;
        }
        *v = gexp((x * xexp) % 255 + (glog(num) + 255 - glog(den)) % 255);
    }
    Some(())
}

/// Error values from the riBM output (AVX2), same contract as `ReedSolomon::forney`.
pub(super) fn forney(loc: &Locator, e: usize, c: &mut Correction) -> Option<()> {
    // SAFETY: `Kernel::Avx2` and `Kernel::Avx512Gfni` (which uses this for its error path) are
    // only selected after `is_x86_feature_detected!("avx2")`.
    unsafe { forney_avx2(loc, e, c) }
}

#[target_feature(enable = "avx2")]
fn verify_avx2(s: &[u8; MAX_ROOTS], c: &Correction, pow: &[Row; N]) -> bool {
    // SAFETY: reads exactly the 32 bytes of `s` (unaligned load allowed).
    let mut acc = unsafe { _mm256_loadu_si256(s.as_ptr().cast::<__m256i>()) };
    let nib = _mm256_set1_epi8(0x0f);
    for (&p, &v) in c.pos.iter().zip(c.val.iter()).take(c.count) {
        let Some(row) = pow.get(p) else {
            return false;
        };
        let r = load(row);
        let lo = _mm256_and_si256(r, nib);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(r), nib);
        let ml = broadcast16(nib_table(&MUL_NIB.lo, v));
        let mh = broadcast16(nib_table(&MUL_NIB.hi, v));
        acc = _mm256_xor_si256(
            acc,
            _mm256_xor_si256(_mm256_shuffle_epi8(ml, lo), _mm256_shuffle_epi8(mh, hi)),
        );
    }
    _mm256_testz_si256(acc, acc) == 1
}

/// Checks that the error pattern reproduces the syndromes `s` exactly (AVX2).
pub(super) fn verify(s: &[u8; MAX_ROOTS], c: &Correction, pow: &[Row; N]) -> bool {
    // SAFETY: `Kernel::Avx2` and `Kernel::Avx512Gfni` (which uses this for its error path) are
    // only selected after `is_x86_feature_detected!("avx2")`.
    unsafe { verify_avx2(s, c, pow) }
}

#[target_feature(enable = "avx2")]
fn chien_avx2(
    lam: &[u8; MAX_ROOTS + 1],
    deg: usize,
    n_t: usize,
    pos: &mut [usize; MAX_E],
) -> usize {
    let windows = n_t.div_ceil(32).min(8);
    let mut acc = [_mm256_setzero_si256(); 8];
    for ((&li, lo), hi) in lam
        .iter()
        .zip(CHIEN_POW.lo.iter())
        .zip(CHIEN_POW.hi.iter())
        .take(deg + 1)
    {
        if li == 0 {
            continue;
        }
        let ml = broadcast16(nib_table(&MUL_NIB.lo, li));
        let mh = broadcast16(nib_table(&MUL_NIB.hi, li));
        for ((a, l), h) in acc.iter_mut().zip(lo.iter()).zip(hi.iter()).take(windows) {
            let t = _mm256_xor_si256(
                _mm256_shuffle_epi8(ml, load(l)),
                _mm256_shuffle_epi8(mh, load(h)),
            );
            *a = _mm256_xor_si256(*a, t);
        }
    }
    let zero = _mm256_setzero_si256();
    let mut found = 0;
    for (w, a) in acc.iter().enumerate().take(windows) {
        let mut m = _mm256_movemask_epi8(_mm256_cmpeq_epi8(*a, zero)) as u32;
        let valid = n_t.saturating_sub(32 * w);
        if valid < 32 {
            m &= (1u32 << valid) - 1;
        }
        while m != 0 {
            let b = m.trailing_zeros() as usize;
            m &= m - 1;
            if found >= deg {
                return found + 1; // more roots than the degree: cannot happen for a valid Λ
            }
            if let Some(slot) = pos.get_mut(found) {
                *slot = 32 * w + b;
            }
            found += 1;
        }
    }
    found
}

/// Chien search with AVX2, same contract as `chien_scalar`.
pub(super) fn chien(
    lam: &[u8; MAX_ROOTS + 1],
    deg: usize,
    n_t: usize,
    pos: &mut [usize; MAX_E],
) -> usize {
    // SAFETY: `Kernel::Avx2` and `Kernel::Avx512Gfni` (which uses this for its error path) are
    // only selected after `is_x86_feature_detected!("avx2")`.
    unsafe { chien_avx2(lam, deg, n_t, pos) }
}

#[inline(always)]
// u8 index into a 256-entry table.
#[allow(clippy::indexing_slicing)]
fn nib_table(t: &[[u8; 16]; 256], v: u8) -> &[u8; 16] {
    &t[usize::from(v)]
}
