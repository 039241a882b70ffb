//! A synthetic X-band pass seen by two stations, for the merge benchmarks: two pass
//! directories `OUT/passes/<A>` and `OUT/passes/<B>` (`cadus.raw` + `pass.json`), `frames`
//! CADUs of Suomi-NPP VC 16 in all, A missing the first 40 %, B the last 40 %. Each CADU is a
//! real frame of the SNPP capture with its VC frame count rewritten (0, 1, 2, … so the pass
//! never repeats a key), Reed-Solomon parity recomputed (dual basis, I = 4) and PN applied, as
//! on the air. 1,700,000 frames is a 15-minute 15 Mbit/s pass (~1.7 GB per full copy).

use std::io::Write;
use std::path::{Path, PathBuf};

use decoder::pn::Derandomizer;
use decoder::rs::ReedSolomon;

const ASM: [u8; 4] = [0x1a, 0xcf, 0xfc, 0x1d];

/// The ids of the two station passes.
pub const PASS_A: &str = "20241206T173815Z-a";
/// See [`PASS_A`].
pub const PASS_B: &str = "20241206T173815Z-b";

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

/// What [`write_pair`] wrote.
#[derive(Clone, Debug)]
pub struct Pair {
    /// The two pass directories (A, B).
    pub dirs: [PathBuf; 2],
    /// CADUs in A.
    pub a: usize,
    /// CADUs in B.
    pub b: usize,
    /// CADUs in both.
    pub both: usize,
}

/// Writes the two station copies of a `frames`-frame pass under `out` (see the module docs);
/// `shared_data` is the test data directory (`../shared/data`).
pub fn write_pair(shared_data: &Path, out: &Path, frames: usize) -> anyhow::Result<Pair> {
    let raw = std::fs::read(shared_data.join("cadu/npp.20241206T173815.dat"))?;
    let (aligned, _) = crate::extract_aligned_cadus(&raw)
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
    let mut a = station(out, PASS_A, "a")?;
    let mut b = station(out, PASS_B, "b")?;
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
    let passes = out.join("passes");
    Ok(Pair {
        dirs: [passes.join(PASS_A), passes.join(PASS_B)],
        a: frames - a0,
        b: b1,
        both: b1.saturating_sub(a0),
    })
}
