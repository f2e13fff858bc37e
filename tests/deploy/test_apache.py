"""The upload bundle served by a real Apache 2.4 with only its own .htaccess files.

tools/bundle.py builds the zip for the Python running the tests; it is
unzipped into a fresh document root (one copy per site below), given to the
user CGI scripts run as, and served by Debian's apache2 on 127.0.0.1 with
`AllowOverride All` (tests/support/apache.py). Scripts run with a bare
Python of the same version that has no site-packages, so every import of
PyMySQL or jsonschema comes from the bundle's lib/.

Sites in the document root:
  /taskq/           SQLite in the bundle's data/ folder, an API key
  /taskq-mysql/     the throwaway MariaDB database of this run, an API key
  /taskq-fallback/  like /taskq/ with the CGIPassAuth lines removed, so only the
                    mod_rewrite fallback brings the Authorization header
  /taskq-nojsonschema/, /taskq-nopymysql/  a vendored package deleted from lib/
  /taskq-leftovers-*/  backups, editor files and archives with the secret marker beside the
                    real files, in the bundle, a full source upload, and the bundle with only
                    the .htaccess branches for Apache 2.2 (Order/Allow, run by mod_access_compat)

The API at the root of a (sub)domain gets an Apache of its own (mod_cgid on SQLite, mod_cgi on
MariaDB): taskq/ in its document root and, beside it, the .htaccess docs/deploy.md prints.

With CI=true a missing apache2 fails these tests instead of skipping them.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import IN_CI, TESTS, empty_mysql, mysql_params
from support.apache import (ApacheUnavailable, available, cgi_python_env, make_docroot,
                            prepare_docroot, start_apache)
from support.bundles import bundle_tool, built_bundle

API_KEY = "k-" + uuid.uuid4().hex
SECRET_MARKER = "secret-" + uuid.uuid4().hex  # written into every file that must stay hidden
SCHEMA = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}


def unavailable(reason):
    if IN_CI:
        pytest.fail("Apache is required in CI: %s" % reason)
    pytest.skip(reason)


class Reply:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw.decode("utf-8"))
        except ValueError:
            self.json = None

    @property
    def data(self):
        return self.json["data"]

    def __repr__(self):
        return "<Reply %d %r>" % (self.status, self.raw[:300])


def http(url, method="GET", body=None, headers=None):
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers, exc.read())


def write_config(site, text):
    path = os.path.join(site, "config.ini")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def sqlite_config():
    return ("# %s\n[database]\nbackend = sqlite\nsqlite_path = data/taskq.sqlite3\n\n"
            "[api]\napi_key = %s\n" % (SECRET_MARKER, API_KEY))


def mysql_config(database):
    p = mysql_params()
    return ("# %s\n[database]\nbackend = mysql\nhost = %s\nport = %d\nname = %s\nuser = %s\n"
            "password = %s\n\n[api]\napi_key = %s\n"
            % (SECRET_MARKER, p["host"], p["port"], database, p["user"], p["password"], API_KEY))


class Deployment:
    """The document root, the running Apache and a helper to add sites to it."""

    def __init__(self, docroot, zip_path, server):
        self.docroot = docroot
        self.zip_path = zip_path
        self.server = server

    def add_site(self, name, config_text, remove=()):
        unpack = tempfile.mkdtemp(prefix="taskq-unzip-")
        try:
            top = bundle_tool().extract(self.zip_path, unpack)
            site = os.path.join(self.docroot, name)
            shutil.move(top, site)
        finally:
            shutil.rmtree(unpack, ignore_errors=True)
        for rel in remove:
            shutil.rmtree(os.path.join(site, rel))
        if config_text is not None:  # None: a fresh upload, before the wizard
            write_config(site, config_text)
        prepare_docroot(site)
        return site

    def url(self, site, path=""):
        return "%s/%s%s" % (self.server.base_url, site, path)


@pytest.fixture(scope="module")
def deployment():
    reason = available()
    if reason:
        unavailable(reason)
    zip_path = built_bundle()
    docroot = make_docroot()
    workdir = tempfile.mkdtemp(prefix="taskq-apache-py-")
    try:
        server = start_apache(docroot, env=cgi_python_env(workdir))
    except ApacheUnavailable as exc:
        unavailable(str(exc))
    deployment = Deployment(docroot, zip_path, server)
    try:
        yield deployment
    finally:
        log = server.error_log()
        server.stop()
        shutil.rmtree(docroot, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
        if "Traceback" in log or "End of script output" in log:
            print("Apache error log:\n" + log)


@pytest.fixture(scope="module")
def sqlite_site(deployment):
    return deployment.add_site("taskq", sqlite_config())


@pytest.fixture(scope="module")
def mysql_site(deployment, mysql_database):
    empty_mysql(mysql_database)
    return deployment.add_site("taskq-mysql", mysql_config(mysql_database))


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def site(request, deployment):
    """Name of a site on each backend."""
    request.getfixturevalue(request.param + "_site")
    return "taskq" if request.param == "sqlite" else "taskq-mysql"


KEY = {"X-API-Key": API_KEY}


def api_urls(deployment, site):
    return {"clean": deployment.url(site, "/api"),
            "plain": deployment.url(site, "/cgi-bin/api.py")}


# -- the API flow --------------------------------------------------------------
@pytest.mark.parametrize("style", ["clean", "plain"])
def test_full_api_flow_through_apache(deployment, site, style):
    api = api_urls(deployment, site)[style]
    name = "Apache.Flow.%s" % uuid.uuid4().hex[:8]

    health = http(api + "/health")
    assert health.status == 200, health
    assert health.headers["Content-Type"] == "application/json; charset=utf-8"
    assert health.data["database"]["backend"] == ("sqlite" if site == "taskq" else "mysql")

    registered = http(api + "/task-types/register", "POST",
                      {"name": name, "version": "1.0", "param_schema": SCHEMA}, KEY)
    assert registered.status == 201, registered

    created = http(api + "/tasks", "POST", {"type": name, "params": {"n": 1, "m": "x"}}, KEY)
    assert created.status == 201, created
    assert created.data["deduplicated"] is False
    again = http(api + "/tasks", "POST", {"type": name, "params": {"m": "x", "n": 1}}, KEY)
    assert again.status == 200, again
    assert again.data["deduplicated"] is True and again.data["id"] == created.data["id"]

    invalid = http(api + "/tasks", "POST", {"type": name, "params": {"n": "one"}}, KEY)
    assert invalid.status == 400 and invalid.json["error"] == "Parameter validation failed"

    claimed = http(api + "/tasks/claim", "POST", {"worker_id": "w-apache", "type_pattern": name},
                   KEY)
    assert claimed.status == 200, claimed
    assert claimed.data["id"] == created.data["id"] and claimed.data["params"] == {"n": 1, "m": "x"}

    done = http(api + "/tasks/%d/complete" % claimed.data["id"], "POST",
                {"worker_id": "w-apache", "success": True, "result": {"ok": True}}, KEY)
    assert done.status == 200, done
    assert done.data["status"] == "completed"

    task = http(api + "/tasks/%d" % claimed.data["id"], headers=KEY)
    assert task.status == 200 and task.data["result"] == {"ok": True}

    listed = http(api + "/tasks?status=completed&type=%s" % name, headers=KEY)
    assert listed.status == 200, listed
    assert [t["id"] for t in listed.data] == [created.data["id"]]

    empty = http(api + "/tasks/claim", "POST", {"worker_id": "w-apache", "type_pattern": name}, KEY)
    assert empty.status == 404 and empty.json["success"] is False


def test_schedule_is_created_paused_and_deleted_through_apache(deployment, sqlite_site):
    api = deployment.url("taskq", "/api")
    name = "Apache.Sched.%s" % uuid.uuid4().hex[:8]
    assert http(api + "/task-types/register", "POST",
                {"name": name, "version": "1", "param_schema": {"type": "object"}}, KEY).status == 201
    made = http(api + "/schedules", "POST", {"type": name, "params": {}, "every_seconds": 3600}, KEY)
    assert made.status == 201, made
    path = api + "/schedules/%d" % made.data["id"]
    assert http(path + "/pause", "POST", None, KEY).data["paused"] is True
    deleted = http(path, "DELETE", None, KEY)  # DELETE reaches the CGI script
    assert deleted.status == 200 and deleted.data["deleted"] is True, deleted
    assert http(path, headers=KEY).status == 404


def test_unknown_route_and_wrong_method_answer_json_through_the_clean_url(deployment, sqlite_site):
    api = deployment.url("taskq", "/api")
    missing = http(api + "/no-such-route", headers=KEY)
    assert missing.status == 404 and missing.json["success"] is False
    wrong = http(api + "/tasks/claim", headers=KEY)
    assert wrong.status == 405 and "POST" in wrong.headers["Allow"]


def test_query_string_survives_the_clean_url_rewrite(deployment, sqlite_site):
    bad = http(deployment.url("taskq", "/api/tasks?status=nonsense"), headers=KEY)
    assert bad.status == 400, bad


# -- authentication ---------------------------------------------------------------
@pytest.mark.parametrize("style", ["clean", "plain"])
def test_request_without_api_key_is_refused_with_401(deployment, sqlite_site, style):
    api = api_urls(deployment, "taskq")[style]
    assert http(api + "/tasks").status == 401
    assert http(api + "/tasks", headers={"Authorization": "Bearer wrong"}).status == 401
    assert http(api + "/tasks", headers={"X-API-Key": "wrong"}).status == 401
    assert http(api + "/health").status == 200  # health needs no key


@pytest.mark.parametrize("style", ["clean", "plain"])
def test_bearer_authorization_header_reaches_the_cgi_script(deployment, sqlite_site, style):
    api = api_urls(deployment, "taskq")[style]
    reply = http(api + "/tasks", headers={"Authorization": "Bearer " + API_KEY})
    assert reply.status == 200, reply


@pytest.mark.parametrize("style", ["clean", "plain"])
def test_x_api_key_header_is_accepted(deployment, sqlite_site, style):
    api = api_urls(deployment, "taskq")[style]
    assert http(api + "/tasks", headers=KEY).status == 200


@pytest.fixture(scope="module")
def fallback_site(deployment):
    """A site whose .htaccess files lack CGIPassAuth, as on Apache before 2.4.13."""
    site = deployment.add_site("taskq-fallback", sqlite_config())
    for rel in (".htaccess", "cgi-bin/.htaccess"):
        path = os.path.join(site, rel)
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        stripped = re.sub(r"<IfModule mod_version.c>.*?</IfModule>\n", "", text, flags=re.S)
        assert "CGIPassAuth On" in text and "CGIPassAuth On" not in stripped
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(stripped)
    return site


@pytest.mark.parametrize("style", ["clean", "plain"])
def test_rewrite_fallback_passes_authorization_without_cgipassauth(deployment, fallback_site,
                                                                    style):
    api = api_urls(deployment, "taskq-fallback")[style]
    assert http(api + "/tasks", headers={"Authorization": "Bearer " + API_KEY}).status == 200
    assert http(api + "/tasks", headers={"Authorization": "Bearer wrong"}).status == 401


# -- what the web must never see --------------------------------------------------
HIDDEN = (
    "config.ini", "config.example.ini", "other.ini", "schema.sql", "passenger_wsgi.py",
    ".htaccess", "cgi-bin/.htaccess", ".env", ".git/config", ".taskq-install-secret",
    "lib/", "lib/.htaccess", "lib/taskq/", "lib/taskq/config.py", "lib/taskq/store/sqlite_schema.sql",
    "lib/pymysql/__init__.py",
    "data/", "data/taskq.sqlite3", "data/taskq.sqlite3-wal", "backup.sqlite", "old.sqlite3",
    "migrations/", "migrations/mysql/0001_initial.sql",
    "tests/", "tests/conftest.py", "tools/bundle.py", "bench/claim.py",
    "cgi-bin/../config.ini", "api/../config.ini", "cgi-bin/../lib/taskq/app.py",
)


@pytest.fixture(scope="module")
def hidden_files(deployment, sqlite_site):
    """Every file in HIDDEN exists on disk (a whole-repo upload and local leftovers included)."""
    assert http(deployment.url("taskq", "/api/health")).status == 200  # creates the database
    for rel in HIDDEN:
        path = os.path.normpath(os.path.join(sqlite_site, rel))
        if rel.endswith("/") or os.path.exists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("# %s\n" % SECRET_MARKER)
    prepare_docroot(sqlite_site)
    return sqlite_site


@pytest.mark.parametrize("rel", HIDDEN)
def test_private_path_is_denied_to_the_web(deployment, hidden_files, rel):
    assert os.path.exists(os.path.normpath(os.path.join(hidden_files, rel)))
    reply = http(deployment.url("taskq", "/" + rel))
    assert reply.status in (403, 404), reply
    assert SECRET_MARKER.encode() not in reply.raw and API_KEY.encode() not in reply.raw
    assert b"Index of" not in reply.raw


def test_project_folder_shows_no_listing(deployment, sqlite_site):
    for path in ("/", "/cgi-bin/"):
        reply = http(deployment.url("taskq", path))
        assert reply.status in (403, 404) and b"Index of" not in reply.raw


@pytest.fixture(scope="module")
def no_rewrite_server():
    """A second Apache without mod_rewrite, serving a fresh copy of the bundle at /taskq/."""
    docroot = make_docroot()
    workdir = tempfile.mkdtemp(prefix="taskq-apache-py-")
    try:
        site = bundle_tool().extract(built_bundle(), docroot)
        write_config(site, sqlite_config())
        with open(os.path.join(site, "data", "old.sqlite3"), "w", encoding="utf-8") as handle:
            handle.write(SECRET_MARKER)  # stands in for a database file
        prepare_docroot(docroot)
        server = start_apache(docroot, env=cgi_python_env(workdir), without=("rewrite_module",))
        server.site = site
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(docroot, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def test_without_mod_rewrite_the_plain_url_works_and_private_files_stay_denied(
        deployment, no_rewrite_server):
    base = no_rewrite_server.base_url + "/taskq"
    assert http(base + "/cgi-bin/api.py/health").status == 200
    assert http(base + "/cgi-bin/api.py/tasks", headers={"Authorization": "Bearer " + API_KEY}
                ).status == 200  # CGIPassAuth alone
    assert http(base + "/api/health").status == 404  # the documented symptom
    for rel in ("config.ini", "config.example.ini", "schema.sql", ".htaccess", "lib/",
                "lib/taskq/config.py", "lib/pymysql/__init__.py", "data/", "data/old.sqlite3",
                "data/taskq.sqlite3", "migrations/mysql/0001_initial.sql", "passenger_wsgi.py"):
        reply = http(base + "/" + rel)
        assert reply.status in (403, 404), (rel, reply)
        assert SECRET_MARKER.encode() not in reply.raw and API_KEY.encode() not in reply.raw


# -- an allowlist: leftovers beside the real files are never served --------------
# (folder, the file an editor or a backup copies there). cgi-bin/.htaccess hands .py to
# CGI by name only, so a cp -p of api.py (mode 755) must not run either.
LEFTOVER_BASES = (("", "config.ini"), ("", "install.py"), ("cgi-bin/", "api.py"),
                  ("cgi-bin/", "config.ini"), ("lib/taskq/", "app.py"), ("lib/taskq/", "config.py"),
                  ("data/", "taskq.sqlite3"), ("data/", "config.ini"))
LEFTOVER_SUFFIXES = (".bak", ".old", ".orig", ".save", ".swp", "~", ".tar.gz", ".zip", ".sql.gz")
FOLDERS = ("", "cgi-bin/", "lib/taskq/", "data/")


def leftover_names():
    """Every path a user, an editor or a backup tool may leave in the site."""
    names = set()
    for folder, base in LEFTOVER_BASES:
        names.update(folder + base + suffix for suffix in LEFTOVER_SUFFIXES)
        names.update((folder + "#%s#" % base, folder + ".%s.swp" % base))
    for folder in FOLDERS:
        names.update(folder + name for name in (
            "config.bak", "taskq.zip", "backup.tar.gz", "dump.sql.gz", "taskq.sqlite3.bak",
            "copy-of-taskq.sqlite3", "taskq.sqlite3-journal", "notes.txt", "index.html"))
    names.update(("lib/taskq/install.py",  # a real module, named like the public installer
                  "cgi-bin/install.py", "data/install.py", "lib/api.py", "data/api",
                  "old/install.py", "old/config.ini", "old/cgi-bin/api.py.bak"))
    return sorted(names)


def tree_upload(site):
    """A full copy of the source tree uploaded over the bundle (tests/, tools/, docs/, bench/,
    dotfiles; migrations/ without the deny file only the bundle adds). lib/taskq stays the
    bundle's: its modules over the bundle's would be two releases in one tree, which every
    route refuses with a 503 (tests/deploy/test_apache_uploads.py)."""
    from support.bundles import ROOT

    os.unlink(os.path.join(site, "migrations", ".htaccess"))
    listed = subprocess.check_output(["git", "ls-files", "-z"], cwd=ROOT).decode("utf-8")
    for rel in filter(None, listed.split("\0")):
        if rel.startswith("lib/taskq/"):
            continue
        source = os.path.join(ROOT, rel)
        if os.path.isfile(source):
            os.makedirs(os.path.dirname(os.path.join(site, rel)), exist_ok=True)
            shutil.copy2(source, os.path.join(site, rel))


def plant_leftovers(site):
    """Write every leftover_names() file with SECRET_MARKER; copies of scripts keep mode 755."""
    for rel in leftover_names():
        path = os.path.join(site, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):  # lib/taskq/install.py: the shipped module stays as it is
            continue
        original = os.path.join(site, re.sub(r"(\.bak|\.old|\.orig|\.save|~)$", "", rel))
        script = original != path and original.endswith(".py") and os.path.exists(original)
        with open(path, "w", encoding="utf-8") as handle:
            if script:
                with open(original, encoding="utf-8") as source:
                    handle.write(source.read())
            handle.write("# %s\n" % SECRET_MARKER)
        if script:
            shutil.copymode(original, path)
    prepare_docroot(site)


def apache22_rules_only(site):
    """Keep only the Apache 2.2 branches (Order/Allow/Deny) of every .htaccess: served by
    2.4's mod_access_compat, they must allow and deny the same as the Require lines."""
    for rel in (".htaccess", "cgi-bin/.htaccess", "lib/.htaccess", "data/.htaccess"):
        path = os.path.join(site, rel)
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        text, dropped = re.subn(r"[ ]*<IfModule mod_authz_core\.c>\n[^<]*</IfModule>\n", "", text)
        text, kept = re.subn(r"[ ]*<IfModule !mod_authz_core\.c>\n([^<]*)[ ]*</IfModule>\n",
                             r"\1", text)
        assert dropped == kept > 0 and "Require" not in text and "IfModule !" not in text, rel
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)


