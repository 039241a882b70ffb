//! `downlink archive migrate`: moves an existing local archive (raw passes, product files,
//! imported rasters, the STAC items and collections of its SQLite catalog) into an object
//! store and the target catalog, resumable and verified. Local data is never deleted.
//!
//! # What goes where
//!
//! - **Passes.** Every closed pass directory (`passes/ID`, products settled) goes up through
//!   the station's own uploader (`Target::upload_pass`): the same keys
//!   (`PREFIX/passes/ID/…`), the same verification (size, S3 ETag) and the same manifest
//!   (`passes/ID/uploaded.json`), so a station later configured with this store finds the
//!   passes uploaded and sends nothing again.
//! - **Other catalogued files** (imported rasters and alert products under `collections/`):
//!   every local asset file of an item outside `passes/` goes to `PREFIX/` + its
//!   archive-relative path (the archive's own layout), verified the same way, with a manifest
//!   per item in `ARCHIVE/migrate/COLLECTION/ITEM.json`.
//! - **Catalog.** Every collection, then every item whose files are all in the store, is
//!   upserted into the target catalog as the station publishes it: asset hrefs unchanged
//!   (the daemon's asset routes) and, on an S3 store, an `s3` alternate per local asset
//!   ([`upload::set_alternates`]). The upsert is the commit point: an item is published only
//!   after its bytes are in the store.
//!
//! # Resumable
//!
//! Each manifest is rewritten ([`archive::write_atomic`]) after each verified object, so a run
//! killed at any point (kill -9) loses at most the object in flight; the next run skips every
//! object its manifest holds with the local file's size and modification time. A second run
//! at once is refused (`ARCHIVE/.migrate.lock`).
//!
//! # Verified
//!
//! At the end (and alone with `--verify-only`): per pass, the objects under its key prefix are
//! exactly its files (count, names, bytes) plus its manifest; every object's bytes match the
//! local file: a single-part object by its S3 ETag (the MD5 the store computed), any other
//! (multipart, or a store without MD5 ETags) by the SHA-256 of its bytes read back; the target
//! catalog holds every one of the source's items (ids per collection; other items, e.g. another
//! station's in a shared catalog, are counted, not refused) and collections, each local
//! asset with its `s3` alternate and its object in the store. A migrate run (not
//! `--verify-only`) that finds objects that do not match forgets them in their manifests,
//! uploads them again and verifies once more.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use archive::catalog::{local_href, Catalog, SearchParams};
use object_store::path::Path as StorePath;
use object_store::ObjectMeta;
use serde::Serialize;
use sha2::Digest as _;

use crate::config::ArchiveConfig;
use crate::error::{Context as _, Error, Result};
use crate::serve::upload::{
    self, in_manifest, list_files, ready, save_manifest, Failure, LocalFile, Manifest, Outcome,
    Target, MANIFEST, PART,
};

/// Directory of the manifests of item files outside `passes/`, under the archive.
pub const STATE_DIR: &str = "migrate";
/// Lock file under the archive: one migration at a time.
pub const LOCK: &str = ".migrate.lock";

/// What to migrate, and how.
pub struct Request<'a> {
    /// The target: `path` is the local archive (the source), `store` the object store.
    pub archive: &'a ArchiveConfig,
    /// The source catalog (the archive's SQLite; `None`: the archive has none).
    pub source: Option<&'a dyn Catalog>,
    /// The target catalog.
    pub catalog: &'a dyn Catalog,
    /// The target catalog as shown to people (no password).
    pub catalog_name: String,
    /// Only say what would be done.
    pub dry_run: bool,
    /// Only verify what is there.
    pub verify_only: bool,
}

