//! CQL2 filters (STAC API Filter extension, OGC CQL2 1.0) and `sortby` (STAC API Sort
//! extension) translated to SQL for the SQLite catalog.
//!
//! Properties map onto the `items` table: `id`, `collection`, `datetime` (the sort datetime,
//! `datetime` or else `start_datetime`), `start_datetime` and `end_datetime` are columns (times
//! compared in microseconds); `geometry` is the stored footprint, tested by the SQL function
//! `dl_intersects` (the same exact test as `bbox`/`intersects`); any other name is the item
//! property of that name (`json_extract(json, '$.properties."name"')`, a leading `properties.`
//! is dropped). A missing property is NULL, so CQL2's three-valued logic is SQL's. A property
//! compared with a TIMESTAMP or DATE compares as an instant (`julianday`).
//!
//! Supported: `and`, `or`, `not`, `=`, `<>`, `<`, `<=`, `>`, `>=`, `between`, `in`, `like`
//! (case-sensitive, via GLOB), `isNull`, `casei`, `s_intersects`, `s_disjoint` (geometry with a
//! literal geometry or bbox) and `t_intersects` (a time property with a timestamp, date or
//! interval). Anything else is refused as a bad parameter, never ignored.

use chrono::{DateTime, NaiveDate, Utc};
use cql2::Expr;
use rusqlite::types::Value as SqlValue;

use super::geom::Shape;
use super::store::SortBy;
use crate::Error;

fn unsupported(reason: impl Into<String>) -> Error {
    Error::InvalidParams {
        param: "filter",
        reason: reason.into(),
    }
}

/// A column or expression of the `items` table for a property name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Column {
    /// A time column in microseconds (`datetime_us`, `start_us`, `end_us`).
    Time(&'static str),
    /// A text column (`id`, `collection`).
    Text(&'static str),
    /// The footprint.
    Geometry,
    /// `json_extract` of an item property (may be NULL).
    Json(String),
}

impl Column {
    pub(crate) fn sql(&self) -> String {
        match self {
            Column::Time(c) | Column::Text(c) => (*c).to_owned(),
            Column::Geometry => "geometry".to_owned(),
            Column::Json(p) => format!("json_extract(json, '$.properties.\"{p}\"')"),
        }
    }

    /// Whether the column can be NULL.
    pub(crate) fn nullable(&self) -> bool {
        matches!(self, Column::Json(_))
    }
}

/// Property names a filter or sort may use: STAC property names (`eo:cloud_cover`,
/// `view:sun_elevation`, `proj:code` …). Anything else could not be a property anyway.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.'))
}

/// The column of a property name (`properties.` prefix allowed).
pub(crate) fn column(name: &str, param: &'static str) -> Result<Column, Error> {
    let n = name.strip_prefix("properties.").unwrap_or(name);
    Ok(match n {
        "id" => Column::Text("id"),
        "collection" => Column::Text("collection"),
        "datetime" => Column::Time("datetime_us"),
        "start_datetime" => Column::Time("start_us"),
        "end_datetime" => Column::Time("end_us"),
        "geometry" => Column::Geometry,
        _ if valid_name(n) => Column::Json(n.to_owned()),
        _ => {
            return Err(Error::InvalidParams {
                param,
                reason: format!("{name:?} is not a property name"),
            })
        }
    })
}

/// A translated operand.
#[derive(Debug, Clone)]
enum Operand {
    Col(Column),
    /// An instant literal (TIMESTAMP, DATE).
    Instant(DateTime<Utc>),
    /// Any other value: SQL text with its arguments.
    Value {
        sql: String,
        args: Vec<SqlValue>,
        /// A string literal (may be read as an instant against a time column).
        text: Option<String>,
    },
}

/// SQL text and its positional arguments.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub args: Vec<SqlValue>,
}

fn instant(s: &str) -> Result<DateTime<Utc>, Error> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| unsupported(format!("{s:?} is not an RFC 3339 timestamp or a date")))
}

fn literal_text(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(s) => Some(s),
        _ => None,
    }
}

