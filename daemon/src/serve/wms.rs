//! OGC WMS 1.3.0 at `/wms` (OGC 06-042), with a TIME dimension so QGIS's temporal controller
//! can step through the passes and scenes of a collection.
//!
//! - `GetCapabilities`: a layer per collection render (the same layers as WMTS, see
//!   `super::tiles`: `COLLECTION` and `COLLECTION:RENDER`), each with its
//!   `EX_GeographicBoundingBox`, bounding boxes in CRS:84, EPSG:4326 and EPSG:3857, and
//!   `<Dimension name="time">` listing the item datetimes, default = the newest.
//! - `GetMap`: CRS `EPSG:3857`, `EPSG:4326` (WMS 1.3.0 axis order: BBOX is
//!   `minlat,minlon,maxlat,maxlon`) or `CRS:84` (lon/lat); `VERSION=1.1.1` with `SRS` reads
//!   EPSG:4326 as lon/lat as that version does. `image/png` or `image/jpeg`, `TRANSPARENT`,
//!   `BGCOLOR`, `TIME` as an instant (the second it names), a `start/end` range, or a date
//!   (the whole day); no TIME is the default. The picture is assembled from the map tile
//!   renderer's WebMercatorQuad tiles (and its cache) at the zoom whose pixel is not coarser
//!   than the requested one, newest item on top, older items filling its gaps.
//! - Anything wrong is a `ServiceExceptionReport` (XML) with the WMS 1.3.0 code, HTTP 400,
//!   counted by code in `/api/v1/status` (`wms_exceptions`) and `/metrics`
//!   (`downlink_wms_exceptions_total{code}`).

use std::fmt::Write as _;
use std::sync::Arc;

use archive::catalog::{DatetimeFilter, SearchParams};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, NaiveDate, Utc};
use raster::tiles::render::{encode_sized, Encoded, Format};
use raster::tiles::tms::{lonlat_to_mercator, xml_escape, TileId, MAX_LAT};
use raster::tiles::window::{MapCrs, MapWindow};

use super::stac::{base_url, blocking, catalog, ApiError};
use super::tiles::{
    asset_source, collection_layers, instant_widened, render_cached, tile_key, Layer,
};
use super::Shared;

/// The exception codes counted (WMS 1.3.0 §D and the OWS codes for missing/bad parameters).
pub const WMS_EXCEPTION_CODES: &[&str] = &[
    "InvalidFormat",
    "InvalidCRS",
    "LayerNotDefined",
    "StyleNotDefined",
    "InvalidDimensionValue",
    "OperationNotSupported",
    "MissingParameterValue",
    "InvalidParameterValue",
    "NoApplicableCode",
];
/// Largest WIDTH and HEIGHT (advertised as MaxWidth/MaxHeight).
const MAX_SIDE: u32 = 4096;
/// Most layers one GetMap may stack (advertised as LayerLimit).
const MAX_LAYERS: usize = 8;
/// Tiles read for one layer of one GetMap, at most (the zoom is lowered to stay within).
const MAX_TILES: usize = 64;
/// Items drawn into one GetMap, newest first.
const MAX_ITEMS: u32 = 16;

/// The WMS route.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().route("/wms", get(wms)).with_state(shared)
}

/// A WMS service exception.
#[derive(Debug)]
struct Exception {
    status: StatusCode,
    code: &'static str,
    text: String,
}

fn exc(code: &'static str, text: impl Into<String>) -> Exception {
    Exception {
        status: StatusCode::BAD_REQUEST,
        code,
        text: text.into(),
    }
}

impl From<ApiError> for Exception {
    fn from(e: ApiError) -> Self {
        Exception {
            status: if e.0.is_client_error() {
                StatusCode::BAD_REQUEST
            } else {
                e.0
            },
            code: if e.0.is_client_error() {
                "InvalidParameterValue"
            } else {
                "NoApplicableCode"
            },
            text: e.1,
        }
    }
}

