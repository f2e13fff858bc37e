"""Retention: only rows older than their days go, in bounded batches, through
indexes; the lottery, POST /admin/purge and install.py --purge."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT, ApiClient, claim, create, db_execute, register
from taskq.app import Application


def age(config, table, column, days, where="1 = 1"):
    """Move `column` of matching rows `days` into the past."""
    if config.backend == "sqlite":
        db_execute(config, "UPDATE %s SET %s = %s - ? WHERE %s" % (table, column, column, where),
                   (days * 86400000,))
    else:
        db_execute(config, "UPDATE %s SET %s = %s - INTERVAL ? DAY WHERE %s" % (table, column, column, where),
                   (days,))


def statuses(config):
    return sorted(db_execute(config, "SELECT id, status FROM tasks ORDER BY id"))


def finish(api, worker, count, success=True):
    ids = []
    for _ in range(count):
        task = claim(api, worker).data
        body = {"worker_id": worker, "success": success}
        assert api.post("/tasks/%d/complete" % task["id"], body).status == 200
        ids.append(task["id"])
    return ids


def test_purge_deletes_only_rows_older_than_their_days(api_factory, backend_config):
    api = api_factory(retention={"completed_days": 7, "failed_days": 30, "history_days": 10,
                                 "gc_probability": 0})
    config = api.app.config
    register(api, "keep", max_attempts=1)
    for n in range(12):
        create(api, {"n": n}, type="keep")
    done = finish(api, "w", 6)
    failed = finish(api, "w", 4, success=False)
    old_done, new_done = done[:3], done[3:]
    ids = lambda xs: ", ".join(str(i) for i in xs)  # noqa: E731
    age(config, "tasks", "updated_at", 8, "id IN (%s)" % ids(old_done))           # past 7 days
    age(config, "tasks", "updated_at", 20, "id IN (%s)" % ids(failed))            # under 30 days
    pending = [row[0] for row in db_execute(config, "SELECT id FROM tasks WHERE status = 'pending'")]
    age(config, "tasks", "updated_at", 400, "id IN (%s)" % ids(pending))          # never purged
    history_before = db_execute(config, "SELECT COUNT(*) FROM task_history")[0][0]
    first_event = db_execute(config, "SELECT MIN(id) FROM task_history")[0][0]
    age(config, "task_history", "created_at", 11, "id < %d" % (first_event + 5))  # past 10 days
    age(config, "task_history", "created_at", 9, "id = %d" % (first_event + 5))   # under 10 days

    response = api.post("/admin/purge", {})
    assert response.status == 200, response
    assert response.data["deleted"]["completed"] == 3 and response.data["deleted"]["failed"] == 0
    assert response.data["more"] is False
    left = dict(statuses(config))
    assert not set(old_done) & set(left)
    assert all(left[i] == "completed" for i in new_done)
    assert all(left[i] == "failed" for i in failed) and all(left[i] == "pending" for i in pending)
    history_after = db_execute(config, "SELECT COUNT(*) FROM task_history")[0][0]
    assert history_after == history_before - response.data["deleted"]["history"]
    assert response.data["deleted"]["history"] == 5
    assert db_execute(config, "SELECT MIN(id) FROM task_history")[0][0] == first_event + 5
    stats = api.get("/stats").data
    assert stats["types"]["keep"]["counts"] == {"pending": 2, "completed": 3, "failed": 4}
    assert api.post("/admin/purge", {}).data["total"] == 0


def test_lottery_without_a_time_budget_purges_at_most_gc_batch_rows_per_request(api_factory,
                                                                               backend_config):
    api = api_factory(retention={"completed_days": 1, "gc_probability": 1, "gc_batch": 4,
                                 "gc_time_ms": 0})
    config = api.app.config
    register(api, "many")
    api.post("/tasks", {"tasks": [{"type": "many", "params": {"n": n}} for n in range(11)]})
    finish(api, "w", 11)
    age(config, "tasks", "updated_at", 2)
    counts = []
    for _ in range(4):
        assert api.get("/task-types").status == 200  # any request may win the lottery
        counts.append(db_execute(config, "SELECT COUNT(*) FROM tasks")[0][0])
    assert counts == [7, 3, 0, 0]


def test_lottery_without_a_time_budget_deletes_at_most_four_gc_batches_of_history(api_factory):
    api = api_factory(retention={"history_days": 1, "gc_probability": 0, "gc_batch": 3,
                                 "gc_time_ms": 0})
    config = api.app.config
    register(api, "events")
    api.post("/tasks", {"tasks": [{"type": "events", "params": {"n": n}} for n in range(10)]})
    finish(api, "w", 10)  # 30 events
    age(config, "task_history", "created_at", 2)
    config.retention = dict(config.retention, gc_probability=1)
    lottery = ApiClient(Application(config=config))
    left = []
    for _ in range(3):
        lottery.get("/task-types")
        left.append(db_execute(config, "SELECT COUNT(*) FROM task_history")[0][0])
    assert left == [18, 6, 0]


def test_lottery_off_deletes_nothing(api_factory):
    api = api_factory(retention={"completed_days": 1, "gc_probability": 0})
    register(api, "few")
    create(api, type="few")
    finish(api, "w", 1)
    age(api.app.config, "tasks", "updated_at", 5)
    for _ in range(5):
        api.get("/tasks")
    assert db_execute(api.app.config, "SELECT COUNT(*) FROM tasks")[0][0] == 1


def test_admin_purge_is_bounded_by_max_rows_and_says_more_remain(api_factory):
    api = api_factory(retention={"completed_days": 1, "gc_probability": 0, "gc_batch": 5,
                                 "history_days": 0})
    register(api, "bulk")
    api.post("/tasks", {"tasks": [{"type": "bulk", "params": {"n": n}} for n in range(30)]})
    finish(api, "w", 30)
    age(api.app.config, "tasks", "updated_at", 3)
    first = api.post("/admin/purge", {"max_rows": 12})
    assert first.status == 200 and first.data["deleted"]["completed"] <= 12 and first.data["more"]
    assert api.post("/admin/purge", {"max_rows": 0}).status == 400
    assert "max_rows" in api.post("/admin/purge", {"max_rows": "x"}).error
    rest = api.post("/admin/purge", {})
    assert first.data["deleted"]["completed"] + rest.data["deleted"]["completed"] == 30
    assert rest.data["more"] is False


def test_install_py_purge_deletes_old_rows(backend_config, tmp_path):
    from conftest import make_config

    api = ApiClient(Application(config=backend_config))
    register(api, "cron")
    create(api, type="cron")
    finish(api, "w", 1)
    age(backend_config, "tasks", "updated_at", 45)
    env = dict(os.environ, TASKQ_CONFIG=str(backend_config.path))
    run = subprocess.run([sys.executable, os.path.join(ROOT, "install.py"), "--purge"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "completed 1" in run.stderr
    assert db_execute(backend_config, "SELECT COUNT(*) FROM tasks")[0][0] == 0


# -- purge and stats read indexes, never the whole table ---------------------------
INDEXED = {  # statement: (SQLite params, MySQL params, index)
    "purge_pick_tasks": (("completed", 0, 10), ("completed", 1, 10), "tasks_retention"),
    "stats_oldest_pending": ((), (), "tasks_status_id"),
    "stats_leases": ((0, 10), (10,), "tasks_lease"),
}


def test_purge_and_stats_statements_read_their_index(backend_config):
    from taskq.store import open_store

    api = ApiClient(Application(config=backend_config))
    register(api, "plan")
    api.post("/tasks", {"tasks": [{"type": "plan", "params": {"n": n}} for n in range(50)]})
    finish(api, "w", 10)
    store = open_store(backend_config)
    try:
        if backend_config.backend == "sqlite":
            from taskq.store.sqlite import Q

            store.conn.execute("ANALYZE")
            for name, (params, _, index) in INDEXED.items():
                plan = " | ".join(row[-1] for row in store.conn.execute("EXPLAIN QUERY PLAN " + Q[name], params))
                assert index in plan and "SCAN tasks" not in plan.replace("USING INDEX", ""), (name, plan)
                if name != "stats_leases":  # GROUP BY worker sorts the live leases only
                    assert "TEMP B-TREE" not in plan, (name, plan)
        else:
            from taskq.store.mysql import Q

            for name, (_, params, index) in INDEXED.items():
                cursor = store.conn.cursor()
                cursor.execute("EXPLAIN " + Q[name], params)
                columns = [c[0] for c in cursor.description]
                plan = [dict(zip(columns, row)) for row in cursor.fetchall()]
                assert [row["key"] for row in plan] == [index], (name, plan)
                assert all(row["type"] in ("range", "ref") for row in plan), (name, plan)
            cursor = store.conn.cursor()
            cursor.execute("EXPLAIN " + Q["purge_history_head"], (1, 10))
            columns = [c[0] for c in cursor.description]
            plan = [dict(zip(columns, row)) for row in cursor.fetchall()]
            assert plan[0]["key"] == "PRIMARY" and "filesort" not in (plan[0]["Extra"] or ""), plan
    finally:
        store.close()


def test_runs_purge_bound_takes_at_most_twelve_old_periods():
    from taskq.store.base import runs_purge_bound

    assert runs_purge_bound(None, 1000) is None
    assert runs_purge_bound(1000, 1000) is None
    assert runs_purge_bound(900, 1000) == 912
    assert runs_purge_bound(995, 1000) == 1000


def test_purge_never_deletes_scheduled_tasks_however_old(api_factory):
    api = api_factory(retention={"completed_days": 1, "failed_days": 1, "cancelled_days": 1,
                                 "gc_probability": 0})
    config = api.app.config
    register(api, "wait")
    waiting = create(api, {"n": 1}, type="wait", delay_seconds=30 * 86400)
    assert waiting["status"] == "scheduled"
    age(config, "tasks", "updated_at", 400)
    age(config, "tasks", "created_at", 400)
    response = api.post("/admin/purge", {})
    assert response.status == 200 and response.data["total"] == 0, response
    assert statuses(config) == [(waiting["id"], "scheduled")]
    assert api.get("/stats").data["counts"] == {"scheduled": 1}


def test_a_retention_batch_that_meets_a_busy_database_is_logged_without_a_traceback(tmp_path):
    """The lottery's batch runs after the answer is made: a database that cannot take the
    write in time is an outage (one log line), not a bug, and the answer stands."""
    import logging
    import sqlite3

    from conftest import make_config

    class Keep(logging.Handler):  # the "taskq" logger's records, as its file would get them
        def __init__(self):
            super().__init__()
            self.records = []

        def emit(self, record):
            self.records.append(record)

    config = make_config("sqlite", tmp_path, database={"busy_timeout": 100},
                         retention={"gc_probability": 0})
    api = ApiClient(Application(config=config))
    register(api, "events")
    config.retention = dict(config.retention, gc_probability=1)
    lottery = ApiClient(Application(config=config))
    blocker = sqlite3.connect(config.database["sqlite_path"], isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database
    kept = Keep()
    logging.getLogger("taskq").addHandler(kept)
    try:
        answer = lottery.get("/task-types")
    finally:
        logging.getLogger("taskq").removeHandler(kept)
        blocker.execute("ROLLBACK")
        blocker.close()
    assert answer.status == 200 and answer.json["data"][0]["name"] == "events"
    lines = [record.getMessage() for record in kept.records]
    assert any("GET /task-types" in line for line in lines), lines
    assert not any("unexpected error" in line for line in lines), lines
    assert all(record.exc_info is None for record in kept.records)


# -- a backlog drains under steady load -----------------------------------------
def seed_backlog(config, type_name, count, days=10):
    """`count` completed tasks of `type_name` (registered), each with three
    history events, all `days` old, in three INSERT ... SELECTs; the counters
    are raised to match."""
    digits = "(%s)" % " UNION ALL ".join("SELECT %d AS d" % d for d in range(10))
    places = range(len(str(count - 1)))
    numbers = ("WITH n AS (SELECT %s AS i FROM %s) " % (
        " + ".join("p%d.d * %d" % (p, 10 ** p) for p in places) + " + 1",
        " CROSS JOIN ".join("%s p%d" % (digits, p) for p in places)))
    type_id = db_execute(config, "SELECT id FROM task_types WHERE name = ?", (type_name,))[0][0]
    if config.backend == "sqlite":
        old = "(CAST(strftime('%%s', 'now') AS INTEGER) - %d) * 1000" % (days * 86400)
        key = "'~backlog-' || i"
        counts = ("INSERT INTO task_counts (type, status, slot, n) VALUES (?, 'completed', 0, ?) "
                  "ON CONFLICT (type, status, slot) DO UPDATE SET n = n + excluded.n")
    else:
        old = "UTC_TIMESTAMP(6) - INTERVAL %d DAY" % days
        key = "CONCAT('~backlog-', i)"
        counts = ("INSERT INTO task_counts (type, status, slot, n) VALUES (?, 'completed', 0, ?) "
                  "ON DUPLICATE KEY UPDATE n = n + VALUES(n)")
    db_execute(config, "INSERT INTO tasks (type_id, type, status, params_json, dedupe_key, result_json, "
                       "attempts, max_attempts, finished_by, finished_status, finished_attempt, "
                       "completed_at, created_at, updated_at) " + numbers +
                       "SELECT ?, ?, 'completed', '{\"n\": 1}', %s, '{\"ok\": true}', 1, 3, 'w', "
                       "'completed', 1, %s, %s, %s FROM n WHERE i <= %d" % (key, old, old, old, count),
               (type_id, type_name))
    db_execute(config, "INSERT INTO task_history (task_id, event, worker_id, created_at) "
                       "SELECT t.id, e.event, 'w', t.created_at FROM tasks t CROSS JOIN "
                       "(SELECT 'created' AS event UNION ALL SELECT 'claimed' UNION ALL "
                       "SELECT 'completed') e WHERE t.dedupe_key LIKE ? ORDER BY t.id",
               ("~backlog-%",))
    db_execute(config, counts, (type_name, count))


def old_rows(config):
    """Tasks and history events the backlog still holds."""
    tasks = db_execute(config, "SELECT COUNT(*) FROM tasks WHERE dedupe_key LIKE ?", ("~backlog-%",))[0][0]
    history = db_execute(config, "SELECT COUNT(*) FROM task_history WHERE worker_id = 'w'")[0][0]
    return tasks, history


BACKLOG = 100000
DRAIN_REQUESTS = 2000


@pytest.mark.slow
def test_a_backlog_of_100k_finished_tasks_drains_under_steady_load(api_factory):
    """One task created, claimed and completed per three requests, as a
    worker would; with the lottery at 0.05 and rounds of up to 200 ms, the
    whole backlog must go while that inflow goes on (one batch of 50 per round
    would need some 30,000 requests)."""
    api = api_factory(retention={"completed_days": 1, "history_days": 1, "gc_probability": 0.05,
                                 "gc_time_ms": 200})
    config = api.app.config
    register(api, "steady")
    seed_backlog(config, "steady", BACKLOG)
    assert old_rows(config) == (BACKLOG, 3 * BACKLOG)
    requests = finished = 0
    while requests < 2 * DRAIN_REQUESTS:
        create(api, {"n": requests}, type="steady")
        task = claim(api, "steady-worker").data
        done = api.post("/tasks/%d/complete" % task["id"], {"worker_id": "steady-worker", "success": True})
        assert done.status == 200, done
        requests += 3
        finished += 1
        if requests % 60 == 0 and old_rows(config) == (0, 0):
            break
    assert old_rows(config) == (0, 0), (requests, old_rows(config))
    assert requests <= DRAIN_REQUESTS, requests
    # the fresh tasks all stay, and the counters still match a recount
    rows = db_execute(config, "SELECT status, COUNT(*) FROM tasks GROUP BY status")
    assert [tuple(row) for row in rows] == [("completed", finished)]
    assert api.get("/stats").data["types"]["steady"]["counts"] == {"completed": finished}


def test_a_round_under_its_time_budget_takes_the_whole_small_backlog(api_factory):
    """gc_batch 4 but 30 old tasks: one lottery win doubles its batches (4, 8,
    16, ...) until none is full, well inside gc_time_ms."""
    api = api_factory(retention={"completed_days": 1, "gc_probability": 0, "gc_batch": 4,
                                 "gc_time_ms": 10000})
    config = api.app.config
    register(api, "many")
    api.post("/tasks", {"tasks": [{"type": "many", "params": {"n": n}} for n in range(30)]})
    finish(api, "w", 30)
    age(config, "tasks", "updated_at", 2)
    config.retention = dict(config.retention, gc_probability=1)
    ApiClient(Application(config=config)).get("/task-types")
    assert db_execute(config, "SELECT COUNT(*) FROM tasks")[0][0] == 0


def test_a_request_that_finishes_many_tasks_gets_a_ticket_as_big(api_factory):
    """A batch complete of 50 tasks at gc_probability 0.02 holds a ticket of
    0.02 x 51 (certain): retention deletes in step with what finishes, however
    many tasks one request carries."""
    api = api_factory(retention={"completed_days": 1, "gc_probability": 0})
    config = api.app.config
    register(api, "bulk")
    api.post("/tasks", {"tasks": [{"type": "bulk", "params": {"n": n}} for n in range(60)]})
    finish(api, "w", 10)
    age(config, "tasks", "updated_at", 2)
    config.retention = dict(config.retention, gc_probability=0.02)
    batch = ApiClient(Application(config=config))
    tasks = batch.post("/tasks/claim", {"worker_id": "w", "limit": 50}).data["tasks"]
    assert len(tasks) == 50
    done = batch.post("/tasks/complete", {"worker_id": "w", "results": [
        {"id": t["id"], "success": True} for t in tasks]})
    assert done.status == 200 and done.data["completed"] == 50
    assert db_execute(config, "SELECT COUNT(*) FROM tasks WHERE status = 'completed'")[0][0] == 50


# -- retention windows in hours, minutes, seconds -----------------------------------
def test_retention_windows_take_a_unit_and_a_bare_number_stays_days():
    from taskq import config as config_module
    from taskq.errors import ConfigError

    parsed = config_module.parse("[retention]\ncompleted_days = 12h\nfailed_days = 7\n"
                                 "cancelled_days = 90m\nhistory_days = 30d\n")
    assert parsed.retention_seconds() == {"completed": 12 * 3600, "failed": 7 * 86400,
                                          "cancelled": 90 * 60}
    assert parsed.retention["history_days"] == 30 * 86400
    assert config_module.parse("[retention]\ncompleted_days = 600s\n").retention["completed_days"] == 600
    assert config_module.parse("[retention]\ncompleted_days = 0\n").retention["completed_days"] == 0
    for bad in ("12x", "h", "-1h", "36501d", "1.5d", "twelve"):
        try:
            config_module.parse("[retention]\ncompleted_days = %s\n" % bad)
        except ConfigError as exc:
            assert "completed_days" in exc.message
        else:
            raise AssertionError(bad)


def test_a_window_in_hours_deletes_what_is_older_and_keeps_what_is_not(api_factory):
    api = api_factory(retention={"completed_days": "6h", "history_days": "2h", "gc_probability": 0})
    config = api.app.config
    register(api, "hourly")
    for n in range(4):
        create(api, {"n": n}, type="hourly")
    done = finish(api, "w", 4)
    hours = lambda ids, h: age_seconds(config, "tasks", "updated_at", h * 3600,  # noqa: E731
                                       "id IN (%s)" % ", ".join(str(i) for i in ids))
    hours(done[:2], 7)   # past 6 hours
    hours(done[2:], 5)   # under 6 hours: a day-based window would keep all four anyway
    first = db_execute(config, "SELECT MIN(id) FROM task_history")[0][0]
    age_seconds(config, "task_history", "created_at", 3 * 3600, "id < %d" % (first + 3))  # past 2 hours
    age_seconds(config, "task_history", "created_at", 3600, "id = %d" % (first + 3))      # under 2 hours
    response = api.post("/admin/purge", {})
    assert response.status == 200, response
    assert response.data["deleted"]["completed"] == 2 and response.data["deleted"]["history"] == 3
    assert sorted(row[0] for row in db_execute(config, "SELECT id FROM tasks")) == done[2:]
    assert response.data["retention_seconds"]["completed"] == 6 * 3600
    assert response.data["retention"]["completed"] == 0.25 and response.data["retention"]["failed"] == 90


def age_seconds(config, table, column, seconds, where="1 = 1"):
    """Move `column` of matching rows `seconds` into the past."""
    if config.backend == "sqlite":
        db_execute(config, "UPDATE %s SET %s = %s - ? WHERE %s" % (table, column, column, where),
                   (seconds * 1000,))
    else:
        db_execute(config, "UPDATE %s SET %s = %s - INTERVAL ? SECOND WHERE %s"
                   % (table, column, column, where), (seconds,))


# -- the backlog, as /metrics and the dashboard show it -------------------------------
def test_store_backlog_counts_rows_past_their_retention_per_table(api_factory):
    from taskq.store import open_store

    api = api_factory(retention={"completed_days": 1, "history_days": 1, "gc_probability": 0})
    config = api.app.config
    register(api, "late")
    for n in range(5):
        create(api, {"n": n}, type="late")
    done = finish(api, "w", 3)
    age(config, "tasks", "updated_at", 2, "id IN (%d, %d)" % (done[0], done[1]))
    first = db_execute(config, "SELECT MIN(id) FROM task_history")[0][0]
    age(config, "task_history", "created_at", 2, "id < %d" % (first + 4))
    store = open_store(config)
    try:
        keep = (config.retention_seconds(), config.retention["history_days"])
        assert store.backlog(*keep) == {"tasks": 2, "task_history": 4, "task_runs": 0,
                                        "taskq_claim_requests": 0}
        assert store.backlog(*keep, cap=1)["tasks"] == 1
        api.post("/admin/purge", {})
        assert store.backlog(*keep) == {"tasks": 0, "task_history": 0, "task_runs": 0,
                                        "taskq_claim_requests": 0}
    finally:
        store.close()


def test_claim_request_rows_past_the_window_are_deleted_by_retention(api_factory):
    """Empty keyed claims older than CLAIM_KEY_WINDOW go, younger ones stay,
    and the backlog counts only the old ones."""
    from taskq.store.base import CLAIM_KEY_WINDOW

    api = api_factory(retention={"gc_probability": 0})
    config = api.app.config
    register(api, "any")  # the SQLite store makes its schema on first use
    if config.backend == "sqlite":
        old = "(CAST(strftime('%s','now') AS INTEGER) - {}) * 1000".format(CLAIM_KEY_WINDOW + 60)
        db_execute(config, "INSERT INTO taskq_claim_requests (request, created_at) VALUES "
                           "('w/a', {0}), ('w/b', {0}), ('w/c', {0}), "
                           "('w/d', CAST(strftime('%s','now') AS INTEGER) * 1000)".format(old))
    else:
        old = "UTC_TIMESTAMP() - INTERVAL %d SECOND" % (CLAIM_KEY_WINDOW + 60)
        db_execute(config, "INSERT INTO taskq_claim_requests (request_hash, created_at) VALUES "
                           "(SHA1('w/a'), {0}), (SHA1('w/b'), {0}), (SHA1('w/c'), {0}), "
                           "(SHA1('w/d'), UTC_TIMESTAMP())".format(old))
    from taskq.store import open_store

    store = open_store(config)
    try:
        assert store.backlog({}, 0)["taskq_claim_requests"] == 3
    finally:
        store.close()
    response = api.post("/admin/purge", {})
    assert response.data["deleted"]["claim_requests"] == 3
    assert db_execute(config, "SELECT COUNT(*) FROM taskq_claim_requests")[0][0] == 1
