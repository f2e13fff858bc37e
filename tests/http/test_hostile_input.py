"""Hostile input on both backends: values JSON cannot carry, control characters
in patterns, broken query strings. Every case answers 4xx with a JSON error
that names the field, the database is byte-for-byte what it was before, and
every answer is strict RFC 8259 JSON (no NaN or Infinity, valid UTF-8).

Bodies are written by hand as JSON text, because `json.dumps` would refuse
(or silently repair) most of what is sent here.
"""

import json

import pytest

from conftest import ApiClient, db_execute
from support.dbstate import DbState
from taskq.app import Application

BIG = "1e400"
DEEP = "[" * 101 + "]" * 101
VERY_DEEP = "[" * 50000 + "]" * 50000
SURROGATE = '"\\ud800"'
LONG_INT = "9" * 4301

# (case id, method, path ({id} = a task claimed by w1), body text, status, words in the error)
CASES = [
    # -- numbers out of range of a double (json.loads makes them inf) --
    ("params-inf", "POST", "/tasks", '{"type": "demo", "params": {"a": %s}}' % BIG, 400, "params.a"),
    ("params-neg-inf", "POST", "/tasks", '{"type": "demo", "params": {"a": -%s}}' % BIG, 400, "params.a"),
    ("params-inf-in-array", "POST", "/tasks", '{"type": "demo", "params": {"a": [1, 2, 1e309]}}', 400,
     "params.a[2]"),
    ("priority-inf", "POST", "/tasks", '{"type": "demo", "params": {}, "priority": %s}' % BIG, 400,
     "priority"),
    ("batch-params-inf", "POST", "/tasks",
     '{"tasks": [{"type": "demo", "params": {}}, {"type": "demo", "params": {"x": %s}}]}' % BIG, 400,
     "tasks[1].params.x"),
    ("schema-inf", "POST", "/task-types/register",
     '{"name": "demo2", "version": "1", "param_schema": {"maximum": %s}}' % BIG, 400,
     "param_schema.maximum"),
    ("max-attempts-inf", "POST", "/task-types/register",
     '{"name": "demo2", "version": "1", "param_schema": {}, "max_attempts": %s}' % BIG, 400,
     "max_attempts"),
    ("result-inf", "POST", "/tasks/{id}/complete",
     '{"worker_id": "w1", "success": true, "result": %s}' % BIG, 400, "result"),
    ("result-nested-inf", "POST", "/tasks/{id}/complete",
     '{"worker_id": "w1", "success": true, "result": {"v": [%s]}}' % BIG, 400, "result.v[0]"),
    ("batch-result-inf", "POST", "/tasks/complete",
     '{"worker_id": "w1", "results": [{"id": {id}, "success": true, "result": %s}]}' % BIG, 400,
     "results[0].result"),
    ("progress-inf", "POST", "/tasks/{id}/progress", '{"worker_id": "w1", "progress": %s}' % BIG,
     400, "progress"),
    ("claim-limit-inf", "POST", "/tasks/claim", '{"worker_id": "w2", "limit": %s}' % BIG, 400, "limit"),
    ("lease-inf", "POST", "/tasks/claim", '{"worker_id": "w2", "lease_seconds": -%s}' % BIG, 400,
     "lease_seconds"),
    ("nan-literal", "POST", "/tasks", '{"type": "demo", "params": {"a": NaN}}', 400, "not valid JSON"),
    ("infinity-literal", "POST", "/tasks/{id}/complete",
     '{"worker_id": "w1", "success": true, "result": Infinity}', 400, "not valid JSON"),
    ("long-integer", "POST", "/tasks", '{"type": "demo", "params": {"n": %s}}' % LONG_INT, 400,
     "more than 4300 digits"),
    # -- lone UTF-16 surrogates (valid JSON escapes, not Unicode) --
    ("params-surrogate", "POST", "/tasks", '{"type": "demo", "params": {"s": %s}}' % SURROGATE, 400,
     "params.s"),
    ("params-low-surrogate", "POST", "/tasks", '{"type": "demo", "params": {"s": "a\\udc00b"}}', 400,
     "params.s"),
    ("params-key-surrogate", "POST", "/tasks", '{"type": "demo", "params": {"\\udfff": 1}}', 400,
     "params"),
    ("type-surrogate", "POST", "/tasks", '{"type": %s, "params": {}}' % SURROGATE, 400, "type"),
    ("batch-item-surrogate", "POST", "/tasks",
     '{"tasks": [{"type": "demo", "params": {"t": ["ok", %s]}}]}' % SURROGATE, 400,
     "tasks[0].params.t[1]"),
    ("version-surrogate", "POST", "/task-types/register",
     '{"name": "demo2", "version": %s, "param_schema": {}}' % SURROGATE, 400, "version"),
    ("name-surrogate", "POST", "/task-types/register",
     '{"name": %s, "version": "1", "param_schema": {}}' % SURROGATE, 400, "name"),
    ("schema-surrogate", "POST", "/task-types/register",
     '{"name": "demo2", "version": "1", "param_schema": {"title": %s}}' % SURROGATE, 400,
     "param_schema.title"),
    ("claim-worker-surrogate", "POST", "/tasks/claim", '{"worker_id": %s}' % SURROGATE, 400,
     "worker_id"),
    ("claim-pattern-surrogate", "POST", "/tasks/claim",
     '{"worker_id": "w2", "type_pattern": "de%%\\ud834"}', 400, "type_pattern"),
    ("progress-message-surrogate", "POST", "/tasks/{id}/progress",
     '{"worker_id": "w1", "progress": 5, "message": %s}' % SURROGATE, 400, "message"),
    ("progress-worker-surrogate", "POST", "/tasks/{id}/progress",
     '{"worker_id": "w1\\ud800", "progress": 5}', 400, "worker_id"),
    ("complete-worker-surrogate", "POST", "/tasks/{id}/complete",
     '{"worker_id": "w1\\ud800", "success": true}', 400, "worker_id"),
    ("result-surrogate", "POST", "/tasks/{id}/complete",
     '{"worker_id": "w1", "success": true, "result": {"r": %s}}' % SURROGATE, 400, "result.r"),
    ("error-surrogate", "POST", "/tasks/{id}/complete",
     '{"worker_id": "w1", "success": false, "error": %s}' % SURROGATE, 400, "error"),
    ("batch-error-surrogate", "POST", "/tasks/complete",
     '{"worker_id": "w1", "results": [{"id": {id}, "success": false, "error": %s}]}' % SURROGATE,
     400, "results[0].error"),
    ("batch-worker-surrogate", "POST", "/tasks/complete",
     '{"worker_id": %s, "results": [{"id": {id}, "success": true}]}' % SURROGATE, 400, "worker_id"),
    # -- nesting --
    ("params-deep", "POST", "/tasks", '{"type": "demo", "params": {"d": %s}}' % DEEP, 400,
     "nested deeper than 100"),
    ("params-very-deep", "POST", "/tasks", '{"type": "demo", "params": {"d": %s}}' % VERY_DEEP, 400,
     "nested too deeply"),
    ("result-deep", "POST", "/tasks/{id}/complete",
     '{"worker_id": "w1", "success": true, "result": %s}' % DEEP, 400, "nested deeper than 100"),
    ("result-very-deep", "POST", "/tasks/{id}/complete",
     '{"worker_id": "w1", "success": true, "result": %s}' % VERY_DEEP, 400, "nested too deeply"),
    ("schema-deep-objects", "POST", "/task-types/register",
     '{"name": "demo2", "version": "1", "param_schema": %s}' % ('{"items": ' * 120 + "{}" + "}" * 120),
     400, "param_schema.items.items"),
    ("batch-very-deep", "POST", "/tasks/complete",
     '{"worker_id": "w1", "results": [{"id": {id}, "success": true, "result": %s}]}' % VERY_DEEP,
     400, "nested too deeply"),
    # -- control characters in type patterns: one rule on both backends --
    ("pattern-nul", "POST", "/tasks/claim", '{"worker_id": "w2", "type_pattern": "%\\u0000"}', 400,
     "type_pattern"),
    ("pattern-inner-nul", "POST", "/tasks/claim", '{"worker_id": "w2", "type_pattern": "de\\u0000mo"}',
     400, "type_pattern"),
    ("pattern-control", "POST", "/tasks/claim", '{"worker_id": "w2", "type_pattern": "\\u0001%"}', 400,
     "type_pattern"),
    ("pattern-newline", "POST", "/tasks/claim", '{"worker_id": "w2", "type_pattern": "demo\\n"}', 400,
     "type_pattern"),
    ("pattern-del", "POST", "/tasks/claim", '{"worker_id": "w2", "type_pattern": "%\\u007f"}', 400,
     "type_pattern"),
    # -- steering routes (bulk filters, type settings) --
    ("bulk-type-nul", "POST", "/tasks/bulk/cancel", '{"filter": {"type": "%\\u0000"}}', 400,
     "filter.type"),
    ("bulk-type-surrogate", "POST", "/tasks/bulk/cancel", '{"filter": {"type": "de\\ud800"}}', 400,
     "filter.type"),
    ("bulk-error-nul", "POST", "/tasks/bulk/retry", '{"filter": {"error_contains": "a\\u0000"}}',
     400, "filter.error_contains"),
    ("bulk-age-inf", "POST", "/tasks/bulk/cancel", '{"filter": {"older_than_seconds": %s}}' % BIG,
     400, "filter.older_than_seconds"),
    ("bulk-limit-deep", "POST", "/tasks/bulk/cancel", '{"filter": {}, "limit": %s}' % DEEP, 400,
     "nested deeper than 100"),
    ("settings-inf", "POST", "/task-types/demo/settings", '{"max_concurrency": %s}' % BIG, 400,
     "max_concurrency"),
    # -- query strings --
    ("query-type-nul", "GET", "/tasks?type=%25%00", None, 400, "type"),
    ("query-type-control", "GET", "/tasks?type=demo%0A", None, 400, "type"),
    ("query-encoded-surrogate", "GET", "/tasks?type=%ED%A0%80", None, 400, "UTF-8"),
    ("query-not-utf8", "GET", "/tasks?status=%FF", None, 400, "UTF-8"),
    ("query-limit-inf", "GET", "/tasks?limit=1e400", None, 400, "limit"),
    ("query-limit-huge", "GET", "/tasks?limit=" + "9" * 400, None, 400, "limit"),
    ("query-offset-negative", "GET", "/tasks?offset=-1", None, 400, "offset"),
    ("query-status-unknown", "GET", "/tasks?status=claimed%00", None, 400, "status"),
    ("query-active-only-bad", "GET", "/task-types?active_only=%FF", None, 400, "UTF-8"),
    ("query-active-only-word", "GET", "/task-types?active_only=maybe", None, 400, "active_only"),
    # -- bodies that are not what they claim --
    ("body-not-utf8", "POST", "/tasks", b'{"type": "demo", "params": {"s": "\xff"}}', 400, "UTF-8"),
    ("body-encoded-surrogate", "POST", "/tasks", b'{"type": "demo", "params": {"s": "\xed\xa0\x80"}}',
     400, "UTF-8"),
    ("body-bom", "POST", "/tasks", b'\xef\xbb\xbf{"type": "demo", "params": {}}', 400, "JSON"),
    ("body-trailing", "POST", "/tasks", '{"type": "demo", "params": {}} {}', 400, "JSON"),
    ("body-array", "POST", "/tasks", '[{"type": "demo", "params": {}}]', 400, "object"),
    ("body-nul", "POST", "/tasks/claim", '{"worker_id": "w2"}\u0000', 400, "JSON"),
]


