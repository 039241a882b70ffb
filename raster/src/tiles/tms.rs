//! WebMercatorQuad tile-matrix math, TileJSON 3.0 and WMTS 1.0.0 capabilities (pure, no GDAL).
//!
//! Sources:
//! - OGC Two Dimensional Tile Matrix Set and Tile Set Metadata 2.0 (OGC 17-083r4), Annex D.1
//!   "WebMercatorQuad": EPSG:3857, top-left corner (-20037508.3427892, 20037508.3427892),
//!   256×256 tiles, 2^z × 2^z matrix, scale denominator of zoom 0 = 559082264.0287178
//!   (cell size 156543.03392804097 m / 0.28 mm standardized rendering pixel).
//! - TileJSON 3.0.0 (github.com/mapbox/tilejson-spec/tree/master/3.0.0): `tilejson`, `tiles`
//!   required; `bounds` `[w,s,e,n]`, `center` `[lon,lat,zoom]`, `minzoom`, `maxzoom` optional.
//! - OGC WMTS 1.0.0 Implementation Standard (OGC 07-057r7) §7.1 (ServiceMetadata / Contents /
//!   Layer / Dimension / TileMatrixSet / ResourceURL) and the schema
//!   `wmtsGetCapabilities_response.xsd`: element order in Layer is ows:Title, ows:Abstract,
//!   ows:WGS84BoundingBox, ows:Identifier, Style+, Format+, Dimension*, TileMatrixSetLink+,
//!   ResourceURL*; in Dimension ows:Identifier, ows:UOM, Default, Current, Value+.
//!   Well-known scale set `urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible` (Annex E.4).

use crate::Error;
use std::fmt::Write as _;

/// Half the EPSG:3857 world width in metres (π × 6378137).
pub const ORIGIN_SHIFT: f64 = 20_037_508.342_789_244;
/// Tile width/height in pixels.
pub const TILE_SIZE: u32 = 256;
/// Highest zoom accepted.
pub const MAX_ZOOM: u8 = 24;
/// Latitude limit of WebMercatorQuad (degrees).
pub const MAX_LAT: f64 = 85.051_128_779_806_59;
/// Standardized rendering pixel size (m) used by WMTS scale denominators.
pub const WMTS_PIXEL_SIZE: f64 = 0.000_28;

/// A validated WebMercatorQuad tile address (XYZ, row 0 at the top).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TileId {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl TileId {
    /// Validates z in 0..=24 and x, y < 2^z. Accepts wide integers so that HTTP path
    /// parameters can be passed without a prior lossy cast.
    pub fn new(z: u64, x: u64, y: u64) -> Result<Self, Error> {
        let zz = u8::try_from(z)
            .ok()
            .filter(|v| *v <= MAX_ZOOM)
            .ok_or(Error::Zoom {
                z: u32::try_from(z).unwrap_or(u32::MAX),
                max: MAX_ZOOM,
            })?;
        let n = 1u64 << zz;
        if x >= n {
            return Err(Error::Column { z: zz, x, n });
        }
        if y >= n {
            return Err(Error::Row { z: zz, y, n });
        }
        // n <= 2^24 so both fit in u32.
        Ok(Self {
            z: zz,
            x: u32::try_from(x).map_err(|_| Error::Column { z: zz, x, n })?,
            y: u32::try_from(y).map_err(|_| Error::Row { z: zz, y, n })?,
        })
    }

    /// Number of tiles per axis at this zoom.
    pub fn matrix_size(&self) -> u32 {
        1u32 << self.z
    }

    /// Bounds in EPSG:3857 metres.
    pub fn bounds_3857(&self) -> Bounds {
        let size = 2.0 * ORIGIN_SHIFT / f64::from(self.matrix_size());
        let minx = -ORIGIN_SHIFT + f64::from(self.x) * size;
        let maxy = ORIGIN_SHIFT - f64::from(self.y) * size;
        Bounds {
            minx,
            miny: maxy - size,
            maxx: minx + size,
            maxy,
        }
    }

    /// Bounds in degrees (west, south, east, north).
    pub fn bounds_lonlat(&self) -> Bounds {
        let b = self.bounds_3857();
        let (w, s) = mercator_to_lonlat(b.minx, b.miny);
        let (e, n) = mercator_to_lonlat(b.maxx, b.maxy);
        Bounds {
            minx: w,
            miny: s,
            maxx: e,
            maxy: n,
        }
    }

    /// GDAL-style geotransform of the 256×256 tile in EPSG:3857.
    pub fn geo_transform(&self) -> [f64; 6] {
        let b = self.bounds_3857();
        let res = resolution(self.z);
        [b.minx, res, 0.0, b.maxy, 0.0, -res]
    }
}

