//! Operator HTTP API: `/api/v1/status`, `/api/v1/passes`, `/api/v1/passes/{id}` (+ `plot.png`, `timeline`,
//! `products`, `products/{file}`), `/api/v1/tle`, `/metrics`; the STAC API and the web map are merged in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::Shared;
use archive::pass::valid_pass_id;

/// The operator API.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/health", get(health))
        .route("/api/v1/passes", get(passes))
        .route("/api/v1/passes/{id}", get(pass))
        .route("/api/v1/passes/{id}/plot.png", get(plot))
        .route("/api/v1/passes/{id}/timeline", get(timeline))
        .route("/api/v1/passes/{id}/products", get(products))
        .route("/api/v1/passes/{id}/products/{file}", get(product_file))
        .route("/api/v1/tle", get(tle))
        .route("/api/v1/alerts", get(alerts))
        .route("/metrics", get(metrics))
        .with_state(shared.clone())
        .merge(super::stac::router(shared.clone()))
        .merge(super::tiles::router(shared.clone()))
        .merge(super::wms::router(shared.clone()))
        .merge(super::pass_data::router(shared))
        .merge(super::web::router())
}

fn snapshot(shared: &Shared) -> Vec<super::InputStatus> {
    shared.input_snapshot()
}

fn reloads(shared: &Shared) -> super::Reloads {
    shared
        .reloads
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// `ok` (200) or `degraded` (503) with the problems by component: for load balancers, probes
/// and operators.
async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let problems = shared.health.problems();
    let code = if problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(health_json(&shared))).into_response()
}

fn health_json(shared: &Shared) -> serde_json::Value {
    let problems = shared.health.problems();
    serde_json::json!({
        "state": if problems.is_empty() { "ok" } else { "degraded" },
        "problems": problems,
    })
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "health": health_json(&shared),
        "inputs": snapshot(&shared),
        "reloads": reloads(&shared),
        "archive": {
            "io_errors": shared.archive_errors.lock().map(|e| e.clone()).unwrap_or_default(),
            "pending_records": shared.pending_records.lock().map(|p| p.len()).unwrap_or(0),
            "recovered_passes": shared.recovered_passes.lock().map(|r| r.clone()).unwrap_or_default(),
        },
        "products": shared.products.status.lock().map(|s| s.clone()).unwrap_or_default(),
        "store": shared.uploads.status.lock().map(|s| serde_json::to_value(&*s).unwrap_or_default()).unwrap_or_default(),
        "store_reads": shared.store_reads.status.lock().map(|s| serde_json::to_value(&*s).unwrap_or_default()).unwrap_or_default(),
        "tile_cache": tile_cache_json(&shared),
        "wms_exceptions": wms_exceptions(&shared),
        "catalog": catalog_json(&shared),
        "http": shared.http.snapshot(),
        "alerts": shared.alerts.status(),
        "merges": super::merge::status_json(),
        "webhooks": {
            "sent": shared.webhooks.stats().sent,
            "failed": shared.webhooks.stats().failed,
            "dropped": shared.webhooks.stats().dropped,
        },
    }))
}

/// Whether the catalog is open, and its failure and recovery counters.
fn catalog_json(shared: &Shared) -> serde_json::Value {
    let st = shared
        .catalog
        .as_ref()
        .map(|c| c.stats())
        .unwrap_or_default();
    serde_json::json!({
        "open": shared.catalog.is_some(),
        "write_failures": st.write_failures,
        "reopened": st.reopened,
    })
}

fn tile_cache_json(shared: &Shared) -> serde_json::Value {
    let (entries, bytes, hits, misses) = shared.tile_cache.stats();
    let busy = shared.tiles_busy.load(std::sync::atomic::Ordering::Relaxed);
    serde_json::json!({"entries": entries, "bytes": bytes, "hits": hits, "misses": misses, "refused_busy": busy})
}

fn wms_exceptions(shared: &Shared) -> BTreeMap<&'static str, u64> {
    shared
        .wms_exceptions
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default()
}

