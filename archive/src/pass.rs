//! The raw archive of one pass, in a documented layout:
//!
//! ```text
//! ARCHIVE/passes/<pass-id>/cadus.raw    every synchronized CADU as received (ASM + frame,
//!                                       polarity corrected, before PN/RS), in order
//! ARCHIVE/passes/<pass-id>/frames.raw   good frames after RS, once each, in order: only when
//!                                       raw CADUs are not kept (or the input is frames)
//! ARCHIVE/passes/<pass-id>/packets.raw  packets in order: packet-stream inputs only
//! ARCHIVE/passes/<pass-id>/frames.idx   8 bytes per good frame: where it is, its VC and count
//! ARCHIVE/passes/<pass-id>/packets.idx  8 bytes per packet: its APID, VC and frame
//! ARCHIVE/passes/<pass-id>/pass.json    the pass record, written last (temp + rename)
//! ```
//! Each received byte is stored once: the frames of a VC and the packets of an APID are read
//! through the indexes and extracted again on demand ([`crate::pass_store`]).
//! `<pass-id>` is `YYYYMMDDTHHMMSSZ-<input>` from the AOS time (`YYYYMMDDTHHMMSSZ_N-<input>` if
//! another pass of that input began in the same second). Data files are appended through
//! buffers that are handed to the kernel every `archive.fsync_bytes`; a per-pass syncer thread
//! `fdatasync`s them every `archive.fsync_interval`, so a slow disk sync never stalls decoding
//! and a crash loses at most the last interval. A failed sync poisons the pass archive: further
//! writes are refused and counted, never silently lost. `pass.json` appears only once the pass
//! is closed and everything is synced.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Pass id from the AOS time and the input name.
pub fn pass_id(aos: SystemTime, input: &str) -> String {
    let t = humantime::format_rfc3339_seconds(aos).to_string(); // 2026-11-22T08:30:00Z
    let compact: String = t.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{compact}-{input}")
}

/// Whether `id` is a well-formed pass id (safe as a path component).
pub fn valid_pass_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 80
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Open files of one pass.
#[derive(Debug)]
pub struct PassArchive {
    dir: PathBuf,
    files: crate::pass_store::PassFiles,
    unsynced: u64,
    last_sync: Instant,
    fsync_interval: Duration,
    fsync_bytes: u64,
    syncer: Syncer,
}

/// The background fdatasync of one pass's files (clones of the same open files): started
/// with the pass, it makes what is written durable as it goes, so that the final fsync has
/// little left to wait for. A failure is logged once and kept ([`Syncer::failed`]): the error
/// an fdatasync consumed is not reported again to a later fsync of the same file.
#[derive(Debug)]
pub struct Syncer {
    files: Arc<Mutex<Vec<File>>>,
    failed: Arc<AtomicBool>,
    /// Dropped to stop the thread (which wakes at once).
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    /// Syncs the files handed to [`Syncer::files`] every `interval` (checked every 100 ms at
    /// most), on a thread of its own, until [`Syncer::finish`].
    pub fn start(interval: Duration) -> Syncer {
        let files: Arc<Mutex<Vec<File>>> = Arc::default();
        let failed = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (f, x) = (files.clone(), failed.clone());
        let thread = std::thread::Builder::new()
            .name("archive-sync".into())
            .spawn(move || {
                let tick = interval.min(Duration::from_millis(100));
                let mut last = Instant::now();
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(tick)
                {
                    if last.elapsed() < interval {
                        continue;
                    }
                    last = Instant::now();
                    let list: Vec<File> = f
                        .lock()
                        .map(|l| l.iter().filter_map(|h| h.try_clone().ok()).collect())
                        .unwrap_or_default();
                    for h in list {
                        if let Err(e) = h.sync_data() {
                            // Logged once; the pass pipeline counts it and marks the pass.
                            if !x.swap(true, Ordering::Relaxed) {
                                tracing::error!(error = %e, "archive fdatasync failed: pass archive poisoned");
                            }
                            break;
                        }
                    }
                }
            })
            .ok();
        Syncer {
            files,
            failed,
            stop: Some(stop),
            thread,
        }
    }

