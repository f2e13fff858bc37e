"""Concurrency with OS processes, on SQLite and on MariaDB.

Workers are forked processes; some serve themselves in-process (their own
Application, one store connection per request, as under Passenger) and some
go through real CGI processes (tests/cgi_runner.py). What each worker was handed is
recorded by the worker and checked against the database afterwards.
"""

import json
import multiprocessing
import os
import signal
import time
from collections import Counter

import pytest

from cgi_runner import run_cgi
from conftest import ApiClient, db_execute, register
from support import races
from taskq.app import Application

pytestmark = pytest.mark.slow

FORK = multiprocessing.get_context("fork")
TASKS = 2000
IN_PROCESS_WORKERS = 6
CGI_WORKERS = 2
WORKER_DEADLINE = 150  # seconds; a worker past it stops and reports it


# -- a worker process ----------------------------------------------------------------
def _caller(mode, config_path):
    if mode == "cgi":
        def call(method, path, body):
            response = run_cgi(method, path, body, config_path=config_path)
            return response.status, response.json
    else:
        client = ApiClient(Application(config_path=config_path))

        def call(method, path, body):
            response = client.request(method, path, body)
            return response.status, response.json
    return call


# claim options per worker: every order, and filters by type id alone and with a pattern
CLAIM_MIXES = [{}, {"sort_by": "created_at", "sort_order": "DESC"},
               {"sort_by": "priority", "sort_order": "ASC"}, {"sort_by": "attempts", "sort_order": "DESC"},
               {"sort_by": "id"}, {"sort_by": "attempts", "sort_order": "ASC", "type_id": "load.a"},
               {"sort_by": "created_at", "type_id": "load.b"}, {"type_id": "load.a"}]


def _work(name, mode, config_path, pattern, out_path, deadline, extra=None):
    """Claim and complete until the queue is empty; write what happened to out_path."""
    record = {"name": name, "mode": mode, "claims": [], "completed": [], "errors": []}
    call = _caller(mode, config_path)
    limit = 10 if mode == "cgi" else 5
    empty_rounds = 0
    try:
        for _ in range(TASKS):  # bounded: every round claims at least one task or counts as empty
            if time.time() > deadline:
                record["errors"].append("deadline passed")
                break
            body = {"worker_id": name, "limit": limit}
            body.update(extra or {})
            if pattern:
                body["type_pattern"] = pattern
            status, payload = call("POST", "/tasks/claim", body)
            if status != 200:
                record["errors"].append(["claim", status, payload])
                continue
            tasks = payload["data"]["tasks"]
            if not tasks:
                empty_rounds += 1
                if empty_rounds >= 3:
                    break
                time.sleep(0.05)
                continue
            empty_rounds = 0
            for task in tasks:
                record["claims"].append([task["id"], task["attempts"], task["params"]["i"]])
            if mode == "cgi":
                status, payload = call("POST", "/tasks/complete", {
                    "worker_id": name,
                    "results": [{"id": t["id"], "success": True, "result": {"by": name}} for t in tasks]})
                if status != 200:
                    record["errors"].append(["complete_batch", status, payload])
                    continue
                for item in payload["data"]["results"]:
                    if item["ok"]:
                        record["completed"].append(item["id"])
                    else:
                        record["errors"].append(["complete", item])
            else:
                for task in tasks:
                    status, payload = call("POST", "/tasks/%d/complete" % task["id"],
                                           {"worker_id": name, "success": True, "result": {"by": name}})
                    if status == 200:
                        record["completed"].append(task["id"])
                    else:
                        record["errors"].append(["complete", task["id"], status, payload])
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        record["errors"].append(["exception", repr(exc)])
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle)


def _run_workers(specs, tmp_path):
    """specs: [(name, mode, pattern)]; returns the workers' records."""
    deadline = time.time() + WORKER_DEADLINE
    processes = races.start([
        (_work, (name, mode, config_path, pattern, str(tmp_path / ("%s.json" % name)), deadline,
                 extra), tmp_path / ("%s.json" % name))
        for name, mode, pattern, config_path, extra in specs])
    return races.join(processes, deadline + 30)


