"""What the WSGI layer (app.py) and the pages above it (dashboard, stats, handlers)
share: the answer that is not JSON, a constant-time compare, and the URL the
client used. A floor below all of them, so none has to import app.py.
"""

try:  # the C function behind hmac.compare_digest, without hmac's imports
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover
    from hmac import compare_digest


# Leading path segments the API also answers under, whichever server runs it, so a client's
# URL survives a move between servers: behind the shipped .htaccess CGI sees /<folder>/api/<route>
# as PATH_INFO /<route>, while a persistent server mounted at /<folder> (mod_wsgi, Passenger,
# gunicorn at /) sees /api/<route> or /cgi-bin/api.py/<route> as sent. No route starts with one.
MOUNTS = ("/api", "/cgi-bin/api.py")


def shift_mount(environ):
    """Move one leading MOUNTS segment from PATH_INFO to the end of SCRIPT_NAME (in place, as
    wsgiref.util.shift_path_info does: transport keeps its byte counts in this dict), so
    routes match and links, redirects and the OpenAPI `servers` keep the /api the client used."""
    path = environ.get("PATH_INFO", "")
    for mount in MOUNTS:
        if path == mount or path.startswith(mount + "/"):
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "").rstrip("/") + mount
            environ["PATH_INFO"] = path[len(mount):]
            return


def url_prefix(environ, tail):
    """The URL path in front of `tail` as the browser asked for it, safe to send back.

    Links and redirects keep the folder the browser used (REQUEST_URI minus
    `tail`, e.g. /<folder> in front of /dashboard behind the shipped .htaccess).
    That text comes from the request line, so it is cleaned before it goes into
    a Location header or a link: repeated slashes collapse (//host would be
    another site), dot segments resolve, and a path with a backslash, a control
    character or an encoded slash or backslash (%2F, %5C: no folder holds one)
    is not trusted at all. Then, or without REQUEST_URI (wsgiref, other servers),
    the prefix is SCRIPT_NAME, cleaned the same way. "" means the site's root.
    """
    from urllib.parse import quote, unquote

    raw = environ.get("REQUEST_URI", "").split("?", 1)[0]
    lowered = raw.lower()
    if raw and "%2f" not in lowered and "%5c" not in lowered:
        uri, info = _site_path(unquote(raw)), _site_path(tail)
        if uri is not None and info is not None:
            if info == "/":
                prefix = uri
            elif uri == info or uri.endswith(info):
                prefix = uri[:len(uri) - len(info)]
            else:
                prefix = None
            if prefix is not None:
                return quote(prefix.rstrip("/"), safe="/!$&'()*+,;=:@~")
    script = _site_path(unquote(environ.get("SCRIPT_NAME", ""))) or ""
    return quote(script.rstrip("/"), safe="/!$&'()*+,;=:@~")


def _site_path(path):
    """`path` as an absolute path on this site (one slash between segments, dot
    segments resolved), or None when it holds a backslash or a control character."""
    if "\\" in path or any(ord(c) < 32 or ord(c) == 127 for c in path):
        return None
    parts = []
    for segment in path.split("/"):
        if segment == "..":
            if parts:
                parts.pop()
        elif segment and segment != ".":
            parts.append(segment)
    return "/" + "/".join(parts)


class RawResponse:
    """An answer that is not the JSON envelope (HTML, CSS, Prometheus text): status,
    headers (its Content-Type and Cache-Control replace the JSON ones), body bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body
