//! `downlink image`: recorded passes → georeferenced scene products.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use decoder::InputFormat;
use raster::scene::{self, ImageRequest, PassDate};

use crate::decode::load_profile;

/// Arguments of `downlink image`.
#[derive(Args, Debug)]
pub(crate) struct ImageArgs {
    /// Input files, decoded in order as one continuous stream.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Profile with an imaging instrument (e.g. meteor-lrpt), built-in name or TOML file.
    #[arg(long, short)]
    profile: String,
    /// What the files hold: bits, cadu, frames or packets.
    #[arg(long, short, default_value = "bits")]
    format: InputFormat,
    /// TLE file(s) (Celestrak 2- or 3-line); the set for the profile's NORAD id whose epoch
    /// is nearest the pass is used. Repeat for several files.
    #[arg(long, required = true)]
    tle: Vec<PathBuf>,
    /// UTC date of the first image line (YYYY-MM-DD). Without it, the instrument's time of
    /// day is placed nearest the first input file's modification time.
    #[arg(long)]
    date: Option<String>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Land/sea mask GeoTIFF for the geolocation check (`make landmask`); without it no
    /// check is made.
    #[arg(long)]
    landmask: Option<PathBuf>,
    /// Pass id recorded in the products; default: the output directory's name.
    #[arg(long)]
    pass_id: Option<String>,
}

/// `downlink image`.
pub(crate) fn run(args: &ImageArgs) -> Result<()> {
    let profile = load_profile(&args.profile)?;
    let Some(spec) = profile.imaging.as_ref() else {
        bail!(
            "profile {} has no imaging instrument; profiles with one: {}",
            profile.name,
            decoder::Profile::builtin_names()
                .filter(|n| decoder::Profile::builtin(n).is_ok_and(|p| p.imaging.is_some()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let date = match &args.date {
        Some(d) => PassDate::Date(
            imagery::time::parse_date(d)
                .with_context(|| format!("--date must be YYYY-MM-DD, got {d:?}"))?,
        ),
        None => {
            let first = args.files.first().context("no input file")?;
            let mtime = std::fs::metadata(first)
                .and_then(|m| m.modified())
                .with_context(|| format!("reading {}", first.display()))?;
            PassDate::Near(mtime.into())
        }
    };
    let near = match date {
        PassDate::Date(d) => d.and_hms_opt(12, 0, 0).map(|t| t.and_utc()),
        PassDate::Near(t) => Some(t),
    };
    let tle = scene::choose_tle(&args.tle, spec.norad_id, near)?;
    let pass = scene::collect_packets(&profile, args.format, &args.files)?;
    let pass_id = args.pass_id.clone().unwrap_or_else(|| {
        args.out
            .file_name()
            .map_or_else(|| "pass".to_owned(), |n| n.to_string_lossy().into_owned())
    });
    let listing = scene::make_products(&ImageRequest {
        profile: &profile,
        pass: &pass,
        tle: &tle,
        date,
        out_dir: &args.out,
        pass_id: &pass_id,
        landmask: args.landmask.as_deref(),
    })?;
    if let Some(age) = listing.tle["age_hours"].as_f64() {
        if age.abs() > 14.0 * 24.0 {
            let _ = writeln!(
                std::io::stderr(),
                "downlink: warning: the TLE epoch is {:.0} days from the pass: geolocation will be poor",
                age / 24.0
            );
        }
    }
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &listing)?;
    writeln!(out)?;
    Ok(())
}
