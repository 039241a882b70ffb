//! STAC Items and Collections for Downlink pass products (`products.json`).
//!
//! Granularity: one Item per pass per collection; collection = spacecraft + instrument
//! (e.g. `meteor-m2-msu-mr`); assets `ch<N>` (data), `composite` (visual), `ndvi` (data),
//! `thumbnail`, `products` (metadata). Raw PNG / GCP TIFF products are not published.
//! Geometry is the listing's bbox polygon (not the swath outline).
//!
//! MSU-MR band table: WMO OSCAR, "MSU-MR" instrument page
//! (<https://space.oscar.wmo.int/instruments/view/msu_mr>): ch1 0.50–0.70 µm,
//! ch2 0.70–1.10, ch3 1.60–1.80, ch4 3.50–4.10, ch5 10.5–11.5, ch6 11.5–12.5.
//! Common names from the eo extension v2.0.0 table.

use crate::Error;
use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use stac::{Asset, Collection, Item, Link};

use super::geom::rings_to_geojson;
use super::import::{asset_proj_fields, band_metadata, gsd};
use super::layout::validate_id;
use super::raster::{COG_MEDIA_TYPE, PROJ_EXT};

/// eo extension v2.0.0.
pub const EO_EXT: &str = "https://stac-extensions.github.io/eo/v2.0.0/schema.json";
/// view extension v1.0.0 (sun angles of the scene).
pub const VIEW_EXT: &str = "https://stac-extensions.github.io/view/v1.0.0/schema.json";
/// file extension v2.1.0 (`file:size`).
pub const FILE_EXT: &str = "https://stac-extensions.github.io/file/v2.1.0/schema.json";

/// One product of a pass listing.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Product {
    /// `analytic`, `composite`, `ndvi`, `thumbnail`, `raw_png`, ...
    pub kind: String,
    /// CCSDS APID.
    pub apid: Option<u16>,
    /// Instrument channel label.
    pub channel: Option<String>,
    /// File path as written.
    pub path: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The parts of `products.json` the catalog uses.
#[derive(Debug, Clone, Deserialize)]
pub struct PassListing {
    /// Pass id (item id).
    pub pass_id: String,
    /// Spacecraft name, e.g. `METEOR-M 2`.
    pub spacecraft: String,
    /// NORAD catalog number.
    pub norad_id: u32,
    /// Instrument, e.g. `msu-mr`.
    pub instrument: String,
    /// Acquisition start.
    pub start: DateTime<Utc>,
    /// Acquisition end.
    pub end: DateTime<Utc>,
    /// `[w, s, e, n]`.
    pub bbox: [f64; 4],
    /// Swath outline (lon, lat; may wrap at ±180°); the item geometry when present, else the
    /// bbox rectangle.
    #[serde(default)]
    pub footprint: Vec<[f64; 2]>,
    /// The Sun at mid-pass over the middle of the swath.
    #[serde(default)]
    pub sun: Option<SunAngles>,
    /// Geolocation QA records, stored as given.
    #[serde(default)]
    pub geolocation_qa: Value,
    /// Link quality, stored as given.
    #[serde(default)]
    pub link_quality: Value,
    /// Products.
    pub products: Vec<Product>,
}

/// Where the Sun stands over a scene (STAC view extension), degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SunAngles {
    /// Above the horizon (negative below it), -90 ..= 90.
    pub elevation: f64,
    /// Clockwise from true north, 0 ..< 360.
    pub azimuth: f64,
}

impl PassListing {
    /// Read `products.json`.
    pub fn from_json(s: &str) -> Result<Self, Error> {
        Ok(serde_json::from_str(s)?)
    }
}

/// `METEOR-M 2` + `msu-mr` → `meteor-m2-msu-mr`: lowercase, spaces dropped, other
/// characters outside `[a-z0-9]` become `-`.
pub fn collection_id(spacecraft: &str, instrument: &str) -> String {
    let slug = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("{}-{}", slug(spacecraft), slug(instrument))
}

