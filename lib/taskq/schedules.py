"""Recurring schedules: the /schedules routes, and making due occurrences inside claims.

There is no cron and no daemon on shared hosting, so a schedule's next task
is created by the first claim that finds it due (`materialize_due`). Of many
requests that find the same occurrence due, exactly one creates it: the
store moves next_run_at on with an UPDATE conditional on the value it read,
in the same transaction as the task insert, and the task's dedupe key is
the schedule id plus the occurrence time. When nothing is due a claim pays
one indexed read of the earliest next_run_at.

A window with no requests (a quiet night) is caught up per `catch_up`:
'latest' (the default) makes one task, for the most recent missed
occurrence; 'all' makes every missed occurrence, oldest first, at most
`catch_up_limit` of them (the rest are skipped). Either way next_run_at then
moves to the first occurrence after now.
"""

from datetime import datetime, timedelta, timezone

from . import validation as v
from .errors import BadRequest, NotFound, TaskqError

MAX_EVERY_SECONDS = 366 * 86400
MAX_CATCH_UP = 1000
DUE_BATCH = 5  # schedules a claim handles at most; the rest wait for the next claim
MAX_LIST_LIMIT = 1000
_WINDOWS = (1, 24, 24 * 8, 24 * 32, 24 * 367, 24 * 367 * 10)  # hours, for the latest cron occurrence


