"""A visible table of (method, rule) -> handler name, and its matcher.

404 and 405 (with Allow) come from here, never from handlers. Handlers are
named, not imported, and rules are matched segment by segment with string
comparisons: every CGI request builds a Router, and compiling a regex per
rule cost it a millisecond.
"""

from .errors import MethodNotAllowed, NotFound

ROUTES = (
    ("GET", "/health", "health"),
    ("GET", "/openapi.json", "openapi"),
    ("GET", "/docs", "docs_page"),
    ("GET", "/docs/swagger-ui/{name}", "docs_asset"),
    ("POST", "/task-types/register", "register_type"),
    ("GET", "/task-types", "list_types"),
    ("GET", "/task-types/{name}", "get_type"),
    ("POST", "/tasks", "create_task"),
    ("GET", "/tasks", "list_tasks"),
    ("POST", "/tasks/claim", "claim"),
    ("POST", "/tasks/complete", "complete_batch"),
    ("GET", "/tasks/{id:int}", "get_task"),
    ("GET", "/tasks/{id:int}/history", "task_history"),
    ("GET", "/tasks/{id:int}/graph", "task_graph"),
    ("POST", "/tasks/{id:int}/progress", "progress"),
    ("POST", "/tasks/{id:int}/complete", "complete"),
    # steering and type settings: taskq/operations.py (admin routes: operations.ADMIN_ROUTES)
    ("POST", "/task-types/{name}/settings", "operations.type_settings"),
    ("POST", "/task-types/{name}/pause", "operations.pause_type"),
    ("POST", "/task-types/{name}/resume", "operations.resume_type"),
    ("POST", "/tasks/{id:int}/cancel", "operations.cancel_task"),
    ("POST", "/tasks/{id:int}/retry", "operations.retry_task"),
    ("POST", "/tasks/{id:int}/requeue", "operations.requeue_task"),
    ("POST", "/tasks/{id:int}/rerun", "operations.rerun_task"),
    ("POST", "/tasks/bulk/{action}", "operations.bulk"),
    # "module.function": a route family in its own module (schedules.py)
    ("POST", "/schedules", "schedules.create"),
    ("GET", "/schedules", "schedules.list_all"),
    ("GET", "/schedules/{id:int}", "schedules.get"),
    ("DELETE", "/schedules/{id:int}", "schedules.delete"),
    ("POST", "/schedules/{id:int}/pause", "schedules.pause"),
    ("POST", "/schedules/{id:int}/resume", "schedules.resume"),
    # handlers named module.function live in that module (stats.py, admin.py)
    ("GET", "/stats", "stats.show"),
    ("GET", "/metrics", "stats.metrics"),
    ("POST", "/admin/keys", "admin.create_key"),
    ("GET", "/admin/keys", "admin.list_keys"),
    ("DELETE", "/admin/keys/{name}", "admin.revoke_key"),
    ("POST", "/admin/purge", "admin.purge"),
    ("POST", "/admin/recount", "admin.recount"),
    # the dashboard (lib/taskq/dashboard.py): HTML pages behind a session cookie
    ("GET", "/dashboard", "dashboard.overview"),
    ("GET", "/dashboard/login", "dashboard.login_form"),
    ("POST", "/dashboard/login", "dashboard.login"),
    ("POST", "/dashboard/logout", "dashboard.logout"),
    ("GET", "/dashboard/tasks", "dashboard.tasks"),
    ("GET", "/dashboard/tasks/{id:int}", "dashboard.task"),
    ("POST", "/dashboard/tasks/{id:int}/{action}", "dashboard.task_action"),
    ("POST", "/dashboard/tasks/bulk", "dashboard.tasks_bulk"),
    ("GET", "/dashboard/failed", "dashboard.failed"),
    ("POST", "/dashboard/failed/retry", "dashboard.failed_retry"),
    ("GET", "/dashboard/types", "dashboard.types"),
    ("POST", "/dashboard/types/{name}/{action}", "dashboard.type_action"),
    ("GET", "/dashboard/schedules", "dashboard.schedules"),
    ("POST", "/dashboard/schedules/{id:int}/{action}", "dashboard.schedule_action"),
    ("GET", "/dashboard/keys", "dashboard.keys"),
    ("POST", "/dashboard/keys", "dashboard.key_create"),
    ("POST", "/dashboard/keys/{name}/revoke", "dashboard.key_revoke"),
    ("GET", "/dashboard/health", "dashboard.health"),
    ("POST", "/dashboard/health/recount", "dashboard.health_recount"),
    ("GET", "/dashboard/static/{name}", "dashboard.static"),
)