/// What a run did and found (printed, and `--json`).
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// The store (`s3://bucket/prefix`).
    pub store: String,
    /// The target catalog.
    pub catalog: String,
    /// Nothing was written.
    pub dry_run: bool,
    /// Closed pass directories.
    pub passes: u64,
    /// Pass directories left out: not closed or products pending (start the daemon once).
    pub passes_not_ready: Vec<String>,
    /// Items with local files outside `passes/`.
    pub item_file_sets: u64,
    /// Local files to be in the store.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects uploaded (and verified) by this run (dry run and verify-only: not yet).
    pub uploaded_objects: u64,
    /// Their bytes.
    pub uploaded_bytes: u64,
    /// Objects skipped: already uploaded and verified (in a manifest).
    pub skipped_objects: u64,
    /// Their bytes.
    pub skipped_bytes: u64,
    /// Objects uploaded again because the store's copy did not match.
    pub repaired_objects: u64,
    /// Collections of the source catalog.
    pub collections: u64,
    /// Items of the source catalog.
    pub items: u64,
    /// Items written to the target catalog (dry run: that would be).
    pub items_upserted: u64,
    /// Items the target catalog already held as they would be published.
    pub items_unchanged: u64,
    /// The verification, unless a dry run.
    pub verification: Option<Verification>,
    /// Failures and things left out (non-empty: the run did not complete).
    pub problems: Vec<String>,
}

impl Summary {
    /// Everything is in the store and the catalog, verified.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && self
                .verification
                .as_ref()
                .is_some_and(|v| v.mismatches.is_empty())
    }
}

/// The end-of-run check.
#[derive(Debug, Default, Serialize)]
pub struct Verification {
    /// Objects compared with their local files.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Of which checked by ETag (MD5), the others by SHA-256 read back.
    pub by_etag: u64,
    /// Items in the target catalog.
    pub target_items: u64,
    /// Of those, items the archive does not hold (another station's, in a shared catalog):
    /// counted, not a mismatch.
    pub other_items: u64,
    /// What does not match, one line each.
    pub mismatches: Vec<String>,
}

/// One set of files uploaded together under one manifest.
enum Unit {
    /// `passes/ID`.
    Pass { id: String, dir: PathBuf },
    /// An item's files outside `passes/` (archive-relative `rel`).
    Item {
        name: String,
        manifest: PathBuf,
        files: Vec<LocalFile>,
    },
}

impl Unit {
    fn name(&self) -> String {
        match self {
            Unit::Pass { id, .. } => format!("pass {id}"),
            Unit::Item { name, .. } => format!("item {name}"),
        }
    }

    /// Its files (archive-relative `rel` for items, pass-relative for passes) and manifest.
    fn files(&self) -> std::result::Result<Vec<LocalFile>, Failure> {
        match self {
            Unit::Pass { dir, .. } => list_files(dir).map_err(|e| Failure::local(dir, &e)),
            Unit::Item { files, .. } => Ok(files
                .iter()
                .map(|f| LocalFile {
                    rel: f.rel.clone(),
                    path: f.path.clone(),
                    size: f.size,
                    mtime_ns: f.mtime_ns,
                })
                .collect()),
        }
    }

    fn manifest(&self, url: &str) -> Option<Manifest> {
        let m = match self {
            Unit::Pass { dir, .. } => Manifest::load(dir),
            Unit::Item { manifest, .. } => std::fs::read(manifest)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
        };
        m.filter(|m: &Manifest| m.store == url)
    }

    /// The key of one of its files.
    fn key(&self, t: &Target, rel: &str) -> String {
        match self {
            Unit::Pass { id, .. } => t.key(&format!("passes/{id}/{rel}")),
            Unit::Item { .. } => t.key(rel),
        }
    }

    /// Forgets `rels` (and, for a pass, that it is complete): they are uploaded again.
    fn forget(&self, url: &str, rels: &[String]) -> std::result::Result<(), Failure> {
        let Some(mut m) = self.manifest(url) else {
            return Ok(());
        };
        for r in rels {
            m.objects.remove(r);
        }
        m.complete = false;
        match self {
            Unit::Pass { dir, .. } => save_manifest(dir, &m),
            Unit::Item { manifest, .. } => write_manifest(manifest, &m),
        }
    }
}

fn write_manifest(path: &Path, m: &Manifest) -> std::result::Result<(), Failure> {
    let fail = |e: String| Failure {
        reason: "local_io",
        error: format!("{}: {e}", path.display()),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    }
    let text = serde_json::to_vec_pretty(m).map_err(|e| fail(e.to_string()))?;
    archive::write_atomic(path, &text)
        .map(drop)
        .map_err(|e| fail(e.to_string()))
}

