//! `downlink replay --encode conv`: a recorded CADU stream (hard bits after Viterbi) turned back
//! into what a QPSK demodulator hands the Viterbi decoder, with known truth.
//!
//! # Chain (per input bit, MSB first)
//! 1. **Convolutional code** of CCSDS 131.0-B §3 (k = 7, r = 1/2, G1 = 171₈, G2 = 133₈, G2 not
//!    inverted: the Meteor-M LRPT convention). The encoder is the decoder crate's
//!    ([`decoder::conv::ConvEncoder`]); its register runs on across reads and `--loop`s.
//! 2. **QPSK mapping**: the channel-bit pair (G1, G2) is one symbol (I, Q); a channel bit 1 is
//!    `+A`, a 0 is `−A` (`A` = `--amplitude`, default [`DEFAULT_AMPLITUDE`]).
//! 3. **AWGN** at `--ebn0` dB (absent: no noise). Eb is the energy per *information* bit. Each
//!    information bit becomes two channel bits (r = 1/2), one on I and one on Q, so the energy
//!    per channel bit is `Ec = R·Eb` and
//!    `Ec/N0 = Eb/N0 + 10·log10(1/2) = Eb/N0 − 3.01 dB`; a QPSK symbol carries two channel bits,
//!    so `Es/N0 = 2·Ec/N0 = Eb/N0` for this code. With `A² = Ec` and N0/2 the noise variance per
//!    real dimension: `σ = A / sqrt(2·R·Eb/N0) = A / sqrt(Eb/N0)` (linear). Noise is drawn by
//!    Box–Muller from the seeded xorshift64* generator of `replay` (same seed, same noise).
//! 4. **Quantization**: rounded to the nearest integer and clipped to `−127..=127` (int8,
//!    positive = 1; −128 is never produced, so every value can be negated).
//! 5. **Phase ambiguity** `--rotate θ` (0, 90, 180, 270): the constellation is turned by θ
//!    counter-clockwise, i.e. the received symbol is `(I + jQ)·e^{jθ}`:
//!    90° → `(−Q, I)`, 180° → `(−I, −Q)`, 270° → `(Q, −I)`. Then `--swap-iq` exchanges I and Q.
//! 6. **Slip** `--slip-symbols N`: N whole QPSK symbols (2N bytes) are dropped once, starting at
//!    the middle of the first pass over the file (symbol index `file bytes × 8 / 2`), as a
//!    demodulator losing symbol lock would.
//!
//! Output: interleaved int8 `(I, Q)` pairs, 16 bytes per input byte (less the slipped symbols):
//! the `soft-i8` input format. The channel bit errors the noise caused (hard decision on the
//! sign; a `0` carries no information and is counted as an erasure, not an error) are counted
//! against the truth, so a decoder's estimated channel BER can be checked.
//!
//! Pure and deterministic: no IO; the output does not depend on how the input is chunked.

use std::fmt;

use decoder::conv::ConvEncoder;

use super::XorShift64Star;

/// Channel-bit amplitude without `--amplitude`: 127/32 ≈ 4 σ of headroom at Eb/N0 = 0 dB
/// (σ = A there), so clipping is rare, and 32 steps per signal amplitude keep the quantization
/// loss negligible (3-bit soft decisions already come within 0.25 dB of unquantized ones).
pub const DEFAULT_AMPLITUDE: u8 = 32;

/// Constellation rotation applied by `--rotate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rotation {
    /// None.
    #[default]
    R0,
    /// 90° counter-clockwise.
    R90,
    /// 180°.
    R180,
    /// 270° counter-clockwise (90° clockwise).
    R270,
}

impl Rotation {
    /// From degrees (0, 90, 180 or 270).
    pub fn from_degrees(d: u16) -> Option<Self> {
        match d {
            0 => Some(Self::R0),
            90 => Some(Self::R90),
            180 => Some(Self::R180),
            270 => Some(Self::R270),
            _ => None,
        }
    }

    /// `(I, Q)` turned counter-clockwise by this angle (inputs in −127..=127).
    pub fn apply(self, i: i8, q: i8) -> (i8, i8) {
        match self {
            Self::R0 => (i, q),
            Self::R90 => (q.saturating_neg(), i),
            Self::R180 => (i.saturating_neg(), q.saturating_neg()),
            Self::R270 => (q, i.saturating_neg()),
        }
    }

    /// The angle in degrees.
    pub fn degrees(self) -> u16 {
        match self {
            Self::R0 => 0,
            Self::R90 => 90,
            Self::R180 => 180,
            Self::R270 => 270,
        }
    }
}

/// What `--encode conv` is asked to do.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SoftParams {
    /// Eb/N0 in dB; `None`: no noise.
    pub ebn0_db: Option<f64>,
    /// Channel-bit amplitude (1..=127).
    pub amplitude: u8,
    /// Constellation rotation.
    pub rotate: Rotation,
    /// Exchange I and Q (after the rotation).
    pub swap_iq: bool,
    /// `(first symbol, count)` of the one slip; `None`: no slip.
    pub slip: Option<(u64, u64)>,
    /// Noise seed.
    pub seed: u64,
}

