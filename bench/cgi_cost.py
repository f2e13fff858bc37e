#!/usr/bin/env python3
"""What one real CGI request costs, as ratios to floors measured in the same run.

Every sample is a new process: `cgi-bin/api.py` run by the chosen interpreter
with a CGI environment and the body on stdin, exactly as a web server runs it.
The floors are processes too (bench/floors/):

  (a) bare         a Python CGI that prints a header and `{}`
  (a+) json+sqlite (a) plus `import json, sqlite3` and one SQLite write
                   transaction: what any JSON-over-SQLite CGI pays (informational)
  (b) pymysql      imports PyMySQL, connects without TLS, runs SELECT 1
  (c) +jsonschema  (b) plus `import jsonschema`
  (b') tls-ctx     (b) with PyMySQL's default TLS handling (informational)

All cases of all backends run round-robin in one loop, in a fresh random
order each round (claim -> progress -> complete keep their order, as they act
on the same task), after warm-up rounds; the report gives the median and p90
of each. MariaDB runs use a throwaway database made from schema.sql and
dropped at the end.

    .venv/py3.11/bin/python bench/cgi_cost.py                 # both backends
    .venv/py3.11/bin/python bench/cgi_cost.py --backend sqlite --rounds 20
    ... --update-docs    # also rewrite the generated part of docs/performance.md
    ... --host-python /usr/bin/python3 --create   # creates before/after issue 19

Results go to bench/results/cgi_cost-<UTC time>.{json,md}. Numbers belong in
docs/performance.md, never in test assertions.
"""

import argparse
import glob
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API = os.path.join(ROOT, "cgi-bin", "api.py")
FLOORS = os.path.join(ROOT, "bench", "floors")
DOC = os.path.join(ROOT, "docs", "performance.md")
sys.path.insert(0, os.path.join(ROOT, "bench"))

import benchlib  # noqa: E402

TYPE_NAME = "bench.demo"
PARAM_SCHEMA = {"type": "object", "required": ["n"],
                "properties": {"n": {"type": "integer"}, "tag": {"type": "string"}}}
# issue 19: a schema of the plain keywords a create checks without importing jsonschema
PLAIN_TYPE = "bench.plain"
PLAIN_SCHEMA = {"type": "object", "required": ["url"], "additionalProperties": False,
                "properties": {"url": {"type": "string", "format": "uri", "minLength": 1},
                               "depth": {"type": "integer", "minimum": 0, "maximum": 10},
                               "mode": {"enum": ["fast", "full"]},
                               "tags": {"type": "array", "maxItems": 10,
                                        "items": {"type": "string", "pattern": "^[a-z]+$"}}}}
WORKER = "bench-worker"
BATCH = 50
API_CASES = ("health", "register", "create", "claim", "progress", "complete", "claim_batch", "complete_batch")
# Requests that act on what an earlier one claimed keep their order in a round.
CHAINS = (("claim", "progress", "complete"), ("claim_batch", "complete_batch"))


# -- one process --------------------------------------------------------------
def cgi_env(method, path, body, extra=None):
    """The environment Apache's mod_cgi hands a script (RFC 3875), nothing inherited but PATH/LANG."""
    env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TMPDIR") if key in os.environ}
    env.update({
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "taskq-bench",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1",
        "REQUEST_METHOD": method, "SCRIPT_NAME": "/cgi-bin/api.py", "SCRIPT_FILENAME": API,
    })
    path, _, query = path.partition("?")
    env.update(PATH_INFO=path, QUERY_STRING=query, REQUEST_URI="/cgi-bin/api.py" + path
               + ("?" + query if query else ""))
    if body:
        env["CONTENT_LENGTH"] = str(len(body))
        env["CONTENT_TYPE"] = "application/json"
    env.update(extra or {})
    return env


