"""The storage contract every backend fulfils, and what they share.

A backend owns its connection and its SQL (in `queries/<backend>.sql`) and
nothing above it sees either. It translates driver errors into taskq errors
at this border: a lost or refused connection is Unavailable, missing tables
are SchemaMissing. Timestamps leave a store as ISO-8601 UTC strings, taken
from the database's own clock so web and database hosts may disagree.

Rules every backend keeps (tests/http/test_api_*.py pins them on each):
- claim hands a task to at most one live lease, highest priority first, then
  oldest; it increments attempts and sets lease_expires_at = db_now + lease.
- an expired lease is dealt with inside claim: the task is claimable again
  while attempts < max_attempts, otherwise it ends failed with
  "lease expired after N attempts".
- complete and progress are conditional writes that succeed only for the
  worker holding a live lease.
- a UNIQUE index on dedupe_key decides duplicates; no read-then-insert.
- with history on, each state change writes its event in the same transaction.
"""

import os
import time

from ..errors import Conflict, Forbidden, NotFound, TaskqError, Unavailable

# A keyed claim that answered no task is remembered this long (seconds), so
# the first claim of a key that reaches the server after its own resend was
# answered empty claims nothing either (its client stopped listening); a keyed
# claim that would commit later than half of it after its request arrived
# refuses instead (stale_claim), so no first claim outlives the memory.
CLAIM_KEY_WINDOW = 600
# A retention backlog is counted exactly up to this many rows per table: a
# bounded read (tens of milliseconds at the cap), paid only while behind.
BACKLOG_CAP = 100000
# task_runs keeps two days of 5-minute periods (GET /stats reads one day).
RUNS_KEEP_SECONDS = 2 * 86400
# The statuses retention deletes; a request that moves tasks into them owes
# retention that many rows (Store.finished weighs its lottery ticket).
FINISHED = ("completed", "failed", "cancelled")
HISTORY_EVENTS = ("created", "claimed", "progress", "completed", "failed", "retry", "lease_expired",
                  "cancelled", "retried", "requeued", "rerun", "released", "restored")

# Steering actions and the statuses each acts on (taskq.operations).
# A scheduled task (run_at ahead, or a retry waiting its backoff) cancels like a pending one.
# A waiting task (dependencies) cancels too: its waiting children are settled as for a failure.
STEER_FROM = {"cancel": ("pending", "scheduled", "claimed", "waiting"),
              "retry": ("failed", "cancelled"),
              "requeue": ("claimed",), "rerun": ("completed",)}
# A released dedupe key ('~<id>', or '~<random>' for scope off) starts with this;
# hashes are hex, so a released key never deduplicates anything.
RELEASED_KEY = "~"

# Columns of a task as GET /tasks/{id} returns them, in order.
TASK_FIELDS = ("id", "type", "type_id", "status", "params", "result", "error_message", "priority",
               "progress", "progress_message", "attempts", "max_attempts", "claimed_by",
               "claimed_at", "lease_expires_at", "completed_at", "created_at", "updated_at",
               "run_at")

# A claim promotes at most this many due 'scheduled' tasks to 'pending'.
PROMOTE_BATCH = 100
# A retry delay (backoff or a worker's retry_after_seconds) never exceeds this.
MAX_RETRY_DELAY = 7 * 86400
RETRY_FIELDS = ("retry_delay_seconds", "retry_backoff", "retry_max_delay_seconds", "retry_jitter")


def load_queries(backend):
    """Named SQL blocks (`-- name: claim_next`) from queries/<backend>.sql."""
    path = os.path.join(os.path.dirname(__file__), "queries", backend + ".sql")
    queries = {}
    name = None
    lines = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("-- name:"):
                if name:
                    queries[name] = "".join(lines).strip().rstrip(";")
                name = line[len("-- name:"):].strip()
                if name in queries:  # a second block would silently replace the first
                    raise ValueError("%s: two queries are named %s" % (path, name))
                lines = []
            elif name and not line.lstrip().startswith("--"):
                lines.append(line)
    if name:
        queries[name] = "".join(lines).strip().rstrip(";")
    return queries


