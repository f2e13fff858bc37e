"""The answer shapes the PrismQ frontend and the later TaskManager's clients
read (issue 7), on SQLite and MariaDB: list envelopes with `data` as the array
and `pagination`, `timestamp` and `message` on every envelope, type usage,
param_schema given as a JSON string."""

import json
import time

import pytest

from conftest import claim, create, register, snapshot


def populate(api, count=7):
    register(api)
    return [create(api, {"n": n})["id"] for n in range(count)]


# -- list envelopes -------------------------------------------------------------------------
def test_task_list_data_is_the_array_and_pagination_sits_beside_it(api):
    ids = populate(api)
    answer = api.get("/tasks", query="limit=3&offset=3").json
    assert [t["id"] for t in answer["data"]] == sorted(ids, reverse=True)[3:6]
    assert answer["pagination"] == {"total": 7, "page": 2, "per_page": 3, "total_pages": 3,
                                    "limit": 3, "offset": 3}
    assert set(answer) == {"success", "message", "data", "pagination", "timestamp"}


def test_page_and_per_page_page_through_like_limit_and_offset(api):
    ids = sorted(populate(api), reverse=True)
    pages = [api.get("/tasks", query="page=%d&per_page=3" % page).json for page in (1, 2, 3, 4)]
    assert [[t["id"] for t in p["data"]] for p in pages] == [ids[0:3], ids[3:6], ids[6:], []]
    assert [p["pagination"]["page"] for p in pages] == [1, 2, 3, 4]
    assert {p["pagination"]["total_pages"] for p in pages} == {3}
    assert pages[2]["pagination"]["offset"] == 6 and pages[2]["pagination"]["limit"] == 3
    assert api.get("/tasks", query="page=2&limit=3").json["pagination"]["offset"] == 3
    assert api.get("/tasks", query="per_page=2&offset=4").json["pagination"]["page"] == 3


def test_empty_list_has_zero_pages(api):
    assert api.get("/tasks").json["pagination"] == {"total": 0, "page": 1, "per_page": 50,
                                                    "total_pages": 0, "limit": 50, "offset": 0}


@pytest.mark.parametrize("path", ["/tasks", "/task-types"])
@pytest.mark.parametrize("query,field", [("page=0", "page"), ("page=x", "page"),
                                         ("per_page=0", "per_page"), ("per_page=1001", "per_page"),
                                         ("limit=5&per_page=5", "per_page"),
                                         ("page=2&offset=10", "page")])
def test_bad_or_conflicting_page_parameters_are_400_naming_them(api, path, query, field):
    response = api.get(path, query=query)
    assert response.status == 400, response
    assert field in response.error


def test_task_list_filters_keep_working_with_pages(api):
    register(api, "a.one")
    register(api, "b.one")
    a = [create(api, {"n": n}, type="a.one")["id"] for n in range(3)]
    create(api, {"n": 9}, type="b.one")
    claim(api, "w", type_pattern="a.one")
    answer = api.get("/tasks", query="status=pending&type=a.%25&per_page=1&page=2").json
    assert answer["pagination"]["total"] == 2 and [t["id"] for t in answer["data"]] == [a[1]]
    assert all(t["type_id"] == api.get("/task-types/a.one").data["id"] for t in answer["data"])


def test_type_list_is_paged_the_same_way(api):
    for name in ("c", "a", "b", "d"):
        register(api, name)
    answer = api.get("/task-types", query="active_only=true&per_page=3&page=2").json
    assert [t["name"] for t in answer["data"]] == ["d"]
    assert answer["pagination"] == {"total": 4, "page": 2, "per_page": 3, "total_pages": 2,
                                    "limit": 3, "offset": 3}
    assert [t["name"] for t in api.get("/task-types", query="limit=2&offset=1").data] == ["b", "c"]


# -- envelope fields -------------------------------------------------------------------------
@pytest.mark.parametrize("method,path,body", [
    ("GET", "/health", None), ("GET", "/tasks", None), ("GET", "/task-types", None),
    ("GET", "/tasks/999", None), ("POST", "/tasks/claim", {"worker_id": "w"}),
    ("POST", "/tasks/claim", {}), ("GET", "/nowhere", None), ("DELETE", "/tasks", None)])
def test_every_envelope_carries_a_unix_timestamp(api, method, path, body):
    before = int(time.time())
    response = api.request(method, path, body)
    assert before <= response.json["timestamp"] <= int(time.time()) + 1
    assert isinstance(response.json["timestamp"], int)


