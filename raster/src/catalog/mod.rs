//! STAC items from rasters: items and collections for pass products ([`item`]), raster import
//! with analytic + visual COGs ([`import`]) and the GDAL-read raster metadata they carry
//! ([`raster`]). The catalog contract and its backends are `archive::catalog`'s.

pub mod import;
pub mod item;
pub mod raster;

use archive::catalog::{geom, layout, store};