# Claim orders: (sort_by, sort_order) as the API takes them. created_at is
# served as id order: ids are handed out in creation order, and the id is the
# tie-breaker anyway, so the two orders agree (docs/api.md says so).
SORT_FIELDS = ("created_at", "priority", "id", "attempts")
SORT_ORDERS = ("ASC", "DESC")
DEFAULT_ORDER = ("priority", True)


def claim_order(sort_by=None, sort_order=None):
    """(column, descending) a claim sorts on; ties always go to the oldest (lowest id).

    Without sort_by the order is priority DESC; sort_order alone applies to
    priority; sort_by alone takes DESC for priority and ASC (oldest first)
    for the others."""
    column = "priority" if sort_by is None else sort_by
    if column == "created_at":
        column = "id"
    if sort_order is None:
        return column, column == "priority"
    return column, sort_order == "DESC"


# List orders of GET /tasks and the dashboard: newest first unless asked;
# created_at is served as id order, as for claims.
LIST_SORT_FIELDS = ("id", "created_at", "updated_at", "priority", "attempts")


def list_order(sort_by=None, sort_order=None):
    """The ORDER BY of a task list (pure): the column, then id the same way as tie-breaker.

    Without sort_order a list goes DESC: newest, highest priority, most
    attempts, most recently updated first."""
    column = "id" if sort_by in (None, "created_at") else sort_by
    if column not in LIST_SORT_FIELDS:
        raise ValueError("not a list order: %r" % (sort_by,))
    direction = "ASC" if sort_order == "ASC" else "DESC"
    if column == "id":
        return "id %s" % direction
    return "%s %s, id %s" % (column, direction, direction)


def like_escape_free(pattern):
    """True when a LIKE pattern has no wildcard, so it names one type exactly."""
    return "%" not in pattern and "_" not in pattern


