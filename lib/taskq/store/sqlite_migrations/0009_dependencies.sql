-- release: 0.5.0
-- Version 9: task dependencies (issue 18). task_dependencies holds the edges
-- (child task_id, parent_id); tasks.waiting_on counts a child's parents not
-- yet settled, on_parent_failure says what a failed or cancelled parent does
-- (cancel | run), cancelled_by names the parent whose failure cancelled it.
ALTER TABLE tasks ADD COLUMN waiting_on INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN on_parent_failure TEXT NOT NULL DEFAULT 'cancel';
ALTER TABLE tasks ADD COLUMN cancelled_by INTEGER;
CREATE TABLE IF NOT EXISTS task_dependencies (
    task_id   INTEGER NOT NULL,
    parent_id INTEGER NOT NULL,
    PRIMARY KEY (task_id, parent_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS task_dependencies_parent ON task_dependencies (parent_id, task_id);
