"""Task dependencies (issue 18), on SQLite and on MariaDB: depends_on and batch refs,
status waiting, release in the last parent's completion, cancel and run on a failed
parent, retry bringing children back, fan-in on claim, the graph, and the counters."""

import json
import os

import pytest

from conftest import ApiClient, claim, create, db_execute, register, snapshot
from taskq.app import Application
from taskq.store import open_store
from taskq.store.dependencies import FAN_IN_BYTES, MAX_PARENTS


@pytest.fixture
def flow(api):
    register(api)
    register(api, "once", max_attempts=1)
    return api


def task(api, task_id):
    response = api.get("/tasks/%d" % task_id)
    assert response.status == 200, response
    return response.data


def status(api, task_id):
    return task(api, task_id)["status"]


def finish(api, task_id, success=True, result=None, worker="w1", error="boom"):
    """Claim `task_id` (it must be the one claimable task of its type) and complete it."""
    got = api.post("/tasks/claim", {"worker_id": worker, "task_types": [task(api, task_id)["type"]],
                                    "limit": 100}).data["tasks"]
    assert task_id in [t["id"] for t in got], got
    for other in got:
        if other["id"] != task_id:
            api.post("/tasks/%d/requeue" % other["id"])
    body = {"worker_id": worker, "success": success}
    if success:
        body["result"] = {"from": task_id} if result is None else result
    else:
        body["error"] = error
    response = api.post("/tasks/%d/complete" % task_id, body)
    assert response.status == 200, response
    return response.data


def stats_counts(api):
    return {(t, s): n for t, info in api.get("/stats").data["types"].items()
            for s, n in info["counts"].items() if n}


def assert_counters_exact(api):
    """/stats agrees with the rows, and a recount finds nothing to correct."""
    rows = {}
    for t in api.get("/tasks", query="limit=1000").data:
        rows[(t["type"], t["status"])] = rows.get((t["type"], t["status"]), 0) + 1
    assert stats_counts(api) == rows
    assert api.post("/admin/recount").data == {"task_counts": [], "usage_count": []}


def events(api, task_id):
    return [e["event"] for e in api.get("/tasks/%d/history" % task_id).data["events"]]


# -- creating children -------------------------------------------------------------------
def test_a_child_waits_until_its_last_parent_completes(flow):
    a, b = create(flow, {"n": 1})["id"], create(flow, {"n": 2})["id"]
    child = create(flow, {"n": 3}, depends_on=[a, b])
    assert child["status"] == "waiting"
    finish(flow, a)
    assert status(flow, child["id"]) == "waiting"
    assert task(flow, child["id"])["waiting_on"] == 1
    finish(flow, b)
    assert status(flow, child["id"]) == "pending"  # released by b's own complete
    assert events(flow, child["id"]) == ["created", "released"]
    assert_counters_exact(flow)


def test_a_waiting_task_is_never_claimed(flow):
    parent = create(flow, {"n": 1})["id"]
    create(flow, {"n": 2}, depends_on=[parent])
    assert claim(flow).data["id"] == parent
    assert claim(flow, "w2").status == 404
    assert flow.post("/tasks/claim", {"worker_id": "w3", "limit": 10}).data["tasks"] == []


def test_a_batch_chains_items_by_ref(flow):
    answer = flow.post("/tasks", {"tasks": [
        {"type": "demo", "params": {"n": 1}, "ref": "fetch"},
        {"type": "demo", "params": {"n": 2}, "ref": "parse", "depends_on": ["fetch"]},
        {"type": "demo", "params": {"n": 3}, "depends_on": ["parse", "fetch"]},
    ]}).data
    assert answer["created"] == 3 and answer["failed"] == 0
    fetch, parse, store_ = (r["id"] for r in answer["results"])
    assert [r.get("ref") for r in answer["results"]] == ["fetch", "parse", None]
    assert [r["status"] for r in answer["results"]] == ["pending", "waiting", "waiting"]
    finish(flow, fetch)
    assert (status(flow, parse), status(flow, store_)) == ("pending", "waiting")
    finish(flow, parse)
    assert status(flow, store_) == "pending"
    assert [p["id"] for p in task(flow, store_)["parents"]] == [fetch, parse]


