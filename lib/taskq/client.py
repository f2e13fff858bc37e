"""A small HTTP client for the taskq API: stdlib only (urllib, json).

    from taskq.client import Client, NotFound

    api = Client("https://example.com/cgi-bin/api.py", api_key="...")
    task = api.create_task("email.send", {"to": "a@example.com"})
    claimed = api.claim("worker-1")            # a task dict, or None when the queue is empty
    api.complete(claimed["id"], "worker-1", result={"sent": True})

Every method returns the `data` of the API's JSON envelope as plain dicts and
lists. An error answer raises the ApiError subclass that matches its status
(NotFound, Conflict, Forbidden, ValidationError with `.details`, ...).

Connection errors, timeouts and 502/503/504 are retried with exponential
backoff and jitter, waiting what a `Retry-After` header asks for; 4xx answers
are never retried. Given several base URLs (one per web node), a request that
gets no answer or 502/503/504 from one goes on at once to the next, and the
failed node is skipped for a back-off, then tried again (see Nodes). Retrying
every route, on any node, is safe: creates are deduplicated,
progress is conditional on the lease, a complete repeated by its worker
answers its first outcome, and every claim carries a `request_key` that its
retries repeat, so a claim whose answer was lost answers the same tasks
again instead of leaving them claimed by nobody.
"""

import email.utils
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from . import __version__

RETRY_STATUSES = (502, 503, 504)
NO_TASKS = "No available tasks"


class ApiError(Exception):
    """An error answer from the API (or no answer at all: see ConnectionFailed).

    status: the HTTP status (None when the server was never reached);
    message: the API's `error` text; details: its `details`, if any;
    body: the parsed JSON body (or None when it was not JSON).
    """

    status = None

    def __init__(self, message, status=None, details=None, body=None, retry_after=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.details = details
        self.body = body
        self.retry_after = retry_after

    def __str__(self):
        if self.status is None:
            return self.message
        return "%d: %s" % (self.status, self.message)


class BadRequest(ApiError):
    status = 400


class ValidationError(BadRequest):
    """A 400 carrying details, e.g. params that break the type's schema:
    `details` is a list of {path, message}."""


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    """403: the task is leased to another worker, or the API key's role may not use the route."""

    status = 403


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405


class Conflict(ApiError):
    """409: the task is not claimed, or this worker's lease expired or was lost."""

    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class ServerError(ApiError):
    status = 500


class Unavailable(ServerError):
    """502/503/504 after every retry: the service or its database is down."""

    status = 503


class ConnectionFailed(Unavailable):
    """The server could not be reached (refused, reset, timed out) after every retry."""

    status = None


_BY_STATUS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
              405: MethodNotAllowed, 409: Conflict, 413: PayloadTooLarge,
              502: Unavailable, 503: Unavailable, 504: Unavailable}


def error_for(status, body, retry_after=None):
    """The ApiError instance for an error answer (status, parsed JSON body or None)."""
    message, details = None, None
    if isinstance(body, dict):
        message = body.get("error")
        details = body.get("details")
    if not isinstance(message, str) or not message:
        message = "HTTP %d" % status
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ApiError
    if cls is BadRequest and details is not None:
        cls = ValidationError
    return cls(message, status=status, details=details, body=body, retry_after=retry_after)


