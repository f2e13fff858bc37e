-- Named queries for the MySQL/MariaDB store; each block is run by the method
-- of the same name (or the step it names). Placeholders are PyMySQL's %s.
-- Every time comes from the database clock in UTC: UTC_TIMESTAMP(6), never NOW().
-- Claims read tasks only through tasks_claim / tasks_type_claim in index
-- order (FORCE INDEX keeps the planner from preferring a scan-and-sort when
-- its statistics are stale), so a claim never scans or sorts the pending or
-- finished sets; docs/performance.md shows the EXPLAIN.

-- name: session_setup
SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED

-- name: schema_check
-- sent in the same packet as session_setup: every request learns whether the
-- database's schema is the one this release speaks (MySQLStore.check_schema)
SELECT MAX(version), COUNT(*) FROM taskq_schema_version

-- name: wsrep_on
-- [database] cluster = auto on MariaDB: asked in the same packet too
SELECT @@wsrep_on

-- name: schema_needs_release
SELECT needs_release FROM taskq_schema_version WHERE version = %s

-- name: session_setup_cluster
-- on a Galera node, reads first wait for the node to apply what the cluster
-- committed; and a statement whose transaction another node's write aborted
-- answers the conflict (1213) instead of being rerun on its own: the session
-- is in autocommit between transactions, and the server's rerun of the
-- aborted statement committed it without the statements before it (claims
-- answered that were never written, tasks handed out twice; docs/scaling.md)
SET SESSION wsrep_sync_wait = 1, wsrep_retry_autocommit = 0

-- name: ping
SELECT 1 FROM tasks LIMIT 1

-- name: get_type
SELECT id, name, version, param_schema_json, is_active, max_attempts, claim_timeout,
       usage_count, last_used_at, created_at, updated_at, max_concurrency, is_paused, dedupe_scope,
       retry_delay_seconds, retry_backoff, retry_max_delay_seconds, retry_jitter
FROM task_types WHERE name = %s

-- name: get_type_locked
-- a producer's re-register compares the stored definition under the row's lock
SELECT id, name, version, param_schema_json, is_active, max_attempts, claim_timeout,
       usage_count, last_used_at, created_at, updated_at, max_concurrency, is_paused, dedupe_scope,
       retry_delay_seconds, retry_backoff, retry_max_delay_seconds, retry_jitter
FROM task_types WHERE name = %s FOR UPDATE

-- name: insert_type
INSERT INTO task_types (name, version, param_schema_json, is_active, max_attempts,
                        claim_timeout, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))

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

-- name: upsert_type
-- affected rows: 1 = inserted, 2 = updated (updated_at always changes, so an
-- update never counts as "same values" = 1 under CLIENT_FOUND_ROWS).
INSERT INTO task_types (name, version, param_schema_json, is_active, max_attempts,
                        claim_timeout, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE
    version = VALUES(version), param_schema_json = VALUES(param_schema_json),
    is_active = VALUES(is_active),
    max_attempts = VALUES(max_attempts), claim_timeout = VALUES(claim_timeout),
    updated_at = VALUES(updated_at), id = LAST_INSERT_ID(id)

-- name: insert_task
-- status is 'pending', or 'scheduled' with run_at ahead of the database clock
INSERT INTO tasks (type_id, type, status, params_json, dedupe_key, priority, neg_priority,
                   max_attempts, claim_timeout, created_at, updated_at, run_at, dedupe_scope,
                   waiting_on, on_parent_failure)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), %s, %s, %s, %s)

-- name: task_by_dedupe_key
SELECT id, type, type_id, status, params_json, result_json, error_message, priority, progress,
       progress_message, attempts, max_attempts, claimed_by, claimed_at, lease_expires_at,
       completed_at, created_at, updated_at, run_at
FROM tasks WHERE dedupe_key = %s

-- name: count_type_usage
-- run first in a create's transaction: the tasks' foreign key check takes a
-- shared lock on this row, and taking it exclusively after that would let
-- two creates of one type deadlock
UPDATE task_types SET usage_count = usage_count + %s, last_used_at = UTC_TIMESTAMP(6) WHERE id = %s

-- name: insert_event
INSERT INTO task_history (task_id, event, worker_id, message, created_at)
VALUES (%s, %s, %s, %s, UTC_TIMESTAMP(6))

-- name: expired_leases
-- a plain (non-locking) read; each release below is a conditional write
SELECT id, attempts, max_attempts, type FROM tasks FORCE INDEX (tasks_lease)
WHERE status = 'claimed' AND lease_expires_at <= UTC_TIMESTAMP(6)
ORDER BY lease_expires_at LIMIT %s

-- name: release_expired
UPDATE tasks
SET status = 'pending', claimed_by = NULL, lease_expires_at = NULL, updated_at = UTC_TIMESTAMP(6)
WHERE id = %s AND status = 'claimed' AND lease_expires_at <= UTC_TIMESTAMP(6)

-- name: fail_expired
UPDATE tasks
SET dedupe_key = CASE WHEN dedupe_scope = 'active' THEN CONCAT('~', id) ELSE dedupe_key END,
    status = 'failed', error_message = %s, lease_expires_at = NULL,
    completed_at = UTC_TIMESTAMP(6), updated_at = UTC_TIMESTAMP(6)
