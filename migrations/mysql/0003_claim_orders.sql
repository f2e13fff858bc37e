-- Migration 0003 (issue 7): claim orders, the claim filter task_type_id and
-- type usage.
-- Every claim order reads an index in order (docs/performance.md, "Claim
-- orders", has the figures behind this choice): created_at is served by id
-- order (ids are handed out in creation order), id by tasks_status_id,
-- priority DESC by tasks_claim, and priority ASC by tasks_claim too, stepping
-- through its priority groups (the next group's value, then that group
-- oldest first). attempts needs an index, read in order for ASC and group by
-- group for DESC. Each has a per-type twin for task_type_id and type_pattern
-- claims. Dedicated indexes for priority ASC and attempts DESC (and a
-- negated attempts column, as MySQL 5.7 and MariaDB before 10.8 ignore DESC
-- in an index) were measured and dropped: they cost batch creates and
-- completes about a third of their throughput.
-- usage_count and last_used_at are maintained by task creation, so listing
-- types never counts tasks.
-- Each ALTER TABLE is one atomic statement; taskq.migrate treats "duplicate
-- column/key name" from a statement as already applied by an earlier,
-- interrupted run (this form runs on MySQL 5.7, which has no
-- ADD COLUMN IF NOT EXISTS, as well as on MariaDB).
-- No statement may contain a semicolon except as its terminator, and comments
-- stay on their own lines: taskq.migrate splits migrations on ';'.

ALTER TABLE tasks
    ADD KEY tasks_attempts (status, attempts, id),
    ADD KEY tasks_type_attempts (type_id, status, attempts, id),
    ADD KEY tasks_type_status_id (type_id, status, id);

ALTER TABLE task_types
    ADD COLUMN usage_count BIGINT UNSIGNED NOT NULL DEFAULT 0 AFTER claim_timeout,
    ADD COLUMN last_used_at DATETIME(6) NULL AFTER usage_count;

UPDATE task_types SET
    usage_count = (SELECT COUNT(*) FROM tasks WHERE tasks.type_id = task_types.id),
    last_used_at = (SELECT MAX(created_at) FROM tasks WHERE tasks.type_id = task_types.id);
