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
    /// Move the local archive (raw passes, product files, imported rasters, its SQLite
    /// catalog's items and collections) into an object store and the target catalog, as a
    /// station configured with that store would have published them: resumable (manifests;
    /// objects already verified are not sent again) and verified (per pass: objects, bytes and
    /// checksums; the target catalog's items). Local data is never deleted. Prints a summary;
    /// exits non-zero listing every mismatch. S3 settings and credentials come from
    /// [archive.s3] of --config and the environment, as for `serve`.
    Migrate {
        /// The store, s3://BUCKET[/PREFIX] (default: archive.store of --config).
        #[arg(long)]
        to: Option<String>,
        /// The target catalog, postgresql://… (default: [catalog] url of --config, else the
        /// archive's SQLite catalog).
        #[arg(long)]
        catalog: Option<String>,
        /// Only say what would be uploaded and published.
        #[arg(long)]
        dry_run: bool,
        /// Upload nothing: verify the store and the target catalog against the archive.
        #[arg(long, conflicts_with = "dry_run")]
        verify_only: bool,
        /// Print the summary as JSON.
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
    if let ArchiveAction::Migrate {
        to,
        catalog,
        dry_run,
        verify_only,
        json,
    } = &args.action
    {
        return migrate(
            args,
            to.as_deref(),
            catalog.as_deref(),
            *dry_run,
            *verify_only,
            *json,
        );
    }
    // The configured catalog (pgstac when `[catalog] url` is set), else the archive's SQLite.
    // With --config, its object store too: an imported raster is uploaded there.
    let (archive, catalog_cfg, archive_cfg) = match (&args.config, &args.archive) {
        (Some(c), _) => {
            let cfg = Config::load(c)?;
            (cfg.archive.path.clone(), cfg.catalog, Some(cfg.archive))
        }
        (None, Some(a)) => (a.clone(), Default::default(), None),
        (None, None) => (PathBuf::from("var/downlink"), Default::default(), None),
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
            let uploaded = match &archive_cfg {
                Some(a) => {
                    downlink::migrate::publish_item(a, catalog, &done.item).with_context(|| {
                        format!(
                            "item {} is imported and catalogued in {}, but not uploaded to the \
                             object store (its assets are served by this station until \
                             `downlink archive migrate` uploads it)",
                            done.item.id,
                            archive.display()
                        )
                    })?
                }
                None => None,
            };
            if let Some(u) = &uploaded {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "downlink: uploaded to {}: {} object(s), {} bytes ({} already there); \
                     published with its s3:// alternates",
                    u.store,
                    u.uploaded_objects,
                    u.uploaded_bytes,
                    u.skipped_objects
                );
            }
            let item = uploaded.as_ref().map_or(&done.item, |u| &u.item);
            serde_json::to_writer_pretty(&mut out, item)?;
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
        ArchiveAction::Migrate { .. } => {}
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

/// The configuration `migrate` works with: --config (or an archive directory alone), with
/// `archive.store` set to --to and `catalog.url` to --catalog, validated as `serve` would.
fn migrate_config(args: &ArchiveArgs, to: Option<&str>, catalog: Option<&str>) -> Result<Config> {
    let (mut table, source) = match &args.config {
        Some(c) => {
            let text =
                std::fs::read_to_string(c).with_context(|| format!("reading {}", c.display()))?;
            let table: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing {}", c.display()))?;
            (table, c.clone())
        }
        None => {
            let dir = args
                .archive
                .clone()
                .unwrap_or_else(|| PathBuf::from("var/downlink"));
            let mut archive = toml::Table::new();
            archive.insert("path".into(), dir.to_string_lossy().into_owned().into());
            let mut table = toml::Table::new();
            table.insert("archive".into(), archive.into());
            // Relative paths resolve against the working directory.
            (table, std::env::current_dir()?.join("(command line)"))
        }
    };
    let mut set = |section: &str, key: &str, value: &str| {
        let entry = table
            .entry(section.to_owned())
            .or_insert_with(|| toml::Table::new().into());
        if let Some(t) = entry.as_table_mut() {
            t.insert(key.to_owned(), value.into());
        }
    };
    if let Some(to) = to {
        set("archive", "store", to);
    }
    if let Some(url) = catalog {
        set("catalog", "url", url);
    }
    let text = toml::to_string(&table)?;
    Ok(Config::from_toml_str(&text, &source)?)
}

/// `downlink archive migrate`.
fn migrate(
    args: &ArchiveArgs,
    to: Option<&str>,
    catalog: Option<&str>,
    dry_run: bool,
    verify_only: bool,
    json: bool,
) -> Result<()> {
    let cfg = migrate_config(args, to, catalog)?;
    let archive = &cfg.archive.path;
    let sqlite = downlink::archive_catalog::path(archive);
    let source = if sqlite.is_file() {
        Some(
            archive::catalog::SqliteCatalog::open(&sqlite)
                .with_context(|| format!("opening the archive's catalog {}", sqlite.display()))?,
        )
    } else {
        None
    };
    let target = catalog_backend::open(&cfg.catalog, archive)?;
    let catalog_name = match &cfg.catalog.url {
        Some(u) => u.to_string(),
        None => format!("sqlite {}", sqlite.display()),
    };
    let req = downlink::migrate::Request {
        archive: &cfg.archive,
        source: source.as_ref().map(|s| s as &dyn archive::catalog::Catalog),
        catalog: target.as_ref(),
        catalog_name,
        dry_run,
        verify_only,
    };
    let mut progress = |line: &str| {
        let _ = writeln!(std::io::stderr(), "downlink: migrate: {line}");
    };
    let s = downlink::migrate::run(&req, &mut progress)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &s)?;
        writeln!(out)?;
    } else {
        let what = if dry_run {
            "would upload"
        } else if verify_only {
            "verify only; not yet uploaded"
        } else {
            "uploaded"
        };
        writeln!(out, "store        {}", s.store)?;
        writeln!(out, "catalog      {}", s.catalog)?;
        writeln!(
            out,
            "passes       {} ({} not closed, left out)",
            s.passes,
            s.passes_not_ready.len()
        )?;
        writeln!(
            out,
            "item files   {} item(s) with files outside passes/",
            s.item_file_sets
        )?;
        writeln!(out, "objects      {} ({} bytes)", s.objects, s.bytes)?;
        writeln!(
            out,
            "  {what} {} ({} bytes); skipped, already verified {} ({} bytes); uploaded again {}",
            s.uploaded_objects,
            s.uploaded_bytes,
            s.skipped_objects,
            s.skipped_bytes,
            s.repaired_objects
        )?;
        writeln!(
            out,
            "items        {} in {} collection(s): {} written, {} already published",
            s.items, s.collections, s.items_upserted, s.items_unchanged
        )?;
        if let Some(v) = &s.verification {
            writeln!(
                out,
                "verified     {} object(s), {} bytes ({} by ETag, the others by SHA-256); {} item(s) in the target catalog ({} not from this archive); {} mismatch(es)",
                v.objects, v.bytes, v.by_etag, v.target_items, v.other_items, v.mismatches.len()
            )?;
        }
    }
    drop(out);
    let mut err = std::io::stderr().lock();
    for p in &s.problems {
        let _ = writeln!(err, "downlink: problem: {p}");
    }
    let mismatches = s.verification.as_ref().map_or(0, |v| v.mismatches.len());
    for m in s.verification.iter().flat_map(|v| &v.mismatches) {
        let _ = writeln!(err, "downlink: mismatch: {m}");
    }
    if dry_run && s.problems.is_empty() {
        return Ok(());
    }
    if !s.ok() {
        anyhow::bail!(
            "the migration to {} is not verified: {mismatches} mismatch(es), {} problem(s) (listed above)",
            s.store,
            s.problems.len()
        );
    }
    Ok(())
}
