//! `downlink serve`: the real-time daemon.
//!
//! Shape (Vector-like shell around the sans-IO decoder):
//! - one **ingest thread** per input receives datagrams (blocking `recv_from` with a short timeout,
//!   off the async runtime), checks the source allow-list and the size (a buffer of
//!   `max_datagram + 1` bytes detects truncation), and hands each datagram to a **bounded queue**
//!   with `try_send`: when the queue is full the datagram is dropped and counted (`queue_full`) —
//!   the receive loop never blocks, so the kernel buffer keeps draining;
//! - one **decoder thread** per input owns the [`decoder::Decoder`] and the pass archive: AOS at
//!   the first lock, LOS after `pass.los_timeout` without a good frame; every pass gets its own
//!   decoder, so a pass record's counters equal `downlink decode --json` on the same bytes;
//! - the HTTP side (axum on tokio) only reads snapshots.
//!
//! Every dropped datagram is counted with its reason: `not_allowed`, `truncated`, `empty`,
//! `queue_full`, and `kernel_overflow` (the socket's drop counter in `/proc/net/udp`).
//!
//! Every notable occurrence (a drop, AOS/LOS, an archive failure, a product job's outcome, a
//! webhook delivery, a refused HTTP connection, a reload …) is a typed event of [`events`]
//! whose `emit()` both logs it and bumps its counter: call sites never log or count by hand.

pub mod access;
pub mod alerts;
pub mod events;
pub mod http;
pub mod http_server;
pub mod ingest;
pub mod merge;
pub mod pass_data;
pub mod pipeline;
pub mod plot;
pub mod products;
pub mod stac;
pub mod store_read;
pub mod tile_cache;
pub mod tiles;
pub mod upload;
pub mod web;
pub mod webhook;
pub mod wms;

/// FNV-1a: a stable content hash for ETags (not a security boundary).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Tiles waiting for the two render threads; past that a request gets 503 + Retry-After.
pub const TILE_QUEUE_MAX: usize = 64;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::Error;

use serde::Serialize;

use crate::config::{Config, Listen};

/// Drop reasons, in one place (they are metric label values).
pub use archive::record::{DropReason, SyncState};
use archive::{pass_index, record};

/// Components that can be degraded ([`Health`]; metric label values).
pub const HEALTH_COMPONENTS: [&str; 5] = ["archive", "catalog", "products", "http", "store"];

/// What an operator sees about one input.
#[derive(Clone, Debug, Default, Serialize)]
pub struct InputStatus {
    /// Input name.
    pub name: String,
    /// Listen address as configured.
    pub listen: String,
    /// Address actually bound.
    pub local_addr: Option<String>,
    /// Spacecraft profile.
    pub profile: String,
    /// `searching` or `locked`.
    pub sync_state: SyncState,
    /// Id of the pass in progress.
    pub pass: Option<String>,
    /// Datagrams received (all, including dropped ones).
    pub datagrams: u64,
    /// Bytes received (all).
    pub bytes: u64,
    /// Datagrams dropped, by reason.
    pub drops: BTreeMap<DropReason, u64>,
    /// Unix time (ms) of the last good frame.
    pub last_frame_unix_ms: Option<u64>,
    /// Passes closed since start.
    pub passes: u64,
    /// Bytes decoded outside any pass: noise or a stream that never locked (dropped with
    /// their decoder, so every byte received is in a pass record, a drop or here).
    pub bytes_without_pass: u64,
    /// tcp-connect inputs: connection attempts that failed or ended.
    pub reconnects: u64,
    /// Counters of the pass in progress (same keys as `decode --json`).
    pub current: Option<decoder::Stats>,
    /// Counters of passes still being finished by decoders a reload retired, by pass id (in
    /// the metrics with `current`, so no counter dips or counts twice during a reload).
    pub retiring: BTreeMap<String, decoder::Stats>,
    /// Totals over closed passes since start.
    pub totals: Totals,
}

/// Cumulative counters over closed passes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Totals {
    /// Good frames.
    pub frames_good: u64,
    /// Rejected frames.
    pub frames_rejected: u64,
    /// RS codewords corrected.
    pub rs_corrected: u64,
    /// RS codewords uncorrectable.
    pub rs_uncorrectable: u64,
    /// Packets delivered.
    pub packets: u64,
    /// Good frames the archive does not hold (write failures).
    pub frames_unarchived: u64,
    /// Soft input: channel bits compared with the re-encoded Viterbi output.
    pub channel_bits: u64,
    /// Soft input: of those, the ones in error (estimated channel BER = errors / bits).
    pub channel_bit_errors: u64,
    /// Soft input: phase lock lost and found again mid-pass (phase jump, symbol slip).
    pub phase_reacquisitions: u64,
}

