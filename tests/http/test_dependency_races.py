"""Dependency races with OS processes, on SQLite and on MariaDB (tests/support/races.py).

Each child waits for one parent per completer process; the completers (forked
processes, each its own Application, one store connection per request, as
under Passenger, or real CGI processes let go together) complete their
parents at the same moment, so the parents of one child finish in separate
transactions at once. Every child
must be released exactly once: pending, waiting_on 0, one 'released' event,
and counters that a recount finds nothing to correct in.
"""

import json
import time

import pytest

from conftest import ApiClient, db_execute, register
from support import races
from taskq.app import Application

COMPLETERS = 4
CHILDREN = 25


def _completer(name, config_path, parent_ids, start, out_path, batch):
    client = ApiClient(Application(config_path=config_path))
    record = {"errors": []}
    while time.time() < start:
        time.sleep(0.002)
    try:
        if batch:  # the whole share in one batch complete: one transaction
            done = client.post("/tasks/complete", {"worker_id": name, "results": [
                {"id": task_id, "success": True, "result": {"by": name}} for task_id in parent_ids]})
            if done.status != 200 or done.data["failed"]:
                record["errors"].append(["complete", done.status, done.json])
        else:
            for task_id in parent_ids:
                done = client.post("/tasks/%d/complete" % task_id,
                                   {"worker_id": name, "success": True, "result": {"by": name}})
                if done.status != 200:
                    record["errors"].append(["complete", task_id, done.status, done.json])
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        record["errors"].append(["exception", repr(exc)])
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle)


def _workflow(api):
    """CHILDREN children, each waiting for one parent of each completer's type; the
    parents claimed by their completer. Returns ({completer: parent ids}, child ids)."""
    for n in range(COMPLETERS):
        register(api, "race.p%d" % n)
    register(api, "race.child")
    shares = {n: [] for n in range(COMPLETERS)}
    children = []
    for c in range(CHILDREN):
        items = [{"type": "race.p%d" % n, "params": {"n": c}, "ref": "p%d" % n}
                 for n in range(COMPLETERS)]
        items.append({"type": "race.child", "params": {"n": c},
                      "depends_on": ["p%d" % n for n in range(COMPLETERS)]})
        results = api.post("/tasks", {"tasks": items}).data["results"]
        assert all(r["ok"] for r in results), results
        for n in range(COMPLETERS):
            shares[n].append(results[n]["id"])
        children.append(results[-1]["id"])
        assert results[-1]["status"] == "waiting"
    for n in range(COMPLETERS):
        got = api.post("/tasks/claim", {"worker_id": "c%d" % n, "task_types": ["race.p%d" % n],
                                        "limit": 100}).data["tasks"]
        assert sorted(t["id"] for t in got) == sorted(shares[n])
    return shares, children


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "batch"])
def test_parents_completed_at_once_in_separate_processes_release_each_child_once(
        api, backend_config, tmp_path, batch):
    shares, children = _workflow(api)
    start = time.time() + 0.5
    records = races.join(races.start(
        [(_completer, ("c%d" % n, str(backend_config.path), shares[n], start,
                       str(tmp_path / ("completer-%d.json" % n)), batch),
          tmp_path / ("completer-%d.json" % n)) for n in range(COMPLETERS)]),
        time.time() + 120, "completer process")
    assert [e for r in records for e in r["errors"]] == []

    rows = db_execute(backend_config, "SELECT id, status, waiting_on FROM tasks WHERE type = ?",
                      ("race.child",))
    assert sorted((int(i), s, int(w)) for i, s, w in rows) == [(c, "pending", 0) for c in children]
    released = db_execute(backend_config, "SELECT task_id, COUNT(*) FROM task_history "
                                          "WHERE event = 'released' GROUP BY task_id")
    assert sorted((int(t), int(n)) for t, n in released) == [(c, 1) for c in children]
    counts = {s: n for s, n in api.get("/stats").data["types"]["race.child"]["counts"].items() if n}
    assert counts == {"pending": CHILDREN}
    assert api.post("/admin/recount").data == {"task_counts": [], "usage_count": []}
    # each child's claim carries all its parents' results
    got = api.post("/tasks/claim", {"worker_id": "last", "task_types": ["race.child"],
                                    "limit": 100}).data["tasks"]
    assert len(got) == CHILDREN
    for child in got:
        assert sorted(p["result"]["by"] for p in child["parents"]) == [
            "c%d" % n for n in range(COMPLETERS)]


