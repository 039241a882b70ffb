//! The HTTP accept loop: hyper's HTTP/1 server on tokio, serving the axum [`Router`], bounded so
//! that no client on the network can take what the archive needs.
//!
//! - **Connections**: at most `http.max_connections` are open. At the cap a new connection
//!   replaces the oldest one that has no request in progress (a socket that sent nothing, a
//!   stalled request head, an idle keep-alive); when every connection has a request in progress
//!   the new one is closed at once. Both are counted (`evicted`, `refused{reason="cap"}`);
//!   refusals are logged at most once per [`LOG_EVERY`], with the count.
//! - **File descriptors**: at start the soft `RLIMIT_NOFILE` is raised to the hard limit and the
//!   cap is lowered (a warning, also in `/api/v1/status` `http.warning`) when the cap, the
//!   descriptors already open and [`FD_RESERVE`] do not fit under it: pass files, the catalog and
//!   GDAL always find a descriptor. An `accept` failing for lack of descriptors (EMFILE/ENFILE)
//!   is counted (`refused{reason="emfile"}`), marks `http` degraded, and the loop backs off for
//!   [`ACCEPT_BACKOFF`] instead of spinning.
//! - **Time**: a request head must be complete within `http.header_timeout` (hyper's timer, from
//!   the connection opening or the end of the previous response; counted as `keep_alive` when
//!   nothing at all came after a response, else `header`); a connection that moves no
//!   bytes for `http.idle_timeout` while no request is being handled is closed (a client that
//!   stopped reading a response); a request body that stalls that long fails; after
//!   `http.max_requests_per_connection` requests the response says `Connection: close`.
//! - **Concurrency**: at most `http.max_concurrency` requests are handled at once (until their
//!   response starts); one more is answered `503` with `Retry-After` at once and counted
//!   (load shedding, like tower's `ConcurrencyLimit` + `LoadShed`).
//! - **Shutdown**: stop accepting, close connections with no request in progress, let the
//!   others finish for up to [`SHUTDOWN_GRACE`], then close them.
//!
//! Memory is bounded by the cap: each connection holds at most [`MAX_BUF`] of read buffer plus
//! its queued response; connections past the cap are closed without allocating a server for
//! them.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

use super::events::{
    emit, HttpAcceptFailed, HttpConnectionAccepted, HttpConnectionEvicted, HttpConnectionRefused,
    HttpRequestShed, HttpTimedOut,
};
use crate::config::HttpConfig;

