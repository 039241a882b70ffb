//! The pass timeline: frames per second, Reed-Solomon corrections per second and lock state,
//! one bucket per second of reception since AOS. At LOS it is written next to the pass record
//! twice:
//! - `timeline.json` (`GET /api/v1/passes/{id}/timeline`), the numbers: see [`TimelineJson`];
//!   the web map draws its pass panel from it;
//! - `plot.png` (`GET /api/v1/passes/{id}/plot.png`), drawn with `plotters`: UTC time on x;
//!   top, good frames/s (green) and rejected frames/s (red) on a labelled y axis; middle, RS
//!   codewords corrected/s (orange); bottom, the lock strip (green locked, grey searching).
//!   AOS and LOS are vertical lines with their times; gaps (seconds inside the pass without a
//!   good frame) are shaded pink over the two plots. Text uses DejaVu Sans embedded in the
//!   binary, so the plot looks the same on a server without fonts.

use std::sync::Once;
use std::time::{Duration, SystemTime};

use crate::error::Error;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

/// Longest pass kept at one-second resolution (a day); later seconds land in the last bucket.
const MAX_SECONDS: usize = 86_400;
/// The font family name the plot asks for (registered once from the embedded DejaVu Sans).
const FONT: &str = "sans-serif";

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
    /// Soft-symbol input: channel bits compared with the re-encoded Viterbi output.
    pub channel_bits: u64,
    /// Of those, the bits that differed (the estimated channel bit errors).
    pub channel_errors: u64,
}

impl Second {
    /// The estimated channel bit error rate before Viterbi, when bits were compared.
    pub fn channel_ber(&self) -> Option<f64> {
        (self.channel_bits > 0).then(|| self.channel_errors as f64 / self.channel_bits as f64)
    }
}

/// Range of the channel BER axis (log scale).
const BER_RANGE: (f64, f64) = (1e-5, 0.5);

/// The pass timeline, bounded in memory.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    seconds: Vec<Second>,
}

/// A run of seconds `[start_s, end_s)` since AOS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Span {
    pub start_s: u64,
    pub end_s: u64,
}

/// A run of seconds with one lock state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockSpan {
    pub start_s: u64,
    pub end_s: u64,
    pub locked: bool,
}

