//! Optional outgoing webhooks: an HTTP `POST` of a small JSON document when a pass starts (AOS),
//! ends (LOS) and when its pass record has been written.
//!
//! This is daemon-side glue, not a CCSDS protocol implementation: the request is plain
//! HTTP/1.1 (RFC 9112) written by hand over [`tokio::net::TcpStream`], so no HTTP-client crate is
//! needed. Only `http://` targets are supported; `https://` webhooks are accepted in the config,
//! warned about once at construction, and every delivery to them is counted as failed
//! (reason `https_unsupported`).
//!
//! [`Webhooks::notify`] never blocks and may be called from any thread: it spawns one delivery
//! task per subscribed webhook onto the runtime given to [`Webhooks::new`]. Each webhook has at
//! most [`MAX_IN_FLIGHT`] deliveries in flight (including the wait before the retry); beyond that
//! the delivery is dropped and counted. A delivery is one attempt plus, on failure, one retry
//! after [`RETRY_DELAY`]; each attempt (connect, write, read status line) is bounded by the
//! webhook's `timeout`.
//!
//! Logs never contain a URL's query string or fragment (it may carry a token): only
//! `scheme://host[:port]/path`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::config::{WebhookConfig, WebhookEvent};

/// Most deliveries in flight per webhook; further notifications are dropped (and counted).
pub const MAX_IN_FLIGHT: usize = 64;
/// Delay before the single retry of a failed delivery.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Value of the `User-Agent` request header.
const USER_AGENT: &str = "downlink";
/// Longest status line we are willing to read.
const MAX_STATUS_LINE: usize = 1024;

/// Delivery counters, summed over all webhooks. Each `notify` that targets a webhook ends up in
/// exactly one of the three (once its delivery has finished).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Deliveries answered with a 2xx status (on the first attempt or on the retry).
    pub sent: u64,
    /// Deliveries that failed twice, or could not be attempted (https, bad URL).
    pub failed: u64,
    /// Deliveries not attempted because the webhook already had [`MAX_IN_FLIGHT`] in flight.
    pub dropped: u64,
}

/// Set of configured webhooks. Cheap to clone (shares state); `Send + Sync`.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .inner
            .hooks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|h| h.log_name.clone())
            .collect();
        f.debug_struct("Webhooks")
            .field("hooks", &names)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    hooks: std::sync::RwLock<Vec<Arc<Hook>>>,
    rt: tokio::runtime::Handle,
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Deliveries in flight over all webhooks, for `flush`.
    pending: Mutex<usize>,
    idle: Condvar,
}

struct Hook {
    /// Where to deliver, or why we cannot.
    target: Result<Target, &'static str>,
    events: Vec<WebhookEvent>,
    timeout: Duration,
    in_flight: AtomicUsize,
    /// `scheme://host[:port]/path`, safe to log.
    log_name: String,
}

/// A parsed `http://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    /// Host as given to `connect` (IPv6 literals without brackets).
    host: String,
    port: u16,
    /// Value of the `Host` header (`host` or `host:port`, brackets kept).
    host_header: String,
    /// Request target: path plus query, never empty.
    path_and_query: String,
}

fn build_hooks(cfgs: &[WebhookConfig]) -> Vec<Arc<Hook>> {
    cfgs.iter()
        .map(|cfg| {
            let target = parse_url(&cfg.url);
            let log_name = safe_log_name(&cfg.url);
            if let Err(reason) = target {
                tracing::warn!(
                    webhook = %log_name,
                    reason,
                    "webhook cannot be delivered; every notification to it will count as failed"
                );
            }
            Arc::new(Hook {
                target,
                events: cfg.events.clone(),
                timeout: cfg.timeout,
                in_flight: AtomicUsize::new(0),
                log_name,
            })
        })
        .collect()
}