/// File descriptors kept free for archive work (pass files, catalog, GDAL) whatever HTTP does.
pub const FD_RESERVE: u64 = 256;
/// How long requests in progress may take to finish at shutdown or reload.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Largest read buffer of one connection (a request head must fit in it).
pub const MAX_BUF: usize = 64 * 1024;
/// At most one log line per this long for refused connections and failing accepts.
pub use super::events::LOG_EVERY;
/// Connections told to close (evicted) whose socket may still be open; the accept loop waits
/// for them past this, so descriptors in use stay within the cap plus this.
pub const CLOSING_MAX: usize = 16;
/// Pause after an `accept` that failed for lack of resources.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Why a connection was refused (metric label values): `cap` (every connection has a request in
/// progress), `emfile` (accept failed for lack of descriptors), `error` (any other failed accept).
pub const REFUSE_REASONS: [&str; 3] = ["cap", "emfile", "error"];
/// What timed out (metric label values): a request head not sent in time (`header`), a
/// keep-alive connection with no next request (`keep_alive`, the normal end of one), a
/// connection moving no bytes (`idle`), a request body (`body`).
pub const TIMEOUT_KINDS: [&str; 4] = ["header", "keep_alive", "idle", "body"];
/// Status classes of the responses the router gave (metric label values): a `4xx` is a request
/// refused as bad (unknown parameter, malformed filter, unknown id …).
pub const RESPONSE_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The limits of one HTTP server, from `[http]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once (before fitting under the open-file limit).
    pub max_connections: usize,
    /// Requests handled at once.
    pub max_concurrency: usize,
    /// Time to send a complete request head.
    pub header_timeout: Duration,
    /// Time a connection may move no bytes while no request is being handled.
    pub idle_timeout: Duration,
    /// Requests per connection.
    pub max_requests_per_connection: u64,
}

impl Limits {
    /// The limits configured in `[http]`.
    pub fn new(http: &HttpConfig) -> Limits {
        Limits {
            max_connections: http.max_connections,
            max_concurrency: http.max_concurrency,
            header_timeout: http.header_timeout,
            idle_timeout: http.idle_timeout,
            max_requests_per_connection: http.max_requests_per_connection,
        }
    }
}

/// How the connection cap fits under the open-file limit (decided at start).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FdBudget {
    /// Soft `RLIMIT_NOFILE` after raising it (`None`: unlimited).
    pub fd_limit: Option<u64>,
    /// Descriptors open when the server started.
    pub fds_at_start: u64,
    /// Descriptors kept for the archive ([`FD_RESERVE`]).
    pub fd_reserve: u64,
    /// The connection cap in force.
    pub max_connections: usize,
    /// `http.max_connections` as configured.
    pub max_connections_configured: usize,
    /// Set when the cap had to be lowered.
    pub warning: Option<String>,
}

/// The cap that fits: `configured`, lowered so that it, the descriptors open now and
/// [`FD_RESERVE`] stay under `soft` (at least 1).
pub fn fit(configured: usize, soft: Option<u64>, in_use: u64) -> FdBudget {
    let room = soft.map_or(u64::MAX, |s| s.saturating_sub(in_use + FD_RESERVE));
    let cap = usize::try_from(room)
        .unwrap_or(usize::MAX)
        .min(configured)
        .max(1);
    let warning = (cap < configured).then(|| {
        format!(
            "http.max_connections lowered from {configured} to {cap}: the open-file limit is {} \
             with {in_use} open at start and {FD_RESERVE} kept for the archive (raise \
             LimitNOFILE / ulimit -n)",
            soft.unwrap_or(u64::MAX)
        )
    });
    FdBudget {
        fd_limit: soft,
        fds_at_start: in_use,
        fd_reserve: FD_RESERVE,
        max_connections: cap,
        max_connections_configured: configured,
        warning,
    }
}

/// Raises the soft open-file limit to the hard one, then fits `configured` under it.
fn fd_budget(configured: usize) -> FdBudget {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if let Some(hard) = lim.maximum {
        if lim.current.is_some_and(|soft| soft < hard) {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            if let Err(e) = setrlimit(Resource::Nofile, raised) {
                tracing::warn!(error = %e, hard, "cannot raise the open-file limit to the hard limit");
            }
        }
    }
    let soft = getrlimit(Resource::Nofile).current;
    // The directory handle itself is counted too: one spare descriptor.
    let in_use = std::fs::read_dir("/proc/self/fd").map_or(64, |d| d.count() as u64);
    fit(configured, soft, in_use)
}

/// Counters of the HTTP server; they live as long as the daemon (across reloads).
#[derive(Debug, Default)]
pub struct HttpStats {
    open: AtomicU64,
    pub(super) accepted: AtomicU64,
    refused: [AtomicU64; 3],
    pub(super) evicted: AtomicU64,
    timed_out: [AtomicU64; 4],
    requests: AtomicU64,
    pub(super) shed: AtomicU64,
    budget: Mutex<FdBudget>,
    responses: [AtomicU64; 5],
}

/// What `/api/v1/status` shows under `http`.
#[derive(Clone, Debug, Serialize)]
pub struct HttpSnapshot {
    /// Connections open now.
    pub connections_open: u64,
    /// Connections accepted and served.
    pub connections_accepted: u64,
    /// Connections refused, by reason ([`REFUSE_REASONS`]).
    pub refused: BTreeMap<&'static str, u64>,
    /// Connections closed to make room for a new one at the cap.
    pub evicted: u64,
    /// Connections or request bodies timed out, by kind ([`TIMEOUT_KINDS`]).
    pub timed_out: BTreeMap<&'static str, u64>,
    /// Requests received.
    pub requests: u64,
    /// Requests answered 503 because `max_concurrency` were in progress.
    pub requests_shed: u64,
    /// The connection cap and the open-file budget behind it.
    #[serde(flatten)]
    pub budget: FdBudget,
    /// Responses of the router by status class ([`RESPONSE_CLASSES`]).
    pub responses: BTreeMap<&'static str, u64>,
}

/// Why a connection was refused ([`REFUSE_REASONS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refuse {
    /// Every connection has a request in progress.
    Cap = 0,
    /// `accept` failed for lack of descriptors.
    Emfile = 1,
    /// Any other failed `accept`.
    Error = 2,
}

/// What timed out ([`TIMEOUT_KINDS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// A request head not sent in time.
    Header = 0,
    /// No next request on a keep-alive connection.
    KeepAlive = 1,
    /// A connection moving no bytes.
    Idle = 2,
    /// A request body.
    Body = 3,
}

impl Timeout {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        TIMEOUT_KINDS.get(self as usize).copied().unwrap_or("")
    }
}

