//! Meteor-M N2 orbit and MSU-MR geolocation checks on the shared 2022-12-20 pass.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use imagery::geoloc::{
    expand_row_times, great_circle_km, Geolocator, Pointing, ScanGeometry, LRPT_LINES_PER_ROW,
    MSU_MR_LINE_PERIOD_S, MSU_MR_LRPT_WIDTH,
};
use imagery::orbit::{Propagator, UtcTime};
use imagery::tle::TleSet;

/// Shared test data directory (change here if the data moves).
const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");

const MSK: i64 = 3 * 3600;
/// First image packets of the recording, Moscow time of day (ms): APIDs 65/68 start at
/// 23:25:11.064, APID 64 at 23:25:12.296. MCU rows follow every ≈1.2311 s.
const FIRST_ROW_MS: i64 = 84_311_064;
const APID64_FIRST_MS: i64 = 84_312_296;
const ROW_PERIOD_S: f64 = 1.2311;

fn propagator() -> Propagator {
    let path = format!("{DATA_DIR}/tle/meteor-m2_40069_2022-12-20.tle");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let set = TleSet::parse(&text).unwrap();
    assert_eq!(set.len(), 1);
    Propagator::new(&set.by_norad_id(40069).unwrap().elements).unwrap()
}

fn msk(ms: i64) -> UtcTime {
    UtcTime::from_local_ms_of_day(2022, 12, 20, ms, MSK).unwrap()
}

#[test]
fn subsatellite_point_at_first_packet() {
    let p = propagator();
    let t = msk(APID64_FIRST_MS);
    assert_eq!(
        t,
        UtcTime::from_ymd_hms_micro(2022, 12, 20, 20, 25, 12, 296_000).unwrap()
    );
    let ssp = p.subsatellite_point(t).unwrap();
    println!("SSP at {t}: {ssp:?}");
    assert!((ssp.lat_deg - -10.1).abs() < 0.2, "{ssp:?}");
    assert!((ssp.lon_deg - 146.9).abs() < 0.2, "{ssp:?}");
    // Meteor-M N2: ≈ 820–830 km altitude (planet.iitp.ru: ~830 km).
    assert!((800.0..850.0).contains(&ssp.alt_km), "{ssp:?}");
    // Descending (southbound) at this time.
    let later = p.subsatellite_point(t.add_seconds(10.0)).unwrap();
    assert!(later.lat_deg < ssp.lat_deg);
}

