"""install.py from a shell, and the wizard's safety rules through its WSGI app.

The command line runs as a real process (`python3 install.py ...`); the
wizard's pages are exercised in-process here (fast layer) and in a real
browser behind Apache in tests/deploy/test_wizard_browser.py.
"""

import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import uuid

import pytest

from conftest import ROOT, ApiClient, mysql_connect, mysql_params
from taskq import config as config_module
from taskq import install as setup
from taskq.app import Application

INSTALL = os.path.join(ROOT, "install.py")


def run_install(*args, env=None):
    full_env = dict(os.environ)
    full_env.pop("TASKQ_CONFIG", None)
    full_env.pop("GATEWAY_INTERFACE", None)
    full_env.update(env or {})
    return subprocess.run([sys.executable, INSTALL] + list(args), capture_output=True, text=True,
                          env=full_env, timeout=120)


def mode(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


@pytest.fixture
def empty_mysql_database(scratch_databases):
    """Name of a new, empty throwaway database (dropped afterwards)."""
    return scratch_databases("taskq_inst")


def mysql_args(database, password=None):
    p = mysql_params()
    return ["--backend", "mysql", "--host", p["host"], "--port", str(p["port"]), "--name", database,
            "--user", p["user"], "--password", p["password"] if password is None else password]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_for(config_path):
    return ApiClient(Application(config=config_module.load(str(config_path))))


def register_echo(api, key):
    return api.post("/task-types/register", {"name": "echo", "version": "1", "param_schema": {"type": "object"}},
                    headers={"X-API-Key": key})


# -- command line ------------------------------------------------------------
def test_cli_sqlite_install_prints_key_and_writes_private_config(tmp_path):
    config_path = tmp_path / "config.ini"
    result = run_install("--backend", "sqlite", "--sqlite-path", str(tmp_path / "q.sqlite3"),
                         "--config", str(config_path))
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{40,}", key)
    assert mode(config_path) == 0o600
    cfg = config_module.load(str(config_path))
    assert (cfg.backend, cfg.api["api_key"]) == ("sqlite", key)
    assert (tmp_path / "q.sqlite3").exists()

    api = api_for(config_path)
    assert api.get("/task-types").status == 401
    assert register_echo(api, key).status == 201


@pytest.mark.mysql
def test_cli_mysql_install_creates_schema_in_empty_database(tmp_path, empty_mysql_database):
    config_path = tmp_path / "config.ini"
    result = run_install(*mysql_args(empty_mysql_database) + ["--config", str(config_path)])
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert mode(config_path) == 0o600
    cfg = config_module.load(str(config_path))
    assert (cfg.backend, cfg.database["name"], cfg.api["api_key"]) == ("mysql", empty_mysql_database, key)

    conn = mysql_connect(empty_mysql_database)
    with conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        assert {row[0] for row in cur.fetchall()} == {"task_types", "tasks", "task_history",
                                                       "taskq_schema_version", "taskq_locks",
                                                       "task_schedules", "taskq_claim_requests",
                                                       "api_keys", "task_counts", "task_runs",
                                                       "dashboard_sessions", "login_failures",
                                                       "task_dependencies"}
    conn.close()
    api = api_for(config_path)
    assert register_echo(api, key).status == 201
    created = api.post("/tasks", {"type": "echo", "params": {"n": 1}}, headers={"X-API-Key": key})
    assert created.status == 201


@pytest.mark.mysql
def test_cli_migrate_rerun_is_a_no_op(tmp_path, empty_mysql_database):
    config_path = tmp_path / "config.ini"
    assert run_install(*mysql_args(empty_mysql_database) + ["--config", str(config_path)]).returncode == 0
    conn = mysql_connect(empty_mysql_database)
    with conn.cursor() as cur:
        cur.execute("SELECT version, applied_at FROM taskq_schema_version")
        before = cur.fetchall()

    result = run_install("--migrate", "--config", str(config_path))
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr
    assert result.stdout == ""
    with conn.cursor() as cur:
        cur.execute("SELECT version, applied_at FROM taskq_schema_version")
        assert cur.fetchall() == before
    conn.close()


@pytest.mark.mysql
def test_cli_migrate_applies_pending_migrations_to_an_empty_database(tmp_path, empty_mysql_database):
    p = mysql_params()
    config_path = tmp_path / "config.ini"
    config_path.write_text("[database]\nbackend = mysql\nhost = %s\nport = %d\nuser = %s\npassword = %s\n"
                           "name = %s\n" % (p["host"], p["port"], p["user"], p["password"],
                                            empty_mysql_database), encoding="utf-8")
    result = run_install("--migrate", env={"TASKQ_CONFIG": str(config_path)})
    assert result.returncode == 0, result.stderr
    from taskq import migrate

    numbers = [m.number for m in migrate.available()]
    assert "Applied migrations %s: the schema is now at version %d" % (
        ", ".join("%04d" % n for n in numbers), numbers[-1]) in result.stderr


@pytest.mark.mysql
def test_cli_wrong_password_says_access_denied_and_writes_nothing(tmp_path, empty_mysql_database):
    config_path = tmp_path / "config.ini"
    result = run_install(*mysql_args(empty_mysql_database, password="not-the-password")
                         + ["--config", str(config_path)])
    assert result.returncode == 1
    assert "Access denied" in result.stderr and "password" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not config_path.exists()


@pytest.mark.mysql
def test_cli_unknown_database_is_named_in_plain_words(tmp_path, mysql_database):
    # mysql_database: skips without MariaDB (fails in CI), as every MariaDB test
    missing = "taskq_missing_%s" % uuid.uuid4().hex[:8]
    result = run_install(*mysql_args(missing) + ["--config", str(tmp_path / "config.ini")])
    assert result.returncode == 1
    assert "Unknown database" in result.stderr and missing in result.stderr


def test_cli_unreachable_host_is_explained(tmp_path):
    result = run_install("--backend", "mysql", "--host", "127.0.0.1", "--port", str(free_port()),
                         "--name", "taskq", "--user", "taskq", "--config", str(tmp_path / "config.ini"))
    assert result.returncode == 1
    assert "Host unreachable" in result.stderr and "Traceback" not in result.stderr


def test_cli_missing_socket_is_explained(tmp_path):
    socket_path = str(tmp_path / "no-such-mysqld.sock")
    result = run_install("--backend", "mysql", "--unix-socket", socket_path, "--name", "taskq",
                         "--user", "taskq", "--config", str(tmp_path / "config.ini"))
    assert result.returncode == 1
    assert "Cannot connect through the socket %s" % socket_path in result.stderr


@pytest.fixture
def limited_user(empty_mysql_database):
    """(user, password) of a fresh MariaDB account with no rights; grant(sql) adds some."""
    admin = mysql_connect()
    user, password = "tq_%s" % uuid.uuid4().hex[:10], uuid.uuid4().hex
    host = "%"
    with admin.cursor() as cur:
        cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (user, host, password))

    def grant(privileges):
        with admin.cursor() as cur:
            cur.execute("GRANT %s ON %s.* TO '%s'@'%s'" % (privileges, empty_mysql_database, user, host))

    yield user, password, grant
    with admin.cursor() as cur:
        cur.execute("DROP USER %s@%s", (user, host))
    admin.close()


