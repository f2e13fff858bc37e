"""A claim that carries the results of the worker's finished tasks (issue 11).

`POST /tasks/claim` with `results` (the items of POST /tasks/complete)
completes those, then claims: one request per task or per batch instead of
two. The client and the worker use it by default and fall back to the
separate routes against a server that ignores or refuses the field.
"""

import json
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from conftest import ApiClient, claim, create, register, snapshot
from live_server import LiveServer

from taskq.app import Application
from taskq.client import Client
from taskq.worker import Runner


def done(task_id, **extra):
    item = {"id": task_id, "success": True, "result": {"done": task_id}}
    item.update(extra)
    return item


def test_claim_with_results_completes_them_then_claims_the_next(api):
    register(api)
    ids = [create(api, {"n": n})["id"] for n in range(3)]
    first = claim(api, limit=2).data["tasks"]
    answer = claim(api, limit=2, results=[done(t["id"]) for t in first])
    assert answer.status == 200, answer
    data = answer.data
    assert [r["id"] for r in data["results"]] == [t["id"] for t in first]
    assert all(r["ok"] and r["status"] == "completed" for r in data["results"])
    assert (data["completed"], data["failed"]) == (2, 0)
    assert [t["id"] for t in data["tasks"]] == [ids[2]] and data["count"] == 1
    for task in first:
        view = api.get("/tasks/%d" % task["id"]).data
        assert view["status"] == "completed" and view["result"] == {"done": task["id"]}
    assert api.get("/tasks/%d" % ids[2]).data["status"] == "claimed"


def test_claim_with_results_answers_the_outcomes_when_nothing_is_left_to_claim(api):
    register(api, max_attempts=1)
    create(api)
    task = claim(api).data
    # no `limit`: with results the answer is still the list form, never a 404
    answer = claim(api, results=[{"id": task["id"], "success": False, "error": "boom"}])
    assert answer.status == 200, answer
    assert answer.data["tasks"] == [] and answer.data["count"] == 0
    outcome = answer.data["results"][0]
    assert outcome["ok"] and outcome["id"] == task["id"] and outcome["status"] == "failed"
    assert api.get("/tasks/%d" % task["id"]).data["error_message"] == "boom"


def test_claim_results_item_errors_spoil_neither_the_other_items_nor_the_claim(api):
    register(api)
    mine = create(api, {"n": 1})["id"]
    theirs = create(api, {"n": 2})["id"]
    waiting = create(api, {"n": 3})["id"]
    assert claim(api, "w1").data["id"] == mine
    assert claim(api, "w2").data["id"] == theirs
    answer = claim(api, "w1", limit=5,
                   results=[done(mine), done(theirs), {"id": "x", "success": True}, done(999999)])
    assert answer.status == 200, answer
    statuses = [(r["ok"], r["status"]) for r in answer.data["results"]]
    assert statuses == [(True, "completed"), (False, 403), (False, 400), (False, 404)]
    assert [t["id"] for t in answer.data["tasks"]] == [waiting]
    assert api.get("/tasks/%d" % theirs).data["status"] == "claimed"


@pytest.mark.parametrize("results", [[], {"id": 1}, "done", [done(1)] * 101])
def test_claim_with_malformed_results_is_a_400_naming_the_field_and_changes_nothing(api, results):
    register(api)
    create(api)
    before = snapshot(api)
    answer = claim(api, results=results)
    assert answer.status == 400
    assert "'results'" in answer.error
    assert snapshot(api) == before


def test_health_announces_that_claims_carry_results(api):
    assert "claim_results" in api.get("/health").data["features"]


# -- the client and the worker, over HTTP ---------------------------------------
def test_client_claim_after_is_one_request_against_this_server(server):
    client = Client(server.url, retries=1, backoff=0.05)
    client.register_type("job", "1", {"type": "object"})
    for n in range(3):
        client.create_task("job", {"n": n})
    tasks = client.claim_batch("w1", 2)
    answer = client.claim_after("w1", [done(t["id"]) for t in tasks], 2)
    assert client.claim_results is True
    assert answer["completed"] == 2 and len(answer["tasks"]) == 1 and answer["count"] == 1
    assert all(client.get_task(t["id"])["status"] == "completed" for t in tasks)