@pytest.fixture(scope="module",
                params=["bundle", "tree", "bundle-without-rewrite", "bundle-apache22-rules"])
def planted_site(request, deployment):
    """(base URL, whether mod_rewrite runs) of a site full of leftovers with the secret marker."""
    if request.param == "bundle-without-rewrite":
        server = request.getfixturevalue("no_rewrite_server")
        plant_leftovers(server.site)
        return server.base_url + "/taskq", False
    name = "taskq-leftovers-" + request.param
    site = deployment.add_site(name, sqlite_config())
    if request.param == "tree":
        tree_upload(site)
    if request.param == "bundle-apache22-rules":
        apache22_rules_only(site)
    plant_leftovers(site)
    return deployment.url(name), True


def test_leftover_backups_copies_and_archives_are_never_served(planted_site):
    base, rewrite = planted_site
    served = []
    for rel in leftover_names():
        reply = http(base + "/" + rel.replace("#", "%23"))
        # Without mod_rewrite a copy named install.py in a folder of one's own (no .htaccess
        # there) is run like the installer; with no lib/ beside it, it can only fail.
        failing_copy = not rewrite and rel == "old/install.py" and reply.status == 500
        if (reply.status not in (403, 404) and not failing_copy
                or SECRET_MARKER.encode() in reply.raw
                or API_KEY.encode() in reply.raw):
            served.append("%s: %d" % (rel, reply.status))
    for folder in ("", "cgi-bin/", "lib/", "data/", "old/"):  # the folder: no index.html, no listing
        reply = http(base + "/" + folder)
        if reply.status != 403 or b"Index of" in reply.raw or SECRET_MARKER.encode() in reply.raw:
            served.append("%s: %d" % (folder or "(the folder)", reply.status))
    assert not served, "served through Apache:\n" + "\n".join(served)


