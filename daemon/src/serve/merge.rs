//! The daemon's merge of station copies: when a pass is closed at LOS and another archived
//! pass (another input = another antenna, or another station's daemon writing into the same
//! local archive) of the same spacecraft overlaps it in time, the copies are merged
//! ([`crate::merge::merge_passes`]) into a pass with input `merged`, listed in
//! `/api/v1/passes` like any other, whose products and STAC item are made from the merged
//! frames. A later copy (a late station) re-runs the merge: the merged pass directory is
//! replaced whole ([`crate::merge::publish`]), its `merge_version` bumped, and its products
//! and item made again (the item's `updated` changes).
//!
//! Merges run one at a time (an exclusive `flock` on `passes/.merge.lock`, so also across
//! daemons sharing the archive and with `downlink merge`) on their own thread, never on a decoder thread. Each is counted
//! (`/metrics` `downlink_merges_total{result}`, `/api/v1/status` `merges`); a failure is logged
//! and counted, and leaves the station passes as they are.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use decoder::Profile;

use super::Shared;
use crate::merge::{
    lock_passes, merge_passes, publish, same_pass, MergeSpec, StationPass, MERGED_INPUT,
};
use archive::pass::{pass_id, valid_pass_id};
use archive::record::{aos_of_id, PassRecord};

/// Copies whose AOS..LOS are this close count as overlapping.
const SLACK: Duration = Duration::from_secs(60);
/// Pass directories whose AOS (from the id) is further than this from the new pass are not read.
const LOOK: Duration = Duration::from_secs(3 * 3600);

/// Merges done and failed since start.
pub static MERGES_OK: AtomicU64 = AtomicU64::new(0);
/// Merges that failed.
pub static MERGES_FAILED: AtomicU64 = AtomicU64::new(0);
/// One merge at a time.
static RUNNING: Mutex<()> = Mutex::new(());
/// The last merge that failed: (pass, error).
static LAST_FAILURE: Mutex<Option<(String, String)>> = Mutex::new(None);

/// `/api/v1/status` `merges`: merges done and failed, and the last failure.
pub fn status_json() -> serde_json::Value {
    let last = LAST_FAILURE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    serde_json::json!({
        "ok": MERGES_OK.load(Ordering::Relaxed),
        "failed": MERGES_FAILED.load(Ordering::Relaxed),
        "last_failure": last.map(|(pass, error)| serde_json::json!({"pass": pass, "error": error})),
    })
}

/// What a closed pass hands to the merge.
pub struct Closed {
    /// The record just written.
    pub record: PassRecord,
    /// The input's profile.
    pub profile: Profile,
    /// Make products of the merged pass.
    pub imaging: bool,
    /// `input[].pass_date`.
    pub date: Option<chrono::NaiveDate>,
}

/// Looks for other copies of the pass just closed, off the calling thread.
pub fn after_los(shared: &Arc<Shared>, closed: Closed) {
    if closed.record.input == MERGED_INPUT || closed.record.scid.is_none() {
        return;
    }
    let shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("merge".into())
        .spawn(move || run_merge(&shared, &closed));
    if let Err(e) = spawned {
        MERGES_FAILED.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, "cannot start the merge thread");
    }
}

/// One merge, counted and logged.
fn run_merge(shared: &Shared, closed: &Closed) {
    let _one = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    match merge_now(shared, closed) {
        Ok(Some(id)) => {
            MERGES_OK.fetch_add(1, Ordering::Relaxed);
            tracing::info!(pass = %closed.record.id, merged = %id, "station copies merged");
        }
        Ok(None) => {}
        Err(e) => {
            MERGES_FAILED.fetch_add(1, Ordering::Relaxed);
            *LAST_FAILURE.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((closed.record.id.clone(), format!("{e:#}")));
            tracing::error!(pass = %closed.record.id, error = %format!("{e:#}"), "merging the station copies failed: the station passes are kept as they are");
        }
    }
}

/// How often the archive is looked at for station passes that arrive without a LOS here.
const WATCH: Duration = Duration::from_secs(2);

