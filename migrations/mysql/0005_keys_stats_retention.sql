-- Migration 0005: scoped API keys, maintained counters for GET /stats, and
-- the index retention deletes through.
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.
-- Re-runnable on MySQL 5.7+ and MariaDB 10.3+: tables use IF NOT EXISTS, the
-- index is added only when information_schema does not list it yet (MySQL
-- has no ADD INDEX IF NOT EXISTS), the counter seed is INSERT IGNORE.

-- API keys: only the SHA-256 of each key is kept (the key is shown once).
CREATE TABLE IF NOT EXISTS api_keys (
    id           INT UNSIGNED NOT NULL AUTO_INCREMENT,
    name         VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    role         VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    prefix       VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    key_hash     CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at   DATETIME(6) NOT NULL,
    last_used_at DATETIME(6) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY api_keys_name (name),
    UNIQUE KEY api_keys_hash (key_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Tasks per type and status, written in the transaction that changes a
-- status; `slot` spreads concurrent writers over a few rows.
CREATE TABLE IF NOT EXISTS task_counts (
    type   VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    status VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    slot   TINYINT UNSIGNED NOT NULL,
    n      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (type, status, slot)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Finished attempts per 5-minute period (UNIX_TIMESTAMP() DIV 300), type,
-- outcome and run-time bucket: the last hour and day in at most a few
-- thousand rows, read by primary key range.
CREATE TABLE IF NOT EXISTS task_runs (
    period  INT UNSIGNED NOT NULL,
    type    VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    outcome VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    bucket  TINYINT NOT NULL,
    slot    TINYINT UNSIGNED NOT NULL,
    n       BIGINT NOT NULL DEFAULT 0,
    run_ms  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (period, type, outcome, bucket, slot)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

SET @taskq_ddl = IF((SELECT COUNT(*) FROM information_schema.statistics
                     WHERE table_schema = DATABASE() AND table_name = 'tasks'
                       AND index_name = 'tasks_retention') = 0,
                    'ALTER TABLE tasks ADD KEY tasks_retention (status, updated_at)',
                    'SELECT 1');
PREPARE taskq_stmt FROM @taskq_ddl;
EXECUTE taskq_stmt;
DEALLOCATE PREPARE taskq_stmt;

INSERT IGNORE INTO task_counts (type, status, slot, n)
SELECT type, status, 0, COUNT(*) FROM tasks GROUP BY type, status;
