//! TM transfer frames (CCSDS 132.0-B-3) with OCF and FECF, built from the real Europa Clipper
//! packets (there is no real TM capture in the shared data): FECF checking, 8-bit counter
//! wrap, FHP packet extraction, and a corrupted frame rejected by its CRC.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use decoder::{Decoder, DecoderOptions, Event, InputFormat, Profile, RejectReason};

const FRAME: usize = 256;
const DATA: usize = FRAME - 6 - 4 - 2; // header, OCF, FECF
const SCID: u16 = 0x2AB;

const PROFILE: &str = r#"
name = "tm-test"
spacecraft = [{ scid = 683, name = "test" }]
[cadu]
length = 260
pn = false
[frame]
kind = "tm"
fecf = true
fill_vcid = 7
"#;

/// Packs the packet stream into TM frames on VC 1 (OCF flag set, FECF appended).
fn tm_frames(packets: &[u8], starts: &[usize]) -> Vec<Vec<u8>> {
    let crc = crc::Crc::<u16>::new(&crc::CRC_16_IBM_3740);
    let n = packets.len().div_ceil(DATA);
    (0..n)
        .map(|i| {
            let lo = i * DATA;
            let mut f = vec![0u8; FRAME];
            let w0: u16 = (SCID << 4) | (1 << 1) | 1;
            f[..2].copy_from_slice(&w0.to_be_bytes());
            f[2] = i as u8; // master channel count
            f[3] = i as u8; // VC count, wraps at 256
            let fhp = starts
                .iter()
                .find(|&&s| s >= lo && s < lo + DATA)
                .map_or(0x7FF, |&s| (s - lo) as u16);
            f[4..6].copy_from_slice(&fhp.to_be_bytes());
            let chunk = &packets[lo..(lo + DATA).min(packets.len())];
            f[6..6 + chunk.len()].copy_from_slice(chunk);
            f[6 + DATA..6 + DATA + 4].copy_from_slice(&[0xC0, 0xFF, 0xEE, i as u8]); // OCF
            let c = crc.checksum(&f[..FRAME - 2]);
            f[FRAME - 2..].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect()
}

fn europa() -> (Vec<u8>, Vec<usize>, Vec<Vec<u8>>) {
    let raw = data("packets/europa-clipper/ecm_raw2.bin");
    let mut starts = Vec::new();
    let mut originals = Vec::new();
    let mut at = 0;
    while at + 6 <= raw.len() {
        let len = 7 + usize::from(u16::from_be_bytes([raw[at + 4], raw[at + 5]]));
        starts.push(at);
        originals.push(raw[at..at + len].to_vec());
        at += len;
    }
    assert_eq!(originals.len(), 1030);
    let mut stream = raw[..at].to_vec();
    starts.push(at);
    // An idle packet fills the last frame exactly, as a spacecraft would.
    let mut idle = (DATA - at % DATA) % DATA;
    if idle < 7 {
        idle += DATA;
    }
    let field = (idle - 7) as u16;
    stream.extend_from_slice(&[0x07, 0xFF, 0xC0, 0x00]);
    stream.extend_from_slice(&field.to_be_bytes());
    stream.extend(std::iter::repeat_n(0u8, idle - 6));
    assert_eq!(stream.len() % DATA, 0);
    (stream, starts, originals)
}

fn run(frames: &[Vec<u8>]) -> (Vec<Event>, decoder::Stats) {
    let p = Profile::from_toml_str(PROFILE, "tm-test").unwrap();
    let mut d = Decoder::new(&p, InputFormat::Frames, DecoderOptions::default()).unwrap();
    d.push(&frames.concat());
    d.finish();
    let mut ev = Vec::new();
    while let Some(e) = d.poll() {
        ev.push(e);
    }
    let s = d.stats();
    assert_eq!(s.cadus, s.frames.good + s.frames.rejected.total());
    (ev, s)
}

#[test]
fn tm_frames_with_fecf_and_counter_wrap() {
    let (stream, starts, originals) = europa();
    let frames = tm_frames(&stream, &starts);
    assert!(
        frames.len() > 256 * 3,
        "the 8-bit VC counter must wrap several times"
    );
    let (events, s) = run(&frames);
    assert_eq!(s.frames.good, frames.len() as u64);
    assert_eq!(s.crc.ok, frames.len() as u64);
    assert_eq!(s.crc.failed, 0);
    assert_eq!(
        s.frames.missing_by_vcid.get(&1),
        Some(&0),
        "wraps are not gaps"
    );
    let got: Vec<Vec<u8>> = packets(&events).iter().map(|p| p.data.to_vec()).collect();
    assert!(got == originals, "{:?}", s.packets);
    assert!(s.packets.dropped.is_empty(), "{:?}", s.packets.dropped);
    assert_eq!(s.packets.idle, 1);
    // Header fields and the OCF range come from the TM header.
    let f = common::frames(&events)[300];
    assert_eq!(
        (f.header.scid, f.header.vcid, f.header.vc_count),
        (SCID, 1, 300 % 256)
    );
    let ocf = f.header.ocf.clone().unwrap();
    assert_eq!(&f.data[ocf][..3], &[0xC0, 0xFF, 0xEE]);
}

#[test]
fn corrupted_tm_frame_fails_its_crc_and_breaks_only_its_packets() {
    let (stream, starts, originals) = europa();
    let mut frames = tm_frames(&stream, &starts);
    frames[100][50] ^= 0x10;
    let (events, s) = run(&frames);
    assert_eq!(s.crc.failed, 1);
    assert_eq!(s.frames.rejected.crc_failed, 1);
    assert_eq!(s.frames.good, frames.len() as u64 - 1);
    assert_eq!(s.frames.missing_by_vcid.get(&1), Some(&1));
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Rejected { reason: RejectReason::CrcFailed, stream_bit: Some(b) } if *b == 100 * FRAME as u64 * 8
    )));
    let got: Vec<Vec<u8>> = packets(&events).iter().map(|p| p.data.to_vec()).collect();
    // Packets touching frame 100's bytes are lost; all others are delivered byte-exact.
    let lost_lo = 100 * DATA;
    let lost_hi = lost_lo + DATA;
    let expected: Vec<Vec<u8>> = originals
        .iter()
        .zip(&starts)
        .filter(|(p, &st)| st + p.len() <= lost_lo || st >= lost_hi)
        .map(|(p, _)| p.clone())
        .collect();
    assert!(expected.len() < originals.len());
    // The packet that starts in the frame after the lost one resumes at its FHP.
    assert!(
        got == expected,
        "{} vs {} packets; {:?}",
        got.len(),
        expected.len(),
        s.packets
    );
    assert!(s.packets.dropped.get("frame_gap").copied().unwrap_or(0) >= 1);
}
