"""The database's schema version is checked in both directions on every request,
and the maintained counters can always be recounted.

- Files newer than the database (a release uploaded, its upgrade step not run
  yet): every route, /health included, answers 503 naming the pending
  migrations, so monitoring sees it; the upgrade step then heals the counters.
- A database newer than the files (an older zip uploaded by mistake): every
  route answers 503 "database schema vN is newer than this release (vM):
  upload release >= X" and changes nothing.
- POST /admin/recount (and the dashboard's button) heals counters drifted on
  purpose; recounting while other processes write never adds a drift.

On SQLite and MariaDB, in-process and through real CGI processes. Each test
has a database of its own: moving a schema version is not undone by emptying
tables.
"""

import multiprocessing
import os
import sqlite3
import subprocess
import sys

import pytest

from cgi_runner import run_cgi
from conftest import ROOT, ApiClient, db_execute, make_config, mysql_connect, register, shell_key
from taskq.app import Application
from test_dashboard import Browser
from taskq.store.mysql import SCHEMA_VERSION as MYSQL_VERSION
from taskq.store.sqlite import SCHEMA_VERSION as SQLITE_VERSION

KEY = "schema-versions-admin-key"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture
def own_config(backend, tmp_path, request):
    """A Config (with an admin key in config.ini) on a database only this test uses."""
    if backend == "mysql":
        database = request.getfixturevalue("scratch_mysql_database")()
        return make_config("mysql", tmp_path, database, api={"api_key": KEY})
    return make_config("sqlite", tmp_path, api={"api_key": KEY})


class Keyed(ApiClient):
    def request(self, method, path, body=None, headers=None, **kw):
        return super().request(method, path, body, headers=dict(HEADERS, **(headers or {})), **kw)


def keyed_api(config):
    return Keyed(Application(config_path=config.path))


def release_version(config):
    return MYSQL_VERSION if config.backend == "mysql" else SQLITE_VERSION


def rows(config):
    """What a refused request must not change, read straight from the tables."""
    return {table: db_execute(config, "SELECT * FROM %s ORDER BY 1, 2" % table)
            for table in ("tasks", "task_types", "task_counts", "task_history", "api_keys",
                          "task_schedules", "dashboard_sessions")}


def make_newer(config, version=99, release="9.9.0"):
    """The database as a later release's upgrade step would leave it."""
    if config.backend == "mysql":
        db_execute(config, "INSERT INTO taskq_schema_version (version, applied_at, needs_release) "
                           "VALUES (?, UTC_TIMESTAMP(6), ?)", (version, release))
        return
    conn = sqlite3.connect(config.database["sqlite_path"], isolation_level=None)
    try:
        conn.execute("INSERT INTO taskq_schema_version VALUES (?, ?, 0)", (version, release))
        conn.execute("PRAGMA user_version = %d" % version)
    finally:
        conn.close()


def stats_counts(api):
    return {(t, s): n for t, info in api.get("/stats").data["types"].items()
            for s, n in info["counts"].items() if n}


def table_counts(config):
    return {(t, s): n for t, s, n in db_execute(
        config, "SELECT type, status, COUNT(*) FROM tasks GROUP BY type, status")}


# -- a database newer than this release --------------------------------------------
REFUSED_ROUTES = [
    ("GET", "/health", None), ("POST", "/tasks", {"type": "demo", "params": {"n": 2}}),
    ("POST", "/tasks/claim", {"worker_id": "w"}), ("GET", "/tasks", None),
    ("GET", "/tasks/1", None), ("POST", "/tasks/1/complete", {"worker_id": "w", "success": True}),
    ("GET", "/stats", None), ("GET", "/metrics", None), ("GET", "/task-types", None),
    ("POST", "/task-types/register", {"name": "other", "version": "1", "param_schema": {}}),
    ("POST", "/admin/keys", {"name": "late", "role": "admin"}), ("POST", "/admin/purge", None),
    ("POST", "/admin/recount", None), ("GET", "/schedules", None),
    ("POST", "/schedules", {"type": "demo", "params": {}, "every_seconds": 60}),
]


def test_every_route_refuses_a_database_a_newer_release_migrated_and_changes_nothing(own_config):
    api = keyed_api(own_config)
    register(api)
    assert api.post("/tasks", {"type": "demo", "params": {"n": 1}}).status == 201
    browser = Browser(api.app)
    assert browser.login(KEY).status == 303
    make_newer(own_config)
    before = rows(own_config)
    want = ("database schema v99 is newer than this release (v%d): upload release \u2265 9.9.0"
            % release_version(own_config))
    api = keyed_api(own_config)  # a fresh process's view: the old zip just uploaded
    for method, path, body in REFUSED_ROUTES:
        response = api.request(method, path, body)
        assert response.status == 503, (path, response)
        assert response.json["message"] == want, path
        assert response.json["details"]["status"] == "schema_newer"
    page = browser.get("/dashboard")
    assert page.status == 503 and "is newer than this release" in page.body
    assert rows(own_config) == before
    for path, body in (("/health", None), ("/tasks", {"type": "demo", "params": {"n": 3}})):
        cgi = run_cgi("POST" if body else "GET", path, body, headers=HEADERS,
                      config_path=own_config.path)
        assert cgi.status == 503 and cgi.json["message"] == want, cgi
        assert b"Traceback" not in cgi.raw
    assert rows(own_config) == before
    if own_config.backend == "sqlite":
        assert db_execute(own_config, "PRAGMA user_version") == [(99,)]


