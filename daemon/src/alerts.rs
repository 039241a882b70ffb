//! Vegetation-loss change alerts over a catalog collection (`[[alerts]]`, `downlink alerts
//! run`, `GET /api/v1/alerts`): finds each item's red and NIR bands, runs
//! [`raster::change::run`] and publishes the result as an item of `alerts-<collection>`.
//!
//! Publishing: the products are written into a fresh `run-<suffix>` directory under the
//! alerts item's directory (staged, then renamed into place); the catalog upsert is the commit
//! point; the directories of earlier runs are removed after it. A failed run leaves no alerts
//! item and no new files.

use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use archive::catalog::layout::{item_dir, validate_id};
use archive::catalog::{local_href, Catalog, SearchParams};
use chrono::{DateTime, SecondsFormat, Utc};
use raster::catalog::item::empty_extent_collection;
use raster::catalog::raster::COG_MEDIA_TYPE;
use raster::change::{self, BandSource, Confidence, Params, Scene};
use serde_json::{json, Value};

use crate::config::AlertsConfig;

/// The alerts collection of a source collection.
pub fn alerts_collection(source: &str) -> String {
    format!("alerts-{source}")
}

/// Prefix of alerts collections.
pub const PREFIX: &str = "alerts-";

/// Asset key of the GeoJSON FeatureCollection.
/// How long a superseded run directory stays untouched before a later run removes it (a
/// concurrent run may still be writing it, or have committed it after this one).
const RUN_DIR_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

pub const GEOJSON_ASSET: &str = "alerts";

/// Why a run did not publish (bounded, for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// Fewer than two items.
    TooFewItems,
    /// An item, band, grid or mask is unusable.
    Input,
    /// Catalog, filesystem or GDAL trouble.
    Io,
}

impl FailReason {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooFewItems => "too_few_items",
            Self::Input => "input",
            Self::Io => "io",
        }
    }

    /// Every reason.
    pub const ALL: [FailReason; 3] = [Self::TooFewItems, Self::Input, Self::Io];
}

/// A run that did not publish: the reason and the message.
#[derive(Debug)]
pub struct RunError {
    /// Bounded reason.
    pub reason: FailReason,
    /// What happened.
    pub error: Error,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.error)
    }
}

/// What a run published.
#[derive(Debug, Clone)]
pub struct Published {
    /// The alerts item.
    pub item: stac::Item,
    /// The published FeatureCollection file (`alerts.geojson`, each feature with
    /// `collection`), written feature by feature rather than held in memory.
    pub geojson: PathBuf,
    /// Alerts by confidence: low, high, contradicted.
    pub counts: [usize; 3],
    /// Warnings of the engine (ignored nodata, …).
    pub warnings: Vec<String>,
}

/// The items of a collection (all pages).
fn items_of(catalog: &dyn Catalog, collection: &str) -> Result<Vec<stac::Item>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = catalog.search(&SearchParams {
            collections: Some(vec![collection.to_owned()]),
            limit: Some(archive::catalog::store::MAX_LIMIT),
            token,
            ..SearchParams::default()
        })?;
        out.extend(page.items);
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// `(items, newest datetime)` of a collection, cheaply: what the watcher compares.
pub fn signature(catalog: &dyn Catalog, collection: &str) -> Result<String> {
    let items = items_of(catalog, collection)?;
    let mut sig: Vec<String> = items
        .iter()
        .map(|i| {
            let dt = i
                .properties
                .datetime
                .map(|d| d.timestamp_micros())
                .unwrap_or(0);
            let updated = i.properties.updated.as_deref().unwrap_or_default();
            format!("{}@{dt}{updated}:{}", i.id, i.assets.len())
        })
        .collect();
    sig.sort();
    Ok(sig.join(","))
}

fn local_path(archive: &Path, href: &str) -> Option<PathBuf> {
    if let Some(rel) = local_href(href) {
        let p = archive.join(rel);
        if p.exists() {
            return Some(p);
        }
    }
    let p = Path::new(href);
    (p.is_absolute() && p.exists()).then(|| p.to_path_buf())
}

fn band_fields(band: &Value) -> (Option<f64>, Option<f64>) {
    let f = |k: &[&str]| k.iter().find_map(|k| band.get(*k).and_then(Value::as_f64));
    (
        f(&["raster:scale", "scale"]),
        f(&["raster:offset", "offset"]),
    )
}

