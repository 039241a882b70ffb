//! Fuzz target bodies for Downlink's decoder. Each takes arbitrary bytes, must never panic, and
//! asserts invariants that hold for any input (those assertions are what the fuzzer hunts).
#![allow(clippy::panic)] // invariant violations must abort the fuzzer loudly

use decoder::frame::{FrameHeader, FrameKind, FrameLayout};
use decoder::packet::{PacketAssembler, PacketEvent, PacketStream, PrimaryHeader, SpacePacket};
use decoder::rs::{Basis, CodewordOutcome, ReedSolomon, RsParams};
use decoder::sync::{SyncEvent, SyncParams, Synchronizer};
use decoder::{Decoder, DecoderOptions, InputFormat, Profile};

/// Splits `data` into push sizes chosen by its own bytes.
fn chunks(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    let mut k = 0usize;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        k = k.wrapping_mul(31).wrapping_add(usize::from(rest[0])) % 4099 + 1;
        let n = k.min(rest.len());
        let (a, b) = rest.split_at(n);
        rest = b;
        Some(a)
    })
}

/// Frame synchronizer over an arbitrary bit stream, pushed in input-chosen chunks after the
/// whole records it starts with.
pub fn sync(data: &[u8]) -> u64 {
    let Some((&sel, body)) = data.split_first() else {
        return 0;
    };
    let params = SyncParams {
        // Selector 0x3F gives real 1020-byte CCSDS frames, the rest short synthetic ones.
        frame_len: match sel & 0x3F {
            0x3F => 1020,
            k => 16 + usize::from(k) * 4,
        },
        search_tolerance: sel >> 6,
        check_tolerance: sel >> 6,
        lock_tolerance: 1 + (sel >> 7),
        byte_aligned: sel & 0x40 != 0 && sel & 0x80 == 0,
        ..SyncParams::default()
    };
    let Ok(mut s) = Synchronizer::new(params) else {
        return 0;
    };
    let period = params.period_bits();
    let record = usize::try_from(period / 8).unwrap_or(usize::MAX);
    let mut frames = 0u64;
    // Whole periods from the start are offered as records (as a merge reads `cadus.raw`) until
    // one is refused; the rest is pushed, each chunk offered as a record first once more.
    let mut body = body;
    while let Some((rec, tail)) = body.split_at_checked(record) {
        if s.take_record(rec).is_none() {
            break;
        }
        frames += 1;
        body = tail;
    }
    for c in chunks(body) {
        let mut rest = c;
        if let Some((rec, tail)) = rest.split_at_checked(record) {
            if s.take_record(rec).is_some() {
                frames += 1;
                rest = tail;
            }
        }
        s.push(rest);
        while let Some(e) = s.poll() {
            if let SyncEvent::Frame(f) = e {
                assert_eq!(f.data.len(), params.frame_len);
                frames += 1;
            }
        }
    }
    s.finish();
    while let Some(e) = s.poll() {
        if let SyncEvent::Frame(f) = e {
            assert_eq!(f.data.len(), params.frame_len);
            frames += 1;
        }
    }
    let st = s.stats();
    assert_eq!(st.frames, frames);
    assert_eq!(
        8 * st.bytes_in + st.slip_bits_reused,
        st.bits_discarded + period * st.frames + st.truncated_bits + st.slip_bits_skipped,
        "accounting identity"
    );
    assert_eq!(st.frames, st.lock_frames + st.flywheel_frames);
    assert_eq!(st.frames, st.true_frames + st.inverted_frames);
    frames
}

/// TM and AOS header parsing under several layouts.
pub fn frame_header(data: &[u8]) -> u64 {
    let Some((&sel, frame)) = data.split_first() else {
        return 0;
    };
    let layout = FrameLayout {
        kind: if sel & 1 == 0 {
            FrameKind::Tm
        } else {
            FrameKind::Aos
        },
        frame_len: frame.len(),
        header_error_control: sel & 2 != 0,
        insert_zone_len: usize::from(sel >> 4),
        ocf: sel & 4 != 0,
        fecf: sel & 8 != 0,
    };
    let Ok(h) = FrameHeader::parse(&layout, frame) else {
        return 0;
    };
    {
        assert!(h.packet_zone.start <= h.packet_zone.end && h.packet_zone.end <= frame.len());
        assert!(h.insert_zone.end <= h.packet_zone.start);
        if let Some(o) = &h.ocf {
            assert!(o.end <= frame.len());
        }
        if let Some((covered, at)) = &h.fecf {
            assert!(covered.end <= frame.len() && *at + 2 <= frame.len());
        }
        assert!(h.vc_count < h.vc_count_modulus);
    }
    1
}

