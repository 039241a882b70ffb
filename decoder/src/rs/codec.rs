//! The Reed-Solomon decoder and encoder: syndromes, Berlekamp–Massey, Chien search, Forney
//! and verification (portable scalar code; the AVX2 kernels are in [`super::avx2`], the
//! AVX-512/GFNI syndrome kernel in [`super::avx512`]; both are chosen at runtime).

use super::gf::{
    apow, enc_row, gexp, glog, gmul, nib_hi, nib_lo, wire, zexp, zlog, Row, SyndTables, BETA_LOG,
    DUAL_TABLES, IDENTITY, K, LOG_ZERO, MAX_E, MAX_ROOTS,
};
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};
use super::{Basis, BlockOutcome, CodewordOutcome, Error, RsParams, MAX_INTERLEAVE, N};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512/GFNI syndromes, AVX2 for the rest of the error path.
    #[cfg(target_arch = "x86_64")]
    Avx512Gfni,
}

/// A verified correction of one codeword: `count` errors at degrees `pos` with (conventional)
/// values `val`.
pub(super) struct Correction {
    pub(super) count: usize,
    pub(super) pos: [usize; MAX_E],
    pub(super) val: [u8; MAX_E],
}

/// Output of the (ri)BM step: a (possibly scaled) locator Λ of degree bound L, and for the
/// AVX2 path the matching high-order evaluator ω^h.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) struct Locator {
    pub(super) lam: [u8; MAX_ROOTS + 1],
    pub(super) l: usize,
    pub(super) omega_h: [u8; MAX_E],
}

/// The syndromes of a fixed mask XORed onto every block (the pseudo-randomizer's sequence), to
/// check blocks without removing it ([`ReedSolomon::is_clean_masked`]).
#[derive(Clone)]
pub struct MaskedCheck {
    syndromes: [[u8; MAX_ROOTS]; MAX_INTERLEAVE],
    block_len: usize,
}

impl core::fmt::Debug for MaskedCheck {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MaskedCheck")
            .field("block_len", &self.block_len)
            .finish_non_exhaustive()
    }
}

/// Reed-Solomon decoder/encoder for one [`RsParams`]. Build once (tables are precomputed),
/// share freely: all methods take `&self`.
pub struct ReedSolomon {
    params: RsParams,
    pub(super) interleave: usize,
    /// 2E.
    pub(super) nroots: usize,
    /// Transmitted symbols per codeword (255 − fill).
    pub(super) n_t: usize,
    /// Transmitted data symbols per codeword.
    pub(super) k_t: usize,
    /// j0 = 128 − E.
    pub(super) first_root: usize,
    /// Wire symbol -> conventional.
    pub(super) to_conv: [u8; 256],
    /// Conventional -> wire symbol.
    pub(super) to_wire: [u8; 256],
    /// Generator coefficients g_0..=g_2E (conventional), g_2E = 1.
    generator: [u8; MAX_ROOTS + 1],
    synd: Box<SyndTables>,
    #[cfg(target_arch = "x86_64")]
    gfni: avx512::GfniTables,
    kernel: Kernel,
}

impl core::fmt::Debug for ReedSolomon {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReedSolomon")
            .field("params", &self.params)
            .field("kernel", &self.kernel)
            .finish_non_exhaustive()
    }
}

impl ReedSolomon {
    /// Validates `p` and precomputes the tables (about 35 KiB).
    pub fn new(p: RsParams) -> Result<Self, Error> {
        p.validate()?;
        let e = usize::from(p.e);
        let nroots = 2 * e;
        let n_t = N - usize::from(p.virtual_fill);
        let first_root = 128 - e;
        let (to_conv, to_wire) = match p.basis {
            Basis::Dual => (DUAL_TABLES.1, DUAL_TABLES.0),
            Basis::Conventional => (IDENTITY, IDENTITY),
        };
        // g(x) = Π (x − β^(j0+i)), built by multiplying in one root at a time.
        let mut generator = [0u8; MAX_ROOTS + 1];
        generator[0] = 1;
        for i in 0..nroots {
            let root = apow(BETA_LOG * (first_root + i));
            // new[k] = old[k-1] + root·old[k]
            let mut prev = 0u8;
            for c in generator.iter_mut().take(i + 2) {
                let old = *c;
                *c = prev ^ gmul(root, old);
                prev = old;
            }
        }
        let synd = SyndTables::new(nroots, first_root, &to_conv, &generator);
        #[cfg(target_arch = "x86_64")]
        let gfni = avx512::GfniTables::new(
            nroots,
            n_t,
            usize::from(p.interleave),
            &synd.pow,
            &to_conv,
            &to_wire,
        );
        Ok(Self {
            params: p,
            interleave: usize::from(p.interleave),
            nroots,
            n_t,
            k_t: n_t - nroots,
            first_root,
            to_conv,
            to_wire,
            generator,
            synd,
            #[cfg(target_arch = "x86_64")]
            gfni,
            kernel: Self::best_kernel(),
        })
    }