impl HttpStats {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn refused(&self, why: Refuse) {
        if let Some(c) = self.refused.get(why as usize) {
            Self::bump(c);
        }
    }

    pub(super) fn timed_out(&self, what: Timeout) {
        if let Some(c) = self.timed_out.get(what as usize) {
            Self::bump(c);
        }
    }

    /// Counts a response of the router by its status class.
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).saturating_sub(1);
        if let Some(c) = self.responses.get(class) {
            Self::bump(c);
        }
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> HttpSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HttpSnapshot {
            connections_open: load(&self.open),
            connections_accepted: load(&self.accepted),
            refused: REFUSE_REASONS
                .iter()
                .zip(&self.refused)
                .map(|(r, c)| (*r, load(c)))
                .collect(),
            evicted: load(&self.evicted),
            timed_out: TIMEOUT_KINDS
                .iter()
                .zip(&self.timed_out)
                .map(|(k, c)| (*k, load(c)))
                .collect(),
            requests: load(&self.requests),
            requests_shed: load(&self.shed),
            budget: self
                .budget
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            responses: RESPONSE_CLASSES
                .iter()
                .zip(&self.responses)
                .map(|(k, c)| (*k, load(c)))
                .collect(),
        }
    }
}

/// Marks the `http` component degraded (`Some(reason)`) or healthy again (`None`), logging the
/// change once.
pub fn report_health(shared: &super::Shared, problem: Option<String>) {
    match problem {
        Some(reason) => {
            if shared.health.set("http", reason.clone()) {
                tracing::error!(%reason, "http degraded");
            }
        }
        None => {
            if shared.health.clear("http") {
                tracing::info!("http accepts connections again");
            }
        }
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then closes
/// connections as described in the module docs. `on_health` hears `Some(reason)` when accepting
/// fails for lack of descriptors and `None` when it works again.
pub async fn serve(
    listener: Arc<TcpListener>,
    app: Router,
    limits: Limits,
    stats: Arc<HttpStats>,
    on_health: impl Fn(Option<String>) + Send + 'static,
    shutdown: impl Future<Output = ()>,
) {
    let budget = fd_budget(limits.max_connections);
    if let Some(w) = &budget.warning {
        tracing::warn!("{w}");
    }
    let cap = budget.max_connections;
    *stats.budget.lock().unwrap_or_else(PoisonError::into_inner) = budget;
    let ctx = Arc::new(ServerCtx {
        app,
        limits,
        stats: stats.clone(),
        epoch: Instant::now(),
        permits: Arc::new(Semaphore::new(limits.max_concurrency)),
    });
    let mut registry = Registry::default();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut failing = false;
    tokio::pin!(shutdown);
    'serve: loop {
        // Evicted connections close on their own tasks: let them, before taking more sockets.
        while registry.sockets.load(Ordering::Relaxed) >= cap + CLOSING_MAX {
            tokio::select! {
                biased;
                () = &mut shutdown => break 'serve,
                () = registry.closed.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    if std::mem::take(&mut failing) {
                        on_health(None);
                    }
                    match registry.admit(cap, ctx.now_ms(), &stats) {
                        Some((slot, conn, evicted)) => {
                            emit(HttpConnectionAccepted { stats: &stats });
                            if evicted {
                                emit(HttpConnectionEvicted { stats: &stats, cap });
                            }
                            tasks.spawn(connection(stream, slot, conn, ctx.clone(), stop_rx.clone()));
                        }
                        None => emit(HttpConnectionRefused { stats: &stats, cap }),
                    }
                }
                Err(e) => {
                    use rustix::io::Errno;
                    let errno = Errno::from_io_error(&e);
                    let fds = matches!(errno, Some(Errno::MFILE | Errno::NFILE));
                    if !fds && !matches!(errno, Some(Errno::NOBUFS | Errno::NOMEM)) {
                        // A network error of one pending connection (see accept(2)): that
                        // connection is gone; the next one may be fine.
                        emit(HttpAcceptFailed { stats: &stats, reason: Refuse::Error, backing_off: false, error: &e });
                        continue;
                    }
                    // Out of descriptors or memory: the pending connection stays queued and
                    // accept would fail again at once; pause instead of spinning.
                    if !failing {
                        failing = true;
                        on_health(Some(format!("accepting HTTP connections fails: {e}")));
                    }
                    let reason = if fds { Refuse::Emfile } else { Refuse::Error };
                    emit(HttpAcceptFailed { stats: &stats, reason, backing_off: true, error: &e });
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "http: requests still in progress after {SHUTDOWN_GRACE:?}; closing them"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    if failing {
        on_health(None);
    }
}

/// What every connection of one server shares.
struct ServerCtx {
    app: Router,
    limits: Limits,
    stats: Arc<HttpStats>,
    /// Origin of the millisecond clocks in [`Conn`].
    epoch: Instant,
    /// One permit per request being handled (`max_concurrency`).
    permits: Arc<Semaphore>,
}

impl ServerCtx {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// One open connection, as the accept loop and its own task see it.
#[derive(Debug)]
struct Conn {
    /// Requests from dispatch until their response body is dropped (not evictable while > 0).
    busy: AtomicUsize,
    /// Requests from dispatch until their response starts (no idle timeout while > 0).
    handling: AtomicUsize,
    /// Requests seen on this connection.
    requests: AtomicU64,
    /// Milliseconds (since [`ServerCtx::epoch`]) of the last byte read or written.
    last_io_ms: AtomicU64,
    /// Bytes were read since the last response ended (a header timeout is then a stalled
    /// request head, not an idle keep-alive).
    read_since_response: AtomicBool,
    /// Told to close to make room for a new connection.
    evict: Notify,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    next: u64,
    conns: Arc<Mutex<BTreeMap<u64, Arc<Conn>>>>,
    /// Signalled whenever a connection's socket is closed.
    closed: Arc<Notify>,
    /// Sockets of this server still open, evicted ones included.
    sockets: Arc<AtomicUsize>,
}

impl Registry {
    /// A place for a new connection: at the cap, the oldest connection with no request in
    /// progress is told to close; `None` when every connection has one.
    fn admit(
        &mut self,
        cap: usize,
        now_ms: u64,
        stats: &Arc<HttpStats>,
    ) -> Option<(Slot, Arc<Conn>, bool)> {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let full = conns.len() >= cap;
        if full {
            let victim = conns
                .iter()
                .find(|(_, c)| c.busy.load(Ordering::Relaxed) == 0)
                .map(|(id, _)| *id)?;
            if let Some(c) = conns.remove(&victim) {
                c.evict.notify_one();
            }
        }
        let id = self.next;
        self.next += 1;
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            handling: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_io_ms: AtomicU64::new(now_ms),
            read_since_response: AtomicBool::new(false),
            evict: Notify::new(),
        });
        conns.insert(id, conn.clone());
        stats.open.fetch_add(1, Ordering::Relaxed);
        self.sockets.fetch_add(1, Ordering::Relaxed);
        Some((
            Slot {
                id,
                conns: self.conns.clone(),
                closed: self.closed.clone(),
                sockets: self.sockets.clone(),
                stats: stats.clone(),
            },
            conn,
            full,
        ))
    }
}

/// A connection's place in the [`Registry`] and the open gauge; freed on drop (also on abort).
struct Slot {
    id: u64,
    conns: Arc<Mutex<BTreeMap<u64, Arc<Conn>>>>,
    closed: Arc<Notify>,
    sockets: Arc<AtomicUsize>,
    stats: Arc<HttpStats>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        self.sockets.fetch_sub(1, Ordering::Relaxed);
        self.closed.notify_one();
    }
}

/// Serves one connection until it ends, times out, is evicted or the server stops.
async fn connection(
    stream: TcpStream,
    _slot: Slot,
    conn: Arc<Conn>,
    ctx: Arc<ServerCtx>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let peer = super::access::Peer(stream.peer_addr().ok());
    let io = TokioIo::new(Tracked {
        io: stream,
        conn: conn.clone(),
        epoch: ctx.epoch,
    });
    let service = {
        let (ctx, conn) = (ctx.clone(), conn.clone());
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(peer);
            handle(req, ctx.clone(), conn.clone())
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.limits.header_timeout)
        .max_buf_size(MAX_BUF)
        .keep_alive(true);
    let http = builder.serve_connection(io, service);
    tokio::pin!(http);
    let idle = tokio::time::sleep(ctx.limits.idle_timeout);
    tokio::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            biased;
            ended = http.as_mut() => {
                if let Err(e) = ended {
                    if e.is_timeout() {
                        let keep_alive = conn.requests.load(Ordering::Relaxed) > 0
                            && !conn.read_since_response.load(Ordering::Relaxed);
                        let kind = if keep_alive { Timeout::KeepAlive } else { Timeout::Header };
                        emit(HttpTimedOut { stats: &ctx.stats, kind });
                    } else {
                        tracing::debug!(error = %e, "http connection ended");
                    }
                }
                break;
            }
            () = conn.evict.notified(), if !closing => {
                // Nothing in progress: close now (a half-sent request head is dropped).
                if conn.busy.load(Ordering::Relaxed) == 0 {
                    break;
                }
                closing = true;
                http.as_mut().graceful_shutdown();
            }
            _ = stop.changed(), if !closing => {
                if conn.busy.load(Ordering::Relaxed) == 0 {
                    break;
                }
                closing = true;
                http.as_mut().graceful_shutdown();
            }
            () = &mut idle => {
                let quiet = Duration::from_millis(
                    ctx.now_ms().saturating_sub(conn.last_io_ms.load(Ordering::Relaxed)),
                );
                let handling = conn.handling.load(Ordering::Relaxed) > 0;
                if !handling && quiet >= ctx.limits.idle_timeout {
                    emit(HttpTimedOut { stats: &ctx.stats, kind: Timeout::Idle });
                    break;
                }
                let wait = if handling {
                    ctx.limits.idle_timeout
                } else {
                    ctx.limits.idle_timeout.saturating_sub(quiet)
                };
                idle.as_mut().reset(tokio::time::Instant::now() + wait);
            }
        }
    }
}