@pytest.mark.parametrize("method,path,body,status", [
    ("GET", "/tasks/999", None, 404),
    ("POST", "/tasks/claim", {"worker_id": "w"}, 404), ("GET", "/nowhere", None, 404),
    ("POST", "/tasks", {"type": "nope", "params": {}}, 404)])
def test_errors_carry_their_text_in_message_and_error(api, method, path, body, status):
    response = api.request(method, path, body)
    assert response.status == status
    assert response.json["success"] is False
    assert response.json["message"] == response.json["error"] and response.json["error"]


def _inactive(api):
    register(api, "off.type", is_active=False)
    return api.post("/tasks", {"type": "off.type", "params": {}})


def _not_claimed(api):
    register(api, "idle.type")
    task = api.post("/tasks", {"type": "idle.type", "params": {}}).data
    return api.post("/tasks/%d/complete" % task["id"], {"worker_id": "w", "success": True})


@pytest.mark.parametrize("call, message, error", [
    (lambda api: api.post("/tasks/claim", {}), "Missing required fields: worker_id",
     "Missing required field: worker_id"),
    (lambda api: api.post("/tasks", {}), "Missing required fields: type, params",
     "Missing required fields: type, params"),
    (lambda api: api.post("/task-types/register", {"name": "x"}),
     "Missing required fields: version, param_schema", "Missing required fields: version, param_schema"),
    (lambda api: api.post("/task-types/register", {"name": "x", "version": "1", "param_schema": "{"}),
     "Invalid JSON schema format", "Field 'param_schema' is a string but not valid JSON"),
    (_inactive, "Task type is not active", "Task type is inactive: off.type"),
    (_not_claimed, "Task is not in claimed state", "Task is not claimed (status: pending)"),
    (lambda api: api.get("/tasks", query="sort_by=name"),
     "Invalid sort_by field. Allowed values: id, created_at, updated_at, priority, attempts",
     "Query parameter 'sort_by' must be one of id, created_at, updated_at, priority, attempts"),
    (lambda api: api.get("/tasks", query="sort_order=up"),
     "Invalid sort_order. Allowed values: ASC, DESC",
     "Query parameter 'sort_order' must be one of ASC, DESC"),
])
def test_errors_speak_taskmanagers_words_in_message_and_keep_the_detail_in_error(
        api, call, message, error):
    response = call(api)
    assert response.status in (400, 409), response
    assert response.json["message"] == message
    assert response.json["error"] == error


def test_answers_speak_taskmanagers_words_where_it_has_them(api):
    assert api.post("/task-types/register", {"name": "w.t", "version": "1",
                                             "param_schema": {}}).json["message"] == \
        "Task type registered successfully"
    assert api.post("/task-types/register", {"name": "w.t", "version": "2",
                                             "param_schema": {}}).json["message"] == \
        "Task type updated successfully"
    assert api.post("/tasks", {"type": "w.t", "params": {"a": 1}}).json["message"] == \
        "Task created successfully"
    assert api.post("/tasks", {"type": "w.t", "params": {"a": 1}}).json["message"] == \
        "Task already exists (deduplicated)"
    task = api.post("/tasks/claim", {"worker_id": "w"})
    assert task.json["message"] == "Task claimed successfully"
    done = api.post("/tasks/%d/complete" % task.data["id"], {"worker_id": "w", "success": True})
    assert done.json["message"] == "Task completed successfully"
    assert api.post("/tasks/claim", {"worker_id": "w"}).json["message"] == "No available tasks"


def test_php_empty_arrays_are_taken_as_empty_objects(api):
    """PHP's json_encode writes [] for an empty array: both TaskManager versions take it."""
    made = api.post("/task-types/register", {"name": "php.t", "version": "1", "param_schema": []})
    assert made.status == 201 and made.data["param_schema"] == {}
    as_text = api.post("/task-types/register", {"name": "php.u", "version": "1", "param_schema": "[]"})
    assert as_text.status == 201 and as_text.data["param_schema"] == {}
    created = api.post("/tasks", {"type": "php.t", "params": []})
    assert created.status == 201 and created.data["params"] == {}
    again = api.post("/tasks", {"type": "php.t", "params": {}})
    assert again.status == 200 and again.data["id"] == created.data["id"]  # the same task
    for bad in ([1], ["a"], [{}]):
        assert api.post("/tasks", {"type": "php.t", "params": bad}).status == 400
        assert api.post("/task-types/register", {"name": "php.v", "version": "1",
                                                 "param_schema": bad}).status == 400


