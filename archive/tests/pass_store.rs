//! The store-once pass archive on real captures (../shared/data): a pass written as the daemon
//! writes it gives back, through its indexes, exactly the frames of each VC and the packets of
//! each APID that the decoder delivered (what the old per-VC and per-APID files held, byte for
//! byte); indexes rebuilt after a crash equal the ones written live; a reader without indexes,
//! and a pass in the old layout, read the same.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use archive::pass::PassArchive;
use archive::pass_store::{self, Layout, StoredPass};
use decoder::{Decoder, DecoderOptions, Event, InputFormat, Profile};

fn data(rel: &str) -> Option<Vec<u8>> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(rel);
    match std::fs::read(&p) {
        Ok(b) => Some(b),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{}: {e} (test data is required under CI)",
                p.display()
            );
            eprintln!("skipped: {} missing", p.display());
            None
        }
    }
}

/// What the decoder delivered: per-VC frame bytes and per-APID packet bytes (the contents of
/// the old `frames/vcid-NN.bin` and `packets/apid-NNNN.pkts`), and the raw CADU bytes.
#[derive(Default, Debug)]
struct Delivered {
    frames: BTreeMap<u8, Vec<u8>>,
    packets: BTreeMap<u16, Vec<u8>>,
    cadus: u64,
}

impl Delivered {
    /// Bytes the old layout wrote: raw CADUs (when kept) + every frame + every packet.
    fn old_layout_bytes(&self, keep_raw: bool) -> u64 {
        let f: usize = self.frames.values().map(Vec::len).sum();
        let p: usize = self.packets.values().map(Vec::len).sum();
        (f + p) as u64 + if keep_raw { self.cadus } else { 0 }
    }
}

/// Decodes `input` as the daemon does and archives each event as the pipeline does.
fn write_pass(
    root: &Path,
    profile: &Profile,
    format: InputFormat,
    input: &[u8],
    keep_raw: bool,
) -> (PathBuf, Delivered) {
    let keep_raw = keep_raw && !matches!(format, InputFormat::Frames | InputFormat::Packets);
    let mut a = PassArchive::create(
        root,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_733_500_000),
        "x",
        keep_raw,
        Duration::from_secs(1),
        1 << 20,
    )
    .unwrap();
    let opts = DecoderOptions {
        raw_cadus: keep_raw,
        frames: true,
        fill_frames: false,
        packets: true,
    };
    let mut dec = Decoder::new(profile, format, opts).unwrap();
    let mut out = Delivered::default();
    let mut take = |dec: &mut Decoder, a: &mut PassArchive| {
        while let Some(ev) = dec.poll() {
            match ev {
                Event::RawCadu { data, .. } => {
                    out.cadus += data.len() as u64;
                    a.cadu(&data).unwrap();
                }
                Event::Frame(f) => {
                    out.frames
                        .entry(f.header.vcid)
                        .or_default()
                        .extend_from_slice(&f.data);
                    a.frame(f.header.vcid, f.header.vc_count, &f.data).unwrap();
                }
                Event::Packet { vcid, packet } => {
                    out.packets
                        .entry(packet.header.apid)
                        .or_default()
                        .extend_from_slice(&packet.data);
                    a.packet(packet.header.apid, vcid, &packet.data).unwrap();
                }
                _ => {}
            }
        }
    };
    // Odd-sized pushes, as datagrams arrive.
    for chunk in input.chunks(7919) {
        dec.push(chunk);
        take(&mut dec, &mut a);
    }
    dec.finish();
    take(&mut dec, &mut a);
    a.sync().unwrap();
    (a.dir().to_owned(), out)
}

fn read_all(mut r: Box<dyn Read + Send>) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

