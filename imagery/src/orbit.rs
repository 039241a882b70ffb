//! Orbit propagation (SGP4 via the `sgp4` crate), TEME → Earth-fixed conversion and
//! sub-satellite point on the WGS84 ellipsoid.
//!
//! * Propagation: `sgp4` crate (neuromorphicsystems, a port of Vallado's reference code).
//!   [`Sgp4Mode::Improved`] (the default) is Vallado's `opsmode = 'i'` with the WGS72
//!   gravity constants that TLEs are fitted with; [`Sgp4Mode::Afspc`] is `opsmode = 'a'`
//!   (AFSPC-compatible epoch and sidereal-time expressions, WGS72). The two differ only
//!   for deep-space orbits (resonance sidereal time, Lyddane choice for inclination
//!   < 0.2 rad); for a LEO weather satellite they agree to far below a metre.
//!   Reference: Vallado, Crawford, Hujsak, Kelso, "Revisiting Spacetrack Report #3",
//!   AIAA 2006-6753-Rev1 (opsmode, gravity constants, error codes).
//! * Decay: like Vallado's `sgp4()` (error code 6, `mrt < 1`), a propagated position
//!   inside the Earth's equatorial radius is reported as [`Error::Decayed`]; the
//!   `sgp4` crate itself does not make that check.
//! * TEME → ECEF: rotation by Greenwich mean sidereal time, IAU-82 expression (Vallado,
//!   *Fundamentals of Astrodynamics and Applications*, 4th ed., eq. 3-47, `gstime`), with
//!   UT1 ≈ UTC (|DUT1| < 0.9 s, i.e. < 0.42 km along the equator) and polar motion and
//!   length-of-day ignored. The result is the pseudo-Earth-fixed frame (PEF), which is
//!   ITRF without polar motion (< 15 m).
//! * Geodetic coordinates: WGS84 (a = 6378.137 km, f = 1/298.257223563).
//!
//! Time is [`UtcTime`]: integer microseconds since 1970-01-01T00:00:00 UTC, leap seconds
//! not counted (as SGP4 itself does).

use crate::Error;

/// WGS84 semi-major axis, km.
pub const WGS84_A_KM: f64 = 6378.137;
/// WGS84 flattening.
pub const WGS84_F: f64 = 1.0 / 298.257_223_563;
/// WGS84 semi-minor axis, km.
pub const WGS84_B_KM: f64 = WGS84_A_KM * (1.0 - WGS84_F);
/// WGS84 first eccentricity squared.
pub const WGS84_E2: f64 = WGS84_F * (2.0 - WGS84_F);
/// Earth rotation rate (IERS/Vallado), rad/s.
pub const EARTH_ROTATION_RAD_S: f64 = 7.292_115_146_706_979e-5;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;
/// 2000-01-01T12:00:00 UTC as Unix seconds (J2000.0 epoch used with UT1 for GMST).
const J2000_UNIX_SECONDS: i64 = 946_728_000;

/// A UTC instant with microsecond resolution (Unix epoch, leap seconds not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UtcTime {
    unix_micros: i64,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

impl UtcTime {
    /// From microseconds since 1970-01-01T00:00:00 UTC.
    pub const fn from_unix_micros(unix_micros: i64) -> Self {
        Self { unix_micros }
    }

    /// From milliseconds since 1970-01-01T00:00:00 UTC.
    pub const fn from_unix_millis(unix_millis: i64) -> Self {
        Self {
            unix_micros: unix_millis.saturating_mul(1000),
        }
    }

    /// Microseconds since 1970-01-01T00:00:00 UTC.
    pub const fn unix_micros(self) -> i64 {
        self.unix_micros
    }

    /// From a calendar date and time of day. `None` for an invalid date or a time of day
    /// outside `0..86_400_000_000` µs.
    pub fn from_ymd_hms_micro(
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        minute: u32,
        second: u32,
        micro: u32,
    ) -> Option<Self> {
        let tod = i64::from(hour) * 3_600_000_000
            + i64::from(minute) * 60_000_000
            + i64::from(second) * MICROS_PER_SECOND
            + i64::from(micro);
        Self::from_date_and_micros_of_day(year, month, day, tod)
    }