/// A `400` in the STAC API's error shape.
fn bad_request(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "code": "InvalidParameterValue", "description": description })),
    )
        .into_response()
}

/// Pass records on disk, and closed passes whose record is not on disk yet (`"archive":
/// "incomplete"`), newest first (summary fields only), a page at a time from the pass index:
/// `?limit=` (1..=1000, default 100) and `?before=` (the `next` cursor of the previous page, or
/// a pass id). Other parameters are refused (400).
async fn passes(
    State(shared): State<Arc<Shared>>,
    query: Result<
        axum::extract::Query<Vec<(String, String)>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Response {
    use archive::pass_index::{DEFAULT_LIMIT, MAX_LIMIT};
    let Ok(axum::extract::Query(params)) = query else {
        return bad_request("the query string is not valid");
    };
    let (mut limit, mut before) = (None, None);
    for (k, v) in params {
        let slot = match k.as_str() {
            "limit" => &mut limit,
            "before" => &mut before,
            _ => return bad_request(&format!("unknown parameter `{k}` (known: limit, before)")),
        };
        if slot.replace(v).is_some() {
            return bad_request(&format!("parameter `{k}` given twice"));
        }
    }
    let limit = match limit.as_deref().map(str::parse::<usize>) {
        None => DEFAULT_LIMIT,
        Some(Ok(l)) if (1..=MAX_LIMIT).contains(&l) => l,
        Some(_) => {
            return bad_request(&format!(
                "`limit` must be 1..={MAX_LIMIT}, got {:?}",
                limit.unwrap_or_default()
            ))
        }
    };
    let pending: Vec<archive::record::PassSummary> = shared
        .pending_records
        .lock()
        .map(|p| p.values().cloned().collect())
        .unwrap_or_default();
    // Passes whose records are only in the object store (an API node's, other stations').
    super::store_read::list_passes_unless_fresh(&shared, super::store_read::PASS_LISTING_FRESH)
        .await;
    let s = shared.clone();
    let page = tokio::task::spawn_blocking(move || {
        s.pass_index.refresh();
        let key = match before.as_deref() {
            None => None,
            Some(b) => match s.pass_index.resolve(b) {
                Some(k) => Some(k),
                None => {
                    return Err(format!(
                        "`before` is neither a cursor nor a listed pass id: {b:?}"
                    ))
                }
            },
        };
        Ok(s.pass_index.page(key.as_ref(), limit, pending))
    })
    .await;
    let page = match page {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return bad_request(&e),
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "pass index failed").into_response(),
    };
    let links: Vec<serde_json::Value> = page
        .next
        .iter()
        .map(|n| {
            serde_json::json!({
                "rel": "next",
                "href": format!("/api/v1/passes?limit={limit}&before={n}"),
                "type": "application/json",
            })
        })
        .collect();
    Json(serde_json::json!({
        "passes": page.passes,
        "total": page.total,
        "limit": limit,
        "next": page.next,
        "links": links,
    }))
    .into_response()
}

/// One of the fixed files of a pass's archive directory (`pass.json`, `plot.png`,
/// `products/products.json`), after checking the id is a plain name.
async fn pass_file(shared: &Shared, id: &str, name: &str, content_type: &'static str) -> Response {
    if !valid_pass_id(id) {
        return (StatusCode::BAD_REQUEST, "invalid pass id").into_response();
    }
    let path = shared.archive.join("passes").join(id).join(name);
    let regular = tokio::fs::symlink_metadata(&path)
        .await
        .is_ok_and(|m| m.file_type().is_file());
    match tokio::fs::read(&path).await {
        Ok(bytes) if regular => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        // Not in the local archive (an API node): the store's copy, if it has one.
        _ => match super::store_read::small_file(shared, &format!("passes/{id}/{name}")).await {
            Ok(Some(bytes)) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
            Ok(None) => (StatusCode::NOT_FOUND, "not found").into_response(),
            Err(unavailable) => unavailable,
        },
    }
}

async fn pass(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    pass_file(&shared, &id, "pass.json", "application/json").await
}

