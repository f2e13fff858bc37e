"""Versioned MySQL migrations: every migration applied to an empty database
gives exactly schema.sql, and the migrator is safe to re-run and to race."""

import re
import threading

import pytest

from conftest import load_mysql_schema, mysql_connect
from taskq import migrate

pytestmark = pytest.mark.mysql


def table_definitions(database):
    """{table: SHOW CREATE TABLE text without its AUTO_INCREMENT counter}."""
    conn = mysql_connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW FULL TABLES WHERE Table_type = 'BASE TABLE'")
            tables = sorted(row[0] for row in cur.fetchall())
            definitions = {}
            for table in tables:
                cur.execute("SHOW CREATE TABLE `%s`" % table)
                definitions[table] = re.sub(r" AUTO_INCREMENT=\d+", "", cur.fetchone()[1])
        return definitions
    finally:
        conn.close()


def versions(database):
    conn = mysql_connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version FROM taskq_schema_version ORDER BY version")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def run_migrate(database, **kw):
    conn = mysql_connect(database)
    try:
        return migrate.migrate(conn, **kw)
    finally:
        conn.close()


def test_all_migrations_on_empty_database_equal_schema_sql(scratch_databases):
    migrated, reference = scratch_databases("taskq_mig"), scratch_databases("taskq_mig")
    applied = run_migrate(migrated)
    conn = mysql_connect(reference)
    load_mysql_schema(conn)
    conn.close()

    assert applied == [m.number for m in migrate.available()]
    got, want = table_definitions(migrated), table_definitions(reference)
    assert sorted(got) == sorted(want)
    for table in want:
        assert got[table] == want[table], "table %s differs from schema.sql" % table
    assert versions(migrated) == versions(reference)


def test_schema_sql_records_the_newest_migration_version(scratch_databases):
    database = scratch_databases("taskq_mig")
    conn = mysql_connect(database)
    load_mysql_schema(conn)
    try:
        assert migrate.current_version(conn) == migrate.available()[-1].number
        assert migrate.pending(conn) == []
    finally:
        conn.close()


def test_migrate_twice_applies_nothing_the_second_time(scratch_databases):
    database = scratch_databases("taskq_mig")
    first = run_migrate(database)
    before = table_definitions(database)
    assert first
    assert run_migrate(database) == []
    assert table_definitions(database) == before
    assert versions(database) == first


def test_migration_reruns_cleanly_after_failing_before_recording_its_version(scratch_databases):
    database = scratch_databases("taskq_mig")
    run_migrate(database)
    conn = mysql_connect(database)
    with conn.cursor() as cur:  # as if the process died after the DDL, before the version row
        cur.execute("DELETE FROM taskq_schema_version")
    assert migrate.current_version(conn) == 0
    conn.close()

    assert run_migrate(database) == [m.number for m in migrate.available()]
    assert versions(database) == [m.number for m in migrate.available()]


def test_migrate_refuses_a_database_newer_than_this_code(scratch_databases):
    database = scratch_databases("taskq_mig")
    run_migrate(database)
    conn = mysql_connect(database)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO taskq_schema_version (version, applied_at, needs_release) "
                    "VALUES (9999, UTC_TIMESTAMP(6), '9.9.0')")
    conn.close()
    with pytest.raises(migrate.MigrationError, match="v9999 is newer than this release .v10.: upload release \u2265 9.9.0"):
        run_migrate(database)


def test_migrate_gives_up_while_another_installer_holds_the_lock(scratch_databases):
    database = scratch_databases("taskq_mig")
    holder = mysql_connect(database)
    with holder.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, 0)", (migrate.LOCK_NAME,))
        assert cur.fetchone()[0] == 1
    try:
        with pytest.raises(migrate.MigrationError, match="Another installer"):
            run_migrate(database, lock_timeout=1)
        assert versions_or_none(database) is None
    finally:
        holder.close()
    assert run_migrate(database)


def versions_or_none(database):
    conn = mysql_connect(database)
    try:
        return migrate.current_version(conn) or None
    finally:
        conn.close()


def test_concurrent_installers_apply_each_migration_once(scratch_databases):
    database = scratch_databases("taskq_mig")
    results, failures = [], []

    def worker():
        try:
            results.append(run_migrate(database))
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    everything = [m.number for m in migrate.available()]
    assert sorted(results) == [[]] * 3 + [everything]
    assert versions(database) == everything


def test_statements_drop_comment_lines_and_split_on_semicolons():
    script = "-- a comment; with a semicolon\nCREATE TABLE a (x INT);\n  -- another\nINSERT INTO a VALUES (1);\n\n"
    assert migrate.statements(script) == ["CREATE TABLE a (x INT)", "INSERT INTO a VALUES (1)"]


