-- Migration 0001: the initial taskq schema (tables, indexes, version table).
-- It creates exactly what schema.sql creates; tests/test_migrations.py
-- applies every migration to an empty database and compares the result with
-- schema.sql. IF NOT EXISTS and INSERT IGNORE make a re-run after a partial
-- failure safe (MySQL commits each CREATE TABLE on its own).
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.

CREATE TABLE IF NOT EXISTS task_types (
    id                INT UNSIGNED NOT NULL AUTO_INCREMENT,
    name              VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    version           VARCHAR(64) NOT NULL,
    param_schema_json LONGTEXT NOT NULL,
    is_active         TINYINT(1) NOT NULL DEFAULT 1,
    max_attempts      INT NULL,
    claim_timeout     INT NULL,
    created_at        DATETIME(6) NOT NULL,
    updated_at        DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY task_types_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- `type` repeats task_types.name so a claim never joins (and never locks)
-- task_types; `neg_priority` is -priority, written with it, because MySQL 5.7
-- and MariaDB before 10.8 ignore DESC in an index: ORDER BY neg_priority, id
-- reads the claim indexes in order, with no sort.
CREATE TABLE IF NOT EXISTS tasks (
    id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    type_id          INT UNSIGNED NOT NULL,
    type             VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    status           VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'pending',
    params_json      LONGTEXT NOT NULL,
    dedupe_key       CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    result_json      LONGTEXT NULL,
    error_message    MEDIUMTEXT NULL,
    priority         INT NOT NULL DEFAULT 0,
    neg_priority     INT NOT NULL DEFAULT 0,
    progress         INT NOT NULL DEFAULT 0,
    progress_message TEXT NULL,
    attempts         INT NOT NULL DEFAULT 0,
    max_attempts     INT NOT NULL,
    claim_timeout    INT NULL,
    claimed_by       VARCHAR(255) NULL,
    claimed_at       DATETIME(6) NULL,
    lease_expires_at DATETIME(6) NULL,
    completed_at     DATETIME(6) NULL,
    created_at       DATETIME(6) NOT NULL,
    updated_at       DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    -- duplicates are decided here, never by read-then-insert
    UNIQUE KEY tasks_dedupe (dedupe_key),
    -- claim: the next pending task, highest priority then oldest
    KEY tasks_claim (status, neg_priority, id),
    -- claim with type_pattern: the same order inside one type
    KEY tasks_type_claim (type_id, status, neg_priority, id),
    -- claim: expired leases, oldest expiry first
    KEY tasks_lease (status, lease_expires_at),
    -- GET /tasks?status=: newest first
    KEY tasks_status_id (status, id),
    CONSTRAINT tasks_type_fk FOREIGN KEY (type_id) REFERENCES task_types (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- No foreign key to tasks: writing an event must not lock the task row again.
CREATE TABLE IF NOT EXISTS task_history (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    task_id    BIGINT UNSIGNED NOT NULL,
    event      VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    worker_id  VARCHAR(255) NULL,
    message    MEDIUMTEXT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    KEY task_history_task (task_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One row per applied schema version; migrations add rows.
CREATE TABLE IF NOT EXISTS taskq_schema_version (
    version    INT NOT NULL PRIMARY KEY,
    applied_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT IGNORE INTO taskq_schema_version (version, applied_at) VALUES (1, UTC_TIMESTAMP(6));
