#!/usr/bin/env python3
"""How fast 8 workers drain the queue through a real Apache running taskq as CGI.

The upload bundle (tools/bundle.py, built for the chosen interpreter, or
--bundle ZIP) is unpacked into a fresh document root and served by a real
Apache on 127.0.0.1 (tests/support/apache.py): mod_cgid, the shipped
.htaccess files, clean /api/ URLs, scripts run as www-data by a bare Python
of the same version that sees only the bundle's vendored lib/.

For each backend (SQLite in the bundle's data/ folder; MariaDB in a
throwaway database made from schema.sql and dropped after):

  batch   N tasks are queued (batch create, 500 a request); then W worker
          processes loop: POST /tasks/claim {"limit": B} -> POST
          /tasks/complete with every claimed task, until a claim comes back
          empty.
  single  M tasks; the same workers claim one task at a time
          (POST /tasks/claim, POST /tasks/{id}/complete).

Reported: tasks/s from the moment the workers start to the moment the last
one stops, requests/s, every non-2xx answer counted by status (5xx must be
0), and a check that every task ended completed, none is left pending or
claimed, and every batch item answered "completed" (a task handed out twice
would make one of its completes fail).

    .venv/py3.11/bin/python bench/drain_apache.py                    # both backends
    .venv/py3.11/bin/python bench/drain_apache.py --backend sqlite --tasks 1000
    ... --update-docs     # also rewrite the drain part of docs/performance.md

Run as root (Apache hands CGI to www-data) on a machine with apache2 installed.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import benchlib  # noqa: E402
from support.apache import cgi_python_env, make_docroot, prepare_docroot, start_apache  # noqa: E402

DOC = os.path.join(ROOT, "docs", "performance.md")
TYPE_NAME = "bench.drain"
CREATE_BATCH = 500


# -- HTTP -------------------------------------------------------------------------
class Api:
    """POST/GET JSON to the API over a new connection per request (KeepAlive is off)."""

    def __init__(self, base_url):
        assert base_url.startswith("http://")
        hostport, _, prefix = base_url[len("http://"):].partition("/")
        self.host, _, port = hostport.partition(":")
        self.port = int(port or 80)
        self.prefix = "/" + prefix if prefix else ""

    def call(self, method, path, body=None, timeout=120):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            raw = None if body is None else json.dumps(body).encode("utf-8")
            headers = {"Content-Type": "application/json"} if raw is not None else {}
            conn.request(method, self.prefix + path, body=raw, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            payload = json.loads(data.decode("utf-8")) if data else None
        except ValueError:
            payload = {"raw": data[:500].decode("utf-8", "replace")}
        return response.status, payload


# -- workers ----------------------------------------------------------------------
def carry_loop(api, worker_id, batch, counts, note, deadline):
    """The protocol of issue 11: each claim carries the results of the tasks claimed before
    (one request per task, or per batch); the last claim, answering no task, carries the last."""
    results = []
    while time.time() < deadline:
        body = {"worker_id": worker_id, "limit": batch or 1}
        if results:
            body["results"] = results
        status, payload = api.call("POST", "/tasks/claim", body)
        note(status)
        if status != 200:
            continue  # counted; a retry carries the same results (their tasks are still leased)
        for item in payload["data"].get("results", []):
            if item["ok"] and item["status"] == "completed":
                counts["completed"] += 1
            else:
                key = item.get("error") or str(item.get("status"))
                counts["item_errors"][key] = counts["item_errors"].get(key, 0) + 1
        tasks = payload["data"]["tasks"]
        if not tasks:
            break
        results = [{"id": t["id"], "success": True, "result": {"n": t["params"]["n"]}} for t in tasks]


def worker_loop(base_url, worker_id, batch, start_at, out_queue, deadline, carry=False):
    """Claim and complete until the queue is empty; report counts on out_queue."""
    api = Api(base_url)
    counts = {"requests": 0, "completed": 0, "statuses": {}, "item_errors": {}, "errors": []}

    def note(status):
        counts["requests"] += 1
        if status >= 300:
            counts["statuses"][str(status)] = counts["statuses"].get(str(status), 0) + 1

    while time.time() < start_at:
        time.sleep(0.001)
    try:
        if carry:
            carry_loop(api, worker_id, batch, counts, note, deadline)
        while not carry and time.time() < deadline:
            if batch:
                status, payload = api.call("POST", "/tasks/claim", {"worker_id": worker_id, "limit": batch})
                note(status)
                if status != 200:
                    continue  # counted; a 5xx makes the run fail, a retry keeps the drain going
                tasks = payload["data"]["tasks"]
                if not tasks:
                    break
                results = [{"id": t["id"], "success": True, "result": {"n": t["params"]["n"]}} for t in tasks]
                status, payload = api.call("POST", "/tasks/complete", {"worker_id": worker_id, "results": results})
                note(status)
                if status == 200:
                    for item in payload["data"]["results"]:
                        if item["ok"] and item["status"] == "completed":
                            counts["completed"] += 1
                        else:
                            key = item.get("error") or str(item.get("status"))
                            counts["item_errors"][key] = counts["item_errors"].get(key, 0) + 1
            else:
                status, payload = api.call("POST", "/tasks/claim", {"worker_id": worker_id})
                if status == 404:  # "No available tasks": the rest are held by other workers
                    counts["requests"] += 1
                    break
                note(status)
                if status != 200:
                    continue
                task = payload["data"]
                status, payload = api.call("POST", "/tasks/%d/complete" % task["id"],
                                           {"worker_id": worker_id, "success": True,
                                            "result": {"n": task["params"]["n"]}})
                note(status)
                if status == 200:
                    counts["completed"] += 1
    except Exception as exc:  # noqa: BLE001 - reported, and fails the run
        counts["errors"].append(repr(exc))
    counts["finished_at"] = time.time()
    out_queue.put(counts)


def drain(base_url, workers, batch, timeout, carry=False):
    """Run the workers; returns (elapsed seconds, merged counts)."""
    ctx = multiprocessing.get_context("fork")
    out_queue = ctx.Queue()
    start_at = time.time() + 0.5
    procs = [ctx.Process(target=worker_loop,
                         args=(base_url, "drain-%d" % i, batch, start_at, out_queue, start_at + timeout,
                               carry))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    reports = [out_queue.get(timeout=timeout + 60) for _ in procs]
    for proc in procs:
        proc.join(30)
    elapsed = max(r["finished_at"] for r in reports) - start_at
    merged = {"requests": 0, "completed": 0, "statuses": {}, "item_errors": {}, "errors": []}
    for report in reports:
        merged["requests"] += report["requests"]
        merged["completed"] += report["completed"]
        merged["errors"] += report["errors"]
        for field in ("statuses", "item_errors"):
            for key, value in report[field].items():
                merged[field][key] = merged[field].get(key, 0) + value
    return elapsed, merged


# -- one backend ------------------------------------------------------------------
def fill(api, count, tag):
    """Queue `count` new tasks with batch creates; returns their number as the API counted them."""
    created = 0
    for start in range(0, count, CREATE_BATCH):
        items = [{"type": TYPE_NAME, "params": {"n": n, "run": tag}}
                 for n in range(start, min(count, start + CREATE_BATCH))]
        status, payload = api.call("POST", "/tasks", {"tasks": items})
        if status not in (200, 201):
            raise RuntimeError("batch create answered %s: %r" % (status, payload))
        created += len(items)
    return created


def count_status(api, status):
    code, payload = api.call("GET", "/tasks?status=%s&limit=1" % status)
    if code != 200:
        raise RuntimeError("GET /tasks?status=%s answered %s: %r" % (status, code, payload))
    return payload["pagination"]["total"]


def run_backend(base_url, args, name, carry=False):
    api = Api(base_url)
    status, payload = api.call("GET", "/health")
    if status != 200:
        raise RuntimeError("health on %s answered %s: %r" % (name, status, payload))
    status, payload = api.call("POST", "/task-types/register",
                               {"name": TYPE_NAME, "version": "1.0",
                                "param_schema": {"type": "object", "required": ["n"],
                                                 "properties": {"n": {"type": "integer"}}}})
    if status not in (200, 201):
        raise RuntimeError("register answered %s: %r" % (status, payload))
    out = {}
    for mode, count, batch in (("batch", args.tasks, args.batch), ("single", args.single_tasks, 0)):
        if not count:
            continue
        done_before = count_status(api, "completed")
        fill(api, count, uuid.uuid4().hex[:8])
        elapsed, counts = drain(base_url, args.workers, batch, args.timeout, carry)
        pending = count_status(api, "pending")
        claimed = count_status(api, "claimed")
        completed = count_status(api, "completed") - done_before
        fivexx = sum(v for k, v in counts["statuses"].items() if k.startswith("5"))
        out[mode] = {"tasks": count, "batch": batch, "workers": args.workers, "carry": carry,
                     "seconds": elapsed, "tasks_per_s": completed / elapsed,
                     "requests": counts["requests"], "requests_per_s": counts["requests"] / elapsed,
                     "completed_reported": counts["completed"], "completed_in_db": completed,
                     "left_pending": pending, "left_claimed": claimed, "non_2xx": counts["statuses"],
                     "five_xx": fivexx, "item_errors": counts["item_errors"], "errors": counts["errors"]}
        print("%s %s: %d tasks in %.1fs = %.0f tasks/s, %d requests, 5xx %d, non-2xx %s, "
              "left pending %d, claimed %d" % (name, mode, completed, elapsed, completed / elapsed,
                                              counts["requests"], fivexx, counts["statuses"], pending,
                                              claimed), file=sys.stderr)
    return out


def write_config(folder, backend, **database):
    """config.ini in the site folder, kept owned by the user the scripts run as."""
    path = os.path.join(folder, "config.ini")
    lines = ["[database]", "backend = %s" % backend]
    lines += ["%s = %s" % kv for kv in database.items()]
    stat = os.stat(folder)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    os.chown(path, stat.st_uid, stat.st_gid)


def interpreter_version(python):
    import subprocess

    return subprocess.check_output([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                                   universal_newlines=True).strip()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", action="append", choices=("sqlite", "mysql"), help="repeatable; default both")
    parser.add_argument("--tasks", type=int, default=3000, help="tasks drained with batches (default 3000)")
    parser.add_argument("--single-tasks", type=int, default=400,
                        help="tasks drained one request per claim and per complete (default 400; 0 skips)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=600, help="seconds a drain may take at most")
    parser.add_argument("--bundle", help="a built bundle zip (default: build one with tools/bundle.py)")
    parser.add_argument("--mysql", default=os.environ.get("TASKQ_TEST_MYSQL", ""),
                        help='"host=.. port=.. user=.. password=.." (default: TASKQ_TEST_MYSQL, else root@127.0.0.1:3306)')
    parser.add_argument("--db-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra [database] key for the MariaDB run, e.g. skip_locked=on (repeatable)")
    parser.add_argument("--update-docs", action="store_true", help="rewrite the drain part of docs/performance.md")
    parser.add_argument("--host-python", metavar="PYTHON",
                        help="instead: MariaDB drains with CGI run by this interpreter (e.g. "
                             "/usr/bin/python3), the site before issue 11 against the bundle now")
    parser.add_argument("--before-ref", help="git commit of the 'before' site (default: merge-base "
                                             "with main)")
    args = parser.parse_args(argv)
    if args.host_python:
        return host_main(args)
    backends = args.backend or ["sqlite", "mysql"]

    facts = benchlib.machine_facts()
    facts["python"] = interpreter_version(sys.executable)
    docroot = make_docroot()
    workdir = tempfile.mkdtemp(prefix="taskq-drain-py-")
    build_dir = tempfile.mkdtemp(prefix="taskq-drain-bundle-")
    server = None
    mysql_db = None
    results = {}
    try:
        import bundle

        zip_path = args.bundle or bundle.build(output_dir=build_dir, log=lambda msg: print(msg, file=sys.stderr))
        facts["bundle"] = os.path.basename(zip_path)
        folder = bundle.extract(zip_path, docroot)
        write_config(folder, "sqlite")
        prepare_docroot(docroot)
        server = start_apache(docroot, env=cgi_python_env(workdir))
        base_url = server.base_url + "/" + os.path.basename(folder) + "/api"
        for name in backends:
            if name == "sqlite":
                write_config(folder, "sqlite")
            else:
                mysql = benchlib.mysql_params(args.mysql)
                mysql_db, facts["mariadb"] = benchlib.create_mysql_database(mysql, prefix="taskq_drain")
                extra = dict(option.split("=", 1) for option in args.db_option)
                facts["mysql_options"] = extra
                write_config(folder, "mysql", **dict(mysql, name=mysql_db, **extra))
            results[name] = run_backend(base_url, args, name)
        facts["load_after"] = benchlib.loadavg()
        log = server.error_log()
        facts["apache_error_log_tracebacks"] = log.count("Traceback")
    finally:
        if server is not None:
            server.stop()
        if mysql_db:
            benchlib.drop_mysql_database(benchlib.mysql_params(args.mysql), mysql_db)
        for path in (docroot, workdir, build_dir):
            shutil.rmtree(path, ignore_errors=True)

    report = {"facts": facts, "results": results,
              "settings": {"workers": args.workers, "batch": args.batch, "tasks": args.tasks,
                           "single_tasks": args.single_tasks}}
    benchlib.publish("drain_apache", report, render(report), DOC if args.update_docs else None, "drain", keep_markdown=True)
    return 1 if _failed(results) else 0


# -- the host's interpreter: before/after in one run (issue 11) --------------------------
def host_main(args):
    """MariaDB drains through Apache CGI run by `--host-python` (e.g. Debian's, with its
    cryptography), PYTHONDONTWRITEBYTECODE=1: the site before issue 11 with the old
    protocol (claim, then complete) as the baseline, and the bundle now with both protocols."""
    python = args.host_python
    facts = benchlib.machine_facts()
    facts["python"] = "%s (%s)" % (interpreter_version(python), python)
    docroot = make_docroot()
    server = None
    mysql = benchlib.mysql_params(args.mysql)
    mysql_db = None
    results = {}
    try:
        before, after, ref, zip_name = benchlib.host_sites(
            ROOT, python, docroot, args.before_ref, log=lambda msg: print(msg, file=sys.stderr))
        shutil.rmtree(os.path.join(docroot, "dist"))
        facts.update(before_ref=ref[:12], bundle=zip_name)
        mysql_db, facts["mariadb"] = benchlib.create_mysql_database(mysql, prefix="taskq_drain")
        for folder in (before, after):
            write_config(folder, "mysql", **dict(mysql, name=mysql_db))
        prepare_docroot(docroot)
        bindir = os.path.join(docroot, "..", os.path.basename(docroot) + "-bin")
        os.makedirs(bindir, exist_ok=True)
        link = os.path.join(bindir, "python3")
        if not os.path.exists(link):
            os.symlink(python, link)
        server = start_apache(docroot, env={"PATH": bindir + ":/usr/bin:/bin",
                                            "PYTHONDONTWRITEBYTECODE": "1"})
        for name, folder, carry in (("before, claim then complete", before, False),
                                    ("after, claim then complete", after, False),
                                    ("after, claim carries the results", after, True)):
            url = server.base_url + "/" + os.path.relpath(folder, docroot) + "/api"
            results[name] = run_backend(url, args, name, carry)
        facts["load_after"] = benchlib.loadavg()
        facts["apache_error_log_tracebacks"] = server.error_log().count("Traceback")
    finally:
        if server is not None:
            server.stop()
        if mysql_db:
            benchlib.drop_mysql_database(mysql, mysql_db)
        shutil.rmtree(docroot, ignore_errors=True)
        shutil.rmtree(docroot + "-bin", ignore_errors=True)
    report = {"facts": facts, "results": results,
              "settings": {"workers": args.workers, "batch": args.batch, "tasks": args.tasks,
                           "single_tasks": args.single_tasks}}
    benchlib.publish("drain_apache_host", report, render_host(report), DOC if args.update_docs else None, "drain_host")
    return 1 if _failed(results) else 0


def _failed(results):
    failed = [(name, mode) for name, modes in results.items() for mode, r in modes.items()
              if r["five_xx"] or r["errors"] or r["item_errors"] or r["left_pending"] or r["left_claimed"]
              or r["completed_in_db"] != r["tasks"] or r["completed_reported"] != r["tasks"]]
    if failed:
        print("FAIL: %s" % failed, file=sys.stderr)
    return failed


def render_host(report):
    f, s = report["facts"], report["settings"]
    out = ["Measured %s by `bench/drain_apache.py --host-python`: %d worker processes against a real "
           "Apache 2.4 (mod_cgid, the shipped .htaccess, `/api/` URLs), CGI scripts run by Python %s "
           "with PYTHONDONTWRITEBYTECODE=1, MariaDB %s. *before*: the site at commit %s (sources only); "
           "*after*: the bundle `%s` built now. 1-minute load average %s before the run and %s after "
           "(2 cores; the drain's own workers raise it)." % (
               f["date"], s["workers"], f["python"], f.get("mariadb"), f["before_ref"], f["bundle"],
               f.get("load_before"), f.get("load_after")),
           "",
           "| site and protocol | mode | tasks | seconds | tasks/s | vs before | requests/s | 5xx |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    baseline = report["results"].get("before, claim then complete", {})
    order = ("before, claim then complete", "after, claim then complete",
             "after, claim carries the results")
    names = [n for n in order if n in report["results"]]
    names += [n for n in report["results"] if n not in names]
    for name in names:
        for mode, r in sorted(report["results"][name].items()):
            label = "batches of %d" % r["batch"] if r["batch"] else "one task at a time"
            base = baseline.get(mode)
            ratio = "%.2fx" % (r["tasks_per_s"] / base["tasks_per_s"]) if base else ""
            rate = ("%.0f" if r["tasks_per_s"] >= 10 else "%.1f") % r["tasks_per_s"]
            out.append("| %s | %s | %d | %.1f | **%s** | %s | %.1f | %d |" % (
                name, label, r["completed_in_db"], r["seconds"], rate, ratio,
                r["requests_per_s"], r["five_xx"]))
    out += ["", "Targets (issue 11): one task at a time at least 2x the baseline's tasks/s, batches "
                "at least 1.5x."]
    return "\n".join(out) + "\n"


def render(report):
    f, s = report["facts"], report["settings"]
    out = ["Measured %s by `bench/drain_apache.py`: %d worker processes against a real Apache 2.4 "
           "(mod_cgid, the shipped .htaccess, `/api/` clean URLs) serving the upload bundle `%s` as CGI, "
           "scripts run by a bare Python %s. Machine: %s, %s cores%s. Workers, Apache, the CGI processes "
           "and the database share those cores; 1-minute load average %s before the run and %s after "
           "(the drain's own workers and CGI processes raise it)." % (
               f["date"], s["workers"], f.get("bundle", "?"), f["python"], f["cpu"], f["cores"],
               ", MariaDB %s%s" % (f["mariadb"], "".join(" (%s = %s)" % kv for kv in sorted(f.get("mysql_options", {}).items())))
               if f.get("mariadb") else "",
               f.get("load_before"), f.get("load_after")),
           "",
           "| backend | mode | tasks | seconds | tasks/s | requests/s | 5xx | other non-2xx | left pending |",
           "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for name in ("sqlite", "mysql"):
        for mode, r in sorted(report["results"].get(name, {}).items()):
            label = "claim `limit=%d` + batch complete" % r["batch"] if r["batch"] else "single claim + complete"
            other = {k: v for k, v in r["non_2xx"].items() if not k.startswith("5")}
            out.append("| %s | %s | %d | %.1f | **%.0f** | %.1f | %d | %s | %d |" % (
                "MariaDB" if name == "mysql" else "SQLite", label, r["completed_in_db"], r["seconds"],
                r["tasks_per_s"], r["requests_per_s"], r["five_xx"],
                ", ".join("%s: %d" % kv for kv in sorted(other.items())) or "none", r["left_pending"]))
    out += ["", "Target (issue 4): batches of 50 drain at least 500 tasks/s with zero 5xx."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
