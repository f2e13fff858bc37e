-- Version 4: scoped API keys, maintained counters for GET /stats, and the
-- index retention deletes through (issue 9 items 5-7).

CREATE TABLE IF NOT EXISTS api_keys (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    role         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

CREATE TABLE IF NOT EXISTS task_counts (
    type   TEXT NOT NULL,
    status TEXT NOT NULL,
    slot   INTEGER NOT NULL,
    n      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (type, status, slot)
) WITHOUT ROWID;

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

CREATE INDEX IF NOT EXISTS tasks_retention ON tasks (status, updated_at);

INSERT OR IGNORE INTO task_counts (type, status, slot, n)
SELECT type, status, 0, COUNT(*) FROM tasks GROUP BY type, status;