WHERE id = %s AND status = 'claimed' AND lease_expires_at <= UTC_TIMESTAMP(6)

-- name: types_like
SELECT id FROM task_types WHERE name LIKE %s

-- name: claim_turn
-- the portable claim path takes turns on this row (schema.sql: taskq_locks)
SELECT name FROM taskq_locks WHERE name = 'claim' FOR UPDATE

-- name: claim_next
-- {index}, {type_index}, {order} and {column} in the claim statements come
-- from MySQLStore.CLAIM_ORDERS: each claim order reads its own index in order
-- portable claim of the head of the queue, run while the claim has the turn
-- (claim_turn), so no other claim holds rows on its way; the UPDATE locks
-- the row it takes;
-- LAST_INSERT_ID(id) hands the id back without another query.
UPDATE tasks FORCE INDEX ({index})
SET status = 'claimed', claimed_by = %s, claimed_at = UTC_TIMESTAMP(6), attempts = attempts + 1,
    lease_expires_at = UTC_TIMESTAMP(6) + INTERVAL COALESCE(%s, claim_timeout, %s) SECOND,
    progress = 0, progress_message = NULL, updated_at = UTC_TIMESTAMP(6), id = LAST_INSERT_ID(id)
WHERE status = 'pending'
ORDER BY {order} LIMIT 1

-- name: claim_next_of_type
UPDATE tasks FORCE INDEX ({type_index})
SET status = 'claimed', claimed_by = %s, claimed_at = UTC_TIMESTAMP(6), attempts = attempts + 1,
    lease_expires_at = UTC_TIMESTAMP(6) + INTERVAL COALESCE(%s, claim_timeout, %s) SECOND,
    progress = 0, progress_message = NULL, updated_at = UTC_TIMESTAMP(6), id = LAST_INSERT_ID(id)
WHERE type_id = %s AND status = 'pending'
ORDER BY {order} LIMIT 1

-- name: lock_head
-- portable claim of several tasks: two statements whatever their number
SELECT id FROM tasks FORCE INDEX ({index})
WHERE status = 'pending'
ORDER BY {order} LIMIT %s
FOR UPDATE

-- name: lock_head_of_type
SELECT id FROM tasks FORCE INDEX ({type_index})
WHERE type_id = %s AND status = 'pending'
ORDER BY {order} LIMIT %s
FOR UPDATE

-- name: lock_next
-- SKIP LOCKED claim (MariaDB 10.6+, MySQL 8.0.1+): rows another claimer holds are passed over
SELECT id FROM tasks FORCE INDEX ({index})
WHERE status = 'pending'
ORDER BY {order} LIMIT %s
FOR UPDATE SKIP LOCKED

-- name: lock_next_of_type
SELECT id FROM tasks FORCE INDEX ({type_index})
WHERE type_id = %s AND status = 'pending'
ORDER BY {order} LIMIT %s
FOR UPDATE SKIP LOCKED

-- name: head_of_type
-- one part of a UNION ALL over the matching types; a plain read
(SELECT id, {column}, type_id FROM tasks FORCE INDEX ({type_index})
 WHERE type_id = %s AND status = 'pending'
 ORDER BY {order} LIMIT %s)

-- name: group_top
-- claim orders read against their index's direction (priority ASC, attempts
-- DESC) step through its groups: the next value of {group} past the last one
-- (a backward index read), then that group's tasks oldest first
SELECT {group} FROM tasks FORCE INDEX ({index})
WHERE status = 'pending' AND {group} {cmp} %s
ORDER BY {group} {dir} LIMIT 1

-- name: group_top_of_type
SELECT {group} FROM tasks FORCE INDEX ({type_index})
WHERE type_id = %s AND status = 'pending' AND {group} {cmp} %s
ORDER BY {group} {dir} LIMIT 1

-- name: group_rows
SELECT id FROM tasks FORCE INDEX ({index})
WHERE status = 'pending' AND {group} = %s
ORDER BY id LIMIT %s{lock}

-- name: group_rows_of_type
SELECT id FROM tasks FORCE INDEX ({type_index})
WHERE type_id = %s AND status = 'pending' AND {group} = %s
ORDER BY id LIMIT %s{lock}

-- name: cluster_candidates
-- the cluster claim's plain read of the head of the queue (MySQLStore._pick_cluster),
-- from the index alone
SELECT id, -neg_priority FROM tasks FORCE INDEX (tasks_claim)
WHERE status = 'pending'
ORDER BY neg_priority, id LIMIT %s

-- name: cluster_candidates_of_type
SELECT id, -neg_priority FROM tasks FORCE INDEX (tasks_type_claim)
WHERE type_id = %s AND status = 'pending'
ORDER BY neg_priority, id LIMIT %s

-- name: claim_task
-- the cluster claim takes one candidate: the condition fails when another claim got it first
UPDATE tasks
SET status = 'claimed', claimed_by = %s, claimed_at = UTC_TIMESTAMP(6), attempts = attempts + 1,
    lease_expires_at = UTC_TIMESTAMP(6) + INTERVAL COALESCE(%s, claim_timeout, %s) SECOND,
    progress = 0, progress_message = NULL, updated_at = UTC_TIMESTAMP(6)
