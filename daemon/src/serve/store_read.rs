//! Reading the archive back from the object store (`archive.store`), so that a node whose
//! local `archive.path` does not hold a pass (an API node, or a station that spooled and
//! uploaded it) still serves its assets and tiles.
//!
//! # Assets: ranged GETs proxied
//!
//! `/stac/assets/{href}` of a catalogued asset whose file is not under `archive.path` is read
//! from the store object `PREFIX/{href}` (the uploader's key: the archive's own layout). A HEAD
//! request to the store gives size, ETag and modification time; the client's `Range` (one
//! range: `a-b`, `a-`, `-n`) becomes one ranged GET whose bytes are streamed through, never
//! buffered whole: `206` with `Content-Range`, `416` with `Content-Range: bytes */SIZE` for a
//! range past the end, `200` for no (or a multi-range, or a malformed) `Range`, `304` for a
//! matching `If-None-Match`, `If-Range` honoured; `Accept-Ranges`, `ETag`, `Last-Modified` and
//! `Content-Length` always. A HEAD request is answered from the store's HEAD alone. The GET
//! carries the HEAD's ETag as `If-Match`, so an object replaced in between is never sent under
//! the other version's headers: the answer is worked out again once, then `503` (`changed`).
//! An object the store does not hold is a `404`. A store that cannot be reached (or refuses
//! our credentials, or fails) is a `503` with `Retry-After` saying so; each such failure is
//! counted by reason ([`READ_FAILURE_REASONS`], `/api/v1/status` `store_reads`, metric
//! `downlink_store_read_failures_total{reason}`) and degrades the `store` health component
//! until a read succeeds again.
//!
//! # Tiles: GDAL `/vsis3/`, no local copy
//!
//! Tiles, TileJSON, WMTS and WMS of an item whose file is only in the store open
//! `/vsis3/BUCKET/PREFIX/{href}` ([`StoreReader::gdal_path`]): GDAL reads the COG's header and
//! then only the blocks (one overview level) each tile needs, by ranged GETs, and keeps them in
//! its `/vsicurl/` region cache and raster block cache; each render thread keeps its datasets
//! open (`TilePool`). This is what TiTiler does. The other choice, fetching each COG once into
//! a bounded cache under `archive.path`, was not taken: a first tile would wait for the whole
//! file (hundreds of MB for a scene) where it needs a few blocks, the cache would need its own
//! eviction, locking between render threads and crash cleanup, and the bytes read are the same
//! either way, so tiles are identical to those drawn from local files. The store's endpoint,
//! region and credentials are given to GDAL as path-specific options for `/vsis3/BUCKET` only
//! (`raster::tiles::vsi`), never logged. A `file://` store is a directory: its files are opened
//! directly.
//!
//! Not handled: a product set made again under the same keys is seen by GDAL's caches only
//! after they forget the old blocks (the tile cache itself is keyed by the item's `updated`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use archive::record;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore};
use serde::Serialize;

use super::events::{emit, StoreReadFailed};
use super::upload::Failure;
use super::Shared;
use crate::config::{ArchiveConfig, ArchiveStore};

/// Why a read from the store failed (metric label values): the uploader's reasons for the
/// store's answer, and `gdal` for a tile source GDAL could not read from the store.
pub const READ_FAILURE_REASONS: [&str; 5] = ["unreachable", "denied", "store", "gdal", "changed"];

/// What operators see in `/api/v1/status` (`store_reads`) and `/metrics`.
#[derive(Clone, Debug, Serialize)]
pub struct ReadStatus {
    /// Asset requests answered from the store (200, 206, 304, 416).
    pub assets: u64,
    /// Body bytes those answers announced (`Content-Length`).
    pub bytes: u64,
    /// Asset requests for an object the store does not hold (404).
    pub not_found: u64,
    /// Failed reads, by reason ([`READ_FAILURE_REASONS`]): answered 503.
    pub failures: BTreeMap<&'static str, u64>,
    /// The last failure.
    pub last_error: Option<String>,
}

impl Default for ReadStatus {
    fn default() -> Self {
        ReadStatus {
            assets: 0,
            bytes: 0,
            not_found: 0,
            failures: READ_FAILURE_REASONS.iter().map(|r| (*r, 0)).collect(),
            last_error: None,
        }
    }
}

/// A client of the store for reading, and where GDAL finds its files.
pub struct StoreReader {
    store: Arc<dyn ObjectStore>,
    /// Key prefix (`s3://bucket/PREFIX`), empty for none.
    prefix: String,
    /// `/vsis3/BUCKET[/PREFIX]`, or the directory of a `file://` store.
    gdal_root: PathBuf,
    /// The store's URL, for messages.
    pub url: String,
}