def limited_args(database, user, password, config_path):
    p = mysql_params()
    return ["--backend", "mysql", "--host", p["host"], "--port", str(p["port"]), "--name", database,
            "--user", user, "--password", password, "--config", str(config_path)]


@pytest.mark.mysql
def test_cli_user_without_rights_on_the_database_is_told_to_grant_them(tmp_path, empty_mysql_database, limited_user):
    user, password, _ = limited_user
    result = run_install(*limited_args(empty_mysql_database, user, password, tmp_path / "config.ini"))
    assert result.returncode == 1
    assert "Access denied to the database" in result.stderr and "privileges" in result.stderr


@pytest.mark.mysql
def test_cli_user_who_may_not_create_tables_is_told_which_rights_to_grant(tmp_path, empty_mysql_database,
                                                                          limited_user):
    user, password, grant = limited_user
    grant("SELECT, INSERT, UPDATE, DELETE")
    result = run_install(*limited_args(empty_mysql_database, user, password, tmp_path / "config.ini"))
    assert result.returncode == 1
    assert "may not create or change tables" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "config.ini").exists()


def test_cli_rerun_keeps_api_key_and_other_settings_unless_new_key(tmp_path):
    config_path = tmp_path / "config.ini"
    args = ["--backend", "sqlite", "--sqlite-path", str(tmp_path / "q.sqlite3"), "--config", str(config_path)]
    first = run_install(*args).stdout.strip()
    config_path.write_text(config_path.read_text() + "[queue]\nclaim_timeout = 42\n")

    again = run_install(*args)
    assert again.returncode == 0 and again.stdout.strip() == first
    assert config_module.load(str(config_path)).queue["claim_timeout"] == 42
    assert mode(config_path) == 0o600

    rotated = run_install(*args + ["--new-key"]).stdout.strip()
    assert rotated and rotated != first
    assert config_module.load(str(config_path)).api["api_key"] == rotated