    /// Midnight of `year-month-day` plus `micros_of_day` (which must lie in one day).
    pub fn from_date_and_micros_of_day(
        year: i32,
        month: u32,
        day: u32,
        micros_of_day: i64,
    ) -> Option<Self> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(i64::from(year), month) {
            return None;
        }
        if !(0..MICROS_PER_DAY).contains(&micros_of_day) {
            return None;
        }
        let days = days_from_civil(i64::from(year), month, day);
        let unix_micros = days
            .checked_mul(MICROS_PER_DAY)?
            .checked_add(micros_of_day)?;
        Some(Self { unix_micros })
    }

    /// A time-of-day stamp given in a fixed-offset zone (e.g. Meteor LRPT packets carry
    /// Moscow time, UTC+3, as milliseconds of day) on the zone's calendar date.
    /// The result may fall on the previous/next UTC day.
    pub fn from_local_ms_of_day(
        year: i32,
        month: u32,
        day: u32,
        ms_of_day: i64,
        utc_offset_seconds: i64,
    ) -> Option<Self> {
        let midnight_local = Self::from_date_and_micros_of_day(year, month, day, 0)?;
        if !(0..86_400_000).contains(&ms_of_day) {
            return None;
        }
        Some(Self {
            unix_micros: midnight_local
                .unix_micros
                .saturating_add(ms_of_day * 1000)
                .saturating_sub(utc_offset_seconds.saturating_mul(MICROS_PER_SECOND)),
        })
    }

    /// This instant shifted by `seconds` (rounded to the microsecond).
    pub fn add_seconds(self, seconds: f64) -> Self {
        Self {
            unix_micros: self
                .unix_micros
                .saturating_add((seconds * 1e6).round() as i64),
        }
    }

    /// `self - earlier` in seconds.
    pub fn seconds_since(self, earlier: UtcTime) -> f64 {
        (i128::from(self.unix_micros) - i128::from(earlier.unix_micros)) as f64 / 1e6
    }

    /// Julian centuries of UT1 (≈ UTC) since J2000.0.
    pub fn julian_centuries_since_j2000(self) -> f64 {
        let micros = self
            .unix_micros
            .saturating_sub(J2000_UNIX_SECONDS * MICROS_PER_SECOND);
        micros as f64 / (MICROS_PER_DAY as f64 * 36_525.0)
    }

    /// Conversion to the `chrono` type the `sgp4` crate uses.
    fn to_naive(self) -> Option<sgp4::chrono::NaiveDateTime> {
        sgp4::chrono::DateTime::from_timestamp_micros(self.unix_micros).map(|d| d.naive_utc())
    }

    fn from_naive(dt: &sgp4::chrono::NaiveDateTime) -> Self {
        Self {
            unix_micros: dt.and_utc().timestamp_micros(),
        }
    }
}

impl std::fmt::Display for UtcTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_naive() {
            Some(n) => write!(f, "{}Z", n.format("%Y-%m-%dT%H:%M:%S%.6f")),
            None => write!(f, "unix_us:{}", self.unix_micros),
        }
    }
}

/// Position (km) and velocity (km/s) in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StateVector {
    /// Position, km.
    pub position_km: [f64; 3],
    /// Velocity, km/s.
    pub velocity_km_s: [f64; 3],
}

/// Geodetic coordinates on WGS84.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geodetic {
    /// Geodetic latitude, degrees north.
    pub lat_deg: f64,
    /// Longitude, degrees east in (-180, 180].
    pub lon_deg: f64,
    /// Height above the ellipsoid, km.
    pub alt_km: f64,
}

/// Which SGP4 operation mode to reproduce (Vallado's `opsmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Sgp4Mode {
    /// `'i'`: IAU-82 sidereal time for the deep-space terms, modern Lyddane choice; WGS72.
    #[default]
    Improved,
    /// `'a'`: AFSPC-compatible expressions; WGS72.
    Afspc,
}

/// SGP4 propagator for one satellite.
#[derive(Debug, Clone)]
pub struct Propagator {
    norad_id: u64,
    epoch: UtcTime,
    mode: Sgp4Mode,
    constants: sgp4::Constants,
}

impl Propagator {
    /// Initialises SGP4 in [`Sgp4Mode::Improved`] (WGS72 constants).
    pub fn new(elements: &sgp4::Elements) -> Result<Self, Error> {
        Self::with_mode(elements, Sgp4Mode::Improved)
    }

