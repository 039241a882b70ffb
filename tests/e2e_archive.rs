//! End-to-end: `downlink archive add / add-pass / list / remove` on real rasters and the shared
//! Meteor-M2 pass, and analysis clients (odc-stac, stackstac) loading what the daemon's STAC
//! API serves. No item is ever silently replaced; a replaced item's files go only after the
//! new item is committed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;
use common::*;

fn downlink(archive: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(args)
        .arg("--archive")
        .arg(archive)
        .output()
        .unwrap()
}

fn ok_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn add(archive: &Path, files: &[&Path], extra: &[&str]) -> Output {
    let mut args: Vec<&str> = vec!["archive", "add"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    args.extend(extra);
    downlink(archive, &args)
}

fn listed(archive: &Path) -> Vec<serde_json::Value> {
    let v = ok_json(&downlink(archive, &["archive", "list", "--json"]));
    v.as_array().unwrap().clone()
}

fn hrefs(item: &serde_json::Value) -> Vec<PathBuf> {
    item["assets"]
        .as_object()
        .unwrap()
        .values()
        .map(|a| PathBuf::from(a["href"].as_str().unwrap()))
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn re_adding_a_file_is_refused_and_files_with_one_stem_get_distinct_ids() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let rgb = data("geotiff/RGB.byte.tif");
    let when = [
        "--collection",
        "scenes",
        "--datetime",
        "2024-08-01T13:45:00Z",
    ];
    let first = ok_json(&add(&archive, &[&rgb], &when));
    assert_eq!(first["id"], "scenes-20240801T134500Z-RGB.byte");
    let before = files_under(&archive.join("collections"));
    assert_eq!(before.len(), 5, "{before:?}"); // red, green, blue, visual, thumbnail

    // The same file again: refused, nothing changed.
    let again = add(&archive, &[&rgb], &when);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already exists") && err.contains("--replace"),
        "{err}"
    );
    assert_eq!(files_under(&archive.join("collections")), before);
    assert_eq!(listed(&archive).len(), 1);

    // Two different files named scene.tif: distinct ids at distinct times; at the same time
    // the second is refused (not a silent replacement) until it gets its own --id.
    let a = dir.path().join("a/scene.tif");
    let b = dir.path().join("b/scene.tif");
    for (src, dst) in [
        ("geotiff/RGB.byte.tif", &a),
        ("geotiff/rgb-byte-tenth.tif", &b),
    ] {
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(data(src), dst).unwrap();
    }
    let ia = ok_json(&add(
        &archive,
        &[&a],
        &[
            "--collection",
            "scenes",
            "--datetime",
            "2024-09-01T00:00:00Z",
        ],
    ));
    let ib = ok_json(&add(
        &archive,
        &[&b],
        &[
            "--collection",
            "scenes",
            "--datetime",
            "2024-10-01T00:00:00Z",
        ],
    ));
    assert_ne!(ia["id"], ib["id"]);
    let same_time = add(
        &archive,
        &[&b],
        &[
            "--collection",
            "scenes",
            "--datetime",
            "2024-09-01T00:00:00Z",
        ],
    );
    assert!(!same_time.status.success());
    let kept = listed(&archive);
    assert_eq!(kept.len(), 3, "{kept:?}");
    let ic = ok_json(&add(
        &archive,
        &[&b],
        &[
            "--collection",
            "scenes",
            "--datetime",
            "2024-09-01T00:00:00Z",
            "--id",
            "scene-b-sept",
        ],
    ));
    assert_eq!(ic["id"], "scene-b-sept");
    let ids: Vec<String> = listed(&archive)
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    // Every item's files are its own and exist.
    for item in [&first, &ia, &ib, &ic] {
        for h in hrefs(item) {
            assert!(archive.join(&h).is_file(), "{}", h.display());
        }
    }

    // Table output names every item.
    let table = downlink(&archive, &["archive", "list", "--collection", "scenes"]);
    let table = String::from_utf8_lossy(&table.stdout);
    for id in &ids {
        assert!(table.contains(id.as_str()), "{table}");
    }

    // remove: the catalog entry, then its files; nothing of the others.
    let gone = downlink(&archive, &["archive", "remove", "scene-b-sept"]);
    assert!(
        gone.status.success(),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    for h in hrefs(&ic) {
        assert!(!archive.join(&h).exists(), "{}", h.display());
    }
    for item in [&first, &ia, &ib] {
        for h in hrefs(item) {
            assert!(archive.join(&h).is_file(), "{}", h.display());
        }
    }
    assert_eq!(listed(&archive).len(), 3);
    let missing = downlink(&archive, &["archive", "remove", "scene-b-sept"]);
    assert!(!missing.status.success());
}

#[test]
fn bands_name_each_file_band_and_replace_removes_old_files_only_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let t1 = data("change/muri-ag/S2_L2A_T32TMT_20200807_red_nir.tif");
    let t2 = data("change/muri-ag/S2_L2A_T32TMT_20210812_red_nir.tif");
    let common = [
        "--collection",
        "muri",
        "--datetime",
        "2020-08-07T10:25:59Z",
        "--id",
        "muri-1",
    ];

    // --bands must name every band, with eo common names.
    for bad in ["red", "red,nir,blue", "red,infrared", "red,red"] {
        let out = add(&archive, &[&t1], &[&common[..], &["--bands", bad]].concat());
        assert!(!out.status.success(), "{bad}");
        eprintln!(
            "--bands {bad}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    assert!(listed(&archive).is_empty());

    let old = ok_json(&add(
        &archive,
        &[&t1],
        &[&common[..], &["--bands", "red,nir"]].concat(),
    ));
    for (key, name, file_band) in [("red", "red", "B04"), ("nir", "nir", "B08")] {
        let a = &old["assets"][key];
        assert_eq!(a["bands"][0]["eo:common_name"], name);
        assert!(
            a["bands"][0]["description"]
                .as_str()
                .unwrap()
                .contains(file_band),
            "{a}"
        );
        assert_eq!(a["bands"][0]["data_type"], "uint16");
        assert!(a["bands"][0]["statistics"]["maximum"].as_f64().unwrap() > 1000.0);
        assert_eq!(a["proj:code"], "EPSG:32632");
        // Projection v2.0.0: `proj:epsg` is refused by its schema.
        assert!(a.get("proj:epsg").is_none(), "{a}");
        assert_eq!(a["proj:shape"], serde_json::json!([356, 429]));
        assert_eq!(
            a["proj:transform"],
            serde_json::json!([10.0, 0.0, 449280.0, 0.0, -10.0, 5236230.0])
        );
        assert_eq!(
            a["proj:bbox"],
            serde_json::json!([449280.0, 5232670.0, 453570.0, 5236230.0])
        );
        assert_eq!(a["gsd"], 10.0);
    }
    assert_eq!(old["properties"]["proj:code"], "EPSG:32632");
    assert_eq!(old["assets"]["thumbnail"]["type"], "image/png");
    let old_files: Vec<PathBuf> = hrefs(&old).iter().map(|h| archive.join(h)).collect();

    // A replacement whose commit fails (the catalog is write-locked past its busy timeout):
    // the old item and its files stay whole, the new files are removed.
    let db = archive.join("catalog.sqlite");
    let mut lock = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import sqlite3,sys,time\nc=sqlite3.connect(sys.argv[1],isolation_level=None)\nc.execute('BEGIN IMMEDIATE')\nprint('locked',flush=True)\ntime.sleep(14)\n",
        ])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(lock.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
    }
    let day = archive.join("collections/muri/2020/08/07");
    let started = Instant::now();
    let replacing = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(["archive", "add", t2.to_str().unwrap()])
        .args(common)
        .args(["--bands", "red,nir", "--replace", "--archive"])
        .arg(&archive)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The new item's files are written next to the old ones before the commit is tried.
    let mut both = false;
    while started.elapsed() < Duration::from_secs(9) && !both {
        let dirs = std::fs::read_dir(&day).unwrap().count();
        both = dirs == 2 && old_files.iter().all(|f| f.is_file());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(both, "no second item directory while the old one stood");
    let failed = replacing.wait_with_output().unwrap();
    let _ = lock.wait();
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("locked") || err.contains("busy"), "{err}");
    for f in &old_files {
        assert!(f.is_file(), "{} gone after a failed replace", f.display());
    }
    assert_eq!(std::fs::read_dir(&day).unwrap().count(), 1);
    let still = listed(&archive);
    assert_eq!(still.len(), 1);

    // The replacement committed: the old files go, the new item's are there.
    let new = ok_json(&add(
        &archive,
        &[&t2],
        &[&common[..], &["--bands", "red,nir", "--replace"]].concat(),
    ));
    assert_eq!(new["id"], "muri-1");
    // A new version: cached tiles and ETags of the old one are not served for it.
    assert_ne!(new["properties"]["updated"], old["properties"]["updated"]);
    assert_eq!(
        new["properties"]["downlink:sources"],
        serde_json::json!(["S2_L2A_T32TMT_20210812_red_nir.tif"])
    );
    for f in &old_files {
        assert!(!f.exists(), "{} kept after the replace", f.display());
    }
    for h in hrefs(&new) {
        assert!(archive.join(&h).is_file(), "{}", h.display());
    }
    assert_eq!(
        files_under(&archive.join("collections")).len(),
        4, // red, nir, visual, thumbnail
    );

    // Two files, one band each: one item, bands in order across the files.
    let red = dir.path().join("red.tif");
    let nir = dir.path().join("nir.tif");
    for (band, dst) in [(1, &red), (2, &nir)] {
        let st = Command::new("gdal_translate")
            .args(["-q", "-b", &band.to_string()])
            .arg(&t1)
            .arg(dst)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let two = ok_json(&add(
        &archive,
        &[&red, &nir],
        &[
            "--collection",
            "muri-split",
            "--datetime",
            "2020-08-07T10:25:59Z",
            "--bands",
            "red,nir",
        ],
    ));
    assert_eq!(two["id"], "muri-split-20200807T102559Z-red");
    assert_eq!(two["assets"]["red"]["bands"][0]["eo:common_name"], "red");
    assert_eq!(two["assets"]["nir"]["bands"][0]["eo:common_name"], "nir");
    assert!(two["assets"]["nir"]["title"]
        .as_str()
        .unwrap()
        .contains("nir.tif"));
}

/// `downlink image` of the shared Meteor-M2 frames (dated with --date, checked against the
/// land mask) into `out`, with pass id `pass_id`.
fn meteor_products(out: &Path, pass_id: &str) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_downlink"));
    cmd.args(["image", "--profile", "meteor-lrpt", "--format", "frames"])
        .arg("--tle")
        .arg(data("tle/meteor-m2_40069_2022-12-20.tle"))
        .args(["--date", "2022-12-20", "--pass-id", pass_id])
        .arg("--landmask")
        .arg(landmask())
        .arg("--out")
        .arg(out);
    for s in ["30", "40", "50"] {
        cmd.arg(data(&format!("vcdu/meteor-m2/2022_12_20_20_25_{s}.vcdu")));
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn add_pass_catalogues_the_shared_meteor_products_with_their_real_time_and_qa() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let out = dir.path().join("image-out");
    meteor_products(&out, "m2-20221220");
    let item = ok_json(&downlink(
        &archive,
        &["archive", "add-pass", out.to_str().unwrap()],
    ));
    assert_eq!(item["id"], "m2-20221220");
    assert_eq!(item["collection"], "meteor-m2-msu-mr");
    let p = &item["properties"];
    assert!(
        p["datetime"]
            .as_str()
            .unwrap()
            .starts_with("2022-12-20T20:25"),
        "{p}"
    );
    assert_eq!(p["platform"], "meteor-m 2");
    assert!(p["downlink:link_quality"]["frames_good"].as_u64().unwrap() > 0);
    let qa = p["downlink:geolocation_qa"].as_array().unwrap();
    assert!(!qa.is_empty(), "{p}");
    assert!(p["view:sun_elevation"].is_number());
    assert_eq!(p["proj:code"], "EPSG:4326");
    for ch in ["ch1", "ch2", "ch5"] {
        let a = &item["assets"][ch];
        assert_eq!(a["proj:code"], "EPSG:4326", "{a}");
        assert_eq!(a["proj:shape"].as_array().unwrap().len(), 2);
        assert_eq!(a["proj:transform"].as_array().unwrap().len(), 6);
        assert_eq!(a["proj:bbox"].as_array().unwrap().len(), 4);
        assert!(a["gsd"].as_f64().unwrap() > 500.0);
        let b = &a["bands"][0];
        assert_eq!(b["data_type"], "uint8");
        assert!(b["statistics"]["mean"].is_number(), "{b}");
        // The files are in the archive now, not in the image output.
        let h = a["href"].as_str().unwrap();
        assert!(h.starts_with("passes/m2-20221220/products/"), "{h}");
        assert!(archive.join(h).is_file());
    }
    assert_eq!(item["assets"]["ch2"]["bands"][0]["eo:common_name"], "nir");
    assert!(item["assets"]["visual"].is_object());

    // Again: refused; the item is as it was.
    let again = downlink(&archive, &["archive", "add-pass", out.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    // --replace: the new set is committed, the old files are gone.
    let old_files: Vec<PathBuf> = hrefs(&item).iter().map(|h| archive.join(h)).collect();
    let replaced = ok_json(&downlink(
        &archive,
        &["archive", "add-pass", out.to_str().unwrap(), "--replace"],
    ));
    assert_eq!(replaced["id"], "m2-20221220");
    assert_eq!(replaced["properties"]["datetime"], p["datetime"]);
    for h in hrefs(&replaced) {
        assert!(archive.join(&h).is_file(), "{}", h.display());
    }
    let new_files: Vec<PathBuf> = hrefs(&replaced).iter().map(|h| archive.join(h)).collect();
    for f in old_files {
        assert!(
            !f.exists() || new_files.contains(&f),
            "{} kept after the replace",
            f.display()
        );
    }
    assert_eq!(listed(&archive).len(), 1);
}

#[test]
fn odc_stac_and_stackstac_load_imports_and_passes_from_the_stac_api() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let d = Daemon::start_full("udp", "meteor-lrpt", "frames", "", "", &[]);
    let muri = data("change/muri-ag");
    for (file, when) in [
        ("S2_L2A_T32TMT_20210812_red_nir.tif", "2021-08-12T10:25:59Z"),
        ("S2_L2A_T32TMT_20200807_red_nir.tif", "2020-08-07T10:25:59Z"),
    ] {
        ok_json(&add(
            &d.archive,
            &[&muri.join(file)],
            &[
                "--collection",
                "muri",
                "--datetime",
                when,
                "--bands",
                "red,nir",
            ],
        ));
    }
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("pass");
    meteor_products(&out, "m2-20221220");
    ok_json(&downlink(
        &d.archive,
        &["archive", "add-pass", out.to_str().unwrap()],
    ));

    // The footprint is the valid data, not the raster with its nodata collar.
    let rgb = ok_json(&add(
        &d.archive,
        &[&data("geotiff/RGB.byte.tif")],
        &[
            "--collection",
            "scenes",
            "--datetime",
            "2024-08-01T13:45:00Z",
        ],
    ));
    let bb: Vec<f64> = rgb["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let search_at = |lon: f64, lat: f64| -> usize {
        let body = format!(
            r#"{{"collections":["scenes"],"intersects":{{"type":"Point","coordinates":[{lon},{lat}]}}}}"#
        );
        let (st, _, b) = http(
            d.http,
            "POST",
            "/stac/search",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        assert_eq!(st, 200);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["features"].as_array().unwrap().len()
    };
    let (cx, cy) = ((bb[0] + bb[2]) / 2.0, (bb[1] + bb[3]) / 2.0);
    assert_eq!(search_at(cx, cy), 1);
    // The raster's corner: inside its rectangle, in the collar (RGB.byte is a rotated scene).
    let (w, n) = (
        bb[0] + 0.02 * (bb[2] - bb[0]),
        bb[3] - 0.02 * (bb[3] - bb[1]),
    );
    assert_eq!(search_at(w, n), 0, "a point in the nodata collar matched");

    let script = repo.join("tests/clients/archive-clients.sh");
    let o = Command::new("bash")
        .arg(&script)
        .arg(repo.join("target/archive-clients"))
        .arg(format!("http://127.0.0.1:{}/stac", d.http))
        .arg("muri")
        .arg(&muri)
        .arg("meteor-m2-msu-mr")
        .arg("m2-20221220")
        .arg(data(
            "schemas/stac-extensions.github.io/eo/v2.0.0/schema.json",
        ))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stdout);
    eprintln!("{log}");
    assert!(
        o.status.success() && log.contains("archive clients: all checks passed"),
        "{log}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Both clients ran every check.
    for what in [
        "odc-stac: dNDVI equals the reference raster",
        "stackstac: dNDVI equals the reference raster",
        "odc-stac: forest loss px 320 == 320",
        "stackstac: whole-scene loss px 18902 == 18902",
        "stackstac: pass band ch5 equals its COG",
        "odc-stac: pass band ch2 equals its COG",
    ] {
        assert!(log.contains(&format!("ok   {what}")), "{what}\n{log}");
    }
}

#[test]
fn a_replayed_pass_is_dated_by_the_inputs_pass_date_not_the_wall_clock() {
    // The 2022 TLE (not one moved to today) and the date of the recording on the input.
    let sections = format!(
        "[imaging]\ntle = [\"{}\"]\nlandmask = \"{}\"\n",
        data("tle/meteor-m2_40069_2022-12-20.tle").display(),
        landmask().display()
    );
    let d = Daemon::start_full(
        "udp",
        "meteor-lrpt",
        "frames",
        "pass_date = \"2022-12-20\"",
        &sections,
        &[],
    );
    let scratch = tempfile::tempdir().unwrap();
    let capture = scratch.path().join("meteor.vcdu");
    let mut bytes = Vec::new();
    for s in ["30", "40", "50"] {
        bytes.extend(
            std::fs::read(data(&format!("vcdu/meteor-m2/2022_12_20_20_25_{s}.vcdu"))).unwrap(),
        );
    }
    std::fs::write(&capture, bytes).unwrap();
    let replay = Command::new(env!("CARGO_BIN_EXE_downlink"))
        .args(["replay", "--quiet", "--rate", "20Mbit", "--to"])
        .arg(format!("udp://127.0.0.1:{}", d.udp))
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let id = wait_catalogued(&d);
    let item = json_of(
        d.http,
        &format!("/stac/collections/meteor-m2-msu-mr/items/{id}"),
    );
    let p = &item["properties"];
    assert!(
        p["datetime"]
            .as_str()
            .unwrap()
            .starts_with("2022-12-20T20:25"),
        "{p}"
    );
    assert!(
        !p["downlink:geolocation_qa"].as_array().unwrap().is_empty(),
        "{p}"
    );
    assert!(p["downlink:link_quality"]["frames_good"].as_u64().unwrap() > 0);
}
