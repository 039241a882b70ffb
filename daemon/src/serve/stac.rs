//! STAC API (v1.0.0: core, collections, features, item search) at `/stac`, asset downloads with
//! HTTP Range at `/stac/assets/…`; the map tiles, TileJSON and WMTS are in `tiles`.
//!
//! `/stac/assets/{href}` serves a file only when a catalogued item has an asset with exactly
//! that href (looked up in the catalog on every request, so a new item is served at once and a
//! deleted one no longer): the database, raw passes, frames, pass records, temp files and
//! anything else under the archive answer 404.
//!
//! Hrefs are stored relative to the archive; every answer rewrites them to absolute URLs on the
//! host the client used (`Host`, `X-Forwarded-Proto`), so the same archive serves through a
//! proxy or on loopback. Bad parameters get a 400 with a JSON `{code, description}`, unknown
//! ids 404 — never a 500 for client input.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use storage::catalog::{Catalog, CatalogError, DatetimeFilter, SearchParams};

use super::Shared;

const STAC_VERSION: &str = "1.1.0";
const CONFORMANCE: &[&str] = &[
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
];
const GEOJSON: &str = "application/geo+json";

/// The STAC routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/stac", get(landing))
        .route("/stac/", get(landing))
        .route("/stac/conformance", get(conformance))
        .route("/stac/api", get(service_desc))
        .route("/stac/api.html", get(service_doc))
        .route("/stac/collections", get(collections))
        .route("/stac/collections/{cid}", get(collection))
        .route("/stac/collections/{cid}/items", get(items))
        .route("/stac/collections/{cid}/items/{iid}", get(item))
        .route("/stac/search", get(search_get).post(search_post))
        .route("/stac/assets/{*href}", get(asset))
        .with_state(shared)
}

/// A client error or a server failure, as STAC API error JSON.
#[derive(Debug)]
pub(super) struct ApiError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = if self.0.is_client_error() {
            "BadRequest"
        } else {
            "ServerError"
        };
        let mut r = (self.0, Json(json!({"code": code, "description": self.1}))).into_response();
        if self.0 == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::InvalidParams { .. }
            | CatalogError::InvalidToken
            | CatalogError::Geometry(_)
            | CatalogError::Id(_) => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            CatalogError::NoSuchCollection(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            CatalogError::Gone { .. } => {
                tracing::warn!(error = %e, "catalog");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the catalog is unavailable: its archive directory is missing".into(),
                )
            }
            _ => {
                tracing::error!(error = %e, "catalog");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, "catalog error".into())
            }
        }
    }
}

pub(super) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

pub(super) fn not_found(what: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("{what} not found"))
}

pub(super) fn catalog(shared: &Shared) -> Result<Arc<dyn Catalog>, ApiError> {
    shared.catalog.clone().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the catalog is unavailable (see the daemon log)".into(),
        )
    })
}

/// Runs catalog work off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "worker failed".into()))?
}

/// `http(s)://host` as the client addressed us.
pub(super) fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .unwrap_or("127.0.0.1");
    let proto = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{proto}://{host}")
}

fn link(rel: &str, href: &str, ty: &str) -> Value {
    let title = match rel {
        "self" => "This document",
        "root" => "Downlink STAC API",
        "parent" => "Parent",
        "conformance" => "Conformance classes",
        "data" => "Collections",
        "service-desc" => "OpenAPI 3.0 description",
        "service-doc" => "API documentation (HTML)",
        "items" => "Items",
        "collection" => "Collection",
        "next" => "Next page",
        "via" => "Pass record",
        _ => "",
    };
    if title.is_empty() {
        json!({"rel": rel, "href": href, "type": ty})
    } else {
        json!({"rel": rel, "href": href, "type": ty, "title": title})
    }
}