WHERE id = %s AND status = 'pending'

-- name: claim_locked
UPDATE tasks
SET status = 'claimed', claimed_by = %s, claimed_at = UTC_TIMESTAMP(6), attempts = attempts + 1,
    lease_expires_at = UTC_TIMESTAMP(6) + INTERVAL COALESCE(%s, claim_timeout, %s) SECOND,
    progress = 0, progress_message = NULL, updated_at = UTC_TIMESTAMP(6)
WHERE id IN ({ids}) AND status = 'pending'

-- name: lease_state
SELECT id, status, claimed_by, attempts, max_attempts,
       COALESCE(lease_expires_at > UTC_TIMESTAMP(6), 0) AS live, type,
       TIMESTAMPDIFF(MICROSECOND, claimed_at, UTC_TIMESTAMP(6)) DIV 1000 AS run_ms
FROM tasks WHERE id = %s FOR UPDATE

-- name: lease_states
-- lease_state for a batch: one statement locks them all, in id order; the
-- finished_* columns and what was stored let a repeated complete be recognised
SELECT id, status, claimed_by, attempts, max_attempts,
       COALESCE(lease_expires_at > UTC_TIMESTAMP(6), 0) AS live,
       finished_by, finished_status, finished_attempt, result_json, error_message,
       type, TIMESTAMPDIFF(MICROSECOND, claimed_at, UTC_TIMESTAMP(6)) DIV 1000 AS run_ms
FROM tasks WHERE id IN ({ids}) ORDER BY id FOR UPDATE

-- name: claimed_with_key
-- a claim repeated with its request_key: what the first one handed out, while the leases live
SELECT id FROM tasks FORCE INDEX (tasks_claim_request)
WHERE claim_request_key = %s AND claimed_by = %s AND status = 'claimed'
  AND lease_expires_at > UTC_TIMESTAMP(6)

-- name: lock_request_key
-- SKIP LOCKED claims do not take turns, so a claim repeated while the first
-- one still runs (its client timed out) waits here for it, then finds its
-- tasks; the name is per worker and key, at most 64 characters
SELECT GET_LOCK(CONCAT('taskq-claim-', SHA1(CONCAT(%s, '/', %s))), %s)

-- name: unlock_request_key
DO RELEASE_LOCK(CONCAT('taskq-claim-', SHA1(CONCAT(%s, '/', %s))))

-- name: answered_empty
-- the key's claim already answered no task (CLAIM_KEY_WINDOW): a late first
-- claim of that key claims nothing either
SELECT 1 FROM taskq_claim_requests WHERE request_hash = SHA1(CONCAT(%s, '/', %s))

-- name: remember_empty
INSERT IGNORE INTO taskq_claim_requests (request_hash, created_at)
VALUES (SHA1(CONCAT(%s, '/', %s)), UTC_TIMESTAMP(6))

-- name: forget_empty
-- now and then an empty claim clears what is past the window itself, so the
-- table keeps up with polling however rarely retention rounds run
DELETE FROM taskq_claim_requests
WHERE created_at < UTC_TIMESTAMP(6) - INTERVAL %s SECOND ORDER BY created_at LIMIT 200

-- name: mark_request_key
UPDATE tasks SET claim_request_key = %s WHERE id IN ({ids})

-- name: worker_claimed_before
SELECT 1 FROM task_history WHERE task_id = %s AND event = 'claimed' AND worker_id = %s LIMIT 1

-- name: record_progress
UPDATE tasks
SET progress = %s, progress_message = %s,
    lease_expires_at = UTC_TIMESTAMP(6) + INTERVAL COALESCE(%s, claim_timeout, %s) SECOND,
    updated_at = UTC_TIMESTAMP(6)
WHERE id = %s

-- name: complete_success
-- finished_* come first in SET: MySQL assigns left to right, with the new values
UPDATE tasks
SET finished_by = claimed_by, finished_status = 'completed', finished_attempt = attempts,
    dedupe_key = CASE WHEN dedupe_scope = 'active' THEN CONCAT('~', id) ELSE dedupe_key END,
    status = 'completed', result_json = %s, error_message = NULL, progress = 100,
    lease_expires_at = NULL, completed_at = UTC_TIMESTAMP(6), updated_at = UTC_TIMESTAMP(6)
WHERE id = %s

-- name: complete_retry
UPDATE tasks
SET finished_by = claimed_by, finished_status = 'pending', finished_attempt = attempts,
    status = 'pending', error_message = %s, claimed_by = NULL, lease_expires_at = NULL,
    updated_at = UTC_TIMESTAMP(6)
WHERE id = %s

-- name: complete_failure
UPDATE tasks
SET finished_by = claimed_by, finished_status = 'failed', finished_attempt = attempts,
    dedupe_key = CASE WHEN dedupe_scope = 'active' THEN CONCAT('~', id) ELSE dedupe_key END,
    status = 'failed', error_message = %s, lease_expires_at = NULL,
    completed_at = UTC_TIMESTAMP(6), updated_at = UTC_TIMESTAMP(6)
WHERE id = %s

