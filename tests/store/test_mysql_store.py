"""MariaDB-only behaviour of the MySQL store: index use, both claim paths,
lock conflicts retried, time zones, big and 4-byte UTF-8 payloads, and the
errors a broken database turns into.

The behavioural contract (tests/test_api_*.py) runs on this store too; these
tests pin what only this backend has.
"""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from conftest import IN_CI, ROOT, empty_mysql, make_config, mysql_connect
from taskq.store.base import DEFAULT_ORDER
from taskq.store.mysql import CLAIM_ORDERS

pytestmark = pytest.mark.mysql

CLAIM_PATHS = ["off", "on"]


@pytest.fixture
def db(mysql_database):
    empty_mysql(mysql_database)
    return mysql_database


@pytest.fixture
def store_factory(db, tmp_path):
    """store_factory(skip_locked="off", queue={...}) -> MySQLStore on the emptied test database."""
    from taskq.store.mysql import MySQLStore

    opened = []

    def factory(skip_locked="auto", **sections):
        sections.setdefault("database", {})["skip_locked"] = skip_locked
        store = MySQLStore(make_config("mysql", tmp_path, db, **sections))
        if skip_locked == "on" and not _server_has_skip_locked(store):
            store.close()
            if IN_CI:
                pytest.fail("the CI database server must support SKIP LOCKED")
            pytest.skip("this server has no SKIP LOCKED")
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def _server_has_skip_locked(store):
    from taskq.store.mysql import supports_skip_locked

    return supports_skip_locked(store.flavour, store.version)


def add_type(store, name, **kw):
    return store.register_type(name, "1", "{}", kw.get("max_attempts"), kw.get("claim_timeout"))[0]


def add_tasks(store, type_row, priorities, tag=""):
    items = [{"type_id": type_row["id"], "type": type_row["name"],
              "params_json": json.dumps({"n": n, "tag": tag}),
              "dedupe_key": uuid.uuid4().hex * 2, "priority": priority,
              "max_attempts": 3, "claim_timeout": None}
             for n, priority in enumerate(priorities)]
    return [row["id"] for row, _ in store.create_tasks(items)]


# -- the claim reads indexes in order ------------------------------------------------
CLAIM_STATEMENTS = {
    # stepped orders (priority ASC, attempts DESC): the next group, then its rows
    "group_top": ((2 ** 31,), "tasks_claim"),
    "group_top_of_type": ((1, 2 ** 31), "tasks_type_claim"),
    "group_rows": ((1, 5), "tasks_claim"),
    "group_rows_of_type": ((1, 1, 5), "tasks_type_claim"),
    "claim_next": (("w", None, 300), "tasks_claim"),
    "claim_next_of_type": (("w", None, 300, 1), "tasks_type_claim"),
    "lock_head": ((2,), "tasks_claim"),
    "lock_head_of_type": ((1, 2), "tasks_type_claim"),
    "lock_next": ((1,), "tasks_claim"),
    "lock_next_of_type": ((1, 1), "tasks_type_claim"),
    "head_of_type": ((1, 1), "tasks_type_claim"),
    "expired_leases": ((50,), "tasks_lease"),
    "cluster_candidates": ((50,), "tasks_claim"),
    "cluster_candidates_of_type": ((1, 50), "tasks_type_claim"),
    "claimed_with_key": (("key-1", "w"), "tasks_claim_request"),
}


def _order_id(order):
    return "%s-%s" % (order[0], "desc" if order[1] else "asc")


@pytest.mark.parametrize("order", sorted(CLAIM_ORDERS), ids=_order_id)
@pytest.mark.parametrize("name", sorted(CLAIM_STATEMENTS))
def test_claim_statement_reads_its_index_without_sort_or_scan(store_factory, name, order):
    from taskq.store.mysql import Q

    if (name == "expired_leases" or name.startswith("cluster_")) and order != DEFAULT_ORDER:
        pytest.skip("one statement, whatever the claim order")
    if ("group" in CLAIM_ORDERS[order]) != name.startswith("group_"):
        pytest.skip("a statement this order does not run")
    store = store_factory()
    alpha = add_type(store, "plan.alpha")
    ids = add_tasks(store, alpha, [n % 7 for n in range(300)])
    db_conn = mysql_connect(store.config.database["name"])
    with db_conn.cursor() as cur:  # attempts that vary, as retries leave them
        cur.execute("UPDATE tasks SET attempts = id %% 4 WHERE id <= %s", (ids[150],))
    db_conn.commit()
    db_conn.close()
    store.claim("w", None, 20, None)
    params, index = CLAIM_STATEMENTS[name]
    fmt = CLAIM_ORDERS[order]
    if index == "tasks_claim":
        index = fmt["index"]
    elif index == "tasks_type_claim":
        index = fmt["type_index"]
    cursor = store.conn.cursor()
    cursor.execute("EXPLAIN " + Q[name].format(lock=" FOR UPDATE", **fmt), params)
    columns = [c[0] for c in cursor.description]
    plan = [dict(zip(columns, row)) for row in cursor.fetchall()]
    assert [row["key"] for row in plan] == [index], plan
    assert all(row["type"] in ("range", "ref") for row in plan), plan
    extra = " ".join(row["Extra"] or "" for row in plan)
    assert "filesort" not in extra and "temporary" not in extra, plan


