#!/usr/bin/env python3
"""Dependencies at scale, on SQLite and MariaDB: a parent with many children, and
claims beside many waiting tasks.

1. A parent with --children (10,000) waiting children: the one request that
   completes it releases all of them (set-based UPDATEs through
   task_dependencies_parent, one transaction). Timed: that complete, in
   process through the WSGI app (what one request does, less the CGI start).
   The same for a parent that fails (every child cancelled) and for its retry
   (every child brought back).
2. Claims with those children waiting at a higher priority than the pending
   tasks (the worst case if a claim read them): a waiting task is not in the
   'pending' range of the claim indexes. Timed: claim + complete pairs with
   and without the waiting tasks; on MariaDB the EXPLAIN of the claim read.

    .venv/py3.11/bin/python bench/dependencies.py
    .venv/py3.11/bin/python bench/dependencies.py --children 2000 --backends sqlite

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
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402

from conftest import ApiClient  # noqa: E402
from taskq import config as config_module  # noqa: E402
from taskq.app import Application  # noqa: E402


def api_for(path):
    return ApiClient(Application(config=config_module.load(path)))


def ok(response, *statuses):
    assert response.status in (statuses or (200, 201)), response
    return response.data


def make_children(api, parent, count, priority=5):
    for start in range(0, count, 500):
        items = [{"type": "bench.child", "params": {"n": n, "parent": parent}, "priority": priority,
                  "depends_on": [parent]} for n in range(start, min(count, start + 500))]
        answer = ok(api.post("/tasks", {"tasks": items}))
        assert answer["created"] == len(items), answer["created"]


def claim_only(api, type_name, worker="bench"):
    got = ok(api.post("/tasks/claim", {"worker_id": worker, "task_types": [type_name]}))
    return got["id"]


def timed(call):
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def claim_pairs(api, samples):
    """Seconds per claim + complete pair over the 'bench.work' queue."""
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        task = ok(api.post("/tasks/claim", {"worker_id": "w", "limit": 1}))["tasks"][0]
        ok(api.post("/tasks/%d/complete" % task["id"], {"worker_id": "w", "success": True}))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(backend, path, children, samples, mysql=None):
    api = api_for(path)
    for name, extra in (("bench.parent", {"max_attempts": 1}), ("bench.child", {}),
                        ("bench.work", {})):
        ok(api.post("/task-types/register", dict(
            {"name": name, "version": "1", "param_schema": {"type": "object"}}, **extra)))
    ok(api.post("/tasks", {"tasks": [{"type": "bench.work", "params": {"n": n}}
                                     for n in range(samples * 2 + 10)]}))
    before = claim_pairs(api, samples)
    out = {"claim_pair_no_waiting_ms": round(before * 1000, 2)}

    # 1a. a parent that completes: all children released in its complete
    parent = ok(api.post("/tasks", {"type": "bench.parent", "params": {"n": 1}}))["id"]
    make_children(api, parent, children)
    out["claim_pair_with_waiting_ms"] = round(claim_pairs(api, samples) * 1000, 2)
    if mysql is not None:
        out["explain_claim"] = explain_claim(mysql)
    assert claim_only(api, "bench.parent") == parent
    seconds, _ = timed(lambda: ok(api.post("/tasks/%d/complete" % parent,
                                           {"worker_id": "bench", "success": True})))
    counts = ok(api.get("/stats"))["types"]["bench.child"]["counts"]
    assert counts.get("pending") == children and not counts.get("waiting"), counts
    out["complete_releasing_children_s"] = round(seconds, 3)

    # 1b. a parent that fails: all children cancelled; 1c. its retry brings them back
    failing = ok(api.post("/tasks", {"type": "bench.parent", "params": {"n": 2}}))["id"]
    make_children(api, failing, children, priority=6)
    assert claim_only(api, "bench.parent") == failing
    seconds, _ = timed(lambda: ok(api.post("/tasks/%d/complete" % failing,
                                           {"worker_id": "bench", "success": False})))
    counts = ok(api.get("/stats"))["types"]["bench.child"]["counts"]
    assert counts.get("cancelled") == children, counts
    out["fail_cancelling_children_s"] = round(seconds, 3)
    seconds, _ = timed(lambda: ok(api.post("/tasks/%d/retry" % failing)))
    counts = ok(api.get("/stats"))["types"]["bench.child"]["counts"]
    assert counts.get("waiting") == children and not counts.get("cancelled"), counts
    out["retry_bringing_back_children_s"] = round(seconds, 3)
    assert ok(api.post("/admin/recount")) == {"task_counts": [], "usage_count": []}
    return out


def explain_claim(params_db):
    params, name = params_db
    conn = benchlib._mysql_connect(params, name)
    try:
        with conn.cursor() as cur:
            cur.execute("EXPLAIN SELECT id FROM tasks FORCE INDEX (tasks_claim) "
                        "WHERE status = 'pending' ORDER BY neg_priority, id LIMIT 1 FOR UPDATE")
            columns = [c[0] for c in cur.description]
            row = dict(zip(columns, cur.fetchone()))
            cur.execute("ANALYZE SELECT id FROM tasks FORCE INDEX (tasks_claim) "
                        "WHERE status = 'pending' ORDER BY neg_priority, id LIMIT 1")
            columns = [c[0] for c in cur.description]
            analyzed = dict(zip(columns, cur.fetchone()))
        return "key=%s type=%s rows=%s r_rows=%s extra=%s" % (
            row["key"], row["type"], row["rows"], analyzed.get("r_rows"), row["Extra"])
    finally:
        conn.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--children", type=int, default=10000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--backends", default="sqlite,mysql")
    parser.add_argument("--mysql", default="", help="host=.. port=.. user=.. password=..")
    args = parser.parse_args(argv)
    print(benchlib.machine_facts())
    with tempfile.TemporaryDirectory() as work:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                path = benchlib.write_config(work, "sqlite",
                                             sqlite_path=os.path.join(work, "bench.sqlite3"))
                print("sqlite", run("sqlite", path, args.children, args.samples))
                continue
            params = benchlib.mysql_params(args.mysql)
            name, version = benchlib.create_mysql_database(params)
            try:
                path = benchlib.write_config(work, "mysql", host=params["host"],
                                             port=params["port"], user=params["user"],
                                             password=params["password"], name=name)
                print(version, run("mysql", path, args.children, args.samples, (params, name)))
            finally:
                benchlib.drop_mysql_database(params, name)


if __name__ == "__main__":
    main()
