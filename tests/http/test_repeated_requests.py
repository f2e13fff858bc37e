"""Requests a worker repeats because their answer was lost (issue 8, item 4).

A claim repeated with its `request_key` answers the tasks the first claim
handed out, while their leases live, and claims nothing new; a complete
repeated by the worker that made it answers the earlier outcome, not 409.
Both backends, and on MariaDB both claim paths (SKIP LOCKED and portable).
"""

import time

import pytest

from conftest import claim, create, register, snapshot

CLAIM_PATHS = ["auto", "off"]  # [database] skip_locked: SKIP LOCKED where the server has it; portable


def complete(api, task_id, worker_id="w1", **body):
    body.setdefault("success", True)
    body["worker_id"] = worker_id
    return api.post("/tasks/%d/complete" % task_id, body)


def events(api, task_id):
    return [e["event"] for e in api.get("/tasks/%d/history" % task_id).data["events"]]


@pytest.fixture(params=CLAIM_PATHS)
def keyed_api(api_factory, request):
    api = api_factory(database={"skip_locked": request.param})
    register(api)
    return api


def test_claim_repeated_with_its_request_key_answers_the_same_task(keyed_api):
    api = keyed_api
    first_id, second_id = create(api, {"n": 1})["id"], create(api, {"n": 2})["id"]
    first = claim(api, "w1", request_key="k-1")
    assert first.status == 200 and first.data["id"] == first_id
    again = claim(api, "w1", request_key="k-1")
    assert again.status == 200
    assert again.data == first.data  # same task, same attempt, same lease
    task = api.get("/tasks/%d" % first_id).data
    assert (task["attempts"], task["claimed_by"]) == (1, "w1")
    assert api.get("/tasks/%d" % second_id).data["status"] == "pending"
    assert events(api, first_id) == ["created", "claimed"]
    # a new key is a new claim
    assert claim(api, "w1", request_key="k-2").data["id"] == second_id


def test_batch_claim_repeated_with_its_request_key_answers_the_same_tasks(keyed_api):
    api = keyed_api
    ids = [create(api, {"n": n})["id"] for n in range(5)]
    first = api.post("/tasks/claim", {"worker_id": "w1", "limit": 3, "request_key": "batch-1"})
    assert [t["id"] for t in first.data["tasks"]] == ids[:3]
    again = api.post("/tasks/claim", {"worker_id": "w1", "limit": 3, "request_key": "batch-1"})
    assert again.data == first.data
    statuses = [api.get("/tasks/%d" % i).data["status"] for i in ids]
    assert statuses == ["claimed"] * 3 + ["pending"] * 2


def test_request_key_of_an_empty_claim_stays_empty_when_repeated(keyed_api):
    """The first claim may arrive after its resend was answered "nothing" (the
    resend overtook it): it must not claim then, or its task waits out a lease."""
    api = keyed_api
    assert claim(api, "w1", request_key="k-empty").status == 404
    task_id = create(api)["id"]
    assert claim(api, "w1", request_key="k-empty").status == 404
    assert api.get("/tasks/%d" % task_id).data["status"] == "pending"
    assert claim(api, "w1", request_key="k-next").data["id"] == task_id


def test_an_empty_keyed_claim_is_remembered_for_the_window_only(keyed_api):
    """One small row per empty keyed claim, deleted once CLAIM_KEY_WINDOW has
    passed (a day of them was ~190 MB at 6 workers polling every 2 s)."""
    from conftest import db_execute
    from taskq.store.base import CLAIM_KEY_WINDOW

    api = keyed_api
    config = api.app.config
    assert claim(api, "w1", request_key="k-old").status == 404
    assert claim(api, "w1", request_key="k-new").status == 404
    assert db_execute(config, "SELECT COUNT(*) FROM taskq_claim_requests")[0][0] == 2
    if config.backend == "sqlite":
        db_execute(config, "UPDATE taskq_claim_requests SET created_at = created_at - %d "
                           "WHERE request = 'w1/k-old'" % ((CLAIM_KEY_WINDOW + 5) * 1000))
    else:
        db_execute(config, "UPDATE taskq_claim_requests SET created_at = created_at - INTERVAL %d "
                           "SECOND WHERE request_hash = SHA1('w1/k-old')" % (CLAIM_KEY_WINDOW + 5))
    assert api.post("/admin/purge", {}).data["deleted"]["claim_requests"] == 1
    assert db_execute(config, "SELECT COUNT(*) FROM taskq_claim_requests")[0][0] == 1
    task_id = create(api)["id"]
    assert claim(api, "w1", request_key="k-new").status == 404  # still remembered
    assert claim(api, "w1", request_key="k-old").data["id"] == task_id  # forgotten: claims


