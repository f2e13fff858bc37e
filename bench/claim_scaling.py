#!/usr/bin/env python3
"""How a MySQL/MariaDB claim scales: 1M pending tasks, then 1M completed ahead of a few pending.

Creates a throwaway database, fills it with INSERT ... SELECT over a cross
join of digits (works on MySQL 5.7 and MariaDB 10.3 alike), times claims
through the real store (plain, one type by name, two types by pattern; the
portable path, where claims take turns, and the SKIP LOCKED path), prints the EXPLAIN of every
statement a claim runs, and drops the database again.

    python bench/claim_scaling.py                  # 1,000,000 rows
    python bench/claim_scaling.py --rows 100000 --samples 20
    python bench/claim_scaling.py --orders         # every claim order at 1,000 and --rows pending
    python bench/claim_scaling.py --write-cost     # create/complete throughput with and
                                                   # without migration 0003's claim-order indexes
    TASKQ_TEST_MYSQL="host=127.0.0.1 port=3306 user=root password=" python bench/claim_scaling.py

Numbers go in docs/performance.md, never in test assertions.
"""

import argparse
import os
import statistics
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))

import pymysql  # noqa: E402

from taskq import config as config_module  # noqa: E402
from taskq.errors import Unavailable  # noqa: E402
from taskq.store.base import DEFAULT_ORDER  # noqa: E402
from taskq.store.mysql import CLAIM_ORDERS, Q, MySQLStore  # noqa: E402

ORDER_INDEXES = ("tasks_attempts", "tasks_type_attempts", "tasks_type_status_id")

TYPES = ("bench.alpha", "bench.beta", "other.gamma")
DIGITS = "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL " \
         "SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL " \
         "SELECT 8 UNION ALL SELECT 9)"


def connection_params():
    params = {"host": "127.0.0.1", "port": "3306", "user": "root", "password": ""}
    for part in os.environ.get("TASKQ_TEST_MYSQL", "").split():
        key, _, value = part.partition("=")
        params[key] = value
    params["port"] = int(params["port"])
    return params


def connect(params, database=None):
    return pymysql.connect(host=params["host"], port=params["port"], user=params["user"],
                           password=params["password"], database=database, autocommit=True,
                           charset="utf8mb4")


def load_schema(conn):
    with open(os.path.join(ROOT, "schema.sql"), encoding="utf-8") as handle:
        script = "\n".join(line for line in handle.read().splitlines()
                           if not line.lstrip().startswith("--"))
    with conn.cursor() as cur:
        for statement in script.split(";"):
            if statement.strip():
                cur.execute(statement)


def fill(conn, rows, status, start):
    """Insert `rows` tasks numbered from `start` with `status`, 100k rows per statement.

    Priorities 0-9 and the three types are spread evenly, so every claim
    has to respect the order (priority desc, id asc) across the whole set.
    """
    chunk = 100000 if rows >= 100000 else rows
    width = len(str(chunk - 1))
    digits = " CROSS JOIN ".join("%s AS d%d" % (DIGITS, i) for i in range(width))
    number = " + ".join("d%d.d * %d" % (i, 10 ** i) for i in range(width))
    finished = "UTC_TIMESTAMP(6)" if status == "completed" else "NULL"
    with conn.cursor() as cur:
        cur.execute("SET SESSION unique_checks = 0, foreign_key_checks = 0")
        for base in range(start, start + rows, chunk):
            cur.execute(
                "INSERT INTO tasks (type_id, type, status, params_json, dedupe_key, priority, "
                "neg_priority, progress, attempts, max_attempts, completed_at, created_at, updated_at) "
                "SELECT 1 + n MOD 3, ELT(1 + n MOD 3, %s, %s, %s), %s, CONCAT('{{\"n\":', n, '}}'), "
                "LPAD(HEX(n), 64, '0'), n MOD 10, -(n MOD 10), IF(%s = 'completed', 100, 0), "
                "IF(%s = 'completed', 1, n MOD 7 MOD 3), 3, {finished}, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) "
                "FROM (SELECT {base} + {number} AS n FROM {digits}) AS seq WHERE n < %s".format(
                    finished=finished, base=base, number=number, digits=digits),
                TYPES + (status, status, status, start + rows))
        cur.execute("SET SESSION unique_checks = 1, foreign_key_checks = 1")
        cur.execute("ANALYZE TABLE tasks")
        cur.fetchall()


