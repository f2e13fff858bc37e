"""The worker loop, shipped once: `python3 -m taskq.worker` (or `taskq-worker`).

Run a command per task:

    python3 -m taskq.worker --url https://example.com/cgi-bin/api.py \\
        --type 'images.%' --concurrency 4 --exec "./resize.sh"

With one web node per database node, give each one's URL (`--url` again):
each worker process starts at its own node (by its worker id's hash, and a
pool's processes in turn) and moves at once to the next when a node gives no
answer or 502/503/504; the failed node is skipped for a back-off (5 s,
doubling to 2 min) and then tried again, so the work comes back to it.

The command gets the task's params as JSON on stdin and TASKQ_TASK_ID,
TASKQ_TASK_TYPE, TASKQ_ATTEMPT (and TASKQ_MAX_ATTEMPTS, TASKQ_WORKER_ID) in
its environment; a task with parents (dependencies) also gets TASKQ_PARENTS_FILE,
a JSON file of its claim's `parents` with their results. Its stdout, if it parses as JSON, is the result (otherwise
{"stdout": "..."}); a non-zero exit is a failure whose error is the tail of
its stderr; --task-timeout kills it (its whole process group) when it runs
too long. A failing command picks its own retry delay (a rate limit's
Retry-After, say) by printing a line `retry-after: SECONDS` to stderr or
stdout and exiting non-zero; the worker sends it as retry_after_seconds.

Or handle tasks in Python:

    from taskq import worker

    @worker.handler("email.send")
    def send(params, task):         # `task` is optional: def send(params)
        task.progress(50, "connected")
        return {"sent": True}       # the result; an exception fails the task
                                    # raise worker.RetryLater("429", retry_after=60) to
                                    # choose when it is retried

    if __name__ == "__main__":
        worker.main()               # same options as the command line

While a task runs, heartbeats (POST /tasks/{id}/progress) extend its lease
every third of the lease; if one answers 409 or 403 the lease is lost: the
command is killed (a Python handler sees task.lost, and task.progress()
raises LeaseLost) and the task is not completed, because another worker owns
it now. While the API or its database is down (no answer, 502/503/504),
heartbeats and completes are retried with backoff for as long as the lease
lives, so an outage shorter than the lease costs no work; a complete applied
whose answer was lost answers its outcome again when repeated. Each claim
carries a request_key that its retries repeat, so a claim whose answer was
lost gets the same tasks rather than leaving them claimed by nobody.
Both hold whichever node answers the repeat, so a failover never completes
a task twice.

SIGTERM or SIGINT stops claiming, lets the claimed tasks finish, completes
them and exits 0; a second signal kills running commands and exits 1 without
completing them (their leases lapse and they are retried).
"""

import argparse
import inspect
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import zlib

from .client import (RETRY_STATUSES, ApiError, BadRequest, Client, Conflict, Forbidden,
                     MethodNotAllowed, NotFound, Nodes, PayloadTooLarge, Unauthorized,
                     new_request_key)

ERROR_TAIL = 4000
KILL_GRACE = 2.0
TICK = 0.1
LOST = (Conflict, Forbidden, NotFound)
FATAL = (Unauthorized, BadRequest, MethodNotAllowed, NotFound)
RETRY_FIRST = 0.5   # first wait before a heartbeat or complete is sent again (doubles)
RETRY_LONGEST = 15.0

MAX_RETRY_AFTER = 7 * 86400  # what the API accepts as retry_after_seconds


class RetryLater(Exception):
    """Raise from a handler to fail this attempt and retry it after `retry_after` seconds.

    Any exception with a numeric `retry_after` attribute is treated the same way."""

    def __init__(self, message="retry later", retry_after=60):
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_of(value):
    """A retry delay as the API takes it (whole seconds, 0 to a week), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return int(max(0, min(MAX_RETRY_AFTER, round(value))))


def retry_after_line(*texts):
    """The seconds of the last `retry-after: N` line in a command's output, or None."""
    found = None
    for text in texts:
        for line in text.splitlines():
            key, sep, value = line.strip().partition(":")
            if sep and key.strip().lower() == "retry-after":
                try:
                    found = retry_after_of(float(value.strip()))
                except ValueError:
                    continue
    return found