impl Exception {
    fn response(self, shared: &Shared) -> Response {
        super::events::emit(super::events::WmsException {
            shared,
            code: self.code,
            text: &self.text,
        });
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ServiceExceptionReport version=\"1.3.0\" \
             xmlns=\"http://www.opengis.net/ogc\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xsi:schemaLocation=\"http://www.opengis.net/ogc http://schemas.opengis.net/wms/1.3.0/exceptions_1_3_0.xsd\">\n  \
             <ServiceException code=\"{}\">{}</ServiceException>\n</ServiceExceptionReport>\n",
            self.code,
            xml_escape(&self.text)
        );
        let mut r = (self.status, [(header::CONTENT_TYPE, "text/xml")], xml).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// Query parameters, names case-insensitive (the first of a repeated name counts).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(raw: Option<&str>) -> Result<Self, Exception> {
        let pairs: Vec<(String, String)> = match raw {
            None | Some("") => Vec::new(),
            Some(r) => serde_urlencoded::from_str(r)
                .map_err(|e| exc("InvalidParameterValue", format!("query string: {e}")))?,
        };
        Ok(Params(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_ascii_uppercase(), v))
                .collect(),
        ))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    fn need(&self, k: &str) -> Result<&str, Exception> {
        self.get(k)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| exc("MissingParameterValue", format!("{k} is required")))
    }
}

async fn wms(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    match answer(&shared, &headers, raw.as_deref()).await {
        Ok(r) => r,
        Err(e) => e.response(&shared),
    }
}