def store_for(params, database, skip_locked):
    text = ("[database]\nbackend = mysql\nhost = %s\nport = %d\nuser = %s\npassword = %s\n"
            "name = %s\nskip_locked = %s\n[queue]\nhistory = true\n"
            % (params["host"], params["port"], params["user"], params["password"], database,
               skip_locked))
    return MySQLStore(config_module.parse(text))


def time_claims(store, pattern, samples):
    """Milliseconds per claim (and per complete of what it claimed)."""
    claims, completes = [], []
    for index in range(samples):
        started = time.perf_counter()
        rows = store.claim("bench-worker", pattern, 1, None)
        claims.append((time.perf_counter() - started) * 1000)
        if not rows:
            raise SystemExit("claim %d with pattern %r found nothing" % (index, pattern))
        started = time.perf_counter()
        store.complete(rows[0]["id"], "bench-worker", True, "{}", None)
        completes.append((time.perf_counter() - started) * 1000)
    return claims, completes


def summary(values):
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return "median %6.2f ms  p95 %6.2f ms" % (statistics.median(values), p95)


def explain(conn, label, sql, params, analyze):
    """EXPLAIN a statement; on MariaDB also ANALYZE it (it runs, so roll it back) for real row counts."""
    with conn.cursor() as cur:
        cur.execute("EXPLAIN " + sql, params)
        columns = [c[0] for c in cur.description]
        rows = cur.fetchall()
        print("\n-- %s" % label)
        print(_table(columns, rows))
        if analyze:
            cur.execute("BEGIN")
            cur.execute("ANALYZE " + sql, params)
            columns = [c[0] for c in cur.description]
            keep = [i for i, c in enumerate(columns)
                    if c in ("id", "select_type", "table", "type", "key", "rows", "r_rows", "Extra")]
            rows = [tuple(row[i] for i in keep) for row in cur.fetchall()]
            cur.execute("ROLLBACK")
            print("ANALYZE (executed, rolled back):")
            print(_table([columns[i] for i in keep], rows))


