"""Build an offline mirror of STAC JSON schemas from PyPI distributions.

usage: build_schema_mirror.py DIST_DIR OUT_DIR

DIST_DIR holds (pip download):
  pystac_core-*.whl                     STAC 1.1.0 core + GeoJSON schemas
  pystac_ext_projection-*.tar.gz,       extension schemas, taken from the
  pystac_ext_file-*.tar.gz,             recorded HTTP responses (VCR cassettes)
  pystac_ext_view-*.tar.gz              in the sdists' tests/cassettes/
OUT_DIR/<host>/<path> mirrors https://<host>/<path>.
"""

import glob
import hashlib
import json
import os
import sys
import tarfile
import zipfile

import yaml

dist, out = sys.argv[1], sys.argv[2]
V = "v1.1.0"
written = {}


def put(url, data):
    assert url.startswith("https://")
    json.loads(data)  # must be JSON
    path = os.path.join(out, url[len("https://"):])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    written[url] = hashlib.sha256(data).hexdigest()


# 1. Core schemas from the pystac-core wheel (same URL map as
#    pystac.validation.local_validator.get_local_schema_cache).
whl = glob.glob(os.path.join(dist, "pystac_core-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    base = "pystac/validation/jsonschemas/"
    for n in ("item", "catalog", "collection"):
        put(f"https://schemas.stacspec.org/{V}/{n}-spec/json-schema/{n}.json",
            z.read(f"{base}stac-spec/{V}/{n}.json"))
    for n in ("bands", "basics", "common", "data-values", "datetime",
              "instrument", "licensing", "provider"):
        put(f"https://schemas.stacspec.org/{V}/item-spec/json-schema/{n}.json",
            z.read(f"{base}stac-spec/{V}/{n}.json"))
    for n in ("Feature", "Geometry"):
        put(f"https://geojson.org/schema/{n}.json", z.read(f"{base}geojson/{n}.json"))

# 2. Extension schemas from recorded 200 responses in the sdists' cassettes.
for sd in sorted(glob.glob(os.path.join(dist, "pystac_ext_*.tar.gz"))):
    with tarfile.open(sd) as t:
        for m in t.getmembers():
            if "/tests/cassettes/" not in m.name or not m.name.endswith(".yaml"):
                continue
            doc = yaml.safe_load(t.extractfile(m))
            for it in (doc or {}).get("interactions", []):
                url = it["request"]["uri"]
                resp = it["response"]
                if resp["status"]["code"] != 200 or not url.endswith(".json"):
                    continue
                if "stac-extensions.github.io" not in url and "proj.org" not in url:
                    continue
                body = resp["body"].get("string")
                if isinstance(body, str):
                    body = body.encode()
                if url not in written:
                    put(url, body)
# proj.org answers the v0.7 URL with a redirect to /en/latest/...; serve it directly.
alias = "https://proj.org/schemas/v0.7/projjson.schema.json"
latest = "https://proj.org/en/latest/schemas/v0.7/projjson.schema.json"
if latest in written and alias not in written:
    with open(os.path.join(out, latest[8:]), "rb") as f:
        put(alias, f.read())

# 3. JSON Schema draft-07 meta-schema (jsonschema-specifications wheel, a
#    dependency of jsonschema), referenced by the PROJJSON schema.
try:
    import jsonschema_specifications as js
    d7 = os.path.join(os.path.dirname(js.__file__), "schemas", "draft7", "metaschema.json")
    with open(d7, "rb") as f:
        put("https://json-schema.org/draft-07/schema", f.read())
except ImportError:
    pass

for url in sorted(written):
    print(written[url], url)
