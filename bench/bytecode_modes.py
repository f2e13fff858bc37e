#!/usr/bin/env python3
"""What the kind of shipped bytecode, and the release check, cost a CGI request (issue 22).

One bundle, built now for the host's interpreter, unpacked into five sites
that differ only in lib/'s bytecode and lib/taskq/MANIFEST:

  unchecked         every .pyc an unchecked hash, no MANIFEST: the bundle before issue 22
  shipped           taskq's .pyc checked hashes, the vendored ones unchecked, MANIFEST
                    (release check on every request): what tools/bundle.py ships now
  shipped, no check the same without MANIFEST: what the release check alone costs
  all checked       every .pyc a checked hash (vendored packages too), MANIFEST
  no bytecode       no .pyc at all, MANIFEST: every module compiled on every request

Each request is a new process of the host's Python (default /usr/bin/python3,
Debian's, with python3-cryptography) running the site's cgi-bin/api.py as
`nobody` (setpriv), which cannot write the root-owned lib/__pycache__: as on
a host where the files belong to the FTP account. PYTHONDONTWRITEBYTECODE is
not set: Python tries to write the .pyc it compiles and fails, as there.
Cases: GET /health and POST /tasks/claim on SQLite, all sites and cases
interleaved in a random order each round after warm-up rounds. The release
check is also timed in-process (a loop of check() calls on the shipped tree).

    .venv/py3.11/bin/python bench/bytecode_modes.py [--rounds 30] [--update-docs]

Run as root (setpriv); otherwise lib/ is made read-only for the running user.
Numbers go to docs/performance.md (--update-docs), never into tests.
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "performance.md")
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import benchlib  # noqa: E402
from cgi_cost import cgi_env, spawn  # noqa: E402

SITES = ("unchecked", "shipped", "shipped, no check", "all checked", "no bytecode")
CASES = ("health", "claim")
TYPE_NAME = "bench.bytecode"

RECOMPILE = r"""
import os, py_compile, sys
lib, own, vendored = sys.argv[1], sys.argv[2], sys.argv[3]
modes = {"checked": py_compile.PycInvalidationMode.CHECKED_HASH,
         "unchecked": py_compile.PycInvalidationMode.UNCHECKED_HASH}
for dirpath, dirnames, filenames in os.walk(lib):
    dirnames[:] = [d for d in dirnames if d != "__pycache__"]
    for name in filenames:
        if name.endswith(".py"):
            path = os.path.join(dirpath, name)
            mode = own if path.startswith(os.path.join(lib, "taskq") + os.sep) else vendored
            py_compile.compile(path, dfile=os.path.relpath(path, lib), doraise=True,
                               invalidation_mode=modes[mode])