/// `timeline.json`: per-second series (index = seconds since AOS, all the same length) and
/// the marks the plot draws.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimelineJson {
    /// AOS, RFC 3339 UTC (second 0).
    pub aos: String,
    /// LOS (the last frame), RFC 3339 UTC.
    pub los: String,
    /// LOS as seconds since AOS.
    pub los_s: f64,
    /// Width of one bucket (always 1 s).
    pub bucket_s: u32,
    /// Good frames per second.
    pub frames_good: Vec<u32>,
    /// Rejected frames per second.
    pub frames_rejected: Vec<u32>,
    /// RS codewords corrected per second.
    pub rs_corrected: Vec<u32>,
    /// Locked at any time in the second.
    pub locked: Vec<bool>,
    /// Seconds inside the pass with no good frame, as runs.
    pub gaps: Vec<Span>,
    /// Lock state as runs.
    pub lock: Vec<LockSpan>,
    /// Soft-symbol inputs only: the estimated channel bit error rate before Viterbi per second
    /// (`null` in a second without compared bits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_ber: Option<Vec<Option<f64>>>,
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

    /// Runs of consecutive seconds for which `f` holds.
    fn runs(&self, f: impl Fn(&Second) -> bool) -> Vec<Span> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, s) in self.seconds.iter().enumerate() {
            match (f(s), start) {
                (true, None) => start = Some(i as u64),
                (false, Some(b)) => {
                    out.push(Span {
                        start_s: b,
                        end_s: i as u64,
                    });
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(b) = start {
            out.push(Span {
                start_s: b,
                end_s: self.seconds.len() as u64,
            });
        }
        out
    }

    /// Seconds inside the pass (between the first and the last second holding a good frame)
    /// that hold none.
    pub fn gaps(&self) -> Vec<Span> {
        let first = self.seconds.iter().position(|s| s.good > 0);
        let last = self.seconds.iter().rposition(|s| s.good > 0);
        let (Some(first), Some(last)) = (first, last) else {
            return Vec::new();
        };
        self.runs(|s| s.good == 0)
            .into_iter()
            .filter(|g| g.start_s > first as u64 && g.end_s <= last as u64)
            .collect()
    }

    /// The lock state as runs.
    pub fn lock_spans(&self) -> Vec<LockSpan> {
        let mut out = self
            .runs(|s| s.locked)
            .into_iter()
            .map(|r| LockSpan {
                start_s: r.start_s,
                end_s: r.end_s,
                locked: true,
            })
            .chain(self.runs(|s| !s.locked).into_iter().map(|r| LockSpan {
                start_s: r.start_s,
                end_s: r.end_s,
                locked: false,
            }))
            .collect::<Vec<_>>();
        out.sort_by_key(|r| r.start_s);
        out
    }

    /// The numbers of `timeline.json`.
    pub fn to_json(&self, aos: SystemTime, los: SystemTime) -> TimelineJson {
        TimelineJson {
            aos: humantime::format_rfc3339_millis(aos).to_string(),
            los: humantime::format_rfc3339_millis(los).to_string(),
            los_s: los.duration_since(aos).map_or(0.0, |d| d.as_secs_f64()),
            bucket_s: 1,
            frames_good: self.seconds.iter().map(|s| s.good).collect(),
            frames_rejected: self.seconds.iter().map(|s| s.rejected).collect(),
            rs_corrected: self.seconds.iter().map(|s| s.corrected).collect(),
            locked: self.seconds.iter().map(|s| s.locked).collect(),
            gaps: self.gaps(),
            lock: self.lock_spans(),
            channel_ber: self
                .is_soft()
                .then(|| self.seconds.iter().map(Second::channel_ber).collect()),
        }
    }

    /// Whether the pass came from soft symbols (some second compared channel bits).
    pub fn is_soft(&self) -> bool {
        self.seconds.iter().any(|s| s.channel_bits > 0)
    }

    /// Draws the plot into an RGB buffer of `width` × `height`.
    pub fn render(
        &self,
        aos: SystemTime,
        los: SystemTime,
        width: u32,
        height: u32,
    ) -> Result<image::RgbImage, Error> {
        register_font();
        let (w, h) = (width.max(320), height.max(200));
        let mut buf = vec![255u8; w as usize * h as usize * 3];
        draw(self, aos, los, &mut buf, (w, h)).map_err(|e| Error::PlotDraw(e.to_string()))?;
        image::RgbImage::from_raw(w, h, buf)
            .ok_or_else(|| Error::PlotDraw("buffer size does not match the image".into()))
    }

    /// PNG bytes of [`Timeline::render`].
    pub fn png(
        &self,
        aos: SystemTime,
        los: SystemTime,
        width: u32,
        height: u32,
    ) -> Result<Vec<u8>, Error> {
        let mut out = std::io::Cursor::new(Vec::new());
        self.render(aos, los, width, height)?
            .write_to(&mut out, image::ImageFormat::Png)?;
        Ok(out.into_inner())
    }
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // DejaVu Sans is a valid TrueType font; if it were refused, text would fail to draw
        // and the plot would be reported as an error, not drawn without labels.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// `HH:MM:SS` of `aos + s` seconds.
fn clock(aos: SystemTime, s: f64) -> String {
    let t = aos + Duration::from_secs_f64(s.max(0.0));
    let text = humantime::format_rfc3339_seconds(t).to_string();
    text.get(11..19).unwrap_or("").to_owned()
}

const GOOD: RGBColor = RGBColor(40, 160, 60);
const BAD: RGBColor = RGBColor(210, 40, 40);
const RS: RGBColor = RGBColor(240, 140, 20);
const GREY: RGBColor = RGBColor(170, 170, 170);
const GAP: RGBColor = RGBColor(255, 205, 215);
const MARK: RGBColor = RGBColor(40, 70, 160);
const BER: RGBColor = RGBColor(60, 90, 200);

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(
    t: &Timeline,
    aos: SystemTime,
    los: SystemTime,
    buf: &mut [u8],
    size: (u32, u32),
) -> DrawResult {
    let root = BitMapBackend::with_buffer(buf, size).into_drawing_area();
    root.fill(&WHITE)?;
    let n = t.seconds.len().max(1) as f64;
    let los_s = los.duration_since(aos).map_or(0.0, |d| d.as_secs_f64());
    let x_max = n.max(los_s).max(1.0);
    let title = format!(
        "Pass {} – {} UTC ({} s)",
        humantime::format_rfc3339_seconds(aos),
        clock(aos, los_s),
        los_s.round()
    );
    let root = root.titled(&title, (FONT, 15))?;
    let h = size.1.saturating_sub(22);
    let soft = t.is_soft();
    let (frames_area, rest) = root.split_vertically(h * if soft { 36 } else { 46 } / 100);
    let (rs_area, rest) = rest.split_vertically(h * if soft { 22 } else { 34 } / 100);
    let (ber_area, lock_area) = rest.split_vertically(if soft { h * 22 / 100 } else { 0 });
    let fmt = |x: &f64| clock(aos, *x);
    let gaps = t.gaps();
    let label_w = 84;
    // Whole seconds only: a short pass gets fewer ticks, never two with the same time.
    let x_ticks = (x_max as usize + 1).clamp(2, 8);
    let y_ticks = |max: u32| (max as usize + 1).clamp(2, 5);
    let int = |y: &f64| format!("{y:.0}");

    let max_frames = t
        .seconds
        .iter()
        .map(|s| s.good + s.rejected)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut fc = ChartBuilder::on(&frames_area)
        .margin_right(30)
        .margin_left(10)
        .margin_top(4)
        .x_label_area_size(0)
        .y_label_area_size(label_w)
        .build_cartesian_2d(0f64..x_max, 0f64..f64::from(max_frames) * 1.1)?;
    fc.configure_mesh()
        .y_desc("frames/s")
        .x_labels(x_ticks)
        .y_labels(y_ticks(max_frames))
        .x_label_formatter(&fmt)
        .y_label_formatter(&int)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let ymax = f64::from(max_frames) * 1.1;
    fc.draw_series(gaps.iter().map(|g| {
        Rectangle::new(
            [(g.start_s as f64, 0.0), (g.end_s as f64, ymax)],
            GAP.filled(),
        )
    }))?;
    let step = |f: fn(&Second) -> u32| {
        t.seconds
            .iter()
            .enumerate()
            .flat_map(move |(i, s)| {
                let v = f64::from(f(s));
                [(i as f64, v), (i as f64 + 1.0, v)]
            })
            .collect::<Vec<_>>()
    };
    fc.draw_series(LineSeries::new(step(|s| s.good), GOOD.stroke_width(2)))?
        .label("good")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], GOOD.stroke_width(2)));
    fc.draw_series(LineSeries::new(step(|s| s.rejected), BAD.stroke_width(1)))?
        .label("rejected")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BAD.stroke_width(2)));
    // A LOS close to AOS (a short or replayed pass) is labelled on its right, a line lower.
    let near = los_s < x_max * 0.15;
    let line = ymax / 10.0;
    for (x, name, h, y) in [
        (0.0, "AOS", HPos::Left, ymax),
        (
            los_s,
            "LOS",
            if near { HPos::Left } else { HPos::Right },
            if near { ymax - line } else { ymax },
        ),
    ] {
        fc.draw_series(std::iter::once(PathElement::new(
            [(x, 0.0), (x, ymax)],
            MARK.stroke_width(2),
        )))?;
        let style = (FONT, 12)
            .into_font()
            .color(&MARK)
            .pos(Pos::new(h, VPos::Top));
        let text = match h {
            HPos::Left => format!(" {name} {}", clock(aos, x)),
            _ => format!("{name} {} ", clock(aos, x)),
        };
        fc.draw_series(std::iter::once(Text::new(text, (x, y), style)))?;
    }
    if !gaps.is_empty() {
        fc.draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (0.0, 0.0)],
            GAP.filled(),
        )))?
        .label("gap (no good frame)")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], GAP.filled()));
    }
    fc.configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;

    let max_rs = t
        .seconds
        .iter()
        .map(|s| s.corrected)
        .max()
        .unwrap_or(0)
        .max(1);
    let rs_ymax = f64::from(max_rs) * 1.1;
    let mut rc = ChartBuilder::on(&rs_area)
        .margin_right(30)
        .margin_left(10)
        .margin_top(4)
        .x_label_area_size(0)
        .y_label_area_size(label_w)
        .build_cartesian_2d(0f64..x_max, 0f64..rs_ymax)?;
    rc.configure_mesh()
        .y_desc("RS corrected/s")
        .x_labels(x_ticks)
        .y_labels(y_ticks(max_rs))
        .x_label_formatter(&fmt)
        .y_label_formatter(&int)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    rc.draw_series(gaps.iter().map(|g| {
        Rectangle::new(
            [(g.start_s as f64, 0.0), (g.end_s as f64, rs_ymax)],
            GAP.filled(),
        )
    }))?;
    rc.draw_series(LineSeries::new(step(|s| s.corrected), RS.stroke_width(2)))?;
    for x in [0.0, los_s] {
        rc.draw_series(std::iter::once(PathElement::new(
            [(x, 0.0), (x, rs_ymax)],
            MARK.stroke_width(2),
        )))?;
    }

    if soft {
        let mut bc = ChartBuilder::on(&ber_area)
            .margin_right(30)
            .margin_left(10)
            .margin_top(4)
            .x_label_area_size(0)
            .y_label_area_size(label_w)
            .build_cartesian_2d(0f64..x_max, (BER_RANGE.0..BER_RANGE.1).log_scale())?;
        bc.configure_mesh()
            .y_desc("channel BER")
            .x_labels(x_ticks)
            .y_labels(5)
            .x_label_formatter(&fmt)
            .y_label_formatter(&|y: &f64| format!("{y:.0e}"))
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        bc.draw_series(t.seconds.iter().enumerate().filter_map(|(i, s)| {
            let ber = s.channel_ber()?.clamp(BER_RANGE.0, BER_RANGE.1);
            Some(PathElement::new(
                [(i as f64, ber), (i as f64 + 1.0, ber)],
                BER.stroke_width(2),
            ))
        }))?;
    }

    let mut lc = ChartBuilder::on(&lock_area)
        .margin_right(30)
        .margin_left(10)
        .margin_top(4)
        .x_label_area_size(38)
        .y_label_area_size(label_w)
        .build_cartesian_2d(0f64..x_max, 0f64..1f64)?;
    lc.configure_mesh()
        .y_desc("lock")
        .x_desc("UTC")
        .x_labels(x_ticks)
        .y_labels(0)
        .x_label_formatter(&fmt)
        .y_label_formatter(&int)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .disable_y_mesh()
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    lc.draw_series(t.lock_spans().into_iter().map(|r| {
        Rectangle::new(
            [(r.start_s as f64, 0.15), (r.end_s as f64, 0.85)],
            if r.locked { GOOD } else { GREY }.filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn sample() -> Timeline {
        let mut t = Timeline::default();
        for s in 0..120 {
            let b = t.at(s);
            b.good = if s < 60 { 100 } else { 50 };
            if (30..35).contains(&s) {
                b.good = 0;
            }
            b.rejected = if s == 90 { 50 } else { 0 };
            b.corrected = if s >= 100 { 400 } else { 0 };
            b.locked = s < 110;
        }
        t
    }

    #[test]
    fn timeline_json_has_the_series_gaps_and_lock_runs() {
        let t = sample();
        let aos = SystemTime::UNIX_EPOCH + Duration::from_secs(1_671_567_900);
        let j = t.to_json(aos, aos + Duration::from_secs(119));
        assert_eq!(j.aos, "2022-12-20T20:25:00.000Z");
        assert_eq!(j.los_s, 119.0);
        assert_eq!(j.frames_good.len(), 120);
        assert_eq!(j.frames_good[10], 100);
        assert_eq!(j.frames_good[70], 50);
        assert_eq!(j.frames_rejected[90], 50);
        assert_eq!(j.rs_corrected[100], 400);
        assert_eq!(
            j.gaps,
            [Span {
                start_s: 30,
                end_s: 35
            }]
        );
        assert_eq!(
            j.lock,
            [
                LockSpan {
                    start_s: 0,
                    end_s: 110,
                    locked: true
                },
                LockSpan {
                    start_s: 110,
                    end_s: 120,
                    locked: false
                }
            ]
        );
        // Leading and trailing seconds without frames are not gaps.
        let mut t = Timeline::default();
        t.at(0).locked = true;
        t.at(2).good = 1;
        t.at(5).good = 1;
        t.at(7).locked = true;
        assert_eq!(
            t.gaps(),
            [Span {
                start_s: 3,
                end_s: 5
            }]
        );
    }

    #[test]
    fn soft_input_adds_the_channel_ber_series_and_panel() {
        let aos = SystemTime::UNIX_EPOCH + Duration::from_secs(1_671_567_900);
        let los = aos + Duration::from_secs(99);
        let plain = sample();
        assert!(plain.to_json(aos, los).channel_ber.is_none(), "not soft");
        let blue = Rgb([60, 90, 200]);
        let img = plain.render(aos, los, 900, 360).unwrap();
        assert_eq!(img.pixels().filter(|p| **p == blue).count(), 0);
        let mut t = Timeline::default();
        for s in 0..100 {
            let b = t.at(s);
            b.good = 10;
            b.locked = true;
            b.channel_bits = 100_000;
            // 1e-3 for the first half, 0.1 for the second.
            b.channel_errors = if s < 50 { 100 } else { 10_000 };
        }
        let j = t.to_json(aos, los);
        let ber = j.channel_ber.unwrap();
        assert_eq!(ber.len(), 100);
        assert_eq!((ber[10], ber[90]), (Some(0.001), Some(0.1)));
        let img = t.render(aos, los, 900, 360).unwrap();
        // The BER trace: the 0.1 half is drawn higher (smaller y) than the 1e-3 half.
        let top_blue = |x: u32| (0..360).find(|&y| *img.get_pixel(x, y) == blue);
        let (low, high) = (top_blue(300).unwrap(), top_blue(700).unwrap());
        assert!(high + 20 < low, "0.1 at y {high}, 1e-3 at y {low}");
    }

    #[test]
    fn plot_has_axes_labels_and_marks() {
        let t = sample();
        let aos = SystemTime::UNIX_EPOCH + Duration::from_secs(1_671_567_900);
        let img = t
            .render(aos, aos + Duration::from_secs(119), 900, 360)
            .unwrap();
        assert_eq!(img.dimensions(), (900, 360));
        if let Some(p) = std::env::var_os("PLOT_OUT") {
            img.save_with_format(p, image::ImageFormat::Png).unwrap();
        }
        let count = |c: Rgb<u8>| img.pixels().filter(|p| **p == c).count();
        // Series, gap shading, lock strip and AOS/LOS marks are all drawn.
        assert!(count(Rgb([40, 160, 60])) > 500, "good frames and lock");
        assert!(count(Rgb([240, 140, 20])) > 20, "RS corrections");
        assert!(count(Rgb([255, 205, 215])) > 500, "gap shading");
        assert!(count(Rgb([170, 170, 170])) > 200, "searching");
        assert!(count(Rgb([40, 70, 160])) > 300, "AOS/LOS lines");
        // The x axis: a black line across the plot width under the lock strip.
        let black = |y: u32| {
            (0..900)
                .filter(|&x| *img.get_pixel(x, y) == Rgb([0, 0, 0]))
                .count()
        };
        assert!((250..340).any(|y| black(y) > 700), "no x axis");
        // Text: dark anti-aliased glyph pixels left of the plots (tick numbers, axis titles).
        let text = (0..60)
            .flat_map(|x| (0..360).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&v| v < 160))
            .count();
        assert!(text > 150, "no tick labels ({text} dark pixels)");
        let png = t
            .png(aos, aos + Duration::from_secs(119), 900, 360)
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        // An empty timeline still draws (axes only).
        assert!(Timeline::default().png(aos, aos, 900, 360).is_ok());
        // Memory is bounded whatever the pass length.
        let mut t = t;
        t.at(10_000_000).good += 1;
        assert_eq!(t.len(), MAX_SECONDS);
    }
}
