#!/usr/bin/python3
"""The reference for `downlink alerts run` on a pair: what an analyst would write with numpy
and GDAL (whole arrays in memory, no blocking).

    reference.py OLD.tif NEW.tif OUT.geojson [--drop 0.3] [--mmu-ha 0.5] [--cc gdal|scipy]

Red = band 1, NIR = band 2 of each file. Reflectance = DN × scale + offset (the band's, else
1e-4 for 16-bit, 1/255 for Byte). Invalid: nodata, red + NIR ≤ 0, cloud (red ≥ 0.20 and NDVI
≤ 0.15), shadow (NIR < 0.04) — the same rules as the engine. Loss where NDVI_new − NDVI_old ≤
−drop. 8-connected components: `--cc gdal` polygonizes the loss mask (gdal.Polygonize,
8CONNECTED) and filters the polygons by equal-area size; `--cc scipy` labels with
scipy.ndimage.label, drops small labels by pixel count × pixel area, then polygonizes the rest.
Writes the kept polygons as an RFC 7946 GeoJSON and prints `alerts N area_ha A`."""
import argparse
import json

import numpy as np
from osgeo import gdal, ogr, osr

gdal.UseExceptions()


def ndvi(path):
    ds = gdal.Open(path)
    out = []
    for b in (1, 2):
        band = ds.GetRasterBand(b)
        a = band.ReadAsArray()
        scale = band.GetScale() or (1 / 255 if a.dtype == np.uint8 else 1e-4)
        offset = band.GetOffset() or 0.0
        nd = band.GetNoDataValue()
        bad = np.zeros(a.shape, bool) if nd is None else (a == nd)
        out.append((a.astype(np.float32) * np.float32(scale) + np.float32(offset), bad))
    (r, rbad), (n, nbad) = out
    s = r + n
    valid = ~rbad & ~nbad & (s > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (n - r) / s
    valid &= ~((r >= 0.20) & (v <= 0.15)) & ~(n < 0.04)
    v[~valid] = np.nan
    return ds, v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("out")
    ap.add_argument("--drop", type=float, default=0.3)
    ap.add_argument("--mmu-ha", type=float, default=0.5)
    ap.add_argument("--cc", choices=["gdal", "scipy"], default="gdal")
    a = ap.parse_args()

    _, old = ndvi(a.old)
    ds, new = ndvi(a.new)
    with np.errstate(invalid="ignore"):
        loss = (new - old) <= -a.drop  # NaN compares False: invalid on either date
    del old, new

    gt = ds.GetGeoTransform()
    srs = ds.GetSpatialRef()
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    h, w = loss.shape
    # Equal-area projection centred on the grid (areas also right for EPSG:4326).
    ll = osr.SpatialReference()
    ll.ImportFromEPSG(4326)
    ll.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_ll = osr.CoordinateTransformation(srs, ll)
    cx, cy, _ = to_ll.TransformPoint(
        gt[0] + gt[1] * w / 2, gt[3] + gt[5] * h / 2)
    ea = osr.SpatialReference()
    ea.ImportFromProj4(f"+proj=laea +lat_0={cy} +lon_0={cx} +R=6371007.181 +units=m +no_defs")
    ea.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    to_ea = osr.CoordinateTransformation(srs, ea)

    if a.cc == "scipy":
        from scipy import ndimage
        lab, nlab = ndimage.label(loss, structure=np.ones((3, 3), bool))
        counts = np.bincount(lab.ravel())
        # Pixel area per row (equal-area; varies with latitude on EPSG:4326).
        rows = np.arange(h)
        if srs.IsGeographic():
            lat = np.radians(gt[3] + gt[5] * (rows + 0.5))
            R = 6371007.181
            px_m2 = (R ** 2) * np.radians(abs(gt[1])) * np.abs(
                np.sin(lat + np.radians(abs(gt[5])) / 2) - np.sin(lat - np.radians(abs(gt[5])) / 2))
            area = np.bincount(lab.ravel(), weights=np.repeat(px_m2, w))
        else:
            area = counts * abs(gt[1] * gt[5])
        keep = area >= a.mmu_ha * 1e4
        keep[0] = False
        loss = keep[lab]
        del lab
        print(f"components {nlab}", flush=True)

    mem = gdal.GetDriverByName("MEM").Create("", w, h, 1, gdal.GDT_Byte)
    mem.SetGeoTransform(gt)
    mem.SetSpatialRef(srs)
    mem.GetRasterBand(1).WriteArray(loss.view(np.uint8))
    del loss
    vds = ogr.GetDriverByName("Memory").CreateDataSource("")
    lyr = vds.CreateLayer("loss", srs, ogr.wkbPolygon)
    lyr.CreateField(ogr.FieldDefn("v", ogr.OFTInteger))
    b = mem.GetRasterBand(1)
    gdal.Polygonize(b, b, lyr, 0, ["8CONNECTED=8"])

    out = ogr.GetDriverByName("GeoJSON").CreateDataSource(a.out)
    olyr = out.CreateLayer("alerts", ll, ogr.wkbPolygon, ["RFC7946=YES"])
    olyr.CreateField(ogr.FieldDefn("area_ha", ogr.OFTReal))
    n, total, comps = 0, 0.0, 0
    for f in lyr:
        comps += 1
        g = f.GetGeometryRef().Clone()
        g.Transform(to_ea)
        ha = g.GetArea() / 1e4
        if ha < a.mmu_ha:
            continue
        o = ogr.Feature(olyr.GetLayerDefn())
        o.SetField("area_ha", ha)
        g = f.GetGeometryRef().Clone()
        g.Transform(to_ll)
        o.SetGeometry(g)
        olyr.CreateFeature(o)
        n += 1
        total += ha
    out = None
    print(json.dumps({"alerts": n, "area_ha": round(total, 2), "polygons": comps}))


main()
