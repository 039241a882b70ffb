//! Scene products at LOS: one worker thread per daemon generation turns closed passes of
//! imaging inputs into products (the same chain as `downlink image`), so the decoder threads
//! never wait for GDAL.
//!
//! The worker re-reads the pass from the archive — `cadus.raw` when kept, else the frames of
//! each virtual channel, else the packet files — so products are made from exactly what was
//! archived, and a pass can be re-made later by hand with `downlink image`. Jobs wait in a
//! bounded queue; when it is full the pass is skipped, logged and counted (`dropped`), never
//! blocking LOS. At shutdown the queued passes are finished first.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use decoder::{InputFormat, Profile};
use serde::Serialize;

use super::Shared;
use crate::config::ImagingConfig;
use crate::imaging::{self, ImageRequest, PassDate};

/// Passes waiting for products at most.
const QUEUE: usize = 8;

/// A closed pass whose products are due.
#[derive(Debug)]
pub struct Job {
    /// Pass id (its directory name).
    pub pass_id: String,
    /// Pass directory.
    pub dir: PathBuf,
    /// The input's profile (has `[imaging]`).
    pub profile: Profile,
    /// AOS wall clock: dates the instrument's time of day.
    pub aos: SystemTime,
}

/// What operators see in `/api/v1/status` and `/metrics`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProductsStatus {
    /// Passes whose products were made.
    pub ok: u64,
    /// Passes whose products failed (see `last_error`).
    pub failed: u64,
    /// Passes skipped because the queue was full.
    pub dropped: u64,
    /// Passes whose products were made but could not be catalogued.
    pub catalog_failed: u64,
    /// Passes waiting.
    pub queued: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// The last pass done and its timing.
    pub last: Option<serde_json::Value>,
}

/// The sending side, held in [`Shared`].
#[derive(Debug, Default)]
pub struct Queue {
    tx: Mutex<Option<SyncSender<Job>>>,
    /// Counters.
    pub status: Mutex<ProductsStatus>,
}

impl Queue {
    /// Queues a pass; a full queue drops it (counted, logged).
    pub fn submit(&self, job: Job) {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = tx.as_ref() else {
            return;
        };
        let id = job.pass_id.clone();
        let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        match tx.try_send(job) {
            Ok(()) => st.queued += 1,
            Err(TrySendError::Full(_)) => {
                st.dropped += 1;
                tracing::error!(pass = %id, "product queue full: no products for this pass (make them with `downlink image`)");
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Stops taking jobs; the worker finishes the queued ones and exits.
    pub fn close(&self) {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn set_sender(&self, tx: SyncSender<Job>) {
        *self.tx.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }
}

/// Starts the worker when imaging is enabled and some input has an imaging instrument.
pub fn start(
    cfg: &ImagingConfig,
    archive: &Path,
    any_imaging_input: bool,
    shared: &Arc<Shared>,
) -> Option<std::thread::JoinHandle<()>> {
    if !cfg.enabled || !any_imaging_input {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    shared.products.set_sender(tx);
    let cfg = cfg.clone();
    let archive = archive.to_owned();
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("products".into())
        .spawn(move || worker(&cfg, &archive, &rx, &shared))
        .map_err(|e| tracing::error!(error = %e, "cannot start the product worker"))
        .ok()
}

fn worker(cfg: &ImagingConfig, archive: &Path, rx: &Receiver<Job>, shared: &Shared) {
    while let Ok(job) = rx.recv() {
        let started = std::time::Instant::now();
        let result = make(cfg, archive, &job);
        let mut st = shared
            .products
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        st.queued = st.queued.saturating_sub(1);
        match result {
            Ok(listing) => {
                st.ok += 1;
                if let Some(cat) = &shared.catalog {
                    let dir = job.dir.join("products");
                    match crate::archive_catalog::register_pass(cat.as_ref(), archive, &dir) {
                        Ok(id) => tracing::info!(pass = %job.pass_id, item = %id, "catalogued"),
                        Err(e) => {
                            st.catalog_failed += 1;
                            let msg = format!("{}: catalog: {e:#}", job.pass_id);
                            tracing::error!(pass = %job.pass_id, error = %msg, "catalog registration failed");
                            st.last_error = Some(msg);
                        }
                    }
                }
                let secs = started.elapsed().as_secs_f64();
                tracing::info!(pass = %job.pass_id, products = listing.products.len(), seconds = secs, "products made");
                st.last = Some(serde_json::json!({
                    "pass": job.pass_id, "products": listing.products.len(), "seconds": secs,
                    "geolocation_qa": listing.geolocation_qa.first(),
                }));
            }
            Err(e) => {
                st.failed += 1;
                let msg = format!("{}: {e:#}", job.pass_id);
                tracing::error!(pass = %job.pass_id, error = %format!("{e:#}"), "products failed");
                st.last_error = Some(msg);
            }
        }
    }
}

/// TLE files: the configured ones, then every `*.tle`/`*.txt` in `ARCHIVE/tle`.
pub fn tle_files(cfg: &ImagingConfig, archive: &Path) -> Vec<PathBuf> {
    let mut files = cfg.tle.clone();
    if let Ok(rd) = std::fs::read_dir(archive.join("tle")) {
        let mut stored: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "tle" || x == "txt"))
            .collect();
        stored.sort();
        files.extend(stored);
    }
    files
}

fn make(cfg: &ImagingConfig, archive: &Path, job: &Job) -> anyhow::Result<imaging::Listing> {
    let spec = job
        .profile
        .imaging
        .as_ref()
        .ok_or_else(|| imaging::ImagingError::NoInstrument(job.profile.name.clone()))?;
    let (format, files) = archived_input(&job.dir)?;
    let aos: chrono::DateTime<chrono::Utc> = job.aos.into();
    let tle = imaging::choose_tle(&tle_files(cfg, archive), spec.norad_id, Some(aos))?;
    let pass = imaging::collect_packets(&job.profile, format, &files)?;
    let out = job.dir.join("products");
    Ok(imaging::make_products(&ImageRequest {
        profile: &job.profile,
        pass: &pass,
        tle: &tle,
        date: PassDate::Near(aos),
        out_dir: &out,
        pass_id: &job.pass_id,
        landmask: cfg.landmask.as_deref(),
    })?)
}

/// What to re-decode: raw CADUs if kept, else frames per VC (VC order), else packet files.
fn archived_input(dir: &Path) -> anyhow::Result<(InputFormat, Vec<PathBuf>)> {
    let raw = dir.join("cadus.raw");
    let non_empty = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0);
    if non_empty(&raw) {
        return Ok((InputFormat::Cadu, vec![raw]));
    }
    for (sub, format) in [
        ("frames", InputFormat::Frames),
        ("packets", InputFormat::Packets),
    ] {
        if let Ok(rd) = std::fs::read_dir(dir.join(sub)) {
            let mut files: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| non_empty(p))
                .collect();
            files.sort();
            if !files.is_empty() {
                return Ok((format, files));
            }
        }
    }
    anyhow::bail!("{}: no archived CADUs, frames or packets", dir.display())
}
