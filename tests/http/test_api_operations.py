"""Concurrency limits, pause, dedupe scope and steering (issue 9 items 3-4),
through the WSGI app on SQLite and MariaDB."""

import pytest

from conftest import claim, create, db_execute, register, snapshot


def settings(api, name="demo", **body):
    return api.post("/task-types/%s/settings" % name, body)


def events(api, task_id):
    return [e["event"] for e in api.get("/tasks/%d/history" % task_id).data["events"]]


def claim_many(api, limit, worker_id="w1", **extra):
    response = claim(api, worker_id, limit=limit, **extra)
    assert response.status == 200, response
    return response.data["tasks"]


# -- max_concurrency -------------------------------------------------------------
def test_claim_passes_over_a_type_at_its_concurrency_limit(api):
    register(api, "limited")
    register(api, "free")
    assert settings(api, "limited", max_concurrency=2).data["max_concurrency"] == 2
    for n in range(4):
        create(api, {"n": n}, type="limited", priority=10)
        create(api, {"n": n}, type="free")
    got = claim_many(api, 10)
    assert sorted(t["type"] for t in got) == ["free"] * 4 + ["limited"] * 2
    assert [t["type"] for t in claim_many(api, 10, "w2")] == []


@pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql)], indirect=True)
def test_the_portable_claim_also_passes_over_full_and_paused_types(api_factory):
    api = api_factory(database={"skip_locked": "off"})
    for name in ("limited", "free", "paused"):
        register(api, name)
    settings(api, "limited", max_concurrency=2)
    api.post("/task-types/paused/pause")
    for n in range(4):
        for name in ("limited", "free", "paused"):
            create(api, {"n": n}, type=name, priority=10 if name != "free" else 0)
    singles = [claim(api, "w%d" % n).data["type"] for n in range(3)]
    assert singles == ["limited", "limited", "free"]
    assert sorted(t["type"] for t in claim_many(api, 10, type_pattern="%")) == ["free"] * 3
    assert claim(api, "w9", type_pattern="limited").status == 404


def test_a_single_claim_at_the_limit_gets_404_then_a_task_once_a_lease_ends(api):
    register(api, "limited")
    settings(api, "limited", max_concurrency=1)
    first, _ = create(api, {"n": 1}, type="limited"), create(api, {"n": 2}, type="limited")
    got = claim(api, "w1", type_pattern="limited")
    assert got.status == 200 and got.data["id"] == first["id"]
    assert claim(api, "w2", type_pattern="limited").status == 404
    assert claim(api, "w2").status == 404
    api.post("/tasks/%d/complete" % first["id"], {"worker_id": "w1", "success": True})
    assert claim(api, "w2").status == 200


def test_expired_leases_do_not_count_against_the_limit(api_factory, backend_config):
    api = api_factory()
    register(api, "limited")
    settings(api, "limited", max_concurrency=1)
    create(api, {"n": 1}, type="limited")
    create(api, {"n": 2}, type="limited")
    assert claim(api, "w1").status == 200
    db_execute(backend_config, "UPDATE tasks SET lease_expires_at = ? WHERE status = 'claimed'",
               (0 if backend_config.backend == "sqlite" else "2000-01-01 00:00:00",))
    got = claim_many(api, 5, "w2")
    assert len(got) == 1  # the expired one went back to pending; still one live lease at most


def test_removing_the_limit_with_null_lets_claims_take_every_task(api):
    register(api, "limited")
    settings(api, "limited", max_concurrency=1)
    for n in range(3):
        create(api, {"n": n}, type="limited")
    assert len(claim_many(api, 5)) == 1
    assert settings(api, "limited", max_concurrency=None).data["max_concurrency"] is None
    assert len(claim_many(api, 5)) == 2


# -- pause -----------------------------------------------------------------------
def test_a_paused_type_is_never_claimed_but_still_accepts_tasks(api):
    register(api, "paused")
    register(api, "other")
    paused = api.post("/task-types/paused/pause")
    assert paused.status == 200 and paused.data["is_paused"] is True
    created = api.post("/tasks", {"type": "paused", "params": {"n": 1}})
    assert created.status == 201
    other = create(api, {"n": 1}, type="other")
    assert claim(api, "w1", type_pattern="paused").status == 404
    assert [t["id"] for t in claim_many(api, 10)] == [other["id"]]
    assert api.get("/task-types/paused").data["is_paused"] is True
    assert api.post("/task-types/paused/resume").data["is_paused"] is False
    assert claim(api, "w1").data["id"] == created.data["id"]


