//! RFC 7946 geometry of an alert polygon, written the way `OGR_G_ExportToJson` writes it
//! (each coordinate as GDAL's `%.15f` with its `intelliround` and trailing-zero trimming), but
//! without OGR's per-number `std::ostringstream`, which took more time than the whole
//! per-pixel pass on scenes with tens of thousands of alerts.

use gdal::vector::{Geometry, OGRwkbGeometryType};

/// The geometry as RFC 7946 GeoJSON text (compact, keys in `serde_json`'s order:
/// `coordinates` then `type`), or `None` when it is not a 2-D polygon or multipolygon (the
/// caller falls back to OGR's export). Written straight from the ring points: no
/// `serde_json::Value` per coordinate.
pub(crate) fn geometry(g: &Geometry) -> Option<String> {
    let mut out = Vec::with_capacity(64);
    match g.geometry_type() {
        OGRwkbGeometryType::wkbPolygon => {
            out.extend_from_slice(b"{\"coordinates\":");
            polygon(g, &mut out)?;
            out.extend_from_slice(b",\"type\":\"Polygon\"}");
        }
        OGRwkbGeometryType::wkbMultiPolygon => {
            out.extend_from_slice(b"{\"coordinates\":[");
            for i in 0..g.geometry_count() {
                if i > 0 {
                    out.push(b',');
                }
                polygon(&g.get_geometry(i), &mut out)?;
            }
            out.extend_from_slice(b"],\"type\":\"MultiPolygon\"}");
        }
        _ => return None,
    }
    String::from_utf8(out).ok()
}

fn polygon(p: &Geometry, out: &mut Vec<u8>) -> Option<()> {
    if p.geometry_type() != OGRwkbGeometryType::wkbPolygon {
        return None;
    }
    let mut pts = Vec::new();
    out.push(b'[');
    for i in 0..p.geometry_count() {
        if i > 0 {
            out.push(b',');
        }
        pts.clear();
        p.get_geometry(i).get_points(&mut pts);
        out.push(b'[');
        for (k, &(x, y, _)) in pts.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            out.push(b'[');
            serde_json::to_writer(&mut *out, &coord(x)?).ok()?;
            out.push(b',');
            serde_json::to_writer(&mut *out, &coord(y)?).ok()?;
            out.push(b']');
        }
        out.push(b']');
    }
    out.push(b']');
    Some(())
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
    use serde_json::Value;

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
        let ours: Value = serde_json::from_str(&geometry(&poly).unwrap()).unwrap();
        assert_eq!(ours, ogr);
        // A multipolygon of it and a shifted copy with a hole.
        let mut multi = Geometry::empty(OGRwkbGeometryType::wkbMultiPolygon).unwrap();
        multi.add_geometry(poly.clone()).unwrap();
        let mut outer = Geometry::empty(OGRwkbGeometryType::wkbLinearRing).unwrap();
        let mut hole = Geometry::empty(OGRwkbGeometryType::wkbLinearRing).unwrap();
        for (x, y) in [(10.0, 10.0), (11.0, 10.0), (11.0, 11.0), (10.0, 10.0)] {
            outer.add_point_2d((x + 0.123_456_789_012_345, y));
            hole.add_point_2d((x * 0.5 + 5.2, y * 0.5 + 5.2));
        }
        let mut p2 = Geometry::empty(OGRwkbGeometryType::wkbPolygon).unwrap();
        p2.add_geometry(outer).unwrap();
        p2.add_geometry(hole).unwrap();
        multi.add_geometry(p2).unwrap();
        let ogr: Value = serde_json::from_str(&multi.json().unwrap()).unwrap();
        let ours: Value = serde_json::from_str(&geometry(&multi).unwrap()).unwrap();
        assert_eq!(ours, ogr);
    }
}