/// M_PDU reassembly: the input is a sequence of (FHP, zone length, continuity, zone bytes).
pub fn mpdu(data: &[u8]) -> u64 {
    let mut a = PacketAssembler::new(4096);
    let mut out = Vec::new();
    // The same zones still randomized (XORed with a mask a few bytes longer than each, as the
    // PN sequence over a frame is longer than its packet zone), read through the mask.
    let mut masked = PacketAssembler::new(4096);
    let mut masked_out = Vec::new();
    let mut rest = data;
    while rest.len() >= 4 {
        let fhp = u16::from_be_bytes([rest[0], rest[1]]) & 0x7FF;
        let len = usize::from(rest[2]) * 4 + 1;
        let continuous = rest[3] & 1 == 0;
        let body = &rest[4..];
        let n = len.min(body.len());
        a.push_zone(fhp, &body[..n], continuous, &mut out);
        let mask: Vec<u8> = (0..n + 3).map(|k| (k * 151 + 7) as u8).collect();
        let sent: Vec<u8> = body[..n].iter().zip(&mask).map(|(b, m)| b ^ m).collect();
        masked.push_masked_zone(fhp, &sent, &mask, continuous, &mut masked_out);
        rest = &body[n..];
    }
    a.flush(&mut out);
    masked.flush(&mut masked_out);
    assert_eq!(masked_out, out);
    assert_eq!(masked.stats(), a.stats());
    check_packets(&out, 4096);
    let st = a.stats();
    let delivered = out
        .iter()
        .filter(|e| matches!(e, PacketEvent::Packet(_)))
        .count() as u64;
    assert_eq!(st.packets, delivered);
    delivered
}

fn check_packets(events: &[PacketEvent], max: usize) {
    for e in events {
        if let PacketEvent::Packet(p) = e {
            assert!(p.data.len() <= max);
            assert_eq!(p.header.total_len(), p.data.len());
            let parsed = PrimaryHeader::parse(&p.data);
            assert_eq!(parsed, Some(p.header));
            assert!(SpacePacket::new_checked(&p.data[..]).is_ok());
        }
    }
}

/// Space packet views and the packet-stream splitter.
pub fn space_packet(data: &[u8]) -> u64 {
    if let Ok(p) = SpacePacket::new_checked(data) {
        assert_eq!(p.total_len(), data.len());
        assert_eq!(p.data().len() + 6, data.len());
    }
    let mut s = PacketStream::new(65542);
    let mut out = Vec::new();
    for c in chunks(data) {
        s.push(c, &mut out);
    }
    s.flush(&mut out);
    check_packets(&out, 65542);
    s.stats().packets
}

/// Reed-Solomon on arbitrary blocks: a claimed correction must yield a valid codeword.
pub fn reed_solomon(data: &[u8]) -> u64 {
    let Some((&sel, body)) = data.split_first() else {
        return 0;
    };
    let params = RsParams {
        e: if sel & 1 == 0 { 16 } else { 8 },
        interleave: 1 + ((sel >> 1) & 7),
        virtual_fill: if sel & 0x10 != 0 { 33 } else { 0 },
        basis: if sel & 0x20 != 0 {
            Basis::Dual
        } else {
            Basis::Conventional
        },
    };
    let Ok(rs) = ReedSolomon::new(params) else {
        return 0;
    };
    let mut block = vec![0u8; rs.block_len()];
    let n = body.len().min(block.len());
    block[..n].copy_from_slice(&body[..n]);
    let before = block.clone();
    // Every kernel this CPU has (AVX-512/GFNI, AVX2, scalar) must give the same result.
    let others = [
        ReedSolomon::new(params).map(ReedSolomon::without_avx512),
        ReedSolomon::new(params).map(ReedSolomon::without_simd),
    ];
    let Ok(out) = rs.decode(&mut block) else {
        panic!("right length must decode")
    };
    for other in others.into_iter().flatten() {
        let mut b = before.clone();
        let Ok(o) = other.decode(&mut b) else {
            panic!("right length must decode")
        };
        assert_eq!(o.codewords(), out.codewords(), "RS kernels disagree");
        assert_eq!(b, block, "RS kernels corrected differently");
    }
    for (c, o) in out.codewords().iter().enumerate() {
        let i = usize::from(params.interleave);
        let changed = before
            .iter()
            .zip(&block)
            .enumerate()
            .filter(|(k, (a, b))| k % i == c && a != b)
            .count();
        match o {
            CodewordOutcome::Clean | CodewordOutcome::Uncorrectable => assert_eq!(changed, 0),
            CodewordOutcome::Corrected { symbols } => {
                assert_eq!(changed, usize::from(*symbols));
                assert!(*symbols <= params.e);
            }
        }
    }
    let mut again = block.clone();
    let Ok(second) = rs.decode(&mut again) else {
        panic!("right length must decode")
    };
    for (first, second) in out.codewords().iter().zip(second.codewords()) {
        if matches!(
            first,
            CodewordOutcome::Corrected { .. } | CodewordOutcome::Clean
        ) {
            assert_eq!(*second, CodewordOutcome::Clean);
        }
    }
    out.codewords()
        .iter()
        .filter(|c| !matches!(c, CodewordOutcome::Uncorrectable))
        .count() as u64
}

