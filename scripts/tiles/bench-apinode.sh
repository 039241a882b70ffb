#!/usr/bin/env bash
# Tiles through an API node, every byte from the object store, against titiler-pgstac on the SAME
# bucket and the SAME pgstac database, side by side in one run:
#  1. a single-node Garage on 127.0.0.1 (bucket + key) and a throwaway PostgreSQL + pgstac
#     cluster (scripts/pgstac/pgstac-cluster.sh); the shared Landsat scene imported with
#     `downlink archive add` into a local archive (its web-optimized visual COG, plus a lossless
#     web-optimized copy of the scene for the pixel check), then `downlink archive migrate` into
#     the bucket and pgstac; the local archive is not used after that;
#  2. two API nodes (`downlink serve`, no [[input]], an empty archive.path of their own, the
#     store + pgstac): tile cache 64 MiB and `http.tile_cache = 0`; titiler-pgstac (uvicorn,
#     2 workers, the GDAL env of scripts/tiles/oracle-and-bench.sh plus Garage's S3 settings);
#  3. both answer 200 for every tile of the list, and pixels are compared per tile
#     (tile-oracle.py --titiler-pgstac, tolerance: identical RGBA);
#  4. wrk -t2 -c16 on the same z6-z9 tiles of the visual COG, alternating titiler-pgstac, ours
#     cached, ours uncached, RUNS times; a Markdown table (req/s, p99, ratios, medians), the CPU
#     per request of each server and of PostgreSQL (cpu-tree.py), the load average (out/load.txt),
#     and diagnostics: one pgstac.get_item's cost, the item's JSON alone under the same load, the
#     PostgreSQL connections each API node opened.
# Outputs (logs, oracle tables, wrk lines) go to BUILD_DIR/out, the run's data to BUILD_DIR/run.
#
# How titiler-pgstac reads the COG: migrate publishes each item with its asset hrefs unchanged
# (the daemon's /stac/assets/ routes) and the object as an `s3` alternate
# ("alternate": {"s3": {"href": "s3://BUCKET/PREFIX/collections/…/visual.tif"}}). titiler-pgstac
# reads an asset's `href` unless rio-tiler is told to take an alternate:
# RIO_TILER_STAC_ALTERNATE_KEY=s3 makes it open the s3:// alternate (GDAL /vsis3/ on Garage), so
# it serves the very items and objects our API nodes serve, and never reads through our daemon
# (the script checks that neither API node answered an asset request: downlink_store_read_assets_total).
#
# usage: scripts/tiles/bench-apinode.sh [BUILD_DIR] [DURATION] [RUNS]
#   defaults: target/tile-bench-apinode 15s 3. BIN=path/to/downlink (default
#   target/release/downlink, `make build`), GARAGE=path/to/garage (default ~/.cargo/bin/garage,
#   `make test-deps`); needs wrk, curl, gdal_translate, psql (apt: wrk curl gdal-bin
#   postgresql-15 postgresql-15-postgis-3), python3 with venv. S3_PORT (default 3900; Garage also
#   takes S3_PORT+1 for RPC and S3_PORT+3 for admin) and PORT (default 18480: titiler-pgstac,
#   PORT+1 ours cached, PORT+3 ours uncached).
#   titiler-pgstac's venv (BUILD_DIR/titiler-pgstac-venv, pins in requirements-pgstac.txt) is
#   made once; TITILER_GDAL=system (default) builds rasterio against Debian's GDAL, the library
#   the daemon links; TITILER_GDAL=wheel uses rasterio's own (JPEG tiles then differ, see
#   docs/PERFORMANCE.md).
# Everything started here (Garage, PostgreSQL, uvicorn, daemons) is stopped on exit.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/scripts/tiles
build=$(mkdir -p "${1:-$repo/target/tile-bench-apinode}" && cd "${1:-$repo/target/tile-bench-apinode}" && pwd)
dur=${2:-15s}
runs=${3:-3}
data=${DATA:-$repo/../shared/data}
bin=${BIN:-$repo/target/release/downlink}
garage=${GARAGE:-$HOME/.cargo/bin/garage}
s3_port=${S3_PORT:-3900}
port=${PORT:-18480}
bucket=downlink-bench
prefix=station-1
[ -x "$bin" ] || { echo "no daemon binary $bin: make build, or BIN=…" >&2; exit 2; }
[ -x "$garage" ] || { echo "no garage binary $garage: make test-deps, or GARAGE=…" >&2; exit 2; }
for t in wrk curl gdal_translate psql; do
  command -v $t >/dev/null || { echo "$t is missing (apt-get install wrk curl gdal-bin postgresql-15)" >&2; exit 2; }