class Store:
    """The contract. Methods come in families: *_type, *_task(s), claim/progress/complete."""

    backend = "abstract"
    # tasks this store's writes finished since the request began (app.py
    # resets it): retention's lottery weighs a request by it
    finished = 0

    started = None  # time.monotonic() of the request being served (app.Context sets it)

    def __init__(self, config):
        self.config = config
        self.queue = config.queue
        self.history_enabled = config.queue["history"]

    # -- lifecycle -----------------------------------------------------
    def close(self):
        raise NotImplementedError

    def ping(self):
        """Round trip to the database; raises Unavailable or SchemaMissing."""
        raise NotImplementedError

    def alive(self):
        """Is the connection still usable (a pooled store, before its next request)?"""
        return True

    def server_info(self):
        """A short description of the database server, for /health."""
        raise NotImplementedError

    def clock(self):
        """The database clock's now, as an ISO-8601 UTC string (whole seconds)."""
        raise NotImplementedError

    # -- task types ----------------------------------------------------
    def register_type(self, name, version, param_schema_json, max_attempts, claim_timeout,
                      is_active=True, retry=None, may_change=True):
        """Insert or update a type by name; returns (type_row, created).

        max_attempts and claim_timeout may be None (the config's apply). An
        inactive type refuses new tasks; its queued tasks are still claimed.
        With may_change false (a producer), an existing type is left as it is
        when the definition is the same, and a different one raises Forbidden
        (type_changes), decided under the row's lock.
        """
        raise NotImplementedError

    def get_type(self, name):
        """The type row as a dict (id, name, version, param_schema_json, is_active,
        max_attempts, claim_timeout, created_at, updated_at) or None."""
        raise NotImplementedError

    def list_types(self, active_only):
        raise NotImplementedError

    # -- tasks ---------------------------------------------------------
    def create_tasks(self, items):
        """Insert tasks in one transaction, deduplicated by dedupe_key.

        `items` are dicts: type_id, type, params_json, dedupe_key, priority,
        max_attempts, claim_timeout (None = config). Returns, per item in
        order, (row, deduplicated) with row = {id, type, status, priority,
        dedupe_key}; a duplicate (in the table or earlier in the same batch)
        returns the existing task's row.
        """
        raise NotImplementedError

    def claim(self, worker_id, type_pattern=None, limit=1, lease_seconds=None, request_key=None,
              task_type_id=None, order=DEFAULT_ORDER):
        """Claim up to `limit` tasks (due ones only: 'scheduled' tasks whose run_at
        has come are promoted to 'pending' first, PROMOTE_BATCH at a time) for `worker_id`; returns full task dicts.

        type_pattern is an SQL LIKE pattern on the type name; task_type_id
        restricts to one type (with a pattern, both must hold); order is
        claim_order()'s (column, descending). lease_seconds
        overrides the type's claim_timeout and the config's. An empty list
        means nothing is claimable. request_key: a claim repeated with the key
        of an earlier claim by the same worker answers the tasks that claim
        handed out, while their leases live, and claims nothing new (the
        first answer was lost; its tasks must not sit claimed by nobody).
        """
        raise NotImplementedError

    def progress(self, task_id, worker_id, progress, message, lease_seconds=None):
        """Record progress and extend the live lease; returns the task dict.

        NotFound, Forbidden (leased to another worker), Conflict (not claimed
        or lease expired).
        """
        raise NotImplementedError

    def complete(self, task_id, worker_id, success, result_json, error, retry_after=None):
        """Finish a claimed task; returns {id, status, attempts, will_retry}.

        Same errors as progress. A failure with attempts left goes back to
        pending (will_retry true), otherwise it is failed. A batch of one:
        backends implement complete_many only.
        """
        outcome = self.complete_many(worker_id, [(task_id, success, result_json, error)],
                                     None if retry_after is None else {task_id: retry_after})[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def complete_many(self, worker_id, items, retry_after=None):
        """Finish several claimed tasks in one transaction; one outcome per item.

        items: (task_id, success, result_json, error); retry_after: {task_id:
        seconds} a failing worker asked to wait (else the type's backoff).
        A retry with a delay goes to 'scheduled' until run_at. An outcome is what
        complete() returns, or the 4xx TaskqError that item got; such an item
        changes nothing and spoils no other. One commit for the lot is what
        makes a batch cheap (each commit is a log flush on InnoDB).
        """
        raise NotImplementedError

    def get_task(self, task_id):
        """The task dict (TASK_FIELDS, params and result as JSON text) or None."""
        raise NotImplementedError

    def task_history(self, task_id):
        """Events oldest first [{event, worker_id, message, at}], or None if no task."""
        raise NotImplementedError

    def list_tasks(self, status, type_pattern, limit, offset, filters=None, order="id DESC"):
        """(tasks in `order` (a list_order()), total matching).

        filters: {error_contains (case-insensitive text in the error),
        older_than_seconds, newer_than_seconds (by created_at)}, any of them."""
        raise NotImplementedError

    # -- type settings and steering (taskq.operations) -------------------
    def update_type_settings(self, name, changes):
        """Apply {max_concurrency, is_paused, dedupe_scope} (any of them) to a type;
        the updated type row, or None when there is no such type."""
        raise NotImplementedError

    def steer(self, action, task_ids):
        """Apply a STEER_FROM action to tasks in one transaction; one outcome per id.

        An outcome is {id, previous_status, status} or the 4xx TaskqError that
        task got (NotFound, Conflict): such a task is left as it was. Every
        write is conditional on the status it read, and each change writes its
        history event in the same transaction.
        """
        raise NotImplementedError

    def steer_matching(self, action, filters, limit):
        """steer() on the first `limit` tasks (id order) that match `filters`
        ({type, statuses, error_contains, older_than_seconds}) and the action's
        statuses; returns (outcomes, more) where more says whether further
        tasks matched."""
    # -- schedules (times in and out as ISO-8601 UTC strings, whole seconds) --
    def create_schedule(self, item):
        """Insert a schedule (SCHEDULE_FIELDS minus id and the timestamps); its row.

        Conflict when its name is taken."""
        raise NotImplementedError

    def get_schedule(self, schedule_id):
        raise NotImplementedError

    def list_schedules(self, limit, offset):
        """(schedules by id, total)."""
        raise NotImplementedError

    def set_schedule_paused(self, schedule_id, paused, next_run_at):
        """Pause, or resume with a new next_run_at; the row, or None if no schedule."""
        raise NotImplementedError

    def delete_schedule(self, schedule_id):
        """True when a schedule was deleted; tasks it made stay."""
        raise NotImplementedError

    def due_schedules(self, limit):
        """Unpaused schedules whose next_run_at has come (database clock), earliest first.

        One read of task_schedules_due: a claim pays only this when none is due."""
        raise NotImplementedError

    def advance_schedule(self, schedule_id, seen_next_run_at, next_run_at, items):
        """Move a schedule on and create its occurrences, in one transaction.

        The UPDATE is conditional on next_run_at still being `seen_next_run_at`,
        so of many requests that saw the same due schedule exactly one creates
        the tasks (items as for create_tasks); the others get None. Returns
        [(row, deduplicated)] for the winner."""
        raise NotImplementedError

    # -- counters (GET /stats) -----------------------------------------
    # Every status change calls _tally(changes, runs) inside its own
    # transaction: changes are (type, old status or None, new status or None),
    # runs are (type, outcome, run_ms or None) for finished attempts. Counters
    # are keyed by the status string, so a new status needs no schema change.
    def _tally(self, changes, runs=()):
        raise NotImplementedError

    def stats(self):
        """Raw figures for GET /stats, each from counters or one bounded indexed read:
        {counts: [(type, status, n)], oldest_pending_seconds: float or None,
        runs_hour, runs_day: [(type, outcome, bucket, n, run_ms sum)] over the
        current 5-minute period and the 11 / 287 before it, leases: [(worker_id, n)]}."""
        raise NotImplementedError

    # -- API keys ------------------------------------------------------
    def create_key(self, name, role, prefix, key_hash):
        """Store a key's hash; returns the key row (never the hash); Conflict on a taken name."""
        raise NotImplementedError

    def list_keys(self):
        """[{id, name, role, prefix, created_at, last_used_at}] by name."""
        raise NotImplementedError

    def revoke_key(self, name):
        """Delete the key named `name`; False when there is none."""
        raise NotImplementedError

    def key_by_hash(self, key_hash):
        """{id, name, role} of the key with this hash (one unique-index lookup) or None.
        Records last_used_at at most once a minute, so a request rarely writes."""
        raise NotImplementedError

    def has_keys(self):
        """True when any API key exists (then a request without a key is refused)."""
        raise NotImplementedError

    # -- retention -----------------------------------------------------
    def purge(self, keep, history_keep, batch):
        """Delete one batch of old rows per kind; returns {kind: rows deleted}.

        keep: {status: seconds} (0 = keep forever) for finished tasks, by
        updated_at through tasks_retention; history_keep (seconds) for
        task_history, read from its oldest end by primary key. At most `batch`
        tasks of each status and HISTORY_BATCH_FACTOR * batch history rows (and
        as many taskq_claim_requests rows older than CLAIM_KEY_WINDOW), in one
        short transaction (one commit: a log flush on InnoDB),
        so a purge never scans and never holds locks long; it locks only
        finished rows, which no claim reads.
        """
        raise NotImplementedError

    def backlog(self, keep, history_keep, cap=BACKLOG_CAP):
        """{table: rows past their retention still present}, each counted
        through the index purge reads and at most `cap` (so a count of `cap`
        means at least that many): tasks (every finished status),
        task_history (old rows among its oldest `cap`, read only when its
        oldest row is old), task_runs, taskq_claim_requests (older than
        CLAIM_KEY_WINDOW)."""
        raise NotImplementedError

    # -- dashboard -----------------------------------------------------
    def claimed_tasks(self, limit):
        """Claimed tasks, newest first: {id, type, claimed_by, claimed_at, lease_expires_at,
        progress, updated_at}; the dashboard's "workers seen" list."""
        raise NotImplementedError

    def recent_finishers(self, seconds, scan, limit):
        """Workers that completed or failed tasks in the last `seconds`, latest first:
        [{worker, last_at, finished}], reading at most `scan` of the newest finished
        tasks per status (so `finished` is capped by it)."""
        raise NotImplementedError

    def hourly_runs(self):
        """(the current hour since the epoch by the database clock, [(hour, outcome, n)])
        for the finished attempts of the last 24 hours, from task_runs."""
        raise NotImplementedError

    def schema_version(self):
        """The schema version the database is at (the dashboard's health page)."""
        raise NotImplementedError

    def recount(self):
        """Heal the maintained counters from the rows they count: task_counts
        (GET /stats) exactly, usage_count raised to the tasks present (it counts
        tasks ever made, so it is never lowered). Returns what was wrong:
        {"task_counts": [{type, status, was, now}], "usage_count": [{type, was, now}]}."""
        raise NotImplementedError

    def failed_groups(self, limit):
        """Failed tasks grouped by the first 200 characters of their error, biggest
        group first: [{error, count, last_at, last_id}]."""
        raise NotImplementedError

    def create_session(self, token_hash, csrf_token, key_ref, ttl_seconds):
        """Store a dashboard session that lives ttl_seconds by the database clock."""
        raise NotImplementedError

    def get_session(self, token_hash):
        """The live session {token_hash, csrf_token, key_ref, created_at, expires_at} or None."""
        raise NotImplementedError

    def delete_session(self, token_hash):
        """End a session (logout); expired sessions are swept at the same time."""
        raise NotImplementedError

    def login_failures(self, address, window_seconds):
        """Failed dashboard logins from `address` within the last window_seconds."""
        raise NotImplementedError

    def record_login_failure(self, address, window_seconds):
        """Count one failed login; a window older than window_seconds starts again at 1."""
        raise NotImplementedError


# -- decisions shared by the backends ----------------------------------------
def type_changes(existing, version, param_schema_json, max_attempts, claim_timeout, is_active,
                 retry):
    """The fields of a stored type that a re-register would change, in a fixed
    order ([] = the same definition). A producer may only re-register a type
    unchanged; changing one is admin's (the type is everyone's queue)."""
    import json

    changed = []
    if existing["version"] != version:
        changed.append("version")
    if existing["param_schema_json"] != param_schema_json and (
            json.loads(existing["param_schema_json"]) != json.loads(param_schema_json)):
        changed.append("param_schema")
    for field, value in (("max_attempts", max_attempts), ("claim_timeout", claim_timeout)):
        if existing[field] != value:
            changed.append(field)
    if bool(existing["is_active"]) != bool(is_active):
        changed.append("is_active")
    for field in RETRY_FIELDS:
        if retry is not None and existing[field] != retry[field]:
            changed.append(field)
    return changed


def refuse_type_change(name, changed):
    return Forbidden("Task type %s exists with a different %s; changing a type needs an admin key "
                     "(a producer may re-register it only unchanged)" % (name, ", ".join(changed)))


def check_lease(task_id, state, worker_id, lease_live, claimed_before):
    """Raise unless `worker_id` holds a live lease on the task in `state`.

    state: the task's row (status, claimed_by) or None; lease_live: whether
    lease_expires_at is still ahead of the database clock; claimed_before: a
    callable telling whether this worker held the task earlier, so a worker
    that lost its lease to another gets 409 rather than 403.
    """
    if state is None:
        raise NotFound("Task not found: %d" % task_id)
    if state["status"] == "cancelled":
        raise Conflict("Task was cancelled")
    if state["status"] != "claimed":
        raise Conflict("Task is not claimed (status: %s)" % state["status"],
                       summary="Task is not in claimed state")
    if state["claimed_by"] != worker_id:
        if claimed_before():
            raise Conflict("Lease lost: the lease expired and the task was claimed by another worker")
        raise Forbidden("Task is claimed by another worker")
    if not lease_live:
        raise Conflict("Lease expired: the task may be claimed by another worker")


def repeated_outcome(task_id, state, worker_id, success, result_json, error):
    """The earlier outcome when this complete repeats one `worker_id` made, else None.

    A complete that was applied but whose answer was lost (a timeout) is sent
    again; it gets the same answer instead of 409. It is a repeat when this
    worker finished the task last, with the same success and the same result
    or error; state holds the finished_* columns, result_json, error_message.
    """
    if state is None or state.get("finished_by") != worker_id:
        return None
    status = state["finished_status"]
    if success:
        if status != "completed" or state["result_json"] != result_json:
            return None
    elif status not in ("pending", "scheduled", "failed") or state["error_message"] != error:
        return None
    return {"id": task_id, "status": status, "attempts": state["finished_attempt"],
            "will_retry": status in ("pending", "scheduled")}


def holds_lease(state, worker_id, lease_live):
    return bool(state and state["status"] == "claimed" and state["claimed_by"] == worker_id
                and lease_live)


def client_error(exc):
    """True for an error that belongs to one batch item (4xx), not to the request."""
    return isinstance(exc, TaskqError) and exc.status < 500


def expired_message(attempts):
    return "lease expired after %d attempt%s" % (attempts, "" if attempts == 1 else "s")


def retry_delay(policy, attempts, requested=None, rand=None):
    """Seconds before a failed attempt runs again (0 = at once).

    requested: a worker's retry_after_seconds, which wins over the type's
    policy. Otherwise retry_delay_seconds, doubled per attempt after the first
    with retry_backoff 'exponential', capped at retry_max_delay_seconds, then
    spread by +-retry_jitter (a fraction) with rand() in [0, 1). Never above
    MAX_RETRY_DELAY.
    """
    if requested is not None:
        return max(0, min(int(requested), MAX_RETRY_DELAY))
    if policy is None or not policy.get("retry_delay_seconds"):
        return 0
    delay = float(policy["retry_delay_seconds"])
    if policy.get("retry_backoff") == "exponential":
        delay *= 2 ** min(max(attempts - 1, 0), 40)
    cap = min(policy.get("retry_max_delay_seconds") or MAX_RETRY_DELAY, MAX_RETRY_DELAY)
    delay = min(delay, cap)
    jitter = policy.get("retry_jitter") or 0
    if jitter:
        if rand is None:
            import random

            rand = random.random
        delay *= 1 + jitter * (2 * rand() - 1)
    return int(round(max(0.0, min(delay, cap))))


# Upper bounds (seconds) of the run-time histogram in task_runs; the last is +Inf.
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 21600, float("inf"))
PERIOD_SECONDS = 300
# A task leaves three or more history events (created, claimed, completed,
# progress...), and a history row is cheap to delete (a primary-key range,
# one secondary index), so a retention batch takes this many times more of them.
HISTORY_BATCH_FACTOR = 4
KEY_TOUCH_SECONDS = 60