def _create_many(api, count):
    """count tasks over two types, via batch creates."""
    ids = []
    for start in range(0, count, 500):
        items = [{"type": "load.a" if i % 2 else "load.b", "params": {"i": i}, "priority": i % 3}
                 for i in range(start, min(count, start + 500))]
        response = api.post("/tasks", {"tasks": items})
        assert response.status == 200, response
        assert response.data["created"] == len(items)
        ids.extend(r["id"] for r in response.data["results"])
    return ids


# -- the tests ---------------------------------------------------------------------------
def test_eight_processes_complete_2000_tasks_each_exactly_once(api, backend_config, tmp_path):
    # on MariaDB 10.6+ and MySQL 8 this is the SKIP LOCKED claim (skip_locked = auto)
    _race_and_check(api, backend_config, tmp_path)


@pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True)
def test_eight_processes_on_the_portable_claim_complete_each_task_once(config_factory, tmp_path):
    # the claim MySQL 5.7 and MariaDB 10.3-10.5 run; claims that mixed the
    # queue's and a type's index deadlocked each other here until they took turns
    config = config_factory(database={"skip_locked": "off"})
    deadlocks = _server_deadlocks(config)
    _race_and_check(ApiClient(Application(config=config)), config, tmp_path)
    # retries hid them, but ~90 deadlocks per run used to end in a 503 now and then
    assert _server_deadlocks(config) == deadlocks


def _server_deadlocks(config):
    """InnoDB's count of deadlocks since the server started (MariaDB), or None."""
    rows = db_execute(config, "SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")
    return int(rows[0][1]) if rows else None


def _race_and_check(api, backend_config, tmp_path):
    """8 workers (2 through CGI, half with a type_pattern, each with its own claim
    order, some filtered to one type id) drain 2,000 tasks; check every one."""
    type_ids = {name: register(api, name, {"type": "object"})["id"] for name in ("load.a", "load.b")}
    ids = _create_many(api, TASKS)
    path = str(backend_config.path)
    specs = []
    for n in range(IN_PROCESS_WORKERS + CGI_WORKERS):
        extra = dict(CLAIM_MIXES[n % len(CLAIM_MIXES)])
        if "type_id" in extra:
            extra["task_type_id"] = type_ids[extra.pop("type_id")]
        # half claim through type_pattern: the PHP original deadlocked there
        pattern = "load.%" if n % 2 else None
        if n < IN_PROCESS_WORKERS:
            specs.append(("proc-%d" % n, "wsgi", pattern, path, extra))
        else:
            specs.append(("cgi-%d" % (n - IN_PROCESS_WORKERS), "cgi", pattern, path, extra))
    records = _run_workers(specs, tmp_path / "")

    errors = [(r["name"], e) for r in records for e in r["errors"]]
    assert errors == []
    claims = Counter(task_id for r in records for task_id, _, _ in r["claims"])
    twice = [task_id for task_id, n in claims.items() if n > 1]
    assert twice == [], "tasks handed out twice: %s" % twice[:20]
    assert set(claims) == set(ids)
    assert all(attempts == 1 for r in records for _, attempts, _ in r["claims"])
    completed = Counter(task_id for r in records for task_id in r["completed"])
    assert set(completed) == set(ids) and set(completed.values()) == {1}
    assert all(r["claims"] for r in records if r["mode"] == "wsgi")  # everyone took part
    assert sum(len(r["claims"]) for r in records if r["mode"] == "cgi") > 0

    # the database agrees with what the workers saw
    claimed_by = {task_id: r["name"] for r in records for task_id, _, _ in r["claims"]}
    rows = db_execute(backend_config, "SELECT id, status, claimed_by, attempts, result_json FROM tasks")
    assert len(rows) == TASKS
    for task_id, status, worker, attempts, result_json in rows:
        assert status == "completed", (task_id, status)
        assert worker == claimed_by[task_id]
        assert attempts == 1
        assert json.loads(result_json) == {"by": worker}
    events = {}
    for task_id, event, worker in db_execute(
            backend_config, "SELECT task_id, event, worker_id FROM task_history ORDER BY id"):
        events.setdefault(task_id, []).append((event, worker))
    for task_id in ids:
        worker = claimed_by[task_id]
        assert events[task_id] == [("created", None), ("claimed", worker), ("completed", worker)]
    counts = api.get("/tasks", query="status=pending&limit=1").json["pagination"]["total"], \
        api.get("/tasks", query="status=claimed&limit=1").json["pagination"]["total"]
    assert counts == (0, 0)


