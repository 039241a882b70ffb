//! The `downlink` daemon's library: the `serve` shell (ingest, passes, products, HTTP APIs),
//! change alerts, the archive and TLE commands; the configuration is the `config` crate,
//! re-exported here. The binary (`src/main.rs`) is a thin command-line shell over this crate.

pub mod alerts;
pub mod archive_catalog;
pub mod catalog_backend;
pub mod error;
pub mod lockfile;
pub use ::config;
pub mod merge;
pub mod migrate;
pub mod replay;
pub mod serve;

pub use error::{Error, Result};

#[cfg(test)]
mod tests {
    /// The configuration checks collection ids with the archive's own rule, without GDAL.
    #[test]
    fn config_and_archive_agree_on_ids() {
        let long = "a".repeat(archive::catalog::layout::MAX_ID_LEN);
        let longer = format!("{long}b");
        for id in [
            "muri-ag", "a.b_c-9", "", ".hidden", "a/b", "a b", "é", "..", "x..y", &long, &longer,
        ] {
            assert_eq!(
                config::check_archive_id(id).is_ok(),
                archive::catalog::layout::validate_id("collection", id).is_ok(),
                "{id:?}"
            );
        }
        assert_eq!(
            config::ARCHIVE_ID_MAX_LEN,
            archive::catalog::layout::MAX_ID_LEN
        );
    }
}
