//! Benchmark inputs: streams of 1024-byte CADUs cut from a real capture, with an exact number of
//! byte errors injected into every Reed–Solomon codeword.
//!
//! Layout assumed (CCSDS 131.0-B-5, TM Synchronization and Channel Coding):
//! - §9 / §10: a CADU is the 4-byte attached sync marker `1ACFFC1D` followed by the randomized
//!   frame; the pseudo-randomizer (§10) XORs the whole 1020-byte frame, parity included, with a
//!   255-byte periodic sequence.
//! - §4.3 (Reed–Solomon, interleaving): RS(255,223), E = 16, interleave depth I = 4. Frame byte
//!   `k` (byte 0 = first byte after the ASM) belongs to codeword `k % 4`, where it is symbol
//!   `k / 4`. Each codeword therefore owns exactly 255 of the 1020 frame bytes.
//!
//! Errors are injected in the on-air (randomized) domain. Because the randomizer is a per-byte XOR,
//! an error of value `e` at byte `k` is still an error of value `e` at byte `k` after
//! derandomization, so "8 byte errors per codeword" means the same thing before and after PN.
//! The ASM itself is never touched, so every CADU stays findable by an exact-match synchronizer.
//!
//! No dependencies, no IO: callers read the capture themselves (see [`extract_aligned_cadus`]).

/// The CCSDS attached sync marker (CCSDS 131.0-B-5 §9.3.3).
pub const ASM: [u8; 4] = [0x1a, 0xcf, 0xfc, 0x1d];
/// Bytes in one CADU: ASM + 1020-byte frame.
pub const CADU_LEN: usize = 1024;
/// Reed–Solomon interleave depth of the streams built here.
pub const INTERLEAVE: usize = 4;
/// Symbols per RS(255,223) codeword.
pub const RS_N: usize = 255;
/// Frame bytes after the ASM (= `INTERLEAVE * RS_N`).
pub const FRAME_LEN: usize = CADU_LEN - ASM.len();

const _: () = assert!(FRAME_LEN == INTERLEAVE * RS_N);

/// Where [`extract_aligned_cadus`] found the CADUs in a raw capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alignment {
    /// Bit offset (0 = MSB) of the first ASM bit inside its byte in the raw capture.
    pub bit_shift: u8,
    /// Byte index of the first ASM in the capture after it was shifted left by `bit_shift` bits.
    pub first_asm: usize,
    /// Number of whole, contiguous CADUs returned.
    pub cadus: usize,
}

/// `raw` shifted left by `shift` bits (0..=7) as one big-endian bit string; the last partial
/// byte is dropped when `shift > 0`.
fn shift_left_bits(raw: &[u8], shift: u8) -> Vec<u8> {
    if shift == 0 {
        return raw.to_vec();
    }
    let s = u32::from(shift % 8);
    raw.windows(2)
        .map(|w| match w {
            [a, b] => (a << s) | (b >> (8 - s)),
            _ => 0, // unreachable: windows(2) yields 2-byte slices
        })
        .collect()
}

/// Index of the first byte-aligned ASM in `data` that is followed by another ASM exactly one
/// CADU later (a single exact match in random data is not trusted).
fn first_confirmed_asm(data: &[u8]) -> Option<usize> {
    data.windows(CADU_LEN + ASM.len())
        .position(|w| w.starts_with(&ASM) && w.ends_with(&ASM))
}

/// Finds the CADUs of a raw capture whose ASM may sit at any bit offset, realigns the whole
/// capture so they become byte-aligned, and returns the run of whole, contiguous CADUs (each
/// `CADU_LEN` bytes, each starting with [`ASM`]) from the first confirmed ASM on.
///
/// The run stops at the first 1024-byte chunk that does not start with the ASM or at the end of
/// the data (a trailing partial CADU is dropped). Returns `None` when no bit shift gives two ASMs
/// one CADU apart.
///
/// For `aqua.20241206T175646.dat` this finds bit shift 1 and returns 1023 CADUs.
pub fn extract_aligned_cadus(raw: &[u8]) -> Option<(Vec<u8>, Alignment)> {
    let (shift, aligned, first) = (0u8..8)
        .filter_map(|shift| {
            let aligned = shift_left_bits(raw, shift);
            first_confirmed_asm(&aligned).map(|first| (shift, aligned, first))
        })
        .min_by_key(|&(shift, _, first)| (first, shift))?;
    let tail = aligned.get(first..)?;
    let cadus = tail
        .chunks_exact(CADU_LEN)
        .take_while(|c| c.starts_with(&ASM))
        .count();
    let out = tail.get(..cadus * CADU_LEN)?.to_vec();
    Some((
        out,
        Alignment {
            bit_shift: shift,
            first_asm: first,
            cadus,
        },
    ))
}