/// Every item of a catalog, all pages.
fn all_items(cat: &dyn Catalog) -> Result<Vec<stac::Item>> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = cat.search(&SearchParams {
            limit: Some(archive::catalog::store::MAX_LIMIT),
            token: token.take(),
            ..Default::default()
        })?;
        out.extend(page.items);
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

fn item_name(i: &stac::Item) -> String {
    format!("{}/{}", i.collection.as_deref().unwrap_or(""), i.id)
}

/// Holds `ARCHIVE/.migrate.lock` while a migration runs.
fn lock(archive: &Path) -> Result<std::fs::File> {
    let path = archive.join(LOCK);
    crate::lockfile::try_exclusive(&path)?.ok_or_else(|| {
        Error::Migrate(format!(
            "another migration of {} is running ({} is locked)",
            archive.display(),
            path.display()
        ))
    })
}

/// Closed pass directories (id, directory), and the ids of the others.
type PassDirs = (Vec<(String, PathBuf)>, Vec<String>);

/// The pass directories of the archive, by id.
fn pass_dirs(archive: &Path) -> Result<PassDirs> {
    let passes = archive.join("passes");
    let mut ready_ones = Vec::new();
    let mut not_ready = Vec::new();
    let rd = match std::fs::read_dir(&passes) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((ready_ones, not_ready)),
        Err(e) => return Err(e).with_context(|| format!("listing {}", passes.display())),
    };
    for e in rd {
        let e = e.with_context(|| format!("listing {}", passes.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        // Hidden (locks), staging and replaced directories are not passes.
        if upload::skipped(&name) || name.ends_with(".replaced") || !e.path().is_dir() {
            continue;
        }
        if ready(&e.path()) {
            ready_ones.push((name, e.path()));
        } else {
            not_ready.push(name);
        }
    }
    ready_ones.sort();
    not_ready.sort();
    Ok((ready_ones, not_ready))
}

/// The local asset files of `item` outside `passes/` (archive-relative), or why not.
fn item_files(archive: &Path, item: &stac::Item) -> std::result::Result<Vec<LocalFile>, String> {
    let mut out: Vec<LocalFile> = Vec::new();
    for (key, a) in &item.assets {
        let Some(rel) = local_href(&a.href) else {
            continue;
        };
        if rel.starts_with("passes/") || out.iter().any(|f| f.rel == rel) {
            continue;
        }
        let path = archive.join(rel);
        let meta = std::fs::metadata(&path).map_err(|e| {
            format!(
                "item {}: asset {key:?} file {}: {e}",
                item_name(item),
                path.display()
            )
        })?;
        out.push(LocalFile {
            rel: rel.to_owned(),
            path,
            size: meta.len(),
            mtime_ns: upload::mtime_ns(&meta),
        });
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// The item as a station with `t`'s store publishes it.
fn published(t: &Target, item: &stac::Item) -> stac::Item {
    let mut i = item.clone();
    if let Some(base) = &t.s3_base {
        upload::set_alternates(&mut i, base, "");
    }
    i
}

/// What [`publish_item`] did.
#[derive(Debug)]
pub struct ItemUpload {
    /// The store (`s3://bucket/prefix`).
    pub store: String,
    /// The item as now published (with the `s3` alternates).
    pub item: stac::Item,
    /// Objects sent now.
    pub uploaded_objects: u64,
    /// Bytes sent now.
    pub uploaded_bytes: u64,
    /// Objects the item's manifest already held (sent before, unchanged since).
    pub skipped_objects: u64,
}

/// Uploads the files of `item`, which `downlink archive add` has just committed to `catalog`
/// with local hrefs, into `archive`'s object store (as a migration would: the same keys,
/// manifest and verification), then publishes it again with the `s3` alternates. `Ok(None)`:
/// the store is the local archive (nothing to do). On `Err` the item stays published as it
/// was (its assets served by this station's asset route), and `downlink archive migrate`
/// finishes the upload later.
pub fn publish_item(
    archive: &ArchiveConfig,
    catalog: &dyn Catalog,
    item: &stac::Item,
) -> Result<Option<ItemUpload>> {
    let root = archive.path.as_path();
    let Some(t) = Target::open(archive)
        .map_err(|e| Error::Migrate(format!("store {}: {e}", archive.store.url(root))))?
    else {
        return Ok(None);
    };
    let files = item_files(root, item).map_err(Error::Migrate)?;
    let coll = item.collection.as_deref().unwrap_or("");
    archive::catalog::layout::validate_id("collection", coll)?;
    archive::catalog::layout::validate_id("item", &item.id)?;
    let unit = Unit::Item {
        name: item_name(item),
        manifest: root
            .join(STATE_DIR)
            .join(coll)
            .join(format!("{}.json", item.id)),
        files,
    };
    let mut s = Summary::default();
    let all = unit.files().map(|f| f.len() as u64).unwrap_or(0);
    let (n, b) = upload_unit(&t, &unit, &mut s).map_err(|f| {
        Error::Migrate(format!(
            "{}: upload to {} failed ({}): {}",
            unit.name(),
            t.url,
            f.reason,
            f.error
        ))
    })?;
    let item = published(&t, item);
    catalog
        .upsert_item(&item)
        .context("publishing the uploaded item")?;
    Ok(Some(ItemUpload {
        store: t.url.clone(),
        item,
        uploaded_objects: n,
        uploaded_bytes: b,
        skipped_objects: all.saturating_sub(n),
    }))
}

/// Runs a migration (or its dry run, or only its verification). `progress` gets one line per
/// step worth telling. `Err` only for what stops it from starting; failures of single passes,
/// objects or items are in [`Summary::problems`] and mismatches in its verification.
pub fn run(req: &Request<'_>, progress: &mut dyn FnMut(&str)) -> Result<Summary> {
    let archive = req.archive.path.as_path();
    if !archive.is_dir() {
        return Err(Error::Migrate(format!(
            "the archive {} is not a directory",
            archive.display()
        )));
    }
    let t = Target::open(req.archive)
        .map_err(|e| Error::Migrate(format!("store {}: {e}", req.archive.store.url(archive))))?
        .ok_or_else(|| {
            Error::Migrate(format!(
                "the store is the local archive {}: give --to s3://BUCKET[/PREFIX] (or set \
                 archive.store)",
                archive.display()
            ))
        })?;
    let _lock = if req.dry_run || req.verify_only {
        None
    } else {
        Some(lock(archive)?)
    };
    let mut s = Summary {
        store: t.url.clone(),
        catalog: req.catalog_name.clone(),
        dry_run: req.dry_run,
        ..Summary::default()
    };

    // The source: passes on disk, items and collections in the archive's catalog.
    let (passes, not_ready) = pass_dirs(archive)?;
    s.passes = passes.len() as u64;
    for id in &not_ready {
        s.problems.push(format!(
            "pass {id}: not closed or its products are pending (start the daemon once on the \
             local archive to settle it, then migrate again): not migrated"
        ));
    }
    s.passes_not_ready = not_ready;
    let (collections, items) = match req.source {
        Some(src) => (
            src.collections()
                .context("reading the archive's collections")?,
            all_items(src).context("reading the archive's items")?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    s.collections = collections.len() as u64;
    s.items = items.len() as u64;
    let mut units: Vec<Unit> = passes
        .iter()
        .map(|(id, dir)| Unit::Pass {
            id: id.clone(),
            dir: dir.clone(),
        })
        .collect();
    // Items that cannot be published (a local file missing).
    let mut unpublishable: BTreeSet<String> = BTreeSet::new();
    for item in &items {
        match item_files(archive, item) {
            Ok(files) if files.is_empty() => {}
            Ok(files) => {
                let coll = item.collection.as_deref().unwrap_or("");
                archive::catalog::layout::validate_id("collection", coll)?;
                archive::catalog::layout::validate_id("item", &item.id)?;
                units.push(Unit::Item {
                    name: item_name(item),
                    manifest: archive
                        .join(STATE_DIR)
                        .join(coll)
                        .join(format!("{}.json", item.id)),
                    files,
                });
            }
            Err(why) => {
                s.problems.push(format!("{why}: the item is not published"));
                unpublishable.insert(item_name(item));
            }
        }
        // Files in passes: the pass must be migrated.
        for a in item.assets.values() {
            let Some(rel) = local_href(&a.href) else {
                continue;
            };
            let Some(pass) = rel
                .strip_prefix("passes/")
                .and_then(|r| r.split('/').next())
            else {
                continue;
            };
            if !passes.iter().any(|(id, _)| id == pass) {
                s.problems.push(format!(
                    "item {}: its files are in pass {pass}, which is not migrated: the item is \
                     not published",
                    item_name(item)
                ));
                unpublishable.insert(item_name(item));
            }
        }
    }
    s.item_file_sets = units
        .iter()
        .filter(|u| matches!(u, Unit::Item { .. }))
        .count() as u64;

    // The bytes.
    let mut failed_units: BTreeSet<String> = BTreeSet::new();
    for u in &units {
        let files = match u.files() {
            Ok(f) => f,
            Err(f) => {
                s.problems.push(format!("{}: {}", u.name(), f.error));
                failed_units.insert(u.name());
                continue;
            }
        };
        let m = u.manifest(&t.url);
        for f in &files {
            s.objects += 1;
            s.bytes += f.size;
            if in_manifest(m.as_ref(), f) {
                s.skipped_objects += 1;
                s.skipped_bytes += f.size;
            } else if req.dry_run || req.verify_only {
                s.uploaded_objects += 1;
                s.uploaded_bytes += f.size;
            }
        }
        if req.dry_run || req.verify_only {
            continue;
        }
        match upload_unit(&t, u, &mut s) {
            Ok((n, b)) => {
                if n > 0 {
                    progress(&format!("{}: {n} object(s), {b} bytes uploaded", u.name()));
                }
            }
            Err(f) => {
                s.problems.push(format!(
                    "{}: upload failed ({}): {}",
                    u.name(),
                    f.reason,
                    f.error
                ));
                failed_units.insert(u.name());
            }
        }
    }

    // The catalog: collections, then each item whose bytes are in the store.
    if !req.verify_only {
        for c in &collections {
            if req.dry_run {
                continue;
            }
            if let Err(e) = req.catalog.upsert_collection(c) {
                s.problems.push(format!(
                    "collection {}: not written to the catalog: {e}",
                    c.id
                ));
            }
        }
        for item in &items {
            let name = item_name(item);
            if unpublishable.contains(&name) || !item_units_ok(item, &failed_units) {
                continue;
            }
            let want = published(&t, item);
            let coll = item.collection.as_deref().unwrap_or("");
            let have = req.catalog.item(coll, &item.id);
            let same = matches!(&have, Ok(Some(h)) if same_item(h, &want));
            if same {
                s.items_unchanged += 1;
                continue;
            }
            s.items_upserted += 1;
            if req.dry_run {
                continue;
            }
            if let Err(e) = req.catalog.upsert_item(&want) {
                s.items_upserted -= 1;
                s.problems
                    .push(format!("item {name}: not written to the catalog: {e}"));
            }
        }
    }
    if req.dry_run {
        return Ok(s);
    }

    // The check; a migrate run repairs objects that do not match, once.
    let mut v = verify(&t, &units, &items, &collections, req.catalog)?;
    if !req.verify_only && !v.bad.is_empty() {
        let mut again = 0u64;
        for (i, rels) in &v.bad {
            let Some(u) = units.get(*i) else { continue };
            progress(&format!(
                "{}: {} object(s) in the store do not match: uploading again",
                u.name(),
                rels.len()
            ));
            if let Err(f) = u.forget(&t.url, rels) {
                s.problems.push(format!("{}: {}", u.name(), f.error));
                continue;
            }
            match upload_unit(&t, u, &mut s) {
                Ok((n, _)) => again += n,
                Err(f) => s.problems.push(format!(
                    "{}: upload failed ({}): {}",
                    u.name(),
                    f.reason,
                    f.error
                )),
            }
        }
        s.repaired_objects = again;
        v = verify(&t, &units, &items, &collections, req.catalog)?;
    }
    s.verification = Some(v.result);
    Ok(s)
}

/// Whether every unit the item's files are in went up.
fn item_units_ok(item: &stac::Item, failed: &BTreeSet<String>) -> bool {
    if failed.contains(&format!("item {}", item_name(item))) {
        return false;
    }
    item.assets.values().all(|a| {
        local_href(&a.href)
            .and_then(|r| r.strip_prefix("passes/"))
            .and_then(|r| r.split('/').next())
            .is_none_or(|pass| !failed.contains(&format!("pass {pass}")))
    })
}

/// The same item as far as publishing goes: the same JSON.
fn same_item(a: &stac::Item, b: &stac::Item) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Uploads what the unit's manifest lacks; (objects, bytes) sent.
fn upload_unit(t: &Target, u: &Unit, s: &mut Summary) -> std::result::Result<(u64, u64), Failure> {
    let (mut n, mut b) = (0u64, 0u64);
    match u {
        Unit::Pass { id, dir } => {
            let mut sent = |size: u64| {
                n += 1;
                b += size;
            };
            match t.upload_pass(dir, id, &|| false, &mut sent, &mut || Ok(()))? {
                Outcome::Done { .. } => {}
                Outcome::NotReady | Outcome::Interrupted => {
                    return Err(Failure {
                        reason: "local_io",
                        error: "the pass changed during the migration (no longer closed)".into(),
                    })
                }
            }
        }
        Unit::Item {
            name,
            manifest,
            files,
        } => {
            let mut m = u.manifest(&t.url).unwrap_or_else(|| Manifest {
                store: t.url.clone(),
                pass: name.clone(),
                ..Manifest::default()
            });
            for f in files {
                if in_manifest(Some(&m), f) {
                    continue;
                }
                let key = t.key(&f.rel);
                let obj = t.upload_file(&key, f, &|| false)?.ok_or_else(|| Failure {
                    reason: "store",
                    error: format!("{key}: upload interrupted"),
                })?;
                m.complete = false;
                m.objects.insert(f.rel.clone(), obj);
                write_manifest(manifest, &m)?;
                n += 1;
                b += f.size;
            }
            if !m.complete {
                m.complete = true;
                write_manifest(manifest, &m)?;
            }
        }
    }
    s.uploaded_objects += n;
    s.uploaded_bytes += b;
    Ok((n, b))
}

struct Checked {
    result: Verification,
    /// Objects that do not match, by unit index: (unit, relative paths).
    bad: BTreeMap<usize, Vec<String>>,
}

fn store_err(key: &str, e: &object_store::Error) -> Error {
    Error::Migrate(format!("{key}: {}", crate::config::error_chain(e)))
}

/// Every object under `prefix`, by key.
fn list(t: &Target, prefix: &str) -> Result<BTreeMap<String, ObjectMeta>> {
    use futures::TryStreamExt as _;
    let store = t.store.clone();
    let p = StorePath::from(prefix);
    let metas: Vec<ObjectMeta> =
        t.rt.block_on(async move { store.list(Some(&p)).try_collect().await })
            .map_err(|e| store_err(prefix, &e))?;
    Ok(metas
        .into_iter()
        .map(|m| (m.location.to_string(), m))
        .collect())
}

/// MD5 and SHA-256 of a local file, hex.
fn hash_local(path: &Path) -> std::io::Result<(String, String)> {
    let mut f = std::fs::File::open(path)?;
    let (mut md5, mut sha) = (md5::Md5::new(), sha2::Sha256::new());
    let mut buf = vec![0u8; PART];
    loop {
        let n = crate::replay::read_full(&mut f, &mut buf)?;
        let Some(chunk) = buf.get(..n) else { break };
        if n == 0 {
            break;
        }
        md5::Digest::update(&mut md5, chunk);
        sha2::Digest::update(&mut sha, chunk);
    }
    Ok((
        upload::hex(&md5::Digest::finalize(md5)),
        upload::hex(&sha2::Digest::finalize(sha)),
    ))
}

/// SHA-256 of an object's bytes, read back in [`PART`]-byte ranges.
fn hash_remote(t: &Target, key: &str, size: u64) -> Result<String> {
    let mut sha = sha2::Sha256::new();
    let path = StorePath::from(key);
    let mut at = 0u64;
    while at < size {
        let end = (at + PART as u64).min(size);
        let (store, p) = (t.store.clone(), path.clone());
        let bytes =
            t.rt.block_on(async move { store.get_range(&p, at..end).await })
                .map_err(|e| store_err(key, &e))?;
        sha2::Digest::update(&mut sha, &bytes);
        at = end;
    }
    Ok(upload::hex(&sha2::Digest::finalize(sha)))
}

/// Compares one object with its local file: `None` when they match, else why not.
fn check_object(
    t: &Target,
    key: &str,
    meta: &ObjectMeta,
    f: &LocalFile,
    v: &mut Verification,
) -> Result<Option<String>> {
    if meta.size != f.size {
        return Ok(Some(format!(
            "{key}: {} bytes in the store, {} in {}",
            meta.size,
            f.size,
            f.path.display()
        )));
    }
    let (md5, sha) =
        hash_local(&f.path).with_context(|| format!("reading {}", f.path.display()))?;
    v.objects += 1;
    v.bytes += f.size;
    let etag = meta.e_tag.as_deref().map(|e| e.trim_matches('"'));
    if t.verify_etag && f.size <= PART as u64 && etag == Some(md5.as_str()) {
        v.by_etag += 1;
        return Ok(None);
    }
    let remote = hash_remote(t, key, meta.size)?;
    Ok((remote != sha).then(|| {
        format!(
            "{key}: its bytes differ from {} (SHA-256 {remote} in the store, {sha} here)",
            f.path.display()
        )
    }))
}

/// The end-of-run check (see the module docs).
fn verify(
    t: &Target,
    units: &[Unit],
    items: &[stac::Item],
    collections: &[stac::Collection],
    catalog: &dyn Catalog,
) -> Result<Checked> {
    let mut v = Verification::default();
    let mut bad: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    // The key of every local file: an item asset's file must be one (its bytes are checked
    // with the unit's, and a mismatch is told there once).
    let mut covered: BTreeSet<String> = BTreeSet::new();
    for (i, u) in units.iter().enumerate() {
        let files = match u.files() {
            Ok(f) => f,
            Err(f) => {
                v.mismatches.push(format!("{}: {}", u.name(), f.error));
                continue;
            }
        };
        covered.extend(files.iter().map(|f| u.key(t, &f.rel)));
        let mut wrong = |rel: &str, why: String, v: &mut Verification| {
            v.mismatches.push(why);
            bad.entry(i).or_default().push(rel.to_owned());
        };
        match u {
            Unit::Pass { id, .. } => {
                let mut remote = list(t, &t.key(&format!("passes/{id}")))?;
                let manifest_key = u.key(t, MANIFEST);
                if remote.remove(&manifest_key).is_none() {
                    // Forgetting it marks the pass incomplete: the manifest goes up again.
                    wrong(
                        MANIFEST,
                        format!("{manifest_key}: not in the store (pass {id} not marked uploaded)"),
                        &mut v,
                    );
                }
                for f in &files {
                    let key = u.key(t, &f.rel);
                    match remote.remove(&key) {
                        None => wrong(&f.rel, format!("{key}: not in the store"), &mut v),
                        Some(meta) => match check_object(t, &key, &meta, f, &mut v)? {
                            None => {}
                            Some(why) => wrong(&f.rel, why, &mut v),
                        },
                    }
                }
                for (key, meta) in &remote {
                    v.mismatches.push(format!(
                        "{key}: in the store ({} bytes) but not a file of pass {id}",
                        meta.size
                    ));
                }
            }
            Unit::Item { .. } => {
                for f in &files {
                    let key = u.key(t, &f.rel);
                    let (store, path) = (t.store.clone(), StorePath::from(key.as_str()));
                    match t.rt.block_on(async move { store.head(&path).await }) {
                        Err(object_store::Error::NotFound { .. }) => {
                            wrong(&f.rel, format!("{key}: not in the store"), &mut v);
                        }
                        Err(e) => return Err(store_err(&key, &e)),
                        Ok(meta) => match check_object(t, &key, &meta, f, &mut v)? {
                            None => {}
                            Some(why) => wrong(&f.rel, why, &mut v),
                        },
                    }
                }
            }
        }
    }

    // The catalog: the same collections and items, each local asset in the store.
    let target = all_items(catalog).context("reading the target catalog's items")?;
    v.target_items = target.len() as u64;
    let have: BTreeMap<String, &stac::Item> = target.iter().map(|i| (item_name(i), i)).collect();
    let want: BTreeSet<String> = items.iter().map(item_name).collect();
    let target_collections: BTreeSet<String> = catalog
        .collections()
        .context("reading the target catalog's collections")?
        .into_iter()
        .map(|c| c.id)
        .collect();
    for c in collections {
        if !target_collections.contains(&c.id) {
            v.mismatches
                .push(format!("collection {}: not in the target catalog", c.id));
        }
    }
    for item in items {
        let name = item_name(item);
        let Some(got) = have.get(&name) else {
            v.mismatches
                .push(format!("item {name}: not in the target catalog"));
            continue;
        };
        let expected = published(t, item);
        for (k, a) in &expected.assets {
            let Some(rel) = local_href(&a.href) else {
                continue;
            };
            let key = t.key(rel);
            if !covered.contains(&key) {
                v.mismatches.push(format!(
                    "item {name}: asset {k:?} ({rel}) is not a file that went to the store ({key})"
                ));
            }
            let theirs = got.assets.get(k);
            if theirs.map(|x| &x.href) != Some(&a.href)
                || theirs.and_then(|x| x.additional_fields.get("alternate"))
                    != a.additional_fields.get("alternate")
            {
                v.mismatches.push(format!(
                    "item {name}: asset {k:?} in the target catalog is not as published (href \
                     or s3 alternate)"
                ));
            }
        }
    }
    // A catalog shared by a station network holds other stations' items too.
    v.other_items = have.keys().filter(|name| !want.contains(*name)).count() as u64;
    Ok(Checked { result: v, bad })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn passes_are_closed_directories_not_staging_or_locks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("passes");
        for (name, closed) in [
            ("20200101T000000Z-a", true),
            ("20200102T000000Z-b", false),
            ("20200103T000000Z-c.4242.replaced", true),
            ("20200104T000000Z-d.tmp-1-2", true),
            (".hidden", true),
        ] {
            std::fs::create_dir_all(p.join(name)).unwrap();
            if closed {
                std::fs::write(p.join(name).join("pass.json"), b"{}").unwrap();
            }
        }
        std::fs::write(p.join(".merge.lock"), b"").unwrap();
        let (ready, not_ready) = pass_dirs(d.path()).unwrap();
        let ids: Vec<&str> = ready.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["20200101T000000Z-a"]);
        assert_eq!(not_ready, ["20200102T000000Z-b"]);
        // No passes directory at all: nothing to do.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(pass_dirs(empty.path()).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn an_items_files_outside_passes_and_a_missing_one() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("collections/c/2021/08/12/i");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.tif"), b"tif").unwrap();
        let mut item = stac::Item::new("i");
        item.collection = Some("c".into());
        item.assets
            .insert("a".into(), stac::Asset::new("passes/P/products/a.tif"));
        item.assets.insert(
            "b".into(),
            stac::Asset::new("collections/c/2021/08/12/i/b.tif"),
        );
        item.assets
            .insert("w".into(), stac::Asset::new("https://example.com/w.tif"));
        let files = item_files(d.path(), &item).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].rel, "collections/c/2021/08/12/i/b.tif");
        assert_eq!(files[0].size, 3);
        item.assets.insert(
            "gone".into(),
            stac::Asset::new("collections/c/2021/08/12/i/gone.tif"),
        );
        let why = item_files(d.path(), &item).unwrap_err();
        assert!(why.contains("item c/i: asset \"gone\""), "{why}");
        let failed: BTreeSet<String> = ["pass P".to_owned()].into();
        assert!(!item_units_ok(&item, &failed));
        assert!(item_units_ok(&item, &BTreeSet::new()));
    }

    #[test]
    fn a_summary_is_ok_only_verified_without_problems() {
        let mut s = Summary::default();
        assert!(!s.ok(), "not verified");
        s.verification = Some(Verification::default());
        assert!(s.ok());
        s.problems.push("pass x: not closed".into());
        assert!(!s.ok());
        s.problems.clear();
        s.verification
            .as_mut()
            .unwrap()
            .mismatches
            .push("k: differs".into());
        assert!(!s.ok());
    }
}
