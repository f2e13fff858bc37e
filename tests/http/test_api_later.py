"""Tasks that run later, retry backoff, recurring schedules. On SQLite and on MariaDB.

Instead of sleeping until a time comes, tests move the stored time into the
past (`backdate`): what is asserted is that claims judge "due" by the stored
time against the database clock.
"""

import pytest

from conftest import claim, create, db_execute, register, snapshot


def backdate(config, table, column, row_id, seconds=None):
    """Move a stored time into the past: `seconds` before now, or to the year 2000."""
    if config.backend == "sqlite":
        if seconds is None:
            value = 946684800000
            db_execute(config, "UPDATE %s SET %s = ? WHERE id = ?" % (table, column), (value, row_id))
        else:
            db_execute(config, "UPDATE %s SET %s = CAST(strftime('%%s','now') AS INTEGER) * 1000 - ?"
                       " WHERE id = ?" % (table, column), (seconds * 1000, row_id))
    elif seconds is None:
        db_execute(config, "UPDATE %s SET %s = '2000-01-01 00:00:00' WHERE id = ?" % (table, column),
                   (row_id,))
    else:
        db_execute(config, "UPDATE %s SET %s = UTC_TIMESTAMP() - INTERVAL ? SECOND WHERE id = ?"
                   % (table, column), (seconds, row_id))


def task(api, task_id):
    return api.get("/tasks/%d" % task_id).data


def fail(api, task_id, worker_id="w1", **body):
    body.update(worker_id=worker_id, success=False)
    body.setdefault("error", "API rate limit exceeded")
    return api.post("/tasks/%d/complete" % task_id, body)


@pytest.fixture
def later(api_factory, config_factory):
    """(api, config) on one fresh store."""
    config = config_factory()
    from conftest import ApiClient
    from taskq.app import Application

    return ApiClient(Application(config=config)), config


# -- run_at / delay_seconds ----------------------------------------------------------
def test_task_with_delay_is_scheduled_and_not_claimed_before_its_time(later):
    api, config = later
    register(api)
    created = create(api, {"n": 1}, delay_seconds=3600)
    assert created["status"] == "scheduled" and created["run_at"]
    assert claim(api).status == 404
    assert claim(api, limit=10).data["tasks"] == []
    assert task(api, created["id"])["status"] == "scheduled"
    backdate(config, "tasks", "run_at", created["id"])
    claimed = claim(api)
    assert claimed.status == 200 and claimed.data["id"] == created["id"]


def test_task_with_future_run_at_waits_and_offsets_are_converted_to_utc(later):
    api, config = later
    register(api)
    created = create(api, {"n": 1}, run_at="2990-06-01T12:00:00+02:00")
    assert created["status"] == "scheduled"
    assert task(api, created["id"])["run_at"] == "2990-06-01T10:00:00Z"
    naive = create(api, {"n": 2}, run_at="2990-06-01T12:00:00")
    assert task(api, naive["id"])["run_at"] == "2990-06-01T12:00:00Z"  # no offset = UTC
    assert claim(api).status == 404


def test_run_at_in_the_past_is_pending_at_once(api):
    register(api)
    created = create(api, {"n": 1}, run_at="2001-01-01T00:00:00Z")
    assert created["status"] == "pending"
    assert claim(api).data["id"] == created["id"]


def test_due_scheduled_tasks_are_claimed_by_priority_among_pending_ones(later):
    api, config = later
    register(api)
    low = create(api, {"n": 1}, priority=1)
    high = create(api, {"n": 2}, priority=9, delay_seconds=600)
    backdate(config, "tasks", "run_at", high["id"])
    assert [t["id"] for t in claim(api, limit=5).data["tasks"]] == [high["id"], low["id"]]


@pytest.mark.parametrize("extra, field", [
    ({"run_at": "2030-01-01T00:00:00Z", "delay_seconds": 5}, "delay_seconds"),
    ({"run_at": "tomorrow"}, "run_at"),
    ({"run_at": "2030-02-30T00:00:00Z"}, "run_at"),
    ({"run_at": 1767225600}, "run_at"),
    ({"delay_seconds": -1}, "delay_seconds"),
    ({"delay_seconds": "60"}, "delay_seconds"),
    ({"delay_seconds": 10 ** 10}, "delay_seconds"),
])
def test_bad_run_at_or_delay_is_400_naming_the_field_and_creates_nothing(api, extra, field):
    register(api)
    before = snapshot(api)
    body = {"type": "demo", "params": {"n": 1}}
    body.update(extra)
    response = api.post("/tasks", body)
    assert response.status == 400 and field in response.error, response
    assert snapshot(api) == before