/// Finds `common` (`red`/`nir`) in an item: `spec` (`ASSET` or `ASSET:BAND`) when given, else
/// the asset band whose `eo:common_name` is `common`.
fn find_band(
    item: &Value,
    id: &str,
    archive: &Path,
    common: &str,
    spec: Option<&str>,
) -> Result<BandSource> {
    let assets = item.get("assets").and_then(Value::as_object);
    let bands_of = |a: &Value| -> Vec<Value> {
        a.get("bands")
            .or_else(|| a.get("eo:bands"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (key, band_no) = match spec {
        Some(s) => {
            let (k, b) = match s.split_once(':') {
                Some((k, b)) => (k, b.parse::<usize>().unwrap_or(0)),
                None => (s, 1),
            };
            (k.to_owned(), b)
        }
        None => {
            let mut found = None;
            for (k, a) in assets.into_iter().flatten() {
                for (i, b) in bands_of(a).iter().enumerate() {
                    if b.get("eo:common_name").and_then(Value::as_str) == Some(common) {
                        found = Some((k.clone(), i + 1));
                        break;
                    }
                }
                if found.is_some() {
                    break;
                }
            }
            match found {
                Some(f) => f,
                None => return Err(Error::AlertsInput(format!(
                    "item {id} has no band with eo:common_name {common:?} (name it with `archive add --bands`, or set `{common} = \"ASSET:BAND\"` in [[alerts]])"
                ))),
            }
        }
    };
    let Some(asset) = assets.and_then(|a| a.get(&key)) else {
        return Err(Error::AlertsInput(format!(
            "item {id} has no asset {key:?} (configured as {common})"
        )));
    };
    let href = asset
        .get("href")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(path) = local_path(archive, href) else {
        return Err(Error::AlertsInput(format!(
            "item {id}: asset {key:?} ({href}) is not a file in the archive"
        )));
    };
    let bands = bands_of(asset);
    let (scale, offset) = bands
        .get(band_no.saturating_sub(1))
        .map(band_fields)
        .unwrap_or((None, None));
    Ok(BandSource {
        path,
        band: band_no,
        scale,
        offset,
    })
}

/// On-demand options beside the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Only scenes at or after this detect.
    pub since: Option<DateTime<Utc>>,
}

/// Runs the alerts of `cfg.collection` and publishes them. Blocking.
pub fn run(
    catalog: &dyn Catalog,
    archive: &Path,
    cfg: &AlertsConfig,
    opts: &RunOptions,
) -> std::result::Result<Published, RunError> {
    let input = |error: Error| RunError {
        reason: FailReason::Input,
        error,
    };
    let io = |error: Error| RunError {
        reason: FailReason::Io,
        error,
    };
    let src = &cfg.collection;
    let items = items_of(catalog, src).map_err(io)?;
    if items.len() < 2 {
        return Err(RunError {
            reason: FailReason::TooFewItems,
            error: Error::AlertsInput(format!(
                "collection {src:?} has {} item(s); change alerts need at least two acquisitions",
                items.len()
            )),
        });
    }
    let mut scenes = Vec::with_capacity(items.len());
    for it in &items {
        let v = serde_json::to_value(it)
            .context("serializing an item")
            .map_err(io)?;
        let Some(dt) = it.properties.datetime.or(it.properties.start_datetime) else {
            return Err(input(Error::AlertsInput(format!(
                "item {} has no datetime",
                it.id
            ))));
        };
        let red = find_band(&v, &it.id, archive, "red", cfg.red.as_deref()).map_err(input)?;
        let nir = find_band(&v, &it.id, archive, "nir", cfg.nir.as_deref()).map_err(input)?;
        scenes.push(Scene {
            id: it.id.clone(),
            datetime: dt,
            red,
            nir,
        });
    }
    scenes.sort_by(|a, b| a.datetime.cmp(&b.datetime).then(a.id.cmp(&b.id)));
    let (Some(oldest), Some(newest)) = (scenes.first().cloned(), scenes.last().cloned()) else {
        return Err(input(Error::AlertsInput("no scenes".into())));
    };
    let params = Params {
        drop: cfg.drop,
        mmu_ha: cfg.mmu_ha,
        baseline_looks: cfg.baseline_looks,
        baseline_percentile: cfg.baseline_percentile,
        cloud: cfg.cloud_test.then(change::CloudTest::default),
        mask: cfg.mask.clone(),
        since: opts.since,
        ..Params::default()
    };
    let acoll = alerts_collection(src);
    let item_id = format!("{}-alerts", newest.id);
    let rel = (|| -> Result<PathBuf> {
        validate_id("collection", &acoll)?;
        Ok(item_dir(&acoll, &item_id, newest.datetime)?)
    })()
    .map_err(input)?;
    let item_root = archive.join(&rel);
    let run_name = format!("run-{}", archive::unique_suffix());
    let run_dir = item_root.join(&run_name);
    std::fs::create_dir_all(&item_root)
        .with_context(|| format!("creating {}", item_root.display()))
        .map_err(io)?;
    let staging = archive::StagingDir::create(&run_dir)
        .context("staging directory")
        .map_err(io)?;
    let work = archive.join(format!(".alerts-work-{}", archive::unique_suffix()));
    let outcome = change::run(&scenes, &params, &work, staging.path());
    let _ = std::fs::remove_dir_all(&work);
    let outcome = outcome.map_err(|e| match e {
        raster::Error::ChangeInput(_) => input(e.into()),
        other => io(other.into()),
    })?;

    let mask_name = cfg
        .mask
        .as_ref()
        .and_then(|m| m.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    // Feature ids unique across runs and collections: `<item id>-<alert id>`.
    let fopts = change::FeatureOptions {
        mask: mask_name.as_deref(),
        collection: Some(src),
        id_prefix: Some(&item_id),
    };
    write_geojson(&staging.path().join(GEOJSON_FILE), &outcome.alerts, &fopts)
        .context("writing alerts.geojson")
        .map_err(io)?;
    let published_dir = staging.publish().context("publishing").map_err(io)?;
    let href = |name: &str| {
        published_dir
            .join(name)
            .strip_prefix(archive)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| name.to_owned())
    };

    let counts = [Confidence::Low, Confidence::High, Confidence::Contradicted]
        .map(|c| outcome.alerts.iter().filter(|a| a.confidence == c).count());
    let newest_item = items.iter().find(|i| i.id == newest.id);
    let mut item = stac::Item::new(&item_id);
    item.collection = Some(acoll.clone());
    item.geometry = newest_item.and_then(|i| i.geometry.clone());
    item.bbox = newest_item.and_then(|i| i.bbox);
    let p = &mut item.properties;
    p.datetime = Some(newest.datetime);
    p.start_datetime = Some(oldest.datetime);
    p.end_datetime = Some(newest.datetime);
    let f = &mut p.additional_fields;
    f.insert("downlink:source_collection".into(), json!(src));
    f.insert(
        "downlink:alerts".into(),
        json!({"low": counts[0], "high": counts[1], "contradicted": counts[2]}),
    );
    f.insert(
        "downlink:alert_params".into(),
        json!({"drop": cfg.drop, "mmu_ha": cfg.mmu_ha, "baseline_looks": cfg.baseline_looks,
               "baseline_percentile": cfg.baseline_percentile, "cloud_test": cfg.cloud_test,
               "mask": mask_name,
               "since": opts.since.map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))}),
    );
    // `updated` versions the item (tile cache keys, ETags).
    item.properties.updated = Some(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true));
    let mut a = stac::Asset::new(href(GEOJSON_FILE)).role("data");
    a.r#type = Some("application/geo+json".into());
    a.title = Some("vegetation-loss alerts (RFC 7946 FeatureCollection)".into());
    item.assets.insert(GEOJSON_ASSET.into(), a);
    let mut a = stac::Asset::new(href("dndvi.tif")).role("data");
    a.r#type = Some(COG_MEDIA_TYPE.into());
    a.title = Some("ΔNDVI of the newest look against its baseline (NaN: no value)".into());
    item.assets.insert("dndvi".into(), a);
    let mut a = stac::Asset::new(href("loss.tif")).role("data");
    a.r#type = Some(COG_MEDIA_TYPE.into());
    a.title = Some("loss mask: 0 none, 1 low, 2 high, 3 contradicted".into());
    item.assets.insert("loss".into(), a);
    for s in &scenes {
        let mut l = stac::Link::new(
            format!("/stac/collections/{src}/items/{}", s.id),
            "derived_from",
        );
        l.r#type = Some("application/geo+json".into());
        item.links.push(l);
    }

    let commit = || -> Result<()> {
        if catalog.collection(&acoll)?.is_none() {
            catalog.upsert_collection(&empty_extent_collection(
                &acoll,
                &format!("Vegetation-loss change alerts over the collection {src}"),
            )?)?;
        }
        catalog.upsert_item(&item)?;
        Ok(())
    };
    if let Err(e) = commit() {
        let _ = std::fs::remove_dir_all(&published_dir);
        return Err(io(Error::Step {
            step: "catalog upsert of the alerts item".into(),
            source: Box::new(e),
        }));
    }
    // Earlier runs of this item are superseded. Another run (the daemon's watcher beside a
    // `downlink alerts run`) may have committed after this one, or still be writing: remove only
    // run directories the catalog's item does not reference now and that nothing has written to
    // for an hour; the others are removed by a later run.
    let referenced: Vec<String> = catalog
        .item(&acoll, &item.id)
        .ok()
        .flatten()
        .map(|current| current.assets.values().map(|a| a.href.clone()).collect())
        .unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir(&item_root) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let in_use = referenced.iter().any(|h| h.contains(&format!("/{name}/")));
            let idle = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= RUN_DIR_GRACE);
            if name.starts_with("run-") && name != run_name && !in_use && idle {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(Published {
        item,
        geojson: published_dir.join(GEOJSON_FILE),
        counts,
        warnings: outcome.warnings,
    })
}

