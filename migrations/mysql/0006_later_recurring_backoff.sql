-- Migration 0006: tasks that run later, recurring schedules, retry backoff.
-- A task not yet due has status 'scheduled' and its time in run_at; a claim
-- promotes due ones to 'pending' through tasks_due, so the claim indexes'
-- 'pending' range never holds a future row. task_types gains the retry
-- backoff settings; task_schedules holds the recurring schedules.
-- ADD COLUMN IF NOT EXISTS / ADD KEY IF NOT EXISTS make a re-run safe on
-- MariaDB 10.3+. MySQL 5.7/8.0 have neither: there, run this file once (the
-- installer does, and records it), and after a partial failure drop what it
-- added before running it again.
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.

ALTER TABLE tasks
    ADD COLUMN IF NOT EXISTS run_at DATETIME(6) NULL,
    ADD KEY IF NOT EXISTS tasks_due (status, run_at);

ALTER TABLE task_types
    ADD COLUMN IF NOT EXISTS retry_delay_seconds INT NULL,
    ADD COLUMN IF NOT EXISTS retry_backoff VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'fixed',
    ADD COLUMN IF NOT EXISTS retry_max_delay_seconds INT NULL,
    ADD COLUMN IF NOT EXISTS retry_jitter DOUBLE NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS task_schedules (
    id             INT UNSIGNED NOT NULL AUTO_INCREMENT,
    name           VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NULL,
    type_id        INT UNSIGNED NOT NULL,
    type           VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    params_json    LONGTEXT NOT NULL,
    priority       INT NOT NULL DEFAULT 0,
    every_seconds  INT NULL,
    cron           VARCHAR(255) NULL,
    timezone       VARCHAR(64) NOT NULL DEFAULT 'UTC',
    catch_up       VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'latest',
    catch_up_limit INT NOT NULL DEFAULT 100,
    is_paused      TINYINT(1) NOT NULL DEFAULT 0,
    next_run_at    DATETIME(6) NULL,
    last_run_at    DATETIME(6) NULL,
    last_task_id   BIGINT UNSIGNED NULL,
    created_at     DATETIME(6) NOT NULL,
    updated_at     DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY task_schedules_name (name),
    KEY task_schedules_due (is_paused, next_run_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
