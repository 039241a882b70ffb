//! Cloud Optimized GeoTIFF writer (GDAL "COG" driver, CreateCopy only in
//! GDAL 3.6) and a structural validator.
//!
//! Layout reference: <https://gdal.org/drivers/raster/cog.html> and the
//! "GDAL structural metadata" section of
//! <https://gdal.org/drivers/raster/cog.html#header-ghost-area>. The checks
//! below mirror the ones of GDAL's `validate_cloud_optimized_geotiff.py`
//! that matter for our products (tiling, overviews, IFDs before data,
//! ghost-area flags); the tests additionally run that script.

use crate::Error;
use std::io::Read;
use std::path::{Path, PathBuf};

use gdal::{Dataset, DriverManager, Metadata};

use super::atomic::TempOutput;
use super::{creation_options, GdalContext, Result};

/// Lossless compression codec for analytic COGs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CogCompression {
    /// DEFLATE, level 1..=12 (GDAL uses libdeflate when available).
    Deflate {
        /// Compression level.
        level: u8,
    },
    /// Zstandard, level 1..=22: faster to decode than DEFLATE, similar size.
    Zstd {
        /// Compression level.
        level: u8,
    },
    /// LZW (most widely readable, weakest).
    Lzw,
}

/// Resampling of the internal overviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OverviewResampling {
    /// Mean of valid pixels (default; nodata-aware in GDAL).
    #[default]
    Average,
    /// Nearest neighbour.
    Nearest,
    /// Bilinear.
    Bilinear,
    /// Cubic.
    Cubic,
}

/// Options of [`write_cog`].
#[derive(Debug, Clone, PartialEq)]
pub struct CogOptions {
    /// Codec.
    pub compression: CogCompression,
    /// `PREDICTOR=YES`: horizontal differencing for integers (2), floating
    /// point predictor for floats (3). Usually 10–40 % smaller.
    pub predictor: bool,
    /// Tile size in pixels (COG `BLOCKSIZE`, ≥ 128, multiple of 16).
    pub block_size: u32,
    /// Overview resampling.
    pub overview_resampling: OverviewResampling,
    /// Compression worker threads (`NUM_THREADS`); `None` = 1.
    pub threads: Option<usize>,
}

impl Default for CogOptions {
    fn default() -> Self {
        Self {
            compression: CogCompression::Deflate { level: 6 },
            predictor: true,
            block_size: 512,
            overview_resampling: OverviewResampling::Average,
            threads: None,
        }
    }
}

/// What [`validate_cog`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct CogReport {
    /// Raster width.
    pub width: usize,
    /// Raster height.
    pub height: usize,
    /// Band count.
    pub bands: usize,
    /// Full-resolution tile size.
    pub block_size: (usize, usize),
    /// Number of internal overview levels.
    pub overview_count: usize,
    /// `COMPRESSION` reported by GDAL (e.g. `"DEFLATE"`, `"ZSTD"`).
    pub compression: Option<String>,
    /// BigTIFF container.
    pub bigtiff: bool,
}

/// Writes `src` as a COG at `dst` (temporary file, validation, atomic
/// rename). Always `BIGTIFF=IF_SAFER`, `OVERVIEWS=AUTO` (overviews down to
/// one tile). Returns the validation report of the written file.
pub fn write_cog(src: &Dataset, dst: &Path, opts: &CogOptions) -> Result<CogReport> {
    if opts.block_size < 128 || !opts.block_size.is_multiple_of(16) || opts.block_size > 4096 {
        return Err(Error::InvalidParameter {
            name: "block_size",
            reason: format!("{} not a multiple of 16 in 128..=4096", opts.block_size),
        });
    }
    let mut pairs: Vec<(&str, String)> = Vec::new();
    let (codec, level) = match opts.compression {
        CogCompression::Deflate { level } => ("DEFLATE", Some(level.clamp(1, 12))),
        CogCompression::Zstd { level } => ("ZSTD", Some(level.clamp(1, 22))),
        CogCompression::Lzw => ("LZW", None),
    };
    pairs.push(("COMPRESS", codec.into()));
    pairs.push(("OVERVIEW_COMPRESS", codec.into()));
    if let Some(level) = level {
        pairs.push(("LEVEL", level.to_string()));
    }
    let predictor = if opts.predictor { "YES" } else { "NO" };
    pairs.push(("PREDICTOR", predictor.into()));
    pairs.push(("OVERVIEW_PREDICTOR", predictor.into()));
    pairs.push(("BLOCKSIZE", opts.block_size.to_string()));
    pairs.push(("BIGTIFF", "IF_SAFER".into()));
    pairs.push(("OVERVIEWS", "AUTO".into()));
    let resampling = match opts.overview_resampling {
        OverviewResampling::Average => "AVERAGE",
        OverviewResampling::Nearest => "NEAREST",
        OverviewResampling::Bilinear => "BILINEAR",
        OverviewResampling::Cubic => "CUBIC",
    };
    pairs.push(("OVERVIEW_RESAMPLING", resampling.into()));
    if let Some(n) = opts.threads.filter(|&n| n > 1) {
        pairs.push(("NUM_THREADS", n.to_string()));
    }
    let options = creation_options(&pairs)?;

    let tmp = TempOutput::new(dst)?;
    let driver = DriverManager::get_driver_by_name("COG").ctx(|| "loading COG driver".into())?;
    let out = src
        .create_copy(&driver, tmp.path(), &options)
        .ctx(|| format!("writing COG {}", dst.display()))?;
    out.close()
        .ctx(|| format!("closing COG {}", dst.display()))?;
    let report = validate_cog(tmp.path()).map_err(|e| match e {
        Error::NotCog { problems, .. } => Error::NotCog {
            path: dst.to_path_buf(),
            problems,
        },
        other => other,
    })?;
    tmp.commit()?;
    Ok(report)
}

