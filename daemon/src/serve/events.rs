//! Typed internal events, the way Vector does them: every notable occurrence of `serve` is a
//! struct, and its [`InternalEvent::emit`] both writes the log line (rate-limited where the
//! occurrence can be frequent) and bumps the counter that `/api/v1/status` and `/metrics` read.
//! A call site is one line, `emit(DatagramsDropped { .. })`: no call site logs or counts by
//! hand, so a log line and its counter cannot disagree, and the level and wording of each
//! occurrence live here, next to each other.
//!
//! The counters themselves stay where the HTTP side reads them (an input's [`InputStatus`],
//! [`HttpStats`], the product queue's [`ProductsStatus`], …): an event borrows the one it
//! bumps. Per-datagram occurrences are aggregated per batch by their caller (at most every
//! 200 ms per input) and their log lines are limited to one per [`LOG_EVERY`] per input and
//! reason, carrying the count since the previous line.
//!
//! | event | log | counter (metric) |
//! |---|---|---|
//! | [`DatagramsReceived`] | TRACE | `datagrams`, `bytes` (`downlink_input_datagrams_total`, `downlink_input_bytes_total`) |
//! | [`DatagramsDropped`] | ERROR `queue_full`, `kernel_overflow`; WARN others; rate-limited | `drops{reason}` (`downlink_input_dropped_total{reason}`) |
//! | [`TcpSenderRefused`] | WARN, rate-limited | `drops{not_allowed}` |
//! | [`TcpSenderConnected`] / [`TcpSenderDisconnected`] | INFO | — |
//! | [`InputReconnecting`] | INFO (ended) / WARN (connect failed, at attempts 1, 2, 4, 8 …) | `reconnects` (`downlink_input_reconnects_total`) |
//! | [`PassOpened`] | INFO `AOS` | — (`downlink_pass_active`) |
//! | [`PassRecovery`] | WARN recovered or left, ERROR failed | `archive.recovered_passes{result}` (`downlink_passes_recovered_total{result}`) |
//! | [`BytesWithoutPass`] | DEBUG | `bytes_without_pass` (`downlink_input_bytes_without_pass_total`) |
//! | [`PassClosed`] | INFO `LOS` | `passes`, `totals` (`downlink_passes_total`, `downlink_frames_*_total` …) |
//! | [`ArchiveIoFailed`] | ERROR, rate-limited per input and operation; ERROR once when the archive becomes degraded | `archive.io_errors{op}` (`downlink_archive_io_errors_total{op}`) |
//! | [`ProductJobDone`] | INFO | `products.ok` (`downlink_product_passes_total{result="ok"}`) |
//! | [`ProductJobRetry`] | WARN | `products.retried` |
//! | [`ProductJobGivenUp`] / [`ProductJobUnreadable`] | ERROR | `products.failed` |
//! | [`ProductJobDeferred`] | WARN | `products.deferred` |
//! | [`ProductJobDropped`] | ERROR | `products.dropped` |
//! | [`ProductCatalogFailed`] | DEBUG (the retry or give-up line follows) | `products.catalog_failed` |
//! | [`ProductJobsTakenUp`] | INFO | `products.cleaned`, `products.recovered` |
//! | [`WebhookDelivered`] | DEBUG | `webhooks.sent` |
//! | [`WebhookFailed`] | WARN, rate-limited per webhook | `webhooks.failed` |
//! | [`WebhookDropped`] | WARN, rate-limited per webhook | `webhooks.dropped` |
//! | [`HttpConnectionAccepted`] | TRACE | `http.connections_accepted` |
//! | [`HttpConnectionEvicted`] | WARN, rate-limited | `http.evicted` |
//! | [`HttpConnectionRefused`] | WARN, rate-limited | `http.refused{cap}` |
//! | [`HttpAcceptFailed`] | DEBUG (one connection) / ERROR, rate-limited (backing off) | `http.refused{emfile\|error}` |
//! | [`HttpRequestShed`] | WARN, rate-limited | `http.requests_shed` |
//! | [`HttpTimedOut`] | DEBUG | `http.timed_out{kind}` |
//! | [`WmsException`] | DEBUG | `wms_exceptions{code}` (`downlink_wms_exceptions_total{code}`) |
//! | [`TileRenderBusy`] | WARN, rate-limited | `tile_cache.refused_busy` (`downlink_tiles_refused_busy_total`) |
//! | [`ConfigReloaded`] / [`ConfigReloadRefused`] | INFO / ERROR | `reloads.ok` / `reloads.failed` (`downlink_reloads_total{result}`) |
//! | [`AlertRunPublished`] / [`AlertRunFailed`] | INFO / ERROR | `alerts.runs` / `alerts.failures{reason}` (`downlink_alert_run*_total`) |
//! | [`PassUploaded`] | INFO | `store.uploaded_passes` (`downlink_store_uploaded_passes_total`; objects and bytes are counted per object) |
//! | [`UploadFailed`] | ERROR when the store becomes degraded, then WARN rate-limited per reason | `store.failures{reason}` (`downlink_store_upload_failures_total{reason}`) |
//! | [`UploadsTakenUp`] | INFO | `store.taken_up` (`downlink_store_passes_taken_up_total`) |
//! | [`StoreRecovered`] | INFO | — (`downlink_degraded{component="store"}` back to 0) |
//! | [`StoreReadFailed`] | ERROR when the store becomes degraded, then WARN rate-limited per reason | `store_reads.failures{reason}` (`downlink_store_read_failures_total{reason}`) |

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::alerts::CollectionStatus;
use super::http_server::{HttpStats, Refuse, Timeout};
use super::products::ProductsStatus;
use super::store_read::ReadStatus;
use super::upload::UploadStatus;
use super::webhook::DeliveryCounters;
use super::{DropReason, InputState, InputStatus, Reloads, Shared};

