"""A three-stage workflow through the bundle under a real Apache (CGI), as a
pipeline author runs it: three `taskq.worker --exec` processes, a fan-in,
and one worker killed in the middle of a stage (issue 18).

fetch-a, fetch-b -> parse-a, parse-b (one parent each) -> report (both
parses). The command reads its parents' results from $TASKQ_PARENTS_FILE and
answers what it read, so the report's result shows the whole chain arrived.
The killed worker's task comes back when its lease runs out and is
completed once, by another worker.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import ROOT, empty_mysql
from test_apache import API_KEY, KEY, deployment, http, mysql_config, sqlite_config  # noqa: F401

pytestmark = pytest.mark.slow

STAGE = r'''
import json, os, sys, time
params = json.load(sys.stdin)
parents = []
if os.environ.get("TASKQ_PARENTS_FILE"):
    with open(os.environ["TASKQ_PARENTS_FILE"]) as handle:
        parents = json.load(handle)
time.sleep(float(params.get("sleep", 0)))
print(json.dumps({"name": params["name"], "by": os.environ["TASKQ_WORKER_ID"],
                  "from": {p["result"]["name"]: p["result"] for p in parents}}))
'''
LEASE = 4  # seconds: the killed worker's task comes back this soon


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def pipeline_site(request, deployment):  # noqa: F811 - the module fixture imported above
    name = "taskq-pipeline-%s" % request.param
    if request.param == "sqlite":
        config = sqlite_config()
    else:
        database = request.getfixturevalue("mysql_database")
        empty_mysql(database)
        config = mysql_config(database)
    deployment.add_site(name, config)
    return deployment.url(name, "/api")


def start_worker(api, worker_id, command, log):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "lib"))
    return subprocess.Popen(
        [sys.executable, "-m", "taskq.worker", "--url", api, "--api-key", API_KEY,
         "--worker-id", worker_id, "--type", "pipe.%", "--exec", command, "--lease", str(LEASE),
         "--poll-min", "0.2", "--poll-max", "0.5"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(what, check, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    pytest.fail("%s did not happen within %d s" % (what, seconds))


def test_three_exec_workers_run_a_fan_in_pipeline_while_one_is_killed(pipeline_site, tmp_path):
    api = pipeline_site
    for stage in ("fetch", "parse", "report"):
        assert http(api + "/task-types/register", "POST", {
            "name": "pipe.%s" % stage, "version": "1", "param_schema": {"type": "object"}},
            KEY).status in (200, 201)
    run = uuid.uuid4().hex[:8]
    batch = http(api + "/tasks", "POST", {"tasks": [
        {"ref": "fa", "type": "pipe.fetch", "params": {"name": "fetch-a", "run": run, "sleep": 3}},
        {"ref": "fb", "type": "pipe.fetch", "params": {"name": "fetch-b", "run": run, "sleep": 3}},
        {"ref": "pa", "type": "pipe.parse", "params": {"name": "parse-a", "run": run},
         "depends_on": ["fa"]},
        {"ref": "pb", "type": "pipe.parse", "params": {"name": "parse-b", "run": run},
         "depends_on": ["fb"]},
        {"ref": "rp", "type": "pipe.report", "params": {"name": "report", "run": run},
         "depends_on": ["pa", "pb"]}]}, KEY)
    assert batch.status == 200 and batch.data["created"] == 5, batch
    ids = {r["ref"]: r["id"] for r in batch.data["results"]}
    statuses = {ref: http(api + "/tasks/%d" % task_id, headers=KEY).data["status"]
                for ref, task_id in ids.items()}
    assert statuses == {"fa": "pending", "fb": "pending", "pa": "waiting", "pb": "waiting",
                        "rp": "waiting"}

    script = tmp_path / "stage.py"
    script.write_text(STAGE, encoding="utf-8")
    command = "%s %s" % (sys.executable, script)
    logs = {name: open(str(tmp_path / ("%s.log" % name)), "w") for name in ("w1", "w2", "w3")}
    workers = {"w1": start_worker(api, "w1", command, logs["w1"])}
    try:
        # w1 alone takes a fetch (3 s of work), and is killed in the middle of it
        held = wait_for("w1 claiming a fetch", lambda: [
            t for t in http(api + "/tasks?status=claimed", headers=KEY).data
            if t["claimed_by"] == "w1"])
        os.killpg(workers["w1"].pid, signal.SIGKILL)
        workers["w1"].wait(timeout=30)
        killed_task = held[0]["id"]
        for name in ("w2", "w3"):
            workers[name] = start_worker(api, name, command, logs[name])
        report = wait_for("the report completing", lambda: (
            lambda task: task if task["status"] == "completed" else None)(
                http(api + "/tasks/%d" % ids["rp"], headers=KEY).data))
    finally:
        for process in workers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in workers.values():
            process.wait(timeout=60)
        for handle in logs.values():
            handle.close()

    result = report["result"]
    assert result["name"] == "report"
    assert sorted(result["from"]) == ["parse-a", "parse-b"]  # the fan-in: both parents' results
    assert result["from"]["parse-a"]["from"]["fetch-a"]["name"] == "fetch-a"
    assert result["from"]["parse-b"]["from"]["fetch-b"]["name"] == "fetch-b"
    for ref, task_id in ids.items():
        task = http(api + "/tasks/%d" % task_id, headers=KEY).data
        events = [e["event"] for e in http(api + "/tasks/%d/history" % task_id,
                                           headers=KEY).data["events"]]
        assert task["status"] == "completed" and events.count("completed") == 1, (ref, events)
        assert task["result"]["by"] != "w1"  # the killed worker completed nothing
    killed = http(api + "/tasks/%d" % killed_task, headers=KEY).data
    assert killed["attempts"] == 2  # claimed by w1, came back after its lease, done once
    graph = http(api + "/tasks/%d/graph" % ids["rp"], headers=KEY).data
    assert len(graph["nodes"]) == 5 and len(graph["edges"]) == 4
