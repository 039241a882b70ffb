//! SQLite implementation of [`Catalog`].
//!
//! WAL journal, one writer connection behind a `Mutex`, a small pool of read-only
//! connections (readers never block the writer in WAL mode). Schema (version 3):
//!
//! ```sql
//! schema_version(version INTEGER NOT NULL)
//! collections(id TEXT PRIMARY KEY, json TEXT NOT NULL)
//! items(rowid INTEGER PRIMARY KEY, collection TEXT NOT NULL REFERENCES collections(id),
//!       id TEXT NOT NULL, datetime_us INTEGER NOT NULL,   -- sort key
//!       start_us INTEGER NOT NULL, end_us INTEGER NOT NULL, -- time range, inclusive
//!       geometry TEXT NOT NULL,                            -- GeoJSON footprint
//!       json TEXT NOT NULL, UNIQUE(collection, id))
//! items_sort  ON items(datetime_us DESC, id, collection)
//! items_time  ON items(start_us, end_us)
//! items_rtree USING rtree(rid, minx, maxx, miny, maxy, +item_rowid)
//! assets(item_rowid INTEGER NOT NULL, key TEXT NOT NULL, href TEXT NOT NULL,  -- version 2:
//!        media_type TEXT, PRIMARY KEY(item_rowid, key))      -- local hrefs, what may be served
//! assets_href ON assets(href)
//! items_id ON items(id)                                      -- version 3
//! items_coll_sort ON items(collection, datetime_us DESC, id)  -- version 3
//! ```
//!
//! The database file can vanish under the open connections (the archive directory deleted or
//! moved while the daemon runs): SQLite would go on writing into the unlinked file and lose
//! everything. Every write, and every read, first compares the (device, inode) of the file at
//! the path with the one opened. A missing file in a missing directory refuses the call
//! ([`Error::Gone`], counted); once the directory exists again, or another file is at
//! the path, the database is reopened there (created empty if need be: the entries of the
//! vanished file are not carried over, they went with the files they described).
//!
//! An item whose bbox crosses the antimeridian (`w > e`) gets two R*Tree boxes. The R*Tree
//! stores 32-bit floats rounded outwards, so it is a prefilter only; the exact footprint
//! test runs on the candidates (`geom::Shape::intersects`). Link SQLite from the system
//! (no `bundled`): GDAL links the system libsqlite3 too.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use stac::{Bbox, Collection, Item};

use super::cql;
use super::geom::Shape;
use super::layout::validate_id;
use super::store::{
    invalid, item_times, local_href, AssetRef, Catalog, CatalogStats, ItemTimes, SearchPage,
    SearchParams, MAX_LIST,
};
use crate::Error;

const SCHEMA_VERSION: i64 = 3;
const READER_POOL: usize = 4;

const MIGRATIONS: &[&str] = &[
    // version 1
    "CREATE TABLE collections(id TEXT PRIMARY KEY, json TEXT NOT NULL);
     CREATE TABLE items(
        rowid INTEGER PRIMARY KEY,
        collection TEXT NOT NULL REFERENCES collections(id),
        id TEXT NOT NULL,
        datetime_us INTEGER NOT NULL,
        start_us INTEGER NOT NULL,
        end_us INTEGER NOT NULL,
        geometry TEXT NOT NULL,
        json TEXT NOT NULL,
        UNIQUE(collection, id));
     CREATE INDEX items_sort ON items(datetime_us DESC, id, collection);
     CREATE INDEX items_time ON items(start_us, end_us);
     CREATE VIRTUAL TABLE items_rtree USING rtree(rid, minx, maxx, miny, maxy, +item_rowid INTEGER);",
    // version 2 (filled from the stored items by `backfill_assets`)
    "CREATE TABLE assets(
        item_rowid INTEGER NOT NULL,
        key TEXT NOT NULL,
        href TEXT NOT NULL,
        media_type TEXT,
        PRIMARY KEY(item_rowid, key));
     CREATE INDEX assets_href ON assets(href);",
    // version 3: a search by ids, and the newest items of a collection, without scanning or
    // sorting every item (27 ms and 225 ms at 100k items before, `scripts/bench-catalog.sh`).
    "CREATE INDEX items_id ON items(id);
     CREATE INDEX items_coll_sort ON items(collection, datetime_us DESC, id);",
];

fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Sqlite { context, source }
}
fn js(context: &'static str) -> impl FnOnce(serde_json::Error) -> Error {
    move |source| Error::Json { context, source }
}

