"""Versioned MySQL/MariaDB schema migrations.

`migrations/mysql/NNNN_name.sql` files are applied in number order to bring
a database from the version recorded in `taskq_schema_version` (0 when the
table is missing) up to the newest. Each applied migration leaves its row in
that table, so a re-run applies nothing. A server-wide lock
(`GET_LOCK('taskq_migrate', 30)`) keeps two installers from racing.

MySQL commits every DDL statement on its own, so a migration cannot be rolled
back half way; migrations are written to be re-runnable instead (IF NOT
EXISTS, INSERT IGNORE), and the version row is written only after the last
statement succeeded.

SQLite needs none of this: its store creates its schema on first use.
"""

import collections
import os
import re

from .config import PROJECT_ROOT
from .errors import SchemaNewer, TaskqError

MIGRATIONS_DIR = os.path.join(PROJECT_ROOT, "migrations", "mysql")
LOCK_NAME = "taskq_migrate"
LOCK_TIMEOUT = 30

Migration = collections.namedtuple("Migration", "number name path")
# A migration's "-- release: X" line: the first taskq release that has it. The
# version row keeps it (needs_release, from migration 0009 on), so an older
# release that meets this schema can name the release to upload again.
_RELEASE_LINE = re.compile(r"^--\s*release:\s*([0-9A-Za-z.+-]{1,32})\s*$", re.M)

_FILE_NAME = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")


class MigrationError(TaskqError):
    status = 503
    message = "Database schema cannot be brought up to date"


def available(directory=MIGRATIONS_DIR):
    """Every migration file in `directory`, lowest number first."""
    found = []
    for entry in sorted(os.listdir(directory)):
        match = _FILE_NAME.match(entry)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), os.path.join(directory, entry)))
    numbers = [m.number for m in found]
    if len(set(numbers)) != len(numbers):
        raise MigrationError("Two migration files share a number in %s" % directory)
    return found


def statements(text):
    """The statements of a migration script: comment lines dropped, split on ';'."""
    script = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [part.strip() for part in script.split(";") if part.strip()]


def release_of(text):
    """The release a migration script names on its "-- release:" line, or None."""
    match = _RELEASE_LINE.search(text)
    return match.group(1) if match else None


def pending_names(conn=None, directory=MIGRATIONS_DIR, recorded=None):
    """'0009_schema_release'-style names of the migrations not yet applied."""
    if recorded is None:
        recorded = recorded_versions(conn)
    return ["%04d_%s" % (m.number, m.name) for m in available(directory) if m.number not in recorded]


def current_version(conn):
    """The highest recorded schema version, 0 for a database without the version table."""
    with conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_name = 'taskq_schema_version'")
        if not cur.fetchone()[0]:
            return 0
        cur.execute("SELECT COALESCE(MAX(version), 0) FROM taskq_schema_version")
        return int(cur.fetchone()[0])


def recorded_versions(conn):
    """Every version in taskq_schema_version (empty for a database without the table)."""
    if not current_version(conn):
        return set()
    with conn.cursor() as cur:
        cur.execute("SELECT version FROM taskq_schema_version")
        return {int(row[0]) for row in cur.fetchall()}


def needs_release(conn, version):
    """The release a newer schema version names (migration 0009 on), or None."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT needs_release FROM taskq_schema_version WHERE version = %s",
                        (version,))
            row = cur.fetchone()
    except Exception:  # noqa: BLE001 - a schema from before 0009 has no such column
        return None
    return row[0] if row else None


def pending(conn, directory=MIGRATIONS_DIR):
    """Migrations not yet recorded; refuses a database newer than this code.

    Each applied version has its row, so one numbered below the newest
    recorded (written beside it and merged later) is still applied.
    """
    migrations = available(directory)
    recorded = recorded_versions(conn)
    version = max(recorded) if recorded else 0
    newest = migrations[-1].number if migrations else 0
    if version > newest:
        refusal = SchemaNewer(version, newest, needs_release(conn, version))
        raise MigrationError(refusal.message, refusal.details)
    return [m for m in migrations if m.number not in recorded]


# "Duplicate column name" / "Duplicate key name": an ALTER TABLE is atomic, so
# it failing this way means an earlier, interrupted run applied it whole.
ALREADY_APPLIED = frozenset((1060, 1061))


def _execute(cur, statement):
    try:
        cur.execute(statement)
    except Exception as exc:  # noqa: BLE001 - PyMySQL is imported by the caller only
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        if code not in ALREADY_APPLIED or not statement.upper().startswith("ALTER TABLE"):
            raise


UNKNOWN_COLUMN = 1054


def _record_releases(cur, unrecorded):
    """Write the release each applied migration names; a later migration
    applied before 0009 (merged in another order) waits for its column."""
    for release, number in list(unrecorded):
        try:
            cur.execute("UPDATE taskq_schema_version SET needs_release = %s WHERE version = %s",
                        (release, number))
        except Exception as exc:  # noqa: BLE001 - PyMySQL is imported by the caller only
            if not (exc.args and exc.args[0] == UNKNOWN_COLUMN):
                raise
            return
        unrecorded.remove((release, number))


def migrate(conn, directory=MIGRATIONS_DIR, lock_timeout=LOCK_TIMEOUT):
    """Apply every pending migration under the migration lock; returns their numbers.

    `conn` is a PyMySQL connection with a database selected.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT GET_LOCK(%s, %s)", (LOCK_NAME, lock_timeout))
        if cur.fetchone()[0] != 1:
            raise MigrationError("Another installer is changing the database schema; "
                                 "try again in a minute")
    try:
        applied, unrecorded = [], []
        # read the version only once the lock is held: the other installer
        # may just have applied what we were about to
        for migration in pending(conn, directory):
            with open(migration.path, encoding="utf-8") as handle:
                script = handle.read()
            with conn.cursor() as cur:
                for statement in statements(script):
                    _execute(cur, statement)
                cur.execute("INSERT IGNORE INTO taskq_schema_version (version, applied_at) "
                            "VALUES (%s, UTC_TIMESTAMP(6))", (migration.number,))
                release = release_of(script)
                if release:  # the column exists from 0009, the first file with the line
                    unrecorded.append((release, migration.number))
                    _record_releases(cur, unrecorded)
            conn.commit()
            applied.append(migration.number)
        return applied
    finally:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT RELEASE_LOCK(%s)", (LOCK_NAME,))
        except Exception:  # noqa: BLE001 - a lost connection releases the lock itself
            pass
