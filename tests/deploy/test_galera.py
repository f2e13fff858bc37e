"""taskq over a 3-node MariaDB Galera cluster (tests/support/galera.py).

Worker processes send their requests to the three nodes in turn, each node
with its own config file (as web nodes behind a load balancer would each
reach "their" database node), so a task is claimed through one node and
completed through another. What each worker was answered is recorded and
checked against every node's tables afterwards.

One cluster serves the whole module (starting it takes ~30 s); each test
gets its own database, which Galera creates on every node.
"""

import json
import multiprocessing
import time
import uuid
from collections import Counter

import pytest

from cgi_runner import run_cgi
from conftest import IN_CI, ApiClient, load_mysql_schema, register
from support.galera import GaleraCluster, missing_parts
from taskq import config as config_module
from taskq.app import Application
from taskq.store.mysql import MySQLStore
from support import races

pytestmark = pytest.mark.slow  # `galera` follows from the file's name (tests/conftest.py)

FORK = multiprocessing.get_context("fork")
RACE_TASKS = 5000
LOSS_TASKS = 1500
CLAIM_TASKS = 6000
# seconds: longer than the ~6 s a node loss stalls commits cluster-wide (so a
# worker's lease mostly outlives the stall; on a loaded machine the rejoining
# node's catch-up can stall them longer), short enough that a claim whose
# answer died with the node comes back within the test
LOSS_LEASE = 15
WORKER_DEADLINE = 150  # seconds; a worker past it stops and reports it


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_parts()
    if missing:
        if IN_CI:
            pytest.fail("Galera tests need %s (see .ci/run)" % ", ".join(missing))
        pytest.skip("Galera not installed: %s" % ", ".join(missing))
    galera = GaleraCluster(tmp_path_factory.mktemp("galera"))
    try:
        galera.start()
    except BaseException:
        galera.stop()
        raise
    yield galera
    galera.stop()


@pytest.fixture
def node_configs(cluster, tmp_path):
    """One config file per node, on a fresh database holding schema.sql; [(node, Config)]."""
    name = "taskq_galera_%s" % uuid.uuid4().hex[:10]
    conn = cluster.connect(1)
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % name)
    conn.select_db(name)
    load_mysql_schema(conn)
    conn.close()
    configs = []
    for node in cluster.nodes:
        path = tmp_path / ("node%d.ini" % node.index)
        # cluster = auto: each store finds out from wsrep_on that it is on a cluster
        path.write_text("[database]\nbackend = mysql\nhost = 127.0.0.1\nport = %d\n"
                        "user = root\npassword =\nname = %s\n\n[queue]\nclaim_timeout = %d\n"
                        % (node.port, name, 300), encoding="utf-8")
        configs.append((node, config_module.load(str(path))))
    return configs


def _on_every_node(cluster, database, sql):
    rows = []
    for node in cluster.nodes:
        conn = node.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                rows.append(cur.fetchall())
        finally:
            conn.close()
    return rows


# -- a worker process ----------------------------------------------------------------
class RoundRobin:
    """Sends each request to the next node; with tolerate_outage, a 5xx or
    refused connection sends the same request on to the next node instead."""

    def __init__(self, config_paths, start, mode, tolerate_outage, record):
        self.mode = mode
        self.paths = config_paths
        self.clients = [ApiClient(Application(config_path=path)) for path in config_paths]
        self.turn = start
        self.tolerate = tolerate_outage
        self.record = record

    def call(self, method, path, body, deadline):
        while True:
            index = self.turn % len(self.clients)
            self.turn += 1
            if self.mode == "cgi":
                response = run_cgi(method, path, body, config_path=self.paths[index])
            else:
                response = self.clients[index].request(method, path, body)
            if response.status < 500 or not self.tolerate or time.time() > deadline:
                return response
            self.record["outages"].append([index + 1, path, response.status,
                                           response.headers.get("retry-after")
                                           if self.mode == "cgi" else response.header("Retry-After")])
            time.sleep(0.05)


def _queue_done(rr, deadline, tolerate_outage):
    """No task left to claim: none pending, and (after node loss) none leased either."""
    for status in ("pending", "claimed") if tolerate_outage else ("pending",):
        response = _get(rr, "/tasks", "status=%s&limit=1" % status, deadline)
        if response.status != 200 or response.json["pagination"]["total"]:
            return False
    return True


def _get(rr, path, query, deadline):
    index = rr.turn % len(rr.clients)
    rr.turn += 1
    return rr.clients[index].request("GET", path, query=query)


