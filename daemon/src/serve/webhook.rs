//! Optional outgoing webhooks: an HTTP `POST` of a small JSON document when a pass starts (AOS),
//! ends (LOS) and when its pass record has been written.
//!
//! Delivery uses `reqwest` (HTTP/1.1 over hyper, TLS by rustls with the system's CA store, so
//! `https://` receivers work like `http://` ones). The URL is parsed and checked once, by the
//! configuration ([`crate::config::parse_webhook_url`]); delivery applies the same rules
//! ([`crate::config::check_webhook_url`]) to whatever it is given, so `validate` and delivery
//! never disagree: a URL with a user name or password is refused by both.
//!
//! [`Webhooks::notify`] never blocks and may be called from any thread: it spawns one delivery
//! task per subscribed webhook onto the runtime given to [`Webhooks::new`]. Each webhook has at
//! most [`MAX_IN_FLIGHT`] deliveries in flight (including the wait before the retry); beyond that
//! the delivery is dropped and counted. A delivery is one attempt plus, on failure, one retry
//! after [`RETRY_DELAY`]; each attempt (connect, TLS, send, response head) is bounded by the
//! webhook's `timeout`. Redirects are not followed (a 3xx answer is a failure). No connection
//! is kept between deliveries.
//!
//! [`Webhooks::reconfigure`] swaps the set of webhooks (on SIGHUP); the counters carry on.
//!
//! Logs show a URL only through [`redact`]: no userinfo, query or fragment, and no path
//! segment that looks like a token.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use url::Url;

use super::events::{emit, WebhookDelivered, WebhookDropped, WebhookFailed};

pub use crate::config::redact;
pub use crate::config::{WebhookConfig, WebhookEvent};

/// Most deliveries in flight per webhook; further notifications are dropped (and counted).
pub const MAX_IN_FLIGHT: usize = 64;
/// Delay before the single retry of a failed delivery.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Value of the `User-Agent` request header.
const USER_AGENT: &str = "downlink";

/// Delivery counters, summed over all webhooks. Each `notify` that targets a webhook ends up in
/// exactly one of the three (once its delivery has finished).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Deliveries answered with a 2xx status (on the first attempt or on the retry).
    pub sent: u64,
    /// Deliveries that failed twice, or could not be attempted (a URL breaking the rules, no
    /// HTTP client).
    pub failed: u64,
    /// Deliveries not attempted because the webhook already had [`MAX_IN_FLIGHT`] in flight.
    pub dropped: u64,
}

/// The counters behind [`WebhookStats`] (bumped by the webhook events of
/// [`super::events`]).
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    pub(super) sent: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) dropped: AtomicU64,
}

/// Set of configured webhooks. Cheap to clone (shares state); `Send + Sync`.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hooks = self.inner.hooks();
        let names: Vec<&str> = hooks.iter().map(|h| h.log_name.as_str()).collect();
        f.debug_struct("Webhooks")
            .field("hooks", &names)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    /// The current set; [`Webhooks::reconfigure`] swaps it. Deliveries in flight hold their
    /// own `Arc<Hook>`, so they finish (and count) after a swap.
    hooks: RwLock<Arc<[Arc<Hook>]>>,
    /// One client for every webhook; `Err` (logged once) if TLS could not be set up.
    client: Result<reqwest::Client, String>,
    rt: tokio::runtime::Handle,
    counters: DeliveryCounters,
    /// Deliveries in flight over all webhooks, for `flush`.
    pending: Mutex<usize>,
    idle: Condvar,
}

