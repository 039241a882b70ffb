//! Scene products at LOS: one worker thread per daemon generation turns closed passes of
//! imaging inputs into products (the same chain as `downlink image`), so the decoder threads
//! never wait for GDAL.
//!
//! The worker re-reads the pass from the archive — `cadus.raw` when kept, else `frames.raw`
//! (or the per-VC frame files of a pass archived before store-once), else the packets — so
//! products are made from exactly what was archived, and a pass can be re-made later by hand with `downlink image`.
//!
//! # Every pass gets its whole product set once, whatever happens
//!
//! - **Job record.** [`Queue::submit`] writes `passes/ID/products.job` (pass id, profile, AOS,
//!   attempts, last error; atomic, fsynced) before queueing the pass. The record is removed only
//!   once the set is published and catalogued, so a crash, a full queue or a failure never loses
//!   the job.
//! - **Staging.** The set is built in `passes/ID/products.tmp-PID-N/` (each file written under a
//!   unique temporary name, fsynced, renamed), the visual COG of the composite is added, every
//!   file and the directory are fsynced, and one rename makes it `passes/ID/products/`
//!   ([`archive::StagingDir`]). So `products/` is complete whenever it exists, and the paths in
//!   `products.json` and the catalog are the final ones. A set without `products.json` (left by
//!   an older version) is made again and replaced whole.
//! - **Catalog** after publication: the STAC item upsert replaces by id, so repeating it never
//!   duplicates an item. A job for a pass whose set is complete only (re)catalogues it: running
//!   a job twice changes nothing.
//! - **Start.** The worker first removes what interrupted jobs left (`products.tmp-*` staging
//!   directories, `products.old-*` sets moved aside, hidden temporary files in `products/`,
//!   temporary job records) and counts it (`cleaned`), then takes up every `products.job`
//!   (`recovered`). A closed pass of a built-in imaging profile with neither a product set nor a
//!   record (the daemon died between writing `pass.json` and the record) gets a record then too;
//!   this also makes products for passes archived while `[imaging]` was off.
//! - **Retries.** A failed attempt is retried after 10 s, 40 s, 160 s, 640 s ([`retry_delay`]),
//!   [`MAX_ATTEMPTS`] attempts in all (`retried` counts the failed attempts that will be
//!   retried). The attempt count is written to the record *before* each attempt, so a pass that
//!   kills the daemon is given up instead of crash-looping. A pass without image data is not
//!   retried. A given-up job is counted `failed`, its record renamed `products.failed` (last
//!   error inside), and `products` health is degraded until a later pass succeeds (not for a
//!   pass without image data). To try again, rename `products.failed` to `products.job` and
//!   restart the daemon: the attempts start over.
//! - **Full queue.** [`QUEUE`] passes wait in memory; a pass submitted while it is full is
//!   `deferred`: its record stays on disk and the worker takes it up as soon as it is idle. Only
//!   a pass whose record could not be written *and* that finds the queue full is `dropped`.
//!
//! At shutdown the queued passes are finished first; passes waiting for a retry keep their
//! record and are taken up at the next start.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};

use decoder::{InputFormat, Profile};
use serde::{Deserialize, Serialize};

use super::events::{
    emit, ProductCatalogFailed, ProductJobDeferred, ProductJobDone, ProductJobDropped,
    ProductJobGivenUp, ProductJobRetry, ProductJobUnreadable, ProductJobsTakenUp,
};
use super::{Health, Shared};
use crate::config::ImagingConfig;
use raster::scene::{self, ImageRequest, PassDate};

/// Passes waiting for products in memory at most; more are deferred (record kept on disk).
pub const QUEUE: usize = 8;
/// Attempts per pass, interrupted ones included.
pub const MAX_ATTEMPTS: u32 = 5;
/// The job record in a pass directory.
pub const RECORD: &str = "products.job";
/// The record of a job given up.
pub const FAILED: &str = "products.failed";
/// The product set in a pass directory.
pub const PRODUCTS: &str = "products";
/// The listing in a product set: written last, so its presence marks a complete set even in
/// sets made before sets were staged.
const LISTING: &str = "products.json";

/// A closed pass whose products are due.
#[derive(Debug)]
pub struct Job {
    /// Pass id (its directory name).
    pub pass_id: String,
    /// Pass directory.
    pub dir: PathBuf,
    /// The input's profile (has `[imaging]`).
    pub profile: Profile,
    /// AOS wall clock: dates the instrument's time of day, unless `date` is given.
    pub aos: SystemTime,
    /// The UTC date of the first image line (`input[].pass_date`, for replays).
    pub date: Option<chrono::NaiveDate>,
}

