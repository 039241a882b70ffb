//! PostgreSQL + PostGIS implementation of [`Catalog`] on the pgstac schema
//! (<https://github.com/stac-utils/pgstac>), the catalog stac-fastapi-pgstac and titiler-pgstac
//! read.
//!
//! The schema is pgstac's, installed by `pypgstac migrate` at exactly [`PGSTAC_VERSION`]; this
//! backend creates no table of its own. Writes go through pgstac's functions
//! (`pgstac.upsert_collection`, `pgstac.create_item` / `pgstac.upsert_item`,
//! `pgstac.update_collection`, `pgstac.delete_item`), reads through `pgstac.get_collection`,
//! `pgstac.get_item` and `pgstac.search(jsonb)`; only two lookups read pgstac's tables
//! directly: the collection row locked `FOR UPDATE` while an item is published (so concurrent
//! publishers widen its extent one after the other), and the asset lookup of [`Catalog::asset`]
//! (a scan of `pgstac.items`' asset hrefs).
//!
//! The contract is the SQLite catalog's (`sqlite.rs`), with these differences, all pgstac's:
//! - page tokens are pgstac's (`next:COLLECTION:ID`): the keys of the next page are those of
//!   that item as it is when the page is asked for, so a token whose item was deleted since is
//!   refused;
//! - items that lack a `sortby` property sort as PostgreSQL sorts NULLs (last ascending, first
//!   descending), and keyset paging across them is pgstac's;
//! - a property compares as text unless pgstac's `queryables` table types it (the numeric STAC
//!   properties Downlink writes are registered as numbers when the catalog is opened, see
//!   [`NUMERIC_QUERYABLES`]).
//!
//! Like the SQLite catalog, the extent of a collection only widens: each published item is
//! merged into it in the item's transaction, so that transaction stays the commit point.
//!
//! Connections: a small pool of blocking clients (the `postgres` crate; each runs its own
//! single-thread runtime, so call this from `spawn_blocking` or a plain thread, never from an
//! async task). At most `POOL` (4) are open at once: a call that finds none idle waits for one
//! (up to the connect timeout, then it opens one more rather than wait longer), so concurrent
//! readers (an API node's tile requests) reuse connections instead of opening and closing one
//! each, which costs PostgreSQL a backend and pgstac's session setup every time. A call that
//! finds its connection broken (PostgreSQL restarted) is retried once on a new one; the count
//! of new connections made after the first is [`CatalogStats::reopened`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Transaction};
use serde_json::{json, Value};
use stac::{Collection, Item};

use super::cql;
use super::geom::{rings_to_geojson, Shape};
use super::layout::validate_id;
use super::sqlite::extend_extent;
use super::store::{
    invalid, item_times, local_href, AssetRef, Catalog, CatalogStats, ItemTimes, SearchPage,
    SearchParams, MAX_LIST,
};
use crate::Error;

/// Connection settings (host, port or socket directory, user, password, database …).
pub use postgres::Config as ConnectConfig;

/// The pgstac schema version this backend is written and tested against
/// (`pypgstac[psycopg]==0.9.12`, tests/clients/requirements-pgstac.txt).
pub const PGSTAC_VERSION: &str = "0.9.12";

/// Item properties Downlink writes as numbers; registered in `pgstac.queryables` (when absent)
/// so that filters and sorts on them compare numbers, not text.
pub const NUMERIC_QUERYABLES: &[&str] = &[
    "eo:cloud_cover",
    "gsd",
    "view:off_nadir",
    "view:incidence_angle",
    "view:azimuth",
    "view:sun_azimuth",
    "view:sun_elevation",
];

/// Connections open at once (idle or in use), see the module doc.
const POOL: usize = 4;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

fn pg(context: &'static str) -> impl FnOnce(postgres::Error) -> Error {
    move |source| Error::Postgres { context, source }
}

fn js(context: &'static str) -> impl FnOnce(serde_json::Error) -> Error {
    move |source| Error::Json { context, source }
}

/// The connections of a [`PgstacCatalog`].
#[derive(Default)]
struct Pool {
    idle: Vec<Client>,
    /// Connections open or being opened, idle ones included.
    open: usize,
}