/// One occurrence: `emit` logs it and counts it.
pub trait InternalEvent {
    /// Logs (rate-limited where frequent) and bumps the counter, once.
    fn emit(self);
}

/// Emits `event`: the one line a call site writes.
pub fn emit(event: impl InternalEvent) {
    event.emit();
}

/// At most one log line per this long for a rate-limited event (per event and key: input and
/// reason, webhook, …).
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts occurrences and lets one log line through per period, with the count since the
/// last one.
#[derive(Debug)]
pub(crate) struct Throttle {
    every: Duration,
    last: Option<Instant>,
    count: u64,
}

impl Throttle {
    pub(crate) fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            count: 0,
        }
    }

    /// Adds `n` occurrences; `Some(occurrences since the last line)` when a line may be
    /// logged now.
    pub(crate) fn hit(&mut self, n: u64) -> Option<u64> {
        self.count += n;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= self.every)
        {
            self.last = Some(now);
            Some(std::mem::take(&mut self.count))
        } else {
            None
        }
    }
}

/// The process-wide log limiter: `Some(count)` when event `event` for `key` may log now (keys
/// are bounded label values, so the map stays small).
fn throttled(event: &'static str, key: &str, n: u64) -> Option<u64> {
    static LIMITS: OnceLock<Mutex<BTreeMap<(&'static str, String), Throttle>>> = OnceLock::new();
    let mut limits = LIMITS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    limits
        .entry((event, key.to_owned()))
        .or_insert_with(|| Throttle::new(LOG_EVERY))
        .hit(n)
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// Ingest

/// A batch of datagrams (or TCP reads) received by an input, dropped ones included.
pub struct DatagramsReceived<'a> {
    /// The input's state.
    pub input: &'a InputState,
    /// Its name.
    pub name: &'a str,
    /// Datagrams or reads.
    pub count: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl InternalEvent for DatagramsReceived<'_> {
    fn emit(self) {
        if self.count == 0 && self.bytes == 0 {
            return;
        }
        self.input.with(|s| {
            s.datagrams += self.count;
            s.bytes += self.bytes;
        });
        tracing::trace!(
            input = self.name,
            datagrams = self.count,
            bytes = self.bytes,
            "received"
        );
    }
}

/// Datagrams of one input dropped before decoding, for one reason (a batch: `count` of them).
pub struct DatagramsDropped<'a> {
    /// The input's state.
    pub input: &'a InputState,
    /// Its name.
    pub name: &'a str,
    /// Why.
    pub reason: DropReason,
    /// How many (0: nothing happens).
    pub count: u64,
}

impl InternalEvent for DatagramsDropped<'_> {
    fn emit(self) {
        if self.count == 0 {
            return;
        }
        let (input, reason) = (self.name, self.reason);
        self.input
            .with(|s| *s.drops.entry(reason).or_default() += self.count);
        let key = format!("{input}/{reason}");
        let Some(dropped) = throttled("datagrams_dropped", &key, self.count) else {
            return;
        };
        match reason {
            DropReason::QueueFull => {
                tracing::error!(input, dropped, "decoder queue full: datagrams dropped");
            }
            DropReason::KernelOverflow => tracing::error!(
                input,
                dropped,
                "socket receive buffer overflowed: the kernel dropped datagrams (raise input.rcvbuf and net.core.rmem_max)"
            ),
            DropReason::NotAllowed => tracing::warn!(
                input,
                dropped,
                "datagrams from a source outside input.allow dropped"
            ),
            DropReason::Truncated => tracing::warn!(
                input,
                dropped,
                "datagrams longer than input.max_datagram dropped"
            ),
            _ => tracing::warn!(input, dropped, %reason, "datagrams dropped"),
        }
    }
}

/// A TCP connection to a `tcp://` input from outside its `allow` list, closed at once.
pub struct TcpSenderRefused<'a> {
    /// The input's state.
    pub input: &'a InputState,
    /// Its name.
    pub name: &'a str,
    /// Who connected.
    pub peer: std::net::SocketAddr,
}

impl InternalEvent for TcpSenderRefused<'_> {
    fn emit(self) {
        let input = self.name;
        self.input
            .with(|s| *s.drops.entry(DropReason::NotAllowed).or_default() += 1);
        if let Some(refused) = throttled("tcp_sender_refused", input, 1) {
            tracing::warn!(input, peer = %self.peer, refused, "TCP connection from outside input.allow closed");
        }
    }
}

