//! The catalog contract, run against both backends: real SQLite in a tempdir and real
//! PostgreSQL + PostGIS + pgstac (a throwaway cluster, see common/pgstac.rs); ~200 synthetic
//! items, results checked against brute force.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use archive::catalog::{
    empty_extent_collection, Catalog, DatetimeFilter, Direction, PgstacCatalog, SearchParams,
    SortBy, SqliteCatalog,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;
use stac::{Bbox, Item};

#[path = "common/pgstac.rs"]
mod pgstac_cluster;

struct Syn {
    id: String,
    coll: String,
    bbox: [f64; 4],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

fn synth() -> Vec<Syn> {
    let base = Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap();
    let mut out = Vec::new();
    for i in 0..200u32 {
        let lon = -180.0 + ((i * 37) % 358) as f64 + 0.5; // -179.5 .. 178.5
        let lat = -80.0 + ((i * 53) % 158) as f64;
        let mut bbox = [lon, lat, lon + 1.5, lat + 1.5];
        if i % 40 == 3 {
            bbox = [179.0, lat, -179.0, lat + 1.5]; // crosses antimeridian
        }
        // Every 5th item shares its start time with the previous one (tie-break by id).
        let k = if i % 5 == 0 && i > 0 { i - 1 } else { i };
        let start = base + Duration::hours(((k * 7919) % 5000) as i64);
        out.push(Syn {
            id: format!("item-{i:03}"),
            coll: ["c-a", "c-b", "c-c"][(i % 3) as usize].to_string(),
            bbox,
            start,
            end: start + Duration::minutes(30),
        });
    }
    out
}

fn to_item(s: &Syn) -> Item {
    let mut it = Item::new(&s.id);
    it.collection = Some(s.coll.clone());
    it.bbox = Some(Bbox::new(s.bbox[0], s.bbox[1], s.bbox[2], s.bbox[3]));
    let [w, so, e, n] = s.bbox;
    let geom = if w > e {
        json!({"type":"MultiPolygon","coordinates":[
            [[[w,so],[180.0,so],[180.0,n],[w,n],[w,so]]],
            [[[-180.0,so],[e,so],[e,n],[-180.0,n],[-180.0,so]]]]})
    } else {
        json!({"type":"Polygon","coordinates":[[[w,so],[e,so],[e,n],[w,n],[w,so]]]})
    };
    it.geometry = Some(serde_json::from_value(geom).unwrap());
    it.properties.datetime = Some(s.start);
    it.properties.start_datetime = Some(s.start);
    it.properties.end_datetime = Some(s.end);
    it
}

/// What keeps a backend's storage alive during a test.
enum Guard {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Database,
}

fn sqlite() -> (Guard, Box<dyn Catalog>) {
    let dir = tempfile::tempdir().unwrap();
    let cat = SqliteCatalog::open(dir.path().join("db/catalog.sqlite")).unwrap();
    (Guard::Dir(dir), Box::new(cat))
}

/// A pgstac catalog on a fresh database; `None` when the test cluster is unavailable outside CI.
fn pgstac() -> Option<(Guard, Box<dyn Catalog>)> {
    let url = pgstac_cluster::cluster()?.fresh_database();
    let cfg = archive::catalog::pgstac::parse_url(&url, None).unwrap();
    Some((Guard::Database, Box::new(PgstacCatalog::open(cfg).unwrap())))
}

fn fill(cat: &dyn Catalog) -> Vec<Syn> {
    for c in ["c-a", "c-b", "c-c"] {
        cat.upsert_collection(&empty_extent_collection(c, "test").unwrap())
            .unwrap();
    }
    let items = synth();
    for s in &items {
        cat.upsert_item(&to_item(s)).unwrap();
    }
    items
}

/// Expected order: start desc, id asc (ids unique across collections here).
fn expected(items: &[Syn], pred: impl Fn(&Syn) -> bool) -> Vec<String> {
    let mut v: Vec<&Syn> = items.iter().filter(|s| pred(s)).collect();
    v.sort_by(|a, b| b.start.cmp(&a.start).then(a.id.cmp(&b.id)));
    v.into_iter().map(|s| s.id.clone()).collect()
}

fn all_pages(cat: &dyn Catalog, mut p: SearchParams) -> (Vec<String>, Option<u64>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut matched = None;
    loop {
        let page = cat.search(&p).unwrap();
        pages += 1;
        if matched.is_none() {
            matched = page.matched;
        }
        assert!(page.items.len() <= p.limit.unwrap_or(10) as usize);
        ids.extend(page.items.iter().map(|i| i.id.clone()));
        match page.next {
            Some(t) => p.token = Some(t),
            None => break,
        }
        assert!(pages < 1000);
    }
    (ids, matched, pages)
}

fn overlaps_lon(b: [f64; 4], w: f64, e: f64) -> bool {
    let parts: Vec<(f64, f64)> = if b[0] > b[2] {
        vec![(b[0], 180.0), (-180.0, b[2])]
    } else {
        vec![(b[0], b[2])]
    };
    let q: Vec<(f64, f64)> = if w > e {
        vec![(w, 180.0), (-180.0, e)]
    } else {
        vec![(w, e)]
    };
    parts
        .iter()
        .any(|p| q.iter().any(|r| p.0 <= r.1 && r.0 <= p.1))
}

fn pagination_walks_every_item_once_in_stable_order(cat: &dyn Catalog, items: &[Syn]) {
    let want = expected(items, |_| true);
    assert_eq!(want.len(), 200);
    let (got, matched, pages) = all_pages(
        cat,
        SearchParams {
            limit: Some(7),
            ..Default::default()
        },
    );
    assert_eq!(matched, Some(200));
    assert_eq!(pages, 29); // ceil(200/7)
    assert_eq!(got, want);
    // Default limit 10.
    let first = cat.search(&SearchParams::default()).unwrap();
    assert_eq!(first.items.len(), 10);
    assert_eq!(
        first.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        want[..10].to_vec()
    );
    // limit above max is clamped, not an error
    let big = cat
        .search(&SearchParams {
            limit: Some(50_000),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(big.items.len(), 200);
    assert!(big.next.is_none());
    assert!(cat
        .search(&SearchParams {
            limit: Some(0),
            ..Default::default()
        })
        .is_err());
    assert!(cat
        .search(&SearchParams {
            token: Some("k1zz".into()),
            ..Default::default()
        })
        .is_err());
}

fn bbox_including_antimeridian(cat: &dyn Catalog, items: &[Syn]) {
    for q in [
        [-10.0, -20.0, 30.0, 40.0],
        [170.0, -90.0, -170.0, 90.0],
        [100.0, 0.0, 120.0, 10.0],
    ] {
        let want = expected(items, |s| {
            overlaps_lon(s.bbox, q[0], q[2]) && s.bbox[1] <= q[3] && q[1] <= s.bbox[3]
        });
        let (got, matched, _) = all_pages(
            cat,
            SearchParams {
                bbox: Some(q),
                limit: Some(9),
                ..Default::default()
            },
        );
        println!("bbox {q:?}: {} items", got.len());
        assert!(!want.is_empty());
        assert_eq!(got, want, "bbox {q:?}");
        assert_eq!(matched, Some(want.len() as u64));
    }
    // The antimeridian query finds the split items.
    let page = cat
        .search(&SearchParams {
            bbox: Some([179.5, -90.0, -179.5, 90.0]),
            limit: Some(100),
            ..Default::default()
        })
        .unwrap();
    let n_split = items.iter().filter(|s| s.bbox[0] > s.bbox[2]).count();
    assert_eq!(n_split, 5);
    assert!(page.items.len() >= n_split);
}

fn intersects_point_polygon_multipolygon_exact(cat: &dyn Catalog, items: &[Syn]) {
    // A point inside one specific item.
    let s = &items[42];
    let pt = json!({"type":"Point","coordinates":[s.bbox[0] + 0.7, s.bbox[1] + 0.7]});
    let got = cat
        .search(&SearchParams {
            intersects: Some(pt),
            limit: Some(100),
            ..Default::default()
        })
        .unwrap();
    assert!(got.items.iter().any(|i| i.id == s.id));
    let want = expected(items, |x| {
        overlaps_lon(x.bbox, s.bbox[0] + 0.7, s.bbox[0] + 0.7)
            && x.bbox[1] <= s.bbox[1] + 0.7
            && s.bbox[1] + 0.7 <= x.bbox[3]
    });
    assert_eq!(
        got.items.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        want
    );
    // A thin diagonal triangle: bbox prefilter hits many, exact test fewer.
    let tri = json!({"type":"Polygon","coordinates":[[[-60.0,-60.0],[60.0,60.0],[59.0,60.0],[-60.0,-60.0]]]});
    let rect_hits = cat
        .search(&SearchParams {
            bbox: Some([-60.0, -60.0, 60.0, 60.0]),
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap();
    let tri_hits = cat
        .search(&SearchParams {
            intersects: Some(tri),
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap();
    println!(
        "triangle: {} exact hits vs {} in its bbox",
        tri_hits.items.len(),
        rect_hits.items.len()
    );
    assert!(tri_hits.items.len() < rect_hits.items.len());
    assert_eq!(tri_hits.matched, Some(tri_hits.items.len() as u64));
    for it in &tri_hits.items {
        let b = it.bbox.unwrap();
        // every hit is near the diagonal y ≈ x
        assert!((b.ymin() - b.xmin()).abs() < 3.0, "{} {:?}", it.id, b);
    }
    // MultiPolygon = union of two rectangles.
    let mp = json!({"type":"MultiPolygon","coordinates":[
        [[[-10.0,-10.0],[10.0,-10.0],[10.0,10.0],[-10.0,10.0],[-10.0,-10.0]]],
        [[[100.0,40.0],[120.0,40.0],[120.0,50.0],[100.0,50.0],[100.0,40.0]]]]});
    let want = expected(items, |x| {
        (overlaps_lon(x.bbox, -10.0, 10.0) && x.bbox[1] <= 10.0 && -10.0 <= x.bbox[3])
            || (overlaps_lon(x.bbox, 100.0, 120.0) && x.bbox[1] <= 50.0 && 40.0 <= x.bbox[3])
    });
    let (got, _, _) = all_pages(
        cat,
        SearchParams {
            intersects: Some(mp),
            limit: Some(4),
            ..Default::default()
        },
    );
    assert_eq!(got, want);
    assert!(cat
        .search(&SearchParams {
            intersects: Some(json!({"type":"Nope"})),
            ..Default::default()
        })
        .is_err());
}

fn datetime_instants_and_ranges(cat: &dyn Catalog, items: &[Syn]) {
    let s = &items[10];
    // Instant inside an item's 30-min range.
    let inst = s.start + Duration::minutes(10);
    let p = SearchParams {
        datetime: Some(DatetimeFilter::parse(&inst.to_rfc3339()).unwrap()),
        limit: Some(1000),
        ..Default::default()
    };
    let got: Vec<String> = cat
        .search(&p)
        .unwrap()
        .items
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(got, expected(items, |x| x.start <= inst && inst <= x.end));
    assert!(got.contains(&s.id));
    let base = Utc.with_ymd_and_hms(2022, 1, 1, 0, 0, 0).unwrap();
    let a = base + Duration::hours(1000);
    let b = base + Duration::hours(2000);
    for (q, pred) in [
        (
            format!("{}/{}", a.to_rfc3339(), b.to_rfc3339()),
            Box::new(|x: &Syn| x.end >= a && x.start <= b) as Box<dyn Fn(&Syn) -> bool>,
        ),
        (
            format!("../{}", a.to_rfc3339()),
            Box::new(|x: &Syn| x.start <= a),
        ),
        (
            format!("{}/..", b.to_rfc3339()),
            Box::new(|x: &Syn| x.end >= b),
        ),
        (
            format!("{}/", b.to_rfc3339()),
            Box::new(|x: &Syn| x.end >= b),
        ),
    ] {
        let (got, matched, _) = all_pages(
            cat,
            SearchParams {
                datetime: Some(DatetimeFilter::parse(&q).unwrap()),
                limit: Some(13),
                ..Default::default()
            },
        );
        let want = expected(items, pred);
        println!("datetime {q}: {}", want.len());
        assert!(!want.is_empty() && want.len() < 200);
        assert_eq!(got, want, "{q}");
        assert_eq!(matched, Some(want.len() as u64));
    }
    // Range boundary: an interval ending exactly at an item's start includes it.
    let p = SearchParams {
        datetime: Some(DatetimeFilter::parse(&format!("../{}", s.start.to_rfc3339())).unwrap()),
        ids: Some(vec![s.id.clone()]),
        ..Default::default()
    };
    assert_eq!(cat.search(&p).unwrap().items.len(), 1);
}

fn collections_ids_combined_and_crud(cat: &dyn Catalog, items: &[Syn]) {
    let p = SearchParams {
        collections: Some(vec!["c-b".into()]),
        limit: Some(11),
        ..Default::default()
    };
    let (got, matched, _) = all_pages(cat, p);
    assert_eq!(got, expected(items, |x| x.coll == "c-b"));
    assert_eq!(matched, Some(67));
    let ids = vec!["item-005".to_string(), "item-150".into(), "item-999".into()];
    let page = cat
        .search(&SearchParams {
            ids: Some(ids.clone()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let combo = SearchParams {
        collections: Some(vec!["c-a".into(), "c-c".into()]),
        bbox: Some([-180.0, 0.0, 180.0, 90.0]),
        datetime: Some(DatetimeFilter::parse("2022-03-01T00:00:00Z/..").unwrap()),
        limit: Some(5),
        ..Default::default()
    };
    let t0 = Utc.with_ymd_and_hms(2022, 3, 1, 0, 0, 0).unwrap();
    let (got, _, _) = all_pages(cat, combo);
    assert_eq!(
        got,
        expected(items, |x| x.coll != "c-b"
            && x.bbox[3] >= 0.0
            && x.end >= t0)
    );

    // Collection extents grew with the items.
    let c = cat.collection("c-a").unwrap().unwrap();
    let ca: Vec<&Syn> = items.iter().filter(|s| s.coll == "c-a").collect();
    let tmin = ca.iter().map(|s| s.start).min().unwrap();
    let tmax = ca.iter().map(|s| s.end).max().unwrap();
    assert_eq!(c.extent.temporal.interval[0], [Some(tmin), Some(tmax)]);
    assert_eq!(cat.collections().unwrap().len(), 3);

    // Upsert replaces (no duplicate), delete removes; unknown collection is refused.
    let mut it = to_item(&items[0]);
    it.properties.title = Some("replaced".into());
    cat.upsert_item(&it).unwrap();
    assert_eq!(
        cat.search(&SearchParams {
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap()
        .items
        .len(),
        200
    );
    assert_eq!(
        cat.item("c-a", "item-000")
            .unwrap()
            .unwrap()
            .properties
            .title
            .as_deref(),
        Some("replaced")
    );
    assert!(cat.delete_item("c-a", "item-000").unwrap());
    assert!(!cat.delete_item("c-a", "item-000").unwrap());
    assert!(cat.item("c-a", "item-000").unwrap().is_none());
    assert_eq!(
        cat.search(&SearchParams {
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap()
        .matched,
        Some(199)
    );
    it.collection = Some("nope".into());
    assert!(cat.upsert_item(&it).is_err());
    it.collection = Some("c-a".into());
    it.id = "../evil".into();
    assert!(cat.upsert_item(&it).is_err());
}

#[test]
fn reopen_keeps_data_and_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sqlite");
    {
        let cat = SqliteCatalog::open(&path).unwrap();
        cat.upsert_collection(&empty_extent_collection("c-a", "x").unwrap())
            .unwrap();
        cat.upsert_item(&to_item(&synth()[0])).unwrap();
    }
    let cat = SqliteCatalog::open(&path).unwrap();
    assert!(cat.item("c-a", "item-000").unwrap().is_some());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

/// `sortby` on a numeric property every item has, with a CQL2 filter on it and on the
/// collection, paged: each match once, in order, and the count exact.
fn sortby_and_filter_page_in_order(cat: &dyn Catalog, items: &[Syn]) {
    // Re-publish every item with a cloud cover (0..99, ties broken by id).
    let cloud = |s: &Syn| -> i64 { (s.id[5..].parse::<i64>().unwrap() * 37) % 100 };
    for s in items {
        let mut it = to_item(s);
        it.properties
            .additional_fields
            .insert("eo:cloud_cover".into(), cloud(s).into());
        cat.upsert_item(&it).unwrap();
    }
    let mut want: Vec<&Syn> = items
        .iter()
        .filter(|s| cloud(s) < 50 && s.coll != "c-b")
        .collect();
    want.sort_by(|a, b| cloud(b).cmp(&cloud(a)).then(a.id.cmp(&b.id)));
    let want: Vec<String> = want.into_iter().map(|s| s.id.clone()).collect();
    let p = SearchParams {
        limit: Some(6),
        sortby: vec![SortBy {
            field: "properties.eo:cloud_cover".into(),
            direction: Direction::Desc,
        }],
        filter: Some(
            "eo:cloud_cover < 50 AND collection IN ('c-a', 'c-c')"
                .parse()
                .unwrap(),
        ),
        ..Default::default()
    };
    let (got, matched, _) = all_pages(cat, p);
    assert!(want.len() > 20);
    assert_eq!(got, want);
    assert_eq!(matched, Some(want.len() as u64));
    // Ascending by id.
    let (got, _, _) = all_pages(
        cat,
        SearchParams {
            limit: Some(50),
            sortby: vec![SortBy {
                field: "id".into(),
                direction: Direction::Asc,
            }],
            ..Default::default()
        },
    );
    let mut ids: Vec<String> = items.iter().map(|s| s.id.clone()).collect();
    ids.sort();
    assert_eq!(got, ids);
    // Unsupported operators are refused, not ignored.
    assert!(cat
        .search(&SearchParams {
            filter: Some("eo:cloud_cover + 1 > 2".parse().unwrap()),
            ..Default::default()
        })
        .is_err());
}

/// insert_item refuses a taken id; the asset lookup follows items.
fn insert_refuses_taken_ids_and_assets_follow_items(cat: &dyn Catalog, items: &[Syn]) {
    let mut it = to_item(&items[7]);
    let err = cat.insert_item(&it).unwrap_err();
    assert!(matches!(err, archive::Error::ItemExists { .. }), "{err}");
    it.id = "fresh".into();
    let mut a = stac::Asset::new("passes/fresh/products/ch1.tif");
    a.r#type = Some("image/tiff".into());
    it.assets.insert("data".into(), a);
    it.assets.insert(
        "remote".into(),
        stac::Asset::new("https://example.com/x.tif"),
    );
    cat.insert_item(&it).unwrap();
    let got = cat.asset("passes/fresh/products/ch1.tif").unwrap().unwrap();
    assert_eq!(
        (got.collection.as_str(), got.item.as_str(), got.key.as_str()),
        (it.collection.as_deref().unwrap(), "fresh", "data")
    );
    assert_eq!(got.media_type.as_deref(), Some("image/tiff"));
    assert!(cat.asset("https://example.com/x.tif").unwrap().is_none());
    assert!(cat
        .asset("passes/fresh/products/ch2.tif")
        .unwrap()
        .is_none());
    assert!(cat
        .delete_item(it.collection.as_deref().unwrap(), "fresh")
        .unwrap());
    assert!(cat
        .asset("passes/fresh/products/ch1.tif")
        .unwrap()
        .is_none());
    // Collections: listed by id, re-upserting one keeps the extent its items made.
    let before = cat.collection("c-a").unwrap().unwrap().extent;
    cat.upsert_collection(&empty_extent_collection("c-a", "again").unwrap())
        .unwrap();
    let after = cat.collection("c-a").unwrap().unwrap();
    assert_eq!(after.extent.temporal.interval, before.temporal.interval);
    assert_eq!(after.description, "again");
    let ids: Vec<String> = cat
        .collections()
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["c-a", "c-b", "c-c"]);
    assert!(cat.collection("nope").unwrap().is_none());
    assert!(cat.item("c-a", "nope").unwrap().is_none());
}

/// One `#[test]` per backend for each contract test above.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            use super::*;
            $(#[test]
            fn $name() {
                let (_guard, cat) = sqlite();
                let items = fill(&*cat);
                super::$name(&*cat, &items);
            })*
        }
        mod pgstac_backend {
            use super::*;
            $(#[test]
            fn $name() {
                let Some((_guard, cat)) = pgstac() else { return };
                let items = fill(&*cat);
                super::$name(&*cat, &items);
            })*
        }
    };
}

contract_tests!(
    pagination_walks_every_item_once_in_stable_order,
    bbox_including_antimeridian,
    intersects_point_polygon_multipolygon_exact,
    datetime_instants_and_ranges,
    collections_ids_combined_and_crud,
    sortby_and_filter_page_in_order,
    insert_refuses_taken_ids_and_assets_follow_items,
);

#[test]
fn sqlite_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let cat = SqliteCatalog::open(dir.path().join("c.sqlite")).unwrap();
    assert_eq!(cat.schema_version().unwrap(), 3);
}

/// Concurrent readers (an API node's tile requests each read their item) share the pool's
/// connections: 16 threads reading an item 50 times each open at most the pool's 4, not one
/// per read once 4 are busy (each new connection is a PostgreSQL backend and pgstac's session
/// setup).
#[test]
fn pgstac_concurrent_reads_reuse_pooled_connections() {
    let Some(cluster) = pgstac_cluster::cluster() else {
        return;
    };
    let cfg = archive::catalog::pgstac::parse_url(&cluster.fresh_database(), None).unwrap();
    let cat = PgstacCatalog::open(cfg).unwrap();
    let s = &synth()[0];
    cat.upsert_collection(&empty_extent_collection(&s.coll, "test").unwrap())
        .unwrap();
    cat.upsert_item(&to_item(s)).unwrap();
    let before = cat.stats().reopened;
    let t0 = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                for _ in 0..50 {
                    assert!(cat.item(&s.coll, &s.id).unwrap().is_some());
                }
            });
        }
    });
    let opened = cat.stats().reopened - before;
    println!(
        "16 threads x 50 item reads: {:?}, {opened} new connection(s)",
        t0.elapsed()
    );
    assert!(opened <= 3, "{opened} connections opened for 800 reads");
}
