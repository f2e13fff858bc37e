"""The OpenAPI 3.1 document for GET /openapi.json, built from plain dicts.

Paths come from the router's table, so a route cannot exist without being
documented here (tests/unit/test_docs.py checks every route has an operation).
"""

from . import __version__
from .store.base import LIST_SORT_FIELDS
from .store.dependencies import (CHILDREN_SHOWN, FAN_IN_BYTES, GRAPH_MAX_NODES, MAX_PARENTS,
                                 ON_PARENT_FAILURE)
from .validation import MAX_AGE_SECONDS


def _ref(name):
    return {"$ref": "#/components/schemas/" + name}


def _body(schema, required=True):
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _ok(description, data_schema=None, status="200", extra=None):
    schema = {"allOf": [_ref("Success")]}
    if data_schema is not None or extra:
        props = {} if data_schema is None else {"data": data_schema}
        props.update(extra or {})
        schema = {"allOf": [_ref("Success"), {"type": "object", "properties": props,
                                              "required": sorted(props)}]}
    return {status: {"description": description, "content": {"application/json": {"schema": schema}}}}


def _errors(*statuses):
    text = {"400": "Bad request or validation failure", "401": "Missing or invalid API key",
            "403": "Task is leased to another worker, or the API key's role may not use this route",
            "404": "Not found",
            "409": "Task not claimed, lease lost, or the API key name is taken",
            "411": "Chunked body the server cannot read", "413": "Request body too large",
            "503": "Database unavailable, or at another schema version than this release "
                   "(Retry-After says when to retry)"}
    return {s: {"description": text[s], "content": {"application/json": {"schema": _ref("Error")}}}
            for s in statuses}


def _op(summary, responses, body=None, params=None, public=False):
    op = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


def _query(name, schema, description):
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_ID = {"name": "id", "in": "path", "required": True,
       "schema": {"type": "integer", "minimum": 0, "maximum": 999999999999999999}}
