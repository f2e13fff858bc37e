-- Migration 0004: retried claims and repeated completes (issue 8).
-- claim_request_key: the request_key of the claim that holds the task, so a
-- claim repeated with the same key (its answer was lost) answers the same
-- tasks instead of claiming new ones. finished_by / finished_status /
-- finished_attempt: who finished the task last and with what outcome, so a
-- complete repeated by that worker answers the same outcome instead of 409.
-- taskq_claim_requests: keyed claims that answered no task, so the first
-- claim arriving after its retry was answered claims nothing either.
-- MySQL has no ADD COLUMN IF NOT EXISTS, so the ALTER is prepared only when
-- the column is missing: a re-run does nothing, on MySQL 5.7+ and MariaDB.
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.

SET @taskq_0004 = (
    SELECT IF(COUNT(*) = 0,
              'ALTER TABLE tasks
                   ADD COLUMN claim_request_key VARCHAR(128) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER claimed_by,
                   ADD COLUMN finished_by VARCHAR(255) NULL AFTER completed_at,
                   ADD COLUMN finished_status VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NULL AFTER finished_by,
                   ADD COLUMN finished_attempt INT NULL AFTER finished_status,
                   ADD KEY tasks_claim_request (claim_request_key)',
              'DO 0')
    FROM information_schema.columns
    WHERE table_schema = DATABASE() AND table_name = 'tasks' AND column_name = 'claim_request_key');

PREPARE taskq_0004_step FROM @taskq_0004;

EXECUTE taskq_0004_step;

DEALLOCATE PREPARE taskq_0004_step;

CREATE TABLE IF NOT EXISTS taskq_claim_requests (
    request_hash CHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at   DATETIME(6) NOT NULL,
    PRIMARY KEY (request_hash),
    KEY taskq_claim_requests_age (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