impl Default for SoftParams {
    fn default() -> Self {
        Self {
            ebn0_db: None,
            amplitude: DEFAULT_AMPLITUDE,
            rotate: Rotation::R0,
            swap_iq: false,
            slip: None,
            seed: 1,
        }
    }
}

/// Counters of a [`SoftEncoder`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftStats {
    /// Information bits encoded.
    pub bits_in: u64,
    /// QPSK symbols written (after the slip).
    pub symbols_out: u64,
    /// Symbols dropped by the slip.
    pub symbols_slipped: u64,
    /// Channel bits whose sign the noise turned.
    pub channel_bit_errors: u64,
    /// Channel bits the noise made exactly 0 (no information: erasures, not errors).
    pub channel_erasures: u64,
}

impl SoftStats {
    /// Channel bit error rate caused by the noise, over the channel bits that are not erasures
    /// (the decoder's estimate is defined the same way); 0 when nothing was encoded.
    pub fn channel_ber(&self) -> f64 {
        let compared = (2 * self.bits_in).saturating_sub(self.channel_erasures);
        if compared == 0 {
            0.0
        } else {
            self.channel_bit_errors as f64 / compared as f64
        }
    }
}

impl fmt::Display for SoftStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bits conv-encoded to {} QPSK symbols, {} channel bit errors (BER {:.3e}), {} symbols slipped",
            self.bits_in,
            self.symbols_out,
            self.channel_bit_errors,
            self.channel_ber(),
            self.symbols_slipped
        )
    }
}

/// Encoder, modulator and channel of `--encode conv` (see the module docs).
#[derive(Debug, Clone)]
pub struct SoftEncoder {
    p: SoftParams,
    enc: ConvEncoder,
    /// Noise σ in soft units; `None`: no noise.
    sigma: Option<f64>,
    rng: XorShift64Star,
    /// Second Box–Muller deviate, not used yet.
    spare: Option<f64>,
    /// Symbols made so far (before the slip).
    symbols: u64,
    stats: SoftStats,
}

