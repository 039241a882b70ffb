//! `downlink tle`: load newer TLEs into the station's store, list what is stored.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use downlink::config::Config;

/// Arguments of `downlink tle`.
#[derive(Args, Debug)]
pub(crate) struct TleArgs {
    #[command(subcommand)]
    action: TleAction,
    /// Daemon configuration whose archive holds the store (ARCHIVE/tle).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Archive directory, instead of --config (default: var/downlink, the embedded default's).
    #[arg(long, global = true, conflicts_with = "config")]
    archive: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum TleAction {
    /// Check and store element sets (Celestrak 2- or 3-line files; `-` reads standard input).
    /// A file with any bad set is refused whole. The daemon uses them from the next pass on.
    Import {
        /// TLE files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the stored sets (JSON).
    List,
}

/// `downlink tle …`.
pub(crate) fn run(args: &TleArgs) -> Result<()> {
    let archive = match (&args.config, &args.archive) {
        (Some(c), _) => Config::load(c)?.archive.path,
        (None, Some(a)) => a.clone(),
        (None, None) => PathBuf::from("var/downlink"),
    };
    let mut out = std::io::stdout().lock();
    match &args.action {
        TleAction::Import { files } => {
            let mut stored = Vec::new();
            for f in files {
                let text = if f.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin()).context("reading standard input")?
                } else {
                    std::fs::read_to_string(f)
                        .with_context(|| format!("reading {}", f.display()))?
                };
                stored.extend(
                    archive::tle::import(&archive, &text)
                        .with_context(|| format!("{} refused", f.display()))?,
                );
            }
            serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "imported": stored }))?;
        }
        TleAction::List => {
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({ "tle": archive::tle::list(&archive) }),
            )?;
        }
    }
    writeln!(out)?;
    Ok(())
}
