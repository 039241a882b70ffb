//! XYZ map tiles per item and per collection (a mosaic of the newest item with data), TileJSON
//! per item and WMTS 1.0.0 capabilities per collection, under `/stac/collections/…`.
//!
//! A collection is offered as several layers (`Render`): `visual`, each band of its data
//! assets with a rescale from the asset's statistics (else a 2 %–98 % stretch read from the
//! file's overviews), and `ndvi` (the NDVI asset, or red and NIR bands of one asset) with the
//! RdYlGn colormap. WMTS and WMS (`super::wms`) name them `COLLECTION` (the first: visual
//! when there is one) and `COLLECTION:RENDER`. WMTS zoom levels reach the finest source
//! resolution of the collection's items.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use archive::catalog::{DatetimeFilter, SearchParams};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use raster::tiles::render::{Colormap, Encoded, Expression, Format, RenderOptions};
use raster::tiles::tms::{self, TileId};
use serde_json::Value;

use super::stac::{bad, base_url, blocking, catalog, not_found, query, ApiError};
use super::Shared;

/// The tile, TileJSON and WMTS routes.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/stac/collections/{cid}/items/{iid}/tiles/WebMercatorQuad/{z}/{x}/{y}",
            get(tile),
        )
        .route(
            "/stac/collections/{cid}/items/{iid}/WebMercatorQuad/tilejson.json",
            get(tilejson),
        )
        .route(
            "/stac/collections/{cid}/tiles/WebMercatorQuad/{z}/{x}/{y}",
            get(collection_tile),
        )
        .route("/stac/collections/{cid}/WMTSCapabilities.xml", get(wmts))
        .route("/stac/collections/{cid}/tiles", get(wmts_kvp))
        .with_state(shared)
}

/// Tile options (`assets`, `bidx`, `rescale`, `colormap_name`, `expression`; `datetime` for
/// mosaics). Both TiTiler's repeated form (`bidx=1&bidx=2`, `rescale=0,255&rescale=…`) and
/// comma lists (`bidx=1,2,3`) are accepted; unknown parameters are ignored. A `datetime` of
/// `{Time}` (a WMTS template QGIS sends unsubstituted when no time is chosen) or empty means
/// the Time dimension's default: the newest item's datetime.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct TileQuery {
    assets: Option<String>,
    bidx: Vec<String>,
    rescale: Vec<String>,
    colormap_name: Option<String>,
    expression: Option<String>,
    datetime: Option<String>,
}

impl TileQuery {
    fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = query(raw)?;
        let mut q = TileQuery::default();
        for (k, v) in pairs {
            let once = |slot: &mut Option<String>, v: String| {
                if slot.replace(v).is_some() {
                    return Err(bad(format!("{k} given twice")));
                }
                Ok(())
            };
            match k.as_str() {
                "assets" => once(&mut q.assets, v)?,
                "colormap_name" => once(&mut q.colormap_name, v)?,
                "expression" => once(&mut q.expression, v)?,
                "datetime" => once(&mut q.datetime, v)?,
                "bidx" => q.bidx.push(v),
                "rescale" => q.rescale.push(v),
                _ => {}
            }
        }
        Ok(q)
    }

    pub(super) fn asset(&self) -> String {
        self.assets.clone().unwrap_or_else(|| "visual".into())
    }

    /// The rendering parameters again, for tile URL templates (TileJSON, WMTS).
    fn render_pairs(&self) -> Vec<(&'static str, String)> {
        let mut qs = vec![("assets", self.asset())];
        qs.extend(self.bidx.iter().map(|b| ("bidx", b.clone())));
        qs.extend(self.rescale.iter().map(|r| ("rescale", r.clone())));
        qs.extend(
            self.colormap_name
                .iter()
                .map(|c| ("colormap_name", c.clone())),
        );
        qs.extend(self.expression.iter().map(|e| ("expression", e.clone())));
        qs
    }

    /// True when no rendering parameter was given (the layer list is then derived).
    fn is_plain(&self) -> bool {
        self.render_pairs().len() == 1 && self.assets.is_none()
    }

    /// The `datetime` filter; `{Time}` or empty is the dimension default (`None` here; the
    /// caller resolves it to the newest item).
    fn time(&self) -> Result<TimeChoice, ApiError> {
        match self.datetime.as_deref().map(str::trim) {
            None => Ok(TimeChoice::Any),
            Some("") => Ok(TimeChoice::Default),
            Some(t) if t.eq_ignore_ascii_case("{time}") => Ok(TimeChoice::Default),
            Some(t) => Ok(TimeChoice::Filter(instant_widened(DatetimeFilter::parse(
                t,
            )?))),
        }
    }

    pub(super) fn options(&self) -> Result<RenderOptions, ApiError> {
        let mut o = RenderOptions::default();
        for b in &self.bidx {
            for x in b.split(',') {
                let n = x
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| bad(format!("bidx must be band numbers from 1, got {b:?}")))?;
                o.bidx.push(n);
            }
        }
        let mut v: Vec<f64> = Vec::new();
        for r in &self.rescale {
            let before = v.len();
            for x in r.split(',') {
                v.push(
                    x.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .ok_or_else(|| bad(format!("rescale must be min,max, got {r:?}")))?,
                );
            }
            if !(v.len() - before).is_multiple_of(2) {
                return Err(bad(format!("rescale must be min,max pairs, got {r:?}")));
            }
        }
        o.rescale = v
            .chunks(2)
            .filter_map(|c| match c {
                [a, b] => Some((*a, *b)),
                _ => None,
            })
            .collect();
        if let Some(c) = &self.colormap_name {
            o.colormap =
                Some(Colormap::from_name(c).ok_or_else(|| bad(format!("unknown colormap {c:?}")))?);
        }
        if let Some(e) = &self.expression {
            o.expression = Some(Expression::parse(e).ok_or_else(|| {
                bad(format!(
                    "expression must be a normalized difference (bA-bB)/(bA+bB), got {e:?}"
                ))
            })?);
        }
        Ok(o)
    }
}

