//! Writes a synthetic X-band pass seen by two stations, for `downlink merge` throughput:
//! `OUT/passes/<A>/cadus.raw` and `OUT/passes/<B>/cadus.raw` (+ `pass.json`), FRAMES CADUs of
//! Suomi-NPP VC 16 in all, A missing the first 40 %, B the last 40 %. Each CADU is a real frame
//! of the SNPP capture with its VC frame count rewritten (0, 1, 2, … so the pass never repeats a
//! key), Reed-Solomon parity recomputed (dual basis, I = 4) and PN applied, as on the air.
//! FRAMES = 1,700,000 is a 15-minute 15 Mbit/s pass (~1.7 GB per full copy).
//!
//! `cargo run --release -p downlink-bench --bin merge_input -- OUT [FRAMES=1700000]`
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::path::{Path, PathBuf};

use decoder::pn::Derandomizer;
use decoder::rs::ReedSolomon;

const ASM: [u8; 4] = [0x1a, 0xcf, 0xfc, 0x1d];

fn station(
    out: &Path,
    id: &str,
    input: &str,
) -> std::io::Result<std::io::BufWriter<std::fs::File>> {
    let dir = out.join("passes").join(id);
    std::fs::create_dir_all(&dir)?;
    let rec = format!(
        "{{\"id\":\"{id}\",\"input\":\"{input}\",\"profile\":\"jpss\",\"scid\":157,\
         \"aos\":\"2024-12-06T17:38:15Z\",\"los\":\"2024-12-06T17:53:15Z\",\"station\":\"{input}\"}}"
    );
    std::fs::write(dir.join("pass.json"), rec)?;
    Ok(std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(dir.join("cadus.raw"))?,
    ))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "target/bench/merge".into()));
    let frames: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_700_000);
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    let raw = std::fs::read(data.join("cadu/npp.20241206T173815.dat"))?;
    let (aligned, _) = downlink_bench::extract_aligned_cadus(&raw)
        .ok_or_else(|| anyhow::anyhow!("no CADUs in the SNPP capture"))?;
    let profile = decoder::Profile::builtin("jpss")?;
    let rs = ReedSolomon::new(
        profile
            .rs_params()
            .ok_or_else(|| anyhow::anyhow!("no RS"))?,
    )?;
    let pn = Derandomizer::new(profile.coded_frame_len());
    // Derandomized, RS-decoded VC 16 frames as templates.
    let mut templates: Vec<Vec<u8>> = Vec::new();
    for cadu in aligned.chunks_exact(1024) {
        let mut f = cadu.get(4..).unwrap_or_default().to_vec();
        pn.apply(&mut f);
        if rs.decode(&mut f).is_ok_and(|o| !o.is_uncorrectable())
            && f.get(1).is_some_and(|b| b & 0x3f == 16)
        {
            templates.push(f);
        }
    }
    anyhow::ensure!(!templates.is_empty(), "no VC 16 frame in the capture");
    let (a0, b1) = (frames * 4 / 10, frames - frames * 4 / 10);
    let mut a = station(&out, "20241206T173815Z-a", "a")?;
    let mut b = station(&out, "20241206T173815Z-b", "b")?;
    for k in 0..frames {
        let mut f = templates
            .get(k % templates.len())
            .cloned()
            .unwrap_or_default();
        let c = (k as u32 & 0xff_ffff).to_be_bytes();
        if let (Some(dst), Some(src)) = (f.get_mut(2..5), c.get(1..4)) {
            dst.copy_from_slice(src);
        }
        rs.encode(&mut f)?;
        pn.apply(&mut f);
        for (w, has) in [(&mut a, k >= a0), (&mut b, k < b1)] {
            if has {
                w.write_all(&ASM)?;
                w.write_all(&f)?;
            }
        }
    }
    a.flush()?;
    b.flush()?;
    println!(
        "{}: A {} CADUs, B {} CADUs, {} in both",
        out.display(),
        frames - a0,
        b1,
        b1.saturating_sub(a0)
    );
    Ok(())
}
