-- release: 0.5.0
-- Migration 0010: task dependencies (issue 18). A task may wait for parent
-- tasks: task_dependencies holds the edges (child task_id, parent_id), and
-- tasks.waiting_on counts the child's parents not yet settled, so the last
-- parent's completion releases the child with one UPDATE in its own
-- transaction (taskq.store.dependencies). on_parent_failure says what a
-- failed or cancelled parent does to the child (cancel it, or count as
-- settled); cancelled_by names the parent whose failure cancelled it, so a
-- retry of that parent brings the child back.
-- Re-runnable on MySQL 5.7+ and MariaDB 10.3+ alike (MySQL has no ADD COLUMN
-- IF NOT EXISTS): the ALTER runs only when its first column is missing, and
-- an ALTER is one statement, so it is applied whole or not at all.
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.

SET @taskq_sql = IF((SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = DATABASE() AND table_name = 'tasks' AND column_name = 'waiting_on') = 0, 'ALTER TABLE tasks ADD COLUMN waiting_on INT NOT NULL DEFAULT 0, ADD COLUMN on_parent_failure VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT ''cancel'', ADD COLUMN cancelled_by BIGINT UNSIGNED NULL', 'DO 0');
PREPARE taskq_stmt FROM @taskq_sql;
EXECUTE taskq_stmt;
DEALLOCATE PREPARE taskq_stmt;

CREATE TABLE IF NOT EXISTS task_dependencies (
    task_id   BIGINT UNSIGNED NOT NULL,
    parent_id BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (task_id, parent_id),
    KEY task_dependencies_parent (parent_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
