-- Named queries for the SQLite store; each block is run by the method of
-- the same name (or the step it names). :now is integer ms from the caller.

-- name: ping
SELECT 1

-- name: get_type
SELECT id, name, version, param_schema_json, is_active, max_attempts, claim_timeout,
       usage_count, last_used_at, created_at, updated_at, max_concurrency, is_paused, dedupe_scope,
       retry_delay_seconds, retry_backoff, retry_max_delay_seconds, retry_jitter
FROM task_types WHERE name = ?

-- name: list_types
SELECT id, name, version, param_schema_json, is_active, max_attempts, claim_timeout,
       usage_count, last_used_at, created_at, updated_at, max_concurrency, is_paused, dedupe_scope,
       retry_delay_seconds, retry_backoff, retry_max_delay_seconds, retry_jitter
FROM task_types ORDER BY name

-- name: list_active_types
SELECT id, name, version, param_schema_json, is_active, max_attempts, claim_timeout,
       usage_count, last_used_at, created_at, updated_at, max_concurrency, is_paused, dedupe_scope,
       retry_delay_seconds, retry_backoff, retry_max_delay_seconds, retry_jitter
FROM task_types WHERE is_active = 1 ORDER BY name

-- name: insert_type
INSERT INTO task_types (name, version, param_schema_json, is_active, max_attempts,
                        claim_timeout, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)

-- name: update_type
UPDATE task_types
SET version = ?, param_schema_json = ?, is_active = ?, max_attempts = ?, claim_timeout = ?,
    updated_at = ?
WHERE id = ?

-- name: insert_task
-- status is 'pending', or 'scheduled' with run_at ahead
INSERT INTO tasks (type_id, type, status, params_json, dedupe_key, priority, max_attempts,
                   claim_timeout, created_at, updated_at, run_at, dedupe_scope, waiting_on,
                   on_parent_failure)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dedupe_key) DO NOTHING

-- name: task_by_dedupe_key
SELECT id, type, type_id, status, params_json, result_json, error_message, priority, progress,
       progress_message, attempts, max_attempts, claimed_by, claimed_at, lease_expires_at,
       completed_at, created_at, updated_at, run_at
FROM tasks WHERE dedupe_key = ?

-- name: count_type_usage
UPDATE task_types SET usage_count = usage_count + ?, last_used_at = ? WHERE id = ?

-- name: insert_event
INSERT INTO task_history (task_id, event, worker_id, message, created_at) VALUES (?, ?, ?, ?, ?)

-- name: expired_leases
SELECT id, attempts, max_attempts, type FROM tasks
WHERE status = 'claimed' AND lease_expires_at <= ?
ORDER BY lease_expires_at LIMIT ?

-- name: release_expired
UPDATE tasks
SET status = 'pending', claimed_by = NULL, lease_expires_at = NULL, updated_at = ?
WHERE id = ?

-- name: fail_expired
UPDATE tasks
SET dedupe_key = CASE WHEN dedupe_scope = 'active' THEN '~' || id ELSE dedupe_key END,
    status = 'failed', error_message = ?, lease_expires_at = NULL, completed_at = ?,
    updated_at = ?
WHERE id = ?

-- name: types_like
SELECT id FROM task_types WHERE name LIKE ? ESCAPE '\'

-- name: next_pending
-- {column}, {index} and {order} come from SQLiteStore.CLAIM_ORDERS
SELECT id, {column} FROM tasks INDEXED BY {index} WHERE status = 'pending'
ORDER BY {order} LIMIT ?

-- name: next_pending_of_type
SELECT id, {column} FROM tasks INDEXED BY {index} WHERE type_id = ? AND status = 'pending'
ORDER BY {order} LIMIT ?

-- name: group_top
-- claim orders that step through an index's groups (see mysql.sql)
SELECT {group} FROM tasks INDEXED BY {index}
WHERE status = 'pending' AND {group} {cmp} ?
ORDER BY {group} {dir} LIMIT 1

