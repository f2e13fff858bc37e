"""Floor of the persistent servers: a WSGI app that runs `SELECT 1` on a reused connection.

One PyMySQL connection per thread, opened on the thread's first request and
kept; answers `{}`. At /write it commits one INSERT instead (floor (w): the
redo-log flush every write transaction pays, which SELECT 1 does not); at
/update one UPDATE of a row found by its primary key among 1,000, then COMMIT
(floor (u): the least a claim or a complete must do, since each writes). Settings come from floor.json beside this file
({"host", "port", "user", "password", "database"}), since mod_wsgi does not
hand SetEnv values to os.environ. Served by bench/wsgi_servers.py next to the
app under the same server, so their ratio is what taskq adds to a request.
"""
import json
import os
import sys
import random
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))

import pymysql  # noqa: E402

with open(os.path.join(HERE, "floor.json"), encoding="utf-8") as handle:
    SETTINGS = json.load(handle)
_local = threading.local()
ROWS = 1000  # bench/wsgi_servers.py fills bench_floor_rows with ids 1..ROWS


def application(environ, start_response):
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = pymysql.connect(
            host=SETTINGS["host"], port=int(SETTINGS["port"]), user=SETTINGS["user"],
            password=SETTINGS["password"], database=SETTINGS["database"], charset="utf8mb4",
            autocommit=True, ssl_disabled=True)
    with conn.cursor() as cur:
        if environ.get("PATH_INFO") == "/write":  # floor (w): one committed write
            cur.execute("CREATE TABLE IF NOT EXISTS bench_floor_writes "
                        "(id INT AUTO_INCREMENT PRIMARY KEY, n INT) ENGINE=InnoDB")
            cur.execute("INSERT INTO bench_floor_writes (n) VALUES (1)")
        elif environ.get("PATH_INFO") == "/update":  # floor (u): one indexed row UPDATE + COMMIT
            conn.begin()
            cur.execute("UPDATE bench_floor_rows SET n = n + 1 WHERE id = %s",
                        (random.randint(1, ROWS),))
            conn.commit()
        else:
            cur.execute("SELECT 1")
            cur.fetchall()
    body = b"{}"
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
