//! The peer of the soft-symbol speed benchmark: crates.io `fec` 0.2.2's SIMD Viterbi
//! (`SimdDecoder<2, 7>`, the widest of AVX-512/AVX2/SSE the host has) on one core, over the same
//! int8 soft-symbol file `downlink decode --format soft-i8` reads.
//!
//! Bench-only and outside the product's workspace: `fec`'s `simd` feature needs `portable_simd`,
//! so this crate builds with `RUSTC_BOOTSTRAP=1` on a stable compiler:
//!
//! ```sh
//! RUSTC_BOOTSTRAP=1 cargo build --release --manifest-path bench/fec-peer/Cargo.toml
//! fec-peer SOFT_FILE [--truth CADU_FILE] [--runs N]
//! ```
//!
//! The soft file is read into memory first; only `decode_soft` is timed (the whole file as one
//! block, as fec decodes). Soft values are mapped from Downlink's convention (int8, positive = 1)
//! to fec's (u8, 255 = confident 1, 0 = confident 0, 128 = erasure) by adding 128. With
//! `--truth`, the decoded bits are compared with the CADU file the soft symbols were made from
//! (`downlink replay --encode conv`), so the peer's correctness is checked on the same input.
//! Prints one line: decoded Mbit/s (median of the runs) and the bit errors against the truth.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use fec::convolutional::{Encoder, SimdDecoder};

/// The CCSDS k=7 r=1/2 generators in fec's octal convention, in (G1, G2) order; checked at
/// start by re-encoding against Downlink's convention (see `check_polys`).
const CANDIDATES: [[u16; 2]; 2] = [[0o117, 0o155], [0o155, 0o117]];

/// The polynomial order for which fec's encoder produces the CCSDS symbols Downlink's encoder
/// does: G1 = 171₈ / G2 = 133₈, register newest bit first. A known vector: the 7-bit impulse
/// 1000000 gives the generator taps themselves.
fn check_polys() -> [u16; 2] {
    // Downlink (CCSDS 131.0 §3): input 1 then zeros -> G1 taps 1111001, G2 taps 1011011.
    let want: Vec<u8> = [1, 1, 1, 1, 0, 0, 1]
        .iter()
        .zip([1, 0, 1, 1, 0, 1, 1])
        .flat_map(|(&a, b)| [a, b])
        .collect();
    for polys in CANDIDATES {
        let mut enc = Encoder::new(2, 7, &polys);
        let msg = [0x80u8, 0x00];
        let mut out = vec![0u8; fec::convolutional::encoded_len_bits(2, 7, 2).div_ceil(8)];
        let n = enc.encode(&msg, &mut out).expect("encode");
        let bits: Vec<u8> = (0..n.min(14))
            .map(|i| (out[i / 8] >> (7 - i % 8)) & 1)
            .collect();
        if bits == want {
            return polys;
        }
    }
    panic!("no fec polynomial order reproduces the CCSDS code");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let soft_path = args
        .next()
        .expect("usage: fec-peer SOFT_FILE [--truth CADU_FILE] [--runs N]");
    let mut truth_path = None;
    let mut runs = 3usize;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--truth" => truth_path = args.next(),
            "--runs" => runs = args.next().and_then(|r| r.parse().ok()).unwrap_or(3),
            other => panic!("unknown argument {other}"),
        }
    }
    let polys = check_polys();
    let soft: Vec<u8> = std::fs::read(&soft_path)
        .expect("read soft file")
        .into_iter()
        .map(|b| (b as i8 as i16 + 128) as u8)
        .collect();
    let soft = &soft[..soft.len() & !1];
    let mut dec = SimdDecoder::<2, 7>::new(&polys);
    let mut msg = vec![0u8; dec.payload_len_bytes(soft.len())];
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    let mut n = 0;
    for _ in 0..runs.max(1) {
        let c = cpu_ns();
        let t = Instant::now();
        n = dec.decode_soft(soft, &mut msg).expect("decode");
        times.push(t.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (c, cpu_ns()) {
            cpu.push((b - a) as f64 / 1e9);
        }
    }
    times.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let bits = (n * 8) as f64;
    let errors = truth_path.map(|p| {
        let truth = std::fs::read(p).expect("read truth");
        msg[..n]
            .iter()
            .zip(&truth)
            .map(|(a, b)| (a ^ b).count_ones() as u64)
            .sum::<u64>()
    });
    println!(
        "fec-0.2.2 SimdDecoder<2,7> polys {:o}/{:o}: {} soft bytes -> {} decoded bits, median {:.3} s of {} runs, {:.1} Mbit/s decoded{}{}",
        polys[0],
        polys[1],
        soft.len(),
        n * 8,
        median,
        times.len(),
        bits / median / 1e6,
        errors.map_or(String::new(), |e| format!(", {e} bit errors vs truth")),
        cpu.get(cpu.len() / 2)
            .map_or(String::new(), |c| format!(", by CPU time {:.1} Mbit/s", bits / c / 1e6))
    );
}

/// CPU time of this thread in ns (Linux `/proc/thread-self/schedstat`): unlike wall time, not
/// inflated by other processes on a shared machine.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