def test_what_must_be_public_still_answers_beside_the_leftovers(planted_site):
    base, rewrite = planted_site
    prefixes = ["/cgi-bin/api.py"] + (["/api"] if rewrite else [])
    for api in prefixes:
        assert http(base + api + "/health").status == 200, api
        assert http(base + api + "/tasks", headers={"Authorization": "Bearer " + API_KEY}
                    ).status == 200, api
        spec = http(base + api + "/openapi.json")
        assert spec.status == 200 and spec.json["openapi"].startswith("3."), api
        status, headers, page = _page(base + api + "/docs")
        assert status == 200 and "swagger-ui" in page, api
        for asset in ("swagger-ui.css", "swagger-ui-bundle.js"):
            status, _, _ = _page(base + api + "/docs/swagger-ui/" + asset)
            assert status == 200, (api, asset)
    for dashboard in ["/cgi-bin/api.py/dashboard"] + (["/dashboard", "/api/dashboard"]
                                                      if rewrite else []):
        status, _, page = _page(base + dashboard + "/login")
        assert status == 200 and 'name="csrf"' in page, dashboard
        status, headers, _ = _page(base + dashboard + "/static/dashboard.css")
        assert status == 200 and headers["Content-Type"].startswith("text/css"), dashboard
    status, _, page = _page(base + "/install.py")
    assert status == 200 and "Installer locked" in page