fn operand(e: &Expr) -> Result<Operand, Error> {
    let value = |sql: &str, args: Vec<SqlValue>| Operand::Value {
        sql: sql.to_owned(),
        args,
        text: None,
    };
    Ok(match e {
        Expr::Property { property } => Operand::Col(column(property, "filter")?),
        Expr::Timestamp { timestamp } | Expr::Date { date: timestamp } => {
            let s = literal_text(timestamp)
                .ok_or_else(|| unsupported("TIMESTAMP and DATE take a string"))?;
            Operand::Instant(instant(s)?)
        }
        Expr::Float(f) => value("?", vec![SqlValue::Real(*f)]),
        Expr::Literal(s) => Operand::Value {
            sql: "?".into(),
            args: vec![SqlValue::Text(s.clone())],
            text: Some(s.clone()),
        },
        Expr::Bool(b) => value(if *b { "1" } else { "0" }, Vec::new()),
        Expr::Null => value("NULL", Vec::new()),
        Expr::Operation { op, args } if op.eq_ignore_ascii_case("casei") => {
            let [a] = args.as_slice() else {
                return Err(unsupported("casei takes one argument"));
            };
            let (sql, args) = plain(operand(a)?)?;
            value(&format!("lower({sql})"), args)
        }
        other => {
            return Err(unsupported(format!(
                "unsupported operand {}",
                other.to_text().unwrap_or_else(|_| format!("{other:?}"))
            )))
        }
    })
}

/// An operand as a plain SQL value.
fn plain(o: Operand) -> Result<(String, Vec<SqlValue>), Error> {
    Ok(match o {
        Operand::Col(Column::Geometry) => {
            return Err(unsupported(
                "geometry is compared with s_intersects or s_disjoint only",
            ))
        }
        Operand::Col(c) => (c.sql(), Vec::new()),
        Operand::Instant(t) => (
            "julianday(?)".into(),
            vec![SqlValue::Text(
                t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            )],
        ),
        Operand::Value { sql, args, .. } => (sql, args),
    })
}

/// Two operands side by side in one comparable form.
fn pair(a: Operand, b: Operand) -> Result<(String, String, Vec<SqlValue>), Error> {
    let micros = |o: Operand| -> Result<(String, Vec<SqlValue>), Error> {
        match o {
            Operand::Col(Column::Time(c)) => Ok((c.to_owned(), Vec::new())),
            Operand::Instant(t) => Ok(("?".into(), vec![SqlValue::Integer(t.timestamp_micros())])),
            Operand::Value { text: Some(s), .. } => Ok((
                "?".into(),
                vec![SqlValue::Integer(instant(&s)?.timestamp_micros())],
            )),
            Operand::Value { sql, .. } if sql == "NULL" => Ok(("NULL".into(), Vec::new())),
            _ => Err(unsupported(
                "a datetime property is compared with a TIMESTAMP, a DATE or another datetime",
            )),
        }
    };
    let julian = |o: Operand| -> Result<(String, Vec<SqlValue>), Error> {
        match o {
            Operand::Col(Column::Json(_)) => {
                let (s, a) = plain(o)?;
                Ok((format!("julianday({s})"), a))
            }
            other => plain(other),
        }
    };
    let is_time = |o: &Operand| matches!(o, Operand::Col(Column::Time(_)));
    let is_instant = |o: &Operand| matches!(o, Operand::Instant(_));
    let ((sa, mut aa), (sb, ab)) = if is_time(&a) || is_time(&b) {
        (micros(a)?, micros(b)?)
    } else if is_instant(&a) || is_instant(&b) {
        (julian(a)?, julian(b)?)
    } else {
        (plain(a)?, plain(b)?)
    };
    aa.extend(ab);
    Ok((sa, sb, aa))
}

fn compare(a: &Expr, b: &Expr, op: &str) -> Result<Sql, Error> {
    let (sa, sb, args) = pair(operand(a)?, operand(b)?)?;
    Ok(Sql {
        text: format!("({sa} {op} {sb})"),
        args,
    })
}

/// CQL2 LIKE pattern (`%`, `_`, `\` escapes) as a case-sensitive GLOB pattern.
fn glob(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => out.push('*'),
            '_' => out.push('?'),
            '\\' => match chars.next() {
                Some(n) => push_glob_literal(&mut out, n),
                None => push_glob_literal(&mut out, '\\'),
            },
            c => push_glob_literal(&mut out, c),
        }
    }
    out
}

fn push_glob_literal(out: &mut String, c: char) {
    match c {
        '*' | '?' | '[' | ']' => {
            out.push('[');
            out.push(c);
            out.push(']');
        }
        c => out.push(c),
    }
}

