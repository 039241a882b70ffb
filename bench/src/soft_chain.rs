//! Inputs and measurements for the soft-symbol (Viterbi) benchmarks.
//!
//! The channel is `downlink replay --encode conv`'s (`downlink::replay::soft`): CCSDS k=7
//! r=1/2 code, QPSK int8 soft symbols of amplitude 32, AWGN at a given Eb/N0 per information bit
//! (`Ec/N0 = Eb/N0 − 3.01 dB` per channel bit, σ = 32 / sqrt(Eb/N0)), so the curves measured
//! here are of the same symbols the tests and operators rehearse with. It is written out again
//! here so that the benchmarks build without the daemon (GDAL, HTTP …); a test (dev-dependency
//! on the daemon) proves both produce the same bytes.

use std::path::Path;

use decoder::conv::ConvEncoder;
use decoder::conv::Viterbi;
use decoder::{Decoder, DecoderOptions, InputFormat, Profile, Stats};

/// The soft-symbol profile of Meteor-M N2 (72k, no differential coding).
pub const METEOR_SOFT_PROFILE: &str = "meteor-m2-lrpt-72k";

/// Deterministic random bytes (xorshift64*).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Soft value of a noiseless channel bit (`replay --amplitude` default).
pub const AMPLITUDE: f64 = 32.0;

/// `replay`'s noise generator: xorshift64* seeded through splitmix64, Box–Muller pairs.
struct Noise {
    state: u64,
    spare: Option<f64>,
}