    fn best_kernel() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if avx512::available() {
                return Kernel::Avx512Gfni;
            }
            if std::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }

    /// The same decoder restricted to the portable scalar code (for tests and benchmarks;
    /// results are bit-identical).
    pub fn without_simd(mut self) -> Self {
        self.kernel = Kernel::Scalar;
        self
    }

    /// The same decoder without the AVX-512/GFNI syndrome kernel: AVX2 where the CPU has it,
    /// otherwise unchanged (for tests and benchmarks; results are bit-identical).
    pub fn without_avx512(self) -> Self {
        #[cfg(target_arch = "x86_64")]
        if self.kernel == Kernel::Avx512Gfni {
            return Self {
                kernel: Kernel::Avx2,
                ..self
            };
        }
        self
    }

    /// Whether decode uses the SIMD kernels (AVX2, or AVX-512/GFNI syndromes and AVX2).
    pub fn uses_simd(&self) -> bool {
        self.kernel != Kernel::Scalar
    }

    /// Whether the syndromes are computed by the AVX-512/GFNI kernel.
    pub fn uses_avx512(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self.kernel == Kernel::Avx512Gfni {
            return true;
        }
        false
    }

    /// The parameters this decoder was built for.
    pub fn params(&self) -> RsParams {
        self.params
    }

    /// Transmitted bytes per block: I·(255 − fill).
    pub fn block_len(&self) -> usize {
        self.interleave * self.n_t
    }

    /// Data bytes per block (at its start): I·(255 − 2E − fill).
    pub fn data_len(&self) -> usize {
        self.interleave * self.k_t
    }

    /// Parity bytes per block (at its end): I·2E.
    pub fn parity_len(&self) -> usize {
        self.interleave * self.nroots
    }

    /// Generator polynomial coefficients g_0..=g_2E in the conventional basis (g_2E = 1).
    pub fn generator(&self) -> &[u8] {
        self.generator
            .get(..=self.nroots)
            .unwrap_or(&self.generator)
    }

    fn check_len(&self, got: usize) -> Result<(), Error> {
        let expected = self.block_len();
        if got == expected {
            Ok(())
        } else {
            Err(Error::RsWrongLength { expected, got })
        }
    }

    /// Decode one interleaved block IN PLACE (data and parity corrected). Codewords that are
    /// uncorrectable are left byte-for-byte unchanged. A correction is only applied after it
    /// has been verified (locator degree ≤ E and equal to the number of its roots among the
    /// transmitted positions, non-zero error values, and the error pattern reproducing all 2E
    /// syndromes). `Err` only for a wrong block length.
    pub fn decode(&self, block: &mut [u8]) -> Result<BlockOutcome, Error> {
        self.decode_with(block, self.kernel)
    }

    pub(super) fn decode_with(
        &self,
        block: &mut [u8],
        kernel: Kernel,
    ) -> Result<BlockOutcome, Error> {
        self.check_len(block.len())?;
        let mut synd = [[0u8; MAX_ROOTS]; MAX_INTERLEAVE];
        let nonzero = self.syndromes(block, &mut synd, kernel);
        let mut out = BlockOutcome::new(self.interleave);
        if nonzero == 0 {
            return Ok(out);
        }
        for (cw, (s, outcome)) in synd.iter().zip(out.codewords.iter_mut()).enumerate() {
            if nonzero & (1 << cw) == 0 {
                continue;
            }
            *outcome = match self.solve(s, kernel) {
                Some(c) => {
                    self.apply(block, cw, &c);
                    CodewordOutcome::Corrected {
                        symbols: c.count as u8,
                    }
                }
                None => CodewordOutcome::Uncorrectable,
            };
        }
        Ok(out)
    }

    /// The check of blocks sent XORed with `mask` (the pseudo-randomizer's sequence over the
    /// block: [`crate::pn`]), for [`ReedSolomon::is_clean_masked`]. `Err` when `mask` is not
    /// one block long.
    pub fn masked_check(&self, mask: &[u8]) -> Result<MaskedCheck, Error> {
        self.check_len(mask.len())?;
        let mut syndromes = [[0u8; MAX_ROOTS]; MAX_INTERLEAVE];
        self.syndromes(mask, &mut syndromes, self.kernel);
        Ok(MaskedCheck {
            syndromes,
            block_len: mask.len(),
        })
    }

    /// Whether `block`, a block sent XORed with the mask of `check`, arrived without an error,
    /// checked as it is: every codeword's syndromes are those of the mask (syndromes are
    /// linear, and a codeword's are zero), so the mask need not be removed first. True exactly
    /// when [`ReedSolomon::decode`] of the block with the mask removed would find every
    /// codeword clean. False for a block of the wrong length.
    pub fn is_clean_masked(&self, block: &[u8], check: &MaskedCheck) -> bool {
        self.is_clean_masked_with(block, check, self.kernel)
    }

    pub(super) fn is_clean_masked_with(
        &self,
        block: &[u8],
        check: &MaskedCheck,
        kernel: Kernel,
    ) -> bool {
        if block.len() != self.block_len() || check.block_len != block.len() {
            return false;
        }
        let mut synd = [[0u8; MAX_ROOTS]; MAX_INTERLEAVE];
        self.syndromes(block, &mut synd, kernel);
        let nr = self.nroots;
        synd.iter()
            .zip(check.syndromes.iter())
            .take(self.interleave)
            .all(|(s, m)| s.get(..nr) == m.get(..nr))
    }

    /// The outcome of a block whose codewords are all clean.
    pub fn clean_outcome(&self) -> BlockOutcome {
        BlockOutcome::new(self.interleave)
    }

    /// Symbols in the first (possibly partial) Horner block.
    fn head_len(&self) -> usize {
        match self.n_t % K {
            0 => K,
            r => r,
        }
    }

    /// All 2E syndromes of all I codewords (conventional basis, syndrome i = r(β^(j0+i))).
    /// Returns a bit mask of codewords with a non-zero syndrome.
    pub(super) fn syndromes(
        &self,
        block: &[u8],
        out: &mut [[u8; MAX_ROOTS]; MAX_INTERLEAVE],
        kernel: Kernel,
    ) -> u8 {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                avx2::syndromes(&self.synd, block, self.interleave, self.head_len(), out)
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Gfni => avx512::syndromes(&self.gfni, block, out),
            Kernel::Scalar => self.syndromes_scalar(block, out),
        }
    }

    fn syndromes_scalar(&self, block: &[u8], out: &mut [[u8; MAX_ROOTS]; MAX_INTERLEAVE]) -> u8 {
        let t = &*self.synd;
        let il = self.interleave;
        let head_len = self.head_len();
        let mut acc = [Row::ZERO; MAX_INTERLEAVE];
        let Some((head, tail)) = block.split_at_checked(head_len * il) else {
            return 0;
        };
        for (row, tk) in head.chunks_exact(il).zip(t.pos.iter().skip(K - head_len)) {
            for (a, &v) in acc.iter_mut().zip(row) {
                a.xor(nib_lo(tk, v));
                a.xor(nib_hi(tk, v));
            }
        }
        for chunk in tail.chunks_exact(K * il) {
            for a in acc.iter_mut().take(il) {
                let mut bytes = a.to_bytes();
                for (b, &dl) in bytes.iter_mut().zip(t.dlog.iter()) {
                    if *b != 0 {
                        *b = gexp(glog(*b) + usize::from(dl));
                    }
                }
                *a = Row::from_bytes(&bytes);
            }
            for (row, tk) in chunk.chunks_exact(il).zip(t.pos.iter()) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    a.xor(nib_lo(tk, v));
                    a.xor(nib_hi(tk, v));
                }
            }
        }
        let mut mask = 0u8;
        for (i, (a, o)) in acc.iter().zip(out.iter_mut()).take(il).enumerate() {
            if a.0 != [0; 4] {
                mask |= 1 << i;
            }
            *o = a.to_bytes();
        }
        mask
    }

    /// Berlekamp–Massey, Chien, Forney and verification for one codeword's syndromes.
    // Kept out of line: the clean fast path in `decode_with` stays small.
    #[inline(never)]
    fn solve(&self, s: &[u8; MAX_ROOTS], kernel: Kernel) -> Option<Correction> {
        let nr = self.nroots;
        let e = nr / 2;
        let mut slog = [usize::from(LOG_ZERO); MAX_ROOTS];
        for (sl, &sv) in slog.iter_mut().zip(s.iter()).take(nr) {
            *sl = zlog(sv);
        }
        let loc = match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Avx512Gfni => avx2::ribm(s, e)?,
            Kernel::Scalar => berlekamp_massey(s, &slog, nr, e)?,
        };
        let (lam, l) = (&loc.lam, loc.l);
        // (the AVX2 locator is scaled by a non-zero constant: same roots, same Ω/Λ' ratio)
        if l == 0 || lam[0] == 0 || degree(lam) != l {
            return None;
        }
        let mut c = Correction {
            count: 0,
            pos: [0; MAX_E],
            val: [0; MAX_E],
        };
        let found = match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Avx512Gfni => avx2::chien(lam, l, self.n_t, &mut c.pos),
            Kernel::Scalar => chien_scalar(lam, l, self.n_t, &mut c.pos),
        };
        if found != l {
            return None;
        }
        c.count = l;
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Avx512Gfni => avx2::forney(&loc, e, &mut c)?,
            Kernel::Scalar => self.forney(&slog, lam, &mut c)?,
        }
        let ok = match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 | Kernel::Avx512Gfni => avx2::verify(s, &c, &self.synd.pow),
            Kernel::Scalar => self.verify_scalar(s, &c),
        };
        ok.then_some(c)
    }

    /// Error values e_k = X_k^(1-j0)·Ω(X_k^-1)/Λ'(X_k^-1) at the located degrees.
    fn forney(
        &self,
        slog: &[usize; MAX_ROOTS],
        lam: &[u8; MAX_ROOTS + 1],
        c: &mut Correction,
    ) -> Option<()> {
        let l = c.count;
        let mut lam_log = [usize::from(LOG_ZERO); MAX_E + 1];
        for (ll, &lv) in lam_log.iter_mut().zip(lam.iter()).take(l + 1) {
            *ll = zlog(lv);
        }
        // Ω(x) = S(x)·Λ(x) mod x^L (a valid Ω has degree < L; verification catches the rest).
        let mut omega_log = [usize::from(LOG_ZERO); MAX_E];
        for (i, o) in omega_log.iter_mut().enumerate().take(l) {
            let mut acc = 0u8;
            for (&sk, &lk) in slog
                .iter()
                .take(i + 1)
                .zip(lam_log.iter().take(i + 1).rev())
            {
                acc ^= zexp(sk + lk);
            }
            *o = zlog(acc);
        }
        // Λ'(x) = Σ_{i odd} λ_i x^(i-1): odd coefficients only
        let mut odd_log = [usize::from(LOG_ZERO); MAX_E / 2 + 1];
        for (ol, &ll) in odd_log.iter_mut().zip(lam_log.iter().skip(1).step_by(2)) {
            *ol = ll;
        }
        let n_odd = l.div_ceil(2);
        // Evaluate Ω and Λ' at all roots, coefficient-major so that the per-root exponent
        // updates are independent (no long dependency chain).
        let mut xinv = [0usize; MAX_E]; // log X_k^-1 (255 ≡ 0)
        let mut xl = [0usize; MAX_E]; // log X_k
        for ((xi, x), &p) in xinv.iter_mut().zip(xl.iter_mut()).zip(c.pos.iter()).take(l) {
            *x = (BETA_LOG * p) % 255;
            *xi = 255 - *x;
        }
        let mut num = [0u8; MAX_E];
        let mut ex = [0usize; MAX_E];
        for &ol in omega_log.iter().take(l) {
            for ((n, e), &xi) in num.iter_mut().zip(ex.iter_mut()).zip(xinv.iter()).take(l) {
                *n ^= zexp(ol + *e);
                *e += xi;
                if *e >= 255 {
                    *e -= 255;
                }
            }
        }
        let mut den = [0u8; MAX_E];
        let mut ex = [0usize; MAX_E];
        let mut step = [0usize; MAX_E];
        for (st, &xi) in step.iter_mut().zip(xinv.iter()).take(l) {
            *st = (2 * xi) % 255;
        }
        for &ll in odd_log.iter().take(n_odd) {
            for ((d, e), &st) in den.iter_mut().zip(ex.iter_mut()).zip(step.iter()).take(l) {
                *d ^= zexp(ll + *e);
                *e += st;
                if *e >= 255 {
                    *e -= 255;
                }
            }
        }
        // X_k^(1-j0) = β^(p(1-j0)); 1 - j0 ≡ 256 - j0 (mod 255).
        let xexp = 256 - self.first_root;
        for (((v, &n), &d), &x) in c
            .val
            .iter_mut()
            .zip(num.iter())
            .zip(den.iter())
            .zip(xl.iter())
            .take(l)
        {
            if n == 0 || d == 0 {
                return None;
            }
            *v = gexp((x * xexp) % 255 + (glog(n) + 255 - glog(d)) % 255);
        }
        Some(())
    }

    /// The error pattern must reproduce every syndrome exactly.
    fn verify_scalar(&self, s: &[u8; MAX_ROOTS], c: &Correction) -> bool {
        let nr = self.nroots;
        let mut check = [0u8; MAX_ROOTS];
        for (&p, &v) in c.pos.iter().zip(c.val.iter()).take(c.count) {
            let xl = (BETA_LOG * p) % 255;
            let mut lg = (glog(v) + xl * self.first_root) % 255;
            for ch in check.iter_mut().take(nr) {
                *ch ^= gexp(lg);
                lg += xl;
                if lg >= 255 {
                    lg -= 255;
                }
            }
        }
        check.iter().zip(s.iter()).take(nr).all(|(a, b)| a == b)
    }

    fn apply(&self, block: &mut [u8], cw: usize, c: &Correction) {
        for (&p, &v) in c.pos.iter().zip(c.val.iter()).take(c.count) {
            // degree p = transmitted index n_t − 1 − t
            let Some(t) = (self.n_t - 1).checked_sub(p) else {
                continue;
            };
            if let Some(b) = block.get_mut(t * self.interleave + cw) {
                *b ^= wire(&self.to_wire, v);
            }
        }
    }

    /// Compute the parity of the data part of `block` (the first [`Self::data_len`] bytes,
    /// interleaved like the rest) and write it into the last [`Self::parity_len`] bytes.
    pub fn encode(&self, block: &mut [u8]) -> Result<(), Error> {
        self.check_len(block.len())?;
        let il = self.interleave;
        let enc = &self.synd.enc;
        // Remainder register per codeword, highest power first: byte j (little-endian within
        // the words) is the coefficient of x^(2E-1-j). Feeding a symbol shifts it down one
        // byte and adds fb·g(x) (one table row).
        let mut regs = [[0u64; 4]; MAX_INTERLEAVE];
        let (data, parity) = block.split_at_mut(self.data_len());
        for row in data.chunks_exact(il) {
            for (r, &sym) in regs.iter_mut().zip(row) {
                let fb = wire(&self.to_conv, sym) ^ (r[0] as u8);
                let g = enc_row(enc, fb);
                r[0] = ((r[0] >> 8) | (r[1] << 56)) ^ g[0];
                r[1] = ((r[1] >> 8) | (r[2] << 56)) ^ g[1];
                r[2] = ((r[2] >> 8) | (r[3] << 56)) ^ g[2];
                r[3] = (r[3] >> 8) ^ g[3];
            }
        }
        let mut bytes = [[0u8; MAX_ROOTS]; MAX_INTERLEAVE];
        for (b, r) in bytes.iter_mut().zip(regs.iter()) {
            for (dst, w) in b.chunks_exact_mut(8).zip(r) {
                dst.copy_from_slice(&w.to_le_bytes());
            }
        }
        for (t, row) in parity.chunks_exact_mut(il).enumerate() {
            for (b, out) in bytes.iter().zip(row.iter_mut()) {
                *out = wire(&self.to_wire, b.get(t).copied().unwrap_or(0));
            }
        }
        Ok(())
    }
}