impl Inner {
    fn hooks(&self) -> Arc<[Arc<Hook>]> {
        self.hooks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct Hook {
    /// The configuration it was built from (to keep a hook, and its in-flight count, across
    /// a reload that does not change it).
    cfg: WebhookConfig,
    /// Where to deliver, or why we cannot.
    target: Result<Url, String>,
    in_flight: AtomicUsize,
    /// [`redact`]ed URL, safe to log.
    log_name: String,
    /// Its own client when it trusts extra CAs (`ca_file`); otherwise the shared one.
    client: Option<reqwest::Client>,
}

impl Hook {
    fn new(cfg: &WebhookConfig) -> Hook {
        let log_name = redact(&cfg.url);
        let mut client = None;
        let target = crate::config::check_webhook_url(&cfg.url)
            .and_then(|()| {
                if let Some(path) = &cfg.ca_file {
                    let pem = crate::config::read_ca_file(path)
                        .map_err(|e| format!("webhook ca_file {e}"))?;
                    client = Some(client_with_roots(&pem)?);
                }
                Ok(())
            })
            .map(|()| cfg.url.clone());
        if let Err(reason) = &target {
            tracing::warn!(
                webhook = %log_name,
                %reason,
                "webhook cannot be delivered; every notification to it will count as failed"
            );
        }
        Hook {
            cfg: cfg.clone(),
            target,
            in_flight: AtomicUsize::new(0),
            log_name,
            client,
        }
    }
}

/// A client trusting the certificates of `pem` besides the system's CA store.
fn client_with_roots(pem: &[u8]) -> Result<reqwest::Client, String> {
    let roots = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| format!("ca_file: {}", crate::config::error_chain(&e)))?;
    let mut builder = client_builder();
    for root in roots {
        builder = builder.add_root_certificate(root);
    }
    builder.build().map_err(|e| crate::config::error_chain(&e))
}

/// The settings every webhook client shares.
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
}

/// The hooks of `cfgs`, keeping those of `keep` whose configuration did not change (a hook
/// with a `ca_file` is always set up again, so a reload reads a replaced CA file).
fn build_hooks(cfgs: &[WebhookConfig], keep: &[Arc<Hook>]) -> Arc<[Arc<Hook>]> {
    cfgs.iter()
        .map(|cfg| {
            keep.iter()
                .find(|h| h.cfg == *cfg && cfg.ca_file.is_none())
                .cloned()
                .unwrap_or_else(|| Arc::new(Hook::new(cfg)))
        })
        .collect()
}

impl Webhooks {
    /// Builds the webhook set. Deliveries run on `rt`. Logs one warning per webhook that
    /// cannot be delivered (its deliveries are counted as failed).
    pub fn new(cfgs: &[WebhookConfig], rt: tokio::runtime::Handle) -> Webhooks {
        let builder = client_builder();
        let client = builder.build().map_err(|e| crate::config::error_chain(&e));
        if let (Err(reason), false) = (&client, cfgs.is_empty()) {
            tracing::error!(%reason, "no HTTP client: every webhook delivery will count as failed");
        }
        Webhooks {
            inner: Arc::new(Inner {
                hooks: RwLock::new(build_hooks(cfgs, &[])),
                client,
                rt,
                counters: DeliveryCounters::default(),
                pending: Mutex::new(0),
                idle: Condvar::new(),
            }),
        }
    }

    /// Replaces the set of webhooks (a reloaded configuration). Counters carry on; deliveries
    /// in flight finish and are counted; a webhook whose settings did not change keeps its
    /// in-flight count.
    pub fn reconfigure(&self, cfgs: &[WebhookConfig]) {
        let mut hooks = self
            .inner
            .hooks
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let new = build_hooks(cfgs, &hooks);
        *hooks = new;
    }

    /// Non-blocking, callable from any thread (async or not): queues one POST per webhook
    /// subscribed to `event`. Body:
    /// `{"event": "aos"|"los"|"pass_record"|"alert", "sent_at": <unix ms>, "data": payload}`.
    /// A webhook with [`MAX_IN_FLIGHT`] deliveries in flight drops this one (counted).
    #[allow(clippy::needless_pass_by_value)] // the caller hands the payload over; it is serialized once
    pub fn notify(&self, event: WebhookEvent, payload: serde_json::Value) {
        let hooks = self.inner.hooks();
        let mut subscribed = hooks.iter().filter(|h| h.cfg.events.contains(&event));
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
        let body: Option<Bytes> = serde_json::to_vec(&doc).ok().map(Bytes::from);
        for hook in std::iter::once(first).chain(subscribed) {
            self.dispatch(hook, event, body.as_ref());
        }
    }