def test_openapi_json_stays_bare(api):
    document = api.get("/openapi.json").json
    assert "openapi" in document and "timestamp" not in document and "success" not in document


# -- task and type views ----------------------------------------------------------------------
def test_every_task_view_has_type_id(api):
    kind = register(api, "kind")
    task = create(api, {"n": 1}, type="kind")
    assert task["type_id"] == kind["id"]
    assert api.get("/tasks/%d" % task["id"]).data["type_id"] == kind["id"]
    assert api.get("/tasks").data[0]["type_id"] == kind["id"]
    assert claim(api, "w").data["type_id"] == kind["id"]


def test_create_answers_the_task_in_full_created_or_deduplicated(api):
    register(api)
    first = api.post("/tasks", {"type": "demo", "params": {"n": 4}, "priority": 2})
    again = api.post("/tasks", {"type": "demo", "params": {"n": 4}, "priority": 9})
    assert (first.status, again.status) == (201, 200)
    view = api.get("/tasks/%d" % first.data["id"]).data
    for answer, dedup in ((first, False), (again, True)):
        data = dict(answer.data)
        assert data.pop("deduplicated") is dedup
        assert len(data.pop("dedupe_key")) == 64
        assert data == view
    assert view["status"] == "pending" and view["priority"] == 2 and view["params"] == {"n": 4}


def test_batch_create_items_are_full_views_too(api):
    register(api)
    answer = api.post("/tasks", {"tasks": [{"type": "demo", "params": {"n": 1}},
                                           {"type": "demo", "params": {"n": 1}}]}).data
    first, second = answer["results"]
    assert first["deduplicated"] is False and second["deduplicated"] is True
    assert first["id"] == second["id"] and first["type_id"] == second["type_id"]
    assert first["created_at"] and first["status"] == "pending"


def test_types_count_created_tasks_and_when_the_last_was_created(api):
    fresh = register(api, "counted")
    assert fresh["usage_count"] == 0 and fresh["last_used_at"] is None
    for n in range(3):
        create(api, {"n": n}, type="counted")
    create(api, {"n": 0}, type="counted")  # a duplicate is not a new use
    api.post("/tasks", {"tasks": [{"type": "counted", "params": {"n": 7}},
                                  {"type": "counted", "params": {"n": 1}}]})
    shown = api.get("/task-types/counted").data
    assert shown["usage_count"] == 4 and shown["last_used_at"]
    listed, = [t for t in api.get("/task-types").data if t["name"] == "counted"]
    assert listed["usage_count"] == 4 and listed["last_used_at"] == shown["last_used_at"]
    again = register(api, "counted")  # re-registering keeps the count
    assert again["usage_count"] == 4


def test_type_views_have_the_frontend_fields(api):
    register(api, "shape")
    shown = api.get("/task-types/shape").data
    assert {"id", "name", "version", "param_schema", "is_active", "usage_count", "last_used_at",
            "created_at", "updated_at"} <= set(shown)


# -- param_schema as a JSON string ---------------------------------------------------------------
def test_register_accepts_param_schema_as_a_json_string(api):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    response = api.post("/task-types/register", {"name": "str.schema", "version": "1",
                                                 "param_schema": json.dumps(schema)})
    assert response.status == 201, response
    assert response.data["param_schema"] == schema
    assert api.get("/task-types/str.schema").data["param_schema"] == schema
    bad = api.post("/tasks", {"type": "str.schema", "params": {"n": "x"}})
    assert bad.status == 400  # the schema from the string is enforced


@pytest.mark.parametrize("value,text", [("{not json", "not valid JSON"), ("[1, 2]", "JSON object"),
                                        ('"object"', "JSON object"),
                                        ('{"type": "nonsense"}', "not a valid JSON Schema")])
def test_param_schema_string_that_holds_no_schema_is_400_and_changes_nothing(api, value, text):
    before = snapshot(api)
    response = api.post("/task-types/register", {"name": "bad", "version": "1",
                                                 "param_schema": value})
    assert response.status == 400, response
    assert "param_schema" in response.error and text in response.error
    assert snapshot(api) == before
