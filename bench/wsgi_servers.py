#!/usr/bin/env python3
"""Claim and complete under a persistent server, against a floor app under the same server.

Apache with mod_wsgi in daemon mode (Debian's libapache2-mod-wsgi-py3, which
runs Debian's python3) serves, in the same daemon processes:

  /wsgi   the upload bundle's passenger_wsgi.py (taskq, its connections reused)
  /floor  bench/floors/wsgi_select1.py: `SELECT 1` on a reused connection, `{}`
          (/floor/write: one committed INSERT, informational; /floor/update:
          one UPDATE by primary key and COMMIT, the floor a claim or a complete,
          which must write, is held to)

on a throwaway MariaDB database. One client sends the requests one after the
other, a new TCP connection each (as the workers of drain_apache.py do), all
cases interleaved in a random order each round (claim -> progress -> complete
and the claim that carries a result keep their order). Reported: median and
p90 wall time per request and each one's ratio to the floor's median.
Targets: claim and complete within 1.5x of floor (u) (issue 19; issue 11 held
them to the SELECT-1 floor).

    .venv/py3.11/bin/python bench/wsgi_servers.py            # --rounds 300
    ... --update-docs   # rewrite the wsgi part of docs/performance.md
"""

import argparse
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import benchlib  # noqa: E402
from support.apache import make_docroot, prepare_docroot  # noqa: E402
from support.wsgi_servers import start_mod_wsgi  # noqa: E402

DOC = os.path.join(ROOT, "docs", "performance.md")
TYPE = "bench.wsgi"
WORKER = "bench-wsgi"


