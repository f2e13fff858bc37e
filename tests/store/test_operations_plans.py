"""The statements claims run for paused and limited types read indexes, never a scan or a sort."""

import json
import uuid

import pytest

from conftest import make_config


def _fill(store):
    limited, _ = store.register_type("plan.limited", "1", "{}", None, None)
    other, _ = store.register_type("plan.other", "1", "{}", None, None)
    for row in (limited, other):
        store.create_tasks([{"type_id": row["id"], "type": row["name"],
                             "params_json": json.dumps({"n": n}), "dedupe_key": uuid.uuid4().hex * 2,
                             "priority": n % 5, "max_attempts": 3, "claim_timeout": None}
                            for n in range(300)])
    store.update_type_settings("plan.limited", {"max_concurrency": 50})
    store.claim("w", None, 40, None)
    return limited["id"], other["id"]


@pytest.mark.mysql
@pytest.mark.parametrize("skip_locked", ["auto", "off"])
def test_live_lease_count_reads_the_type_claim_index(mysql_database, tmp_path, skip_locked):
    from conftest import empty_mysql
    from taskq.store.mysql import MySQLStore, Q

    empty_mysql(mysql_database)
    store = MySQLStore(make_config("mysql", tmp_path, mysql_database,
                                   database={"skip_locked": skip_locked}))
    try:
        ids = _fill(store)
        cursor = store.conn.cursor()
        cursor.execute("EXPLAIN " + Q["live_leases"].format(ids="%s, %s"), ids)
        columns = [c[0] for c in cursor.description]
        plan = [dict(zip(columns, row)) for row in cursor.fetchall()]
    finally:
        store.close()
    assert [row["key"] for row in plan] == ["tasks_type_claim"], plan
    assert all(row["type"] in ("range", "ref") for row in plan), plan
    extra = " ".join(row["Extra"] or "" for row in plan)
    assert "filesort" not in extra and "temporary" not in extra, plan


def test_sqlite_live_lease_count_reads_the_type_claim_index(tmp_path):
    from taskq.store import open_store
    from taskq.store.sqlite import Q

    store = open_store(make_config("sqlite", tmp_path))
    try:
        ids = _fill(store)
        plan = " | ".join(row[-1] for row in store.conn.execute(
            "EXPLAIN QUERY PLAN " + Q["live_leases"].format(ids="?, ?"), list(ids) + [0]))
    finally:
        store.close()
    assert "tasks_type_claim" in plan and "TEMP B-TREE" not in plan, plan
