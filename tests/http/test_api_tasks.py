"""Tasks: create and dedupe, read one, its history, and the list. On SQLite and MariaDB."""

import hashlib
import json

import pytest

from conftest import claim, create, db_execute, register, snapshot

SCHEMA = {"type": "object",
          "properties": {"url": {"type": "string", "minLength": 5},
                         "depth": {"type": "integer", "minimum": 0},
                         "tags": {"type": "array", "items": {"type": "string"}}},
          "required": ["url"]}

TASK_FIELDS = {"id", "type", "type_id", "status", "params", "result", "error_message", "priority", "progress",
               "attempts", "max_attempts", "claimed_by", "claimed_at", "lease_expires_at",
               "completed_at", "created_at", "updated_at"}


def expected_dedupe_key(type_name, params):
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((type_name + ":" + canonical).encode("utf-8")).hexdigest()


# -- create ----------------------------------------------------------------------
def test_create_task_is_201_pending_not_deduplicated(api):
    register(api, "crawl", SCHEMA)
    params = {"url": "https://example.com", "depth": 2}
    response = api.post("/tasks", {"type": "crawl", "params": params, "priority": 5})
    assert response.status == 201
    data = response.data
    assert isinstance(data["id"], int)
    assert data == dict(api.get("/tasks/%d" % data["id"]).data,
                        dedupe_key=expected_dedupe_key("crawl", params), deduplicated=False)
    assert (data["type"], data["status"], data["priority"], data["params"]) == (
        "crawl", "pending", 5, params)
    assert data["type_id"] == api.get("/task-types/crawl").data["id"]


def test_create_priority_defaults_to_zero(api):
    register(api, "crawl", SCHEMA)
    assert create(api, {"url": "https://example.com"}, type="crawl")["priority"] == 0


def test_identical_create_is_200_deduplicated_with_same_id(api):
    register(api, "crawl", SCHEMA)
    first = api.post("/tasks", {"type": "crawl", "params": {"url": "https://a.example"}})
    second = api.post("/tasks", {"type": "crawl", "params": {"url": "https://a.example"}})
    assert first.status == 201 and second.status == 200
    assert second.data["deduplicated"] is True
    assert second.data["id"] == first.data["id"]
    assert second.data["status"] == "pending"
    assert second.data["dedupe_key"] == first.data["dedupe_key"]
    assert {k: v for k, v in second.data.items() if k != "deduplicated"} == \
        {k: v for k, v in first.data.items() if k != "deduplicated"}
    assert api.get("/tasks").json["pagination"]["total"] == 1


def test_dedupe_ignores_key_order_at_every_depth(api):
    register(api, "crawl", SCHEMA)
    a = {"url": "https://a.example", "depth": 1, "meta": {"x": 1, "y": {"p": 1, "q": [1, {"b": 2, "a": 1}]}}}
    b = {"meta": {"y": {"q": [1, {"a": 1, "b": 2}], "p": 1}, "x": 1}, "depth": 1, "url": "https://a.example"}
    first = api.post("/tasks", {"type": "crawl", "params": a})
    raw = ('{"params": {"meta": {"y": {"q": [1, {"a": 1, "b": 2}], "p": 1}, "x": 1}, "depth": 1,'
           ' "url": "https://a.example"}, "type": "crawl"}').encode()
    second = api.request("POST", "/tasks", raw=raw)
    third = api.post("/tasks", {"type": "crawl", "params": b})
    assert first.status == 201
    assert second.status == 200 and third.status == 200
    assert first.data["id"] == second.data["id"] == third.data["id"]
    assert api.get("/tasks").json["pagination"]["total"] == 1


def test_dedupe_reports_the_existing_tasks_status(api):
    register(api, "crawl", SCHEMA)
    first = create(api, {"url": "https://a.example"}, type="crawl")
    claimed = claim(api, "w1").data
    api.post("/tasks/%d/complete" % claimed["id"], {"worker_id": "w1", "success": True})
    again = api.post("/tasks", {"type": "crawl", "params": {"url": "https://a.example"}})
    assert again.status == 200
    assert again.data["id"] == first["id"] and again.data["status"] == "completed"