impl std::fmt::Debug for StoreReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreReader")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl StoreReader {
    /// The store object of archive-relative `href`.
    fn key(&self, href: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(href)
        } else {
            StorePath::from(format!("{}/{href}", self.prefix))
        }
    }

    /// The path GDAL opens for archive-relative `href` in the store.
    pub fn gdal_path(&self, href: &str) -> PathBuf {
        self.gdal_root.join(href)
    }

    /// True for a path [`gdal_path`](Self::gdal_path) made (a tile source in the store).
    pub fn is_store_path(&self, p: &std::path::Path) -> bool {
        p.starts_with(&self.gdal_root)
    }

    /// After GDAL failed to read `p` from the store: GDAL's `/vsicurl/` cache forgets the
    /// store's files, so the next request tries the store again instead of the cached failure.
    pub fn gdal_failed(&self, p: &std::path::Path) {
        if self.is_store_path(p) && self.gdal_root.starts_with("/vsis3") {
            raster::tiles::vsi::forget(&self.gdal_root.display().to_string());
        }
    }
}

/// Reading from the store: the client (None for the local archive, or when the store could
/// not be configured) and the counters. Held in [`Shared`].
#[derive(Debug, Default)]
pub struct StoreReads {
    /// The reader; None when `archive.store` is the local archive.
    pub reader: Option<StoreReader>,
    /// Counters.
    pub status: Mutex<ReadStatus>,
    /// The `store` health component was degraded by a failed read (a successful read clears
    /// it then, and only then: an upload failure is the uploader's to clear).
    degraded: AtomicBool,
    /// When the store's passes were last listed (held while a listing runs).
    listed: tokio::sync::Mutex<Option<std::time::Instant>>,
}

impl StoreReads {
    /// The reader of `cfg`'s store. An S3 store's settings are given to GDAL for `/vsis3/`
    /// reads of its bucket. A store that cannot be configured (no credentials) is logged; the
    /// uploader degrades `store` health for it.
    pub fn open(cfg: &ArchiveConfig) -> StoreReads {
        let reader = match open_reader(cfg) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(store = %cfg.store.url(&cfg.path), error = %e, "object store unavailable: assets not under archive.path cannot be served");
                None
            }
        };
        StoreReads {
            reader,
            ..StoreReads::default()
        }
    }

    fn update<R>(&self, f: impl FnOnce(&mut ReadStatus) -> R) -> R {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A read failed: counted, logged (rate-limited), `store` degraded.
    pub fn failed(&self, shared: &Shared, what: &str, reason: &'static str, error: String) {
        let url = self.reader.as_ref().map_or("", |r| r.url.as_str());
        let newly = shared.health.set(
            "store",
            format!("{url} ({reason}): reading {what}: {error}"),
        );
        if newly {
            self.degraded.store(true, Ordering::Relaxed);
        }
        self.update(|status| {
            emit(StoreReadFailed {
                status,
                store: url,
                what,
                reason,
                error,
                newly_degraded: newly,
            });
        });
    }

    /// A read succeeded: a `store` degradation that reads caused is cleared.
    pub fn succeeded(&self, shared: &Shared) {
        if self.degraded.swap(false, Ordering::Relaxed) && shared.health.clear("store") {
            emit(super::events::StoreRecovered {
                store: self.reader.as_ref().map_or("", |r| r.url.as_str()),
            });
        }
    }
}

fn open_reader(cfg: &ArchiveConfig) -> Result<Option<StoreReader>, String> {
    let Some(store) = super::upload::open_store(cfg)? else {
        return Ok(None);
    };
    let url = cfg.store.url(&cfg.path);
    let (prefix, gdal_root) = match &cfg.store {
        ArchiveStore::Local => return Ok(None),
        ArchiveStore::Directory(dir) => (String::new(), dir.clone()),
        ArchiveStore::S3(s3) => {
            let creds = s3.credentials()?;
            let bucket_root = format!("/vsis3/{}", s3.bucket);
            let options = raster::tiles::vsi::s3_options(
                s3.endpoint.as_deref(),
                &s3.region,
                &creds.key_id,
                &creds.secret,
                creds.token.as_deref(),
            );
            for (k, v) in options {
                raster::tiles::vsi::set_path_option(&bucket_root, k, &v)
                    .map_err(|e| e.to_string())?;
            }
            let root = if s3.prefix.is_empty() {
                PathBuf::from(bucket_root)
            } else {
                PathBuf::from(format!("{bucket_root}/{}", s3.prefix))
            };
            (s3.prefix.clone(), root)
        }
    };
    Ok(Some(StoreReader {
        store,
        prefix,
        gdal_root,
        url,
    }))
}

