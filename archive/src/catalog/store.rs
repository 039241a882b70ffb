//! Backend-neutral catalog API: the [`Catalog`] trait, search parameters (STAC API Item
//! Search, <https://github.com/radiantearth/stac-api-spec/tree/release/v1.0.0/item-search>),
//! result pages and the opaque keyset pagination token.
//!
//! Ordering: `sortby` (default `datetime` descending), then item id ascending, then collection
//! id ascending. Tokens encode the sort keys of the last item returned, so a page never uses
//! OFFSET and stays stable under inserts of items that sort before it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use stac::{Collection, Item};

use super::geom::Shape;
use crate::Error;

/// Default page size (STAC API default).
pub const DEFAULT_LIMIT: u32 = 10;
/// Largest page size accepted.
pub const MAX_LIMIT: u32 = 10_000;
/// Most entries accepted in `ids` or `collections`.
pub const MAX_LIST: usize = 10_000;

/// Where a catalogued asset belongs: what `/stac/assets/…` may serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRef {
    /// Collection id.
    pub collection: String,
    /// Item id.
    pub item: String,
    /// Asset key.
    pub key: String,
    /// The asset's media type (`type`), when given.
    pub media_type: Option<String>,
}

/// Counters of a catalog since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatalogStats {
    /// Writes (upserts, deletes) that failed or were refused.
    pub write_failures: u64,
    /// Times the database was reopened at its path after the file there changed.
    pub reopened: u64,
}

/// The archive-relative path of an asset href when it names a local file inside the archive:
/// `None` for URLs, absolute paths outside it, and paths with empty, `.` or `..` segments,
/// backslashes or control characters. One leading `/` is ignored (hrefs are stored relative).
pub fn local_href(href: &str) -> Option<&str> {
    let h = href.strip_prefix('/').unwrap_or(href);
    let plain = !h.is_empty()
        && !h.contains("://")
        && !h.chars().any(|c| c == '\\' || c.is_control())
        && h.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
    plain.then_some(h)
}

/// Parsed `datetime` filter: closed, half-open or open interval; an instant has
/// `start == end`. Both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DatetimeFilter {
    /// Lower bound, `None` = open.
    pub start: Option<DateTime<Utc>>,
    /// Upper bound, `None` = open.
    pub end: Option<DateTime<Utc>>,
}

impl DatetimeFilter {
    /// Parse `instant`, `a/b`, `../b`, `a/..`, `/b`, `a/` (RFC 3339 date-times).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let bad = |reason: String| Error::InvalidParams {
            param: "datetime",
            reason,
        };
        let one = |p: &str| -> Result<Option<DateTime<Utc>>, Error> {
            let p = p.trim();
            if p.is_empty() || p == ".." {
                return Ok(None);
            }
            DateTime::parse_from_rfc3339(p)
                .map(|d| Some(d.with_timezone(&Utc)))
                .map_err(|e| bad(format!("{p:?}: {e}")))
        };
        match s.split_once('/') {
            None => {
                let t = one(s)?.ok_or_else(|| bad("empty instant".into()))?;
                Ok(Self {
                    start: Some(t),
                    end: Some(t),
                })
            }
            Some((a, b)) => {
                let f = Self {
                    start: one(a)?,
                    end: one(b)?,
                };
                if f.start.is_none() && f.end.is_none() {
                    return Err(bad("both ends open".into()));
                }
                if let (Some(a), Some(b)) = (f.start, f.end) {
                    if a > b {
                        return Err(bad("start after end".into()));
                    }
                }
                Ok(f)
            }
        }
    }
}

/// Item search parameters (STAC API Item Search subset).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SearchParams {
    /// `[w, s, e, n]`; `w > e` crosses the antimeridian.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
    /// GeoJSON geometry; items whose footprint intersects it match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intersects: Option<serde_json::Value>,
    /// Time filter; items whose `[start_datetime, end_datetime]` (or `datetime`) overlaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datetime: Option<DatetimeFilter>,
    /// Only these collections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<String>>,
    /// Only these item ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    /// Page size (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Opaque token from [`SearchPage::next`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Sort order (STAC API Sort extension); empty = `datetime` descending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sortby: Vec<SortBy>,
    /// CQL2 filter (STAC API Filter extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<cql2::Expr>,
}

