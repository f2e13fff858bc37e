"""What a real CGI request imports. On SQLite and on MariaDB.

Every request is a new process, so an import is paid on every request. The
hot routes of a worker (health, claim, progress, complete, and their batch
forms) must not import jsonschema, whose import costs more than the whole
rest of the request; only routes that validate a schema may. Each request
runs `cgi-bin/api.py` as a process with PYTHONPROFILEIMPORTTIME=1 (the
environment form of `python -X importtime`), and the import list is read
from its stderr. This checks behaviour (which modules load), not timing.
"""

import re

from cgi_runner import run_cgi
from conftest import ApiClient, create, register
from taskq.app import Application

_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.M)


def imported(response):
    """Module names a CGI process imported, from its -X importtime report."""
    return set(_IMPORT_LINE.findall(response.stderr.decode("utf-8", "replace")))


def cgi(config, method, path, body=None):
    response = run_cgi(method, path, body, config_path=config.path,
                       env={"PYTHONPROFILEIMPORTTIME": "1"})
    modules = imported(response)
    assert "taskq.app" in modules, "no import profile on stderr: %r" % response.stderr[-500:]
    return response, modules


def jsonschema_modules(modules):
    return sorted(m for m in modules if m == "jsonschema" or m.startswith("jsonschema."))


def test_health_claim_progress_complete_do_not_import_jsonschema(backend_config):
    api = ApiClient(Application(config=backend_config))
    register(api)
    first = create(api, {"n": 1})["id"]
    second = create(api, {"n": 2})["id"]
    worker = {"worker_id": "w1"}

    requests = [
        ("GET", "/health", None, 200),
        ("POST", "/tasks/claim", worker, 200),
        ("POST", "/tasks/%d/progress" % first, dict(worker, progress=40), 200),
        ("POST", "/tasks/%d/complete" % first, dict(worker, success=True, result={"ok": 1}), 200),
        ("POST", "/tasks/claim", dict(worker, limit=10), 200),
        ("POST", "/tasks/complete", dict(worker, results=[{"id": second, "success": True}]), 200),
        ("POST", "/tasks/claim", worker, 404),
    ]
    for method, path, body, status in requests:
        response, modules = cgi(backend_config, method, path, body)
        assert response.status == status, (path, response)
        assert jsonschema_modules(modules) == [], "%s %s imported jsonschema" % (method, path)
    assert api.get("/tasks/%d" % second).data["status"] == "completed"


def test_create_imports_jsonschema_to_validate_params(backend_config):
    """The detection above sees jsonschema when it is loaded: a create validates params with it."""
    api = ApiClient(Application(config=backend_config))
    register(api)
    response, modules = cgi(backend_config, "POST", "/tasks", {"type": "demo", "params": {"n": 3}})
    assert response.status == 201, response
    assert "jsonschema" in modules
