"""Races of the operations features with OS processes, on SQLite and MariaDB:
max_concurrency under 8 claiming processes, and cancel against claim.

Workers are forked processes, each with its own Application (one store
connection per request); what each saw is written to a file and checked
against the database afterwards.
"""

import json
import multiprocessing
import random
import time
from collections import Counter

import pytest

from conftest import ApiClient, db_execute, register
from support import races
from taskq.app import Application

pytestmark = pytest.mark.slow

FORK = multiprocessing.get_context("fork")
DEADLINE = 120  # seconds; a process past it stops and reports it
LIMIT = 3
LIMITED_TASKS = 90
FREE_TASKS = 90
CLAIMERS = 8
CANCEL_TASKS = 160
CANCEL_ROUNDS = 3
CANCEL_CLAIMERS = 4
CANCELLERS = 2

CLAIM_PATHS = [("sqlite", "auto"),
               pytest.param("mysql", "auto", marks=pytest.mark.mysql),  # SKIP LOCKED on MariaDB 10.6+
               pytest.param("mysql", "off", marks=pytest.mark.mysql)]   # the portable claim


def _config(config_factory, backend, skip_locked):
    if backend == "mysql":
        return config_factory(database={"skip_locked": skip_locked})
    return config_factory()


def _client(config_path):
    return ApiClient(Application(config_path=config_path))


def _run(target, jobs, tmp_path, start):
    """Start one process per (name, args); release them together; their records."""
    processes = races.start([
        (_record, (target, name, args, str(tmp_path / ("%s.json" % name)), start),
         tmp_path / ("%s.json" % name)) for name, args in jobs])
    start.set()
    return races.join(processes, time.time() + DEADLINE + 30, "a worker process")


def _record(target, name, args, out, start):
    record = {"name": name, "errors": []}
    start.wait(30)
    try:
        target(record, name, *args)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        record["errors"].append(["exception", repr(exc)])
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(record, handle)


# -- max_concurrency ---------------------------------------------------------------
def _limited_worker(record, name, config_path, deadline):
    """Claim (batches of 1-3, with or without a pattern), hold each task a moment, complete.

    Each held task's interval runs from the claim's answer to just before its
    complete is sent: inside the real lease, so overlapping intervals prove
    overlapping leases."""
    api = _client(config_path)
    rng = random.Random(name)
    record["held"] = []
    empty = 0
    while time.time() < deadline and empty < 20:
        body = {"worker_id": name, "limit": rng.randint(1, 3), "lease_seconds": 300}
        if rng.random() < 0.4:
            body["type_pattern"] = "cap.%"
        response = api.post("/tasks/claim", body)
        if response.status != 200:
            record["errors"].append(["claim", response.status, response.raw.decode()])
            continue
        tasks = response.data["tasks"]
        if not tasks:
            empty += 1
            time.sleep(0.02)
            continue
        empty = 0
        start = time.time()
        time.sleep(rng.uniform(0.005, 0.03))
        for task in tasks:
            end = time.time()
            record["held"].append([task["id"], task["type"], start, end])
            done = api.post("/tasks/%d/complete" % task["id"], {"worker_id": name, "success": True})
            if done.status != 200:
                record["errors"].append(["complete", task["id"], done.status])


def _sampler(record, name, config_path, deadline, type_id, backend):
    """Count live leases of the limited type straight from the database, over and over."""
    live = "lease_expires_at > %s" % ("?" if backend == "sqlite" else "UTC_TIMESTAMP(6)")
    sql = "SELECT COUNT(*) FROM tasks WHERE type_id = ? AND status = 'claimed' AND " + live
    from taskq import config as config_module

    config = config_module.load(config_path)
    record["samples"] = []
    remaining = lambda: db_execute(  # noqa: E731
        config, "SELECT COUNT(*) FROM tasks WHERE status != 'completed'")[0][0]
    while time.time() < deadline:
        params = (type_id, int(time.time() * 1000)) if backend == "sqlite" else (type_id,)
        record["samples"].append(db_execute(config, sql, params)[0][0])
        if len(record["samples"]) % 20 == 0 and remaining() == 0:
            break
        time.sleep(0.003)