def test_a_batch_mixes_existing_ids_and_refs(flow):
    old = create(flow, {"n": 0})["id"]
    answer = flow.post("/tasks", {"tasks": [
        {"type": "demo", "params": {"n": 1}, "ref": "a"},
        {"type": "demo", "params": {"n": 2}, "depends_on": [old, "a"]}]}).data
    child = answer["results"][1]["id"]
    assert [p["id"] for p in task(flow, child)["parents"]] == [old, answer["results"][0]["id"]]


def test_a_child_of_a_completed_parent_is_pending_at_once(flow):
    parent = create(flow, {"n": 1})["id"]
    finish(flow, parent)
    child = create(flow, {"n": 2}, depends_on=[parent])
    assert child["status"] == "pending"
    assert task(flow, child["id"])["waiting_on"] == 0


def test_a_child_of_a_failed_parent_is_cancelled_at_creation_or_runs(flow):
    parent = create(flow, {"n": 1}, type="once")["id"]
    finish(flow, parent, success=False)
    assert status(flow, parent) == "failed"
    cancelled = create(flow, {"n": 2}, depends_on=[parent])
    assert cancelled["status"] == "cancelled"
    assert "parent task %d failed" % parent in cancelled["error_message"]
    assert task(flow, cancelled["id"])["cancelled_by"] == parent
    assert events(flow, cancelled["id"]) == ["created", "cancelled"]
    runs = create(flow, {"n": 3}, depends_on=[parent], on_parent_failure="run")
    assert runs["status"] == "pending"
    assert_counters_exact(flow)


def test_a_child_with_run_at_is_released_to_scheduled(flow):
    parent = create(flow, {"n": 1})["id"]
    child = create(flow, {"n": 2}, depends_on=[parent], delay_seconds=3600)
    assert child["status"] == "waiting"
    finish(flow, parent)
    assert status(flow, child["id"]) == "scheduled"
    assert_counters_exact(flow)


def test_a_deduplicated_create_answers_the_existing_task_and_keeps_its_parents(flow):
    a, b = create(flow, {"n": 1})["id"], create(flow, {"n": 2})["id"]
    first = create(flow, {"n": 3}, depends_on=[a])
    again = flow.post("/tasks", {"type": "demo", "params": {"n": 3}, "depends_on": [b]})
    assert again.status == 200 and again.data["deduplicated"] is True
    assert again.data["id"] == first["id"]
    assert [p["id"] for p in task(flow, first["id"])["parents"]] == [a]
    assert task(flow, b).get("children") is None


def test_batch_complete_of_two_parents_releases_the_child_once(flow):
    a, b = create(flow, {"n": 1})["id"], create(flow, {"n": 2})["id"]
    child = create(flow, {"n": 3}, depends_on=[a, b])["id"]
    got = flow.post("/tasks/claim", {"worker_id": "w", "limit": 5}).data["tasks"]
    assert sorted(t["id"] for t in got) == [a, b]
    done = flow.post("/tasks/complete", {"worker_id": "w", "results": [
        {"id": a, "success": True}, {"id": b, "success": True}]}).data
    assert done["completed"] == 2
    assert status(flow, child) == "pending"
    assert events(flow, child).count("released") == 1
    assert_counters_exact(flow)


# -- refusals: 400 naming the field, nothing changed ---------------------------------------
BAD_SINGLE = [
    ({"depends_on": 5}, "depends_on"),
    ({"depends_on": {"ref": "a"}}, "depends_on"),
    ({"depends_on": [True]}, "depends_on[0]"),
    ({"depends_on": [1.5]}, "depends_on[0]"),
    ({"depends_on": [None]}, "depends_on[0]"),
    ({"depends_on": [{"ref": "a"}]}, "depends_on[0]"),
    ({"depends_on": [0]}, "depends_on[0]"),
    ({"depends_on": [-3]}, "depends_on[0]"),
    ({"depends_on": [2 ** 63]}, "depends_on[0]"),
    ({"depends_on": ["bad ref!"]}, "depends_on[0]"),
    ({"depends_on": ["a"]}, "depends_on"),  # a ref outside a batch
    ({"depends_on": [424242]}, "depends_on"),  # no such task
    ({"depends_on": list(range(1, MAX_PARENTS + 2))}, "depends_on"),
    ({"on_parent_failure": "ignore"}, "on_parent_failure"),
    ({"on_parent_failure": 1}, "on_parent_failure"),
    ({"ref": ""}, "ref"),
    ({"ref": "x" * 65}, "ref"),
    ({"ref": 7}, "ref"),
]