/// What keeps the daemon from doing its whole job, by component (`archive`, `catalog`, …: a
/// bounded set of names). Empty = healthy. Shown in `/api/v1/status`, `/api/v1/health` (503
/// while degraded) and `/metrics` (`downlink_degraded{component}`).
#[derive(Debug, Default)]
pub struct Health {
    problems: Mutex<BTreeMap<&'static str, String>>,
}

impl Health {
    /// Marks `component` degraded for `reason`; true if it was not degraded before (log then).
    pub fn set(&self, component: &'static str, reason: impl Into<String>) -> bool {
        self.problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(component, reason.into())
            .is_none()
    }

    /// Clears `component`; true if it was degraded (log then).
    pub fn clear(&self, component: &'static str) -> bool {
        self.problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(component)
            .is_some()
    }

    /// The current problems, by component.
    pub fn problems(&self) -> BTreeMap<&'static str, String> {
        self.problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True while any component is degraded.
    pub fn degraded(&self) -> bool {
        !self
            .problems
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}

/// One input's live state: what operators see, and its two workers' heartbeats. It lives as
/// long as an input of that name is configured, so its counters survive reloads (Prometheus
/// counters never go down while the process runs).
#[derive(Debug)]
pub struct InputState {
    status: Mutex<InputStatus>,
    /// Monotonic milliseconds (since `epoch`) of the last loop of the ingest (0) and decoder (1)
    /// thread.
    heartbeats: [AtomicU64; 2],
    epoch: std::time::Instant,
}

impl InputState {
    fn new(cfg: &crate::config::InputConfig, epoch: std::time::Instant) -> InputState {
        let now = epoch.elapsed().as_millis() as u64;
        InputState {
            status: Mutex::new(InputStatus {
                name: cfg.name.clone(),
                listen: cfg.listen.to_string(),
                profile: cfg.profile.name.clone(),
                sync_state: SyncState::Searching,
                drops: DropReason::ALL.iter().map(|r| (*r, 0)).collect(),
                ..InputStatus::default()
            }),
            heartbeats: [AtomicU64::new(now), AtomicU64::new(now)],
            epoch,
        }
    }

    /// Runs `f` on the status (a poisoned lock still yields the data).
    pub fn with<R>(&self, f: impl FnOnce(&mut InputStatus) -> R) -> R {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records that worker `w` (0 ingest, 1 decoder) is alive.
    pub fn beat(&self, w: usize) {
        if let Some(h) = self.heartbeats.get(w) {
            h.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    fn alive(&self, max_ms: u64) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.heartbeats
            .iter()
            .all(|h| now.saturating_sub(h.load(Ordering::Relaxed)) <= max_ms)
    }
}

/// What a worker thread of one input holds: the process-wide state, its input's state, and its
/// own stop flag (a reload stops only the workers of inputs that changed).
#[derive(Clone, Debug)]
pub struct Worker {
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// This input's counters and heartbeats.
    pub input: Arc<InputState>,
    /// 0 run, [`HANDOVER`] or [`CLOSE`].
    stop: Arc<std::sync::atomic::AtomicU8>,
}

/// Stop receiving at once: the socket goes to the input's next worker, which reads on.
const HANDOVER: u8 = 1;
/// Stop receiving after taking what the socket holds: it is about to close.
const CLOSE: u8 = 2;

impl Worker {
    /// True once this worker was asked to stop (shutdown, or its input changed).
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) != 0
    }

    /// True when the socket will close after this worker: take what it holds first.
    pub fn must_drain(&self) -> bool {
        self.stop.load(Ordering::Relaxed) == CLOSE
    }
}

/// Configuration reloads (SIGHUP) since start.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Reloads {
    /// Configuration generation in force: 1 at start, +1 per applied reload.
    pub generation: u64,
    /// Reloads applied.
    pub ok: u64,
    /// Reloads refused (invalid file, or it could not be applied); the running config stays.
    pub failed: u64,
    /// Outcome of the last one.
    pub last: Option<serde_json::Value>,
}

/// Archive I/O failures, by operation (metric label values).
pub const ARCHIVE_OPS: [&str; 4] = ["create", "write", "sync", "record"];

/// Outcomes of crash recovery at start (metric label values): the record rebuilt, not rebuilt,
/// or the pass left as it is (its input is no longer configured).
pub const RECOVERY_RESULTS: [&str; 3] = ["recovered", "failed", "left"];