/// Which items a collection mosaic may draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum TimeChoice {
    /// No time given: the newest item with data, whatever its date.
    Any,
    /// The dimension default: the newest item's datetime.
    Default,
    Filter(DatetimeFilter),
}

/// An instant matches the whole second it names: capabilities list datetimes to the second,
/// items may carry fractions.
pub(super) fn instant_widened(mut f: DatetimeFilter) -> DatetimeFilter {
    if let (Some(a), Some(b)) = (f.start, f.end) {
        if a == b && a.timestamp_subsec_nanos() == 0 {
            f.end = Some(b + chrono::Duration::microseconds(999_999));
        }
    }
    f
}

impl TimeChoice {
    /// The catalog filter for collection `cid`: the default resolves to the newest item's
    /// datetime (None when the collection has no dated item).
    pub(super) async fn filter(
        self,
        shared: &Arc<Shared>,
        cid: &str,
    ) -> Result<Option<DatetimeFilter>, ApiError> {
        match self {
            TimeChoice::Any => Ok(None),
            TimeChoice::Filter(f) => Ok(Some(f)),
            TimeChoice::Default => {
                let cat = catalog(shared)?;
                let c = cid.to_owned();
                let page = blocking(move || {
                    Ok(cat.search(&SearchParams {
                        collections: Some(vec![c]),
                        limit: Some(1),
                        ..SearchParams::default()
                    })?)
                })
                .await?;
                Ok(page
                    .items
                    .first()
                    .and_then(|i| i.properties.datetime)
                    .map(|t| DatetimeFilter {
                        start: Some(t),
                        end: Some(t),
                    }))
            }
        }
    }
}

/// The tile cache key: the item's version (`updated`) and the parsed options, so spellings of
/// the same request share one entry and a re-published item never serves stale tiles.
pub(super) fn tile_key(
    cid: &str,
    item: &stac::Item,
    asset: &str,
    t: &TileId,
    fmt: &str,
    o: &RenderOptions,
) -> String {
    let version = item.properties.updated.as_deref().unwrap_or_default();
    format!(
        "{cid}/{}/{version}/{asset}/{}/{}/{}/{fmt}/{:?}/{:?}/{:?}/{:?}/{:?}",
        item.id, t.z, t.x, t.y, o.bidx, o.rescale, o.colormap, o.resampling, o.expression
    )
}

/// The file behind an item's asset when it is a file of the archive: under `archive.path`, or
/// else, with an object store, the store's object as GDAL opens it (`/vsis3/…`, see
/// `super::store_read`). `asset` may list several assets (`red,nir`): the source is then a VRT
/// (GDAL opens its XML as the "path") whose band N is band 1 of the Nth asset, for
/// expressions across single-band assets. Blocking (the files are inspected once per version,
/// then cached).
pub(super) fn asset_source(
    shared: &Shared,
    item: &stac::Item,
    asset: &str,
) -> Option<std::path::PathBuf> {
    let one = |key: &str| {
        let a = item.assets.get(key)?;
        let h = archive::catalog::local_href(&a.href)?;
        let local = shared.archive.join(h);
        match &shared.store_reads.reader {
            Some(r) if !local.is_file() => Some(r.gdal_path(h)),
            _ => Some(local),
        }
    };
    if !asset.contains(',') {
        return one(asset);
    }
    let paths: Vec<std::path::PathBuf> = asset.split(',').map(one).collect::<Option<_>>()?;
    stacked(&paths).map(std::path::PathBuf::from)
}

/// A VRT stacking band 1 of each file (same grid required), cached by paths, sizes and
/// modification times; None when a file cannot be read or the grids differ.
fn stacked(paths: &[std::path::PathBuf]) -> Option<String> {
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut key = String::new();
    for p in paths {
        key.push_str(&version_key(p)?);
        key.push(';');
    }
    if let Some(x) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Some(x);
    }
    let xml = raster::tiles::inspect::stack_vrt(paths)?;
    if let Ok(mut c) = cache.lock() {
        if c.len() >= FACTS_CACHE_MAX {
            c.clear();
        }
        c.insert(key, xml.clone());
    }
    Some(xml)
}

/// A cache key for the version of a tile source: path, size and modification time of a local
/// file; the path alone for a file in the object store (written once: the uploader's keys are
/// the archive's paths); None for a local file that is not there.
fn version_key(p: &std::path::Path) -> Option<String> {
    match std::fs::metadata(p) {
        Ok(m) => {
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            Some(format!("{}|{}|{t}", p.display(), m.len()))
        }
        Err(_) if p.starts_with("/vsis3") => Some(p.display().to_string()),
        Err(_) => None,
    }
}

