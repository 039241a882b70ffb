#!/usr/bin/env python3
"""Pixel oracle: our daemon's STAC item XYZ tiles vs TiTiler's /cog tiles of the SAME file.

For every z/x/y covering the item's TileJSON bounds at the chosen zooms, fetch
  ours:    {OURS}/stac/collections/{c}/items/{i}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?assets=A[&bidx=..][&rescale=..]
  titiler: {TT}/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png?url=<abs path of asset A>[&bidx=..&bidx=..][&rescale=..]
With --titiler-pgstac, TT is a titiler-pgstac serving the same item from the same pgstac database:
  titiler: {TT}/collections/{c}/items/{i}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?assets=A[&bidx=..][&rescale=..]
decode both PNGs to RGBA (Pillow + numpy) and compare per pixel.

Metrics per tile:
  alpha_mismatch  pixels where (alpha>0) differs between the two
  rgb_diff_px     pixels valid on both sides whose RGB differ
  max_abs         max |ours - titiler| over RGB of pixels valid on both sides
  edge_share      share of differing pixels (alpha or RGB) within 1 px of the validity edge
Empty tiles: ours answers 204, TiTiler 404 (TileOutsideBounds) or a fully transparent PNG;
both empty counts as identical; one empty and the other with valid pixels is a mismatch.

Exit status: 0 when every tile is within tolerance (--max-abs, --max-diff-frac,
--max-alpha-frac, default 0 = bit-identical), 1 otherwise, 2 on a usage/HTTP error.
Also writes --urls-out: ours/titiler URL lists of tiles that are 200 on both sides (for wrk).
"""
import argparse
import io
import json
import math
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
from PIL import Image


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("content-type", "")


def tiles_covering(bounds, z):
    """XYZ tiles (WebMercatorQuad) intersecting a lon/lat bbox at zoom z."""
    w, s, e, n = bounds
    lim = 85.0511287798066
    s, n = max(s, -lim), min(n, lim)
    nt = 2 ** z

    def tx(lon):
        return (lon + 180.0) / 360.0 * nt

    def ty(lat):
        r = math.radians(lat)
        return (1.0 - math.log(math.tan(r) + 1.0 / math.cos(r)) / math.pi) / 2.0 * nt

    eps = 1e-9
    x0, x1 = int(math.floor(tx(w))), int(math.floor(tx(e) - eps))
    y0, y1 = int(math.floor(ty(n))), int(math.floor(ty(s) - eps))
    clamp = lambda v: min(max(v, 0), nt - 1)
    return [(z, x, y) for x in range(clamp(x0), clamp(x1) + 1) for y in range(clamp(y0), clamp(y1) + 1)]


def rgba(data):
    im = Image.open(io.BytesIO(data))
    im.load()
    mode = im.mode
    return np.asarray(im.convert("RGBA")).astype(np.int16), mode