def test_migration_files_are_numbered_from_one_upwards():
    # numbers are handed out per issue in advance, so gaps are expected until every
    # branch has merged (the common brief); order and uniqueness are what apply needs
    numbers = [m.number for m in migrate.available()]
    assert numbers[0] == 1 and numbers == sorted(set(numbers))


def test_upgrade_from_version_1_keeps_the_tasks_and_gives_portable_claims_their_lock(
        scratch_databases, tmp_path):
    import shutil

    from conftest import make_config
    from taskq.errors import SchemaMissing, SchemaPending
    from taskq.store.mysql import MySQLStore

    database = scratch_databases("taskq_mig")
    first_only = tmp_path / "v1"
    first_only.mkdir()
    shutil.copy(migrate.available()[0].path, str(first_only))
    assert run_migrate(database, directory=str(first_only)) == [1]
    conn = mysql_connect(database)
    with conn.cursor() as cur:  # rows as version 1 wrote them
        cur.execute("INSERT INTO task_types (name, version, param_schema_json, created_at, updated_at) "
                    "VALUES ('up.alpha', '1', '{}', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))")
        cur.execute("INSERT INTO tasks (type_id, type, params_json, dedupe_key, max_attempts, "
                    "created_at, updated_at) VALUES (LAST_INSERT_ID(), 'up.alpha', '{}', %s, 3, "
                    "UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))", ("a" * 64,))
        task_id = cur.lastrowid
    conn.commit()
    conn.close()
    cfg = make_config("mysql", tmp_path, database, database={"skip_locked": "off"})
    with pytest.raises(SchemaPending, match="v1 is older .* pending migrations 0002_claim_lock, "):
        MySQLStore(cfg)  # every request of new code on the old schema: run the upgrade
    store = MySQLStore(cfg, check_schema=False)
    try:
        with pytest.raises(SchemaMissing):  # unchecked, it meets missing tables
            store.claim("w", None, 1, None)
        with pytest.raises(SchemaMissing):  # a column it lacks reads the same way
            store.get_type("up.alpha")

        later = [m.number for m in migrate.available()[1:]]
        assert run_migrate(database) == later
        assert store.stats()["counts"] == [("up.alpha", "pending", 1)]  # 0005 seeds the counters
        assert [row["id"] for row in store.claim("w", None, 1, None)] == [task_id]
        assert store.get_type("up.alpha")["usage_count"] == 1  # counted from the tasks it had
    finally:
        store.close()
    assert versions(database) == [m.number for m in migrate.available()]


def test_migrations_use_no_alter_syntax_that_mysql_rejects():
    # MySQL 5.7/8.0 have neither ADD COLUMN IF NOT EXISTS nor ADD KEY IF NOT EXISTS (MariaDB
    # has both); a re-runnable ALTER is guarded by a look at information_schema instead
    for migration in migrate.available():
        with open(migration.path, encoding="utf-8") as handle:
            text = " ".join(migrate.statements(handle.read())).upper()
        for form in ("ADD COLUMN IF NOT EXISTS", "ADD KEY IF NOT EXISTS", "ADD INDEX IF NOT EXISTS",
                     "DROP COLUMN IF EXISTS"):
            assert form not in text, (migration.name, form)


def test_a_migration_numbered_below_the_newest_recorded_one_is_still_applied(scratch_databases,
                                                                            tmp_path):
    """Migrations are written side by side and merged in any order: a database
    that got 0001, 0002 and a later one first still gets those in between."""
    import shutil

    database = scratch_databases("taskq_mig")
    newest = migrate.available()[-1]
    partial = tmp_path / "partial"
    partial.mkdir()
    for migration in migrate.available()[:2] + [newest]:
        shutil.copy(migration.path, str(partial))
    assert run_migrate(database, directory=str(partial)) == [1, 2, newest.number]
    between = [m.number for m in migrate.available()[2:-1]]
    assert run_migrate(database) == between
    assert versions(database) == [m.number for m in migrate.available()]
    # ADD COLUMN appends: merged in another order, a table's columns come in another
    # order (0010 adds to tasks before 0006 and 0007 did here), the same columns and keys
    lines = lambda defs: {t: sorted(d.replace(",\n", "\n").splitlines())  # noqa: E731
                          for t, d in defs.items()}
    assert lines(table_definitions(database)) == lines(
        table_definitions(_schema_sql_database(scratch_databases)))


def _schema_sql_database(scratch_databases):
    name = scratch_databases("taskq_mig")
    conn = mysql_connect(name)
    load_mysql_schema(conn)
    conn.close()
    return name
