//! RFC 7946 geometry of an alert polygon, written the way `OGR_G_ExportToJson` writes it
//! (each coordinate as GDAL's `%.15f` with its `intelliround` and trailing-zero trimming), but
//! without OGR's per-number `std::ostringstream`, which took more time than the whole
//! per-pixel pass on scenes with tens of thousands of alerts.

use gdal::vector::{Geometry, OGRwkbGeometryType};
use serde_json::{json, Value};

/// The geometry as GeoJSON, or `None` when it is not a 2-D polygon or multipolygon (the
/// caller falls back to OGR's export).
pub(crate) fn geometry(g: &Geometry) -> Option<Value> {
    match g.geometry_type() {
        OGRwkbGeometryType::wkbPolygon => Some(json!({
            "type": "Polygon",
            "coordinates": polygon(g)?,
        })),
        OGRwkbGeometryType::wkbMultiPolygon => {
            let parts = (0..g.geometry_count())
                .map(|i| polygon(&g.get_geometry(i)))
                .collect::<Option<Vec<_>>>()?;
            Some(json!({ "type": "MultiPolygon", "coordinates": parts }))
        }
        _ => None,
    }
}

fn polygon(p: &Geometry) -> Option<Value> {
    if p.geometry_type() != OGRwkbGeometryType::wkbPolygon {
        return None;
    }
    let mut pts = Vec::new();
    let mut rings = Vec::with_capacity(p.geometry_count());
    for i in 0..p.geometry_count() {
        pts.clear();
        p.get_geometry(i).get_points(&mut pts);
        let ring = pts
            .iter()
            .map(|&(x, y, _)| Some(json!([coord(x)?, coord(y)?])))
            .collect::<Option<Vec<_>>>()?;
        rings.push(Value::Array(ring));
    }
    Some(Value::Array(rings))
}

/// One coordinate as OGR writes it (`OGRFormatDouble` at precision 15), read back.
fn coord(v: f64) -> Option<f64> {
    if !v.is_finite() || v.abs() > 1e50 {
        return None;
    }
    intelliround(format!("{v:.15}")).parse().ok()
}

/// GDAL's `intelliround` (ogr/ogrutils.cpp): trims what is likely binary → decimal noise at
/// the end of a fixed-point number.
fn intelliround(mut s: String) -> String {
    let Some(dot) = s.find('.') else { return s };
    let b = s.as_bytes();
    let i = b.len();
    if i <= 10 {
        return s;
    }
    let before = dot - 1 - usize::from(b[0] == b'-');
    let at = |k: usize| b[i - k];
    let run = |ch: u8, from: usize| (from..=6).all(|k| at(k) == ch);
    let long_run =
        |ch: u8| (3..=7).all(|k| before > k || at(k) == ch) && at(8) == ch && at(9) == ch;
    if run(b'0', 2) {
        s.truncate(i - 1);
    } else if dot < i - 8 && long_run(b'0') {
        s.truncate(i - 8);
    } else if run(b'9', 2) {
        s.truncate(i - 6);
        s = roundup(&s);
    } else if dot < i - 9 && long_run(b'9') {
        s.truncate(i - 9);
        s = roundup(&s);
    }
    s
}

/// GDAL's `roundup`: adds one in the last digit, away from zero.
fn roundup(s: &str) -> String {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let mut v: Vec<u8> = digits.bytes().collect();
    let mut carry = true;
    for ch in v.iter_mut().rev() {
        if *ch == b'.' {
            continue;
        }
        if *ch == b'9' {
            *ch = b'0';
        } else {
            *ch += 1;
            carry = false;
            break;
        }
    }
    let mut out = String::with_capacity(v.len() + 2);
    if neg {
        out.push('-');
    }
    if carry {
        out.push('1');
    }
    out.extend(v.iter().map(|&c| char::from(c)));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Same numbers as OGR's own export, on values that hit each branch of `intelliround`.
    #[test]
    fn coordinates_match_ogr_export() {
        let vals = [
            8.35338,
            47.2699,
            -0.1,
            0.3,
            12345.000000011,
            -12345.000000011,
            9.999999999999,
            -9.9999999999999,
            0.299999999999999,
            1e-7,
            -73.123_456_789_012_34,
            179.99999999999997,
            0.0,
            -0.0,
            1234567.123456789,
            99999.9999999999,
        ];
        let mut ring = Geometry::empty(OGRwkbGeometryType::wkbLinearRing).unwrap();
        for (k, &v) in vals.iter().enumerate() {
            ring.add_point_2d((v, vals[(k + 3) % vals.len()]));
        }
        ring.add_point_2d((vals[0], vals[3]));
        let mut poly = Geometry::empty(OGRwkbGeometryType::wkbPolygon).unwrap();
        poly.add_geometry(ring).unwrap();
        let ogr: Value = serde_json::from_str(&poly.json().unwrap()).unwrap();
        assert_eq!(geometry(&poly).unwrap(), ogr);
    }
}