/// pgstac-backed catalog.
pub struct PgstacCatalog {
    config: postgres::Config,
    pool: Mutex<Pool>,
    /// Signalled when a connection goes back to the pool or a slot is freed.
    freed: Condvar,
    write_failures: AtomicU64,
    reopened: AtomicU64,
    connected_once: std::sync::atomic::AtomicBool,
    /// The database was verified and the queryables registered.
    prepared: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for PgstacCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("PgstacCatalog")
            .field("host", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .finish()
    }
}

/// Parses a `postgresql://` URL (or a libpq key=value string); `password`, when given, replaces
/// the one in the URL. Errors never repeat the URL (it may hold a password).
pub fn parse_url(url: &str, password: Option<&str>) -> Result<postgres::Config, String> {
    let mut c: postgres::Config = url
        .parse()
        .map_err(|e: postgres::Error| format!("not a PostgreSQL connection URL ({e})"))?;
    if c.get_hosts().is_empty() {
        return Err("names no host (give host@ or ?host=/socket/dir)".into());
    }
    if c.get_dbname().is_none() {
        return Err("names no database (postgresql://user@host/DATABASE)".into());
    }
    if c.get_user().is_none() {
        return Err("names no user (postgresql://USER@host/database)".into());
    }
    if let Some(p) = password {
        c.password(p);
    }
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(CONNECT_TIMEOUT);
    }
    c.application_name("downlink");
    Ok(c)
}

impl PgstacCatalog {
    /// Connects, checks the pgstac version ([`PGSTAC_VERSION`]) and registers the numeric
    /// queryables. Fails when the database cannot be reached or pgstac is missing or at
    /// another version.
    pub fn open(config: postgres::Config) -> Result<Self, Error> {
        let cat = Self::unconnected(config);
        cat.prepare()?;
        Ok(cat)
    }

    /// Verifies the database ([`Self::verify`]) and registers the numeric queryables, once:
    /// [`Catalog::check`] keeps failing until this has succeeded (a catalog made with
    /// [`Self::unconnected`] while the database was down is prepared when it comes up).
    fn prepare(&self) -> Result<(), Error> {
        if self.prepared.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(p) = self.verify()?.into_iter().next() {
            return Err(Error::Pgstac(p));
        }
        self.with_client(register_queryables)?;
        self.prepared.store(true, Ordering::Release);
        Ok(())
    }

    /// A catalog that connects on first use; its first successful [`Catalog::check`] verifies
    /// the database as [`Self::open`] does.
    pub fn unconnected(config: postgres::Config) -> Self {
        Self {
            config,
            pool: Mutex::new(Pool::default()),
            freed: Condvar::new(),
            write_failures: AtomicU64::new(0),
            reopened: AtomicU64::new(0),
            connected_once: std::sync::atomic::AtomicBool::new(false),
            prepared: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// What stops this database from serving as the catalog: pgstac missing or at another
    /// version, or the user lacking the rights to read and write it (each a sentence). An
    /// unreachable database is the `Err`.
    pub fn verify(&self) -> Result<Vec<String>, Error> {
        self.with_client(|c| {
            let mut out = Vec::new();
            let installed: bool = c
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'pgstac')",
                    &[],
                )
                .map_err(pg("look for the pgstac schema"))?
                .get(0);
            if !installed {
                out.push(format!(
                    "pgstac is not installed in this database: run `pypgstac migrate` \
                     (pypgstac=={PGSTAC_VERSION})"
                ));
                return Ok(out);
            }
            let usable: bool = c
                .query_one(
                    "SELECT has_schema_privilege('pgstac', 'USAGE')
                        AND has_function_privilege('pgstac.get_version()', 'EXECUTE')",
                    &[],
                )
                .map_err(pg("check pgstac privileges"))?
                .get(0);
            if !usable {
                out.push(
                    "this user may not use the pgstac schema: GRANT pgstac_ingest TO the user"
                        .to_owned(),
                );
                return Ok(out);
            }
            let version: String = c
                .query_one("SELECT pgstac.get_version()", &[])
                .map_err(pg("pgstac version"))?
                .get(0);
            if version != PGSTAC_VERSION {
                out.push(format!(
                    "pgstac {version} is installed; this build needs {PGSTAC_VERSION} \
                     (`pypgstac migrate` from pypgstac=={PGSTAC_VERSION})"
                ));
            }
            let rights: bool = c
                .query_one(
                    "SELECT has_function_privilege('pgstac.search(jsonb)', 'EXECUTE')
                        AND has_function_privilege('pgstac.create_item(jsonb)', 'EXECUTE')
                        AND has_function_privilege('pgstac.upsert_item(jsonb)', 'EXECUTE')
                        AND has_function_privilege('pgstac.upsert_collection(jsonb)', 'EXECUTE')
                        AND has_function_privilege('pgstac.update_collection(jsonb)', 'EXECUTE')
                        AND has_function_privilege('pgstac.delete_item(text, text)', 'EXECUTE')
                        AND has_table_privilege('pgstac.items', 'SELECT')
                        AND has_table_privilege('pgstac.items', 'INSERT, UPDATE, DELETE')
                        AND has_table_privilege('pgstac.collections', 'SELECT, UPDATE')
                        AND has_table_privilege('pgstac.searches', 'INSERT, UPDATE')",
                    &[],
                )
                .map_err(pg("check pgstac privileges"))?
                .get(0);
            if !rights {
                out.push(
                    "this user lacks rights to read and write the pgstac catalog: \
                     GRANT pgstac_ingest TO the user"
                        .to_owned(),
                );
            }
            Ok(out)
        })
    }

