"""Claim, progress, complete and leases. On SQLite and on MariaDB.

Lease expiry is shown with 1-second leases and one short sleep each; there
is no reaper, so expiry is observed through the next claim.
"""

import time

import pytest

from conftest import claim, create, register, snapshot

EXPIRE = 1.3  # seconds to sleep past a 1-second lease


def task(api, task_id):
    return api.get("/tasks/%d" % task_id).data


def events(api, task_id):
    return [e["event"] for e in api.get("/tasks/%d/history" % task_id).data["events"]]


def complete(api, task_id, worker_id="w1", **body):
    body.setdefault("success", True)
    body["worker_id"] = worker_id
    return api.post("/tasks/%d/complete" % task_id, body)


def progress(api, task_id, worker_id="w1", value=50, **body):
    body.update(worker_id=worker_id, progress=value)
    return api.post("/tasks/%d/progress" % task_id, body)


# -- claim -------------------------------------------------------------------------
def test_claim_returns_task_with_params_attempts_and_lease(api):
    register(api)
    created = create(api, {"n": 7}, priority=3)
    response = claim(api, "worker-1")
    assert response.status == 200
    data = response.data
    assert data["id"] == created["id"] and data["type"] == "demo"
    assert data["params"] == {"n": 7}
    assert data["attempts"] == 1 and data["priority"] == 3
    assert data["lease_expires_at"].endswith("Z")
    stored = task(api, created["id"])
    assert stored["status"] == "claimed" and stored["claimed_by"] == "worker-1"
    assert stored["lease_expires_at"] == data["lease_expires_at"]


def test_claim_orders_by_priority_then_age(api):
    register(api)
    ids = {}
    for n, priority in enumerate([0, 5, 1, 5, -2, 1]):
        ids[n] = create(api, {"n": n}, priority=priority)["id"]
    order = [claim(api, "w1").data["id"] for _ in range(6)]
    assert order == [ids[1], ids[3], ids[2], ids[5], ids[0], ids[4]]


def test_claim_with_nothing_available_is_404_no_available_tasks(api):
    register(api)
    response = claim(api, "w1")
    assert response.status == 404
    assert response.json["success"] is False
    assert response.error == "No available tasks"


def test_claim_skips_task_with_live_lease(api):
    register(api)
    first = create(api, {"n": 1})["id"]
    second = create(api, {"n": 2})["id"]
    assert claim(api, "w1").data["id"] == first
    assert claim(api, "w2").data["id"] == second
    assert claim(api, "w3").status == 404
    assert task(api, first)["claimed_by"] == "w1"
    assert task(api, second)["claimed_by"] == "w2"


def test_claim_lease_is_claim_timeout_after_claimed_at(api_factory):
    api = api_factory(queue={"claim_timeout": 120})
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    stored = task(api, task_id)
    assert abs(_seconds(stored["lease_expires_at"]) - _seconds(stored["claimed_at"]) - 120) <= 1


def _seconds(text):
    import calendar

    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def test_claim_type_pattern_is_an_sql_like_pattern(api):
    for name in ("PrismQ.Script.Gen", "PrismQ.Script.Fix", "PrismQ.Video.Cut", "Other"):
        register(api, name)
    other = create(api, {"n": 1}, type="Other", priority=100)["id"]
    video = create(api, {"n": 1}, type="PrismQ.Video.Cut", priority=50)["id"]
    gen = create(api, {"n": 1}, type="PrismQ.Script.Gen")["id"]
    fix = create(api, {"n": 1}, type="PrismQ.Script.Fix", priority=1)["id"]
    pattern = {"type_pattern": "PrismQ.Script.%"}
    assert claim(api, "w1", **pattern).data["id"] == fix
    assert claim(api, "w1", **pattern).data["id"] == gen
    assert claim(api, "w1", **pattern).status == 404
    assert claim(api, "w1", type_pattern="PrismQ.Video.Cut").data["id"] == video
    assert claim(api, "w1", type_pattern="Oth_r").data["id"] == other
    assert claim(api, "w1", type_pattern="%").status == 404


