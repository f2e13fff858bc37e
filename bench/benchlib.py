"""Helpers shared by the bench scripts: CGI output, import profiles, configs, MariaDB, reports."""

import json
import os
import platform
import re
import sys
import shutil
import statistics
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def parse_cgi(raw):
    """(status, parsed JSON body or None) from a CGI script's stdout."""
    import json

    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    if not sep:
        raise RuntimeError("CGI output has no header/body separator: %r" % raw[:300])
    status = 200
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "status":
            status = int(value.split()[0])
    return status, (json.loads(body.decode("utf-8")) if body.strip() else None)


def parse_importtime(text):
    """{module: {"self": us, "cumulative": us, "depth": n}} from `-X importtime` stderr."""
    modules = {}
    for line in text.splitlines():
        found = _IMPORT_LINE.match(line)
        if found:
            self_us, cumulative, indent, name = found.groups()
            modules[name] = {"self": int(self_us), "cumulative": int(cumulative),
                             "depth": (len(indent) - 1) // 2}
    return modules


def merge_importtimes(runs):
    """Median self and cumulative time per module over several profiles."""
    merged = {}
    for name in runs[-1]:
        seen = [run[name] for run in runs if name in run]
        merged[name] = {"self": statistics.median(t["self"] for t in seen),
                        "cumulative": statistics.median(t["cumulative"] for t in seen),
                        "depth": seen[-1]["depth"]}
    return merged


def summarize(values):
    ordered = sorted(values)
    return {"n": len(ordered), "median": statistics.median(ordered),
            "p90": ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))],
            "min": ordered[0], "max": ordered[-1]}


def machine_facts():
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu,
            "cores": os.cpu_count(), "os": "%s %s" % (platform.system(), platform.release()),
            "load_before": loadavg()}


def loadavg():
    """The 1-minute load average: how busy the machine was besides the bench."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def write_config(directory, backend, **database):
    """A config.ini with a [database] section; returns its path."""
    lines = ["[database]", "backend = %s" % backend]
    lines += ["%s = %s" % (key, value) for key, value in database.items()]
    path = os.path.join(directory, "config-%s.ini" % backend)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def mysql_params(spec=""):
    """{"host", "port", "user", "password"} from "host=.. port=.. user=.. password=..": root@127.0.0.1:3306 by default."""
    params = {"host": "127.0.0.1", "port": "3306", "user": "root", "password": ""}
    for part in spec.split():
        key, _, value = part.partition("=")
        params[key] = value
    return params


def mysql_spec(params):
    return " ".join("%s=%s" % kv for kv in sorted(params.items()))


def _mysql_connect(params, database=None):
    import pymysql

    return pymysql.connect(host=params["host"], port=int(params["port"]), user=params["user"],
                           password=params["password"], database=database, autocommit=True,
                           charset="utf8mb4", ssl_disabled=True)


def create_mysql_database(params, prefix="taskq_bench"):
    """(name, server version) of a new database holding schema.sql."""
    name = "%s_%s" % (prefix, uuid.uuid4().hex[:10])
    conn = _mysql_connect(params)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            version = cur.fetchone()[0]
            cur.execute("CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % name)
            conn.select_db(name)
            with open(os.path.join(ROOT, "schema.sql"), encoding="utf-8") as handle:
                script = "\n".join(line for line in handle.read().splitlines()
                                   if not line.lstrip().startswith("--"))
            for statement in script.split(";"):
                if statement.strip():
                    cur.execute(statement)
    except BaseException:
        drop_mysql_database(params, name)
        raise
    finally:
        conn.close()
    return name, version


def mysql_script(params, database, statements):
    """Run statements in database, one after the other (a floor's own table)."""
    conn = _mysql_connect(params, database)
    try:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    finally:
        conn.close()


def drop_mysql_database(params, name):
    conn = _mysql_connect(params)
    try:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s" % name)
    finally:
        conn.close()


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def publish(name, report, markdown, doc=None, region=None, keep_markdown=False):
    """Write report to bench/results/<name>-<UTC stamp>.json (and the .md beside
    it with keep_markdown), print the markdown, and with doc and region put it
    into that region of the doc."""
    results = os.path.join(ROOT, "bench", "results")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "%s-%s.json" % (name, stamp)), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, sort_keys=True)
    if keep_markdown:
        with open(os.path.join(results, "%s-%s.md" % (name, stamp)), "w", encoding="utf-8") as handle:
            handle.write(markdown)
    print(markdown)
    if doc and region:
        replace_doc_region(doc, region, markdown)
        print("updated %s" % doc, file=sys.stderr)


def replace_doc_region(path, region, text):
    """Rewrite what sits between `<!-- bench:REGION:begin -->` and its end marker.

    The file is re-read right before writing, and everything outside the
    markers (sections others write) is kept as it is. A missing region is
    appended."""
    begin, end = "<!-- bench:%s:begin -->" % region, "<!-- bench:%s:end -->" % region
    with open(path, encoding="utf-8") as handle:
        current = handle.read()
    block = "%s\n%s\n%s" % (begin, text.strip("\n"), end)
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        _, tail = rest.split(end, 1)
        updated = head + block + tail
    else:
        updated = current.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(updated)


# -- the host's interpreter (issue 11) ------------------------------------------
def base_ref(root):
    """The commit this branch started from on main: the 'before' of a before/after run."""
    import subprocess

    return subprocess.check_output(["git", "-C", root, "merge-base", "HEAD", "main"],
                                   universal_newlines=True).strip()


def before_site(root, ref, after_site, dest):
    """The site as it was at git `ref` (lib/taskq, cgi-bin) with after_site's vendored
    packages as sources only (no __pycache__): what an upload before issue 11 held."""
    import shutil
    import subprocess

    shutil.copytree(after_site, dest, ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
    for part in ("lib/taskq", "cgi-bin"):
        shutil.rmtree(os.path.join(dest, part))
    archive = subprocess.run(["git", "-C", root, "archive", ref, "lib/taskq", "cgi-bin"],
                             stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return dest


def bundled_site_at(root, ref, after_site, dest, python):
    """after_site (a built bundle) with lib/taskq and cgi-bin as they were at git `ref`,
    compiled by `python` as the bundle compiles (unchecked-hash bytecode): the bundle
    built at `ref`, for a before/after of taskq's own code alone."""
    import shutil
    import subprocess

    shutil.copytree(after_site, dest, symlinks=True)
    for part in ("lib/taskq", "cgi-bin"):
        shutil.rmtree(os.path.join(dest, part))
    archive = subprocess.run(["git", "-C", root, "archive", ref, "lib/taskq", "cgi-bin"],
                             stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    subprocess.run([python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash",
                    os.path.join(dest, "lib", "taskq")], check=True)
    return dest


def host_sites(root, python, workdir, before_ref=None, log=print):
    """(before, after) site folders for `python`: the bundle built now (with bytecode,
    compiled by `python`) and the same at before_ref without bytecode."""
    import subprocess

    sys.path.insert(0, os.path.join(root, "tools"))
    import bundle

    version = subprocess.check_output([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                      universal_newlines=True).strip()
    zip_path = bundle.build(python_version=version, output_dir=os.path.join(workdir, "dist"),
                            compile_with=python, log=log)
    after = os.path.join(workdir, "after")
    os.makedirs(after)
    after = os.path.join(after, os.path.basename(bundle.extract(zip_path, after)))
    ref = before_ref or base_ref(root)
    before = before_site(root, ref, after, os.path.join(workdir, "before"))
    return before, after, ref, os.path.basename(zip_path)
