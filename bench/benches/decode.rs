//! Criterion: Downlink's decoder vs the `ccsds` crate on identical CADU streams built from the
//! real Aqua capture (clean, 8 and 16 byte errors per RS codeword), both on one thread.
//!
//! `cargo bench -p downlink-bench --bench decode`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use decoder::{DecoderOptions, InputFormat};

fn bench(c: &mut Criterion) {
    let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let base = downlink_bench::aqua_base(&data).expect("Aqua capture");
    let n_cadus = 8 * 1024; // 8 MiB per iteration
    let mut g = c.benchmark_group("cadu_decode");
    g.sample_size(10);
    for errors in [0usize, 8, 16] {
        let input =
            downlink_bench::make_cadu_stream(&base, n_cadus, errors, 0x5eed + errors as u64);
        g.throughput(Throughput::Bytes(input.len() as u64));
        // Sanity: both decoders agree on what they see.
        let ours = downlink_bench::downlink_decode_bytes(
            &input,
            InputFormat::Bits,
            DecoderOptions::default(),
        );
        let peer = downlink_bench::ccsds_decode_bytes(&input);
        assert_eq!(ours.cadus, n_cadus as u64);
        assert_eq!(ours.rs.uncorrectable, 0);
        assert_eq!(peer.rs_uncorrectable, 0);
        g.bench_with_input(BenchmarkId::new("downlink", errors), &input, |b, i| {
            b.iter(|| {
                downlink_bench::downlink_decode_bytes(
                    i,
                    InputFormat::Bits,
                    DecoderOptions::default(),
                )
            })
        });
        g.bench_with_input(
            BenchmarkId::new("ccsds-0.1.0-beta.25", errors),
            &input,
            |b, i| b.iter(|| downlink_bench::ccsds_decode_bytes(i)),
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
