//! The station's STAC catalog (`ARCHIVE/catalog.sqlite`): pass products registered at LOS,
//! rasters imported with `downlink archive add`.
//!
//! Asset hrefs are stored relative to the archive root (`passes/ID/products/ch1.tif`,
//! `collections/…`); the STAC API turns them into absolute URLs under `/stac/assets/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use archive::catalog::layout::COLLECTIONS_DIR;
use archive::catalog::{Catalog, SearchParams, SqliteCatalog};
use raster::catalog::import::{import_item, remove_item_files, ImportSpec, Imported};
use raster::catalog::item::{
    collection_for_listing, collection_id, empty_extent_collection, item_for_product, PassListing,
};
use raster::catalog::raster::{write_visual_cog, COG_MEDIA_TYPE};

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
        archive::unique_suffix()
    ));
    let publish = || -> Result<()> {
        write_visual_cog(&composite, &tmp)
            .with_context(|| format!("visual COG of {}", composite.display()))?;
        archive::sync_file(&tmp)?;
        std::fs::rename(&tmp, &visual)
            .with_context(|| format!("renaming {} onto {}", tmp.display(), visual.display()))?;
        archive::sync_dir(&visual)?;
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
    let item = pass_item(catalog, archive, products_dir)?;
    catalog.upsert_item(&item)?;
    Ok(item.id)
}

/// The STAC item of a pass's complete product set (its collection created if missing; a
/// visual COG made if the set has none), not yet committed.
fn pass_item(catalog: &dyn Catalog, archive: &Path, products_dir: &Path) -> Result<stac::Item> {
    let listing_path = products_dir.join("products.json");
    let text = std::fs::read_to_string(&listing_path)
        .with_context(|| format!("reading {}", listing_path.display()))?;
    let mut listing = PassListing::from_json(&text)?;
    let mut hrefs = BTreeMap::new();
    for p in &mut listing.products {
        // The files are in the set's directory, whatever directory they were written from.
        let file = Path::new(&p.path)
            .file_name()
            .map(|n| products_dir.join(n))
            .unwrap_or_else(|| PathBuf::from(&p.path));
        if let Some(key) = raster::catalog::item::asset_key(p) {
            hrefs.insert(key, relative(archive, &file));
        }
        p.path = file.to_string_lossy().into_owned();
    }
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
    if let Some(dir) = products_dir.parent() {
        station_provenance(&mut item, dir);
    }
    // `updated` versions the item: the tile cache and ETags of a replaced set change with it.
    item.properties.updated =
        Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    Ok(item)
}

/// The receiving station (and its location) from the pass record in `pass_dir`, and for a
/// merged pass its version and the station passes it was made from: as
/// `downlink:merged_from` and one `derived_from` link per station pass (provenance). A pass
/// without a record (a set imported from elsewhere) gets nothing.
fn station_provenance(item: &mut stac::Item, pass_dir: &Path) {
    let Ok(text) = std::fs::read(pass_dir.join("pass.json")) else {
        return;
    };
    let Ok(rec) = serde_json::from_slice::<archive::record::PassRecord>(&text) else {
        return;
    };
    let f = &mut item.properties.additional_fields;
    if let Some(s) = &rec.station {
        f.insert("downlink:station".into(), serde_json::json!(s));
    }
    if let Some(l) = &rec.station_location {
        f.insert("downlink:station_location".into(), serde_json::json!(l));
    }
    if !rec.merged_from.is_empty() {
        f.insert(
            "downlink:merged_from".into(),
            serde_json::json!(rec.merged_from),
        );
        f.insert(
            "downlink:merge_version".into(),
            serde_json::json!(rec.merge_version),
        );
        for id in &rec.merged_from {
            let mut l = stac::Link::new(format!("/api/v1/passes/{id}"), "derived_from");
            l.r#type = Some("application/json".into());
            item.links.push(l);
        }
    }
}

/// `downlink archive add`: imports georeferenced rasters as one item of `spec.collection`
/// (created if missing); see [`raster::catalog::import`].
pub fn add_rasters(
    catalog: &dyn Catalog,
    archive: &Path,
    spec: &ImportSpec<'_>,
) -> Result<Imported> {
    let collection = spec.collection;
    if catalog.collection(collection)?.is_none() {
        catalog.upsert_collection(&empty_extent_collection(
            collection,
            &format!("Rasters imported into this Downlink station's archive ({collection})"),
        )?)?;
    }
    Ok(import_item(catalog, archive, spec)?)
}

