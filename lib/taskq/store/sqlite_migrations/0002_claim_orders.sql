-- SQLite version 2 (issue 7): claim orders, type usage. See
-- migrations/mysql/0003_claim_orders.sql for why these indexes; SQLite honours
-- DESC in an index, so attempts DESC needs no negated column here.
ALTER TABLE task_types ADD COLUMN usage_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_types ADD COLUMN last_used_at INTEGER;
UPDATE task_types SET
    usage_count = (SELECT COUNT(*) FROM tasks WHERE tasks.type_id = task_types.id),
    last_used_at = (SELECT MAX(created_at) FROM tasks WHERE tasks.type_id = task_types.id);
CREATE INDEX IF NOT EXISTS tasks_attempts ON tasks (status, attempts, id);
CREATE INDEX IF NOT EXISTS tasks_type_attempts ON tasks (type_id, status, attempts, id);
CREATE INDEX IF NOT EXISTS tasks_type_status_id ON tasks (type_id, status, id);
