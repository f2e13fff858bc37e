"""taskq.client against a real dev server: every route, typed errors, retries.

Retries are observed in the server's own request log (the dev server without
--quiet logs each request) and through the client's on_retry hook.
"""

import pytest
from live_server import LiveServer, closed_port, wait_for

from taskq.client import (ApiError, BadRequest, Client, Conflict, ConnectionFailed, Forbidden,
                          MethodNotAllowed, NotFound, ServerError, Unauthorized, Unavailable,
                          ValidationError, parse_retry_after)

SCHEMA = {"type": "object", "required": ["to"], "properties": {"to": {"type": "string"}}}


@pytest.fixture
def client(server):
    return Client(server.url, retries=2, backoff=0.05)


@pytest.fixture
def down_server(tmp_path):
    """A dev server whose MySQL database is a closed port: /health answers 503."""
    config = tmp_path / "down.ini"
    # with a config.ini key, a request is authorised without the database
    config.write_text("[database]\nbackend = mysql\nhost = 127.0.0.1\nport = %d\nconnect_timeout = 2\n"
                      "[api]\napi_key = down-key\n" % closed_port(), encoding="utf-8")
    srv = LiveServer(config, tmp_path / "down.log", quiet=False)
    yield srv
    srv.close()


def requests_logged(server, request_line, at_least=1):
    """How many times the server logged this request line (it logs after answering)."""
    count = lambda: server.log().count('"%s HTTP/1.1"' % request_line)  # noqa: E731
    wait_for(lambda: count() >= at_least, timeout=10)
    return count()


def test_client_drives_every_route_and_returns_plain_data(server, client, backend):
    assert client.health()["database"]["backend"] == backend
    assert client.openapi()["openapi"].startswith("3.1")
    assert client.register_type("mail.send", "1", SCHEMA, max_attempts=2)["created"] is True
    assert client.get_type("mail.send")["param_schema"] == SCHEMA
    assert [t["name"] for t in client.list_types(active_only=True)["task_types"]] == ["mail.send"]

    created = client.create_task("mail.send", {"to": "a@example.com"}, priority=2)
    assert (created["status"], created["priority"], created["deduplicated"]) == ("pending", 2, False)
    again = client.create_task("mail.send", {"to": "a@example.com"})
    assert (again["id"], again["deduplicated"]) == (created["id"], True)

    task = client.claim("w1", type_pattern="mail.%", lease_seconds=60)
    assert (task["id"], task["params"], task["attempts"]) == (created["id"], {"to": "a@example.com"}, 1)
    assert client.claim("w1") is None
    assert client.progress(task["id"], "w1", 40, "half way")["progress"] == 40
    done = client.complete(task["id"], "w1", result={"sent": True})
    assert done == {"id": task["id"], "status": "completed", "attempts": 1, "will_retry": False}

    stored = client.get_task(task["id"])
    assert (stored["status"], stored["result"], stored["max_attempts"]) == ("completed", {"sent": True}, 2)
    history = client.task_history(task["id"])["events"]
    assert [e["event"] for e in history] == ["created", "claimed", "progress", "completed"]
    listed = client.list_tasks(status="completed", type="mail.%", limit=10)
    assert [t["id"] for t in listed["tasks"]] == [task["id"]]
    assert client.list_tasks(status="pending")["total"] == 0


def test_client_claims_by_type_id_and_order_and_pages_lists(server, client):
    alpha = client.register_type("c.alpha", "1", {"type": "object"})["id"]
    client.register_type("c.beta", "1", {"type": "object"})
    old = client.create_task("c.alpha", {"n": 1})["id"]
    new = client.create_task("c.alpha", {"n": 2}, priority=5)["id"]
    client.create_task("c.beta", {"n": 3}, priority=9)
    task = client.claim("w", task_type_id=alpha, sort_by="created_at", sort_order="ASC")
    assert task["id"] == old and task["type_id"] == alpha and task["status"] == "claimed"
    assert [t["id"] for t in client.claim_batch("w", 5, task_type_id=alpha)] == [new]
    assert client.claim("w", task_type_id=alpha) is None
    with pytest.raises(BadRequest) as caught:
        client.claim("w", sort_by="name")
    assert "created_at, priority, id, attempts" in caught.value.message
    listed = client.list_tasks(limit=2, offset=1)
    assert listed["pagination"] == {"total": 3, "page": 1, "per_page": 2, "total_pages": 2,
                                    "limit": 2, "offset": 1}
    assert (listed["total"], listed["count"], listed["limit"], listed["offset"]) == (3, 2, 2, 1)
    types = client.list_types()
    assert types["count"] == 2 and types["pagination"]["total"] == 2
    assert {t["name"]: t["usage_count"] for t in types["task_types"]} == {"c.alpha": 2, "c.beta": 1}