def test_claim_reads_one_index_entry_past_a_thousand_finished_tasks(store_factory):
    store = store_factory(skip_locked="off")
    if store.flavour != "MariaDB":
        pytest.skip("ANALYZE <statement> is MariaDB's")
    alpha = add_type(store, "plan.alpha")
    ids = add_tasks(store, alpha, [5] * 1000 + [0] * 3)
    conn = mysql_connect(store.config.database["name"])
    with conn.cursor() as cur:
        cur.execute("UPDATE tasks SET status = 'completed' WHERE id <= %s", (ids[999],))
        cur.execute("BEGIN")
        from taskq.store.mysql import Q

        cur.execute("ANALYZE " + Q["claim_next"].format(**CLAIM_ORDERS[DEFAULT_ORDER]),
                    ("w", None, 300))
        columns = [c[0] for c in cur.description]
        plan = [dict(zip(columns, row)) for row in cur.fetchall()]
        cur.execute("ROLLBACK")
    conn.close()
    assert [float(row["r_rows"]) for row in plan] == [1.0], plan


# -- tasks not yet due stay out of the claim's way ----------------------------------
def _future_tasks(store, type_row, count, priority=9):
    from datetime import datetime, timedelta, timezone

    later = datetime.now(timezone.utc) + timedelta(days=30)
    items = [{"type_id": type_row["id"], "type": type_row["name"], "params_json": json.dumps({"f": n}),
              "dedupe_key": uuid.uuid4().hex * 2, "priority": priority, "max_attempts": 3,
              "claim_timeout": None, "run_at": later} for n in range(count)]
    return [row["id"] for row, _ in store.create_tasks(items)]


def _analyze(store, name, params):
    conn = mysql_connect(store.config.database["name"])
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        from taskq.store.mysql import Q

        cur.execute("ANALYZE " + Q[name].format(**CLAIM_ORDERS[DEFAULT_ORDER]), params)
        columns = [c[0] for c in cur.description]
        plan = [dict(zip(columns, row)) for row in cur.fetchall()]
        cur.execute("ROLLBACK")
    conn.close()
    return plan


@pytest.mark.parametrize("name", ["due_tasks", "due_tasks_skip_locked", "due_tasks_cluster"])
def test_due_task_promotion_reads_tasks_due_in_order(store_factory, name):
    from taskq.store.mysql import Q

    store = store_factory()
    alpha = add_type(store, "plan.alpha")
    _future_tasks(store, alpha, 300)
    add_tasks(store, alpha, [0] * 50)
    cursor = store.conn.cursor()
    cursor.execute("EXPLAIN " + Q[name], (100,))
    columns = [c[0] for c in cursor.description]
    plan = [dict(zip(columns, row)) for row in cursor.fetchall()]
    assert [row["key"] for row in plan] == ["tasks_due"], plan
    assert all(row["type"] in ("range", "ref") for row in plan), plan
    assert "filesort" not in " ".join(row["Extra"] or "" for row in plan), plan


def test_claim_reads_one_entry_and_promotion_none_past_a_thousand_future_tasks(store_factory):
    store = store_factory(skip_locked="off")
    if store.flavour != "MariaDB":
        pytest.skip("ANALYZE <statement> is MariaDB's")
    alpha = add_type(store, "plan.alpha")
    future = _future_tasks(store, alpha, 1000)  # higher priority than the pending ones
    add_tasks(store, alpha, [0] * 3)
    assert [float(row["r_rows"]) for row in _analyze(store, "claim_next", ("w", None, 300))] == [1.0]
    assert [float(row["r_rows"] or 0) for row in _analyze(store, "due_tasks", (100,))] == [0.0]
    claimed = store.claim("w", None, 10, None)
    assert len(claimed) == 3 and not set(r["id"] for r in claimed) & set(future)


