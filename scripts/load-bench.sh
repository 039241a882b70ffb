#!/usr/bin/env bash
# Load benchmark for `downlink serve`: for each rate, replay a real capture (looped) over UDP on
# loopback for DURATION seconds with full decode and the raw archive on, then report drops by
# reason, frames decoded and the daemon's peak RSS. Sender and daemon share this machine.
#   [DOWNLINK=BIN] [QUEUE=4096] scripts/load-bench.sh [RATES="400Mbit 800Mbit 1Gbit"] [DURATION=60] [DGRAM=8192]
# Input: target/bench/cadu-e0.bin (make bench-data). Only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
rates="${1:-400Mbit 800Mbit 1Gbit}"; duration="${2:-60}"; dgram="${3:-8192}"
input=target/bench/cadu-e0.bin
[ -f "$input" ] || { echo "missing $input: run make bench-data" >&2; exit 1; }
# DOWNLINK: a release binary already built (default: build target/release/downlink now).
if [ -n "${DOWNLINK:-}" ]; then bin=$DOWNLINK; else
  cargo build --release -q --bin downlink
  bin=./target/release/downlink
fi
if [ "$(id -u)" = 0 ]; then sysctl -q -w net.core.rmem_max=33554432 || true; fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
size=$(stat -c %s "$input")
echo "| rate | datagram | seconds | sent MiB | frames good | frames expected | drops (reason=n) | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|"
for rate in $rates; do
  rm -rf "$work/archive"
  cat > "$work/c.toml" <<TOML
[archive]
path = "$work/archive"
[http]
listen = "127.0.0.1:18481"
[pass]
los_timeout = "3s"
[[input]]
name = "load"
listen = "udp://127.0.0.1:18480"
format = "bits"
profile = "eos"
rcvbuf = "32MiB"
queue_datagrams = ${QUEUE:-4096}
TOML
  $bin serve --config "$work/c.toml" 2> "$work/log" & pid=$!
  sleep 1
  bps=$($bin replay --help >/dev/null; python3 -c "
import re,sys
m=re.match(r'([0-9.]+)\s*([kMG]?)bit','$rate'); f={'':1,'k':1e3,'M':1e6,'G':1e9}[m.group(2)]
print(float(m.group(1))*f)")
  loops=$(python3 -c "import math; print(max(1, math.ceil($duration * $bps / 8 / $size)))")
  peak=0
  ( while kill -0 $pid 2>/dev/null; do r=$(ps -o rss= -p $pid 2>/dev/null || echo 0); echo "$r"; sleep 0.5; done > "$work/rss" ) &
  t0=$(date +%s.%N)
  $bin replay "$input" --to udp://127.0.0.1:18480 --rate "$rate" --datagram-size "$dgram" --loop "$loops" --quiet > "$work/replay.txt"
  t1=$(date +%s.%N)
  sleep 4   # LOS after 3 s of silence closes the pass
  status=$(curl -s 127.0.0.1:18481/api/v1/status)
  kill -TERM $pid; wait $pid || true
  peak=$(sort -n "$work/rss" | tail -1)
  good=$(python3 -c "import json,glob; print(sum(json.load(open(p))['counters']['frames']['good'] for p in glob.glob('$work/archive/passes/*/pass.json')))")
  drops=$(echo "$status" | python3 -c "import json,sys; d=json.load(sys.stdin)['inputs'][0]['drops']; print(' '.join(f'{k}={v}' for k,v in d.items() if v) or 'none')")
  expected=$(( loops * (size / 1024) ))
  printf '| %s | %s | %.1f | %d | %s | %s | %s | %d |\n' "$rate" "$dgram" "$(echo "$t1 - $t0" | bc -l)" \
    $(( loops * size / 1048576 )) "$good" "$expected" "$drops" $(( peak / 1024 ))
done
