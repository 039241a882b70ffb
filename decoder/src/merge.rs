//! Frame-level merge of several copies of one pass (two antennas, two stations), sans IO.
//!
//! Each copy is a sequence of good transfer frames in the order its station received them,
//! each with its Reed-Solomon outcome ([`Quality`]). A frame is identified by its key
//! (SCID, VCID, VC frame count) — CCSDS 732.0-B-4 §4.1.2.4 (AOS, 24-bit count) and
//! CCSDS 132.0-B-3 §4.1.2.5 (TM, 8-bit count). Counts wrap, so each copy's count is *unwrapped*
//! relative to its previous frame on the same virtual channel (a forward step of less than
//! half the counter range is progress, a larger one a step back); the first frame of a copy on
//! a virtual channel is placed at the wrap nearest the position the other copies already have
//! there. (TM's 8-bit counter can therefore align copies only when they start within 128 frames
//! of each other on each virtual channel; AOS's 24-bit counter, within 8 million.)
//!
//! Per key one frame is kept: RS-clean over RS-corrected (fewer corrected symbols first) over
//! a frame of a link without RS; on a tie the copy pushed as the lower input. Copies of a key
//! that are byte-identical are *duplicates*; copies that differ after RS are *conflicts*
//! (counted on every copy of the key; the best-scored one is kept). Frames of another SCID
//! than the pass's are never merged: they are counted (`wrong_scid`) and dropped.
//!
//! ```text
//!   push(i, frame) ─► per input, per VC: queue ordered by unwrapped count
//!                                   │  a VC's smallest head is final once every input still
//!                                   │  running has a frame queued on that VC (or has moved
//!                                   ▼  `window` frames past it without one)
//!   poll() ◄──── Merged { best copy, copies }             wants() ─► which input to feed
//! ```
//!
//! Memory is bounded by the reorder window: the caller streams every copy in its own order
//! and feeds the input [`Merger::wants`]; nothing holds a whole pass. A frame that arrives after
//! its key was emitted (reordered further than the window) is counted as `late` and dropped.
//!
//! Accounting identity (checked by the tests): for every input,
//! `pushed = wrong_scid + late + repeats + unique + duplicates + conflicts`, and the keys
//! emitted are `Σ unique + duplicate_keys + conflict_keys`.

use std::collections::VecDeque;

use serde::Serialize;

/// Reed-Solomon outcome of one copy of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Quality {
    /// Every codeword had a zero syndrome.
    Clean,
    /// Corrected; `symbols` symbols in all.
    Corrected {
        /// Symbols corrected over the frame's codewords.
        symbols: u32,
    },
    /// The link has no RS code (nothing to rank by).
    Unchecked,
}

impl Quality {
    /// The RS outcome of a decoded frame (`None`: a link without RS).
    pub fn of(rs: Option<&crate::rs::BlockOutcome>) -> Quality {
        match rs {
            None => Quality::Unchecked,
            Some(o) if o.is_clean() => Quality::Clean,
            Some(o) => Quality::Corrected {
                symbols: o.corrected_symbols(),
            },
        }
    }

    /// Higher is better.
    fn score(self) -> (u8, i64) {
        match self {
            Quality::Clean => (3, 0),
            Quality::Corrected { symbols } => (2, -i64::from(symbols)),
            Quality::Unchecked => (1, 0),
        }
    }
}

/// One copy of a frame, as a station received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameCopy<T> {
    /// Spacecraft id.
    pub scid: u16,
    /// Virtual channel.
    pub vcid: u8,
    /// VC frame count as in the header.
    pub count: u32,
    /// The counter's range (2^24 AOS, 256 TM).
    pub modulus: u32,
    /// RS outcome.
    pub quality: Quality,
    /// What the caller wants back with the chosen copy (e.g. the raw CADU); copies of a key
    /// are compared by its bytes (`AsRef<[u8]>`): the frame after RS, or any bytes equal
    /// exactly when the frames are (the merge of raw CADUs compares frames as randomized on
    /// the link).
    pub payload: T,
}

/// The frame kept for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged<T> {
    /// The input the kept copy came from.
    pub input: usize,
    /// How many inputs had a copy of this key.
    pub copies: usize,
    /// The kept copy.
    pub copy: FrameCopy<T>,
}