def _table(columns, rows):
    cells = [[str(c) for c in columns]] + [["NULL" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["| " + " | ".join(r[i].ljust(widths[i]) for i in range(len(columns))) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def explain_claim(conn, type_ids, mariadb, order=DEFAULT_ORDER):
    lease = ("bench-explain", None, 300)
    fmt = CLAIM_ORDERS[order]
    if "group" in fmt:  # stepped orders: the next group's value, then its rows
        top = 3 if order[0] == "attempts" else fmt["start"]
        for name, args in (("group_top", (top,)), ("group_top_of_type", (type_ids[0], top)),
                           ("group_rows", (-5 if order[0] == "priority" else 1, 10)),
                           ("group_rows_of_type", (type_ids[0], -5 if order[0] == "priority" else 1, 10))):
            explain(conn, name + " (locking: + FOR UPDATE [SKIP LOCKED])",
                    globals()["Q"][name].format(lock="", **fmt), args, mariadb)
        return
    Q = dict(globals()["Q"])
    for name in ("claim_next", "claim_next_of_type", "lock_head", "lock_head_of_type", "lock_next",
                 "lock_next_of_type", "head_of_type"):
        Q[name] = Q[name].format(**fmt)
    explain(conn, "expired leases (non-locking read)", Q["expired_leases"], (50,), mariadb)
    explain(conn, "claim_next: portable claim, no type_pattern", Q["claim_next"], lease, mariadb)
    explain(conn, "claim_next_of_type: portable claim, type_pattern naming one type",
            Q["claim_next_of_type"], lease + (type_ids[0],), mariadb)
    explain(conn, "lock_head: portable claim of several tasks (here 10), no type_pattern",
            Q["lock_head"], (10,), mariadb)
    explain(conn, "lock_head_of_type: portable claim of several tasks (here 10), one type",
            Q["lock_head_of_type"], (type_ids[0], 10), mariadb)
    explain(conn, "lock_next: SKIP LOCKED claim, no type_pattern", Q["lock_next"], (1,), mariadb)
    explain(conn, "lock_next_of_type: SKIP LOCKED claim, one type", Q["lock_next_of_type"],
            (type_ids[0], 1), mariadb)
    union = " UNION ALL ".join([Q["head_of_type"]] * 2)  # formatted above
    explain(conn, "head_of_type x2: heads of two types matched by a pattern (non-locking)",
            union, (type_ids[0], 1, type_ids[1], 1), mariadb)


def scenario(params, database, title, pattern_rounds, samples):
    print("\n## %s" % title)
    for skip_locked in ("off", "on"):
        store = store_for(params, database, skip_locked)
        if skip_locked == "on" and not store.skip_locked:
            continue
        path = "SKIP LOCKED" if store.skip_locked else "portable (turns)"
        for label, pattern in pattern_rounds:
            claims, completes = time_claims(store, pattern, samples)
            print("%-16s %-30s claim: %s | complete: %s"
                  % (path, label, summary(claims), summary(completes)))
        store.close()


def _claimer(args):
    """Claim and complete until `until`; returns (tasks done, claim latencies in ms)."""
    params, database, skip_locked, pattern, worker, start_at, until = args
    store = store_for(params, database, skip_locked)
    while time.time() < start_at:  # start together
        time.sleep(0.001)
    done, latencies = 0, []
    while time.time() < until:
        started = time.perf_counter()
        try:
            rows = store.claim(worker, pattern, 1, None)
        except Unavailable:  # retries used up: a request would have answered 503
            latencies.append(None)
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        if not rows:
            time.sleep(0.005)
            continue
        store.complete(rows[0]["id"], worker, True, "{}", None)
        done += 1
    store.close()
    return done, latencies


def _producer(args):
    """Create batches of 200 high-priority tasks: their inserts land at the head of the queue."""
    params, database, skip_locked, type_id, start_at, until = args
    store = store_for(params, database, skip_locked)
    while time.time() < start_at:
        time.sleep(0.001)
    made = 0
    while time.time() < until:
        store.create_tasks([{"type_id": type_id, "type": TYPES[0], "params_json": "{}",
                             "dedupe_key": uuid.uuid4().hex * 2, "priority": 20,
                             "max_attempts": 3, "claim_timeout": None} for _ in range(200)])
        made += 200
        time.sleep(0.05)
    store.close()
    return made, []


def contention(params, database, conn, processes, tasks, seconds, type_id):
    """`processes` claimers at once for `seconds`, each claim + complete in a loop."""
    import multiprocessing

    print("\n## %d processes claiming and completing for %d s each (claim limit 1, %d tasks queued)"
          % (processes, seconds, tasks))
    for label, patterns, produce in (("plain", (None,), False),
                                     ("type_pattern bench.%", ("bench.%",), False),
                                     ("half plain, half bench.%", (None, "bench.%"), False),
                                     ("plain + batch creates", (None,), True)):
        for skip_locked in ("off", "on"):
            with conn.cursor() as cur:
                cur.execute("SET FOREIGN_KEY_CHECKS = 0")
                cur.execute("TRUNCATE TABLE tasks")
                cur.execute("TRUNCATE TABLE task_history")
                cur.execute("SET FOREIGN_KEY_CHECKS = 1")
            fill(conn, tasks, "pending", 0)
            start_at = time.time() + 1.0
            until = start_at + seconds
            jobs = [(params, database, skip_locked, patterns[n % len(patterns)], "w%d" % n, start_at,
                     until) for n in range(processes)]
            deadlocks = server_deadlocks(conn)
            with multiprocessing.Pool(processes + 1) as pool:
                made = pool.map_async(_producer, [(params, database, skip_locked, type_id, start_at,
                                                   until)] if produce else [])
                results = pool.map(_claimer, jobs, chunksize=1)
                made = sum(count for count, _ in made.get())
            with conn.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM task_history WHERE event = 'claimed' "
                            "GROUP BY task_id HAVING COUNT(*) > 1")
                twice = len(cur.fetchall())
            after = server_deadlocks(conn)
            deadlocks = "?" if after is None else after - deadlocks
            done = sum(count for count, _ in results)
            gave_up = sum(ms is None for _, values in results for ms in values)
            latencies = sorted(ms for _, values in results for ms in values if ms is not None)
            print("%-16s %-25s %5d done = %4.0f/s  claim p50 %5.1f  p99 %6.1f  max %6.1f ms  "
                  "created %5d  claimed twice %d  deadlocks %s  503s %d"
                  % ("SKIP LOCKED" if skip_locked == "on" else "portable (turns)", label, done,
                     done / seconds, latencies[len(latencies) // 2],
                     latencies[int(len(latencies) * 0.99)], latencies[-1], made, twice, deadlocks, gave_up))


def server_deadlocks(conn):
    """InnoDB's deadlock count since the server started (MariaDB), or None."""
    with conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")
        row = cur.fetchone()
    return int(row[1]) if row else None


def time_orders(store, type_id, samples):
    """{order: (claim ms list)} for single claims in every order, all types and one type id."""
    out = {}
    for order in sorted(CLAIM_ORDERS):
        for label, filter_id in (("all types", None), ("task_type_id", type_id)):
            claims = []
            for _ in range(samples):
                started = time.perf_counter()
                rows = store.claim("bench-worker", None, 1, None, task_type_id=filter_id, order=order)
                claims.append((time.perf_counter() - started) * 1000)
                if not rows:
                    raise SystemExit("claim in order %r found nothing" % (order,))
                store.complete(rows[0]["id"], "bench-worker", True, "{}", None)
            out[(order, label)] = claims
    return out


def orders_run(params, database, conn, sizes, samples, type_ids, mariadb):
    """Every claim order on both paths at each queue size: flat means the same at 1k and 1M."""
    results = {}
    for rows in sizes:
        with conn.cursor() as cur:
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            cur.execute("TRUNCATE TABLE tasks")
            cur.execute("TRUNCATE TABLE task_history")
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")
        started = time.perf_counter()
        fill(conn, rows, "pending", 0)
        print("\nfilled %d pending tasks in %.1f s" % (rows, time.perf_counter() - started))
        for skip_locked in ("off", "on"):
            store = store_for(params, database, skip_locked)
            if skip_locked == "on" and not store.skip_locked:
                store.close()
                continue
            path = "SKIP LOCKED" if store.skip_locked else "portable"
            for key, claims in time_orders(store, type_ids[0], samples).items():
                results.setdefault((path,) + key, {})[rows] = statistics.median(claims)
            store.close()
    print("\n## claim median ms by order, %d claims each (+ a complete after each)" % samples)
    print("| path | order | filter | " + " | ".join("%d pending" % rows for rows in sizes) + " |")
    print("|---|---|---|" + "---|" * len(sizes))
    for (path, order, label), by_size in sorted(results.items()):
        name = "%s %s" % (order[0], "DESC" if order[1] else "ASC")
        print("| %s | %s | %s | %s |" % (path, name, label,
                                         " | ".join("%.2f" % by_size[rows] for rows in sizes)))
    if mariadb:
        for order in sorted(CLAIM_ORDERS):
            print("\n### EXPLAIN, order %s %s" % (order[0], "DESC" if order[1] else "ASC"))
            explain_claim(conn, type_ids, False, order)


def write_cost(params, database, conn, type_ids, tasks, seconds):
    """Create and complete throughput with the claim-order indexes and without them."""
    import multiprocessing

    print("\n## create and complete throughput: with and without migration 0003's indexes")
    for label in ("with the 0003 indexes", "without them (schema version 2)"):
        if label.startswith("without"):
            with conn.cursor() as cur:
                cur.execute("ALTER TABLE tasks " + ", ".join("DROP INDEX %s" % name
                                                             for name in ORDER_INDEXES))
        with conn.cursor() as cur:
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            cur.execute("TRUNCATE TABLE tasks")
            cur.execute("TRUNCATE TABLE task_history")
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")
        fill(conn, tasks, "completed", 0)  # a table that is not empty
        for what, batch in (("single creates", 1), ("batch creates of 100", 100)):
            jobs = [(params, database, type_ids[0], batch, seconds, n) for n in range(4)]
            with multiprocessing.Pool(4) as pool:
                made = sum(pool.map(_creator, jobs))
            print("%-34s %-22s %7.0f tasks/s (4 processes, %d s)" % (label, what, made / seconds,
                                                                     seconds))
        with multiprocessing.Pool(4) as pool:
            done = sum(pool.map(_completer, [(params, database, seconds, n) for n in range(4)]))
        print("%-34s %-22s %7.0f tasks/s (4 processes: claim 10 + batch complete)"
              % (label, "claim + complete", done / seconds))
    with conn.cursor() as cur:
        cur.execute("ALTER TABLE tasks " + ", ".join(
            "ADD KEY %s (%s)" % (name, cols) for name, cols in (
                ("tasks_attempts", "status, attempts, id"),
                ("tasks_type_attempts", "type_id, status, attempts, id"),
                ("tasks_type_status_id", "type_id, status, id"))))


def _creator(args):
    params, database, type_id, batch, seconds, n = args
    store = store_for(params, database, "auto")
    made, until = 0, time.time() + seconds
    while time.time() < until:
        store.create_tasks([{"type_id": type_id, "type": TYPES[0], "params_json": "{}",
                             "dedupe_key": uuid.uuid4().hex * 2, "priority": made % 10,
                             "max_attempts": 3, "claim_timeout": None} for _ in range(batch)])
        made += batch
    store.close()
    return made


def _completer(args):
    params, database, seconds, n = args
    store = store_for(params, database, "auto")
    done, until = 0, time.time() + seconds
    while time.time() < until:
        rows = store.claim("w%d" % n, None, 10, None)
        if not rows:
            break
        store.complete_many("w%d" % n, [(row["id"], True, "{}", None) for row in rows])
        done += len(rows)
    store.close()
    return done


def sqlite_orders(sizes, samples):
    """The same order table on the SQLite store: a file per size, filled by a recursive CTE."""
    import shutil
    import sqlite3
    import tempfile

    from taskq.store.sqlite import CLAIM_ORDERS as SQLITE_ORDERS, Q as SQ, STEPS, SQLiteStore

    folder = tempfile.mkdtemp(prefix="taskq-bench-sqlite-")
    results = {}
    try:
        for rows in sizes:
            path = os.path.join(folder, "q%d.sqlite3" % rows)
            store = SQLiteStore(config_module.parse("[database]\nsqlite_path = %s\n" % path))
            type_ids = [store.register_type(name, "1", "{}", None, None)[0]["id"] for name in TYPES]
            started = time.perf_counter()
            conn = sqlite3.connect(path)
            conn.execute(
                "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < ?) "
                "INSERT INTO tasks (type_id, type, status, params_json, dedupe_key, priority, attempts, "
                "max_attempts, created_at, updated_at) "
                "SELECT ? + n % 3 - 1, 'bench', 'pending', '{}', printf('%064d', n), n % 10, n % 7 % 3, "
                "3, 0, 0 FROM seq", (rows, type_ids[0]))
            conn.commit()
            conn.execute("ANALYZE")
            conn.close()
            print("sqlite: filled %d pending tasks in %.1f s" % (rows, time.perf_counter() - started))
            for key, claims in time_orders(store, type_ids[0], samples).items():
                results.setdefault(key, {})[rows] = statistics.median(claims)
            if rows == sizes[-1]:
                for order in sorted(SQLITE_ORDERS):
                    index, type_index, order_by = SQLITE_ORDERS[order]
                    cmp, direction, _ = STEPS.get(order, (None, None, None))
                    statements = ((("next_pending", index, (1,)),
                                   ("next_pending_of_type", type_index, (type_ids[0], 1)))
                                  if order_by else
                                  (("group_top", index, (0,)), ("group_rows", index, (0, 1)),
                                   ("group_top_of_type", type_index, (type_ids[0], 0)),
                                   ("group_rows_of_type", type_index, (type_ids[0], 0, 1))))
                    for name, fmt_index, args in statements:
                        sql = SQ[name].format(column=order[0], group=order[0], index=fmt_index,
                                              order=order_by, cmp=cmp, dir=direction)
                        plan = " | ".join(r[-1] for r in store.conn.execute("EXPLAIN QUERY PLAN " + sql, args))
                        print("sqlite plan %-9s %-4s %-20s %s" % (order[0], "DESC" if order[1] else "ASC",
                                                                   name, plan))
            store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("\n## SQLite claim median ms by order, %d claims each (+ a complete after each)" % samples)
    print("| order | filter | " + " | ".join("%d pending" % rows for rows in sizes) + " |")
    print("|---|---|" + "---|" * len(sizes))
    for (order, label), by_size in sorted(results.items()):
        print("| %s %s | %s | %s |" % (order[0], "DESC" if order[1] else "ASC", label,
                                       " | ".join("%.2f" % by_size[rows] for rows in sizes)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--processes", type=int, default=8, help="claimers in the contention run")
    parser.add_argument("--contention-tasks", type=int, default=20000)
    parser.add_argument("--contention-seconds", type=int, default=8)
    parser.add_argument("--only-contention", action="store_true")
    parser.add_argument("--orders", action="store_true",
                        help="only: every claim order at 1,000 and --rows pending tasks")
    parser.add_argument("--write-cost", action="store_true",
                        help="only: create/complete throughput with and without the order indexes")
    parser.add_argument("--write-seconds", type=int, default=6)
    parser.add_argument("--keep", action="store_true", help="do not drop the database (debugging)")
    parser.add_argument("--sqlite", action="store_true",
                        help="with --orders: the SQLite store instead of MySQL (needs no server)")
    args = parser.parse_args()
    if args.orders and args.sqlite:
        sqlite_orders((1000, args.rows), args.samples)
        return

    params = connection_params()
    admin = connect(params)
    database = "taskq_bench_%s" % uuid.uuid4().hex[:10]
    with admin.cursor() as cur:
        cur.execute("CREATE DATABASE %s CHARACTER SET utf8mb4" % database)
    try:
        conn = connect(params, database)
        load_schema(conn)
        store = store_for(params, database, "off")
        print("# claim scaling on %s, %d rows, %d claims per case" % (store.server_info(), args.rows,
                                                                     args.samples))
        type_ids = [store.register_type(name, "1", "{}", None, None)[0]["id"] for name in TYPES]
        mariadb = store.flavour == "MariaDB"
        store.close()
        cases = (("plain", None), ("type_pattern one type", "bench.alpha"),
                 ("type_pattern two types", "bench.%"))

        if args.orders:
            orders_run(params, database, conn, (1000, args.rows), args.samples, type_ids, mariadb)
            return
        if args.write_cost:
            write_cost(params, database, conn, type_ids, args.rows, args.write_seconds)
            return
        if args.only_contention:
            contention(params, database, conn, args.processes, args.contention_tasks,
                       args.contention_seconds, type_ids[0])
            return
        started = time.perf_counter()
        fill(conn, args.rows, "pending", 0)
        print("filled %d pending tasks in %.1f s" % (args.rows, time.perf_counter() - started))
        explain_claim(conn, type_ids, mariadb)
        scenario(params, database, "%d pending" % args.rows, cases, args.samples)

        with conn.cursor() as cur:
            cur.execute("TRUNCATE TABLE task_history")
            cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            cur.execute("TRUNCATE TABLE tasks")
            cur.execute("SET FOREIGN_KEY_CHECKS = 1")
        started = time.perf_counter()
        fill(conn, args.rows, "completed", 0)
        # a few pending tasks behind the finished ones, enough for every timed claim
        fill(conn, 6 * args.samples * len(cases), "pending", args.rows)
        print("\nfilled %d completed tasks (+%d pending after them) in %.1f s"
              % (args.rows, 6 * args.samples * len(cases), time.perf_counter() - started))
        explain_claim(conn, type_ids, mariadb)
        scenario(params, database, "%d completed ahead of the pending ones" % args.rows, cases,
                 args.samples)
        contention(params, database, conn, args.processes, args.contention_tasks,
                   args.contention_seconds, type_ids[0])
        conn.close()
    finally:
        if not args.keep:
            with admin.cursor() as cur:
                cur.execute("DROP DATABASE IF EXISTS %s" % database)
        admin.close()


if __name__ == "__main__":
    main()
