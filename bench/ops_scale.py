#!/usr/bin/env python3
"""GET /stats at 1M tasks and 10M history rows, and the cost of the retention lottery.

For each backend: fill a throwaway database with --tasks tasks (10% pending,
0.1% claimed by 20 workers, 5% failed, the rest completed, finished ones
spread over 90 days) and --history history rows (oldest first), seed the
counters the way migration 0005 does, and a day of task_runs periods. Then:

1. GET /stats through the real application (a store opened per request, as
   under CGI): median and p95 of --samples requests; beside it what the
   indexed-aggregate alternative costs (GROUP BY over tasks_type_claim, and
   a count of the last day's completions over tasks_retention), measured
   once or twice each: why the counts are maintained counters.
2. One retention batch (gc_batch rows of each kind) on these tables.
3. Request latency of a create / claim / complete loop with the lottery off
   (gc_probability = 0), at the default (0.01), and on every request (1).

    .venv/py3.11/bin/python bench/ops_scale.py                      # 1M tasks, 10M history
    .venv/py3.11/bin/python bench/ops_scale.py --tasks 100000 --history 1000000 --backend sqlite
    .venv/py3.11/bin/python bench/ops_scale.py --update-docs

Numbers go to docs/performance.md, never into test assertions.
"""

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402

from taskq import config as config_module  # noqa: E402
from taskq.app import Application  # noqa: E402

TYPES = ("bench.alpha", "bench.beta", "other.gamma")
DIGITS = ("(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL "
          "SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL "
          "SELECT 8 UNION ALL SELECT 9)")


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def call(app, method, path, body=None):
    raw = b"" if body is None else json.dumps(body).encode("utf-8")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
               "CONTENT_LENGTH": str(len(raw)), "CONTENT_TYPE": "application/json",
               "wsgi.input": io.BytesIO(raw), "SERVER_NAME": "bench", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http"}
    status, _, body_bytes = app.handle(environ)
    return status, body_bytes


# -- filling -----------------------------------------------------------------
def fill_sqlite(path, tasks, history):
    import sqlite3

    from taskq.store.sqlite import SQLiteStore

    cfg = config_module.parse("[database]\nbackend = sqlite\nsqlite_path = %s\n" % path)
    SQLiteStore(cfg).close()
    conn = sqlite3.connect(path, isolation_level=None)
    now = int(time.time() * 1000)
    day = 86400000
    conn.execute("BEGIN")
    for n, name in enumerate(TYPES, 1):
        conn.execute("INSERT INTO task_types (id, name, version, param_schema_json, created_at, updated_at) "
                     "VALUES (?, ?, '1', '{}', ?, ?)", (n, name, now, now))
    conn.execute(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x + 1 < ?) "
        "INSERT INTO tasks (type_id, type, status, params_json, dedupe_key, priority, attempts, "
        "max_attempts, claimed_by, claimed_at, lease_expires_at, completed_at, created_at, updated_at) "
        "SELECT x % 3 + 1, CASE x % 3 WHEN 0 THEN 'bench.alpha' WHEN 1 THEN 'bench.beta' ELSE 'other.gamma' END, "
        "CASE WHEN x % 1000 < 100 THEN 'pending' WHEN x % 1000 = 100 THEN 'claimed' "
        "     WHEN x % 1000 < 150 THEN 'failed' ELSE 'completed' END, "
        "'{\"n\":' || x || '}', printf('%064x', x), x % 5, 1, 3, "
        "CASE WHEN x % 1000 = 100 THEN 'worker-' || (x % 20) END, "
        "CASE WHEN x % 1000 = 100 THEN ?1 END, CASE WHEN x % 1000 = 100 THEN ?1 + 3600000 END, "
        "CASE WHEN x % 1000 > 100 THEN ?1 - (x % 90) * ?2 END, ?1 - ?2 * 90 + x, "
        "CASE WHEN x % 1000 > 100 THEN ?1 - (x % 90) * ?2 ELSE ?1 END FROM c".replace("?1", str(now)).replace("?2", str(day)),
        (tasks,))
    conn.execute(
        "WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x + 1 < ?) "
        "INSERT INTO task_history (task_id, event, created_at) "
        "SELECT x %% %d + 1, 'claimed', %d - (%d - x) * 2000 FROM c" % (tasks, now, history), (history,))
    _seed_sqlite(conn, now)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return cfg


