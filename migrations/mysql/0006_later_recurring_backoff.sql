-- Migration 0006: tasks that run later, recurring schedules, retry backoff.
-- A task not yet due has status 'scheduled' and its time in run_at; a claim
-- promotes due ones to 'pending' through tasks_due, so the claim indexes'
-- 'pending' range never holds a future row. task_types gains the retry
-- backoff settings; task_schedules holds the recurring schedules.
-- Re-runnable on MySQL 5.7+ and MariaDB 10.3+ alike (MySQL has no ADD COLUMN
-- IF NOT EXISTS): each ALTER runs only when its first column is missing, and
-- an ALTER is one statement, so it is applied whole or not at all. Columns go
-- AFTER updated_at, where schema.sql has them, even when 0007 ran first.
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.

SET @taskq_sql = IF((SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'tasks' AND column_name = 'run_at') = 0, 'ALTER TABLE tasks ADD COLUMN run_at DATETIME(6) NULL AFTER updated_at, ADD KEY tasks_due (status, run_at)', 'DO 0');
PREPARE taskq_stmt FROM @taskq_sql;
EXECUTE taskq_stmt;
DEALLOCATE PREPARE taskq_stmt;

SET @taskq_sql = IF((SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'task_types' AND column_name = 'retry_delay_seconds') = 0, 'ALTER TABLE task_types ADD COLUMN retry_delay_seconds INT NULL AFTER updated_at, ADD COLUMN retry_backoff VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT ''fixed'' AFTER retry_delay_seconds, ADD COLUMN retry_max_delay_seconds INT NULL AFTER retry_backoff, ADD COLUMN retry_jitter DOUBLE NOT NULL DEFAULT 0 AFTER retry_max_delay_seconds', 'DO 0');
PREPARE taskq_stmt FROM @taskq_sql;
EXECUTE taskq_stmt;
DEALLOCATE PREPARE taskq_stmt;

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
