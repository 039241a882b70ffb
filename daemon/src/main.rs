//! `downlink` — the command line and (soon) the daemon.
//!
//! Subcommands:
//! - `decode FILE… --profile NAME` — run the link-layer decoder over recorded files and report
//!   RT-STPS-style counters (`--json` for machines), optionally writing frames and per-APID
//!   packet files.
//! - `profiles [NAME]` — list the built-in spacecraft profiles or print one as TOML.

mod alerts_cmd;
mod archive_cmd;
mod decode;
mod image_cmd;
mod merge_cmd;
mod tle_cmd;

use downlink::config;

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
    /// Check a daemon configuration file and report every problem at once (the same code
    /// `serve` runs; use it as the unit's ExecStartPre).
    Validate {
        /// Configuration file.
        #[arg(long, short)]
        config: std::path::PathBuf,
    },
    /// Print the fully commented example configuration.
    ExampleConfig,
    /// Send a recorded capture to a station input at a given rate, optionally impaired
    /// (bit errors, slips, inversion): how operators test a station, and what the tests use.
    Replay(downlink::replay::ReplayArgs),
    /// Turn a recorded pass of an imaging instrument (e.g. Meteor-M LRPT) into georeferenced
    /// products: raw swath PNGs and GCP GeoTIFFs, analytic COGs, composite, NDVI, thumbnail;
    /// prints a JSON listing.
    Image(image_cmd::ImageArgs),
    /// Merge archived copies of one pass (two antennas or stations) into one pass whose frames
    /// are the best of each copy; prints its contributions and counters as JSON.
    Merge(merge_cmd::MergeArgs),
    /// Load newer TLEs into the station's store (ARCHIVE/tle) or list them; the daemon picks
    /// the set nearest each pass.
    Tle(tle_cmd::TleArgs),
    /// Bring georeferenced rasters into the archive and its STAC catalog.
    Archive(archive_cmd::ArchiveArgs),
    /// Vegetation-loss change alerts over a catalog collection.
    Alerts(alerts_cmd::AlertsArgs),
    /// Run the daemon: receive, decode, archive passes, serve the operator API.
    /// Without --config it runs on the embedded default (archive under ./var/downlink, UDP input
    /// on 127.0.0.1:5000, profile jpss, HTTP on 127.0.0.1:8080).
    Serve {
        /// Configuration file (validated exactly like `downlink validate`).
        #[arg(long, short)]
        config: Option<std::path::PathBuf>,
    },
}

/// `downlink validate --config FILE`: the file ([`config::Config::load`]) and this machine
/// ([`config::Config::check_host`]: archive writable, addresses bindable), exactly what
/// `serve` checks before it starts.
fn validate(path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    let cfg = config::Config::load(path)?;
    let notes = cfg.check_host(path)?;
    let catalog = downlink::catalog_backend::check(&cfg.catalog, &cfg.archive.path)?;
    let store = downlink::serve::upload::check(&cfg.archive).map_err(|e| {
        anyhow::anyhow!(
            "archive.store {}: {e}",
            cfg.archive.store.url(&cfg.archive.path)
        )
    })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: ok", path.display())?;
    let role = match cfg.input.len() {
        _ if !cfg.http.enabled => format!(
            "station ({} input{}, no HTTP)",
            cfg.input.len(),
            if cfg.input.len() == 1 { "" } else { "s" }
        ),
        0 => "API node (HTTP, no inputs)".to_owned(),
        1 => "station and API (1 input, HTTP)".to_owned(),
        n => format!("station and API ({n} inputs, HTTP)"),
    };
    writeln!(out, "  role     {role}")?;
    writeln!(out, "  archive  {}", cfg.archive.path.display())?;
    writeln!(out, "  catalog  {catalog}")?;
    writeln!(out, "  store    {store}")?;
    if cfg.http.enabled {
        writeln!(out, "  http     {}", cfg.http.listen)?;
    } else {
        writeln!(out, "  http     off (http.enabled = false)")?;
    }
    writeln!(out, "  pass     los_timeout {:?}", cfg.pass.los_timeout)?;
    for i in &cfg.input {
        writeln!(
            out,
            "  input    {:<12} {} format {:?} profile {}",
            i.name, i.listen, i.format, i.profile_source
        )?;
    }
    for w in &cfg.webhook {
        writeln!(out, "  webhook  {}", config::redact(&w.url))?;
    }
    for n in &notes {
        writeln!(out, "  note     {n}")?;
    }
    Ok(())
}

/// `downlink serve [--config FILE]`.
fn serve(path: Option<&std::path::Path>) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let (cfg, source) = match path {
        Some(p) => (config::Config::load(p)?, p),
        None => (
            config::Config::embedded_default(std::path::Path::new("var/downlink"))?,
            std::path::Path::new("<embedded default>"),
        ),
    };
    // The same check as `validate`: what it accepts, serve starts with.
    for note in cfg.check_host(source)? {
        tracing::info!("config: {note}");
    }
    downlink::serve::run(&cfg, path)?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode::run(&args),
        Command::Image(args) => image_cmd::run(&args),
        Command::Merge(args) => merge_cmd::run(&args),
        Command::Tle(args) => tle_cmd::run(&args),
        Command::Archive(args) => archive_cmd::run(&args),
        Command::Alerts(args) => alerts_cmd::run(&args),
        Command::Profiles { name } => decode::profiles(name.as_deref()),
        Command::Validate { config } => validate(&config),
        Command::Serve { config } => serve(config.as_deref()),
        Command::Replay(args) => downlink::replay::run_and_report(&args)
            .map(|_| ())
            .map_err(anyhow::Error::from),
        Command::ExampleConfig => {
            use std::io::Write;
            std::io::stdout()
                .write_all(config::Config::example_toml().as_bytes())
                .map_err(anyhow::Error::from)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            use std::io::Write;
            // Each cause once, even where a message already embeds its source.
            let _ = writeln!(
                std::io::stderr(),
                "downlink: error: {}",
                config::error_chain(e.as_ref())
            );
            ExitCode::from(2)
        }
    }
}