/// Settings the decoder threads read at every loop, so a reload that changes them applies
/// without closing the pass in progress: `pass.*` at once, `archive.*` (fsync batching, raw
/// CADUs) from the next pass on.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineSettings {
    /// `[pass]`.
    pub pass: crate::config::PassConfig,
    /// `[archive]`.
    pub archive: crate::config::ArchiveConfig,
    /// `[station]`: tagged on every pass record.
    pub station: crate::config::StationConfig,
}

/// State shared between the threads and the HTTP side for the whole life of the process
/// (reloads keep it).
#[derive(Debug)]
pub struct Shared {
    /// Per input, in config order.
    inputs: std::sync::RwLock<Vec<Arc<InputState>>>,
    /// Archive root (fixed for the life of the process: changing it needs a restart).
    pub archive: PathBuf,
    /// Set on SIGTERM/SIGINT.
    pub stop: AtomicBool,
    /// Process start.
    pub started: std::time::Instant,
    /// Configuration reloads.
    pub reloads: Mutex<Reloads>,
    /// `[pass]` and `[archive]` as the decoder threads see them.
    settings: std::sync::RwLock<Arc<PipelineSettings>>,
    /// AOS / LOS / pass-record notifications.
    pub webhooks: webhook::Webhooks,
    /// Scene products at LOS (imaging inputs).
    pub products: products::Queue,
    /// The STAC catalog (`ARCHIVE/catalog.sqlite`); `None` if it could not be opened (logged).
    pub catalog: Option<Arc<dyn archive::catalog::Catalog>>,
    /// Map tile renderers (one GDAL handle per thread).
    pub tiles: Option<Arc<raster::tiles::render::TilePool>>,
    /// Recently served tiles (`http.tile_cache` bytes at most).
    pub tile_cache: tile_cache::TileCache,
    /// Items read for tile requests, used again for a few seconds.
    pub tile_items: tiles::ItemCache,
    /// Tile requests refused because the render queue was full.
    pub tiles_busy: AtomicU64,
    /// WMS service exceptions answered, by code ([`wms::WMS_EXCEPTION_CODES`]).
    pub wms_exceptions: Mutex<BTreeMap<&'static str, u64>>,
    /// Degraded components (empty = healthy).
    pub health: Health,
    /// HTTP connection and request counters.
    pub http: Arc<http_server::HttpStats>,
    /// Archive I/O failures by operation ([`ARCHIVE_OPS`]).
    pub archive_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Passes interrupted by a crash, found at start, by outcome ([`RECOVERY_RESULTS`]).
    pub recovered_passes: Mutex<BTreeMap<&'static str, u64>>,
    /// Inputs whose archive writes are failing now (the `archive` health component).
    archive_failing: Mutex<std::collections::BTreeSet<String>>,
    /// Closed passes whose record is not on disk yet (retried until it is), by id: what
    /// `/api/v1/passes` lists with `"archive": "incomplete"`.
    pub pending_records: Mutex<BTreeMap<String, record::PassSummary>>,
    /// The summaries `/api/v1/passes` pages through.
    pub pass_index: pass_index::PassIndex,
    /// `[[alerts]]`: the change-alert runs the catalog watcher starts.
    pub alerts: alerts::Alerts,
    /// Uploads of closed passes to `archive.store` (idle for the local archive).
    pub uploads: upload::Uploads,
    /// Reads of assets and tile sources from the object store (`archive.store`).
    pub store_reads: store_read::StoreReads,
}