async fn plot(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    pass_file(&shared, &id, "plot.png", "image/png").await
}

/// The pass timeline (`timeline.json`: frames/s, RS corrections/s, lock, gaps), which
/// `plot.png` draws; 404 for passes recorded before it existed and crash-recovered ones.
async fn timeline(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    pass_file(&shared, &id, "timeline.json", "application/json").await
}

/// The pass's product listing (`products.json`), once made.
async fn products(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    pass_file(&shared, &id, "products/products.json", "application/json").await
}

/// One product file: only the files the pass's `products.json` lists (and the listing itself),
/// with HTTP Range; anything else in the directory (temp files, GCP swaths, leftovers) is 404.
async fn product_file(
    State(shared): State<Arc<Shared>>,
    params: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "not found").into_response();
    let Ok(Path((id, file))) = params else {
        return not_found();
    };
    if !valid_pass_id(&id) {
        return (StatusCode::BAD_REQUEST, "invalid pass id").into_response();
    }
    let plain = !file.is_empty()
        && file.len() <= 80
        && !file.starts_with('.')
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        return not_found();
    }
    if file == "products.json" {
        return pass_file(&shared, &id, "products/products.json", "application/json").await;
    }
    let dir = shared.archive.join("passes").join(&id).join("products");
    // Not in the local archive (an API node): the listing and the file come from the store.
    let (text, local) = match tokio::fs::read(dir.join("products.json")).await {
        Ok(t) => (bytes::Bytes::from(t), true),
        Err(_) => {
            match super::store_read::small_file(
                &shared,
                &format!("passes/{id}/products/products.json"),
            )
            .await
            {
                Ok(Some(t)) => (t, false),
                Ok(None) => return not_found(),
                Err(unavailable) => return unavailable,
            }
        }
    };
    let Ok(listing) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return not_found();
    };
    let listed = listing["products"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["path"]
                .as_str()
                .and_then(|p| std::path::Path::new(p).file_name())
                .is_some_and(|n| n == file.as_str())
        });
    let Some(product) = listed else {
        return not_found();
    };
    let content_type = match product["media_type"].as_str() {
        Some(t) => t,
        None => match file.rsplit_once('.').map(|(_, e)| e) {
            Some("png") => "image/png",
            Some("tif") => "image/tiff; application=geotiff",
            Some("json") => "application/json",
            _ => "application/octet-stream",
        },
    };
    if local {
        super::stac::serve_file(dir.join(&file), Some(content_type), req).await
    } else {
        let href = format!("passes/{id}/products/{file}");
        super::store_read::serve(shared, &href, Some(content_type), req).await
    }
}

/// The TLE sets in the store.
async fn tle(State(shared): State<Arc<Shared>>) -> Response {
    let archive = shared.archive.clone();
    let list = tokio::task::spawn_blocking(move || archive::tle::list(&archive))
        .await
        .unwrap_or_default();
    Json(serde_json::json!({ "tle": list })).into_response()
}

