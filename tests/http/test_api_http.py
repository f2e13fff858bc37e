"""The HTTP surface shared by every route: envelope, headers, routing, auth,
request bodies, CORS, health, the OpenAPI document and failure answers.

Runs in-process through the WSGI app, on SQLite and on MariaDB.
"""

import io
import json
import re
import socket
import time

import pytest

from conftest import ApiClient, create, db_execute, make_config, register, snapshot
from taskq.app import Application
from taskq.router import ROUTES

JSON_TYPE = "application/json; charset=utf-8"


def without_timestamp(envelope):
    return {key: value for key, value in envelope.items() if key != "timestamp"}


def assert_json_headers(response):
    assert response.header("Content-Type") == JSON_TYPE
    assert response.header("Cache-Control") == "no-store"


def assert_error(response, status):
    assert response.status == status, response
    assert_json_headers(response)
    assert response.json["success"] is False
    assert isinstance(response.json["error"], str) and response.json["error"]
    assert response.json["message"] == response.json["error"]
    assert isinstance(response.json["timestamp"], int)
    assert set(response.json) <= {"success", "error", "message", "timestamp", "details"}


# -- envelope and headers ----------------------------------------------------
def test_success_envelope_has_success_message_data_and_json_headers(api):
    response = api.post("/task-types/register", {"name": "demo", "version": "1",
                                                  "param_schema": {"type": "object"}})
    assert response.status == 201
    assert_json_headers(response)
    assert set(response.json) == {"success", "message", "data", "timestamp"}
    assert abs(response.json["timestamp"] - time.time()) < 60
    assert response.json["success"] is True
    assert isinstance(response.json["message"], str) and response.json["message"]
    assert isinstance(response.data["id"], int)


@pytest.mark.parametrize("method, path, body, status", [
    ("GET", "/nope", None, 404),
    ("DELETE", "/tasks", None, 405),
    ("POST", "/tasks", [], 400),
    ("POST", "/tasks/claim", {"worker_id": 5}, 400),
    ("GET", "/tasks/999999", None, 404),
    ("POST", "/tasks/999999/complete", {"worker_id": "w", "success": True}, 404),
])
def test_error_responses_use_error_envelope_and_json_headers(api, method, path, body, status):
    response = api.request(method, path, body)
    assert_error(response, status)