/// Degree of a polynomial (lowest coefficient first); 0 for constants.
pub(super) fn degree(p: &[u8; MAX_ROOTS + 1]) -> usize {
    p.iter().rposition(|&c| c != 0).unwrap_or(0)
}

/// Berlekamp–Massey: shortest LFSR Λ (Λ_0 = 1) generating s_0..s_{nr-1} (`slog` = their
/// [`zlog`]s). Returns (Λ, L), or `None` as soon as L exceeds `e` (L never decreases).
pub(super) fn berlekamp_massey(
    s: &[u8; MAX_ROOTS],
    slog: &[usize; MAX_ROOTS],
    nr: usize,
    e: usize,
) -> Option<Locator> {
    let mut lam = [0u8; MAX_ROOTS + 1];
    lam[0] = 1;
    // B(x) in log form
    let mut blog = [usize::from(LOG_ZERO); MAX_ROOTS + 1];
    blog[0] = 0;
    let mut l = 0usize; // current LFSR length
    let mut lb = 0usize; // degree bound of B
    let mut m = 1usize; // shift of B
    let mut bd_log = 0usize; // log of the discrepancy when B was saved
    for (n, &sn) in s.iter().enumerate().take(nr) {
        let mut d = sn;
        let prev = slog.get(..n).unwrap_or(&[]);
        for (&li, &sl) in lam.iter().skip(1).take(l).zip(prev.iter().rev()) {
            d ^= zexp(zlog(li) + sl);
        }
        if d == 0 {
            m += 1;
            continue;
        }
        let dl = zlog(d);
        let mut coef = dl + 255 - bd_log;
        if coef >= 255 {
            coef -= 255;
        }
        if 2 * l <= n {
            let saved = lam;
            for (dst, &src) in lam.iter_mut().skip(m).zip(blog.iter().take(lb + 1)) {
                *dst ^= zexp(coef + src);
            }
            lb = l;
            l = n + 1 - l;
            if l > e {
                return None;
            }
            for (bl, &sv) in blog.iter_mut().zip(saved.iter()).take(lb + 1) {
                *bl = zlog(sv);
            }
            bd_log = dl;
            m = 1;
        } else {
            for (dst, &src) in lam.iter_mut().skip(m).zip(blog.iter().take(lb + 1)) {
                *dst ^= zexp(coef + src);
            }
            m += 1;
        }
    }
    Some(Locator {
        lam,
        l,
        omega_h: [0; MAX_E],
    })
}

