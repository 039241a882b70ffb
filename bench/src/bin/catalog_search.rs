//! STAC search latency of a catalog backend at scale: fills a catalog with N synthetic scene
//! items (pass footprints over South America, three collections, three years, two assets and
//! the usual properties each), then times the searches analysts' clients make, one at a time,
//! and prints p50 / p99 per kind as one Markdown row each.
//!
//! usage: catalog_search (sqlite:PATH | postgresql://…) [--items N] [--runs R] [--fill-only]
//!
//! The catalog is filled only up to N (an existing one is reused: run it again to time the
//! searches alone): SQLite item by item through the catalog, pgstac in bulk (`create_items`). SQLite and pgstac get the same items (same seed) and the same queries.
#![allow(clippy::print_stdout, clippy::print_stderr)]
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use archive::catalog::{
    empty_extent_collection, Catalog, DatetimeFilter, PgstacCatalog, SearchParams, SqliteCatalog,
};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use stac::{Bbox, Item};

const COLLECTIONS: [&str; 3] = ["meteor-m2-3", "noaa-20", "sentinel-2-import"];

/// A small deterministic generator (no dependency for a benchmark's random numbers).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }
    /// Uniform in `[a, b)`.
    fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * (self.next() as f64 / (1u64 << 53) as f64)
    }
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Seconds in the three years the items span.
const SPAN_S: f64 = 3.0 * 365.0 * 86400.0;

/// Item `i` (its own random stream: any item can be made alone).
fn item(i: u64) -> Result<Item> {
    let rng = &mut Lcg(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 42);
    rng.next();
    let coll = COLLECTIONS
        .get((i % 3) as usize)
        .copied()
        .unwrap_or_default();
    // A pass segment: 2.5° across track, 6–12° along, over South America.
    let (w, s) = (rng.range(-82.0, -37.0), rng.range(-56.0, 8.0));
    let (e, n) = (w + 2.5, s + rng.range(6.0, 12.0));
    let start = base() + chrono::Duration::seconds(rng.range(0.0, SPAN_S) as i64);
    let end = start + chrono::Duration::minutes(12);
    let id = format!("{}-{:07}", start.format("%Y%m%dT%H%M%SZ"), i);
    let mut it = Item::new(&id);
    it.collection = Some(coll.to_owned());
    // The footprint leans 0.8° east from south to north, as a descending pass's does.
    it.bbox = Some(Bbox::new(w, s, e + 0.8, n));
    it.geometry = Some(serde_json::from_value(json!({
        "type": "Polygon",
        "coordinates": [[[w, s], [e, s], [e + 0.8, n], [w + 0.8, n], [w, s]]]
    }))?);
    it.properties.datetime = Some(start);
    it.properties.start_datetime = Some(start);
    it.properties.end_datetime = Some(end);
    for (k, v) in [
        ("platform", json!(coll)),
        (
            "eo:cloud_cover",
            json!((rng.range(0.0, 100.0) * 10.0).round() / 10.0),
        ),
        ("downlink:pass", json!(format!("{id}-udp"))),
        ("proj:epsg", json!(4326)),
    ] {
        it.properties.additional_fields.insert(k.into(), v);
    }
    for (key, roles) in [("visual", ["visual"]), ("data", ["data"])] {
        let a: stac::Asset = serde_json::from_value(json!({
            "href": format!("/api/v1/assets/passes/{id}/products/{key}.tif"),
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": roles,
        }))?;
        it.assets.insert(key.into(), a);
    }
    Ok(it)
}

fn open(target: &str) -> Result<Box<dyn Catalog>> {
    if let Some(path) = target.strip_prefix("sqlite:") {
        return Ok(Box::new(SqliteCatalog::open(path)?));
    }
    if target.starts_with("postgresql://") || target.starts_with("postgres://") {
        let cfg = archive::catalog::pgstac::parse_url(target, None).map_err(anyhow::Error::msg)?;
        return Ok(Box::new(PgstacCatalog::open(cfg)?));
    }
    bail!("the catalog is sqlite:PATH or postgresql://…, not {target}")
}