"""


def make_sites(zip_path, python, work):
    import bundle

    base = bundle.extract(zip_path, os.path.join(work, "unpacked"))
    sites = {}
    for index, name in enumerate(SITES):
        site = os.path.join(work, "site%d" % index)
        shutil.copytree(base, site)
        lib = os.path.join(site, "lib")
        if name in ("unchecked", "all checked"):
            mode = "unchecked" if name == "unchecked" else "checked"
            subprocess.run([python, "-I", "-c", RECOMPILE, lib, mode, mode], check=True)
        if name in ("unchecked", "shipped, no check"):
            os.remove(os.path.join(lib, "taskq", "MANIFEST"))
        if name == "no bytecode":
            for dirpath, dirnames, _ in os.walk(lib):
                for d in dirnames:
                    if d == "__pycache__":
                        shutil.rmtree(os.path.join(dirpath, d))
        sites[name] = site
    return sites


def lock_down(work, sites):
    """lib/ unwritable for the CGI user: (command prefix, data folder it can write)."""
    data = os.path.join(work, "data")
    os.makedirs(data)
    if os.geteuid() == 0:
        import pwd

        nobody = pwd.getpwnam("nobody")
        os.chown(data, nobody.pw_uid, nobody.pw_gid)
        for dirpath, _, _ in os.walk(work):
            os.chmod(dirpath, 0o755)
        return ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                "--clear-groups"], data
    for site in sites.values():
        for dirpath, _, _ in os.walk(os.path.join(site, "lib")):
            os.chmod(dirpath, 0o555)
    return [], data


class Site:
    def __init__(self, name, root, python, prefix, config):
        self.name, self.root, self.python, self.prefix, self.config = name, root, python, prefix, config

    def request(self, method, path, body=None):
        raw = b"" if body is None else json.dumps(body).encode("utf-8")
        api = os.path.join(self.root, "cgi-bin", "api.py")
        env = cgi_env(method, path, raw, {"SCRIPT_FILENAME": api, "TASKQ_CONFIG": self.config})
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        runner, args = (self.prefix[0], self.prefix[1:] + [self.python]) if self.prefix else (self.python, [])
        elapsed, status, payload, err = spawn(runner, api, env, raw, args)
        if status not in (200, 201):
            raise RuntimeError("%s %s on %s answered %s: %r %s" % (
                method, path, self.name, status, payload, err.decode("utf-8", "replace")[-2000:]))
        return elapsed

    def run(self, case):
        if case == "health":
            return self.request("GET", "/health")
        return self.request("POST", "/tasks/claim", {"worker_id": "bench"})


def time_check(python, prefix, lib, loops=2000, repeats=7):
    """Median µs of one release.check(lib) call, and the number of files it reads."""
    code = ("import sys, time; sys.path.insert(0, %r)\n"
            "from taskq import release\n"
            "assert release.check(%r) is None\n"
            "text = open(%r).read(); m = release.Manifest.parse(text)\n"
            "n = sum(1 for p in m.files if p.endswith(release.STAMPED))\n"
            "best = []\n"
            "for _ in range(%d):\n"
            "    t = time.perf_counter()\n"
            "    for _ in range(%d): release.check(%r)\n"
            "    best.append((time.perf_counter() - t) / %d * 1e6)\n"
            "best.sort(); print(best[len(best) // 2], n, len(m.files))\n"
            % (lib, lib, os.path.join(lib, "taskq", "MANIFEST"), repeats, loops, lib, loops))
    out = subprocess.check_output(prefix + [python, "-c", code], universal_newlines=True).split()
    return float(out[0]), int(out[1]), int(out[2])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host-python", default="/usr/bin/python3")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args(argv)
    import bundle

    python = args.host_python
    version = subprocess.check_output([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                                      universal_newlines=True).strip()
    work = tempfile.mkdtemp(prefix="taskq-bytecode-bench-")
    os.chmod(work, 0o755)
    facts = benchlib.machine_facts()
    try:
        zip_path = bundle.build(python_version=version.rsplit(".", 1)[0],
                                output_dir=os.path.join(work, "dist"), compile_with=python,
                                log=lambda *a: None)
        sites = make_sites(zip_path, python, work)
        prefix, data = lock_down(work, sites)
        config = os.path.join(work, "config.ini")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write("[database]\nbackend = sqlite\nsqlite_path = %s\n"
                         % os.path.join(data, "bench.sqlite3"))
        os.chmod(config, 0o644)
        runners = [Site(name, sites[name], python, prefix, config) for name in SITES]
        filler = runners[1]
        filler.request("POST", "/task-types/register",
                       {"name": TYPE_NAME, "version": "1", "param_schema": {"type": "object"}})
        total = (args.rounds + args.warmup) * len(SITES) + 10
        for start in range(0, total, 500):
            filler.request("POST", "/tasks", {"tasks": [{"type": TYPE_NAME, "params": {"n": i}}
                                                        for i in range(start, min(total, start + 500))]})
        wall, cpu = {}, {}
        started = time.time()
        for round_no in range(args.warmup + args.rounds):
            order = [(site, case) for site in runners for case in CASES]
            random.shuffle(order)
            for site, case in order:
                elapsed = site.run(case)
                if round_no >= args.warmup:
                    wall.setdefault((site.name, case), []).append(elapsed[0] * 1000)
                    cpu.setdefault((site.name, case), []).append(elapsed[1] * 1000)
            if round_no % 10 == 9:
                print("round %d/%d (%.0fs)" % (round_no + 1, args.warmup + args.rounds,
                                               time.time() - started), file=sys.stderr)
        check_us, stamped, listed = time_check(python, prefix, os.path.join(sites["shipped"], "lib"))
        facts["load_after"] = benchlib.loadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = ["Measured %s by `bench/bytecode_modes.py` (%d rounds after %d warm-up, the five sites "
             "and both requests interleaved in a random order each round; every sample a new "
             "process). Python %s (%s) run as `nobody`, which cannot write `lib/__pycache__`; "
             "SQLite. 1-minute load average %s before, %s after (%s cores)."
             % (facts["date"], args.rounds, args.warmup, version, python, facts["load_before"],
                facts["load_after"], facts["cores"]), "",
             "| site | request | wall median ms | CPU median ms | wall / unchecked | CPU / unchecked |",
             "|---|---|---:|---:|---:|---:|"]
    for case in CASES:
        base_wall = statistics.median(wall[("unchecked", case)])
        base_cpu = statistics.median(cpu[("unchecked", case)])
        for name in SITES:
            w, c = statistics.median(wall[(name, case)]), statistics.median(cpu[(name, case)])
            lines.append("| %s | %s | %.1f | %.1f | %.2fx | %.2fx |"
                         % (name, "GET /health" if case == "health" else "POST /tasks/claim",
                            w, c, w / base_wall, c / base_cpu))
    lines += ["", "The release check alone, in-process on the shipped tree: %.0f µs per call "
              "(median of 7 loops of 2000; %d .py/.sql files read, %d files listed)."
              % (check_us, stamped, listed)]
    text = "\n".join(lines)
    print(text)
    results = os.path.join(ROOT, "bench", "results")
    os.makedirs(results, exist_ok=True)
    stem = os.path.join(results, "bytecode_modes-%s" % time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    with open(stem + ".md", "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    with open(stem + ".json", "w", encoding="utf-8") as handle:
        json.dump({"facts": facts, "python": version, "check_us": check_us,
                   "wall_ms": {"%s:%s" % key: values for key, values in wall.items()},
                   "cpu_ms": {"%s:%s" % key: values for key, values in cpu.items()}}, handle, indent=1)
    if args.update_docs:
        benchlib.replace_doc_region(DOC, "bytecode_modes", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
