#!/usr/bin/env python3
"""taskq CGI entry point: put ../lib first on sys.path and serve one request."""
import os
import sys

LIB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib")
sys.path.insert(0, LIB)

try:
    from taskq.app import application
except ImportError as exc:  # a missing vendored package: say which, as JSON
    sys.stdout.write("Status: 500 Internal Server Error\r\nContent-Type: application/json; "
                     "charset=utf-8\r\nCache-Control: no-store\r\n\r\n"
                     '{"success": false, "error": "Missing Python package: %s"}\n'
                     % (getattr(exc, "name", None) or "unknown"))
    sys.exit(0)

from wsgiref.handlers import CGIHandler

CGIHandler().run(application)
