//! Soft-symbol input on real Meteor-M LRPT captures (../shared/data/soft, see its README for
//! provenance and the independently verified ground truth), plus synthetic links with every
//! phase ambiguity, slips, phase jumps and noise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::BTreeMap;

use common::{data, Rng};
use decoder::conv::ConvEncoder;
use decoder::pn::Derandomizer;
use decoder::soft::{Interleaver, PhaseCase};
use decoder::{Decoder, DecoderOptions, Event, InputFormat, Profile, Stats};

struct Run {
    events: Vec<Event>,
    stats: Stats,
}

impl Run {
    fn frames(&self) -> Vec<&decoder::Frame> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Frame(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn counters(&self) -> Vec<u32> {
        self.frames().iter().map(|f| f.header.vc_count).collect()
    }

    fn packets_by_apid(&self) -> BTreeMap<u16, u64> {
        self.stats.packets.by_apid.clone()
    }
}

fn run(
    profile: &str,
    format: InputFormat,
    input: &[u8],
    flush: bool,
    portable: bool,
    next_len: &mut dyn FnMut(usize) -> usize,
) -> Run {
    let p = Profile::builtin(profile).unwrap();
    let mut d = Decoder::new(&p, format, DecoderOptions::default()).unwrap();
    d.set_flush_interleaver(flush);
    if portable {
        d.force_portable_viterbi();
    }
    let mut events = Vec::new();
    let mut at = 0;
    while at < input.len() {
        let n = next_len(at).clamp(1, input.len() - at);
        d.push(&input[at..at + n]);
        at += n;
        while let Some(e) = d.poll() {
            events.push(e);
        }
    }
    d.finish();
    while let Some(e) = d.poll() {
        events.push(e);
    }
    let stats = d.stats();
    assert_eq!(
        stats.cadus,
        stats.frames.good + stats.frames.rejected.total(),
        "every frame must land in exactly one bucket: {stats:?}"
    );
    Run { events, stats }
}

fn whole(profile: &str, format: InputFormat, input: &[u8], flush: bool) -> Run {
    run(profile, format, input, flush, false, &mut |_| input.len())
}

/// The frames of `expected/NAME.clean.cadu`, derandomized, without RS parity.
fn clean_frames(name: &str) -> Vec<Vec<u8>> {
    let cadus = data(&format!("soft/expected/{name}.clean.cadu"));
    assert_eq!(cadus.len() % 1024, 0);
    let pn = Derandomizer::new(1020);
    cadus
        .chunks(1024)
        .map(|c| {
            assert_eq!(&c[..4], &[0x1A, 0xCF, 0xFC, 0x1D]);
            let mut f = c[4..].to_vec();
            pn.apply(&mut f);
            f.truncate(892);
            f
        })
        .collect()
}

fn check_truth(r: &Run, clean: &str, counters: &[u32], apids: &[(u16, u64)]) {
    assert_eq!(r.counters(), counters, "VC counters");
    assert_eq!(r.stats.frames.good, counters.len() as u64);
    assert_eq!(
        r.stats.frames.by_vcid,
        [(5u8, counters.len() as u64)].into_iter().collect()
    );
    let want = clean_frames(clean);
    let got: Vec<Vec<u8>> = r.frames().iter().map(|f| f.data.to_vec()).collect();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "frame {i} differs from the clean CADU");
    }
    assert_eq!(r.packets_by_apid(), apids.iter().copied().collect());
}

fn random_chunks(seed: u64, max: u64) -> impl FnMut(usize) -> usize {
    let mut rng = Rng(seed);
    move |_| 1 + rng.below(max) as usize
}

const M2_COUNTERS: [u32; 1] = [4649488];
const M22_COUNTERS: [u32; 8] = [
    745973, 745974, 745975, 745976, 745977, 745978, 745979, 745980,
];
const M22_APIDS: [(u16, u64); 4] = [(64, 14), (65, 14), (66, 13), (70, 1)];

fn m80_streaming_counters() -> Vec<u32> {
    let mut c = vec![1706882];
    c.extend(1706886..=1706896);
    c
}

fn m80_flush_counters() -> Vec<u32> {
    let mut c = vec![1706882];
    c.extend(1706886..=1706926);
    c.extend([1706930, 1706931]);
    c
}

#[test]
fn meteor_m2_72k_soft_decodes_to_ground_truth() {
    let input = data("soft/m2_72k_8bitsoft.s");
    let r = whole("meteor-m2-lrpt-72k", InputFormat::SoftI8, &input, true);
    check_truth(&r, "m2_72k_8bitsoft", &M2_COUNTERS, &[(65, 1)]);
    // Locked at 180 degrees: the ASM arrives inverted; the first ASM is at soft bit 2790.
    assert_eq!(r.stats.sync.inverted_frames, 1);
    let f = r.frames()[0];
    assert_eq!(f.sync.unwrap().stream_bit, 2790 / 2);
    let inner = r.stats.inner.unwrap();
    assert_eq!(inner.phase_locks, 1);
    assert_eq!(inner.reacquisitions, 0);
    assert_eq!(inner.phase_case, Some("180"));
    let ber = inner.channel_ber().unwrap();
    assert!(ber < 0.05, "channel BER {ber}");
    assert_eq!(r.stats.packets.dropped.get("end_of_stream"), Some(&1));
}

#[test]
fn meteor_m22_72k_hard_decodes_to_ground_truth() {
    let input = data("soft/m22_72k.hard");
    let r = whole("meteor-lrpt-72k", InputFormat::Hard, &input, true);
    check_truth(&r, "m22_72k_hard", &M22_COUNTERS, &M22_APIDS);
    assert_eq!(r.stats.sync.inverted_frames, 0);
    assert_eq!(r.frames()[0].sync.unwrap().stream_bit, 9830 / 2);
    assert_eq!(r.stats.rs.uncorrectable, 0);
    assert_eq!(r.stats.inner.unwrap().reacquisitions, 0);
}

#[test]
fn meteor_m22_80k_streaming_decodes_to_ground_truth() {
    let input = data("soft/m22_80k_soft.s");
    let r = whole("meteor-lrpt-80k", InputFormat::SoftI8, &input, false);
    check_truth(
        &r,
        "m22_80k_soft",
        &m80_streaming_counters(),
        &[(64, 14), (65, 18), (66, 14), (70, 1)],
    );
    let inner = r.stats.inner.unwrap();
    assert_eq!(inner.phase_locks, 1);
    assert_eq!(inner.phase_case, Some("0"));
    assert_eq!(inner.flush_soft_bits, 0);
    let first = r.events.iter().find_map(|e| match e {
        Event::PhaseLocked { soft_bit, .. } => Some(*soft_bit),
        _ => None,
    });
    assert_eq!(first, Some(13), "marker 0x27 at soft offset 13");
}

#[test]
fn meteor_m22_80k_flushed_decodes_to_ground_truth() {
    let input = data("soft/m22_80k_soft.s");
    let r = whole("meteor-lrpt-80k", InputFormat::SoftI8, &input, true);
    check_truth(
        &r,
        "m22_80k_soft.flush",
        &m80_flush_counters(),
        &[(64, 56), (65, 61), (66, 58), (70, 4)],
    );
    assert!(r.stats.inner.unwrap().flush_soft_bits > 2_500_000);
}
