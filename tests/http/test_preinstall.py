"""A fresh upload is locked until the wizard has written config.ini (issue 17).

Without a config file the deployed entry points (cgi-bin/api.py, the module's
`application` that Passenger, mod_wsgi and gunicorn load) answer every route
but /health, /openapi.json and /docs with 503 "not installed", and open no
database: no SQLite file appears, so nothing can be created by a stranger who
finds the upload before its owner. Only ./serve opts into the open default.
"""

import os

import pytest

from cgi_runner import fresh_copy, run_cgi
from conftest import ApiClient, register, shell_key
from taskq.app import Application

# one request per kind of route: tasks, types, claims, keys, schedules, steering,
# stats, metrics, purge and the dashboard's pages and login
LOCKED = (
    ("POST", "/tasks", {"type": "demo", "params": {}}),
    ("GET", "/tasks", None),
    ("POST", "/tasks/claim", {"worker_id": "w"}),
    ("POST", "/task-types/register", {"name": "demo", "version": "1", "param_schema": {}}),
    ("GET", "/task-types", None),
    ("POST", "/admin/keys", {"name": "x", "role": "admin"}),
    ("GET", "/admin/keys", None),
    ("POST", "/admin/purge", {}),
    ("POST", "/schedules", {"type": "demo", "params": {}, "every_seconds": 60}),
    ("POST", "/tasks/bulk/cancel", {"status": "pending"}),
    ("GET", "/stats", None),
    ("GET", "/metrics", None),
    ("GET", "/dashboard", None),
    ("POST", "/dashboard/login", None),
    ("GET", "/dashboard/health", None),
)


@pytest.fixture
def fresh_upload(tmp_path):
    return fresh_copy(tmp_path)


def _files(root):
    """Every file under root but Python's own bytecode cache."""
    return sorted(os.path.relpath(os.path.join(d, f), str(root))
                  for d, _, names in os.walk(str(root)) for f in names if "__pycache__" not in d)


def test_a_fresh_upload_answers_503_not_installed_on_every_route_and_creates_nothing(fresh_upload):
    script = str(fresh_upload / "cgi-bin" / "api.py")
    before = _files(fresh_upload)
    for method, path, body in LOCKED:
        response = run_cgi(method, path, body, script=script, env={"TASKQ_CONFIG": ""})
        assert response.status == 503, (path, response)
        assert response.headers["content-type"].startswith("application/json"), path
        assert "not installed" in response.error and "install.py" in response.error, path
    assert _files(fresh_upload) == before  # no database file, nothing written


def test_before_install_health_openapi_and_docs_still_answer(fresh_upload):
    script = str(fresh_upload / "cgi-bin" / "api.py")
    health = run_cgi("GET", "/health", script=script, env={"TASKQ_CONFIG": ""})
    assert health.status == 200
    assert health.data["status"] == "not_installed" and health.data["installed"] is False
    assert "install.py" in health.json["message"] and "database" not in health.data
    assert run_cgi("GET", "/openapi.json", script=script, env={"TASKQ_CONFIG": ""}).status == 200
    docs = run_cgi("GET", "/docs", script=script, env={"TASKQ_CONFIG": ""})
    assert docs.status == 200 and b"swagger" in docs.raw.lower()
    assert not os.listdir(str(fresh_upload / "data"))


def test_the_persistent_servers_app_is_locked_without_a_config_file(tmp_path):
    # what passenger_wsgi.py, mod_wsgi and gunicorn load: persistent, no allow_unconfigured
    app = Application(config_path=str(tmp_path / "config.ini"), persistent=True)
    api = ApiClient(app)
    assert api.post("/admin/keys", {"name": "x", "role": "admin"}).status == 503
    assert api.post("/task-types/register", {"name": "demo", "version": "1",
                                             "param_schema": {}}).status == 503
    assert api.get("/health").data["status"] == "not_installed"
    assert os.listdir(str(tmp_path)) == []
    app.close()


def test_only_the_dev_servers_app_serves_the_open_default(tmp_path):
    app = Application(config_path=str(tmp_path / "config.ini"), allow_unconfigured=True)
    from taskq import config as config_module

    app._config = config_module.load(str(tmp_path / "config.ini"))
    app._config.database["sqlite_path"] = str(tmp_path / "taskq.sqlite3")
    api = ApiClient(app)
    assert api.get("/health").data["status"] == "ok"
    register(api)
    # open, but it still never makes a key for a keyless caller
    assert api.post("/admin/keys", {"name": "x", "role": "admin"}).status == 401


def test_health_names_the_database_server_only_to_callers_with_a_key(api_factory):
    api = api_factory()
    assert "server" in api.get("/health").data["database"]  # open API: nothing to hide from
    key = shell_key(api.app.config, "ops", "read-only")
    anonymous = api.get("/health")
    assert anonymous.status == 200 and anonymous.data["status"] == "ok"
    assert "server" not in anonymous.data["database"]
    wrong = api.get("/health", headers={"X-API-Key": "tqk_wrong"})
    assert wrong.status == 200 and "server" not in wrong.data["database"]
    assert api.get("/health", headers={"X-API-Key": key}).data["database"]["server"]


def test_health_names_the_server_to_the_config_files_admin_key(api_factory):
    api = api_factory(api={"api_key": "config-key"})
    assert "server" not in api.get("/health").data["database"]
    assert api.get("/health", headers={"Authorization": "Bearer config-key"}).data["database"]["server"]