def _work(name, mode, config_paths, pattern, limit, out_path, deadline, tolerate_outage):
    """Claim and complete until the queue is empty; write what happened to out_path."""
    record = {"name": name, "mode": mode, "claims": [], "completed": [], "already": [],
              "refused": [], "errors": [], "outages": [], "lost_claims": 0}
    rr = RoundRobin(config_paths, int(name.rsplit("-", 1)[1]), mode, tolerate_outage, record)
    try:
        while True:
            if time.time() > deadline:
                record["errors"].append("deadline passed")
                break
            body = {"worker_id": name, "limit": limit}
            if pattern:
                body["type_pattern"] = pattern
            outages = len(record["outages"])
            response = rr.call("POST", "/tasks/claim", body, deadline)
            if len(record["outages"]) > outages:
                record["lost_claims"] += 1  # an earlier try may have committed: leased, unknown
            if response.status != 200:
                record["errors"].append(["claim", response.status, response.json])
                continue
            tasks = response.json["data"]["tasks"]
            if not tasks:
                if _queue_done(rr, deadline, tolerate_outage):
                    break
                time.sleep(0.2)
                continue
            for task in tasks:
                record["claims"].append([task["id"], task["attempts"]])
            if len(tasks) > 1:
                response = rr.call("POST", "/tasks/complete", {
                    "worker_id": name,
                    "results": [{"id": t["id"], "success": True, "result": {"by": name}}
                                for t in tasks]}, deadline)
                if response.status != 200:
                    record["errors"].append(["complete_batch", response.status, response.json])
                    continue
                outcomes = [(item["id"], item["ok"], item) for item in response.json["data"]["results"]]
            else:
                response = rr.call("POST", "/tasks/%d/complete" % tasks[0]["id"],
                                   {"worker_id": name, "success": True, "result": {"by": name}},
                                   deadline)
                outcomes = [(tasks[0]["id"], response.status == 200,
                             {"status": response.status, "error": response.json.get("error")})]
            for task_id, ok, detail in outcomes:
                if ok:
                    record["completed"].append(task_id)
                elif tolerate_outage and "status: completed" in json.dumps(detail):
                    # the first try's COMMIT went through before its node died
                    record["already"].append(task_id)
                elif tolerate_outage and detail.get("status") == 409:
                    # commits stalled past the lease while the cluster lost and regained
                    # a node: the task went back to the queue (checked by the test)
                    record["refused"].append([task_id, detail])
                else:
                    record["errors"].append(["complete", task_id, detail])
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        record["errors"].append(["exception", repr(exc)])
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle)


def _start_workers(specs, configs, tmp_path, tolerate_outage=False):
    deadline = time.time() + WORKER_DEADLINE
    paths = [str(config.path) for _, config in configs]
    outs = [tmp_path / ("%s.json" % spec[0]) for spec in specs]
    return races.start([(_work, (name, mode, paths, pattern, limit, str(out), deadline,
                                 tolerate_outage), out)
                        for (name, mode, pattern, limit), out in zip(specs, outs)]), deadline


def _join_workers(processes, deadline):
    return races.join(processes, deadline + 30)


WORKERS = [  # name, mode, type_pattern, claim limit: 10 workers, 2 of them through CGI
    ("proc-0", "wsgi", None, 1), ("proc-1", "wsgi", "load.%", 1),
    ("proc-2", "wsgi", None, 5), ("proc-3", "wsgi", "load.%", 5),
    ("proc-4", "wsgi", None, 1), ("proc-5", "wsgi", "load.a", 1),
    ("proc-6", "wsgi", None, 10), ("proc-7", "wsgi", "load.%", 10),
    ("cgi-8", "cgi", None, 10), ("cgi-9", "cgi", "load.%", 10),
]


def _create_tasks(configs, count):
    """count tasks over two types, in batches of 500 sent to the nodes in turn."""
    apis = [ApiClient(Application(config=config)) for _, config in configs]
    register(apis[0], "load.a", {"type": "object"})
    register(apis[1], "load.b", {"type": "object"})
    ids = []
    for batch, start in enumerate(range(0, count, 500)):
        items = [{"type": "load.a" if i % 2 else "load.b", "params": {"i": i}, "priority": i % 3}
                 for i in range(start, min(count, start + 500))]
        response = apis[batch % len(apis)].post("/tasks", {"tasks": items})
        assert response.status == 200, response
        assert response.data["created"] == len(items)
        ids.extend(r["id"] for r in response.data["results"])
    return ids


def _cluster_conflicts(cluster):
    """Certification failures plus brute-force aborts, summed over the nodes."""
    total = 0
    for node in cluster.nodes:
        if node.alive():
            total += int(node.status("wsrep_local_cert_failures"))
            total += int(node.status("wsrep_local_bf_aborts"))
    return total


