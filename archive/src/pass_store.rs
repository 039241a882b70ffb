//! Store-once pass data: each received byte is kept once, frames and packets are found through
//! compact indexes and re-extracted on demand with the ordinary decoder.
//!
//! ```text
//! cadus.raw    every synchronized CADU as received (ASM + frame, polarity corrected, before
//!              PN/RS), in order; the primary when raw CADUs are kept (archive.keep_raw_cadus)
//! frames.raw   every good non-fill frame after RS (parity removed), once, in arrival order;
//!              the primary instead of cadus.raw when raw CADUs are not kept or the input is frames
//! packets.raw  every space packet, in order; the primary of packet-stream inputs only
//! cadus.ref    a merged pass's CADUs, named in its station passes' cadus.raw instead of copied
//!              (crate::cadu_refs); when present it is the primary, read as a cadus.raw
//! frames.idx   8 bytes per good non-fill frame, in arrival order: record number in the primary
//!              (u32 LE), VCID (u8), VC frame count (low 24 bits, LE)
//! packets.idx  8 bytes per packet, in arrival order: APID (u16 LE), VCID (u8; 0xFF for a packet
//!              stream), 0 (u8), then u32 LE: the primary record of the frame that completed the
//!              packet (frame-based passes) or the packet's length (packets.raw)
//! ```
//! The frames of one VC are the primary's records named in `frames.idx`, decoded again (PN,
//! RS) when the primary is `cadus.raw`; the packets of one APID come from running the packet
//! extractor of the decoder again over the frames of the VCs that carried that APID: the
//! extractor keeps its state per VC, so the packets are byte for byte the ones the pass
//! delivered. The indexes are derivable: crash recovery rebuilds them from the primary
//! ([`rebuild`]); a reader without an index decodes the whole primary.
//!
//! Passes written before this layout (`frames/vcid-NN.bin`, `packets/apid-NNNN.pkts`) are read
//! as they are ([`StoredPass::open`] tells the layouts apart); they are not rewritten.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use decoder::{Decoder, DecoderOptions, Event, InputFormat, Profile};

use crate::cadu_refs::Primary;

/// Raw CADUs as received.
pub const CADUS: &str = "cadus.raw";
/// Good frames, once each (when CADUs are not kept).
pub const FRAMES: &str = "frames.raw";
/// Packets of a packet-stream input.
pub const PACKETS: &str = "packets.raw";
/// One 8-byte record per archived frame.
pub const FRAME_INDEX: &str = "frames.idx";
/// One 8-byte record per archived packet.
pub const PACKET_INDEX: &str = "packets.idx";
/// Bytes of one index record.
pub const RECORD: usize = 8;
const NO_VC: u8 = 0xFF;
const BUFFER: usize = 256 * 1024;
/// Most shared CADUs handed to one vectored write (the kernel's `IOV_MAX` is 1024).
const PENDING_MAX: usize = 1024;

fn other(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// One record of `frames.idx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameEntry {
    /// Record number in the primary (`cadus.raw` or `frames.raw`).
    pub record: u32,
    /// Virtual channel.
    pub vcid: u8,
    /// VC frame count, low 24 bits.
    pub vc_count: u32,
}

impl FrameEntry {
    fn encode(self) -> [u8; RECORD] {
        let r = self.record.to_le_bytes();
        let c = self.vc_count.to_le_bytes();
        [r[0], r[1], r[2], r[3], self.vcid, c[0], c[1], c[2]]
    }

    fn decode(b: [u8; RECORD]) -> Self {
        let [r0, r1, r2, r3, vcid, c0, c1, c2] = b;
        FrameEntry {
            record: u32::from_le_bytes([r0, r1, r2, r3]),
            vcid,
            vc_count: u32::from_le_bytes([c0, c1, c2, 0]),
        }
    }
}

/// One record of `packets.idx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketEntry {
    /// APID.
    pub apid: u16,
    /// Virtual channel it came on (`None`: packet-stream input, the packet is in `packets.raw`).
    pub vcid: Option<u8>,
    /// The primary record of the frame that completed it, or (packet stream) its length.
    pub value: u32,
}

impl PacketEntry {
    fn encode(self) -> [u8; RECORD] {
        let a = self.apid.to_le_bytes();
        let v = self.value.to_le_bytes();
        [
            a[0],
            a[1],
            self.vcid.unwrap_or(NO_VC),
            0,
            v[0],
            v[1],
            v[2],
            v[3],
        ]
    }

    fn decode(b: [u8; RECORD]) -> Self {
        let [a0, a1, vcid, _, v0, v1, v2, v3] = b;
        PacketEntry {
            apid: u16::from_le_bytes([a0, a1]),
            vcid: (vcid != NO_VC).then_some(vcid),
            value: u32::from_le_bytes([v0, v1, v2, v3]),
        }
    }
}