/// eo band fields for an MSU-MR channel (1..=6).
pub fn msu_mr_band(channel: &str) -> Option<Map<String, Value>> {
    let (lo, hi, common): (f64, f64, Option<&str>) = match channel {
        "1" => (0.50, 0.70, Some("pan")),
        "2" => (0.70, 1.10, Some("nir")),
        "3" => (1.60, 1.80, Some("swir16")),
        "4" => (3.50, 4.10, None),
        "5" => (10.5, 11.5, Some("lwir11")),
        "6" => (11.5, 12.5, Some("lwir12")),
        _ => return None,
    };
    let mut m = Map::new();
    m.insert("name".into(), json!(format!("ch{channel}")));
    if let Some(c) = common {
        m.insert("eo:common_name".into(), json!(c));
    }
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    m.insert("eo:center_wavelength".into(), json!(round((lo + hi) / 2.0)));
    m.insert("eo:full_width_half_max".into(), json!(round(hi - lo)));
    Some(m)
}

/// Asset key of a product, `None` for products that are not published.
pub fn asset_key(p: &Product) -> Option<String> {
    match p.kind.as_str() {
        "analytic" => p.channel.as_ref().map(|c| format!("ch{c}")),
        "composite" | "ndvi" | "thumbnail" => Some(p.kind.clone()),
        _ => None,
    }
}

