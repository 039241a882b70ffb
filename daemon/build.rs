//! Embeds the web map: our own files from `web/src`, and from `web/node_modules` (installed from
//! `web/package-lock.json` by `make web`) MapLibre GL JS and the offline basemap: Natural Earth
//! land and countries as TopoJSON (`world-atlas`) and `topojson-client` to read them. Without
//! `node_modules` the daemon still builds; `/map/` then answers 503 and says how to build the
//! assets.
// A build script reports failure by panicking.
#![allow(clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;

const OURS: [(&str, &str); 5] = [
    ("index.html", "text/html; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("basemap.js", "text/javascript; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
    // Place names of the basemap, made by `web/tools/places.mjs` from a pinned package.
    ("places.json", "application/json"),
];
/// (path under `web/node_modules`, served as `vendor/<name>`, content type).
const VENDOR: [(&str, &str, &str); 6] = [
    (
        "maplibre-gl/dist/maplibre-gl.mjs",
        "maplibre-gl.mjs",
        "text/javascript; charset=utf-8",
    ),
    (
        "maplibre-gl/dist/maplibre-gl-worker.mjs",
        "maplibre-gl-worker.mjs",
        "text/javascript; charset=utf-8",
    ),
    (
        "maplibre-gl/dist/maplibre-gl.css",
        "maplibre-gl.css",
        "text/css; charset=utf-8",
    ),
    (
        "topojson-client/dist/topojson-client.min.js",
        "topojson-client.min.js",
        "text/javascript; charset=utf-8",
    ),
    (
        "world-atlas/land-50m.json",
        "land-50m.json",
        "application/json",
    ),
    (
        "world-atlas/countries-50m.json",
        "countries-50m.json",
        "application/json",
    ),
];

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let web = Path::new(&manifest).join("../web");
    let src = web.join("src");
    let modules = web.join("node_modules");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", modules.display());
    println!(
        "cargo:rerun-if-changed={}",
        web.join("package-lock.json").display()
    );

    let mut out = String::from("/// The web map's files: (path under /map/, content type, bytes).\npub(super) static FILES: &[(&str, &str, &[u8])] = &[\n");
    let complete = VENDOR.iter().all(|(f, _, _)| modules.join(f).is_file());
    let ours = OURS
        .iter()
        .map(|(f, ct)| (src.join(f), (*f).to_owned(), *ct));
    let theirs = VENDOR
        .iter()
        .filter(|_| complete)
        .map(|(f, name, ct)| (modules.join(f), format!("vendor/{name}"), *ct));
    for (p, name, ct) in ours.chain(theirs) {
        println!("cargo:rerun-if-changed={}", p.display());
        writeln!(
            out,
            "    ({name:?}, {ct:?}, include_bytes!({:?})),",
            p.display().to_string()
        )
        .expect("write to a String");
    }
    out.push_str("];\n");
    writeln!(
        out,
        "/// MapLibre GL JS and the basemap were found at build time.\npub(super) const VENDOR_BUILT: bool = {complete};"
    )
    .expect("write to a String");
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web_assets.rs");
    std::fs::write(dest, out).expect("write web_assets.rs");
}