def test_pausing_an_unknown_type_is_404_and_a_bad_name_400(api):
    assert api.post("/task-types/nope/pause").status == 404
    assert api.post("/task-types/bad%20name/pause").status == 400


# -- settings validation -----------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_concurrency": "3"}, "max_concurrency"),
    ({"dedupe_scope": "sometimes"}, "dedupe_scope"),
    ({"is_paused": "yes"}, "is_paused"),
    ({"max_concurrency": 2, "colour": "red"}, "colour"),
    ({}, "max_concurrency"),
])
def test_bad_settings_are_400_naming_the_field_and_change_nothing(api, body, field):
    register(api)
    before = api.get("/task-types/demo").data
    response = settings(api, **body)
    assert response.status == 400 and field in response.error
    assert api.get("/task-types/demo").data == before


def test_registering_again_keeps_the_settings(api):
    register(api)
    settings(api, max_concurrency=3, dedupe_scope="active", is_paused=True)
    register(api, version="2.0")
    data = api.get("/task-types/demo").data
    assert (data["max_concurrency"], data["dedupe_scope"], data["is_paused"]) == (3, "active", True)


# -- dedupe scope ------------------------------------------------------------------
def finish(api, task_id, success=True, worker="w1"):
    response = api.post("/tasks/%d/complete" % task_id, {"worker_id": worker, "success": success,
                                                        "error": "boom"})
    assert response.status == 200, response


def test_scope_always_deduplicates_against_finished_tasks(api):
    register(api)
    first = create(api)
    finish(api, claim(api).data["id"])
    again = api.post("/tasks", {"type": "demo", "params": {"n": 1}})
    assert again.status == 200 and again.data["deduplicated"] and again.data["id"] == first["id"]


def test_scope_active_deduplicates_only_while_pending_or_claimed(api):
    register(api, max_attempts=1)
    settings(api, dedupe_scope="active")
    first = create(api)
    assert api.post("/tasks", {"type": "demo", "params": {"n": 1}}).data["id"] == first["id"]
    claim(api)
    assert api.post("/tasks", {"type": "demo", "params": {"n": 1}}).data["deduplicated"] is True
    finish(api, first["id"])
    second = api.post("/tasks", {"type": "demo", "params": {"n": 1}})
    assert second.status == 201 and second.data["id"] != first["id"]
    assert second.data["dedupe_key"] == first["dedupe_key"]
    finish(api, claim(api).data["id"], success=False)  # failed for good also releases the key
    third = api.post("/tasks", {"type": "demo", "params": {"n": 1}})
    assert third.status == 201 and third.data["id"] not in (first["id"], second.data["id"])


def test_scope_off_never_deduplicates(api):
    register(api)
    settings(api, dedupe_scope="off")
    a = api.post("/tasks", {"type": "demo", "params": {"n": 1}})
    b = api.post("/tasks", {"type": "demo", "params": {"n": 1}})
    assert a.status == b.status == 201 and a.data["id"] != b.data["id"]
    assert a.data["dedupe_key"] is None
    batch = api.post("/tasks", {"tasks": [{"type": "demo", "params": {"n": 1}}] * 3}).data
    assert batch["created"] == 3


# -- cancel --------------------------------------------------------------------------
def test_cancel_a_pending_task_so_no_claim_gets_it(api):
    register(api)
    task = create(api)
    response = api.post("/tasks/%d/cancel" % task["id"])
    assert response.status == 200
    assert (response.data["status"], response.data["previous_status"]) == ("cancelled", "pending")
    assert claim(api).status == 404
    assert events(api, task["id"]) == ["created", "cancelled"]
    assert api.get("/tasks", query="status=cancelled").json["pagination"]["total"] == 1


def test_cancel_a_claimed_task_and_its_worker_gets_409_saying_so(api):
    register(api)
    task = create(api)
    claim(api, "w1")
    assert api.post("/tasks/%d/cancel" % task["id"]).data["previous_status"] == "claimed"
    beat = api.post("/tasks/%d/progress" % task["id"], {"worker_id": "w1", "progress": 50})
    assert beat.status == 409 and "cancelled" in beat.error
    done = api.post("/tasks/%d/complete" % task["id"], {"worker_id": "w1", "success": True})
    assert done.status == 409 and "cancelled" in done.error
    batch = api.post("/tasks/complete", {"worker_id": "w1",
                                         "results": [{"id": task["id"], "success": True}]}).data
    assert batch["results"][0]["status"] == 409 and "cancelled" in batch["results"][0]["error"]
    assert api.get("/tasks/%d" % task["id"]).data["status"] == "cancelled"


