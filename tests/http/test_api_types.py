"""Task types: register, get, list. On SQLite and on MariaDB."""

import pytest

from conftest import claim, create, db_execute, register, snapshot

SCHEMA = {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]}


def test_register_new_type_is_201_created(api):
    response = api.post("/task-types/register", {"name": "PrismQ.Script.Gen", "version": "1.0",
                                                  "param_schema": SCHEMA})
    assert response.status == 201
    data = response.data
    assert isinstance(data["id"], int)
    assert data["name"] == "PrismQ.Script.Gen"
    assert data["version"] == "1.0"
    assert data["created"] is True and data["updated"] is False


def test_register_existing_name_is_200_updated_with_same_id(api):
    first = register(api, "demo", SCHEMA, version="1.0")
    response = api.post("/task-types/register", {"name": "demo", "version": "2.0",
                                                  "param_schema": {"type": "object"}})
    assert response.status == 200
    assert response.data["id"] == first["id"]
    assert response.data["created"] is False and response.data["updated"] is True
    got = api.get("/task-types/demo").data
    assert got["version"] == "2.0"
    assert got["param_schema"] == {"type": "object"}
    assert len(api.get("/task-types").data) == 1


@pytest.mark.parametrize("missing", ["name", "version", "param_schema"])
def test_register_without_a_required_field_is_400_naming_it(api, missing):
    body = {"name": "demo", "version": "1", "param_schema": SCHEMA}
    del body[missing]
    response = api.post("/task-types/register", body)
    assert response.status == 400
    assert missing in response.error
    assert len(api.get("/task-types").data) == 0


@pytest.mark.parametrize("name", ["", "has space", "a/b", "x" * 256, "naïve", "semi;colon",
                                  "quote'", "percent%", "new\nline"])
def test_register_bad_name_is_400(api, name):
    response = api.post("/task-types/register", {"name": name, "version": "1", "param_schema": SCHEMA})
    assert response.status == 400, response
    assert response.json["success"] is False
    assert len(api.get("/task-types").data) == 0


@pytest.mark.parametrize("name", ["a", "x" * 255, "PrismQ.Script:v2_final-1", "A.b_C:d-9"])
def test_register_accepts_names_of_allowed_characters(api, name):
    response = api.post("/task-types/register", {"name": name, "version": "1", "param_schema": SCHEMA})
    assert response.status == 201
    assert api.get("/task-types/" + name).data["name"] == name


@pytest.mark.parametrize("schema", [[1], "object", 5, True, [{"type": "object"}]])
def test_register_param_schema_not_an_object_is_400(api, schema):
    response = api.post("/task-types/register", {"name": "demo", "version": "1", "param_schema": schema})
    assert response.status == 400
    assert "param_schema" in response.error
    assert len(api.get("/task-types").data) == 0


@pytest.mark.parametrize("schema, why", [
    ({"type": "nonsense"}, "nonsense"),
    ({"type": "object", "properties": 5}, "5"),
    ({"type": "object", "required": "url"}, "url"),
    ({"type": "object", "properties": {"n": {"minimum": "zero"}}}, "zero"),
])
def test_register_invalid_json_schema_is_400_saying_why(api, schema, why):
    response = api.post("/task-types/register", {"name": "demo", "version": "1", "param_schema": schema})
    assert response.status == 400
    assert "JSON Schema" in response.error
    assert why in response.error
    assert len(api.get("/task-types").data) == 0


def test_register_stores_max_attempts_and_claim_timeout_overrides(api):
    response = api.post("/task-types/register", {"name": "demo", "version": "1", "param_schema": SCHEMA,
                                                  "max_attempts": 7, "claim_timeout": 45})
    assert response.status == 201
    got = api.get("/task-types/demo").data
    assert got["max_attempts"] == 7 and got["claim_timeout"] == 45


def test_type_overrides_apply_to_its_tasks(api_factory):
    api = api_factory(queue={"max_attempts": 3, "claim_timeout": 300})
    register(api, "quick", max_attempts=5, claim_timeout=30)
    register(api, "plain")
    quick = create(api, {"n": 1}, type="quick")
    plain = create(api, {"n": 1}, type="plain")
    assert api.get("/tasks/%d" % quick["id"]).data["max_attempts"] == 5
    assert api.get("/tasks/%d" % plain["id"]).data["max_attempts"] == 3
    for _ in range(2):
        claimed = claim(api, "w1").data
        task = api.get("/tasks/%d" % claimed["id"]).data
        seconds = _seconds_between(task["claimed_at"], task["lease_expires_at"])
        expected = 30 if claimed["id"] == quick["id"] else 300
        assert abs(seconds - expected) <= 1, (claimed, task)


