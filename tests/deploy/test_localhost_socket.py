"""`localhost` means the server's Unix socket, for the store and the installer (issue 8, item 6).

Accounts made for these tests (skip-name-resolve, an anonymous ''@localhost,
a unix_socket login) live on a MariaDB of the test's own, never on the
shared server.
"""

import os
import socket
import stat

import pytest

from conftest import IN_CI, make_config, mysql_params
from support.mariadb_server import mariadb_template, own_mariadb  # noqa: F401 - fixtures
from taskq import config as config_module
from taskq import install as setup
from taskq.errors import Unavailable
from taskq.store import mysql as mysql_store
from taskq.store.mysql import MySQLStore

pytestmark = pytest.mark.mysql

SHARED_SOCKET = "/run/mysqld/mysqld.sock"


def db_config(tmp_path, **database):
    text = "[database]\nbackend = mysql\n" + "".join("%s = %s\n" % kv for kv in database.items())
    return config_module.parse(text, base_dir=str(tmp_path))


@pytest.fixture
def no_env_socket(monkeypatch):
    monkeypatch.delenv("MYSQL_UNIX_PORT", raising=False)


def is_socket(path):
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def test_localhost_connects_through_the_shared_servers_socket(tmp_path, mysql_database,
                                                              no_env_socket):
    if not is_socket(SHARED_SOCKET):
        if IN_CI:
            pytest.fail("the test server listens on no %s" % SHARED_SOCKET)
        pytest.skip("no server socket at %s" % SHARED_SOCKET)
    p = mysql_params()
    cfg = db_config(tmp_path, host="localhost", user=p["user"], password=p["password"],
                    name=mysql_database)
    assert mysql_store.connection_routes(cfg.database)[0] == (
        "socket " + SHARED_SOCKET, {"unix_socket": SHARED_SOCKET})
    store = MySQLStore(cfg)
    try:
        assert store.conn.unix_socket == SHARED_SOCKET
        assert store.conn.host_info == "Localhost via UNIX socket"
        store.ping()
    finally:
        store.close()


def test_user_at_localhost_refused_over_tcp_under_skip_name_resolve_gets_in_by_socket(
        tmp_path, own_mariadb, monkeypatch):
    own_mariadb.execute("CREATE DATABASE app", "CREATE USER 'loc'@'localhost' IDENTIFIED BY 'pw'",
                        "GRANT ALL ON app.* TO 'loc'@'localhost'")
    settings = dict(user="loc", password="pw", name="app")
    # over TCP the server sees 127.0.0.1, which is not 'localhost' when it skips name resolution
    with pytest.raises(setup.InstallError) as refused:
        setup.connect_mysql(db_config(tmp_path, host="127.0.0.1", port=own_mariadb.port, **settings))
    assert "Access denied" in refused.value.message
    monkeypatch.setenv("MYSQL_UNIX_PORT", own_mariadb.socket)  # where the mysql client looks first
    conn = setup.connect_mysql(db_config(tmp_path, host="localhost", **settings))
    try:
        assert conn.unix_socket == own_mariadb.socket
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone()[0] == "loc@localhost"
    finally:
        conn.close()


def test_php_ini_default_socket_is_found_when_no_usual_path_has_one(tmp_path, own_mariadb,
                                                                    monkeypatch, no_env_socket):
    ini = tmp_path / "php.ini"
    ini.write_text("[Pdo_mysql]\npdo_mysql.default_socket = \"%s\" ; from the host\n"
                   "mysqli.default_socket =\n" % own_mariadb.socket, encoding="utf-8")
    monkeypatch.setattr(mysql_store, "SOCKET_PATHS", (str(tmp_path / "absent.sock"),))
    monkeypatch.setattr(mysql_store, "PHP_INI_GLOBS", (str(tmp_path / "php*.ini"),))
    assert mysql_store.php_ini_sockets() == [own_mariadb.socket]
    assert mysql_store.socket_candidates() == [own_mariadb.socket]
    cfg = db_config(tmp_path, host="localhost", user="root", name="mysql")
    conn = setup.connect_mysql(cfg)
    assert conn.unix_socket == own_mariadb.socket
    conn.close()


@pytest.fixture
def dead_socket(tmp_path):
    """A socket file nobody listens on (a server that died and left it behind)."""
    path = "/tmp/tq-dead-%d.sock" % os.getpid()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.close()
    yield path
    os.unlink(path)


