//! Shared helpers for the decoder's integration tests: real captures from ../shared/data and
//! bit-level stream surgery. A missing data file fails the test (never skips).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use decoder::{Decoder, DecoderOptions, Event, InputFormat, Profile, Stats};

pub(crate) fn data(rel: &str) -> Vec<u8> {
    let path = format!("{}/../../shared/data/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("test data {path}: {e}"))
}

/// Runs a whole input through a fresh decoder, pushed in one piece.
pub(crate) fn decode(profile: &str, format: InputFormat, input: &[u8]) -> (Vec<Event>, Stats) {
    decode_chunked(profile, format, input, &mut |_| input.len().max(1))
}

/// Runs `input` through a decoder, pushing chunks whose sizes `next_len` chooses.
pub(crate) fn decode_chunked(
    profile: &str,
    format: InputFormat,
    input: &[u8],
    next_len: &mut dyn FnMut(usize) -> usize,
) -> (Vec<Event>, Stats) {
    decode_with(profile, format, input, next_len, |_| {})
}

/// [`decode_chunked`] on a decoder `setup` has configured first.
pub(crate) fn decode_with(
    profile: &str,
    format: InputFormat,
    input: &[u8],
    next_len: &mut dyn FnMut(usize) -> usize,
    setup: impl FnOnce(&mut Decoder),
) -> (Vec<Event>, Stats) {
    let p = Profile::builtin(profile).unwrap();
    let mut d = Decoder::new(&p, format, DecoderOptions::default()).unwrap();
    setup(&mut d);
    let mut events = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let n = next_len(at).clamp(1, input.len() - at);
        d.push(&input[at..at + n]);
        at += n;
        while let Some(e) = d.poll() {
            events.push(e);
        }
    }
    d.finish();
    while let Some(e) = d.poll() {
        events.push(e);
    }
    let s = d.stats();
    assert_eq!(
        s.cadus,
        s.frames.good + s.frames.rejected.total(),
        "every frame must land in exactly one bucket: {s:?}"
    );
    (events, s)
}

/// Small deterministic PRNG (xorshift64*), so tests need no extra dependency.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Bits of `bytes`, MSB first.
pub(crate) fn to_bits(bytes: &[u8]) -> Vec<bool> {
    bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1 == 1))
        .collect()
}

/// Packs bits (MSB first) into bytes; a final partial byte is zero-padded.
pub(crate) fn from_bits(bits: &[bool]) -> Vec<u8> {
    bits.chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |acc, (i, &b)| acc | (u8::from(b) << (7 - i)))
        })
        .collect()
}

/// Byte-aligned CADUs (1024 bytes each) recovered from an unaligned capture whose first ASM
/// starts `shift` bits into some byte.
pub(crate) fn aligned_cadus(capture: &[u8], shift: usize) -> Vec<Vec<u8>> {
    let bits = to_bits(capture);
    let asm = to_bits(&[0x1A, 0xCF, 0xFC, 0x1D]);
    let first = (0..bits.len() - 32)
        .find(|&i| i % 8 == shift && bits[i..i + 32] == asm[..])
        .expect("ASM");
    let bytes = from_bits(&bits[first..]);
    bytes.chunks_exact(1024).map(<[u8]>::to_vec).collect()
}

pub(crate) fn frames(events: &[Event]) -> Vec<&decoder::Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Frame(f) => Some(f),
            _ => None,
        })
        .collect()
}

pub(crate) fn packets(events: &[Event]) -> Vec<&decoder::packet::Packet> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Packet { packet, .. } => Some(packet),
            _ => None,
        })
        .collect()
}