def _seed_sqlite(conn, now):
    conn.execute("DELETE FROM task_counts")
    conn.execute("INSERT INTO task_counts (type, status, slot, n) "
                 "SELECT type, status, 0, COUNT(*) FROM tasks GROUP BY type, status")
    period = now // 300000
    rows = [(period - p, t, o, b, 0, 3, 3 * 400 * (b + 1))
            for p in range(288) for t in TYPES for o in ("completed", "failed", "retry") for b in range(6)]
    conn.executemany("INSERT INTO task_runs VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def fill_mysql(params, tasks, history):
    name, version = benchlib.create_mysql_database(params)
    conn = benchlib._mysql_connect(params, name)
    digits = lambda count: ", ".join("%s d%d" % (DIGITS, i) for i in range(count))  # noqa: E731
    number = lambda count: " + ".join("d%d.d * %d" % (i, 10 ** i) for i in range(count))  # noqa: E731
    with conn.cursor() as cur:
        for n, type_name in enumerate(TYPES, 1):
            cur.execute("INSERT INTO task_types (id, name, version, param_schema_json, created_at, updated_at) "
                        "VALUES (%s, %s, '1', '{}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))", (n, type_name))
        cur.execute("SET @now = UTC_TIMESTAMP(6)")
        power = len(str(tasks - 1))
        cur.execute(
            "INSERT INTO tasks (type_id, type, status, params_json, dedupe_key, priority, neg_priority, "
            "attempts, max_attempts, claimed_by, claimed_at, lease_expires_at, completed_at, created_at, updated_at) "
            "SELECT x %% 3 + 1, ELT(x %% 3 + 1, 'bench.alpha', 'bench.beta', 'other.gamma'), "
            "CASE WHEN x %% 1000 < 100 THEN 'pending' WHEN x %% 1000 = 100 THEN 'claimed' "
            "     WHEN x %% 1000 < 150 THEN 'failed' ELSE 'completed' END, "
            "CONCAT('{\"n\":', x, '}'), LPAD(HEX(x), 64, '0'), x %% 5, -(x %% 5), 1, 3, "
            "IF(x %% 1000 = 100, CONCAT('worker-', x %% 20), NULL), IF(x %% 1000 = 100, @now, NULL), "
            "IF(x %% 1000 = 100, @now + INTERVAL 1 HOUR, NULL), "
            "IF(x %% 1000 > 100, @now - INTERVAL (x %% 90) DAY, NULL), "
            "@now - INTERVAL 90 DAY + INTERVAL x MICROSECOND, "
            "IF(x %% 1000 > 100, @now - INTERVAL (x %% 90) DAY, @now) "
            "FROM (SELECT %s AS x FROM %s) seq WHERE x < %d" % (number(power), digits(power), tasks))
        # history in passes over the tasks' primary key (ids 1..tasks, in order,
        # no temporary table), oldest first
        for start in range(0, history, tasks):
            cur.execute(
                "INSERT INTO task_history (task_id, event, created_at) "
                "SELECT id, 'claimed', @now - INTERVAL ((%d - %d - id) * 2) SECOND "
                "FROM tasks WHERE id <= %d ORDER BY id"
                % (history, start, min(tasks, history - start)))
        cur.execute("INSERT INTO task_counts (type, status, slot, n) "
                    "SELECT type, status, 0, COUNT(*) FROM tasks GROUP BY type, status")
        cur.execute("SELECT UNIX_TIMESTAMP() DIV 300")
        period = cur.fetchone()[0]
        rows = [(period - p, t, o, b, 0, 3, 3 * 400 * (b + 1))
                for p in range(288) for t in TYPES for o in ("completed", "failed", "retry") for b in range(6)]
        cur.executemany("INSERT INTO task_runs VALUES (%s, %s, %s, %s, %s, %s, %s)", rows)
        cur.execute("ANALYZE TABLE tasks, task_history, task_runs, task_counts")
        cur.fetchall()
    conn.close()
    p = params
    cfg = config_module.parse("[database]\nbackend = mysql\nhost = %s\nport = %s\nuser = %s\npassword = %s\nname = %s\n"
                              % (p["host"], p["port"], p["user"], p["password"], name))
    return cfg, name, version


# -- measuring ---------------------------------------------------------------
def with_retention(cfg, probability, batch=None):
    cfg.retention = dict(cfg.retention, gc_probability=probability,
                         gc_batch=batch or cfg.retention["gc_batch"])
    return cfg


def measure_stats(cfg, samples):
    app = Application(config=with_retention(cfg, 0))
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        status, body = call(app, "GET", "/stats")
        times.append((time.perf_counter() - start) * 1000)
        assert status == 200, body[:300]
    start = time.perf_counter()
    status, _ = call(app, "GET", "/metrics")
    metrics_ms = (time.perf_counter() - start) * 1000
    return {"median_ms": statistics.median(times), "p95_ms": pct(times, 0.95), "metrics_ms": metrics_ms,
            "stats": json.loads(body)["data"]["counts"]}


def measure_aggregates(cfg):
    from taskq.store import open_store

    store = open_store(cfg)
    out = {}
    if cfg.backend == "sqlite":
        run = lambda sql, params=(): store.conn.execute(sql, params).fetchall()  # noqa: E731
        day_ago = int(time.time() * 1000) - 86400000
        queries = {"group_by": ("SELECT type_id, status, COUNT(*) FROM tasks GROUP BY type_id, status", ()),
                   "last_day": ("SELECT COUNT(*) FROM tasks WHERE status = 'completed' AND updated_at > ?", (day_ago,))}
    else:
        def run(sql, params=()):
            cur = store.conn.cursor()
            cur.execute(sql, params)
            return cur.fetchall()
        queries = {"group_by": ("SELECT type_id, status, COUNT(*) FROM tasks FORCE INDEX (tasks_type_claim) "
                                "GROUP BY type_id, status", ()),
                   "last_day": ("SELECT COUNT(*) FROM tasks FORCE INDEX (tasks_retention) WHERE status = 'completed' "
                                "AND updated_at > UTC_TIMESTAMP(6) - INTERVAL 1 DAY", ())}
    for name, (sql, params) in queries.items():
        times = []
        for _ in range(2):
            start = time.perf_counter()
            run(sql, params)
            times.append((time.perf_counter() - start) * 1000)
        out[name + "_ms"] = min(times)
    store.close()
    return out


def measure_gc_batch(cfg, samples, batch):
    from taskq import admin
    from taskq.store import open_store

    cfg = with_retention(cfg, 0, batch)
    times, deleted = [], []
    for _ in range(samples):
        store = open_store(cfg)
        start = time.perf_counter()
        done = store.purge(cfg.retention_seconds(), cfg.retention["history_days"], batch)
        times.append((time.perf_counter() - start) * 1000)
        deleted.append(sum(done.values()))
        store.close()
    assert admin  # the lottery calls the same store.purge through admin.collect
    return {"median_ms": statistics.median(times), "p99_ms": pct(times, 0.99), "max_ms": max(times),
            "rows_per_batch": statistics.median(deleted)}


def measure_lottery(cfg, probability, cycles, tag):
    app = Application(config=with_retention(cfg, probability))
    times = []
    for n in range(cycles):
        steps = [("POST", "/tasks", {"type": "bench.alpha", "params": {"lottery": tag, "n": n}})]
        for method, path, body in steps:
            start = time.perf_counter()
            status, _ = call(app, method, path, body)
            times.append((time.perf_counter() - start) * 1000)
            assert status in (200, 201), status
        start = time.perf_counter()
        status, raw = call(app, "POST", "/tasks/claim", {"worker_id": "lottery", "type_pattern": "bench.alpha"})
        times.append((time.perf_counter() - start) * 1000)
        task = json.loads(raw)["data"]
        start = time.perf_counter()
        status, _ = call(app, "POST", "/tasks/%d/complete" % task["id"], {"worker_id": "lottery", "success": True})
        times.append((time.perf_counter() - start) * 1000)
        assert status == 200
    return {"probability": probability, "requests": len(times), "median_ms": statistics.median(times),
            "p99_ms": pct(times, 0.99), "max_ms": max(times)}


def run_backend(backend, args):
    facts = {"backend": backend}
    t0 = time.time()
    tmp = None
    name = None
    params = benchlib.mysql_params(os.environ.get("TASKQ_TEST_MYSQL", ""))
    if backend == "sqlite":
        tmp = tempfile.mkdtemp(prefix="taskq-ops-")
        cfg = fill_sqlite(os.path.join(tmp, "bench.sqlite3"), args.tasks, args.history)
        facts["server"] = "SQLite"
    else:
        cfg, name, version = fill_mysql(params, args.tasks, args.history)
        facts["server"] = version
    facts["fill_seconds"] = round(time.time() - t0, 1)
    try:
        facts["stats"] = measure_stats(cfg, args.samples)
        facts["aggregates"] = measure_aggregates(cfg)
        default_batch = cfg.retention["gc_batch"]
        facts["gc_batches"] = {size: measure_gc_batch(cfg, args.samples, size) for size in (20, 50, 100)}
        facts["gc_batch"] = facts["gc_batches"].get(default_batch)
        with_retention(cfg, 0, default_batch)
        facts["lottery"] = []
        for round_no in range(args.rounds):
            for probability in (0, 0.01, 1):
                facts["lottery"].append(measure_lottery(cfg, probability, args.cycles, "%s-%d" % (probability, round_no)))
        facts["stats_after"] = measure_stats(cfg, max(5, args.samples // 4))
    finally:
        if tmp:
            benchlib.remove_tree(tmp)
        if name:
            benchlib.drop_mysql_database(params, name)
    return facts


def report(results, machine, args):
    lines = ["Measured %s by `bench/ops_scale.py` with %s tasks and %s history rows; machine: %s, %d cores; "
             "1-minute load %s before and %s after (other work shares the machine: read ratios, not absolutes)."
             % (machine["date"], format(args.tasks, ","), format(args.history, ","), machine["cpu"],
                machine["cores"], machine["load_before"], benchlib.loadavg()), "",
             "| backend | GET /stats median | p95 | GET /metrics | GROUP BY count (the alternative) | "
             "count of last day's completions (alternative) | retention batch of 20 / 50 / 100 rows per kind, median (p99) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append("| %s | %.1f ms | %.1f ms | %.1f ms | %.0f ms | %.0f ms | %s |" % (
            r["server"], r["stats"]["median_ms"], r["stats"]["p95_ms"], r["stats"]["metrics_ms"],
            r["aggregates"]["group_by_ms"], r["aggregates"]["last_day_ms"],
            " / ".join("%.1f (%.1f) ms" % (g["median_ms"], g["p99_ms"]) for _, g in sorted(r["gc_batches"].items()))))
    lines += ["", "Request latency of a create / claim / complete loop (%d cycles per run, %d runs, each request "
              "in-process with its own connection), by `gc_probability`:" % (args.cycles, args.rounds), "",
              "| backend | gc_probability | requests | median | p99 | max |", "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        for row in r["lottery"]:
            lines.append("| %s | %s | %d | %.2f ms | %.2f ms | %.1f ms |" % (
                r["server"], row["probability"], row["requests"], row["median_ms"], row["p99_ms"], row["max_ms"]))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "mysql", "both"), default="both")
    parser.add_argument("--tasks", type=int, default=1000000)
    parser.add_argument("--history", type=int, default=10000000)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    machine = benchlib.machine_facts()
    results = []
    for backend in (("sqlite", "mysql") if args.backend == "both" else (args.backend,)):
        print("filling and measuring %s ..." % backend, file=sys.stderr, flush=True)
        results.append(run_backend(backend, args))
        print(json.dumps(results[-1], indent=1), file=sys.stderr, flush=True)
    text = report(results, machine, args)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "ops_scale.json"), "w", encoding="utf-8") as handle:
        json.dump({"machine": machine, "results": results}, handle, indent=1)
    print(text)
    if args.update_docs:
        benchlib.replace_doc_region(os.path.join(ROOT, "docs", "performance.md"), "ops_scale", text)


if __name__ == "__main__":
    main()