def test_dead_socket_falls_back_to_tcp_127_0_0_1(tmp_path, own_mariadb, monkeypatch, dead_socket,
                                                 no_env_socket):
    own_mariadb.execute("CREATE USER 'tcp'@'127.0.0.1' IDENTIFIED BY 'pw'")
    monkeypatch.setattr(mysql_store, "DEFAULT_PORT", own_mariadb.port)  # as if it were on 3306
    monkeypatch.setattr(mysql_store, "SOCKET_PATHS", (dead_socket,))
    monkeypatch.setattr(mysql_store, "PHP_INI_GLOBS", ())
    cfg = db_config(tmp_path, host="localhost", user="tcp", password="pw", name="",
                    port=own_mariadb.port)
    assert [label for label, _ in mysql_store.connection_routes(cfg.database)] == [
        "socket " + dead_socket, "TCP 127.0.0.1:%d" % own_mariadb.port]
    conn = mysql_store.connect(cfg.database)
    try:
        assert not conn.unix_socket and conn.host == "127.0.0.1"
    finally:
        conn.close()


def test_nothing_answering_on_localhost_says_what_was_tried(tmp_path, monkeypatch, dead_socket,
                                                            no_env_socket):
    from support.mariadb_server import free_port

    port = free_port()
    monkeypatch.setattr(mysql_store, "DEFAULT_PORT", port)  # as if it were 3306
    monkeypatch.setattr(mysql_store, "SOCKET_PATHS", (dead_socket,))
    monkeypatch.setattr(mysql_store, "PHP_INI_GLOBS", ())
    cfg = db_config(tmp_path, host="localhost", user="u", password="p", name="n", port=port,
                    connect_timeout=2)
    with pytest.raises(setup.InstallError) as caught:
        setup.connect_mysql(cfg)
    message = caught.value.message
    assert "No database server answers on this machine" in message
    assert "socket %s (" % dead_socket in message and "TCP 127.0.0.1:%d (" % port in message
    # the API says only that the database is unavailable: paths stay in the log
    with pytest.raises(Unavailable) as down:
        MySQLStore(cfg)
    assert dead_socket not in down.value.message
    assert [label for label, _ in down.value.__cause__.tried] == [
        "socket " + dead_socket, "TCP 127.0.0.1:%d" % port]


def test_anonymous_localhost_account_shadowing_the_user_is_named(tmp_path, own_mariadb,
                                                                 monkeypatch):
    own_mariadb.execute("CREATE DATABASE app", "CREATE USER ''@'localhost'",
                        "CREATE USER 'bob'@'%' IDENTIFIED BY 'secret'",
                        "GRANT ALL ON app.* TO 'bob'@'%'")
    monkeypatch.setenv("MYSQL_UNIX_PORT", own_mariadb.socket)
    cfg = db_config(tmp_path, host="localhost", user="bob", password="secret", name="app")
    with pytest.raises(setup.InstallError) as caught:
        setup.connect_mysql(cfg)
    assert "anonymous account (''@localhost" in caught.value.message
    assert "DROP USER ''@'localhost'" in caught.value.message
    assert caught.value.field == "password"
    # once it is gone the same settings work
    own_mariadb.execute("DROP USER ''@'localhost'")
    setup.connect_mysql(cfg).close()


def test_wrong_password_without_anonymous_account_is_plain_access_denied(tmp_path, own_mariadb,
                                                                         monkeypatch):
    own_mariadb.execute("CREATE USER 'carol'@'localhost' IDENTIFIED BY 'right'")
    monkeypatch.setenv("MYSQL_UNIX_PORT", own_mariadb.socket)
    cfg = db_config(tmp_path, host="localhost", user="carol", password="wrong", name="")
    with pytest.raises(setup.InstallError) as caught:
        setup.connect_mysql(cfg)
    assert "refused the user name 'carol' with this password" in caught.value.message
    assert "anonymous" not in caught.value.message


def test_unix_socket_login_error_1698_is_explained(tmp_path, own_mariadb, monkeypatch):
    own_mariadb.execute("CREATE USER 'sockonly'@'localhost' IDENTIFIED VIA unix_socket")
    monkeypatch.setenv("MYSQL_UNIX_PORT", own_mariadb.socket)
    cfg = db_config(tmp_path, host="localhost", user="sockonly", password="x", name="app")
    with pytest.raises(setup.InstallError) as caught:
        setup.connect_mysql(cfg)
    message = caught.value.message
    assert "logs in by Unix user, not by password" in message
    assert "CREATE USER 'taskq'@'localhost'" in message and "1698" not in message
    with pytest.raises(Unavailable):  # the store: a 503, like any refused login
        MySQLStore(make_config("mysql", tmp_path, "app", database={
            "host": "localhost", "user": "sockonly", "password": "x", "port": 3306}))


def test_localhost_with_another_port_is_tcp_to_that_port_only(tmp_path, no_env_socket):
    cfg = db_config(tmp_path, host="localhost", port=3307, user="u", name="n")
    assert mysql_store.connection_routes(cfg.database) == [
        ("TCP 127.0.0.1:3307", {"host": "127.0.0.1", "port": 3307})]
    named = db_config(tmp_path, host="localhost", unix_socket="/srv/db.sock", user="u", name="n")
    assert mysql_store.connection_routes(named.database) == [
        ("socket /srv/db.sock", {"unix_socket": "/srv/db.sock"})]
