#!/usr/bin/env bash
# Tiles against TiTiler, side by side in one run:
#  1. pixel oracle: every tile of the shared Landsat scene at z6-z9 from our STAC item endpoint and
#     from TiTiler's /cog endpoint on the SAME files (the web-optimized visual COG, and a lossless
#     web-optimized COG through the analytic asset), compared per pixel (tile-oracle.py);
#  2. wrk benchmark on the visual COG: TiTiler (2 uvicorn workers), ours with the tile cache on,
#     ours with it off (http.tile_cache = 0); req/s, p50, p99, non-200s.
#
# usage: scripts/tiles/oracle-and-bench.sh [BUILD_DIR] [DURATION]
#   needs target/release/downlink (make build), wrk and curl (apt), python3 with venv.
#   TITILER_GDAL=system (default) builds rasterio against Debian's GDAL, the library the daemon
#   links, so JPEG blocks decode identically; TITILER_GDAL=wheel uses rasterio's own GDAL
#   (libjpeg 9 decodes colour JPEG differently: expect RGB differences up to ~35 on JPEG COGs).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/scripts/tiles
build=$(mkdir -p "${1:-$repo/target/tile-bench}" && cd "${1:-$repo/target/tile-bench}" && pwd)
dur=${2:-15s}
data=${DATA:-$repo/../shared/data}
bin=$repo/target/release/downlink
[ -x "$bin" ] || { echo "build the daemon first: make build" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 2; }

venv=$build/titiler-venv
if [ ! -x "$venv/bin/uvicorn" ]; then
  python3 -m venv "$venv"
  if [ "${TITILER_GDAL:-system}" = system ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check --no-binary rasterio -r "$here/requirements.txt"
  else
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt"
  fi
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The archive: the shared Landsat scene, and a lossless web-optimized copy of it.
arch=$build/archive
rm -rf "$arch" "$build/out"; mkdir -p "$build/out"
gdal_translate -q -of COG -co TILING_SCHEME=GoogleMapsCompatible -co COMPRESS=DEFLATE \
  "$data/geotiff/RGB.byte.tif" "$build/rgb_webmerc_deflate.tif"
"$bin" archive add "$data/geotiff/RGB.byte.tif" --collection rgb --datetime 2024-05-01T10:00:00Z --id RGB.byte --archive "$arch" >/dev/null
"$bin" archive add "$build/rgb_webmerc_deflate.tif" --collection rgbwm --datetime 2024-05-01T10:00:00Z --id rgb_webmerc_deflate --archive "$arch" >/dev/null

start_ours() { # PORT TILE_CACHE
  cat > "$build/downlink-$1.toml" <<TOML
[archive]
path = "$arch"
[http]
listen = "127.0.0.1:$1"
max_concurrency = 256
tile_cache = "$2"
[[input]]
name = "bench"
listen = "udp://127.0.0.1:$(( $1 + 1 ))"
profile = "jpss"
format = "bits"
TOML
  "$bin" serve --config "$build/downlink-$1.toml" >"$build/out/downlink-$1.log" 2>&1 &
  pids+=($!)
}
start_ours 18381 64MiB
start_ours 18383 0
GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR GDAL_CACHEMAX=512 VSI_CACHE=TRUE \
  "$venv/bin/uvicorn" titiler.application.main:app --host 127.0.0.1 --port 18380 --workers 2 \
  --log-level warning >"$build/out/titiler.log" 2>&1 &
pids+=($!)
for u in http://127.0.0.1:18381/stac http://127.0.0.1:18383/stac http://127.0.0.1:18380/healthz; do
  for _ in $(seq 100); do curl -fs -o /dev/null "$u" && break; sleep 0.2; done
  curl -fs -o /dev/null "$u" || { echo "$u never came up" >&2; exit 1; }
done

echo "== pixel oracle (tolerance: identical)"
rc=0
oracle() { # COLLECTION ITEM ASSET
  "$venv/bin/python" "$here/tile-oracle.py" --ours http://127.0.0.1:18381 --titiler http://127.0.0.1:18380 \
    --collection "$1" --item "$2" --asset "$3" --archive "$arch" --zooms 6,7,8,9 \
    --urls-out "$build/out/urls-$1-$3" --json "$build/out/oracle-$1-$3.json" || rc=1
}
oracle rgb RGB.byte visual
oracle rgbwm rgb_webmerc_deflate red   # bands are single-band assets named by colour

echo "== wrk -t2 -c16 -d$dur, the same $(wc -l < "$build/out/urls-rgb-visual.ours.txt") tiles of the visual COG"
bench() { # NAME URLS
  for u in $(cat "$2"); do curl -s -o /dev/null "$u"; done # one pass first: open files, warm OS cache
  local host r
  host=$(head -1 "$2" | grep -oE '^https?://[^/]+')
  r=$(URLS=$2 wrk -t2 -c16 -d"$dur" --latency -s "$here/bench.lua" "$host" 2>&1 | grep RESULT || true)
  echo "$1 ${r:-RESULT missing}"
}
sed 's/:18381/:18383/' "$build/out/urls-rgb-visual.ours.txt" > "$build/out/urls-nocache.txt"
{
  bench titiler "$build/out/urls-rgb-visual.titiler.txt"
  bench ours-cached "$build/out/urls-rgb-visual.ours.txt"
  bench ours-uncached "$build/out/urls-nocache.txt"
} | tee "$build/out/bench.txt"
python3 - "$build/out/bench.txt" <<'PY'
import re, sys
rows = {}
for line in open(sys.argv[1]):
    name = line.split()[0]
    rows[name] = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
print(f"{'server':14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8}")
for n, r in rows.items():
    print(f"{n:14} {r['rps']:9.1f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {int(r['non200']):8d}")
t = rows["titiler"]
for n in ("ours-cached", "ours-uncached"):
    r = rows[n]
    print(f"{n}: {r['rps'] / t['rps']:.1f}x TiTiler's req/s, p99 {t['p99_ms'] / r['p99_ms']:.1f}x lower")
bad = sum(int(r["non200"]) + int(r["sock_err"]) for r in rows.values())
sys.exit(1 if bad else 0)
PY
exit $rc
