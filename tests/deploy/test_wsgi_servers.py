"""The app under persistent WSGI servers: gunicorn, Apache mod_wsgi (daemon mode), Passenger.

Each server runs as docs/deploy.md prints it (the blocks marked `<!-- tested: ... -->`, read
from the file by support.wsgi_servers, with the bundle's folder for the docs' /srv/taskq): the
upload bundle's `passenger_wsgi:application`, 2 processes x 4 threads, Apache's at /taskq and
gunicorn at /, on SQLite and MariaDB; the behavioural tests of the claim,
complete, task and claim-results routes run again over HTTP against it (the
`api` fixture below replaces the in-process one), with the data emptied
between tests but the server, its processes and their reused connections
kept. Then what only a persistent server has: connections outlive requests
and come back after the database dropped them, the config is read once,
and concurrent requests in threads keep apart.
"""

import http.client
import inspect
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import test_api_claim
import test_api_tasks
import test_claim_results
from conftest import (IN_CI, ApiClient, Response, empty_mysql, load_mysql_schema, mysql_connect,
                      mysql_params, shell_key)
from support.apache import make_docroot, prepare_docroot
from support.wsgi_servers import (gunicorn_available, mod_wsgi_available, passenger_available,
                                  start_documented_gunicorn, start_mod_wsgi, start_passenger)

SERVERS = [
    pytest.param(("gunicorn", "sqlite"), id="gunicorn-sqlite"),
    pytest.param(("gunicorn", "mysql"), id="gunicorn-mysql", marks=pytest.mark.mysql),
    pytest.param(("mod_wsgi", "sqlite"), id="mod_wsgi-sqlite", marks=pytest.mark.apache),
    pytest.param(("mod_wsgi", "mysql"), id="mod_wsgi-mysql",
                 marks=[pytest.mark.apache, pytest.mark.mysql]),
    # Passenger (Debian's libapache2-mod-passenger): what only a persistent server has,
    # and the claim-results routes; the rest of the behavioural suite runs under the two above
    pytest.param(("passenger", "sqlite"), id="passenger-sqlite", marks=pytest.mark.apache),
    pytest.param(("passenger", "mysql"), id="passenger-mysql",
                 marks=[pytest.mark.apache, pytest.mark.mysql]),
]
SUITE_UNDER = ("gunicorn", "mod_wsgi")


class HttpApi(ApiClient):
    """The in-process ApiClient's interface (get, post), over HTTP to a running server."""

    def __init__(self, url):
        rest = url[len("http://"):]
        hostport, _, prefix = rest.partition("/")
        self.host, _, port = hostport.partition(":")
        self.port = int(port)
        self.prefix = "/" + prefix if prefix else ""

    def request(self, method, path, body=None, headers=None, raw=None, query=""):
        if raw is None:
            raw = b"" if body is None else json.dumps(body).encode("utf-8")
        sent = {"Content-Type": "application/json"}
        sent.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, self.prefix + path + ("?" + query if query else ""),
                         body=raw if (raw or method != "GET") else None, headers=sent)
            answer = conn.getresponse()
            data = answer.read()
            return Response(answer.status, answer.getheaders(), data)
        finally:
            conn.close()


def _skip_or_fail(reason):
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


def _debian_python_version():
    out = subprocess.check_output(["/usr/bin/python3", "-c",
                                   "import sys; print('%d.%d' % sys.version_info[:2])"])
    return out.decode().strip()


