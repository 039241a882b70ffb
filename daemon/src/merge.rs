//! Merging archived copies of one pass (two antennas, two stations) into one better pass: the
//! IO shell around [`decoder::merge::Merger`]. `downlink merge` and the daemon's merge after LOS
//! both run [`merge_passes`].
//!
//! What is read: each station pass's `cadus.raw` (the CADUs as received) when every pass has
//! one, so each copy's Reed-Solomon outcome is known and the best copy is chosen per frame;
//! else each pass's good frames of each virtual channel (after RS, read through
//! [`archive::pass_store::StoredPass::frames`]), merged virtual channel by virtual channel.
//! Each copy is read by a fetcher on a thread of its own, which hands whole reads to the merge
//! over a bounded channel; the copies are decoded by the ordinary decoder (frames only) in the
//! merge's thread; from `cadus.raw` the merged frames go on in batches to a thread of the final
//! decode, and what it makes of them to a thread writing the files: nothing holds a whole pass,
//! and the reading, the merge, the final decode and the writing run in parallel.
//! `cadus.raw` is read 64 CADUs at a time into buffers that are reused, and the fetcher checks
//! each CADU for Reed-Solomon errors as read, still randomized ([`RecordCheck`]); its CADUs,
//! whole and back to back as the archive wrote them, go into the copy's decoder as records
//! ([`Decoder::push_record_checked`]: a clean one is not checked again, nor is one that is
//! not, before it is decoded): neither buffered nor copied by the synchronizer, the raw CADU
//! handed on is a slice of the read, and a clean one's frame is not even copied out
//! ([`Decoder::without_frame_data`]): copies are compared as randomized on the link. A CADU that is not a record (a damaged or foreign file)
//! is synchronized as any input is, with everything after it. Each copy of a frame is checked
//! once: the final decode takes the chosen ones as records too, without frame data: a clean
//! one is read through the PN sequence, only its head and its packets' headers derandomized;
//! a corrected one comes with the frame and outcome its copy's decoder gave
//! ([`Decoder::push_record_decoded`]).
//!
//! What is written: a pass directory like any other in the store-once layout: the chosen
//! CADUs are not copied but named in `cadus.ref` ([`archive::cadu_refs`]: which station pass,
//! which record of its `cadus.raw`; a CADU that was not read as a record of its copy, and every
//! CADU with [`MergeSpec::refer`] off, goes into the merged pass's own `cadus.raw`), or, from
//! archived frames, `frames.raw` of the merged frames in VC order; then `frames.idx`,
//! `packets.idx`, `pass.json`, whose counters come from decoding the
//! merged frame sequence with the ordinary decoder (so packets broken in one copy and whole in
//! the other come out whole), with `merged_from` and `contributions`. It is written into a
//! staging directory and published by renames ([`publish`]).

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::SystemTime;

use crate::error::{Context, Error, Result};
use bytes::Bytes;
use decoder::merge::{FrameCopy, MergeStats, Merger, Quality, DEFAULT_REORDER, DEFAULT_WINDOW};
use decoder::rs::BlockOutcome;
use decoder::{DecodedCadu, Decoder, DecoderOptions, Event, InputFormat, Profile, RecordCheck};

use archive::record::{rfc3339, ArchiveSection, ArchiveState, PassRecord, Unarchived};

/// The input name of merged passes (their ids end in `-merged`).
pub const MERGED_INPUT: &str = "merged";

/// The `rejected` key of a copy's fill frames (not merged, not an error).
const FILL: &str = "fill_not_merged";

/// Read size of a station copy's archived frames (`frames/`): as a read of `cadus.raw`, so that
/// a copy's reads in flight stay a few MiB.
const READ: usize = 64 * 1024;

/// Merged frames the merge hands to the final decode at once, and batches it may run ahead of
/// it. Each hand-over may wake a thread: large batches keep them few.
const BATCH: usize = 1024;
const BATCHES_AHEAD: usize = 4;

/// One station pass to merge.
#[derive(Clone, Debug)]
pub struct StationPass {
    /// Its directory.
    pub dir: PathBuf,
    /// Its record.
    pub record: PassRecord,
}

impl StationPass {
    /// Reads `dir/pass.json`.
    pub fn open(dir: &Path) -> Result<StationPass> {
        let path = dir.join("pass.json");
        let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let record: PassRecord =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(StationPass {
            dir: dir.to_owned(),
            record,
        })
    }

    /// Its CADUs, when it kept them: `cadus.raw`, or (a merged pass) the `cadus.ref` naming
    /// them (what the archive reads the pass from).
    fn raw(&self) -> Option<PathBuf> {
        match archive::pass_store::StoredPass::open(&self.dir).whole_input() {
            (InputFormat::Cadu, files) => files.into_iter().next(),
            _ => None,
        }
    }

    fn has_raw(&self) -> bool {
        self.raw().is_some()
    }

    /// Whether a merged pass can refer to its CADUs instead of copying them: they are in a
    /// `cadus.raw` of its own (not themselves references).
    fn referable(&self) -> bool {
        self.raw().is_some_and(|p| {
            p.file_name() == Some(std::ffi::OsStr::new(archive::pass_store::CADUS))
        })
    }

    /// The label of its contributions: `station/input` (the pass id when that repeats).
    fn label(&self) -> String {
        match &self.record.station {
            Some(s) => format!("{s}/{}", self.record.input),
            None => self.record.input.clone(),
        }
    }
}

/// What the merge keeps of a copy of a frame: its bytes as read, and what the copies of a
/// frame are compared by ([`Payload::as_ref`]). Small (it moves through the merge's queues
/// and channels with every frame): what only a few frames have is boxed.
#[derive(Clone, Debug)]
struct Payload {
    /// The raw CADU, or the frame itself when reading `frames/`.
    bytes: Bytes,
    /// The bytes of `bytes` the copies are compared by, unless `decoded`: of a raw CADU, its
    /// frame as randomized on the link (after the marker, less the parity: [`Link`]); of a
    /// frame read from `frames/`, all of it.
    compared: std::ops::Range<u32>,
    /// Raw CADUs: the frame as the reader's decoder kept it (a corrected frame, one
    /// synchronized from pushed bytes, a link without RS); `None` for a record that arrived
    /// clean, whose frame is its CADU derandomized ([`Decoder::without_frame_data`]).
    decoded: Option<Box<Decoded>>,
    /// The raw CADU is this record of the copy's `cadus.raw` (read as a record, byte for byte
    /// the file's, and the copy may be referred to).
    record: Option<u32>,
}