/// A literal geometry (GeoJSON, WKT or BBOX) as GeoJSON text, checked.
fn geometry_literal(e: &Expr) -> Result<String, Error> {
    let v = match e {
        Expr::Geometry(g) => serde_json::to_value(g)
            .map_err(|err| unsupported(format!("geometry literal: {err}")))?,
        Expr::BBox { bbox } => {
            let n: Vec<f64> = bbox
                .iter()
                .map(|b| match b.as_ref() {
                    Expr::Float(f) => Ok(*f),
                    _ => Err(unsupported("BBOX takes numbers")),
                })
                .collect::<Result<_, _>>()?;
            let b = match n.as_slice() {
                [w, s, e, n] | [w, s, _, e, n, _] => [*w, *s, *e, *n],
                _ => return Err(unsupported("BBOX takes 4 or 6 numbers")),
            };
            match Shape::from_bbox(b) {
                Shape::Polygons(ps) => super::geom::rings_to_geojson(
                    &ps.into_iter().map(|p| p.exterior).collect::<Vec<_>>(),
                ),
                _ => return Err(unsupported("bad BBOX")),
            }
        }
        _ => {
            return Err(unsupported(
                "a spatial function takes geometry and a literal geometry",
            ))
        }
    };
    Shape::from_geojson(&v)?;
    Ok(v.to_string())
}

fn spatial(args: &[Box<Expr>], negate: bool) -> Result<Sql, Error> {
    let [a, b] = args else {
        return Err(unsupported("a spatial function takes two arguments"));
    };
    let is_geom = |e: &Expr| matches!(e, Expr::Property { property } if column(property, "filter").ok() == Some(Column::Geometry));
    let lit = if is_geom(a) {
        b
    } else if is_geom(b) {
        a
    } else {
        return Err(unsupported(
            "a spatial function compares the geometry property with a literal",
        ));
    };
    let g = geometry_literal(lit)?;
    Ok(Sql {
        text: format!(
            "({}dl_intersects(geometry, ?))",
            if negate { "NOT " } else { "" }
        ),
        args: vec![SqlValue::Text(g)],
    })
}

/// `t_intersects(time property, instant | interval)`.
fn t_intersects(args: &[Box<Expr>]) -> Result<Sql, Error> {
    let [a, b] = args else {
        return Err(unsupported("t_intersects takes two arguments"));
    };
    let col = match operand(a)? {
        Operand::Col(Column::Time(c)) => c,
        _ => return Err(unsupported("t_intersects takes a datetime property first")),
    };
    let bound = |e: &Expr| -> Result<Option<i64>, Error> {
        match e {
            Expr::Literal(s) if s == ".." => Ok(None),
            Expr::Literal(s) => Ok(Some(instant(s)?.timestamp_micros())),
            other => match operand(other)? {
                Operand::Instant(t) => Ok(Some(t.timestamp_micros())),
                _ => Err(unsupported(
                    "an interval bound is a timestamp, a date or '..'",
                )),
            },
        }
    };
    let (lo, hi) = match b.as_ref() {
        Expr::Interval { interval } => match interval.as_slice() {
            [lo, hi] => (bound(lo)?, bound(hi)?),
            _ => return Err(unsupported("an interval has two bounds")),
        },
        other => {
            let t = bound(other)?;
            (t, t)
        }
    };
    // `datetime` of an item with a range is the range: it intersects when they overlap.
    let (start, end) = if col == "datetime_us" {
        ("start_us", "end_us")
    } else {
        (col, col)
    };
    let mut w = vec!["1".to_owned()];
    let mut args = Vec::new();
    if let Some(hi) = hi {
        w.push(format!("{start} <= ?"));
        args.push(SqlValue::Integer(hi));
    }
    if let Some(lo) = lo {
        w.push(format!("{end} >= ?"));
        args.push(SqlValue::Integer(lo));
    }
    Ok(Sql {
        text: format!("({})", w.join(" AND ")),
        args,
    })
}