/// How many of items `0..n` the catalog holds: they are inserted in index order, so a binary
/// search over the index finds where an interrupted fill stopped.
fn present(cat: &dyn Catalog, n: u64) -> Result<u64> {
    let (mut lo, mut hi) = (0u64, n);
    let rng_at = |k: u64| -> Result<bool> {
        let it = item(k)?;
        let c = it.collection.clone().unwrap_or_default();
        Ok(cat.item(&c, &it.id)?.is_some())
    };
    if n == 0 || !rng_at(0)? {
        return Ok(0);
    }
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if rng_at(mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(if rng_at(n - 1)? { n } else { lo + 1 })
}

/// Bulk-loads items `have..n` into pgstac as `pypgstac load` does (`pgstac.create_items`,
/// 1,000 a statement): through the catalog, one transaction an item, pgstac takes about 15 ms
/// per item on this machine, so 100k items would take half an hour. Searches do not depend on
/// how the rows got there.
fn bulk_pgstac(url: &str, have: u64, n: u64) -> Result<()> {
    let cfg = archive::catalog::pgstac::parse_url(url, None).map_err(anyhow::Error::msg)?;
    let mut c = cfg.connect(postgres::NoTls)?;
    let t0 = Instant::now();
    let mut i = have;
    while i < n {
        let end = (i + 1000).min(n);
        let docs = (i..end)
            .map(|k| item(k).and_then(|it| Ok(serde_json::to_value(&it)?)))
            .collect::<Result<Vec<_>>>()?;
        c.execute(
            "SELECT pgstac.create_items($1)",
            &[&serde_json::Value::Array(docs)],
        )?;
        i = end;
    }
    eprintln!(
        "catalog_search: bulk-loaded {} items in {:.1} s",
        n - have,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn fill(cat: &dyn Catalog, n: u64, pg_url: Option<&str>) -> Result<()> {
    for c in COLLECTIONS {
        if cat.collection(c)?.is_none() {
            cat.upsert_collection(&empty_extent_collection(c, "benchmark")?)?;
        }
    }
    let have = present(cat, n)?;
    if have >= n {
        eprintln!("catalog_search: {have} items present already");
        return Ok(());
    }
    if let Some(url) = pg_url {
        // One item through the catalog first (its extents), the rest in bulk.
        cat.upsert_item(&item(have)?)?;
        return bulk_pgstac(url, have + 1, n);
    }
    let t0 = Instant::now();
    for i in have..n {
        let it = item(i)?;
        cat.upsert_item(&it)
            .with_context(|| format!("inserting item {i}"))?;
        if (i + 1) % 10_000 == 0 {
            eprintln!(
                "catalog_search: {} items, {:.0} items/s",
                i + 1,
                (i + 1 - have) as f64 / t0.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "catalog_search: filled {} items in {:.1} s ({:.0} items/s)",
        n - have,
        t0.elapsed().as_secs_f64(),
        (n - have) as f64 / t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn month(rng: &mut Lcg) -> DatetimeFilter {
    let start = base() + chrono::Duration::seconds(rng.range(0.0, SPAN_S - 31.0 * 86400.0) as i64);
    DatetimeFilter {
        start: Some(start),
        end: Some(start + chrono::Duration::days(30)),
    }
}

fn small_bbox(rng: &mut Lcg) -> [f64; 4] {
    let (w, s) = (rng.range(-75.0, -45.0), rng.range(-40.0, 0.0));
    [w, s, w + 2.0, s + 2.0]
}

/// The searches timed, each a function of a random stream.
type Query = (&'static str, Box<dyn Fn(&mut Lcg) -> SearchParams>);

fn queries(ids: Vec<(String, String)>) -> Vec<Query> {
    vec![
        (
            "bbox 2°×2° + one month, limit 100",
            Box::new(|r: &mut Lcg| SearchParams {
                bbox: Some(small_bbox(r)),
                datetime: Some(month(r)),
                limit: Some(100),
                ..SearchParams::default()
            }),
        ),
        (
            "one collection, newest 10",
            Box::new(|r: &mut Lcg| SearchParams {
                collections: Some(vec![COLLECTIONS
                    .get((r.next() % 3) as usize)
                    .copied()
                    .unwrap_or_default()
                    .to_owned()]),
                limit: Some(10),
                ..SearchParams::default()
            }),
        ),
        (
            "intersects a point, limit 100",
            Box::new(|r: &mut Lcg| SearchParams {
                intersects: Some(json!({
                    "type": "Point",
                    "coordinates": [r.range(-75.0, -45.0), r.range(-40.0, 0.0)]
                })),
                limit: Some(100),
                ..SearchParams::default()
            }),
        ),
        (
            "ids (one item)",
            Box::new(move |r: &mut Lcg| {
                let k = (r.next() as usize) % ids.len().max(1);
                SearchParams {
                    ids: ids.get(k).map(|(id, _)| vec![id.clone()]),
                    ..SearchParams::default()
                }
            }),
        ),
        (
            "bbox 10°×10° + one month, limit 100",
            Box::new(|r: &mut Lcg| {
                let (w, s) = (r.range(-75.0, -50.0), r.range(-40.0, -10.0));
                SearchParams {
                    bbox: Some([w, s, w + 10.0, s + 10.0]),
                    datetime: Some(month(r)),
                    limit: Some(100),
                    ..SearchParams::default()
                }
            }),
        ),
    ]
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target = args
        .first()
        .context("usage: catalog_search (sqlite:PATH | postgresql://…) [--items N] [--runs R] [--fill-only]")?
        .clone();
    let flag = |name: &str| -> Option<&String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let n: u64 = flag("--items").map_or(Ok(100_000), |s| s.parse())?;
    let runs: usize = flag("--runs").map_or(Ok(200), |s| s.parse())?;
    let cat = open(&target)?;
    let pg = (!target.starts_with("sqlite:")).then_some(target.as_str());
    fill(&*cat, n, pg)?;
    if args.iter().any(|a| a == "--fill-only") {
        return Ok(());
    }
    // Ids to look up: every 97th item.
    let ids = (0..n)
        .step_by(97)
        .map(|i| item(i).map(|it| (it.id.clone(), it.collection.clone().unwrap_or_default())))
        .collect::<Result<Vec<_>>>()?;
    let backend = if target.starts_with("sqlite:") {
        "SQLite"
    } else {
        "pgstac"
    };
    for (name, q) in queries(ids) {
        let mut rng = Lcg(7);
        // Warm-up (caches, prepared statements), not timed.
        for _ in 0..5 {
            cat.search(&q(&mut rng))?;
        }
        let mut lat = Vec::with_capacity(runs);
        let mut found = 0usize;
        let mut rng = Lcg(7);
        for _ in 0..runs {
            let p = q(&mut rng);
            let t = Instant::now();
            let page = cat.search(&p)?;
            lat.push(t.elapsed());
            found += page.items.len();
        }
        lat.sort();
        println!(
            "| {backend} | {n} | {name} | {:.2} ms | {:.2} ms | {:.1} |",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            found as f64 / runs as f64
        );
    }
    Ok(())
}
