-- Migration 0007: concurrency limits, pause and dedupe scope per task type
-- (issue 9 items 3 and 4); tasks remember the dedupe scope they were created with.
-- Re-runnable on MariaDB (ADD COLUMN IF NOT EXISTS, 10.0.2+). MySQL 5.7 and 8.0
-- have no IF NOT EXISTS for columns: there this file runs once (a re-run after
-- a partial failure stops at "Duplicate column name"; drop the columns named
-- here and run the installer again).
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.

ALTER TABLE task_types
    ADD COLUMN IF NOT EXISTS max_concurrency INT NULL,
    ADD COLUMN IF NOT EXISTS is_paused TINYINT(1) NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS dedupe_scope VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'always';

ALTER TABLE tasks
    ADD COLUMN IF NOT EXISTS dedupe_scope VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'always';

