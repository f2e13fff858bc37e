"""GET /docs: interactive API documentation (Swagger UI) over /openapi.json.

The page and its assets are files in static/, served by the app itself, so
the docs work on a host with no internet access and need no API key to open
(try-it-out asks for one in its Authorize dialog). Only names listed in
ASSETS are served: a path never reaches the file system.
"""

import os

from .errors import NotFound

STATIC = os.path.join(os.path.dirname(__file__), "static")
SWAGGER_UI_VERSION = "5.35.0"  # static/swagger-ui/README.md says where it came from

# name under /docs/swagger-ui/ -> Content-Type
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "LICENSE": "text/plain; charset=utf-8",
    "NOTICE": "text/plain; charset=utf-8",
    "swagger-ui-bundle.js.LICENSE.txt": "text/plain; charset=utf-8",
}
# A day: the files change only with a new taskq (or Swagger UI) version, which
# changes the ETag, so a revalidation after a day costs a 304.
ASSET_CACHE = "public, max-age=86400"


def _read(*parts):
    with open(os.path.join(STATIC, *parts), "rb") as handle:
        return handle.read()


def _etag(name):
    from . import __version__

    return '"taskq-%s-swagger-ui-%s-%s"' % (__version__, SWAGGER_UI_VERSION, name)


# The page's one inline script, by its hash (tests/http/test_docs_ui.py recomputes it):
# no other script runs, nothing is framed, and only this site is fetched from.
SCRIPT_HASH = "sha256-N5wWm7mp+v1e5AEGkBXsLTgbZsshpsyRsQPRR1/5vGI="
CSP = ("default-src 'none'; script-src 'self' '%s'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'none'" % SCRIPT_HASH)


def page(request):
    """(status, headers, body) of the HTML page; revalidated on every load."""
    return 200, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-cache"),
                 ("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", CSP),
                 ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer")], _read("docs.html")


def asset(request, name):
    """(status, headers, body) of one vendored file, or NotFound for any other name."""
    content_type = ASSETS.get(name)
    if content_type is None:
        raise NotFound("Route not found: GET /docs/swagger-ui/%s" % name)
    etag = _etag(name)
    headers = [("Content-Type", content_type), ("Cache-Control", ASSET_CACHE), ("ETag", etag),
               ("X-Content-Type-Options", "nosniff")]
    if etag in [tag.strip() for tag in request.header("If-None-Match").split(",")]:
        return 304, headers, b""
    return 200, headers, _read("swagger-ui", name)
