//! End-to-end: one pass seen by two antennas becomes one better pass. A real capture is split
//! into two station copies with known losses (A misses the first 40 %, B the last 40 %, each
//! with Reed-Solomon-uncorrectable bursts; A also with random bit errors that RS corrects),
//! replayed with `downlink replay` over UDP to two inputs of one daemon. The merged pass is
//! listed like any other; its counters equal `downlink decode --json` of the capture's frames
//! that at least one copy had, its contributions equal the split's ground truth; another
//! satellite received at the same time is never merged; a late copy re-runs the merge (version
//! bumped). Meteor: products of the merged pass equal those of the full capture, byte for
//! byte. `downlink merge` does the same from the command line, idempotently, and explains a
//! wrong-SCID copy and a truncated copy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::*;

const PN: [u8; 8] = [0xff, 0x48, 0x0e, 0xc0, 0x9a, 0x0d, 0x70, 0xbc];

/// Starts a daemon with one input per name (all UDP, `format`, `profile`).
fn multi_daemon(names: &[&str], format: &str, profile: &str, sections: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let mut cfg = format!(
        "[archive]\npath = \"{}\"\nfsync_interval = \"100ms\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
         [pass]\nlos_timeout = \"2s\"\n[station]\nname = \"madison\"\nlat = 43.07\nlon = -89.41\n\
         alt_m = 270\n{sections}\n",
        archive.display()
    );
    for n in names {
        cfg.push_str(&format!(
            "[[input]]\nname = \"{n}\"\nlisten = \"udp://127.0.0.1:0\"\nformat = \"{format}\"\nprofile = \"{profile}\"\n"
        ));
    }
    let path = dir.path().join("downlink.toml");
    std::fs::write(&path, cfg).unwrap();
    Daemon::launch(serve_cmd(&path), dir, archive)
}

/// The UDP port of input `i`.
fn port(d: &Daemon, i: usize) -> u16 {
    let s = json_of(d.http, "/api/v1/status");
    let a = s["inputs"][i]["local_addr"].as_str().unwrap();
    a.rsplit(':').next().unwrap().parse().unwrap()
}