def test_due_schedules_read_is_one_index_range(store_factory):
    from taskq.store.mysql import Q

    store = store_factory()
    alpha = add_type(store, "plan.alpha")
    for n in range(40):
        store.create_schedule({"name": None, "type_id": alpha["id"], "type": "plan.alpha",
                               "params_json": "{}", "priority": 0, "every_seconds": 60, "cron": None,
                               "timezone": "UTC", "catch_up": "latest", "catch_up_limit": 100,
                               "next_run_at": "2990-01-01T00:%02d:00Z" % n})
    cursor = store.conn.cursor()
    cursor.execute("EXPLAIN " + Q["due_schedules"], (5,))
    columns = [c[0] for c in cursor.description]
    plan = [dict(zip(columns, row)) for row in cursor.fetchall()]
    assert [row["key"] for row in plan] == ["task_schedules_due"], plan
    assert all(row["type"] in ("range", "ref") for row in plan), plan
    assert "filesort" not in " ".join(row["Extra"] or "" for row in plan), plan


# -- both claim paths hand out the same order -------------------------------------
@pytest.mark.parametrize("skip_locked", CLAIM_PATHS)
def test_claim_takes_highest_priority_then_oldest_on_each_path(store_factory, skip_locked):
    store = store_factory(skip_locked)
    assert store.skip_locked is (skip_locked == "on")
    alpha, beta = add_type(store, "order.alpha"), add_type(store, "order.beta")
    a = add_tasks(store, alpha, [1, 5, 5, 0])
    b = add_tasks(store, beta, [9, 5, 1])
    got = [row["id"] for row in store.claim("w1", None, 3, None)]
    assert got == [b[0], a[1], a[2]]
    assert [row["id"] for row in store.claim("w1", "order.alpha", 5, None)] == [a[0], a[3]]
    assert [row["id"] for row in store.claim("w1", "order.%", 1, None)] == [b[1]]
    assert [row["id"] for row in store.claim("w1", "order.%", 5, None)] == [b[2]]
    assert store.claim("w1", None, 5, None) == []


def _expected(rows, order):
    """rows: {id: (priority, attempts)} -> ids in claim order (ties oldest first)."""
    column, descending = order
    sign = -1 if descending else 1
    if column == "id":
        return sorted(rows, key=lambda task_id: sign * task_id)
    pick = 0 if column == "priority" else 1
    return sorted(rows, key=lambda task_id: (sign * rows[task_id][pick], task_id))


@pytest.mark.parametrize("order", sorted(CLAIM_ORDERS), ids=_order_id)
@pytest.mark.parametrize("skip_locked", CLAIM_PATHS)
def test_every_claim_order_holds_on_each_path_single_batch_one_type_and_pattern(
        store_factory, skip_locked, order):
    store = store_factory(skip_locked)
    types = [add_type(store, "ord.t%d" % n) for n in range(3)]
    rows = {}
    conn = mysql_connect(store.config.database["name"])
    with conn.cursor() as cur:
        for n, type_row in enumerate(types):
            priorities = [(n * 3 + k) % 4 for k in range(5)]
            for k, task_id in enumerate(add_tasks(store, type_row, priorities)):
                attempts = (task_id * 7 + k) % 3
                cur.execute("UPDATE tasks SET attempts = %s WHERE id = %s", (attempts, task_id))
                rows[task_id] = (priorities[k], attempts, type_row["id"])
    conn.commit()
    conn.close()
    one_type = {i: r for i, r in rows.items() if r[2] == types[1]["id"]}
    got = [store.claim("w", None, 1, None, task_type_id=types[1]["id"], order=order)[0]["id"]]
    got += [r["id"] for r in store.claim("w", None, 2, None, task_type_id=types[1]["id"],
                                         order=order)]
    assert got == _expected(one_type, order)[:3]
    left = {i: r for i, r in rows.items() if i not in got}
    pattern = {i: r for i, r in left.items() if r[2] != types[1]["id"]}
    taken = [store.claim("w", "ord.t_", 1, None, task_type_id=None, order=order)[0]["id"]]
    assert taken == _expected(left, order)[:1]
    batch = [r["id"] for r in store.claim("w", "ord.t%", 4, None, order=order)]
    assert batch == _expected({i: r for i, r in left.items() if i not in taken}, order)[:4]
    rest = {i: r for i, r in left.items() if i not in taken + batch}
    assert [r["id"] for r in store.claim("w", None, 100, None, order=order)] == _expected(rest, order)
    assert pattern  # the pattern claims merged heads of two or three types


