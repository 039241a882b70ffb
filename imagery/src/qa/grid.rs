//! Regular EPSG:4326 (lon/lat) raster grids, shared by the land-mask reader and the
//! offset estimator. Pure Rust, no GDAL.
//!
//! Geotransform convention is GDAL's: `(lon0, lat0)` is the OUTER corner of pixel
//! (col 0, row 0) (its north-west corner when `dlat < 0`), and the centre of pixel
//! `(c, r)` is at `lon0 + (c + 0.5) * dlon`, `lat0 + (r + 0.5) * dlat`.
//!
//! Lengths of a degree on the WGS84 ellipsoid use the standard series
//! (e.g. "Length of a degree of latitude/longitude", Wikipedia "Latitude", section
//! "Length of a degree"; also NGA/Snyder 1987, *Map Projections — A Working Manual*, p. 25):
//! meridian: 111132.954 − 559.822 cos 2φ + 1.175 cos 4φ m,
//! parallel: 111412.84 cos φ − 93.5 cos 3φ + 0.118 cos 5φ m.

use crate::Error;

/// Geometry of a regular lon/lat grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoGrid {
    /// Longitude of the outer (west, if `dlon > 0`) edge of column 0, degrees.
    pub lon0: f64,
    /// Longitude step per column, degrees (normally positive).
    pub dlon: f64,
    /// Latitude of the outer (north, if `dlat < 0`) edge of row 0, degrees.
    pub lat0: f64,
    /// Latitude step per row, degrees (normally negative).
    pub dlat: f64,
    /// Number of columns.
    pub width: usize,
    /// Number of rows.
    pub height: usize,
}

impl GeoGrid {
    /// Validated constructor.
    pub fn new(
        lon0: f64,
        dlon: f64,
        lat0: f64,
        dlat: f64,
        width: usize,
        height: usize,
    ) -> Result<Self, Error> {
        let g = GeoGrid {
            lon0,
            dlon,
            lat0,
            dlat,
            width,
            height,
        };
        g.validate()?;
        Ok(g)
    }

    /// Check that the geometry is usable.
    pub fn validate(&self) -> Result<(), Error> {
        let finite = [self.lon0, self.dlon, self.lat0, self.dlat]
            .iter()
            .all(|v| v.is_finite());
        if !finite {
            return Err(Error::GridGeometry("non-finite geotransform".into()));
        }
        if self.dlon == 0.0 || self.dlat == 0.0 {
            return Err(Error::GridGeometry("zero pixel size".into()));
        }
        if self.width == 0 || self.height == 0 {
            return Err(Error::GridGeometry(format!(
                "empty grid {}x{}",
                self.width, self.height
            )));
        }
        let (s, n) = self.lat_bounds();
        if s < -90.0 - 1e-9 || n > 90.0 + 1e-9 {
            return Err(Error::GridGeometry(format!(
                "latitude range {s}..{n} outside -90..90"
            )));
        }
        Ok(())
    }

    /// Number of pixels.
    pub fn len(&self) -> usize {
        self.width * self.height
    }

    /// True when the grid has no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (west, east) longitude bounds.
    pub fn lon_bounds(&self) -> (f64, f64) {
        let a = self.lon0;
        let b = self.lon0 + self.dlon * self.width as f64;
        (a.min(b), a.max(b))
    }

    /// (south, north) latitude bounds.
    pub fn lat_bounds(&self) -> (f64, f64) {
        let a = self.lat0;
        let b = self.lat0 + self.dlat * self.height as f64;
        (a.min(b), a.max(b))
    }

    /// Longitude of the centre of column `c` (fractional allowed).
    pub fn lon_of(&self, c: f64) -> f64 {
        self.lon0 + (c + 0.5) * self.dlon
    }

    /// Latitude of the centre of row `r` (fractional allowed).
    pub fn lat_of(&self, r: f64) -> f64 {
        self.lat0 + (r + 0.5) * self.dlat
    }

    /// Latitude of the grid's centre.
    pub fn center_lat(&self) -> f64 {
        let (s, n) = self.lat_bounds();
        0.5 * (s + n)
    }

    /// Kilometres per pixel step along a row (east-west) and a column (north-south)
    /// at latitude `lat_deg`, signed like `dlon` / `dlat`.
    pub fn km_per_pixel_at(&self, lat_deg: f64) -> (f64, f64) {
        let (km_lon, km_lat) = km_per_degree(lat_deg);
        (self.dlon * km_lon, self.dlat * km_lat)
    }
}

/// Kilometres per degree of longitude and of latitude at `lat_deg` (WGS84).
pub fn km_per_degree(lat_deg: f64) -> (f64, f64) {
    let p = lat_deg.to_radians();
    let lat_m = 111_132.954 - 559.822 * (2.0 * p).cos() + 1.175 * (4.0 * p).cos();
    let lon_m = 111_412.84 * p.cos() - 93.5 * (3.0 * p).cos() + 0.118 * (5.0 * p).cos();
    (lon_m / 1000.0, lat_m / 1000.0)
}

/// A raster on a [`GeoGrid`], row-major, row 0 first.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid<T> {
    /// Geometry.
    pub geo: GeoGrid,
    /// `geo.width * geo.height` values, row-major.
    pub data: Vec<T>,
}

impl<T: Copy> Grid<T> {
    /// Build a grid, checking the data length against the geometry.
    pub fn new(geo: GeoGrid, data: Vec<T>) -> Result<Self, Error> {
        geo.validate()?;
        if data.len() != geo.len() {
            return Err(Error::GridLength {
                got: data.len(),
                width: geo.width,
                height: geo.height,
            });
        }
        Ok(Grid { geo, data })
    }

    /// Value at (col, row), `None` outside.
    pub fn get(&self, col: usize, row: usize) -> Option<T> {
        if col >= self.geo.width || row >= self.geo.height {
            return None;
        }
        self.data.get(row * self.geo.width + col).copied()
    }

    /// Value at the pixel containing (lon, lat), `None` outside.
    pub fn at_lonlat(&self, lon: f64, lat: f64) -> Option<T> {
        let c = ((lon - self.geo.lon0) / self.geo.dlon).floor();
        let r = ((lat - self.geo.lat0) / self.geo.dlat).floor();
        if !(c >= 0.0 && r >= 0.0) {
            return None;
        }
        self.get(c as usize, r as usize)
    }
}
