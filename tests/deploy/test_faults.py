"""MariaDB killed, restarted and frozen under load (issue 8, items 4 and 5).

Each test starts a MariaDB of its own (own datadir, port and socket,
`--no-defaults`), the dev server on it, producers and worker pools as
separate OS processes, then kills the database (-9) and restarts it, or
stops it (SIGSTOP) for longer than `[database] read_timeout`. At the end:
nothing lost, nothing completed twice, no attempts past max_attempts, no
task left claimed by nobody (no lease ever expired: each claim's tasks
reached the worker that claimed them, a retried claim got the same ones),
and no worker gave up on a complete (no `outcome=lost` / `not-completed`).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import load_mysql_schema
from live_server import LiveServer, python_env, start_worker
from support.mariadb_server import mariadb_template, own_mariadb  # noqa: F401 - fixtures

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

READ_TIMEOUT = 3
LEASE = 40          # longer than any outage below, so no lease may lapse
PRODUCERS = 3
PER_PRODUCER = 80

PRODUCER = r"""
import json, sys, time
from taskq.client import Client

url, name, count, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
client = Client(url, timeout=timeout, retries=60, backoff=0.2, max_delay=1.0)
ids = []
for n in range(count):
    ids.append(client.create_task("fault.echo", {"producer": name, "n": n})["id"])
    time.sleep(0.03)