    /// The list the files to sync are handed to (as [`crate::pass_store::PassFiles`] does).
    pub fn files(&self) -> Arc<Mutex<Vec<File>>> {
        self.files.clone()
    }

    /// Whether an fdatasync failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Stops the thread (after the sync in progress).
    pub fn finish(&mut self) {
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.finish();
    }
}

impl PassArchive {
    /// Creates a new, unique pass directory for a pass that began at `aos` on `input`; the
    /// pass id is the directory name ([`PassArchive::id`]).
    pub fn create(
        root: &Path,
        aos: SystemTime,
        input: &str,
        keep_raw: bool,
        fsync_interval: Duration,
        fsync_bytes: u64,
    ) -> std::io::Result<Self> {
        let passes = root.join("passes");
        std::fs::create_dir_all(&passes)?;
        let base = pass_id(aos, input);
        let mut n = 1;
        let dir = loop {
            let id = match n {
                1 => base.clone(),
                _ => base.replacen("Z-", &format!("Z_{n}-"), 1),
            };
            let dir = passes.join(&id);
            // create_dir is atomic: an existing pass is never reused.
            match std::fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e),
            }
        };
        crate::sync_dir(&dir).map_err(std::io::Error::other)?;
        let syncer = Syncer::start(fsync_interval);
        let mut files =
            crate::pass_store::PassFiles::new(&dir, keep_raw, Some(syncer.files.clone()));
        if keep_raw {
            files.open_cadus()?;
        }
        Ok(Self {
            dir,
            files,
            unsynced: 0,
            last_sync: Instant::now(),
            fsync_interval,
            fsync_bytes,
            syncer,
        })
    }

    /// The pass directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pass id (the directory name).
    pub fn id(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn note(&mut self, n: usize) {
        self.unsynced += n as u64;
    }

    /// True once a failed fdatasync poisoned this archive: it refuses every write.
    pub fn poisoned(&self) -> bool {
        self.syncer.failed.load(Ordering::Relaxed)
    }

    fn check_poisoned(&self) -> std::io::Result<()> {
        if self.syncer.failed.load(Ordering::Relaxed) {
            return Err(std::io::Error::other(
                "pass archive poisoned by a failed fdatasync; writes refused",
            ));
        }
        Ok(())
    }

    /// Appends a raw CADU (kept only when the archive keeps raw CADUs).
    pub fn cadu(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.check_poisoned()?;
        self.files.cadu(data)?;
        self.note(data.len());
        Ok(())
    }

    /// Archives a good non-fill frame of `vcid` with VC frame count `vc_count`: an index
    /// record naming its CADU (offered just before), or, without raw CADUs, the frame itself.
    pub fn frame(&mut self, vcid: u8, vc_count: u32, data: &[u8]) -> std::io::Result<()> {
        self.check_poisoned()?;
        let n = self.files.frame(vcid, vc_count, data)?;
        self.note(n);
        Ok(())
    }

    /// Archives a packet of `apid` that came on `vcid` (`None`: a packet-stream input): an
    /// index record, and the packet itself only for a packet stream.
    pub fn packet(&mut self, apid: u16, vcid: Option<u8>, data: &[u8]) -> std::io::Result<()> {
        self.check_poisoned()?;
        let n = self.files.packet(apid, vcid, data)?;
        self.note(n);
        Ok(())
    }

    fn files(&mut self) -> std::io::Result<impl Iterator<Item = &mut BufWriter<File>>> {
        self.files.writers()
    }

    /// Hands buffered data to the kernel when a batch is due (`fsync_bytes` or
    /// `fsync_interval`); the syncer thread makes it durable without blocking this thread.
    /// `Ok(true)`: a batch went to the kernel.
    pub fn maybe_sync(&mut self) -> std::io::Result<bool> {
        self.check_poisoned()?;
        if self.unsynced > 0
            && (self.unsynced >= self.fsync_bytes
                || self.last_sync.elapsed() >= self.fsync_interval)
        {
            for f in self.files()? {
                f.flush()?;
            }
            self.unsynced = 0;
            self.last_sync = Instant::now();
            return Ok(true);
        }
        Ok(false)
    }

    /// Flushes and fdatasyncs every file now.
    pub fn sync(&mut self) -> std::io::Result<()> {
        for f in self.files()? {
            f.flush()?;
            f.get_ref().sync_data()?;
        }
        self.unsynced = 0;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Syncs everything, writes the side files (`plot.png`, `timeline.json`), and publishes the pass record atomically (last);
    /// returns its path. It may be called again after a failure (a full disk that gets space
    /// back): buffered data not yet written stays buffered until then. A poisoned archive
    /// (failed fdatasync) still gets its record — which must say so — after what it still
    /// buffers has been written out.
    pub fn close(
        &mut self,
        record: &crate::record::PassRecord,
        side_files: &[(&str, Vec<u8>)],
    ) -> std::io::Result<PathBuf> {
        self.syncer.finish();
        self.sync()?;
        for (name, bytes) in side_files {
            crate::write_atomic(self.dir.join(name), bytes).map_err(std::io::Error::other)?;
        }
        let text = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        crate::write_atomic(self.dir.join("pass.json"), &text).map_err(std::io::Error::other)
    }
}

/// What crash recovery did with one interrupted pass directory (the caller logs and counts it).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// The record was rebuilt from the raw CADUs.
    Recovered {
        /// Pass id.
        pass: String,
        /// Good frames re-decoded.
        frames: u64,
    },
    /// The record could not be rebuilt.
    Failed {
        /// Pass id.
        pass: String,
        /// Why.
        error: String,
    },
    /// The pass's input is no longer configured: its directory is left as it is.
    UnknownInput {
        /// Pass id.
        pass: String,
    },
}

