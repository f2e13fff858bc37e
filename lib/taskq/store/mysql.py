"""The MySQL/MariaDB store: one PyMySQL connection per request.

Every time is the database's clock in UTC (UTC_TIMESTAMP(6) in the SQL,
DATETIME(6) columns), so neither the session time zone nor the web host's
clock can make two leases overlap. Sessions run READ COMMITTED: plain reads
see the latest committed rows and take no locks, and locking reads lock only
the rows they return (no gap locks), which keeps claimers and completers off
each other's rows. Multi-statement writes run in one transaction; a deadlock
or lock-wait timeout rolls it back and runs it again a few times before the
request gives up with 503.

How a claim is decided is in `_pick`. With SKIP LOCKED (MariaDB 10.6+,
MySQL 8.0.1+; `skip_locked`), concurrent claimers lock different rows and
pass over each other's. Without it (the portable path), a claim first locks
the one row of `taskq_locks`, so claims take turns: claims reading the queue
through different indexes (all types, one type) would otherwise lock a
task's index entries in opposite orders and deadlock each other, which
measured ~90 deadlocks per 2,000 tasks with 8 claiming processes. Each turn
is one short transaction; queueing claims on the head of the queue waited
for each other anyway.

On a multi-primary cluster (MariaDB Galera; `cluster`), row locks stay on
the node that took them and a conflict between nodes shows up at COMMIT as
error 1213, which rolls one side back. There the claim reads candidates
without locking and takes one with a conditional write (`_pick_cluster`);
docs/scaling.md has the figures that chose it.
"""

import os
import time

from ..errors import (Conflict, DiskFull, PayloadTooLarge, SchemaMissing, SchemaNewer,
                      SchemaPending, Unavailable)
from .base import (BACKLOG_CAP, CLAIM_KEY_WINDOW, DEFAULT_ORDER, HISTORY_BATCH_FACTOR,
                   PERIOD_SECONDS, PROMOTE_BATCH, RETRY_FIELDS, RUNS_KEEP_SECONDS, STEER_FROM,
                   Store, check_lease, claim_caps, client_error, count_deltas, dedupe_conflict,
                   expired_message, finished_count, holds_lease, like_escape_free, load_queries,
                   order_candidates, pick_type_ids, refuse_type_change, repeated_outcome,
                   retry_delay, run_deltas, runs_purge_bound, spread_candidates, stale_claim,
                   steer_event, steer_key, steer_refusal, type_changes)
from .dependencies import DependencyRules
from .driver import enable_tls, pymysql  # PyMySQL without ssl and cryptography

CLIENT = pymysql.constants.CLIENT

Q = load_queries("mysql")
EXPIRE_BATCH = 50
TRANSACTION_ATTEMPTS = 5
PATTERN_ROUNDS = 3
# The cluster claim picks at random among this many tasks per task asked for
# at the head of the queue, so claimers on different nodes seldom pick the
# same row (docs/scaling.md has the conflict rates that chose it); a
# conflict that still happens costs a retry, of which a cluster gets more.
CLUSTER_WINDOW = 50
CLUSTER_WINDOW_MAX = 1000
CLUSTER_ATTEMPTS = 10

# Driver errors at the border: these mean "the database cannot serve us now".
UNAVAILABLE_CODES = frozenset((
    1040,  # too many connections
    1044,  # access denied to the database
    1045,  # access denied (user/password)
    1049,  # unknown database
    1053,  # server shutdown in progress
    1203,  # user has too many connections
    1226,  # user resource limit
    1290,  # --read-only
    1836,  # read-only mode
    1698,  # access denied (an account that logs in by Unix user, not password)
    1927,  # connection killed (MariaDB)
    1047,  # WSREP has not yet prepared node for application use (Galera node not synced)
    2002, 2003, 2005, 2006, 2013, 2055,  # cannot connect / server gone / lost connection
))
# table doesn't exist; unknown column: this code is newer than the schema
SCHEMA_MISSING_CODES = frozenset((1146, 1054))
RETRY_CODES = frozenset((1213, 1205))      # deadlock (and Galera certification failure), lock wait timeout
UNKNOWN_VARIABLE = 1193
DUPLICATE_KEY = 1062
# The schema version this release speaks: migrations/mysql/ up to this number
# (tests/store/test_migrations.py ties the two together). Every request checks it.
SCHEMA_VERSION = 10
NOT_SUPPORTED = 1235  # e.g. GET_LOCK on a Galera node

# Payloads above this size are measured against the server's max_allowed_packet
# first (one extra query, only for them): an oversized statement makes the
# server drop the connection, which would otherwise read as "database down".
PACKET_CHECK_BYTES = 1024 * 1024
PACKET_OVERHEAD = 64 * 1024

TIME_FIELDS = ("claimed_at", "lease_expires_at", "completed_at", "created_at", "updated_at",
               "run_at", "next_run_at", "last_run_at", "last_used_at", "expires_at")
# Concurrent transactions add to one of this many rows per counter key (by
# connection id), so completers do not all queue for one row lock.
COUNTER_SLOTS = 8

# (column, descending) -> what the claim statements are formatted with: the
# index read in order for all types and inside one type, its ORDER BY, and the
# column the pattern claim merges heads on (schema.sql, migration 0003).
# Orders that run against their index's direction (priority ASC on
# tasks_claim, attempts DESC on tasks_attempts) have a "group": the claim
# steps through the index's values of that column (group_top) and takes each
# group oldest first (group_rows); `sign` turns the group value into the
# column's. That spares four indexes and a column (docs/performance.md,
# "Claim orders": each index cost batch creates and completes).
STEP_DOWN = {"cmp": "<", "dir": "DESC", "start": 2 ** 31}
CLAIM_ORDERS = {
    ("priority", True): {"index": "tasks_claim", "type_index": "tasks_type_claim",
                         "order": "neg_priority, id", "column": "priority"},
    ("priority", False): dict(STEP_DOWN, index="tasks_claim", type_index="tasks_type_claim",
                              group="neg_priority", sign=-1, column="priority"),
    ("attempts", False): {"index": "tasks_attempts", "type_index": "tasks_type_attempts",
                          "order": "attempts, id", "column": "attempts"},
    ("attempts", True): dict(STEP_DOWN, index="tasks_attempts", type_index="tasks_type_attempts",
                             group="attempts", sign=1, column="attempts"),
    ("id", False): {"index": "tasks_status_id", "type_index": "tasks_type_status_id",
                    "order": "id", "column": "id"},
    ("id", True): {"index": "tasks_status_id", "type_index": "tasks_type_status_id",
                   "order": "id DESC", "column": "id"},
}


def iso(value):
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def from_iso(text):
    """A DATETIME parameter from an ISO-8601 UTC string as the stores write them."""
    return None if text is None else text.replace("T", " ").rstrip("Z")


def naive_utc(moment):
    """An aware datetime as the naive UTC value a DATETIME(6) column holds."""
    from datetime import timezone

    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _errno(exc):
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


# ER_RECORD_FILE_FULL ("The table is full": the tablespace cannot grow), ER_DISK_FULL
DISK_FULL_CODES = (1114, 1021)


def translate(exc):
    """The taskq error for a driver error, or None when it is a bug (a 500)."""
    code = _errno(exc)
    if code in DISK_FULL_CODES:
        return DiskFull()
    if code in SCHEMA_MISSING_CODES:
        return SchemaMissing()
    if code == 2013 and "timed out" in str(exc):  # read_timeout / write_timeout ran out
        return Unavailable("Database did not answer in time; try again shortly")
    if code in UNAVAILABLE_CODES or isinstance(exc, pymysql.err.InterfaceError):
        return Unavailable()
    if code in RETRY_CODES:
        return Unavailable("Database busy: the request kept meeting lock conflicts")
    return None


def parse_server_version(info):
    """('MariaDB' or 'MySQL', (major, minor, patch)) from the handshake's version string."""
    if info.startswith("5.5.5-"):  # MariaDB 10.x's prefix for old clients
        info = info[len("5.5.5-"):]
    flavour = "MariaDB" if "mariadb" in info.lower() else "MySQL"
    numbers = []
    for part in info.split("-", 1)[0].split(".")[:3]:
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        numbers.append(int(digits or 0))
    while len(numbers) < 3:
        numbers.append(0)
    return flavour, tuple(numbers)