/// A sender connected to a `tcp://` input.
pub struct TcpSenderConnected<'a> {
    /// Input name.
    pub name: &'a str,
    /// Who connected.
    pub peer: std::net::SocketAddr,
}

impl InternalEvent for TcpSenderConnected<'_> {
    fn emit(self) {
        tracing::info!(input = self.name, peer = %self.peer, "TCP sender connected");
    }
}

/// The sender of a `tcp://` input disconnected (or its connection failed).
pub struct TcpSenderDisconnected<'a> {
    /// Input name.
    pub name: &'a str,
}

impl InternalEvent for TcpSenderDisconnected<'_> {
    fn emit(self) {
        tracing::info!(input = self.name, "TCP sender disconnected");
    }
}

/// Why a `tcp-connect://` input connects again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReconnectCause {
    /// The connection ended.
    Ended,
    /// Connecting failed, `attempts` times in a row.
    ConnectFailed {
        /// Failures in a row.
        attempts: u64,
    },
}

/// A `tcp-connect://` input waits `input.reconnect` and connects again.
pub struct InputReconnecting<'a> {
    /// The input's state.
    pub input: &'a InputState,
    /// Its name.
    pub name: &'a str,
    /// `host:port`.
    pub target: &'a str,
    /// Why.
    pub cause: ReconnectCause,
}

impl InternalEvent for InputReconnecting<'_> {
    fn emit(self) {
        let (input, target) = (self.name, self.target);
        self.input.with(|s| s.reconnects += 1);
        match self.cause {
            ReconnectCause::Ended => {
                tracing::info!(input, target, "connection ended; reconnecting");
            }
            // 1, 2, 4, 8 … failures: a server down for hours does not flood the log.
            ReconnectCause::ConnectFailed { attempts }
                if attempts == 1 || attempts.is_power_of_two() =>
            {
                tracing::warn!(input, target, attempts, "cannot connect; retrying");
            }
            ReconnectCause::ConnectFailed { .. } => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Passes and the archive

/// AOS: a pass opened.
pub struct PassOpened<'a> {
    /// Input name.
    pub input: &'a str,
    /// Pass id.
    pub pass: &'a str,
}

impl InternalEvent for PassOpened<'_> {
    fn emit(self) {
        tracing::info!(input = self.input, pass = self.pass, "AOS");
    }
}

/// A decoder dropped without having opened a pass (noise, or a stream that never locked):
/// its bytes are counted, so every byte received is in a pass record or a counter.
pub struct BytesWithoutPass<'a> {
    /// The input's state.
    pub input: &'a InputState,
    /// Its name.
    pub name: &'a str,
    /// Bytes the decoder took.
    pub bytes: u64,
}

impl InternalEvent for BytesWithoutPass<'_> {
    fn emit(self) {
        if self.bytes == 0 {
            return;
        }
        self.input.with(|s| s.bytes_without_pass += self.bytes);
        tracing::debug!(
            input = self.name,
            bytes = self.bytes,
            "bytes decoded outside any pass (no lock)"
        );
    }
}

/// Crash recovery at start: what was done with one pass interrupted by a crash.
pub struct PassRecovery<'a> {
    /// Process-wide state.
    pub shared: &'a Shared,
    /// The outcome.
    pub outcome: &'a archive::pass::Recovery,
}

impl InternalEvent for PassRecovery<'_> {
    fn emit(self) {
        use archive::pass::Recovery;
        let result = match self.outcome {
            Recovery::Recovered { pass, frames } => {
                tracing::warn!(pass, frames, "recovered a pass interrupted by a crash");
                "recovered"
            }
            Recovery::Failed { pass, error } => {
                tracing::error!(pass, error, "cannot recover interrupted pass");
                "failed"
            }
            Recovery::UnknownInput { pass } => {
                tracing::warn!(
                    pass,
                    "interrupted pass of an input no longer configured: left as is"
                );
                "left"
            }
            other => {
                tracing::warn!(outcome = ?other, "interrupted pass");
                "failed"
            }
        };
        *self
            .shared
            .recovered_passes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(result)
            .or_default() += 1;
    }
}

/// LOS: a pass closed, its record on disk or pending. Adds the pass to the input's totals.
pub struct PassClosed<'a> {
    /// The input's status (the caller holds its lock).
    pub status: &'a mut InputStatus,
    /// Input name.
    pub input: &'a str,
    /// Pass id.
    pub pass: &'a str,
    /// The pass's decoder counters.
    pub stats: &'a decoder::Stats,
    /// Good frames the archive does not hold.
    pub frames_unarchived: u64,
}

