//! The station's STAC catalog (`ARCHIVE/catalog.sqlite`): pass products registered at LOS,
//! rasters imported with `downlink archive add`.
//!
//! Asset hrefs are stored relative to the archive root (`passes/ID/products/ch1.tif`,
//! `collections/…`); the STAC API turns them into absolute URLs under `/stac/assets/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use storage::catalog::item::{
    collection_for_listing, empty_extent_collection, item_for_product, PassListing,
};
use storage::catalog::raster::{import_raster, write_visual_cog, COG_MEDIA_TYPE};
use storage::catalog::{Catalog, SqliteCatalog};

/// The catalog file of an archive.
pub fn path(archive: &Path) -> PathBuf {
    archive.join("catalog.sqlite")
}

/// Opens (creating) the archive's catalog.
pub fn open(archive: &Path) -> Result<SqliteCatalog> {
    std::fs::create_dir_all(archive).with_context(|| format!("creating {}", archive.display()))?;
    let p = path(archive);
    SqliteCatalog::open(&p).with_context(|| format!("opening the catalog {}", p.display()))
}

fn relative(archive: &Path, p: &Path) -> String {
    p.strip_prefix(archive)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// The web-optimized visual COG of a product set's composite (map tiles).
pub const VISUAL: &str = "composite.web.tif";

/// Writes [`VISUAL`] from `dir/composite.tif` (none without a composite): a uniquely named
/// temporary file, fsynced, renamed into place, the directory fsynced. The daemon calls it on
/// the staging directory, so the visual is part of the set published at once.
pub fn write_visual(dir: &Path) -> Result<Option<PathBuf>> {
    let composite = dir.join("composite.tif");
    if !composite.is_file() {
        return Ok(None);
    }
    let visual = dir.join(VISUAL);
    let tmp = dir.join(format!(
        ".composite.web.tmp-{}.tif",
        storage::unique_suffix()
    ));
    let publish = || -> Result<()> {
        write_visual_cog(&composite, &tmp)
            .with_context(|| format!("visual COG of {}", composite.display()))?;
        storage::sync_file(&tmp)?;
        std::fs::rename(&tmp, &visual)
            .with_context(|| format!("renaming {} onto {}", tmp.display(), visual.display()))?;
        storage::sync_dir(&visual)?;
        Ok(())
    };
    publish().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;
    Ok(Some(visual))
}

/// Publishes a pass's products (`products_dir/products.json`, complete): the STAC Item — the
/// catalog upsert is the commit point; registering a pass again replaces its item. A set made
/// before the visual COG was part of it gets one here.
pub fn register_pass(catalog: &dyn Catalog, archive: &Path, products_dir: &Path) -> Result<String> {
    let listing_path = products_dir.join("products.json");
    let text = std::fs::read_to_string(&listing_path)
        .with_context(|| format!("reading {}", listing_path.display()))?;
    let mut listing = PassListing::from_json(&text)?;
    for p in &mut listing.products {
        p.path = relative(archive, Path::new(&p.path));
    }
    let mut hrefs = BTreeMap::new();
    hrefs.insert("products".to_owned(), relative(archive, &listing_path));
    let mut item = item_for_product(&listing, &hrefs)?;
    let visual = products_dir.join(VISUAL);
    if !visual.is_file() {
        write_visual(products_dir)?;
    }
    if visual.is_file() {
        let mut a = stac::Asset::new(relative(archive, &visual)).role("visual");
        a.r#type = Some(COG_MEDIA_TYPE.to_owned());
        a.title = Some("composite, 8-bit web mercator (map tiles)".into());
        item.assets.insert("visual".into(), a);
    }
    let cid = item
        .collection
        .clone()
        .context("the pass item has no collection")?;
    if catalog.collection(&cid)?.is_none() {
        catalog.upsert_collection(&collection_for_listing(&listing)?)?;
    }
    catalog.upsert_item(&item)?;
    Ok(item.id)
}

/// `downlink archive add`: imports a georeferenced raster as an item of `collection`
/// (created if missing).
pub fn add_raster(
    archive: &Path,
    file: &Path,
    collection: &str,
    datetime: DateTime<Utc>,
) -> Result<stac::Item> {
    let catalog = open(archive)?;
    if catalog.collection(collection)?.is_none() {
        catalog.upsert_collection(&empty_extent_collection(
            collection,
            &format!("Rasters imported into this Downlink station's archive ({collection})"),
        )?)?;
    }
    Ok(import_raster(
        &catalog, archive, file, collection, datetime,
    )?)
}

/// How often the daemon checks that the catalog database is still the file at its path.
pub const CHECK_PERIOD: std::time::Duration = std::time::Duration::from_secs(2);

/// Watches the daemon's catalog until the daemon stops: the `catalog` health component is
/// degraded while the catalog is unavailable (not opened at start, or its archive directory
/// gone: writes are refused and counted meanwhile) and cleared once it works again (the
/// database reopened at its path). Logs once per change.
pub async fn watch(shared: std::sync::Weak<crate::serve::Shared>) {
    loop {
        tokio::time::sleep(CHECK_PERIOD).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.stopping() {
            return;
        }
        let problem = match shared.catalog.clone() {
            None => Some("the catalog could not be opened at start (see the log)".to_owned()),
            Some(cat) => match tokio::task::spawn_blocking(move || cat.check()).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(format!("catalog check failed: {e}")),
            },
        };
        match problem {
            Some(reason) => {
                if shared.health.set("catalog", reason.clone()) {
                    tracing::error!(reason = %reason, "catalog unavailable: products are not catalogued and the STAC API answers 503 until it returns");
                }
            }
            None => {
                if shared.health.clear("catalog") {
                    tracing::info!("catalog available again");
                }
            }
        }
    }
}