-- name: get_task
SELECT id, type, type_id, status, params_json, result_json, error_message, priority, progress,
       progress_message, attempts, max_attempts, claimed_by, claimed_at, lease_expires_at,
       completed_at, created_at, updated_at, run_at
FROM tasks WHERE id = %s

-- name: get_tasks
SELECT id, type, type_id, status, params_json, result_json, error_message, priority, progress,
       progress_message, attempts, max_attempts, claimed_by, claimed_at, lease_expires_at,
       completed_at, created_at, updated_at, run_at
FROM tasks WHERE id IN ({ids})

-- name: task_exists
SELECT 1 FROM tasks WHERE id = %s

-- name: task_history
SELECT event, worker_id, message, created_at FROM task_history WHERE task_id = %s ORDER BY id

-- name: list_tasks
SELECT id, type, type_id, status, params_json, result_json, error_message, priority, progress,
       progress_message, attempts, max_attempts, claimed_by, claimed_at, lease_expires_at,
       completed_at, created_at, updated_at, run_at
FROM tasks WHERE {where} ORDER BY {order} LIMIT %s OFFSET %s

-- name: count_tasks
SELECT COUNT(*) FROM tasks WHERE {where}

-- Concurrency limits, pause, dedupe scope and steering (issue 9 items 3-4;
-- the decisions are in taskq.operations and Store.steer).

-- name: restricted_types
-- types a claim must treat specially: paused, or with a concurrency limit
-- (a plain read of a small table; no type restricted = the claim is unchanged)
SELECT id, is_paused, max_concurrency FROM task_types
WHERE is_paused = 1 OR max_concurrency IS NOT NULL

-- name: all_type_ids
SELECT id FROM task_types

-- name: type_turns
-- a claim that may take tasks of limited types locks their rows in
-- taskq_locks first, in name order and before any task row, so claims of a
-- limited type take turns while counting its leases (never deadlocking each
-- other) and claims that touch no limited type take no such lock
SELECT name FROM taskq_locks WHERE name IN ({names}) ORDER BY name FOR UPDATE

-- name: add_type_turn
INSERT IGNORE INTO taskq_locks (name) VALUES (%s)

-- name: drop_type_turns
-- on a cluster the claim rewrites its limited types' turn rows (locked by
-- type_turns), so claims of them through two nodes conflict at COMMIT
DELETE FROM taskq_locks WHERE name IN ({names})

-- name: put_type_turns
INSERT INTO taskq_locks (name) VALUES {rows}

-- name: live_leases
SELECT type_id, COUNT(*) FROM tasks FORCE INDEX (tasks_type_claim)
WHERE type_id IN ({ids}) AND status = 'claimed' AND lease_expires_at > UTC_TIMESTAMP(6)
GROUP BY type_id

-- name: update_type_settings
UPDATE task_types SET max_concurrency = %s, is_paused = %s, dedupe_scope = %s,
    updated_at = UTC_TIMESTAMP(6)
WHERE id = %s

-- name: steer_states
-- the tasks a steering call acts on, locked in id order in one statement
SELECT id, type, status, params_json, dedupe_key, dedupe_scope, claimed_by
FROM tasks WHERE id IN ({ids}) ORDER BY id FOR UPDATE

-- name: cancel_task
UPDATE tasks
SET dedupe_key = CASE WHEN dedupe_scope = 'active' THEN CONCAT('~', id) ELSE dedupe_key END,
    status = 'cancelled', lease_expires_at = NULL, completed_at = UTC_TIMESTAMP(6),
    updated_at = UTC_TIMESTAMP(6)
WHERE id = %s AND status IN ('pending', 'scheduled', 'claimed', 'waiting')

-- name: requeue_task
UPDATE tasks
SET status = 'pending', claimed_by = NULL, lease_expires_at = NULL, updated_at = UTC_TIMESTAMP(6)
WHERE id = %s AND status = 'claimed'

-- name: reset_task
-- retry (failed, cancelled) and rerun (completed): a fresh start, history kept;
-- dedupe_key is given back for scope 'active'
UPDATE tasks
SET status = 'pending', dedupe_key = %s, attempts = 0, result_json = NULL, progress = 0,
    progress_message = NULL, claimed_by = NULL, claimed_at = NULL, lease_expires_at = NULL,
    completed_at = NULL, updated_at = UTC_TIMESTAMP(6)
WHERE id = %s AND status IN (%s, %s)

-- name: steer_select
SELECT id FROM tasks WHERE {where} ORDER BY id LIMIT %s

-- name: db_now
SELECT UTC_TIMESTAMP(6)

-- name: set_type_retry
UPDATE task_types
SET retry_delay_seconds = %s, retry_backoff = %s, retry_max_delay_seconds = %s, retry_jitter = %s
WHERE id = %s

-- name: due_tasks
-- 'scheduled' tasks whose time has come, earliest first, through tasks_due;
-- run while the claim has the turn (portable path)
SELECT id, type FROM tasks FORCE INDEX (tasks_due)
WHERE status = 'scheduled' AND run_at <= UTC_TIMESTAMP(6)
ORDER BY run_at LIMIT %s
FOR UPDATE