/// Path convenience: opens `src` and calls [`write_cog`].
pub fn write_cog_from_path(src: &Path, dst: &Path, opts: &CogOptions) -> Result<CogReport> {
    let ds = Dataset::open(src).ctx(|| format!("opening {}", src.display()))?;
    write_cog(&ds, dst, opts)
}

/// Checks that `path` is a COG as written by GDAL: TIFF header followed by
/// the GDAL structural-metadata ghost area with `LAYOUT=IFDS_BEFORE_DATA`,
/// `BLOCK_ORDER=ROW_MAJOR`, `BLOCK_LEADER=SIZE_AS_UINT4`,
/// `BLOCK_TRAILER=LAST_4_BYTES_REPEATED`, `KNOWN_INCOMPATIBLE_EDITION=NO`;
/// first IFD right after it; GDAL reports `LAYOUT=COG`; every band and
/// overview tiled; overviews present down to one tile when the image is
/// larger than one tile. All problems are collected into
/// [`Error::NotCog`].
pub fn validate_cog(path: &Path) -> Result<CogReport> {
    let mut problems = Vec::new();
    let header = read_prefix(path, 2048)?;
    let bigtiff = check_header(&header, &mut problems);

    let ds = Dataset::open(path).ctx(|| format!("opening {}", path.display()))?;
    let driver = ds.driver().short_name();
    if driver != "GTiff" {
        problems.push(format!("opened by driver {driver}, not GTiff"));
    }
    if ds.metadata_item("LAYOUT", "IMAGE_STRUCTURE").as_deref() != Some("COG") {
        problems.push("GDAL does not report IMAGE_STRUCTURE LAYOUT=COG".into());
    }
    let compression = ds.metadata_item("COMPRESSION", "IMAGE_STRUCTURE");
    let (width, height) = ds.raster_size();
    let bands = ds.raster_count();
    let mut block_size = (0, 0);
    let mut overview_count = 0;
    for index in 1..=bands {
        let band = ds
            .rasterband(index)
            .ctx(|| format!("opening band {index}"))?;
        let block = band.block_size();
        if index == 1 {
            block_size = block;
        }
        check_tiled(
            &format!("band {index}"),
            block,
            (width, height),
            &mut problems,
        );
        let count = band
            .overview_count()
            .ctx(|| format!("counting overviews of band {index}"))?;
        let count = usize::try_from(count).unwrap_or(0);
        if index == 1 {
            overview_count = count;
        }
        if width.max(height) > block.0 && count == 0 {
            problems.push(format!(
                "band {index}: {width}x{height} is larger than one {}px tile but has no overviews",
                block.0
            ));
        }
        let mut smallest = (width, height);
        for ov_index in 0..count {
            let ov = band
                .overview(ov_index)
                .ctx(|| format!("opening overview {ov_index} of band {index}"))?;
            let ov_size = ov.size();
            check_tiled(
                &format!("band {index} overview {ov_index}"),
                ov.block_size(),
                ov_size,
                &mut problems,
            );
            if ov_size.0 >= smallest.0 && ov_size.1 >= smallest.1 {
                problems.push(format!(
                    "band {index} overview {ov_index} ({}x{}) not smaller than previous level",
                    ov_size.0, ov_size.1
                ));
            }
            smallest = ov_size;
        }
    }
    if problems.is_empty() {
        Ok(CogReport {
            width,
            height,
            bands,
            block_size,
            overview_count,
            compression,
            bigtiff,
        })
    } else {
        Err(Error::NotCog {
            path: path.to_path_buf(),
            problems,
        })
    }
}