/// SQLite-backed catalog.
pub struct SqliteCatalog {
    path: PathBuf,
    writer: Mutex<Writer>,
    readers: Mutex<Readers>,
    write_failures: AtomicU64,
    reopened: AtomicU64,
}

/// Which file a connection has open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn file_id(path: &Path) -> std::io::Result<FileId> {
    std::fs::metadata(path).map(|m| FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

struct Writer {
    conn: Connection,
    file: FileId,
}

/// Idle read-only connections, all on `file`.
struct Readers {
    conns: Vec<Connection>,
    file: FileId,
}

/// Opens the database file read-write (creating it), WAL, migrated.
fn open_writer(path: &Path) -> Result<Writer, Error> {
    let mut conn = Connection::open(path).map_err(sql("open"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sql("busy_timeout"))?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql("journal_mode=WAL"))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql("synchronous"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql("foreign_keys"))?;
    migrate(&mut conn)?;
    cql::register_functions(&conn).map_err(sql("register functions"))?;
    let file = file_id(path).map_err(|source| Error::Io {
        op: "stat",
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Writer { conn, file })
}

/// What the index needs from an item.
struct Indexed {
    sort_us: i64,
    start_us: i64,
    end_us: i64,
    geometry: serde_json::Value,
    boxes: Vec<[f64; 4]>,
}

fn index_item(item: &Item) -> Result<Indexed, Error> {
    let ItemTimes { sort, start, end } = item_times(item)?;
    let bbox = item.bbox.map(|b| [b.xmin(), b.ymin(), b.xmax(), b.ymax()]);
    let geometry = match (&item.geometry, bbox) {
        (Some(g), _) => serde_json::to_value(g).map_err(js("item geometry"))?,
        (None, Some(b)) => {
            // Footprint from bbox (possibly two rectangles across the antimeridian).
            match Shape::from_bbox(b) {
                Shape::Polygons(ps) => super::geom::rings_to_geojson(
                    &ps.into_iter().map(|p| p.exterior).collect::<Vec<_>>(),
                ),
                _ => return Err(invalid(item, "bad bbox")),
            }
        }
        (None, None) => return Err(invalid(item, "no geometry and no bbox")),
    };
    let shape = Shape::from_geojson(&geometry)?;
    let b = match bbox {
        Some(b) => b,
        None => shape
            .bbox()
            .ok_or_else(|| invalid(item, "empty geometry"))?,
    };
    let boxes = if b[0] > b[2] {
        vec![[b[0], b[1], 180.0, b[3]], [-180.0, b[1], b[2], b[3]]]
    } else {
        vec![b]
    };
    Ok(Indexed {
        sort_us: sort.timestamp_micros(),
        start_us: start.timestamp_micros(),
        end_us: end.timestamp_micros(),
        geometry,
        boxes,
    })
}

/// Union of two STAC bboxes; any antimeridian-crossing input widens to full longitude.
fn union_bbox(a: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    if a[0] > a[2] || b[0] > b[2] {
        [-180.0, a[1].min(b[1]), 180.0, a[3].max(b[3])]
    } else {
        [
            a[0].min(b[0]),
            a[1].min(b[1]),
            a[2].max(b[2]),
            a[3].max(b[3]),
        ]
    }
}

/// Widen a collection's first spatial bbox and first temporal interval to include
/// `bbox` and `[start, end]`.
pub fn extend_extent(
    c: &mut Collection,
    bbox: [f64; 4],
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
) {
    let sp = &mut c.extent.spatial.bbox;
    let fresh = sp.is_empty()
        || (sp.first().is_some_and(|b| {
            // stac's default extent is the whole world; treat it as "unset" when there is
            // no temporal start yet.
            b.xmin() == -180.0 && b.xmax() == 180.0 && b.ymin() == -90.0 && b.ymax() == 90.0
        }) && c
            .extent
            .temporal
            .interval
            .first()
            .is_none_or(|i| i[0].is_none() && i[1].is_none()));
    let nb = match sp.first() {
        Some(b) if !fresh => union_bbox([b.xmin(), b.ymin(), b.xmax(), b.ymax()], bbox),
        _ => bbox,
    };
    let nb = Bbox::new(nb[0], nb[1], nb[2], nb[3]);
    if let Some(first) = sp.first_mut() {
        *first = nb;
    } else {
        sp.push(nb);
    }
    let t = &mut c.extent.temporal.interval;
    let ni = match t.first() {
        Some([a, b]) if !fresh => [
            Some(a.map_or(start, |a| a.min(start))),
            Some(b.map_or(end, |b| b.max(end))),
        ],
        _ => [Some(start), Some(end)],
    };
    if let Some(first) = t.first_mut() {
        *first = ni;
    } else {
        t.push(ni);
    }
}

impl SqliteCatalog {
    /// Open (creating if needed) a catalog database, switch it to WAL and run migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                op: "creating",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let writer = open_writer(&path)?;
        let file = writer.file;
        Ok(Self {
            path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Readers {
                conns: Vec::new(),
                file,
            }),
            write_failures: AtomicU64::new(0),
            reopened: AtomicU64::new(0),
        })
    }

    /// Schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, Error> {
        self.read(|c| {
            c.query_row("SELECT version FROM schema_version", [], |r| r.get(0))
                .map_err(sql("schema version"))
        })
    }

    /// Makes sure `w` has the file at the path open: refuses when the file and its directory
    /// are gone, reopens when the directory is back (or another file is at the path).
    fn ensure_current(&self, w: &mut Writer) -> Result<(), Error> {
        let gone = |reason: &str| Error::Gone {
            path: self.path.display().to_string(),
            reason: reason.to_owned(),
        };
        match file_id(&self.path) {
            Ok(id) if id == w.file => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir_back = self
                    .path
                    .parent()
                    .is_none_or(|d| d.as_os_str().is_empty() || d.is_dir());
                if !dir_back {
                    return Err(gone("its directory is missing"));
                }
            }
            Err(source) => {
                return Err(Error::Io {
                    op: "stat",
                    path: self.path.clone(),
                    source,
                })
            }
        }
        let fresh = open_writer(&self.path)?;
        let file = fresh.file;
        // The old connections still point at the vanished file: drop them all.
        *w = fresh;
        let mut pool = self.readers.lock().map_err(|_| Error::LockPoisoned)?;
        pool.conns.clear();
        pool.file = file;
        self.reopened.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs a write on the writer connection, after [`Self::ensure_current`]; a failure is
    /// counted.
    fn write<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, Error>) -> Result<T, Error> {
        let out = (|| {
            let mut w = self.writer.lock().map_err(|_| Error::LockPoisoned)?;
            self.ensure_current(&mut w)?;
            f(&mut w.conn)
        })();
        if out.is_err() {
            self.write_failures.fetch_add(1, Ordering::Relaxed);
        }
        out
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        let on_disk = file_id(&self.path).ok();
        let (pooled, file) = {
            let mut pool = self.readers.lock().map_err(|_| Error::LockPoisoned)?;
            if on_disk == Some(pool.file) {
                (pool.conns.pop(), pool.file)
            } else {
                (None, pool.file)
            }
        };
        let file = if on_disk == Some(file) {
            file
        } else {
            // The file at the path changed: reopen (or refuse) under the writer lock.
            let mut w = self.writer.lock().map_err(|_| Error::LockPoisoned)?;
            self.ensure_current(&mut w)?;
            w.file
        };
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sql("open reader"))?;
                c.busy_timeout(std::time::Duration::from_secs(10))
                    .map_err(sql("busy_timeout"))?;
                cql::register_functions(&c).map_err(sql("register functions"))?;
                c
            }
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().map_err(|_| Error::LockPoisoned)?;
        if pool.file == file && pool.conns.len() < READER_POOL {
            pool.conns.push(conn);
        }
        out
    }
}

