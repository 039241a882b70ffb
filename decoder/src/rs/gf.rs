//! GF(2^8) arithmetic of the CCSDS Reed-Solomon code (field 0x187, β = α^11), the
//! conventional/dual basis tables (CCSDS 131.0-B-4 Annex F) and the precomputed syndrome and
//! encoder tables shared by the portable and the AVX2 kernels.

use super::N;

/// Field polynomial x^8 + x^7 + x^2 + x + 1.
pub(super) const FIELD_POLY: u32 = 0x187;
/// log_α of the code's primitive element β = α^11.
pub(super) const BETA_LOG: usize = 11;
/// The dual basis of CCSDS Annex F: bit 7-k of the dual representation of x is Tr(α^(117k)·x).
pub(super) const DUAL_TRACE_LOG: usize = 117;

pub(super) struct Gf {
    /// exp[i] = α^(i mod 255) for i < 512.
    pub(super) exp: [u8; 512],
    /// log[x] = log_α x for x != 0 (log[0] is unused, 0).
    pub(super) log: [u8; 256],
}

// Const evaluation: an out-of-range index would be a compile-time error, not a panic.
#[allow(clippy::indexing_slicing)]
pub(super) const fn build_gf() -> Gf {
    let mut exp = [0u8; 512];
    let mut log = [0u8; 256];
    let mut x: u32 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= FIELD_POLY;
        }
        i += 1;
    }
    while i < 512 {
        exp[i] = exp[i - 255];
        i += 1;
    }
    Gf { exp, log }
}

pub(super) const GF_CONST: Gf = build_gf();
pub(super) static GF: Gf = GF_CONST;

/// log_α(a) for a != 0.
#[inline(always)]
// u8 index into a 256-entry table: always in bounds.
#[allow(clippy::indexing_slicing)]
pub(super) fn glog(a: u8) -> usize {
    usize::from(GF.log[usize::from(a)])
}

/// α^i for i < 512 (callers keep i < 510; the mask only makes the bound explicit).
#[inline(always)]
// Masked into 0..512, the table length: always in bounds.
#[allow(clippy::indexing_slicing)]
pub(super) fn gexp(i: usize) -> u8 {
    GF.exp[i & 511]
}

#[inline(always)]
pub(super) fn gmul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        0
    } else {
        gexp(glog(a) + glog(b))
    }
}

/// α^(e mod 255) for any e.
#[inline(always)]
pub(super) fn apow(e: usize) -> u8 {
    gexp(e % 255)
}

/// Log with a sentinel for zero: `LOGZ[0]` = [`LOG_ZERO`], so that any sum of up to three
/// such logs and exponents < 255 that involves a zero lands in the zero part of [`EXPZ`].
pub(super) const LOG_ZERO: u16 = 700;

pub(super) struct GfZ {
    /// α^(i mod 255) for i < 512, 0 for 512 <= i < 2048.
    pub(super) exp: [u8; 2048],
    pub(super) log: [u16; 256],
}

// Const evaluation only.
#[allow(clippy::indexing_slicing)]
pub(super) const fn build_gfz() -> GfZ {
    let mut exp = [0u8; 2048];
    let mut log = [LOG_ZERO; 256];
    let mut i = 0;
    while i < 512 {
        exp[i] = GF_CONST.exp[i];
        i += 1;
    }
    let mut x = 1;
    while x < 256 {
        log[x] = GF_CONST.log[x] as u16;
        x += 1;
    }
    GfZ { exp, log }
}

pub(super) static GFZ: GfZ = build_gfz();

/// Log of `a` (any a; zero gives [`LOG_ZERO`]).
#[inline(always)]
// u8 index into a 256-entry table.
#[allow(clippy::indexing_slicing)]
pub(super) fn zlog(a: u8) -> usize {
    usize::from(GFZ.log[usize::from(a)])
}

/// α^i, or 0 when `i` holds a [`LOG_ZERO`] term.
#[inline(always)]
// Masked into 0..2048, the table length.
#[allow(clippy::indexing_slicing)]
pub(super) fn zexp(i: usize) -> u8 {
    GFZ.exp[i & 2047]
}