def test_same_params_on_another_type_or_other_values_is_another_task(api):
    register(api, "crawl", SCHEMA)
    register(api, "fetch", SCHEMA)
    ids = {create(api, {"url": "https://a.example"}, type="crawl")["id"],
           create(api, {"url": "https://a.example"}, type="fetch")["id"],
           create(api, {"url": "https://b.example"}, type="crawl")["id"],
           create(api, {"url": "https://a.example", "depth": 0}, type="crawl")["id"]}
    assert len(ids) == 4


def test_create_unknown_type_is_404_and_creates_nothing(api):
    response = api.post("/tasks", {"type": "missing", "params": {}})
    assert response.status == 404
    assert response.json["success"] is False
    assert api.get("/tasks").json["pagination"]["total"] == 0


def test_create_invalid_params_is_400_with_details_path_and_message(api):
    register(api, "crawl", SCHEMA)
    response = api.post("/tasks", {"type": "crawl", "params": {"url": "x", "depth": -1, "tags": ["a", 5]}})
    assert response.status == 400
    assert response.json["success"] is False
    assert response.error == "Parameter validation failed"
    details = response.json["details"]
    assert isinstance(details, list) and len(details) == 3
    for item in details:
        assert set(item) == {"path", "message"}
        assert isinstance(item["path"], str) and isinstance(item["message"], str)
    paths = {item["path"] for item in details}
    assert any("url" in p for p in paths)
    assert any("depth" in p for p in paths)
    assert any("tags" in p and "1" in p for p in paths)
    assert api.get("/tasks").json["pagination"]["total"] == 0


def test_create_missing_required_param_is_400_with_details(api):
    register(api, "crawl", SCHEMA)
    response = api.post("/tasks", {"type": "crawl", "params": {}})
    assert response.status == 400
    assert any("url" in item["message"] for item in response.json["details"])


def test_create_skips_validation_when_schema_validation_is_off(api_factory):
    api = api_factory(queue={"schema_validation": "false"})
    register(api, "crawl", SCHEMA)
    response = api.post("/tasks", {"type": "crawl", "params": {"url": 5}})
    assert response.status == 201


@pytest.mark.parametrize("body, field", [
    ({"params": {"url": "https://a.example"}}, "type"),
    ({"type": "crawl"}, "params"),
    ({"type": "crawl", "params": [1]}, "params"),
    ({"type": "crawl", "params": "url=x"}, "params"),
    ({"type": "crawl", "params": None}, "params"),
    ({"type": 5, "params": {"url": "https://a.example"}}, "type"),
    ({"type": "crawl", "params": {"url": "https://a.example"}, "priority": "5"}, "priority"),
    ({"type": "crawl", "params": {"url": "https://a.example"}, "priority": 1.5}, "priority"),
    ({"type": "crawl", "params": {"url": "https://a.example"}, "priority": True}, "priority"),
    ({"type": "crawl", "params": {"url": "https://a.example"}, "priority": [1]}, "priority"),
    ({"type": "crawl", "params": {"url": "https://a.example"}, "priority": 2 ** 40}, "priority"),
])
def test_create_bad_field_is_400_and_changes_nothing(api, body, field):
    register(api, "crawl", SCHEMA)
    create(api, {"url": "https://z.example"}, type="crawl")
    before = snapshot(api)
    response = api.post("/tasks", body)
    assert response.status == 400, response
    assert field in response.error
    assert snapshot(api) == before


def test_create_accepts_negative_priority(api):
    register(api, "crawl", SCHEMA)
    assert create(api, {"url": "https://a.example"}, type="crawl", priority=-3)["priority"] == -3


