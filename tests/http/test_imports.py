"""What a real CGI request imports. On SQLite and on MariaDB.

Every request is a new process, so an import is paid on every request. The
hot routes of a worker (health, claim, progress, complete, and their batch
forms) must not import jsonschema, whose import costs more than the whole
rest of the request; only routes that validate a schema may. Each request
runs `cgi-bin/api.py` as a process with PYTHONPROFILEIMPORTTIME=1 (the
environment form of `python -X importtime`), and the import list is read
from its stderr. This checks behaviour (which modules load), not timing.
"""

import re

from cgi_runner import run_cgi
from conftest import ROOT, ApiClient, create, register, shell_key
from taskq.app import Application

_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)\s*$", re.M)


def imported(response):
    """Module names a CGI process imported, from its -X importtime report."""
    return set(_IMPORT_LINE.findall(response.stderr.decode("utf-8", "replace")))


def cgi(config, method, path, body=None):
    response = run_cgi(method, path, body, config_path=config.path,
                       env={"PYTHONPROFILEIMPORTTIME": "1"})
    modules = imported(response)
    assert "taskq.app" in modules, "no import profile on stderr: %r" % response.stderr[-500:]
    return response, modules


def jsonschema_modules(modules):
    return sorted(m for m in modules if m == "jsonschema" or m.startswith("jsonschema."))


def worker_requests(api):
    """A worker's requests on two new tasks: (method, path, body, status), in order."""
    register(api)
    first = create(api, {"n": 1})["id"]
    second = create(api, {"n": 2})["id"]
    worker = {"worker_id": "w1"}
    return [
        ("GET", "/health", None, 200),
        ("POST", "/tasks/claim", worker, 200),
        ("POST", "/tasks/%d/progress" % first, dict(worker, progress=40), 200),
        ("POST", "/tasks/%d/complete" % first, dict(worker, success=True, result={"ok": 1}), 200),
        ("POST", "/tasks/claim", dict(worker, limit=10), 200),
        ("POST", "/tasks/complete", dict(worker, results=[{"id": second, "success": True}]), 200),
        ("POST", "/tasks/claim", worker, 404),
    ]


def test_health_claim_progress_complete_do_not_import_jsonschema(backend_config):
    api = ApiClient(Application(config=backend_config))
    requests = worker_requests(api)
    for method, path, body, status in requests:
        response, modules = cgi(backend_config, method, path, body)
        assert response.status == status, (path, response)
        assert jsonschema_modules(modules) == [], "%s %s imported jsonschema" % (method, path)
    second = requests[5][2]["results"][0]["id"]
    assert api.get("/tasks/%d" % second).data["status"] == "completed"


PLAIN_SCHEMA = {"type": "object", "required": ["url"], "additionalProperties": False,
                "properties": {"url": {"type": "string", "format": "uri", "minLength": 1},
                               "depth": {"type": "integer", "minimum": 0, "maximum": 10},
                               "mode": {"enum": ["fast", "full"]},
                               "tags": {"type": "array", "items": {"type": "string",
                                                                    "pattern": "^[a-z]+$"}}}}


def test_create_on_a_schema_of_plain_keywords_does_not_import_jsonschema(backend_config):
    """Issue 19: params that meet such a schema are accepted without jsonschema's import."""
    api = ApiClient(Application(config=backend_config))
    register(api, "plain", schema=PLAIN_SCHEMA)
    params = {"url": "https://example.com/", "depth": 2, "mode": "full", "tags": ["a", "b"]}
    response, modules = cgi(backend_config, "POST", "/tasks", {"type": "plain", "params": params})
    assert response.status == 201, response
    assert jsonschema_modules(modules) == []
    # nor signal.py for the CPU timer, nor (where PyMySQL does not) hashlib for the dedupe key
    assert "signal" not in modules
    if backend_config.database["backend"] == "sqlite":
        assert sorted({"hashlib", "_hashlib"} & modules) == []
    batch = {"tasks": [{"type": "plain", "params": dict(params, depth=n)} for n in (3, 4, 5)]}
    response, modules = cgi(backend_config, "POST", "/tasks", batch)
    assert response.status in (200, 201), response
    assert jsonschema_modules(modules) == []
    assert api.get("/tasks").json["pagination"]["total"] == 4


