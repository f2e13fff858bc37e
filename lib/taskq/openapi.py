"""The OpenAPI 3.1 document for GET /openapi.json, built from plain dicts.

Paths come from the router's table, so a route cannot exist without being
documented here (tests/test_docs.py checks every route has an operation).
"""

from . import __version__


def _ref(name):
    return {"$ref": "#/components/schemas/" + name}


def _body(schema, required=True):
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _ok(description, data_schema=None, status="200"):
    schema = {"allOf": [_ref("Success")]}
    if data_schema is not None:
        schema = {"allOf": [_ref("Success"), {"type": "object", "properties": {"data": data_schema}}]}
    return {status: {"description": description, "content": {"application/json": {"schema": schema}}}}


def _errors(*statuses):
    text = {"400": "Bad request or validation failure", "401": "Missing or invalid API key",
            "403": "Task is leased to another worker, or the API key's role may not use this route",
            "404": "Not found",
            "409": "Task not claimed, lease lost, or the API key name is taken",
            "411": "Chunked body the server cannot read", "413": "Request body too large",
            "503": "Database unavailable (Retry-After says when to retry)"}
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


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_NAME = {"name": "name", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,255}$"}}
_TS = {"type": ["string", "null"], "format": "date-time"}


def _ops_paths(s):
    """Stats, metrics, API keys and retention (stats.py, admin.py)."""
    window = {"type": "object", "properties": {
        "completed": {"type": "integer"}, "failed": {"type": "integer"}, "retried": {"type": "integer"},
        "run_seconds": {"type": "object", "properties": {
            "count": {"type": "integer"}, "avg": {"type": ["number", "null"]},
            "p95": {"type": ["number", "null"]}}}}}
    by_outcome = {"type": "object", "additionalProperties": {"type": "integer"}}
    s["Stats"] = {"type": "object", "properties": {
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "total": {"type": "integer"},
        "oldest_pending_age_seconds": {"type": ["number", "null"]},
        "last_hour": window, "last_day": window,
        "types": {"type": "object", "additionalProperties": {"type": "object", "properties": {
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "last_hour": by_outcome, "last_day": by_outcome}}},
        "leases": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    s["ApiKey"] = {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "role": {"enum": ["producer", "worker", "admin", "read-only"]},
        "prefix": {"type": "string"}, "created_at": _TS, "last_used_at": _TS}}
    key_name = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
    return {
        "/stats": {"get": _op("Queue statistics: counts, oldest pending, last hour and day, leases",
                              {**_ok("Statistics", _ref("Stats")), **_errors("401", "403")})},
        "/metrics": {"get": _op("The statistics in the Prometheus text exposition format", {
            "200": {"description": "Prometheus text (version 0.0.4)",
                    "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}}},
            **_errors("401", "403")})},
        "/admin/keys": {
            "post": _op("Create an API key with a role (admin); the key is in this answer only",
                        {**_ok("Created: the key view plus `key`", {"allOf": [
                            _ref("ApiKey"), {"type": "object", "properties": {"key": {"type": "string"}}}]},
                            status="201"), **_errors("400", "401", "403", "409")},
                        _body({"type": "object", "required": ["name", "role"], "properties": {
                            "name": key_name, "role": {"enum": ["producer", "worker", "admin", "read-only"]}}})),
            "get": _op("List API keys (admin): names and prefixes, never the keys",
                       {**_ok("Keys", {"type": "object", "properties": {
                           "keys": {"type": "array", "items": _ref("ApiKey")},
                           "count": {"type": "integer"}}}), **_errors("401", "403")}),
        },
        "/admin/keys/{name}": {"delete": _op(
            "Revoke an API key (admin)", {**_ok("Revoked"), **_errors("401", "403", "404")},
            params=[{"name": "name", "in": "path", "required": True, "schema": key_name}])},
        "/admin/purge": {"post": _op(
            "Delete tasks and history older than the [retention] days now (admin)",
            {**_ok("Rows deleted per kind; `more` when old rows may remain"), **_errors("400", "401", "403")},
            _body({"type": "object", "properties": {
                "max_rows": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 10000}}},
                required=False))},
    }


def document():
    s = {
        "Success": {"type": "object", "required": ["success", "message", "data"],
                    "properties": {"success": {"const": True}, "message": {"type": "string"},
                                   "data": {}}},
        "Error": {"type": "object", "required": ["success", "error"],
                  "properties": {"success": {"const": False}, "error": {"type": "string"},
                                 "details": {}}},
        "TaskType": {"type": "object", "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"}, "version": {"type": "string"},
            "param_schema": {"type": "object"}, "is_active": {"type": "boolean"},
            "max_attempts": {"type": ["integer", "null"]}, "claim_timeout": {"type": ["integer", "null"]},
            "created_at": _TS, "updated_at": _TS,
            "max_concurrency": {"type": ["integer", "null"]}, "is_paused": {"type": "boolean"},
            "dedupe_scope": {"enum": ["always", "active", "off"]}}},
        "NewTask": {"type": "object", "required": ["type", "params"], "properties": {
            "type": {"type": "string"}, "params": {"type": "object"},
            "priority": {"type": "integer", "default": 0}}},
        "ClaimedTask": {"type": "object", "properties": {
            "id": {"type": "integer"}, "type": {"type": "string"}, "params": {"type": "object"},
            "attempts": {"type": "integer"}, "max_attempts": {"type": "integer"},
            "priority": {"type": "integer"}, "lease_expires_at": _TS}},
        "Completion": {"type": "object", "required": ["success"], "properties": {
            "success": {"type": "boolean"}, "result": {}, "error": {"type": "string"}}},
        "Task": {"type": "object", "properties": {
            "id": {"type": "integer"}, "type": {"type": "string"},
            "status": {"enum": ["pending", "claimed", "completed", "failed", "cancelled"]},
            "params": {"type": "object"}, "result": {}, "error_message": {"type": ["string", "null"]},
            "priority": {"type": "integer"}, "progress": {"type": "integer"},
            "progress_message": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
            "max_attempts": {"type": "integer"}, "claimed_by": {"type": ["string", "null"]},
            "claimed_at": _TS, "lease_expires_at": _TS, "completed_at": _TS,
            "created_at": _TS, "updated_at": _TS}},
    }
    worker = {"type": "string", "minLength": 1, "maxLength": 255}
    paths = {
        "/health": {"get": _op("Service and database health", {**_ok("Healthy"), **_errors("503")},
                               public=True)},
        "/openapi.json": {"get": _op("This document", _ok("OpenAPI document"), public=True)},
        "/task-types/register": {"post": _op(
            "Register or update a task type",
            {**_ok("Updated"), **_ok("Created", status="201"), **_errors("400", "401")},
            _body({"type": "object", "required": ["name", "version", "param_schema"], "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,255}$"},
                "version": {"type": "string"}, "param_schema": {"type": "object"},
                "max_attempts": {"type": "integer", "minimum": 1},
                "claim_timeout": {"type": "integer", "minimum": 1},
                "is_active": {"type": "boolean", "default": True}}}))},
        "/task-types": {"get": _op("List task types",
                                   {**_ok("Task types", {"type": "object", "properties": {
                                       "task_types": {"type": "array", "items": _ref("TaskType")},
                                       "count": {"type": "integer"}}}), **_errors("401")},
                                   params=[_query("active_only", {"type": "boolean"}, "Only active types")])},
        "/task-types/{name}": {"get": _op("Get a task type", {**_ok("Task type", _ref("TaskType")),
                                                               **_errors("401", "404")},
                                          params=[_NAME])},
        "/tasks": {
            "post": _op("Create a task (deduplicated), or a batch with {tasks: [...]}",
                        {**_ok("Duplicate of an existing task, or batch results"),
                         **_ok("Created", status="201"), **_errors("400", "401", "404", "413")},
                        _body({"oneOf": [_ref("NewTask"), {"type": "object", "required": ["tasks"],
                                                           "properties": {"tasks": {
                                                               "type": "array", "minItems": 1, "maxItems": 500,
                                                               "items": _ref("NewTask")}}}]})),
            "get": _op("List tasks, newest first",
                       {**_ok("Tasks", {"type": "object", "properties": {
                           "tasks": {"type": "array", "items": _ref("Task")}, "count": {"type": "integer"},
                           "total": {"type": "integer"}, "limit": {"type": "integer"},
                           "offset": {"type": "integer"}}}), **_errors("400", "401")},
                       params=[_query("status", {"enum": ["pending", "claimed", "completed", "failed", "cancelled"]}, "Status"),
                               _query("type", {"type": "string"}, "SQL LIKE pattern on the type name"),
                               _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}, "Page size"),
                               _query("offset", {"type": "integer", "minimum": 0, "default": 0}, "Rows to skip")]),
        },
        "/tasks/claim": {"post": _op(
            "Claim the next task(s): highest priority, then oldest",
            {**_ok("Claimed task, or {tasks, count} when limit is given", _ref("ClaimedTask")),
             **_errors("400", "401", "404")},
            _body({"type": "object", "required": ["worker_id"], "properties": {
                "worker_id": worker, "type_pattern": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                "lease_seconds": {"type": "integer", "minimum": 1},
                "results": {"type": "array", "minItems": 1, "maxItems": 100,
                            "description": "Finished tasks to complete first, as for POST "
                                           "/tasks/complete; the answer is then {tasks, count, "
                                           "results, completed, failed}", "items": {
                    "allOf": [_ref("Completion"), {"type": "object", "required": ["id"],
                                                   "properties": {"id": {"type": "integer"}}}]}},
                "request_key": {"type": "string", "minLength": 1, "maxLength": 128,
                                "pattern": "^[!-~]+$",
                                "description": "Unique per claim; a claim repeated with it answers "
                                               "the tasks the first one handed out, while their "
                                               "leases live"}}}))},
        "/tasks/complete": {"post": _op(
            "Complete many claimed tasks; answers per item",
            {**_ok("Batch results"), **_errors("400", "401")},
            _body({"type": "object", "required": ["worker_id", "results"], "properties": {
                "worker_id": worker, "results": {"type": "array", "minItems": 1, "maxItems": 100, "items": {
                    "allOf": [_ref("Completion"), {"type": "object", "required": ["id"],
                                                   "properties": {"id": {"type": "integer"}}}]}}}}))},
        "/tasks/{id}": {"get": _op("Get a task", {**_ok("Task", _ref("Task")), **_errors("401", "404")},
                                   params=[_ID])},
        "/tasks/{id}/history": {"get": _op("A task's events, oldest first",
                                           {**_ok("Events"), **_errors("401", "404")}, params=[_ID])},
        "/tasks/{id}/progress": {"post": _op(
            "Report progress; extends the lease (heartbeat)",
            {**_ok("Progress recorded"), **_errors("400", "401", "403", "404", "409")},
            _body({"type": "object", "required": ["worker_id", "progress"], "properties": {
                "worker_id": worker, "progress": {"type": "number", "minimum": 0, "maximum": 100},
                "message": {"type": "string"}, "lease_seconds": {"type": "integer", "minimum": 1}}}),
            params=[_ID])},
        "/tasks/{id}/complete": {"post": _op(
            "Complete a claimed task (success or failure)",
            {**_ok("Outcome: status, attempts, will_retry"), **_errors("400", "401", "403", "404", "409")},
            _body({"allOf": [_ref("Completion"), {"type": "object", "required": ["worker_id"],
                                                  "properties": {"worker_id": worker}}]}),
            params=[_ID])},
    }
    paths.update(_operations())
    paths.update(_ops_paths(s))
    return {
        "openapi": "3.1.0",
        "info": {"title": "taskq", "version": __version__,
                 "description": "A task queue served as CGI. Every response is a JSON envelope."},
        "servers": [{"url": "/api"}, {"url": "/cgi-bin/api.py"}],
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
            {**_ok("Task type", _ref("TaskType")), **_errors("400", "401", "404")},
            _body({"type": "object", "minProperties": 1, "additionalProperties": False, "properties": {
                "max_concurrency": {"type": ["integer", "null"], "minimum": 1, "maximum": 1000000},
                "dedupe_scope": {"enum": ["always", "active", "off"]},
                "is_paused": {"type": "boolean"}}}),
            params=[_NAME])},
        "/task-types/{name}/pause": {"post": _op(
            "Admin: claims pass over the type; creates go on",
            {**_ok("Task type", _ref("TaskType")), **_errors("400", "401", "404")}, params=[_NAME])},
        "/task-types/{name}/resume": {"post": _op(
            "Admin: the type is claimed again",
            {**_ok("Task type", _ref("TaskType")), **_errors("400", "401", "404")}, params=[_NAME])},
    }
    summaries = {
        "cancel": "Admin: cancel a pending or claimed task",
        "retry": "Admin: a failed or cancelled task runs again (attempts reset)",
        "requeue": "Admin: a claimed task goes back to pending now",
        "rerun": "Admin: a completed task runs again although its dedupe key exists"}
    for action, summary in summaries.items():
        paths["/tasks/{id}/" + action] = {"post": _op(
            summary, {**_ok("The task after the change", steered), **_errors("401", "404", "409")},
            params=[_ID])}
    paths["/tasks/bulk/{action}"] = {"post": _op(
        "Admin: apply an action to up to 1000 tasks matching a filter",
        {**_ok("Counts", {"type": "object", "properties": {
            "action": {"type": "string"}, "changed": {"type": "integer"},
            "ids": {"type": "array", "items": {"type": "integer"}},
            "skipped": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "integer"}, "status": {"type": "integer"}, "error": {"type": "string"}}}},
            "more": {"type": "boolean"}, "limit": {"type": "integer"}}}),
         **_errors("400", "401", "404")},
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