async fn answer(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<Response, Exception> {
    let p = Params::parse(raw)?;
    if let Some(s) = p.get("SERVICE") {
        if !s.eq_ignore_ascii_case("WMS") {
            return Err(exc(
                "InvalidParameterValue",
                format!("SERVICE must be WMS, got {s:?}"),
            ));
        }
    }
    let request = p.need("REQUEST")?;
    if request.eq_ignore_ascii_case("GetCapabilities") {
        capabilities(shared, headers).await
    } else if request.eq_ignore_ascii_case("GetMap") {
        get_map(shared, &p).await
    } else {
        Err(exc(
            "OperationNotSupported",
            format!("REQUEST {request:?}: this server offers GetCapabilities and GetMap"),
        ))
    }
}

async fn capabilities(shared: &Arc<Shared>, headers: &HeaderMap) -> Result<Response, Exception> {
    let b = base_url(headers);
    let cat = catalog(shared)?;
    let cols = blocking(move || Ok(cat.collections()?)).await?;
    let mut layers = Vec::new();
    for c in cols {
        let cl = collection_layers(shared, &c.id).await?;
        layers.push(cl);
    }
    let e = xml_escape;
    let mut x = String::with_capacity(8192);
    // `write!` into a String cannot fail.
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<WMS_Capabilities version=\"1.3.0\" \
         xmlns=\"http://www.opengis.net/wms\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:schemaLocation=\"http://www.opengis.net/wms http://schemas.opengis.net/wms/1.3.0/capabilities_1_3_0.xsd\">\n\
         <Service>\n  <Name>WMS</Name>\n  <Title>Downlink ground station</Title>\n  \
         <Abstract>Received passes and imported scenes, one layer per collection and render, with a time dimension.</Abstract>\n  \
         <OnlineResource xlink:type=\"simple\" xlink:href=\"{0}/wms\"/>\n  \
         <Fees>none</Fees>\n  <AccessConstraints>none</AccessConstraints>\n  \
         <LayerLimit>{MAX_LAYERS}</LayerLimit>\n  <MaxWidth>{MAX_SIDE}</MaxWidth>\n  <MaxHeight>{MAX_SIDE}</MaxHeight>\n</Service>\n<Capability>\n  <Request>\n",
        e(&b)
    );
    for (op, formats) in [
        ("GetCapabilities", &["text/xml"][..]),
        ("GetMap", &["image/png", "image/jpeg"][..]),
    ] {
        let _ = writeln!(x, "    <{op}>");
        for f in formats {
            let _ = writeln!(x, "      <Format>{f}</Format>");
        }
        let _ = writeln!(
            x,
            "      <DCPType><HTTP><Get><OnlineResource xlink:type=\"simple\" xlink:href=\"{}/wms?\"/></Get></HTTP></DCPType>\n    </{op}>",
            e(&b)
        );
    }
    x.push_str(
        "  </Request>\n  <Exception>\n    <Format>XML</Format>\n  </Exception>\n  <Layer>\n    \
         <Title>Downlink ground station</Title>\n    <CRS>EPSG:3857</CRS>\n    <CRS>EPSG:4326</CRS>\n    \
         <CRS>CRS:84</CRS>\n    <EX_GeographicBoundingBox>\n      <westBoundLongitude>-180</westBoundLongitude>\n      \
         <eastBoundLongitude>180</eastBoundLongitude>\n      <southBoundLatitude>-90</southBoundLatitude>\n      \
         <northBoundLatitude>90</northBoundLatitude>\n    </EX_GeographicBoundingBox>\n",
    );
    for cl in &layers {
        let [mut w, s, mut ea, n] = cl.bounds;
        if w > ea {
            // Across the antimeridian: WMS boxes cannot wrap.
            (w, ea) = (-180.0, 180.0);
        }
        let (mx0, my0) = lonlat_to_mercator(w, s.max(-MAX_LAT));
        let (mx1, my1) = lonlat_to_mercator(ea, n.min(MAX_LAT));
        let title = cl
            .collection
            .title
            .clone()
            .unwrap_or_else(|| cl.collection.id.clone());
        for l in &cl.layers {
            let _ = write!(
                x,
                "    <Layer queryable=\"0\" opaque=\"0\">\n      <Name>{}</Name>\n      <Title>{}</Title>\n      \
                 <Abstract>{}</Abstract>\n      <EX_GeographicBoundingBox>\n        \
                 <westBoundLongitude>{w}</westBoundLongitude>\n        <eastBoundLongitude>{ea}</eastBoundLongitude>\n        \
                 <southBoundLatitude>{s}</southBoundLatitude>\n        <northBoundLatitude>{n}</northBoundLatitude>\n      \
                 </EX_GeographicBoundingBox>\n      \
                 <BoundingBox CRS=\"CRS:84\" minx=\"{w}\" miny=\"{s}\" maxx=\"{ea}\" maxy=\"{n}\"/>\n      \
                 <BoundingBox CRS=\"EPSG:4326\" minx=\"{s}\" miny=\"{w}\" maxx=\"{n}\" maxy=\"{ea}\"/>\n      \
                 <BoundingBox CRS=\"EPSG:3857\" minx=\"{mx0}\" miny=\"{my0}\" maxx=\"{mx1}\" maxy=\"{my1}\"/>\n",
                e(&l.name),
                e(&format!("{title}: {}", l.render.title)),
                e(&cl.collection.description),
            );
            if let Some(default) = cl.times.last() {
                let _ = writeln!(
                    x,
                    "      <Dimension name=\"time\" units=\"ISO8601\" default=\"{}\" multipleValues=\"0\" nearestValue=\"1\" current=\"0\">{}</Dimension>",
                    e(default),
                    e(&cl.times.join(","))
                );
            }
            x.push_str(
                "      <Style>\n        <Name>default</Name>\n        <Title>default</Title>\n      </Style>\n    </Layer>\n",
            );
        }
    }
    x.push_str("  </Layer>\n</Capability>\n</WMS_Capabilities>\n");
    Ok(([(header::CONTENT_TYPE, "text/xml")], x).into_response())
}

/// A `TIME` request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TimeReq {
    /// No TIME (or `current`): the dimension default, the newest datetime.
    Default,
    /// One instant: the nearest listed datetime (`nearestValue="1"`), so a temporal
    /// controller stepping by days finds the pass of that day.
    Instant(DateTime<Utc>),
    /// `start/end[/period]`, or a date (its whole day): every item within, newest on top.
    Range(DatetimeFilter),
}