def test_claim_increments_attempts_on_each_claim(api_factory):
    api = api_factory(queue={"max_attempts": 5})
    register(api)
    task_id = create(api)["id"]
    for attempt in (1, 2, 3):
        assert claim(api, "w1").data["attempts"] == attempt
        assert complete(api, task_id, success=False, error="again").data["will_retry"] is True
    assert task(api, task_id)["attempts"] == 3


def test_claim_with_limit_returns_a_list(api):
    register(api)
    ids = [create(api, {"n": n})["id"] for n in range(5)]
    response = claim(api, "w1", limit=3)
    assert response.status == 200
    assert [t["id"] for t in response.data["tasks"]] == ids[:3]
    assert response.data["count"] == 3
    rest = claim(api, "w2", limit=10).data
    assert [t["id"] for t in rest["tasks"]] == ids[3:]
    empty = claim(api, "w3", limit=2)
    assert empty.status == 200 and empty.data["tasks"] == []


@pytest.mark.parametrize("body", [{}, {"worker_id": ""}, {"worker_id": "x" * 256}, {"worker_id": 5},
                                  {"worker_id": None}, {"worker_id": ["w"]}, {"worker_id": True},
                                  {"worker_id": "w", "type_pattern": 5},
                                  {"worker_id": "w", "type_pattern": ""},
                                  {"worker_id": "w", "limit": "2"}, {"worker_id": "w", "limit": 0},
                                  {"worker_id": "w", "lease_seconds": "60"},
                                  {"worker_id": "w", "lease_seconds": 0}])
def test_claim_bad_field_is_400_and_claims_nothing(api, body):
    register(api)
    create(api)
    before = snapshot(api)
    response = api.post("/tasks/claim", body)
    assert response.status == 400, response
    assert response.json["success"] is False
    assert snapshot(api) == before


def test_claim_accepts_worker_id_of_255_characters(api):
    register(api)
    create(api)
    assert claim(api, "w" * 255).status == 200


# -- leases ---------------------------------------------------------------------------
def test_expired_lease_is_reclaimed_and_attempts_are_bounded(api_factory):
    api = api_factory(queue={"max_attempts": 2})
    register(api)
    task_id = create(api)["id"]
    assert claim(api, "w1", lease_seconds=1).data["attempts"] == 1
    assert claim(api, "w2").status == 404  # live lease
    time.sleep(EXPIRE)
    again = claim(api, "w2", lease_seconds=1)
    assert again.status == 200
    assert again.data["id"] == task_id and again.data["attempts"] == 2
    assert task(api, task_id)["claimed_by"] == "w2"
    time.sleep(EXPIRE)
    assert claim(api, "w3").status == 404  # expired with no attempts left: failed
    final = task(api, task_id)
    assert final["status"] == "failed"
    assert final["attempts"] == 2
    assert final["error_message"] == "lease expired after 2 attempts"
    assert events(api, task_id) == ["created", "claimed", "lease_expired", "claimed",
                                    "lease_expired", "failed"]
    assert complete(api, task_id, "w2").status == 409
    assert task(api, task_id) == final


def test_type_claim_timeout_and_max_attempts_govern_expiry(api):
    register(api, "short", claim_timeout=1, max_attempts=1)
    register(api, "long")
    short = create(api, {"n": 1}, type="short", priority=9)["id"]
    long_ = create(api, {"n": 1}, type="long")["id"]
    assert claim(api, "w1").data["id"] == short
    assert claim(api, "w1").data["id"] == long_
    time.sleep(EXPIRE)
    assert claim(api, "w2").status == 404
    assert task(api, short)["status"] == "failed"
    assert task(api, short)["error_message"].startswith("lease expired after 1 attempt")
    assert task(api, long_)["status"] == "claimed"