def runs_purge_bound(oldest, cutoff, periods=12):
    """The period below which a retention batch deletes task_runs rows, or None:
    rows older than `cutoff`, at most `periods` periods of them."""
    if oldest is None or oldest >= cutoff:
        return None
    return min(cutoff, oldest + periods)


def run_bucket(run_ms):
    """The histogram bucket of a run time in ms; -1 for an attempt without one (expired lease)."""
    if run_ms is None:
        return -1
    seconds = run_ms / 1000.0
    for index, bound in enumerate(RUN_BUCKETS):
        if seconds <= bound:
            return index
    return len(RUN_BUCKETS) - 1


def finished_count(changes):
    """How many of the (type, old, new) changes finish a task."""
    return sum(1 for _, old, new in changes if new in FINISHED and old != new)


def count_deltas(changes):
    """[((type, status), delta)] from (type, old, new) changes, sorted so that
    concurrent transactions lock counter rows in one order (no deadlocks)."""
    deltas = {}
    for task_type, old, new in changes:
        if old == new:
            continue
        if old is not None:
            deltas[(task_type, old)] = deltas.get((task_type, old), 0) - 1
        if new is not None:
            deltas[(task_type, new)] = deltas.get((task_type, new), 0) + 1
    return sorted((key, delta) for key, delta in deltas.items() if delta)


