//! The archive catalog: STAC 1.1 items and collections for pass products and imported rasters,
//! a backend-neutral [`Catalog`] trait with an embedded SQLite implementation and a
//! PostgreSQL/pgstac one, the archive
//! directory layout and GDAL-based raster import (analytic + visual COGs).
//!
//! STAC: <https://github.com/radiantearth/stac-spec/tree/v1.1.0>; models from the `stac`
//! crate (stac-utils/rustac).

pub(crate) mod cql;
pub mod geom;
pub mod import;
pub mod item;
pub mod layout;
pub mod pgstac;
pub mod raster;
pub mod sqlite;
pub mod store;

pub use pgstac::PgstacCatalog;
pub use sqlite::SqliteCatalog;
pub use store::{
    local_href, AssetRef, Catalog, CatalogError, CatalogStats, DatetimeFilter, Direction,
    SearchPage, SearchParams, SortBy,
};