def test_worker_whose_lease_expired_gets_409_and_changes_nothing(api):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1", lease_seconds=1)
    time.sleep(EXPIRE)
    # expired, not yet reclaimed
    before = snapshot(api)
    assert complete(api, task_id, "w1", result="late").status == 409
    assert progress(api, task_id, "w1").status == 409
    assert snapshot(api) == before
    # reclaimed by another worker: the first one still gets 409, not 403
    assert claim(api, "w2").data["id"] == task_id
    before = snapshot(api)
    for response in (complete(api, task_id, "w1", result="late"),
                     complete(api, task_id, "w1", success=False, error="late"),
                     progress(api, task_id, "w1", 90)):
        assert response.status == 409, response
        assert response.json["success"] is False
    assert snapshot(api) == before
    assert complete(api, task_id, "w2", result="on time").status == 200
    final = task(api, task_id)
    assert final["status"] == "completed" and final["result"] == "on time"
    assert final["claimed_by"] == "w2"


def test_progress_extends_the_lease(api_factory):
    api = api_factory(queue={"claim_timeout": 300})
    register(api)
    task_id = create(api)["id"]
    claimed = claim(api, "w1", lease_seconds=2).data
    response = progress(api, task_id, "w1", 10)
    assert response.status == 200
    assert _seconds(response.data["lease_expires_at"]) >= _seconds(claimed["lease_expires_at"]) + 290
    assert task(api, task_id)["lease_expires_at"] == response.data["lease_expires_at"]
    time.sleep(2.3)
    assert claim(api, "w2").status == 404
    assert complete(api, task_id, "w1").status == 200


# -- progress ---------------------------------------------------------------------------
def test_progress_records_value_and_message(api):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    response = progress(api, task_id, "w1", 42, message="crawling")
    assert response.status == 200
    assert response.data["progress"] == 42 and response.data["status"] == "claimed"
    stored = task(api, task_id)
    assert stored["progress"] == 42 and stored["status"] == "claimed"


def test_progress_unknown_task_is_404(api):
    assert progress(api, 987654).status == 404


def test_progress_on_unclaimed_task_is_409(api):
    register(api)
    task_id = create(api)["id"]
    before = snapshot(api)
    response = progress(api, task_id, "w1")
    assert response.status == 409 and response.json["success"] is False
    assert snapshot(api) == before


def test_progress_by_another_worker_is_403(api):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    before = snapshot(api)
    response = progress(api, task_id, "intruder")
    assert response.status == 403 and response.json["success"] is False
    assert snapshot(api) == before


def test_progress_after_completion_is_409(api):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    complete(api, task_id, "w1")
    assert progress(api, task_id, "w1").status == 409


@pytest.mark.parametrize("body", [
    {"progress": 50}, {"worker_id": "w1"}, {"worker_id": "w1", "progress": 101},
    {"worker_id": "w1", "progress": -1}, {"worker_id": "w1", "progress": "50"},
    {"worker_id": "w1", "progress": True}, {"worker_id": "w1", "progress": None},
    {"worker_id": 1, "progress": 50}, {"worker_id": "w1", "progress": 50, "message": 5},
    {"worker_id": "w1", "progress": 50, "message": {"m": 1}},
])
def test_progress_bad_field_is_400_and_changes_nothing(api, body):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    before = snapshot(api)
    response = api.post("/tasks/%d/progress" % task_id, body)
    assert response.status == 400, response
    assert snapshot(api) == before


# -- complete -----------------------------------------------------------------------------
def test_complete_success_stores_result(api):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    response = complete(api, task_id, "w1", result={"pages": [1, 2], "ok": True})
    assert response.status == 200
    assert response.data == {"id": task_id, "status": "completed", "attempts": 1, "will_retry": False}
    stored = task(api, task_id)
    assert stored["status"] == "completed" and stored["result"] == {"pages": [1, 2], "ok": True}
    assert stored["completed_at"].endswith("Z")


@pytest.mark.parametrize("result", [0, False, [], {}, "", 0.0, None, "text", -1, [0], {"a": None}])
def test_complete_stores_falsy_and_any_json_result_as_given(api, result):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    assert complete(api, task_id, "w1", result=result).status == 200
    stored = task(api, task_id)["result"]
    assert stored == result and type(stored) is type(result)


def test_complete_without_result_stores_null(api):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    assert complete(api, task_id, "w1").status == 200
    assert task(api, task_id)["result"] is None