/// The pass reads back exactly what was delivered.
fn assert_reads_back(dir: &Path, profile: &Profile, want: &Delivered, what: &str) {
    let p = StoredPass::open(dir);
    assert_eq!(
        p.vcids(profile).unwrap(),
        want.frames.keys().copied().collect::<Vec<_>>(),
        "{what}: VCIDs"
    );
    assert_eq!(
        p.apids(profile).unwrap(),
        want.packets.keys().copied().collect::<Vec<_>>(),
        "{what}: APIDs"
    );
    for (v, bytes) in &want.frames {
        let got = read_all(p.frames(profile, *v).unwrap());
        assert!(
            &got == bytes,
            "{what}: VC {v}: {} vs {} bytes",
            got.len(),
            bytes.len()
        );
    }
    for (apid, bytes) in &want.packets {
        let got = read_all(p.packets(profile, *apid).unwrap());
        assert!(
            &got == bytes,
            "{what}: APID {apid}: {} vs {} bytes",
            got.len(),
            bytes.len()
        );
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Writes, reads back, rebuilds the indexes and reads again; returns (input bytes, bytes in the
/// pass directory, bytes the old layout wrote).
fn check(
    file: &str,
    profile: &str,
    format: InputFormat,
    keep_raw: bool,
) -> Option<(u64, u64, u64)> {
    let input = data(file)?;
    let profile = Profile::builtin(profile).unwrap();
    let root = tempfile::tempdir().unwrap();
    let (dir, want) = write_pass(root.path(), &profile, format, &input, keep_raw);
    assert!(!want.packets.is_empty(), "{file}: no packets");
    let what = format!("{file} (keep_raw {keep_raw})");
    assert_reads_back(&dir, &profile, &want, &what);
    let bytes = dir_bytes(&dir);

    // Crash recovery rebuilds the indexes from the data: identical to the ones written live.
    let fx = std::fs::read(dir.join(pass_store::FRAME_INDEX)).unwrap_or_default();
    let px = std::fs::read(dir.join(pass_store::PACKET_INDEX)).unwrap();
    // A short (torn) index and a missing one.
    std::fs::write(dir.join(pass_store::FRAME_INDEX), &fx[..fx.len() / 2 + 3]).unwrap();
    std::fs::remove_file(dir.join(pass_store::PACKET_INDEX)).unwrap();
    let r = pass_store::rebuild(&dir, &profile).unwrap().unwrap();
    assert_eq!(r.trimmed, 0);
    assert_eq!(
        std::fs::read(dir.join(pass_store::FRAME_INDEX)).unwrap(),
        fx,
        "{what}: rebuilt frames.idx"
    );
    assert_eq!(
        std::fs::read(dir.join(pass_store::PACKET_INDEX)).unwrap(),
        px,
        "{what}: rebuilt packets.idx"
    );
    assert_reads_back(&dir, &profile, &want, &format!("{what}, rebuilt"));

    // Without indexes the reader decodes the whole primary: same bytes.
    std::fs::remove_file(dir.join(pass_store::FRAME_INDEX)).unwrap();
    std::fs::remove_file(dir.join(pass_store::PACKET_INDEX)).unwrap();
    assert_reads_back(&dir, &profile, &want, &format!("{what}, no index"));

    Some((input.len() as u64, bytes, want.old_layout_bytes(keep_raw)))
}

const CAPTURES: [(&str, &str); 4] = [
    ("cadu/aqua.20241206T175646.dat", "eos"),
    ("cadu/metopb.20241206T152751.dat", "metop"),
    ("cadu/noaa20.20241206T162710.dat", "jpss"),
    ("cadu/npp.20241206T173815.dat", "jpss"),
];

#[test]
fn real_captures_read_back_through_the_indexes() {
    for (file, profile) in CAPTURES {
        for keep_raw in [true, false] {
            let Some((input, now, old)) = check(file, profile, InputFormat::Bits, keep_raw) else {
                continue;
            };
            eprintln!(
                "{file} keep_raw_cadus={keep_raw}: input {input} B, store-once {now} B ({:.3} per input byte), old layout {old} B ({:.3} per input byte)",
                now as f64 / input as f64,
                old as f64 / input as f64
            );
            // Each byte once plus 8 bytes per frame and packet: about 1x, where the old layout
            // wrote about 2.6x.
            assert!(now * 10 < old * 6, "{file}: {now} vs {old}");
        }
    }
}

#[test]
fn meteor_frames_input_reads_back() {
    let mut input = Vec::new();
    for s in ["30", "40", "50"] {
        match data(&format!("vcdu/meteor-m2/2022_12_20_20_25_{s}.vcdu")) {
            Some(b) => input.extend(b),
            None => return,
        }
    }
    let profile = Profile::builtin("meteor-lrpt").unwrap();
    let root = tempfile::tempdir().unwrap();
    let (dir, want) = write_pass(root.path(), &profile, InputFormat::Frames, &input, true);
    assert!(want.packets.len() >= 4, "{:?}", want.packets.keys());
    assert!(matches!(
        StoredPass::open(&dir).layout(),
        Layout::Store(InputFormat::Frames, _)
    ));
    assert_reads_back(&dir, &profile, &want, "meteor");
}

/// A packet-stream pass: the per-APID packets equal ccsdspy's split_by_apid/ byte for byte.
#[test]
fn packet_stream_pass_equals_reference_split_by_apid() {
    let Some(tlm) = data("packets/cygnss/CYGNSS_F7_L0_2022_086_10_15_V01_F__first101pkts.tlm")
    else {
        return;
    };
    let profile = Profile::builtin("jpss").unwrap();
    let root = tempfile::tempdir().unwrap();
    let (dir, want) = write_pass(root.path(), &profile, InputFormat::Packets, &tlm, true);
    assert_reads_back(&dir, &profile, &want, "cygnss");
    let reference = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/packets/cygnss/split_by_apid");
    let p = StoredPass::open(&dir);
    let apids = p.apids(&profile).unwrap();
    assert_eq!(apids.len(), std::fs::read_dir(&reference).unwrap().count());
    for apid in apids {
        let a = std::fs::read(reference.join(format!("apid{apid:05}.tlm"))).unwrap();
        let b = read_all(p.packets(&profile, apid).unwrap());
        assert!(a == b, "APID {apid}: {} vs {} bytes", a.len(), b.len());
    }
    // Only whole packets survive a torn tail, and the index is rebuilt to match.
    let raw = dir.join(pass_store::PACKETS);
    let len = std::fs::metadata(&raw).unwrap().len();
    let f = std::fs::OpenOptions::new().append(true).open(&raw).unwrap();
    f.set_len(len + 5).unwrap();
    let r = pass_store::rebuild(&dir, &profile).unwrap().unwrap();
    assert_eq!(r.trimmed, 5);
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), len);
    assert_reads_back(&dir, &profile, &want, "cygnss, rebuilt");
}

/// A pass written before store-once (per-VC and per-APID files) reads as it is.
#[test]
fn old_layout_passes_are_read_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("frames")).unwrap();
    std::fs::create_dir_all(d.join("packets")).unwrap();
    std::fs::write(d.join("frames/vcid-05.bin"), vec![1u8; 892 * 2]).unwrap();
    std::fs::write(d.join("frames/vcid-16.bin"), vec![2u8; 892]).unwrap();
    std::fs::write(d.join("packets/apid-0064.pkts"), b"abc").unwrap();
    std::fs::write(d.join("cadus.raw"), vec![0u8; 1024]).unwrap();
    let profile = Profile::builtin("meteor-lrpt").unwrap();
    let p = StoredPass::open(d);
    assert_eq!(p.layout(), &Layout::Legacy);
    assert_eq!(p.vcids(&profile).unwrap(), vec![5, 16]);
    assert_eq!(p.apids(&profile).unwrap(), vec![64]);
    assert_eq!(read_all(p.frames(&profile, 16).unwrap()), vec![2u8; 892]);
    assert_eq!(read_all(p.packets(&profile, 64).unwrap()), b"abc");
    assert!(read_all(p.packets(&profile, 65).unwrap()).is_empty());
    assert_eq!(
        p.whole_input(),
        (InputFormat::Cadu, vec![d.join("cadus.raw")])
    );
    std::fs::remove_file(d.join("cadus.raw")).unwrap();
    assert_eq!(
        p.whole_input(),
        (
            InputFormat::Frames,
            vec![d.join("frames/vcid-05.bin"), d.join("frames/vcid-16.bin")]
        )
    );
    assert!(pass_store::rebuild(d, &profile).unwrap().is_none());
}

