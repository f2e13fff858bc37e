"""A worker given several web nodes (`--url A --url B`) fails over between them.

Two dev servers on one database (the same SQLite file, the same MariaDB
database) are two web nodes. A real worker process starts at node A; node A
is killed with SIGKILL mid-run (and later started again on its port), or A
sits behind a proxy that forwards a complete whole and then drops the
connection instead of the answer, so A commits and the worker never hears
it. Either way every task ends completed exactly once: one 'claimed' and one
'completed' event each, on its first attempt, none lost.
"""

import socket
import threading

import pytest
from conftest import db_execute
from live_server import LiveServer, start_worker, wait_for
from test_worker import create, finish, register, script, task_lines

from taskq.client import Client
from taskq.worker import start_node

pytestmark = pytest.mark.slow  # two dev servers and a worker process per test, one killed

SLOW_ECHO = """#!/bin/sh
params=$(cat)
sleep %s
printf '{"echo":%%s,"id":%%s}' "$params" "$TASKQ_TASK_ID"
"""


def worker_homed_at(index, count):
    """A worker id whose first node is urls[index] (the worker picks by its id's hash)."""
    return next("failover-%d" % n for n in range(1000)
                if start_node("failover-%d" % n, count) == index)


def assert_each_completed_once(config, ids):
    """Every task completed, on attempt 1, with exactly one claimed and one completed event."""
    rows = db_execute(config, "SELECT id, status, attempts FROM tasks ORDER BY id")
    assert [(row[0], row[1], row[2]) for row in rows] == [(i, "completed", 1) for i in sorted(ids)]
    events = db_execute(config, "SELECT task_id, event, COUNT(*) FROM task_history "
                                "GROUP BY task_id, event ORDER BY task_id, event")
    expected = []
    for task_id in sorted(ids):
        expected += [(task_id, "claimed", 1), (task_id, "completed", 1), (task_id, "created", 1)]
    assert [(row[0], row[1], row[2]) for row in events] == expected


def completed_count(config):
    return db_execute(config, "SELECT COUNT(*) FROM tasks WHERE status = 'completed'")[0][0]


def claims_logged(server):
    return server.log().count('"POST /tasks/claim HTTP/1.1" 200')


@pytest.fixture
def two_nodes(config_factory, tmp_path):
    """(config, node A, node B): two dev servers on one database; A logs its requests."""
    config = config_factory()
    a = LiveServer(config.path, tmp_path / "a.log", quiet=False)
    b = LiveServer(config.path, tmp_path / "b.log", quiet=False)
    yield config, a, b
    a.close()
    b.close()


def test_worker_goes_on_through_the_other_node_when_its_node_is_killed_and_comes_back_to_it(
        two_nodes, tmp_path):
    config, a, b = two_nodes
    client = Client(b.url, retries=2, backoff=0.05)
    register(client)
    ids = create(client, 80)
    log = tmp_path / "worker.log"
    # urls[0] is A and the worker's first node is urls[0]
    proc = start_worker(a.url, "--url", b.url, "--worker-id", worker_homed_at(0, 2),
                        "--max-tasks", 80, "--node-backoff", 0.5, "--lease", 30,
                        "--exec", script(tmp_path, "echo.sh", SLOW_ECHO % "0.1"), log_path=log)
    try:
        wait_for(lambda: completed_count(config) >= 15, timeout=60)
        assert claims_logged(a) >= 10  # the worker was working through A
        a.kill()
        killed_at = completed_count(config)
        # the worker goes on through B while A is dead
        wait_for(lambda: completed_count(config) >= killed_at + 10, timeout=30)
        assert completed_count(config) < 80, "the run ended before A came back: make tasks slower"
        back = LiveServer(config.path, tmp_path / "a-again.log", quiet=False, port=a.port)
        try:
            # after its back-off the worker tries A again and its work comes back to it
            wait_for(lambda: claims_logged(back) >= 3, timeout=30)
            assert finish(proc, 120) == 0
        finally:
            back.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_each_completed_once(config, ids)
    text = log.read_text(encoding="utf-8")
    assert "no answer from %s" % a.url in text and "going on with %s" % b.url in text
    completed = [line for line in task_lines(log) if "outcome=completed" in line]
    assert len(completed) == len(task_lines(log)) == 80


