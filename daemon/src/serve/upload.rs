//! Uploads of closed passes to the object store (`archive.store`): `archive.path` is the local
//! spool, the store keeps the bytes for good.
//!
//! # Nothing is lost, whatever happens
//!
//! - **When.** A pass is uploaded once it is closed (`pass.json` written) and its products are
//!   settled (no `products.job`: made and catalogued, given up, or not an imaging pass). The
//!   decoder thread notifies the uploader after LOS, the product worker after each job; the
//!   uploader also looks through `passes/` at start (and every [`RESCAN`]), so a notification
//!   lost to a crash or a full queue only delays an upload.
//! - **What.** Every regular file of the pass directory and its `products/` set, whatever the
//!   pass archive's layout (raw CADUs, indexes, frames, the record, the plot, COGs), under
//!   `PREFIX/passes/ID/…`, the archive's own layout. Hidden files, staging directories
//!   (`*.tmp-*`, `*.old-*`), `products.job` and the manifest itself are left out.
//! - **How.** A file of more than [`PART`] bytes is a multipart upload of [`PART`]-byte parts
//!   (at most [`PARTS_IN_FLIGHT`] in flight, so memory is bounded), a smaller one a single
//!   put. Each object is then verified: its size by a HEAD request, and on S3 its ETag, which
//!   for a put is the MD5 of the bytes and for a multipart upload the MD5 of the parts' MD5s
//!   (the store computed it from what it received). The SHA-256 of every object goes into the
//!   manifest.
//! - **Marked durably.** After each verified object the manifest `PASS/uploaded.json` (path,
//!   key, size, modification time, SHA-256, ETag of every object) is rewritten with
//!   [`archive::write_atomic`]; once every file is in it, it says `"complete": true` and is put
//!   in the store too (`PREFIX/passes/ID/uploaded.json`). A file whose size or modification
//!   time changed since is uploaded again. A kill at any point loses at most the object in
//!   flight, which is uploaded again from the start after the restart. Local files are never
//!   deleted. Conditional writes are never relied on (Garage ignores `If-None-Match`): a put
//!   repeated after a crash just writes the same bytes again.
//! - **Failures** are counted by reason ([`FAILURE_REASONS`]) and retried: the queue waits
//!   1 s after a failure, doubling up to [`BACKOFF_MAX`], then starts again with the pass that
//!   failed. The `store` health component is degraded from the first failure until a pass is
//!   uploaded again.
//! - **Idle.** While no pass waits, the store is probed every [`PROBE`] (a HEAD request): the
//!   `store` health component follows the store even between passes.
//! - **Full queue.** [`QUEUE`] passes wait to be looked at; a notification that finds the queue
//!   full sets a flag, and the worker looks through `passes/` when it is idle.
//!
//! At shutdown the object in flight is abandoned (its multipart upload aborted); the pass is
//! taken up again at the next start.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use md5::Digest as _;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};

use super::events::{emit, PassUploaded, StoreRecovered, UploadFailed, UploadsTakenUp};
use super::Shared;
use crate::config::{ArchiveConfig, ArchiveStore};

/// Passes waiting to be looked at in memory at most; more set the rescan flag.
pub const QUEUE: usize = 64;
/// Part size of multipart uploads (S3 needs at least 5 MiB per part but the last).
pub const PART: usize = 8 * 1024 * 1024;
/// Parts uploading at once, per file.
pub const PARTS_IN_FLIGHT: usize = 2;
/// The upload manifest in a pass directory (and beside the pass's objects in the store).
pub const MANIFEST: &str = "uploaded.json";
/// Longest wait between two attempts while the store fails.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// While nothing waits for upload, the store is probed this often (a HEAD request), so the
/// `store` health component follows it even when no pass is due.
pub const PROBE: Duration = Duration::from_secs(10);
/// The worker looks through `passes/` this often for passes it was not told about.
pub const RESCAN: Duration = Duration::from_secs(300);
/// Why an upload failed (metric label values).
pub const FAILURE_REASONS: [&str; 6] = [
    "unreachable",
    "denied",
    "verify",
    "store",
    "local_io",
    "catalog",
];
/// The STAC alternate assets extension: an S3 store's product assets get an `s3` alternate.
pub const ALTERNATE_EXT: &str =
    "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json";

