//! The HTTP access log and CORS, as layers around the whole router.
//!
//! Access log: one structured tracing event per request when its response body ends (or is
//! dropped), target `downlink::access`, level DEBUG, with `method`, `path` (no query string),
//! `status`, `bytes` (body bytes sent), `duration_ms` (until the body ended), `peer` and
//! `complete` (false when the client went away before the end). Off by default; an operator
//! turns it on with `RUST_LOG=info,downlink::access=debug`. Requests refused before the
//! router (busy: `503`) are counted in /metrics, not logged here.
//!
//! CORS (`[http] cors_origins`): a request with an allowed `Origin` gets
//! `Access-Control-Allow-Origin` (and the headers a range reader needs exposed); a preflight
//! (`OPTIONS` with `Access-Control-Request-Method`) is answered `204` with the allowed methods
//! and headers. Other origins get no CORS headers (the browser refuses them); with the key
//! absent no CORS header is ever sent.
//!
//! Every response of the router is counted by status class (`downlink_http_responses_total`,
//! `/api/v1/status` `http.responses`).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body::{Frame, SizeHint};

use super::http_server::HttpStats;

/// The client's address, put into each request's extensions by the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

/// Allowed origins: every one (`*`) or exactly these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// `["*"]`.
    Any,
    /// Serialized origins (`https://host[:port]`).
    List(Vec<String>),
}

impl Cors {
    /// From `http.cors_origins` (validated); `None` when absent.
    pub fn from_config(origins: &[String]) -> Option<Cors> {
        match origins {
            [] => None,
            [one] if one == "*" => Some(Cors::Any),
            list => Some(Cors::List(list.to_vec())),
        }
    }

    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, if allowed.
    fn allow(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        match self {
            Cors::Any => Some(HeaderValue::from_static("*")),
            Cors::List(l) => {
                let o = origin.to_str().ok()?;
                l.iter().any(|a| a == o).then(|| origin.clone())
            }
        }
    }
}

const ALLOW_METHODS: &str = "GET, HEAD, POST, OPTIONS";
const ALLOW_HEADERS: &str = "Accept, Content-Type, Range, If-None-Match, If-Modified-Since";
const EXPOSE_HEADERS: &str =
    "Content-Length, Content-Range, Accept-Ranges, ETag, Last-Modified, Retry-After";

/// The router with CORS (when configured) and the access log around it; every response is
/// counted by status class in `stats`.
pub fn layer(app: Router, cors: Option<Cors>, stats: Arc<HttpStats>) -> Router {
    let app = match cors {
        Some(c) => app.layer(axum::middleware::from_fn_with_state(
            Arc::new(c),
            cors_layer,
        )),
        None => app,
    };
    app.layer(axum::middleware::from_fn_with_state(stats, access_log))
}

fn cors_headers(h: &mut HeaderMap, allow: HeaderValue, cors: &Cors) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    if matches!(cors, Cors::List(_)) {
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

async fn cors_layer(State(cors): State<Arc<Cors>>, req: Request, next: Next) -> Response {
    let allow = cors.allow(req.headers().get(header::ORIGIN));
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    match (allow, preflight) {
        (Some(allow), true) => {
            let asked = req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned();
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            cors_headers(h, allow, &cors);
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOW_METHODS),
            );
            // The headers the browser asks for: the request carries no credentials, so
            // echoing them allows nothing beyond what a plain HTTP client may send.
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                asked.unwrap_or(HeaderValue::from_static(ALLOW_HEADERS)),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            r
        }
        (Some(allow), false) => {
            let mut r = next.run(req).await;
            let h = r.headers_mut();
            cors_headers(h, allow, &cors);
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
            r
        }
        (None, _) => next.run(req).await,
    }
}

async fn access_log(State(stats): State<Arc<HttpStats>>, req: Request, next: Next) -> Response {
    if !tracing::enabled!(target: "downlink::access", tracing::Level::DEBUG) {
        let resp = next.run(req).await;
        stats.response(resp.status().as_u16());
        return resp;
    }
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let peer = req.extensions().get::<Peer>().and_then(|p| p.0);
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    stats.response(status);
    resp.map(|inner| {
        Body::new(Logged {
            inner,
            entry: Entry {
                start,
                method,
                path,
                peer,
                status,
                bytes: 0,
                complete: false,
            },
        })
    })
}

struct Entry {
    start: Instant,
    method: Method,
    path: String,
    peer: Option<SocketAddr>,
    status: u16,
    bytes: u64,
    complete: bool,
}

/// A response body that logs its request once it ends or is dropped.
struct Logged {
    inner: Body,
    entry: Entry,
}

impl Drop for Logged {
    fn drop(&mut self) {
        let end = http_body::Body::is_end_stream(&self.inner);
        let e = &self.entry;
        tracing::debug!(
            target: "downlink::access",
            method = %e.method,
            path = %e.path,
            status = e.status,
            bytes = e.bytes,
            duration_ms = e.start.elapsed().as_secs_f64() * 1e3,
            peer = %e.peer.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            complete = e.complete || end,
            "http request"
        );
    }
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.entry.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => self.entry.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_matched_exactly() {
        let list = Cors::from_config(&["https://a.org".into()]).unwrap();
        let o = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(
            list.allow(Some(&o("https://a.org"))),
            Some(o("https://a.org"))
        );
        assert_eq!(list.allow(Some(&o("https://a.org.evil.net"))), None);
        assert_eq!(list.allow(Some(&o("http://a.org"))), None);
        assert_eq!(list.allow(None), None);
        let any = Cors::from_config(&["*".into()]).unwrap();
        assert_eq!(any.allow(Some(&o("https://b.org"))), Some(o("*")));
        assert_eq!(Cors::from_config(&[]), None);
    }
}