# -- GET /tasks/{id} -------------------------------------------------------------
def test_get_task_has_every_field(api):
    register(api, "crawl", SCHEMA)
    params = {"url": "https://a.example", "tags": ["ü", "€"]}
    task = create(api, params, type="crawl", priority=2)
    response = api.get("/tasks/%d" % task["id"])
    assert response.status == 200
    data = response.data
    assert TASK_FIELDS <= set(data)
    assert data["id"] == task["id"] and data["type"] == "crawl" and data["status"] == "pending"
    assert data["params"] == params
    assert data["result"] is None and data["error_message"] is None
    assert data["priority"] == 2 and data["progress"] == 0
    assert data["attempts"] == 0 and data["max_attempts"] == 3
    assert data["claimed_by"] is None and data["claimed_at"] is None
    assert data["lease_expires_at"] is None and data["completed_at"] is None
    assert data["created_at"].endswith("Z") and data["updated_at"].endswith("Z")


def test_get_task_after_completion_shows_result_and_times(api):
    register(api, "crawl", SCHEMA)
    task = create(api, {"url": "https://a.example"}, type="crawl")
    claim(api, "w1")
    api.post("/tasks/%d/complete" % task["id"], {"worker_id": "w1", "success": True,
                                                   "result": {"pages": 3}})
    data = api.get("/tasks/%d" % task["id"]).data
    assert data["status"] == "completed" and data["result"] == {"pages": 3}
    assert data["claimed_by"] == "w1" and data["attempts"] == 1
    assert data["claimed_at"].endswith("Z") and data["completed_at"].endswith("Z")
    assert data["lease_expires_at"] is None


@pytest.mark.parametrize("path", ["/tasks/999999", "/tasks/0", "/tasks/999999999999999999"])
def test_get_unknown_task_is_404(api, path):
    response = api.get(path)
    assert response.status == 404
    assert response.json["success"] is False


# -- history -----------------------------------------------------------------------
def test_history_lists_every_event_oldest_first(api):
    register(api, "crawl", SCHEMA)
    task = create(api, {"url": "https://a.example"}, type="crawl")
    claim(api, "w1")
    api.post("/tasks/%d/progress" % task["id"], {"worker_id": "w1", "progress": 40, "message": "half"})
    api.post("/tasks/%d/complete" % task["id"], {"worker_id": "w1", "success": False, "error": "boom"})
    claim(api, "w2")
    api.post("/tasks/%d/complete" % task["id"], {"worker_id": "w2", "success": True, "result": 1})
    response = api.get("/tasks/%d/history" % task["id"])
    assert response.status == 200
    events = response.data["events"]
    assert [e["event"] for e in events] == ["created", "claimed", "progress", "retry", "claimed",
                                            "completed"]
    assert [e["worker_id"] for e in events] == [None, "w1", "w1", "w1", "w2", "w2"]
    assert "half" in events[2]["message"]
    assert "boom" in events[3]["message"]
    for event in events:
        assert set(event) >= {"event", "worker_id", "message", "at"}
        assert event["at"].endswith("Z")
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)


def test_history_of_final_failure_ends_failed(api_factory):
    api = api_factory(queue={"max_attempts": 1})
    register(api)
    task = create(api)
    claim(api, "w1")
    api.post("/tasks/%d/complete" % task["id"], {"worker_id": "w1", "success": False, "error": "no"})
    events = api.get("/tasks/%d/history" % task["id"]).data["events"]
    assert [e["event"] for e in events] == ["created", "claimed", "failed"]


def test_history_off_records_no_events(api_factory):
    api = api_factory(queue={"history": "false"})
    register(api)
    task = create(api)
    claim(api, "w1")
    api.post("/tasks/%d/complete" % task["id"], {"worker_id": "w1", "success": True})
    response = api.get("/tasks/%d/history" % task["id"])
    assert response.status == 200
    assert response.data["events"] == []
    assert api.get("/tasks/%d" % task["id"]).data["status"] == "completed"


def test_history_of_unknown_task_is_404(api):
    response = api.get("/tasks/424242/history")
    assert response.status == 404
    assert response.json["success"] is False