/// What one input contributed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InputCounts {
    /// Frames pushed.
    pub pushed: u64,
    /// Keys only this input had.
    pub unique: u64,
    /// Keys another input also had, all copies identical.
    pub duplicates: u64,
    /// Keys another input also had, copies differing after RS.
    pub conflicts: u64,
    /// Keys whose kept copy is this input's.
    pub chosen: u64,
    /// Frames of another spacecraft than the pass's (dropped).
    pub wrong_scid: u64,
    /// Frames that arrived after their key was emitted (dropped).
    pub late: u64,
    /// A key this input had already pushed (the later copy dropped).
    pub repeats: u64,
}

/// Counters of a merge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MergeStats {
    /// Per input, in input order.
    pub inputs: Vec<InputCounts>,
    /// Keys emitted.
    pub keys: u64,
    /// Keys with two or more identical copies.
    pub duplicate_keys: u64,
    /// Keys whose copies differed.
    pub conflict_keys: u64,
}

struct Queued<T> {
    ext: i64,
    copy: FrameCopy<T>,
}

/// Per-VC state is indexed by the VCID (a byte: 256 slots, no map lookups per frame).
const VCS: usize = 256;

/// One input on one virtual channel.
struct Lane<T> {
    /// Ordered by unwrapped count.
    queue: VecDeque<Queued<T>>,
    /// (last raw count, its unwrapped value).
    last: Option<(u32, i64)>,
    /// The input's `pushed` at its last frame here (0: none yet).
    seen_at: u64,
    /// The highest unwrapped count pushed.
    max_ext: Option<i64>,
}

struct Input<T> {
    /// Per VC.
    lanes: Vec<Lane<T>>,
    pushed: u64,
    finished: bool,
}

impl<T> Input<T> {
    fn new() -> Self {
        Self {
            lanes: (0..VCS)
                .map(|_| Lane {
                    queue: VecDeque::new(),
                    last: None,
                    seen_at: 0,
                    max_ext: None,
                })
                .collect(),
            pushed: 0,
            finished: false,
        }
    }

    fn head(&self, vcid: u8) -> Option<i64> {
        self.lanes
            .get(usize::from(vcid))
            .and_then(|l| l.queue.front())
            .map(|q| q.ext)
    }
}

/// A set of VCIDs.
#[derive(Clone, Copy, Default)]
struct VcSet([u64; VCS / 64]);