/// An axis-aligned box; in lon/lat it is (west, south, east, north).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub minx: f64,
    pub miny: f64,
    pub maxx: f64,
    pub maxy: f64,
}

/// Pixel size (m) of WebMercatorQuad zoom `z`.
pub fn resolution(z: u8) -> f64 {
    2.0 * ORIGIN_SHIFT / (f64::from(TILE_SIZE) * 2f64.powi(i32::from(z)))
}

/// WMTS scale denominator of zoom `z`.
pub fn scale_denominator(z: u8) -> f64 {
    resolution(z) / WMTS_PIXEL_SIZE
}

/// Spherical mercator forward projection (latitude clamped to ±MAX_LAT).
pub fn lonlat_to_mercator(lon: f64, lat: f64) -> (f64, f64) {
    let lat = lat.clamp(-MAX_LAT, MAX_LAT);
    let x = lon.to_radians() * 6_378_137.0;
    let y = (std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0)
        .tan()
        .ln()
        * 6_378_137.0;
    (x, y)
}

/// Spherical mercator inverse projection.
pub fn mercator_to_lonlat(x: f64, y: f64) -> (f64, f64) {
    let lon = (x / 6_378_137.0).to_degrees();
    let lat = (2.0 * (y / 6_378_137.0).exp().atan() - std::f64::consts::FRAC_PI_2).to_degrees();
    (lon, lat)
}

/// Inclusive range of tiles at one zoom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRange {
    pub z: u8,
    pub min_x: u32,
    pub max_x: u32,
    pub min_y: u32,
    pub max_y: u32,
}

impl TileRange {
    pub fn count(&self) -> u64 {
        u64::from(self.max_x - self.min_x + 1) * u64::from(self.max_y - self.min_y + 1)
    }
    pub fn contains(&self, t: &TileId) -> bool {
        t.z == self.z
            && (self.min_x..=self.max_x).contains(&t.x)
            && (self.min_y..=self.max_y).contains(&t.y)
    }
}

fn lon_to_col(lon: f64, n: u32) -> u32 {
    let f = (lon + 180.0) / 360.0 * f64::from(n);
    // Clamp then cast: the value is finite and within [0, n-1].
    f.floor().clamp(0.0, f64::from(n - 1)) as u32
}

fn lat_to_row(lat: f64, n: u32) -> u32 {
    let (_, y) = lonlat_to_mercator(0.0, lat);
    let f = (ORIGIN_SHIFT - y) / (2.0 * ORIGIN_SHIFT) * f64::from(n);
    f.floor().clamp(0.0, f64::from(n - 1)) as u32
}

/// Tiles at zoom `z` intersecting a lon/lat box (west, south, east, north). A box with
/// west > east crosses the antimeridian and yields two ranges. Latitudes are clamped to the
/// WebMercatorQuad limit. Edges exactly on a tile boundary do not pull in the next tile.
pub fn tiles_for_bbox(bbox: [f64; 4], z: u8) -> Result<Vec<TileRange>, Error> {
    let [w, s, e, n] = bbox;
    if !bbox.iter().all(|v| v.is_finite()) {
        return Err(Error::BBox(bbox, "non-finite value"));
    }
    if z > MAX_ZOOM {
        return Err(Error::Zoom {
            z: u32::from(z),
            max: MAX_ZOOM,
        });
    }
    if s > n {
        return Err(Error::BBox(bbox, "south > north"));
    }
    if !(-180.0..=180.0).contains(&w) || !(-180.0..=180.0).contains(&e) {
        return Err(Error::BBox(bbox, "longitude outside -180..180"));
    }
    let cnt = 1u32 << z;
    // Nudge max edges inward so that an edge on a tile boundary stays in the lower tile.
    let eps = 1e-9;
    let rows = |s: f64, n: f64| (lat_to_row(n, cnt), lat_to_row((s + eps).min(n), cnt));
    let (min_y, max_y) = rows(s, n);
    let mk = |a: f64, b: f64| TileRange {
        z,
        min_x: lon_to_col(a, cnt),
        max_x: lon_to_col((b - eps).max(a), cnt),
        min_y,
        max_y,
    };
    if w <= e {
        Ok(vec![mk(w, e)])
    } else {
        Ok(vec![mk(w, 180.0), mk(-180.0, e)])
    }
}