impl Shared {
    /// The inputs' states, in config order.
    pub fn inputs(&self) -> Vec<Arc<InputState>> {
        self.inputs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What the HTTP side shows of every input.
    pub fn input_snapshot(&self) -> Vec<InputStatus> {
        self.inputs()
            .iter()
            .map(|i| i.with(|s| s.clone()))
            .collect()
    }

    /// `[pass]` and `[archive]` in force.
    pub fn settings(&self) -> Arc<PipelineSettings> {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True when every worker looped within `max_ms`.
    pub fn all_alive(&self, max_ms: u64) -> bool {
        self.inputs().iter().all(|i| i.alive(max_ms))
    }

    /// True once shutdown started.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// `input`'s archive writes work again: the archive is healthy once no input fails and
    /// no pass record waits.
    pub fn archive_ok(&self, input: &str) {
        let mut failing = self
            .archive_failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if failing.remove(input)
            && failing.is_empty()
            && self
                .pending_records
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
            && self.health.clear("archive")
        {
            tracing::info!(input, "archive writes work again");
        }
    }
}

/// The two threads of one input.
struct InputWorker {
    cfg: crate::config::InputConfig,
    worker: Worker,
    ingest: std::thread::JoinHandle<Option<ingest::Source>>,
    decode: std::thread::JoinHandle<()>,
}

impl InputWorker {
    fn start(
        cfg: &crate::config::InputConfig,
        source: ingest::Source,
        shared: &Arc<Shared>,
        state: Arc<InputState>,
    ) -> InputWorker {
        let local = source.local_addr();
        state.with(|s| {
            s.local_addr = local;
            s.listen = cfg.listen.to_string();
            s.profile = cfg.profile.name.clone();
        });
        let worker = Worker {
            shared: shared.clone(),
            input: state,
            stop: Arc::new(std::sync::atomic::AtomicU8::new(0)),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.queue_datagrams);
        let (w1, w2) = (worker.clone(), worker.clone());
        let (i1, i2) = (cfg.clone(), cfg.clone());
        let ingest = spawn(&format!("ingest-{}", cfg.name), move || {
            ingest::run(&i1, source, &tx, &w1)
        });
        let decode = spawn(&format!("decode-{}", cfg.name), move || {
            pipeline::run(&i2, &rx, &w2);
        });
        InputWorker {
            cfg: cfg.clone(),
            worker,
            ingest,
            decode,
        }
    }

    /// Stops receiving and returns the socket, for the input's next worker, with the decoder
    /// thread, which takes everything queued, closes its pass and ends by itself.
    fn hand_over(self) -> (Option<ingest::Source>, std::thread::JoinHandle<()>) {
        self.worker.stop.store(HANDOVER, Ordering::Relaxed);
        let source = self.ingest.join().unwrap_or_else(|_| {
            tracing::error!(input = %self.cfg.name, "the ingest thread panicked");
            None
        });
        (source, self.decode)
    }

    /// Takes what the socket holds and closes it; returns the decoder thread, which takes
    /// everything queued, closes its pass and ends by itself.
    fn stop(self) -> std::thread::JoinHandle<()> {
        self.worker.stop.store(CLOSE, Ordering::Relaxed);
        if self.ingest.join().is_err() {
            tracing::error!(input = %self.cfg.name, "the ingest thread panicked");
        }
        self.decode
    }
}

fn join_decoder(t: std::thread::JoinHandle<()>) {
    if t.join().is_err() {
        tracing::error!("a decoder thread panicked");
    }
}

/// The HTTP server of one `[http]` config.
struct HttpServer {
    /// Shared with the server that replaces this one on a reload that keeps the address, so
    /// the port is never unbound (and a port-0 address keeps its port).
    listener: Arc<tokio::net::TcpListener>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl HttpServer {
    fn bind(
        cfg: &crate::config::HttpConfig,
        rt: &tokio::runtime::Runtime,
    ) -> Result<tokio::net::TcpListener, Error> {
        rt.block_on(tokio::net::TcpListener::bind(cfg.listen))
            .map_err(|source| Error::Http {
                addr: cfg.listen.to_string(),
                source,
            })
    }

    fn start(
        cfg: &crate::config::HttpConfig,
        listener: Arc<tokio::net::TcpListener>,
        shared: &Arc<Shared>,
        rt: &tokio::runtime::Runtime,
    ) -> HttpServer {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = access::layer(
            http::router(shared.clone()),
            access::Cors::from_config(&cfg.cors_origins),
            shared.http.clone(),
        );
        let (limits, stats, sh) = (
            http_server::Limits::new(cfg),
            shared.http.clone(),
            shared.clone(),
        );
        let accept = listener.clone();
        let task = rt.spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let health = move |p| http_server::report_health(&sh, p);
            http_server::serve(accept, app, limits, stats, health, shutdown).await;
        });
        HttpServer {
            listener,
            task,
            stop,
        }
    }

    fn stop(self, rt: &tokio::runtime::Runtime) {
        let _ = self.stop.send(());
        let _ = rt.block_on(self.task);
    }
}

/// `[http]` without `tile_cache` (applied in place): what needs the server restarted.
struct HttpConfigCmp<'a>(&'a crate::config::HttpConfig);

impl PartialEq for HttpConfigCmp<'_> {
    fn eq(&self, other: &Self) -> bool {
        let strip = |c: &crate::config::HttpConfig| crate::config::HttpConfig {
            tile_cache: 0,
            ..c.clone()
        };
        strip(self.0) == strip(other.0)
    }
}

/// Everything running for the config in force.
struct Daemon {
    cfg: Config,
    shared: Arc<Shared>,
    inputs: Vec<InputWorker>,
    /// Decoder threads of inputs that a reload changed, finishing their queue and pass.
    retiring: Vec<std::thread::JoinHandle<()>>,
    product_worker: Option<std::thread::JoinHandle<()>>,
    upload_worker: Option<std::thread::JoinHandle<()>>,
    /// `None` for a station with `http.enabled = false`.
    http: Option<HttpServer>,
}

