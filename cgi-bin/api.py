#!/usr/bin/env python3
"""taskq CGI entry point: put ../lib first on sys.path and serve one request.

Before taskq.app is imported, lib/ is checked to hold one release's files
(taskq/release.py): an upload over another release's tree answers 503
naming the files. Whatever fails while starting up answers JSON without
internals; the traceback goes to the log (the web server's error log).
"""
import os
import sys

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")
sys.path.insert(0, LIB)


def answer(status, text, details=None):
    """An error envelope as the app writes it, after the unread body is discarded."""
    import json
    import time

    payload = {"success": False, "error": text, "message": text, "timestamp": int(time.time())}
    if details is not None:
        payload["details"] = details
    body = json.dumps(payload).encode("utf-8")
    discard_body()
    sys.stdout.write("Status: %s\r\nContent-Type: application/json; charset=utf-8\r\n"
                     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                     "Content-Length: %d\r\n\r\n" % (status, len(body)))
    sys.stdout.flush()
    sys.stdout.buffer.write(body)
    sys.stdout.flush()


def discard_body(limit=1048576):
    """Read the request body nobody will: else mod_cgid may lose the answer (taskq/transport.py)."""
    environ = dict(os.environ)
    environ["wsgi.input"] = sys.stdin.buffer
    try:
        from taskq import transport

        transport.discard_unread(environ, limit)
    except Exception:  # noqa: BLE001 - a broken lib/taskq: read what a sane body holds
        try:
            remaining = min(int(environ.get("CONTENT_LENGTH") or 0), limit)
            while remaining > 0:
                part = sys.stdin.buffer.read(min(65536, remaining))
                if not part:
                    break
                remaining -= len(part)
        except (ValueError, OSError):
            pass


def log(text, exc=None):
    """To taskq's log when its modules and config.ini still load, else to stderr."""
    try:
        from taskq import config, log as taskq_log

        taskq_log.logger(config.load()).error(text, exc_info=exc)
    except Exception:  # noqa: BLE001 - the log of last resort is stderr
        import traceback

        sys.stderr.write("taskq: %s\n" % text)
        if exc is not None:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


INCOMPLETE = ("lib/taskq is incomplete or holds files of two taskq releases. Delete the lib "
              "folder on the server and upload the lib folder of one zip again.")

try:
    from taskq import release

    mismatch = release.check(LIB)
    if mismatch is not None:
        answer("503 Service Unavailable", mismatch.message, mismatch.details())
        log(mismatch.message)
        sys.exit(0)
    from taskq.app import application
except ImportError as exc:
    missing = getattr(exc, "name", None) or "unknown"
    if missing.split(".")[0] == "taskq":  # one of taskq's own modules, or a name in one
        answer("503 Service Unavailable", INCOMPLETE)
    else:  # a missing vendored package: say which
        answer("500 Internal Server Error", "Missing Python package: %s" % missing)
    log("start-up failed: %s" % exc, exc)
    sys.exit(0)
except Exception as exc:  # noqa: BLE001 - a broken module (SyntaxError...), a bug at import
    answer("500 Internal Server Error", "Internal server error: taskq could not start; the "
           "server's error log says why")
    log("start-up failed: %r" % exc, exc)
    sys.exit(0)

from wsgiref.handlers import CGIHandler  # noqa: E402

CGIHandler().run(application)