    fn connect(&self) -> Result<Client, Error> {
        let mut c = self.config.connect(NoTls).map_err(pg("connect"))?;
        // pgstac's functions talk a lot at NOTICE level; some of its triggers name its tables
        // unqualified (pgstac's documented setup puts pgstac on the search path).
        // Searches count their matches exactly, every time (pgstac's default is no count, and
        // counts cached for a day).
        c.batch_execute(
            "SET client_min_messages = warning; SET TIME ZONE 'UTC';
             SET search_path = pgstac, public;
             SET pgstac.context = 'on'; SET pgstac.context_stats_ttl = '0 seconds'",
        )
        .map_err(pg("session settings"))?;
        if self.connected_once.swap(true, Ordering::Relaxed) {
            self.reopened.fetch_add(1, Ordering::Relaxed);
        }
        Ok(c)
    }

    /// An idle connection, or `None` when the caller may open one (its slot is counted in
    /// `open`). Waits while [`POOL`] connections are open and none is idle, at most the
    /// connect timeout (then it lets the caller open one more rather than wait longer).
    fn take(&self) -> Result<Option<Client>, Error> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut p = self.pool.lock().map_err(|_| Error::LockPoisoned)?;
        loop {
            if let Some(c) = p.idle.pop() {
                return Ok(Some(c));
            }
            let now = Instant::now();
            if p.open < POOL || now >= deadline {
                p.open += 1;
                return Ok(None);
            }
            p = self
                .freed
                .wait_timeout(p, deadline - now)
                .map_err(|_| Error::LockPoisoned)?
                .0;
        }
    }

    /// Gives a connection back (kept idle unless it is closed or the pool is full), or with
    /// `None` frees the slot of one that was closed or never opened.
    fn give_back(&self, client: Option<Client>) {
        if let Ok(mut p) = self.pool.lock() {
            match client {
                Some(c) if !c.is_closed() && p.idle.len() < POOL => p.idle.push(c),
                _ => p.open = p.open.saturating_sub(1),
            }
        }
        self.freed.notify_one();
    }

    /// A connection for a slot taken with [`Self::take`]: the slot is freed when it fails.
    fn connect_slot(&self) -> Result<Client, Error> {
        self.connect().inspect_err(|_| self.give_back(None))
    }

    /// Runs `f` on a pooled connection; when it fails and left the connection closed, once
    /// more on a new one.
    fn with_client<T>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let pooled = self.take()?;
        let fresh = pooled.is_none();
        let mut client = match pooled {
            Some(c) if !c.is_closed() => c,
            _ => self.connect_slot()?,
        };
        let mut out = f(&mut client);
        if out.is_err() && client.is_closed() && !fresh {
            client = self.connect_slot()?;
            out = f(&mut client);
        }
        self.give_back(Some(client));
        out
    }

    /// A write: counted when it fails.
    fn write<T>(&self, f: impl FnMut(&mut Client) -> Result<T, Error>) -> Result<T, Error> {
        let out = self.with_client(f);
        if out.is_err() {
            self.write_failures.fetch_add(1, Ordering::Relaxed);
        }
        out
    }

    fn put_item(&self, item: &Item, replace: bool) -> Result<(), Error> {
        validate_id("item", &item.id)?;
        let cid = item
            .collection
            .clone()
            .ok_or_else(|| invalid(item, "no \"collection\""))?;
        validate_id("collection", &cid)?;
        let (bbox, start, end) = item_extent(item)?;
        let doc = serde_json::to_value(item).map_err(js("item to json"))?;
        self.write(|c| {
            let mut tx = c.transaction().map_err(pg("begin"))?;
            let mut coll = locked_collection(&mut tx, &cid)?
                .ok_or_else(|| Error::NoSuchCollection(cid.clone()))?;
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM pgstac.items WHERE collection = $1 AND id = $2",
                    &[&cid, &item.id],
                )
                .map_err(pg("find item"))?
                .is_some();
            if exists && !replace {
                return Err(Error::ItemExists {
                    collection: cid.clone(),
                    id: item.id.clone(),
                });
            }
            let f = if exists {
                "SELECT pgstac.upsert_item($1)"
            } else {
                "SELECT pgstac.create_item($1)"
            };
            tx.execute(f, &[&doc]).map_err(pg("pgstac item write"))?;
            let was = serde_json::to_value(&coll).map_err(js("collection to json"))?;
            extend_extent(&mut coll, bbox, start, end);
            let cj = serde_json::to_value(&coll).map_err(js("collection to json"))?;
            // Only when the extent grew: pgstac's update_collection rewrites the collection
            // (and checks its partitions), which cost more than the item itself.
            if cj != was {
                tx.execute("SELECT pgstac.update_collection($1)", &[&cj])
                    .map_err(pg("update extent"))?;
            }
            tx.commit().map_err(pg("commit item"))
        })
    }
}

