"""The dashboard: server-rendered HTML pages under /dashboard, one CGI process each.

Log in with an admin API key; the browser then holds a session cookie
(HttpOnly, SameSite=Strict, Secure over HTTPS, with an expiry) whose token
the database knows only as a SHA-256. Every form carries the session's CSRF
token; wrong keys are counted per client address in the database and, past
a limit, answered 429 for a while, yet the right key always logs in. With no API key configured the dashboard
is read-only and says how to set one. Markup lives in templates/ (escaped by
default); every page is sent with a Content-Security-Policy that allows no
inline script.
"""

import os

from . import __version__
from .errors import BadRequest, Forbidden, NotFound, TaskqError

SESSION_COOKIE = "taskq_session"
LOGIN_COOKIE = "taskq_login"
SESSION_SECONDS = 8 * 3600
LOGIN_WINDOW_SECONDS = 15 * 60
LOGIN_MAX_FAILURES = 5
PAGE_SIZE = 50
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
                ("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"),
                ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin")]
from .validation import TASK_STATUSES as STATUSES  # noqa: E402

NAV = (("overview", "", "Overview"), ("tasks", "/tasks", "Tasks"), ("failed", "/failed", "Failed"),
       ("types", "/types", "Types"), ("schedules", "/schedules", "Schedules"), ("keys", "/keys", "Keys"),
       ("health", "/health", "Health"))


# -- plumbing ------------------------------------------------------------------
def _raw(status, headers, body):
    from .web import RawResponse

    return RawResponse(status, headers, body)


def base_url(environ):
    """The URL prefix in front of /dashboard as the browser sees it, safe for
    links and Location headers (web.url_prefix: never another host).

    Behind the shipped .htaccess the browser asked for /<folder>/dashboard/...
    while the script is /<folder>/cgi-bin/api.py: REQUEST_URI minus PATH_INFO
    gives the prefix the links must keep. Without REQUEST_URI (wsgiref, other
    servers) SCRIPT_NAME is the prefix.
    """
    from .web import url_prefix

    return url_prefix(environ, environ.get("PATH_INFO", ""))


def _is_https(environ):
    return (environ.get("HTTPS", "").lower() in ("on", "1")
            or environ.get("wsgi.url_scheme") == "https"
            or environ.get("HTTP_X_FORWARDED_PROTO", "").lower() == "https")