# -- the tests ---------------------------------------------------------------------------
def test_every_node_detects_the_cluster_from_wsrep_on(node_configs):
    for _, config in node_configs:
        store = MySQLStore(config)
        try:
            assert store.cluster is True
            with store.conn.cursor() as cur:
                cur.execute("SELECT @@session.wsrep_sync_wait, @@session.wsrep_retry_autocommit")
                assert cur.fetchone() == (1, 0)
        finally:
            store.close()


def test_a_node_that_has_not_applied_the_tables_yet_waits_for_them(cluster, tmp_path):
    """Tables made through node 1 and asked for through node 3 at once: the
    schema question waits for node 3 to catch up instead of answering 'missing'."""
    for round_ in range(5):
        name = "taskq_galera_fresh_%s" % uuid.uuid4().hex[:10]
        conn = cluster.connect(1)
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE %s" % name)
        conn.select_db(name)
        load_mysql_schema(conn)
        conn.close()
        path = tmp_path / ("fresh%d.ini" % round_)
        path.write_text("[database]\nbackend = mysql\nhost = 127.0.0.1\nport = %d\nuser = root\n"
                        "password =\nname = %s\n" % (cluster.nodes[2].port, name), encoding="utf-8")
        store = MySQLStore(config_module.load(str(path)))  # raised SchemaMissing before
        store.close()


def _claim_through_nodes(name, config_paths, out_path):
    """Claim 10 at a time through the nodes in turn, a fresh store (connection)
    per claim as under CGI, until nothing is left; record what was answered."""
    configs = [config_module.load(path) for path in config_paths]
    record = {"name": name, "claimed": [], "errors": []}
    turn = int(name[1:])
    deadline = time.time() + WORKER_DEADLINE
    try:
        while time.time() < deadline:
            turn += 1
            store = MySQLStore(configs[turn % 3])
            try:
                tasks = store.claim(name, limit=10, lease_seconds=3600)
            finally:
                store.close()
            if not tasks:
                break
            record["claimed"].extend(task["id"] for task in tasks)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        record["errors"].append(repr(exc))
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(record, handle)


def test_every_claim_answered_through_three_nodes_at_once_was_written_for_its_worker(
        cluster, node_configs, tmp_path):
    """Conflicting claims through three nodes: a claim that lost to another
    node's write is rerun or refused, never answered with its writes rolled
    back (with the server's autocommit rerun on, about 1 run in 2 answered
    20-30 claims that were never written and handed those tasks out twice)."""
    ids = _create_tasks(node_configs, CLAIM_TASKS)
    paths = [str(config.path) for _, config in node_configs]
    outs = [tmp_path / ("claimer-%d.json" % n) for n in range(8)]
    records = races.join(races.start([(_claim_through_nodes, ("c%d" % n, paths, str(out)), out)
                                      for n, out in enumerate(outs)]),
                         time.time() + WORKER_DEADLINE + 30, "claimer process")
    assert [e for r in records for e in r["errors"]] == []
    answered = Counter(task_id for r in records for task_id in r["claimed"])
    assert [task_id for task_id, n in answered.items() if n > 1] == []
    assert set(answered) == set(ids)
    owner = {task_id: r["name"] for r in records for task_id in r["claimed"]}
    rows = _on_every_node(cluster, node_configs[0][1].database["name"],
                          "SELECT id, status, claimed_by, attempts FROM tasks ORDER BY id")
    assert rows[0] == rows[1] == rows[2]
    wrong = [(task_id, status, worker, owner[task_id]) for task_id, status, worker, attempts
             in rows[0] if (status, worker, attempts) != ("claimed", owner[task_id], 1)]
    assert wrong == []


