//! Pass plot: frames per second, Reed-Solomon corrections per second and lock state over the
//! pass, as a PNG (`passes/<id>/plot.png`, `GET /api/v1/passes/{id}/plot.png`).
//!
//! Layout, top to bottom, one column per second of the pass (stretched to the image width):
//! 1. good frames/s (green) with rejected frames/s stacked above in red;
//! 2. RS codewords corrected/s (orange);
//! 3. soft-symbol inputs only: the estimated channel bit error rate before Viterbi (blue),
//!    on a log scale from 1e-5 (bottom) to 0.5 (top), per second;
//! 4. lock state: green while locked, grey while searching.
//!
//! Faint vertical lines mark each minute.

use image::{Rgb, RgbImage};

/// Longest pass kept at one-second resolution (a day); later seconds land in the last bucket.
const MAX_SECONDS: usize = 86_400;

/// Per-second counters of one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Second {
    /// Good frames.
    pub good: u32,
    /// Rejected frames.
    pub rejected: u32,
    /// RS codewords corrected.
    pub corrected: u32,
    /// Locked at any time in this second.
    pub locked: bool,
    /// Soft input: channel bits compared with the re-encoded Viterbi output.
    pub channel_bits: u64,
    /// Soft input: of those, in error.
    pub channel_errors: u64,
}

/// Colour of the channel BER trace.
pub const BER_COLOUR: Rgb<u8> = Rgb([60, 90, 200]);
/// Channel BER at the bottom and top of its panel.
const BER_RANGE: (f64, f64) = (1e-5, 0.5);

/// The pass timeline, bounded in memory.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    seconds: Vec<Second>,
}

impl Timeline {
    /// The bucket of second `s` since AOS.
    pub fn at(&mut self, s: u64) -> &mut Second {
        let i = (s as usize).min(MAX_SECONDS - 1);
        if self.seconds.len() <= i {
            self.seconds.resize(i + 1, Second::default());
        }
        // In bounds: resized just above.
        let len = self.seconds.len();
        &mut self.seconds[i.min(len - 1)]
    }

    /// Seconds recorded.
    pub fn len(&self) -> usize {
        self.seconds.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.seconds.is_empty()
    }

    /// Renders the plot.
    pub fn render(&self, width: u32, height: u32) -> RgbImage {
        let (w, h) = (width.max(60), height.max(60));
        let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
        let n = self.seconds.len().max(1);
        // The channel BER panel only for soft-symbol inputs.
        let soft = self.seconds.iter().any(|s| s.channel_bits > 0);
        let (frames_h, rs_h, ber_h) = if soft {
            (h * 40 / 100, h * 20 / 100, h * 25 / 100)
        } else {
            (h * 55 / 100, h * 30 / 100, 0)
        };
        let ber_top = frames_h + rs_h;
        let lock_top = frames_h + rs_h + ber_h + 4;
        let max_frames = self
            .seconds
            .iter()
            .map(|s| s.good + s.rejected)
            .max()
            .unwrap_or(0)
            .max(1);
        let max_rs = self
            .seconds
            .iter()
            .map(|s| s.corrected)
            .max()
            .unwrap_or(0)
            .max(1);
        for x in 0..w {
            let i = (x as usize * n / w as usize).min(n - 1);
            let sec = self.seconds.get(i).copied().unwrap_or_default();
            if i.is_multiple_of(60) && i > 0 {
                for y in 0..h {
                    img.put_pixel(x, y, Rgb([225, 225, 225]));
                }
            }
            let good = frames_h * sec.good / max_frames;
            let bad = frames_h * sec.rejected / max_frames;
            for y in 0..good.min(frames_h) {
                img.put_pixel(x, frames_h - 1 - y, Rgb([40, 160, 60]));
            }
            for y in good..(good + bad).min(frames_h) {
                img.put_pixel(x, frames_h - 1 - y, Rgb([210, 40, 40]));
            }
            let rs = rs_h * sec.corrected / max_rs;
            for y in 0..rs.min(rs_h) {
                img.put_pixel(x, frames_h + rs_h - 1 - y, Rgb([240, 140, 20]));
            }
            if ber_h > 0 && sec.channel_bits > 0 {
                let ber = (sec.channel_errors as f64 / sec.channel_bits as f64)
                    .clamp(BER_RANGE.0, BER_RANGE.1);
                let frac = (ber / BER_RANGE.0).log10() / (BER_RANGE.1 / BER_RANGE.0).log10();
                let bar = ((f64::from(ber_h - 1) * frac).round() as u32).max(1);
                for y in 0..bar.min(ber_h) {
                    img.put_pixel(x, ber_top + ber_h - 1 - y, BER_COLOUR);
                }
            }
            let colour = if sec.locked {
                Rgb([40, 160, 60])
            } else {
                Rgb([170, 170, 170])
            };
            for y in lock_top..h {
                img.put_pixel(x, y, colour);
            }
        }
        // Panel separators.
        for x in 0..w {
            img.put_pixel(x, frames_h, Rgb([0, 0, 0]));
            img.put_pixel(x, frames_h + rs_h, Rgb([0, 0, 0]));
            if ber_h > 0 {
                img.put_pixel(x, ber_top + ber_h, Rgb([0, 0, 0]));
            }
        }
        img
    }