impl Noise {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Self {
            state: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z },
            spare: None,
        }
    }

    fn unit_open0(&mut self) -> f64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        ((x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = self.unit_open0();
        let u2 = self.unit_open0();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
}

/// `data` (MSB first) as soft symbols at `ebn0_db` (`None`: noiseless), byte for byte what
/// `downlink replay --encode conv [--ebn0 DB] --seed SEED` makes of it.
pub fn soft_symbols(data: &[u8], ebn0_db: Option<f64>, seed: u64) -> Vec<u8> {
    let sigma = ebn0_db.map(|db| AMPLITUDE / 10f64.powf(db / 10.0).sqrt());
    let mut noise = Noise::new(seed);
    let mut enc = ConvEncoder::new(false);
    let mut out = Vec::with_capacity(data.len() * 16);
    for &byte in data {
        for k in (0..8).rev() {
            let (g1, g2) = enc.push_bit((byte >> k) & 1 == 1);
            for c in [g1, g2] {
                let clean = if c == 1 { AMPLITUDE } else { -AMPLITUDE };
                let v = match sigma {
                    Some(s) => (clean + s * noise.normal()).round().clamp(-127.0, 127.0),
                    None => clean,
                };
                out.push(v as i8 as u8);
            }
        }
    }
    out
}

/// Bits at the end of a block that are not compared: they were decided at the flush with less
/// than the decoder's traceback depth behind them (on a continuous link they never are).
pub const UNSETTLED_TAIL_BITS: usize = 96;

/// Bit errors after Viterbi decoding of `soft` against the truth `data`: (errors, bits compared).
/// The decoder starts without knowledge of the encoder state (as on a real link); the last
/// [`UNSETTLED_TAIL_BITS`] of the block are not compared.
pub fn viterbi_bit_errors(data: &[u8], soft: &[u8]) -> (u64, u64) {
    let mut v = Viterbi::new(false);
    let soft: Vec<i8> = soft.iter().map(|&b| b as i8).collect();
    let mut out = Vec::with_capacity(data.len() * 8);
    v.decode(&soft, &mut out);
    v.flush(&mut out);
    let truth = data
        .iter()
        .flat_map(|b| (0..8).rev().map(move |k| (b >> k) & 1));
    let mut errors = 0;
    let mut n = 0;
    let settled = (data.len() * 8).saturating_sub(UNSETTLED_TAIL_BITS);
    for (d, t) in out.iter().zip(truth).take(settled) {
        n += 1;
        errors += u64::from(*d != t);
    }
    (errors, n)
}

/// A fill VCDU of Meteor LRPT (AOS version 1, SCID 0, VCID 63, idle M_PDU), 892 bytes.
fn fill_vcdu(counter: u32) -> Vec<u8> {
    let mut v = vec![0u8; 892];
    if let Some(h) = v.get_mut(..2) {
        h.copy_from_slice(&[0x40, 0x3F]);
    }
    if let Some(c) = v.get_mut(2..5) {
        c.copy_from_slice(&counter.to_be_bytes()[1..]);
    }
    if let Some(m) = v.get_mut(8..10) {
        m.copy_from_slice(&[0x07, 0xFE]);
    }
    v
}

/// The shared Meteor-M2 capture (`vcdu/meteor-m2/*.vcdu`, 256 VCDUs) as the CADU stream the
/// satellite sent (RS(255,223) I=4 conventional basis, CCSDS PN, ASM), repeated `repeat` times,
/// with `fill` fill CADUs in front (acquisition) and behind (Viterbi and RS flush). The VC
/// counters of the repeats are rewritten so that they run on without a gap.
pub fn meteor_cadu_stream(data_dir: &Path, repeat: usize, fill: usize) -> std::io::Result<Vec<u8>> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let profile = Profile::builtin("meteor-lrpt").map_err(|e| bad(e.to_string()))?;
    let rs = decoder::rs::ReedSolomon::new(profile.rs_params().ok_or_else(|| bad("no RS".into()))?)
        .map_err(|e| bad(e.to_string()))?;
    let pn = decoder::pn::Derandomizer::new(1020);
    let mut vcdus = Vec::new();
    for s in ["30", "40", "50"] {
        let b = std::fs::read(data_dir.join(format!("vcdu/meteor-m2/2022_12_20_20_25_{s}.vcdu")))?;
        vcdus.extend(b.chunks_exact(892).map(<[u8]>::to_vec));
    }
    let mut frames: Vec<Vec<u8>> = (0..fill as u32).map(fill_vcdu).collect();
    let mut counter = 0u32;
    for _ in 0..repeat {
        for v in &vcdus {
            let mut v = v.clone();
            if let Some(c) = v.get_mut(2..5) {
                c.copy_from_slice(&counter.to_be_bytes()[1..]);
            }
            counter = (counter + 1) & 0xFF_FFFF;
            frames.push(v);
        }
    }
    frames.extend((0..fill as u32).map(|i| fill_vcdu(1000 + i)));
    let mut out = Vec::with_capacity(frames.len() * 1024);
    for mut block in frames {
        block.resize(1020, 0);
        rs.encode(&mut block).map_err(|e| bad(e.to_string()))?;
        pn.apply(&mut block);
        out.extend_from_slice(&[0x1A, 0xCF, 0xFC, 0x1D]);
        out.extend_from_slice(&block);
    }
    Ok(out)
}

/// Runs soft symbols through the whole chain (phase search, Viterbi, sync, PN, RS, frames,
/// packets) of the Meteor-M N2 soft profile in 1 MiB pushes; the counters.
pub fn decode_soft_chain(soft: &[u8]) -> Stats {
    let Ok(profile) = Profile::builtin(METEOR_SOFT_PROFILE) else {
        return Stats::default();
    };
    let Ok(mut d) = Decoder::new(&profile, InputFormat::SoftI8, DecoderOptions::default()) else {
        return Stats::default();
    };
    for chunk in soft.chunks(1 << 20) {
        d.push(chunk);
        while let Some(e) = d.poll() {
            std::hint::black_box(&e);
        }
    }
    d.finish();
    while let Some(e) = d.poll() {
        std::hint::black_box(&e);
    }
    d.stats()
}

/// Q(x), the Gaussian tail probability: `erfc(x/√2)/2`, with erfc by the Chebyshev fit of
/// *Numerical Recipes* (`erfcc`), fractional error below 1.2e-7 everywhere.
pub fn q_function(x: f64) -> f64 {
    let z = (x / std::f64::consts::SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        0.5 * erfc
    } else {
        1.0 - 0.5 * erfc
    }
}