impl TimeReq {
    /// The catalog filter, given the layer's datetimes (ascending, to the second).
    fn filter(self, times: &[String]) -> Option<DatetimeFilter> {
        let listed = || {
            times
                .iter()
                .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let at = |t: DateTime<Utc>| {
            instant_widened(DatetimeFilter {
                start: Some(t),
                end: Some(t),
            })
        };
        match self {
            TimeReq::Default => listed().next_back().map(at),
            TimeReq::Instant(t) => listed()
                .min_by_key(|l| (*l - t).num_milliseconds().unsigned_abs())
                .map(at),
            TimeReq::Range(f) => Some(f),
        }
    }
}

/// `TIME`: empty = the default; an instant; a date (the whole day); `start/end[/period]`,
/// whose date-only ends cover their whole days.
fn parse_time(t: &str) -> Result<TimeReq, Exception> {
    let t = t.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("current") {
        return Ok(TimeReq::Default);
    }
    let bad = |why: String| exc("InvalidDimensionValue", format!("TIME {t:?}: {why}"));
    if t.contains(',') {
        return Err(bad("one instant or one range, please".into()));
    }
    let day = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok();
    let point = |s: &str, end: bool| -> Result<Option<DateTime<Utc>>, Exception> {
        let s = s.trim();
        if s.is_empty() || s == ".." {
            return Ok(None);
        }
        if let Some(d) = day(s) {
            let start = d.and_time(chrono::NaiveTime::MIN).and_utc();
            return Ok(Some(if end {
                start + chrono::Duration::microseconds(86_400_000_000 - 1)
            } else {
                start
            }));
        }
        DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.with_timezone(&Utc)))
            .map_err(|e| bad(e.to_string()))
    };
    let mut parts = t.split('/');
    let (a, b) = (parts.next().unwrap_or(""), parts.next());
    let f = match b {
        None => {
            if day(a).is_some() {
                DatetimeFilter {
                    start: point(a, false)?,
                    end: point(a, true)?,
                }
            } else {
                let p = point(a, false)?.ok_or_else(|| bad("empty instant".into()))?;
                return Ok(TimeReq::Instant(p));
            }
        }
        Some(b) => DatetimeFilter {
            start: point(a, false)?,
            end: point(b, true)?,
        },
    };
    if let (Some(a), Some(b)) = (f.start, f.end) {
        if a > b {
            return Err(bad("start after end".into()));
        }
    }
    Ok(TimeReq::Range(f))
}

/// The requested output grid from CRS/SRS, BBOX, WIDTH, HEIGHT.
fn window(p: &Params) -> Result<MapWindow, Exception> {
    let v111 = p.get("VERSION").is_some_and(|v| v.trim() == "1.1.1");
    let crs = p
        .get("CRS")
        .or_else(|| p.get("SRS"))
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| exc("MissingParameterValue", "CRS is required"))?
        .trim()
        .to_ascii_uppercase();
    let (crs, swap) = match crs.as_str() {
        "EPSG:3857" | "EPSG:900913" => (MapCrs::WebMercator, false),
        "EPSG:4326" => (MapCrs::Wgs84, !v111),
        "CRS:84" | "OGC:CRS84" => (MapCrs::Wgs84, false),
        other => {
            return Err(exc(
                "InvalidCRS",
                format!("CRS {other:?}: offered are EPSG:3857, EPSG:4326 and CRS:84"),
            ))
        }
    };
    let bbox_s = p.need("BBOX")?;
    let v: Vec<f64> = bbox_s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| exc("InvalidParameterValue", format!("BBOX {bbox_s:?}")))?;
    let [a, b, c, d] = <[f64; 4]>::try_from(v).map_err(|_| {
        exc(
            "InvalidParameterValue",
            format!("BBOX must be 4 numbers, got {bbox_s:?}"),
        )
    })?;
    // WMS 1.3.0 EPSG:4326 is latitude first.
    let bbox = if swap { [b, a, d, c] } else { [a, b, c, d] };
    let side = |k: &str| -> Result<u32, Exception> {
        let s = p.need(k)?;
        s.trim()
            .parse::<u32>()
            .map_err(|_| exc("InvalidParameterValue", format!("{k} {s:?}")))
    };
    MapWindow::new(crs, bbox, side("WIDTH")?, side("HEIGHT")?, MAX_SIDE)
        .map_err(|e| exc("InvalidParameterValue", e.to_string()))
}

