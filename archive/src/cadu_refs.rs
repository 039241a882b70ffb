//! A merged pass's CADUs kept once: `cadus.ref` names, for each CADU of the merged pass, the
//! station pass whose `cadus.raw` holds it and its record there, instead of a second copy of
//! the bytes. The merged pass's primary is then read as if it were a `cadus.raw` of its own
//! ([`Primary`]): the frame and packet indexes number its records the same way.
//!
//! ```text
//! cadus.ref   one line of JSON (the header, below), then 8 bytes per CADU of the merged pass,
//!             in order: source (u8: the index into the header's sources; 0xFF: this pass's own
//!             cadus.raw), 3 zero bytes, the record number in that file (u32 LE)
//! ```
//! The header: `{"format": "downlink-cadu-refs/1", "cadu_length": N, "sources": [{"pass":
//! ID, "dir": PATH, "bytes": LEN, "crc32": C}, …]}`. A source is looked for at `dir`, where
//! the merge read it, then beside the merged pass (`../ID`, so an archive moved whole still
//! reads); its `cadus.raw` must be `bytes` long and its first and last CADUs must have the
//! CRC-32 `crc32` ([`fingerprint`]), as when the merge read it, or the pass is not read (an
//! error naming the source, never other bytes). CADUs a merge could not take as a
//! record of a source (a damaged copy, synchronized again) are in the pass's own `cadus.raw`.

use std::fs::File;
use std::io::{BufRead, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The references to the CADUs of a merged pass.
pub const CADU_REFS: &str = "cadus.ref";
/// The header's `format`.
pub const FORMAT: &str = "downlink-cadu-refs/1";
/// The source of a CADU kept in the pass's own `cadus.raw`.
pub const OWN: u8 = 0xFF;
/// Bytes of one reference.
pub const REF: usize = 8;
/// Longest header accepted.
const HEADER_MAX: u64 = 1 << 20;

/// A station pass whose `cadus.raw` a merged pass refers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefSource {
    /// Its pass id (its directory's name).
    pub pass: String,
    /// Its directory when the merge read it.
    pub dir: PathBuf,
    /// The length of its `cadus.raw` then.
    pub bytes: u64,
    /// [`fingerprint`] of its `cadus.raw` then.
    pub crc32: u32,
}

/// CRC-32 (ISO-HDLC) of the first and the last `cadu_length` bytes of a `cadus.raw` that is
/// `bytes` long: what tells a station pass's `cadus.raw` from another one of the same length.
pub fn fingerprint(file: &File, bytes: u64, cadu_length: u64) -> std::io::Result<u32> {
    const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    let mut digest = CRC.digest();
    let n = cadu_length.min(bytes);
    for at in [0, bytes - n] {
        let mut buf = vec![0u8; n as usize];
        let got = read_full_at(file, &mut buf, at)?;
        digest.update(buf.get(..got).unwrap_or_default());
    }
    Ok(digest.finalize())
}

/// The first line of `cadus.ref`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefHeader {
    /// [`FORMAT`].
    pub format: String,
    /// Bytes of one CADU (ASM included).
    pub cadu_length: usize,
    /// The passes referred to; a reference's source is an index into these.
    pub sources: Vec<RefSource>,
}

impl RefHeader {
    /// The header line (JSON, then a newline).
    pub fn line(&self) -> std::io::Result<Vec<u8>> {
        let mut v = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        v.push(b'\n');
        Ok(v)
    }
}

/// One reference.
pub fn encode(source: u8, record: u32) -> [u8; REF] {
    let r = record.to_le_bytes();
    [source, 0, 0, 0, r[0], r[1], r[2], r[3]]
}

fn decode(b: &[u8]) -> (u8, u32) {
    let byte = |i: usize| b.get(i).copied().unwrap_or(0);
    (
        byte(0),
        u32::from_le_bytes([byte(4), byte(5), byte(6), byte(7)]),
    )
}