done

# titiler-pgstac, its own venv (remade when the pins change)
req=$here/requirements-pgstac.txt
venv=$build/titiler-pgstac-venv
if [ ! -x "$venv/bin/uvicorn" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  if [ "${TITILER_GDAL:-system}" = system ]; then
    "$venv/bin/pip" install -q --disable-pip-version-check --no-binary rasterio -r "$req"
  else
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  fi
  cp "$req" "$venv/requirements.txt"
fi

run=$build/run
out=$build/out
pids=()
pg=$run/pg
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -f "$pg/data/postmaster.pid" ] && "$repo/scripts/pgstac/pgstac-cluster.sh" stop "$pg" || true
}
trap cleanup EXIT
rm -rf "$run" "$out"
mkdir -p "$run" "$out"
loadavg() { echo "$(date -u +%H:%M:%S) load average: $(cut -d' ' -f1-3 /proc/loadavg) ($1)" | tee -a "$out/load.txt" >&2; }

# Every port this run listens on must be free (another server there would answer for ours).
for p in "$s3_port" $((s3_port + 1)) $((s3_port + 3)) "$port" $((port + 1)) $((port + 3)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "127.0.0.1:$p is in use: set S3_PORT / PORT to free ones" >&2
    exit 2
  fi
done

echo "== Garage $("$garage" --version | head -1) on 127.0.0.1:$s3_port"
g=$run/garage
mkdir -p "$g"
cat >"$g/garage.toml" <<TOML
metadata_dir = "$g/meta"
data_dir = "$g/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$((s3_port + 1))"
rpc_public_addr = "127.0.0.1:$((s3_port + 1))"
rpc_secret = "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
[admin]
api_bind_addr = "127.0.0.1:$((s3_port + 3))"
TOML
RUST_LOG=garage=warn "$garage" -c "$g/garage.toml" server >"$out/garage.log" 2>&1 &
pids+=($!)
garage_pid=$!
gcli() { "$garage" -c "$g/garage.toml" "$@"; }
for _ in $(seq 100); do gcli status >/dev/null 2>&1 && break; sleep 0.3; done
node=$(gcli node id -q | cut -d@ -f1)
gcli layout assign -z dc1 -c 1G "$node" >/dev/null
gcli layout apply --version 1 >/dev/null
gcli bucket create "$bucket" >/dev/null
key=$(gcli key create bench)
AWS_ACCESS_KEY_ID=$(sed -n 's/^Key ID: *//p' <<<"$key")
AWS_SECRET_ACCESS_KEY=$(sed -n 's/^Secret key: *//p' <<<"$key")
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
gcli bucket allow --read --write --owner "$bucket" --key bench >/dev/null

echo "== PostgreSQL + pgstac"
pgurl=$(PGSTAC_OWNER_PID=$$ "$repo/scripts/pgstac/pgstac-cluster.sh" start "$pg")
psql_() { psql -X -q -At -h "$pg" -U postgres -d downlink -v ON_ERROR_STOP=1 "$@"; }
echo "pgstac $(psql_ -c 'SELECT pgstac.get_version()'), PostgreSQL $(psql_ -c 'SHOW server_version')"

echo "== archive add (local), archive migrate (to s3://$bucket/$prefix + pgstac)"
station=$run/station
gdal_translate -q -of COG -co TILING_SCHEME=GoogleMapsCompatible -co COMPRESS=DEFLATE \
  "$data/geotiff/RGB.byte.tif" "$run/rgb_webmerc_deflate.tif"
"$bin" archive add "$data/geotiff/RGB.byte.tif" --collection rgb --id rgb-landsat \
  --datetime 2024-05-01T10:00:00Z --archive "$station" >/dev/null
"$bin" archive add "$run/rgb_webmerc_deflate.tif" --collection rgbwm --id rgbwm-landsat \
  --datetime 2024-05-01T10:00:00Z --archive "$station" >/dev/null
store_toml() { # ARCHIVE_PATH
  cat <<TOML
[archive]
path = "$1"
store = "s3://$bucket/$prefix"
[archive.s3]
endpoint = "http://127.0.0.1:$s3_port"
region = "garage"
allow_http = true
[catalog]
url = "$pgurl"
TOML
}
store_toml "$station" >"$run/station.toml"
"$bin" archive migrate --config "$run/station.toml" >"$out/migrate.txt" 2>&1 \
  || { cat "$out/migrate.txt" >&2; exit 1; }
tail -3 "$out/migrate.txt"
echo "objects in the bucket: $(gcli bucket info "$bucket" | sed -n 's/^ *Objects: *//p')"
# What one item lookup costs in PostgreSQL (the daemon's catalog reads an item with it).
psql_ -c "EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(pgstac.get_item('rgb-landsat', 'rgb')) FROM generate_series(1, 500)" \
  | python3 -c 'import json, sys; print("pgstac.get_item: %.2f ms per call (500 in one statement)" % (json.load(sys.stdin)[0]["Execution Time"] / 500))'

echo "== API nodes (empty archive.path each) and titiler-pgstac"
start_ours() { # PORT TILE_CACHE
  { store_toml "$run/apinode-$1"; cat <<TOML
[http]
listen = "127.0.0.1:$1"
max_concurrency = 256
tile_cache = "$2"
TOML
  } >"$run/apinode-$1.toml"
  "$bin" serve --config "$run/apinode-$1.toml" >"$out/apinode-$1.log" 2>&1 &
  pids+=($!)
}
start_ours $((port + 1)) 64MiB
cached_pid=$!
start_ours $((port + 3)) 0
uncached_pid=$!
# titiler-pgstac: the pgstac database over its Unix socket, Garage through GDAL's /vsis3/, the
# item's `s3` alternate instead of its href (see the top of this file).
DATABASE_URL="postgresql://postgres@$(sed 's#/#%2F#g' <<<"$pg")/downlink" \
  RIO_TILER_STAC_ALTERNATE_KEY=s3 \
  AWS_S3_ENDPOINT=127.0.0.1:$s3_port AWS_HTTPS=NO AWS_VIRTUAL_HOSTING=FALSE AWS_REGION=garage \
  GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR GDAL_CACHEMAX=512 VSI_CACHE=TRUE \
  "$venv/bin/uvicorn" titiler.pgstac.main:app --host 127.0.0.1 --port "$port" --workers 2 \
  --log-level warning >"$out/titiler-pgstac.log" 2>&1 &
pids+=($!)
titiler_pid=$!
for u in "http://127.0.0.1:$((port + 1))/stac" "http://127.0.0.1:$((port + 3))/stac" "http://127.0.0.1:$port/healthz"; do
  for _ in $(seq 150); do curl -fs -o /dev/null "$u" && break; sleep 0.2; done
  curl -fs -o /dev/null "$u" || { echo "$u never came up" >&2; tail -20 "$out"/*.log >&2; exit 1; }
done
for p in $cached_pid $uncached_pid $titiler_pid; do
  kill -0 "$p" 2>/dev/null || { echo "a server exited" >&2; tail -5 "$out"/*.log >&2; exit 1; }
done
for n in $((port + 1)) $((port + 3)); do
  left=$(find "$run/apinode-$n" -name '*.tif' | wc -l)
  [ "$left" = 0 ] || { echo "API node $n has $left COG(s) under its archive.path" >&2; exit 1; }
done

echo "== pixel oracle (tolerance: identical): both 200 for every tile of the list"
rc=0
oracle() { # COLLECTION ITEM ASSET
  "$venv/bin/python" "$here/tile-oracle.py" --titiler-pgstac \
    --ours "http://127.0.0.1:$((port + 1))" --titiler "http://127.0.0.1:$port" \
    --collection "$1" --item "$2" --asset "$3" --zooms 6,7,8,9 \
    --urls-out "$out/urls-$1-$3" --json "$out/oracle-$1-$3.json" >"$out/oracle-$1-$3.txt" || rc=1
  grep -E '^(z[0-9]|PNG|RESULT|wrote)' "$out/oracle-$1-$3.txt"
  # Every tile with data answered 200 by both (a tile empty on both sides: ours 204, theirs 404
  # or a transparent PNG; the oracle fails a tile empty on one side only).
  python3 - "$out/oracle-$1-$3.json" <<'PY' || rc=1
import json, sys
rows = json.load(open(sys.argv[1]))
data = [r for r in rows if r.get("verdict") != "both-empty"]
bad = [r["tile"] for r in data if (r["ours_status"], r["titiler_status"]) != (200, 200)]
print(f"{len(data)} tiles with data, {len(bad)} not 200 on both {bad}; {len(rows) - len(data)} empty on both")
sys.exit(1 if bad or not data else 0)
PY
}
oracle rgb rgb-landsat visual
oracle rgbwm rgbwm-landsat red
urls=$out/urls-rgb-visual
sed "s/:$((port + 1))\//:$((port + 3))\//" "$urls.ours.txt" >"$out/urls-nocache.txt"
ntiles=$(wc -l <"$urls.ours.txt")

echo "== wrk -t2 -c16 -d$dur, the same $ntiles tiles of the visual COG, $runs runs"
bench() { # NAME URLS RUN
  for u in $(cat "$2"); do curl -s -o /dev/null "$u"; done # one pass first: open files, warm caches
  local host r
  host=$(head -1 "$2" | grep -oE '^https?://[^/]+')
  local c0 c1
  c0=$(cpu)
  r=$(URLS=$2 wrk -t2 -c16 -d"$dur" --latency -s "$here/bench.lua" "$host" 2>&1 | grep RESULT || true)
  c1=$(cpu)
  # CPU seconds each server used during the run
  echo "$3 $1 ${r:-RESULT missing} $(python3 -c 'import sys; a, b = (dict(kv.split("=") for kv in x.split()) for x in sys.argv[1:]); print(" ".join(f"cpu_{k}={float(b[k]) - float(a[k]):.1f}" for k in a))' "$c0" "$c1")"
}
cpu() {
  python3 "$here/cpu-tree.py" titiler=$titiler_pid cached=$cached_pid uncached=$uncached_pid \
    pg="$(head -1 "$pg/data/postmaster.pid")" garage=$garage_pid
}
for i in $(seq "$runs"); do
  loadavg "before run $i"
  bench titiler-pgstac "$urls.titiler.txt" "$i"
  bench ours-cached "$urls.ours.txt" "$i"
  bench ours-uncached "$out/urls-nocache.txt" "$i"
done | tee "$out/bench.txt"
loadavg "after the runs"
# Diagnostics (one run each, not in the table): the item's JSON alone from the cached node (one
# catalog lookup, no tile), and PostgreSQL connections opened by each API node.
echo "$(yes "http://127.0.0.1:$((port + 1))/stac/collections/rgb/items/rgb-landsat" | head -24)" >"$out/urls-item.txt"
bench item-json "$out/urls-item.txt" diag | tee -a "$out/diag.txt"
for n in $((port + 1)) $((port + 3)); do
  echo "API node $n: $(curl -fs "http://127.0.0.1:$n/metrics" | grep -E '^downlink_catalog_reopened_total') (new PostgreSQL connections after the first)" | tee -a "$out/diag.txt"
done
echo "PostgreSQL sessions opened in all: $(psql_ -c "SELECT sessions FROM pg_stat_database WHERE datname = 'downlink'")" | tee -a "$out/diag.txt"

# Nothing was read through our daemon's asset routes: titiler-pgstac went to Garage itself.
for n in $((port + 1)) $((port + 3)); do
  served=$(curl -fs "http://127.0.0.1:$n/metrics" | awk '/^downlink_store_read_assets_total / { s += $2; n++ } END { print n ? s : "no metric" }')
  [ "$served" = 0 ] || { echo "API node $n answered $served asset request(s)" >&2; rc=1; }
  curl -fs "http://127.0.0.1:$n/metrics" | grep -E '^downlink_store_read_failures_total' || true
done

python3 - "$out/bench.txt" <<'PY' || rc=1
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    i, name = line.split()[:2]
    runs.setdefault(int(i), {})[name] = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
print("| run | titiler-pgstac req/s | p99 ms | ours cached req/s | p99 ms | ours uncached req/s | p99 ms | cached ratio | uncached ratio |")
print("|---|---|---|---|---|---|---|---|---|")
cols = []
bad = 0
for i, r in sorted(runs.items()):
    t, c, u = r["titiler-pgstac"], r["ours-cached"], r["ours-uncached"]
    row = [t["rps"], t["p99_ms"], c["rps"], c["p99_ms"], u["rps"], u["p99_ms"], c["rps"] / t["rps"], u["rps"] / t["rps"]]
    cols.append(row)
    bad += sum(int(x["non200"]) + int(x["sock_err"]) for x in (t, c, u))
    print(f"| {i} | {row[0]:.1f} | {row[1]:.0f} | {row[2]:.0f} | {row[3]:.1f} | {row[4]:.0f} | {row[5]:.1f} | {row[6]:.1f}× | {row[7]:.1f}× |")
med = [statistics.median(c[k] for c in cols) for k in range(8)]
print(f"| **median** | {med[0]:.1f} | {med[1]:.0f} | {med[2]:.0f} | {med[3]:.1f} | {med[4]:.0f} | {med[5]:.1f} | **{med[6]:.1f}×** | **{med[7]:.1f}×** |")
print()
print("CPU per request, ms (CPU seconds the server and PostgreSQL used during the run / requests):")
print("| run | titiler-pgstac | its PostgreSQL | ours cached | its PostgreSQL | ours uncached | its PostgreSQL |")
print("|---|---|---|---|---|---|---|")
for i, r in sorted(runs.items()):
    cells = []
    for name, cpu in (("titiler-pgstac", "cpu_titiler"), ("ours-cached", "cpu_cached"), ("ours-uncached", "cpu_uncached")):
        x = r[name]
        cells += [f"{1000 * x[cpu] / x['req']:.2f}", f"{1000 * x['cpu_pg'] / x['req']:.2f}"]
    print(f"| {i} | " + " | ".join(cells) + " |")
print(f"non-200 answers or socket errors, all runs: {bad}")
print(f"goal >= 20x titiler-pgstac req/s: cached {'met' if med[6] >= 20 else 'NOT met'} ({med[6]:.1f}x), "
      f"uncached {'met' if med[7] >= 20 else 'NOT met'} ({med[7]:.1f}x) (medians of the per-run ratios)")
sys.exit(1 if bad else 0)
PY
echo "versions: $("$venv/bin/pip" list --disable-pip-version-check 2>/dev/null | grep -iE "^(titiler-pgstac|titiler-core|rio-tiler|rasterio|psycopg|uvicorn) " | tr -s ' ' | paste -sd, -), GDAL $("$venv/bin/python" -c 'import rasterio; print(rasterio.__gdal_version__)')"
exit $rc