/// `downlink replay FILE --to udp://127.0.0.1:PORT` with extra impairment arguments.
fn replay(file: &Path, port: u16, extra: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_downlink"))
        .arg("replay")
        .arg(file)
        .args(["--to", &format!("udp://127.0.0.1:{port}")])
        .args(["--rate", "40Mbit", "-q"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// VCID of an aligned CCSDS-randomized AOS CADU (header derandomized).
fn vcid_of(cadu: &[u8]) -> u8 {
    (cadu[5] ^ PN[1]) & 0x3F
}

/// Makes every codeword of the CADU uncorrectable (40 byte errors in each of 4).
fn smash(cadu: &mut [u8]) {
    for k in 0..160 {
        cadu[4 + 200 + k * 4] ^= 0x5A;
    }
}

fn records(archive: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(archive.join("passes"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("pass.json")).ok())
        .map(|b| serde_json::from_slice(&b).unwrap())
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn merged(archive: &Path) -> Option<serde_json::Value> {
    records(archive)
        .into_iter()
        .find(|r| r["input"] == "merged")
}

fn decode(file: &Path, profile: &str, format: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args([
            "decode",
            file.to_str().unwrap(),
            "-p",
            profile,
            "-f",
            format,
        ])
        .args(["--json", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `downlink merge` of `dirs` (and `extra` arguments): its output, the merged pass's record.
fn merge_cli<P: AsRef<std::ffi::OsStr>>(dirs: &[P], extra: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .arg("merge")
        .args(dirs)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The split of the SNPP capture: which aligned CADUs each station has and which are lost to
/// RS there.
struct Split {
    cadus: Vec<Vec<u8>>,
    a: std::ops::Range<usize>,
    b: std::ops::Range<usize>,
    burst_a: BTreeSet<usize>,
    burst_b: BTreeSet<usize>,
}

impl Split {
    fn new() -> Split {
        let aligned = aligned_cadus(&std::fs::read(data("cadu/npp.20241206T173815.dat")).unwrap());
        let cadus: Vec<Vec<u8>> = aligned.chunks(1024).map(<[u8]>::to_vec).collect();
        let n = cadus.len();
        let (a0, b1) = (n * 4 / 10, n - n * 4 / 10);
        // Bursts inside the overlap (the other copy covers them) and outside it (lost).
        let burst_a: BTreeSet<usize> = (a0 + 30..a0 + 36).chain(800..803).collect();
        let burst_b: BTreeSet<usize> = (a0 + 60..a0 + 64).chain(100..102).collect();
        Split {
            cadus,
            a: a0..n,
            b: 0..b1,
            burst_a,
            burst_b,
        }
    }

    fn copy(&self, range: &std::ops::Range<usize>, burst: &BTreeSet<usize>) -> Vec<u8> {
        let mut out = Vec::new();
        for i in range.clone() {
            let mut c = self.cadus[i].clone();
            if burst.contains(&i) {
                smash(&mut c);
            }
            out.extend(c);
        }
        out
    }

    fn good_a(&self, i: usize) -> bool {
        self.a.contains(&i) && !self.burst_a.contains(&i)
    }

    fn good_b(&self, i: usize) -> bool {
        self.b.contains(&i) && !self.burst_b.contains(&i)
    }

    /// The capture's non-fill CADUs that at least one copy had.
    fn truth_file(&self, path: &Path) -> (u64, u64, u64, u64) {
        let (mut only_a, mut only_b, mut both, mut lost) = (0, 0, 0, 0);
        let mut out = Vec::new();
        for (i, c) in self.cadus.iter().enumerate() {
            if vcid_of(c) == 63 {
                continue;
            }
            match (self.good_a(i), self.good_b(i)) {
                (true, true) => both += 1,
                (true, false) => only_a += 1,
                (false, true) => only_b += 1,
                (false, false) => {
                    lost += 1;
                    continue;
                }
            }
            out.extend(c);
        }
        std::fs::write(path, out).unwrap();
        (only_a, only_b, both, lost)
    }
}

/// The merged pass's counters equal the decode of the frames some copy had: per VC, the
/// frames, gaps and missing frames, and the whole packet layer.
fn assert_same_frames_and_packets(merged: &serde_json::Value, truth: &serde_json::Value) {
    for k in ["by_vcid", "missing_by_vcid", "gaps_by_vcid"] {
        assert_eq!(merged["frames"][k], truth["frames"][k], "frames.{k}");
    }
    assert_eq!(merged["frames"]["good"], truth["frames"]["good"]);
    assert_eq!(merged["packets"], truth["packets"], "packets");
}

#[test]
fn two_antennas_merge_into_one_better_pass() {
    let split = Split::new();
    let tmp = tempfile::tempdir().unwrap();
    let (fa, fb) = (tmp.path().join("a.cadu"), tmp.path().join("b.cadu"));
    std::fs::write(&fa, split.copy(&split.a, &split.burst_a)).unwrap();
    std::fs::write(&fb, split.copy(&split.b, &split.burst_b)).unwrap();
    let truth_path = tmp.path().join("truth.cadu");
    let (only_a, only_b, both, lost) = split.truth_file(&truth_path);
    let truth = decode(&truth_path, "jpss", "cadu");
    let full = decode(&data("cadu/npp.20241206T173815.dat"), "jpss", "bits");
    assert!(
        lost > 0 && both > 0,
        "the split loses frames in both copies"
    );

    let d = multi_daemon(&["ant_a", "ant_b", "other", "late"], "bits", "jpss", "");
    // A with random bit errors RS corrects, B clean; NOAA-20 at the same time on a third input.
    let mut a = replay(&fa, port(&d, 0), &["--ber", "1e-4", "--seed", "7"]);
    let mut b = replay(&fb, port(&d, 1), &[]);
    let mut o = replay(&data("cadu/noaa20.20241206T162710.dat"), port(&d, 2), &[]);
    for c in [&mut a, &mut b, &mut o] {
        assert!(c.wait().unwrap().success());
    }
    wait_for("the merged pass", Duration::from_secs(60), || {
        merged(&d.archive).is_some()
    });
    // NOAA-20's pass closes on its own LOS timeout, maybe after the merge on a loaded machine.
    wait_for("the three station passes", Duration::from_secs(60), || {
        let recs = records(&d.archive);
        ["ant_a", "ant_b", "other"]
            .iter()
            .all(|i| recs.iter().any(|r| r["input"] == *i))
    });
    let m = merged(&d.archive).unwrap();
    let recs = records(&d.archive);
    let id_of = |input: &str| {
        recs.iter()
            .find(|r| r["input"] == input)
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let (ida, idb, ido) = (id_of("ant_a"), id_of("ant_b"), id_of("other"));
    eprintln!(
        "merged {}: {}",
        m["id"],
        serde_json::to_string_pretty(&m["contributions"]).unwrap()
    );
    let from: BTreeSet<&str> = m["merged_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(from, BTreeSet::from([ida.as_str(), idb.as_str()]));
    assert!(
        !from.contains(ido.as_str()),
        "NOAA-20 is never merged with SNPP"
    );
    assert_eq!(m["scid"], 157);
    assert_eq!(m["merge_version"], 1);
    assert_eq!(m["station"], "madison");
    assert_eq!(m["station_location"]["lat"], 43.07);

    // Frame for frame and packet for packet where at least one copy had the frame.
    assert_same_frames_and_packets(&m["counters"], &truth);
    let c = &m["contributions"];
    let (ca, cb) = (&c["madison/ant_a"], &c["madison/ant_b"]);
    assert_eq!(ca["unique"], only_a, "{c}");
    assert_eq!(cb["unique"], only_b, "{c}");
    assert_eq!(ca["duplicates"], both);
    assert_eq!(cb["duplicates"], both);
    assert_eq!(c["duplicate_frames"], both);
    assert_eq!(c["conflict_frames"], 0);
    assert_eq!(c["frames"], only_a + only_b + both);
    assert_eq!(
        c["gaps_left"].as_u64().unwrap(),
        lost,
        "the frames lost in both copies, and no other"
    );
    assert_eq!(
        ca["rejected"]["rs_uncorrectable"].as_u64().unwrap(),
        split.burst_a.len() as u64
    );
    assert_eq!(
        cb["rejected"]["rs_uncorrectable"].as_u64().unwrap(),
        split.burst_b.len() as u64
    );
    // B's clean copies beat A's RS-corrected ones in the overlap.
    let rec_a = recs.iter().find(|r| r["input"] == "ant_a").unwrap();
    assert!(
        rec_a["counters"]["rs"]["frames_corrected"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        m["counters"]["rs"]["frames_corrected"].as_u64().unwrap()
            < rec_a["counters"]["rs"]["frames_corrected"]
                .as_u64()
                .unwrap()
    );
    // Where no frame was lost in both copies (VC 16 holds them all), the merged pass has more
    // than either copy, and the full capture is the bound.
    let good = |r: &serde_json::Value| r["frames"]["by_vcid"]["16"].as_u64().unwrap();
    assert_eq!(good(&m["counters"]) + lost, good(&full));

    // Listed like any other pass, with its provenance.
    let list = json_of(d.http, "/api/v1/passes");
    let listed = list["passes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == m["id"])
        .expect("the merged pass is listed");
    assert_eq!(listed["merged_from"].as_array().unwrap().len(), 2);
    let one = json_of(
        d.http,
        &format!("/api/v1/passes/{}", m["id"].as_str().unwrap()),
    );
    assert_eq!(one["counters"]["packets"], truth["packets"]);
    assert_eq!(one["contributions"]["gaps_left"], lost);

    // A late copy (a third antenna, after the merge) re-runs it: same id, version 2.
    let mut l = replay(&fb, port(&d, 3), &[]);
    assert!(l.wait().unwrap().success());
    wait_for("the re-merge", Duration::from_secs(60), || {
        merged(&d.archive).is_some_and(|r| r["merge_version"] == 2)
    });
    let m2 = merged(&d.archive).unwrap();
    assert_eq!(m2["id"], m["id"]);
    assert_eq!(m2["merged_from"].as_array().unwrap().len(), 3);
    assert_same_frames_and_packets(&m2["counters"], &truth);
    let metrics = d.get("/metrics").unwrap();
    assert!(
        metrics.contains("downlink_merges_total{result=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("downlink_merges_total{result=\"failed\"} 0"));

    // `downlink merge` on the same station passes: the same pass, again and again.
    let out_dir = tmp.path().join("cli");
    let passes = d.archive.join("passes");
    let cli_with = |dirs: &[&str], extra: &[&str]| -> serde_json::Value {
        let dirs: Vec<PathBuf> = dirs.iter().map(|i| passes.join(i)).collect();
        let out = ["--out", out_dir.to_str().unwrap()];
        merge_cli(&dirs, &[&out[..], extra].concat())
    };
    let cli = |dirs: &[&str]| cli_with(dirs, &[]);
    let first = cli(&[&ida, &idb]);
    assert_same_frames_and_packets(&first["counters"], &truth);
    assert_eq!(first["contributions"]["gaps_left"], lost);
    let again = cli(&[&ida, &idb]);
    assert_eq!(again["merge_version"], 1, "idempotent");
    assert_eq!(again["counters"], first["counters"]);
    assert_eq!(again["contributions"], first["contributions"]);
    // Every chosen CADU is a record of a station pass's cadus.raw: named in cadus.ref, not
    // copied (the merged pass holds no cadus.raw of its own).
    let dir = PathBuf::from(first["dir"].as_str().unwrap());
    assert!(!dir.join("cadus.raw").exists());
    let refs = std::fs::read(dir.join("cadus.ref")).unwrap();
    let header = refs.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(
        (refs.len() - header) as u64 / 8,
        only_a + only_b + both,
        "one reference per merged CADU"
    );
    let by_refs = decode(&dir.join("cadus.ref"), "jpss", "cadu");
    let index = |d: &Path| {
        (
            std::fs::read(d.join("frames.idx")).unwrap(),
            std::fs::read(d.join("packets.idx")).unwrap(),
        )
    };
    let indexes = index(&dir);
    // --copy-cadus: the same pass with the CADUs copied into its own cadus.raw.
    let copied = cli_with(&[&ida, &idb], &["--copy-cadus"]);
    assert_eq!(copied["counters"], first["counters"]);
    assert!(!dir.join("cadus.ref").exists());
    assert_eq!(
        std::fs::read(dir.join("cadus.raw")).unwrap().len() as u64,
        (only_a + only_b + both) * 1024
    );
    assert!(index(&dir) == indexes, "the same indexes");
    let by_copy = decode(&dir.join("cadus.raw"), "jpss", "cadu");
    for k in ["bytes_in", "cadus", "rs", "frames", "packets"] {
        assert_eq!(
            by_refs[k], by_copy[k],
            "decode of cadus.ref vs cadus.raw: {k}"
        );
    }
    assert_same_frames_and_packets(&by_refs, &truth);

    // A merged pass of references taken as a copy by another merge: read through its
    // references (and copied, as they are not a station pass's own CADUs).
    cli(&[&ida, &idb]);
    assert!(dir.join("cadus.ref").is_file());
    let again_dir = tmp.path().join("again");
    let remerged = merge_cli(
        &[dir.clone(), passes.join(&idb)],
        &["--out", again_dir.to_str().unwrap()],
    );
    assert_same_frames_and_packets(&remerged["counters"], &truth);
    let remerged_dir = PathBuf::from(remerged["dir"].as_str().unwrap());
    assert_eq!(
        std::fs::read(remerged_dir.join("cadus.raw")).unwrap().len() as u64,
        (only_a + only_b + both) * 1024
    );
    assert!(!remerged_dir.join("cadus.ref").exists());
}

#[test]
fn bad_copies_are_counted_and_explained_never_a_crash() {
    let split = Split::new();
    let tmp = tempfile::tempdir().unwrap();
    let passes = tmp.path().join("passes");
    let station = |id: &str, scid: u16, raw: &[u8]| station_pass(&passes, id, scid, raw);
    let whole: Vec<u8> = split.cadus.concat();
    let good = station("20241206T173815Z-a", 157, &whole);
    // NOAA-20's CADUs presented as a copy of the SNPP pass.
    let n20 = aligned_cadus(&std::fs::read(data("cadu/noaa20.20241206T162710.dat")).unwrap());
    let wrong = station("20241206T173815Z-b", 157, &n20);
    // The first 30 % of the pass, its last CADU cut in the middle.
    let cut = whole.len() * 3 / 10 / 1024 * 1024 - 512;
    let short = station("20241206T173815Z-c", 157, &whole[..cut]);
    // Bytes that are not CADUs at all.
    let noise: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let junk = station("20241206T173815Z-d", 157, &noise);
    let v = merge_cli(&[&good, &wrong, &short, &junk], &[]);
    let c = &v["contributions"];
    eprintln!("{}", serde_json::to_string_pretty(c).unwrap());
    let full = decode(&data("cadu/npp.20241206T173815.dat"), "jpss", "bits");
    // Never a lost frame of the good copy.
    assert_eq!(
        v["counters"]["frames"]["by_vcid"]["16"],
        full["frames"]["by_vcid"]["16"]
    );
    // Fill frames are not merged; packets never travel in them.
    assert_eq!(v["counters"]["packets"], full["packets"]);
    let b = &c["s/b"];
    assert!(b["wrong_scid"].as_u64().unwrap() > 900, "{b}");
    assert_eq!(b["unique"], 0);
    assert!(b["explained"][0]
        .as_str()
        .unwrap()
        .contains("another spacecraft"));
    let short_c = &c["s/c"];
    assert!(short_c["truncated_bits"].as_u64().unwrap() > 0, "{short_c}");
    assert!(short_c["explained"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e.as_str().unwrap().contains("truncated")));
    assert!(short_c["duplicates"].as_u64().unwrap() > 200);
    assert_eq!(c["s/d"]["frames"], 0, "noise holds no frame: {c}");
    assert_eq!(
        c["s/a"]["unique"].as_u64().unwrap() + c["s/a"]["duplicates"].as_u64().unwrap(),
        full["frames"]["by_vcid"]["16"].as_u64().unwrap()
    );
}

/// A station pass of the SNPP pass (station `s`, input from the id) in `passes/id` with
/// `raw` as its `cadus.raw`.
fn station_pass(passes: &Path, id: &str, scid: u16, raw: &[u8]) -> PathBuf {
    let dir = passes.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cadus.raw"), raw).unwrap();
    write_record(&dir, id, scid);
    dir
}

/// The `pass.json` of a station pass of the SNPP pass (station `s`, input from the id).
fn write_record(dir: &Path, id: &str, scid: u16) {
    let rec = serde_json::json!({
        "id": id, "input": id.split('-').nth(1).unwrap(), "profile": "jpss", "scid": scid,
        "aos": "2024-12-06T17:38:15Z", "los": "2024-12-06T17:48:15Z", "station": "s",
    });
    std::fs::write(dir.join("pass.json"), rec.to_string()).unwrap();
}

/// A station pass of the SNPP pass like [`station_pass`] that kept no CADUs
/// (`archive.keep_raw_cadus = false`): the good frames of `raw` after RS in `frames.raw`, and
/// their packets, indexed.
fn frames_pass(passes: &Path, id: &str, raw: &[u8]) -> PathBuf {
    let dir = passes.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let profile = decoder::Profile::builtin("jpss").unwrap();
    let mut d = decoder::Decoder::new(
        &profile,
        decoder::InputFormat::Cadu,
        decoder::DecoderOptions::default(),
    )
    .unwrap();
    let mut files = archive::pass_store::PassFiles::new(&dir, false, None);
    d.push(raw);
    d.finish();
    let mut frames = 0;
    while let Some(e) = d.poll() {
        match e {
            decoder::Event::Frame(f) => {
                files
                    .frame(f.header.vcid, f.header.vc_count, &f.data)
                    .unwrap();
                frames += 1;
            }
            decoder::Event::Packet { packet, vcid } => {
                files
                    .packet(packet.header.apid, vcid, &packet.data)
                    .unwrap();
            }
            _ => {}
        }
    }
    assert!(frames > 300, "{frames}");
    files.sync_all().unwrap();
    write_record(&dir, id, 157);
    dir
}

/// Station passes that kept no CADUs are merged from their frames, virtual channel by virtual
/// channel: the merged pass has the frames and packets some copy had (RS bursts in each copy,
/// the split of the two-antenna test), the split's unique and duplicate frames, and frames of
/// its own (`frames.raw`), no CADUs.
#[test]
fn passes_without_their_cadus_merge_from_their_frames() {
    let split = Split::new();
    let tmp = tempfile::tempdir().unwrap();
    let passes = tmp.path().join("passes");
    let a = frames_pass(
        &passes,
        "20241206T173815Z-a",
        &split.copy(&split.a, &split.burst_a),
    );
    let b = frames_pass(
        &passes,
        "20241206T173815Z-b",
        &split.copy(&split.b, &split.burst_b),
    );
    assert!(!a.join("cadus.raw").exists() && a.join("frames.raw").exists());
    let v = merge_cli(&[&a, &b], &[]);
    let truth_path = tmp.path().join("truth.raw");
    let (only_a, only_b, both, lost) = split.truth_file(&truth_path);
    assert!(lost > 0 && both > 100, "{lost} {both}");
    let truth = decode(&truth_path, "jpss", "cadu");
    assert_same_frames_and_packets(&v["counters"], &truth);
    let c = &v["contributions"];
    assert_eq!(c["s/a"]["unique"], only_a, "{c}");
    assert_eq!(c["s/b"]["unique"], only_b);
    assert_eq!(c["duplicate_frames"], both);
    assert_eq!(c["conflict_frames"], 0);
    let dir = PathBuf::from(v["dir"].as_str().unwrap());
    assert!(dir.join("frames.raw").exists());
    assert!(!dir.join("cadus.raw").exists() && !dir.join("cadus.ref").exists());
}

/// `cadu` (SNPP: randomized, RS I = 4) with one byte of its frame's data changed, encoded
/// again, then with 3 byte errors in a codeword that RS corrects: a copy of the frame that
/// truly differs from the other copies, and loses to a clean one.
fn conflicting(cadu: &[u8]) -> Vec<u8> {
    let profile = decoder::Profile::builtin("jpss").unwrap();
    let rs = decoder::rs::ReedSolomon::new(profile.rs_params().unwrap()).unwrap();
    let pn = decoder::pn::Derandomizer::new(1020);
    let mut block = cadu[4..].to_vec();
    pn.apply(&mut block);
    block[400] ^= 0x01;
    rs.encode(&mut block).unwrap();
    pn.apply(&mut block);
    for k in [0, 40, 80] {
        block[k * 4 + 1] ^= 0x33;
    }
    [&cadu[..4], &block[..]].concat()
}

/// A copy whose `cadus.raw` is not whole CADUs back to back (as an archive writes it): a marker
/// with a bit error, then bytes inserted that shift every later CADU. Its reader takes records
/// up to the bent marker, then synchronizes the rest, and finds every frame the decoder finds
/// in those bytes; with the first 30 % of the pass beside it, the merge loses none of them.
/// Copies are compared alike however their frames were read: two frames of this copy that
/// truly differ from the other's (one read as a record, one synchronized, both corrected) are
/// the merge's only conflicts, and the other copy's clean frames are kept.
#[test]
fn a_copy_that_is_not_whole_records_is_synchronized() {
    let split = Split::new();
    let tmp = tempfile::tempdir().unwrap();
    let passes = tmp.path().join("passes");
    let mut cadus = split.cadus.clone();
    let data_frames: Vec<usize> = (0..300).filter(|&k| vcid_of(&cadus[k]) == 16).collect();
    let (as_record, as_pushed) = (data_frames[10], data_frames[data_frames.len() - 10]);
    assert!(
        as_record < 100 && as_pushed > 100,
        "{as_record} {as_pushed}"
    );
    for k in [as_record, as_pushed] {
        cadus[k] = conflicting(&cadus[k]);
    }
    cadus[100][2] ^= 0x10;
    let mut bent = cadus[..300].concat();
    bent.extend_from_slice(&[0x5A; 37]);
    bent.extend(cadus[300..].concat());
    let e = station_pass(&passes, "20241206T173815Z-e", 157, &bent);
    let whole: Vec<u8> = split.cadus.concat();
    let cut = whole.len() * 3 / 10 / 1024 * 1024;
    let c = station_pass(&passes, "20241206T173815Z-c", 157, &whole[..cut]);
    let v = merge_cli(&[&e, &c], &[]);
    let own = decode(&e.join("cadus.raw"), "jpss", "cadu");
    let good = |x: &serde_json::Value| {
        x["frames"]["good"].as_u64().unwrap() - x["frames"]["fill"].as_u64().unwrap()
    };
    assert_eq!(
        v["contributions"]["s/e"]["frames"],
        good(&own),
        "{}",
        v["contributions"]
    );
    assert_eq!(own["sync"]["bits_discarded"], 37 * 8, "{own}");
    assert_eq!(
        v["contributions"]["conflict_frames"], 2,
        "{}",
        v["contributions"]
    );
    assert_eq!(v["contributions"]["s/e"]["conflicts"], 2);
    assert!(v["contributions"]["duplicate_frames"].as_u64().unwrap() > 250);
    let full = decode(&data("cadu/npp.20241206T173815.dat"), "jpss", "bits");
    assert_eq!(
        v["counters"]["frames"]["by_vcid"]["16"],
        full["frames"]["by_vcid"]["16"]
    );
    assert_eq!(v["counters"]["packets"], full["packets"]);
    // The CADUs the reader synchronized again are copied into the merged pass, the others
    // referred to: read back through cadus.ref, they are the merged pass's CADUs.
    let dir = PathBuf::from(v["dir"].as_str().unwrap());
    assert!(std::fs::metadata(dir.join("cadus.raw")).unwrap().len() > 0);
    let back = decode(&dir.join("cadus.ref"), "jpss", "cadu");
    for k in ["frames", "packets"] {
        assert_eq!(back[k], v["counters"][k], "{k}");
    }
}

/// The products (raw PNGs) of a pass directory, by name.
fn raw_pngs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.join("products"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".raw.png"))
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn products_done(archive: &Path, id: &str) -> bool {
    let p = archive.join("passes").join(id);
    p.join("products/products.json").is_file() && !p.join("products.job").exists()
}

#[test]
fn meteor_products_of_the_merged_pass_equal_those_of_the_full_capture() {
    let mut frames = Vec::new();
    for s in ["30", "40", "50"] {
        frames.extend(
            std::fs::read(data(&format!("vcdu/meteor-m2/2022_12_20_20_25_{s}.vcdu"))).unwrap(),
        );
    }
    let vcdus: Vec<&[u8]> = frames.chunks(892).collect();
    let n = vcdus.len();
    // A misses the first 40 %, B the last 40 %; each also loses a few frames the other has.
    let lost_a: BTreeSet<usize> = (n / 2..n / 2 + 3).collect();
    let lost_b: BTreeSet<usize> = (n / 2 + 5..n / 2 + 8).collect();
    let pick = |range: std::ops::Range<usize>, lost: &BTreeSet<usize>| -> Vec<u8> {
        range
            .filter(|i| !lost.contains(i))
            .flat_map(|i| vcdus[i].to_vec())
            .collect()
    };
    let a = pick(n * 4 / 10..n, &lost_a);
    let b = pick(0..n - n * 4 / 10, &lost_b);

    let tle_dir = tempfile::tempdir().unwrap();
    let tle = tle_dir.path().join("weather.txt");
    std::fs::write(&tle, meteor_tle_for_todays_pass()).unwrap();
    let sections = format!("[imaging]\ntle = [\"{}\"]\n", tle.display());
    let d = multi_daemon(
        &["ant_a", "ant_b", "late"],
        "frames",
        "meteor-lrpt",
        &sections,
    );
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for (bytes, i) in [(&a, 0), (&b, 1)] {
        let p = port(&d, i);
        for c in random_datagrams(bytes, 5 + i as u64) {
            s.send_to(&c, ("127.0.0.1", p)).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    wait_for("the merged pass", Duration::from_secs(60), || {
        merged(&d.archive).is_some()
    });
    let m = merged(&d.archive).unwrap();
    let mid = m["id"].as_str().unwrap().to_owned();
    // Nothing lost in both copies: the gaps left are the capture's own.
    let whole = tle_dir.path().join("whole.vcdu");
    std::fs::write(&whole, &frames).unwrap();
    let own = decode(&whole, "meteor-lrpt", "frames");
    assert_eq!(
        m["contributions"]["gaps_left"],
        own["frames"]["missing_by_vcid"]["5"]
    );
    assert_eq!(m["counters"]["frames"], own["frames"]);
    assert_eq!(m["counters"]["packets"], own["packets"]);
    let c = &m["contributions"];
    assert_eq!(
        c["madison/ant_a"]["duplicates"].as_u64().unwrap(),
        (n - 2 * (n * 4 / 10)) as u64 - 6
    );
    assert_eq!(m["contributions"]["source"], "frames");

    // The full capture on a daemon of its own.
    let (full, _tle) = meteor_daemon("");
    send_meteor_pass(&full, 3);
    let fid = full.wait_passes(1)[0]["id"].as_str().unwrap().to_owned();
    let frec = &full.wait_passes(1)[0];
    assert_eq!(
        m["counters"]["frames"]["by_vcid"],
        frec["counters"]["frames"]["by_vcid"]
    );
    assert_eq!(m["counters"]["packets"], frec["counters"]["packets"]);
    wait_for("products", Duration::from_secs(240), || {
        products_done(&d.archive, &mid) && products_done(&full.archive, &fid)
    });
    let got = raw_pngs(&d.archive.join("passes").join(&mid));
    let want = raw_pngs(&full.archive.join("passes").join(&fid));
    assert!(!want.is_empty());
    assert_eq!(
        got.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        want.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    for ((n, g), (_, w)) in got.iter().zip(&want) {
        assert!(g == w, "{n} differs between the merged and the full pass");
    }
    // The STAC item of the merged pass names its station and its station passes.
    let mut item = serde_json::Value::Null;
    wait_for("the merged pass's item", Duration::from_secs(120), || {
        let (code, _, body) = http(
            d.http,
            "GET",
            &format!("/stac/collections/meteor-m2-msu-mr/items/{mid}"),
            &[],
            b"",
        );
        if code == 200 {
            item = serde_json::from_slice(&body).unwrap();
        }
        code == 200
    });
    let props = &item["properties"];
    assert_eq!(props["downlink:station"], "madison");
    assert_eq!(props["downlink:station_location"]["lon"], -89.41);
    assert_eq!(props["downlink:merged_from"], m["merged_from"]);
    let derived: Vec<&str> = item["links"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["rel"] == "derived_from")
        .map(|l| l["href"].as_str().unwrap())
        .collect();
    assert_eq!(derived.len(), 2, "{item}");
    for id in m["merged_from"].as_array().unwrap() {
        assert!(derived.iter().any(|h| h.ends_with(id.as_str().unwrap())));
    }
    assert_eq!(props["downlink:merge_version"], 1);

    // A late copy (a third antenna's, after the item exists) re-runs the merge: the item is
    // made again from the new version of the merged pass.
    let updated = props["updated"].clone();
    let p = port(&d, 2);
    for c in random_datagrams(&b, 11) {
        s.send_to(&c, ("127.0.0.1", p)).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    wait_for("the re-merged item", Duration::from_secs(180), || {
        let (code, _, body) = http(
            d.http,
            "GET",
            &format!("/stac/collections/meteor-m2-msu-mr/items/{mid}"),
            &[],
            b"",
        );
        if code == 200 {
            item = serde_json::from_slice(&body).unwrap();
        }
        code == 200 && item["properties"]["downlink:merge_version"] == 2
    });
    assert_ne!(
        item["properties"]["updated"], updated,
        "the item's version changed"
    );
    assert_eq!(
        item["properties"]["downlink:merged_from"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    wait_for("products of the re-merge", Duration::from_secs(240), || {
        products_done(&d.archive, &mid)
    });
    let again = raw_pngs(&d.archive.join("passes").join(&mid));
    assert_eq!(
        again, want,
        "the re-merged pass's products equal the full capture's"
    );
    let st = json_of(d.http, "/api/v1/status");
    assert_eq!(st["merges"]["ok"], 2, "{}", st["merges"]);
    assert_eq!(st["merges"]["failed"], 0);
}

/// Two stations' daemons writing into one shared archive: each tags its passes with its own
/// station, and the copies are merged into one pass whose contributions name both stations.
#[test]
fn two_daemons_sharing_an_archive_merge_their_passes() {
    let split = Split::new();
    let tmp = tempfile::tempdir().unwrap();
    let (fa, fb) = (tmp.path().join("a.cadu"), tmp.path().join("b.cadu"));
    std::fs::write(&fa, split.copy(&split.a, &split.burst_a)).unwrap();
    std::fs::write(&fb, split.copy(&split.b, &split.burst_b)).unwrap();
    let (only_a, only_b, both, lost) = split.truth_file(&tmp.path().join("truth.cadu"));
    let archive = tmp.path().join("archive");
    let start = |station: &str| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = format!(
            "[archive]\npath = \"{}\"\nfsync_interval = \"100ms\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
             [pass]\nlos_timeout = \"2s\"\n[station]\nname = \"{station}\"\n\
             [[input]]\nname = \"xband\"\nlisten = \"udp://127.0.0.1:0\"\nformat = \"bits\"\nprofile = \"jpss\"\n",
            archive.display()
        );
        let path = dir.path().join("downlink.toml");
        std::fs::write(&path, cfg).unwrap();
        Daemon::launch(serve_cmd(&path), dir, archive.clone())
    };
    let alpha = start("alpha");
    let beta = start("beta");
    let mut a = replay(&fa, alpha.udp, &[]);
    let mut b = replay(&fb, beta.udp, &[]);
    for c in [&mut a, &mut b] {
        assert!(c.wait().unwrap().success());
    }
    wait_for("the merged pass", Duration::from_secs(60), || {
        merged(&archive).is_some()
    });
    // Both daemons may merge; let them finish.
    std::thread::sleep(Duration::from_secs(2));
    let all = records(&archive);
    assert_eq!(
        all.iter().filter(|r| r["input"] == "merged").count(),
        1,
        "one merged pass"
    );
    let m = merged(&archive).unwrap();
    let c = &m["contributions"];
    let ids: Vec<String> = all
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["id"], r["counters"]["frames"]["good"], r["merged_from"]
            )
        })
        .collect();
    assert_eq!(all.len(), 3, "{ids:?}");
    assert_eq!(c["alpha/xband"]["unique"], only_a, "{c} {ids:?}");
    assert_eq!(c["beta/xband"]["unique"], only_b, "{c}");
    assert_eq!(c["duplicate_frames"], both);
    assert_eq!(c["gaps_left"], lost);
    let stations: BTreeSet<&str> = all
        .iter()
        .filter(|r| r["input"] == "xband")
        .map(|r| r["station"].as_str().unwrap())
        .collect();
    assert_eq!(stations, BTreeSet::from(["alpha", "beta"]));
    // Both daemons list the merged pass.
    for d in [&alpha, &beta] {
        wait_for("the merged pass listed", Duration::from_secs(10), || {
            json_of(d.http, "/api/v1/passes")["passes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["id"] == m["id"])
        });
    }
}

/// A copy that reaches the archive late, without a LOS on this daemon (another station's pass
/// directory copied in after the merge-less local pass was closed): it is merged, and its
/// station is in the contributions.
#[test]
fn a_station_pass_copied_in_late_is_merged() {
    let split = Split::new();
    let tmp = tempfile::tempdir().unwrap();
    let fa = tmp.path().join("a.cadu");
    std::fs::write(&fa, split.copy(&split.a, &split.burst_a)).unwrap();
    let truth_path = tmp.path().join("truth.cadu");
    let (only_a, only_b, both, lost) = split.truth_file(&truth_path);
    let truth = decode(&truth_path, "jpss", "cadu");
    let d = multi_daemon(&["ant_a"], "bits", "jpss", "");
    let mut a = replay(&fa, port(&d, 0), &[]);
    assert!(a.wait().unwrap().success());
    let rec_a = d.wait_passes(1).remove(0);
    std::thread::sleep(Duration::from_secs(3));
    assert!(merged(&d.archive).is_none(), "one copy: nothing to merge");
    // The other station's pass, as its daemon wrote it: raw CADUs as received, then its record.
    let id = format!("{}-bergen", &rec_a["id"].as_str().unwrap()[..16]);
    let dir = d.archive.join("passes").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cadus.raw"), split.copy(&split.b, &split.burst_b)).unwrap();
    let rec = serde_json::json!({
        "id": id, "input": "xband", "profile": "jpss", "scid": 157, "station": "bergen",
        "aos": rec_a["aos"], "los": rec_a["los"],
    });
    std::fs::write(dir.join("pass.json"), rec.to_string()).unwrap();
    wait_for("the merged pass", Duration::from_secs(30), || {
        merged(&d.archive).is_some()
    });
    let m = merged(&d.archive).unwrap();
    let c = &m["contributions"];
    assert_eq!(c["madison/ant_a"]["unique"], only_a, "{c}");
    assert_eq!(c["bergen/xband"]["unique"], only_b, "{c}");
    assert_eq!(c["duplicate_frames"], both);
    assert_eq!(c["gaps_left"], lost);
    assert_same_frames_and_packets(&m["counters"], &truth);
}

/// `downlink merge` takes the merge lock of the archive's passes/, the one the daemon's merge
/// after LOS holds (`downlink::merge::lock_passes`): while another merge holds it the command
/// says so, waits and writes nothing; once it is released the command merges.
#[test]
fn the_merge_command_waits_while_another_merge_holds_the_lock() {
    use std::io::BufRead;
    let split = Split::new();
    let tmp = tempfile::tempdir().unwrap();
    let passes = tmp.path().join("passes");
    let mut dirs = Vec::new();
    for (id, range, burst) in [
        ("20241206T173815Z-a", &split.a, &split.burst_a),
        ("20241206T173815Z-b", &split.b, &split.burst_b),
    ] {
        let dir = passes.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cadus.raw"), split.copy(range, burst)).unwrap();
        let rec = serde_json::json!({
            "id": id, "input": &id[17..], "profile": "jpss", "scid": 157, "station": "s",
            "aos": "2024-12-06T17:38:15Z", "los": "2024-12-06T17:48:15Z",
        });
        std::fs::write(dir.join("pass.json"), rec.to_string()).unwrap();
        dirs.push(dir);
    }
    let held =
        downlink::merge::lock_passes(&passes, |p| panic!("nothing else holds {}", p.display()))
            .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .arg("merge")
        .args(&dirs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(
        line.contains("waiting for") && line.contains(".merge.lock"),
        "the command says it waits for the lock: {line:?}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the command must not merge while the lock is held"
    );
    let written: Vec<String> = std::fs::read_dir(&passes)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("merged"))
        .collect();
    assert!(
        written.is_empty(),
        "nothing written while waiting: {written:?}"
    );
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id"], "20241206T173815Z-merged");
    assert!(passes.join("20241206T173815Z-merged/pass.json").is_file());
}