/// Build the pass Item. `asset_hrefs` maps asset keys (see [`asset_key`], plus
/// `products` for the listing itself) to published hrefs; products without an entry keep
/// their listing path. A `products` asset is only added when `asset_hrefs` has one. COG
/// products are opened (when readable) to fill `proj:shape`/`proj:transform`.
pub fn item_for_product(
    listing: &PassListing,
    asset_hrefs: &BTreeMap<String, String>,
) -> Result<Item, Error> {
    validate_id("item", &listing.pass_id)?;
    let cid = collection_id(&listing.spacecraft, &listing.instrument);
    validate_id("collection", &cid)?;
    // Products of a pass across ±180° are gridded with longitudes past 180 (or below -180);
    // STAC wants [-180, 180] with west > east for a crossing bbox.
    let [mut w, s, mut e, n] = listing.bbox;
    if e > 180.0 && e - w < 360.0 {
        e -= 360.0;
    }
    if w < -180.0 && e - w < 360.0 {
        w += 360.0;
    }
    if !(s <= n && (-90.0..=90.0).contains(&s) && (-90.0..=90.0).contains(&n)) {
        return Err(Error::Listing(format!("bad bbox {:?}", listing.bbox)));
    }
    let mut item = Item::new(&listing.pass_id);
    item.collection = Some(cid.clone());
    item.bbox = Some(stac::Bbox::new(w, s, e, n));
    let rings: Vec<Vec<[f64; 2]>> = if listing.footprint.len() >= 4 {
        super::geom::split_antimeridian(&listing.footprint)
    } else if w > e {
        vec![
            vec![[w, s], [180.0, s], [180.0, n], [w, n], [w, s]],
            vec![[-180.0, s], [e, s], [e, n], [-180.0, n], [-180.0, s]],
        ]
    } else {
        vec![vec![[w, s], [e, s], [e, n], [w, n], [w, s]]]
    };
    item.geometry = Some(serde_json::from_value(rings_to_geojson(&rings))?);
    let p = &mut item.properties;
    p.datetime = Some(listing.start);
    p.start_datetime = Some(listing.start);
    p.end_datetime = Some(listing.end);
    let f = &mut p.additional_fields;
    f.insert("platform".into(), json!(listing.spacecraft.to_lowercase()));
    f.insert("instruments".into(), json!([listing.instrument]));
    f.insert("proj:code".into(), json!("EPSG:4326"));
    f.insert("downlink:pass_id".into(), json!(listing.pass_id));
    f.insert("downlink:norad_id".into(), json!(listing.norad_id));
    f.insert(
        "downlink:geolocation_qa".into(),
        listing.geolocation_qa.clone(),
    );
    f.insert("downlink:link_quality".into(), listing.link_quality.clone());
    // Out-of-range angles (a damaged products.json) are left out rather than published.
    let sun = listing
        .sun
        .filter(|s| (-90.0..=90.0).contains(&s.elevation) && (0.0..360.0).contains(&s.azimuth));
    if let Some(s) = sun {
        f.insert("view:sun_elevation".into(), json!(s.elevation));
        f.insert("view:sun_azimuth".into(), json!(s.azimuth));
    }
    item.extensions = vec![
        EO_EXT.to_string(),
        PROJ_EXT.to_string(),
        FILE_EXT.to_string(),
    ];
    if sun.is_some() {
        item.extensions.push(VIEW_EXT.to_string());
    }

    for prod in &listing.products {
        let Some(key) = asset_key(prod) else {
            continue;
        };
        let href = asset_hrefs
            .get(&key)
            .cloned()
            .unwrap_or_else(|| prod.path.clone());
        let role = match prod.kind.as_str() {
            "composite" => "visual",
            "thumbnail" => "thumbnail",
            _ => "data",
        };
        let mut a = Asset::new(href).role(role);
        a.r#type = Some(prod.media_type.clone());
        a.title = Some(match &prod.channel {
            Some(c) => format!("{} channel {c}", listing.instrument),
            None => prod.kind.clone(),
        });
        a.additional_fields
            .insert("file:size".into(), json!(prod.bytes));
        if prod.kind == "analytic" {
            if let Some(b) = prod.channel.as_deref().and_then(msu_mr_band) {
                a.bands = vec![serde_json::from_value::<stac::Band>(Value::Object(b))?];
            }
        }
        if prod.kind == "ndvi" {
            a.bands = vec![serde_json::from_value::<stac::Band>(
                json!({"name": "ndvi", "description": "(ch2 - ch1) / (ch2 + ch1)"}),
            )?];
        }
        if prod.media_type == COG_MEDIA_TYPE {
            add_raster_metadata(&mut a, Path::new(&prod.path));
        }
        item.assets.insert(key, a);
    }
    if let Some(h) = asset_hrefs.get("products") {
        let mut a = Asset::new(h).role("metadata");
        a.r#type = Some("application/json".into());
        a.title = Some("Downlink products.json".into());
        item.assets.insert("products".into(), a);
    }
    let mut via = Link::new(format!("/api/v1/passes/{}", listing.pass_id), "via");
    via.r#type = Some("application/json".into());
    via.title = Some("Downlink pass record".into());
    item.links.push(via);
    Ok(item)
}

/// Fills an asset from its COG (when readable): `proj:code`, `proj:shape`,
/// `proj:transform`, `proj:bbox`, `gsd`, and per band `data_type`, `nodata` and approximate
/// `statistics`, merged into the bands already named (extra bands are added as `b<N>`).
fn add_raster_metadata(a: &mut Asset, path: &Path) {
    // Statistics must not leave .aux.xml files next to the products.
    if gdal::config::set_thread_local_config_option("GDAL_PAM_ENABLED", "NO").is_err() {
        return;
    }
    let _guard = super::raster::ConfigGuard("GDAL_PAM_ENABLED");
    let Ok(ds) = gdal::Dataset::open(path) else {
        return;
    };
    let Ok(info) = super::raster::raster_info(&ds, path) else {
        return;
    };
    a.additional_fields.extend(asset_proj_fields(&info));
    if let Some(g) = gsd(&info) {
        a.additional_fields.insert("gsd".into(), json!(g));
    }
    let mut bands: Vec<Value> = a
        .bands
        .iter()
        .filter_map(|b| serde_json::to_value(b).ok())
        .collect();
    for i in 0..ds.raster_count() {
        let Ok(meta) = band_metadata(&ds, i + 1) else {
            continue;
        };
        if bands.len() <= i {
            bands.push(json!({"name": format!("b{}", i + 1)}));
        }
        if let Some(Value::Object(b)) = bands.get_mut(i) {
            b.extend(meta);
        }
    }
    if let Ok(b) = serde_json::from_value(Value::Array(bands)) {
        a.bands = b;
    }
}

