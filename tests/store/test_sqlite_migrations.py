"""SQLite migrations: a version-1 file brought up to date equals a new file made from
sqlite_schema.sql, and keeps its rows (the SQLite twin of tests/store/test_migrations.py)."""

import os
import sqlite3

from conftest import TESTS, make_config
from taskq.store import open_store
from taskq.store.sqlite import SCHEMA_VERSION

V1 = os.path.join(TESTS, "support", "sqlite_schema_v1.sql")


def shape(path):
    """{table: sorted columns (name, type, notnull, default, pk)} and {index: (table, columns, unique)}."""
    conn = sqlite3.connect(path)
    try:
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        columns = {t: sorted(tuple(row[1:]) for row in conn.execute("PRAGMA table_info(%s)" % t))
                   for t in tables}
        indexes = {}
        for table in tables:
            for _, name, unique, _, _ in conn.execute("PRAGMA index_list(%s)" % table):
                cols = tuple(row[2] for row in conn.execute("PRAGMA index_info(%s)" % name))
                indexes[name if not name.startswith("sqlite_autoindex") else (table, cols)] = \
                    (table, cols, unique)
        return columns, indexes
    finally:
        conn.close()


def test_a_version_1_file_is_migrated_to_the_schema_of_a_new_file(tmp_path):
    old = tmp_path / "old" / "taskq.sqlite3"
    old.parent.mkdir()
    conn = sqlite3.connect(str(old), isolation_level=None)
    with open(V1, encoding="utf-8") as handle:
        conn.executescript(handle.read())
    conn.execute("INSERT INTO task_types (name, version, param_schema_json, created_at, updated_at) "
                 "VALUES ('up.alpha', '1', '{}', 0, 0)")
    conn.execute("INSERT INTO tasks (type_id, type, params_json, dedupe_key, max_attempts, created_at, "
                 "updated_at) VALUES (1, 'up.alpha', '{}', 'k', 3, 0, 0)")
    conn.execute("PRAGMA user_version = 1")
    conn.close()

    store = open_store(make_config("sqlite", tmp_path / "old"))
    try:
        assert [row["id"] for row in store.claim("w", None, 1, None)] == [1]
    finally:
        store.close()
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    open_store(make_config("sqlite", new_dir)).close()

    assert shape(str(old)) == shape(str(new_dir / "taskq.sqlite3"))
    for path in (old, new_dir / "taskq.sqlite3"):
        conn = sqlite3.connect(str(path))
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()
