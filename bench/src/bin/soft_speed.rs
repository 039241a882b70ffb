//! One-core speed of the soft-symbol decoder on a soft file (int8 (I, Q) pairs, e.g. made by
//! `downlink replay --encode conv --output`): the Viterbi decoder alone (the best kernel of this CPU, AVX2 and portable) and
//! the whole chain of the Meteor-M N2 profile (phase search, Viterbi, sync, PN, RS, frames,
//! packets), from memory; medians of RUNS. Mbit/s are decoded (information) bits = soft bytes / 2,
//! by wall time and by the thread's CPU time (`/proc/thread-self/schedstat`, which other
//! processes on a shared machine do not inflate).
//!
//! `cargo run --release -p downlink-bench --bin soft_speed -- FILE [RUNS=3] [PARTS]`
//!
//! PARTS is a comma-separated subset of `best,avx2,portable,chain` (default: all four; `best`
//! is AVX-512 where the CPU has AVX-512 F/BW/VBMI, else the same as `avx2`).
#![allow(clippy::print_stdout)]

use std::time::Instant;

use decoder::conv::Viterbi;
use downlink_bench::soft_chain::decode_soft_chain;

/// CPU time of this thread in ns (Linux `/proc/thread-self/schedstat`): unlike wall time, not
/// inflated by other processes on a shared machine. 0 where unavailable.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .unwrap_or_else(|| "target/bench/meteor-x16.3dB.s".into());
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3).max(1);
    let parts = args
        .next()
        .unwrap_or_else(|| "best,avx2,portable,chain".into());
    let want = |p: &str| parts.split(',').any(|x| x == p);
    let soft = std::fs::read(&path)?;
    let soft_i8: Vec<i8> = soft.iter().map(|&b| b as i8).collect();
    let bits = (soft.len() / 2) as f64;
    let mut frames = 0;
    for part in ["best", "avx2", "portable"] {
        if !want(part) {
            continue;
        }
        let make = || match part {
            "avx2" => Viterbi::new(false).without_avx512(),
            "portable" => Viterbi::new(false).without_simd(),
            _ => Viterbi::new(false),
        };
        let name = format!("viterbi {} ({part})", make().kernel_name());
        let (mut t, mut cpu) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let mut v = make();
            let mut out = Vec::with_capacity(soft.len() / 2);
            let c0 = cpu_ns();
            let t0 = Instant::now();
            v.decode(&soft_i8, &mut out);
            v.flush(&mut out);
            t.push(t0.elapsed().as_secs_f64());
            cpu.push(cpu_ns().saturating_sub(c0) as f64 / 1e9);
            std::hint::black_box(&out);
        }
        println!(
            "{path}: {name}: {:.1} Mbit/s (median of {runs}), by CPU time {:.1} Mbit/s",
            bits / median(t) / 1e6,
            bits / median(cpu) / 1e6
        );
    }
    if !want("chain") {
        return Ok(());
    }
    let (mut t, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let c0 = cpu_ns();
        let t0 = Instant::now();
        let st = decode_soft_chain(&soft);
        t.push(t0.elapsed().as_secs_f64());
        cpu.push(cpu_ns().saturating_sub(c0) as f64 / 1e9);
        frames = st.frames.by_vcid.get(&5).copied().unwrap_or(0);
    }
    println!(
        "{path}: whole chain: {:.1} Mbit/s (median of {runs}), by CPU time {:.1} Mbit/s, {frames} frames good on VCID 5",
        bits / median(t) / 1e6,
        bits / median(cpu) / 1e6
    );
    Ok(())
}