def test_a_newer_database_without_a_named_release_still_says_what_to_do(own_config):
    keyed_api(own_config).get("/health")
    make_newer(own_config, release=None)
    response = keyed_api(own_config).get("/health")
    assert response.status == 503
    assert response.json["message"].endswith("newer than this release (v%d): upload the newer "
                                             "release again" % release_version(own_config))


# -- files newer than the database: the upgrade step not run yet --------------------
@pytest.mark.mysql
def test_health_and_every_route_name_the_pending_migration_until_the_upgrade_runs(
        scratch_mysql_database, tmp_path):
    database = scratch_mysql_database()
    config = make_config("mysql", tmp_path, database, api={"api_key": KEY})
    api = keyed_api(config)
    register(api)
    for n in range(3):
        assert api.post("/tasks", {"type": "demo", "params": {"n": n}}).status == 201
    # the database as the previous release (schema v8) left it, with a counter drifted
    db_execute(config, "DELETE FROM taskq_schema_version WHERE version IN (9, 10)")
    db_execute(config, "ALTER TABLE taskq_schema_version DROP COLUMN needs_release")
    db_execute(config, "DROP TABLE task_dependencies")
    db_execute(config, "ALTER TABLE tasks DROP COLUMN waiting_on, DROP COLUMN on_parent_failure, "
                       "DROP COLUMN cancelled_by")
    db_execute(config, "UPDATE task_counts SET n = n + 4 WHERE status = 'pending'")
    db_execute(config, "UPDATE task_types SET usage_count = 1")
    before = rows(config)
    api = keyed_api(config)
    health = api.get("/health")
    assert health.status == 503, health
    assert "pending migrations 0009_schema_release, 0010_dependencies" in health.json["message"]
    assert health.json["details"]["status"] == "upgrade_pending"
    assert health.json["details"]["schema"] == {"database": 8, "release": 10,
                                                "pending": ["0009_schema_release",
                                                            "0010_dependencies"]}
    for method, path, body in REFUSED_ROUTES[1:]:
        response = api.request(method, path, body)
        assert response.status == 503, (path, response)
        assert response.json["message"] == health.json["message"], path
    cgi = run_cgi("GET", "/health", config_path=config.path)
    assert cgi.status == 503 and "0009_schema_release" in cgi.json["message"]
    assert rows(config) == before

    upgrade = subprocess.run([sys.executable, os.path.join(ROOT, "install.py"), "--migrate",
                              "--config", str(config.path)], capture_output=True, text=True,
                             timeout=120)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "0009" in upgrade.stderr + upgrade.stdout and "0010" in upgrade.stderr + upgrade.stdout
    api = keyed_api(config)
    assert api.get("/health").data["status"] == "ok"
    assert api.get("/health").data["database"]["schema"] == 10
    assert stats_counts(api) == table_counts(config) == {("demo", "pending"): 3}  # healed
    assert api.get("/task-types/demo").data["usage_count"] == 3
    assert list(db_execute(config, "SELECT needs_release FROM taskq_schema_version "
                                   "WHERE version >= 9")) == [("0.5.0",), ("0.5.0",)]


def test_an_older_sqlite_file_is_upgraded_and_recounted_when_first_opened(tmp_path):
    config = make_config("sqlite", tmp_path, api={"api_key": KEY})
    api = keyed_api(config)
    register(api)
    for n in range(2):
        api.post("/tasks", {"type": "demo", "params": {"n": n}})
    conn = sqlite3.connect(config.database["sqlite_path"], isolation_level=None)
    conn.execute("DROP TABLE taskq_schema_version")  # as release 0.1's version 7 had it
    conn.execute("UPDATE task_counts SET n = n + 5")
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    api = keyed_api(config)
    assert stats_counts(api) == {("demo", "pending"): 2}
    assert db_execute(config, "PRAGMA user_version") == [(SQLITE_VERSION,)]
    assert db_execute(config, "SELECT version, needs_release FROM taskq_schema_version") == [
        (8, "0.5.0"), (9, "0.5.0")]