# -- occurrences (pure) --------------------------------------------------------
def parse_iso(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


class Recurrence:
    """A schedule's rule: every N seconds from an anchor, or a cron expression in a zone."""

    def __init__(self, every_seconds=None, cron_text=None, tz_name="UTC"):
        self.every = every_seconds
        if cron_text is not None:
            from . import cron

            self.cron = cron.parse(cron_text)
            self.zone = cron.zone(tz_name)
        else:
            self.cron = self.zone = None

    def after(self, moment, anchor=None):
        """The first occurrence strictly after `moment` (aware UTC), whole seconds."""
        if self.cron is None:
            if anchor is None or anchor > moment:
                return anchor if anchor is not None else moment + timedelta(seconds=self.every)
            steps = int((moment - anchor).total_seconds() // self.every) + 1
            return anchor + timedelta(seconds=steps * self.every)
        from .cron import next_after

        return next_after(self.cron, self.zone, moment)

    def plan(self, due, now, catch_up, limit):
        """(occurrences to create, next_run_at) for a schedule due at `due` <= now."""
        if catch_up == "all":
            found = [due]
            while len(found) < limit:
                following = self.after(found[-1], due)
                if following is None or following > now:
                    break
                found.append(following)
        else:
            found = [self._latest(due, now)]
        return found, self.after(now, due)

    def _latest(self, due, now):
        if self.cron is None:
            steps = int((now - due).total_seconds() // self.every)
            return due + timedelta(seconds=steps * self.every)
        for hours in _WINDOWS:
            start = now - timedelta(hours=hours)
            if start <= due:
                latest = due
            else:
                latest = self.after(start - timedelta(microseconds=1))
                if latest is None or latest > now:
                    continue
            while True:
                following = self.after(latest)
                if following is None or following > now:
                    return latest
                latest = following
        return due


def occurrence_key(schedule_id, moment):
    """The dedupe key of one occurrence: the same for every request that makes it."""
    import hashlib

    return hashlib.sha256(("schedule:%d:%s" % (schedule_id, v.iso_utc(moment))).encode()).hexdigest()


def schedule_view(row):
    import json

    out = {key: value for key, value in row.items() if key not in ("params_json", "is_paused", "db_now")}
    out["params"] = json.loads(row["params_json"])
    out["paused"] = bool(row["is_paused"])
    return out


# -- inside a claim --------------------------------------------------------------
def materialize_due(ctx):
    """Create the tasks of schedules that are due; one indexed read when none is."""
    rows = ctx.store.due_schedules(DUE_BATCH)
    for row in rows:
        try:
            _materialize(ctx, row)
        except Exception as exc:  # noqa: BLE001 - a broken schedule must not fail the claim
            from .cron import CronError

            if isinstance(exc, TaskqError) and exc.status >= 500:
                raise
            if isinstance(exc, CronError):
                # its rule cannot be read here (say, a zone name on Python 3.8): pause it,
                # so it neither fails every claim nor keeps due schedules behind it waiting
                ctx.store.set_schedule_paused(row["id"], True, None)
            from .log import log_exception

            log_exception(ctx.config, ctx.request.environ, exc, traceback=True)


def _materialize(ctx, row):
    rule = Recurrence(row["every_seconds"], row["cron"], row["timezone"])
    due, now = parse_iso(row["next_run_at"]), parse_iso(ctx.store.clock())
    found, following = rule.plan(due, now, row["catch_up"], row["catch_up_limit"])
    task_type = ctx.store.get_type(row["type"])
    items = []
    if task_type is not None and task_type["is_active"]:
        for moment in found:
            items.append({"type_id": task_type["id"], "type": row["type"],
                          "params_json": row["params_json"],
                          "dedupe_key": occurrence_key(row["id"], moment),
                          "priority": row["priority"],
                          "max_attempts": task_type["max_attempts"] or ctx.config.queue["max_attempts"],
                          "claim_timeout": task_type["claim_timeout"], "run_at": moment})
    ctx.store.advance_schedule(row["id"], row["next_run_at"],
                               v.iso_utc(following) if following else None, items)


# -- routes ----------------------------------------------------------------------
def _rule(body):
    every = v.integer(body, "every_seconds", low=1, high=MAX_EVERY_SECONDS)
    cron_text = v.string(body, "cron", required=False, max_length=255)
    tz_name = v.string(body, "timezone", required=False, max_length=64, default="UTC")
    if (every is None) == (cron_text is None):
        raise BadRequest("Give exactly one of the fields 'every_seconds' and 'cron'")
    if every is not None and "timezone" in body and body["timezone"] is not None:
        raise BadRequest("Field 'timezone' goes with 'cron', not with 'every_seconds'")
    from .cron import CronError

    try:
        return Recurrence(every, cron_text, tz_name), every, cron_text, tz_name
    except CronError as exc:
        field = "timezone" if "zone" in str(exc) else "cron"
        raise BadRequest("Field '%s': %s" % (field, exc)) from None


def create(ctx):
    body = ctx.request.json()
    name = v.type_name(body["name"], "name") if body.get("name") is not None else None
    rule, every, cron_text, tz_name = _rule(body)
    catch_up = v.choice(body, "catch_up", ("latest", "all")) or "latest"
    limit = v.integer(body, "catch_up_limit", low=1, high=MAX_CATCH_UP, default=100)
    start_at = v.timestamp(body, "start_at")
    if start_at is not None:
        start_at = start_at.replace(microsecond=0)
    from .tasks import prepare_task

    item = prepare_task(ctx, {"type": body.get("type"), "params": body.get("params"),
                               "priority": body.get("priority")}, {})
    now = parse_iso(ctx.store.clock())
    if rule.cron is None:
        first = start_at or now + timedelta(seconds=every)
    else:
        first = rule.after((start_at or now) - timedelta(microseconds=1))
    row = ctx.store.create_schedule({
        "name": name, "type_id": item["type_id"], "type": item["type"],
        "params_json": item["params_json"], "priority": item["priority"],
        "every_seconds": every, "cron": cron_text, "timezone": tz_name if cron_text else "UTC",
        "catch_up": catch_up, "catch_up_limit": limit, "next_run_at": v.iso_utc(first)})
    return 201, "Schedule created", schedule_view(row)


def _found(ctx, id):
    row = ctx.store.get_schedule(id)
    if row is None:
        raise NotFound("Schedule not found: %d" % id)
    return row


def get(ctx, id):
    return 200, "Schedule found", schedule_view(_found(ctx, id))


def list_all(ctx):
    query = ctx.request.query
    limit = v.query_int(query, "limit", 50, 1, MAX_LIST_LIMIT)
    offset = v.query_int(query, "offset", 0, 0, 10 ** 12)
    rows, total = ctx.store.list_schedules(limit, offset)
    schedules = [schedule_view(row) for row in rows]
    return 200, "Schedules", {"schedules": schedules, "count": len(schedules), "total": total,
                              "limit": limit, "offset": offset}


def pause(ctx, id):
    _found(ctx, id)
    return 200, "Schedule paused", schedule_view(ctx.store.set_schedule_paused(id, True, None))


def resume(ctx, id):
    """Resume from now on: occurrences missed while paused are not made."""
    row = _found(ctx, id)
    following = None
    if row["is_paused"]:
        rule = Recurrence(row["every_seconds"], row["cron"], row["timezone"])
        anchor = parse_iso(row["next_run_at"]) if row["next_run_at"] else None
        following = rule.after(parse_iso(ctx.store.clock()), anchor)
    row = ctx.store.set_schedule_paused(id, False, v.iso_utc(following) if following else None)
    return 200, "Schedule resumed", schedule_view(row)


def delete(ctx, id):
    if not ctx.store.delete_schedule(id):
        raise NotFound("Schedule not found: %d" % id)
    return 200, "Schedule deleted", {"id": id, "deleted": True}