impl SqliteCatalog {
    /// Insert (or with `replace`, insert or replace) an item and widen its collection's
    /// extent in one transaction.
    fn put_item(&self, item: &Item, replace: bool) -> Result<(), Error> {
        validate_id("item", &item.id)?;
        let cid = item
            .collection
            .clone()
            .ok_or_else(|| invalid(item, "no \"collection\""))?;
        validate_id("collection", &cid)?;
        let ix = index_item(item)?;
        let json = serde_json::to_string(item).map_err(js("item to json"))?;
        let geometry = serde_json::to_string(&ix.geometry).map_err(js("geometry"))?;

        self.write(|conn| {
        let tx = conn.transaction().map_err(sql("begin"))?;
        let mut coll = load_collection(&tx, &cid)?
            .ok_or_else(|| Error::NoSuchCollection(cid.clone()))?;
        let old: Option<i64> = tx
            .query_row(
                "SELECT rowid FROM items WHERE collection = ?1 AND id = ?2",
                params![cid, item.id],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("find item"))?;
        if let Some(rowid) = old {
            if !replace {
                return Err(Error::ItemExists {
                    collection: cid.clone(),
                    id: item.id.clone(),
                });
            }
            tx.execute("DELETE FROM items_rtree WHERE item_rowid = ?1", [rowid])
                .map_err(sql("delete rtree"))?;
        }
        let rowid: i64 = tx
            .query_row(
                "INSERT INTO items(collection, id, datetime_us, start_us, end_us, geometry, json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(collection, id) DO UPDATE SET
                   datetime_us = excluded.datetime_us, start_us = excluded.start_us,
                   end_us = excluded.end_us, geometry = excluded.geometry, json = excluded.json
                 RETURNING rowid",
                params![
                    cid,
                    item.id,
                    ix.sort_us,
                    ix.start_us,
                    ix.end_us,
                    geometry,
                    json
                ],
                |r| r.get(0),
            )
            .map_err(sql("upsert item"))?;
        for b in &ix.boxes {
            tx.execute(
                "INSERT INTO items_rtree(minx, maxx, miny, maxy, item_rowid) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![b[0], b[2], b[1], b[3], rowid],
            )
            .map_err(sql("insert rtree"))?;
        }
        index_assets(&tx, rowid, item)?;
        let bbox = match ix.boxes.as_slice() {
            [a, b] => [a[0], a[1], b[2], a[3]],
            [a] => *a,
            _ => return Err(invalid(item, "no bbox")),
        };
        let start = chrono::DateTime::from_timestamp_micros(ix.start_us)
            .ok_or_else(|| invalid(item, "start out of range"))?;
        let end = chrono::DateTime::from_timestamp_micros(ix.end_us)
            .ok_or_else(|| invalid(item, "end out of range"))?;
        extend_extent(&mut coll, bbox, start, end);
        let cj = serde_json::to_string(&coll).map_err(js("collection to json"))?;
        tx.execute(
            "UPDATE collections SET json = ?2 WHERE id = ?1",
            params![cid, cj],
        )
        .map_err(sql("update extent"))?;
        tx.commit().map_err(sql("commit item"))
        })
    }
}