impl Webhooks {
    /// Replaces the set of webhooks (SIGHUP reload); counters and deliveries in flight carry on.
    pub fn reconfigure(&self, cfgs: &[WebhookConfig]) {
        *self
            .inner
            .hooks
            .write()
            .unwrap_or_else(PoisonError::into_inner) = build_hooks(cfgs);
    }

    /// Builds the webhook set. Deliveries run on `rt`. Logs one warning per `https://` (or
    /// otherwise unusable) webhook; deliveries to those are counted as failed.
    pub fn new(cfgs: &[WebhookConfig], rt: tokio::runtime::Handle) -> Webhooks {
        let hooks = std::sync::RwLock::new(build_hooks(cfgs));
        Webhooks {
            inner: Arc::new(Inner {
                hooks,
                rt,
                sent: AtomicU64::new(0),
                failed: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                pending: Mutex::new(0),
                idle: Condvar::new(),
            }),
        }
    }

    /// Non-blocking, callable from any thread (async or not): queues one POST per webhook
    /// subscribed to `event`. Body:
    /// `{"event": "aos"|"los"|"pass_record", "sent_at": <unix ms>, "data": payload}`.
    /// A webhook with [`MAX_IN_FLIGHT`] deliveries in flight drops this one (counted).
    #[allow(clippy::needless_pass_by_value)] // the caller hands the payload over; it is serialized once
    pub fn notify(&self, event: WebhookEvent, payload: serde_json::Value) {
        let inner = &self.inner;
        let hooks = inner
            .hooks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut subscribed = hooks.iter().filter(|h| h.events.contains(&event));
        let Some(first) = subscribed.next() else {
            return;
        };
        let sent_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let doc = serde_json::json!({
            "event": event.as_str(),
            "sent_at": sent_at,
            "data": payload,
        });
        let body: Option<Arc<[u8]>> = serde_json::to_vec(&doc).ok().map(Arc::from);
        for hook in std::iter::once(first).chain(subscribed) {
            self.dispatch(hook, event, body.as_ref());
        }
    }

