-- Version 3: retried claims and repeated completes (issue 8).
-- claim_request_key: the request_key of the claim holding the task, so a
-- repeated claim answers the same tasks. finished_*: who finished the task
-- last and how, so a repeated complete answers the same outcome.
ALTER TABLE tasks ADD COLUMN claim_request_key TEXT;
ALTER TABLE tasks ADD COLUMN finished_by TEXT;
ALTER TABLE tasks ADD COLUMN finished_status TEXT;
ALTER TABLE tasks ADD COLUMN finished_attempt INTEGER;
CREATE INDEX IF NOT EXISTS tasks_claim_request ON tasks (claim_request_key);
