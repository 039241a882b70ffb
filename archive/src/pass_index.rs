//! The index `/api/v1/passes` pages through: the summary of every pass record under
//! `ARCHIVE/passes/`, ordered by (AOS, id). It is built once (by a thread at start, or by the
//! first request if that comes first) by reading every `pass.json`; after that a record this process writes is added as it is written
//! ([`PassIndex::insert`]), and a request reads only what changed on disk: when the passes
//! directory's mtime or link count moved (another process added or removed a pass directory),
//! its names are listed and only new ones are read; pass directories still without a record
//! (a pass in progress) are checked for one on each request. A request never parses every record.
//! A node with an object store also lists the passes whose records are only in the store
//! ([`PassIndex::insert_from_store`]: an API node, or other stations' passes); a record on disk
//! for the same id wins.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use crate::pass::valid_pass_id;
use crate::record::{PassRecord, PassSummary};

/// Sort key: AOS (ms since the epoch), then pass id.
pub type Key = (u64, String);

/// Passes a page holds unless asked otherwise.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest page.
pub const MAX_LIMIT: usize = 1000;

/// Summaries of the pass records on disk.
#[derive(Debug)]
pub struct PassIndex {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    built: bool,
    /// The passes directory's (mtime, link count) when its names were last listed.
    stamp: Option<(SystemTime, u64)>,
    by_key: BTreeMap<Key, PassSummary>,
    key_of: HashMap<String, u64>,
    /// Pass directories without a `pass.json` yet.
    without_record: BTreeSet<String>,
    /// Pass directories whose `pass.json` could not be read (logged once, not listed).
    unreadable: BTreeSet<String>,
    /// Passes listed from records in the object store, with no directory here (an API node,
    /// or another station's passes): kept when the directory is listed.
    in_store: BTreeSet<String>,
}

/// One page of `/api/v1/passes`, newest first.
#[derive(Debug)]
pub struct Page {
    /// The passes of this page.
    pub passes: Vec<PassSummary>,
    /// Cursor of the next (older) page, if there is one.
    pub next: Option<String>,
    /// Passes listed in all.
    pub total: usize,
}

/// The cursor after `key`: `<aos ms>.<id>` (ids hold no `.`).
pub fn cursor(key: &Key) -> String {
    format!("{}.{}", key.0, key.1)
}

impl Inner {
    fn insert(&mut self, key: Key, summary: PassSummary) {
        if let Some(old) = self.key_of.insert(key.1.clone(), key.0) {
            if old != key.0 {
                self.by_key.remove(&(old, key.1.clone()));
            }
        }
        self.without_record.remove(&key.1);
        self.unreadable.remove(&key.1);
        self.by_key.insert(key, summary);
    }

    fn remove(&mut self, id: &str) {
        if let Some(ms) = self.key_of.remove(id) {
            self.by_key.remove(&(ms, id.to_owned()));
        }
        self.without_record.remove(id);
        self.unreadable.remove(id);
    }

    /// Reads `id`'s record if it has one.
    fn load(&mut self, dir: &std::path::Path, id: &str) {
        let path = dir.join(id).join("pass.json");
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.without_record.insert(id.to_owned());
                return;
            }
            Err(e) => {
                if self.unreadable.insert(id.to_owned()) {
                    tracing::warn!(pass = %id, error = %e, "pass record unreadable: not listed");
                }
                return;
            }
        };
        match serde_json::from_slice::<PassRecord>(&text) {
            Ok(mut rec) => {
                if rec.id.is_empty() {
                    id.clone_into(&mut rec.id);
                }
                let key = (rec.sort_key().0, id.to_owned());
                self.insert(key, rec.summary());
                // The record on disk wins over the store's copy.
                self.in_store.remove(id);
            }
            Err(e) => {
                self.without_record.remove(id);
                if self.unreadable.insert(id.to_owned()) {
                    tracing::warn!(pass = %id, error = %e, "pass record is not valid: not listed");
                }
            }
        }
    }
}

