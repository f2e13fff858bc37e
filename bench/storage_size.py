#!/usr/bin/env python3
"""Bytes a finished task keeps on disk, per table, and the steady-state size per
1,000 tasks a day at the [retention] defaults (docs/deploy.md's quota figure).

Creates, claims and completes --tasks tasks of one type through the WSGI app
in-process (batches of 100, as a batching worker does; small payloads as a
mail job has: params {"to", "template", "n"}, result {"sent", "message_id"}),
on a fresh database, then reads what each table holds: on MariaDB
information_schema data_length + index_length after ANALYZE TABLE (InnoDB
page counts: 16 KiB pages, so a table's figure moves in page steps), on
SQLite the dbstat pages of each table and index (the file's size beside).
Steady state at the defaults: 30 days of completed tasks (30,000 per 1,000 a
day) with their history (three events each: created, claimed, completed), and
two days of task_runs periods.

    python bench/storage_size.py [--backend sqlite|mysql|both] [--tasks 20000] [--update-docs]
"""

import argparse
import io
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402

ROOT = benchlib.ROOT
sys.path.insert(0, os.path.join(ROOT, "lib"))

from taskq.app import Application  # noqa: E402

BATCH = 100
TABLES = ("tasks", "task_history", "task_runs", "task_counts", "taskq_claim_requests")
KEEP_DAYS = 30  # completed_days and history_days by default
RUN_PERIODS = 2 * 288  # task_runs keeps two days of 5-minute periods


def call(app, method, path, body=None):
    raw = b"" if body is None else json.dumps(body).encode("utf-8")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
               "CONTENT_LENGTH": str(len(raw)), "CONTENT_TYPE": "application/json",
               "wsgi.input": io.BytesIO(raw), "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1",
               "wsgi.errors": sys.stderr}
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"] = int(status.split()[0])

    body = b"".join(app(environ, start_response))
    if seen["status"] >= 400:
        raise RuntimeError("%s %s -> %d %s" % (method, path, seen["status"], body[:200]))
    return json.loads(body.decode("utf-8"))["data"]


def fill(app, count):
    call(app, "POST", "/task-types/register", {"name": "mail.send", "version": "1",
                                                "param_schema": {"type": "object"}})
    for start in range(0, count, BATCH):
        call(app, "POST", "/tasks", {"tasks": [
            {"type": "mail.send", "params": {"to": "user%d@example.org" % n, "template": "welcome",
                                             "n": n}} for n in range(start, min(count, start + BATCH))]})
        tasks = call(app, "POST", "/tasks/claim", {"worker_id": "mailer-1", "limit": BATCH})["tasks"]
        call(app, "POST", "/tasks/complete", {"worker_id": "mailer-1", "results": [
            {"id": t["id"], "success": True,
             "result": {"sent": True, "message_id": "<%d.mailer@example.org>" % t["id"]}}
            for t in tasks]})


def spread_runs(conn, mark="?"):
    """Copy this run's task_runs rows (all in one or two periods) into the 575
    periods before: the two days task_runs keeps at a steady trickle."""
    digits = "(%s)" % " UNION ALL ".join("SELECT %d AS d" % d for d in range(10))
    cur = conn.cursor()
    cur.execute("INSERT INTO task_runs (period, type, outcome, bucket, slot, n, run_ms) "
                "SELECT r.period - (a.d + 10 * b.d + 100 * c.d), r.type, r.outcome, r.bucket, r.slot, "
                "r.n, r.run_ms FROM (SELECT * FROM task_runs WHERE period = (SELECT MAX(period) "
                "FROM task_runs)) r CROSS JOIN %s a CROSS JOIN %s b CROSS JOIN %s c "
                "WHERE a.d + 10 * b.d + 100 * c.d BETWEEN 1 AND %d" % (digits, digits, digits,
                                                                       RUN_PERIODS - 1))


