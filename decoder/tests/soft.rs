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

use common::{data, decode_with, Rng};
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
    let (events, stats) = decode_with(profile, format, input, next_len, |d| {
        d.set_flush_interleaver(flush);
        if portable {
            d.force_portable_viterbi();
        }
    });
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

#[test]
fn real_files_decode_identically_in_random_chunks_and_with_the_portable_kernel() {
    for (file, profile, format) in [
        (
            "m2_72k_8bitsoft.s",
            "meteor-m2-lrpt-72k",
            InputFormat::SoftI8,
        ),
        ("m22_72k.hard", "meteor-lrpt-72k", InputFormat::Hard),
    ] {
        let input = data(&format!("soft/{file}"));
        let reference = whole(profile, format, &input, true);
        for seed in 1..4u64 {
            let r = run(
                profile,
                format,
                &input,
                true,
                seed == 3,
                &mut random_chunks(seed, 3000),
            );
            assert_eq!(r.events, reference.events, "{file} seed {seed}");
            assert_eq!(r.stats, reference.stats, "{file} seed {seed}");
        }
    }
    let input = data("soft/m22_80k_soft.s");
    let reference = whole("meteor-lrpt-80k", InputFormat::SoftI8, &input, false);
    let r = run(
        "meteor-lrpt-80k",
        InputFormat::SoftI8,
        &input,
        false,
        false,
        &mut random_chunks(9, 200_000),
    );
    assert_eq!(r.events, reference.events);
    assert_eq!(r.counters(), m80_streaming_counters());
}

/// The 8 clean Meteor CADUs of the 72k capture, repeated `n` times with the VC counter of each
/// copy advanced (the RS parity no longer matches, so RS corrects the 3 counter bytes).
fn cadus(n: usize) -> Vec<u8> {
    let one = data("soft/expected/m22_72k_hard.clean.cadu");
    let mut out = Vec::new();
    for _ in 0..n {
        out.extend_from_slice(&one);
    }
    out
}

fn noisy_soft(bits: &[u8], amplitude: i32, noise: i32, rng: &mut Rng) -> Vec<i8> {
    let mut soft = Vec::new();
    ConvEncoder::new(false).encode_soft(bits, amplitude as i8, &mut soft);
    for x in &mut soft {
        let n = rng.below(2 * noise as u64 + 1) as i32 - noise;
        *x = (i32::from(*x) + n).clamp(-127, 127) as i8;
    }
    soft
}

fn apply_case(soft: &mut [i8], case: PhaseCase) {
    for p in soft.chunks_exact_mut(2) {
        let (a, b) = case.apply(p[0], p[1]);
        p[0] = a;
        p[1] = b;
    }
}

fn as_bytes(soft: &[i8]) -> Vec<u8> {
    soft.iter().map(|x| *x as u8).collect()
}

#[test]
fn every_phase_case_and_pair_alignment_locks() {
    let data = cadus(2);
    for case in PhaseCase::ALL {
        for garbage in [0usize, 1] {
            let mut rng = Rng(u64::from(case.index()) + 1);
            let mut soft = noisy_soft(&data, 50, 60, &mut rng);
            apply_case(&mut soft, case);
            let mut input: Vec<i8> = (0..garbage).map(|_| rng.next() as i8).collect();
            input.extend_from_slice(&soft);
            let r = whole(
                "meteor-m2-lrpt-72k",
                InputFormat::SoftI8,
                &as_bytes(&input),
                true,
            );
            let label = case.label();
            assert_eq!(
                r.stats.frames.good, 16,
                "case {label} garbage {garbage}: {:?}",
                r.stats
            );
            let inner = r.stats.inner.unwrap();
            assert_eq!(inner.phase_case, Some(label), "garbage {garbage}");
            assert_eq!(inner.phase_locks, 1, "case {label} garbage {garbage}");
            let ber = inner.channel_ber().unwrap();
            assert!((0.04..0.12).contains(&ber), "case {label}: BER {ber}");
        }
    }
}