@pytest.mark.parametrize("extra,field", BAD_SINGLE)
def test_a_bad_dependency_field_is_a_400_naming_it_and_changes_nothing(flow, extra, field):
    parent = create(flow, {"n": 1})["id"]
    before = snapshot(flow)
    body = {"type": "demo", "params": {"n": 99}}
    body.update(extra)
    response = flow.post("/tasks", body)
    assert response.status == 400, response
    assert "'%s'" % field in response.json["error"], response.json
    assert snapshot(flow) == before
    assert task(flow, parent).get("children") is None


def test_a_missing_parent_is_named(flow):
    parent = create(flow, {"n": 1})["id"]
    response = flow.post("/tasks", {"type": "demo", "params": {"n": 2},
                                    "depends_on": [parent, 99999]})
    assert response.status == 400
    assert "task 99999, which does not exist" in response.json["error"]


BAD_BATCH = [
    # (items, index of the refused item, words of its error)
    ([{"ref": "a", "depends_on": ["a"]}], 0, "cannot depend on itself"),
    ([{"depends_on": ["b"]}, {"ref": "b"}], 0, "later item (tasks[1])"),
    ([{"depends_on": ["nobody"]}], 0, "no item of the batch has"),
    ([{"ref": "a"}, {"ref": "a"}], 1, "repeats the ref"),
    ([{"ref": "a", "params": "x"}, {"depends_on": ["a"]}], 1, "was not created"),
    ([{"ref": "a", "depends_on": [99999]}, {"depends_on": ["a"]}], 1, "was not created"),
]


@pytest.mark.parametrize("items,refused,words", BAD_BATCH)
def test_a_bad_batch_reference_refuses_that_item_only(flow, items, refused, words):
    before = snapshot(flow)
    body = []
    for n, item in enumerate(items):
        entry = {"type": "demo", "params": {"n": 100 + n}}
        entry.update(item)
        body.append(entry)
    answer = flow.post("/tasks", {"tasks": body})
    assert answer.status == 200
    result = answer.data["results"][refused]
    assert result["ok"] is False and result["status"] == 400, result
    assert words in result["error"] and "depends_on" in result["error"] or "ref" in result["error"]
    made = [r["id"] for r in answer.data["results"] if r["ok"]]
    assert len(snapshot(flow)["tasks"]) == len(before["tasks"]) + len(made)
    assert_counters_exact(flow)


# -- a parent fails, is cancelled, is retried ---------------------------------------------
def test_a_failed_parent_cancels_its_waiting_descendants(flow):
    parent = create(flow, {"n": 1}, type="once")["id"]
    child = create(flow, {"n": 2}, depends_on=[parent])["id"]
    grandchild = create(flow, {"n": 3}, depends_on=[child])["id"]
    finish(flow, parent, success=False)
    assert status(flow, parent) == "failed"
    for tid, cause in ((child, parent), (grandchild, child)):
        view = task(flow, tid)
        assert view["status"] == "cancelled"
        assert view["cancelled_by"] == cause
        assert "parent task %d" % cause in view["error_message"]
    assert_counters_exact(flow)


def test_a_failed_attempt_with_retries_left_settles_nothing(flow):
    parent = create(flow, {"n": 1})["id"]  # demo: the default max_attempts
    child = create(flow, {"n": 2}, depends_on=[parent])["id"]
    outcome = finish(flow, parent, success=False)
    assert outcome["will_retry"] is True
    assert status(flow, child) == "waiting"


def test_a_run_child_counts_a_failed_parent_as_settled(flow):
    bad = create(flow, {"n": 1}, type="once")["id"]
    good = create(flow, {"n": 2})["id"]
    child = create(flow, {"n": 3}, depends_on=[bad, good], on_parent_failure="run")["id"]
    finish(flow, bad, success=False)
    assert status(flow, child) == "waiting"
    finish(flow, good)
    assert status(flow, child) == "pending"
    parents = {p["id"]: p for p in claim(flow, "w9").data["parents"]}
    assert parents[bad]["status"] == "failed" and parents[bad]["result"] is None
    assert parents[good]["result"] == {"from": good}