def test_failure_with_attempts_left_goes_back_to_pending(api_factory):
    api = api_factory(queue={"max_attempts": 2})
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    response = complete(api, task_id, "w1", success=False, error="timeout upstream")
    assert response.status == 200
    assert response.data == {"id": task_id, "status": "pending", "attempts": 1, "will_retry": True}
    stored = task(api, task_id)
    assert stored["status"] == "pending" and stored["error_message"] == "timeout upstream"
    assert stored["lease_expires_at"] is None
    # the retry is claimable again, by anyone
    again = claim(api, "w2").data
    assert again["id"] == task_id and again["attempts"] == 2
    final = complete(api, task_id, "w2", success=False, error="still broken")
    assert final.data == {"id": task_id, "status": "failed", "attempts": 2, "will_retry": False}
    stored = task(api, task_id)
    assert stored["status"] == "failed" and stored["error_message"] == "still broken"
    assert stored["completed_at"].endswith("Z")
    assert claim(api, "w3").status == 404


def test_failure_without_error_message_gets_a_default(api_factory):
    api = api_factory(queue={"max_attempts": 1})
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    assert complete(api, task_id, "w1", success=False).data["status"] == "failed"
    assert task(api, task_id)["error_message"]


def test_complete_unknown_task_is_404(api):
    assert complete(api, 987654).status == 404


def test_complete_unclaimed_task_is_409_and_changes_nothing(api):
    register(api)
    task_id = create(api)["id"]
    before = snapshot(api)
    response = complete(api, task_id, "w1")
    assert response.status == 409 and response.json["success"] is False
    assert snapshot(api) == before


def test_complete_task_claimed_by_another_worker_is_403(api):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    before = snapshot(api)
    response = complete(api, task_id, "intruder", result="stolen")
    assert response.status == 403 and response.json["success"] is False
    assert snapshot(api) == before
    assert complete(api, task_id, "w1").status == 200


def test_complete_twice_is_409_and_keeps_first_result(api):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    assert complete(api, task_id, "w1", result="first").status == 200
    before = snapshot(api)
    assert complete(api, task_id, "w1", result="second").status == 409
    assert complete(api, task_id, "w1", success=False, error="x").status == 409
    assert snapshot(api) == before


@pytest.mark.parametrize("body", [
    {"worker_id": "w1"}, {"worker_id": "w1", "success": "true"}, {"worker_id": "w1", "success": 1},
    {"worker_id": "w1", "success": 0}, {"worker_id": "w1", "success": None},
    {"worker_id": "w1", "success": "false", "error": "x"},
    {"worker_id": 12, "success": True}, {"success": True},
    {"worker_id": "w1", "success": False, "error": 5},
    {"worker_id": "w1", "success": False, "error": ["boom"]},
])
def test_complete_bad_field_is_400_and_changes_nothing(api, body):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    before = snapshot(api)
    response = api.post("/tasks/%d/complete" % task_id, body)
    assert response.status == 400, response
    assert response.json["success"] is False
    assert snapshot(api) == before


# -- task_types, and a claim never ignores a field ---------------------------------
def _pipelines(api):
    """Three types; the other pipeline's task has the highest priority."""
    for name in ("PrismQ.YouTube.Fetch", "PrismQ.YouTube.Parse", "PrismQ.Script.Gen"):
        register(api, name)
    other = create(api, type="PrismQ.Script.Gen", priority=9)["id"]
    mine = create(api, type="PrismQ.YouTube.Parse")["id"]
    return other, mine


def test_task_types_claims_only_the_named_types(api):
    other, mine = _pipelines(api)
    got = claim(api, task_types=["PrismQ.YouTube.Fetch", "PrismQ.YouTube.Parse"])
    assert got.status == 200 and got.data["id"] == mine
    nothing = claim(api, task_types=["PrismQ.YouTube.Fetch", "PrismQ.YouTube.Parse"])
    assert nothing.status == 404
    assert task(api, other)["status"] == "pending"