/// What operators see in `/api/v1/status` and `/metrics`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProductsStatus {
    /// Passes whose products were made (or were complete already) and catalogued.
    pub ok: u64,
    /// Passes given up (see `last_error` and the pass's `products.failed`).
    pub failed: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Passes submitted while the queue was full: their record waits on disk.
    pub deferred: u64,
    /// Passes lost: their record could not be written and the queue was full.
    pub dropped: u64,
    /// Jobs taken up from their record (at start, or deferred ones).
    pub recovered: u64,
    /// Leftovers of interrupted jobs removed at start.
    pub cleaned: u64,
    /// Attempts whose products were made but could not be catalogued (retried).
    pub catalog_failed: u64,
    /// Passes in the queue.
    pub queued: u64,
    /// Passes waiting for a retry or taken up from their record, not yet run.
    pub pending: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// The last pass done and its timing.
    pub last: Option<serde_json::Value>,
}

/// `passes/ID/products.job`: everything needed to make a pass's products after a restart.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    pass_id: String,
    profile: Profile,
    /// AOS, Unix milliseconds.
    aos_unix_ms: i64,
    /// Attempts started.
    attempts: u32,
    #[serde(default)]
    last_error: Option<String>,
    /// Set in `products.failed`; a `products.job` carrying it is an operator's request to try
    /// again from scratch.
    #[serde(default)]
    gave_up: bool,
    /// The UTC date of the first image line, when the input gives it (`pass_date`); else the
    /// instrument's time of day is placed nearest the AOS.
    #[serde(default)]
    date: Option<chrono::NaiveDate>,
}

impl Record {
    fn new(job: &Job) -> Record {
        let aos: chrono::DateTime<chrono::Utc> = job.aos.into();
        Record {
            pass_id: job.pass_id.clone(),
            profile: job.profile.clone(),
            aos_unix_ms: aos.timestamp_millis(),
            attempts: 0,
            last_error: None,
            gave_up: false,
            date: job.date,
        }
    }

    fn save(&self, dir: &Path, name: &str) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)?;
        archive::write_atomic(dir.join(name), &text)?;
        Ok(())
    }

    /// The record in `dir`, `None` if there is none.
    fn load(dir: &Path) -> Result<Option<Record>> {
        let path = dir.join(RECORD);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| {
                Error::ProductJob(format!("{}: not a product job record: {e}", path.display()))
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Step {
                step: format!("reading {}", path.display()),
                source: Box::new(e.into()),
            }),
        }
    }
}

/// A pass handed to the worker through the queue.
struct Entry {
    dir: PathBuf,
    record: Record,
    /// Its record is on disk (so a missing record means another copy of the job finished it).
    durable: bool,
}