def test_an_expired_last_lease_fails_the_parent_and_cancels_the_child(flow, backend_config):
    parent = create(flow, {"n": 1}, type="once")["id"]
    child = create(flow, {"n": 2}, depends_on=[parent])["id"]
    assert claim(flow).data["id"] == parent
    past = 1000 if backend_config.backend == "sqlite" else "2000-01-01 00:00:00"
    db_execute(backend_config, "UPDATE tasks SET lease_expires_at = ? WHERE id = ?", (past, parent))
    assert claim(flow, "w2").status == 404  # the claim dealt with the expired lease
    assert status(flow, parent) == "failed"
    assert status(flow, child) == "cancelled"
    assert_counters_exact(flow)


def test_cancelling_a_parent_cancels_its_children_and_a_waiting_task_cancels(flow):
    parent = create(flow, {"n": 1})["id"]
    child = create(flow, {"n": 2}, depends_on=[parent])["id"]
    other = create(flow, {"n": 3}, depends_on=[parent])["id"]
    assert flow.post("/tasks/%d/cancel" % other).data["status"] == "cancelled"
    assert flow.post("/tasks/%d/cancel" % parent).status == 200
    view = task(flow, child)
    assert view["status"] == "cancelled" and "parent task %d cancelled" % parent in view["error_message"]
    assert task(flow, other)["cancelled_by"] is None  # cancelled by hand, not by the parent
    assert_counters_exact(flow)


def test_retrying_a_failed_parent_brings_back_what_it_cancelled(flow):
    parent = create(flow, {"n": 1}, type="once")["id"]
    child = create(flow, {"n": 2}, depends_on=[parent])["id"]
    grandchild = create(flow, {"n": 3}, depends_on=[child])["id"]
    by_hand = create(flow, {"n": 4}, depends_on=[parent])["id"]
    flow.post("/tasks/%d/cancel" % by_hand)
    finish(flow, parent, success=False)
    assert flow.post("/tasks/%d/retry" % parent).data["status"] == "pending"
    for tid in (child, grandchild):
        view = task(flow, tid)
        assert (view["status"], view["waiting_on"], view["cancelled_by"]) == ("waiting", 1, None)
        assert view["error_message"] is None
    assert status(flow, by_hand) == "cancelled"
    assert "restored" in events(flow, child)
    finish(flow, parent)
    assert status(flow, child) == "pending"
    finish(flow, child)
    assert status(flow, grandchild) == "pending"
    assert_counters_exact(flow)


def test_a_retried_child_waits_again_for_unfinished_parents(flow):
    parent = create(flow, {"n": 1})["id"]
    child = create(flow, {"n": 2}, depends_on=[parent])["id"]
    flow.post("/tasks/%d/cancel" % child)
    assert flow.post("/tasks/%d/retry" % child).data["status"] == "waiting"
    assert task(flow, child)["waiting_on"] == 1
    finish(flow, parent)
    assert status(flow, child) == "pending"
    assert_counters_exact(flow)


def test_a_retried_failed_parent_makes_its_waiting_run_children_wait_for_it_again(flow):
    bad = create(flow, {"n": 1}, type="once")["id"]
    slow = create(flow, {"n": 2})["id"]
    child = create(flow, {"n": 3}, depends_on=[bad, slow], on_parent_failure="run")["id"]
    finish(flow, bad, success=False)
    assert task(flow, child)["waiting_on"] == 1
    flow.post("/tasks/%d/retry" % bad)
    assert task(flow, child)["waiting_on"] == 2
    finish(flow, slow)
    assert status(flow, child) == "waiting"
    finish(flow, bad)
    assert status(flow, child) == "pending"


def test_a_child_that_another_failed_parent_still_stops_stays_cancelled(flow):
    a = create(flow, {"n": 1}, type="once")["id"]
    b = create(flow, {"n": 2}, type="once")["id"]
    child = create(flow, {"n": 3}, depends_on=[a, b])["id"]
    finish(flow, a, success=False)
    finish(flow, b, success=False)
    flow.post("/tasks/%d/retry" % a)
    view = task(flow, child)
    assert view["status"] == "cancelled" and view["cancelled_by"] == b
    assert_counters_exact(flow)