/// One byte range asked for, resolved against the object's size.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    /// The whole object (no `Range`, or one to ignore).
    All,
    /// Bytes `start..end` (end exclusive, non-empty).
    Part(u64, u64),
    /// A range that selects nothing of this object: 416.
    Unsatisfiable,
}

/// `Range: bytes=…` against an object of `size` bytes (RFC 9110 §14.1.2, §14.2). Several
/// ranges, another unit or bad syntax are ignored (the whole object is sent), as the RFC
/// allows.
fn want(range: Option<&str>, size: u64) -> Want {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Want::All;
    };
    if spec.contains(',') {
        return Want::All;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Want::All;
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (a.is_empty(), num(a), num(b)) {
        // Suffix: the last n bytes.
        (true, _, Some(n)) => {
            if n == 0 || size == 0 {
                Want::Unsatisfiable
            } else {
                Want::Part(size.saturating_sub(n), size)
            }
        }
        (false, Some(start), end) if b.is_empty() || end.is_some() => {
            if end.is_some_and(|e| e < start) {
                return Want::All;
            }
            if start >= size {
                return Want::Unsatisfiable;
            }
            let end = end.map_or(size, |e| e.saturating_add(1).min(size));
            Want::Part(start, end)
        }
        _ => Want::All,
    }
}

/// True when an `If-None-Match` list names `etag` (or is `*`).
fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|t| {
                let t = t.trim();
                t == "*" || t.trim_start_matches("W/") == etag
            })
        })
}

fn quoted(etag: &str) -> String {
    if etag.starts_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

/// The headers every answer about the object carries.
fn object_headers(meta: &ObjectMeta, media_type: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(v) = meta
        .e_tag
        .as_deref()
        .and_then(|t| HeaderValue::from_str(&quoted(t)).ok())
    {
        h.insert(header::ETAG, v);
    }
    let lm = meta
        .last_modified
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(v) = HeaderValue::from_str(&lm) {
        h.insert(header::LAST_MODIFIED, v);
    }
    let ty = media_type.unwrap_or("application/octet-stream");
    if let Ok(v) = HeaderValue::from_str(ty) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h
}

fn unavailable(url: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
        format!("the object store ({url}) cannot be read now: retry later"),
    )
        .into_response()
}

/// The largest pass file [`small_file`] reads whole (records, timelines, plots, listings).
pub const SMALL_FILE_MAX: u64 = 16 << 20;

/// A small file of the archive (archive-relative `rel`: a pass record, its timeline or plot)
/// read whole from the store, for the pass routes of a node that does not hold the pass:
/// `Ok(None)` when the store does not hold it (or there is no store, or it is larger than
/// [`SMALL_FILE_MAX`]), `Err` (a 503, counted) when the store cannot be read.
pub async fn small_file(shared: &Shared, rel: &str) -> Result<Option<bytes::Bytes>, Response> {
    let reads = &shared.store_reads;
    let Some(r) = reads.reader.as_ref() else {
        return Ok(None);
    };
    let key = r.key(rel);
    let fail = |e: &object_store::Error| {
        let f = Failure::store(key.as_ref(), e);
        reads.failed(shared, rel, f.reason, f.error);
        unavailable(&r.url)
    };
    let got = match r.store.get(&key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            reads.succeeded(shared);
            reads.update(|s| s.not_found += 1);
            return Ok(None);
        }
        Err(e) => return Err(fail(&e)),
    };
    if got.meta.size > SMALL_FILE_MAX {
        return Ok(None);
    }
    let bytes = got.bytes().await.map_err(|e| fail(&e))?;
    reads.succeeded(shared);
    reads.update(|s| {
        s.assets += 1;
        s.bytes += bytes.len() as u64;
    });
    Ok(Some(bytes))
}

/// How often the store's passes are listed in the background (and once at start).
pub const PASS_LISTING: Duration = Duration::from_secs(30);
/// A `/api/v1/passes` request lists the store's passes first when the last listing is older.
pub const PASS_LISTING_FRESH: Duration = Duration::from_secs(5);
/// Records read at once while listing.
const RECORDS_IN_FLIGHT: usize = 8;

