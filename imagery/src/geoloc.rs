//! MSU-MR (Meteor-M N2 LRPT) scan-line geolocation and ground-control-point grids.
//!
//! # Instrument model
//!
//! MSU-MR is a cross-track scanning radiometer; every image line is one scan, sampled at a
//! constant angular step (the pixel footprint grows from ≈1 km at nadir to several km at
//! the swath edges, which is what a constant-angle scanner gives for a ≈2800–2900 km swath
//! from ≈830 km).
//!
//! | quantity | value used | source |
//! |---|---|---|
//! | pixels per LRPT line | 1568 (196 MCUs × 8 px; 14 packets × 14 MCUs) | LRPT MCU layout; georef-lrpt `ImageChannel.WIDTH = 196 * 8`; SatDump `meteor_m2_msumr_lrpt.json` `image_width: 1568` (HRPT: 1572) |
//! | total scan angle | 110.5° (default) / 110.6° (nominal) edge to edge, constant step ≈ 0.0705° | SatDump `resources/projections_settings/meteor_m2_msumr_lrpt.json` `scan_angle: 110.6`; georef-lrpt `GcpProcessor` uses 110.5°; MeteorDemod `settings.ini` `ScanAngleM2=110.8` |
//! | swath | ≥ 2800 km (1 km at nadir) | planet.iitp.ru "Meteor-M N1" table (MSU-MR swath ≥2800 km, 1 km); WMO OSCAR MSU-MR (2800 km); Roscosmos (Meteor-M 2-4 first light, 2024): "up to 2900 km" |
//! | line period | 0.15389 s (1.2311 s per 8-line MCU row, ≈ 6.5 lines/s) | measured: packet time stamps of every MCU row in the shared 2022-12-20 recording (APIDs 64/65/68) step by 1228 or 1232 ms, mean 1231.1 ms |
//! | attitude | nadir-pointing orbital frame, no yaw steering | SatDump's Meteor configs do not enable `rotate_yaw`; no yaw-steering mode is documented for the Meteor-M platform |
//!
//! Attitude/timing corrections published by other georeferencing projects (facts only).
//! All three apply a roll of 2–3°, i.e. the MSU-MR boresight is not at nadir:
//! * georef-lrpt (Orekit/Rugged, body-centre pointing) `CommandLineArgs`: rotation about
//!   the along-track axis 2.0° (`--irotation-degrees`) and about the cross-track axis
//!   0.4° (`--jrotation-degrees`). Fitting our model to its published GCPs gives exactly
//!   roll +2.0°, pitch +0.4° in *our* convention (shifts the swath to the left of track)
//!   with 29 m RMS, so these are the defaults of [`ScanGeometry::MSU_MR_LRPT`].
//! * SatDump `meteor_m2_msumr_lrpt.json`: `roll_offset 2.3`, `pitch_offset 0`,
//!   `yaw_offset 2.4`, `timestamp_offset 0.2` (s); HRPT config `meteor_m2_msumr.json`:
//!   same but `yaw_offset -2.8`. Its sign conventions were not re-derived; not applied.
//! * MeteorDemod `resources/settings.ini`: `ScanAngleM2=110.8`, `RollM2=-2.9`,
//!   `PitchM2=0.3`, `YawM2=0` (own conventions; not applied).
//!
//! No ground truth (coastline match) was available here to decide between these tunings;
//! [`ScanGeometry::MSU_MR_LRPT_NOMINAL`] is the uncorrected geometry.
//!
//! # Which side is column 0
//!
//! Column 0 of a decoded LRPT image is on the **right-hand side of the ground track**
//! (looking along the direction of flight): west on a descending (southbound) pass, east
//! on an ascending one. Evidence: georef-lrpt's expected GCPs for the shared 2022-12-20
//! recording (`src/test/resources/expected/2022_12_20_20_25_30.vrt`, a southbound pass over
//! New Guinea) put pixel 1.5 at 135.4°E and pixel 1568.5 at 161.6°E, i.e. column 0 west;
//! SatDump likewise mirrors the column index (`final_x = width - 1 - x` unless
//! `invert_scan`) before converting it to a roll angle. This is why southbound Meteor
//! (and NOAA) images look "north-up" without rotation and northbound ones are upside down.
//!
//! # Geometry
//!
//! Orbital frame (built in TEME from the SGP4 state): z down (towards the Earth's centre
//! for [`Pointing::Geocentric`], along the ellipsoid normal for [`Pointing::GeodeticNadir`]),
//! y = z × v (right of track), x = y × z (forward, ≈ velocity). Look vector for a pixel at
//! right-of-track scan angle ρ: (0, sin ρ, cos ρ), then optional attitude offsets as
//! aerospace 3-2-1 Euler angles (active rotations about the orbital axes: yaw about z,
//! pitch about y, roll about x; positive roll = right wing down, which moves the boresight
//! to the left of the track). The ray is rotated to the Earth-fixed frame with the same
//! GMST rotation as the position and intersected exactly with the WGS84 ellipsoid.
//! Light-time, aberration and refraction are ignored (each < 100 m); so is terrain, which
//! displaces a point by ≈ height × tan(view zenith angle) — up to ≈ 2 km per km of height
//! at the swath edge, where the view zenith angle reaches ≈ 65°.