/// The whole decoder chain on arbitrary input in every format.
pub fn decoder(data: &[u8]) -> u64 {
    let Some((&sel, body)) = data.split_first() else {
        return 0;
    };
    let names: Vec<&str> = Profile::builtin_names().collect();
    // Low nibble picks the profile, bits 4-5 the format.
    let Some(name) = names.get(usize::from(sel & 0x0F) % names.len()) else {
        return 0;
    };
    let Ok(profile) = Profile::builtin(name) else {
        return 0;
    };
    let format = match (sel >> 4) & 3 {
        0 => InputFormat::Bits,
        1 => InputFormat::Cadu,
        2 => InputFormat::Frames,
        _ => InputFormat::Packets,
    };
    let Ok(mut d) = Decoder::new(&profile, format, DecoderOptions::default()) else {
        return 0;
    };
    for c in chunks(body) {
        d.push(c);
        while d.poll().is_some() {}
    }
    d.finish();
    while d.poll().is_some() {}
    let s = d.stats();
    assert_eq!(s.cadus, s.frames.good + s.frames.rejected.total());
    s.frames.good + s.packets.total
}

/// MSU-MR image chain (space packet → header → Huffman → IDCT → assembler) on arbitrary
/// packets. The input is a sequence of records `[len: u16 BE][len bytes]`, each pushed as one
/// space packet; the assembled image must be consistent whatever arrived.
pub fn msumr(data: &[u8]) -> u64 {
    use imagery::msumr::assembler::{Assembler, PushOutcome};
    let mut a = Assembler::new();
    let mut rest = data;
    let mut placed = 0u64;
    while let [hi, lo, tail @ ..] = rest {
        let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (packet, after) = tail.split_at(n);
        if let Ok(PushOutcome::Placed { .. }) = a.push_space_packet(packet) {
            placed += 1;
        }
        rest = after;
    }
    let img = a.build();
    assert_eq!(img.height % 8, 0, "whole MCU rows");
    assert_eq!(img.line_time_ms.len(), img.height);
    for (apid, ch) in &img.channels {
        assert_eq!(*apid, ch.apid);
        assert_eq!((ch.width, ch.height), (img.width, img.height));
        assert_eq!(ch.pixels.len(), ch.width * ch.height);
        assert_eq!(ch.valid.len(), ch.pixels.len());
        assert_eq!(ch.line_time_ms.len(), ch.height);
        assert!(
            ch.pixels.iter().zip(&ch.valid).all(|(&p, &v)| v || p == 0),
            "nodata pixels are 0"
        );
    }
    placed
}

/// Two-line element parsing, strict and lenient, on arbitrary text: both agree on what is a
/// record, and every record parsed propagates or fails cleanly.
pub fn tle(data: &[u8]) -> u64 {
    use imagery::tle::TleSet;
    let text = String::from_utf8_lossy(data);
    let (lenient, errors) = TleSet::parse_lenient(&text);
    match TleSet::parse(&text) {
        Ok(strict) => {
            assert!(errors.is_empty(), "strict accepts only error-free text");
            assert_eq!(strict.len(), lenient.len());
            assert!(!strict.is_empty());
        }
        Err(_) => assert!(!errors.is_empty() || lenient.is_empty()),
    }
    for r in lenient.records() {
        if let Ok(orbit) = imagery::orbit::Propagator::new(&r.elements) {
            let _ = orbit.propagate_minutes(90.0);
        }
    }
    lenient.len() as u64
}

