"""SQLite with no room left: 503 "disk is full" with Retry-After, never a 500,
/health saying so, nothing half-written, and everything accepted once room
is made again.

Two ways to run out of room: `[database] sqlite_max_bytes` (PRAGMA
max_page_count, which raises the same SQLITE_FULL as a full disk) runs
everywhere; a real 2 MB tmpfs runs where the test may mount one (root). In CI
the tmpfs variant must run, never skip.
"""

import os
import sqlite3
import subprocess
import tempfile
import uuid

import pytest

from conftest import IN_CI, ApiClient, make_config, snapshot
from taskq.app import Application

BIG = "x" * 40000  # params or a result that needs new pages


def api_for(tmp_path, **database):
    database.setdefault("backend", "sqlite")
    config = make_config("sqlite", tmp_path, **{"database": database})
    return ApiClient(Application(config=config)), config


def setup_queue(api):
    """A type, one claimed task (to complete later) and one pending."""
    assert api.post("/task-types/register", {"name": "fill", "version": "1",
                                             "param_schema": {"type": "object"}}).status == 201
    first = api.post("/tasks", {"type": "fill", "params": {"n": 0}}).data["id"]
    api.post("/tasks", {"type": "fill", "params": {"n": 1}})
    claimed = api.post("/tasks/claim", {"worker_id": "w1"})
    assert claimed.status == 200 and claimed.data["id"] == first
    return first


def assert_disk_full(response):
    assert response.status == 503, response
    assert "disk is full" in response.json["error"], response
    assert int(response.header("Retry-After")) > 0


def integrity_ok(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


def check_full_then_recovered(api, make_full, make_room, task_id, path):
    """While full: writes that need room answer 503 disk full, so does
    /health, and nothing changes; with room again the same requests succeed."""
    before = snapshot(api)
    make_full()
    assert_disk_full(api.post("/tasks", {"type": "fill", "params": {"big": BIG}}))
    assert_disk_full(api.post("/tasks", {"tasks": [{"type": "fill", "params": {"i": i, "big": BIG}}
                                                   for i in range(3)]}))
    done = {"worker_id": "w1", "success": True, "result": {"big": BIG, "ok": True}}
    assert_disk_full(api.post("/tasks/%d/complete" % task_id, done))
    assert_disk_full(api.post("/tasks/complete", {"worker_id": "w1", "results": [
        dict(done, id=task_id)]}))
    health = api.get("/health")
    assert_disk_full(health)
    assert health.json["details"]["database"]["disk_full"] is True
    make_room()
    assert integrity_ok(path)
    assert snapshot(api) == before

    make_full()  # a claim may fit in pages the files already have; either way no 500
    claim = api.post("/tasks/claim", {"worker_id": "w2", "limit": 5})
    assert claim.status == 200 or claim.status == 503 and "disk is full" in claim.json["error"], claim
    make_room()
    assert api.get("/health").status == 200
    again = api.post("/tasks/%d/complete" % task_id, done)
    assert again.status == 200, again
    assert api.get("/tasks/%d" % task_id).data["result"] == {"big": BIG, "ok": True}
    assert api.post("/tasks", {"type": "fill", "params": {"big": BIG}}).status == 201
    assert integrity_ok(path)


class SwitchableApi:
    """An ApiClient whose config can be swapped between requests."""

    def __init__(self, api):
        self.api = api

    def __getattr__(self, name):
        return getattr(self.api, name)


def test_sqlite_size_limit_answers_503_disk_full_and_loses_nothing(tmp_path):
    api, config = api_for(tmp_path)
    task_id = setup_queue(api)
    path = config.database["sqlite_path"]
    size = os.path.getsize(path)  # the last connection checkpointed the WAL into it
    switch = SwitchableApi(api)
    full, _ = api_for(tmp_path, sqlite_max_bytes=str(size))
    roomy, _ = api_for(tmp_path, sqlite_max_bytes=str(size + 4 * 1024 * 1024))

    def use(which):
        switch.api = which

    check_full_then_recovered(switch, lambda: use(full), lambda: use(roomy), task_id, path)


@pytest.fixture
def small_tmpfs():
    """A 2 MB tmpfs, unmounted after the test."""
    where = tempfile.mkdtemp(prefix="taskq-tmpfs-")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", where],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if result.returncode != 0:
        os.rmdir(where)
        if IN_CI:
            pytest.fail("CI runs as root and must mount a tmpfs: %s" % result.stdout)
        pytest.skip("cannot mount a tmpfs here: %s" % result.stdout.strip())
    try:
        yield where
    finally:
        subprocess.run(["umount", where], check=False)
        os.rmdir(where)


def fill_disk(folder):
    """Write a file until the file system refuses; returns its path."""
    filler = os.path.join(folder, "filler-%s" % uuid.uuid4().hex)
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("held_open", [True, False], ids=["busy", "idle"])
def test_sqlite_on_a_full_2mb_filesystem_answers_503_disk_full_and_loses_nothing(
        small_tmpfs, tmp_path, held_open):
    """busy: another connection keeps the -wal and -shm files, so reads work
    and writes fail with SQLITE_FULL; idle: the last connection removed them
    and no request can open the database (no room to make them again)."""
    path = os.path.join(small_tmpfs, "taskq.sqlite3")
    api, config = api_for(tmp_path, sqlite_path=path)
    task_id = setup_queue(api)
    holder = sqlite3.connect(path)
    if held_open:
        holder.execute("SELECT count(*) FROM tasks").fetchall()
    fillers = []
    try:
        check_full_then_recovered(api, lambda: fillers.append(fill_disk(small_tmpfs)),
                                  lambda: os.unlink(fillers.pop()), task_id, path)
    finally:
        holder.close()
