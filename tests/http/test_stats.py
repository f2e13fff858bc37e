"""GET /stats and GET /metrics: figures after a known sequence, counters that
match a recount, Prometheus text that the official parser reads."""

import pytest

from conftest import claim, create, db_execute, register, shell_key
from taskq import stats


def recount(config):
    rows = db_execute(config, "SELECT type, status, COUNT(*) FROM tasks GROUP BY type, status")
    return {(t, s): int(n) for t, s, n in rows}


def counted(data):
    return {(t, s): n for t, info in data["types"].items() for s, n in info["counts"].items()}


def complete(api, task_id, worker, success=True, error="boom"):
    body = {"worker_id": worker, "success": success}
    if not success:
        body["error"] = error
    response = api.post("/tasks/%d/complete" % task_id, body)
    assert response.status == 200, response
    return response.data


def test_stats_after_a_known_sequence_of_creates_claims_completes_and_fails(api, backend_config):
    register(api, "alpha", max_attempts=1)
    register(api, "beta", max_attempts=2)
    for n in range(5):
        create(api, {"n": n}, type="alpha")
    create(api, {"n": 0}, type="alpha")  # a duplicate: counted once
    for n in range(3):
        create(api, {"n": n}, type="beta")
    empty = api.get("/stats").data
    assert empty["counts"] == {"pending": 8} and empty["total"] == 8
    assert empty["oldest_pending_age_seconds"] >= 0
    assert empty["last_hour"]["completed"] == 0 and empty["last_hour"]["run_seconds"]["p95"] is None

    a1 = claim(api, "w1", type_pattern="alpha").data
    a2 = claim(api, "w1", type_pattern="alpha").data
    a3 = claim(api, "w2", type_pattern="alpha").data
    b1 = claim(api, "w2", type_pattern="beta").data
    complete(api, a1["id"], "w1")
    complete(api, a2["id"], "w1", success=False)      # alpha: final failure
    assert complete(api, b1["id"], "w2", success=False)["will_retry"]  # beta: back to pending

    data = api.get("/stats").data
    assert data["types"]["alpha"]["counts"] == {"pending": 2, "claimed": 1, "completed": 1, "failed": 1}
    assert data["types"]["beta"]["counts"] == {"pending": 3}
    assert data["counts"] == {"pending": 5, "claimed": 1, "completed": 1, "failed": 1}
    assert data["leases"] == {"w2": 1}
    assert a3["id"] not in (a1["id"], a2["id"])
    for window in ("last_hour", "last_day"):
        assert data[window]["completed"] == 1 and data[window]["failed"] == 1
        assert data[window]["retried"] == 1
        assert data[window]["run_seconds"]["count"] == 1
        assert data[window]["run_seconds"]["avg"] >= 0
        assert data[window]["run_seconds"]["p95"] is not None
    assert data["types"]["alpha"]["last_hour"] == {"completed": 1, "failed": 1, "retry": 0}
    assert data["types"]["beta"]["last_day"] == {"completed": 0, "failed": 0, "retry": 1}
    assert counted(data) == recount(backend_config)


def test_expired_leases_and_batches_keep_the_counters_equal_to_a_recount(api, backend_config):
    register(api, "gamma", max_attempts=2)
    created = api.post("/tasks", {"tasks": [{"type": "gamma", "params": {"n": n}} for n in range(20)]})
    assert created.data["created"] == 20
    batch = api.post("/tasks/claim", {"worker_id": "w", "limit": 10, "type_pattern": "gamma"}).data
    ids = [t["id"] for t in batch["tasks"]]
    results = [{"id": i, "success": i % 3 != 0, "error": "no"} for i in ids[:6]]
    assert api.post("/tasks/complete", {"worker_id": "w", "results": results}).status == 200
    # the other four leases ran out: the next claim returns them to pending
    past = ("UPDATE tasks SET lease_expires_at = ? WHERE status = 'claimed'",
            (0,) if backend_config.backend == "sqlite" else ("2000-01-01 00:00:00",))
    db_execute(backend_config, *past)
    claim(api, "w2", limit=2)
    data = api.get("/stats").data
    assert counted(data) == recount(backend_config)
    assert data["last_hour"]["retried"] >= 4
    assert sum(data["leases"].values()) == 2