def _max_overlap(intervals):
    """The most intervals open at one moment (an end before an equal start)."""
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                    key=lambda p: (p[0], p[1]))
    most = current = 0
    for _, step in points:
        current += step
        most = max(most, current)
    return most


@pytest.mark.parametrize("backend, skip_locked", CLAIM_PATHS, indirect=["backend"])
def test_eight_claimers_never_hold_more_than_max_concurrency_leases(config_factory, backend,
                                                                   skip_locked, tmp_path):
    config = _config(config_factory, backend, skip_locked)
    api = ApiClient(Application(config=config))
    limited = register(api, "cap.limited", {"type": "object"})
    register(api, "cap.free", {"type": "object"})
    assert api.post("/task-types/cap.limited/settings", {"max_concurrency": LIMIT}).status == 200
    items = [{"type": "cap.limited", "params": {"i": i}, "priority": 5} for i in range(LIMITED_TASKS)]
    items += [{"type": "cap.free", "params": {"i": i}} for i in range(FREE_TASKS)]
    assert api.post("/tasks", {"tasks": items}).data["created"] == len(items)

    deadline = time.time() + DEADLINE
    path = str(config.path)
    jobs = [("claimer-%d" % n, (path, deadline)) for n in range(CLAIMERS)]
    records = _run(_limited_worker, jobs, tmp_path, FORK.Event())
    assert [(r["name"], e) for r in records for e in r["errors"]] == []

    held = [h for r in records for h in r["held"]]
    ids = Counter(task_id for task_id, _, _, _ in held)
    assert len(ids) == len(items) and set(ids.values()) == {1}  # each task once, none lost
    overlap = _max_overlap([(s, e) for _, kind, s, e in held if kind == "cap.limited"])
    assert overlap <= LIMIT
    rows = db_execute(config, "SELECT status, COUNT(*) FROM tasks GROUP BY status")
    assert dict(rows) == {"completed": len(items)}
    assert limited["id"]