/// Station passes that appear in the archive without a LOS of this daemon (another station's
/// daemon writing into the shared archive, or a pass directory copied in, however late) are
/// merged like a pass closed here. Passes present at start are not looked at again. The
/// profile is the configured input profile of that name, else the built-in one.
pub fn start_watcher(shared: &Arc<Shared>, profiles: Vec<Profile>) {
    let shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("merge-watch".into())
        .spawn(move || {
            let passes = shared.archive.join("passes");
            let records = |seen: &std::collections::HashSet<String>| -> Vec<String> {
                std::fs::read_dir(&passes)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|id| valid_pass_id(id) && !seen.contains(id))
                            .filter(|id| passes.join(id).join("pass.json").is_file())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let mut seen: std::collections::HashSet<String> =
                records(&Default::default()).into_iter().collect();
            let mut unknown_profiles = std::collections::HashSet::new();
            loop {
                let t0 = std::time::Instant::now();
                while t0.elapsed() < WATCH {
                    if shared.stopping() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                for id in records(&seen) {
                    seen.insert(id.clone());
                    let Ok(p) = StationPass::open(&passes.join(&id)) else {
                        continue;
                    };
                    if p.record.input == MERGED_INPUT || p.record.scid.is_none() {
                        continue;
                    }
                    let Some(profile) = profiles
                        .iter()
                        .find(|x| x.name == p.record.profile)
                        .cloned()
                        .or_else(|| Profile::builtin(&p.record.profile).ok())
                    else {
                        if unknown_profiles.insert(p.record.profile.clone()) {
                            tracing::warn!(pass = %id, profile = %p.record.profile, "a station pass of a profile this daemon does not know: not merged");
                        }
                        continue;
                    };
                    let imaging = profile.imaging.is_some();
                    run_merge(
                        &shared,
                        &Closed {
                            record: p.record,
                            profile,
                            imaging,
                            date: None,
                        },
                    );
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the merge watcher: passes copied into the archive are not merged");
    }
}

/// The records under `passes` whose AOS is near `near` (by pass id).
fn nearby(passes: &Path, near: std::time::SystemTime) -> Vec<StationPass> {
    let Ok(rd) = std::fs::read_dir(passes) else {
        return Vec::new();
    };
    let mut out: Vec<StationPass> = rd
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            if !valid_pass_id(&id) {
                return None;
            }
            let aos = aos_of_id(&id)?;
            let d = aos
                .duration_since(near)
                .or_else(|_| near.duration_since(aos))
                .ok()?;
            (d <= LOOK).then(|| StationPass::open(&e.path()).ok())?
        })
        .collect();
    out.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    out
}

/// What a merge cut short by a crash left (call with the archive lock held, so no merge is in
/// progress): staging directories are removed; a pass moved aside for replacement goes back
/// when its replacement never arrived, else it is removed. How many entries were handled.
pub fn recover_leftovers(passes: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(passes) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name.starts_with('.') && name.ends_with(".merging") {
            let _ = std::fs::remove_dir_all(&path);
            n += 1;
        } else if let Some(id) = name
            .strip_suffix(".replaced")
            .and_then(|s| s.split('.').next())
            .filter(|id| valid_pass_id(id))
        {
            let dest = passes.join(id);
            if dest.exists() {
                let _ = std::fs::remove_dir_all(&path);
            } else if let Err(e) = std::fs::rename(&path, &dest) {
                tracing::warn!(pass = %id, error = %e, "cannot restore a merged pass moved aside by an interrupted merge");
            }
            n += 1;
        }
    }
    if n > 0 {
        tracing::warn!(
            entries = n,
            "cleaned up after a merge interrupted by a crash"
        );
    }
    n
}

fn merge_now(shared: &Shared, c: &Closed) -> crate::error::Result<Option<String>> {
    let passes_dir = shared.archive.join("passes");
    let _lock = lock_passes(&passes_dir, |p| {
        tracing::info!(lock = %p.display(), "another merge holds the archive's merge lock: waiting");
    })?;
    recover_leftovers(&passes_dir);
    let Some(aos) = c.record.aos_time() else {
        return Ok(None);
    };
    let all = nearby(&passes_dir, aos);
    let group: Vec<StationPass> = all
        .iter()
        .filter(|p| p.record.input != MERGED_INPUT)
        .filter(|p| p.record.id == c.record.id || same_pass(&p.record, &c.record, SLACK))
        .cloned()
        .collect();
    // One copy per antenna (station, input): the one whose AOS is nearest this pass's.
    let mut group = group;
    let dist = |p: &StationPass| {
        p.record.aos_time().map_or(Duration::MAX, |t| {
            t.duration_since(aos).unwrap_or_else(|e| e.duration())
        })
    };
    group.sort_by_key(|p| (p.record.id != c.record.id, dist(p)));
    let mut seen = std::collections::BTreeSet::new();
    group.retain(|p| seen.insert((p.record.station.clone(), p.record.input.clone())));
    if group.len() < 2 {
        return Ok(None);
    }
    let ids: Vec<&str> = group.iter().map(|p| p.record.id.as_str()).collect();
    // A merged pass of some of these copies already: it is replaced, its version bumped.
    let existing = all.iter().find(|p| {
        p.record.input == MERGED_INPUT
            && p.record
                .merged_from
                .iter()
                .any(|m| ids.contains(&m.as_str()))
    });
    let (id, version) = match existing {
        Some(e) => {
            let mut was: Vec<&str> = e.record.merged_from.iter().map(String::as_str).collect();
            let mut now = ids.clone();
            was.sort_unstable();
            now.sort_unstable();
            if was == now {
                return Ok(None);
            }
            (e.record.id.clone(), e.record.merge_version.unwrap_or(1) + 1)
        }
        None => {
            let first = group
                .iter()
                .filter_map(|p| p.record.aos_time())
                .min()
                .unwrap_or(aos);
            (pass_id(first, MERGED_INPUT), 1)
        }
    };
    let settings = shared.settings();
    // Per process: daemons sharing the archive may merge the same pass at once.
    let staging: PathBuf = passes_dir.join(format!(".{id}.{}.merging", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let spec = MergeSpec {
        profile: &c.profile,
        id: &id,
        station: Some(&settings.station),
        version,
        // The station passes stay in this archive: the merged pass refers to their CADUs.
        refer: true,
    };
    let record = match merge_passes(&group, &spec, &staging) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let dest = passes_dir.join(&id);
    if let Err(e) = publish(&staging, &dest) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    shared.pass_index.insert(&record);
    shared.webhooks.notify(
        crate::config::WebhookEvent::PassRecord,
        serde_json::to_value(&record).unwrap_or_default(),
    );
    if c.imaging {
        shared.products.submit(super::products::Job {
            pass_id: id.clone(),
            dir: dest,
            profile: c.profile.clone(),
            aos: record.aos_time().unwrap_or(aos),
            date: c.date,
        });
    }
    Ok(Some(id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_an_interrupted_merge_are_cleaned_and_a_moved_pass_restored() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        // Staging of a merge that died; a pass moved aside whose replacement never arrived;
        // one whose replacement did; an ordinary pass.
        for d in [
            ".20261206T101604Z-merged.77.merging/frames",
            "20261206T111604Z-merged.77.replaced",
            "20261206T121604Z-merged.78.replaced",
            "20261206T121604Z-merged",
            "20261206T101604Z-xband",
        ] {
            std::fs::create_dir_all(p.join(d)).unwrap();
        }
        std::fs::write(
            p.join("20261206T111604Z-merged.77.replaced/pass.json"),
            "{}",
        )
        .unwrap();
        assert_eq!(recover_leftovers(p), 3);
        let mut left: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "20261206T101604Z-xband",
                "20261206T111604Z-merged",
                "20261206T121604Z-merged"
            ]
        );
        assert!(p.join("20261206T111604Z-merged/pass.json").is_file());
        assert_eq!(recover_leftovers(p), 0);
    }
}
