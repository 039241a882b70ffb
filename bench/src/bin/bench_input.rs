//! Writes the benchmark inputs: `OUT/cadu-e{0,8,16}.bin`, each SIZE MiB of Aqua CADUs repeated,
//! shifted by 3 bits (so the synchronizer must realign every frame), with exactly 0, 8 or 16 byte
//! errors in every RS codeword.
//!
//! `cargo run --release -p downlink-bench --bin bench_input -- OUT [SIZE_MIB=256]`
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "target/bench".into()));
    let mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(256);
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let base = downlink_bench::aqua_base(&data)?;
    std::fs::create_dir_all(&out)?;
    for errors in [0usize, 8, 16] {
        let stream =
            downlink_bench::make_cadu_stream(&base, mib * 1024, errors, 0x5eed + errors as u64);
        let shifted = shift_right(&stream, 3);
        let path = out.join(format!("cadu-e{errors}.bin"));
        std::fs::write(&path, &shifted)?;
        println!("{} {} bytes", path.display(), shifted.len());
    }
    Ok(())
}

/// Delays the bit stream by `k` bits (1..=7): k zero bits first, the last partial byte padded.
fn shift_right(input: &[u8], k: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + 1);
    let mut carry = 0u8;
    for &b in input {
        out.push(carry | (b >> k));
        carry = b << (8 - k);
    }
    out.push(carry);
    out
}
