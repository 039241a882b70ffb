//! Embeds the web map: our own files from `web/src` and MapLibre GL JS from `web/node_modules`
//! (installed from `web/package-lock.json` by `make web`). Without `node_modules` the daemon
//! still builds; `/map/` then answers 503 and says how to build the assets.
// A build script reports failure by panicking.
#![allow(clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;

const OURS: [(&str, &str); 3] = [
    ("index.html", "text/html; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("app.css", "text/css; charset=utf-8"),
];
const VENDOR: [(&str, &str); 3] = [
    ("maplibre-gl.mjs", "text/javascript; charset=utf-8"),
    ("maplibre-gl-worker.mjs", "text/javascript; charset=utf-8"),
    ("maplibre-gl.css", "text/css; charset=utf-8"),
];

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let web = Path::new(&manifest).join("../web");
    let src = web.join("src");
    let vendor = web.join("node_modules/maplibre-gl/dist");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed={}", vendor.display());
    println!(
        "cargo:rerun-if-changed={}",
        web.join("package-lock.json").display()
    );

    let mut out = String::from("/// The web map's files: (path under /map/, content type, bytes).\npub(super) static FILES: &[(&str, &str, &[u8])] = &[\n");
    let complete = VENDOR.iter().all(|(f, _)| vendor.join(f).is_file());
    let ours = OURS
        .iter()
        .map(|(f, ct)| (src.join(f), (*f).to_owned(), *ct));
    let theirs = VENDOR
        .iter()
        .filter(|_| complete)
        .map(|(f, ct)| (vendor.join(f), format!("vendor/{f}"), *ct));
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
        "/// MapLibre GL JS was found at build time.\npub(super) const VENDOR_BUILT: bool = {complete};"
    )
    .expect("write to a String");
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("web_assets.rs");
    std::fs::write(dest, out).expect("write web_assets.rs");
}
