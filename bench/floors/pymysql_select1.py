#!/usr/bin/env python3
"""Floors (b) and (c): import PyMySQL, connect without TLS, SELECT 1, print `{}`.

Settings come from the environment, as a CGI script's would:
TASKQ_BENCH_MYSQL   "host=.. port=.. user=.. password=.. database=.."
TASKQ_BENCH_JSONSCHEMA=1  also `import jsonschema` first: floor (c), the
                    least a register (or a create jsonschema must check) can cost.
TASKQ_BENCH_TLS_CTX=1     connect with PyMySQL's defaults instead of
                    ssl_disabled=True. PyMySQL 1.1+ then builds a TLS context
                    ("preferred" mode, loading the system CA store) even when
                    the server offers no TLS: the cost a store avoids by
                    disabling TLS for localhost.
TASKQ_BENCH_NO_CRYPTO=1   keep cryptography out of the import (on a Python
                    that has it, e.g. Debian's with python3-cryptography).
"""
import os
import sys

if os.environ.get("TASKQ_BENCH_JSONSCHEMA") == "1":
    import jsonschema  # noqa: F401

if os.environ.get("TASKQ_BENCH_NO_CRYPTO") == "1":
    sys.modules["cryptography"] = None  # kept out, as floor (b) is defined (a host may ship it)

import pymysql

params = dict(part.split("=", 1) for part in os.environ.get("TASKQ_BENCH_MYSQL", "").split())
kwargs = {} if os.environ.get("TASKQ_BENCH_TLS_CTX") == "1" else {"ssl_disabled": True}
conn = pymysql.connect(host=params.get("host", "127.0.0.1"), port=int(params.get("port", 3306)),
                       user=params.get("user", "root"), password=params.get("password", ""),
                       database=params.get("database") or None, charset="utf8mb4",
                       autocommit=True, **kwargs)
with conn.cursor() as cur:
    cur.execute("SELECT 1")
    cur.fetchall()
conn.close()
sys.stdout.write("Status: 200 OK\r\nContent-Type: application/json\r\n\r\n{}\n")
