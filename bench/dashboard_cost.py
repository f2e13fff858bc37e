#!/usr/bin/env python3
"""What a dashboard page costs as a CGI request, against an API list request.

Each page is one CGI process (cgi-bin/api.py), so a page must stay cheap:
the target is a dashboard page within 1.5x of `GET /tasks?limit=50`. This
runs both as real CGI processes in turn (A B A B ..., so drift hits both),
over a store holding --tasks tasks, and prints the medians and the median
of the pair-by-pair ratios.

    python3 bench/dashboard_cost.py [--rounds 30] [--tasks 2000] [--backend sqlite|mysql]
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

ROOT = benchlib.ROOT
KEY = "bench-key-" + "x" * 30
PAGES = ("/dashboard", "/dashboard/tasks", "/dashboard/tasks?error=timeout&older=1m&sort=priority",
         "/dashboard/tasks/{id}", "/dashboard/types", "/dashboard/schedules")


def cgi(python, env, method, path, query="", body=b"", headers=None):
    environ = dict(env, REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query,
                   CONTENT_LENGTH=str(len(body)), SCRIPT_NAME="/cgi-bin/api.py",
                   REQUEST_URI=path + ("?" + query if query else ""),
                   SERVER_NAME="localhost", SERVER_PORT="80", SERVER_PROTOCOL="HTTP/1.1",
                   GATEWAY_INTERFACE="CGI/1.1", REMOTE_ADDR="127.0.0.1",
                   CONTENT_TYPE="application/json")
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    started = time.perf_counter()
    done = subprocess.run([python, os.path.join(ROOT, "cgi-bin", "api.py")], input=body,
                          env=environ, stdout=subprocess.PIPE, check=True)
    return time.perf_counter() - started, done.stdout


def seed(config_path, tasks):
    """Fill the store in-process (fast), then log in once for a session cookie."""
    sys.path.insert(0, os.path.join(ROOT, "lib"))
    from taskq import config as config_module
    from taskq.app import Application

    app = Application(config=config_module.load(config_path))

    def call(method, path, body=None, headers=None, form=None):
        raw = json.dumps(body).encode() if body is not None else (form or b"")
        environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "",
                   "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw),
                   "CONTENT_TYPE": "application/json", "HTTP_X_API_KEY": KEY,
                   "REMOTE_ADDR": "127.0.0.1"}
        environ.update(headers or {})
        out = {}
        data = b"".join(app(environ, lambda s, h, e=None: out.update(status=s, headers=h)))
        return out, data

    call("POST", "/task-types/register", {"name": "bench.page", "version": "1",
                                          "param_schema": {"type": "object"}})
    for start in range(0, tasks, 500):
        call("POST", "/tasks", {"tasks": [{"type": "bench.page", "params": {"n": n}}
                                          for n in range(start, min(tasks, start + 500))]})
    for n in range(5):
        call("POST", "/schedules", {"type": "bench.page", "params": {"n": n},
                                    "every_seconds": 3600 * (n + 1)})
    call("POST", "/tasks/claim", {"worker_id": "bench", "limit": 10})
    out, page = call("GET", "/dashboard/login")
    token = [v for k, v in out["headers"] if k == "Set-Cookie"][0].split(";")[0].split("=", 1)[1]
    out, _ = call("POST", "/dashboard/login",
                  form=("csrf=%s&key=%s" % (token, KEY)).encode(),
                  headers={"HTTP_COOKIE": "taskq_login=" + token,
                           "CONTENT_TYPE": "application/x-www-form-urlencoded"})
    return [v for k, v in out["headers"] if k == "Set-Cookie"][0].split(";")[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--backend", choices=("sqlite", "mysql"), default="sqlite")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--mysql", default="", help='"host=.. port=.. user=.. password=.."')
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="taskq-bench-dash-")
    mysql, database = None, None
    try:
        if args.backend == "mysql":
            mysql = benchlib.mysql_params(args.mysql)
            database, _ = benchlib.create_mysql_database(mysql)
            config_path = benchlib.write_config(work, "mysql", name=database, **{
                k: str(v) for k, v in mysql.items()})
        else:
            config_path = benchlib.write_config(work, "sqlite",
                                                sqlite_path=os.path.join(work, "t.sqlite3"))
        with open(config_path, "a", encoding="utf-8") as handle:
            handle.write("\n[api]\napi_key = %s\n" % KEY)
        cookie = seed(config_path, args.tasks)
        env = {"PATH": os.environ.get("PATH", ""), "TASKQ_CONFIG": config_path,
               "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", "")}
        api = ("GET", "/tasks", "limit=50", {"X-API-Key": KEY})
        results = {}
        for page in PAGES:
            path, _, query = page.replace("{id}", "1").partition("?")
            pairs = []
            for _ in range(args.rounds):
                a, body = cgi(args.python, env, "GET", path, query, headers={"Cookie": cookie})
                assert b"Status: 200" in body or b"200 OK" in body, body[:300]
                b, _ = cgi(args.python, env, api[0], api[1], api[2], headers=api[3])
                pairs.append((a, b))
            results[page] = pairs
        cgi_python = subprocess.run([args.python, "-c", "import platform; print(platform.python_version())"],
                                    stdout=subprocess.PIPE, check=True).stdout.decode().strip()
        print("dashboard page vs GET /tasks?limit=50, %s, %d tasks, %d rounds, CGI Python %s (%s), load %s"
              % (args.backend, args.tasks, args.rounds, cgi_python, args.python, benchlib.loadavg()))
        print("%-56s %10s %10s %8s" % ("page", "page ms", "list ms", "ratio"))
        for page, pairs in results.items():
            print("%-56s %10.1f %10.1f %8.2f" % (
                page, 1000 * statistics.median(a for a, _ in pairs),
                1000 * statistics.median(b for _, b in pairs),
                statistics.median(a / b for a, b in pairs)))
    finally:
        if database:
            benchlib.drop_mysql_database(mysql, database)
        benchlib.remove_tree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
