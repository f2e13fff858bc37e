"""A registered param_schema cannot reach out, loop forever or burn the CPU (issue 17).

Refused at register time with 400 naming the problem: references outside the
schema, unresolvable ones, $ref cycles that never descend into the params,
exponential patterns, oversized documents. A hostile schema written straight
into the table (one stored before these checks) is refused at create time the
same way, and validation runs under a CPU budget (schemas.VALIDATION_CPU_SECONDS).
"""

import json
import socket
import threading
import time

import pytest

from conftest import db_execute, register
from taskq import schemas

REFUSED = [
    ({"$ref": "http://127.0.0.1:%(port)d/x.json"}, "http://"),
    ({"properties": {"a": {"$ref": "https://127.0.0.1:%(port)d/x"}}}, "https://"),
    ({"$ref": "file:///etc/passwd"}, "file://"),
    ({"$ref": "ftp://127.0.0.1:%(port)d/x"}, "ftp://"),
    ({"items": {"$ref": "other.json#/a"}}, "other.json"),
    ({"$schema": "http://127.0.0.1:%(port)d/meta"}, "$schema"),
    ({"properties": {"a": {"$id": "http://127.0.0.1:%(port)d/", "$ref": "#/x"}}}, "$id"),
    ({"$ref": "#"}, "cycle"),
    ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
      "$ref": "#/$defs/a"}, "cycle"),
    ({"$ref": "#/definitions/missing"}, "does not resolve"),
    ({"properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}, "^(a+)+$"),
    ({"patternProperties": {"(a|a)*$": {}}}, "(a|a)*$"),
    ({"maxLength": 10 ** 12}, "maxLength"),
    ({"pattern": "("}, "not a valid regular expression"),
]


@pytest.fixture
def listener():
    """A TCP listener on 127.0.0.1 that counts connections: nothing may reach it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    hits = []
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                hits.append(1)
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], hits
    stop.set()
    thread.join(2)
    server.close()


def _fill(schema, port):
    return json.loads(json.dumps(schema).replace("%(port)d", str(port)))


@pytest.mark.parametrize("schema,named", REFUSED, ids=[n for _, n in REFUSED])
def test_unsafe_schemas_are_refused_at_register_naming_the_problem(api, listener, schema, named):
    port, hits = listener
    response = api.post("/task-types/register",
                        {"name": "bad", "version": "1", "param_schema": _fill(schema, port)})
    assert response.status == 400, response
    assert named in response.error, response.error
    assert api.get("/task-types/bad").status == 404  # nothing kept
    time.sleep(0.05)
    assert hits == []  # no connection was even tried


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"id": {"type": "integer"},
                                      "children": {"type": "array", "items": {"$ref": "#"}}}},
    {"$id": "https://example.com/p.json", "$schema": "https://json-schema.org/draft/2020-12/schema",
     "$defs": {"slug": {"type": "string", "pattern": "^[a-z]+(-[a-z]+)*$"}},
     "properties": {"s": {"$ref": "#/$defs/slug"}}},
    {"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {"n": {"type": "integer"}},
     "properties": {"n": {"$ref": "#/definitions/n"}, "csv": {"pattern": "^([a-z]+,)*$"}}},
])
def test_ordinary_schemas_with_local_refs_and_patterns_still_register_and_validate(api, schema):
    register(api, "ok", schema=schema)
    assert api.post("/tasks", {"type": "ok", "params": {}}).status == 201


def test_a_hostile_schema_in_the_table_is_refused_at_create_and_changes_nothing(api):
    register(api, "t", schema={"type": "object"})
    hostile = json.dumps({"properties": {"s": {"pattern": "^(a+)+$"}}})
    db_execute(api.app.config, "UPDATE task_types SET param_schema_json = ? WHERE name = ?", (hostile, "t"))
    started = time.process_time()
    response = api.post("/tasks", {"type": "t", "params": {"s": "a" * 40 + "!"}})
    assert response.status == 400 and "unsafe" in response.error, response
    assert time.process_time() - started < 2
    assert api.get("/tasks").json["pagination"]["total"] == 0


def test_validation_that_runs_past_its_cpu_budget_answers_400_not_a_burning_process():
    from taskq.errors import BadRequest
    from taskq.validation import validate_params

    started = time.process_time()
    with pytest.raises(BadRequest) as refused:  # a pattern the static check cannot see
        validate_params({"pattern": "^(a|a)*$"}, "a" * 60 + "!", [0.3])
    assert "CPU" in refused.value.message
    assert time.process_time() - started < 1.5


def test_the_pattern_check_passes_common_patterns_and_refuses_exponential_ones():
    for safe in (r"^\d{4}-\d{2}-\d{2}$", r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", r"^[a-z]+(-[a-z]+)*$",
                 r"^([a-z]+,)*$", r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==)?$"):
        assert schemas.pattern_problem(safe) is None, safe
    for risky in (r"^(a+)+$", r"(a|a)*$", r"^(\d+\.?)+$", r"(x+x+)+y", r"(.*a){12}"):
        assert schemas.pattern_problem(risky), risky