/// A frame of a raw CADU that the reader's decoder kept: after RS, with its outcome, and as
/// randomized on the link (what it is compared by).
#[derive(Clone, Debug)]
struct Decoded {
    frame: Bytes,
    rs: Option<BlockOutcome>,
    randomized: Bytes,
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        match &self.decoded {
            Some(d) => &d.randomized,
            None => {
                let (from, to) = (self.compared.start as usize, self.compared.end as usize);
                self.bytes.get(from..to).unwrap_or_default()
            }
        }
    }
}

type CopyFrame = FrameCopy<Payload>;

/// CADUs a copy's reader of `cadus.raw` reads at once (one read, one buffer: its CADUs are
/// handed on without a copy, and the buffer goes back to the reader's pool when the last of
/// them is dropped; as many CADUs as the decoder carves frames from one block).
const RECORDS_PER_READ: usize = 64;

/// Read buffers a copy's reader keeps for reuse (beyond these, returned buffers are freed).
const POOLED: usize = 1024;

/// The read buffers of a copy's reader of `cadus.raw`, reused instead of allocated (and
/// faulted in) again for every read.
#[derive(Default)]
struct Pool(std::sync::Mutex<Vec<Vec<u8>>>);

impl Pool {
    fn take(&self, len: usize) -> Vec<u8> {
        let mut v = self
            .0
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_default();
        v.resize(len, 0);
        v
    }
}

/// One read of `cadus.raw`, owned by the [`Bytes`] of its CADUs; back to its pool on drop.
struct ReadBuf {
    buf: Vec<u8>,
    pool: std::sync::Arc<Pool>,
}

impl AsRef<[u8]> for ReadBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if let Ok(mut p) = self.pool.0.lock() {
            if p.len() < POOLED {
                p.push(buf);
            }
        }
    }
}

/// Where a frame stands in its raw CADU, and the PN sequence it was randomized with on the
/// link: the copies of a frame read from raw CADUs are compared as randomized (the frame after
/// RS, XORed with the sequence), so that a frame that arrived clean is compared as it was
/// read, a slice of its CADU, without derandomizing it (XOR with the same sequence keeps
/// equal frames equal and different ones different).
struct Link {
    frame: std::ops::Range<usize>,
    pn: Option<decoder::pn::Derandomizer>,
}

impl Link {
    fn new(profile: &Profile) -> Link {
        let asm = profile.asm_len();
        Link {
            frame: asm..asm + profile.frame_len(),
            pn: profile
                .cadu
                .pn
                .then(|| decoder::pn::Derandomizer::new(profile.coded_frame_len())),
        }
    }

    /// A frame after RS as randomized on the link.
    fn randomized(&self, frame: &[u8]) -> Bytes {
        let mut out = frame.to_vec();
        if let Some(pn) = &self.pn {
            pn.apply(&mut out);
        }
        Bytes::from(out)
    }

    /// Where the frame of a record that arrived clean, as randomized on the link, stands in
    /// its CADU `raw`.
    fn of_clean(&self, raw: &[u8]) -> Option<std::ops::Range<u32>> {
        let from = u32::try_from(self.frame.start).ok()?;
        let to = u32::try_from(self.frame.end).ok()?;
        (self.frame.end <= raw.len()).then_some(from..to)
    }
}

/// What a copy's fetcher read: whole CADUs of `cadus.raw` (one read), with a bit per CADU that
/// arrived Reed-Solomon-clean (bit k: the k-th), or bytes to push as they come.
enum Fetched {
    Records { read: Bytes, clean: u64 },
    Bytes(Bytes),
}

/// What a copy's fetcher hands to the merge: reads, then the end of the file or the error
/// that stopped it.
enum Feed {
    Reads(Vec<Fetched>),
    End,
    Failed(Error),
}

/// Reads a fetcher hands over at once (of `cadus.raw`: 1,024 CADUs), and how many it may run
/// ahead of the merge.
const READS_PER_FEED: usize = 16;
const FEEDS_AHEAD: usize = 4;

/// A copy's fetcher: reads its file, and checks each CADU of `cadus.raw` for Reed-Solomon
/// errors as read ([`RecordCheck`]), on a thread of its own; the copy's decoder, in the merge,
/// takes what it fetched.
struct Fetcher {
    file: Box<dyn Read + Send>,
    /// Its reads' buffers.
    pool: std::sync::Arc<Pool>,
    /// `cadus.raw`: the CADU length, and the check (none on a link without RS).
    records: Option<(usize, Option<RecordCheck>)>,
}

// A read's clean CADUs are the bits of a u64.
const _: () = assert!(RECORDS_PER_READ <= 64);

