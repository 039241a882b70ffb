use super::codec::*;
use super::gf::*;
use super::*;

const VECTOR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/vectors/rs255_223_dualbasis_codeword.bin"
);
const PN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/vectors/ccsds_pn_255.bin"
);
const SNPP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/cadu/snpp_synchronized_cadus.dat"
);

/// splitmix64: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn nonzero_byte(&mut self) -> u8 {
        loop {
            let b = self.byte();
            if b != 0 {
                return b;
            }
        }
    }
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.byte();
        }
    }
}

fn params(e: u8, interleave: u8, virtual_fill: u8, basis: Basis) -> RsParams {
    RsParams {
        e,
        interleave,
        virtual_fill,
        basis,
    }
}

fn kernels() -> Vec<Kernel> {
    #[allow(unused_mut)] // only pushed to on x86_64
    let mut k = vec![Kernel::Scalar];
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        k.push(Kernel::Avx2);
    }
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        k.push(Kernel::Avx512Gfni);
    }
    k
}

/// A random valid block for `rs`.
fn random_block(rs: &ReedSolomon, rng: &mut Rng) -> Vec<u8> {
    let mut b = vec![0u8; rs.block_len()];
    rng.fill(&mut b);
    rs.encode(&mut b).unwrap();
    b
}

/// XOR `count` distinct transmitted symbols of codeword `cw` with non-zero values.
fn inject(rs: &ReedSolomon, block: &mut [u8], cw: usize, count: usize, rng: &mut Rng) {
    let il = rs.interleave;
    let mut chosen: Vec<usize> = Vec::new();
    while chosen.len() < count {
        let t = rng.below(rs.n_t);
        if !chosen.contains(&t) {
            chosen.push(t);
            block[t * il + cw] ^= rng.nonzero_byte();
        }
    }
}

/// Syndromes by direct evaluation r(β^(j0+i)) with Horner (reference).
fn naive_syndromes(rs: &ReedSolomon, block: &[u8], cw: usize) -> [u8; MAX_ROOTS] {
    let mut s = [0u8; MAX_ROOTS];
    for (i, si) in s.iter_mut().enumerate().take(rs.nroots) {
        let x = apow(BETA_LOG * (rs.first_root + i));
        let mut acc = 0u8;
        for t in 0..rs.n_t {
            let r = rs.to_conv[usize::from(block[t * rs.interleave + cw])];
            acc = gmul_slow(acc, x) ^ r;
        }
        *si = acc;
    }
    s
}

fn all_combos() -> Vec<RsParams> {
    let mut v = Vec::new();
    for e in [8u8, 16] {
        let max = RsParams::max_virtual_fill(e).unwrap();
        for il in 1..=8u8 {
            for fill in [0u8, 1, 15, 16, 17, 33, 100, max - 1, max] {
                for basis in [Basis::Dual, Basis::Conventional] {
                    v.push(params(e, il, fill, basis));
                }
            }
        }
    }
    v
}

// ----------------------------------------------------------------------------------------
// Field, basis and generator facts

#[test]
fn field_facts() {
    // α has order 255 (0x187 is primitive): all powers distinct and non-zero.
    let mut seen = [false; 256];
    for i in 0..255 {
        let x = GF.exp[i];
        assert_ne!(x, 0);
        assert!(!seen[usize::from(x)], "α^{i} repeats");
        seen[usize::from(x)] = true;
        assert_eq!(usize::from(GF.log[usize::from(x)]), i);
    }
    assert_eq!(GF.exp[255], 1);
    assert_eq!(GF.exp[8], 0x87, "α^8 = α^7+α^2+α+1");
    // β = α^11 is primitive too.
    let mut seen = [false; 256];
    for j in 0..255 {
        let x = apow(11 * j);
        assert!(!seen[usize::from(x)]);
        seen[usize::from(x)] = true;
    }
    // Table multiply equals shift-and-add multiply everywhere.
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            assert_eq!(gmul(a, b), gmul_slow(a, b), "{a} * {b}");
        }
    }
}

#[test]
fn dual_basis_is_the_blue_book_matrix() {
    // CCSDS 131.0-B-4 Annex F: rows of T_αℓ (conventional α^7..α^0 -> dual z0..z7).
    const T: [u8; 8] = [0x8d, 0xef, 0xec, 0x86, 0xfa, 0x99, 0xaf, 0x7b];
    for b in 0..8 {
        assert_eq!(conv_to_dual(1 << b), T[7 - b], "bit {b}");
    }
    let (to_dual, to_conv) = DUAL_TABLES;
    for x in 0..=255u8 {
        assert_eq!(to_conv[usize::from(to_dual[usize::from(x)])], x);
        // linear: dual(x) = XOR of rows for x's bits
        let mut d = 0;
        for b in 0..8 {
            if x >> b & 1 == 1 {
                d ^= T[7 - b];
            }
        }
        assert_eq!(to_dual[usize::from(x)], d);
    }
}

