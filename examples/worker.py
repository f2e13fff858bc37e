#!/usr/bin/env python3
"""A taskq worker with Python handlers: one function per task type.

    python3 examples/worker.py --url http://127.0.0.1:8080 --concurrency 2

It takes every option of `python3 -m taskq.worker` (see --help) except that
the handlers below replace --exec; it claims only the types registered here.
"""

import os
import sys
import time

try:
    from taskq import worker
except ImportError:  # running from a checkout, without `pip install .`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from taskq import worker


@worker.handler("Demo.Echo")
def echo(params):
    """The return value (any JSON) becomes the task's result."""
    return {"echo": params.get("text", "")}


@worker.handler("Demo.Countdown")
def countdown(params, task):
    """A second argument receives the Task: id, type, attempt, progress()."""
    seconds = int(params.get("seconds", 3))
    for done in range(seconds):
        # progress() also extends the lease; it raises worker.LeaseLost if another
        # worker owns the task now, which stops this function without completing.
        task.progress(100 * done // seconds, "%d s left" % (seconds - done))
        time.sleep(1)
    if params.get("fail"):
        raise RuntimeError("asked to fail")  # the task fails (and is retried) with this error
    return {"counted": seconds, "attempt": task.attempt}


if __name__ == "__main__":
    sys.exit(worker.main())