    /// PNG bytes of [`Timeline::render`].
    pub fn png(&self, width: u32, height: u32) -> Result<Vec<u8>, image::ImageError> {
        let mut out = std::io::Cursor::new(Vec::new());
        self.render(width, height)
            .write_to(&mut out, image::ImageFormat::Png)?;
        Ok(out.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plot_shows_frames_corrections_and_lock() {
        let mut t = Timeline::default();
        for s in 0..120 {
            let b = t.at(s);
            b.good = if s < 60 { 100 } else { 50 };
            b.rejected = if s == 90 { 50 } else { 0 };
            b.corrected = if s >= 100 { 400 } else { 0 };
            b.locked = s < 110;
        }
        let img = t.render(240, 100);
        let green = Rgb([40, 160, 60]);
        // Second 10 (x = 20): full-height good frames at the bottom of the frames panel.
        assert_eq!(*img.get_pixel(20, 54), green);
        // Second 70 (x = 140): half height only.
        assert_eq!(*img.get_pixel(141, 10), Rgb([255, 255, 255]));
        // Second 90 (x = 180): rejected frames in red above the good ones.
        assert_eq!(*img.get_pixel(181, 54 - 27), Rgb([210, 40, 40]));
        // RS panel: corrections only from second 100 (x = 200).
        assert_eq!(*img.get_pixel(210, 83), Rgb([240, 140, 20]));
        assert_eq!(*img.get_pixel(30, 83), Rgb([255, 255, 255]));
        // Lock strip: locked at 50 s, searching at 115 s.
        assert_eq!(*img.get_pixel(101, 98), green);
        assert_eq!(*img.get_pixel(231, 98), Rgb([170, 170, 170]));
        let png = t.png(240, 100).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // No soft input: no channel BER panel anywhere.
        assert!(!img.pixels().any(|p| *p == BER_COLOUR));
        // Memory is bounded whatever the pass length.
        t.at(10_000_000).good += 1;
        assert_eq!(t.len(), MAX_SECONDS);
    }

    #[test]
    fn soft_input_adds_the_channel_ber_panel() {
        let mut t = Timeline::default();
        for s in 0..100 {
            let b = t.at(s);
            b.good = 10;
            b.locked = true;
            b.channel_bits = 100_000;
            // 1e-3 for the first half, 0.1 for the second.
            b.channel_errors = if s < 50 { 100 } else { 10_000 };
        }
        let (w, h) = (200, 200);
        let img = t.render(w, h);
        // Panel rows 120..170 (40 % + 20 %, 25 % high); log scale 1e-5..0.5 (4.7 decades).
        let column = |x: u32| {
            (120..170)
                .filter(|&y| *img.get_pixel(x, y) == BER_COLOUR)
                .count()
        };
        let low = column(40);
        let high = column(160);
        // 1e-3: 2 decades of 4.7 -> 21 of 49 rows; 0.1: 4 decades -> 42 rows.
        assert!((20..=22).contains(&low), "{low}");
        assert!((41..=43).contains(&high), "{high}");
        // The lock strip is still at the bottom.
        assert_eq!(*img.get_pixel(100, 198), Rgb([40, 160, 60]));
    }
}