def test_task_types_works_with_limit_pattern_and_type_id_together(api):
    other, mine = _pipelines(api)
    both = claim(api, task_types=["PrismQ.Script.Gen", "PrismQ.YouTube.Parse"], limit=5)
    assert sorted(t["id"] for t in both.data["tasks"]) == sorted([other, mine])
    register(api, "PrismQ.Audio.Mix")
    mix = create(api, type="PrismQ.Audio.Mix")["id"]
    mix_id = api.get("/task-types/PrismQ.Audio.Mix").data["id"]
    assert claim(api, task_types=["PrismQ.Audio.Mix"], type_pattern="PrismQ.YouTube.%").status == 404
    assert claim(api, task_types=["PrismQ.Script.Gen"], task_type_id=mix_id).status == 404
    assert claim(api, task_types=["PrismQ.Audio.Mix"], task_type_id=mix_id).data["id"] == mix


def test_task_types_of_unknown_names_claims_nothing(api):
    other, mine = _pipelines(api)
    before = snapshot(api)
    assert claim(api, task_types=["No.Such.Type"]).status == 404
    assert snapshot(api) == before


def test_task_types_passes_over_a_paused_type_it_names(api_factory):
    api = api_factory(api={"api_key": "admin-k"})
    headers = {"X-API-Key": "admin-k"}

    class Keyed:
        def post(self, path, body=None):
            return api.post(path, body, headers=headers)

        def get(self, path, **kw):
            return api.get(path, headers=headers, **kw)

    keyed = Keyed()
    other, mine = _pipelines(keyed)
    paused = create(keyed, type="PrismQ.YouTube.Fetch", priority=5)["id"]
    assert keyed.post("/task-types/PrismQ.YouTube.Fetch/pause").status == 200
    got = claim(keyed, task_types=["PrismQ.YouTube.Fetch", "PrismQ.YouTube.Parse"], limit=5)
    assert [t["id"] for t in got.data["tasks"]] == [mine]
    assert task(keyed, paused)["status"] == "pending" and task(keyed, other)["status"] == "pending"


@pytest.mark.parametrize("value, why", [([], "array of 1 to 100"), ("PrismQ.YouTube.Parse", "array"),
                                        ([5], "must be a string"), (["has space"], "1-255 characters"),
                                        (["x"] * 101, "array of 1 to 100")])
def test_bad_task_types_is_400_naming_it_and_claims_nothing(api, value, why):
    _pipelines(api)
    before = snapshot(api)
    response = claim(api, task_types=value)
    assert response.status == 400, response
    assert "task_types" in response.error and why in response.error
    assert snapshot(api) == before


@pytest.mark.parametrize("field", ["type", "types", "taskTypes", "task_type", "typePattern",
                                   "type_patterns", "priority", "timeout"])
def test_a_claim_field_taskq_does_not_know_is_400_naming_it_and_claims_nothing(api, field):
    _pipelines(api)
    before = snapshot(api)
    response = claim(api, **{field: "PrismQ.YouTube.%"})
    assert response.status == 400, response
    assert "Unknown field %r" % field in response.error
    assert snapshot(api) == before


def test_other_write_routes_ignore_fields_they_do_not_know(api):
    register(api, extra_field="kept by PHP clients")
    created = create(api, unknown="x")
    claimed = claim(api)
    assert claimed.status == 200
    done = complete(api, created["id"], note="ignored")
    assert done.status == 200, done


def test_task_types_through_cgi(backend_config):
    from cgi_runner import run_cgi

    path = backend_config.path
    for name in ("cgi.mine", "cgi.other"):
        assert run_cgi("POST", "/task-types/register", {"name": name, "version": "1",
                                                        "param_schema": {}},
                       config_path=path).status == 201
    run_cgi("POST", "/tasks", {"type": "cgi.other", "params": {}, "priority": 9}, config_path=path)
    mine = run_cgi("POST", "/tasks", {"type": "cgi.mine", "params": {}}, config_path=path).data["id"]
    got = run_cgi("POST", "/tasks/claim", {"worker_id": "w", "task_types": ["cgi.mine"]},
                  config_path=path)
    assert got.status == 200 and got.data["id"] == mine
    refused = run_cgi("POST", "/tasks/claim", {"worker_id": "w", "task_typess": ["cgi.mine"]},
                      config_path=path)
    assert refused.status == 400 and "task_typess" in refused.json["error"]