-- name: due_tasks_skip_locked
SELECT id, type FROM tasks FORCE INDEX (tasks_due)
WHERE status = 'scheduled' AND run_at <= UTC_TIMESTAMP(6)
ORDER BY run_at LIMIT %s
FOR UPDATE SKIP LOCKED

-- name: due_tasks_cluster
-- on a multi-primary cluster a plain read: promote_due repeats the status
-- condition, and two nodes promoting the same row conflict at COMMIT (1213, run again)
SELECT id, type FROM tasks FORCE INDEX (tasks_due)
WHERE status = 'scheduled' AND run_at <= UTC_TIMESTAMP(6)
ORDER BY run_at LIMIT %s

-- name: promote_due
UPDATE tasks SET status = 'pending', updated_at = UTC_TIMESTAMP(6)
WHERE id IN ({ids}) AND status = 'scheduled'

-- name: retry_policies
-- a plain read: task_types is never locked by a completion
SELECT t.id, y.retry_delay_seconds, y.retry_backoff, y.retry_max_delay_seconds, y.retry_jitter
FROM tasks t JOIN task_types y ON y.id = t.type_id WHERE t.id IN ({ids})

-- name: complete_retry_later
UPDATE tasks
SET finished_by = claimed_by, finished_status = 'scheduled', finished_attempt = attempts,
    status = 'scheduled', run_at = UTC_TIMESTAMP(6) + INTERVAL %s SECOND, error_message = %s,
    claimed_by = NULL, lease_expires_at = NULL, updated_at = UTC_TIMESTAMP(6)
WHERE id = %s

-- name: release_expired_later
UPDATE tasks
SET status = 'scheduled', run_at = UTC_TIMESTAMP(6) + INTERVAL %s SECOND, claimed_by = NULL,
    lease_expires_at = NULL, updated_at = UTC_TIMESTAMP(6)
WHERE id = %s AND status = 'claimed' AND lease_expires_at <= UTC_TIMESTAMP(6)

-- name: insert_schedule
INSERT INTO task_schedules (name, type_id, type, params_json, priority, every_seconds, cron,
                            timezone, catch_up, catch_up_limit, is_paused, next_run_at,
                            created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))

-- name: get_schedule
SELECT id, name, type_id, type, params_json, priority, every_seconds, cron, timezone, catch_up,
       catch_up_limit, is_paused, next_run_at, last_run_at, last_task_id, created_at, updated_at
FROM task_schedules WHERE id = %s

-- name: list_schedules
SELECT id, name, type_id, type, params_json, priority, every_seconds, cron, timezone, catch_up,
       catch_up_limit, is_paused, next_run_at, last_run_at, last_task_id, created_at, updated_at
FROM task_schedules ORDER BY id LIMIT %s OFFSET %s

-- name: count_schedules
SELECT COUNT(*) FROM task_schedules

-- name: due_schedules
-- every claim runs this: one range read of task_schedules_due, empty when none is due
SELECT id, name, type_id, type, params_json, priority, every_seconds, cron, timezone, catch_up,
       catch_up_limit, is_paused, next_run_at, last_run_at, last_task_id, created_at, updated_at
FROM task_schedules FORCE INDEX (task_schedules_due)
WHERE is_paused = 0 AND next_run_at <= UTC_TIMESTAMP(6) ORDER BY next_run_at LIMIT %s

-- name: advance_schedule
-- conditional on the next_run_at the caller read: of the requests that saw
-- the same occurrence due, one matches; the others wait for its commit and
-- then match nothing
UPDATE task_schedules
SET next_run_at = %s, last_run_at = UTC_TIMESTAMP(6), updated_at = UTC_TIMESTAMP(6)
WHERE id = %s AND next_run_at = %s AND is_paused = 0

-- name: set_schedule_last_task
UPDATE task_schedules SET last_task_id = %s WHERE id = %s

-- name: set_schedule_paused
UPDATE task_schedules
SET is_paused = %s, next_run_at = COALESCE(%s, next_run_at), updated_at = UTC_TIMESTAMP(6)
WHERE id = %s

-- name: delete_schedule
DELETE FROM task_schedules WHERE id = %s

-- Counters for GET /stats (Store._tally), written in the transaction that
-- changes the status. A plain UPDATE of an existing row takes only that
-- row's lock; the upsert (which also locks the gap under a duplicate-key
-- check) runs only the first time a key is seen.

-- name: count_update
UPDATE task_counts SET n = n + %s WHERE type = %s AND status = %s AND slot = %s

-- name: count_insert
INSERT INTO task_counts (type, status, slot, n) VALUES (%s, %s, %s, %s)
ON DUPLICATE KEY UPDATE n = n + VALUES(n)

-- name: run_update
-- the current 5-minute period, as current_period reads it
UPDATE task_runs SET n = n + %s, run_ms = run_ms + %s
WHERE period = UNIX_TIMESTAMP() DIV 300 AND type = %s AND outcome = %s AND bucket = %s AND slot = %s

-- name: run_insert
INSERT INTO task_runs (period, type, outcome, bucket, slot, n, run_ms)
VALUES (UNIX_TIMESTAMP() DIV 300, %s, %s, %s, %s, %s, %s)
ON DUPLICATE KEY UPDATE n = n + VALUES(n), run_ms = run_ms + VALUES(run_ms)