def test_cli_check_names_what_to_fix(tmp_path):
    result = run_install("--check", "--config", str(tmp_path / "missing-folder" / "config.ini"))
    assert result.returncode == 1
    assert "FIX  Config folder writable" in result.stderr


# -- the library -------------------------------------------------------------
@pytest.mark.parametrize("field, value, words", [
    ("port", "70000", "between 1 and 65535"),
    ("host", "", "database host"),
    ("name", "", "name of the database"),
    ("password", "pass\nword", "line breaks"),
    ("password", " padded", "start or end with a space"),
])
def test_invalid_database_settings_name_the_field(field, value, words):
    values = {"backend": "mysql", "host": "localhost", "port": "3306", "name": "taskq",
              "user": "taskq", "password": "secret"}
    values[field] = value
    with pytest.raises(setup.InstallError, match=words) as caught:
        setup.validate_settings(values)
    assert caught.value.field == field


def test_rendered_config_parses_back_to_the_same_settings():
    settings = setup.validate_settings({"backend": "mysql", "host": "db.example", "port": "3307",
                                        "name": "q", "user": "u", "password": "p%;#=x"})
    cfg = config_module.parse(setup.render_config(settings, "KEY"))
    assert setup.settings_from_config(cfg) == dict(settings, unix_socket="")
    assert cfg.api["api_key"] == "KEY"


def make_site(tmp_path, crlf=False, executable=True, htaccess=True):
    site = tmp_path / "site"
    (site / "cgi-bin").mkdir(parents=True)
    (site / "data").mkdir()
    api = site / "cgi-bin" / "api.py"
    api.write_bytes(b"#!/usr/bin/env python3" + (b"\r\n" if crlf else b"\n"))
    api.chmod(0o755 if executable else 0o644)
    if htaccess:
        (site / ".htaccess").write_text("# rules\n")
        (site / "cgi-bin" / ".htaccess").write_text("# rules\n")
    return site


def failing(checks):
    return {c.name: c for c in checks if not c.ok}


def test_environment_checks_pass_on_a_complete_site(tmp_path):
    site = make_site(tmp_path)
    assert failing(setup.environment_checks(str(site), str(site / "config.ini"))) == {}


def test_environment_checks_say_how_to_fix_each_problem(tmp_path):
    site = make_site(tmp_path, executable=False, htaccess=False)
    bad = failing(setup.environment_checks(str(site), str(site / "nowhere" / "config.ini")))
    assert "755" in bad["cgi-bin/api.py executable"].fix
    assert "hidden files" in bad[".htaccess present"].fix
    assert "writable" in bad["Config folder writable"].fix


def test_environment_checks_spot_crlf_line_endings(tmp_path):
    site = make_site(tmp_path, crlf=True)
    bad = failing(setup.environment_checks(str(site), str(site / "config.ini")))
    assert "binary" in bad["cgi-bin/api.py executable"].fix


