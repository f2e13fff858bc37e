"""Later tasks and backoff (issue 9 items 1-2) together with limits, pause and
steering (items 3-4), on SQLite and on MariaDB: a `scheduled` task is steered
like a pending one, and the claim both promotes due tasks and passes over
paused and full types."""

import pytest

from conftest import claim, create, db_execute, register, snapshot
from test_api_later import backdate, fail, later, task  # noqa: F401 - `later` is a fixture


def settings(api, name="demo", **body):
    return api.post("/task-types/%s/settings" % name, body)


def expire_leases(config):
    db_execute(config, "UPDATE tasks SET lease_expires_at = ? WHERE status = 'claimed'",
               (0 if config.backend == "sqlite" else "2000-01-01 00:00:00",))


def test_cancel_a_scheduled_task_so_it_is_never_promoted_or_claimed(later):
    api, config = later
    register(api)
    created = create(api, {"n": 1}, delay_seconds=3600)
    response = api.post("/tasks/%d/cancel" % created["id"])
    assert response.status == 200
    assert (response.data["status"], response.data["previous_status"]) == ("cancelled", "scheduled")
    backdate(config, "tasks", "run_at", created["id"])  # its time comes: still nothing to claim
    assert claim(api).status == 404
    assert task(api, created["id"])["status"] == "cancelled"
    history = api.get("/tasks/%d/history" % created["id"]).data["events"]
    assert [(e["event"], e["message"]) for e in history][-1] == ("cancelled", "cancelled while scheduled")
    again = api.post("/tasks/%d/retry" % created["id"])  # a cancelled task may run again: now
    assert again.status == 200 and again.data["status"] == "pending"
    assert claim(api).data["id"] == created["id"]


def test_cancel_a_retry_waiting_its_backoff(later):
    api, config = later
    register(api, retry_delay_seconds=600)
    created = create(api)
    claim(api)
    assert fail(api, created["id"]).data["status"] == "scheduled"
    response = api.post("/tasks/%d/cancel" % created["id"])
    assert response.data["previous_status"] == "scheduled"
    backdate(config, "tasks", "run_at", created["id"])
    assert claim(api).status == 404


def test_bulk_cancel_accepts_scheduled_and_takes_only_what_the_filter_names(later):
    api, _ = later
    register(api)
    waiting = [create(api, {"n": n}, delay_seconds=3600)["id"] for n in range(3)]
    ready = create(api, {"n": 9})["id"]
    outcome = api.post("/tasks/bulk/cancel", {"filter": {"status": "scheduled"}})
    assert outcome.status == 200, outcome
    assert (outcome.data["changed"], outcome.data["ids"]) == (3, waiting)
    assert task(api, ready)["status"] == "pending"
    everything = api.post("/tasks/bulk/cancel", {"filter": {}}).data
    assert everything["ids"] == [ready]


def test_bulk_retry_refuses_scheduled_naming_the_field_and_changes_nothing(later):
    api, _ = later
    register(api)
    create(api, {"n": 1}, delay_seconds=3600)
    before = snapshot(api)
    response = api.post("/tasks/bulk/retry", {"filter": {"status": "scheduled"}})
    assert response.status == 400 and "filter.status" in response.error
    assert snapshot(api) == before


def test_list_filters_accept_scheduled_and_cancelled(later):
    api, _ = later
    register(api)
    create(api, {"n": 1}, delay_seconds=3600)
    gone = create(api, {"n": 2})
    api.post("/tasks/%d/cancel" % gone["id"])
    assert api.get("/tasks", query="status=scheduled").json["pagination"]["total"] == 1
    assert api.get("/tasks", query="status=cancelled").json["pagination"]["total"] == 1
    bad = api.get("/tasks", query="status=later")
    assert bad.status == 400 and "scheduled" in bad.error and "cancelled" in bad.error


def test_a_claim_promotes_due_tasks_of_a_paused_type_but_hands_out_only_other_types(later):
    api, config = later
    register(api, "paused")
    register(api, "free")
    api.post("/task-types/paused/pause")
    held = create(api, {"n": 1}, type="paused", delay_seconds=3600, priority=10)
    other = create(api, {"n": 1}, type="free", delay_seconds=3600)
    backdate(config, "tasks", "run_at", held["id"])
    backdate(config, "tasks", "run_at", other["id"])
    response = claim(api, limit=10)
    assert [t["id"] for t in response.data["tasks"]] == [other["id"]]
    assert task(api, held["id"])["status"] == "pending"  # promoted, waiting for resume
    api.post("/task-types/paused/resume")
    assert claim(api).data["id"] == held["id"]