def test_a_create_whose_params_fail_imports_jsonschema_and_answers_its_messages(backend_config):
    api = ApiClient(Application(config=backend_config))
    register(api, "plain", schema=PLAIN_SCHEMA)
    params = {"depth": 11, "mode": "slow", "extra": 1}
    response, modules = cgi(backend_config, "POST", "/tasks", {"type": "plain", "params": params})
    assert response.status == 400, response
    assert "jsonschema" in modules
    body = response.json
    assert body["details"] == [
        {"path": "$", "message": "'url' is a required property"},
        {"path": "$", "message": "Additional properties are not allowed ('extra' was unexpected)"},
        {"path": "$.depth", "message": "11 is greater than the maximum of 10"},
        {"path": "$.mode", "message": "'slow' is not one of ['fast', 'full']"},
    ], body
    assert api.get("/tasks").json["pagination"]["total"] == 0


def test_create_imports_jsonschema_for_a_schema_beyond_the_plain_keywords(backend_config):
    """The detection above sees jsonschema when it is loaded: a $ref is jsonschema's to follow."""
    api = ApiClient(Application(config=backend_config))
    register(api, "refs", schema={"definitions": {"n": {"type": "integer"}},
                                  "properties": {"n": {"$ref": "#/definitions/n"}}})
    response, modules = cgi(backend_config, "POST", "/tasks", {"type": "refs", "params": {"n": 3}})
    assert response.status == 201, response
    assert "jsonschema" in modules


