"""Shared fixtures: a fresh store per test on each backend, and a WSGI caller.

`backend_config` is parametrized over sqlite and mysql, so every test that
uses it (directly or through `api`) runs on both. MariaDB tests use a
throwaway database created for this run and dropped after it; with CI=true
an unreachable server fails the run instead of skipping.

The tests live in layers, shallow to deep: unit/ (Python only), store/ (each
backend's store), http/ (the app in-process and as real processes), deploy/
(the app as deployed). In deploy/ a file's name gives its tests their marker
(DEPLOY_MARKERS), so no test lists it; `mysql` comes with the `backend` param.
"""

import fnmatch
import io
import json
import os
import sys
import uuid

import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
LAYERS = ("unit", "store", "http", "deploy")  # README, "Development": what each needs
sys.path.insert(0, os.path.join(ROOT, "lib"))
# tests/ for the helpers (support/, cgi_runner, live_server, this module's functions), and
# each layer, so a test module imports another by name whichever folder either is in
# (test_wsgi_servers runs http/'s suites again); pytest's default import mode already
# needs every test file's name to be unique across the folders
for _layer in reversed(LAYERS):
    sys.path.insert(0, os.path.join(TESTS, _layer))
sys.path.insert(0, TESTS)

from taskq import config as config_module  # noqa: E402
from taskq.app import Application  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"


def mysql_params():
    """Connection settings for the test server, from TASKQ_TEST_MYSQL="host=.. port=.. user=.. password=..."."""
    params = {"host": "127.0.0.1", "port": "3306", "user": "root", "password": ""}
    for part in os.environ.get("TASKQ_TEST_MYSQL", "").split():
        key, _, value = part.partition("=")
        params[key] = value
    params["port"] = int(params["port"])
    return params


def mysql_connect(database=None, **extra):
    import pymysql

    p = mysql_params()
    return pymysql.connect(host=p["host"], port=p["port"], user=p["user"], password=p["password"],
                           database=database, autocommit=True, charset="utf8mb4", **extra)


def load_mysql_schema(conn, path=os.path.join(ROOT, "schema.sql")):
    with open(path, encoding="utf-8") as handle:
        script = "\n".join(line for line in handle.read().splitlines()
                           if not line.lstrip().startswith("--"))
    with conn.cursor() as cur:
        for statement in script.split(";"):
            if statement.strip():
                cur.execute(statement)


def mysql_admin():
    """A connection to the test server without a database; with CI=true an
    unreachable server fails the test, elsewhere it skips it."""
    try:
        return mysql_connect()
    except Exception as exc:  # noqa: BLE001
        if IN_CI:
            pytest.fail("MariaDB is required in CI and is unreachable: %s" % exc)
        pytest.skip("MariaDB not reachable: %s" % exc)


def create_database(conn, prefix):
    name = "%s_%s" % (prefix, uuid.uuid4().hex[:12])
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % name)
    return name


@pytest.fixture
def scratch_databases():
    """make(prefix) -> name of a new, empty throwaway database; all dropped afterwards."""
    admin, made = mysql_admin(), []

    def make(prefix="taskq_scratch"):
        made.append(create_database(admin, prefix))
        return made[-1]

    yield make
    with admin.cursor() as cur:
        for name in made:
            cur.execute("DROP DATABASE IF EXISTS %s" % name)
    admin.close()


@pytest.fixture(scope="session")
def mysql_database():
    """Name of a throwaway MariaDB database holding schema.sql, for this run."""
    conn = mysql_admin()
    name = create_database(conn, "taskq_test")
    conn.select_db(name)
    load_mysql_schema(conn)
    yield name
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS %s" % name)
    conn.close()


