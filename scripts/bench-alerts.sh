#!/usr/bin/env bash
# Times `downlink alerts run` against a numpy/GDAL reference doing the same computation on the
# same pair, on a Sentinel-2-tile-sized grid (10980 × 10980, EPSG:32632, 10 m) and a long
# Meteor-pass-sized grid (16500 × 2700, EPSG:4326), both tiled from the real Muri pair in
# ../shared/data/change/muri-ag. Wall time and peak RSS from /usr/bin/time -v; runs alternate.
#
#   cargo build --release --bin downlink
#   RUNS=3 scripts/bench-alerts.sh [WORK_DIR]        # default WORK_DIR: /tmp/alertsbench
#
# Env: RUNS (3), CASES ("s2 meteor"), DOWNLINK (target/release/downlink or
# $CARGO_TARGET_DIR/release/downlink), CC ("gdal scipy": reference variants timed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=${1:-/tmp/alertsbench}
runs=${RUNS:-3}
cases=${CASES:-s2 meteor}
ccs=${CC:-gdal scipy}
bin=${DOWNLINK:-${CARGO_TARGET_DIR:-$root/target}/release/downlink}
py=/usr/bin/python3
muri=$root/../shared/data/change/muri-ag
old_src=$muri/S2_L2A_T32TMT_20200807_red_nir.tif
new_src=$muri/S2_L2A_T32TMT_20210812_red_nir.tif
[ -x "$bin" ] || { echo "no $bin: cargo build --release --bin downlink" >&2; exit 1; }
[ -f "$old_src" ] || { echo "missing $old_src" >&2; exit 1; }
$py -c "import numpy, osgeo.gdal" || { echo "needs python3-numpy python3-gdal" >&2; exit 1; }
mkdir -p "$work"

# Wall seconds, peak RSS (MiB), CPU seconds (user + sys) from a /usr/bin/time -v log.
tv() {
  awk '/Maximum resident set size/ {rss=$NF/1024}
       /User time \(seconds\)|System time \(seconds\)/ {cpu+=$NF}
       /Elapsed \(wall clock\)/ {n=split($NF,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; w=s}
       END {printf "%.2f %.0f %.2f\n", w, rss, cpu}' "$1"
}
# Median of field $2 over runs of log prefix $1.
med() { for i in $(seq 1 "$runs"); do tv "$1-$i.time" | cut -d' ' -f"$2"; done | median; }
median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

for c in $cases; do
  case $c in
    s2) dims="10980 10980 32632 10" ;;
    meteor) dims="16500 2700 4326 0.0001" ;;
    *) echo "unknown case $c" >&2; exit 1 ;;
  esac
  d=$work/$c
  if [ ! -f "$d/new.tif" ]; then
    echo "== $c: building the pair ($dims)"
    $py "$here/bench-alerts/make_tiles.py" "$d" $dims "$old_src" "$new_src"
  fi
  arch=$d/archive
  if [ ! -f "$arch/.imported" ]; then
    rm -rf "$arch"
    "$bin" archive add "$d/old.tif" --collection "bench-$c" --datetime 2020-08-07T10:30:00Z \
      --bands red,nir --archive "$arch" > /dev/null
    "$bin" archive add "$d/new.tif" --collection "bench-$c" --datetime 2021-08-12T10:30:00Z \
      --bands red,nir --archive "$arch" > /dev/null
    touch "$arch/.imported"
  fi
  read -r W H _ < <(gdalinfo "$d/new.tif" | awk '/^Size is/ {gsub(",","",$3); print $3, $4}')
  echo "== $c: ${W} × ${H}, $runs runs each; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  for i in $(seq 1 "$runs"); do
    /usr/bin/time -v -o "$d/ours-$i.time" "$bin" alerts run --collection "bench-$c" \
      --drop 0.3 --mmu-ha 0.5 --archive "$arch" > "$d/ours.geojson"
    for cc in $ccs; do
      /usr/bin/time -v -o "$d/ref-$cc-$i.time" $py "$here/bench-alerts/reference.py" \
        "$d/old.tif" "$d/new.tif" "$d/ref-$cc.geojson" --drop 0.3 --mmu-ha 0.5 --cc "$cc" \
        > "$d/ref-$cc.out" 2> /dev/null
    done
  done
  echo "   load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  ours_n=$($py -c "import json,sys; f=json.load(open(sys.argv[1]))['features']; print(len(f), round(sum(x['properties']['area_ha'] for x in f),2))" "$d/ours.geojson")
  ow=$(med "$d/ours" 1); orss=$(med "$d/ours" 2); ocpu=$(med "$d/ours" 3)
  printf '%-8s %-16s wall %7.2f s  cpu %7.2f s  peak RSS %6.0f MiB  alerts/ha %s\n' \
    "$c" "downlink" "$ow" "$ocpu" "$orss" "$ours_n"
  for cc in $ccs; do
    rw=$(med "$d/ref-$cc" 1); rrss=$(med "$d/ref-$cc" 2); rcpu=$(med "$d/ref-$cc" 3)
    refn=$($py -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['alerts'], r['area_ha'])" <(tail -1 "$d/ref-$cc.out"))
    printf '%-8s %-16s wall %7.2f s  cpu %7.2f s  peak RSS %6.0f MiB  alerts/ha %s  wall ratio ours/ref %.2f\n' \
      "$c" "numpy+gdal($cc)" "$rw" "$rcpu" "$rrss" "$refn" "$(echo "$ow / $rw" | bc -l)"
  done
done