/// `0xRRGGBB` (default white).
fn bgcolor(p: &Params) -> Result<[u8; 3], Exception> {
    let Some(s) = p.get("BGCOLOR").filter(|s| !s.is_empty()) else {
        return Ok([255, 255, 255]);
    };
    let hex = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .filter(|h| h.len() == 6)
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| exc("InvalidParameterValue", format!("BGCOLOR {s:?}")))?;
    Ok([(hex >> 16) as u8, (hex >> 8) as u8, hex as u8])
}

async fn get_map(shared: &Arc<Shared>, p: &Params) -> Result<Response, Exception> {
    if let Some(v) = p.get("VERSION") {
        if !matches!(v.trim(), "1.3.0" | "1.1.1") {
            return Err(exc(
                "InvalidParameterValue",
                format!("VERSION {v:?}: this server speaks 1.3.0"),
            ));
        }
    }
    let names: Vec<&str> = p.need("LAYERS")?.split(',').map(str::trim).collect();
    if names.len() > MAX_LAYERS {
        return Err(exc(
            "InvalidParameterValue",
            format!(
                "LAYERS names {} layers; at most {MAX_LAYERS} per GetMap",
                names.len()
            ),
        ));
    }
    let styles: Vec<&str> = p.get("STYLES").unwrap_or("").split(',').collect();
    for s in &styles {
        if !(s.trim().is_empty() || s.trim().eq_ignore_ascii_case("default")) {
            return Err(exc(
                "StyleNotDefined",
                format!("style {s:?}: each layer has only `default`"),
            ));
        }
    }
    let fmt_s = p.need("FORMAT")?;
    let format = match fmt_s.split(';').next().unwrap_or("").trim() {
        "image/png" => Format::Png,
        "image/jpeg" => Format::Jpeg(85),
        _ => {
            return Err(exc(
                "InvalidFormat",
                format!("FORMAT {fmt_s:?}: offered are image/png and image/jpeg"),
            ))
        }
    };
    let transparent = p
        .get("TRANSPARENT")
        .is_some_and(|t| t.eq_ignore_ascii_case("true"))
        && format == Format::Png;
    let bg = bgcolor(p)?;
    let win = window(p)?;
    let time = parse_time(p.get("TIME").unwrap_or(""))?;

    let mut layers: Vec<(String, Layer, Option<DatetimeFilter>)> = Vec::new();
    for name in &names {
        let cid = name.split_once(':').map_or(*name, |(c, _)| c).to_owned();
        let undefined = || exc("LayerNotDefined", format!("layer {name:?}"));
        let cl = match collection_layers(shared, &cid).await {
            Ok(cl) => cl,
            Err(e) if e.0 == StatusCode::NOT_FOUND => return Err(undefined()),
            Err(e) => return Err(e.into()),
        };
        let when = time.filter(&cl.times);
        let l = cl
            .layers
            .into_iter()
            .find(|l| l.name == *name)
            .ok_or_else(undefined)?;
        layers.push((cid, l, when));
    }

    let mut image = vec![0u8; win.width as usize * win.height as usize * 4];
    for (cid, layer, when) in &layers {
        let rgba = draw_layer(shared, cid, layer, &win, *when).await?;
        over(&mut image, &rgba);
    }
    let (w, h) = (win.width, win.height);
    let bytes = blocking(move || {
        if !transparent {
            for px in image.chunks_exact_mut(4) {
                if let [r, g, b, a] = px {
                    let k = u16::from(*a);
                    let mix = |c: u8, bgc: u8| {
                        ((u16::from(c) * k + u16::from(bgc) * (255 - k) + 127) / 255) as u8
                    };
                    (*r, *g, *b, *a) = (mix(*r, bg[0]), mix(*g, bg[1]), mix(*b, bg[2]), 255);
                }
            }
        }
        encode_sized(&image, w, h, format)
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], bytes).into_response())
}