def test_cancel_a_finished_task_is_409_and_changes_nothing(api):
    register(api)
    task = create(api)
    finish(api, claim(api).data["id"])
    before = snapshot(api)
    response = api.post("/tasks/%d/cancel" % task["id"])
    assert response.status == 409 and "completed" in response.error
    assert snapshot(api) == before


def test_steering_an_unknown_task_is_404(api):
    for action in ("cancel", "retry", "requeue", "rerun"):
        assert api.post("/tasks/999999/%s" % action).status == 404


# -- retry, requeue, rerun -------------------------------------------------------------
def test_retry_a_failed_task_resets_attempts_and_keeps_history(api):
    register(api, max_attempts=1)
    task = create(api)
    finish(api, claim(api).data["id"], success=False)
    response = api.post("/tasks/%d/retry" % task["id"])
    assert response.status == 200
    assert (response.data["status"], response.data["attempts"]) == ("pending", 0)
    assert events(api, task["id"]) == ["created", "claimed", "failed", "retried"]
    assert claim(api).data["attempts"] == 1


def test_retry_a_cancelled_task(api):
    register(api)
    task = create(api)
    api.post("/tasks/%d/cancel" % task["id"])
    assert api.post("/tasks/%d/retry" % task["id"]).data["status"] == "pending"
    assert claim(api).data["id"] == task["id"]


def test_retry_of_a_pending_task_is_409(api):
    register(api)
    task = create(api)
    response = api.post("/tasks/%d/retry" % task["id"])
    assert response.status == 409 and "pending" in response.error


def test_requeue_a_claimed_task_hands_it_out_again_and_the_old_worker_gets_409(api):
    register(api)
    task = create(api)
    claim(api, "w1")
    response = api.post("/tasks/%d/requeue" % task["id"])
    assert (response.data["status"], response.data["previous_status"]) == ("pending", "claimed")
    again = claim(api, "w2")
    assert again.data["id"] == task["id"]
    late = api.post("/tasks/%d/complete" % task["id"], {"worker_id": "w1", "success": True})
    assert late.status == 409
    assert events(api, task["id"]) == ["created", "claimed", "requeued", "claimed"]


def test_rerun_a_completed_task_although_its_dedupe_key_exists(api):
    register(api)
    task = create(api)
    finish(api, claim(api).data["id"])
    assert api.post("/tasks", {"type": "demo", "params": {"n": 1}}).data["deduplicated"] is True
    response = api.post("/tasks/%d/rerun" % task["id"])
    assert (response.data["status"], response.data["result"]) == ("pending", None)
    assert events(api, task["id"])[-1] == "rerun"
    history = api.get("/tasks/%d/history" % task["id"]).data["events"]
    assert "explicitly" in history[-1]["message"]
    assert claim(api).data["id"] == task["id"]


def test_rerun_of_an_active_scope_task_whose_key_was_taken_is_409(api):
    register(api)
    settings(api, dedupe_scope="active")
    old = create(api)
    finish(api, claim(api).data["id"])
    new = api.post("/tasks", {"type": "demo", "params": {"n": 1}}).data
    before = snapshot(api)
    response = api.post("/tasks/%d/rerun" % old["id"])
    assert response.status == 409 and str(new["id"]) in response.error
    assert snapshot(api) == before
    finish(api, claim(api).data["id"])  # once the new one is done the old one may run again
    assert api.post("/tasks/%d/rerun" % old["id"]).status == 200
    assert api.post("/tasks", {"type": "demo", "params": {"n": 1}}).data["id"] == old["id"]