def test_falsy_results_and_failures_round_trip(server, client):
    client.register_type("job", "1", {"type": "object"})
    first = client.create_task("job", {"n": 1})["id"]
    second = client.create_task("job", {"n": 2})["id"]
    client.claim("w")
    client.claim("w")
    client.complete(first, "w", result=0)
    assert client.get_task(first)["result"] == 0
    assert client.fail(second, "w", "it broke")["will_retry"] is True
    assert client.get_task(second)["error_message"] == "it broke"


def test_api_errors_raise_typed_exceptions(server, client):
    client.register_type("mail.send", "1", SCHEMA)
    with pytest.raises(NotFound) as missing:
        client.get_task(99999)
    assert missing.value.status == 404
    assert missing.value.message == "Task not found: 99999"
    with pytest.raises(NotFound):
        client.get_type("no.such.type")

    with pytest.raises(ValidationError) as invalid:
        client.create_task("mail.send", {"to": 5})
    assert invalid.value.message == "Parameter validation failed"
    assert invalid.value.details == [{"path": "$.to", "message": "5 is not of type 'string'"}]
    with pytest.raises(BadRequest) as bad:
        client.create_task("mail.send", "not an object")
    assert not isinstance(bad.value, ValidationError)

    task_id = client.create_task("mail.send", {"to": "b@example.com"})["id"]
    with pytest.raises(Conflict):
        client.complete(task_id, "w1", result=1)  # not claimed
    client.claim("w1")
    with pytest.raises(Forbidden):
        client.progress(task_id, "w2", 10)
    with pytest.raises(MethodNotAllowed):
        client.request("DELETE", "/tasks")
    with pytest.raises(NotFound) as route:
        Client(server.url + "/nowhere").claim("w1")
    assert route.value.message.startswith("Route not found")
    assert all(issubclass(cls, ApiError) for cls in (NotFound, Conflict, Forbidden, BadRequest))


def test_api_key_is_sent_and_a_wrong_one_raises_unauthorized(config_factory, tmp_path):
    srv = LiveServer(config_factory(api={"api_key": "s3cret"}).path, tmp_path / "server.log")
    try:
        with pytest.raises(Unauthorized):
            Client(srv.url, api_key="wrong").list_types()
        with pytest.raises(Unauthorized):
            Client(srv.url).list_types()
        assert Client(srv.url, api_key="s3cret").list_types()["count"] == 0
    finally:
        srv.close()


def test_503_is_retried_waiting_what_retry_after_asks_then_raises_unavailable(down_server):
    waits = []
    client = Client(down_server.url, retries=2, backoff=0.001, max_delay=0.2,
                    on_retry=lambda attempt, delay, error: waits.append((attempt, delay, error.status)))
    with pytest.raises(Unavailable) as down:
        client.health()
    assert down.value.status == 503
    assert down.value.retry_after == 5.0
    assert down.value.details["database"]["reachable"] is False
    # Retry-After: 5, capped by max_delay, rather than the 1-4 ms backoff.
    assert waits == [(1, 0.2, 503), (2, 0.2, 503)]
    assert requests_logged(down_server, "GET /health", at_least=3) == 3


def test_4xx_answers_are_never_retried(down_server):
    waits = []
    client = Client(down_server.url, api_key="down-key", retries=3, backoff=0.001,
                    on_retry=lambda *args: waits.append(args))
    with pytest.raises(BadRequest):
        client.request("POST", "/tasks", {"params": {}})
    with pytest.raises(NotFound):
        client.request("GET", "/no/such/route")
    assert waits == []
    assert requests_logged(down_server, "POST /tasks") == 1
    assert requests_logged(down_server, "GET /no/such/route") == 1


