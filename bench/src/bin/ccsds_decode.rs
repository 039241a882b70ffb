//! The peer side of the CLI benchmark: decodes FILE with the `ccsds` crate (sync + PN + header +
//! RS on this thread only) and prints one JSON line with its counts and wall time.
//!
//! `cargo run --release -p downlink-bench --bin ccsds_decode -- FILE`
#![allow(clippy::print_stdout)]

use std::time::Instant;

fn main() -> std::io::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_default();
    let input = std::fs::read(&path)?;
    let t = Instant::now();
    let c = downlink_bench::ccsds_decode_bytes(&input);
    let s = t.elapsed().as_secs_f64();
    println!(
        "{{\"file\":{path:?},\"frames\":{},\"rs_ok\":{},\"rs_corrected\":{},\"rs_uncorrectable\":{},\"elapsed_s\":{s:.3},\"input_mbit_per_s\":{:.1}}}",
        c.frames_out,
        c.rs_ok,
        c.rs_corrected,
        c.rs_uncorrectable,
        input.len() as f64 * 8.0 / s / 1e6
    );
    Ok(())
}