/// Shift-and-add multiply (const contexts and tests).
pub(super) const fn gmul_slow(a: u8, b: u8) -> u8 {
    let mut a = a as u32;
    let mut b = b;
    let mut r = 0u32;
    while b != 0 {
        if b & 1 != 0 {
            r ^= a;
        }
        a <<= 1;
        if a & 0x100 != 0 {
            a ^= FIELD_POLY;
        }
        b >>= 1;
    }
    r as u8
}

/// Field trace Tr(x) = x + x^2 + x^4 + … + x^128 (0 or 1).
pub(super) const fn trace(x: u8) -> u8 {
    let mut t = 0u8;
    let mut y = x;
    let mut i = 0;
    while i < 8 {
        t ^= y;
        y = gmul_slow(y, y);
        i += 1;
    }
    t
}

/// Conventional -> dual (Berlekamp) representation, CCSDS 131.0-B-4 Annex F.
pub(super) const fn conv_to_dual(x: u8) -> u8 {
    let mut z = 0u8;
    let mut k = 0;
    let mut a = 1u8; // α^(117k)
    let step = GF_CONST.exp[DUAL_TRACE_LOG];
    while k < 8 {
        z |= trace(gmul_slow(a, x)) << (7 - k);
        a = gmul_slow(a, step);
        k += 1;
    }
    z
}

// Const evaluation only.
#[allow(clippy::indexing_slicing)]
pub(super) const fn build_basis_tables() -> ([u8; 256], [u8; 256]) {
    let mut to_dual = [0u8; 256];
    let mut to_conv = [0u8; 256];
    let mut x = 0;
    while x < 256 {
        let d = conv_to_dual(x as u8);
        to_dual[x] = d;
        to_conv[d as usize] = x as u8;
        x += 1;
    }
    (to_dual, to_conv)
}

/// (conventional -> dual, dual -> conventional).
pub(super) const DUAL_TABLES: ([u8; 256], [u8; 256]) = build_basis_tables();

// Const evaluation only.
#[allow(clippy::indexing_slicing)]
pub(super) const fn build_identity() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
}

pub(super) const IDENTITY: [u8; 256] = build_identity();

// ---------------------------------------------------------------------------------------------
// Syndrome tables
// ---------------------------------------------------------------------------------------------

/// Symbols per Horner block of the syndrome kernel.
pub(super) const K: usize = 16;
/// Maximum number of parity symbols (2E).
pub(super) const MAX_ROOTS: usize = 32;
/// Maximum E.
pub(super) const MAX_E: usize = 16;

/// 32 bytes, 32-byte aligned (one AVX2 register), stored as u64 words for the scalar path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(32))]
pub(super) struct Row(pub(super) [u64; 4]);

impl Row {
    pub(super) const ZERO: Row = Row([0; 4]);

    pub(super) fn from_bytes(b: &[u8; 32]) -> Row {
        let mut w = [0u64; 4];
        for (dst, src) in w.iter_mut().zip(b.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(src);
            *dst = u64::from_ne_bytes(le);
        }
        Row(w)
    }

    pub(super) fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (dst, w) in b.chunks_exact_mut(8).zip(self.0) {
            dst.copy_from_slice(&w.to_ne_bytes());
        }
        b
    }

    #[inline(always)]
    pub(super) fn xor(&mut self, o: &Row) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a ^= b;
        }
    }
}

/// Tables of the symbol-major syndrome kernel for one (E, basis).
///
/// Received symbol r at offset k of a K-symbol block contributes
/// `conv(r) · β^((j0+i)·(K-1-k))` to syndrome i; split into nibbles (the basis change and the
/// multiplications are GF(2)-linear): `pos[k][r & 15] ^ pos[k][16 + (r >> 4)]`.
pub(super) struct SyndTables {
    pub(super) pos: [[Row; 32]; K],
    /// Bit-sliced multiplier by D_i = β^((j0+i)·K): `dmul[b]` = (D_i·α^b)_i.
    pub(super) dmul: [Row; 8],
    /// log_α D_i (scalar path).
    pub(super) dlog: [u8; MAX_ROOTS],
    /// `pow[p]` = (β^(p·(j0+i)))_i: syndrome vector of a unit error at degree p.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(super) pow: [Row; N],
    /// Encoder: `enc[fb]` = fb·g_(2E-1-j) in byte j (little-endian words), j < 2E.
    pub(super) enc: [[u64; 4]; 256],
}