def test_quantile_interpolates_inside_the_histogram_bucket():
    histogram = [0] * len(stats.RUN_BUCKETS)
    histogram[3] = 100  # all in (0.5, 1] seconds
    assert stats.quantile(histogram, 0.95) == pytest.approx(0.975)
    histogram[0] = 900  # 90% under 0.1 s: p95 halfway through the (0.5, 1] bucket
    assert stats.quantile(histogram, 0.95) == pytest.approx(0.75)
    assert stats.quantile([0] * len(stats.RUN_BUCKETS), 0.95) is None


def test_metrics_parse_as_prometheus_text_with_the_stats_figures(api):
    from prometheus_client.parser import text_string_to_metric_families

    register(api, "delta")
    for n in range(3):
        create(api, {"n": n}, type="delta")
    task = claim(api, "w\"odd\\name").data
    complete(api, task["id"], "w\"odd\\name")
    claim(api, "w\"odd\\name")
    response = api.get("/metrics")
    assert response.status == 200
    assert response.header("Content-Type").startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(response.raw.decode("utf-8"))}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert samples[("taskq_tasks", (("status", "pending"), ("type", "delta")))] == 1
    assert samples[("taskq_tasks", (("status", "completed"), ("type", "delta")))] == 1
    assert samples[("taskq_live_leases", (("worker", "w\"odd\\name"),))] == 1
    assert samples[("taskq_finished_last_hour", (("outcome", "completed"), ("type", "delta")))] == 1
    assert samples[("taskq_oldest_pending_age_seconds", ())] >= 0
    assert all(f.type == "gauge" for f in families.values())


def test_stats_and_metrics_need_only_the_read_only_role(api_factory):
    api = api_factory()
    key = shell_key(api.app.config, "grafana", "read-only")
    assert api.get("/stats").status == 401
    assert api.get("/stats", headers={"Authorization": "Bearer " + key}).status == 200
    assert api.get("/metrics", headers={"Authorization": "Bearer " + key}).status == 200


def test_steering_keeps_the_counters_equal_to_a_recount(api, backend_config):
    register(api, "steer", max_attempts=1)
    ids = [create(api, {"n": n}, type="steer")["id"] for n in range(6)]
    assert api.post("/tasks/%d/cancel" % ids[0]).status == 200          # pending -> cancelled
    held = claim(api, "w", type_pattern="steer").data
    assert api.post("/tasks/%d/requeue" % held["id"]).status == 200     # claimed -> pending
    done = claim(api, "w", type_pattern="steer").data
    complete(api, done["id"], "w")
    assert api.post("/tasks/%d/rerun" % done["id"]).status == 200       # completed -> pending
    failed = claim(api, "w", type_pattern="steer").data
    complete(api, failed["id"], "w", success=False)
    assert api.post("/tasks/%d/retry" % failed["id"]).status == 200     # failed -> pending
    assert api.post("/tasks/%d/retry" % ids[0]).status == 200           # cancelled -> pending
    bulk = api.post("/tasks/bulk/cancel", {"filter": {"type": "steer", "status": "pending"}, "limit": 2})
    assert bulk.status == 200 and bulk.data["changed"] == 2
    data = api.get("/stats").data
    assert counted(data) == recount(backend_config)
    assert data["types"]["steer"]["counts"] == {"pending": 4, "cancelled": 2}


def _due(config, table, row_id, column):
    """Move a stored due time 10 seconds into the past."""
    if config.backend == "sqlite":
        db_execute(config, "UPDATE %s SET %s = CAST(strftime('%%s','now') AS INTEGER) * 1000 - 10000"
                   " WHERE id = ?" % (table, column), (row_id,))
    else:
        db_execute(config, "UPDATE %s SET %s = UTC_TIMESTAMP() - INTERVAL 10 SECOND WHERE id = ?"
                   % (table, column), (row_id,))