# -- the wizard's safety rules, in-process -------------------------------------
def load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("taskq_install_script", INSTALL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wizard_module = load_script()


class Browserless:
    """Calls the wizard's WSGI app and keeps its cookie, like a browser."""

    def __init__(self, config_path):
        self.app = wizard_module.Wizard(str(config_path))
        self.cookie = ""

    def request(self, method, query="", form=None):
        from urllib.parse import urlencode
        from wsgiref.util import setup_testing_defaults

        body = urlencode(form or {}).encode("utf-8")
        environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": "/install.py", "PATH_INFO": "",
                   "QUERY_STRING": query, "CONTENT_LENGTH": str(len(body)),
                   "CONTENT_TYPE": "application/x-www-form-urlencoded", "wsgi.input": io.BytesIO(body),
                   "HTTP_HOST": "example.test", "HTTP_COOKIE": self.cookie}
        setup_testing_defaults(environ)
        seen = {}

        def start_response(status, headers, exc_info=None):
            seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

        html = b"".join(self.app(environ, start_response)).decode("utf-8")
        if "Set-Cookie" in seen["headers"]:
            self.cookie = seen["headers"]["Set-Cookie"].split(";")[0]
        return seen["status"], html, seen["headers"]

    def csrf(self, html):
        return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def sqlite_form(tmp_path, csrf, **extra):
    form = {"csrf": csrf, "step": "install", "backend": "sqlite", "sqlite_path": str(tmp_path / "w.sqlite3")}
    form.update(extra)
    return form


def test_wizard_rejects_a_post_without_its_csrf_token(tmp_path):
    config_path = tmp_path / "config.ini"
    client = Browserless(config_path)
    status, html, _ = client.request("GET", "step=database")
    for forged in ("0" * 64, "", "\u00e9t\u00e9"):
        status, html, _ = client.request("POST", form=sqlite_form(tmp_path, forged))
        assert status == 403 and "expired" in html
    assert not config_path.exists()


def test_wizard_rejects_a_token_sent_without_its_cookie(tmp_path):
    config_path = tmp_path / "config.ini"
    client = Browserless(config_path)
    _, html, _ = client.request("GET", "step=database")
    token = client.csrf(html)
    client.cookie = ""  # another site's form: the browser sends no SameSite=Strict cookie
    status, _, _ = client.request("POST", form=sqlite_form(tmp_path, token))
    assert status == 403 and not config_path.exists()


def test_wizard_installs_sqlite_and_shows_key_once_with_safe_headers(tmp_path):
    config_path = tmp_path / "config.ini"
    client = Browserless(config_path)
    _, html, headers = client.request("GET", "step=database")
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    status, html, headers = client.request("POST", form=sqlite_form(tmp_path, client.csrf(html)))
    key = config_module.load(str(config_path)).api["api_key"]
    assert status == 200 and key in html
    assert "http://example.test/api/" in html and "http://example.test/cgi-bin/api.py/" in html
    assert headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert mode(config_path) == 0o600
    secret = tmp_path / setup.SECRET_FILE_NAME
    assert mode(secret) == 0o600

    status, html, _ = client.request("GET")  # the key is never shown again
    assert "Installer locked" in html and key not in html


def test_wizard_escapes_every_value_it_shows(tmp_path):
    client = Browserless(tmp_path / "config.ini")
    _, html, _ = client.request("GET", "step=database")
    evil = '"><script>alert(1)</script>'
    _, html, _ = client.request("POST", form={"csrf": client.csrf(html), "step": "install", "backend": "mysql",
                                              "host": "localhost", "port": "3306", "name": evil,
                                              "user": evil, "password": ""})
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_locked_wizard_refuses_to_reconfigure_without_the_current_key(tmp_path):
    config_path = tmp_path / "config.ini"
    key = setup.install({"backend": "sqlite", "sqlite_path": str(tmp_path / "a.sqlite3")}, str(config_path))
    before = config_path.read_text()
    client = Browserless(config_path)
    _, html, _ = client.request("GET", "step=database")
    assert "Installer locked" in html and 'name="host"' not in html
    token = client.csrf(html)

    status, html, _ = client.request("POST", form=sqlite_form(tmp_path, token, sqlite_path=str(tmp_path / "b")))
    assert status == 403
    status, html, _ = client.request("POST", form=sqlite_form(tmp_path, token, current_key="wrong"))
    assert status == 403 and "not the current API key" in html
    assert config_path.read_text() == before

    status, html, _ = client.request("POST", form={"csrf": token, "step": "unlock", "current_key": key})
    assert status == 200 and 'name="sqlite_path"' in html
    status, html, _ = client.request("POST", form=sqlite_form(tmp_path, token, current_key=key,
                                                              sqlite_path=str(tmp_path / "b.sqlite3")))
    assert status == 200 and "taskq is installed" in html
    cfg = config_module.load(str(config_path))
    assert cfg.database["sqlite_path"] == str(tmp_path / "b.sqlite3") and cfg.api["api_key"] == key


