"""Scoped API keys: roles per route, hashed storage, revocation, the config key, install.py."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT, ApiClient, db_execute, register, shell_key
from taskq.app import Application
from taskq.router import PUBLIC, ROLE_GRANTS, ROUTE_ROLES, ROUTES, SELF_AUTHORIZED


def keyed(api, key):
    """An ApiClient sending `key` on every request."""

    class Keyed(ApiClient):
        def request(self, method, path, body=None, headers=None, **kw):
            headers = dict(headers or {}, **{"X-API-Key": key})
            return super().request(method, path, body, headers=headers, **kw)

    return Keyed(api.app)


@pytest.fixture
def admin_api(api_factory):
    """An API whose config.ini holds an admin key, and that key."""
    api = api_factory(api={"api_key": "config-admin-key"})
    return keyed(api, "config-admin-key"), api


def make_key(admin, name, role):
    response = admin.post("/admin/keys", {"name": name, "role": role})
    assert response.status == 201, response
    return response.data


def test_every_route_names_its_role_beside_the_router_table():
    for _, _, name in ROUTES:
        if name.startswith(SELF_AUTHORIZED):
            continue  # the dashboard: its session cookie, made with an admin key
        assert name in PUBLIC or name in ROUTE_ROLES, name
        assert name in PUBLIC or ROUTE_ROLES[name] in ROLE_GRANTS, name
    from taskq.operations import ADMIN_ROUTES

    assert {name for name in ADMIN_ROUTES if ROUTE_ROLES[name] != "admin"} == set()


def _path(rule):
    return rule.replace("{id:int}", "1").replace("{name}", "demo")


@pytest.mark.parametrize("role", ["producer", "worker", "admin", "read-only"])
def test_each_role_reaches_exactly_the_routes_its_table_grants(admin_api, role):
    admin, _ = admin_api
    register(admin, "demo")
    client = keyed(admin_api[1], make_key(admin, "k-" + role, role)["key"])
    for method, rule, name in ROUTES:
        if name in PUBLIC or name.startswith(SELF_AUTHORIZED):
            continue
        if name == "admin.revoke_key":
            rule = "/admin/keys/nobody"
        response = client.request(method, _path(rule), {} if method == "POST" else None)
        allowed = ROUTE_ROLES[name] in ROLE_GRANTS[role]
        if allowed:
            assert response.status not in (401, 403), (role, method, rule, response)
        else:
            assert response.status == 403, (role, method, rule, response)
            assert "needs the %s role" % ROUTE_ROLES[name] in response.error, response.error
            assert "has the %s role" % role in response.error


def test_worker_key_cannot_purge_and_producer_key_cannot_claim(admin_api):
    admin, api = admin_api
    register(admin, "demo")
    worker = keyed(api, make_key(admin, "w", "worker")["key"])
    producer = keyed(api, make_key(admin, "p", "producer")["key"])
    assert producer.post("/tasks", {"type": "demo", "params": {"n": 1}}).status == 201
    response = producer.post("/tasks/claim", {"worker_id": "x"})
    assert response.status == 403 and "worker role" in response.error
    response = worker.post("/admin/purge", {})
    assert response.status == 403 and "admin role" in response.error
    assert worker.post("/tasks/claim", {"worker_id": "x"}).status == 200


def test_revoked_key_gets_401(admin_api):
    admin, api = admin_api
    key = make_key(admin, "soon-gone", "worker")["key"]
    client = keyed(api, key)
    assert client.get("/tasks").status == 200
    response = admin.request("DELETE", "/admin/keys/soon-gone")
    assert response.status == 200 and response.data["revoked"] is True
    assert client.get("/tasks").status == 401
    assert admin.request("DELETE", "/admin/keys/soon-gone").status == 404


def test_keys_are_stored_and_listed_only_as_hash_and_prefix(admin_api, backend_config):
    admin, _ = admin_api
    created = make_key(admin, "ci", "read-only")
    key = created["key"]
    assert key.startswith("tqk_") and len(key) >= 40 and created["prefix"] == key[:12]
    listing = admin.get("/admin/keys")
    assert listing.status == 200 and listing.data["count"] == 1
    text = listing.raw.decode("utf-8")
    assert key not in text and key[12:] not in text
    entry = listing.data["keys"][0]
    assert set(entry) == {"id", "name", "role", "prefix", "created_at", "last_used_at"}
    rows = db_execute(backend_config, "SELECT * FROM api_keys")
    assert rows and all(key not in str(value) for row in rows for value in row)
    if backend_config.backend == "sqlite":  # nor anywhere in the database's files
        path = backend_config.database["sqlite_path"]
        for name in (path, path + "-wal"):
            if os.path.exists(name):
                with open(name, "rb") as handle:
                    assert key.encode("ascii") not in handle.read()


def test_a_used_key_records_last_used_at(admin_api):
    admin, api = admin_api
    key = make_key(admin, "used", "read-only")["key"]
    assert admin.get("/admin/keys").data["keys"][0]["last_used_at"] is None
    assert keyed(api, key).get("/tasks").status == 200
    assert admin.get("/admin/keys").data["keys"][0]["last_used_at"] is not None


def test_config_key_stays_an_admin_key_and_other_keys_get_401(admin_api):
    admin, api = admin_api
    assert admin.get("/admin/keys").status == 200
    assert admin.post("/admin/purge", {}).status == 200
    assert keyed(api, "wrong").get("/tasks").status == 401
    assert keyed(api, "tqk_" + "x" * 43).get("/tasks").status == 401
    assert api.get("/tasks").status == 401
    assert api.get("/health").status == 200  # public routes need no key


def test_without_any_key_the_api_is_open_until_a_key_exists(api):
    assert api.get("/tasks").status == 200
    first = shell_key(api.app.config)
    assert api.get("/tasks").status == 401
    assert keyed(api, first).get("/tasks").status == 200


def test_an_open_api_never_makes_a_key_for_a_keyless_caller(api):
    refused = api.post("/admin/keys", {"name": "x", "role": "admin"})
    assert refused.status == 401 and "install.py --create-key" in refused.error
    assert api.get("/tasks").status == 200  # still open: no key was made
    first = shell_key(api.app.config)
    # a made-up key is still refused once keys exist, and so is a worker's
    worker = make_key(keyed(api, first), "w", "worker")["key"]
    assert keyed(api, worker).post("/admin/keys", {"name": "y", "role": "admin"}).status == 403
    assert keyed(api, "tqk_" + "x" * 40).post("/admin/keys", {"name": "y", "role": "admin"}).status == 401
    assert [k["name"] for k in keyed(api, first).get("/admin/keys").data["keys"]] == ["first", "w"]


def test_bad_key_requests_get_400_naming_the_field_and_change_nothing(admin_api):
    admin, _ = admin_api
    for body, field in (({"role": "worker"}, "name"), ({"name": "a"}, "role"),
                        ({"name": "a b", "role": "worker"}, "name"),
                        ({"name": "a", "role": "root"}, "role"), ({"name": 5, "role": "worker"}, "name")):
        response = admin.post("/admin/keys", body)
        assert response.status == 400 and field in response.error, (body, response)
    assert admin.get("/admin/keys").data["count"] == 0
    make_key(admin, "twice", "worker")
    assert admin.post("/admin/keys", {"name": "twice", "role": "admin"}).status == 409
    assert [k["role"] for k in admin.get("/admin/keys").data["keys"]] == ["worker"]


def _install(config_path, *args):
    env = dict(os.environ, TASKQ_CONFIG=str(config_path))
    return subprocess.run([sys.executable, os.path.join(ROOT, "install.py")] + list(args),
                          env=env, capture_output=True, text=True, timeout=60)


def test_install_py_creates_lists_and_revokes_keys(backend_config):
    made = _install(backend_config.path, "--create-key", "cron", "--role", "worker")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("tqk_")
    api = ApiClient(Application(config=backend_config))
    assert keyed(api, key).post("/tasks/claim", {"worker_id": "w"}).status == 404  # allowed, empty
    listed = _install(backend_config.path, "--list-keys")
    assert listed.returncode == 0 and "cron" in listed.stdout and "worker" in listed.stdout
    assert key not in listed.stdout and key[:12] in listed.stdout
    assert _install(backend_config.path, "--revoke-key", "cron").returncode == 0
    assert keyed(api, key).get("/tasks").status == 401
    again = _install(backend_config.path, "--revoke-key", "cron")
    assert again.returncode == 1 and "No API key" in again.stderr
    bad = _install(backend_config.path, "--create-key", "x")
    assert bad.returncode != 0 and "--role" in bad.stderr


def test_key_stats_and_purge_envelopes_carry_timestamp_and_message(admin_api):
    admin, raw = admin_api
    reader = keyed(raw, make_key(admin, "reader", "read-only")["key"])
    for response in (admin.get("/stats"), admin.request("GET", "/admin/keys"),
                     admin.post("/admin/purge", {"max_rows": 10})):
        assert response.status == 200, response
        assert isinstance(response.json["timestamp"], int) and response.json["message"]
    refused = reader.post("/admin/purge", {})
    assert refused.status == 403
    assert refused.json["message"] == refused.json["error"] and "admin" in refused.json["error"]
    assert isinstance(refused.json["timestamp"], int)


# -- a type belongs to everyone's queue: a producer may re-register it only unchanged --
SEED = {"name": "seed.type", "version": "1.0", "param_schema": {"type": "object"},
        "max_attempts": 3, "claim_timeout": 60}


@pytest.mark.parametrize("change", [{"is_active": False}, {"max_attempts": 1000},
                                    {"claim_timeout": 5}, {"version": "2.0"},
                                    {"param_schema": {"type": "object", "required": ["x"]}},
                                    {"retry_delay_seconds": 30}])
def test_a_producer_cannot_change_a_type_an_admin_registered(admin_api, change):
    admin, api = admin_api
    assert admin.post("/task-types/register", SEED).status == 201
    before = admin.get("/task-types/seed.type").data
    producer = keyed(api, make_key(admin, "p", "producer")["key"])
    response = producer.post("/task-types/register", dict(SEED, **change))
    assert response.status == 403, response
    field = next(iter(change))
    assert field in response.error and "admin" in response.error
    assert admin.get("/task-types/seed.type").data == before
    assert producer.post("/tasks", {"type": "seed.type", "params": {}}).status == 201


def test_a_producer_re_registering_a_type_unchanged_is_idempotent(admin_api):
    admin, api = admin_api
    producer = keyed(api, make_key(admin, "p", "producer")["key"])
    assert producer.post("/task-types/register", SEED).status == 201
    before = admin.get("/task-types/seed.type").data
    # key order and a stored schema's spelling do not count as a change
    again = producer.post("/task-types/register", dict(reversed(list(SEED.items()))))
    assert again.status == 200, again
    assert again.data["created"] is False
    assert admin.get("/task-types/seed.type").data == before  # not even updated_at moved


def test_an_admin_still_changes_a_type_and_the_producer_then_must_match_it(admin_api):
    admin, api = admin_api
    producer = keyed(api, make_key(admin, "p", "producer")["key"])
    assert producer.post("/task-types/register", SEED).status == 201
    assert admin.post("/task-types/register", dict(SEED, is_active=False)).status == 200
    assert admin.get("/task-types/seed.type").data["is_active"] is False
    # the seed producer's old definition would re-activate the type: refused
    assert producer.post("/task-types/register", SEED).status == 403
    assert admin.get("/task-types/seed.type").data["is_active"] is False
    assert producer.post("/task-types/register", dict(SEED, is_active=False)).status == 200


def test_a_producer_refused_a_type_change_through_cgi(backend_config):
    from cgi_runner import run_cgi

    admin = {"X-API-Key": shell_key(backend_config, "owner", "admin")}
    producer = {"X-API-Key": shell_key(backend_config, "seed", "producer")}
    path = backend_config.path
    assert run_cgi("POST", "/task-types/register", SEED, headers=admin,
                   config_path=path).status == 201
    stop = run_cgi("POST", "/task-types/register", dict(SEED, is_active=False, max_attempts=1000),
                   headers=producer, config_path=path)
    assert stop.status == 403, stop
    assert "is_active" in stop.json["error"] and "max_attempts" in stop.json["error"]
    same = run_cgi("POST", "/task-types/register", SEED, headers=producer, config_path=path)
    assert same.status == 200, same
    shown = run_cgi("GET", "/task-types/seed.type", headers=admin, config_path=path).json["data"]
    assert shown["is_active"] is True and shown["max_attempts"] == 3