@pytest.mark.parametrize("backend, skip_locked", CLAIM_PATHS, indirect=["backend"])
def test_sampled_live_leases_of_a_limited_type_never_exceed_its_limit(config_factory, backend,
                                                                     skip_locked, tmp_path):
    config = _config(config_factory, backend, skip_locked)
    api = ApiClient(Application(config=config))
    limited = register(api, "cap.limited", {"type": "object"})
    register(api, "cap.free", {"type": "object"})
    api.post("/task-types/cap.limited/settings", {"max_concurrency": LIMIT})
    items = [{"type": "cap.limited", "params": {"i": i}} for i in range(LIMITED_TASKS)]
    items += [{"type": "cap.free", "params": {"i": i}} for i in range(FREE_TASKS // 3)]
    assert api.post("/tasks", {"tasks": items}).data["created"] == len(items)

    deadline = time.time() + DEADLINE
    path = str(config.path)
    jobs = [("claimer-%d" % n, (path, deadline)) for n in range(CLAIMERS)]
    jobs.append(("sampler", (path, deadline, limited["id"], backend)))

    def target(record, name, *args):
        (_sampler if name == "sampler" else _limited_worker)(record, name, *args)

    records = _run(target, jobs, tmp_path, FORK.Event())
    assert [(r["name"], e) for r in records for e in r["errors"]] == []
    samples = next(r["samples"] for r in records if r["name"] == "sampler")
    assert samples and max(samples) <= LIMIT
    assert dict(db_execute(config, "SELECT status, COUNT(*) FROM tasks GROUP BY status")) == \
        {"completed": len(items)}


# -- cancel against claim ------------------------------------------------------------
def _cancel_claimer(record, name, config_path, deadline):
    """Claim, heartbeat once, complete; record what each call answered."""
    api = _client(config_path)
    rng = random.Random(name)
    record.update(claimed=[], completed=[], refused=[])
    empty = 0
    while time.time() < deadline and empty < 10:
        response = api.post("/tasks/claim", {"worker_id": name, "limit": rng.randint(1, 4),
                                             "lease_seconds": 300})
        if response.status != 200:
            record["errors"].append(["claim", response.status, response.raw.decode()])
            continue
        tasks = response.data["tasks"]
        if not tasks:
            empty += 1
            time.sleep(0.02)
            continue
        empty = 0
        for task in tasks:
            record["claimed"].append(task["id"])
        time.sleep(rng.uniform(0, 0.01))
        for task in tasks:
            beat = api.post("/tasks/%d/progress" % task["id"], {"worker_id": name, "progress": 50})
            done = api.post("/tasks/%d/complete" % task["id"], {"worker_id": name, "success": True})
            if done.status == 200:
                record["completed"].append(task["id"])
            elif done.status == 409 and "cancelled" in done.error:
                record["refused"].append(task["id"])
            else:
                record["errors"].append(["complete", task["id"], done.status, done.raw.decode()])
            if beat.status not in (200, 409) or (beat.status == 409 and "cancelled" not in beat.error):
                record["errors"].append(["progress", task["id"], beat.status, beat.raw.decode()])


def _canceller(record, name, config_path, ids):
    api = _client(config_path)
    record["cancelled"] = {}
    for task_id in ids:
        response = api.post("/tasks/%d/cancel" % task_id)
        if response.status == 200:
            record["cancelled"][str(task_id)] = response.data["previous_status"]
        elif response.status != 409:
            record["errors"].append(["cancel", task_id, response.status, response.raw.decode()])
        time.sleep(random.uniform(0, 0.002))


@pytest.mark.parametrize("backend, skip_locked", CLAIM_PATHS, indirect=["backend"])
def test_a_task_cancelled_before_the_claim_commits_is_never_handed_out(config_factory, backend,
                                                                       skip_locked, tmp_path):
    config = _config(config_factory, backend, skip_locked)
    api = ApiClient(Application(config=config))
    register(api, "race.cancel", {"type": "object"})
    for round_number in range(CANCEL_ROUNDS):
        _cancel_round(api, config, tmp_path / "", round_number)


def _cancel_round(api, config, tmp_path, round_number):
    """Claimers drain fresh tasks while two cancellers try to cancel every one of them."""
    created = api.post("/tasks", {"tasks": [{"type": "race.cancel", "params": {"r": round_number, "i": i}}
                                            for i in range(CANCEL_TASKS)]}).data
    ids = [r["id"] for r in created["results"]]
    # one canceller meets the claimers at the head of the queue, the other comes from its tail
    halves = [ids[0::2], ids[1::2][::-1]]
    deadline = time.time() + DEADLINE
    path = str(config.path)
    jobs = [("r%d-claimer-%d" % (round_number, n), (path, deadline)) for n in range(CANCEL_CLAIMERS)]
    jobs += [("r%d-canceller-%d" % (round_number, n), (path, halves[n])) for n in range(CANCELLERS)]

    def target(record, name, *args):
        (_canceller if "canceller" in name else _cancel_claimer)(record, name, *args)

    records = _run(target, jobs, tmp_path, FORK.Event())
    assert [(r["name"], e) for r in records for e in r["errors"]] == []

    claimed = Counter(t for r in records for t in r.get("claimed", []))
    completed = {t for r in records for t in r.get("completed", [])}
    refused = {t for r in records for t in r.get("refused", [])}
    cancelled = {int(t): prev for r in records for t, prev in r.get("cancelled", {}).items()}
    assert set(claimed.values()) <= {1}  # never handed to two workers
    from_pending = {t for t, prev in cancelled.items() if prev == "pending"}
    assert from_pending & set(claimed) == set()  # cancelled while pending: never handed out
    assert {t for t, prev in cancelled.items() if prev == "claimed"} <= set(claimed)
    assert completed & set(cancelled) == set()  # completed or cancelled, never both
    assert refused <= set(cancelled)
    placeholders = ", ".join("?" * len(ids))
    final = dict(db_execute(config, "SELECT id, status FROM tasks WHERE id IN (%s)" % placeholders, ids))
    assert {t for t, s in final.items() if s == "cancelled"} == set(cancelled)
    assert {t for t, s in final.items() if s == "completed"} == completed
    assert set(final.values()) <= {"completed", "cancelled"}  # nothing left behind
    # both sides of the race happened in this round
    assert from_pending and completed