@pytest.fixture
def db_state():
    readers = []

    def read(config):
        if not readers:
            readers.append(DbState(config))
        return readers[0]()

    yield read
    for reader in readers:
        reader.close()


@pytest.fixture
def hostile(config_factory):
    """(api, config, claimed task id) with a type, a claimed and a pending task."""
    config = config_factory()
    api = ApiClient(Application(config=config))
    assert api.post("/task-types/register", {"name": "demo", "version": "1",
                                             "param_schema": {"type": "object"}}).status == 201
    first = api.post("/tasks", {"type": "demo", "params": {"n": 1}}).data["id"]
    api.post("/tasks", {"type": "demo", "params": {"n": 2}})
    claimed = api.post("/tasks/claim", {"worker_id": "w1"})
    assert claimed.status == 200 and claimed.data["id"] == first
    return api, config, first


def strict_json(raw):
    """Parse an answer as RFC 8259 demands: UTF-8, no NaN/Infinity."""
    def refuse(name):
        raise AssertionError("non-JSON constant %s in an answer" % name)

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


def send(api, method, path, body):
    if "?" in path:
        path, query = path.split("?", 1)
    else:
        query = ""
    raw = b"" if body is None else body if isinstance(body, bytes) else body.encode("utf-8")
    return api.request(method, path, raw=raw, query=query)