def edge_mask(valid):
    """Pixels within 1 px (8-neighbourhood) of a valid/invalid boundary."""
    p = np.pad(valid, 1, mode="edge")
    e = np.zeros_like(valid)
    h, w = valid.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            e |= p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] != valid
    return e


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", default="http://127.0.0.1:18281")
    ap.add_argument("--titiler", default="http://127.0.0.1:18280")
    ap.add_argument("--collection", required=True)
    ap.add_argument("--item", required=True)
    ap.add_argument("--asset", default="visual")
    ap.add_argument("--titiler-pgstac", action="store_true",
                    help="--titiler is a titiler-pgstac: use its item endpoint, not /cog?url=")
    ap.add_argument("--cog", help="absolute path TiTiler reads (default: the asset href under --archive)")
    ap.add_argument("--archive", help="archive dir (asset hrefs are relative to it)")
    ap.add_argument("--zooms", help="comma list (default: up to 3 levels ending at the TileJSON maxzoom)")
    ap.add_argument("--bidx", help="comma list, e.g. 1,2,3 (ours: bidx=1,2,3; TiTiler: bidx=1&bidx=2&bidx=3)")
    ap.add_argument("--rescale", help="min,max (same on both; one range for all bands)")
    ap.add_argument("--max-abs", type=int, default=0, help="tolerated max abs RGB diff")
    ap.add_argument("--max-diff-frac", type=float, default=0.0, help="tolerated share of RGB-differing pixels per tile")
    ap.add_argument("--max-alpha-frac", type=float, default=0.0, help="tolerated share of alpha-mismatch pixels per tile")
    ap.add_argument("--max-tiles-per-zoom", type=int, default=400)
    ap.add_argument("--urls-out", help="prefix: writes PREFIX.ours.txt and PREFIX.titiler.txt")
    ap.add_argument("--diff-dir", help="save ours/titiler/diff PNGs of mismatching tiles here")
    ap.add_argument("--json", help="write per-tile results as JSON here")
    a = ap.parse_args()

    item_base = f"{a.ours}/stac/collections/{a.collection}/items/{a.item}"
    st, body, _ = get(item_base)
    if st != 200:
        print(f"item: HTTP {st}: {body[:200]!r}", file=sys.stderr)
        return 2
    item = json.loads(body)
    if a.asset not in item["assets"]:
        print(f"item has no asset {a.asset}; has {sorted(item['assets'])}", file=sys.stderr)
        return 2
    href = item["assets"][a.asset]["href"]
    cog = a.cog
    if a.titiler_pgstac:
        cog = f"item {a.collection}/{a.item} asset {a.asset} in pgstac"
    elif not cog:
        if "://" in href:
            # an absolute URL to our asset endpoint: map /stac/assets/<rel> onto the archive dir
            rel = urllib.parse.urlparse(href).path.split("/stac/assets/", 1)[-1]
        else:
            rel = href.lstrip("/")
        if not a.archive:
            print(f"asset href {href!r}: pass --cog or --archive", file=sys.stderr)
            return 2
        cog = os.path.join(a.archive, urllib.parse.unquote(rel))
    if not a.titiler_pgstac:
        cog = os.path.abspath(cog)
        if not os.path.exists(cog):
            print(f"COG {cog} does not exist", file=sys.stderr)
            return 2

    qs_ours = {"assets": a.asset}
    qs_tt = [("assets", a.asset)] if a.titiler_pgstac else [("url", cog)]
    tt_base = f"{a.titiler}/collections/{a.collection}/items/{a.item}" if a.titiler_pgstac else f"{a.titiler}/cog"
    if a.bidx:
        qs_ours["bidx"] = a.bidx
        qs_tt += [("bidx", b) for b in a.bidx.split(",")]
    if a.rescale:
        qs_ours["rescale"] = a.rescale
        qs_tt += [("rescale", a.rescale)]
    q_ours = urllib.parse.urlencode(qs_ours)
    q_tt = urllib.parse.urlencode(qs_tt)

    st, body, _ = get(f"{item_base}/WebMercatorQuad/tilejson.json?{q_ours}")
    if st != 200:
        print(f"tilejson: HTTP {st}: {body[:200]!r}", file=sys.stderr)
        return 2
    tj = json.loads(body)
    bounds, zmin, zmax = tj["bounds"], tj["minzoom"], tj["maxzoom"]
    st, body, _ = get(f"{tt_base}/WebMercatorQuad/tilejson.json?{q_tt}")
    tt_tj = json.loads(body) if st == 200 else {}
    print(f"COG: {cog}")
    print(f"ours    tilejson: bounds={bounds} minzoom={zmin} maxzoom={zmax}")
    print(f"titiler tilejson: bounds={tt_tj.get('bounds')} minzoom={tt_tj.get('minzoom')} maxzoom={tt_tj.get('maxzoom')}")
    if a.zooms:
        zooms = [int(z) for z in a.zooms.split(",")]
    else:
        zooms = list(range(max(zmin, zmax - 2), zmax + 1))

    tiles = []
    for z in zooms:
        t = tiles_covering(bounds, z)
        if len(t) > a.max_tiles_per_zoom:
            print(f"z{z}: {len(t)} tiles, keeping the first {a.max_tiles_per_zoom}")
            t = t[: a.max_tiles_per_zoom]
        tiles += t
    if a.diff_dir:
        os.makedirs(a.diff_dir, exist_ok=True)

    rows, bad, ok_urls = [], 0, []
    for z, x, y in tiles:
        u_o = f"{item_base}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{q_ours}"
        u_t = f"{tt_base}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{q_tt}"
        so, bo, co = get(u_o)
        stt, bt, ct = get(u_t)
        r = {"tile": f"{z}/{x}/{y}", "ours_status": so, "titiler_status": stt}
        io_ = it_ = None
        if so == 200:
            io_, r["ours_mode"] = rgba(bo)
        if stt == 200:
            it_, r["titiler_mode"] = rgba(bt)
        if so not in (200, 204) or stt not in (200, 204, 404):
            r["verdict"] = "HTTP"
            r["detail"] = f"ours {so} {bo[:120]!r} titiler {stt} {bt[:120]!r}"
            bad += 1
            rows.append(r)
            continue
        vo = (io_[..., 3] > 0) if io_ is not None else np.zeros((256, 256), bool)
        vt = (it_[..., 3] > 0) if it_ is not None else np.zeros((256, 256), bool)
        if io_ is not None and it_ is not None and io_.shape != it_.shape:
            r["verdict"] = "SHAPE"
            r["detail"] = f"ours {io_.shape} titiler {it_.shape}"
            bad += 1
            rows.append(r)
            continue
        n = vo.size
        am = vo != vt
        both = vo & vt
        r["valid_ours"] = int(vo.sum())
        r["valid_titiler"] = int(vt.sum())
        r["alpha_mismatch"] = int(am.sum())
        r["alpha_only_ours"] = int((vo & ~vt).sum())
        r["alpha_only_titiler"] = int((vt & ~vo).sum())
        if io_ is not None and it_ is not None:
            d = np.abs(io_[..., :3] - it_[..., :3]).max(axis=2)
            d = np.where(both, d, 0)
            r["rgb_diff_px"] = int((d > 0).sum())
            r["max_abs"] = int(d.max())
            r["mean_abs_on_diff"] = float(d[d > 0].mean()) if r["rgb_diff_px"] else 0.0
            # signed mean (ours - titiler) per channel over both-valid pixels
            if both.any():
                sd = (io_[..., :3] - it_[..., :3])[both]
                r["signed_mean"] = [round(float(v), 3) for v in sd.mean(axis=0)]
            diffpx = (d > 0) | am
        else:
            r["rgb_diff_px"] = 0
            r["max_abs"] = 0
            diffpx = am
        if diffpx.any():
            em = edge_mask(vo) | edge_mask(vt)
            r["edge_share"] = round(float((diffpx & em).sum()) / float(diffpx.sum()), 3)
            # where: border rows/cols of the tile
            rows_d = np.where(diffpx.any(axis=1))[0]
            cols_d = np.where(diffpx.any(axis=0))[0]
            r["diff_bbox"] = [int(cols_d.min()), int(rows_d.min()), int(cols_d.max()), int(rows_d.max())]
        within = (
            r["max_abs"] <= a.max_abs
            and r["rgb_diff_px"] <= a.max_diff_frac * n
            and r["alpha_mismatch"] <= a.max_alpha_frac * n
        )
        if not vo.any() and not vt.any():
            r["verdict"] = "both-empty"
        elif within:
            r["verdict"] = "identical" if not diffpx.any() else "within-tol"
        else:
            r["verdict"] = "MISMATCH"
            bad += 1
            if a.diff_dir:
                tag = f"{z}_{x}_{y}"
                if io_ is not None:
                    Image.fromarray(io_.astype(np.uint8)).save(f"{a.diff_dir}/{tag}.ours.png")
                if it_ is not None:
                    Image.fromarray(it_.astype(np.uint8)).save(f"{a.diff_dir}/{tag}.titiler.png")
                dm = np.zeros((256, 256, 3), np.uint8)
                dm[am] = (255, 0, 0)
                if io_ is not None and it_ is not None:
                    dm[(~am) & (d > 0)] = (255, 255, 0)
                Image.fromarray(dm).save(f"{a.diff_dir}/{tag}.diff.png")
        if so == 200 and stt == 200:
            ok_urls.append((u_o, u_t))
        rows.append(r)

    # table
    hdr = f"{'tile':<14}{'ours':>5}{'tt':>5}{'valid_o':>8}{'valid_t':>8}{'alphaMM':>8}{'rgbDiff':>8}{'maxAbs':>7}{'edge':>6}  verdict"
    print(hdr)
    for r in rows:
        print(
            f"{r['tile']:<14}{r['ours_status']:>5}{r['titiler_status']:>5}{r.get('valid_ours', '-'):>8}"
            f"{r.get('valid_titiler', '-'):>8}{r.get('alpha_mismatch', '-'):>8}{r.get('rgb_diff_px', '-'):>8}"
            f"{r.get('max_abs', '-'):>7}{str(r.get('edge_share', '')):>6}  {r['verdict']}"
            + (f"  {r['detail']}" if 'detail' in r else "")
        )
    # summary per zoom
    print("\nsummary per zoom (tiles, identical, within-tol, both-empty, MISMATCH, sum alphaMM, sum rgbDiff, max maxAbs, valid px compared)")
    for z in zooms:
        rz = [r for r in rows if r["tile"].startswith(f"{z}/")]
        c = lambda v: sum(1 for r in rz if r["verdict"] == v)
        print(
            f"z{z}: {len(rz)} {c('identical')} {c('within-tol')} {c('both-empty')} {c('MISMATCH') + c('HTTP') + c('SHAPE')} "
            f"{sum(r.get('alpha_mismatch', 0) for r in rz)} {sum(r.get('rgb_diff_px', 0) for r in rz)} "
            f"{max([r.get('max_abs', 0) for r in rz] or [0])} {sum(r.get('valid_ours', 0) for r in rz)}"
        )
    modes = sorted({(r.get("ours_mode"), r.get("titiler_mode")) for r in rows if "ours_mode" in r or "titiler_mode" in r}, key=str)
    print(f"PNG modes (ours, titiler): {modes}")
    print(f"tolerance: max_abs<={a.max_abs} rgb_diff<={a.max_diff_frac:.4f}*px alpha_mismatch<={a.max_alpha_frac:.4f}*px")
    print(f"RESULT: {len(rows)} tiles, {bad} outside tolerance")
    if a.urls_out:
        with open(a.urls_out + ".ours.txt", "w") as f:
            f.writelines(u + "\n" for u, _ in ok_urls)
        with open(a.urls_out + ".titiler.txt", "w") as f:
            f.writelines(u + "\n" for _, u in ok_urls)
        print(f"wrote {len(ok_urls)} URL pairs (200 on both) to {a.urls_out}.{{ours,titiler}}.txt")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
