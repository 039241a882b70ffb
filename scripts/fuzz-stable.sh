#!/usr/bin/env bash
# Coverage-guided fuzzing on the stable toolchain: libFuzzer via libfuzzer-sys, with the same
# sanitizer-coverage flags cargo-fuzz passes (minus -Zsanitizer, which needs nightly), plus
# --cfg fuzzing, debug assertions and overflow checks. Seeds are cut from ../shared/data at run
# time (never copied into the repository) and joined with the committed fuzz/corpus/.
#   scripts/fuzz-stable.sh [SECONDS_PER_TARGET=60] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"; shift || true
targets=("${@:-decoder sync mpdu space_packet reed_solomon frame_header soft}")
read -r -a targets <<< "${targets[*]}"
out="${FUZZ_DIR:-target/fuzz-stable}"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
triple="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --bins --manifest-path fuzz/Cargo.toml --target "$triple" --target-dir "$out/build"
OUT="$out" python3 - <<'PY'
import os
D = '../shared/data/'
r = lambda p: open(D + p, 'rb').read()
aqua = r('cadu/aqua.20241206T175646.dat'); npp = r('cadu/npp.20241206T173815.dat')
s7 = r('cadu/snpp_7cadus_2vcids.dat'); met = r('vcdu/meteor-m2/2022_12_20_20_25_30.vcdu')
viirs = r('packets/viirs/viirs_packets.dat')
seeds = {
    'sync': [bytes([0x3F]) + aqua[:16384], bytes([0x7F]) + s7, bytes([0x00]) + aqua[:4096]],
    'decoder': [bytes([1]) + npp[:65536], bytes([1 | 0x10]) + s7, bytes([4 | 0x20]) + met,
                bytes([1 | 0x30]) + viirs[:40000], bytes([0]) + aqua[:32768]],
    'space_packet': [r('packets/cygnss/CYGNSS_F7_L0_2022_086_10_15_V01_F__first101pkts.tlm'),
                     r('packets/europa-clipper/ecm_raw2.bin')[:20000]],
    'reed_solomon': [bytes([0x20]) + r('vectors/rs255_223_dualbasis_codeword.bin')],
    'frame_header': [bytes([1]) + met[:892], bytes([0x21]) + met[892:1784]],
    'mpdu': [],
    'soft': [bytes([0]) + r('soft/m2_72k_8bitsoft.s'), bytes([1 | 4]) + r('soft/m22_72k.hard'),
             bytes([2]) + r('soft/m22_80k_soft.s')[:200000]],
}
base = os.environ['OUT'] + '/corpus'
for t, l in seeds.items():
    os.makedirs(f'{base}/{t}', exist_ok=True)
    for i, s in enumerate(l):
        open(f'{base}/{t}/real{i}', 'wb').write(s)
PY
status=0
for t in "${targets[@]}"; do
  echo "== $t (${secs}s)"
  "$out/build/$triple/release/$t" "$out/corpus/$t" "fuzz/corpus/$t" -max_total_time="$secs" \
    -max_len=70000 -rss_limit_mb=3000 -artifact_prefix="$out/crash-$t-" 2>&1 | grep -E "^Done|ERROR|SUMMARY|panicked" || status=1
done
ls "$out"/crash-* 2>/dev/null && { echo "crashes found: add them to fuzz/corpus/<target>/ and fix"; exit 1; }
exit $status