use crate::orbit::{
    ecef_to_geodetic, ecef_to_teme_vector, geodetic_to_ecef, norm, teme_to_ecef_vector, Geodetic,
    Propagator, UtcTime, WGS84_A_KM, WGS84_B_KM,
};
use crate::Error;

/// LRPT MSU-MR image width, pixels.
pub const MSU_MR_LRPT_WIDTH: usize = 1568;
/// Image lines per LRPT MCU row (one packet time stamp per row).
pub const LRPT_LINES_PER_ROW: usize = 8;
/// MSU-MR line period, seconds (measured, see module docs).
pub const MSU_MR_LINE_PERIOD_S: f64 = 1.2311 / 8.0;
/// Mean Earth radius (IUGG R1), km, for [`great_circle_km`].
pub const MEAN_EARTH_RADIUS_KM: f64 = 6371.0088;

/// A side of the ground track, looking along the direction of flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Side {
    /// Right of the flight direction (west when southbound).
    Right,
    /// Left of the flight direction (east when southbound).
    Left,
}

/// Definition of the orbital frame's "down" axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pointing {
    /// Towards the Earth's centre (classic orbital/LVLH frame; georef-lrpt's choice).
    Geocentric,
    /// Along the WGS84 ellipsoid normal through the satellite (geodetic nadir).
    GeodeticNadir,
}

/// Scan geometry of a cross-track scanning imager.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanGeometry {
    /// Pixels per line.
    pub width: usize,
    /// Total scan angle from the outer edge of column 0 to the outer edge of the last column, degrees.
    pub scan_angle_deg: f64,
    /// Roll offset, degrees (positive = right wing down).
    pub roll_deg: f64,
    /// Pitch offset, degrees (positive = nose up, boresight moves forward).
    pub pitch_deg: f64,
    /// Yaw offset, degrees (positive = nose right).
    pub yaw_deg: f64,
    /// Added to every line time before propagation, seconds.
    pub time_offset_s: f64,
    /// Where column 0 lies relative to the ground track.
    pub column0_side: Side,
    /// Orbital frame definition.
    pub pointing: Pointing,
}

impl ScanGeometry {
    /// Default Meteor-M N2 MSU-MR LRPT geometry: georef-lrpt's tuned values — scan angle
    /// 110.5°, roll +2.0°, pitch +0.4° (its `--irotation-degrees`/`--jrotation-degrees`
    /// defaults), geocentric pointing, column 0 right of track. With these the crate
    /// reproduces georef-lrpt's Orekit/Rugged GCPs for the shared recording to 29 m RMS
    /// (`tests/meteor_geoloc.rs`), which pins down that project's sign conventions.
    pub const MSU_MR_LRPT: ScanGeometry = ScanGeometry {
        width: MSU_MR_LRPT_WIDTH,
        scan_angle_deg: 110.5,
        roll_deg: 2.0,
        pitch_deg: 0.4,
        yaw_deg: 0.0,
        time_offset_s: 0.0,
        column0_side: Side::Right,
        pointing: Pointing::Geocentric,
    };