/// The collection, its row locked until the transaction ends.
fn locked_collection(tx: &mut Transaction<'_>, id: &str) -> Result<Option<Collection>, Error> {
    let row = tx
        .query_opt(
            "SELECT content FROM pgstac.collections WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .map_err(pg("lock collection"))?;
    row.map(|r| serde_json::from_value(r.get::<_, Value>(0)).map_err(js("collection json")))
        .transpose()
}

type Time = chrono::DateTime<chrono::Utc>;

/// The bbox and time range an item adds to its collection's extent (checked as SQLite checks
/// them: a datetime or start_datetime, an end not before the start, a geometry or bbox).
fn item_extent(item: &Item) -> Result<([f64; 4], Time, Time), Error> {
    let ItemTimes { start, end, .. } = item_times(item)?;
    let bbox = match (&item.bbox, &item.geometry) {
        (Some(b), _) => [b.xmin(), b.ymin(), b.xmax(), b.ymax()],
        (None, Some(g)) => {
            let v = serde_json::to_value(g).map_err(js("item geometry"))?;
            Shape::from_geojson(&v)?
                .bbox()
                .ok_or_else(|| invalid(item, "empty geometry"))?
        }
        (None, None) => return Err(invalid(item, "no geometry and no bbox")),
    };
    Ok((bbox, start, end))
}

/// Registers [`NUMERIC_QUERYABLES`] that `pgstac.queryables` does not name yet.
fn register_queryables(c: &mut Client) -> Result<(), Error> {
    let names: Vec<String> = NUMERIC_QUERYABLES.iter().map(|s| (*s).to_owned()).collect();
    c.execute(
        "INSERT INTO pgstac.queryables (name, definition, property_wrapper)
         SELECT n, '{\"type\": \"number\"}'::jsonb, 'to_float' FROM unnest($1::text[]) AS n
         WHERE NOT EXISTS (SELECT 1 FROM pgstac.queryables q WHERE q.name = n)",
        &[&names],
    )
    .map_err(pg("register queryables"))?;
    Ok(())
}

/// A search as pgstac's `search(jsonb)` takes it.
fn search_body(p: &SearchParams, limit: u32) -> Result<Value, Error> {
    let mut body = serde_json::Map::new();
    let list = |list: &[String], what: &'static str| -> Result<Value, Error> {
        if list.len() > MAX_LIST {
            return Err(Error::InvalidParams {
                param: what,
                reason: format!("more than {MAX_LIST} entries"),
            });
        }
        Ok(json!(list))
    };
    if let Some(c) = &p.collections {
        body.insert("collections".into(), list(c, "collections")?);
    }
    if let Some(ids) = &p.ids {
        body.insert("ids".into(), list(ids, "ids")?);
    }
    if let Some(dt) = &p.datetime {
        let end = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map_or_else(|| "..".to_owned(), |t| t.to_rfc3339())
        };
        // An instant as one timestamp: pgstac reads `t/t` as an empty range.
        let text = match (dt.start, dt.end) {
            (Some(a), Some(b)) if a == b => a.to_rfc3339(),
            (a, b) => format!("{}/{}", end(a), end(b)),
        };
        body.insert("datetime".into(), json!(text));
    }
    // Spatial filters, the CQL2 filter: all must hold.
    p.spatial_filters()?; // validates bbox and intersects as SQLite does
    let mut ands: Vec<Value> = Vec::new();
    if let Some(b) = p.bbox {
        let rings = match Shape::from_bbox(b) {
            Shape::Polygons(ps) => ps.into_iter().map(|p| p.exterior).collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        ands.push(json!({"op": "s_intersects", "args": [{"property": "geometry"}, rings_to_geojson(&rings)]}));
    }
    if let Some(g) = &p.intersects {
        ands.push(json!({"op": "s_intersects", "args": [{"property": "geometry"}, g]}));
    }
    if let Some(f) = &p.filter {
        // The same operators as the SQLite catalog, refused the same way.
        cql::to_sql(f)?;
        ands.push(f.to_value().map_err(|e| Error::InvalidParams {
            param: "filter",
            reason: e.to_string(),
        })?);
    }
    match ands.len() {
        0 => {}
        1 => {
            body.insert("filter".into(), ands.remove(0));
        }
        _ => {
            body.insert("filter".into(), json!({"op": "and", "args": ands}));
        }
    }
    if !ands.is_empty() || body.contains_key("filter") {
        body.insert("filter-lang".into(), json!("cql2-json"));
    }
    // Sort: the given keys (default datetime descending), then id and collection ascending.
    cql::order(&p.sortby)?;
    let mut sortby: Vec<Value> = p
        .sortby
        .iter()
        .map(|s| {
            let dir = if s.direction.descending() {
                "desc"
            } else {
                "asc"
            };
            json!({"field": s.field.strip_prefix("properties.").unwrap_or(&s.field), "direction": dir})
        })
        .collect();
    if sortby.is_empty() {
        sortby.push(json!({"field": "datetime", "direction": "desc"}));
    }
    for k in ["id", "collection"] {
        if !p.sortby.iter().any(|s| s.field == k) {
            sortby.push(json!({"field": k, "direction": "asc"}));
        }
    }
    body.insert("sortby".into(), Value::Array(sortby));
    if let Some(t) = &p.token {
        body.insert("token".into(), json!(check_token(t)?));
    }
    body.insert("limit".into(), json!(limit));
    Ok(Value::Object(body))
}