@pytest.mark.parametrize("skip_locked", CLAIM_PATHS)
def test_claim_with_pattern_over_several_types_merges_their_heads(store_factory, skip_locked):
    store = store_factory(skip_locked)
    types = [add_type(store, "merge.t%d" % n) for n in range(4)]
    ids = {}
    for n, type_row in enumerate(types):
        for task_id, priority in zip(add_tasks(store, type_row, [n, 10 - n, n]), [n, 10 - n, n]):
            ids[task_id] = priority
    expected = sorted(ids, key=lambda task_id: (-ids[task_id], task_id))
    got = [row["id"] for row in store.claim("w", "merge.%", 7, None)]
    got += [row["id"] for row in store.claim("w", "merge.%", 10, None)]
    assert got == expected


# -- the cluster claim (docs/scaling.md), here on a plain server --------------------
def test_cluster_auto_finds_no_cluster_on_a_plain_server_and_galera_forces_the_cluster_claim(
        store_factory):
    auto = store_factory(database={"cluster": "auto"})
    assert auto.cluster is False
    assert store_factory(database={"cluster": "off"}).cluster is False
    forced = store_factory(database={"cluster": "galera"})
    assert forced.cluster is True
    for store in (auto, forced):  # the session setup ran in every mode
        cursor = store.conn.cursor()
        cursor.execute("SHOW SESSION VARIABLES WHERE Variable_name IN "
                       "('tx_isolation', 'transaction_isolation')")
        assert {value for _, value in cursor.fetchall()} == {"READ-COMMITTED"}


def test_cluster_claim_takes_every_higher_priority_first_and_only_pending_tasks(store_factory):
    store = store_factory(database={"cluster": "galera"})
    alpha, beta = add_type(store, "spread.alpha"), add_type(store, "spread.beta")
    a = add_tasks(store, alpha, [5] * 6 + [1] * 4)
    b = add_tasks(store, beta, [9, 5, 1])
    first = [row["id"] for row in store.claim("w1", None, 3, None)]
    assert first[0] == b[0] and set(first[1:]) <= set(a[:6]) | {b[1]}
    rest = [row["id"] for row in store.claim("w2", "spread.%", 5, None)]
    assert set(first[1:] + rest) == set(a[:6]) | {b[1]}  # all of priority 5 before any of 1
    assert {row["id"] for row in store.claim("w3", "spread.alpha", 10, None)} == set(a[6:])
    assert [row["id"] for row in store.claim("w3", "spread.%", 10, None)] == [b[2]]
    assert store.claim("w4", None, 5, None) == []
    conn = mysql_connect(store.config.database["name"])
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), SUM(attempts = 1) FROM tasks WHERE status = 'claimed'")
        assert cur.fetchone() == (13, 13)
    conn.close()


def test_cluster_claim_of_a_batch_passes_over_a_task_taken_meanwhile(store_factory):
    """A candidate another claimer took after the plain read fails its
    conditional UPDATE; the claim goes on to the next candidates."""
    store = store_factory(database={"cluster": "galera"})
    alpha = add_type(store, "taken.alpha")
    ids = add_tasks(store, alpha, [0] * 4)
    original = store._cluster_candidates

    def candidates_then_race(type_ids, count):
        rows = original(type_ids, count)
        other = store_factory(database={"cluster": "galera"})
        other.claim("rival", None, 2, None)  # commits before our UPDATEs run
        return rows

    store._cluster_candidates = candidates_then_race
    got = [row["id"] for row in store.claim("w", None, 4, None)]
    assert len(got) == 2 and set(got) | {row for row in ids if row not in got} == set(ids)
    conn = mysql_connect(store.config.database["name"])
    with conn.cursor() as cur:
        cur.execute("SELECT claimed_by, COUNT(*) FROM tasks GROUP BY claimed_by ORDER BY claimed_by")
        assert cur.fetchall() == (("rival", 2), ("w", 2))
    conn.close()


def test_cluster_claim_passes_over_paused_types_and_stops_at_max_concurrency(store_factory):
    store = store_factory(database={"cluster": "galera"})
    alpha, beta, gamma = (add_type(store, "caps.%s" % name) for name in ("alpha", "beta", "gamma"))
    a, b, g = (set(add_tasks(store, row, [0] * 5)) for row in (alpha, beta, gamma))
    store.update_type_settings("caps.alpha", {"is_paused": True})
    store.update_type_settings("caps.beta", {"max_concurrency": 2})
    got = {row["id"] for row in store.claim("w", None, 10, None)}
    assert not got & a and len(got & b) == 2 and g <= got
    assert store.claim("w", "caps.beta", 5, None) == []
    assert store.claim("w", "caps.%", 5, None) == []