    /// Nominal geometry without attitude corrections (SatDump's 110.6° scan angle).
    pub const MSU_MR_LRPT_NOMINAL: ScanGeometry = ScanGeometry {
        width: MSU_MR_LRPT_WIDTH,
        scan_angle_deg: 110.6,
        roll_deg: 0.0,
        pitch_deg: 0.0,
        yaw_deg: 0.0,
        time_offset_s: 0.0,
        column0_side: Side::Right,
        pointing: Pointing::Geocentric,
    };

    /// Angular step between adjacent pixel centres, degrees.
    pub fn pixel_step_deg(&self) -> f64 {
        self.scan_angle_deg / self.width.max(1) as f64
    }

    /// Scan angle to the right of the ground track (radians) for a fractional column
    /// coordinate `x` in pixel-corner convention (centre of column `c` is `c + 0.5`).
    pub fn right_of_track_angle(&self, x: f64) -> f64 {
        let from_centre = x - self.width as f64 / 2.0;
        let step = self.pixel_step_deg().to_radians();
        match self.column0_side {
            Side::Right => -from_centre * step,
            Side::Left => from_centre * step,
        }
    }

    /// Unit look vector in the orbital frame (x forward, y right, z down) for column
    /// coordinate `x` (pixel-corner convention), attitude offsets applied.
    pub fn look_vector_orbital(&self, x: f64) -> [f64; 3] {
        let (s, c) = self.right_of_track_angle(x).sin_cos();
        let d = [0.0, s, c];
        let d = rot_x(d, self.roll_deg.to_radians());
        let d = rot_y(d, self.pitch_deg.to_radians());
        rot_z(d, self.yaw_deg.to_radians())
    }
}

/// Active rotation about x.
fn rot_x(v: [f64; 3], a: f64) -> [f64; 3] {
    let (s, c) = a.sin_cos();
    [v[0], c * v[1] - s * v[2], s * v[1] + c * v[2]]
}

/// Active rotation about y.
fn rot_y(v: [f64; 3], a: f64) -> [f64; 3] {
    let (s, c) = a.sin_cos();
    [c * v[0] + s * v[2], v[1], -s * v[0] + c * v[2]]
}