-- name: group_top_of_type
SELECT {group} FROM tasks INDEXED BY {index}
WHERE type_id = ? AND status = 'pending' AND {group} {cmp} ?
ORDER BY {group} {dir} LIMIT 1

-- name: group_rows
SELECT id, {column} FROM tasks INDEXED BY {index}
WHERE status = 'pending' AND {group} = ?
ORDER BY id LIMIT ?

-- name: group_rows_of_type
SELECT id, {column} FROM tasks INDEXED BY {index}
WHERE type_id = ? AND status = 'pending' AND {group} = ?
ORDER BY id LIMIT ?

-- name: claim_task
UPDATE tasks
SET status = 'claimed', claimed_by = ?, claimed_at = ?, attempts = attempts + 1,
    lease_expires_at = ? + 1000 * COALESCE(?, claim_timeout, ?),
    progress = 0, progress_message = NULL, updated_at = ?
WHERE id = ? AND status = 'pending'

-- name: lease_state
SELECT id, status, claimed_by, attempts, max_attempts, lease_expires_at AS lease_ms,
       finished_by, finished_status, finished_attempt, result_json, error_message,
       type, claimed_at AS claimed_ms
FROM tasks WHERE id = ?

-- name: claimed_with_key
-- a claim repeated with its request_key: what the first one handed out, while the leases live
SELECT id FROM tasks INDEXED BY tasks_claim_request
WHERE claim_request_key = ? AND claimed_by = ? AND status = 'claimed' AND lease_expires_at > ?

-- name: answered_empty
-- the key's claim already answered no task (CLAIM_KEY_WINDOW): a late first
-- claim of that key claims nothing either
SELECT 1 FROM taskq_claim_requests WHERE request = ? || '/' || ?

-- name: remember_empty
INSERT OR IGNORE INTO taskq_claim_requests (request, created_at) VALUES (? || '/' || ?, ?)

-- name: forget_empty
-- now and then an empty claim clears what is past the window itself
DELETE FROM taskq_claim_requests WHERE rowid IN (
    SELECT rowid FROM taskq_claim_requests WHERE created_at < ? ORDER BY created_at LIMIT 200)

-- name: mark_request_key
UPDATE tasks SET claim_request_key = ? WHERE id = ?

-- name: worker_claimed_before
SELECT 1 FROM task_history WHERE task_id = ? AND event = 'claimed' AND worker_id = ? LIMIT 1

-- name: record_progress
UPDATE tasks
SET progress = ?, progress_message = ?,
    lease_expires_at = ? + 1000 * COALESCE(?, claim_timeout, ?), updated_at = ?
WHERE id = ?

-- name: complete_success
UPDATE tasks
SET finished_by = claimed_by, finished_status = 'completed', finished_attempt = attempts,
    dedupe_key = CASE WHEN dedupe_scope = 'active' THEN '~' || id ELSE dedupe_key END,
    status = 'completed', result_json = ?, error_message = NULL, progress = 100,
    lease_expires_at = NULL, completed_at = ?, updated_at = ?
WHERE id = ?

-- name: complete_retry
UPDATE tasks
SET finished_by = claimed_by, finished_status = 'pending', finished_attempt = attempts,
    status = 'pending', error_message = ?, claimed_by = NULL, lease_expires_at = NULL,
    updated_at = ?
WHERE id = ?

-- name: complete_failure
UPDATE tasks
SET finished_by = claimed_by, finished_status = 'failed', finished_attempt = attempts,
    dedupe_key = CASE WHEN dedupe_scope = 'active' THEN '~' || id ELSE dedupe_key END,
    status = 'failed', error_message = ?, lease_expires_at = NULL, completed_at = ?,
    updated_at = ?
WHERE id = ?

-- name: get_task
SELECT id, type, type_id, status, params_json, result_json, error_message, priority, progress,
       progress_message, attempts, max_attempts, claimed_by, claimed_at, lease_expires_at,
       completed_at, created_at, updated_at, run_at
FROM tasks WHERE id = ?

-- name: task_exists
SELECT 1 FROM tasks WHERE id = ?