def test_a_file_published_as_docs_deploy_says_is_served_and_nothing_else(deployment):
    """docs/deploy.md (security model): a <Files> section like install.py's without SetHandler,
    and the name added to the RewriteRule allowlist line."""
    site = deployment.add_site("taskq-published", sqlite_config())
    path = os.path.join(site, ".htaccess")
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    section = re.search(r'<Files "install.py">\n.*?</Files>\n', text, re.S).group(0)
    published = section.replace("install.py", "robots.txt").replace("    SetHandler cgi-script\n", "")
    rule = "RewriteRule !^(install\\.py|api|dashboard)(/|$) - [F]"
    assert rule in text
    text = text.replace(section, section + published).replace(
        rule, rule.replace("dashboard", "dashboard|robots\\.txt"))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    for name, body in (("robots.txt", "User-agent: *\n"), ("robots.txt.bak", SECRET_MARKER),
                       ("lib/robots.txt", SECRET_MARKER)):
        with open(os.path.join(site, name), "w", encoding="utf-8") as handle:
            handle.write(body)
    prepare_docroot(site)
    robots = http(deployment.url("taskq-published", "/robots.txt"))
    assert robots.status == 200 and robots.raw == b"User-agent: *\n", robots
    for name in ("robots.txt.bak", "lib/robots.txt", "config.ini"):
        assert http(deployment.url("taskq-published", "/" + name)).status == 403, name
    assert http(deployment.url("taskq-published", "/api/health")).status == 200


