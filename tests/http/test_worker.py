"""`python -m taskq.worker` against a real dev server, on SQLite and MariaDB.

Workers are real processes running real commands; failure paths are made
real too (a command that exits non-zero or hangs, a worker killed with
SIGKILL, a worker stopped with SIGSTOP until its lease is taken).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from live_server import ROOT, LiveServer, pid_alive, python_env, start_worker, wait_for

from taskq.client import Client

ECHO = """#!/bin/sh
params=$(cat)
printf '{"echo":%s,"id":%s,"type":"%s","attempt":%s}' "$params" "$TASKQ_TASK_ID" "$TASKQ_TASK_TYPE" "$TASKQ_ATTEMPT"
"""


@pytest.fixture
def client(server):
    return Client(server.url, retries=2, backoff=0.05)


def script(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def register(client, name="job", **overrides):
    client.register_type(name, "1", {"type": "object"}, **overrides)


def create(client, count, type_name="job", start=0):
    ids = []
    for first in range(start, start + count, 500):
        batch = [{"type": type_name, "params": {"n": n}}
                 for n in range(first, min(start + count, first + 500))]
        ids += [r["id"] for r in client.create_tasks(batch)["results"]]
    return ids


def finish(proc, timeout=30):
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def task_lines(log_path):
    with open(str(log_path), encoding="utf-8") as handle:
        return [line for line in handle if " task=" in line]


def events(client, task_id):
    return [e["event"] for e in client.task_history(task_id)["events"]]


def test_pool_of_four_drains_500_tasks_each_completed_once_with_json_result(server, client, tmp_path):
    register(client)
    ids = create(client, 500)
    log = tmp_path / "worker.log"
    proc = start_worker(server.url, "--concurrency", 4, "--once", "--exec", script(tmp_path, "echo.sh", ECHO),
                        log_path=log)
    assert finish(proc, 120) == 0

    tasks = {}
    offset = 0
    while offset < 500:
        page = client.list_tasks(type="job", limit=250, offset=offset)["tasks"]
        tasks.update((t["id"], t) for t in page)
        offset += 250
    assert sorted(tasks) == sorted(ids)
    for task in tasks.values():
        assert task["status"] == "completed"
        assert task["attempts"] == 1
        assert task["result"] == {"echo": task["params"], "id": task["id"], "type": "job", "attempt": 1}
    lines = task_lines(log)
    completed = [line for line in lines if "outcome=completed" in line]
    assert len(completed) == len(lines) == 500
    logged_ids = sorted(int(line.split(" task=")[1].split()[0]) for line in completed)
    assert logged_ids == sorted(ids)
    assert all(" type=job attempt=1 " in line and " duration=" in line for line in completed)
    assert len({line.split("taskq-worker[")[1].split("]")[0] for line in completed}) <= 4
    assert events(client, ids[0]) == ["created", "claimed", "completed"]


def test_nonzero_exit_is_retried_until_max_attempts_then_failed_with_stderr_tail(server, client, tmp_path):
    register(client, max_attempts=3)
    task_id, = create(client, 1)
    failing = script(tmp_path, "fail.sh", """
        #!/bin/sh
        cat > /dev/null
        head -c 6000 /dev/zero | tr '\\0' 'x' >&2
        printf '\\nattempt %s went wrong\\n' "$TASKQ_ATTEMPT" >&2
        exit 3
    """)
    log = tmp_path / "worker.log"
    assert finish(start_worker(server.url, "--once", "--exec", failing, log_path=log)) == 0

    task = client.get_task(task_id)
    assert task["status"] == "failed"
    assert task["attempts"] == 3
    assert task["error_message"].endswith("xxx\nattempt 3 went wrong")
    assert len(task["error_message"]) < 6000
    assert events(client, task_id) == ["created", "claimed", "retry", "claimed", "retry",
                                       "claimed", "failed"]
    outcomes = [line.split("outcome=")[1].split()[0] for line in task_lines(log)]
    assert outcomes == ["retry", "retry", "failed"]


def test_task_timeout_kills_hung_command_and_fails_task(server, client, tmp_path):
    register(client, max_attempts=1)
    task_id, = create(client, 1)
    pidfile = tmp_path / "pid"
    hung = script(tmp_path, "hang.sh", """
        #!/bin/sh
        echo $$ > "%s"
        echo "about to hang" >&2
        exec sleep 60
    """ % pidfile)
    proc = start_worker(server.url, "--once", "--task-timeout", 1, "--exec", hung,
                        log_path=tmp_path / "worker.log")
    assert finish(proc) == 0

    task = client.get_task(task_id)
    assert task["status"] == "failed"
    assert task["error_message"].startswith("command timed out after 1s and was killed")
    assert "about to hang" in task["error_message"]
    assert not pid_alive(int(pidfile.read_text()))


def test_sigkilled_worker_task_is_reclaimed_and_finished_by_another_after_lease(server, client, tmp_path):
    register(client, claim_timeout=2)
    task_id, = create(client, 1)
    pidfile = tmp_path / "pid"
    command = script(tmp_path, "first-attempt-hangs.sh", """
        #!/bin/sh
        cat > /dev/null
        if [ "$TASKQ_ATTEMPT" = 1 ]; then echo $$ > "%s"; exec sleep 60; fi
        printf '{"finished_by":"%%s"}' "$TASKQ_WORKER_ID"
    """ % pidfile)
    first = start_worker(server.url, "--worker-id", "first", "--exec", command,
                         log_path=tmp_path / "first.log")
    try:
        wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
        first.kill()
        first.wait()
    finally:
        orphan = int(pidfile.read_text()) if pidfile.exists() and pidfile.read_text().strip() else None
        if orphan and pid_alive(orphan):
            os.kill(orphan, signal.SIGKILL)
        if first.poll() is None:
            first.kill()
            first.wait()
    assert client.get_task(task_id)["claimed_by"] == "first"

    second = start_worker(server.url, "--worker-id", "second", "--max-tasks", 1,
                          "--poll-min", 0.2, "--poll-max", 0.5, "--exec", command,
                          log_path=tmp_path / "second.log")
    assert finish(second) == 0
    task = client.get_task(task_id)
    assert task["status"] == "completed"
    assert task["attempts"] == 2
    assert task["result"] == {"finished_by": "second"}
    assert events(client, task_id) == ["created", "claimed", "lease_expired", "claimed", "completed"]


def test_sigterm_stops_claiming_and_completes_the_running_task_then_exits_zero(server, client, tmp_path):
    register(client)
    running, waiting = create(client, 2)
    started = tmp_path / "started"
    slow = script(tmp_path, "slow.sh", """
        #!/bin/sh
        cat > /dev/null
        touch "%s"
        sleep 1.5
        printf '{"slept":true}'
    """ % started)
    log = tmp_path / "worker.log"
    proc = start_worker(server.url, "--exec", slow, log_path=log)
    wait_for(started.exists)
    proc.send_signal(signal.SIGTERM)
    assert finish(proc) == 0

    assert client.get_task(running)["status"] == "completed"
    assert client.get_task(running)["result"] == {"slept": True}
    assert client.get_task(waiting)["status"] == "pending"
    assert len(task_lines(log)) == 1


def test_heartbeats_keep_the_lease_of_a_task_running_longer_than_it(server, client, tmp_path):
    register(client, claim_timeout=2)
    task_id, = create(client, 1)
    slow = script(tmp_path, "slow.sh", """
        #!/bin/sh
        cat > /dev/null
        sleep 3.5
        echo done
    """)
    proc = start_worker(server.url, "--worker-id", "holder", "--once", "--exec", slow,
                        log_path=tmp_path / "holder.log")
    wait_for(lambda: client.get_task(task_id)["claimed_by"] == "holder")
    # A second worker polls all along: it would take the task if the lease lapsed.
    rival = start_worker(server.url, "--worker-id", "rival", "--poll-min", 0.2, "--poll-max", 0.3,
                         "--exec", "cat", log_path=tmp_path / "rival.log")
    try:
        assert finish(proc) == 0
    finally:
        rival.send_signal(signal.SIGTERM)
        assert finish(rival) == 0
    task = client.get_task(task_id)
    assert task["status"] == "completed"
    assert task["attempts"] == 1
    assert task["claimed_by"] == "holder"
    assert task["result"] == {"stdout": "done\n"}
    assert "progress" in events(client, task_id)


def test_lost_lease_on_heartbeat_kills_command_and_does_not_complete(server, client, tmp_path):
    register(client, claim_timeout=2)
    task_id, = create(client, 1)
    pidfile, finished = tmp_path / "pid", tmp_path / "finished"
    command = script(tmp_path, "long.sh", """
        #!/bin/sh
        cat > /dev/null
        echo $$ > "%s"
        sleep 30
        touch "%s"
    """ % (pidfile, finished))
    log = tmp_path / "worker.log"
    proc = start_worker(server.url, "--worker-id", "paused", "--max-tasks", 1, "--exec", command,
                        log_path=log)
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip())
    command_pid = int(pidfile.read_text())
    proc.send_signal(signal.SIGSTOP)  # no heartbeats: the lease lapses
    try:
        thief = wait_for(lambda: client.claim("thief"), timeout=10, interval=0.3)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert thief["id"] == task_id
    assert finish(proc) == 0

    assert not pid_alive(command_pid)
    assert not finished.exists()
    task = client.get_task(task_id)
    assert task["status"] == "claimed"
    assert task["claimed_by"] == "thief"
    assert "completed" not in events(client, task_id)
    outcome, = [line.split("outcome=")[1].split()[0] for line in task_lines(log)]
    assert outcome == "lost"


HANDLERS = """
import sys
from taskq import worker

