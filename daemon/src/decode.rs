//! `downlink decode`: the decoder over files, with a progress bar on a terminal.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use archive::AtomicFile;
use clap::Args;
use decoder::{Decoder, DecoderOptions, Event, InputFormat, Profile, Stats};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `downlink decode`.
#[derive(Args, Debug)]
pub(crate) struct DecodeArgs {
    /// Input files, decoded in order as one continuous stream. A merged pass's `cadus.ref` is
    /// read as the CADUs it names (in its station passes' `cadus.raw`).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Built-in profile name (see `downlink profiles`) or a path to a profile TOML file.
    #[arg(long, short)]
    profile: String,
    /// What the files hold: bits (unaligned bit stream), cadu (byte-aligned CADUs), frames
    /// (bare frames after RS), packets (concatenated space packets), soft-i8 (signed 8-bit soft
    /// symbols from a QPSK demodulator, positive = 1, I/Q pairs) or hard (packed channel bits),
    /// both before the profile's inner (Viterbi) code.
    #[arg(long, short, default_value = "bits")]
    format: InputFormat,
    /// Print one JSON object with every counter instead of the text report.
    #[arg(long)]
    json: bool,
    /// Write every good non-fill frame (after RS, parity removed) to this file.
    #[arg(long, value_name = "PATH")]
    frames_out: Option<PathBuf>,
    /// Write packets to DIR/apidNNNNN.pkts, one file per APID, in arrival order.
    #[arg(long, value_name = "DIR")]
    packets_out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

/// Loads a profile by built-in name or from a TOML file.
pub(crate) fn load_profile(spec: &str) -> Result<Profile> {
    let path = Path::new(spec);
    if spec.ends_with(".toml") || path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading profile {}", path.display()))?;
        return Ok(Profile::from_toml_str(&text, &path.display().to_string())?);
    }
    Ok(Profile::builtin(spec)?)
}

/// `downlink profiles [NAME]`.
pub(crate) fn profiles(name: Option<&str>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match name {
        Some(n) => match Profile::builtin_source(n) {
            Some(text) => out.write_all(text.as_bytes())?,
            None => {
                // Not built in: validate the file and echo it.
                load_profile(n)?;
                out.write_all(std::fs::read_to_string(n)?.as_bytes())?;
            }
        },
        None => {
            for n in Profile::builtin_names() {
                let p = Profile::builtin(n)?;
                writeln!(out, "{n:<12} {}", p.description)?;
            }
        }
    }
    Ok(())
}

/// At most this many per-APID files are open at once (2048 APIDs exist; file descriptors and
/// buffers are bounded). Packets of further APIDs are counted, not written.
const MAX_APID_FILES: usize = 512;
const APID_BUFFER: usize = 64 * 1024;

struct Outputs {
    frames: Option<AtomicFile>,
    packets_dir: Option<PathBuf>,
    packets: BTreeMap<u16, AtomicFile>,
    /// Packets not written because MAX_APID_FILES files were already open, by APID.
    unwritten: BTreeMap<u16, u64>,
}