/// The sending side, held in [`Shared`].
#[derive(Default)]
pub struct Queue {
    tx: Mutex<Option<SyncSender<Entry>>>,
    /// Set when a pass was deferred: the worker looks for records when idle.
    rescan: AtomicBool,
    /// Counters.
    pub status: Mutex<ProductsStatus>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Queue {
    /// Records the job durably (`passes/ID/products.job`), then queues it; a full queue defers
    /// it to the record (counted, logged), never blocking LOS.
    pub fn submit(&self, job: Job) {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = tx.as_ref() else {
            return;
        };
        let record = Record::new(&job);
        let durable = match record.save(&job.dir, RECORD) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(pass = %job.pass_id, error = %format!("{e:#}"), "cannot record the product job: a crash now loses it");
                false
            }
        };
        let id = job.pass_id;
        let entry = Entry {
            dir: job.dir,
            record,
            durable,
        };
        let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let (status, pass) = (&mut *st, id.as_str());
        match tx.try_send(entry) {
            Ok(()) => status.queued += 1,
            Err(TrySendError::Full(_)) if durable => {
                self.rescan.store(true, Ordering::Relaxed);
                emit(ProductJobDeferred { status, pass });
            }
            Err(TrySendError::Full(_)) => emit(ProductJobDropped { status, pass }),
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

    fn set_sender(&self, tx: SyncSender<Entry>) {
        *self.tx.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    fn update(&self, f: impl FnOnce(&mut ProductsStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Starts the worker when imaging is enabled and some input has an imaging instrument. The
/// worker first cleans up after interrupted jobs and takes up recorded ones, so it must be the
/// only product worker on this archive (the previous generation's is joined before).
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
        .spawn(move || {
            let mut w = Worker {
                cfg: &cfg,
                archive: &archive,
                queue: &shared.products,
                health: &shared.health,
                catalog: shared.catalog.as_deref(),
                pending: Vec::new(),
                uploads: Some(&shared.uploads),
            };
            w.run(&rx);
        })
        .map_err(|e| tracing::error!(error = %e, "cannot start the product worker"))
        .ok()
}

/// How long to wait after `failed` failed attempts: 10 s, ×4 each time.
pub fn retry_delay(failed: u32) -> Duration {
    let steps = failed.saturating_sub(1).min(8);
    Duration::from_secs(10 * 4u64.pow(steps))
}

/// Why an attempt failed.
struct Failure {
    error: Error,
    /// The products were made; the catalog refused them.
    catalog: bool,
}

impl Failure {
    /// Trying again cannot help: the pass has no image (or the profile no instrument).
    fn is_final(&self) -> bool {
        matches!(
            self.error.root(),
            Error::Raster(raster::Error::NoImage { .. } | raster::Error::NoInstrument(_))
        )
    }
}

struct Worker<'a> {
    cfg: &'a ImagingConfig,
    archive: &'a Path,
    /// Counters and the rescan flag.
    queue: &'a Queue,
    health: &'a Health,
    catalog: Option<&'a dyn archive::catalog::Catalog>,
    /// Pass directories taken up from records or waiting for a retry, and when they are due.
    pending: Vec<(PathBuf, Instant)>,
    /// Told when a pass's products are settled (made, or given up): it uploads the pass.
    uploads: Option<&'a super::upload::Uploads>,
}

impl Worker<'_> {
    fn run(&mut self, rx: &Receiver<Entry>) {
        self.scan(true);
        loop {
            match rx.try_recv() {
                Ok(entry) => {
                    self.run_queued(entry);
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            if let Some(i) = self.pending.iter().position(|(_, due)| *due <= now) {
                let (dir, _) = self.pending.swap_remove(i);
                self.set_pending();
                self.run_recorded(&dir);
                continue;
            }
            if self.queue.rescan.swap(false, Ordering::Relaxed) {
                self.scan(false);
                continue;
            }
            let next = self.pending.iter().map(|(_, due)| *due).min();
            let got = match next {
                Some(due) => rx.recv_timeout(due.saturating_duration_since(now)),
                None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(entry) => self.run_queued(entry),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if !self.pending.is_empty() {
            tracing::info!(
                passes = self.pending.len(),
                "product jobs left for the next start"
            );
        }
    }

    fn set_pending(&self) {
        let n = self.pending.len() as u64;
        self.queue.update(|st| st.pending = n);
    }

    fn is_pending(&self, dir: &Path) -> bool {
        self.pending.iter().any(|(d, _)| d == dir)
    }

    fn run_queued(&mut self, entry: Entry) {
        self.queue
            .update(|st| st.queued = st.queued.saturating_sub(1));
        if self.is_pending(&entry.dir) {
            // Another copy of this job (taken up from its record) runs at its time.
            return;
        }
        let record = match Record::load(&entry.dir) {
            Ok(Some(r)) => r,
            // Done by another copy of the job (e.g. found on disk while this one was queued).
            Ok(None) if entry.durable => return,
            Ok(None) => entry.record,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "using the queued copy of the product job");
                entry.record
            }
        };
        self.attempt(&entry.dir, record);
    }

    fn run_recorded(&mut self, dir: &Path) {
        match Record::load(dir) {
            Ok(Some(r)) => self.attempt(dir, r),
            Ok(None) => {}
            Err(e) => {
                // Unreadable: nothing to make the products from. Keep it for the operator.
                let msg = format!("{e:#}");
                let _ = std::fs::rename(dir.join(RECORD), dir.join(FAILED));
                self.queue.update(|status| {
                    let error = msg.clone();
                    emit(ProductJobUnreadable { status, dir, error });
                });
                let _ = self.health.set("products", msg);
            }
        }
    }

    /// One attempt at the job of pass directory `dir`.
    fn attempt(&mut self, dir: &Path, mut rec: Record) {
        // A merged pass is replaced whole by a re-merge: its products are made under the
        // passes directory's merge lock, shared, so the two never overlap. After a wait the
        // directory may hold the new merge: its products are made from that (the re-merge's
        // own job then finds the set complete and only catalogues it).
        let _merge_lock = match (rec.pass_id.strip_suffix(crate::merge::MERGED_INPUT), dir.parent()) {
            (Some(p), Some(passes)) if p.ends_with('-') => crate::merge::share_passes(passes)
                .map_err(|e| tracing::warn!(pass = %rec.pass_id, error = %format!("{e:#}"), "products of a merged pass without the merge lock"))
                .ok(),
            _ => None,
        };
        if rec.gave_up {
            tracing::info!(pass = %rec.pass_id, "product job re-submitted by the operator: attempts start over");
            rec.gave_up = false;
            rec.attempts = 0;
        }
        if rec.attempts >= MAX_ATTEMPTS {
            let err = Error::ProductJob(format!(
                "{} attempts started, the last one interrupted (last error: {})",
                rec.attempts,
                rec.last_error.as_deref().unwrap_or("none")
            ));
            self.give_up(
                dir,
                rec,
                &Failure {
                    error: err,
                    catalog: false,
                },
            );
            return;
        }
        rec.attempts += 1;
        if let Err(e) = rec.save(dir, RECORD) {
            tracing::warn!(pass = %rec.pass_id, error = %format!("{e:#}"), "cannot count the attempt in the job record");
        }
        let started = Instant::now();
        match run_job(self.cfg, self.archive, self.catalog, dir, &rec) {
            Ok(done) => {
                if let Err(e) = std::fs::remove_file(dir.join(RECORD))
                    .map_err(Error::from)
                    .and_then(|()| Ok(archive::sync_dir(&dir.join(RECORD))?))
                {
                    tracing::warn!(pass = %rec.pass_id, error = %format!("{e:#}"), "cannot remove the job record: the pass will be checked again at start");
                }
                self.queue.update(|status| {
                    emit(ProductJobDone {
                        status,
                        pass: &rec.pass_id,
                        made: done.made,
                        products: done.products,
                        seconds: started.elapsed().as_secs_f64(),
                        attempt: rec.attempts,
                        item: done.item.as_deref(),
                        qa: done.qa.as_ref(),
                    });
                });
                if self.health.clear("products") {
                    tracing::info!("products: a pass succeeded again");
                }
                if let Some(u) = self.uploads {
                    u.notify(dir);
                }
            }
            Err(f) => {
                let msg = format!(
                    "{}: {}{:#}",
                    rec.pass_id,
                    if f.catalog { "catalog: " } else { "" },
                    f.error
                );
                if f.catalog {
                    let pass = rec.pass_id.as_str();
                    self.queue
                        .update(|status| emit(ProductCatalogFailed { status, pass }));
                }
                if f.is_final() || rec.attempts >= MAX_ATTEMPTS {
                    self.give_up(dir, rec, &f);
                    return;
                }
                let delay = retry_delay(rec.attempts);
                rec.last_error = Some(msg.clone());
                if let Err(e) = rec.save(dir, RECORD) {
                    tracing::warn!(pass = %rec.pass_id, error = %format!("{e:#}"), "cannot record the error in the job record");
                }
                self.queue.update(|status| {
                    emit(ProductJobRetry {
                        status,
                        pass: &rec.pass_id,
                        error: msg,
                        attempt: rec.attempts,
                        retry_in: delay,
                    });
                });
                self.pending.push((dir.to_owned(), Instant::now() + delay));
                self.set_pending();
            }
        }
    }

    fn give_up(&mut self, dir: &Path, mut rec: Record, f: &Failure) {
        let msg = format!(
            "{}: {}{:#}",
            rec.pass_id,
            if f.catalog { "catalog: " } else { "" },
            f.error
        );
        rec.last_error = Some(msg.clone());
        rec.gave_up = true;
        let kept = rec.save(dir, FAILED).and_then(|()| {
            std::fs::remove_file(dir.join(RECORD))?;
            Ok(archive::sync_dir(&dir.join(RECORD))?)
        });
        if let Err(e) = kept {
            tracing::error!(pass = %rec.pass_id, error = %format!("{e:#}"), "cannot move the job record to products.failed");
        }
        if !f.is_final() {
            let _ = self.health.set("products", msg.clone());
        }
        if let Some(u) = self.uploads {
            u.notify(dir);
        }
        self.queue.update(|status| {
            emit(ProductJobGivenUp {
                status,
                pass: &rec.pass_id,
                error: msg,
                attempts: rec.attempts,
            });
        });
    }

    /// Takes up the records in the archive (not those already pending); at start, first
    /// removes the leftovers of interrupted jobs and records the passes left without one.
    fn scan(&mut self, at_start: bool) {
        let passes = self.archive.join("passes");
        let mut dirs: Vec<PathBuf> = match std::fs::read_dir(&passes) {
            Ok(rd) => rd
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect(),
            Err(e) => {
                tracing::warn!(dir = %passes.display(), error = %e, "cannot list passes for product jobs");
                return;
            }
        };
        // Pass ids start with the AOS time: oldest first.
        dirs.sort();
        let (mut cleaned, mut recovered) = (0u64, 0u64);
        let now = Instant::now();
        for dir in dirs {
            if at_start {
                cleaned += clean(&dir);
            }
            let has_record = dir.join(RECORD).is_file();
            if has_record && dir.join(FAILED).is_file() {
                // Died while giving up: the failure record is the one that counts.
                let _ = std::fs::remove_file(dir.join(RECORD));
                continue;
            }
            let take = has_record || (at_start && adopt(&dir));
            if take && !self.is_pending(&dir) {
                self.pending.push((dir, now));
                recovered += 1;
            }
        }
        self.queue.update(|status| {
            emit(ProductJobsTakenUp {
                status,
                cleaned,
                recovered,
            });
        });
        self.set_pending();
    }
}

/// What a successful job did.
struct Done {
    /// The set was made now (false: it was complete already).
    made: bool,
    products: usize,
    item: Option<String>,
    qa: Option<serde_json::Value>,
}

/// Makes and publishes the product set of the pass in `dir` unless it is complete, then
/// catalogues it.
fn run_job(
    cfg: &ImagingConfig,
    archive: &Path,
    catalog: Option<&dyn archive::catalog::Catalog>,
    dir: &Path,
    rec: &Record,
) -> Result<Done, Failure> {
    let fail = |error| Failure {
        error,
        catalog: false,
    };
    let out = dir.join(PRODUCTS);
    let mut done = Done {
        made: false,
        products: 0,
        item: None,
        qa: None,
    };
    if out.join(LISTING).is_file() {
        tracing::info!(pass = %rec.pass_id, "product set complete already: cataloguing only");
    } else {
        let staging = archive::StagingDir::create(&out).map_err(|e| fail(e.into()))?;
        let listing = make(cfg, archive, dir, rec, &out, staging.path()).map_err(fail)?;
        crate::archive_catalog::write_visual(staging.path()).map_err(fail)?;
        staging.publish().map_err(|e| fail(e.into()))?;
        done.made = true;
        done.products = listing.products.len();
        done.qa = listing
            .geolocation_qa
            .first()
            .and_then(|q| serde_json::to_value(q).ok());
    }
    if let Some(cat) = catalog {
        let id =
            crate::archive_catalog::register_pass(cat, archive, &out).map_err(|error| Failure {
                error,
                catalog: true,
            })?;
        done.item = Some(id);
    }
    Ok(done)
}

/// Removes what interrupted jobs left in pass directory `dir`; how many entries.
fn clean(dir: &Path) -> u64 {
    let out = dir.join(PRODUCTS);
    let mut n = match archive::remove_stale_staging(&out) {
        Ok(n) => n as u64,
        Err(e) => {
            tracing::warn!(error = %e, "cannot remove stale product staging");
            0
        }
    };
    // Hidden files: temporary product files and the swath intermediate of sets made in place
    // (older versions), and temporary job records.
    let hidden = |p: &Path, only: &dyn Fn(&str) -> bool| -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else {
            return 0;
        };
        rd.flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with('.') && only(&name) && e.file_type().is_ok_and(|t| t.is_file())
            })
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count() as u64
    };
    n += hidden(&out, &|_| true);
    n += hidden(dir, &|name| {
        name.starts_with(&format!(".{RECORD}.tmp-")) || name.starts_with(&format!(".{FAILED}.tmp-"))
    });
    n
}

/// Records the job of a closed pass of a built-in imaging profile that has neither products
/// nor a record (the daemon died between `pass.json` and the record); true if recorded.
fn adopt(dir: &Path) -> bool {
    if dir.join(PRODUCTS).join(LISTING).is_file() || dir.join(FAILED).exists() {
        return false;
    }
    let Ok(text) = std::fs::read(dir.join("pass.json")) else {
        return false;
    };
    let Ok(pass) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return false;
    };
    let (Some(id), Some(profile), Some(aos)) = (
        pass["id"].as_str(),
        pass["profile"].as_str(),
        pass["aos"].as_str(),
    ) else {
        return false;
    };
    let Ok(profile) = Profile::builtin(profile) else {
        return false;
    };
    let Ok(aos) = humantime::parse_rfc3339(aos) else {
        return false;
    };
    if profile.imaging.is_none() {
        return false;
    }
    let rec = Record::new(&Job {
        pass_id: id.to_owned(),
        dir: dir.to_owned(),
        profile,
        aos,
        date: None,
    });
    match rec.save(dir, RECORD) {
        Ok(()) => {
            tracing::info!(pass = %id, "closed pass without products or job: recorded");
            true
        }
        Err(e) => {
            tracing::warn!(pass = %id, error = %format!("{e:#}"), "cannot record the product job");
            false
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

/// Makes the products of the pass in `dir` into `work`, listed under `out`.
fn make(
    cfg: &ImagingConfig,
    archive: &Path,
    dir: &Path,
    rec: &Record,
    out: &Path,
    work: &Path,
) -> Result<scene::Listing> {
    let spec = rec
        .profile
        .imaging
        .as_ref()
        .ok_or_else(|| raster::Error::NoInstrument(rec.profile.name.clone()))?;
    let (format, input) = archived_input(dir)?;
    let aos = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(rec.aos_unix_ms)
        .ok_or_else(|| Error::ProductJob(format!("AOS {} ms out of range", rec.aos_unix_ms)))?;
    let (date, near) = match rec.date {
        Some(d) => (
            PassDate::Date(d),
            d.and_hms_opt(12, 0, 0).map_or(aos, |t| t.and_utc()),
        ),
        None => (PassDate::Near(aos), aos),
    };
    let tle = scene::choose_tle(&tle_files(cfg, archive), spec.norad_id, Some(near))?;
    let pass = scene::collect_packets_from(&rec.profile, format, input, dir)?;
    Ok(scene::make_products_in(
        &ImageRequest {
            profile: &rec.profile,
            pass: &pass,
            tle: &tle,
            date,
            out_dir: out,
            pass_id: &rec.pass_id,
            landmask: cfg.landmask.as_deref(),
        },
        work,
    )?)
}

/// What to re-decode: raw CADUs if kept (a merged pass's in its station passes), else the
/// frames (`frames.raw`, or the per-VC files of a pass archived before store-once, VC order),
/// else the packets.
fn archived_input(dir: &Path) -> Result<(InputFormat, Box<dyn std::io::Read + Send>)> {
    archive::pass_store::StoredPass::open(dir)
        .open_whole()
        .map_err(|e| Error::ProductJob(format!("{}: {e}", dir.display())))?
        .ok_or_else(|| {
            Error::ProductJob(format!(
                "{}: no archived CADUs, frames or packets",
                dir.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_and_are_bounded() {
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(2), Duration::from_secs(40));
        assert_eq!(retry_delay(4), Duration::from_secs(640));
        assert_eq!(retry_delay(u32::MAX), retry_delay(9));
        // Four waits before the fifth and last attempt: about 14 minutes in all.
        let total: Duration = (1..MAX_ATTEMPTS).map(retry_delay).sum();
        assert_eq!(total, Duration::from_secs(850));
    }

    fn meteor_job(dir: &Path) -> Job {
        Job {
            pass_id: "20241206T175646Z_x".into(),
            dir: dir.to_owned(),
            profile: Profile::builtin("meteor-lrpt").unwrap(),
            aos: SystemTime::UNIX_EPOCH + Duration::from_millis(1_733_507_806_123),
            date: None,
        }
    }

    #[test]
    fn the_job_record_round_trips_with_its_profile() {
        let dir = tempfile::tempdir().unwrap();
        let job = meteor_job(dir.path());
        let rec = Record::new(&job);
        rec.save(dir.path(), RECORD).unwrap();
        let back = Record::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.profile, job.profile);
        assert_eq!(back.aos_unix_ms, 1_733_507_806_123);
        assert_eq!((back.attempts, back.gave_up), (0, false));
        std::fs::write(dir.path().join(RECORD), b"{").unwrap();
        assert!(Record::load(dir.path()).is_err());
        std::fs::remove_file(dir.path().join(RECORD)).unwrap();
        assert!(Record::load(dir.path()).unwrap().is_none());
    }

    #[test]
    fn start_cleanup_removes_leftovers_and_keeps_products() {
        let pass = tempfile::tempdir().unwrap();
        let p = pass.path();
        std::fs::create_dir_all(p.join("products.tmp-7-0")).unwrap();
        std::fs::write(p.join("products.tmp-7-0/ch1.tif"), b"half").unwrap();
        std::fs::create_dir_all(p.join("products.old-7-1")).unwrap();
        std::fs::create_dir_all(p.join("products")).unwrap();
        std::fs::write(p.join("products/ch1.tif"), b"tif").unwrap();
        std::fs::write(p.join("products/.swath.gcp.tif"), b"x").unwrap();
        std::fs::write(p.join("products/.ch2.tmp-7-3.tif"), b"x").unwrap();
        std::fs::write(p.join(".products.job.tmp-7-4"), b"x").unwrap();
        std::fs::write(p.join(".pass.json.tmp-7-5"), b"not ours").unwrap();
        std::fs::write(p.join("pass.json"), b"{}").unwrap();
        assert_eq!(clean(p), 5);
        let mut left: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".pass.json.tmp-7-5", "pass.json", "products"]);
        assert!(p.join("products/ch1.tif").is_file());
        assert_eq!(clean(p), 0);
    }

    #[test]
    fn a_closed_pass_without_record_is_adopted_once() {
        let pass = tempfile::tempdir().unwrap();
        let p = pass.path();
        assert!(!adopt(p), "no pass.json: still open or not a pass");
        let record = serde_json::json!({
            "id": "20241206T175646Z_xband", "profile": "meteor-lrpt",
            "aos": "2024-12-06T17:56:46.123Z",
        });
        std::fs::write(p.join("pass.json"), record.to_string()).unwrap();
        assert!(adopt(p));
        let rec = Record::load(p).unwrap().unwrap();
        assert_eq!(rec.pass_id, "20241206T175646Z_xband");
        assert_eq!(rec.aos_unix_ms, 1_733_507_806_123);
        // A given-up pass or a complete set is left alone.
        std::fs::remove_file(p.join(RECORD)).unwrap();
        std::fs::write(p.join(FAILED), b"{}").unwrap();
        assert!(!adopt(p));
        std::fs::remove_file(p.join(FAILED)).unwrap();
        std::fs::create_dir(p.join(PRODUCTS)).unwrap();
        std::fs::write(p.join(PRODUCTS).join(LISTING), b"{}").unwrap();
        assert!(!adopt(p));
        // A profile without an imaging instrument never gets products.
        std::fs::remove_dir_all(p.join(PRODUCTS)).unwrap();
        let jpss = serde_json::json!({"id": "x", "profile": "jpss", "aos": "2024-12-06T17:56:46Z"});
        std::fs::write(p.join("pass.json"), jpss.to_string()).unwrap();
        assert!(!adopt(p));
    }

    fn imaging() -> ImagingConfig {
        ImagingConfig {
            enabled: true,
            tle: Vec::new(),
            landmask: None,
        }
    }

    fn worker<'a>(
        cfg: &'a ImagingConfig,
        archive: &'a Path,
        queue: &'a Queue,
        health: &'a Health,
    ) -> Worker<'a> {
        Worker {
            cfg,
            archive,
            queue,
            health,
            catalog: None,
            pending: Vec::new(),
            uploads: None,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn status(q: &Queue) -> ProductsStatus {
        q.status.lock().unwrap().clone()
    }

    #[test]
    fn failed_attempts_are_retried_with_backoff_then_given_up_visibly() {
        let archive = tempfile::tempdir().unwrap();
        // A closed pass whose archive holds nothing to make products from.
        let dir = archive.path().join("passes/p");
        std::fs::create_dir_all(&dir).unwrap();
        Record::new(&meteor_job(&dir)).save(&dir, RECORD).unwrap();
        let (cfg, queue, health) = (imaging(), Queue::default(), Health::default());
        let mut w = worker(&cfg, archive.path(), &queue, &health);
        for k in 1..MAX_ATTEMPTS {
            let before = Instant::now();
            w.run_recorded(&dir);
            let rec = Record::load(&dir).unwrap().unwrap();
            assert_eq!(rec.attempts, k);
            let err = rec.last_error.unwrap();
            assert!(err.contains("no archived CADUs"), "{err}");
            let (again, due) = w.pending.pop().unwrap();
            assert_eq!(again, dir);
            assert!(due >= before + retry_delay(k));
            let st = status(&queue);
            assert_eq!((st.retried, st.failed, st.ok), (u64::from(k), 0, 0));
            assert!(health.problems().is_empty());
        }
        w.run_recorded(&dir);
        assert!(w.pending.is_empty(), "the last attempt is not retried");
        // Nothing half-made is left; the failure record holds the error.
        assert_eq!(names(&dir), [FAILED]);
        let text = std::fs::read_to_string(dir.join(FAILED)).unwrap();
        let failed: Record = serde_json::from_str(&text).unwrap();
        assert_eq!((failed.attempts, failed.gave_up), (MAX_ATTEMPTS, true));
        let st = status(&queue);
        assert_eq!(st.failed, 1);
        assert!(st.last_error.unwrap().contains("no archived CADUs"));
        assert!(health.problems().contains_key("products"));

        // The operator renames it back: the attempts start over.
        std::fs::rename(dir.join(FAILED), dir.join(RECORD)).unwrap();
        w.run_recorded(&dir);
        let rec = Record::load(&dir).unwrap().unwrap();
        assert_eq!((rec.attempts, rec.gave_up), (1, false));
    }

    #[test]
    fn a_job_interrupted_every_time_is_given_up_not_crash_looped() {
        let archive = tempfile::tempdir().unwrap();
        let dir = archive.path().join("passes/p");
        std::fs::create_dir_all(&dir).unwrap();
        // The count is written before each attempt: five attempts started, none finished.
        let mut rec = Record::new(&meteor_job(&dir));
        rec.attempts = MAX_ATTEMPTS;
        rec.save(&dir, RECORD).unwrap();
        let (cfg, queue, health) = (imaging(), Queue::default(), Health::default());
        let mut w = worker(&cfg, archive.path(), &queue, &health);
        w.scan(true);
        assert_eq!(status(&queue).recovered, 1);
        let (d, _) = w.pending.pop().unwrap();
        w.run_recorded(&d);
        assert_eq!(names(&dir), [FAILED]);
        let st = status(&queue);
        assert_eq!(st.failed, 1);
        assert!(
            st.last_error
                .as_deref()
                .unwrap()
                .contains("5 attempts started, the last one interrupted"),
            "{:?}",
            st.last_error
        );
    }

    #[test]
    fn a_full_queue_defers_to_the_record_and_no_job_runs_twice() {
        let archive = tempfile::tempdir().unwrap();
        let (cfg, queue, health) = (imaging(), Queue::default(), Health::default());
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        queue.set_sender(tx);
        let dirs: Vec<PathBuf> = (0..=QUEUE)
            .map(|i| archive.path().join(format!("passes/p{i}")))
            .collect();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
            queue.submit(meteor_job(d));
        }
        let st = status(&queue);
        assert_eq!((st.queued, st.deferred, st.dropped), (QUEUE as u64, 1, 0));
        assert!(queue.rescan.load(Ordering::Relaxed));
        assert!(dirs.iter().all(|d| d.join(RECORD).is_file()));

        // Idle, the worker finds every record, the deferred one included.
        let mut w = worker(&cfg, archive.path(), &queue, &health);
        w.scan(false);
        assert_eq!(w.pending.len(), QUEUE + 1);
        assert_eq!(status(&queue).recovered, QUEUE as u64 + 1);
        w.scan(false);
        assert_eq!(
            w.pending.len(),
            QUEUE + 1,
            "a pending pass is not taken twice"
        );
        // The queued copy of a pending pass does not run.
        w.run_queued(rx.try_recv().unwrap());
        assert_eq!(Record::load(&dirs[0]).unwrap().unwrap().attempts, 0);
        // A queued copy whose record is gone was finished by another copy.
        w.pending.clear();
        std::fs::remove_file(dirs[1].join(RECORD)).unwrap();
        w.run_queued(rx.try_recv().unwrap());
        assert_eq!(names(&dirs[1]), Vec::<String>::new());
        let st = status(&queue);
        assert_eq!(
            (st.queued, st.ok, st.failed, st.retried),
            (QUEUE as u64 - 2, 0, 0, 0)
        );
    }

    #[test]
    fn a_pass_without_image_data_is_not_retried() {
        let no_image = Failure {
            error: raster::Error::NoImage {
                instrument: "msu-mr".into(),
                packets: 0,
            }
            .into(),
            catalog: false,
        };
        assert!(no_image.is_final());
        let io = Failure {
            error: Error::ProductJob("disk full".into()),
            catalog: false,
        };
        assert!(!io.is_final());
    }
}