# -- bulk ------------------------------------------------------------------------------
def test_bulk_retry_by_type_and_error_text_reports_changed_and_more(api):
    register(api, "a", max_attempts=1)
    register(api, "b", max_attempts=1)
    for n in range(5):
        create(api, {"n": n}, type="a")
    create(api, {"n": 0}, type="b")
    for task in claim_many(api, 10):
        error = "API rate limit exceeded" if task["params"]["n"] % 2 == 0 else "disk full"
        api.post("/tasks/%d/complete" % task["id"], {"worker_id": "w1", "success": False, "error": error})
    body = {"filter": {"type": "a", "status": "failed", "error_contains": "rate LIMIT"}, "limit": 2}
    first = api.post("/tasks/bulk/retry", body)
    assert first.status == 200
    assert (first.data["changed"], first.data["more"]) == (2, True)
    second = api.post("/tasks/bulk/retry", body).data
    assert (second["changed"], second["more"]) == (1, False)
    assert api.post("/tasks/bulk/retry", body).data["changed"] == 0
    retried = api.get("/tasks", query="status=pending").data
    assert sorted(t["params"]["n"] for t in retried) == [0, 2, 4]
    assert {t["type"] for t in retried} == {"a"}


def test_bulk_cancel_by_age(api, backend_config):
    register(api)
    old, new = create(api, {"n": 1}), create(api, {"n": 2})
    past = 1000 if backend_config.backend == "sqlite" else "2001-01-01 00:00:00"
    db_execute(backend_config, "UPDATE tasks SET created_at = ? WHERE id = ?", (past, old["id"]))
    data = api.post("/tasks/bulk/cancel", {"filter": {"older_than_seconds": 3600}}).data
    assert (data["changed"], data["ids"], data["more"]) == (1, [old["id"]], False)
    assert api.get("/tasks/%d" % new["id"]).data["status"] == "pending"


def test_bulk_requeue_and_rerun(api):
    register(api)
    a, b = create(api, {"n": 1}), create(api, {"n": 2})
    claim_many(api, 2)
    assert api.post("/tasks/bulk/requeue", {"filter": {}}).data["changed"] == 2
    for task in claim_many(api, 2):
        finish(api, task["id"])
    data = api.post("/tasks/bulk/rerun", {"filter": {"type": "de%"}}).data
    assert sorted(data["ids"]) == sorted([a["id"], b["id"]])


@pytest.mark.parametrize("path, body, field", [
    ("/tasks/bulk/cancel", {}, "filter"),
    ("/tasks/bulk/cancel", {"filter": []}, "filter"),
    ("/tasks/bulk/cancel", {"filter": {"status": "completed"}}, "filter.status"),
    ("/tasks/bulk/retry", {"filter": {"status": ["failed", 3]}}, "filter.status"),
    ("/tasks/bulk/cancel", {"filter": {"age": 3}}, "filter.age"),
    ("/tasks/bulk/cancel", {"filter": {"older_than_seconds": -1}}, "older_than_seconds"),
    ("/tasks/bulk/cancel", {"filter": {}, "limit": 1001}, "limit"),
    ("/tasks/bulk/cancel", {"filter": {}, "dry": True}, "dry"),
])
def test_bad_bulk_requests_are_400_naming_the_field_and_change_nothing(api, path, body, field):
    register(api)
    create(api)
    before = snapshot(api)
    response = api.post(path, body)
    assert response.status == 400 and field in response.error, response
    assert snapshot(api) == before


def test_unknown_bulk_action_is_404(api):
    assert api.post("/tasks/bulk/explode", {"filter": {}}).status == 404


# -- through real CGI processes ------------------------------------------------------
def test_pause_cancel_and_bulk_retry_through_cgi(backend_config):
    from cgi_runner import run_cgi

    path = backend_config.path

    def call(method, route, body=None):
        response = run_cgi(method, route, body, config_path=path)
        assert response.status == 200 or response.status == 201, response
        return response.json["data"]

    call("POST", "/task-types/register", {"name": "cgi.ops", "version": "1", "param_schema": {},
                                          "max_attempts": 1})
    assert call("POST", "/task-types/cgi.ops/pause")["is_paused"] is True
    task = call("POST", "/tasks", {"type": "cgi.ops", "params": {"n": 1}})
    assert run_cgi("POST", "/tasks/claim", {"worker_id": "c"}, config_path=path).status == 404
    call("POST", "/task-types/cgi.ops/resume")
    assert call("POST", "/tasks/%d/cancel" % task["id"])["previous_status"] == "pending"
    data = call("POST", "/tasks/bulk/retry", {"filter": {"type": "cgi.ops", "status": "cancelled"}})
    assert (data["changed"], data["ids"], data["more"]) == (1, [task["id"]], False)
    assert call("POST", "/tasks/claim", {"worker_id": "c"})["id"] == task["id"]
