//! End-to-end: the STAC API extensions of the real `downlink serve` on loopback: `sortby`,
//! CQL2 `filter` (text and JSON), `fields`, `/queryables`, collection search, a 400 for every
//! unknown parameter, CORS and the access log; then the real clients: pystac-client (pinned in
//! tests/clients/requirements-stacapi.txt) and stac-api-validator with the Filter, Sort and
//! Fields conformance classes, offline with real schemas only.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use archive::catalog::{Catalog, SqliteCatalog};
use serde_json::{json, Value};

mod common;
use common::*;

/// Synthetic scenes `s00`..`s11` in collection `syn-a` (one a day from 2024-01-01, footprints
/// 1° wide from lon 0 eastwards, cloud cover `i*10 % 100` except `s11` which has none, even
/// ones from Meteor, odd ones from Sentinel-2) and two in `syn-b` (2020, near lon 100).
fn scene(i: usize) -> (String, Option<f64>, &'static str) {
    let cloud = (i != 11).then(|| ((i * 10) % 100) as f64);
    let platform = if i.is_multiple_of(2) {
        "meteor-m2-3"
    } else {
        "sentinel-2a"
    };
    (format!("s{i:02}"), cloud, platform)
}

fn populate(archive: &Path) {
    let cat = SqliteCatalog::open(archive.join("catalog.sqlite")).unwrap();
    let coll = |id: &str, title: &str, kw: &[&str]| {
        let mut c = stac::Collection::new(id, format!("{title}: synthetic scenes"));
        c.title = Some(title.into());
        c.keywords = Some(kw.iter().map(|k| (*k).to_owned()).collect());
        cat.upsert_collection(&c).unwrap();
    };
    coll("syn-a", "Mixed platforms", &["meteor", "sentinel"]);
    coll("syn-b", "Sentinel demo", &["ndvi"]);
    let item = |cid: &str, id: &str, lon: f64, when: &str, props: Value| {
        let mut it = stac::Item::new(id);
        it.collection = Some(cid.into());
        it.bbox = Some(stac::Bbox::new(lon, 0.0, lon + 1.0, 1.0));
        it.geometry = Some(
            serde_json::from_value(json!({"type": "Polygon", "coordinates": [[
                [lon, 0.0], [lon + 1.0, 0.0], [lon + 1.0, 1.0], [lon, 1.0], [lon, 0.0]]]}))
            .unwrap(),
        );
        it.properties.datetime = Some(when.parse().unwrap());
        if let Value::Object(m) = props {
            it.properties.additional_fields.extend(m);
        }
        cat.upsert_item(&it).unwrap();
    };
    for i in 0..12 {
        let (id, cloud, platform) = scene(i);
        let mut p =
            json!({"platform": platform, "gsd": if i.is_multiple_of(2) { 1000.0 } else { 10.0 }});
        if let Some(c) = cloud {
            p["eo:cloud_cover"] = json!(c);
        }
        item(
            "syn-a",
            &id,
            i as f64,
            &format!("2024-01-{:02}T00:00:00Z", i + 1),
            p,
        );
    }
    for (i, id) in ["b0", "b1"].iter().enumerate() {
        item(
            "syn-b",
            id,
            100.0 + i as f64,
            &format!("2020-06-0{}T10:00:00Z", i + 1),
            json!({"platform": "sentinel-2b"}),
        );
    }
}

