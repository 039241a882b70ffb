//! Criterion: the soft-decision Viterbi decoder alone (AVX-512 where the CPU has it, AVX2 and
//! portable kernels) and the whole
//! soft-symbol chain (phase search, Viterbi, sync, PN, RS, frames, packets of the Meteor-M N2
//! profile), on the real Meteor-M2 pass made into soft symbols, clean and at Eb/N0 = 3 dB.
//! Throughput is in elements = decoded (information) bits, so criterion's Melem/s are Mbit/s.
//!
//! `cargo bench -p downlink-bench --bench viterbi`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use decoder::conv::Viterbi;
use downlink_bench::soft_chain::{decode_soft_chain, meteor_cadu_stream, soft_symbols};

/// Builds the decoder of one kernel.
type MakeViterbi = fn() -> Viterbi;

fn bench(c: &mut Criterion) {
    let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    // 2 repeats of the pass: 520 CADUs, 532 KiB of information, 8.3 MiB of soft symbols.
    let cadus = meteor_cadu_stream(&data, 2, 4).unwrap();
    let mut g = c.benchmark_group("soft");
    g.sample_size(10);
    for (name, ebn0) in [("clean", None), ("3dB", Some(3.0))] {
        let soft = soft_symbols(&cadus, ebn0, 3);
        let soft_i8: Vec<i8> = soft.iter().map(|&b| b as i8).collect();
        // Sanity: the chain decodes every frame of the pass.
        let st = decode_soft_chain(&soft);
        assert_eq!(st.frames.by_vcid.get(&5).copied(), Some(512), "{name}");
        g.throughput(Throughput::Elements(cadus.len() as u64 * 8));
        let kernels: [(&str, MakeViterbi); 3] = [
            ("viterbi-avx512", || Viterbi::new(false)),
            ("viterbi-avx2", || Viterbi::new(false).without_avx512()),
            ("viterbi-portable", || Viterbi::new(false).without_simd()),
        ];
        for (id, make) in kernels {
            // Only the kernels this CPU runs, under their own name.
            if id != "viterbi-portable" && id.strip_prefix("viterbi-") != Some(make().kernel_name())
            {
                continue;
            }
            g.bench_with_input(BenchmarkId::new(id, name), &soft_i8, |b, s| {
                b.iter(|| {
                    let mut v = make();
                    let mut out = Vec::with_capacity(s.len() / 2);
                    v.decode(s, &mut out);
                    v.flush(&mut out);
                    out.len()
                })
            });
        }
        g.bench_with_input(BenchmarkId::new("whole-chain", name), &soft, |b, s| {
            b.iter(|| decode_soft_chain(s))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