/// Passes cut short by a crash (`kill -9`, power loss) have data files but no `pass.json`.
/// Their record is rebuilt by re-decoding `cadus.raw` (raw CADUs as received, so the decode is
/// exact up to the last synced batch); a torn partial CADU at the end is trimmed first. The
/// record says `"interrupted": true`. Returns what was done with each interrupted pass.
pub fn recover_interrupted(cfg: &config::Config) -> Vec<Recovery> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(cfg.archive.path.join("passes")) else {
        return out;
    };
    for e in rd.flatten() {
        let dir = e.path();
        let id = e.file_name().to_string_lossy().into_owned();
        if dir.join("pass.json").exists() || !valid_pass_id(&id) {
            continue;
        }
        let input = id
            .split_once('-')
            .and_then(|(_, name)| cfg.input.iter().find(|i| i.name == name));
        let Some(input) = input else {
            out.push(Recovery::UnknownInput { pass: id });
            continue;
        };
        out.push(match recover_one(&dir, &id, input, &cfg.station) {
            Ok(frames) => Recovery::Recovered { pass: id, frames },
            Err(e) => Recovery::Failed {
                pass: id,
                error: e.to_string(),
            },
        });
    }
    out
}

/// Rebuilds the record of an interrupted pass: counters and spacecraft (the SCID of its first
/// good frame) from re-decoding its data (`cadus.raw`, else `frames.raw` or `packets.raw`),
/// which also rebuilds its indexes ([`crate::pass_store::rebuild`]); AOS from the pass id (to
/// the second: the AOS the directory was named after), LOS from the last write to the pass's
/// data (the data file's mtime, or the directory's when there is none). A pass in the layout
/// before store-once has its `cadus.raw` decoded for the counters and is otherwise left as it is.
fn recover_one(
    dir: &Path,
    id: &str,
    input: &config::InputConfig,
    station: &config::StationConfig,
) -> std::io::Result<u64> {
    use crate::pass_store::{CADUS, FRAMES, PACKETS};
    let mut last_write = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
    for name in [CADUS, FRAMES, PACKETS] {
        if let Ok(md) = std::fs::metadata(dir.join(name)) {
            last_write = md.modified().ok().or(last_write);
            break;
        }
    }
    let (stats, scid, trimmed) = match crate::pass_store::rebuild(dir, &input.profile)? {
        Some(r) => (Some(r.stats), r.scid, r.trimmed),
        None => legacy_decode(&dir.join(CADUS), &input.profile)?,
    };
    let good = stats.as_ref().map_or(0, |s| s.frames.good);
    let counters = match &stats {
        Some(s) => serde_json::to_value(s).map_err(std::io::Error::other)?,
        None => serde_json::Value::Null,
    };
    let now = SystemTime::now();
    let mut record = crate::record::PassRecord {
        id: id.to_owned(),
        input: input.name.clone(),
        profile: input.profile.name.clone(),
        spacecraft: scid.map(|s| {
            input
                .profile
                .spacecraft_name(s)
                .map_or_else(|| format!("SCID {s}"), str::to_owned)
        }),
        scid,
        interrupted: true,
        recovered_at: Some(humantime::format_rfc3339_seconds(now).to_string()),
        counters,
        counters_source: Some(
            "re-decoded from the archived data after a crash; datagram drops unknown".into(),
        ),
        raw_trimmed_bytes: Some(trimmed),
        station: Some(station.name.clone()),
        station_location: crate::record::StationLocation::of(station),
        ..crate::record::PassRecord::default()
    };
    let aos = crate::record::aos_of_id(id).or(last_write).unwrap_or(now);
    record.set_times(aos, last_write.unwrap_or(aos));
    let text = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
    crate::write_atomic(dir.join("pass.json"), &text).map_err(std::io::Error::other)?;
    Ok(good)
}