def test_batch_create_takes_run_at_per_item_and_reports_bad_items(api):
    register(api)
    response = api.post("/tasks", {"tasks": [
        {"type": "demo", "params": {"n": 1}, "delay_seconds": 600},
        {"type": "demo", "params": {"n": 2}},
        {"type": "demo", "params": {"n": 3}, "run_at": "soon"}]})
    results = response.data["results"]
    assert [r.get("status") for r in results[:2]] == ["scheduled", "pending"]
    assert results[2]["ok"] is False and results[2]["status"] == 400 and "run_at" in results[2]["error"]
    assert claim(api, limit=10).data["count"] == 1


def test_list_tasks_filters_scheduled(api):
    register(api)
    created = create(api, {"n": 1}, delay_seconds=600)
    create(api, {"n": 2})
    listed = api.get("/tasks", query="status=scheduled").data
    assert [t["id"] for t in listed] == [created["id"]]



@pytest.mark.parametrize("sort_by,sort_order", [("priority", "DESC"), ("priority", "ASC"),
                                                ("attempts", "DESC"), ("id", "ASC"),
                                                ("created_at", "DESC")])
def test_every_claim_order_and_the_type_filter_promote_due_tasks(later, sort_by, sort_order):
    api, config = later
    kind = register(api)
    due = create(api, {"n": 1}, delay_seconds=3600)
    waiting = create(api, {"n": 2}, delay_seconds=3600)
    backdate(config, "tasks", "run_at", due["id"])
    body = {"sort_by": sort_by, "sort_order": sort_order, "task_type_id": kind["id"]}
    claimed = claim(api, **body)
    assert claimed.status == 200 and claimed.data["id"] == due["id"], claimed
    assert claim(api, **body).status == 404  # the other is not due yet
    assert task(api, waiting["id"])["status"] == "scheduled"

# -- retry backoff ---------------------------------------------------------------------
def test_failed_attempt_waits_the_types_fixed_delay(later):
    api, config = later
    register(api, retry_delay_seconds=300)
    created = create(api)
    claim(api)
    outcome = fail(api, created["id"]).data
    assert outcome["status"] == "scheduled" and outcome["will_retry"] is True
    assert outcome["retry_delay_seconds"] == 300
    assert claim(api).status == 404
    backdate(config, "tasks", "run_at", created["id"])
    again = claim(api)
    assert again.data["id"] == created["id"] and again.data["attempts"] == 2


def test_exponential_backoff_doubles_per_attempt_up_to_the_maximum(later):
    api, config = later
    register(api, max_attempts=5, retry_delay_seconds=10, retry_backoff="exponential",
             retry_max_delay_seconds=25)
    created = create(api)
    delays = []
    for _ in range(3):
        assert claim(api).data["id"] == created["id"]
        delays.append(fail(api, created["id"]).data["retry_delay_seconds"])
        backdate(config, "tasks", "run_at", created["id"])
    assert delays == [10, 20, 25]


def test_jitter_keeps_the_delay_within_its_fraction(later):
    api, config = later
    register(api, max_attempts=50, retry_delay_seconds=100, retry_jitter=0.2)
    created = create(api)
    delays = set()
    for _ in range(12):
        claim(api)
        delays.add(fail(api, created["id"]).data["retry_delay_seconds"])
        backdate(config, "tasks", "run_at", created["id"])
    assert all(80 <= d <= 120 for d in delays) and len(delays) > 1, delays


def test_type_without_backoff_retries_at_once(api):
    register(api)
    created = create(api)
    claim(api)
    outcome = fail(api, created["id"]).data
    assert outcome["status"] == "pending" and "retry_delay_seconds" not in outcome
    assert claim(api).data["id"] == created["id"]


def test_worker_retry_after_overrides_the_backoff_single_and_batch(later):
    api, config = later
    register(api, retry_delay_seconds=5)
    one, two = create(api, {"n": 1}), create(api, {"n": 2})
    claim(api, limit=2)
    assert fail(api, one["id"], retry_after_seconds=3600).data["retry_delay_seconds"] == 3600
    batch = api.post("/tasks/complete", {"worker_id": "w1", "results": [
        {"id": two["id"], "success": False, "error": "429", "retry_after_seconds": 0}]}).data
    assert batch["results"][0]["status"] == "pending"  # 0 = retry at once
    assert claim(api, limit=5).data["tasks"][0]["id"] == two["id"]


@pytest.mark.parametrize("body", [{"success": False, "retry_after_seconds": -1},
                                  {"success": False, "retry_after_seconds": 10 ** 9},
                                  {"success": False, "retry_after_seconds": "60"},
                                  {"success": True, "retry_after_seconds": 60}])