def test_bulk_cancel_takes_waiting_tasks(flow):
    parent = create(flow, {"n": 1})["id"]
    child = create(flow, {"n": 2}, depends_on=[parent])["id"]
    answer = flow.post("/tasks/bulk/cancel", {"filter": {"status": "waiting"}})
    assert answer.status == 200, answer
    assert status(flow, child) == "cancelled" and status(flow, parent) == "pending"


# -- fan-in --------------------------------------------------------------------------------
def test_the_claim_of_a_child_carries_its_parents_results(flow):
    a, b = create(flow, {"n": 1})["id"], create(flow, {"n": 2})["id"]
    child = create(flow, {"n": 3}, depends_on=[b, a])["id"]
    finish(flow, a, result={"rows": [1, 2]})
    finish(flow, b, result="text")
    got = claim(flow).data
    assert got["id"] == child
    assert got["parents"] == [{"id": a, "type": "demo", "status": "completed", "result": {"rows": [1, 2]}},
                              {"id": b, "type": "demo", "status": "completed", "result": "text"}]
    lone = create(flow, {"n": 4})["id"]
    got = claim(flow).data
    assert got["id"] == lone and "parents" not in got  # a task without parents claims as before


def test_parent_results_beyond_the_fan_in_bound_are_omitted_and_flagged(flow):
    big = "x" * (FAN_IN_BYTES // 2)
    ids = [create(flow, {"n": n})["id"] for n in range(3)]
    child = create(flow, {"n": 9}, depends_on=ids)["id"]
    for tid in ids:
        finish(flow, tid, result={"blob": big})
    got = flow.post("/tasks/claim", {"worker_id": "w", "limit": 5}).data["tasks"]
    assert [t["id"] for t in got] == [child]
    parents = got[0]["parents"]
    assert [p["id"] for p in parents] == ids
    assert "result" in parents[0] and "result_omitted" not in parents[0]
    assert parents[2] == {"id": ids[2], "type": "demo", "status": "completed", "result_omitted": True}
    kept = sum(len(json.dumps(p["result"], separators=(",", ":"))) for p in parents if "result" in p)
    assert kept <= FAN_IN_BYTES
    assert task(flow, ids[2])["result"] == {"blob": big}  # the worker GETs what was left out


# -- views: GET /tasks/{id}, the graph, lists, stats, metrics ----------------------------
def test_get_task_shows_parents_and_children_only_in_a_workflow(flow):
    lone = create(flow, {"n": 0})["id"]
    a = create(flow, {"n": 1})["id"]
    child = create(flow, {"n": 2}, depends_on=[a])["id"]
    assert "parents" not in task(flow, lone) and "children" not in task(flow, lone)
    view = task(flow, a)
    assert view["parents"] == [] and view["children_count"] == 1
    assert view["children"] == [{"id": child, "type": "demo", "status": "waiting"}]
    view = task(flow, child)
    assert view["parents"] == [{"id": a, "type": "demo", "status": "pending"}]
    assert (view["waiting_on"], view["on_parent_failure"]) == (1, "cancel")


def test_the_graph_answers_the_whole_workflow(flow):
    top = create(flow, {"n": 1})["id"]
    left = create(flow, {"n": 2}, depends_on=[top])["id"]
    right = create(flow, {"n": 3}, depends_on=[top])["id"]
    bottom = create(flow, {"n": 4}, depends_on=[left, right])["id"]
    other_root = create(flow, {"n": 5})["id"]
    side = create(flow, {"n": 6}, depends_on=[other_root, right])["id"]
    create(flow, {"n": 7})  # not in the workflow
    for start in (top, bottom, side):
        graph = flow.get("/tasks/%d/graph" % start).data
        assert [n["id"] for n in graph["nodes"]] == sorted([top, left, right, bottom, other_root, side])
        assert {(e["parent"], e["child"]) for e in graph["edges"]} == {
            (top, left), (top, right), (left, bottom), (right, bottom), (other_root, side),
            (right, side)}
        assert graph["truncated"] is False and graph["count"] == 6
    lone = flow.get("/tasks/%d/graph" % create(flow, {"n": 8})["id"]).data
    assert len(lone["nodes"]) == 1 and lone["edges"] == []
    assert flow.get("/tasks/999999/graph").status == 404


def test_the_graph_is_bounded(flow, backend_config):
    root = create(flow, {"n": 0})["id"]
    for n in range(1, 8):
        create(flow, {"n": n}, depends_on=[root])
    store = open_store(backend_config)
    try:
        graph = store.graph(root, max_nodes=4)
    finally:
        store.close()
    assert graph["truncated"] is True and len(graph["nodes"]) == 4
    ids = {n["id"] for n in graph["nodes"]}
    assert all(e["parent"] in ids and e["child"] in ids for e in graph["edges"])


def test_waiting_shows_in_lists_stats_and_metrics(flow):
    parent = create(flow, {"n": 1})["id"]
    child = create(flow, {"n": 2}, depends_on=[parent])["id"]
    listed = flow.get("/tasks", query="status=waiting").data
    assert [t["id"] for t in listed] == [child]
    assert flow.get("/stats").data["counts"]["waiting"] == 1
    metrics = flow.get("/metrics").raw.decode()
    assert 'taskq_tasks{type="demo",status="waiting"} 1' in metrics
    assert "waiting" in flow.get("/openapi.json").json["components"]["schemas"]["Task"][
        "properties"]["status"]["enum"]
    assert_counters_exact(flow)


def test_retention_deletes_a_finished_tasks_edges(flow, backend_config):
    parent = create(flow, {"n": 1})["id"]
    child = create(flow, {"n": 2}, depends_on=[parent])["id"]
    finish(flow, parent)
    finish(flow, child)
    old = 1000 if backend_config.backend == "sqlite" else "2000-01-01 00:00:00"
    db_execute(backend_config, "UPDATE tasks SET updated_at = ?", (old,))
    assert flow.post("/admin/purge").data["deleted"]["completed"] == 2
    assert db_execute(backend_config, "SELECT COUNT(*) FROM task_dependencies")[0][0] == 0
    assert_counters_exact(flow)


def test_a_long_chain_cancels_level_by_level(flow):
    first = create(flow, {"n": 0}, type="once")["id"]
    chain = [first]
    for n in range(1, 30):
        chain.append(create(flow, {"n": n}, depends_on=[chain[-1]])["id"])
    finish(flow, first, success=False)
    assert [status(flow, t) for t in chain[1:]] == ["cancelled"] * 29
    flow.post("/tasks/%d/retry" % first)
    assert [status(flow, t) for t in chain[1:]] == ["waiting"] * 29
    assert_counters_exact(flow)


def test_a_parent_with_many_children_releases_them_all_in_its_complete(flow):
    parent = create(flow, {"n": -1})["id"]
    items = [{"type": "demo", "params": {"n": n}, "depends_on": [parent]} for n in range(500)]
    answer = flow.post("/tasks", {"tasks": items}).data
    assert answer["created"] == 500
    finish(flow, parent)
    assert flow.get("/stats").data["counts"].get("waiting", 0) == 0
    assert flow.get("/stats").data["counts"]["pending"] == 500
    assert_counters_exact(flow)


def test_a_process_of_its_own_sees_the_same_workflow(backend_config):
    """A fresh Application (one store per request, as under CGI) reads what another wrote."""
    first = ApiClient(Application(config=backend_config))
    register(first)
    parent = create(first, {"n": 1})["id"]
    child = create(first, {"n": 2}, depends_on=[parent])["id"]
    second = ApiClient(Application(config=backend_config))
    assert status(second, child) == "waiting"
    finish(second, parent)
    assert status(first, child) == "pending"


# -- the Python client and worker, against a real dev server -----------------------------
def test_the_client_passes_depends_on_and_refs_and_a_handler_sees_the_parents(server):
    from taskq import worker
    from taskq.client import Client

    client = Client(server.url, retries=2, backoff=0.05)
    client.register_type("pipe.stage", "1", {"type": "object"})
    first = client.create_task("pipe.stage", {"n": 1})
    answer = client.create_tasks([
        {"type": "pipe.stage", "params": {"n": 2}, "ref": "b", "depends_on": [first["id"]]},
        {"type": "pipe.stage", "params": {"n": 3}, "depends_on": ["b", first["id"]],
         "on_parent_failure": "run"}])
    second, last = (r["id"] for r in answer["results"])
    assert answer["results"][0]["ref"] == "b"
    assert client.get_task(last)["status"] == "waiting"
    alone = client.create_task("pipe.stage", {"n": 4}, depends_on=[first["id"]],
                               on_parent_failure="run")
    assert alone["status"] == "waiting"
    graph = client.task_graph(last)
    assert {n["id"] for n in graph["nodes"]} == {first["id"], second, last, alone["id"]}

    seen = {}
    registry = {}

    @worker.handler("pipe.stage", registry=registry)
    def stage(params, task):
        seen[task.id] = [(p["id"], p.get("result")) for p in task.parents]
        return {"n": params["n"]}

    code = worker.main(["--url", server.url, "--once", "--max-tasks", "10", "--poll-min", "0.05",
                        "--poll-max", "0.1"], handlers=registry)
    assert code == 0
    assert seen[first["id"]] == []
    assert seen[last] == [(first["id"], {"n": 1}), (second, {"n": 2})]
    assert client.get_task(last)["status"] == "completed"


# -- the dashboard ----------------------------------------------------------------------
def test_the_dashboard_task_page_lists_parents_and_children_and_filters_waiting(config_factory):
    from test_dashboard import KEY, Browser

    app = Application(config=config_factory(api={"api_key": KEY}))
    api = ApiClient(app)
    headers = {"X-API-Key": KEY}
    api.post("/task-types/register", {"name": "demo", "version": "1", "param_schema": {}},
             headers=headers)
    parent = api.post("/tasks", {"type": "demo", "params": {"n": 1}}, headers=headers).data["id"]
    child = api.post("/tasks", {"type": "demo", "params": {"n": 2}, "depends_on": [parent]},
                     headers=headers).data["id"]
    browser = Browser(app)
    browser.login()
    page = browser.get("/dashboard/tasks/%d" % child)
    assert page.status == 200
    assert "Waiting for 1 parent(s)" in page.body
    assert 'href="/taskq/dashboard/tasks/%d"' % parent in page.body or \
        "/tasks/%d\"" % parent in page.body
    assert '<span class="status pending">pending</span>' in page.body
    page = browser.get("/dashboard/tasks/%d" % parent)
    assert "/tasks/%d\"" % child in page.body and '<span class="status waiting">waiting</span>' in page.body
    listed = browser.get("/dashboard/tasks", query="status=waiting")
    assert listed.status == 200 and "/tasks/%d\"" % child in listed.body
    assert "/tasks/%d\"" % parent not in listed.body
    lone = api.post("/tasks", {"type": "demo", "params": {"n": 3}}, headers=headers).data["id"]
    assert "Workflow" not in browser.get("/dashboard/tasks/%d" % lone).body


def test_an_exec_command_reads_its_parents_from_taskq_parents_file(server, tmp_path):
    from taskq import worker
    from taskq.client import Client

    client = Client(server.url, retries=2, backoff=0.05)
    client.register_type("pipe.exec", "1", {"type": "object"})
    parent = client.create_task("pipe.exec", {"n": 1})["id"]
    child = client.create_task("pipe.exec", {"n": 2}, depends_on=[parent])["id"]
    command = ('if [ -n "$TASKQ_PARENTS_FILE" ]; then cat "$TASKQ_PARENTS_FILE"; '
               'else echo \'{"root": true}\'; fi')
    code = worker.main(["--url", server.url, "--once", "--max-tasks", "2", "--poll-min", "0.05",
                        "--poll-max", "0.1", "--exec", command])
    assert code == 0
    assert client.get_task(parent)["result"] == {"root": True}
    assert client.get_task(child)["result"] == [
        {"id": parent, "type": "pipe.exec", "status": "completed", "result": {"root": True}}]
    import glob
    import tempfile

    assert not glob.glob(os.path.join(tempfile.gettempdir(), "taskq-parents-*.json"))


def test_a_pipeline_runs_through_real_cgi_processes(backend_config):
    """Each request a fresh CGI process, as on the host: create a fan-in, work it, see it released."""
    from cgi_runner import run_cgi

    def cgi(method, path, body=None):
        response = run_cgi(method, path, body, config_path=backend_config.path)
        assert response.status in (200, 201), (path, response.status, response.json)
        return response.json["data"]

    cgi("POST", "/task-types/register", {"name": "cgi.stage", "version": "1", "param_schema": {}})
    made = cgi("POST", "/tasks", {"tasks": [
        {"type": "cgi.stage", "params": {"n": 1}, "ref": "a"},
        {"type": "cgi.stage", "params": {"n": 2}, "ref": "b"},
        {"type": "cgi.stage", "params": {"n": 3}, "depends_on": ["a", "b"]}]})["results"]
    a, b, last = (r["id"] for r in made)
    claimed = cgi("POST", "/tasks/claim", {"worker_id": "cgi", "limit": 10})["tasks"]
    assert sorted(t["id"] for t in claimed) == [a, b]
    cgi("POST", "/tasks/complete", {"worker_id": "cgi", "results": [
        {"id": a, "success": True, "result": "A"}, {"id": b, "success": True, "result": "B"}]})
    child = cgi("POST", "/tasks/claim", {"worker_id": "cgi"})
    assert child["id"] == last
    assert [p["result"] for p in child["parents"]] == ["A", "B"]
    assert [n["id"] for n in cgi("GET", "/tasks/%d/graph" % last)["nodes"]] == [a, b, last]


def test_a_workflow_drawing_puts_each_task_one_column_right_of_its_deepest_parent():
    from taskq.dashboard import DRAWN_NODES, workflow_drawing

    graph = {"nodes": [{"id": i, "type": "t%d" % i, "status": "waiting"} for i in (1, 2, 3, 4)],
             "edges": [{"parent": 1, "child": 2}, {"parent": 2, "child": 3},
                       {"parent": 1, "child": 3}, {"parent": 1, "child": 4}],
             "truncated": False}
    drawing = workflow_drawing(graph, 3)
    columns = {box["id"]: box["x"] for box in drawing["boxes"]}
    assert columns[1] < columns[2] == columns[4] < columns[3]  # 3 sits under its deepest parent, 2
    assert [box["id"] for box in drawing["boxes"] if box["current"]] == [3]
    assert len(drawing["lines"]) == 4
    assert all(line["x1"] < line["x2"] for line in drawing["lines"])  # edges point right
    big = {"nodes": [{"id": i, "type": "t", "status": "pending"} for i in range(DRAWN_NODES + 1)],
           "edges": [], "truncated": False}
    assert workflow_drawing(big, 0) is None
    assert workflow_drawing(dict(graph, truncated=True), 3) is None


def test_the_dashboard_task_page_draws_its_workflow_with_links_and_statuses(config_factory):
    from test_dashboard import KEY, Browser

    app = Application(config=config_factory(api={"api_key": KEY}))
    api = ApiClient(app)
    headers = {"X-API-Key": KEY}
    name = "pipeline.stage-with-a-long-name.v2"
    api.post("/task-types/register", {"name": name, "version": "1", "param_schema": {}},
             headers=headers)
    made = api.post("/tasks", {"tasks": [
        {"ref": "p", "type": name, "params": {"n": 1}},
        {"ref": "q", "type": name, "params": {"n": 2}},
        {"ref": "r", "type": name, "params": {"n": 3}, "depends_on": ["p", "q"]}]},
        headers=headers)
    assert made.status == 200, made
    ids = [r["id"] for r in made.data["results"]]
    browser = Browser(app)
    browser.login()
    page = browser.get("/dashboard/tasks/%d" % ids[2])
    assert page.status == 200
    svg = page.body[page.body.index("<svg"):page.body.index("</svg>")]
    assert svg.count("<rect") == 3 and svg.count("<line") == 2
    assert 'class="waiting current"' in svg and svg.count('class="pending"') == 2
    for task_id in ids:
        assert '/dashboard/tasks/%d"' % task_id in svg
    assert name[:19] + "\u2026" in svg  # long names are cut to fit their box
    assert "script" not in svg and "style=" not in svg  # nothing the page's CSP would refuse
