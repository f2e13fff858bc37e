"""Batch claim, complete and create through a real dev server, on SQLite and MariaDB.

The concurrent cases use OS processes, each with its own HTTP client.
"""

import json
import subprocess
import sys
import time

import pytest
from live_server import LiveServer, python_env

from taskq.client import BadRequest, Client

CLAIMER = """
import json, sys
from taskq.client import Client

url, worker_id = sys.argv[1], sys.argv[2]
client = Client(url, retries=8, backoff=0.05)
claimed = []
while True:
    tasks = client.claim_batch(worker_id, 10)
    if not tasks:
        break
    claimed.extend(t["id"] for t in tasks)
    answer = client.complete_batch(worker_id, [{"id": t["id"], "success": True,
                                                "result": {"by": worker_id}} for t in tasks])
    assert answer["completed"] == len(tasks), answer
print(json.dumps(claimed))
"""

CREATOR = """
import json, sys
from taskq.client import Client

url, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
client = Client(url, retries=8, backoff=0.05)
items = [{"type": "job", "params": {"n": n}} for n in range(first, first + count)]
print(json.dumps(client.create_tasks(items)))
"""


@pytest.fixture
def client(server):
    client = Client(server.url, retries=2, backoff=0.05)
    client.register_type("job", "1", {"type": "object", "required": ["n"],
                                      "properties": {"n": {"type": "integer"}}})
    return client


def run_all(commands, timeout=120):
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=python_env())
             for c in commands]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err.decode()
        outputs.append(json.loads(out))
    return outputs


def test_eight_processes_claiming_batches_of_ten_never_get_the_same_task(server, client):
    ids = []
    for first in range(0, 2000, 500):
        answer = client.create_tasks([{"type": "job", "params": {"n": n}}
                                      for n in range(first, first + 500)])
        assert answer["created"] == 500
        ids += [r["id"] for r in answer["results"]]

    claimed = run_all([[sys.executable, "-c", CLAIMER, server.url, "w%d" % i] for i in range(8)])

    every = [task_id for batch in claimed for task_id in batch]
    assert len(every) == len(set(every)) == 2000
    assert sorted(every) == sorted(ids)
    assert sum(1 for batch in claimed if batch) > 1
    assert client.list_tasks(status="completed", limit=1)["total"] == 2000
    assert client.list_tasks(status="pending", limit=1)["total"] == 0
    assert client.list_tasks(status="claimed", limit=1)["total"] == 0


def test_claim_with_limit_answers_an_empty_list_when_the_queue_is_empty(server, client):
    envelope = client.request_envelope("POST", "/tasks/claim", {"worker_id": "w", "limit": 5})
    assert envelope["success"] is True
    assert envelope["data"] == {"tasks": [], "count": 0}


def test_claim_with_limit_takes_highest_priority_then_oldest(server, client):
    low = client.create_task("job", {"n": 1})["id"]
    high = client.create_task("job", {"n": 2}, priority=5)["id"]
    low2 = client.create_task("job", {"n": 3})["id"]
    tasks = client.claim_batch("w", 2)
    assert [t["id"] for t in tasks] == [high, low]
    assert all(t["attempts"] == 1 and t["lease_expires_at"] for t in tasks)
    assert [t["id"] for t in client.claim_batch("w", 100)] == [low2]


def test_claim_limit_and_lease_seconds_are_bounded(config_factory, tmp_path):
    srv = LiveServer(config_factory(queue={"max_lease_seconds": 60}).path, tmp_path / "server.log")
    try:
        client = Client(srv.url)
        for body in ({"limit": 0}, {"limit": 101}, {"limit": "5"}, {"lease_seconds": 61},
                     {"lease_seconds": 0}):
            with pytest.raises(BadRequest):
                client.request("POST", "/tasks/claim", dict(body, worker_id="w"))
        client.register_type("job", "1", {"type": "object"})
        client.create_task("job", {})
        task, = client.claim_batch("w", 1, lease_seconds=60)
        with pytest.raises(BadRequest):
            client.progress(task["id"], "w", 10, lease_seconds=61)
        assert client.progress(task["id"], "w", 10, lease_seconds=60)["progress"] == 10
    finally:
        srv.close()


def test_batch_complete_answers_each_item_and_one_bad_item_spoils_nothing(server, client):
    good, failing, lost, theirs = [client.create_task("job", {"n": n})["id"] for n in range(4)]
    # `lost`: claimed by w1 with a 1 s lease that lapses, then reclaimed by w2.
    assert [t["id"] for t in client.claim_batch("w1", 1, lease_seconds=1)] == [good]
    client.progress(good, "w1", 0, lease_seconds=300)
    assert [t["id"] for t in client.claim_batch("w1", 2, lease_seconds=300)] == [failing, lost]
    client.progress(lost, "w1", 0, lease_seconds=1)
    time.sleep(2.1)
    assert {t["id"] for t in client.claim_batch("w2", 2)} == {lost, theirs}

    answer = client.complete_batch("w1", [
        {"id": good, "success": True, "result": {"ok": 1}},
        {"id": failing, "success": False, "error": "boom"},
        {"id": lost, "success": True, "result": "late"},
        {"id": theirs, "success": True, "result": "not mine"},
        {"id": 987654, "success": True},
        {"id": good, "success": "yes"},
        "not an object",
    ])
    results = answer["results"]
    assert [r["index"] for r in results] == list(range(7))
    assert results[0] == {"index": 0, "ok": True, "id": good, "status": "completed",
                          "attempts": 1, "will_retry": False}
    assert results[1] == {"index": 1, "ok": True, "id": failing, "status": "pending",
                          "attempts": 1, "will_retry": True}
    assert [(r["ok"], r["id"], r["status"]) for r in results[2:]] == [
        (False, lost, 409), (False, theirs, 403), (False, 987654, 404), (False, good, 400),
        (False, None, 400)]
    assert all(r["error"] for r in results[2:])
    assert (answer["completed"], answer["failed"], answer["count"]) == (2, 5, 7)

    assert client.get_task(good)["result"] == {"ok": 1}
    assert client.get_task(failing)["status"] == "pending"
    assert client.get_task(failing)["error_message"] == "boom"
    for task_id in (lost, theirs):
        task = client.get_task(task_id)
        assert (task["status"], task["claimed_by"], task["result"]) == ("claimed", "w2", None)


