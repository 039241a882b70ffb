//! Geolocation QA: estimate the shift of a georeferenced image relative to a land/sea
//! reference mask on the same lon/lat grid. Pure Rust (no GDAL).
//!
//! Method (`gradmag-zncc`):
//! 1. Both rasters are smoothed with the same Gaussian (NaN-aware normalised convolution
//!    for the image) and reduced to gradient MAGNITUDE (central differences). Using the
//!    magnitude makes the match independent of the sign of the land/sea contrast (thermal
//!    IR at dawn: land may be warmer or colder than sea, even in different parts of one
//!    image).
//! 2. The comparison is restricted to a "coastal zone": reference-edge pixels dilated by
//!    the search radius. Far from any coast the reference gradient is zero for every shift,
//!    so those pixels would only add image noise (and cloud edges).
//! 3. Image gradient magnitudes are clipped at a high percentile inside the zone, so a few
//!    very strong cloud edges cannot dominate the variance.
//! 4. Zero-mean normalised cross-correlation (ZNCC) is evaluated for every integer pixel
//!    shift inside the search radius (an ellipse in pixels, from km at the grid's centre
//!    latitude); the best shift is refined to sub-pixel by a separate 3-point parabola fit
//!    along columns and rows.
//! 5. Confidence = strength × distinctiveness × coastline amount × edge penalty, with
//!    strength = min(1, ρ1/0.2), distinctiveness = clamp((ρ1−ρ2)/(0.5 ρ1), 0, 1) where ρ2 is
//!    the best separate local maximum at least `exclusion_px` away from the peak (this also penalises the
//!    along-shore ambiguity of straight coasts), coastline = 1 − exp(−L/50 km), and ×0.25
//!    when the peak sits on the edge of the search area.
//!
//! Sign convention: with `s` the returned shift, image features lie at `reference + s`,
//! i.e. `image(p + s) ≈ reference(p)`: "the image is `offset_east_km` too far east".

use crate::Error;

use super::grid::{GeoGrid, Grid};

/// Method name for provenance records.
pub const METHOD: &str = "gradmag-zncc";

/// Tunables of [`estimate_offset`].
#[derive(Debug, Clone, PartialEq)]
pub struct EstimatorParams {
    /// Largest shift searched, km.
    pub search_radius_km: f64,
    /// Gaussian smoothing applied to both rasters before the gradient, pixels.
    pub smooth_sigma_px: f64,
    /// Below this much coastline (km, inside valid image pixels) no estimate is made.
    pub min_coastline_km: f64,
    /// Image gradient magnitudes are clipped at this quantile of the coastal zone.
    pub clip_quantile: f64,
    /// Half-size (Chebyshev, pixels) of the neighbourhood of the peak excluded when
    /// looking for the second-best score.
    pub exclusion_px: usize,
    /// Largest allowed search half-width in pixels (guards run time).
    pub max_search_px: usize,
}

impl EstimatorParams {
    /// Defaults for ~1 km imagery with the given search radius.
    pub fn new(search_radius_km: f64) -> Self {
        EstimatorParams {
            search_radius_km,
            smooth_sigma_px: 1.0,
            min_coastline_km: 10.0,
            clip_quantile: 0.98,
            exclusion_px: 4,
            max_search_px: 200,
        }
    }
}

/// Result of one estimate; `offset_*` are `None` (and `confidence` 0) when the overlap
/// has too little coastline or no correlation peak could be computed.
#[derive(Debug, Clone, PartialEq)]
pub struct OffsetReport {
    /// Image shift east of the reference, km (at the grid's centre latitude).
    pub offset_east_km: Option<f64>,
    /// Image shift north of the reference, km.
    pub offset_north_km: Option<f64>,
    /// Same shift in pixels `(columns, rows)`; rows grow southward when `dlat < 0`.
    pub shift_px: Option<(f64, f64)>,
    /// 0..1.
    pub confidence: f64,
    /// ZNCC at the best integer shift.
    pub peak_ncc: f64,
    /// Best ZNCC outside the peak's neighbourhood (0 when none was computed).
    pub second_ncc: f64,
    /// Reference coastline length inside valid image pixels, km (approximate).
    pub coastline_km: f64,
    /// The peak lies on the border of the search area (true optimum may be further).
    pub at_search_edge: bool,
    /// Pixels compared at the best shift.
    pub overlap_px: usize,
    /// [`METHOD`].
    pub method: &'static str,
}

