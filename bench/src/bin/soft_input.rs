//! Writes the truth of the soft-symbol speed benchmark: `OUT/meteor-x16.cadu`, the real
//! Meteor-M2 pass (256 VCDUs) as CADUs (RS(255,223) I=4 conventional basis, PN, ASM) repeated
//! REPEAT times (VC counters running on) between 4 fill CADUs at each end. `downlink replay
//! --encode conv --output` turns it into the soft file (16 bytes per input byte: 16 repeats make
//! 64.1 MiB).
//!
//! `cargo run --release -p downlink-bench --bin soft_input -- OUT [REPEAT=16]`
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "target/bench".into()));
    let repeat: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let stream = downlink_bench::soft_chain::meteor_cadu_stream(&data, repeat, 4)?;
    std::fs::create_dir_all(&out)?;
    let path = out.join(format!("meteor-x{repeat}.cadu"));
    std::fs::write(&path, &stream)?;
    println!("{} {} bytes", path.display(), stream.len());
    Ok(())
}