    /// Initialises SGP4 in the given mode.
    pub fn with_mode(elements: &sgp4::Elements, mode: Sgp4Mode) -> Result<Self, Error> {
        let init_err = |source| Error::Sgp4Init {
            norad_id: elements.norad_id,
            source,
        };
        let constants = match mode {
            Sgp4Mode::Afspc => sgp4::Constants::from_elements_afspc_compatibility_mode(elements)
                .map_err(init_err)?,
            Sgp4Mode::Improved => {
                let deg = std::f64::consts::PI / 180.0;
                let orbit = sgp4::Orbit::from_kozai_elements(
                    &sgp4::WGS72,
                    elements.inclination * deg,
                    elements.right_ascension * deg,
                    elements.eccentricity,
                    elements.argument_of_perigee * deg,
                    elements.mean_anomaly * deg,
                    elements.mean_motion * (std::f64::consts::PI / 720.0),
                )
                .map_err(|e| init_err(sgp4::ElementsError::from(e)))?;
                sgp4::Constants::new(
                    sgp4::WGS72,
                    sgp4::iau_epoch_to_sidereal_time,
                    elements.epoch(),
                    elements.drag_term,
                    orbit,
                )
                .map_err(|e| init_err(sgp4::ElementsError::from(e)))?
            }
        };
        Ok(Self {
            norad_id: elements.norad_id,
            epoch: UtcTime::from_naive(&elements.datetime),
            mode,
            constants,
        })
    }

    /// Element epoch.
    pub fn epoch(&self) -> UtcTime {
        self.epoch
    }

    /// NORAD catalogue number.
    pub fn norad_id(&self) -> u64 {
        self.norad_id
    }

    /// TEME state `minutes` after the element epoch.
    pub fn propagate_minutes(&self, minutes: f64) -> Result<StateVector, Error> {
        let t = sgp4::MinutesSinceEpoch(minutes);
        let prediction = match self.mode {
            Sgp4Mode::Improved => self.constants.propagate(t),
            Sgp4Mode::Afspc => self.constants.propagate_afspc_compatibility_mode(t),
        }
        .map_err(|source| Error::Sgp4Propagation {
            norad_id: self.norad_id,
            minutes,
            source,
        })?;
        let radius_km = norm(prediction.position);
        if radius_km < sgp4::WGS72.ae {
            return Err(Error::Decayed {
                norad_id: self.norad_id,
                minutes,
                radius_km,
            });
        }
        Ok(StateVector {
            position_km: prediction.position,
            velocity_km_s: prediction.velocity,
        })
    }

    /// TEME state at a UTC instant.
    pub fn teme_at(&self, t: UtcTime) -> Result<StateVector, Error> {
        self.propagate_minutes(t.seconds_since(self.epoch) / 60.0)
    }

    /// Earth-fixed (PEF ≈ ITRF without polar motion) state at a UTC instant.
    pub fn ecef_at(&self, t: UtcTime) -> Result<StateVector, Error> {
        Ok(teme_to_ecef(&self.teme_at(t)?, t))
    }

    /// Sub-satellite point: geodetic latitude/longitude of the satellite, and its height
    /// above the WGS84 ellipsoid.
    pub fn subsatellite_point(&self, t: UtcTime) -> Result<Geodetic, Error> {
        Ok(ecef_to_geodetic(self.ecef_at(t)?.position_km))
    }
}

/// Greenwich mean sidereal time (IAU-82, Vallado `gstime`), radians in [0, 2π), UT1 = UTC.
pub fn gmst_iau82(t: UtcTime) -> f64 {
    let tu = t.julian_centuries_since_j2000();
    let seconds = -6.2e-6 * tu * tu * tu
        + 0.093_104 * tu * tu
        + (876_600.0 * 3600.0 + 8_640_184.812_866) * tu
        + 67_310.548_41;
    // 1 s of sidereal time = 1/240 degree.
    (seconds.to_radians() / 240.0).rem_euclid(2.0 * std::f64::consts::PI)
}

/// Rotates a TEME vector about Z by GMST (TEME → PEF), without the Earth-rotation velocity term.
pub fn teme_to_ecef_vector(v: [f64; 3], t: UtcTime) -> [f64; 3] {
    rot_z(v, gmst_iau82(t))
}