impl InternalEvent for PassClosed<'_> {
    fn emit(self) {
        let (s, stats) = (self.status, self.stats);
        s.passes += 1;
        s.totals.frames_good += stats.frames.good;
        s.totals.frames_rejected += stats.frames.rejected.total();
        s.totals.rs_corrected += stats.rs.corrected;
        s.totals.rs_uncorrectable += stats.rs.uncorrectable;
        s.totals.packets += stats.packets.total;
        s.totals.frames_unarchived += self.frames_unarchived;
        if let Some(i) = &stats.inner {
            s.totals.channel_bits += i.channel_bits_compared;
            s.totals.channel_bit_errors += i.channel_bit_errors;
            s.totals.phase_reacquisitions += i.reacquisitions;
        }
        tracing::info!(
            input = self.input,
            pass = self.pass,
            frames = stats.frames.good,
            rejected = stats.frames.rejected.total(),
            packets = stats.packets.total,
            frames_not_archived = self.frames_unarchived,
            "LOS"
        );
    }
}

/// Archive writes of an input failed (`count` of one operation, [`super::ARCHIVE_OPS`]): counted,
/// and the `archive` health component is degraded until they work again.
pub struct ArchiveIoFailed<'a> {
    /// Process-wide state (counters, health).
    pub shared: &'a Shared,
    /// Input name.
    pub input: &'a str,
    /// The pass, when known.
    pub pass: Option<&'a str>,
    /// `create`, `write`, `sync` or `record`.
    pub op: &'static str,
    /// How many (0: nothing happens).
    pub count: u64,
    /// The (last) error.
    pub error: &'a str,
}

impl InternalEvent for ArchiveIoFailed<'_> {
    fn emit(self) {
        let (shared, input, op, error) = (self.shared, self.input, self.op, self.error);
        if self.count == 0 {
            return;
        }
        *shared
            .archive_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(op)
            .or_default() += self.count;
        shared
            .archive_failing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(input.to_owned());
        if shared.health.set(
            "archive",
            format!("input {input}: archive {op} failed: {error}"),
        ) {
            tracing::error!(input, op, error, "archive degraded: writes are failing");
        }
        let Some(failures) = throttled("archive_io_failed", &format!("{input}/{op}"), self.count)
        else {
            return;
        };
        let pass = self.pass.unwrap_or("-");
        match op {
            "create" => tracing::error!(input, pass, error, failures, "cannot create the pass archive: this pass's data will not be archived (its record will be)"),
            "record" => tracing::error!(input, pass, error, failures, "cannot write the pass record: kept in memory and retried (listed as archive incomplete)"),
            _ => tracing::error!(input, pass, op, error, failures, "archive write failed: data of this pass is not archived (further failures are counted, and logged at most every 10 s)"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Products

/// A pass's products were made (or were complete already) and catalogued.
pub struct ProductJobDone<'a> {
    /// The queue's counters (the caller holds their lock).
    pub status: &'a mut ProductsStatus,
    /// Pass id.
    pub pass: &'a str,
    /// Made now (false: complete already, catalogued only).
    pub made: bool,
    /// Products in the set.
    pub products: usize,
    /// Seconds the attempt took.
    pub seconds: f64,
    /// Attempt number.
    pub attempt: u32,
    /// The catalog item.
    pub item: Option<&'a str>,
    /// Geolocation QA of the set.
    pub qa: Option<&'a serde_json::Value>,
}

impl InternalEvent for ProductJobDone<'_> {
    fn emit(self) {
        tracing::info!(
            pass = self.pass,
            made = self.made,
            products = self.products,
            seconds = self.seconds,
            attempt = self.attempt,
            "products done"
        );
        self.status.ok += 1;
        self.status.last = Some(serde_json::json!({
            "pass": self.pass, "products": self.products, "made": self.made,
            "seconds": self.seconds, "attempt": self.attempt, "item": self.item,
            "geolocation_qa": self.qa,
        }));
    }
}

/// A product attempt failed and will be retried.
pub struct ProductJobRetry<'a> {
    /// The queue's counters.
    pub status: &'a mut ProductsStatus,
    /// Pass id.
    pub pass: &'a str,
    /// Why (`pass: error`).
    pub error: String,
    /// Attempt number.
    pub attempt: u32,
    /// Delay before the next one.
    pub retry_in: Duration,
}

impl InternalEvent for ProductJobRetry<'_> {
    fn emit(self) {
        tracing::warn!(pass = self.pass, error = %self.error, attempt = self.attempt, retry_in_s = self.retry_in.as_secs(), "products failed: will retry");
        self.status.retried += 1;
        self.status.last_error = Some(self.error);
    }
}

/// A product job given up (its record renamed `products.failed`).
pub struct ProductJobGivenUp<'a> {
    /// The queue's counters.
    pub status: &'a mut ProductsStatus,
    /// Pass id.
    pub pass: &'a str,
    /// Why (`pass: error`).
    pub error: String,
    /// Attempts made.
    pub attempts: u32,
}

impl InternalEvent for ProductJobGivenUp<'_> {
    fn emit(self) {
        tracing::error!(pass = self.pass, error = %self.error, attempts = self.attempts, "products failed: given up (see products.failed in the pass directory)");
        self.status.failed += 1;
        self.status.last_error = Some(self.error);
    }
}

/// A product job record that cannot be read: given up (renamed `products.failed`).
pub struct ProductJobUnreadable<'a> {
    /// The queue's counters.
    pub status: &'a mut ProductsStatus,
    /// The pass directory.
    pub dir: &'a std::path::Path,
    /// Why.
    pub error: String,
}