@pytest.mark.parametrize("case,method,path,body,status,words", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_refused_with_a_json_error_and_changes_nothing(
        hostile, db_state, case, method, path, body, status, words):
    api, config, task_id = hostile
    before = db_state(config)
    path = path.replace("{id}", str(task_id))
    if isinstance(body, str):
        body = body.replace("{id}", str(task_id))
    response = send(api, method, path, body)
    assert response.status == status, response
    answer = strict_json(response.raw)
    assert answer["success"] is False, answer
    assert words in answer["error"], answer
    assert "Traceback" not in answer["error"] and "SELECT" not in answer["error"]
    assert db_state(config) == before


def test_the_same_requests_without_the_hostile_value_succeed(hostile):
    """The refusals above are about the value, not the request's shape."""
    api, _, task_id = hostile
    assert api.post("/tasks", {"type": "demo", "params": {"a": 1e300, "s": "\U0001d11e"}}).status == 201
    assert api.post("/tasks/claim", {"worker_id": "w2", "type_pattern": "de%"}).status == 200
    assert api.post("/tasks/%d/progress" % task_id,
                    {"worker_id": "w1", "progress": 5, "message": "\U0001f600 a\tb"}).status == 200
    done = api.post("/tasks/%d/complete" % task_id,
                    {"worker_id": "w1", "success": True, "result": {"v": [-1e300, "\ud83d\ude00"]}})
    assert done.status == 200, done
    assert api.get("/tasks/%d" % task_id).data["result"] == {"v": [-1e300, "\U0001f600"]}


def test_nesting_up_to_100_levels_is_accepted(hostile):
    api, _, _ = hostile
    params = '{"type": "demo", "params": {"d": %s}}' % ("[" * 98 + "]" * 98)  # body + params + 98
    assert send(api, "POST", "/tasks", params).status == 201


def test_free_text_with_control_characters_round_trips_alike_on_both_backends(hostile):
    api, _, task_id = hostile
    text = "line 1\nline 2\ttab \x00nul \x1b[31m \x7f"
    assert api.post("/tasks/%d/progress" % task_id,
                    {"worker_id": "w1", "progress": 50, "message": text}).status == 200
    assert api.get("/tasks/%d" % task_id).data["progress_message"] == text
    failed = api.post("/tasks/%d/complete" % task_id,
                      {"worker_id": "w1", "success": False, "error": text})
    assert failed.status == 200, failed
    task = strict_json(api.get("/tasks/%d" % task_id).raw)["data"]
    assert task["error_message"] == text


@pytest.mark.parametrize("stored,shown", [
    ("Infinity", None), ("-Infinity", None), ("NaN", None),
    ('{"a": [1, Infinity, {"b": NaN}], "ok": true}', {"a": [1, None, {"b": None}], "ok": True}),
])
def test_rows_stored_before_the_fix_still_leave_as_strict_json(hostile, stored, shown):
    """One bad result stored by an older version must not break the whole list."""
    api, config, task_id = hostile
    db_execute(config, "UPDATE tasks SET status = 'completed', result_json = ? WHERE id = ?",
               (stored, task_id))
    one = strict_json(api.get("/tasks/%d" % task_id).raw)
    assert one["data"]["result"] == shown
    listed = strict_json(api.get("/tasks", query="limit=10").raw)
    assert [t["result"] for t in listed["data"] if t["id"] == task_id] == [shown]
