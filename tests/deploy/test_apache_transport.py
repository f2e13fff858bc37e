"""Answers reach the client whole through real Apache, with mod_cgid and with mod_cgi.

Under mod_cgid (Debian's default with the event MPM) a CGI script's stdin
and stdout are one Unix socket: a script that exits leaving request bytes
unread gets the socket reset and Apache loses its answer (curl exit 18 or
52). Each case here sends a body taskq does not read, or reads only in part,
and checks curl's exit code (0), the status, and that the body is the whole
JSON error. The bundle is served with `[api] max_body_bytes = 65536`, so
"far over the limit" (4 MB) is cheap to send.

These answers never touch the database, so one backend (SQLite) is enough.
"""

import json
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

from conftest import IN_CI
from support.apache import ApacheUnavailable, available, cgi_python_env, make_docroot, \
    prepare_docroot, start_apache
from support.bundles import bundle_tool, built_bundle

API_KEY = "k-" + uuid.uuid4().hex
LIMIT = 65536


@pytest.fixture(scope="module", params=["cgid", "cgi"])
def apache(request):
    """(api base URL, workdir, server) for a bundle on Apache with mod_cgid or mod_cgi."""
    reason = available(request.param)
    if reason is None and shutil.which("curl") is None:
        reason = "curl is not installed"
    if reason:
        if IN_CI:
            pytest.fail("Apache (%s) is required in CI: %s" % (request.param, reason))
        pytest.skip(reason)
    docroot = make_docroot()
    workdir = tempfile.mkdtemp(prefix="taskq-transport-")
    site = bundle_tool().extract(built_bundle(), docroot)
    config = os.path.join(site, "config.ini")
    with open(config, "w", encoding="utf-8") as handle:
        handle.write("[database]\nbackend = sqlite\nsqlite_path = data/taskq.sqlite3\n\n"
                     "[api]\napi_key = %s\nmax_body_bytes = %d\n" % (API_KEY, LIMIT))
    os.chmod(config, 0o600)
    prepare_docroot(docroot)
    try:
        server = start_apache(docroot, env=cgi_python_env(workdir), cgi=request.param)
    except ApacheUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server.base_url + "/taskq/api", workdir, server
    finally:
        log = server.error_log()
        server.stop()
        shutil.rmtree(docroot, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
        if "Traceback" in log:
            print("Apache error log:\n" + log)


def body_file(workdir, size):
    """A JSON object of exactly `size` bytes (a claim with a long worker_id)."""
    path = os.path.join(workdir, "body-%d.json" % size)
    if not os.path.exists(path):
        with open(path, "wb") as handle:
            handle.write(b'{"worker_id":"' + b"w" * (size - 17) + b'"}')
    return path


def curl(apache, method, path, size, key=API_KEY, chunked=False):
    """(curl exit code, HTTP status, headers text, body bytes)."""
    base, workdir, _ = apache
    out = os.path.join(workdir, "out-%s" % uuid.uuid4().hex)
    head = out + ".headers"
    args = ["curl", "-sS", "-o", out, "-D", head, "-w", "%{http_code}", "-X", method,
            "--max-time", "60", "-H", "Content-Type: application/json",
            "-H", "X-API-Key: " + key, "--data-binary", "@" + body_file(workdir, size)]
    if chunked:
        args += ["-H", "Transfer-Encoding: chunked"]
    result = subprocess.run(args + [base + path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, timeout=90)
    body = b""
    if os.path.exists(out):
        with open(out, "rb") as handle:
            body = handle.read()
    headers = ""
    if os.path.exists(head):
        with open(head, encoding="latin-1") as handle:
            headers = handle.read()
    return result.returncode, result.stdout, headers, body, result.stderr


# (case, method, path, body bytes, wrong key?, chunked?, status, words in the error)
CASES = [
    ("401-small", "POST", "/tasks", 1000, True, False, 401, "API key"),
    ("401-large", "POST", "/tasks", 200000, True, False, 401, "API key"),
    ("401-far-over-limit", "POST", "/tasks/claim", 4000000, True, False, 401, "API key"),
    ("404-small", "POST", "/no-such-route", 1000, False, False, 404, "Route not found"),
    ("404-large", "POST", "/no-such-route", 200000, False, False, 404, "Route not found"),
    ("405-small", "PUT", "/tasks/claim", 1000, False, False, 405, "not allowed"),
    ("405-large", "PUT", "/tasks/claim", 200000, False, False, 405, "not allowed"),
    ("413-just-over", "POST", "/tasks/claim", LIMIT + 1000, False, False, 413, "exceeds 65536"),
    ("413-far-over", "POST", "/tasks/claim", 4000000, False, False, 413, "exceeds 65536"),
    ("400-bad-body", "POST", "/tasks/claim", 60000, False, False, 400, "worker_id"),
    ("chunked-read", "POST", "/tasks/claim", 200, False, True, 404, "No available tasks"),
    ("chunked-400", "POST", "/tasks/claim", 60000, False, True, 400, "worker_id"),
    ("chunked-413", "POST", "/tasks/claim", 4000000, False, True, 413, "exceeds 65536"),
]


@pytest.mark.parametrize("case,method,path,size,wrong_key,chunked,status,words", CASES,
                         ids=[c[0] for c in CASES])
def test_answer_arrives_whole_when_the_body_is_not_read(apache, case, method, path, size,
                                                        wrong_key, chunked, status, words):
    code, http_status, headers, body, stderr = curl(
        apache, method, path, size, key="wrong" if wrong_key else API_KEY, chunked=chunked)
    assert code == 0, (case, code, stderr, body[:200], apache[2].error_log()[-2000:])
    assert int(http_status) == status, (case, http_status, body[:300])
    answer = json.loads(body.decode("utf-8"))
    assert answer["success"] is False and words in answer["error"], answer
    # complete: the declared length arrived, or (Apache re-chunks CGI output)
    # the last chunk did, which curl's exit code 0 confirms
    length = [line.split(":", 1)[1].strip() for line in headers.splitlines()
              if line.lower().startswith("content-length:")]
    assert int(length[-1]) == len(body) if length else "transfer-encoding: chunked" in headers.lower()
    if status == 401:
        assert "www-authenticate:" in headers.lower(), headers


def test_a_valid_request_after_the_refused_ones_still_works(apache):
    code, http_status, _, body, stderr = curl(apache, "POST", "/tasks/claim", 100)
    assert code == 0, stderr
    assert int(http_status) == 404 and json.loads(body.decode())["error"] == "No available tasks"


HOSTILE = [
    ("inf", "/tasks", '{"type": "demo", "params": {"a": 1e400}}', "params.a"),
    ("surrogate", "/tasks/claim", '{"worker_id": "w\\ud800"}', "worker_id"),
    ("deep", "/tasks/claim", '{"worker_id": "w", "x": ' + "[" * 30000 + "]" * 30000 + "}",
     "nested too deeply"),
    ("nul-pattern", "/tasks/claim", '{"worker_id": "w", "type_pattern": "%\\u0000"}',
     "type_pattern"),
]


@pytest.mark.parametrize("case,path,text,words", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_values_json_cannot_carry_are_400_through_apache(apache, case, path, text, words):
    base, workdir, _ = apache
    body = os.path.join(workdir, "hostile-%s.json" % case)
    with open(body, "w", encoding="utf-8") as handle:
        handle.write(text)
    result = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "-X", "POST", "--max-time", "60",
                             "-H", "X-API-Key: " + API_KEY, "-H", "Content-Type: application/json",
                             "--data-binary", "@" + body, base + path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
    assert result.returncode == 0, result.stderr
    raw, _, status = result.stdout.rpartition(b"\n")
    assert int(status) == 400, raw
    answer = json.loads(raw.decode("utf-8"))
    assert answer["success"] is False and words in answer["error"], answer


@pytest.mark.parametrize("address", ["/api", "/cgi-bin/api.py"])
def test_both_key_headers_reach_the_script_under_this_cgi_module(apache, address):
    """The shipped .htaccess hands Authorization to api.py under mod_cgid and mod_cgi alike."""
    base = apache[0][:-len("/api")] + address
    for headers, status in (({}, 401), ({"Authorization": "Bearer wrong"}, 401),
                            ({"Authorization": "Bearer " + API_KEY}, 200), ({"X-API-Key": API_KEY}, 200)):
        args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "60"]
        for name, value in headers.items():
            args += ["-H", "%s: %s" % (name, value)]
        result = subprocess.run(args + [base + "/tasks"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True, timeout=90)
        assert result.returncode == 0, result.stderr
        assert int(result.stdout) == status, (address, headers, result.stdout)
