//! 8-bit PNG quick looks (grey+alpha and RGBA) with the `image` crate.

use crate::Error;
use std::io::BufWriter;
use std::path::Path;

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

use super::atomic::TempOutput;
use super::{check_len, checked_area, Result};

/// Writes an 8-bit grey + alpha PNG: alpha is 255 where `valid`, 0 where not
/// (the grey value of invalid pixels is written as 0).
pub fn write_png_gray(
    path: &Path,
    width: usize,
    height: usize,
    pixels: &[u8],
    valid: &[bool],
) -> Result<()> {
    let area = checked_area(width, height)?;
    check_len(pixels.len(), area, || "grey pixels".to_owned())?;
    check_len(valid.len(), area, || "grey validity mask".to_owned())?;
    let mut la = Vec::with_capacity(area * 2);
    for (&p, &v) in pixels.iter().zip(valid) {
        if v {
            la.extend_from_slice(&[p, 255]);
        } else {
            la.extend_from_slice(&[0, 0]);
        }
    }
    encode(path, width, height, &la, ExtendedColorType::La8)
}

/// Writes an 8-bit RGBA PNG from interleaved `rgba` (`4 * width * height`
/// bytes).
pub fn write_png_rgba(path: &Path, width: usize, height: usize, rgba: &[u8]) -> Result<()> {
    let area = checked_area(width, height)?;
    let expected = area.checked_mul(4).ok_or(Error::InvalidDimensions {
        width,
        height,
        reason: "RGBA byte count overflows usize",
    })?;
    check_len(rgba.len(), expected, || "RGBA bytes".to_owned())?;
    encode(path, width, height, rgba, ExtendedColorType::Rgba8)
}

fn encode(
    path: &Path,
    width: usize,
    height: usize,
    data: &[u8],
    color: ExtendedColorType,
) -> Result<()> {
    // checked_area() already bounded both by i32::MAX.
    let (w, h) = (width as u32, height as u32);
    let tmp = TempOutput::new(path)?;
    let io_err = |context, source| Error::Io {
        context,
        path: path.to_path_buf(),
        source,
    };
    let file =
        std::fs::File::create(tmp.path()).map_err(|e| io_err("creating temporary for", e))?;
    let mut writer = BufWriter::new(file);
    // Fast deflate + adaptive filtering: quick looks favour speed; size is
    // still within ~10 % of the default level on imagery.
    PngEncoder::new_with_quality(&mut writer, CompressionType::Fast, FilterType::Adaptive)
        .write_image(data, w, h, color)
        .map_err(|source| Error::Png {
            path: path.to_path_buf(),
            source,
        })?;
    let file = writer
        .into_inner()
        .map_err(|e| io_err("flushing", e.into_error()))?;
    file.sync_all().map_err(|e| io_err("syncing", e))?;
    drop(file);
    tmp.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_alpha_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        let pixels = [10u8, 20, 30, 40, 50, 60];
        let valid = [true, false, true, true, true, false];
        write_png_gray(&p, 3, 2, &pixels, &valid).unwrap();
        let img = image::open(&p).unwrap();
        assert_eq!(img.color(), image::ColorType::La8);
        let la = img.to_luma_alpha8();
        assert_eq!(la.get_pixel(0, 0).0, [10, 255]);
        assert_eq!(la.get_pixel(1, 0).0, [0, 0]);
        assert_eq!(la.get_pixel(0, 1).0, [40, 255]);
        assert_eq!(la.get_pixel(2, 1).0, [0, 0]);
    }

    #[test]
    fn rgba_roundtrip_and_size_checks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.png");
        let rgba = [1u8, 2, 3, 255, 4, 5, 6, 0];
        write_png_rgba(&p, 2, 1, &rgba).unwrap();
        let img = image::open(&p).unwrap().to_rgba8();
        assert_eq!(img.get_pixel(1, 0).0, [4, 5, 6, 0]);
        assert!(matches!(
            write_png_rgba(&p, 3, 1, &rgba),
            Err(Error::SizeMismatch {
                expected: 12,
                actual: 8,
                ..
            })
        ));
        assert!(matches!(
            write_png_gray(&p, 0, 1, &[], &[]),
            Err(Error::InvalidDimensions { .. })
        ));
    }
}