def test_locked_wizard_without_a_key_in_config_refuses_everything(tmp_path):
    config_path = tmp_path / "config.ini"
    config_path.write_text("[database]\nbackend = sqlite\n")
    client = Browserless(config_path)
    status, html, _ = client.request("GET")
    assert status == 403 and "no API key" in html and "<form" not in html


@pytest.mark.mysql
def test_locked_wizard_upgrades_the_schema_for_the_key_holder(tmp_path, empty_mysql_database):
    p = mysql_params()
    config_path = tmp_path / "config.ini"
    config_path.write_text("[database]\nbackend = mysql\nhost = %s\nport = %d\nuser = %s\npassword = %s\n"
                           "name = %s\n[api]\napi_key = K3y\n" % (p["host"], p["port"], p["user"], p["password"],
                                                                 empty_mysql_database), encoding="utf-8")
    client = Browserless(config_path)
    _, html, _ = client.request("GET")
    token = client.csrf(html)
    status, html, _ = client.request("POST", form={"csrf": token, "step": "migrate", "current_key": "nope"})
    assert status == 403
    status, html, _ = client.request("POST", form={"csrf": token, "step": "migrate", "current_key": "K3y"})
    from taskq import migrate

    applied = ", ".join("%04d" % m.number for m in migrate.available())
    assert status == 200 and "Applied migrations %s" % applied in html
    status, html, _ = client.request("POST", form={"csrf": token, "step": "migrate", "current_key": "K3y"})
    assert "up to date" in html


