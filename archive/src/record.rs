//! The pass record (`ARCHIVE/passes/<id>/pass.json`) as one typed contract: the pipeline writes
//! it at LOS, the crash-recovery path rebuilds it from `cadus.raw`, `/api/v1/passes` lists its
//! summary and the webhooks carry it. Keys are those written since the first release; fields a
//! record of an older version lacks read as their default, and keys this version does not know
//! are kept as they are (`extra`), so reading and writing a record never loses anything.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Why a datagram was dropped before decoding (a metric label value and a `drops` key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// The sender is not in the input's `allow` list.
    NotAllowed,
    /// Longer than the receive buffer.
    Truncated,
    /// Zero bytes.
    Empty,
    /// The decoder queue was full.
    QueueFull,
    /// The kernel's socket buffer overflowed.
    KernelOverflow,
    /// A reason this version does not know (read from a record of another version).
    #[serde(other)]
    Other,
}

impl DropReason {
    /// Every reason this version counts, in label order.
    pub const ALL: [DropReason; 5] = [
        DropReason::NotAllowed,
        DropReason::Truncated,
        DropReason::Empty,
        DropReason::QueueFull,
        DropReason::KernelOverflow,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NotAllowed => "not_allowed",
            DropReason::Truncated => "truncated",
            DropReason::Empty => "empty",
            DropReason::QueueFull => "queue_full",
            DropReason::KernelOverflow => "kernel_overflow",
            DropReason::Other => "other",
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The frame synchronizer's state of an input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SyncState {
    /// Looking for the attached sync marker.
    #[default]
    Searching,
    /// Frames arrive where expected.
    Locked,
}

/// Whether everything the decoder delivered is in the archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ArchiveState {
    /// All data and the record are on disk.
    Complete,
    /// Some data is not archived (see `io_errors`, `not_archived`), or the record waits.
    Incomplete,
    /// The pass was cut short by a crash and its record rebuilt.
    Interrupted,
    /// A state another version wrote (the record is still listed).
    #[serde(other)]
    Unknown,
}

/// Items the archive does not hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unarchived {
    /// Raw CADUs.
    pub cadus: u64,
    /// Good frames.
    pub frames: u64,
    /// Space packets.
    pub packets: u64,
}

/// The archive section of a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSection {
    /// `complete` or `incomplete`.
    pub state: ArchiveState,
    /// Failed writes by operation.
    #[serde(default)]
    pub io_errors: BTreeMap<String, u64>,
    /// What the decoder delivered but the archive does not hold.
    #[serde(default)]
    pub not_archived: Unarchived,
    /// A failed fdatasync poisoned the pass archive.
    #[serde(default)]
    pub poisoned: bool,
}

/// Link quality of a soft-symbol pass (from the decoder's inner counters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkQuality {
    /// Channel bit error rate estimated by re-encoding the Viterbi output.
    pub channel_ber: Option<f64>,
    /// Channel bits compared.
    pub channel_bits: u64,
    /// Of those, in error.
    pub channel_bit_errors: u64,
    /// The phase case locked last (`"0"`, `"90+swap"` …).
    pub phase_case: Option<String>,
    /// Phase locks.
    pub phase_locks: u64,
    /// Lock lost and found again.
    pub reacquisitions: u64,
}

