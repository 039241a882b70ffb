//! Coding performance of the soft-decision Viterbi decoder: bit error rate after Viterbi vs
//! Eb/N0 (0–6 dB) from random data, against the textbook soft-decision k=7 r=1/2 curve (the
//! union bound from the code's distance spectrum) and uncoded QPSK; and the frame error rate of
//! the concatenated Viterbi + RS(255,223) chain (the real Meteor-M2 pass as CADUs through the
//! whole decoder). Writes an SVG plot and prints a table (Markdown) with the crossing of BER 1e-5.
//!
//! `cargo run --release -p downlink-bench --bin viterbi_ber -- [--out docs/viterbi-ber.svg]
//!  [--max-bits 100000000] [--min-errors 200] [--fer-repeat 4]`
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use anyhow::Context;
use downlink_bench::soft_chain::{
    crossing_db, decode_soft_chain, meteor_cadu_stream, random_bytes, soft_symbols, uncoded_ber,
    union_bound_k7, viterbi_bit_errors,
};
use plotters::prelude::*;

struct Opts {
    out: PathBuf,
    max_bits: u64,
    min_errors: u64,
    fer_repeat: usize,
}

fn opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        out: PathBuf::from("docs/viterbi-ber.svg"),
        max_bits: 100_000_000,
        min_errors: 200,
        fer_repeat: 4,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out" => o.out = PathBuf::from(val()?),
            "--max-bits" => o.max_bits = val()?.parse()?,
            "--min-errors" => o.min_errors = val()?.parse()?,
            "--fer-repeat" => o.fer_repeat = val()?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

/// One measured point: Eb/N0, bit errors, bits.
struct Point {
    db: f64,
    errors: u64,
    bits: u64,
}

