//! `downlink alerts run`: vegetation-loss change alerts over a catalog collection, on demand.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use downlink::alerts;
use downlink::config::{AlertsConfig, Config};

/// Arguments of `downlink alerts`.
#[derive(Args, Debug)]
pub(crate) struct AlertsArgs {
    #[command(subcommand)]
    action: AlertsAction,
}

#[derive(Subcommand, Debug)]
enum AlertsAction {
    /// Compare the collection's acquisitions in time order, publish the alerts item in
    /// `alerts-<collection>` and print its GeoJSON FeatureCollection. Settings come from the
    /// collection's [[alerts]] table in --config, overridden by the flags.
    Run {
        /// Source collection.
        #[arg(long)]
        collection: String,
        /// Mask polygons (GeoJSON or any OGR vector file): loss only inside them.
        #[arg(long)]
        mask: Option<PathBuf>,
        /// Loss where NDVI - baseline <= -drop (default 0.3).
        #[arg(long)]
        drop: Option<f64>,
        /// Minimum mapping unit, hectares (default 0.5).
        #[arg(long)]
        mmu_ha: Option<f64>,
        /// Only acquisitions at or after this time (RFC 3339) raise alerts; earlier ones are
        /// baseline only.
        #[arg(long)]
        since: Option<String>,
        /// Red band as ASSET or ASSET:BAND (default: eo:common_name "red").
        #[arg(long)]
        red: Option<String>,
        /// NIR band as ASSET or ASSET:BAND (default: eo:common_name "nir").
        #[arg(long)]
        nir: Option<String>,
        /// Daemon configuration whose archive and [[alerts]] settings to use.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Archive directory, instead of --config (default: var/downlink).
        #[arg(long, conflicts_with = "config")]
        archive: Option<PathBuf>,
    },
}

/// `downlink alerts …`.
/// GDAL block cache of `downlink alerts run` (MB) unless `GDAL_CACHEMAX` is set.
const ALERTS_GDAL_CACHEMAX: &str = "256";

pub(crate) fn run(args: &AlertsArgs) -> Result<()> {
    let AlertsAction::Run {
        collection,
        mask,
        drop,
        mmu_ha,
        since,
        red,
        nir,
        config,
        archive,
    } = &args.action;
    let (archive, configured, catalog_cfg) = match (config, archive) {
        (Some(c), _) => {
            let cfg = Config::load(c)?;
            let a = cfg.alerts.into_iter().find(|a| &a.collection == collection);
            (cfg.archive.path, a, cfg.catalog)
        }
        (None, Some(a)) => (a.clone(), None, Default::default()),
        (None, None) => (PathBuf::from("var/downlink"), None, Default::default()),
    };
    let mut cfg = configured.unwrap_or(AlertsConfig {
        collection: collection.clone(),
        mask: None,
        drop: 0.3,
        mmu_ha: 0.5,
        baseline_looks: 3,
        baseline_percentile: 50.0,
        cloud_test: true,
        red: None,
        nir: None,
    });
    if let Some(m) = mask {
        cfg.mask = Some(m.clone());
    }
    if let Some(d) = drop {
        anyhow::ensure!(*d > 0.0 && *d <= 2.0, "--drop must be in (0, 2], got {d}");
        cfg.drop = *d;
    }
    if let Some(m) = mmu_ha {
        anyhow::ensure!(*m >= 0.0 && m.is_finite(), "--mmu-ha must be ≥ 0, got {m}");
        cfg.mmu_ha = *m;
    }
    if red.is_some() {
        cfg.red.clone_from(red);
    }
    if nir.is_some() {
        cfg.nir.clone_from(nir);
    }
    let since = since
        .as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| d.with_timezone(&chrono::Utc))
                .with_context(|| format!("--since must be RFC 3339, got {s:?}"))
        })
        .transpose()?;
    raster::change::cap_block_cache(ALERTS_GDAL_CACHEMAX).context("setting GDAL_CACHEMAX")?;
    // The configured catalog (pgstac when `[catalog] url` is set), else the archive's SQLite.
    let catalog = downlink::catalog_backend::open(&catalog_cfg, &archive)?;
    let published = alerts::run(
        catalog.as_ref(),
        &archive,
        &cfg,
        &alerts::RunOptions { since },
    )
    .map_err(|e| anyhow::anyhow!("alerts over {:?}: {e}", cfg.collection))?;
    for w in &published.warnings {
        tracing::warn!("{w}");
    }
    // The published file as it is: the features are not held in memory twice.
    let mut file = std::fs::File::open(&published.geojson)
        .with_context(|| format!("reading {}", published.geojson.display()))?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut file, &mut out)?;
    out.flush()?;
    Ok(())
}