def test_a_keyed_claim_that_waited_past_half_the_window_claims_nothing(keyed_api):
    """Its resend may have been answered empty longer ago than that answer is
    kept, so it must not claim: 503, the task stays pending, and the resend
    (a new request) claims it."""
    from taskq.app import Context
    from taskq.store.base import CLAIM_KEY_WINDOW

    api = keyed_api
    task_id = create(api)["id"]
    arrived = Context.__init__

    def long_ago(self, *args, **kwargs):
        arrived(self, *args, **kwargs)
        self.started -= CLAIM_KEY_WINDOW / 2 + 1

    Context.__init__ = long_ago
    try:
        late = claim(api, "w1", request_key="k-late")
    finally:
        Context.__init__ = arrived
    assert late.status == 503 and "same request_key" in late.json["error"]
    task = api.get("/tasks/%d" % task_id).data
    assert (task["status"], task["attempts"]) == ("pending", 0)
    assert events(api, task_id) == ["created"]
    assert claim(api, "w1", request_key="k-late").data["id"] == task_id


def test_request_key_answers_only_its_own_worker(keyed_api):
    api = keyed_api
    ids = [create(api, {"n": n})["id"] for n in range(2)]
    assert claim(api, "w1", request_key="shared").data["id"] == ids[0]
    assert claim(api, "w2", request_key="shared").data["id"] == ids[1]
    assert claim(api, "w2", request_key="shared").data["id"] == ids[1]


def test_request_key_whose_lease_expired_claims_anew(keyed_api):
    api = keyed_api
    task_id = create(api)["id"]
    assert claim(api, "w1", request_key="k-lapse", lease_seconds=1).data["attempts"] == 1
    time.sleep(1.3)
    again = claim(api, "w1", request_key="k-lapse")
    assert again.data["id"] == task_id and again.data["attempts"] == 2


def test_request_key_after_the_task_was_completed_claims_the_next(keyed_api):
    api = keyed_api
    ids = [create(api, {"n": n})["id"] for n in range(2)]
    assert claim(api, "w1", request_key="k-done").data["id"] == ids[0]
    assert complete(api, ids[0]).status == 200
    assert claim(api, "w1", request_key="k-done").data["id"] == ids[1]


@pytest.mark.parametrize("key", ["", "has space", "x" * 129, 7, ["k"], "caf\u00e9"])
def test_bad_request_key_is_400_naming_it_and_changes_nothing(api, key):
    register(api)
    create(api)
    before = snapshot(api)
    response = claim(api, "w1", request_key=key)
    assert response.status == 400 and "request_key" in response.error
    assert snapshot(api) == before


def test_complete_repeated_by_its_worker_answers_the_same_outcome(api):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    first = complete(api, task_id, result={"ok": 1})
    assert first.status == 200 and first.data["status"] == "completed"
    before = snapshot(api)
    again = complete(api, task_id, result={"ok": 1})
    assert (again.status, again.data) == (200, first.data)
    assert snapshot(api) == before
    assert events(api, task_id) == ["created", "claimed", "completed"]


def test_complete_repeated_by_another_worker_or_with_another_result_is_still_refused(api):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    assert complete(api, task_id, result=1).status == 200
    before = snapshot(api)
    assert complete(api, task_id, "w2", result=1).status == 409
    assert complete(api, task_id, result=2).status == 409
    assert complete(api, task_id, success=False, error="boom").status == 409
    assert snapshot(api) == before


def test_failure_repeated_answers_will_retry_even_after_another_worker_claimed_it(api):
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    first = complete(api, task_id, success=False, error="flaky")
    assert first.data == {"id": task_id, "status": "pending", "attempts": 1, "will_retry": True}
    assert claim(api, "w2").data["id"] == task_id
    before = snapshot(api)
    again = complete(api, task_id, success=False, error="flaky")
    assert (again.status, again.data) == (200, first.data)
    assert snapshot(api) == before  # w2 still holds it, untouched
    # w2 finishing is a new outcome; w1's old one no longer repeats
    assert complete(api, task_id, "w2", result="done").data["status"] == "completed"
    assert complete(api, task_id, success=False, error="flaky").status == 409


def test_final_failure_repeated_answers_failed(api_factory):
    api = api_factory(queue={"max_attempts": "1"})
    register(api)
    task_id = create(api)["id"]
    claim(api, "w1")
    first = complete(api, task_id, success=False, error="fatal")
    assert first.data["status"] == "failed"
    assert complete(api, task_id, success=False, error="fatal").data == first.data


def test_batch_complete_repeated_answers_the_same_results(api):
    register(api)
    ids = [create(api, {"n": n})["id"] for n in range(3)]
    api.post("/tasks/claim", {"worker_id": "w1", "limit": 3})
    body = {"worker_id": "w1", "results": [
        {"id": ids[0], "success": True, "result": "a"},
        {"id": ids[1], "success": False, "error": "e"},
        {"id": ids[2], "success": True}]}
    first = api.post("/tasks/complete", body)
    assert first.data["completed"] == 3
    before = snapshot(api)
    again = api.post("/tasks/complete", body)
    assert again.status == 200 and again.data == first.data
    assert snapshot(api) == before