def test_unreachable_server_is_retried_then_raises_connection_failed():
    waits = []
    client = Client("http://127.0.0.1:%d" % closed_port(), retries=3, backoff=0.01,
                    on_retry=lambda attempt, delay, error: waits.append((attempt, delay)))
    with pytest.raises(ConnectionFailed) as failed:
        client.health()
    assert isinstance(failed.value, Unavailable)
    assert failed.value.status is None
    assert [attempt for attempt, _ in waits] == [1, 2, 3]
    assert all(0 <= delay <= 0.01 * 2 ** (attempt - 1) for attempt, delay in waits)


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_base_url_must_be_http():
    with pytest.raises(ValueError):
        Client("ftp://example.com")
    assert issubclass(Unavailable, ServerError)


def test_client_sets_type_settings_pauses_and_steers_tasks(server, client):
    client.register_type("ops.client", "1", SCHEMA, max_attempts=1)
    typed = client.type_settings("ops.client", max_concurrency=2, dedupe_scope="active")
    assert (typed["max_concurrency"], typed["dedupe_scope"]) == (2, "active")
    assert client.type_settings("ops.client", max_concurrency=None)["max_concurrency"] is None
    assert client.pause_type("ops.client")["is_paused"] is True
    first = client.create_task("ops.client", {"to": "a"})
    assert client.claim("w1") is None
    assert client.resume_type("ops.client")["is_paused"] is False
    assert client.cancel_task(first["id"])["previous_status"] == "pending"
    assert client.retry_task(first["id"])["status"] == "pending"
    claimed = client.claim("w1")
    assert client.requeue_task(claimed["id"])["previous_status"] == "claimed"
    claimed = client.claim("w1")
    client.complete(claimed["id"], "w1", result={"ok": 1})
    assert client.rerun_task(claimed["id"])["status"] == "pending"
    with pytest.raises(Conflict):
        client.rerun_task(claimed["id"])
    outcome = client.bulk("cancel", type="ops.%", status="pending", limit=10)
    assert (outcome["changed"], outcome["ids"], outcome["more"]) == (1, [first["id"]], False)
    with pytest.raises(BadRequest):
        client.bulk("cancel", status="completed")


def test_claim_sends_a_fresh_request_key_and_repeats_a_given_one(server, client):
    client.register_type("keyed.job", "1", {"type": "object"})
    ids = [client.create_task("keyed.job", {"n": n})["id"] for n in range(4)]
    key = "retry-of-one-claim"
    assert client.claim("w1", request_key=key)["id"] == ids[0]
    assert client.claim("w1", request_key=key)["id"] == ids[0]  # a repeat: the same task
    assert client.claim("w1")["id"] == ids[1]  # no key given: a fresh one, a new claim
    first = client.claim_batch("w1", 2, request_key="batch-key")
    assert [t["id"] for t in first] == ids[2:]
    assert client.claim_batch("w1", 2, request_key="batch-key") == first
    assert client.claim_batch("w1", 2) == []


def test_client_runs_later_backs_off_and_drives_schedules(server, client):
    client.register_type("feed.pull", "1", {"type": "object"}, retry_delay_seconds=60,
                         retry_backoff="exponential", retry_jitter=0.0)
    assert client.get_type("feed.pull")["retry_backoff"] == "exponential"
    later = client.create_task("feed.pull", {"n": 1}, delay_seconds=3600)
    assert later["status"] == "scheduled"
    import datetime

    at = datetime.datetime(2999, 1, 1, 12, 0)  # naive: UTC
    assert client.create_task("feed.pull", {"n": 2}, run_at=at)["run_at"] == "2999-01-01T12:00:00Z"
    assert client.claim("w1") is None
    now = client.create_task("feed.pull", {"n": 3})
    task = client.claim("w1")
    assert task["id"] == now["id"]
    failed = client.fail(task["id"], "w1", "429", retry_after_seconds=120)
    assert (failed["status"], failed["retry_delay_seconds"]) == ("scheduled", 120)

    made = client.create_schedule("feed.pull", {"n": 4}, cron="0 6 * * *", timezone="UTC",
                                  name="morning", catch_up="all", catch_up_limit=5)
    assert made["next_run_at"].endswith("T06:00:00Z") and made["catch_up_limit"] == 5
    assert [s["name"] for s in client.list_schedules()["schedules"]] == ["morning"]
    assert client.pause_schedule(made["id"])["paused"] is True
    assert client.resume_schedule(made["id"])["paused"] is False
    assert client.get_schedule(made["id"])["cron"] == "0 6 * * *"
    assert client.delete_schedule(made["id"])["deleted"] is True
    with pytest.raises(NotFound):
        client.get_schedule(made["id"])