class Api:
    def __init__(self, base_url):
        hostport = base_url[len("http://"):].split("/", 1)[0]
        self.host, _, port = hostport.partition(":")
        self.port = int(port)

    def call(self, path, body=None):
        raw = None if body is None else json.dumps(body).encode("utf-8")
        started = time.perf_counter()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            conn.request("POST" if raw is not None else "GET", path, body=raw,
                         headers={"Content-Type": "application/json"} if raw else {})
            answer = conn.getresponse()
            data = answer.read()
        finally:
            conn.close()
        elapsed = time.perf_counter() - started
        return elapsed, answer.status, (json.loads(data.decode("utf-8")) if data else None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--mysql", default=os.environ.get("TASKQ_TEST_MYSQL", ""))
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import bundle

    python = "/usr/bin/python3"
    version = subprocess.check_output([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                      universal_newlines=True).strip()
    facts = benchlib.machine_facts()
    facts["python"] = subprocess.check_output([python, "-c", "import sys; print(sys.version.split()[0])"],
                                              universal_newlines=True).strip()
    mysql = benchlib.mysql_params(args.mysql)
    parent, docroot, server, mysql_db = make_docroot("taskq-wsgi-bench-"), make_docroot(), None, None
    samples = {}
    try:
        zip_path = bundle.build(python_version=version, output_dir=os.path.join(parent, "dist"),
                                compile_with=python, log=lambda msg: print(msg, file=sys.stderr))
        site = bundle.extract(zip_path, parent)
        facts["bundle"] = os.path.basename(zip_path)
        mysql_db, facts["mariadb"] = benchlib.create_mysql_database(mysql, prefix="taskq_wsgi")
        with open(os.path.join(site, "config.ini"), "w", encoding="utf-8") as handle:
            handle.write("[database]\nbackend = mysql\n" + "".join(
                "%s = %s\n" % kv for kv in dict(mysql, name=mysql_db).items()))
        shutil.copy(os.path.join(ROOT, "bench", "floors", "wsgi_select1.py"), site)
        with open(os.path.join(site, "floor.json"), "w", encoding="utf-8") as handle:
            json.dump(dict(mysql, database=mysql_db), handle)
        benchlib.mysql_script(mysql, mysql_db, [
            "CREATE TABLE bench_floor_rows (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB",
            "INSERT INTO bench_floor_rows (id, n) SELECT seq, 0 FROM seq_1_to_1000"])
        prepare_docroot(parent)
        server = start_mod_wsgi(site, docroot, args.processes, args.threads,
                                extra_mounts=[("/floor", os.path.join(site, "wsgi_select1.py"))])
        api = Api(server.url)
        _, status, _ = api.call("/taskq/task-types/register", {
            "name": TYPE, "version": "1", "param_schema": {"type": "object"}})
        assert status in (200, 201), status
        total = (args.rounds + args.warmup) * 2 + 10
        for start in range(0, total, 500):
            _, status, _ = api.call("/taskq/tasks", {"tasks": [
                {"type": TYPE, "params": {"n": n}} for n in range(start, min(total, start + 500))]})
            assert status in (200, 201), status
        facts["load_before"] = benchlib.loadavg()
        held = {}

        def run(case):
            if case == "floor":
                return api.call("/floor")
            if case == "floor_write":
                return api.call("/floor/write")
            if case == "floor_update":
                return api.call("/floor/update")
            if case == "health":
                return api.call("/taskq/health")
            if case == "claim":
                out = api.call("/taskq/tasks/claim", {"worker_id": WORKER})
                held["id"] = out[2]["data"]["id"]
                return out
            if case == "progress":
                return api.call("/taskq/tasks/%d/progress" % held["id"],
                                {"worker_id": WORKER, "progress": 50})
            if case == "complete":
                return api.call("/taskq/tasks/%d/complete" % held["id"],
                                {"worker_id": WORKER, "success": True, "result": {"ok": 1}})
            if case == "claim_carry":
                out = api.call("/taskq/tasks/claim", {"worker_id": WORKER, "results": [
                    {"id": held["id"], "success": True, "result": {"ok": 1}}]})
                held["id"] = out[2]["data"]["tasks"][0]["id"]
                return out
            raise KeyError(case)

        chain = ["claim", "progress", "claim_carry", "complete"]
        for round_no in range(args.warmup + args.rounds):
            order = ["floor", "floor", "floor_write", "floor_update", "health"] + chain
            random.shuffle(order)
            slots = [i for i, case in enumerate(order) if case in chain]
            for slot, case in zip(slots, chain):
                order[slot] = case
            for case in order:
                elapsed, status, payload = run(case)
                if status != 200:
                    raise RuntimeError("%s answered %s: %r" % (case, status, payload))
                if round_no >= args.warmup:
                    samples.setdefault(case, []).append(elapsed)
        facts["load_after"] = benchlib.loadavg()
    finally:
        if server is not None:
            server.close()
        if mysql_db:
            benchlib.drop_mysql_database(mysql, mysql_db)
        shutil.rmtree(parent, ignore_errors=True)
        shutil.rmtree(docroot, ignore_errors=True)
    stats = {case: benchlib.summarize(values) for case, values in samples.items()}
    report = {"facts": facts, "rounds": args.rounds, "warmup": args.warmup, "stats": stats,
              "settings": {"processes": args.processes, "threads": args.threads}}
    benchlib.publish("wsgi_servers", report, render(report), DOC if args.update_docs else None, "wsgi")
    return 0


LABELS = {"floor": "floor: `SELECT 1` on a reused connection, `{}`",
          "floor_write": "floor (w): one committed `INSERT` instead (informational)",
          "floor_update": "floor (u): one `UPDATE` by primary key, then `COMMIT`",
          "health": "`GET /health`",
          "claim": "`POST /tasks/claim`", "progress": "`POST /tasks/{id}/progress`",
          "complete": "`POST /tasks/{id}/complete`",
          "claim_carry": "`POST /tasks/claim` carrying the last result"}


def render(report):
    f, stats = report["facts"], report["stats"]
    out = ["Measured %s by `bench/wsgi_servers.py`: Apache 2.4 + mod_wsgi (daemon mode, %d processes "
           "x %d threads, Debian's Python %s), the bundle `%s`, MariaDB %s on 127.0.0.1; one client, "
           "a new TCP connection per request, %d rounds after %d warm-up, cases interleaved. "
           "1-minute load average %s before, %s after (2 cores)." % (
               f["date"], report["settings"]["processes"], report["settings"]["threads"],
               f["python"], f["bundle"], f.get("mariadb"), report["rounds"], report["warmup"],
               f.get("load_before"), f.get("load_after")),
           "", "| request | wall median ms | wall p90 ms | / floor | / floor (u) | target |",
           "|---|---:|---:|---:|---:|---|"]
    floor = stats["floor"]["median"]
    update = stats.get("floor_update", {}).get("median")
    for case in ("floor", "floor_write", "floor_update", "health", "claim", "progress", "complete",
                 "claim_carry"):
        if case in stats:
            ratio = stats[case]["median"] / floor
            to_update = stats[case]["median"] / update if update else float("nan")
            target = ""
            if case in ("claim", "complete") and update:
                target = "<= 1.5x floor (u): %s" % ("meets" if to_update <= 1.5 else "**misses**")
            out.append("| %s | %.2f | %.2f | %.2fx | %.2fx | %s |" % (
                LABELS[case], stats[case]["median"] * 1e3, stats[case]["p90"] * 1e3, ratio,
                to_update, target))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