impl InternalEvent for ProductJobUnreadable<'_> {
    fn emit(self) {
        tracing::error!(dir = %self.dir.display(), error = %self.error, "product job record unreadable: given up");
        self.status.failed += 1;
        self.status.last_error = Some(self.error);
    }
}

/// A pass submitted while the product queue was full: its job record waits on disk.
pub struct ProductJobDeferred<'a> {
    /// The queue's counters.
    pub status: &'a mut ProductsStatus,
    /// Pass id.
    pub pass: &'a str,
}

impl InternalEvent for ProductJobDeferred<'_> {
    fn emit(self) {
        self.status.deferred += 1;
        tracing::warn!(
            pass = self.pass,
            "product queue full: the pass waits on disk for the worker"
        );
    }
}

/// A pass submitted while the product queue was full, whose job record could not be written:
/// no products for it.
pub struct ProductJobDropped<'a> {
    /// The queue's counters.
    pub status: &'a mut ProductsStatus,
    /// Pass id.
    pub pass: &'a str,
}

impl InternalEvent for ProductJobDropped<'_> {
    fn emit(self) {
        self.status.dropped += 1;
        tracing::error!(pass = self.pass, "product queue full and no job record: no products for this pass (make them with `downlink image`)");
    }
}

/// A product set was made but the catalog refused it (the attempt is retried or given up).
pub struct ProductCatalogFailed<'a> {
    /// The queue's counters.
    pub status: &'a mut ProductsStatus,
    /// Pass id.
    pub pass: &'a str,
}

impl InternalEvent for ProductCatalogFailed<'_> {
    fn emit(self) {
        self.status.catalog_failed += 1;
        tracing::debug!(pass = self.pass, "products made but not catalogued");
    }
}

/// The product worker took up jobs from the archive (and, at start, removed what interrupted
/// jobs left).
pub struct ProductJobsTakenUp<'a> {
    /// The queue's counters.
    pub status: &'a mut ProductsStatus,
    /// Leftovers removed.
    pub cleaned: u64,
    /// Job records taken up.
    pub recovered: u64,
}

impl InternalEvent for ProductJobsTakenUp<'_> {
    fn emit(self) {
        let (cleaned, recovered) = (self.cleaned, self.recovered);
        if cleaned > 0 || recovered > 0 {
            tracing::info!(cleaned, recovered, "product jobs taken up from the archive");
        }
        self.status.cleaned += cleaned;
        self.status.recovered += recovered;
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// A webhook delivery answered 2xx.
pub struct WebhookDelivered<'a> {
    /// Delivery counters.
    pub counters: &'a DeliveryCounters,
    /// The redacted URL.
    pub webhook: &'a str,
    /// `aos`, `los`, …
    pub event: &'static str,
    /// HTTP status.
    pub status: u16,
    /// 1 or 2 (the retry).
    pub attempt: u32,
}

impl InternalEvent for WebhookDelivered<'_> {
    fn emit(self) {
        bump(&self.counters.sent, 1);
        tracing::debug!(
            webhook = self.webhook,
            event = self.event,
            status = self.status,
            attempt = self.attempt,
            "webhook delivered"
        );
    }
}

/// A webhook delivery failed (twice, or could not be attempted).
pub struct WebhookFailed<'a> {
    /// Delivery counters.
    pub counters: &'a DeliveryCounters,
    /// The redacted URL.
    pub webhook: &'a str,
    /// `aos`, `los`, …
    pub event: &'static str,
    /// Why.
    pub reason: &'a str,
}

impl InternalEvent for WebhookFailed<'_> {
    fn emit(self) {
        bump(&self.counters.failed, 1);
        if let Some(failed) = throttled("webhook_failed", self.webhook, 1) {
            tracing::warn!(
                webhook = self.webhook,
                event = self.event,
                reason = self.reason,
                failed,
                "webhook delivery failed"
            );
        }
    }
}

/// A webhook delivery not attempted: the webhook had `MAX_IN_FLIGHT` in flight.
pub struct WebhookDropped<'a> {
    /// Delivery counters.
    pub counters: &'a DeliveryCounters,
    /// The redacted URL.
    pub webhook: &'a str,
    /// `aos`, `los`, …
    pub event: &'static str,
}

impl InternalEvent for WebhookDropped<'_> {
    fn emit(self) {
        bump(&self.counters.dropped, 1);
        if let Some(dropped) = throttled("webhook_dropped", self.webhook, 1) {
            tracing::warn!(
                webhook = self.webhook,
                event = self.event,
                limit = super::webhook::MAX_IN_FLIGHT,
                dropped,
                "webhook delivery dropped: too many in flight"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// An HTTP connection accepted.
pub struct HttpConnectionAccepted<'a> {
    /// The server's counters.
    pub stats: &'a HttpStats,
}

impl InternalEvent for HttpConnectionAccepted<'_> {
    fn emit(self) {
        bump(&self.stats.accepted, 1);
        tracing::trace!("http connection accepted");
    }
}

/// An idle HTTP connection closed to make room for a new one at the cap.
pub struct HttpConnectionEvicted<'a> {
    /// The server's counters.
    pub stats: &'a HttpStats,
    /// The connection cap.
    pub cap: usize,
}

