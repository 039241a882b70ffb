//! The decoder thread of one input: decoder, pass state (AOS/LOS) and the pass archive.
//!
//! Archive failures never pass silently and never stop decoding. A write that fails (full or
//! read-only disk, the directory gone) is counted by operation (`/metrics`
//! `downlink_archive_io_errors_total{op}`), puts the daemon in the degraded state, is logged at
//! most once per 10 s per input and operation, with the count (the [`ArchiveIoFailed`] event),
//! and the frames it held are counted as *not archived* in the pass record and in
//! `downlink_frames_unarchived_total`. A pass whose record cannot be written stays in memory
//! with its live counts, is listed by `/api/v1/passes` as `"archive": "incomplete"`, and its
//! record is retried every few seconds until the disk takes it (at shutdown a last try; if that
//! fails too the record goes to the log).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::PoisonError;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use decoder::{Decoder, DecoderOptions, Event, InputFormat};

use super::events::{emit, ArchiveIoFailed, BytesWithoutPass, PassClosed, PassOpened};
use super::plot::Timeline;
use super::{PipelineSettings, Worker};
use crate::config::{ArchiveConfig, InputConfig};
use archive::pass::{pass_id, PassArchive};
use archive::record::{
    ArchiveSection, ArchiveState, DropReason, LinkQuality, PassRecord, Unarchived,
};

/// How often a pass record that could not be written is tried again.
const RECORD_RETRY: Duration = Duration::from_secs(2);

struct Pass {
    id: String,
    aos: SystemTime,
    aos_instant: Instant,
    timeline: Timeline,
    last_frame: Instant,
    last_frame_time: SystemTime,
    archive: Option<PassArchive>,
    scid: Option<u16>,
    drops_at_aos: BTreeMap<DropReason, u64>,
    /// Archive I/O failures of this pass, by operation.
    io_errors: BTreeMap<&'static str, u64>,
    /// Failures not yet added to the process counters (flushed once per batch).
    io_errors_unflushed: BTreeMap<&'static str, u64>,
    /// The last error text of this pass, for the degraded reason.
    last_error: Option<String>,
    /// What the decoder delivered but the archive does not hold.
    unarchived: Unarchived,
    /// The archive was poisoned by a failed fdatasync (already counted).
    poisoned: bool,
    /// A write failed since the last batch handed to the kernel.
    failed_since_flush: bool,
    /// Soft input: channel bits compared and in error up to the last batch (for the plot).
    channel_seen: (u64, u64),
}

/// The link quality of a soft-symbol (`soft-i8` / `hard`) pass, from the decoder's inner
/// counters: the channel bit error rate estimated by re-encoding the Viterbi output, the phase
/// case locked last, and how often the lock was lost and found again. `None` for other inputs.
fn link_quality(stats: &decoder::Stats) -> Option<LinkQuality> {
    stats.inner.as_ref().map(|i| LinkQuality {
        channel_ber: i.channel_ber(),
        channel_bits: i.channel_bits_compared,
        channel_bit_errors: i.channel_bit_errors,
        phase_case: i.phase_case.map(str::to_owned),
        phase_locks: i.phase_locks,
        reacquisitions: i.reacquisitions,
    })
}

/// A closed pass whose record is not on disk yet.
struct PendingRecord {
    id: String,
    /// The pass directory (it may not exist when the archive could not be created).
    dir: PathBuf,
    archive: Option<PassArchive>,
    record: PassRecord,
    /// `plot.png` and `timeline.json`, written before the record.
    side_files: Vec<(&'static str, Vec<u8>)>,
    aos: SystemTime,
    /// Data was archived (products can be made from it).
    has_data: bool,
    tries: u32,
    next_try: Instant,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn new_decoder(input: &InputConfig, archive: &ArchiveConfig) -> Option<Decoder> {
    let opts = DecoderOptions {
        raw_cadus: archive.keep_raw_cadus,
        frames: true,
        fill_frames: false,
        packets: true,
    };
    match Decoder::new(&input.profile, input.format, opts) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!(input = %input.name, error = %e, "cannot build decoder");
            None
        }
    }
}