#[test]
fn generator_facts() {
    for (e, j0) in [(16u8, 112usize), (8, 120)] {
        let rs = ReedSolomon::new(params(e, 1, 0, Basis::Dual)).unwrap();
        let g = rs.generator();
        let nr = 2 * usize::from(e);
        assert_eq!(g.len(), nr + 1);
        assert_eq!(g[nr], 1, "monic");
        // roots β^j, j = 128-E ..= 127+E, and not the neighbours
        let eval = |x: u8| g.iter().rev().fold(0u8, |acc, &c| gmul_slow(acc, x) ^ c);
        for j in j0..j0 + nr {
            assert_eq!(eval(apow(11 * j)), 0, "E={e} root j={j}");
        }
        assert_ne!(eval(apow(11 * (j0 - 1))), 0);
        assert_ne!(eval(apow(11 * (j0 + nr))), 0);
        // roots come in reciprocal pairs (j + (255 - j)), so g is palindromic
        for i in 0..=nr {
            assert_eq!(g[i], g[nr - i], "E={e} coefficient {i}");
        }
    }
    let rs = ReedSolomon::new(params(16, 1, 0, Basis::Dual)).unwrap();
    assert_eq!(rs.first_root, 112);
    // The widely published log_α coefficients of the CCSDS E=16 generator in the
    // conventional basis, from x^32 downwards (the rest follows by symmetry).
    let logs = [
        0usize, 249, 59, 66, 4, 43, 126, 251, 97, 30, 3, 213, 50, 66, 170, 5, 24,
    ];
    for (i, &lg) in logs.iter().enumerate() {
        assert_eq!(rs.generator()[32 - i], apow(lg), "g_{}", 32 - i);
    }
}

// ----------------------------------------------------------------------------------------
// Test vectors and real data

#[test]
fn dual_basis_vector_is_clean_and_reencodes() {
    let cw = std::fs::read(VECTOR).unwrap();
    assert_eq!(cw.len(), 255);
    let rs = ReedSolomon::new(params(16, 1, 0, Basis::Dual)).unwrap();
    for k in kernels() {
        let mut b = cw.clone();
        let out = rs.decode_with(&mut b, k).unwrap();
        assert_eq!(out.codewords(), &[CodewordOutcome::Clean]);
        assert!(out.is_clean());
        assert_eq!(b, cw);
    }
    let mut b = cw.clone();
    b[223..].fill(0);
    rs.encode(&mut b).unwrap();
    assert_eq!(&b[223..], &cw[223..], "parity reproduced");
    // The same bytes are not a codeword in the conventional basis.
    let conv = ReedSolomon::new(params(16, 1, 0, Basis::Conventional)).unwrap();
    let mut b = cw.clone();
    assert!(!conv.decode(&mut b).unwrap().is_clean());
}

#[test]
fn pn_sequence_is_a_codeword_in_both_bases() {
    // STYLE.md: "the 255-byte sequence is itself a valid RS codeword".
    let pn = std::fs::read(PN).unwrap();
    assert_eq!(pn.len(), 255);
    assert_eq!(&pn[..8], &[0xff, 0x48, 0x0e, 0xc0, 0x9a, 0x0d, 0x70, 0xbc]);
    for basis in [Basis::Dual, Basis::Conventional] {
        let rs = ReedSolomon::new(params(16, 1, 0, basis)).unwrap();
        let mut b = pn.clone();
        assert!(rs.decode(&mut b).unwrap().is_clean(), "{basis:?}");
    }
}

fn snpp_frames() -> Vec<Vec<u8>> {
    let data = std::fs::read(SNPP).unwrap();
    let pn = std::fs::read(PN).unwrap();
    assert_eq!(data.len(), 65 * 1024);
    data.chunks_exact(1024)
        .map(|cadu| {
            assert_eq!(&cadu[..4], &[0x1a, 0xcf, 0xfc, 0x1d], "ASM");
            cadu[4..]
                .iter()
                .enumerate()
                .map(|(k, &b)| b ^ pn[k % 255])
                .collect()
        })
        .collect()
}

#[test]
fn snpp_real_frames_decode_clean() {
    let rs = ReedSolomon::new(params(16, 4, 0, Basis::Dual)).unwrap();
    assert_eq!(rs.block_len(), 1020);
    assert_eq!(rs.data_len(), 892);
    assert_eq!(rs.parity_len(), 128);
    let frames = snpp_frames();
    assert_eq!(frames.len(), 65);
    for k in kernels() {
        for (n, f) in frames.iter().enumerate() {
            let mut b = f.clone();
            let out = rs.decode_with(&mut b, k).unwrap();
            assert_eq!(
                out.codewords(),
                &[CodewordOutcome::Clean; 4],
                "frame {n} {k:?}"
            );
            assert_eq!(&b, f);
            // AOS version 01, SCID 157, VCID 16 after derandomization
            assert_eq!(b[0] >> 6, 1);
            assert_eq!(((b[0] & 0x3f) << 2) | (b[1] >> 6), 157);
            assert_eq!(b[1] & 0x3f, 16);
        }
    }
    // Re-encoding the real data part reproduces the transmitted parity.
    for f in &frames {
        let mut b = f.clone();
        b[892..].fill(0);
        rs.encode(&mut b).unwrap();
        assert_eq!(&b, f);
    }
    // STYLE.md fact: the PN sequence (also interleaved 4 deep) is a codeword, so the
    // still-randomized frames decode Clean too — RS success does not prove derandomization
    // (the header check above does).
    let data = std::fs::read(SNPP).unwrap();
    for cadu in data.chunks_exact(1024) {
        let mut raw = cadu[4..].to_vec();
        assert!(rs.decode(&mut raw).unwrap().is_clean());
        assert_ne!(((raw[0] & 0x3f) << 2) | (raw[1] >> 6), 157);
    }
}

