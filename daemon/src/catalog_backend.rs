//! Which catalog the daemon uses (`[catalog]`): SQLite in the archive (the default) or a
//! PostgreSQL database with pgstac (`catalog.url`), and `downlink validate`'s check of the
//! latter (reachable, pgstac at [`PGSTAC_VERSION`], the user's rights).
//!
//! The password comes from `catalog.password_file`, else `PGPASSWORD`, else the URL; logs
//! and messages show the URL with its password masked.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Context, Error, Result};
use archive::catalog::pgstac::{parse_url, ConnectConfig, PGSTAC_VERSION};
use archive::catalog::{Catalog, PgstacCatalog};
use config::CatalogConfig;

/// The connection settings of `catalog.url` with the configured password, if it is set.
fn pg_config(cfg: &CatalogConfig) -> Result<Option<(ConnectConfig, String)>> {
    let Some(url) = &cfg.url else {
        return Ok(None);
    };
    let password = cfg
        .password()
        .map_err(|e| Error::CatalogConfig(format!("catalog.password_file: {e}")))?;
    let pc = parse_url(url.expose(), password.as_deref())
        .map_err(|e| Error::CatalogConfig(format!("catalog.url {url}: {e}")))?;
    Ok(Some((pc, url.to_string())))
}

/// Opens the configured catalog: pgstac at `catalog.url`, else `ARCHIVE/catalog.sqlite`.
pub fn open(cfg: &CatalogConfig, archive: &Path) -> Result<Arc<dyn Catalog>> {
    match pg_config(cfg)? {
        Some((pc, shown)) => {
            let cat = match PgstacCatalog::open(pc.clone()) {
                Ok(cat) => cat,
                // Down at start (PostgreSQL starting after us): the catalog is degraded until
                // the database is reachable and verified (the health watcher's check).
                Err(e) if e.is_unavailable() => {
                    tracing::error!(url = %shown, error = %e, "catalog: pgstac unreachable at start; retrying");
                    PgstacCatalog::unconnected(pc)
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("opening the pgstac catalog {shown}"))
                }
            };
            tracing::info!(url = %shown, pgstac = PGSTAC_VERSION, "catalog: pgstac");
            Ok(Arc::new(cat))
        }
        None => Ok(Arc::new(crate::archive_catalog::open(archive)?)),
    }
}

/// `validate`'s check: one line describing the catalog, or why it cannot be used.
pub fn check(cfg: &CatalogConfig, archive: &Path) -> Result<String> {
    let Some((pc, shown)) = pg_config(cfg)? else {
        return Ok(format!(
            "sqlite {}",
            crate::archive_catalog::path(archive).display()
        ));
    };
    let cat = PgstacCatalog::unconnected(pc);
    let problems = cat
        .verify()
        .with_context(|| format!("catalog.url {shown}: the database cannot be reached"))?;
    if !problems.is_empty() {
        return Err(Error::CatalogConfig(format!(
            "catalog.url {shown}: {}",
            problems.join("; ")
        )));
    }
    Ok(format!("pgstac {PGSTAC_VERSION} at {shown}"))
}
