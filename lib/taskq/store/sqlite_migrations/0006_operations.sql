-- Version 6: concurrency limits, pause and dedupe scope per task type; tasks
-- remember the dedupe scope they were created with.
ALTER TABLE task_types ADD COLUMN max_concurrency INTEGER;
ALTER TABLE task_types ADD COLUMN is_paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_types ADD COLUMN dedupe_scope TEXT NOT NULL DEFAULT 'always';
ALTER TABLE tasks ADD COLUMN dedupe_scope TEXT NOT NULL DEFAULT 'always';