/// The configuration parser and validator (what `serve` and `validate` both run) on arbitrary
/// text: never a panic, a rejected file names at least one problem, and the verdict is
/// deterministic. Relative paths resolve under a directory that does not exist.
pub fn config(data: &[u8]) -> u64 {
    use config::{Config, ConfigError};
    let text = String::from_utf8_lossy(data);
    let source = std::path::Path::new("/nonexistent-downlink-fuzz/downlink.toml");
    let first = Config::from_toml_str(&text, source);
    let second = Config::from_toml_str(&text, source);
    match (&first, &second) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "deterministic");
            1 + a.input.len() as u64
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.to_string(), b.to_string(), "deterministic");
            if let ConfigError::Invalid { problems, .. } = a {
                assert!(!problems.is_empty(), "a rejected file names a problem");
            }
            0
        }
        _ => panic!("the same text both accepted and rejected"),
    }
}

/// Soft-symbol input: phase search, 80k marker sync, derotation, deinterleaver, differential
/// decoding and the Viterbi decoder in front of the whole chain, pushed in input-chosen chunks;
/// also checks that the SIMD and portable Viterbi kernels agree on the raw bytes.
pub fn soft(data: &[u8]) -> u64 {
    let Some((&sel, body)) = data.split_first() else {
        return 0;
    };
    // Bits 0-1 pick the profile, bit 2 packed hard bits instead of soft-i8, bit 3 the portable
    // Viterbi kernel. (The 80k end-of-stream flush pushes 2.6 M erasures: left off here.)
    let name = match sel & 3 {
        0 => "meteor-m2-lrpt-72k",
        1 => "meteor-lrpt-72k",
        _ => "meteor-lrpt-80k",
    };
    let Ok(profile) = Profile::builtin(name) else {
        return 0;
    };
    let format = if sel & 4 != 0 {
        InputFormat::Hard
    } else {
        InputFormat::SoftI8
    };
    let Ok(mut d) = Decoder::new(&profile, format, DecoderOptions::default()) else {
        return 0;
    };
    d.set_flush_interleaver(false);
    if sel & 8 != 0 {
        d.force_portable_viterbi();
    }
    for c in chunks(body) {
        d.push(c);
        while d.poll().is_some() {}
    }
    d.finish();
    while d.poll().is_some() {}
    let s = d.stats();
    assert_eq!(s.cadus, s.frames.good + s.frames.rejected.total());
    let Some(inner) = s.inner else {
        panic!("soft input without soft counters");
    };
    let symbols = if format == InputFormat::Hard {
        body.len() as u64 * 8
    } else {
        body.len() as u64
    };
    assert_eq!(inner.soft_bits, symbols);
    assert!(inner.channel_bit_errors <= inner.channel_bits_compared);
    assert!(inner.reacquisitions <= inner.phase_locks);

    // The Viterbi kernels (the best of this CPU, AVX2 where that is AVX-512, portable) on the
    // raw bytes as symbols.
    let mut a = decoder::conv::Viterbi::new(sel & 0x10 != 0);
    let mut b = decoder::conv::Viterbi::new(sel & 0x10 != 0).without_simd();
    let mut c2 = decoder::conv::Viterbi::new(sel & 0x10 != 0).without_avx512();
    let (mut oa, mut ob, mut oc) = (Vec::new(), Vec::new(), Vec::new());
    for c in chunks(&body[..body.len().min(1 << 16)]) {
        let c: Vec<i8> = c.iter().map(|x| *x as i8).collect();
        a.decode(&c, &mut oa);
        b.decode(&c, &mut ob);
        c2.decode(&c, &mut oc);
    }
    a.flush(&mut oa);
    b.flush(&mut ob);
    c2.flush(&mut oc);
    assert_eq!(oa, ob, "SIMD and portable Viterbi disagree");
    assert_eq!(oc, ob, "AVX2 and portable Viterbi disagree");
    assert_eq!(oa.len(), body.len().min(1 << 16) / 2);
    s.frames.good + s.packets.total
}
