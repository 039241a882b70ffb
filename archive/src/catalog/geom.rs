//! Minimal planar lon/lat geometry for catalog search: GeoJSON geometry parsing
//! (RFC 7946 §3.1), bounding boxes, antimeridian handling, and an exact
//! "intersects" predicate (boundary contact counts as intersecting).
//!
//! Coordinates are treated as planar degrees (as STAC API / pgstac do with PostGIS
//! `geometry`, not `geography`). Items crossing the antimeridian are expected to be
//! split into a MultiPolygon at ±180° (RFC 7946 §3.1.9); [`split_antimeridian`] does that
//! for a ring whose longitudes were unwrapped past ±180.

use serde_json::{json, Value};

use crate::Error;

/// A lon/lat position.
pub type Pos = [f64; 2];

/// One polygon: exterior ring and holes, each ring closed or not (closing is implied).
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    /// Exterior ring.
    pub exterior: Vec<Pos>,
    /// Interior rings.
    pub holes: Vec<Vec<Pos>>,
}

/// A parsed geometry, reduced to what the intersects test needs.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Shape {
    /// Points (Point and MultiPoint).
    Points(Vec<Pos>),
    /// Lines (LineString and MultiLineString).
    Lines(Vec<Vec<Pos>>),
    /// Polygons (Polygon and MultiPolygon).
    Polygons(Vec<Polygon>),
    /// GeometryCollection.
    Collection(Vec<Shape>),
}

fn pos(v: &Value) -> Result<Pos, Error> {
    let a = v
        .as_array()
        .ok_or_else(|| Error::Geometry("position is not an array".into()))?;
    let x = a.first().and_then(Value::as_f64);
    let y = a.get(1).and_then(Value::as_f64);
    match (x, y) {
        (Some(x), Some(y)) if x.is_finite() && y.is_finite() => Ok([x, y]),
        _ => Err(Error::Geometry("position needs two finite numbers".into())),
    }
}

fn line(v: &Value) -> Result<Vec<Pos>, Error> {
    v.as_array()
        .ok_or_else(|| Error::Geometry("expected an array of positions".into()))?
        .iter()
        .map(pos)
        .collect()
}

fn polygon(v: &Value) -> Result<Polygon, Error> {
    let rings: Vec<Vec<Pos>> = v
        .as_array()
        .ok_or_else(|| Error::Geometry("polygon is not an array of rings".into()))?
        .iter()
        .map(line)
        .collect::<Result<_, _>>()?;
    let mut it = rings.into_iter();
    let exterior = it
        .next()
        .ok_or_else(|| Error::Geometry("polygon without exterior ring".into()))?;
    if exterior.len() < 3 {
        return Err(Error::Geometry("ring with fewer than 3 positions".into()));
    }
    Ok(Polygon {
        exterior,
        holes: it.collect(),
    })
}

