//! Two-line element set (TLE) text parsing.
//!
//! Accepts the Celestrak "3LE" layout (a name line followed by the two element lines),
//! the bare "2LE" layout (element lines only), and any mixture of both in one text, with
//! several satellites per file. Space-Track style name lines (`0 NAME`) are accepted too;
//! blank lines and lines starting with `#` are ignored.
//!
//! Each element line is checked here first (length, leading `1`/`2`, modulo-10 checksum
//! in column 69: digits count their value, `-` counts 1, everything else 0 — NORAD TLE
//! format, see <https://celestrak.org/columns/v04n03/> "Checksum"), so errors carry the
//! 1-based line number of the offending text line. Field decoding is then delegated to
//! the `sgp4` crate (`sgp4::Elements::from_tle`), which also rejects malformed fields.
//!
//! The parser is pure: it takes `&str` and never touches the file system.

use crate::Error;

/// Length of a TLE element line, columns 1..=69.
pub const TLE_LINE_LEN: usize = 69;

/// One satellite's element set with its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct TleRecord {
    /// Name from the name line, trimmed (and without a `0 ` prefix), if there was one.
    pub name: Option<String>,
    /// NORAD catalogue number.
    pub norad_id: u64,
    /// Element line 1, exactly 69 characters.
    pub line1: String,
    /// Element line 2, exactly 69 characters.
    pub line2: String,
    /// 1-based line number of element line 1 in the parsed text.
    pub line_no: usize,
    /// Decoded mean elements (input to SGP4).
    pub elements: sgp4::Elements,
}

/// A parsed TLE file: one or more satellites.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TleSet {
    records: Vec<TleRecord>,
}

/// Modulo-10 TLE checksum over `line`'s first 68 columns (or fewer, if shorter).
///
/// Digits add their value, `-` adds 1, all other characters add 0.
pub fn checksum(line: &str) -> u8 {
    let sum: u32 = line
        .bytes()
        .take(TLE_LINE_LEN - 1)
        .map(|b| match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'-' => 1,
            _ => 0,
        })
        .sum();
    (sum % 10) as u8
}

/// Checks length and checksum of one element line (`which` = 1 or 2).
fn check_element_line(line: &str, line_no: usize, which: u8) -> Result<(), Error> {
    if !line.is_ascii() {
        return Err(Error::NonAscii { line_no });
    }
    if line.len() != TLE_LINE_LEN {
        return Err(Error::BadLength {
            line_no,
            which,
            len: line.len(),
        });
    }
    let expected = checksum(line);
    let found = line
        .as_bytes()
        .get(TLE_LINE_LEN - 1)
        .map(|&b| char::from(b))
        .unwrap_or(' ');
    if found.to_digit(10) != Some(u32::from(expected)) {
        return Err(Error::Checksum {
            line_no,
            which,
            expected,
            found,
        });
    }
    Ok(())
}

fn is_line1(line: &str) -> bool {
    line.starts_with("1 ")
}

fn is_line2(line: &str) -> bool {
    line.starts_with("2 ")
}

fn clean_name(line: &str) -> String {
    let t = line.trim();
    let t = t.strip_prefix("0 ").unwrap_or(t);
    t.trim().to_string()
}

/// Parses two element lines (already trimmed) plus an optional name into a record.
fn build_record(
    name: Option<String>,
    line1: &str,
    line1_no: usize,
    line2: &str,
    line2_no: usize,
) -> Result<TleRecord, Error> {
    check_element_line(line1, line1_no, 1)?;
    check_element_line(line2, line2_no, 2)?;
    let elements = sgp4::Elements::from_tle(name.clone(), line1.as_bytes(), line2.as_bytes())
        .map_err(|source| Error::TleFields {
            line_no: line1_no,
            source,
        })?;
    Ok(TleRecord {
        name,
        norad_id: elements.norad_id,
        line1: line1.to_string(),
        line2: line2.to_string(),
        line_no: line1_no,
        elements,
    })
}

/// Outcome of scanning a text: the good records and the per-record errors.
fn scan(text: &str) -> (Vec<TleRecord>, Vec<Error>) {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let mut pending_name: Option<String> = None;
    let mut pending_line1: Option<(usize, &str)> = None;

    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim_end();
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((l1_no, l1)) = pending_line1.take() {
            if is_line2(line) {
                match build_record(pending_name.take(), l1, l1_no, line, line_no) {
                    Ok(r) => records.push(r),
                    Err(e) => errors.push(e),
                }
                continue;
            }
            errors.push(Error::Structure {
                line_no,
                what: "expected TLE line 2 after line 1",
            });
            pending_name = None;
            // Fall through: this line may start a new record.
        }
        if is_line1(line) {
            pending_line1 = Some((line_no, line));
        } else if is_line2(line) {
            errors.push(Error::Structure {
                line_no,
                what: "TLE line 2 without a preceding line 1",
            });
            pending_name = None;
        } else {
            // A name line; a second name line in a row replaces the first.
            pending_name = Some(clean_name(line));
        }
    }
    if let Some((l1_no, _)) = pending_line1 {
        errors.push(Error::Structure {
            line_no: l1_no,
            what: "TLE line 1 at end of input without line 2",
        });
    }
    (records, errors)
}