/// `(status, body as JSON)` of a GET.
fn get(port: u16, path: &str) -> (u16, Value) {
    let (st, _, body) = http(port, "GET", path, &[], b"");
    (st, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn post(port: u16, path: &str, body: &Value) -> (u16, Value) {
    let (st, _, out) = http(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    (st, serde_json::from_slice(&out).unwrap_or(Value::Null))
}

fn ids(fc: &Value) -> Vec<String> {
    fc["features"]
        .as_array()
        .unwrap_or_else(|| panic!("not a FeatureCollection: {fc}"))
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Every page of a GET search, following `next` links (path part only).
fn all_pages(port: u16, first: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = first.to_owned();
    for _ in 0..50 {
        let (st, fc) = get(port, &path);
        assert_eq!(st, 200, "{path}: {fc}");
        out.extend(ids(&fc));
        let next = fc["links"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["rel"] == "next")
            .map(|l| l["href"].as_str().unwrap().to_owned());
        match next {
            Some(h) => path = h[h.find("/stac").unwrap()..].to_owned(),
            None => return out,
        }
    }
    panic!("more than 50 pages");
}

/// The synthetic ids matching `pred`, in the default order (datetime descending).
fn expect(pred: impl Fn(usize, Option<f64>, &str) -> bool) -> Vec<String> {
    (0..12)
        .rev()
        .filter(|&i| {
            let (_, c, p) = scene(i);
            pred(i, c, p)
        })
        .map(|i| scene(i).0)
        .collect()
}

fn assert_400(st: u16, body: &Value, what: &str) {
    assert_eq!(st, 400, "{what}: {body}");
    assert_eq!(body["code"], "BadRequest", "{what}: {body}");
    assert!(body["description"].as_str().is_some(), "{what}: {body}");
}

#[test]
fn sortby_filter_fields_queryables_collection_search_and_400s() {
    let d = Daemon::start("jpss", "");
    populate(&d.archive);
    let p = d.http;

    // Conformance: the extensions are advertised, with the queryables link.
    let (_, landing) = get(p, "/stac");
    let cc: Vec<&str> = landing["conformsTo"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for c in [
        "https://api.stacspec.org/v1.0.0/item-search#sort",
        "https://api.stacspec.org/v1.0.0/item-search#fields",
        "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
        "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    ] {
        assert!(cc.contains(&c), "{c} missing from {cc:?}");
    }
    assert!(landing["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["rel"] == "http://www.opengis.net/def/rel/ogc/1.0/queryables"));

    // sortby: GET text form, nulls last, ties broken by id; paging keeps the order.
    let by_cloud: Vec<String> = {
        let mut v: Vec<(Option<f64>, String)> = (0..12)
            .map(|i| {
                let (id, c, _) = scene(i);
                (c, id)
            })
            .collect();
        v.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => y.partial_cmp(&x).unwrap().then(a.1.cmp(&b.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(&b.1),
        });
        v.into_iter().map(|(_, id)| id).collect()
    };
    let (st, fc) = get(
        p,
        "/stac/search?collections=syn-a&limit=100&sortby=-eo:cloud_cover,id",
    );
    assert_eq!(st, 200, "{fc}");
    assert_eq!(ids(&fc), by_cloud);
    assert_eq!(
        all_pages(
            p,
            "/stac/search?collections=syn-a&limit=5&sortby=-properties.eo:cloud_cover"
        ),
        by_cloud
    );
    let asc = all_pages(
        p,
        "/stac/collections/syn-a/items?limit=4&sortby=%2Bdatetime",
    );
    assert_eq!(asc, (0..12).map(|i| scene(i).0).collect::<Vec<_>>());
    // POST: JSON form, and the next link's body pages on.
    let (st, fc) = post(
        p,
        "/stac/search",
        &json!({"collections": ["syn-a"], "limit": 7,
                "sortby": [{"field": "properties.datetime", "direction": "asc"}]}),
    );
    assert_eq!(st, 200, "{fc}");
    assert_eq!(ids(&fc), ["s00", "s01", "s02", "s03", "s04", "s05", "s06"]);
    let next = fc["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "next")
        .unwrap()
        .clone();
    assert_eq!(next["method"], "POST");
    let (st, fc2) = post(p, "/stac/search", &next["body"]);
    assert_eq!(st, 200, "{fc2}");
    assert_eq!(ids(&fc2), ["s07", "s08", "s09", "s10", "s11"]);
    // A token is bound to its sort: reused with another sortby it is refused.
    let (st, body) = post(
        p,
        "/stac/search",
        &json!({"token": next["body"]["token"], "sortby": "-gsd,-eo:cloud_cover"}),
    );
    assert_400(st, &body, "token of another sortby");

    // CQL2 text (GET), with paging and numberMatched.
    let want = expect(|_, c, pl| c.is_some_and(|c| c >= 50.0) && pl == "sentinel-2a");
    let f = q("eo:cloud_cover >= 50 AND platform = 'sentinel-2a'");
    let (st, fc) = get(p, &format!("/stac/search?filter={f}&limit=100"));
    assert_eq!(st, 200, "{fc}");
    assert_eq!(ids(&fc), want);
    assert_eq!(fc["numberMatched"], want.len());
    assert_eq!(
        all_pages(
            p,
            &format!("/stac/search?filter={f}&filter-lang=cql2-text&limit=1")
        ),
        want
    );
    // The same as CQL2 JSON: GET (filter-lang=cql2-json) and POST.
    let fj = json!({"op": "and", "args": [
        {"op": ">=", "args": [{"property": "eo:cloud_cover"}, 50]},
        {"op": "=", "args": [{"property": "platform"}, "sentinel-2a"]}]});
    let (st, fc) = get(
        p,
        &format!(
            "/stac/search?filter-lang=cql2-json&filter={}&limit=100",
            q(&fj.to_string())
        ),
    );
    assert_eq!((st, ids(&fc)), (200, want.clone()), "{fc}");
    let (st, fc) = post(
        p,
        "/stac/search",
        &json!({"filter-lang": "cql2-json", "filter": fj, "limit": 100,
                "filter-crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}),
    );
    assert_eq!((st, ids(&fc)), (200, want), "{fc}");

    // More operators, each against the same predicate computed here.
    type Pred = Box<dyn Fn(usize, Option<f64>, &str) -> bool>;
    let cases: Vec<(&str, Pred)> = vec![
        (
            "eo:cloud_cover BETWEEN 20 AND 40",
            Box::new(|_, c, _| c.is_some_and(|c| (20.0..=40.0).contains(&c))),
        ),
        ("eo:cloud_cover IS NULL", Box::new(|_, c, _| c.is_none())),
        (
            "NOT (eo:cloud_cover < 50)",
            Box::new(|_, c, _| c.is_some_and(|c| c >= 50.0)),
        ),
        (
            "platform LIKE 'sentinel%'",
            Box::new(|_, _, pl| pl.starts_with("sentinel")),
        ),
        ("platform LIKE 'Sentinel%'", Box::new(|_, _, _| false)),
        (
            "id IN ('s01', 's05', 'nope')",
            Box::new(|i, _, _| i == 1 || i == 5),
        ),
        (
            "datetime >= TIMESTAMP('2024-01-10T00:00:00Z')",
            Box::new(|i, _, _| i >= 9),
        ),
        ("datetime < DATE('2024-01-03')", Box::new(|i, _, _| i < 2)),
        (
            "T_INTERSECTS(datetime, INTERVAL('2024-01-04T00:00:00Z', '2024-01-05T00:00:00Z'))",
            Box::new(|i, _, _| i == 3 || i == 4),
        ),
        (
            "S_INTERSECTS(geometry, POLYGON((2.5 0.2, 4.5 0.2, 4.5 0.8, 2.5 0.8, 2.5 0.2)))",
            Box::new(|i, _, _| (2..=4).contains(&i)),
        ),
        (
            "S_INTERSECTS(geometry, POINT(7.5 0.5)) OR gsd = 1000 AND eo:cloud_cover > 70",
            Box::new(|i, c, _| i == 7 || (i.is_multiple_of(2) && c.is_some_and(|c| c > 70.0))),
        ),
        (
            "collection = 'syn-a' AND CASEI(platform) = 'meteor-m2-3'",
            Box::new(|i, _, _| i.is_multiple_of(2)),
        ),
    ];
    for (f, pred) in cases {
        let (st, fc) = get(
            p,
            &format!("/stac/search?collections=syn-a&limit=100&filter={}", q(f)),
        );
        assert_eq!(st, 200, "{f}: {fc}");
        assert_eq!(ids(&fc), expect(pred), "{f}");
    }

    // The items endpoint filters too (OGC API Features part 3).
    let (st, fc) = get(
        p,
        &format!(
            "/stac/collections/syn-a/items?filter={}&sortby=id",
            q("gsd < 100")
        ),
    );
    assert_eq!(st, 200, "{fc}");
    assert_eq!(ids(&fc), ["s01", "s03", "s05", "s07", "s09", "s11"]);

    // fields: include, exclude, nested, and the default set.
    let (st, fc) = get(p, "/stac/search?ids=s03&fields=id,properties.platform");
    assert_eq!(st, 200, "{fc}");
    let f0 = &fc["features"][0];
    let mut keys: Vec<&String> = f0.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "links", "properties", "stac_version", "type"]);
    assert_eq!(f0["properties"], json!({"platform": "sentinel-2a"}));
    let (_, fc) = get(
        p,
        "/stac/collections/syn-a/items?ids=s03&fields=-geometry,-properties.gsd",
    );
    let f0 = &fc["features"][0];
    assert!(
        f0.get("geometry").is_none() && f0["properties"].get("gsd").is_none(),
        "{f0}"
    );
    assert_eq!(f0["properties"]["platform"], "sentinel-2a");
    assert!(f0["assets"].is_object() && f0["links"].is_array(), "{f0}");
    let (_, fc) = post(p, "/stac/search", &json!({"ids": ["s03"], "fields": {}}));
    let mut keys: Vec<&String> = fc["features"][0].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "assets",
            "bbox",
            "geometry",
            "id",
            "links",
            "properties",
            "stac_version",
            "type"
        ]
    );
    assert_eq!(
        fc["features"][0]["properties"],
        json!({"datetime": "2024-01-04T00:00:00Z"})
    );
    let (st, body) = post(p, "/stac/search", &json!({"fields": null}));
    assert_400(st, &body, "fields null");

    // Queryables, global and per collection.
    for (path, id) in [
        ("/stac/queryables", "/stac/queryables"),
        (
            "/stac/collections/syn-a/queryables",
            "/stac/collections/syn-a/queryables",
        ),
    ] {
        let (st, head, body) = http(p, "GET", path, &[], b"");
        assert_eq!(st, 200, "{path}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/schema+json"),
            "{head}"
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["$id"], format!("http://127.0.0.1:{p}{id}"));
        assert_eq!(v["type"], "object");
        assert!(v["properties"]["eo:cloud_cover"].is_object(), "{v}");
    }
    assert_eq!(get(p, "/stac/collections/nope/queryables").0, 404);

    // Collection search: free text, bbox, datetime, paging.
    let coll_ids = |v: &Value| -> Vec<String> {
        v["collections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for (qs, want) in [
        ("q=demo", vec!["syn-b"]),
        ("q=ndvi,meteor", vec!["syn-a", "syn-b"]),
        ("q=sentinel%20demo", vec!["syn-b"]),
        ("bbox=99,-1,100.5,1", vec!["syn-b"]),
        ("bbox=-10,-10,3,3", vec!["syn-a"]),
        ("datetime=2023-01-01T00:00:00Z/..", vec!["syn-a"]),
        ("datetime=2020-06-01T12:00:00Z", vec!["syn-b"]),
        ("q=nothing-like-this", vec![]),
    ] {
        let (st, v) = get(p, &format!("/stac/collections?{qs}"));
        assert_eq!(st, 200, "{qs}: {v}");
        assert_eq!(coll_ids(&v), want, "{qs}");
        assert_eq!(v["numberMatched"], want.len(), "{qs}");
    }
    let (_, page1) = get(p, "/stac/collections?limit=1");
    assert_eq!(coll_ids(&page1), ["syn-a"]);
    let next = page1["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["rel"] == "next")
        .unwrap()["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, page2) = get(p, &next[next.find("/stac").unwrap()..]);
    assert_eq!(coll_ids(&page2), ["syn-b"]);
    assert!(!page2["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["rel"] == "next"));

    // Unknown or unsupported parameters: a JSON 400 on every endpoint, never a silent 200.
    for path in [
        "/stac?x=1",
        "/stac/conformance?f=json",
        "/stac/api?x=1",
        "/stac/queryables?collections=syn-a",
        "/stac/collections?sortby=id",
        "/stac/collections?q=a&q=b",
        "/stac/collections/syn-a?x=1",
        "/stac/collections/syn-a/queryables?x=1",
        "/stac/collections/syn-a/items?query=%7B%7D",
        "/stac/collections/syn-a/items?collections=syn-b",
        "/stac/collections/syn-a/items/s00?fields=id",
        "/stac/search?query=%7B%7D",
        "/stac/search?sort=datetime",
        "/stac/search?filter=eo:cloud_cover%20%2B%201%20%3E%202",
        "/stac/search?filter=S_WITHIN(geometry,POINT(0%200))",
        "/stac/search?filter=this%20is%20not%20cql",
        "/stac/search?filter=a%3D1&filter-lang=cql2-xml",
        "/stac/search?filter=a%3D1&filter-crs=EPSG:3857",
        "/stac/search?filter-lang=cql2-text",
        "/stac/search?filter=datetime%20%3E%205",
        "/stac/search?sortby=geometry",
        "/stac/search?sortby=-datetime,datetime",
        "/stac/search?fields=a..b",
    ] {
        let (st, body) = get(p, path);
        assert_400(st, &body, path);
    }
    for body in [
        json!({"query": {"eo:cloud_cover": {"lt": 10}}}),
        json!({"filter": "a = 1", "filter-lang": "cql2-json"}),
        json!({"filter": {"op": "=", "args": [{"property": "a"}, 1]}, "filter-lang": "cql2-text"}),
        json!({"sortby": [{"field": "datetime", "direction": "up"}]}),
        json!({"sortby": [{"field": "datetime", "order": "asc"}]}),
        json!({"fields": {"include": "id"}}),
    ] {
        let (st, out) = post(p, "/stac/search", &body);
        assert_400(st, &out, &body.to_string());
    }
    let (st, out) = post(p, "/stac/search?limit=1", &json!({}));
    assert_400(st, &out, "POST with a query string");
    // Every refusal is counted: /metrics and /api/v1/status agree.
    let status = json_of(p, "/api/v1/status");
    let refused = status["http"]["responses"]["4xx"].as_u64().unwrap();
    assert!(refused >= 30, "{}", status["http"]);
    let (_, _, metrics) = http(p, "GET", "/metrics", &[], b"");
    let metrics = String::from_utf8(metrics).unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("downlink_http_responses_total{class=\"4xx\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    assert_eq!(
        line.rsplit(' ').next(),
        Some(refused.to_string().as_str()),
        "{line}"
    );

    // No [http] cors_origins: no CORS headers, and no preflight answer.
    let (st, head, _) = http(p, "GET", "/stac", &[("Origin", "https://a.example")], b"");
    assert_eq!(st, 200);
    assert!(
        !head.to_ascii_lowercase().contains("access-control-"),
        "{head}"
    );
    let (st, head, _) = http(
        p,
        "OPTIONS",
        "/stac/search",
        &[
            ("Origin", "https://a.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_ne!(st, 204, "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("access-control-"),
        "{head}"
    );
}

/// A daemon with `extra_http` in `[http]`, RUST_LOG as given.
fn daemon_with_http(extra_http: &str, rust_log: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let cfg = format!(
        "[archive]\npath = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n{extra_http}\n\
         [[input]]\nname = \"xband\"\nlisten = \"udp://127.0.0.1:0\"\nformat = \"bits\"\nprofile = \"jpss\"\n",
        archive.display()
    );
    let path = dir.path().join("downlink.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut cmd = serve_cmd(&path);
    cmd.env("RUST_LOG", rust_log).env("NO_COLOR", "1");
    Daemon::launch(cmd, dir, archive)
}

#[test]
fn cors_origins_preflight_and_the_access_log() {
    let d = daemon_with_http(
        "cors_origins = [\"https://maps.example.org\", \"http://localhost:8081\"]",
        "info,downlink::access=debug",
    );
    let (p, log) = (d.http, d.log.clone());
    let lower = |h: &str| h.to_ascii_lowercase();
    // An allowed origin: its value echoed, Vary: Origin, range headers exposed.
    let (st, head, _) = http(
        p,
        "GET",
        "/stac",
        &[("Origin", "https://maps.example.org")],
        b"",
    );
    assert_eq!(st, 200);
    let h = lower(&head);
    assert!(
        h.contains("access-control-allow-origin: https://maps.example.org"),
        "{head}"
    );
    assert!(h.contains("vary: origin"), "{head}");
    assert!(
        h.contains("access-control-expose-headers:") && h.contains("content-range"),
        "{head}"
    );
    // Errors carry the header too (a browser can read the 400's JSON).
    let (st, head, _) = http(
        p,
        "GET",
        "/stac/search?bogus=1",
        &[("Origin", "http://localhost:8081")],
        b"",
    );
    assert_eq!(st, 400);
    assert!(
        lower(&head).contains("access-control-allow-origin: http://localhost:8081"),
        "{head}"
    );
    // Another origin, or none: no CORS headers.
    for extra in [&[("Origin", "https://evil.example")][..], &[][..]] {
        let (_, head, _) = http(p, "GET", "/stac", extra, b"");
        assert!(!lower(&head).contains("access-control-"), "{head}");
    }
    // Preflight of a JSON POST search.
    let (st, head, body) = http(
        p,
        "OPTIONS",
        "/stac/search",
        &[
            ("Origin", "https://maps.example.org"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(st, 204, "{head}");
    assert!(body.is_empty());
    let h = lower(&head);
    assert!(
        h.contains("access-control-allow-origin: https://maps.example.org"),
        "{head}"
    );
    assert!(
        h.contains("access-control-allow-methods:") && h.contains("post"),
        "{head}"
    );
    assert!(
        h.contains("access-control-allow-headers: content-type"),
        "{head}"
    );
    let (st, head, _) = http(
        p,
        "OPTIONS",
        "/stac/search",
        &[
            ("Origin", "https://evil.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    );
    assert_ne!(st, 204);
    assert!(!lower(&head).contains("access-control-"), "{head}");

    // The access log: one structured event per request, with status, bytes and peer.
    let (st, _, body) = http(p, "GET", "/stac/conformance", &[], b"");
    assert_eq!(st, 200);
    let t0 = Instant::now();
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(l) = text
            .lines()
            .find(|l| l.contains("http request") && l.contains("path=/stac/conformance"))
        {
            break l.to_owned();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no access log line:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    for field in [
        "downlink::access".to_owned(),
        "method=GET".to_owned(),
        "status=200".to_owned(),
        format!("bytes={}", body.len()),
        "peer=127.0.0.1:".to_owned(),
        "duration_ms=".to_owned(),
        "complete=true".to_owned(),
    ] {
        assert!(line.contains(&field), "{field} missing: {line}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().any(|l| l.contains("http request")
            && l.contains("method=OPTIONS")
            && l.contains("status=204")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("http request") && l.contains("status=400")),
        "{text}"
    );
    drop(d);

    // At the default level the access log is off.
    let d = daemon_with_http("", "info");
    assert_eq!(http(d.http, "GET", "/stac", &[], b"").0, 200);
    std::thread::sleep(Duration::from_millis(300));
    let text = d.log_text();
    assert!(!text.contains("http request"), "{text}");
}

/// The venv of tests/clients/requirements-stacapi.txt under target/ (created once, reused).
fn client_venv(repo: &Path) -> std::path::PathBuf {
    let venv = repo.join("target/stacapi-clients/venv");
    let reqs = repo.join("tests/clients/requirements-stacapi.txt");
    let stamp = venv.join("requirements.txt");
    let want = std::fs::read_to_string(&reqs).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(want.as_str()) {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap()
            .success()
            && Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "--disable-pip-version-check", "-r"])
                .arg(&reqs)
                .status()
                .unwrap()
                .success();
        assert!(ok, "could not install {}", reqs.display());
        std::fs::write(&stamp, want).unwrap();
    }
    venv
}

const PYSTAC_CLIENT: &str = r#"
import json, sys
from pystac_client import Client
root = sys.argv[1]
c = Client.open(root)
out = {}
# Paging: 12 items, 5 a page (POST search, following the next links' bodies).
s = c.search(collections=["syn-a"], limit=5)
out["paged"] = [i.id for i in s.items()]
out["pages"] = sum(1 for _ in s.pages())
out["matched"] = s.matched()
# CQL2 text and JSON.
out["text"] = [i.id for i in c.search(
    collections=["syn-a"], filter="eo:cloud_cover >= 50 AND platform = 'sentinel-2a'",
    filter_lang="cql2-text", limit=2).items()]
out["json"] = [i.id for i in c.search(
    collections=["syn-a"], limit=2, filter_lang="cql2-json",
    filter={"op": "and", "args": [
        {"op": ">=", "args": [{"property": "eo:cloud_cover"}, 50]},
        {"op": "=", "args": [{"property": "platform"}, "sentinel-2a"]}]}).items()]
# sortby, and sortby with a filter, both paged.
out["sorted"] = [i.id for i in c.search(collections=["syn-a"], sortby="-eo:cloud_cover,+id", limit=4).items()]
out["sorted_get"] = [i.id for i in c.search(collections=["syn-a"], sortby=["+datetime"], limit=4, method="GET").items()]
out["filtered_sorted"] = [i.id for i in c.search(
    collections=["syn-a"], filter="platform = 'meteor-m2-3'", filter_lang="cql2-text", sortby=[{"field": "datetime", "direction": "asc"}],
    limit=2).items()]
out["conforms_filter"] = c.conforms_to("FILTER")
out["conforms_sort"] = c.conforms_to("SORT")
print(json.dumps(out))
"#;

#[test]
fn pystac_client_pages_filters_and_sorts() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = client_venv(&repo);
    let d = Daemon::start("jpss", "");
    populate(&d.archive);
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", PYSTAC_CLIENT])
        .arg(format!("http://127.0.0.1:{}/stac", d.http))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let all: Vec<String> = (0..12).rev().map(|i| scene(i).0).collect();
    assert_eq!(v["paged"], json!(all));
    assert_eq!(v["pages"], 3);
    assert_eq!(v["matched"], 12);
    let want = expect(|_, c, pl| c.is_some_and(|c| c >= 50.0) && pl == "sentinel-2a");
    assert_eq!(v["text"], json!(want));
    assert_eq!(v["json"], json!(want));
    assert_eq!(
        v["sorted"],
        json!(["s09", "s08", "s07", "s06", "s05", "s04", "s03", "s02", "s01", "s00", "s10", "s11"])
    );
    assert_eq!(
        v["sorted_get"],
        json!((0..12).map(|i| scene(i).0).collect::<Vec<_>>())
    );
    assert_eq!(
        v["filtered_sorted"],
        json!(["s00", "s02", "s04", "s06", "s08", "s10"])
    );
    assert_eq!(v["conforms_filter"], true);
    assert_eq!(v["conforms_sort"], true);
}

#[test]
fn stac_api_validator_passes_filter_sort_and_fields_offline() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let d = Daemon::start("jpss", "");
    // The newest item (what the Fields checks look at) has proj:code (an EPSG CRS).
    for (file, when) in [
        ("geotiff/rgb-byte-tenth.tif", "2024-08-01T13:45:00Z"),
        ("geotiff/RGB.byte.tif", "2024-09-01T13:45:00Z"),
    ] {
        archive_add(&d, file, "landsat-imports", when);
    }
    let out = Command::new("bash")
        .env("STAC_FIELDS_PROPERTY", "properties.proj:code")
        .arg(repo.join("scripts/stac-validate/stac-validate.sh"))
        .arg(repo.join("target/stac-validate"))
        .arg(format!("http://127.0.0.1:{}/stac", d.http))
        .arg("landsat-imports")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}\n{err}");
    assert!(log.contains("Errors: none"), "{log}");
    assert!(log.contains(" 0 failed"), "{log}");
    for class in [
        "Filter Extension - CQL2-Text",
        "Filter Extension - CQL2-JSON",
        "Filter Extension - Basic CQL2",
        "Filter Extension - Advanced Comparison Operators",
        "Filter Extension - Basic Spatial Operators",
        "Sort extension conformance class found",
        "Fields extension conformance class found",
    ] {
        assert!(log.contains(class), "{class} not validated:\n{log}");
    }
    // Real schemas only: nothing was answered by a stand-in or missing.
    assert!(
        !err.contains("no local copy") && !log.contains("no local copy"),
        "{err}"
    );
}
