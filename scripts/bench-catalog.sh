#!/usr/bin/env bash
# STAC search latency at scale, SQLite vs pgstac, same items and queries: fills each catalog
# with N synthetic scene items (bench/src/bin/catalog_search.rs; kept in DIR and reused), then
# times each query kind one at a time (RUNS each) and prints p50 / p99 rows (Markdown).
# usage: scripts/bench-catalog.sh [DIR=target/bench/catalog] [N=100000]   (RUNS=200)
# pgstac: a throwaway PostgreSQL 15 + PostGIS cluster (scripts/pgstac/pgstac-cluster.sh) in
# DIR/pg, on a Unix socket, stopped at the end (its data stays in DIR/pg for the next run).
set -euo pipefail
dir="${1:-target/bench/catalog}"
n="${2:-100000}"
runs="${RUNS:-200}"
tgt="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p downlink-bench --bin catalog_search
bin="$tgt/release/catalog_search"
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$dir/pg/data/PG_VERSION" ]; then
  "$here/pgstac/pgstac-cluster.sh" restart "$dir/pg" >/dev/null
  url=$("$here/pgstac/pgstac-cluster.sh" url "$dir/pg")
else
  url=$("$here/pgstac/pgstac-cluster.sh" start "$dir/pg" | tail -1)
fi
trap '"$here/pgstac/pgstac-cluster.sh" stop "$dir/pg" >/dev/null 2>&1 || true' EXIT
"$bin" "sqlite:$dir/sqlite/catalog.sqlite" --items "$n" --fill-only
"$bin" "$url" --items "$n" --fill-only
echo "| backend | items | query | p50 | p99 | items returned (mean) |"
echo "|---|---|---|---|---|---|"
# Alternating backends, query kinds in the same order: the machine's load hits both alike.
"$bin" "sqlite:$dir/sqlite/catalog.sqlite" --items "$n" --runs "$runs"
"$bin" "$url" --items "$n" --runs "$runs"
echo "(load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
