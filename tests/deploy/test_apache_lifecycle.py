"""Living with taskq by FTP, through a real Apache: release 0.1's bundle (built
from its landed commit in a git worktree) is installed and used, today's bundle
is uploaded over it the way an FTP client does (files replaced, nothing
deleted), and then:

- until the upgrade step runs, every route (health included) answers 503
  naming the pending migration, and nothing changes (MariaDB; SQLite upgrades
  its file by itself on the first request);
- the installer's Upgrade button applies it, keeps every task and heals
  counters that drifted;
- a database a later release has upgraded (its version row written as that
  release's migration would) is refused by every route with "database schema
  vN is newer than this release", changing nothing. Release 0.1 itself cannot
  be tested for that refusal: it predates the check (CHANGELOG.md says so).
"""

import os
import re
import shutil
import tempfile

import pytest

from conftest import db_execute, load_mysql_schema, make_config, mysql_connect
from support.apache import prepare_docroot
from support.bundles import bundle_at_commit, bundle_tool
from test_apache import (API_KEY, KEY, _cookies_from, _page, deployment, http, mysql_config,  # noqa: F401
                         sqlite_config)

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}}


def add_old_site(deployment, name, config_text):
    """Release 0.1's bundle unzipped as a site, with its config.ini."""
    saved = deployment.zip_path
    deployment.zip_path = bundle_at_commit()
    try:
        return deployment.add_site(name, config_text)
    finally:
        deployment.zip_path = saved


def upload_over(site, zip_path):
    """Unzip a bundle over a site as an FTP client uploads a folder: every file
    in the zip replaces its namesake, nothing else is touched."""
    unpack = tempfile.mkdtemp(prefix="taskq-upload-")
    try:
        top = bundle_tool().extract(zip_path, unpack)
        for root, _, files in os.walk(top):
            target = os.path.join(site, os.path.relpath(root, top))
            os.makedirs(target, exist_ok=True)
            for name in files:
                shutil.copy2(os.path.join(root, name), os.path.join(target, name))
    finally:
        shutil.rmtree(unpack, ignore_errors=True)
    prepare_docroot(site)


def use_the_queue(api):
    """What a user did with release 0.1: a type, three tasks, one of them done."""
    assert http(api + "/task-types/register", "POST", {"name": "life.demo", "version": "1",
                                                       "param_schema": SCHEMA}, KEY).status == 201
    for n in range(3):
        assert http(api + "/tasks", "POST", {"type": "life.demo", "params": {"n": n}},
                    KEY).status == 201
    claimed = http(api + "/tasks/claim", "POST", {"worker_id": "w1"}, KEY)
    assert claimed.status == 200, claimed
    done = http(api + "/tasks/%d/complete" % claimed.data["id"], "POST",
                {"worker_id": "w1", "success": True, "result": {"ok": 1}}, KEY)
    assert done.status == 200, done


def tasks_seen(api):
    listed = http(api + "/tasks?limit=100", headers=KEY)
    assert listed.status == 200, listed
    return sorted((t["id"], t["status"]) for t in listed.data)


def stats_counts(api):
    return {(t, s): n for t, info in http(api + "/stats", headers=KEY).data["types"].items()
            for s, n in info["counts"].items() if n}


def press_upgrade(deployment, name):
    """The installer's locked page: the API key and 'Upgrade the database schema'."""
    url = deployment.url(name, "/install.py")
    status, headers, page = _page(url)
    assert status == 200 and "Upgrade the database schema" in page, page[-1500:]
    jar = _cookies_from(headers, {})
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    status, _, page = _page(url, {"csrf": token, "step": "migrate", "current_key": API_KEY}, jar)
    assert status == 200, page[-1500:]
    return page


def refuses_everything(api, want):
    for method, path, body in (("GET", "/health", None), ("GET", "/tasks", None),
                               ("POST", "/tasks", {"type": "life.demo", "params": {"n": 9}}),
                               ("POST", "/tasks/claim", {"worker_id": "w2"}),
                               ("GET", "/stats", None), ("POST", "/admin/recount", None)):
        reply = http(api + path, method, body, KEY)
        assert reply.status == 503, (path, reply)
        assert want in reply.json["message"], (path, reply.json)
        assert b"Traceback" not in reply.raw