/// The four 1 MiB X-band captures (ASM not byte-aligned, shift from data/README.md):
/// all 1023 whole CADUs of each decode Clean (16,368 real codewords).
#[test]
fn real_xband_captures_decode_clean() {
    let rs = ReedSolomon::new(params(16, 4, 0, Basis::Dual)).unwrap();
    let pn = std::fs::read(PN).unwrap();
    for (file, shift) in [
        ("aqua.20241206T175646.dat", 1u32),
        ("metopb.20241206T152751.dat", 6),
        ("noaa20.20241206T162710.dat", 1),
        ("npp.20241206T173815.dat", 2),
    ] {
        let path = format!(
            "{}/../../shared/data/cadu/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let raw = std::fs::read(path).unwrap();
        let bytes: Vec<u8> = raw
            .windows(2)
            .map(|w| (w[0] << shift) | (w[1] >> (8 - shift)))
            .collect();
        let asm = [0x1a, 0xcf, 0xfc, 0x1d];
        let start = bytes.windows(4).position(|w| w == asm).unwrap();
        let mut cadus = 0;
        for cadu in bytes[start..].chunks_exact(1024) {
            assert_eq!(cadu[..4], asm, "{file}: CADU {cadus} ASM");
            let mut frame: Vec<u8> = cadu[4..]
                .iter()
                .enumerate()
                .map(|(k, &b)| b ^ pn[k % 255])
                .collect();
            let out = rs.decode(&mut frame).unwrap();
            assert!(out.is_clean(), "{file}: CADU {cadus}: {out:?}");
            cadus += 1;
        }
        assert_eq!(cadus, 1023, "{file}");
    }
}

#[test]
fn degenerate_blocks_do_not_panic_and_kernels_agree() {
    for p in all_combos() {
        let rs = ReedSolomon::new(p).unwrap();
        for fill in [0x00u8, 0xff, 0x01, 0x80, 0x55] {
            let block = vec![fill; rs.block_len()];
            let mut results = Vec::new();
            for k in kernels() {
                let mut b = block.clone();
                let out = rs.decode_with(&mut b, k).unwrap();
                if fill == 0 {
                    assert!(out.is_clean(), "all-zero block is a codeword");
                }
                results.push((out, b));
            }
            assert!(results.windows(2).all(|w| w[0] == w[1]), "{p:?} {fill:#x}");
        }
    }
}

#[test]
fn snpp_real_frames_with_injected_errors_are_restored() {
    let rs = ReedSolomon::new(params(16, 4, 0, Basis::Dual)).unwrap();
    let mut rng = Rng(0x5EED_0001);
    for k in kernels() {
        for (n, f) in snpp_frames().iter().enumerate() {
            let counts = [n % 17, 16, (n * 7) % 17, 1];
            let mut b = f.clone();
            for (cw, &c) in counts.iter().enumerate() {
                inject(&rs, &mut b, cw, c, &mut rng);
            }
            let out = rs.decode_with(&mut b, k).unwrap();
            for (cw, &c) in counts.iter().enumerate() {
                let want = if c == 0 {
                    CodewordOutcome::Clean
                } else {
                    CodewordOutcome::Corrected { symbols: c as u8 }
                };
                assert_eq!(out.codewords()[cw], want, "frame {n} cw {cw}");
            }
            assert_eq!(out.corrected_symbols(), counts.iter().sum::<usize>() as u32);
            assert_eq!(&b, f, "frame {n} restored");
        }
    }
}

// ----------------------------------------------------------------------------------------
// Random round trips

#[test]
fn encode_produces_codewords_for_all_combos() {
    let mut rng = Rng(1);
    for p in all_combos() {
        let rs = ReedSolomon::new(p).unwrap();
        assert_eq!(rs.block_len(), rs.data_len() + rs.parity_len());
        assert_eq!(
            rs.block_len(),
            usize::from(p.interleave) * (255 - usize::from(p.virtual_fill))
        );
        let b = random_block(&rs, &mut rng);
        for cw in 0..usize::from(p.interleave) {
            assert_eq!(naive_syndromes(&rs, &b, cw), [0; 32], "{p:?} cw {cw}");
        }
        for k in kernels() {
            let mut c = b.clone();
            assert!(rs.decode_with(&mut c, k).unwrap().is_clean(), "{p:?}");
            assert_eq!(c, b);
        }
    }
}

#[test]
fn up_to_e_errors_are_corrected_for_all_combos() {
    let mut rng = Rng(2);
    for p in all_combos() {
        let rs = ReedSolomon::new(p).unwrap();
        let e = usize::from(p.e);
        let il = usize::from(p.interleave);
        for trial in 0..6 {
            let orig = random_block(&rs, &mut rng);
            let mut b = orig.clone();
            let counts: Vec<usize> = (0..il)
                .map(|cw| match (trial + cw) % 3 {
                    0 => e,
                    1 => rng.below(e + 1),
                    _ => 1 + rng.below(e),
                })
                .collect();
            for (cw, &c) in counts.iter().enumerate() {
                inject(&rs, &mut b, cw, c, &mut rng);
            }
            let corrupted = b.clone();
            for k in kernels() {
                let mut d = corrupted.clone();
                let out = rs.decode_with(&mut d, k).unwrap();
                assert_eq!(out.codewords().len(), il);
                for (cw, &c) in counts.iter().enumerate() {
                    let want = if c == 0 {
                        CodewordOutcome::Clean
                    } else {
                        CodewordOutcome::Corrected { symbols: c as u8 }
                    };
                    assert_eq!(out.codewords()[cw], want, "{p:?} {k:?} cw {cw}");
                }
                assert!(!out.is_uncorrectable());
                assert_eq!(out.corrected_symbols(), counts.iter().sum::<usize>() as u32);
                assert_eq!(d, orig, "{p:?} {k:?} restored");
            }
        }
    }
}

#[test]
fn errors_in_parity_and_at_the_ends() {
    let mut rng = Rng(3);
    for p in [
        params(16, 4, 0, Basis::Dual),
        params(16, 1, 222, Basis::Dual),
        params(8, 5, 7, Basis::Conventional),
        params(8, 8, 238, Basis::Dual),
    ] {
        let rs = ReedSolomon::new(p).unwrap();
        let il = rs.interleave;
        let e = usize::from(p.e);
        let orig = random_block(&rs, &mut rng);
        // every symbol of the block alone, including first and last
        for pos in 0..rs.block_len() {
            let mut b = orig.clone();
            b[pos] ^= rng.nonzero_byte();
            let out = rs.decode(&mut b).unwrap();
            assert_eq!(
                out.codewords()[pos % il],
                CodewordOutcome::Corrected { symbols: 1 }
            );
            assert_eq!(out.corrected_symbols(), 1);
            assert_eq!(b, orig, "{p:?} pos {pos}");
        }
        // all E errors in the parity part of each codeword; first+last symbols
        let mut b = orig.clone();
        for cw in 0..il {
            for t in rs.k_t..rs.k_t + e {
                b[t * il + cw] ^= rng.nonzero_byte();
            }
        }
        let out = rs.decode(&mut b).unwrap();
        assert_eq!(out.corrected_symbols() as usize, e * il);
        assert_eq!(b, orig);
        let mut b = orig.clone();
        for cw in 0..il {
            b[cw] ^= 0xff;
            b[(rs.n_t - 1) * il + cw] ^= 0x01;
        }
        let out = rs.decode(&mut b).unwrap();
        assert!(out
            .codewords()
            .iter()
            .all(|c| *c == CodewordOutcome::Corrected { symbols: 2 }));
        assert_eq!(b, orig);
    }
}

/// Beyond capacity: never Clean, an Uncorrectable codeword is left unchanged, and a claimed
/// correction is honest (it yields a codeword and changes exactly `symbols` bytes) — a
/// miscorrection to a *different* codeword is legitimate but must be rare.
#[test]
fn beyond_capacity_is_detected_or_honestly_miscorrected() {
    let mut rng = Rng(4);
    let mut report = Vec::new();
    for (p, counts, trials) in [
        (
            params(16, 4, 0, Basis::Dual),
            vec![17usize, 20, 40, 120],
            150,
        ),
        (params(16, 1, 200, Basis::Dual), vec![17, 18, 30], 300),
        (params(8, 4, 0, Basis::Conventional), vec![9, 10, 40], 600),
        (params(8, 2, 230, Basis::Dual), vec![9, 12, 20], 600),
    ] {
        let rs = ReedSolomon::new(p).unwrap();
        let il = rs.interleave;
        for &count in &counts {
            let (mut unc, mut mis) = (0usize, 0usize);
            for _ in 0..trials {
                let orig = random_block(&rs, &mut rng);
                let mut b = orig.clone();
                for cw in 0..il {
                    inject(&rs, &mut b, cw, count.min(rs.n_t), &mut rng);
                }
                let corrupted = b.clone();
                let out = rs.decode(&mut b).unwrap();
                for (cw, o) in out.codewords().iter().enumerate() {
                    let changed = (0..rs.n_t)
                        .filter(|t| b[t * il + cw] != corrupted[t * il + cw])
                        .count();
                    match *o {
                        CodewordOutcome::Clean => panic!("{p:?} {count} errors called Clean"),
                        CodewordOutcome::Uncorrectable => {
                            unc += 1;
                            assert_eq!(changed, 0, "uncorrectable codeword modified");
                        }
                        CodewordOutcome::Corrected { symbols } => {
                            mis += 1;
                            assert!(usize::from(symbols) <= usize::from(p.e));
                            assert_eq!(changed, usize::from(symbols), "honest count");
                            assert_eq!(naive_syndromes(&rs, &b, cw), [0; 32], "a codeword");
                            let differs = (0..rs.n_t).any(|t| b[t * il + cw] != orig[t * il + cw]);
                            assert!(differs, "cannot restore the original beyond capacity");
                        }
                    }
                }
            }
            let total = unc + mis;
            report.push(format!(
                "E={} n={} errors={count}: {mis}/{total} miscorrected",
                p.e, rs.n_t
            ));
            // RS(255,223): ~1/16! per codeword; RS(255,239): ~1/8! (~2.5e-5)
            assert!(
                mis * 100 <= total,
                "{p:?} {count}: {mis}/{total} miscorrections"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

/// A word at distance 17 from the sent codeword but 16 from another one must decode to
/// the other (nearest) codeword: a legitimate miscorrection, reported honestly.
#[test]
fn nearest_codeword_beyond_capacity_is_a_reported_miscorrection() {
    let mut rng = Rng(9);
    for (basis, fill) in [
        (Basis::Dual, 0u8),
        (Basis::Conventional, 0),
        (Basis::Dual, 150),
    ] {
        let rs = ReedSolomon::new(params(16, 1, fill, basis)).unwrap();
        let g = rs.generator().to_vec();
        assert!(g.iter().all(|&c| c != 0), "g has weight 33");
        for shift in [0usize, 7, rs.k_t - 1] {
            let orig = random_block(&rs, &mut rng);
            // other = orig + x^shift·g(x): a codeword at distance 33
            let mut other = orig.clone();
            for (i, &gi) in g.iter().enumerate() {
                let t = rs.n_t - 1 - (shift + i);
                other[t] ^= rs.to_wire[usize::from(gi)];
            }
            for k in kernels() {
                let mut b = orig.clone();
                // move 17 of the 33 differing symbols towards `other`
                for i in 0..17 {
                    let t = rs.n_t - 1 - (shift + 2 * i);
                    b[t] = other[t];
                }
                let out = rs.decode_with(&mut b, k).unwrap();
                assert_eq!(
                    out.codewords(),
                    &[CodewordOutcome::Corrected { symbols: 16 }]
                );
                assert_eq!(b, other, "{basis:?} shift {shift} {k:?}");
            }
        }
    }
}

#[test]
fn errors_in_the_virtual_fill_region_are_uncorrectable() {
    // A codeword of the unshortened code whose leading (fill) symbols are not all zero
    // looks, to the shortened decoder, like errors in untransmitted positions.
    let mut rng = Rng(5);
    for (e, fill, il) in [(16u8, 40u8, 2usize), (8, 100, 3), (16, 1, 1)] {
        for basis in [Basis::Dual, Basis::Conventional] {
            let full = ReedSolomon::new(params(e, il as u8, 0, basis)).unwrap();
            let short = ReedSolomon::new(params(e, il as u8, fill, basis)).unwrap();
            let f = usize::from(fill);
            for extra in [0usize, 2] {
                let mut b = vec![0u8; full.block_len()];
                rng.fill(&mut b[f * il..]);
                for cw in 0..il {
                    // 1..=min(3, fill) non-zero symbols inside the fill region
                    for k in 0..f.min(3) {
                        b[rng.below(f) * il + cw] = rng.nonzero_byte() | 1 << k;
                    }
                }
                full.encode(&mut b).unwrap();
                let mut tx = b[f * il..].to_vec();
                for cw in 0..il {
                    inject(&short, &mut tx, cw, extra, &mut rng);
                }
                let before = tx.clone();
                for k in kernels() {
                    let mut d = before.clone();
                    let out = short.decode_with(&mut d, k).unwrap();
                    assert!(
                        out.codewords()
                            .iter()
                            .all(|c| *c == CodewordOutcome::Uncorrectable),
                        "E={e} fill={fill} {basis:?} {k:?}: {out:?}"
                    );
                    assert!(out.is_uncorrectable());
                    assert_eq!(out.uncorrectable_codewords(), il);
                    assert_eq!(d, before, "left unchanged");
                }
            }
        }
    }
}

#[test]
fn wrong_lengths_and_bad_params_are_errors() {
    let rs = ReedSolomon::new(params(16, 4, 0, Basis::Dual)).unwrap();
    for len in [0usize, 1, 1019, 1021, 1024, 255] {
        let mut b = vec![0u8; len];
        assert_eq!(
            rs.decode(&mut b),
            Err(Error::RsWrongLength {
                expected: 1020,
                got: len
            })
        );
        assert_eq!(
            rs.encode(&mut b),
            Err(Error::RsWrongLength {
                expected: 1020,
                got: len
            })
        );
    }
    let short = ReedSolomon::new(params(8, 3, 10, Basis::Dual)).unwrap();
    assert_eq!(short.block_len(), 3 * 245);
    assert_eq!(short.data_len(), 3 * 229);
    assert_eq!(short.parity_len(), 48);
    let mut b = vec![0u8; 3 * 255];
    assert_eq!(
        short.decode(&mut b),
        Err(Error::RsWrongLength {
            expected: 735,
            got: 765
        })
    );

    assert_eq!(
        ReedSolomon::new(params(10, 4, 0, Basis::Dual)).err(),
        Some(Error::RsInvalidE { e: 10 })
    );
    assert_eq!(
        ReedSolomon::new(params(0, 4, 0, Basis::Dual)).err(),
        Some(Error::RsInvalidE { e: 0 })
    );
    for il in [0u8, 9, 255] {
        assert_eq!(
            ReedSolomon::new(params(16, il, 0, Basis::Dual)).err(),
            Some(Error::RsInvalidInterleave { interleave: il })
        );
    }
    assert_eq!(
        ReedSolomon::new(params(16, 1, 223, Basis::Dual)).err(),
        Some(Error::RsInvalidVirtualFill {
            virtual_fill: 223,
            max: 222,
            e: 16
        })
    );
    assert_eq!(
        ReedSolomon::new(params(8, 1, 239, Basis::Dual)).err(),
        Some(Error::RsInvalidVirtualFill {
            virtual_fill: 239,
            max: 238,
            e: 8
        })
    );
    assert!(ReedSolomon::new(params(8, 8, 238, Basis::Conventional)).is_ok());
    assert_eq!(
        Error::RsInvalidInterleave { interleave: 9 }.to_string(),
        "Reed-Solomon interleave depth must be 1..=8, got 9"
    );
    let rs = ReedSolomon::new(params(16, 4, 3, Basis::Conventional)).unwrap();
    assert_eq!(rs.params(), params(16, 4, 3, Basis::Conventional));
}

// ----------------------------------------------------------------------------------------
// Kernels agree

#[test]
fn syndrome_kernels_agree_with_direct_evaluation() {
    let mut rng = Rng(6);
    for p in all_combos() {
        let rs = ReedSolomon::new(p).unwrap();
        let mut b = vec![0u8; rs.block_len()];
        rng.fill(&mut b);
        let il = rs.interleave;
        let mut want = [[0u8; 32]; 8];
        for (cw, w) in want.iter_mut().enumerate().take(il) {
            *w = naive_syndromes(&rs, &b, cw);
        }
        for k in kernels() {
            let mut got = [[0u8; 32]; 8];
            let mask = rs.syndromes(&b, &mut got, k);
            assert_eq!(got, want, "{p:?} {k:?}");
            let want_mask = (0..il)
                .filter(|&c| want[c] != [0; 32])
                .fold(0u8, |m, c| m | 1 << c);
            assert_eq!(mask, want_mask);
        }
    }
}

#[test]
fn scalar_and_avx2_decode_identically() {
    let ks = kernels();
    if ks.len() < 2 {
        eprintln!("AVX2 not available: only the scalar kernel is exercised");
    }
    let mut rng = Rng(7);
    for p in all_combos() {
        let rs = ReedSolomon::new(p).unwrap();
        let e = usize::from(p.e);
        for trial in 0..4 {
            let mut b = if trial == 0 {
                // pure garbage: almost always uncorrectable
                let mut g = vec![0u8; rs.block_len()];
                rng.fill(&mut g);
                g
            } else {
                let mut b = random_block(&rs, &mut rng);
                for cw in 0..rs.interleave {
                    let n = rng.below(2 * e + 2);
                    inject(&rs, &mut b, cw, n, &mut rng);
                }
                b
            };
            let scalar = {
                let mut d = b.clone();
                (rs.decode_with(&mut d, Kernel::Scalar).unwrap(), d)
            };
            for &k in &ks {
                let mut d = b.clone();
                let out = rs.decode_with(&mut d, k).unwrap();
                assert_eq!((out, d), scalar, "{p:?} {k:?}");
            }
            // the public switches
            let rs3 = ReedSolomon::new(p).unwrap().without_avx512();
            assert!(!rs3.uses_avx512());
            #[cfg(target_arch = "x86_64")]
            assert_eq!(rs3.uses_simd(), std::is_x86_feature_detected!("avx2"));
            let mut d = b.clone();
            assert_eq!(rs3.decode(&mut d).unwrap(), scalar.0);
            assert_eq!(d, scalar.1);
            let rs2 = ReedSolomon::new(p).unwrap().without_simd();
            assert!(!rs2.uses_simd());
            assert!(!rs2.uses_avx512());
            assert_eq!(rs2.decode(&mut b).unwrap(), scalar.0);
            assert_eq!(b, scalar.1);
        }
    }
}

/// The bit-matrix layout of the GFNI kernel against the instruction: multiplication by every
/// constant of GF(2^8) and both basis changes, for every byte.
#[test]
fn gfni_matrices_multiply_like_the_field() {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        let (to_dual, to_conv) = DUAL_TABLES;
        let mut maps: Vec<Box<dyn Fn(u8) -> u8>> = vec![
            Box::new(move |x| to_dual[usize::from(x)]),
            Box::new(move |x| to_conv[usize::from(x)]),
        ];
        for c in 0..=255u8 {
            maps.push(Box::new(move |x| gmul_slow(x, c)));
        }
        for f in &maps {
            let m = avx512::matrix(f);
            for chunk in 0..4u8 {
                let x: [u8; 64] = std::array::from_fn(|k| chunk * 64 + k as u8);
                let y = avx512::affine_bytes(m, &x);
                for (a, b) in x.iter().zip(y.iter()) {
                    assert_eq!(*b, f(*a), "{a:#x}");
                }
            }
        }
        return;
    }
    eprintln!("AVX-512 F/BW/VBMI + GFNI not available: GF2P8AFFINEQB matrices not exercised");
}

/// Every available kernel (the AVX-512/GFNI one where the CPU has it) against the scalar one:
/// syndromes (all I codewords, stale entries beyond I untouched), mask and whole decodes, for
/// every E, interleave, basis and a virtual fill of every residue mod 8 (the AVX-512 kernel
/// pads codewords to a multiple of 8), on clean blocks, blocks with 1..=E (and more) errors
/// per codeword, garbage and constant blocks.
#[test]
fn avx512_syndromes_and_decodes_equal_scalar() {
    let ks = kernels();
    #[cfg(target_arch = "x86_64")]
    let avx512 = avx512::available();
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    if !avx512 {
        eprintln!(
            "AVX-512 F/BW/VBMI + GFNI not available: the AVX-512/GFNI syndrome kernel is not \
             exercised, only {ks:?} against each other"
        );
    }
    let mut rng = Rng(11);
    for e in [8u8, 16] {
        let max = RsParams::max_virtual_fill(e).unwrap();
        let mut fills: Vec<u8> = (0..=9).collect();
        fills.extend([15, 16, 17, 33, 100, max - 8, max - 1, max]);
        for il in 1..=8u8 {
            for &fill in &fills {
                for basis in [Basis::Dual, Basis::Conventional] {
                    let p = params(e, il, fill, basis);
                    let rs = ReedSolomon::new(p).unwrap();
                    assert_eq!(rs.uses_avx512(), avx512, "{p:?}");
                    let eu = usize::from(e);
                    for trial in 0..8 {
                        let b = match trial {
                            0 => random_block(&rs, &mut rng),
                            1 => {
                                let mut g = vec![0u8; rs.block_len()];
                                rng.fill(&mut g);
                                g
                            }
                            2 => vec![0xff; rs.block_len()],
                            3 => vec![0; rs.block_len()],
                            _ => {
                                let mut b = random_block(&rs, &mut rng);
                                for cw in 0..rs.interleave {
                                    // 1..=E errors, sometimes none or more than E
                                    let n = match (trial + cw) % 4 {
                                        0 => 0,
                                        1 => eu + 1 + rng.below(eu),
                                        _ => 1 + rng.below(eu),
                                    };
                                    inject(&rs, &mut b, cw, n, &mut rng);
                                }
                                b
                            }
                        };
                        // the same stale contents in every output
                        let mut stale = [[0u8; 32]; 8];
                        for w in stale.iter_mut() {
                            rng.fill(w);
                        }
                        let mut want = stale;
                        let want_mask = rs.syndromes(&b, &mut want, Kernel::Scalar);
                        if trial == 0 || trial == 3 {
                            assert_eq!(want_mask, 0, "{p:?} codeword");
                        }
                        let mut want_dec = b.clone();
                        let want_out = rs.decode_with(&mut want_dec, Kernel::Scalar).unwrap();
                        for &k in ks.iter().filter(|k| **k != Kernel::Scalar) {
                            let mut got = stale;
                            let got_mask = rs.syndromes(&b, &mut got, k);
                            assert_eq!(got, want, "{p:?} {k:?} trial {trial}");
                            assert_eq!(got_mask, want_mask, "{p:?} {k:?} trial {trial}");
                            let mut d = b.clone();
                            let out = rs.decode_with(&mut d, k).unwrap();
                            assert_eq!((out, d), (want_out, want_dec.clone()), "{p:?} {k:?}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn ribm_agrees_with_berlekamp_massey() {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        let mut rng = Rng(10);
        let mut checked = 0;
        for trial in 0..20000 {
            let t = if trial % 2 == 0 { 16 } else { 8 };
            let nr = 2 * t;
            let mut s = [0u8; 32];
            if trial % 4 < 2 {
                // syndromes of a random error pattern of weight <= t+2
                let w = 1 + rng.below(t + 2);
                for _ in 0..w {
                    let p = rng.below(255);
                    let v = rng.nonzero_byte();
                    for (i, si) in s.iter_mut().enumerate().take(nr) {
                        *si ^= gmul(v, apow(11 * p * (128 - t + i)));
                    }
                }
            } else {
                // arbitrary syndromes, sometimes sparse
                for si in s.iter_mut().take(nr) {
                    *si = if rng.below(4) == 0 { 0 } else { rng.byte() };
                }
            }
            let mut slog = [usize::from(LOG_ZERO); 32];
            for i in 0..nr {
                slog[i] = zlog(s[i]);
            }
            let bm = berlekamp_massey(&s, &slog, nr, t);
            let ri = avx2::ribm(&s, t);
            match (bm, ri) {
                (None, None) => {}
                (Some(b), Some(r)) => {
                    let (lb, l1, lr, l2) = (b.lam, b.l, r.lam, r.l);
                    assert_eq!(l1, l2, "linear complexity");
                    assert_eq!(lb[0], 1);
                    let c = lr[0];
                    assert_ne!(c, 0);
                    for i in 0..33 {
                        assert_eq!(gmul(lb[i], c), lr[i], "trial {trial} coefficient {i}");
                    }
                    checked += 1;
                }
                (b, r) => panic!(
                    "trial {trial}: BM and riBM disagree on L <= t: {:?} {:?}",
                    b.map(|x| x.l),
                    r.map(|x| x.l)
                ),
            }
        }
        assert!(checked > 5000);
        return;
    }
    eprintln!("AVX2 not available: riBM (AVX2-only) not exercised");
}

#[test]
fn chien_kernels_agree_on_random_polynomials() {
    let mut rng = Rng(8);
    for _ in 0..3000 {
        let deg = 1 + rng.below(16);
        let mut lam = [0u8; 33];
        lam[0] = 1;
        // product of distinct (1 - X x) factors, sometimes with a random perturbation
        let mut roots = Vec::new();
        while roots.len() < deg {
            let p = rng.below(255);
            if !roots.contains(&p) {
                roots.push(p);
            }
        }
        for &p in &roots {
            let x = apow(11 * p);
            let mut prev = 0u8;
            for c in lam.iter_mut().take(deg + 1) {
                let old = *c;
                *c = old ^ gmul(x, prev);
                prev = old;
            }
        }
        if rng.below(3) == 0 {
            lam[1 + rng.below(deg)] ^= rng.nonzero_byte();
        }
        let n_t = 17 + rng.below(239);
        let mut ps = [0usize; 16];
        let ns = chien_scalar(&lam, deg, n_t, &mut ps);
        let mut expect: Vec<usize> = (0..n_t)
            .filter(|&p| {
                let x = apow(255 * 11 - 11 * p);
                lam.iter().rev().fold(0u8, |a, &c| gmul(a, x) ^ c) == 0
            })
            .collect();
        expect.truncate(deg);
        assert_eq!(&ps[..ns.min(16)], &expect[..], "scalar");
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            let mut pa = [0usize; 16];
            let na = avx2::chien(&lam, deg, n_t, &mut pa);
            assert_eq!(na, ns);
            assert_eq!(pa, ps);
        }
    }
}

// ----------------------------------------------------------------------------------------
// Misc

#[test]
fn block_outcome_accessors() {
    let mut o = BlockOutcome::new(3);
    assert!(o.is_clean());
    assert!(!o.is_uncorrectable());
    assert_eq!(o.codewords().len(), 3);
    o.codewords[1] = CodewordOutcome::Corrected { symbols: 5 };
    o.codewords[2] = CodewordOutcome::Corrected { symbols: 16 };
    assert!(!o.is_clean());
    assert!(!o.is_uncorrectable());
    assert_eq!(o.corrected_symbols(), 21);
    o.codewords[0] = CodewordOutcome::Uncorrectable;
    assert!(o.is_uncorrectable());
    assert_eq!(o.uncorrectable_codewords(), 1);
    // entries beyond I are not reported
    o.codewords[5] = CodewordOutcome::Uncorrectable;
    assert_eq!(o.uncorrectable_codewords(), 1);
}

#[test]
fn decoder_is_send_sync_and_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ReedSolomon>();
    let rs = ReedSolomon::new(params(16, 4, 0, Basis::Dual)).unwrap();
    let frames = snpp_frames();
    std::thread::scope(|s| {
        for chunk in frames.chunks(20) {
            let rs = &rs;
            s.spawn(move || {
                for f in chunk {
                    let mut b = f.clone();
                    assert!(rs.decode(&mut b).unwrap().is_clean());
                }
            });
        }
    });
}

/// A block sent XORed with a mask (the PN sequence, or any other) is clean as it stands exactly
/// when the block with the mask removed decodes clean: for every parameter set and kernel, on
/// clean codewords and on codewords with 1..=E errors anywhere (data or parity).
#[test]
fn masked_check_is_decode_of_the_unmasked_block() {
    let mut rng = Rng(14);
    for p in all_combos() {
        let rs = ReedSolomon::new(p).unwrap();
        let len = rs.block_len();
        let pn = crate::pn::Derandomizer::new(len);
        let mut pn_mask = vec![0u8; len];
        pn.apply(&mut pn_mask);
        let mut random_mask = vec![0u8; len];
        rng.fill(&mut random_mask);
        for mask in [pn_mask, random_mask, vec![0u8; len]] {
            let check = rs.masked_check(&mask).unwrap();
            for k in kernels() {
                for errors in [0usize, 1, usize::from(p.e)] {
                    let mut b = random_block(&rs, &mut rng);
                    if errors > 0 {
                        let cw = rng.below(rs.interleave);
                        inject(&rs, &mut b, cw, errors, &mut rng);
                    }
                    let sent: Vec<u8> = b.iter().zip(&mask).map(|(x, m)| x ^ m).collect();
                    let clean = rs.decode_with(&mut b.clone(), k).unwrap().is_clean();
                    assert_eq!(clean, errors == 0, "{p:?} {k:?}");
                    assert_eq!(
                        rs.is_clean_masked_with(&sent, &check, k),
                        clean,
                        "{p:?} {k:?} {errors} errors"
                    );
                }
            }
        }
        assert!(rs.masked_check(&[0u8; 3]).is_err());
        let check = rs.masked_check(&vec![0u8; len]).unwrap();
        let b = random_block(&rs, &mut rng);
        assert!(rs.is_clean_masked(&b, &check));
        assert!(
            !rs.is_clean_masked(&b[1..], &check),
            "a short block is never clean"
        );
        assert!(rs.clean_outcome().is_clean());
        assert_eq!(rs.clean_outcome().codewords().len(), rs.interleave);
    }
}