print(json.dumps(ids))
"""


def start_load(tmp_path, db, url, http_timeout=10):
    """Producers and two worker pools (single and batch claims); returns (producers, workers)."""
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER, encoding="utf-8")
    producers = [subprocess.Popen([sys.executable, str(script), url, "p%d" % i, str(PER_PRODUCER),
                                   str(http_timeout)],
                                  stdout=subprocess.PIPE, stderr=open(str(tmp_path / ("producer%d.log" % i)), "wb"),
                                  env=python_env())
                 for i in range(PRODUCERS)]
    common = ["--exec", "cat", "--concurrency", "2", "--timeout", str(http_timeout), "--poll-min", "0.1",
              "--poll-max", "1", "--type", "fault.%"]
    workers = [start_worker(url, *(common + ["--batch", "1", "--worker-id", "single"]),
                            log_path=tmp_path / "worker-single.log"),
               start_worker(url, *(common + ["--batch", "5", "--worker-id", "batch"]),
                            log_path=tmp_path / "worker-batch.log")]
    return producers, workers


def setup_database(server, tmp_path, skip_locked="auto"):
    server.execute("CREATE DATABASE taskq CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    conn = server.connect("taskq")
    load_mysql_schema(conn)
    conn.close()
    config = tmp_path / "config.ini"
    config.write_text(
        "[database]\nbackend = mysql\nhost = 127.0.0.1\nport = %d\nuser = root\npassword =\n"
        "name = taskq\nconnect_timeout = 2\nread_timeout = %d\nwrite_timeout = %d\n"
        "skip_locked = %s\n[queue]\nclaim_timeout = %d\nmax_attempts = 3\n"
        % (server.port, READ_TIMEOUT, READ_TIMEOUT, skip_locked, LEASE), encoding="utf-8")
    return config


def register_type(url):
    from taskq.client import Client

    Client(url).register_type("fault.echo", "1", {"type": "object"})


def completed_count(server):
    try:
        return server.execute("SELECT COUNT(*) FROM tasks WHERE status = 'completed'",
                              database="taskq")[0][0]
    except Exception:  # noqa: BLE001 - the database may be down right now
        return None


def wait_done(server, producers, deadline):
    created = []
    for proc in producers:
        out, _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        assert proc.returncode == 0
        created.extend(json.loads(out.decode()))
    while completed_count(server) != len(created):
        assert time.monotonic() < deadline, "not all tasks completed in time"
        time.sleep(0.3)
    return created


def stop_workers(workers):
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    for proc in workers:
        assert proc.wait(timeout=60) == 0


def check_outcome(server, created, tmp_path, web):
    rows = server.execute("SELECT id, status, attempts, max_attempts FROM tasks", database="taskq")
    assert sorted(created) == sorted(row[0] for row in rows), "a created task is missing"
    assert len(set(created)) == len(created) == PRODUCERS * PER_PRODUCER
    assert {row[1] for row in rows} == {"completed"}
    assert all(row[2] <= row[3] for row in rows), "attempts past max_attempts"
    events = server.execute("SELECT task_id, event, worker_id FROM task_history", database="taskq")
    completed = {}
    for task_id, event, _ in events:
        if event == "completed":
            completed[task_id] = completed.get(task_id, 0) + 1
    assert set(completed.values()) == {1} and len(completed) == len(created), "completed twice"
    expired = [task_id for task_id, event, _ in events if event == "lease_expired"]
    if expired:  # what happened to them, for the failure message
        expired = server.execute(
            "SELECT task_id, event, worker_id, created_at FROM task_history WHERE task_id IN (%s) "
            "ORDER BY id" % ", ".join(str(t) for t in sorted(set(expired))), database="taskq")
    assert not expired, "tasks left claimed by nobody until their lease ran out: %s" % (expired,)
    logs = "".join(open(str(tmp_path / name), encoding="utf-8", errors="replace").read()
                   for name in ("worker-single.log", "worker-batch.log"))
    assert "outcome=lost" not in logs and "outcome=not-completed" not in logs
    assert logs.count("outcome=completed") == len(created)
    assert "unexpected error" not in web.log(), web.log()[-3000:]  # never a 500


def test_mariadb_killed_and_restarted_under_load_loses_nothing(own_mariadb, tmp_path):
    config = setup_database(own_mariadb, tmp_path)
    web = LiveServer(config, tmp_path / "server.log")
    producers, workers = [], []
    try:
        register_type(web.url)
        producers, workers = start_load(tmp_path, own_mariadb, web.url)
        for _ in range(2):
            time.sleep(1.5)
            own_mariadb.kill9()
            time.sleep(1.5)
            own_mariadb.start()
        created = wait_done(own_mariadb, producers, time.monotonic() + 80)
        stop_workers(workers)
        check_outcome(own_mariadb, created, tmp_path, web)
    finally:
        for proc in producers + workers:
            if proc.poll() is None:
                proc.kill()
        web.close()


def run_with_freezes(own_mariadb, tmp_path, freezes, seconds, http_timeout, probe_503,
                     skip_locked="auto"):
    config = setup_database(own_mariadb, tmp_path, skip_locked)
    web = LiveServer(config, tmp_path / "server.log")
    producers, workers, waits = [], [], []
    try:
        register_type(web.url)
        producers, workers = start_load(tmp_path, own_mariadb, web.url, http_timeout)
        from taskq.client import Client, Unavailable

        probe = Client(web.url, retries=0, timeout=30)
        for _ in range(freezes):
            time.sleep(0.8)
            own_mariadb.freeze()
            frozen_at = time.monotonic()
            if probe_503:
                with pytest.raises(Unavailable) as caught:  # bounded by the read timeout
                    probe.get_task(1)
                waits.append(time.monotonic() - frozen_at)
                assert caught.value.status == 503 and caught.value.retry_after is not None
            time.sleep(max(0.0, seconds - (time.monotonic() - frozen_at)))
            own_mariadb.thaw()
        created = wait_done(own_mariadb, producers, time.monotonic() + 80)
        stop_workers(workers)
        check_outcome(own_mariadb, created, tmp_path, web)
    finally:
        own_mariadb.thaw()
        for proc in producers + workers:
            if proc.poll() is None:
                proc.kill()
        web.close()
    return waits


def test_mariadb_frozen_past_the_read_timeout_answers_503_and_loses_nothing(own_mariadb, tmp_path):
    waits = run_with_freezes(own_mariadb, tmp_path, freezes=2, seconds=READ_TIMEOUT + 1.5,
                             http_timeout=10, probe_503=True)
    print("503 while frozen after %s s (read_timeout %ds)"
          % (", ".join("%.1f" % w for w in waits), READ_TIMEOUT))


@pytest.mark.parametrize("skip_locked", ["auto", "off"])  # SKIP LOCKED; the portable claim path
def test_mariadb_frozen_past_the_workers_http_timeout_leaves_no_claim_orphaned(own_mariadb,
                                                                               tmp_path,
                                                                               skip_locked):
    """The database answers late, after the client gave up: the request ran, its answer
    is lost, and the worker sends it again (claims with their request_key, completes
    as they were) while the first may still be running."""
    run_with_freezes(own_mariadb, tmp_path, freezes=3, seconds=READ_TIMEOUT - 0.8,
                     http_timeout=READ_TIMEOUT - 1.5, probe_503=False, skip_locked=skip_locked)


PATIENT_WORKER = r"""
import os, sys, time
from taskq.client import Client
from taskq.worker import Budget, Runner

