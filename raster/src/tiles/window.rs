//! Map windows of any bounding box and size (WMS GetMap) assembled from WebMercatorQuad tiles.
//!
//! A window is an output grid of `width`×`height` pixels over a bounding box in EPSG:3857
//! metres or in WGS 84 degrees (longitude/latitude order here: the WMS 1.3.0 axis order of
//! EPSG:4326, latitude first, is the caller's business). The tiles are taken at the lowest
//! zoom whose pixel is not coarser than the output pixel (capped at the source's max zoom and
//! at a tile budget), rendered by the tile renderer (and its cache), and each output pixel
//! centre takes the nearest tile pixel. Pure maths: no IO, no GDAL.

use crate::Error;
use std::collections::HashMap;

use super::tms::{
    self, lonlat_to_mercator, mercator_to_lonlat, resolution, TileId, MAX_LAT, ORIGIN_SHIFT,
    TILE_SIZE,
};

const TS: usize = TILE_SIZE as usize;

/// The CRS of a window's bounding box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapCrs {
    /// EPSG:3857, metres.
    WebMercator,
    /// WGS 84 degrees as (longitude, latitude): CRS:84, or EPSG:4326 with its axes swapped.
    Wgs84,
}

/// An output grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapWindow {
    pub crs: MapCrs,
    /// (minx, miny, maxx, maxy) in the CRS's units, x = easting or longitude.
    pub bbox: [f64; 4],
    pub width: u32,
    pub height: u32,
}

impl MapWindow {
    /// Checks the box (finite, min < max, degrees within ±180/±90 for WGS 84) and the size
    /// (1..=`max_side` pixels per axis).
    pub fn new(
        crs: MapCrs,
        bbox: [f64; 4],
        width: u32,
        height: u32,
        max_side: u32,
    ) -> Result<Self, Error> {
        let [x0, y0, x1, y1] = bbox;
        if !bbox.iter().all(|v| v.is_finite()) || x0 >= x1 || y0 >= y1 {
            return Err(Error::TileParam(format!(
                "bbox must be minx,miny,maxx,maxy with min < max, got {x0},{y0},{x1},{y1}"
            )));
        }
        if crs == MapCrs::Wgs84 && (x0 < -360.0 || x1 > 360.0 || y0 < -90.0 || y1 > 90.0) {
            return Err(Error::TileParam(format!(
                "bbox in degrees out of range: {x0},{y0},{x1},{y1}"
            )));
        }
        if width == 0 || height == 0 || width > max_side || height > max_side {
            return Err(Error::TileParam(format!(
                "width and height must be 1..={max_side}, got {width}x{height}"
            )));
        }
        Ok(Self {
            crs,
            bbox,
            width,
            height,
        })
    }

    /// The window's box in EPSG:3857 metres, clipped to the Web Mercator square; None when it
    /// does not overlap it.
    fn bbox_3857(&self) -> Option<[f64; 4]> {
        let [x0, y0, x1, y1] = self.bbox;
        let b = match self.crs {
            MapCrs::WebMercator => [x0, y0, x1, y1],
            MapCrs::Wgs84 => {
                let (a, b) = lonlat_to_mercator(x0.max(-180.0), y0.clamp(-MAX_LAT, MAX_LAT));
                let (c, d) = lonlat_to_mercator(x1.min(180.0), y1.clamp(-MAX_LAT, MAX_LAT));
                [a, b, c, d]
            }
        };
        let c = [
            b[0].max(-ORIGIN_SHIFT),
            b[1].max(-ORIGIN_SHIFT),
            b[2].min(ORIGIN_SHIFT),
            b[3].min(ORIGIN_SHIFT),
        ];
        (c[0] < c[2] && c[1] < c[3]).then_some(c)
    }

    /// Output pixel size in EPSG:3857 metres (the finer axis).
    fn resolution_3857(&self) -> Option<f64> {
        let [x0, y0, x1, y1] = self.bbox;
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let r = match self.crs {
            MapCrs::WebMercator => ((x1 - x0) / w).min((y1 - y0) / h),
            MapCrs::Wgs84 => {
                let b = self.bbox_3857()?;
                let lat_span = y1.min(MAX_LAT) - y0.max(-MAX_LAT);
                let yr = if lat_span > 0.0 {
                    // Metres per output row where the box is most stretched.
                    (b[3] - b[1]) / (h * lat_span / (y1 - y0))
                } else {
                    f64::INFINITY
                };
                ((x1 - x0) * ORIGIN_SHIFT / 180.0 / w).min(yr)
            }
        };
        (r.is_finite() && r > 0.0).then_some(r)
    }