impl Shape {
    /// Parse a GeoJSON geometry object.
    pub fn from_geojson(v: &Value) -> Result<Shape, Error> {
        let ty = v
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Geometry("missing \"type\"".into()))?;
        if ty == "GeometryCollection" {
            let g = v
                .get("geometries")
                .and_then(Value::as_array)
                .ok_or_else(|| Error::Geometry("missing \"geometries\"".into()))?;
            return Ok(Shape::Collection(
                g.iter()
                    .map(Shape::from_geojson)
                    .collect::<Result<_, _>>()?,
            ));
        }
        let c = v
            .get("coordinates")
            .ok_or_else(|| Error::Geometry("missing \"coordinates\"".into()))?;
        let arr = || {
            c.as_array()
                .ok_or_else(|| Error::Geometry("coordinates is not an array".into()))
        };
        match ty {
            "Point" => Ok(Shape::Points(vec![pos(c)?])),
            "MultiPoint" => Ok(Shape::Points(line(c)?)),
            "LineString" => Ok(Shape::Lines(vec![line(c)?])),
            "MultiLineString" => Ok(Shape::Lines(
                arr()?.iter().map(line).collect::<Result<_, _>>()?,
            )),
            "Polygon" => Ok(Shape::Polygons(vec![polygon(c)?])),
            "MultiPolygon" => Ok(Shape::Polygons(
                arr()?.iter().map(polygon).collect::<Result<_, _>>()?,
            )),
            other => Err(Error::Geometry(format!("geometry type {other:?}"))),
        }
    }

    /// Planar bounding box `[minx, miny, maxx, maxy]`; `None` if empty.
    pub fn bbox(&self) -> Option<[f64; 4]> {
        let mut b = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        let mut any = false;
        self.for_each_pos(&mut |p| {
            any = true;
            b[0] = b[0].min(p[0]);
            b[1] = b[1].min(p[1]);
            b[2] = b[2].max(p[0]);
            b[3] = b[3].max(p[1]);
        });
        any.then_some(b)
    }

    fn for_each_pos(&self, f: &mut dyn FnMut(Pos)) {
        match self {
            Shape::Points(ps) => ps.iter().for_each(|p| f(*p)),
            Shape::Lines(ls) => ls.iter().flatten().for_each(|p| f(*p)),
            Shape::Polygons(polys) => polys
                .iter()
                .flat_map(|p| p.exterior.iter().chain(p.holes.iter().flatten()))
                .for_each(|p| f(*p)),
            Shape::Collection(c) => c.iter().for_each(|s| s.for_each_pos(f)),
        }
    }

    /// The shape(s) of a STAC bbox `[w, s, e, n]`; `w > e` crosses the antimeridian
    /// and yields two rectangles.
    pub fn from_bbox(b: [f64; 4]) -> Shape {
        let [w, s, e, n] = b;
        let rect = |w: f64, e: f64| Polygon {
            exterior: vec![[w, s], [e, s], [e, n], [w, n], [w, s]],
            holes: Vec::new(),
        };
        if w > e {
            Shape::Polygons(vec![rect(w, 180.0), rect(-180.0, e)])
        } else {
            Shape::Polygons(vec![rect(w, e)])
        }
    }

    /// Exact planar intersection test (touching counts).
    pub fn intersects(&self, other: &Shape) -> bool {
        if let Shape::Collection(c) = self {
            return c.iter().any(|s| s.intersects(other));
        }
        if let Shape::Collection(c) = other {
            return c.iter().any(|s| self.intersects(s));
        }
        // Cheap reject on bounding boxes.
        if let (Some(a), Some(b)) = (self.bbox(), other.bbox()) {
            if a[2] < b[0] || b[2] < a[0] || a[3] < b[1] || b[3] < a[1] {
                return false;
            }
        }
        // Any segment crossing?
        let sa = self.segments();
        let sb = other.segments();
        if sa.iter().any(|s1| {
            sb.iter()
                .any(|s2| segments_intersect(s1.0, s1.1, s2.0, s2.1))
        }) {
            return true;
        }
        // Containment (or point-on-point) without boundary crossing.
        self.any_pos(|p| other.covers_point(p)) || other.any_pos(|p| self.covers_point(p))
    }

    fn any_pos(&self, f: impl Fn(Pos) -> bool) -> bool {
        let mut hit = false;
        self.for_each_pos(&mut |p| hit = hit || f(p));
        hit
    }

    fn segments(&self) -> Vec<(Pos, Pos)> {
        let mut out = Vec::new();
        let mut push_ring = |r: &[Pos], closed: bool| {
            for w in r.windows(2) {
                if let [a, b] = w {
                    out.push((*a, *b));
                }
            }
            if closed {
                if let (Some(a), Some(b)) = (r.last(), r.first()) {
                    if a != b {
                        out.push((*a, *b));
                    }
                }
            }
        };
        match self {
            Shape::Points(_) | Shape::Collection(_) => {}
            Shape::Lines(ls) => ls.iter().for_each(|l| push_ring(l, false)),
            Shape::Polygons(ps) => {
                for p in ps {
                    push_ring(&p.exterior, true);
                    p.holes.iter().for_each(|h| push_ring(h, true));
                }
            }
        }
        out
    }

    /// Whether the point lies in (or on the boundary of) the shape.
    fn covers_point(&self, p: Pos) -> bool {
        match self {
            Shape::Points(ps) => ps.contains(&p),
            Shape::Lines(ls) => ls.iter().any(|l| {
                l.windows(2).any(|w| match w {
                    [a, b] => on_segment(*a, *b, p),
                    _ => false,
                })
            }),
            Shape::Polygons(ps) => ps.iter().any(|poly| {
                ring_covers(&poly.exterior, p)
                    && !poly
                        .holes
                        .iter()
                        .any(|h| ring_covers(h, p) && !ring_on_boundary(h, p))
            }),
            Shape::Collection(c) => c.iter().any(|s| s.covers_point(p)),
        }
    }
}