fn bad(path: &Path, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// The CADUs of a pass for reading at any offset: its `cadus.raw` (or `frames.raw`,
/// `packets.raw`), or the CADUs a `cadus.ref` names.
#[derive(Debug)]
pub struct Primary {
    kind: Kind,
    len: u64,
}

#[derive(Debug)]
enum Kind {
    File(File),
    Refs(Refs),
}

#[derive(Debug)]
struct Refs {
    path: PathBuf,
    file: File,
    /// Where the references start (after the header).
    start: u64,
    rec_len: u64,
    /// The sources' `cadus.raw`, in the header's order.
    sources: Vec<File>,
    names: Vec<String>,
    /// The pass's own `cadus.raw` (CADUs not taken from a source).
    own: Option<File>,
}

impl Primary {
    /// Opens the primary at `path`: a `cadus.ref` (by its name) is resolved, anything else is
    /// read as it is.
    pub fn open(path: &Path) -> std::io::Result<Primary> {
        if path.file_name().and_then(|n| n.to_str()) != Some(CADU_REFS) {
            let file = File::open(path)?;
            let len = file.metadata()?.len();
            return Ok(Primary {
                kind: Kind::File(file),
                len,
            });
        }
        let file = File::open(path)?;
        let total = file.metadata()?.len();
        let mut line = Vec::new();
        std::io::BufReader::new((&file).take(HEADER_MAX)).read_until(b'\n', &mut line)?;
        if line.last() != Some(&b'\n') {
            return Err(bad(path, "no header line"));
        }
        let header: RefHeader =
            serde_json::from_slice(&line).map_err(|e| bad(path, &format!("header: {e}")))?;
        if header.format != FORMAT {
            return Err(bad(
                path,
                &format!("format {:?}, not {FORMAT:?}", header.format),
            ));
        }
        if header.cadu_length == 0 {
            return Err(bad(path, "cadu_length 0"));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut sources = Vec::with_capacity(header.sources.len());
        for s in &header.sources {
            sources.push(open_source(path, dir, s, header.cadu_length as u64)?);
        }
        let own = match File::open(dir.join(crate::pass_store::CADUS)) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let start = line.len() as u64;
        let rec_len = header.cadu_length as u64;
        let refs = total.saturating_sub(start) / REF as u64;
        Ok(Primary {
            kind: Kind::Refs(Refs {
                path: path.to_owned(),
                file,
                start,
                rec_len,
                sources,
                names: header.sources.into_iter().map(|s| s.pass).collect(),
                own,
            }),
            len: refs * rec_len,
        })
    }

    /// Its length in bytes (a `cadus.ref`: CADUs named × their length).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks that its records are `rec_len` bytes long, as the profile reading it says (a
    /// `cadus.ref` names its CADUs' length).
    pub fn check_record_len(&self, rec_len: u64) -> std::io::Result<()> {
        match &self.kind {
            Kind::Refs(r) if r.rec_len != rec_len => Err(bad(
                &r.path,
                &format!(
                    "its CADUs are {} bytes long, not the profile's {rec_len}",
                    r.rec_len
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Reads from `at` until `buf` is full or the primary ends; the bytes read. A reference
    /// to a record its source does not hold is an error.
    pub fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
        match &self.kind {
            Kind::File(f) => read_full_at(f, buf, at),
            Kind::Refs(r) => {
                let want = (buf.len() as u64).min(self.len.saturating_sub(at)) as usize;
                let buf = buf.get_mut(..want).unwrap_or_default();
                r.read_at(buf, at)?;
                Ok(want)
            }
        }
    }

    /// A reader of the whole primary from its start.
    pub fn reader(self) -> PrimaryReader {
        PrimaryReader { p: self, at: 0 }
    }
}

fn open_source(path: &Path, dir: &Path, s: &RefSource, cadu_length: u64) -> std::io::Result<File> {
    let beside = dir.parent().map(|p| p.join(&s.pass));
    let mut tried = Vec::new();
    for d in std::iter::once(&s.dir).chain(beside.iter()) {
        let raw = d.join(crate::pass_store::CADUS);
        match File::open(&raw) {
            Ok(f) => {
                let len = f.metadata()?.len();
                if len != s.bytes {
                    tried.push(format!(
                        "{} is {len} bytes, not the {} the merge read",
                        raw.display(),
                        s.bytes
                    ));
                } else if fingerprint(&f, len, cadu_length)? != s.crc32 {
                    tried.push(format!(
                        "{} is not the one the merge read (its first and last CADUs differ)",
                        raw.display()
                    ));
                } else {
                    return Ok(f);
                }
            }
            Err(e) => tried.push(format!("{}: {e}", raw.display())),
        }
    }
    Err(bad(
        path,
        &format!(
            "the CADUs of station pass {} cannot be read ({})",
            s.pass,
            tried.join("; ")
        ),
    ))
}

fn read_full_at(f: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match f.read_at(rest, at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Refs {
    /// Fills `buf` (within the primary) from `at`.
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let first = at / self.rec_len;
        let last = (at + buf.len() as u64 - 1) / self.rec_len;
        let count = (last - first + 1) as usize;
        let mut refs = vec![0u8; count * REF];
        let got = read_full_at(&self.file, &mut refs, self.start + first * REF as u64)?;
        if got < refs.len() {
            return Err(bad(&self.path, "references end early"));
        }
        // Runs of consecutive records of one file are read at once.
        let mut filled = 0usize;
        let mut k = 0usize;
        while k < count {
            let (src, rec) = decode(refs.get(k * REF..).unwrap_or_default());
            let mut run = 1usize;
            while k + run < count {
                let (s2, r2) = decode(refs.get((k + run) * REF..).unwrap_or_default());
                if s2 != src || u64::from(r2) != u64::from(rec) + run as u64 {
                    break;
                }
                run += 1;
            }
            // The part of this run inside [at, at + buf.len()).
            let run_start = (first + k as u64) * self.rec_len;
            let from = at.max(run_start) - run_start;
            let len = ((run as u64 * self.rec_len) - from).min((buf.len() - filled) as u64);
            let file = if src == OWN {
                self.own.as_ref()
            } else {
                self.sources.get(usize::from(src))
            }
            .ok_or_else(|| {
                bad(
                    &self.path,
                    &format!(
                        "record {} refers to source {src}, which it does not list",
                        first + k as u64
                    ),
                )
            })?;
            let dst = buf
                .get_mut(filled..filled + len as usize)
                .unwrap_or_default();
            let n = read_full_at(file, dst, u64::from(rec) * self.rec_len + from)?;
            if n < dst.len() {
                let name = if src == OWN {
                    "its own cadus.raw".to_owned()
                } else {
                    format!(
                        "station pass {}",
                        self.names.get(usize::from(src)).map_or("?", String::as_str)
                    )
                };
                return Err(bad(
                    &self.path,
                    &format!("record {rec} of {name} is beyond its end"),
                ));
            }
            filled += len as usize;
            k += run;
        }
        Ok(())
    }
}

/// The whole primary, read in order.
#[derive(Debug)]
pub struct PrimaryReader {
    p: Primary,
    at: u64,
}

impl Read for PrimaryReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.p.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}
