"""Real map clients against a running daemon: OWSLib (WMTS, WMS), GDAL's WMS driver and QGIS
(PyQGIS, headless), each checked to draw the date it asked for.

usage: wms_clients.py BASE_URL COLLECTION OLD_TIME NEW_TIME OUT_DIR

The collection holds two Sentinel-2 red/NIR scenes of Muri (shared/data/change/muri-ag). Inside
the forest, a clearing opened between the dates: NDVI 0.877 -> 0.501 at its centre (the data's
README). Drawn with RdYlGn over [-1, 1], the old date is dark green there (red channel about
16) and the new one light green (about 135): every client must show the one it asked for. One
line per check on stdout; exit status 1 on the first failure.
"""

import math
import os
import sys
import urllib.parse

from osgeo import gdal

gdal.UseExceptions()

BASE, CID, OLD, NEW, OUT = sys.argv[1:6]
# The larger clearing (README: bbox 8.35338-8.35604 E, 47.26990-47.27161 N).
LON, LAT = 8.35471, 47.27075
# A 1.2 km view around it, in degrees and in Web Mercator.
VIEW = (LON - 0.008, LAT - 0.005, LON + 0.008, LAT + 0.005)
R = 6378137.0


def merc(lon, lat):
    return (math.radians(lon) * R, math.log(math.tan(math.pi / 4 + math.radians(lat) / 2)) * R)


def fail(msg):
    print("FAIL", msg)
    sys.exit(1)


def ok(msg):
    print("ok", msg)