/// `downlink archive add-pass DIR`: catalogues a recorded pass's product set as the daemon
/// does at LOS ([`register_pass`]): its real time, platform, link quality, geolocation QA and
/// sun angles come from its `products.json`. `dir` is the output of `downlink image` (it holds
/// `products.json`) or a pass directory (`DIR/products/products.json`). A set outside the
/// archive is copied to `passes/<pass_id>/products` first (staged, fsynced, renamed), its
/// listing's paths rewritten; one inside the archive is catalogued where it is. An item of the
/// same pass id is refused unless `replace`; the replaced item's files are removed only after
/// the new item is committed.
pub fn add_pass(
    catalog: &dyn Catalog,
    archive: &Path,
    dir: &Path,
    replace: bool,
) -> Result<Imported> {
    let src = if dir.join("products.json").is_file() {
        dir.to_path_buf()
    } else if dir.join("products").join("products.json").is_file() {
        dir.join("products")
    } else {
        return Err(Error::Item(format!(
            "{}: no products.json (give the output directory of `downlink image`, or a pass directory)",
            dir.display()
        )));
    };
    let listing_path = src.join("products.json");
    let text = std::fs::read_to_string(&listing_path)
        .with_context(|| format!("reading {}", listing_path.display()))?;
    let listing = PassListing::from_json(&text)
        .with_context(|| format!("parsing {}", listing_path.display()))?;
    let cid = collection_id(&listing.spacecraft, &listing.instrument);
    let old = catalog.item(&cid, &listing.pass_id)?;
    if old.is_some() && !replace {
        return Err(Error::Item(format!(
            "item {:?} already exists in collection {cid:?}: give --replace to replace it (its old files are removed once the new item is committed)",
            listing.pass_id
        )));
    }
    let archive_abs = std::fs::canonicalize(archive)
        .with_context(|| format!("resolving {}", archive.display()))?;
    let src_abs =
        std::fs::canonicalize(&src).with_context(|| format!("resolving {}", src.display()))?;
    let (products_dir, copied) = if src_abs.starts_with(&archive_abs) {
        (src_abs.clone(), None)
    } else {
        archive::catalog::layout::validate_id("item", &listing.pass_id)?;
        let pass_dir = archive_abs.join("passes").join(&listing.pass_id);
        std::fs::create_dir_all(&pass_dir)
            .with_context(|| format!("creating {}", pass_dir.display()))?;
        let mut dst = pass_dir.join("products");
        if dst.exists() {
            dst = pass_dir.join(format!("products.r{}", archive::unique_suffix()));
        }
        copy_product_set(&src_abs, &text, &dst)?;
        (dst.clone(), Some(dst))
    };
    // The commit point: an insert (a concurrent one of the same id is refused, not
    // replaced), or a replacement when asked.
    let committed = pass_item(catalog, &archive_abs, &products_dir).and_then(|item| {
        if old.is_some() {
            catalog.upsert_item(&item)?;
        } else {
            catalog.insert_item(&item)?;
        }
        Ok(item)
    });
    let item = match committed {
        Ok(item) => item,
        Err(e) => {
            if let Some(d) = copied {
                let _ = std::fs::remove_dir_all(d);
            }
            return Err(e);
        }
    };
    let (removed, not_removed) = match &old {
        Some(o) => remove_item_files(&archive_abs, o, Some(&item)),
        None => (Vec::new(), Vec::new()),
    };
    Ok(Imported {
        item,
        replaced: old,
        removed,
        not_removed,
    })
}