def _cookies(environ):
    out = {}
    for part in environ.get("HTTP_COOKIE", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name not in out:
            out[name] = value
    return out


def _cookie(environ, name, value, max_age):
    path = (base_url(environ) or "") + "/dashboard"
    parts = ["%s=%s" % (name, value), "Path=%s" % path, "HttpOnly", "SameSite=Strict",
             "Max-Age=%d" % max_age]
    if _is_https(environ):
        parts.append("Secure")
    return ("Set-Cookie", "; ".join(parts))


def _hash(token):
    """The SHA-256 a session is kept under: the database never holds a usable cookie."""
    from .hashing import sha256_hex

    return sha256_hex(token)


def _new_token():
    import secrets

    return secrets.token_urlsafe(32)


def _same(given, expected):
    from .web import compare_digest

    return bool(given) and bool(expected) and compare_digest(given.encode("utf-8", "replace"),
                                                              expected.encode("utf-8", "replace"))


def _form_pairs(request):
    """The (name, value) pairs of an HTML form post (urlencoded), read once per request."""
    pairs = getattr(request, "_form_pairs", None)
    if pairs is None:
        from urllib.parse import parse_qsl

        from .transport import read_body

        raw = read_body(request.environ, request.max_body_bytes)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("The form is not UTF-8") from None
        pairs = request._form_pairs = parse_qsl(text, keep_blank_values=True)
    return pairs


def _form(request):
    """The form as a dict (the first value of each name)."""
    out = {}
    for name, value in _form_pairs(request):
        out.setdefault(name, value)
    return out


class Session:
    """Who is looking: logged in (with a CSRF token), or read-only without a key."""

    def __init__(self, row=None, read_only=False):
        self.row = row
        self.read_only = read_only
        self.csrf = row["csrf_token"] if row else ""

    @property
    def can_act(self):
        return self.row is not None


def _admin_keys(config):
    """(ref, key) for each key that may log in: today the config's api_key.

    A session remembers the ref, which carries a hash of the key, so a new
    key in config.ini ends every session made with the old one."""
    key = config.api["api_key"]
    return [("config:" + _hash(key)[:16], key)] if key else []


def _session(ctx):
    """The caller's session, or None when they must log in first.

    A session names the key it was made with: config.ini's key by a hash of
    it, an admin key of api_keys by its hash there. Changing the config key,
    revoking the key or taking its admin role ends the session."""
    if not _admin_keys(ctx.config) and not _has_db_keys(ctx):
        return Session(read_only=True)
    token = _cookies(ctx.request.environ).get(SESSION_COOKIE)
    if not token or len(token) > 100:
        return None
    row = ctx.store.get_session(_hash(token))
    if row is None:
        return None
    ref = row["key_ref"]
    if ref.startswith("config:"):
        if ref not in dict(_admin_keys(ctx.config)):
            return None
    else:
        key = ctx.store.key_by_hash(ref)
        if key is None or key["role"] != "admin":
            return None
    return Session(row)


def _has_db_keys(ctx):
    return ctx.store.has_keys()


def _key_ref(ctx, given):
    """The session's key_ref for an admin key, or None for any other key."""
    ref = next((ref for ref, key in _admin_keys(ctx.config) if _same(given, key)), None)
    from .hashing import KEY_PREFIX, api_key_hash

    if ref is None and given.startswith(KEY_PREFIX):
        key_hash = api_key_hash(given)
        key = ctx.store.key_by_hash(key_hash)
        if key is not None and key["role"] == "admin":
            ref = key_hash
    return ref


def _redirect(ctx, where, extra_headers=()):
    location = base_url(ctx.request.environ) + "/dashboard" + where
    return _raw(303, [("Location", location), ("Cache-Control", "no-store"),
                      ("Content-Type", "text/html; charset=utf-8")] + list(extra_headers),
                b"")


def _page(ctx, template, title, session, status=200, active="", extra_headers=(), **scope):
    from .templates import render

    base = base_url(ctx.request.environ) + "/dashboard"
    body = render(template, base=base, session=session, **scope)
    nav = [{"href": base + path, "label": label, "on": key == active} for key, path, label in NAV]
    html = render("layout.html", title=title, body=body, base=base, nav=nav, session=session,
                  version=__version__, refresh=scope.get("refresh"), notice=scope.get("notice"))
    return _raw(status, PAGE_HEADERS + list(extra_headers), html.encode("utf-8"))


def _guarded(page):
    """Render `page(ctx, session, ...)` for a logged-in (or read-only) visitor;
    others go to the login form. A TaskqError becomes an error page, not JSON."""
    def wrapper(ctx, **params):
        session = None
        try:
            session = _session(ctx)
            if session is None:
                if ctx.request.method in ("GET", "HEAD"):
                    return _redirect(ctx, "/login")
                raise Forbidden("Your session has ended: log in again")
            return page(ctx, session, **params)
        except TaskqError as exc:
            return _error_page(ctx, exc, session)

    wrapper.__name__ = page.__name__
    wrapper.__doc__ = page.__doc__
    return wrapper


def _error_page(ctx, exc, session=None):
    """The error as a page that tells the truth about who is looking: the navigation
    for a session, the read-only banner only when no key is configured, else neither."""
    if session is None:
        try:
            session = _session(ctx)
        except TaskqError:  # e.g. the database is the error: show no navigation
            session = None
    return _page(ctx, "error.html", "Error %d" % exc.status, session,
                 status=exc.status, extra_headers=exc.headers(), message=exc.message)


# -- login and logout ----------------------------------------------------------
def login_form(ctx, error=None, status=200, extra_headers=()):
    """The login page; a fresh token in a cookie and in the form guards it against CSRF."""
    if not _admin_keys(ctx.config) and not _has_db_keys(ctx):
        return _redirect(ctx, "")
    token = _new_token()
    headers = [_cookie(ctx.request.environ, LOGIN_COOKIE, token, 3600)] + list(extra_headers)
    return _page(ctx, "login.html", "Log in", None, status=status, extra_headers=headers,
                 csrf=token, error=error)


def login(ctx):
    """Log in with an admin key. The key is checked before the throttle: the right key
    always logs in, so guessers sharing the owner's address (a proxy, a NAT) cannot
    lock the owner out. Wrong keys are what is throttled: each costs half a second,
    and past LOGIN_MAX_FAILURES in the window an address's wrong keys get 429. What
    makes guessing hopeless is the keys' length (256 random bits), not this count."""
    environ = ctx.request.environ
    address = (environ.get("REMOTE_ADDR") or "unknown")[:64]
    try:
        form = _form(ctx.request)
        if not _same(form.get("csrf", ""), _cookies(environ).get(LOGIN_COOKIE, "")):
            raise Forbidden("The login form expired: reload the page and try again")
        if not _admin_keys(ctx.config) and not _has_db_keys(ctx):
            return _redirect(ctx, "")
        given = form.get("key", "").strip()
        ref = _key_ref(ctx, given) if given else None
        if ref is not None:
            token = _new_token()
            ctx.store.create_session(_hash(token), _new_token(), ref, SESSION_SECONDS)
            return _redirect(ctx, "", [_cookie(environ, SESSION_COOKIE, token, SESSION_SECONDS),
                                       _cookie(environ, LOGIN_COOKIE, "", 0)])
        import time

        time.sleep(0.5)  # every wrong guess costs the guesser, too
        if ctx.store.login_failures(address, LOGIN_WINDOW_SECONDS) >= LOGIN_MAX_FAILURES:
            return login_form(ctx, error="That key is not an admin key. Too many wrong keys came "
                                         "from your address lately, so they are refused for up "
                                         "to %d minutes; the right key still logs in."
                                         % (LOGIN_WINDOW_SECONDS // 60), status=429,
                              extra_headers=[("Retry-After", str(LOGIN_WINDOW_SECONDS))])
        ctx.store.record_login_failure(address, LOGIN_WINDOW_SECONDS)
        return login_form(ctx, error="That key is not an admin key.", status=401)
    except TaskqError as exc:
        return _error_page(ctx, exc)


def logout(ctx):
    try:
        session = _session(ctx)
        if session is not None and session.can_act:
            form = _form(ctx.request)
            if not _same(form.get("csrf", ""), session.csrf):
                raise Forbidden("Invalid CSRF token: reload the page and try again")
            ctx.store.delete_session(session.row["token_hash"])
        return _redirect(ctx, "/login", [_cookie(ctx.request.environ, SESSION_COOKIE, "", 0)])
    except TaskqError as exc:
        return _error_page(ctx, exc)


# -- pages ---------------------------------------------------------------------
def _from_now(iso_text):
    """Seconds from now to an ISO-8601 UTC time (negative: past) by this host's clock, or None."""
    import calendar
    import time

    try:
        return calendar.timegm(time.strptime(iso_text, "%Y-%m-%dT%H:%M:%SZ")) - time.time()
    except (TypeError, ValueError):
        return None


def _age(iso_text):
    """'3 min' for an ISO-8601 UTC time in the past."""
    left = _from_now(iso_text)
    return None if left is None else _seconds(max(0, -left))


CHART = {"width": 720, "height": 160, "bottom": 140, "slot": 30}


def hourly_chart(current_hour, rows, hours=24):
    """Bars for the overview's SVG chart (pure): completed and failed attempts per hour,
    oldest hour first, scaled to the tallest; retries count as failed attempts."""
    counts = {}
    for hour, outcome, n in rows:
        key = "completed" if outcome == "completed" else "failed"
        counts[(hour, key)] = counts.get((hour, key), 0) + n
    first = current_hour - hours + 1
    tallest = max([1] + [n for (hour, _), n in counts.items() if hour >= first])
    scale = (CHART["bottom"] - 10) / float(tallest)
    bars = []
    for index in range(hours):
        hour = first + index
        done, failed = counts.get((hour, "completed"), 0), counts.get((hour, "failed"), 0)
        x = index * CHART["slot"]
        bars.append({"hour": "%02d:00" % (hour % 24), "completed": done, "failed": failed,
                     "x_done": x + 4, "x_failed": x + 15,
                     "h_done": round(done * scale, 1), "h_failed": round(failed * scale, 1),
                     "y_done": round(CHART["bottom"] - done * scale, 1),
                     "y_failed": round(CHART["bottom"] - failed * scale, 1),
                     "label": index % 3 == 0, "x_label": x + 2})
    return {"bars": bars, "tallest": tallest, "total_done": sum(b["completed"] for b in bars),
            "total_failed": sum(b["failed"] for b in bars)}


@_guarded
def overview(ctx, session):
    from .stats import figures

    numbers = figures(ctx.store.stats())
    types = [{"name": name, "counts": [entry["counts"].get(s, 0) for s in STATUSES]}
             for name, entry in sorted(numbers["types"].items())
             if any(entry["counts"].values())]
    workers = seen_workers(ctx.store.claimed_tasks(200),
                           ctx.store.recent_finishers(WORKERS_WINDOW, WORKERS_SCAN, 50))
    oldest = numbers["oldest_pending_age_seconds"]
    return _page(ctx, "overview.html", "Overview", session, active="overview",
                 statuses=STATUSES, types=types, chart=hourly_chart(*ctx.store.hourly_runs()),
                 tiles=[{"name": name, "count": numbers["counts"].get(name, 0)} for name in STATUSES],
                 oldest_age=None if oldest is None else _seconds(oldest), refresh=15,
                 last_hour=numbers["last_hour"], workers=workers, workers_scan=WORKERS_SCAN)


WORKERS_WINDOW = 3600  # "seen recently": held a task, or finished one, in the last hour
WORKERS_SCAN = 1000   # finished tasks read per status for it, newest first


def seen_workers(leases, finishers):
    """Workers for the overview (pure): each with the tasks it holds now and when it was
    last seen (a heartbeat or claim of a held task, or its latest finished task), latest first."""
    workers = {}
    for lease in leases:
        worker = workers.setdefault(lease["claimed_by"], {"id": lease["claimed_by"], "tasks": [],
                                                          "finished": 0, "seen": lease["updated_at"]})
        worker["tasks"].append(lease)
        worker["seen"] = max(worker["seen"], lease["updated_at"])
    for row in finishers:
        worker = workers.setdefault(row["worker"], {"id": row["worker"], "tasks": [], "finished": 0,
                                                    "seen": row["last_at"]})
        worker["finished"] = row["finished"]
        worker["seen"] = max(worker["seen"], row["last_at"])
    for worker in workers.values():
        worker["seen_ago"] = _age(worker["seen"])
    return sorted(workers.values(), key=lambda w: (w["seen"], w["id"]), reverse=True)


def _seconds(seconds):
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return "%d %s" % (seconds // size, unit)
    return "%d s" % seconds


# The tasks page's orders: (label, sort_by, sort_order) by the value its select sends.
SORTS = (("", "Newest first", None, None), ("oldest", "Oldest first", "id", "ASC"),
         ("priority", "Highest priority first", "priority", "DESC"),
         ("priority-low", "Lowest priority first", "priority", "ASC"),
         ("attempts", "Most attempts first", "attempts", "DESC"),
         ("updated", "Recently updated first", "updated_at", "DESC"),
         ("updated-old", "Least recently updated first", "updated_at", "ASC"))


AGE_LABELS = {"older": "Created more than", "newer": "Created less than"}  # the form's labels


def task_filters(query):
    """The tasks page's form as GET /tasks' query (pure): {status, type, error, older,
    newer (durations such as 2h), sort} -> (status, type, API query for list_query)."""
    from . import validation as v

    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest("Unknown status: choose one of %s" % ", ".join(STATUSES))
    type_filter = v.like_pattern(query.get("type") or None, "type", "Filter")
    api = {"error_contains": query.get("error", "").strip()}
    for name, key in (("older", "older_than_seconds"), ("newer", "newer_than_seconds")):
        if query.get(name, "").strip():
            api[key] = str(v.duration(query[name], AGE_LABELS[name]))
    sort = next((entry for entry in SORTS if entry[0] == query.get("sort", "")), None)
    if sort is None:
        raise BadRequest("Unknown order: choose one of %s" % ", ".join(e[1] for e in SORTS))
    api["sort_by"], api["sort_order"] = sort[2], sort[3]
    return status, type_filter, {k: value for k, value in api.items() if value}


@_guarded
def tasks(ctx, session):
    from . import validation as v
    from .handlers import list_query

    query = ctx.request.query
    status, type_filter, api_query = task_filters(query)
    filters, order = list_query(api_query)
    page = v.query_int(query, "page", 1, 1, 10 ** 9)
    rows, total = ctx.store.list_tasks(status, type_filter, PAGE_SIZE, (page - 1) * PAGE_SIZE,
                                       filters, order)
    pages = max(1, -(-total // PAGE_SIZE))
    form = {name: query.get(name, "").strip() for name in ("error", "older", "newer", "sort")}
    link = _query_link(status=status, type=type_filter, **form)
    return _page(ctx, "tasks.html", "Tasks", session, active="tasks", tasks=rows, total=total,
                 notice=_notice(query), back=link, actions=TASK_ACTIONS,
                 page=page, pages=pages, statuses=STATUSES, filter_status=status, filter_type=type_filter,
                 form=form, sorts=[{"value": e[0], "label": e[1]} for e in SORTS],
                 filtered=bool(status or type_filter or form["error"] or form["older"] or form["newer"]),
                 prev_link=link + "&page=%d" % (page - 1) if page > 1 else None,
                 next_link=link + "&page=%d" % (page + 1) if page < pages else None)


def _query_link(**params):
    from urllib.parse import urlencode

    return "?" + urlencode([(k, v) for k, v in params.items() if v])


@_guarded
def task(ctx, session, id):
    from .handlers import task_view

    row = ctx.store.get_task(id)
    if row is None:
        raise NotFound("Task not found: %d" % id)
    view = task_view(row)
    events = ctx.store.task_history(id) or []
    from .store.base import STEER_FROM

    actions = [a for a in TASK_ACTIONS if view["status"] in STEER_FROM[a]]
    links = ctx.store.dependencies(id) or {"parents": [], "children": [], "children_count": 0}
    in_workflow = bool(links["parents"] or links["children"])
    drawing = None
    if in_workflow:
        drawing = workflow_drawing(ctx.store.graph(id, max_nodes=DRAWN_NODES + 1), id)
    return _page(ctx, "task.html", "Task %d" % id, session, active="tasks", task=view,
                 actions=actions, notice=_notice(ctx.request.query),
                 parents=links["parents"], children=links["children"],
                 more_children=links["children_count"] - len(links["children"]),
                 waiting_on=links.get("waiting_on", 0),
                 in_workflow=in_workflow, drawing=drawing, drawn_nodes=DRAWN_NODES,
                 events=events, has_params=view.get("params") not in (None, {}),
                 has_result=view.get("result") is not None)


# The task page draws a workflow of up to this many tasks (columns by depth,
# an SVG of rects and lines: no script, no asset, inside the page's CSP);
# a larger one is listed, and GET /tasks/{id}/graph answers it whole.
DRAWN_NODES = 60
_BOX_W, _BOX_H, _COL_W, _ROW_H, _PAD = 170, 40, 210, 56, 10


def workflow_drawing(graph, current):
    """Where each task of a workflow graph ({nodes, edges} as store.graph
    answers) goes in a drawing: a column per depth (the longest chain of
    parents above it), tasks by id within a column; None past DRAWN_NODES."""
    nodes = {node["id"]: node for node in graph["nodes"]}
    if len(nodes) > DRAWN_NODES or graph.get("truncated"):
        return None
    parents = {task_id: [] for task_id in nodes}
    for edge in graph["edges"]:
        if edge["child"] in parents and edge["parent"] in nodes:
            parents[edge["child"]].append(edge["parent"])
    depth = {}

    def depth_of(task_id):  # dependencies never form a cycle, so this ends
        if task_id not in depth:
            depth[task_id] = 1 + max((depth_of(p) for p in parents[task_id]), default=-1)
        return depth[task_id]

    columns = {}
    for task_id in sorted(nodes):
        columns.setdefault(depth_of(task_id), []).append(task_id)
    place, boxes, rows_of = {}, [], {}
    for column, ids in sorted(columns.items()):
        # beside their parents' rows, so few lines cross (the first column by id)
        ids.sort(key=lambda t: (sum(rows_of[p] for p in parents[t]) / len(parents[t])
                                if parents[t] else 0, t))
        for row, task_id in enumerate(ids):
            rows_of[task_id] = row
            x, y = _PAD + column * _COL_W, _PAD + row * _ROW_H
            place[task_id] = (x, y)
            node = nodes[task_id]
            label = node["type"] if len(node["type"]) <= 20 else node["type"][:19] + "\u2026"
            boxes.append({"id": task_id, "type": label, "status": node["status"], "x": x, "y": y,
                          "w": _BOX_W, "h": _BOX_H, "tx": x + 8, "ty1": y + 16, "ty2": y + 32,
                          "current": task_id == current})
    lines = [{"x1": place[p][0] + _BOX_W, "y1": place[p][1] + _BOX_H // 2,
              "x2": place[c][0], "y2": place[c][1] + _BOX_H // 2}
             for c in sorted(parents) for p in sorted(parents[c])]
    rows = max(len(ids) for ids in columns.values())
    return {"width": 2 * _PAD + (len(columns) - 1) * _COL_W + _BOX_W,
            "height": 2 * _PAD + (rows - 1) * _ROW_H + _BOX_H, "boxes": boxes, "lines": lines}


@_guarded
def types(ctx, session):
    from .handlers import type_view

    from .stats import figures

    rows = [type_view(row) for row in ctx.store.list_types(False)]
    counted = figures(ctx.store.stats())["types"]
    for row in rows:
        counts = counted.get(row["name"], {}).get("counts", {})
        row["counts"] = ", ".join("%d %s" % (counts[s], s) for s in STATUSES
                                  if counts.get(s)) or "no tasks"
    return _page(ctx, "types.html", "Types", session, active="types", types=rows,
                 notice=_notice(ctx.request.query), scopes=("always", "active", "off"),
                 backoffs=("fixed", "exponential"))


@_guarded
def health(ctx, session):
    import platform

    checks = {"backend": ctx.config.backend}
    try:
        ctx.store.ping()
        checks["database"] = ctx.store.server_info()
        checks["reachable"] = True
        checks["schema"] = ctx.store.schema_version()
        from .stats import backlog
        from .store.base import BACKLOG_CAP

        checks["backlog"] = [{"table": table, "rows": n, "capped": n >= BACKLOG_CAP}
                             for table, n in sorted(backlog(ctx).items())]
    except TaskqError as exc:
        checks["reachable"] = False
        checks["problem"] = exc.message
    packages = [{"name": "taskq", "version": __version__}]
    for module, name in (("pymysql", "PyMySQL"), ("jsonschema", "jsonschema")):
        packages.append({"name": name, "version": _package_version(module)})
    settings = []
    for section in ("database", "queue", "api", "retention", "log"):
        for key, value in sorted(getattr(ctx.config, section).items()):
            if section == "retention" and key.endswith("_days"):
                value = _duration(value)
            elif key in ("password", "api_key") or "secret" in key:
                value = "(set)" if value else "(not set)"
            elif isinstance(value, (list, tuple)):
                value = ", ".join(value)
            settings.append({"key": "%s.%s" % (section, key), "value": value})
    return _page(ctx, "health.html", "Health", session, active="health", checks=checks,
                 python=platform.python_version(), implementation=platform.python_implementation(),
                 packages=packages, settings=settings, release=__version__,
                 notice=_notice(ctx.request.query))


def _duration(seconds):
    """A retention window as config.ini may write it: 30d, 12h, 90m, 45s; 0 = forever."""
    if not seconds:
        return "0 (kept forever)"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def _package_version(module):
    try:
        from importlib.metadata import version
    except ImportError:  # Python 3.7
        version = None
    names = {"pymysql": "PyMySQL"}
    if version is not None:
        try:
            return version(names.get(module, module))
        except Exception:  # noqa: BLE001 - vendored copies carry no metadata
            pass
    try:
        imported = __import__(module)
        return getattr(imported, "__version__", None) or getattr(imported, "VERSION", None)
    except ImportError:
        return "not installed"


# -- actions: the API's own handlers, called with the form's values ------------
NOTICES = {"cancel": "Task cancelled.", "retry": "Task queued for retry.",
           "requeue": "Task returned to the queue.", "rerun": "Task queued to run again.",
           "paused": "Type paused: claims pass over it.", "resumed": "Type resumed.",
           "activated": "Type active: it takes new tasks.",
           "deactivated": "Type inactive: new tasks are refused; queued ones still run.",
           "saved": "Settings saved.", "bulk": "Done.",
           "schedule-paused": "Schedule paused: it makes no tasks until resumed.",
           "schedule-resumed": "Schedule resumed: its next run is from now on; runs missed "
                               "while paused are not made.",
           "schedule-deleted": "Schedule deleted. The tasks it made stay.",
           "revoked": "Key revoked: requests with it now get 401, and its sessions are over.",
           "recounted": "Counters recounted: all were right.",
           "recount-fixed": "Counters recounted: some had drifted and are corrected now."}
TASK_ACTIONS = ("cancel", "retry", "requeue", "rerun")
TYPE_ACTIONS = ("pause", "resume", "activate", "deactivate", "settings")
MAX_SELECTED = 1000


class _FormBody:
    """The request as an API handler sees it, with the form's values as its JSON body,
    so a dashboard action runs the route's own validation and logic."""

    def __init__(self, request, body):
        self._request = request
        self._body = body

    def json(self):
        return dict(self._body)

    def __getattr__(self, name):
        return getattr(self._request, name)


def _run(ctx, handler, body=None, **params):
    """Call an API handler with `body`; its (status, message, data)."""
    request = ctx.request
    ctx.request = _FormBody(request, body or {})
    try:
        return handler(ctx, **params)
    finally:
        ctx.request = request


def _acting(action):
    """A POST that changes something: a session that may act and its CSRF token, or 403."""
    def wrapper(ctx, **params):
        try:
            session = _session(ctx)
            if session is None or not session.can_act:
                raise Forbidden("Log in with an admin key to change anything")
            form = _form(ctx.request)
            if not _same(form.get("csrf", ""), session.csrf):
                raise Forbidden("Invalid CSRF token: reload the page and try again")
            ctx.role = "admin"  # a session that may act was opened with an admin key
            return action(ctx, session, form, **params)
        except TaskqError as exc:
            return _error_page(ctx, exc)

    wrapper.__name__ = action.__name__
    wrapper.__doc__ = action.__doc__
    return wrapper


def _notice(query):
    code = query.get("done", "")
    text = NOTICES.get(code)
    if text and code == "bulk":
        from . import validation as v

        changed = v.query_int(query, "changed", 0, 0, 10 ** 9)
        skipped = v.query_int(query, "skipped", 0, 0, 10 ** 9)
        text = "%d task(s) changed, %d skipped (not in a status the action acts on)." % (
            changed, skipped)
    return text


@_acting
def task_action(ctx, session, form, id, action):
    """Cancel, retry, requeue or re-run one task: operations' own handlers."""
    from . import operations

    if action not in TASK_ACTIONS:
        raise NotFound("Unknown action: %s" % action)
    _run(ctx, getattr(operations, action + "_task"), id=id)
    return _redirect(ctx, "/tasks/%d?done=%s" % (id, action))


@_acting
def tasks_bulk(ctx, session, form):
    """The selected tasks of the tasks page, steered in one store call."""
    action = form.get("action", "")
    if action not in TASK_ACTIONS:
        raise BadRequest("Choose an action: %s" % ", ".join(TASK_ACTIONS))
    ids = []
    for key, value in _form_pairs(ctx.request):
        if key == "ids":
            if not value.isdigit() or len(value) > 18:
                raise BadRequest("Field 'ids' must hold task ids")
            ids.append(int(value))
    if not ids:
        raise BadRequest("Select at least one task")
    if len(ids) > MAX_SELECTED:
        raise BadRequest("Select at most %d tasks at once" % MAX_SELECTED)
    outcomes = ctx.store.steer(action, sorted(set(ids)))
    changed = sum(1 for outcome in outcomes if not isinstance(outcome, TaskqError))
    back = _back_link(form.get("back", ""))
    return _redirect(ctx, "/tasks%s%sdone=bulk&changed=%d&skipped=%d" % (
        back, "&" if len(back) > 1 else "", changed, len(outcomes) - changed))


def _back_link(text):
    """The tasks page's filters from a form's `back` field, re-encoded (pure): only the
    page's own names, so nothing else (no header break, no other path) gets into Location."""
    from urllib.parse import parse_qsl

    names = ("status", "type", "error", "older", "newer", "sort", "page")
    pairs = parse_qsl(text[1:5000] if text.startswith("?") else "")
    return _query_link(**{name: value for name, value in pairs if name in names})


@_acting
def failed_retry(ctx, session, form):
    """Retry every failed task whose error holds the group's text (bounded per request)."""
    from . import operations

    text = form.get("error", "")
    if not text:
        raise BadRequest("Missing the error text of the group")
    status, message, data = _run(ctx, operations.bulk, {
        "filter": {"status": "failed", "error_contains": text}}, action="retry")
    return _redirect(ctx, "/failed?done=bulk&changed=%d&skipped=%d" % (
        data["changed"], len(data["skipped"])))


@_acting
def type_action(ctx, session, form, name, action):
    """Pause, resume, (de)activate or edit a type through the API's handlers."""
    from . import handlers, operations

    if action not in TYPE_ACTIONS:
        raise NotFound("Unknown action: %s" % action)
    if action in ("pause", "resume"):
        _run(ctx, getattr(operations, action + "_type"), name=name)
        return _redirect(ctx, "/types?done=%s" % ("paused" if action == "pause" else "resumed"))
    row = ctx.store.get_type(name)
    if row is None:
        raise NotFound("Task type not found: %s" % name)
    current = handlers.type_view(row)
    body = {"name": name, "version": current["version"], "param_schema": current["param_schema"],
            "max_attempts": current.get("max_attempts"), "claim_timeout": current.get("claim_timeout"),
            "is_active": current["is_active"]}
    for key in ("retry_delay_seconds", "retry_backoff", "retry_max_delay_seconds", "retry_jitter"):
        if key in current:
            body[key] = current[key]
    if action in ("activate", "deactivate"):
        body["is_active"] = action == "activate"
        _run(ctx, handlers.register_type, body)
        return _redirect(ctx, "/types?done=%s" % (action + "d"))
    # settings: the register fields and operations' settings, each checked by its route
    register_changed = False
    for key in ("max_attempts", "claim_timeout", "retry_delay_seconds", "retry_max_delay_seconds"):
        if key in form and (key in body or key in ("max_attempts", "claim_timeout")):
            body[key] = _form_int(form, key)
            register_changed = True
    if "retry_backoff" in form and "retry_backoff" in body:
        body["retry_backoff"] = form["retry_backoff"]
        register_changed = True
    if "retry_jitter" in form and "retry_jitter" in body:
        body["retry_jitter"] = _form_number(form, "retry_jitter")
        register_changed = True
    settings = {}
    if "max_concurrency" in form:
        settings["max_concurrency"] = _form_int(form, "max_concurrency")
    if form.get("dedupe_scope"):
        settings["dedupe_scope"] = form["dedupe_scope"]
    if register_changed:
        handlers_body = {k: v for k, v in body.items() if v is not None}
        _run(ctx, handlers.register_type, handlers_body)
    if settings:
        _run(ctx, operations.type_settings, settings, name=name)
    return _redirect(ctx, "/types?done=saved")


def _form_int(form, key):
    """A whole number from a form field; empty means none (null)."""
    raw = form.get(key, "").strip()
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadRequest("Field '%s' must be a whole number" % key) from None


def _form_number(form, key):
    raw = form.get(key, "").strip()
    if raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadRequest("Field '%s' must be a number" % key) from None


@_guarded
def failed(ctx, session):
    groups = ctx.store.failed_groups(50)
    return _page(ctx, "failed.html", "Failed", session, active="failed", groups=groups,
                 notice=_notice(ctx.request.query))


def every_text(seconds):
    """'90 min', '2 h', '1 d', '45 s': an interval in the largest unit that divides it exactly."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return "%d %s" % (seconds // size, unit)
    return "%d s" % seconds


def _until(iso_text):
    """'in 3 min' or 'due: the next claim makes it' for an ISO-8601 UTC time."""
    left = _from_now(iso_text)
    if left is None:
        return None
    return "in " + _seconds(left) if left >= 1 else "due: the next claim makes it"


@_guarded
def schedules(ctx, session):
    from . import validation as v
    from .schedules import schedule_view

    page = v.query_int(ctx.request.query, "page", 1, 1, 10 ** 9)
    rows, total = ctx.store.list_schedules(PAGE_SIZE, (page - 1) * PAGE_SIZE)
    views = []
    for row in rows:
        view = schedule_view(row)
        if view["every_seconds"]:
            view["every"] = every_text(view["every_seconds"])
        view["next_in"] = _until(view["next_run_at"])
        views.append(view)
    pages = max(1, -(-total // PAGE_SIZE))
    return _page(ctx, "schedules.html", "Schedules", session, active="schedules", schedules=views,
                 total=total, page=page, pages=pages, notice=_notice(ctx.request.query),
                 prev_page=page - 1 if page > 1 else None, next_page=page + 1 if page < pages else None)


SCHEDULE_ACTIONS = ("pause", "resume", "delete")


@_acting
def schedule_action(ctx, session, form, id, action):
    """Pause, resume or delete a schedule: the /schedules routes' own handlers."""
    from . import schedules as routes

    if action not in SCHEDULE_ACTIONS:
        raise NotFound("Unknown action: %s" % action)
    _run(ctx, getattr(routes, action), id=id)
    return _redirect(ctx, "/schedules?done=schedule-%s" % (action + "d" if action != "pause"
                                                            else "paused"))


@_guarded
def keys(ctx, session):
    from .admin import list_keys
    from .router import ROLE_GRANTS

    _, _, data = list_keys(ctx)
    return _page(ctx, "keys.html", "API keys", session, active="keys", keys=data["keys"],
                 roles=sorted(ROLE_GRANTS), notice=_notice(ctx.request.query),
                 config_key=bool(ctx.config.api["api_key"]))


@_acting
def key_create(ctx, session, form):
    """A new key with a role, through the admin route; shown once, on this answer only."""
    from . import admin
    from .router import ROLE_GRANTS

    _, _, view = _run(ctx, admin.create_key, {"name": form.get("name", ""),
                                              "role": form.get("role", "")})
    _, _, data = admin.list_keys(ctx)
    return _page(ctx, "keys.html", "API keys", session, status=201, active="keys",
                 keys=data["keys"], roles=sorted(ROLE_GRANTS), created=view,
                 config_key=bool(ctx.config.api["api_key"]))


@_acting
def key_revoke(ctx, session, form, name):
    from . import admin

    _run(ctx, admin.revoke_key, name=name)
    return _redirect(ctx, "/keys?done=revoked")


@_acting
def health_recount(ctx, session, form):
    from . import admin

    _, _, fixed = _run(ctx, admin.recount)
    drifted = fixed["task_counts"] or fixed["usage_count"]
    return _redirect(ctx, "/health?done=" + ("recount-fixed" if drifted else "recounted"))


def static(ctx, name):
    """CSS and script shipped in lib/taskq/static/; cached by the browser for a day."""
    extension = os.path.splitext(name)[1]
    if name.startswith(".") or "/" in name or "\\" in name or extension not in STATIC_TYPES:
        raise NotFound("No such file: %s" % name)
    path = os.path.join(STATIC_DIR, name)
    try:
        with open(path, "rb") as handle:
            body = handle.read()
    except OSError:
        raise NotFound("No such file: %s" % name) from None
    return _raw(200, [("Content-Type", STATIC_TYPES[extension]),
                      ("Cache-Control", "public, max-age=86400"),
                      ("X-Content-Type-Options", "nosniff")], body)
