//! Entropy decoding of the 14 MCUs of one MSU-MR packet.
//!
//! Baseline JPEG Huffman decoding (ITU-T T.81 Annex F.2.2: DECODE with MINCODE/MAXCODE/
//! VALPTR, RECEIVE and EXTEND) with the fixed standard luminance tables of T.81 Annex K.3
//! (Table K.3 DC, Table K.5 AC, given here as the BITS/HUFFVAL lists of K.3.3.1/K.3.3.2).
//! Differences from a JPEG file: no markers, no 0xFF00 byte stuffing, and the DC predictor
//! starts at 0 in every packet (BIS-MW description at meteor.robonuka.ru).

use super::packet::MCU_PER_PACKET;
use crate::Error;

/// T.81 K.3.3.1: number of DC luminance codes of each length 1..=16.
const DC_LUM_BITS: [u8; 16] = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
/// T.81 K.3.3.1: DC luminance symbols (magnitude categories).
const DC_LUM_VALS: [u8; 12] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
/// T.81 K.3.3.2: number of AC luminance codes of each length 1..=16.
const AC_LUM_BITS: [u8; 16] = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d];
/// T.81 K.3.3.2: AC luminance symbols (run << 4 | size) in code order.
const AC_LUM_VALS: [u8; 162] = [
    0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07,
    0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0,
    0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49,
    0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
    0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
    0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8,
    0xf9, 0xfa,
];

/// Canonical Huffman decoding table (T.81 F.2.2.3 / C.2).
struct HuffTable {
    /// Largest code of each length 1..=16, or -1 when there is none.
    maxcode: [i32; 17],
    /// Smallest code of each length.
    mincode: [i32; 17],
    /// Index into `vals` of the first symbol of each length.
    valptr: [usize; 17],
    vals: &'static [u8],
}

impl HuffTable {
    fn new(bits: &[u8; 16], vals: &'static [u8]) -> Self {
        let mut maxcode = [-1i32; 17];
        let mut mincode = [0i32; 17];
        let mut valptr = [0usize; 17];
        let mut code = 0i32;
        let mut k = 0usize;
        for (len, &n) in (1..=16usize).zip(bits.iter()) {
            let n = i32::from(n);
            if n > 0 {
                if let (Some(vp), Some(mi), Some(ma)) = (
                    valptr.get_mut(len),
                    mincode.get_mut(len),
                    maxcode.get_mut(len),
                ) {
                    *vp = k;
                    *mi = code;
                    *ma = code + n - 1;
                }
                code += n;
                k += n as usize;
            }
            code <<= 1;
        }
        Self {
            maxcode,
            mincode,
            valptr,
            vals,
        }
    }

    /// Decode one symbol; `None` if no code matches within 16 bits.
    fn decode(&self, r: &mut BitReader<'_>) -> Option<u8> {
        let mut code = 0i32;
        for len in 1..=16usize {
            code = (code << 1) | r.bit_padded() as i32;
            let max = self.maxcode.get(len).copied().unwrap_or(-1);
            if code <= max {
                let min = self.mincode.get(len).copied().unwrap_or(0);
                let ptr = self.valptr.get(len).copied().unwrap_or(0);
                let idx = ptr + usize::try_from(code - min).ok()?;
                return self.vals.get(idx).copied();
            }
        }
        None
    }
}

/// MSB-first bit reader. Reads past the end yield 1-bits (as JPEG fill bits); callers check
/// [`BitReader::overrun`] afterwards.
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
    fn total(&self) -> usize {
        self.data.len() * 8
    }
    fn overrun(&self) -> bool {
        self.pos > self.total()
    }
    fn bit_padded(&mut self) -> u32 {
        let b = match self.data.get(self.pos / 8) {
            Some(byte) => u32::from((byte >> (7 - (self.pos % 8))) & 1),
            None => 1,
        };
        self.pos += 1;
        b
    }
    /// RECEIVE(s) followed by EXTEND (T.81 F.2.2.1, Figure F.12).
    fn receive_extend(&mut self, s: u8) -> i32 {
        if s == 0 {
            return 0;
        }
        let mut v: i32 = 0;
        for _ in 0..s {
            v = (v << 1) | self.bit_padded() as i32;
        }
        if v < (1 << (s - 1)) {
            v - (1 << s) + 1
        } else {
            v
        }
    }
}

fn tables() -> &'static (HuffTable, HuffTable) {
    static TABLES: std::sync::OnceLock<(HuffTable, HuffTable)> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        (
            HuffTable::new(&DC_LUM_BITS, &DC_LUM_VALS),
            HuffTable::new(&AC_LUM_BITS, &AC_LUM_VALS),
        )
    })
}

/// Quantized DCT coefficients of the 14 MCUs of a packet, in zig-zag order, DC absolute.
pub type PacketCoefficients = [[i32; 64]; MCU_PER_PACKET];

