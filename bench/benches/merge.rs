//! Criterion: the merge of station copies. `merger`: the sans-IO core
//! ([`decoder::merge::Merger`]) alone, two in-memory copies of a pass (A missing the first
//! 40 %, B the last 40 %); `merge_passes`: `downlink merge`'s whole merge
//! ([`downlink::merge::merge_passes`]: read and decode both copies, merge, decode the merged
//! frames, write and fsync the merged pass) over the synthetic Suomi-NPP pair of
//! [`downlink_bench::merge_pair`] (20,000 frames, 24.6 MB of CADUs read). Throughput is in
//! bytes of the copies read.
//!
//! `cargo bench -p downlink-bench --bench merge`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use decoder::merge::{FrameCopy, Merger, Quality, DEFAULT_REORDER, DEFAULT_WINDOW};
use downlink::merge::{merge_passes, MergeSpec, StationPass};

/// The copies of an `n`-frame pass on VC 16, 892-byte frames.
fn copies(n: u32) -> Vec<Vec<FrameCopy<Bytes>>> {
    let frame = Bytes::from(vec![0x5a; 892]);
    let copy = |c: u32| FrameCopy {
        scid: 157,
        vcid: 16,
        count: c,
        modulus: 1 << 24,
        quality: Quality::Clean,
        payload: frame.clone(),
    };
    let (a0, b1) = (n * 4 / 10, n - n * 4 / 10);
    vec![(a0..n).map(copy).collect(), (0..b1).map(copy).collect()]
}

fn run_merger(copies: &[Vec<FrameCopy<Bytes>>]) -> u64 {
    let mut m = Merger::new(copies.len(), 157, DEFAULT_WINDOW, DEFAULT_REORDER);
    let mut its: Vec<_> = copies.iter().map(|c| c.iter()).collect();
    let mut out = 0u64;
    loop {
        while let Some(x) = m.poll() {
            std::hint::black_box(&x);
            out += 1;
        }
        let Some(i) = m.wants() else { break };
        match its.get_mut(i).and_then(Iterator::next) {
            Some(c) => m.push(i, c.clone()),
            None => m.finish(i),
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("merge");
    g.sample_size(10);

    let n = 100_000;
    let cp = copies(n);
    assert_eq!(run_merger(&cp), u64::from(n));
    g.throughput(Throughput::Elements(
        cp.iter().map(|c| c.len() as u64).sum(),
    ));
    g.bench_function("merger", |b| b.iter(|| run_merger(&cp)));

    let data = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("merge-bench");
    let _ = std::fs::remove_dir_all(&dir);
    let pair = downlink_bench::merge_pair::write_pair(&data, &dir, 20_000).expect("merge pair");
    let passes: Vec<StationPass> = pair
        .dirs
        .iter()
        .map(|d| StationPass::open(d).unwrap())
        .collect();
    let profile = decoder::Profile::builtin("jpss").unwrap();
    let spec = MergeSpec {
        profile: &profile,
        id: "20241206T173815Z-merged",
        station: None,
        version: 1,
        refer: true,
    };
    let staging = dir.join("out");
    let merge = || {
        let _ = std::fs::remove_dir_all(&staging);
        merge_passes(&passes, &spec, &staging).unwrap()
    };
    let rec = merge();
    let contributions = rec.contributions.unwrap();
    assert_eq!(contributions["frames"], 20_000);
    assert_eq!(contributions["duplicate_frames"], pair.both as u64);
    assert_eq!(contributions["gaps_left"], 0);
    g.throughput(Throughput::Bytes(((pair.a + pair.b) * 1024) as u64));
    g.bench_function("merge_passes", |b| b.iter(merge));
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