/// One key of `sortby`: a property name (`datetime`, `id`, `properties.eo:cloud_cover` …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortBy {
    /// Property name; a leading `properties.` is allowed.
    pub field: String,
    /// Direction (default ascending).
    #[serde(default)]
    pub direction: Direction,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Direction {
    /// Smallest first.
    #[default]
    #[serde(rename = "asc")]
    Asc,
    /// Largest first.
    #[serde(rename = "desc")]
    Desc,
}

impl Direction {
    /// Whether this is [`Direction::Desc`].
    pub fn descending(self) -> bool {
        self == Direction::Desc
    }
}

impl SearchParams {
    /// Effective page size, validated.
    pub fn effective_limit(&self) -> Result<u32, Error> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(0) => Err(Error::InvalidParams {
                param: "limit",
                reason: "must be at least 1".into(),
            }),
            Some(n) => Ok(n.min(MAX_LIMIT)),
        }
    }

    /// Validated spatial filter: bbox and intersects combined (both must hold).
    pub fn spatial_filters(&self) -> Result<Vec<Shape>, Error> {
        let mut out = Vec::new();
        if let Some(b) = self.bbox {
            let [w, s, e, n] = b;
            let ok_lon = |x: f64| (-180.0..=180.0).contains(&x);
            let ok_lat = |y: f64| (-90.0..=90.0).contains(&y);
            if !(ok_lon(w) && ok_lon(e) && ok_lat(s) && ok_lat(n) && s <= n) {
                return Err(Error::InvalidParams {
                    param: "bbox",
                    reason: format!("{b:?} is not [w,s,e,n] in degrees"),
                });
            }
            out.push(Shape::from_bbox(b));
        }
        if let Some(g) = &self.intersects {
            out.push(Shape::from_geojson(g)?);
        }
        Ok(out)
    }
}

/// One page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    /// Items in the search order.
    pub items: Vec<Item>,
    /// Total number of matching items when the backend knows it.
    pub matched: Option<u64>,
    /// Token for the next page, `None` on the last page.
    pub next: Option<String>,
}

/// A STAC catalog store. Blocking; call it from `spawn_blocking` in async code.
/// Implemented by [`super::sqlite::SqliteCatalog`] and [`super::pgstac::PgstacCatalog`].
pub trait Catalog: Send + Sync {
    /// Insert or replace a collection. An existing collection's extent is kept as the
    /// union with the new one.
    fn upsert_collection(&self, collection: &Collection) -> Result<(), Error>;
    /// One collection.
    fn collection(&self, id: &str) -> Result<Option<Collection>, Error>;
    /// All collections, by id.
    fn collections(&self) -> Result<Vec<Collection>, Error>;
    /// Insert or replace an item (its `collection` must exist) and widen the collection
    /// extent, in one transaction: this is the commit point of publishing.
    fn upsert_item(&self, item: &Item) -> Result<(), Error>;
    /// Insert a new item like [`Catalog::upsert_item`], refusing with
    /// [`Error::ItemExists`] when its id is taken in its collection. The default checks
    /// then upserts; a backend with transactions makes it one step.
    fn insert_item(&self, item: &Item) -> Result<(), Error> {
        let cid = item.collection.clone().unwrap_or_default();
        if self.item(&cid, &item.id)?.is_some() {
            return Err(Error::ItemExists {
                collection: cid,
                id: item.id.clone(),
            });
        }
        self.upsert_item(item)
    }
    /// One item.
    fn item(&self, collection: &str, id: &str) -> Result<Option<Item>, Error>;
    /// Delete an item; `true` if it existed. Collection extents are not shrunk.
    fn delete_item(&self, collection: &str, id: &str) -> Result<bool, Error>;
    /// Search items.
    fn search(&self, params: &SearchParams) -> Result<SearchPage, Error>;
    /// The item asset whose href is `href` (archive-relative, see [`local_href`]), if a
    /// catalogued item references it: the only files the asset routes serve.
    fn asset(&self, href: &str) -> Result<Option<AssetRef>, Error>;
    /// Checks that the store is still usable (for SQLite: the open database is still the file
    /// at its path; when the file is replaced or its directory returns, it is reopened there).
    fn check(&self) -> Result<(), Error> {
        Ok(())
    }
    /// Failure and recovery counters.
    fn stats(&self) -> CatalogStats {
        CatalogStats::default()
    }
}