def test_twenty_cgi_processes_creating_the_same_task_make_one_row(api, backend_config, tmp_path):
    register(api, "dedupe.race", {"type": "object"})
    params = {"url": "https://example.com/a", "opts": {"depth": 2, "lang": "de"}, "tags": ["x", "y"]}
    reordered = {"tags": ["x", "y"], "opts": {"lang": "de", "depth": 2}, "url": "https://example.com/a"}
    responses = races.release([races.spawn_cgi(
        "POST", "/tasks", {"type": "dedupe.race", "params": params if n % 2 else reordered},
        str(backend_config.path), tmp_path, n) for n in range(20)])
    statuses = Counter(status for status, _ in responses)
    assert statuses == {201: 1, 200: 19}, responses
    ids = {payload["data"]["id"] for _, payload in responses}
    assert len(ids) == 1
    assert sum(payload["data"]["deduplicated"] for _, payload in responses) == 19
    rows = db_execute(backend_config, "SELECT id FROM tasks")
    assert [row[0] for row in rows] == list(ids)


def _claim_and_hang(config_path, ready):
    client = ApiClient(Application(config_path=config_path))
    response = client.request("POST", "/tasks/claim", {"worker_id": "doomed"})
    os.write(ready, json.dumps([response.status, response.json]).encode())
    while True:  # "working" until killed
        time.sleep(1)


def test_task_of_a_killed_worker_is_reclaimed_after_its_lease_and_completed(api, backend_config):
    register(api, "fragile", {"type": "object"}, claim_timeout=2)
    task_id = api.post("/tasks", {"type": "fragile", "params": {"n": 1}}).data["id"]
    read_end, write_end = os.pipe()
    worker = FORK.Process(target=_claim_and_hang, args=(str(backend_config.path), write_end))
    worker.start()
    try:
        status, payload = json.loads(os.read(read_end, 65536).decode())
        assert status == 200 and payload["data"]["id"] == task_id
        assert api.post("/tasks/claim", {"worker_id": "survivor"}).status == 404  # lease still live
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(timeout=30)
        os.close(read_end)
        os.close(write_end)
    assert worker.exitcode == -signal.SIGKILL
    time.sleep(2.3)
    claimed = run_cgi("POST", "/tasks/claim", {"worker_id": "survivor"}, config_path=backend_config.path)
    assert claimed.status == 200
    assert claimed.data["id"] == task_id and claimed.data["attempts"] == 2
    done = run_cgi("POST", "/tasks/%d/complete" % task_id, {"worker_id": "survivor", "success": True,
                                                            "result": "rescued"},
                   config_path=backend_config.path)
    assert done.status == 200 and done.data["status"] == "completed"
    task = api.get("/tasks/%d" % task_id).data
    assert task["status"] == "completed" and task["result"] == "rescued"
    assert task["claimed_by"] == "survivor"
    events = [(e["event"], e["worker_id"]) for e in api.get("/tasks/%d/history" % task_id).data["events"]]
    assert events == [("created", None), ("claimed", "doomed"), ("lease_expired", None),
                      ("claimed", "survivor"), ("completed", "survivor")]
