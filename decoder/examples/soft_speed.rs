#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]
//! Throughput of the soft-symbol chain (Viterbi, frame sync, PN, RS, packets) and of the
//! Viterbi decoder alone, in Mbit/s of decoded bits on one core.
//!
//! `cargo run --release -p decoder --example soft_speed [PATH.clean.cadu]` — the CADUs (by
//! default the 8 clean Meteor-M CADUs of ../shared/data/soft/expected) are repeated to 32 Mbit,
//! convolutionally encoded to soft symbols (amplitude 64, clean and with ±70 uniform noise), and
//! decoded with the `meteor-m2-lrpt-72k` profile; prints the best of 3 runs per kernel.
use decoder::conv::{ConvEncoder, Viterbi};
use decoder::{Decoder, DecoderOptions, InputFormat, Profile};
use std::time::Instant;

/// CPU seconds used by this process so far (from /proc; wall time is meaningless on a busy
/// machine). Falls back to 0 elsewhere.
fn cpu_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.split_whitespace().collect::<Vec<_>>();
            let ut: f64 = rest.get(11)?.parse().ok()?;
            let st: f64 = rest.get(12)?.parse().ok()?;
            Some((ut + st) / 100.0)
        })
        .unwrap_or(0.0)
}

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        format!(
            "{}/../../shared/data/soft/expected/m22_72k_hard.clean.cadu",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let cadus = std::fs::read(&path).unwrap();
    let mut data = Vec::new();
    while data.len() < 4 << 20 {
        data.extend_from_slice(&cadus);
    }
    let bits = data.len() as f64 * 8.0;
    let mut clean = Vec::new();
    ConvEncoder::new(false).encode_soft(&data, 64, &mut clean);
    let mut s = 1u64;
    let noisy: Vec<i8> = clean
        .iter()
        .map(|x| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = ((s >> 33) % 141) as i32 - 70;
            (i32::from(*x) + n).clamp(-127, 127) as i8
        })
        .collect();
    let profile = Profile::builtin("meteor-m2-lrpt-72k").unwrap();
    for (name, soft) in [("clean", &clean), ("noisy", &noisy)] {
        let bytes: Vec<u8> = soft.iter().map(|x| *x as u8).collect();
        for portable in [false, true] {
            if portable && std::env::var_os("SIMD_ONLY").is_some() {
                continue;
            }
            let mut best = f64::MAX;
            let mut cbest = f64::MAX;
            let mut frames = 0;
            for _ in 0..3 {
                let t = Instant::now();
                let c = cpu_s();
                let mut d = Decoder::new(
                    &profile,
                    InputFormat::SoftI8,
                    DecoderOptions {
                        frames: false,
                        ..DecoderOptions::default()
                    },
                )
                .unwrap();
                if portable {
                    d.force_portable_viterbi();
                }
                for c in bytes.chunks(1 << 16) {
                    d.push(c);
                    while d.poll().is_some() {}
                }
                d.finish();
                while d.poll().is_some() {}
                best = best.min(t.elapsed().as_secs_f64());
                cbest = cbest.min(cpu_s() - c);
                frames = d.stats().frames.good;
            }
            let mut vbest = f64::MAX;
            let mut vcbest = f64::MAX;
            for _ in 0..3 {
                let t = Instant::now();
                let c = cpu_s();
                let mut v = Viterbi::new(false);
                if portable {
                    v = v.without_simd();
                }
                let mut out = Vec::with_capacity(soft.len() / 2);
                v.decode(soft, &mut out);
                v.flush(&mut out);
                vbest = vbest.min(t.elapsed().as_secs_f64());
                vcbest = vcbest.min(cpu_s() - c);
            }
            let kernel = if portable { "portable" } else { "simd" };
            println!(
                "{name:<6} {kernel:<9} chain {:7.1} Mbit/s wall, {:7.1} per CPU s ({frames} frames)   viterbi alone {:7.1} wall, {:7.1} per CPU s",
                bits / best / 1e6,
                bits / cbest / 1e6,
                bits / vbest / 1e6,
                bits / vcbest / 1e6
            );
        }
    }
}