def test_timestamps_are_iso_8601_utc_and_ids_integers(api):
    register(api)
    task = create(api)
    assert isinstance(task["id"], int)
    data = api.get("/tasks/%d" % task["id"]).data
    assert re.match(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z", data["created_at"])
    assert re.match(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z", data["updated_at"])


# -- routing -----------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/taskz", "/tasks/abc", "/tasks/1/nope", "/task-types/a/b"])
def test_unknown_route_is_404(api, path):
    response = api.get(path)
    assert_error(response, 404)


@pytest.mark.parametrize("method, path, allowed", [
    ("GET", "/tasks/claim", {"POST"}),
    ("DELETE", "/tasks/1", {"GET"}),
    ("PUT", "/tasks", {"GET", "POST"}),
    ("POST", "/health", {"GET"}),
    ("DELETE", "/task-types/demo", {"GET"}),
    ("GET", "/tasks/1/complete", {"POST"}),
])
def test_wrong_method_is_405_with_allow_header(api, method, path, allowed):
    response = api.request(method, path)
    assert_error(response, 405)
    allow = {m.strip() for m in response.header("Allow").split(",")}
    assert allowed <= allow
    assert allow <= allowed | {"OPTIONS", "HEAD"}


def test_trailing_slash_routes_like_without(api):
    assert api.get("/health/").status == 200


# a persistent server mounted at /<folder> (or gunicorn at /) passes /api/<route> and
# /cgi-bin/api.py/<route> as PATH_INFO, where CGI behind the shipped .htaccess sees /<route>
@pytest.mark.parametrize("mount", ["/api", "/cgi-bin/api.py"])
def test_routes_answer_behind_the_cgi_installs_api_segment_as_a_wsgi_server_passes_it(api, mount):
    assert api.post(mount + "/task-types/register",
                    {"name": "demo", "version": "1", "param_schema": {"type": "object"}}).status == 201
    created = api.post(mount + "/tasks", {"type": "demo", "params": {"n": 1}})
    assert created.status == 201, created
    assert api.get(mount + "/tasks/%d" % created.data["id"]).data["params"] == {"n": 1}
    claimed = api.post(mount + "/tasks/claim", {"worker_id": "w"})
    assert claimed.status == 200 and claimed.data["id"] == created.data["id"]
    assert api.get(mount + "/tasks?status=claimed").data[0]["id"] == created.data["id"]
    assert api.request("GET", mount + "/tasks/claim").status == 405
    assert_error(api.get(mount), 404)  # the segment alone names no route
    assert_error(api.get(mount + mount + "/health"), 404)  # and it is taken off once


def test_no_route_begins_with_a_segment_the_app_takes_off():
    from taskq.web import MOUNTS

    for _, rule, _ in ROUTES:
        assert not any(rule == m or rule.startswith(m + "/") for m in MOUNTS), rule


# -- request bodies ------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"[]", b"[1, 2]", b'"text"', b"5", b"null", b"true"])
def test_body_that_is_not_a_json_object_is_400(api, raw):
    register(api)
    before = snapshot(api)
    response = api.request("POST", "/tasks", raw=raw)
    assert_error(response, 400)
    assert "object" in response.error
    assert snapshot(api) == before


def test_malformed_json_is_400_saying_where_parsing_failed(api):
    response = api.request("POST", "/tasks/claim", raw=b'{"worker_id": "w1",\n "x": }')
    assert_error(response, 400)
    assert "line 2" in response.error and "column" in response.error


@pytest.mark.parametrize("raw", [b"", b"   ", b'{"worker_id": NaN}', b"\xff\xfe{}",
                                 b'{"worker_id": "w1"} trailing'])
def test_empty_or_invalid_json_body_is_400(api, raw):
    response = api.request("POST", "/tasks/claim", raw=raw)
    assert_error(response, 400)


def test_body_over_max_body_bytes_is_413_and_creates_nothing(api_factory):
    api = api_factory(api={"max_body_bytes": 2048})
    register(api)
    response = api.post("/tasks", {"type": "demo", "params": {"s": "x" * 5000}})
    assert_error(response, 413)
    assert api.get("/tasks").json["pagination"]["total"] == 0


def test_413_is_decided_from_content_length_before_reading_the_body(backend_config):
    class Unreadable(io.RawIOBase):
        def read(self, *args):
            raise AssertionError("the body was read")

        readline = readinto = read

    app = Application(config=backend_config)
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/tasks", "QUERY_STRING": "",
               "CONTENT_LENGTH": str(10 ** 12), "CONTENT_TYPE": "application/json",
               "wsgi.input": Unreadable(), "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1"}
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured.update(status=status, headers=dict(headers))

    body = b"".join(app(environ, start_response))
    assert captured["status"].startswith("413")
    assert json.loads(body.decode())["success"] is False


def test_invalid_content_length_is_400(api):
    response = api.request("POST", "/tasks/claim", raw=b"{}", headers={"Content-Length": "abc"})
    assert_error(response, 400)


# -- authentication ------------------------------------------------------------
@pytest.fixture
def keyed_api(api_factory):
    return api_factory(api={"api_key": "s3cret-key"})


@pytest.mark.parametrize("headers", [
    {},
    {"X-API-Key": "wrong"},
    {"X-API-Key": ""},
    {"X-API-Key": "s3cret-key-and-more"},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Basic s3cret-key"},
    {"Authorization": "s3cret-key"},
])
def test_missing_or_wrong_api_key_is_401(keyed_api, headers):
    for method, path in (("GET", "/tasks"), ("POST", "/tasks/claim"), ("GET", "/task-types")):
        response = keyed_api.request(method, path, {"worker_id": "w"} if method == "POST" else None,
                                     headers=headers)
        assert_error(response, 401)


def test_x_api_key_header_authorizes(keyed_api):
    response = keyed_api.get("/tasks", headers={"X-API-Key": "s3cret-key"})
    assert response.status == 200


def test_authorization_bearer_authorizes(keyed_api):
    response = keyed_api.get("/tasks", headers={"Authorization": "Bearer s3cret-key"})
    assert response.status == 200
    response = keyed_api.post("/tasks/claim", {"worker_id": "w"},
                              headers={"Authorization": "bearer s3cret-key"})
    assert response.status == 404  # authorized; the queue is just empty


def test_health_and_openapi_need_no_api_key(keyed_api):
    assert keyed_api.get("/health").status == 200
    assert keyed_api.get("/openapi.json").status == 200


def test_401_changes_nothing(keyed_api):
    auth = {"X-API-Key": "s3cret-key"}
    keyed_api.post("/task-types/register", {"name": "demo", "version": "1",
                                            "param_schema": {"type": "object"}}, headers=auth)
    response = keyed_api.post("/tasks", {"type": "demo", "params": {}})
    assert_error(response, 401)
    assert keyed_api.get("/tasks", headers=auth).json["pagination"]["total"] == 0


# -- CORS ----------------------------------------------------------------------
@pytest.fixture
def cors_api(api_factory):
    return api_factory(api={"cors_origins": "https://app.example, https://other.example",
                            "api_key": "k"})


def test_options_preflight_for_configured_origin(cors_api):
    response = cors_api.request("OPTIONS", "/tasks/claim", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-api-key"})
    assert response.status in (200, 204)
    assert response.header("Access-Control-Allow-Origin") == "https://app.example"
    assert "POST" in response.header("Access-Control-Allow-Methods")
    allowed_headers = response.header("Access-Control-Allow-Headers").lower()
    assert "x-api-key" in allowed_headers and "content-type" in allowed_headers
    assert "authorization" in allowed_headers
    assert response.header("Cache-Control") == "no-store"


def test_options_preflight_for_other_origin_grants_nothing(cors_api):
    response = cors_api.request("OPTIONS", "/tasks/claim", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert response.header("Access-Control-Allow-Origin") is None
    assert response.header("Access-Control-Allow-Methods") is None


def test_cors_origin_header_on_normal_responses_for_configured_origin(cors_api):
    response = cors_api.get("/health", headers={"Origin": "https://other.example"})
    assert response.status == 200
    assert response.header("Access-Control-Allow-Origin") == "https://other.example"
    response = cors_api.get("/tasks", headers={"Origin": "https://app.example"})
    assert_error(response, 401)
    assert response.header("Access-Control-Allow-Origin") == "https://app.example"


def test_options_on_unknown_route_is_404(cors_api):
    response = cors_api.request("OPTIONS", "/nope", headers={"Origin": "https://app.example"})
    assert_error(response, 404)


# -- health --------------------------------------------------------------------
def test_health_reports_status_database_and_version(api, backend):
    response = api.get("/health")
    assert response.status == 200
    assert_json_headers(response)
    assert response.data["status"] == "ok"
    assert response.data["database"]["reachable"] is True
    assert response.data["database"]["backend"] == backend
    assert isinstance(response.data["version"], str) and response.data["version"]


def _closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_health_is_503_with_retry_after_when_mysql_is_unreachable(tmp_path):
    config = make_config("mysql", tmp_path, "taskq_nowhere",
                         database={"port": _closed_port(), "connect_timeout": 2})
    response = ApiClient(Application(config=config)).get("/health")
    assert_error(response, 503)
    assert int(response.header("Retry-After")) > 0
    assert "taskq_nowhere" not in response.raw.decode()


def test_task_routes_are_503_when_mysql_is_unreachable(tmp_path):
    config = make_config("mysql", tmp_path, "taskq_nowhere",
                         database={"port": _closed_port(), "connect_timeout": 2})
    api = ApiClient(Application(config=config))
    response = api.post("/tasks/claim", {"worker_id": "w1"})
    assert_error(response, 503)
    assert int(response.header("Retry-After")) > 0


def test_health_is_503_when_sqlite_path_is_unusable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    config = make_config("sqlite", tmp_path, database={"sqlite_path": str(blocker / "db.sqlite3")})
    response = ApiClient(Application(config=config)).get("/health")
    assert_error(response, 503)
    assert int(response.header("Retry-After")) > 0
    assert str(tmp_path) not in response.raw.decode()


@pytest.mark.mysql
def test_mysql_database_without_tables_is_503_naming_the_installer(tmp_path, scratch_mysql_database):
    config = make_config("mysql", tmp_path, scratch_mysql_database(schema=False))
    api = ApiClient(Application(config=config))
    for response in (api.post("/tasks/claim", {"worker_id": "w1"}), api.get("/tasks"),
                     api.get("/health")):
        assert_error(response, 503)
        assert "installer" in response.error
        assert response.header("Retry-After")


# -- unexpected errors -----------------------------------------------------------
LEAKS = ("Traceback", "SELECT", "UPDATE", "progress_message", "sqlite3", "pymysql", "File \"")


def test_unexpected_database_error_is_generic_500_without_details(backend, tmp_path, request):
    # A row corrupted behind the service's back (params that are not JSON):
    # the answer meets an error nothing translates. (A missing table or column
    # reads as "run the installer", a 503.) On MariaDB this breaks a database of its own.
    if backend == "mysql":
        config = make_config("mysql", tmp_path, request.getfixturevalue("scratch_mysql_database")())
    else:
        config = make_config("sqlite", tmp_path)
    api = ApiClient(Application(config=config))
    register(api)
    task = create(api)
    db_execute(config, "UPDATE tasks SET params_json = ? WHERE id = ?", ("{not json", task["id"]))
    response = api.get("/tasks/%d" % task["id"])
    assert_error(response, 500)
    assert without_timestamp(response.json) == {"success": False, "error": "Internal server error",
                                                "message": "Internal server error"}
    text = response.raw.decode()
    for leak in LEAKS + (str(tmp_path),):
        assert leak not in text


def test_corrupt_sqlite_file_answers_without_leaking_path_or_sql(tmp_path):
    config = make_config("sqlite", tmp_path)
    api = ApiClient(Application(config=config))
    register(api)
    with open(config.database["sqlite_path"], "r+b") as handle:
        handle.write(b"this is not an sqlite database" * 200)
    response = ApiClient(Application(config=config)).post("/tasks/claim", {"worker_id": "w1"})
    assert response.status == 503, response  # the store cannot be opened: down, not a bug
    assert response.json["success"] is False
    text = response.raw.decode()
    for leak in LEAKS + (str(tmp_path),):
        assert leak not in text


# -- configuration ---------------------------------------------------------------
@pytest.mark.parametrize("text, words", [
    ("[database]\nbackend = postgres\n", ["backend", "postgres", "sqlite", "mysql"]),
    ("[queue]\nclaim_timeout = soon\n", ["claim_timeout", "soon"]),
    ("[queue]\nmax_attempts = 0\n", ["max_attempts"]),
    ("[queue]\nhistory = maybe\n", ["history"]),
    ("[api]\nmax_body_bytes = 1.5\n", ["max_body_bytes"]),
    ("[database]\nbakend = sqlite\n", ["bakend"]),
    ("[nonsense]\nx = 1\n", ["nonsense"]),
    ("backend = sqlite\n", ["section"]),
])
def test_bad_config_answers_a_clear_message_not_a_traceback(tmp_path, text, words):
    path = tmp_path / "config.ini"
    path.write_text(text, encoding="utf-8")
    api = ApiClient(Application(config_path=str(path)))
    for response in (api.get("/health"), api.post("/tasks/claim", {"worker_id": "w"})):
        assert response.status == 500, response
        assert_json_headers(response)
        assert response.json["success"] is False
        assert "Traceback" not in response.error
        for word in words:
            assert word in response.error


@pytest.mark.parametrize("text, words", [
    ("password = hunter2\n[database]\n", ["line 1", "section"]),
    ("[database]\npassword hunter2\n", ["line 2"]),
    ("[database]\npassword = a\n  hunter2\n[api]\napi_key = k\n[api]\n", ["[api]", "twice"]),
    ("[database]\npassword = hunter2\npassword = hunter2\n", ["password", "twice"]),
])
def test_unparsable_config_message_names_the_line_not_its_contents(tmp_path, text, words):
    path = tmp_path / "config.ini"
    path.write_text(text, encoding="utf-8")
    response = ApiClient(Application(config_path=str(path))).get("/health")
    assert response.status == 500, response
    for word in words:
        assert word in response.error
    assert "hunter2" not in response.raw.decode()
    assert str(tmp_path) not in response.raw.decode()


def test_config_with_only_api_section_runs_on_sqlite_default(tmp_path, monkeypatch):
    path = tmp_path / "config.ini"
    path.write_text("[api]\nmax_body_bytes = 4096\n[database]\nsqlite_path = data/q.sqlite3\n",
                    encoding="utf-8")
    api = ApiClient(Application(config_path=str(path)))
    response = api.get("/health")
    assert response.status == 200
    assert response.data["database"]["backend"] == "sqlite"
    assert (tmp_path / "data" / "q.sqlite3").exists()


# -- OpenAPI ---------------------------------------------------------------------
def test_openapi_document_is_3_1_and_lists_every_route(api):
    response = api.get("/openapi.json")
    assert response.status == 200
    assert response.header("Content-Type").startswith("application/json")
    doc = response.json
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] and doc["info"]["version"]
    for method, rule, handler in ROUTES:
        if handler.startswith("dashboard."):
            continue  # HTML pages for people, not the API (README lists them)
        path = re.sub(r"\{(\w+):int\}", r"{\1}", rule)
        assert path in doc["paths"], path
        operation = doc["paths"][path].get(method.lower())
        assert operation is not None, (method, path)
        assert operation.get("responses"), (method, path)
        for name in re.findall(r"\{(\w+)\}", path):
            params = operation.get("parameters", []) + doc["paths"][path].get("parameters", [])
            params = [p for p in params if "$ref" not in p] or params
            assert any(p.get("name") == name or "$ref" in p for p in params), (path, name)
    json.dumps(doc)  # serializable as is


def test_401_names_the_scheme_in_www_authenticate(keyed_api):
    response = keyed_api.get("/tasks")
    assert_error(response, 401)
    assert response.header("WWW-Authenticate") == 'Bearer realm="taskq"'


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_get_or_head_of_the_register_route_is_405_not_a_type_lookup(api, method):
    response = api.request(method, "/task-types/register")
    assert response.status == 405, response
    assert response.header("Allow") == "OPTIONS, POST"
    assert api.request("OPTIONS", "/task-types/register").header("Allow") == "OPTIONS, POST"
