"""One function per route: validate, call the store, shape the answer.

Each returns (status, message, data) or (status, message, data, extra): extra
holds top-level envelope fields besides data (`pagination`). A None message
serves data bare, without the envelope (only /openapi.json does). Validation
happens before the store is touched, so a bad request changes nothing.
"""

import json

from . import __version__
from . import validation as v
from .errors import (BadRequest, DiskFull, NotFound, NotInstalled, SchemaNewer, SchemaPending,
                     TaskqError, Unavailable)
from .tasks import prepare_task

MAX_BATCH_CREATE = 500
MAX_BATCH_COMPLETE = 100
MAX_CLAIM_LIMIT = 100
MAX_LIST_LIMIT = 1000
# What /health announces to clients that want to know before they rely on it.
FEATURES = ("claim_results",)  # POST /tasks/claim completes the `results` it carries
MAX_OFFSET = 10 ** 12
MAX_PAGE = 10 ** 9


def _loads(text):
    return None if text is None else json.loads(text)


def task_view(row):
    """A store row as the API shows it: params and result parsed."""
    out = {}
    for key, value in row.items():
        if key == "params_json":
            out["params"] = _loads(value)
        elif key == "result_json":
            out["result"] = _loads(value)
        else:
            out[key] = value
    return out


def _page(query, default_limit, max_limit):
    """(limit, offset) from limit/offset or page/per_page (1-based), one pair or the other."""
    if query.get("per_page", "") != "" and query.get("limit", "") != "":
        raise BadRequest("Query parameters 'limit' and 'per_page' are the same; give one")
    if query.get("page", "") != "" and query.get("offset", "") != "":
        raise BadRequest("Query parameters 'offset' and 'page' both set where to start; give one")
    name = "per_page" if query.get("per_page", "") != "" else "limit"
    limit = v.query_int(query, name, default_limit, 1, max_limit)
    if query.get("page", "") != "":
        page = v.query_int(query, "page", 1, 1, MAX_PAGE)
        return limit, (page - 1) * limit
    return limit, v.query_int(query, "offset", 0, 0, MAX_OFFSET)