impl VcSet {
    fn set(&mut self, v: u8, on: bool) {
        if let Some(w) = self.0.get_mut(usize::from(v) / 64) {
            let bit = 1u64 << (v % 64);
            if on {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }

    /// The members in ascending order.
    fn iter(self) -> impl Iterator<Item = u8> {
        (0u8..).zip(self.0).flat_map(|(k, mut w)| {
            std::iter::from_fn(move || {
                let b = w.trailing_zeros();
                (w != 0).then(|| {
                    w &= w - 1;
                    k * 64 + b as u8
                })
            })
        })
    }
}

/// The merger of `n` copies of one pass of spacecraft `scid`.
pub struct Merger<T> {
    scid: u16,
    window: u64,
    reorder: i64,
    inputs: Vec<Input<T>>,
    /// Per VC: the last key emitted (unwrapped).
    emitted: Vec<Option<i64>>,
    /// Per VC: where the first copy to reach it started (to align the others' wraps).
    anchor: Vec<Option<i64>>,
    /// The VCs some input has a frame queued on.
    queued: VcSet,
    /// The copies of the key being emitted (kept to reuse its allocation).
    copies: Vec<(usize, FrameCopy<T>)>,
    out: VecDeque<Merged<T>>,
    stats: MergeStats,
    wants: Option<usize>,
    next_rr: usize,
}

/// Default reorder window (frames an input may run past a virtual channel without a frame on
/// it before that channel is decided without it).
pub const DEFAULT_WINDOW: u64 = 4096;

/// Default reorder depth (counts by which a copy may deliver a frame of a virtual channel
/// after a later one of the same channel).
pub const DEFAULT_REORDER: u32 = 64;

impl<T: AsRef<[u8]>> Merger<T> {
    /// A merger of `inputs` copies of a pass of `scid`. A key is decided once every copy still
    /// running is `reorder` counts past it on its virtual channel, or has run `window` frames
    /// past its last frame on that channel.
    pub fn new(inputs: usize, scid: u16, window: u64, reorder: u32) -> Self {
        Self {
            scid,
            window: window.max(1),
            reorder: i64::from(reorder),
            inputs: (0..inputs).map(|_| Input::new()).collect(),
            emitted: vec![None; VCS],
            anchor: vec![None; VCS],
            queued: VcSet::default(),
            copies: Vec::new(),
            out: VecDeque::new(),
            stats: MergeStats {
                inputs: vec![InputCounts::default(); inputs],
                ..MergeStats::default()
            },
            wants: None,
            next_rr: 0,
        }
    }

    /// The spacecraft of the pass.
    pub fn scid(&self) -> u16 {
        self.scid
    }

    /// Counters so far.
    pub fn stats(&self) -> &MergeStats {
        &self.stats
    }

    /// Frames held in the reorder queues now (the memory bound).
    pub fn buffered(&self) -> usize {
        self.inputs
            .iter()
            .flat_map(|i| i.lanes.iter())
            .map(|l| l.queue.len())
            .sum()
    }

    /// The next frame of input `input` (in its own order). An unknown input is ignored.
    pub fn push(&mut self, input: usize, copy: FrameCopy<T>) {
        let (Some(inp), Some(counts)) =
            (self.inputs.get_mut(input), self.stats.inputs.get_mut(input))
        else {
            return;
        };
        counts.pushed += 1;
        inp.pushed += 1;
        if copy.scid != self.scid {
            counts.wrong_scid += 1;
            return;
        }
        let v = copy.vcid;
        let vi = usize::from(v);
        let Some(lane) = inp.lanes.get_mut(vi) else {
            return;
        };
        let m = i64::from(copy.modulus.max(1));
        let raw = i64::from(copy.count) % m;
        let ext = match lane.last {
            Some((last_raw, _)) if i64::from(last_raw) == raw => {
                counts.repeats += 1;
                return;
            }
            Some((last_raw, last_ext)) => {
                let d = (raw - i64::from(last_raw)).rem_euclid(m);
                if d * 2 < m {
                    last_ext + d
                } else {
                    last_ext - (m - d)
                }
            }
            None => {
                // Nearest wrap to where the other copies are on this VC (or to the last key
                // emitted there).
                let reference = self
                    .emitted
                    .get(vi)
                    .copied()
                    .flatten()
                    .or_else(|| self.anchor.get(vi).copied().flatten());
                match reference {
                    Some(r) => raw + ((r - raw) as f64 / m as f64).round() as i64 * m,
                    None => {
                        // Start one counter range up so steps back stay positive.
                        let e = raw + m;
                        if let Some(a) = self.anchor.get_mut(vi) {
                            *a = Some(e);
                        }
                        e
                    }
                }
            }
        };
        lane.last = Some((copy.count, ext));
        lane.seen_at = inp.pushed;
        lane.max_ext = Some(lane.max_ext.map_or(ext, |x| x.max(ext)));
        if self
            .emitted
            .get(vi)
            .copied()
            .flatten()
            .is_some_and(|e| ext <= e)
        {
            counts.late += 1;
            return;
        }
        let q = &mut lane.queue;
        // Frames are almost always in order: insert from the back.
        let mut at = q.len();
        while at > 0 && q.get(at - 1).is_some_and(|p| p.ext >= ext) {
            at -= 1;
        }
        if q.get(at).is_some_and(|p| p.ext == ext) {
            counts.repeats += 1;
            return;
        }
        q.insert(at, Queued { ext, copy });
        self.queued.set(v, true);
    }

    /// Input `input` has no more frames.
    pub fn finish(&mut self, input: usize) {
        if let Some(i) = self.inputs.get_mut(input) {
            i.finished = true;
        }
    }

    /// The input to push next (or to [`Merger::finish`] if it has no more); `None` once every
    /// input is finished and everything was polled.
    pub fn wants(&mut self) -> Option<usize> {
        if let Some(i) = self.wants.take() {
            return Some(i);
        }
        // An input that has not started, then any input still running (round robin).
        if let Some(i) = self
            .inputs
            .iter()
            .position(|i| !i.finished && i.pushed == 0)
        {
            return Some(i);
        }
        let n = self.inputs.len();
        for k in 0..n {
            let i = (self.next_rr + k) % n;
            if self.inputs.get(i).is_some_and(|x| !x.finished) {
                self.next_rr = i + 1;
                return Some(i);
            }
        }
        None
    }

    /// The next merged frame, once it is final.
    pub fn poll(&mut self) -> Option<Merged<T>> {
        loop {
            if let Some(m) = self.out.pop_front() {
                return Some(m);
            }
            if !self.step() {
                return None;
            }
        }
    }

    /// Decides one key if one is final; false when none is (the caller must feed
    /// [`Merger::wants`]).
    fn step(&mut self) -> bool {
        self.wants = None;
        // Before every input has pushed once, no key is final (it may be in the others).
        if let Some(i) = self
            .inputs
            .iter()
            .position(|i| !i.finished && i.pushed == 0)
        {
            self.wants = Some(i);
            return false;
        }
        for v in self.queued.iter() {
            let Some(min) = self.inputs.iter().filter_map(|i| i.head(v)).min() else {
                continue;
            };
            let vi = usize::from(v);
            let blocked = self.inputs.iter().position(|i| {
                !i.finished
                    && i.lanes.get(vi).is_some_and(|l| {
                        l.max_ext.is_none_or(|x| x < min + self.reorder)
                            && i.pushed - l.seen_at < self.window
                    })
            });
            if let Some(b) = blocked {
                self.wants.get_or_insert(b);
                continue;
            }
            self.emit(v, min);
            return true;
        }
        false
    }

    fn emit(&mut self, v: u8, ext: i64) {
        let vi = usize::from(v);
        // Empty: cleared after the previous key.
        let mut copies = std::mem::take(&mut self.copies);
        let mut left = false;
        for (n, inp) in self.inputs.iter_mut().enumerate() {
            if let Some(q) = inp.lanes.get_mut(vi).map(|l| &mut l.queue) {
                if q.front().is_some_and(|f| f.ext == ext) {
                    if let Some(f) = q.pop_front() {
                        copies.push((n, f.copy));
                    }
                }
                left |= !q.is_empty();
            }
        }
        self.queued.set(v, left);
        if let Some(e) = self.emitted.get_mut(vi) {
            *e = Some(ext);
        }
        let best = copies
            .iter()
            .enumerate()
            .max_by(|(_, (ia, a)), (_, (ib, b))| {
                a.quality.score().cmp(&b.quality.score()).then(ib.cmp(ia))
            })
            .map_or(0, |(k, _)| k);
        let n = copies.len();
        let all_same = copies.split_first().is_some_and(|((_, f), rest)| {
            rest.iter()
                .all(|(_, c)| c.payload.as_ref() == f.payload.as_ref())
        });
        self.stats.keys += 1;
        if n > 1 {
            if all_same {
                self.stats.duplicate_keys += 1;
            } else {
                self.stats.conflict_keys += 1;
            }
        }
        for (i, _) in &copies {
            if let Some(c) = self.stats.inputs.get_mut(*i) {
                match (n, all_same) {
                    (1, _) => c.unique += 1,
                    (_, true) => c.duplicates += 1,
                    (_, false) => c.conflicts += 1,
                }
            }
        }
        if best < copies.len() {
            let (input, copy) = copies.swap_remove(best);
            if let Some(c) = self.stats.inputs.get_mut(input) {
                c.chosen += 1;
            }
            self.out.push_back(Merged {
                input,
                copies: n,
                copy,
            });
        }
        copies.clear();
        self.copies = copies;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    const AOS: u32 = 1 << 24;

    /// A test copy's payload: its frame (compared) and its count as pushed.
    #[derive(Clone, Debug, PartialEq, Eq)]
    struct Body {
        frame: Bytes,
        count: u64,
    }

    impl AsRef<[u8]> for Body {
        fn as_ref(&self) -> &[u8] {
            &self.frame
        }
    }

    fn copy(vcid: u8, count: u32, modulus: u32, quality: Quality, body: u8) -> FrameCopy<Body> {
        FrameCopy {
            scid: 157,
            vcid,
            count: count % modulus,
            modulus,
            quality,
            payload: Body {
                frame: Bytes::from(vec![body; 8]),
                count: u64::from(count),
            },
        }
    }

    /// Streams `copies` into a merger as a caller does: feed what it wants, poll what is final.
    fn run(
        copies: Vec<Vec<FrameCopy<Body>>>,
        window: u64,
    ) -> (Vec<Merged<Body>>, MergeStats, usize) {
        let mut m = Merger::new(copies.len(), 157, window, 16);
        let mut its: Vec<_> = copies.into_iter().map(Vec::into_iter).collect();
        let mut out = Vec::new();
        let mut peak = 0;
        loop {
            while let Some(x) = m.poll() {
                out.push(x);
            }
            let Some(i) = m.wants() else { break };
            match its[i].next() {
                Some(c) => m.push(i, c),
                None => m.finish(i),
            }
            peak = peak.max(m.buffered());
        }
        let s = m.stats().clone();
        (out, s, peak)
    }

    fn check_identity(s: &MergeStats) {
        for c in &s.inputs {
            assert_eq!(
                c.pushed,
                c.wrong_scid + c.late + c.repeats + c.unique + c.duplicates + c.conflicts,
                "{c:?}"
            );
        }
        let unique: u64 = s.inputs.iter().map(|c| c.unique).sum();
        assert_eq!(s.keys, unique + s.duplicate_keys + s.conflict_keys);
    }

    #[test]
    fn clean_over_corrected_over_unchecked_and_conflicts_counted() {
        let a = vec![
            copy(1, 10, AOS, Quality::Corrected { symbols: 3 }, 1),
            copy(1, 11, AOS, Quality::Clean, 2),
            copy(1, 12, AOS, Quality::Corrected { symbols: 1 }, 3),
        ];
        let b = vec![
            copy(1, 10, AOS, Quality::Clean, 1),
            copy(1, 11, AOS, Quality::Corrected { symbols: 2 }, 9),
            copy(1, 12, AOS, Quality::Corrected { symbols: 5 }, 3),
        ];
        let (out, s, _) = run(vec![a, b], 16);
        assert_eq!(
            out.iter().map(|m| m.input).collect::<Vec<_>>(),
            [1, 0, 0],
            "clean beats corrected; fewer symbols beat more"
        );
        assert_eq!(s.duplicate_keys, 2);
        assert_eq!(s.conflict_keys, 1);
        assert_eq!(s.inputs[0].conflicts, 1);
        assert_eq!(s.inputs[1].duplicates, 2);
        assert_eq!(
            out[1].copy.payload.frame[0], 2,
            "the clean copy of the conflict is kept"
        );
        check_identity(&s);
    }

    #[test]
    fn wrong_scid_is_never_merged_and_late_and_repeated_frames_are_counted() {
        let mut other = copy(1, 5, AOS, Quality::Clean, 7);
        other.scid = 154;
        let a = vec![
            copy(1, 5, AOS, Quality::Clean, 5),
            copy(1, 5, AOS, Quality::Clean, 5),
            copy(1, 6, AOS, Quality::Clean, 6),
        ];
        let b = vec![other, copy(1, 7, AOS, Quality::Clean, 7)];
        let (out, s, _) = run(vec![a, b], 16);
        assert_eq!(
            out.iter().map(|m| m.copy.count).collect::<Vec<_>>(),
            [5, 6, 7]
        );
        assert_eq!(s.inputs[1].wrong_scid, 1);
        assert_eq!(s.inputs[0].repeats, 1);
        check_identity(&s);
    }

    #[test]
    fn wrapping_counters_align_across_copies() {
        // TM: 8-bit counts; A starts 100 frames after B, across a wrap.
        let full: Vec<u32> = (200..600).collect();
        let b: Vec<_> = full[..250]
            .iter()
            .map(|&c| copy(2, c, 256, Quality::Unchecked, (c % 251) as u8))
            .collect();
        let a: Vec<_> = full[100..]
            .iter()
            .map(|&c| copy(2, c, 256, Quality::Unchecked, (c % 251) as u8))
            .collect();
        let (out, s, _) = run(vec![a, b], 64);
        assert_eq!(out.len(), 400);
        assert_eq!(s.duplicate_keys, 150);
        assert_eq!(s.inputs[0].unique, 150);
        assert_eq!(s.inputs[1].unique, 100);
        let counts: Vec<u32> = out.iter().map(|m| m.copy.payload.count as u32).collect();
        assert_eq!(counts, full, "in counter order, across the wraps");
        check_identity(&s);
    }

    #[test]
    fn a_virtual_channel_one_copy_lacks_is_decided_after_the_window() {
        // B never carries VC 9: its frames are decided once B ran `window` frames past it.
        let a: Vec<_> = (0..4000)
            .map(|c| {
                copy(
                    if c % 2 == 0 { 1 } else { 9 },
                    c / 2,
                    AOS,
                    Quality::Clean,
                    1,
                )
            })
            .collect();
        let b: Vec<_> = (0..2000)
            .map(|c| copy(1, c, AOS, Quality::Clean, 1))
            .collect();
        let (out, s, peak) = run(vec![a, b], 8);
        assert_eq!(out.len(), 4000);
        assert_eq!(s.inputs[0].unique, 2000);
        assert_eq!(s.duplicate_keys, 2000);
        // Reorder depth 16 on two VCs of two inputs, plus the window: never the whole pass.
        assert!(peak <= 100, "memory bounded by the windows, got {peak}");
        check_identity(&s);
    }

    proptest! {
        /// A pass split into copies with random losses, reordering within the window and
        /// random VC interleaving: the merge holds every key some copy had, once, in counter
        /// order per VC, and the counts equal the ground truth of the split.
        #[test]
        fn merge_equals_the_union_of_the_copies(
            len in 1usize..400,
            start in 0u32..(1 << 24),
            losses in proptest::collection::vec((0u8..4, 0u8..4), 400),
            swaps in proptest::collection::vec(0usize..400, 0..20),
        ) {
            let vcid = |k: usize| if k.is_multiple_of(3) { 6 } else { 16 };
            let mut per_vc: std::collections::BTreeMap<u8, u32> = Default::default();
            let frames: Vec<(u8, u32)> = (0..len).map(|k| {
                let v = vcid(k);
                let c = per_vc.entry(v).or_insert(start);
                let out = (v, *c % AOS);
                *c += 1;
                out
            }).collect();
            let mut copies = vec![Vec::new(), Vec::new()];
            let mut truth = (0u64, 0u64, 0u64); // (only a, only b, both)
            for (k, &(v, c)) in frames.iter().enumerate() {
                let (la, lb) = losses[k];
                let (ha, hb) = (la != 0, lb != 0);
                if ha { copies[0].push(copy(v, c, AOS, Quality::Clean, (k % 200) as u8)); }
                if hb { copies[1].push(copy(v, c, AOS, Quality::Clean, (k % 200) as u8)); }
                match (ha, hb) {
                    (true, false) => truth.0 += 1,
                    (false, true) => truth.1 += 1,
                    (true, true) => truth.2 += 1,
                    _ => {}
                }
            }
            for &s in &swaps {
                let n = copies[0].len();
                if n > 1 { copies[0].swap(s % (n - 1), s % (n - 1) + 1); }
            }
            let (out, s, _) = run(copies, 32);
            check_identity(&s);
            prop_assert_eq!(s.inputs[0].unique, truth.0);
            prop_assert_eq!(s.inputs[1].unique, truth.1);
            prop_assert_eq!(s.duplicate_keys, truth.2);
            prop_assert_eq!(out.len() as u64, truth.0 + truth.1 + truth.2);
            for v in [6u8, 16] {
                let got: Vec<u32> = out.iter().filter(|m| m.copy.vcid == v).map(|m| m.copy.count).collect();
                let want: Vec<u32> = frames.iter().enumerate()
                    .filter(|(k, (fv, _))| *fv == v && (losses[*k].0 != 0 || losses[*k].1 != 0))
                    .map(|(_, (_, c))| *c).collect();
                prop_assert_eq!(got, want);
            }
        }
    }
}
