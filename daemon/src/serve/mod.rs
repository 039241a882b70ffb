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

pub mod archive;
pub mod http;
pub mod http_server;
pub mod ingest;
pub mod pipeline;
pub mod plot;
pub mod products;
pub mod stac;
pub mod tile_cache;
pub mod web;
pub mod webhook;

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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::config::{Config, Listen};

/// Drop reasons, in one place (they are metric label values).
pub const DROP_REASONS: [&str; 5] = [
    "not_allowed",
    "truncated",
    "empty",
    "queue_full",
    "kernel_overflow",
];

/// Components that can be degraded ([`Health`]; metric label values).
pub const HEALTH_COMPONENTS: [&str; 4] = ["archive", "catalog", "products", "http"];

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
    pub sync_state: &'static str,
    /// Id of the pass in progress.
    pub pass: Option<String>,
    /// Datagrams received (all, including dropped ones).
    pub datagrams: u64,
    /// Bytes received (all).
    pub bytes: u64,
    /// Datagrams dropped, by reason.
    pub drops: BTreeMap<&'static str, u64>,
    /// Unix time (ms) of the last good frame.
    pub last_frame_unix_ms: Option<u64>,
    /// Passes closed since start.
    pub passes: u64,
    /// tcp-connect inputs: connection attempts that failed or ended.
    pub reconnects: u64,
    /// Counters of the pass in progress (same keys as `decode --json`).
    pub current: Option<decoder::Stats>,
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

/// State shared between the threads and the HTTP side.
#[derive(Debug)]
pub struct Shared {
    /// Per input, in config order.
    pub inputs: Vec<Mutex<InputStatus>>,
    /// Archive root.
    pub archive: PathBuf,
    /// Set on SIGTERM/SIGINT.
    pub stop: AtomicBool,
    /// Per worker thread: monotonic milliseconds of its last loop iteration (watchdog).
    pub heartbeats: Vec<std::sync::atomic::AtomicU64>,
    /// Process start, the epoch of `heartbeats`.
    pub started: std::time::Instant,
    /// Outcome of the last SIGHUP, shown in /api/v1/status.
    pub last_reload: Mutex<Option<serde_json::Value>>,
    /// AOS / LOS / pass-record notifications.
    pub webhooks: webhook::Webhooks,
    /// Scene products at LOS (imaging inputs).
    pub products: products::Queue,
    /// The STAC catalog (`ARCHIVE/catalog.sqlite`); `None` if it could not be opened (logged).
    pub catalog: Option<Arc<dyn storage::catalog::Catalog>>,
    /// Map tile renderers (one GDAL handle per thread).
    pub tiles: Option<Arc<storage::tiles::render::TilePool>>,
    /// Recently served tiles (`http.tile_cache` bytes at most).
    pub tile_cache: tile_cache::TileCache,
    /// Tile requests refused because the render queue was full.
    pub tiles_busy: std::sync::atomic::AtomicU64,
    /// Degraded components (empty = healthy).
    pub health: Health,
    /// HTTP connection and request counters.
    pub http: Arc<http_server::HttpStats>,
}

impl Shared {
    /// Runs `f` on input `i`'s status (a poisoned lock still yields the data).
    pub fn with_input<R>(&self, i: usize, f: impl FnOnce(&mut InputStatus) -> R) -> Option<R> {
        self.inputs
            .get(i)
            .map(|m| f(&mut m.lock().unwrap_or_else(PoisonError::into_inner)))
    }

