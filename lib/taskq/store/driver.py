"""PyMySQL, imported without `ssl` and `cryptography` until a connection needs them.

`pymysql.connections` imports `ssl` and `pymysql._auth` imports
`cryptography` at module level, each inside `try: ... except ImportError`.
On a system Python that ships cryptography (Debian, Ubuntu, CloudLinux) that
is ~60 ms of every CGI request, although a connection without TLS that
authenticates with mysql_native_password (or caching_sha2's fast path)
uses neither. So PyMySQL is imported with both names set to None in
sys.modules (the documented way to make an import fail), which sends PyMySQL
down its own "not installed" branches, and the names are removed again right
after. They load later, only when needed:

- `enable_tls()`: the config asks for TLS; called before connecting.
- `_auth.sha2_rsa_encrypt`: the server asked for RSA-based authentication
  (caching_sha2_password full authentication or sha256_password over a
  plain link); the wrapper reloads `pymysql._auth` with cryptography
  importable, and from then on PyMySQL runs exactly its own code.

A PyMySQL whose modules do not look like 1.0-1.2 (names checked below) gets
both modules back at once, so it works as if imported plainly.
"""

import importlib
import sys

DEFERRED = ("ssl", "cryptography")


def _import_without(names):
    """Import PyMySQL while `names` cannot be imported (those already loaded stay)."""
    blocked = [name for name in names if name not in sys.modules]
    # Another thread importing one of these names in this window would fail
    # too; taskq imports this module on a request's first database use, and
    # its other threads importing it wait on its module lock meanwhile.
    for name in blocked:
        sys.modules[name] = None
    try:
        import pymysql
        import pymysql._auth
        import pymysql.connections
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return pymysql


pymysql = _import_without(DEFERRED)
_auth = pymysql._auth
_connections = pymysql.connections


def enable_tls():
    """Give PyMySQL the ssl module (a config with TLS on)."""
    if getattr(_connections, "ssl", None) is None:
        _connections.ssl = importlib.import_module("ssl")
        _connections.SSL_ENABLED = True


def enable_rsa():
    """Reload pymysql._auth with cryptography importable (RSA-based authentication)."""
    if not getattr(_auth, "_have_cryptography", False):
        importlib.reload(_auth)


def _sha2_rsa_encrypt(password, salt, public_key):
    enable_rsa()
    return _auth.sha2_rsa_encrypt(password, salt, public_key)


if callable(getattr(_auth, "sha2_rsa_encrypt", None)) and hasattr(_auth, "_have_cryptography"):
    if not _auth._have_cryptography:
        _auth.sha2_rsa_encrypt = _sha2_rsa_encrypt
else:  # pragma: no cover - a PyMySQL laid out differently: plain behaviour
    enable_rsa()
    enable_tls()
if not hasattr(_connections, "SSL_ENABLED"):  # pragma: no cover - as above
    enable_tls()