def empty_mysql(database):
    conn = mysql_connect(database)
    with conn.cursor() as cur:
        cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        for table in ("task_history", "tasks", "task_dependencies", "task_schedules", "task_types",
                      "taskq_claim_requests", "task_counts", "task_runs", "api_keys",
                      "dashboard_sessions", "login_failures"):
            # DELETE, not TRUNCATE: ~2 ms instead of ~70 ms per table, per test
            cur.execute("DELETE FROM %s" % table)
        cur.execute("SET FOREIGN_KEY_CHECKS = 1")
    conn.close()


def make_config(backend, tmp_path, mysql_db=None, **sections):
    """A Config for `backend`; sections={"queue": {"claim_timeout": "2"}} override keys.

    Also writes it to tmp_path/config.ini so CGI processes can use it
    (config.path)."""
    lines = {"database": {"backend": backend}}
    if backend == "sqlite":
        lines["database"]["sqlite_path"] = str(tmp_path / "taskq.sqlite3")
    else:
        p = mysql_params()
        lines["database"].update(host=p["host"], port=str(p["port"]), user=p["user"],
                                 password=p["password"], name=mysql_db)
    for section, values in sections.items():
        lines.setdefault(section, {}).update({k: str(v) for k, v in values.items()})
    text = "".join("[%s]\n%s\n" % (section, "".join("%s = %s\n" % kv for kv in values.items()))
                   for section, values in lines.items())
    path = tmp_path / "config.ini"
    path.write_text(text, encoding="utf-8")
    return config_module.load(str(path))


# tests/deploy/: a file's name says what it runs on, and gives its tests that marker
DEPLOY_MARKERS = (("test_apache*.py", "apache"), ("*_browser.py", "browser"),
                  ("test_wsgi_servers*.py", "servers"), ("test_galera*.py", "galera"))


def layer_markers(path):
    """The markers a test file's place implies: tests/deploy/test_apache_uploads.py is `apache`."""
    folder, name = os.path.split(os.path.relpath(str(path), TESTS))
    if folder != "deploy":
        return ()
    return tuple(mark for family, mark in DEPLOY_MARKERS if fnmatch.fnmatch(name, family))


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
    implied = {}
    for item in items:
        path = str(item.path)
        if path not in implied:
            implied[path] = layer_markers(path)
        for mark in implied[path]:
            item.add_marker(mark)
    if any(getattr(getattr(item, "module", None), "__name__", "") == "test_wsgi_servers" for item in items):
        from test_wsgi_servers import deselect_beyond_suite

        deselect_beyond_suite(config, items)


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def backend(request):
    return request.param


@pytest.fixture
def config_factory(backend, tmp_path, request):
    """config_factory(queue={...}, api={...}) -> Config on this test's backend, fresh data."""
    mysql_db = None
    if backend == "mysql":
        mysql_db = request.getfixturevalue("mysql_database")
        empty_mysql(mysql_db)

    def factory(**sections):
        return make_config(backend, tmp_path, mysql_db, **sections)

    return factory


@pytest.fixture
def backend_config(config_factory):
    return config_factory()


@pytest.fixture
def server(config_factory, tmp_path):
    """The dev server on this test's backend, as a separate process (live_server.py)."""
    from live_server import LiveServer

    srv = LiveServer(config_factory().path, tmp_path / "server.log")
    yield srv
    srv.close()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        kind = self.header("Content-Type") or "application/json"
        # /docs answers HTML, CSS and JavaScript, /metrics text
        self.json = json.loads(body.decode("utf-8")) if body and "json" in kind else None

    @property
    def data(self):
        return self.json["data"]

    @property
    def error(self):
        return self.json.get("error")

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def __repr__(self):
        return "<Response %d %s>" % (self.status, self.raw[:300])