def test_without_cgi_bin_htaccess_the_api_answers_403_never_its_code(deployment):
    """The symptom docs/deploy.md names for a cgi-bin/.htaccess that did not upload."""
    site = deployment.add_site("taskq-no-cgi-htaccess", sqlite_config())
    os.unlink(os.path.join(site, "cgi-bin", ".htaccess"))
    for path in ("/cgi-bin/api.py", "/cgi-bin/api.py/health", "/api/health"):
        reply = http(deployment.url("taskq-no-cgi-htaccess", path))
        assert reply.status == 403 and b"import" not in reply.raw, (path, reply)


# -- the API at the root of a (sub)domain (docs/deploy.md) -------------------------
@pytest.fixture(scope="module", params=[("cgid", "sqlite"),
                                        pytest.param(("cgi", "mysql"), marks=pytest.mark.mysql)],
                ids=["cgid-sqlite", "cgi-mysql"])
def root_mounted(request):
    """(base URL, server): a document root holding the bundle's taskq/ folder and, beside it,
    the .htaccess that docs/deploy.md prints for the API at the root, as printed; the server
    reserves /cgi-bin/ for its own scripts, as many hosts do."""
    from support.wsgi_servers import documented

    cgi, backend = request.param
    reason = available(cgi)
    if reason:
        unavailable(reason)
    docroot = make_docroot()
    workdir = tempfile.mkdtemp(prefix="taskq-apache-py-")
    site = bundle_tool().extract(built_bundle(), docroot)
    assert os.path.basename(site) == "taskq"
    if backend == "mysql":
        database = request.getfixturevalue("mysql_database")
        empty_mysql(database)
        write_config(site, mysql_config(database))
    else:
        write_config(site, sqlite_config())
    with open(os.path.join(docroot, ".htaccess"), "w", encoding="utf-8") as handle:
        handle.write(documented("cgi-root"))
    prepare_docroot(docroot)
    try:
        server = start_apache(docroot, env=cgi_python_env(workdir), cgi=cgi,
                              extra_conf=lambda _: 'ScriptAlias /cgi-bin/ "/usr/lib/cgi-bin/"\n')
    except ApacheUnavailable as exc:
        unavailable(str(exc))
    try:
        yield server.base_url, server
    finally:
        server.stop()
        shutil.rmtree(docroot, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)