/// Reads whole index records from `path` (a torn record at the end is ignored); `None` when the
/// file does not exist.
fn read_records(path: &Path) -> std::io::Result<Option<Vec<[u8; RECORD]>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(
        bytes
            .chunks_exact(RECORD)
            .filter_map(|c| <[u8; RECORD]>::try_from(c).ok())
            .collect(),
    ))
}

/// The frame index of the pass in `dir` (`None`: there is none).
pub fn frame_index(dir: &Path) -> std::io::Result<Option<Vec<FrameEntry>>> {
    Ok(read_records(&dir.join(FRAME_INDEX))?
        .map(|r| r.into_iter().map(FrameEntry::decode).collect()))
}

/// The packet index of the pass in `dir` (`None`: there is none).
pub fn packet_index(dir: &Path) -> std::io::Result<Option<Vec<PacketEntry>>> {
    Ok(read_records(&dir.join(PACKET_INDEX))?
        .map(|r| r.into_iter().map(PacketEntry::decode).collect()))
}

/// Opens `dir/name` for appending into `slot` unless it is open already.
fn open_slot(
    dir: &Path,
    slot: &mut Option<BufWriter<File>>,
    name: &str,
    sync_list: Option<&Arc<Mutex<Vec<File>>>>,
) -> std::io::Result<()> {
    if slot.is_none() {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))?;
        if let Some(list) = sync_list {
            let clone = f.try_clone()?;
            if let Ok(mut l) = list.lock() {
                l.push(clone);
            }
        }
        *slot = Some(BufWriter::with_capacity(BUFFER, f));
    }
    Ok(())
}

fn append_to(
    dir: &Path,
    slot: &mut Option<BufWriter<File>>,
    name: &str,
    sync_list: Option<&Arc<Mutex<Vec<File>>>>,
    data: &[u8],
) -> std::io::Result<()> {
    open_slot(dir, slot, name, sync_list)?;
    match slot {
        Some(f) => f.write_all(data),
        None => Err(std::io::Error::other("file not open")),
    }
}

/// The files of one pass being written in the store-once layout. The caller flushes and syncs
/// through [`PassFiles::writers`]; every file opened is also handed to `sync_list` (the
/// background syncer of a live pass).
#[derive(Debug)]
pub struct PassFiles {
    dir: PathBuf,
    keep_raw: bool,
    cadus: Option<BufWriter<File>>,
    frames: Option<BufWriter<File>>,
    packets: Option<BufWriter<File>>,
    frame_index: Option<BufWriter<File>>,
    packet_index: Option<BufWriter<File>>,
    /// CADUs offered by [`PassFiles::cadu_shared`] and not yet handed to the file (written
    /// together by one vectored write, not copied), and their bytes.
    pending: VecDeque<Bytes>,
    pending_len: usize,
    /// CADUs in `cadus.raw`; whether the last one offered was written.
    cadu_records: u64,
    last_cadu_ok: bool,
    frame_records: u64,
    sync_list: Option<Arc<Mutex<Vec<File>>>>,
    /// A merged pass's `cadus.ref` ([`PassFiles::refer`]), and the CADUs in its own
    /// `cadus.raw` then.
    refs: Option<BufWriter<File>>,
    own_records: u64,
}

impl PassFiles {
    /// Files in `dir` (which exists). `keep_raw`: CADUs are offered ([`PassFiles::cadu`]) and
    /// `cadus.raw` is the primary; else frames go to `frames.raw`.
    pub fn new(dir: &Path, keep_raw: bool, sync_list: Option<Arc<Mutex<Vec<File>>>>) -> Self {
        PassFiles {
            dir: dir.to_owned(),
            keep_raw,
            cadus: None,
            frames: None,
            packets: None,
            frame_index: None,
            packet_index: None,
            pending: VecDeque::new(),
            pending_len: 0,
            cadu_records: 0,
            last_cadu_ok: false,
            frame_records: 0,
            sync_list,
            refs: None,
            own_records: 0,
        }
    }

    /// Makes this a pass whose CADUs are kept where they already are (a merged pass's, in its
    /// station passes): `cadus.ref` is started with `header`, each CADU is then offered by
    /// [`PassFiles::cadu_ref`] (a record of a source) or as before (its bytes, kept in this
    /// pass's own `cadus.raw`), and the indexes number the CADUs of both in order.
    pub fn refer(&mut self, header: &crate::cadu_refs::RefHeader) -> std::io::Result<()> {
        if self.refs.is_some() || self.cadu_records > 0 {
            return Err(std::io::Error::other(
                "cadus.ref is started before the first CADU, once",
            ));
        }
        append_to(
            &self.dir,
            &mut self.refs,
            crate::cadu_refs::CADU_REFS,
            self.sync_list.as_ref(),
            &header.line()?,
        )
    }

