#!/usr/bin/env bash
# Upload throughput into a real S3-compatible store (Garage 2.5, one node on 127.0.0.1), ours vs
# the AWS CLI, same file, same bucket, alternating runs, medians.
#   ours: `downlink archive migrate` of an archive holding one closed raw pass (the station's own
#         uploader: multipart 8 MiB parts, 2 in flight, SHA-256 + MD5 of every part, the ETag
#         checked against the bytes sent, a durable manifest, then the manifest uploaded);
#   peer: `aws s3 cp` of the same cadus.raw (awscli, pinned below; multipart 8 MiB chunks, its
#         default 10 requests in flight).
# Both read the file from the page cache (one warm-up read first) and write to the same Garage,
# whose data directory is on the same disk. Sender and store share this machine.
#
#   scripts/bench-upload.sh [WORK_DIR=/tmp/uploadbench]
# Env: RUNS (3), INPUT (target/bench/cadu-e0.bin, `make bench-data`), DOWNLINK
# (target/release/downlink), PORT (23920, Garage S3; +1, +2 also used).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=${1:-/tmp/uploadbench}
runs=${RUNS:-3}
input=${INPUT:-target/bench/cadu-e0.bin}
bin=${DOWNLINK:-target/release/downlink}
awscli=awscli==1.36.0
[ -x "$bin" ] || { echo "no $bin: cargo build --release --bin downlink" >&2; exit 1; }
[ -f "$input" ] || { echo "missing $input: make bench-data" >&2; exit 1; }
venv=$root/target/upload-venv
[ -x "$venv/bin/aws" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q "$awscli"; }
rm -rf "$work"; mkdir -p "$work"
scripts/garage-node.sh start "$work/garage" bench "${PORT:-23920}" > /dev/null
trap 'scripts/garage-node.sh stop "$work/garage"' EXIT
# shellcheck disable=SC1091
. "$work/garage/env"
export AWS_DEFAULT_REGION=$AWS_REGION AWS_CONFIG_FILE=$work/aws.cfg
cat > "$AWS_CONFIG_FILE" <<CFG
[default]
s3 =
  multipart_chunksize = 8MB
  multipart_threshold = 8MB
CFG
size=$(stat -c %s "$input")
cat "$input" > /dev/null
tv() {
  awk '/User time \(seconds\)|System time \(seconds\)/ {cpu+=$NF}
       /Maximum resident set size/ {rss=$NF/1024}
       /Elapsed \(wall clock\)/ {n=split($NF,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; w=s}
       END {printf "%.2f %.2f %.0f\n", w, cpu, rss}' "$1"
}
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $((size / 1048576)) MiB per upload"
echo
echo "| run | ours s | ours MB/s | ours CPU s | ours RSS MiB | aws s | aws MB/s | aws CPU s | aws RSS MiB | ratio |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for i in $(seq 1 "$runs"); do
  a=$work/a$i; id=20260101T00000${i}Z-xband
  mkdir -p "$a/passes/$id"
  ln "$(realpath "$input")" "$a/passes/$id/cadus.raw" 2>/dev/null || cp "$input" "$a/passes/$id/cadus.raw"
  printf '{"id": "%s", "input": "xband", "profile": "eos"}\n' "$id" > "$a/passes/$id/pass.json"
  cat > "$a.toml" <<TOML
[archive]
path = "$a"
store = "s3://bench/ours$i"
[archive.s3]
endpoint = "$S3_ENDPOINT"
region = "garage"
allow_http = true
TOML
  /usr/bin/time -v "$bin" archive migrate --config "$a.toml" --json > "$work/ours-$i.json" 2> "$work/ours-$i.time"
  /usr/bin/time -v "$venv/bin/aws" --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors \
    "$input" "s3://bench/aws$i/cadus.raw" 2> "$work/aws-$i.time"
  # Both objects hold the file's bytes (sizes from the store).
  for k in "ours$i/passes/$id/cadus.raw" "aws$i/cadus.raw"; do
    got=$("$venv/bin/aws" --endpoint-url "$S3_ENDPOINT" s3api head-object --bucket bench --key "$k" \
      --query ContentLength --output text)
    [ "$got" = "$size" ] || { echo "$k: $got bytes, expected $size" >&2; exit 1; }
  done
  read -r ow oc orss < <(tv "$work/ours-$i.time")
  read -r aw ac arss < <(tv "$work/aws-$i.time")
  echo "$ow $aw" >> "$work/walls"
  printf '| %d | %s | %.0f | %s | %s | %s | %.0f | %s | %s | %.2f× |\n' "$i" "$ow" \
    "$(echo "$size / $ow / 1000000" | bc -l)" "$oc" "$orss" "$aw" \
    "$(echo "$size / $aw / 1000000" | bc -l)" "$ac" "$arss" "$(echo "$aw / $ow" | bc -l)"
done
mo=$(cut -d' ' -f1 "$work/walls" | median); ma=$(cut -d' ' -f2 "$work/walls" | median)
printf '| **median** | %s | **%.0f** | | | %s | **%.0f** | | | **%.2f×** |\n' "$mo" \
  "$(echo "$size / $mo / 1000000" | bc -l)" "$ma" "$(echo "$size / $ma / 1000000" | bc -l)" \
  "$(echo "$ma / $mo" | bc -l)"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
