"""The dev server (`python -m taskq.devserver`, what ./serve runs) as a real process.

A body shorter than its Content-Length is refused and changes nothing;
SIGTERM stops the server with exit status 0; ./serve installs only the
runtime packages.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
from cgi_runner import fresh_copy
from live_server import ROOT, python_env

from conftest import snapshot


def raw_request(url, data, shut_write=True, timeout=60):
    """Send bytes as they are over one connection; returns (status, JSON answer)."""
    host, port = url.split("//", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        if shut_write:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while True:
            part = sock.recv(65536)
            if not part:
                break
            answer += part
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body.decode("utf-8"))


class HttpApi:
    """Enough of conftest.ApiClient over HTTP for snapshot()."""

    def __init__(self, url):
        self.url = url

    def get(self, path, query=""):
        with urllib.request.urlopen(self.url + path + ("?" + query if query else "")) as reply:
            return Reply(json.loads(reply.read().decode("utf-8")))


class Reply:
    def __init__(self, answer):
        self.data = answer["data"]


def post(url, path, body):
    request = urllib.request.Request(url + path, json.dumps(body).encode("utf-8"), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as reply:
        return reply.status


def test_body_shorter_than_its_content_length_is_400_and_changes_nothing(server):
    assert post(server.url, "/task-types/register",
                {"name": "demo", "version": "1", "param_schema": {"type": "object"}}) == 201
    before = snapshot(HttpApi(server.url))
    whole = b'{"type": "demo", "params": {"n": 1}}'
    cut = whole + b" " * 40  # valid JSON in what arrives; the rest never comes
    head = ("POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nConnection: close\r\n\r\n" % (len(cut) + 100)).encode()
    status, answer = raw_request(server.url, head + cut)
    assert status == 400, answer
    assert "ended after %d of the %d bytes" % (len(cut), len(cut) + 100) in answer["error"]
    assert snapshot(HttpApi(server.url)) == before


def test_chunked_body_on_the_dev_server_is_411_with_a_clear_message(server):
    body = b'{"worker_id": "w"}'
    data = (b"POST /tasks/claim HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    status, answer = raw_request(server.url, data)
    assert status == 411, answer
    assert "Content-Length" in answer["error"] and "chunked" in answer["error"]


def test_sigterm_stops_the_dev_server_with_exit_status_0(server):
    assert post(server.url, "/task-types/register",
                {"name": "demo", "version": "1", "param_schema": {"type": "object"}}) == 201
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0


@pytest.mark.slow
def test_serve_installs_only_runtime_packages_and_exits_0_on_sigterm(tmp_path):
    """./serve from scratch: its own virtual environment, PyMySQL and jsonschema but no
    pytest, an answering server, and exit status 0 on SIGTERM."""
    venv = tmp_path / "venv"
    env = python_env(TASKQ_VENV=str(venv), TASKQ_CONFIG=str(tmp_path / "none.ini"))
    env.pop("PYTHONPATH", None)
    (tmp_path / "none.ini").write_text("[database]\nsqlite_path = %s\n" % (tmp_path / "db.sqlite3"))
    proc = subprocess.Popen([os.path.join(ROOT, "serve"), "--port", "0", "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(tmp_path))
    try:
        line = b""
        while not line.startswith(b"taskq serving on "):
            line = proc.stdout.readline()
            assert line, proc.stderr.read().decode("utf-8", "replace")
        url = line.split()[3].decode().rstrip("/")
        with urllib.request.urlopen(url + "/health") as reply:
            assert json.loads(reply.read().decode())["data"]["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    python = str(venv / "bin" / "python")
    assert subprocess.run([python, "-c", "import pymysql, jsonschema"]).returncode == 0
    assert subprocess.run([python, "-c", "import pytest"], stderr=subprocess.DEVNULL).returncode != 0
    shutil.rmtree(str(venv), ignore_errors=True)


def test_serve_without_config_is_open_and_says_so_when_it_starts(tmp_path):
    """./serve's default (taskq.devserver, no config.ini): open, with a warning on start."""
    upload = fresh_copy(tmp_path)
    env = python_env(PYTHONPATH=str(upload / "lib"))
    env.pop("TASKQ_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "taskq.devserver", "--port", "0", "--quiet"],
                            env=env, cwd=str(upload), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        lines = [proc.stdout.readline().decode(), proc.stdout.readline().decode()]
        assert lines[0].startswith("taskq serving on "), (lines, proc.stderr.read())
        assert lines[1].startswith("WARNING") and "open" in lines[1] and "503" in lines[1]
        url = lines[0].split()[3].rstrip("/")
        with urllib.request.urlopen(url + "/health") as reply:
            assert json.loads(reply.read().decode())["data"]["status"] == "ok"
        assert post(url, "/task-types/register",
                    {"name": "demo", "version": "1", "param_schema": {}}) == 201
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (upload / "data" / "taskq.sqlite3").exists()
