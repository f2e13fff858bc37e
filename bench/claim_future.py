#!/usr/bin/env python3
"""Claims with a million tasks not yet due ahead of them, on SQLite and MariaDB.

Not-yet-due tasks have status 'scheduled' and sit in tasks_due, never in the
'pending' range of the claim indexes, so a claim should cost the same with 0
or 1,000,000 of them. This fills a throwaway database (and a throwaway SQLite
file) with pending tasks, times claims, adds the future tasks (at a higher
priority than the pending ones, the worst case for a design that filtered
them out at claim time), times claims again, and prints the EXPLAIN (and, on
MariaDB, ANALYZE row counts) of the promotion and claim statements.

A timed claim is what POST /tasks/claim runs in the store: the due-schedule
read (schedules.materialize_due with nothing due), then Store.claim, whose
transaction promotes due tasks, handles expired leases and claims.

    .venv/py3.11/bin/python bench/claim_future.py               # 1,000,000 future tasks
    .venv/py3.11/bin/python bench/claim_future.py --future 100000 --samples 50

Numbers go in docs/performance.md, never in test assertions.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402

from taskq import config as config_module  # noqa: E402

DIGITS = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL " \
         "SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL " \
         "SELECT 8 UNION ALL SELECT 9)"


def mysql_fill(conn, rows, start, future):
    """rows tasks from number `start`: pending at priority 0, or scheduled a month ahead at 9."""
    chunk = min(rows, 100000)
    width = len(str(chunk - 1))
    digits = " CROSS JOIN ".join("%s AS d%d" % (DIGITS, i) for i in range(width))
    number = " + ".join("d%d.d * %d" % (i, 10 ** i) for i in range(width))
    status, priority = ("scheduled", 9) if future else ("pending", 0)
    run_at = "UTC_TIMESTAMP(6) + INTERVAL 30 DAY" if future else "NULL"
    with conn.cursor() as cur:
        cur.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0")
        for base in range(start, start + rows, chunk):
            cur.execute(
                "INSERT INTO tasks (type_id, type, status, params_json, dedupe_key, priority, "
                "neg_priority, max_attempts, run_at, created_at, updated_at) "
                "SELECT 1, 'bench.later', %s, CONCAT('{{\"n\":', n, '}}'), LPAD(HEX(n), 64, '0'), "
                "%s, %s, 3, {run_at}, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) "
                "FROM (SELECT {base} + {number} AS n FROM {digits}) AS seq WHERE n < %s".format(
                    run_at=run_at, base=base, number=number, digits=digits),
                (status, priority, -priority, start + rows))
        cur.execute("SET SESSION unique_checks = 1, foreign_key_checks = 1")
        cur.execute("ANALYZE TABLE tasks")
        cur.fetchall()


def sqlite_fill(path, rows, start, future):
    import sqlite3

    status, priority = ("scheduled", 9) if future else ("pending", 0)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute(
        "WITH RECURSIVE seq(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM seq WHERE n < ?) "
        "INSERT INTO tasks (type_id, type, status, params_json, dedupe_key, priority, "
        "max_attempts, run_at, created_at, updated_at) "
        "SELECT 1, 'bench.later', ?, '{\"n\":' || n || '}', printf('%064x', n), ?, 3, "
        "CASE WHEN ? THEN CAST(strftime('%s','now') AS INTEGER) * 1000 + 30 * 86400000 END, "
        "CAST(strftime('%s','now') AS INTEGER) * 1000, CAST(strftime('%s','now') AS INTEGER) * 1000 "
        "FROM seq", (start, start + rows - 1, status, priority, int(future)))
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def time_claims(store, samples):
    """ms per (due-schedule read + claim of one task), and per complete."""
    claims, completes = [], []
    for index in range(samples):
        started = time.perf_counter()
        store.due_schedules(5)
        rows = store.claim("bench-worker", None, 1, None)
        claims.append((time.perf_counter() - started) * 1000)
        if not rows:
            raise SystemExit("claim %d found nothing" % index)
        if rows[0]["status"] != "claimed" or rows[0]["run_at"] is not None:
            raise SystemExit("claim %d handed out a task not yet due: %r" % (index, rows[0]))
        started = time.perf_counter()
        store.complete(rows[0]["id"], "bench-worker", True, "{}", None)
        completes.append((time.perf_counter() - started) * 1000)
    return claims, completes


def summary(values):
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return "median %.2f ms, p95 %.2f ms" % (statistics.median(values), p95)


def explain_mysql(store):
    from taskq.store.mysql import Q

    cur = store.conn.cursor()
    for name, params in (("due_tasks", (100,)), ("claim_next", ("w", None, 300)),
                         ("lock_next", (1,))):
        cur.execute("EXPLAIN " + Q[name], params)
        cols = [c[0] for c in cur.description]
        for row in cur.fetchall():
            row = dict(zip(cols, row))
            print("  EXPLAIN %-10s key=%s type=%s rows=%s extra=%s" % (
                name, row["key"], row["type"], row["rows"], row["Extra"]))
        if store.flavour == "MariaDB":
            cur.execute("BEGIN")
            cur.execute("ANALYZE " + Q[name], params)
            cols = [c[0] for c in cur.description]
            for row in cur.fetchall():
                row = dict(zip(cols, row))
                print("  ANALYZE %-10s r_rows=%s" % (name, row["r_rows"]))
            cur.execute("ROLLBACK")


def run(backend, store_factory, fill, args):
    print("## %s" % backend)
    store = store_factory()
    store.register_type("bench.later", "1", "{}", None, None)
    fill(args.pending, 0, False)
    base, _ = time_claims(store, args.samples)
    print("  %d pending, 0 future:          claim %s" % (args.pending, summary(base)))
    started = time.time()
    fill(args.future, 10 ** 8, True)
    print("  (added %d future tasks in %.0f s)" % (args.future, time.time() - started))
    store.close()
    store = store_factory()
    with_future, _ = time_claims(store, args.samples)
    print("  %d pending, %d future:  claim %s" % (args.pending - args.samples, args.future,
                                                  summary(with_future)))
    if backend == "mysql":
        explain_mysql(store)
    else:
        plan = store.conn.execute("EXPLAIN QUERY PLAN " + __import__(
            "taskq.store.sqlite", fromlist=["Q"]).Q["promote_due"], (0, 0, 100)).fetchall()
        print("  EXPLAIN QUERY PLAN promote_due: %s" % "; ".join(row[-1] for row in plan))
    store.close()
    return base, with_future


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--future", type=int, default=1000000)
    parser.add_argument("--pending", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--backend", choices=("sqlite", "mysql", "both"), default="both")
    parser.add_argument("--mysql", default=os.environ.get("TASKQ_TEST_MYSQL", ""))
    args = parser.parse_args()
    print("load before: %s" % (benchlib.loadavg(),))
    if args.backend in ("sqlite", "both"):
        folder = tempfile.mkdtemp(prefix="taskq-bench-")
        path = os.path.join(folder, "taskq.sqlite3")

        def sqlite_store():
            from taskq.store.sqlite import SQLiteStore

            return SQLiteStore(config_module.parse(
                "[database]\nbackend = sqlite\nsqlite_path = %s\n" % path))

        try:
            run("sqlite", sqlite_store, lambda rows, start, future: sqlite_fill(path, rows, start, future),
                args)
        finally:
            benchlib.remove_tree(folder)
    if args.backend in ("mysql", "both"):
        params = benchlib.mysql_params(args.mysql)
        name, version = benchlib.create_mysql_database(params)
        print("(MySQL server %s)" % version)

        def mysql_store():
            from taskq.store.mysql import MySQLStore

            return MySQLStore(config_module.parse(
                "[database]\nbackend = mysql\nhost = %s\nport = %s\nuser = %s\npassword = %s\n"
                "name = %s\n" % (params["host"], params["port"], params["user"],
                                 params["password"], name)))

        try:
            conn = benchlib._mysql_connect(params, name)
            run("mysql", mysql_store, lambda rows, start, future: mysql_fill(conn, rows, start, future),
                args)
            conn.close()
        finally:
            benchlib.drop_mysql_database(params, name)
    print("load after: %s" % (benchlib.loadavg(),))


if __name__ == "__main__":
    main()