impl InternalEvent for HttpConnectionEvicted<'_> {
    fn emit(self) {
        bump(&self.stats.evicted, 1);
        if let Some(evicted) = throttled("http_connection_evicted", "", 1) {
            tracing::warn!(
                evicted,
                cap = self.cap,
                "http: at the connection cap; idle connections closed to make room"
            );
        }
    }
}

/// A new HTTP connection closed at once: every connection has a request in progress.
pub struct HttpConnectionRefused<'a> {
    /// The server's counters.
    pub stats: &'a HttpStats,
    /// The connection cap.
    pub cap: usize,
}

impl InternalEvent for HttpConnectionRefused<'_> {
    fn emit(self) {
        self.stats.refused(Refuse::Cap);
        if let Some(refused) = throttled("http_connection_refused", "", 1) {
            tracing::warn!(
                refused,
                cap = self.cap,
                "http: every connection has a request in progress; new connections are closed at once"
            );
        }
    }
}

/// `accept` failed: a network error of one pending connection, or (`backing_off`) a lack of
/// descriptors or memory that makes the loop pause.
pub struct HttpAcceptFailed<'a> {
    /// The server's counters.
    pub stats: &'a HttpStats,
    /// `Emfile` or `Error`.
    pub reason: Refuse,
    /// The accept loop pauses.
    pub backing_off: bool,
    /// The error.
    pub error: &'a std::io::Error,
}

impl InternalEvent for HttpAcceptFailed<'_> {
    fn emit(self) {
        self.stats.refused(self.reason);
        let error = self.error;
        if !self.backing_off {
            tracing::debug!(%error, "http accept");
        } else if let Some(failures) = throttled("http_accept_failed", "", 1) {
            tracing::error!(%error, failures, "http accept failed; backing off");
        }
    }
}

/// A request answered 503: `http.max_concurrency` requests were in progress.
pub struct HttpRequestShed<'a> {
    /// The server's counters.
    pub stats: &'a HttpStats,
}

impl InternalEvent for HttpRequestShed<'_> {
    fn emit(self) {
        bump(&self.stats.shed, 1);
        if let Some(shed) = throttled("http_request_shed", "", 1) {
            tracing::warn!(
                shed,
                "http: http.max_concurrency requests in progress; requests answered 503"
            );
        }
    }
}

/// An HTTP connection or request body timed out.
pub struct HttpTimedOut<'a> {
    /// The server's counters.
    pub stats: &'a HttpStats,
    /// What timed out.
    pub kind: Timeout,
}

impl InternalEvent for HttpTimedOut<'_> {
    fn emit(self) {
        let kind = self.kind.as_str();
        self.stats.timed_out(self.kind);
        tracing::debug!(kind, "http timeout");
    }
}

/// A WMS request answered with a service exception.
pub struct WmsException<'a> {
    /// Process-wide state.
    pub shared: &'a Shared,
    /// The exception code ([`super::wms::WMS_EXCEPTION_CODES`]).
    pub code: &'static str,
    /// What the client is told.
    pub text: &'a str,
}

impl InternalEvent for WmsException<'_> {
    fn emit(self) {
        *self
            .shared
            .wms_exceptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(self.code)
            .or_insert(0) += 1;
        tracing::debug!(code = self.code, text = self.text, "wms service exception");
    }
}

/// A tile request answered 503: the render queue was full.
pub struct TileRenderBusy<'a> {
    /// Process-wide state.
    pub shared: &'a Shared,
}

impl InternalEvent for TileRenderBusy<'_> {
    fn emit(self) {
        bump(&self.shared.tiles_busy, 1);
        if let Some(refused) = throttled("tile_render_busy", "", 1) {
            tracing::warn!(
                refused,
                "tile renderers busy: tile requests answered 503 with Retry-After"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration reloads and alerts

/// SIGHUP: the new configuration applied.
pub struct ConfigReloaded<'a> {
    /// The reload counters (the caller holds their lock).
    pub reloads: &'a mut Reloads,
}

impl InternalEvent for ConfigReloaded<'_> {
    fn emit(self) {
        let r = self.reloads;
        r.ok += 1;
        r.generation += 1;
        r.last = Some(serde_json::json!({"ok": true, "generation": r.generation}));
        tracing::info!(generation = r.generation, "SIGHUP: configuration reloaded");
    }
}

/// SIGHUP: the new configuration refused; the running one stays.
pub struct ConfigReloadRefused<'a> {
    /// The reload counters.
    pub reloads: &'a mut Reloads,
    /// Why.
    pub error: String,
}

impl InternalEvent for ConfigReloadRefused<'_> {
    fn emit(self) {
        let r = self.reloads;
        r.failed += 1;
        tracing::error!(error = %self.error, "SIGHUP: reload refused; the running configuration stays");
        r.last = Some(serde_json::json!({"ok": false, "error": self.error}));
    }
}

