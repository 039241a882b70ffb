"""Serve well-known JSON-schema URLs from a local mirror directory.

Loaded at interpreter start through a .pth file in the validator venv.
Active only when STAC_SCHEMA_DIR is set: one or more mirror directories separated
by ':', searched in order.  A URL https://HOST/PATH is answered from DIR/HOST/PATH
for the hosts listed below (requests and urllib).  A schema in none of them is a
404 (the validation fails): there is no accept-all stand-in.
"""

import io
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
ROOTS = [d for d in os.environ.get("STAC_SCHEMA_DIR", "").split(os.pathsep) if d]


def _lookup(url):
    """Return (status, bytes) for a mapped URL, or None if not mapped."""
    p = urllib.parse.urlsplit(url)
    if p.scheme not in ("http", "https") or p.hostname not in HOSTS:
        return None
    for root in ROOTS:
        path = os.path.normpath(os.path.join(root, p.hostname, p.path.lstrip("/")))
        if not path.startswith(os.path.normpath(root) + os.sep):
            return 404, b"{}"
        if os.path.isfile(path):
            with open(path, "rb") as f:
                return 200, f.read()
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


if ROOTS:
    _install()