-- name: current_period
SELECT UNIX_TIMESTAMP() DIV 300

-- name: stats_counts
SELECT type, status, SUM(n) FROM task_counts GROUP BY type, status HAVING SUM(n) <> 0
ORDER BY type, status

-- name: stats_oldest_pending
-- the head of tasks_status_id: one index dive, whatever the queue's size
SELECT TIMESTAMPDIFF(MICROSECOND, created_at, UTC_TIMESTAMP(6)) / 1000000
FROM tasks FORCE INDEX (tasks_status_id) WHERE status = 'pending' ORDER BY id LIMIT 1

-- name: stats_runs
-- a primary key range of at most 288 periods x types x outcomes x buckets
-- rows, summed here: the answer has one row per type, outcome and bucket
SELECT type, outcome, bucket, SUM(n), SUM(run_ms) FROM task_runs
WHERE period > %s GROUP BY type, outcome, bucket

-- name: stats_leases
-- the live leases only (tasks_lease range), never the finished rows
SELECT claimed_by, COUNT(*) FROM tasks FORCE INDEX (tasks_lease)
WHERE status = 'claimed' AND lease_expires_at > UTC_TIMESTAMP(6)
GROUP BY claimed_by ORDER BY COUNT(*) DESC, claimed_by LIMIT %s

-- API keys: the lookup is one step of the api_keys_hash unique index.

-- name: key_by_hash
SELECT id, name, role,
       COALESCE(last_used_at < UTC_TIMESTAMP(6) - INTERVAL 60 SECOND, 1) AS stale
FROM api_keys WHERE key_hash = %s

-- name: touch_key
UPDATE api_keys SET last_used_at = UTC_TIMESTAMP(6) WHERE id = %s

-- name: any_key
SELECT 1 FROM api_keys LIMIT 1

-- name: insert_key
INSERT INTO api_keys (name, role, prefix, key_hash, created_at)
VALUES (%s, %s, %s, %s, UTC_TIMESTAMP(6))

-- name: get_key
SELECT id, name, role, prefix, created_at, last_used_at FROM api_keys WHERE name = %s

-- name: list_keys
SELECT id, name, role, prefix, created_at, last_used_at FROM api_keys ORDER BY name

-- name: delete_key
DELETE FROM api_keys WHERE name = %s

-- Retention (Store.purge): each read walks an index from its oldest end and
-- locks only the finished rows it returns (READ COMMITTED: no gap locks),
-- rows no claim reads.

-- name: purge_pick_tasks
SELECT id, type FROM tasks FORCE INDEX (tasks_retention)
WHERE status = %s AND updated_at < UTC_TIMESTAMP(6) - INTERVAL %s SECOND
ORDER BY updated_at LIMIT %s FOR UPDATE

-- name: purge_tasks
DELETE FROM tasks WHERE id IN ({ids})

-- name: purge_history_head
SELECT id, created_at < UTC_TIMESTAMP(6) - INTERVAL %s SECOND FROM task_history
ORDER BY id LIMIT %s

-- name: purge_history
-- the head rows just read were all old; the time condition again keeps a
-- late-committing row with a low id
DELETE FROM task_history WHERE id <= %s AND created_at < UTC_TIMESTAMP(6) - INTERVAL %s SECOND

-- name: purge_claim_requests
-- empty keyed claims past CLAIM_KEY_WINDOW, oldest first
DELETE FROM taskq_claim_requests
WHERE created_at < UTC_TIMESTAMP(6) - INTERVAL %s SECOND ORDER BY created_at LIMIT %s

-- name: backlog_tasks
-- rows purge_pick_tasks would take, counted in tasks_retention up to a cap
SELECT COUNT(*) FROM (
    SELECT 1 FROM tasks FORCE INDEX (tasks_retention)
    WHERE status = %s AND updated_at < UTC_TIMESTAMP(6) - INTERVAL %s SECOND LIMIT %s) old

-- name: oldest_history_is_old
SELECT created_at < UTC_TIMESTAMP(6) - INTERVAL %s SECOND FROM task_history ORDER BY id LIMIT 1

-- name: backlog_history
-- the old rows among the oldest ones (primary key order, as purge reads them)
SELECT COUNT(*) FROM (SELECT created_at FROM task_history ORDER BY id LIMIT %s) head
WHERE created_at < UTC_TIMESTAMP(6) - INTERVAL %s SECOND

-- name: backlog_runs
SELECT COUNT(*) FROM (SELECT 1 FROM task_runs WHERE period < %s LIMIT %s) old

-- name: backlog_claim_requests
SELECT COUNT(*) FROM (SELECT 1 FROM taskq_claim_requests FORCE INDEX (taskq_claim_requests_age)
    WHERE created_at < UTC_TIMESTAMP(6) - INTERVAL %s SECOND LIMIT %s) old

-- name: oldest_run_period
-- a plain read: a subquery inside the DELETE would take shared locks on the
-- rows it reads, the current period's among them, and deadlock completers
SELECT MIN(period) FROM task_runs

