#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing
)]
//! Throughput of PacketStream and PacketAssembler on the VIIRS packets (repeated).
//! cargo run --release --example throughput
use decoder::packet::*;
use std::time::Instant;

fn main() {
    let one = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/data/packets/viirs/viirs_packets.dat"
    ))
    .unwrap();
    let data: Vec<u8> = one.iter().copied().cycle().take(one.len() * 100).collect();
    let mb = data.len() as f64 / 1e6;
    for zone_size in [884usize, 100] {
        // Precompute zones with first-header pointers from packet starts.
        let mut starts = Vec::new();
        let mut o = 0;
        while o < data.len() {
            starts.push(o);
            o += PrimaryHeader::parse(&data[o..]).unwrap().total_len();
        }
        let zones: Vec<(u16, &[u8])> = data
            .chunks(zone_size)
            .enumerate()
            .map(|(z, c)| {
                let lo = z * zone_size;
                let i = starts.partition_point(|&s| s < lo);
                let fhp = match starts.get(i) {
                    Some(&s) if s < lo + c.len() => (s - lo) as u16,
                    _ => FHP_NO_HEADER,
                };
                (fhp, c)
            })
            .collect();
        let mut times = Vec::new();
        for _ in 0..7 {
            let mut asm = PacketAssembler::default();
            let mut out = Vec::with_capacity(20_000);
            let t = Instant::now();
            for (fhp, z) in &zones {
                asm.push_zone(*fhp, z, true, &mut out);
            }
            times.push(t.elapsed().as_secs_f64());
            assert_eq!(asm.stats().packets, 10_000);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "assembler zone {zone_size}: median {:.0} MB/s",
            mb / times[3]
        );
    }
    let mut times = Vec::new();
    for _ in 0..7 {
        let mut s = PacketStream::default();
        let mut out = Vec::with_capacity(20_000);
        let t = Instant::now();
        for c in data.chunks(4096) {
            s.push(c, &mut out);
        }
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(s.stats().packets, 10_000);
    }
    times.sort_by(f64::total_cmp);
    println!("stream 4096-byte chunks: median {:.0} MB/s", mb / times[3]);
}