def test_bad_retry_after_is_400_and_changes_nothing(api, body):
    register(api)
    created = create(api)
    claim(api)
    before = snapshot(api)
    body.update(worker_id="w1")
    response = api.post("/tasks/%d/complete" % created["id"], body)
    assert response.status == 400 and "retry_after_seconds" in response.error
    assert snapshot(api) == before


def test_expired_lease_is_retried_after_the_backoff(later):
    api, config = later
    register(api, retry_delay_seconds=600)
    created = create(api)
    claim(api, lease_seconds=60)
    backdate(config, "tasks", "lease_expires_at", created["id"], seconds=5)
    assert claim(api, "w2").status == 404  # the lease ran out, the retry is not due yet
    assert task(api, created["id"])["status"] == "scheduled"
    backdate(config, "tasks", "run_at", created["id"])
    assert claim(api, "w2").data["attempts"] == 2


@pytest.mark.parametrize("extra, field", [({"retry_backoff": "linear"}, "retry_backoff"),
                                          ({"retry_jitter": 1.5}, "retry_jitter"),
                                          ({"retry_delay_seconds": -5}, "retry_delay_seconds"),
                                          ({"retry_max_delay_seconds": 0}, "retry_max_delay_seconds")])
def test_bad_retry_setting_is_400_naming_it(api, extra, field):
    body = {"name": "demo", "version": "1", "param_schema": {"type": "object"}}
    body.update(extra)
    response = api.post("/task-types/register", body)
    assert response.status == 400 and field in response.error
    assert api.get("/task-types").data == []


def test_type_shows_its_retry_settings(api):
    register(api, retry_delay_seconds=30, retry_backoff="exponential", retry_jitter=0.1)
    shown = api.get("/task-types/demo").data
    assert (shown["retry_delay_seconds"], shown["retry_backoff"], shown["retry_max_delay_seconds"],
            shown["retry_jitter"]) == (30, "exponential", None, 0.1)


# -- schedules ---------------------------------------------------------------------------
def schedule(api, **body):
    body.setdefault("type", "demo")
    body.setdefault("params", {"n": 1})
    response = api.post("/schedules", body)
    assert response.status == 201, response
    return response.data


def schedule_tasks(api):
    return sorted(api.get("/tasks", query="limit=1000").data, key=lambda t: t["id"])


def test_due_schedule_makes_one_task_that_the_claim_hands_out(later):
    api, config = later
    register(api)
    made = schedule(api, every_seconds=3600, params={"n": 5}, priority=2)
    assert made["next_run_at"] and made["paused"] is False
    assert claim(api).status == 404
    backdate(config, "task_schedules", "next_run_at", made["id"], seconds=10)
    claimed = claim(api)
    assert claimed.status == 200 and claimed.data["params"] == {"n": 5}
    assert claimed.data["priority"] == 2
    assert claim(api).status == 404  # that occurrence is made once
    shown = api.get("/schedules/%d" % made["id"]).data
    assert shown["last_task_id"] == claimed.data["id"] and shown["next_run_at"] > shown["last_run_at"]


def test_missed_day_makes_one_task_with_catch_up_latest(later):
    api, config = later
    register(api)
    made = schedule(api, every_seconds=60)
    backdate(config, "task_schedules", "next_run_at", made["id"], seconds=86400)
    claim(api, limit=100)
    assert len(schedule_tasks(api)) == 1


def test_missed_day_makes_at_most_catch_up_limit_tasks_with_catch_up_all(later):
    api, config = later
    register(api)
    made = schedule(api, every_seconds=60, catch_up="all", catch_up_limit=3)
    backdate(config, "task_schedules", "next_run_at", made["id"], seconds=86400)
    assert claim(api, limit=100).data["count"] == 3
    tasks = schedule_tasks(api)
    assert len(tasks) == 3 and len({t["run_at"] for t in tasks}) == 3
    assert claim(api, limit=100).data["count"] == 0  # the rest of the window is skipped


def test_paused_schedule_makes_nothing_and_resumes_from_now(later):
    api, config = later
    register(api)
    made = schedule(api, every_seconds=60)
    assert api.post("/schedules/%d/pause" % made["id"]).data["paused"] is True
    backdate(config, "task_schedules", "next_run_at", made["id"], seconds=600)
    claim(api)
    assert schedule_tasks(api) == []
    missed = api.get("/schedules/%d" % made["id"]).data["next_run_at"]
    resumed = api.post("/schedules/%d/resume" % made["id"]).data
    assert resumed["paused"] is False and resumed["next_run_at"] > missed
    assert claim(api).status == 404  # nothing missed while paused is made