-- name: task_history
SELECT event, worker_id, message, created_at FROM task_history WHERE task_id = ? ORDER BY id

-- name: list_tasks
SELECT id, type, type_id, status, params_json, result_json, error_message, priority, progress,
       progress_message, attempts, max_attempts, claimed_by, claimed_at, lease_expires_at,
       completed_at, created_at, updated_at, run_at
FROM tasks WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?

-- name: count_tasks
SELECT COUNT(*) FROM tasks WHERE {where}

-- Concurrency limits, pause, dedupe scope and steering (issue 9 items 3-4;
-- the decisions are in taskq.operations and Store.steer).

-- name: restricted_types
-- types a claim must treat specially: paused, or with a concurrency limit
SELECT id, is_paused, max_concurrency FROM task_types
WHERE is_paused = 1 OR max_concurrency IS NOT NULL

-- name: all_type_ids
SELECT id FROM task_types

-- name: live_leases
-- live leases per limited type, read through tasks_type_claim (left to itself
-- the planner picks tasks_lease: every live lease of every type, then a sort)
SELECT type_id, COUNT(*) FROM tasks INDEXED BY tasks_type_claim
WHERE type_id IN ({ids}) AND status = 'claimed' AND lease_expires_at > ?
GROUP BY type_id

-- name: update_type_settings
UPDATE task_types SET max_concurrency = ?, is_paused = ?, dedupe_scope = ?, updated_at = ?
WHERE id = ?

-- name: steer_state
SELECT id, type, status, params_json, dedupe_key, dedupe_scope, claimed_by FROM tasks WHERE id = ?

-- name: cancel_task
UPDATE tasks
SET dedupe_key = CASE WHEN dedupe_scope = 'active' THEN '~' || id ELSE dedupe_key END,
    status = 'cancelled', lease_expires_at = NULL, completed_at = ?, updated_at = ?
WHERE id = ? AND status IN ('pending', 'scheduled', 'claimed', 'waiting')

-- name: requeue_task
UPDATE tasks
SET status = 'pending', claimed_by = NULL, lease_expires_at = NULL, updated_at = ?
WHERE id = ? AND status = 'claimed'

-- name: reset_task
-- retry (failed, cancelled) and rerun (completed): a fresh start, history kept;
-- dedupe_key is given back for scope 'active'
UPDATE tasks
SET status = 'pending', dedupe_key = ?, attempts = 0, result_json = NULL, progress = 0,
    progress_message = NULL, claimed_by = NULL, claimed_at = NULL, lease_expires_at = NULL,
    completed_at = NULL, updated_at = ?
WHERE id = ? AND status IN (?, ?)

-- name: steer_select
-- bulk steering: the first matching tasks in id order (one more than asked,
-- to tell whether more remain)
SELECT id FROM tasks WHERE {where} ORDER BY id LIMIT ?

-- name: set_type_retry
UPDATE task_types
SET retry_delay_seconds = ?, retry_backoff = ?, retry_max_delay_seconds = ?, retry_jitter = ?
WHERE id = ?

-- name: due_tasks
-- 'scheduled' tasks whose time has come, earliest first (tasks_due); the
-- claim's write lock keeps them so until promote_due
SELECT id, type FROM tasks WHERE status = 'scheduled' AND run_at <= ? ORDER BY run_at LIMIT ?

-- name: promote_due
-- they join the pending queue
UPDATE tasks SET status = 'pending', updated_at = ? WHERE id IN ({ids}) AND status = 'scheduled'

-- name: retry_policies
SELECT t.id, y.retry_delay_seconds, y.retry_backoff, y.retry_max_delay_seconds, y.retry_jitter
FROM tasks t JOIN task_types y ON y.id = t.type_id WHERE t.id IN ({ids})

-- name: complete_retry_later
UPDATE tasks
SET finished_by = claimed_by, finished_status = 'scheduled', finished_attempt = attempts,
    status = 'scheduled', run_at = ?, error_message = ?, claimed_by = NULL,
    lease_expires_at = NULL, updated_at = ?
WHERE id = ?