/// Prometheus text exposition. Metric names live here and nowhere else.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut m = String::new();
    let inputs = snapshot(&shared);
    let mut family = |name: &str, kind: &str, help: &str, rows: Vec<(String, u64)>| {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(m, "{name}{{{labels}}} {v}");
        }
    };
    let by_input = |f: &dyn Fn(&super::InputStatus) -> u64| -> Vec<(String, u64)> {
        inputs
            .iter()
            .map(|s| (format!("input=\"{}\"", s.name), f(s)))
            .collect()
    };
    family(
        "downlink_merges_total",
        "counter",
        "Merges of station copies of a pass, by result (ok, failed: see the log).",
        vec![
            (
                "result=\"ok\"".to_owned(),
                super::merge::MERGES_OK.load(std::sync::atomic::Ordering::Relaxed),
            ),
            (
                "result=\"failed\"".to_owned(),
                super::merge::MERGES_FAILED.load(std::sync::atomic::Ordering::Relaxed),
            ),
        ],
    );
    let (alert_runs, alert_failures) = shared.alerts.totals();
    family(
        "downlink_alert_runs_total",
        "counter",
        "Change-alert runs that published an alerts item ([[alerts]]).",
        vec![(String::new(), alert_runs)],
    );
    family(
        "downlink_alert_run_failures_total",
        "counter",
        "Change-alert runs that published nothing, by reason (too_few_items, input, io).",
        alert_failures
            .into_iter()
            .map(|(r, v)| (format!("reason=\"{r}\""), v))
            .collect(),
    );
    family(
        "downlink_input_datagrams_total",
        "counter",
        "Datagrams received.",
        by_input(&|s| s.datagrams),
    );
    family(
        "downlink_input_bytes_total",
        "counter",
        "Bytes received.",
        by_input(&|s| s.bytes),
    );
    family(
        "downlink_input_bytes_without_pass_total",
        "counter",
        "Bytes decoded outside any pass (noise, no lock).",
        by_input(&|s| s.bytes_without_pass),
    );
    family(
        "downlink_input_dropped_total",
        "counter",
        "Datagrams dropped, by reason.",
        inputs
            .iter()
            .flat_map(|s| {
                s.drops
                    .iter()
                    .map(|(r, n)| (format!("input=\"{}\",reason=\"{r}\"", s.name), *n))
            })
            .collect(),
    );
    family(
        "downlink_sync_locked",
        "gauge",
        "1 while the frame synchronizer is locked.",
        by_input(&|s| u64::from(s.sync_state == super::SyncState::Locked)),
    );
    family(
        "downlink_pass_active",
        "gauge",
        "1 while a pass is in progress.",
        by_input(&|s| u64::from(s.pass.is_some())),
    );
    family(
        "downlink_passes_total",
        "counter",
        "Passes closed.",
        by_input(&|s| s.passes),
    );
    family(
        "downlink_input_reconnects_total",
        "counter",
        "tcp-connect inputs: connection attempts that failed or ended.",
        by_input(&|s| s.reconnects),
    );
    // Passes in progress: the input's own and those retired decoders are finishing.
    let cur = |s: &super::InputStatus, f: &dyn Fn(&decoder::Stats) -> u64| {
        s.current.as_ref().map_or(0, f) + s.retiring.values().map(f).sum::<u64>()
    };
    family(
        "downlink_frames_good_total",
        "counter",
        "Good transfer frames.",
        by_input(&|s| s.totals.frames_good + cur(s, &|c| c.frames.good)),
    );
    family(
        "downlink_frames_rejected_total",
        "counter",
        "Rejected transfer frames.",
        by_input(&|s| s.totals.frames_rejected + cur(s, &|c| c.frames.rejected.total())),
    );
    family(
        "downlink_rs_codewords_corrected_total",
        "counter",
        "Reed-Solomon codewords corrected.",
        by_input(&|s| s.totals.rs_corrected + cur(s, &|c| c.rs.corrected)),
    );
    family(
        "downlink_rs_codewords_uncorrectable_total",
        "counter",
        "Reed-Solomon codewords beyond correction.",
        by_input(&|s| s.totals.rs_uncorrectable + cur(s, &|c| c.rs.uncorrectable)),
    );
    family(
        "downlink_packets_total",
        "counter",
        "Space packets delivered.",
        by_input(&|s| s.totals.packets + cur(s, &|c| c.packets.total)),
    );
    family(
        "downlink_channel_bits_total",
        "counter",
        "Soft input: channel bits compared with the re-encoded Viterbi output.",
        by_input(&|s| {
            s.totals.channel_bits
                + cur(s, &|c| {
                    c.inner.as_ref().map_or(0, |i| i.channel_bits_compared)
                })
        }),
    );
    family(
        "downlink_channel_bit_errors_total",
        "counter",
        "Soft input: channel bits that disagree with the re-encoded Viterbi output (the estimated channel BER is its rate over downlink_channel_bits_total's).",
        by_input(&|s| {
            s.totals.channel_bit_errors + cur(s, &|c| c.inner.as_ref().map_or(0, |i| i.channel_bit_errors))
        }),
    );
    family(
        "downlink_phase_reacquisitions_total",
        "counter",
        "Soft input: QPSK phase lock lost and found again mid-pass (phase jump, symbol slip).",
        by_input(&|s| {
            s.totals.phase_reacquisitions
                + cur(s, &|c| c.inner.as_ref().map_or(0, |i| i.reacquisitions))
        }),
    );
    family(
        "downlink_phase_case",
        "gauge",
        "Soft input: 1 for the QPSK phase case (rotation, I/Q swap) the pass in progress is locked in.",
        inputs
            .iter()
            .filter_map(|s| {
                let case = s.current.as_ref()?.inner.as_ref()?.phase_case?;
                Some((format!("input=\"{}\",case=\"{case}\"", s.name), 1))
            })
            .collect(),
    );
    family(
        "downlink_frames_unarchived_total",
        "counter",
        "Good frames the archive does not hold (write failures).",
        by_input(&|s| s.totals.frames_unarchived),
    );
    let errors = shared
        .archive_errors
        .lock()
        .map(|e| e.clone())
        .unwrap_or_default();
    family(
        "downlink_archive_io_errors_total",
        "counter",
        "Archive write failures, by operation (create, write, sync, record).",
        super::ARCHIVE_OPS
            .iter()
            .map(|op| (format!("op=\"{op}\""), errors.get(op).copied().unwrap_or(0)))
            .collect(),
    );
    let recovered = shared
        .recovered_passes
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    family(
        "downlink_passes_recovered_total",
        "counter",
        "Passes interrupted by a crash found at start, by outcome (recovered: record rebuilt from the raw CADUs; failed; left: input no longer configured).",
        super::RECOVERY_RESULTS
            .iter()
            .map(|r| (format!("result=\"{r}\""), recovered.get(r).copied().unwrap_or(0)))
            .collect(),
    );
    let pending = shared.pending_records.lock().map(|p| p.len()).unwrap_or(0);
    let r = reloads(&shared);
    let _ = writeln!(
        m,
        "# HELP downlink_pass_records_pending Closed passes whose record is not on disk yet.\n# TYPE downlink_pass_records_pending gauge\n\
         downlink_pass_records_pending {pending}\n\
         # HELP downlink_reloads_total Configuration reloads (SIGHUP), by result.\n# TYPE downlink_reloads_total counter\n\
         downlink_reloads_total{{result=\"ok\"}} {}\n\
         downlink_reloads_total{{result=\"failed\"}} {}\n\
         # HELP downlink_config_generation Configuration generation in force (1 at start, +1 per applied reload).\n# TYPE downlink_config_generation gauge\n\
         downlink_config_generation {}",
        r.ok, r.failed, r.generation
    );
    let (entries, bytes, hits, misses) = shared.tile_cache.stats();
    let busy = shared.tiles_busy.load(std::sync::atomic::Ordering::Relaxed);
    let _ = writeln!(
        m,
        "# HELP downlink_tile_cache_requests_total Map tile requests by cache result.\n# TYPE downlink_tile_cache_requests_total counter\n\
         downlink_tile_cache_requests_total{{result=\"hit\"}} {hits}\n\
         downlink_tile_cache_requests_total{{result=\"miss\"}} {misses}\n\
         # HELP downlink_tile_cache_entries Tiles in the cache.\n# TYPE downlink_tile_cache_entries gauge\n\
         downlink_tile_cache_entries {entries}\n\
         # HELP downlink_tile_cache_bytes Bytes of tiles in the cache.\n# TYPE downlink_tile_cache_bytes gauge\n\
         downlink_tile_cache_bytes {bytes}\n\
         # HELP downlink_tiles_refused_busy_total Tile requests answered 503 because the render queue was full.\n# TYPE downlink_tiles_refused_busy_total counter\n\
         downlink_tiles_refused_busy_total {busy}"
    );
    let _ = writeln!(
        m,
        "# HELP downlink_wms_exceptions_total WMS requests answered with a service exception, by code.\n# TYPE downlink_wms_exceptions_total counter"
    );
    for (code, n) in wms_exceptions(&shared) {
        let _ = writeln!(m, "downlink_wms_exceptions_total{{code=\"{code}\"}} {n}");
    }
    let problems = shared.health.problems();
    let _ = writeln!(
        m,
        "# HELP downlink_degraded 1 while a component keeps the daemon from doing its whole job.\n# TYPE downlink_degraded gauge"
    );
    for c in super::HEALTH_COMPONENTS {
        let _ = writeln!(
            m,
            "downlink_degraded{{component=\"{c}\"}} {}",
            u64::from(problems.contains_key(c))
        );
    }
    let w = shared.webhooks.stats();
    let _ = writeln!(
        m,
        "# HELP downlink_webhook_deliveries_total Webhook deliveries, by result.\n# TYPE downlink_webhook_deliveries_total counter\n\
         downlink_webhook_deliveries_total{{result=\"sent\"}} {}\n\
         downlink_webhook_deliveries_total{{result=\"failed\"}} {}\n\
         downlink_webhook_deliveries_total{{result=\"dropped\"}} {}",
        w.sent, w.failed, w.dropped
    );
    let p = shared
        .products
        .status
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let _ = writeln!(
        m,
        "# HELP downlink_product_passes_total Passes given to the product step, by result.\n# TYPE downlink_product_passes_total counter\n\
         downlink_product_passes_total{{result=\"ok\"}} {}\n\
         downlink_product_passes_total{{result=\"failed\"}} {}\n\
         downlink_product_passes_total{{result=\"dropped\"}} {}\n\
         # HELP downlink_product_passes_deferred_total Passes submitted while the product queue was full (their job record waits on disk).\n# TYPE downlink_product_passes_deferred_total counter\n\
         downlink_product_passes_deferred_total {}\n\
         # HELP downlink_product_passes_recovered_total Product jobs taken up from their record (at start, or deferred).\n# TYPE downlink_product_passes_recovered_total counter\n\
         downlink_product_passes_recovered_total {}\n\
         # HELP downlink_product_retries_total Failed product attempts that will be retried.\n# TYPE downlink_product_retries_total counter\n\
         downlink_product_retries_total {}\n\
         # HELP downlink_product_catalog_failed_total Product attempts whose set could not be catalogued.\n# TYPE downlink_product_catalog_failed_total counter\n\
         downlink_product_catalog_failed_total {}\n\
         # HELP downlink_product_leftovers_removed_total Leftovers of interrupted product jobs removed at start.\n# TYPE downlink_product_leftovers_removed_total counter\n\
         downlink_product_leftovers_removed_total {}\n\
         # HELP downlink_product_passes_queued Passes waiting for products.\n# TYPE downlink_product_passes_queued gauge\n\
         downlink_product_passes_queued {}",
        p.ok, p.failed, p.dropped, p.deferred, p.recovered, p.retried, p.catalog_failed, p.cleaned,
        p.queued + p.pending
    );
    store_metrics(&mut m, &shared);
    store_read_metrics(&mut m, &shared);
    let c = shared
        .catalog
        .as_ref()
        .map(|c| c.stats())
        .unwrap_or_default();
    let _ = writeln!(
        m,
        "# HELP downlink_catalog_write_failures_total Catalog writes that failed or were refused (e.g. the archive directory missing).\n# TYPE downlink_catalog_write_failures_total counter\n\
         downlink_catalog_write_failures_total {}\n\
         # HELP downlink_catalog_reopened_total Times the catalog database was reopened at its path after the file there vanished or changed.\n# TYPE downlink_catalog_reopened_total counter\n\
         downlink_catalog_reopened_total {}",
        c.write_failures, c.reopened
    );
    let h = shared.http.snapshot();
    let _ = writeln!(
        m,
        "# HELP downlink_http_connections_open HTTP connections open.\n# TYPE downlink_http_connections_open gauge\n\
         downlink_http_connections_open {}\n\
         # HELP downlink_http_connections_max The HTTP connection cap in force (http.max_connections, lowered to fit the open-file limit).\n# TYPE downlink_http_connections_max gauge\n\
         downlink_http_connections_max {}\n\
         # HELP downlink_http_connections_accepted_total HTTP connections accepted.\n# TYPE downlink_http_connections_accepted_total counter\n\
         downlink_http_connections_accepted_total {}\n\
         # HELP downlink_http_connections_evicted_total Idle HTTP connections closed to make room at the cap.\n# TYPE downlink_http_connections_evicted_total counter\n\
         downlink_http_connections_evicted_total {}\n\
         # HELP downlink_http_requests_total HTTP requests received.\n# TYPE downlink_http_requests_total counter\n\
         downlink_http_requests_total {}\n\
         # HELP downlink_http_requests_shed_total HTTP requests answered 503 because http.max_concurrency were in progress.\n# TYPE downlink_http_requests_shed_total counter\n\
         downlink_http_requests_shed_total {}",
        h.connections_open,
        h.budget.max_connections,
        h.connections_accepted,
        h.evicted,
        h.requests,
        h.requests_shed
    );
    let _ = writeln!(
        m,
        "# HELP downlink_http_responses_total HTTP responses of the API by status class (4xx: requests refused as bad).\n# TYPE downlink_http_responses_total counter"
    );
    for (class, n) in &h.responses {
        let _ = writeln!(m, "downlink_http_responses_total{{class=\"{class}\"}} {n}");
    }
    let _ = writeln!(
        m,
        "# HELP downlink_http_connections_refused_total HTTP connections refused, by reason.\n# TYPE downlink_http_connections_refused_total counter"
    );
    for (reason, n) in &h.refused {
        let _ = writeln!(
            m,
            "downlink_http_connections_refused_total{{reason=\"{reason}\"}} {n}"
        );
    }
    let _ = writeln!(
        m,
        "# HELP downlink_http_timeouts_total HTTP connections or request bodies timed out, by kind.\n# TYPE downlink_http_timeouts_total counter"
    );
    for (kind, n) in &h.timed_out {
        let _ = writeln!(m, "downlink_http_timeouts_total{{kind=\"{kind}\"}} {n}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m).into_response()
}

/// `GET /api/v1/alerts?collection=&bbox=w,s,e,n&datetime=&confidence=low,high&min_area_ha=`:
/// the newest alerts of every `[[alerts]]` collection (or of one), as one RFC 7946
/// FeatureCollection; each feature carries its source `collection`.
async fn alerts(
    State(shared): State<Arc<Shared>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let bad = |m: String| {
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"code": "InvalidParameterValue", "description": m})),
        )
            .into_response()
    };
    let mut query = crate::alerts::Query {
        collection: q.get("collection").filter(|c| !c.is_empty()).cloned(),
        ..Default::default()
    };
    if let Some(b) = q.get("bbox").filter(|b| !b.is_empty()) {
        let v: Vec<f64> = b.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        match v[..] {
            [w, s, e, n] if s <= n => query.bbox = Some([w, s, e, n]),
            _ => return bad(format!("bbox must be w,s,e,n in degrees, got {b:?}")),
        }
    }
    if let Some(d) = q.get("datetime").filter(|d| !d.is_empty()) {
        match archive::catalog::DatetimeFilter::parse(d) {
            Ok(f) => query.datetime = Some(f),
            Err(e) => return bad(e.to_string()),
        }
    }
    if let Some(c) = q.get("confidence").filter(|c| !c.is_empty()) {
        let list: Vec<String> = c.split(',').map(|x| x.trim().to_owned()).collect();
        if let Some(x) = list
            .iter()
            .find(|x| !["low", "high", "contradicted"].contains(&x.as_str()))
        {
            return bad(format!(
                "confidence takes low, high, contradicted (comma-separated), got {x:?}"
            ));
        }
        query.confidence = Some(list);
    }
    if let Some(m) = q.get("min_area_ha").filter(|m| !m.is_empty()) {
        match m.parse::<f64>() {
            Ok(v) if v.is_finite() => query.min_area_ha = Some(v),
            _ => return bad(format!("min_area_ha must be a number, got {m:?}")),
        }
    }
    let Some(catalog) = shared.catalog.clone() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"code": "Unavailable", "description": "the catalog is not open"})),
        )
            .into_response();
    };
    let archive = shared.archive.clone();
    match tokio::task::spawn_blocking(move || crate::alerts::query(&*catalog, &archive, &query))
        .await
    {
        Ok(Ok(fc)) => ([(header::CONTENT_TYPE, "application/geo+json")], Json(fc)).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({"code": "ServerError", "description": format!("{e:#}")})),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The uploader's counters (`archive.store`): zero while the local archive is the store.
