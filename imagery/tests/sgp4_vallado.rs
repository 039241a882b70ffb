//! SGP4 verification against Vallado's test set (SGP4-VER.TLE → tcppver.out).
//!
//! Reference: Vallado, Crawford, Hujsak, Kelso, "Revisiting Spacetrack Report #3",
//! AIAA 2006-6753-Rev1, and its distributed verification files. The driver (`testcpp`)
//! writes the state right after `sgp4init` (t = 0, even when initialisation failed — it
//! then repeats the previous satellite's last state), then propagates from `start` (or
//! `step` when start = 0) in `step` increments, clamping the last time to `stop`, and stops
//! the satellite at its first error without writing a record.
//!
//! Tolerance: the `sgp4` crate's own test (`tests/propagate.rs`, same cases) asserts
//! |Δr| < 1e-6 km and |Δv| < 1e-9 km/s per component in AFSPC mode, and its README reports
//! < 2e-7 km / 1e-9 km/s against the C++ reference; tcppver.out itself is printed to 1e-8 km
//! and 1e-9 km/s. Limits here, per component: 1e-6 km (1 mm) for every satellite except
//! 23333 (WIND, e = 0.973), which gets 1e-5 km; 1e-8 km/s for velocities.
//!
//! Which opsmode made tcppver.out? Running both answers it: improved ('i') matches all
//! 666 records (max 4.2e-6 km, 1.8e-9 km/s); AFSPC ('a') is off by 0.96 km on 23599
//! (the low-inclination Lyddane case) and matches everything else to 2e-7 km. Note the
//! `sgp4` crate's own copy of these cases was regenerated in AFSPC mode.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use imagery::orbit::{Propagator, Sgp4Mode};
use imagery::tle::{checksum, TleSet, TLE_LINE_LEN};
use imagery::Error;

/// Shared test data directory (change here if the data moves).
const DATA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");

const POS_TOL_KM: f64 = 1e-6;
const POS_TOL_KM_LOOSE: f64 = 1e-5;
const VEL_TOL_KM_S: f64 = 1e-8;

struct Case {
    norad: u64,
    line1: String,
    line2: String,
    start: f64,
    stop: f64,
    step: f64,
}

struct Record {
    t: f64,
    r: [f64; 3],
    v: [f64; 3],
}

fn read(name: &str) -> String {
    let path = format!("{DATA_DIR}/tle/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Vallado's driver ignores checksums, and the synthetic error cases (33333–33335) carry
/// stale ones, so recompute column 69 before handing the line to the checked parser.
/// Also fills a blank ephemeris-type column (line 1, column 63; 11801 and 88888 leave it
/// empty, Vallado's reader treats it as 0) with `0`, as the `sgp4` crate's own copy of
/// these cases does.
fn fix_checksum(line: &str) -> String {
    let mut s: String = line.chars().take(TLE_LINE_LEN - 1).collect();
    if s.starts_with("1 ") && s.get(62..63) == Some(" ") {
        s.replace_range(62..63, "0");
    }
    let c = checksum(&s);
    s.push(char::from(b'0' + c));
    s
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut out = Vec::new();
    let mut l1: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if line.starts_with("1 ") {
            l1 = Some(line.to_string());
        } else if line.starts_with("2 ") {
            let first = l1.take().expect("line 2 without line 1");
            let (elems, extra) = line.split_at(TLE_LINE_LEN);
            let nums: Vec<f64> = extra
                .split_whitespace()
                .map(|s| s.parse().unwrap())
                .collect();
            assert_eq!(nums.len(), 3, "start/stop/step missing: {line}");
            out.push(Case {
                norad: elems[2..7].trim().parse().unwrap(),
                line1: fix_checksum(&first),
                line2: fix_checksum(elems),
                start: nums[0],
                stop: nums[1],
                step: nums[2],
            });
        }
    }
    out
}

/// tcppver.out: "NNNNN xx" headers followed by records whose first 7 fields are
/// t, r(3), v(3).
fn parse_expected(text: &str) -> Vec<(u64, Vec<Record>)> {
    let mut out: Vec<(u64, Vec<Record>)> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 2 && f[1] == "xx" {
            out.push((f[0].parse().unwrap(), Vec::new()));
        } else if f.len() >= 7 {
            let n: Vec<f64> = f[..7].iter().map(|s| s.parse().unwrap()).collect();
            out.last_mut()
                .expect("record before header")
                .1
                .push(Record {
                    t: n[0],
                    r: [n[1], n[2], n[3]],
                    v: [n[4], n[5], n[6]],
                });
        }
    }
    out
}

/// The times testcpp propagates to after the initial t = 0 record.
fn schedule(c: &Case) -> Vec<f64> {
    let mut ts = Vec::new();
    let mut t = c.start;
    if t.abs() > 1e-8 {
        t -= c.step;
    }
    while t < c.stop {
        t += c.step;
        if t > c.stop {
            t = c.stop;
        }
        ts.push(t);
    }
    ts
}

#[derive(Default, Debug)]
struct Summary {
    compared: usize,
    max_dr_km: f64,
    max_dv_km_s: f64,
    worst_r: (u64, f64),
    errors_confirmed: Vec<(u64, f64, String)>,
    per_sat_max_dr: Vec<(u64, f64)>,
}

