"""SQLite-only behaviour: schema made on first use, WAL, the data folder."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from cgi_runner import fresh_copy, run_cgi
from conftest import ROOT
from taskq import config
from taskq.store.sqlite import CLAIM_ORDERS, SCHEMA_VERSION, STEPS, SQLiteStore  # noqa: E402


def sqlite_store(path):
    return SQLiteStore(config.parse("[database]\nsqlite_path = " + path + "\n"))

FIRST_USE = """
import sys
sys.path.insert(0, %r)
from taskq import config
from taskq.store import open_store
store = open_store(config.parse("[database]\\nsqlite_path = " + sys.argv[1] + "\\n"))
store.ping()
print(len(store.list_types(False)))
store.close()
""" % (ROOT + "/lib",)


def test_schema_is_created_once_when_first_requests_race(tmp_path):
    path = str(tmp_path / "fresh" / "taskq.sqlite3")
    procs = [subprocess.Popen([sys.executable, "-c", FIRST_USE, path], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(12)]
    outcomes = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]
    assert all(code == 0 and out.strip() == b"0" for code, out, _ in outcomes), outcomes
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"task_types", "tasks", "task_history"} <= tables


def test_missing_data_folder_is_created(tmp_path):
    path = tmp_path / "a" / "b" / "taskq.sqlite3"
    subprocess.run([sys.executable, "-c", FIRST_USE, str(path)], check=True, capture_output=True)
    assert path.exists()


def other_bits(path):
    return os.stat(str(path)).st_mode & 0o007


def test_a_fresh_upload_creates_its_database_and_folder_for_this_account_only(tmp_path):
    site = fresh_copy(tmp_path / "site")
    database = site / "state" / "taskq.sqlite3"  # a folder that does not exist yet
    ini = site / "config.ini"
    ini.write_text("[database]\nsqlite_path = %s\n[api]\napi_key = %s\n" % (database, "k" * 43),
                   encoding="utf-8")
    previous = os.umask(0o022)  # the usual umask: SQLite alone would make the file 0644
    try:
        response = run_cgi("POST", "/task-types/register",
                           {"name": "demo", "version": "1", "param_schema": {}},
                           headers={"X-API-Key": "k" * 43}, config_path=ini,
                           script=str(site / "cgi-bin" / "api.py"))
    finally:
        os.umask(previous)
    assert response.status == 201, response
    assert os.stat(str(database)).st_mode & 0o777 == 0o600
    assert os.stat(str(database.parent)).st_mode & 0o777 == 0o700


HOLD_OPEN = """
import json, os, sys
sys.path.insert(0, %r)
os.umask(0o022)
from taskq import config
from taskq.store import open_store
path = sys.argv[1]
store = open_store(config.parse("[database]\\nsqlite_path = " + path + "\\n"))
store.register_type("demo", "1", "{}", None, None, True)
print(json.dumps({name: os.stat(path + name).st_mode & 0o777 for name in ("", "-wal", "-shm")}))
store.close()
""" % (ROOT + "/lib",)


def test_the_wal_and_shm_files_of_a_new_database_are_private_too(tmp_path):
    path = str(tmp_path / "taskq.sqlite3")
    out = subprocess.run([sys.executable, "-c", HOLD_OPEN, path], check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout
    assert json.loads(out.decode()) == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


def test_an_existing_world_readable_database_keeps_working_and_loses_its_other_bits(tmp_path):
    path = tmp_path / "taskq.sqlite3"
    sqlite_store(str(path)).close()
    os.chmod(str(path), 0o644)  # as every install before this made it
    ini = tmp_path / "config.ini"
    ini.write_text("[database]\nsqlite_path = %s\n" % path, encoding="utf-8")
    assert run_cgi("GET", "/task-types", config_path=ini).status == 200
    assert os.stat(str(path)).st_mode & 0o777 == 0o640  # the group keeps reading it
    assert other_bits(path) == 0


@pytest.mark.parametrize("order", sorted(CLAIM_ORDERS), ids=lambda o: "%s-%s" % (o[0], "desc" if o[1] else "asc"))
def test_claim_uses_indexes_not_a_scan_or_sort(tmp_path, order):
    from taskq import config
    from taskq.store import open_store

    store = open_store(config.parse("[database]\nsqlite_path = %s\n" % (tmp_path / "x.sqlite3")))
    from taskq.store.sqlite import Q

    index, type_index, order_by = CLAIM_ORDERS[order]
    if order_by is None:  # a stepped order: the next group's value, then that group's rows
        cmp, direction, _ = STEPS[order]
        statements = (("group_top", (0,), index), ("group_top_of_type", (1, 0), type_index),
                      ("group_rows", (0, 5), index), ("group_rows_of_type", (1, 0, 5), type_index))
    else:
        cmp = direction = None
        statements = (("next_pending", (1,), index), ("next_pending_of_type", (1, 1), type_index))
    plans = {}
    for name, params, use in statements + (("expired_leases", (0, 50), None),):
        sql = Q[name] if use is None else Q[name].format(
            column=order[0], group=order[0], order=order_by, index=use, cmp=cmp, dir=direction)
        plans[name] = " | ".join(row[-1] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql, params))
    store.close()
    for name, plan in plans.items():
        assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (name, plan)
        assert "TEMP B-TREE" not in plan, (name, plan)


def test_passenger_entry_point_serves_the_same_app(tmp_path):
    script = """
import io, json, os, runpy, sys
os.environ["TASKQ_CONFIG"] = sys.argv[2]
app = runpy.run_path(sys.argv[1])["application"]
environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/health", "wsgi.input": io.BytesIO()}
out = {}
body = b"".join(app(environ, lambda status, headers: out.update(status=status)))
print(out["status"], json.loads(body)["data"]["database"]["backend"])
"""
    cfg = tmp_path / "config.ini"
    cfg.write_text("[database]\nsqlite_path = db.sqlite3\n")
    done = subprocess.run([sys.executable, "-c", script, ROOT + "/passenger_wsgi.py", str(cfg)],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "200 OK sqlite"


def test_an_older_file_is_migrated_when_opened(tmp_path):
    """A file at version 6 (before the dashboard tables) gains them, keeping its tasks."""
    path = str(tmp_path / "old.sqlite3")
    conn = sqlite3.connect(path, isolation_level=None)
    store = sqlite_store(path)
    store.close()
    conn.execute("DROP TABLE dashboard_sessions")
    conn.execute("DROP TABLE login_failures")
    conn.execute("INSERT INTO task_types (name, version, param_schema_json, created_at, updated_at)"
                 " VALUES ('t', '1', '{}', 0, 0)")
    conn.execute("PRAGMA user_version = 6")
    conn.close()
    store = sqlite_store(path)
    try:
        assert store.get_type("t")["name"] == "t"
        store.create_session("h" * 64, "c" * 43, "config:x", 60)
        assert store.get_session("h" * 64)["key_ref"] == "config:x"
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
