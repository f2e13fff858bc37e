"""The WSGI application: request in, JSON envelope out.

This is the one place where exceptions become HTTP responses. A TaskqError
carries its own status and message; anything else is logged with its
traceback and answered with a generic 500, so SQL, paths and tracebacks never
reach a client.
"""

import json
import sys
import time

from . import errors, transport
from .router import FILES, PUBLIC, ROLE_GRANTS, ROUTE_ROLES, SELF_AUTHORIZED, Router
from .web import RawResponse, compare_digest, shift_mount  # noqa: F401 (RawResponse: handlers' answers)

STATUS_TEXT = {200: "OK", 201: "Created", 204: "No Content", 303: "See Other",
               304: "Not Modified", 400: "Bad Request",
               401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
               405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
               413: "Payload Too Large", 429: "Too Many Requests",
               500: "Internal Server Error", 503: "Service Unavailable"}

CORS_HEADERS = "Content-Type, Authorization, X-API-Key"

class Request:
    def __init__(self, environ, max_body_bytes):
        shift_mount(environ)
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO", "") or "/"
        self.max_body_bytes = max_body_bytes
        self._query = None

    def header(self, name):
        key = "HTTP_" + name.upper().replace("-", "_")
        if name.lower() == "content-type":
            key = "CONTENT_TYPE"
        return self.environ.get(key, "")

    @property
    def query(self):
        if self._query is None:
            from urllib.parse import parse_qsl

            from .validation import check_text

            try:
                pairs = parse_qsl(self.environ.get("QUERY_STRING", ""), keep_blank_values=True,
                                  errors="strict")
            except UnicodeDecodeError:
                raise errors.BadRequest("Query string is not UTF-8 once percent-decoded") from None
            self._query = {name: check_text(value, name, "Query parameter") for name, value in pairs}
        return self._query

    def content_length(self):
        return transport.declared_length(self.environ)

    def check_size(self):
        """413 from the declared length, before a byte of the body is read."""
        transport.check_size(self.environ, self.max_body_bytes)

    def json(self):
        """The body as a JSON object; 400 saying where parsing failed."""
        raw = transport.read_body(self.environ, self.max_body_bytes)
        if not raw.strip():
            raise errors.BadRequest("Request body is empty; a JSON object is expected")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise errors.BadRequest("Request body is not UTF-8 (byte %d)" % exc.start) from None
        from .validation import loads_body

        body = loads_body(text)
        if not isinstance(body, dict):
            raise errors.BadRequest("Request body must be a JSON object")
        return body


class Context:
    """What a handler gets: the request, the config, and a lazily opened store.

    With a pool (a persistent server) the store is a reused one, handed back
    after the request unless the request failed with a 5xx or a bug.
    """

    def __init__(self, request, config, pool=None):
        self.request = request
        self.config = config
        self.pool = pool
        self.key = None  # {id, name, role} of the API key from api_keys, when one was used
        self.locked = False  # no config file and not ./serve: only PUBLIC routes answer
        self.caller = None  # GET /health: the caller's role, "open", or None (anonymous)
        self.role = None  # the role _authorize let in: a ROLES name, or "open" (no keys at all)
        self.schema_budget = None  # [CPU seconds left] for validating params (schemas.py)
        self.started = time.monotonic()  # a keyed claim older than store.base.stale_claim refuses
        self._store = None

    @property
    def store(self):
        if self._store is None:
            if self.pool is not None:
                self._store = self.pool.take(self.config)
            else:
                from .store import open_store

                self._store = open_store(self.config)
            self._store.finished = 0
            self._store.started = self.started
        return self._store

    def finished(self):
        """Tasks this request finished (completed, failed, cancelled)."""
        return self._store.finished if self._store is not None else 0

    def close(self, failed=False):
        if self._store is not None:
            store, self._store = self._store, None
            if self.pool is not None and not failed:
                self.pool.give(store)
            else:
                store.close()


class StorePool:
    """Open stores of a persistent server (mod_wsgi, gunicorn, Passenger), reused across
    requests: one per request running at once, so one per thread in practice.

    A store idle for more than PING_AFTER seconds is pinged before reuse, and
    replaced when its connection is gone (server restart, wait_timeout). A
    request that fails with a 5xx closes its store instead of handing it back.
    """

    PING_AFTER = 1.0
    MAX_IDLE = 16

    def __init__(self):
        import threading

        self._idle = []  # (store, monotonic time it was handed back)
        self._lock = threading.Lock()

    def take(self, config):
        while True:
            with self._lock:
                if not self._idle:
                    break
                store, since = self._idle.pop()
            if time.monotonic() - since < self.PING_AFTER or store.alive():
                return store
            store.close()
        from .store import open_store

        return open_store(config)

    def give(self, store):
        with self._lock:
            if len(self._idle) < self.MAX_IDLE:
                self._idle.append((store, time.monotonic()))
                return
        store.close()

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for store, _ in idle:
            store.close()