def test_cron_schedule_next_run_is_on_the_minute_in_its_time_zone(api):
    register(api)
    made = schedule(api, cron="30 9 * * *", timezone="+02:00")
    assert made["next_run_at"].endswith("T07:30:00Z")
    assert made["cron"] == "30 9 * * *" and made["timezone"] == "+02:00"


def test_schedules_are_listed_and_deleted(api):
    register(api)
    first = schedule(api, every_seconds=60, name="hourly.report")
    second = schedule(api, cron="@daily")
    listed = api.get("/schedules").data
    assert [s["id"] for s in listed["schedules"]] == [first["id"], second["id"]]
    assert listed["total"] == 2
    assert api.request("DELETE", "/schedules/%d" % first["id"]).status == 200
    assert api.get("/schedules/%d" % first["id"]).status == 404
    assert api.request("DELETE", "/schedules/%d" % first["id"]).status == 404


@pytest.mark.parametrize("body, status, field", [
    ({"every_seconds": 60, "cron": "* * * * *"}, 400, "every_seconds"),
    ({}, 400, "every_seconds"),
    ({"cron": "* * *"}, 400, "cron"),
    ({"cron": "61 * * * *"}, 400, "cron"),
    ({"cron": "0 0 31 2 *"}, 400, "cron"),
    ({"cron": "* * * * *", "timezone": "Nowhere/Atlantis"}, 400, "timezone"),
    ({"every_seconds": 0}, 400, "every_seconds"),
    ({"every_seconds": 60, "catch_up": "some"}, 400, "catch_up"),
    ({"every_seconds": 60, "catch_up_limit": 0}, 400, "catch_up_limit"),
    ({"every_seconds": 60, "start_at": "later"}, 400, "start_at"),
    ({"every_seconds": 60, "params": {"n": "x"}}, 400, "validation"),
    ({"every_seconds": 60, "type": "missing"}, 404, "missing"),
])
def test_bad_schedule_is_refused_naming_the_field_and_creates_nothing(api, body, status, field):
    register(api)
    body = dict({"type": "demo", "params": {"n": 1}}, **body)
    response = api.post("/schedules", body)
    assert response.status == status, response
    assert field in response.error.lower() or field in str(response.json.get("details")), response
    assert api.get("/schedules").data["total"] == 0


def test_schedule_name_is_unique(api):
    register(api)
    schedule(api, every_seconds=60, name="nightly")
    response = api.post("/schedules", {"type": "demo", "params": {"n": 1}, "every_seconds": 60,
                                       "name": "nightly"})
    assert response.status == 409 and "nightly" in response.error
    assert api.get("/schedules").data["total"] == 1


def test_broken_schedule_is_paused_and_never_fails_the_claim(later):
    api, config = later
    register(api)
    made = schedule(api, cron="0 * * * *")
    db_execute(config, "UPDATE task_schedules SET timezone = 'Nowhere/Atlantis' WHERE id = ?",
               (made["id"],))
    backdate(config, "task_schedules", "next_run_at", made["id"], seconds=60)
    pending = create(api, {"n": 9})
    assert claim(api).data["id"] == pending["id"]
    assert schedule_tasks(api) == [task(api, pending["id"])]
    assert api.get("/schedules/%d" % made["id"]).data["paused"] is True


def test_schedule_of_an_inactive_type_moves_on_without_tasks(later):
    api, config = later
    register(api)
    made = schedule(api, every_seconds=60)
    register(api, is_active=False)
    backdate(config, "task_schedules", "next_run_at", made["id"], seconds=30)
    assert claim(api).status == 404
    shown = api.get("/schedules/%d" % made["id"]).data
    assert shown["last_run_at"] is not None and shown["last_task_id"] is None
    assert schedule_tasks(api) == []


def test_schedule_routes_work_through_a_real_cgi_process(later):
    from cgi_runner import run_cgi

    api, config = later
    register(api)
    made = run_cgi("POST", "/schedules", {"type": "demo", "params": {"n": 1}, "cron": "@hourly"},
                   config_path=config.path)
    assert made.status == 201, made
    schedule_id = made.json["data"]["id"]
    assert run_cgi("POST", "/schedules/%d/pause" % schedule_id, None,
                   config_path=config.path).json["data"]["paused"] is True
    deleted = run_cgi("DELETE", "/schedules/%d" % schedule_id, None, config_path=config.path)
    assert deleted.status == 200 and deleted.json["data"]["deleted"] is True
    assert api.get("/schedules").data["total"] == 0
