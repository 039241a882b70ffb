//! Writes a synthetic X-band pass seen by two stations, for `downlink merge` throughput:
//! `OUT/passes/<A>/cadus.raw` and `OUT/passes/<B>/cadus.raw` (+ `pass.json`), FRAMES CADUs of
//! Suomi-NPP VC 16 in all, A missing the first 40 %, B the last 40 %
//! ([`downlink_bench::merge_pair`]). FRAMES = 1,700,000 is a 15-minute 15 Mbit/s pass
//! (~1.7 GB per full copy).
//!
//! `cargo run --release -p downlink-bench --bin merge_input -- OUT [FRAMES=1700000]`
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "target/bench/merge".into()));
    let frames: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_700_000);
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let p = downlink_bench::merge_pair::write_pair(&data, &out, frames)?;
    println!(
        "{}: A {} CADUs, B {} CADUs, {} in both",
        out.display(),
        p.a,
        p.b,
        p.both
    );
    Ok(())
}