@worker.handler("math.add")
def add(params):
    return {"sum": params["a"] + params["b"]}

@worker.handler("math.div_by")
def divide(params, task):
    task.progress(50, "dividing")
    return 100 // params["d"]

if __name__ == "__main__":
    sys.exit(worker.main())
"""


def test_python_handlers_complete_with_return_value_or_exception_and_claim_only_their_types(
        server, client, tmp_path):
    for name in ("math.add", "math.div_by", "math.divXby"):
        register(client, name, max_attempts=1)
    added, = create(client, 1, "math.add")
    client.create_task("math.add", {"a": 2, "b": 3})
    good = client.create_task("math.div_by", {"d": 4})["id"]
    bad = client.create_task("math.div_by", {"d": 0})["id"]
    other = client.create_task("math.divXby", {"a": 1})["id"]
    path = script(tmp_path, "handlers.py", HANDLERS)
    log = tmp_path / "worker.log"
    proc = start_worker(server.url, "--once", "--batch", 10, script=path, log_path=log)
    assert finish(proc) == 0

    assert client.get_task(added)["status"] == "failed"  # params {"n": 0}: KeyError
    assert "KeyError: 'a'" in client.get_task(added)["error_message"]
    assert [t["result"] for t in client.list_tasks(status="completed", type="math.add")["tasks"]] == [{"sum": 5}]
    assert client.get_task(good)["result"] == 25
    assert "progress" in events(client, good)
    failed = client.get_task(bad)
    assert failed["status"] == "failed"
    assert failed["error_message"].endswith("ZeroDivisionError: integer division or modulo by zero")
    assert client.get_task(other)["status"] == "pending"  # `_` in math.div_by is not a wildcard
    assert len(task_lines(log)) == 4


def test_worker_reads_api_key_from_environment(config_factory, tmp_path):
    config = config_factory(api={"api_key": "s3cret"})
    srv = LiveServer(config.path, tmp_path / "server.log")
    try:
        client = Client(srv.url, api_key="s3cret")
        register(client)
        task_id, = create(client, 1)
        env = python_env(TASKQ_API_KEY="s3cret")
        proc = start_worker(srv.url, "--once", "--exec", "cat", log_path=tmp_path / "w.log", env=env)
        assert finish(proc) == 0
        assert client.get_task(task_id)["result"] == {"n": 0}

        refused = start_worker(srv.url, "--once", "--exec", "cat", log_path=tmp_path / "refused.log")
        assert finish(refused) == 2
    finally:
        srv.close()


def test_worker_without_exec_or_handlers_exits_with_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "taskq.worker", "--url", "http://127.0.0.1:9"],
                          env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.returncode == 2
    assert b"--exec" in proc.stderr


def test_result_that_is_not_json_is_stored_as_stdout(server, client, tmp_path):
    register(client)
    task_id, = create(client, 1)
    proc = start_worker(server.url, "--once", "--exec", "echo plain text", log_path=tmp_path / "w.log")
    assert finish(proc) == 0
    assert client.get_task(task_id)["result"] == {"stdout": "plain text\n"}
    assert json.dumps(client.get_task(task_id)["params"]) == '{"n": 0}'


def test_worker_claims_only_its_task_type_id_in_the_order_asked(server, client, tmp_path):
    wanted = client.register_type("w.wanted", "1", {"type": "object"})["id"]
    client.register_type("w.other", "1", {"type": "object"})
    ids = [client.create_task("w.wanted", {"n": n}, priority=n)["id"] for n in range(3)]
    other = client.create_task("w.other", {"n": 9}, priority=99)["id"]
    seen = tmp_path / "seen.txt"
    proc = start_worker(server.url, "--once", "--worker-id", "typed", "--task-type-id", wanted,
                        "--sort-by", "created_at", "--sort-order", "ASC",
                        "--exec", 'echo "$TASKQ_TASK_ID" >> %s; echo {}' % seen,
                        log_path=tmp_path / "w.log")
    assert finish(proc) == 0
    assert all(client.get_task(task_id)["status"] == "completed" for task_id in ids)
    # oldest first, whatever the priority, and never the other type
    assert seen.read_text().split() == [str(task_id) for task_id in ids]
    assert client.get_task(other)["status"] == "pending"


EXAMPLES = os.path.join(ROOT, "examples")


def test_shell_example_worker_speaks_the_http_contract(server, client, tmp_path):
    register(client, "Demo.Echo")
    register(client, "Other", max_attempts=1)
    task_id = client.create_task("Demo.Echo", {"text": "hi"})["id"]
    other = client.create_task("Other", {"x": 1})["id"]
    env = python_env(TASKQ_URL=server.url, TASKQ_ONCE="1", TASKQ_WORKER_ID="shell")
    proc = subprocess.run(["bash", os.path.join(EXAMPLES, "worker.sh"), "Demo.%"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert proc.returncode == 0, proc.stderr
    task = client.get_task(task_id)
    assert (task["status"], task["claimed_by"]) == ("completed", "shell")
    assert task["result"] == {"type": "Demo.Echo", "echo": {"text": "hi"}, "keys": ["text"]}
    assert client.get_task(other)["status"] == "pending"
    assert b"outcome=completed" in proc.stderr


def test_shell_example_worker_claims_by_type_id_in_the_order_asked(server, client, tmp_path):
    wanted = client.register_type("Demo.Echo", "1", {"type": "object"})["id"]
    client.register_type("Other", "1", {"type": "object"})
    first = client.create_task("Demo.Echo", {"text": "a"}, priority=1)["id"]
    second = client.create_task("Demo.Echo", {"text": "b"}, priority=5)["id"]
    other = client.create_task("Other", {"x": 1}, priority=9)["id"]
    env = python_env(TASKQ_URL=server.url, TASKQ_ONCE="1", TASKQ_WORKER_ID="shell",
                     TASKQ_TASK_TYPE_ID=str(wanted), TASKQ_SORT_BY="id", TASKQ_SORT_ORDER="ASC")
    proc = subprocess.run(["bash", os.path.join(EXAMPLES, "worker.sh")], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert proc.returncode == 0, proc.stderr
    order = [line.split()[0] for line in proc.stderr.decode().splitlines() if "outcome=" in line]
    assert order == ["task=%d" % first, "task=%d" % second]
    assert client.get_task(other)["status"] == "pending"


def test_python_example_worker_runs_its_handlers(server, client, tmp_path):
    register(client, "Demo.Echo")
    register(client, "Demo.Countdown", max_attempts=1)
    echo = client.create_task("Demo.Echo", {"text": "hi"})["id"]
    counted = client.create_task("Demo.Countdown", {"seconds": 1})["id"]
    failing = client.create_task("Demo.Countdown", {"seconds": 0, "fail": True})["id"]
    proc = start_worker(server.url, "--once", script=os.path.join(EXAMPLES, "worker.py"),
                        log_path=tmp_path / "worker.log")
    assert finish(proc) == 0
    assert client.get_task(echo)["result"] == {"echo": "hi"}
    assert client.get_task(counted)["result"] == {"counted": 1, "attempt": 1}
    assert client.get_task(failing)["error_message"].endswith("RuntimeError: asked to fail")


def test_every_worker_option_is_documented_in_the_workers_guide():
    from taskq.worker import build_parser

    with open(os.path.join(os.path.dirname(EXAMPLES), "docs", "workers.md"), encoding="utf-8") as handle:
        guide = handle.read()
    options = [o for action in build_parser()._actions for o in action.option_strings
               if o.startswith("--") and o != "--help"]
    assert options
    assert [o for o in options if "`%s" % o not in guide] == []


def test_sigterm_to_a_pool_lets_every_process_finish_its_task_then_exits_zero(server, client, tmp_path):
    register(client)
    ids = create(client, 4)
    marks = tmp_path / "marks"
    marks.mkdir()
    slow = script(tmp_path, "slow.sh", """
        #!/bin/sh
        cat > /dev/null
        touch "%s/$TASKQ_TASK_ID"
        sleep 1
        printf '{"done":%%s}' "$TASKQ_TASK_ID"
    """ % marks)
    log = tmp_path / "worker.log"
    proc = start_worker(server.url, "--concurrency", 2, "--exec", slow, log_path=log)
    wait_for(lambda: len(os.listdir(str(marks))) == 2)
    proc.send_signal(signal.SIGTERM)
    assert finish(proc) == 0

    started = sorted(int(name) for name in os.listdir(str(marks)))
    for task_id in ids:
        task = client.get_task(task_id)
        if task_id in started:
            assert (task["status"], task["result"]) == ("completed", {"done": task_id})
        else:
            assert task["status"] == "pending"
    assert len(task_lines(log)) == 2


def test_result_over_the_api_body_limit_fails_the_task_instead_of_lapsing(config_factory, tmp_path):
    srv = LiveServer(config_factory(api={"max_body_bytes": 2048}).path, tmp_path / "server.log")
    try:
        client = Client(srv.url)
        register(client, max_attempts=1)
        small, big = create(client, 2)
        command = script(tmp_path, "sized.sh", """
            #!/bin/sh
            cat > /dev/null
            if [ "$TASKQ_TASK_ID" = "%d" ]; then head -c 5000 /dev/zero | tr '\\0' 'x'; else echo 1; fi
        """ % big)
        proc = start_worker(srv.url, "--once", "--batch", 2, "--exec", command, log_path=tmp_path / "w.log")
        assert finish(proc) == 0
        assert client.get_task(small)["result"] == 1
        task = client.get_task(big)
        assert task["status"] == "failed"
        assert task["error_message"].startswith("result too large for the API")
    finally:
        srv.close()


RETRY_HANDLERS = """
import sys
from taskq import worker

