#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use gdal::raster::Buffer;
use gdal::spatial_ref::{AxisMappingStrategy, CoordTransform, SpatialRef};
use gdal::{Dataset, DriverManager};
use raster::tiles::render::*;
use raster::tiles::tms::TileId;
use raster::Error;
use std::future::Future;

/// Shared sample data (one constant so the lead can move it).
const SHARED_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");

const Z: u8 = 12;
const TX0: u32 = 2000;
const TY0: u32 = 1500;

fn value(c: usize, r: usize) -> u8 {
    ((c * 7 + r * 13) % 250 + 1) as u8
}
fn is_nodata(c: usize, r: usize) -> bool {
    (100..150).contains(&c) && (40..90).contains(&r)
}

/// Synthetic web-optimized COG: 2×2 tiles at z12 starting at tile (2000, 1500).
fn synthetic_web_cog() -> String {
    let path = format!(
        "{}/synthetic_web_{}.tif",
        env!("CARGO_TARGET_TMPDIR"),
        std::process::id()
    );
    let mem = DriverManager::get_driver_by_name("MEM").unwrap();
    let mut ds = mem.create_with_band_type::<u8, _>("", 512, 512, 1).unwrap();
    let gt = TileId::new(Z.into(), TX0.into(), TY0.into())
        .unwrap()
        .geo_transform();
    ds.set_geo_transform(&gt).unwrap();
    ds.set_spatial_ref(&gdal::spatial_ref::SpatialRef::from_epsg(3857).unwrap())
        .unwrap();
    let mut data = vec![0u8; 512 * 512];
    for r in 0..512 {
        for c in 0..512 {
            data[r * 512 + c] = if is_nodata(c, r) { 0 } else { value(c, r) };
        }
    }
    let mut b = ds.rasterband(1).unwrap();
    b.set_no_data_value(Some(0.0)).unwrap();
    let mut buf = Buffer::new((512, 512), data);
    b.write((0, 0), (512, 512), &mut buf).unwrap();

    let cog = DriverManager::get_driver_by_name("COG").unwrap();
    let opts: gdal::raster::RasterCreationOptions = [
        "TILING_SCHEME=GoogleMapsCompatible",
        "COMPRESS=DEFLATE",
        "RESAMPLING=NEAREST",
        "OVERVIEW_RESAMPLING=NEAREST",
    ]
    .into_iter()
    .collect();
    ds.create_copy(&cog, &path, &opts).unwrap();
    path
}

fn px(t: &Tile, c: usize, r: usize) -> [u8; 4] {
    match t {
        Tile::Rgba(v) => v[(r * 256 + c) * 4..(r * 256 + c) * 4 + 4]
            .try_into()
            .unwrap(),
        Tile::Empty => panic!("empty tile"),
    }
}

