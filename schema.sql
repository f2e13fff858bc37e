-- taskq schema for MySQL 5.7+ and MariaDB 10.3+ (InnoDB, utf8mb4).
-- Load it once into an empty database: mysql DBNAME < schema.sql (or run the installer).
-- Keep in step with lib/taskq/store/sqlite_schema.sql; tests/store/test_migrations.py and
-- tests/store/test_sqlite_migrations.py hold each to its migrations.
--
-- Times are DATETIME(6) in UTC, always written from the database clock
-- (UTC_TIMESTAMP(6), never NOW()), so the session and server time zones and
-- the web host's clock never matter.
-- Type names are [A-Za-z0-9_.:-], stored ascii_bin: LIKE on them is
-- case-sensitive, as on the SQLite store.
-- No statement here may contain a semicolon except as its terminator, and
-- comments stay on their own lines: tests/conftest.py splits this file on ';'.

CREATE TABLE task_types (
    id                INT UNSIGNED NOT NULL AUTO_INCREMENT,
    name              VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    version           VARCHAR(64) NOT NULL,
    param_schema_json LONGTEXT NOT NULL,
    is_active         TINYINT(1) NOT NULL DEFAULT 1,
    max_attempts      INT NULL,
    claim_timeout     INT NULL,
    -- tasks created of this type, and when the last was (kept by create)
    usage_count       BIGINT UNSIGNED NOT NULL DEFAULT 0,
    last_used_at      DATETIME(6) NULL,
    created_at        DATETIME(6) NOT NULL,
    updated_at        DATETIME(6) NOT NULL,
    -- retry backoff (migration 0006): the delay before a failed attempt runs again
    retry_delay_seconds     INT NULL,
    retry_backoff           VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'fixed',
    retry_max_delay_seconds INT NULL,
    retry_jitter            DOUBLE NOT NULL DEFAULT 0,
    -- at most this many live leases of the type at once (NULL: no limit)
    max_concurrency   INT NULL,
    -- a paused type is never claimed; creates go on
    is_paused         TINYINT(1) NOT NULL DEFAULT 0,
    -- always | active (only while pending or claimed) | off; new tasks copy it
    dedupe_scope      VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'always',
    PRIMARY KEY (id),
    UNIQUE KEY task_types_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- `type` repeats task_types.name so a claim never joins (and never locks)
-- task_types; `neg_priority` is -priority, written with it, because MySQL 5.7
-- and MariaDB before 10.8 ignore DESC in an index: ORDER BY neg_priority, id
-- reads the claim indexes in order, with no sort.
CREATE TABLE tasks (
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
    claim_request_key VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL,
    claimed_at       DATETIME(6) NULL,
    lease_expires_at DATETIME(6) NULL,
    completed_at     DATETIME(6) NULL,
    finished_by      VARCHAR(255) NULL,
    finished_status  VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NULL,
    finished_attempt INT NULL,
    created_at       DATETIME(6) NOT NULL,
    updated_at       DATETIME(6) NOT NULL,
    -- when a task is due (migration 0006); status 'scheduled' until then
    run_at           DATETIME(6) NULL,
    -- the type's dedupe_scope when the task was created; 'active' releases
    -- dedupe_key (sets it to '~<id>') when the task finishes
    dedupe_scope     VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'always',
    -- dependencies (migration 0010): parents not yet settled (status 'waiting'
    -- while above 0), what a failed or cancelled parent does (cancel | run),
    -- and the parent whose failure cancelled this task
    waiting_on       INT NOT NULL DEFAULT 0,
    on_parent_failure VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'cancel',
    cancelled_by     BIGINT UNSIGNED NULL,
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
    -- claim orders (migration 0003): attempts (ASC in order, DESC group by
    -- group), also inside one type; id and created_at order inside one type.
    -- priority ASC steps through tasks_claim's groups and needs none.
    KEY tasks_attempts (status, attempts, id),
    KEY tasks_type_attempts (type_id, status, attempts, id),
    KEY tasks_type_status_id (type_id, status, id),
    -- a claim repeated with its request_key finds the tasks it handed out
    KEY tasks_claim_request (claim_request_key),
    -- retention: finished tasks of one status, oldest change first
    KEY tasks_retention (status, updated_at),
    -- claim: 'scheduled' tasks that are due, earliest first (promoted to 'pending')
    KEY tasks_due (status, run_at),
    CONSTRAINT tasks_type_fk FOREIGN KEY (type_id) REFERENCES task_types (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- No foreign key to tasks: writing an event must not lock the task row again.
CREATE TABLE task_history (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    task_id    BIGINT UNSIGNED NOT NULL,
    event      VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    worker_id  VARCHAR(255) NULL,
    message    MEDIUMTEXT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    KEY task_history_task (task_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Dependencies (migration 0010): task_id waits for parent_id. No foreign
-- keys: writing an edge must not lock the tasks again, and retention deletes
-- a finished task's edges with it.
CREATE TABLE task_dependencies (
    task_id   BIGINT UNSIGNED NOT NULL,
    parent_id BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (task_id, parent_id),
    -- a parent's completion finds its children here
    KEY task_dependencies_parent (parent_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- API keys: only the SHA-256 of each key is kept (the key is shown once).
CREATE TABLE api_keys (
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
CREATE TABLE task_counts (
    type   VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    status VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    slot   TINYINT UNSIGNED NOT NULL,
    n      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (type, status, slot)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Finished attempts per 5-minute period (UNIX_TIMESTAMP() DIV 300), type,
-- outcome and run-time bucket, for the last hour and day of GET /stats.
CREATE TABLE task_runs (
    period  INT UNSIGNED NOT NULL,
    type    VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    outcome VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    bucket  TINYINT NOT NULL,
    slot    TINYINT UNSIGNED NOT NULL,
    n       BIGINT NOT NULL DEFAULT 0,
    run_ms  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (period, type, outcome, bucket, slot)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One row per applied schema version; migrations add rows.
CREATE TABLE taskq_schema_version (
    version    INT NOT NULL PRIMARY KEY,
    applied_at DATETIME(6) NOT NULL,
    needs_release VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Claims without SKIP LOCKED lock the 'claim' row first, so they take turns:
-- claims scanning different indexes would otherwise deadlock each other.
CREATE TABLE taskq_locks (
    name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO taskq_locks (name) VALUES ('claim');

-- Keyed claims that answered no task, for CLAIM_KEY_WINDOW (10 minutes): a
-- first claim arriving after its own resend was answered empty claims nothing.
CREATE TABLE taskq_claim_requests (
    request_hash CHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at   DATETIME(6) NOT NULL,
    PRIMARY KEY (request_hash),
    KEY taskq_claim_requests_age (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Recurring schedules (migration 0006): a claim creates each due occurrence
-- once, by moving next_run_at on with a conditional UPDATE.
CREATE TABLE task_schedules (
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

-- Dashboard sessions (keyed by the SHA-256 of the cookie's token) and the
-- failed-login counts per client address that slow down guessing.
CREATE TABLE dashboard_sessions (
    token_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    csrf_token CHAR(43) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    key_ref    VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at DATETIME(6) NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    PRIMARY KEY (token_hash),
    KEY dashboard_sessions_expiry (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE login_failures (
    address      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    failures     INT NOT NULL,
    window_start DATETIME(6) NOT NULL,
    PRIMARY KEY (address)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO taskq_schema_version (version, applied_at) VALUES (1, UTC_TIMESTAMP(6)),
    (2, UTC_TIMESTAMP(6)), (3, UTC_TIMESTAMP(6)), (4, UTC_TIMESTAMP(6)), (5, UTC_TIMESTAMP(6)),
    (6, UTC_TIMESTAMP(6)), (7, UTC_TIMESTAMP(6)), (8, UTC_TIMESTAMP(6));
INSERT INTO taskq_schema_version (version, applied_at, needs_release)
    VALUES (9, UTC_TIMESTAMP(6), '0.5.0'), (10, UTC_TIMESTAMP(6), '0.5.0');
