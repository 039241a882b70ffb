#!/usr/bin/env bash
# Merge speed: `downlink merge` (release) over two station copies of a synthetic Suomi-NPP
# X-band pass (`merge_input`: A missing the first 40 %, B the last 40 %) vs the sequential read
# speed of the same two files on the same machine, alternating runs, medians.
# usage: scripts/bench-merge.sh [DIR=target/bench/merge] [FRAMES=500000]   (RUNS=5, BIN_DIR)
# MB/s are input bytes (A + B) per second. The merge reads the copies from the page cache (they
# were just written, or read by the previous run); `dd iflag=direct` reads them from the disk,
# `cat` from the page cache. CPU MB/s = input / (user + sys time). The merged pass's own files
# must be durable when the merge ends: "dd write" is the time `dd conv=fsync` takes to write as
# many bytes as the merged pass's files (the disk's floor for the merge). Prints a Markdown table.
set -euo pipefail
dir="${1:-target/bench/merge}"
frames="${2:-500000}"
runs="${RUNS:-5}"
tgt="${CARGO_TARGET_DIR:-target}"
# BIN_DIR: binaries already built (downlink, merge_input), e.g. a frozen copy; else built here.
if [ -n "${BIN_DIR:-}" ]; then
  bin="$BIN_DIR"
else
  cargo build --release -q -p downlink --bin downlink -p downlink-bench --bin merge_input
  bin="$tgt/release"
fi
a="$dir/passes/20241206T173815Z-a"; b="$dir/passes/20241206T173815Z-b"
[ -f "$b/cadus.raw" ] || "$bin/merge_input" "$dir" "$frames" >/dev/null
bytes=$(( $(stat -c %s "$a/cadus.raw") + $(stat -c %s "$b/cadus.raw") ))
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mbps() { awk -v b="$bytes" -v t="$1" 'BEGIN {printf "%.0f", b / 1e6 / t}'; }
now() { date +%s.%N; }
: > "$dir/runs.txt"
for r in $(seq "$runs"); do
  rm -rf "$dir/out"
  /usr/bin/time -f "%e %U %S %M" -o "$dir/time.txt" "$bin/downlink" merge "$a" "$b" --out "$dir/out" >/dev/null
  read -r wall user sys rss < "$dir/time.txt"
  out_mb=$(( $(du -sb "$dir/out" | cut -f1) / 1048576 ))
  rm -rf "$dir/out"
  t4=$(now); dd if=/dev/zero of="$dir/write.tmp" bs=1M count="$out_mb" conv=fsync 2>/dev/null; t5=$(now)
  rm -f "$dir/write.tmp"
  t0=$(now); dd if="$a/cadus.raw" of=/dev/null bs=1M iflag=direct 2>/dev/null
  dd if="$b/cadus.raw" of=/dev/null bs=1M iflag=direct 2>/dev/null; t1=$(now)
  t2=$(now); cat "$a/cadus.raw" "$b/cadus.raw" >/dev/null; t3=$(now)
  echo "$wall $(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}') $rss $(awk -v x="$t0" -v y="$t1" 'BEGIN {print y - x}') $(awk -v x="$t2" -v y="$t3" 'BEGIN {print y - x}') $(awk -v x="$t4" -v y="$t5" 'BEGIN {print y - x}') $out_mb" >> "$dir/runs.txt"
done
rm -rf "$dir/out"
col() { awk -v c="$1" '{print $c}' "$dir/runs.txt" | median; }
wall=$(col 1); cpu=$(col 2); rss=$(col 3); dd=$(col 4); cat=$(col 5); ddw=$(col 6); out=$(col 7)
echo "| input (A + B) | merge wall | merge MB/s | merge CPU MB/s | max RSS | dd O_DIRECT MB/s | cat (cached) MB/s | output | dd write + fsync of it | merge / dd |"
echo "|---|---|---|---|---|---|---|---|---|---|"
echo "| $(awk -v b="$bytes" 'BEGIN {printf "%.0f MB", b / 1e6}') | $wall s | $(mbps "$wall") | $(mbps "$cpu") | $((rss / 1024)) MiB | $(mbps "$dd") | $(mbps "$cat") | $out MiB | $(awk -v t="$ddw" 'BEGIN {printf "%.2f", t}') s | $(awk -v w="$wall" -v d="$dd" 'BEGIN {printf "%.2f", d / w}') |"
echo "(medians of $runs runs; load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