#[test]
fn swath_geometry_sanity() {
    let p = propagator();
    let t = msk(APID64_FIRST_MS);
    let ssp = p.subsatellite_point(t).unwrap();

    // Nadir pixel = sub-satellite point: exact for geodetic-nadir pointing, within the
    // geocentric/geodetic vertical difference (≈ h·0.07° at 10° S) otherwise.
    let mut g = ScanGeometry::MSU_MR_LRPT_NOMINAL;
    let centre = MSU_MR_LRPT_WIDTH as f64 / 2.0;
    g.pointing = Pointing::GeodeticNadir;
    let n = Geolocator::new(p.clone(), g)
        .locate(t, centre)
        .unwrap()
        .unwrap();
    let d_geodetic = great_circle_km(n.lat_deg, n.lon_deg, ssp.lat_deg, ssp.lon_deg);
    assert!(d_geodetic < 0.01, "{d_geodetic} km");
    let nominal = Geolocator::new(p.clone(), ScanGeometry::MSU_MR_LRPT_NOMINAL);
    let frame = nominal.line_frame(t).unwrap();
    let geom = *nominal.geometry();
    let n = frame.locate(&geom, centre).unwrap();
    let d_geocentric = great_circle_km(n.lat_deg, n.lon_deg, ssp.lat_deg, ssp.lon_deg);
    assert!(d_geocentric < 1.5, "{d_geocentric} km");

    // Swath edge to edge (outer pixel edges): documented ≥ 2800 km, "up to 2900 km".
    let a = frame.locate(&geom, 0.0).unwrap();
    let b = frame.locate(&geom, MSU_MR_LRPT_WIDTH as f64).unwrap();
    let swath = great_circle_km(a.lat_deg, a.lon_deg, b.lat_deg, b.lon_deg);
    assert!((2800.0..2950.0).contains(&swath), "swath {swath} km");

    // Pixel size at nadir ≈ 1 km; at the edge several km (constant angular step).
    let c0 = frame.locate(&geom, centre - 0.5).unwrap();
    let c1 = frame.locate(&geom, centre + 0.5).unwrap();
    let nadir_px = great_circle_km(c0.lat_deg, c0.lon_deg, c1.lat_deg, c1.lon_deg);
    assert!(
        (0.95..1.08).contains(&nadir_px),
        "nadir pixel {nadir_px} km"
    );
    let e0 = frame.locate(&geom, 0.5).unwrap();
    let e1 = frame.locate(&geom, 1.5).unwrap();
    let edge_px = great_circle_km(e0.lat_deg, e0.lon_deg, e1.lat_deg, e1.lon_deg);
    assert!((4.0..7.0).contains(&edge_px), "edge pixel {edge_px} km");

    // Ground speed of the sub-satellite point, and along-track line spacing ≈ 1 km.
    let s1 = p.subsatellite_point(t.add_seconds(1.0)).unwrap();
    let v_ground = great_circle_km(ssp.lat_deg, ssp.lon_deg, s1.lat_deg, s1.lon_deg);
    assert!(
        (6.5..7.0).contains(&v_ground),
        "ground speed {v_ground} km/s"
    );
    let line_spacing = v_ground * MSU_MR_LINE_PERIOD_S;
    assert!(
        (0.95..1.1).contains(&line_spacing),
        "{line_spacing} km/line"
    );
    println!(
        "swath {swath:.1} km, nadir px {nadir_px:.3} km, edge px {edge_px:.3} km, \
         ground speed {v_ground:.3} km/s, line spacing {line_spacing:.3} km, \
         nadir-vs-SSP geodetic {d_geodetic:.2e} km geocentric {d_geocentric:.3} km"
    );
}

/// Column 0 is right of the track: west when southbound, east when northbound.
#[test]
fn column_zero_side() {
    let p = propagator();
    let geo = Geolocator::new(p.clone(), ScanGeometry::MSU_MR_LRPT);
    let east_of = |a: f64, b: f64| ((a - b + 540.0) % 360.0 - 180.0) > 0.0;
    // Southbound at the recording.
    let t = msk(APID64_FIRST_MS);
    let c0 = geo.locate(t, 0.5).unwrap().unwrap();
    let cl = geo.locate(t, 1567.5).unwrap().unwrap();
    assert!(east_of(cl.lon_deg, c0.lon_deg), "{c0:?} {cl:?}");
    // Half an orbit (≈ 50.7 min) later the satellite is northbound.
    let t2 = t.add_seconds(50.7 * 60.0);
    let a = p.subsatellite_point(t2).unwrap();
    let b = p.subsatellite_point(t2.add_seconds(10.0)).unwrap();
    assert!(b.lat_deg > a.lat_deg, "not ascending");
    let c0 = geo.locate(t2, 0.5).unwrap().unwrap();
    let cl = geo.locate(t2, 1567.5).unwrap().unwrap();
    assert!(east_of(c0.lon_deg, cl.lon_deg), "{c0:?} {cl:?}");
}

/// GCPs published by georef-lrpt for this recording
/// (`src/test/resources/expected/2022_12_20_20_25_30.vrt`, Orekit/Rugged, roll 2.0°,
/// pitch 0.4°, 110.5° scan): (VRT pixel, lat, lon) on lines 0.5 (row 0) and 199.5 (row 24).
/// Its pixel coordinate p corresponds to our column coordinate p − 0.5.
const GEOREF_LINE0: [(f64, f64, f64); 5] = [
    (1.5, -8.290716756079693, 135.3728643711572),
    (384.5, -9.622240081309872, 143.16527195674223),
    (768.5, -10.213935119751966, 146.99662134159874),
    (1152.5, -10.773128476054236, 150.91763532251755),
    (1568.5, -12.03996777726019, 161.57934320623534),
];
const GEOREF_LINE199: [(f64, f64, f64); 5] = [
    (1.5, -9.984326113321567, 134.92131576679287),
    (384.5, -11.35516420125845, 142.7532363319659),
    (768.5, -11.954247926515755, 146.60806553217944),
    (1152.5, -12.512852929423948, 150.55582326972743),
    (1568.5, -13.736778780692237, 161.30407073464835),
];

