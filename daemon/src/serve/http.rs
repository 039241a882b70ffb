//! Operator HTTP API: `/api/v1/status`, `/api/v1/passes`, `/api/v1/passes/{id}` (+ `plot.png`,
//! `products`, `products/{file}`), `/api/v1/tle`, `/metrics`; the STAC API and the web map are merged in.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::archive::valid_pass_id;
use super::Shared;

/// The operator API.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/health", get(health))
        .route("/api/v1/passes", get(passes))
        .route("/api/v1/passes/{id}", get(pass))
        .route("/api/v1/passes/{id}/plot.png", get(plot))
        .route("/api/v1/passes/{id}/products", get(products))
        .route("/api/v1/passes/{id}/products/{file}", get(product_file))
        .route("/api/v1/tle", get(tle))
        .route("/metrics", get(metrics))
        .with_state(shared.clone())
        .merge(super::stac::router(shared))
        .merge(super::web::router())
}

fn snapshot(shared: &Shared) -> Vec<super::InputStatus> {
    (0..shared.inputs.len())
        .filter_map(|i| shared.with_input(i, |s| s.clone()))
        .collect()
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
        "last_reload": shared.last_reload.lock().map(|r| r.clone()).unwrap_or(None),
        "products": shared.products.status.lock().map(|s| s.clone()).unwrap_or_default(),
        "tile_cache": tile_cache_json(&shared),
        "catalog": shared.catalog.is_some(),
        "webhooks": {
            "sent": shared.webhooks.stats().sent,
            "failed": shared.webhooks.stats().failed,
            "dropped": shared.webhooks.stats().dropped,
        },
    }))
}

fn tile_cache_json(shared: &Shared) -> serde_json::Value {
    let (entries, bytes, hits, misses) = shared.tile_cache.stats();
    let busy = shared.tiles_busy.load(std::sync::atomic::Ordering::Relaxed);
    serde_json::json!({"entries": entries, "bytes": bytes, "hits": hits, "misses": misses, "refused_busy": busy})
}

/// Pass records on disk, newest first (summary fields only).
async fn passes(State(shared): State<Arc<Shared>>) -> Response {
    let dir = shared.archive.join("passes");
    let list = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let Ok(text) = std::fs::read(e.path().join("pass.json")) else {
                    continue;
                };
                let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
                    continue;
                };
                out.push(serde_json::json!({
                    "id": v["id"], "input": v["input"], "spacecraft": v["spacecraft"],
                    "aos": v["aos"], "los": v["los"],
                    "frames_good": v["counters"]["frames"]["good"],
                    "packets": v["counters"]["packets"]["total"],
                    "rs_uncorrectable": v["counters"]["rs"]["uncorrectable"],
                }));
            }
        }
        out.sort_by(|a, b| b["aos"].as_str().cmp(&a["aos"].as_str()));
        out
    })
    .await
    .unwrap_or_default();
    Json(serde_json::json!({ "passes": list })).into_response()
}

/// A file of a pass's archive directory, after checking the id is a plain name.
async fn pass_file(shared: &Shared, id: &str, name: &str, content_type: &'static str) -> Response {
    if !valid_pass_id(id) {
        return (StatusCode::BAD_REQUEST, "invalid pass id").into_response();
    }
    let path = shared.archive.join("passes").join(id).join(name);
    match tokio::fs::read(&path).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

async fn pass(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    pass_file(&shared, &id, "pass.json", "application/json").await
}

async fn plot(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    pass_file(&shared, &id, "plot.png", "image/png").await
}

/// The pass's product listing (`products.json`), once made.
async fn products(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    pass_file(&shared, &id, "products/products.json", "application/json").await
}

/// One product file. Names are plain file names (no separators, no leading dot).
async fn product_file(
    State(shared): State<Arc<Shared>>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    let plain = !file.is_empty()
        && file.len() <= 80
        && !file.starts_with('.')
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        return (StatusCode::BAD_REQUEST, "invalid product name").into_response();
    }
    let content_type = match file.rsplit_once('.').map(|(_, e)| e) {
        Some("png") => "image/png",
        Some("tif") => "image/tiff; application=geotiff",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    pass_file(&shared, &id, &format!("products/{file}"), content_type).await
}

/// The TLE sets in the store.
async fn tle(State(shared): State<Arc<Shared>>) -> Response {
    let archive = shared.archive.clone();
    let list = tokio::task::spawn_blocking(move || crate::tle_store::list(&archive))
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
        by_input(&|s| u64::from(s.sync_state == "locked")),
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
    let cur = |s: &super::InputStatus, f: &dyn Fn(&decoder::Stats) -> u64| {
        s.current.as_ref().map_or(0, f)
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m).into_response()
}