# Routes that answer without an API key and without touching the database.
PUBLIC = frozenset(("health", "openapi", "docs_page", "docs_asset"))
# Routes answered by docs_ui (route name -> function): files, not JSON envelopes.
FILES = {"docs_page": "page", "docs_asset": "asset"}
# Route families that check their own credentials (the dashboard's session cookie).
SELF_AUTHORIZED = ("dashboard.",)

# The role each route needs (app.py checks it against the request's key); a
# route missing here needs admin. What each role may do is ROLE_GRANTS.
ROUTE_ROLES = {
    "register_type": "producer",
    "list_types": "read-only",
    "get_type": "read-only",
    "create_task": "producer",
    "list_tasks": "read-only",
    "claim": "worker",
    "complete_batch": "worker",
    "get_task": "read-only",
    "task_history": "read-only",
    "task_graph": "read-only",
    "progress": "worker",
    "complete": "worker",
    "stats.show": "read-only",
    "stats.metrics": "read-only",
    "admin.create_key": "admin",
    "admin.list_keys": "admin",
    "admin.revoke_key": "admin",
    "admin.purge": "admin",
    "admin.recount": "admin",
    # steering and type settings (operations.ADMIN_ROUTES): operator actions
    "operations.type_settings": "admin",
    "operations.pause_type": "admin",
    "operations.resume_type": "admin",
    "operations.cancel_task": "admin",
    "operations.retry_task": "admin",
    "operations.requeue_task": "admin",
    "operations.rerun_task": "admin",
    "operations.bulk": "admin",
    # schedules: anyone may read them; a schedule is standing configuration that
    # makes tasks with nobody calling, so making and changing one is admin's
    "schedules.list_all": "read-only",
    "schedules.get": "read-only",
    "schedules.create": "admin",
    "schedules.pause": "admin",
    "schedules.resume": "admin",
    "schedules.delete": "admin",
}

ROLE_GRANTS = {
    "admin": frozenset(("admin", "producer", "worker", "read-only")),
    "producer": frozenset(("producer", "read-only")),
    "worker": frozenset(("worker", "read-only")),
    "read-only": frozenset(("read-only",)),
}
ROLES = ("producer", "worker", "admin", "read-only")

_DIGITS = frozenset("0123456789")


def _segments(rule):
    """A rule as a tuple: a literal string per segment, or (name, is_int) for `{name}` / `{name:int}`."""
    out = []
    for part in rule.split("/"):
        if part[:1] == "{" and part[-1:] == "}":
            name, _, kind = part[1:-1].partition(":")
            out.append((name, kind == "int"))
        else:
            out.append(part)
    return tuple(out)


def _match(segments, parts):
    """Path params when the path's segments fit the rule's, else None.

    A parameter is one non-empty segment; an int parameter is 1 to 18 ASCII digits."""
    if len(segments) != len(parts):
        return None
    params = {}
    for segment, part in zip(segments, parts):
        if isinstance(segment, str):
            if segment != part:
                return None
        elif not part:
            return None
        elif segment[1]:
            if len(part) > 18 or not _DIGITS.issuperset(part):
                return None
            params[segment[0]] = int(part)
        else:
            params[segment[0]] = part
    return params


class Router:
    def __init__(self, routes=ROUTES):
        self.rules = [(method, _segments(rule), handler, rule) for method, rule, handler in routes]

    def _matching(self, parts):
        """(method, handler, params) of the rules that fit, literal segments
        first: /task-types/register is the POST route, never the GET of a
        type named "register", so HEAD and GET there answer 405."""
        found = []
        for rule_method, segments, handler, _ in self.rules:
            params = _match(segments, parts)
            if params is not None:
                found.append((sum(isinstance(s, str) for s in segments), rule_method, handler, params))
        best = max((f[0] for f in found), default=0)
        return [f[1:] for f in found if f[0] == best]

    def match(self, method, path):
        """(handler name, path params) or NotFound / MethodNotAllowed."""
        if len(path) > 1:
            path = path.rstrip("/")
        allowed = set()
        parts = path.split("/")
        for rule_method, handler, params in self._matching(parts):
            if rule_method != method:
                allowed.add(rule_method)
                continue
            return handler, params
        if allowed:
            if method == "HEAD" and "GET" in allowed:
                return self.match("GET", path)
            raise MethodNotAllowed(allowed | {"OPTIONS"})
        raise NotFound("Route not found: %s %s" % (method, path))

    def allowed_methods(self, path):
        """Methods a path answers to, for OPTIONS; empty when the path is unknown."""
        if len(path) > 1:
            path = path.rstrip("/")
        return {m for m, _, _ in self._matching(path.split("/"))}