/// Active rotation about z.
fn rot_z(v: [f64; 3], a: f64) -> [f64; 3] {
    let (s, c) = a.sin_cos();
    [c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

fn unit(v: [f64; 3]) -> Option<[f64; 3]> {
    let n = norm(v);
    (n > 0.0 && n.is_finite()).then(|| [v[0] / n, v[1] / n, v[2] / n])
}

/// Nearest intersection of the ray `origin + t·dir` (t > 0) with the WGS84 ellipsoid,
/// Earth-fixed km. `None` when the ray misses, points away, or starts inside the Earth.
pub fn ray_ellipsoid_intersection(origin: [f64; 3], dir: [f64; 3]) -> Option<[f64; 3]> {
    // Scale to the unit sphere: (x/a, y/a, z/b).
    let q = [
        origin[0] / WGS84_A_KM,
        origin[1] / WGS84_A_KM,
        origin[2] / WGS84_B_KM,
    ];
    let d = [
        dir[0] / WGS84_A_KM,
        dir[1] / WGS84_A_KM,
        dir[2] / WGS84_B_KM,
    ];
    let a = dot(d, d);
    let b = 2.0 * dot(q, d);
    let c = dot(q, q) - 1.0;
    if a <= 0.0 || c < 0.0 {
        return None;
    }
    let disc = b * b - 4.0 * a * c;
    if disc < 0.0 || b >= 0.0 {
        return None;
    }
    // Numerically stable near root: roots are q'/a and c/q' with q' = -(b - sqrt(disc))/2.
    let qq = -0.5 * (b - disc.sqrt());
    let t = c / qq;
    if !(t.is_finite() && t > 0.0) {
        return None;
    }
    Some([
        origin[0] + t * dir[0],
        origin[1] + t * dir[1],
        origin[2] + t * dir[2],
    ])
}

/// Great-circle distance on the mean-radius sphere (haversine), km. Good to ≈0.5 %.
pub fn great_circle_km(lat1_deg: f64, lon1_deg: f64, lat2_deg: f64, lon2_deg: f64) -> f64 {
    let (p1, p2) = (lat1_deg.to_radians(), lat2_deg.to_radians());
    let dp = p2 - p1;
    let dl = (lon2_deg - lon1_deg).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * MEAN_EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// A geolocated ground point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundPoint {
    /// Geodetic latitude, degrees.
    pub lat_deg: f64,
    /// Longitude, degrees east in (-180, 180].
    pub lon_deg: f64,
}

/// Satellite position and orbital-frame axes for one line, Earth-fixed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LineFrame {
    /// Satellite position, Earth-fixed km.
    pub satellite_ecef_km: [f64; 3],
    /// Orbital axes (forward, right, down) as Earth-fixed unit vectors.
    pub axes_ecef: [[f64; 3]; 3],
}

impl LineFrame {
    /// Ground point seen by column coordinate `x` (pixel-corner convention), or `None`
    /// when that ray misses the Earth.
    pub fn locate(&self, geometry: &ScanGeometry, x: f64) -> Option<GroundPoint> {
        let l = geometry.look_vector_orbital(x);
        let [fx, ry, dz] = self.axes_ecef;
        let dir = [
            fx[0] * l[0] + ry[0] * l[1] + dz[0] * l[2],
            fx[1] * l[0] + ry[1] * l[1] + dz[1] * l[2],
            fx[2] * l[0] + ry[2] * l[1] + dz[2] * l[2],
        ];
        let p = ray_ellipsoid_intersection(self.satellite_ecef_km, dir)?;
        let g = ecef_to_geodetic(p);
        Some(GroundPoint {
            lat_deg: g.lat_deg,
            lon_deg: g.lon_deg,
        })
    }
}

/// A ground control point in GDAL raster convention: `pixel`/`line` are measured from the
/// top-left corner of the image, so the centre of column `c`, line `l` is `(c + 0.5, l + 0.5)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gcp {
    /// Column coordinate (pixel centre = column + 0.5).
    pub pixel: f64,
    /// Line coordinate (pixel centre = line + 0.5).
    pub line: f64,
    /// Geodetic latitude, degrees (WGS84).
    pub lat_deg: f64,
    /// Longitude, degrees east (WGS84).
    pub lon_deg: f64,
}

/// Geolocates pixels of one satellite's scan lines.
#[derive(Debug, Clone)]
pub struct Geolocator {
    propagator: Propagator,
    geometry: ScanGeometry,
}

impl Geolocator {
    /// Combines an orbit and a scan geometry.
    pub fn new(propagator: Propagator, geometry: ScanGeometry) -> Self {
        Self {
            propagator,
            geometry,
        }
    }

    /// The scan geometry.
    pub fn geometry(&self) -> &ScanGeometry {
        &self.geometry
    }

    /// The orbit propagator.
    pub fn propagator(&self) -> &Propagator {
        &self.propagator
    }

    /// Orbital frame for the line observed at `t` (the geometry's time offset is applied).
    pub fn line_frame(&self, t: UtcTime) -> Result<LineFrame, Error> {
        let t = t.add_seconds(self.geometry.time_offset_s);
        let teme = self.propagator.teme_at(t)?;
        let r = teme.position_km;
        let v = teme.velocity_km_s;
        let down = match self.geometry.pointing {
            Pointing::Geocentric => unit([-r[0], -r[1], -r[2]]),
            Pointing::GeodeticNadir => {
                let r_ecef = teme_to_ecef_vector(r, t);
                let g = ecef_to_geodetic(r_ecef);
                let on_surface = geodetic_to_ecef(&Geodetic { alt_km: 0.0, ..g });
                let to_surface = [
                    on_surface[0] - r_ecef[0],
                    on_surface[1] - r_ecef[1],
                    on_surface[2] - r_ecef[2],
                ];
                unit(to_surface).map(|d| ecef_to_teme_vector(d, t))
            }
        }
        .ok_or(Error::DegenerateFrame(t))?;
        let right = unit(cross(down, v)).ok_or(Error::DegenerateFrame(t))?;
        let forward = cross(right, down);
        Ok(LineFrame {
            satellite_ecef_km: teme_to_ecef_vector(r, t),
            axes_ecef: [
                teme_to_ecef_vector(forward, t),
                teme_to_ecef_vector(right, t),
                teme_to_ecef_vector(down, t),
            ],
        })
    }