def test_batch_complete_naming_a_task_twice_completes_it_once(server, client):
    first, second = [client.create_task("job", {"n": n})["id"] for n in range(2)]
    assert len(client.claim_batch("w1", 2)) == 2
    answer = client.complete_batch("w1", [
        {"id": first, "success": True, "result": 1},
        {"id": first, "success": True, "result": 2},
        {"id": second, "success": False, "error": "boom"},
    ])
    assert [(r["ok"], r.get("status")) for r in answer["results"]] == [
        (True, "completed"), (False, 409), (True, "pending")]
    assert client.get_task(first)["result"] == 1
    events = [e["event"] for e in client.task_history(first)["events"]]
    assert events == ["created", "claimed", "completed"]
    assert [e["event"] for e in client.task_history(second)["events"]] == ["created", "claimed", "retry"]


def test_batch_complete_rejects_an_empty_or_oversized_list(server, client):
    for results in ([], [{"id": 1, "success": True}] * 101, {"id": 1}):
        with pytest.raises(BadRequest):
            client.request("POST", "/tasks/complete", {"worker_id": "w", "results": results})


def test_batch_create_answers_each_item_valid_duplicate_or_invalid(server, client):
    client.register_type("other", "1", {"type": "object"})
    existing = client.create_task("job", {"n": 1})["id"]
    answer = client.create_tasks([
        {"type": "job", "params": {"n": 2}, "priority": 3},
        {"type": "job", "params": {"n": 1}},
        {"type": "job", "params": {"n": 2}, "priority": 3},
        {"type": "job", "params": {"n": "two"}},
        {"type": "missing", "params": {}},
        {"type": "job", "params": [1]},
        "not an object",
        {"type": "other", "params": {"a": 1, "b": 2}},
        {"type": "other", "params": {"b": 2, "a": 1}},
    ])
    r = answer["results"]
    assert [item["index"] for item in r] == list(range(9))
    assert [item["ok"] for item in r] == [True, True, True, False, False, False, False, True, True]
    assert r[0]["deduplicated"] is False and r[0]["priority"] == 3 and r[0]["status"] == "pending"
    assert (r[1]["id"], r[1]["deduplicated"]) == (existing, True)
    assert (r[2]["id"], r[2]["deduplicated"]) == (r[0]["id"], True)
    assert r[3]["status"] == 400
    assert r[3]["error"] == "Parameter validation failed"
    assert r[3]["details"] == [{"path": "$.n", "message": "'two' is not of type 'integer'"}]
    assert r[4]["status"] == 404
    assert [r[5]["status"], r[6]["status"]] == [400, 400]
    assert (r[8]["id"], r[8]["deduplicated"]) == (r[7]["id"], True)
    assert (answer["created"], answer["deduplicated"], answer["failed"], answer["count"]) == (2, 3, 4, 9)
    assert client.list_tasks(limit=1)["total"] == 3


def test_batch_create_with_only_invalid_items_creates_nothing_and_answers_200(server, client):
    envelope = client.request_envelope("POST", "/tasks", {"tasks": [{"type": "job", "params": {}}]})
    assert envelope["success"] is True
    assert envelope["data"]["failed"] == 1
    assert envelope["data"]["results"][0]["details"][0]["message"] == "'n' is a required property"
    assert client.list_tasks(limit=1)["total"] == 0


def test_batch_create_rejects_an_empty_or_oversized_list(server, client):
    for tasks in ([], [{"type": "job", "params": {"n": 1}}] * 501, {"type": "job"}):
        with pytest.raises(BadRequest):
            client.request("POST", "/tasks", {"tasks": tasks})


def test_overlapping_batch_creates_racing_across_processes_make_each_task_once(server, client):
    # Six processes, each creating 200 tasks of which 100 overlap its neighbour's.
    commands = [[sys.executable, "-c", CREATOR, server.url, str(i * 100), "200"] for i in range(6)]
    answers = run_all(commands)

    by_n = {}
    for i, answer in enumerate(answers):
        assert answer["failed"] == 0
        for offset, result in enumerate(answer["results"]):
            assert result["ok"] is True
            by_n.setdefault(i * 100 + offset, set()).add(result["id"])
    assert len(by_n) == 700
    assert all(len(ids) == 1 for ids in by_n.values())
    assert len({next(iter(ids)) for ids in by_n.values()}) == 700
    assert sum(a["created"] for a in answers) == 700
    assert sum(a["deduplicated"] for a in answers) == 500
    assert client.list_tasks(limit=1)["total"] == 700
