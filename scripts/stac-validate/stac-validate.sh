#!/usr/bin/env bash
# Run stac-api-validator and stac-validator against a STAC API, offline.
#
# usage: stac-validate.sh BUILD_DIR ROOT_URL [COLLECTION_ID]
#   BUILD_DIR   venv, downloaded distributions and the schema mirror live here (reused)
#   ROOT_URL    e.g. http://127.0.0.1:8080/stac
#
# Needs only PyPI.  The JSON schemas normally fetched from schemas.stacspec.org,
# stac-extensions.github.io, geojson.org and proj.org are served from BUILD_DIR/schemas,
# built from pinned PyPI distributions (see build_schema_mirror.py), through a small
# import hook (offline_schemas.py, loaded by a .pth file) that answers those URLs
# for requests and urllib, together with the schemas in no registry package (the eo v2.0.0
# schema), read from the shared test data: ../shared/data/schemas beside the repository, or
# $STAC_SHARED_SCHEMAS.  A schema URL with no local copy is a 404: the validation fails.
# Besides core, features and item search, the Filter (CQL2 text and JSON) and Sort extensions
# are validated, and the Fields extension when $STAC_FIELDS_PROPERTY names a property the
# newest item of COLLECTION_ID has (e.g. properties.proj:code).
# Exit status: 0 when both validators pass, 1 otherwise.
set -euo pipefail

BUILD=${1:?usage: stac-validate.sh BUILD_DIR ROOT_URL [COLLECTION_ID]}
ROOT=${2:?usage: stac-validate.sh BUILD_DIR ROOT_URL [COLLECTION_ID]}
ROOT=${ROOT%/}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}

# Pinned tools (PyPI).  stac-validator 4.1.2 and stac_valid 4.2.1 both install the
# module stac_validator; pin both so the result does not depend on install order.
PINS=(stac-api-validator==0.6.8 stac-validator==4.1.2 stac_valid==4.2.1 stac-check==1.12.0
      pystac==1.15.2 pystac-core==1.15.2 pystac-client==0.9.1 jsonschema==4.26.0
      referencing==0.37.0 requests==2.34.2 PyYAML==6.0.4)
# Schema sources (PyPI): see schema-dists.sha256 beside this script.

mkdir -p "$BUILD"
BUILD=$(cd "$BUILD" && pwd)
VENV=$BUILD/venv
if [ ! -x "$VENV/bin/stac-api-validator" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
  # Both write stac_validator/{__init__,stac_validator}.py: make stac-validator's copy win.
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall stac-validator==4.1.2
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cp "$HERE/offline_schemas.py" "$SITE/offline_schemas.py"
echo "import offline_schemas" > "$SITE/zz_offline_schemas.pth"

DIST=$BUILD/dists
if [ ! -f "$BUILD/schemas/.done" ]; then
  mkdir -p "$DIST"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$DIST" pystac-core==1.15.2
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$DIST" \
    pystac-ext-projection==2.0.1 pystac-ext-file==2.1.1 pystac-ext-view==1.0.1
  (cd "$DIST" && sha256sum -c --quiet "$HERE/schema-dists.sha256")
  rm -rf "$BUILD/schemas"
  "$VENV/bin/python" "$HERE/build_schema_mirror.py" "$DIST" "$BUILD/schemas" > "$BUILD/schemas.sha256"
  touch "$BUILD/schemas/.done"
fi
SHARED_SCHEMAS=${STAC_SHARED_SCHEMAS:-$HERE/../../../shared/data/schemas}
if [ ! -f "$SHARED_SCHEMAS/stac-extensions.github.io/eo/v2.0.0/schema.json" ]; then
  echo "stac-validate: no eo v2.0.0 schema under $SHARED_SCHEMAS (the shared test data)" >&2
  exit 1
fi
SHARED_SCHEMAS=$(cd "$SHARED_SCHEMAS" && pwd)
export STAC_SCHEMA_DIR=$BUILD/schemas:$SHARED_SCHEMAS

OUT=$BUILD/out
rm -rf "$OUT"; mkdir -p "$OUT"
fail=0

# Pick the collection with the most items (the pagination checks page with limit=1, so
# they need at least 2 items), and the geometry of one of its items.
COLL=${3:-$("$VENV/bin/python" - "$ROOT" <<'EOF'
import json, sys, urllib.request
root = sys.argv[1]
get = lambda u: json.load(urllib.request.urlopen(u))
ids = [c["id"] for c in get(root + "/collections")["collections"]]
print(max(ids, key=lambda c: get(f"{root}/collections/{c}/items?limit=1").get("numberMatched", 0)))
EOF
)}
GEOM=$(curl -fsS "$ROOT/collections/$COLL/items?limit=1" \
  | "$VENV/bin/python" -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["features"][0]["geometry"]))')

echo "== stac-api-validator $ROOT (collection $COLL)"
if ! "$VENV/bin/stac-api-validator" --root-url "$ROOT" \
     --conformance core --conformance features --conformance item-search \
     --conformance filter --conformance item-search#sort \
     ${STAC_FIELDS_PROPERTY:+--conformance item-search#fields --fields-nested-property "$STAC_FIELDS_PROPERTY"} \
     --collection "$COLL" --geometry "$GEOM" --validate-pagination 2>&1 | tee "$OUT/stac-api-validator.log"; then
  fail=1
fi
# A crash inside it prints "Failed." but still exits 0 (click ignores the return value).
grep -q '^Failed\.' "$OUT/stac-api-validator.log" && fail=1
echo "== stac-validator (collections, up to 5 items each) and pystac validation"
"$VENV/bin/python" - "$ROOT" <<'EOF' 2>&1 | tee "$OUT/stac-validator.log" || fail=1
import json, sys, urllib.request
from stac_validator.validate import StacValidate
root = sys.argv[1]
get = lambda u: json.load(urllib.request.urlopen(u))
targets = []
for c in get(root + "/collections")["collections"]:
    targets.append(f"{root}/collections/{c['id']}")
    for f in get(f"{root}/collections/{c['id']}/items?limit=5")["features"]:
        targets.append(f"{root}/collections/{c['id']}/items/{f['id']}")
bad = 0
for t in targets:
    v = StacValidate(stac_file=t, links=True, assets=True)
    ok = v.run() and all(m.get("valid_stac") for m in v.message)
    bad += not ok
    print(("PASS " if ok else "FAIL ") + t)
    if not ok:
        print(json.dumps(v.message, indent=1))
# pystac (what stac-api-validator runs last, only when nothing else failed).
import pystac_client
try:
    cat = pystac_client.Client.open(root)
    cat.validate()
    for child in cat.get_children():
        child.validate()
    print("PASS pystac validation of the landing page and its children")
except Exception as e:
    bad += 1
    print(f"FAIL pystac validation: {e}")
print(f"stac-validator: {len(targets) + 1 - bad} passed, {bad} failed")
sys.exit(1 if bad else 0)
EOF
exit $fail