/// What operators see in `/api/v1/status` (`store`) and `/metrics`.
#[derive(Clone, Debug, Serialize)]
pub struct UploadStatus {
    /// The store (`s3://bucket/prefix`, `file:///dir`); `None`: the local archive is the store.
    pub store: Option<String>,
    /// `off` (no store), `ok`, or `failing` (the last attempt failed; retried).
    pub state: &'static str,
    /// Passes known to need an upload (closed, not yet marked uploaded).
    pub queued_passes: u64,
    /// Bytes of those passes not yet in the store.
    pub queued_bytes: u64,
    /// Passes marked uploaded since start.
    pub uploaded_passes: u64,
    /// Objects uploaded and verified since start.
    pub uploaded_objects: u64,
    /// Bytes of those objects.
    pub uploaded_bytes: u64,
    /// Failed attempts, by reason ([`FAILURE_REASONS`]); each is retried.
    pub failures: BTreeMap<&'static str, u64>,
    /// Passes found at start (or by a rescan) not yet uploaded.
    pub taken_up: u64,
    /// The last failure.
    pub last_error: Option<String>,
    /// The last pass uploaded.
    pub last: Option<serde_json::Value>,
}

impl UploadStatus {
    fn new(store: Option<String>) -> UploadStatus {
        UploadStatus {
            state: if store.is_some() { "ok" } else { "off" },
            store,
            queued_passes: 0,
            queued_bytes: 0,
            uploaded_passes: 0,
            uploaded_objects: 0,
            uploaded_bytes: 0,
            failures: FAILURE_REASONS.iter().map(|r| (*r, 0)).collect(),
            taken_up: 0,
            last_error: None,
            last: None,
        }
    }
}