def _json_bytes(payload):
    """Strict RFC 8259 JSON in UTF-8; a value JSON cannot carry (only rows
    stored before such input was refused hold one) goes through json_safe."""
    try:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        from .validation import json_safe

        return json.dumps(json_safe(payload), ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False).encode("utf-8")


def _handler(name):
    """The function behind a route: `name` in handlers, or `module.name` in
    that module of taskq (route families in their own modules, imported only
    when one of their routes is asked for)."""
    module, _, function = name.rpartition(".")
    if module:
        import importlib

        return getattr(importlib.import_module("." + module, __package__), function)
    from . import handlers

    return getattr(handlers, name)


class Application:
    """A WSGI callable; config is read once per process (once per request under CGI).

    allow_unconfigured: serve the embedded SQLite default, open to anyone, when no
    config file exists. False for every deployed entry point (cgi-bin/api.py,
    passenger_wsgi.py, mod_wsgi, gunicorn): there, no config.ini means the wizard
    has not run, and everything but PUBLIC answers 503 without opening a database.

    persistent: reuse database connections across requests (StorePool). "auto"
    (the module's `application`) means: unless the server says every process
    serves one request (`wsgi.run_once`, as CGI does). Nothing request-scoped
    lives on this object: it is shared by every thread of the process.
    """

    def __init__(self, config=None, config_path=None, persistent=False, allow_unconfigured=False):
        self._config = config
        self._config_path = config_path
        self.router = Router()
        self.persistent = persistent
        # With no config file the app is a fresh upload and answers 503 "not
        # installed"; only ./serve (taskq.devserver) opts into the open default.
        self.allow_unconfigured = allow_unconfigured
        self._pool = None

    @property
    def config(self):
        if self._config is None:
            from . import config as config_module

            self._config = config_module.load(self._config_path)
        return self._config

    def __call__(self, environ, start_response):
        status, headers, body = self.handle(environ)
        limit = self._config.api["max_body_bytes"] if self._config is not None else 1048576
        transport.discard_unread(environ, limit)  # else mod_cgid may lose the answer
        headers.append(("Content-Length", str(len(body))))
        start_response("%d %s" % (status, STATUS_TEXT.get(status, "Unknown")), headers)
        if environ.get("REQUEST_METHOD", "").upper() == "HEAD":
            return [b""]
        return [body]

    def handle(self, environ):
        """(status, headers, body bytes) for one request; never raises."""
        headers = [("Content-Type", "application/json; charset=utf-8"),
                   ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")]
        context = None
        failed = True
        try:
            config = self.config
            request = Request(environ, config.api["max_body_bytes"])
            cors = self._cors_headers(request, config)
            headers.extend(cors)
            if request.method == "OPTIONS":
                return self._preflight(request, headers)
            name, params = self.router.match(request.method, request.path)
            if name in FILES:  # /docs: HTML and its assets, no database, no key
                from . import docs_ui

                status, file_headers, body = getattr(docs_ui, FILES[name])(request, **params)
                return status, file_headers + cors, body
            locked = not config.installed and not self.allow_unconfigured
            if locked and name not in PUBLIC:
                raise errors.NotInstalled()
            context = Context(request, config, self._pool_for(environ))
            context.locked = locked
            if name == "health" and not locked:
                context.caller = self._soft_caller(request, config, context)
            elif name not in PUBLIC and not name.startswith(SELF_AUTHORIZED):
                self._authorize(request, config, context, name)
            request.check_size()
            answer = _handler(name)(context, **params)
            if isinstance(answer, RawResponse):  # the dashboard's pages and files, /metrics
                failed = answer.status >= 500
                headers[:] = [h for h in headers if h[0] not in ("Content-Type", "Cache-Control")]
                headers.extend(answer.headers)
                return answer.status, headers, answer.body
            status, message, data = answer[:3]
            if message is None:  # GET /openapi.json: the document itself
                payload = data
            else:
                payload = {"success": True, "message": message, "data": data}
                if len(answer) > 3:
                    payload.update(answer[3])
                payload["timestamp"] = int(time.time())
            failed = False
            if name not in PUBLIC and _lottery(config.retention["gc_probability"]
                                               * (1 + context.finished())):
                self._collect(context, environ)
        except errors.TaskqError as exc:
            status = exc.status
            failed = status >= 500
            headers.extend(exc.headers())
            payload = _error(exc.message, exc.summary)
            if exc.details is not None:
                payload["details"] = exc.details
            if status >= 500 and not isinstance(exc, errors.NotInstalled):  # not a fault: no log line per visit
                _log_error(self._config, environ, exc, traceback=False)
        except ImportError as exc:  # a package missing from lib/: name it (issue 3)
            status = 500
            payload = _error("Missing Python package: %s" % (exc.name or "unknown"))
            _log_error(self._config, environ, exc, traceback=True)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            status = 500
            payload = _error("Internal server error")
            _log_error(self._config, environ, exc, traceback=True)
        finally:
            if context is not None:
                try:
                    context.close(failed)
                except Exception as exc:  # noqa: BLE001
                    _log_error(self._config, environ, exc, traceback=True)
        return status, headers, _json_bytes(payload)

    def _pool_for(self, environ):
        if not self.persistent or (self.persistent == "auto" and environ.get("wsgi.run_once")):
            return None
        if self._pool is None:
            # two threads racing here may both make one: the loser's stores are
            # closed when it is collected, so nothing leaks but a connection
            self._pool = StorePool()
        return self._pool

    def close(self):
        """Close the pooled connections (a server shutting the app down)."""
        if self._pool is not None:
            self._pool.close()

    def _authorize(self, request, config, context, name):
        """Who may call route `name`: config.ini's api_key is an admin key
        (compared here, no query); a key from api_keys costs one unique-index
        lookup of its hash; with neither configured, the API stays open, except
        for making keys: a first key comes from the wizard or the shell."""
        role = self._caller(request, config, context)
        if role is None:
            if config.api["api_key"] or context.store.has_keys():
                raise errors.Unauthorized()
            if name == "admin.create_key":
                raise errors.Unauthorized(
                    "Creating an API key needs an admin key; make the first one with the "
                    "installer (install.py) or: python3 install.py --create-key NAME --role admin")
            context.role = "open"
            return
        context.role = role
        needed = ROUTE_ROLES.get(name, "admin")
        if needed not in ROLE_GRANTS.get(role, ()):
            raise errors.Forbidden(
                "This route needs the %s role (or admin); API key %r has the %s role"
                % (needed, context.key["name"], role))

    def _caller(self, request, config, context):
        """The role of the key the request sent ('admin' for config.ini's), or None
        when it sent none (or, with no keys at all, one nobody checks); 401 for a
        database-style key that is unknown or revoked."""
        expected = config.api["api_key"]
        given = request.header("X-API-Key")
        if not given:
            auth = request.header("Authorization")
            if auth[:7].lower() == "bearer ":
                given = auth[7:].strip()
        if not given:
            return None
        if expected and compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
            return "admin"
        from .hashing import KEY_PREFIX, api_key_hash

        if given.startswith(KEY_PREFIX):
            key = context.store.key_by_hash(api_key_hash(given))
            if key is None:
                raise errors.Unauthorized("Invalid or revoked API key")
            context.key = key
            return key["role"]
        if expected or context.store.has_keys():
            raise errors.Unauthorized()
        return None

    def _soft_caller(self, request, config, context):
        """For GET /health, which answers everyone: the caller's role, or None for an
        anonymous caller (a wrong key too) where keys exist; "open" where none do."""
        try:
            role = self._caller(request, config, context)
        except (errors.Unavailable, errors.Unauthorized):  # health itself reports an outage
            return None
        if role is None and not config.api["api_key"]:
            try:
                if not context.store.has_keys():
                    return "open"
            except errors.TaskqError:
                return None
        return role

    def _collect(self, context, environ):
        """One retention round (the lottery won); its failure never spoils the answer."""
        try:
            from .admin import collect

            collect(context)
        except Exception as exc:  # noqa: BLE001 - logged; the request already succeeded
            # a database that stops answering mid-batch is an outage, not a bug: no traceback
            _log_error(self._config, environ, exc, traceback=not isinstance(exc, errors.TaskqError))

    def _cors_headers(self, request, config):
        origins = config.api["cors_origins"]
        origin = request.header("Origin")
        if not origins or not origin:
            return []
        if "*" in origins:
            return [("Access-Control-Allow-Origin", "*")]
        if origin in origins:
            return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]
        return []

    def _preflight(self, request, headers):
        allowed = self.router.allowed_methods(request.path)
        if not allowed:
            raise errors.NotFound("Route not found: OPTIONS %s" % request.path)
        methods = ", ".join(sorted(allowed | {"OPTIONS"}))
        headers.append(("Allow", methods))
        if any(name == "Access-Control-Allow-Origin" for name, _ in headers):
            headers.extend([("Access-Control-Allow-Methods", methods),
                            ("Access-Control-Allow-Headers", CORS_HEADERS),
                            ("Access-Control-Max-Age", "600")])
        return 204, headers, b""


def _lottery(probability):
    """True for about `probability` of calls (always from 1 up); os.urandom,
    because importing random costs a CGI request about 2 ms. A request's
    ticket is gc_probability times one plus the tasks it finished, so retention
    deletes in step with what finishes, however many tasks a request carries."""
    if probability <= 0:
        return False
    if probability >= 1:
        return True
    import os

    return int.from_bytes(os.urandom(4), "big") < probability * 4294967296.0


def _error(text, summary=None):
    """An error envelope: the text in `error`, and in `message` too unless TaskManager
    words the case its own way (`summary`): its clients read either."""
    return {"success": False, "error": text, "message": summary or text,
            "timestamp": int(time.time())}


def _log_error(config, environ, exc, traceback):
    try:
        from .log import log_exception

        log_exception(config, environ, exc, traceback)
    except Exception:  # noqa: BLE001 - logging must never break a response
        print("taskq: %r" % (exc,), file=sys.stderr)


application = Application(persistent="auto")
