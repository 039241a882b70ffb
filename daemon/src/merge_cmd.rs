//! `downlink merge`: archived copies of one pass (two antennas, two stations) → one merged pass
//! (see `downlink::merge`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use archive::pass::pass_id;
use clap::Args;
use downlink::merge::{lock_passes, merge_passes, publish, MergeSpec, StationPass, MERGED_INPUT};

use crate::decode::load_profile;

/// Arguments of `downlink merge`.
#[derive(Args, Debug)]
pub(crate) struct MergeArgs {
    /// Pass directories (ARCHIVE/passes/ID) of the copies, two or more.
    #[arg(required = true, num_args = 2..)]
    passes: Vec<PathBuf>,
    /// Directory that receives the merged pass directory (default: the first pass's parent,
    /// i.e. the archive's passes/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Profile (built-in name or TOML path); default: the first pass's profile, built in.
    #[arg(long, short)]
    profile: Option<String>,
    /// TLE files: also make the products (imaging profiles) from the merged pass.
    #[arg(long)]
    tle: Vec<PathBuf>,
    /// Copy the chosen CADUs into the merged pass's own `cadus.raw` (a pass that does not need
    /// its station passes, e.g. to move it elsewhere) instead of `cadus.ref`, which names
    /// them in the station passes' `cadus.raw`.
    #[arg(long)]
    copy_cadus: bool,
}

/// `downlink merge`.
pub(crate) fn run(args: &MergeArgs) -> Result<()> {
    let passes = args
        .passes
        .iter()
        .map(|p| StationPass::open(p))
        .collect::<Result<Vec<_>, downlink::Error>>()?;
    let first = passes.first().context("no pass given")?;
    let profile = load_profile(args.profile.as_deref().unwrap_or(&first.record.profile))?;
    let out = match &args.out {
        Some(o) => o.clone(),
        None => args
            .passes
            .first()
            .and_then(|p| p.parent())
            .map(std::path::Path::to_owned)
            .context("cannot tell where the first pass lies")?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // The merge lock of the directory written and of each station pass's directory (the
    // archive's passes/, where a daemon merges the same passes after LOS), taken in path
    // order so that two merges never wait on each other. A station pass's directory that
    // cannot be written (a read-only copy) is where no merge writes: no lock there.
    let canonical = |d: PathBuf| {
        let d = if d.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            d
        };
        d.canonicalize().unwrap_or(d)
    };
    let writable = |d: &PathBuf| rustix::fs::access(d, rustix::fs::Access::WRITE_OK).is_ok();
    let mut lock_dirs: Vec<PathBuf> = std::iter::once(canonical(out.clone()))
        .chain(
            args.passes
                .iter()
                .filter_map(|p| p.parent().map(Path::to_owned))
                .map(canonical)
                .filter(writable),
        )
        .collect();
    lock_dirs.sort();
    lock_dirs.dedup();
    let _locks = lock_dirs
        .iter()
        .map(|d| {
            lock_passes(d, |p| {
                let _ = writeln!(
                    std::io::stderr(),
                    "downlink: waiting for {}: another merge is running",
                    p.display()
                );
            })
        })
        .collect::<Result<Vec<_>, downlink::Error>>()?;
    let aos = passes
        .iter()
        .filter_map(|p| p.record.aos_time())
        .min()
        .context("no pass has an AOS")?;
    let id = pass_id(aos, MERGED_INPUT);
    let dest = out.join(&id);
    let mut merged_from: Vec<String> = passes.iter().map(|p| p.record.id.clone()).collect();
    merged_from.sort();
    // Idempotent: the same copies give the same pass (same id, same version); other copies
    // of it replace it with the version bumped.
    let version = match StationPass::open(&dest) {
        Ok(old) => {
            let mut was = old.record.merged_from.clone();
            was.sort();
            let v = old.record.merge_version.unwrap_or(1);
            if was == merged_from {
                v
            } else {
                v + 1
            }
        }
        Err(_) => 1,
    };
    let staging = out.join(format!(".{id}.merging"));
    let _ = std::fs::remove_dir_all(&staging);
    let spec = MergeSpec {
        profile: &profile,
        id: &id,
        station: None,
        version,
        refer: !args.copy_cadus,
    };
    let record = merge_passes(&passes, &spec, &staging)?;
    if !args.tle.is_empty() {
        make_products(&profile, &record, &staging, &args.tle)?;
    }
    publish(&staging, &dest)?;
    let mut o = std::io::stdout().lock();
    serde_json::to_writer_pretty(
        &mut o,
        &serde_json::json!({
            "id": record.id,
            "dir": dest,
            "merged_from": record.merged_from,
            "merge_version": record.merge_version,
            "contributions": record.contributions,
            "counters": record.counters,
        }),
    )?;
    writeln!(o)?;
    Ok(())
}

/// The products of the merged pass in `dir`, as the daemon makes them at LOS.
fn make_products(
    profile: &decoder::Profile,
    record: &archive::record::PassRecord,
    dir: &std::path::Path,
    tle: &[PathBuf],
) -> Result<()> {
    use raster::scene::{self, ImageRequest, PassDate};
    let Some(spec) = profile.imaging.as_ref() else {
        bail!("profile {} has no imaging instrument", profile.name);
    };
    let aos: chrono::DateTime<chrono::Utc> = record
        .aos_time()
        .context("the merged pass has no AOS")?
        .into();
    let tle = scene::choose_tle(tle, spec.norad_id, Some(aos))?;
    let (format, input) = archive::pass_store::StoredPass::open(dir)
        .open_whole()
        .with_context(|| format!("reading {}", dir.display()))?
        .context("the merged pass holds no CADUs or frames")?;
    let pass = scene::collect_packets_from(profile, format, input, dir)?;
    scene::make_products(&ImageRequest {
        profile,
        pass: &pass,
        tle: &tle,
        date: PassDate::Near(aos),
        out_dir: &dir.join("products"),
        pass_id: &record.id,
        landmask: None,
    })?;
    Ok(())
}