    /// Appends a reference to record `record` of source `source` of the header (a CADU of a
    /// station pass, not copied): the CADU of the frames and packets offered next.
    pub fn cadu_ref(&mut self, source: u8, record: u32) -> std::io::Result<()> {
        self.last_cadu_ok = false;
        let Some(f) = self.refs.as_mut() else {
            return Err(std::io::Error::other("cadus.ref not started"));
        };
        f.write_all(&crate::cadu_refs::encode(source, record))?;
        self.cadu_records += 1;
        self.last_cadu_ok = true;
        Ok(())
    }

    /// With `cadus.ref`: the CADU just put in this pass's own `cadus.raw` is referred to.
    fn refer_to_own(&mut self) -> std::io::Result<()> {
        if let Some(f) = self.refs.as_mut() {
            let record = u32::try_from(self.own_records)
                .map_err(|_| std::io::Error::other("pass exceeds 2^32 records"))?;
            f.write_all(&crate::cadu_refs::encode(crate::cadu_refs::OWN, record))?;
            self.own_records += 1;
        }
        Ok(())
    }

    /// Opens `cadus.raw` now (so a pass that never locks still has one).
    pub fn open_cadus(&mut self) -> std::io::Result<()> {
        open_slot(&self.dir, &mut self.cadus, CADUS, self.sync_list.as_ref())
    }

    /// Appends a raw CADU (ignored when CADUs are not kept).
    pub fn cadu(&mut self, data: &[u8]) -> std::io::Result<()> {
        if !self.keep_raw {
            return Ok(());
        }
        self.last_cadu_ok = false;
        self.write_pending()?;
        append_to(
            &self.dir,
            &mut self.cadus,
            CADUS,
            self.sync_list.as_ref(),
            data,
        )?;
        self.refer_to_own()?;
        self.cadu_records += 1;
        self.last_cadu_ok = true;
        Ok(())
    }

    /// Appends a raw CADU held in shared memory (ignored when CADUs are not kept): it is not
    /// copied into a buffer, but kept with the others until they would pass 256 KiB, then
    /// they are written by one vectored write (or at the next flush). Otherwise as
    /// [`PassFiles::cadu`]; a failed write keeps what was not written, for the next attempt,
    /// and leaves the CADU offered then not taken.
    pub fn cadu_shared(&mut self, data: Bytes) -> std::io::Result<()> {
        if !self.keep_raw {
            return Ok(());
        }
        self.last_cadu_ok = false;
        open_slot(&self.dir, &mut self.cadus, CADUS, self.sync_list.as_ref())?;
        // The ones before first, when this one would go past the batch: a failure leaves this
        // one not taken (as a buffered writer that cannot flush).
        if self.pending_len + data.len() > BUFFER || self.pending.len() >= PENDING_MAX {
            self.write_pending()?;
        }
        self.pending_len += data.len();
        self.pending.push_back(data);
        self.refer_to_own()?;
        self.cadu_records += 1;
        self.last_cadu_ok = true;
        Ok(())
    }

    /// Hands the pending shared CADUs to `cadus.raw` (through its buffered writer, which
    /// passes writes this large straight to the file, after what it buffers).
    fn write_pending(&mut self) -> std::io::Result<()> {
        while !self.pending.is_empty() {
            let Some(f) = self.cadus.as_mut() else {
                return Err(std::io::Error::other("cadus.raw not open"));
            };
            let slices: Vec<std::io::IoSlice<'_>> = self
                .pending
                .iter()
                .take(PENDING_MAX)
                .map(|b| std::io::IoSlice::new(b))
                .collect();
            let mut n = match f.write_vectored(&slices) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.pending_len -= n;
            while let Some(b) = self.pending.front_mut() {
                if n >= b.len() {
                    n -= b.len();
                    self.pending.pop_front();
                } else {
                    bytes::Buf::advance(b, n);
                    break;
                }
            }
        }
        Ok(())
    }

    /// The primary record a frame or packet arriving now belongs to.
    fn current_record(&self) -> std::io::Result<u32> {
        let r = if self.keep_raw {
            if !self.last_cadu_ok {
                return Err(std::io::Error::other(
                    "the CADU of this frame is not in cadus.raw",
                ));
            }
            self.cadu_records.saturating_sub(1)
        } else {
            self.frame_records
        };
        u32::try_from(r).map_err(|_| std::io::Error::other("pass exceeds 2^32 records"))
    }