/// Zoom whose resolution is nearest (in log scale) to `res_m` metres/pixel, clamped to 0..=24.
/// Mirrors morecantile's `zoom_for_res(..., zoom_level_strategy="auto")`.
pub fn zoom_for_resolution(res_m: f64) -> Result<u8, Error> {
    if !(res_m.is_finite() && res_m > 0.0) {
        return Err(Error::Resolution(res_m));
    }
    let zf = (resolution(0) / res_m).log2();
    Ok(zf.round().clamp(0.0, f64::from(MAX_ZOOM)) as u8)
}

/// minzoom/maxzoom for a raster of `width`×`height` pixels whose pixel size in EPSG:3857 is
/// about `res_m`: maxzoom is the zoom nearest the native resolution; minzoom is the zoom at
/// which the whole raster is about one tile wide (never above maxzoom).
pub fn zoom_range(res_m: f64, width: usize, height: usize) -> Result<(u8, u8), Error> {
    let maxzoom = zoom_for_resolution(res_m)?;
    let extent_px = width.max(height).max(1) as f64;
    let minres = res_m * extent_px / f64::from(TILE_SIZE);
    let zf = (resolution(0) / minres).log2();
    let minzoom = (zf.floor().clamp(0.0, f64::from(MAX_ZOOM)) as u8).min(maxzoom);
    Ok((minzoom, maxzoom))
}

/// Parameters of a TileJSON 3.0.0 document.
#[derive(Debug, Clone)]
pub struct TileJsonParams {
    /// Tile URL template with `{z}`, `{x}`, `{y}`.
    pub tiles_url: String,
    /// (west, south, east, north) degrees.
    pub bounds: [f64; 4],
    pub minzoom: u8,
    pub maxzoom: u8,
    pub name: Option<String>,
    pub attribution: Option<String>,
}

/// Builds a TileJSON 3.0.0 document; `center` is the bounds centre at `minzoom` (as TiTiler).
pub fn tilejson(p: &TileJsonParams) -> Result<serde_json::Value, Error> {
    for key in ["{z}", "{x}", "{y}"] {
        if !p.tiles_url.contains(key) {
            return Err(Error::TileParam(format!("tiles_url lacks {key}")));
        }
    }
    if p.minzoom > p.maxzoom || p.maxzoom > MAX_ZOOM {
        return Err(Error::TileParam(format!(
            "zoom range {}..={}",
            p.minzoom, p.maxzoom
        )));
    }
    let [w, s, e, n] = p.bounds;
    if !p.bounds.iter().all(|v| v.is_finite()) || s > n {
        return Err(Error::BBox(p.bounds, "bad TileJSON bounds"));
    }
    let mut cx = (w + e) / 2.0;
    if w > e {
        // Antimeridian-crossing box.
        cx = (w + e + 360.0) / 2.0;
        if cx > 180.0 {
            cx -= 360.0;
        }
    }
    let mut doc = serde_json::json!({
        "tilejson": "3.0.0",
        "tiles": [p.tiles_url],
        "scheme": "xyz",
        "bounds": [w, s, e, n],
        "center": [cx, (s + n) / 2.0, p.minzoom],
        "minzoom": p.minzoom,
        "maxzoom": p.maxzoom,
    });
    if let Some(obj) = doc.as_object_mut() {
        if let Some(name) = &p.name {
            obj.insert("name".into(), name.clone().into());
        }
        if let Some(a) = &p.attribution {
            obj.insert("attribution".into(), a.clone().into());
        }
    }
    Ok(doc)
}

/// Escapes text for XML element content and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab/newline are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// One WMTS layer.
#[derive(Debug, Clone)]
pub struct WmtsLayer {
    pub identifier: String,
    pub title: String,
    pub abstract_text: Option<String>,
    /// (west, south, east, north) degrees.
    pub bounds: [f64; 4],
    pub minzoom: u8,
    pub maxzoom: u8,
    /// MIME type, e.g. `image/png`.
    pub format: String,
    /// RESTful template using `{TileMatrix}`, `{TileCol}`, `{TileRow}` and, when `times` is
    /// not empty, `{Time}`.
    pub url_template: String,
    /// ISO 8601 datetimes; the latest (lexicographically greatest, valid for normalised
    /// `YYYY-MM-DDTHH:MM:SSZ`) becomes the Default.
    pub times: Vec<String>,
}