class OldServer:
    """The app as a server before issue 11 took it: a claim ignores `results`
    (or, refuse=True, answers 400 naming it, as a strict server would)."""

    def __init__(self, config, refuse=False):
        self.app = Application(config=config)
        self.refuse = refuse
        self.claims = []
        self.server = make_server("127.0.0.1", 0, self, WSGIServer, _Quiet)
        self.url = "http://127.0.0.1:%d" % self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] == "/tasks/claim":
            import io

            body = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
            self.claims.append(sorted(body))
            if "results" in body and self.refuse:
                start_response("400 Bad Request", [("Content-Type", "application/json")])
                return [b'{"success": false, "error": "Unknown field \'results\'"}']
            body.pop("results", None)
            raw = json.dumps(body).encode("utf-8")
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(raw), str(len(raw))
        return self.app(environ, start_response)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.parametrize("refuse", [False, True], ids=["ignores", "refuses"])
def test_client_falls_back_to_the_separate_routes_on_an_older_server(backend_config, refuse):
    api = ApiClient(Application(config=backend_config))
    register(api)
    ids = [create(api, {"n": n})["id"] for n in range(3)]
    old = OldServer(backend_config, refuse=refuse)
    try:
        client = Client(old.url, retries=0)
        first = client.claim_batch("w1", 1)
        answer = client.claim_after("w1", [done(first[0]["id"])], 1)
        assert client.claim_results is False
        assert answer["completed"] == 1 and answer["results"][0]["id"] == ids[0]
        assert [t["id"] for t in answer["tasks"]] == [ids[1]]
        # remembered: the next claim does not send `results` at all
        answer = client.claim_after("w1", [done(ids[1])], 1)
        assert answer["completed"] == 1 and [t["id"] for t in answer["tasks"]] == [ids[2]]
        assert "results" not in old.claims[-1]
        assert {"limit", "worker_id"} <= set(old.claims[-1])
    finally:
        old.close()
    assert [api.get("/tasks/%d" % i).data["status"] for i in ids] == ["completed", "completed",
                                                                      "claimed"]


def test_worker_reports_each_task_on_its_next_claim(config_factory, tmp_path):
    """A worker one task at a time: one request per task (the claim carries the previous
    result), never POST /tasks/{id}/complete; the last result goes on the last claim."""
    config = config_factory()
    srv = LiveServer(config.path, tmp_path / "server.log", quiet=False)
    try:
        client = Client(srv.url, retries=1, backoff=0.05)
        client.register_type("job", "1", {"type": "object"})
        ids = [client.create_task("job", {"n": n})["id"] for n in range(5)]
        lines = []
        runner = Runner(client, worker_id="w1", handlers={"job": lambda params: params["n"] * 2},
                        once=True, log=lines.append)
        assert runner.run() == 0
        for n, task_id in enumerate(ids):
            task = client.get_task(task_id)
            assert task["status"] == "completed" and task["result"] == n * 2
        assert sum("outcome=completed" in line for line in lines) == 5
        log = srv.log()
    finally:
        srv.close()
    requests = [line for line in log.splitlines() if '"POST ' in line]
    assert not [line for line in requests if "/complete" in line], requests
    claims = [line for line in requests if "/tasks/claim" in line]
    assert len(claims) == 6  # five that got a task (four carrying a result), one carrying the last


def test_worker_that_stops_reports_its_last_results_with_their_own_request(config_factory, tmp_path):
    """--max-tasks: no claim follows the last task, so its result goes to POST /tasks/complete."""
    from taskq.worker import Budget

    config = config_factory()
    srv = LiveServer(config.path, tmp_path / "server.log", quiet=False)
    try:
        client = Client(srv.url, retries=1, backoff=0.05)
        client.register_type("job", "1", {"type": "object"})
        ids = [client.create_task("job", {"n": n})["id"] for n in range(3)]
        runner = Runner(client, worker_id="w1", handlers={"job": lambda params: params["n"]},
                        budget=Budget(2), log=lambda line: None)
        assert runner.run() == 0
        assert [client.get_task(i)["status"] for i in ids] == ["completed", "completed", "pending"]
        log = srv.log()
    finally:
        srv.close()
    assert "POST /tasks/%d/complete" % ids[1] in log