#[test]
fn matches_georef_lrpt_gcps() {
    let geo = Geolocator::new(propagator(), ScanGeometry::MSU_MR_LRPT);
    let t0 = msk(FIRST_ROW_MS);
    let t24 = t0.add_seconds(24.0 * ROW_PERIOD_S);
    let mut worst: f64 = 0.0;
    for (t, pts) in [(t0, &GEOREF_LINE0), (t24, &GEOREF_LINE199)] {
        for &(px, lat, lon) in pts.iter() {
            let q = geo.locate(t, px - 0.5).unwrap().unwrap();
            worst = worst.max(great_circle_km(q.lat_deg, q.lon_deg, lat, lon));
        }
    }
    println!("max distance to georef-lrpt GCPs: {:.3} km", worst);
    assert!(worst < 0.1, "{worst} km");

    // Without the roll/pitch correction the swath edges move by > 100 km.
    let nominal = Geolocator::new(propagator(), ScanGeometry::MSU_MR_LRPT_NOMINAL);
    let (px, lat, lon) = GEOREF_LINE0[4];
    let q = nominal.locate(t0, px - 0.5).unwrap().unwrap();
    assert!(great_circle_km(q.lat_deg, q.lon_deg, lat, lon) > 100.0);
}

#[test]
fn gcp_grid_over_recording() {
    let geo = Geolocator::new(propagator(), ScanGeometry::MSU_MR_LRPT);
    // 25 MCU rows (200 lines) like the decoded image; rows 5 and 6 lost.
    let rows: Vec<Option<UtcTime>> = (0..25)
        .map(|r| {
            (r != 5 && r != 6).then(|| msk(FIRST_ROW_MS).add_seconds(f64::from(r) * ROW_PERIOD_S))
        })
        .collect();
    let lines = expand_row_times(&rows, LRPT_LINES_PER_ROW, MSU_MR_LINE_PERIOD_S);
    assert_eq!(lines.len(), 200);
    let gcps = geo.gcp_grid(&lines, MSU_MR_LRPT_WIDTH, 8, 50).unwrap();
    // Lines 0, 8, …, 192 plus 199 (26 lines; the lost rows are interpolated);
    // columns 0, 50, …, 1550 plus 1567 (33 columns).
    assert_eq!(gcps.len(), 26 * 33);
    let first = gcps[0];
    assert_eq!((first.pixel, first.line), (0.5, 0.5));
    let last = gcps[gcps.len() - 1];
    assert_eq!((last.pixel, last.line), (1567.5, 199.5));
    assert!(gcps.iter().any(|g| g.line == 40.5 && g.pixel == 800.5));
    // Row 0 column 0 agrees with georef-lrpt's pixel 1.5 (half a pixel apart: < 6 km).
    let (_, lat, lon) = GEOREF_LINE0[0];
    assert!(great_circle_km(first.lat_deg, first.lon_deg, lat, lon) < 6.0);
    // Latitude decreases down the image (southbound), longitude increases to the right.
    let col = |line: f64, pixel: f64| {
        gcps.iter()
            .find(|g| g.line == line && g.pixel == pixel)
            .copied()
            .unwrap()
    };
    assert!(col(199.5, 800.5).lat_deg < col(0.5, 800.5).lat_deg);
    assert!(col(0.5, 1567.5).lon_deg > col(0.5, 800.5).lon_deg);
    // Spacing along track ≈ 8 km per 8 lines at nadir.
    let d = great_circle_km(
        col(0.5, 800.5).lat_deg,
        col(0.5, 800.5).lon_deg,
        col(8.5, 800.5).lat_deg,
        col(8.5, 800.5).lon_deg,
    );
    assert!((7.5..9.0).contains(&d), "{d}");

    // Leading lines without time are skipped; bad steps / width are errors.
    let mut partial = lines.clone();
    for slot in partial.iter_mut().take(20) {
        *slot = None;
    }
    let g2 = geo.gcp_grid(&partial, MSU_MR_LRPT_WIDTH, 8, 50).unwrap();
    assert!(g2.iter().all(|g| g.line >= 20.0));
    assert_eq!(g2.len(), (26 - 3) * 33);
    assert!(geo.gcp_grid(&lines, MSU_MR_LRPT_WIDTH, 0, 50).is_err());
    assert!(geo.gcp_grid(&lines, 1572, 8, 50).is_err());
}