    /// Records that worker `w` is alive.
    pub fn beat(&self, w: usize) {
        if let Some(h) = self.heartbeats.get(w) {
            h.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// True when every worker looped within `max_ms`.
    pub fn all_alive(&self, max_ms: u64) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        self.heartbeats
            .iter()
            .all(|h| now.saturating_sub(h.load(Ordering::Relaxed)) <= max_ms)
    }

    /// True once shutdown started.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Errors that stop `serve` from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A socket could not be bound.
    #[error("input {input}: cannot bind {addr}: {source}")]
    Bind {
        /// Input name.
        input: String,
        /// Address.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The input kind is not implemented yet.
    #[error("input {input}: {listen} inputs are not supported yet (udp:// is)")]
    Unsupported {
        /// Input name.
        input: String,
        /// Listen spec.
        listen: String,
    },
    /// Archive directory problems.
    #[error("archive {path}: {source}")]
    Archive {
        /// Path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// HTTP listener.
    #[error("http {addr}: {source}")]
    Http {
        /// Address.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
}

/// One running set of sockets, worker threads and HTTP server, built from one config.
struct Generation {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    product_worker: Option<std::thread::JoinHandle<()>>,
    http: tokio::task::JoinHandle<()>,
    http_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Generation {
    /// Binds everything first (a bad address fails here, before anything runs), then starts.
    fn start(
        cfg: &Config,
        rt: &tokio::runtime::Runtime,
        last_reload: Option<serde_json::Value>,
    ) -> Result<Generation, ServeError> {
        let passes_dir = cfg.archive.path.join("passes");
        std::fs::create_dir_all(&passes_dir).map_err(|source| ServeError::Archive {
            path: passes_dir.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            inputs: cfg
                .input
                .iter()
                .map(|i| {
                    Mutex::new(InputStatus {
                        name: i.name.clone(),
                        listen: i.listen.to_string(),
                        profile: i.profile.name.clone(),
                        sync_state: "searching",
                        drops: DROP_REASONS.iter().map(|r| (*r, 0)).collect(),
                        ..InputStatus::default()
                    })
                })
                .collect(),
            archive: cfg.archive.path.clone(),
            stop: AtomicBool::new(false),
            heartbeats: (0..cfg.input.len() * 2)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            started: std::time::Instant::now(),
            last_reload: Mutex::new(last_reload),
            webhooks: webhook::Webhooks::new(&cfg.webhook, rt.handle().clone()),
            products: products::Queue::default(),
            catalog: match crate::archive_catalog::open(&cfg.archive.path) {
                Ok(c) => Some(Arc::new(c)),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "catalog unavailable: STAC API and product registration are off");
                    None
                }
            },
            tile_cache: tile_cache::TileCache::new(
                usize::try_from(cfg.http.tile_cache).unwrap_or(usize::MAX),
            ),
            tiles_busy: std::sync::atomic::AtomicU64::new(0),
            health: Health::default(),
            http: Arc::default(),
            tiles: match storage::tiles::render::TilePool::new(2, 16, TILE_QUEUE_MAX) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::error!(error = %e, "tile renderer unavailable");
                    None
                }
            },
        });
        let product_worker = products::start(
            &cfg.imaging,
            &cfg.archive.path,
            cfg.input.iter().any(|i| i.profile.imaging.is_some()),
            &shared,
        );
        // Passes cut short by a crash (no pass.json) get their record rebuilt from the raw CADUs.
        archive::recover_interrupted(cfg);
        let mut sockets = Vec::new();
        for (idx, input) in cfg.input.iter().enumerate() {
            let bind_err = |addr: &std::net::SocketAddr| {
                let (input, addr) = (input.name.clone(), addr.to_string());
                move |source| ServeError::Bind {
                    input,
                    addr,
                    source,
                }
            };
            let sock = match &input.listen {
                Listen::Udp(addr) => {
                    ingest::Source::Udp(ingest::bind_udp(input, *addr).map_err(bind_err(addr))?)
                }
                Listen::Tcp(addr) => {
                    ingest::Source::Tcp(ingest::bind_tcp(*addr).map_err(bind_err(addr))?)
                }
                Listen::TcpConnect(target) => ingest::Source::TcpConnect(target.clone()),
                Listen::Systemd(name) => {
                    ingest::take_systemd(input, name).map_err(|source| ServeError::Bind {
                        input: input.name.clone(),
                        addr: format!("systemd://{name}"),
                        source,
                    })?
                }
            };
            let local = sock.local_addr();
            shared.with_input(idx, |s| s.local_addr = local);
            sockets.push(sock);
        }
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(cfg.http.listen))
            .map_err(|source| ServeError::Http {
                addr: cfg.http.listen.to_string(),
                source,
            })?;
        let mut threads = Vec::new();
        for (idx, (input, sock)) in cfg.input.iter().zip(sockets).enumerate() {
            let (tx, rx) = std::sync::mpsc::sync_channel(input.queue_datagrams);
            let (s1, s2) = (shared.clone(), shared.clone());
            let (i1, i2) = (input.clone(), input.clone());
            let pass_cfg = cfg.pass.clone();
            let archive_cfg = cfg.archive.clone();
            threads.push(spawn(
                &format!("ingest-{}", input.name),
                move || match sock {
                    ingest::Source::Udp(sock) => ingest::udp_loop(&i1, &sock, &tx, &s1, idx),
                    ingest::Source::Tcp(l) => ingest::tcp_loop(&i1, &l, &tx, &s1, idx),
                    ingest::Source::TcpConnect(t) => {
                        ingest::tcp_connect_loop(&i1, &t, &tx, &s1, idx)
                    }
                },
            ));
            threads.push(spawn(&format!("decode-{}", input.name), move || {
                pipeline::run(&i2, &pass_cfg, &archive_cfg, &rx, &s2, idx)
            }));
        }
        let (http_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = http::router(shared.clone());
        let (limits, stats, sh) = (
            http_server::Limits::new(&cfg.http),
            shared.http.clone(),
            shared.clone(),
        );
        let http = rt.spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let health = move |p| http_server::report_health(&sh, p);
            http_server::serve(listener, app, limits, stats, health, shutdown).await;
        });
        tracing::info!(http = %cfg.http.listen, inputs = cfg.input.len(), "downlink serving");
        Ok(Generation {
            shared,
            threads,
            product_worker,
            http,
            http_stop: Some(http_stop),
        })
    }

    /// Drains queues, closes passes, stops the HTTP server and joins every thread.
    fn stop(mut self, rt: &tokio::runtime::Runtime) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(tx) = self.http_stop.take() {
            let _ = tx.send(());
        }
        let _ = rt.block_on(self.http);
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
        // Every pass is closed now: let the product worker finish the queued ones.
        self.shared.products.close();
        if let Some(t) = self.product_worker.take() {
            if t.join().is_err() {
                tracing::error!("the product worker panicked");
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
/// file is reported (log and `/api/v1/status` `last_reload`) and the daemon keeps running on the
/// old config; a valid one replaces it — passes in progress are closed and the inputs and HTTP
/// server restart on the new settings (if they cannot bind, the old config is restored).
pub fn run(cfg: &Config, config_path: Option<&std::path::Path>) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| ServeError::Http {
            addr: cfg.http.listen.to_string(),
            source,
        })?;
    let mut signals = rt.block_on(async { Signals::new() });
    let mut current = cfg.clone();
    let mut generation = Generation::start(&current, &rt, None)?;
    notify_systemd("READY=1");
    let watchdog = start_watchdog(&rt, &generation.shared);
    loop {
        match rt.block_on(signals.next()) {
            Signal::Terminate => {
                tracing::info!("shutting down: draining queues and closing passes");
                notify_systemd("STOPPING=1");
                generation.stop(&rt);
                break;
            }
            Signal::Reload => {
                let Some(path) = config_path else {
                    tracing::warn!("SIGHUP: running on the embedded default, nothing to reload");
                    continue;
                };
                match Config::load(path) {
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: new config is invalid; keeping the running one");
                        let info = serde_json::json!({"ok": false, "error": e.to_string()});
                        *generation
                            .shared
                            .last_reload
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(info);
                    }
                    Ok(new) => {
                        notify_systemd("RELOADING=1");
                        generation.stop(&rt);
                        let ok = serde_json::json!({"ok": true});
                        generation = match Generation::start(&new, &rt, Some(ok)) {
                            Ok(g) => {
                                current = new;
                                g
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "SIGHUP: cannot start on the new config; restoring the old one");
                                let info = serde_json::json!({"ok": false, "error": e.to_string()});
                                Generation::start(&current, &rt, Some(info))?
                            }
                        };
                        tracing::info!("SIGHUP: configuration reloaded");
                        if let Ok(mut w) = watchdog.lock() {
                            *w = generation.shared.clone();
                        }
                        notify_systemd("READY=1");
                    }
                }
            }
        }
    }
    Ok(())
}

/// systemd watchdog: ping at half the interval, only while every worker thread loops.
fn start_watchdog(rt: &tokio::runtime::Runtime, shared: &Arc<Shared>) -> Arc<Mutex<Arc<Shared>>> {
    let current = Arc::new(Mutex::new(shared.clone()));
    if let Some(usec) = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let cur = current.clone();
        let period = std::time::Duration::from_micros(usec / 2);
        rt.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let alive = cur
                    .lock()
                    .map(|s| s.all_alive(5_000) || s.stopping())
                    .unwrap_or(false);
                if alive {
                    notify_systemd("WATCHDOG=1");
                } else {
                    tracing::error!("a worker thread is stuck: withholding the watchdog ping");
                }
            }
        });
    }
    current
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot spawn thread {name}");
            std::thread::spawn(|| {})
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
