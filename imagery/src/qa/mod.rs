//! Geolocation QA: how far an image's features lie from where an independent land/sea mask
//! says they should be.
//!
//! - [`grid`]: regular lon/lat grids (GDAL geotransform conventions).
//! - [`offset`]: the shift + confidence estimator (gradient-magnitude ZNCC over a coastal band).
//!
//! Reading the mask itself (a GeoTIFF) is the storage crate's job; everything here is pure.

pub mod grid;
pub mod offset;

pub use grid::{km_per_degree, GeoGrid, Grid};
pub use offset::{estimate_offset, EstimatorParams, OffsetReport, METHOD};
