#!/usr/bin/env bash
# A taskq worker in plain shell (curl + jq), to show the whole HTTP contract.
#
#   TASKQ_URL=http://127.0.0.1:8080 examples/worker.sh ['Demo.%']
#
# Environment: TASKQ_URL (the API base, e.g. https://example.com/cgi-bin/api.py),
# TASKQ_API_KEY (if the API has one), TASKQ_WORKER_ID (default host-pid),
# TASKQ_ONCE=1 to exit when the queue is empty instead of polling,
# TASKQ_TASK_TYPE_ID (claim only that type id), TASKQ_SORT_BY (created_at,
# priority, id or attempts) and TASKQ_SORT_ORDER (ASC or DESC) for the claim order.
# The optional argument is a type pattern (SQL LIKE: % any run, _ one character).
#
# The loop: claim -> work (with a heartbeat) -> complete. Replace handle() with your work:
# it gets the type and the params JSON, prints the result JSON on stdout and exits 0,
# or exits non-zero with the reason on stderr. For real use prefer
# `python3 -m taskq.worker --exec ./your-command`: it does all of this plus retries,
# batches, concurrency, timeouts and graceful shutdown.
set -u
URL="${TASKQ_URL:?set TASKQ_URL, e.g. http://127.0.0.1:8080}"
WORKER="${TASKQ_WORKER_ID:-$(hostname)-$$}"
PATTERN="${1:-}"
HEARTBEAT="${TASKQ_HEARTBEAT:-60}"  # seconds; well under the lease (claim_timeout, 300 by default)

handle() {  # TYPE PARAMS_JSON -> result JSON on stdout
    jq -c --arg type "$1" '{type: $type, echo: ., keys: (keys? // [])}' <<<"$2"
}

api() {  # METHOD PATH [JSON BODY] -> the JSON answer on stdout (also for 4xx answers)
    local auth=()
    [ -n "${TASKQ_API_KEY:-}" ] && auth=(-H "X-API-Key: $TASKQ_API_KEY")
    curl -sS -X "$1" ${auth[@]+"${auth[@]}"} -H 'Content-Type: application/json' \
        ${3:+--data-binary "$3"} "$URL$2"
}

nap() {  # SECONDS: sleep, but wake at once on SIGTERM/SIGINT (bash runs a trap only
          # after the foreground command ends; `wait` is cut short by it)
    sleep "$1" & local pid=$!
    wait "$pid" 2>/dev/null
    kill "$pid" 2>/dev/null
}

heartbeat() {  # TASK_ID: extend the lease every $HEARTBEAT seconds until killed
    local nap
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    while :; do
        sleep "$HEARTBEAT" & nap=$!
        wait "$nap"
        api POST "/tasks/$1/progress" "$(jq -nc --arg w "$WORKER" '{worker_id: $w, progress: 0}')" >/dev/null
    done
}

stop=
trap 'stop=1' TERM INT   # finish the current task, then exit
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
idle=1

while [ -z "$stop" ]; do
    # 1. Claim: 200 with the task in full, or 404 {"success": false, "message": "No available tasks"}.
    claim=$(jq -nc --arg w "$WORKER" --arg p "$PATTERN" --arg t "${TASKQ_TASK_TYPE_ID:-}" \
        --arg by "${TASKQ_SORT_BY:-}" --arg order "${TASKQ_SORT_ORDER:-}" \
        '{worker_id: $w} + (if $p == "" then {} else {type_pattern: $p} end)
         + (if $t == "" then {} else {task_type_id: ($t | tonumber)} end)
         + (if $by == "" then {} else {sort_by: $by} end)
         + (if $order == "" then {} else {sort_order: $order} end)')
    answer=$(api POST /tasks/claim "$claim") || { nap 5; continue; }   # network error
    if [ "$(jq -r '.success' <<<"$answer")" != true ]; then
        [ "$(jq -r '.message' <<<"$answer")" = "No available tasks" ] || echo "claim: $answer" >&2
        [ -n "${TASKQ_ONCE:-}" ] && break
        nap "$idle"; [ "$idle" -lt 16 ] && idle=$((idle * 2))   # back off while empty
        continue
    fi
    idle=1
    id=$(jq -r '.data.id' <<<"$answer")
    type=$(jq -r '.data.type' <<<"$answer")
    params=$(jq -c '.data.params' <<<"$answer")

    # 2. Work, with a heartbeat: progress extends the lease; a 409/403 means it is lost.
    heartbeat "$id" &
    beat=$!
    if result=$(handle "$type" "$params" 2>"$errors"); then
        done_body=$(jq -nc --arg w "$WORKER" --argjson r "$result" '{worker_id: $w, success: true, result: $r}')
    else
        done_body=$(jq -nc --arg w "$WORKER" --arg e "$(tail -c 2000 "$errors")" '{worker_id: $w, success: false, error: $e}')
    fi
    kill "$beat" 2>/dev/null; wait "$beat" 2>/dev/null

    # 3. Complete: {"id", "status": completed | pending (will retry) | failed, "attempts", "will_retry"}.
    #    409 = the lease expired and another worker has the task; nothing was changed.
    answer=$(api POST "/tasks/$id/complete" "$done_body")
    echo "task=$id type=$type outcome=$(jq -r 'if .success then .data.status else "error: " + .error end' <<<"$answer")" >&2
done
