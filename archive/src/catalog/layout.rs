//! Archive directory layout: where an item's files live under the archive root.
//!
//! `collections/<collection>/<YYYY>/<MM>/<DD>/<item_id>/` (UTC date of the item's
//! datetime). Pure functions, no I/O. Ids are validated so that a path built from them
//! can never leave the archive root: only `[A-Za-z0-9._-]`, 1..=[`MAX_ID_LEN`] bytes,
//! not `.`/`..`, and not starting with `.` (no hidden directories).

use std::path::PathBuf;

use crate::Error;

use chrono::{DateTime, Datelike, Utc};

/// Longest accepted collection or item id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Top-level directory under the archive root that holds collections.
pub const COLLECTIONS_DIR: &str = "collections";

/// Check one id (collection or item) against the archive rules.
pub fn validate_id(what: &'static str, id: &str) -> Result<(), Error> {
    if id.is_empty() {
        return Err(Error::IdEmpty { what });
    }
    if id.len() > MAX_ID_LEN {
        return Err(Error::IdTooLong {
            what,
            len: id.len(),
        });
    }
    if let Some(ch) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::IdBadChar {
            what,
            id: id.to_string(),
            ch,
        });
    }
    if id.starts_with('.') {
        return Err(Error::IdLeadingDot {
            what,
            id: id.to_string(),
        });
    }
    Ok(())
}

/// Directory of a collection, relative to the archive root.
pub fn collection_dir(collection: &str) -> Result<PathBuf, Error> {
    validate_id("collection", collection)?;
    Ok(PathBuf::from(COLLECTIONS_DIR).join(collection))
}

/// Directory of one item, relative to the archive root:
/// `collections/<collection>/<YYYY>/<MM>/<DD>/<item_id>`.
pub fn item_dir(
    collection: &str,
    item_id: &str,
    datetime: DateTime<Utc>,
) -> Result<PathBuf, Error> {
    validate_id("item", item_id)?;
    Ok(collection_dir(collection)?
        .join(format!("{:04}", datetime.year()))
        .join(format!("{:02}", datetime.month()))
        .join(format!("{:02}", datetime.day()))
        .join(item_id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2022, 12, 20, 20, 25, 11).unwrap()
    }

    #[test]
    fn builds_dated_path() {
        let p = item_dir("meteor-m2-msu-mr", "20221220T202511Z-40069", t()).unwrap();
        assert_eq!(
            p,
            PathBuf::from("collections/meteor-m2-msu-mr/2022/12/20/20221220T202511Z-40069")
        );
        assert!(p.is_relative());
    }

    #[test]
    fn pads_month_and_day() {
        let d = Utc.with_ymd_and_hms(2023, 1, 2, 23, 59, 59).unwrap();
        let p = item_dir("c", "i", d).unwrap();
        assert_eq!(p, PathBuf::from("collections/c/2023/01/02/i"));
    }

    #[test]
    fn rejects_traversal_and_separators() {
        for bad in [
            "..", ".", "../x", "a/b", "a\\b", ".hidden", "", "a b", "ä", "a:b",
        ] {
            assert!(item_dir("c", bad, t()).is_err(), "item id {bad:?}");
            assert!(item_dir(bad, "i", t()).is_err(), "collection id {bad:?}");
        }
        assert!(matches!(
            validate_id("item", "a/b"),
            Err(Error::IdBadChar { what: "item", ref id, ch: '/' }) if id == "a/b"
        ));
    }

    #[test]
    fn bounds_length() {
        let ok = "a".repeat(MAX_ID_LEN);
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert!(validate_id("item", &ok).is_ok());
        assert!(matches!(
            validate_id("item", &long),
            Err(Error::IdTooLong { what: "item", len }) if len == MAX_ID_LEN + 1
        ));
        assert!(validate_id("item", "a.b_c-D9..x").is_ok());
    }
}