def run_deltas(runs):
    """[((type, outcome, bucket), count, run_ms sum)] from (type, outcome, run_ms), sorted."""
    sums = {}
    for task_type, outcome, run_ms in runs:
        key = (task_type, outcome, run_bucket(run_ms))
        count, total = sums.get(key, (0, 0))
        sums[key] = (count + 1, total + max(0, int(run_ms or 0)))
    return sorted((key, count, total) for key, (count, total) in sums.items())


def order_candidates(rows, limit, descending=True):
    """Merge per-type heads (id, sort value, ...) into claim order: the value
    (descending or not), then id ascending."""
    if descending:
        return sorted(rows, key=lambda row: (-row[1], row[0]))[:limit]
    return sorted(rows, key=lambda row: (row[1], row[0]))[:limit]


def pick_type_ids(matching, task_type_id):
    """The type ids a claim may take from: those matching the pattern (None =
    all types), narrowed to task_type_id when one is given: an id, or a
    tuple of ids (a claim's task_types; empty when none of them exists)."""
    if task_type_id is None:
        return matching
    wanted = list(task_type_id) if isinstance(task_type_id, tuple) else [task_type_id]
    if matching is None:
        return wanted
    return [type_id for type_id in matching if type_id in wanted]


# -- concurrency limits, pause, dedupe scope, steering -----------------------
def claim_caps(type_ids, restricted, live):
    """{type_id: how many more it may be claimed (None = no limit)} for a claim.

    type_ids: the types the claim may take (all, or those its pattern names);
    restricted: {type_id: (is_paused, max_concurrency)}; live: {type_id: live
    leases}. Paused types and types at their limit are left out: the claim
    passes over them.
    """
    caps = {}
    for type_id in type_ids:
        paused, limit = restricted.get(type_id, (0, None))
        if paused:
            continue
        if limit is None:
            caps[type_id] = None
        elif limit - live.get(type_id, 0) > 0:
            caps[type_id] = limit - live.get(type_id, 0)
    return caps