/// A fresh socket for `input`.
fn bind_input(input: &crate::config::InputConfig) -> Result<ingest::Source, Error> {
    let bind_err = |addr: &std::net::SocketAddr| {
        let (input, addr) = (input.name.clone(), addr.to_string());
        move |source| Error::Bind {
            input,
            addr,
            source,
        }
    };
    Ok(match &input.listen {
        Listen::Udp(addr) => {
            ingest::Source::Udp(ingest::bind_udp(input, *addr).map_err(bind_err(addr))?, 0)
        }
        Listen::Tcp(addr) => {
            ingest::Source::Tcp(ingest::bind_tcp(*addr).map_err(bind_err(addr))?, None)
        }
        Listen::TcpConnect(target) => ingest::Source::TcpConnect(target.clone(), None),
        Listen::Systemd(name) => {
            ingest::take_systemd(input, name).map_err(|source| Error::Bind {
                input: input.name.clone(),
                addr: format!("systemd://{name}"),
                source,
            })?
        }
    })
}

impl Daemon {
    /// Binds everything first (a bad address fails here, before anything runs), then starts.
    fn start(cfg: &Config, rt: &tokio::runtime::Runtime) -> Result<Daemon, Error> {
        let passes_dir = cfg.archive.path.join("passes");
        std::fs::create_dir_all(&passes_dir).map_err(|source| Error::ArchiveDir {
            path: passes_dir.clone(),
            source,
        })?;
        let started = std::time::Instant::now();
        let states: Vec<Arc<InputState>> = cfg
            .input
            .iter()
            .map(|i| Arc::new(InputState::new(i, started)))
            .collect();
        let shared = Arc::new(Shared {
            inputs: std::sync::RwLock::new(states.clone()),
            archive: cfg.archive.path.clone(),
            stop: AtomicBool::new(false),
            started,
            reloads: Mutex::new(Reloads {
                generation: 1,
                ..Reloads::default()
            }),
            settings: std::sync::RwLock::new(Arc::new(PipelineSettings {
                pass: cfg.pass.clone(),
                archive: cfg.archive.clone(),
                station: cfg.station.clone(),
            })),
            webhooks: webhook::Webhooks::new(&cfg.webhook, rt.handle().clone()),
            products: products::Queue::default(),
            catalog: match crate::catalog_backend::open(&cfg.catalog, &cfg.archive.path) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(error = %crate::config::error_chain(&e), "catalog unavailable: STAC API and product registration are off");
                    None
                }
            },
            tile_cache: tile_cache::TileCache::new(
                usize::try_from(cfg.http.tile_cache).unwrap_or(usize::MAX),
            ),
            tile_items: tiles::ItemCache::default(),
            tiles_busy: AtomicU64::new(0),
            wms_exceptions: Mutex::new(wms::WMS_EXCEPTION_CODES.iter().map(|c| (*c, 0)).collect()),
            tiles: match raster::tiles::render::TilePool::new(2, 16, TILE_QUEUE_MAX) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::error!(error = %e, "tile renderer unavailable");
                    None
                }
            },
            health: Health::default(),
            http: Arc::default(),
            archive_errors: Mutex::new(ARCHIVE_OPS.iter().map(|o| (*o, 0)).collect()),
            recovered_passes: Mutex::new(RECOVERY_RESULTS.iter().map(|r| (*r, 0)).collect()),
            archive_failing: Mutex::default(),
            pending_records: Mutex::default(),
            pass_index: pass_index::PassIndex::new(cfg.archive.path.join("passes")),
            alerts: alerts::Alerts::new(&cfg.alerts),
            uploads: upload::Uploads::new(&cfg.archive),
            store_reads: store_read::StoreReads::open(&cfg.archive),
        });
        // Passes cut short by a crash (no pass.json) get their record rebuilt from the raw CADUs,
        // before the product worker looks for passes that need products.
        for outcome in archive::pass::recover_interrupted(cfg) {
            events::emit(events::PassRecovery {
                shared: &shared,
                outcome: &outcome,
            });
        }
        // The pass list's index reads every record once: at start, off the request path (a
        // request meanwhile waits for it).
        let warm = shared.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("pass-index".into())
            .spawn(move || warm.pass_index.refresh())
        {
            tracing::warn!(error = %e, "pass index not built at start: the first /api/v1/passes request builds it");
        }
        let product_worker = products::start(
            &cfg.imaging,
            &cfg.archive.path,
            cfg.input.iter().any(|i| i.profile.imaging.is_some()),
            &shared,
        );
        let upload_worker = upload::start(&cfg.archive, &shared);
        merge::start_watcher(
            &shared,
            cfg.input.iter().map(|i| i.profile.clone()).collect(),
        );
        let sources = cfg
            .input
            .iter()
            .map(bind_input)
            .collect::<Result<Vec<_>, _>>()?;
        // The input addresses actually bound (a listen address may ask for port 0, or come from
        // systemd), for the start-up line: an operator sees what the daemon listens on.
        let listening = cfg
            .input
            .iter()
            .zip(&sources)
            .map(|(i, src)| {
                let addr = match src {
                    ingest::Source::Udp(s, _) => s.local_addr().map(|a| format!("udp://{a}")),
                    ingest::Source::Tcp(l, _) => l.local_addr().map(|a| format!("tcp://{a}")),
                    ingest::Source::TcpConnect(t, _) => Ok(format!("tcp-connect://{t}")),
                };
                format!(
                    "{}={}",
                    i.name,
                    addr.unwrap_or_else(|e| format!("unknown({e})"))
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let listener = if cfg.http.enabled {
            Some(HttpServer::bind(&cfg.http, rt)?)
        } else {
            None
        };
        let inputs = cfg
            .input
            .iter()
            .zip(sources)
            .zip(states)
            .map(|((i, src), st)| InputWorker::start(i, src, &shared, st))
            .collect();
        // The address actually bound (`http.listen` may ask for port 0).
        let http_bound = match &listener {
            Some(l) => l
                .local_addr()
                .map_or_else(|_| cfg.http.listen.to_string(), |a| a.to_string()),
            None => "off (http.enabled = false)".to_owned(),
        };
        let http = listener.map(|l| HttpServer::start(&cfg.http, Arc::new(l), &shared, rt));
        // Once per process: the catalog is watched for its archive directory disappearing.
        rt.spawn(crate::archive_catalog::watch(Arc::downgrade(&shared)));
        rt.spawn(alerts::watch(Arc::downgrade(&shared)));
        rt.spawn(store_read::watch_passes(Arc::downgrade(&shared)));
        tracing::info!(http = %http_bound, inputs = cfg.input.len(), listening = %listening, "downlink serving");
        Ok(Daemon {
            cfg: cfg.clone(),
            shared,
            inputs,
            retiring: Vec::new(),
            product_worker,
            upload_worker,
            http,
        })
    }

    /// Applies `new` in place. Inputs whose config is unchanged keep running untouched (their
    /// socket, queue, decoder and pass in progress). A changed input on the same address keeps
    /// its socket: its threads stop, the decoder takes everything queued and closes its pass,
    /// and new threads read on from the same socket, so nothing the kernel accepted is lost
    /// and the port is never unbound. Everything new is bound before anything is stopped: if a
    /// bind fails, nothing changes.
    fn reload(&mut self, new: &Config, rt: &tokio::runtime::Runtime) -> Result<(), Error> {
        if new.archive.path != self.cfg.archive.path {
            return Err(Error::NeedsRestart(format!(
                "archive.path changed ({} -> {}): restart the daemon to move the archive",
                self.cfg.archive.path.display(),
                new.archive.path.display()
            )));
        }
        if new.archive.store != self.cfg.archive.store {
            return Err(Error::NeedsRestart(
                "archive.store or [archive.s3] changed: restart the daemon to upload to the other store".into(),
            ));
        }
        if new.catalog != self.cfg.catalog {
            return Err(Error::NeedsRestart(
                "[catalog] changed: restart the daemon to open the other catalog".into(),
            ));
        }
        if new.http.enabled != self.cfg.http.enabled {
            return Err(Error::NeedsRestart(
                "http.enabled changed: restart the daemon to open or close its HTTP listener"
                    .into(),
            ));
        }
        // 1. Bind what is new; nothing running is touched yet.
        let keep_listen = |l: &Listen| self.inputs.iter().any(|w| &w.cfg.listen == l);
        let mut fresh: BTreeMap<usize, ingest::Source> = BTreeMap::new();
        for (i, input) in new.input.iter().enumerate() {
            let unchanged = self.inputs.iter().any(|w| &w.cfg == input);
            if !unchanged && !keep_listen(&input.listen) {
                fresh.insert(i, bind_input(input)?);
            }
        }
        let listener = if !new.http.enabled || new.http.listen == self.cfg.http.listen {
            None
        } else {
            Some(HttpServer::bind(&new.http, rt)?)
        };
        // 2. Stop the workers of inputs that changed or went away; keep their sockets.
        let mut old: Vec<InputWorker> = std::mem::take(&mut self.inputs);
        let mut kept: BTreeMap<usize, InputWorker> = BTreeMap::new();
        for (i, input) in new.input.iter().enumerate() {
            if let Some(pos) = old.iter().position(|w| &w.cfg == input) {
                kept.insert(i, old.swap_remove(pos));
            }
        }
        let mut sockets: Vec<(Listen, ingest::Source)> = Vec::new();
        let reused = |l: &Listen| new.input.iter().any(|i| &i.listen == l);
        for w in old {
            if !reused(&w.cfg.listen) {
                // Gone for good: drain and close its socket; its decoder finishes beside.
                self.retiring.push(w.stop());
                continue;
            }
            let listen = w.cfg.listen.clone();
            let name = w.cfg.name.clone();
            let (src, decoder) = w.hand_over();
            self.retiring.push(decoder);
            match src {
                Some(src) => sockets.push((listen, src)),
                None => tracing::warn!(input = %name, "input stopped without its socket"),
            }
        }
        // Decoders retired by earlier reloads that have finished.
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(std::thread::JoinHandle::is_finished);
        self.retiring = running;
        done.into_iter().for_each(join_decoder);
        // 3. Settings the running decoders read, then the new or changed inputs.
        *self
            .shared
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(PipelineSettings {
            pass: new.pass.clone(),
            archive: new.archive.clone(),
            station: new.station.clone(),
        });
        let states_by_name: BTreeMap<String, Arc<InputState>> = self
            .shared
            .inputs()
            .into_iter()
            .map(|s| (s.with(|st| st.name.clone()), s))
            .collect();
        let mut workers = Vec::new();
        let mut states = Vec::new();
        for (i, input) in new.input.iter().enumerate() {
            if let Some(w) = kept.remove(&i) {
                states.push(w.worker.input.clone());
                workers.push(w);
                continue;
            }
            let source = match fresh.remove(&i) {
                Some(s) => Some(s),
                None => sockets
                    .iter()
                    .position(|(l, _)| l == &input.listen)
                    .map(|p| sockets.swap_remove(p).1)
                    .inspect(|src| {
                        if let ingest::Source::Udp(sock, _) = src {
                            // A socket handed over gets this config's receive buffer too.
                            ingest::apply_rcvbuf(input, &socket2::SockRef::from(sock));
                        }
                    }),
            };
            let source = match source {
                Some(s) => s,
                // The old socket went missing (its thread panicked): bind again.
                None => match bind_input(input) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(input = %input.name, error = %e, "input not restarted after reload");
                        continue;
                    }
                },
            };
            let state = states_by_name
                .get(&input.name)
                .cloned()
                .unwrap_or_else(|| Arc::new(InputState::new(input, self.shared.started)));
            states.push(state.clone());
            workers.push(InputWorker::start(input, source, &self.shared, state));
        }
        drop(sockets);
        *self
            .shared
            .inputs
            .write()
            .unwrap_or_else(PoisonError::into_inner) = states;
        self.inputs = workers;
        // 4. Webhooks, products, HTTP.
        if new.webhook != self.cfg.webhook {
            self.shared.webhooks.reconfigure(&new.webhook);
        }
        if new.alerts != self.cfg.alerts {
            self.shared.alerts.reconfigure(&new.alerts);
        }
        if new.imaging != self.cfg.imaging
            || new
                .input
                .iter()
                .map(|i| &i.profile)
                .ne(self.cfg.input.iter().map(|i| &i.profile))
        {
            self.shared.products.close();
            if let Some(t) = self.product_worker.take() {
                if t.join().is_err() {
                    tracing::error!("the product worker panicked");
                }
            }
            self.product_worker = products::start(
                &new.imaging,
                &new.archive.path,
                new.input.iter().any(|i| i.profile.imaging.is_some()),
                &self.shared,
            );
        }
        self.shared
            .tile_cache
            .set_capacity(usize::try_from(new.http.tile_cache).unwrap_or(usize::MAX));
        let same_limits = HttpConfigCmp(&new.http) == HttpConfigCmp(&self.cfg.http);
        if let (Some(listener), Some(http)) = (listener, self.http.as_mut()) {
            if let Ok(a) = listener.local_addr() {
                tracing::info!(http = %a, "http listening on its new address");
            }
            let old = std::mem::replace(
                http,
                HttpServer::start(&new.http, Arc::new(listener), &self.shared, rt),
            );
            old.stop(rt);
        } else if let (false, Some(http)) = (same_limits, self.http.as_mut()) {
            // Same address, new limits: a new server takes over the listening socket before the
            // old one stops accepting, so the port is never unbound and no client is refused.
            let listener = http.listener.clone();
            let old = std::mem::replace(
                http,
                HttpServer::start(&new.http, listener, &self.shared, rt),
            );
            old.stop(rt);
        }
        self.cfg = new.clone();
        Ok(())
    }

    /// Drains sockets and queues, closes passes, stops the HTTP server and joins every thread.
    fn stop(mut self, rt: &tokio::runtime::Runtime) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for w in std::mem::take(&mut self.inputs) {
            join_decoder(w.stop());
        }
        std::mem::take(&mut self.retiring)
            .into_iter()
            .for_each(join_decoder);
        if let Some(http) = self.http.take() {
            http.stop(rt);
        }
        // Every pass is closed now: let the product worker finish the queued ones.
        self.shared.products.close();
        if let Some(t) = self.product_worker.take() {
            if t.join().is_err() {
                tracing::error!("the product worker panicked");
            }
        }
        // Uploads stop between objects (an object in flight is abandoned): what is left is
        // taken up at the next start.
        self.shared.uploads.close();
        if let Some(t) = self.upload_worker.take() {
            if t.join().is_err() {
                tracing::error!("the upload worker panicked");
            }
        }
        // LOS and pass-record notifications of the passes just closed.
        self.shared
            .webhooks
            .flush(std::time::Duration::from_secs(5));
    }
}

