#!/usr/bin/env python3
"""What a claim's request_key costs on MySQL/MariaDB, per path (SKIP LOCKED, portable).

A keyed claim first looks for the tasks of an earlier claim with its key
(one indexed read), marks the tasks it claims with the key (one UPDATE) and,
on the SKIP LOCKED path, holds a named lock per worker and key around the
transaction (GET_LOCK / RELEASE_LOCK). This times single claims through the
real store on one connection, with and without a key, alternating in rounds
so machine noise hits both alike, and drops its throwaway database.

    python bench/claim_request_key.py [--tasks 400] [--rounds 5]

Numbers go in docs/performance.md, never in test assertions.
"""

import argparse
import os
import statistics
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from conftest import load_mysql_schema, mysql_connect, mysql_params  # noqa: E402
from taskq import config as config_module  # noqa: E402
from taskq.store.mysql import MySQLStore  # noqa: E402


def store_for(database, skip_locked):
    p = mysql_params()
    text = ("[database]\nbackend = mysql\nhost = %s\nport = %d\nuser = %s\npassword = %s\n"
            "name = %s\nskip_locked = %s\n" % (p["host"], p["port"], p["user"], p["password"],
                                              database, skip_locked))
    return MySQLStore(config_module.parse(text))


def fill(store, count):
    type_row, _ = store.register_type("bench.key", "1", "{}", None, None)
    items = [{"type_id": type_row["id"], "type": "bench.key", "params_json": "{}",
              "dedupe_key": uuid.uuid4().hex * 2, "priority": 0, "max_attempts": 3,
              "claim_timeout": None} for _ in range(count)]
    for start in range(0, count, 500):
        store.create_tasks(items[start:start + 500])


def timed_claims(store, count, keyed):
    times = []
    for _ in range(count):
        key = os.urandom(16).hex() if keyed else None
        started = time.perf_counter()
        rows = store.claim("bench-worker", None, 1, None, request_key=key)
        times.append(time.perf_counter() - started)
        assert len(rows) == 1
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=400, help="claims per round and kind")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    name = "taskq_bench_key_%s" % uuid.uuid4().hex[:10]
    admin = mysql_connect()
    with admin.cursor() as cur:
        cur.execute("CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % name)
    try:
        admin.select_db(name)
        load_mysql_schema(admin)
        for path in ("auto", "off"):
            store = store_for(name, path)
            fill(store, 2 * args.tasks * args.rounds)
            plain, keyed = [], []
            for _ in range(args.rounds):
                plain.extend(timed_claims(store, args.tasks, False))
                keyed.extend(timed_claims(store, args.tasks, True))
            label = "SKIP LOCKED" if store.skip_locked else "portable"
            p50 = (statistics.median(plain) * 1000, statistics.median(keyed) * 1000)
            print("%-11s single claim median: %.3f ms without key, %.3f ms with (+%.3f ms); "
                  "%d claims each" % (label, p50[0], p50[1], p50[1] - p50[0], len(plain)))
            store.close()
            with admin.cursor() as cur:
                cur.execute("DELETE FROM task_history")
                cur.execute("DELETE FROM tasks")
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s" % name)
        admin.close()


if __name__ == "__main__":
    main()