type Decoded = (Option<decoder::Stats>, Option<u16>, u64);

/// The counters of an interrupted pass in the layout before store-once: its `cadus.raw` (if
/// any, a torn CADU at the end trimmed) decoded.
fn legacy_decode(raw: &Path, profile: &decoder::Profile) -> std::io::Result<Decoded> {
    use std::io::Read;
    let Ok(md) = std::fs::metadata(raw) else {
        return Ok((None, None, 0));
    };
    let cadu = profile.cadu.length as u64;
    let whole = md.len() / cadu.max(1) * cadu;
    let trimmed = md.len() - whole;
    if trimmed > 0 {
        OpenOptions::new().write(true).open(raw)?.set_len(whole)?;
    }
    let opts = decoder::DecoderOptions {
        raw_cadus: false,
        frames: true,
        fill_frames: false,
        packets: true,
    };
    let mut dec = decoder::Decoder::new(profile, decoder::InputFormat::Cadu, opts)
        .map_err(std::io::Error::other)?;
    let mut f = File::open(raw)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut scid = None;
    let mut drain = |dec: &mut decoder::Decoder| {
        while let Some(ev) = dec.poll() {
            if let decoder::Event::Frame(fr) = ev {
                scid.get_or_insert(fr.header.scid);
            }
        }
    };
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dec.push(buf.get(..n).unwrap_or_default());
        drain(&mut dec);
    }
    dec.finish();
    drain(&mut dec);
    Ok((Some(dec.stats()), scid, trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_ids_are_safe_path_components() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let id = pass_id(t, "xband");
        assert_eq!(id, "20231114T221320Z-xband");
        assert!(valid_pass_id(&id));
        // A second pass in the same second gets its own directory.
        let root = tempfile::tempdir().unwrap();
        let a = PassArchive::create(
            root.path(),
            t,
            "xband",
            true,
            Duration::from_secs(1),
            1 << 20,
        )
        .unwrap();
        let b = PassArchive::create(
            root.path(),
            t,
            "xband",
            true,
            Duration::from_secs(1),
            1 << 20,
        )
        .unwrap();
        assert_eq!(a.id(), "20231114T221320Z-xband");
        assert_eq!(b.id(), "20231114T221320Z_2-xband");
        assert!(valid_pass_id(&b.id()));
        for bad in ["", "../etc", "a/b", "x y", &"a".repeat(81)] {
            assert!(!valid_pass_id(bad), "{bad}");
        }
    }
}