def test_ten_workers_over_three_nodes_complete_5000_tasks_each_exactly_once(cluster, node_configs,
                                                                              tmp_path):
    ids = _create_tasks(node_configs, RACE_TASKS)
    conflicts = _cluster_conflicts(cluster)
    processes, deadline = _start_workers(WORKERS, node_configs, tmp_path)
    records = _join_workers(processes, deadline)
    print("cluster conflicts during the race: %d" % (_cluster_conflicts(cluster) - conflicts))

    errors = [(r["name"], e) for r in records for e in r["errors"]]
    assert errors == []  # no 5xx: conflicts were retried inside the requests
    claims = Counter(task_id for r in records for task_id, _ in r["claims"])
    twice = [task_id for task_id, n in claims.items() if n > 1]
    assert twice == [], "tasks handed out twice: %s" % twice[:20]
    assert set(claims) == set(ids)
    assert all(attempts == 1 for r in records for _, attempts in r["claims"])
    completed = Counter(task_id for r in records for task_id in r["completed"])
    assert set(completed) == set(ids) and set(completed.values()) == {1}
    assert all(r["claims"] for r in records)  # everyone took part, CGI workers too

    claimed_by = {task_id: r["name"] for r in records for task_id, _ in r["claims"]}
    database = node_configs[0][1].database["name"]
    per_node = _on_every_node(cluster, database,
                              "SELECT id, status, claimed_by, attempts, result_json FROM tasks ORDER BY id")
    assert per_node[0] == per_node[1] == per_node[2]  # every node holds the same rows
    assert len(per_node[0]) == RACE_TASKS
    for task_id, status, worker, attempts, result_json in per_node[0]:
        assert (status, worker, attempts) == ("completed", claimed_by[task_id], 1), task_id
        assert json.loads(result_json) == {"by": worker}
    events = Counter((task_id, event) for task_id, event in _on_every_node(
        cluster, database, "SELECT task_id, event FROM task_history")[0])
    assert set(events.values()) == {1}
    assert {event for _, event in events} == {"created", "claimed", "completed"}
    assert len(events) == 3 * RACE_TASKS


def test_identical_creates_on_three_nodes_at_once_make_one_task(cluster, node_configs, tmp_path):
    api = ApiClient(Application(config=node_configs[0][1]))
    register(api, "dedupe.race", {"type": "object"})
    params = {"url": "https://example.com/a", "opts": {"depth": 2, "lang": "de"}}
    responses = races.release([races.spawn_cgi(
        "POST", "/tasks", {"type": "dedupe.race", "params": params},
        str(node_configs[n % 3][1].path), tmp_path, n) for n in range(12)])
    assert Counter(status for status, _ in responses) == {201: 1, 200: 11}, responses
    assert len({payload["data"]["id"] for _, payload in responses}) == 1
    database = node_configs[0][1].database["name"]
    rows = _on_every_node(cluster, database, "SELECT id FROM tasks")
    assert rows[0] == rows[1] == rows[2] and len(rows[0]) == 1


def _claim_capped(name, config_paths, stop_at):
    """Claim one 'capped' task at a time through the nodes in turn, hold it a moment, complete it."""
    clients = [ApiClient(Application(config_path=path)) for path in config_paths]
    turn = int(name[1:])
    while time.time() < stop_at:
        turn += 1
        response = clients[turn % 3].post("/tasks/claim", {"worker_id": name, "limit": 1,
                                                           "type_pattern": "capped"})
        tasks = response.json["data"]["tasks"] if response.status == 200 else []
        if not tasks:
            time.sleep(0.01)
            continue
        time.sleep(0.02)
        turn += 1
        clients[turn % 3].post("/tasks/%d/complete" % tasks[0]["id"],
                               {"worker_id": name, "success": True})


def test_claims_through_three_nodes_at_once_keep_a_types_max_concurrency(cluster, node_configs):
    api = ApiClient(Application(config=node_configs[0][1]))
    register(api, "capped", {"type": "object"})
    response = api.post("/tasks", {"tasks": [{"type": "capped", "params": {"i": i}}
                                             for i in range(400)]})
    assert response.status == 200
    assert api.post("/task-types/capped/settings", {"max_concurrency": 3}).status == 200
    paths = [str(config.path) for _, config in node_configs]
    stop_at = time.time() + 8
    workers = [FORK.Process(target=_claim_capped, args=("w%d" % n, paths, stop_at))
               for n in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    database = node_configs[0][1].database["name"]
    edges = []
    for task_id, event, at in _on_every_node(cluster, database, "SELECT task_id, event, created_at "
                                             "FROM task_history WHERE event <> 'created'")[0]:
        edges.append((at, 1 if event == "claimed" else -1))
    held, most = 0, 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):  # ends before starts
        held += step
        most = max(most, held)
    claims = sum(1 for _, step in edges if step == 1)
    print("max_concurrency 3 over 3 nodes: %d claims, at most %d held at once" % (claims, most))
    assert claims > 20  # the workers got going
    assert most <= 3