/// A pgstac `next:COLLECTION:ID` token whose ids follow the archive id rules.
fn check_token(t: &str) -> Result<&str, Error> {
    let rest = t.strip_prefix("next:").ok_or(Error::InvalidToken)?;
    let (c, i) = rest.split_once(':').ok_or(Error::InvalidToken)?;
    if validate_id("collection", c).is_err() || validate_id("item", i).is_err() {
        return Err(Error::InvalidToken);
    }
    Ok(t)
}

impl Catalog for PgstacCatalog {
    fn upsert_collection(&self, collection: &Collection) -> Result<(), Error> {
        validate_id("collection", &collection.id)?;
        self.write(|conn| {
            let mut tx = conn.transaction().map_err(pg("begin"))?;
            let mut c = collection.clone();
            if let Some(old) = locked_collection(&mut tx, &c.id)? {
                // Keep what items already established.
                if let (Some(b), Some([Some(s), Some(e)])) = (
                    old.extent.spatial.bbox.first(),
                    old.extent.temporal.interval.first(),
                ) {
                    extend_extent(&mut c, [b.xmin(), b.ymin(), b.xmax(), b.ymax()], *s, *e);
                }
            }
            let doc = serde_json::to_value(&c).map_err(js("collection to json"))?;
            tx.execute("SELECT pgstac.upsert_collection($1)", &[&doc])
                .map_err(pg("upsert collection"))?;
            tx.commit().map_err(pg("commit"))
        })
    }

    fn collection(&self, id: &str) -> Result<Option<Collection>, Error> {
        let v: Option<Value> = self.with_client(|c| {
            c.query_one("SELECT pgstac.get_collection($1)", &[&id])
                .map_err(pg("get collection"))
                .map(|r| r.get(0))
        })?;
        v.map(|v| serde_json::from_value(v).map_err(js("collection json")))
            .transpose()
    }

