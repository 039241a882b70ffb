"""odc-stac and stackstac load the station's STAC items as analysts do, with no hand-given grid,
band list or client-side patching of the items.

usage: archive_clients.py STAC_ROOT MURI_COLLECTION MURI_DIR PASS_COLLECTION PASS_ID EO_SCHEMA

- MURI_COLLECTION holds the two Muri dates, each one item added with `--bands red,nir`.
  Both clients must load red and NIR of both dates on the scene's own grid (EPSG:32632, 10 m,
  429 x 356) and reproduce the figures of MURI_DIR/expected: valid pixels, NDVI medians, loss
  pixels at drop 0.30 over the whole scene and inside the forest mask, and the dNDVI raster
  itself.
- PASS_ID (a Meteor pass) must load with every data band on the pass's own EPSG:4326 grid, each
  band equal to its COG.

Every item is also validated against the real eo v2.0.0 JSON schema (EO_SCHEMA).

Prints one line per check; exits non-zero on the first failure.
"""

import json
import sys

import jsonschema

import numpy as np
import odc.stac
import pystac_client
import rasterio
import rasterio.features
import shapely
import stackstac
from pyproj import Transformer
from shapely.geometry import mapping, shape


def check(cond, what):
    if not cond:
        print(f"FAIL {what}", flush=True)
        sys.exit(1)
    print(f"ok   {what}", flush=True)


def native_grid(items):
    """stackstac's grid arguments from the items' own metadata: the one `proj:code`, and the
    `proj:bbox` and pixel size (`proj:transform`) of their data assets."""
    assets = [a for i in items for a in i["assets"].values() if "data" in a.get("roles", [])]
    codes = {a["proj:code"] for a in assets}
    boxes = {tuple(a["proj:bbox"]) for a in assets}
    res = {abs(a["proj:transform"][0]) for a in assets}
    check(
        len(codes) == 1 and next(iter(codes)).startswith("EPSG:") and len(boxes) == 1 and len(res) == 1,
        f"one grid: {codes} {boxes} {res}",
    )
    return dict(
        epsg=int(next(iter(codes)).split(":")[1]),
        bounds=next(iter(boxes)),
        resolution=next(iter(res)),
    )


def figures(red1, nir1, red2, nir2):
    """NDVI per the README: float64, invalid where NIR + red <= 0 (or NaN fill)."""

    def ndvi(red, nir):
        red = red.astype("float64")
        nir = nir.astype("float64")
        s = nir + red
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(s > 0, (nir - red) / s, np.nan)

    n1, n2 = ndvi(red1, nir1), ndvi(red2, nir2)
    return n1, n2, n2 - n1


def compare_muri(name, n1, n2, d, transform, crs, muri_dir):
    every = json.load(open(f"{muri_dir}/expected/all_drop0.30.json"))
    forest = json.load(open(f"{muri_dir}/expected/forest_drop0.30.json"))
    valid = np.isfinite(d)
    check(int(valid.sum()) == every["valid_px"], f"{name}: valid px {int(valid.sum())} == {every['valid_px']}")
    m1 = round(float(np.nanmedian(n1[valid])), 4)
    m2 = round(float(np.nanmedian(n2[valid])), 4)
    check(
        (m1, m2) == (every["ndvi1_median_region"], every["ndvi2_median_region"]),
        f"{name}: NDVI medians {m1} -> {m2}",
    )
    loss = valid & (d <= -0.30)
    check(int(loss.sum()) == every["loss_px"], f"{name}: whole-scene loss px {int(loss.sum())} == {every['loss_px']}")
    # The forest polygons (EPSG:4326) on the loaded grid, pixel centres inside.
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform
    fc = json.load(open(f"{muri_dir}/forest_wa.geojson"))
    shapes = [
        mapping(shapely.transform(shape(f["geometry"]), lambda xy: np.column_stack(to_crs(xy[:, 0], xy[:, 1]))))
        for f in fc["features"]
    ]
    region = rasterio.features.rasterize(
        [(s, 1) for s in shapes], out_shape=d.shape, transform=transform, fill=0, dtype="uint8"
    ).astype(bool)
    check(int(region.sum()) == forest["region_px"], f"{name}: forest px {int(region.sum())} == {forest['region_px']}")
    floss = int((loss & region).sum())
    check(floss == forest["loss_px"], f"{name}: forest loss px {floss} == {forest['loss_px']}")
    with rasterio.open(f"{muri_dir}/expected/dndvi_20200807_20210812.tif") as ref:
        want = ref.read(1).astype("float64")
        check(ref.transform == transform, f"{name}: grid {tuple(transform)[:6]} is the reference's")
    same_nan = np.array_equal(np.isnan(want), ~valid)
    diff = float(np.nanmax(np.abs(want - d)))
    check(same_nan and diff < 1e-6, f"{name}: dNDVI equals the reference raster (max |diff| {diff:.2e})")