def spawn(python, script, env, body=b"", args=()):
    """((wall s, cpu s), status, parsed JSON or None, stderr) of one CGI process.

    cpu is the child's user + system time: less disturbed than wall time by
    whatever else the machine runs, so it is reported beside it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen([python] + list(args) + [script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.communicate(body, timeout=60)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = (wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (script, proc.returncode, err.decode("utf-8", "replace")))
    status, payload = benchlib.parse_cgi(out)
    return elapsed, status, payload, err


# -- the cases ------------------------------------------------------------------
class Backend:
    """One backend's config file and the state a round's chained requests share."""

    def __init__(self, name, python, config_path, mysql_env=None, api=API, env=None):
        self.name = name
        self.python = python
        self.config_path = config_path
        self.mysql_env = mysql_env
        self.api = api
        self.env = env or {}
        self.claimed_id = None
        self.claimed_batch = []
        self.counter = 0

    def request(self, method, path, body=None, args=(), extra_env=None):
        raw = b"" if body is None else json.dumps(body).encode("utf-8")
        env = cgi_env(method, path, raw, dict(self.env, SCRIPT_FILENAME=self.api,
                                              TASKQ_CONFIG=self.config_path, **(extra_env or {})))
        return spawn(self.python, self.api, env, raw, args)

    def case(self, name):
        """(method, path, body, accepted statuses) for the next run of `name`."""
        if name == "health":
            return "GET", "/health", None, (200,)
        if name == "list":  # a dashboard's or a script's page of tasks
            return "GET", "/tasks?limit=50", None, (200,)
        if name == "register":
            return ("POST", "/task-types/register",
                    {"name": TYPE_NAME, "version": "1.0", "param_schema": PARAM_SCHEMA}, (200, 201))
        if name == "create":
            self.counter += 1
            return ("POST", "/tasks", {"type": TYPE_NAME, "priority": 0,
                                       "params": {"n": self.counter, "tag": uuid.uuid4().hex}}, (201,))
        if name == "register_plain":
            return ("POST", "/task-types/register",
                    {"name": PLAIN_TYPE, "version": "1.0", "param_schema": PLAIN_SCHEMA}, (200, 201))
        if name == "create_plain":
            self.counter += 1
            return ("POST", "/tasks", {"type": PLAIN_TYPE, "params": {
                "url": "https://example.com/%d/%s" % (self.counter, uuid.uuid4().hex),
                "depth": 3, "mode": "full", "tags": ["bench", "plain"]}}, (201,))
        if name == "create_invalid":  # fails the schema: jsonschema names the errors
            return ("POST", "/tasks", {"type": PLAIN_TYPE, "params": {"depth": 11, "mode": "slow"}},
                    (400,))
        if name == "claim":
            return "POST", "/tasks/claim", {"worker_id": WORKER}, (200,)
        if name == "progress":
            return ("POST", "/tasks/%d/progress" % self.claimed_id,
                    {"worker_id": WORKER, "progress": 50, "message": "half way"}, (200,))
        if name == "complete":
            return ("POST", "/tasks/%d/complete" % self.claimed_id,
                    {"worker_id": WORKER, "success": True, "result": {"ok": True}}, (200,))
        if name == "claim_carry":  # complete the claimed task and claim the next: one request
            return ("POST", "/tasks/claim",
                    {"worker_id": WORKER, "results": [{"id": self.claimed_id, "success": True,
                                                       "result": {"ok": True}}]}, (200,))
        if name == "claim_batch":
            return "POST", "/tasks/claim", {"worker_id": WORKER, "limit": BATCH}, (200,)
        if name == "complete_batch":
            return ("POST", "/tasks/complete",
                    {"worker_id": WORKER, "results": [{"id": task_id, "success": True, "result": {"ok": True}}
                                                      for task_id in self.claimed_batch]}, (200,))
        raise KeyError(name)

    def run(self, name):
        method, path, body, accepted = self.case(name)
        elapsed, status, payload, err = self.request(method, path, body)
        if status not in accepted:
            raise RuntimeError("%s %s on %s answered %s: %r %s" % (
                method, path, self.name, status, payload, err.decode("utf-8", "replace")[-2000:]))
        if name == "claim":
            self.claimed_id = payload["data"]["id"]
        elif name == "claim_carry":
            data = payload["data"]
            if not data["results"][0]["ok"] or len(data["tasks"]) != 1:
                raise RuntimeError("a claim carrying a result on %s answered %r" % (self.name, data))
            self.claimed_id = data["tasks"][0]["id"]
        elif name == "claim_batch":
            self.claimed_batch = [task["id"] for task in payload["data"]["tasks"]]
            if len(self.claimed_batch) != BATCH:
                raise RuntimeError("a batch claim on %s got %d tasks, not %d" % (self.name, len(self.claimed_batch), BATCH))
        elif name == "complete_batch" and payload["data"]["completed"] != BATCH:
            raise RuntimeError("a batch complete on %s completed %r" % (self.name, payload["data"]))
        return elapsed

    def prepare(self, rounds):
        """Register the type and queue enough tasks that every claim of every round finds its share."""
        self.run("register")
        total = (rounds + 2) * (BATCH + 1) + 10
        for start in range(0, total, 500):
            tasks = [{"type": TYPE_NAME, "params": {"n": -i, "tag": "prefill"}}
                     for i in range(start + 1, min(total, start + 500) + 1)]
            _, status, payload, err = self.request("POST", "/tasks", {"tasks": tasks})
            if status not in (200, 201):
                raise RuntimeError("batch create answered %s: %r %s" % (status, payload, err[-2000:]))


class Floor:
    def __init__(self, name, python, script, env):
        self.name, self.python, self.script, self.env = name, python, script, env

    def run(self, _name=None):
        elapsed, status, _, _ = spawn(self.python, self.script, cgi_env("GET", "/", b"", self.env))
        if status != 200:
            raise RuntimeError("floor %s answered %s" % (self.name, status))
        return elapsed


def schedule(cases):
    """A random order of (runner, name), each backend's chained requests in their order."""
    order = list(cases)
    random.shuffle(order)
    for backend in {runner for runner, name in cases if isinstance(runner, Backend)}:
        for chain in getattr(backend, "chains", CHAINS):
            slots = [i for i, (runner, name) in enumerate(order) if runner is backend and name in chain]
            for slot, name in zip(slots, chain):
                order[slot] = (backend, name)
    return order


