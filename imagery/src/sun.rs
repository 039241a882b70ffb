//! Where the Sun stands for an observer on the ground: elevation and azimuth, for the STAC
//! `view:sun_elevation` / `view:sun_azimuth` of a scene (day, dawn, night).
//!
//! The low-precision solar coordinates of the Astronomical Almanac (section C, "Sun, low
//! precision": mean longitude, mean anomaly, ecliptic longitude, obliquity; good to 0.01°
//! between 1950 and 2050), Greenwich mean sidereal time from [`crate::orbit::gmst_iau82`] (the
//! one SGP4's frame uses), and the horizon transform. No refraction: these are
//! geometric angles.

use crate::orbit::{gmst_iau82, UtcTime};

/// The Sun seen from a point on the ground.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SunPosition {
    /// Degrees above the horizon (negative below it).
    pub elevation_deg: f64,
    /// Degrees clockwise from true north, 0 ..< 360.
    pub azimuth_deg: f64,
}

/// The Sun's elevation and azimuth at `t` for latitude `lat_deg`, longitude `lon_deg` (east).
pub fn sun_position(t: UtcTime, lat_deg: f64, lon_deg: f64) -> SunPosition {
    let n = t.julian_centuries_since_j2000() * 36_525.0; // days since J2000.0
    let l = (280.460 + 0.985_647_4 * n).rem_euclid(360.0);
    let g = (357.528 + 0.985_600_3 * n).rem_euclid(360.0).to_radians();
    let lambda = (l + 1.915 * g.sin() + 0.020 * (2.0 * g).sin()).to_radians();
    let eps = (23.439 - 0.000_000_4 * n).to_radians();
    let ra = (eps.cos() * lambda.sin()).atan2(lambda.cos());
    let dec = (eps.sin() * lambda.sin()).asin();
    let h = gmst_iau82(t) + lon_deg.to_radians() - ra;
    let phi = lat_deg.to_radians();
    let sin_el = phi.sin() * dec.sin() + phi.cos() * dec.cos() * h.cos();
    let el = sin_el.clamp(-1.0, 1.0).asin();
    let az = (-h.sin()).atan2(dec.tan() * phi.cos() - phi.sin() * h.cos());
    SunPosition {
        elevation_deg: el.to_degrees(),
        azimuth_deg: az.to_degrees().rem_euclid(360.0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(y: i32, m: u32, d: u32, hh: i64, mm: i64) -> UtcTime {
        UtcTime::from_date_and_micros_of_day(y, m, d, (hh * 3600 + mm * 60) * 1_000_000).unwrap()
    }

    #[test]
    fn poles_at_the_solstices_see_the_sun_at_the_obliquity() {
        // All day long at the pole the Sun's elevation is its declination: ±23.44° at the
        // solstices (2024-06-20 20:51 UTC, 2024-12-21 09:21 UTC).
        for hour in [0, 6, 12, 18] {
            let n = sun_position(at(2024, 6, 20, hour, 51), 90.0, 0.0);
            assert!((n.elevation_deg - 23.44).abs() < 0.03, "{n:?}");
            let s = sun_position(at(2024, 12, 21, hour, 21), -90.0, 0.0);
            assert!((s.elevation_deg - 23.44).abs() < 0.03, "{s:?}");
        }
    }

    #[test]
    fn equinox_noon_on_the_equator_is_overhead_and_midnight_is_nadir() {
        // 2024-03-20 03:06 UTC equinox; at 12:07 UTC (equation of time -7.5 min) the Sun is
        // overhead near 0°E on the equator, and at 00:07 UTC straight below.
        let noon = sun_position(at(2024, 3, 20, 12, 7), 0.0, 0.0);
        assert!(noon.elevation_deg > 89.0, "{noon:?}");
        let midnight = sun_position(at(2024, 3, 20, 0, 7), 0.0, 0.0);
        assert!(midnight.elevation_deg < -89.0, "{midnight:?}");
    }

    #[test]
    fn morning_sun_is_in_the_east_and_evening_sun_in_the_west() {
        // Asunción (25.3°S 57.6°W) on 2024-01-15: 10:00 local = 13:00 UTC, 18:00 local = 21:00.
        let am = sun_position(at(2024, 1, 15, 13, 0), -25.3, -57.6);
        let pm = sun_position(at(2024, 1, 15, 21, 0), -25.3, -57.6);
        assert!(
            am.elevation_deg > 30.0 && (45.0..135.0).contains(&am.azimuth_deg),
            "{am:?}"
        );
        assert!(
            pm.elevation_deg > 0.0 && (225.0..315.0).contains(&pm.azimuth_deg),
            "{pm:?}"
        );
    }
}
