//! The `downlink` daemon's library: configuration today; ingest, passes and the archive service
//! build on it. The binary (`src/main.rs`) is a thin command-line shell over this crate.

pub mod alerts;
pub mod archive_catalog;
pub mod config;
pub mod imaging;
pub mod replay;
pub mod serve;
pub mod tle_store;