    /// Archives a good non-fill frame of `vcid` (its CADU, when kept, was offered just before);
    /// returns the bytes written.
    pub fn frame(&mut self, vcid: u8, vc_count: u32, data: &[u8]) -> std::io::Result<usize> {
        let record = self.current_record()?;
        let mut written = RECORD;
        if !self.keep_raw {
            written += data.len();
            append_to(
                &self.dir,
                &mut self.frames,
                FRAMES,
                self.sync_list.as_ref(),
                data,
            )?;
            self.frame_records += 1;
        }
        let e = FrameEntry {
            record,
            vcid,
            vc_count: vc_count & 0x00FF_FFFF,
        };
        append_to(
            &self.dir,
            &mut self.frame_index,
            FRAME_INDEX,
            self.sync_list.as_ref(),
            &e.encode(),
        )?;
        Ok(written)
    }

    /// Archives a packet of `apid` that came on `vcid` (`None`: packet-stream input, its bytes
    /// go to `packets.raw`). A frame's packets come before the frame itself. Returns the bytes
    /// written.
    pub fn packet(&mut self, apid: u16, vcid: Option<u8>, data: &[u8]) -> std::io::Result<usize> {
        let value = match vcid {
            Some(_) => self.current_record()?,
            None => {
                let len = u32::try_from(data.len())
                    .map_err(|_| std::io::Error::other("packet longer than 2^32 bytes"))?;
                append_to(
                    &self.dir,
                    &mut self.packets,
                    PACKETS,
                    self.sync_list.as_ref(),
                    data,
                )?;
                len
            }
        };
        let e = PacketEntry { apid, vcid, value };
        append_to(
            &self.dir,
            &mut self.packet_index,
            PACKET_INDEX,
            self.sync_list.as_ref(),
            &e.encode(),
        )?;
        Ok(RECORD + vcid.map_or(data.len(), |_| 0))
    }

    /// Every open writer (data before indexes, so an index never names unwritten data once
    /// both are flushed in this order), after the pending shared CADUs are handed to theirs.
    pub fn writers(&mut self) -> std::io::Result<impl Iterator<Item = &mut BufWriter<File>>> {
        self.write_pending()?;
        Ok(self
            .cadus
            .iter_mut()
            .chain(self.refs.iter_mut())
            .chain(self.frames.iter_mut())
            .chain(self.packets.iter_mut())
            .chain(self.frame_index.iter_mut())
            .chain(self.packet_index.iter_mut()))
    }

    /// Flushes and fsyncs every file, then the directory.
    pub fn sync_all(&mut self) -> std::io::Result<()> {
        for f in self.writers()? {
            f.flush()?;
            f.get_ref().sync_all()?;
        }
        crate::sync_dir(&self.dir.join(FRAME_INDEX)).map_err(std::io::Error::other)
    }
}

/// Where a pass's data is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Store-once: the primary file and its format.
    Store(InputFormat, PathBuf),
    /// Written before the store-once layout: `frames/vcid-NN.bin` and `packets/apid-NNNN.pkts`
    /// (and maybe `cadus.raw`).
    Legacy,
    /// No data at all.
    Empty,
}

fn non_empty(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0)
}

/// The data of one archived pass, for reading.
#[derive(Clone, Debug)]
pub struct StoredPass {
    dir: PathBuf,
    layout: Layout,
}

impl StoredPass {
    /// Looks at the pass directory `dir`.
    pub fn open(dir: &Path) -> Self {
        let legacy = dir.join("frames").is_dir() || dir.join("packets").is_dir();
        let layout = if legacy {
            Layout::Legacy
        } else if non_empty(&dir.join(crate::cadu_refs::CADU_REFS)) {
            // A merged pass's CADUs, kept in its station passes (and maybe in its own
            // cadus.raw, which only part of them are then).
            Layout::Store(InputFormat::Cadu, dir.join(crate::cadu_refs::CADU_REFS))
        } else if non_empty(&dir.join(CADUS)) {
            Layout::Store(InputFormat::Cadu, dir.join(CADUS))
        } else if non_empty(&dir.join(FRAMES)) {
            Layout::Store(InputFormat::Frames, dir.join(FRAMES))
        } else if non_empty(&dir.join(PACKETS)) {
            Layout::Store(InputFormat::Packets, dir.join(PACKETS))
        } else {
            Layout::Empty
        };
        StoredPass {
            dir: dir.to_owned(),
            layout,
        }
    }

    /// Its layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// What to decode to see the whole pass again, opened: its CADUs when kept (`cadus.raw`,
    /// or a merged pass's `cadus.ref`), else the good frames (`frames.raw`, or the old per-VC
    /// files in VC order, one after the other), else the packets. `None` when the pass holds
    /// no data.
    pub fn open_whole(&self) -> std::io::Result<Option<(InputFormat, Box<dyn Read + Send>)>> {
        let (format, files) = self.whole_input();
        let mut readers: Vec<Box<dyn Read + Send>> = Vec::with_capacity(files.len());
        for f in &files {
            readers.push(Box::new(std::io::BufReader::with_capacity(
                BUFFER,
                Primary::open(f)?.reader(),
            )));
        }
        Ok(readers
            .into_iter()
            .reduce(|a, b| Box::new(a.chain(b)))
            .map(|r| (format, r)))
    }