fn cross(o: Pos, a: Pos, b: Pos) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

fn on_segment(a: Pos, b: Pos, p: Pos) -> bool {
    cross(a, b, p) == 0.0
        && p[0] >= a[0].min(b[0])
        && p[0] <= a[0].max(b[0])
        && p[1] >= a[1].min(b[1])
        && p[1] <= a[1].max(b[1])
}

fn segments_intersect(p1: Pos, p2: Pos, q1: Pos, q2: Pos) -> bool {
    let d1 = cross(q1, q2, p1);
    let d2 = cross(q1, q2, p2);
    let d3 = cross(p1, p2, q1);
    let d4 = cross(p1, p2, q2);
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    on_segment(q1, q2, p1)
        || on_segment(q1, q2, p2)
        || on_segment(p1, p2, q1)
        || on_segment(p1, p2, q2)
}

fn ring_edges(r: &[Pos]) -> impl Iterator<Item = (Pos, Pos)> + '_ {
    let n = r.len();
    (0..n).filter_map(move |i| Some((*r.get(i)?, *r.get((i + 1) % n)?)))
}

fn ring_on_boundary(r: &[Pos], p: Pos) -> bool {
    ring_edges(r).any(|(a, b)| on_segment(a, b, p))
}

/// Point in ring (even-odd), boundary included.
fn ring_covers(r: &[Pos], p: Pos) -> bool {
    if ring_on_boundary(r, p) {
        return true;
    }
    let mut inside = false;
    for (a, b) in ring_edges(r) {
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
            if p[0] < x {
                inside = !inside;
            }
        }
    }
    inside
}

/// Unwrap a ring's longitudes so consecutive vertices never jump by more than 180°.
pub fn unwrap_ring(ring: &[Pos]) -> Vec<Pos> {
    let mut out: Vec<Pos> = Vec::with_capacity(ring.len());
    for p in ring {
        let mut x = p[0];
        if let Some(prev) = out.last() {
            while x - prev[0] > 180.0 {
                x -= 360.0;
            }
            while x - prev[0] < -180.0 {
                x += 360.0;
            }
        }
        out.push([x, p[1]]);
    }
    out
}

/// Clip a ring to the half-plane `x <= lim` (`keep_below`) or `x >= lim`
/// (Sutherland–Hodgman against one vertical line).
fn clip_x(ring: &[Pos], lim: f64, keep_below: bool) -> Vec<Pos> {
    let inside = |p: &Pos| if keep_below { p[0] <= lim } else { p[0] >= lim };
    let mut out = Vec::new();
    let n = ring.len();
    for i in 0..n {
        let (Some(a), Some(b)) = (ring.get(i), ring.get((i + 1) % n)) else {
            continue;
        };
        let cut = || {
            let t = (lim - a[0]) / (b[0] - a[0]);
            [lim, a[1] + t * (b[1] - a[1])]
        };
        match (inside(a), inside(b)) {
            (true, true) => out.push(*b),
            (true, false) => out.push(cut()),
            (false, true) => {
                out.push(cut());
                out.push(*b);
            }
            (false, false) => {}
        }
    }
    out
}

