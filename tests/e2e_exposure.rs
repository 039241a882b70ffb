//! End-to-end: what the archive exposes over HTTP. Only files that a catalogued item references
//! are served under `/stac/assets/`, only files a pass's `products.json` lists under
//! `/api/v1/passes/{id}/products/`; the database, raw passes, frames, pass records, temp files
//! and everything else answer 404 however the path is spelled. And the catalog notices its
//! archive directory vanishing, goes degraded instead of writing into the unlinked database,
//! and recovers when the directory returns. Only 127.0.0.1 is used.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Every file under `root`, relative, with `/` separators.
fn files_under(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// The archive-relative hrefs of every catalogued asset (from the STAC API).
fn catalogued_hrefs(port: u16) -> Vec<String> {
    let prefix = format!("http://127.0.0.1:{port}/stac/assets/");
    let v = json_of(port, "/stac/search?limit=1000");
    let mut out: Vec<String> = v["features"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["assets"].as_object().unwrap().values())
        .map(|a| {
            a["href"]
                .as_str()
                .unwrap()
                .strip_prefix(&prefix)
                .unwrap()
                .to_owned()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Every byte percent-encoded.
fn encode_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn only_catalogued_assets_and_listed_products_are_served() {
    let (d, _tle) = meteor_daemon("");
    send_meteor_pass(&d, 11);
    let id = wait_catalogued(&d);
    let p = d.http;
    // Imported while the daemon runs: served at once.
    let added = archive_add(
        &d,
        "geotiff/RGB.byte.tif",
        "landsat-imports",
        "2024-08-01T13:45:00Z",
    );
    let imported = added["assets"]["red"]["href"].as_str().unwrap().to_owned();
    let pass_dir = format!("passes/{id}");
    let products = format!("{pass_dir}/products");

    // Leftovers a crash or a writer in progress leaves next to catalogued COGs.
    for tmp in [
        format!("{products}/x.tif.tmp"),
        format!("{imported}.tmp"),
        format!("{products}/.ch1.tif.tmp"),
    ] {
        std::fs::write(d.archive.join(&tmp), b"half-written").unwrap();
    }

    let hrefs = catalogued_hrefs(p);
    assert!(hrefs.contains(&imported), "{hrefs:?}");
    assert!(hrefs.contains(&format!("{products}/ch1.tif")), "{hrefs:?}");
    let all = files_under(&d.archive);
    let hidden: Vec<&String> = all.iter().filter(|f| !hrefs.contains(f)).collect();
    // What must never be served is really there (else the 404s below prove nothing).
    for must in [
        "catalog.sqlite".to_owned(),
        "catalog.sqlite-wal".to_owned(),
        format!("{pass_dir}/pass.json"),
        format!("{products}/x.tif.tmp"),
        format!("{imported}.tmp"),
    ] {
        assert!(all.contains(&must), "{must} missing from {all:?}");
        assert!(hidden.contains(&&must), "{must} is catalogued?");
    }
    let raw: Vec<&&String> = hidden
        .iter()
        .filter(|f| f.ends_with("cadus.raw") || f.ends_with("frames.raw") || f.contains("/frames/"))
        .collect();
    assert!(!raw.is_empty(), "no raw pass data in {all:?}");

    // Catalogued: 200 and the bytes on disk, typed by the asset's media type; Range → 206.
    for h in &hrefs {
        let (st, head, body) = http(p, "GET", &format!("/stac/assets/{h}"), &[], b"");
        assert_eq!(st, 200, "{h}: {head}");
        assert_eq!(body, std::fs::read(d.archive.join(h)).unwrap(), "{h}");
        assert!(header(&head, "last-modified").is_some(), "{head}");
    }
    let cog = format!("{products}/ch1.tif");
    let (st, head, part) = http(
        p,
        "GET",
        &format!("/stac/assets/{cog}"),
        &[("Range", "bytes=100-163")],
        b"",
    );
    assert_eq!(st, 206, "{head}");
    assert_eq!(part, std::fs::read(d.archive.join(&cog)).unwrap()[100..164]);
    assert!(
        header(&head, "content-type")
            .unwrap()
            .starts_with("image/tiff; application=geotiff"),
        "{head}"
    );
    let (st, head, body) = http(p, "HEAD", &format!("/stac/assets/{imported}"), &[], b"");
    assert_eq!(st, 200, "{head}");
    assert!(body.is_empty());

    // Not catalogued: 404 spelled plainly, percent-encoded, or reached by `..` from a
    // catalogued directory (400 accepted for the traversals only).
    let back = "../".repeat(products.split('/').count());
    let back_enc = "%2e%2e/".repeat(products.split('/').count());
    let back_slash_enc = "..%2F".repeat(products.split('/').count());
    let mut tried = 0;
    for f in &hidden {
        let plain = [
            format!("/stac/assets/{f}"),
            format!("/stac/assets/{}", f.replace('/', "%2F")),
            format!("/stac/assets/{}", encode_all(f)),
            format!("/stac/assets//{f}"),
            format!("/stac/assets/./{f}"),
        ];
        let traversal = [
            format!("/stac/assets/{products}/{back}{f}"),
            format!("/stac/assets/{products}/{back_enc}{f}"),
            format!("/stac/assets/{products}/{back_slash_enc}{f}"),
            format!(
                "/stac/assets/{}",
                encode_all(&format!("{products}/{back}{f}"))
            ),
            format!(
                "/api/v1/passes/{id}/products/{}",
                encode_all(&format!("{back}{f}"))
            ),
            format!(
                "/api/v1/passes/{id}/products/{back_slash_enc}{}",
                f.replace('/', "%2F")
            ),
        ];
        for u in &plain {
            let (st, head, _) = http(p, "GET", u, &[], b"");
            assert_eq!(st, 404, "{u}: {head}");
            tried += 1;
        }
        for u in &traversal {
            let (st, head, _) = http(p, "GET", u, &[], b"");
            assert!(st == 404 || st == 400, "{u}: {head}");
            tried += 1;
        }
    }
    eprintln!(
        "{tried} requests for {} uncatalogued files refused",
        hidden.len()
    );

    // The product route: what products.json lists (and the listing), nothing else.
    let listing: serde_json::Value = serde_json::from_slice(
        &std::fs::read(d.archive.join(&products).join("products.json")).unwrap(),
    )
    .unwrap();
    let listed: Vec<String> = listing["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            Path::new(p["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert!(listed.contains(&"ch1.tif".to_owned()), "{listed:?}");
    for name in listed.iter().chain([&"products.json".to_owned()]) {
        let (st, head, body) = http(
            p,
            "GET",
            &format!("/api/v1/passes/{id}/products/{name}"),
            &[],
            b"",
        );
        assert_eq!(st, 200, "{name}: {head}");
        assert_eq!(
            body,
            std::fs::read(d.archive.join(&products).join(name)).unwrap()
        );
    }
    let (st, head, part) = http(
        p,
        "GET",
        &format!("/api/v1/passes/{id}/products/ch1.tif"),
        &[("Range", "bytes=0-15")],
        b"",
    );
    assert_eq!(st, 206, "{head}");
    assert_eq!(part, std::fs::read(d.archive.join(&cog)).unwrap()[..16]);
    let in_products_dir: Vec<String> = std::fs::read_dir(d.archive.join(&products))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !listed.contains(n) && n != "products.json")
        .collect();
    assert!(in_products_dir.contains(&"x.tif.tmp".to_owned()));
    for name in in_products_dir.iter().map(String::as_str).chain([
        "pass.json",
        "cadus.raw",
        "catalog.sqlite",
        "..",
        "%2e%2e",
    ]) {
        let u = format!("/api/v1/passes/{id}/products/{name}");
        let (st, head, _) = http(p, "GET", &u, &[], b"");
        assert_eq!(st, 404, "{u}: {head}");
    }
    // No route serves the archive root.
    for u in [
        "/stac/assets",
        "/stac/assets/",
        "/stac/assets/passes",
        "/stac/assets/passes/",
    ] {
        let (st, head, _) = http(p, "GET", u, &[], b"");
        assert_eq!(st, 404, "{u}: {head}");
    }
}

fn health(port: u16) -> (u16, serde_json::Value) {
    let (st, _, body) = http(port, "GET", "/api/v1/health", &[], b"");
    (st, serde_json::from_slice(&body).unwrap())
}

fn metric(port: u16, line_start: &str) -> u64 {
    let (_, _, body) = http(port, "GET", "/metrics", &[], b"");
    let text = String::from_utf8(body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("{line_start} not in {text}"))
        .trim()
        .parse()
        .unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(30), "never: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_catalog_survives_its_archive_directory_disappearing() {
    let (d, _tle) = meteor_daemon("");
    let p = d.http;
    archive_add(
        &d,
        "geotiff/RGB.byte.tif",
        "landsat-imports",
        "2024-08-01T13:45:00Z",
    );
    let hrefs = catalogued_hrefs(p);
    assert!(!hrefs.is_empty());
    assert_eq!(health(p).0, 200);
    let db: PathBuf = d.archive.join("catalog.sqlite");

    std::fs::remove_dir_all(&d.archive).unwrap();
    wait_for("catalog degraded", || {
        let (st, v) = health(p);
        st == 503
            && v["problems"]["catalog"]
                .as_str()
                .is_some_and(|r| r.contains("gone"))
    });
    assert_eq!(metric(p, "downlink_degraded{component=\"catalog\"}"), 1);
    // Nothing is served from the vanished catalog, and it recreates nothing by itself.
    let (st, head, _) = http(p, "GET", "/stac/collections", &[], b"");
    assert_eq!(st, 503, "{head}");
    let (st, head, _) = http(p, "GET", &format!("/stac/assets/{}", hrefs[0]), &[], b"");
    assert!(st == 503 || st == 404, "{head}");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!d.archive.exists());

    // The next pass recreates the archive: the catalog is reopened there (empty: the entries
    // of the deleted database went with their files) and the pass is catalogued in it.
    send_meteor_pass(&d, 5);
    let id = wait_catalogued(&d);
    wait_for("catalog healthy", || health(p).0 == 200);
    assert_eq!(metric(p, "downlink_degraded{component=\"catalog\"}"), 0);
    assert!(metric(p, "downlink_catalog_reopened_total") >= 1);
    assert_eq!(metric(p, "downlink_catalog_write_failures_total"), 0);
    assert!(db.is_file());
    let now = catalogued_hrefs(p);
    assert!(
        now.iter().all(|h| h.starts_with(&format!("passes/{id}/"))),
        "{now:?}"
    );
    assert!(!now.is_empty());
    let (st, head, _) = http(p, "GET", &format!("/stac/assets/{}", now[0]), &[], b"");
    assert_eq!(st, 200, "{head}");
    let st: serde_json::Value = serde_json::from_str(&d.get("/api/v1/status").unwrap()).unwrap();
    assert_eq!(st["catalog"]["open"], true, "{}", st["catalog"]);
}