def test_a_claim_promotes_due_tasks_of_a_limited_type_up_to_its_limit(later):
    api, config = later
    register(api, "limited")
    settings(api, "limited", max_concurrency=2)
    ids = [create(api, {"n": n}, type="limited", delay_seconds=3600)["id"] for n in range(4)]
    for task_id in ids:
        backdate(config, "tasks", "run_at", task_id)
    assert len(claim(api, limit=10).data["tasks"]) == 2
    assert claim(api, "w2").status == 404
    assert sorted(t["status"] for t in (task(api, i) for i in ids)) == ["claimed"] * 2 + ["pending"] * 2


def test_an_expired_lease_of_a_limited_type_waits_its_backoff_and_frees_its_slot(later):
    api, config = later
    register(api, "limited", retry_delay_seconds=600)
    settings(api, "limited", max_concurrency=1)
    first = create(api, {"n": 1}, type="limited")
    second = create(api, {"n": 2}, type="limited")
    assert claim(api, "w1").data["id"] == first["id"]
    assert claim(api, "w2").status == 404  # full
    expire_leases(config)
    assert claim(api, "w2").data["id"] == second["id"]
    waiting = task(api, first["id"])
    assert waiting["status"] == "scheduled" and waiting["run_at"]
    history = api.get("/tasks/%d/history" % first["id"]).data["events"]
    assert history[-1]["event"] == "lease_expired" and "retry in 600 s" in history[-1]["message"]


def test_an_active_scope_task_keeps_its_key_while_it_waits_to_retry(later):
    api, config = later
    register(api, max_attempts=2, retry_delay_seconds=600)
    settings(api, dedupe_scope="active")
    created = create(api, {"n": 1})
    claim(api)
    assert fail(api, created["id"]).data["status"] == "scheduled"
    again = create(api, {"n": 1})
    assert again["deduplicated"] is True and again["id"] == created["id"]
    backdate(config, "tasks", "run_at", created["id"])
    claim(api)
    assert fail(api, created["id"]).data["status"] == "failed"  # last attempt: the key is released
    fresh = create(api, {"n": 1})
    assert fresh["deduplicated"] is False and fresh["id"] != created["id"]


@pytest.mark.parametrize("delay", [{"delay_seconds": 3600}, {}])
def test_a_worker_of_a_cancelled_scheduled_or_pending_task_never_gets_it(later, delay):
    api, _ = later
    register(api)
    created = create(api, {"n": 1}, **delay)
    api.post("/tasks/%d/cancel" % created["id"])
    done = api.post("/tasks/%d/complete" % created["id"], {"worker_id": "w1", "success": True})
    assert done.status == 409 and "cancelled" in done.error


def test_results_carried_by_a_claim_keep_their_retry_after_seconds(later):
    api, _ = later
    register(api)
    first = create(api, {"n": 1})
    claim(api)
    response = claim(api, results=[{"id": first["id"], "success": False, "error": "429",
                                    "retry_after_seconds": 120}])
    assert response.status == 200, response
    (outcome,) = response.data["results"]
    assert (outcome["status"], outcome["retry_delay_seconds"]) == ("scheduled", 120)
    assert response.data["tasks"] == []  # waiting out its delay, not handed out again
    assert task(api, first["id"])["status"] == "scheduled"


def test_a_repeated_failing_complete_that_went_to_backoff_answers_its_earlier_outcome(later):
    api, _ = later
    register(api, retry_delay_seconds=600)
    created = create(api)
    claim(api)
    first = fail(api, created["id"])
    assert first.status == 200 and first.data["status"] == "scheduled"
    again = fail(api, created["id"])  # its answer was lost: the worker sends it again
    assert again.status == 200, again
    assert (again.data["status"], again.data["will_retry"]) == ("scheduled", True)
    assert [e["event"] for e in api.get("/tasks/%d/history" % created["id"]).data["events"]] == [
        "created", "claimed", "retry"]
