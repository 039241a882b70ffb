//! `downlink` — the command line and (soon) the daemon.
//!
//! Subcommands:
//! - `decode FILE… --profile NAME` — run the link-layer decoder over recorded files and report
//!   RT-STPS-style counters (`--json` for machines), optionally writing frames and per-APID
//!   packet files.
//! - `profiles [NAME]` — list the built-in spacecraft profiles or print one as TOML.

mod decode;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "downlink",
    version,
    about = "Satellite ground-station telemetry and imagery ingest"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Decode recorded captures (bit streams, CADUs, frames or packets) and report counters.
    Decode(decode::DecodeArgs),
    /// List built-in spacecraft profiles, or print one as TOML.
    Profiles {
        /// Profile to print.
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::Profiles { name } => decode::profiles(name.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "downlink: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