/// Distance spectrum of the (171, 133) k=7 r=1/2 code: (distance, total information weight
/// c_d) for d = 10..=16 (odd distances have none): 36, 211, 1404, 11633, as tabulated in
/// scikit-dsp-comm's `fec_conv` documentation ("weight spectra c_k for bounding the coded rate
/// 1/2 BEP", after Proakis, *Digital Communications*). Further terms change the bound by less
/// than 1 % below BER 1e-4.
pub const SPECTRUM_K7: [(u32, f64); 4] = [(10, 36.0), (12, 211.0), (14, 1404.0), (16, 11633.0)];

/// The textbook soft-decision (unquantized, maximum-likelihood) bit error rate of the k=7 r=1/2
/// code on AWGN: the union bound `Pb ≤ Σ c_d · Q(sqrt(2·d·R·Eb/N0))`, tight below 1e-4.
pub fn union_bound_k7(ebn0_db: f64) -> f64 {
    let e = 10f64.powf(ebn0_db / 10.0);
    SPECTRUM_K7
        .iter()
        .map(|&(d, c)| c * q_function((2.0 * f64::from(d) * 0.5 * e).sqrt()))
        .sum()
}

/// Uncoded BPSK/QPSK bit error rate at this Eb/N0: Q(sqrt(2·Eb/N0)).
pub fn uncoded_ber(ebn0_db: f64) -> f64 {
    q_function((2.0 * 10f64.powf(ebn0_db / 10.0)).sqrt())
}

/// Eb/N0 (dB) where a falling curve given as (dB, value) points crosses `level`, by linear
/// interpolation of log10(value) between the two points around it.
pub fn crossing_db(points: &[(f64, f64)], level: f64) -> Option<f64> {
    points.windows(2).find_map(|w| {
        let [(x0, y0), (x1, y1)] = [*w.first()?, *w.get(1)?];
        if y0 >= level && y1 < level && y0 > 0.0 && y1 > 0.0 {
            let (l0, l1, l) = (y0.log10(), y1.log10(), level.log10());
            Some(x0 + (x1 - x0) * (l0 - l) / (l0 - l1))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_and_bounds() {
        assert!((q_function(0.0) - 0.5).abs() < 1e-7);
        assert!((q_function(1.0) - 0.158_655_25).abs() < 1e-6);
        assert!((q_function(4.0) / 3.167_124e-5 - 1.0).abs() < 1e-5);
        assert!((q_function(-1.0) - 0.841_344_75).abs() < 1e-6);
        assert!((q_function(6.0) / 9.865_876e-10 - 1.0).abs() < 0.01);
        // Uncoded BPSK needs 9.6 dB for 1e-5; the k=7 code about 4.2 dB (union bound).
        let u: Vec<(f64, f64)> = (0..=24)
            .map(|i| (f64::from(i) * 0.5, uncoded_ber(f64::from(i) * 0.5)))
            .collect();
        let at = crossing_db(&u, 1e-5).unwrap();
        assert!((at - 9.59).abs() < 0.05, "{at}");
        let b: Vec<(f64, f64)> = (0..=24)
            .map(|i| (f64::from(i) * 0.25, union_bound_k7(f64::from(i) * 0.25)))
            .collect();
        let at = crossing_db(&b, 1e-5).unwrap();
        assert!((at - 4.15).abs() < 0.1, "{at}");
    }

    #[test]
    fn same_symbols_as_replay() {
        use downlink::replay::soft::{SoftEncoder, SoftParams};
        let data = random_bytes(8192, 5);
        for ebn0_db in [None, Some(0.0), Some(3.0)] {
            let mut e = SoftEncoder::new(SoftParams {
                ebn0_db,
                seed: 11,
                ..SoftParams::default()
            });
            let mut want = Vec::new();
            e.apply(&data, &mut want);
            assert!(soft_symbols(&data, ebn0_db, 11) == want, "{ebn0_db:?}");
        }
    }

    #[test]
    fn clean_symbols_decode_without_errors() {
        let data = random_bytes(4096, 9);
        let soft = soft_symbols(&data, None, 1);
        assert_eq!(
            viterbi_bit_errors(&data, &soft),
            (0, 4096 * 8 - UNSETTLED_TAIL_BITS as u64)
        );
    }
}