@pytest.fixture(scope="module", params=SERVERS)
def served(request, tmp_path_factory):
    """(server, config path, backend, database) for this module; stopped after it."""
    kind, backend = request.param
    reason = {"gunicorn": gunicorn_available, "mod_wsgi": mod_wsgi_available,
              "passenger": passenger_available}[kind]()
    if reason:
        _skip_or_fail(reason)
    database = own_mysql_database() if backend == "mysql" else None
    tmp = tmp_path_factory.mktemp(kind)
    site, parent = bundled_site(kind)
    sqlite_path = os.path.join(site, "data", "taskq.sqlite3")
    if backend == "mysql":
        p = mysql_params()
        db_lines = ("backend = mysql\nhost = %s\nport = %d\nuser = %s\npassword = %s\nname = %s\n"
                    % (p["host"], p["port"], p["user"], p["password"], database))
    else:
        db_lines = "backend = sqlite\nsqlite_path = %s\n" % sqlite_path
    config_path = os.path.join(site, "config.ini")
    with open(config_path, "w", encoding="utf-8") as handle:
        handle.write("[database]\n" + db_lines + "\n[queue]\nclaim_timeout = 300\n")
    server, docroot = start_documented(kind, site, parent, tmp)
    # the schema of a new SQLite file is made by its first request
    assert HttpApi(server.url).get("/health").status == 200, server.log()[-3000:]
    try:
        yield server, config_path, backend, database or sqlite_path, kind
    finally:
        server.close()
        if database:
            drop_mysql_database(database)
        import shutil

        shutil.rmtree(parent, ignore_errors=True)
        if docroot:
            shutil.rmtree(docroot, ignore_errors=True)


def bundled_site(kind):
    """(site, its parent folder): the upload bundle unpacked for `kind`. Debian's mod_wsgi
    embeds Debian's python3 and Passenger runs it (PassengerPython /usr/bin/python3), so
    their site carries a bundle for it; gunicorn runs in the tests' Python."""
    from support.bundles import built_bundle, bundle_tool

    if kind != "gunicorn" and os.geteuid() != 0:
        _skip_or_fail("the %s test runs Apache as root (the app as www-data)" % kind)
    version = None if kind == "gunicorn" else _debian_python_version()
    parent = make_docroot("taskq-wsgi-site-")
    return bundle_tool().extract(built_bundle(version), parent), parent


def start_documented(kind, site, parent, tmp, root=False):
    """(server, Apache's docroot or None) for the site's config.ini, as docs/deploy.md prints
    `kind`'s configuration (at /taskq, or with `root` at the host's root; gunicorn: at /)."""
    os.chmod(os.path.join(site, "config.ini"), 0o600)
    if kind == "gunicorn":
        return start_documented_gunicorn(site, tmp / "gunicorn.log"), None
    prepare_docroot(parent)
    docroot = make_docroot()
    start = start_mod_wsgi if kind == "mod_wsgi" else start_passenger
    return start(site, docroot, root=root), docroot


def own_mysql_database():
    """A database only the server under test connects to (its process list is counted)."""
    import uuid

    try:
        conn = mysql_connect()
    except Exception as exc:  # noqa: BLE001
        _skip_or_fail("MariaDB not reachable: %s" % exc)
    name = "taskq_wsgi_%s" % uuid.uuid4().hex[:12]
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE %s CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci" % name)
        conn.select_db(name)
        load_mysql_schema(conn)
    finally:
        conn.close()
    return name


def drop_mysql_database(name):
    conn = mysql_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS %s" % name)
    finally:
        conn.close()


def empty(backend, database):
    if backend == "mysql":
        empty_mysql(database)
        return
    conn = sqlite3.connect(database, timeout=30, isolation_level=None)
    try:
        for table in ("task_history", "tasks", "task_types"):
            conn.execute("DELETE FROM %s" % table)
    finally:
        conn.close()


def deselect_beyond_suite(config, items):
    """The imported behavioural tests run under SUITE_UNDER only (called from conftest)."""
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        served = params.get("served")
        if served and served[0] not in SUITE_UNDER and getattr(item, "function", None) is not None \
                and item.function.__module__ not in (__name__, test_claim_results.__name__):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def api(served):
    server, _, backend, database, _ = served
    empty(backend, database)
    return HttpApi(server.url)


# -- the behavioural tests, again, over HTTP -------------------------------------
def _only_api(fn):
    names = set(inspect.signature(fn).parameters)
    return "api" in names and not names & {"api_factory", "backend_config", "config_factory",
                                            "populated", "server", "backend", "tmp_path"}


for _module in (test_api_claim, test_api_tasks, test_claim_results):
    for _name, _fn in sorted(vars(_module).items()):
        if _name.startswith("test_") and callable(_fn) and _only_api(_fn):
            globals()[_name] = _fn