_NAME_PATTERN = "^[A-Za-z0-9_.:-]{1,255}$"
_NAME = {"name": "name", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": _NAME_PATTERN}}
_TS = {"type": ["string", "null"], "format": "date-time"}
_INT32 = {"type": "integer", "minimum": -2147483647, "maximum": 2147483647}
STATUSES = ["pending", "claimed", "completed", "failed", "cancelled", "scheduled", "waiting"]
SORT_BY = ["created_at", "priority", "id", "attempts"]
SORT_ORDER = ["ASC", "DESC", "asc", "desc"]
DEFAULT_SERVERS = ("/api", "/cgi-bin/api.py")
_LATER = {
    "run_at": {"type": "string", "format": "date-time",
               "description": "ISO-8601; without an offset it is UTC. Not with delay_seconds"},
    "delay_seconds": {"type": "integer", "minimum": 0, "maximum": 316224000,
                      "description": "Due this many seconds from now (database clock)"}}
_RETRY = {
    "retry_delay_seconds": {"type": ["integer", "null"], "minimum": 0, "maximum": 604800,
                            "description": "Delay before a failed attempt (or expired lease) is retried"},
    "retry_backoff": {"enum": ["fixed", "exponential"], "default": "fixed"},
    "retry_max_delay_seconds": {"type": ["integer", "null"], "minimum": 1, "maximum": 604800},
    "retry_jitter": {"type": "number", "minimum": 0, "maximum": 1, "default": 0,
                     "description": "Spread each delay by up to +- this fraction"}}


def _ops_paths(s):
    """Stats, metrics, API keys and retention (stats.py, admin.py)."""
    window = {"type": "object", "required": ["completed", "failed", "retried", "run_seconds"],
              "properties": {
        "completed": {"type": "integer"}, "failed": {"type": "integer"}, "retried": {"type": "integer"},
        "run_seconds": {"type": "object", "required": ["count", "avg", "p95"], "properties": {
            "count": {"type": "integer"}, "avg": {"type": ["number", "null"]},
            "p95": {"type": ["number", "null"]}}}}}
    by_outcome = {"type": "object", "additionalProperties": {"type": "integer"}}
    counts = {"type": "object", "propertyNames": {"enum": STATUSES},
              "additionalProperties": {"type": "integer"}}
    s["Stats"] = {"type": "object", "required": ["counts", "total", "oldest_pending_age_seconds",
                                                 "last_hour", "last_day", "types", "leases"],
                  "properties": {
        "counts": counts,
        "total": {"type": "integer"},
        "oldest_pending_age_seconds": {"type": ["number", "null"]},
        "last_hour": window, "last_day": window,
        "types": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["counts", "last_hour", "last_day"], "properties": {
            "counts": counts,
            "last_hour": by_outcome, "last_day": by_outcome}}},
        "leases": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    s["ApiKey"] = {"type": "object", "required": ["id", "name", "role", "prefix", "created_at",
                                                  "last_used_at"], "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "role": {"enum": ["producer", "worker", "admin", "read-only"]},
        "prefix": {"type": "string"}, "created_at": _TS, "last_used_at": _TS}}
    key_name = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
    return {
        "/stats": {"get": _op("Queue statistics: counts, oldest pending, last hour and day, leases",
                              {**_ok("Statistics", _ref("Stats")), **_errors("401")})},
        "/metrics": {"get": _op("The statistics in the Prometheus text exposition format", {
            "200": {"description": "Prometheus text (version 0.0.4)",
                    "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}}},
            **_errors("401")})},
        "/admin/keys": {
            "post": _op("Create an API key with a role (admin); the key is in this answer only",
                        {**_ok("Created: the key view plus `key`", {"allOf": [
                            _ref("ApiKey"), {"type": "object", "required": ["key"],
                                             "properties": {"key": {"type": "string"}}}]},
                            status="201"), **_errors("400", "401", "403", "409", "413")},
                        _body({"type": "object", "required": ["name", "role"], "properties": {
                            "name": key_name, "role": {"enum": ["producer", "worker", "admin", "read-only"]}}})),
            "get": _op("List API keys (admin): names and prefixes, never the keys",
                       {**_ok("Keys", {"type": "object", "required": ["keys", "count"], "properties": {
                           "keys": {"type": "array", "items": _ref("ApiKey")},
                           "count": {"type": "integer"}}}), **_errors("401", "403")}),
        },
        "/admin/keys/{name}": {"delete": _op(
            "Revoke an API key (admin)",
            {**_ok("Revoked", {"type": "object", "required": ["name", "revoked"], "properties": {
                "name": {"type": "string"}, "revoked": {"const": True}}}),
             **_errors("401", "403", "404")},
            params=[{"name": "name", "in": "path", "required": True, "schema": key_name}])},
        "/admin/purge": {"post": _op(
            "Delete tasks and history older than the [retention] days now (admin)",
            {**_ok("Rows deleted per kind; `more` when old rows may remain", {
                "type": "object", "required": ["deleted", "total", "more", "retention",
                                               "retention_seconds"], "properties": {
                    "deleted": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                    "total": {"type": "integer", "minimum": 0}, "more": {"type": "boolean"},
                    "retention": {"type": "object", "description": "days (a fraction where set in hours)",
                                  "additionalProperties": {"type": "number", "minimum": 0}},
                    "retention_seconds": {"type": "object",
                                          "additionalProperties": {"type": "integer", "minimum": 0}}}}),
             **_errors("400", "401", "403", "413")},
            _body({"type": "object", "properties": {
                "max_rows": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 10000}}},
                required=False))},
        "/admin/recount": {"post": _op(
            "Heal the maintained counters from the rows they count (admin)",
            {**_ok("What was wrong: the counters changed, empty when none had drifted", {
                "type": "object", "required": ["task_counts", "usage_count"], "properties": {
                    "task_counts": {"type": "array", "items": {
                        "type": "object", "required": ["type", "status", "was", "now"], "properties": {
                            "type": {"type": "string"}, "status": {"type": "string"},
                            "was": {"type": "integer"}, "now": {"type": "integer"}}}},
                    "usage_count": {"type": "array", "items": {
                        "type": "object", "required": ["type", "was", "now"], "properties": {
                            "type": {"type": "string"}, "was": {"type": "integer"},
                            "now": {"type": "integer"}}}}}}),
             **_errors("401", "403", "503")})},
    }