/// A CQL2 expression as an SQL condition on the `items` table.
pub(crate) fn to_sql(e: &Expr) -> Result<Sql, Error> {
    let (op, args) = match e {
        Expr::Bool(b) => {
            return Ok(Sql {
                text: if *b { "1" } else { "0" }.into(),
                args: Vec::new(),
            })
        }
        Expr::Operation { op, args } => (op.to_ascii_lowercase(), args.as_slice()),
        other => {
            return Err(unsupported(format!(
                "{} is not a condition",
                other.to_text().unwrap_or_else(|_| format!("{other:?}"))
            )))
        }
    };
    let join = |sep: &str| -> Result<Sql, Error> {
        if args.is_empty() {
            return Err(unsupported(format!("{op} without arguments")));
        }
        let mut out = Sql::default();
        let mut parts = Vec::new();
        for a in args {
            let s = to_sql(a)?;
            parts.push(s.text);
            out.args.extend(s.args);
        }
        out.text = format!("({})", parts.join(sep));
        Ok(out)
    };
    let two = || -> Result<(&Expr, &Expr), Error> {
        match args {
            [a, b] => Ok((a, b)),
            _ => Err(unsupported(format!("{op} takes two arguments"))),
        }
    };
    match op.as_str() {
        "and" => join(" AND "),
        "or" => join(" OR "),
        "not" => match args {
            [a] => {
                let s = to_sql(a)?;
                Ok(Sql {
                    text: format!("(NOT {})", s.text),
                    args: s.args,
                })
            }
            _ => Err(unsupported("not takes one argument")),
        },
        "=" | "<>" | "<" | "<=" | ">" | ">=" => {
            let (a, b) = two()?;
            compare(a, b, &op)
        }
        "between" => {
            let (v, lo, hi) = match args {
                [v, lo, hi] => (v.as_ref(), lo.as_ref(), hi.as_ref()),
                [v, r] => match r.as_ref() {
                    Expr::Array(r) => match r.as_slice() {
                        [lo, hi] => (v.as_ref(), lo.as_ref(), hi.as_ref()),
                        _ => return Err(unsupported("between takes a low and a high bound")),
                    },
                    _ => return Err(unsupported("between takes a low and a high bound")),
                },
                _ => return Err(unsupported("between takes a value and two bounds")),
            };
            let a = compare(v, lo, ">=")?;
            let b = compare(v, hi, "<=")?;
            let mut args = a.args;
            args.extend(b.args);
            Ok(Sql {
                text: format!("({} AND {})", a.text, b.text),
                args,
            })
        }
        "in" => {
            let (v, list) = two()?;
            let Expr::Array(list) = list else {
                return Err(unsupported("in takes a list"));
            };
            if list.is_empty() {
                return Ok(Sql {
                    text: "0".into(),
                    args: Vec::new(),
                });
            }
            let mut out = Sql::default();
            let mut parts = Vec::new();
            for x in list {
                let s = compare(v, x, "=")?;
                parts.push(s.text);
                out.args.extend(s.args);
            }
            out.text = format!("({})", parts.join(" OR "));
            Ok(out)
        }
        "like" => {
            let (v, p) = two()?;
            let pattern = match p {
                Expr::Literal(s) => s.clone(),
                _ => return Err(unsupported("like takes a string pattern")),
            };
            let (sql, mut args) = plain(operand(v)?)?;
            args.push(SqlValue::Text(glob(&pattern)));
            Ok(Sql {
                text: format!("({sql} GLOB ?)"),
                args,
            })
        }
        "isnull" => match args {
            [a] => {
                let (sql, args) = plain(operand(a)?)?;
                Ok(Sql {
                    text: format!("({sql} IS NULL)"),
                    args,
                })
            }
            _ => Err(unsupported("isNull takes one argument")),
        },
        "s_intersects" => spatial(args, false),
        "s_disjoint" => spatial(args, true),
        "t_intersects" => t_intersects(args),
        other => Err(unsupported(format!("operator {other:?} is not supported"))),
    }
}

/// One ORDER BY key.
#[derive(Debug, Clone)]
pub(crate) struct OrderKey {
    pub column: Column,
    pub descending: bool,
}

/// The ORDER BY keys of a search: the given sort (default `datetime` descending), then `id` and
/// `collection` ascending so that the order is total (keyset paging needs it).
pub(crate) fn order(sortby: &[SortBy]) -> Result<Vec<OrderKey>, Error> {
    let mut keys: Vec<OrderKey> = Vec::new();
    for s in sortby {
        let column = column(&s.field, "sortby")?;
        if column == Column::Geometry {
            return Err(Error::InvalidParams {
                param: "sortby",
                reason: "cannot sort by geometry".into(),
            });
        }
        if keys.iter().any(|k| k.column == column) {
            return Err(Error::InvalidParams {
                param: "sortby",
                reason: format!("{:?} given twice", s.field),
            });
        }
        keys.push(OrderKey {
            column,
            descending: s.direction.descending(),
        });
    }
    if keys.is_empty() {
        keys.push(OrderKey {
            column: Column::Time("datetime_us"),
            descending: true,
        });
    }
    for c in ["id", "collection"] {
        if !keys.iter().any(|k| k.column == Column::Text(c)) {
            keys.push(OrderKey {
                column: Column::Text(c),
                descending: false,
            });
        }
    }
    Ok(keys)
}