impl Fetcher {
    fn fetch(&mut self) -> Result<Option<Fetched>> {
        let pool = &self.pool;
        let Some((len, check)) = &self.records else {
            let mut buf = pool.take(READ);
            let n = self.file.read(&mut buf)?;
            buf.truncate(n);
            let read = Bytes::from_owner(ReadBuf {
                buf,
                pool: pool.clone(),
            });
            return Ok((n > 0).then_some(Fetched::Bytes(read)));
        };
        let mut buf = pool.take(len * RECORDS_PER_READ);
        let n = crate::replay::read_full(self.file.as_mut(), &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        let mut clean = 0u64;
        if let Some(check) = check {
            for (k, cadu) in buf.chunks_exact(*len).enumerate().take(64) {
                if check.is_clean(cadu) {
                    clean |= 1 << k;
                }
            }
        }
        let read = Bytes::from_owner(ReadBuf {
            buf,
            pool: pool.clone(),
        });
        Ok(Some(Fetched::Records { read, clean }))
    }

    /// Fetches the file to its end, in feeds; stops early when the merge hangs up.
    fn run(mut self, tx: &std::sync::mpsc::SyncSender<Feed>) {
        let mut reads = Vec::with_capacity(READS_PER_FEED);
        loop {
            match self.fetch() {
                Ok(Some(f)) => {
                    reads.push(f);
                    if reads.len() == READS_PER_FEED {
                        let full =
                            std::mem::replace(&mut reads, Vec::with_capacity(READS_PER_FEED));
                        if tx.send(Feed::Reads(full)).is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => {
                    if !reads.is_empty() && tx.send(Feed::Reads(reads)).is_err() {
                        return;
                    }
                    let _ = tx.send(Feed::End);
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Feed::Failed(e));
                    return;
                }
            }
        }
    }
}

/// One station copy, decoded lazily into frames from what its [`Fetcher`] read.
struct Source {
    /// Its file, until [`drive`] hands it to the copy's fetcher.
    fetcher: Option<Fetcher>,
    feed: Option<Receiver<Feed>>,
    fetched: std::vec::IntoIter<Fetched>,
    /// The fetcher reached the end of the file.
    ended: bool,
    /// Everything fetched was decoded.
    finished: bool,
    dec: Decoder,
    /// The raw CADU of the frame to come, and its record in the copy's `cadus.raw`.
    raw: Option<(Bytes, Option<u32>)>,
    queue: VecDeque<CopyFrame>,
    bytes: u64,
    /// `cadus.raw`: the CADU length. Its CADUs are taken as records
    /// ([`Decoder::push_record_checked`] with what the fetcher found) until the first that is
    /// not one; from there everything is pushed and synchronized.
    records: Option<usize>,
    pushing: bool,
    /// CADUs taken as records (the first ones of the file, in order), when the merged pass
    /// may refer to them.
    taken: u64,
    referable: bool,
    /// Raw CADUs: how their frames are compared.
    link: Option<Link>,
}

/// A copy's counters once it is read to the end.
struct SourceEnd {
    stats: decoder::Stats,
    bytes: u64,
}

impl Source {
    fn new(profile: &Profile, format: InputFormat, file: Box<dyn Read + Send>) -> Result<Source> {
        Source::with_records(profile, format, file, false)
    }

    /// As [`Source::new`]; `referable`: the copy is a `cadus.raw` the merged pass may refer
    /// to, so the CADUs read as its records are marked with their record numbers.
    fn with_records(
        profile: &Profile,
        format: InputFormat,
        file: Box<dyn Read + Send>,
        referable: bool,
    ) -> Result<Source> {
        let opts = DecoderOptions {
            raw_cadus: format == InputFormat::Cadu,
            frames: true,
            // Fill (idle) frames carry nothing and their counters often do not run: not merged.
            fill_frames: false,
            packets: false,
        };
        let cadu = format == InputFormat::Cadu;
        // A record that arrives clean is checked as read and its frame not copied out: it is
        // compared as a slice of its CADU (the final decode reads the chosen ones through the
        // PN sequence).
        let dec = Decoder::new(profile, format, opts)?;
        let len = profile.cadu.length.max(1);
        let records = match cadu {
            true => Some((len, RecordCheck::new(profile)?)),
            false => None,
        };
        Ok(Source {
            fetcher: Some(Fetcher {
                file,
                pool: Default::default(),
                records,
            }),
            feed: None,
            fetched: Vec::new().into_iter(),
            ended: false,
            finished: false,
            dec: if cadu { dec.without_frame_data() } else { dec },
            raw: None,
            queue: VecDeque::new(),
            bytes: 0,
            records: cadu.then_some(len),
            pushing: false,
            taken: 0,
            referable: referable && cadu,
            link: cadu.then(|| Link::new(profile)),
        })
    }

    /// The next read the fetcher made; `None` at the end of the file.
    fn next_fetched(&mut self) -> Result<Option<Fetched>> {
        loop {
            if let Some(f) = self.fetched.next() {
                return Ok(Some(f));
            }
            if self.ended {
                return Ok(None);
            }
            let Some(rx) = &self.feed else {
                return Err(Error::Merge(
                    "a station copy is read without its fetcher".into(),
                ));
            };
            match rx.recv() {
                Ok(Feed::Reads(r)) => self.fetched = r.into_iter(),
                Ok(Feed::End) => self.ended = true,
                Ok(Feed::Failed(e)) => return Err(e),
                Err(_) => {
                    return Err(Error::Merge(
                        "the reader of a station copy stopped without a word".into(),
                    ))
                }
            }
        }
    }

    /// Takes the next read: whole CADUs of `cadus.raw`, each taken as a record (no copy, and
    /// not checked again when the fetcher found it clean) until one is not; anything else (and
    /// what follows a CADU that is not a record) is pushed. False at the end of the file.
    fn read_more(&mut self) -> Result<bool> {
        let Some(fetched) = self.next_fetched()? else {
            return Ok(false);
        };
        let (read, clean) = match fetched {
            Fetched::Bytes(b) => {
                self.bytes += b.len() as u64;
                self.dec.push(&b);
                return Ok(true);
            }
            Fetched::Records { read, clean } => (read, clean),
        };
        let n = read.len();
        self.bytes += n as u64;
        let len = self.records.unwrap_or(n.max(1));
        let mut at = 0;
        let mut k = 0u32;
        while !self.pushing && at + len <= n {
            let cadu = read.slice(at..at + len);
            // The fetcher checked every CADU of the read (at most 64).
            let is_clean = clean.checked_shr(k).is_some_and(|c| c & 1 == 1);
            match self.dec.push_record_checked(cadu, is_clean) {
                Ok(()) => {
                    at += len;
                    k += 1;
                    self.taken += 1;
                }
                Err(_) => self.pushing = true,
            }
        }
        self.dec.push(read.get(at..).unwrap_or_default());
        if at < n {
            // A CADU that is not a record, or one cut short at the end: synchronized from here.
            self.pushing = true;
        }
        Ok(true)
    }

    /// The next good frame of this copy (with its raw CADU when reading `cadus.raw`).
    fn next(&mut self) -> Result<Option<CopyFrame>> {
        loop {
            if let Some(c) = self.queue.pop_front() {
                return Ok(Some(c));
            }
            if self.finished {
                return Ok(None);
            }
            if !self.read_more()? {
                self.dec.finish();
                self.finished = true;
            }
            while let Some(ev) = self.dec.poll() {
                match ev {
                    Event::RawCadu { data, stream_bit } => {
                        self.raw = Some((data, self.record_at(stream_bit)));
                    }
                    Event::Rejected { .. } => self.raw = None,
                    Event::Frame(fr) if fr.fill => self.raw = None,
                    Event::Frame(fr) => {
                        let raw = self.raw.take();
                        let quality = Quality::of(fr.rs.as_ref());
                        let payload = match (&self.link, raw) {
                            (Some(_), None) => continue,
                            (Some(link), Some((bytes, record))) if fr.data.is_empty() => {
                                let Some(compared) = link.of_clean(&bytes) else {
                                    return Err(Error::Merge(format!(
                                        "a CADU of {} bytes holds no frame of {}",
                                        bytes.len(),
                                        link.frame.len()
                                    )));
                                };
                                Payload {
                                    bytes,
                                    compared,
                                    decoded: None,
                                    record,
                                }
                            }
                            (Some(link), Some((bytes, record))) => Payload {
                                bytes,
                                compared: 0..0,
                                decoded: Some(Box::new(Decoded {
                                    randomized: link.randomized(&fr.data),
                                    frame: fr.data,
                                    rs: fr.rs,
                                })),
                                record,
                            },
                            (None, _) => Payload {
                                compared: 0..u32::try_from(fr.data.len()).unwrap_or(u32::MAX),
                                bytes: fr.data,
                                decoded: None,
                                record: None,
                            },
                        };
                        self.queue.push_back(FrameCopy {
                            scid: fr.header.scid,
                            vcid: fr.header.vcid,
                            count: fr.header.vc_count,
                            modulus: fr.header.vc_count_modulus,
                            quality,
                            payload,
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    /// The record of the copy's `cadus.raw` a CADU found at `stream_bit` is: one taken as a
    /// record (they are the file's first `taken`, byte for byte), when the copy is referable.
    fn record_at(&self, stream_bit: u64) -> Option<u32> {
        let len = self.records? as u64;
        let at = stream_bit / 8;
        (self.referable
            && stream_bit.is_multiple_of(8)
            && at.is_multiple_of(len)
            && at / len < self.taken)
            .then(|| u32::try_from(at / len).ok())
            .flatten()
    }
}

/// Runs `m` over `sources`, each read by its fetcher on a thread of its own and decoded here,
/// handing each merged frame to `out`; returns each copy's counters, in order.
fn drive(
    m: &mut Merger<Payload>,
    sources: Vec<Source>,
    mut out: impl FnMut(decoder::merge::Merged<Payload>) -> Result<()>,
) -> Result<Vec<SourceEnd>> {
    std::thread::scope(|scope| {
        // Owned here: on any error the sources, and their receivers, drop before the scope
        // joins, so the fetchers stop instead of waiting to hand over their next reads.
        let mut sources = sources;
        for (k, s) in sources.iter_mut().enumerate() {
            let Some(fetcher) = s.fetcher.take() else {
                continue;
            };
            let (tx, rx) = sync_channel(FEEDS_AHEAD);
            std::thread::Builder::new()
                .name(format!("merge-read-{k}"))
                .spawn_scoped(scope, move || fetcher.run(&tx))
                .context("starting a station copy's reader")?;
            s.feed = Some(rx);
        }
        merge_sources(m, &mut sources, &mut out)
    })
}

/// The loop of [`drive`]: feeds `m` what it wants from `sources` until every one is read.
fn merge_sources(
    m: &mut Merger<Payload>,
    sources: &mut [Source],
    out: &mut impl FnMut(decoder::merge::Merged<Payload>) -> Result<()>,
) -> Result<Vec<SourceEnd>> {
    loop {
        while let Some(x) = m.poll() {
            out(x)?;
        }
        let Some(i) = m.wants() else { break };
        match sources.get_mut(i).map(Source::next).transpose()?.flatten() {
            Some(c) => m.push(i, c),
            None => m.finish(i),
        }
    }
    sources
        .iter()
        .map(|s| match s.finished {
            true => Ok(SourceEnd {
                stats: s.dec.stats(),
                bytes: s.bytes,
            }),
            false => Err(Error::Merge(
                "a station copy's reader ended before its end of file".into(),
            )),
        })
        .collect()
}

/// What the final decode of the chosen CADUs hands to the files of the merged pass.
enum Op {
    /// A chosen CADU: its bytes for `cadus.raw`, or where it is (copy, record) for
    /// `cadus.ref`.
    Cadu {
        raw: Bytes,
        origin: Option<(u8, u32)>,
    },
    /// The good frame of the CADU before it, for `frames.idx` (its bytes are not needed
    /// there: the index names the CADU, which holds them).
    Frame { vcid: u8, count: u32 },
    /// A packet that frame completed, for `packets.idx` (its bytes are not needed there:
    /// the final decode counts packets without copying them).
    Packet { apid: u16, vcid: u8 },
}

/// The merge of raw CADUs in four stages, each handing batches to the next over a bounded
/// channel: the copies' readers (a thread each: read, decode), the merge (this thread), the
/// final decode of the chosen CADUs (a thread: `dec`, given back as its counters), and the
/// writing of the files (a thread: `w`, given back). `refer`: the chosen CADUs read as records
/// of their copy's `cadus.raw` go to `cadus.ref` (started), not copied.
fn merge_raw(
    sources: Vec<Source>,
    scid: u16,
    mut dec: Decoder,
    mut w: Writer,
    refer: bool,
) -> Result<(Writer, MergeStats, Vec<SourceEnd>, decoder::Stats)> {
    let mut m = Merger::new(sources.len(), scid, DEFAULT_WINDOW, DEFAULT_REORDER);
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Vec<decoder::merge::Merged<Payload>>>(BATCHES_AHEAD);
        let (ops_tx, ops_rx) = sync_channel::<Vec<Op>>(BATCHES_AHEAD);
        let writer = std::thread::Builder::new()
            .name("merge-write".into())
            .spawn_scoped(scope, move || -> Result<Writer> {
                for batch in ops_rx {
                    for op in batch {
                        match op {
                            Op::Cadu {
                                origin: Some((copy, record)),
                                ..
                            } => w.files.cadu_ref(copy, record)?,
                            Op::Cadu { raw, origin: None } => w.files.cadu_shared(raw)?,
                            Op::Frame { vcid, count } => {
                                w.files.frame(vcid, count, &[])?;
                            }
                            Op::Packet { apid, vcid } => {
                                w.files.packet(apid, Some(vcid), &[])?;
                            }
                        }
                    }
                }
                Ok(w)
            })
            .context("starting the merge's writer")?;
        let decode = std::thread::Builder::new()
            .name("merge-decode".into())
            .spawn_scoped(scope, move || -> Result<decoder::Stats> {
                let stopped = || Error::Merge("the merge's writer stopped".into());
                let mut ops = Vec::with_capacity(4 * BATCH);
                // The CADUs taken as records whose place in their copy is known, by their
                // place in this decoder's stream (a record is taken where the stream stands,
                // and every CADU pushed moves it on by its length), until it hands them on.
                let mut placed: VecDeque<(u64, (u8, u32))> = VecDeque::new();
                let mut stream_bit = 0u64;
                for batch in rx {
                    for x in batch {
                        let origin = match (refer, x.copy.payload.record) {
                            (true, Some(r)) => u8::try_from(x.input)
                                .ok()
                                .filter(|&k| k != archive::cadu_refs::OWN)
                                .map(|k| (k, r)),
                            _ => None,
                        };
                        // Checked once already (by the copy's reader): a clean record is read
                        // through the PN sequence, a corrected frame not RS-decoded again. The
                        // chosen CADUs are whole, back to back: records (one that is not is
                        // synchronized, and everything after it).
                        let Payload {
                            bytes: raw,
                            decoded,
                            ..
                        } = x.copy.payload;
                        let at = stream_bit;
                        stream_bit += 8 * raw.len() as u64;
                        let taken = match decoded {
                            None => dec
                                .push_record_checked(raw, true)
                                .map_err(|raw| dec.push(&raw)),
                            Some(d) => {
                                let Decoded { frame, rs, .. } = *d;
                                dec.push_record_decoded(DecodedCadu { raw, frame, rs })
                                    .map_err(|cadu| dec.push_decoded(cadu))
                            }
                        };
                        if taken.is_ok() {
                            placed.extend(origin.map(|o| (at, o)));
                        }
                        take_ops(&mut dec, &mut ops, &mut placed);
                    }
                    let full = std::mem::replace(&mut ops, Vec::with_capacity(4 * BATCH));
                    ops_tx.send(full).map_err(|_| stopped())?;
                }
                dec.finish();
                take_ops(&mut dec, &mut ops, &mut placed);
                ops_tx.send(ops).map_err(|_| stopped())?;
                Ok(dec.stats())
            })
            .context("starting the merge's final decode")?;
        let mut batch = Vec::with_capacity(BATCH);
        let stopped = || Error::Merge("the merge's final decode stopped".into());
        let merged = drive(&mut m, sources, |x| {
            batch.push(x);
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                tx.send(full).map_err(|_| stopped())?;
            }
            Ok(())
        })
        .and_then(|ends| {
            if !batch.is_empty() {
                tx.send(batch).map_err(|_| stopped())?;
            }
            Ok(ends)
        });
        drop(tx);
        // The later stages' own errors first: a failed send only says that one stopped.
        let counters = decode
            .join()
            .map_err(|_| Error::Merge("the merge's final decode panicked".into()));
        let w = writer
            .join()
            .map_err(|_| Error::Merge("the merge's writer panicked".into()))??;
        let counters = counters??;
        Ok((w, m.stats().clone(), merged?, counters))
    })
}

/// The final decoder's events as what the files of a merged pass from raw CADUs take: a raw
/// CADU found where a record of `placed` was taken goes by its place in its copy.
fn take_ops(dec: &mut Decoder, ops: &mut Vec<Op>, placed: &mut VecDeque<(u64, (u8, u32))>) {
    while let Some(ev) = dec.poll() {
        ops.push(match ev {
            Event::RawCadu { data, stream_bit } => {
                while placed.front().is_some_and(|(at, _)| *at < stream_bit) {
                    placed.pop_front();
                }
                let origin = match placed.front() {
                    Some(&(at, o)) if at == stream_bit => {
                        placed.pop_front();
                        Some(o)
                    }
                    _ => None,
                };
                Op::Cadu { raw: data, origin }
            }
            Event::Frame(f) => Op::Frame {
                vcid: f.header.vcid,
                count: f.header.vc_count,
            },
            Event::PacketCounted { vcid, header, .. } => Op::Packet {
                apid: header.apid,
                vcid,
            },
            _ => continue,
        });
    }
}

/// How often the files being written are made durable in the background: the final fsync
/// then waits for little more than the last interval's writes.
const SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// The files of a pass being written (staged), in the store-once layout, synced in the
/// background as they grow.
struct Writer {
    files: archive::pass_store::PassFiles,
    syncer: archive::pass::Syncer,
}

impl Writer {
    fn new(staging: &Path, raw_mode: bool) -> Writer {
        let syncer = archive::pass::Syncer::start(SYNC_EVERY);
        Writer {
            files: archive::pass_store::PassFiles::new(staging, raw_mode, Some(syncer.files())),
            syncer,
        }
    }

    /// Flushes and fsyncs every file and the directory.
    fn sync(mut self) -> Result<()> {
        self.syncer.finish();
        self.files.sync_all()?;
        if self.syncer.failed() {
            return Err(Error::Merge(
                "a background fdatasync of the merged pass failed".into(),
            ));
        }
        Ok(())
    }
}

/// Archives what the final decoder makes of merged frames (from archived frames: no raw
/// CADUs; the frames go to `frames.raw`).
fn take_events(dec: &mut Decoder, w: &mut Writer) -> Result<()> {
    while let Some(ev) = dec.poll() {
        match ev {
            Event::Frame(f) => {
                w.files.frame(f.header.vcid, f.header.vc_count, &f.data)?;
            }
            Event::Packet { packet, vcid } => {
                w.files.packet(packet.header.apid, vcid, &packet.data)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// What [`merge_passes`] needs besides the passes.
pub struct MergeSpec<'a> {
    /// The spacecraft profile (the station passes' own).
    pub profile: &'a Profile,
    /// The merged pass's id.
    pub id: &'a str,
    /// The station that merges (tagged on the merged record).
    pub station: Option<&'a crate::config::StationConfig>,
    /// 1 for a first merge, one more for each re-merge.
    pub version: u64,
    /// Keep the merged pass's CADUs where they are, in the station passes' `cadus.raw`
    /// (`cadus.ref` names them), instead of a copy in its own `cadus.raw`.
    pub refer: bool,
}

/// Merges `passes` into a new pass directory `staging` (which must not exist); returns its
/// record (already written as `staging/pass.json`). Passes of another spacecraft than the
/// first pass with a decoded frame are refused by the caller (`mergeable`); frames of another
/// SCID inside a copy are counted, never merged.
pub fn merge_passes(
    passes: &[StationPass],
    spec: &MergeSpec<'_>,
    staging: &Path,
) -> Result<PassRecord> {
    let Some(scid) = passes.iter().find_map(|p| p.record.scid) else {
        return Err(Error::Merge(
            "none of the passes has a decoded frame (no spacecraft id)".into(),
        ));
    };
    std::fs::create_dir_all(staging).with_context(|| format!("creating {}", staging.display()))?;
    let profile = spec.profile;
    let raw_mode = passes.iter().all(StationPass::has_raw);
    let mut w = Writer::new(staging, raw_mode);
    let mut stats = MergeStats {
        inputs: vec![Default::default(); passes.len()],
        ..MergeStats::default()
    };
    let mut rejected: Vec<BTreeMap<String, u64>> = vec![BTreeMap::new(); passes.len()];
    let mut truncated_bits = vec![0u64; passes.len()];
    let mut read_bytes = vec![0u64; passes.len()];
    let opts = DecoderOptions {
        // The chosen CADUs are archived as the final decoder synchronizes them, so that each
        // frame's index record names its own CADU.
        raw_cadus: raw_mode,
        // Merged frames are archived as the final decoder delivers them (with their packets).
        frames: true,
        fill_frames: false,
        packets: true,
    };
    let counters = if raw_mode {
        // Each copy is read up to the length it has now (that is what cadus.ref names).
        let refer = spec.refer
            && passes.len() < usize::from(archive::cadu_refs::OWN)
            && passes.iter().all(StationPass::referable);
        let mut sources = Vec::with_capacity(passes.len());
        let mut named = Vec::with_capacity(passes.len());
        for p in passes {
            let path = p
                .raw()
                .ok_or_else(|| Error::Merge(format!("{}: its CADUs are gone", p.dir.display())))?;
            let primary = archive::cadu_refs::Primary::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            let bytes = primary.len();
            let crc32 = if refer {
                let f = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
                archive::cadu_refs::fingerprint(&f, bytes, profile.cadu.length as u64)
                    .with_context(|| format!("reading {}", path.display()))?
            } else {
                0
            };
            named.push(archive::cadu_refs::RefSource {
                pass: p.record.id.clone(),
                dir: p.dir.canonicalize().unwrap_or_else(|_| p.dir.clone()),
                bytes,
                crc32,
            });
            let read = Box::new(primary.reader().take(bytes));
            sources.push(Source::with_records(
                profile,
                InputFormat::Cadu,
                read,
                refer,
            )?);
        }
        if refer {
            w.files.refer(&archive::cadu_refs::RefHeader {
                format: archive::cadu_refs::FORMAT.into(),
                cadu_length: profile.cadu.length,
                sources: named,
            })?;
        } else {
            w.files.open_cadus()?;
        }
        let (written, merge_stats, ends, counters) = merge_raw(
            sources,
            scid,
            Decoder::new(profile, InputFormat::Cadu, opts)?
                .without_packet_data()
                .without_frame_data(),
            w,
            refer,
        )?;
        w = written;
        stats = merge_stats;
        for (k, s) in ends.iter().enumerate() {
            note_source(s, k, &mut rejected, &mut truncated_bits, &mut read_bytes);
        }
        counters
    } else {
        // Frames per VC: merge each virtual channel on its own, then decode them in VC order
        // (as the products job re-decodes a pass without raw CADUs).
        let stored: Vec<archive::pass_store::StoredPass> = passes
            .iter()
            .map(|p| archive::pass_store::StoredPass::open(&p.dir))
            .collect();
        let mut per_pass: Vec<Vec<u8>> = Vec::new();
        for (p, st) in passes.iter().zip(&stored) {
            per_pass.push(
                st.vcids(profile)
                    .with_context(|| format!("reading {}", p.dir.display()))?,
            );
        }
        let mut vcids: Vec<u8> = per_pass.iter().flatten().copied().collect();
        vcids.sort_unstable();
        vcids.dedup();
        let mut dec = Decoder::new(profile, InputFormat::Frames, opts)?;
        for v in vcids {
            let mut present = Vec::new();
            let mut sources = Vec::new();
            for (k, (st, has)) in stored.iter().zip(&per_pass).enumerate() {
                if has.contains(&v) {
                    present.push(k);
                    sources.push(Source::new(
                        profile,
                        InputFormat::Frames,
                        st.frames(profile, v)?,
                    )?);
                }
            }
            let mut m = Merger::new(sources.len(), scid, DEFAULT_WINDOW, DEFAULT_REORDER);
            let ends = drive(&mut m, sources, |x| {
                dec.push(&x.copy.payload.bytes);
                take_events(&mut dec, &mut w)
            })?;
            let s = m.stats();
            for (j, &k) in present.iter().enumerate() {
                if let (Some(dst), Some(src)) = (stats.inputs.get_mut(k), s.inputs.get(j)) {
                    add_counts(dst, src);
                }
                if let Some(src) = ends.get(j) {
                    note_source(src, k, &mut rejected, &mut truncated_bits, &mut read_bytes);
                }
            }
            stats.keys += s.keys;
            stats.duplicate_keys += s.duplicate_keys;
            stats.conflict_keys += s.conflict_keys;
        }
        dec.finish();
        take_events(&mut dec, &mut w)?;
        dec.stats()
    };
    w.sync()?;

    let gaps_left: u64 = counters.frames.missing_by_vcid.values().sum();
    let mut contributions = serde_json::Map::new();
    let mut labels: Vec<String> = Vec::new();
    for (k, p) in passes.iter().enumerate() {
        let mut label = p.label();
        if labels.contains(&label) {
            label = p.record.id.clone();
        }
        labels.push(label.clone());
        let c = stats.inputs.get(k).copied().unwrap_or_default();
        let rej = rejected.get(k).cloned().unwrap_or_default();
        let mut explained = Vec::new();
        if c.wrong_scid > 0 {
            explained.push(format!(
                "{} frames of another spacecraft than SCID {scid}: never merged",
                c.wrong_scid
            ));
        }
        if p.record.scid.is_some_and(|s| s != scid) {
            explained.push(format!(
                "this copy is of SCID {}, the merged pass of SCID {scid}",
                p.record.scid.unwrap_or_default()
            ));
        }
        for (reason, n) in &rej {
            explained.push(match reason.as_str() {
                FILL => format!("{n} fill (idle) frames: they carry no data and are not merged"),
                _ => format!("{n} frames rejected in this copy ({reason})"),
            });
        }
        let tb = truncated_bits.get(k).copied().unwrap_or(0);
        if tb > 0 {
            explained.push(format!(
                "the copy ends in {tb} bits of a CADU cut short (truncated)"
            ));
        }
        if c.late > 0 {
            explained.push(format!(
                "{} frames arrived out of order beyond the reorder window: dropped",
                c.late
            ));
        }
        if c.conflicts > 0 {
            explained.push(format!(
                "{} frames differ from another copy after RS: the better-scored copy was kept",
                c.conflicts
            ));
        }
        contributions.insert(
            label,
            serde_json::json!({
                "pass": p.record.id,
                "station": p.record.station,
                "input": p.record.input,
                "frames": c.pushed,
                "unique": c.unique,
                "duplicates": c.duplicates,
                "conflicts": c.conflicts,
                "chosen": c.chosen,
                "wrong_scid": c.wrong_scid,
                "late": c.late,
                "repeats": c.repeats,
                "rejected": rej,
                "truncated_bits": tb,
                "bytes_read": read_bytes.get(k).copied().unwrap_or(0),
                "explained": explained,
            }),
        );
    }
    contributions.insert("gaps_left".into(), gaps_left.into());
    contributions.insert("frames".into(), stats.keys.into());
    contributions.insert("duplicate_frames".into(), stats.duplicate_keys.into());
    contributions.insert("conflict_frames".into(), stats.conflict_keys.into());
    contributions.insert(
        "source".into(),
        if raw_mode { "cadus.raw" } else { "frames" }.into(),
    );

    let aos = passes.iter().filter_map(|p| p.record.aos_time()).min();
    let los = passes
        .iter()
        .filter_map(|p| {
            p.record
                .los
                .as_deref()
                .and_then(|l| humantime::parse_rfc3339_weak(l).ok())
        })
        .max();
    let mut record = PassRecord {
        id: spec.id.to_owned(),
        input: MERGED_INPUT.into(),
        profile: profile.name.clone(),
        spacecraft: Some(
            profile
                .spacecraft_name(scid)
                .map_or_else(|| format!("SCID {scid}"), str::to_owned),
        ),
        scid: Some(scid),
        counters: serde_json::to_value(&counters)?,
        suspect: Some(false),
        archive: Some(ArchiveSection {
            state: ArchiveState::Complete,
            io_errors: BTreeMap::new(),
            not_archived: Unarchived::default(),
            poisoned: false,
        }),
        archive_io_errors: Some(0),
        counters_source: Some(format!(
            "merged from {} station passes ({}); counted by decoding the merged frames",
            passes.len(),
            if raw_mode {
                "raw CADUs, best Reed-Solomon outcome per frame"
            } else {
                "archived frames"
            }
        )),
        station: spec.station.map(|s| s.name.clone()),
        station_location: spec.station.and_then(archive::record::StationLocation::of),
        merged_from: passes.iter().map(|p| p.record.id.clone()).collect(),
        contributions: Some(serde_json::Value::Object(contributions)),
        merge_version: Some(spec.version),
        ..PassRecord::default()
    };
    let now = SystemTime::now();
    let aos = aos.unwrap_or(now);
    record.set_times(aos, los.unwrap_or(aos));
    record.extra.insert("merged_at".into(), rfc3339(now).into());
    let text = serde_json::to_vec_pretty(&record)?;
    archive::write_atomic(staging.join("pass.json"), &text)?;
    Ok(record)
}

fn add_counts(dst: &mut decoder::merge::InputCounts, src: &decoder::merge::InputCounts) {
    dst.pushed += src.pushed;
    dst.unique += src.unique;
    dst.duplicates += src.duplicates;
    dst.conflicts += src.conflicts;
    dst.chosen += src.chosen;
    dst.wrong_scid += src.wrong_scid;
    dst.late += src.late;
    dst.repeats += src.repeats;
}

fn note_source(
    s: &SourceEnd,
    k: usize,
    rejected: &mut [BTreeMap<String, u64>],
    truncated: &mut [u64],
    bytes: &mut [u64],
) {
    let st = &s.stats;
    let r = &st.frames.rejected;
    if let Some(map) = rejected.get_mut(k) {
        for (name, n) in [
            ("rs_uncorrectable", r.rs_uncorrectable),
            ("crc_failed", r.crc_failed),
            ("bad_version", r.bad_version),
            ("unexpected_scid", r.unexpected_scid),
            ("too_short", r.too_short),
            ("unknown_vcid", r.unknown_vcid),
        ] {
            if n > 0 {
                *map.entry(name.to_owned()).or_default() += n;
            }
        }
    }
    if let Some(t) = truncated.get_mut(k) {
        *t += st.sync.truncated_bits;
    }
    if let Some(b) = bytes.get_mut(k) {
        *b += s.bytes;
    }
    if let Some(map) = rejected.get_mut(k) {
        if st.frames.fill > 0 {
            *map.entry(FILL.to_owned()).or_default() += st.frames.fill;
        }
    }
}

/// Whether two pass records are copies of one pass: same spacecraft, times overlapping
/// (AOS..LOS, with `slack` either side), received by different antennas (station and input):
/// one antenna's passes follow each other, however close, and are never copies of one another.
pub fn same_pass(a: &PassRecord, b: &PassRecord, slack: std::time::Duration) -> bool {
    if a.station == b.station && a.input == b.input {
        return false;
    }
    let span = |r: &PassRecord| -> Option<(SystemTime, SystemTime)> {
        let aos = r.aos_time()?;
        let los = r
            .los
            .as_deref()
            .and_then(|l| humantime::parse_rfc3339_weak(l).ok())
            .unwrap_or(aos);
        Some((aos, los))
    };
    let (Some(sa), Some(sb)) = (a.scid, b.scid) else {
        return false;
    };
    let (Some((a0, a1)), Some((b0, b1))) = (span(a), span(b)) else {
        return false;
    };
    sa == sb && a0 <= b1 + slack && b0 <= a1 + slack
}

/// The lock file of merges into a passes directory.
pub const MERGE_LOCK: &str = ".merge.lock";

/// Holds `dir/.merge.lock` (an exclusive `flock`) until the file is dropped: merges into one
/// passes directory (the daemon's after LOS, other daemons sharing the archive, `downlink
/// merge`) run one at a time, so a merge finds the merged pass of the one before instead of
/// writing its own. When another merge holds it, `waiting` is called once, then this blocks.
pub fn lock_passes(dir: &Path, waiting: impl FnOnce(&Path)) -> Result<File> {
    let path = dir.join(MERGE_LOCK);
    if let Some(f) = crate::lockfile::try_exclusive(&path)? {
        return Ok(f);
    }
    waiting(&path);
    crate::lockfile::wait(&path, false)
}

/// Holds `dir/.merge.lock` shared (a shared `flock`) until the file is dropped: the products
/// job of a merged pass holds it, so a re-merge (which takes it exclusive and replaces the
/// pass directory whole) waits for the job instead of moving the directory away under it, and
/// the job waits for a re-merge in progress. Blocks while a merge holds it.
pub fn share_passes(dir: &Path) -> Result<File> {
    crate::lockfile::wait(&dir.join(MERGE_LOCK), true)
}

/// Replaces (or creates) pass directory `dest` with `staging`: the old one is moved aside,
/// the new one renamed into place, the parent directory fsynced, then the old one removed.
/// A reader sees the old pass or the new one, each whole.
pub fn publish(staging: &Path, dest: &Path) -> Result<()> {
    let parent = dest.parent().context("pass directory without a parent")?;
    let old = dest.with_extension(format!("{}.replaced", std::process::id()));
    if dest.exists() {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(dest, &old).with_context(|| format!("moving {} aside", dest.display()))?;
    }
    std::fs::rename(staging, dest)
        .with_context(|| format!("renaming {} to {}", staging.display(), dest.display()))?;
    archive::sync_dir(&parent.join("x"))?;
    if old.exists() {
        std::fs::remove_dir_all(&old)
            .with_context(|| format!("removing the replaced {}", old.display()))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_merge_waits_for_products_holding_the_lock_shared_and_they_share_it() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().to_path_buf();
        let job = share_passes(&dir).unwrap();
        // A second products job (another daemon's) shares it without waiting.
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        std::thread::spawn(move || {
            let l = share_passes(&d);
            tx.send(l.is_ok()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_secs(30)).unwrap());
        // A merge finds it held, says so, and waits until the job lets go.
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        let merge = std::thread::spawn(move || {
            let waiting = tx.clone();
            let l = lock_passes(&d, move |_| waiting.send("waiting").unwrap()).unwrap();
            tx.send("locked").unwrap();
            l
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), "waiting");
        drop(job);
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), "locked");
        let held = merge.join().unwrap();
        // And a products job waits for a merge in progress.
        let (tx, rx) = std::sync::mpsc::channel();
        let d = dir.clone();
        std::thread::spawn(move || {
            let _l = share_passes(&d).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        drop(held);
        rx.recv_timeout(Duration::from_secs(30)).unwrap();
    }

    fn rec(scid: u16, aos: &str, los: &str) -> PassRecord {
        PassRecord {
            input: format!("ant-{aos}"),
            scid: Some(scid),
            aos: Some(aos.into()),
            los: Some(los.into()),
            ..PassRecord::default()
        }
    }

    #[test]
    fn same_pass_needs_the_same_spacecraft_and_overlapping_times() {
        let a = rec(157, "2026-12-06T10:00:00Z", "2026-12-06T10:10:00Z");
        let b = rec(157, "2026-12-06T10:06:00Z", "2026-12-06T10:14:00Z");
        let other = rec(154, "2026-12-06T10:00:00Z", "2026-12-06T10:10:00Z");
        let later = rec(157, "2026-12-06T11:40:00Z", "2026-12-06T11:50:00Z");
        let s = Duration::from_secs(60);
        assert!(same_pass(&a, &b, s));
        assert!(same_pass(&b, &a, s));
        assert!(
            !same_pass(&a, &other, s),
            "another satellite at the same time"
        );
        assert!(!same_pass(&a, &later, s), "the next orbit");
        let again = PassRecord {
            input: a.input.clone(),
            ..b.clone()
        };
        assert!(
            !same_pass(&a, &again, s),
            "two passes of one antenna, however close, are not copies"
        );
    }
}