# -- the handler registry ----------------------------------------------------
HANDLERS = {}


def handler(type_name, registry=None):
    """Decorator: register a function as the handler of one task type.

    The function is called with the task's params (a dict) and, if it takes a
    second argument, the Task; its return value (any JSON) is the result and
    an exception fails the task with its traceback's tail as the error.
    """
    target = HANDLERS if registry is None else registry

    def register(fn):
        target[type_name] = fn
        return fn

    return register


def _wants_task(fn):
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def like_exact(name):
    """A LIKE pattern matching exactly this type name (`_` is a wildcard in LIKE)."""
    return name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class LeaseLost(Exception):
    """The task's lease was lost (409/403 on a heartbeat): stop working on it."""


# -- one claimed task ----------------------------------------------------------
class Task:
    """A claimed task as a handler sees it: id, type, params, attempt, max_attempts,
    parents (of a task with dependencies: [{id, type, status, result}], see docs/api.md)."""

    def __init__(self, data, runner, lease):
        self.id = data["id"]
        self.type = data["type"]
        self.params = data.get("params") or {}
        self.parents = data.get("parents") or []
        self.attempt = data.get("attempts", 1)
        self.max_attempts = data.get("max_attempts")
        self.data = data
        self.lease = lease
        self.interval = heartbeat_interval(lease)
        self.next_beat = time.monotonic() + self.interval
        # when the lease surely ends, by this host's clock: pushed on by each
        # heartbeat that got through; until then, failed requests are retried
        self.lease_deadline = time.monotonic() + lease
        self.beat_failures = 0
        self.percent = 0
        self.message = None
        self.lost = False
        self.lost_reason = None
        self._runner = runner

    def progress(self, percent, message=None):
        """Report progress (0-100); it also extends the lease. Raises LeaseLost."""
        self.percent, self.message = percent, message
        if self.lost:
            raise LeaseLost(self.lost_reason)
        self._runner.heartbeat.beat(self)
        if self.lost:
            raise LeaseLost(self.lost_reason)

    def mark_lost(self, reason):
        self.lost = True
        self.lost_reason = reason


def heartbeat_interval(lease):
    """A third of the lease, and always a beat before its last second."""
    return max(0.2, min(lease / 3.0, (lease - 1.0) / 2.0))