async fn landing(headers: HeaderMap) -> Json<Value> {
    let b = base_url(&headers);
    Json(json!({
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "downlink",
        "title": "Downlink ground station archive",
        "description": "Scenes received and archived by this Downlink ground station, and rasters imported into its archive.",
        "conformsTo": CONFORMANCE,
        "links": [
            link("self", &format!("{b}/stac"), "application/json"),
            link("root", &format!("{b}/stac"), "application/json"),
            link("conformance", &format!("{b}/stac/conformance"), "application/json"),
            link("service-desc", &format!("{b}/stac/api"), OPENAPI),
            link("service-doc", &format!("{b}/stac/api.html"), "text/html"),
            link("data", &format!("{b}/stac/collections"), "application/json"),
            {"rel": "search", "href": format!("{b}/stac/search"), "type": GEOJSON, "method": "GET"},
            {"rel": "search", "href": format!("{b}/stac/search"), "type": GEOJSON, "method": "POST"},
        ],
    }))
}

const OPENAPI: &str = "application/vnd.oai.openapi+json;version=3.0";
const OPENAPI_DOC: &str = include_str!("stac-openapi.json");

/// The OpenAPI 3.0 description of this API (`rel=service-desc`), with its server URL.
fn openapi(b: &str) -> Result<Value, ApiError> {
    let mut v: Value = serde_json::from_str(OPENAPI_DOC)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    v["servers"] = json!([{ "url": format!("{b}/stac") }]);
    Ok(v)
}

async fn service_desc(headers: HeaderMap) -> Result<Response, ApiError> {
    let v = openapi(&base_url(&headers))?;
    Ok(([(header::CONTENT_TYPE, OPENAPI)], Json(v)).into_response())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A human-readable list of the operations (`rel=service-doc`), made from the OpenAPI document.
async fn service_doc(headers: HeaderMap) -> Result<Response, ApiError> {
    let b = base_url(&headers);
    let v = openapi(&b)?;
    let mut rows = String::new();
    if let Some(paths) = v["paths"].as_object() {
        for (path, ops) in paths {
            for (method, op) in ops.as_object().into_iter().flatten() {
                rows.push_str(&format!(
                    "<tr><td><code>{}</code></td><td><code>{}{}</code></td><td>{}</td></tr>\n",
                    html_escape(&method.to_uppercase()),
                    html_escape(&format!("{b}/stac")),
                    html_escape(path),
                    html_escape(op["summary"].as_str().unwrap_or_default()),
                ));
            }
        }
    }
    let title = html_escape(v["info"]["title"].as_str().unwrap_or("STAC API"));
    let desc = html_escape(v["info"]["description"].as_str().unwrap_or_default());
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head><body>\n\
         <h1>{title}</h1><p>{desc}</p><p>OpenAPI 3.0: <a href=\"{b}/stac/api\">{b}/stac/api</a> \
         · web map: <a href=\"{b}/map/\">{b}/map/</a></p>\n<table>\n{rows}</table></body></html>\n"
    );
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response())
}

async fn conformance() -> Json<Value> {
    Json(json!({ "conformsTo": CONFORMANCE }))
}

fn collection_json(c: &stac::Collection, b: &str) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(c)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let id = c.id.clone();
    v["links"] = json!([
        link(
            "self",
            &format!("{b}/stac/collections/{id}"),
            "application/json"
        ),
        link("root", &format!("{b}/stac"), "application/json"),
        link("parent", &format!("{b}/stac"), "application/json"),
        link(
            "items",
            &format!("{b}/stac/collections/{id}/items"),
            GEOJSON
        ),
    ]);
    Ok(v)
}

async fn collections(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let cat = catalog(&shared)?;
    let b = base_url(&headers);
    let list = blocking(move || Ok(cat.collections()?)).await?;
    let out: Result<Vec<Value>, ApiError> = list.iter().map(|c| collection_json(c, &b)).collect();
    Ok(Json(json!({
        "collections": out?,
        "links": [
            link("self", &format!("{b}/stac/collections"), "application/json"),
            link("root", &format!("{b}/stac"), "application/json"),
        ],
    })))
}