def main():
    root, muri, muri_dir, pass_collection, pass_id, eo_schema = sys.argv[1:7]
    client = pystac_client.Client.open(root)
    eo = jsonschema.Draft7Validator(json.load(open(eo_schema)))
    for coll in (muri, pass_collection):
        for it in client.search(collections=[coll], max_items=None).items_as_dicts():
            errors = [f"{list(e.absolute_path)}: {e.message}" for e in eo.iter_errors(it)]
            check(not errors, f"{it['id']}: eo v2.0.0 schema {errors[:3]}")
            named = [
                b.get("eo:common_name")
                for a in it["assets"].values()
                for b in a.get("bands", [])
                if "data" in a.get("roles", [])
            ]
            check(any(named), f"{it['id']}: data bands name eo:common_name {named}")
    items = list(client.search(collections=[muri], max_items=None).items())
    items.sort(key=lambda i: i.datetime)
    check(len(items) == 2, f"{muri}: 2 items ({[i.id for i in items]})")

    # odc-stac: bands by name, grid from proj:code/shape/transform.
    ds = odc.stac.load(items, bands=["red", "nir"], chunks={})
    ds = ds.compute()
    check(ds.odc.crs.epsg == 32632, f"odc-stac: CRS EPSG:{ds.odc.crs.epsg}")
    check(ds.red.shape == (2, 356, 429), f"odc-stac: shape {ds.red.shape}")
    gt = ds.odc.geobox.affine
    n1, n2, d = figures(ds.red[0].values, ds.nir[0].values, ds.red[1].values, ds.nir[1].values)
    compare_muri("odc-stac", n1, n2, d, gt, "EPSG:32632", muri_dir)

    # stackstac: single-band assets. stackstac 0.5.1 reads the CRS only from `proj:epsg`, which
    # projection v2.0.0 replaced by `proj:code` (its schema refuses `proj:epsg`); without it,
    # stackstac cannot tell that an asset is already on the requested grid, so the grid is
    # passed from the items' own proj:code, proj:bbox and proj:transform (nothing else).
    dicts = sorted(
        client.search(collections=[muri], max_items=None).items_as_dicts(),
        key=lambda i: i["properties"]["datetime"],
    )
    arr = stackstac.stack(dicts, assets=["red", "nir"], **native_grid(dicts)).compute()
    check(arr.shape == (2, 2, 356, 429), f"stackstac: shape {arr.shape}")
    check(int(arr.attrs["crs"].split(":")[-1]) == 32632, f"stackstac: CRS {arr.attrs['crs']}")
    st_gt = arr.attrs["transform"]
    red = arr.sel(band="red").values
    nir = arr.sel(band="nir").values
    n1, n2, d = figures(red[0], nir[0], red[1], nir[1])
    compare_muri("stackstac", n1, n2, d, st_gt, "EPSG:32632", muri_dir)

    # A Meteor pass: every data band, on its own grid.
    p = client.get_collection(pass_collection).get_item(pass_id)
    data = [k for k, a in p.assets.items() if "data" in (a.roles or [])]
    check(len(data) >= 3, f"pass {pass_id}: data assets {data}")
    shape_ = tuple(p.assets[data[0]].extra_fields["proj:shape"])
    pds = odc.stac.load([p], bands=data, chunks={}).compute()
    pdict = next(client.search(collections=[pass_collection], ids=[pass_id]).items_as_dicts())
    pst = stackstac.stack([pdict], assets=data, **native_grid([pdict])).compute()
    for k in data:
        with rasterio.open(p.assets[k].href) as src:
            want = src.read(1)
            nd = src.nodata
        got = pds[k][0].values
        check(got.shape == shape_, f"odc-stac: pass band {k} shape {got.shape}")
        check(
            np.array_equal(got, want, equal_nan=want.dtype.kind == "f"),
            f"odc-stac: pass band {k} equals its COG",
        )
        sgot = pst.sel(band=k)[0].values
        valid = np.ones(want.shape, bool) if nd is None else ~np.isnan(want) if np.isnan(nd) else want != nd
        check(sgot.shape == shape_, f"stackstac: pass band {k} shape {sgot.shape}")
        check(
            np.allclose(sgot[valid], want[valid].astype("float64")) and np.isnan(sgot[~valid]).all(),
            f"stackstac: pass band {k} equals its COG (nodata as NaN)",
        )
    print("archive clients: all checks passed", flush=True)


if __name__ == "__main__":
    main()