def supports_skip_locked(flavour, version):
    return version >= ((10, 6, 0) if flavour == "MariaDB" else (8, 0, 1))


# Where MySQL, MariaDB and PHP look for the server's socket when the host is
# `localhost` (MYSQL_UNIX_PORT first, as the mysql client does); php.ini's
# pdo_mysql.default_socket / mysqli.default_socket are read only when none of
# these exists, so the common case costs a few stat calls per request.
SOCKET_PATHS = ("/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock", "/tmp/mysql.sock",
                "/var/lib/mysql/mysql.sock", "/tmp/mysqld.sock", "/var/mysql/mysql.sock")
PHP_INI_GLOBS = ("/etc/php.ini", "/usr/local/etc/php.ini", "/usr/local/lib/php.ini",
                 "/etc/php/*/cgi/php.ini", "/etc/php/*/cli/php.ini", "/etc/php/*/apache2/php.ini",
                 "/etc/php/*/fpm/php.ini", "/opt/alt/php*/etc/php.ini",
                 "/usr/local/php*/lib/php.ini", "/opt/cpanel/ea-php*/root/etc/php.ini")
PHP_SOCKET_KEYS = ("pdo_mysql.default_socket", "mysqli.default_socket", "mysql.default_socket")
DEFAULT_PORT = 3306
FALLBACK_CODES = frozenset((2002, 2003))  # nobody answers there: try the next way


def _is_socket(path):
    import stat

    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def php_ini_sockets(globs=None):
    """Socket paths named in readable php.ini files (PHP's own default socket)."""
    import glob

    found = []
    for pattern in PHP_INI_GLOBS if globs is None else globs:
        for path in sorted(glob.glob(pattern)):
            try:
                with open(path, encoding="utf-8", errors="replace") as handle:
                    lines = handle.read().splitlines()
            except OSError:
                continue
            for line in lines:
                key, sep, value = line.partition("=")
                if sep and key.strip() in PHP_SOCKET_KEYS:
                    value = value.split(";", 1)[0].strip().strip("\"'")
                    if value and value not in found:
                        found.append(value)
    return found


def socket_candidates(paths=None, globs=None):
    """The sockets `localhost` may mean, in the order they are tried: existing ones only."""
    listed = [os.environ.get("MYSQL_UNIX_PORT", "")] + list(SOCKET_PATHS if paths is None else paths)
    found = [path for path in listed if path and _is_socket(path)]
    if not found:
        found = [path for path in php_ini_sockets(globs) if _is_socket(path)]
    return list(dict.fromkeys(found))


def connection_routes(db):
    """[(label, pymysql arguments)] to try in order for the [database] settings.

    `localhost` means the server's Unix socket, as for the mysql client and
    PHP: an account made as user@localhost is then matched even where the
    server skips name resolution (a TCP connection from 127.0.0.1 is not
    'localhost' there). TCP to 127.0.0.1 is the fallback. With a port other
    than 3306 it is TCP only: a socket found in the usual places belongs to
    the server on the default port, and a config naming another port means
    another server.
    """
    if db["unix_socket"]:
        return [("socket " + db["unix_socket"], {"unix_socket": db["unix_socket"]})]
    if db["host"] == "localhost":
        routes = []
        if db["port"] == DEFAULT_PORT:
            routes = [("socket " + path, {"unix_socket": path}) for path in socket_candidates()]
        return routes + [("TCP 127.0.0.1:%d" % db["port"], {"host": "127.0.0.1", "port": db["port"]})]
    return [("TCP %s:%d" % (db["host"], db["port"]), {"host": db["host"], "port": db["port"]})]


def connect(db, **extra):
    """A PyMySQL connection over the first route that answers.

    A route nobody answers on (2002/2003) passes to the next; any other error
    (access denied, unknown database) is the server's answer and ends the
    search. The error raised carries `tried`: [(label, reason)] per route.
    """
    tried = []
    routes = connection_routes(db)
    for index, (label, route) in enumerate(routes):
        try:
            return pymysql.connect(
                user=db["user"], password=db["password"], database=db["name"],
                connect_timeout=db["connect_timeout"], read_timeout=db["read_timeout"],
                write_timeout=db["write_timeout"], **dict(extra, **route))
        except pymysql.err.MySQLError as exc:
            tried.append((label, str(exc.args[1]) if len(exc.args) > 1 else str(exc)))
            if _errno(exc) in FALLBACK_CODES and index + 1 < len(routes):
                continue
            exc.tried = tried
            raise
    raise AssertionError("unreachable")


def _placeholders(values):
    return ", ".join(["%s"] * len(values))


def _match(filters, where, params):
    """The WHERE terms of a task filter ({type, error_contains, older_than_seconds,
    newer_than_seconds}) that lists and bulk steering share."""
    pattern = filters.get("type")
    if pattern:
        where.append("type = %s" if like_escape_free(pattern) else "type LIKE %s")
        params.append(pattern)
    if filters.get("error_contains"):
        where.append("LOCATE(%s, error_message) > 0")  # the column's _ci collation: any case
        params.append(filters["error_contains"])
    if filters.get("older_than_seconds") is not None:
        where.append("created_at <= UTC_TIMESTAMP(6) - INTERVAL %s SECOND")
        params.append(filters["older_than_seconds"])
    if filters.get("newer_than_seconds") is not None:
        where.append("created_at >= UTC_TIMESTAMP(6) - INTERVAL %s SECOND")
        params.append(filters["newer_than_seconds"])


