-- Migration 0007: concurrency limits, pause and dedupe scope per task type
-- (issue 9 items 3 and 4); tasks remember the dedupe scope they were created with.
-- Re-runnable on MySQL 5.7+ and MariaDB 10.3+ alike (MySQL has no ADD COLUMN
-- IF NOT EXISTS): each ALTER runs only when its first column is missing, and
-- an ALTER is one statement, so it is applied whole or not at all.
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.

SET @taskq_sql = IF((SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'task_types' AND column_name = 'max_concurrency') = 0, 'ALTER TABLE task_types ADD COLUMN max_concurrency INT NULL, ADD COLUMN is_paused TINYINT(1) NOT NULL DEFAULT 0, ADD COLUMN dedupe_scope VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT ''always''', 'DO 0');
PREPARE taskq_stmt FROM @taskq_sql;
EXECUTE taskq_stmt;
DEALLOCATE PREPARE taskq_stmt;

SET @taskq_sql = IF((SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'tasks' AND column_name = 'dedupe_scope') = 0, 'ALTER TABLE tasks ADD COLUMN dedupe_scope VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT ''always''', 'DO 0');
PREPARE taskq_stmt FROM @taskq_sql;
EXECUTE taskq_stmt;
DEALLOCATE PREPARE taskq_stmt;