/// Draws `src` over `dst` (both RGBA of the same size; alpha is 0 or 255 in tiles).
fn over(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
        if s.get(3).is_some_and(|a| *a > 0) {
            d.copy_from_slice(s);
        }
    }
}

/// One layer's RGBA over the window: per tile, the newest item with data, older items filling
/// the pixels it leaves empty.
async fn draw_layer(
    shared: &Arc<Shared>,
    cid: &str,
    layer: &Layer,
    win: &MapWindow,
    time: Option<DatetimeFilter>,
) -> Result<Vec<u8>, Exception> {
    let q = &layer.render.query;
    let opts = q.options()?;
    let asset = q.asset();
    let z = win.zoom(layer.maxzoom, MAX_TILES);
    let tiles = win.tiles(z);
    let Some(bbox) = lonlat_box(&tiles) else {
        return Ok(win.compose(z, &[]));
    };
    let cat = catalog(shared)?;
    let params = SearchParams {
        bbox: Some(bbox),
        datetime: time,
        collections: Some(vec![cid.to_owned()]),
        limit: Some(MAX_ITEMS),
        ..SearchParams::default()
    };
    let items = blocking(move || Ok(cat.search(&params)?.items)).await?;
    // Encoded tiles per tile id, newest item first.
    let mut parts: Vec<(TileId, Vec<Vec<u8>>)> = Vec::with_capacity(tiles.len());
    let (sh, its, a2) = (shared.clone(), items.clone(), asset.clone());
    let paths = blocking(move || {
        Ok(its
            .iter()
            .map(|it| asset_source(&sh, it, &a2))
            .collect::<Vec<_>>())
    })
    .await?;
    for t in &tiles {
        let tb = t.bounds_lonlat();
        let mut encoded = Vec::new();
        for (it, path) in items.iter().zip(&paths) {
            if let Some(bb) = it.bbox {
                let crosses = bb.xmin() > bb.xmax();
                if bb.ymin() > tb.maxy
                    || bb.ymax() < tb.miny
                    || (!crosses && (bb.xmin() > tb.maxx || bb.xmax() < tb.minx))
                {
                    continue;
                }
            }
            let Some(path) = path.clone() else {
                continue;
            };
            let key = tile_key(cid, it, &asset, t, "png", &opts);
            match render_cached(shared, &key, path, *t, opts.clone(), Format::Png).await {
                Ok(Encoded::Image { bytes, .. }) => encoded.push(bytes),
                Ok(Encoded::Empty) => {}
                // An older item without the band or asset is skipped; the server's own
                // trouble (busy, failure) is the answer.
                Err(e) if e.0.is_client_error() => {}
                Err(e) => return Err(e.into()),
            }
        }
        parts.push((*t, encoded));
    }
    let win = *win;
    Ok(blocking(move || {
        let mut rendered = Vec::with_capacity(parts.len());
        for (t, encoded) in parts {
            let mut px: Option<Vec<u8>> = None;
            for bytes in encoded {
                let Ok(img) = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
                else {
                    continue;
                };
                let src = img.into_rgba8().into_raw();
                match &mut px {
                    None => px = Some(src),
                    Some(dst) => {
                        let mut under = src;
                        over(&mut under, dst);
                        *dst = under;
                    }
                }
                if px
                    .as_ref()
                    .is_some_and(|d| d.chunks_exact(4).all(|p| p.get(3) == Some(&255)))
                {
                    break;
                }
            }
            if let Some(px) = px {
                rendered.push((t, px));
            }
        }
        Ok(win.compose(z, &rendered))
    })
    .await?)
}