/// A new collection for a pass listing's spacecraft/instrument; extent is filled by
/// `Catalog::upsert_item`.
pub fn collection_for_listing(listing: &PassListing) -> Result<Collection, Error> {
    let cid = collection_id(&listing.spacecraft, &listing.instrument);
    validate_id("collection", &cid)?;
    let mut c = Collection::new(
        &cid,
        format!(
            "{} {} products received by this Downlink station",
            listing.spacecraft, listing.instrument
        ),
    );
    c.title = Some(format!("{} {}", listing.spacecraft, listing.instrument));
    c.license = "other".into();
    c.extent.temporal.interval = vec![[None, None]];
    c.extensions = vec![EO_EXT.to_string(), PROJ_EXT.to_string()];
    let mut summaries = serde_json::Map::new();
    summaries.insert(
        "platform".into(),
        json!([listing.spacecraft.to_lowercase()]),
    );
    summaries.insert("instruments".into(), json!([listing.instrument]));
    let bands: Vec<Value> = (1..=6)
        .filter_map(|ch| msu_mr_band(&ch.to_string()).map(Value::Object))
        .collect();
    if listing.instrument.eq_ignore_ascii_case("msu-mr") && !bands.is_empty() {
        summaries.insert("bands".into(), Value::Array(bands));
    }
    c.summaries = Some(summaries);
    Ok(c)
}

pub use archive::catalog::empty_extent_collection;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_bands() {
        assert_eq!(collection_id("METEOR-M 2", "msu-mr"), "meteor-m2-msu-mr");
        assert_eq!(collection_id("NOAA 19", "AVHRR/3"), "noaa19-avhrr-3");
        let b = msu_mr_band("2").unwrap();
        assert_eq!(b["eo:common_name"], "nir");
        assert_eq!(b["eo:center_wavelength"], 0.9);
        assert_eq!(b["eo:full_width_half_max"], 0.4);
        assert!(msu_mr_band("4").unwrap().get("eo:common_name").is_none());
        assert!(msu_mr_band("7").is_none());
    }

    #[test]
    fn a_pass_across_the_antimeridian_gets_a_split_footprint_and_bbox() {
        let listing = PassListing::from_json(
            r#"{"pass_id": "p1", "spacecraft": "METEOR-M 2", "norad_id": 40069,
                "instrument": "msu-mr", "start": "2022-12-20T20:25:11Z",
                "end": "2022-12-20T20:25:44Z", "bbox": [166.86, -13.81, 193.57, -8.27],
                "footprint": [[167.35, -8.29], [178.0, -10.0], [-166.45, -12.04],
                              [-166.73, -13.8], [178.0, -12.0], [166.88, -10.04]],
                "products": []}"#,
        )
        .unwrap();
        let item = item_for_product(&listing, &BTreeMap::new()).unwrap();
        let bb = item.bbox.unwrap();
        assert!((bb.xmin() - 166.86).abs() < 1e-9, "{bb:?}");
        assert!((bb.xmax() - (193.57 - 360.0)).abs() < 1e-9, "{bb:?}");
        let g = serde_json::to_value(item.geometry.unwrap()).unwrap();
        assert_eq!(g["type"], "MultiPolygon", "{g}");
        for poly in g["coordinates"].as_array().unwrap() {
            for p in poly[0].as_array().unwrap() {
                let lon = p[0].as_f64().unwrap();
                assert!((-180.0..=180.0).contains(&lon), "{g}");
            }
        }
    }
}
