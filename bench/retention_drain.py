#!/usr/bin/env python3
"""How fast retention drains a backlog while tasks keep finishing, before and after.

A backlog of finished tasks past their retention (three history events each)
is written straight into a fresh database, then a steady load runs through
the WSGI app in-process, as a worker would drive it: `single` creates, claims
and completes one task per three requests; `batch` does it 50 tasks at a time
(POST /tasks with 50, claim limit 50, one batch complete). Every 30 requests
the old rows left are counted. Both sides run the same loop on the same
backend in their own process: *before* is lib/taskq at the base commit (git
merge-base with main; one batch of gc_batch rows per lottery win, a ticket of
gc_probability for every request), *after* is lib/taskq now (rounds sized from
the backlog within gc_time_ms, tickets weighed by the tasks a request
finished). Both at the [retention] defaults unless told.

    python bench/retention_drain.py [--backend sqlite|mysql|both] [--backlog 20000]
                                    [--requests 6000] [--load single|batch|both]
                                    [--update-docs]

Reports, per side: old tasks deleted per request against tasks finished per
request (the soak's ratio), requests per deleted task, the requests it took
to drain (or what was left), and request latency (median, p99, max), so the
bounded time per request shows. Numbers go in docs/performance.md, never in
test assertions.
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402

ROOT = benchlib.ROOT
SAMPLE_EVERY = 30
BATCH = 50


# -- the child: one side, one backend, one load ------------------------------------
def connect(config):
    """A DB-API connection to the bench database and its placeholder."""
    db = config.database
    if config.backend == "sqlite":
        import sqlite3

        return sqlite3.connect(db["sqlite_path"], isolation_level=None), "?"
    import pymysql

    return pymysql.connect(host=db["host"], port=db["port"], user=db["user"], password=db["password"],
                           database=db["name"], autocommit=True, ssl_disabled=True), "%s"


def run(conn, mark, sql, params=()):
    cursor = conn.cursor()
    cursor.execute(sql.replace("?", mark), params)
    return cursor.fetchall() if cursor.description else None


def seed(conn, mark, backend, type_id, type_name, count, days=10):
    """`count` completed tasks `days` old with three history events each, in
    three INSERT ... SELECTs (digits cross-joined: no recursion limit)."""
    digits = "(%s)" % " UNION ALL ".join("SELECT %d AS d" % d for d in range(10))
    places = range(len(str(count - 1)))
    numbers = "WITH n AS (SELECT %s + 1 AS i FROM %s) " % (
        " + ".join("p%d.d * %d" % (p, 10 ** p) for p in places),
        " CROSS JOIN ".join("%s p%d" % (digits, p) for p in places))
    if backend == "sqlite":
        old = "(CAST(strftime('%%s', 'now') AS INTEGER) - %d) * 1000" % (days * 86400)
        key = "'~backlog-' || i"
        counts = ("INSERT INTO task_counts (type, status, slot, n) VALUES (?, 'completed', 0, ?) "
                  "ON CONFLICT (type, status, slot) DO UPDATE SET n = n + excluded.n")
    else:
        old = "UTC_TIMESTAMP(6) - INTERVAL %d DAY" % days
        key = "CONCAT('~backlog-', i)"
        counts = ("INSERT INTO task_counts (type, status, slot, n) VALUES (?, 'completed', 0, ?) "
                  "ON DUPLICATE KEY UPDATE n = n + VALUES(n)")
    run(conn, mark, "INSERT INTO tasks (type_id, type, status, params_json, dedupe_key, result_json, "
                    "attempts, max_attempts, finished_by, finished_status, finished_attempt, "
                    "completed_at, created_at, updated_at) " + numbers +
                    "SELECT ?, ?, 'completed', '{\"n\": 1}', %s, '{\"ok\": true}', 1, 3, 'w', "
                    "'completed', 1, %s, %s, %s FROM n WHERE i <= %d" % (key, old, old, old, count),
        (type_id, type_name))
    run(conn, mark, "INSERT INTO task_history (task_id, event, worker_id, created_at) "
                    "SELECT t.id, e.event, 'backlog', t.created_at FROM tasks t CROSS JOIN "
                    "(SELECT 'created' AS event UNION ALL SELECT 'claimed' UNION ALL "
                    "SELECT 'completed') e WHERE t.dedupe_key LIKE ? ORDER BY t.id", ("~backlog-%",))
    run(conn, mark, counts, (type_name, count))


def old_rows(conn, mark):
    tasks = run(conn, mark, "SELECT COUNT(*) FROM tasks WHERE dedupe_key LIKE ?", ("~backlog-%",))[0][0]
    history = run(conn, mark, "SELECT COUNT(*) FROM task_history WHERE worker_id = ?", ("backlog",))[0][0]
    return int(tasks), int(history)


def child(args):
    sys.path.insert(0, args.lib)
    from taskq.app import Application

    app = Application(config_path=args.config)
    config = app.config

    def call(method, path, body=None):
        raw = b"" if body is None else json.dumps(body).encode("utf-8")
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
                   "CONTENT_LENGTH": str(len(raw)), "CONTENT_TYPE": "application/json",
                   "wsgi.input": io.BytesIO(raw), "SERVER_NAME": "localhost", "SERVER_PORT": "80",
                   "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
                   "wsgi.errors": sys.stderr}
        seen = {}

        def start_response(status, headers, exc_info=None):
            seen["status"] = int(status.split()[0])

        began = time.perf_counter()
        body = b"".join(app(environ, start_response))
        latencies.append(time.perf_counter() - began)
        if seen["status"] >= 400:
            raise RuntimeError("%s %s -> %d %s" % (method, path, seen["status"], body[:200]))
        return json.loads(body.decode("utf-8"))["data"]

    latencies = []
    call("POST", "/task-types/register", {"name": "steady", "version": "1",
                                           "param_schema": {"type": "object"}})
    conn, mark = connect(config)
    type_id = run(conn, mark, "SELECT id FROM task_types WHERE name = ?", ("steady",))[0][0]
    seed(conn, mark, config.backend, type_id, "steady", args.backlog)
    start_rows = old_rows(conn, mark)
    latencies.clear()
    requests = finished = 0
    drained_at = None
    samples = []
    n = 0
    began = time.monotonic()
    while requests < args.requests:
        if args.load == "single":
            call("POST", "/tasks", {"type": "steady", "params": {"n": n}})
            task = call("POST", "/tasks/claim", {"worker_id": "bench"})
            call("POST", "/tasks/%d/complete" % task["id"], {"worker_id": "bench", "success": True})
            finished += 1
        else:
            call("POST", "/tasks", {"tasks": [{"type": "steady", "params": {"n": n + i}}
                                              for i in range(BATCH)]})
            tasks = call("POST", "/tasks/claim", {"worker_id": "bench", "limit": BATCH})["tasks"]
            call("POST", "/tasks/complete", {"worker_id": "bench", "results": [
                {"id": t["id"], "success": True} for t in tasks]})
            finished += len(tasks)
        n += BATCH
        requests += 3
        if requests % SAMPLE_EVERY == 0:
            rows = old_rows(conn, mark)
            samples.append([requests, rows[0], rows[1]])
            if rows == (0, 0) and drained_at is None:
                drained_at = requests
                break
    wall = time.monotonic() - began
    left = old_rows(conn, mark)
    total = run(conn, mark, "SELECT COUNT(*) FROM tasks")[0][0]
    conn.close()
    ordered = sorted(latencies)
    print(json.dumps({
        "requests": requests, "finished": finished, "backlog": list(start_rows), "left": list(left),
        "deleted_tasks": start_rows[0] - left[0], "deleted_history": start_rows[1] - left[1],
        "drained_at": drained_at, "tasks_in_table": int(total), "wall_seconds": round(wall, 2),
        "latency_ms": {"median": round(1000 * ordered[len(ordered) // 2], 2),
                       "p99": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 2),
                       "max": round(1000 * ordered[-1], 2)},
        "samples": samples}))


# -- the parent: databases, sides, report ----------------------------------------
def before_lib(workdir):
    ref = benchlib.base_ref(ROOT)
    archive = subprocess.run(["git", "-C", ROOT, "archive", ref, "lib/taskq"],
                             stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", workdir], input=archive, check=True)
    return os.path.join(workdir, "lib"), ref


def side(backend, lib, workdir, params, args, load, name):
    database = {}
    db_name = None
    if backend == "sqlite":
        database["sqlite_path"] = os.path.join(workdir, "%s-%s.sqlite3" % (name, load))
    else:
        db_name, _ = benchlib.create_mysql_database(params)
        database.update(host=params["host"], port=params["port"], user=params["user"],
                        password=params["password"], name=db_name)
    path = benchlib.write_config(workdir, backend, **database)
    extra = ["completed_days = 1", "history_days = 1"]
    if args.gc_probability is not None:
        extra.append("gc_probability = %s" % args.gc_probability)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("[retention]\n" + "\n".join(extra) + "\n")
    try:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--lib", lib,
                              "--config", path, "--backlog", str(args.backlog),
                              "--requests", str(args.requests), "--load", load],
                             stdout=subprocess.PIPE, check=True, universal_newlines=True).stdout
    finally:
        if db_name:
            benchlib.drop_mysql_database(params, db_name)
    return json.loads(out.strip().splitlines()[-1])


def figures(result):
    requests = result["requests"]
    deleted = result["deleted_tasks"]
    return {"deleted_per_request": deleted / requests, "finished_per_request": result["finished"] / requests,
            "ratio": deleted / float(result["finished"]) if result["finished"] else None,
            "requests_per_deleted": requests / float(deleted) if deleted else None}


def table(results, ref):
    lines = ["| backend | load | side | requests | tasks finished / request | old tasks deleted / request "
             "| deleted : finished | requests per deleted task | drained after | left (tasks, history) "
             "| latency median / p99 / max |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (backend, load, name), r in results:
        f = figures(r)
        lat = r["latency_ms"]
        lines.append("| %s | %s | %s | %d | %.2f | %.2f | %s | %s | %s | %d, %d | %.1f / %.1f / %.1f ms |" % (
            backend, load, name if name == "after" else "before (%s)" % ref[:7], r["requests"],
            f["finished_per_request"], f["deleted_per_request"],
            "%.0f %%" % (100 * f["ratio"]) if f["ratio"] is not None else "-",
            "%.3f" % f["requests_per_deleted"] if f["requests_per_deleted"] else "-",
            "%d requests" % r["drained_at"] if r["drained_at"] else "not drained",
            r["left"][0], r["left"][1], lat["median"], lat["p99"], lat["max"]))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "mysql", "both"), default="both")
    parser.add_argument("--load", choices=("single", "batch", "both"), default="both")
    parser.add_argument("--backlog", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--gc-probability", type=float, default=None, help="default: config's")
    parser.add_argument("--mysql", default=os.environ.get("TASKQ_TEST_MYSQL", ""))
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lib", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    facts = benchlib.machine_facts()
    params = benchlib.mysql_params(args.mysql)
    backends = ("sqlite", "mysql") if args.backend == "both" else (args.backend,)
    loads = ("single", "batch") if args.load == "both" else (args.load,)
    workdir = tempfile.mkdtemp(prefix="taskq-retention-drain-")
    results = []
    try:
        old_lib, ref = before_lib(workdir)
        for backend in backends:
            for load in loads:
                for name, lib in (("before", old_lib), ("after", os.path.join(ROOT, "lib"))):
                    result = side(backend, lib, workdir, params, args, load, name)
                    results.append(((backend, load, name), result))
                    print("%s %s %s: %s" % (backend, load, name, json.dumps(
                        {k: v for k, v in result.items() if k != "samples"})), file=sys.stderr)
    finally:
        benchlib.remove_tree(workdir)
    facts["load_after"] = benchlib.loadavg()
    text = ("Backlog %d finished tasks (x3 history events) past retention; %d requests of steady load "
            "at most, %s; %s, %d cores, load %s before, %s after, %s.\n\n%s\n"
            % (args.backlog, args.requests,
               "gc_probability %s" % args.gc_probability if args.gc_probability is not None
               else "[retention] defaults", facts["cpu"], facts["cores"], facts["load_before"],
               facts["load_after"], facts["date"], table(results, ref)))
    print(text)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "retention_drain.json"), "w", encoding="utf-8") as handle:
        json.dump({"facts": facts, "results": [[list(k), r] for k, r in results]}, handle, indent=1)
    if args.update_docs:
        benchlib.replace_doc_region(os.path.join(ROOT, "docs", "performance.md"), "retention_drain", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