impl SoftEncoder {
    /// A fresh encoder (register all zeros).
    pub fn new(p: SoftParams) -> Self {
        let a = f64::from(p.amplitude.clamp(1, 127));
        let sigma = p.ebn0_db.map(|db| a / 10f64.powf(db / 10.0).sqrt());
        Self {
            enc: ConvEncoder::new(false),
            sigma,
            rng: XorShift64Star::new(p.seed),
            spare: None,
            symbols: 0,
            stats: SoftStats::default(),
            p,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> SoftStats {
        self.stats
    }

    /// The noise σ in soft units (`None` without `--ebn0`).
    pub fn sigma(&self) -> Option<f64> {
        self.sigma
    }

    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = self.rng.unit_open0();
        let u2 = self.rng.unit_open0();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }

    /// One channel bit as a soft value; counts the error against the truth.
    fn soft(&mut self, bit: bool) -> i8 {
        let a = f64::from(self.p.amplitude.clamp(1, 127));
        let clean = if bit { a } else { -a };
        let v = match self.sigma {
            Some(s) => (clean + s * self.normal()).round().clamp(-127.0, 127.0),
            None => clean,
        };
        let v = v as i8;
        if v == 0 {
            self.stats.channel_erasures += 1;
        } else if (v > 0) != bit {
            self.stats.channel_bit_errors += 1;
        }
        v
    }

    /// Encodes `input` (MSB first) and appends the soft symbols to `out`.
    pub fn apply(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() * 16);
        for &byte in input {
            for k in (0..8).rev() {
                let (g1, g2) = self.enc.push_bit((byte >> k) & 1 == 1);
                let (i, q) = (self.soft(g1 == 1), self.soft(g2 == 1));
                let (i, q) = self.p.rotate.apply(i, q);
                let (i, q) = if self.p.swap_iq { (q, i) } else { (i, q) };
                let n = self.symbols;
                self.symbols += 1;
                if let Some((at, count)) = self.p.slip {
                    if n >= at && n - at < count {
                        self.stats.symbols_slipped += 1;
                        continue;
                    }
                }
                out.extend_from_slice(&[i as u8, q as u8]);
                self.stats.symbols_out += 1;
            }
            self.stats.bits_in += 8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The k=7 r=1/2 code written out from CCSDS 131.0-B §3.3 (taps of 171₈ and 133₈, newest
    /// bit first), independent of the decoder crate's encoder.
    fn reference_encode(bits: &[bool]) -> Vec<(bool, bool)> {
        let g1 = [1, 1, 1, 1, 0, 0, 1];
        let g2 = [1, 0, 1, 1, 0, 1, 1];
        let mut reg = [false; 7];
        bits.iter()
            .map(|&b| {
                reg.rotate_right(1);
                reg[0] = b;
                let p = |g: &[u8; 7]| {
                    reg.iter().zip(g).filter(|(r, t)| **r && **t == 1).count() % 2 == 1
                };
                (p(&g1), p(&g2))
            })
            .collect()
    }

    fn bits_of(bytes: &[u8]) -> Vec<bool> {
        bytes
            .iter()
            .flat_map(|b| (0..8).rev().map(move |k| (b >> k) & 1 == 1))
            .collect()
    }

    fn encode(p: SoftParams, data: &[u8], chunk: usize) -> (Vec<u8>, SoftStats) {
        let mut e = SoftEncoder::new(p);
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            e.apply(c, &mut out);
        }
        (out, e.stats())
    }

    fn sample() -> Vec<u8> {
        let mut x = 0x1234_5678u32;
        (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    #[test]
    fn clean_output_is_the_code_mapped_to_qpsk() {
        let data = sample();
        let (out, st) = encode(SoftParams::default(), &data, 4096);
        let want: Vec<u8> = reference_encode(&bits_of(&data))
            .into_iter()
            .flat_map(|(a, b)| {
                let m = |c: bool| if c { 32i8 } else { -32 } as u8;
                [m(a), m(b)]
            })
            .collect();
        assert_eq!(out.len(), data.len() * 16);
        assert!(out == want, "differs from the CCSDS 131.0 §3 encoder");
        assert_eq!(st.channel_bit_errors, 0);
        assert_eq!(st.symbols_out, data.len() as u64 * 8);
    }

    #[test]
    fn chunking_does_not_matter() {
        let data = sample();
        let p = SoftParams {
            ebn0_db: Some(2.0),
            rotate: Rotation::R90,
            swap_iq: true,
            slip: Some((1000, 3)),
            seed: 7,
            ..SoftParams::default()
        };
        let (a, sa) = encode(p, &data, 4096);
        let (b, sb) = encode(p, &data, 7);
        assert!(a == b);
        assert_eq!(sa, sb);
        assert_eq!(sa.symbols_slipped, 3);
        assert_eq!(a.len(), (data.len() * 8 - 3) * 2);
    }

    #[test]
    fn rotations_and_swap() {
        assert_eq!(Rotation::R0.apply(10, -20), (10, -20));
        assert_eq!(Rotation::R90.apply(10, -20), (20, 10));
        assert_eq!(Rotation::R180.apply(10, -20), (-10, 20));
        assert_eq!(Rotation::R270.apply(10, -20), (-20, -10));
        // Four quarter turns are the identity; 90 then 270 too.
        let mut v = (5i8, 100i8);
        for _ in 0..4 {
            v = Rotation::R90.apply(v.0, v.1);
        }
        assert_eq!(v, (5, 100));
        let clean = encode(SoftParams::default(), &sample(), 4096).0;
        let p = SoftParams {
            rotate: Rotation::R90,
            swap_iq: true,
            ..SoftParams::default()
        };
        let turned = encode(p, &sample(), 4096).0;
        // 90° then swap: (I, Q) -> (-Q, I) -> (I, -Q).
        for (c, t) in clean.chunks(2).zip(turned.chunks(2)) {
            assert_eq!(t[0], c[0]);
            assert_eq!(t[1] as i8, -(c[1] as i8));
        }
        for d in [0, 90, 180, 270] {
            assert_eq!(Rotation::from_degrees(d).unwrap().degrees(), d);
        }
        assert_eq!(Rotation::from_degrees(45), None);
    }

    #[test]
    fn noise_matches_ebn0() {
        // Uncoded BPSK bit error rate at Ec/N0 = Eb/N0 - 3.01 dB: Q(sqrt(2 Ec/N0)) = Q(sqrt(Eb/N0)),
        // at Eb/N0 = 3 dB Q(32/σ) = Q(1.4126) = 0.0789 before rounding. After rounding a value
        // is wrong below -0.5 (Q(32.5/σ) = 0.0757) and an erasure in -0.5..0.5 (0.0065), so the
        // error rate over the non-erased bits is 0.0757 / (1 - 0.0065) = 0.0762.
        let data: Vec<u8> = sample().repeat(8);
        let p = SoftParams {
            ebn0_db: Some(3.0),
            seed: 3,
            ..SoftParams::default()
        };
        let (out, st) = encode(p, &data, 4096);
        let ber = st.channel_ber();
        assert!((ber - 0.0762).abs() < 0.003, "channel BER {ber}");
        // The noise power: σ = A / sqrt(Eb/N0) = 32 / 1.4125 = 22.65.
        let clean = encode(SoftParams::default(), &data, 4096).0;
        let var: f64 = out
            .iter()
            .zip(&clean)
            .map(|(&n, &c)| (f64::from(n as i8) - f64::from(c as i8)).powi(2))
            .sum::<f64>()
            / out.len() as f64;
        assert!((var.sqrt() - 22.65).abs() < 0.4, "σ {}", var.sqrt());
        // A different seed gives different noise; the same seed the same.
        let again = encode(p, &data, 999).0;
        assert!(again == out);
        let other = encode(SoftParams { seed: 4, ..p }, &data, 4096).0;
        assert!(other != out);
        assert!(out.iter().all(|&v| v as i8 != -128));
    }
}
