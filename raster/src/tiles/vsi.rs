//! Reading rasters from an S3-compatible object store through GDAL's `/vsis3/` virtual file
//! system (<https://gdal.org/user/virtual_file_systems.html#vsis3-aws-s3-files>): ranged GETs
//! of the blocks a tile needs, cached by GDAL (`/vsicurl/` region cache and the raster block
//! cache), never a download of the whole file.
//!
//! The store's settings (endpoint, region, path-style requests, credentials) are given to GDAL
//! as **path-specific options** (`VSISetPathSpecificOption`, GDAL ≥ 3.6): they apply only to
//! paths under the given prefix (`/vsis3/BUCKET`), from every thread, and are neither process
//! environment variables nor global configuration options, so nothing else in the process
//! (another bucket a user names, child processes) sees the credentials. This is the only file
//! of the tiles module allowed to use `unsafe`.
#![allow(unsafe_code)]

use std::ffi::CString;

use crate::Error;

/// Sets GDAL option `key` to `value` for every path under `prefix` (e.g. `/vsis3/bucket`),
/// replacing an earlier value. An error never contains `value` (it may be a secret).
pub fn set_path_option(prefix: &str, key: &str, value: &str) -> Result<(), Error> {
    let c = |what: &str, s: &str| {
        CString::new(s).map_err(|_| Error::GdalCall {
            call: "VSISetPathSpecificOption",
            message: format!("{what} of {key} contains a NUL byte"),
        })
    };
    let (p, k, v) = (c("prefix", prefix)?, c("key", key)?, c("value", value)?);
    // SAFETY: three valid NUL-terminated strings that outlive the call; GDAL copies them into
    // its own map (under its own mutex) and keeps no pointer to ours.
    unsafe { gdal_sys::VSISetPathSpecificOption(p.as_ptr(), k.as_ptr(), v.as_ptr()) };
    Ok(())
}

/// Forgets what GDAL's `/vsicurl/` caches (file sizes, existence, downloaded regions) hold for
/// paths under `prefix`. After a failed read (the store down) GDAL would otherwise keep
/// answering from its cache that the file cannot be read, after the store is back.
pub fn forget(prefix: &str) {
    let Ok(p) = CString::new(prefix) else {
        return;
    };
    // SAFETY: a valid NUL-terminated string that outlives the call; GDAL only reads it.
    unsafe { gdal_sys::VSICurlPartialClearCache(p.as_ptr()) };
}

/// The `/vsis3/` options of an S3-compatible store: `endpoint` as `http(s)://HOST[:PORT]`
/// (None: AWS S3 of `region`), path-style requests, and the credentials. Key names are GDAL's
/// (`AWS_S3_ENDPOINT`, `AWS_HTTPS`, `AWS_VIRTUAL_HOSTING`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), plus `GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`
/// so that opening a file does not list its "directory" (no side-car files live there).
pub fn s3_options(
    endpoint: Option<&str>,
    region: &str,
    key_id: &str,
    secret: &str,
    token: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut o: Vec<(&'static str, String)> = vec![
        ("AWS_REGION", region.to_owned()),
        ("AWS_VIRTUAL_HOSTING", "FALSE".into()),
        ("AWS_ACCESS_KEY_ID", key_id.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_owned()),
        ("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR".into()),
    ];
    if let Some(t) = token {
        o.push(("AWS_SESSION_TOKEN", t.to_owned()));
    }
    if let Some(e) = endpoint {
        let (https, rest) = match e.split_once("://") {
            Some((scheme, rest)) => (!scheme.eq_ignore_ascii_case("http"), rest),
            None => (true, e),
        };
        o.push(("AWS_S3_ENDPOINT", rest.trim_end_matches('/').to_owned()));
        o.push(("AWS_HTTPS", if https { "YES" } else { "NO" }.into()));
    }
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_scheme_becomes_aws_https() {
        let o = s3_options(Some("http://127.0.0.1:3900/"), "garage", "k", "s", None);
        let get = |k: &str| o.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("AWS_S3_ENDPOINT"), Some("127.0.0.1:3900"));
        assert_eq!(get("AWS_HTTPS"), Some("NO"));
        assert_eq!(get("AWS_VIRTUAL_HOSTING"), Some("FALSE"));
        assert_eq!(get("AWS_SESSION_TOKEN"), None);
        let o = s3_options(Some("https://s3.example.org"), "eu", "k", "s", Some("t"));
        let get = |k: &str| o.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("AWS_HTTPS"), Some("YES"));
        assert_eq!(get("AWS_SESSION_TOKEN"), Some("t"));
        let o = s3_options(None, "eu-west-1", "k", "s", None);
        assert!(o.iter().all(|(k, _)| *k != "AWS_S3_ENDPOINT"));
    }

    #[test]
    fn a_nul_byte_is_refused_without_showing_the_value() {
        let e = set_path_option("/vsis3/b", "AWS_SECRET_ACCESS_KEY", "se\0cret").unwrap_err();
        assert!(!e.to_string().contains("cret"), "{e}");
        set_path_option("/vsis3/test-bucket", "AWS_REGION", "garage").unwrap();
    }
}