def test_a_pools_processes_start_one_per_node(two_nodes, tmp_path):
    config, a, b = two_nodes
    client = Client(b.url, retries=2, backoff=0.05)
    register(client)
    ids = create(client, 20)
    log = tmp_path / "worker.log"
    proc = start_worker(a.url, "--url", b.url, "--worker-id", "pool", "--concurrency", 2,
                        "--once", "--exec", script(tmp_path, "echo.sh", SLOW_ECHO % "0.05"),
                        log_path=log)
    assert finish(proc, 120) == 0
    assert_each_completed_once(config, ids)
    # each process stayed on its own node: both served claims, none failed over
    assert claims_logged(a) >= 2 and claims_logged(b) >= 2
    assert "no answer from" not in log.read_text(encoding="utf-8")


class AnswerDroppingProxy:
    """A TCP proxy to one web node. It forwards each request whole and, for
    the first `drops[kind]` requests of each kind, reads the node's whole
    answer (so the node has committed) and then closes the client's
    connection without it. Kinds: "complete" (POST /tasks/{id}/complete or
    /tasks/complete) and "claim+results" (a claim carrying results)."""

    def __init__(self, upstream_port, drops):
        self.upstream_port = upstream_port
        self.left = dict(drops)
        self.dropped = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.sock.close()

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(30)
            request = _read_request(conn)
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
            try:
                upstream.sendall(request)
                answer = _read_to_end(upstream)  # the dev server closes after each answer
            finally:
                upstream.close()
            kind = _kind(request)
            with self.lock:
                drop = kind is not None and self.left.get(kind, 0) > 0
                if drop:
                    self.left[kind] -= 1
                    self.dropped.append((kind, request.split(b"\r\n", 1)[0].decode()))
            if not drop:
                conn.sendall(answer)
        except OSError:
            pass
        finally:
            conn.close()


def _read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _read_to_end(sock):
    parts = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def _kind(request):
    line = request.split(b"\r\n", 1)[0]
    if not line.startswith(b"POST "):
        return None
    path = line.split()[1]
    if path.endswith(b"/complete"):
        return "complete"
    if path == b"/tasks/claim" and b'"results"' in request.partition(b"\r\n\r\n")[2]:
        return "claim+results"
    return None


def test_complete_applied_by_a_node_whose_answer_was_lost_is_not_applied_twice_by_the_next(
        two_nodes, tmp_path):
    config, a, b = two_nodes
    proxy = AnswerDroppingProxy(a.port, {"claim+results": 3, "complete": 1})
    client = Client(b.url, retries=2, backoff=0.05)
    register(client)
    ids = create(client, 12)
    log = tmp_path / "worker.log"
    # --max-tasks: the results of the last task go by POST /tasks/{id}/complete on exit,
    # the others ride on the next claim; the proxy (node A) drops answers of both kinds
    proc = start_worker(proxy.url, "--url", b.url, "--worker-id", worker_homed_at(0, 2),
                        "--max-tasks", 12, "--node-backoff", 0.2, "--lease", 30,
                        "--exec", script(tmp_path, "echo.sh", SLOW_ECHO % "0.3"), log_path=log)
    try:
        assert finish(proc, 120) == 0
    finally:
        proxy.close()
    kinds = sorted(kind for kind, _ in proxy.dropped)
    assert kinds == ["claim+results"] * 3 + ["complete"], proxy.dropped
    assert_each_completed_once(config, ids)
    results = db_execute(config, "SELECT id, result_json FROM tasks ORDER BY id")
    assert all(('"id":%d' % task_id) in result for task_id, result in results)
    text = log.read_text(encoding="utf-8")
    assert text.count("no answer from %s" % proxy.url) == 4
    outcomes = [line.split("outcome=")[1].split()[0] for line in task_lines(log)]
    assert outcomes == ["completed"] * 12
    # the repeats were answered by B, which found them already done by A
    assert b.log().count('"POST /tasks/claim HTTP/1.1" 200') >= 3
    assert b.log().count("/complete HTTP/1.1\" 200") == 1
    assert a.log().count("/complete HTTP/1.1\" 200") >= 1
