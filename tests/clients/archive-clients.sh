#!/usr/bin/env bash
# Load the station's STAC items with odc-stac and stackstac (archive_clients.py).
#
# usage: archive-clients.sh BUILD_DIR STAC_ROOT MURI_COLLECTION MURI_DIR PASS_COLLECTION PASS_ID
#   BUILD_DIR  the venv lives here (reused while requirements-archive.txt is unchanged)
# Needs only PyPI (pinned versions in requirements-archive.txt).
set -euo pipefail
BUILD=${1:?usage: archive-clients.sh BUILD_DIR STAC_ROOT MURI_COLLECTION MURI_DIR PASS_COLLECTION PASS_ID}
shift
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
REQ=$HERE/requirements-archive.txt
mkdir -p "$BUILD"
VENV=$BUILD/venv
STAMP=$VENV/.requirements-archive.sha256
if [ ! -f "$STAMP" ] || ! sha256sum --quiet -c "$STAMP" >/dev/null 2>&1; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  sha256sum "$REQ" > "$STAMP"
fi
# No GDAL .aux.xml files next to what is read; HTTP reads of the assets only.
export GDAL_PAM_ENABLED=NO GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR
exec "$VENV/bin/python" "$HERE/archive_clients.py" "$@"