def sample(cases, warmup, rounds):
    """({key: wall times}, {key: CPU times}) of every case, round-robin in a random order."""
    samples, cpu_samples = {}, {}
    total = warmup + rounds
    started = time.time()
    for round_no in range(total):
        for runner, name in schedule(cases):
            wall, cpu = runner.run(name)
            if round_no >= warmup:
                key = name if isinstance(runner, Floor) else "%s:%s" % (runner.name, name)
                samples.setdefault(key, []).append(wall)
                cpu_samples.setdefault(key, []).append(cpu)
        if round_no % 10 == 9:
            print("round %d/%d (%.0fs)" % (round_no + 1, total, time.time() - started), file=sys.stderr)
    return samples, cpu_samples


# -- what a claim imports ---------------------------------------------------------------
def import_profile(backend, repeats=5):
    """Per-module import times of a CGI claim (median over repeats) and the module set."""
    runs = []
    for _ in range(repeats):
        elapsed, status, payload, err = backend.request(
            "POST", "/tasks/claim", {"worker_id": WORKER}, extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
        if status != 200:
            raise RuntimeError("claim for the import profile answered %s: %r" % (status, payload))
        backend.claimed_id = payload["data"]["id"]
        backend.run("complete")
        runs.append(benchlib.parse_importtime(err.decode("utf-8", "replace")))
    return benchlib.merge_importtimes(runs)


def floor_modules(python, script, env):
    _, _, _, err = spawn(python, script, cgi_env("GET", "/", b"", dict(env, PYTHONPROFILEIMPORTTIME="1")))
    return set(benchlib.parse_importtime(err.decode("utf-8", "replace")))


# -- setup ----------------------------------------------------------------------------
def default_python():
    if os.path.realpath(sys.prefix).startswith(os.path.realpath(os.path.join(ROOT, ".venv"))):
        return sys.executable
    found = sorted(glob.glob(os.path.join(ROOT, ".venv", "py3.*", "bin", "python")),
                   key=lambda p: [int(x) for x in re.findall(r"py3\.(\d+)", p)])
    if not found:
        sys.exit("no .venv/py3.X found: run ./test once, or pass --python")
    return found[-1]


def interpreter_facts(python):
    code = ("import sys, sqlite3, json\n"
            "out = {'python': sys.version.split()[0], 'sqlite': sqlite3.sqlite_version}\n"
            "for m in ('pymysql', 'jsonschema'):\n"
            "    try:\n"
            "        from importlib.metadata import version\n"
            "        out[m] = version('PyMySQL' if m == 'pymysql' else m)\n"
            "    except Exception as exc:\n"
            "        out[m] = 'unknown (%s)' % exc\n"
            "print(json.dumps(out))\n")
    return json.loads(subprocess.check_output([python, "-c", code]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--python", help="interpreter that runs the CGI processes (default: the project venv's)")
    parser.add_argument("--backend", action="append", choices=("sqlite", "mysql"),
                        help="repeatable; default both")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mysql", default=os.environ.get("TASKQ_TEST_MYSQL", ""),
                        help='"host=.. port=.. user=.. password=.." (default: TASKQ_TEST_MYSQL, else root@127.0.0.1:3306)')
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--update-docs", action="store_true",
                        help="rewrite the cgi_cost part of docs/performance.md")
    parser.add_argument("--host-python", metavar="PYTHON",
                        help="instead: MariaDB requests on this interpreter (e.g. /usr/bin/python3) "
                             "with no bytecode cache, the site before issue 11 against the bundle now")
    parser.add_argument("--create", action="store_true",
                        help="with --host-python: the create route (issue 19), the bundle as at "
                             "--before-ref against the bundle now, both with bytecode")
    parser.add_argument("--before-ref", help="git commit of the 'before' site (default: merge-base "
                                             "with main)")
    args = parser.parse_args(argv)
    if args.host_python and args.create:
        return host_create_main(args)
    if args.host_python:
        return host_main(args)
    backends = args.backend or ["sqlite", "mysql"]
    python = os.path.abspath(args.python or default_python())
    random.seed(args.seed)
    if "mysql" in backends and os.path.realpath(sys.executable) != os.path.realpath(python):
        try:
            import pymysql  # noqa: F401 - making the throwaway database needs it here too
        except ImportError:
            os.execv(python, [python] + sys.argv)

    facts = benchlib.machine_facts()
    facts.update(interpreter_facts(python))
    facts["interpreter"] = python

    tmp = tempfile.mkdtemp(prefix="taskq-bench-")
    mysql_db = None
    runners = {}
    try:
        if "sqlite" in backends:
            path = benchlib.write_config(tmp, "sqlite", sqlite_path=os.path.join(tmp, "bench.sqlite3"))
            runners["sqlite"] = Backend("sqlite", python, path)
        if "mysql" in backends:
            mysql = benchlib.mysql_params(args.mysql)
            mysql_db, facts["mariadb"] = benchlib.create_mysql_database(mysql)
            path = benchlib.write_config(tmp, "mysql", **dict(mysql, name=mysql_db))
            runners["mysql"] = Backend("mysql", python, path)
        for runner in runners.values():
            runner.prepare(args.warmup + args.rounds + 5)

        cases = [(Floor("a", python, os.path.join(FLOORS, "bare.py"), {}), "floor_a")]
        if "sqlite" in runners:
            cases.append((Floor("a+", python, os.path.join(FLOORS, "sqlite_json.py"),
                                {"TASKQ_BENCH_SQLITE": os.path.join(tmp, "floor.sqlite3")}), "floor_a_plus"))
        if "mysql" in runners:
            mysql_env = {"TASKQ_BENCH_MYSQL": benchlib.mysql_spec(dict(mysql, database=mysql_db))}
            floor_b = os.path.join(FLOORS, "pymysql_select1.py")
            cases += [(Floor("b", python, floor_b, mysql_env), "floor_b"),
                      (Floor("c", python, floor_b, dict(mysql_env, TASKQ_BENCH_JSONSCHEMA="1")), "floor_c"),
                      (Floor("b_tls", python, floor_b, dict(mysql_env, TASKQ_BENCH_TLS_CTX="1")), "floor_b_tls_ctx")]
        for runner in runners.values():
            cases += [(runner, name) for name in API_CASES]

        samples, cpu_samples = sample(cases, args.warmup, args.rounds)

        profiles = {name: import_profile(runner) for name, runner in runners.items()}
        floor_sets = {"floor_a": floor_modules(python, os.path.join(FLOORS, "bare.py"), {})}
        if "mysql" in runners:
            floor_sets["floor_b"] = floor_modules(python, os.path.join(FLOORS, "pymysql_select1.py"),
                                                  mysql_env)
    finally:
        if mysql_db:
            benchlib.drop_mysql_database(mysql, mysql_db)
        benchlib.remove_tree(tmp)

    facts["load_after"] = benchlib.loadavg()
    stats = {key: benchlib.summarize(values) for key, values in samples.items()}
    cpu_stats = {key: benchlib.summarize(values) for key, values in cpu_samples.items()}
    report = {"facts": facts, "rounds": args.rounds, "warmup": args.warmup, "stats": stats,
              "cpu_stats": cpu_stats,
              "samples_ms": {k: [round(v * 1000, 3) for v in vs] for k, vs in samples.items()},
              "cpu_samples_ms": {k: [round(v * 1000, 3) for v in vs] for k, vs in cpu_samples.items()},
              "imports": {name: {"modules": prof, "beyond_floor": sorted(
                  set(prof) - floor_sets["floor_b" if name == "mysql" else "floor_a"])}
                          for name, prof in profiles.items()}}
    benchlib.publish("cgi_cost", report, render(report), DOC if args.update_docs else None, "cgi_cost", keep_markdown=True)
    for name, data in report["imports"].items():
        if any(m == "jsonschema" or m.startswith("jsonschema.") for m in data["modules"]):
            print("FAIL: a claim on %s imported jsonschema" % name, file=sys.stderr)
            return 1
    return 0


# -- the host's interpreter: before/after in one run (issue 11) --------------------------
HOST_CASES = ("health", "list", "claim", "progress", "complete", "claim_batch", "complete_batch")
CARRY_CHAIN = ("claim", "progress", "claim_carry", "complete")


def host_main(args):
    """MariaDB requests on `--host-python` with the bytecode cache not writable: the site as
    it was before issue 11 (no bytecode, PyMySQL importing cryptography and ssl) against
    the bundle built now, beside floors (a) and (b) on the same interpreter, in one loop."""
    python = args.host_python
    facts = benchlib.machine_facts()
    facts.update(interpreter_facts(python))
    facts["interpreter"] = python
    tmp = tempfile.mkdtemp(prefix="taskq-bench-host-")
    mysql = benchlib.mysql_params(args.mysql)
    mysql_db = None
    no_cache = {"PYTHONDONTWRITEBYTECODE": "1"}
    try:
        before, after, ref, zip_name = benchlib.host_sites(
            ROOT, python, tmp, args.before_ref, log=lambda msg: print(msg, file=sys.stderr))
        facts.update(before_ref=ref[:12], bundle=zip_name)
        code = ("import sys; sys.path.insert(0, %r); import pymysql; "
                "print(getattr(pymysql, 'VERSION_STRING', pymysql.__version__))")
        facts["pymysql"] = subprocess.check_output(
            [python, "-c", code % os.path.join(after, "lib")], universal_newlines=True).strip()
        crypto = subprocess.run([python, "-c", "import cryptography; print(cryptography.__version__)"],
                                stdout=subprocess.PIPE, universal_newlines=True)
        facts["cryptography"] = crypto.stdout.strip() if crypto.returncode == 0 else "not installed"
        mysql_db, facts["mariadb"] = benchlib.create_mysql_database(mysql)
        config = benchlib.write_config(tmp, "mysql", **dict(mysql, name=mysql_db))
        sites = {}
        for name, site in (("before", before), ("after", after)):
            env = dict(no_cache)
            sites[name] = Backend(name, python, config, api=os.path.join(site, "cgi-bin", "api.py"),
                                  env=env)
        sites["after"].chains = (CARRY_CHAIN, ("claim_batch", "complete_batch"))
        sites["after"].prepare(2 * (args.warmup + args.rounds + 5))
        mysql_env = dict(no_cache, TASKQ_BENCH_MYSQL=benchlib.mysql_spec(dict(mysql, database=mysql_db)),
                         PYTHONPATH=os.path.join(after, "lib"))
        floor_b = os.path.join(FLOORS, "pymysql_select1.py")
        cases = [(Floor("a", python, os.path.join(FLOORS, "bare.py"), no_cache), "floor_a"),
                 (Floor("b", python, floor_b, dict(mysql_env, TASKQ_BENCH_NO_CRYPTO="1")), "floor_b"),
                 (Floor("b_crypto", python, floor_b, mysql_env), "floor_b_crypto")]
        cases += [(sites["before"], name) for name in HOST_CASES]
        cases += [(sites["after"], name) for name in HOST_CASES + ("claim_carry",)]
        samples, cpu_samples = sample(cases, args.warmup, args.rounds)
    finally:
        if mysql_db:
            benchlib.drop_mysql_database(mysql, mysql_db)
        benchlib.remove_tree(tmp)
    facts["load_after"] = benchlib.loadavg()
    report = {"facts": facts, "rounds": args.rounds, "warmup": args.warmup,
              "stats": {k: benchlib.summarize(v) for k, v in samples.items()},
              "cpu_stats": {k: benchlib.summarize(v) for k, v in cpu_samples.items()},
              "samples_ms": {k: [round(v * 1000, 3) for v in vs] for k, vs in samples.items()}}
    benchlib.publish("cgi_cost_host", report, render_host(report), DOC if args.update_docs else None, "cgi_cost_host")
    return 0


def render_host(report):
    f, stats, cpu = report["facts"], report["stats"], report["cpu_stats"]
    out = ["Measured %s by `bench/cgi_cost.py --host-python %s` (%d rounds after %d warm-up, all "
           "cases interleaved in a random order each round; every sample a new process, all with "
           "PYTHONDONTWRITEBYTECODE=1). Python %s, PyMySQL %s, cryptography %s, MariaDB %s on "
           "127.0.0.1. *before*: the site at commit %s (no bytecode shipped); *after*: the bundle "
           "`%s` built now (bytecode, PyMySQL without ssl and cryptography). 1-minute load average "
           "%s before, %s after (2 cores)." % (
               f["date"], f["interpreter"], report["rounds"], report["warmup"], f["python"],
               f["pymysql"], f["cryptography"], f.get("mariadb"), f["before_ref"], f["bundle"],
               f.get("load_before"), f.get("load_after")),
           "",
           "| process | wall median ms | wall p90 ms | CPU median ms | wall / (b) | CPU / (b) | target |",
           "|---|---:|---:|---:|---:|---:|---|"]
    rows = [("floor_a", "(a) bare Python CGI"),
            ("floor_b", "(b) + `import pymysql` (cryptography kept out), connect, `SELECT 1`"),
            ("floor_b_crypto", "(b) as PyMySQL imports on this host (with cryptography)")]
    for site in ("before", "after"):
        for case in HOST_CASES + ("claim_carry",):
            label = "claim carrying the last result" if case == "claim_carry" else case_label(case)
            rows.append(("%s:%s" % (site, case), "%s `%s`" % (site, label)))
    base, base_cpu = stats["floor_b"]["median"], cpu["floor_b"]["median"]
    for key, label in rows:
        if key not in stats:
            continue
        target = ""
        if key.split(":")[-1] in ("claim", "progress", "complete", "health"):
            ok = stats[key]["median"] / base <= 1.15
            target = "<= 1.15x: %s" % ("meets" if ok else "**misses**")
        out.append("| %s | %.1f | %.1f | %.1f | %.2fx | %.2fx | %s |" % (
            label, stats[key]["median"] * 1e3, stats[key]["p90"] * 1e3, cpu[key]["median"] * 1e3,
            stats[key]["median"] / base, cpu[key]["median"] / base_cpu, target))
    return "\n".join(out) + "\n"


# -- the create route on the host's interpreter: before/after in one run (issue 19) -----
CREATE_CASES = ("create", "create_plain")


def host_create_main(args):
    """MariaDB creates on `--host-python`, bytecode cache not writable: the bundle with
    taskq's code as at --before-ref (every create imports jsonschema) against the bundle
    now, beside floors (a), (b) and (c) on the same interpreter, in one loop."""
    python = args.host_python
    facts = benchlib.machine_facts()
    facts.update(interpreter_facts(python))
    facts["interpreter"] = python
    tmp = tempfile.mkdtemp(prefix="taskq-bench-create-")
    mysql = benchlib.mysql_params(args.mysql)
    mysql_db = None
    no_cache = {"PYTHONDONTWRITEBYTECODE": "1"}
    try:
        _, after, ref, zip_name = benchlib.host_sites(
            ROOT, python, tmp, args.before_ref, log=lambda msg: print(msg, file=sys.stderr))
        before = benchlib.bundled_site_at(ROOT, ref, after, os.path.join(tmp, "before-bundle"), python)
        facts.update(before_ref=ref[:12], bundle=zip_name)
        code = ("import sys; sys.path.insert(0, %r); import pymysql, jsonschema.validators; "
                "from importlib.metadata import version; "
                "print(version('PyMySQL'), version('jsonschema'))")
        facts["pymysql"], facts["jsonschema"] = subprocess.check_output(
            [python, "-c", code % os.path.join(after, "lib")], universal_newlines=True).split()
        mysql_db, facts["mariadb"] = benchlib.create_mysql_database(mysql)
        config = benchlib.write_config(tmp, "mysql", **dict(mysql, name=mysql_db))
        sites = {name: Backend(name, python, config, api=os.path.join(site, "cgi-bin", "api.py"),
                               env=dict(no_cache))
                 for name, site in (("before", before), ("after", after))}
        sites["after"].run("register")
        sites["after"].run("register_plain")
        for _ in range(5):  # a claim in the first round finds a task
            sites["after"].run("create")
        sites["before"].counter = 10 ** 6  # the sites share the database: no deduplication
        mysql_env = dict(no_cache, TASKQ_BENCH_MYSQL=benchlib.mysql_spec(dict(mysql, database=mysql_db)),
                         PYTHONPATH=os.path.join(after, "lib"), TASKQ_BENCH_NO_CRYPTO="1")
        floor_b = os.path.join(FLOORS, "pymysql_select1.py")
        cases = [(Floor("a", python, os.path.join(FLOORS, "bare.py"), no_cache), "floor_a"),
                 (Floor("b", python, floor_b, mysql_env), "floor_b"),
                 (Floor("c", python, floor_b, dict(mysql_env, TASKQ_BENCH_JSONSCHEMA="1")), "floor_c")]
        cases += [(site, name) for site in sites.values() for name in CREATE_CASES]
        cases += [(sites["after"], "create_invalid"), (sites["after"], "claim")]
        samples, cpu_samples = sample(cases, args.warmup, args.rounds)
    finally:
        if mysql_db:
            benchlib.drop_mysql_database(mysql, mysql_db)
        benchlib.remove_tree(tmp)
    facts["load_after"] = benchlib.loadavg()
    report = {"facts": facts, "rounds": args.rounds, "warmup": args.warmup,
              "stats": {k: benchlib.summarize(v) for k, v in samples.items()},
              "cpu_stats": {k: benchlib.summarize(v) for k, v in cpu_samples.items()},
              "samples_ms": {k: [round(v * 1000, 3) for v in vs] for k, vs in samples.items()},
              "cpu_samples_ms": {k: [round(v * 1000, 3) for v in vs] for k, vs in cpu_samples.items()}}
    benchlib.publish("cgi_cost_create", report, render_host_create(report), DOC if args.update_docs else None, "cgi_cost_create")
    return 0


def render_host_create(report):
    f, stats, cpu = report["facts"], report["stats"], report["cpu_stats"]
    out = ["Measured %s by `bench/cgi_cost.py --host-python %s --create` (%d rounds after %d "
           "warm-up, all cases interleaved in a random order each round; every sample a new "
           "process, all with PYTHONDONTWRITEBYTECODE=1). Python %s, PyMySQL %s, jsonschema %s, "
           "MariaDB %s on 127.0.0.1. Both sites are the bundle `%s` (bytecode compiled by this "
           "interpreter); *before* has taskq's code as at commit %s. 1-minute load average %s "
           "before, %s after (2 cores)." % (
               f["date"], f["interpreter"], report["rounds"], report["warmup"], f["python"],
               f["pymysql"], f["jsonschema"], f.get("mariadb"), f["bundle"], f["before_ref"],
               f.get("load_before"), f.get("load_after")),
           "",
           "| process | wall median ms | wall p90 ms | CPU median ms | wall / (b) | CPU / (b) | target |",
           "|---|---:|---:|---:|---:|---:|---|"]
    rows = [("floor_a", "(a) bare Python CGI"),
            ("floor_b", "(b) + `import pymysql` (cryptography kept out), connect, `SELECT 1`"),
            ("floor_c", "(c) (b) + `import jsonschema`")]
    labels = {"create": "`POST /tasks` (type, required, properties)",
              "create_plain": "`POST /tasks` (plain keywords: format, minLength, enum, bounds, "
                              "items, pattern, additionalProperties)",
              "create_invalid": "`POST /tasks` failing the schema (400, jsonschema's messages)",
              "claim": "`POST /tasks/claim`"}
    for site in ("before", "after"):
        for case in CREATE_CASES + ("create_invalid", "claim"):
            rows.append(("%s:%s" % (site, case), "%s %s" % (site, labels[case])))
    base, base_cpu = stats["floor_b"]["median"], cpu["floor_b"]["median"]
    for key, label in rows:
        if key not in stats:
            continue
        target = ""
        if key.split(":")[-1] in CREATE_CASES + ("claim",):
            ok = stats[key]["median"] / base <= 1.15
            target = "<= 1.15x: %s" % ("meets" if ok else "**misses**")
        out.append("| %s | %.1f | %.1f | %.1f | %.2fx | %.2fx | %s |" % (
            label, stats[key]["median"] * 1e3, stats[key]["p90"] * 1e3, cpu[key]["median"] * 1e3,
            stats[key]["median"] / base, cpu[key]["median"] / base_cpu, target))
    return "\n".join(out) + "\n"


# -- the report ------------------------------------------------------------------------
RATIOS = (  # (case, floor, target or None)
    ("mysql:health", "floor_b", 1.15), ("mysql:claim", "floor_b", 1.15),
    ("mysql:progress", "floor_b", 1.15), ("mysql:complete", "floor_b", 1.15),
    ("mysql:create", "floor_b", 1.15), ("mysql:register", "floor_c", 1.15),
    ("sqlite:claim", "floor_a", 1.5), ("sqlite:complete", "floor_a", 1.5),
    ("sqlite:claim", "floor_a_plus", None), ("sqlite:complete", "floor_a_plus", None),
    ("sqlite:health", "floor_a", None), ("sqlite:progress", "floor_a", None),
    ("sqlite:create", "floor_a", None), ("sqlite:register", "floor_a", None),
)

FLOOR_TEXT = {
    "floor_a": "(a) bare Python CGI: header + `{}`",
    "floor_a_plus": "(a+) (a) + `import json, sqlite3`, one write transaction (informational)",
    "floor_b": "(b) (a) + `import pymysql`, connect (no TLS), `SELECT 1`",
    "floor_c": "(c) (b) + `import jsonschema` (what a register pays)",
    "floor_b_tls_ctx": "(b') (b) with PyMySQL's default TLS handling (builds a TLS context)",
}


FLOOR_SHORT = {"floor_a": "(a)", "floor_a_plus": "(a+)", "floor_b": "(b)", "floor_c": "(c)"}


def render(report):
    f, stats, cpu = report["facts"], report["stats"], report["cpu_stats"]
    out = ["Measured %s by `bench/cgi_cost.py` (%d rounds after %d warm-up rounds, all cases "
           "interleaved in a random order each round; every sample is a new process)." % (
               f["date"], report["rounds"], report["warmup"]),
           "",
           "Machine: %s, %s cores, %s; Python %s (`%s`), SQLite %s, PyMySQL %s, jsonschema %s%s." % (
               f["cpu"], f["cores"], f["os"], f["python"], os.path.relpath(f["interpreter"], ROOT),
               f["sqlite"], f["pymysql"], f["jsonschema"],
               ", MariaDB %s on 127.0.0.1 (TCP)" % f["mariadb"] if f.get("mariadb") else ""),
           "",
           "1-minute load average %s before the run, %s after (2 cores; anything above ~1 "
           "is other work competing with the bench)." % (f.get("load_before"), f.get("load_after")),
           "",
           "Wall time is what a client waits for (process start to exit); CPU is the process's "
           "user + system time, which other load on the machine disturbs less.",
           "",
           "| process | wall median ms | wall p90 ms | CPU median ms |", "|---|---:|---:|---:|"]
    rows = [(key, FLOOR_TEXT[key]) for key in ("floor_a", "floor_a_plus", "floor_b", "floor_c", "floor_b_tls_ctx")]
    rows += [("%s:%s" % (backend, case), "%s `%s`" % (backend, case_label(case)))
             for backend in ("sqlite", "mysql") for case in API_CASES]
    for key, label in rows:
        if key in stats:
            out.append("| %s | %.1f | %.1f | %.1f |" % (label, stats[key]["median"] * 1e3,
                                                      stats[key]["p90"] * 1e3, cpu[key]["median"] * 1e3))
    out += ["", "| request | floor | wall ratio (medians) | CPU ratio (medians) | target | |",
            "|---|---|---:|---:|---:|---|"]
    for key, floor, target in RATIOS:
        if key in stats and floor in stats:
            ratio = stats[key]["median"] / stats[floor]["median"]
            cpu_ratio = cpu[key]["median"] / cpu[floor]["median"]
            verdict = "" if target is None else ("meets" if ratio <= target else "**misses**")
            out.append("| %s `%s` | %s | %.2fx | %.2fx | %s | %s |" % (
                key.split(":")[0], case_label(key.split(":")[1]), FLOOR_SHORT[floor],
                ratio, cpu_ratio, "" if target is None else "<= %.2fx" % target, verdict))
    batch_rows = []
    for backend in ("sqlite", "mysql"):
        claim, complete = "%s:claim_batch" % backend, "%s:complete_batch" % backend
        single_claim, single_complete = "%s:claim" % backend, "%s:complete" % backend
        if claim in stats and complete in stats:
            cpu_per_task = (cpu[claim]["median"] + cpu[complete]["median"]) / BATCH
            wall_per_task = (stats[claim]["median"] + stats[complete]["median"]) / BATCH
            single_cpu = cpu[single_claim]["median"] + cpu[single_complete]["median"]
            batch_rows.append("| %s | %.2f | %.2f | %.1f | %.0f | %.0f |" % (
                backend, wall_per_task * 1e3, cpu_per_task * 1e3, single_cpu * 1e3,
                (f["cores"] or 1) / cpu_per_task, (f["cores"] or 1) / single_cpu))
    if batch_rows:
        out += ["", "Per task, a worker's claim + complete in batches of %d against one at a time. The "
                "projection divides the machine's %s cores by the CPU per task of the CGI processes "
                "alone: it leaves out Apache and the database server's own CPU (MariaDB runs the "
                "statements of the batch), so it is an upper bound." % (BATCH, f["cores"]),
                "", "| backend | batch wall ms/task | batch CPU ms/task | single CPU ms/task | "
                    "batch tasks/s, CPU bound | single tasks/s, CPU bound |",
                "|---|---:|---:|---:|---:|---:|"] + batch_rows
    for name, data in sorted(report["imports"].items()):
        modules = data["modules"]
        top = [(m, t) for m, t in modules.items() if t["depth"] == 0]
        top.sort(key=lambda item: -item[1]["cumulative"])
        has_jsonschema = any(m == "jsonschema" or m.startswith("jsonschema.") for m in modules)
        out += ["", "What a CGI claim on %s imports (`python -X importtime`, median of 5 runs): "
                "%d modules; jsonschema %s. Top-level imports by cumulative time:" % (
                    name, len(modules), "**imported**" if has_jsonschema else "not imported"),
                "", "| module | cumulative ms | self ms |", "|---|---:|---:|"]
        for module, t in top[:12]:
            out.append("| `%s` | %.1f | %.1f |" % (module, t["cumulative"] / 1e3, t["self"] / 1e3))
        beyond = data["beyond_floor"]
        floor = "(b)" if name == "mysql" else "(a)"
        self_total = sum(modules[m]["self"] for m in beyond) / 1e3
        out += ["", "Modules a claim on %s imports beyond floor %s (%d, %.1f ms of self time): %s" % (
            name, floor, len(beyond), self_total, ", ".join("`%s`" % m for m in beyond) or "none")]
    return "\n".join(out) + "\n"


def case_label(case):
    return {"health": "GET /health", "list": "GET /tasks?limit=50", "register": "POST /task-types/register", "create": "POST /tasks",
            "claim": "POST /tasks/claim", "progress": "POST /tasks/{id}/progress",
            "complete": "POST /tasks/{id}/complete",
            "claim_batch": "POST /tasks/claim (limit=%d)" % BATCH,
            "complete_batch": "POST /tasks/complete (%d results)" % BATCH}[case]


if __name__ == "__main__":
    sys.exit(main())