    fn dispatch(&self, hook: &Arc<Hook>, event: WebhookEvent, body: Option<&Arc<[u8]>>) {
        let inner = &self.inner;
        let (target, body) = match (&hook.target, body) {
            (Ok(t), Some(b)) => (t.clone(), Arc::clone(b)),
            (Err(reason), _) => {
                inner.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(webhook = %hook.log_name, event = event.as_str(), reason, "webhook delivery failed");
                return;
            }
            (Ok(_), None) => {
                inner.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(webhook = %hook.log_name, event = event.as_str(), reason = "serialize", "webhook delivery failed");
                return;
            }
        };
        let reserved = hook
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .is_ok();
        if !reserved {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                webhook = %hook.log_name,
                event = event.as_str(),
                limit = MAX_IN_FLIGHT,
                "webhook delivery dropped: too many in flight"
            );
            return;
        }
        *inner.pending.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        let guard = InFlight {
            inner: Arc::clone(inner),
            hook: Arc::clone(hook),
            done: false,
        };
        // If the runtime is shutting down the future is dropped unpolled; the guard then
        // counts the delivery as failed and releases its slot.
        drop(inner.rt.spawn(deliver(guard, target, body, event)));
    }

    /// Current counters (summed over all webhooks).
    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            sent: self.inner.sent.load(Ordering::Relaxed),
            failed: self.inner.failed.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
        }
    }

    /// Blocks the calling thread until every delivery in flight has finished, or `deadline` has
    /// passed (then logs how many are still pending). For shutdown; do not call it from inside an
    /// async task (it would block a runtime worker).
    pub fn flush(&self, deadline: Duration) {
        let end = Instant::now().checked_add(deadline);
        let mut pending = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *pending > 0 {
            let left = match end {
                Some(end) => end.saturating_duration_since(Instant::now()),
                None => deadline, // absurdly long deadline: just wait in big steps
            };
            if left.is_zero() {
                tracing::warn!(
                    pending = *pending,
                    "webhook flush deadline passed with deliveries still in flight"
                );
                return;
            }
            pending = self
                .inner
                .idle
                .wait_timeout(pending, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// One delivery's claim on its webhook's in-flight slot and on the global pending count.
/// Releasing happens in `Drop` so a cancelled task (runtime shutdown) still releases both.
struct InFlight {
    inner: Arc<Inner>,
    hook: Arc<Hook>,
    done: bool,
}

impl InFlight {
    fn finish(mut self, ok: bool) {
        let counter = if ok {
            &self.inner.sent
        } else {
            &self.inner.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.inner.failed.fetch_add(1, Ordering::Relaxed);
        }
        self.hook.in_flight.fetch_sub(1, Ordering::AcqRel);
        let mut pending = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *pending = pending.saturating_sub(1);
        if *pending == 0 {
            self.inner.idle.notify_all();
        }
    }
}

async fn deliver(guard: InFlight, target: Target, body: Arc<[u8]>, event: WebhookEvent) {
    let timeout = guard.hook.timeout;
    let request = build_request(&target, &body);
    let mut last_err = String::new();
    for attempt in 1..=2u32 {
        if attempt > 1 {
            tokio::time::sleep(RETRY_DELAY).await;
        }
        let outcome = match tokio::time::timeout(timeout, exchange(&target, &request)).await {
            Ok(Ok(status)) if (200..300).contains(&status) => {
                tracing::debug!(webhook = %guard.hook.log_name, event = event.as_str(), status, attempt, "webhook delivered");
                guard.finish(true);
                return;
            }
            Ok(Ok(status)) => format!("HTTP status {status}"),
            Ok(Err(e)) => e,
            Err(_) => format!("timed out after {timeout:?}"),
        };
        tracing::debug!(webhook = %guard.hook.log_name, event = event.as_str(), attempt, reason = %outcome, "webhook attempt failed");
        last_err = outcome;
    }
    tracing::warn!(
        webhook = %guard.hook.log_name,
        event = event.as_str(),
        reason = %last_err,
        "webhook delivery failed after retry"
    );
    guard.finish(false);
}

fn build_request(target: &Target, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        target.path_and_query,
        target.host_header,
        body.len()
    );
    let mut req = Vec::with_capacity(head.len() + body.len());
    req.extend_from_slice(head.as_bytes());
    req.extend_from_slice(body);
    req
}

/// One attempt: connect, send, read the status line. Returns the status code.
async fn exchange(target: &Target, request: &[u8]) -> Result<u16, String> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.flush().await.map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; MAX_STATUS_LINE];
    let mut len = 0;
    loop {
        let Some(free) = buf.get_mut(len..) else {
            return Err("status line too long".into());
        };
        if free.is_empty() {
            return Err("status line too long".into());
        }
        let n = stream.read(free).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed before status line".into());
        }
        let scanned = len;
        len += n;
        let got = buf.get(..len).unwrap_or_default();
        if let Some(pos) = got.iter().skip(scanned).position(|&b| b == b'\n') {
            let line = got.get(..scanned + pos).unwrap_or_default();
            return parse_status_line(line).ok_or_else(|| "malformed status line".into());
        }
    }
}

/// Parses `HTTP/1.x NNN reason` (trailing `\r` allowed) into `NNN`.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    code.parse().ok()
}

/// Splits `scheme://rest` case-insensitively; returns (lower-case scheme, rest).
fn split_scheme(url: &str) -> Option<(&'static str, &str)> {
    for scheme in ["http", "https"] {
        let prefix_len = scheme.len() + 3;
        if let (Some(head), Some(rest)) = (url.get(..prefix_len), url.get(prefix_len..)) {
            if head.eq_ignore_ascii_case(&format!("{scheme}://")) {
                return Some((scheme, rest));
            }
        }
    }
    None
}

