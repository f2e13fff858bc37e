#!/usr/bin/env python3
"""Claims on a MariaDB Galera cluster: tasks/s and conflict rate with 1, 2 and 3 nodes.

Starts a throwaway 3-node cluster on loopback (tests/support/galera.py,
~35 s), then for each claim strategy and each number of nodes serving
requests drains a fresh queue: --workers processes, each opening a new
store (one connection, as a CGI request does) per claim and per batch
completion, sending its requests to the serving nodes in turn. Every
commit replicates to all three nodes whatever the number serving.

Strategies:
- cluster: `[database] cluster = galera`, the shipped cluster claim (a plain
  read of the head, a random pick, a conditional UPDATE; reads wait for the
  node to catch up, wsrep_sync_wait = 1).
- cluster-nowait: the same without wsrep_sync_wait (stale reads allowed).
- skip_locked: the single-server claim (`cluster = off`): SELECT ... FOR
  UPDATE SKIP LOCKED of the head, then UPDATE.
- portable: `cluster = off`, `skip_locked = off`: claims take turns on one
  lock row (which no other node sees) and UPDATE the head.
A baseline runs the default claim on the standalone MariaDB at
127.0.0.1:3306 (TASKQ_TEST_MYSQL to change it).

Conflicts are the cluster's own counters (wsrep_local_cert_failures +
wsrep_local_bf_aborts, summed over the nodes; Innodb_deadlocks for the
baseline) per 100 claim requests; each one cost a retry inside a request.
"gave up" counts requests that still failed after their retries (503);
"completions refused" counts tasks a worker was handed but could not
complete (409: the node it completed through had not yet applied the claim).

    .venv/py3.11/bin/python bench/galera_claims.py               # --tasks 1000 --workers 6
    .venv/py3.11/bin/python bench/galera_claims.py --strategies cluster,skip_locked --limits 1

Numbers go in docs/scaling.md, never in test assertions.
"""

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
from support.galera import GaleraCluster  # noqa: E402
from taskq import config as config_module  # noqa: E402
from taskq.errors import TaskqError, Unavailable  # noqa: E402
from taskq.store import mysql as mysql_store  # noqa: E402

FORK = multiprocessing.get_context("fork")
STRATEGIES = {
    "cluster": {"cluster": "galera"},
    "cluster-nowait": {"cluster": "galera"},
    "skip_locked": {"cluster": "off", "skip_locked": "on"},
    "portable": {"cluster": "off", "skip_locked": "off"},
}


def _schema(conn):
    with open(os.path.join(ROOT, "schema.sql"), encoding="utf-8") as handle:
        script = "\n".join(line for line in handle.read().splitlines()
                           if not line.lstrip().startswith("--"))
    with conn.cursor() as cur:
        for statement in script.split(";"):
            if statement.strip():
                cur.execute(statement)


def _fill(conn, tasks):
    with conn.cursor() as cur:
        cur.execute("INSERT INTO task_types (name, version, param_schema_json, is_active, "
                    "created_at, updated_at) VALUES ('bench', '1', '{}', 1, UTC_TIMESTAMP(6), "
                    "UTC_TIMESTAMP(6))")
        type_id = cur.lastrowid
        for start in range(0, tasks, 500):
            rows = range(start, min(tasks, start + 500))
            cur.execute("INSERT INTO tasks (type_id, type, status, params_json, dedupe_key, "
                        "priority, neg_priority, max_attempts, created_at, updated_at) VALUES "
                        + ", ".join(["(%s, 'bench', 'pending', '{}', %s, 0, 0, 3, "
                                     "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))"] * len(rows)),
                        [value for i in rows for value in (type_id, "k%d" % i)])


def _worker(config_paths, start, limit, out_path):
    if os.environ.get("TASKQ_BENCH_NOWAIT"):
        mysql_store.Q["session_setup_cluster"] = "SET SESSION wsrep_sync_wait = 0"
    configs = [config_module.load(path) for path in config_paths]
    turn, claims, done, gave_up, empty, refused = start, 0, 0, 0, 0, 0
    name = "w%d" % start

    def store():
        nonlocal turn
        turn += 1
        return mysql_store.MySQLStore(configs[turn % len(configs)])

    while empty < 3:
        try:
            s = store()
            try:
                rows = s.claim(name, None, limit)
            finally:
                s.close()
            claims += 1
        except Unavailable:
            gave_up += 1
            continue
        if not rows:
            empty += 1
            time.sleep(0.02)
            continue
        empty = 0
        items = [(row["id"], True, "{}", None) for row in rows]
        while True:
            try:
                s = store()
                try:
                    outcomes = s.complete_many(name, items)
                finally:
                    s.close()
                break
            except Unavailable:
                gave_up += 1
        done += sum(1 for outcome in outcomes if not isinstance(outcome, TaskqError))
        refused += sum(1 for outcome in outcomes if isinstance(outcome, TaskqError))
    with open(out_path, "w") as handle:
        json.dump({"claims": claims, "done": done, "gave_up": gave_up, "refused": refused}, handle)


def _counter(conns, names):
    total = 0
    for conn in conns:
        with conn.cursor() as cur:
            for name in names:
                cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
                row = cur.fetchone()
                total += int(row[1]) if row else 0
    return total