def pagination(total, limit, offset):
    """The `pagination` member of a list answer: both the page and the offset views."""
    return {"total": total, "page": offset // limit + 1, "per_page": limit,
            "total_pages": (total + limit - 1) // limit, "limit": limit, "offset": offset}


def type_view(row):
    out = dict(row)
    out["param_schema"] = json.loads(out.pop("param_schema_json"))
    out["is_active"] = bool(out["is_active"])
    if "is_paused" in out:
        out["is_paused"] = bool(out["is_paused"])
    return out


# -- health and docs ---------------------------------------------------------
def health(ctx):
    if ctx.locked:  # a fresh upload: say so without opening (or creating) a database
        return 200, NotInstalled.message, {"status": "not_installed", "installed": False,
                                           "version": __version__, "install": "install.py"}
    try:
        ctx.store.ping()
    except TaskqError as exc:
        if isinstance(exc, (SchemaPending, SchemaNewer)):  # reachable, at the wrong version
            exc.details = dict(exc.details, version=__version__,
                               database={"reachable": True, "backend": ctx.config.backend})
        elif isinstance(exc, Unavailable):
            exc.details = {"status": "unavailable", "database": {"reachable": False,
                                                                 "backend": ctx.config.backend},
                           "version": __version__}
            if isinstance(exc, DiskFull):  # reads work, writes do not
                exc.details["database"].update(reachable=True, disk_full=True)
        raise
    database = {"reachable": True, "backend": ctx.config.backend}
    if ctx.caller is not None:  # the exact server version helps an attacker: callers with a key only
        database["server"] = ctx.store.server_info()
        database["schema"] = ctx.store.schema_version()
    return 200, "OK", {"status": "ok", "version": __version__, "installed": True,
                       "features": list(FEATURES), "database": database}


def openapi(ctx):
    from .openapi import document

    # served bare: OpenAPI tools read it at the top level
    return 200, None, document(ctx.config, base_url(ctx.request.environ))


def base_url(environ):
    """Where this API answers, as the client addressed it (for `servers`): the
    request's URI less /openapi.json, so /api, /cgi-bin/api.py and the dev
    server's / all work; cleaned by web.url_prefix, so a crafted request line
    (//other.host/openapi.json) cannot point the docs' "Try it" at another site."""
    from .web import url_prefix

    return url_prefix(environ, "/openapi.json") or "/"


# -- task types --------------------------------------------------------------
def register_type(ctx):
    body = ctx.request.json()
    v.required_fields(body, ("name", "version", "param_schema"))
    name = v.type_name(body.get("name")) if "name" in body else v.string(body, "name")
    version = v.string(body, "version", max_length=64)
    schema = v.schema_object(body, "param_schema")
    max_attempts = v.integer(body, "max_attempts", low=1, high=1000)
    claim_timeout = v.integer(body, "claim_timeout", low=1, high=ctx.config.queue["max_lease_seconds"])
    is_active = v.boolean(body, "is_active", required=False, default=True)
    retry = _retry_policy(body)
    v.check_schema(schema)
    from .hashing import canonical_json

    # an identical re-register is every producer's start-up; a change is admin's
    row, created = ctx.store.register_type(name, version, canonical_json(schema),
                                           max_attempts, claim_timeout, is_active, retry=retry,
                                           may_change=ctx.role in ("admin", "open"))
    data = type_view(row)
    data.update(created=created, updated=not created)
    data.update(retry)
    if created:
        return 201, "Task type registered successfully", data
    return 200, "Task type updated successfully", data


def _retry_policy(body):
    """A type's retry backoff fields; omitted ones reset to no delay."""
    from .store.base import MAX_RETRY_DELAY

    return {"retry_delay_seconds": v.integer(body, "retry_delay_seconds", low=0, high=MAX_RETRY_DELAY),
            "retry_backoff": v.choice(body, "retry_backoff", ("fixed", "exponential")) or "fixed",
            "retry_max_delay_seconds": v.integer(body, "retry_max_delay_seconds", low=1,
                                                 high=MAX_RETRY_DELAY),
            "retry_jitter": v.number(body, "retry_jitter", 0, 1, 0.0)}


def get_type(ctx, name):
    v.type_name(name)
    row = ctx.store.get_type(name)
    if row is None:
        raise NotFound("Task type not found: %s" % name)
    return 200, "Task type found", type_view(row)


def list_types(ctx):
    query = ctx.request.query
    active_only = v.query_bool(query, "active_only", False)
    limit, offset = _page(query, MAX_LIST_LIMIT, MAX_LIST_LIMIT)
    rows = ctx.store.list_types(active_only)  # types are few: paged here, not in SQL
    page = [type_view(row) for row in rows[offset:offset + limit]]
    return 200, "Task types", page, {"pagination": pagination(len(rows), limit, offset)}


# -- tasks -------------------------------------------------------------------
def _shown_key(key):
    """Released keys ('~...': scope off, or scope active after the task ended) show as null."""
    return None if key is None or key.startswith("~") else key


def _created_view(row, deduplicated, dedupe_key):
    """A created (or found) task in full, as GET /tasks/{id} shows it, with its
    dedupe_key and whether it was deduplicated."""
    out = task_view(row)
    out.update(dedupe_key=_shown_key(dedupe_key), deduplicated=deduplicated)
    return out


def create_task(ctx):
    body = ctx.request.json()
    if "tasks" in body and "type" not in body:
        return _create_batch(ctx, body)
    item = prepare_task(ctx, body, {})
    if item["depends_on_refs"]:
        raise BadRequest("Field 'depends_on' holds the ref %r: refs name earlier items of a batch "
                         "(POST /tasks with {\"tasks\": [...]}); a single create takes task ids"
                         % item["depends_on_refs"][0])
    entry, = ctx.store.create_tasks([item])
    if isinstance(entry, TaskqError):  # a parent that does not exist: nothing was written
        raise entry
    row, deduplicated = entry
    if deduplicated:
        return 200, "Task already exists (deduplicated)", _created_view(row, True, item["dedupe_key"])
    return 201, "Task created successfully", _created_view(row, False, item["dedupe_key"])


def _create_batch(ctx, body):
    items = body["tasks"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_CREATE:
        raise BadRequest("Field 'tasks' must be an array of 1 to %d items" % MAX_BATCH_CREATE)
    prepared, results, types = [], [None] * len(items), {}
    refs, positions = {}, {}  # ref -> the index of the first item carrying it; index -> prepared
    for index, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("ref"), str):
            refs.setdefault(item["ref"], index)
    for index, item in enumerate(items):
        try:
            v.require_object(item, "tasks[%d]" % index)
            task = prepare_task(ctx, item, types)
            task["depends_on_items"] = _batch_links(index, task, refs, positions)
            positions[index] = len(prepared)
            prepared.append((index, task))
        except TaskqError as exc:
            if exc.status >= 500:
                raise
            results[index] = {"index": index, "ok": False, "status": exc.status,
                              "error": exc.message}
            if exc.details is not None:
                results[index]["details"] = exc.details
    if prepared:
        rows = ctx.store.create_tasks([item for _, item in prepared])
        for (index, item), entry in zip(prepared, rows):
            if isinstance(entry, TaskqError):  # a parent that does not exist (or was refused)
                results[index] = {"index": index, "ok": False, "status": entry.status,
                                  "error": entry.message}
                if entry.details is not None:
                    results[index]["details"] = entry.details
                continue
            row, deduplicated = entry
            result = _created_view(row, deduplicated, item["dedupe_key"])
            result.update(index=index, ok=True)
            results[index] = result
    for index, item in enumerate(items):
        if isinstance(item, dict) and isinstance(item.get("ref"), str):
            results[index]["ref"] = item["ref"]
    created = sum(1 for r in results if r["ok"] and not r["deduplicated"])
    deduplicated = sum(1 for r in results if r["ok"] and r["deduplicated"])
    failed = len(results) - created - deduplicated
    return 200, "Batch processed", {"results": results, "created": created,
                                    "deduplicated": deduplicated, "failed": failed,
                                    "count": len(results)}


def _batch_links(index, task, refs, positions):
    """The earlier items a batch item's depends_on refs name, as (position among
    the prepared items, label); 400 for its own ref, a later item's, an unknown
    one, or one of an item that was refused. Refs name earlier items only, so
    a batch cannot make a cycle (and existing ids cannot depend on a new task)."""
    own = task["ref"]
    if own is not None and refs[own] != index:
        raise BadRequest("Field 'ref' repeats the ref %r of tasks[%d]; refs must be unique in a batch"
                         % (own, refs[own]))
    links = []
    for name in task["depends_on_refs"]:
        at = refs.get(name)
        if at is None:
            raise BadRequest("Field 'depends_on' names the ref %r, which no item of the batch has" % name)
        if at == index:
            raise BadRequest("Field 'depends_on' names the item's own ref %r: a task cannot depend "
                             "on itself" % name)
        if at > index:
            raise BadRequest("Field 'depends_on' names the ref %r of a later item (tasks[%d]); refs "
                             "name earlier items of the batch" % (name, at))
        if at not in positions:
            raise BadRequest("Field 'depends_on' names the ref %r of tasks[%d], which was not created"
                             % (name, at))
        links.append((positions[at], "tasks[%d] (ref %r)" % (at, name)))
    return links


def _lease_seconds(ctx, body):
    return v.integer(body, "lease_seconds", low=1, high=ctx.config.queue["max_lease_seconds"])


# A claim refuses any other field: an ignored filter would hand a worker
# another pipeline's task (docs/api.md, "Unknown fields").
CLAIM_FIELDS = frozenset(("worker_id", "type_pattern", "task_types", "task_type_id", "limit",
                          "lease_seconds", "request_key", "sort_by", "sort_order", "results"))
MAX_CLAIM_TYPES = 100


def claim(ctx):
    from .store.base import SORT_FIELDS, SORT_ORDERS, claim_order

    body = ctx.request.json()
    v.known_fields(body, CLAIM_FIELDS, "a claim")
    worker_id = v.string(body, "worker_id")
    pattern = v.like_pattern(v.string(body, "type_pattern", required=False), "type_pattern")
    limit = v.integer(body, "limit", low=1, high=MAX_CLAIM_LIMIT)
    lease = _lease_seconds(ctx, body)
    request_key = v.request_key(body)
    task_type_id = v.integer(body, "task_type_id", low=1, high=2 ** 32 - 1)
    names = v.name_list(body, "task_types", MAX_CLAIM_TYPES)
    order = claim_order(v.choice(body, "sort_by", SORT_FIELDS),
                        v.choice(body, "sort_order", SORT_ORDERS, upper=True))
    if names is not None:  # any of these types (and task_type_id, when both are given)
        ids = {row["name"]: row["id"] for row in ctx.store.list_types(False)}
        wanted = tuple(sorted(ids[name] for name in set(names) if name in ids))
        task_type_id = wanted if task_type_id is None else tuple(
            t for t in wanted if t == task_type_id)
    finished = None
    if "results" in body:  # the worker's last tasks ride along: one request per batch
        finished = _checked_results(body)
        done = _complete_results(ctx, worker_id, finished)
    from .schedules import materialize_due

    materialize_due(ctx)  # recurring schedules make their due tasks here: no cron needed
    rows = ctx.store.claim(worker_id, pattern, limit or 1, lease, request_key=request_key,
                           task_type_id=task_type_id, order=order)
    rows = _with_parents(ctx, rows)
    if finished is not None:  # always the list form: the outcomes must reach the worker
        tasks = [task_view(row) for row in rows]
        done.update(tasks=tasks, count=len(tasks))
        return 200, "Completed %d, claimed %d task(s)" % (done["completed"], len(tasks)), done
    if limit is not None:
        tasks = [task_view(row) for row in rows]
        return 200, "Claimed %d task(s)" % len(tasks), {"tasks": tasks, "count": len(tasks)}
    if not rows:
        raise NotFound("No available tasks")
    return 200, "Task claimed successfully", task_view(rows[0])


def _with_parents(ctx, rows):
    """Claimed tasks with parents carry them, with their results (fan-in,
    at most dependencies.FAN_IN_BYTES of results per task)."""
    if not rows:
        return rows
    parents = ctx.store.parents_of([row["id"] for row in rows])
    if parents:
        rows = [dict(row, parents=parents[row["id"]]) if row["id"] in parents else row
                for row in rows]
    return rows


def progress(ctx, id):
    body = ctx.request.json()
    worker_id = v.string(body, "worker_id")
    value = body.get("progress")
    if value is None:
        raise BadRequest("Missing required field: progress")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest("Field 'progress' must be a number, not %s" % v.json_type(value))
    if not 0 <= value <= 100:
        raise BadRequest("Field 'progress' must be between 0 and 100")
    message = v.string(body, "message", required=False, max_length=1000, min_length=0)
    lease = _lease_seconds(ctx, body)
    row = ctx.store.progress(id, worker_id, int(value), message, lease)
    return 200, "Progress recorded", {"id": row["id"], "status": row["status"],
                                      "progress": row["progress"],
                                      "lease_expires_at": row["lease_expires_at"]}


def _retry_after(item, success):
    """A failing worker's own retry delay (rate limits), or None for the type's backoff."""
    from .store.base import MAX_RETRY_DELAY

    value = v.integer(item, "retry_after_seconds", low=0, high=MAX_RETRY_DELAY)
    if value is not None and success:
        raise BadRequest("Field 'retry_after_seconds' is only for a failed attempt (success false)")
    return value


def _completion(item):
    success = v.boolean(item, "success")
    result_json = error = None
    if success:
        if "result" in item:
            result_json = json.dumps(item["result"], ensure_ascii=False, separators=(",", ":"),
                                     allow_nan=False)
    else:
        error = v.string(item, "error", required=False, max_length=65535, min_length=0)
        if error is None:
            error = "Task failed"
    return success, result_json, error


def complete(ctx, id):
    body = ctx.request.json()
    worker_id = v.string(body, "worker_id")
    success, result_json, error = _completion(body)
    retry_after = _retry_after(body, success)
    outcome = ctx.store.complete(id, worker_id, success, result_json, error, retry_after=retry_after)
    message = "Task completed successfully" if success else ("Task failed; it will be retried" if outcome["will_retry"]
                                                else "Task failed")
    return 200, message, outcome


def _item_error(index, task_id, exc):
    return {"index": index, "id": task_id, "ok": False, "status": exc.status, "error": exc.message}


def _checked_results(body):
    """The `results` array of a batch complete (or of a claim): 400 unless 1-100 items."""
    items = body.get("results")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_COMPLETE:
        raise BadRequest("Field 'results' must be an array of 1 to %d items" % MAX_BATCH_COMPLETE)
    return items


def _complete_results(ctx, worker_id, items):
    """Complete each item; {results, completed, failed, count}, one outcome per item."""
    results = [None] * len(items)
    valid, positions, retry_after = [], [], {}
    for index, item in enumerate(items):
        try:
            v.require_object(item, "results[%d]" % index)
            task_id = v.integer(item, "id", required=True, low=1, high=2 ** 62)
            completion = _completion(item)
            delay = _retry_after(item, completion[0])
            if delay is not None:
                retry_after[task_id] = delay
            valid.append((task_id,) + completion)
            positions.append(index)
        except TaskqError as exc:
            if exc.status >= 500:
                raise
            results[index] = _item_error(index, item.get("id") if isinstance(item, dict) else None, exc)
    outcomes = ctx.store.complete_many(worker_id, valid, retry_after or None) if valid else []
    for index, item, outcome in zip(positions, valid, outcomes):
        if isinstance(outcome, TaskqError):
            results[index] = _item_error(index, item[0], outcome)
        else:
            outcome.update(index=index, ok=True)
            results[index] = outcome
    ok = sum(1 for r in results if r["ok"])
    return {"results": results, "completed": ok, "failed": len(results) - ok, "count": len(results)}


def complete_batch(ctx):
    body = ctx.request.json()
    worker_id = v.string(body, "worker_id")
    items = _checked_results(body)
    return 200, "Batch processed", _complete_results(ctx, worker_id, items)


def get_task(ctx, id):
    row = ctx.store.get_task(id)
    if row is None:
        raise NotFound("Task not found: %d" % id)
    view = task_view(row)
    links = ctx.store.dependencies(id)
    if links and (links["parents"] or links["children"]):  # only tasks of a workflow
        view.update(links)
    return 200, "Task found", view


def task_graph(ctx, id):
    graph = ctx.store.graph(id)
    if graph is None:
        raise NotFound("Task not found: %d" % id)
    from .store.dependencies import GRAPH_MAX_NODES

    graph.update(id=id, count=len(graph["nodes"]), max_nodes=GRAPH_MAX_NODES)
    return 200, "Task graph", graph


def task_history(ctx, id):
    events = ctx.store.task_history(id)
    if events is None:
        raise NotFound("Task not found: %d" % id)
    return 200, "Task history", {"id": id, "events": events, "count": len(events)}


def list_query(query):
    """(filters, order) of a task list from its query: error_contains,
    older_than_seconds, newer_than_seconds, sort_by, sort_order. The tasks
    page of the dashboard reads its form through this too."""
    from .store.base import LIST_SORT_FIELDS, list_order

    filters = {}
    text = query.get("error_contains") or None
    if text is not None:
        if len(text) > 1000:
            raise BadRequest("Query parameter 'error_contains' must be at most 1000 characters long")
        if "\x00" in text:
            raise BadRequest("Query parameter 'error_contains' must not contain NUL (U+0000)")
        filters["error_contains"] = text
    for name in ("older_than_seconds", "newer_than_seconds"):
        seconds = v.query_int(query, name, None, 0, v.MAX_AGE_SECONDS)
        if seconds is not None:
            filters[name] = seconds
    sort_by = query.get("sort_by") or None
    if sort_by is not None and sort_by not in LIST_SORT_FIELDS:
        raise BadRequest("Query parameter 'sort_by' must be one of %s" % ", ".join(LIST_SORT_FIELDS),
                         summary=v.CHOICE_SUMMARIES["sort_by"] % ", ".join(LIST_SORT_FIELDS))
    sort_order = query.get("sort_order") or None
    if sort_order is not None:
        if sort_order.upper() not in ("ASC", "DESC") or sort_order not in (
                sort_order.upper(), sort_order.lower()):
            raise BadRequest("Query parameter 'sort_order' must be one of ASC, DESC",
                             summary=v.CHOICE_SUMMARIES["sort_order"] % "ASC, DESC")
        sort_order = sort_order.upper()
    return filters, list_order(sort_by, sort_order)


def list_tasks(ctx):
    query = ctx.request.query
    status = query.get("status") or None
    if status is not None and status not in v.TASK_STATUSES:
        raise BadRequest("Unknown status %r; use one of %s" % (status, ", ".join(v.TASK_STATUSES)))
    pattern = v.like_pattern(query.get("type") or None, "type", "Query parameter")
    limit, offset = _page(query, 50, MAX_LIST_LIMIT)
    filters, order = list_query(query)
    rows, total = ctx.store.list_tasks(status, pattern, limit, offset, filters, order)
    tasks = [task_view(row) for row in rows]
    return 200, "Tasks", tasks, {"pagination": pagination(total, limit, offset)}