    /// The files [`StoredPass::open_whole`] reads (a `cadus.ref` is read through the station
    /// passes it names). Empty when the pass holds no data.
    pub fn whole_input(&self) -> (InputFormat, Vec<PathBuf>) {
        match &self.layout {
            Layout::Store(format, path) => (*format, vec![path.clone()]),
            Layout::Empty => (InputFormat::Cadu, Vec::new()),
            Layout::Legacy => {
                if non_empty(&self.dir.join(CADUS)) {
                    return (InputFormat::Cadu, vec![self.dir.join(CADUS)]);
                }
                for (sub, format) in [
                    ("frames", InputFormat::Frames),
                    ("packets", InputFormat::Packets),
                ] {
                    let files = self.legacy_files(sub);
                    if !files.is_empty() {
                        return (format, files.into_values().collect());
                    }
                }
                (InputFormat::Cadu, Vec::new())
            }
        }
    }

    /// The old per-VC or per-APID files (`sub` = `frames` or `packets`) by number.
    fn legacy_files(&self, sub: &str) -> BTreeMap<u16, PathBuf> {
        let (prefix, suffix) = match sub {
            "frames" => ("vcid-", ".bin"),
            _ => ("apid-", ".pkts"),
        };
        let mut out = BTreeMap::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.join(sub)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(n) = name
                    .strip_prefix(prefix)
                    .and_then(|n| n.strip_suffix(suffix))
                    .and_then(|n| n.parse::<u16>().ok())
                {
                    if non_empty(&e.path()) {
                        out.insert(n, e.path());
                    }
                }
            }
        }
        out
    }

    /// The virtual channels with archived frames, ascending.
    pub fn vcids(&self, profile: &Profile) -> std::io::Result<Vec<u8>> {
        match &self.layout {
            Layout::Legacy => Ok(self
                .legacy_files("frames")
                .into_keys()
                .filter_map(|v| u8::try_from(v).ok())
                .collect()),
            Layout::Empty => Ok(Vec::new()),
            Layout::Store(InputFormat::Packets, _) => Ok(Vec::new()),
            Layout::Store(..) => match frame_index(&self.dir)? {
                Some(ix) => Ok(ix
                    .iter()
                    .map(|e| e.vcid)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()),
                None => Ok(self.scan(profile)?.0.into_iter().collect()),
            },
        }
    }

    /// The APIDs with archived packets, ascending.
    pub fn apids(&self, profile: &Profile) -> std::io::Result<Vec<u16>> {
        match &self.layout {
            Layout::Legacy => Ok(self.legacy_files("packets").into_keys().collect()),
            Layout::Empty => Ok(Vec::new()),
            Layout::Store(..) => match packet_index(&self.dir)? {
                Some(ix) => Ok(ix
                    .iter()
                    .map(|e| e.apid)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()),
                None => Ok(self.scan(profile)?.1.into_iter().collect()),
            },
        }
    }

    /// Without an index: the VCIDs and APIDs found by decoding the whole primary.
    fn scan(&self, profile: &Profile) -> std::io::Result<(BTreeSet<u8>, BTreeSet<u16>)> {
        let mut r = self.extract(profile, Want::All)?;
        let mut buf = vec![0u8; 64 * 1024];
        while r.read(&mut buf)? > 0 {}
        Ok((r.seen_vcids, r.seen_apids))
    }

    /// The good non-fill frames of `vcid` (after RS, parity removed), concatenated in arrival
    /// order: the bytes the old `frames/vcid-NN.bin` held.
    pub fn frames(&self, profile: &Profile, vcid: u8) -> std::io::Result<Box<dyn Read + Send>> {
        if self.layout == Layout::Legacy {
            return legacy_reader(&self.dir.join(format!("frames/vcid-{vcid:02}.bin")));
        }
        Ok(Box::new(self.extract(profile, Want::Frames(vcid))?))
    }

    /// The packets of `apid`, concatenated in arrival order: the bytes the old
    /// `packets/apid-NNNN.pkts` held.
    pub fn packets(&self, profile: &Profile, apid: u16) -> std::io::Result<Box<dyn Read + Send>> {
        if self.layout == Layout::Legacy {
            return legacy_reader(&self.dir.join(format!("packets/apid-{apid:04}.pkts")));
        }
        Ok(Box::new(self.extract(profile, Want::Packets(apid))?))
    }

    fn extract(&self, profile: &Profile, want: Want) -> std::io::Result<Extract> {
        let (format, path) = match &self.layout {
            Layout::Store(f, p) => (*f, p.clone()),
            _ => return Ok(Extract::empty(want)),
        };
        let rec_len = match format {
            InputFormat::Cadu => profile.cadu.length as u64,
            InputFormat::Frames => profile.frame_len() as u64,
            _ => 0,
        };
        let file = Primary::open(&path)?;
        if format == InputFormat::Cadu {
            file.check_record_len(rec_len)?;
        }
        let total = file.len();
        // Which spans of the primary to read, and how many frames or packets they must give.
        let mut spans: Vec<(u64, u64)> = Vec::new();
        let mut expect = None;
        let frames_ix = frame_index(&self.dir)?;
        let packets_ix = packet_index(&self.dir)?;
        match (format, want) {
            (InputFormat::Packets, Want::Packets(apid)) => {
                if let Some(ix) = &packets_ix {
                    let mut at = 0u64;
                    for e in ix {
                        let len = u64::from(e.value);
                        if e.apid == apid {
                            spans.push((at, len));
                        }
                        at += len;
                    }
                    expect = Some(spans.len() as u64);
                } else {
                    spans.push((0, total));
                }
            }
            (InputFormat::Packets, Want::Frames(_)) => {}
            (_, Want::Frames(vcid)) => {
                if let Some(ix) = &frames_ix {
                    spans = ix
                        .iter()
                        .filter(|e| e.vcid == vcid)
                        .map(|e| (u64::from(e.record) * rec_len, rec_len))
                        .collect();
                    expect = Some(spans.len() as u64);
                } else {
                    spans.push((0, total));
                }
            }
            (_, Want::Packets(apid)) => {
                if let (Some(fx), Some(px)) = (&frames_ix, &packets_ix) {
                    let vcs: BTreeSet<u8> = px
                        .iter()
                        .filter(|e| e.apid == apid)
                        .filter_map(|e| e.vcid)
                        .collect();
                    let mut records: Vec<u32> = fx
                        .iter()
                        .filter(|e| vcs.contains(&e.vcid))
                        .map(|e| e.record)
                        .collect();
                    records.sort_unstable();
                    records.dedup();
                    spans = records
                        .into_iter()
                        .map(|r| (u64::from(r) * rec_len, rec_len))
                        .collect();
                    expect = Some(px.iter().filter(|e| e.apid == apid).count() as u64);
                } else {
                    spans.push((0, total));
                }
            }
            (_, Want::All) => spans.push((0, total)),
        }
        // Frames of frames.raw are stored decoded: copied, not decoded again.
        let direct = matches!(
            (format, want),
            (InputFormat::Frames, Want::Frames(_)) | (InputFormat::Packets, Want::Packets(_))
        ) && expect.is_some();
        // CADUs are undone (PN, RS) one by one here and their frames decoded as frames.
        let undo = (format == InputFormat::Cadu)
            .then(|| Undo::new(profile))
            .transpose()?;
        let dec = if direct {
            None
        } else {
            let opts = DecoderOptions {
                raw_cadus: false,
                frames: !matches!(want, Want::Packets(_)),
                fill_frames: false,
                packets: !matches!(want, Want::Frames(_)),
            };
            let as_format = match format {
                InputFormat::Cadu => InputFormat::Frames,
                f => f,
            };
            Some(Decoder::new(profile, as_format, opts).map_err(std::io::Error::other)?)
        };
        Ok(Extract {
            undo,
            rec_len,
            file: Some(file),
            path,
            spans: spans.into(),
            dec,
            want,
            out: Vec::new(),
            taken: 0,
            expect,
            got: 0,
            done: false,
            seen_vcids: BTreeSet::new(),
            seen_apids: BTreeSet::new(),
        })
    }
}

