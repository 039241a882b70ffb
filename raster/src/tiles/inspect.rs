//! What the tile routes need to know of a local raster before rendering it: each band's
//! description and a reduced sample of its values (for a percentile stretch), and a VRT that
//! stacks band 1 of several single-band files on one grid.

use super::tms::xml_escape;

/// One band of a raster, as read through GDAL.
#[derive(Debug, Clone)]
pub struct BandSample {
    /// The band's description (e.g. "B04 red 665nm"), trimmed; empty when none.
    pub description: String,
    /// The declared nodata value.
    pub nodata: Option<f64>,
    /// The band read at about 512 pixels on its longer side (empty unless asked for).
    pub values: Vec<f64>,
}

/// The bands of `path`, with a reduced sample of each when `sample`; None when the file cannot
/// be read as a raster.
pub fn band_samples(path: &std::path::Path, sample: bool) -> Option<Vec<BandSample>> {
    let ds = gdal::Dataset::open(path).ok()?;
    let (w, h) = ds.raster_size();
    let mut out = Vec::with_capacity(ds.raster_count());
    for i in 1..=ds.raster_count() {
        let band = ds.rasterband(i).ok()?;
        let description = gdal::Metadata::description(&band)
            .unwrap_or_default()
            .trim()
            .to_owned();
        let values = if sample {
            let k = (w.max(h) as f64 / 512.0).max(1.0);
            let shape = (
                ((w as f64 / k).round() as usize).max(1),
                ((h as f64 / k).round() as usize).max(1),
            );
            band.read_as::<f64>((0, 0), (w, h), shape, None)
                .map(|b| b.into_shape_and_vec().1)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        out.push(BandSample {
            description,
            nodata: band.no_data_value(),
            values,
        });
    }
    Some(out)
}

/// A VRT (XML text) stacking band 1 of each file in order; None when a file cannot be read or
/// the files' grids (size and geotransform) differ.
pub fn stack_vrt(paths: &[std::path::PathBuf]) -> Option<String> {
    let e = xml_escape;
    let mut grid: Option<((usize, usize), [f64; 6], String)> = None;
    let mut bands = String::new();
    for (i, p) in paths.iter().enumerate() {
        let ds = gdal::Dataset::open(p).ok()?;
        let g = (
            ds.raster_size(),
            ds.geo_transform().ok()?,
            ds.spatial_ref().ok()?.to_wkt().ok()?,
        );
        match &grid {
            None => grid = Some(g),
            Some(first) if first.0 == g.0 && first.1 == g.1 => {}
            Some(_) => return None,
        }
        let b = ds.rasterband(1).ok()?;
        let nodata = b
            .no_data_value()
            .map(|v| format!("<NoDataValue>{v}</NoDataValue>"))
            .unwrap_or_default();
        bands.push_str(&format!(
            "<VRTRasterBand dataType=\"{}\" band=\"{}\">{nodata}<SimpleSource><SourceFilename relativeToVRT=\"0\">{}</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>",
            b.band_type().name(),
            i + 1,
            e(&p.display().to_string())
        ));
    }
    let ((w, h), gt, wkt) = grid?;
    Some(format!(
        "<VRTDataset rasterXSize=\"{w}\" rasterYSize=\"{h}\"><SRS dataAxisToSRSAxisMapping=\"1,2\">{}</SRS><GeoTransform>{}, {}, {}, {}, {}, {}</GeoTransform>{bands}</VRTDataset>",
        e(&wkt),
        gt[0], gt[1], gt[2], gt[3], gt[4], gt[5]
    ))
}