fn main() -> anyhow::Result<()> {
    let o = opts()?;
    let dbs: Vec<f64> = (0..=12).map(|i| f64::from(i) * 0.5).collect();

    // BER after Viterbi: blocks of 4 Mbit until min_errors or max_bits.
    let block = 1usize << 19; // bytes (4 Mbit)
    let mut ber = Vec::new();
    for (k, &db) in dbs.iter().enumerate() {
        let (mut errors, mut bits, mut seed) = (0u64, 0u64, 1000 * k as u64);
        while errors < o.min_errors && bits < o.max_bits {
            seed += 1;
            let data = random_bytes(block, seed);
            let soft = soft_symbols(&data, Some(db), seed);
            let (e, n) = viterbi_bit_errors(&data, &soft);
            errors += e;
            bits += n;
        }
        println!(
            "Eb/N0 {db:.1} dB: {errors} bit errors in {bits} bits, BER {:.3e}",
            errors as f64 / bits as f64
        );
        ber.push(Point { db, errors, bits });
    }

    // FER of the whole chain: the real Meteor pass, repeated, as soft symbols.
    let data_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let cadus = meteor_cadu_stream(&data_dir, o.fer_repeat, 4)?;
    let sent = 256 * o.fer_repeat as u64;
    let mut fer = Vec::new();
    for &db in &dbs {
        let soft = soft_symbols(&cadus, Some(db), 77);
        let st = decode_soft_chain(&soft);
        let good = st.frames.by_vcid.get(&5).copied().unwrap_or(0);
        println!(
            "Eb/N0 {db:.1} dB: {good} of {sent} frames (VCID 5) good, FER {:.3e}, {} RS codewords corrected",
            1.0 - good as f64 / sent as f64,
            st.rs.corrected
        );
        fer.push((db, sent.saturating_sub(good), sent));
    }

    // Table and the 1e-5 crossing.
    let measured: Vec<(f64, f64)> = ber
        .iter()
        .filter(|p| p.errors > 0)
        .map(|p| (p.db, p.errors as f64 / p.bits as f64))
        .collect();
    let fine: Vec<(f64, f64)> = (0..=600)
        .map(|i| f64::from(i) / 100.0)
        .map(|d| (d, union_bound_k7(d)))
        .collect();
    let at_measured = crossing_db(&measured, 1e-5);
    let at_bound = crossing_db(&fine, 1e-5);
    println!("\n| Eb/N0 dB | bits | bit errors | BER after Viterbi | textbook (union bound) | uncoded | frames | frame errors | FER (Viterbi + RS) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (p, (_, fe, fs)) in ber.iter().zip(&fer) {
        let b = if p.errors == 0 {
            format!("< {:.1e}", 1.0 / p.bits as f64)
        } else {
            format!("{:.2e}", p.errors as f64 / p.bits as f64)
        };
        let f = if *fe == 0 {
            format!("< {:.1e}", 1.0 / *fs as f64)
        } else {
            format!("{:.2e}", *fe as f64 / *fs as f64)
        };
        println!(
            "| {:.1} | {} | {} | {b} | {:.2e} | {:.2e} | {fs} | {fe} | {f} |",
            p.db,
            p.bits,
            p.errors,
            union_bound_k7(p.db).min(0.5),
            uncoded_ber(p.db)
        );
    }
    match (at_measured, at_bound) {
        (Some(m), Some(b)) => println!(
            "\nBER 1e-5 reached at {m:.2} dB (measured) vs {b:.2} dB (union bound): {:+.2} dB",
            m - b
        ),
        _ => println!("\nBER 1e-5 not bracketed by the measured points"),
    }

    // The plot.
    let root = SVGBackend::new(&o.out, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "CCSDS k=7 r=1/2 soft Viterbi on AWGN (QPSK int8 soft symbols)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..6f64, (1e-8f64..1f64).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("Eb/N0 (dB, per information bit)")
        .y_desc("error rate")
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .draw()?;
    let clamp = |v: f64| v.clamp(1e-8, 1.0);
    chart
        .draw_series(LineSeries::new(
            fine.iter().map(|&(d, b)| (d, clamp(b))),
            BLACK.stroke_width(2),
        ))?
        .label("textbook soft decision (union bound, d_free = 10)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            (0..=60)
                .map(|i| f64::from(i) / 10.0)
                .map(|d| (d, clamp(uncoded_ber(d)))),
            RGBColor(150, 150, 150).stroke_width(2),
        ))?
        .label("uncoded QPSK")
        .legend(|(x, y)| {
            PathElement::new(
                [(x, y), (x + 20, y)],
                RGBColor(150, 150, 150).stroke_width(2),
            )
        });
    let blue = RGBColor(40, 80, 200);
    chart
        .draw_series(LineSeries::new(
            measured.iter().map(|&(d, b)| (d, clamp(b))),
            blue,
        ))?
        .label("Downlink Viterbi, measured BER")
        .legend(move |(x, y)| Circle::new((x + 10, y), 4, blue.filled()));
    chart.draw_series(
        measured
            .iter()
            .map(|&(d, b)| Circle::new((d, clamp(b)), 4, blue.filled())),
    )?;
    let red = RGBColor(200, 50, 40);
    let fer_pts: Vec<(f64, f64)> = fer
        .iter()
        .filter(|(_, e, _)| *e > 0)
        .map(|&(d, e, s)| (d, e as f64 / s as f64))
        .collect();
    chart
        .draw_series(LineSeries::new(
            fer_pts.iter().map(|&(d, f)| (d, clamp(f))),
            red,
        ))?
        .label("FER, Viterbi + RS(255,223) I=4 (Meteor-M2 CADUs)")
        .legend(move |(x, y)| TriangleMarker::new((x + 10, y), 5, red.filled()));
    chart.draw_series(
        fer_pts
            .iter()
            .map(|&(d, f)| TriangleMarker::new((d, clamp(f)), 5, red.filled())),
    )?;
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()?;
    root.present()?;
    println!("plot: {}", o.out.display());
    Ok(())
}