#[test]
fn fast_path_exact_pixels() {
    let path = synthetic_web_cog();
    let src = TileSource::open(&path).unwrap();
    let info = src.info().clone();
    assert_eq!(info.web_max_zoom, Some(12));
    assert_eq!((info.width, info.height), (512, 512));
    let opts = RenderOptions::default();
    for (dx, dy) in [(0u32, 0u32), (1, 0), (0, 1), (1, 1)] {
        let t = TileId::new(12, (TX0 + dx).into(), (TY0 + dy).into()).unwrap();
        assert_eq!(src.path_for(&t), RenderPath::Fast);
        let tile = src.render(&t, &opts).unwrap();
        let mut n_nodata = 0;
        for r in 0..256 {
            for c in 0..256 {
                let (gc, gr) = (c + 256 * dx as usize, r + 256 * dy as usize);
                let p = px(&tile, c, r);
                if is_nodata(gc, gr) {
                    assert_eq!(p[3], 0, "alpha at {gc},{gr}");
                    n_nodata += 1;
                } else {
                    let v = value(gc, gr);
                    assert_eq!(p, [v, v, v, 255], "pixel {gc},{gr}");
                }
            }
        }
        assert_eq!(n_nodata, if (dx, dy) == (0, 0) { 2500 } else { 0 });
        // General path at native resolution, nearest: the same pixels.
        let g = src.render_via(&t, &opts, RenderPath::General).unwrap();
        assert_eq!(g, tile, "general path differs on {t:?}");
    }
    // Rescale 0..100 truncates like rio-tiler.
    let t = TileId::new(12, TX0.into(), TY0.into()).unwrap();
    let tile = src
        .render(
            &t,
            &RenderOptions {
                rescale: vec![(0.0, 100.0)],
                ..Default::default()
            },
        )
        .unwrap();
    let v = value(3, 0) as f64; // 22
    let want = ((v.min(100.0)) / 100.0 * 255.0) as u8;
    assert_eq!(px(&tile, 3, 0), [want, want, want, 255]);
    assert_eq!(want, 56);
    // Outside → Empty; z11 → one overview window, equal to the overview read directly.
    assert_eq!(
        src.render(&TileId::new(12, 2002, 1500).unwrap(), &opts)
            .unwrap(),
        Tile::Empty
    );
    assert_eq!(
        src.render(&TileId::new(5, 0, 0).unwrap(), &opts).unwrap(),
        Tile::Empty
    );
    let t11 = TileId::new(11, (TX0 / 2).into(), (TY0 / 2).into()).unwrap();
    assert_eq!(src.path_for(&t11), RenderPath::Fast);
    let tile = src.render(&t11, &opts).unwrap();
    let ds = Dataset::open(&path).unwrap();
    let ov = ds.rasterband(1).unwrap().overview(0).unwrap();
    assert_eq!(ov.size(), (256, 256));
    let ovd = ov
        .read_as::<u8>((0, 0), (256, 256), (256, 256), None)
        .unwrap();
    for r in 0..256 {
        for c in 0..256 {
            let v = ovd.data()[r * 256 + c];
            let p = px(&tile, c, r);
            if v == 0 {
                assert_eq!(p[3], 0);
            } else {
                assert_eq!(p, [v, v, v, 255]);
            }
        }
    }
    // Over-zoom z13 goes through the general path: pixel (c, r) of 13/4000/3000 is source (c/2, r/2).
    let t13 = TileId::new(13, 4000, 3000).unwrap();
    assert_eq!(src.path_for(&t13), RenderPath::General);
    let tile = src.render(&t13, &opts).unwrap();
    assert_eq!(px(&tile, 11, 7), {
        let v = value(5, 3);
        [v, v, v, 255]
    });
    // Bad options are errors.
    assert!(src
        .render(
            &t,
            &RenderOptions {
                bidx: vec![2],
                ..Default::default()
            }
        )
        .is_err());
    assert!(src
        .render(
            &t,
            &RenderOptions {
                bidx: vec![1, 1],
                ..Default::default()
            }
        )
        .is_err());
    std::fs::remove_file(&path).ok();
}

#[test]
fn encode_roundtrip() {
    let mut rgba = vec![0u8; 256 * 256 * 4];
    for (i, p) in rgba.chunks_exact_mut(4).enumerate() {
        p.copy_from_slice(&[
            (i % 256) as u8,
            (i / 256) as u8,
            7,
            if i % 3 == 0 { 0 } else { 255 },
        ]);
    }
    let png = encode(&rgba, Format::Png).unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgba8();
    assert_eq!(img.into_raw(), rgba);
    let webp = encode(&rgba, Format::WebpLossless).unwrap();
    let img = image::load_from_memory(&webp).unwrap().to_rgba8();
    assert_eq!(img.into_raw(), rgba);
    let jpg = encode(&rgba, Format::Jpeg(90)).unwrap();
    let img = image::load_from_memory(&jpg).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (256, 256));
    assert!(encode(&rgba[..100], Format::Png).is_err());
}

/// `n` PNG tiles of the synthetic COG (two alternating) submitted at once.
fn burst(pool: &TilePool, path: &str, n: u32) -> Vec<TileFuture> {
    (0..n)
        .map(|i| {
            pool.submit(
                path,
                TileId::new(12, (TX0 + i % 2).into(), TY0.into()).unwrap(),
                RenderOptions::default(),
                Format::Png,
            )
        })
        .collect()
}