/// Rotates an Earth-fixed vector back to TEME (inverse of [`teme_to_ecef_vector`]).
pub fn ecef_to_teme_vector(v: [f64; 3], t: UtcTime) -> [f64; 3] {
    rot_z(v, -gmst_iau82(t))
}

/// `R3(theta) v`: frame rotation by `theta` about Z.
fn rot_z(v: [f64; 3], theta: f64) -> [f64; 3] {
    let (s, c) = theta.sin_cos();
    [c * v[0] + s * v[1], -s * v[0] + c * v[1], v[2]]
}

/// TEME state → Earth-fixed state (position rotated by GMST, velocity also loses ω × r).
pub fn teme_to_ecef(state: &StateVector, t: UtcTime) -> StateVector {
    let theta = gmst_iau82(t);
    let r = rot_z(state.position_km, theta);
    let v_rot = rot_z(state.velocity_km_s, theta);
    let w = EARTH_ROTATION_RAD_S;
    StateVector {
        position_km: r,
        // v_ecef = R v_teme − ω × r_ecef, ω = (0, 0, w)
        velocity_km_s: [v_rot[0] + w * r[1], v_rot[1] - w * r[0], v_rot[2]],
    }
}

/// Earth-fixed Cartesian (km) → WGS84 geodetic. Iterative; converges to < 1e-12 rad.
pub fn ecef_to_geodetic(p: [f64; 3]) -> Geodetic {
    let [x, y, z] = p;
    let lon = y.atan2(x);
    let rho = x.hypot(y);
    let mut lat = z.atan2(rho * (1.0 - WGS84_E2));
    for _ in 0..10 {
        let s = lat.sin();
        let n = WGS84_A_KM / (1.0 - WGS84_E2 * s * s).sqrt();
        let next = (z + WGS84_E2 * n * s).atan2(rho);
        let done = (next - lat).abs() < 1e-13;
        lat = next;
        if done {
            break;
        }
    }
    let (s, c) = lat.sin_cos();
    let n = WGS84_A_KM / (1.0 - WGS84_E2 * s * s).sqrt();
    // Height valid at all latitudes (no division by cos(lat)).
    let alt = rho * c + z * s - WGS84_A_KM * WGS84_A_KM / n;
    Geodetic {
        lat_deg: lat.to_degrees(),
        lon_deg: lon.to_degrees(),
        alt_km: alt,
    }
}

/// WGS84 geodetic → Earth-fixed Cartesian, km.
pub fn geodetic_to_ecef(g: &Geodetic) -> [f64; 3] {
    let (sl, cl) = g.lat_deg.to_radians().sin_cos();
    let (so, co) = g.lon_deg.to_radians().sin_cos();
    let n = WGS84_A_KM / (1.0 - WGS84_E2 * sl * sl).sqrt();
    [
        (n + g.alt_km) * cl * co,
        (n + g.alt_km) * cl * so,
        (n * (1.0 - WGS84_E2) + g.alt_km) * sl,
    ]
}