-- name: purge_runs
-- periods older than two days, at most 12 periods per batch (the caller
-- passes the bound); locks only the old rows it deletes
DELETE FROM task_runs WHERE period < %s

-- name: create_session
INSERT INTO dashboard_sessions (token_hash, csrf_token, key_ref, created_at, expires_at)
VALUES (%s, %s, %s, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL %s SECOND)

-- name: get_session
SELECT token_hash, csrf_token, key_ref, created_at, expires_at FROM dashboard_sessions
WHERE token_hash = %s AND expires_at > UTC_TIMESTAMP(6)

-- name: delete_session
DELETE FROM dashboard_sessions WHERE token_hash = %s

-- name: delete_expired_sessions
DELETE FROM dashboard_sessions WHERE expires_at <= UTC_TIMESTAMP(6) LIMIT 100

-- name: login_failures
SELECT failures FROM login_failures
WHERE address = %s AND window_start > UTC_TIMESTAMP(6) - INTERVAL %s SECOND

-- name: record_login_failure
-- one statement, so concurrent failures from one address all count
INSERT INTO login_failures (address, failures, window_start) VALUES (%s, 1, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE
    failures = IF(window_start > UTC_TIMESTAMP(6) - INTERVAL %s SECOND, failures + 1, 1),
    window_start = IF(failures = 1, UTC_TIMESTAMP(6), window_start)

-- name: claimed_tasks
-- dashboard: who holds what now (reads tasks_status_id's claimed range)
SELECT id, type, claimed_by, claimed_at, lease_expires_at, progress, updated_at
FROM tasks FORCE INDEX (tasks_status_id) WHERE status = 'claimed' ORDER BY id DESC LIMIT %s

-- name: recent_finishers
-- dashboard: workers that finished tasks lately, from tasks_retention's newest completed and
-- failed entries (read backwards, a bounded number of rows each), holding a task or not
SELECT finished_by, MAX(updated_at) AS last_at, COUNT(*) AS finished FROM (
    (SELECT finished_by, updated_at FROM tasks FORCE INDEX (tasks_retention)
     WHERE status = 'completed' AND updated_at >= UTC_TIMESTAMP(6) - INTERVAL %s SECOND
     ORDER BY updated_at DESC LIMIT %s)
    UNION ALL
    (SELECT finished_by, updated_at FROM tasks FORCE INDEX (tasks_retention)
     WHERE status = 'failed' AND updated_at >= UTC_TIMESTAMP(6) - INTERVAL %s SECOND
     ORDER BY updated_at DESC LIMIT %s)
) recent WHERE finished_by IS NOT NULL GROUP BY finished_by ORDER BY last_at DESC LIMIT %s

-- name: failed_groups
-- dashboard: failed tasks grouped by the start of their error (tasks_status_id's failed range)
SELECT LEFT(COALESCE(error_message, ''), 200) AS error, COUNT(*) AS count,
       MAX(completed_at) AS last_at, MAX(id) AS last_id
FROM tasks FORCE INDEX (tasks_status_id) WHERE status = 'failed'
GROUP BY LEFT(COALESCE(error_message, ''), 200) ORDER BY count DESC, last_at DESC LIMIT %s

-- name: hourly_runs
-- dashboard chart: finished attempts per hour and outcome over the last day
-- (task_runs' primary key range; 12 five-minute periods an hour)
SELECT period DIV 12 AS hour, outcome, SUM(n), UNIX_TIMESTAMP() DIV 3600 FROM task_runs
WHERE period > UNIX_TIMESTAMP() DIV 300 - 288 GROUP BY period DIV 12, outcome

-- name: current_hour
SELECT UNIX_TIMESTAMP() DIV 3600

-- Recount (Store.recount): the maintained counters against the rows they count.

-- name: count_drift
-- one statement, so one snapshot: the tasks and the counters are read at the
-- same moment, and the difference added as a delta stays right while other
-- transactions go on adding theirs
SELECT type, status, SUM(actual), SUM(counted) FROM (
    SELECT type, status, COUNT(*) AS actual, 0 AS counted FROM tasks GROUP BY type, status
    UNION ALL
    SELECT type, status, 0, SUM(n) FROM task_counts GROUP BY type, status
) AS both_sides GROUP BY type, status HAVING SUM(actual) <> SUM(counted) ORDER BY type, status

-- name: usage_drift
-- usage_count counts the tasks ever made (retention deletes rows, not uses):
-- a recount can only raise it to the tasks still present
SELECT tt.id, tt.name, tt.usage_count, present.n FROM task_types tt
JOIN (SELECT type_id, COUNT(*) AS n FROM tasks GROUP BY type_id) AS present
  ON present.type_id = tt.id
WHERE tt.usage_count < present.n ORDER BY tt.id

-- name: usage_raise
UPDATE task_types SET usage_count = GREATEST(usage_count, %s) WHERE id = %s

-- Dependencies (taskq.store.dependencies: the rules and which query runs when).
-- A parent's children are reached through task_dependencies_parent; the
-- locking reads lock them in id order (that index's order), so two parents'
-- completions never take one child's lock in opposite orders.

-- name: dep_lock_parents
-- a new child's parents, locked: none of them finishes unseen before the child's edges commit
SELECT id, status FROM tasks WHERE id IN ({ids}) ORDER BY id FOR UPDATE

-- name: dep_insert_edge
INSERT INTO task_dependencies (task_id, parent_id) VALUES (%s, %s)

-- name: dep_cancel_new
UPDATE tasks
SET dedupe_key = CASE WHEN dedupe_scope = 'active' THEN CONCAT('~', id) ELSE dedupe_key END,
    cancelled_by = %s, error_message = %s, completed_at = %s, updated_at = %s
WHERE id = %s

-- name: dep_waiting_children
SELECT t.id, t.type, t.on_parent_failure, t.waiting_on, t.run_at
FROM task_dependencies d JOIN tasks t ON t.id = d.task_id
WHERE d.parent_id = %s AND t.status = 'waiting' ORDER BY d.task_id FOR UPDATE

-- name: dep_cancel_children
UPDATE tasks t JOIN task_dependencies d ON d.task_id = t.id
SET t.dedupe_key = CASE WHEN t.dedupe_scope = 'active' THEN CONCAT('~', t.id) ELSE t.dedupe_key END,
    t.status = 'cancelled', t.cancelled_by = %s, t.error_message = %s, t.completed_at = %s,
    t.updated_at = %s
WHERE d.parent_id = %s AND t.status = 'waiting' AND t.on_parent_failure = 'cancel'

-- name: dep_count_settled
UPDATE tasks t JOIN task_dependencies d ON d.task_id = t.id
SET t.waiting_on = t.waiting_on - 1
WHERE d.parent_id = %s AND t.status = 'waiting'

-- name: dep_count_settled_run
UPDATE tasks t JOIN task_dependencies d ON d.task_id = t.id
SET t.waiting_on = t.waiting_on - 1
WHERE d.parent_id = %s AND t.status = 'waiting' AND t.on_parent_failure = 'run'

-- name: dep_release
UPDATE tasks t JOIN task_dependencies d ON d.task_id = t.id
SET t.status = CASE WHEN t.run_at IS NOT NULL AND t.run_at > %s THEN 'scheduled' ELSE 'pending' END,
    t.updated_at = %s
WHERE d.parent_id = %s AND t.status = 'waiting' AND t.waiting_on <= 0

-- name: dep_having_children
SELECT DISTINCT parent_id FROM task_dependencies WHERE parent_id IN ({ids})

-- name: dep_parent_statuses
-- a retried task's parents, locked (one of them may be completing right now)
SELECT p.status FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
WHERE d.task_id = %s ORDER BY p.id FOR UPDATE

-- name: dep_set_waiting
UPDATE tasks SET status = %s, waiting_on = %s, cancelled_by = NULL WHERE id = %s

-- name: dep_unsettle_run
UPDATE tasks t JOIN task_dependencies d ON d.task_id = t.id
SET t.waiting_on = t.waiting_on + 1
WHERE d.parent_id = %s AND t.status = 'waiting' AND t.on_parent_failure = 'run'

-- name: dep_cancelled_children
SELECT t.id, t.type, t.on_parent_failure, t.dedupe_scope, t.dedupe_key, t.params_json
FROM task_dependencies d JOIN tasks t ON t.id = d.task_id
WHERE d.parent_id = %s AND t.status = 'cancelled' AND t.cancelled_by = %s
ORDER BY d.task_id FOR UPDATE

-- name: dep_parents_status_of
SELECT d.task_id, p.id, p.status FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
WHERE d.task_id IN ({ids}) ORDER BY p.id FOR UPDATE

-- name: dep_recancel
UPDATE tasks SET cancelled_by = %s, error_message = %s WHERE id = %s

-- name: dep_back_keyed
UPDATE tasks
SET status = 'waiting', dedupe_key = %s, waiting_on = %s, cancelled_by = NULL,
    error_message = NULL, completed_at = NULL, updated_at = %s
WHERE id = %s AND status = 'cancelled'

-- name: dep_back
UPDATE tasks
SET status = 'waiting', waiting_on = %s, cancelled_by = NULL, error_message = NULL,
    completed_at = NULL, updated_at = %s
WHERE id IN ({ids}) AND status = 'cancelled'

-- name: dep_task_state
SELECT waiting_on, on_parent_failure, cancelled_by FROM tasks WHERE id = %s

-- name: dep_parents
SELECT p.id, p.type, p.status FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
WHERE d.task_id = %s ORDER BY p.id

-- name: dep_children
SELECT c.id, c.type, c.status FROM task_dependencies d JOIN tasks c ON c.id = d.task_id
WHERE d.parent_id = %s ORDER BY d.task_id LIMIT %s

-- name: dep_children_count
SELECT COUNT(*) FROM task_dependencies WHERE parent_id = %s

-- name: dep_parents_results
SELECT d.task_id, p.id, p.type, p.status,
       CASE WHEN LENGTH(p.result_json) <= %s THEN p.result_json END, LENGTH(p.result_json)
FROM task_dependencies d JOIN tasks p ON p.id = d.parent_id
WHERE d.task_id IN ({ids}) ORDER BY d.task_id, p.id

-- name: dep_node
SELECT id, type, status FROM tasks WHERE id = %s

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