def test_done_page_steps_run_in_order_end_with_the_worker_processing_a_task(tmp_path):
    """The done page's curl block and then its "Run a worker" command, pasted into a
    shell in the taskq folder in that order, end with the worker completing the task
    the curl block created."""
    import html
    import importlib.util
    import signal

    from conftest import make_config
    from live_server import LiveServer, wait_for

    spec = importlib.util.spec_from_file_location("install_script", INSTALL)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # a config key may start with "-" (keys made before new_api_key refused that)
    page = script.done_page("-key-for-the-test", "https://example.com", {"backend": "sqlite"}, "")
    command = html.unescape(re.search(r'<pre id="worker-command">(.*?)</pre>', page, re.S).group(1))
    assert command.startswith("PYTHONPATH=lib python3 -m taskq.worker")
    curl = html.unescape(re.search(r'<pre id="curl-commands">(.*?)</pre>', page, re.S).group(1))
    config = make_config("sqlite", tmp_path, api={"api_key": "-key-for-the-test"})
    server = LiveServer(config.path, tmp_path / "server.log")
    bin_dir = tmp_path / "bin"  # `python3` is this test's interpreter
    bin_dir.mkdir()
    os.symlink(sys.executable, str(bin_dir / "python3"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TASKQ_API_KEY")}
    env["PATH"] = str(bin_dir) + os.pathsep + env.get("PATH", "")
    proc = None
    try:
        from taskq.client import Client

        client = Client(server.url, api_key="-key-for-the-test")
        pasted = subprocess.run(["bash", "-c", curl.replace("https://example.com/api/", server.url + "/")],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert pasted.returncode == 0, pasted.stderr
        answers = [json.loads(line) for line in pasted.stdout.replace("}{", "}\n{").splitlines()
                   if line.strip()]
        assert [a["success"] for a in answers] == [True, True, True], pasted.stdout
        task_id = answers[-1]["data"]["id"]
        assert client.get_task(task_id)["status"] == "pending"
        printed = command.replace("https://example.com/api/", server.url + "/")
        proc = subprocess.Popen(["bash", "-c", printed], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        wait_for(lambda: client.get_task(task_id)["status"] == "completed", timeout=30)
        assert client.get_task(task_id)["result"] == {"text": "hello"}
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        server.close()
    assert proc.returncode == 0, proc.stderr.read()


def test_new_api_keys_never_start_with_a_dash():
    assert not any(setup.new_api_key().startswith("-") for _ in range(3000))


def test_access_denied_from_127_0_0_1_names_the_localhost_only_account():
    import pymysql

    refused = pymysql.err.OperationalError(1045, "Access denied for user 'tq'@'127.0.0.1' (using password: YES)")
    message = setup.explain_mysql_error(refused, {"host": "localhost", "port": 3306, "user": "tq"})
    assert "skip-name-resolve" in message and "'tq'@'127.0.0.1'" in message and "socket" in message


def test_wizard_not_owning_the_folder_shows_config_to_upload_and_checks_it(tmp_path):
    import pwd

    folder = tmp_path / "site"
    folder.mkdir()
    config_path = folder / "config.ini"
    nobody = pwd.getpwnam("nobody")
    os.chown(str(folder), nobody.pw_uid, nobody.pw_gid)  # the FTP user's folder, 755
    os.chmod(str(folder), 0o777 if os.geteuid() == 0 else 0o755)  # even writable: not ours
    client = Browserless(config_path)
    _, html, _ = client.request("GET", "step=database")
    token = client.csrf(html)
    status, html, _ = client.request("POST", form=sqlite_form(tmp_path, token))
    assert status == 200 and "Upload config.ini" in html and not config_path.exists()
    import html as html_module

    text = html_module.unescape(re.search(r'<pre id="config-text">(.*?)</pre>', html, re.S).group(1))
    key = config_module.parse(text).api["api_key"]
    assert 'download="config.ini"' in html
    form = {"csrf": token, "step": "verify", "current_key": key, "config_text": text}
    status, html, _ = client.request("POST", form=form)
    assert "no config.ini" in html and not config_path.exists()

    config_path.write_text(text)  # the owner uploads it over FTP
    stranger = Browserless(config_path)
    _, page, _ = stranger.request("GET")
    assert "Installer locked" in page and key not in page
    status, page, _ = stranger.request("POST", form={"csrf": stranger.csrf(page), "step": "verify",
                                                     "current_key": "guess"})
    assert status == 403 and key not in page
    status, html, _ = client.request("POST", form=form)
    assert status == 200 and "taskq is installed" in html and key in html
    assert "the config.ini you uploaded works" in html
    assert register_echo(api_for(config_path), key).status == 201


def test_wizard_lists_existing_keys_and_revokes_those_not_kept(tmp_path):
    from taskq import admin
    from taskq.store import open_store

    db = str(tmp_path / "w.sqlite3")
    setup.install({"backend": "sqlite", "sqlite_path": db}, str(tmp_path / "old.ini"))
    store = open_store(config_module.load(str(tmp_path / "old.ini")))
    kept_key = admin.make_key(store, "kept", "worker")["key"]
    admin.make_key(store, "stale", "admin")
    store.close()

    config_path = tmp_path / "config.ini"
    client = Browserless(config_path)
    _, html, _ = client.request("GET", "step=database")
    token = client.csrf(html)
    status, html, _ = client.request("POST", form=sqlite_form(tmp_path, token))
    assert "API keys in this database" in html and "stale" in html and "kept" in html
    assert not config_path.exists()
    status, html, _ = client.request("POST", form=sqlite_form(tmp_path, token, keys_reviewed="1", keep_kept="1"))
    assert "taskq is installed" in html and "stale" in html  # named as revoked
    store = open_store(config_module.load(str(config_path)))
    assert [row["name"] for row in store.list_keys()] == ["kept"]
    store.close()
    assert api_for(config_path).get("/tasks", headers={"X-API-Key": kept_key}).status != 401


def test_cli_install_revokes_existing_keys_unless_keep_keys(tmp_path):
    from taskq import admin
    from taskq.store import open_store

    args = ["--backend", "sqlite", "--sqlite-path", str(tmp_path / "q.sqlite3")]
    assert run_install(*args + ["--config", str(tmp_path / "a.ini")]).returncode == 0
    store = open_store(config_module.load(str(tmp_path / "a.ini")))
    admin.make_key(store, "one", "worker")
    store.close()
    kept = run_install(*args + ["--config", str(tmp_path / "b.ini"), "--keep-keys"])
    assert kept.returncode == 0 and "keeping API key one" in kept.stderr
    revoked = run_install(*args + ["--config", str(tmp_path / "c.ini")])
    assert revoked.returncode == 0 and "revoking API key one" in revoked.stderr
    store = open_store(config_module.load(str(tmp_path / "c.ini")))
    assert store.list_keys() == []
    store.close()