/// One request: load shedding, the router, `Connection: close` at the per-connection limit.
async fn handle(
    req: Request<Incoming>,
    ctx: Arc<ServerCtx>,
    conn: Arc<Conn>,
) -> Result<Response<Body>, Infallible> {
    HttpStats::bump(&ctx.stats.requests);
    let nth = conn.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let busy = Counted::new(&conn, |c| &c.busy);
    let handling = Counted::new(&conn, |c| &c.handling);
    let mut resp = match ctx.permits.clone().try_acquire_owned() {
        Ok(permit) => {
            let req = req.map(|b| {
                Body::new(IdleBody {
                    inner: b,
                    timeout: ctx.limits.idle_timeout,
                    sleep: None,
                    stats: ctx.stats.clone(),
                })
            });
            // Router is always ready (its `poll_ready` returns `Ready` without work).
            let resp = match tower_service::Service::call(&mut ctx.app.clone(), req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            drop(permit);
            resp
        }
        Err(_) => {
            emit(HttpRequestShed { stats: &ctx.stats });
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "busy: http.max_concurrency requests in progress, retry\n",
            )
                .into_response()
        }
    };
    if nth >= ctx.limits.max_requests_per_connection {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    drop(handling);
    Ok(resp.map(|inner| Body::new(Guarded { inner, busy })))
}

/// One unit of a [`Conn`] counter, given back on drop.
struct Counted {
    conn: Arc<Conn>,
    field: fn(&Conn) -> &AtomicUsize,
}

impl Counted {
    fn new(conn: &Arc<Conn>, field: fn(&Conn) -> &AtomicUsize) -> Counted {
        field(conn).fetch_add(1, Ordering::Relaxed);
        Counted {
            conn: conn.clone(),
            field,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        (self.field)(&self.conn).fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its connection busy (not evictable) until hyper drops it.
struct Guarded {
    inner: Body,
    busy: Counted,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.busy
            .conn
            .read_since_response
            .store(false, Ordering::Relaxed);
    }
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that fails when no data arrives for `timeout`.
struct IdleBody {
    inner: Incoming,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    stats: Arc<HttpStats>,
}

/// The error of a request body that stalled.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled for {0:?} (http.idle_timeout)")]
struct BodyStalled(Duration);

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.sleep = None;
                    emit(HttpTimedOut {
                        stats: &this.stats,
                        kind: Timeout::Body,
                    });
                    return Poll::Ready(Some(Err(BodyStalled(timeout).into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting the time of the last byte moved.
struct Tracked {
    io: TcpStream,
    conn: Arc<Conn>,
    epoch: Instant,
}

impl Tracked {
    fn moved(&self, read: bool) {
        if read {
            self.conn.read_since_response.store(true, Ordering::Relaxed);
        }
        self.conn
            .last_io_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.moved(true);
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved(false);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved(false);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_cap_fits_under_the_open_file_limit_with_the_reserve() {
        let b = fit(512, Some(1_048_576), 40);
        assert_eq!(b.max_connections, 512);
        assert_eq!(b.warning, None);
        // 1024 - 40 open - 256 reserve = 728: 512 fits.
        assert_eq!(fit(512, Some(1024), 40).max_connections, 512);
        // 600 - 40 - 256 = 304.
        let b = fit(512, Some(600), 40);
        assert_eq!(b.max_connections, 304);
        let w = b.warning.unwrap();
        assert!(w.contains("from 512 to 304") && w.contains("600"), "{w}");
        // No room at all still serves one connection (the archive keeps its reserve).
        assert_eq!(fit(512, Some(200), 40).max_connections, 1);
        assert_eq!(fit(512, None, 40).max_connections, 512);
    }
}