# -- configparser: plainly written config files are read without it (tests/unit/test_startup.py)
def test_cgi_request_on_sqlite_with_a_plain_config_does_not_import_configparser(tmp_path):
    path = tmp_path / "config.ini"
    path.write_text("[database]\nbackend = sqlite\nsqlite_path = %s\n" % (tmp_path / "q.sqlite3"))
    response = run_cgi("GET", "/health", config_path=str(path), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert response.status == 200, response
    modules = imported(response)
    assert "taskq.config" in modules and "configparser" not in modules


# -- ssl and cryptography (issue 11) ------------------------------------------
# PyMySQL imports ssl (pymysql.connections) and cryptography (pymysql._auth) at
# module level; taskq.store.driver defers both until a connection needs them.
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

DEFERRED = ("ssl", "_ssl", "cryptography")
LIB = os.path.join(ROOT, "lib")


def deferred_modules(modules):
    return sorted(m for m in modules if m in DEFERRED or m.startswith("cryptography."))


def have_cryptography():
    return subprocess.run([sys.executable, "-c", "import cryptography"]).returncode == 0


def loaded_at_exit(config, method, path, body, tmp_path):
    """sys.modules of a CGI process as it exits (-X importtime also lists failed imports)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('loaded: %s\\n' % ' '.join(sorted(sys.modules))))\n")
    pythonpath = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    response = run_cgi(method, path, body, config_path=config.path, env={"PYTHONPATH": pythonpath})
    lines = [line for line in response.stderr.decode("utf-8", "replace").splitlines()
             if line.startswith("loaded: ")]
    assert lines, response.stderr
    return response, set(lines[-1].split()[1:])


@pytest.mark.mysql
def test_mysql_worker_requests_import_neither_ssl_nor_cryptography(config_factory, backend,
                                                                   tmp_path):
    if backend != "mysql":
        pytest.skip("PyMySQL is the MySQL backend's driver")
    # the venv has cryptography (requirements-dev.txt), so PyMySQL would load it
    assert have_cryptography(), "install cryptography in the test venv: the test would prove nothing"
    config = config_factory()
    requests = worker_requests(ApiClient(Application(config=config)))[:-1]
    for method, path, body, status in requests:
        response, modules = loaded_at_exit(config, method, path, body, tmp_path)
        assert response.status == status, (path, response)
        assert "pymysql.connections" in modules
        assert deferred_modules(modules) == [], "%s %s imported them" % (method, path)


def run_python(code, **env):
    result = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True,
                            env=dict(os.environ, PYTHONPATH=LIB, **env))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout  # stderr may carry warnings (cryptography's, on Python 3.8)


def test_rsa_authentication_loads_cryptography_then_and_encrypts_as_pymysql_does():
    """sha256_password over a plain link and caching_sha2_password's full authentication
    send the password RSA-encrypted with the server's key: pymysql._auth.sha2_rsa_encrypt,
    which both of them call. Driven here with a real key; the parent decrypts."""
    if not have_cryptography():
        pytest.skip("cryptography is not installed for this interpreter")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    salt = b"0123456789abcdefghij"
    code = """if 1:
        import sys
        from taskq.store import mysql
        from pymysql import _auth
        before = sorted(m for m in ("ssl", "cryptography") if m in sys.modules)
        # what PyMySQL's auth switch calls for sha256_password without TLS and for
        # caching_sha2_password full authentication
        assert _auth.sha256_password_auth.__globals__ is _auth.__dict__
        sealed = _auth.sha2_rsa_encrypt(b"s3cret", %r, %r)
        print(before, "cryptography" in sys.modules, sealed.hex())
    """ % (salt, public)
    out = run_python(code).split()
    assert out[0] == "[]", out
    assert out[1] == "True", "cryptography was not loaded when it was needed"
    plain = key.decrypt(bytes.fromhex(out[2]),
                        padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()),
                                     algorithm=hashes.SHA1(), label=None))
    expected = bytes(c ^ salt[i % len(salt)] for i, c in enumerate(b"s3cret\0"))
    assert plain == expected


def test_rsa_authentication_without_cryptography_fails_as_pymysql_says():
    """With cryptography absent the same call raises PyMySQL's own error, as it always did."""
    code = """if 1:
        import sys
        sys.modules["cryptography"] = None  # as on a host without it
        from taskq.store import mysql
        from pymysql import _auth
        try:
            _auth.sha2_rsa_encrypt(b"pw", b"x" * 20, b"key")
        except RuntimeError as exc:
            print("RuntimeError", "cryptography" in str(exc))
    """
    assert run_python(code).split() == ["RuntimeError", "True"]


@pytest.mark.mysql
def test_tls_config_loads_ssl_before_connecting(config_factory, backend):
    if backend != "mysql":
        pytest.skip("TLS is a MySQL setting")
    config = config_factory(database={"ssl": "on"})
    code = """if 1:
        import sys
        from taskq import config
        from taskq.errors import Unavailable
        from taskq.store import mysql
        assert "ssl" not in sys.modules
        try:
            mysql.MySQLStore(config.load(%r)).close()
            outcome = "connected"
        except Unavailable:
            outcome = "unavailable"  # the test server offers no TLS
        print(outcome, mysql.pymysql.connections.ssl is sys.modules["ssl"])
    """ % config.path
    outcome, has_ssl = run_python(code).split()
    assert has_ssl == "True"
    assert outcome in ("connected", "unavailable")


def test_stats_metrics_and_scoped_keys_import_neither_jsonschema_nor_the_admin_module(config_factory):
    config = config_factory(retention={"gc_probability": 0})
    api = ApiClient(Application(config=config))
    key = shell_key(config, "w", "worker")
    for method, path, body in (("GET", "/stats", None), ("GET", "/metrics", None),
                               ("POST", "/tasks/claim", {"worker_id": "w"})):
        response = run_cgi(method, path, body, headers={"X-API-Key": key}, config_path=config.path,
                           env={"PYTHONPROFILEIMPORTTIME": "1"})
        modules = imported(response)
        assert "taskq.app" in modules, response.stderr[-500:]
        assert response.status in (200, 404), (path, response)
        assert jsonschema_modules(modules) == [], path
        assert "taskq.admin" not in modules and "random" not in modules, path


def test_client_and_worker_import_neither_pymysql_nor_jsonschema():
    """A worker host installs taskq without the server's packages (tests/deploy/test_wheel.py);
    here, where both are installed, the client and the worker still never load them."""
    assert run_python("import pymysql, jsonschema") == ""  # installed here: the test can see them
    code = """if 1:
        import sys
        import taskq.client, taskq.worker
        parser = taskq.worker.build_parser()
        parser.parse_args(["--url", "http://127.0.0.1:1", "--exec", "true"])
        taskq.client.Client(["http://127.0.0.1:1", "http://127.0.0.1:2"])
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("pymysql", "jsonschema")))
    """
    assert run_python(code).split() == ["[]"]