/// `pass.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PassRecord {
    /// Pass id (the directory name).
    #[serde(default)]
    pub id: String,
    /// Input name.
    #[serde(default)]
    pub input: String,
    /// Spacecraft profile.
    #[serde(default)]
    pub profile: String,
    /// Spacecraft name (from the SCID of the pass's frames), `null` if no frame was decoded.
    #[serde(default)]
    pub spacecraft: Option<String>,
    /// Spacecraft id of the pass's first good frame.
    #[serde(default)]
    pub scid: Option<u16>,
    /// Acquisition of signal (RFC 3339, ms).
    #[serde(default)]
    pub aos: Option<String>,
    /// Loss of signal: the last good frame (RFC 3339, ms).
    #[serde(default)]
    pub los: Option<String>,
    /// `los - aos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// The decoder's counters: the same keys as `downlink decode --json` (`decoder::Stats`).
    #[serde(default)]
    pub counters: serde_json::Value,
    /// Soft-symbol inputs only (`null` for others).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub link_quality: Option<Option<LinkQuality>>,
    /// Datagrams dropped during the pass, by reason ([`DropReason::as_str`]; a reason another
    /// version wrote is kept under its own name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drops: Option<BTreeMap<String, u64>>,
    /// Fewer good frames than `pass.min_frames`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect: Option<bool>,
    /// Whether the archive holds everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSection>,
    /// Sum of `archive.io_errors`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_io_errors: Option<u64>,
    /// The pass plot's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plot: Option<String>,
    /// The timeline's file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<String>,
    /// Cut short by a crash; the record was rebuilt from `cadus.raw`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// When the record was rebuilt (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at: Option<String>,
    /// Where the counters come from when not from the live decoder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters_source: Option<String>,
    /// Bytes of a torn CADU trimmed from the end of `cadus.raw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_trimmed_bytes: Option<u64>,
    /// The ground station that received the pass (`[station] name`); for a merged pass, the
    /// station of the daemon that merged it. Absent in records of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// Where that station's antenna is (`[station] lat`, `lon`, `alt_m`), when configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station_location: Option<StationLocation>,
    /// A merged pass: the ids of the station passes it was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// A merged pass: what each station pass contributed (see `serve::merge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contributions: Option<serde_json::Value>,
    /// A merged pass: 1 for the first merge, bumped each time a late copy re-runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_version: Option<u64>,
    /// Keys this version does not know, kept as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// A station's antenna position.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StationLocation {
    /// Degrees north.
    pub lat: f64,
    /// Degrees east.
    pub lon: f64,
    /// Metres above the WGS-84 ellipsoid, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt_m: Option<f64>,
}

impl StationLocation {
    /// The location `[station]` configures, if any.
    pub fn of(station: &config::StationConfig) -> Option<StationLocation> {
        station.location.map(|(lat, lon)| StationLocation {
            lat,
            lon,
            alt_m: station.alt_m,
        })
    }
}

/// A key that is present (`null` included) reads as `Some`: `link_quality` is written as `null`
/// for hard-decision inputs and absent from recovered records.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// What `/api/v1/passes` lists of a pass.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PassSummary {
    /// Pass id.
    pub id: String,
    /// Input name.
    pub input: String,
    /// Spacecraft name.
    pub spacecraft: Option<String>,
    /// AOS (RFC 3339).
    pub aos: Option<String>,
    /// LOS (RFC 3339).
    pub los: Option<String>,
    /// Good frames.
    pub frames_good: Option<u64>,
    /// Packets delivered.
    pub packets: Option<u64>,
    /// Uncorrectable RS codewords.
    pub rs_uncorrectable: Option<u64>,
    /// Fewer good frames than `pass.min_frames`.
    pub suspect: Option<bool>,
    /// `complete`, `incomplete` or `interrupted`.
    pub archive: ArchiveState,
    /// The receiving station (absent in records of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
    /// A merged pass: the station passes it was made from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// Why the record is not on disk yet (pending records only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_error: Option<String>,
    /// Write attempts so far (pending records only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_tries: Option<u32>,
}

/// The LOS webhook's payload.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LosEvent<'a> {
    /// Pass id.
    pub id: &'a str,
    /// Input name.
    pub input: &'a str,
    /// Spacecraft name.
    pub spacecraft: Option<&'a str>,
    /// AOS (RFC 3339).
    pub aos: Option<&'a str>,
    /// LOS (RFC 3339).
    pub los: Option<&'a str>,
    /// Good frames.
    pub frames_good: u64,
    /// Packets delivered.
    pub packets: u64,
}

/// RFC 3339 with milliseconds, as records write times.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The AOS encoded in a pass id (`YYYYMMDDTHHMMSSZ[_N]-input`), to the second.
pub fn aos_of_id(id: &str) -> Option<SystemTime> {
    let stamp = id.get(..16)?;
    let b = stamp.as_bytes();
    if b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        stamp.get(0..4)?,
        stamp.get(4..6)?,
        stamp.get(6..8)?,
        stamp.get(9..11)?,
        stamp.get(11..13)?,
        stamp.get(13..15)?
    );
    humantime::parse_rfc3339(&text).ok()
}