/// SplitMix64: a tiny, well-mixed deterministic PRNG so streams are reproducible from a seed
/// without pulling in `rand`.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift (bias < 2^-56 for n ≤ 256).
    fn below(&mut self, n: usize) -> usize {
        let n64 = n as u64;
        ((u128::from(self.next_u64()) * u128::from(n64)) >> 64) as usize
    }

    /// Uniform non-zero byte.
    fn nonzero_byte(&mut self) -> u8 {
        // 1..=255
        (self.below(255) + 1) as u8
    }
}

/// Builds a stream of `n_cadus` byte-aligned CADUs by repeating the whole CADUs of `base`
/// cyclically, and XORs exactly `errors_per_codeword` byte errors into each of the
/// [`INTERLEAVE`] interleaved codewords of every frame.
///
/// - `base`: byte-aligned CADUs back to back, as returned by [`extract_aligned_cadus`]; only
///   whole `CADU_LEN` chunks are used. Returns an empty vector if `base` has none.
/// - Codeword `c` owns frame bytes `k` with `k % 4 == c` (frame byte 0 = first byte after the
///   ASM). Its `errors_per_codeword` error positions are distinct, drawn uniformly among its 255
///   symbols (parity included), and each error value is a uniform non-zero XOR mask, so every
///   error really changes the byte. Values above 255 are clamped to 255.
/// - The ASM is never modified. The same `seed` always gives the same stream.
///
/// RS(255,223) corrects up to 16 symbol errors per codeword, so `errors_per_codeword <= 16`
/// must decode fully and 16 is exactly at capacity.
pub fn make_cadu_stream(
    base: &[u8],
    n_cadus: usize,
    errors_per_codeword: usize,
    seed: u64,
) -> Vec<u8> {
    let errors = errors_per_codeword.min(RS_N);
    let mut rng = SplitMix64(seed);
    let mut out = Vec::with_capacity(n_cadus.saturating_mul(CADU_LEN));
    // Symbol indices 0..255 for a partial Fisher–Yates shuffle; reset per codeword so the draw
    // does not depend on the previous one's permutation (keeps streams easy to reason about).
    let identity: [u8; RS_N] = core::array::from_fn(|i| i as u8);
    for cadu in base.chunks_exact(CADU_LEN).cycle().take(n_cadus) {
        let start = out.len();
        out.extend_from_slice(cadu);
        let Some(frame) = out.get_mut(start + ASM.len()..) else {
            continue; // unreachable: we just pushed CADU_LEN bytes
        };
        for c in 0..INTERLEAVE {
            let mut symbols = identity;
            for i in 0..errors {
                let j = i + rng.below(RS_N - i);
                symbols.swap(i, j);
                let pos = usize::from(symbols.get(i).copied().unwrap_or(0)) * INTERLEAVE + c;
                let mask = rng.nonzero_byte();
                if let Some(b) = frame.get_mut(pos) {
                    *b ^= mask;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const AQUA: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/cadu/aqua.20241206T175646.dat"
    );

    fn aqua_cadus() -> Vec<u8> {
        let raw = std::fs::read(AQUA).unwrap();
        extract_aligned_cadus(&raw).unwrap().0
    }

    #[test]
    fn aqua_realigns_at_bit_shift_1_with_1023_cadus() {
        let raw = std::fs::read(AQUA).unwrap();
        let (cadus, al) = extract_aligned_cadus(&raw).unwrap();
        assert_eq!(al.bit_shift, 1);
        assert_eq!(al.cadus, 1023);
        assert_eq!(cadus.len(), 1023 * CADU_LEN);
        assert!(cadus.chunks_exact(CADU_LEN).all(|c| c.starts_with(&ASM)));
        // First frame header after PN removal: version 2 (AOS), SCID 154 (Aqua).
        let pn0 = [0xff_u8, 0x48];
        let h0 = cadus[4] ^ pn0[0];
        let h1 = cadus[5] ^ pn0[1];
        assert_eq!(h0 >> 6, 1, "AOS version field is 01");
        assert_eq!((u16::from(h0 & 0x3f) << 2) | u16::from(h1 >> 6), 154);
    }

    #[test]
    fn other_captures_realign_at_their_documented_shift() {
        for (name, shift) in [
            ("metopb.20241206T152751.dat", 6),
            ("noaa20.20241206T162710.dat", 1),
            ("npp.20241206T173815.dat", 2),
            ("snpp_synchronized_cadus.dat", 0),
        ] {
            let path = format!(
                "{}/../../shared/data/cadu/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            let raw = std::fs::read(path).unwrap();
            let (_, al) = extract_aligned_cadus(&raw).unwrap();
            assert_eq!(al.bit_shift, shift, "{name}");
        }
    }

    #[test]
    fn no_asm_gives_none() {
        assert!(extract_aligned_cadus(&[0u8; 5000]).is_none());
        assert!(extract_aligned_cadus(&[]).is_none());
    }

    #[test]
    fn shift_left_bits_moves_asm_to_byte_boundary() {
        // ASM starting at bit 3 of byte 0, preceded by 3 one-bits.
        let bits: u64 = (0b111u64 << 61) | (0x1acf_fc1du64 << 29);
        let raw = bits.to_be_bytes();
        let aligned = shift_left_bits(&raw, 3);
        assert_eq!(aligned.len(), raw.len() - 1);
        assert_eq!(&aligned[..4], &ASM);
    }

    #[test]
    fn clean_stream_repeats_base_exactly() {
        let base = aqua_cadus();
        let s = make_cadu_stream(&base, 2500, 0, 1);
        assert_eq!(s.len(), 2500 * CADU_LEN);
        assert_eq!(&s[..base.len()], &base[..]);
        assert_eq!(&s[base.len()..2 * base.len()], &base[..]);
        assert_eq!(&s[2 * base.len()..], &base[..(2500 - 2046) * CADU_LEN]);
    }

    #[test]
    fn exact_error_count_per_codeword_and_asm_untouched() {
        let base = aqua_cadus();
        for e in [1usize, 8, 16] {
            let s = make_cadu_stream(&base, 1500, e, 42 + e as u64);
            for (i, (got, orig)) in s
                .chunks_exact(CADU_LEN)
                .zip(base.chunks_exact(CADU_LEN).cycle())
                .enumerate()
            {
                assert_eq!(&got[..4], &ASM, "cadu {i}");
                let mut per_cw = [0usize; INTERLEAVE];
                for (k, (a, b)) in got[4..].iter().zip(&orig[4..]).enumerate() {
                    if a != b {
                        per_cw[k % INTERLEAVE] += 1;
                    }
                }
                assert_eq!(per_cw, [e; INTERLEAVE], "cadu {i}");
            }
        }
    }

    #[test]
    fn deterministic_per_seed() {
        let base = aqua_cadus();
        let a = make_cadu_stream(&base, 100, 8, 7);
        let b = make_cadu_stream(&base, 100, 8, 7);
        let c = make_cadu_stream(&base, 100, 8, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn error_positions_cover_all_symbols() {
        // Positions should be spread over all 255 symbols, parity included.
        let base = aqua_cadus();
        let s = make_cadu_stream(&base, 1023, 16, 3);
        let mut hit = [false; FRAME_LEN];
        for (got, orig) in s.chunks_exact(CADU_LEN).zip(base.chunks_exact(CADU_LEN)) {
            for (k, (a, b)) in got[4..].iter().zip(&orig[4..]).enumerate() {
                hit[k] |= a != b;
            }
        }
        assert!(hit.iter().all(|&h| h));
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert!(make_cadu_stream(&[], 10, 8, 0).is_empty());
        assert!(make_cadu_stream(&[0u8; 1000], 10, 8, 0).is_empty());
        let base = aqua_cadus();
        assert!(make_cadu_stream(&base, 0, 8, 0).is_empty());
        // Clamped to 255: every frame byte is flipped.
        let s = make_cadu_stream(&base[..CADU_LEN], 1, 1000, 0);
        assert!(s[4..].iter().zip(&base[4..CADU_LEN]).all(|(a, b)| a != b));
    }
}
