//! Instrument time of day → UTC.
//!
//! MSU-MR packets carry the time of day in Moscow time (UTC+3, no daylight saving since 2014)
//! and no date. The date comes from outside: the daemon's clock at AOS, or `--date` on the
//! command line. A pass can cross midnight (Moscow midnight is 21:00 UTC), so each line is
//! resolved to the candidate instant nearest a running reference: the previous line's time,
//! starting from the given reference.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};

/// Moscow time minus UTC.
pub const MOSCOW_OFFSET_MS: i64 = 3 * 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Resolves instrument times of day to UTC instants, walking forward through a pass.
#[derive(Clone, Copy, Debug)]
pub struct DayClock {
    reference: DateTime<Utc>,
    offset_ms: i64,
}

impl DayClock {
    /// A clock for Moscow-time instruments whose pass is near `reference` (within ±12 h).
    pub fn moscow(reference: DateTime<Utc>) -> Self {
        Self {
            reference,
            offset_ms: MOSCOW_OFFSET_MS,
        }
    }

    /// A clock for a pass whose first line falls on the UTC date `date`.
    pub fn moscow_on_date(date: NaiveDate, first_ms_of_day: u32) -> Self {
        let utc_tod = (i64::from(first_ms_of_day) - MOSCOW_OFFSET_MS).rem_euclid(DAY_MS);
        let reference = date.and_time(NaiveTime::MIN).and_utc() + Duration::milliseconds(utc_tod);
        Self::moscow(reference)
    }

    /// The UTC instant of a local time of day (milliseconds, may exceed one day by a leap
    /// second's worth); moves the reference to it, so the next line resolves near this one.
    pub fn resolve(&mut self, ms_of_day: u32) -> DateTime<Utc> {
        let t = self.peek(ms_of_day);
        self.reference = t;
        t
    }

    /// Like [`resolve`](Self::resolve) without moving the reference.
    pub fn peek(&self, ms_of_day: u32) -> DateTime<Utc> {
        let local_ref = self.reference + Duration::milliseconds(self.offset_ms);
        let midnight = local_ref.date_naive().and_time(NaiveTime::MIN).and_utc();
        let base = midnight + Duration::milliseconds(i64::from(ms_of_day) - self.offset_ms);
        [base - Duration::days(1), base, base + Duration::days(1)]
            .into_iter()
            .min_by_key(|c| (*c - self.reference).num_milliseconds().abs())
            .unwrap_or(base)
    }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn moscow_evening_is_utc_same_day() {
        // 23:25:12.296 Moscow on 2022-12-20 = 20:25:12.296 UTC (the shared Meteor pass).
        let d = parse_date("2022-12-20").unwrap();
        let ms = 84_312_296;
        let mut c = DayClock::moscow_on_date(d, ms);
        let t = c.resolve(ms);
        assert_eq!(
            t,
            Utc.with_ymd_and_hms(2022, 12, 20, 20, 25, 12).unwrap() + Duration::milliseconds(296)
        );
    }

    #[test]
    fn pass_crossing_moscow_midnight_keeps_going_forward() {
        // UTC 20:59:59 → 21:00:01 crosses Moscow midnight: times of day wrap, instants do not.
        let reference = Utc.with_ymd_and_hms(2024, 3, 1, 20, 55, 0).unwrap();
        let mut c = DayClock::moscow(reference);
        let a = c.resolve(86_399_000); // 23:59:59 MSK
        let b = c.resolve(1_000); // 00:00:01 MSK next day
        assert_eq!(a, Utc.with_ymd_and_hms(2024, 3, 1, 20, 59, 59).unwrap());
        assert_eq!(b, Utc.with_ymd_and_hms(2024, 3, 1, 21, 0, 1).unwrap());
    }

    #[test]
    fn early_moscow_morning_belongs_to_previous_utc_date_on_the_cli() {
        // --date is the UTC date of the first line: 01:30 MSK = 22:30 UTC that date.
        let d = parse_date("2024-03-01").unwrap();
        let mut c = DayClock::moscow_on_date(d, 5_400_000);
        assert_eq!(
            c.resolve(5_400_000),
            Utc.with_ymd_and_hms(2024, 3, 1, 22, 30, 0).unwrap()
        );
        assert!(parse_date("2024-13-01").is_none());
    }
}
