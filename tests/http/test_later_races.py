"""Races for later and recurring tasks, with OS processes, on SQLite and on MariaDB.

Eight forked processes, each its own Application (one store connection per
request, as under CGI or Passenger), claim at the same time. What each was
handed is written down by the process and checked against the database.
"""

import json
import multiprocessing
import time
from collections import Counter

import pytest

from conftest import ApiClient, db_execute, register
from support import races
from taskq.app import Application

pytestmark = pytest.mark.slow

FORK = multiprocessing.get_context("fork")
CLAIMERS = 8


def _claimer(name, config_path, start, stop, out_path, until_empty):
    client = ApiClient(Application(config_path=config_path))
    record = {"claims": [], "errors": []}
    while time.time() < start:
        time.sleep(0.005)
    try:
        while time.time() < stop:
            response = client.post("/tasks/claim", {"worker_id": name, "limit": 5})
            if response.status != 200:
                record["errors"].append(["claim", response.status, response.json])
                continue
            tasks = response.data["tasks"]
            record["claims"].extend(t["id"] for t in tasks)
            if tasks:
                done = client.post("/tasks/complete", {"worker_id": name, "results": [
                    {"id": t["id"], "success": True} for t in tasks]})
                if done.status != 200 or done.data["failed"]:
                    record["errors"].append(["complete", done.status, done.json])
            elif until_empty():
                break
            else:
                time.sleep(0.02)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        record["errors"].append(["exception", repr(exc)])
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle)


def _race(config, tmp_path, seconds, until_empty=lambda: False):
    start = time.time() + 0.5
    stop = start + seconds
    outs = [tmp_path / ("claimer-%d.json" % n) for n in range(CLAIMERS)]
    records = races.join(races.start([
        (_claimer, ("c%d" % n, str(config.path), start, stop, str(out), until_empty), out)
        for n, out in enumerate(outs)]), stop + 60, "claimer process")
    assert [e for r in records for e in r["errors"]] == []
    claims = Counter(task_id for r in records for task_id in r["claims"])
    assert [t for t, n in claims.items() if n > 1] == [], "handed out twice"
    return claims


def assert_counters_match_a_recount(api, config):
    """GET /stats' counters (moved by every promotion and occurrence) equal the rows."""
    counts = {(t, st): n for t, info in api.get("/stats").data["types"].items()
              for st, n in info["counts"].items()}
    rows = db_execute(config, "SELECT type, status, COUNT(*) FROM tasks GROUP BY type, status")
    assert counts == {(t, st): int(n) for t, st, n in rows}


def test_eight_claimers_make_each_schedule_occurrence_exactly_once(backend_config, tmp_path):
    api = ApiClient(Application(config=backend_config))
    register(api, "tick", {"type": "object"})
    every = api.post("/schedules", {"type": "tick", "params": {"s": "every"}, "every_seconds": 1,
                                    "catch_up": "all", "catch_up_limit": 1000}).data
    hourly = [api.post("/schedules", {"type": "tick", "params": {"s": n},
                                      "every_seconds": 3600}).data for n in range(10)]
    past = ("UPDATE task_schedules SET next_run_at = %s WHERE id <> ?" %
            ("CAST(strftime('%s','now') AS INTEGER) * 1000 - 1000" if backend_config.backend == "sqlite"
             else "UTC_TIMESTAMP() - INTERVAL 1 SECOND"))
    db_execute(backend_config, past, (every["id"],))  # the ten hourly ones are due once, now

    claims = _race(backend_config, tmp_path, seconds=4)

    rows = db_execute(backend_config, "SELECT id, params_json, run_at, status FROM tasks")
    by_schedule = Counter(json.loads(params)["s"] for _, params, _, _ in rows)
    assert [by_schedule[n] for n in range(10)] == [1] * 10, by_schedule
    ticks = sorted(run_at for _, params, run_at, _ in rows if json.loads(params)["s"] == "every")
    assert len(ticks) == len(set(ticks)) >= 3  # one task per occurrence
    step = 1000 if backend_config.backend == "sqlite" else None
    if step:
        assert ticks == list(range(ticks[0], ticks[-1] + step, step))  # none missed
    else:
        assert [(b - a).total_seconds() for a, b in zip(ticks, ticks[1:])] == [1.0] * (len(ticks) - 1)
    assert set(claims) <= {row[0] for row in rows}
    created = Counter(task_id for task_id, in db_execute(
        backend_config, "SELECT task_id FROM task_history WHERE event = 'created'"))
    assert set(created.values()) == {1} and len(created) == len(rows)
    assert_counters_match_a_recount(api, backend_config)


def test_eight_claimers_never_take_a_task_before_its_run_at(backend_config, tmp_path):
    api = ApiClient(Application(config=backend_config))
    register(api, "later", {"type": "object"})
    items = [{"type": "later", "params": {"i": i}, "delay_seconds": 1 + i % 3} for i in range(240)]
    items += [{"type": "later", "params": {"i": "now-%d" % i}} for i in range(60)]
    assert api.post("/tasks", {"tasks": items}).data["created"] == 300
    config = backend_config

    def until_empty():
        return not db_execute(config, "SELECT 1 FROM tasks WHERE status <> 'completed' LIMIT 1")

    claims = _race(backend_config, tmp_path, seconds=20, until_empty=until_empty)

    assert len(claims) == 300
    early = db_execute(backend_config, "SELECT id FROM tasks WHERE claimed_at < run_at")
    assert list(early) == []
    assert db_execute(backend_config, "SELECT COUNT(*) FROM tasks WHERE run_at IS NOT NULL")[0][0] == 240
    assert_counters_match_a_recount(api, backend_config)