#[test]
fn gcp_columns_crowd_toward_the_swath_edges() {
    let geo = Geolocator::new(propagator(), ScanGeometry::MSU_MR_LRPT);
    let t = msk(FIRST_ROW_MS);
    let cols = geo.scan_adaptive_columns(t, 56, 0.05).unwrap();
    assert_eq!(cols.first(), Some(&0));
    assert_eq!(cols.last(), Some(&(MSU_MR_LRPT_WIDTH - 1)));
    assert!(cols.contains(&(MSU_MR_LRPT_WIDTH / 2)));
    let steps: Vec<usize> = cols.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(steps.iter().all(|s| (1..=56).contains(s)), "{steps:?}");
    // The full step beside nadir, a few columns at the edges (the ground pixel grows fastest
    // there); the outermost step is what is left over.
    let centre = cols
        .iter()
        .position(|&c| c == MSU_MR_LRPT_WIDTH / 2)
        .unwrap();
    assert_eq!(
        steps.iter().max(),
        steps.get(centre - 1).max(steps.get(centre))
    );
    assert!(steps[centre - 1].max(steps[centre]) >= 40, "{steps:?}");
    assert!(steps[1] < 12 && steps[steps.len() - 2] < 12, "{steps:?}");
    assert!((80..=160).contains(&cols.len()), "{} columns", cols.len());
    // Each GCP column is where the grid puts it.
    let lines = vec![Some(t), Some(t.add_seconds(MSU_MR_LINE_PERIOD_S))];
    let gcps = geo
        .gcp_grid_at_columns(&lines, MSU_MR_LRPT_WIDTH, 1, &cols)
        .unwrap();
    assert_eq!(gcps.len(), 2 * cols.len());
    assert_eq!(gcps[1].pixel, cols[1] as f64 + 0.5);
}

#[test]
fn geolocation_arrays_cover_the_image_and_match_the_model() {
    let geo = Geolocator::new(propagator(), ScanGeometry::MSU_MR_LRPT);
    let t0 = msk(FIRST_ROW_MS);
    // 20 lines; the first 3 and the last 2 without a time (extrapolated at the mean rate).
    let lines: Vec<Option<UtcTime>> = (0..20)
        .map(|l| {
            (3..18)
                .contains(&l)
                .then(|| t0.add_seconds(l as f64 * MSU_MR_LINE_PERIOD_S))
        })
        .collect();
    let a = geo
        .geolocation_arrays(&lines, MSU_MR_LRPT_WIDTH, 4, 8)
        .unwrap();
    // Columns 0, 4, …, 1568 (beyond the last, 1567); lines 0, 8, 16, 24.
    assert_eq!((a.width, a.height), (393, 4));
    assert_eq!(a.lon_deg.len(), 393 * 4);
    for (j, line) in [0usize, 8, 16, 24].into_iter().enumerate() {
        let t = t0.add_seconds(line as f64 * MSU_MR_LINE_PERIOD_S);
        for i in [0usize, 196, 392] {
            let p = geo.locate(t, (i * 4) as f64 + 0.5).unwrap().unwrap();
            let k = j * a.width + i;
            let d = great_circle_km(p.lat_deg, p.lon_deg, a.lat_deg[k], a.lon_deg[k]);
            assert!(d < 0.01, "sample ({i}, {j}) {d} km from the model");
        }
    }
    assert!(geo
        .geolocation_arrays(&[Some(t0), None], MSU_MR_LRPT_WIDTH, 4, 8)
        .is_err());
    assert!(geo
        .geolocation_arrays(&lines, MSU_MR_LRPT_WIDTH, 0, 8)
        .is_err());
}