def test_root_htaccess_serves_a_worker_that_joins_absolute_paths_to_its_url(root_mounted):
    """PrismQ's workers build `urljoin(api_url, '/tasks/claim')`: the host's /tasks/claim runs
    taskq/cgi-bin/api.py, with either key header."""
    from urllib.parse import urljoin

    base, server = root_mounted
    api_url = base + "/api/"
    bearer = {"Authorization": "Bearer " + API_KEY}
    name = "Apache.Root.%s" % uuid.uuid4().hex[:8]
    assert http(urljoin(api_url, "/task-types/register"), "POST",
                {"name": name, "version": "1", "param_schema": SCHEMA}, bearer).status == 201
    created = http(urljoin(api_url, "/tasks"), "POST", {"type": name, "params": {"n": 1}}, KEY)
    assert created.status == 201, created
    claimed = http(urljoin(api_url, "/tasks/claim"), "POST",
                   {"worker_id": "prismq", "type_pattern": name}, bearer)
    assert claimed.status == 200 and claimed.data["id"] == created.data["id"], claimed
    done = http(urljoin(api_url, "/tasks/%d/complete" % created.data["id"]), "POST",
                {"worker_id": "prismq", "success": True, "result": {}}, KEY)
    assert done.status == 200, done
    assert http(base + "/tasks").status == 401
    assert http(base + "/api/tasks/%d" % created.data["id"], headers=bearer).data["status"] == "completed"
    assert http(base + "/openapi.json").json["servers"][0] == {"url": "/"}
    status, headers, _ = _page(base + "/dashboard/")
    assert status == 303 and headers["Location"] == "/dashboard/login"
    assert http(base + "/no-such-route").json["error"] == "Route not found: GET /no-such-route"


def test_root_htaccess_keeps_the_installer_and_the_folders_denials(root_mounted):
    base, _ = root_mounted
    assert http(base + "/taskq/api/health").status == 200  # the folder's own address still works
    status, _, page = _page(base + "/taskq/install.py")
    assert status == 200 and "Installer locked" in page
    for rel in ("config.ini", "lib/taskq/config.py", "data/", ".htaccess"):
        reply = http(base + "/taskq/" + rel)
        assert reply.status in (403, 404), (rel, reply)
        assert SECRET_MARKER.encode() not in reply.raw and API_KEY.encode() not in reply.raw


