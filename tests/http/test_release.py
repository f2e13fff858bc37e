"""One release per tree: an upload mixing two releases' files answers 503 naming them.

The site here is lib/taskq and cgi-bin/api.py as tools/bundle.py ships them
(release lines, lib/taskq/MANIFEST; stamped by the bundle's own function),
PyMySQL and jsonschema from the venv. tests/deploy/test_apache_uploads.py does the
same with whole bundles of two commits through Apache; tests/deploy/test_bundle.py
checks the bundle's manifest and bytecode.
"""

import json
import os

import pytest

from cgi_runner import ROOT, fresh_copy, run_cgi
from support.bundles import bundle_tool

OTHER = "0.0.9+0123456789ab"


def stamped_site(dest):
    """A fresh upload whose lib/taskq carries release lines and a MANIFEST; its release id."""
    site = fresh_copy(dest)
    lib = os.path.join(str(site), "lib")
    tool = bundle_tool()
    entries = {}
    for dirpath, _, filenames in os.walk(os.path.join(lib, "taskq")):
        for name in filenames:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as handle:
                entries[os.path.relpath(path, str(site)).replace(os.sep, "/")] = (handle.read(), 0o644)
    release = tool.stamp_release(entries, "0.1.0", tool.release_module())
    for arc, (data, _) in entries.items():
        with open(os.path.join(str(site), arc), "wb") as handle:
            handle.write(data)
    return str(site), release


@pytest.fixture
def site(tmp_path):
    path, release = stamped_site(tmp_path / "site")
    config = tmp_path / "config.ini"
    config.write_text("[database]\nbackend = sqlite\nsqlite_path = %s\n" % (tmp_path / "q.sqlite3"))
    return path, release, str(config)


def request(site, path="/health", method="GET", body=None):
    root, _, config = site
    return run_cgi(method, path, body, config_path=config,
                   script=os.path.join(root, "cgi-bin", "api.py"))


def module(site, rel):
    return os.path.join(site[0], "lib", "taskq", rel)


def rewrite(path, old, new):
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    assert old in text
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.replace(old, new))


def drop_release_line(path):
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    assert "taskq-release: " in lines[-1]
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(lines[:-1])


def test_a_tree_of_one_release_serves_and_a_hotfix_that_keeps_its_release_line_takes_effect(site):
    assert request(site).status == 200
    rewrite(module(site, "handlers.py"), 'return 200, "OK", {"status": "ok"',
            'return 200, "OK (hotfixed)", {"status": "ok"')
    with open(module(site, "handlers.py"), "a", encoding="utf-8") as handle:
        handle.write("\n\ndef added_after_the_release_line():\n    return %r\n" % ("x" * 400))
    health = request(site)
    assert health.status == 200, health
    assert health.json["message"] == "OK (hotfixed)"


def test_a_module_copied_from_a_git_checkout_is_a_hotfix_that_takes_effect(site):
    """A fixed file taken from the source tree has no release line: a few such files
    are hotfixes, and the fix answers on the next request."""
    from support.bundles import ROOT

    with open(os.path.join(ROOT, "lib", "taskq", "handlers.py"), encoding="utf-8") as handle:
        source = handle.read()
    with open(module(site, "handlers.py"), "w", encoding="utf-8") as handle:
        handle.write(source.replace('return 200, "OK", {"status": "ok"',
                                    'return 200, "OK (from git)", {"status": "ok"'))
    health = request(site)
    assert health.status == 200, health
    assert health.json["message"] == "OK (from git)"


def test_more_files_without_a_release_line_than_a_hotfix_are_another_release(site):
    _, release, _ = site
    names = ("app.py", "handlers.py", "router.py", "errors.py")
    for rel in names:
        drop_release_line(module(site, rel))
    reply = request(site)
    assert reply.status == 503, reply
    assert sorted(item["path"] for item in reply.json["details"]["files"]) == sorted(
        "lib/taskq/" + rel for rel in names)


