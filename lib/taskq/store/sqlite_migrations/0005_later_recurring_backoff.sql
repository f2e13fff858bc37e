-- Version 5: tasks that run later (status 'scheduled' until run_at), retry
-- backoff per type, recurring schedules. Same change as MySQL migration 0006.

ALTER TABLE tasks ADD COLUMN run_at INTEGER;
CREATE INDEX IF NOT EXISTS tasks_due ON tasks (status, run_at);

ALTER TABLE task_types ADD COLUMN retry_delay_seconds INTEGER;
ALTER TABLE task_types ADD COLUMN retry_backoff TEXT NOT NULL DEFAULT 'fixed';
ALTER TABLE task_types ADD COLUMN retry_max_delay_seconds INTEGER;
ALTER TABLE task_types ADD COLUMN retry_jitter REAL NOT NULL DEFAULT 0;

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