async fn collection(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(cid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let cat = catalog(&shared)?;
    let b = base_url(&headers);
    let id = cid.clone();
    let c = blocking(move || Ok(cat.collection(&id)?)).await?;
    let c = c.ok_or_else(|| not_found("collection"))?;
    Ok(Json(collection_json(&c, &b)?))
}

/// Absolute hrefs and the standard links on an item.
fn item_json(item: &stac::Item, b: &str) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(item)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let cid = item.collection.clone().unwrap_or_default();
    let id = item.id.clone();
    if let Some(assets) = v.get_mut("assets").and_then(Value::as_object_mut) {
        for a in assets.values_mut() {
            if let Some(h) = a.get("href").and_then(Value::as_str) {
                if !h.contains("://") {
                    let h = h.trim_start_matches('/');
                    a["href"] = json!(format!("{b}/stac/assets/{h}"));
                }
            }
        }
    }
    let mut links: Vec<Value> = v
        .get("links")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut l| {
            if let Some(h) = l.get("href").and_then(Value::as_str) {
                if h.starts_with('/') {
                    l["href"] = json!(format!("{b}{h}"));
                }
            }
            l
        })
        .collect();
    links.extend([
        link(
            "self",
            &format!("{b}/stac/collections/{cid}/items/{id}"),
            GEOJSON,
        ),
        link(
            "parent",
            &format!("{b}/stac/collections/{cid}"),
            "application/json",
        ),
        link(
            "collection",
            &format!("{b}/stac/collections/{cid}"),
            "application/json",
        ),
        link("root", &format!("{b}/stac"), "application/json"),
    ]);
    if item.assets.contains_key("visual") {
        links.push(link(
            "tilejson",
            &format!(
                "{b}/stac/collections/{cid}/items/{id}/WebMercatorQuad/tilejson.json?assets=visual"
            ),
            "application/json",
        ));
    }
    v["links"] = Value::Array(links);
    Ok(v)
}

async fn item(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((cid, iid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let cat = catalog(&shared)?;
    let b = base_url(&headers);
    let it = blocking(move || Ok(cat.item(&cid, &iid)?)).await?;
    let it = it.ok_or_else(|| not_found("item"))?;
    Ok(([(header::CONTENT_TYPE, GEOJSON)], Json(item_json(&it, &b)?)).into_response())
}

/// Query string of `GET /search` and `GET …/items`.
#[derive(Debug, Default, Deserialize)]
struct SearchQuery {
    bbox: Option<String>,
    datetime: Option<String>,
    limit: Option<String>,
    collections: Option<String>,
    ids: Option<String>,
    intersects: Option<String>,
    token: Option<String>,
}

fn csv(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

impl SearchQuery {
    /// The parameters as given, in a fixed order (for `self` and `next` links).
    fn pairs(&self) -> Vec<(String, String)> {
        [
            ("bbox", &self.bbox),
            ("datetime", &self.datetime),
            ("limit", &self.limit),
            ("collections", &self.collections),
            ("ids", &self.ids),
            ("intersects", &self.intersects),
            ("token", &self.token),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), v.clone())))
        .collect()
    }

    fn params(&self) -> Result<SearchParams, ApiError> {
        let bbox = match &self.bbox {
            None => None,
            Some(s) => {
                let v: Result<Vec<f64>, _> =
                    s.split(',').map(|p| p.trim().parse::<f64>()).collect();
                match v
                    .map_err(|_| bad(format!("bbox must be 4 numbers, got {s:?}")))?
                    .as_slice()
                {
                    [w, s_, e, n] => Some([*w, *s_, *e, *n]),
                    // 3D bbox: drop the heights.
                    [w, s_, _, e, n, _] => Some([*w, *s_, *e, *n]),
                    _ => return Err(bad(format!("bbox must be 4 numbers, got {s:?}"))),
                }
            }
        };
        let limit = match &self.limit {
            None => None,
            Some(l) => Some(
                l.parse::<u32>()
                    .map_err(|_| bad(format!("limit must be a positive integer, got {l:?}")))?,
            ),
        };
        let intersects = match &self.intersects {
            None => None,
            Some(g) => Some(
                serde_json::from_str::<Value>(g)
                    .map_err(|e| bad(format!("intersects must be GeoJSON: {e}")))?,
            ),
        };
        checked(SearchParams {
            bbox,
            intersects,
            datetime: self
                .datetime
                .as_deref()
                .map(DatetimeFilter::parse)
                .transpose()?,
            collections: self.collections.as_deref().map(csv),
            ids: self.ids.as_deref().map(csv),
            limit,
            token: self.token.clone(),
        })
    }
}