/// Version 2: the asset index of the items stored before it.
fn backfill_assets(tx: &rusqlite::Transaction<'_>) -> Result<(), Error> {
    let rows: Vec<(i64, String)> = {
        let mut st = tx
            .prepare("SELECT rowid, json FROM items")
            .map_err(sql("prepare backfill"))?;
        let it = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("backfill items"))?;
        it.collect::<Result<_, _>>().map_err(sql("backfill row"))?
    };
    for (rowid, json) in rows {
        let item: Item = serde_json::from_str(&json).map_err(js("item json"))?;
        index_assets(tx, rowid, &item)?;
    }
    Ok(())
}

/// The item's local asset hrefs into `assets` (replacing its previous rows).
fn index_assets(conn: &Connection, rowid: i64, item: &Item) -> Result<(), Error> {
    conn.execute("DELETE FROM assets WHERE item_rowid = ?1", [rowid])
        .map_err(sql("delete assets"))?;
    for (key, a) in &item.assets {
        let Some(href) = local_href(&a.href) else {
            continue;
        };
        conn.execute(
            "INSERT INTO assets(item_rowid, key, href, media_type) VALUES (?1, ?2, ?3, ?4)",
            params![rowid, key, href, a.r#type],
        )
        .map_err(sql("insert asset"))?;
    }
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), Error> {
    let tx = conn.transaction().map_err(sql("migrate begin"))?;
    tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)",
        [],
    )
    .map_err(sql("create schema_version"))?;
    let current: Option<i64> = tx
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()
        .map_err(sql("read schema_version"))?;
    let current = match current {
        Some(v) => v,
        None => {
            tx.execute("INSERT INTO schema_version(version) VALUES (0)", [])
                .map_err(sql("init schema_version"))?;
            0
        }
    };
    if current > SCHEMA_VERSION {
        return Err(Error::InvalidParams {
            param: "database",
            reason: format!("schema version {current} is newer than this build ({SCHEMA_VERSION})"),
        });
    }
    for (i, m) in MIGRATIONS.iter().enumerate() {
        let v = i as i64 + 1;
        if v > current {
            tx.execute_batch(m).map_err(sql("migration"))?;
            if v == 2 {
                backfill_assets(&tx)?;
            }
            tx.execute("UPDATE schema_version SET version = ?1", [v])
                .map_err(sql("bump schema_version"))?;
        }
    }
    tx.commit().map_err(sql("migrate commit"))
}

