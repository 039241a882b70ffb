#!/usr/bin/python3
"""Build a global 30-arc-second land/sea mask GeoTIFF for geolocation QA.

Source: the PyPI package `global-land-mask` 1.0.0 (MIT licence, Todd Karin,
https://github.com/toddkarin/global-land-mask), which ships
`global_land_mask/globe_combined_mask_compressed.npz`: a boolean array of
shape (21600, 43200) that is True where the NOAA GLOBE 30" DEM
(GLOBE Task Team et al. 1999, "The Global Land One-kilometer Base Elevation
(GLOBE) Digital Elevation Model, Version 1.0", NOAA NGDC; public domain)
holds its ocean flag (-500). The package concatenates the 16 GLOBE tiles
unchanged, so row 0 / column 0 is the 30" cell whose north-west corner is at
(90N, 180W) — GLOBE is cell (area) registered. The output therefore has the
exact geotransform (-180, 1/120, 0, 90, 0, -1/120).

Output: ONE GeoTIFF, EPSG:4326, Byte, 1 = land, 0 = water, 43200 x 21600,
tiled 512x512, DEFLATE, NBITS=1.

Setup on a fresh Debian 12 (python3-gdal and python3-numpy from Debian):
    apt-get install -y python3-gdal python3-numpy python3-pip
    /usr/bin/python3 -m pip install --no-deps --target /opt/glm global-land-mask==1.0.0
Run:
    PYTHONPATH=/opt/glm /usr/bin/python3 make_landmask.py -o landmask.tif
or pass the npz file directly:
    /usr/bin/python3 make_landmask.py --npz /opt/glm/global_land_mask/globe_combined_mask_compressed.npz -o landmask.tif
"""

import argparse
import importlib.util
import os
import sys
import time

import numpy as np
from osgeo import gdal, osr

gdal.UseExceptions()

ROWS, COLS = 21600, 43200
STEP = 1.0 / 120.0
BLOCK_ROWS = 1024


def find_npz():
    spec = importlib.util.find_spec("global_land_mask")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(
            "global_land_mask not found: install it with\n"
            "  /usr/bin/python3 -m pip install --no-deps --target /opt/glm global-land-mask==1.0.0\n"
            "and run with PYTHONPATH=/opt/glm, or pass --npz"
        )
    # Do not import the package: its __init__ loads the whole mask a second time.
    pkg_dir = list(spec.submodule_search_locations)[0]
    return os.path.join(pkg_dir, "globe_combined_mask_compressed.npz")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--npz", help="path to globe_combined_mask_compressed.npz")
    ap.add_argument("-o", "--output", default="landmask.tif")
    args = ap.parse_args()

    t0 = time.monotonic()
    npz_path = args.npz or find_npz()
    with np.load(npz_path) as f:
        water = f["mask"]
        lat = f["lat"]
        lon = f["lon"]
    if water.shape != (ROWS, COLS) or water.dtype != np.bool_:
        sys.exit(f"unexpected mask shape/dtype {water.shape} {water.dtype}")
    # The package's coordinate vectors are the cells' north-west corners.
    if not (np.isclose(lat[0], 90.0) and np.isclose(lon[0], -180.0)
            and np.isclose(lat[1] - lat[0], -STEP) and np.isclose(lon[1] - lon[0], STEP)):
        sys.exit("unexpected lat/lon vectors in the npz")
    t_load = time.monotonic() - t0

    drv = gdal.GetDriverByName("GTiff")
    tmp = args.output + ".tmp"
    ds = drv.Create(
        tmp, COLS, ROWS, 1, gdal.GDT_Byte,
        options=["TILED=YES", "BLOCKXSIZE=512", "BLOCKYSIZE=512", "COMPRESS=DEFLATE",
                 "ZLEVEL=9", "NBITS=1", "PHOTOMETRIC=MINISBLACK", "BIGTIFF=NO"],
    )
    ds.SetGeoTransform((-180.0, STEP, 0.0, 90.0, 0.0, -STEP))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    ds.SetProjection(srs.ExportToWkt())
    ds.SetMetadata({
        "AREA_OR_POINT": "Area",
        "SOURCE": "NOAA GLOBE 30-arc-second DEM ocean flag (-500), via PyPI global-land-mask 1.0.0",
        "SOURCE_LICENSE": "GLOBE: public domain (NOAA NGDC); global-land-mask package: MIT",
        "VALUES": "1=land (including inland water bodies), 0=ocean",
    })
    band = ds.GetRasterBand(1)
    band.SetDescription("land")
    for r in range(0, ROWS, BLOCK_ROWS):
        blk = water[r:r + BLOCK_ROWS]
        band.WriteArray(np.logical_not(blk).astype(np.uint8), 0, r)
    band.FlushCache()
    ds = None
    os.replace(tmp, args.output)
    elapsed = time.monotonic() - t0
    size = os.path.getsize(args.output)
    print(f"wrote {args.output}: {size} bytes ({size / 1e6:.2f} MB), {COLS}x{ROWS} px, "
          f"load {t_load:.1f} s, total {elapsed:.1f} s")


if __name__ == "__main__":
    main()