# -- GET /tasks ----------------------------------------------------------------------
@pytest.fixture
def populated(api):
    """Types a.one, a.two, b.one; 6 tasks; task 2 claimed, task 3 completed."""
    for name in ("a.one", "a.two", "b.one"):
        register(api, name)
    ids = [create(api, {"n": i}, type=name)["id"]
           for i, name in enumerate(["a.one", "a.two", "b.one", "a.one", "a.two", "b.one"])]
    first = claim(api, "w1").data["id"]
    second = claim(api, "w1").data["id"]
    api.post("/tasks/%d/complete" % second, {"worker_id": "w1", "success": True})
    return api, ids, first, second


def test_list_tasks_newest_first_with_counts(populated):
    api, ids, _, _ = populated
    answer = api.get("/tasks").json
    assert [t["id"] for t in answer["data"]] == sorted(ids, reverse=True)
    assert answer["pagination"] == {"total": 6, "page": 1, "per_page": 50, "total_pages": 1,
                                    "limit": 50, "offset": 0}
    assert isinstance(answer["data"][0]["params"], dict)


def test_list_tasks_filters_by_status(populated):
    api, ids, first, second = populated
    claimed = api.get("/tasks", query="status=claimed").json
    assert [t["id"] for t in claimed["data"]] == [first] and claimed["pagination"]["total"] == 1
    completed = api.get("/tasks", query="status=completed").data
    assert [t["id"] for t in completed] == [second]
    pending = api.get("/tasks", query="status=pending").json
    assert pending["pagination"]["total"] == 4
    assert all(t["status"] == "pending" for t in pending["data"])
    assert api.get("/tasks", query="status=failed").json["pagination"]["total"] == 0


def test_list_tasks_type_is_a_like_pattern(populated):
    api, ids, _, _ = populated
    a_all = api.get("/tasks", query="type=a.%25").json
    assert a_all["pagination"]["total"] == 4
    assert {t["type"] for t in a_all["data"]} == {"a.one", "a.two"}
    exact = api.get("/tasks", query="type=b.one").json
    assert exact["pagination"]["total"] == 2 and {t["type"] for t in exact["data"]} == {"b.one"}
    ones = api.get("/tasks", query="type=%25.one&status=pending").data
    assert {t["type"] for t in ones} <= {"a.one", "b.one"}
    assert api.get("/tasks", query="type=zzz%25").json["pagination"]["total"] == 0


def test_list_tasks_limit_and_offset_page_through(populated):
    api, ids, _, _ = populated
    newest_first = sorted(ids, reverse=True)
    page1 = api.get("/tasks", query="limit=4").json
    page2 = api.get("/tasks", query="limit=4&offset=4").json
    assert [t["id"] for t in page1["data"]] == newest_first[:4]
    assert [t["id"] for t in page2["data"]] == newest_first[4:]
    assert page1["pagination"]["total"] == page2["pagination"]["total"] == 6
    assert page2["pagination"] == {"total": 6, "page": 2, "per_page": 4, "total_pages": 2,
                                   "limit": 4, "offset": 4}
    beyond = api.get("/tasks", query="offset=100").json
    assert beyond["data"] == [] and beyond["pagination"]["total"] == 6


@pytest.mark.parametrize("query", ["status=done", "status=PENDING", "limit=0", "limit=1001",
                                   "limit=abc", "limit=1.5", "limit=-5", "offset=-1",
                                   "offset=x", "offset=1e3"])
def test_list_tasks_bad_query_is_400(api, query):
    response = api.get("/tasks", query=query)
    assert response.status == 400, response
    assert response.json["success"] is False


def _fail(api, error, **create_extra):
    task = create(api, {"e": error}, **create_extra)
    claimed = claim(api, "w1", task_type_id=task["type_id"], sort_by="id", sort_order="DESC")
    assert claimed.data["id"] == task["id"]
    api.post("/tasks/%d/complete" % task["id"], {"worker_id": "w1", "success": False, "error": error})
    return task["id"]