fn close(mut r: Vec<Pos>) -> Vec<Pos> {
    if let (Some(f), Some(l)) = (r.first().copied(), r.last().copied()) {
        if f != l {
            r.push(f);
        }
    }
    r
}

/// A north-up geographic grid (GDAL geotransform `gt`, `width` columns) that runs past ±180°
/// (a pass across the antimeridian, gridded continuously, e.g. 166°…194°): the PROJ
/// definition under which GDAL finds its pixels from both sides of the line (`lon_wrap`
/// folds -170° onto 190°). `None` for rotated grids, grids inside [-180, 180] or wider than
/// the world. The caller says whether the grid's CRS is geographic.
pub fn lon_wrap_for_grid(geographic: bool, gt: &[f64; 6], width: usize) -> Option<&'static str> {
    let west = gt[0];
    let east = gt[0] + gt[1] * width as f64;
    if !geographic
        || gt[2] != 0.0
        || gt[4] != 0.0
        || gt[1] <= 0.0
        || !(west.is_finite() && east.is_finite())
        || east - west >= 360.0
    {
        None
    } else if east > 180.0 && west > -180.0 {
        Some("+proj=longlat +datum=WGS84 +lon_wrap=180 +over +no_defs")
    } else if west < -180.0 && east < 180.0 {
        Some("+proj=longlat +datum=WGS84 +lon_wrap=-180 +over +no_defs")
    } else {
        None
    }
}

/// Turn one exterior ring (lon/lat, possibly wrapping across ±180°) into GeoJSON-ready
/// polygons in [-180, 180]: unwraps longitudes, and if the ring extends past ±180° splits
/// it there. Returns 1 or 2 rings, each closed.
pub fn split_antimeridian(ring: &[Pos]) -> Vec<Vec<Pos>> {
    let mut u = unwrap_ring(ring);
    // Shift so the ring's mean longitude lies in [-180, 180].
    let mean = u.iter().map(|p| p[0]).sum::<f64>() / (u.len().max(1) as f64);
    let shift = if mean > 180.0 {
        -360.0
    } else if mean < -180.0 {
        360.0
    } else {
        0.0
    };
    for p in &mut u {
        p[0] += shift;
    }
    let minx = u.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
    let maxx = u.iter().map(|p| p[0]).fold(f64::NEG_INFINITY, f64::max);
    if maxx > 180.0 {
        let west = clip_x(&u, 180.0, true);
        let east: Vec<Pos> = clip_x(&u, 180.0, false)
            .into_iter()
            .map(|p| [p[0] - 360.0, p[1]])
            .collect();
        vec![close(west), close(east)]
    } else if minx < -180.0 {
        let east = clip_x(&u, -180.0, false);
        let west: Vec<Pos> = clip_x(&u, -180.0, true)
            .into_iter()
            .map(|p| [p[0] + 360.0, p[1]])
            .collect();
        vec![close(west), close(east)]
    } else {
        vec![close(u)]
    }
}

/// STAC bbox `[w, s, e, n]` of a footprint made by [`split_antimeridian`]: `w > e` when
/// it was split.
pub fn footprint_bbox(rings: &[Vec<Pos>]) -> Option<[f64; 4]> {
    let shape = Shape::Polygons(
        rings
            .iter()
            .map(|r| Polygon {
                exterior: r.clone(),
                holes: Vec::new(),
            })
            .collect(),
    );
    let b = shape.bbox()?;
    if rings.len() == 2 && b[0] <= -180.0 && b[2] >= 180.0 {
        // Split at the antimeridian: west part ends at 180, east part starts at -180.
        let west_min = rings
            .first()?
            .iter()
            .map(|p| p[0])
            .fold(f64::INFINITY, f64::min);
        let east_max = rings
            .get(1)?
            .iter()
            .map(|p| p[0])
            .fold(f64::NEG_INFINITY, f64::max);
        return Some([west_min, b[1], east_max, b[3]]);
    }
    Some(b)
}

