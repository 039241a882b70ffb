//! Virtual channel demultiplexing and frame-counter gap accounting
//! (CCSDS 732.0-B-4 §4.1.2.4 "Virtual Channel Frame Count", CCSDS 132.0-B-3 §4.1.2.5).
//!
//! Counters are read from headers that passed Reed-Solomon. A frame whose count is not the
//! previous count + 1 (modulo the counter size) marks a gap; the number of frames missing is the
//! modular difference minus one. A repeated count is counted as a repeat, not as a full wrap of
//! missing frames. On wide counters (AOS, 2^24 or more) a forward jump of half the counter range
//! or more cannot be loss within one pass — it is a counter reset or a frame from the past
//! (replay, reordering) — and is counted as a reset, not as millions of missing frames.

/// What a frame's counter says about the frames before it on its virtual channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Continuity {
    /// First frame seen on this virtual channel.
    First,
    /// Count is exactly one more than the previous frame's.
    Continuous,
    /// `missing` frames were lost before this one.
    Gap {
        /// Frames missing between the previous frame and this one.
        missing: u32,
    },
    /// Same count as the previous frame (a duplicate or a counter that does not run).
    Repeat,
    /// The counter jumped backwards or reset (wide counters only); nothing is counted missing.
    Reset,
}

impl Continuity {
    /// True when the frame follows the previous one directly (or is the first).
    pub fn is_continuous(self) -> bool {
        matches!(self, Continuity::First | Continuity::Continuous)
    }
}

/// Per-virtual-channel counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VcCounters {
    /// Frames with a good header on this VC.
    pub frames: u64,
    /// Frames missing according to the frame counter.
    pub missing: u64,
    /// Number of discontinuities.
    pub gaps: u64,
    /// Frames that repeated the previous count.
    pub repeats: u64,
    /// Counter resets or backward jumps.
    pub resets: u64,
    #[serde(skip)]
    last: Option<u32>,
}

/// Frame-counter state for up to 64 virtual channels.
#[derive(Clone, Debug)]
pub struct VcTracker {
    channels: [VcCounters; 64],
}

impl Default for VcTracker {
    fn default() -> Self {
        Self {
            channels: [VcCounters::default(); 64],
        }
    }
}

impl VcTracker {
    /// Records a frame with `count` (modulo `modulus`) on `vcid` and says how it continues.
    pub fn observe(&mut self, vcid: u8, count: u32, modulus: u32) -> Continuity {
        let Some(ch) = self.channels.get_mut(usize::from(vcid & 0x3F)) else {
            return Continuity::First;
        };
        ch.frames += 1;
        let modulus = modulus.max(1);
        let c = match ch.last {
            None => Continuity::First,
            Some(last) => {
                let m = u64::from(modulus);
                let step = (u64::from(count) % m + m - u64::from(last) % m) % m;
                match step as u32 {
                    1 => Continuity::Continuous,
                    0 => Continuity::Repeat,
                    n if modulus >= 1 << 16 && n >= modulus / 2 => Continuity::Reset,
                    n => Continuity::Gap { missing: n - 1 },
                }
            }
        };
        match c {
            Continuity::Gap { missing } => {
                ch.gaps += 1;
                ch.missing += u64::from(missing);
            }
            Continuity::Repeat => ch.repeats += 1,
            Continuity::Reset => ch.resets += 1,
            Continuity::First | Continuity::Continuous => {}
        }
        ch.last = Some(count);
        c
    }

    /// Counters of the channels that have seen at least one frame, by VCID.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &VcCounters)> + '_ {
        (0u8..)
            .zip(self.channels.iter())
            .filter(|(_, c)| c.frames > 0)
    }

    /// Counters of one channel.
    pub fn get(&self, vcid: u8) -> Option<&VcCounters> {
        self.channels
            .get(usize::from(vcid))
            .filter(|c| c.frames > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuity_gap_wrap_repeat() {
        let mut t = VcTracker::default();
        assert_eq!(t.observe(16, 10, 1 << 24), Continuity::First);
        assert_eq!(t.observe(16, 11, 1 << 24), Continuity::Continuous);
        assert_eq!(t.observe(16, 14, 1 << 24), Continuity::Gap { missing: 2 });
        assert_eq!(t.observe(16, 14, 1 << 24), Continuity::Repeat);
        // independent channel
        assert_eq!(t.observe(6, 0xFF_FFFF, 1 << 24), Continuity::First);
        assert_eq!(
            t.observe(6, 0, 1 << 24),
            Continuity::Continuous,
            "24-bit wrap"
        );
        assert_eq!(t.observe(6, 3, 1 << 24), Continuity::Gap { missing: 2 });
        // TM 8-bit counter wraps at 256
        assert_eq!(t.observe(1, 254, 256), Continuity::First);
        assert_eq!(t.observe(1, 1, 256), Continuity::Gap { missing: 2 });
        let c16 = t.get(16).unwrap();
        assert_eq!(
            (c16.frames, c16.missing, c16.gaps, c16.repeats),
            (4, 2, 1, 1)
        );
        let c6 = t.get(6).unwrap();
        assert_eq!((c6.frames, c6.missing, c6.gaps), (3, 2, 1));
        assert_eq!(t.iter().map(|(v, _)| v).collect::<Vec<_>>(), vec![1, 6, 16]);
        assert!(t.get(7).is_none());
    }

    #[test]
    fn backward_jump_on_a_wide_counter_is_a_reset_not_millions_missing() {
        let mut t = VcTracker::default();
        t.observe(30, 1000, 1 << 24);
        assert_eq!(t.observe(30, 999, 1 << 24), Continuity::Reset);
        assert_eq!(t.observe(30, 1000, 1 << 24), Continuity::Continuous);
        assert_eq!(t.observe(30, 5, 1 << 24), Continuity::Reset);
        let c = t.get(30).unwrap();
        assert_eq!((c.missing, c.gaps, c.resets), (0, 0, 2));
        // An 8-bit TM counter keeps plain modular arithmetic: 200 lost frames are 200 lost.
        t.observe(2, 10, 256);
        assert_eq!(t.observe(2, 211, 256), Continuity::Gap { missing: 200 });
    }
}