fn store_metrics(m: &mut String, shared: &Shared) {
    let Ok(u) = shared.uploads.status.lock().map(|s| s.clone()) else {
        return;
    };
    let _ = writeln!(
        m,
        "# HELP downlink_store_queued_passes Closed passes not yet uploaded to the object store.\n# TYPE downlink_store_queued_passes gauge\n\
         downlink_store_queued_passes {}\n\
         # HELP downlink_store_queued_bytes Bytes of those passes not yet in the object store.\n# TYPE downlink_store_queued_bytes gauge\n\
         downlink_store_queued_bytes {}\n\
         # HELP downlink_store_uploaded_passes_total Passes uploaded, verified and marked uploaded.\n# TYPE downlink_store_uploaded_passes_total counter\n\
         downlink_store_uploaded_passes_total {}\n\
         # HELP downlink_store_uploaded_objects_total Objects uploaded and verified (size, ETag).\n# TYPE downlink_store_uploaded_objects_total counter\n\
         downlink_store_uploaded_objects_total {}\n\
         # HELP downlink_store_uploaded_bytes_total Bytes of those objects.\n# TYPE downlink_store_uploaded_bytes_total counter\n\
         downlink_store_uploaded_bytes_total {}\n\
         # HELP downlink_store_passes_taken_up_total Passes found not uploaded at start or by a rescan.\n# TYPE downlink_store_passes_taken_up_total counter\n\
         downlink_store_passes_taken_up_total {}\n\
         # HELP downlink_store_upload_failures_total Failed upload attempts (each retried), by reason.\n# TYPE downlink_store_upload_failures_total counter",
        u.queued_passes, u.queued_bytes, u.uploaded_passes, u.uploaded_objects, u.uploaded_bytes, u.taken_up
    );
    for (reason, n) in &u.failures {
        let _ = writeln!(
            m,
            "downlink_store_upload_failures_total{{reason=\"{reason}\"}} {n}"
        );
    }
}

/// Reads from the object store (assets and tile sources not under `archive.path`).
fn store_read_metrics(m: &mut String, shared: &Shared) {
    let Ok(r) = shared.store_reads.status.lock().map(|s| s.clone()) else {
        return;
    };
    let _ = writeln!(
        m,
        "# HELP downlink_store_read_assets_total Asset requests answered from the object store.\n# TYPE downlink_store_read_assets_total counter\n\
         downlink_store_read_assets_total {}\n\
         # HELP downlink_store_read_bytes_total Body bytes of those answers.\n# TYPE downlink_store_read_bytes_total counter\n\
         downlink_store_read_bytes_total {}\n\
         # HELP downlink_store_read_not_found_total Asset requests for objects the store does not hold.\n# TYPE downlink_store_read_not_found_total counter\n\
         downlink_store_read_not_found_total {}\n\
         # HELP downlink_store_read_failures_total Reads from the object store that failed (answered 503), by reason.\n# TYPE downlink_store_read_failures_total counter",
        r.assets, r.bytes, r.not_found
    );
    for (reason, n) in &r.failures {
        let _ = writeln!(
            m,
            "downlink_store_read_failures_total{{reason=\"{reason}\"}} {n}"
        );
    }
}
