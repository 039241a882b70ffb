#!/usr/bin/env bash
# A throwaway single-node Garage (S3-compatible object store) on 127.0.0.1 for benchmarks, the
# shell twin of tests/common/garage.rs. Data, config, log and credentials live in DIR.
#
#   scripts/garage-node.sh start DIR BUCKET [S3_PORT=23900]   # prints the env to source
#   scripts/garage-node.sh stop DIR
#
# `start` makes a fresh node (DIR's meta/ and data/ are removed) and writes DIR/env: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION=garage,
# S3_ENDPOINT=http://127.0.0.1:S3_PORT, BUCKET. The RPC and admin ports are S3_PORT+1 and +2.
# The binary is $GARAGE, else ~/.cargo/bin/garage (`make test-deps` installs it).
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?DIR}
garage=${GARAGE:-$HOME/.cargo/bin/garage}
g() { "$garage" -c "$dir/garage.toml" "$@"; }
case "$cmd" in
start)
  bucket=${3:?BUCKET}; s3=${4:-23900}; rpc=$((s3 + 1)); admin=$((s3 + 2))
  [ -x "$garage" ] || { echo "no $garage: make test-deps" >&2; exit 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  rm -rf "$dir/meta" "$dir/data"   # a fresh node every time
  cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"

[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
  RUST_LOG=garage=warn nohup "$garage" -c "$dir/garage.toml" server > "$dir/garage.log" 2>&1 &
  echo $! > "$dir/garage.pid"
  for _ in $(seq 100); do g status > /dev/null 2>&1 && break; sleep 0.3; done
  if grep -q "Address already in use" "$dir/garage.log"; then
    echo "a port of $s3..$admin is taken:" >&2; tail -3 "$dir/garage.log" >&2
    kill "$(cat "$dir/garage.pid")"; exit 1
  fi
  id=$(g node id -q | cut -d@ -f1)
  g layout assign -z dc1 -c 10G "$id" > /dev/null
  g layout apply --version 1 > /dev/null
  g bucket create "$bucket" > /dev/null
  key=$(g key create bench)
  g bucket allow --read --write --owner "$bucket" --key bench > /dev/null
  cat > "$dir/env" <<ENV
export AWS_ACCESS_KEY_ID=$(echo "$key" | awk '/Key ID:/ {print $NF}')
export AWS_SECRET_ACCESS_KEY=$(echo "$key" | awk '/Secret key:/ {print $NF}')
export AWS_REGION=garage
export S3_ENDPOINT=http://127.0.0.1:$s3
export BUCKET=$bucket
ENV
  cat "$dir/env"
  ;;
stop)
  [ -f "$dir/garage.pid" ] && kill "$(cat "$dir/garage.pid")" 2>/dev/null || true
  rm -f "$dir/garage.pid"
  ;;
*) echo "usage: $0 start DIR BUCKET [S3_PORT] | stop DIR" >&2; exit 2 ;;
esac