impl std::fmt::Debug for dyn Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dyn Catalog")
    }
}

/// The error for an item a backend refuses.
pub(crate) fn invalid(item: &Item, reason: impl Into<String>) -> Error {
    Error::InvalidItem {
        id: item.id.clone(),
        reason: reason.into(),
    }
}

/// An item's sort key and time range.
pub(crate) struct ItemTimes {
    pub sort: DateTime<Utc>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// An item's times, checked the same way by every backend: a `datetime` or `start_datetime` is
/// required, and the end may not come before the start.
pub(crate) fn item_times(item: &Item) -> Result<ItemTimes, Error> {
    let p = &item.properties;
    let sort = p
        .datetime
        .or(p.start_datetime)
        .ok_or_else(|| invalid(item, "no datetime and no start_datetime"))?;
    let start = p.start_datetime.or(p.datetime).unwrap_or(sort);
    let end = p.end_datetime.or(p.datetime).unwrap_or(sort);
    if end < start {
        return Err(invalid(item, "end_datetime before start_datetime"));
    }
    Ok(ItemTimes { sort, start, end })
}

/// A collection with an empty extent, for callers that build collections themselves.
pub fn empty_extent_collection(id: &str, description: &str) -> Result<Collection, Error> {
    super::layout::validate_id("collection", id)?;
    let mut c = Collection::new(id, description);
    c.license = "other".into();
    c.extent.temporal.interval = vec![[None, None]];
    Ok(c)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parses_datetime_forms() {
        let i = DatetimeFilter::parse("2022-12-20T20:25:11Z").unwrap();
        assert_eq!(i.start, i.end);
        let c = DatetimeFilter::parse("2022-01-01T00:00:00Z/2022-02-01T00:00:00+01:00").unwrap();
        assert_eq!(c.end.unwrap().to_rfc3339(), "2022-01-31T23:00:00+00:00");
        assert!(DatetimeFilter::parse("../2022-01-01T00:00:00Z")
            .unwrap()
            .start
            .is_none());
        assert!(DatetimeFilter::parse("2022-01-01T00:00:00Z/")
            .unwrap()
            .end
            .is_none());
        assert!(DatetimeFilter::parse("/2022-01-01T00:00:00Z")
            .unwrap()
            .start
            .is_none());
        assert!(DatetimeFilter::parse("../..").is_err());
        assert!(DatetimeFilter::parse("2022-02-01T00:00:00Z/2022-01-01T00:00:00Z").is_err());
        assert!(DatetimeFilter::parse("yesterday").is_err());
    }

    #[test]
    fn local_hrefs() {
        assert_eq!(
            local_href("passes/a/products/ch1.tif"),
            Some("passes/a/products/ch1.tif")
        );
        assert_eq!(
            local_href("/collections/c/x.tif"),
            Some("collections/c/x.tif")
        );
        for bad in [
            "",
            "/",
            "https://example.com/x.tif",
            "a/../catalog.sqlite",
            "../x",
            "a/./b",
            "a//b",
            "a/b/",
            "//etc/passwd",
            "a\\..\\b",
            "a/b\0",
        ] {
            assert_eq!(local_href(bad), None, "{bad:?}");
        }
    }
}