/// GeoJSON for 1 ring (Polygon) or several (MultiPolygon).
pub fn rings_to_geojson(rings: &[Vec<Pos>]) -> Value {
    match rings {
        [one] => json!({"type": "Polygon", "coordinates": [one]}),
        many => json!({
            "type": "MultiPolygon",
            "coordinates": many.iter().map(|r| vec![r.clone()]).collect::<Vec<_>>()
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn sq(x0: f64, y0: f64, x1: f64, y1: f64) -> Shape {
        Shape::from_bbox([x0, y0, x1, y1])
    }

    #[test]
    fn parses_and_tests_points_and_polygons() {
        let tri = Shape::from_geojson(
            &json!({"type":"Polygon","coordinates":[[[0,0],[10,0],[0,10],[0,0]]]}),
        )
        .unwrap();
        let inside = Shape::from_geojson(&json!({"type":"Point","coordinates":[2,2]})).unwrap();
        let outside = Shape::from_geojson(&json!({"type":"Point","coordinates":[6,6]})).unwrap();
        let edge = Shape::from_geojson(&json!({"type":"Point","coordinates":[5,5]})).unwrap();
        assert!(tri.intersects(&inside));
        assert!(!tri.intersects(&outside)); // inside the bbox, outside the triangle
        assert!(tri.intersects(&edge));
        // Containment without crossing edges.
        assert!(sq(-1.0, -1.0, 20.0, 20.0).intersects(&tri));
        assert!(tri.intersects(&sq(1.0, 1.0, 2.0, 2.0)));
        assert!(!tri.intersects(&sq(6.0, 6.0, 9.0, 9.0)));
        let hole = Shape::from_geojson(&json!({"type":"Polygon","coordinates":[
            [[0,0],[10,0],[10,10],[0,10],[0,0]],[[2,2],[8,2],[8,8],[2,8],[2,2]]]}))
        .unwrap();
        assert!(!hole.intersects(&inside.clone_shift(3.0)));
        assert!(hole.intersects(&inside));
        assert!(Shape::from_geojson(&json!({"type":"Polygon","coordinates":[]})).is_err());
        assert!(Shape::from_geojson(&json!({"type":"Circle","coordinates":[1,2]})).is_err());
    }

    impl Shape {
        fn clone_shift(&self, d: f64) -> Shape {
            match self {
                Shape::Points(p) => Shape::Points(p.iter().map(|q| [q[0] + d, q[1] + d]).collect()),
                s => s.clone(),
            }
        }
    }

    #[test]
    fn splits_antimeridian_ring() {
        let ring = vec![
            [170.0, -10.0],
            [-170.0, -10.0],
            [-170.0, 10.0],
            [170.0, 10.0],
            [170.0, -10.0],
        ];
        let parts = split_antimeridian(&ring);
        assert_eq!(parts.len(), 2);
        let bb = footprint_bbox(&parts).unwrap();
        assert_eq!(bb, [170.0, -10.0, -170.0, 10.0]);
        let shape = Shape::Polygons(
            parts
                .iter()
                .map(|r| Polygon {
                    exterior: r.clone(),
                    holes: vec![],
                })
                .collect(),
        );
        assert!(shape.intersects(
            &Shape::from_geojson(&json!({"type":"Point","coordinates":[179.5,0]})).unwrap()
        ));
        assert!(shape.intersects(
            &Shape::from_geojson(&json!({"type":"Point","coordinates":[-179.5,0]})).unwrap()
        ));
        assert!(!shape.intersects(
            &Shape::from_geojson(&json!({"type":"Point","coordinates":[0,0]})).unwrap()
        ));
        // A ring that does not cross stays whole.
        assert_eq!(
            split_antimeridian(&[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]).len(),
            1
        );
    }
}