    /// Ground point of column coordinate `x` (pixel-corner convention; the centre of
    /// column `c` is `c as f64 + 0.5`) on the line observed at `t`. `Ok(None)` when the
    /// look ray misses the Earth.
    pub fn locate(&self, t: UtcTime, x: f64) -> Result<Option<GroundPoint>, Error> {
        Ok(self.line_frame(t)?.locate(&self.geometry, x))
    }

    /// Regular GCP grid: every `step_lines`-th line (plus the last line) that has a time,
    /// and every `step_cols`-th column (plus the last column), at pixel centres.
    /// Missing line times between two known ones are interpolated linearly
    /// ([`interpolate_line_times`]); lines still without a time are skipped, as are rays
    /// that miss the Earth.
    pub fn gcp_grid(
        &self,
        times_per_line: &[Option<UtcTime>],
        width: usize,
        step_lines: usize,
        step_cols: usize,
    ) -> Result<Vec<Gcp>, Error> {
        if step_lines == 0 || step_cols == 0 {
            return Err(Error::InvalidStep {
                step_lines,
                step_cols,
            });
        }
        if width != self.geometry.width {
            return Err(Error::WidthMismatch {
                width,
                geometry_width: self.geometry.width,
            });
        }
        self.gcp_grid_at_columns(
            times_per_line,
            width,
            step_lines,
            &grid_indices(width, step_cols),
        )
    }