/// Lists the passes in the store (`PREFIX/passes/ID/`) and adds the records of those the pass
/// index does not list yet (`PREFIX/passes/ID/pass.json`), so that `/api/v1/passes` of an API
/// node lists what the stations uploaded. Returns how many were added; a store that cannot be
/// listed or read is counted and degrades `store` as any failed read.
pub async fn list_passes(shared: &Shared) -> usize {
    let reads = &shared.store_reads;
    let Some(r) = reads.reader.as_ref() else {
        return 0;
    };
    let dir = r.key("passes");
    let listing = match r.store.list_with_delimiter(Some(&dir)).await {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => return 0,
        Err(e) => {
            let f = Failure::store(dir.as_ref(), &e);
            reads.failed(shared, "the pass listing", f.reason, f.error);
            return 0;
        }
    };
    reads.succeeded(shared);
    let ids: Vec<String> = listing
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_owned))
        .filter(|id| archive::pass::valid_pass_id(id))
        .collect();
    let new = shared.pass_index.unlisted(ids);
    let records = futures::stream::iter(new)
        .map(|id| async move {
            // Not counted as asset reads; a failure is counted as any failed read. A record not
            // uploaded yet (it goes up with the pass) is looked for again at the next listing.
            let key = r.key(&format!("passes/{id}/pass.json"));
            let got = match r.store.get(&key).await {
                Ok(g) if g.meta.size <= SMALL_FILE_MAX => g.bytes().await,
                Ok(_) | Err(object_store::Error::NotFound { .. }) => return None,
                Err(e) => Err(e),
            };
            match got.map_err(|e| {
                let f = Failure::store(key.as_ref(), &e);
                reads.failed(shared, "a pass record", f.reason, f.error);
            }) {
                Ok(b) => serde_json::from_slice::<record::PassRecord>(&b)
                    .map_err(|e| tracing::warn!(pass = %id, error = %e, "pass record in the store is not valid: not listed"))
                    .ok()
                    .map(|mut rec| {
                        if rec.id.is_empty() {
                            rec.id = id;
                        }
                        rec
                    }),
                _ => None,
            }
        })
        .buffer_unordered(RECORDS_IN_FLIGHT)
        .filter_map(std::future::ready)
        .collect::<Vec<_>>()
        .await;
    for rec in &records {
        shared.pass_index.insert_from_store(rec);
    }
    records.len()
}

/// [`list_passes`] unless it ran less than `fresh` ago, or runs now (then the index is used as
/// it is: concurrent requests never list at once).
pub async fn list_passes_unless_fresh(shared: &Shared, fresh: Duration) {
    if shared.store_reads.reader.is_none() {
        return;
    }
    let Ok(mut last) = shared.store_reads.listed.try_lock() else {
        return;
    };
    if last.is_some_and(|t| t.elapsed() < fresh) {
        return;
    }
    let added = list_passes(shared).await;
    if added > 0 {
        tracing::debug!(added, "passes listed from the object store");
    }
    *last = Some(std::time::Instant::now());
}

/// Lists the store's passes at start and every [`PASS_LISTING`] while the daemon runs (only
/// for a node with an object store).
pub async fn watch_passes(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(s) = shared.upgrade() else {
            return;
        };
        if s.stopping() || s.store_reads.reader.is_none() {
            return;
        }
        list_passes_unless_fresh(&s, PASS_LISTING_FRESH).await;
        drop(s);
        tokio::time::sleep(PASS_LISTING).await;
    }
}

/// Answers `req` for archive-relative `href` from the store (the asset route, when the file is
/// not under `archive.path`).
///
/// The GET that follows the HEAD carries the HEAD's ETag as `If-Match`: an object replaced
/// between the two (a re-merged pass's products) is never sent with the other version's
/// headers. The answer is then worked out again from a new HEAD, once; a second change in a row
/// answers 503.
pub async fn serve(
    shared: Arc<Shared>,
    href: &str,
    media_type: Option<&str>,
    req: Request,
) -> Response {
    // The request's head only (a body is not `Sync`, and a GET has none).
    let (head, _) = req.into_parts();
    for _ in 0..2 {
        if let Some(answer) = serve_once(&shared, href, media_type, &head).await {
            return answer;
        }
    }
    let reads = &shared.store_reads;
    let url = reads.reader.as_ref().map_or("", |r| r.url.as_str());
    reads.failed(
        &shared,
        href,
        "changed",
        format!("{href}: the object changed between HEAD and GET twice in a row"),
    );
    unavailable(url)
}