def run(ports_or_params, database, strategy, limit, tasks, workers, tmp, counters, fill_conn):
    """Drain `tasks` with `workers` processes; returns the measured row."""
    _fill(fill_conn, tasks)
    paths = []
    for n, (host, port) in enumerate(ports_or_params):
        path = os.path.join(tmp, "%s-%d.ini" % (strategy, n))
        extra = "".join("%s = %s\n" % kv for kv in STRATEGIES.get(strategy, {}).items())
        with open(path, "w") as handle:
            handle.write("[database]\nbackend = mysql\nhost = %s\nport = %d\nuser = root\n"
                         "password =\nname = %s\n%s\n[queue]\nhistory = true\n"
                         % (host, port, database, extra))
        paths.append(path)
    conns, names = counters
    before = _counter(conns, names)
    env_nowait = strategy == "cluster-nowait"
    if env_nowait:
        os.environ["TASKQ_BENCH_NOWAIT"] = "1"
    started = time.perf_counter()
    procs = []
    for w in range(workers):
        out = os.path.join(tmp, "w%d.json" % w)
        proc = FORK.Process(target=_worker, args=(paths, w, limit, out))
        proc.start()
        procs.append((proc, out))
    results = []
    for proc, out in procs:
        proc.join()
        with open(out) as handle:
            results.append(json.load(handle))
    wall = time.perf_counter() - started
    os.environ.pop("TASKQ_BENCH_NOWAIT", None)
    conflicts = _counter(conns, names) - before
    claims = sum(r["claims"] for r in results)
    done = sum(r["done"] for r in results)
    return {"strategy": strategy, "nodes": len(ports_or_params), "limit": limit, "tasks": done,
            "wall_s": round(wall, 2), "tasks_per_s": round(done / wall, 1),
            "claim_requests": claims, "conflicts": conflicts,
            "conflicts_per_100_claims": round(100.0 * conflicts / max(1, claims), 1),
            "gave_up": sum(r["gave_up"] for r in results),
            "complete_refused": sum(r["refused"] for r in results)}


def _baseline(params, limits, args, tmp):
    rows = []
    conn = benchlib._mysql_connect(params)
    try:
        for limit in limits:
            database, _ = benchlib.create_mysql_database(params)
            try:
                conn.select_db(database)
                row = run([(params["host"], int(params["port"]))], database, "single server",
                          limit, args.tasks, args.workers, tmp,
                          ([conn], ["Innodb_deadlocks"]), conn)
                print(json.dumps(row), flush=True)
                rows.append(row)
            finally:
                benchlib.drop_mysql_database(params, database)
    finally:
        conn.close()
    return rows


def _on_cluster(cluster, strategy, nodes, limit, args, tmp, counters):
    database = "bench_%s" % uuid.uuid4().hex[:10]
    conn = cluster.connect(1)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE %s" % database)
        conn.select_db(database)
        _schema(conn)
        serving = [("127.0.0.1", node.port) for node in cluster.nodes[:nodes]]
        row = run(serving, database, strategy, limit, args.tasks, args.workers, tmp, counters,
                  conn)
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE %s" % database)
    finally:
        conn.close()
    print(json.dumps(row), flush=True)
    return row


def _merge(rows):
    """One row per (strategy, nodes, limit): median tasks/s, summed counts."""
    import statistics

    groups = {}
    for row in rows:
        groups.setdefault((row["strategy"], row["nodes"], row["limit"]), []).append(row)
    merged = []
    for (strategy, nodes, limit), runs in groups.items():
        claims = sum(r["claim_requests"] for r in runs)
        conflicts = sum(r["conflicts"] for r in runs)
        merged.append({"strategy": strategy, "nodes": nodes, "limit": limit,
                       "tasks_per_s": statistics.median(r["tasks_per_s"] for r in runs),
                       "conflicts_per_100_claims": 100.0 * conflicts / max(1, claims),
                       "gave_up": sum(r["gave_up"] for r in runs),
                       "complete_refused": sum(r["complete_refused"] for r in runs)})
    return merged


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--limits", default="1,10")
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--strategies", default="cluster,cluster-nowait,skip_locked,portable")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole matrix; tables show medians of tasks/s "
                             "and totals of the counts")
    args = parser.parse_args()
    limits = [int(x) for x in args.limits.split(",")]
    facts = benchlib.machine_facts()
    rows = []
    tmp = tempfile.mkdtemp(prefix="galera-bench-")
    params = benchlib.mysql_params(os.environ.get("TASKQ_TEST_MYSQL", ""))
    cluster = GaleraCluster(os.path.join(tmp, "cluster"))
    started = time.perf_counter()
    try:
        cluster.start()
        print("cluster of 3 Synced in %.1f s" % (time.perf_counter() - started), flush=True)
        admin = [node.connect() for node in cluster.nodes]
        counters = (admin, ["wsrep_local_cert_failures", "wsrep_local_bf_aborts"])
        for _ in range(args.rounds):
            if not args.no_baseline:
                rows.extend(_baseline(params, limits, args, tmp))
            for strategy in args.strategies.split(","):
                for nodes in [int(x) for x in args.nodes.split(",")]:
                    for limit in limits:
                        rows.append(_on_cluster(cluster, strategy, nodes, limit, args, tmp,
                                                counters))
    finally:
        cluster.stop()
        benchlib.remove_tree(tmp)
    facts["load_after"] = benchlib.loadavg()
    lines = ["| claim | nodes serving | limit | tasks/s | conflicts per 100 claims | "
             "gave up (503) | completions refused |", "|---|---|---|---|---|---|---|"]
    for row in _merge(rows):
        lines.append("| %s | %d | %d | %.0f | %.1f | %d | %d |" % (
            row["strategy"], row["nodes"], row["limit"], row["tasks_per_s"],
            row["conflicts_per_100_claims"], row["gave_up"], row["complete_refused"]))
    print("\n%s, %s cores, load %s -> %s; %d tasks, %d workers, %d round(s)\n"
          % (facts["date"], facts["cores"], facts["load_before"], facts["load_after"],
             args.tasks, args.workers, args.rounds))
    print("\n".join(lines))
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "galera_claims.json"), "w") as handle:
        json.dump({"facts": facts, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