def test_workers_carry_on_through_a_node_killed_mid_load_and_it_rejoins(cluster, node_configs,
                                                                          tmp_path):
    # short leases: a claim whose answer died with the node comes back soon
    for _, config in node_configs:
        text = open(str(config.path), encoding="utf-8").read()
        open(str(config.path), "w", encoding="utf-8").write(
            text.replace("claim_timeout = 300", "claim_timeout = %d" % LOSS_LEASE))
    ids = _create_tasks(node_configs, LOSS_TASKS)
    database = node_configs[0][1].database["name"]
    specs = [spec for spec in WORKERS if spec[1] == "wsgi"]
    processes, deadline = _start_workers(specs, node_configs, tmp_path, tolerate_outage=True)
    try:
        while True:  # mid-load: a third of the tasks done
            done = _on_every_node(cluster, database,
                                  "SELECT COUNT(*) FROM tasks WHERE status = 'completed'")[0][0][0]
            if done >= LOSS_TASKS // 3 or time.time() > deadline:
                break
            time.sleep(0.1)
        cluster.kill(2)
        time.sleep(3)  # load goes on through nodes 1 and 3
        position = cluster.rejoin(2)
    finally:
        records = _join_workers(processes, deadline)
    assert cluster.cluster_size() == 3
    assert position.split(":")[1] != "-1"  # rejoined from its recovered position (IST)

    errors = [(r["name"], e) for r in records for e in r["errors"]]
    assert errors == []
    outages = [o for r in records for o in r["outages"]]
    assert outages, "no request met the dead node: the kill came too late to test anything"
    assert {status for _, _, status, _ in outages} == {503}
    assert all(retry_after for _, _, _, retry_after in outages)
    # nothing lost, nothing completed twice, on every node alike
    per_node = _on_every_node(cluster, database, "SELECT id, status FROM tasks ORDER BY id")
    assert per_node[0] == per_node[1] == per_node[2]
    assert [row[0] for row in per_node[0]] == sorted(ids)
    assert {row[1] for row in per_node[0]} == {"completed"}
    completions = _on_every_node(cluster, database,
                                 "SELECT task_id, COUNT(*) FROM task_history "
                                 "WHERE event = 'completed' GROUP BY task_id")
    assert completions[0] == completions[1] == completions[2]
    assert {n for _, n in completions[0]} == {1} and len(completions[0]) == LOSS_TASKS
    # a task is handed out again only after its lease ran out (a claim whose answer
    # died with the node, or a worker whose completion stalled past its lease):
    # never two live leases
    answered = Counter((task_id, attempts) for r in records for task_id, attempts in r["claims"])
    assert set(answered.values()) == {1}
    reclaimed = {task_id for task_id, attempts in answered if attempts > 1}
    expired = {row[0] for row in _on_every_node(
        cluster, database, "SELECT DISTINCT task_id FROM task_history WHERE event = 'lease_expired'")[0]}
    assert reclaimed <= expired
    refused = {task_id for r in records for task_id, _ in r["refused"]}
    assert refused <= expired, "a completion was refused with its lease alive"
    print("node loss: %d requests met the dead or joining node, %d claims answered 503, "
          "%d leases ran out, %d tasks claimed again, %d completions refused after their lease, "
          "%d completions had committed before the 503"
          % (len(outages), sum(r["lost_claims"] for r in records), len(expired), len(reclaimed),
             len(refused), sum(len(r["already"]) for r in records)))


def test_parents_completed_at_once_through_three_nodes_release_each_child_once(
        cluster, node_configs, tmp_path):
    """Issue 18's race on the cluster: each child's parents are completed at the
    same moment by processes that each talk to another node."""
    from test_dependency_races import COMPLETERS, _completer, _workflow

    api = ApiClient(Application(config=node_configs[0][1]))
    shares, children = _workflow(api)
    start = time.time() + 0.5
    outs = [tmp_path / ("completer-%d.json" % n) for n in range(COMPLETERS)]
    records = races.join(races.start(
        [(_completer, ("c%d" % n, str(node_configs[n % 3][1].path), shares[n], start, str(out),
                       False), out) for n, out in enumerate(outs)]),
        time.time() + 180, "completer process")
    assert [e for r in records for e in r["errors"]] == []
    database = node_configs[0][1].database["name"]
    rows = _on_every_node(cluster, database,
                          "SELECT id, status, waiting_on FROM tasks WHERE type = 'race.child' "
                          "ORDER BY id")
    assert rows[0] == rows[1] == rows[2]
    assert [(int(i), s, int(w)) for i, s, w in rows[0]] == [(c, "pending", 0) for c in children]
    released = _on_every_node(cluster, database,
                              "SELECT task_id, COUNT(*) FROM task_history WHERE event = 'released' "
                              "GROUP BY task_id ORDER BY task_id")[0]
    assert [(int(t), int(n)) for t, n in released] == [(c, 1) for c in children]
    assert api.post("/admin/recount").data == {"task_counts": [], "usage_count": []}