-- name: release_expired_later
UPDATE tasks
SET status = 'scheduled', run_at = ?, claimed_by = NULL, lease_expires_at = NULL, updated_at = ?
WHERE id = ?

-- name: insert_schedule
INSERT INTO task_schedules (name, type_id, type, params_json, priority, every_seconds, cron,
                            timezone, catch_up, catch_up_limit, is_paused, next_run_at,
                            created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)

-- name: get_schedule
SELECT id, name, type_id, type, params_json, priority, every_seconds, cron, timezone, catch_up,
       catch_up_limit, is_paused, next_run_at, last_run_at, last_task_id, created_at, updated_at
FROM task_schedules WHERE id = ?

-- name: list_schedules
SELECT id, name, type_id, type, params_json, priority, every_seconds, cron, timezone, catch_up,
       catch_up_limit, is_paused, next_run_at, last_run_at, last_task_id, created_at, updated_at
FROM task_schedules ORDER BY id LIMIT ? OFFSET ?

-- name: count_schedules
SELECT COUNT(*) FROM task_schedules

-- name: due_schedules
SELECT id, name, type_id, type, params_json, priority, every_seconds, cron, timezone, catch_up,
       catch_up_limit, is_paused, next_run_at, last_run_at, last_task_id, created_at, updated_at
FROM task_schedules WHERE is_paused = 0 AND next_run_at <= ? ORDER BY next_run_at LIMIT ?

-- name: advance_schedule
-- conditional on the next_run_at the caller read: one request wins an occurrence
UPDATE task_schedules SET next_run_at = ?, last_run_at = ?, updated_at = ?
WHERE id = ? AND next_run_at = ? AND is_paused = 0

-- name: set_schedule_last_task
UPDATE task_schedules SET last_task_id = ? WHERE id = ?

-- name: set_schedule_paused
UPDATE task_schedules SET is_paused = ?, next_run_at = COALESCE(?, next_run_at), updated_at = ?
WHERE id = ?

-- name: delete_schedule
DELETE FROM task_schedules WHERE id = ?

-- Counters for GET /stats (Store._tally): one upsert per changed key.

-- name: count_add
INSERT INTO task_counts (type, status, slot, n) VALUES (?, ?, 0, ?)
ON CONFLICT (type, status, slot) DO UPDATE SET n = n + excluded.n

-- name: run_add
INSERT INTO task_runs (period, type, outcome, bucket, slot, n, run_ms) VALUES (?, ?, ?, ?, 0, ?, ?)
ON CONFLICT (period, type, outcome, bucket, slot)
DO UPDATE SET n = n + excluded.n, run_ms = run_ms + excluded.run_ms

-- name: stats_counts
SELECT type, status, SUM(n) FROM task_counts GROUP BY type, status HAVING SUM(n) <> 0
ORDER BY type, status

-- name: stats_oldest_pending
-- the head of tasks_status_id: one index step, whatever the queue's size
SELECT created_at FROM tasks WHERE status = 'pending' ORDER BY id LIMIT 1

-- name: stats_runs
-- a primary key range of at most 288 periods x types x outcomes x buckets
-- rows, summed here: the answer has one row per type, outcome and bucket
SELECT type, outcome, bucket, SUM(n), SUM(run_ms) FROM task_runs
WHERE period > ? GROUP BY type, outcome, bucket

-- name: stats_leases
-- the live leases only (tasks_lease range), never the finished rows
SELECT claimed_by, COUNT(*) FROM tasks WHERE status = 'claimed' AND lease_expires_at > ?
GROUP BY claimed_by ORDER BY COUNT(*) DESC, claimed_by LIMIT ?

-- API keys: the lookup is one step of the key_hash unique index.

-- name: key_by_hash
SELECT id, name, role, last_used_at AS last_used_ms FROM api_keys WHERE key_hash = ?

-- name: touch_key
UPDATE api_keys SET last_used_at = ? WHERE id = ?

-- name: any_key
SELECT 1 FROM api_keys LIMIT 1