def _seconds_between(start, end):
    import calendar
    import time

    def parse(text):
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))

    return parse(end) - parse(start)


@pytest.mark.parametrize("field, value", [
    ("max_attempts", 0), ("max_attempts", -1), ("max_attempts", "3"), ("max_attempts", 2.5),
    ("max_attempts", True), ("claim_timeout", 0), ("claim_timeout", "60"), ("claim_timeout", [60]),
])
def test_register_bad_override_is_400(api, field, value):
    response = api.post("/task-types/register", {"name": "demo", "version": "1", "param_schema": SCHEMA,
                                                  field: value})
    assert response.status == 400, response
    assert field in response.error
    assert len(api.get("/task-types").data) == 0


@pytest.mark.parametrize("field, value", [("name", 5), ("name", None), ("version", 1),
                                          ("version", ""), ("version", ["1"])])
def test_register_wrong_json_type_is_400(api, field, value):
    body = {"name": "demo", "version": "1", "param_schema": SCHEMA}
    body[field] = value
    response = api.post("/task-types/register", body)
    assert response.status == 400, response
    assert len(api.get("/task-types").data) == 0


def test_get_type_returns_param_schema_as_object(api):
    register(api, "demo", SCHEMA, version="3.1")
    response = api.get("/task-types/demo")
    assert response.status == 200
    data = response.data
    assert data["name"] == "demo" and data["version"] == "3.1"
    assert data["param_schema"] == SCHEMA
    assert data["is_active"] is True
    assert isinstance(data["id"], int)


def test_get_unknown_type_is_404(api):
    response = api.get("/task-types/missing")
    assert response.status == 404
    assert response.json["success"] is False


def test_list_types_returns_all_with_count(api):
    for name in ("b.type", "a.type", "c.type"):
        register(api, name)
    answer = api.get("/task-types").json
    assert answer["pagination"]["total"] == 3 and len(answer["data"]) == 3
    assert sorted(t["name"] for t in answer["data"]) == ["a.type", "b.type", "c.type"]
    assert all(isinstance(t["param_schema"], dict) for t in answer["data"])


def test_list_types_active_only_leaves_out_inactive(api, backend_config):
    register(api, "on")
    register(api, "off")
    db_execute(backend_config, "UPDATE task_types SET is_active = 0 WHERE name = ?", ("off",))
    everything = api.get("/task-types").data
    active = api.get("/task-types", query="active_only=true").data
    assert len(everything) == 2
    assert len(active) == 1 and active[0]["name"] == "on"
    assert len(api.get("/task-types", query="active_only=false").data) == 2
    assert api.get("/task-types/off").data["is_active"] is False


def test_list_types_bad_active_only_is_400(api):
    assert api.get("/task-types", query="active_only=perhaps").status == 400


def test_create_for_inactive_type_is_400_and_reregister_reactivates(api, backend_config):
    register(api, "demo")
    db_execute(backend_config, "UPDATE task_types SET is_active = 0 WHERE name = ?", ("demo",))
    before = snapshot(api)
    response = api.post("/tasks", {"type": "demo", "params": {"n": 1}})
    assert response.status == 400
    assert "inactive" in response.error
    assert snapshot(api) == before
    register(api, "demo")
    assert api.post("/tasks", {"type": "demo", "params": {"n": 1}}).status == 201


def test_register_with_is_active_false_deactivates_and_keeps_queued_tasks_claimable(api):
    register(api, "demo")
    assert api.post("/tasks", {"type": "demo", "params": {"n": 1}}).status == 201
    response = api.post("/task-types/register", {"name": "demo", "version": "2", "is_active": False,
                                                 "param_schema": {"type": "object"}})
    assert response.status == 200 and response.data["is_active"] is False
    assert api.post("/tasks", {"type": "demo", "params": {"n": 2}}).status == 400
    assert len(api.get("/task-types", query="active_only=true").data) == 0
    assert api.post("/tasks/claim", {"worker_id": "w"}).data["params"] == {"n": 1}


def test_register_is_active_must_be_boolean(api):
    response = api.post("/task-types/register", {"name": "demo", "version": "1", "is_active": "no",
                                                 "param_schema": {"type": "object"}})
    assert response.status == 400 and "is_active" in response.error
    assert api.get("/task-types/demo").status == 404