def lease_length(task, server_now, default):
    """Seconds the lease lasts, from the server's clock (its Date header) when known."""
    from datetime import datetime, timezone

    expires = task.get("lease_expires_at")
    if not expires or server_now is None:
        return default
    try:
        when = datetime.strptime(expires, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return default
    return max(1.0, when.timestamp() - server_now)


class Heartbeat(threading.Thread):
    """Keeps the lease of every held task alive until it is completed or lost."""

    def __init__(self, client, worker_id, lease_seconds, log):
        super().__init__(name="taskq-heartbeat", daemon=True)
        self.client = client
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.log = log
        self.tasks = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.done = False

    def add(self, task):
        with self.lock:
            self.tasks[task.id] = task
        self.wake.set()

    def remove(self, task):
        with self.lock:
            self.tasks.pop(task.id, None)

    def stop(self):
        self.done = True
        self.wake.set()

    def held(self, task):
        with self.lock:
            return self.tasks.get(task.id) is task

    def beat(self, task):
        started = time.monotonic()
        try:
            self.client.progress(task.id, self.worker_id, task.percent, task.message,
                                 self.lease_seconds)
        except LOST as exc:
            task.mark_lost("%s" % exc)
            self.remove(task)
            return
        except ApiError as exc:
            now = time.monotonic()
            if now >= task.lease_deadline:
                task.mark_lost("the lease ran out while heartbeats failed: %s" % exc)
                self.remove(task)
                self.log("heartbeat for task %d gave up: the lease ran out (%s)" % (task.id, exc))
                return
            # the API is down for now: again with backoff, while the lease lives
            task.beat_failures += 1
            wait = min(task.interval, RETRY_LONGEST, RETRY_FIRST * 2 ** (task.beat_failures - 1),
                       max(0.2, (task.lease_deadline - now) / 2.0))
            task.next_beat = now + wait
            self.log("heartbeat for task %d failed (%s); again in %.1fs" % (task.id, exc, wait))
            return
        task.beat_failures = 0
        task.lease_deadline = started + task.lease
        task.next_beat = time.monotonic() + task.interval

    def run(self):
        while not self.done:
            now = time.monotonic()
            with self.lock:
                held = list(self.tasks.values())
            for task in held:
                # a task removed meanwhile (completed, dropped) gets no more beats
                if (task.next_beat <= now and not task.lost and not self.done
                        and self.held(task)):
                    self.beat(task)
            with self.lock:
                upcoming = [t.next_beat for t in self.tasks.values()]
            wait = min(upcoming) - time.monotonic() if upcoming else 5.0
            self.wake.wait(max(0.05, min(wait, 5.0)))
            self.wake.clear()


# -- how many tasks may still be claimed (--max-tasks) ---------------------------
class Budget:
    """A task allowance; shared between processes when given a multiprocessing Value."""

    def __init__(self, limit=None, shared=None):
        self.limit = limit
        self.shared = shared

    def take(self, want):
        if self.shared is not None:
            with self.shared.get_lock():
                got = min(want, self.shared.value)
                self.shared.value -= got
                return got
        if self.limit is None:
            return want
        got = min(want, self.limit)
        self.limit -= got
        return got

    def give_back(self, count):
        if count <= 0:
            return
        if self.shared is not None:
            with self.shared.get_lock():
                self.shared.value += count
        elif self.limit is not None:
            self.limit += count


# -- the loop ---------------------------------------------------------------------
class Runner:
    """One worker loop in one process: claim, run, heartbeat, complete."""

    def __init__(self, client, worker_id=None, handlers=None, command=None, patterns=(),
                 batch=1, budget=None, once=False, poll_min=0.5, poll_max=10.0,
                 task_timeout=None, lease_seconds=None, default_lease=300.0, log=None,
                 heartbeat_client=None, combine=True, task_type_id=None, sort_by=None,
                 sort_order=None):
        if not handlers and not command:
            raise ValueError("a worker needs --exec COMMAND or registered handlers")
        self.client = client
        self.worker_id = worker_id or default_worker_id()
        self.handlers = dict(handlers or {})
        self.command = command
        if patterns:
            self.patterns = list(patterns)
        elif command:
            self.patterns = [None]
        else:
            self.patterns = [like_exact(name) for name in sorted(self.handlers)]
        self.batch = max(1, min(100, batch))
        self.budget = budget or Budget()
        self.once = once
        self.poll_min = poll_min
        self.poll_max = max(poll_min, poll_max)
        self.task_timeout = task_timeout
        self.lease_seconds = lease_seconds
        # claim filter and order (POST /tasks/claim's task_type_id, sort_by, sort_order)
        self.claim_options = {"task_type_id": task_type_id, "sort_by": sort_by,
                              "sort_order": sort_order}
        self.default_lease = float(lease_seconds or default_lease)
        self.log = log or _stderr_log(self.worker_id)
        self.heartbeat = Heartbeat(heartbeat_client or client, self.worker_id, lease_seconds,
                                   self.log)
        self.stopping = False
        self.force = False
        self.parent = None
        self._next_pattern = 0
        # combine: finished tasks ride on the next claim (one request per batch);
        # unreported: those finished and not yet reported, as (task, outcome, took)
        self.combine = combine
        self.unreported = []
        self._claim_key = None  # kept while a claim went unanswered, so its retry repeats it

    # -- signals ---------------------------------------------------------
    def install_signals(self, sigint=True):
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal if sigint else _ignore)

    def _on_signal(self, signum, frame):
        if self.stopping:
            self.force = True
        self.stopping = True

    # -- main loop ---------------------------------------------------------
    def run(self):
        """Work until stopped, out of tasks (--once) or budget; returns an exit status."""
        self.log("worker started (%s)" % (("exec: " + self.command) if self.command else
                                          "handlers: " + ", ".join(sorted(self.handlers))))
        self.heartbeat.start()
        delay = self.poll_min
        status = 0
        try:
            while not self.stopping:
                if self.parent is not None and os.getppid() != self.parent:
                    self.log("parent process is gone; stopping")
                    break
                want = self.budget.take(self.batch)
                if want == 0:
                    break
                try:
                    tasks = self._claim(want)
                except FATAL as exc:
                    self.budget.give_back(want)
                    self.log("claim refused, giving up: %s" % exc)
                    status = 2
                    break
                except ApiError as exc:
                    self.budget.give_back(want)
                    self.log("claim failed: %s" % exc)
                    if self.once:
                        status = 1
                        break
                    self._sleep(self.poll_max)
                    continue
                self.budget.give_back(want - len(tasks))
                if not tasks:
                    if self.once:
                        break
                    self._sleep(random.uniform(delay / 2.0, delay))
                    delay = min(self.poll_max, delay * 2)
                    continue
                delay = self.poll_min
                self._process(tasks)
        finally:
            finished, self.unreported = self.unreported, []
            self._report(finished)
            self.heartbeat.stop()
        if self.force:
            self.log("stopped at once; unfinished tasks will be retried after their lease")
            return 1
        self.log("worker stopped")
        return status

    def _sleep(self, seconds):
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(TICK, max(0.0, end - time.monotonic())))

    def _claim(self, want):
        """Try each type pattern in turn, starting after the last one used."""
        count = len(self.patterns)
        for step in range(count):
            pattern = self.patterns[(self._next_pattern + step) % count]
            self._claim_key = self._claim_key or new_request_key()
            rows = self._claim_rows(want, pattern, self._claim_key)
            self._claim_key = None  # answered: the next claim is a new one
            if rows:
                self._next_pattern = (self._next_pattern + step + 1) % count
                server_now = self.client.last_date
                return [Task(row, self, lease_length(row, server_now, self.default_lease))
                        for row in rows]
            if self.stopping:
                break
        return []

    def _claim_rows(self, want, pattern, request_key):
        """Claim, carrying the results of the tasks finished since the last claim."""
        finished, self.unreported = self.unreported, []
        if not finished:
            return self.client.claim_batch(self.worker_id, want, pattern, self.lease_seconds,
                                           request_key=request_key, **self.claim_options)
        try:
            answer = self.client.claim_after(self.worker_id, _result_items(finished), want,
                                             pattern, self.lease_seconds, request_key=request_key,
                                             **self.claim_options)
        except PayloadTooLarge:  # a result too large: report them the slow way first
            self._complete_many(finished)
            return self.client.claim_batch(self.worker_id, want, pattern, self.lease_seconds,
                                           request_key=request_key, **self.claim_options)
        except ApiError:
            self.unreported = finished  # carried by the next claim (or reported on exit)
            raise
        self._log_outcomes(finished, answer["results"])
        return answer["tasks"]

    def _process(self, tasks):
        for task in tasks:
            self.heartbeat.add(task)
        finished = []
        for task in tasks:
            if self.force:
                break
            started = time.monotonic()
            outcome = self._run_one(task)
            took = time.monotonic() - started
            if outcome is None or task.lost:
                self.heartbeat.remove(task)
                self._log_task(task, "lost" if not self.force else "interrupted", took,
                               task.lost_reason)
                continue
            finished.append((task, outcome, took))
        if self.combine and not self.stopping:
            self.unreported.extend(finished)  # the next claim reports them (still heartbeating)
            return
        self._report(finished)
        for task in tasks:
            self.heartbeat.remove(task)

    def _report(self, finished):
        """Complete finished tasks with their own request (finished work is reported even
        when stopping at once)."""
        if len(finished) == 1:
            self._complete_one(*finished[0])
        elif finished:
            self._complete_many(finished)

    # -- running one task --------------------------------------------------
    def _run_one(self, task):
        """{"success": bool, "result" | "error"}, or None when the lease was lost."""
        if self.command:
            return self._run_command(task)
        fn = self.handlers.get(task.type)
        if fn is None:
            return {"success": False, "error": "no handler registered for type %s" % task.type}
        try:
            result = fn(task.params, task) if _wants_task(fn) else fn(task.params)
        except LeaseLost:
            return None
        except Exception as exc:  # noqa: BLE001 - any failure of user code fails the task
            outcome = {"success": False, "error": _tail(traceback.format_exc().strip())}
            delay = retry_after_of(getattr(exc, "retry_after", None))
            if delay is not None:
                outcome["retry_after_seconds"] = delay
            return outcome
        try:
            json.dumps(result, allow_nan=False).encode("utf-8")  # what the server accepts
        except (TypeError, ValueError) as exc:
            return {"success": False, "error": "handler result is not JSON: %s" % exc}
        return {"success": True, "result": result}

    def _run_command(self, task):
        env = dict(os.environ)
        env.update(TASKQ_TASK_ID=str(task.id), TASKQ_TASK_TYPE=task.type,
                   TASKQ_ATTEMPT=str(task.attempt), TASKQ_WORKER_ID=self.worker_id,
                   TASKQ_MAX_ATTEMPTS="" if task.max_attempts is None else str(task.max_attempts))
        data = json.dumps(task.params, ensure_ascii=False).encode("utf-8")
        parents_file = None
        if task.parents:  # fan-in: the claim's parents (with their results) as a JSON file
            import tempfile

            handle, parents_file = tempfile.mkstemp(prefix="taskq-parents-", suffix=".json")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(task.parents, out, ensure_ascii=False)
            env["TASKQ_PARENTS_FILE"] = parents_file
        try:
            return self._command_outcome(task, env, data)
        finally:
            if parents_file is not None:
                try:
                    os.unlink(parents_file)
                except OSError:
                    pass

    def _command_outcome(self, task, env, data):
        try:
            proc = subprocess.Popen(self.command, shell=True, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                    start_new_session=True)
        except OSError as exc:
            return {"success": False, "error": "cannot start command: %s" % exc}
        deadline = None if not self.task_timeout else time.monotonic() + self.task_timeout
        stdin, reason, kill_at = data, None, None
        while True:
            try:
                out, err = proc.communicate(stdin, timeout=TICK)
                break
            except subprocess.TimeoutExpired:
                stdin = None  # sent (or being sent) by the first call
            now = time.monotonic()
            if reason is None:
                if task.lost:
                    reason = "lost"
                elif self.force:
                    reason = "interrupted"
                elif deadline is not None and now >= deadline:
                    reason = "timeout"
                if reason is not None:
                    _kill_group(proc, signal.SIGTERM)
                    kill_at = now + KILL_GRACE
            elif now >= kill_at:
                _kill_group(proc, signal.SIGKILL)
                kill_at = float("inf")
        if reason in ("lost", "interrupted") or task.lost:
            return None
        err_tail = _tail(err.decode("utf-8", "replace").strip())
        if reason == "timeout":
            message = "command timed out after %gs and was killed" % self.task_timeout
            return {"success": False, "error": message + ("; stderr: " + err_tail if err_tail else "")}
        if proc.returncode != 0:
            if err_tail:
                outcome = {"success": False, "error": err_tail}
            elif proc.returncode < 0:
                outcome = {"success": False, "error": "command killed by signal %d" % -proc.returncode}
            else:
                outcome = {"success": False, "error": "command exited with status %d" % proc.returncode}
            delay = retry_after_line(out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
            if delay is not None:
                outcome["retry_after_seconds"] = delay
            return outcome
        text = out.decode("utf-8", "replace")
        try:
            result = json.loads(text)
        except ValueError:
            result = {"stdout": text}
        return {"success": True, "result": result}

    # -- completing --------------------------------------------------------
    def _while_leased(self, tasks, call):
        """call() until it is answered, while a lease of `tasks` lives.

        No answer or 502/503/504 (after the client's own retries) is tried
        again with backoff: the work is done and the lease still ours, so
        giving up would only make another worker run it again. A complete
        that was applied but not answered answers its outcome again.
        """
        failures = 0
        while True:
            try:
                return call()
            except ApiError as exc:
                if exc.status is not None and exc.status not in RETRY_STATUSES:
                    raise
                now = time.monotonic()
                deadline = max(task.lease_deadline for task in tasks)
                if self.force or now >= deadline or all(task.lost for task in tasks):
                    raise
                failures += 1
                wait = min(RETRY_LONGEST, RETRY_FIRST * 2 ** failures, max(0.1, deadline - now))
                self.log("complete of task %s not answered (%s); again in %.1fs while the lease "
                         "lives" % (",".join(str(task.id) for task in tasks), exc, wait))
                end = time.monotonic() + wait
                while not self.force and time.monotonic() < end:
                    time.sleep(min(TICK, max(0.0, end - time.monotonic())))

    def _complete_one(self, task, outcome, took):
        try:
            try:
                if outcome["success"]:
                    answer = self._while_leased([task], lambda: self.client.complete(
                        task.id, self.worker_id, result=outcome["result"]))
                else:
                    answer = self._while_leased([task], lambda: self.client.fail(
                        task.id, self.worker_id, outcome["error"],
                        outcome.get("retry_after_seconds")))
            except PayloadTooLarge as exc:
                # The result can never be stored: fail the task instead of letting it lapse.
                outcome = {"success": False, "error": "result too large for the API (%s)" % exc.message}
                answer = self._while_leased([task], lambda: self.client.fail(
                    task.id, self.worker_id, outcome["error"]))
        except LOST as exc:
            self._log_task(task, "lost", took, str(exc))
            return
        except ApiError as exc:
            self._log_task(task, "not-completed", took, str(exc))
            return
        finally:
            self.heartbeat.remove(task)
        self._log_task(task, _outcome(answer), took, outcome.get("error"))

    def _complete_many(self, finished):
        try:
            answer = self._while_leased([task for task, _, _ in finished],
                                        lambda: self.client.complete_batch(self.worker_id,
                                                                           _result_items(finished)))
        except PayloadTooLarge:
            for task, outcome, took in finished:  # one by one: only the oversized ones fail
                self._complete_one(task, outcome, took)
            return
        except ApiError as exc:
            for task, _, took in finished:
                self.heartbeat.remove(task)
                self._log_task(task, "not-completed", took, str(exc))
            return
        self._log_outcomes(finished, answer["results"])

    def _log_outcomes(self, finished, results):
        for (task, outcome, took), item in zip(finished, results):
            self.heartbeat.remove(task)
            if item.get("ok"):
                self._log_task(task, _outcome(item), took, outcome.get("error"))
            else:
                name = "lost" if item.get("status") in (403, 404, 409) else "not-completed"
                self._log_task(task, name, took, "%s: %s" % (item.get("status"), item.get("error")))

    def _log_task(self, task, outcome, took, error=None):
        line = "task=%d type=%s attempt=%s outcome=%s duration=%.3fs" % (
            task.id, task.type, task.attempt, outcome, took)
        if error:
            line += " error=%s" % json.dumps(error.splitlines()[-1][:200] if error.strip() else error)
        self.log(line)


def _result_items(finished):
    items = []
    for task, outcome, _ in finished:
        item = {"id": task.id, "success": outcome["success"]}
        if outcome["success"]:
            item["result"] = outcome["result"]
        else:
            item["error"] = outcome["error"]
            if outcome.get("retry_after_seconds") is not None:
                item["retry_after_seconds"] = outcome["retry_after_seconds"]
        items.append(item)
    return items


def _outcome(answer):
    status = answer.get("status")
    if status in ("pending", "scheduled") or answer.get("will_retry"):
        return "retry"
    return status or "completed"


def _tail(text, size=ERROR_TAIL):
    return text if len(text) <= size else "..." + text[-size:]


def _kill_group(proc, sig):
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _ignore(signum, frame):
    pass


def start_node(name, count, slot=0):
    """Which of `count` URLs a worker starts at: by its name's hash, plus a
    pool's process number, so workers spread over the nodes."""
    return (zlib.crc32(name.encode("utf-8")) + slot) % count


def split_urls(values):
    """Base URLs from --url values (and TASKQ_URL): each may hold several,
    separated by commas or spaces."""
    return [url for value in values for url in value.replace(",", " ").split()]


def default_worker_id():
    return "%s-%d-%04x" % (socket.gethostname(), os.getpid(), random.getrandbits(16))


def _stderr_log(worker_id):
    def log(message):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sys.stderr.write("%s taskq-worker[%s] %s\n" % (stamp, worker_id, message))
        sys.stderr.flush()

    return log


# -- command line -------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(
        prog="taskq-worker",
        description="Claim tasks from a taskq API and run them: a command per task (--exec) "
                    "or the Python handlers registered with @taskq.worker.handler.")
    parser.add_argument("--url", dest="urls", action="append", metavar="URL",
                        help="API base URL, e.g. https://example.com/cgi-bin/api.py (or TASKQ_URL); "
                             "repeat it for several web nodes: a node that fails is skipped for a "
                             "while and the work goes on through the others")
    parser.add_argument("--api-key", default=os.environ.get("TASKQ_API_KEY"),
                        help="API key (default: TASKQ_API_KEY)")
    parser.add_argument("--worker-id", metavar="ID",
                        help="worker id, used as given with --concurrency 1; with --concurrency N "
                             "process K uses ID-K (ID-1 ... ID-N). Default: host-pid-random, "
                             "a new one per process, without a suffix")
    parser.add_argument("--type", dest="types", action="append", default=[], metavar="PATTERN",
                        help="claim only types matching this SQL LIKE pattern (repeatable)")
    parser.add_argument("--exec", dest="command", metavar="COMMAND",
                        help="shell command run per task: params JSON on stdin, result JSON on stdout")
    parser.add_argument("--concurrency", type=int, default=1, metavar="N",
                        help="worker processes (default 1)")
    parser.add_argument("--batch", type=int, default=1, metavar="N",
                        help="tasks claimed per request, 1-100 (default 1)")
    parser.add_argument("--max-tasks", type=int, metavar="N", help="stop after claiming N tasks")
    parser.add_argument("--once", action="store_true",
                        help="exit when the queue is empty instead of polling")
    parser.add_argument("--poll-min", type=float, default=0.5, metavar="SECONDS",
                        help="first wait when the queue is empty (default 0.5)")
    parser.add_argument("--poll-max", type=float, default=10.0, metavar="SECONDS",
                        help="longest wait when the queue stays empty (default 10)")
    parser.add_argument("--task-timeout", type=float, metavar="SECONDS",
                        help="kill a command running longer than this and fail the task")
    parser.add_argument("--lease", type=int, metavar="SECONDS",
                        help="lease_seconds asked for on claim and heartbeat (default: the server's)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="HTTP timeout per request (default 30)")
    parser.add_argument("--node-backoff", type=float, default=5.0, metavar="SECONDS",
                        help="with several --url: skip a node that failed for this long, doubling "
                             "while it keeps failing up to 120 s, then try it again (default 5)")
    parser.add_argument("--task-type-id", type=int, metavar="ID",
                        help="claim only tasks of this type id (with --type, both must hold)")
    parser.add_argument("--sort-by", choices=("created_at", "priority", "id", "attempts"),
                        help="claim order (default: priority, then oldest)")
    parser.add_argument("--sort-order", choices=("ASC", "DESC"),
                        help="claim order direction (default: DESC for priority, else ASC)")
    return parser


def main(argv=None, handlers=None):
    """Entry point of `python3 -m taskq.worker` and `taskq-worker`; returns the exit status.

    handlers: {type: function}; by default those registered with @handler.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = HANDLERS if handlers is None else handlers
    args.urls = split_urls(args.urls if args.urls else [os.environ.get("TASKQ_URL") or ""])
    if not args.urls:
        parser.error("--url (or TASKQ_URL) is required")
    for url in args.urls:
        if not url.startswith(("http://", "https://")):
            parser.error("--url must start with http:// or https://, not %r" % url)
    if not args.command and not handlers:
        parser.error("--exec COMMAND is required (or register Python handlers and call main())")
    if args.concurrency < 1 or not 1 <= args.batch <= 100:
        parser.error("--concurrency must be at least 1 and --batch 1 to 100")
    if args.max_tasks is not None and args.max_tasks < 1:
        parser.error("--max-tasks must be at least 1")
    if args.node_backoff <= 0:
        parser.error("--node-backoff must be more than 0")
    if args.concurrency == 1:
        runner = _make_runner(args, handlers, args.worker_id, Budget(args.max_tasks))
        runner.install_signals()
        return runner.run()
    return _run_pool(args, handlers)


def _make_runner(args, handlers, worker_id, budget, slot=None):
    worker_id = worker_id or default_worker_id()
    log = _stderr_log(worker_id)
    if slot is None:
        start = start_node(worker_id, len(args.urls))
    else:  # a pool's processes take the nodes in turn
        start = start_node(args.worker_id or socket.gethostname(), len(args.urls), slot)
    # one Nodes for claims and heartbeats: a node one of them found down, both skip
    nodes = Nodes(args.urls, start=start, backoff=args.node_backoff)

    def failover(failed, following, error):
        log("no answer from %s (%s); going on with %s" % (failed, error, following))

    def client(retries):
        return Client(nodes, api_key=args.api_key, timeout=args.timeout, retries=retries,
                      on_failover=failover)

    # heartbeats retry on their own schedule (Heartbeat.beat): a client that
    # slept through retries would hold up the beats of the other tasks
    return Runner(client(5), worker_id=worker_id, handlers=handlers, command=args.command,
                  patterns=args.types, batch=args.batch, budget=budget, once=args.once,
                  poll_min=args.poll_min, poll_max=args.poll_max, task_timeout=args.task_timeout,
                  lease_seconds=args.lease, heartbeat_client=client(0), log=log,
                  task_type_id=args.task_type_id, sort_by=args.sort_by, sort_order=args.sort_order)


_EARLY_SIGNALS = []


def _child(args, handlers, index, shared, parent):
    worker_id = "%s-%d" % (args.worker_id, index + 1) if args.worker_id else None
    runner = _make_runner(args, handlers, worker_id, Budget(shared=shared), slot=index)
    runner.parent = parent
    # The pool's parent forwards SIGINT as SIGTERM, so a terminal's Ctrl-C
    # (sent to the whole process group) is not counted twice.
    runner.install_signals(sigint=False)
    if _EARLY_SIGNALS:
        runner.stopping = True
    sys.exit(runner.run())


def _run_pool(args, handlers):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    shared = None
    if args.max_tasks is not None:
        shared = context.Value("q", args.max_tasks)
    parent = os.getpid()
    procs = [context.Process(target=_child, args=(args, handlers, i, shared, parent),
                             name="taskq-worker-%d" % (i + 1)) for i in range(args.concurrency)]

    signalled = []

    def forward(signum, frame):
        if os.getpid() != parent:  # a child just forked, before it set its own handlers
            _EARLY_SIGNALS.append(signum)
            return
        signalled.append(signum)
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in procs:
        proc.start()
    if signalled:  # a signal that came while the pool was starting reaches every process
        forward(signal.SIGTERM, None)
    for proc in procs:
        while proc.is_alive():
            proc.join(0.2)
    codes = [proc.exitcode for proc in procs]
    if all(code == 0 for code in codes):
        return 0
    return max((code for code in codes if code and code > 0), default=1)


if __name__ == "__main__":
    sys.exit(main())
