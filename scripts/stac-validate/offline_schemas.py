"""Serve well-known JSON-schema URLs from a local mirror directory.

Loaded at interpreter start through a .pth file in the validator venv.
Active only when STAC_SCHEMA_DIR is set.  A URL https://HOST/PATH is answered
from $STAC_SCHEMA_DIR/HOST/PATH for the hosts listed below (requests and
urllib).  A missing file is a 404, unless its URL is listed (comma-separated) in
STAC_SCHEMA_STUB, in which case an accept-all schema is returned and the URL is
logged to stderr: only schemas known to be unobtainable offline are excused.
"""

import io
import json
import os
import sys
import urllib.parse
import urllib.request
import urllib.response
from email.message import Message

HOSTS = {
    "schemas.stacspec.org",
    "stac-extensions.github.io",
    "geojson.org",
    "proj.org",
    "json-schema.org",
    "api.stacspec.org",
}
ROOT = os.environ.get("STAC_SCHEMA_DIR")
STUB = {u.strip() for u in os.environ.get("STAC_SCHEMA_STUB", "").split(",") if u.strip()}
_stubbed = set()


def _lookup(url):
    """Return (status, bytes) for a mapped URL, or None if not mapped."""
    p = urllib.parse.urlsplit(url)
    if p.scheme not in ("http", "https") or p.hostname not in HOSTS:
        return None
    path = os.path.normpath(os.path.join(ROOT, p.hostname, p.path.lstrip("/")))
    if not path.startswith(os.path.normpath(ROOT) + os.sep):
        return 404, b"{}"
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return 200, f.read()
    if url.split("#")[0] in STUB:
        if url not in _stubbed:
            _stubbed.add(url)
            print(f"offline_schemas: WARNING no local copy of {url}; "
                  "using an accept-all schema", file=sys.stderr)
        return 200, json.dumps({"$id": url.split("#")[0]}).encode()
    print(f"offline_schemas: no local copy of {url}", file=sys.stderr)
    return 404, b'{"error": "not available offline"}'


def _install():
    # urllib: a handler that runs before the network handlers.
    class LocalHandler(urllib.request.BaseHandler):
        handler_order = 100

        def _open(self, req):
            hit = _lookup(req.full_url)
            if hit is None:
                return None
            status, body = hit
            hdrs = Message()
            hdrs["Content-Type"] = "application/json"
            resp = urllib.response.addinfourl(io.BytesIO(body), hdrs,
                                              req.full_url, status)
            if status != 200:
                raise urllib.error.HTTPError(req.full_url, status, "offline",
                                             hdrs, io.BytesIO(body))
            return resp

        http_open = _open
        https_open = _open

    orig_build = urllib.request.build_opener

    def build_opener(*handlers):
        return orig_build(LocalHandler, *handlers)

    urllib.request.build_opener = build_opener
    urllib.request.install_opener(build_opener())

    # requests: short-circuit the transport adapter.
    try:
        import requests
        import requests.adapters
    except ImportError:
        return
    orig_send = requests.adapters.HTTPAdapter.send

    def send(self, request, *args, **kwargs):
        hit = _lookup(request.url)
        if hit is None:
            return orig_send(self, request, *args, **kwargs)
        status, body = hit
        r = requests.models.Response()
        r.status_code = status
        r._content = body
        r.headers["Content-Type"] = "application/json"
        r.url = request.url
        r.request = request
        r.encoding = "utf-8"
        r.reason = "OK" if status == 200 else "Not Found"
        return r

    requests.adapters.HTTPAdapter.send = send


if ROOT:
    _install()