def test_list_tasks_filters_by_text_in_the_error_in_any_case(api):
    register(api, max_attempts=1)
    timeout = _fail(api, "SMTP Timeout after 30 s")
    _fail(api, "Connection refused")
    create(api, {"n": 9})  # no error at all
    found = api.get("/tasks", query="error_contains=smtp%20timeout").json
    assert [t["id"] for t in found["data"]] == [timeout] and found["pagination"]["total"] == 1
    # the text is taken as it is: % and _ are not wildcards
    assert api.get("/tasks", query="error_contains=%25").json["pagination"]["total"] == 0
    assert api.get("/tasks", query="error_contains=_").json["pagination"]["total"] == 0
    both = api.get("/tasks", query="error_contains=o&status=failed").json
    assert both["pagination"]["total"] == 2


def test_list_tasks_filters_by_age(api, backend_config):
    register(api)
    old, recent = create(api, {"n": 1}), create(api, {"n": 2})
    past = 1000 if backend_config.backend == "sqlite" else "2001-01-01 00:00:00"
    db_execute(backend_config, "UPDATE tasks SET created_at = ? WHERE id = ?", (past, old["id"]))
    older = api.get("/tasks", query="older_than_seconds=3600").data
    newer = api.get("/tasks", query="newer_than_seconds=3600").data
    assert [t["id"] for t in older] == [old["id"]]
    assert [t["id"] for t in newer] == [recent["id"]]
    assert api.get("/tasks", query="older_than_seconds=3600&newer_than_seconds=60").data == []


def test_list_tasks_sorts_by_priority_attempts_and_age_with_id_breaking_ties(api):
    register(api, max_attempts=5)
    ids = [create(api, {"n": n}, priority=p)["id"] for n, p in enumerate([5, 1, 5, 9])]
    def order(query):
        return [t["id"] for t in api.get("/tasks", query=query).data]

    assert order("sort_by=priority") == [ids[3], ids[2], ids[0], ids[1]]
    assert order("sort_by=priority&sort_order=asc") == [ids[1], ids[0], ids[2], ids[3]]
    assert order("sort_by=created_at&sort_order=ASC") == ids == order("sort_by=id&sort_order=asc")
    assert order("sort_order=desc") == ids[::-1] == order("")
    claimed = claim(api, "w1").data["id"]  # the highest priority: ids[3]
    assert claimed == ids[3]
    api.post("/tasks/%d/complete" % claimed, {"worker_id": "w1", "success": False, "error": "x"})
    assert order("sort_by=attempts")[0] == claimed
    assert order("sort_by=updated_at")[0] == claimed
    paged = api.get("/tasks", query="sort_by=priority&sort_order=asc&limit=2&offset=2").data
    assert [t["id"] for t in paged] == [ids[2], ids[3]]


@pytest.mark.parametrize("query,name", [
    ("sort_by=type", "sort_by"), ("sort_by=id;DROP", "sort_by"), ("sort_order=sideways", "sort_order"),
    ("sort_order=Asc", "sort_order"), ("older_than_seconds=-1", "older_than_seconds"),
    ("newer_than_seconds=1e3", "newer_than_seconds"), ("older_than_seconds=99999999999", "older_than_seconds"),
    ("error_contains=a%00b", "error_contains"), ("error_contains=" + "x" * 1001, "error_contains")])
def test_list_tasks_bad_filter_or_order_is_400_naming_it(api, query, name):
    response = api.get("/tasks", query=query)
    assert response.status == 400, response
    assert name in response.json["error"]


def test_list_tasks_accepts_limit_bounds(api):
    assert api.get("/tasks", query="limit=1").status == 200
    assert api.get("/tasks", query="limit=1000").json["pagination"]["limit"] == 1000


def test_priority_accepts_the_32_bit_range_and_orders_by_it(api):
    register(api)
    low = create(api, {"n": 1}, priority=-2147483647)["id"]
    high = create(api, {"n": 2}, priority=2147483647)["id"]
    assert api.get("/tasks/%d" % high).data["priority"] == 2147483647
    assert api.get("/tasks/%d" % low).data["priority"] == -2147483647
    assert claim(api, "w1").data["id"] == high
    assert claim(api, "w1").data["id"] == low
    response = api.post("/tasks", {"type": "demo", "params": {"n": 3}, "priority": 2147483648})
    assert response.status == 400 and "priority" in response.error