/// A change-alert run published its alerts item.
pub struct AlertRunPublished<'a> {
    /// The collection's status (the caller holds its lock).
    pub status: &'a mut CollectionStatus,
    /// The watched collection.
    pub collection: &'a str,
    /// The alerts item.
    pub item: &'a str,
    /// Alerts by confidence.
    pub counts: &'a BTreeMap<&'static str, usize>,
}

impl InternalEvent for AlertRunPublished<'_> {
    fn emit(self) {
        let n = |k: &str| self.counts.get(k).copied().unwrap_or(0);
        tracing::info!(
            collection = self.collection,
            item = self.item,
            low = n("low"),
            high = n("high"),
            contradicted = n("contradicted"),
            "change alerts published"
        );
        let st = self.status;
        st.runs += 1;
        st.last_item = Some(self.item.to_owned());
        st.last_counts = Some(self.counts.clone());
        st.last_error = None;
    }
}

/// A change-alert run published nothing (logged once per change of the collection: the
/// watcher runs again only then).
pub struct AlertRunFailed<'a> {
    /// The collection's status.
    pub status: &'a mut CollectionStatus,
    /// The watched collection.
    pub collection: &'a str,
    /// Why (bounded).
    pub reason: crate::alerts::FailReason,
    /// What happened.
    pub error: String,
}

impl InternalEvent for AlertRunFailed<'_> {
    fn emit(self) {
        let reason = self.reason.as_str();
        tracing::error!(collection = self.collection, reason, error = %self.error, "change alerts not published");
        *self.status.failures.entry(reason).or_default() += 1;
        self.status.last_error = Some(self.error);
    }
}

// ---------------------------------------------------------------------------------------------
// Object store uploads

/// Every file of a pass is in the object store, verified, and the pass marked uploaded.
pub struct PassUploaded<'a> {
    /// The uploader's counters (the caller holds their lock).
    pub status: &'a mut UploadStatus,
    /// Pass id.
    pub pass: &'a str,
    /// Objects uploaded by this attempt (earlier attempts may have sent others).
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Seconds the attempt took.
    pub seconds: f64,
}

impl InternalEvent for PassUploaded<'_> {
    fn emit(self) {
        tracing::info!(
            pass = self.pass,
            objects = self.objects,
            bytes = self.bytes,
            seconds = self.seconds,
            "pass uploaded to the store"
        );
        self.status.uploaded_passes += 1;
        self.status.last = Some(serde_json::json!({
            "pass": self.pass, "objects": self.objects, "bytes": self.bytes,
            "seconds": self.seconds,
        }));
    }
}

/// An upload attempt failed; the pass stays queued and is retried after `retry_in`.
pub struct UploadFailed<'a> {
    /// The uploader's counters.
    pub status: &'a mut UploadStatus,
    /// The store.
    pub store: &'a str,
    /// Pass id.
    pub pass: &'a str,
    /// One of [`super::upload::FAILURE_REASONS`].
    pub reason: &'static str,
    /// What happened.
    pub error: String,
    /// Wait before the next attempt.
    pub retry_in: Duration,
    /// The `store` health component was healthy until now.
    pub newly_degraded: bool,
}

impl InternalEvent for UploadFailed<'_> {
    fn emit(self) {
        let (pass, reason, error) = (self.pass, self.reason, &self.error);
        let retry_in_s = self.retry_in.as_secs();
        if self.newly_degraded {
            tracing::error!(store = self.store, pass, reason, error = %error, retry_in_s, "upload to the store failed: passes wait in the local archive and are retried");
        } else if let Some(failures) = throttled("upload_failed", reason, 1) {
            tracing::warn!(store = self.store, pass, reason, error = %error, retry_in_s, failures, "upload to the store failed again (logged at most every 10 s)");
        }
        *self.status.failures.entry(reason).or_default() += 1;
        self.status.last_error = Some(self.error);
    }
}

/// Closed passes found not uploaded yet (at start, or by a rescan of the archive).
pub struct UploadsTakenUp<'a> {
    /// The uploader's counters.
    pub status: &'a mut UploadStatus,
    /// The store.
    pub store: &'a str,
    /// Passes queued.
    pub passes: u64,
    /// Their bytes not yet in the store.
    pub bytes: u64,
}

impl InternalEvent for UploadsTakenUp<'_> {
    fn emit(self) {
        tracing::info!(
            store = self.store,
            passes = self.passes,
            bytes = self.bytes,
            "uploads taken up from the archive"
        );
        self.status.taken_up += self.passes;
    }
}

/// The store accepts uploads again after failures.
pub struct StoreRecovered<'a> {
    /// The store.
    pub store: &'a str,
}

impl InternalEvent for StoreRecovered<'_> {
    fn emit(self) {
        tracing::info!(
            store = self.store,
            "object store reachable again: uploads resume"
        );
    }
}

/// A read of an asset or tile source from the object store failed; the request was
/// answered 503.
pub struct StoreReadFailed<'a> {
    /// The readers' counters.
    pub status: &'a mut ReadStatus,
    /// The store.
    pub store: &'a str,
    /// The archive-relative path (or GDAL path) read.
    pub what: &'a str,
    /// One of [`super::store_read::READ_FAILURE_REASONS`].
    pub reason: &'static str,
    /// What happened.
    pub error: String,
    /// The `store` health component was healthy until now.
    pub newly_degraded: bool,
}

