//! The imaging chain, pure: no files, sockets, threads or clocks inside.
//!
//! - [`msumr`]: Meteor-M MSU-MR LRPT image packets → per-channel swath images with nodata and
//!   per-line timestamps.
//! - [`time`]: instrument time of day → UTC.
//! - [`tle`], [`orbit`], [`geoloc`]: TLEs, SGP4 propagation, scan geometry ray-traced to the
//!   WGS84 ellipsoid, GCP grids.
//! - [`sun`]: solar elevation and azimuth of a scene.
//! - [`qa`]: geolocation QA — the shift between an image and an independent land/sea mask.
#![deny(clippy::indexing_slicing)]

mod error;
pub mod geoloc;
pub mod msumr;
pub mod orbit;
pub mod qa;
pub mod sun;
pub mod time;
pub mod tle;

pub use error::Error;