/// How long an item read for tile requests is used again without asking the catalog.
pub const ITEM_TTL: Duration = Duration::from_secs(5);
/// Items kept at most by [`ItemCache`].
const ITEM_CACHE_MAX: usize = 4096;

/// Items read for tile requests, each used for [`ITEM_TTL`]: a tile of a pgstac catalogue
/// costs no `get_item` query (1–2 ms of PostgreSQL, most of what a cached tile cost), and an
/// item replaced or removed (by this process, another node, a re-merge) is seen by tiles within
/// that time (tiles are cached under the item's `updated`, so a new version is drawn anew).
#[derive(Debug, Default)]
pub struct ItemCache(Mutex<HashMap<ItemKey, (Instant, Arc<stac::Item>)>>);

/// (collection id, item id).
type ItemKey = (String, String);

impl ItemCache {
    fn get(&self, cid: &str, iid: &str) -> Option<Arc<stac::Item>> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&(cid.to_owned(), iid.to_owned()))
            .filter(|(at, _)| at.elapsed() < ITEM_TTL)
            .map(|(_, it)| it.clone())
    }

    fn put(&self, cid: String, iid: String, item: Arc<stac::Item>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= ITEM_CACHE_MAX {
            map.retain(|_, (at, _)| at.elapsed() < ITEM_TTL);
            if map.len() >= ITEM_CACHE_MAX {
                map.clear();
            }
        }
        map.insert((cid, iid), (Instant::now(), item));
    }
}

/// The file of an item's asset (in the archive, or in the object store).
async fn asset_path(
    shared: &Arc<Shared>,
    cid: String,
    iid: String,
    asset: String,
) -> Result<(std::path::PathBuf, stac::Item), ApiError> {
    let it = match shared.tile_items.get(&cid, &iid) {
        Some(it) => (*it).clone(),
        None => {
            let cat = catalog(shared)?;
            let (c, i) = (cid.clone(), iid.clone());
            let it = blocking(move || Ok(cat.item(&c, &i)?))
                .await?
                .ok_or_else(|| not_found("item"))?;
            shared.tile_items.put(cid, iid, Arc::new(it.clone()));
            it
        }
    };
    if let Some(missing) = asset.split(',').find(|a| !it.assets.contains_key(*a)) {
        return Err(bad(format!("item has no asset {missing:?}")));
    }
    let (sh, it2, a2) = (shared.clone(), it.clone(), asset.clone());
    let path = blocking(move || Ok(asset_source(&sh, &it2, &a2)))
        .await?
        .ok_or_else(|| bad("asset is not a local file (or assets on different grids)"))?;
    Ok((path, it))
}

/// `{y}.{fmt}` and z/x → tile id and encoding; 400 on anything malformed.
fn parse_tile(z: &str, x: &str, yfmt: &str) -> Result<(TileId, Format, String), ApiError> {
    let (y, fmt) = yfmt.split_once('.').unwrap_or((yfmt, "png"));
    let format = match fmt {
        "png" => Format::Png,
        "jpg" | "jpeg" => Format::Jpeg(85),
        "webp" => Format::WebpLossless,
        other => {
            return Err(bad(format!(
                "tile format must be png, jpg or webp, got {other:?}"
            )))
        }
    };
    let num = |s: &str, what: &str| {
        s.parse::<u64>()
            .map_err(|_| bad(format!("{what} must be a non-negative integer, got {s:?}")))
    };
    let t =
        TileId::new(num(z, "z")?, num(x, "x")?, num(y, "y")?).map_err(|e| bad(e.to_string()))?;
    Ok((t, format, fmt.to_owned()))
}

/// Renders one tile of a local COG through the pool and the bounded cache.
pub(super) async fn render_cached(
    shared: &Shared,
    key: &str,
    path: std::path::PathBuf,
    t: TileId,
    opts: RenderOptions,
    format: Format,
) -> Result<Encoded, ApiError> {
    if let Some(hit) = shared.tile_cache.get(key) {
        return Ok(hit);
    }
    let pool = shared
        .tiles
        .clone()
        .ok_or_else(|| ApiError(StatusCode::SERVICE_UNAVAILABLE, "tiles unavailable".into()))?;
    let enc = pool
        .submit(path.clone(), t, opts, format)
        .await
        .map_err(|e| match e {
            // Capped concurrency: the render queue is bounded (TILE_QUEUE_MAX).
            raster::Error::Busy => {
                super::events::emit(super::events::TileRenderBusy { shared });
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tile renderers busy: retry shortly".into(),
                )
            }
            // Client mistakes, said without server paths.
            raster::Error::Band { band, count, .. } => bad(format!(
                "band {band} does not exist (the asset has {count})"
            )),
            raster::Error::RenderOptions(msg) => bad(msg),
            // GDAL could not read a source in the object store: the store's trouble, not ours.
            other
                if shared
                    .store_reads
                    .reader
                    .as_ref()
                    .is_some_and(|r| r.is_store_path(&path)) =>
            {
                if let Some(r) = &shared.store_reads.reader {
                    r.gdal_failed(&path);
                }
                shared.store_reads.failed(
                    shared,
                    &path.display().to_string(),
                    "gdal",
                    other.to_string(),
                );
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the object store cannot be read now: retry later".into(),
                )
            }
            other => {
                tracing::warn!(error = %other, "tile render failed");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "tile render failed".into(),
                )
            }
        })?;
    if let Some(r) = &shared.store_reads.reader {
        if r.is_store_path(&path) {
            shared.store_reads.succeeded(shared);
        }
    }
    shared.tile_cache.put(key.to_owned(), enc.clone());
    Ok(enc)
}