/// Copies the files of a product set (`src`, its listing `listing_text`) into `dst` through a
/// staging directory, the listing's product paths rewritten to their new place.
fn copy_product_set(src: &Path, listing_text: &str, dst: &Path) -> Result<()> {
    let staging =
        archive::StagingDir::create(dst).with_context(|| format!("staging {}", dst.display()))?;
    let mut listing: serde_json::Value = serde_json::from_str(listing_text)?;
    if let Some(products) = listing
        .get_mut("products")
        .and_then(serde_json::Value::as_array_mut)
    {
        for p in products {
            let Some(name) = p
                .get("path")
                .and_then(serde_json::Value::as_str)
                .and_then(|s| Path::new(s).file_name())
                .map(|n| n.to_owned())
            else {
                continue;
            };
            let from = src.join(&name);
            if !from.is_file() {
                return Err(Error::Item(format!(
                    "{}: listed in products.json but missing",
                    from.display()
                )));
            }
            std::fs::copy(&from, staging.path().join(&name))
                .with_context(|| format!("copying {}", from.display()))?;
            p["path"] = serde_json::json!(dst.join(&name).to_string_lossy());
        }
    }
    let visual = src.join(VISUAL);
    if visual.is_file() {
        std::fs::copy(&visual, staging.path().join(VISUAL))
            .with_context(|| format!("copying {}", visual.display()))?;
    }
    archive::write_atomic(
        staging.path().join("products.json"),
        serde_json::to_string_pretty(&listing)?.as_bytes(),
    )?;
    staging.publish()?;
    Ok(())
}

/// One catalogued item, as `downlink archive list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// Collection id.
    pub collection: String,
    /// Item id.
    pub id: String,
    /// Item datetime (RFC 3339).
    pub datetime: Option<String>,
    /// Asset keys.
    pub assets: Vec<String>,
}

/// Every item of the archive's catalog (or of one collection), newest first.
pub fn list(catalog: &dyn Catalog, collection: Option<&str>) -> Result<Vec<Listed>> {
    let mut params = SearchParams {
        collections: collection.map(|c| vec![c.to_owned()]),
        limit: Some(archive::catalog::store::MAX_LIMIT),
        ..Default::default()
    };
    let mut out = Vec::new();
    loop {
        let page = catalog.search(&params)?;
        for it in page.items {
            out.push(Listed {
                collection: it.collection.clone().unwrap_or_default(),
                datetime: it.properties.datetime.map(|d| d.to_rfc3339()),
                assets: it.assets.keys().cloned().collect(),
                id: it.id,
            });
        }
        match page.next {
            Some(t) => params.token = Some(t),
            None => return Ok(out),
        }
    }
}

/// What `downlink archive remove` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Removed {
    /// Collection id.
    pub collection: String,
    /// Item id.
    pub id: String,
    /// Files removed (imported rasters under `collections/`).
    pub files: Vec<PathBuf>,
    /// Files that could not be removed, with the error.
    pub not_removed: Vec<(PathBuf, String)>,
}

/// Removes item `id` (of `collection`, or of the only collection that has it): the catalog
/// entry first (the commit point), then its files under `collections/`. A received pass's
/// files under `passes/` are the station's pass record and stay.
pub fn remove(
    catalog: &dyn Catalog,
    archive: &Path,
    id: &str,
    collection: Option<&str>,
) -> Result<Removed> {
    let found = catalog.search(&SearchParams {
        ids: Some(vec![id.to_owned()]),
        collections: collection.map(|c| vec![c.to_owned()]),
        limit: Some(archive::catalog::store::MAX_LIMIT),
        ..Default::default()
    })?;
    let item = match found.items.as_slice() {
        [] => {
            return Err(Error::Item(format!(
                "no item {id:?}{} in the catalog",
                collection.map_or(String::new(), |c| format!(" in collection {c:?}"))
            )))
        }
        [one] => one.clone(),
        many => {
            return Err(Error::Item(format!(
                "item id {id:?} is in several collections ({}): give --collection",
                many.iter()
                    .filter_map(|i| i.collection.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let cid = item.collection.clone().unwrap_or_default();
    if !catalog.delete_item(&cid, id)? {
        return Err(Error::Item(format!(
            "item {id:?} disappeared from collection {cid:?} while removing it"
        )));
    }
    let mut imported = item.clone();
    imported.assets.retain(|_, a| {
        archive::catalog::local_href(&a.href)
            .is_some_and(|h| h.starts_with(&format!("{COLLECTIONS_DIR}/")))
    });
    let (files, not_removed) = remove_item_files(archive, &imported, None);
    Ok(Removed {
        collection: cid,
        id: id.to_owned(),
        files,
        not_removed,
    })
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
