//! The daemon side of change alerts: a watcher re-runs each `[[alerts]]` collection when its
//! items change (passes catalogued at LOS, `downlink archive add` from another process — the
//! catalog is shared, so the watcher polls it every [`CHECK_PERIOD`]), publishes the alerts
//! item, and sends the webhook event `alert`. Runs are blocking work on the blocking pool, one
//! at a time; a failed run is counted by reason, logged once per change of the collection, and
//! shown in `/api/v1/status`; the daemon keeps serving.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde_json::{json, Value};

use crate::alerts::{self, FailReason};
use crate::config::{AlertsConfig, WebhookEvent};

use super::events::{emit, AlertRunFailed, AlertRunPublished};
use super::Shared;

/// How often the watcher compares the collections' items.
pub const CHECK_PERIOD: Duration = Duration::from_secs(2);

/// Per collection: what the last run saw and did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CollectionStatus {
    /// Successful runs.
    pub runs: u64,
    /// Failed runs by reason.
    pub failures: BTreeMap<&'static str, u64>,
    /// The alerts item of the last successful run.
    pub last_item: Option<String>,
    /// Alerts of the last successful run by confidence.
    pub last_counts: Option<BTreeMap<&'static str, usize>>,
    /// Why the last run failed (cleared by a success).
    pub last_error: Option<String>,
    /// Published runs whose webhook went out without its features: the published
    /// `alerts.geojson` could not be read back (the payload says why in `features_error`).
    pub webhook_features_missing: u64,
    #[serde(skip)]
    signature: Option<String>,
}

/// `[[alerts]]` and its run state.
#[derive(Debug, Default)]
pub struct Alerts {
    inner: Mutex<(Vec<AlertsConfig>, BTreeMap<String, CollectionStatus>)>,
    /// Runs and failures of collections a reload removed, so the totals never go down.
    retired: Mutex<(u64, BTreeMap<&'static str, u64>)>,
}

impl Alerts {
    /// From the configuration.
    pub fn new(cfgs: &[AlertsConfig]) -> Self {
        let s = Self::default();
        s.reconfigure(cfgs);
        s
    }

    /// A reload: new settings; every collection is looked at again.
    pub fn reconfigure(&self, cfgs: &[AlertsConfig]) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 = cfgs.to_vec();
        for st in g.1.values_mut() {
            st.signature = None;
        }
        for c in cfgs {
            g.1.entry(c.collection.clone()).or_default();
        }
        let keep: Vec<String> = cfgs.iter().map(|c| c.collection.clone()).collect();
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        g.1.retain(|k, st| {
            if !keep.contains(k) {
                retired.0 += st.runs;
                for (r, n) in &st.failures {
                    *retired.1.entry(r).or_default() += n;
                }
            }
            keep.contains(k)
        });
    }

    /// Status by collection.
    pub fn status(&self) -> BTreeMap<String, CollectionStatus> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    /// (runs, failures by reason) over all collections.
    pub fn totals(&self) -> (u64, BTreeMap<&'static str, u64>) {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut f: BTreeMap<&'static str, u64> =
            FailReason::ALL.iter().map(|r| (r.as_str(), 0)).collect();
        let retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let mut runs = retired.0;
        for (k, v) in &retired.1 {
            *f.entry(k).or_default() += v;
        }
        for st in g.1.values() {
            runs += st.runs;
            for (k, v) in &st.failures {
                *f.entry(k).or_default() += v;
            }
        }
        (runs, f)
    }

    fn configs(&self) -> Vec<AlertsConfig> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    fn with_status<T>(&self, c: &str, f: impl FnOnce(&mut CollectionStatus) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(g.1.entry(c.to_owned()).or_default())
    }
}

/// Watches the `[[alerts]]` collections until the daemon stops.
pub async fn watch(shared: Weak<Shared>) {
    // Work directories a crash left behind (intermediate rasters of an unfinished run).
    if let Some(s) = shared.upgrade() {
        if let Ok(rd) = std::fs::read_dir(&s.archive) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".alerts-work-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    loop {
        tokio::time::sleep(CHECK_PERIOD).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.stopping() {
            return;
        }
        let Some(catalog) = shared.catalog.clone() else {
            continue;
        };
        for cfg in shared.alerts.configs() {
            let cat = catalog.clone();
            let coll = cfg.collection.clone();
            let sig =
                match tokio::task::spawn_blocking(move || alerts::signature(&*cat, &coll)).await {
                    Ok(Ok(s)) => s,
                    _ => continue,
                };
            let seen = shared
                .alerts
                .with_status(&cfg.collection, |st| st.signature.clone());
            if seen.as_deref() == Some(sig.as_str()) {
                continue;
            }
            shared
                .alerts
                .with_status(&cfg.collection, |st| st.signature = Some(sig.clone()));
            if sig.is_empty() {
                continue; // an empty collection: nothing to compare yet
            }
            run_one(&shared, &catalog, cfg).await;
        }
    }
}

async fn run_one(
    shared: &Arc<Shared>,
    catalog: &Arc<dyn archive::catalog::Catalog>,
    cfg: AlertsConfig,
) {
    let cat = catalog.clone();
    let archive = shared.archive.clone();
    let c = cfg.clone();
    let result = tokio::task::spawn_blocking(move || {
        alerts::run(&*cat, &archive, &c, &alerts::RunOptions::default()).map(|p| {
            // The webhook carries the features: read back from the published file.
            let features = std::fs::read(&p.geojson)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()))
                .map(|mut fc| fc["features"].take());
            (p, features)
        })
    })
    .await;
    let coll = cfg.collection.as_str();
    match result {
        Ok(Ok((p, features))) => {
            let (features, features_error) = match features {
                Ok(f) => (f, None),
                Err(e) => {
                    tracing::warn!(collection = coll, error = %e, "alerts webhook: cannot read the published features back; it goes out without them");
                    shared
                        .alerts
                        .with_status(coll, |st| st.webhook_features_missing += 1);
                    (
                        Value::Null,
                        Some(format!("reading {}: {e}", p.geojson.display())),
                    )
                }
            };
            for w in &p.warnings {
                tracing::warn!(collection = coll, "{w}");
            }
            let counts: BTreeMap<&'static str, usize> = [
                ("low", p.counts[0]),
                ("high", p.counts[1]),
                ("contradicted", p.counts[2]),
            ]
            .into_iter()
            .collect();
            shared.alerts.with_status(coll, |status| {
                emit(AlertRunPublished {
                    status,
                    collection: coll,
                    item: &p.item.id,
                    counts: &counts,
                });
            });
            let mut payload = json!({
                "collection": coll,
                "alerts_collection": alerts::alerts_collection(coll),
                "item": p.item.id,
                "counts": counts,
                "features": features,
            });
            if let (Some(e), Some(o)) = (features_error, payload.as_object_mut()) {
                o.insert("features_error".into(), Value::String(e));
            }
            shared.webhooks.notify(WebhookEvent::Alert, payload);
        }
        // Logged once per change of the collection (the watcher runs again only then).
        Ok(Err(e)) => shared.alerts.with_status(coll, |status| {
            emit(AlertRunFailed {
                status,
                collection: coll,
                reason: e.reason,
                error: e.to_string(),
            });
        }),
        Err(e) => shared.alerts.with_status(coll, |status| {
            emit(AlertRunFailed {
                status,
                collection: coll,
                reason: FailReason::Io,
                error: format!("run failed: {e}"),
            });
        }),
    }
}
