//! The archive catalog: a backend-neutral [`Catalog`] contract over STAC 1.1 items and
//! collections, its embedded SQLite implementation and a PostgreSQL/pgstac one, CQL2 filters,
//! footprint geometry and the archive directory layout. Items are built from rasters by the `raster` crate.
//!
//! STAC: <https://github.com/radiantearth/stac-spec/tree/v1.1.0>; models from the `stac`
//! crate (stac-utils/rustac).

pub(crate) mod cql;
pub mod geom;
pub mod layout;
pub mod pgstac;
pub mod sqlite;
pub mod store;

pub use pgstac::PgstacCatalog;
pub use sqlite::SqliteCatalog;
pub use store::{
    empty_extent_collection, local_href, AssetRef, Catalog, CatalogStats, DatetimeFilter,
    Direction, SearchPage, SearchParams, SortBy,
};
