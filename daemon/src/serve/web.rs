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

/// The ETag of each embedded file (same order as `FILES`), hashed once: the files are fixed
/// for the life of the binary.
fn etag_of(index: usize) -> &'static str {
    static TAGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        assets::FILES
            .iter()
            .map(|(_, _, bytes)| format!("\"{:016x}\"", super::fnv1a(bytes)))
            .collect()
    })
    .get(index)
    .map_or("\"0\"", String::as_str)
}

fn file(path: &str, headers: &HeaderMap) -> Response {
    if !assets::VENDOR_BUILT {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "The web map's MapLibre GL JS and basemap files were not present when this binary was built: \
             run `make web` (npm ci in web/) and rebuild.\n",
        )
            .into_response();
    }
    let Some((index, (_, ct, bytes))) = assets::FILES
        .iter()
        .enumerate()
        .find(|(_, (p, _, _))| *p == path)
    else {
        return (StatusCode::NOT_FOUND, "no such file in the web map\n").into_response();
    };
    let tag = etag_of(index);
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
    if let Ok(v) = HeaderValue::from_str(tag) {
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
    fn etags_are_fnv1a_of_the_content() {
        // Published FNV-1a 64-bit test vectors.
        assert_eq!(crate::serve::fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(crate::serve::fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let want = format!("\"{:016x}\"", crate::serve::fnv1a(assets::FILES[1].2));
        assert_eq!(etag_of(1), want);
        assert_ne!(etag_of(0), etag_of(1));
    }
}