def test_client_drives_stats_metrics_keys_and_purge(config_factory, tmp_path):
    srv = LiveServer(config_factory(api={"api_key": "root-key"}).path, tmp_path / "server.log")
    try:
        admin = Client(srv.url, api_key="root-key", retries=0)
        made = admin.create_key("ingest", "producer")
        assert made["key"].startswith("tqk_") and made["role"] == "producer"
        assert [(k["name"], k["prefix"]) for k in admin.list_keys()] == [("ingest", made["prefix"])]
        producer = Client(srv.url, api_key=made["key"], retries=0)
        producer.register_type("mail.send", "1", SCHEMA)
        producer.create_task("mail.send", {"to": "a@example.com"})
        with pytest.raises(Forbidden) as denied:
            producer.claim("w1")
        assert "worker role" in denied.value.message
        assert producer.stats()["counts"] == {"pending": 1}
        assert 'taskq_tasks{type="mail.send",status="pending"} 1' in producer.metrics()
        assert admin.purge(max_rows=10)["more"] is False
        assert admin.revoke_key("ingest")["revoked"] is True
        with pytest.raises(Unauthorized):
            producer.stats()
    finally:
        srv.close()


# -- several base URLs: one per web node -----------------------------------------
def test_several_urls_move_on_at_once_past_a_dead_node_and_a_503_one_then_skip_them(
        server, down_server):
    dead = "http://127.0.0.1:%d" % closed_port()
    moves, waits = [], []
    client = Client([dead, down_server.url, server.url], start=0, retries=0,
                    on_failover=lambda failed, following, error: moves.append(
                        (failed, following, error.status)),
                    on_retry=lambda *args: waits.append(args))
    assert client.health()["status"] == "ok"
    assert moves == [(dead, down_server.url, None), (down_server.url, server.url, 503)]
    assert waits == []  # no wait: another node was there to ask
    assert client.base_url == server.url
    for _ in range(3):  # the failed nodes are in back-off: straight to the live one
        client.health()
    assert len(moves) == 2
    assert requests_logged(down_server, "GET /health") == 1


def test_a_failed_home_node_is_tried_again_after_its_backoff_and_gets_the_work_back(
        server, tmp_path, config_factory):
    port = closed_port()
    client = Client(["http://127.0.0.1:%d" % port, server.url], start=0, retries=0,
                    node_backoff=0.3)
    assert client.health()["status"] == "ok"  # through the second node
    assert client.base_url == server.url
    home = LiveServer(config_factory().path, tmp_path / "home.log", quiet=False, port=port)
    try:
        wait_for(lambda: client.base_url == home.url, timeout=5)  # the back-off is over
        client.health()
        client.health()
        assert requests_logged(home, "GET /health", at_least=2) == 2
    finally:
        home.close()


def test_when_every_node_fails_each_round_asks_them_all_then_waits(down_server):
    dead = "http://127.0.0.1:%d" % closed_port()
    moves, waits = [], []
    client = Client([down_server.url, dead], start=0, retries=2, backoff=0.001, max_delay=0.05,
                    node_backoff=60,
                    on_failover=lambda failed, following, error: moves.append((failed, following)),
                    on_retry=lambda attempt, delay, error: waits.append(attempt))
    with pytest.raises(ConnectionFailed):
        client.health()
    assert waits == [1, 2]
    # every round asks both (all in back-off: the one back soonest first)
    assert len(moves) == 3
    assert requests_logged(down_server, "GET /health", at_least=3) == 3


def test_a_4xx_answer_is_not_failed_over_and_keeps_the_node(server, down_server):
    moves = []
    client = Client([server.url, down_server.url], start=0, retries=0,
                    on_failover=lambda *args: moves.append(args))
    with pytest.raises(NotFound):
        client.request("GET", "/no/such/route")
    assert moves == [] and client.base_url == server.url
    assert down_server.log().count("/no/such/route") == 0


def test_every_base_url_must_be_http_and_one_string_is_one_node():
    with pytest.raises(ValueError):
        Client([])
    with pytest.raises(ValueError):
        Client(["http://127.0.0.1:1", "ftp://example.com"])
    assert Client("http://127.0.0.1:1/api/").base_urls == ["http://127.0.0.1:1/api"]
