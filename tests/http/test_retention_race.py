"""Retention during a drain: worker processes claim and complete while the
lottery and a purging process delete old rows; no claim fails, no task is
handed out twice, the counters still match a recount."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, ApiClient, db_execute, register
from taskq.app import Application

pytestmark = pytest.mark.slow

OLD = 400
FRESH = 300

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from conftest import ApiClient
from taskq.app import Application
api = ApiClient(Application(config_path=sys.argv[3]))
name, errors, claimed, empty, spans = sys.argv[4], [], [], 0, []
deadline = time.time() + 120
while empty < 3 and time.time() < deadline:
    r = api.post("/tasks/claim", {"worker_id": name, "limit": 5})
    if r.status != 200:
        errors.append([r.status, r.raw.decode()[:200]])
        continue
    tasks = r.data["tasks"]
    if not tasks:
        empty += 1
        time.sleep(0.05)
        continue
    empty = 0
    spans.append(time.time())
    results = [{"id": t["id"], "success": True} for t in tasks]
    done = api.post("/tasks/complete", {"worker_id": name, "results": results})
    if done.status != 200 or done.data["completed"] != len(tasks):
        errors.append([done.status, done.raw.decode()[:200]])
    claimed.extend(t["id"] for t in tasks)
print(json.dumps({"claimed": claimed, "errors": errors,
                  "span": [min(spans), max(spans)] if spans else None}))
"""

PURGER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from conftest import ApiClient
from taskq.app import Application
api = ApiClient(Application(config_path=sys.argv[3]))
errors, deleted, spans = [], 0, []
deadline = time.time() + 60
while time.time() < deadline:
    r = api.post("/admin/purge", {"max_rows": 4})
    if r.status != 200:
        errors.append([r.status, r.raw.decode()[:200]])
        continue
    deleted += r.data["total"]
    if r.data["total"]:
        spans.append(time.time())
    time.sleep(0.02)  # spread the purge over the drain
    if not r.data["more"]:
        break
print(json.dumps({"deleted": deleted, "errors": errors, "span": [min(spans), max(spans)] if spans else None}))
"""


def _age(config, days):
    if config.backend == "sqlite":
        db_execute(config, "UPDATE tasks SET updated_at = updated_at - ?", (days * 86400000,))
        db_execute(config, "UPDATE task_history SET created_at = created_at - ?", (days * 86400000,))
    else:
        db_execute(config, "UPDATE tasks SET updated_at = updated_at - INTERVAL ? DAY", (days,))
        db_execute(config, "UPDATE task_history SET created_at = created_at - INTERVAL ? DAY", (days,))


def test_retention_during_a_drain_by_several_processes_fails_no_claim(config_factory):
    # rounds of a few small batches (2, 4, ...: a 1 ms budget) on about one
    # request in three (a complete of 5 tasks holds a ticket of 0.05 x 6), so
    # the lottery works through the backlog beside the purger, not in one win
    config = config_factory(retention={"completed_days": 1, "history_days": 1,
                                       "gc_probability": 0.05, "gc_batch": 2, "gc_time_ms": 1})
    api = ApiClient(Application(config=config))
    register(api, "race")
    for start in range(0, OLD, 200):
        api.post("/tasks", {"tasks": [{"type": "race", "params": {"n": n}}
                                      for n in range(start, start + 200)]})
    while True:
        batch = api.post("/tasks/claim", {"worker_id": "setup", "limit": 100}).data["tasks"]
        if not batch:
            break
        api.post("/tasks/complete", {"worker_id": "setup",
                                     "results": [{"id": t["id"], "success": True} for t in batch]})
    _age(config, 3)
    old_history = db_execute(config, "SELECT COUNT(*) FROM task_history")[0][0]
    fresh = []
    for start in range(0, FRESH, 150):
        made = api.post("/tasks", {"tasks": [{"type": "race", "params": {"fresh": n}}
                                             for n in range(start, start + 150)]}).data
        fresh += [r["id"] for r in made["results"]]

    args = [os.path.join(ROOT, "lib"), os.path.join(ROOT, "tests"), str(config.path)]
    procs = [subprocess.Popen([sys.executable, "-c", WORKER] + args + ["worker-%d" % n],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in range(4)]
    procs.append(subprocess.Popen([sys.executable, "-c", PURGER] + args,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [(p.wait(timeout=180), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _, _ in outputs), [err[-2000:] for _, _, err in outputs]
    reports = [json.loads(out) for _, out, _ in outputs]
    assert all(report["errors"] == [] for report in reports), reports
    claimed = [task_id for report in reports[:-1] for task_id in report["claimed"]]
    assert sorted(claimed) == sorted(fresh)  # each fresh task handed out exactly once
    spans = [r["span"] for r in reports[:-1] if r["span"]]  # a late worker may have got nothing
    drain = (min(s[0] for s in spans), max(s[1] for s in spans))
    purging = reports[-1]["span"]
    assert purging and purging[0] < drain[1] and drain[0] < purging[1], (drain, purging)  # they overlapped

    while api.post("/admin/purge", {}).data["more"]:
        pass
    rows = dict(db_execute(config, "SELECT status, COUNT(*) FROM tasks GROUP BY status"))
    assert rows == {"completed": FRESH}  # every old task gone, every fresh one done
    assert db_execute(config, "SELECT COUNT(*) FROM task_history")[0][0] == 3 * FRESH
    assert old_history == 3 * OLD
    counts = api.get("/stats").data["types"]["race"]["counts"]
    assert counts == {"completed": FRESH}
