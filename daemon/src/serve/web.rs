//! The analyst web map at `/map/`: our page and MapLibre GL JS, embedded in the binary at build
//! time (see `daemon/build.rs`), so an installed daemon needs no web root on disk.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// The web map routes.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/map/") }))
        .route("/map", get(|| async { Redirect::permanent("/map/") }))
        .route(
            "/map/",
            get(|h: HeaderMap| async move { file("index.html", &h) }),
        )
        .route(
            "/map/{*path}",
            get(|Path(p): Path<String>, h: HeaderMap| async move { file(&p, &h) }),
        )
}

/// FNV-1a: a stable content hash for ETags (the files are fixed for the life of the binary).
fn etag(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}\"")
}

fn file(path: &str, headers: &HeaderMap) -> Response {
    if !assets::VENDOR_BUILT {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "The web map's MapLibre GL JS files were not present when this binary was built: \
             run `make web` (npm ci in web/) and rebuild.\n",
        )
            .into_response();
    }
    let Some((_, ct, bytes)) = assets::FILES.iter().find(|(p, _, _)| *p == path) else {
        return (StatusCode::NOT_FOUND, "no such file in the web map\n").into_response();
    };
    let tag = etag(bytes);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    // Vendor files change only with the lockfile; our own files are revalidated each load.
    let cache = if path.starts_with("vendor/") {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, v);
    }
    if matches {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    (StatusCode::OK, h, *bytes).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn our_files_are_embedded_with_types_and_etags() {
        let h = HeaderMap::new();
        for (p, ct) in [
            ("index.html", "text/html; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
        ] {
            let r = file(p, &h);
            if assets::VENDOR_BUILT {
                assert_eq!(r.status(), StatusCode::OK, "{p}");
                assert_eq!(r.headers()[header::CONTENT_TYPE], ct);
                let tag = r.headers()[header::ETAG].clone();
                let mut again = HeaderMap::new();
                again.insert(header::IF_NONE_MATCH, tag);
                assert_eq!(file(p, &again).status(), StatusCode::NOT_MODIFIED);
            } else {
                assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
            }
        }
        if assets::VENDOR_BUILT {
            assert_eq!(file("../Cargo.toml", &h).status(), StatusCode::NOT_FOUND);
            assert_eq!(file("vendor/nope.js", &h).status(), StatusCode::NOT_FOUND);
        }
    }

    #[test]
    fn etags_differ_by_content() {
        assert_ne!(etag(b"a"), etag(b"b"));
        assert_eq!(etag(b"abc"), etag(b"abc"));
    }
}