/// Roots of Λ among the transmitted degrees p = 0..n_t: Λ(β^-p) = 0 means an error at
/// degree p. Writes the degrees (ascending) into `pos`; returns how many were found, stopping
/// once `deg` roots are found (Λ cannot have more).
pub(super) fn chien_scalar(
    lam: &[u8; MAX_ROOTS + 1],
    deg: usize,
    n_t: usize,
    pos: &mut [usize; MAX_E],
) -> usize {
    let mut cur = [0usize; MAX_E];
    let mut step = [0usize; MAX_E];
    let mut nterms = 0;
    for (i, &li) in lam.iter().enumerate().take(deg + 1).skip(1) {
        if li == 0 {
            continue;
        }
        if let (Some(c), Some(s)) = (cur.get_mut(nterms), step.get_mut(nterms)) {
            *c = glog(li);
            *s = (255 - (BETA_LOG * i) % 255) % 255;
            nterms += 1;
        }
    }
    let lam0 = lam[0];
    let mut found = 0;
    for p in 0..n_t {
        let mut v = lam0;
        for (c, &s) in cur.iter_mut().zip(step.iter()).take(nterms) {
            v ^= gexp(*c);
            *c += s;
            if *c >= 255 {
                *c -= 255;
            }
        }
        if v == 0 {
            if let Some(slot) = pos.get_mut(found) {
                *slot = p;
            }
            found += 1;
            if found >= deg {
                break;
            }
        }
    }
    found
}