/// [`serve`] on one HEAD; `None` when the object changed before the GET (`If-Match` failed).
async fn serve_once(
    shared: &Arc<Shared>,
    href: &str,
    media_type: Option<&str>,
    req: &axum::http::request::Parts,
) -> Option<Response> {
    let reads = &shared.store_reads;
    let Some(r) = reads.reader.as_ref() else {
        return Some((StatusCode::NOT_FOUND, "not found").into_response());
    };
    let key = r.key(href);
    let fail = |e: &object_store::Error| {
        let f = Failure::store(key.as_ref(), e);
        reads.failed(shared, href, f.reason, f.error);
        unavailable(&r.url)
    };
    let meta = match r.store.head(&key).await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => {
            reads.succeeded(shared);
            reads.update(|s| s.not_found += 1);
            return Some((StatusCode::NOT_FOUND, "not found").into_response());
        }
        Err(e) => return Some(fail(&e)),
    };
    let headers = &req.headers;
    let mut out = object_headers(&meta, media_type);
    let etag = meta.e_tag.as_deref().map(quoted);
    if etag.as_deref().is_some_and(|t| none_match(headers, t)) {
        reads.succeeded(shared);
        reads.update(|s| s.assets += 1);
        out.remove(header::CONTENT_TYPE);
        return Some((StatusCode::NOT_MODIFIED, out).into_response());
    }
    // If-Range: the range applies only to the version the client names.
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| etag.as_deref() == Some(v.trim()));
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| if_range_ok);
    let size = meta.size;
    let (status, start, end) = match want(range, size) {
        Want::All => (StatusCode::OK, 0, size),
        Want::Part(a, b) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{}/{size}", b - 1)) {
                out.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, a, b)
        }
        Want::Unsatisfiable => {
            reads.succeeded(shared);
            reads.update(|s| s.assets += 1);
            out.remove(header::CONTENT_TYPE);
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                out.insert(header::CONTENT_RANGE, v);
            }
            return Some((StatusCode::RANGE_NOT_SATISFIABLE, out).into_response());
        }
    };
    let len = end - start;
    out.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if req.method == Method::HEAD || len == 0 {
        reads.succeeded(shared);
        reads.update(|s| s.assets += 1);
        return Some((status, out).into_response());
    }
    let opts = GetOptions {
        range: (status == StatusCode::PARTIAL_CONTENT).then_some(GetRange::Bounded(start..end)),
        if_match: meta.e_tag.clone(),
        ..GetOptions::default()
    };
    let got = match r.store.get_opts(&key, opts).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            reads.update(|s| s.not_found += 1);
            return Some((StatusCode::NOT_FOUND, "not found").into_response());
        }
        Err(object_store::Error::Precondition { .. }) => return None,
        Err(e) => return Some(fail(&e)),
    };
    if got.range != (start..end) {
        let e = format!(
            "asked for bytes {start}..{end}, the store sent {:?}",
            got.range
        );
        reads.failed(shared, href, "store", e);
        return Some(unavailable(&r.url));
    }
    reads.succeeded(shared);
    reads.update(|s| {
        s.assets += 1;
        s.bytes += len;
    });
    let body = Body::from_stream(got.into_stream());
    Some((status, out, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_against_the_size() {
        let w = |r: &str| want(Some(r), 100);
        assert_eq!(want(None, 100), Want::All);
        assert_eq!(w("bytes=0-9"), Want::Part(0, 10));
        assert_eq!(w("bytes=90-"), Want::Part(90, 100));
        assert_eq!(w("bytes=90-1000"), Want::Part(90, 100));
        assert_eq!(w("bytes=-10"), Want::Part(90, 100));
        assert_eq!(w("bytes=-1000"), Want::Part(0, 100));
        assert_eq!(w("bytes=100-"), Want::Unsatisfiable);
        assert_eq!(w("bytes=200-300"), Want::Unsatisfiable);
        assert_eq!(w("bytes=-0"), Want::Unsatisfiable);
        // Ignored: several ranges, bad syntax, another unit, last < first.
        assert_eq!(w("bytes=0-1,5-6"), Want::All);
        assert_eq!(w("bytes=a-b"), Want::All);
        assert_eq!(w("items=0-1"), Want::All);
        assert_eq!(w("bytes=5-1"), Want::All);
        assert_eq!(w("bytes=-"), Want::All);
        assert_eq!(want(Some("bytes=0-"), 0), Want::Unsatisfiable);
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(none_match(&h, "\"b\""));
        assert!(none_match(&h, "\"a\""));
        assert!(!none_match(&h, "\"c\""));
        assert_eq!(quoted("x"), "\"x\"");
        assert_eq!(quoted("\"x\""), "\"x\"");
    }
}