/// The sending side, held in [`Shared`].
pub struct Uploads {
    tx: Mutex<Option<SyncSender<PathBuf>>>,
    /// Set when a notification found the queue full.
    rescan: AtomicBool,
    /// Counters.
    pub status: Mutex<UploadStatus>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Uploads {
    /// Counters for `cfg`'s store (no worker yet: [`start`] starts it).
    pub fn new(cfg: &ArchiveConfig) -> Uploads {
        let store = match cfg.store {
            ArchiveStore::Local => None,
            _ => Some(cfg.store.url(&cfg.path)),
        };
        Uploads {
            tx: Mutex::new(None),
            rescan: AtomicBool::new(false),
            status: Mutex::new(UploadStatus::new(store)),
        }
    }

    /// The pass in `dir` may be ready for upload: the worker looks at it. Never blocks: a full
    /// queue makes the worker look through `passes/` instead.
    pub fn notify(&self, dir: &Path) {
        let tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = tx.as_ref() else {
            return;
        };
        if let Err(TrySendError::Full(_)) = tx.try_send(dir.to_owned()) {
            self.rescan.store(true, Ordering::Relaxed);
        }
    }

    /// Stops taking notifications; the worker ends at its next check.
    pub fn close(&self) {
        self.tx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn update<R>(&self, f: impl FnOnce(&mut UploadStatus) -> R) -> R {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A store client for `cfg` (`None` for the local archive). Errors name the problem, never a
/// secret.
pub fn open_store(cfg: &ArchiveConfig) -> Result<Option<Arc<dyn ObjectStore>>, String> {
    match &cfg.store {
        ArchiveStore::Local => Ok(None),
        ArchiveStore::Directory(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| e.to_string())?;
            Ok(Some(Arc::new(fs)))
        }
        ArchiveStore::S3(s3) => {
            let creds = s3.credentials()?;
            // Client options first: `with_allow_http` sets one of them.
            let mut b = object_store::aws::AmazonS3Builder::new()
                .with_client_options(
                    object_store::ClientOptions::new()
                        .with_connect_timeout(Duration::from_secs(5))
                        .with_timeout(Duration::from_secs(120)),
                )
                .with_bucket_name(&s3.bucket)
                .with_region(&s3.region)
                .with_access_key_id(creds.key_id)
                .with_secret_access_key(creds.secret)
                .with_allow_http(s3.allow_http)
                .with_virtual_hosted_style_request(false)
                // A few quick retries per request; the uploader's own backoff does the rest,
                // so an unreachable store is noticed (and counted) within seconds.
                .with_retry(object_store::RetryConfig {
                    backoff: object_store::BackoffConfig::default(),
                    max_retries: 2,
                    retry_timeout: Duration::from_secs(15),
                });
            if let Some(t) = creds.token {
                b = b.with_token(t);
            }
            if let Some(e) = &s3.endpoint {
                b = b.with_endpoint(e);
            }
            let s3 = b.build().map_err(|e| e.to_string())?;
            Ok(Some(Arc::new(s3)))
        }
    }
}

/// `downlink validate`'s check of `archive.store`: a probe object is put, read back and
/// deleted (so the store is reachable, the bucket exists and the credentials may write).
/// `Ok` describes the store; `Err` says what failed, never a secret.
pub fn check(cfg: &ArchiveConfig) -> Result<String, String> {
    let url = cfg.store.url(&cfg.path);
    let Some(store) = open_store(cfg)? else {
        return Ok(format!("{url} (the local archive)"));
    };
    let prefix = key_prefix(cfg);
    let name = format!(
        ".downlink-probe-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let key = if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let path = StorePath::from(key.as_str());
    rt.block_on(async {
        let fail = |what: &str, e: object_store::Error| {
            let f = Failure::store(&key, &e);
            format!("{what} a probe object failed ({}): {}", f.reason, f.error)
        };
        store
            .put(&path, PutPayload::from_static(b"downlink probe"))
            .await
            .map_err(|e| fail("writing", e))?;
        let read = store.get(&path).await.map_err(|e| fail("reading", e))?;
        let bytes = read.bytes().await.map_err(|e| fail("reading", e))?;
        store.delete(&path).await.map_err(|e| fail("deleting", e))?;
        if bytes.as_ref() != b"downlink probe" {
            return Err(format!(
                "{key}: the probe object read back is not what was written"
            ));
        }
        Ok(format!("{url} (probe object written, read and deleted)"))
    })
}

/// The key prefix of the store (`s3://bucket/PREFIX`), as a store path.
fn key_prefix(cfg: &ArchiveConfig) -> String {
    match &cfg.store {
        ArchiveStore::S3(s3) => s3.prefix.clone(),
        _ => String::new(),
    }
}

/// Starts the upload worker when `archive.store` is not the local archive. A store that
/// cannot even be configured (no credentials) is logged and degrades `store` health.
pub fn start(cfg: &ArchiveConfig, shared: &Arc<Shared>) -> Option<std::thread::JoinHandle<()>> {
    let store = match open_store(cfg) {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            let msg = format!("store {}: {e}", cfg.store.url(&cfg.path));
            tracing::error!(error = %msg, "object store unavailable: passes stay in the local archive only");
            shared.health.set("store", msg);
            return None;
        }
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    *shared
        .uploads
        .tx
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(tx);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("upload-io")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the upload worker");
            return None;
        }
    };
    let mut w = Worker {
        store,
        rt,
        verify_etag: matches!(cfg.store, ArchiveStore::S3(_)),
        s3_base: match &cfg.store {
            ArchiveStore::S3(s3) if s3.prefix.is_empty() => Some(format!("s3://{}", s3.bucket)),
            ArchiveStore::S3(s3) => Some(format!("s3://{}/{}", s3.bucket, s3.prefix)),
            _ => None,
        },
        url: cfg.store.url(&cfg.path),
        prefix: key_prefix(cfg),
        passes: cfg.path.join("passes"),
        shared: shared.clone(),
        pending: BTreeMap::new(),
        failures_in_row: 0,
        next_try: Instant::now(),
    };
    std::thread::Builder::new()
        .name("upload".into())
        .spawn(move || w.run(&rx))
        .map_err(|e| tracing::error!(error = %e, "cannot start the upload worker"))
        .ok()
}

/// `passes/ID/uploaded.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// The store the objects are in (another store: the pass is uploaded again).
    store: String,
    /// Pass id.
    pass: String,
    /// Every file of the pass was uploaded and verified.
    complete: bool,
    /// The pass had a `products/` set when it was marked complete.
    #[serde(default)]
    products: bool,
    /// By path relative to the pass directory.
    objects: BTreeMap<String, Object>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Object {
    key: String,
    size: u64,
    /// Modification time of the local file when it was uploaded (ns since the epoch).
    mtime_ns: u128,
    sha256: String,
    /// The store's ETag (S3: MD5-based, checked).
    etag: Option<String>,
}

impl Manifest {
    fn load(dir: &Path) -> Option<Manifest> {
        let bytes = std::fs::read(dir.join(MANIFEST)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// A local file of a pass.
struct LocalFile {
    rel: String,
    path: PathBuf,
    size: u64,
    mtime_ns: u128,
}

/// Whether a pass directory's file or subdirectory name is left out of the upload.
fn skipped(name: &str) -> bool {
    name.starts_with('.')
        || name == MANIFEST
        || name == super::products::RECORD
        || name.contains(".tmp-")
        || name.contains(".old-")
}

/// Every regular file under `dir` that is uploaded, sorted by path.
fn list_files(dir: &Path) -> std::io::Result<Vec<LocalFile>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<LocalFile>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if skipped(&name) {
                continue;
            }
            let t = e.file_type()?;
            if t.is_dir() {
                walk(root, &e.path(), out)?;
            } else if t.is_file() {
                let meta = e.metadata()?;
                let path = e.path();
                let rel = path
                    .strip_prefix(root)
                    .map_err(std::io::Error::other)?
                    .to_string_lossy()
                    .into_owned();
                out.push(LocalFile {
                    rel,
                    path,
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

/// A pass whose files will not change any more: closed, products settled.
fn ready(dir: &Path) -> bool {
    dir.join("pass.json").is_file() && !dir.join(super::products::RECORD).exists()
}

/// True when the pass in `dir` (ready) has files the store may not hold: no complete manifest
/// for `url`, or a product set made after it was marked.
fn needs_upload(dir: &Path, url: &str) -> bool {
    match Manifest::load(dir) {
        Some(m) if m.complete && m.store == url => {
            !m.products && dir.join(super::products::PRODUCTS).is_dir()
        }
        _ => true,
    }
}

/// Bytes of `dir`'s files the manifest does not hold as they are now.
fn bytes_to_upload(dir: &Path, url: &str) -> u64 {
    let m = Manifest::load(dir).filter(|m| m.store == url);
    list_files(dir).map_or(0, |files| {
        files
            .iter()
            .filter(|f| !in_manifest(m.as_ref(), f))
            .map(|f| f.size)
            .sum()
    })
}

fn in_manifest(m: Option<&Manifest>, f: &LocalFile) -> bool {
    m.and_then(|m| m.objects.get(&f.rel))
        .is_some_and(|o| o.size == f.size && o.mtime_ns == f.mtime_ns)
}

/// Why an attempt failed.
#[derive(Debug)]
pub struct Failure {
    /// One of [`FAILURE_REASONS`].
    pub reason: &'static str,
    /// What happened.
    pub error: String,
}

impl Failure {
    fn local(path: &Path, e: &std::io::Error) -> Failure {
        Failure {
            reason: "local_io",
            error: format!("{}: {e}", path.display()),
        }
    }

    pub(super) fn store(key: &str, e: &object_store::Error) -> Failure {
        use object_store::Error as E;
        let text = crate::config::error_chain(e);
        let reason = match e {
            E::PermissionDenied { .. } | E::Unauthenticated { .. } => "denied",
            _ if is_unreachable(&text) => "unreachable",
            _ => "store",
        };
        Failure {
            reason,
            error: format!("{key}: {text}"),
        }
    }
}

/// An error of the connection rather than of the request (the server down, a timeout).
fn is_unreachable(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "error sending request",
        "connection refused",
        "connection reset",
        "timed out",
        "timeout",
        "dns error",
        "connect",
    ]
    .iter()
    .any(|s| t.contains(s))
}

/// The outcome of one attempt at a pass.
enum Outcome {
    /// Every file is in the store; the manifest says so.
    Done { objects: u64, bytes: u64 },
    /// Not closed or its products not settled yet: it will be notified again.
    NotReady,
    /// Shutdown: taken up at the next start.
    Interrupted,
}

struct Worker {
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    /// Check S3 ETags (MD5-based) against what was sent.
    verify_etag: bool,
    /// `s3://bucket[/prefix]`: the catalog item of an uploaded pass gets `s3` alternates.
    s3_base: Option<String>,
    url: String,
    prefix: String,
    passes: PathBuf,
    shared: Arc<Shared>,
    /// Pass directories to upload (oldest first: ids start with the AOS time), with the bytes
    /// they still need to send.
    pending: BTreeMap<PathBuf, u64>,
    failures_in_row: u32,
    next_try: Instant,
}

impl Worker {
    fn run(&mut self, rx: &Receiver<PathBuf>) {
        self.scan(true);
        let mut last_scan = Instant::now();
        let mut last_probe = Instant::now();
        loop {
            if self.shared.stopping() {
                break;
            }
            while let Ok(dir) = rx.try_recv() {
                self.add(dir);
            }
            if self.shared.uploads.rescan.swap(false, Ordering::Relaxed)
                || last_scan.elapsed() >= RESCAN
            {
                self.scan(false);
                last_scan = Instant::now();
            }
            let now = Instant::now();
            if now >= self.next_try {
                if let Some(dir) = self.pending.keys().next().cloned() {
                    self.attempt(&dir);
                    continue;
                }
            }
            if self.pending.is_empty() && last_probe.elapsed() >= PROBE {
                self.probe();
                last_probe = Instant::now();
                continue;
            }
            let wait = if self.pending.is_empty() {
                Duration::from_secs(1)
            } else {
                self.next_try
                    .saturating_duration_since(now)
                    .min(Duration::from_secs(1))
            };
            match rx.recv_timeout(wait) {
                Ok(dir) => self.add(dir),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        if !self.pending.is_empty() {
            tracing::info!(
                passes = self.pending.len(),
                "uploads left for the next start"
            );
        }
    }

    /// Idle: is the store still there? A HEAD of a key that need not exist (404 = reachable).
    fn probe(&mut self) {
        let key = if self.prefix.is_empty() {
            ".downlink-reachable".to_owned()
        } else {
            format!("{}/.downlink-reachable", self.prefix)
        };
        let (store, path) = (self.store.clone(), StorePath::from(key.as_str()));
        match self.rt.block_on(async move { store.head(&path).await }) {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {
                self.failures_in_row = 0;
                self.shared.uploads.update(|st| st.state = "ok");
                if self.shared.health.clear("store") {
                    emit(StoreRecovered { store: &self.url });
                }
            }
            Err(e) => {
                let f = Failure::store(&key, &e);
                let newly = self
                    .shared
                    .health
                    .set("store", format!("{} ({}): {}", self.url, f.reason, f.error));
                self.shared.uploads.update(|status| {
                    status.state = "failing";
                    emit(UploadFailed {
                        status,
                        store: &self.url,
                        pass: "(reachability probe)",
                        reason: f.reason,
                        error: f.error,
                        retry_in: PROBE,
                        newly_degraded: newly,
                    });
                });
            }
        }
    }

    fn set_queued(&self) {
        let (n, bytes) = (
            self.pending.len() as u64,
            self.pending.values().sum::<u64>(),
        );
        self.shared.uploads.update(|st| {
            st.queued_passes = n;
            st.queued_bytes = bytes;
        });
    }

    /// A notified pass: queued if it is ready and the store does not hold it as it is now
    /// (every file is compared with the manifest: a product set made again is uploaded
    /// again). One that is uploaded already has its catalog item's alternates checked, since
    /// cataloguing a set again replaces the item.
    fn add(&mut self, dir: PathBuf) {
        if !ready(&dir) || self.pending.contains_key(&dir) {
            return;
        }
        let bytes = bytes_to_upload(&dir, &self.url);
        if bytes > 0 || needs_upload(&dir, &self.url) {
            self.pending.insert(dir, bytes);
            self.set_queued();
            return;
        }
        let Some(pass) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            return;
        };
        if let Err(f) = self.add_alternates(&pass) {
            // Uploaded, but the item lacks its alternates: the pass goes through again (its
            // objects are skipped, the catalog step is retried).
            let mut m = Manifest::load(&dir).unwrap_or_default();
            m.complete = false;
            if save_manifest(&dir, &m).is_ok() {
                self.pending.insert(dir, 0);
                self.set_queued();
            }
            self.shared.uploads.update(|status| {
                emit(UploadFailed {
                    status,
                    store: &self.url,
                    pass: &pass,
                    reason: f.reason,
                    error: f.error,
                    retry_in: Duration::ZERO,
                    newly_degraded: false,
                });
            });
        }
    }

    /// Queues every closed pass not uploaded yet.
    fn scan(&mut self, at_start: bool) {
        let dirs: Vec<PathBuf> = match std::fs::read_dir(&self.passes) {
            Ok(rd) => rd
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect(),
            Err(e) => {
                tracing::warn!(dir = %self.passes.display(), error = %e, "cannot list passes for uploads");
                return;
            }
        };
        let (mut passes, mut bytes) = (0u64, 0u64);
        for dir in dirs {
            if self.pending.contains_key(&dir) || !ready(&dir) || !needs_upload(&dir, &self.url) {
                continue;
            }
            let b = bytes_to_upload(&dir, &self.url);
            self.pending.insert(dir, b);
            passes += 1;
            bytes += b;
        }
        self.set_queued();
        if passes > 0 || at_start {
            self.shared.uploads.update(|status| {
                emit(UploadsTakenUp {
                    status,
                    store: &self.url,
                    passes,
                    bytes,
                });
            });
        }
    }

    fn attempt(&mut self, dir: &Path) {
        let started = Instant::now();
        let pass = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match self.upload_pass(dir, &pass) {
            Ok(Outcome::Done { objects, bytes }) => {
                self.pending.remove(dir);
                self.set_queued();
                self.failures_in_row = 0;
                self.next_try = Instant::now();
                self.shared.uploads.update(|status| {
                    status.state = "ok";
                    emit(PassUploaded {
                        status,
                        pass: &pass,
                        objects,
                        bytes,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                });
                if self.shared.health.clear("store") {
                    emit(StoreRecovered { store: &self.url });
                }
            }
            Ok(Outcome::NotReady) => {
                self.pending.remove(dir);
                self.set_queued();
            }
            Ok(Outcome::Interrupted) => {}
            Err(f) => {
                self.failures_in_row += 1;
                let exp = self.failures_in_row.saturating_sub(1).min(5);
                let delay = Duration::from_secs(1u64 << exp).min(BACKOFF_MAX);
                self.next_try = Instant::now() + delay;
                let newly = self
                    .shared
                    .health
                    .set("store", format!("{} ({}): {}", self.url, f.reason, f.error));
                // The bytes still to send, now that some objects may have gone.
                if let Some(b) = self.pending.get_mut(dir) {
                    *b = bytes_to_upload(dir, &self.url);
                }
                self.set_queued();
                self.shared.uploads.update(|status| {
                    status.state = "failing";
                    emit(UploadFailed {
                        status,
                        store: &self.url,
                        pass: &pass,
                        reason: f.reason,
                        error: f.error,
                        retry_in: delay,
                        newly_degraded: newly,
                    });
                });
            }
        }
    }

    fn key(&self, pass: &str, rel: &str) -> String {
        if self.prefix.is_empty() {
            format!("passes/{pass}/{rel}")
        } else {
            format!("{}/passes/{pass}/{rel}", self.prefix)
        }
    }

    fn upload_pass(&mut self, dir: &Path, pass: &str) -> Result<Outcome, Failure> {
        if !ready(dir) {
            return Ok(Outcome::NotReady);
        }
        let files = list_files(dir).map_err(|e| Failure::local(dir, &e))?;
        let mut manifest = Manifest::load(dir)
            .filter(|m| m.store == self.url)
            .unwrap_or_else(|| Manifest {
                store: self.url.clone(),
                pass: pass.to_owned(),
                ..Manifest::default()
            });
        let (mut objects, mut bytes) = (0u64, 0u64);
        for f in &files {
            if in_manifest(Some(&manifest), f) {
                continue;
            }
            if self.shared.stopping() {
                return Ok(Outcome::Interrupted);
            }
            let key = self.key(pass, &f.rel);
            let Some(obj) = self.upload_file(&key, f)? else {
                return Ok(Outcome::Interrupted);
            };
            manifest.complete = false;
            manifest.objects.insert(f.rel.clone(), obj);
            save_manifest(dir, &manifest)?;
            objects += 1;
            bytes += f.size;
            self.shared.uploads.update(|st| {
                st.uploaded_objects += 1;
                st.uploaded_bytes += f.size;
            });
            if let Some(b) = self.pending.get_mut(dir) {
                *b = b.saturating_sub(f.size);
                self.set_queued();
            }
        }
        // The files may have changed while they were uploaded (products made meanwhile): the
        // pass is complete only if it is still ready and nothing is missing.
        if !ready(dir) {
            return Ok(Outcome::NotReady);
        }
        let now = list_files(dir).map_err(|e| Failure::local(dir, &e))?;
        if now.iter().any(|f| !in_manifest(Some(&manifest), f)) {
            return Err(Failure {
                reason: "local_io",
                error: format!("{}: files changed during the upload", dir.display()),
            });
        }
        manifest.complete = true;
        manifest.products = dir.join(super::products::PRODUCTS).is_dir();
        let text = serde_json::to_vec_pretty(&manifest).map_err(|e| Failure {
            reason: "local_io",
            error: e.to_string(),
        })?;
        // The manifest goes to the store first, then marks the pass locally.
        let key = self.key(pass, MANIFEST);
        let store = self.store.clone();
        let path = StorePath::from(key.as_str());
        let payload = PutPayload::from(text.clone());
        self.rt
            .block_on(async move { store.put(&path, payload).await })
            .map_err(|e| Failure::store(&key, &e))?;
        if manifest.products {
            self.add_alternates(pass)?;
        }
        archive::write_atomic(dir.join(MANIFEST), &text).map_err(|e| Failure {
            reason: "local_io",
            error: e.to_string(),
        })?;
        Ok(Outcome::Done { objects, bytes })
    }

    /// The catalog item of the pass's product set gets, on every asset of the pass, an `s3`
    /// alternate (STAC alternate assets extension) naming its object, so GDAL `/vsis3/` users
    /// read the store directly. The upsert replaces the item by id: repeating it is harmless.
    fn add_alternates(&self, pass: &str) -> Result<(), Failure> {
        let (Some(base), Some(cat)) = (&self.s3_base, self.shared.catalog.as_deref()) else {
            return Ok(());
        };
        fn fail<E: std::fmt::Display>(pass: &str) -> impl Fn(E) -> Failure + '_ {
            move |e| Failure {
                reason: "catalog",
                error: format!("{pass}: {e}"),
            }
        }
        let listing = format!("passes/{pass}/{}/products.json", super::products::PRODUCTS);
        let Some(at) = cat.asset(&listing).map_err(fail(pass))? else {
            // Not catalogued (products given up, or no catalog when they were made).
            return Ok(());
        };
        let Some(mut item) = cat.item(&at.collection, &at.item).map_err(fail(pass))? else {
            return Ok(());
        };
        let mine = format!("passes/{pass}/");
        let mut changed = false;
        for asset in item.assets.values_mut() {
            let Some(rel) = archive::catalog::local_href(&asset.href) else {
                continue;
            };
            if !rel.starts_with(&mine) {
                continue;
            }
            let want = serde_json::json!({ "s3": { "href": format!("{base}/{rel}") } });
            if asset.additional_fields.get("alternate") != Some(&want) {
                asset.additional_fields.insert("alternate".into(), want);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        if !item.extensions.iter().any(|e| e == ALTERNATE_EXT) {
            item.extensions.push(ALTERNATE_EXT.to_owned());
        }
        cat.upsert_item(&item).map_err(fail(pass))
    }

    /// Uploads one file and verifies it; `None` when shutdown interrupted it.
    fn upload_file(&self, key: &str, f: &LocalFile) -> Result<Option<Object>, Failure> {
        let path = StorePath::from(key);
        let store = self.store.clone();
        let mut file = std::fs::File::open(&f.path).map_err(|e| Failure::local(&f.path, &e))?;
        let mut sha = sha2::Sha256::new();
        let stop = || self.shared.stopping();
        let (result, expected_etag) = if f.size <= PART as u64 {
            let mut buf = Vec::with_capacity(f.size as usize);
            file.read_to_end(&mut buf)
                .map_err(|e| Failure::local(&f.path, &e))?;
            sha2::Digest::update(&mut sha, &buf);
            let md5 = hex(&md5::Md5::digest(&buf));
            let (s, p) = (store.clone(), path.clone());
            let payload = PutPayload::from(buf);
            let res = self
                .rt
                .block_on(async move { s.put(&p, payload).await })
                .map_err(|e| Failure::store(key, &e))?;
            (res, md5)
        } else {
            let upload = {
                let (s, p) = (store.clone(), path.clone());
                self.rt
                    .block_on(async move { s.put_multipart(&p).await })
                    .map_err(|e| Failure::store(key, &e))?
            };
            let _guard = self.rt.enter();
            let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut part_md5s = Vec::new();
            let failed = |w: WriteMultipart, fail: Failure| {
                // Best effort: the store forgets the parts (a crash leaves them to its
                // lifecycle rules).
                let _ = self.rt.block_on(w.abort());
                Err(fail)
            };
            loop {
                let mut buf = vec![0u8; PART];
                let n = match crate::replay::read_full(&mut file, &mut buf) {
                    Ok(n) => n,
                    Err(e) => return failed(w, Failure::local(&f.path, &e)),
                };
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                sha2::Digest::update(&mut sha, &buf);
                part_md5s.extend_from_slice(&md5::Md5::digest(&buf));
                if let Err(e) = self.rt.block_on(w.wait_for_capacity(PARTS_IN_FLIGHT)) {
                    return failed(w, Failure::store(key, &e));
                }
                if stop() {
                    let _ = self.rt.block_on(w.abort());
                    return Ok(None);
                }
                w.put(bytes::Bytes::from(buf));
                if n < PART {
                    break;
                }
            }
            let parts = part_md5s.len() / 16;
            let etag = format!("{}-{parts}", hex(&md5::Md5::digest(&part_md5s)));
            let res = self
                .rt
                .block_on(w.finish())
                .map_err(|e| Failure::store(key, &e))?;
            (res, etag)
        };
        let sent = sha2::Digest::finalize(sha);
        // Verify what the store holds: its size, and (S3) the ETag it computed from the bytes.
        let etag = result.e_tag.map(|t| t.trim_matches('"').to_owned());
        if self.verify_etag && etag.as_deref() != Some(expected_etag.as_str()) {
            return Err(Failure {
                reason: "verify",
                error: format!(
                    "{key}: the store's ETag {etag:?} is not the {expected_etag} of the bytes sent"
                ),
            });
        }
        let meta = self
            .rt
            .block_on(async move { store.head(&path).await })
            .map_err(|e| Failure::store(key, &e))?;
        if meta.size != f.size {
            return Err(Failure {
                reason: "verify",
                error: format!(
                    "{key}: the store holds {} bytes, the local file {}",
                    meta.size, f.size
                ),
            });
        }
        Ok(Some(Object {
            key: key.to_owned(),
            size: f.size,
            mtime_ns: f.mtime_ns,
            sha256: hex(&sent),
            etag,
        }))
    }
}

fn save_manifest(dir: &Path, m: &Manifest) -> Result<(), Failure> {
    let text = serde_json::to_vec_pretty(m).map_err(|e| Failure {
        reason: "local_io",
        error: e.to_string(),
    })?;
    archive::write_atomic(dir.join(MANIFEST), &text)
        .map(drop)
        .map_err(|e| Failure {
            reason: "local_io",
            error: e.to_string(),
        })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn skipped_names() {
        for n in [
            ".hidden",
            MANIFEST,
            "products.job",
            "products.tmp-12-1",
            "products.old-3",
        ] {
            assert!(skipped(n), "{n}");
        }
        for n in [
            "cadus.raw",
            "pass.json",
            "products",
            "products.failed",
            "plot.png",
        ] {
            assert!(!skipped(n), "{n}");
        }
    }

    #[test]
    fn lists_every_file_but_staging_and_marks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        std::fs::write(p.join("pass.json"), b"{}").unwrap();
        std::fs::write(p.join("cadus.raw"), vec![7u8; 1000]).unwrap();
        std::fs::write(p.join(MANIFEST), b"{}").unwrap();
        std::fs::write(p.join("products.job"), b"{}").unwrap();
        std::fs::create_dir_all(p.join("products")).unwrap();
        std::fs::write(p.join("products/a.tif"), b"tif").unwrap();
        std::fs::create_dir_all(p.join("products.tmp-1-2")).unwrap();
        std::fs::write(p.join("products.tmp-1-2/b.tif"), b"x").unwrap();
        let files: Vec<String> = list_files(p).unwrap().into_iter().map(|f| f.rel).collect();
        assert_eq!(files, ["cadus.raw", "pass.json", "products/a.tif"]);
        assert!(!ready(p), "products.job pending");
        std::fs::remove_file(p.join("products.job")).unwrap();
        assert!(ready(p));
        assert!(needs_upload(p, "s3://b"));
        assert_eq!(bytes_to_upload(p, "s3://b"), 1000 + 2 + 3);
    }

    #[test]
    fn hex_and_read_full() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), vec![1u8; 10]).unwrap();
        let mut f = std::fs::File::open(d.path().join("f")).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(crate::replay::read_full(&mut f, &mut buf).unwrap(), 4);
        let mut big = [0u8; 16];
        assert_eq!(crate::replay::read_full(&mut f, &mut big).unwrap(), 6);
        assert_eq!(crate::replay::read_full(&mut f, &mut big).unwrap(), 0);
    }

    #[test]
    fn unreachable_errors_are_told_apart() {
        assert!(is_unreachable(
            "Generic S3 error: error sending request for url: connection refused"
        ));
        assert!(!is_unreachable(
            "NoSuchBucket: The specified bucket does not exist"
        ));
    }
}
