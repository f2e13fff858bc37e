"""Any upload over any other either works or says what is wrong, through a real Apache.

Three bundles: OLD is built by tools/bundle.py of an older landed commit
(checked out with `git worktree add`: no release lines, no MANIFEST,
unchecked bytecode), NEW by this tree, NEXT by a copy of this tree with one
answer changed and one module added (a later release: both carry the check).
Each site is uploaded the way FTP clients do it: one zip unpacked over the
other, nothing deleted. The files belong to `nobody` (the FTP account) and
scripts run as www-data, which cannot write lib/__pycache__ (only data/ and
config.ini are its own), so the shipped bytecode is what Python uses.

What can be told apart, and what each case answers (docs/deploy.md,
"Uploading over an older tree / hotfixes"):
  NEW, then handlers.py edited      the edit shows on the next request
  NEW, then OLD's lib/ only          503 naming files without a release line
  NEW, then NEXT's handlers.py       503: that file is from release NEXT
  NEXT, then NEW (a downgrade)       503: NEXT's added module is no part of NEW
  OLD, then NEW (an upgrade)         works: NEW's files replace all of OLD's
  NEXT over NEW (an upgrade)         works, NEXT's answer
  NEW, then all of OLD               works as OLD: OLD's cgi-bin/api.py (no
                                     check) runs OLD's modules; nothing of NEW
                                     runs, so nothing can notice
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import empty_mysql
from support.apache import (ApacheUnavailable, available, cgi_python_env, make_docroot,
                            prepare_docroot, start_apache)
from support.bundles import ROOT, built_bundle, bundle_tool
from test_apache import KEY, http, mysql_config, sqlite_config, unavailable, write_config

OLD_COMMIT = "9e679b6"  # a landed commit whose bundle predates release lines and MANIFEST
HEALTH_OK = 'return 200, "OK", {"status": "ok"'
ROUTES = [("GET", "/api/health", None), ("GET", "/cgi-bin/api.py/health", None),
          ("GET", "/api/tasks", KEY), ("POST", "/api/tasks/claim", KEY),
          ("GET", "/api/openapi.json", None), ("GET", "/api/docs", None),
          ("GET", "/dashboard", None), ("GET", "/api/no-such-route", None)]


def build_from(root, out):
    """The bundle tools/bundle.py of `root` builds (an old commit's has its own options)."""
    result = subprocess.run([sys.executable, os.path.join(root, "tools", "bundle.py"),
                             "--output-dir", out], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout
    return [os.path.join(out, name) for name in os.listdir(out) if name.endswith(".zip")][0]


@pytest.fixture(scope="module")
def bundles():
    work = tempfile.mkdtemp(prefix="taskq-releases-")
    old_tree = os.path.join(work, "old")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", old_tree, OLD_COMMIT],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        old = build_from(old_tree, os.path.join(work, "dist-old"))
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old_tree],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tool = bundle_tool()
    next_tree = os.path.join(work, "next")
    for rel in tool.project_files(ROOT) + ["requirements.txt"]:
        os.makedirs(os.path.dirname(os.path.join(next_tree, rel)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), os.path.join(next_tree, rel))
    handlers = os.path.join(next_tree, "lib", "taskq", "handlers.py")
    with open(handlers, encoding="utf-8") as handle:
        text = handle.read()
    with open(handlers, "w", encoding="utf-8") as handle:
        handle.write(text.replace(HEALTH_OK, 'return 200, "OK from NEXT", {"status": "ok"'))
    with open(os.path.join(next_tree, "lib", "taskq", "next_feature.py"), "w") as handle:
        handle.write('"""A module only the next release has."""\n')
    nxt = tool.build(root=next_tree, output_dir=os.path.join(work, "dist-next"), log=lambda *a: None)
    yield {"old": old, "new": built_bundle(), "next": nxt}
    shutil.rmtree(work, ignore_errors=True)


def release_of(zip_path):
    import zipfile

    release_py = bundle_tool().release_module()
    with zipfile.ZipFile(zip_path) as archive:
        return release_py.Manifest.parse(archive.read("taskq/lib/taskq/MANIFEST").decode()).release


class Host:
    def __init__(self, docroot, server):
        self.docroot, self.server = docroot, server

    def site(self, name, config_text):
        path = os.path.join(self.docroot, name)
        os.makedirs(os.path.join(path, "data"))
        write_config(path, config_text)
        return path

    def upload(self, site, zip_path, only=""):
        """Unpack `zip_path` over `site` as an FTP client does: overwrite, delete nothing."""
        unpack = tempfile.mkdtemp(prefix="taskq-unzip-")
        try:
            top = bundle_tool().extract(zip_path, unpack)
            for dirpath, _, filenames in os.walk(top):
                for name in filenames:
                    rel = os.path.relpath(os.path.join(dirpath, name), top)
                    if rel.startswith(only):
                        dest = os.path.join(site, rel)
                        os.makedirs(os.path.dirname(dest), exist_ok=True)
                        shutil.copy2(os.path.join(dirpath, name), dest)
        finally:
            shutil.rmtree(unpack, ignore_errors=True)
        self.own(site)

    def own(self, site):
        """data/ and config.ini the web user's, everything else the FTP account's (nobody)."""
        prepare_docroot(site)
        if os.geteuid() == 0:
            ftp = pwd.getpwnam("nobody")
            for dirpath, dirnames, filenames in os.walk(site):
                if os.path.relpath(dirpath, site).split(os.sep)[0] == "data":
                    continue
                if dirpath != site:
                    os.chown(dirpath, ftp.pw_uid, ftp.pw_gid)
                for name in filenames:
                    if name != "config.ini":
                        os.chown(os.path.join(dirpath, name), ftp.pw_uid, ftp.pw_gid)

    def url(self, site, path):
        return "%s/%s%s" % (self.server.base_url, os.path.basename(site), path)


@pytest.fixture(scope="module")
def host():
    reason = available()
    if reason:
        unavailable(reason)
    docroot = make_docroot()
    workdir = tempfile.mkdtemp(prefix="taskq-apache-py-")
    try:
        server = start_apache(docroot, env=cgi_python_env(workdir))
    except ApacheUnavailable as exc:
        unavailable(str(exc))
    try:
        yield Host(docroot, server)
    finally:
        server.stop()
        shutil.rmtree(docroot, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def assert_refused(host, site, named):
    """Every route answers JSON 503 naming each (path, problem) in `named`."""
    for method, path, headers in ROUTES:
        reply = http(host.url(site, path), method, {} if method == "POST" else None, headers)
        assert reply.status == 503, (path, reply)
        assert reply.headers["Content-Type"] == "application/json; charset=utf-8", path
        problems = {item["path"]: item["problem"] for item in reply.json["details"]["files"]}
        for file_path, problem in named:
            assert problems.get(file_path, "").startswith(problem), (path, file_path, problems)
        assert "Delete the lib folder on the server" in reply.json["error"]
        assert site.encode() not in reply.raw and b"Traceback" not in reply.raw


def assert_works(host, site, message="OK"):
    health = http(host.url(site, "/api/health"))
    assert health.status == 200 and health.json["message"] == message, health
    for method, path, headers in ROUTES:
        reply = http(host.url(site, path), method, {"worker_id": "w"} if method == "POST" else None,
                     headers)
        assert reply.status < 500, (path, reply)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def test_a_hotfixed_module_takes_effect_on_the_next_request(host, bundles, backend, request):
    if backend == "mysql":
        database = request.getfixturevalue("mysql_database")
        empty_mysql(database)
        text = mysql_config(database)
    else:
        text = sqlite_config()
    site = host.site("hotfix-%s" % backend, text)
    host.upload(site, bundles["new"])
    assert_works(host, site)
    handlers = os.path.join(site, "lib", "taskq", "handlers.py")
    with open(handlers, encoding="utf-8") as handle:
        source = handle.read()
    with open(handlers, "w", encoding="utf-8") as handle:  # the FTP upload of an edited copy
        handle.write(source.replace(HEALTH_OK, 'return 200, "OK (hotfixed)", {"status": "ok"'))
    host.own(site)
    assert_works(host, site, "OK (hotfixed)")
    cache = os.path.join(site, "lib", "taskq", "__pycache__")
    assert sorted(os.listdir(cache)) == sorted(
        name for name in os.listdir(cache) if name.count(".") == 2)  # nothing written by www-data


def test_old_lib_over_new_tree_answers_503_naming_the_files_on_every_route(host, bundles):
    """The upgrade guide lets a host keep its cgi-bin/ (an edited first line): here the
    new api.py finds OLD's modules under NEW's MANIFEST."""
    site = host.site("old-lib-over-new", sqlite_config())
    host.upload(site, bundles["new"])
    host.upload(site, bundles["old"], only="lib/")
    no_line = "names no release (it is from a release older than %s" % release_of(bundles["new"])
    assert_refused(host, site, [("lib/taskq/app.py", no_line),
                                ("lib/taskq/store/queries/sqlite.sql", no_line)])


def test_one_file_of_a_later_release_answers_503_naming_it(host, bundles):
    site = host.site("next-file-over-new", sqlite_config())
    host.upload(site, bundles["new"])
    host.upload(site, bundles["next"], only="lib/taskq/handlers.py")
    assert_refused(host, site, [("lib/taskq/handlers.py",
                                 "is from release %s" % release_of(bundles["next"]))])


def test_downgrade_over_a_later_release_answers_503_naming_what_it_left(host, bundles):
    site = host.site("new-over-next", sqlite_config())
    host.upload(site, bundles["next"])
    assert_works(host, site, "OK from NEXT")
    host.upload(site, bundles["new"])
    assert_refused(host, site, [("lib/taskq/next_feature.py",
                                 "is not part of release %s" % release_of(bundles["new"]))])


@pytest.mark.parametrize("first, then, message", [("old", "new", "OK"), ("new", "next", "OK from NEXT"),
                                                  ("new", "old", "OK")])
def test_a_whole_zip_over_another_release_works(host, bundles, first, then, message):
    """Upgrades replace every file the older release had; a whole older zip brings back its
    own unchecked cgi-bin/api.py and every module and .pyc: the older release runs."""
    site = host.site("%s-then-%s" % (first, then), sqlite_config())
    host.upload(site, bundles[first])
    assert_works(host, site)
    host.upload(site, bundles[then])
    assert_works(host, site, message)