def test_cluster_claim_promotes_due_scheduled_tasks_and_leaves_future_ones(store_factory):
    store = store_factory(database={"cluster": "galera"})
    later = add_type(store, "due.alpha")
    items = [{"type_id": later["id"], "type": later["name"], "params_json": json.dumps({"n": n}),
              "dedupe_key": uuid.uuid4().hex * 2, "priority": 0, "max_attempts": 3,
              "claim_timeout": None, "delay_seconds": 3600} for n in range(3)]
    first, second, future = [row["id"] for row, _ in store.create_tasks(items)]
    conn = mysql_connect(store.config.database["name"])
    with conn.cursor() as cur:
        cur.execute("UPDATE tasks SET run_at = '2000-01-01' WHERE id IN (%s, %s)", (first, second))
    conn.close()
    (got,) = [row["id"] for row in store.claim("w", None, 1, None)]
    assert got in (first, second)  # the cluster claim spreads within a priority
    other = second if got == first else first
    assert store.get_task(other)["status"] == "pending"  # promoted by the same claim
    assert store.get_task(future)["status"] == "scheduled"
    counts = sorted(store.stats()["counts"])  # the promotion moved the counters too
    assert counts == [("due.alpha", "claimed", 1), ("due.alpha", "pending", 1),
                      ("due.alpha", "scheduled", 1)]
    assert [row["id"] for row in store.claim("w", None, 5, None)] == [other]


def test_skip_locked_is_used_where_the_server_has_it_and_off_forces_the_portable_path(store_factory):
    auto = store_factory("auto")
    assert auto.skip_locked is _server_has_skip_locked(auto)
    assert store_factory("off").skip_locked is False
    assert store_factory("on").skip_locked is True


@pytest.mark.parametrize("flavour_info, expected", [
    ("10.11.19-MariaDB-0+deb12u1", ("MariaDB", (10, 11, 19), True)),
    ("5.5.5-10.5.23-MariaDB-log", ("MariaDB", (10, 5, 23), False)),
    ("10.6.0-MariaDB", ("MariaDB", (10, 6, 0), True)),
    ("8.0.36", ("MySQL", (8, 0, 36), True)),
    ("8.0.0-dmr", ("MySQL", (8, 0, 0), False)),
    ("5.7.44-log", ("MySQL", (5, 7, 44), False)),
])
def test_server_version_decides_skip_locked_support(flavour_info, expected):
    from taskq.store.mysql import parse_server_version, supports_skip_locked

    flavour, version = parse_server_version(flavour_info)
    assert (flavour, version, supports_skip_locked(flavour, version)) == expected


def test_skip_locked_claim_passes_over_a_row_another_transaction_holds(store_factory):
    store = store_factory("on")
    alpha = add_type(store, "held.alpha")
    first, second = add_tasks(store, alpha, [1, 0])
    other = mysql_connect(store.config.database["name"])
    with other.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (first,))
        assert [row["id"] for row in store.claim("w", None, 2, None)] == [second]
        cur.execute("ROLLBACK")
    other.close()
    assert [row["id"] for row in store.claim("w", None, 2, None)] == [first]


@pytest.mark.parametrize("skip_locked", CLAIM_PATHS)
def test_claim_moves_past_a_head_another_claimer_takes_meanwhile(store_factory, skip_locked):
    """The portable path waits for the row another transaction is claiming,
    then takes the next one; SKIP LOCKED takes the next one at once."""
    store = store_factory(skip_locked)
    alpha = add_type(store, "race.alpha")
    first, second = add_tasks(store, alpha, [1, 0])
    other = mysql_connect(store.config.database["name"])
    cur = other.cursor()
    cur.execute("BEGIN")
    cur.execute("UPDATE tasks SET status = 'claimed', claimed_by = 'other', attempts = 1, "
                "lease_expires_at = UTC_TIMESTAMP(6) + INTERVAL 60 SECOND WHERE id = %s", (first,))
    releaser = threading.Timer(0.3, other.commit)
    releaser.start()
    try:
        got = [row["id"] for row in store.claim("w", None, 2, None)]
    finally:
        releaser.join()
        other.close()
    assert got == [second]