fn legacy_reader(path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
    match File::open(path) {
        Ok(f) => Ok(Box::new(std::io::BufReader::with_capacity(BUFFER, f))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Box::new(std::io::empty())),
        Err(e) => Err(e),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Frames(u8),
    Packets(u16),
    All,
}

/// Turns an archived CADU back into its frame as the decoder did: PN removed, Reed-Solomon
/// decoded (corrections applied), parity and ASM dropped. `None`: beyond correction (such a
/// CADU never gave a frame).
struct Undo {
    asm_len: usize,
    pn: Option<decoder::pn::Derandomizer>,
    rs: Option<decoder::rs::ReedSolomon>,
}

impl Undo {
    fn new(profile: &Profile) -> std::io::Result<Self> {
        let coded = profile.coded_frame_len();
        let rs = match profile.rs_params() {
            Some(p) => Some(decoder::rs::ReedSolomon::new(p).map_err(std::io::Error::other)?),
            None => None,
        };
        Ok(Undo {
            asm_len: profile.cadu.length.saturating_sub(coded),
            pn: profile
                .cadu
                .pn
                .then(|| decoder::pn::Derandomizer::new(coded)),
            rs,
        })
    }

    fn frame_of(&self, cadu: &[u8]) -> Option<Vec<u8>> {
        let mut data = cadu.get(self.asm_len..)?.to_vec();
        if let Some(pn) = &self.pn {
            pn.apply(&mut data);
        }
        if let Some(rs) = &self.rs {
            let o = rs.decode(&mut data).ok()?;
            if o.codewords()
                .iter()
                .any(|c| matches!(c, decoder::rs::CodewordOutcome::Uncorrectable))
            {
                return None;
            }
            data.truncate(rs.data_len());
        }
        Some(data)
    }
}

/// Reads spans of the primary, decoding them again when needed, and yields the bytes wanted.
struct Extract {
    undo: Option<Undo>,
    rec_len: u64,
    file: Option<Primary>,
    path: PathBuf,
    spans: VecDeque<(u64, u64)>,
    dec: Option<Decoder>,
    want: Want,
    /// Extracted bytes not yet read; `taken` of them already handed out.
    out: Vec<u8>,
    taken: usize,
    expect: Option<u64>,
    got: u64,
    done: bool,
    seen_vcids: BTreeSet<u8>,
    seen_apids: BTreeSet<u16>,
}

impl Extract {
    fn empty(want: Want) -> Self {
        Extract {
            undo: None,
            rec_len: 0,
            file: None,
            path: PathBuf::new(),
            spans: VecDeque::new(),
            dec: None,
            want,
            out: Vec::new(),
            taken: 0,
            expect: None,
            got: 0,
            done: true,
            seen_vcids: BTreeSet::new(),
            seen_apids: BTreeSet::new(),
        }
    }

    fn drain(&mut self) -> std::io::Result<()> {
        let Some(dec) = self.dec.as_mut() else {
            return Ok(());
        };
        while let Some(ev) = dec.poll() {
            match (ev, self.want) {
                (Event::Frame(f), Want::Frames(v)) => {
                    if f.header.vcid != v && self.expect.is_some() {
                        return Err(other(format!(
                            "{}: frames.idx names a frame of VC {} that decodes as VC {}: the index does not match the data",
                            self.path.display(),
                            v,
                            f.header.vcid
                        )));
                    }
                    if f.header.vcid == v {
                        self.out.extend_from_slice(&f.data);
                        self.got += 1;
                    }
                }
                (Event::Packet { packet, .. }, Want::Packets(a)) if packet.header.apid == a => {
                    self.out.extend_from_slice(&packet.data);
                    self.got += 1;
                }
                (Event::Frame(f), Want::All) => {
                    self.seen_vcids.insert(f.header.vcid);
                }
                (Event::Packet { packet, .. }, Want::All) => {
                    self.seen_apids.insert(packet.header.apid);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads the next few spans into `out`.
    fn fill(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            self.done = true;
            return Ok(());
        };
        let mut budget = BUFFER as u64;
        while budget > 0 {
            let Some((at, len)) = self.spans.pop_front() else {
                break;
            };
            // A whole-file span is read in pieces (of whole CADUs, when CADUs are undone).
            let unit = if self.undo.is_some() {
                self.rec_len.max(1)
            } else {
                1
            };
            let take = if len <= BUFFER as u64 {
                len
            } else {
                (BUFFER as u64 / unit).max(1) * unit
            };
            if take < len {
                self.spans.push_front((at + take, len - take));
            }
            let mut buf = vec![0u8; take as usize];
            let n = file.read_at(&mut buf, at)?;
            let piece = buf.get(..n).unwrap_or_default();
            match (self.dec.as_mut(), &self.undo) {
                (Some(d), Some(u)) => {
                    for c in piece.chunks_exact(self.rec_len.max(1) as usize) {
                        if let Some(frame) = u.frame_of(c) {
                            d.push(&frame);
                        }
                    }
                }
                (Some(d), None) => d.push(piece),
                (None, _) if n as u64 == take => {
                    self.out.extend_from_slice(piece);
                    self.got += 1;
                }
                (None, _) => {}
            }
            budget = budget.saturating_sub(take);
            if (n as u64) < take {
                // The primary is shorter than a span: stop here (counted below).
                self.spans.clear();
            }
        }
        if self.spans.is_empty() {
            if let Some(d) = self.dec.as_mut() {
                d.finish();
            }
            self.file = None;
        }
        self.drain()?;
        if self.file.is_none() {
            self.done = true;
            if let Some(e) = self.expect {
                if self.got != e {
                    return Err(other(format!(
                        "{}: the index names {e} {} but the data gives {}",
                        self.path.display(),
                        match self.want {
                            Want::Packets(_) => "packets",
                            _ => "frames",
                        },
                        self.got
                    )));
                }
            }
        }
        Ok(())
    }
}

fn read_full(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match f.read(rest)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

impl Read for Extract {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.taken >= self.out.len() {
            self.out.clear();
            self.taken = 0;
            while self.out.is_empty() && !self.done {
                self.fill()?;
            }
        }
        let rest = self.out.get(self.taken..).unwrap_or_default();
        let n = buf.len().min(rest.len());
        if let (Some(d), Some(s)) = (buf.get_mut(..n), rest.get(..n)) {
            d.copy_from_slice(s);
        }
        self.taken += n;
        Ok(n)
    }
}

/// What [`rebuild`] found in the primary.
#[derive(Debug)]
pub struct Rebuilt {
    /// Counters of decoding the primary.
    pub stats: decoder::Stats,
    /// SCID of the first good frame.
    pub scid: Option<u16>,
    /// Torn bytes trimmed from the end of the primary.
    pub trimmed: u64,
}

/// Rebuilds `frames.idx` and `packets.idx` of the pass in `dir` from its primary (after a
/// crash the indexes may be shorter than the data, or missing): a torn record at the end of the
/// primary is trimmed first, then the primary is decoded and the indexes are written anew
/// (temp, fsync, rename). `None`: the pass has no store-once primary (an old-layout pass, or no
/// data).
pub fn rebuild(dir: &Path, profile: &Profile) -> std::io::Result<Option<Rebuilt>> {
    let pass = StoredPass::open(dir);
    let (format, path) = match pass.layout {
        Layout::Store(f, p) => (f, p),
        _ => return Ok(None),
    };
    let rec_len = match format {
        InputFormat::Cadu => profile.cadu.length as u64,
        InputFormat::Frames => profile.frame_len() as u64,
        _ => 1,
    };
    let primary = Primary::open(&path)?;
    primary.check_record_len(rec_len)?;
    let len = primary.len();
    // (Never for a cadus.ref, whose length is whole CADUs.)
    let mut trimmed = len % rec_len.max(1);
    if trimmed > 0 {
        OpenOptions::new()
            .write(true)
            .open(&path)?
            .set_len(len - trimmed)?;
    }
    let opts = DecoderOptions {
        raw_cadus: format == InputFormat::Cadu,
        frames: true,
        fill_frames: false,
        packets: true,
    };
    let mut dec = Decoder::new(profile, format, opts).map_err(std::io::Error::other)?;
    let mut fx = crate::AtomicFile::create(dir.join(FRAME_INDEX)).map_err(std::io::Error::other)?;
    let mut px =
        crate::AtomicFile::create(dir.join(PACKET_INDEX)).map_err(std::io::Error::other)?;
    let mut f = primary.reader();
    let mut scid = None;
    // Frames records: the record of the frame now decoding; packets come before their frame.
    let mut record: u64 = 0;
    let mut packet_bytes: u64 = 0;
    let chunk = if format == InputFormat::Frames {
        rec_len as usize
    } else {
        BUFFER
    };
    let mut buf = vec![0u8; chunk.max(1)];
    let mut finished = false;
    loop {
        if !finished {
            let n = read_full(&mut f, &mut buf)?;
            if n == 0 {
                dec.finish();
                finished = true;
            } else {
                dec.push(buf.get(..n).unwrap_or_default());
            }
        }
        while let Some(ev) = dec.poll() {
            let r = u32::try_from(record).map_err(|_| other("pass exceeds 2^32 records".into()));
            match ev {
                Event::RawCadu { stream_bit, .. } => record = stream_bit / 8 / rec_len,
                Event::Frame(fr) => {
                    scid.get_or_insert(fr.header.scid);
                    let e = FrameEntry {
                        record: r?,
                        vcid: fr.header.vcid,
                        vc_count: fr.header.vc_count & 0x00FF_FFFF,
                    };
                    fx.write_all(&e.encode()).map_err(std::io::Error::other)?;
                }
                Event::Packet { vcid, packet } => {
                    let value = match vcid {
                        Some(_) => r?,
                        None => packet.data.len() as u32,
                    };
                    packet_bytes += packet.data.len() as u64;
                    let e = PacketEntry {
                        apid: packet.header.apid,
                        vcid,
                        value,
                    };
                    px.write_all(&e.encode()).map_err(std::io::Error::other)?;
                }
                _ => {}
            }
        }
        if finished {
            break;
        }
        if format == InputFormat::Frames {
            record += 1;
        }
    }
    if format == InputFormat::Packets && packet_bytes < len - trimmed {
        // A torn packet at the end: keep only whole packets.
        trimmed += len - trimmed - packet_bytes;
        OpenOptions::new()
            .write(true)
            .open(&path)?
            .set_len(packet_bytes)?;
    }
    fx.commit().map_err(std::io::Error::other)?;
    px.commit().map_err(std::io::Error::other)?;
    Ok(Some(Rebuilt {
        stats: dec.stats(),
        scid,
        trimmed,
    }))
}
