-- taskq schema for the embedded SQLite store (created on first use).
-- Times are integer milliseconds since the Unix epoch, UTC.
-- Keep in step with schema.sql (MySQL/MariaDB); tests/store/test_migrations.py and
-- tests/store/test_sqlite_migrations.py hold each to its migrations.

CREATE TABLE IF NOT EXISTS task_types (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    version           TEXT NOT NULL,
    param_schema_json TEXT NOT NULL,
    is_active         INTEGER NOT NULL DEFAULT 1,
    max_attempts      INTEGER,
    claim_timeout     INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    -- tasks created of this type, and when the last was (kept by create; version 2)
    usage_count       INTEGER NOT NULL DEFAULT 0,
    last_used_at      INTEGER,
    retry_delay_seconds     INTEGER,
    retry_backoff           TEXT NOT NULL DEFAULT 'fixed',
    retry_max_delay_seconds INTEGER,
    retry_jitter            REAL NOT NULL DEFAULT 0,
    max_concurrency   INTEGER,
    is_paused         INTEGER NOT NULL DEFAULT 0,
    dedupe_scope      TEXT NOT NULL DEFAULT 'always'
);

CREATE TABLE IF NOT EXISTS tasks (
    id               INTEGER PRIMARY KEY,
    type_id          INTEGER NOT NULL REFERENCES task_types (id),
    type             TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending',
    params_json      TEXT NOT NULL,
    dedupe_key       TEXT NOT NULL UNIQUE,
    result_json      TEXT,
    error_message    TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    progress         INTEGER NOT NULL DEFAULT 0,
    progress_message TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    claim_timeout    INTEGER,
    claimed_by       TEXT,
    claimed_at       INTEGER,
    lease_expires_at INTEGER,
    completed_at     INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    claim_request_key TEXT,
    finished_by      TEXT,
    finished_status  TEXT,
    finished_attempt INTEGER,
    run_at           INTEGER,
    dedupe_scope     TEXT NOT NULL DEFAULT 'always',
    -- dependencies (version 9): parents not yet settled, cancel | run, and
    -- the parent whose failure cancelled this task
    waiting_on       INTEGER NOT NULL DEFAULT 0,
    on_parent_failure TEXT NOT NULL DEFAULT 'cancel',
    cancelled_by     INTEGER
);

-- claim: the next pending task, highest priority then oldest, without a sort
CREATE INDEX IF NOT EXISTS tasks_claim ON tasks (status, priority DESC, id);
-- claim with type_pattern: the same order inside one type
CREATE INDEX IF NOT EXISTS tasks_type_claim ON tasks (type_id, status, priority DESC, id);
-- claim: expired leases, oldest expiry first
CREATE INDEX IF NOT EXISTS tasks_lease ON tasks (status, lease_expires_at);
-- GET /tasks?status=: newest first
CREATE INDEX IF NOT EXISTS tasks_status_id ON tasks (status, id);
-- claim orders (version 2): attempts (ASC in order, DESC group by group),
-- also inside one type; id and created_at order inside one type. priority ASC
-- steps through tasks_claim's groups and needs none.
CREATE INDEX IF NOT EXISTS tasks_attempts ON tasks (status, attempts, id);
CREATE INDEX IF NOT EXISTS tasks_type_attempts ON tasks (type_id, status, attempts, id);
CREATE INDEX IF NOT EXISTS tasks_type_status_id ON tasks (type_id, status, id);
-- a claim repeated with its request_key finds the tasks it handed out
CREATE INDEX IF NOT EXISTS tasks_claim_request ON tasks (claim_request_key);
-- retention: finished tasks of one status, oldest change first
CREATE INDEX IF NOT EXISTS tasks_retention ON tasks (status, updated_at);
-- claim: 'scheduled' tasks that are due, earliest first (promoted to 'pending')
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (status, run_at);

-- dependencies (version 9): task_id waits for parent_id
CREATE TABLE IF NOT EXISTS task_dependencies (
    task_id   INTEGER NOT NULL,
    parent_id INTEGER NOT NULL,
    PRIMARY KEY (task_id, parent_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS task_dependencies_parent ON task_dependencies (parent_id, task_id);

CREATE TABLE IF NOT EXISTS task_history (
    id         INTEGER PRIMARY KEY,
    task_id    INTEGER NOT NULL,
    event      TEXT NOT NULL,
    worker_id  TEXT,
    message    TEXT,
    created_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS task_history_task ON task_history (task_id, id);

-- keyed claims that answered no task, for CLAIM_KEY_WINDOW (10 minutes): a
-- first claim arriving after its own resend was answered empty claims nothing
CREATE TABLE IF NOT EXISTS taskq_claim_requests (
    request    TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS taskq_claim_requests_age ON taskq_claim_requests (created_at);
-- API keys: only the SHA-256 of each key is kept (the key is shown once).
CREATE TABLE IF NOT EXISTS api_keys (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

-- Tasks per type and status, written in the transaction that changes a status.
CREATE TABLE IF NOT EXISTS task_counts (
    type   TEXT NOT NULL,
    status TEXT NOT NULL,
    slot   INTEGER NOT NULL,
    n      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (type, status, slot)
) WITHOUT ROWID;

-- Finished attempts per 5-minute period (ms // 300000), type, outcome and
-- run-time bucket, for the last hour and day of GET /stats.
CREATE TABLE IF NOT EXISTS task_runs (
    period  INTEGER NOT NULL,
    type    TEXT NOT NULL,
    outcome TEXT NOT NULL,
    bucket  INTEGER NOT NULL,
    slot    INTEGER NOT NULL,
    n       INTEGER NOT NULL DEFAULT 0,
    run_ms  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (period, type, outcome, bucket, slot)
) WITHOUT ROWID;

-- Recurring schedules: a claim creates each due occurrence once.
CREATE TABLE IF NOT EXISTS task_schedules (
    id             INTEGER PRIMARY KEY,
    name           TEXT UNIQUE,
    type_id        INTEGER NOT NULL,
    type           TEXT NOT NULL,
    params_json    TEXT NOT NULL,
    priority       INTEGER NOT NULL DEFAULT 0,
    every_seconds  INTEGER,
    cron           TEXT,
    timezone       TEXT NOT NULL DEFAULT 'UTC',
    catch_up       TEXT NOT NULL DEFAULT 'latest',
    catch_up_limit INTEGER NOT NULL DEFAULT 100,
    is_paused      INTEGER NOT NULL DEFAULT 0,
    next_run_at    INTEGER,
    last_run_at    INTEGER,
    last_task_id   INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS task_schedules_due ON task_schedules (is_paused, next_run_at);

-- dashboard sessions (keyed by the SHA-256 of the cookie's token) and failed logins
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    token_hash TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    key_ref    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_expiry ON dashboard_sessions (expires_at);
CREATE TABLE IF NOT EXISTS login_failures (
    address      TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start INTEGER NOT NULL
);

-- One row per schema version that names the first release knowing it
-- (version 8 on), so an older release opening this file can say which
-- release to upload again. PRAGMA user_version stays the version itself.
CREATE TABLE IF NOT EXISTS taskq_schema_version (
    version       INTEGER PRIMARY KEY,
    needs_release TEXT,
    applied_at    INTEGER NOT NULL
);
