"""Run one request through `cgi-bin/api.py` as a real CGI process.

    from cgi_runner import run_cgi   # this module (tests/ is first on sys.path)
    response = run_cgi("POST", "/tasks/claim", {"worker_id": "w1"},
                       config_path=config.path)
    response.status, response.headers["content-type"], response.json

The script runs under the interpreter running the tests (the venv's), with a
CGI environment like Apache's mod_cgi builds and the body on stdin. The raw
output (a `Status:` line, headers, a blank line, the body) is parsed here,
so a test sees exactly what a web server would relay.
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "cgi-bin", "api.py")
SCRIPT_NAME = "/cgi-bin/api.py"


class CgiResponse:
    def __init__(self, status, headers, json_body, raw):
        self.status = status        # int, from the Status: line (200 when absent)
        self.headers = headers      # {lower-case name: value}
        self.json = json_body       # parsed body, or None when it is empty
        self.raw = raw              # the process's whole stdout, bytes

    @property
    def data(self):
        return self.json["data"]

    @property
    def error(self):
        return self.json.get("error")

    def __repr__(self):
        return "<CgiResponse %d %r>" % (self.status, self.raw[:300])


def fresh_copy(dest):
    """cgi-bin/api.py and lib/taskq copied into `dest` as an FTP upload lays them out,
    with an empty data/ and no config.ini (PyMySQL and jsonschema come from the venv)."""
    import shutil

    shutil.copytree(os.path.join(ROOT, "lib", "taskq"), os.path.join(str(dest), "lib", "taskq"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    os.makedirs(os.path.join(str(dest), "cgi-bin"))
    shutil.copy(SCRIPT, os.path.join(str(dest), "cgi-bin", "api.py"))
    os.makedirs(os.path.join(str(dest), "data"))
    return dest


def cgi_environ(method, path, body_bytes, headers=None, query="", config_path=None, env=None):
    """The environment a web server hands a CGI script (RFC 3875)."""
    environ = {key: value for key, value in os.environ.items()
               if key in ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")}
    environ.update({
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "taskq-tests",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": SCRIPT_NAME,
        "SCRIPT_FILENAME": SCRIPT,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "REQUEST_URI": SCRIPT_NAME + path + ("?" + query if query else ""),
        "HTTP_HOST": "localhost",
    })
    if body_bytes:
        environ["CONTENT_LENGTH"] = str(len(body_bytes))
        environ["CONTENT_TYPE"] = "application/json"
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = str(value)
    if config_path is not None:
        environ["TASKQ_CONFIG"] = str(config_path)
    environ.update(env or {})
    return environ


def parse_cgi_output(raw):
    """(status, headers, body bytes) from a CGI script's stdout."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    if not sep:
        raise AssertionError("CGI output has no header/body separator: %r" % raw[:500])
    status, headers = 200, {}
    for line in head.decode("latin-1").splitlines():
        name, colon, value = line.partition(":")
        if not colon:
            raise AssertionError("malformed CGI header line %r in %r" % (line, raw[:500]))
        name, value = name.strip().lower(), value.strip()
        if name == "status":
            status = int(value.split()[0])
        else:
            headers[name] = value
    return status, headers, body


def run_cgi(method, path, body=None, headers=None, query="", config_path=None, env=None,
            raw_body=None, python=None, timeout=60, script=None):
    """Run cgi-bin/api.py once; returns CgiResponse(status, headers, json, raw).

    body is JSON-encoded unless raw_body (bytes) is given; headers are HTTP
    request headers ({"X-API-Key": ...}; Content-Length and Content-Type
    override the computed ones); env adds or replaces CGI variables; script
    runs another copy of api.py (an unpacked upload).
    """
    if raw_body is None:
        raw_body = b"" if body is None else json.dumps(body).encode("utf-8")
    environ = cgi_environ(method, path, raw_body, headers, query, config_path, env)
    completed = subprocess.run([python or sys.executable, script or SCRIPT], input=raw_body, env=environ,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if completed.returncode != 0:
        raise AssertionError("CGI script exited %d: %s" % (completed.returncode,
                                                           completed.stderr.decode("utf-8", "replace")))
    status, response_headers, body_bytes = parse_cgi_output(completed.stdout)
    is_json = "json" in response_headers.get("content-type", "application/json")
    parsed = json.loads(body_bytes.decode("utf-8")) if body_bytes.strip() and is_json else None
    response = CgiResponse(status, response_headers, parsed, completed.stdout)
    response.stderr = completed.stderr
    return response