@worker.handler("api.call")
def call(params):
    raise worker.RetryLater("429 Too Many Requests", retry_after=params["wait"])

if __name__ == "__main__":
    sys.exit(worker.main())
"""


def test_command_asks_for_its_retry_delay_with_a_retry_after_line(server, client, tmp_path):
    register(client, max_attempts=3)
    task_id, = create(client, 1)
    limited = script(tmp_path, "limited.sh", """
        #!/bin/sh
        cat > /dev/null
        echo "API rate limit exceeded" >&2
        echo "retry-after: 900" >&2
        exit 75
    """)
    log = tmp_path / "worker.log"
    assert finish(start_worker(server.url, "--once", "--exec", limited, log_path=log)) == 0
    task = client.get_task(task_id)
    assert (task["status"], task["attempts"]) == ("scheduled", 1)  # not retried at once
    assert task["run_at"] > task["updated_at"]
    assert events(client, task_id) == ["created", "claimed", "retry"]
    assert [line.split("outcome=")[1].split()[0] for line in task_lines(log)] == ["retry"]


def test_python_handler_raising_retry_later_sets_the_delay_in_a_batch(server, client, tmp_path):
    register(client, "api.call", max_attempts=3)
    first = client.create_task("api.call", {"wait": 600})["id"]
    second = client.create_task("api.call", {"wait": 0})["id"]
    path = script(tmp_path, "retry_handlers.py", RETRY_HANDLERS)
    proc = start_worker(server.url, "--once", "--batch", 10, script=path,
                        log_path=tmp_path / "worker.log")
    assert finish(proc) == 0
    assert client.get_task(first)["status"] == "scheduled"  # waits its 600 s
    # retry_after 0 comes back at once and runs until max_attempts
    assert (client.get_task(second)["status"], client.get_task(second)["attempts"]) == ("failed", 3)


def test_retry_after_helpers_bound_and_parse():
    from taskq.worker import MAX_RETRY_AFTER, retry_after_line, retry_after_of

    assert retry_after_line("ok\n", "Retry-After: 30\nretry-after: 45.4\n") == 45
    assert retry_after_line("retry-after: soon\n") is None
    assert retry_after_of(-5) == 0 and retry_after_of(10 ** 9) == MAX_RETRY_AFTER
    assert retry_after_of("60") is None and retry_after_of(True) is None


def _sleeping_children(pid):
    """Seconds of each `sleep N` child of process `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                ppid = int(handle.read().split(")")[-1].split()[1])
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                argv = handle.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and argv[0].endswith(b"sleep") and argv[1].isdigit():
            found.append(int(argv[1]))
    return found


@pytest.mark.slow
def test_shell_example_worker_stops_at_once_on_sigterm_while_idle(server, tmp_path):
    env = python_env(TASKQ_URL=server.url, TASKQ_WORKER_ID="shell-idle")
    proc = subprocess.Popen(["bash", os.path.join(EXAMPLES, "worker.sh")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: any(s >= 8 for s in _sleeping_children(proc.pid)), timeout=40)
        proc.send_signal(signal.SIGTERM)
        # the idle sleep lasts 8 s or more: exiting well before it ended means the trap ran at once
        assert proc.wait(4) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
