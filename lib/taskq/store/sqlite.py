"""The embedded SQLite store: the zero-configuration default.

WAL mode lets readers run beside the one writer; every write runs inside
BEGIN IMMEDIATE, which takes the write lock up front, so a claim's read and
its update can never interleave with another process's. The busy timeout
makes concurrent requests queue for that lock instead of failing.
The clock is this host's: SQLite is embedded, so the database and the web
process share it.
"""

import os
import sqlite3
import time

from ..errors import Conflict, DiskFull, SchemaNewer, Unavailable
from .base import (BACKLOG_CAP, CLAIM_KEY_WINDOW, DEFAULT_ORDER, HISTORY_BATCH_FACTOR,
                   KEY_TOUCH_SECONDS, PERIOD_SECONDS, PROMOTE_BATCH, RETRY_FIELDS,
                   RUNS_KEEP_SECONDS, STEER_FROM, Store, capped_heads, check_lease, claim_caps,
                   client_error, count_deltas, dedupe_conflict, expired_message, finished_count,
                   holds_lease, like_escape_free, load_queries, order_candidates, pick_type_ids,
                   refuse_type_change, repeated_outcome, retry_delay, run_deltas,
                   runs_purge_bound, stale_claim, steer_event, steer_key, steer_refusal,
                   type_changes)
from .dependencies import DependencyRules

SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "sqlite_schema.sql")
# sqlite_migrations/NNNN_name.sql bring a database at version NNNN-1 to NNNN;
# sqlite_schema.sql is always the whole newest schema, for a new database.
MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), "sqlite_migrations")
EXPIRE_BATCH = 50
Q = load_queries("sqlite")


def now_ms():
    return int(time.time() * 1000)


def iso(ms):
    if ms is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


TIME_FIELDS = ("claimed_at", "lease_expires_at", "completed_at", "created_at", "updated_at",
               "run_at", "next_run_at", "last_run_at", "last_used_at", "expires_at")
PERIOD_MS = PERIOD_SECONDS * 1000
DAY_MS = 86400 * 1000

# (column, descending) -> the index a claim reads in order, for all types and
# inside one type, and its ORDER BY (sqlite_schema.sql, version 2). An ORDER BY
# of None: the order runs against the index (priority ASC on tasks_claim,
# attempts DESC on tasks_attempts) and steps through its groups, as
# MySQLStore does (STEPS: the comparison and direction of the step).
CLAIM_ORDERS = {
    ("priority", True): ("tasks_claim", "tasks_type_claim", "priority DESC, id"),
    ("priority", False): ("tasks_claim", "tasks_type_claim", None),
    ("attempts", False): ("tasks_attempts", "tasks_type_attempts", "attempts, id"),
    ("attempts", True): ("tasks_attempts", "tasks_type_attempts", None),
    ("id", False): ("tasks_status_id", "tasks_type_status_id", "id"),
    ("id", True): ("tasks_status_id", "tasks_type_status_id", "id DESC"),
}
STEPS = {("priority", False): (">", "ASC", -2 ** 31 - 1), ("attempts", True): ("<", "DESC", 2 ** 31)}


def to_ms(moment):
    """An aware datetime as the integer milliseconds the columns hold."""
    import calendar

    return calendar.timegm(moment.utctimetuple()) * 1000 + moment.microsecond // 1000


def from_iso(text):
    """ms of an ISO-8601 UTC string as this store writes them (whole seconds)."""
    import calendar

    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")) * 1000


def _placeholders(values):
    return ", ".join(["?"] * len(values))


def _row(cursor, values):
    row = {col[0]: value for col, value in zip(cursor.description, values)}
    for key in TIME_FIELDS:
        if key in row:
            row[key] = iso(row[key])
    return row


def _match(filters, where, params):
    """The WHERE terms of a task filter ({type, error_contains, older_than_seconds,
    newer_than_seconds}) that lists and bulk steering share."""
    pattern = filters.get("type")
    if pattern:
        where.append("type = ?" if like_escape_free(pattern) else "type LIKE ? ESCAPE '\\'")
        params.append(pattern)
    if filters.get("error_contains"):
        where.append("instr(lower(error_message), lower(?)) > 0")
        params.append(filters["error_contains"])
    if filters.get("older_than_seconds") is not None:
        where.append("created_at <= ?")
        params.append(now_ms() - 1000 * filters["older_than_seconds"])
    if filters.get("newer_than_seconds") is not None:
        where.append("created_at >= ?")
        params.append(now_ms() - 1000 * filters["newer_than_seconds"])