# -- what only a persistent server has --------------------------------------------
def our_connections(database):
    conn = mysql_connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist "
                        "WHERE db = %s AND id <> CONNECTION_ID()", (database,))
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def test_connections_outlive_requests_one_per_thread_at_most(served, api):
    _, _, backend, database, _ = served
    if backend != "mysql":
        pytest.skip("counted in MariaDB's process list")
    for _ in range(30):
        assert api.get("/health").status == 200
    ids = our_connections(database)
    # CGI closes its connection with the request: here they stay open for the next one
    assert 1 <= len(ids) <= 2 * 4, ids
    for _ in range(30):
        assert api.get("/health").status == 200
    assert len(set(our_connections(database)) - set(ids)) <= 2 * 4 - len(ids)


def test_requests_reconnect_after_the_database_dropped_the_connections(served, api):
    """As after a server restart or wait_timeout: every pooled connection is killed."""
    _, _, backend, database, _ = served
    if backend != "mysql":
        pytest.skip("SQLite has no server to drop a connection")
    from conftest import register

    register(api)
    for _ in range(10):
        assert api.get("/health").status == 200
    killed = our_connections(database)
    assert killed
    conn = mysql_connect()
    try:
        with conn.cursor() as cur:
            for conn_id in killed:
                cur.execute("KILL %d" % conn_id)
    finally:
        conn.close()
    time.sleep(1.2)  # idle past the pool's ping threshold
    for n in range(10):
        answer = api.post("/tasks", {"type": "demo", "params": {"n": n}})
        assert answer.status == 201, answer
    assert not set(killed) & set(our_connections(database))


def test_config_is_read_once_per_process(served, api):
    server, config_path, _, _, _ = served
    with open(config_path, encoding="utf-8") as handle:
        original = handle.read()
    try:
        with open(config_path, "w", encoding="utf-8") as handle:
            handle.write(original + "\n[api]\napi_key = changed-under-the-running-server\n")
        # every process has read the file already (each answered /health): no key asked
        for _ in range(20):
            assert api.get("/tasks").status == 200
    finally:
        with open(config_path, "w", encoding="utf-8") as handle:
            handle.write(original)