def capped_heads(caps, limit):
    """(type_id, how many heads to read) per type: at most `limit`, at most its cap."""
    return [(type_id, limit if cap is None else min(cap, limit)) for type_id, cap in caps.items()]


def steer_key(state):
    """The dedupe_key a task should hold again after retry or rerun.

    Scope 'active' released the key when the task finished; it is computed
    again from the type and params (the same hash create used)."""
    key = state["dedupe_key"]
    if state["dedupe_scope"] == "active" and key.startswith(RELEASED_KEY):
        import json

        from ..hashing import dedupe_key

        return dedupe_key(state["type"], json.loads(state["params_json"]))
    return key


def steer_event(action, state):
    """(event, message) for the history of a steered task."""
    if action == "cancel":
        if state["status"] == "claimed":
            return "cancelled", "cancelled while claimed by %s" % state["claimed_by"]
        return "cancelled", "cancelled while %s" % state["status"]
    if action == "requeue":
        return "requeued", "taken back from %s" % state["claimed_by"]
    if action == "retry":
        return "retried", "retry of a %s task; attempts reset" % state["status"]
    return "rerun", "re-run of a completed task, asked for explicitly; attempts reset"


def steer_refusal(action, task_id, state):
    """The error for a task `action` cannot act on, or None when it can."""
    if state is None:
        return NotFound("Task not found: %d" % task_id)
    if state["status"] not in STEER_FROM[action]:
        return Conflict("Cannot %s a %s task (%s acts on %s tasks)" % (
            action, state["status"], action, " or ".join(STEER_FROM[action])))
    return None