class SQLiteStore(DependencyRules, Store):
    backend = "sqlite"
    _mark = "?"
    _dep_integrity = sqlite3.IntegrityError

    def __init__(self, config):
        super().__init__(config)
        db = config.database
        path = db["sqlite_path"]
        self.conn = None
        try:
            self._open(path, db)
        except BaseException:
            self.close()  # a long-lived server must not keep the file open
            raise

    def _open(self, path, db):
        try:
            if path and path != ":memory:":
                _keep_private(path)
            self.conn = sqlite3.connect(path, timeout=db["busy_timeout"] / 1000.0,
                                        isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA case_sensitive_like = ON")
            if db["sqlite_max_bytes"]:
                page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
                self.conn.execute("PRAGMA max_page_count = %d"
                                  % max(1, db["sqlite_max_bytes"] // page_size))
            self._ensure_schema()
        except DiskFull:
            raise
        except sqlite3.Error as exc:
            if _disk_full(exc) or _no_room(path):  # e.g. no room for the -wal and -shm files
                raise DiskFull() from exc
            raise Unavailable("SQLite database cannot be opened") from exc
        except OSError as exc:
            raise Unavailable("SQLite data folder cannot be created") from exc

    def _ensure_schema(self):
        """Create tables on first use, or migrate an older file; safe when many
        first requests race (the version is read again under the write lock)."""
        conn = self.conn
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:  # a newer release made this file: change nothing
            raise SchemaNewer(version, SCHEMA_VERSION, self._needs_release(version))
        if version == SCHEMA_VERSION:
            conn.execute("PRAGMA synchronous = NORMAL")
            return
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SchemaNewer(version, SCHEMA_VERSION, self._needs_release(version))
            if version < SCHEMA_VERSION:
                if version == 0:
                    _run_script(conn, SCHEMA_PATH)
                else:
                    for number, path in migrations():
                        if number > version:
                            _run_script(conn, path)
                now = now_ms()
                for number, path in migrations():
                    release = _release_of(path)
                    if number > version and release:
                        conn.execute(Q["record_schema_version"], (number, release, now))
                if version:  # an upgrade: the counters are checked once, as MariaDB's installer does
                    self._recount()
                conn.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
            conn.execute("COMMIT")
        except BaseException as exc:
            _rollback(conn)
            if _disk_full(exc):
                raise DiskFull() from exc
            raise

    def _needs_release(self, version):
        try:
            row = self.conn.execute(Q["schema_needs_release"], (version,)).fetchone()
        except sqlite3.Error:  # a file too strange to say: the message names no release
            return None
        return row[0] if row else None

    # -- plumbing ------------------------------------------------------
    def close(self):
        if self.conn is not None:
            self.conn.close()

    def _write(self, work):
        """Run work(now) inside BEGIN IMMEDIATE; commit or roll back."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise Unavailable("SQLite database is busy") from exc
        try:
            result = work(now_ms())
            conn.execute("COMMIT")
            return result
        except BaseException as exc:
            _rollback(conn)
            if _disk_full(exc):
                raise DiskFull() from exc
            raise

    def _one(self, name, params=(), **fmt):
        sql = Q[name].format(**fmt) if fmt else Q[name]
        cursor = self.conn.execute(sql, params)
        values = cursor.fetchone()
        return None if values is None else _row(cursor, values)

    def _all(self, name, params=(), **fmt):
        sql = Q[name].format(**fmt) if fmt else Q[name]
        cursor = self.conn.execute(sql, params)
        return [_row(cursor, values) for values in cursor.fetchall()]

    def _event(self, task_id, event, worker_id, message, now):
        if self.history_enabled:
            self.conn.execute(Q["insert_event"], (task_id, event, worker_id, message, now))

    # the hooks of DependencyRules
    def _dq(self, name, params=(), **fmt):
        return self.conn.execute(Q[name].format(**fmt) if fmt else Q[name], params)

    def _dq_many(self, name, rows):
        self.conn.executemany(Q[name], rows)

    def _dep_now(self):
        return now_ms()

    def _dep_events(self, events, now):
        if self.history_enabled and events:
            self.conn.executemany(Q["insert_event"], [event + (now,) for event in events])

    def _dep_read(self, work):
        return work()

    # -- lifecycle -----------------------------------------------------
    def ping(self):
        try:
            self.conn.execute(Q["ping"]).fetchone()
            room = self.room_left()
        except sqlite3.Error as exc:
            raise Unavailable() from exc
        if room < FULL_MARGIN_PAGES * self.conn.execute("PRAGMA page_size").fetchone()[0]:
            raise DiskFull()

    def room_left(self):
        """Bytes a write may still add: free pages inside the file, plus the
        disk's free space or what max_page_count allows, whichever is less."""
        conn = self.conn
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
        cap = (conn.execute("PRAGMA max_page_count").fetchone()[0] - pages) * page_size
        path = self.config.database["sqlite_path"]
        if path != ":memory:":
            try:
                stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
                cap = min(cap, stat.f_bavail * stat.f_frsize)
            except (OSError, AttributeError):  # no statvfs (Windows): the page cap alone
                pass
        return free_pages * page_size + cap

    def server_info(self):
        return "SQLite " + sqlite3.sqlite_version

    def clock(self):
        return iso(now_ms())

    # -- task types ----------------------------------------------------
    def register_type(self, name, version, param_schema_json, max_attempts, claim_timeout,
                      is_active=True, retry=None, may_change=True):
        def work(now):
            existing = self._one("get_type", (name,))
            if existing is not None and not may_change:
                changed = type_changes(existing, version, param_schema_json, max_attempts,
                                       claim_timeout, is_active, retry)
                if changed:
                    raise refuse_type_change(name, changed)
                return existing, False
            if existing is None:
                self.conn.execute(Q["insert_type"], (name, version, param_schema_json,
                                                     int(is_active), max_attempts, claim_timeout,
                                                     now, now))
            else:
                self.conn.execute(Q["update_type"], (version, param_schema_json, int(is_active),
                                                     max_attempts, claim_timeout, now,
                                                     existing["id"]))
            row = self._one("get_type", (name,))
            if retry is not None:
                self.conn.execute(Q["set_type_retry"], tuple(retry[k] for k in RETRY_FIELDS) + (row["id"],))
                row.update(retry)
            return row, existing is None

        return self._write(work)

    def get_type(self, name):
        return self._one("get_type", (name,))

    def list_types(self, active_only):
        return self._all("list_active_types" if active_only else "list_types")

    # -- tasks ---------------------------------------------------------
    def create_tasks(self, items):
        return self._write(lambda now: self._insert_tasks(items, now))

    def _insert_tasks(self, items, now):
        """Insert new tasks (create, or a schedule's occurrences) and count them.

        An item with parents (depends_on, depends_on_items) whose parents are
        wrong gets its BadRequest in place of (row, deduplicated)."""
        out, changes, usage, made = [], [], {}, []
        for item in items:
            run_at = _run_at(item, now)
            status = "scheduled" if run_at is not None and run_at > now else "pending"
            plan = None
            if item.get("depends_on") or item.get("depends_on_items"):
                plan = self._plan_children(item, made)
                if not isinstance(plan, tuple):
                    out.append(plan)
                    made.append(None)
                    continue
                status = plan[0] or status
            cursor = self.conn.execute(Q["insert_task"], (
                item["type_id"], item["type"], status, item["params_json"], item["dedupe_key"],
                item["priority"], item["max_attempts"], item["claim_timeout"], now, now, run_at,
                item.get("dedupe_scope", "always"), plan[1] if plan else 0,
                item.get("on_parent_failure") or "cancel"))
            if cursor.rowcount == 1:
                task_id = cursor.lastrowid
                changes.append((item["type"], None, status))
                self._event(task_id, "created", None, None, now)
                if plan is not None:
                    self._link_child(task_id, plan, now)
                usage[item["type_id"]] = usage.get(item["type_id"], 0) + 1
                out.append((self._one("get_task", (task_id,)), False))
            else:
                usage.setdefault(item["type_id"], 0)
                out.append((self._one("task_by_dedupe_key", (item["dedupe_key"],)), True))
            made.append(out[-1][0]["id"])
        self._tally(changes, (), now)
        for type_id, count in usage.items():
            self.conn.execute(Q["count_type_usage"], (count, now, type_id))
        return out

    def _policies(self, ids):
        """{task_id: its type's retry settings} for tasks about to be retried."""
        if not ids:
            return {}
        cursor = self.conn.execute(Q["retry_policies"].format(ids=_placeholders(ids)), list(ids))
        return {row[0]: dict(zip(RETRY_FIELDS, row[1:])) for row in cursor.fetchall()}

    def _expire_leases(self, now):
        """Release or fail tasks whose lease ran out: no reaper runs between requests."""
        expired = self.conn.execute(Q["expired_leases"], (now, EXPIRE_BATCH)).fetchall()
        policies = self._policies([row[0] for row in expired if row[1] < row[2]])
        changes, runs = [], []
        for task_id, attempts, max_attempts, task_type in expired:
            if attempts < max_attempts:
                delay = retry_delay(policies.get(task_id), attempts)
                if delay:
                    self.conn.execute(Q["release_expired_later"], (now + 1000 * delay, now, task_id))
                    changes.append((task_type, "claimed", "scheduled"))
                    runs.append((task_type, "retry", None))
                    self._event(task_id, "lease_expired", None, "retry in %d s" % delay, now)
                    continue
                self.conn.execute(Q["release_expired"], (now, task_id))
                changes.append((task_type, "claimed", "pending"))
                runs.append((task_type, "retry", None))
                self._event(task_id, "lease_expired", None, "returned to pending", now)
            else:
                changes.append((task_type, "claimed", "failed"))
                runs.append((task_type, "failed", None))
                message = expired_message(attempts)
                self.conn.execute(Q["fail_expired"], (message, now, now, task_id))
                self._event(task_id, "lease_expired", None, message, now)
                self._event(task_id, "failed", None, message, now)
                self._settle_children([(task_id, "failed")], changes, now)
        self._tally(changes, runs, now)

    def _promote_due(self, now):
        """'scheduled' tasks whose time has come join the pending queue (tasks_due)."""
        due = self.conn.execute(Q["due_tasks"], (now, PROMOTE_BATCH)).fetchall()
        if due:
            ids = [row[0] for row in due]
            self.conn.execute(Q["promote_due"].format(ids=_placeholders(ids)), [now] + ids)
            self._tally([(task_type, "scheduled", "pending") for _, task_type in due], (), now)

    def _heads_of_type(self, type_id, count, order):
        """Up to `count` (id, sort value) of one type's pending tasks, in claim order."""
        index, type_index, order_by = CLAIM_ORDERS[order]
        if order_by is None:
            return self._group_heads(type_id, count, order, type_index)
        sql = Q["next_pending_of_type"].format(column=order[0], index=type_index, order=order_by)
        return self.conn.execute(sql, (type_id, count)).fetchall()

    def _candidates(self, type_pattern, limit, now, task_type_id=None, order=DEFAULT_ORDER):
        restricted = {row[0]: (row[1], row[2]) for row in self.conn.execute(Q["restricted_types"])}
        if restricted:
            return self._capped_candidates(type_pattern, limit, restricted, now, task_type_id,
                                           order)
        index, type_index, order_by = CLAIM_ORDERS[order]
        matching = None
        if type_pattern is not None:
            matching = [row[0] for row in self.conn.execute(Q["types_like"], (type_pattern,))]
        type_ids = pick_type_ids(matching, task_type_id)
        if type_ids is None:
            if order_by is None:
                return self._group_heads(None, limit, order, index)
            sql = Q["next_pending"].format(column=order[0], index=index, order=order_by)
            return self.conn.execute(sql, (limit,)).fetchall()
        heads = []
        for type_id in type_ids:
            heads.extend(self._heads_of_type(type_id, limit, order))
        return order_candidates(heads, limit, order[1])

    def _capped_candidates(self, type_pattern, limit, restricted, now, task_type_id=None,
                           order=DEFAULT_ORDER):
        """Candidates when some type is paused or limited: per type, each at
        most its remaining capacity (the write lock makes the count exact)."""
        query, params = ("all_type_ids", ()) if type_pattern is None else ("types_like", (type_pattern,))
        type_ids = pick_type_ids([row[0] for row in self.conn.execute(Q[query], params)],
                                 task_type_id)
        limited = [t for t in type_ids if restricted.get(t, (0, None))[1] is not None]
        live = {}
        if limited:
            live = dict(self.conn.execute(Q["live_leases"].format(ids=", ".join("?" * len(limited))),
                                          limited + [now]).fetchall())
        heads = []
        for type_id, count in capped_heads(claim_caps(type_ids, restricted, live), limit):
            heads.extend(self._heads_of_type(type_id, count, order))
        return order_candidates(heads, limit, order[1])

    def _group_heads(self, type_id, count, order, index):
        """Up to `count` (id, value) of a stepped order: the next group's value, then
        its tasks oldest first; two index reads a group, whatever the queue's size."""
        cmp, direction, bound = STEPS[order]
        fmt = {"group": order[0], "column": order[0], "index": index, "cmp": cmp, "dir": direction}
        suffix, head = ("", ()) if type_id is None else ("_of_type", (type_id,))
        out = []
        while len(out) < count:
            row = self.conn.execute(Q["group_top" + suffix].format(**fmt), head + (bound,)).fetchone()
            if row is None:
                break
            bound = row[0]
            out.extend(self.conn.execute(Q["group_rows" + suffix].format(**fmt),
                                         head + (bound, count - len(out))).fetchall())
        return out

    def claim(self, worker_id, type_pattern=None, limit=1, lease_seconds=None, request_key=None,
              task_type_id=None, order=DEFAULT_ORDER):
        default_lease = self.queue["claim_timeout"]

        def work(now):
            if request_key is not None:
                ids = [row[0] for row in self.conn.execute(Q["claimed_with_key"],
                                                           (request_key, worker_id, now))]
                if ids:  # a repeated claim: the same tasks, nothing new claimed
                    return sorted((self._one("get_task", (task_id,)) for task_id in ids),
                                  key=lambda row: (-row["priority"], row["id"]))
                if self.conn.execute(Q["answered_empty"], (worker_id, request_key)).fetchone():
                    return []  # its resend was answered empty: this late first claim too
            self._promote_due(now)
            self._expire_leases(now)
            claimed = []
            for task_id, _ in self._candidates(type_pattern, limit, now, task_type_id, order):
                cursor = self.conn.execute(Q["claim_task"], (worker_id, now, now, lease_seconds,
                                                             default_lease, now, task_id))
                if cursor.rowcount == 1:
                    if request_key is not None:
                        self.conn.execute(Q["mark_request_key"], (request_key, task_id))
                    self._event(task_id, "claimed", worker_id, None, now)
                    claimed.append(self._one("get_task", (task_id,)))
            if request_key is not None:
                if not claimed:
                    self.conn.execute(Q["remember_empty"], (worker_id, request_key, now))
                    if os.urandom(1)[0] < 4:  # about one empty claim in 64
                        self.conn.execute(Q["forget_empty"], (now - CLAIM_KEY_WINDOW * 1000,))
                elif stale_claim(self.started):
                    raise stale_claim(self.started)  # rolled back: nothing claimed
            self._tally([(row["type"], "pending", "claimed") for row in claimed], (), now)
            return claimed

        return self._write(work)

    def _check_lease(self, task_id, worker_id, now):
        state = self._one("lease_state", (task_id,))
        live = state is not None and (state["lease_ms"] or 0) > now
        check_lease(task_id, state, worker_id, live,
                    lambda: self._claimed_before(task_id, worker_id, state["attempts"]))
        return state

    def _claimed_before(self, task_id, worker_id, attempts):
        if self.history_enabled:
            return self.conn.execute(Q["worker_claimed_before"], (task_id, worker_id)).fetchone() is not None
        return attempts > 1

    def progress(self, task_id, worker_id, progress, message, lease_seconds=None):
        default_lease = self.queue["claim_timeout"]

        def work(now):
            self._check_lease(task_id, worker_id, now)
            self.conn.execute(Q["record_progress"], (progress, message, now, lease_seconds,
                                                     default_lease, now, task_id))
            note = "%d%%" % progress + (": " + message if message else "")
            self._event(task_id, "progress", worker_id, note, now)
            return self._one("get_task", (task_id,))

        return self._write(work)

    def complete_many(self, worker_id, items, retry_after=None):
        def work(now):
            outcomes, changes, runs = [], [], []
            failed = [item[0] for item in items if not item[1]]
            policies = self._policies(sorted(set(failed)))
            for task_id, success, result_json, error in items:
                try:
                    outcomes.append(self._finish(task_id, worker_id, success, result_json,
                                                 error, now, changes, runs, policies,
                                                 (retry_after or {}).get(task_id)))
                except Exception as exc:
                    if not client_error(exc):
                        raise
                    outcomes.append(exc)
            self._tally(changes, runs, now)
            return outcomes

        return self._write(work)

    def _finish(self, task_id, worker_id, success, result_json, error, now, changes, runs,
                policies=None, requested=None):
        """One item of complete_many: check the lease, write, record the event;
        the counter changes go to `changes` and `runs`.

        requested: the worker's retry_after_seconds, None for the type's backoff."""
        state = self._one("lease_state", (task_id,))
        live = state is not None and (state["lease_ms"] or 0) > now
        if not holds_lease(state, worker_id, live):
            earlier = repeated_outcome(task_id, state, worker_id, success, result_json, error)
            if earlier is not None:
                return earlier
        check_lease(task_id, state, worker_id, live,
                    lambda: self._claimed_before(task_id, worker_id, state["attempts"]))
        attempts = state["attempts"]
        delay = 0
        if not success and attempts < state["max_attempts"]:
            delay = retry_delay((policies or {}).get(task_id), attempts, requested)
        if success:
            self.conn.execute(Q["complete_success"], (result_json, now, now, task_id))
            self._event(task_id, "completed", worker_id, None, now)
            status, will_retry = "completed", False
            self._settle_children([(task_id, "completed")], changes, now)
        elif attempts < state["max_attempts"] and delay:
            self.conn.execute(Q["complete_retry_later"], (now + 1000 * delay, error, now, task_id))
            self._event(task_id, "retry", worker_id, error, now)
            changes.append((state["type"], "claimed", "scheduled"))
            runs.append((state["type"], "retry",
                         now - state["claimed_ms"] if state["claimed_ms"] is not None else None))
            return {"id": task_id, "status": "scheduled", "attempts": attempts, "will_retry": True,
                    "retry_delay_seconds": delay, "run_at": iso(now + 1000 * delay)}
        elif attempts < state["max_attempts"]:
            self.conn.execute(Q["complete_retry"], (error, now, task_id))
            self._event(task_id, "retry", worker_id, error, now)
            status, will_retry = "pending", True
        else:
            self.conn.execute(Q["complete_failure"], (error, now, now, task_id))
            self._event(task_id, "failed", worker_id, error, now)
            status, will_retry = "failed", False
            self._settle_children([(task_id, "failed")], changes, now)
        changes.append((state["type"], "claimed", status))
        runs.append((state["type"], "retry" if will_retry else status,
                     now - state["claimed_ms"] if state["claimed_ms"] is not None else None))
        return {"id": task_id, "status": status, "attempts": attempts, "will_retry": will_retry}

    def get_task(self, task_id):
        return self._one("get_task", (task_id,))

    def task_history(self, task_id):
        if self.conn.execute(Q["task_exists"], (task_id,)).fetchone() is None:
            return None
        return [{"event": e["event"], "worker_id": e["worker_id"], "message": e["message"],
                 "at": iso(e["created_at"])}
                for e in (dict(zip(("event", "worker_id", "message", "created_at"), values))
                          for values in self.conn.execute(Q["task_history"], (task_id,)))]

    def list_tasks(self, status, type_pattern, limit, offset, filters=None, order="id DESC"):
        where, params = ["1 = 1"], []
        if status:
            where.append("status = ?")
            params.append(status)
        _match(dict(filters or {}, type=type_pattern), where, params)
        clause = " AND ".join(where)
        rows = self._all("list_tasks", params + [limit, offset], where=clause, order=order)
        total = self.conn.execute(Q["count_tasks"].format(where=clause), params).fetchone()[0]
        return rows, total

    # -- type settings and steering ------------------------------------
    def update_type_settings(self, name, changes):
        def work(now):
            row = self._one("get_type", (name,))
            if row is None:
                return None
            row.update(changes)
            self.conn.execute(Q["update_type_settings"], (
                row["max_concurrency"], int(row["is_paused"]), row["dedupe_scope"], now, row["id"]))
            return self._one("get_type", (name,))

        return self._write(work)

    def steer(self, action, task_ids):
        return self._write(lambda now: [self._steer_one(action, task_id, now) for task_id in task_ids])

    def steer_matching(self, action, filters, limit):
        where, params = self._steer_where(action, filters)

        def work(now):
            ids = [row[0] for row in self.conn.execute(Q["steer_select"].format(where=where),
                                                       params + [limit + 1])]
            ids, more = ids[:limit], len(ids) > limit
            return list(zip(ids, [self._steer_one(action, task_id, now) for task_id in ids])), more

        return self._write(work)

    def _steer_where(self, action, filters):
        statuses = filters.get("statuses") or STEER_FROM[action]
        where = ["status IN (%s)" % ", ".join("?" * len(statuses))]
        params = list(statuses)
        _match(filters, where, params)
        return " AND ".join(where), params

    def _steer_one(self, action, task_id, now):
        state = self._one("steer_state", (task_id,))
        refusal = steer_refusal(action, task_id, state)
        if refusal is not None:
            return refusal
        changes = []
        if action == "cancel":
            self.conn.execute(Q["cancel_task"], (now, now, task_id))
            status = "cancelled"
        elif action == "requeue":
            self.conn.execute(Q["requeue_task"], (now, task_id))
            status = "pending"
        else:
            key, statuses = steer_key(state), STEER_FROM[action]
            try:
                self.conn.execute(Q["reset_task"], (key, now, task_id, statuses[0], statuses[-1]))
            except sqlite3.IntegrityError:
                return dedupe_conflict(self._one("task_by_dedupe_key", (key,)))
            status = "pending"
        event, message = steer_event(action, state)
        self._event(task_id, event, None, message, now)
        changes.append((state["type"], state["status"], "pending" if action == "retry" else status))
        if action == "cancel":
            self._settle_children([(task_id, "cancelled")], changes, now)
        elif action == "retry":
            status = self._retried(task_id, state["type"], changes, now)
        self._tally(changes, (), now)
        return {"id": task_id, "previous_status": state["status"], "status": status}

    # -- counters (GET /stats) -------------------------------------------
    def _tally(self, changes, runs=(), now=None):
        """Apply status changes and finished runs to the counters; runs inside
        the caller's write transaction (SQLite has one writer: one slot)."""
        self.finished += finished_count(changes)
        for (task_type, status), delta in count_deltas(changes):
            self.conn.execute(Q["count_add"], (task_type, status, delta))
        if runs:
            period = (now if now is not None else now_ms()) // PERIOD_MS
            for (task_type, outcome, bucket), count, total in run_deltas(runs):
                self.conn.execute(Q["run_add"], (period, task_type, outcome, bucket, count, total))

    def stats(self, lease_limit=1000):
        now = now_ms()
        period = now // PERIOD_MS
        conn = self.conn
        oldest = conn.execute(Q["stats_oldest_pending"]).fetchone()
        return {
            "counts": conn.execute(Q["stats_counts"]).fetchall(),
            "oldest_pending_seconds": None if oldest is None else max(0, now - oldest[0]) / 1000.0,
            "runs_hour": conn.execute(Q["stats_runs"], (period - 3600000 // PERIOD_MS,)).fetchall(),
            "runs_day": conn.execute(Q["stats_runs"], (period - DAY_MS // PERIOD_MS,)).fetchall(),
            "leases": conn.execute(Q["stats_leases"], (now, lease_limit)).fetchall(),
        }

    # -- API keys --------------------------------------------------------
    def create_key(self, name, role, prefix, key_hash):
        def work(now):
            cursor = self.conn.execute(Q["insert_key"], (name, role, prefix, key_hash, now))
            if cursor.rowcount != 1:
                raise Conflict("An API key named %r exists; revoke it first or pick another name" % name)
            return self._one("get_key", (name,))

        return self._write(work)

    def list_keys(self):
        return self._all("list_keys")

    def revoke_key(self, name):
        return self._write(lambda now: self.conn.execute(Q["delete_key"], (name,)).rowcount == 1)

    def key_by_hash(self, key_hash):
        row = self.conn.execute(Q["key_by_hash"], (key_hash,)).fetchone()
        if row is None:
            return None
        key_id, name, role, last_used = row
        if last_used is None or now_ms() - last_used > KEY_TOUCH_SECONDS * 1000:
            self._write(lambda now: self.conn.execute(Q["touch_key"], (now, key_id)))
        return {"id": key_id, "name": name, "role": role}

    def has_keys(self):
        return self.conn.execute(Q["any_key"]).fetchone() is not None

    # -- retention -------------------------------------------------------
    def purge(self, keep, history_keep, batch):
        def work(now):
            done = {}
            for status, seconds in sorted(keep.items()):
                if seconds:
                    done[status] = self._purge_tasks(status, now - seconds * 1000, batch)
            if history_keep:
                done["history"] = self._purge_history(now - history_keep * 1000,
                                                      batch * HISTORY_BATCH_FACTOR)
            done["claim_requests"] = self.conn.execute(Q["purge_claim_requests"], (
                now - CLAIM_KEY_WINDOW * 1000, batch * HISTORY_BATCH_FACTOR)).rowcount
            bound = runs_purge_bound(self.conn.execute(Q["oldest_run_period"]).fetchone()[0],
                                     (now - RUNS_KEEP_SECONDS * 1000) // PERIOD_MS)
            done["runs"] = 0 if bound is None else self.conn.execute(Q["purge_runs"], (bound,)).rowcount
            return done

        return self._write(work)

    def backlog(self, keep, history_keep, cap=BACKLOG_CAP):
        now = now_ms()
        one = lambda name, params: self.conn.execute(Q[name], params).fetchone()[0]  # noqa: E731
        tasks = sum(one("backlog_tasks", (status, now - seconds * 1000, cap))
                    for status, seconds in sorted(keep.items()) if seconds)
        history = 0
        if history_keep:
            cutoff = now - history_keep * 1000
            oldest = self.conn.execute(Q["oldest_history_is_old"], (cutoff,)).fetchone()
            if oldest and oldest[0]:
                history = one("backlog_history", (cap, cutoff))
        return {"tasks": min(tasks, cap), "task_history": history,
                "task_runs": one("backlog_runs", ((now - RUNS_KEEP_SECONDS * 1000) // PERIOD_MS, cap)),
                "taskq_claim_requests": one("backlog_claim_requests",
                                            (now - CLAIM_KEY_WINDOW * 1000, cap))}

    def _purge_tasks(self, status, cutoff, batch):
        rows = self.conn.execute(Q["purge_pick_tasks"], (status, cutoff, batch)).fetchall()
        if not rows:
            return 0
        ids = [row[0] for row in rows]
        self.conn.execute(Q["purge_tasks"].format(ids=", ".join("?" * len(ids))), ids)
        self._forget_edges(ids)
        self._tally([(task_type, status, None) for _, task_type in rows])
        return len(ids)

    def _purge_history(self, cutoff, batch):
        last = None
        for history_id, old in self.conn.execute(Q["purge_history_head"], (cutoff, batch)).fetchall():
            if not old:
                break
            last = history_id
        if last is None:
            return 0
        return self.conn.execute(Q["purge_history"], (last, cutoff)).rowcount

    # -- dashboard -----------------------------------------------------
    def claimed_tasks(self, limit):
        return self._all("claimed_tasks", (limit,))

    def schema_version(self):
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def recount(self):
        return self._write(lambda now: self._recount(now))

    def _recount(self, now=None):
        """recount's work, inside the caller's write transaction."""
        counts = []
        for task_type, status, actual, counted in self.conn.execute(Q["count_drift"]).fetchall():
            self.conn.execute(Q["count_add"], (task_type, status, actual - counted))
            counts.append({"type": task_type, "status": status, "was": counted, "now": actual})
        usage = []
        for type_id, name, was, present in self.conn.execute(Q["usage_drift"]).fetchall():
            self.conn.execute(Q["usage_raise"], (present, type_id))
            usage.append({"type": name, "was": was, "now": present})
        return {"task_counts": counts, "usage_count": usage}

    def recent_finishers(self, seconds, scan, limit):
        since = now_ms() - 1000 * seconds
        rows = self.conn.execute(Q["recent_finishers"], (since, scan, since, scan, limit)).fetchall()
        return [{"worker": w, "last_at": iso(at), "finished": n} for w, at, n in rows]

    def hourly_runs(self):
        now = now_ms()
        rows = self.conn.execute(Q["hourly_runs"], (now // PERIOD_MS - 288,)).fetchall()
        return now // 3600000, [(int(h), o, int(n)) for h, o, n in rows]

    def failed_groups(self, limit):
        return [{"error": e, "count": n, "last_at": iso(at), "last_id": i}
                for e, n, at, i in self.conn.execute(Q["failed_groups"], (limit,)).fetchall()]

    def create_session(self, token_hash, csrf_token, key_ref, ttl_seconds):
        def work(now):
            self.conn.execute(Q["delete_expired_sessions"], (now,))
            self.conn.execute(Q["create_session"], (token_hash, csrf_token, key_ref, now,
                                                    now + 1000 * ttl_seconds))

        self._write(work)

    def get_session(self, token_hash):
        return self._one("get_session", (token_hash, now_ms()))

    def delete_session(self, token_hash):
        self._write(lambda now: self.conn.execute(Q["delete_session"], (token_hash,)))

    def login_failures(self, address, window_seconds):
        row = self.conn.execute(Q["login_failures"],
                                (address, now_ms() - 1000 * window_seconds)).fetchone()
        return row[0] if row else 0

    def record_login_failure(self, address, window_seconds):
        def work(now):
            cutoff = now - 1000 * window_seconds
            self.conn.execute(Q["record_login_failure"], (address, now, cutoff, cutoff))

        self._write(work)


    # -- schedules -----------------------------------------------------
    def create_schedule(self, item):
        def work(now):
            try:
                cursor = self.conn.execute(Q["insert_schedule"], (
                    item["name"], item["type_id"], item["type"], item["params_json"],
                    item["priority"], item["every_seconds"], item["cron"], item["timezone"],
                    item["catch_up"], item["catch_up_limit"], from_iso(item["next_run_at"]),
                    now, now))
            except sqlite3.IntegrityError:
                raise Conflict("A schedule named %r exists" % item["name"]) from None
            return self._one("get_schedule", (cursor.lastrowid,))

        return self._write(work)

    def get_schedule(self, schedule_id):
        return self._one("get_schedule", (schedule_id,))

    def list_schedules(self, limit, offset):
        rows = self._all("list_schedules", (limit, offset))
        return rows, self.conn.execute(Q["count_schedules"]).fetchone()[0]

    def set_schedule_paused(self, schedule_id, paused, next_run_at):
        def work(now):
            nxt = from_iso(next_run_at) if next_run_at else None
            self.conn.execute(Q["set_schedule_paused"], (int(paused), nxt, now, schedule_id))
            return self._one("get_schedule", (schedule_id,))

        return self._write(work)

    def delete_schedule(self, schedule_id):
        return self._write(lambda now: self.conn.execute(Q["delete_schedule"],
                                                         (schedule_id,)).rowcount == 1)

    def due_schedules(self, limit):
        return self._all("due_schedules", (now_ms(), limit))

    def advance_schedule(self, schedule_id, seen_next_run_at, next_run_at, items):
        def work(now):
            cursor = self.conn.execute(Q["advance_schedule"], (
                from_iso(next_run_at) if next_run_at else None, now, now, schedule_id,
                from_iso(seen_next_run_at)))
            if cursor.rowcount != 1:
                return None
            out = self._insert_tasks(items, now)
            if out:
                self.conn.execute(Q["set_schedule_last_task"], (out[-1][0]["id"], schedule_id))
            return out

        return self._write(work)


def _run_at(item, now):
    """ms an item is due at: its run_at, or now + delay_seconds; None = at once."""
    if item.get("run_at") is not None:
        return to_ms(item["run_at"])
    if item.get("delay_seconds"):
        return now + 1000 * item["delay_seconds"]
    return None


# /health reports the disk full when fewer pages than this are left: one
# create or complete needs a few, and WAL frames are a page each.
FULL_MARGIN_PAGES = 16


def _disk_full(exc):
    """SQLITE_FULL: the disk, or max_page_count, has no room for the write."""
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF == 13
    return "database or disk is full" in str(exc)


def _keep_private(path):
    """The database file as this account's alone, before SQLite opens it.

    SQLite would create it 0644 under the usual umask 022: readable by every
    account on a shared host. So a new file is created here, 0600, in a folder
    made 0700 when there is none yet; SQLite gives the -wal and -shm files it
    creates the database file's mode. An existing database, -wal or -shm file
    this account owns loses the bits of other accounts (its group bits stay,
    for a web server that reads it through a shared group); a file of another
    account is left as it is. An existing folder keeps its mode.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    if not os.path.exists(path):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:
            pass  # made by a racing request (its mode is 0600 too), or SQLite says why not
        return
    if not hasattr(os, "geteuid"):  # Windows: no mode bits to drop
        return
    for name in (path, path + "-wal", path + "-shm"):
        try:
            info = os.stat(name)
            if info.st_uid == os.geteuid() and info.st_mode & 0o007:
                os.chmod(name, info.st_mode & 0o7770)
        except OSError:
            pass  # no such file; or one that cannot change, which still works as before


def _no_room(path):
    """True when the database's folder has (almost) no free space."""
    try:
        stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except (OSError, AttributeError, ValueError):
        return False
    return stat.f_bavail * stat.f_frsize < FULL_MARGIN_PAGES * 4096


def _rollback(conn):
    """ROLLBACK if a transaction is open: SQLite rolls back by itself after
    SQLITE_FULL (and some I/O errors), and a second ROLLBACK would raise
    "no transaction is active", hiding the cause."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def migrations():
    """(number, path) of each file in sqlite_migrations/, lowest first."""
    found = []
    if os.path.isdir(MIGRATIONS_DIR):
        for entry in sorted(os.listdir(MIGRATIONS_DIR)):
            if entry.endswith(".sql") and entry[:4].isdigit():
                found.append((int(entry[:4]), os.path.join(MIGRATIONS_DIR, entry)))
    return found


# Version 1 is sqlite_schema.sql as first released; each migration adds one.
SCHEMA_VERSION = max([1] + [number for number, _ in migrations()])


def _release_of(path):
    from ..migrate import release_of

    with open(path, encoding="utf-8") as handle:
        return release_of(handle.read())


def _run_script(conn, path):
    with open(path, encoding="utf-8") as handle:
        script = handle.read()
    for statement in _strip_comments(script).split(";"):
        if statement.strip():
            try:
                conn.execute(statement.strip())
            except sqlite3.OperationalError as exc:
                # SQLite has no ADD COLUMN IF NOT EXISTS: a column already there
                # (a file marked older than it is) is the step done, as migrate.py
                # takes MySQL's duplicate column
                if not (statement.strip().upper().startswith("ALTER TABLE")
                        and "duplicate column name" in str(exc)):
                    raise


def _strip_comments(script):
    return "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