/// File name of the FeatureCollection asset.
const GEOJSON_FILE: &str = "alerts.geojson";

/// Writes the FeatureCollection durably (temp, fsync, rename), streaming the features.
fn write_geojson(
    path: &Path,
    alerts: &[change::Alert],
    opts: &change::FeatureOptions<'_>,
) -> Result<()> {
    /// `io::Write` over the archive's atomic file.
    struct Sink(archive::AtomicFile);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write_all(buf).map_err(std::io::Error::other)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut sink = Sink(archive::AtomicFile::with_buffer(path, 1 << 20)?);
    change::write_feature_collection(alerts, opts, &mut sink)?;
    sink.0.commit()?;
    Ok(())
}

/// Query of `GET /api/v1/alerts`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Source collection.
    pub collection: Option<String>,
    /// `[w, s, e, n]`.
    pub bbox: Option<[f64; 4]>,
    /// Interval overlapping `[first_detected, last_observed]`.
    pub datetime: Option<archive::catalog::DatetimeFilter>,
    /// Accepted confidences.
    pub confidence: Option<Vec<String>>,
    /// Smallest area.
    pub min_area_ha: Option<f64>,
}

/// The newest alerts item of every alerts collection (or of `query.collection`'s), its
/// features filtered by `query`: one FeatureCollection.
pub fn query(catalog: &dyn Catalog, archive: &Path, q: &Query) -> Result<Value> {
    let collections: Vec<String> = match &q.collection {
        Some(c) => vec![alerts_collection(c)],
        None => catalog
            .collections()?
            .into_iter()
            .map(|c| c.id)
            .filter(|id| id.starts_with(PREFIX))
            .collect(),
    };
    let mut features = Vec::new();
    for ac in collections {
        let page = catalog.search(&SearchParams {
            collections: Some(vec![ac.clone()]),
            limit: Some(1),
            ..SearchParams::default()
        })?;
        let Some(item) = page.items.into_iter().next() else {
            continue;
        };
        let Some(asset) = item.assets.get(GEOJSON_ASSET) else {
            continue;
        };
        // A run that publishes meanwhile removes the files of the one before after its
        // commit: read the item again once if its file went.
        let text = match local_path(archive, &asset.href).map(std::fs::read) {
            Some(Ok(t)) => t,
            _ => {
                let again = catalog.search(&SearchParams {
                    collections: Some(vec![ac.clone()]),
                    limit: Some(1),
                    ..SearchParams::default()
                })?;
                let href = again
                    .items
                    .first()
                    .and_then(|i| i.assets.get(GEOJSON_ASSET))
                    .map(|a| a.href.clone())
                    .unwrap_or_default();
                let Some(path) = local_path(archive, &href) else {
                    continue;
                };
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
            }
        };
        let fc: Value = serde_json::from_slice(&text)?;
        for f in fc
            .get("features")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if keep(f, q) {
                let mut f = f.clone();
                f["properties"]["alerts_item"] = json!(item.id);
                features.push(f);
            }
        }
    }
    Ok(json!({"type": "FeatureCollection", "features": features}))
}

fn keep(f: &Value, q: &Query) -> bool {
    let p = &f["properties"];
    if let Some(min) = q.min_area_ha {
        if p["area_ha"].as_f64().unwrap_or(0.0) < min {
            return false;
        }
    }
    if let Some(c) = &q.confidence {
        let v = p["confidence"].as_str().unwrap_or_default();
        if !c.iter().any(|x| x == v) {
            return false;
        }
    }
    if let Some([w, s, e, n]) = q.bbox {
        let b: Vec<f64> = f["bbox"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        let [bw, bs, be, bn] = b[..] else {
            return false;
        };
        if !(bw <= e && w <= be && bs <= n && s <= bn) {
            return false;
        }
    }
    if let Some(dt) = &q.datetime {
        let t = |k: &str| {
            p[k].as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&Utc))
        };
        let (Some(a), Some(b)) = (t("first_detected"), t("last_observed")) else {
            return false;
        };
        if dt.end.is_some_and(|e| a > e) || dt.start.is_some_and(|s| b < s) {
            return false;
        }
    }
    true
}