#[test]
fn differential_links_lock_in_any_case() {
    let data = cadus(2);
    for case in [PhaseCase::new(90, false), PhaseCase::new(270, true)] {
        let mut bits = Vec::new();
        ConvEncoder::new(false).encode_bits(&data, &mut bits);
        decoder::conv::differential_encode(&mut bits, &mut [0, 0]);
        let mut soft: Vec<i8> = bits
            .iter()
            .map(|b| if *b == 1 { 90 } else { -90 })
            .collect();
        apply_case(&mut soft, case);
        let r = whole(
            "meteor-lrpt-72k",
            InputFormat::SoftI8,
            &as_bytes(&soft),
            true,
        );
        assert_eq!(r.stats.frames.good, 16, "case {}", case.label());
        assert_eq!(r.stats.rs.uncorrectable, 0);
    }
}

#[test]
fn phase_jump_and_symbol_slip_are_reacquired() {
    let data = cadus(4);
    let mut rng = Rng(5);
    let mut soft = noisy_soft(&data, 50, 60, &mut rng);
    let n = soft.len();
    // A 90-degree phase jump at 1/3, one lost soft bit (half a QPSK symbol) at 2/3.
    apply_case(&mut soft[(n / 3) & !1..], PhaseCase::new(90, false));
    soft.remove(2 * n / 3);
    let r = whole(
        "meteor-m2-lrpt-72k",
        InputFormat::SoftI8,
        &as_bytes(&soft),
        true,
    );
    let inner = r.stats.inner.unwrap();
    assert_eq!(inner.reacquisitions, 2, "{inner:?}");
    let lost = r
        .events
        .iter()
        .filter(|e| matches!(e, Event::PhaseLost { .. }))
        .count();
    assert_eq!(lost, 2);
    // Each event costs the frames around it, not the rest of the pass.
    let evs: Vec<String> = r
        .events
        .iter()
        .filter(|e| !matches!(e, Event::Packet { .. } | Event::Frame(_)))
        .map(|e| format!("{e:?}"))
        .collect();
    assert!(
        r.stats.frames.good >= 26,
        "{} of 32: {:?} {:?} {evs:#?}",
        r.stats.frames.good,
        r.stats.sync,
        r.stats.rs
    );
}

#[test]
fn rotated_80k_stream_is_derotated_before_deinterleaving() {
    let data = cadus(2);
    let mut bits = Vec::new();
    ConvEncoder::new(false).encode_bits(&data, &mut bits);
    decoder::conv::differential_encode(&mut bits, &mut [0, 0]);
    let soft: Vec<i8> = bits
        .iter()
        .map(|b| if *b == 1 { 80 } else { -80 })
        .collect();
    let mut tx = Interleaver::new();
    let mut chan = Vec::new();
    tx.push(&soft, 80, &mut chan);
    // Push the data out of the transmitter's delay lines.
    tx.push(
        &vec![80i8; decoder::soft::Deinterleaver::span()],
        80,
        &mut chan,
    );
    let case = PhaseCase::new(270, true);
    apply_case(&mut chan, case);
    let mut input: Vec<i8> = vec![30; 37];
    input.extend_from_slice(&chan);
    let r = whole(
        "meteor-lrpt-80k",
        InputFormat::SoftI8,
        &as_bytes(&input),
        true,
    );
    assert_eq!(r.stats.frames.good, 16, "{:?}", r.stats);
    let inner = r.stats.inner.unwrap();
    assert_eq!(inner.phase_locks, 1);
    assert_eq!(inner.markers_bad, 0);
}

#[test]
fn soft_input_needs_an_inner_code() {
    let p = Profile::builtin("meteor-lrpt").unwrap();
    let Err(err) = Decoder::new(&p, InputFormat::SoftI8, DecoderOptions::default()) else {
        panic!("soft input accepted without an [inner] section");
    };
    assert!(err.to_string().contains("inner"), "{err}");
    assert_eq!("soft-i8".parse::<InputFormat>(), Ok(InputFormat::SoftI8));
    assert_eq!("hard".parse::<InputFormat>(), Ok(InputFormat::Hard));
}