/// Service-level WMTS parameters.
#[derive(Debug, Clone)]
pub struct WmtsService {
    pub title: String,
    /// URL of this capabilities document.
    pub capabilities_url: String,
    /// Base URL advertised for GetTile (RESTful).
    pub tile_base_url: String,
}

const TMS_ID: &str = "WebMercatorQuad";

/// Builds a WMTS 1.0.0 GetCapabilities (RESTful) document with one WebMercatorQuad
/// TileMatrixSet covering zoom 0..=max(layer.maxzoom), per-layer TileMatrixSetLimits and a
/// `Time` dimension for layers with times.
pub fn wmts_capabilities(svc: &WmtsService, layers: &[WmtsLayer]) -> Result<String, Error> {
    let e = xml_escape;
    let mut top_zoom = 0u8;
    for l in layers {
        if l.minzoom > l.maxzoom || l.maxzoom > MAX_ZOOM {
            return Err(Error::TileParam(format!(
                "layer {}: zoom range {}..={}",
                l.identifier, l.minzoom, l.maxzoom
            )));
        }
        if l.identifier.is_empty() {
            return Err(Error::TileParam("empty layer identifier".into()));
        }
        for key in ["{TileMatrix}", "{TileCol}", "{TileRow}"] {
            if !l.url_template.contains(key) {
                return Err(Error::TileParam(format!(
                    "layer {}: url_template lacks {key}",
                    l.identifier
                )));
            }
        }
        if !l.times.is_empty() && !l.url_template.contains("{Time}") {
            return Err(Error::TileParam(format!(
                "layer {} has times but url_template lacks {{Time}}",
                l.identifier
            )));
        }
        top_zoom = top_zoom.max(l.maxzoom);
    }
    let mut x = String::with_capacity(4096);
    // `write!` into a String cannot fail; results are ignored through `let _`.
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(concat!(
        "<Capabilities xmlns=\"http://www.opengis.net/wmts/1.0\" ",
        "xmlns:ows=\"http://www.opengis.net/ows/1.1\" ",
        "xmlns:xlink=\"http://www.w3.org/1999/xlink\" ",
        "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" ",
        "xmlns:gml=\"http://www.opengis.net/gml\" ",
        "xsi:schemaLocation=\"http://www.opengis.net/wmts/1.0 ",
        "http://schemas.opengis.net/wmts/1.0/wmtsGetCapabilities_response.xsd\" ",
        "version=\"1.0.0\">\n"
    ));
    let _ = write!(
        x,
        "  <ows:ServiceIdentification>\n    <ows:Title>{}</ows:Title>\n    \
         <ows:ServiceType>OGC WMTS</ows:ServiceType>\n    \
         <ows:ServiceTypeVersion>1.0.0</ows:ServiceTypeVersion>\n  </ows:ServiceIdentification>\n",
        e(&svc.title)
    );
    x.push_str("  <ows:OperationsMetadata>\n");
    // GetTile answers both RESTful (the ResourceURL templates) and KVP at the tile base URL
    // (clients such as OWSLib leave a dimension out only in KVP).
    for (op, href, encodings) in [
        ("GetCapabilities", &svc.capabilities_url, "RESTful"),
        ("GetTile", &svc.tile_base_url, "RESTful KVP"),
    ] {
        let _ = write!(
            x,
            "    <ows:Operation name=\"{op}\">\n      <ows:DCP>\n        <ows:HTTP>\n          \
             <ows:Get xlink:href=\"{}\">\n            <ows:Constraint name=\"GetEncoding\">\n              \
             <ows:AllowedValues>\n",
            e(href)
        );
        for enc in encodings.split(' ') {
            let _ = writeln!(x, "                <ows:Value>{enc}</ows:Value>");
        }
        x.push_str(
            "              </ows:AllowedValues>\n            </ows:Constraint>\n          </ows:Get>\n        \
             </ows:HTTP>\n      </ows:DCP>\n    </ows:Operation>\n",
        );
    }
    x.push_str("  </ows:OperationsMetadata>\n  <Contents>\n");
    for l in layers {
        let [w, s, ea, n] = l.bounds;
        let _ = write!(
            x,
            "    <Layer>\n      <ows:Title>{}</ows:Title>\n",
            e(&l.title)
        );
        if let Some(a) = &l.abstract_text {
            let _ = writeln!(x, "      <ows:Abstract>{}</ows:Abstract>", e(a));
        }
        let _ = write!(
            x,
            "      <ows:WGS84BoundingBox crs=\"urn:ogc:def:crs:OGC:2:84\">\n        \
             <ows:LowerCorner>{w} {s}</ows:LowerCorner>\n        \
             <ows:UpperCorner>{ea} {n}</ows:UpperCorner>\n      </ows:WGS84BoundingBox>\n      \
             <ows:Identifier>{}</ows:Identifier>\n      <Style isDefault=\"true\">\n        \
             <ows:Identifier>default</ows:Identifier>\n      </Style>\n      <Format>{}</Format>\n",
            e(&l.identifier),
            e(&l.format)
        );
        if let Some(default) = l.times.iter().max() {
            let _ = write!(
                x,
                "      <Dimension>\n        <ows:Identifier>Time</ows:Identifier>\n        \
                 <ows:UOM>ISO8601</ows:UOM>\n        <Default>{}</Default>\n        \
                 <Current>false</Current>\n",
                e(default)
            );
            for t in &l.times {
                let _ = writeln!(x, "        <Value>{}</Value>", e(t));
            }
            x.push_str("      </Dimension>\n");
        }
        let _ = write!(
            x,
            "      <TileMatrixSetLink>\n        <TileMatrixSet>{TMS_ID}</TileMatrixSet>\n        \
             <TileMatrixSetLimits>\n"
        );
        for z in l.minzoom..=l.maxzoom {
            let r = tiles_for_bbox(l.bounds, z)?;
            // For an antimeridian-crossing layer the column limits span the whole matrix.
            let (min_x, max_x) = if r.len() == 1 {
                r.first().map(|t| (t.min_x, t.max_x)).unwrap_or((0, 0))
            } else {
                (0, (1u32 << z) - 1)
            };
            let (min_y, max_y) = r.first().map(|t| (t.min_y, t.max_y)).unwrap_or((0, 0));
            let _ = write!(
                x,
                "          <TileMatrixLimits>\n            <TileMatrix>{z}</TileMatrix>\n            \
                 <MinTileRow>{min_y}</MinTileRow>\n            <MaxTileRow>{max_y}</MaxTileRow>\n            \
                 <MinTileCol>{min_x}</MinTileCol>\n            <MaxTileCol>{max_x}</MaxTileCol>\n          \
                 </TileMatrixLimits>\n"
            );
        }
        x.push_str("        </TileMatrixSetLimits>\n      </TileMatrixSetLink>\n");
        let _ = writeln!(
            x,
            "      <ResourceURL format=\"{}\" resourceType=\"tile\" template=\"{}\"/>\n    </Layer>",
            e(&l.format),
            e(&l.url_template)
        );
    }
    let _ = write!(
        x,
        "    <TileMatrixSet>\n      <ows:Title>Google Maps Compatible for the World</ows:Title>\n      \
         <ows:Identifier>{TMS_ID}</ows:Identifier>\n      \
         <ows:SupportedCRS>urn:ogc:def:crs:EPSG::3857</ows:SupportedCRS>\n      \
         <WellKnownScaleSet>urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible</WellKnownScaleSet>\n"
    );
    for z in 0..=top_zoom {
        let n = 1u32 << z;
        let _ = write!(
            x,
            "      <TileMatrix>\n        <ows:Identifier>{z}</ows:Identifier>\n        \
             <ScaleDenominator>{}</ScaleDenominator>\n        \
             <TopLeftCorner>{} {}</TopLeftCorner>\n        <TileWidth>{TILE_SIZE}</TileWidth>\n        \
             <TileHeight>{TILE_SIZE}</TileHeight>\n        <MatrixWidth>{n}</MatrixWidth>\n        \
             <MatrixHeight>{n}</MatrixHeight>\n      </TileMatrix>\n",
            scale_denominator(z),
            -ORIGIN_SHIFT,
            ORIGIN_SHIFT
        );
    }
    let _ = write!(
        x,
        "    </TileMatrixSet>\n  </Contents>\n  <ServiceMetadataURL xlink:href=\"{}\"/>\n</Capabilities>\n",
        e(&svc.capabilities_url)
    );
    Ok(x)
}