/// STAC API Item Search: `bbox` and `intersects` are mutually exclusive.
fn checked(p: SearchParams) -> Result<SearchParams, ApiError> {
    if p.bbox.is_some() && p.intersects.is_some() {
        return Err(bad(
            "bbox and intersects cannot be used together: give one of them",
        ));
    }
    Ok(p)
}

/// Body of `POST /search`.
#[derive(Debug, Default, Deserialize)]
struct SearchBody {
    bbox: Option<Vec<f64>>,
    datetime: Option<String>,
    limit: Option<u32>,
    collections: Option<Vec<String>>,
    ids: Option<Vec<String>>,
    intersects: Option<Value>,
    token: Option<String>,
}

impl SearchBody {
    fn params(self) -> Result<SearchParams, ApiError> {
        let bbox = match self.bbox.as_deref() {
            None => None,
            Some([w, s, e, n]) | Some([w, s, _, e, n, _]) => Some([*w, *s, *e, *n]),
            Some(other) => return Err(bad(format!("bbox must have 4 numbers, got {other:?}"))),
        };
        checked(SearchParams {
            bbox,
            intersects: self.intersects,
            datetime: self
                .datetime
                .as_deref()
                .map(DatetimeFilter::parse)
                .transpose()?,
            collections: self.collections,
            ids: self.ids,
            limit: self.limit,
            token: self.token,
        })
    }
}

/// Runs a search and builds the FeatureCollection with `next` (GET or POST as asked).
async fn run_search(
    shared: &Shared,
    b: &str,
    params: SearchParams,
    self_path: &str,
    collection: Option<&str>,
    query: Option<&SearchQuery>,
) -> Result<Response, ApiError> {
    let cat = catalog(shared)?;
    let p = params.clone();
    let page = blocking(move || Ok(cat.search(&p)?)).await?;
    let feats: Result<Vec<Value>, ApiError> = page.items.iter().map(|i| item_json(i, b)).collect();
    let feats = feats?;
    let mut links = vec![link("root", &format!("{b}/stac"), "application/json")];
    links.push(match query {
        Some(q) => {
            let qs = serde_urlencoded::to_string(q.pairs()).unwrap_or_default();
            let sep = if qs.is_empty() { "" } else { "?" };
            link("self", &format!("{b}{self_path}{sep}{qs}"), GEOJSON)
        }
        None => json!({"rel": "self", "href": format!("{b}{self_path}"), "type": GEOJSON, "method": "POST"}),
    });
    if let Some(cid) = collection {
        links.push(link(
            "collection",
            &format!("{b}/stac/collections/{cid}"),
            "application/json",
        ));
    }
    if let Some(tok) = &page.next {
        match query {
            Some(q) => {
                let mut pairs = q.pairs();
                pairs.retain(|(k, _)| k != "token");
                pairs.push(("token".into(), tok.clone()));
                let qs = serde_urlencoded::to_string(&pairs).unwrap_or_default();
                links.push(link("next", &format!("{b}{self_path}?{qs}"), GEOJSON));
            }
            None => {
                let mut body = serde_json::to_value(&params).unwrap_or_else(|_| json!({}));
                body["token"] = json!(tok);
                if let Some(d) = &params.datetime {
                    let f = |t: Option<chrono::DateTime<chrono::Utc>>| {
                        t.map_or_else(
                            || "..".to_owned(),
                            |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                        )
                    };
                    body["datetime"] = if d.start == d.end && d.start.is_some() {
                        json!(f(d.start))
                    } else {
                        json!(format!("{}/{}", f(d.start), f(d.end)))
                    };
                }
                links.push(json!({
                    "rel": "next", "href": format!("{b}{self_path}"), "type": GEOJSON,
                    "method": "POST", "body": body, "merge": false,
                }));
            }
        }
    }
    let mut out = json!({
        "type": "FeatureCollection",
        "features": feats,
        "links": links,
        "numberReturned": page.items.len(),
    });
    if let Some(m) = page.matched {
        out["numberMatched"] = json!(m);
    }
    Ok(([(header::CONTENT_TYPE, GEOJSON)], Json(out)).into_response())
}