# -- a package missing from lib/ -------------------------------------------------
def test_a_fresh_upload_is_locked_until_installed_through_apache(deployment):
    """No config.ini yet: the API, key creation and the dashboard answer 503 JSON naming
    install.py; health says not installed; no database file is made."""
    site = deployment.add_site("taskq-fresh", None)
    for method, path, body in (("POST", "/api/admin/keys", {"name": "x", "role": "admin"}),
                               ("POST", "/cgi-bin/api.py/admin/keys", {"name": "x", "role": "admin"}),
                               ("GET", "/api/tasks", None),
                               ("POST", "/api/task-types/register",
                                {"name": "x", "version": "1", "param_schema": {}}),
                               ("GET", "/dashboard", None), ("GET", "/api/stats", None)):
        reply = http(deployment.url("taskq-fresh", path), method, body)
        assert reply.status == 503, (path, reply)
        assert "install.py" in reply.json["error"], path
    health = http(deployment.url("taskq-fresh", "/api/health"))
    assert health.status == 200 and health.data["status"] == "not_installed"
    assert [name for name in os.listdir(os.path.join(site, "data")) if "sqlite" in name] == []


def test_missing_vendored_jsonschema_is_named_in_a_json_error(deployment):
    deployment.add_site("taskq-nojsonschema", sqlite_config(), remove=["lib/jsonschema"])
    api = deployment.url("taskq-nojsonschema", "/api")
    assert http(api + "/health").status == 200  # health and claims never import jsonschema
    reply = http(api + "/task-types/register", "POST",
                 {"name": "x", "version": "1", "param_schema": SCHEMA}, KEY)
    assert reply.status == 500, reply
    assert reply.json["success"] is False
    assert reply.json["error"] == reply.json["message"] == "Missing Python package: jsonschema"


@pytest.mark.mysql
def test_missing_vendored_pymysql_is_named_in_a_json_error(deployment, mysql_database):
    deployment.add_site("taskq-nopymysql", mysql_config(mysql_database), remove=["lib/pymysql"])
    reply = http(deployment.url("taskq-nopymysql", "/api/tasks"), headers=KEY)
    assert reply.status == 500, reply
    assert reply.json["success"] is False
    assert reply.json["error"] == reply.json["message"] == "Missing Python package: pymysql"


# -- 8 workers racing through Apache ----------------------------------------------
RACE_WORKERS = 8
RACE_TASKS = {"taskq": 200, "taskq-mysql": 200}  # by site: SQLite, MariaDB


def test_eight_worker_processes_claim_each_task_exactly_once(deployment, site):
    api = deployment.url(site, "/api")
    count = RACE_TASKS[site]
    name = "Apache.Race.%s" % uuid.uuid4().hex[:8]
    assert http(api + "/task-types/register", "POST",
                {"name": name, "version": "1", "param_schema": SCHEMA}, KEY).status == 201
    batch = http(api + "/tasks", "POST",
                 {"tasks": [{"type": name, "params": {"n": i}} for i in range(count)]}, KEY)
    assert batch.status == 200 and batch.data["created"] == count, batch
    ids = sorted(r["id"] for r in batch.data["results"])

    worker = os.path.join(TESTS, "support", "http_worker.py")
    processes = [subprocess.Popen([sys.executable, worker, api, "w%d" % i, name, API_KEY],
                                  stdout=subprocess.PIPE, universal_newlines=True)
                 for i in range(RACE_WORKERS)]
    reports = []
    for process in processes:
        out, _ = process.communicate(timeout=300)
        assert process.returncode == 0
        reports.append(json.loads(out))

    claimed = [task_id for report in reports for task_id in report["claimed"]]
    completed = [task_id for report in reports for task_id in report["completed"]]
    assert [error for report in reports for error in report["errors"]] == []
    assert len(claimed) == len(set(claimed)), "a task was handed out twice"
    assert sorted(claimed) == ids
    assert sorted(completed) == ids
    assert sum(1 for report in reports if report["claimed"]) > 1  # it was a race
    pending = http(api + "/tasks?status=pending&type=%s" % name, headers=KEY)
    done = http(api + "/tasks?status=completed&type=%s&limit=1" % name, headers=KEY)
    assert pending.json["pagination"]["total"] == 0
    assert done.json["pagination"]["total"] == count


# -- the dashboard through the shipped .htaccess --------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _page(url, form=None, cookies=None):
    """(status, headers, body text) without following redirects; form is urlencoded."""
    from urllib.parse import urlencode

    data = urlencode(form).encode("utf-8") if form is not None else None
    request = urllib.request.Request(url, data=data)
    if cookies:
        request.add_header("Cookie", "; ".join("%s=%s" % kv for kv in cookies.items()))
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.headers, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode("utf-8", "replace")


def _cookies_from(headers, jar):
    for value in headers.get_all("Set-Cookie") or []:
        name, _, rest = value.partition("=")
        jar[name] = rest.split(";", 1)[0]
    return jar