def test_portable_claims_take_turns_on_the_claim_lock_row(store_factory):
    """Without SKIP LOCKED a claim waits while another claim holds the turn
    (claims reading through different indexes would deadlock otherwise)."""
    store = store_factory("off")
    task_id, = add_tasks(store, add_type(store, "turn.alpha"), [0])
    other = mysql_connect(store.config.database["name"])
    cur = other.cursor()
    cur.execute("BEGIN")
    cur.execute("SELECT name FROM taskq_locks WHERE name = 'claim' FOR UPDATE")
    got = []
    claimer = threading.Thread(target=lambda: got.extend(store.claim("w", "turn.%", 1, None)))
    claimer.start()
    claimer.join(0.5)
    try:
        assert claimer.is_alive() and got == []  # still waiting for its turn
    finally:
        other.rollback()
        other.close()
    claimer.join(10)
    assert [row["id"] for row in got] == [task_id]


# -- many processes claiming at once --------------------------------------------------
WORKER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from taskq import config
from taskq.store.mysql import MySQLStore
store = MySQLStore(config.load(sys.argv[2]))
worker = sys.argv[3]
claimed, turn = [], 0
while turn < 5000:
    turn += 1
    pattern = (None, "conc.a", "conc.%")[turn % 3]
    rows = store.claim(worker, pattern, 1 + turn % 3, None)
    if not rows and pattern is None:
        break
    for row in rows:
        claimed.append(row["id"])
        store.complete(row["id"], worker, True, json.dumps({"by": worker}), None)
