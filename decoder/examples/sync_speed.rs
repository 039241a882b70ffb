#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]
//! Throughput of the frame synchronizer, one core, release build:
//!
//! ```text
//! cargo run --release --example sync_speed [runs]
//! ```
//!
//! (a) LOCK path: the Aqua capture (1 MiB, ASM at bit shift 1, starting mid-frame) repeated to
//!     64 MiB. 1 MiB is exactly 1024 periods, so the copies splice into one continuous locked
//!     stream (the junction frame has a real marker and mixed data).
//! (b) SEARCH path: 64 MiB of pseudo-random bytes (no marker), any bit offset, both polarities.
//! (c) byte-aligned exact search (memmem) over the same random data.
//!
//! Input is pushed in 64 KiB chunks and every event is polled (and dropped). Rates are Mbit/s of
//! input; each figure is the median of the runs.

use std::time::Instant;

use decoder::sync::{SyncEvent, SyncParams, Synchronizer};

const CHUNK: usize = 64 * 1024;

fn run(p: SyncParams, input: &[u8], portable: bool) -> (f64, u64, &'static str) {
    let mut s = Synchronizer::new(p).unwrap();
    if portable {
        s.force_portable_kernel();
    }
    let t = Instant::now();
    let mut frames = 0u64;
    for c in input.chunks(CHUNK) {
        s.push(c);
        while let Some(e) = s.poll() {
            if let SyncEvent::Frame(f) = e {
                frames += 1;
                std::hint::black_box(&f.data);
            }
        }
    }
    s.finish();
    while let Some(e) = s.poll() {
        if matches!(e, SyncEvent::Frame(_)) {
            frames += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    (
        input.len() as f64 * 8.0 / secs / 1e6,
        frames,
        s.kernel_name(),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn bench(name: &str, runs: usize, p: SyncParams, input: &[u8], portable: bool) {
    let mut rates = Vec::new();
    let mut info = (0, "");
    for _ in 0..runs {
        let (r, f, k) = run(p, input, portable);
        rates.push(r);
        info = (f, k);
    }
    let mut sorted = rates.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:<48} {:>9.0} Mbit/s  (min {:.0}, max {:.0}; {} frames, kernel {})",
        median(rates),
        sorted[0],
        sorted[sorted.len() - 1],
        info.0,
        info.1
    );
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/cadu/aqua.20241206T175646.dat"
    );
    let aqua = std::fs::read(path).expect("aqua capture");
    let locked: Vec<u8> = aqua.iter().copied().cycle().take(64 << 20).collect();

    let mut x = 0x1234_5678_9abc_def0u64;
    let random: Vec<u8> = (0..(64usize << 20) / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();

    let d = SyncParams::default();
    println!("{runs} runs each, 64 MiB inputs, 64 KiB pushes");
    bench("(a) locked, unaligned (aqua x64)", runs, d, &locked, false);
    bench(
        "(b) search, tol 2, both polarities",
        runs,
        d,
        &random,
        false,
    );
    bench(
        "(b) search, tol 2, both polarities, portable",
        runs,
        d,
        &random,
        true,
    );
    let t3 = SyncParams {
        search_tolerance: 3,
        ..d
    };
    bench(
        "(b) search, tol 3, both polarities",
        runs,
        t3,
        &random,
        false,
    );
    bench(
        "(b) search, tol 3, both polarities, portable",
        runs,
        t3,
        &random,
        true,
    );
    let ba = SyncParams {
        byte_aligned: true,
        search_tolerance: 0,
        ..d
    };
    bench(
        "(c) byte-aligned exact search (memmem)",
        runs,
        ba,
        &random,
        false,
    );
}