url, marker, lease, hold = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

def handler(params):
    open(marker, "w").close()      # the test takes the database down now
    time.sleep(hold)
    return {"done": params["n"]}

# one retry per request inside the client: before issue 8 a complete gave up
# as soon as the client's retries ran out, whatever the lease
client = Client(url, retries=1, timeout=5, backoff=0.2, max_delay=1.0)
runner = Runner(client, worker_id="patient", handlers={"fault.echo": handler}, budget=Budget(1),
                once=True, lease_seconds=lease, default_lease=lease,
                heartbeat_client=Client(url, retries=0, timeout=5))
sys.exit(runner.run())
"""


def run_patient_worker(own_mariadb, tmp_path, lease, hold, outage):
    """One task; the database goes down (-9) while it runs and comes back `outage` s later."""
    from live_server import wait_for
    from taskq.client import Client

    config = setup_database(own_mariadb, tmp_path)
    web = LiveServer(config, tmp_path / "server.log")
    try:
        client = Client(web.url)
        client.register_type("fault.echo", "1", {"type": "object"})
        task_id = client.create_task("fault.echo", {"n": 1})["id"]
        script, marker = tmp_path / "patient.py", tmp_path / "running"
        script.write_text(PATIENT_WORKER, encoding="utf-8")
        log = open(str(tmp_path / "patient.log"), "wb")
        proc = subprocess.Popen([sys.executable, str(script), web.url, str(marker), str(lease),
                                 str(hold)], stderr=log, env=python_env())
        log.close()
        wait_for(marker.exists, timeout=30)
        own_mariadb.kill9()
        down_at = time.monotonic()
        time.sleep(outage)
        own_mariadb.start()
        up_at = time.monotonic()
        assert proc.wait(timeout=lease + 60) == 0
        events = own_mariadb.execute(
            "SELECT event, worker_id, created_at FROM task_history WHERE task_id = %d ORDER BY id"
            % task_id, database="taskq")
        task = client.get_task(task_id)
        return task, events, open(str(tmp_path / "patient.log"), encoding="utf-8").read(), \
            up_at - down_at
    finally:
        web.close()


def test_worker_keeps_completing_through_an_outage_while_the_lease_lives(own_mariadb, tmp_path):
    task, events, log, outage = run_patient_worker(own_mariadb, tmp_path, lease=30, hold=1.0,
                                                   outage=8)
    assert task["status"] == "completed" and task["result"] == {"done": 1}, log
    assert task["attempts"] == 1  # the work was not run again
    assert [e[0] for e in events if e[0] != "progress"] == ["created", "claimed", "completed"]
    assert "outcome=completed" in log and "not answered" in log
    print("completed after an outage of %.1fs" % outage)


def test_worker_drops_a_task_whose_lease_ran_out_and_beats_it_no_more(own_mariadb, tmp_path):
    task, events, log, outage = run_patient_worker(own_mariadb, tmp_path, lease=3, hold=5.0,
                                                   outage=6)
    assert "heartbeat for task %d gave up" % task["id"] in log, log
    assert "outcome=lost" in log  # the lease ended during the outage: not completed
    assert task["status"] in ("pending", "claimed", "failed") and task["result"] is None
    # nothing from this worker once the database was back: no beats of the dropped task
    assert [e[0] for e in events if e[1] == "patient"] == ["claimed"]