    fn dispatch(&self, hook: &Arc<Hook>, event: WebhookEvent, body: Option<&Bytes>) {
        let inner = &self.inner;
        let fail = |reason: &str| {
            emit(WebhookFailed {
                counters: &inner.counters,
                webhook: &hook.log_name,
                event: event.as_str(),
                reason,
            });
        };
        let shared = match &hook.client {
            Some(own) => Ok(own),
            None => inner.client.as_ref(),
        };
        let (url, body, client) = match (&hook.target, body, shared) {
            (Ok(u), Some(b), Ok(c)) => (u.clone(), b.clone(), c.clone()),
            (Err(reason), _, _) | (_, _, Err(reason)) => return fail(reason),
            (Ok(_), None, _) => return fail("cannot serialize the body"),
        };
        let reserved = hook
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_IN_FLIGHT).then_some(n + 1)
            })
            .is_ok();
        if !reserved {
            emit(WebhookDropped {
                counters: &inner.counters,
                webhook: &hook.log_name,
                event: event.as_str(),
            });
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
        drop(inner.rt.spawn(deliver(guard, client, url, body, event)));
    }

    /// Current counters (summed over all webhooks, since construction: a reconfigure does not
    /// reset them).
    pub fn stats(&self) -> WebhookStats {
        WebhookStats {
            sent: self.inner.counters.sent.load(Ordering::Relaxed),
            failed: self.inner.counters.failed.load(Ordering::Relaxed),
            dropped: self.inner.counters.dropped.load(Ordering::Relaxed),
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
    /// The delivery's outcome was emitted (and counted).
    fn finish(mut self) {
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            emit(WebhookFailed {
                counters: &self.inner.counters,
                webhook: &self.hook.log_name,
                event: "-",
                reason: "the runtime stopped before the delivery finished",
            });
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

/// Why an attempt failed, without the URL (reqwest's messages name it, query and all).
fn attempt_error(e: reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {timeout:?}");
    }
    crate::config::error_chain(&e.without_url())
}

async fn deliver(
    guard: InFlight,
    client: reqwest::Client,
    url: Url,
    body: Bytes,
    event: WebhookEvent,
) {
    let timeout = guard.hook.cfg.timeout;
    let mut last_err = String::new();
    for attempt in 1..=2u32 {
        if attempt > 1 {
            tokio::time::sleep(RETRY_DELAY).await;
        }
        let sent = client
            .post(url.clone())
            .timeout(timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let outcome = match sent {
            Ok(resp) if resp.status().is_success() => {
                emit(WebhookDelivered {
                    counters: &guard.inner.counters,
                    webhook: &guard.hook.log_name,
                    event: event.as_str(),
                    status: resp.status().as_u16(),
                    attempt,
                });
                guard.finish();
                return;
            }
            Ok(resp) => format!("HTTP status {}", resp.status().as_u16()),
            Err(e) => attempt_error(e, timeout),
        };
        tracing::debug!(webhook = %guard.hook.log_name, event = event.as_str(), attempt, reason = %outcome, "webhook attempt failed");
        last_err = outcome;
    }
    emit(WebhookFailed {
        counters: &guard.inner.counters,
        webhook: &guard.hook.log_name,
        event: event.as_str(),
        reason: &format!("after the retry: {last_err}"),
    });
    guard.finish();
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

    #[allow(clippy::needless_pass_by_value)] // callers build the URL text in place
    fn cfg(url: String, events: &[WebhookEvent], timeout_ms: u64) -> WebhookConfig {
        WebhookConfig {
            ca_file: None,
            url: Url::parse(&url).unwrap(),
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
        read_request_from(s)
    }

    fn read_request_from(s: &mut impl Read) -> Request {
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
    fn userinfo_is_refused_at_delivery_too_without_network_attempt() {
        // The config refuses such URLs; a WebhookConfig built in code meets the same rule.
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://user:pw@127.0.0.1:{port}/hook");
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
        assert!(!format!("{hooks:?}").contains("pw"), "{hooks:?}");
    }

    #[test]
    fn https_is_attempted_and_a_failed_handshake_counts_failed() {
        // A plain-TCP listener that answers the TLS ClientHello with HTTP: the handshake fails
        // on both attempts.
        let rt = runtime();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut first = [0u8; 1];
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s.read_exact(&mut first).unwrap();
                tx.send(first[0]).unwrap();
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let url = format!("https://127.0.0.1:{port}/hook?token=x");
        let hooks = Webhooks::new(&[cfg(url, &[WebhookEvent::Aos], 2000)], rt.handle().clone());
        hooks.notify(WebhookEvent::Aos, serde_json::json!({}));
        hooks.flush(Duration::from_secs(10));
        assert_eq!(
            hooks.stats(),
            WebhookStats {
                sent: 0,
                failed: 1,
                dropped: 0
            }
        );
        // 0x16: a TLS handshake record, twice (attempt and retry).
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap(), 0x16);
        assert_eq!(rx.recv_timeout(Duration::from_secs(1)).unwrap(), 0x16);
    }

    #[test]
    fn https_delivery_to_a_receiver_whose_ca_is_configured() {
        let rt = runtime();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert_der = certified.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
        let server = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(vec![cert_der.clone()], key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for tcp in listener.incoming().take(3) {
                let tcp = tcp.unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let conn = rustls::ServerConnection::new(server.clone()).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // A client that does not trust the certificate aborts the handshake here.
                let mut first = [0u8; 4];
                if tls.read_exact(&mut first).is_err() {
                    continue;
                }
                let req = read_request_from(&mut Read::chain(&first[..], &mut tls));
                tls.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .unwrap();
                tls.conn.send_close_notify();
                let _ = tls.flush();
                tx.send(req).unwrap();
            }
        });
        let url = format!("https://127.0.0.1:{port}/hooks/pass?token=s3cret");
        // Without the receiver's certificate among the roots, the handshake fails: the
        // certificate is checked.
        let untrusting = Webhooks::new(
            &[cfg(url.clone(), &[WebhookEvent::Los], 5000)],
            rt.handle().clone(),
        );
        untrusting.notify(WebhookEvent::Los, serde_json::json!({}));
        untrusting.flush(Duration::from_secs(10));
        assert_eq!(untrusting.stats().failed, 1);
        assert!(rx.try_recv().is_err());
        // The receiver's certificate given as the webhook's `ca_file` (PEM).
        let ca_dir = tempfile::tempdir().unwrap();
        let ca_file = ca_dir.path().join("ca.pem");
        std::fs::write(&ca_file, certified.cert.pem()).unwrap();
        let mut trusting = cfg(url, &[WebhookEvent::Los], 5000);
        trusting.ca_file = Some(ca_file);
        let hooks = Webhooks::new(&[trusting], rt.handle().clone());
        hooks.notify(WebhookEvent::Los, serde_json::json!({"pass": 7}));
        hooks.flush(Duration::from_secs(10));
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
        let doc: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(doc["data"], serde_json::json!({"pass": 7}));
    }

    #[test]
    fn reconfigure_swaps_hooks_and_keeps_counting() {
        let rt = runtime();
        let (p1, rx1, _l1) = receiver("200 OK", 1);
        let (p2, rx2, _l2) = receiver("200 OK", 1);
        let hooks = Webhooks::new(
            &[cfg(
                format!("http://127.0.0.1:{p1}/old"),
                &[WebhookEvent::Aos],
                2000,
            )],
            rt.handle().clone(),
        );
        hooks.notify(WebhookEvent::Aos, serde_json::json!(1));
        hooks.flush(Duration::from_secs(5));
        assert_eq!(
            rx1.recv_timeout(Duration::from_secs(1))
                .unwrap()
                .request_line,
            "POST /old HTTP/1.1"
        );
        let clone = hooks.clone();
        hooks.reconfigure(&[cfg(
            format!("http://127.0.0.1:{p2}/new"),
            &[WebhookEvent::Los],
            2000,
        )]);
        // The old hook is gone, the new one gets its event; every clone sees the swap.
        clone.notify(WebhookEvent::Aos, serde_json::json!(2));
        clone.notify(WebhookEvent::Los, serde_json::json!(3));
        hooks.flush(Duration::from_secs(5));
        let req = rx2.recv_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!(req.request_line, "POST /new HTTP/1.1");
        assert_eq!(
            hooks.stats(),
            WebhookStats {
                sent: 2,
                failed: 0,
                dropped: 0
            }
        );
        // Counters stay monotonic across a reconfigure to nothing.
        hooks.reconfigure(&[]);
        hooks.notify(WebhookEvent::Los, serde_json::json!(4));
        assert_eq!(hooks.stats().sent, 2);
    }

    #[test]
    fn reconfigure_keeps_an_unchanged_hook_and_its_in_flight_bound() {
        let rt = runtime();
        let c = cfg("http://127.0.0.1:9/x".into(), &[WebhookEvent::Aos], 500);
        let hooks = Webhooks::new(std::slice::from_ref(&c), rt.handle().clone());
        let before = hooks.inner.hooks();
        hooks.reconfigure(std::slice::from_ref(&c));
        let after = hooks.inner.hooks();
        assert!(Arc::ptr_eq(&before[0], &after[0]));
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