fn run(mode: Sgp4Mode) -> Summary {
    let cases = parse_cases(&read("SGP4-VER.TLE"));
    let expected = parse_expected(&read("tcppver.out"));
    assert_eq!(cases.len(), 33);
    assert_eq!(cases.len(), expected.len());

    // The whole file must also go through the library's own TLE parser once checksums
    // are fixed (it skips the '#' comment lines; trailing columns are removed here).
    let cleaned: String = cases
        .iter()
        .map(|c| format!("{}\n{}\n", c.line1, c.line2))
        .collect();
    let set = TleSet::parse(&cleaned).unwrap();
    assert_eq!(set.len(), 33);

    let mut s = Summary::default();
    for (case, (norad, recs)) in cases.iter().zip(&expected) {
        assert_eq!(case.norad, *norad);
        let elements =
            sgp4::Elements::from_tle(None, case.line1.as_bytes(), case.line2.as_bytes()).unwrap();
        let prop = Propagator::with_mode(&elements, mode);
        let compare = |t: f64, rec: &Record, s: &mut Summary| -> bool {
            let st = match prop.as_ref().map(|p| p.propagate_minutes(t)) {
                Ok(Ok(st)) => st,
                _ => return false,
            };
            assert!((rec.t - t).abs() < 1e-6, "{norad}: time {t} vs {}", rec.t);
            for k in 0..3 {
                let dr = (st.position_km[k] - rec.r[k]).abs();
                let dv = (st.velocity_km_s[k] - rec.v[k]).abs();
                match s.per_sat_max_dr.last_mut() {
                    Some((n, m)) if n == norad => *m = m.max(dr),
                    _ => s.per_sat_max_dr.push((*norad, dr)),
                }
                if dr > s.max_dr_km {
                    s.max_dr_km = dr;
                    s.worst_r = (*norad, t);
                }
                s.max_dv_km_s = s.max_dv_km_s.max(dv);
            }
            s.compared += 1;
            true
        };

        // Record 0: state at epoch, written even if initialisation failed.
        let rec0 = recs.first().expect("no t=0 record");
        assert_eq!(rec0.t, 0.0);
        if !compare(0.0, rec0, &mut s) {
            // Vallado: sgp4init failed → no further records for this satellite.
            assert_eq!(recs.len(), 1, "{norad}: init error but more records follow");
            let why = match prop.as_ref().map(|p| p.propagate_minutes(0.0)) {
                Err(e) => e.to_string(),
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(_)) => unreachable!(),
            };
            s.errors_confirmed.push((*norad, 0.0, why));
            continue;
        }
        let prop_ok = prop.as_ref().unwrap();
        let sched = schedule(case);
        let later = &recs[1..];
        assert!(
            later.len() <= sched.len(),
            "{norad}: more records than scheduled"
        );
        for (t, rec) in sched.iter().zip(later) {
            assert!(
                compare(*t, rec, &mut s),
                "{norad}: crate failed at t={t} where Vallado succeeded"
            );
        }
        if later.len() < sched.len() {
            // Vallado stopped at an error; the crate (plus our decay check) must too.
            let t_err = sched[later.len()];
            match prop_ok.propagate_minutes(t_err) {
                Ok(st) => panic!(
                    "{norad}: expected an error at t={t_err}, got {:?}",
                    st.position_km
                ),
                Err(e) => {
                    assert!(matches!(
                        e,
                        Error::Sgp4Propagation { .. } | Error::Decayed { .. }
                    ));
                    s.errors_confirmed.push((*norad, t_err, e.to_string()));
                }
            }
        }
    }
    s
}

#[test]
fn vallado_verification_improved_and_afspc() {
    let afspc = run(Sgp4Mode::Afspc);
    let improved = run(Sgp4Mode::Improved);
    for (name, s) in [("afspc ('a')", &afspc), ("improved ('i')", &improved)] {
        println!(
            "{name}: {} records, max |dr| = {:.3e} km (NORAD {} t={}), max |dv| = {:.3e} km/s",
            s.compared, s.max_dr_km, s.worst_r.0, s.worst_r.1, s.max_dv_km_s
        );
        let mut worst = s.per_sat_max_dr.clone();
        worst.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!("  worst satellites (max |dr| km): {:?}", &worst[..5]);
        for (n, t, e) in &s.errors_confirmed {
            println!("  error reproduced: {n} at t={t}: {e}");
        }
    }
    // tcppver.out was generated with opsmode 'i': improved mode reproduces every record.
    assert_eq!(improved.compared, 666);
    assert!(
        improved.max_dr_km < POS_TOL_KM_LOOSE,
        "{}",
        improved.max_dr_km
    );
    assert!(
        improved.max_dv_km_s < VEL_TOL_KM_S,
        "{}",
        improved.max_dv_km_s
    );
    // All satellites but 23333 (WIND, e = 0.973, 13.7-day period: a few mm from the
    // epoch/sidereal-time arithmetic) agree to better than 1 mm.
    for (n, dr) in &improved.per_sat_max_dr {
        if *n != 23333 {
            assert!(*dr < POS_TOL_KM, "{n}: {dr}");
        }
    }
    // AFSPC mode differs only on 23599 (inclination 6.9°, the Lyddane-choice case), by
    // about a kilometre: proof that the reference file is not an 'a' run.
    for (n, dr) in &afspc.per_sat_max_dr {
        if *n == 23599 {
            assert!(*dr > 0.1, "{n}: {dr}");
        } else {
            assert!(*dr < POS_TOL_KM, "{n}: {dr}");
        }
    }
    // Vallado's error stops are reproduced (crate error or radius < 1 Earth radius).
    for s in [&improved, &afspc] {
        let errs: Vec<u64> = s.errors_confirmed.iter().map(|e| e.0).collect();
        assert_eq!(
            errs,
            vec![22312, 28350, 28872, 29141, 33333, 33334, 20413],
            "{:?}",
            s.errors_confirmed
        );
    }
}
