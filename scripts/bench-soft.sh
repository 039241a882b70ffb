#!/usr/bin/env bash
# Soft-symbol speed: `downlink decode --format soft-i8` (whole chain: phase search, Viterbi, sync,
# PN, RS, frames, packets) vs crates.io fec 0.2.2's SIMD Viterbi alone, on the same >= 64 MiB
# soft file, one core each (taskset -c 0), alternating runs, medians. The soft files are the
# real Meteor-M2 pass (x16) made by `downlink replay --encode conv`, clean and at Eb/N0 = 3 dB.
# Rates are Mbit/s of decoded (information) bits = soft bytes / 2. Prints a Markdown table.
# fec's `simd` feature needs portable_simd: its peer (bench/fec-peer, outside the workspace) is
# built with RUSTC_BOOTSTRAP=1 and is never part of the product.
set -euo pipefail
dir="${1:-target/bench}"
runs="${RUNS:-3}"
tgt="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p downlink --bin downlink
cargo build --release -q -p downlink-bench --bin soft_input
RUSTC_BOOTSTRAP=1 cargo build --release -q --manifest-path bench/fec-peer/Cargo.toml \
  --target-dir "$tgt/fec-peer"
bin="$tgt/release"; peer="$tgt/fec-peer/release/fec-peer"
pin=""; command -v taskset >/dev/null && pin="taskset -c 0"
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mkdir -p "$dir"
cadu="$dir/meteor-x16.cadu"
[ -f "$cadu" ] || "$bin/soft_input" "$dir" 16 >/dev/null
echo "| input | soft MiB | downlink decode (whole chain) Mbit/s | fec SimdDecoder (Viterbi only) Mbit/s | ratio | frames good (downlink) | bit errors (fec vs truth) |"
echo "|---|---|---|---|---|---|---|"
for case in clean 3dB; do
  f="$dir/meteor-x16.$case.s"
  if [ ! -f "$f" ]; then
    noise=(); [ "$case" = 3dB ] && noise=(--ebn0 3)
    "$bin/downlink" replay "$cadu" --output "$f" --encode conv "${noise[@]}" --seed 3 -q >/dev/null
  fi
  bits=$(( $(stat -c %s "$f") / 2 ))
  ours=(); theirs=(); good=""; errs=""
  for ((i = 0; i < runs; i++)); do
    j=$($pin "$bin/downlink" decode "$f" --profile meteor-m2-lrpt-72k --format soft-i8 --json --quiet)
    ours+=("$(echo "$j" | python3 -c "import json,sys; print($bits / json.load(sys.stdin)['timing']['elapsed_s'] / 1e6)")")
    good=$(echo "$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["frames"]["by_vcid"].get("5", 0))')
    line=$($pin "$peer" "$f" --truth "$cadu" --runs 1)
    theirs+=("$(echo "$line" | sed -E 's/.* ([0-9.]+) Mbit\/s decoded.*/\1/')")
    errs=$(echo "$line" | sed -E 's/.*, ([0-9]+) bit errors vs truth.*/\1/')
  done
  o=$(printf '%s\n' "${ours[@]}" | median); p=$(printf '%s\n' "${theirs[@]}" | median)
  printf '| %s | %.1f | %.1f | %.1f | %.2fx | %s | %s |\n' "$case" \
    "$(echo "$(stat -c %s "$f") / 1048576" | bc -l)" "$o" "$p" "$(echo "$o / $p" | bc -l)" "$good" "$errs"
done
