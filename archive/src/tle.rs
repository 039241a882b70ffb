//! The station's TLE store: `ARCHIVE/tle/<NORAD>-<epoch>.tle`, one element set per file.
//!
//! Operators (or a cron job fetching Celestrak) load newer sets with `downlink tle import FILE`
//! (`GET /api/v1/tle` lists them; there is no upload route); the product step picks, per pass,
//! the set whose epoch is nearest the pass, and warns when that is more than
//! `raster::scene::TLE_MAX_AGE_DAYS` away. Every set is checked (checksums, fields, SGP4 initialisation) before it is stored, and
//! a file with any bad set is refused whole, each problem named by line, so a truncated download
//! never half-lands. Sets already stored are left as they are.

use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use imagery::orbit::Propagator;
use imagery::tle::{TleRecord, TleSet};
use serde::Serialize;

use crate::Error;

/// One stored element set.
#[derive(Clone, Debug, Serialize)]
pub struct StoredTle {
    /// Catalogue number.
    pub norad_id: u64,
    /// Name line, if the set had one.
    pub name: Option<String>,
    /// Epoch (UTC, RFC 3339).
    pub epoch: String,
    /// File.
    pub path: PathBuf,
    /// Whether this import added it (false: it was already stored).
    pub new: bool,
}

/// The store directory of an archive.
pub fn dir(archive: &Path) -> PathBuf {
    archive.join("tle")
}

fn epoch_of(rec: &TleRecord) -> Result<DateTime<Utc>, String> {
    let p = Propagator::new(&rec.elements).map_err(|e| format!("NORAD {}: {e}", rec.norad_id))?;
    DateTime::<Utc>::from_timestamp_micros(p.epoch().unix_micros())
        .ok_or_else(|| format!("NORAD {}: epoch out of range", rec.norad_id))
}

/// Checks every set of `text` and stores them; nothing is stored if any set is bad.
pub fn import(archive: &Path, text: &str) -> Result<Vec<StoredTle>, Error> {
    let (set, errors) = TleSet::parse_lenient(text);
    let mut problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
    if set.is_empty() && problems.is_empty() {
        problems.push("no TLE in the input".into());
    }
    let mut checked = Vec::new();
    for rec in set.records() {
        match epoch_of(rec) {
            Ok(epoch) => checked.push((rec, epoch)),
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        return Err(Error::TleInvalid(problems));
    }
    let dir = dir(archive);
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        op: "creating",
        path: dir.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for (rec, epoch) in checked {
        let path = dir.join(format!(
            "{:05}-{}.tle",
            rec.norad_id,
            epoch.format("%Y%m%dT%H%M%S%.6fZ")
        ));
        let new = !path.exists();
        if new {
            let name = rec.name.as_deref().unwrap_or("");
            let body = format!("{name}\n{}\n{}\n", rec.line1, rec.line2);
            crate::write_atomic(&path, body.as_bytes())?;
        }
        out.push(StoredTle {
            norad_id: rec.norad_id,
            name: rec.name.clone(),
            epoch: epoch.to_rfc3339_opts(SecondsFormat::Millis, true),
            path,
            new,
        });
    }
    Ok(out)
}

/// The stored sets, by NORAD id then epoch.
pub fn list(archive: &Path) -> Vec<StoredTle> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir(archive)) else {
        return out;
    };
    for e in rd.flatten() {
        let path = e.path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let (set, _) = TleSet::parse_lenient(&text);
        for rec in set.records() {
            if let Ok(epoch) = epoch_of(rec) {
                out.push(StoredTle {
                    norad_id: rec.norad_id,
                    name: rec.name.clone(),
                    epoch: epoch.to_rfc3339_opts(SecondsFormat::Millis, true),
                    path: path.clone(),
                    new: false,
                });
            }
        }
    }
    out.sort_by(|a, b| (a.norad_id, &a.epoch).cmp(&(b.norad_id, &b.epoch)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const METEOR: &str = "METEOR-M 2\n1 40069U 14037A   22354.17984696  .00000025  00000-0  30713-4 0  9995\n2 40069  98.4263   3.4594 0006385 134.9433 225.2271 14.20730497438235\n";

    #[test]
    fn import_stores_once_and_lists() {
        let dir = tempfile::tempdir().unwrap();
        let a = import(dir.path(), METEOR).unwrap();
        assert_eq!(a.len(), 1);
        assert!(a[0].new);
        assert_eq!(a[0].norad_id, 40069);
        assert_eq!(a[0].epoch, "2022-12-20T04:18:58.777Z");
        let again = import(dir.path(), METEOR).unwrap();
        assert!(!again[0].new);
        let l = list(dir.path());
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].name.as_deref(), Some("METEOR-M 2"));
    }

    #[test]
    fn a_bad_set_refuses_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = METEOR.replace("438235", "438236");
        let text = format!("{METEOR}{bad}");
        let err = import(dir.path(), &text).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        assert!(list(dir.path()).is_empty());
        assert!(import(dir.path(), "hello\n").is_err());
    }
}