def red_at(path, x, y, gt=None):
    """Median red value of the 5x5 pixels around georeferenced (x, y) of an image file."""
    ds = gdal.Open(path)
    gt = gt or ds.GetGeoTransform()
    col = int((x - gt[0]) / gt[1])
    row = int((y - gt[3]) / gt[5])
    vals = []
    alpha = ds.GetRasterBand(4) if ds.RasterCount >= 4 else None
    for r in range(row - 2, row + 3):
        for c in range(col - 2, col + 3):
            if 0 <= c < ds.RasterXSize and 0 <= r < ds.RasterYSize:
                if alpha is not None and alpha.ReadRaster(c, r, 1, 1)[0] == 0:
                    continue
                vals.append(ds.GetRasterBand(1).ReadRaster(c, r, 1, 1)[0])
    if not vals:
        fail(f"{path}: no opaque pixel at the clearing")
    vals.sort()
    return vals[len(vals) // 2]


def expect_date(what, red, want):
    """The clearing's red channel says which date was drawn."""
    got = "old" if red < 70 else "new"
    if got != want:
        fail(f"{what}: red {red} at the clearing is the {got} date, wanted the {want} one")
    ok(f"{what}: red {red} at the clearing = the {want} date")


def save(name, data):
    p = os.path.join(OUT, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def owslib_wmts():
    from owslib.wmts import WebMapTileService

    wmts = WebMapTileService(f"{BASE}/stac/collections/{CID}/WMTSCapabilities.xml")
    layer = f"{CID}:ndvi"
    for name in (CID, f"{CID}:red", f"{CID}:nir", layer):
        if name not in wmts.contents:
            fail(f"OWSLib WMTS: no layer {name} in {list(wmts.contents)}")
    dims = wmts[layer].dimensions.get("Time") or {}
    if sorted(dims.get("values", [])) != [OLD, NEW] or dims.get("default") != NEW:
        fail(f"OWSLib WMTS: Time dimension {dims}")
    z = max(int(m) for m in wmts[layer].tilematrixsetlinks["WebMercatorQuad"].tilematrixlimits)
    if z < 14:
        fail(f"OWSLib WMTS: deepest zoom {z}, the 10 m source wants 14")
    ok(f"OWSLib WMTS: layers, Time {dims.get('values')}, default {NEW}, zoom to {z}")
    n = 2 ** z
    x, y = merc(LON, LAT)
    col = int((x + math.pi * R) / (2 * math.pi * R) * n)
    row = int((math.pi * R - y) / (2 * math.pi * R) * n)
    size = 2 * math.pi * R / n
    gt = (-math.pi * R + col * size, size / 256, 0, math.pi * R - row * size, 0, -size / 256)
    for label, kw, want in (
        ("with Time=" + OLD, {"Time": OLD}, "old"),
        ("with Time=" + NEW, {"Time": NEW}, "new"),
        ("without Time", {}, "new"),
    ):
        tile = wmts.gettile(layer=layer, tilematrixset="WebMercatorQuad", tilematrix=str(z),
                            row=row, column=col, format="image/png", **kw)
        p = save(f"owslib-wmts-{want}-{len(kw)}.png", tile.read())
        expect_date(f"OWSLib WMTS GetTile {label}", red_at(p, x, y, gt), want)


def owslib_wms():
    from owslib.wms import WebMapService

    wms = WebMapService(f"{BASE}/wms", version="1.3.0")
    layer = f"{CID}:ndvi"
    if layer not in wms.contents:
        fail(f"OWSLib WMS: no layer {layer} in {list(wms.contents)}")
    times = wms[layer].timepositions or []
    if sorted(t.strip() for t in times) != [OLD, NEW]:
        fail(f"OWSLib WMS: time positions {times}")
    if "EPSG:4326" not in wms[layer].crsOptions or "EPSG:3857" not in wms[layer].crsOptions:
        fail(f"OWSLib WMS: CRS {wms[layer].crsOptions}")
    ok(f"OWSLib WMS: layer {layer}, times {times}, default {wms[layer].defaulttimeposition}")
    w, h = 320, 200
    x0, y0 = merc(VIEW[0], VIEW[1])
    x1, y1 = merc(VIEW[2], VIEW[3])
    x, y = merc(LON, LAT)
    cases = (
        # EPSG:4326 in WMS 1.3.0 is latitude first: OWSLib takes lon/lat and swaps the axes
        # in the request itself.
        ("EPSG:4326", VIEW,
         (VIEW[0], (VIEW[2] - VIEW[0]) / w, 0, VIEW[3], 0, -(VIEW[3] - VIEW[1]) / h), (LON, LAT)),
        ("EPSG:3857", (x0, y0, x1, y1),
         (x0, (x1 - x0) / w, 0, y1, 0, -(y1 - y0) / h), (x, y)),
    )
    for crs, bbox, gt, at in cases:
        for t, want in ((OLD, "old"), (NEW, "new"), (None, "new")):
            kw = {"time": t} if t else {}
            img = wms.getmap(layers=[layer], styles=[""], srs=crs, bbox=bbox, size=(w, h),
                             format="image/png", transparent=True, **kw)
            p = save(f"owslib-wms-{crs.replace(':', '')}-{want}-{bool(t)}.png", img.read())
            expect_date(f"OWSLib WMS GetMap {crs} TIME={t}", red_at(p, *at, gt), want)


def gdal_wms():
    # The WMS: URL syntax (EPSG:3857) and an XML service description (EPSG:4326, whose WMS
    # 1.3.0 latitude-first BBOX GDAL is told with BBoxOrder, as its documentation says).
    x0, y0 = merc(VIEW[0], VIEW[1])
    x1, y1 = merc(VIEW[2], VIEW[3])
    x, y = merc(LON, LAT)
    for t, want in ((OLD, "old"), (NEW, "new")):
        # Written plainly: GDAL reads the parameters of a WMS: URL without percent-decoding.
        q = (f"SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={CID}:ndvi&CRS=EPSG:3857"
             f"&BBOX={x0},{y0},{x1},{y1}&FORMAT=image/png&TRANSPARENT=TRUE&TIME={t}")
        out = os.path.join(OUT, f"gdal-wms-3857-{want}.tif")
        gdal.Translate(out, f"WMS:{BASE}/wms?{q}", width=320, height=200)
        expect_date(f"GDAL WMS driver (WMS: URL, EPSG:3857, TIME={t})", red_at(out, x, y), want)
        xml = f"""<GDAL_WMS>
  <Service name="WMS">
    <Version>1.3.0</Version>
    <ServerUrl>{BASE}/wms?TIME={t}</ServerUrl>
    <CRS>EPSG:4326</CRS>
    <ImageFormat>image/png</ImageFormat>
    <Transparent>TRUE</Transparent>
    <Layers>{CID}:ndvi</Layers>
    <BBoxOrder>yxYX</BBoxOrder>
  </Service>
  <DataWindow>
    <UpperLeftX>{VIEW[0]}</UpperLeftX><UpperLeftY>{VIEW[3]}</UpperLeftY>
    <LowerRightX>{VIEW[2]}</LowerRightX><LowerRightY>{VIEW[1]}</LowerRightY>
    <SizeX>320</SizeX><SizeY>200</SizeY>
  </DataWindow>
  <BandsCount>4</BandsCount>
  <BlockSizeX>320</BlockSizeX><BlockSizeY>200</BlockSizeY>
</GDAL_WMS>"""
        src = save(f"gdal-wms-4326-{want}.xml", xml.encode())
        out = os.path.join(OUT, f"gdal-wms-4326-{want}.tif")
        gdal.Translate(out, src)
        expect_date(f"GDAL WMS driver (XML, EPSG:4326, TIME={t})", red_at(out, LON, LAT), want)


def qgis():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import (QgsApplication, QgsCoordinateReferenceSystem, QgsDateTimeRange,
                           QgsInterval, QgsMapRendererSequentialJob, QgsMapSettings,
                           QgsRasterLayer, QgsRectangle, QgsTemporalNavigationObject)
    from qgis.PyQt.QtCore import QDate, QDateTime, QSize, Qt, QTime

    app = QgsApplication([], False)
    app.initQgis()
    x0, y0 = merc(VIEW[0], VIEW[1])
    x1, y1 = merc(VIEW[2], VIEW[3])
    x, y = merc(LON, LAT)
    w, h = 320, 200
    gt = (x0, (x1 - x0) / w, 0, y1, 0, -(y1 - y0) / h)

    def render(layer, name, trange=None):
        if not layer.isValid():
            fail(f"QGIS: {name} layer is not valid: {layer.error().summary()}")
        s = QgsMapSettings()
        s.setLayers([layer])
        s.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
        s.setExtent(QgsRectangle(x0, y0, x1, y1))
        s.setOutputSize(QSize(w, h))
        s.setOutputDpi(96)
        if trange is not None:
            s.setIsTemporal(True)
            s.setTemporalRange(trange)
        job = QgsMapRendererSequentialJob(s)
        job.start()
        job.waitForFinished()
        img = job.renderedImage()
        p = os.path.join(OUT, f"qgis-{name}.png")
        img.save(p, "PNG")
        # QImage pixel at the clearing (the PNG has no georeference: sample it here).
        col, row = int((x - gt[0]) / gt[1]), int((y - gt[3]) / gt[5])
        reds = sorted((img.pixel(c, r) >> 16) & 0xFF
                      for r in range(row - 2, row + 3) for c in range(col - 2, col + 3))
        return reds[len(reds) // 2]

    ndvi = "assets=red,nir&expression=%28b2-b1%29%2F%28b2%2Bb1%29&rescale=-1,1&colormap_name=rdylgn"
    for t, want in ((None, "new"), (OLD, "old")):
        tpl = f"{BASE}/stac/collections/{CID}/tiles/WebMercatorQuad/{{z}}/{{x}}/{{y}}.png?{ndvi}"
        if t:
            tpl += "&datetime=" + urllib.parse.quote(t)
        uri = "type=xyz&zmin=0&zmax=14&url=" + urllib.parse.quote(tpl, safe="")
        layer = QgsRasterLayer(uri, "xyz", "wms")
        expect_date(f"QGIS XYZ (datetime={t})", render(layer, f"xyz-{want}"), want)

    caps = f"{BASE}/stac/collections/{CID}/WMTSCapabilities.xml"
    for t, want in ((None, "new"), (OLD, "old"), (NEW, "new")):
        uri = (f"contextualWMSLegend=0&crs=EPSG:3857&dpiMode=7&format=image/png"
               f"&layers={CID}:ndvi&styles=default&tileMatrixSet=WebMercatorQuad")
        if t:
            uri += f"&tileDimensions=Time%3D{urllib.parse.quote(t)}"
        uri += "&url=" + urllib.parse.quote(caps, safe="")
        layer = QgsRasterLayer(uri, "wmts", "wms")
        # A temporal range on the map as well: WMTS layers draw their dimension value.
        day = QDateTime(QDate.fromString((t or NEW)[:10], Qt.ISODate), QTime(0, 0), Qt.UTC)
        got = render(layer, f"wmts-{want}-{bool(t)}", QgsDateTimeRange(day, day.addDays(1)))
        expect_date(f"QGIS WMTS (Time={t})", got, want)

    # WMS-T driven by the temporal controller: one frame per day from the old date to the new.
    uri = (f"crs=EPSG:3857&format=image/png&layers={CID}:ndvi&styles=&type=wmst"
           f"&timeDimensionExtent={OLD},{NEW}&allowTemporalUpdates=true&temporalSource=provider"
           f"&url={BASE}/wms")
    layer = QgsRasterLayer(uri, "wmst", "wms")
    if not layer.temporalProperties().isActive():
        fail("QGIS WMS-T: the layer is not temporal")
    nav = QgsTemporalNavigationObject()
    start = QDateTime(QDate.fromString(OLD[:10], Qt.ISODate), QTime(0, 0), Qt.UTC)
    end = QDateTime(QDate.fromString(NEW[:10], Qt.ISODate), QTime(0, 0), Qt.UTC).addDays(1)
    nav.setTemporalExtents(QgsDateTimeRange(start, end))
    nav.setFrameDuration(QgsInterval(1, QgsInterval.Days if hasattr(QgsInterval, "Days") else 4))
    last = nav.totalFrameCount() - 1
    for frame, want in ((0, "old"), (last, "new")):
        nav.setCurrentFrameNumber(frame)
        rng = nav.dateTimeRangeForFrameNumber(frame)
        got = render(layer, f"wmst-frame{frame}", rng)
        expect_date(f"QGIS WMS-T, temporal controller frame {frame} "
                    f"({rng.begin().toString(Qt.ISODate)})", got, want)
    app.exitQgis()


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    owslib_wmts()
    owslib_wms()
    gdal_wms()
    qgis()
    print("all clients passed")
