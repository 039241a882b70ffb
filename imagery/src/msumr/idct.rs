//! Dequantization and inverse DCT: coefficients of one packet -> 8 x 112 pixel strip.
//!
//! * Quantization table: ITU-T T.81 Annex K.1 Table K.1 (luminance), scaled by the packet
//!   quality factor with the IJG `jpeg_quality_scaling` rule (Q < 50: 5000/Q, else 200-2Q;
//!   entry = (base * scale + 50) / 100, clamped to 1..=255).
//! * IDCT: T.81 A.3.3, `s(y,x) = 1/4 sum_u sum_v C(u) C(v) S(v,u) cos((2x+1)u pi/16)
//!   cos((2y+1)v pi/16)`, C(0) = 1/sqrt 2, computed separably in f64, then +128, rounded
//!   half-up and clamped to 0..=255.

use super::huffman::decode_coefficients;
use super::packet::{ImagePacket, LINES_PER_ROW, STRIP_WIDTH};
use crate::Error;

/// T.81 Table K.1 luminance quantization table, natural (row-major) order.
const K1_LUMINANCE: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, //
    12, 12, 14, 19, 26, 58, 60, 55, //
    14, 13, 16, 24, 40, 57, 69, 56, //
    14, 17, 22, 29, 51, 87, 80, 62, //
    18, 22, 37, 56, 68, 109, 103, 77, //
    24, 35, 55, 64, 81, 104, 113, 92, //
    49, 64, 78, 87, 103, 121, 120, 101, //
    72, 92, 95, 98, 112, 100, 103, 99,
];

/// Zig-zag index -> natural (row-major) position (T.81 Figure A.6).
const ZIGZAG_TO_NATURAL: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Quantization table (natural order) for quality factor `q` (1..=100; values outside are
/// clamped into that range, as IJG does).
pub fn quantization_table(q: u8) -> [u16; 64] {
    let q = u32::from(q.clamp(1, 100));
    let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
    let mut t = [0u16; 64];
    for (dst, &base) in t.iter_mut().zip(K1_LUMINANCE.iter()) {
        let v = (u32::from(base) * scale + 50) / 100;
        *dst = v.clamp(1, 255) as u16;
    }
    t
}

/// Basis table `c[x][u] = k(u) * cos((2x+1) u pi / 16)` with `k(0) = 1`, `k(u) = sqrt 2`;
/// the 2-D sum is scaled by 1/8 afterwards (`1/4 C(u) C(v) = 1/8 k(u) k(v)`). Keeping the DC
/// path free of irrational factors makes flat blocks exact, so exact .5 results round up
/// deterministically.
fn basis() -> &'static [[f64; 8]; 8] {
    static B: std::sync::OnceLock<[[f64; 8]; 8]> = std::sync::OnceLock::new();
    B.get_or_init(|| {
        let mut b = [[0f64; 8]; 8];
        for (x, row) in b.iter_mut().enumerate() {
            for (u, v) in row.iter_mut().enumerate() {
                *v = if u == 0 {
                    1.0
                } else {
                    std::f64::consts::SQRT_2
                        * (((2 * x + 1) as f64) * (u as f64) * std::f64::consts::PI / 16.0).cos()
                };
            }
        }
        b
    })
}