/// `ORDER BY` text; NULLs (missing properties) last in either direction.
pub(crate) fn order_by(keys: &[OrderKey]) -> String {
    keys.iter()
        .map(|k| {
            let dir = if k.descending { "DESC" } else { "ASC" };
            if k.column.nullable() {
                format!("({c}) IS NULL, {c} {dir}", c = k.column.sql())
            } else {
                format!("{} {dir}", k.column.sql())
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows strictly after the row whose keys were `last` (keyset paging), in the order of
/// [`order_by`].
pub(crate) fn after(keys: &[OrderKey], last: &[SqlValue]) -> Result<Sql, Error> {
    if keys.len() != last.len() {
        return Err(Error::InvalidToken);
    }
    let mut ors = Vec::new();
    let mut args = Vec::new();
    for (i, (k, v)) in keys.iter().zip(last).enumerate() {
        let mut ands = Vec::new();
        for (kj, vj) in keys.iter().zip(last).take(i) {
            if matches!(vj, SqlValue::Null) {
                ands.push(format!("{} IS NULL", kj.column.sql()));
            } else {
                ands.push(format!("{} = ?", kj.column.sql()));
                args.push(vj.clone());
            }
        }
        if matches!(v, SqlValue::Null) {
            // NULLs sort last: nothing is after a NULL in this key.
            continue;
        }
        let cmp = if k.descending { "<" } else { ">" };
        let c = k.column.sql();
        if k.column.nullable() {
            ands.push(format!("({c} {cmp} ? OR {c} IS NULL)"));
        } else {
            ands.push(format!("{c} {cmp} ?"));
        }
        args.push(v.clone());
        ors.push(format!("({})", ands.join(" AND ")));
    }
    Ok(Sql {
        text: if ors.is_empty() {
            "0".into()
        } else {
            format!("({})", ors.join(" OR "))
        },
        args,
    })
}

/// A page token: `k2` + lowercase hex of the JSON array of the last row's sort keys.
pub(crate) fn token(last: &[SqlValue]) -> String {
    let v: Vec<serde_json::Value> = last
        .iter()
        .map(|x| match x {
            SqlValue::Null | SqlValue::Blob(_) => serde_json::Value::Null,
            SqlValue::Integer(i) => serde_json::Value::from(*i),
            SqlValue::Real(f) => serde_json::Value::from(*f),
            SqlValue::Text(s) => serde_json::Value::from(s.clone()),
        })
        .collect();
    let raw = serde_json::Value::Array(v).to_string();
    let mut s = String::with_capacity(2 + raw.len() * 2);
    s.push_str("k2");
    for b in raw.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Decodes a token made by [`token`].
pub(crate) fn from_token(t: &str) -> Result<Vec<SqlValue>, Error> {
    let hex = t.strip_prefix("k2").ok_or(Error::InvalidToken)?;
    if hex.len() % 2 != 0 || hex.len() > 4096 {
        return Err(Error::InvalidToken);
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or(Error::InvalidToken)
        })
        .collect::<Result<Vec<u8>, _>>()?;
    let v: Vec<serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| Error::InvalidToken)?;
    v.into_iter()
        .map(|x| match x {
            serde_json::Value::Null => Ok(SqlValue::Null),
            serde_json::Value::String(s) => Ok(SqlValue::Text(s)),
            serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Ok(SqlValue::Integer(i)),
                (None, Some(f)) => Ok(SqlValue::Real(f)),
                _ => Err(Error::InvalidToken),
            },
            _ => Err(Error::InvalidToken),
        })
        .collect()
}

/// `dl_intersects(stored GeoJSON, filter GeoJSON)`: the exact footprint test of search.
pub(crate) fn register_functions(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "dl_intersects",
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let shape = |i: usize| -> Option<Shape> {
                let s: String = ctx.get(i).ok()?;
                let v: serde_json::Value = serde_json::from_str(&s).ok()?;
                Shape::from_geojson(&v).ok()
            };
            Ok(match (shape(0), shape(1)) {
                (Some(a), Some(b)) => a.intersects(&b),
                _ => false,
            })
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Pages of `sortby` over a property some items lack (NULLs last), with a filter, each
    /// item once and in order, and the count exact.
    #[test]
    fn keyset_pages_over_nullable_sort_keys_with_a_filter() {
        use crate::catalog::empty_extent_collection;
        use crate::catalog::store::{Direction, SearchParams};
        use crate::catalog::{Catalog, SqliteCatalog};

        let dir = tempfile::tempdir().unwrap();
        let cat = SqliteCatalog::open(dir.path().join("catalog.sqlite")).unwrap();
        cat.upsert_collection(&empty_extent_collection("c", "t").unwrap())
            .unwrap();
        // Cloud cover 0,10,20,0,10,20,… ; every fourth item has none.
        let mut want: Vec<(Option<i64>, String)> = Vec::new();
        for i in 0..23i64 {
            let mut it = stac::Item::new(format!("i{i:02}"));
            it.collection = Some("c".into());
            it.bbox = Some(stac::Bbox::new(0.0, 0.0, 1.0, 1.0));
            it.properties.datetime = chrono::DateTime::from_timestamp(1_700_000_000 + i, 0);
            let cloud = (i % 4 != 3).then_some((i % 3) * 10);
            if let Some(c) = cloud {
                it.properties
                    .additional_fields
                    .insert("eo:cloud_cover".into(), c.into());
            }
            cat.upsert_item(&it).unwrap();
            if i % 2 == 0 {
                want.push((cloud, it.id.clone()));
            }
        }
        // Descending cloud cover, then id; NULLs last.
        want.sort_by(|a, b| match (a.0, b.0) {
            (Some(x), Some(y)) => y.cmp(&x).then(a.1.cmp(&b.1)),
            (x, y) => x.is_none().cmp(&y.is_none()).then(a.1.cmp(&b.1)),
        });
        let want: Vec<String> = want.into_iter().map(|(_, id)| id).collect();
        let mut p = SearchParams {
            limit: Some(3),
            sortby: vec![crate::catalog::SortBy {
                field: "properties.eo:cloud_cover".into(),
                direction: Direction::Desc,
            }],
            filter: Some(
                "s_intersects(geometry, bbox(0.5, 0.5, 2, 2)) and id in \
                 ('i00','i02','i04','i06','i08','i10','i12','i14','i16','i18','i20','i22')"
                    .parse()
                    .unwrap(),
            ),
            ..SearchParams::default()
        };
        let mut got = Vec::new();
        loop {
            let page = cat.search(&p).unwrap();
            assert_eq!(page.matched, Some(12));
            got.extend(page.items.into_iter().map(|i| i.id));
            match page.next {
                Some(t) => p.token = Some(t),
                None => break,
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn like_becomes_a_case_sensitive_glob() {
        assert_eq!(glob("sentinel%"), "sentinel*");
        assert_eq!(glob("a_b\\%c*"), "a?b%c[*]");
    }

    #[test]
    fn tokens_round_trip_every_sql_type() {
        let v = vec![
            SqlValue::Integer(-5),
            SqlValue::Real(10.0),
            SqlValue::Text("a\nb".into()),
            SqlValue::Null,
        ];
        assert_eq!(from_token(&token(&v)).unwrap(), v);
        for bad in ["", "k2zz", "k1", "k27b"] {
            assert!(from_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unsupported_operators_are_refused() {
        for f in [
            "eo:cloud_cover + 1 > 2",
            "s_within(geometry, POINT(0 0))",
            "a_contains(x, ('a'))",
            "datetime > 5",
            "\"bad name\" = 1",
        ] {
            let e: Expr = f.parse().unwrap();
            assert!(to_sql(&e).is_err(), "{f}");
        }
        for f in [
            "eo:cloud_cover BETWEEN 0 AND 50",
            "mission NOT LIKE 'sentinel%'",
            "datetime >= TIMESTAMP('2021-04-08T04:39:23Z') AND collection IN ('a', 'b')",
            "T_INTERSECTS(datetime, INTERVAL('2020-11-11T00:00:00Z', '..'))",
            "S_INTERSECTS(geometry, BBOX(0, 0, 1, 1)) OR platform IS NULL",
        ] {
            let e: Expr = f.parse().unwrap();
            assert!(to_sql(&e).is_ok(), "{f}: {:?}", to_sql(&e));
        }
    }
}