#[test]
fn pool_async_and_blocking() {
    let path = synthetic_web_cog();
    let pool = TilePool::new(2, 4, 16).unwrap();
    let futs = burst(&pool, &path, 8);
    for f in futs {
        match f.wait().unwrap() {
            Encoded::Image {
                bytes,
                content_type,
            } => {
                assert_eq!(content_type, "image/png");
                assert_eq!(&bytes[1..4], b"PNG");
            }
            Encoded::Empty => panic!("empty"),
        }
    }
    // Poll as a future with a no-op waker (busy-wait executor is enough here).
    let mut f = pool.submit(
        &path,
        TileId::new(12, 2002, 1500).unwrap(),
        RenderOptions::default(),
        Format::Png,
    );
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let out = loop {
        if let std::task::Poll::Ready(v) = std::pin::Pin::new(&mut f).poll(&mut cx) {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    assert_eq!(out.unwrap(), Encoded::Empty);
    let err = pool
        .submit(
            "/nonexistent.tif",
            TileId::new(0, 0, 0).unwrap(),
            RenderOptions::default(),
            Format::Png,
        )
        .wait();
    assert!(matches!(err, Err(Error::Gdal { .. })));
    drop(pool);

    // A bounded queue: one renderer, one waiting slot. A burst of 40 submitted faster than a
    // tile renders is mostly refused with Busy at once; what was accepted renders.
    let pool = TilePool::new(1, 1, 1).unwrap();
    let futs = burst(&pool, &path, 40);
    let (mut busy, mut done) = (0, 0);
    for f in futs {
        match f.wait() {
            Err(Error::Busy) => busy += 1,
            Ok(Encoded::Image { .. }) => done += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(busy >= 30 && done >= 1, "busy {busy}, rendered {done}");
    drop(pool);
    std::fs::remove_file(&path).ok();
    let _ = SHARED_DATA;
}

/// Lossless COG in the source CRS with overviews, as `catalog::raster::write_cogs` writes
/// the analytic asset.
fn analytic_cog(name: &str) -> String {
    let src = format!("{SHARED_DATA}/geotiff/{name}");
    let path = format!(
        "{}/analytic_{}_{name}",
        env!("CARGO_TARGET_TMPDIR"),
        std::process::id()
    );
    let ds = Dataset::open(&src).unwrap();
    let cog = DriverManager::get_driver_by_name("COG").unwrap();
    let opts: gdal::raster::RasterCreationOptions = [
        "COMPRESS=ZSTD",
        "PREDICTOR=YES",
        "OVERVIEW_RESAMPLING=AVERAGE",
    ]
    .into_iter()
    .collect();
    ds.create_copy(&cog, &path, &opts).unwrap();
    path
}

/// Exact nearest-neighbour reference: every destination pixel centre is transformed from
/// EPSG:3857 to the source CRS with OSR, the source pixel is the floor of its full-resolution
/// pixel coordinate, alpha = inside the raster and not nodata in all bands. Returns
/// (alpha mismatches, value mismatches where both are opaque).
fn compare_with_exact(
    src: &TileSource,
    ds: &Dataset,
    data: &[Vec<u8>],
    t: &TileId,
) -> (usize, usize) {
    let (w, h) = ds.raster_size();
    let sgt = ds.geo_transform().unwrap();
    assert!(sgt[2] == 0.0 && sgt[4] == 0.0, "north-up source");
    let mut merc = SpatialRef::from_epsg(3857).unwrap();
    merc.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let mut srs = ds.spatial_ref().unwrap();
    srs.set_axis_mapping_strategy(AxisMappingStrategy::TraditionalGisOrder);
    let ct = CoordTransform::new(&merc, &srs).unwrap();
    let gt = t.geo_transform();
    let mut xs = Vec::with_capacity(256 * 256);
    let mut ys = Vec::with_capacity(256 * 256);
    for r in 0..256 {
        for c in 0..256 {
            xs.push(gt[0] + (c as f64 + 0.5) * gt[1]);
            ys.push(gt[3] + (r as f64 + 0.5) * gt[5]);
        }
    }
    let _ = ct.transform_coords(&mut xs, &mut ys, &mut []);
    let nodata: Vec<Option<f64>> = (1..=data.len())
        .map(|b| ds.rasterband(b).unwrap().no_data_value())
        .collect();
    let tile = src
        .render_via(t, &RenderOptions::default(), RenderPath::General)
        .unwrap();
    let (mut bad_alpha, mut bad_value) = (0, 0);
    for (i, (x, y)) in xs.iter().zip(&ys).enumerate() {
        let u = (x - sgt[0]) / sgt[1];
        let v = (y - sgt[3]) / sgt[5];
        let inside =
            u.is_finite() && v.is_finite() && u >= 0.0 && v >= 0.0 && u < w as f64 && v < h as f64;
        let want: Option<Vec<u8>> = inside
            .then(|| {
                let s = v.floor() as usize * w + u.floor() as usize;
                data.iter().map(|d| d[s]).collect::<Vec<u8>>()
            })
            .filter(|vals| {
                !(nodata.iter().all(|n| n.is_some())
                    && vals
                        .iter()
                        .zip(&nodata)
                        .all(|(x, n)| Some(f64::from(*x)) == *n))
            });
        let got = match &tile {
            Tile::Rgba(px) => px[i * 4..i * 4 + 4].to_vec(),
            Tile::Empty => vec![0; 4],
        };
        match want {
            None => bad_alpha += usize::from(got[3] != 0),
            Some(_) if got[3] == 0 => bad_alpha += 1,
            Some(vals) => {
                let rgb = if vals.len() == 1 {
                    vec![vals[0]; 3]
                } else {
                    vals
                };
                bad_value += usize::from(got[..3] != rgb[..]);
            }
        }
    }
    (bad_alpha, bad_value)
}

fn read_all(ds: &Dataset) -> Vec<Vec<u8>> {
    let (w, h) = ds.raster_size();
    (1..=ds.raster_count())
        .map(|b| {
            ds.rasterband(b)
                .unwrap()
                .read_as::<u8>((0, 0), (w, h), (w, h), None)
                .unwrap()
                .data()
                .to_vec()
        })
        .collect()
}

/// Mismatches of the general path against the exact reference over `tiles`, printed per
/// tile: (tiles, alpha mismatches, value mismatches, worst tile's value mismatches).
#[allow(clippy::print_stderr)]
fn tally(path: &str, tiles: &[TileId]) -> (usize, usize, usize, usize) {
    let src = TileSource::open(path).unwrap();
    let ds = Dataset::open(path).unwrap();
    let data = read_all(&ds);
    let (mut alpha, mut value, mut worst) = (0, 0, 0);
    for t in tiles {
        let (a, v) = compare_with_exact(&src, &ds, &data, t);
        if a + v > 0 {
            eprintln!("{}/{}/{}: alpha {a} value {v}", t.z, t.x, t.y);
        }
        alpha += a;
        value += v;
        worst = worst.max(v);
    }
    eprintln!(
        "{} tiles: {alpha} alpha, {value} value mismatches (worst tile {worst})",
        tiles.len()
    );
    (tiles.len(), alpha, value, worst)
}

/// General path vs. the exact per-pixel reference for an EPSG:4326 raster at z1–z3, where
/// Web Mercator latitude is far from linear over a tile (the raster ends at ±75°).
#[test]
fn general_path_geographic_matches_exact_reprojection() {
    let path = analytic_cog("world.byte.tif");
    let mut tiles = Vec::new();
    for z in 1u8..=3 {
        let n = 1u32 << z;
        for y in 0..n {
            for x in 0..n {
                // z3: every row (they straddle ±75° and the equator) in two columns.
                if z < 3 || x % 4 == 1 {
                    tiles.push(TileId::new(z.into(), x.into(), y.into()).unwrap());
                }
            }
        }
    }
    let (_, alpha, value, _) = tally(&path, &tiles);
    assert_eq!(
        alpha, 0,
        "pixels painted outside the raster or missing inside"
    );
    assert_eq!(value, 0, "nearest picks differ from the exact reprojection");
    // No nodata in this raster: bilinear is opaque exactly where nearest is.
    let src = TileSource::open(&path).unwrap();
    for t in tiles.iter().filter(|t| t.z <= 2) {
        let alpha_of = |r: Resampling| match src
            .render_via(
                t,
                &RenderOptions {
                    resampling: r,
                    ..Default::default()
                },
                RenderPath::General,
            )
            .unwrap()
        {
            Tile::Rgba(px) => px.chunks_exact(4).map(|p| p[3]).collect(),
            Tile::Empty => vec![0u8; 256 * 256],
        };
        assert_eq!(
            alpha_of(Resampling::Bilinear),
            alpha_of(Resampling::Nearest),
            "bilinear alpha on {t:?}"
        );
    }
    std::fs::remove_file(&path).ok();
}

/// The same check for a UTM raster (Landsat subset, UTM 18N) at z8–z10.
#[test]
fn general_path_utm_matches_exact_reprojection() {
    let path = analytic_cog("RGB.byte.tif");
    let [w, s, e, n] = TileSource::open(&path).unwrap().info().bounds_lonlat;
    let mut tiles = Vec::new();
    for z in 8u8..=10 {
        let k = f64::from(1u32 << z);
        let tx = |lon: f64| ((lon + 180.0) / 360.0 * k).floor() as u32;
        let ty = |lat: f64| {
            let r = lat.to_radians();
            ((1.0 - (r.tan() + 1.0 / r.cos()).ln() / std::f64::consts::PI) / 2.0 * k).floor() as u32
        };
        for y in ty(n)..=ty(s) {
            for x in tx(w)..=tx(e) {
                tiles.push(TileId::new(z.into(), x.into(), y.into()).unwrap());
            }
        }
    }
    let (count, alpha, value, _) = tally(&path, &tiles);
    assert!(count > 50, "{count} tiles");
    assert_eq!(alpha, 0);
    assert_eq!(value, 0);
    std::fs::remove_file(&path).ok();
}

/// Timing loop (not an assertion): `cargo test --release -p storage --test tiles_render --
/// --ignored --nocapture bench_general_path`.
#[test]
#[ignore]
#[allow(clippy::print_stderr)]
fn bench_general_path() {
    for (name, zooms) in [("world.byte.tif", 1u8..=4), ("RGB.byte.tif", 8..=12)] {
        let path = analytic_cog(name);
        let src = TileSource::open(&path).unwrap();
        let [w, s, e, n] = src.info().bounds_lonlat;
        let mut tiles = Vec::new();
        for z in zooms {
            let k = f64::from(1u32 << z);
            let tx = |lon: f64| (((lon + 180.0) / 360.0 * k).floor() as u32).min((1 << z) - 1);
            let ty = |lat: f64| {
                let r = lat.clamp(-85.0, 85.0).to_radians();
                ((1.0 - (r.tan() + 1.0 / r.cos()).ln() / std::f64::consts::PI) / 2.0 * k).floor()
                    as u32
            };
            for y in ty(n)..=ty(s) {
                for x in tx(w)..=tx(e) {
                    tiles.push(TileId::new(z.into(), x.into(), y.into()).unwrap());
                }
            }
        }
        tiles.truncate(200);
        let opts = RenderOptions::default();
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t0 = std::time::Instant::now();
            for t in &tiles {
                std::hint::black_box(src.render(t, &opts).unwrap());
            }
            best = best.min(t0.elapsed().as_secs_f64());
        }
        eprintln!(
            "{name}: {} tiles, best of 3: {:.1} ms total, {:.2} ms/tile",
            tiles.len(),
            best * 1e3,
            best * 1e3 / tiles.len() as f64
        );
        std::fs::remove_file(&path).ok();
    }
}

/// A geographic grid running past 180° (a pass across the antimeridian, 170°E…190°E): tiles on
/// both sides of the line get its pixels through the general path.
#[test]
fn general_path_reads_a_grid_across_the_antimeridian_from_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("across.tif");
    common::across_antimeridian_tif(&path, 1);
    let src = TileSource::open(&path).unwrap();
    let b = src.info().bounds_lonlat;
    assert!(b[0] > b[2], "bounds cross ±180: {b:?}");
    let opts = RenderOptions::default();
    // z5 tiles: x 0 is 180°W…168.75°W, x 31 is 168.75°E…180°; y 16 holds 7°S.
    let west = src.render(&TileId { z: 5, x: 0, y: 16 }, &opts).unwrap();
    let east = src.render(&TileId { z: 5, x: 31, y: 16 }, &opts).unwrap();
    assert!(matches!(
        src.path_for(&TileId { z: 5, x: 0, y: 16 }),
        RenderPath::General
    ));
    // 175°W = 185° → column 300 → value 190; 175°E → column 100 → value 90.
    let merc_row = |lat: f64| {
        let n = 32.0_f64;
        let y = (1.0 - lat.to_radians().tan().asinh() / std::f64::consts::PI) / 2.0 * n;
        ((y - 16.0) * 256.0) as usize
    };
    let row = merc_row(-7.0);
    let col_w = ((-175.0 + 180.0) / 11.25 * 256.0) as usize;
    let col_e = ((175.0 - 168.75) / 11.25 * 256.0) as usize;
    let pw = px(&west, col_w, row);
    let pe = px(&east, col_e, row);
    assert_eq!(pw[3], 255, "west of the line has data: {pw:?}");
    assert_eq!(pe[3], 255, "east of the line has data: {pe:?}");
    assert!((i32::from(pw[0]) - 190).abs() <= 1, "{pw:?}");
    assert!((i32::from(pe[0]) - 90).abs() <= 1, "{pe:?}");
    // Beyond the grid (west of 190° = 170°W) nothing.
    let col_out = ((-169.0 + 180.0) / 11.25 * 256.0) as usize;
    assert_eq!(px(&west, col_out, row)[3], 0);
}