    /// GCP columns placed where the scan curves: at most `max_step` apart, and close enough
    /// that linear interpolation between neighbours departs from the scan model by at most
    /// ≈ `tolerance_px` pixels (the error over a step `h` is ≈ h²/8 · |d ln(pixel size)/dx|,
    /// evaluated on the ground track of the line observed at `t`). Near nadir the pixel
    /// size barely changes and the full step is used; toward ±55° the step shrinks to a few
    /// columns. Includes the first, the centre (`width / 2`) and the last column.
    pub fn scan_adaptive_columns(
        &self,
        t: UtcTime,
        max_step: usize,
        tolerance_px: f64,
    ) -> Result<Vec<usize>, Error> {
        let width = self.geometry.width;
        let frame = self.line_frame(t)?;
        let points = (0..width)
            .map(|c| {
                frame
                    .locate(&self.geometry, c as f64 + 0.5)
                    .ok_or(Error::RayMissesEarth(t))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Log of the ground distance between neighbouring pixel centres.
        let log_size: Vec<f64> = points
            .windows(2)
            .map(|w| match w {
                [a, b] => great_circle_km(a.lat_deg, a.lon_deg, b.lat_deg, b.lon_deg)
                    .max(1e-9)
                    .ln(),
                _ => 0.0,
            })
            .collect();
        let curvature: Vec<f64> = log_size
            .windows(2)
            .map(|w| match w {
                [a, b] => (b - a).abs(),
                _ => 0.0,
            })
            .collect();
        let max_step = max_step.max(1);
        // Linear interpolation over columns a..b stays within the tolerance.
        let fits = |a: usize, b: usize| {
            let k = curvature
                .get(a.min(curvature.len())..b.min(curvature.len()))
                .unwrap_or_default()
                .iter()
                .copied()
                .fold(0.0_f64, f64::max);
            k * ((b - a) * (b - a)) as f64 / 8.0 <= tolerance_px
        };
        // Outward from the centre column, so it is always a GCP column.
        let centre = width / 2;
        let mut right = vec![centre];
        let mut c = centre;
        while c + 1 < width {
            let mut step = max_step.min(width - 1 - c);
            while step > 1 && !fits(c, c + step) {
                step -= 1;
            }
            c += step;
            right.push(c);
        }
        let mut cols = Vec::new();
        let mut c = centre;
        while c > 0 {
            let mut step = max_step.min(c);
            while step > 1 && !fits(c - step, c) {
                step -= 1;
            }
            c -= step;
            cols.push(c);
        }
        cols.reverse();
        cols.extend(right);
        Ok(cols)
    }

    /// As [`Geolocator::gcp_grid`], at the given columns (e.g. from
    /// [`Geolocator::scan_adaptive_columns`]); columns at or beyond `width` are skipped.
    pub fn gcp_grid_at_columns(
        &self,
        times_per_line: &[Option<UtcTime>],
        width: usize,
        step_lines: usize,
        columns: &[usize],
    ) -> Result<Vec<Gcp>, Error> {
        if step_lines == 0 {
            return Err(Error::InvalidStep {
                step_lines,
                step_cols: 1,
            });
        }
        if width != self.geometry.width {
            return Err(Error::WidthMismatch {
                width,
                geometry_width: self.geometry.width,
            });
        }
        let times = interpolate_line_times(times_per_line);
        let cols: Vec<usize> = columns.iter().copied().filter(|&c| c < width).collect();
        let mut out = Vec::new();
        for line in grid_indices(times.len(), step_lines) {
            let Some(Some(t)) = times.get(line).copied() else {
                continue;
            };
            let frame = self.line_frame(t)?;
            for &col in &cols {
                let x = col as f64 + 0.5;
                if let Some(p) = frame.locate(&self.geometry, x) {
                    out.push(Gcp {
                        pixel: x,
                        line: line as f64 + 0.5,
                        lat_deg: p.lat_deg,
                        lon_deg: p.lon_deg,
                    });
                }
            }
        }
        Ok(out)
    }
}

/// Per-pixel geolocation sampled on a regular grid of pixel centres (GDAL's geolocation
/// arrays, `GEOLOCATION` metadata with `GEOREFERENCING_CONVENTION=PIXEL_CENTER`).
///
/// Sample `(i, j)` (row-major, `i` along the line) is the ground point of the centre of
/// column `i · pixel_step`, line `j · line_step`. The grid covers the whole image: its last
/// column and line lie at or beyond the image's last ones (the scan model is evaluated
/// there too, so interpolation never has to extrapolate).
#[derive(Debug, Clone, PartialEq)]
pub struct GeolocationArrays {
    /// Samples per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Image columns between two samples.
    pub pixel_step: usize,
    /// Image lines between two sample rows.
    pub line_step: usize,
    /// Longitudes, degrees east, row-major `width * height`.
    pub lon_deg: Vec<f64>,
    /// Geodetic latitudes, degrees, row-major `width * height`.
    pub lat_deg: Vec<f64>,
}

impl Geolocator {
    /// Exact scan-model geolocation of every `pixel_step`-th column of every `line_step`-th
    /// line, for GDAL's geolocation-array transformer.
    ///
    /// Why not only GCPs: MSU-MR's ground pixel grows from ≈1 km at nadir to 5–7 km at
    /// ±55°, so any smooth interpolation through a coarse GCP grid departs from the scan
    /// model by several pixels between GCPs near the swath edges. Bilinear interpolation
    /// between samples 4 columns apart stays within ≈0.02 px of the model there (error ∝
    /// step², measured on the 2022-12-20 pass); along track the model is linear in time.
    ///
    /// Line times: missing ones between known stamps are interpolated, and the grid rows
    /// before the first / after the last stamped line are extrapolated with the pass's mean
    /// line rate. Errors when fewer than two lines have a time, or when a ray misses the
    /// Earth (impossible for MSU-MR's ±55° scan from orbit).
    pub fn geolocation_arrays(
        &self,
        times_per_line: &[Option<UtcTime>],
        width: usize,
        pixel_step: usize,
        line_step: usize,
    ) -> Result<GeolocationArrays, Error> {
        if pixel_step == 0 || line_step == 0 {
            return Err(Error::InvalidStep {
                step_lines: line_step,
                step_cols: pixel_step,
            });
        }
        if width != self.geometry.width {
            return Err(Error::WidthMismatch {
                width,
                geometry_width: self.geometry.width,
            });
        }
        let known: Vec<(usize, UtcTime)> = times_per_line
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .collect();
        let (Some(&(i0, t0)), Some(&(i1, t1))) = (known.first(), known.last()) else {
            return Err(Error::TooFewLineTimes);
        };
        if i1 == i0 {
            return Err(Error::TooFewLineTimes);
        }
        let rate = t1.seconds_since(t0) / (i1 - i0) as f64;
        let times = interpolate_line_times(times_per_line);
        let time_of = |line: usize| match times.get(line).copied().flatten() {
            Some(t) => t,
            None => t0.add_seconds((line as f64 - i0 as f64) * rate),
        };
        let samples = |len: usize, step: usize| len.saturating_sub(1).div_ceil(step) + 1;
        let (w, h) = (
            samples(width, pixel_step),
            samples(times_per_line.len(), line_step),
        );
        let mut lon_deg = Vec::with_capacity(w * h);
        let mut lat_deg = Vec::with_capacity(w * h);
        for j in 0..h {
            let t = time_of(j * line_step);
            let frame = self.line_frame(t)?;
            for i in 0..w {
                let p = frame
                    .locate(&self.geometry, (i * pixel_step) as f64 + 0.5)
                    .ok_or(Error::RayMissesEarth(t))?;
                lon_deg.push(p.lon_deg);
                lat_deg.push(p.lat_deg);
            }
        }
        Ok(GeolocationArrays {
            width: w,
            height: h,
            pixel_step,
            line_step,
            lon_deg,
            lat_deg,
        })
    }
}

/// `0, step, 2·step, …` below `len`, plus `len - 1` if not already included.
fn grid_indices(len: usize, step: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..len).step_by(step.max(1)).collect();
    if let Some(last) = len.checked_sub(1) {
        if v.last() != Some(&last) {
            v.push(last);
        }
    }
    v
}

/// Fills missing line times that lie between two known ones by linear interpolation in
/// the line index (MSU-MR lines are evenly spaced in time). Leading and trailing gaps
/// stay `None`.
pub fn interpolate_line_times(times: &[Option<UtcTime>]) -> Vec<Option<UtcTime>> {
    let mut out = times.to_vec();
    let mut prev: Option<(usize, UtcTime)> = None;
    for (i, t) in times.iter().enumerate() {
        if let Some(t) = *t {
            if let Some((pi, pt)) = prev {
                let gap = i - pi;
                if gap > 1 {
                    let span = t.seconds_since(pt) * 1e6;
                    for (k, slot) in out.iter_mut().enumerate().take(i).skip(pi + 1) {
                        let frac = (k - pi) as f64 / gap as f64;
                        *slot = Some(pt.add_seconds(span * frac / 1e6));
                    }
                }
            }
            prev = Some((i, t));
        }
    }
    out
}

/// Expands one time stamp per LRPT MCU row (8 lines) into per-line times: line `k` of a
/// row stamped `t` gets `t + k · line_period_s`. Which line of the row the on-board stamp
/// refers to is not documented; the first line is assumed (SatDump applies a tuned
/// `timestamp_offset` of +0.2 s for LRPT on top of its own row timing).
pub fn expand_row_times(
    row_times: &[Option<UtcTime>],
    lines_per_row: usize,
    line_period_s: f64,
) -> Vec<Option<UtcTime>> {
    row_times
        .iter()
        .flat_map(|t| {
            (0..lines_per_row).map(move |k| t.map(|t| t.add_seconds(k as f64 * line_period_s)))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn ray_hits_and_misses() {
        // Straight down from 1000 km above the equator.
        let p =
            ray_ellipsoid_intersection([WGS84_A_KM + 1000.0, 0.0, 0.0], [-1.0, 0.0, 0.0]).unwrap();
        assert!((p[0] - WGS84_A_KM).abs() < 1e-9 && p[1].abs() < 1e-12);
        // Down from above the pole hits the semi-minor axis.
        let p = ray_ellipsoid_intersection([0.0, 0.0, 8000.0], [0.0, 0.0, -1.0]).unwrap();
        assert!((p[2] - WGS84_B_KM).abs() < 1e-9);
        // Pointing away / tangent-missing / starting inside.
        assert!(ray_ellipsoid_intersection([7000.0, 0.0, 0.0], [1.0, 0.0, 0.0]).is_none());
        assert!(ray_ellipsoid_intersection([7000.0, 0.0, 0.0], [0.0, 1.0, 0.0]).is_none());
        assert!(ray_ellipsoid_intersection([6000.0, 0.0, 0.0], [-1.0, 0.0, 0.0]).is_none());
        // Grazing limit: from r = 7000 km on the x axis, rays in the equatorial plane
        // hit only if the angle from nadir is below asin(a / r).
        let lim = (WGS84_A_KM / 7000.0).asin();
        let ok = [-(lim - 1e-6).cos(), (lim - 1e-6).sin(), 0.0];
        let miss = [-(lim + 1e-6).cos(), (lim + 1e-6).sin(), 0.0];
        assert!(ray_ellipsoid_intersection([7000.0, 0.0, 0.0], ok).is_some());
        assert!(ray_ellipsoid_intersection([7000.0, 0.0, 0.0], miss).is_none());
    }

    #[test]
    fn scan_angles() {
        let g = ScanGeometry::MSU_MR_LRPT_NOMINAL;
        // Column 0 is right of track, last column left; centre of the image is nadir.
        assert!(g.right_of_track_angle(0.5) > 0.0);
        assert!(g.right_of_track_angle(1567.5) < 0.0);
        assert!(g.right_of_track_angle(784.0).abs() < 1e-15);
        let edge = g.right_of_track_angle(0.0).to_degrees();
        assert!((edge - 55.3).abs() < 1e-12);
        let l = g.look_vector_orbital(0.5);
        assert!(l[1] > 0.8 && l[0] == 0.0);
        let mut left = g;
        left.column0_side = Side::Left;
        assert!(left.look_vector_orbital(0.5)[1] < -0.8);
        // Positive roll moves the nadir boresight to the left (−y); pitch forward; yaw
        // turns the scan line.
        let mut r = g;
        r.roll_deg = 1.0;
        assert!(r.look_vector_orbital(784.0)[1] < 0.0);
        let mut p = g;
        p.pitch_deg = 1.0;
        assert!(p.look_vector_orbital(784.0)[0] > 0.0);
        let mut y = g;
        y.yaw_deg = 10.0;
        let v = y.look_vector_orbital(0.5);
        assert!(
            v[0] < 0.0,
            "right-side pixel swings backward for nose-right yaw: {v:?}"
        );
    }

    #[test]
    fn line_time_interpolation_and_expansion() {
        let t0 = UtcTime::from_unix_millis(1_000_000);
        let t4 = UtcTime::from_unix_millis(1_000_400);
        let v = interpolate_line_times(&[None, Some(t0), None, None, None, Some(t4), None]);
        assert_eq!(v[0], None);
        assert_eq!(v[3], Some(UtcTime::from_unix_millis(1_000_200)));
        assert_eq!(v[6], None);
        let e = expand_row_times(&[Some(t0), None], 8, 0.125);
        assert_eq!(e.len(), 16);
        assert_eq!(
            e[7],
            Some(UtcTime::from_unix_micros(t0.unix_micros() + 875_000))
        );
        assert!(e[8..].iter().all(Option::is_none));
        assert_eq!(grid_indices(10, 4), vec![0, 4, 8, 9]);
        assert_eq!(grid_indices(9, 4), vec![0, 4, 8]);
        assert!(grid_indices(0, 4).is_empty());
    }

    #[test]
    fn great_circle_quarter_meridian() {
        let d = great_circle_km(0.0, 0.0, 90.0, 0.0);
        assert!((d - std::f64::consts::FRAC_PI_2 * MEAN_EARTH_RADIUS_KM).abs() < 1e-9);
    }
}