impl InternalEvent for StoreReadFailed<'_> {
    fn emit(self) {
        let (what, reason, error) = (self.what, self.reason, &self.error);
        if self.newly_degraded {
            tracing::error!(store = self.store, what, reason, error = %error, "reading from the object store failed: assets and tiles of passes not in the local archive answer 503");
        } else if let Some(failures) = throttled("store_read_failed", reason, 1) {
            tracing::warn!(store = self.store, what, reason, error = %error, failures, "reading from the object store failed again (logged at most every 10 s)");
        }
        *self.status.failures.entry(reason).or_default() += 1;
        self.status.last_error = Some(self.error);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    /// Runs `f` with a subscriber that writes every log line (TRACE and up) into a buffer;
    /// returns the text.
    fn logged(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text
    }

    /// An input's state (the embedded default input; the name only labels the log lines).
    fn input() -> InputState {
        let cfg =
            crate::config::Config::embedded_default(std::path::Path::new("/nonexistent")).unwrap();
        InputState::new(&cfg.input[0], Instant::now())
    }

    #[test]
    fn a_drop_counts_once_and_logs_once_per_period_with_the_count() {
        let st = input();
        let text = logged(|| {
            for _ in 0..3 {
                emit(DatagramsDropped {
                    input: &st,
                    name: "drops-a",
                    reason: DropReason::QueueFull,
                    count: 5,
                });
            }
            // Nothing dropped: nothing counted, nothing logged.
            emit(DatagramsDropped {
                input: &st,
                name: "drops-a",
                reason: DropReason::Truncated,
                count: 0,
            });
        });
        let drops = st.with(|s| s.drops.clone());
        assert_eq!(drops[&DropReason::QueueFull], 15);
        assert_eq!(drops[&DropReason::Truncated], 0);
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("queue full")).collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(
            lines[0].contains("ERROR") && lines[0].contains("dropped=5"),
            "{text}"
        );
        assert!(lines[0].contains("input=\"drops-a\""), "{text}");
        assert!(!text.contains("max_datagram"), "{text}");
    }

    #[test]
    fn each_event_bumps_its_counter_exactly_once_and_logs() {
        let st = input();
        let stats = HttpStats::default();
        let counters = DeliveryCounters::default();
        let mut reloads = Reloads::default();
        let mut products = ProductsStatus::default();
        let text = logged(|| {
            emit(DatagramsReceived {
                input: &st,
                name: "events-b",
                count: 2,
                bytes: 100,
            });
            emit(InputReconnecting {
                input: &st,
                name: "events-b",
                target: "127.0.0.1:9",
                cause: ReconnectCause::Ended,
            });
            emit(HttpConnectionRefused {
                stats: &stats,
                cap: 4,
            });
            emit(HttpRequestShed { stats: &stats });
            emit(WebhookDropped {
                counters: &counters,
                webhook: "http://127.0.0.1:1/events-b",
                event: "los",
            });
            emit(ConfigReloaded {
                reloads: &mut reloads,
            });
            emit(ConfigReloadRefused {
                reloads: &mut reloads,
                error: "bad".into(),
            });
            emit(ProductJobDeferred {
                status: &mut products,
                pass: "p1",
            });
        });
        let s = st.with(|s| s.clone());
        assert_eq!((s.datagrams, s.bytes, s.reconnects), (2, 100, 1));
        let h = stats.snapshot();
        assert_eq!(h.refused["cap"], 1);
        assert_eq!(h.requests_shed, 1);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(counters.sent.load(Ordering::Relaxed), 0);
        assert_eq!((reloads.ok, reloads.failed, reloads.generation), (1, 1, 1));
        assert_eq!(reloads.last.unwrap()["ok"], false);
        assert_eq!((products.deferred, products.dropped), (1, 0));
        for line in [
            "received",
            "connection ended; reconnecting",
            "new connections are closed at once",
            "requests answered 503",
            "too many in flight",
            "SIGHUP: configuration reloaded",
            "SIGHUP: reload refused",
            "the pass waits on disk",
        ] {
            assert_eq!(text.matches(line).count(), 1, "{line}: {text}");
        }
    }

    #[test]
    fn connect_failures_are_counted_each_and_logged_at_powers_of_two() {
        let st = input();
        let text = logged(|| {
            for attempts in 1..=5 {
                emit(InputReconnecting {
                    input: &st,
                    name: "events-c",
                    target: "127.0.0.1:9",
                    cause: ReconnectCause::ConnectFailed { attempts },
                });
            }
        });
        assert_eq!(st.with(|s| s.reconnects), 5);
        assert_eq!(
            text.matches("cannot connect; retrying").count(),
            3,
            "{text}"
        );
    }

    #[test]
    fn throttle_lets_one_line_through_per_period_with_the_count() {
        let mut t = Throttle::new(Duration::from_millis(200));
        assert_eq!(t.hit(1), Some(1));
        assert_eq!(t.hit(1), None);
        assert_eq!(t.hit(2), None);
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.hit(1), Some(4));
    }
}
