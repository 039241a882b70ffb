#!/usr/bin/python3
"""Builds a large red/NIR pair by tiling a real small scene pair (a VRT mosaic of repeated
copies, translated to a tiled DEFLATE GeoTIFF).

    make_tiles.py OUT_DIR WIDTH HEIGHT EPSG PIXEL_SIZE OLD.tif NEW.tif

Writes OUT_DIR/old.tif and OUT_DIR/new.tif (UInt16 red+NIR, same grid, the source scene's
origin for EPSG:32632, (0°E, 0°N) + 30° lat offset for EPSG:4326)."""
import os
import sys

from osgeo import gdal

gdal.UseExceptions()


def mosaic(src, dst, width, height, epsg, px):
    ds = gdal.Open(src)
    sw, sh, nb = ds.RasterXSize, ds.RasterYSize, ds.RasterCount
    gt = ds.GetGeoTransform()
    if epsg == 32632:
        ogt = (gt[0], px, 0.0, gt[3], 0.0, -px)
    else:
        ogt = (7.0, px, 0.0, 47.5, 0.0, -px)
    types = [gdal.GetDataTypeName(ds.GetRasterBand(b + 1).DataType) for b in range(nb)]
    ds = None
    srs = gdal.osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f"<SRS>{srs.ExportToWkt()}</SRS>",
             "<GeoTransform>" + ", ".join(repr(v) for v in ogt) + "</GeoTransform>"]
    for b in range(nb):
        parts.append(f'<VRTRasterBand dataType="{types[b]}" band="{b + 1}">')
        for y in range(0, height, sh):
            for x in range(0, width, sw):
                w, h = min(sw, width - x), min(sh, height - y)
                parts.append(
                    f'<SimpleSource><SourceFilename relativeToVRT="0">{os.path.abspath(src)}</SourceFilename>'
                    f"<SourceBand>{b + 1}</SourceBand>"
                    f'<SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
                    f'<DstRect xOff="{x}" yOff="{y}" xSize="{w}" ySize="{h}"/></SimpleSource>')
        parts.append("</VRTRasterBand>")
    parts.append("</VRTDataset>")
    vrt = dst + ".vrt"
    with open(vrt, "w") as f:
        f.write("\n".join(parts))
    gdal.Translate(dst, vrt, creationOptions=["TILED=YES", "COMPRESS=DEFLATE", "PREDICTOR=2",
                                              "BIGTIFF=IF_SAFER", "NUM_THREADS=2"])
    os.remove(vrt)


def main():
    out, width, height, epsg, px, old, new = sys.argv[1:8]
    os.makedirs(out, exist_ok=True)
    for src, name in [(old, "old.tif"), (new, "new.tif")]:
        mosaic(src, os.path.join(out, name), int(width), int(height), int(epsg), float(px))


main()
