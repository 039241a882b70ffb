//! `downlink archive`: bring rasters into the station's archive and catalog.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use downlink::config::Config;
use downlink::{archive_catalog, catalog_backend};
use raster::catalog::import::ImportSpec;

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
    /// Import georeferenced rasters (any GDAL format and CRS: a CBERS-4A or Sentinel-2 scene,
    /// a drone orthomosaic) as ONE STAC item: one lossless single-band analytic COG per band in
    /// its own CRS, a visual web-optimized COG for map tiles and a thumbnail. Prints the item.
    /// An existing item id is refused unless --replace.
    Add {
        /// The raster(s); several files make one item (e.g. a red and a NIR band file).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Collection (created if missing): letters, digits, `.`, `_`, `-`.
        #[arg(long)]
        collection: String,
        /// Acquisition time, RFC 3339 (e.g. 2024-08-01T13:45:00Z).
        #[arg(long)]
        datetime: String,
        /// eo:common_name of each band, in order across the files (e.g. `red,nir`); without it,
        /// names come from the GeoTIFF band descriptions (or the RGB colour interpretation).
        #[arg(long, value_delimiter = ',')]
        bands: Option<Vec<String>>,
        /// Item id (default: COLLECTION-YYYYMMDDTHHMMSSZ-STEM of the first file).
        #[arg(long)]
        id: Option<String>,
        /// Replace an existing item with this id; its old files are removed once the new item
        /// is committed.
        #[arg(long)]
        replace: bool,
    },
    /// Catalogue a recorded pass with its real time, platform, link quality, geolocation QA and
    /// sun angles, as the daemon does at LOS: DIR is the output directory of `downlink image`
    /// (with products.json) or a pass directory. A set outside the archive is copied into
    /// passes/PASS_ID/products. Prints the item. An existing item is refused unless --replace.
    AddPass {
        /// The product set's directory.
        dir: PathBuf,
        /// Replace an existing item of the same pass id; its old files are removed once the new
        /// item is committed.
        #[arg(long)]
        replace: bool,
    },
    /// List catalogued items (newest first): collection, id, datetime, assets.
    List {
        /// Only this collection.
        #[arg(long)]
        collection: Option<String>,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove an item: its catalog entry first, then its imported files (a received pass's
    /// files under passes/ stay).
    Remove {
        /// Item id.
        id: String,
        /// The item's collection (needed when several collections have this id).
        #[arg(long)]
        collection: Option<String>,
    },
}

/// Tells on stderr what a replacement removed, and which old files it could not.
fn report_replaced(done: &raster::catalog::import::Imported) {
    let mut err = std::io::stderr().lock();
    if done.replaced.is_some() {
        let _ = writeln!(
            err,
            "downlink: replaced item {:?}: {} old file(s) removed",
            done.item.id,
            done.removed.len()
        );
    }
    for (p, e) in &done.not_removed {
        let _ = writeln!(
            err,
            "downlink: warning: old file {} not removed: {e}",
            p.display()
        );
    }
}

/// `downlink archive …`.
pub(crate) fn run(args: &ArchiveArgs) -> Result<()> {
    // The configured catalog (pgstac when `[catalog] url` is set), else the archive's SQLite.
    let (archive, catalog_cfg) = match (&args.config, &args.archive) {
        (Some(c), _) => {
            let cfg = Config::load(c)?;
            (cfg.archive.path, cfg.catalog)
        }
        (None, Some(a)) => (a.clone(), Default::default()),
        (None, None) => (PathBuf::from("var/downlink"), Default::default()),
    };
    let catalog = catalog_backend::open(&catalog_cfg, &archive)?;
    let catalog = catalog.as_ref();
    let mut out = std::io::stdout().lock();
    match &args.action {
        ArchiveAction::Add {
            files,
            collection,
            datetime,
            bands,
            id,
            replace,
        } => {
            let dt = chrono::DateTime::parse_from_rfc3339(datetime)
                .with_context(|| format!("--datetime must be RFC 3339, got {datetime:?}"))?
                .with_timezone(&chrono::Utc);
            let spec = ImportSpec {
                files,
                collection,
                datetime: dt,
                bands: bands.as_deref(),
                id: id.as_deref(),
                replace: *replace,
            };
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let done = archive_catalog::add_rasters(catalog, &archive, &spec)
                .with_context(|| format!("importing {}", names.join(" ")))?;
            report_replaced(&done);
            serde_json::to_writer_pretty(&mut out, &done.item)?;
            writeln!(out)?;
        }
        ArchiveAction::AddPass { dir, replace } => {
            let done = archive_catalog::add_pass(catalog, &archive, dir, *replace)
                .with_context(|| format!("cataloguing the pass in {}", dir.display()))?;
            report_replaced(&done);
            serde_json::to_writer_pretty(&mut out, &done.item)?;
            writeln!(out)?;
        }
        ArchiveAction::List { collection, json } => {
            let items = archive_catalog::list(catalog, collection.as_deref())?;
            if *json {
                serde_json::to_writer_pretty(&mut out, &items)?;
                writeln!(out)?;
            } else {
                writeln!(out, "COLLECTION\tID\tDATETIME\tASSETS")?;
                for i in items {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}",
                        i.collection,
                        i.id,
                        i.datetime.unwrap_or_default(),
                        i.assets.join(",")
                    )?;
                }
            }
        }
        ArchiveAction::Remove { id, collection } => {
            let r = archive_catalog::remove(catalog, &archive, id, collection.as_deref())?;
            for (p, e) in &r.not_removed {
                let _ = writeln!(
                    std::io::stderr(),
                    "downlink: warning: file {} not removed: {e}",
                    p.display()
                );
            }
            writeln!(
                out,
                "removed item {:?} of collection {:?} ({} file(s))",
                r.id,
                r.collection,
                r.files.len()
            )?;
        }
    }
    Ok(())
}