/// Milliseconds since the epoch (0 before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Compact JSON (for the log line of a record no disk would take).
impl std::fmt::Display for PassRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
        f.write_str(&text)
    }
}

impl PassRecord {
    /// The AOS as a time: the record's `aos`, else the time in the pass id.
    pub fn aos_time(&self) -> Option<SystemTime> {
        self.aos
            .as_deref()
            .and_then(|a| humantime::parse_rfc3339_weak(a).ok())
            .or_else(|| aos_of_id(&self.id))
    }

    /// The sort key of `/api/v1/passes`: AOS (ms), then id.
    pub fn sort_key(&self) -> (u64, String) {
        (self.aos_time().map_or(0, unix_ms), self.id.clone())
    }

    fn counter(&self, path: &str) -> Option<u64> {
        self.counters
            .pointer(path)
            .and_then(serde_json::Value::as_u64)
    }

    /// The summary `/api/v1/passes` lists. A record without `aos` (written by an older
    /// version's crash recovery) gets the time in its pass id.
    pub fn summary(&self) -> PassSummary {
        let archive = match &self.archive {
            Some(a) => a.state,
            None if self.interrupted => ArchiveState::Interrupted,
            None => ArchiveState::Complete,
        };
        PassSummary {
            id: self.id.clone(),
            input: self.input.clone(),
            spacecraft: self.spacecraft.clone(),
            aos: self
                .aos
                .clone()
                .or_else(|| aos_of_id(&self.id).map(rfc3339)),
            los: self.los.clone(),
            frames_good: self.counter("/frames/good"),
            packets: self.counter("/packets/total"),
            rs_uncorrectable: self.counter("/rs/uncorrectable"),
            suspect: self.suspect,
            archive,
            station: self.station.clone(),
            merged_from: self.merged_from.clone(),
            record_error: None,
            record_tries: None,
        }
    }