@pytest.mark.parametrize("path", ["/health", "/tasks", "/docs", "/openapi.json", "/no-such-route"])
def test_files_of_another_release_answer_503_naming_each_on_every_route(site, path):
    root, release, _ = site
    rewrite(module(site, "handlers.py"), "# taskq-release: %s" % release, "# taskq-release: %s" % OTHER)
    drop_release_line(module(site, "store/queries/sqlite.sql"))
    with open(module(site, "leftover.py"), "w") as handle:
        handle.write("# a module the release no longer has\n")
    os.remove(module(site, "templates/login.html"))
    os.makedirs(os.path.join(root, "lib", "PyMySQL-0.9.dist-info"))
    reply = request(site, path)
    assert reply.status == 503, reply
    assert reply.headers["content-type"] == "application/json; charset=utf-8"
    details = reply.json["details"]
    assert reply.json["success"] is False and details["release"] == release
    assert {item["path"]: item["problem"] for item in details["files"]} == {
        "lib/taskq/handlers.py": "is from release %s" % OTHER,
        "lib/taskq/store/queries/sqlite.sql":
            "names no release (it is from a release older than %s, or its taskq-release line "
            "was removed)" % release,
        "lib/taskq/leftover.py": "is not part of release %s" % release,
        "lib/taskq/templates/login.html": "is missing",
        "lib/PyMySQL-0.9.dist-info": "is not part of release %s" % release,
    }
    assert "lib/taskq/handlers.py is from release %s" % OTHER in reply.json["error"]
    assert "Delete the lib folder on the server" in reply.json["error"]
    assert root.encode() not in reply.raw and b"Traceback" not in reply.raw
    assert b"two different taskq releases" in reply.stderr  # the log line


def test_a_tree_without_manifest_is_not_checked(site):
    os.remove(module(site, "MANIFEST"))
    drop_release_line(module(site, "handlers.py"))
    with open(module(site, "leftover.py"), "w") as handle:
        handle.write("\n")
    assert request(site).status == 200


def test_an_unreadable_manifest_is_a_503_not_a_crash(site):
    with open(module(site, "MANIFEST"), "w") as handle:
        handle.write("garbage\n")
    reply = request(site)
    assert reply.status == 503
    assert reply.json["details"]["files"] == [{"path": "lib/taskq/MANIFEST",
                                               "problem": "is not a taskq manifest"}]


def test_api_py_over_a_lib_without_its_modules_answers_503_incomplete(tmp_path):
    """cgi-bin/api.py of this release over an older lib/ (no taskq/release.py)."""
    root = str(fresh_copy(tmp_path / "site"))
    os.remove(os.path.join(root, "lib", "taskq", "release.py"))
    reply = run_cgi("GET", "/health", script=os.path.join(root, "cgi-bin", "api.py"))
    assert reply.status == 503, reply
    assert reply.json["error"].startswith("lib/taskq is incomplete or holds files of two taskq releases")
    assert b"release" in reply.stderr and root.encode() not in reply.raw


@pytest.mark.parametrize("breakage", ["syntax", "exception"])
def test_a_module_failing_at_import_answers_json_500_and_logs_the_traceback(tmp_path, breakage):
    root = str(fresh_copy(tmp_path / "site"))
    with open(os.path.join(root, "lib", "taskq", "router.py"), "a") as handle:
        handle.write("\ndef broken(:\n" if breakage == "syntax" else "\n{}['no_such_query']\n")
    reply = run_cgi("GET", "/health", script=os.path.join(root, "cgi-bin", "api.py"))
    assert reply.status == 500, reply
    assert reply.headers["content-type"] == "application/json; charset=utf-8"
    assert reply.json["error"] == ("Internal server error: taskq could not start; the server's "
                                   "error log says why")
    assert root.encode() not in reply.raw and b"router" not in reply.raw
    log = reply.stderr.decode("utf-8", "replace")
    assert "Traceback" in log and ("SyntaxError" if breakage == "syntax" else "KeyError") in log


def test_passenger_entry_answers_the_same_503(site):
    import subprocess
    import sys

    root, release, _ = site
    rewrite(module(site, "app.py"), "# taskq-release: %s" % release, "# taskq-release: %s" % OTHER)
    code = ("import runpy, json; app = runpy.run_path(%r)['application']\n"
            "seen = []\n"
            "body = b''.join(app({'REQUEST_METHOD': 'GET', 'PATH_INFO': '/health'},"
            " lambda status, headers: seen.append(status)))\n"
            "print(seen[0]); print(body.decode())\n" % os.path.join(root, "passenger_wsgi.py"))
    with open(os.path.join(ROOT, "passenger_wsgi.py")) as src, \
            open(os.path.join(root, "passenger_wsgi.py"), "w") as dest:
        dest.write(src.read())
    out = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout.split("\n", 1)
    assert out[0] == "503 Service Unavailable"
    assert json.loads(out[1])["details"]["files"] == [
        {"path": "lib/taskq/app.py", "problem": "is from release %s" % OTHER}]


def test_wizard_lists_the_release_check(site):
    from taskq import install as setup

    root, release, _ = site
    ok = setup.release_check(root)
    assert ok.ok and release in ok.detail
    for rel in ("app.py", "handlers.py", "router.py", "errors.py"):
        drop_release_line(module(site, rel))
    bad = setup.release_check(root)
    assert not bad.ok and "lib/taskq/app.py names no release" in bad.detail
    assert "Delete the lib folder" in bad.fix
