"""A visible table of (method, rule) -> handler name, and its matcher.

404 and 405 (with Allow) come from here, never from handlers. Handlers are
named, not imported, so matching a route costs only a regex.
"""

import re

from .errors import MethodNotAllowed, NotFound

ROUTES = (
    ("GET", "/health", "health"),
    ("GET", "/openapi.json", "openapi"),
    ("POST", "/task-types/register", "register_type"),
    ("GET", "/task-types", "list_types"),
    ("GET", "/task-types/{name}", "get_type"),
    ("POST", "/tasks", "create_task"),
    ("GET", "/tasks", "list_tasks"),
    ("POST", "/tasks/claim", "claim"),
    ("POST", "/tasks/complete", "complete_batch"),
    ("GET", "/tasks/{id:int}", "get_task"),
    ("GET", "/tasks/{id:int}/history", "task_history"),
    ("POST", "/tasks/{id:int}/progress", "progress"),
    ("POST", "/tasks/{id:int}/complete", "complete"),
)

# Routes that answer without an API key and without touching the database.
PUBLIC = frozenset(("health", "openapi"))

_PARAM = re.compile(r"\{(\w+)(?::(int))?\}")


def _compile(rule):
    def replace(match):
        name, kind = match.group(1), match.group(2)
        return "(?P<%s>%s)" % (name, r"[0-9]{1,18}" if kind == "int" else r"[^/]+")

    return re.compile(_PARAM.sub(replace, re.escape(rule).replace(r"\{", "{").replace(r"\}", "}")) + r"\Z")


class Router:
    def __init__(self, routes=ROUTES):
        self.rules = []
        for method, rule, handler in routes:
            regex = _compile(rule)
            converters = {name: int for name, kind in _PARAM.findall(rule) if kind == "int"}
            self.rules.append((method, regex, converters, handler, rule))

    def match(self, method, path):
        """(handler name, path params) or NotFound / MethodNotAllowed."""
        if len(path) > 1:
            path = path.rstrip("/")
        allowed = set()
        for rule_method, regex, converters, handler, _ in self.rules:
            found = regex.match(path)
            if not found:
                continue
            if rule_method != method:
                allowed.add(rule_method)
                continue
            params = found.groupdict()
            for name, convert in converters.items():
                params[name] = convert(params[name])
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
        return {m for m, regex, _, _, _ in self.rules if regex.match(path)}