@pytest.mark.parametrize("prefix", ["/dashboard", "/api/dashboard"])
def test_dashboard_logs_in_and_links_stay_under_its_url(deployment, site, prefix):
    import re

    base = deployment.url(site, prefix)
    status, headers, _ = _page(base + "/")
    assert status == 303
    assert headers["Location"] == "/%s%s/login" % (site, prefix)  # the URL the browser used
    status, headers, body = _page(base + "/login")
    assert status == 200 and "Content-Security-Policy" in headers
    jar = _cookies_from(headers, {})
    assert ('href="/%s%s/static/dashboard.css"' % (site, prefix)) in body
    token = re.search(r'name="csrf" value="([^"]+)"', body).group(1)
    status, headers, _ = _page(base + "/login", {"csrf": token, "key": API_KEY}, jar)
    assert status == 303
    cookie = [c for c in headers.get_all("Set-Cookie") if c.startswith("taskq_session=")][0]
    assert "Path=/%s%s" % (site, prefix) in cookie and "HttpOnly" in cookie
    _cookies_from(headers, jar)
    status, _, body = _page(base + "/tasks", cookies=jar)
    assert status == 200 and "task(s)" in body
    status, headers, css = _page(base + "/static/dashboard.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")


def _raw_get(deployment, target):
    """(status, Location) for a request line sent as written (no client tidies it up)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(deployment.server.base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", parts.netloc)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("Location")
    finally:
        conn.close()


@pytest.mark.parametrize("target,want", [
    ("//taskq/dashboard/", "/taskq/dashboard/login"),
    ("//taskq//dashboard", "/taskq/dashboard/login"),
    ("/evil.example/../taskq/dashboard/", "/taskq/dashboard/login"),
    # an encoded slash is not trusted: the links go through the script's own URL
    ("/%2Fevil.example/../taskq/dashboard/", "/taskq/cgi-bin/api.py/dashboard/login")])
def test_dashboard_redirects_behind_apache_stay_on_the_site(deployment, sqlite_site, target, want):
    status, location = _raw_get(deployment, target)
    if status == 404 and "%2F" in target:  # AllowEncodedSlashes Off refuses it on some builds
        return
    assert (status, location) == (303, want)


# -- the wizard on a host that runs scripts as www-data ------------------------
def ftp_owned_site(deployment, name):
    """A bundle owned by another account (nobody: the FTP user), folders 755, files 644."""
    import pwd

    site = deployment.add_site(name, "")
    os.unlink(os.path.join(site, "config.ini"))
    ftp = pwd.getpwnam("nobody")
    for root, dirs, files in os.walk(site):
        os.chown(root, ftp.pw_uid, ftp.pw_gid)
        os.chmod(root, 0o755)
        for f in files:
            path = os.path.join(root, f)
            os.chown(path, ftp.pw_uid, ftp.pw_gid)
            os.chmod(path, 0o755 if f in ("api.py", "install.py") else 0o644)
    return site


@pytest.mark.mysql
def test_www_data_host_installs_mariadb_by_upload_without_777(deployment, mysql_database):
    import html as html_module

    if os.geteuid() != 0:
        pytest.skip("needs root to give the files to another account")
    empty_mysql(mysql_database)
    site = ftp_owned_site(deployment, "taskq-ftp")
    url = deployment.url("taskq-ftp", "/install.py")
    status, headers, page = _page(url)
    assert status == 200 and "SQLite needs data/" in page and "no writable folder" in page
    assert "Continue to the database" in page
    status, headers, page = _page(url + "?step=database")
    jar = _cookies_from(headers, {})
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    p = mysql_params()
    form = {"csrf": token, "step": "install", "backend": "mysql", "host": p["host"],
            "port": str(p["port"]), "name": mysql_database, "user": p["user"], "password": p["password"]}
    status, _, page = _page(url, form, jar)
    assert status == 200 and "Upload config.ini" in page, page[-2000:]
    assert not os.path.exists(os.path.join(site, "config.ini"))
    text = html_module.unescape(re.search(r'<pre id="config-text">(.*?)</pre>', page, re.S).group(1))
    key = re.search(r"api_key = (\S+)", text).group(1)
    path = os.path.join(site, "config.ini")
    with open(path, "w", encoding="utf-8") as handle:  # the FTP upload
        handle.write(text)
    os.chown(path, os.stat(site).st_uid, os.stat(site).st_gid)
    os.chmod(path, 0o644)
    assert "Installer locked" in _page(url)[2]
    status, _, page = _page(url, {"csrf": token, "step": "verify", "current_key": key,
                                  "config_text": text}, jar)
    assert status == 200 and "the config.ini you uploaded works" in page and key in page
    assert http(deployment.url("taskq-ftp", "/api/task-types"), headers={"X-API-Key": key}).status == 200