def test_concurrent_claims_in_threads_keep_apart(served, api):
    """16 client threads claim and complete 200 tasks against 2 processes x 4 threads:
    each task completed once, by the worker it was handed to, with its own result."""
    from conftest import register

    register(api, schema={"type": "object"})
    answer = api.post("/tasks", {"tasks": [{"type": "demo", "params": {"n": n}} for n in range(200)]})
    assert answer.status in (200, 201), answer
    done, errors = {}, []

    def work(worker):
        client = HttpApi(api_url)
        while True:
            got = client.post("/tasks/claim", {"worker_id": worker})
            if got.status == 404:
                return
            if got.status != 200:
                errors.append(got)
                return
            task = got.data
            fin = client.post("/tasks/%d/complete" % task["id"],
                              {"worker_id": worker, "success": True,
                               "result": {"by": worker, "n": task["params"]["n"]}})
            if fin.status != 200:
                errors.append(fin)
            done.setdefault(task["id"], []).append(worker)

    api_url = served[0].url
    threads = [threading.Thread(target=work, args=("w%d" % i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(done) == 200 and all(len(workers) == 1 for workers in done.values())
    listed = api.get("/tasks?status=completed&limit=1000").data
    assert len(listed) == 200
    for task in listed:
        assert task["result"] == {"by": done[task["id"]][0], "n": task["params"]["n"]}


# -- one URL, one auth, under every documented server --------------------------------
# the bare path, the CGI install's /api/ and its /cgi-bin/api.py/ (each after the mount)
ADDRESSES = ("", "/api", "/cgi-bin/api.py")


def test_documented_config_passes_both_key_headers_at_every_address(served, api):
    """Bearer (what a Prometheus scrape sends) and X-API-Key reach the app at each address."""
    from taskq import config as config_module

    _, config_path, _, _, _ = served
    config = config_module.load(config_path)
    key = shell_key(config, "servers-read-only", "read-only")
    try:
        for address in ADDRESSES:
            assert api.get(address + "/tasks").status == 401, address
            for headers in ({"Authorization": "Bearer " + key}, {"X-API-Key": key}):
                answer = api.get(address + "/tasks", headers=headers)
                assert answer.status == 200, (address, headers, answer)
        scrape = api.get("/api/metrics", headers={"Authorization": "Bearer " + key})
        assert scrape.status == 200 and b"taskq_tasks" in scrape.raw, scrape
    finally:
        from taskq.store import open_store

        store = open_store(config)
        try:
            store.revoke_key("servers-read-only")
        finally:
            store.close()


def test_openapi_servers_and_dashboard_links_keep_the_address_the_client_used(served, api):
    for address in ADDRESSES[:2]:
        document = api.get(address + "/openapi.json").json
        assert document["servers"][0] == {"url": (api.prefix + address) or "/"}, address
        # no key is configured here: the login page sends the browser on to the dashboard
        page = api.get(address + "/dashboard/login")
        assert page.status == 303, (address, page)
        assert page.header("Location") == api.prefix + address + "/dashboard", address


ROOT_MOUNTS = [
    pytest.param("gunicorn", id="gunicorn"),
    pytest.param("mod_wsgi", id="mod_wsgi", marks=pytest.mark.apache),
    pytest.param("passenger", id="passenger", marks=pytest.mark.apache),
]
ROOT_KEY = "root-mount-key-0123456789abcdef"


@pytest.fixture(scope="module", params=ROOT_MOUNTS)
def root_mounted(request, tmp_path_factory):
    """A server at the host's root as docs/deploy.md prints it ("The API at the root of a
    (sub)domain"), on SQLite with an api_key; its base URL."""
    kind = request.param
    reason = {"gunicorn": gunicorn_available, "mod_wsgi": mod_wsgi_available,
              "passenger": passenger_available}[kind]()
    if reason:
        _skip_or_fail(reason)
    site, parent = bundled_site(kind)
    with open(os.path.join(site, "config.ini"), "w", encoding="utf-8") as handle:
        handle.write("[database]\nbackend = sqlite\nsqlite_path = %s\n\n[api]\napi_key = %s\n"
                     % (os.path.join(site, "data", "taskq.sqlite3"), ROOT_KEY))
    server, docroot = start_documented(kind, site, parent, tmp_path_factory.mktemp(kind + "-root"),
                                       root=True)
    try:
        assert server.url.count("/") == 2, server.url  # http://host:port, no path
        yield server.url
    finally:
        server.close()
        import shutil

        shutil.rmtree(parent, ignore_errors=True)
        if docroot:
            shutil.rmtree(docroot, ignore_errors=True)


def test_root_mount_serves_a_worker_that_joins_absolute_paths_to_its_url(root_mounted):
    """PrismQ's workers build `urljoin(api_url, '/tasks/claim')`: whatever path api_url has,
    the request goes to the host's /tasks/claim."""
    from urllib.parse import urljoin

    api_url = root_mounted + "/api/"
    call = HttpApi(root_mounted)
    bearer, x_key = {"Authorization": "Bearer " + ROOT_KEY}, {"X-API-Key": ROOT_KEY}

    def path(route):
        url = urljoin(api_url, route)
        assert url == root_mounted + route
        return url[len(root_mounted):]

    assert call.post(path("/task-types/register"), {
        "name": "root", "version": "1", "param_schema": {"type": "object"}}, headers=bearer).status == 201
    created = call.post(path("/tasks"), {"type": "root", "params": {"n": 1}}, headers=x_key)
    assert created.status == 201, created
    claimed = call.post(path("/tasks/claim"), {"worker_id": "prismq"}, headers=bearer)
    assert claimed.status == 200 and claimed.data["id"] == created.data["id"], claimed
    done = call.post(path("/tasks/%d/complete" % created.data["id"]),
                     {"worker_id": "prismq", "success": True, "result": {}}, headers=x_key)
    assert done.status == 200, done
    assert call.post(path("/tasks/claim"), {"worker_id": "prismq"}).status == 401
    # the CGI-style address answers at the root too, and the docs name the root as server
    assert call.get("/api/tasks/%d" % created.data["id"], headers=bearer).data["status"] == "completed"
    assert call.get("/openapi.json").json["servers"][0] == {"url": "/"}
    assert call.get("/api/openapi.json").json["servers"][0] == {"url": "/api"}
