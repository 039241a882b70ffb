#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]
//! Decode throughput of RS(255,223) I=4 dual basis, in Mbit/s of block bytes.
//!
//! `cargo run --release --example rs_speed` — pre-generates blocks (clean, 8 and 16 byte errors
//! per codeword), then copies + decodes them in a loop; prints the median of 5 runs for the
//! default kernel (`simd`: AVX-512/GFNI syndromes where the CPU has them, else AVX2), for the
//! AVX2 kernel (`avx2`, only where the default is AVX-512) and for the portable scalar kernel.
use decoder::rs::{Basis, ReedSolomon, RsParams};
use std::time::Instant;

const BLOCKS: usize = 512;

fn rng(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn blocks(rs: &ReedSolomon, errors: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut s = seed;
    let il = rs.params().interleave as usize;
    let n = rs.block_len() / il;
    (0..BLOCKS)
        .map(|_| {
            let mut b: Vec<u8> = (0..rs.block_len()).map(|_| rng(&mut s) as u8).collect();
            rs.encode(&mut b).expect("length");
            for cw in 0..il {
                let mut used = Vec::new();
                while used.len() < errors {
                    let t = (rng(&mut s) % n as u64) as usize;
                    let v = (rng(&mut s) % 255 + 1) as u8;
                    if !used.contains(&t) {
                        used.push(t);
                        b[t * il + cw] ^= v;
                    }
                }
            }
            b
        })
        .collect()
}

fn run(rs: &ReedSolomon, input: &[Vec<u8>], reps: usize) -> (f64, u64) {
    let mut work = vec![0u8; rs.block_len()];
    let mut corrected = 0u64;
    let t0 = Instant::now();
    for _ in 0..reps {
        for b in input {
            work.copy_from_slice(b);
            let out = rs.decode(&mut work).expect("length");
            corrected += u64::from(out.corrected_symbols());
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let bits = (reps * input.len() * rs.block_len() * 8) as f64;
    (bits / secs / 1e6, corrected)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn encode_rate(rs: &ReedSolomon, input: &[Vec<u8>]) -> f64 {
    let mut work = vec![0u8; rs.block_len()];
    let t0 = Instant::now();
    for b in input {
        work.copy_from_slice(b);
        rs.encode(&mut work).expect("length");
    }
    (input.len() * rs.block_len() * 8) as f64 / t0.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let p = RsParams {
        e: 16,
        interleave: 4,
        virtual_fill: 0,
        basis: Basis::Dual,
    };
    let simd = ReedSolomon::new(p).expect("params");
    let avx2 = ReedSolomon::new(p).expect("params").without_avx512();
    let scalar = ReedSolomon::new(p).expect("params").without_simd();
    println!(
        "block {} bytes, {} blocks per pass, SIMD kernel: {}, AVX-512/GFNI syndromes: {}",
        simd.block_len(),
        BLOCKS,
        simd.uses_simd(),
        simd.uses_avx512()
    );
    let mut kernels = vec![("simd", &simd)];
    if simd.uses_avx512() {
        kernels.push(("avx2", &avx2));
    }
    kernels.push(("scalar", &scalar));
    // optional filters: `rs_speed [errors] [simd|avx2|scalar]`
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only_errors: Option<usize> = args.first().and_then(|a| a.parse().ok());
    let only_kernel = args.get(1).cloned();
    if only_errors.is_none() {
        let input = blocks(&simd, 0, 7);
        let r = median((0..5).map(|_| encode_rate(&simd, &input)).collect());
        println!("encode (table-driven LFSR): median {r:.0} Mbit/s of block bytes");
    }
    for errors in [0usize, 8, 16] {
        if only_errors.is_some_and(|e| e != errors) {
            continue;
        }
        let input = blocks(&simd, errors, 42 + errors as u64);
        for &(name, rs) in &kernels {
            if only_kernel.as_deref().is_some_and(|k| k != name) {
                continue;
            }
            // size a run to roughly 0.2 s
            let (probe, _) = run(rs, &input, 1);
            let bits_per_pass = (BLOCKS * rs.block_len() * 8) as f64;
            let reps = ((probe * 1e6 * 0.2) / bits_per_pass).ceil().max(1.0) as usize;
            let mut rates = Vec::new();
            let mut check = 0;
            for _ in 0..5 {
                let (r, c) = run(rs, &input, reps);
                rates.push(r);
                check = c;
            }
            let expect = (reps * BLOCKS * 4 * errors) as u64;
            assert_eq!(check, expect, "every error corrected");
            let mut sorted = rates.clone();
            sorted.sort_by(|a, b| a.total_cmp(b));
            println!(
                "{errors:>2} errors/codeword {name:>6}: median {:>8.0} Mbit/s  (runs: {})",
                median(rates),
                sorted
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
}
