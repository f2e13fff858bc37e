#!/usr/bin/env python3
"""What a claim pays for paused and concurrency-limited types (issue 9 item 3).

Fills three types with pending tasks through the real store, then times
single claims (each followed by its complete, so limits never fill) in four
settings: nothing restricted (the claim as before), one type paused, one type
limited (max_concurrency 1000, never reached), and one type both limited and
the only type the claim may take; then one bulk cancel and one bulk retry of
1,000 tasks. SQLite in a temporary folder and MariaDB in
a throwaway database (dropped after).

    .venv/py3.11/bin/python bench/claim_limits.py                 # 20,000 tasks a type
    .venv/py3.11/bin/python bench/claim_limits.py --rows 5000 --samples 100 --backend sqlite

Numbers go in docs/performance.md, never in test assertions.
"""

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402

from taskq import config as config_module  # noqa: E402
from taskq.store import open_store  # noqa: E402

TYPES = ("bench.alpha", "bench.beta", "bench.gamma")


def fill(store, rows):
    type_ids = {}
    for name in TYPES:
        row, _ = store.register_type(name, "1", "{}", None, None)
        type_ids[name] = row["id"]
    for name in TYPES:
        for start in range(0, rows, 500):
            store.create_tasks([{"type_id": type_ids[name], "type": name,
                                 "params_json": '{"i":%d}' % i, "dedupe_key": "%s-%d" % (name, i),
                                 "priority": i % 3, "max_attempts": 3, "claim_timeout": None}
                                for i in range(start, min(rows, start + 500))])
    return type_ids


def time_claims(store, samples, pattern=None):
    times = []
    for n in range(samples):
        started = time.perf_counter()
        rows = store.claim("bench-%d" % n, pattern, 1, 300)
        times.append((time.perf_counter() - started) * 1000)
        assert rows, "the queue ran dry: raise --rows"
        store.complete(rows[0]["id"], "bench-%d" % n, True, None, None)
    return times


def run(config, rows, samples):
    store = open_store(config)
    try:
        fill(store, rows)
        results = []
        settings = [
            ("nothing restricted", {}, None),
            ("bench.gamma paused", {"bench.gamma": {"is_paused": True}}, None),
            ("bench.beta limited (1000)", {"bench.gamma": {"is_paused": False},
                                           "bench.beta": {"max_concurrency": 1000}}, None),
            ("only bench.beta, limited", {}, "bench.beta"),
        ]
        for label, changes, pattern in settings:
            for name, change in changes.items():
                store.update_type_settings(name, change)
            time_claims(store, 5, pattern)  # warm up
            results.append((label, benchlib.summarize(time_claims(store, samples, pattern))))
        for action, filters in (("cancel", {"type": "bench.alpha"}), ("retry", {"type": "bench.alpha"})):
            started = time.perf_counter()
            pairs, _ = store.steer_matching(action, filters, 1000)
            elapsed = (time.perf_counter() - started) * 1000
            assert len(pairs) == 1000
            results.append(("bulk %s of 1000 tasks (one call)" % action,
                            {"median": elapsed, "min": elapsed, "max": elapsed}))
        return results
    finally:
        store.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20000, help="pending tasks per type")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--backend", choices=("sqlite", "mysql", "both"), default="both")
    parser.add_argument("--mysql", default="", help='"host=.. port=.. user=.. password=.."')
    args = parser.parse_args()
    print("load before: %s" % (benchlib.loadavg(),))
    lines = ["| backend | setting | median ms | min | max |", "|---|---|---|---|---|"]
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            path = benchlib.write_config(folder, "sqlite",
                                         sqlite_path=os.path.join(folder, "bench.sqlite3"))
            for label, s in run(config_module.load(path), args.rows, args.samples):
                lines.append("| SQLite | %s | %.2f | %.2f | %.2f |" % (label, s["median"], s["min"], s["max"]))
    if args.backend in ("mysql", "both"):
        params = benchlib.mysql_params(args.mysql)
        database, version = benchlib.create_mysql_database(params)
        print("server: %s" % version)
        try:
            with tempfile.TemporaryDirectory() as folder:
                path = benchlib.write_config(folder, "mysql", **dict(params, name=database))
                for label, s in run(config_module.load(path), args.rows, args.samples):
                    lines.append("| MariaDB | %s | %.2f | %.2f | %.2f |" % (label, s["median"], s["min"], s["max"]))
        finally:
            benchlib.drop_mysql_database(params, database)
    print("\n".join(lines))
    print("load after: %s" % (benchlib.loadavg(),))


if __name__ == "__main__":
    main()
