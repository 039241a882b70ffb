#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
mod common;
use common::open_mask;
use raster::landmask::GeoGrid;

fn point(lon: f64, lat: f64) -> u8 {
    let m = open_mask();
    let w = m
        .window(lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01)
        .unwrap();
    w.at_lonlat(lon, lat).unwrap()
}

#[test]
fn header_is_global_30_arcsec() {
    let m = open_mask();
    let g = m.geo();
    assert_eq!((g.width, g.height), (43200, 21600));
    assert!((g.lon0 + 180.0).abs() < 1e-9 && (g.lat0 - 90.0).abs() < 1e-9);
    assert!((g.dlon - 1.0 / 120.0).abs() < 1e-12 && (g.dlat + 1.0 / 120.0).abs() < 1e-12);
    assert!(m.is_global());
    assert!(m.source().unwrap_or("").contains("GLOBE"));
}

#[test]
fn known_points() {
    assert_eq!(point(147.18, -9.44), 1, "Port Moresby");
    assert_eq!(point(150.0, -12.0), 0, "Coral Sea");
    assert_eq!(point(-58.4, -23.4), 1, "Paraguay");
    assert_eq!(point(-150.0, 0.0), 0, "mid-Pacific");
    assert_eq!(point(-140.0, -30.0), 0, "South Pacific");
    assert_eq!(point(2.35, 48.85), 1, "Paris");
    assert_eq!(point(-30.0, 30.0), 0, "mid-Atlantic");
    assert_eq!(point(134.0, -25.0), 1, "central Australia");
}

#[test]
fn window_snaps_and_has_expected_geometry() {
    let m = open_mask();
    let w = m.window(147.0, -10.0, 148.0, -9.0).unwrap();
    assert_eq!((w.geo.width, w.geo.height), (120, 120));
    assert!((w.geo.lon0 - 147.0).abs() < 1e-9 && (w.geo.lat0 + 9.0).abs() < 1e-9);
    // Window around Port Moresby: both land and sea.
    let land = w.data.iter().filter(|v| **v == 1).count();
    assert!(land > 1000 && land < 120 * 120 - 1000, "land px {land}");
    assert!(w.data.iter().all(|v| *v <= 1));
    // Bad requests are errors, not panics.
    assert!(m.window(148.0, -10.0, 147.0, -9.0).is_err());
    assert!(m.window(f64::NAN, -10.0, 147.0, -9.0).is_err());
}

#[test]
fn window_across_antimeridian_matches_two_halves() {
    // Fiji (Vanua Levu / Taveuni) straddles 180°.
    let m = open_mask();
    let both = m.window(179.0, -17.0, 181.0, -16.0).unwrap();
    let west = m.window(179.0, -17.0, 180.0, -16.0).unwrap();
    let east = m.window(-180.0, -17.0, -179.0, -16.0).unwrap();
    assert_eq!((both.geo.width, both.geo.height), (240, 120));
    for r in 0..120 {
        for c in 0..120 {
            assert_eq!(both.get(c, r), west.get(c, r));
            assert_eq!(both.get(c + 120, r), east.get(c, r));
        }
    }
    assert!(west.data.contains(&1) && east.data.contains(&1));
}

#[test]
fn resample_gives_land_fraction() {
    let m = open_mask();
    let g = GeoGrid::new(147.0, 0.01, -9.0, -0.01, 100, 100).unwrap();
    let r = m.resample_to(&g).unwrap();
    // Port Moresby pixel is land, open sea south-west of it is water, some coastal
    // pixels are fractional.
    assert_eq!(r.at_lonlat(147.18, -9.44), Some(255));
    assert_eq!(r.at_lonlat(147.02, -9.98), Some(0));
    assert!(r.data.iter().any(|v| *v > 0 && *v < 255));
}