/// Runs the daemon until SIGTERM/SIGINT; returns when every pass is closed and archived.
///
/// SIGHUP re-reads `config_path` with the same validation as `downlink validate`: an invalid
/// file is reported (log, `/api/v1/status` `reloads`) and the daemon keeps running on the old
/// config; a valid one is applied in place (`Daemon::reload`): what did not change keeps
/// running, so a reload that leaves an input as it was does not touch its pass or its socket.
/// Counters are process-lifetime and never decrease across reloads.
pub fn run(cfg: &Config, config_path: Option<&std::path::Path>) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Http {
            addr: cfg.http.listen.to_string(),
            source,
        })?;
    let mut signals = rt.block_on(async { Signals::new() });
    let mut daemon = Daemon::start(cfg, &rt)?;
    notify_systemd("READY=1");
    start_watchdog(&rt, &daemon.shared);
    loop {
        match rt.block_on(signals.next()) {
            Signal::Terminate => {
                tracing::info!("shutting down: draining queues and closing passes");
                notify_systemd("STOPPING=1");
                daemon.stop(&rt);
                break;
            }
            Signal::Reload => {
                let Some(path) = config_path else {
                    tracing::warn!("SIGHUP: running on the embedded default, nothing to reload");
                    continue;
                };
                notify_systemd("RELOADING=1");
                let outcome = Config::load(path)
                    .and_then(|c| c.check_host(path).map(|_notes| c))
                    .map_err(|e| e.to_string())
                    .and_then(|new| daemon.reload(&new, &rt).map_err(|e| e.to_string()));
                let mut r = daemon
                    .shared
                    .reloads
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match outcome {
                    Ok(()) => events::emit(events::ConfigReloaded { reloads: &mut r }),
                    Err(error) => events::emit(events::ConfigReloadRefused {
                        reloads: &mut r,
                        error,
                    }),
                }
                drop(r);
                notify_systemd("READY=1");
            }
        }
    }
    Ok(())
}

/// systemd watchdog: ping at half the interval, only while every worker thread loops.
fn start_watchdog(rt: &tokio::runtime::Runtime, shared: &Arc<Shared>) {
    let Some(usec) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    let shared = shared.clone();
    let period = std::time::Duration::from_micros(usec / 2);
    rt.spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            if shared.all_alive(5_000) || shared.stopping() {
                notify_systemd("WATCHDOG=1");
            } else {
                tracing::error!("a worker thread is stuck: withholding the watchdog ping");
            }
        }
    });
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .unwrap_or_else(|e| {
            // Without the thread the input cannot work: this is fatal for the process.
            tracing::error!(error = %e, "cannot spawn thread {name}");
            std::process::exit(2)
        })
}
enum Signal {
    Terminate,
    Reload,
}

struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    async fn next(&mut self) -> Signal {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.term) => Signal::Terminate,
            () = recv(&mut self.int) => Signal::Terminate,
            () = recv(&mut self.hup) => Signal::Reload,
        }
    }
}

/// sd_notify without a library: one datagram to $NOTIFY_SOCKET.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let res = if let Some(abstract_name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = res {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}