    /// The zoom to read: the lowest whose pixel is not coarser than the output pixel, at
    /// most `maxzoom`, lowered until at most `max_tiles` tiles cover the window.
    pub fn zoom(&self, maxzoom: u8, max_tiles: usize) -> u8 {
        let Some(res) = self.resolution_3857() else {
            return 0;
        };
        let zf = (resolution(0) / res).log2();
        let mut z = ((zf - 1e-6).ceil().clamp(0.0, f64::from(tms::MAX_ZOOM)) as u8).min(maxzoom);
        while z > 0 && self.tiles(z).len() > max_tiles {
            z -= 1;
        }
        z
    }

    /// The tiles of zoom `z` that cover the window (none when it lies outside Web Mercator).
    pub fn tiles(&self, z: u8) -> Vec<TileId> {
        let Some([x0, y0, x1, y1]) = self.bbox_3857() else {
            return Vec::new();
        };
        let r = resolution(z) * f64::from(TILE_SIZE);
        let n = (1u64 << z) as f64;
        // Half-open: a box ending on a tile edge does not take the next tile.
        let first = |v: f64| v.floor().clamp(0.0, n - 1.0) as u64;
        let last = |v: f64| (v.ceil() - 1.0).clamp(0.0, n - 1.0) as u64;
        let (c0, c1) = ((x0 + ORIGIN_SHIFT) / r, (x1 + ORIGIN_SHIFT) / r);
        let (r0, r1) = ((ORIGIN_SHIFT - y1) / r, (ORIGIN_SHIFT - y0) / r);
        let mut out = Vec::new();
        for y in first(r0)..=last(r1).max(first(r0)) {
            for x in first(c0)..=last(c1).max(first(c0)) {
                if let Ok(t) = TileId::new(u64::from(z), x, y) {
                    out.push(t);
                }
            }
        }
        out
    }

    /// The window's RGBA pixels (row-major, 4 bytes each) from rendered 256×256 RGBA tiles of
    /// zoom `z`; pixels on a missing tile or outside Web Mercator are transparent.
    pub fn compose(&self, z: u8, tiles: &[(TileId, Vec<u8>)]) -> Vec<u8> {
        let (w, h) = (self.width as usize, self.height as usize);
        let mut out = vec![0u8; w * h * 4];
        let by_id: HashMap<(u32, u32), &[u8]> = tiles
            .iter()
            .filter(|(t, px)| t.z == z && px.len() == TS * TS * 4)
            .map(|(t, px)| ((t.x, t.y), px.as_slice()))
            .collect();
        if by_id.is_empty() {
            return out;
        }
        let [x0, y0, x1, y1] = self.bbox;
        let dx = (x1 - x0) / w as f64;
        let dy = (y1 - y0) / h as f64;
        let res = resolution(z);
        let n = 1u64 << z;
        // Longitude of each column, latitude (or y) of each row: computed once.
        let xs: Vec<f64> = (0..w).map(|c| x0 + (c as f64 + 0.5) * dx).collect();
        let ys: Vec<Option<f64>> = (0..h)
            .map(|r| {
                let v = y1 - (r as f64 + 0.5) * dy;
                match self.crs {
                    MapCrs::WebMercator => Some(v),
                    MapCrs::Wgs84 => (v.abs() <= MAX_LAT).then(|| lonlat_to_mercator(0.0, v).1),
                }
            })
            .collect();
        let gxs: Vec<Option<u64>> = xs
            .iter()
            .map(|&x| {
                let mx = match self.crs {
                    MapCrs::WebMercator => x,
                    MapCrs::Wgs84 => {
                        // One turn around the globe maps back onto the square.
                        let lon = (x + 180.0).rem_euclid(360.0) - 180.0;
                        lonlat_to_mercator(lon, 0.0).0
                    }
                };
                let g = (mx + ORIGIN_SHIFT) / res;
                (g >= 0.0 && g < (n * TS as u64) as f64).then_some(g as u64)
            })
            .collect();
        for (r, my) in ys.iter().enumerate() {
            let Some(my) = my else { continue };
            let gy = (ORIGIN_SHIFT - my) / res;
            if !(gy >= 0.0 && gy < (n * TS as u64) as f64) {
                continue;
            }
            let gy = gy as u64;
            let (ty, py) = ((gy / TS as u64) as u32, (gy % TS as u64) as usize);
            let row = out.get_mut(r * w * 4..(r + 1) * w * 4);
            let Some(row) = row else { continue };
            for (px, gx) in row.chunks_exact_mut(4).zip(&gxs) {
                let Some(gx) = gx else { continue };
                let (tx, pxx) = ((gx / TS as u64) as u32, (gx % TS as u64) as usize);
                let Some(t) = by_id.get(&(tx, ty)) else {
                    continue;
                };
                let i = (py * TS + pxx) * 4;
                if let Some(src) = t.get(i..i + 4) {
                    px.copy_from_slice(src);
                }
            }
        }
        out
    }
}