-- name: insert_key
INSERT INTO api_keys (name, role, prefix, key_hash, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (name) DO NOTHING

-- name: get_key
SELECT id, name, role, prefix, created_at, last_used_at FROM api_keys WHERE name = ?

-- name: list_keys
SELECT id, name, role, prefix, created_at, last_used_at FROM api_keys ORDER BY name

-- name: delete_key
DELETE FROM api_keys WHERE name = ?

-- Retention (Store.purge): each read walks an index from its oldest end.

-- name: purge_pick_tasks
SELECT id, type FROM tasks INDEXED BY tasks_retention
WHERE status = ? AND updated_at < ? ORDER BY updated_at LIMIT ?

-- name: purge_tasks
DELETE FROM tasks WHERE id IN ({ids})

-- name: purge_history_head
SELECT id, created_at < ? FROM task_history ORDER BY id LIMIT ?

-- name: purge_history
DELETE FROM task_history WHERE id <= ? AND created_at < ?

-- name: purge_claim_requests
-- empty keyed claims past CLAIM_KEY_WINDOW, oldest first
DELETE FROM taskq_claim_requests WHERE rowid IN (
    SELECT rowid FROM taskq_claim_requests WHERE created_at < ? ORDER BY created_at LIMIT ?)

-- name: backlog_tasks
-- rows purge_pick_tasks would take, counted in tasks_retention up to a cap
SELECT COUNT(*) FROM (SELECT 1 FROM tasks INDEXED BY tasks_retention
                      WHERE status = ? AND updated_at < ? LIMIT ?)

-- name: oldest_history_is_old
SELECT created_at < ? FROM task_history ORDER BY id LIMIT 1

-- name: backlog_history
-- the old rows among the oldest ones (primary key order, as purge reads them)
SELECT COUNT(*) FROM (SELECT created_at FROM task_history ORDER BY id LIMIT ?) WHERE created_at < ?

-- name: backlog_runs
SELECT COUNT(*) FROM (SELECT 1 FROM task_runs WHERE period < ? LIMIT ?)

-- name: backlog_claim_requests
SELECT COUNT(*) FROM (SELECT 1 FROM taskq_claim_requests WHERE created_at < ? LIMIT ?)

-- name: oldest_run_period
SELECT MIN(period) FROM task_runs

-- name: purge_runs
-- periods older than two days, at most 12 periods per batch (the caller
-- passes the bound)
DELETE FROM task_runs WHERE period < ?

-- name: create_session
INSERT INTO dashboard_sessions (token_hash, csrf_token, key_ref, created_at, expires_at)
VALUES (?, ?, ?, ?, ?)

-- name: get_session
SELECT token_hash, csrf_token, key_ref, created_at, expires_at FROM dashboard_sessions
WHERE token_hash = ? AND expires_at > ?

-- name: delete_session
DELETE FROM dashboard_sessions WHERE token_hash = ?

-- name: delete_expired_sessions
DELETE FROM dashboard_sessions WHERE expires_at <= ?

-- name: login_failures
SELECT failures FROM login_failures WHERE address = ? AND window_start > ?

-- name: record_login_failure
INSERT INTO login_failures (address, failures, window_start) VALUES (?, 1, ?)
ON CONFLICT (address) DO UPDATE SET
    failures = CASE WHEN window_start > ? THEN failures + 1 ELSE 1 END,
    window_start = CASE WHEN window_start > ? THEN window_start ELSE excluded.window_start END

-- name: recent_finishers
-- dashboard: workers that finished tasks lately, from tasks_retention's newest completed and
-- failed entries (a bounded number of rows each), holding a task or not
SELECT finished_by, MAX(updated_at) AS last_at, COUNT(*) AS finished FROM (
    SELECT * FROM (SELECT finished_by, updated_at FROM tasks INDEXED BY tasks_retention
                   WHERE status = 'completed' AND updated_at >= ? ORDER BY updated_at DESC LIMIT ?)
    UNION ALL
    SELECT * FROM (SELECT finished_by, updated_at FROM tasks INDEXED BY tasks_retention
                   WHERE status = 'failed' AND updated_at >= ? ORDER BY updated_at DESC LIMIT ?)
) WHERE finished_by IS NOT NULL GROUP BY finished_by ORDER BY last_at DESC LIMIT ?

-- name: claimed_tasks
-- dashboard: who holds what now (reads tasks_status_id's claimed range)
SELECT id, type, claimed_by, claimed_at, lease_expires_at, progress, updated_at
FROM tasks WHERE status = 'claimed' ORDER BY id DESC LIMIT ?

-- name: failed_groups
-- dashboard: failed tasks grouped by the start of their error (tasks_status_id's failed range)
SELECT substr(COALESCE(error_message, ''), 1, 200) AS error, COUNT(*) AS count,
       MAX(completed_at) AS last_at, MAX(id) AS last_id
FROM tasks WHERE status = 'failed'
GROUP BY substr(COALESCE(error_message, ''), 1, 200) ORDER BY count DESC, last_at DESC LIMIT ?

-- name: hourly_runs
-- dashboard chart: finished attempts per hour and outcome over the last day
-- (task_runs' primary key range; 12 five-minute periods an hour)
SELECT period / 12 AS hour, outcome, SUM(n) FROM task_runs
WHERE period > ? GROUP BY period / 12, outcome

-- Recount (Store.recount), inside one write transaction.

-- name: count_drift
SELECT type, status, SUM(actual), SUM(counted) FROM (
    SELECT type, status, COUNT(*) AS actual, 0 AS counted FROM tasks GROUP BY type, status
    UNION ALL
    SELECT type, status, 0, SUM(n) FROM task_counts GROUP BY type, status
) GROUP BY type, status HAVING SUM(actual) <> SUM(counted) ORDER BY type, status

-- name: usage_drift
SELECT tt.id, tt.name, tt.usage_count, present.n FROM task_types tt
JOIN (SELECT type_id, COUNT(*) AS n FROM tasks GROUP BY type_id) AS present
  ON present.type_id = tt.id
WHERE tt.usage_count < present.n ORDER BY tt.id

-- name: usage_raise
UPDATE task_types SET usage_count = MAX(usage_count, ?) WHERE id = ?

-- name: schema_needs_release
SELECT needs_release FROM taskq_schema_version WHERE version = ?

-- name: record_schema_version
INSERT OR REPLACE INTO taskq_schema_version (version, needs_release, applied_at) VALUES (?, ?, ?)

-- Dependencies (taskq.store.dependencies: the rules and which query runs when).

-- name: dep_lock_parents
SELECT id, status FROM tasks WHERE id IN ({ids})

-- name: dep_insert_edge
INSERT INTO task_dependencies (task_id, parent_id) VALUES (?, ?)

-- name: dep_cancel_new
-- a child created after a parent it may not run without had failed
UPDATE tasks
SET dedupe_key = CASE WHEN dedupe_scope = 'active' THEN '~' || id ELSE dedupe_key END,
    cancelled_by = ?, error_message = ?, completed_at = ?, updated_at = ?
WHERE id = ?

-- name: dep_waiting_children
-- a parent's waiting children, through task_dependencies_parent
SELECT t.id, t.type, t.on_parent_failure, t.waiting_on, t.run_at
FROM task_dependencies d JOIN tasks t ON t.id = d.task_id
WHERE d.parent_id = ? AND t.status = 'waiting' ORDER BY t.id

-- name: dep_cancel_children
UPDATE tasks
SET dedupe_key = CASE WHEN dedupe_scope = 'active' THEN '~' || id ELSE dedupe_key END,
    status = 'cancelled', cancelled_by = ?, error_message = ?, completed_at = ?, updated_at = ?
WHERE id IN (SELECT task_id FROM task_dependencies WHERE parent_id = ?)
  AND status = 'waiting' AND on_parent_failure = 'cancel'

-- name: dep_count_settled
UPDATE tasks SET waiting_on = waiting_on - 1
WHERE id IN (SELECT task_id FROM task_dependencies WHERE parent_id = ?) AND status = 'waiting'

-- name: dep_count_settled_run
UPDATE tasks SET waiting_on = waiting_on - 1
WHERE id IN (SELECT task_id FROM task_dependencies WHERE parent_id = ?)
  AND status = 'waiting' AND on_parent_failure = 'run'

-- name: dep_release
UPDATE tasks
SET status = CASE WHEN run_at IS NOT NULL AND run_at > ? THEN 'scheduled' ELSE 'pending' END,
    updated_at = ?
WHERE id IN (SELECT task_id FROM task_dependencies WHERE parent_id = ?)
  AND status = 'waiting' AND waiting_on <= 0

-- name: dep_having_children
SELECT DISTINCT parent_id FROM task_dependencies WHERE parent_id IN ({ids})

-- name: dep_parent_statuses
SELECT p.status FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id WHERE d.task_id = ?

-- name: dep_set_waiting
UPDATE tasks SET status = ?, waiting_on = ?, cancelled_by = NULL WHERE id = ?

-- name: dep_unsettle_run
UPDATE tasks SET waiting_on = waiting_on + 1
WHERE id IN (SELECT task_id FROM task_dependencies WHERE parent_id = ?)
  AND status = 'waiting' AND on_parent_failure = 'run'

-- name: dep_cancelled_children
SELECT t.id, t.type, t.on_parent_failure, t.dedupe_scope, t.dedupe_key, t.params_json
FROM task_dependencies d JOIN tasks t ON t.id = d.task_id
WHERE d.parent_id = ? AND t.status = 'cancelled' AND t.cancelled_by = ? ORDER BY t.id

-- name: dep_parents_status_of
SELECT d.task_id, p.id, p.status FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
WHERE d.task_id IN ({ids})

-- name: dep_recancel
UPDATE tasks SET cancelled_by = ?, error_message = ? WHERE id = ?

-- name: dep_back_keyed
UPDATE tasks
SET status = 'waiting', dedupe_key = ?, waiting_on = ?, cancelled_by = NULL, error_message = NULL,
    completed_at = NULL, updated_at = ?
WHERE id = ? AND status = 'cancelled'

-- name: dep_back
UPDATE tasks
SET status = 'waiting', waiting_on = ?, cancelled_by = NULL, error_message = NULL,
    completed_at = NULL, updated_at = ?
WHERE id IN ({ids}) AND status = 'cancelled'

-- name: dep_task_state
SELECT waiting_on, on_parent_failure, cancelled_by FROM tasks WHERE id = ?

-- name: dep_parents
SELECT p.id, p.type, p.status FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
WHERE d.task_id = ? ORDER BY p.id

-- name: dep_children
SELECT c.id, c.type, c.status FROM task_dependencies d JOIN tasks c ON c.id = d.task_id
WHERE d.parent_id = ? ORDER BY d.task_id LIMIT ?

-- name: dep_children_count
SELECT COUNT(*) FROM task_dependencies WHERE parent_id = ?

-- name: dep_parents_results
-- a claim's fan-in: each parent's result when it alone fits the budget, and its size in bytes
SELECT d.task_id, p.id, p.type, p.status,
       CASE WHEN length(CAST(p.result_json AS BLOB)) <= ? THEN p.result_json END,
       length(CAST(p.result_json AS BLOB))
FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
WHERE d.task_id IN ({ids}) ORDER BY d.task_id, p.id

-- name: dep_node
SELECT id, type, status FROM tasks WHERE id = ?

-- name: dep_nodes
SELECT id, type, status FROM tasks WHERE id IN ({ids})

-- name: dep_edges_around
SELECT task_id, parent_id FROM task_dependencies WHERE task_id IN ({ids})
UNION
SELECT task_id, parent_id FROM task_dependencies WHERE parent_id IN ({ids})

-- name: dep_delete_child_edges
DELETE FROM task_dependencies WHERE task_id IN ({ids})

-- name: dep_delete_parent_edges
DELETE FROM task_dependencies WHERE parent_id IN ({ids})