def mysql_sizes(params, name):
    conn = benchlib._mysql_connect(params, name)
    try:
        spread_runs(conn)
        with conn.cursor() as cur:
            sizes = {}
            for table in TABLES:
                cur.execute("ANALYZE TABLE %s" % table)
                cur.fetchall()
                cur.execute("SELECT COUNT(*) FROM %s" % table)
                rows = cur.fetchone()[0]
                cur.execute("SELECT data_length, index_length FROM information_schema.tables "
                            "WHERE table_schema = %s AND table_name = %s", (name, table))
                data, index = cur.fetchone()
                sizes[table] = {"rows": int(rows), "data": int(data), "index": int(index)}
            cur.execute("SELECT VERSION()")
            return sizes, cur.fetchone()[0]
    finally:
        conn.close()


def sqlite_sizes(path):
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        spread_runs(conn)
        owner = {name: table for name, table in conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')")}
        pages = {}
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            pages[name] = size
        sizes = {}
        for table in TABLES:
            rows = conn.execute("SELECT COUNT(*) FROM %s" % table).fetchone()[0]
            data = pages.get(table, 0)
            index = sum(size for name, size in pages.items() if owner.get(name) == table and name != table)
            sizes[table] = {"rows": rows, "data": data, "index": index}
        file_bytes = os.path.getsize(path)
        return sizes, "SQLite %s, file %d bytes" % (sqlite3.sqlite_version, file_bytes)
    finally:
        conn.close()


def steady(sizes, tasks):
    """Bytes at steady state per 1,000 tasks a day, per table, from the per-row figures."""
    per_row = {t: (s["data"] + s["index"]) / float(s["rows"]) if s["rows"] else 0.0
               for t, s in sizes.items()}
    history_per_task = sizes["task_history"]["rows"] / float(tasks)
    kept = KEEP_DAYS * 1000
    return {
        "tasks": kept * per_row["tasks"],
        "task_history": kept * history_per_task * per_row["task_history"],
        "task_runs": sizes["task_runs"]["data"] + sizes["task_runs"]["index"],  # spread_runs
        "task_counts": sizes["task_counts"]["data"] + sizes["task_counts"]["index"],
    }, per_row, history_per_task


def report(backend, server, sizes, tasks):
    total, per_row, history_per_task = steady(sizes, tasks)
    lines = ["%s (%s), %d tasks made, claimed and completed:" % (backend, server, tasks), "",
             "| table | rows | data + index bytes | bytes per row | at steady state, 1,000 tasks/day |",
             "| --- | --- | --- | --- | --- |"]
    for table in TABLES:
        s = sizes[table]
        lines.append("| %s | %d | %d + %d | %s | %s |" % (
            table, s["rows"], s["data"], s["index"],
            "%.0f" % per_row[table] if s["rows"] else "-",
            "%.1f MB" % (total[table] / 1e6) if table in total else "-"))
    lines.append("| **total** | | | | **%.1f MB** |" % (sum(total.values()) / 1e6))
    lines.append("")
    lines.append("History events per task: %.2f; task_runs: this run's rows copied into the %d "
                 "periods (two days) it keeps." % (history_per_task, RUN_PERIODS))
    return "\n".join(lines), sum(total.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "mysql", "both"), default="both")
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--mysql", default=os.environ.get("TASKQ_TEST_MYSQL", ""))
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    params = benchlib.mysql_params(args.mysql)
    workdir = tempfile.mkdtemp(prefix="taskq-storage-")
    parts = []
    try:
        for backend in ("sqlite", "mysql") if args.backend == "both" else (args.backend,):
            database, name = {}, None
            if backend == "sqlite":
                database["sqlite_path"] = os.path.join(workdir, "size.sqlite3")
            else:
                name, _ = benchlib.create_mysql_database(params)
                database.update(host=params["host"], port=params["port"], user=params["user"],
                                password=params["password"], name=name)
            try:
                path = benchlib.write_config(workdir, backend, **database)
                app = Application(config_path=path)
                fill(app, args.tasks)
                app.close()
                if backend == "sqlite":
                    sizes, server = sqlite_sizes(database["sqlite_path"])
                else:
                    sizes, server = mysql_sizes(params, name)
            finally:
                if name:
                    benchlib.drop_mysql_database(params, name)
            text, _ = report(backend, server, sizes, args.tasks)
            parts.append(text)
            print(text + "\n")
    finally:
        benchlib.remove_tree(workdir)
    if args.update_docs:
        benchlib.replace_doc_region(os.path.join(ROOT, "docs", "deploy.md"), "storage_size",
                                    "\n\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