    fn collections(&self) -> Result<Vec<Collection>, Error> {
        let rows = self.with_client(|c| {
            c.query("SELECT content FROM pgstac.collections ORDER BY id", &[])
                .map_err(pg("list collections"))
        })?;
        rows.into_iter()
            .map(|r| serde_json::from_value(r.get::<_, Value>(0)).map_err(js("collection json")))
            .collect()
    }

    fn upsert_item(&self, item: &Item) -> Result<(), Error> {
        self.put_item(item, true)
    }

    fn insert_item(&self, item: &Item) -> Result<(), Error> {
        self.put_item(item, false)
    }

    fn item(&self, collection: &str, id: &str) -> Result<Option<Item>, Error> {
        let v: Option<Value> = self.with_client(|c| {
            c.query_one("SELECT pgstac.get_item($1, $2)", &[&id, &collection])
                .map_err(pg("get item"))
                .map(|r| r.get(0))
        })?;
        v.map(|v| serde_json::from_value(v).map_err(js("item json")))
            .transpose()
    }

    fn delete_item(&self, collection: &str, id: &str) -> Result<bool, Error> {
        self.write(|c| {
            let mut tx = c.transaction().map_err(pg("begin"))?;
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM pgstac.items WHERE collection = $1 AND id = $2 FOR UPDATE",
                    &[&collection, &id],
                )
                .map_err(pg("find item"))?
                .is_some();
            if exists {
                tx.execute("SELECT pgstac.delete_item($1, $2)", &[&id, &collection])
                    .map_err(pg("delete item"))?;
            }
            tx.commit().map_err(pg("commit delete"))?;
            Ok(exists)
        })
    }

    fn search(&self, p: &SearchParams) -> Result<SearchPage, Error> {
        let limit = p.effective_limit()?;
        let body = search_body(p, limit)?;
        let out: Value = self.with_client(|c| {
            c.query_one("SELECT pgstac.search($1)", &[&body])
                .map_err(pg("search"))
                .map(|r| r.get(0))
        })?;
        let features = out
            .get("features")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let items: Vec<Item> = features
            .into_iter()
            .map(|f| serde_json::from_value(f).map_err(js("item json")))
            .collect::<Result<_, _>>()?;
        let has_next = out
            .get("links")
            .and_then(Value::as_array)
            .is_some_and(|ls| ls.iter().any(|l| l.get("rel") == Some(&json!("next"))));
        let next = match items.last() {
            Some(last) if has_next => Some(format!(
                "next:{}:{}",
                last.collection.as_deref().unwrap_or_default(),
                last.id
            )),
            _ => None,
        };
        Ok(SearchPage {
            items,
            matched: out.get("numberMatched").and_then(Value::as_u64),
            next,
        })
    }

    fn asset(&self, href: &str) -> Result<Option<AssetRef>, Error> {
        let Some(href) = local_href(href) else {
            return Ok(None);
        };
        // Hrefs are never dehydrated (no collection's item_assets carries one), so the stored
        // content has them; the media type may have been, so it is read hydrated.
        let row = self.with_client(|c| {
            c.query_opt(
                "SELECT i.collection, i.id, a.key, a.value->>'type'
                 FROM pgstac.items i,
                      jsonb_each(pgstac.content_hydrate(i)->'assets') AS a(key, value)
                 WHERE jsonb_path_exists(i.content->'assets', '$.*.href ? (@ == $h)',
                                         jsonb_build_object('h', $1::text))
                   AND a.value->>'href' IN ($1::text, '/' || $1::text)
                 ORDER BY i.datetime, i.id LIMIT 1",
                &[&href],
            )
            .map_err(pg("find asset"))
        })?;
        Ok(row.map(|r| AssetRef {
            collection: r.get(0),
            item: r.get(1),
            key: r.get(2),
            media_type: r.get(3),
        }))
    }

    fn check(&self) -> Result<(), Error> {
        self.prepare()?;
        self.with_client(|c| {
            c.simple_query("SELECT 1")
                .map(|_| ())
                .map_err(pg("check connection"))
        })
    }

    fn stats(&self) -> CatalogStats {
        CatalogStats {
            write_failures: self.write_failures.load(Ordering::Relaxed),
            reopened: self.reopened.load(Ordering::Relaxed),
        }
    }
}
