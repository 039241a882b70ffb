//! # raster — everything Downlink does through GDAL
//!
//! - [`products`]: the pass products (raw PNG, GCP/geolocation GeoTIFFs, warped analytic and
//!   visual COGs, NDVI and composites) and their writers;
//! - [`scene`]: the scene pipeline from an archived pass to those products (MSU-MR decoding,
//!   geolocation, QA, warping);
//! - [`catalog`]: STAC items built from products, and raster import (`downlink archive add`);
//! - [`tiles`]: the tile renderer behind XYZ/WMTS/WMS;
//! - [`change`]: vegetation-loss change alerts over catalogued rasters;
//! - [`landmask`]: the land/sea mask of the geolocation check.
//!
//! Files are published durably through the `archive` crate's atomic writers; the catalog
//! contract and its SQLite backend are the `archive` crate's too.

pub mod catalog;
pub mod change;
mod error;
pub mod landmask;
pub mod products;
pub mod scene;
pub mod tiles;

pub use archive::{sync_dir, sync_file, unique_suffix, write_atomic};
pub use error::{Error, Result};