class MySQLStore(DependencyRules, Store):
    backend = "mysql"

    def __init__(self, config, check_schema=True):
        super().__init__(config)
        db = config.database
        ssl = None
        if config.mysql_ssl_enabled():
            enable_tls()
            if db["ssl_ca"]:
                ssl = {"ca": db["ssl_ca"]}
            else:
                import ssl as ssl_module

                ssl = ssl_module.create_default_context()
        cluster = db["cluster"]
        # the session setup asks about the schema (and wsrep_on) in passing
        flags = CLIENT.FOUND_ROWS | CLIENT.MULTI_STATEMENTS
        try:
            self.conn = connect(db, charset="utf8mb4", autocommit=True, client_flag=flags,
                                ssl=ssl, ssl_disabled=ssl is None)
            self.flavour, self.version = parse_server_version(self.conn.get_server_info())
            self.cluster, schema = self._setup_session(cluster, check_schema)
            self._schema = schema[0] if schema else None
            if check_schema:
                self.check_schema(*schema)
        except pymysql.err.MySQLError as exc:
            # the log line names the routes tried (exc.tried); the answer does not
            if getattr(self, "conn", None) is not None:
                self.close()
            raise (translate(exc) or Unavailable()) from exc
        except (SchemaNewer, SchemaPending):
            self.close()
            raise
        self._max_packet = None
        self._slot = self.conn.thread_id() % COUNTER_SLOTS
        setting = db["skip_locked"]
        # auto and on: SKIP LOCKED wherever the server has it. With 8 claiming
        # processes (bench/claim_scaling.py, docs/performance.md) it claimed
        # 30-43% more than the portable path, which has to take turns.
        self.skip_locked = setting != "off" and supports_skip_locked(self.flavour, self.version)

    def _setup_session(self, setting, check_schema=True):
        """READ COMMITTED for the session; returns (whether this is a cluster
        node, (newest schema version, versions recorded) or None).

        With `auto` on MariaDB, @@wsrep_on and then the schema question ride
        in the same packet as the SET, so neither costs a round trip; MySQL has
        no wsrep_on (Percona XtraDB Cluster: say galera). On a cluster node,
        reads then wait until the node has applied what the cluster committed
        before they started (wsrep_sync_wait), so a task claimed through one
        node is seen claimed through any other.
        """
        detect = setting == "auto" and self.flavour == "MariaDB"
        parts = [Q["session_setup"]]
        if detect:
            parts.append(Q["wsrep_on"])
        if check_schema:
            parts.append(Q["schema_check"])
        cursor = self.conn.cursor()
        cursor.execute(";\n".join(parts))
        cluster = setting == "galera"
        stopped = False  # an error ends the packet: what follows it did not run
        if detect:
            try:
                cursor.nextset()
                cluster = bool(int(cursor.fetchone()[0]))
            except pymysql.err.MySQLError as exc:
                if _errno(exc) != UNKNOWN_VARIABLE:  # a build without wsrep
                    raise
                cluster, stopped = False, True
        schema, missing = None, False
        if check_schema:
            try:
                if stopped:
                    cursor.execute(Q["schema_check"])
                else:
                    cursor.nextset()
                newest, recorded = cursor.fetchone()
                schema = (int(newest or 0), int(recorded or 0))
            except pymysql.err.MySQLError as exc:
                if not (cluster and _errno(exc) in SCHEMA_MISSING_CODES):
                    raise
                missing = True  # asked again below, once this node has caught up
        if cluster:
            cursor.execute(Q["session_setup_cluster"])
            if missing or (schema is not None and schema != (SCHEMA_VERSION, SCHEMA_VERSION)):
                # asked before the wait was on: tables or a migration just
                # committed through another node may not be applied here yet
                cursor.execute(Q["schema_check"])
                newest, recorded = cursor.fetchone()
                schema = (int(newest or 0), int(recorded or 0))
        return cluster, schema

    def check_schema(self, newest, recorded):
        """Refuse a database this release does not speak, before any statement:
        a newer one (an older upload over it) names the release to upload; an
        older one (the upgrade step not run yet) names the pending migrations."""
        if newest > SCHEMA_VERSION:
            row = self._exec("schema_needs_release", (newest,)).fetchone()
            raise SchemaNewer(newest, SCHEMA_VERSION, row[0] if row else None)
        if newest < SCHEMA_VERSION or recorded < SCHEMA_VERSION:
            from ..migrate import pending_names, recorded_versions

            raise SchemaPending(newest, SCHEMA_VERSION, pending_names(
                recorded=recorded_versions(self.conn)))

    # -- plumbing ------------------------------------------------------
    def close(self):
        try:
            self.conn.close()
        except pymysql.err.Error:
            pass  # already gone; nothing is left to release

    def _cursor(self, name, params, fmt):
        sql = Q[name].format(**fmt) if fmt else Q[name]
        cursor = self.conn.cursor()
        cursor.execute(sql, params)
        return cursor

    def _exec(self, name, params=(), **fmt):
        """Run one statement; returns the cursor (rowcount = matched rows, lastrowid)."""
        return self._cursor(name, params, fmt)

    def _exec_many(self, statements):
        """Run [(sql, params)] in one round trip (the session has
        MULTI_STATEMENTS on), one after the other; their matched-row counts."""
        if not statements:
            return []
        cursor = self.conn.cursor()
        cursor.execute(";\n".join(cursor.mogrify(sql, params) for sql, params in statements))
        counts = [cursor.rowcount]
        while cursor.nextset():
            counts.append(cursor.rowcount)
        return counts

    def _all(self, name, params=(), **fmt):
        cursor = self._cursor(name, params, fmt)
        columns = [col[0] for col in cursor.description]
        rows = []
        for values in cursor.fetchall():
            row = dict(zip(columns, values))
            for key in TIME_FIELDS:
                if key in row:
                    row[key] = iso(row[key])
            rows.append(row)
        return rows

    def _one(self, name, params=(), **fmt):
        rows = self._all(name, params, **fmt)
        return rows[0] if rows else None

    def _read(self, work):
        """A read (or one autocommit write) outside any transaction, with driver
        errors translated; rerun on a conflict, which rolled back the statement
        (on a cluster the server no longer reruns it: session_setup_cluster)."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                return work()
            except pymysql.err.MySQLError as exc:
                if _errno(exc) in RETRY_CODES and attempt < TRANSACTION_ATTEMPTS:
                    continue
                translated = translate(exc)
                if translated is None:
                    raise
                raise translated from exc
        raise AssertionError("unreachable")

    def _transaction(self, work):
        """Run work() between BEGIN and COMMIT; rerun it on deadlock or lock-wait timeout.

        On a cluster 1213 is also a certification failure, raised by COMMIT
        or by any statement after another node's write won: either way the
        whole transaction was rolled back on every node, so running it again
        is safe. A lost connection (2013) is not retried: the COMMIT may have
        gone through.
        """
        attempts = CLUSTER_ATTEMPTS if self.cluster else TRANSACTION_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                self.conn.begin()
                result = work()
                self.conn.commit()
                return result
            except pymysql.err.MySQLError as exc:
                self._rollback()
                if _errno(exc) in RETRY_CODES and attempt < attempts:
                    # the other transaction needs a moment to finish; jitter
                    # keeps the retries of several losers apart
                    import random

                    time.sleep(random.uniform(0.002, 0.02) * attempt)
                    continue
                translated = translate(exc)
                if translated is None:
                    raise
                raise translated from exc
            except BaseException:
                self._rollback()
                raise
        raise AssertionError("unreachable")

    def _rollback(self):
        try:
            self.conn.rollback()
        except pymysql.err.Error:
            pass  # the connection is gone, and the transaction with it

    def _check_packet(self, texts):
        """413 when one statement would carry more than the server accepts."""
        size = sum(len(text) for text in texts if text)
        if size <= PACKET_CHECK_BYTES // 4:  # at most 4 bytes a character
            return
        size = sum(len(text.encode("utf-8")) for text in texts if text)
        if size <= PACKET_CHECK_BYTES:
            return
        if self._max_packet is None:
            cursor = self.conn.cursor()
            self._read(lambda: cursor.execute("SELECT @@max_allowed_packet"))
            self._max_packet = int(cursor.fetchone()[0])
        limit = self._max_packet
        if size + PACKET_OVERHEAD > limit:
            raise PayloadTooLarge("Payload of %d bytes exceeds what the database accepts "
                                  "(max_allowed_packet = %d bytes)" % (size, limit))

    # the hooks of DependencyRules
    _mark = "%s"
    _dep_integrity = pymysql.err.IntegrityError

    def _dq(self, name, params=(), **fmt):
        return self._cursor(name, params, fmt)

    def _dq_many(self, name, rows):
        self.conn.cursor().executemany(Q[name], rows)

    def _dep_now(self):
        return self._exec("db_now", ()).fetchone()[0]

    def _dep_events(self, events, now):
        self._events(events)

    def _dep_read(self, work):
        return self._read(work)

    def _events(self, events):
        """Write history events [(task_id, event, worker_id, message)]."""
        for sql, params in self._event_statements(events):
            self.conn.cursor().execute(sql, params)

    def _event_statements(self, events):
        """[(sql, params)] inserting history events, many per statement.

        A statement carries at most about PACKET_CHECK_BYTES of messages, so a
        batch of long error texts stays under max_allowed_packet.
        """
        if not self.history_enabled or not events:
            return []
        head, _, values = Q["insert_event"].rpartition("VALUES")
        row = values.strip()
        statements = []
        start, size = 0, 0
        for end, event in enumerate(events, 1):
            size += len(event[3] or "")
            if end == len(events) or size + len(events[end][3] or "") > PACKET_CHECK_BYTES // 4:
                chunk = events[start:end]
                statements.append((head + "VALUES " + ", ".join([row] * len(chunk)),
                                   [value for item in chunk for value in item]))
                start, size = end, 0
        return statements

    # -- lifecycle -----------------------------------------------------
    def ping(self):
        self._read(lambda: self._exec("ping").fetchall())

    def alive(self):
        try:
            self.conn.ping(reconnect=False)  # COM_PING: one round trip, no statement
        except (pymysql.err.Error, OSError):
            return False
        return True

    def server_info(self):
        return "%s %d.%d.%d" % ((self.flavour,) + self.version)

    def clock(self):
        return self._read(lambda: iso(self._exec("db_now", ()).fetchone()[0]))

    # -- task types ----------------------------------------------------
    def register_type(self, name, version, param_schema_json, max_attempts, claim_timeout,
                      is_active=True, retry=None, may_change=True):
        definition = (version, param_schema_json, max_attempts, claim_timeout, is_active, retry)

        def unchanged(existing):
            changed = type_changes(existing, *definition)
            if changed:
                raise refuse_type_change(name, changed)
            return existing, False

        def work():
            if may_change:
                created = self._exec("upsert_type", (name, version, param_schema_json,
                                                     int(is_active), max_attempts,
                                                     claim_timeout)).rowcount == 1
            else:
                existing = self._one("get_type_locked", (name,))
                if existing is not None:
                    return unchanged(existing)
                try:  # a plain INSERT: a type made meanwhile is compared, never overwritten
                    self._exec("insert_type", (name, version, param_schema_json, int(is_active),
                                               max_attempts, claim_timeout))
                except pymysql.err.IntegrityError as exc:
                    if _errno(exc) != DUPLICATE_KEY:
                        raise
                    return unchanged(self._one("get_type_locked", (name,)))
                created = True
            row = self._one("get_type", (name,))
            if retry is not None:
                self._exec("set_type_retry", tuple(retry[k] for k in RETRY_FIELDS) + (row["id"],))
                row.update(retry)
            return row, created

        return self._transaction(work)

    def get_type(self, name):
        return self._read(lambda: self._one("get_type", (name,)))

    def list_types(self, active_only):
        return self._read(lambda: self._all("list_active_types" if active_only else "list_types"))

    # -- tasks ---------------------------------------------------------
    def create_tasks(self, items):
        for item in items:
            self._check_packet((item["params_json"],))

        return self._transaction(lambda: self._insert_tasks(items))

    def _insert_tasks(self, items):
        """create_tasks' work (and a schedule's occurrences), inside the caller's
        transaction; counts the new tasks (task_counts, the types' usage_count)
        and answers them in full, as GET /tasks/{id} shows them."""
        usage = {}
        for item in items:
            usage[item["type_id"]] = usage.get(item["type_id"], 0) + 1
        out, events, changes = [], [], []
        for type_id in sorted(usage):
            self._exec("count_type_usage", (usage[type_id], type_id))
        now = None
        if any(item.get("run_at") is not None or item.get("delay_seconds") for item in items):
            now = self._exec("db_now", ()).fetchone()[0]
        made = []  # each item's task id (None: refused), for the later items' depends_on_items
        for item in items:
            run_at = _run_at(item, now)
            status = "scheduled" if run_at is not None and run_at > now else "pending"
            plan = None
            if item.get("depends_on") or item.get("depends_on_items"):
                plan = self._plan_children(item, made)
                if not isinstance(plan, tuple):  # a BadRequest: this item is refused
                    out.append((plan, None))
                    made.append(None)
                    continue
                status = plan[0] or status
            try:
                cursor = self._exec("insert_task", (
                    item["type_id"], item["type"], status, item["params_json"],
                    item["dedupe_key"], item["priority"], -item["priority"],
                    item["max_attempts"], item["claim_timeout"], run_at,
                    item.get("dedupe_scope", "always"), plan[1] if plan else 0,
                    item.get("on_parent_failure") or "cancel"))
            except pymysql.err.IntegrityError as exc:
                if _errno(exc) != DUPLICATE_KEY:
                    raise
                # the unique index said "exists": InnoDB undid only this
                # statement, and the winner's row is committed (we waited for it)
                out.append((self._one("task_by_dedupe_key", (item["dedupe_key"],)), True))
                made.append(out[-1][0]["id"])
                continue
            task_id = cursor.lastrowid
            changes.append((item["type"], None, status))
            events.append((task_id, "created", None, None))
            if plan is not None:
                if plan[0] == "cancelled":  # its 'cancelled' event comes after 'created'
                    self._events(events)
                    del events[:]
                self._link_child(task_id, plan, self._dep_now())
            out.append((task_id, False))
            made.append(task_id)
        self._tally(changes, events=events)
        duplicates = {}
        for item, entry in zip(items, out):
            if entry[1] is not False:  # deduplicated or refused: not a use
                duplicates[item["type_id"]] = duplicates.get(item["type_id"], 0) + 1
        for type_id in sorted(duplicates):  # usage counts created tasks only
            self._exec("count_type_usage", (-duplicates[type_id], type_id))
        # the new tasks as GET /tasks/{id} shows them, read in one statement
        new_ids = [entry[0] for entry in out if entry[1] is False]
        rows = {}
        if new_ids:
            rows = {row["id"]: row for row in self._all("get_tasks", new_ids,
                                                        ids=_placeholders(new_ids))}
        return [entry[0] if entry[1] is None else entry if entry[1] else (rows[entry[0]], False)
                for entry in out]

    def _policies(self, ids):
        """{task_id: its type's retry settings} for tasks about to be retried."""
        if not ids:
            return {}
        cursor = self._exec("retry_policies", tuple(ids), ids=_placeholders(ids))
        return {row[0]: dict(zip(RETRY_FIELDS, row[1:])) for row in cursor.fetchall()}

    def _promote_due(self):
        """'scheduled' tasks whose run_at has come join the pending queue;
        returns their counter changes for _tally.

        The locking reads hold the rows, so one UPDATE promotes all of them.
        The cluster read takes no locks: a claim on this node may promote a
        row first, so each row is promoted by itself and counted only when
        its UPDATE matched."""
        query = "due_tasks_skip_locked" if self.skip_locked else "due_tasks"
        if self.cluster:  # locks hold nothing back on the other nodes (see _pick_cluster)
            query = "due_tasks_cluster"
        due = self._exec(query, (PROMOTE_BATCH,)).fetchall()
        if not due:
            return []
        if self.cluster:
            due = [(task_id, task_type) for task_id, task_type in due
                   if self._exec("promote_due", (task_id,), ids="%s").rowcount == 1]
        else:
            ids = [row[0] for row in due]
            self._exec("promote_due", tuple(ids), ids=_placeholders(ids))
        return [(task_type, "scheduled", "pending") for _, task_type in due]

    def _expire_leases(self):
        """Release or fail tasks whose lease ran out: no reaper runs between requests.

        The read takes no locks; each write repeats the condition, so when two
        claimers see the same expired lease only one of them acts on it.
        """
        events, changes, runs = [], [], []
        expired = self._exec("expired_leases", (EXPIRE_BATCH,)).fetchall()
        policies = self._policies([row[0] for row in expired if row[1] < row[2]])
        for task_id, attempts, max_attempts, task_type in expired:
            delay = retry_delay(policies.get(task_id), attempts) if attempts < max_attempts else 0
            if delay:
                if self._exec("release_expired_later", (delay, task_id)).rowcount == 1:
                    events.append((task_id, "lease_expired", None, "retry in %d s" % delay))
                    changes.append((task_type, "claimed", "scheduled"))
                    runs.append((task_type, "retry", None))
            elif attempts < max_attempts:
                if self._exec("release_expired", (task_id,)).rowcount == 1:
                    events.append((task_id, "lease_expired", None, "returned to pending"))
                    changes.append((task_type, "claimed", "pending"))
                    runs.append((task_type, "retry", None))
            else:
                message = expired_message(attempts)
                if self._exec("fail_expired", (message, task_id)).rowcount == 1:
                    events.append((task_id, "lease_expired", None, message))
                    events.append((task_id, "failed", None, message))
                    changes.append((task_type, "claimed", "failed"))
                    runs.append((task_type, "failed", None))
                    self._settle_children([(task_id, "failed")], changes)
        return events, changes, runs

    def _type_ids(self, type_pattern):
        return [row[0] for row in self._exec("types_like", (type_pattern,)).fetchall()]

    def _pick(self, worker_id, type_pattern, limit, lease_seconds, task_type_id=None,
              order=DEFAULT_ORDER):
        """Claim up to `limit` tasks; returns their ids in claim order."""
        lease = (lease_seconds, self.queue["claim_timeout"])
        fmt = CLAIM_ORDERS[order]
        type_ids = pick_type_ids(None if type_pattern is None else self._type_ids(type_pattern),
                                 task_type_id)
        if type_ids is not None and not type_ids:
            return []
        if type_ids is not None and len(type_ids) > 1:
            return self._pick_among_types(worker_id, type_ids, limit, lease, fmt=fmt,
                                          descending=order[1])
        type_id = type_ids[0] if type_ids else None
        if limit == 1 and not self.skip_locked and "group" not in fmt:
            cursor = self._claim_head(worker_id, type_id, lease, fmt)
            return [cursor.lastrowid] if cursor.rowcount == 1 else []
        return self._claim_locked(worker_id, self._lock_heads(type_id, limit, fmt), lease)

    def _lock_heads(self, type_id, count, fmt=CLAIM_ORDERS[DEFAULT_ORDER]):
        """Lock the first `count` pending tasks (of one type, or of all); their ids.

        SKIP LOCKED passes over rows other claimers hold; the portable
        statement waits for them, and only runs while this claim has the turn.
        """
        if "group" in fmt:
            return [task_id for task_id, _ in self._group_heads(type_id, count, fmt, lock=True)]
        query = "lock_next" if self.skip_locked else "lock_head"
        if type_id is None:
            cursor = self._exec(query, (count,), **fmt)
        else:
            cursor = self._exec(query + "_of_type", (type_id, count), **fmt)
        return [row[0] for row in cursor.fetchall()]

    def _claim_head(self, worker_id, type_id, lease, fmt=CLAIM_ORDERS[DEFAULT_ORDER]):
        """The portable claim: one UPDATE takes the head of the queue (or of one type)."""
        if type_id is None:
            return self._exec("claim_next", (worker_id,) + lease, **fmt)
        return self._exec("claim_next_of_type", (worker_id,) + lease + (type_id,), **fmt)

    def _group_heads(self, type_id, count, fmt, lock):
        """Up to `count` (id, sort value) of a stepped order: group by group, oldest first.

        Each step is two index dives (the next group's value, then its rows), so
        the cost grows with the groups a claim spans, never with the queue."""
        suffix, head = ("", ()) if type_id is None else ("_of_type", (type_id,))
        locking = (" FOR UPDATE SKIP LOCKED" if self.skip_locked else " FOR UPDATE") if lock else ""
        out, bound = [], fmt["start"]
        while len(out) < count:
            row = self._exec("group_top" + suffix, head + (bound,), **fmt).fetchone()
            if row is None:
                break
            bound = row[0]
            rows = self._exec("group_rows" + suffix, head + (bound, count - len(out)),
                              lock=locking, **fmt).fetchall()
            out.extend((task_id, fmt["sign"] * bound) for task_id, in rows)
        return out

    def _take_head(self, worker_id, type_id, lease, fmt):
        """The portable claim of one type's head; its id or None."""
        if "group" in fmt:
            ids = self._claim_locked(worker_id, self._lock_heads(type_id, 1, fmt), lease)
            return ids[0] if ids else None
        cursor = self._claim_head(worker_id, type_id, lease, fmt)
        return cursor.lastrowid if cursor.rowcount == 1 else None

    def _claim_locked(self, worker_id, ids, lease):
        if ids:
            self._exec("claim_locked", (worker_id,) + lease + tuple(ids), ids=_placeholders(ids))
        return ids

    def _pick_among_types(self, worker_id, type_ids, limit, lease, caps=None,
                          fmt=CLAIM_ORDERS[DEFAULT_ORDER], descending=True):
        """Several types match: read each type's head(s) without locking, merge
        them into claim order, then take from each type as many as it earned.

        Claiming through the type's own head (rather than a candidate's id)
        means a candidate lost to a racing claimer is replaced by that type's
        next task instead of leaving this claim empty-handed.
        """
        ids = []
        caps = dict(caps or {})  # type_id -> how many more it may give (None: no limit)
        for _ in range(PATTERN_ROUNDS):
            need = limit - len(ids)
            type_ids = [t for t in type_ids if caps.get(t) is None or caps[t] > 0]
            if not type_ids:
                break
            counts = [(type_id, need if caps.get(type_id) is None else min(need, caps[type_id]))
                      for type_id in type_ids]
            if "group" in fmt:
                found = [(task_id, value, type_id) for type_id, count in counts
                         for task_id, value in self._group_heads(type_id, count, fmt, lock=False)]
            else:
                union = " UNION ALL ".join([Q["head_of_type"].format(**fmt)] * len(type_ids))
                params = [value for pair in counts for value in pair]
                cursor = self.conn.cursor()
                cursor.execute(union, params)
                found = [(row[0], row[1], row[2]) for row in cursor.fetchall()]
            heads = order_candidates(found, need, descending)
            if not heads:
                break
            wanted = {}
            for _, _, type_id in heads:
                wanted[type_id] = wanted.get(type_id, 0) + 1
            if self.skip_locked:
                for _, _, type_id in heads:
                    count = wanted.pop(type_id, 0)
                    if count:
                        got = self._claim_locked(worker_id, self._lock_heads(type_id, count, fmt),
                                                 lease)
                        ids.extend(got)
                        if caps.get(type_id) is not None:
                            caps[type_id] -= len(got)
            else:
                emptied = set()
                for _, _, type_id in heads:
                    if type_id in emptied:
                        continue
                    if caps.get(type_id) is not None and caps[type_id] <= 0:
                        continue
                    task_id = self._take_head(worker_id, type_id, lease, fmt)
                    if task_id is not None:
                        ids.append(task_id)
                        if caps.get(type_id) is not None:
                            caps[type_id] -= 1
                    else:
                        emptied.add(type_id)
            if len(ids) >= limit or len(heads) < need:
                break
        return ids

    def _pick_cluster(self, worker_id, type_pattern, limit, lease_seconds, caps=None,
                      task_type_id=None):
        """The claim on a multi-primary cluster; returns the claimed ids.

        Locking reads hold nothing back on the other nodes and only make
        every claimer of the head conflict at COMMIT, so: a plain read of the
        first CLUSTER_WINDOW candidates, a random order within each priority
        (spread_candidates), and one conditional UPDATE per task until
        `limit` are ours. A row another claimer on this node took fails its
        condition and the next candidate is tried; one taken on another node
        fails certification at COMMIT (1213), and _transaction runs the
        claim again on fresh candidates.

        caps: {type_id: how many more it may take, None = no limit}
        (claim_caps) when some types are paused or limited; candidates are
        then read per type and a type stops at its cap.
        """
        lease = (lease_seconds, self.queue["claim_timeout"])
        if caps is not None:
            type_ids = list(caps)
        elif type_pattern is not None:
            type_ids = self._type_ids(type_pattern)
        else:
            type_ids = None
        if caps is None:  # (with caps, the claim narrowed the types before counting)
            type_ids = pick_type_ids(type_ids, task_type_id)
        if type_ids == []:
            return []
        window = min(CLUSTER_WINDOW * limit, CLUSTER_WINDOW_MAX)
        rows = self._cluster_candidates(type_ids, window)
        type_of = {row[0]: row[2] for row in rows}
        ids, taken = [], {}
        salt = int.from_bytes(os.urandom(4), "big")
        for task_id in spread_candidates(rows, salt):
            type_id = type_of[task_id]
            cap = caps.get(type_id) if caps else None
            if cap is not None and taken.get(type_id, 0) >= cap:
                continue
            if self._exec("claim_task", (worker_id,) + lease + (task_id,)).rowcount == 1:
                ids.append(task_id)
                taken[type_id] = taken.get(type_id, 0) + 1
                if len(ids) == limit:
                    break
        return ids

    def _replicate_type_turns(self, type_ids):
        """Make this claim's turn on limited types conflict with other nodes'.

        _take_type_turns' locking read holds back claims on this node only;
        rewriting the turn rows puts them in this transaction's write set,
        so two nodes claiming a limited type at once fail certification and
        the loser counts the live leases again: max_concurrency holds
        across the cluster."""
        names = ["type:%d" % t for t in sorted(type_ids)]
        self._exec("drop_type_turns", names, names=_placeholders(names))
        self._exec("put_type_turns", names, rows=", ".join(["(%s)"] * len(names)))

    def _cluster_candidates(self, type_ids, count):
        """The first `count` pending tasks [(id, priority, type_id or None)] in
        claim order, read without locks."""
        if type_ids is None:
            return [(row[0], row[1], None)
                    for row in self._exec("cluster_candidates", (count,)).fetchall()]
        if len(type_ids) == 1:
            return [(row[0], row[1], type_ids[0]) for row in self._exec(
                "cluster_candidates_of_type", (type_ids[0], count)).fetchall()]
        union = " UNION ALL ".join([Q["head_of_type"].format(**CLAIM_ORDERS[DEFAULT_ORDER])]
                                   * len(type_ids))
        cursor = self.conn.cursor()
        cursor.execute(union, [value for type_id in type_ids for value in (type_id, count)])
        return order_candidates(cursor.fetchall(), count)

    def claim(self, worker_id, type_pattern=None, limit=1, lease_seconds=None, request_key=None,
              task_type_id=None, order=DEFAULT_ORDER):
        if type_pattern is not None and not type_pattern.isascii():
            return []  # type names are ASCII: nothing can match
        column, descending = order
        sign = -1 if descending else 1

        def work():
            if not self.skip_locked and not self.cluster:
                self._exec("claim_turn", ())
            if request_key is not None:
                ids = [row[0] for row in self._exec("claimed_with_key",
                                                    (request_key, worker_id)).fetchall()]
                if ids:  # a repeated claim: the same tasks, nothing new claimed
                    return sorted(self._all("get_tasks", ids, ids=_placeholders(ids)),
                                  key=lambda row: (-row["priority"], row["id"]))
                if self._exec("answered_empty", (worker_id, request_key)).fetchall():
                    return []  # its resend was answered empty: this late first claim too
            restricted = self._restricted_types()
            if restricted:  # type turn rows: after claim_turn, before any task row
                type_ids, limited = self._take_type_turns(type_pattern, restricted)
            promoted = self._promote_due()
            events, changes, runs = self._expire_leases()
            changes.extend(promoted)
            if self.cluster:
                caps = None
                if restricted:
                    type_ids = pick_type_ids(type_ids, task_type_id)
                    if limited:
                        self._replicate_type_turns(limited)
                    caps = claim_caps(type_ids, restricted, self._live_leases(limited))
                ids = self._pick_cluster(worker_id, type_pattern, limit, lease_seconds, caps,
                                         task_type_id)
            elif restricted:
                type_ids = pick_type_ids(type_ids, task_type_id)
                ids = self._pick_capped(worker_id, claim_caps(type_ids, restricted,
                                                              self._live_leases(limited)),
                                        limit, lease_seconds, order)
            else:
                ids = self._pick(worker_id, type_pattern, limit, lease_seconds, task_type_id, order)
            if ids and request_key is not None:
                self._exec("mark_request_key", (request_key,) + tuple(ids), ids=_placeholders(ids))
            rows = []
            if request_key is not None:
                if not ids:
                    self._exec("remember_empty", (worker_id, request_key))
                    if os.urandom(1)[0] < 4:  # about one empty claim in 64
                        self._exec("forget_empty", (CLAIM_KEY_WINDOW,))
                elif stale_claim(self.started):
                    raise stale_claim(self.started)  # rolled back: nothing claimed
            if ids:
                # in claim order (the claim added 1 to every attempts alike)
                rows = sorted(self._all("get_tasks", ids, ids=_placeholders(ids)),
                              key=lambda row: (sign * row[column], row["id"]))
                events.extend((row["id"], "claimed", worker_id, None) for row in rows)
                changes.extend((row["type"], "pending", "claimed") for row in rows)
            self._tally(changes, runs, events=events)
            return rows

        if request_key is None or (not self.skip_locked and not self.cluster):
            return self._transaction(work)  # the portable path's turns already order repeats
        if not self._lock_request_key(worker_id, request_key):
            return self._transaction(work)
        try:
            return self._transaction(work)
        finally:
            try:
                self._exec("unlock_request_key", (worker_id, request_key))
            except pymysql.err.Error:
                pass  # the connection is gone, and its lock with it

    def _lock_request_key(self, worker_id, request_key):
        """Wait (bounded) for a claim with the same key still running on another
        connection; False where the server has no named locks (Galera refuses them)."""
        wait = max(1, self.config.database["read_timeout"] - 1)
        try:
            got = self._exec("lock_request_key", (worker_id, request_key, wait)).fetchone()[0]
        except pymysql.err.MySQLError as exc:
            if _errno(exc) == NOT_SUPPORTED:
                return False
            translated = translate(exc)
            if translated is None:
                raise
            raise translated from exc
        if got != 1:
            raise Unavailable("A claim with this request_key is still running; try again shortly")
        return True

    # -- concurrency limits and pause (a claim's restricted path) ----------
    def _restricted_types(self):
        """{type_id: (is_paused, max_concurrency)} of paused or limited types; a plain read."""
        return {row[0]: (row[1], row[2]) for row in self._exec("restricted_types").fetchall()}

    def _take_type_turns(self, type_pattern, restricted):
        """(the claim's type ids, its limited ones), after locking the limited
        types' turn rows so claims of a type count its leases one at a time.

        The portable path already takes turns on the 'claim' row; it locks
        these too so web servers configured differently (skip_locked on one,
        off on another) still keep the limit. Always 'claim' first, then the
        type rows in name order, then tasks: no two claims wait on each other
        in opposite orders."""
        if type_pattern is None:
            type_ids = [row[0] for row in self._exec("all_type_ids").fetchall()]
        else:
            type_ids = self._type_ids(type_pattern)
        limited = [t for t in type_ids
                   if t in restricted and not restricted[t][0] and restricted[t][1] is not None]
        if limited:
            names = ["type:%d" % t for t in sorted(limited)]
            locked = self._exec("type_turns", names, names=_placeholders(names)).fetchall()
            if len(locked) < len(names):  # a turn row went missing: make it, then lock it
                for name in names:
                    self._exec("add_type_turn", (name,))
                self._exec("type_turns", names, names=_placeholders(names))
        return type_ids, limited

    def _live_leases(self, type_ids):
        if not type_ids:
            return {}
        return dict(self._exec("live_leases", type_ids, ids=_placeholders(type_ids)).fetchall())

    def _pick_capped(self, worker_id, caps, limit, lease_seconds, order=DEFAULT_ORDER):
        """_pick over the types a claim may take, each at most its cap."""
        lease = (lease_seconds, self.queue["claim_timeout"])
        fmt = CLAIM_ORDERS[order]
        if len(caps) > 1:
            return self._pick_among_types(worker_id, list(caps), limit, lease, caps=caps, fmt=fmt,
                                          descending=order[1])
        if not caps:
            return []
        (type_id, cap), = caps.items()
        count = limit if cap is None else min(cap, limit)
        if count == 1 and not self.skip_locked and "group" not in fmt:
            cursor = self._claim_head(worker_id, type_id, lease, fmt)
            return [cursor.lastrowid] if cursor.rowcount == 1 else []
        return self._claim_locked(worker_id, self._lock_heads(type_id, count, fmt), lease)

    def _check_lease(self, task_id, worker_id):
        state = self._one("lease_state", (task_id,))
        self._check_state(task_id, worker_id, state)
        return state

    def _check_state(self, task_id, worker_id, state):
        check_lease(task_id, state, worker_id, bool(state and state["live"]),
                    lambda: self._claimed_before(task_id, worker_id, state["attempts"]))

    def _claimed_before(self, task_id, worker_id, attempts):
        if self.history_enabled:
            return bool(self._exec("worker_claimed_before", (task_id, worker_id)).fetchall())
        return attempts > 1

    def progress(self, task_id, worker_id, progress, message, lease_seconds=None):
        def work():
            self._check_lease(task_id, worker_id)
            self._exec("record_progress", (progress, message, lease_seconds,
                                           self.queue["claim_timeout"], task_id))
            note = "%d%%" % progress + (": " + message if message else "")
            self._events([(task_id, "progress", worker_id, note)])
            return self._one("get_task", (task_id,))

        return self._transaction(work)

    def complete_many(self, worker_id, items, retry_after=None):
        checked = []
        for task_id, success, result_json, error in items:
            try:
                self._check_packet((result_json, error))
                checked.append(None)
            except PayloadTooLarge as exc:
                checked.append(exc)

        def work():
            outcomes, events, changes, runs = list(checked), [], [], []
            ids = sorted({item[0] for item in items})
            states = {row["id"]: row for row in self._all("lease_states", ids,
                                                           ids=_placeholders(ids))}
            policies = self._policies(sorted({item[0] for item in items if not item[1]}))
            for index, (task_id, success, result_json, error) in enumerate(items):
                if outcomes[index] is not None:
                    continue
                try:
                    outcomes[index] = self._finish(task_id, worker_id, success, result_json,
                                                   error, events, states, changes, runs,
                                                   policies, (retry_after or {}).get(task_id))
                except Exception as exc:
                    if not client_error(exc):
                        raise
                    outcomes[index] = exc
            self._tally(changes, runs, events=events)
            return outcomes

        return self._transaction(work)

    def _finish(self, task_id, worker_id, success, result_json, error, events, states,
                changes, runs, policies=None, requested=None):
        """One item of complete_many: check the lease, write; queue the event
        and the counter changes.

        states: the rows lease_states locked, updated here so a task named
        twice in one batch is completed once. requested: the worker's
        retry_after_seconds, None for the type's backoff.
        """
        state = states.get(task_id)
        if not holds_lease(state, worker_id, state and state["live"]):
            earlier = repeated_outcome(task_id, state, worker_id, success, result_json, error)
            if earlier is not None:
                return earlier
        self._check_state(task_id, worker_id, state)
        attempts = state["attempts"]
        delay = 0
        if not success and attempts < state["max_attempts"]:
            delay = retry_delay((policies or {}).get(task_id), attempts, requested)
        if not success and delay:
            self._exec("complete_retry_later", (delay, error, task_id))
            events.append((task_id, "retry", worker_id, error))
            changes.append((state["type"], "claimed", "scheduled"))
            runs.append((state["type"], "retry", state["run_ms"]))
            state["status"] = "scheduled"
            return {"id": task_id, "status": "scheduled", "attempts": attempts, "will_retry": True,
                    "retry_delay_seconds": delay}
        if success:
            self._exec("complete_success", (result_json, task_id))
            event, message, status, will_retry = "completed", None, "completed", False
            self._settle_children([(task_id, "completed")], changes)
        elif attempts < state["max_attempts"]:
            self._exec("complete_retry", (error, task_id))
            event, message, status, will_retry = "retry", error, "pending", True
        else:
            self._exec("complete_failure", (error, task_id))
            event, message, status, will_retry = "failed", error, "failed", False
            self._settle_children([(task_id, "failed")], changes)
        events.append((task_id, event, worker_id, message))
        changes.append((state["type"], "claimed", status))
        runs.append((state["type"], "retry" if will_retry else status, state["run_ms"]))
        state.update(status=status, finished_by=worker_id, finished_status=status,
                     finished_attempt=attempts, result_json=result_json if success else None,
                     error_message=None if success else error)
        return {"id": task_id, "status": status, "attempts": attempts, "will_retry": will_retry}

    def get_task(self, task_id):
        return self._read(lambda: self._one("get_task", (task_id,)))

    def task_history(self, task_id):
        def work():
            if not self._exec("task_exists", (task_id,)).fetchall():
                return None
            return [{"event": e["event"], "worker_id": e["worker_id"], "message": e["message"],
                     "at": e["created_at"]}
                    for e in self._all("task_history", (task_id,))]

        return self._read(work)

    def list_tasks(self, status, type_pattern, limit, offset, filters=None, order="id DESC"):
        if type_pattern and not type_pattern.isascii():
            return [], 0
        where, params = ["1 = 1"], []
        if status:
            where.append("status = %s")
            params.append(status)
        _match(dict(filters or {}, type=type_pattern), where, params)
        clause = " AND ".join(where)

        def work():
            rows = self._all("list_tasks", params + [limit, offset], where=clause, order=order)
            total = self._exec("count_tasks", params, where=clause).fetchone()[0]
            return rows, total

        return self._read(work)

    # -- type settings and steering ------------------------------------
    def update_type_settings(self, name, changes):
        def work():
            row = self._one("get_type", (name,))
            if row is None:
                return None
            row.update(changes)
            self._exec("update_type_settings", (row["max_concurrency"], int(row["is_paused"]),
                                                row["dedupe_scope"], row["id"]))
            if row["max_concurrency"] is not None:
                self._exec("add_type_turn", ("type:%d" % row["id"],))
            return self._one("get_type", (name,))

        return self._transaction(work)

    def steer(self, action, task_ids):
        return self._transaction(lambda: self._steer_ids(action, task_ids))

    def steer_matching(self, action, filters, limit):
        pattern = filters.get("type")
        if pattern and not pattern.isascii():
            return [], False
        where, params = self._steer_where(action, filters)

        def work():
            ids = [row[0] for row in self._exec("steer_select", params + [limit + 1], where=where)]
            ids, more = ids[:limit], len(ids) > limit
            return list(zip(ids, self._steer_ids(action, ids))), more

        return self._transaction(work)

    @staticmethod
    def _steer_where(action, filters):
        statuses = filters.get("statuses") or STEER_FROM[action]
        where, params = ["status IN (%s)" % _placeholders(statuses)], list(statuses)
        _match(filters, where, params)
        return " AND ".join(where), params

    def _steer_ids(self, action, task_ids):
        """Lock the tasks in id order, then act on each as its status allows."""
        states = {}
        ids = sorted(set(task_ids))
        if ids:
            states = {row["id"]: row for row in self._all("steer_states", ids, ids=_placeholders(ids))}
        events, outcomes, changes = [], [], []
        for task_id in task_ids:
            state = states.get(task_id)
            refusal = steer_refusal(action, task_id, state)
            if refusal is not None:
                outcomes.append(refusal)
                continue
            if action == "cancel":
                self._exec("cancel_task", (task_id,))
                status = "cancelled"
            elif action == "requeue":
                self._exec("requeue_task", (task_id,))
                status = "pending"
            else:
                key, statuses = steer_key(state), STEER_FROM[action]
                try:
                    self._exec("reset_task", (key, task_id, statuses[0], statuses[-1]))
                except pymysql.err.IntegrityError as exc:
                    if _errno(exc) != DUPLICATE_KEY:
                        raise
                    outcomes.append(dedupe_conflict(self._one("task_by_dedupe_key", (key,))))
                    continue
                status = "pending"
            event, message = steer_event(action, state)
            events.append((task_id, event, None, message))
            changes.append((state["type"], state["status"], status))
            if action == "cancel":
                self._settle_children([(task_id, "cancelled")], changes)
            elif action == "retry":
                status = self._retried(task_id, state["type"], changes)
            outcomes.append({"id": task_id, "previous_status": state["status"], "status": status})
            state["status"] = status
        self._tally(changes, events=events)
        return outcomes

    # -- counters (GET /stats) -------------------------------------------
    def _tally(self, changes, runs=(), events=()):
        """Apply status changes and finished runs to the counters, inside the
        caller's transaction, in key order (so two transactions never wait
        for each other's counter rows in opposite orders); the history events
        of the same changes ride in the same round trip, ahead of them."""
        self.finished += finished_count(changes)
        slot = self._slot
        counts = count_deltas(changes)
        # one slot for task_runs: a row is shared only by the attempts of one
        # type, outcome and run-time bucket in one 5-minute period, and GET
        # /stats reads up to a day of these rows, so slots would cost reads
        # (x8) more than they save in lock waits
        finished = run_deltas(runs) if runs else []
        written = self._event_statements(events)
        matched = self._exec_many(  # one round trip; a counter row missing is inserted after
            written
            + [(Q["count_update"], (delta, task_type, status, slot))
               for (task_type, status), delta in counts]
            + [(Q["run_update"], (count, total, task_type, outcome, bucket, 0))
               for (task_type, outcome, bucket), count, total in finished])[len(written):]
        for ((task_type, status), delta), found in zip(counts, matched):
            if found == 0:
                self._exec("count_insert", (task_type, status, slot, delta))
        for ((task_type, outcome, bucket), count, total), found in zip(finished,
                                                                       matched[len(counts):]):
            if found == 0:
                self._exec("run_insert", (task_type, outcome, bucket, 0, count, total))

    def stats(self, lease_limit=1000):
        def runs(since):
            return [(t, o, b, int(n), int(ms))
                    for t, o, b, n, ms in self._exec("stats_runs", (since,)).fetchall()]

        def work():
            period = int(self._exec("current_period").fetchone()[0])
            oldest = self._exec("stats_oldest_pending").fetchone()
            return {
                "counts": [(t, st, int(n)) for t, st, n in self._exec("stats_counts").fetchall()],
                "oldest_pending_seconds": None if oldest is None else max(0.0, float(oldest[0])),
                "runs_hour": runs(period - 3600 // PERIOD_SECONDS),
                "runs_day": runs(period - 86400 // PERIOD_SECONDS),
                "leases": [(w, int(n)) for w, n in self._exec("stats_leases", (lease_limit,)).fetchall()],
            }

        return self._read(work)

    # -- API keys --------------------------------------------------------
    def create_key(self, name, role, prefix, key_hash):
        def work():
            try:
                self._exec("insert_key", (name, role, prefix, key_hash))
            except pymysql.err.IntegrityError as exc:
                if _errno(exc) != DUPLICATE_KEY:
                    raise
                raise Conflict("An API key named %r exists; revoke it first or pick another name"
                               % name) from None
            return self._one("get_key", (name,))

        return self._transaction(work)

    def list_keys(self):
        return self._read(lambda: self._all("list_keys"))

    def revoke_key(self, name):
        return self._read(lambda: self._exec("delete_key", (name,)).rowcount == 1)

    def key_by_hash(self, key_hash):
        def work():
            row = self._exec("key_by_hash", (key_hash,)).fetchone()
            if row is None:
                return None
            key_id, name, role, stale = row
            if stale:
                self._exec("touch_key", (key_id,))  # autocommit: one short write a minute
            return {"id": key_id, "name": name, "role": role}

        return self._read(work)

    def has_keys(self):
        return self._read(lambda: bool(self._exec("any_key").fetchall()))

    # -- retention -------------------------------------------------------
    def purge(self, keep, history_keep, batch):
        def work():
            done = {}
            for status, seconds in sorted(keep.items()):
                if seconds:
                    done[status] = self._purge_tasks(status, seconds, batch)
            if history_keep:
                done["history"] = self._purge_history(history_keep, batch * HISTORY_BATCH_FACTOR)
            done["claim_requests"] = self._exec("purge_claim_requests", (
                CLAIM_KEY_WINDOW, batch * HISTORY_BATCH_FACTOR)).rowcount
            period = int(self._exec("current_period").fetchone()[0])
            bound = runs_purge_bound(self._exec("oldest_run_period").fetchone()[0],
                                     period - RUNS_KEEP_SECONDS // PERIOD_SECONDS)
            done["runs"] = 0 if bound is None else self._exec("purge_runs", (bound,)).rowcount
            return done

        return self._transaction(work)

    def backlog(self, keep, history_keep, cap=BACKLOG_CAP):
        def work():
            one = lambda name, params: int(self._exec(name, params).fetchone()[0])  # noqa: E731
            tasks = sum(one("backlog_tasks", (status, seconds, cap))
                        for status, seconds in sorted(keep.items()) if seconds)
            history = 0
            if history_keep:
                oldest = self._exec("oldest_history_is_old", (history_keep,)).fetchone()
                if oldest and oldest[0]:
                    history = one("backlog_history", (cap, history_keep))
            period = one("current_period", ())
            return {"tasks": min(tasks, cap), "task_history": history,
                    "task_runs": one("backlog_runs", (period - RUNS_KEEP_SECONDS // PERIOD_SECONDS, cap)),
                    "taskq_claim_requests": one("backlog_claim_requests",
                                                (CLAIM_KEY_WINDOW, cap))}

        return self._read(work)

    def _purge_tasks(self, status, keep_seconds, batch):
        rows = self._exec("purge_pick_tasks", (status, keep_seconds, batch)).fetchall()
        if not rows:
            return 0
        ids = [row[0] for row in rows]
        self._exec("purge_tasks", ids, ids=_placeholders(ids))
        self._forget_edges(ids)
        self._tally([(task_type, status, None) for _, task_type in rows])
        return len(ids)

    def _purge_history(self, keep_seconds, batch):
        last = None
        for history_id, old in self._exec("purge_history_head", (keep_seconds, batch)).fetchall():
            if not old:
                break
            last = history_id
        if last is None:
            return 0
        return self._exec("purge_history", (last, keep_seconds)).rowcount

    # -- dashboard -----------------------------------------------------
    def claimed_tasks(self, limit):
        return self._read(lambda: self._all("claimed_tasks", (limit,)))

    def recent_finishers(self, seconds, scan, limit):
        def work():
            rows = self._exec("recent_finishers", (seconds, scan, seconds, scan, limit)).fetchall()
            return [{"worker": w, "last_at": iso(at), "finished": int(n)} for w, at, n in rows]

        return self._read(work)

    def hourly_runs(self):
        def work():
            rows = self._exec("hourly_runs").fetchall()
            hour = rows[0][3] if rows else self._exec("current_hour").fetchone()[0]
            return int(hour), [(int(h), o, int(n)) for h, o, n, _ in rows]

        return self._read(work)

    def schema_version(self):
        if self._schema is not None:  # asked at connect, with the session setup
            return self._schema
        from ..migrate import current_version

        return self._read(lambda: current_version(self.conn))

    def recount(self):
        def work():
            slot, counts, usage = self._slot, [], []
            for task_type, status, actual, counted in self._exec("count_drift").fetchall():
                delta = int(actual) - int(counted)
                if self._exec("count_update", (delta, task_type, status, slot)).rowcount == 0:
                    self._exec("count_insert", (task_type, status, slot, delta))
                counts.append({"type": task_type, "status": status, "was": int(counted),
                               "now": int(actual)})
            for type_id, name, was, present in self._exec("usage_drift").fetchall():
                self._exec("usage_raise", (present, type_id))
                usage.append({"type": name, "was": int(was), "now": int(present)})
            return {"task_counts": counts, "usage_count": usage}

        return self._transaction(work)

    def failed_groups(self, limit):
        def work():
            return [{"error": e, "count": n, "last_at": iso(at), "last_id": i}
                    for e, n, at, i in self._exec("failed_groups", (limit,)).fetchall()]

        return self._read(work)

    def create_session(self, token_hash, csrf_token, key_ref, ttl_seconds):
        def work():
            self._exec("delete_expired_sessions")
            self._exec("create_session", (token_hash, csrf_token, key_ref, ttl_seconds))

        self._transaction(work)

    def get_session(self, token_hash):
        return self._read(lambda: self._one("get_session", (token_hash,)))

    def delete_session(self, token_hash):
        self._transaction(lambda: self._exec("delete_session", (token_hash,)))

    def login_failures(self, address, window_seconds):
        def work():
            row = self._exec("login_failures", (address, window_seconds)).fetchone()
            return row[0] if row else 0

        return self._read(work)

    def record_login_failure(self, address, window_seconds):
        self._transaction(lambda: self._exec("record_login_failure", (address, window_seconds)))

    # -- schedules -----------------------------------------------------
    def create_schedule(self, item):
        def work():
            try:
                cursor = self._exec("insert_schedule", (
                    item["name"], item["type_id"], item["type"], item["params_json"],
                    item["priority"], item["every_seconds"], item["cron"], item["timezone"],
                    item["catch_up"], item["catch_up_limit"], from_iso(item["next_run_at"])))
            except pymysql.err.IntegrityError as exc:
                if _errno(exc) != DUPLICATE_KEY:
                    raise
                raise Conflict("A schedule named %r exists" % item["name"]) from None
            return self._one("get_schedule", (cursor.lastrowid,))

        return self._transaction(work)

    def get_schedule(self, schedule_id):
        return self._read(lambda: self._one("get_schedule", (schedule_id,)))

    def list_schedules(self, limit, offset):
        return self._read(lambda: (self._all("list_schedules", (limit, offset)),
                                   self._exec("count_schedules").fetchone()[0]))

    def set_schedule_paused(self, schedule_id, paused, next_run_at):
        def work():
            self._exec("set_schedule_paused", (int(paused), from_iso(next_run_at), schedule_id))
            return self._one("get_schedule", (schedule_id,))

        return self._transaction(work)

    def delete_schedule(self, schedule_id):
        return self._transaction(lambda: self._exec("delete_schedule", (schedule_id,)).rowcount == 1)

    def due_schedules(self, limit):
        return self._read(lambda: self._all("due_schedules", (limit,)))

    def advance_schedule(self, schedule_id, seen_next_run_at, next_run_at, items):
        for item in items:
            self._check_packet((item["params_json"],))

        def work():
            cursor = self._exec("advance_schedule", (from_iso(next_run_at), schedule_id,
                                                     from_iso(seen_next_run_at)))
            if cursor.rowcount != 1:
                return None
            out = self._insert_tasks(items)
            if out:
                self._exec("set_schedule_last_task", (out[-1][0]["id"], schedule_id))
            return out

        return self._transaction(work)


def _run_at(item, now):
    """The naive UTC time an item is due: its run_at, or db now + delay_seconds."""
    from datetime import timedelta

    if item.get("run_at") is not None:
        return naive_utc(item["run_at"])
    if item.get("delay_seconds"):
        return now + timedelta(seconds=item["delay_seconds"])
    return None