fn load_collection(conn: &Connection, id: &str) -> Result<Option<Collection>, Error> {
    let json: Option<String> = conn
        .query_row("SELECT json FROM collections WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql("select collection"))?;
    json.map(|j| serde_json::from_str(&j).map_err(js("collection json")))
        .transpose()
}

impl Catalog for SqliteCatalog {
    fn upsert_collection(&self, collection: &Collection) -> Result<(), Error> {
        validate_id("collection", &collection.id)?;
        self.write(|conn| {
            let tx = conn.transaction().map_err(sql("begin"))?;
            let mut c = collection.clone();
            if let Some(old) = load_collection(&tx, &c.id)? {
                // Keep what items already established.
                if let (Some(b), Some([Some(s), Some(e)])) = (
                    old.extent.spatial.bbox.first(),
                    old.extent.temporal.interval.first(),
                ) {
                    extend_extent(&mut c, [b.xmin(), b.ymin(), b.xmax(), b.ymax()], *s, *e);
                }
            }
            let json = serde_json::to_string(&c).map_err(js("collection to json"))?;
            tx.execute(
                "INSERT INTO collections(id, json) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET json = excluded.json",
                params![c.id, json],
            )
            .map_err(sql("upsert collection"))?;
            tx.commit().map_err(sql("commit"))
        })
    }

    fn collection(&self, id: &str) -> Result<Option<Collection>, Error> {
        self.read(|c| load_collection(c, id))
    }

    fn collections(&self) -> Result<Vec<Collection>, Error> {
        self.read(|c| {
            let mut st = c
                .prepare("SELECT json FROM collections ORDER BY id")
                .map_err(sql("prepare collections"))?;
            let rows = st
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(sql("query collections"))?;
            let mut out = Vec::new();
            for j in rows {
                let j = j.map_err(sql("row"))?;
                out.push(serde_json::from_str(&j).map_err(js("collection json"))?);
            }
            Ok(out)
        })
    }

    fn upsert_item(&self, item: &Item) -> Result<(), Error> {
        self.put_item(item, true)
    }

    fn insert_item(&self, item: &Item) -> Result<(), Error> {
        self.put_item(item, false)
    }

    fn item(&self, collection: &str, id: &str) -> Result<Option<Item>, Error> {
        self.read(|c| {
            let j: Option<String> = c
                .query_row(
                    "SELECT json FROM items WHERE collection = ?1 AND id = ?2",
                    params![collection, id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("select item"))?;
            j.map(|j| serde_json::from_str(&j).map_err(js("item json")))
                .transpose()
        })
    }

    fn delete_item(&self, collection: &str, id: &str) -> Result<bool, Error> {
        self.write(|conn| {
            let tx = conn.transaction().map_err(sql("begin"))?;
            let rowid: Option<i64> = tx
                .query_row(
                    "SELECT rowid FROM items WHERE collection = ?1 AND id = ?2",
                    params![collection, id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql("find item"))?;
            let Some(rowid) = rowid else {
                return Ok(false);
            };
            tx.execute("DELETE FROM items_rtree WHERE item_rowid = ?1", [rowid])
                .map_err(sql("delete rtree"))?;
            tx.execute("DELETE FROM items WHERE rowid = ?1", [rowid])
                .map_err(sql("delete item"))?;
            tx.execute("DELETE FROM assets WHERE item_rowid = ?1", [rowid])
                .map_err(sql("delete assets"))?;
            tx.commit().map_err(sql("commit delete"))?;
            Ok(true)
        })
    }

    fn asset(&self, href: &str) -> Result<Option<AssetRef>, Error> {
        let Some(href) = local_href(href) else {
            return Ok(None);
        };
        self.read(|c| {
            c.query_row(
                "SELECT i.collection, i.id, a.key, a.media_type
                 FROM assets a JOIN items i ON i.rowid = a.item_rowid
                 WHERE a.href = ?1 ORDER BY i.rowid LIMIT 1",
                [href],
                |r| {
                    Ok(AssetRef {
                        collection: r.get(0)?,
                        item: r.get(1)?,
                        key: r.get(2)?,
                        media_type: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(sql("select asset"))
        })
    }

    fn check(&self) -> Result<(), Error> {
        let mut w = self.writer.lock().map_err(|_| Error::LockPoisoned)?;
        self.ensure_current(&mut w)
    }

    fn stats(&self) -> CatalogStats {
        CatalogStats {
            write_failures: self.write_failures.load(Ordering::Relaxed),
            reopened: self.reopened.load(Ordering::Relaxed),
        }
    }

    fn search(&self, p: &SearchParams) -> Result<SearchPage, Error> {
        let limit = p.effective_limit()? as usize;
        let shapes = p.spatial_filters()?;
        let keys = cql::order(&p.sortby)?;
        let after = p.token.as_deref().map(cql::from_token).transpose()?;
        let filter = p.filter.as_ref().map(cql::to_sql).transpose()?;

        let mut wh: Vec<String> = Vec::new();
        let mut args: Vec<SqlValue> = Vec::new();
        let mut in_list = |col: &str, list: &[String], what: &'static str| {
            if list.len() > MAX_LIST {
                return Err(Error::InvalidParams {
                    param: what,
                    reason: format!("more than {MAX_LIST} entries"),
                });
            }
            let marks = vec!["?"; list.len()].join(",");
            wh.push(format!("{col} IN ({marks})"));
            args.extend(list.iter().map(|s| SqlValue::Text(s.clone())));
            Ok(())
        };
        if let Some(c) = &p.collections {
            in_list("collection", c, "collections")?;
        }
        if let Some(ids) = &p.ids {
            in_list("id", ids, "ids")?;
        }
        if let Some(dt) = &p.datetime {
            if let Some(s) = dt.start {
                wh.push("end_us >= ?".into());
                args.push(SqlValue::Integer(s.timestamp_micros()));
            }
            if let Some(e) = dt.end {
                wh.push("start_us <= ?".into());
                args.push(SqlValue::Integer(e.timestamp_micros()));
            }
        }
        // R*Tree prefilter: boxes of every spatial filter (all must hold).
        for s in &shapes {
            let rects: Vec<[f64; 4]> = match s {
                Shape::Polygons(ps) if ps.len() == 2 => ps
                    .iter()
                    .filter_map(|p| Shape::Polygons(vec![p.clone()]).bbox())
                    .collect(),
                other => other.bbox().into_iter().collect(),
            };
            let mut ors = Vec::new();
            for r in rects {
                ors.push("(maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?)");
                args.extend([r[0], r[2], r[1], r[3]].map(SqlValue::Real));
            }
            wh.push(format!(
                "rowid IN (SELECT item_rowid FROM items_rtree WHERE {})",
                ors.join(" OR ")
            ));
        }
        if let Some(f) = filter {
            wh.push(f.text);
            args.extend(f.args);
        }
        let base_where = wh.clone();
        let base_args = args.clone();
        if let Some(last) = &after {
            let a = cql::after(&keys, last)?;
            wh.push(a.text);
            args.extend(a.args);
        }
        let where_sql = |w: &[String]| {
            if w.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", w.join(" AND "))
            }
        };
        let exact = |geom: &str| -> Result<bool, Error> {
            if shapes.is_empty() {
                return Ok(true);
            }
            let g: serde_json::Value = serde_json::from_str(geom).map_err(js("stored geometry"))?;
            let s = Shape::from_geojson(&g)?;
            Ok(shapes.iter().all(|f| s.intersects(f)))
        };

        self.read(|conn| {
            // Page: stream in order, exact-filter, stop after limit + 1.
            let cols: Vec<String> = keys.iter().map(|k| k.column.sql()).collect();
            let q = format!(
                "SELECT geometry, json, {} FROM items {} ORDER BY {}",
                cols.join(", "),
                where_sql(&wh),
                cql::order_by(&keys)
            );
            let mut st = conn.prepare(&q).map_err(sql("prepare search"))?;
            let mut rows = st
                .query(rusqlite::params_from_iter(args.iter()))
                .map_err(sql("search"))?;
            let mut items = Vec::new();
            let mut last: Option<Vec<SqlValue>> = None;
            let mut more = false;
            while let Some(r) = rows.next().map_err(sql("search row"))? {
                let geom: String = r.get(0).map_err(sql("geometry col"))?;
                if !exact(&geom)? {
                    continue;
                }
                if items.len() == limit {
                    more = true;
                    break;
                }
                let json: String = r.get(1).map_err(sql("json col"))?;
                items.push(serde_json::from_str::<Item>(&json).map_err(js("item json"))?);
                last = Some(
                    (0..keys.len())
                        .map(|i| r.get::<_, SqlValue>(i + 2))
                        .collect::<Result<_, _>>()
                        .map_err(sql("sort key col"))?,
                );
            }
            // Total: SQL count without spatial filters, else an exact scan of candidates.
            let cq = if shapes.is_empty() {
                format!(
                    "SELECT COUNT(*), NULL FROM items {}",
                    where_sql(&base_where)
                )
            } else {
                format!("SELECT 1, geometry FROM items {}", where_sql(&base_where))
            };
            let mut cst = conn.prepare(&cq).map_err(sql("prepare count"))?;
            let mut crow = cst
                .query(rusqlite::params_from_iter(base_args.iter()))
                .map_err(sql("count"))?;
            let mut matched: u64 = 0;
            while let Some(r) = crow.next().map_err(sql("count row"))? {
                if shapes.is_empty() {
                    matched = r.get::<_, i64>(0).map_err(sql("count col"))?.max(0) as u64;
                } else {
                    let g: String = r.get(1).map_err(sql("geometry col"))?;
                    if exact(&g)? {
                        matched += 1;
                    }
                }
            }
            Ok(SearchPage {
                items,
                matched: Some(matched),
                next: if more {
                    last.map(|k| cql::token(&k))
                } else {
                    None
                },
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::catalog::empty_extent_collection;

    fn item(id: &str, hrefs: &[(&str, &str)]) -> Item {
        let mut it = Item::new(id);
        it.collection = Some("c".into());
        it.bbox = Some(Bbox::new(10.0, 20.0, 11.0, 21.0));
        it.properties.datetime = Some(chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap());
        for (k, h) in hrefs {
            let mut a = stac::Asset::new(*h);
            a.r#type = Some("image/tiff".into());
            it.assets.insert((*k).into(), a);
        }
        it
    }

    fn contents(f: &mut std::fs::File) -> Vec<u8> {
        use std::io::Seek;
        f.rewind().unwrap();
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn assets_index_follows_items() {
        let dir = tempfile::tempdir().unwrap();
        let cat = SqliteCatalog::open(dir.path().join("catalog.sqlite")).unwrap();
        cat.upsert_collection(&empty_extent_collection("c", "t").unwrap())
            .unwrap();
        cat.upsert_item(&item(
            "a",
            &[
                ("data", "passes/a/products/ch1.tif"),
                ("remote", "https://example.com/x.tif"),
                ("sneaky", "passes/a/../../catalog.sqlite"),
            ],
        ))
        .unwrap();
        let got = cat.asset("passes/a/products/ch1.tif").unwrap().unwrap();
        assert_eq!((got.item.as_str(), got.key.as_str()), ("a", "data"));
        assert_eq!(got.media_type.as_deref(), Some("image/tiff"));
        assert_eq!(cat.asset("/passes/a/products/ch1.tif").unwrap(), Some(got));
        for none in [
            "https://example.com/x.tif",
            "passes/a/../../catalog.sqlite",
            "catalog.sqlite",
            "passes/a/products",
            "passes/a/products/ch1.tif.tmp",
        ] {
            assert_eq!(cat.asset(none).unwrap(), None, "{none}");
        }
        // Re-published with another asset set: the old href is no longer served.
        cat.upsert_item(&item("a", &[("data", "passes/a/products/ch2.tif")]))
            .unwrap();
        assert!(cat.asset("passes/a/products/ch1.tif").unwrap().is_none());
        assert!(cat.asset("passes/a/products/ch2.tif").unwrap().is_some());
        assert!(cat.delete_item("c", "a").unwrap());
        assert!(cat.asset("passes/a/products/ch2.tif").unwrap().is_none());
    }

    #[test]
    fn version_1_databases_get_their_asset_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        {
            let mut conn = Connection::open(&path).unwrap();
            let tx = conn.transaction().unwrap();
            tx.execute_batch(
                "CREATE TABLE schema_version(version INTEGER NOT NULL);
                 INSERT INTO schema_version(version) VALUES (1);",
            )
            .unwrap();
            tx.execute_batch(MIGRATIONS[0]).unwrap();
            let c = serde_json::to_string(&empty_extent_collection("c", "t").unwrap()).unwrap();
            tx.execute("INSERT INTO collections(id, json) VALUES ('c', ?1)", [c])
                .unwrap();
            let it =
                serde_json::to_string(&item("old", &[("data", "collections/c/old.tif")])).unwrap();
            tx.execute(
                "INSERT INTO items(collection, id, datetime_us, start_us, end_us, geometry, json)
                 VALUES ('c', 'old', 0, 0, 0, '{}', ?1)",
                [it],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let cat = SqliteCatalog::open(&path).unwrap();
        assert_eq!(cat.schema_version().unwrap(), SCHEMA_VERSION);
        let a = cat.asset("collections/c/old.tif").unwrap().unwrap();
        assert_eq!(a.item, "old");
    }

    #[test]
    fn archive_directory_deleted_under_an_open_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        let path = archive.join("catalog.sqlite");
        let cat = SqliteCatalog::open(&path).unwrap();
        cat.upsert_collection(&empty_extent_collection("c", "t").unwrap())
            .unwrap();
        cat.upsert_item(&item("a", &[("data", "passes/a/ch1.tif")]))
            .unwrap();
        // Hold the files open to see whether anything is written to them once unlinked.
        let mut db = std::fs::File::open(&path).unwrap();
        let mut wal = std::fs::File::open(archive.join("catalog.sqlite-wal")).unwrap();
        let (db0, wal0) = (contents(&mut db), contents(&mut wal));
        std::fs::remove_dir_all(&archive).unwrap();

        let err = cat
            .upsert_item(&item("b", &[("data", "passes/b/ch1.tif")]))
            .unwrap_err();
        assert!(matches!(err, Error::Gone { .. }), "{err}");
        assert!(matches!(cat.delete_item("c", "a"), Err(Error::Gone { .. })));
        assert!(matches!(
            cat.asset("passes/a/ch1.tif"),
            Err(Error::Gone { .. })
        ));
        assert!(matches!(cat.check(), Err(Error::Gone { .. })));
        assert_eq!(cat.stats().write_failures, 2);
        assert_eq!(contents(&mut db), db0, "written into the unlinked database");
        assert_eq!(contents(&mut wal), wal0, "written into the unlinked WAL");
        assert!(
            !archive.exists(),
            "the catalog recreated the archive itself"
        );

        // The directory returns (empty): a fresh database there, usable at once.
        std::fs::create_dir_all(&archive).unwrap();
        cat.check().unwrap();
        assert_eq!(cat.stats().reopened, 1);
        assert!(path.is_file());
        assert!(cat.collection("c").unwrap().is_none());
        assert!(cat.asset("passes/a/ch1.tif").unwrap().is_none());
        cat.upsert_collection(&empty_extent_collection("c", "t").unwrap())
            .unwrap();
        cat.upsert_item(&item("b", &[("data", "passes/b/ch1.tif")]))
            .unwrap();
        assert_eq!(contents(&mut db), db0);
        drop(cat);
        let again = SqliteCatalog::open(&path).unwrap();
        assert!(again.item("c", "b").unwrap().is_some());
        assert!(again.asset("passes/b/ch1.tif").unwrap().is_some());
    }

    #[test]
    fn a_replaced_database_file_is_reopened_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.sqlite");
        let cat = SqliteCatalog::open(&path).unwrap();
        cat.upsert_collection(&empty_extent_collection("c", "t").unwrap())
            .unwrap();
        // Warm the reader pool, then swap in another database (a restored backup, say).
        assert!(cat.collection("c").unwrap().is_some());
        let other = dir.path().join("other.sqlite");
        {
            let o = SqliteCatalog::open(&other).unwrap();
            o.upsert_collection(&empty_extent_collection("d", "t").unwrap())
                .unwrap();
        }
        for suffix in ["", "-wal", "-shm"] {
            let from = dir.path().join(format!("other.sqlite{suffix}"));
            let to = dir.path().join(format!("catalog.sqlite{suffix}"));
            if from.exists() {
                std::fs::rename(from, to).unwrap();
            } else {
                let _ = std::fs::remove_file(to);
            }
        }
        assert!(cat.collection("d").unwrap().is_some());
        assert!(cat.collection("c").unwrap().is_none());
        assert_eq!(cat.stats().reopened, 1);
    }
}