def test_scheduled_tasks_backoff_and_schedules_keep_the_counters_equal_to_a_recount(
        api, backend_config):
    register(api, "later", max_attempts=3, retry_delay_seconds=60)
    register(api, "made")
    first = create(api, {"n": 1}, type="later", delay_seconds=3600)
    second = create(api, {"n": 2}, type="later", delay_seconds=3600)
    assert first["status"] == second["status"] == "scheduled"
    for n in range(3, 6):
        create(api, {"n": n}, type="later")
    assert api.get("/stats").data["counts"] == {"scheduled": 2, "pending": 3}
    assert api.post("/tasks/%d/cancel" % first["id"]).status == 200   # scheduled -> cancelled
    _due(backend_config, "tasks", second["id"], "run_at")
    failing = claim(api, "w", type_pattern="later").data             # promotes the due one
    assert complete(api, failing["id"], "w", success=False)["status"] == "scheduled"  # backoff
    held = claim(api, "w", type_pattern="later").data
    past = ("UPDATE tasks SET lease_expires_at = ? WHERE id = ?",
            (0 if backend_config.backend == "sqlite" else "2000-01-01 00:00:00", held["id"]))
    db_execute(backend_config, *past)
    claim(api, "w2", type_pattern="nothing.matches")                 # expired -> scheduled (backoff)
    assert api.get("/tasks/%d" % held["id"]).data["status"] == "scheduled"
    made = api.post("/schedules", {"type": "made", "params": {}, "every_seconds": 60,
                                   "catch_up": "all", "catch_up_limit": 3})
    assert made.status == 201, made
    if backend_config.backend == "sqlite":
        db_execute(backend_config, "UPDATE task_schedules SET next_run_at = next_run_at - 86400000"
                   " WHERE id = ?", (made.data["id"],))
    else:
        db_execute(backend_config, "UPDATE task_schedules SET next_run_at = next_run_at - INTERVAL 1 DAY"
                   " WHERE id = ?", (made.data["id"],))
    claim(api, "w2", type_pattern="nothing.matches")                 # the schedule makes 3 tasks
    data = api.get("/stats").data
    assert counted(data) == recount(backend_config)
    assert data["types"]["later"]["counts"] == {"scheduled": 2, "pending": 2, "cancelled": 1}
    assert data["types"]["made"]["counts"] == {"pending": 3}
    assert data["last_hour"]["retried"] == 2
    metrics = api.get("/metrics").raw.decode("utf-8")
    assert 'taskq_tasks{type="later",status="scheduled"} 2' in metrics
    assert 'taskq_tasks{type="later",status="cancelled"} 1' in metrics


@pytest.mark.parametrize("sort_by,sort_order", [
    ("priority", "DESC"), ("priority", "ASC"), ("attempts", "ASC"), ("attempts", "DESC"),
    ("id", "ASC"), ("created_at", "DESC")])
def test_every_claim_order_and_the_type_filter_keep_the_counters_equal_to_a_recount(
        api, backend_config, sort_by, sort_order):
    kinds = {name: register(api, name)["id"] for name in ("order-a", "order-b")}
    batch = [{"type": name, "params": {"n": n}, "priority": n % 3}
             for name in kinds for n in range(6)]
    assert api.post("/tasks", {"tasks": batch}).data["created"] == 12
    create(api, {"n": 0}, type="order-a")  # a duplicate: the type's usage and counters stay
    for body in ({"limit": 3}, {"task_type_id": kinds["order-b"], "limit": 2},
                 {"task_type_id": kinds["order-a"]}, {"type_pattern": "order-%", "limit": 2}):
        response = api.post("/tasks/claim", dict(body, worker_id="w", sort_by=sort_by,
                                                 sort_order=sort_order))
        assert response.status == 200, response
    data = api.get("/stats").data
    assert counted(data) == recount(backend_config)
    assert data["counts"] == {"pending": 4, "claimed": 8}
    assert data["leases"] == {"w": 8}
    usage = {t["name"]: t["usage_count"] for t in api.get("/task-types").data}
    assert usage == {"order-a": 6, "order-b": 6}


def test_metrics_show_the_retention_backlog_per_table(api_factory):
    from prometheus_client.parser import text_string_to_metric_families

    api = api_factory(retention={"completed_days": "1h", "history_days": 1, "gc_probability": 0})
    config = api.app.config
    register(api, "aged")
    for n in range(4):
        create(api, {"n": n}, type="aged")
    for _ in range(3):
        task = claim(api, "w").data
        complete(api, task["id"], "w")
    hour_ms, hour = (7200 * 1000, "updated_at - ?") if config.backend == "sqlite" else (
        7200, "updated_at - INTERVAL ? SECOND")
    db_execute(config, "UPDATE tasks SET updated_at = %s WHERE status = 'completed'" % hour, (hour_ms,))

    def backlog():
        text = api.get("/metrics").raw.decode("utf-8")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert families["taskq_retention_backlog"].type == "gauge"
        return {s.labels["table"]: s.value for s in families["taskq_retention_backlog"].samples}

    assert backlog() == {"tasks": 3, "task_history": 0, "task_runs": 0, "taskq_claim_requests": 0}
    api.post("/admin/purge", {})
    assert backlog()["tasks"] == 0