/// An index that names the wrong CADUs is refused, never read as other data.
#[test]
fn an_index_that_does_not_match_the_data_is_an_error() {
    let Some(input) = data("cadu/noaa20.20241206T162710.dat") else {
        return;
    };
    let profile = Profile::builtin("jpss").unwrap();
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = write_pass(root.path(), &profile, InputFormat::Bits, &input, true);
    let ix = dir.join(pass_store::FRAME_INDEX);
    let mut fx = std::fs::read(&ix).unwrap();
    // The first VC 16 record now names the CADU of a frame of another VC.
    let entries = pass_store::frame_index(&dir).unwrap().unwrap();
    let other = entries.iter().find(|e| e.vcid != 16).unwrap().record;
    let first16 = entries.iter().position(|e| e.vcid == 16).unwrap();
    fx[first16 * 8..first16 * 8 + 4].copy_from_slice(&other.to_le_bytes());
    std::fs::write(&ix, &fx).unwrap();
    let mut v = Vec::new();
    let err = StoredPass::open(&dir)
        .frames(&profile, 16)
        .unwrap()
        .read_to_end(&mut v)
        .unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

/// CADUs offered shared (`cadu_shared`, what a merge writes: slices of its reads) land in
/// `cadus.raw` in order with those offered by copy, and the frames of each are indexed to
/// their own CADU, across many vectored writes and the final flush.
#[test]
fn shared_and_copied_cadus_are_written_in_order() {
    let t = tempfile::tempdir().unwrap();
    let mut files = pass_store::PassFiles::new(t.path(), true, None);
    let mut want = Vec::new();
    for k in 0..1500u32 {
        let cadu: Vec<u8> = (0..1024u32).map(|i| (i ^ k) as u8).collect();
        want.extend_from_slice(&cadu);
        if k % 7 == 3 {
            files.cadu(&cadu).unwrap();
        } else {
            files.cadu_shared(bytes::Bytes::from(cadu)).unwrap();
        }
        files.frame((k % 3) as u8, k, &[]).unwrap();
    }
    files.sync_all().unwrap();
    assert_eq!(
        std::fs::read(t.path().join(pass_store::CADUS)).unwrap(),
        want
    );
    let index = pass_store::frame_index(t.path()).unwrap().unwrap();
    assert_eq!(index.len(), 1500);
    assert!(index
        .iter()
        .enumerate()
        .all(|(k, e)| e.record == k as u32 && e.vc_count == k as u32 && e.vcid == (k % 3) as u8));
}

/// A merged pass that keeps its CADUs in its station passes (`cadus.ref`) reads exactly as a
/// pass holding them itself, wherever the archive is moved; a station pass that is gone or
/// changed is an error naming it, never other bytes.
#[test]
fn a_pass_of_cadu_references_reads_as_the_cadus_it_names() {
    use archive::cadu_refs::{RefHeader, RefSource, CADU_REFS, FORMAT};
    let Some(input) = data("cadu/npp.20241206T173815.dat") else {
        return;
    };
    let profile = Profile::builtin("jpss").unwrap();
    let root = tempfile::tempdir().unwrap();
    let passes = root.path().join("passes");
    std::fs::create_dir_all(&passes).unwrap();
    // Two station copies of the same capture.
    let mut copies = Vec::new();
    let mut want = Delivered::default();
    for name in ["a", "b"] {
        let tmp = root.path().join(format!("tmp-{name}"));
        let (dir, delivered) = write_pass(&tmp, &profile, InputFormat::Bits, &input, true);
        let to = passes.join(format!("20241206T173815Z-{name}"));
        std::fs::rename(&dir, &to).unwrap();
        copies.push(to);
        want = delivered;
    }
    let raw = std::fs::read(copies[0].join(pass_store::CADUS)).unwrap();
    let n = (raw.len() / 1024) as u32;
    assert!(n > 300, "{n} CADUs");
    // The merged pass: a third from each copy, a third copied into its own cadus.raw.
    let merged = passes.join("20241206T173815Z-merged");
    std::fs::create_dir_all(&merged).unwrap();
    let mut files = pass_store::PassFiles::new(&merged, true, None);
    files
        .refer(&RefHeader {
            format: FORMAT.into(),
            cadu_length: 1024,
            sources: copies
                .iter()
                .map(|d| {
                    let f = std::fs::File::open(d.join(pass_store::CADUS)).unwrap();
                    RefSource {
                        pass: d.file_name().unwrap().to_string_lossy().into_owned(),
                        dir: d.clone(),
                        bytes: raw.len() as u64,
                        crc32: archive::cadu_refs::fingerprint(&f, raw.len() as u64, 1024).unwrap(),
                    }
                })
                .collect(),
        })
        .unwrap();
    for k in 0..n {
        match k * 3 / n {
            0 => files.cadu_ref(0, k).unwrap(),
            1 => files.cadu_ref(1, k).unwrap(),
            _ => {
                let c = &raw[k as usize * 1024..(k as usize + 1) * 1024];
                files.cadu_shared(bytes::Bytes::copy_from_slice(c)).unwrap();
            }
        }
    }
    files.sync_all().unwrap();
    drop(files);
    for ix in [pass_store::FRAME_INDEX, pass_store::PACKET_INDEX] {
        std::fs::copy(copies[0].join(ix), merged.join(ix)).unwrap();
    }
    let own = std::fs::metadata(merged.join(pass_store::CADUS))
        .unwrap()
        .len();
    assert_eq!(
        own,
        u64::from(n - 2 * n / 3) * 1024,
        "only the copied third"
    );

    let whole = |dir: &Path| {
        let (format, r) = StoredPass::open(dir).open_whole().unwrap().unwrap();
        assert_eq!(format, InputFormat::Cadu);
        read_all(r)
    };
    assert!(whole(&merged) == raw, "the CADUs named are the copy's");
    assert_reads_back(&merged, &profile, &want, "cadus.ref");
    // The indexes rebuilt from the references equal the copy's.
    let fx = std::fs::read(merged.join(pass_store::FRAME_INDEX)).unwrap();
    std::fs::remove_file(merged.join(pass_store::FRAME_INDEX)).unwrap();
    pass_store::rebuild(&merged, &profile).unwrap().unwrap();
    assert_eq!(
        std::fs::read(merged.join(pass_store::FRAME_INDEX)).unwrap(),
        fx
    );

    // The archive moved whole: the station passes are found beside the merged one.
    let moved = root.path().join("moved");
    std::fs::rename(&passes, &moved).unwrap();
    let merged = moved.join("20241206T173815Z-merged");
    assert!(whole(&merged) == raw, "moved archive");

    // A station pass replaced by another of the same length, shortened, or gone: an error
    // naming it.
    let b = moved.join("20241206T173815Z-b").join(pass_store::CADUS);
    let mut other = raw.clone();
    let last = other.len() - 1;
    other[last] ^= 0x40;
    std::fs::write(&b, &other).unwrap();
    let err = StoredPass::open(&merged).open_whole().err().unwrap();
    assert!(
        err.to_string().contains("20241206T173815Z-b")
            && err.to_string().contains("not the one the merge read"),
        "{err}"
    );
    std::fs::write(&b, &raw).unwrap();
    assert!(whole(&merged) == raw, "the same bytes again");
    let f = std::fs::OpenOptions::new().write(true).open(&b).unwrap();
    f.set_len(raw.len() as u64 - 1024).unwrap();
    drop(f);
    let err = StoredPass::open(&merged)
        .frames(&profile, 16)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("20241206T173815Z-b") && err.to_string().contains("bytes"),
        "{err}"
    );
    std::fs::remove_file(&b).unwrap();
    let err = StoredPass::open(&merged).open_whole().err().unwrap();
    assert!(err.to_string().contains("20241206T173815Z-b"), "{err}");
    assert!(merged.join(CADU_REFS).is_file());
}