/// The HTTP answer for a rendered tile: 200 + ETag + Cache-Control, 304 when the client has it,
/// 204 for a tile with no data.
fn tile_response(headers: &HeaderMap, key: &str, enc: Encoded) -> Response {
    let etag = format!("\"{:016x}\"", super::fnv1a(key.as_bytes()));
    let cache = HeaderValue::from_static("public, max-age=3600");
    match enc {
        Encoded::Empty => {
            (StatusCode::NO_CONTENT, [(header::CACHE_CONTROL, cache)]).into_response()
        }
        Encoded::Image {
            bytes,
            content_type,
        } => {
            if headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == etag)
            {
                return StatusCode::NOT_MODIFIED.into_response();
            }
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                    (header::CACHE_CONTROL, cache),
                    (
                        header::ETAG,
                        HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\"")),
                    ),
                ],
                bytes,
            )
                .into_response()
        }
    }
}

async fn tile(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((cid, iid, z, x, yfmt)): Path<(String, String, String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = TileQuery::parse(raw.as_deref())?;
    let (t, format, fmt) = parse_tile(&z, &x, &yfmt)?;
    let opts = q.options()?;
    let (path, it) = asset_path(&shared, cid.clone(), iid, q.asset()).await?;
    let key = tile_key(&cid, &it, &q.asset(), &t, &fmt, &opts);
    let enc = render_cached(&shared, &key, path, t, opts, format).await?;
    Ok(tile_response(&headers, &key, enc))
}

/// Mosaic of a collection: the newest item (within `?datetime=`) whose asset has data in the
/// tile. Before/after comparisons ask for two datetime ranges.
async fn collection_tile(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((cid, z, x, yfmt)): Path<(String, String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = TileQuery::parse(raw.as_deref())?;
    let (t, format, fmt) = parse_tile(&z, &x, &yfmt)?;
    mosaic_tile(&shared, &headers, cid, t, format, &fmt, &q).await
}

/// WMTS GetTile in KVP encoding (`?SERVICE=WMTS&REQUEST=GetTile&LAYER=…&TILEMATRIX=…`,
/// names case-insensitive): the collection mosaic of the layer's render; `TIME` (or `{Time}`,
/// or none) as for the RESTful template.
async fn wmts_kvp(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(cid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let pairs: Vec<(String, String)> = query(raw.as_deref())?;
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let need = |k: &str| get(k).ok_or_else(|| bad(format!("{k} is required")));
    if !need("SERVICE")?.eq_ignore_ascii_case("WMTS")
        || !need("REQUEST")?.eq_ignore_ascii_case("GetTile")
    {
        return Err(bad("this URL answers SERVICE=WMTS&REQUEST=GetTile"));
    }
    let tms_id = need("TILEMATRIXSET")?;
    if tms_id != "WebMercatorQuad" {
        return Err(bad(format!(
            "TILEMATRIXSET {tms_id:?}: only WebMercatorQuad"
        )));
    }
    let ext = match need("FORMAT")? {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        other => return Err(bad(format!("FORMAT {other:?}: image/png or image/jpeg"))),
    };
    let (t, format, fmt) = parse_tile(
        need("TILEMATRIX")?,
        need("TILECOL")?,
        &format!("{}.{ext}", need("TILEROW")?),
    )?;
    let layer = need("LAYER")?;
    let cl = collection_layers(&shared, &cid).await?;
    let mut q = cl
        .layers
        .into_iter()
        .find(|l| l.name == layer)
        .map(|l| l.render.query)
        .ok_or_else(|| not_found("layer"))?;
    q.datetime = get("TIME").map(str::to_owned);
    mosaic_tile(&shared, &headers, cid, t, format, &fmt, &q).await
}

/// One tile of a collection mosaic: the newest item within the query's time whose asset has
/// data there.
async fn mosaic_tile(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    cid: String,
    t: TileId,
    format: Format,
    fmt: &str,
    q: &TileQuery,
) -> Result<Response, ApiError> {
    let shared = shared.clone();
    let opts = q.options()?;
    let lb = t.bounds_lonlat();
    let params = SearchParams {
        bbox: Some([
            lb.minx.max(-180.0),
            lb.miny.max(-90.0),
            lb.maxx.min(180.0),
            lb.maxy.min(90.0),
        ]),
        datetime: q.time()?.filter(&shared, &cid).await?,
        collections: Some(vec![cid.clone()]),
        limit: Some(8),
        ..SearchParams::default()
    };
    let cat = catalog(&shared)?;
    let c2 = cid.clone();
    let page = blocking(move || {
        if cat.collection(&c2)?.is_none() {
            return Err(not_found("collection"));
        }
        Ok(cat.search(&params)?)
    })
    .await?;
    let asset = q.asset();
    let (sh, items, a2) = (shared.clone(), page.items.clone(), asset.clone());
    let paths = blocking(move || {
        Ok(items
            .iter()
            .map(|it| asset_source(&sh, it, &a2))
            .collect::<Vec<_>>())
    })
    .await?;
    for (it, path) in page.items.iter().zip(paths) {
        let Some(path) = path else {
            continue;
        };
        let key = tile_key(&cid, it, &asset, &t, fmt, &opts);
        let enc = render_cached(&shared, &key, path, t, opts.clone(), format).await?;
        if !matches!(enc, Encoded::Empty) {
            return Ok(tile_response(headers, &key, enc));
        }
    }
    Ok(tile_response(headers, "", Encoded::Empty))
}

/// WMTS 1.0.0 capabilities of a collection's mosaic: one layer per [`Render`] (or, when the
/// request names rendering parameters, one layer with exactly those), each with a Time
/// dimension listing the items' datetimes (QGIS offers them as a time slider) and zoom levels
/// down to the finest source resolution.
async fn wmts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(cid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = TileQuery::parse(raw.as_deref())?;
    let b = base_url(&headers);
    q.options()?;
    let cl = collection_layers(&shared, &cid).await?;
    let time_param = if cl.times.is_empty() {
        ""
    } else {
        "&datetime={Time}"
    };
    let layer = |identifier: String, title: String, query: &TileQuery, maxzoom: u8| {
        let qs = serde_urlencoded::to_string(query.render_pairs()).unwrap_or_default();
        tms::WmtsLayer {
            identifier,
            title,
            abstract_text: Some(cl.collection.description.clone()),
            bounds: cl.bounds,
            minzoom: 0,
            maxzoom,
            format: "image/png".into(),
            url_template: format!(
                "{b}/stac/collections/{cid}/tiles/WebMercatorQuad/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.png?{qs}{time_param}"
            ),
            times: cl.times.clone(),
        }
    };
    let title = cl.collection.title.clone().unwrap_or_else(|| cid.clone());
    let layers: Vec<tms::WmtsLayer> = if q.is_plain() && !cl.layers.is_empty() {
        cl.layers
            .iter()
            .map(|l| {
                layer(
                    l.name.clone(),
                    format!("{title}: {}", l.render.title),
                    &l.render.query,
                    l.maxzoom,
                )
            })
            .collect()
    } else {
        let maxzoom = cl
            .layers
            .iter()
            .find(|l| l.render.query.asset() == q.asset())
            .map_or(DEFAULT_MAXZOOM, |l| l.maxzoom);
        vec![layer(cid.clone(), title, &q, maxzoom)]
    };
    let xml = tms::wmts_capabilities(
        &tms::WmtsService {
            title: "Downlink ground station".into(),
            capabilities_url: format!("{b}/stac/collections/{cid}/WMTSCapabilities.xml"),
            tile_base_url: format!("{b}/stac/collections/{cid}/tiles"),
        },
        &layers,
    )
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/xml")], xml).into_response())
}

/// Max zoom of a layer whose sources cannot be inspected.
const DEFAULT_MAXZOOM: u8 = 12;
/// The deepest zoom offered, however fine the source.
const TOP_MAXZOOM: u8 = 22;
/// Items inspected for a collection's layers and time list.
const LAYER_ITEMS_MAX: u32 = 1000;

/// One way of drawing a collection: the tile parameters of a WMTS/WMS layer.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Render {
    /// `visual`, a band (`red`, `nir`, `ch2`, `data-b3` …) or `ndvi`.
    pub name: String,
    pub title: String,
    pub query: TileQuery,
}

/// A render offered as a layer of a collection.
#[derive(Debug, Clone)]
pub(super) struct Layer {
    /// `COLLECTION` for the first render, else `COLLECTION:RENDER`.
    pub name: String,
    pub render: Render,
    /// Zoom of the finest source pixel among the collection's items (for this asset).
    pub maxzoom: u8,
}

/// What WMTS and WMS say about a collection.
pub(super) struct CollectionLayers {
    pub collection: stac::Collection,
    /// (west, south, east, north), latitudes within Web Mercator.
    pub bounds: [f64; 4],
    /// Item datetimes, ascending, `YYYY-MM-DDTHH:MM:SSZ`.
    pub times: Vec<String>,
    pub layers: Vec<Layer>,
}

/// The collection, its item datetimes, and a layer per render of its newest item.
pub(super) async fn collection_layers(
    shared: &Arc<Shared>,
    cid: &str,
) -> Result<CollectionLayers, ApiError> {
    let cat = catalog(shared)?;
    let c2 = cid.to_owned();
    let sh = shared.clone();
    let cid = cid.to_owned();
    blocking(move || {
        let col = cat
            .collection(&c2)?
            .ok_or_else(|| not_found("collection"))?;
        let page = cat.search(&SearchParams {
            collections: Some(vec![c2.clone()]),
            limit: Some(LAYER_ITEMS_MAX),
            ..SearchParams::default()
        })?;
        let items = page.items;
        let mut times: Vec<String> = items
            .iter()
            .filter_map(|i| i.properties.datetime)
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .collect();
        times.sort();
        times.dedup();
        let bounds = col
            .extent
            .spatial
            .bbox
            .first()
            .map_or([-180.0, -85.0, 180.0, 85.0], |bb| {
                [
                    bb.xmin(),
                    bb.ymin().max(-85.0),
                    bb.xmax(),
                    bb.ymax().min(85.0),
                ]
            });
        // Renders come from the newest item (search answers newest first).
        let mut layers = Vec::new();
        if let Some(newest) = items.first() {
            let facts: BTreeMap<String, Arc<AssetFacts>> = newest
                .assets
                .keys()
                .filter_map(|k| {
                    let path = asset_source(&sh, newest, k)?;
                    Some((k.clone(), asset_facts(&path, true)?))
                })
                .collect();
            for r in renders(newest, &facts) {
                let asset = r.query.asset();
                let asset = asset.split(',').next().unwrap_or_default();
                let maxzoom = items
                    .iter()
                    .filter_map(|it| asset_source(&sh, it, asset))
                    .filter_map(|p| asset_facts(&p, false))
                    .map(|f| f.maxzoom)
                    .max()
                    .map_or(DEFAULT_MAXZOOM, |z| z.min(TOP_MAXZOOM));
                // The bare collection name is only ever the visual render, so it cannot turn into
                // a raw band when a newer item lacks a visual asset.
                let name = if r.name == "visual" {
                    cid.clone()
                } else {
                    format!("{cid}:{}", r.name)
                };
                layers.push(Layer {
                    name,
                    render: r,
                    maxzoom,
                });
            }
        }
        Ok(CollectionLayers {
            collection: col,
            bounds,
            times,
            layers,
        })
    })
    .await
}

/// What a layer list needs to know of an asset's file.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AssetFacts {
    /// Zoom of the source's finest pixel (TileJSON's maxzoom).
    pub maxzoom: u8,
    pub band_count: usize,
    /// GDAL band descriptions (`B04 red 665nm`), empty when none.
    pub descriptions: Vec<String>,
    /// Per band, the 2 % and 98 % points of its valid values (read through the overviews at
    /// about 512 pixels across); None when not computed or when the band has no valid pixel.
    pub stretch: Option<Vec<Option<(f64, f64)>>>,
}

/// Facts per file, keyed by path, size and modification time (a replaced file is inspected
/// again); bounded.
fn facts_cache() -> &'static Mutex<HashMap<String, Arc<AssetFacts>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<AssetFacts>>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}
const FACTS_CACHE_MAX: usize = 4096;

/// The facts of a local raster (blocking: GDAL reads); `stretch` computes the per-band
/// stretch too. None when the file cannot be read as a raster.
pub(super) fn asset_facts(path: &std::path::Path, stretch: bool) -> Option<Arc<AssetFacts>> {
    let key = version_key(path)?;
    let cached = facts_cache().lock().ok().and_then(|c| c.get(&key).cloned());
    if let Some(f) = &cached {
        if !stretch || f.stretch.is_some() {
            return cached;
        }
    }
    let src = raster::tiles::render::TileSource::open(path).ok()?;
    let info = src.info();
    // The zoom whose pixel is not coarser than the source's (10 % slack), so the finest
    // level shows every source pixel; a web-optimized COG says its own.
    let maxzoom = info.web_max_zoom.unwrap_or_else(|| {
        (0..TOP_MAXZOOM)
            .find(|z| tms::resolution(*z) <= info.res_3857 * 1.1)
            .unwrap_or(TOP_MAXZOOM)
    });
    let bands = raster::tiles::inspect::band_samples(path, stretch)?;
    let mut descriptions = Vec::with_capacity(info.band_count);
    let mut stretches = Vec::with_capacity(info.band_count);
    for band in bands.into_iter().take(info.band_count) {
        descriptions.push(band.description);
        if stretch {
            stretches.push(percentiles(band.values, band.nodata));
        }
    }
    let facts = Arc::new(AssetFacts {
        maxzoom,
        band_count: info.band_count,
        descriptions,
        stretch: stretch.then_some(stretches),
    });
    if let Ok(mut c) = facts_cache().lock() {
        if c.len() >= FACTS_CACHE_MAX {
            c.clear();
        }
        c.insert(key, facts.clone());
    }
    Some(facts)
}

/// The 2 % and 98 % points of the values that are finite and not `nodata`; None when there
/// are none or they are all equal.
fn percentiles(mut v: Vec<f64>, nodata: Option<f64>) -> Option<(f64, f64)> {
    v.retain(|x| x.is_finite() && nodata.is_none_or(|nd| *x != nd));
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v.get(i).copied()
    };
    let (lo, hi) = (at(0.02)?, at(0.98)?);
    if lo < hi {
        Some((lo, hi))
    } else {
        let (min, max) = (v.first().copied()?, v.last().copied()?);
        (min < max).then_some((min, max))
    }
}