/// Inverse DCT of one dequantized block (natural order) into 64 pixels (row-major).
fn idct_block(coef: &[f64; 64]) -> [u8; 64] {
    let c = basis();
    // Rows: tmp[v][x] = sum_u c[x][u] * F[v][u]
    let mut tmp = [[0f64; 8]; 8];
    for (t_row, f_row) in tmp.iter_mut().zip(coef.chunks_exact(8)) {
        for (t, cx) in t_row.iter_mut().zip(c.iter()) {
            *t = cx.iter().zip(f_row).map(|(a, b)| a * b).sum();
        }
    }
    // Columns: out[y][x] = sum_v c[y][v] * tmp[v][x]
    let mut out = [0u8; 64];
    for (out_row, cy) in out.chunks_exact_mut(8).zip(c.iter()) {
        for (x, o) in out_row.iter_mut().enumerate() {
            let s: f64 = cy
                .iter()
                .zip(tmp.iter())
                .map(|(a, t_row)| a * t_row.get(x).copied().unwrap_or(0.0))
                .sum();
            *o = (s * 0.125 + 128.0 + 0.5).floor().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// One decoded packet: 8 lines x 112 pixels, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strip {
    /// `LINES_PER_ROW * STRIP_WIDTH` pixels, row-major.
    pub pixels: Vec<u8>,
}

impl Strip {
    /// One line (0..8) of the strip, 112 pixels.
    pub fn line(&self, y: usize) -> Option<&[u8]> {
        self.pixels.get(y * STRIP_WIDTH..(y + 1) * STRIP_WIDTH)
    }
}

/// Decode a parsed image packet into its 8 x 112 strip.
pub fn decode_strip(packet: &ImagePacket<'_>) -> Result<Strip, Error> {
    let coefs = decode_coefficients(packet.entropy_data())?;
    let qt = quantization_table(packet.quality());
    let mut pixels = vec![0u8; LINES_PER_ROW * STRIP_WIDTH];
    for (m, zz) in coefs.iter().enumerate() {
        let mut natural = [0f64; 64];
        for (&v, &pos) in zz.iter().zip(ZIGZAG_TO_NATURAL.iter()) {
            let q = qt.get(pos).copied().unwrap_or(1);
            if let Some(n) = natural.get_mut(pos) {
                *n = f64::from(v) * f64::from(q);
            }
        }
        let block = idct_block(&natural);
        for (y, src) in block.chunks_exact(8).enumerate() {
            let off = y * STRIP_WIDTH + m * 8;
            if let Some(dst) = pixels.get_mut(off..off + 8) {
                dst.copy_from_slice(src);
            }
        }
    }
    Ok(Strip { pixels })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quality_scaling() {
        assert_eq!(quantization_table(50), K1_LUMINANCE);
        assert!(quantization_table(100).iter().all(|&v| v == 1));
        let t = quantization_table(93); // scale 14
        assert_eq!(t[0], 2); // (16*14+50)/100 = 2.74 -> 2
        assert_eq!(t[63], 14); // 99*14 = 1386 -> 14
        let t = quantization_table(10); // scale 500, clamped at 255
        assert_eq!(t[0], 80);
        assert_eq!(t[63], 255);
        // The float formula used by other decoders, round(scale/100 * base), agrees for Q >= 21.
        for q in 21u8..=100 {
            let scale = if q < 50 {
                (5000 / u32::from(q)) as f32
            } else {
                (200 - 2 * u32::from(q)) as f32
            };
            for (i, &b) in K1_LUMINANCE.iter().enumerate() {
                let f = ((scale / 100.0 * f32::from(b)) + 0.5).floor().max(1.0) as u16;
                assert_eq!(quantization_table(q)[i], f.min(255), "q={q} i={i}");
            }
        }
    }

    #[test]
    fn zigzag_is_permutation() {
        let mut seen = [false; 64];
        for &p in &ZIGZAG_TO_NATURAL {
            seen[p] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(ZIGZAG_TO_NATURAL[2], 8);
        assert_eq!(ZIGZAG_TO_NATURAL[63], 63);
    }

    #[test]
    fn idct_dc_and_basis() {
        let mut c = [0f64; 64];
        c[0] = 80.0; // DC 80 -> +10 everywhere
        assert!(idct_block(&c).iter().all(|&p| p == 138));
        c[0] = 12.0; // +1.5 exactly -> rounds half up to 130
        assert!(idct_block(&c).iter().all(|&p| p == 130));
        c[0] = -12.0; // -1.5 -> 126.5 -> 127
        assert!(idct_block(&c).iter().all(|&p| p == 127));
        c[0] = -2000.0;
        assert!(idct_block(&c).iter().all(|&p| p == 0));
        // Horizontal first harmonic: antisymmetric left/right around 128.
        let mut c = [0f64; 64];
        c[1] = 100.0;
        let b = idct_block(&c);
        for y in 0..8 {
            for x in 0..8 {
                let a = i32::from(b[y * 8 + x]) - 128;
                let m = i32::from(b[y * 8 + 7 - x]) - 128;
                assert!((a + m).abs() <= 1, "x={x} y={y}");
            }
            assert!(b[y * 8] > b[y * 8 + 7]);
        }
    }
}