# -- recount ---------------------------------------------------------------------------
def test_recount_heals_counters_drifted_on_purpose(api_factory, backend_config):
    api = Keyed(api_factory(api={"api_key": KEY}).app)
    register(api)
    register(api, "other")
    for n in range(4):
        api.post("/tasks", {"type": "demo", "params": {"n": n}})
    api.post("/tasks", {"type": "other", "params": {"n": 1}})
    claimed = api.post("/tasks/claim", {"worker_id": "w", "task_types": ["demo"]}).data
    api.post("/tasks/%d/complete" % claimed["id"], {"worker_id": "w", "success": True})
    right = {("demo", "pending"): 3, ("demo", "completed"): 1, ("other", "pending"): 1}
    assert stats_counts(api) == right

    db_execute(backend_config, "UPDATE task_counts SET n = n + 2 WHERE status = 'pending'")
    db_execute(backend_config, "INSERT INTO task_counts (type, status, slot, n) "
                               "VALUES ('demo', 'failed', 7, 3)")
    db_execute(backend_config, "UPDATE task_types SET usage_count = 1")
    drifted = stats_counts(api)
    assert drifted != right and drifted[("demo", "failed")] == 3

    healed = api.post("/admin/recount")
    assert healed.status == 200, healed
    assert healed.json["message"] == "Counters recounted: 4 corrected"
    assert {(c["type"], c["status"], c["was"], c["now"]) for c in healed.data["task_counts"]} == {
        key + (drifted[key], right.get(key, 0)) for key in drifted if drifted[key] != right.get(key)}
    assert len(healed.data["task_counts"]) == 3
    # usage_count counts tasks ever made: raised to the tasks present, never lowered
    assert healed.data["usage_count"] == [{"type": "demo", "was": 1, "now": 4}]
    assert stats_counts(api) == right == table_counts(backend_config)
    assert api.get("/task-types/demo").data["usage_count"] == 4
    again = api.post("/admin/recount")
    assert again.data == {"task_counts": [], "usage_count": []}
    assert again.json["message"] == "Counters recounted: all were right"


def test_recount_needs_an_admin_key(api_factory, backend_config):
    api = Keyed(api_factory(api={"api_key": KEY}).app)
    producer = shell_key(backend_config, "p", "producer")
    refused = api.post("/admin/recount", headers={"X-API-Key": producer})
    assert refused.status == 403
    assert api.post("/admin/recount", headers={"X-API-Key": "wrong"}).status == 401


def _churn(config_path, rounds, seed):
    """A writer process: create, claim and complete through its own store each round."""
    from taskq import config as config_module
    from taskq.store import open_store

    cfg = config_module.load(config_path)
    types = {"demo": open_store(cfg).get_type("demo")}
    for n in range(rounds):
        store = open_store(cfg)
        try:
            store.create_tasks([{"type_id": types["demo"]["id"], "type": "demo",
                                 "params_json": '{"n": %d}' % n, "dedupe_key": "%d-%d" % (seed, n),
                                 "priority": 0, "max_attempts": 3, "claim_timeout": 60}])
            for task in store.claim("w%d" % seed, None, 1, None):
                store.complete(task["id"], "w%d" % seed, n % 3 != 0, '{"ok": true}', "no")
        finally:
            store.close()


def test_recounting_while_other_processes_write_adds_no_drift(api_factory, backend_config):
    api = Keyed(api_factory(api={"api_key": KEY}).app)
    register(api, max_attempts=1)
    fork = multiprocessing.get_context("fork")
    writers = [fork.Process(target=_churn, args=(str(backend_config.path), 60, seed))
               for seed in range(4)]
    for writer in writers:
        writer.start()
    recounts = 0
    while any(writer.is_alive() for writer in writers) or recounts < 3:
        assert api.post("/admin/recount").status == 200
        recounts += 1
    for writer in writers:
        writer.join(120)
        assert writer.exitcode == 0
    assert stats_counts(api) == table_counts(backend_config)
    assert sum(table_counts(backend_config).values()) == 240
    assert api.post("/admin/recount").data == {"task_counts": [], "usage_count": []}


def test_the_dashboard_health_page_shows_the_release_and_recounts(api_factory, backend_config):
    from taskq import __version__

    api = Keyed(api_factory(api={"api_key": KEY}).app)
    register(api)
    api.post("/tasks", {"type": "demo", "params": {"n": 1}})
    db_execute(backend_config, "UPDATE task_counts SET n = n + 9")
    browser = Browser(api.app)
    assert browser.login(KEY).status == 303
    page = browser.get("/dashboard/health")
    assert __version__ in page.body and "Recount counters" in page.body
    assert browser.post("/dashboard/health/recount", {"csrf": "wrong"}).status == 403
    assert stats_counts(api) == {("demo", "pending"): 10}
    done = browser.post("/dashboard/health/recount", {"csrf": page.csrf()})
    assert done.status == 303 and done.header("Location").endswith("/health?done=recount-fixed")
    assert stats_counts(api) == {("demo", "pending"): 1}
    assert "some had drifted" in browser.get("/dashboard/health", "done=recount-fixed").body