def stale_claim(started, now=None):
    """The error for a keyed claim about to commit more than half of
    CLAIM_KEY_WINDOW after its request arrived (started: time.monotonic() of
    the arrival, None outside a request), else None. Its resend may have been
    answered empty longer ago than that answer is remembered."""
    if started is None:
        return None
    waited = (time.monotonic() if now is None else now) - started
    if waited <= CLAIM_KEY_WINDOW / 2:
        return None
    return Unavailable("This claim waited %d s for the database and claimed nothing; claim again "
                       "with the same request_key" % waited)


def dedupe_conflict(holder):
    return Conflict("Another pending, scheduled or claimed task holds this dedupe key: %s" %
                    ("id %d" % holder["id"] if holder else "unknown"))


def spread_candidates(rows, salt):
    """Candidates (id, priority) in claim order, mixed within each priority.

    Claimers on different cluster nodes cannot see each other's row locks;
    taking the same head row would make all but one of them fail at COMMIT.
    An order among tasks of equal priority that differs with each claim's
    salt (a random 32-bit number) keeps them apart, and a higher priority
    still always goes first. A hash of id and salt rather than the random
    module: importing that costs a CGI request ~2 ms.
    """
    def mixed(task_id):
        key = ((task_id ^ salt) * 0x9E3779B1) & 0xFFFFFFFF
        return key ^ (key >> 15)

    return [row[0] for row in sorted(rows, key=lambda row: (-row[1], mixed(row[0])))]