@pytest.mark.mysql
def test_mariadb_site_upgraded_from_release_0_1_by_ftp_and_the_installer(
        deployment, scratch_mysql_database, tmp_path):
    database = scratch_mysql_database(schema=False)
    old_schema = os.path.join(os.path.dirname(bundle_at_commit()), "..", "tree", "schema.sql")
    conn = mysql_connect(database)
    load_mysql_schema(conn, old_schema)  # what release 0.1's installer created
    conn.close()
    site = add_old_site(deployment, "taskq-life-mysql", mysql_config(database))
    api = deployment.url("taskq-life-mysql", "/api")
    assert http(api + "/health").data["version"] == "0.1.0"
    use_the_queue(api)
    before = tasks_seen(api)
    cfg = make_config("mysql", tmp_path, database)

    upload_over(site, deployment.zip_path)
    health = http(api + "/health")
    assert health.status == 503, health
    assert health.json["details"]["status"] == "upgrade_pending"
    assert health.json["details"]["schema"]["pending"] == ["0009_schema_release",
                                                           "0010_dependencies"]
    refuses_everything(api, "pending migrations 0009_schema_release, 0010_dependencies")
    db_execute(cfg, "UPDATE task_counts SET n = n + 7 WHERE status = 'pending'")  # drifted
    db_execute(cfg, "UPDATE task_types SET usage_count = 0")

    page = press_upgrade(deployment, "taskq-life-mysql")
    assert "Applied migrations 0009, 0010" in page, page[-1500:]
    health = http(api + "/health", headers=KEY)
    assert health.status == 200 and health.data["version"] == "0.5.0"
    assert health.data["database"]["schema"] == 10
    assert tasks_seen(api) == before
    assert stats_counts(api) == {("life.demo", "pending"): 2, ("life.demo", "completed"): 1}
    assert http(api + "/task-types/life.demo", headers=KEY).data["usage_count"] == 3

    # a later release's upgrade step has run on this database: today's files refuse it
    db_execute(cfg, "INSERT INTO taskq_schema_version (version, applied_at, needs_release) "
                    "VALUES (11, UTC_TIMESTAMP(6), '0.6.0')")
    refuses_everything(api, "database schema v11 is newer than this release (v10): "
                            "upload release \u2265 0.6.0")
    db_execute(cfg, "DELETE FROM taskq_schema_version WHERE version = 11")
    assert tasks_seen(api) == before  # nothing was changed meanwhile


def test_sqlite_site_upgraded_from_release_0_1_by_ftp_keeps_its_tasks(deployment, tmp_path):
    site = add_old_site(deployment, "taskq-life", sqlite_config())
    api = deployment.url("taskq-life", "/api")
    use_the_queue(api)
    before = tasks_seen(api)
    path = os.path.join(site, "data", "taskq.sqlite3")
    cfg = make_config("sqlite", tmp_path)
    cfg.database["sqlite_path"] = path
    assert list(db_execute(cfg, "PRAGMA user_version")) == [(7,)]
    db_execute(cfg, "UPDATE task_counts SET n = n + 4")  # drifted under the old release
    prepare_docroot(site)  # the file stays the web user's

    upload_over(site, deployment.zip_path)
    health = http(api + "/health", headers=KEY)
    assert health.status == 200 and health.data["database"]["schema"] == 9, health
    assert tasks_seen(api) == before
    assert stats_counts(api) == {("life.demo", "pending"): 2, ("life.demo", "completed"): 1}

    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO taskq_schema_version VALUES (10, '0.6.0', 0)")
    conn.execute("PRAGMA user_version = 10")
    conn.close()
    prepare_docroot(site)
    refuses_everything(api, "database schema v10 is newer than this release (v9): "
                            "upload release \u2265 0.6.0")
    assert list(db_execute(cfg, "PRAGMA user_version")) == [(10,)]
