-- Version 3: retried claims and repeated completes (issue 8).
-- claim_request_key: the request_key of the claim holding the task, so a
-- repeated claim answers the same tasks. finished_*: who finished the task
-- last and how, so a repeated complete answers the same outcome.
-- taskq_claim_requests: keyed claims that answered no task, so a first claim
-- arriving after its retry was answered claims nothing either.
ALTER TABLE tasks ADD COLUMN claim_request_key TEXT;
ALTER TABLE tasks ADD COLUMN finished_by TEXT;
ALTER TABLE tasks ADD COLUMN finished_status TEXT;
ALTER TABLE tasks ADD COLUMN finished_attempt INTEGER;
CREATE INDEX IF NOT EXISTS tasks_claim_request ON tasks (claim_request_key);
CREATE TABLE IF NOT EXISTS taskq_claim_requests (
    request    TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS taskq_claim_requests_age ON taskq_claim_requests (created_at);
