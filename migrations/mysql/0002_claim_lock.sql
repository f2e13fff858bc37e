-- Migration 0002: the claim lock row.
-- Without SKIP LOCKED, claims that scan different indexes (the whole queue,
-- one type) lock a task's index entries in opposite orders and deadlock each
-- other. A claim on that path first locks this row, so claims take turns
-- (each holds it for one short transaction) and never deadlock each other.
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.

CREATE TABLE IF NOT EXISTS taskq_locks (
    name VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT IGNORE INTO taskq_locks (name) VALUES ('claim');
