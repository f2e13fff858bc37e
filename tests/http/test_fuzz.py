"""A bounded fuzz run: hypothesis-made requests into the WSGI app, on both backends.

Requests mix real routes with hostile parts: JSON values JSON cannot carry
(1e400, NaN, lone surrogates, deep nesting), random bytes, broken query
strings, Content-Length that lies, chunked bodies, odd methods. For every
request: never a 500, the answer is strict RFC 8259 JSON, and a 4xx answer
changed nothing in the database.

TASKQ_FUZZ_EXAMPLES sets the number of requests per backend (default 600,
about 10 s on SQLite); the run is seeded per process by hypothesis, and a
failure prints the request that caused it.
"""

import json
import os

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import ApiClient  # noqa: E402
from support.dbstate import DbState  # noqa: E402
from taskq.app import Application  # noqa: E402

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("TASKQ_FUZZ_EXAMPLES", "600"))

# -- JSON text, hostile or not -------------------------------------------------
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "%\x00", "demo", "de%", "_", "\\", "w1"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)


def dumps(value):
    """JSON text Python can write: Infinity/NaN literals, surrogates as \\u escapes."""
    return json.dumps(value, allow_nan=True)


FIELDS = ["type", "params", "priority", "tasks", "name", "version", "param_schema", "max_attempts",
          "claim_timeout", "is_active", "worker_id", "type_pattern", "limit", "lease_seconds",
          "progress", "message", "success", "result", "error", "results", "id", "filter",
          "max_concurrency", "dedupe_scope", "is_paused"]


@st.composite
def json_bodies(draw):
    """Mostly a request-shaped object with some fields replaced by hostile values."""
    base = dict(draw(st.sampled_from([
        {"type": "demo", "params": {"n": 1}},
        {"tasks": [{"type": "demo", "params": {"n": 2}}, {"type": "demo", "params": {}}]},
        {"name": "demo", "version": "1", "param_schema": {"type": "object"}},
        {"worker_id": "w1"}, {"worker_id": "w1", "limit": 3, "type_pattern": "de%"},
        {"worker_id": "w1", "progress": 10, "message": "m"},
        {"worker_id": "w1", "success": True, "result": {"ok": 1}},
        {"worker_id": "w1", "results": [{"id": 1, "success": True, "result": 1}]},
        {"filter": {"type": "de%", "status": "pending"}, "limit": 2},
        {"filter": {"error_contains": "x", "older_than_seconds": 0}},
        {"max_concurrency": 2, "dedupe_scope": "all", "is_paused": False},
    ])))
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        base[field] = draw(values)
    text = dumps(base)
    kind = draw(st.integers(0, 9))
    if kind == 0:  # nesting: past 100 levels, or past the decoder's recursion limit
        depth = draw(st.sampled_from([99, 100, 101, 150, 3000]))
        text = text[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    elif kind == 1:
        text = text[:-1] + ', "big": %s}' % draw(st.sampled_from(["1e400", "-1e999", "9" * 4400]))
    elif kind == 2:  # cut or garbled
        text = text[:draw(st.integers(0, len(text)))]
    return text.encode("utf-8", "surrogatepass")


bodies = st.one_of(json_bodies(), st.binary(max_size=64), st.just(b""))

paths = st.one_of(
    st.sampled_from(["/health", "/openapi.json", "/task-types", "/task-types/register",
                     "/task-types/demo", "/tasks", "/tasks/claim", "/tasks/complete", "/tasks/1",
                     "/tasks/1/history", "/tasks/1/progress", "/tasks/1/complete", "/tasks/2/complete",
                     "/", "/tasks/", "//tasks", "/tasks/99999999999999999999",
                     "/task-types/%00", "/task-types/\u00e9", "/tasks/bulk/cancel",
                     "/tasks/bulk/retry", "/tasks/1/cancel", "/tasks/1/retry", "/tasks/1/rerun",
                     "/task-types/demo/pause", "/task-types/demo/resume",
                     "/task-types/demo/settings"]),
    st.text(alphabet="/abcdefgt-0123456789%.", max_size=30).map(lambda s: "/" + s))

queries = st.one_of(
    st.just(""),
    st.lists(st.tuples(st.sampled_from(["status", "type", "limit", "offset", "active_only", "x"]),
                       st.one_of(st.sampled_from(["%00", "%ED%A0%80", "%FF", "1e400", "-1", "de%25",
                                                  "pending", "true", "9" * 30]),
                                 st.text(alphabet="abc%019&=+", max_size=8))),
             max_size=3).map(lambda pairs: "&".join("%s=%s" % p for p in pairs)))


@st.composite
def requests(draw):
    method = draw(st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "DELETE", "HEAD", "OPTIONS"]))
    body = draw(bodies) if method in ("POST", "PUT", "DELETE") else b""
    headers = {}
    lie = draw(st.sampled_from([None, None, None, "short", "long", "chunked", "bad"]))
    if lie == "short" and body:
        headers["Content-Length"] = str(len(body) - 1)
    elif lie == "long":
        headers["Content-Length"] = str(len(body) + 10)
    elif lie == "chunked":
        headers["Content-Length"] = ""
        headers["Transfer-Encoding"] = "chunked"
    elif lie == "bad":
        headers["Content-Length"] = draw(st.sampled_from(["-1", "abc", "1e3", " "]))
    return method, draw(paths), draw(queries), body, headers


def strict_json(raw):
    def refuse(name):
        raise AssertionError("non-JSON constant %s in an answer" % name)

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


def test_fuzzed_requests_never_500_answer_strict_json_and_4xx_changes_nothing(config_factory):
    config = config_factory(api={"max_body_bytes": 65536})
    api = ApiClient(Application(config=config))
    assert api.post("/task-types/register", {"name": "demo", "version": "1",
                                             "param_schema": {"type": "object"}}).status == 201
    api.post("/tasks", {"type": "demo", "params": {"n": 0}})
    api.post("/tasks/claim", {"worker_id": "w1"})
    db_state = DbState(config)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests())
    def one(request):
        method, path, query, body, headers = request
        before = db_state()
        response = api.request(method, path, raw=body, headers=headers, query=query)
        assert response.status < 500, response
        if method == "HEAD" or response.status == 204:
            assert response.raw == b""
            return
        answer = strict_json(response.raw)
        if response.status >= 400:
            assert answer["success"] is False and answer["error"], answer
            assert db_state() == before, response

    try:
        one()
    finally:
        db_state.close()