/// Splits `authority/path?query#frag` into (authority, path_and_query, path).
fn split_rest(rest: &str) -> (&str, String, &str) {
    let rest = rest.split('#').next().unwrap_or_default();
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at_checked(auth_end).unwrap_or((rest, ""));
    let path_and_query = if tail.starts_with('/') {
        tail.to_owned()
    } else {
        format!("/{tail}")
    };
    let path = tail.split('?').next().unwrap_or_default();
    (authority, path_and_query, path)
}

fn parse_url(url: &str) -> Result<Target, &'static str> {
    let (scheme, rest) = split_scheme(url.trim()).ok_or("invalid_url")?;
    if scheme == "https" {
        return Err("https_unsupported");
    }
    let (authority, path_and_query, _) = split_rest(rest);
    if authority.contains('@') {
        return Err("userinfo_unsupported");
    }
    if path_and_query
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("invalid_url");
    }
    let (host, port_str) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or("invalid_url")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("invalid_url")?),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty()
        || host
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || b == b'/')
    {
        return Err("invalid_url");
    }
    let port = match port_str {
        None | Some("") => 80,
        Some(p) => p.parse::<u16>().map_err(|_| "invalid_url")?,
    };
    if port == 0 {
        return Err("invalid_url");
    }
    let host_header = match (host.contains(':'), port) {
        (true, 80) => format!("[{host}]"),
        (true, _) => format!("[{host}]:{port}"),
        (false, 80) => host.to_owned(),
        (false, _) => format!("{host}:{port}"),
    };
    Ok(Target {
        host: host.to_owned(),
        port,
        host_header,
        path_and_query,
    })
}