def _creator(config_path, parent_id, count, start, out_path, name):
    client = ApiClient(Application(config_path=config_path))
    record = {"errors": [], "created": []}
    while time.time() < start:
        time.sleep(0.002)
    try:
        for n in range(count):
            made = client.post("/tasks", {"type": "race.child", "params": {"n": n, "by": name},
                                          "depends_on": [parent_id]})
            if made.status != 201:
                record["errors"].append(["create", made.status, made.json])
            else:
                record["created"].append([made.data["id"], made.data["status"]])
    except Exception as exc:  # noqa: BLE001
        record["errors"].append(["exception", repr(exc)])
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle)


def _finisher(config_path, parent_id, start, out_path):
    client = ApiClient(Application(config_path=config_path))
    record = {"errors": [], "created": []}
    while time.time() < start:
        time.sleep(0.002)
    done = client.post("/tasks/%d/complete" % parent_id, {"worker_id": "p", "success": True})
    if done.status != 200:
        record["errors"].append(["complete", done.status, done.json])
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle)


def test_children_created_while_their_parent_completes_never_wait_forever(
        api, backend_config, tmp_path):
    register(api, "race.parent")
    register(api, "race.child")
    parent = api.post("/tasks", {"type": "race.parent", "params": {}}).data["id"]
    assert api.post("/tasks/claim", {"worker_id": "p"}).data["id"] == parent
    start = time.time() + 0.5
    config_path = str(backend_config.path)
    records = races.join(races.start([
        (_creator, (config_path, parent, 40, start, str(tmp_path / "c0.json"), "a"),
         tmp_path / "c0.json"),
        (_creator, (config_path, parent, 40, start, str(tmp_path / "c1.json"), "b"),
         tmp_path / "c1.json"),
        (_finisher, (config_path, parent, start + 0.03, str(tmp_path / "f.json")),
         tmp_path / "f.json")]), time.time() + 120, "creator process")
    assert [e for r in records for e in r["errors"]] == []
    created = [tuple(c) for r in records for c in r["created"]]
    assert len(created) == 80
    answered = {status for _, status in created}
    assert answered <= {"waiting", "pending"}  # both, when the complete lands mid-way
    rows = db_execute(backend_config, "SELECT status, COUNT(*) FROM tasks WHERE type = ? "
                                      "GROUP BY status", ("race.child",))
    assert {s: int(n) for s, n in rows} == {"pending": 80}  # none left waiting for a done parent
    assert api.post("/admin/recount").data == {"task_counts": [], "usage_count": []}


def test_two_cgi_completes_of_one_childs_parents_released_at_once_release_it_once(
        api, backend_config, tmp_path):
    """Real CGI processes, held at their request body and let go together."""
    register(api, "race.pa")
    register(api, "race.pb")
    register(api, "race.child")
    pairs = []
    for c in range(5):
        results = api.post("/tasks", {"tasks": [
            {"type": "race.pa", "params": {"n": c}, "ref": "a"},
            {"type": "race.pb", "params": {"n": c}, "ref": "b"},
            {"type": "race.child", "params": {"n": c}, "depends_on": ["a", "b"]}]}).data["results"]
        pairs.append([r["id"] for r in results])
    for worker, kind in (("wa", "race.pa"), ("wb", "race.pb")):
        got = api.post("/tasks/claim", {"worker_id": worker, "task_types": [kind], "limit": 10})
        assert len(got.data["tasks"]) == 5
    procs = []
    for a, b, _ in pairs:
        for worker, parent in (("wa", a), ("wb", b)):
            procs.append(races.spawn_cgi("POST", "/tasks/%d/complete" % parent,
                                         {"worker_id": worker, "success": True},
                                         backend_config.path, tmp_path, len(procs)))
    answers = races.release(procs)
    assert [status for status, _ in answers] == [200] * 10, answers
    children = [child for _, _, child in pairs]
    rows = db_execute(backend_config, "SELECT id, status, waiting_on FROM tasks WHERE type = ?",
                      ("race.child",))
    assert sorted((int(i), s, int(w)) for i, s, w in rows) == [(c, "pending", 0) for c in children]
    released = db_execute(backend_config, "SELECT task_id, COUNT(*) FROM task_history "
                                          "WHERE event = 'released' GROUP BY task_id")
    assert sorted((int(t), int(n)) for t, n in released) == [(c, 1) for c in children]
    assert api.post("/admin/recount").data == {"task_counts": [], "usage_count": []}