def parse_retry_after(value):
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class Nodes:
    """The API's base URLs (one per web node) and which of them failed lately.

    Requests go to the home node (`start`; random when not given, so clients
    spread over the nodes) and, while it is skipped, to the next ones in
    turn. A node that gave no answer or 502/503/504 is skipped for `backoff`
    seconds (at least its Retry-After), doubling while it keeps failing up
    to `backoff_max`; then the next request tries it again, so work comes
    back to a node once it answers. One Nodes may serve several Clients
    (a worker's heartbeats and its claims); it is thread-safe.
    """

    def __init__(self, urls, start=None, backoff=5.0, backoff_max=120.0):
        if isinstance(urls, str):
            urls = [urls]
        urls = [url.rstrip("/") for url in urls]
        if not urls:
            raise ValueError("at least one base URL is needed")
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError("base_url must start with http:// or https://, not %r" % url)
        self.urls = urls
        self.home = random.randrange(len(urls)) if start is None else start % len(urls)
        self.backoff = backoff
        self.backoff_max = max(backoff, backoff_max)
        self._lock = threading.Lock()
        self._until = [0.0] * len(urls)   # monotonic time until which a node is skipped
        self._failures = [0] * len(urls)  # its failures in a row

    def order(self):
        """Indexes to try in one round: the nodes not skipped, from home on;
        when every node is skipped, all of them, the soonest back first."""
        now = time.monotonic()
        count = len(self.urls)
        turn = [(self.home + step) % count for step in range(count)]
        with self._lock:
            live = [index for index in turn if self._until[index] <= now]
            if live:
                return live
            return sorted(turn, key=lambda index: self._until[index])

    def failed(self, index, retry_after=None):
        with self._lock:
            self._failures[index] += 1
            wait = min(self.backoff_max, self.backoff * 2 ** (self._failures[index] - 1))
            if retry_after is not None:
                wait = max(wait, min(self.backoff_max, retry_after))
            self._until[index] = time.monotonic() + wait

    def answered(self, index):
        with self._lock:
            self._failures[index] = 0
            self._until[index] = 0.0