impl TleSet {
    /// Strict parse: any malformed record fails the whole text (first error returned).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (records, errors) = scan(text);
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        if records.is_empty() {
            return Err(Error::NoTle);
        }
        Ok(Self { records })
    }

    /// Lenient parse: keeps every valid record and returns the errors of the others.
    pub fn parse_lenient(text: &str) -> (Self, Vec<Error>) {
        let (records, errors) = scan(text);
        (Self { records }, errors)
    }

    /// All records in input order.
    pub fn records(&self) -> &[TleRecord] {
        &self.records
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record was parsed.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// First record with this NORAD catalogue number.
    pub fn by_norad_id(&self, norad_id: u64) -> Option<&TleRecord> {
        self.records.iter().find(|r| r.norad_id == norad_id)
    }

    /// First record whose name equals `name`, ignoring ASCII case and surrounding whitespace.
    pub fn by_name(&self, name: &str) -> Option<&TleRecord> {
        let wanted = name.trim();
        self.records.iter().find(|r| {
            r.name
                .as_deref()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(wanted))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const ISS: &str = "ISS (ZARYA)\n\
1 25544U 98067A   08264.51782528 -.00002182  00000-0 -11606-4 0  2927\n\
2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537\n";

    const METEOR: &str = "1 40069U 14037A   22354.17984696  .00000025  00000-0  30713-4 0  9995\n\
2 40069  98.4263   3.4594 0006385 134.9433 225.2271 14.20730497438235\n";

    #[test]
    fn checksum_known_lines() {
        assert_eq!(
            checksum("1 25544U 98067A   08264.51782528 -.00002182  00000-0 -11606-4 0  2927"),
            7
        );
        assert_eq!(
            checksum("2 25544  51.6416 247.4627 0006703 130.5360 325.0288 15.72125391563537"),
            7
        );
    }

    #[test]
    fn parses_mixed_3le_and_2le() {
        let text = format!("{ISS}\n{METEOR}");
        let set = TleSet::parse(&text).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.records()[0].name.as_deref(), Some("ISS (ZARYA)"));
        assert_eq!(set.records()[0].line_no, 2);
        assert_eq!(set.records()[1].name, None);
        assert_eq!(set.records()[1].norad_id, 40069);
        assert_eq!(set.by_norad_id(25544).unwrap().elements.norad_id, 25544);
        assert_eq!(set.by_name("  iss (zarya) ").unwrap().norad_id, 25544);
        assert!(set.by_name("METEOR-M 2").is_none());
        assert!(set.by_norad_id(1).is_none());
        let inc = set.by_norad_id(40069).unwrap().elements.inclination;
        assert!((inc - 98.4263).abs() < 1e-12);
    }

    #[test]
    fn space_track_zero_prefix_and_crlf() {
        let text = ISS
            .replace("ISS (ZARYA)", "0 ISS (ZARYA)")
            .replace('\n', "\r\n");
        let set = TleSet::parse(&text).unwrap();
        assert_eq!(set.records()[0].name.as_deref(), Some("ISS (ZARYA)"));
    }

    #[test]
    fn checksum_error_reports_line_number() {
        // Corrupt the checksum of line 2 of the second record (text line 5).
        let bad = METEOR.replace("14.20730497438235", "14.20730497438236");
        let text = format!("{ISS}{bad}");
        let err = TleSet::parse(&text).unwrap_err();
        assert_eq!(
            err,
            Error::Checksum {
                line_no: 5,
                which: 2,
                expected: 5,
                found: '6'
            }
        );
        let (set, errors) = TleSet::parse_lenient(&text);
        assert_eq!(set.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(err.to_string().starts_with("line 5:"));
    }

    #[test]
    fn structural_errors() {
        let only1 = "1 40069U 14037A   22354.17984696  .00000025  00000-0  30713-4 0  9995\n";
        assert!(matches!(
            TleSet::parse(only1),
            Err(Error::Structure { line_no: 1, .. })
        ));
        let only2 = "2 40069  98.4263   3.4594 0006385 134.9433 225.2271 14.20730497438235\n";
        assert!(matches!(
            TleSet::parse(only2),
            Err(Error::Structure { line_no: 1, .. })
        ));
        assert_eq!(TleSet::parse("\n# nothing\n"), Err(Error::NoTle));
        let short = "X\n1 40069U 14037A\n2 40069  98.4263\n";
        assert!(matches!(
            TleSet::parse(short),
            Err(Error::BadLength {
                line_no: 2,
                which: 1,
                len: 15
            })
        ));
    }

    #[test]
    fn field_error_is_wrapped_with_line_number() {
        // Valid checksum but a letter in the inclination field.
        let mut l2 =
            String::from("2 40069  98.4X63   3.4594 0006385 134.9433 225.2271 14.20730497438235");
        l2.truncate(68);
        let c = checksum(&l2);
        l2.push(char::from(b'0' + c));
        let text = format!(
            "1 40069U 14037A   22354.17984696  .00000025  00000-0  30713-4 0  9995\n{l2}\n"
        );
        assert!(matches!(
            TleSet::parse(&text),
            Err(Error::TleFields { line_no: 1, .. })
        ));
    }
}