/// `scheme://authority/path` with userinfo, query and fragment removed: safe to log.
fn safe_log_name(url: &str) -> String {
    let url = url.trim();
    let Some((scheme, rest)) = split_scheme(url) else {
        // Not a URL we understand; log only a coarse hint, never the raw text.
        return "<invalid url>".to_owned();
    };
    let (authority, _, path) = split_rest(rest);
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let path = if path.is_empty() { "/" } else { path };
    format!("{scheme}://{authority}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::net::{TcpListener, TcpStream as StdStream};
    use std::sync::mpsc;
    use std::thread;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn cfg(url: String, events: &[WebhookEvent], timeout_ms: u64) -> WebhookConfig {
        WebhookConfig {
            url,
            events: events.to_vec(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    #[derive(Debug)]
    struct Request {
        request_line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Request {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn read_request(s: &mut StdStream) -> Request {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "eof before end of headers");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap().to_owned();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut req = Request {
            request_line,
            headers,
            body: buf[head_end + 4..].to_vec(),
        };
        let len: usize = req.header("content-length").unwrap().parse().unwrap();
        while req.body.len() < len {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "eof before end of body");
            req.body.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(req.body.len(), len, "body longer than Content-Length");
        req
    }

    /// Receiver on 127.0.0.1 answering `n` requests with `status`; requests come back on the channel.
    fn receiver(status: &'static str, n: usize) -> (u16, mpsc::Receiver<Request>, TcpListener) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let l2 = listener.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for _ in 0..n {
                let (mut s, _) = l2.accept().unwrap();
                let req = read_request(&mut s);
                let resp =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                s.write_all(resp.as_bytes()).unwrap();
                tx.send(req).unwrap();
            }
        });
        (port, rx, listener)
    }

    /// Asserts nobody connected to `listener` (beyond what was already accepted).
    fn assert_no_connection(listener: &TcpListener) {
        listener.set_nonblocking(true).unwrap();
        match listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept error {e}"),
            Ok((_, peer)) => panic!("unexpected connection from {peer}"),
        }
    }

    #[test]
    fn delivers_json_post_and_counts_sent() {
        let rt = runtime();
        let (port, rx, _l) = receiver("204 No Content", 1);
        let url = format!("http://127.0.0.1:{port}/hooks/pass?token=s3cret");
        let hooks = Webhooks::new(
            &[cfg(url, &[WebhookEvent::Aos, WebhookEvent::Los], 2000)],
            rt.handle().clone(),
        );
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let payload = serde_json::json!({"satellite": "NOAA-19", "norad": 33591, "elev": [1.5, 2]});
        hooks.notify(WebhookEvent::Aos, payload.clone());
        hooks.flush(Duration::from_secs(5));
        assert_eq!(
            hooks.stats(),
            WebhookStats {
                sent: 1,
                failed: 0,
                dropped: 0
            }
        );

        let req = rx.recv_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!(req.request_line, "POST /hooks/pass?token=s3cret HTTP/1.1");
        assert_eq!(
            req.header("host"),
            Some(format!("127.0.0.1:{port}").as_str())
        );
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(req.header("user-agent"), Some("downlink"));
        assert_eq!(req.header("connection"), Some("close"));
        let doc: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(doc["event"], "aos");
        assert_eq!(doc["data"], payload);
        let sent_at = doc["sent_at"].as_u64().unwrap();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(
            (before..=after).contains(&sent_at),
            "{before} <= {sent_at} <= {after}"
        );
        assert_eq!(doc.as_object().unwrap().len(), 3);
    }

    #[test]
    fn server_error_is_retried_once_then_failed() {
        let rt = runtime();
        let (port, rx, listener) = receiver("500 Internal Server Error", 2);
        let url = format!("http://127.0.0.1:{port}/x");
        let hooks = Webhooks::new(&[cfg(url, &[WebhookEvent::Los], 2000)], rt.handle().clone());
        let t0 = Instant::now();
        hooks.notify(WebhookEvent::Los, serde_json::json!(null));
        hooks.flush(Duration::from_secs(5));
        assert!(
            t0.elapsed() >= RETRY_DELAY,
            "retry must wait {RETRY_DELAY:?}"
        );
        assert_eq!(
            hooks.stats(),
            WebhookStats {
                sent: 0,
                failed: 1,
                dropped: 0
            }
        );
        for _ in 0..2 {
            let req = rx.recv_timeout(Duration::from_secs(1)).unwrap();
            let doc: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(doc["event"], "los");
        }
        assert_no_connection(&listener); // no third attempt
    }

    #[test]
    fn unsubscribed_event_sends_nothing() {
        let rt = runtime();
        let (port, rx, _l) = receiver("200 OK", 1);
        let url = format!("http://127.0.0.1:{port}/");
        let hooks = Webhooks::new(
            &[cfg(url, &[WebhookEvent::PassRecord], 2000)],
            rt.handle().clone(),
        );
        hooks.notify(WebhookEvent::Aos, serde_json::json!({"a": 1}));
        hooks.notify(WebhookEvent::Los, serde_json::json!({"a": 2}));
        hooks.flush(Duration::from_secs(5));
        assert_eq!(hooks.stats(), WebhookStats::default());
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        // The subscribed event does go through on the same receiver.
        hooks.notify(WebhookEvent::PassRecord, serde_json::json!({"a": 3}));
        hooks.flush(Duration::from_secs(5));
        let req = rx.recv_timeout(Duration::from_secs(1)).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(doc["event"], "pass_record");
        assert_eq!(doc["data"], serde_json::json!({"a": 3}));
        assert_eq!(hooks.stats().sent, 1);
    }

    #[test]
    fn fans_out_to_each_subscribed_webhook() {
        let rt = runtime();
        let (p1, rx1, _l1) = receiver("200 OK", 1);
        let (p2, rx2, l2) = receiver("200 OK", 1);
        let hooks = Webhooks::new(
            &[
                cfg(
                    format!("http://127.0.0.1:{p1}/a"),
                    &[WebhookEvent::Aos],
                    2000,
                ),
                cfg(
                    format!("http://127.0.0.1:{p2}/b"),
                    &[WebhookEvent::Los],
                    2000,
                ),
            ],
            rt.handle().clone(),
        );
        hooks.notify(WebhookEvent::Aos, serde_json::json!(1));
        hooks.flush(Duration::from_secs(5));
        assert_eq!(
            rx1.recv_timeout(Duration::from_secs(1))
                .unwrap()
                .request_line,
            "POST /a HTTP/1.1"
        );
        assert!(rx2.recv_timeout(Duration::from_millis(100)).is_err());
        assert_no_connection(&l2);
        assert_eq!(hooks.stats().sent, 1);
    }

    #[test]
    fn nothing_listening_counts_failed() {
        let rt = runtime();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/");
        let hooks = Webhooks::new(&[cfg(url, &[WebhookEvent::Aos], 500)], rt.handle().clone());
        hooks.notify(WebhookEvent::Aos, serde_json::json!({}));
        assert_eq!(hooks.stats().failed, 0, "in flight until the retry is done");
        hooks.flush(Duration::from_secs(5));
        assert_eq!(
            hooks.stats(),
            WebhookStats {
                sent: 0,
                failed: 1,
                dropped: 0
            }
        );
    }

    #[test]
    fn https_fails_without_network_attempt() {
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("https://127.0.0.1:{port}/hook?token=x");
        let hooks = Webhooks::new(
            &[cfg(url, &[WebhookEvent::Aos, WebhookEvent::Los], 500)],
            rt.handle().clone(),
        );
        hooks.notify(WebhookEvent::Aos, serde_json::json!({}));
        hooks.notify(WebhookEvent::Los, serde_json::json!({}));
        // Counted synchronously: no task, no connection.
        assert_eq!(
            hooks.stats(),
            WebhookStats {
                sent: 0,
                failed: 2,
                dropped: 0
            }
        );
        hooks.flush(Duration::from_secs(1));
        thread::sleep(Duration::from_millis(100));
        assert_no_connection(&listener);
        assert_eq!(hooks.stats().failed, 2);
    }

    #[test]
    fn flood_drops_beyond_limit_without_blocking() {
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accept and hold every connection, never answering.
        let l2 = listener.try_clone().unwrap();
        thread::spawn(move || {
            let mut held = Vec::new();
            while let Ok((s, _)) = l2.accept() {
                held.push(s);
            }
        });
        let url = format!("http://127.0.0.1:{port}/slow");
        let hooks = Webhooks::new(&[cfg(url, &[WebhookEvent::Aos], 200)], rt.handle().clone());
        let payload = serde_json::json!({"pass": 42});
        let t0 = Instant::now();
        for _ in 0..200 {
            hooks.notify(WebhookEvent::Aos, payload.clone());
        }
        let took = t0.elapsed();
        assert!(
            took < Duration::from_millis(50),
            "200 notify calls took {took:?}"
        );
        let s = hooks.stats();
        assert_eq!(s.dropped, 200 - MAX_IN_FLIGHT as u64);
        assert_eq!(s.sent, 0);
        // Each in-flight delivery: 200 ms timeout + 1 s retry delay + 200 ms timeout.
        hooks.flush(Duration::from_secs(10));
        assert_eq!(
            hooks.stats(),
            WebhookStats {
                sent: 0,
                failed: MAX_IN_FLIGHT as u64,
                dropped: 200 - MAX_IN_FLIGHT as u64
            }
        );
        // Slots are released: a new notify is accepted (and fails again), not dropped.
        hooks.notify(WebhookEvent::Aos, payload);
        assert_eq!(hooks.stats().dropped, 200 - MAX_IN_FLIGHT as u64);
        hooks.flush(Duration::from_secs(5));
        assert_eq!(hooks.stats().failed, MAX_IN_FLIGHT as u64 + 1);
    }

    #[test]
    fn flush_respects_deadline() {
        let rt = runtime();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let hooks = Webhooks::new(
            &[cfg(
                format!("http://127.0.0.1:{port}/"),
                &[WebhookEvent::Aos],
                500,
            )],
            rt.handle().clone(),
        );
        hooks.notify(WebhookEvent::Aos, serde_json::json!({}));
        let t0 = Instant::now();
        hooks.flush(Duration::from_millis(100)); // retry delay alone is 1 s
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_millis(900),
            "{took:?}"
        );
        assert_eq!(hooks.stats().failed, 0, "still in flight");
    }

    #[test]
    fn runtime_shutdown_counts_pending_as_failed() {
        let rt = runtime();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let hooks = Webhooks::new(
            &[cfg(
                format!("http://127.0.0.1:{port}/"),
                &[WebhookEvent::Aos],
                500,
            )],
            rt.handle().clone(),
        );
        hooks.notify(WebhookEvent::Aos, serde_json::json!({}));
        drop(rt);
        hooks.flush(Duration::from_secs(1));
        assert_eq!(hooks.stats().failed, 1);
        // Notifying after shutdown neither panics nor leaks a slot.
        hooks.notify(WebhookEvent::Aos, serde_json::json!({}));
        hooks.flush(Duration::from_secs(1));
        assert_eq!(hooks.stats().failed, 2);
    }

    #[test]
    fn webhooks_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Webhooks>();
    }

    #[test]
    fn parses_urls() {
        let t = parse_url("http://example.org").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.host_header.as_str(),
                t.path_and_query.as_str()
            ),
            ("example.org", 80, "example.org", "/")
        );
        let t = parse_url("HTTP://127.0.0.1:8080/a/b?tok=1#frag").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.host_header.as_str(),
                t.path_and_query.as_str()
            ),
            ("127.0.0.1", 8080, "127.0.0.1:8080", "/a/b?tok=1")
        );
        let t = parse_url("http://h:80?x=1").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.host_header.as_str(),
                t.path_and_query.as_str()
            ),
            ("h", 80, "h", "/?x=1")
        );
        let t = parse_url("http://[::1]:9000/p").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.host_header.as_str()),
            ("::1", 9000, "[::1]:9000")
        );
        let t = parse_url("http://[::1]/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.host_header.as_str()),
            ("::1", 80, "[::1]")
        );
        assert_eq!(parse_url("https://example.org/"), Err("https_unsupported"));
        for bad in [
            "ftp://x/",
            "http://",
            "http:///p",
            "http://h:99999/",
            "http://h:0/",
            "http://h:x/",
            "http://[::1/",
            "http://[::1]x/",
            "http://h/a b",
            "http://h/a\r\nX: y",
            "",
            "http:/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_url("http://u:p@h/"), Err("userinfo_unsupported"));
    }

    #[test]
    fn log_name_hides_query_and_userinfo() {
        assert_eq!(
            safe_log_name("http://h:81/a/b?token=s3cret#f"),
            "http://h:81/a/b"
        );
        assert_eq!(safe_log_name("https://user:pw@h/x?k=v"), "https://h/x");
        assert_eq!(safe_log_name("http://h?token=s3cret"), "http://h/");
        assert_eq!(safe_log_name("garbage?token=s3cret"), "<invalid url>");
    }

    #[test]
    fn parses_status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 500"), Some(500));
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 x"), None);
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 abc"), None);
        assert_eq!(parse_status_line(&[0xff, 0xfe]), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn garbage_response_counts_failed() {
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let _ = read_request(&mut s);
                s.write_all(&[0xffu8; 2000]).unwrap(); // no newline, too long
            }
        });
        let hooks = Webhooks::new(
            &[cfg(
                format!("http://127.0.0.1:{port}/"),
                &[WebhookEvent::Aos],
                1000,
            )],
            rt.handle().clone(),
        );
        hooks.notify(WebhookEvent::Aos, serde_json::json!({}));
        hooks.flush(Duration::from_secs(5));
        assert_eq!(
            hooks.stats(),
            WebhookStats {
                sent: 0,
                failed: 1,
                dropped: 0
            }
        );
    }
}