/// Entropy-decode the 14 MCUs of one packet (`entropy` = data after the segment header).
/// Any invalid code, AC index overflow or running out of data is an error for the packet.
pub fn decode_coefficients(entropy: &[u8]) -> Result<PacketCoefficients, Error> {
    let (dc_t, ac_t) = tables();
    let mut r = BitReader::new(entropy);
    let mut out = [[0i32; 64]; MCU_PER_PACKET];
    let mut pred: i32 = 0;
    for (mcu, block) in out.iter_mut().enumerate() {
        let start = r.pos;
        let s = dc_t
            .decode(&mut r)
            .ok_or(Error::BadDcCode { mcu, bit: start })?;
        pred += r.receive_extend(s);
        if let Some(dc) = block.first_mut() {
            *dc = pred;
        }
        let mut k = 1usize;
        while k < 64 {
            let at = r.pos;
            let rs = ac_t
                .decode(&mut r)
                .ok_or(Error::BadAcCode { mcu, bit: at })?;
            let run = usize::from(rs >> 4);
            let size = rs & 0x0F;
            if size == 0 {
                if run == 15 {
                    k += 16; // ZRL
                    continue;
                }
                break; // EOB
            }
            k += run;
            let v = r.receive_extend(size);
            match block.get_mut(k) {
                Some(c) => *c = v,
                None => return Err(Error::CoefficientOverflow { mcu, index: k }),
            }
            k += 1;
        }
        if r.overrun() {
            return Err(Error::DataExhausted {
                mcu,
                needed: r.pos,
                available: r.total(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Encode `(code, len)` pairs into bytes, padding with 1-bits.
    fn pack(codes: &[(u32, u32)]) -> Vec<u8> {
        let mut bits = Vec::new();
        for &(c, l) in codes {
            for i in (0..l).rev() {
                bits.push((c >> i) & 1);
            }
        }
        while !bits.len().is_multiple_of(8) {
            bits.push(1);
        }
        bits.chunks(8)
            .map(|ch| ch.iter().fold(0u8, |a, &b| (a << 1) | b as u8))
            .collect()
    }

    #[test]
    fn standard_tables_match_annex_k() {
        let (dc, ac) = tables();
        assert_eq!(AC_LUM_BITS.iter().map(|&b| b as usize).sum::<usize>(), 162);
        // Table K.3: category 0 = 00, 5 = 110, 11 = 111111110
        let mut r = BitReader::new(&[0b0011_0111, 0b1111_1000]);
        assert_eq!(dc.decode(&mut r), Some(0));
        assert_eq!(dc.decode(&mut r), Some(5));
        assert_eq!(dc.decode(&mut r), Some(11));
        // Table K.5: EOB 1010, ZRL 11111111001, 0/1 00, 1/1 1100, 8/2 111111111000000 (15 bits)
        let bytes = pack(&[(0b1010, 4), (0b111_1111_1001, 11), (0b00, 2), (0b1100, 4)]);
        let mut r = BitReader::new(&bytes);
        assert_eq!(ac.decode(&mut r), Some(0x00));
        assert_eq!(ac.decode(&mut r), Some(0xf0));
        assert_eq!(ac.decode(&mut r), Some(0x01));
        assert_eq!(ac.decode(&mut r), Some(0x11));
        let bytes = pack(&[(0b111_1111_1100_0000, 15), (0xfffe, 16)]);
        let mut r = BitReader::new(&bytes);
        assert_eq!(ac.decode(&mut r), Some(0x82));
        assert_eq!(ac.decode(&mut r), Some(0xfa));
    }

    #[test]
    fn dc_prediction_and_extend() {
        // 14 MCUs: first DC category 3 value +5 (101), then diff -3 (cat 2, bits 00), EOB each.
        let mut codes = vec![(0b100, 3), (0b101, 3), (0b1010, 4)];
        for _ in 1..14 {
            codes.extend_from_slice(&[(0b011, 3), (0b00, 2), (0b1010, 4)]);
        }
        let c = decode_coefficients(&pack(&codes)).unwrap();
        assert_eq!(c[0][0], 5);
        assert_eq!(c[1][0], 2);
        assert_eq!(c[13][0], 5 - 3 * 13);
        assert!(c.iter().all(|b| b[1..].iter().all(|&v| v == 0)));
    }

    #[test]
    fn corrupt_data_is_an_error() {
        // Truncated: one MCU only.
        let one = pack(&[(0b00, 2), (0b1010, 4)]);
        assert!(matches!(
            decode_coefficients(&one),
            Err(Error::DataExhausted { .. }) | Err(Error::BadDcCode { .. })
        ));
        // All ones: 111111111 prefix is not a DC code.
        assert!(matches!(
            decode_coefficients(&[0xff, 0xff, 0xff]),
            Err(Error::BadDcCode { mcu: 0, .. })
        ));
        // Run overflow: 15/10 code (run 15) repeated after ZRLs pushes k past 63.
        let bytes = pack(&[
            (0b00, 2),
            (0b111_1111_1001, 11),
            (0b111_1111_1001, 11),
            (0b111_1111_1001, 11),
            (0xfffe, 16),
            (0b11_1111_1111, 10),
        ]);
        assert!(matches!(
            decode_coefficients(&bytes),
            Err(Error::CoefficientOverflow { mcu: 0, .. })
        ));
        assert!(decode_coefficients(&[]).is_err());
    }
}
