//! XYZ map tiles per item and per collection (a mosaic of the newest item with data), TileJSON
//! per item and WMTS 1.0.0 capabilities per collection, under `/stac/collections/…`.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use storage::catalog::{DatetimeFilter, SearchParams};
use storage::tiles::render::{Colormap, Encoded, Format, RenderError, RenderOptions};
use storage::tiles::tms::{self, TileId};

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
        .with_state(shared)
}

/// Tile options (`assets`, `bidx`, `rescale`, `colormap_name`; `datetime` for mosaics). Both
/// TiTiler's repeated form (`bidx=1&bidx=2`, `rescale=0,255&rescale=…`) and comma lists
/// (`bidx=1,2,3`) are accepted; unknown parameters are ignored.
#[derive(Debug, Default)]
struct TileQuery {
    assets: Option<String>,
    bidx: Vec<String>,
    rescale: Vec<String>,
    colormap_name: Option<String>,
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
                "datetime" => once(&mut q.datetime, v)?,
                "bidx" => q.bidx.push(v),
                "rescale" => q.rescale.push(v),
                _ => {}
            }
        }
        Ok(q)
    }

    fn asset(&self) -> String {
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
        qs
    }

    fn options(&self) -> Result<RenderOptions, ApiError> {
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
        Ok(o)
    }
}

/// The tile cache key: the item's version (`updated`) and the parsed options, so spellings of
/// the same request share one entry and a re-published item never serves stale tiles.
fn tile_key(
    cid: &str,
    item: &stac::Item,
    asset: &str,
    t: &TileId,
    fmt: &str,
    o: &RenderOptions,
) -> String {
    let version = item
        .properties
        .additional_fields
        .get("updated")
        .map(ToString::to_string)
        .unwrap_or_default();
    format!(
        "{cid}/{}/{version}/{asset}/{}/{}/{}/{fmt}/{:?}/{:?}/{:?}/{:?}",
        item.id, t.z, t.x, t.y, o.bidx, o.rescale, o.colormap, o.resampling
    )
}

/// The file behind an item's asset when it is a local file inside the archive.
fn local_asset(
    archive: &std::path::Path,
    item: &stac::Item,
    asset: &str,
) -> Option<std::path::PathBuf> {
    let a = item.assets.get(asset)?;
    storage::catalog::local_href(&a.href).map(|h| archive.join(h))
}

/// The local file of an item's asset (inside the archive).
async fn asset_path(
    shared: &Arc<Shared>,
    cid: String,
    iid: String,
    asset: String,
) -> Result<(std::path::PathBuf, stac::Item), ApiError> {
    let cat = catalog(shared)?;
    let it = blocking(move || Ok(cat.item(&cid, &iid)?))
        .await?
        .ok_or_else(|| not_found("item"))?;
    if !it.assets.contains_key(&asset) {
        return Err(bad(format!("item has no asset {asset:?}")));
    }
    let path = local_asset(&shared.archive, &it, &asset)
        .ok_or_else(|| bad("asset is not a local file"))?;
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
async fn render_cached(
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
        .submit(path, t, opts, format)
        .await
        .map_err(|e| match e {
            // Capped concurrency: the render queue is bounded (TILE_QUEUE_MAX).
            RenderError::Busy => {
                shared
                    .tiles_busy
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "tile renderers busy: retry shortly".into(),
                )
            }
            // Client mistakes, said without server paths.
            RenderError::Band { band, count, .. } => bad(format!(
                "band {band} does not exist (the asset has {count})"
            )),
            RenderError::Options(msg) => bad(msg),
            other => {
                tracing::warn!(error = %other, "tile render failed");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "tile render failed".into(),
                )
            }
        })?;
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
    let opts = q.options()?;
    let lb = t.bounds_lonlat();
    let params = SearchParams {
        bbox: Some([
            lb.minx.max(-180.0),
            lb.miny.max(-90.0),
            lb.maxx.min(180.0),
            lb.maxy.min(90.0),
        ]),
        datetime: q
            .datetime
            .as_deref()
            .map(DatetimeFilter::parse)
            .transpose()?,
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
    for it in &page.items {
        let Some(path) = local_asset(&shared.archive, it, &asset) else {
            continue;
        };
        let key = tile_key(&cid, it, &asset, &t, &fmt, &opts);
        let enc = render_cached(&shared, &key, path, t, opts.clone(), format).await?;
        if !matches!(enc, Encoded::Empty) {
            return Ok(tile_response(&headers, &key, enc));
        }
    }
    Ok(tile_response(&headers, "", Encoded::Empty))
}

/// WMTS 1.0.0 capabilities of a collection's mosaic, with a Time dimension listing its items'
/// datetimes (QGIS offers them as a time slider).
async fn wmts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(cid): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let q = TileQuery::parse(raw.as_deref())?;
    let b = base_url(&headers);
    q.options()?;
    let cat = catalog(&shared)?;
    let c2 = cid.clone();
    let (col, items) = blocking(move || {
        let col = cat
            .collection(&c2)?
            .ok_or_else(|| not_found("collection"))?;
        let page = cat.search(&SearchParams {
            collections: Some(vec![c2.clone()]),
            limit: Some(1000),
            ..SearchParams::default()
        })?;
        Ok((col, page.items))
    })
    .await?;
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
    let qs = q.render_pairs();
    let qs = serde_urlencoded::to_string(&qs).unwrap_or_default();
    let time_param = if times.is_empty() {
        ""
    } else {
        "&datetime={Time}"
    };
    let xml = tms::wmts_capabilities(
        &tms::WmtsService {
            title: "Downlink ground station".into(),
            capabilities_url: format!("{b}/stac/collections/{cid}/WMTSCapabilities.xml"),
            tile_base_url: format!("{b}/stac/collections/{cid}/tiles"),
        },
        &[tms::WmtsLayer {
            identifier: cid.clone(),
            title: col.title.clone().unwrap_or_else(|| cid.clone()),
            abstract_text: Some(col.description.clone()),
            bounds,
            minzoom: 0,
            maxzoom: 12,
            format: "image/png".into(),
            url_template: format!(
                "{b}/stac/collections/{cid}/tiles/WebMercatorQuad/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.png?{qs}{time_param}"
            ),
            times,
        }],
    )
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/xml")], xml).into_response())
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
        let src = storage::tiles::render::TileSource::open(&path)
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