class ApiClient:
    """Calls the WSGI app in-process, as a server would, and parses the JSON."""

    def __init__(self, app):
        self.app = app

    def request(self, method, path, body=None, headers=None, raw=None, query=""):
        from wsgiref.util import setup_testing_defaults

        if raw is None:
            raw = b"" if body is None else json.dumps(body).encode("utf-8")
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
                   "CONTENT_LENGTH": str(len(raw)), "CONTENT_TYPE": "application/json",
                   "wsgi.input": io.BytesIO(raw)}
        for key, value in (headers or {}).items():
            name = key.upper().replace("-", "_")
            environ[name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + name] = value
        setup_testing_defaults(environ)
        captured = {}

        def start_response(status, response_headers, exc_info=None):
            captured["status"] = int(status.split()[0])
            captured["headers"] = response_headers

        body_bytes = b"".join(self.app(environ, start_response))
        return Response(captured["status"], captured["headers"], body_bytes)

    def get(self, path, **kw):
        if "?" in path:
            path, kw["query"] = path.split("?", 1)
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)


@pytest.fixture
def api_factory(config_factory):
    """api_factory(queue={...}) -> ApiClient on a fresh store with those settings."""

    def factory(**sections):
        return ApiClient(Application(config=config_factory(**sections)))

    return factory


@pytest.fixture
def api(api_factory):
    return api_factory()


# -- helpers shared by the behavioural, CGI and concurrency tests ------------
# (plain functions: `from conftest import register, create, ...`)

DEMO_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def shell_key(config, name="first", role="admin"):
    """A key made the way an owner makes the first one (`install.py --create-key`,
    straight in the store): the API itself never hands a key to a keyless caller."""
    from taskq import admin
    from taskq.store import open_store

    store = open_store(config)
    try:
        return admin.make_key(store, name, role)["key"]
    finally:
        store.close()


def register(api, name="demo", schema=None, version="1.0", **extra):
    """Register a task type through the API; returns the response data."""
    body = {"name": name, "version": version,
            "param_schema": DEMO_SCHEMA if schema is None else schema}
    body.update(extra)
    response = api.post("/task-types/register", body)
    assert response.status in (200, 201), response
    return response.data


def create(api, params=None, type="demo", **extra):
    """Create one task; returns the response data (asserts 200/201)."""
    body = {"type": type, "params": {"n": 1} if params is None else params}
    body.update(extra)
    response = api.post("/tasks", body)
    assert response.status in (200, 201), response
    return response.data


def claim(api, worker_id="w1", **extra):
    """Claim one task; returns the response (200 or 404)."""
    body = {"worker_id": worker_id}
    body.update(extra)
    return api.post("/tasks/claim", body)


def snapshot(api):
    """Everything a request could change, as the API shows it."""
    tasks = api.get("/tasks", query="limit=1000").data
    return {"tasks": tasks,
            "types": api.get("/task-types").data,
            "history": {t["id"]: api.get("/tasks/%d/history" % t["id"]).data["events"]
                        for t in tasks}}


def db_execute(config, sql, params=()):
    """Run one statement straight on the test database (`?` placeholders)."""
    if config.backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(config.database["sqlite_path"], isolation_level=None)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    conn = mysql_connect(config.database["name"])
    try:
        with conn.cursor() as cur:
            cur.execute(sql.replace("?", "%s"), params)
            return cur.fetchall()
    finally:
        conn.close()


@pytest.fixture
def scratch_mysql_database():
    """scratch_mysql_database(schema=True) -> name of a new throwaway MariaDB
    database (with or without schema.sql) that a test may break; all dropped after."""
    try:
        conn = mysql_connect()
    except Exception as exc:  # noqa: BLE001
        if IN_CI:
            pytest.fail("MariaDB is required in CI and is unreachable: %s" % exc)
        pytest.skip("MariaDB not reachable: %s" % exc)
    names = []

    def factory(schema=True):
        name = "taskq_scratch_%s" % uuid.uuid4().hex[:12]
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % name)
        names.append(name)
        if schema:
            conn.select_db(name)
            load_mysql_schema(conn)
        return name

    yield factory
    with conn.cursor() as cur:
        for name in names:
            cur.execute("DROP DATABASE IF EXISTS %s" % name)
    conn.close()