/// (west, south, east, north) degrees of an EPSG:3857 box.
pub fn bbox_3857_to_lonlat(b: [f64; 4]) -> [f64; 4] {
    let (w, s) = mercator_to_lonlat(b[0], b[1]);
    let (e, n) = mercator_to_lonlat(b[2], b[3]);
    [w, s, e, n]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn tile_px(t: &TileId) -> Vec<u8> {
        // Each pixel says where it is: R = tile x, G = tile y, B = pixel column, A = 255.
        let mut v = vec![0u8; TS * TS * 4];
        for (i, p) in v.chunks_exact_mut(4).enumerate() {
            p.copy_from_slice(&[t.x as u8, t.y as u8, (i % TS) as u8, 255]);
        }
        v
    }

    #[test]
    fn a_window_on_the_tile_grid_is_the_tiles() {
        // Zoom 1, the whole world in 512x512: exactly the four tiles.
        let os = ORIGIN_SHIFT;
        let w = MapWindow::new(MapCrs::WebMercator, [-os, -os, os, os], 512, 512, 4096).unwrap();
        let z = w.zoom(18, 64);
        assert_eq!(z, 1);
        let ts = w.tiles(z);
        assert_eq!(ts.len(), 4);
        let rendered: Vec<_> = ts.iter().map(|t| (*t, tile_px(t))).collect();
        let img = w.compose(z, &rendered);
        let at = |c: usize, r: usize| &img[(r * 512 + c) * 4..(r * 512 + c) * 4 + 4];
        assert_eq!(at(0, 0), [0, 0, 0, 255]);
        assert_eq!(at(300, 10), [1, 0, 44, 255]);
        assert_eq!(at(10, 300), [0, 1, 10, 255]);
        assert_eq!(at(511, 511), [1, 1, 255, 255]);
        // Max zoom caps the zoom; the tile budget lowers it.
        assert_eq!(w.zoom(0, 64), 0);
        let big =
            MapWindow::new(MapCrs::WebMercator, [-os, -os, os, os], 4096, 4096, 4096).unwrap();
        assert_eq!(big.zoom(18, 64), 3);
        assert!(big.tiles(3).len() <= 64);
        // A missing tile is transparent.
        let img = w.compose(z, &rendered[..1]);
        assert_eq!(at_of(&img, 512, 300, 300), [0, 0, 0, 0]);
    }

    fn at_of(img: &[u8], w: usize, c: usize, r: usize) -> [u8; 4] {
        img[(r * w + c) * 4..(r * w + c) * 4 + 4]
            .try_into()
            .unwrap()
    }

    #[test]
    fn degrees_are_longitude_first_and_follow_mercator_rows() {
        // 0..90 E, 0..80 N in 256x256: 90° over 256 columns is exactly the zoom-2 pixel.
        let w = MapWindow::new(MapCrs::Wgs84, [0.0, 0.0, 90.0, 80.0], 256, 256, 4096).unwrap();
        let z = w.zoom(18, 64);
        assert_eq!(z, 2);
        let ts = w.tiles(z);
        assert_eq!(
            ts.iter().map(|t| (t.x, t.y)).collect::<Vec<_>>(),
            [(2, 0), (2, 1)]
        );
        let rendered: Vec<_> = ts.iter().map(|t| (*t, tile_px(t))).collect();
        let img = w.compose(z, &rendered);
        // Bottom left is 0° E just north of the equator: tile (2, 1), its first column.
        assert_eq!(at_of(&img, 256, 0, 255), [2, 1, 0, 255]);
        // The right column is just west of 90° E: the last column of tile x 2; the top row
        // (80° N) is in tile row 0.
        assert_eq!(at_of(&img, 256, 255, 0), [2, 0, 255, 255]);
        // Beyond ±MAX_LAT nothing is drawn.
        let polar = MapWindow::new(MapCrs::Wgs84, [0.0, 86.0, 10.0, 90.0], 16, 16, 4096).unwrap();
        assert!(polar.tiles(3).is_empty());
    }

    #[test]
    fn bad_windows_are_refused() {
        for (b, w, h) in [
            ([1.0, 0.0, 0.0, 1.0], 10, 10),
            ([0.0, 0.0, f64::NAN, 1.0], 10, 10),
            ([0.0, 0.0, 1.0, 1.0], 0, 10),
            ([0.0, 0.0, 1.0, 1.0], 10, 5000),
        ] {
            assert!(
                MapWindow::new(MapCrs::WebMercator, b, w, h, 4096).is_err(),
                "{b:?}"
            );
        }
        assert!(MapWindow::new(MapCrs::Wgs84, [0.0, -91.0, 1.0, 1.0], 1, 1, 4096).is_err());
    }
}