async fn search_get(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: SearchQuery = query(raw.as_deref())?;
    let b = base_url(&headers);
    let params = q.params()?;
    run_search(&shared, &b, params, "/stac/search", None, Some(&q)).await
}

async fn search_post(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let b = base_url(&headers);
    let body: SearchBody = if body.is_empty() {
        SearchBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| bad(format!("search body: {e}")))?
    };
    run_search(&shared, &b, body.params()?, "/stac/search", None, None).await
}

async fn items(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(cid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q: SearchQuery = query(raw.as_deref())?;
    let b = base_url(&headers);
    let cat = catalog(&shared)?;
    let id = cid.clone();
    if blocking(move || Ok(cat.collection(&id)?)).await?.is_none() {
        return Err(not_found("collection"));
    }
    let mut params = q.params()?;
    params.collections = Some(vec![cid.clone()]);
    let path = format!("/stac/collections/{cid}/items");
    run_search(&shared, &b, params, &path, Some(&cid), Some(&q)).await
}

/// A query string into `T`; a malformed one is a JSON 400 like every other client error.
pub(super) fn query<T: serde::de::DeserializeOwned + Default>(
    raw: Option<&str>,
) -> Result<T, ApiError> {
    match raw {
        None | Some("") => Ok(T::default()),
        Some(r) => serde_urlencoded::from_str(r).map_err(|e| bad(format!("query string: {e}"))),
    }
}

/// `GET /stac/assets/{href}`: the file of a catalogued asset, with HTTP Range and
/// Last-Modified, typed by the asset's media type; 404 for any path no item references.
async fn asset(
    State(shared): State<Arc<Shared>>,
    href: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let Ok(Path(href)) = href else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let Some(href) = storage::catalog::local_href(&href).map(str::to_owned) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let cat = match catalog(&shared) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let h = href.clone();
    let found = match blocking(move || Ok(cat.asset(&h)?)).await {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let Some(found) = found else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    serve_file(shared.archive.join(&href), found.media_type.as_deref(), req).await
}

/// Sends one regular file (no symlinks, no directories) with HTTP Range, conditional requests
/// and Last-Modified; `media_type` replaces the type guessed from the extension.
pub(crate) async fn serve_file(
    path: std::path::PathBuf,
    media_type: Option<&str>,
    req: Request,
) -> Response {
    let regular = tokio::fs::symlink_metadata(&path)
        .await
        .is_ok_and(|m| m.file_type().is_file());
    if !regular {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    match tower_http::services::ServeFile::new(&path)
        .try_call(req)
        .await
    {
        Ok(res) => {
            let mut res = res.map(axum::body::Body::new);
            if res.status().is_success() {
                if let Some(v) = media_type.and_then(|t| HeaderValue::from_str(t).ok()) {
                    res.headers_mut().insert(header::CONTENT_TYPE, v);
                }
            }
            res
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "serving a file failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "read failed").into_response()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bbox_and_intersects_exclude_each_other() {
        let q: SearchQuery = query(Some(
            "bbox=0,0,1,1&intersects=%7B%22type%22%3A%22Point%22%2C%22coordinates%22%3A%5B0%2C0%5D%7D",
        ))
        .unwrap();
        assert!(q.params().is_err());
        let q: SearchQuery = query(Some("bbox=0,0,1,1")).unwrap();
        assert!(q.params().is_ok());
        assert!(query::<SearchQuery>(Some("limit=1&limit=2")).is_err());
    }
}