store.close()
print(json.dumps(claimed))
"""


@pytest.mark.parametrize("skip_locked", CLAIM_PATHS)
def test_eight_processes_claim_every_task_exactly_once(store_factory, tmp_path, skip_locked):
    store = store_factory(skip_locked)
    ids = []
    for n, name in enumerate(("conc.a", "conc.b", "other.c")):
        ids += add_tasks(store, add_type(store, name), [(n * 7 + k) % 5 for k in range(100)])
    config_path = str(tmp_path / "config.ini")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, os.path.join(ROOT, "lib"), config_path,
                               "worker-%d" % n], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for n in range(8)]
    outputs = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _, _ in outputs), [err[-2000:] for _, _, err in outputs]
    claimed = [task_id for _, out, _ in outputs for task_id in json.loads(out)]
    assert sorted(claimed) == sorted(ids)
    conn = mysql_connect(store.config.database["name"])
    with conn.cursor() as cur:
        cur.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status")
        assert cur.fetchall() == (("completed", 300),)
        cur.execute("SELECT task_id FROM task_history WHERE event = 'claimed' "
                    "GROUP BY task_id HAVING COUNT(*) > 1")
        assert cur.fetchall() == ()
    conn.close()


# -- lock conflicts are retried inside the request ----------------------------------
def test_lock_wait_timeout_is_retried_until_the_row_is_free(store_factory):
    store = store_factory("off")
    alpha = add_type(store, "wait.alpha")
    task_id, = add_tasks(store, alpha, [0])
    store.claim("w", None, 1, None)
    store.conn.cursor().execute("SET SESSION innodb_lock_wait_timeout = 1")
    other = mysql_connect(store.config.database["name"])
    cur = other.cursor()
    cur.execute("BEGIN")
    cur.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (task_id,))
    releaser = threading.Timer(1.5, other.rollback)  # longer than one lock wait, shorter than five
    releaser.start()
    try:
        outcome = store.complete(task_id, "w", True, "[]", None)
    finally:
        releaser.join()
        other.close()
    assert outcome == {"id": task_id, "status": "completed", "attempts": 1, "will_retry": False}


def test_deadlock_victim_transaction_is_run_again(store_factory):
    """Two transactions lock two rows in opposite orders: InnoDB kills one,
    and that one runs again and succeeds, whichever it was."""
    first_store, second_store = store_factory("off"), store_factory("off")
    ids = add_tasks(first_store, add_type(first_store, "dead.alpha"), [0, 0])
    both_hold_one = threading.Barrier(2, timeout=10)
    runs, results = [], {}

    def work_for(store, order, name):
        def work():
            runs.append(name)
            cursor = store.conn.cursor()
            cursor.execute("UPDATE tasks SET progress = progress + 1 WHERE id = %s", (order[0],))
            if runs.count(name) == 1:
                both_hold_one.wait()
            cursor.execute("UPDATE tasks SET progress = progress + 1 WHERE id = %s", (order[1],))
            return name

        return lambda: results.__setitem__(name, store._transaction(work))

    threads = [threading.Thread(target=work_for(first_store, ids, "a")),
               threading.Thread(target=work_for(second_store, ids[::-1], "b"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {"a": "a", "b": "b"}
    assert len(runs) == 3
    assert [first_store.get_task(task_id)["progress"] for task_id in ids] == [2, 2]


def test_lock_conflict_that_never_clears_is_503_not_500(store_factory, monkeypatch):
    import taskq.store.mysql as mysql_store
    from taskq.errors import Unavailable

    store = store_factory("off")
    alpha = add_type(store, "stuck.alpha")
    task_id, = add_tasks(store, alpha, [0])
    store.claim("w", None, 1, None)
    store.conn.cursor().execute("SET SESSION innodb_lock_wait_timeout = 1")
    monkeypatch.setattr(mysql_store, "TRANSACTION_ATTEMPTS", 2)
    other = mysql_connect(store.config.database["name"])
    cur = other.cursor()
    cur.execute("BEGIN")
    cur.execute("SELECT id FROM tasks WHERE id = %s FOR UPDATE", (task_id,))
    try:
        with pytest.raises(Unavailable):
            store.progress(task_id, "w", 10, None)
    finally:
        other.rollback()
        other.close()
    assert store.get_task(task_id)["progress"] == 0


# -- the database clock, in UTC -------------------------------------------------------
def _parse(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def test_lease_is_honoured_whatever_the_session_time_zones(store_factory):
    claimer, rival, finisher = store_factory("off"), store_factory("off"), store_factory("off")
    for store, zone in ((claimer, "+10:00"), (rival, "-11:00"), (finisher, "-05:00")):
        store.conn.cursor().execute("SET SESSION time_zone = %s", (zone,))
    alpha = add_type(claimer, "tz.alpha")
    task_id, = add_tasks(claimer, alpha, [0])
    row, = claimer.claim("w1", None, 1, 60)
    utc_now = datetime.now(timezone.utc).replace(tzinfo=None)
    lease = _parse(row["lease_expires_at"]) - _parse(row["claimed_at"])
    assert timedelta(seconds=59) <= lease <= timedelta(seconds=61)
    assert abs(_parse(row["claimed_at"]) - utc_now) < timedelta(minutes=5)
    assert rival.claim("w2", None, 1, None) == []
    assert finisher.complete(task_id, "w1", True, "1", None)["status"] == "completed"


def test_expired_lease_is_taken_back_by_the_next_claim_only_once(store_factory):
    first, second = store_factory("off"), store_factory("on")
    alpha = add_type(first, "exp.alpha")
    task_id, = add_tasks(first, alpha, [0])
    first.claim("w1", None, 1, 1)
    conn = mysql_connect(first.config.database["name"])
    with conn.cursor() as cur:
        cur.execute("UPDATE tasks SET lease_expires_at = UTC_TIMESTAMP(6) - INTERVAL 1 SECOND")
    conn.close()
    row, = second.claim("w2", None, 1, None)
    assert (row["id"], row["attempts"], row["claimed_by"]) == (task_id, 2, "w2")
    assert first.claim("w1", None, 1, None) == []
    events = [e["event"] for e in first.task_history(task_id)]
    assert events == ["created", "claimed", "lease_expired", "claimed"]


# -- payloads ---------------------------------------------------------------------
def test_large_four_byte_utf8_params_and_result_round_trip(store_factory):
    store = store_factory()
    alpha = add_type(store, "big.alpha")
    text = "emoji \U0001F600 and \u4e2d\u6587 " * 40000  # about 1 MB of 4-byte and CJK text
    params = json.dumps({"text": text}, ensure_ascii=False)
    result = json.dumps({"echo": text, "zero": 0, "no": False, "empty": []}, ensure_ascii=False)
    (row, _), = store.create_tasks([{"type_id": alpha["id"], "type": "big.alpha",
                                     "params_json": params, "dedupe_key": "b" * 64, "priority": 0,
                                     "max_attempts": 3, "claim_timeout": None}])
    claimed, = store.claim("w", None, 1, None)
    assert claimed["params_json"] == params
    store.complete(row["id"], "w", True, result, None)
    assert store.get_task(row["id"])["result_json"] == result


def test_payload_over_the_servers_packet_limit_is_413_not_503(store_factory):
    from taskq.errors import PayloadTooLarge

    store = store_factory()
    alpha = add_type(store, "huge.alpha")
    cursor = store.conn.cursor()
    cursor.execute("SELECT @@max_allowed_packet")
    too_big = json.dumps({"text": "x" * int(cursor.fetchone()[0])})
    with pytest.raises(PayloadTooLarge) as caught:
        store.create_tasks([{"type_id": alpha["id"], "type": "huge.alpha", "params_json": too_big,
                             "dedupe_key": "h" * 64, "priority": 0, "max_attempts": 3,
                             "claim_timeout": None}])
    assert "max_allowed_packet" in caught.value.message
    task_id, = add_tasks(store, alpha, [0])
    store.claim("w", None, 1, None)
    with pytest.raises(PayloadTooLarge):
        store.complete(task_id, "w", True, too_big, None)
    assert store.complete(task_id, "w", True, "1", None)["status"] == "completed"


@pytest.mark.parametrize("result", ["0", "false", "[]", "{}", "null", '""'])
def test_falsy_result_is_stored_as_given(store_factory, result):
    store = store_factory()
    task_id, = add_tasks(store, add_type(store, "falsy.alpha"), [0])
    store.claim("w", None, 1, None)
    store.complete(task_id, "w", True, result, None)
    assert store.get_task(task_id)["result_json"] == result


def test_type_names_compare_case_sensitively(store_factory):
    store = store_factory()
    add_tasks(store, add_type(store, "Case.Alpha"), [0])
    assert store.claim("w", "case.%", 1, None) == []
    assert store.list_tasks(None, "case.alpha", 10, 0) == ([], 0)
    assert store.list_tasks(None, "Case.%", 10, 0)[1] == 1
    assert len(store.claim("w", "Case.%", 1, None)) == 1


def test_non_ascii_type_pattern_matches_nothing(store_factory):
    store = store_factory()
    add_tasks(store, add_type(store, "plain.alpha"), [0])
    assert store.claim("w", "pl\u00e4in.%", 1, None) == []
    assert store.list_tasks(None, "\U0001F600%", 10, 0) == ([], 0)


def test_register_type_reports_created_once_when_registrations_race(store_factory, tmp_path):
    store = store_factory()
    script = r"""
