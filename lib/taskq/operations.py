"""Steering tasks and the per-type settings claims obey (issue 9 items 3 and 4).

Routes: POST /task-types/{name}/settings | pause | resume, and
POST /tasks/{id}/cancel | retry | requeue | rerun and /tasks/bulk/{action}.
Each validates before the store is touched, so a bad request changes nothing;
which statuses an action acts on is `store.base.STEER_FROM`, and every change
is a conditional write in the store with its history event.

All of these are operator actions: ADMIN_ROUTES names them for role-based
keys (an admin key may call them; producer, worker and read-only keys may not).
"""

from . import validation as v
from .errors import BadRequest, NotFound, TaskqError
from .handlers import task_view, type_view
from .store.base import STEER_FROM

# Handler names (as router.ROUTES spells them) that need the admin role.
ADMIN_ROUTES = frozenset((
    "operations.type_settings", "operations.pause_type", "operations.resume_type",
    "operations.cancel_task", "operations.retry_task", "operations.requeue_task",
    "operations.rerun_task", "operations.bulk",
))

DEDUPE_SCOPES = ("always", "active", "off")
SETTINGS = ("max_concurrency", "dedupe_scope", "is_paused")
MAX_CONCURRENCY = 1000000
MAX_BULK = 1000
BULK_FILTERS = ("type", "status", "error_contains", "older_than_seconds")
MAX_AGE_SECONDS = 10 * 366 * 86400

DONE = {"cancel": "Task cancelled", "retry": "Task queued for retry",
        "requeue": "Task returned to the queue", "rerun": "Task queued to run again"}


# -- pure checks ---------------------------------------------------------------
def settings_changes(body):
    """The settings a body asks to change, checked; 400 naming the field otherwise."""
    unknown = sorted(set(body) - set(SETTINGS))
    if unknown:
        raise BadRequest("Unknown field '%s'; settings are %s" % (unknown[0], ", ".join(SETTINGS)))
    if not body:
        raise BadRequest("Nothing to change: give %s" % ", ".join(SETTINGS))
    changes = {}
    if "max_concurrency" in body:  # null removes the limit
        changes["max_concurrency"] = v.integer(body, "max_concurrency", low=1, high=MAX_CONCURRENCY)
    if "dedupe_scope" in body:
        scope = v.string(body, "dedupe_scope", max_length=16)
        if scope not in DEDUPE_SCOPES:
            raise BadRequest("Field 'dedupe_scope' must be one of %s" % ", ".join(DEDUPE_SCOPES))
        changes["dedupe_scope"] = scope
    if "is_paused" in body:
        changes["is_paused"] = v.boolean(body, "is_paused")
    return changes


def bulk_request(action, body):
    """(filters for Store.steer_matching, limit) from a bulk body; 400 naming the field."""
    if "filter" not in body:
        raise BadRequest("Missing required field: filter (an object; {} means every %s task)"
                         % " or ".join(STEER_FROM[action]))
    unknown = sorted(set(body) - {"filter", "limit"})
    if unknown:
        raise BadRequest("Unknown field '%s'; a bulk request has filter and limit" % unknown[0])
    raw = v.obj(body, "filter")
    unknown = sorted(set(raw) - set(BULK_FILTERS))
    if unknown:
        raise BadRequest("Unknown field 'filter.%s'; filters are %s" % (unknown[0], ", ".join(BULK_FILTERS)))
    filters = {}
    if raw.get("type") is not None:
        filters["type"] = v.like_pattern(v.string(raw, "type", max_length=255), "filter.type")
    status = raw.get("status")
    if status is not None:
        statuses = [status] if isinstance(status, str) else status
        if not isinstance(statuses, list) or not statuses or \
                not all(isinstance(s, str) for s in statuses):
            raise BadRequest("Field 'filter.status' must be a status or an array of statuses")
        for name in statuses:
            if name not in STEER_FROM[action]:
                raise BadRequest("Field 'filter.status': %s acts on %s tasks, not %r" % (
                    action, " or ".join(STEER_FROM[action]), name))
        filters["statuses"] = tuple(sorted(set(statuses)))
    if raw.get("error_contains") is not None:
        filters["error_contains"] = v.no_nul(v.string(raw, "error_contains", max_length=1000),
                                             "filter.error_contains")
    if raw.get("older_than_seconds") is not None:
        filters["older_than_seconds"] = v.integer(raw, "older_than_seconds", low=0,
                                                  high=MAX_AGE_SECONDS)
    limit = v.integer(body, "limit", low=1, high=MAX_BULK, default=MAX_BULK)
    return filters, limit


# -- task types ----------------------------------------------------------------
def _settings(ctx, name, changes, message):
    row = ctx.store.update_type_settings(name, changes)
    if row is None:
        raise NotFound("Task type not found: %s" % name)
    return 200, message, type_view(row)


def type_settings(ctx, name):
    v.type_name(name)
    return _settings(ctx, name, settings_changes(ctx.request.json()), "Task type settings updated")


def pause_type(ctx, name):
    v.type_name(name)
    return _settings(ctx, name, {"is_paused": True}, "Task type paused: claims pass over it")


def resume_type(ctx, name):
    v.type_name(name)
    return _settings(ctx, name, {"is_paused": False}, "Task type resumed")


# -- one task --------------------------------------------------------------------
def _steer(ctx, action, task_id):
    outcome, = ctx.store.steer(action, [task_id])
    if isinstance(outcome, TaskqError):
        raise outcome
    data = task_view(ctx.store.get_task(task_id))
    data["previous_status"] = outcome["previous_status"]
    return 200, DONE[action], data


def cancel_task(ctx, id):
    return _steer(ctx, "cancel", id)


def retry_task(ctx, id):
    return _steer(ctx, "retry", id)


def requeue_task(ctx, id):
    return _steer(ctx, "requeue", id)


def rerun_task(ctx, id):
    return _steer(ctx, "rerun", id)


# -- many tasks ------------------------------------------------------------------
def bulk(ctx, action):
    if action not in STEER_FROM:
        raise NotFound("Unknown bulk action: %s (use %s)" % (action, ", ".join(sorted(STEER_FROM))))
    filters, limit = bulk_request(action, ctx.request.json())
    pairs, more = ctx.store.steer_matching(action, filters, limit)
    changed = [task_id for task_id, outcome in pairs if not isinstance(outcome, TaskqError)]
    skipped = [{"id": task_id, "status": outcome.status, "error": outcome.message}
               for task_id, outcome in pairs if isinstance(outcome, TaskqError)]
    return 200, "%s: %d task(s) changed" % (action, len(changed)), {
        "action": action, "changed": len(changed), "ids": changed, "skipped": skipped,
        "more": more, "limit": limit}
