//! `downlink archive`: bring rasters into the station's archive and catalog.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use downlink::archive_catalog;
use downlink::config::Config;

/// Arguments of `downlink archive`.
#[derive(Args, Debug)]
pub(crate) struct ArchiveArgs {
    #[command(subcommand)]
    action: ArchiveAction,
    /// Daemon configuration whose archive to use.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Archive directory, instead of --config (default: var/downlink, the embedded default's).
    #[arg(long, global = true, conflicts_with = "config")]
    archive: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum ArchiveAction {
    /// Import a georeferenced raster (any GDAL format and CRS: a CBERS-4A or Sentinel-2 scene, a
    /// drone orthomosaic) as a STAC item: a lossless analytic COG in its own CRS plus a visual
    /// web-optimized COG for map tiles. Prints the item.
    Add {
        /// The raster.
        file: PathBuf,
        /// Collection (created if missing): letters, digits, `.`, `_`, `-`.
        #[arg(long)]
        collection: String,
        /// Acquisition time, RFC 3339 (e.g. 2024-08-01T13:45:00Z).
        #[arg(long)]
        datetime: String,
    },
}

/// `downlink archive …`.
pub(crate) fn run(args: &ArchiveArgs) -> Result<()> {
    let archive = match (&args.config, &args.archive) {
        (Some(c), _) => Config::load(c)?.archive.path,
        (None, Some(a)) => a.clone(),
        (None, None) => PathBuf::from("var/downlink"),
    };
    match &args.action {
        ArchiveAction::Add {
            file,
            collection,
            datetime,
        } => {
            let dt = chrono::DateTime::parse_from_rfc3339(datetime)
                .with_context(|| format!("--datetime must be RFC 3339, got {datetime:?}"))?
                .with_timezone(&chrono::Utc);
            let item = archive_catalog::add_raster(&archive, file, collection, dt)
                .with_context(|| format!("importing {}", file.display()))?;
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &item)?;
            writeln!(out)?;
        }
    }
    Ok(())
}