impl OffsetReport {
    fn none(coastline_km: f64) -> Self {
        OffsetReport {
            offset_east_km: None,
            offset_north_km: None,
            shift_px: None,
            confidence: 0.0,
            peak_ncc: 0.0,
            second_ncc: 0.0,
            coastline_km,
            at_search_edge: false,
            overlap_px: 0,
            method: METHOD,
        }
    }
}

fn same_geo(a: &GeoGrid, b: &GeoGrid) -> bool {
    let tol = 1e-9 * (a.dlon.abs() + a.dlat.abs()).max(1e-12);
    a.width == b.width
        && a.height == b.height
        && (a.lon0 - b.lon0).abs() <= tol * 10.0
        && (a.lat0 - b.lat0).abs() <= tol * 10.0
        && (a.dlon - b.dlon).abs() <= tol
        && (a.dlat - b.dlat).abs() <= tol
}

/// Estimate the image's offset relative to the land mask.
///
/// `image`: f32 values, NaN = nodata. `mask`: land indicator on the same grid, 0 = water,
/// the largest value present = land (0/1 and 0..255 fractional masks both work).
pub fn estimate_offset(
    image: &Grid<f32>,
    mask: &Grid<u8>,
    params: &EstimatorParams,
) -> Result<OffsetReport, Error> {
    let geo = image.geo;
    geo.validate()?;
    if !same_geo(&geo, &mask.geo) {
        return Err(Error::GridMismatch {
            image: geo,
            mask: mask.geo,
        });
    }
    if image.data.len() != geo.len() || mask.data.len() != geo.len() {
        return Err(Error::BadEstimatorParams(
            "data length does not match grid".into(),
        ));
    }
    let p = params;
    if !(p.search_radius_km.is_finite() && p.search_radius_km > 0.0) {
        return Err(Error::BadEstimatorParams(format!(
            "search radius {} km",
            p.search_radius_km
        )));
    }
    if !(p.smooth_sigma_px.is_finite() && (0.0..=10.0).contains(&p.smooth_sigma_px)) {
        return Err(Error::BadEstimatorParams(format!(
            "smoothing sigma {} px",
            p.smooth_sigma_px
        )));
    }
    if !(p.clip_quantile > 0.0 && p.clip_quantile <= 1.0) {
        return Err(Error::BadEstimatorParams(format!(
            "clip quantile {}",
            p.clip_quantile
        )));
    }
    let (w, h) = (geo.width, geo.height);
    let (kmx, kmy) = geo.km_per_pixel_at(geo.center_lat());
    if !(kmx.abs() > 1e-6 && kmy.abs() > 1e-6) {
        return Err(Error::BadEstimatorParams(
            "degenerate pixel size in km".into(),
        ));
    }
    let px_km = (kmx.abs() * kmy.abs()).sqrt();

    // Reference as 0..1.
    let maxv = mask.data.iter().copied().max().unwrap_or(0);
    if maxv == 0 {
        return Ok(OffsetReport::none(0.0));
    }
    let scale = 1.0 / f32::from(maxv);
    let refm: Vec<f32> = mask.data.iter().map(|&v| f32::from(v) * scale).collect();

    // Coastline amount: land-side boundary pixels (4-neighbourhood) with valid image data.
    let coast_px = count_coast(&refm, &image.data, w, h);
    let coastline_km = coast_px as f64 * px_km;
    if coastline_km < p.min_coastline_km {
        return Ok(OffsetReport::none(coastline_km));
    }

    // Features.
    let img_s = gaussian_nan(&image.data, w, h, p.smooth_sigma_px);
    let ref_s = gaussian_nan(&refm, w, h, p.smooth_sigma_px);
    let mut gi = grad_mag(&img_s, w, h);
    let gr = grad_mag(&ref_s, w, h);

    // Search extent.
    let rx = (p.search_radius_km / kmx.abs()).ceil() as usize;
    let ry = (p.search_radius_km / kmy.abs()).ceil() as usize;
    let ext = p.exclusion_px + 3;
    let hx = rx.max(ext) + 1;
    let hy = ry.max(ext) + 1;
    if hx > p.max_search_px || hy > p.max_search_px {
        return Err(Error::BadEstimatorParams(format!(
            "search half-width {hx}x{hy} px exceeds max_search_px {}",
            p.max_search_px
        )));
    }

    // Coastal zone: reference edge pixels dilated by the search extent.
    let gmax = gr
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::max);
    if gmax <= 0.0 {
        return Ok(OffsetReport::none(coastline_km));
    }
    let edge: Vec<bool> = gr
        .iter()
        .map(|&v| v.is_finite() && v > 0.05 * gmax)
        .collect();
    let zone = dilate(&edge, w, h, hx, hy);
    let zone_px: Vec<(usize, usize, f32)> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter_map(|(x, y)| {
            let i = y * w + x;
            // Only where the image has data: a narrow swath over a large grid must not be
            // judged by the coast outside it.
            match (zone.get(i), gr.get(i), gi.get(i)) {
                (Some(true), Some(&m), Some(&v)) if m.is_finite() && v.is_finite() => {
                    Some((x, y, m))
                }
                _ => None,
            }
        })
        .collect();

    // Clip strong image edges (clouds) at a quantile of the zone.
    let mut vals: Vec<f32> = zone_px
        .iter()
        .filter_map(|&(x, y, _)| gi.get(y * w + x).copied())
        .filter(|v| v.is_finite())
        .collect();
    if vals.len() < 50 {
        return Ok(OffsetReport::none(coastline_km));
    }
    let k = (((vals.len() - 1) as f64) * p.clip_quantile).round() as usize;
    let k = k.min(vals.len() - 1);
    let (_, clip, _) = vals.select_nth_unstable_by(k, f32::total_cmp);
    let clip = *clip;
    if clip > 0.0 {
        for v in gi.iter_mut() {
            if *v > clip {
                *v = clip;
            }
        }
    }

    // Score surface over [-hx, hx] x [-hy, hy].
    let sw = 2 * hx + 1;
    let sh = 2 * hy + 1;
    let min_overlap = (zone_px.len() / 2).max(50);
    let mut score = vec![f64::NAN; sw * sh];
    let mut count = vec![0usize; sw * sh];
    let (wi, hi) = (w as i64, h as i64);
    for sy in -(hy as i64)..=(hy as i64) {
        for sx in -(hx as i64)..=(hx as i64) {
            let (mut n, mut sa, mut sb, mut saa, mut sbb, mut sab) =
                (0usize, 0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
            for &(x, y, m) in &zone_px {
                let xx = x as i64 + sx;
                let yy = y as i64 + sy;
                if xx < 0 || yy < 0 || xx >= wi || yy >= hi {
                    continue;
                }
                let Some(&v) = gi.get(yy as usize * w + xx as usize) else {
                    continue;
                };
                if !v.is_finite() {
                    continue;
                }
                let (a, b) = (f64::from(m), f64::from(v));
                n += 1;
                sa += a;
                sb += b;
                saa += a * a;
                sbb += b * b;
                sab += a * b;
            }
            let idx = (sy + hy as i64) as usize * sw + (sx + hx as i64) as usize;
            if n >= min_overlap {
                let nf = n as f64;
                let cov = sab - sa * sb / nf;
                let va = saa - sa * sa / nf;
                let vb = sbb - sb * sb / nf;
                if va > 0.0 && vb > 0.0 {
                    if let Some(s) = score.get_mut(idx) {
                        *s = cov / (va * vb).sqrt();
                    }
                }
            }
            if let Some(c) = count.get_mut(idx) {
                *c = n;
            }
        }
    }

    let sc = |sx: i64, sy: i64| -> f64 {
        if sx.unsigned_abs() as usize > hx || sy.unsigned_abs() as usize > hy {
            return f64::NAN;
        }
        let idx = (sy + hy as i64) as usize * sw + (sx + hx as i64) as usize;
        score.get(idx).copied().unwrap_or(f64::NAN)
    };
    let r2 = p.search_radius_km * p.search_radius_km * (1.0 + 1e-9);
    let inside = |sx: i64, sy: i64| -> bool {
        let dx = sx as f64 * kmx;
        let dy = sy as f64 * kmy;
        dx * dx + dy * dy <= r2
    };

    // Peak inside the search ellipse.
    let mut best: Option<(i64, i64, f64)> = None;
    for sy in -(ry as i64)..=(ry as i64) {
        for sx in -(rx as i64)..=(rx as i64) {
            if !inside(sx, sy) {
                continue;
            }
            let v = sc(sx, sy);
            if v.is_finite() && best.is_none_or(|(_, _, b)| v > b) {
                best = Some((sx, sy, v));
            }
        }
    }
    let Some((bx, by, rho1)) = best else {
        return Ok(OffsetReport::none(coastline_km));
    };

    // Second best outside the exclusion neighbourhood (whole computed surface).
    let ex = p.exclusion_px as i64;
    let mut rho2 = f64::NEG_INFINITY;
    let mut at_edge = false;
    for sy in -(hy as i64)..=(hy as i64) {
        for sx in -(hx as i64)..=(hx as i64) {
            let v = sc(sx, sy);
            if !v.is_finite() {
                continue;
            }
            let cheb = (sx - bx).abs().max((sy - by).abs());
            // Only a separate local maximum competes: the flank of a broad main peak (real
            // scenes, smoothed edges) is not a second candidate.
            if cheb > ex && v > rho2 && is_local_max(&sc, sx, sy, v) {
                rho2 = v;
            }
            if cheb == 1 && !inside(sx, sy) && v >= rho1 {
                at_edge = true;
            }
        }
    }
    let rho2c = if rho2.is_finite() { rho2.max(0.0) } else { 0.0 };

    // Sub-pixel refinement: 2-D quadratic fit of ln(score) on the 3x3 neighbourhood
    // (captures tilted, elongated peaks along a coast); fallback: separate 3-point fits,
    // of ln(score) when positive (Gaussian peak model), else of the score.
    let fit = |a: f64, b: f64, c: f64| -> f64 {
        if !(a.is_finite() && c.is_finite()) {
            return 0.0;
        }
        let (a2, b2, c2) = if a > 0.0 && b > 0.0 && c > 0.0 {
            (a.ln(), b.ln(), c.ln())
        } else {
            (a, b, c)
        };
        let den = a2 - 2.0 * b2 + c2;
        if den < 0.0 {
            (0.5 * (a2 - c2) / den).clamp(-0.5, 0.5)
        } else {
            0.0
        }
    };
    let (fx, fy) = match fit2d(&sc, bx, by) {
        Some((dx, dy)) => (bx as f64 + dx, by as f64 + dy),
        None => (
            bx as f64 + fit(sc(bx - 1, by), rho1, sc(bx + 1, by)),
            by as f64 + fit(sc(bx, by - 1), rho1, sc(bx, by + 1)),
        ),
    };

    // Real scenes correlate less than clean masks (shallow banks, rivers, cloud edges make
    // image edges the mask lacks): 0.2 is already a strong coastline match at ~1 km.
    let strength = (rho1 / 0.2).clamp(0.0, 1.0);
    let distinct = if rho1 > 0.0 {
        ((rho1 - rho2c) / (0.5 * rho1)).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let coast = 1.0 - (-coastline_km / 50.0).exp();
    let edge_pen = if at_edge { 0.25 } else { 1.0 };
    let confidence = (strength * distinct * coast * edge_pen).clamp(0.0, 1.0);
    let overlap_px = {
        let idx = (by + hy as i64) as usize * sw + (bx + hx as i64) as usize;
        count.get(idx).copied().unwrap_or(0)
    };

    Ok(OffsetReport {
        offset_east_km: Some(fx * kmx),
        offset_north_km: Some(fy * kmy),
        shift_px: Some((fx, fy)),
        confidence,
        peak_ncc: rho1,
        second_ncc: if rho2.is_finite() { rho2 } else { 0.0 },
        coastline_km,
        at_search_edge: at_edge,
        overlap_px,
        method: METHOD,
    })
}

/// `v` (the score at `(sx, sy)`) is at least every finite neighbour's.
fn is_local_max(sc: &dyn Fn(i64, i64) -> f64, sx: i64, sy: i64, v: f64) -> bool {
    (-1..=1).all(|dy| {
        (-1..=1).all(|dx| {
            let n = sc(sx + dx, sy + dy);
            (dx == 0 && dy == 0) || !n.is_finite() || n <= v
        })
    })
}

/// Least-squares 2-D quadratic fit of ln(score) over the 3x3 neighbourhood of (bx, by);
/// returns the sub-pixel offset of the maximum when it is a proper maximum within ±0.75 px.
fn fit2d(sc: &dyn Fn(i64, i64) -> f64, bx: i64, by: i64) -> Option<(f64, f64)> {
    let mut f = [[0.0f64; 3]; 3]; // f[j][i] for dy = j-1, dx = i-1
    for (j, row) in f.iter_mut().enumerate() {
        for (i, v) in row.iter_mut().enumerate() {
            let s = sc(bx + i as i64 - 1, by + j as i64 - 1);
            if !(s.is_finite() && s > 0.0) {
                return None;
            }
            *v = s.ln();
        }
    }
    let [[f00, f01, f02], [f10, f11, f12], [f20, f21, f22]] = f;
    let (col0, col1, col2) = (f00 + f10 + f20, f01 + f11 + f21, f02 + f12 + f22);
    let (row0, row1, row2) = (f00 + f01 + f02, f10 + f11 + f12, f20 + f21 + f22);
    let b = (col2 - col0) / 6.0;
    let c = (row2 - row0) / 6.0;
    let d = (col2 + col0 - 2.0 * col1) / 6.0;
    let g = (row2 + row0 - 2.0 * row1) / 6.0;
    let e = (f22 + f00 - f02 - f20) / 4.0;
    // Maximum of a + b x + c y + d x² + e x y + g y²: [2d e; e 2g] [x y]ᵀ = −[b c]ᵀ.
    let det = 4.0 * d * g - e * e;
    if !(d < 0.0 && g < 0.0 && det > 0.0) {
        return None;
    }
    let x = (-b * 2.0 * g + c * e) / det;
    let y = (-c * 2.0 * d + b * e) / det;
    if x.abs() <= 0.75 && y.abs() <= 0.75 {
        Some((x, y))
    } else {
        None
    }
}

/// Land-side boundary pixels (value ≥ 0.5 with a 4-neighbour < 0.5) where the image is valid.
fn count_coast(refm: &[f32], img: &[f32], w: usize, h: usize) -> usize {
    let at = |x: usize, y: usize| refm.get(y * w + x).copied().unwrap_or(0.0);
    let mut n = 0;
    for y in 0..h {
        for x in 0..w {
            if at(x, y) < 0.5 || !img.get(y * w + x).is_some_and(|v| v.is_finite()) {
                continue;
            }
            let water_nb = (x > 0 && at(x - 1, y) < 0.5)
                || (x + 1 < w && at(x + 1, y) < 0.5)
                || (y > 0 && at(x, y - 1) < 0.5)
                || (y + 1 < h && at(x, y + 1) < 0.5);
            if water_nb {
                n += 1;
            }
        }
    }
    n
}

fn gaussian_kernel(sigma: f64) -> Vec<f32> {
    let r = (3.0 * sigma).ceil() as i64;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.iter().map(|v| (v / s) as f32).collect()
}

/// NaN-aware separable Gaussian (normalised convolution). Output is NaN where the input
/// is NaN or where less than half of the kernel weight fell on valid pixels.
fn gaussian_nan(src: &[f32], w: usize, h: usize, sigma: f64) -> Vec<f32> {
    if sigma <= 0.0 {
        return src.to_vec();
    }
    let k = gaussian_kernel(sigma);
    let r = (k.len() / 2) as i64;
    let valid: Vec<f32> = src
        .iter()
        .map(|v| if v.is_finite() { 1.0 } else { 0.0 })
        .collect();
    let vals: Vec<f32> = src
        .iter()
        .map(|v| if v.is_finite() { *v } else { 0.0 })
        .collect();
    let pass = |inp: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0.0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let mut acc = 0.0f32;
                for (j, kv) in k.iter().enumerate() {
                    let d = j as i64 - r;
                    let (xx, yy) = if horizontal {
                        (x as i64 + d, y as i64)
                    } else {
                        (x as i64, y as i64 + d)
                    };
                    if xx < 0 || yy < 0 || xx >= w as i64 || yy >= h as i64 {
                        continue;
                    }
                    acc += kv
                        * inp
                            .get(yy as usize * w + xx as usize)
                            .copied()
                            .unwrap_or(0.0);
                }
                if let Some(o) = out.get_mut(y * w + x) {
                    *o = acc;
                }
            }
        }
        out
    };
    // Kernel weight that falls inside the raster, per column / row (for the border).
    let inside = |n: usize, i: usize| -> f32 {
        k.iter()
            .enumerate()
            .filter(|(j, _)| {
                let p = i as i64 + *j as i64 - r;
                p >= 0 && p < n as i64
            })
            .map(|(_, v)| *v)
            .sum()
    };
    let in_x: Vec<f32> = (0..w).map(|x| inside(w, x)).collect();
    let in_y: Vec<f32> = (0..h).map(|y| inside(h, y)).collect();
    let num = pass(&pass(&vals, true), false);
    let den = pass(&pass(&valid, true), false);
    num.iter()
        .zip(den.iter())
        .zip(src.iter())
        .enumerate()
        .map(|(i, ((n, d), s))| {
            let possible =
                in_x.get(i % w).copied().unwrap_or(0.0) * in_y.get(i / w).copied().unwrap_or(0.0);
            if s.is_finite() && *d > 0.0 && *d >= 0.5 * possible {
                n / d
            } else {
                f32::NAN
            }
        })
        .collect()
}