/// The decoder thread's state.
struct Pipeline<'a> {
    input: &'a InputConfig,
    w: &'a Worker,
    settings: std::sync::Arc<PipelineSettings>,
    pass: Option<Pass>,
    pending: Vec<PendingRecord>,
}

/// Runs until the ingest side is gone (its worker stopped and dropped the queue's sender):
/// everything queued is decoded, and the pass in progress closed, before returning.
pub fn run(input: &InputConfig, rx: &Receiver<Bytes>, w: &Worker) {
    let settings = w.shared.settings();
    let Some(mut dec) = new_decoder(input, &settings.archive) else {
        // Keep taking the queue so the ingest side counts, rather than blocks.
        while rx.recv().is_ok() {}
        return;
    };
    let mut pl = Pipeline {
        input,
        w,
        settings,
        pass: None,
        pending: Vec::new(),
    };
    let mut idle_since = Instant::now();
    let mut last_status = Instant::now();
    loop {
        w.input.beat(1);
        pl.settings = w.shared.settings();
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(d) => {
                dec.push(&d);
                // Take what is already queued before polling, within a bound.
                for _ in 0..256 {
                    match rx.try_recv() {
                        Ok(more) => dec.push(&more),
                        Err(_) => break,
                    }
                }
                pl.drain(&mut dec);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        pl.sync();
        let los_timeout = pl.settings.pass.los_timeout;
        let los = pl
            .pass
            .as_ref()
            .is_some_and(|p| p.last_frame.elapsed() >= los_timeout);
        if los {
            pl.close(&mut dec);
            if let Some(d) = new_decoder(input, &pl.settings.archive) {
                dec = d;
            }
            idle_since = Instant::now();
        } else if pl.pass.is_none()
            && idle_since.elapsed() >= los_timeout.max(Duration::from_secs(1))
        {
            // Noise without lock: start over so memory and counters do not grow between passes.
            if dec.stats().bytes_in > 0 {
                if let Some(d) = new_decoder(input, &pl.settings.archive) {
                    pl.no_pass(&dec);
                    dec = d;
                }
            }
            idle_since = Instant::now();
        }
        pl.retry_pending(false);
        if last_status.elapsed() >= Duration::from_millis(200) {
            pl.show_live(&dec);
            last_status = Instant::now();
        }
    }
    pl.drain(&mut dec);
    if pl.pass.is_none() {
        pl.no_pass(&dec);
    }
    pl.close(&mut dec);
    pl.retry_pending(true);
    // Retired by a reload (not a shutdown): records the disk refused are still retried, from
    // this thread, until it takes them or the daemon stops.
    while !pl.pending.is_empty() && !w.shared.stopping() {
        std::thread::sleep(Duration::from_millis(200));
        pl.retry_pending(false);
    }
    pl.retry_pending(true);
    if pl.pending.is_empty() {
        w.shared.archive_ok(&input.name);
    }
    for p in pl.pending.drain(..) {
        // The disk still refuses: the log is the last place the record can go.
        tracing::error!(input = %input.name, pass = %p.id, record = %p.record, "pass record could not be written before shutdown; it is in this log line only");
    }
}

impl Pipeline<'_> {
    /// Publishes the live counters of the pass in progress: as the input's `current` while
    /// this decoder owns the input's pass, else (retired by a reload, finishing) under its
    /// pass id in `retiring`.
    fn show_live(&self, dec: &Decoder) {
        let Some(p) = &self.pass else { return };
        let stats = dec.stats();
        self.w.input.with(|s| {
            if s.pass.as_deref() == Some(p.id.as_str()) {
                s.current = Some(stats);
            } else {
                s.retiring.insert(p.id.clone(), stats);
            }
        });
    }

    /// Counts the bytes of a decoder that is dropped without having opened a pass (noise, or a
    /// stream that never locked), so every byte received is in a pass record or a counter.
    fn no_pass(&self, dec: &Decoder) {
        emit(BytesWithoutPass {
            input: &self.w.input,
            name: &self.input.name,
            bytes: dec.stats().bytes_in,
        });
    }

    fn open_pass(&mut self, raw_cadus: bool) -> Pass {
        let (input, shared) = (self.input, &self.w.shared);
        let archive_cfg = &self.settings.archive;
        let aos = SystemTime::now();
        let mut io_errors = BTreeMap::new();
        let mut last_error = None;
        let archive = match PassArchive::create(
            &archive_cfg.path,
            aos,
            &input.name,
            // Frame and packet inputs have no CADUs: their frames (or packets) are the data kept.
            raw_cadus && !matches!(input.format, InputFormat::Frames | InputFormat::Packets),
            archive_cfg.fsync_interval,
            archive_cfg.fsync_bytes,
        ) {
            Ok(a) => Some(a),
            Err(e) => {
                let error = e.to_string();
                emit(ArchiveIoFailed {
                    shared,
                    input: &input.name,
                    pass: None,
                    op: "create",
                    count: 1,
                    error: &error,
                });
                io_errors.insert("create", 1);
                last_error = Some(error);
                None
            }
        };
        let id = archive
            .as_ref()
            .map_or_else(|| pass_id(aos, &input.name), PassArchive::id);
        emit(PassOpened {
            input: &input.name,
            pass: &id,
        });
        shared.webhooks.notify(
            crate::config::WebhookEvent::Aos,
            serde_json::json!({
                "id": id,
                "input": input.name,
                "profile": input.profile.name,
                "aos": humantime::format_rfc3339_millis(aos).to_string(),
            }),
        );
        let drops_at_aos = self.w.input.with(|s| {
            // A decoder retired by a reload may still be finishing the input's previous pass:
            // its live counters move aside, they are not overwritten.
            if let (Some(prev), Some(stats)) = (s.pass.clone(), s.current.take()) {
                s.retiring.insert(prev, stats);
            }
            s.pass = Some(id.clone());
            s.sync_state = super::SyncState::Locked;
            s.drops.clone()
        });
        Pass {
            id,
            aos,
            aos_instant: Instant::now(),
            timeline: Timeline::default(),
            last_frame: Instant::now(),
            last_frame_time: aos,
            archive,
            scid: None,
            drops_at_aos,
            io_errors,
            io_errors_unflushed: BTreeMap::new(),
            last_error,
            unarchived: Unarchived::default(),
            poisoned: false,
            failed_since_flush: false,
            channel_seen: (0, 0),
        }
    }

    fn drain(&mut self, dec: &mut Decoder) {
        // One clock read and one look at the syncer per batch of events, not per frame.
        let now = Instant::now();
        if let Some(p) = &mut self.pass {
            p.check_poisoned();
        }
        while let Some(ev) = dec.poll() {
            let opens = matches!(
                ev,
                Event::Locked { .. }
                    | Event::Frame(_)
                    | Event::Packet { .. }
                    | Event::RawCadu { .. }
            );
            if opens && self.pass.is_none() {
                // The archive keeps raw CADUs exactly when this decoder delivers them (a reload
                // may have changed archive.keep_raw_cadus since it was built).
                self.pass = Some(self.open_pass(dec.options().raw_cadus));
            }
            let Some(p) = self.pass.as_mut() else {
                continue;
            };
            let sec = p
                .timeline
                .at(now.saturating_duration_since(p.aos_instant).as_secs());
            match &ev {
                Event::Frame(f) => {
                    sec.good += 1;
                    sec.locked = true;
                    sec.corrected += f.rs.map_or(0, |o| {
                        o.codewords()
                            .iter()
                            .filter(|c| matches!(c, decoder::rs::CodewordOutcome::Corrected { .. }))
                            .count() as u32
                    });
                }
                Event::Locked { .. } | Event::RawCadu { .. } => sec.locked = true,
                Event::Rejected { .. } => sec.rejected += 1,
                _ => {}
            }
            let writable = p.archive.is_some() && !p.poisoned;
            let res = match &ev {
                Event::RawCadu { data, .. } => Some((
                    "cadu",
                    p.archive
                        .as_mut()
                        .filter(|_| writable)
                        .map(|a| a.cadu(data)),
                )),
                Event::Frame(f) => {
                    p.last_frame = now;
                    p.scid.get_or_insert(f.header.scid);
                    Some((
                        "frame",
                        p.archive
                            .as_mut()
                            .filter(|_| writable)
                            .map(|a| a.frame(f.header.vcid, f.header.vc_count, &f.data)),
                    ))
                }
                Event::Packet { packet, vcid } => Some((
                    "packet",
                    p.archive
                        .as_mut()
                        .filter(|_| writable)
                        .map(|a| a.packet(packet.header.apid, *vcid, &packet.data)),
                )),
                Event::Locked { .. } => {
                    self.w
                        .input
                        .with(|s| s.sync_state = super::SyncState::Locked);
                    None
                }
                Event::LockLost { .. } => {
                    self.w
                        .input
                        .with(|s| s.sync_state = super::SyncState::Searching);
                    None
                }
                _ => None,
            };
            let Some((what, res)) = res else { continue };
            let archived = match res {
                Some(Ok(())) => true,
                Some(Err(e)) => {
                    p.note_error("write", &e.to_string());
                    false
                }
                // No archive, or a poisoned one: nothing more to count as an I/O error.
                None => false,
            };
            if !archived {
                match what {
                    "cadu" => p.unarchived.cadus += 1,
                    "frame" => p.unarchived.frames += 1,
                    _ => p.unarchived.packets += 1,
                }
            }
        }
        if let Some(p) = &mut self.pass {
            // Soft input: this batch's channel bits and errors go to the plot's second.
            if let Some(i) = dec.stats().inner {
                let (bits, errors) = (i.channel_bits_compared, i.channel_bit_errors);
                let sec = p
                    .timeline
                    .at(now.saturating_duration_since(p.aos_instant).as_secs());
                sec.channel_bits = sec
                    .channel_bits
                    .saturating_add(bits.saturating_sub(p.channel_seen.0));
                sec.channel_errors = sec
                    .channel_errors
                    .saturating_add(errors.saturating_sub(p.channel_seen.1));
                p.channel_seen = (bits, errors);
            }
            if p.last_frame == now {
                p.last_frame_time = SystemTime::now();
            }
            let t = unix_ms(p.last_frame_time);
            self.w.input.with(|s| s.last_frame_unix_ms = Some(t));
        }
        self.flush_errors();
    }

    /// Adds this batch's archive failures to the process counters (one lock per batch).
    fn flush_errors(&mut self) {
        let Some(p) = &mut self.pass else { return };
        let errors = std::mem::take(&mut p.io_errors_unflushed);
        let reason = p.last_error.clone().unwrap_or_default();
        for (op, n) in errors {
            emit(ArchiveIoFailed {
                shared: &self.w.shared,
                input: &self.input.name,
                pass: Some(&p.id),
                op,
                count: n,
                error: &reason,
            });
        }
    }

    /// Hands buffered archive data to the kernel when due. A batch that reached the kernel with
    /// no failure since the previous one means the archive works (again).
    fn sync(&mut self) {
        let Some(p) = &mut self.pass else { return };
        let Some(a) = &mut p.archive else { return };
        if a.poisoned() {
            return;
        }
        match a.maybe_sync() {
            Ok(true) => {
                let clean = !std::mem::take(&mut p.failed_since_flush);
                if clean && self.pending.is_empty() {
                    self.w.shared.archive_ok(&self.input.name);
                }
            }
            Ok(false) => {}
            Err(e) => {
                p.note_error("write", &e.to_string());
                self.flush_errors();
            }
        }
    }

    fn close(&mut self, dec: &mut Decoder) {
        if self.pass.is_none() {
            return;
        }
        dec.finish();
        self.drain(dec);
        let Some(mut p) = self.pass.take() else {
            return;
        };
        let (input, shared) = (self.input, &self.w.shared);
        let stats = dec.stats();
        let drops_now = self.w.input.with(|s| s.drops.clone());
        let drops: BTreeMap<String, u64> = drops_now
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    v.saturating_sub(p.drops_at_aos.get(k).copied().unwrap_or(0)),
                )
            })
            .collect();
        let los = p.last_frame_time;
        let spacecraft = p.scid.map(|s| {
            input
                .profile
                .spacecraft_name(s)
                .map_or_else(|| format!("SCID {s}"), str::to_owned)
        });
        let min_frames = self.settings.pass.min_frames;
        let complete = p.archive.is_some()
            && !p.poisoned
            && p.io_errors.is_empty()
            && p.unarchived.frames == 0
            && p.unarchived.packets == 0
            && p.unarchived.cadus == 0;
        let mut record = PassRecord {
            id: p.id.clone(),
            input: input.name.clone(),
            profile: input.profile.name.clone(),
            spacecraft,
            scid: p.scid,
            counters: serde_json::to_value(&stats).unwrap_or_default(),
            link_quality: Some(link_quality(&stats)),
            drops: Some(drops),
            suspect: Some(min_frames > 0 && stats.frames.good < min_frames),
            archive: Some(ArchiveSection {
                state: if complete {
                    ArchiveState::Complete
                } else {
                    ArchiveState::Incomplete
                },
                io_errors: p
                    .io_errors
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), *v))
                    .collect(),
                not_archived: p.unarchived,
                poisoned: p.poisoned,
            }),
            archive_io_errors: Some(p.io_errors.values().sum::<u64>()),
            plot: Some("plot.png".into()),
            timeline: Some("timeline.json".into()),
            station: Some(self.settings.station.name.clone()),
            station_location: archive::record::StationLocation::of(&self.settings.station),
            ..PassRecord::default()
        };
        record.set_times(p.aos, los);
        shared.webhooks.notify(
            crate::config::WebhookEvent::Los,
            serde_json::to_value(record.los_event()).unwrap_or_default(),
        );
        let dir = p.archive.as_ref().map_or_else(
            || self.settings.archive.path.join("passes").join(&p.id),
            |a| a.dir().to_owned(),
        );
        let mut side_files = Vec::new();
        match p.timeline.png(p.aos, los, 900, 360) {
            Ok(png) => side_files.push(("plot.png", png)),
            Err(e) => tracing::warn!(pass = %p.id, error = %e, "pass plot not drawn"),
        }
        if let Ok(json) = serde_json::to_vec(&p.timeline.to_json(p.aos, los)) {
            side_files.push(("timeline.json", json));
        }
        let has_data = p.archive.is_some();
        self.pending.push(PendingRecord {
            has_data,
            id: p.id.clone(),
            dir,
            archive: p.archive.take(),
            record,
            side_files,
            aos: p.aos,
            tries: 0,
            next_try: Instant::now(),
        });
        // The record is on disk (or pending, listed as incomplete) before the pass is counted.
        self.retry_pending(true);
        let unarchived = p.unarchived.frames;
        self.w.input.with(|s| {
            // A reload may have started this input's next worker already: its pass stays.
            if s.pass.as_deref() == Some(p.id.as_str()) {
                s.pass = None;
                s.sync_state = super::SyncState::Searching;
                s.current = None;
            }
            s.retiring.remove(&p.id);
            emit(PassClosed {
                status: s,
                input: &input.name,
                pass: &p.id,
                stats: &stats,
                frames_unarchived: unarchived,
            });
        });
    }

    /// Writes the records of closed passes that are due (`now`: all of them, whatever their
    /// schedule); a success is published (webhook, products) as at a normal LOS.
    fn retry_pending(&mut self, now: bool) {
        if self.pending.is_empty() {
            return;
        }
        let t = Instant::now();
        let (input, shared) = (self.input, &self.w.shared);
        let mut i = 0;
        while let Some(p) = self.pending.get_mut(i) {
            if !now && t < p.next_try {
                i += 1;
                continue;
            }
            p.tries += 1;
            let res = match &mut p.archive {
                Some(a) => a.close(&p.record, &p.side_files),
                None => write_bare_record(&p.dir, &p.record, &p.side_files),
            };
            match res {
                Ok(path) => {
                    let p = self.pending.swap_remove(i);
                    shared
                        .pending_records
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&p.id);
                    if p.tries > 1 {
                        tracing::warn!(input = %input.name, pass = %p.id, tries = p.tries, "pass record written after the archive recovered");
                    }
                    shared.pass_index.insert(&p.record);
                    self.published(&p, &path);
                    if self.pending.is_empty() {
                        shared.archive_ok(&input.name);
                    }
                }
                Err(e) => {
                    p.next_try = t + RECORD_RETRY;
                    if p.tries == 1 {
                        let error = e.to_string();
                        emit(ArchiveIoFailed {
                            shared,
                            input: &input.name,
                            pass: Some(&p.id),
                            op: "record",
                            count: 1,
                            error: &error,
                        });
                    }
                    let mut summary = p.record.summary();
                    summary.archive = ArchiveState::Incomplete;
                    summary.record_error = Some(e.to_string());
                    summary.record_tries = Some(p.tries);
                    shared
                        .pending_records
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(p.id.clone(), summary);
                    i += 1;
                }
            }
        }
    }

    /// A pass record is on disk: notify, and queue products.
    fn published(&self, p: &PendingRecord, record_path: &std::path::Path) {
        let shared = &self.w.shared;
        if p.has_data {
            super::merge::after_los(
                shared,
                super::merge::Closed {
                    record: p.record.clone(),
                    profile: self.input.profile.clone(),
                    imaging: self.input.profile.imaging.is_some(),
                    date: self.input.pass_date,
                },
            );
        }
        shared.webhooks.notify(
            crate::config::WebhookEvent::PassRecord,
            serde_json::to_value(&p.record).unwrap_or_default(),
        );
        if self.input.profile.imaging.is_some() && p.has_data {
            if let Some(dir) = record_path.parent() {
                shared.products.submit(super::products::Job {
                    pass_id: p.id.clone(),
                    dir: dir.to_owned(),
                    profile: self.input.profile.clone(),
                    aos: p.aos,
                    date: self.input.pass_date,
                });
            }
        }
        // After the product job is recorded: the uploader waits for it when there is one.
        if let Some(dir) = record_path.parent() {
            shared.uploads.notify(dir);
        }
    }
}

impl Pass {
    /// Notes (once) that the syncer thread's failed fdatasync poisoned the archive.
    fn check_poisoned(&mut self) {
        if !self.poisoned && self.archive.as_ref().is_some_and(PassArchive::poisoned) {
            self.poisoned = true;
            self.note_error(
                "sync",
                "fdatasync failed: the pass archive is poisoned and refuses writes",
            );
        }
    }

    /// Counts an archive failure of this pass (logged when the batch is flushed).
    fn note_error(&mut self, op: &'static str, error: &str) {
        self.failed_since_flush = true;
        *self.io_errors.entry(op).or_default() += 1;
        *self.io_errors_unflushed.entry(op).or_default() += 1;
        if self.last_error.is_none() {
            self.last_error = Some(error.to_owned());
        }
    }
}

/// The record of a pass whose archive directory could never be created.
fn write_bare_record(
    dir: &std::path::Path,
    record: &PassRecord,
    side_files: &[(&str, Vec<u8>)],
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in side_files {
        archive::write_atomic(dir.join(name), bytes).map_err(std::io::Error::other)?;
    }
    let text = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    archive::write_atomic(dir.join("pass.json"), &text).map_err(std::io::Error::other)
}