pub(crate) fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_calendar() {
        let t = UtcTime::from_ymd_hms_micro(2022, 12, 20, 20, 25, 12, 296_000).unwrap();
        assert_eq!(t.unix_micros(), 1_671_567_912_296_000);
        assert_eq!(t.to_string(), "2022-12-20T20:25:12.296000Z");
        assert!(UtcTime::from_ymd_hms_micro(2023, 2, 29, 0, 0, 0, 0).is_none());
        assert!(UtcTime::from_ymd_hms_micro(2024, 2, 29, 0, 0, 0, 0).is_some());
        assert!(UtcTime::from_ymd_hms_micro(2024, 1, 1, 24, 0, 0, 0).is_none());
        assert!(UtcTime::from_ymd_hms_micro(i32::MAX, 12, 31, 0, 0, 0, 0).is_none());
        let far = UtcTime::from_unix_micros(i64::MAX);
        assert!(far.seconds_since(UtcTime::from_unix_micros(i64::MIN)) > 0.0);
        assert!(far.to_string().starts_with("unix_us:"));
        // Moscow time 23:25:12.296 = 20:25:12.296 UTC.
        let m = UtcTime::from_local_ms_of_day(2022, 12, 20, 84_312_296, 3 * 3600).unwrap();
        assert_eq!(m, t);
        // 01:00 MSK on the 21st is 22:00 UTC on the 20th.
        let m2 = UtcTime::from_local_ms_of_day(2022, 12, 21, 3_600_000, 3 * 3600).unwrap();
        assert_eq!(
            m2,
            UtcTime::from_ymd_hms_micro(2022, 12, 20, 22, 0, 0, 0).unwrap()
        );
        assert!((t.add_seconds(1.5).seconds_since(t) - 1.5).abs() < 1e-12);
    }

    #[test]
    fn gmst_matches_vallado_example_and_sgp4_crate() {
        // Vallado, Fundamentals (4th ed.), Example 3-5: 1992-08-20 12:14:00 UT1
        // → GMST = 152.578787886°.
        let t = UtcTime::from_ymd_hms_micro(1992, 8, 20, 12, 14, 0, 0).unwrap();
        let g = gmst_iau82(t).to_degrees();
        assert!((g - 152.578_787_886).abs() < 1e-6, "{g}");
        // Same expression as the sgp4 crate's (argument in Julian years since J2000).
        let t2 = UtcTime::from_ymd_hms_micro(2022, 12, 20, 20, 25, 12, 296_000).unwrap();
        let years = t2.julian_centuries_since_j2000() * 100.0;
        let crate_g = sgp4::iau_epoch_to_sidereal_time(years);
        assert!((crate_g - gmst_iau82(t2)).abs() < 1e-9);
    }

    #[test]
    fn geodetic_round_trip() {
        for &(lat, lon, alt) in &[
            (0.0, 0.0, 0.0),
            (-10.1, 146.9, 830.0),
            (89.999, -120.0, 5.0),
            (-45.0, 179.9, -0.5),
            (60.0, 30.0, 20_000.0),
        ] {
            let g = Geodetic {
                lat_deg: lat,
                lon_deg: lon,
                alt_km: alt,
            };
            let back = ecef_to_geodetic(geodetic_to_ecef(&g));
            assert!((back.lat_deg - lat).abs() < 1e-10, "{back:?}");
            assert!((back.lon_deg - lon).abs() < 1e-10, "{back:?}");
            assert!((back.alt_km - alt).abs() < 1e-7, "{back:?}");
        }
        let pole = ecef_to_geodetic([0.0, 0.0, WGS84_B_KM]);
        assert!((pole.lat_deg - 90.0).abs() < 1e-10 && pole.alt_km.abs() < 1e-7);
    }

    #[test]
    fn teme_to_ecef_matches_vallado_example() {
        // Vallado, Fundamentals of Astrodynamics (4th ed.), Example 3-15:
        // 2004-04-06 07:51:28.386009 UTC, UT1 − UTC = −0.4399619 s,
        // r_TEME = (5094.1801621, 6127.6446595, 6380.3445327) km
        // → r_PEF = (−1033.4750313, 7901.3055856, 6380.3445328) km.
        let utc = UtcTime::from_ymd_hms_micro(2004, 4, 6, 7, 51, 28, 386_009).unwrap();
        let ut1 = utc.add_seconds(-0.439_961_9);
        let s = StateVector {
            position_km: [5094.1801621, 6127.6446595, 6380.3445327],
            velocity_km_s: [-4.746_131_487, 0.785_818_041, 5.531_931_288],
        };
        let e = teme_to_ecef(&s, ut1);
        let expect = [-1033.4750313, 7901.3055856, 6380.3445328];
        let d = [
            e.position_km[0] - expect[0],
            e.position_km[1] - expect[1],
            e.position_km[2] - expect[2],
        ];
        assert!(norm(d) < 1e-3, "{d:?}");
        // With UT1 = UTC (what the library does) the error is the 0.44 s of rotation.
        let e_utc = teme_to_ecef(&s, utc);
        let d_utc = [
            e_utc.position_km[0] - expect[0],
            e_utc.position_km[1] - expect[1],
            0.0,
        ];
        assert!(norm(d_utc) < 0.3, "{d_utc:?}");
        // Back-rotation is exact.
        let back = ecef_to_teme_vector(e.position_km, ut1);
        for (b, o) in back.iter().zip(s.position_km) {
            assert!((b - o).abs() < 1e-9);
        }
    }
}
