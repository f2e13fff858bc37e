-- The SQLite schema as first released (version 1), frozen for tests/store/test_sqlite_migrations.py.
-- taskq schema for the embedded SQLite store (created on first use).
-- Times are integer milliseconds since the Unix epoch, UTC.
-- Keep in step with schema.sql (MySQL/MariaDB); tests/test_schema.py compares them.

CREATE TABLE IF NOT EXISTS task_types (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    version           TEXT NOT NULL,
    param_schema_json TEXT NOT NULL,
    is_active         INTEGER NOT NULL DEFAULT 1,
    max_attempts      INTEGER,
    claim_timeout     INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
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
    updated_at       INTEGER NOT NULL
);

-- claim: the next pending task, highest priority then oldest, without a sort
CREATE INDEX IF NOT EXISTS tasks_claim ON tasks (status, priority DESC, id);
-- claim with type_pattern: the same order inside one type
CREATE INDEX IF NOT EXISTS tasks_type_claim ON tasks (type_id, status, priority DESC, id);
-- claim: expired leases, oldest expiry first
CREATE INDEX IF NOT EXISTS tasks_lease ON tasks (status, lease_expires_at);
-- GET /tasks?status=: newest first
CREATE INDEX IF NOT EXISTS tasks_status_id ON tasks (status, id);

CREATE TABLE IF NOT EXISTS task_history (
    id         INTEGER PRIMARY KEY,
    task_id    INTEGER NOT NULL,
    event      TEXT NOT NULL,
    worker_id  TEXT,
    message    TEXT,
    created_at INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS task_history_task ON task_history (task_id, id);