impl SyndTables {
    pub(super) fn new(
        nroots: usize,
        first_root: usize,
        to_conv: &[u8; 256],
        generator: &[u8; MAX_ROOTS + 1],
    ) -> Box<Self> {
        let mut t = Box::new(SyndTables {
            pos: [[Row::ZERO; 32]; K],
            dmul: [Row::ZERO; 8],
            dlog: [0; MAX_ROOTS],
            pow: [Row::ZERO; N],
            enc: [[0; 4]; 256],
        });
        for (fb, row) in t.enc.iter_mut().enumerate() {
            let mut bytes = [0u8; 32];
            for (j, b) in bytes.iter_mut().enumerate().take(nroots) {
                let g = generator.get(nroots - 1 - j).copied().unwrap_or(0);
                *b = gmul(fb as u8, g);
            }
            for (w, chunk) in row.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut le = [0u8; 8];
                le.copy_from_slice(chunk);
                *w = u64::from_le_bytes(le);
            }
        }
        for (p, row) in t.pow.iter_mut().enumerate() {
            let mut bytes = [0u8; 32];
            for (i, b) in bytes.iter_mut().enumerate().take(nroots) {
                *b = apow(BETA_LOG * p * (first_root + i));
            }
            *row = Row::from_bytes(&bytes);
        }
        for (k, rows) in t.pos.iter_mut().enumerate() {
            let q = K - 1 - k;
            for (n, row) in rows.iter_mut().enumerate() {
                let sym = if n < 16 { n } else { (n - 16) << 4 };
                let c = to_conv.get(sym).copied().unwrap_or(0);
                let mut bytes = [0u8; 32];
                for (i, b) in bytes.iter_mut().enumerate().take(nroots) {
                    *b = gmul(c, apow(BETA_LOG * (first_root + i) * q));
                }
                *row = Row::from_bytes(&bytes);
            }
        }
        for i in 0..nroots {
            let dl = (BETA_LOG * (first_root + i) * K) % 255;
            if let Some(d) = t.dlog.get_mut(i) {
                *d = dl as u8;
            }
        }
        for (b, row) in t.dmul.iter_mut().enumerate() {
            let mut bytes = [0u8; 32];
            for (i, v) in bytes.iter_mut().enumerate().take(nroots) {
                let dl = t.dlog.get(i).copied().map_or(0, usize::from);
                *v = gexp(dl + b);
            }
            *row = Row::from_bytes(&bytes);
        }
        t
    }
}

/// Table row for the low nibble of `v`.
#[inline(always)]
// (v & 15) < 16 <= 32 entries.
#[allow(clippy::indexing_slicing)]
pub(super) fn nib_lo(tk: &[Row; 32], v: u8) -> &Row {
    &tk[usize::from(v & 15)]
}

/// Table row for the high nibble of `v`.
#[inline(always)]
// 16 + (v >> 4) < 32 entries.
#[allow(clippy::indexing_slicing)]
pub(super) fn nib_hi(tk: &[Row; 32], v: u8) -> &Row {
    &tk[16 + usize::from(v >> 4)]
}

/// Encoder table row for feedback `fb`.
#[inline(always)]
// u8 index into a 256-entry table.
#[allow(clippy::indexing_slicing)]
pub(super) fn enc_row(t: &[[u64; 4]; 256], fb: u8) -> &[u64; 4] {
    &t[usize::from(fb)]
}

/// Basis-table lookup.
#[inline(always)]
// u8 index into a 256-entry table.
#[allow(clippy::indexing_slicing)]
pub(super) fn wire(table: &[u8; 256], v: u8) -> u8 {
    table[usize::from(v)]
}