impl PassIndex {
    /// An index of the records under `dir` (`ARCHIVE/passes`), built on first use.
    pub fn new(dir: PathBuf) -> PassIndex {
        PassIndex {
            dir,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A record this process has just written.
    pub fn insert(&self, rec: &PassRecord) {
        let mut inner = self.lock();
        inner.insert(rec.sort_key(), rec.summary());
    }

    /// The ids of `ids` the index does not list (to be read from the store).
    pub fn unlisted(&self, ids: Vec<String>) -> Vec<String> {
        let inner = self.lock();
        ids.into_iter()
            .filter(|id| {
                !inner.key_of.contains_key(id)
                    && !inner.without_record.contains(id)
                    && !inner.unreadable.contains(id)
            })
            .collect()
    }

    /// A record read from the object store, of a pass with no directory here: listed like the
    /// others until a record for it appears on disk, which then wins.
    pub fn insert_from_store(&self, rec: &PassRecord) {
        let mut inner = self.lock();
        let on_disk = inner.key_of.contains_key(&rec.id) && !inner.in_store.contains(&rec.id);
        if on_disk || inner.without_record.contains(&rec.id) || !valid_pass_id(&rec.id) {
            return;
        }
        inner.in_store.insert(rec.id.clone());
        inner.insert(rec.sort_key(), rec.summary());
    }

    /// Brings the index up to date with the disk (blocking: call off the async runtime).
    pub fn refresh(&self) {
        use std::os::unix::fs::MetadataExt;
        // Taken before listing, so a change during the listing is seen next time.
        let stamp = std::fs::metadata(&self.dir)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.nlink())));
        let mut inner = self.lock();
        if !inner.built || stamp != inner.stamp {
            let mut names = BTreeSet::new();
            if let Ok(rd) = std::fs::read_dir(&self.dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if valid_pass_id(&name) {
                        names.insert(name);
                    }
                }
            }
            let gone: Vec<String> = inner
                .key_of
                .keys()
                .chain(inner.without_record.iter())
                .chain(inner.unreadable.iter())
                .filter(|id| !names.contains(*id) && !inner.in_store.contains(*id))
                .cloned()
                .collect();
            for id in gone {
                inner.remove(&id);
            }
            for name in names {
                if (!inner.key_of.contains_key(&name) || inner.in_store.contains(&name))
                    && !inner.without_record.contains(&name)
                    && !inner.unreadable.contains(&name)
                {
                    inner.load(&self.dir, &name);
                }
            }
            inner.stamp = stamp;
            inner.built = true;
        }
        let waiting: Vec<String> = inner
            .without_record
            .iter()
            .filter(|id| self.dir.join(id).join("pass.json").exists())
            .cloned()
            .collect();
        for id in waiting {
            inner.load(&self.dir, &id);
        }
    }

    /// The key a `before` parameter names: a cursor (`<aos ms>.<id>`) or the id of a listed
    /// pass. `None`: neither.
    pub fn resolve(&self, before: &str) -> Option<Key> {
        if let Some((ms, id)) = before.split_once('.') {
            let ms = ms.parse().ok()?;
            return valid_pass_id(id).then(|| (ms, id.to_owned()));
        }
        let inner = self.lock();
        inner.key_of.get(before).map(|ms| (*ms, before.to_owned()))
    }

    /// Up to `limit` passes older than `before` (all if `None`), newest first, with
    /// `pending` (closed passes whose record is not on disk yet) merged in.
    pub fn page(&self, before: Option<&Key>, limit: usize, pending: Vec<PassSummary>) -> Page {
        let inner = self.lock();
        let pending: Vec<(Key, PassSummary)> = pending
            .into_iter()
            .filter(|s| !inner.key_of.contains_key(&s.id))
            .map(|s| {
                let ms = s
                    .aos
                    .as_deref()
                    .and_then(|a| humantime::parse_rfc3339_weak(a).ok())
                    .or_else(|| crate::record::aos_of_id(&s.id))
                    .map_or(0, crate::record::unix_ms);
                ((ms, s.id.clone()), s)
            })
            .collect();
        let total = inner.by_key.len() + pending.len();
        let below = |k: &Key| before.is_none_or(|b| k < b);
        let mut list: Vec<(Key, PassSummary)> = match before {
            Some(b) => inner
                .by_key
                .range(..b.clone())
                .rev()
                .take(limit.saturating_add(1))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => inner
                .by_key
                .iter()
                .rev()
                .take(limit.saturating_add(1))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        list.extend(pending.into_iter().filter(|(k, _)| below(k)));
        list.sort_by(|a, b| b.0.cmp(&a.0));
        let more = list.len() > limit;
        list.truncate(limit);
        let next = if more {
            list.last().map(|(k, _)| cursor(k))
        } else {
            None
        };
        Page {
            passes: list.into_iter().map(|(_, s)| s).collect(),
            next,
            total,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn write(dir: &std::path::Path, id: &str, aos: &str) {
        let d = dir.join(id);
        std::fs::create_dir_all(&d).unwrap();
        let rec = serde_json::json!({"id": id, "input": "x", "aos": aos, "los": aos,
            "counters": {"frames": {"good": 1}}});
        std::fs::write(d.join("pass.json"), rec.to_string()).unwrap();
    }

    #[test]
    fn pages_newest_first_and_sees_new_and_removed_passes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("passes");
        for i in 0..25 {
            let id = format!("202611{:02}T083000Z-x", i + 1);
            write(&dir, &id, &format!("2026-11-{:02}T08:30:00.000Z", i + 1));
        }
        std::fs::create_dir_all(dir.join("20261201T000000Z-x")).unwrap(); // in progress
        let idx = PassIndex::new(dir.clone());
        idx.refresh();
        let p = idx.page(None, 10, vec![]);
        assert_eq!(p.total, 25);
        assert_eq!(p.passes.len(), 10);
        assert_eq!(p.passes[0].id, "20261125T083000Z-x");
        let key = idx.resolve(p.next.as_deref().unwrap()).unwrap();
        let p2 = idx.page(Some(&key), 10, vec![]);
        assert_eq!(p2.passes[0].id, "20261115T083000Z-x");
        let last = idx.resolve("20261106T083000Z-x").unwrap();
        let p3 = idx.page(Some(&last), 10, vec![]);
        assert_eq!(p3.passes.len(), 5);
        assert!(p3.next.is_none());
        // The pass in progress gets its record; another appears; one is removed.
        write(&dir, "20261201T000000Z-x", "2026-12-01T00:00:00.000Z");
        write(&dir, "20261202T000000Z-x", "2026-12-02T00:00:00.000Z");
        std::fs::remove_dir_all(dir.join("20261101T083000Z-x")).unwrap();
        idx.refresh();
        let p = idx.page(None, 3, vec![]);
        assert_eq!(p.total, 26);
        assert_eq!(p.passes[0].id, "20261202T000000Z-x");
        assert_eq!(p.passes[1].id, "20261201T000000Z-x");
        assert!(idx.resolve("20261101T083000Z-x").is_none());
        assert!(idx.resolve("1.../x").is_none());
    }

    fn record(id: &str, aos: &str, good: u64) -> PassRecord {
        serde_json::from_value(serde_json::json!({"id": id, "input": "x", "aos": aos,
            "los": aos, "counters": {"frames": {"good": good}}}))
        .unwrap()
    }

    #[test]
    fn passes_from_the_store_are_listed_kept_and_yield_to_the_disk() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("passes");
        write(&dir, "20261101T083000Z-x", "2026-11-01T08:30:00.000Z");
        let idx = PassIndex::new(dir.clone());
        idx.refresh();
        let ids = |idx: &PassIndex| -> Vec<String> {
            idx.page(None, 100, vec![])
                .passes
                .into_iter()
                .map(|p| p.id)
                .collect()
        };
        let listed = vec![
            "20261101T083000Z-x".to_owned(),
            "20261102T083000Z-y".to_owned(),
        ];
        assert_eq!(idx.unlisted(listed.clone()), vec!["20261102T083000Z-y"]);
        // The disk's pass is not replaced by the store's record of the same id.
        idx.insert_from_store(&record("20261101T083000Z-x", "2026-11-01T08:30:00.000Z", 7));
        idx.insert_from_store(&record("20261102T083000Z-y", "2026-11-02T08:30:00.000Z", 5));
        idx.insert_from_store(&record("../etc", "2026-11-02T08:30:00.000Z", 5));
        assert_eq!(ids(&idx), ["20261102T083000Z-y", "20261101T083000Z-x"]);
        assert!(idx.unlisted(listed).is_empty());
        // A directory listing (another pass arrives) keeps the store's pass.
        write(&dir, "20261103T083000Z-x", "2026-11-03T08:30:00.000Z");
        idx.refresh();
        assert_eq!(
            ids(&idx),
            [
                "20261103T083000Z-x",
                "20261102T083000Z-y",
                "20261101T083000Z-x"
            ]
        );
        // The store's pass copied here: the disk's record (4 good frames) wins.
        write(&dir, "20261102T083000Z-y", "2026-11-02T08:30:00.000Z");
        let d = dir.join("20261102T083000Z-y").join("pass.json");
        let text = std::fs::read_to_string(&d)
            .unwrap()
            .replace("\"good\":1", "\"good\":4");
        std::fs::write(&d, text).unwrap();
        idx.refresh();
        let p = idx.page(None, 100, vec![]);
        assert_eq!(p.total, 3);
        let y = p
            .passes
            .iter()
            .find(|s| s.id == "20261102T083000Z-y")
            .unwrap();
        assert_eq!(serde_json::to_value(y).unwrap()["frames_good"], 4, "{y:?}");
        // A pass removed from the disk is gone, as before, until a store listing adds it back.
        std::fs::remove_dir_all(dir.join("20261102T083000Z-y")).unwrap();
        idx.refresh();
        assert_eq!(ids(&idx), ["20261103T083000Z-x", "20261101T083000Z-x"]);
    }
}
