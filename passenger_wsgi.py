"""Entry point for hosts that run Python web apps under Phusion Passenger.

As in cgi-bin/api.py, lib/ is first checked to hold one release's files
(taskq/release.py); if it does not, every request answers that 503.
"""
import os
import sys

LIB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
sys.path.insert(0, LIB)

from taskq import release  # noqa: E402

_mismatch = release.check(LIB)
if _mismatch is None:
    from taskq.app import application  # noqa: E402,F401
else:
    def application(environ, start_response):
        import json
        import time

        text = _mismatch.message
        body = json.dumps({"success": False, "error": text, "message": text,
                           "timestamp": int(time.time()),
                           "details": _mismatch.details()}).encode("utf-8")
        start_response("503 Service Unavailable",
                       [("Content-Type", "application/json; charset=utf-8"),
                        ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                        ("Content-Length", str(len(body)))])
        return [body]

    print("taskq: " + _mismatch.message, file=sys.stderr)