/// Central-difference gradient magnitude; NaN on the border and next to NaNs.
fn grad_mag(src: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; w * h];
    if w < 3 || h < 3 {
        return out;
    }
    let at = |x: usize, y: usize| src.get(y * w + x).copied().unwrap_or(f32::NAN);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let gx = 0.5 * (at(x + 1, y) - at(x - 1, y));
            let gy = 0.5 * (at(x, y + 1) - at(x, y - 1));
            if let Some(o) = out.get_mut(y * w + x) {
                *o = (gx * gx + gy * gy).sqrt();
            }
        }
    }
    out
}

/// Binary dilation by a (2rx+1)×(2ry+1) rectangle (separable running counts).
fn dilate(src: &[bool], w: usize, h: usize, rx: usize, ry: usize) -> Vec<bool> {
    let run = |inp: &[bool], horizontal: bool, r: usize| -> Vec<bool> {
        let mut out = vec![false; w * h];
        let (outer, inner) = if horizontal { (h, w) } else { (w, h) };
        for o in 0..outer {
            let idx = |i: usize| if horizontal { o * w + i } else { i * w + o };
            // Running count of true values in [i - r, i + r].
            let mut cnt = 0usize;
            for i in 0..r.min(inner) {
                cnt += usize::from(inp.get(idx(i)).copied().unwrap_or(false));
            }
            for i in 0..inner {
                let add = i + r;
                if add < inner {
                    cnt += usize::from(inp.get(idx(add)).copied().unwrap_or(false));
                }
                if i > r {
                    let rem = i - r - 1;
                    cnt -= usize::from(inp.get(idx(rem)).copied().unwrap_or(false));
                }
                if let Some(v) = out.get_mut(idx(i)) {
                    *v = cnt > 0;
                }
            }
        }
        out
    };
    run(&run(src, true, rx), false, ry)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dilate_rectangle() {
        let (w, h) = (7, 5);
        let mut m = vec![false; w * h];
        m[2 * w + 3] = true;
        let d = dilate(&m, w, h, 2, 1);
        let count = d.iter().filter(|v| **v).count();
        assert_eq!(count, 5 * 3);
        assert!(d[w + 1] && d[3 * w + 5] && !d[w] && !d[4 * w + 3]);
    }

    #[test]
    fn gaussian_keeps_constant_and_nan() {
        let (w, h) = (9, 9);
        let mut v = vec![5.0f32; w * h];
        v[40] = f32::NAN;
        let s = gaussian_nan(&v, w, h, 1.0);
        assert!(s[40].is_nan());
        assert!((s[0] - 5.0).abs() < 1e-5 && (s[41] - 5.0).abs() < 1e-5);
    }

    #[test]
    fn rejects_mismatched_grids() {
        let g1 = GeoGrid::new(0.0, 0.01, 0.0, -0.01, 10, 10).unwrap();
        let g2 = GeoGrid::new(0.01, 0.01, 0.0, -0.01, 10, 10).unwrap();
        let img = Grid::new(g1, vec![0.0f32; 100]).unwrap();
        let m = Grid::new(g2, vec![0u8; 100]).unwrap();
        let e = estimate_offset(&img, &m, &EstimatorParams::new(5.0));
        assert!(matches!(e, Err(Error::GridMismatch { .. })));
    }
}