fn read_prefix(path: &Path, max: u64) -> Result<Vec<u8>> {
    let io_err = |source| Error::Io {
        context: "reading header of",
        path: PathBuf::from(path),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut buf = Vec::new();
    file.take(max).read_to_end(&mut buf).map_err(io_err)?;
    Ok(buf)
}

/// Parses the TIFF header + ghost area; returns "is BigTIFF".
fn check_header(header: &[u8], problems: &mut Vec<String>) -> bool {
    let little = match header.get(0..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => {
            problems.push("not a TIFF file (bad byte-order mark)".into());
            return false;
        }
    };
    let u16_at = |off: usize| -> Option<u16> {
        let b: [u8; 2] = header.get(off..off + 2)?.try_into().ok()?;
        Some(if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    };
    let (bigtiff, ifd_offset, ghost_start) = match u16_at(2) {
        Some(42) => {
            let off = header
                .get(4..8)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                .map(|b| {
                    u64::from(if little {
                        u32::from_le_bytes(b)
                    } else {
                        u32::from_be_bytes(b)
                    })
                });
            (false, off, 8usize)
        }
        Some(43) => {
            let off = header
                .get(8..16)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(|b| {
                    if little {
                        u64::from_le_bytes(b)
                    } else {
                        u64::from_be_bytes(b)
                    }
                });
            (true, off, 16usize)
        }
        _ => {
            problems.push("not a TIFF file (bad magic number)".into());
            return false;
        }
    };

    const KEY: &[u8] = b"GDAL_STRUCTURAL_METADATA_SIZE=";
    let ghost = header.get(ghost_start..).unwrap_or_default();
    if !ghost.starts_with(KEY) {
        problems.push("no GDAL_STRUCTURAL_METADATA ghost area after the TIFF header".into());
        return bigtiff;
    }
    // "GDAL_STRUCTURAL_METADATA_SIZE=XXXXXX bytes\n" then XXXXXX bytes.
    let after_key = ghost.get(KEY.len()..).unwrap_or_default();
    let digits: Vec<u8> = after_key
        .iter()
        .copied()
        .take_while(u8::is_ascii_digit)
        .collect();
    let size: Option<usize> = std::str::from_utf8(&digits)
        .ok()
        .and_then(|s| s.parse().ok());
    let line_end = after_key.iter().position(|&b| b == b'\n');
    let (Some(size), Some(line_end)) = (size, line_end) else {
        problems.push("malformed GDAL_STRUCTURAL_METADATA_SIZE line".into());
        return bigtiff;
    };
    let body_start = KEY.len() + line_end + 1;
    let Some(body) = ghost.get(body_start..body_start + size) else {
        problems.push("ghost area truncated".into());
        return bigtiff;
    };
    let body = String::from_utf8_lossy(body);
    for required in [
        "LAYOUT=IFDS_BEFORE_DATA",
        "BLOCK_ORDER=ROW_MAJOR",
        "BLOCK_LEADER=SIZE_AS_UINT4",
        "BLOCK_TRAILER=LAST_4_BYTES_REPEATED",
        "KNOWN_INCOMPATIBLE_EDITION=NO",
    ] {
        if !body.lines().any(|l| l.trim() == required) {
            problems.push(format!("ghost area lacks {required}"));
        }
    }
    // The first IFD must follow the ghost area (word-aligned), not sit at
    // the end of the file.
    let ghost_end = (ghost_start + body_start + size) as u64;
    match ifd_offset {
        Some(off) if off >= ghost_end && off <= ghost_end + 8 => {}
        Some(off) => problems.push(format!(
            "first IFD at offset {off}, expected right after the ghost area ({ghost_end})"
        )),
        None => problems.push("truncated TIFF header".into()),
    }
    bigtiff
}

fn check_tiled(
    what: &str,
    block: (usize, usize),
    size: (usize, usize),
    problems: &mut Vec<String>,
) {
    // A striped TIFF has blocks as wide as the image and a few lines high;
    // COG tiles are square multiples of 16.
    let square = block.0 == block.1 && block.0.is_multiple_of(16) && block.0 > 0;
    if !square {
        problems.push(format!(
            "{what} ({}x{}) is not tiled: block {}x{}",
            size.0, size.1, block.0, block.1
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ghost(body: &str) -> Vec<u8> {
        let mut h = b"II*\0".to_vec();
        let text = format!(
            "GDAL_STRUCTURAL_METADATA_SIZE={:06} bytes\n{body}",
            body.len()
        );
        let ifd = 8 + text.len() as u32;
        h.extend_from_slice(&ifd.to_le_bytes());
        h.extend_from_slice(text.as_bytes());
        h
    }

    const GOOD: &str = "LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\nBLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ";

    #[test]
    fn header_checks_accept_gdal_ghost_area() {
        let mut problems = Vec::new();
        assert!(!check_header(&ghost(GOOD), &mut problems));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn header_checks_reject_edited_or_plain_tiff() {
        let mut problems = Vec::new();
        check_header(
            &ghost(&GOOD.replace("EDITION=NO", "EDITION=YES")),
            &mut problems,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("KNOWN_INCOMPATIBLE_EDITION=NO"));

        let mut problems = Vec::new();
        let plain = [b"II*\0".as_slice(), &1000u32.to_le_bytes(), &[0u8; 32]].concat();
        check_header(&plain, &mut problems);
        assert!(
            problems[0].contains("no GDAL_STRUCTURAL_METADATA"),
            "{problems:?}"
        );

        let mut problems = Vec::new();
        check_header(b"PNG", &mut problems);
        assert!(problems[0].contains("not a TIFF"));
        let mut problems = Vec::new();
        check_header(b"", &mut problems);
        assert!(problems[0].contains("not a TIFF"));
    }
}