/// The lon/lat box of a set of tiles.
fn lonlat_box(tiles: &[TileId]) -> Option<[f64; 4]> {
    let mut it = tiles.iter().map(TileId::bounds_lonlat);
    let first = it.next()?;
    let b = it.fold([first.minx, first.miny, first.maxx, first.maxy], |a, t| {
        [
            a[0].min(t.minx),
            a[1].min(t.miny),
            a[2].max(t.maxx),
            a[3].max(t.maxy),
        ]
    });
    Some([
        b[0].max(-180.0),
        b[1].max(-90.0),
        b[2].min(180.0),
        b[3].min(90.0),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(Some(q)).unwrap()
    }

    #[test]
    fn epsg_4326_is_latitude_first_in_1_3_0_only() {
        let w = window(&params("crs=EPSG:4326&bbox=47,8,48,9&width=10&height=20")).unwrap();
        assert_eq!((w.crs, w.bbox), (MapCrs::Wgs84, [8.0, 47.0, 9.0, 48.0]));
        let w = window(&params("CRS=CRS:84&BBOX=8,47,9,48&WIDTH=10&HEIGHT=20")).unwrap();
        assert_eq!(w.bbox, [8.0, 47.0, 9.0, 48.0]);
        let w = window(&params(
            "VERSION=1.1.1&SRS=EPSG:4326&BBOX=8,47,9,48&WIDTH=10&HEIGHT=20",
        ))
        .unwrap();
        assert_eq!(w.bbox, [8.0, 47.0, 9.0, 48.0]);
        let w = window(&params("CRS=EPSG:3857&BBOX=0,0,10,10&WIDTH=1&HEIGHT=1")).unwrap();
        assert_eq!(w.crs, MapCrs::WebMercator);
        for (q, code) in [
            ("CRS=EPSG:32632&BBOX=0,0,1,1&WIDTH=1&HEIGHT=1", "InvalidCRS"),
            (
                "CRS=EPSG:3857&BBOX=0,0,1&WIDTH=1&HEIGHT=1",
                "InvalidParameterValue",
            ),
            (
                "CRS=EPSG:3857&BBOX=1,0,0,1&WIDTH=1&HEIGHT=1",
                "InvalidParameterValue",
            ),
            (
                "CRS=EPSG:3857&BBOX=0,0,1,1&WIDTH=5000&HEIGHT=1",
                "InvalidParameterValue",
            ),
            (
                "CRS=EPSG:3857&BBOX=0,0,1,1&HEIGHT=1",
                "MissingParameterValue",
            ),
        ] {
            assert_eq!(window(&params(q)).unwrap_err().code, code, "{q}");
        }
    }

    #[test]
    fn time_forms() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let times = [
            "2020-08-07T10:25:59Z".to_owned(),
            "2021-08-12T10:25:59Z".to_owned(),
        ];
        let f = |s: &str| parse_time(s).unwrap().filter(&times).unwrap();
        assert_eq!(parse_time("").unwrap(), TimeReq::Default);
        assert_eq!(parse_time("current").unwrap(), TimeReq::Default);
        // The default and instants snap to a listed datetime and cover its second.
        for (req, want) in [
            ("", "2021-08-12T10:25:59Z"),
            ("2021-08-12T10:25:59Z", "2021-08-12T10:25:59Z"),
            ("2020-08-07T00:00:00Z", "2020-08-07T10:25:59Z"),
            ("2021-06-01T00:00:00Z", "2021-08-12T10:25:59Z"),
            ("2021-01-01T00:00:00Z", "2020-08-07T10:25:59Z"),
        ] {
            let got = f(req);
            assert_eq!(got.start, Some(t(want)), "{req}");
            assert_eq!(
                got.end,
                Some(t(want) + chrono::Duration::microseconds(999_999))
            );
        }
        assert_eq!(
            parse_time("2020-01-01T00:00:00Z").unwrap().filter(&[]),
            None
        );
        let f = f("2021-08-12");
        assert_eq!(f.start, Some(t("2021-08-12T00:00:00Z")));
        assert_eq!(f.end, Some(t("2021-08-12T23:59:59.999999Z")));
        let f = parse_time("2020-01-01T00:00:00Z/2021-01-01T00:00:00Z/P1D")
            .unwrap()
            .filter(&[])
            .unwrap();
        assert_eq!(f.end, Some(t("2021-01-01T00:00:00Z")));
        for bad in [
            "yesterday",
            "2021-08-12,2020-08-07",
            "2021-01-01/2020-01-01",
        ] {
            assert_eq!(
                parse_time(bad).unwrap_err().code,
                "InvalidDimensionValue",
                "{bad}"
            );
        }
    }
}