    /// The LOS webhook's payload.
    pub fn los_event(&self) -> LosEvent<'_> {
        LosEvent {
            id: &self.id,
            input: &self.input,
            spacecraft: self.spacecraft.as_deref(),
            aos: self.aos.as_deref(),
            los: self.los.as_deref(),
            frames_good: self.counter("/frames/good").unwrap_or(0),
            packets: self.counter("/packets/total").unwrap_or(0),
        }
    }

    /// Sets `aos`, `los` and `duration_s`.
    pub fn set_times(&mut self, aos: SystemTime, los: SystemTime) {
        let los = los.max(aos);
        self.aos = Some(rfc3339(aos));
        self.los = Some(rfc3339(los));
        self.duration_s = Some(
            los.duration_since(aos)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64(),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A record as the pipeline wrote it before the typed record (keys in `json!` order).
    const OLD_RECORD: &str = r#"{
      "aos": "2026-11-22T08:30:00.125Z",
      "archive": {"io_errors": {}, "not_archived": {"cadus": 0, "frames": 0, "packets": 0},
                  "poisoned": false, "state": "complete"},
      "archive_io_errors": 0,
      "counters": {"bytes_in": 10, "frames": {"good": 7, "rejected": {"crc_failed": 1}},
                   "packets": {"total": 3, "dropped": {"partial": 2}}, "rs": {"uncorrectable": 1}},
      "drops": {"empty": 0, "kernel_overflow": 0, "not_allowed": 2, "queue_full": 0, "truncated": 0},
      "duration_s": 600.5,
      "id": "20261122T083000Z-meteor",
      "input": "meteor",
      "link_quality": null,
      "los": "2026-11-22T08:40:00.625Z",
      "plot": "plot.png",
      "profile": "meteor-m2-lrpt",
      "scid": 57,
      "spacecraft": "METEOR-M2 3",
      "suspect": false,
      "timeline": "timeline.json",
      "future_key": {"kept": true}
    }"#;

    /// A record rebuilt by an older version's crash recovery: no times, no spacecraft.
    const OLD_RECOVERED: &str = r#"{
      "id": "20261122T083000Z_2-meteor",
      "input": "meteor",
      "profile": "meteor-m2-lrpt",
      "interrupted": true,
      "recovered_at": "2026-11-22T09:00:00Z",
      "counters": {"frames": {"good": 5}},
      "counters_source": "re-decoded from cadus.raw after a crash; datagram drops unknown",
      "raw_trimmed_bytes": 17
    }"#;

    #[test]
    fn old_record_round_trips_with_the_same_keys_and_values() {
        let v: serde_json::Value = serde_json::from_str(OLD_RECORD).unwrap();
        let r: PassRecord = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(r.drops.as_ref().unwrap()["not_allowed"], 2);
        assert_eq!(r.archive.as_ref().unwrap().state, ArchiveState::Complete);
        assert_eq!(r.link_quality, Some(None));
        assert_eq!(r.extra["future_key"]["kept"], true);
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back, v, "every key and value survives a read and a write");
        let s = r.summary();
        assert_eq!(s.frames_good, Some(7));
        assert_eq!(s.packets, Some(3));
        assert_eq!(s.rs_uncorrectable, Some(1));
        assert_eq!(s.archive, ArchiveState::Complete);
        let los = serde_json::to_value(r.los_event()).unwrap();
        assert_eq!(los["aos"], "2026-11-22T08:30:00.125Z");
        assert_eq!(los["spacecraft"], "METEOR-M2 3");
        assert_eq!(los["frames_good"], 7);
    }

    #[test]
    fn old_recovered_record_reads_with_aos_from_its_id() {
        let v: serde_json::Value = serde_json::from_str(OLD_RECOVERED).unwrap();
        let r: PassRecord = serde_json::from_value(v.clone()).unwrap();
        assert!(r.interrupted);
        let back = serde_json::to_value(&r).unwrap();
        for (k, val) in v.as_object().unwrap() {
            assert_eq!(&back[k], val, "{k}");
        }
        let s = r.summary();
        assert_eq!(s.archive, ArchiveState::Interrupted);
        assert_eq!(s.aos.as_deref(), Some("2026-11-22T08:30:00.000Z"));
        assert_eq!(r.sort_key().0, 1_795_336_200_000);
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["archive"], "interrupted");
        assert!(j.get("record_error").is_none());
    }

    #[test]
    fn new_record_round_trips() {
        let aos = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_336_200_125);
        let mut r = PassRecord {
            id: "20261122T083000Z-x".into(),
            input: "x".into(),
            profile: "p".into(),
            scid: Some(57),
            spacecraft: Some("METEOR-M2 3".into()),
            counters: serde_json::json!({"frames": {"good": 1}}),
            link_quality: Some(None),
            drops: Some(
                DropReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_owned(), 0))
                    .collect(),
            ),
            suspect: Some(true),
            archive: Some(ArchiveSection {
                state: ArchiveState::Incomplete,
                io_errors: BTreeMap::from([("write".into(), 2)]),
                not_archived: Unarchived {
                    cadus: 0,
                    frames: 3,
                    packets: 1,
                },
                poisoned: true,
            }),
            archive_io_errors: Some(2),
            plot: Some("plot.png".into()),
            timeline: Some("timeline.json".into()),
            ..PassRecord::default()
        };
        r.set_times(aos, aos + Duration::from_millis(1500));
        let text = serde_json::to_string(&r).unwrap();
        let back: PassRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["los"], "2026-11-22T08:30:01.625Z");
        assert_eq!(v["duration_s"], 1.5);
        assert_eq!(v["link_quality"], serde_json::Value::Null);
        assert!(v.as_object().unwrap().contains_key("link_quality"));
        assert_eq!(v["archive"]["state"], "incomplete");
        assert_eq!(v["drops"]["kernel_overflow"], 0);
        assert!(v.get("interrupted").is_none());
        assert_eq!(
            serde_json::to_value(SyncState::Locked).unwrap(),
            serde_json::json!("locked")
        );
    }
}
