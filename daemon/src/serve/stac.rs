//! STAC API (v1.0.0: core, collections, features, item search; the Sort, Fields and Filter
//! extensions with CQL2 text and JSON, `/queryables`, and collection search on `/collections`)
//! at `/stac`, and asset downloads with HTTP Range at `/stac/assets/…`; the map tiles, TileJSON
//! and WMTS are in `tiles`.
//!
//! The API endpoints take only the parameters they implement: any other query parameter or
//! POST body key, a filter the catalog cannot evaluate, or a sort key it cannot order by is a
//! `400`, never ignored (a client must not get unfiltered results it believes filtered).
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

use archive::catalog::{Catalog, DatetimeFilter, Direction, SearchParams, SortBy};
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

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
    // Sort, Fields and Filter (CQL2 text and JSON, basic CQL2, LIKE/BETWEEN/IN, s_intersects):
    // each checked by stac-api-validator in tests/e2e_stac_api.rs.
    "https://api.stacspec.org/v1.0.0/item-search#sort",
    "https://api.stacspec.org/v1.0.0/item-search#fields",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-operators",
    // CQL2 1.0's final name of the class above (the validator knows the draft name).
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
];
const QUERYABLES_REL: &str = "http://www.opengis.net/def/rel/ogc/1.0/queryables";
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
        .route("/stac/queryables", get(queryables))
        .route("/stac/collections/{cid}", get(collection))
        .route(
            "/stac/collections/{cid}/queryables",
            get(collection_queryables),
        )
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

