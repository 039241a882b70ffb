#!/usr/bin/env bash
# CLI benchmark: `downlink decode` vs the ccsds crate on the same >=256 MiB files, alternating
# runs, medians. Inputs come from `make bench-data` (scripts/../target/bench/cadu-e{0,8,16}.bin).
# Both run on one core (taskset -c 0 if available). Prints a Markdown table.
set -euo pipefail
dir="${1:-target/bench}"
runs="${RUNS:-3}"
cargo build --release -q --bin downlink -p downlink
cargo build --release -q -p downlink-bench --bin ccsds_decode
pin=""; command -v taskset >/dev/null && pin="taskset -c 0"
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| input | size MiB | downlink Mbit/s | ccsds Mbit/s | ratio |"
echo "|---|---|---|---|---|"
for e in 0 8 16; do
  f="$dir/cadu-e$e.bin"
  [ -f "$f" ] || { echo "missing $f: run make bench-data" >&2; exit 1; }
  ours=(); peer=()
  for ((i = 0; i < runs; i++)); do
    ours+=("$($pin ./target/release/downlink decode "$f" --profile eos --json --quiet |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["timing"]["input_mbit_per_s"])')")
    peer+=("$($pin ./target/release/ccsds_decode "$f" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["input_mbit_per_s"])')")
  done
  o=$(printf '%s\n' "${ours[@]}" | median); p=$(printf '%s\n' "${peer[@]}" | median)
  size=$(( $(stat -c %s "$f") / 1048576 ))
  printf '| %s errors/codeword | %s | %.0f | %.0f | %.1fx |\n' "$e" "$size" "$o" "$p" "$(echo "$o / $p" | bc -l)"
done