/// `eo:common_name`s this guesses from a band description (`B04 red 665nm` → `red`).
const COMMON_NAMES: &[&str] = &[
    "coastal", "blue", "green", "yellow", "red", "rededge", "nir", "nir08", "nir09", "cirrus",
    "swir16", "swir22", "lwir", "lwir11", "lwir12", "pan",
];

/// A band's metadata in the item (STAC 1.1 `bands`, else `eo:bands` / `raster:bands`).
fn band_meta(asset: &stac::Asset, i: usize) -> (Option<String>, Option<(f64, f64)>) {
    let v = serde_json::to_value(asset).unwrap_or_default();
    let pick = |key: &str| v.get(key).and_then(|b| b.get(i)).cloned();
    let bands = [pick("bands"), pick("eo:bands"), pick("raster:bands")];
    let name = bands.iter().flatten().find_map(|b| {
        b.get("eo:common_name")
            .or_else(|| b.get("common_name"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let stats = bands.iter().flatten().find_map(|b| {
        let s = b.get("statistics")?;
        let f = |k: &str| s.get(k).and_then(Value::as_f64).filter(|x| x.is_finite());
        let (min, max) = (f("minimum"), f("maximum"));
        let range = match (f("mean"), f("stddev"), min, max) {
            (Some(m), Some(sd), lo, hi) if sd > 0.0 => (
                lo.map_or(m - 2.0 * sd, |l| l.max(m - 2.0 * sd)),
                hi.map_or(m + 2.0 * sd, |h| h.min(m + 2.0 * sd)),
            ),
            (_, _, Some(lo), Some(hi)) => (lo, hi),
            _ => return None,
        };
        (range.0 < range.1).then_some(range)
    });
    (name, stats)
}

fn common_name_in(description: &str) -> Option<String> {
    description
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(str::to_ascii_lowercase)
        .find(|w| COMMON_NAMES.contains(&w.as_str()))
}

/// `-1.5` → `-1.5`, `1234.0` → `1234`: rescale values as they read best in a URL.
fn num(x: f64) -> String {
    let r = (x * 1e4).round() / 1e4;
    format!("{r}")
}

/// The layers an item offers: `visual` (its visual asset), one per band of its local data
/// assets (named by `eo:common_name`, else the asset for a single band, else `ASSET-bN`), with
/// a rescale from the band statistics or `facts`' stretch, and `ndvi` (an `ndvi` asset, or red
/// and NIR bands of one asset).
pub(super) fn renders(item: &stac::Item, facts: &BTreeMap<String, Arc<AssetFacts>>) -> Vec<Render> {
    let mut out: Vec<Render> = Vec::new();
    let has_role = |a: &stac::Asset, r: &str| a.roles.iter().any(|x| x == r);
    let visual = if item.assets.contains_key("visual") {
        Some("visual".to_owned())
    } else {
        item.assets
            .iter()
            .find(|(_, a)| has_role(a, "visual"))
            .map(|(k, _)| k.clone())
    };
    if let Some(v) = visual.filter(|v| facts.contains_key(v)) {
        out.push(Render {
            name: "visual".into(),
            title: "visual".into(),
            query: TileQuery {
                assets: Some(v),
                ..TileQuery::default()
            },
        });
    }
    let mut red_nir: Option<(String, usize, usize)> = None;
    // Single-band assets named red and NIR (one file per band).
    let (mut red_asset, mut nir_asset): (Option<String>, Option<String>) = (None, None);
    for (key, asset) in &item.assets {
        let Some(f) = facts.get(key) else { continue };
        if !has_role(asset, "data") || key == "ndvi" {
            continue;
        }
        let (mut red, mut nir) = (None, None);
        for i in 1..=f.band_count {
            let (meta_name, stats) = band_meta(asset, i - 1);
            let common =
                meta_name.or_else(|| f.descriptions.get(i - 1).and_then(|d| common_name_in(d)));
            match common.as_deref() {
                Some("red") => red = red.or(Some(i)),
                Some("nir" | "nir08") => nir = nir.or(Some(i)),
                _ => {}
            }
            if f.band_count == 1 {
                match common.as_deref() {
                    Some("red") => red_asset = red_asset.or(Some(key.clone())),
                    Some("nir" | "nir08") => nir_asset = nir_asset.or(Some(key.clone())),
                    _ => {}
                }
            }
            let name = match common {
                Some(c) => c,
                None if f.band_count == 1 => key.clone(),
                None => format!("{key}-b{i}"),
            };
            let stretch = stats.or_else(|| {
                f.stretch
                    .as_ref()
                    .and_then(|s| s.get(i - 1).copied().flatten())
            });
            let mut query = TileQuery {
                assets: Some(key.clone()),
                bidx: vec![i.to_string()],
                ..TileQuery::default()
            };
            let mut title = format!("{name} ({key} band {i}");
            if let Some((lo, hi)) = stretch {
                query.rescale = vec![format!("{},{}", num(lo), num(hi))];
                title.push_str(&format!(", {}–{}", num(lo), num(hi)));
            }
            title.push(')');
            out.push(Render { name, title, query });
        }
        if let (Some(r), Some(n), None) = (red, nir, &red_nir) {
            red_nir = Some((key.clone(), r, n));
        }
    }
    let ndvi = if item.assets.contains_key("ndvi") && facts.contains_key("ndvi") {
        Some(TileQuery {
            assets: Some("ndvi".into()),
            ..TileQuery::default()
        })
    } else {
        red_nir
            .map(|(key, r, n)| TileQuery {
                assets: Some(key),
                expression: Some(Expression::NormalizedDifference { a: n, b: r }.text()),
                ..TileQuery::default()
            })
            .or_else(|| {
                let (r, n) = (red_asset?, nir_asset?);
                Some(TileQuery {
                    assets: Some(format!("{r},{n}")),
                    expression: Some(Expression::NormalizedDifference { a: 2, b: 1 }.text()),
                    ..TileQuery::default()
                })
            })
    };
    if let Some(mut query) = ndvi {
        query.rescale = vec!["-1,1".into()];
        query.colormap_name = Some("rdylgn".into());
        out.push(Render {
            name: "ndvi".into(),
            title: "NDVI (RdYlGn, -1–1)".into(),
            query,
        });
    }
    // Names are layer names: unique, and only characters safe in URLs and XML.
    let mut seen = std::collections::HashSet::new();
    for r in &mut out {
        r.name = r
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if !seen.insert(r.name.clone()) {
            r.name = format!("{}-{}", r.name, r.query.asset());
            seen.insert(r.name.clone());
        }
    }
    out
}

async fn tilejson(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((cid, iid)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let q = TileQuery::parse(raw.as_deref())?;
    let b = base_url(&headers);
    q.options()?;
    let (path, it) = asset_path(&shared, cid.clone(), iid.clone(), q.asset()).await?;
    let range = blocking(move || {
        let src = raster::tiles::render::TileSource::open(&path)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        src.info()
            .zoom_range()
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await?;
    let bbox = it.bbox.map_or([-180.0, -85.0, 180.0, 85.0], |bb| {
        [bb.xmin(), bb.ymin(), bb.xmax(), bb.ymax()]
    });
    let qs = q.render_pairs();
    let qs = serde_urlencoded::to_string(&qs).unwrap_or_default();
    let doc = tms::tilejson(&tms::TileJsonParams {
        tiles_url: format!(
            "{b}/stac/collections/{cid}/items/{iid}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?{qs}"
        ),
        bounds: bbox,
        minzoom: range.0,
        maxzoom: range.1,
        name: Some(iid.clone()),
        attribution: Some("Downlink ground station".into()),
    })
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(doc))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn renders_of_per_band_assets_and_a_stacked_source() {
        let item: stac::Item = serde_json::from_value(serde_json::json!({
            "type": "Feature", "stac_version": "1.1.0", "id": "i", "geometry": null,
            "properties": {"datetime": "2021-08-12T10:25:59Z"}, "links": [],
            "assets": {
                "visual": {"href": "v.tif", "roles": ["visual"]},
                "red": {"href": "red.tif", "roles": ["data"], "bands": [{"name": "red",
                    "eo:common_name": "red",
                    "statistics": {"mean": 678.0, "stddev": 521.0, "minimum": 0.0, "maximum": 16800.0}}]},
                "nir": {"href": "nir.tif", "roles": ["data"], "bands": [{"name": "nir",
                    "eo:common_name": "nir"}]},
                "thumbnail": {"href": "t.png", "roles": ["thumbnail"]}
            }
        }))
        .unwrap();
        let one = |stretch: Option<(f64, f64)>| {
            Arc::new(AssetFacts {
                maxzoom: 14,
                band_count: 1,
                descriptions: vec![String::new()],
                stretch: Some(vec![stretch]),
            })
        };
        let facts: BTreeMap<String, Arc<AssetFacts>> = [
            ("visual".to_owned(), one(None)),
            ("red".to_owned(), one(Some((1.0, 2.0)))),
            ("nir".to_owned(), one(Some((1485.0, 4915.0)))),
        ]
        .into_iter()
        .collect();
        let r = renders(&item, &facts);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["visual", "red", "nir", "ndvi"]);
        // Statistics win over the computed stretch; mean ± 2σ within min/max.
        assert_eq!(r[1].query.rescale, ["0,1720"]);
        assert_eq!(r[2].query.rescale, ["1485,4915"]);
        assert_eq!(r[3].query.asset(), "red,nir");
        assert_eq!(r[3].query.expression.as_deref(), Some("(b2-b1)/(b2+b1)"));
        assert!(r[3].query.options().unwrap().expression.is_some());

        // Band 1 of two files on one grid: a two-band source GDAL opens and renders.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/change/muri-ag");
        let files = [
            dir.join("S2_L2A_T32TMT_20200807_red_nir.tif"),
            dir.join("S2_L2A_T32TMT_20210812_red_nir.tif"),
        ];
        let xml = stacked(&files).unwrap();
        let src = raster::tiles::render::TileSource::open(&xml).unwrap();
        assert_eq!(src.info().band_count, 2);
        let opts = RenderOptions {
            expression: Expression::parse("(b2-b1)/(b2+b1)"),
            colormap: Some(Colormap::RdYlGn),
            ..RenderOptions::default()
        };
        let t = TileId::new(14, 8572, 5744).unwrap();
        assert!(matches!(
            src.render(&t, &opts).unwrap(),
            raster::tiles::render::Tile::Rgba(_)
        ));
        // Different grids do not stack.
        let other = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/geotiff/byte.tif");
        assert!(stacked(&[files[0].clone(), other]).is_none());
    }

    #[test]
    fn tile_query_forms() {
        let rep = TileQuery::parse(Some("bidx=1&bidx=2&rescale=0,255&rescale=10,20&x=1")).unwrap();
        let csv = TileQuery::parse(Some("bidx=1,2&rescale=0,255,10,20")).unwrap();
        let (a, b) = (rep.options().unwrap(), csv.options().unwrap());
        assert_eq!(a, b);
        assert_eq!(a.bidx, [1, 2]);
        assert_eq!(a.rescale, [(0.0, 255.0), (10.0, 20.0)]);
        let t = TileId { z: 1, x: 0, y: 1 };
        let item = stac::Item::new("i");
        assert_eq!(
            tile_key("c", &item, "visual", &t, "png", &a),
            tile_key("c", &item, "visual", &t, "png", &b)
        );
        assert_eq!(rep.asset(), "visual");
        for bad in [
            "bidx=0",
            "bidx=x",
            "rescale=1",
            "rescale=1,nan",
            "colormap_name=nope",
        ] {
            let q = TileQuery::parse(Some(bad)).unwrap();
            assert!(q.options().is_err(), "{bad}");
        }
        assert!(TileQuery::parse(Some("assets=a&assets=b")).is_err());
        assert!(TileQuery::parse(Some("datetime=a&datetime=b")).is_err());
    }
}