impl From<archive::Error> for ApiError {
    fn from(e: archive::Error) -> Self {
        match e {
            _ if e.is_bad_request() => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            archive::Error::NoSuchCollection(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            archive::Error::Gone { .. } => {
                tracing::warn!(error = %e, "catalog");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the catalog is unavailable: its archive directory is missing".into(),
                )
            }
            _ if e.is_unavailable() => {
                tracing::warn!(error = %e, "catalog");
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the catalog is unavailable: its database cannot be reached".into(),
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
        QUERYABLES_REL => "Queryables (filter and sortby properties)",
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

async fn landing(headers: HeaderMap, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    no_params(raw.as_deref())?;
    let b = base_url(&headers);
    Ok(Json(json!({
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
            link(QUERYABLES_REL, &format!("{b}/stac/queryables"), "application/schema+json"),
        ],
    })))
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

async fn service_desc(headers: HeaderMap, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    no_params(raw.as_deref())?;
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
async fn service_doc(headers: HeaderMap, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    no_params(raw.as_deref())?;
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

async fn conformance(RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    no_params(raw.as_deref())?;
    Ok(Json(json!({ "conformsTo": CONFORMANCE })))
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
        link(
            QUERYABLES_REL,
            &format!("{b}/stac/collections/{id}/queryables"),
            "application/schema+json"
        ),
    ]);
    Ok(v)
}

/// Parameters of `GET /collections` (collection search); any other name is refused.
const COLLECTION_PARAMS: &[&str] = &["bbox", "datetime", "q", "limit", "token"];
/// Default and largest page of `GET /collections`.
const COLLECTIONS_LIMIT: (usize, usize) = (100, 10_000);

/// Collection search: `bbox` and `datetime` against the collection's extent, `q` free text
/// (comma-separated alternatives, each a set of words that must all appear in the id, title,
/// description or keywords, case-insensitive), paged by id.
#[derive(Debug, Default)]
struct CollectionQuery {
    bbox: Option<[f64; 4]>,
    datetime: Option<DatetimeFilter>,
    q: Vec<Vec<String>>,
    limit: usize,
    after: Option<String>,
    pairs: Vec<(String, String)>,
}

impl CollectionQuery {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = query(raw)?;
        let mut out = CollectionQuery {
            limit: COLLECTIONS_LIMIT.0,
            ..CollectionQuery::default()
        };
        let mut seen: Vec<&str> = Vec::new();
        for (k, v) in &pairs {
            let Some(known) = COLLECTION_PARAMS.iter().find(|p| **p == k.as_str()) else {
                return Err(unknown_param(k, COLLECTION_PARAMS));
            };
            if seen.contains(known) {
                return Err(bad(format!("{k} given twice")));
            }
            seen.push(known);
            match k.as_str() {
                "bbox" => {
                    let n: Vec<f64> = v
                        .split(',')
                        .map(|p| p.trim().parse::<f64>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| bad(format!("bbox must be 4 numbers, got {v:?}")))?;
                    let b = match n.as_slice() {
                        [w, s, e, n] | [w, s, _, e, n, _] => [*w, *s, *e, *n],
                        _ => return Err(bad(format!("bbox must be 4 numbers, got {v:?}"))),
                    };
                    // The same validation as item search.
                    SearchParams {
                        bbox: Some(b),
                        ..SearchParams::default()
                    }
                    .spatial_filters()?;
                    out.bbox = Some(b);
                }
                "datetime" => out.datetime = Some(DatetimeFilter::parse(v)?),
                "q" => {
                    out.q = v
                        .split(',')
                        .map(|alt| {
                            alt.split_whitespace()
                                .map(str::to_lowercase)
                                .collect::<Vec<_>>()
                        })
                        .filter(|words| !words.is_empty())
                        .collect();
                    if out.q.is_empty() {
                        return Err(bad("q must have at least one word"));
                    }
                }
                "limit" => {
                    out.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad(format!("limit must be a positive integer, got {v:?}")))?
                        .min(COLLECTIONS_LIMIT.1);
                }
                "token" => {
                    let id = v
                        .strip_prefix("c:")
                        .filter(|id| {
                            archive::catalog::layout::validate_id("collection", id).is_ok()
                        })
                        .ok_or_else(|| bad("invalid pagination token"))?;
                    out.after = Some(id.to_owned());
                }
                _ => {}
            }
        }
        out.pairs = pairs;
        Ok(out)
    }

    fn matches(&self, c: &stac::Collection) -> bool {
        if let Some(b) = self.bbox {
            let want = archive::catalog::geom::Shape::from_bbox(b);
            let hit = c.extent.spatial.bbox.iter().any(|e| {
                archive::catalog::geom::Shape::from_bbox([e.xmin(), e.ymin(), e.xmax(), e.ymax()])
                    .intersects(&want)
            });
            if !hit {
                return false;
            }
        }
        if let Some(d) = self.datetime {
            let hit = c.extent.temporal.interval.iter().any(|[s, e]| {
                d.start.is_none_or(|ds| e.is_none_or(|e| e >= ds))
                    && d.end.is_none_or(|de| s.is_none_or(|s| s <= de))
            });
            if !hit {
                return false;
            }
        }
        if !self.q.is_empty() {
            let mut text = format!(
                "{} {} {}",
                c.id,
                c.title.as_deref().unwrap_or_default(),
                c.description
            );
            for k in c.keywords.iter().flatten() {
                text.push(' ');
                text.push_str(k);
            }
            let text = text.to_lowercase();
            if !self
                .q
                .iter()
                .any(|words| words.iter().all(|w| text.contains(w.as_str())))
            {
                return false;
            }
        }
        true
    }
}

async fn collections(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let cq = CollectionQuery::parse(raw.as_deref())?;
    let cat = catalog(&shared)?;
    let b = base_url(&headers);
    let list = blocking(move || Ok(cat.collections()?)).await?;
    // Collections come sorted by id.
    let matched: Vec<&stac::Collection> = list.iter().filter(|c| cq.matches(c)).collect();
    let page: Vec<&stac::Collection> = matched
        .iter()
        .filter(|c| cq.after.as_deref().is_none_or(|a| c.id.as_str() > a))
        .take(cq.limit + 1)
        .copied()
        .collect();
    let more = page.len() > cq.limit;
    let page = page.get(..cq.limit.min(page.len())).unwrap_or_default();
    let out: Result<Vec<Value>, ApiError> = page.iter().map(|c| collection_json(c, &b)).collect();
    let qs = serde_urlencoded::to_string(&cq.pairs).unwrap_or_default();
    let sep = if qs.is_empty() { "" } else { "?" };
    let mut links = vec![
        link(
            "self",
            &format!("{b}/stac/collections{sep}{qs}"),
            "application/json",
        ),
        link("root", &format!("{b}/stac"), "application/json"),
    ];
    if let (true, Some(last)) = (more, page.last()) {
        let mut pairs = cq.pairs.clone();
        pairs.retain(|(k, _)| k != "token");
        pairs.push(("token".into(), format!("c:{}", last.id)));
        let qs = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        links.push(link(
            "next",
            &format!("{b}/stac/collections?{qs}"),
            "application/json",
        ));
    }
    Ok(Json(json!({
        "collections": out?,
        "links": links,
        "numberMatched": matched.len(),
        "numberReturned": page.len(),
    })))
}

/// The properties a filter or sortby can name; any other item property may be named too
/// (`additionalProperties`), a missing one is null.
fn queryables_json(url: &str, title: &str) -> Value {
    let time = |d: &str| json!({"description": d, "type": "string", "format": "date-time"});
    json!({
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": url,
        "type": "object",
        "title": title,
        "properties": {
            "id": {"description": "Item id", "type": "string"},
            "collection": {"description": "Collection id", "type": "string"},
            "geometry": {"description": "Footprint", "$ref": "https://geojson.org/schema/Geometry.json"},
            "datetime": time("Acquisition time (the start of a pass)"),
            "start_datetime": time("Start of the acquisition"),
            "end_datetime": time("End of the acquisition"),
            "created": time("When the item was catalogued"),
            "updated": time("When the item was last changed"),
            "platform": {"description": "Spacecraft", "type": "string"},
            "constellation": {"description": "Constellation", "type": "string"},
            "instruments": {"description": "Instruments", "type": "array", "items": {"type": "string"}},
            "gsd": {"description": "Ground sample distance (m)", "type": "number"},
            "eo:cloud_cover": {"description": "Cloud cover (%)", "type": "number", "minimum": 0, "maximum": 100},
            "view:sun_elevation": {"description": "Sun elevation (degrees)", "type": "number"},
            "view:sun_azimuth": {"description": "Sun azimuth (degrees)", "type": "number"},
            "proj:code": {"description": "Projection of the assets", "type": "string"},
        },
        "additionalProperties": true,
    })
}

fn queryables_response(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/schema+json")], Json(v)).into_response()
}

async fn queryables(headers: HeaderMap, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    no_params(raw.as_deref())?;
    let b = base_url(&headers);
    Ok(queryables_response(queryables_json(
        &format!("{b}/stac/queryables"),
        "Queryables of item search",
    )))
}

async fn collection_queryables(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(cid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    no_params(raw.as_deref())?;
    let cat = catalog(&shared)?;
    let b = base_url(&headers);
    let id = cid.clone();
    if blocking(move || Ok(cat.collection(&id)?)).await?.is_none() {
        return Err(not_found("collection"));
    }
    Ok(queryables_response(queryables_json(
        &format!("{b}/stac/collections/{cid}/queryables"),
        &format!("Queryables of collection {cid}"),
    )))
}

async fn collection(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(cid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    no_params(raw.as_deref())?;
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
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    no_params(raw.as_deref())?;
    let cat = catalog(&shared)?;
    let b = base_url(&headers);
    let it = blocking(move || Ok(cat.item(&cid, &iid)?)).await?;
    let it = it.ok_or_else(|| not_found("item"))?;
    Ok(([(header::CONTENT_TYPE, GEOJSON)], Json(item_json(&it, &b)?)).into_response())
}

/// Parameters of `GET /search` and `GET …/items`; any other name is refused.
const SEARCH_PARAMS: &[&str] = &[
    "bbox",
    "datetime",
    "limit",
    "collections",
    "ids",
    "intersects",
    "token",
    "sortby",
    "filter",
    "filter-lang",
    "filter-crs",
    "fields",
];

/// The only CRS a filter's geometries may be in (WGS 84 longitude, latitude).
const CRS84: &str = "http://www.opengis.net/def/crs/OGC/1.3/CRS84";

/// Query string of `GET /search` and `GET …/items`, each parameter at most once.
#[derive(Debug, Default)]
struct SearchQuery {
    bbox: Option<String>,
    datetime: Option<String>,
    limit: Option<String>,
    collections: Option<String>,
    ids: Option<String>,
    intersects: Option<String>,
    token: Option<String>,
    sortby: Option<String>,
    filter: Option<String>,
    filter_lang: Option<String>,
    filter_crs: Option<String>,
    fields: Option<String>,
}

fn csv(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A 400 naming an unknown parameter and the ones this endpoint takes.
fn unknown_param(name: &str, known: &[&str]) -> ApiError {
    if known.is_empty() {
        bad(format!(
            "unknown parameter {name:?}: this endpoint takes none"
        ))
    } else {
        bad(format!(
            "unknown parameter {name:?}: this endpoint takes {}",
            known.join(", ")
        ))
    }
}

/// Refuses any query parameter (endpoints that take none).
fn no_params(raw: Option<&str>) -> Result<(), ApiError> {
    let pairs: Vec<(String, String)> = query(raw)?;
    match pairs.first() {
        Some((k, _)) => Err(unknown_param(k, &[])),
        None => Ok(()),
    }
}

impl SearchQuery {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = query(raw)?;
        let mut q = SearchQuery::default();
        for (k, v) in pairs {
            let slot = match k.as_str() {
                "bbox" => &mut q.bbox,
                "datetime" => &mut q.datetime,
                "limit" => &mut q.limit,
                "collections" => &mut q.collections,
                "ids" => &mut q.ids,
                "intersects" => &mut q.intersects,
                "token" => &mut q.token,
                "sortby" => &mut q.sortby,
                "filter" => &mut q.filter,
                "filter-lang" => &mut q.filter_lang,
                "filter-crs" => &mut q.filter_crs,
                "fields" => &mut q.fields,
                _ => return Err(unknown_param(&k, SEARCH_PARAMS)),
            };
            if slot.replace(v).is_some() {
                return Err(bad(format!("{k} given twice")));
            }
        }
        Ok(q)
    }

    /// The parameters as given, in a fixed order (for `self` and `next` links).
    fn pairs(&self) -> Vec<(String, String)> {
        [
            ("bbox", &self.bbox),
            ("datetime", &self.datetime),
            ("limit", &self.limit),
            ("collections", &self.collections),
            ("ids", &self.ids),
            ("intersects", &self.intersects),
            ("sortby", &self.sortby),
            ("filter", &self.filter),
            ("filter-lang", &self.filter_lang),
            ("filter-crs", &self.filter_crs),
            ("fields", &self.fields),
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
        let filter = match &self.filter {
            None => None,
            Some(f) => Some(parse_filter(
                &Value::String(f.clone()),
                self.filter_lang.as_deref().or(Some("cql2-text")),
                true,
            )?),
        };
        filter_extras(
            self.filter.is_some(),
            self.filter_lang.as_deref(),
            self.filter_crs.as_deref(),
        )?;
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
            sortby: self
                .sortby
                .as_deref()
                .map(sortby_text)
                .transpose()?
                .unwrap_or_default(),
            filter,
        })
    }

    fn fields(&self) -> Result<Option<Fields>, ApiError> {
        self.fields.as_deref().map(Fields::from_text).transpose()
    }
}

/// `filter-lang` and `filter-crs`: known values only, and only with a `filter`.
fn filter_extras(has_filter: bool, lang: Option<&str>, crs: Option<&str>) -> Result<(), ApiError> {
    if let Some(l) = lang {
        if !matches!(l, "cql2-text" | "cql2-json") {
            return Err(bad(format!(
                "filter-lang must be cql2-text or cql2-json, got {l:?}"
            )));
        }
    }
    if let Some(c) = crs {
        if c != CRS84 {
            return Err(bad(format!(
                "filter-crs must be {CRS84} (the only CRS supported), got {c:?}"
            )));
        }
    }
    if !has_filter && (lang.is_some() || crs.is_some()) {
        return Err(bad("filter-lang and filter-crs need a filter"));
    }
    Ok(())
}

/// Longest filter text, and deepest nesting of brackets or JSON, taken (the parsers recurse).
const FILTER_MAX_LEN: usize = 64 * 1024;
const FILTER_MAX_DEPTH: usize = 64;

/// How deep brackets nest in `text`, or JSON values in `v`.
fn filter_depth(v: &Value) -> usize {
    match v {
        Value::String(t) => {
            let (mut depth, mut max) = (0usize, 0usize);
            for c in t.chars() {
                match c {
                    '(' | '[' => {
                        depth += 1;
                        max = max.max(depth);
                    }
                    ')' | ']' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            max
        }
        Value::Array(a) => 1 + a.iter().map(filter_depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(filter_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A CQL2 filter: text (a string) or JSON (an object, or a string in a query string).
fn parse_filter(f: &Value, lang: Option<&str>, in_query: bool) -> Result<cql2::Expr, ApiError> {
    let len = match f {
        Value::String(t) => t.len(),
        other => other.to_string().len(),
    };
    if len > FILTER_MAX_LEN || filter_depth(f) > FILTER_MAX_DEPTH {
        return Err(bad(format!(
            "filter is too large: at most {FILTER_MAX_LEN} bytes and {FILTER_MAX_DEPTH} levels of nesting"
        )));
    }
    let lang = match (lang, f) {
        (Some(l), _) => l,
        (None, Value::String(_)) => "cql2-text",
        (None, _) => "cql2-json",
    };
    match (lang, f) {
        ("cql2-text", Value::String(s)) => {
            cql2::parse_text(s).map_err(|e| bad(format!("filter is not CQL2 text: {e}")))
        }
        ("cql2-json", Value::String(s)) if in_query => {
            cql2::parse_json(s).map_err(|e| bad(format!("filter is not CQL2 JSON: {e}")))
        }
        ("cql2-json", Value::Object(_)) => serde_json::from_value::<cql2::Expr>(f.clone())
            .map_err(|e| bad(format!("filter is not CQL2 JSON: {e}"))),
        ("cql2-text" | "cql2-json", _) => Err(bad(format!(
            "filter must be {} for filter-lang {lang}",
            if lang == "cql2-text" {
                "a string"
            } else {
                "an object"
            }
        ))),
        _ => Err(bad(format!(
            "filter-lang must be cql2-text or cql2-json, got {lang:?}"
        ))),
    }
}

/// `sortby=-datetime,+id,properties.eo:cloud_cover` (a `+` decoded to a space counts as `+`).
fn sortby_text(s: &str) -> Result<Vec<SortBy>, ApiError> {
    let mut out = Vec::new();
    for p in s.split(',') {
        let p = p.trim();
        let (field, direction) = match p.strip_prefix('-') {
            Some(f) => (f, Direction::Desc),
            None => (p.strip_prefix('+').unwrap_or(p), Direction::Asc),
        };
        if field.is_empty() {
            return Err(bad(format!("sortby has an empty field: {s:?}")));
        }
        out.push(SortBy {
            field: field.to_owned(),
            direction,
        });
    }
    Ok(out)
}

/// POST `sortby`: `[{"field": …, "direction": "asc"|"desc"}]`, or the GET text form.
fn sortby_json(v: &Value) -> Result<Vec<SortBy>, ApiError> {
    match v {
        Value::String(s) => sortby_text(s),
        Value::Array(list) => list
            .iter()
            .map(|o| {
                let o = o
                    .as_object()
                    .ok_or_else(|| bad("sortby entries are {\"field\", \"direction\"} objects"))?;
                if let Some(k) = o
                    .keys()
                    .find(|k| !matches!(k.as_str(), "field" | "direction"))
                {
                    return Err(bad(format!("sortby entry has an unknown key {k:?}")));
                }
                let field = o
                    .get("field")
                    .and_then(Value::as_str)
                    .filter(|f| !f.is_empty())
                    .ok_or_else(|| bad("sortby entry needs a \"field\" string"))?;
                let direction = match o
                    .get("direction")
                    .and_then(|d| d.as_str().map(str::to_owned))
                {
                    None if o.get("direction").is_none_or(Value::is_null) => Direction::Asc,
                    Some(d) if d == "asc" => Direction::Asc,
                    Some(d) if d == "desc" => Direction::Desc,
                    _ => {
                        return Err(bad(format!(
                            "sortby direction must be \"asc\" or \"desc\", got {}",
                            o.get("direction").unwrap_or(&Value::Null)
                        )))
                    }
                };
                Ok(SortBy {
                    field: field.to_owned(),
                    direction,
                })
            })
            .collect(),
        other => Err(bad(format!("sortby must be a list, got {other}"))),
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

/// What the Fields extension keeps of each item.
#[derive(Debug, Clone, PartialEq)]
enum FieldsBase {
    /// Everything (only excludes were given).
    Full,
    /// The default set (`fields` empty, or `include` null or empty).
    Default,
    /// Only these paths.
    Only(Vec<String>),
}

/// STAC API Fields extension: `fields=id,-geometry,properties.datetime` (GET) or
/// `{"include": […], "exclude": […]}` (POST). Only excludes: everything else; includes: those
/// and the fields that identify a STAC object ([`ALWAYS_FIELDS`]); neither (an empty value, or
/// `include` null or empty): the default set. A field both included and excluded is included.
#[derive(Debug, Clone, PartialEq)]
struct Fields {
    base: FieldsBase,
    exclude: Vec<String>,
}

/// The fields an item keeps when `fields` asks for the default set.
const DEFAULT_FIELDS: &[&str] = &[
    "type",
    "stac_version",
    "id",
    "geometry",
    "bbox",
    "links",
    "assets",
    "properties.datetime",
];

/// The fields an item keeps with an `include` list (unless excluded by name).
const ALWAYS_FIELDS: &[&str] = &["type", "stac_version", "id", "links"];

impl Fields {
    fn from_text(s: &str) -> Result<Fields, ApiError> {
        let mut include = Vec::new();
        let mut exclude = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.strip_prefix('-') {
                Some(f) => exclude.push(f.to_owned()),
                None => include.push(p.strip_prefix('+').unwrap_or(p).to_owned()),
            }
        }
        let base = if !include.is_empty() {
            FieldsBase::Only(include)
        } else if !exclude.is_empty() {
            FieldsBase::Full
        } else {
            FieldsBase::Default
        };
        Fields::checked(base, exclude)
    }

    fn from_json(v: &Value) -> Result<Fields, ApiError> {
        let o = v
            .as_object()
            .ok_or_else(|| bad("fields must be an object with include and exclude lists"))?;
        if let Some(k) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "include" | "exclude"))
        {
            return Err(bad(format!("fields has an unknown key {k:?}")));
        }
        let list = |k: &str| -> Result<Option<Vec<String>>, ApiError> {
            match o.get(k) {
                None => Ok(None),
                Some(Value::Null) => Ok(Some(Vec::new())),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| bad(format!("fields.{k} must be a list of strings")))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(bad(format!("fields.{k} must be a list of strings"))),
            }
        };
        let exclude = list("exclude")?.unwrap_or_default();
        let base = match list("include")? {
            Some(i) if !i.is_empty() => FieldsBase::Only(i),
            Some(_) => FieldsBase::Default,
            None if exclude.is_empty() => FieldsBase::Default,
            None => FieldsBase::Full,
        };
        Fields::checked(base, exclude)
    }

    fn checked(base: FieldsBase, exclude: Vec<String>) -> Result<Fields, ApiError> {
        let names = match &base {
            FieldsBase::Only(i) => i.iter().chain(&exclude).collect::<Vec<_>>(),
            _ => exclude.iter().collect(),
        };
        if let Some(n) = names
            .iter()
            .find(|n| n.split('.').any(str::is_empty) || n.len() > 256)
        {
            return Err(bad(format!("fields has a malformed name {n:?}")));
        }
        Ok(Fields { base, exclude })
    }

    /// The item with only the fields asked for.
    fn apply(&self, item: Value) -> Value {
        let mut out = match &self.base {
            FieldsBase::Full => item,
            FieldsBase::Default => pick(&item, DEFAULT_FIELDS.iter().copied()),
            FieldsBase::Only(i) => pick(
                &item,
                ALWAYS_FIELDS
                    .iter()
                    .copied()
                    .chain(i.iter().map(String::as_str)),
            ),
        };
        for e in &self.exclude {
            let kept = match &self.base {
                FieldsBase::Only(i) => i.iter().any(|i| i == e || i.starts_with(&format!("{e}."))),
                _ => false,
            };
            if !kept {
                remove_path(&mut out, e);
            }
        }
        out
    }
}

/// A new object with the given dotted paths of `src` (those that exist).
fn pick<'a>(src: &Value, paths: impl Iterator<Item = &'a str>) -> Value {
    let mut out = json!({});
    for p in paths {
        let mut from = src;
        let mut found = true;
        for seg in p.split('.') {
            match from.get(seg) {
                Some(v) => from = v,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let mut to = &mut out;
        let segs: Vec<&str> = p.split('.').collect();
        for (i, seg) in segs.iter().enumerate() {
            let Some(obj) = to.as_object_mut() else {
                break;
            };
            if i + 1 == segs.len() {
                obj.insert((*seg).to_owned(), from.clone());
                break;
            }
            to = obj.entry((*seg).to_owned()).or_insert_with(|| json!({}));
        }
    }
    out
}

fn remove_path(v: &mut Value, path: &str) {
    match path.split_once('.') {
        None => {
            if let Some(o) = v.as_object_mut() {
                o.remove(path);
            }
        }
        Some((head, rest)) => {
            if let Some(inner) = v.get_mut(head) {
                remove_path(inner, rest);
            }
        }
    }
}

/// Body of `POST /search`; any other key is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchBody {
    bbox: Option<Vec<f64>>,
    datetime: Option<String>,
    limit: Option<u32>,
    collections: Option<StrList>,
    ids: Option<StrList>,
    intersects: Option<Value>,
    token: Option<String>,
    sortby: Option<Value>,
    filter: Option<Value>,
    #[serde(rename = "filter-lang")]
    filter_lang: Option<String>,
    #[serde(rename = "filter-crs")]
    filter_crs: Option<String>,
    /// `Some(Value::Null)` for an explicit `null`, which is refused.
    #[serde(default, deserialize_with = "present")]
    fields: Option<Value>,
}

/// `collections` and `ids` of a POST search: a list, or one comma-separated string as in GET.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum StrList {
    List(Vec<String>),
    Csv(String),
}

impl StrList {
    fn list(&self) -> Vec<String> {
        match self {
            StrList::List(l) => l.clone(),
            StrList::Csv(s) => csv(s),
        }
    }
}

/// A field that is present (even `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl SearchBody {
    fn params(&self) -> Result<SearchParams, ApiError> {
        let bbox = match self.bbox.as_deref() {
            None => None,
            Some([w, s, e, n]) | Some([w, s, _, e, n, _]) => Some([*w, *s, *e, *n]),
            Some(other) => return Err(bad(format!("bbox must have 4 numbers, got {other:?}"))),
        };
        let filter = match &self.filter {
            None | Some(Value::Null) => None,
            Some(f) => Some(parse_filter(f, self.filter_lang.as_deref(), false)?),
        };
        filter_extras(
            filter.is_some(),
            self.filter_lang.as_deref(),
            self.filter_crs.as_deref(),
        )?;
        checked(SearchParams {
            bbox,
            intersects: self.intersects.clone(),
            datetime: self
                .datetime
                .as_deref()
                .map(DatetimeFilter::parse)
                .transpose()?,
            collections: self.collections.as_ref().map(StrList::list),
            ids: self.ids.as_ref().map(StrList::list),
            limit: self.limit,
            token: self.token.clone(),
            sortby: match &self.sortby {
                None | Some(Value::Null) => Vec::new(),
                Some(s) => sortby_json(s)?,
            },
            filter,
        })
    }

    fn fields(&self) -> Result<Option<Fields>, ApiError> {
        match &self.fields {
            None => Ok(None),
            Some(Value::Null) => Err(bad("fields must be an object, not null")),
            Some(f) => Fields::from_json(f).map(Some),
        }
    }
}

/// How the search was asked for: the `self` and `next` links repeat it.
enum Asked<'a> {
    Get(&'a SearchQuery),
    Post(&'a Value),
}

/// Runs a search and builds the FeatureCollection with `next` (GET or POST as asked).
async fn run_search(
    shared: &Shared,
    b: &str,
    params: SearchParams,
    fields: Option<Fields>,
    self_path: &str,
    collection: Option<&str>,
    asked: Asked<'_>,
) -> Result<Response, ApiError> {
    let cat = catalog(shared)?;
    let page = blocking(move || Ok(cat.search(&params)?)).await?;
    let feats: Result<Vec<Value>, ApiError> = page
        .items
        .iter()
        .map(|i| {
            let v = item_json(i, b)?;
            Ok(match &fields {
                Some(f) => f.apply(v),
                None => v,
            })
        })
        .collect();
    let feats = feats?;
    let mut links = vec![link("root", &format!("{b}/stac"), "application/json")];
    links.push(match &asked {
        Asked::Get(q) => {
            let qs = serde_urlencoded::to_string(q.pairs()).unwrap_or_default();
            let sep = if qs.is_empty() { "" } else { "?" };
            link("self", &format!("{b}{self_path}{sep}{qs}"), GEOJSON)
        }
        Asked::Post(_) => {
            json!({"rel": "self", "href": format!("{b}{self_path}"), "type": GEOJSON, "method": "POST"})
        }
    });
    if let Some(cid) = collection {
        links.push(link(
            "collection",
            &format!("{b}/stac/collections/{cid}"),
            "application/json",
        ));
    }
    if let Some(tok) = &page.next {
        match &asked {
            Asked::Get(q) => {
                let mut pairs = q.pairs();
                pairs.retain(|(k, _)| k != "token");
                pairs.push(("token".into(), tok.clone()));
                let qs = serde_urlencoded::to_string(&pairs).unwrap_or_default();
                links.push(link("next", &format!("{b}{self_path}?{qs}"), GEOJSON));
            }
            Asked::Post(body) => {
                // The request again, with the next page's token.
                let mut body = (*body).clone();
                if !body.is_object() {
                    body = json!({});
                }
                body["token"] = json!(tok);
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
    let q = SearchQuery::parse(raw.as_deref())?;
    let b = base_url(&headers);
    let params = q.params()?;
    let fields = q.fields()?;
    run_search(
        &shared,
        &b,
        params,
        fields,
        "/stac/search",
        None,
        Asked::Get(&q),
    )
    .await
}

async fn search_post(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, ApiError> {
    no_params(raw.as_deref())?;
    let b = base_url(&headers);
    let raw_body: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| bad(format!("search body: {e}")))?
    };
    let parsed: SearchBody =
        serde_json::from_value(raw_body.clone()).map_err(|e| bad(format!("search body: {e}")))?;
    let params = parsed.params()?;
    let fields = parsed.fields()?;
    run_search(
        &shared,
        &b,
        params,
        fields,
        "/stac/search",
        None,
        Asked::Post(&raw_body),
    )
    .await
}

async fn items(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(cid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = SearchQuery::parse(raw.as_deref())?;
    if q.collections.is_some() {
        return Err(bad(
            "unknown parameter \"collections\": the collection is the one in the path",
        ));
    }
    let b = base_url(&headers);
    let cat = catalog(&shared)?;
    let id = cid.clone();
    if blocking(move || Ok(cat.collection(&id)?)).await?.is_none() {
        return Err(not_found("collection"));
    }
    let mut params = q.params()?;
    params.collections = Some(vec![cid.clone()]);
    let fields = q.fields()?;
    let path = format!("/stac/collections/{cid}/items");
    run_search(
        &shared,
        &b,
        params,
        fields,
        &path,
        Some(&cid),
        Asked::Get(&q),
    )
    .await
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
/// Last-Modified, typed by the asset's media type; 404 for any path no item references. A file
/// not under `archive.path` is read from the object store (`super::store_read`).
async fn asset(
    State(shared): State<Arc<Shared>>,
    href: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let Ok(Path(href)) = href else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let Some(href) = archive::catalog::local_href(&href).map(str::to_owned) else {
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
    let local = shared.archive.join(&href);
    let here = tokio::fs::symlink_metadata(&local)
        .await
        .is_ok_and(|m| m.file_type().is_file());
    if !here && shared.store_reads.reader.is_some() {
        // Not in the local archive (an API node, or a pass spooled elsewhere): the store's.
        return super::store_read::serve(shared.clone(), &href, found.media_type.as_deref(), req)
            .await;
    }
    serve_file(local, found.media_type.as_deref(), req).await
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
    fn deep_or_huge_filters_are_refused_before_parsing() {
        let deep = format!("{}id = 'a'{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(parse_filter(&Value::String(deep), None, true).is_err());
        let mut nested = json!({"op": "=", "args": [{"property": "id"}, "a"]});
        for _ in 0..100 {
            nested = json!({"op": "not", "args": [nested]});
        }
        assert!(parse_filter(&nested, None, false).is_err());
        let ok = "((id = 'a') and (collection = 'c'))";
        assert!(parse_filter(&Value::String(ok.into()), None, true).is_ok());
    }

    #[test]
    fn bbox_and_intersects_exclude_each_other() {
        let q = SearchQuery::parse(Some(
            "bbox=0,0,1,1&intersects=%7B%22type%22%3A%22Point%22%2C%22coordinates%22%3A%5B0%2C0%5D%7D",
        ))
        .unwrap();
        assert!(q.params().is_err());
        let q = SearchQuery::parse(Some("bbox=0,0,1,1")).unwrap();
        assert!(q.params().is_ok());
        assert!(SearchQuery::parse(Some("limit=1&limit=2")).is_err());
        assert!(SearchQuery::parse(Some("limits=1")).is_err());
    }
}