import sys
sys.path.insert(0, sys.argv[1])
from taskq import config
from taskq.store.mysql import MySQLStore
store = MySQLStore(config.load(sys.argv[2]))
row, created = store.register_type("race.type", "1", "{}", None, None)
print(row["id"], int(created))
"""
    procs = [subprocess.Popen([sys.executable, "-c", script, os.path.join(ROOT, "lib"),
                               str(tmp_path / "config.ini")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(8)]
    outputs = [(p.wait(timeout=60), p.stdout.read().split(), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _, _ in outputs), outputs
    assert len({out[0] for _, out, _ in outputs}) == 1
    assert sorted(out[1] for _, out, _ in outputs) == [b"0"] * 7 + [b"1"]
    assert store.get_type("race.type")["is_active"] == 1


# -- a broken database --------------------------------------------------------------
def test_missing_tables_are_schema_missing(tmp_path, mysql_database):
    from taskq.errors import SchemaMissing
    from taskq.store.mysql import MySQLStore

    name = "taskq_empty_%s" % uuid.uuid4().hex[:10]
    conn = mysql_connect()
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE %s" % name)
    try:
        cfg = make_config("mysql", tmp_path, name)
        with pytest.raises(SchemaMissing) as caught:  # every request: at connect, before anything
            MySQLStore(cfg)
        assert "installer" in caught.value.message and caught.value.status == 503
        store = MySQLStore(cfg, check_schema=False)  # the installer's view: each query says it too
        for call in (store.ping, lambda: store.get_task(1), lambda: store.claim("w", None, 1, None)):
            with pytest.raises(SchemaMissing) as caught:
                call()
            assert "installer" in caught.value.message
            assert caught.value.status == 503
        store.close()
    finally:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE %s" % name)
        conn.close()


@pytest.mark.parametrize("database", [
    {"port": "1"},
    {"password": "certainly-not-the-password", "user": "taskq_no_such_user"},
    {"name": "taskq_no_such_database_%s" % uuid.uuid4().hex[:8]},
])
def test_unreachable_or_refused_database_is_unavailable(tmp_path, mysql_database, database):
    from taskq.errors import Unavailable
    from taskq.store.mysql import MySQLStore

    database = dict(database, connect_timeout="2")
    with pytest.raises(Unavailable) as caught:
        MySQLStore(make_config("mysql", tmp_path, mysql_database, database=database))
    assert caught.value.status == 503
    assert caught.value.__cause__ is not None  # the driver's error stays attached for the log


def test_schema_sql_records_its_version(db):
    conn = mysql_connect(db)
    with conn.cursor() as cur:
        cur.execute("SELECT version FROM taskq_schema_version ORDER BY version")
        from taskq import migrate

        assert cur.fetchall() == tuple((m.number,) for m in migrate.available())
    conn.close()


def test_server_info_names_flavour_and_version(store_factory):
    store = store_factory()
    flavour, _, version = store.server_info().partition(" ")
    assert flavour in ("MariaDB", "MySQL")
    assert version.count(".") == 2