impl Outputs {
    fn on_event(&mut self, ev: &Event) -> Result<()> {
        match ev {
            Event::Frame(f) => {
                if let Some(out) = &mut self.frames {
                    out.write_all(&f.data)?;
                }
            }
            Event::Packet { packet, .. } => {
                if let Some(dir) = &self.packets_dir {
                    let apid = packet.header.apid;
                    let full = self.packets.len() >= MAX_APID_FILES;
                    let file = match self.packets.entry(apid) {
                        std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::btree_map::Entry::Vacant(_) if full => {
                            *self.unwritten.entry(apid).or_default() += 1;
                            return Ok(());
                        }
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(AtomicFile::with_buffer(
                                dir.join(format!("apid{apid:05}.pkts")),
                                APID_BUFFER,
                            )?)
                        }
                    };
                    file.write_all(&packet.data)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn commit(self) -> Result<()> {
        if !self.unwritten.is_empty() {
            let total: u64 = self.unwritten.values().sum();
            let _ = writeln!(
                std::io::stderr(),
                "downlink: warning: {total} packets on {} APIDs not written: more than {MAX_APID_FILES} APIDs in one run",
                self.unwritten.len()
            );
        }
        if let Some(f) = self.frames {
            f.commit()?;
        }
        for (_, f) in self.packets {
            f.commit()?;
        }
        Ok(())
    }
}

/// `downlink decode`.
pub(crate) fn run(args: &DecodeArgs) -> Result<()> {
    let profile = load_profile(&args.profile)?;
    let options = DecoderOptions {
        raw_cadus: false,
        frames: args.frames_out.is_some(),
        fill_frames: false,
        packets: true,
    };
    let mut dec = Decoder::new(&profile, args.format, options)?;
    if let Some(dir) = &args.packets_out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut outputs = Outputs {
        frames: args
            .frames_out
            .as_ref()
            .map(AtomicFile::create)
            .transpose()?,
        packets_dir: args.packets_out.clone(),
        packets: BTreeMap::new(),
        unwritten: BTreeMap::new(),
    };
    let mut total = 0u64;
    let mut inputs = Vec::with_capacity(args.files.len());
    for f in &args.files {
        let md = std::fs::metadata(f).with_context(|| format!("reading {}", f.display()))?;
        if !md.is_file() {
            bail!("{} is not a file", f.display());
        }
        let primary = archive::cadu_refs::Primary::open(f)
            .with_context(|| format!("opening {}", f.display()))?;
        total += primary.len();
        inputs.push((f, primary.reader()));
    }
    let bar = if !args.quiet && std::io::stderr().is_terminal() {
        let b = ProgressBar::new(total);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Some(b)
    } else {
        None
    };
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut chunks = 0u64;
    for (path, mut file) in inputs {
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            dec.push(buf.get(..n).unwrap_or_default());
            while let Some(ev) = dec.poll() {
                outputs.on_event(&ev)?;
            }
            chunks += 1;
            if let Some(b) = &bar {
                b.inc(n as u64);
                if chunks.is_multiple_of(16) {
                    let s = dec.stats();
                    b.set_message(format!(
                        "frames {} rs-fix {} bad {} pkts {}",
                        s.frames.good,
                        s.rs.corrected,
                        s.frames.rejected.total(),
                        s.packets.total
                    ));
                }
            }
        }
    }
    dec.finish();
    while let Some(ev) = dec.poll() {
        outputs.on_event(&ev)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    outputs.commit()?;
    let stats = dec.stats();
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut v = serde_json::to_value(&stats)?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("profile".into(), profile.name.clone().into());
            if let (Some(inner), Some(serde_json::Value::Object(o))) =
                (stats.inner.as_ref(), m.get_mut("inner"))
            {
                o.insert("channel_ber".into(), inner.channel_ber().into());
            }
            m.insert(
                "timing".into(),
                serde_json::json!({
                    "elapsed_s": elapsed,
                    "input_mbit_per_s": if elapsed > 0.0 { stats.bytes_in as f64 * 8.0 / elapsed / 1e6 } else { 0.0 },
                }),
            );
        }
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        write_report(&mut out, &profile, &stats, elapsed)?;
    }
    Ok(())
}

fn write_report(out: &mut impl Write, profile: &Profile, s: &Stats, elapsed: f64) -> Result<()> {
    let rate = if elapsed > 0.0 {
        s.bytes_in as f64 * 8.0 / elapsed / 1e6
    } else {
        0.0
    };
    writeln!(
        out,
        "profile {}  input {} bytes in {elapsed:.3} s ({rate:.0} Mbit/s)",
        profile.name, s.bytes_in
    )?;
    let y = &s.sync;
    writeln!(
        out,
        "sync     cadus {}  locks {}  lost {}  true {}  inverted {}  slipped {}  flywheel {}  discarded {} bits  truncated {} bits",
        s.cadus, y.locks, y.lost, y.true_frames, y.inverted_frames, y.slipped_frames, y.flywheel_frames, y.bits_discarded, y.truncated_bits
    )?;
    if let Some(i) = &s.inner {
        writeln!(
            out,
            "soft     symbols {}  discarded {}  decoded bits {}  phase locks {} (re-acquired {})  case {}  channel BER {}  80k markers ok {} bad {}",
            i.soft_bits,
            i.soft_bits_discarded,
            i.decoded_bits,
            i.phase_locks,
            i.reacquisitions,
            i.phase_case.unwrap_or("-"),
            i.channel_ber().map_or("-".to_owned(), |b| format!("{b:.4}")),
            i.markers_ok,
            i.markers_bad
        )?;
    }
    let r = &s.rs;
    writeln!(
        out,
        "rs       codewords clean {}  corrected {} ({} symbols)  uncorrectable {}",
        r.clean, r.corrected, r.corrected_symbols, r.uncorrectable
    )?;
    writeln!(out, "crc      ok {}  failed {}", s.crc.ok, s.crc.failed)?;
    let f = &s.frames;
    let rj = &f.rejected;
    writeln!(
        out,
        "frames   good {} (fill {})  rejected {} [rs {} crc {} version {} scid {} short {} vcid {}]",
        f.good,
        f.fill,
        rj.total(),
        rj.rs_uncorrectable,
        rj.crc_failed,
        rj.bad_version,
        rj.unexpected_scid,
        rj.too_short,
        rj.unknown_vcid
    )?;
    for (v, n) in &f.by_vcid {
        let missing = f.missing_by_vcid.get(v).copied().unwrap_or(0);
        writeln!(out, "  vcid {v:>2}  frames {n:>8}  missing {missing:>6}")?;
    }
    let p = &s.packets;
    writeln!(
        out,
        "packets  total {}  idle {}  sequence gaps {} ({} missing)  dropped {:?}",
        p.total, p.idle, p.sequence_gaps, p.missing, p.dropped
    )?;
    for (a, n) in &p.by_apid {
        let gaps = p.sequence_gaps_by_apid.get(a).copied().unwrap_or(0);
        writeln!(out, "  apid {a:>4}  packets {n:>8}  gaps {gaps:>4}")?;
    }
    Ok(())
}