class Client:
    """One method per API route.

    retries: how many times a request is repeated after a connection error,
    a timeout or a 502/503/504; backoff: the first wait in seconds, doubled on
    each retry with full jitter; max_delay caps any single wait, including
    one asked for by Retry-After. on_retry(attempt, delay, error) is called
    before each wait (for logging).

    base_url: one URL, a list of them (one per web node), or a Nodes shared
    with another Client. With several, a try that gets no answer or
    502/503/504 moves on at once to the next node not in back-off (calling
    on_failover(failed_url, next_url, error)); a wait and a retry come only
    when every such node failed. start, node_backoff and node_backoff_max
    are Nodes' start, backoff and backoff_max.
    """

    def __init__(self, base_url, api_key=None, timeout=30.0, retries=5, backoff=0.5,
                 max_delay=30.0, on_retry=None, user_agent=None, start=None, node_backoff=5.0,
                 node_backoff_max=120.0, on_failover=None):
        if isinstance(base_url, Nodes):
            self.nodes = base_url
        else:
            self.nodes = Nodes(base_url, start, node_backoff, node_backoff_max)
        self.on_failover = on_failover
        self.api_key = api_key or None
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_delay = max_delay
        self.on_retry = on_retry
        self.user_agent = user_agent or "taskq-client/%s" % __version__
        self.last_date = None  # the Date header of the last answer, as a POSIX timestamp
        # Does the server complete the `results` a claim carries? None: not known yet.
        self.claim_results = None

    @property
    def base_url(self):
        """The URL the next request goes to (the first of base_urls unless it is skipped)."""
        return self.nodes.urls[self.nodes.order()[0]]

    @property
    def base_urls(self):
        return list(self.nodes.urls)

    # -- transport -----------------------------------------------------
    def request(self, method, path, body=None, query=None):
        """Send one request (with retries); returns the parsed envelope's `data`."""
        return self.request_envelope(method, path, body, query).get("data")

    def request_envelope(self, method, path, body=None, query=None, text=False):
        """Like request() but returns the whole JSON envelope (with text=True:
        the body as a string, for GET /metrics)."""
        target = path
        if query:
            pairs = [(k, _query_value(v)) for k, v in query.items() if v is not None]
            if pairs:
                target += "?" + urllib.parse.urlencode(pairs)
        data = None
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if body is not None:
            # allow_nan=False: the server refuses NaN and Infinity; fail here, with the reason
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":"),
                              allow_nan=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        attempt = 0
        while True:
            answered, answer = self._round(method, target, data, headers, text)
            if answered:
                return answer
            error = answer
            if attempt >= self.retries:
                raise error
            delay = self._delay(attempt, error.retry_after)
            attempt += 1
            if self.on_retry is not None:
                self.on_retry(attempt, delay, error)
            time.sleep(delay)

    def _round(self, method, target, data, headers, text):
        """One try on each node not in back-off (on every node when all are):
        (True, the answer), or (False, the last retryable error) when none gave one."""
        nodes = self.nodes
        order = nodes.order()
        for position, index in enumerate(order):
            try:
                answer = self._send(method, nodes.urls[index] + target, data, headers, text)
            except ApiError as exc:
                if exc.status is not None and exc.status not in RETRY_STATUSES:
                    nodes.answered(index)  # it answered: the node is up, the request is wrong
                    raise
                nodes.failed(index, exc.retry_after)
                rest = order[position + 1:]
                if not rest:
                    return False, exc
                if self.on_failover is not None:
                    self.on_failover(nodes.urls[index], nodes.urls[rest[0]], exc)
                continue
            nodes.answered(index)
            return True, answer
        raise AssertionError("Nodes.order() is never empty")

    def _delay(self, attempt, retry_after):
        if retry_after is not None:
            return min(self.max_delay, retry_after)
        return random.uniform(0, min(self.max_delay, self.backoff * (2 ** attempt)))

    def _send(self, method, url, data, headers, text=False):
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
                response_headers = response.headers
        except urllib.error.HTTPError as exc:
            status, response_headers = exc.code, exc.headers
            try:
                raw = exc.read()
            except (OSError, http.client.HTTPException):
                raw = b""
            finally:
                exc.close()
        except (urllib.error.URLError, http.client.HTTPException, OSError, socket.timeout) as exc:
            reason = getattr(exc, "reason", exc)
            raise ConnectionFailed("Cannot reach %s: %s" % (url, reason)) from None
        self._note_date(response_headers)
        if text and 200 <= status < 300:
            return raw.decode("utf-8")
        payload = _parse(raw)
        if 200 <= status < 300:
            if not isinstance(payload, dict):
                raise ServerError("Answer is not a JSON object (HTTP %d from %s)" % (status, url),
                                  status=status)
            return payload
        retry_after = parse_retry_after(response_headers.get("Retry-After") if response_headers else None)
        raise error_for(status, payload, retry_after)

    def _note_date(self, headers):
        value = headers.get("Date") if headers else None
        if value:
            try:
                self.last_date = email.utils.parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError, IndexError):
                self.last_date = None
        else:
            self.last_date = None

    # -- health and docs -------------------------------------------------
    def health(self):
        return self.request("GET", "/health")

    def openapi(self):
        """The OpenAPI document (served bare, not in the envelope)."""
        return self.request_envelope("GET", "/openapi.json")

    # -- task types ------------------------------------------------------
    def register_type(self, name, version, param_schema, max_attempts=None, claim_timeout=None,
                      retry_delay_seconds=None, retry_backoff=None, retry_max_delay_seconds=None,
                      retry_jitter=None):
        """Register or update a type; the retry_* fields set its backoff between attempts."""
        body = {"name": name, "version": version, "param_schema": param_schema}
        _put(body, max_attempts=max_attempts, claim_timeout=claim_timeout,
             retry_delay_seconds=retry_delay_seconds, retry_backoff=retry_backoff,
             retry_max_delay_seconds=retry_max_delay_seconds, retry_jitter=retry_jitter)
        return self.request("POST", "/task-types/register", body)

    def get_type(self, name):
        return self.request("GET", "/task-types/" + urllib.parse.quote(name, safe=""))

    def list_types(self, active_only=False, limit=None, offset=None):
        """{task_types: [...], count, pagination: {total, page, per_page, total_pages, limit, offset}}."""
        answer = self.request_envelope("GET", "/task-types", query={
            "active_only": active_only or None, "limit": limit, "offset": offset})
        return {"task_types": answer["data"], "count": len(answer["data"]),
                "pagination": answer["pagination"]}

    # -- tasks -----------------------------------------------------------
    def create_task(self, type, params, priority=None, run_at=None,  # noqa: A002 - the API's field
                    delay_seconds=None, depends_on=None, on_parent_failure=None):
        """The task in full (as get_task answers it) with `deduplicated`.

        run_at (a datetime, naive = UTC, or an ISO-8601 string) or delay_seconds
        makes a task that no claim hands out before then (status 'scheduled').
        depends_on: ids of parent tasks; the task waits (status 'waiting') until
        they are settled; on_parent_failure 'cancel' (default) or 'run' says what
        a failed or cancelled parent does to it.
        """
        body = {"type": type, "params": params}
        _put(body, priority=priority, run_at=_time(run_at), delay_seconds=delay_seconds,
             depends_on=None if depends_on is None else list(depends_on),
             on_parent_failure=on_parent_failure)
        return self.request("POST", "/tasks", body)

    def create_tasks(self, tasks):
        """Batch create: tasks is a list of {type, params, priority?, run_at?,
        delay_seconds?, ref?, depends_on?, on_parent_failure?} (1-500); a
        depends_on entry is a task id or the ref of an earlier item.

        Returns {results, created, deduplicated, failed, count}; each result is
        {index, ok: true, id, deduplicated, ref?, ...} or {index, ok: false,
        status, error, details?}.
        """
        return self.request("POST", "/tasks", {"tasks": list(tasks)})

    def claim(self, worker_id, type_pattern=None, lease_seconds=None, request_key=None,
              task_type_id=None, sort_by=None, sort_order=None):
        """One task in full {id, type, type_id, params, attempts, lease_expires_at, ...},
        or None when none is available.

        request_key: see new_request_key(); one is made when not given, and
        the retries of this call repeat it. task_type_id restricts the claim to
        one type (with type_pattern, both must hold); sort_by is created_at,
        priority, id or attempts and sort_order ASC or DESC (default: priority
        DESC, ties oldest first).
        """
        body = {"worker_id": worker_id, "request_key": request_key or new_request_key()}
        _put(body, type_pattern=type_pattern, lease_seconds=lease_seconds,
             task_type_id=task_type_id, sort_by=sort_by, sort_order=sort_order)
        try:
            return self.request("POST", "/tasks/claim", body)
        except NotFound as exc:
            if exc.message == NO_TASKS:
                return None
            raise

    def claim_batch(self, worker_id, limit, type_pattern=None, lease_seconds=None,
                    request_key=None, task_type_id=None, sort_by=None, sort_order=None):
        """Up to `limit` (1-100) tasks as a list; empty when none is available.

        The filters and the order are claim()'s."""
        body = {"worker_id": worker_id, "limit": limit,
                "request_key": request_key or new_request_key()}
        _put(body, type_pattern=type_pattern, lease_seconds=lease_seconds,
             task_type_id=task_type_id, sort_by=sort_by, sort_order=sort_order)
        return self.request("POST", "/tasks/claim", body)["tasks"]

    def claim_after(self, worker_id, results, limit, type_pattern=None, lease_seconds=None,
                    request_key=None, task_type_id=None, sort_by=None, sort_order=None):
        """Report finished tasks and claim up to `limit` more, in one request where the
        server can (a claim carrying `results`); otherwise POST /tasks/complete, then claim.

        results: as for complete_batch (may be empty). Returns {tasks, results,
        completed, failed, count}: the claimed tasks (a list, empty when none
        is available; count is their number) and one outcome per result, as
        complete_batch answers them. Which way the server took is remembered
        in `claim_results`. request_key: as for claim(), made when not given. The
        filters and the order are claim()'s.
        """
        options = {"task_type_id": task_type_id, "sort_by": sort_by, "sort_order": sort_order}
        results = list(results)
        request_key = request_key or new_request_key()
        if not results:
            tasks = self.claim_batch(worker_id, limit, type_pattern, lease_seconds, request_key,
                                     **options)
            return {"tasks": tasks, "count": len(tasks), "results": [], "completed": 0, "failed": 0}
        if self.claim_results is not False:
            body = {"worker_id": worker_id, "limit": limit, "results": results,
                    "request_key": request_key}
            _put(body, type_pattern=type_pattern, lease_seconds=lease_seconds, **options)
            try:
                answer = self.request("POST", "/tasks/claim", body)
            except BadRequest as exc:
                if "'results'" not in exc.message or self.claim_results:
                    raise
                answer = None  # a server that refuses the field: the separate routes
            if answer is not None and "results" in answer:
                self.claim_results = True
                return answer
            self.claim_results = False
            if answer is not None:  # an older server claimed and ignored the results
                done = self.complete_batch(worker_id, results)
                done.update(tasks=answer["tasks"], count=len(answer["tasks"]))
                return done
        done = self.complete_batch(worker_id, results)
        tasks = self.claim_batch(worker_id, limit, type_pattern, lease_seconds, request_key,
                                 **options)
        done.update(tasks=tasks, count=len(tasks))
        return done

    def progress(self, task_id, worker_id, progress, message=None, lease_seconds=None):
        """Record progress and extend the lease (a heartbeat)."""
        body = {"worker_id": worker_id, "progress": progress}
        _put(body, message=message, lease_seconds=lease_seconds)
        return self.request("POST", "/tasks/%d/progress" % task_id, body)

    def complete(self, task_id, worker_id, result=None, success=True, error=None,
                 retry_after_seconds=None):
        """Finish a task: success with `result`, or success=False with `error`
        (and optionally retry_after_seconds: wait that long before the retry).

        Returns {id, status, attempts, will_retry} (+ retry_delay_seconds when
        the retry waits).
        """
        body = {"worker_id": worker_id, "success": bool(success)}
        if success:
            body["result"] = result
        else:
            _put(body, error=error, retry_after_seconds=retry_after_seconds)
        return self.request("POST", "/tasks/%d/complete" % task_id, body)

    def fail(self, task_id, worker_id, error, retry_after_seconds=None):
        return self.complete(task_id, worker_id, success=False, error=error,
                             retry_after_seconds=retry_after_seconds)

    def complete_batch(self, worker_id, results):
        """results: [{id, success, result | error, retry_after_seconds?}] (1-100).

        Returns {results, completed, failed, count}; each result is {index,
        ok: true, id, status, attempts, will_retry} or {index, ok: false, id,
        status: <HTTP status>, error}.
        """
        return self.request("POST", "/tasks/complete", {"worker_id": worker_id,
                                                        "results": list(results)})

    def get_task(self, task_id):
        return self.request("GET", "/tasks/%d" % task_id)

    def task_history(self, task_id):
        return self.request("GET", "/tasks/%d/history" % task_id)

    def task_graph(self, task_id):
        """The workflow a task belongs to: {id, nodes, edges, count, truncated, max_nodes}."""
        return self.request("GET", "/tasks/%d/graph" % task_id)

    def list_tasks(self, status=None, type=None, limit=None, offset=None):  # noqa: A002
        """Newest first: {tasks: [...], count, total, limit, offset, pagination}.

        The API answers `data` as the array and `pagination` beside it; this
        keeps the client's dict (tasks, total, ...) and adds pagination."""
        answer = self.request_envelope("GET", "/tasks", query={"status": status, "type": type,
                                                               "limit": limit, "offset": offset})
        page = answer["pagination"]
        return {"tasks": answer["data"], "count": len(answer["data"]), "total": page["total"],
                "limit": page["limit"], "offset": page["offset"], "pagination": page}

    # -- operations (admin): type settings and steering ---------------------
    _UNSET = object()

    def type_settings(self, name, max_concurrency=_UNSET, dedupe_scope=None, is_paused=None):
        """Change a type's settings; max_concurrency=None removes the limit.

        Returns the type as get_type shows it."""
        body = {}
        if max_concurrency is not Client._UNSET:
            body["max_concurrency"] = max_concurrency
        _put(body, dedupe_scope=dedupe_scope, is_paused=is_paused)
        return self.request("POST", "/task-types/%s/settings" % urllib.parse.quote(name, safe=""), body)

    def pause_type(self, name):
        """Claims pass over the type until resume_type; creates go on."""
        return self.request("POST", "/task-types/%s/pause" % urllib.parse.quote(name, safe=""))

    def resume_type(self, name):
        return self.request("POST", "/task-types/%s/resume" % urllib.parse.quote(name, safe=""))

    def cancel_task(self, task_id):
        """Cancel a pending, scheduled, waiting or claimed task; the task with previous_status."""
        return self.request("POST", "/tasks/%d/cancel" % task_id)

    def retry_task(self, task_id):
        """A failed or cancelled task back to pending, attempts reset."""
        return self.request("POST", "/tasks/%d/retry" % task_id)

    def requeue_task(self, task_id):
        """A claimed task back to pending now."""
        return self.request("POST", "/tasks/%d/requeue" % task_id)

    def rerun_task(self, task_id):
        """A completed task back to pending although its dedupe key exists."""
        return self.request("POST", "/tasks/%d/rerun" % task_id)

    def bulk(self, action, limit=None, **filters):
        """action (cancel, retry, requeue, rerun) on up to `limit` (1-1000) tasks
        matching filters (type, status, error_contains, older_than_seconds).

        Returns {action, changed, ids, skipped, more, limit}; call again while
        more is true."""
        body = {"filter": {key: value for key, value in filters.items() if value is not None}}
        _put(body, limit=limit)
        return self.request("POST", "/tasks/bulk/%s" % urllib.parse.quote(action, safe=""), body)

    # -- schedules -------------------------------------------------------
    def create_schedule(self, type, params, every_seconds=None, cron=None,  # noqa: A002
                        timezone=None, priority=None, name=None, start_at=None, catch_up=None,
                        catch_up_limit=None):
        """A recurring task: every_seconds, or a five-field cron in a time zone.

        Claims create each occurrence once it is due. catch_up 'latest' (one
        task for a missed window) or 'all' (up to catch_up_limit).
        """
        body = {"type": type, "params": params}
        _put(body, every_seconds=every_seconds, cron=cron, timezone=timezone, priority=priority,
             name=name, start_at=_time(start_at), catch_up=catch_up, catch_up_limit=catch_up_limit)
        return self.request("POST", "/schedules", body)

    def list_schedules(self, limit=None, offset=None):
        return self.request("GET", "/schedules", query={"limit": limit, "offset": offset})

    def get_schedule(self, schedule_id):
        return self.request("GET", "/schedules/%d" % schedule_id)

    def pause_schedule(self, schedule_id):
        return self.request("POST", "/schedules/%d/pause" % schedule_id)

    def resume_schedule(self, schedule_id):
        return self.request("POST", "/schedules/%d/resume" % schedule_id)

    def delete_schedule(self, schedule_id):
        return self.request("DELETE", "/schedules/%d" % schedule_id)

    # -- statistics ------------------------------------------------------
    def stats(self):
        """{counts, total, oldest_pending_age_seconds, last_hour, last_day, types, leases}."""
        return self.request("GET", "/stats")

    def metrics(self):
        """GET /metrics: the Prometheus text, as a string."""
        return self.request_envelope("GET", "/metrics", text=True)

    # -- admin: API keys and retention (admin role) ------------------------
    def create_key(self, name, role):
        """{id, name, role, prefix, created_at, last_used_at, key}: `key` is shown only here."""
        return self.request("POST", "/admin/keys", {"name": name, "role": role})

    def list_keys(self):
        """[{id, name, role, prefix, created_at, last_used_at}]: never the keys."""
        return self.request("GET", "/admin/keys")["keys"]

    def revoke_key(self, name):
        return self.request("DELETE", "/admin/keys/" + urllib.parse.quote(name, safe=""))

    def purge(self, max_rows=None):
        """Delete what is older than the [retention] days: {deleted, total, more, retention}."""
        body = {}
        _put(body, max_rows=max_rows)
        return self.request("POST", "/admin/purge", body)


def _time(value):
    """A datetime as ISO-8601 (naive = UTC, as the API reads it); strings pass."""
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


def new_request_key():
    """A fresh claim request_key: send it again only when repeating that claim.

    A claim repeated with its key answers the tasks the first one handed out
    (while their leases live) instead of claiming more.
    """
    return os.urandom(16).hex()


def _put(body, **optional):
    for key, value in optional.items():
        if value is not None:
            body[key] = value


def _query_value(value):
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _parse(raw):
    if not raw:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
