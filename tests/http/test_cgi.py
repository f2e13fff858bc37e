"""End to end through real CGI processes: `cgi-bin/api.py` spawned with a CGI
environment and the body on stdin, its raw output parsed. On SQLite and MariaDB.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from cgi_runner import SCRIPT, cgi_environ, parse_cgi_output, run_cgi

JSON_TYPE = "application/json; charset=utf-8"


def assert_cgi_json(response, status):
    assert response.status == status, (response, response.stderr)
    assert response.headers["content-type"] == JSON_TYPE
    assert response.headers["cache-control"] == "no-store"
    assert isinstance(response.json, dict)
    assert response.json["success"] is (status < 400)
    head, _, body = response.raw.partition(b"\r\n\r\n")
    assert head.startswith(b"Status: %d " % status)
    if "content-length" in response.headers:
        assert int(response.headers["content-length"]) == len(body)
    assert b"Traceback" not in response.raw


# -- the script itself ----------------------------------------------------------
def test_script_is_executable_with_python3_shebang():
    with open(SCRIPT, "rb") as handle:
        first = handle.readline()
    assert first.rstrip() in (b"#!/usr/bin/env python3", b"#!/usr/bin/python3")
    assert os.access(SCRIPT, os.X_OK)
    with open(SCRIPT, encoding="utf-8") as handle:
        text = handle.read()
    assert "import cgi\n" not in text and "from cgi " not in text  # removed in Python 3.13
    assert "CGIHandler" in text


@pytest.mark.skipif(not shutil.which("python3"), reason="no python3 on PATH")
def test_script_runs_by_its_shebang_on_sqlite(tmp_path):
    # exec'd as a web server would: no interpreter named, whatever python3 is
    (tmp_path / "config.ini").write_text("[database]\nsqlite_path = %s\n" % (tmp_path / "q.sqlite3"))
    environ = cgi_environ("GET", "/health", b"", config_path=tmp_path / "config.ini")
    completed = subprocess.run([SCRIPT], env=environ, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    status, headers, body = parse_cgi_output(completed.stdout)
    assert status == 200, (completed.stdout, completed.stderr)
    assert headers["content-type"] == JSON_TYPE
    assert json.loads(body.decode())["data"]["status"] == "ok"


# -- a whole task life through CGI -------------------------------------------------
def test_task_lifecycle_through_cgi(backend_config):
    path = backend_config.path
    register = run_cgi("POST", "/task-types/register",
                       {"name": "PrismQ.Script.Gen", "version": "1",
                        "param_schema": {"type": "object", "required": ["topic"]}}, config_path=path)
    assert_cgi_json(register, 201)
    created = run_cgi("POST", "/tasks", {"type": "PrismQ.Script.Gen", "params": {"topic": "ü"},
                                         "priority": 2}, config_path=path)
    assert_cgi_json(created, 201)
    task_id = created.data["id"]
    dup = run_cgi("POST", "/tasks", {"params": {"topic": "ü"}, "type": "PrismQ.Script.Gen"},
                  config_path=path)
    assert_cgi_json(dup, 200)
    assert dup.data["deduplicated"] is True and dup.data["id"] == task_id
    claimed = run_cgi("POST", "/tasks/claim", {"worker_id": "cgi-1", "type_pattern": "PrismQ.Script.%"},
                      config_path=path)
    assert_cgi_json(claimed, 200)
    assert claimed.data["id"] == task_id and claimed.data["params"] == {"topic": "ü"}
    progress = run_cgi("POST", "/tasks/%d/progress" % task_id, {"worker_id": "cgi-1", "progress": 50},
                       config_path=path)
    assert_cgi_json(progress, 200)
    done = run_cgi("POST", "/tasks/%d/complete" % task_id,
                   {"worker_id": "cgi-1", "success": True, "result": False}, config_path=path)
    assert_cgi_json(done, 200)
    assert done.data["status"] == "completed"
    got = run_cgi("GET", "/tasks/%d" % task_id, config_path=path)
    assert_cgi_json(got, 200)
    assert got.data["result"] is False and got.data["claimed_by"] == "cgi-1"
    history = run_cgi("GET", "/tasks/%d/history" % task_id, config_path=path)
    assert [e["event"] for e in history.data["events"]] == ["created", "claimed", "progress", "completed"]
    listed = run_cgi("GET", "/tasks", query="status=completed&type=PrismQ.%25&limit=5",
                     config_path=path)
    assert_cgi_json(listed, 200)
    assert [t["id"] for t in listed.data] == [task_id]
    assert listed.json["pagination"]["limit"] == 5
    empty = run_cgi("POST", "/tasks/claim", {"worker_id": "cgi-1"}, config_path=path)
    assert_cgi_json(empty, 404)
    assert empty.error == "No available tasks"
    types = run_cgi("GET", "/task-types", query="active_only=true", config_path=path)
    assert_cgi_json(types, 200)
    assert len(types.data) == 1 and types.json["pagination"]["total"] == 1


def test_routes_come_from_path_info_behind_a_rewrite(backend_config):
    # /api/health rewritten to cgi-bin/api.py with PATH_INFO=/health
    response = run_cgi("GET", "/health", config_path=backend_config.path,
                       env={"SCRIPT_NAME": "/api", "REQUEST_URI": "/api/health"})
    assert_cgi_json(response, 200)
    assert response.data["database"]["reachable"] is True


def test_errors_through_cgi_keep_status_line_and_headers(backend_config):
    path = backend_config.path
    assert_cgi_json(run_cgi("GET", "/nope", config_path=path), 404)
    wrong = run_cgi("DELETE", "/tasks/1", config_path=path)
    assert_cgi_json(wrong, 405)
    assert "GET" in wrong.headers["allow"]
    bad = run_cgi("POST", "/tasks/claim", raw_body=b'{"worker_id": ', config_path=path)
    assert_cgi_json(bad, 400)
    assert "JSON" in bad.error
    typed = run_cgi("POST", "/tasks/claim", {"worker_id": 42}, config_path=path)
    assert_cgi_json(typed, 400)


def test_413_through_cgi_is_answered_without_reading_the_body(backend_config):
    environ = cgi_environ("POST", "/tasks", b"{}", headers={"Content-Length": str(50 * 1024 ** 2)},
                          config_path=backend_config.path)
    proc = subprocess.Popen([sys.executable, SCRIPT], env=environ, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"{}")
        proc.stdin.flush()
        # stdin stays open: a script that tried to read 50 MB would hang here
        proc.wait(timeout=30)
        out = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        proc.stderr.close()
    status, headers, body = parse_cgi_output(out)
    assert status == 413
    assert headers["content-type"] == JSON_TYPE
    assert json.loads(body.decode())["success"] is False


def test_api_key_through_cgi_headers(config_factory):
    config = config_factory(api={"api_key": "cgi-key"})
    assert_cgi_json(run_cgi("GET", "/tasks", config_path=config.path), 401)
    assert_cgi_json(run_cgi("GET", "/tasks", headers={"X-API-Key": "nope"}, config_path=config.path), 401)
    assert_cgi_json(run_cgi("GET", "/tasks", headers={"X-API-Key": "cgi-key"}, config_path=config.path), 200)
    assert_cgi_json(run_cgi("GET", "/tasks", headers={"Authorization": "Bearer cgi-key"},
                            config_path=config.path), 200)
    assert_cgi_json(run_cgi("GET", "/health", config_path=config.path), 200)


def test_cors_preflight_through_cgi(config_factory):
    config = config_factory(api={"cors_origins": "https://app.example"})
    response = run_cgi("OPTIONS", "/tasks", headers={"Origin": "https://app.example",
                                                     "Access-Control-Request-Method": "POST"},
                       config_path=config.path)
    assert response.status in (200, 204)
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in response.headers["access-control-allow-methods"]


def _imports(response):
    return {line.split("|")[-1].strip() for line in response.stderr.decode().splitlines()
            if line.startswith("import time:")}


def test_claim_and_complete_do_not_import_jsonschema(backend_config):
    path = backend_config.path
    profile = {"PYTHONPROFILEIMPORTTIME": "1"}
    schema = {"type": "object", "not": {"required": ["x"]}}  # `not`: jsonschema decides it
    run_cgi("POST", "/task-types/register", {"name": "demo", "version": "1",
                                             "param_schema": schema}, config_path=path)
    created = run_cgi("POST", "/tasks", {"type": "demo", "params": {}}, config_path=path, env=profile)
    assert "jsonschema" in _imports(created)  # the probe sees imports
    claimed = run_cgi("POST", "/tasks/claim", {"worker_id": "w"}, config_path=path, env=profile)
    assert claimed.status == 200
    done = run_cgi("POST", "/tasks/%d/complete" % claimed.data["id"], {"worker_id": "w", "success": True},
                   config_path=path, env=profile)
    assert done.status == 200
    for response in (claimed, done):
        imported = _imports(response)
        assert not any(name == "jsonschema" or name.startswith("jsonschema.") for name in imported)


# -- failures through CGI -----------------------------------------------------------
@pytest.mark.parametrize("text, words", [
    ("[database]\nbackend = oracle\n", ["backend", "oracle"]),
    ("[queue]\nclaim_timeout = five\n", ["claim_timeout", "five"]),
])
def test_bad_config_through_cgi_is_a_clear_json_message(tmp_path, text, words):
    path = tmp_path / "config.ini"
    path.write_text(text)
    response = run_cgi("POST", "/tasks/claim", {"worker_id": "w"}, config_path=path)
    assert_cgi_json(response, 500)
    for word in words:
        assert word in response.error
    assert b"Traceback" not in response.stderr


def test_missing_config_named_by_taskq_config_is_a_clear_json_message(tmp_path):
    response = run_cgi("GET", "/health", config_path=tmp_path / "absent.ini")
    assert_cgi_json(response, 500)
    assert "TASKQ_CONFIG" in response.error
    assert b"Traceback" not in response.stderr


def test_unreachable_mysql_through_cgi_is_503_with_retry_after(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    path = tmp_path / "config.ini"
    path.write_text("[database]\nbackend = mysql\nhost = 127.0.0.1\nport = %d\nconnect_timeout = 2\n" % port)
    for response in (run_cgi("GET", "/health", config_path=path),
                     run_cgi("POST", "/tasks/claim", {"worker_id": "w"}, config_path=path)):
        assert_cgi_json(response, 503)
        assert int(response.headers["retry-after"]) > 0


def test_unexpected_error_through_cgi_is_generic_and_logged_not_sent(tmp_path):
    from conftest import db_execute, make_config

    config = make_config("sqlite", tmp_path)
    run_cgi("POST", "/task-types/register", {"name": "demo", "version": "1",
                                             "param_schema": {"type": "object"}}, config_path=config.path)
    created = run_cgi("POST", "/tasks", {"type": "demo", "params": {}}, config_path=config.path)
    db_execute(config, "DROP TABLE task_history")
    response = run_cgi("POST", "/tasks/claim", {"worker_id": "w"}, config_path=config.path)
    assert_cgi_json(response, 500)
    assert response.json["error"] == response.json["message"] == "Internal server error"
    assert set(response.json) == {"success", "error", "message", "timestamp"}
    assert b"task_history" not in response.raw and str(tmp_path).encode() not in response.raw
    assert b"Traceback" in response.stderr  # the web server's error log gets it
    after = run_cgi("GET", "/tasks/%d" % created.data["id"], config_path=config.path)
    assert after.data["status"] == "pending"  # the failed claim was rolled back


def test_cgi_request_completes_promptly_when_stdin_is_empty(backend_config):
    # a GET with no body and no CONTENT_LENGTH must not wait on stdin
    environ = cgi_environ("GET", "/health", b"", config_path=backend_config.path)
    environ.pop("CONTENT_LENGTH", None)
    proc = subprocess.Popen([sys.executable, SCRIPT], env=environ, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 30
        while proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is not None, "the script waited for stdin"
        status, _, _ = parse_cgi_output(proc.stdout.read())
        assert status == 200
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def test_web_process_time_zone_does_not_change_leases(backend_config):
    # The PHP original handed a task out twice when the clocks' zones differed.
    # Here CGI processes in UTC+14 and UTC-11 see one lease, stated in UTC.
    import calendar

    path = backend_config.path
    run_cgi("POST", "/task-types/register", {"name": "tz", "version": "1",
                                             "param_schema": {"type": "object"}}, config_path=path)
    run_cgi("POST", "/tasks", {"type": "tz", "params": {}}, config_path=path)
    east = run_cgi("POST", "/tasks/claim", {"worker_id": "east", "lease_seconds": 600},
                   config_path=path, env={"TZ": "Pacific/Kiritimati"})
    assert east.status == 200
    west = run_cgi("POST", "/tasks/claim", {"worker_id": "west"}, config_path=path,
                   env={"TZ": "Pacific/Pago_Pago"})
    assert west.status == 404
    lease = calendar.timegm(time.strptime(east.data["lease_expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(lease - (time.time() + 600)) < 120  # UTC, not shifted by 11 or 14 hours
    stolen = run_cgi("POST", "/tasks/%d/complete" % east.data["id"], {"worker_id": "west", "success": True},
                     config_path=path, env={"TZ": "Pacific/Pago_Pago"})
    assert stolen.status == 403