def _paging(default_limit):
    return [_query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": default_limit},
                   "Page size (or per_page; give one)"),
            _query("offset", {"type": "integer", "minimum": 0, "maximum": 10 ** 12, "default": 0},
                   "Rows to skip (or page; give one)"),
            _query("page", {"type": "integer", "minimum": 1, "maximum": 10 ** 9},
                   "1-based page of per_page (or limit) rows"),
            _query("per_page", {"type": "integer", "minimum": 1, "maximum": 1000},
                   "Page size, as limit")]


def _batch_result(ok_schema):
    """A batch answer item: an ok one, or one that failed with its own HTTP status."""
    failed = {"type": "object", "required": ["index", "ok", "status", "error"], "properties": {
        "index": {"type": "integer"}, "ok": {"const": False}, "id": {},
        "status": {"type": "integer", "enum": [400, 403, 404, 409, 413]},
        "error": {"type": "string"}, "details": {}}}
    return {"oneOf": [ok_schema, failed]}


def document(config=None, base_url=None):
    """The document; config bounds lease_seconds, base_url (where this API answers
    the request for the document) goes first in `servers`."""
    max_lease = config.queue["max_lease_seconds"] if config is not None else 86400
    lease = {"type": "integer", "minimum": 1, "maximum": max_lease}
    task_props = {
        "id": {"type": "integer"}, "type": {"type": "string"}, "type_id": {"type": "integer"},
        "status": {"enum": STATUSES},
        "params": {"type": "object"}, "result": {}, "error_message": {"type": ["string", "null"]},
        "priority": {"type": "integer"}, "progress": {"type": "integer"},
        "progress_message": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
        "max_attempts": {"type": "integer"}, "claimed_by": {"type": ["string", "null"]},
        "claimed_at": _TS, "lease_expires_at": _TS, "completed_at": _TS,
        "created_at": _TS, "updated_at": _TS,
        "run_at": {**_TS, "description": "When the task is due; 'scheduled' until then"}}
    link = {"type": "object", "required": ["id", "type", "status"], "properties": {
        "id": {"type": "integer"}, "type": {"type": "string"}, "status": {"enum": STATUSES}}}
    # only on tasks of a workflow (GET /tasks/{id}), and `parents` with results on a claim
    dep_props = {
        "parents": {"type": "array", "maxItems": MAX_PARENTS, "items": {"allOf": [link, {
            "type": "object", "properties": {"result": {}, "result_omitted": {"const": True}}}]},
            "description": "The task's parents by id; a claim adds their results, at most %d "
                           "bytes of them together (the rest say result_omitted: GET them)"
                           % FAN_IN_BYTES},
        "children": {"type": "array", "maxItems": CHILDREN_SHOWN, "items": link,
                     "description": "The first %d tasks that depend on this one, by id"
                                    % CHILDREN_SHOWN},
        "children_count": {"type": "integer"},
        "waiting_on": {"type": "integer", "description": "Parents not settled yet"},
        "on_parent_failure": {"enum": list(ON_PARENT_FAILURE)},
        "cancelled_by": {"type": ["integer", "null"],
                         "description": "The parent whose failure cancelled this task"}}
    s = {
        "Success": {"type": "object", "required": ["success", "message", "data", "timestamp"],
                    "properties": {"success": {"const": True}, "message": {"type": "string"},
                                   "data": {}, "timestamp": {"type": "integer"},
                                   "pagination": _ref("Pagination")}},
        "Error": {"type": "object", "required": ["success", "error", "message", "timestamp"],
                  "properties": {"success": {"const": False}, "error": {"type": "string"},
                                 "message": {"type": "string"}, "timestamp": {"type": "integer"},
                                 "details": {}}},
        "Pagination": {"type": "object",
                       "required": ["total", "page", "per_page", "total_pages", "limit", "offset"],
                       "properties": {k: {"type": "integer", "minimum": 0} for k in (
                           "total", "page", "per_page", "total_pages", "limit", "offset")}},
        "TaskType": {"type": "object", "required": ["id", "name", "version", "param_schema",
                                                    "is_active", "usage_count", "last_used_at"],
                     "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"}, "version": {"type": "string"},
            "param_schema": {"type": "object"}, "is_active": {"type": "boolean"},
            "max_attempts": {"type": ["integer", "null"]}, "claim_timeout": {"type": ["integer", "null"]},
            "usage_count": {"type": "integer", "minimum": 0}, "last_used_at": _TS,
            "created_at": _TS, "updated_at": _TS, **_RETRY,
            "max_concurrency": {"type": ["integer", "null"]}, "is_paused": {"type": "boolean"},
            "dedupe_scope": {"enum": ["always", "active", "off"]}}},
        "NewTask": {"type": "object", "required": ["type", "params"], "properties": {
            "type": {"type": "string", "pattern": _NAME_PATTERN}, "params": {"type": "object"},
            "priority": dict(_INT32, default=0), **_LATER,
            "depends_on": {"type": "array", "maxItems": MAX_PARENTS, "items": {"oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 2 ** 62},
                {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}]},
                "description": "Parents: task ids, or in a batch the refs of earlier items. "
                               "The task waits (status waiting) until every parent is settled"},
            "ref": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$",
                    "description": "Names this batch item for the depends_on of later items"},
            "on_parent_failure": {"enum": list(ON_PARENT_FAILURE), "default": "cancel",
                                  "description": "What a failed or cancelled parent does: cancel "
                                                 "this task, or count as settled (run)"}}},
        "Completion": {"type": "object", "required": ["success"], "properties": {
            "success": {"type": "boolean"}, "result": {}, "error": {"type": "string", "maxLength": 65535},
            "retry_after_seconds": {"type": "integer", "minimum": 0, "maximum": 604800,
                                    "description": "Failed attempt only: wait this long before "
                                                   "the retry (instead of the type's backoff)"}}},
        "Task": {"type": "object", "required": sorted(task_props),
                 "properties": dict(task_props, **dep_props)},
        "TaskGraph": {"type": "object", "required": ["id", "nodes", "edges", "truncated", "count",
                                                     "max_nodes"], "properties": {
            "id": {"type": "integer"}, "nodes": {"type": "array", "maxItems": GRAPH_MAX_NODES,
                                                 "items": link},
            "edges": {"type": "array", "items": {"type": "object", "required": ["parent", "child"],
                                                 "properties": {"parent": {"type": "integer"},
                                                                "child": {"type": "integer"}}}},
            "truncated": {"type": "boolean"}, "count": {"type": "integer"},
            "max_nodes": {"type": "integer"}}},
        "CreatedTask": {"allOf": [_ref("Task"), {"type": "object", "required": ["dedupe_key", "deduplicated"],
                                                 "properties": {"dedupe_key": {"type": "string"},
                                                                "deduplicated": {"type": "boolean"}}}]},
        "Outcome": {"type": "object", "required": ["id", "status", "attempts", "will_retry"], "properties": {
            "id": {"type": "integer"}, "status": {"enum": STATUSES}, "attempts": {"type": "integer"},
            "will_retry": {"type": "boolean"},
            "retry_delay_seconds": {"type": "integer",
                                    "description": "When the retry waits (status 'scheduled')"}}},
        "NewSchedule": {"type": "object", "required": ["type", "params"], "properties": {
            "type": {"type": "string"}, "params": {"type": "object"},
            "priority": {"type": "integer", "default": 0},
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,255}$",
                     "description": "Optional, unique (409 when taken)"},
            "every_seconds": {"type": "integer", "minimum": 1, "maximum": 31622400},
            "cron": {"type": "string", "description": "Five fields or @hourly/@daily/@weekly/"
                                                      "@monthly/@yearly"},
            "timezone": {"type": "string", "default": "UTC",
                         "description": "IANA name (Python 3.9+ servers), UTC or +HH:MM; with cron"},
            "start_at": {"type": "string", "format": "date-time"},
            "catch_up": {"enum": ["latest", "all"], "default": "latest"},
            "catch_up_limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
            "oneOf": [{"required": ["every_seconds"]}, {"required": ["cron"]}]},
        "Schedule": {"type": "object", "properties": {
            "id": {"type": "integer"}, "name": {"type": ["string", "null"]},
            "type_id": {"type": "integer"}, "type": {"type": "string"}, "params": {"type": "object"},
            "priority": {"type": "integer"}, "every_seconds": {"type": ["integer", "null"]},
            "cron": {"type": ["string", "null"]}, "timezone": {"type": "string"},
            "catch_up": {"enum": ["latest", "all"]}, "catch_up_limit": {"type": "integer"},
            "paused": {"type": "boolean"}, "next_run_at": _TS, "last_run_at": _TS,
            "last_task_id": {"type": ["integer", "null"]}, "created_at": _TS, "updated_at": _TS}},
    }
    worker = {"type": "string", "minLength": 1, "maxLength": 255}
    pagination = {"pagination": _ref("Pagination")}
    created_item = {"allOf": [_ref("CreatedTask"), {"type": "object", "required": ["index", "ok"],
                                                    "properties": {"index": {"type": "integer"},
                                                                   "ok": {"const": True}}}]}
    outcome_item = {"allOf": [_ref("Outcome"), {"type": "object", "required": ["index", "ok"],
                                                "properties": {"index": {"type": "integer"},
                                                               "ok": {"const": True}}}]}
    create_batch = {"type": "object", "properties": {
        "results": {"type": "array", "items": _batch_result(created_item)},
        "created": {"type": "integer"}, "deduplicated": {"type": "integer"},
        "failed": {"type": "integer"}, "count": {"type": "integer"}}}
    file_response = {"description": "The file", "content": {
        "text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}},
        "text/plain": {"schema": {"type": "string"}}}}
    paths = {
        "/health": {"get": _op("Service and database health", {**_ok("Healthy"), **_errors("503")},
                               public=True)},
        "/openapi.json": {"get": _op("This document", {"200": {
            "description": "OpenAPI document (bare, not in the envelope)",
            "content": {"application/json": {"schema": {
                "type": "object", "required": ["openapi"],
                "properties": {"openapi": {"type": "string"}}}}}}},
            public=True)},
        "/docs": {"get": _op("Interactive API documentation (Swagger UI); no key needed to open", {
            "200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}},
            public=True)},
        "/docs/swagger-ui/{name}": {"get": _op(
            "A vendored Swagger UI file for /docs",
            {"200": file_response, "304": {"description": "Not modified (If-None-Match)"},
             **_errors("404")},
            params=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            public=True)},
        "/task-types/register": {"post": _op(
            "Register or update a task type",
            {**_ok("Updated", _ref("TaskType")), **_ok("Created", _ref("TaskType"), status="201"),
             **_errors("400", "401", "403", "413")},
            _body({"type": "object", "required": ["name", "version", "param_schema"], "properties": {
                "name": {"type": "string", "pattern": _NAME_PATTERN},
                "version": {"type": "string", "minLength": 1, "maxLength": 64},
                "param_schema": {"oneOf": [{"type": "object"}, {
                    "type": "string", "description": "A JSON text holding the schema object"}]},
                "max_attempts": {"type": "integer", "minimum": 1, "maximum": 1000},
                "claim_timeout": lease,
                "is_active": {"type": "boolean", "default": True}, **_RETRY}}))},
        "/task-types": {"get": _op("List task types by name, paged",
                                   {**_ok("Task types", {"type": "array", "items": _ref("TaskType")},
                                          extra=pagination), **_errors("400", "401")},
                                   params=[_query("active_only", {"type": "boolean"}, "Only active types")]
                                   + _paging(1000))},
        "/task-types/{name}": {"get": _op("Get a task type", {**_ok("Task type", _ref("TaskType")),
                                                               **_errors("400", "401", "404")},
                                          params=[_NAME])},
        "/tasks": {
            "post": _op("Create a task (deduplicated), or a batch with {tasks: [...]}",
                        {**_ok("Duplicate of an existing task (deduplicated: true), or batch results "
                               "(items may carry their own 4xx)", {"oneOf": [_ref("CreatedTask"), create_batch]}),
                         **_ok("Created", _ref("CreatedTask"), status="201"),
                         **_errors("400", "401", "403", "404", "413")},
                        _body({"oneOf": [_ref("NewTask"), {"type": "object", "required": ["tasks"],
                                                           "properties": {"tasks": {
                                                               "type": "array", "minItems": 1, "maxItems": 500,
                                                               "items": _ref("NewTask")}}}]})),
            "get": _op("List tasks, newest first unless sort_by says otherwise, paged",
                       {**_ok("Tasks", {"type": "array", "items": _ref("Task")}, extra=pagination),
                        **_errors("400", "401")},
                       params=[_query("status", {"enum": STATUSES}, "Status"),
                               _query("type", {"type": "string"}, "SQL LIKE pattern on the type name"),
                               _query("error_contains", {"type": "string", "maxLength": 1000,
                                                         "pattern": "^[^\\x00]*$"},
                                      "Text in the error message, any case"),
                               _query("older_than_seconds", {"type": "integer", "minimum": 0,
                                                             "maximum": MAX_AGE_SECONDS},
                                      "Created at least this many seconds ago"),
                               _query("newer_than_seconds", {"type": "integer", "minimum": 0,
                                                             "maximum": MAX_AGE_SECONDS},
                                      "Created at most this many seconds ago"),
                               _query("sort_by", {"enum": list(LIST_SORT_FIELDS)},
                                      "Default id (created_at is the same order); ties by id"),
                               _query("sort_order", {"enum": ["ASC", "DESC", "asc", "desc"]},
                                      "Default DESC")]
                       + _paging(50)),
        },
        "/tasks/claim": {"post": _op(
            "Claim the next task(s): by default highest priority, then oldest",
            {**_ok("The claimed task in full, or {tasks, count} when limit is given", {"oneOf": [
                _ref("Task"), {"type": "object", "required": ["tasks", "count"], "properties": {
                    "tasks": {"type": "array", "items": _ref("Task")}, "count": {"type": "integer"}}}]}),
             **_errors("400", "401", "403", "404", "413")},
            _body({"type": "object", "required": ["worker_id"], "additionalProperties": False,
                   "description": "Any other field is a 400 that names it: a claim never "
                                  "ignores a filter", "properties": {
                "worker_id": worker, "type_pattern": {"type": "string", "minLength": 1, "maxLength": 255},
                "task_types": {"type": "array", "minItems": 1, "maxItems": 100,
                               "items": {"type": "string", "pattern": _NAME_PATTERN},
                               "description": "Type names, any of which may be claimed"},
                "task_type_id": {"type": "integer", "minimum": 1, "maximum": 2 ** 32 - 1},
                "sort_by": {"enum": SORT_BY, "description": "created_at is creation (id) order"},
                "sort_order": {"enum": SORT_ORDER,
                               "description": "default DESC for priority, ASC otherwise; ties oldest first"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                "lease_seconds": lease,
                "results": {"type": "array", "minItems": 1, "maxItems": 100,
                            "description": "Finished tasks to complete first, as for POST "
                                           "/tasks/complete; the answer is then {tasks, count, "
                                           "results, completed, failed}", "items": {
                    "allOf": [_ref("Completion"), {"type": "object", "required": ["id"],
                                                   "properties": {"id": {"type": "integer", "minimum": 1,
                                                                         "maximum": 2 ** 62}}}]}},
                "request_key": {"type": "string", "minLength": 1, "maxLength": 128,
                                "pattern": "^[!-~]+$",
                                "description": "Unique per claim; a claim repeated with it answers "
                                               "the tasks the first one handed out, while their "
                                               "leases live"}}}))},
        "/tasks/complete": {"post": _op(
            "Complete many claimed tasks; answers 200 with an outcome per item (an item may carry its own 4xx)",
            {**_ok("Batch results", {"type": "object", "properties": {
                "results": {"type": "array", "items": _batch_result(outcome_item)},
                "completed": {"type": "integer"}, "failed": {"type": "integer"},
                "count": {"type": "integer"}}}), **_errors("400", "401", "403", "413")},
            _body({"type": "object", "required": ["worker_id", "results"], "properties": {
                "worker_id": worker, "results": {"type": "array", "minItems": 1, "maxItems": 100, "items": {
                    "allOf": [_ref("Completion"), {"type": "object", "required": ["id"],
                                                   "properties": {"id": {"type": "integer", "minimum": 1,
                                                                         "maximum": 2 ** 62}}}]}}}}))},
        "/tasks/{id}": {"get": _op("Get a task", {**_ok("Task", _ref("Task")), **_errors("401", "404")},
                                   params=[_ID])},
        "/tasks/{id}/history": {"get": _op("A task's events, oldest first",
                                           {**_ok("Events"), **_errors("401", "404")}, params=[_ID])},
        "/tasks/{id}/graph": {"get": _op(
            "The workflow a task belongs to: every task linked to it by dependencies, either "
            "way (at most %d tasks; truncated says when more exist)" % GRAPH_MAX_NODES,
            {**_ok("Nodes and edges", _ref("TaskGraph")), **_errors("401", "404")}, params=[_ID])},
        "/tasks/{id}/progress": {"post": _op(
            "Report progress; extends the lease (heartbeat)",
            {**_ok("Progress recorded"), **_errors("400", "401", "403", "404", "409", "413")},
            _body({"type": "object", "required": ["worker_id", "progress"], "properties": {
                "worker_id": worker, "progress": {"type": "number", "minimum": 0, "maximum": 100},
                "message": {"type": "string", "maxLength": 1000}, "lease_seconds": lease}}),
            params=[_ID])},
        "/tasks/{id}/complete": {"post": _op(
            "Complete a claimed task (success or failure)",
            {**_ok("Outcome", _ref("Outcome")), **_errors("400", "401", "403", "404", "409", "413")},
            _body({"allOf": [_ref("Completion"), {"type": "object", "required": ["worker_id"],
                                                  "properties": {"worker_id": worker}}]}),
            params=[_ID])},
        "/schedules": {
            "post": _op("Create a recurring schedule (every_seconds, or cron in a time zone)",
                        {**_ok("Created", _ref("Schedule"), status="201"),
                         **_errors("400", "401", "404", "409")}, _body(_ref("NewSchedule"))),
            "get": _op("List schedules by id",
                       {**_ok("Schedules", {"type": "object", "properties": {
                           "schedules": {"type": "array", "items": _ref("Schedule")},
                           "count": {"type": "integer"}, "total": {"type": "integer"},
                           "limit": {"type": "integer"}, "offset": {"type": "integer"}}}),
                        **_errors("400", "401")},
                       params=[_query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}, "Page size"),
                               _query("offset", {"type": "integer", "minimum": 0, "default": 0}, "Rows to skip")]),
        },
        "/schedules/{id}": {
            "get": _op("Get a schedule", {**_ok("Schedule", _ref("Schedule")), **_errors("401", "404")},
                       params=[_ID]),
            "delete": _op("Delete a schedule (its tasks stay)",
                          {**_ok("Deleted"), **_errors("401", "404")}, params=[_ID]),
        },
        "/schedules/{id}/pause": {"post": _op(
            "Pause a schedule: no occurrences until resumed",
            {**_ok("Paused", _ref("Schedule")), **_errors("401", "404")}, params=[_ID])},
        "/schedules/{id}/resume": {"post": _op(
            "Resume a schedule from now on (occurrences missed while paused are not made)",
            {**_ok("Resumed", _ref("Schedule")), **_errors("401", "404")}, params=[_ID])},
    }
    paths.update(_operations())
    paths.update(_ops_paths(s))
    servers = []
    for url in ((base_url,) if base_url is not None else ()) + DEFAULT_SERVERS:
        if url not in [entry["url"] for entry in servers]:
            servers.append({"url": url})
    return {
        "openapi": "3.1.0",
        "info": {"title": "taskq", "version": __version__,
                 "description": "A task queue served as CGI. Every response is a JSON envelope "
                                "with a Unix `timestamp`; errors carry their text in `error` and "
                                "`message`."},
        "servers": servers,
        "security": [{"apiKey": []}, {"bearer": []}],
        "paths": paths,
        "components": {"schemas": s, "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            "bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _operations():
    """Type settings and steering (taskq.operations); admin routes."""
    steered = {"allOf": [_ref("Task"), {"type": "object", "properties": {
        "previous_status": {"type": "string"}}}]}
    paths = {
        "/task-types/{name}/settings": {"post": _op(
            "Admin: set max_concurrency, dedupe_scope, is_paused",
            {**_ok("Task type", _ref("TaskType")), **_errors("400", "401", "403", "404")},
            _body({"type": "object", "minProperties": 1, "additionalProperties": False, "properties": {
                "max_concurrency": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000000},
                "dedupe_scope": {"enum": ["always", "active", "off"]},
                "is_paused": {"type": "boolean"}}}),
            params=[_NAME])},
        "/task-types/{name}/pause": {"post": _op(
            "Admin: claims pass over the type; creates go on",
            {**_ok("Task type", _ref("TaskType")), **_errors("400", "401", "403", "404")}, params=[_NAME])},
        "/task-types/{name}/resume": {"post": _op(
            "Admin: the type is claimed again",
            {**_ok("Task type", _ref("TaskType")), **_errors("400", "401", "403", "404")}, params=[_NAME])},
    }
    summaries = {
        "cancel": "Admin: cancel a pending, scheduled, waiting or claimed task",
        "retry": "Admin: a failed or cancelled task runs again (attempts reset)",
        "requeue": "Admin: a claimed task goes back to pending now",
        "rerun": "Admin: a completed task runs again although its dedupe key exists"}
    for action, summary in summaries.items():
        paths["/tasks/{id}/" + action] = {"post": _op(
            summary, {**_ok("The task after the change", steered), **_errors("401", "403", "404", "409")},
            params=[_ID])}
    paths["/tasks/bulk/{action}"] = {"post": _op(
        "Admin: apply an action to up to 1000 tasks matching a filter",
        {**_ok("Counts", {"type": "object", "properties": {
            "action": {"type": "string"}, "changed": {"type": "integer"},
            "ids": {"type": "array", "items": {"type": "integer"}},
            "skipped": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "integer"}, "status": {"type": "integer"}, "error": {"type": "string"}}}},
            "more": {"type": "boolean"}, "limit": {"type": "integer"}}}),
         **_errors("400", "401", "403", "404")},
        _body({"type": "object", "required": ["filter"], "additionalProperties": False, "properties": {
            "filter": {"type": "object", "additionalProperties": False, "properties": {
                "type": {"type": "string"},
                "status": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
                "error_contains": {"type": "string", "minLength": 1, "maxLength": 1000},
                "older_than_seconds": {"type": "integer", "minimum": 0}}},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}}}),
        params=[{"name": "action", "in": "path", "required": True,
                 "schema": {"enum": ["cancel", "retry", "requeue", "rerun"]}}])}
    return paths
