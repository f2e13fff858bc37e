"""A MariaDB server of a test's own: own datadir, free port, own socket, `--no-defaults`.

Fault tests kill it (-9), freeze it (SIGSTOP) and restart it, and install
tests create odd accounts on it, none of which may touch the shared server.
The system tables are made once per session (mariadb-install-db takes ~6 s)
and copied for each server.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
_TEMPLATE = {}


def binaries():
    """(mariadbd, mariadb-install-db) or None when MariaDB is not installed here."""
    daemon = shutil.which("mariadbd") or shutil.which("mysqld") or (
        "/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None)
    installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    return (daemon, installer) if daemon and installer else None


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _template(base):
    if "path" not in _TEMPLATE:
        daemon, installer = binaries()
        path = os.path.join(base, "template")
        result = subprocess.run([installer, "--no-defaults", "--datadir=" + path, "--user=root",
                                 "--auth-root-authentication-method=normal", "--skip-test-db"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if result.returncode != 0:
            raise RuntimeError("mariadb-install-db failed: %s" % result.stdout[-2000:])
        _TEMPLATE["path"] = path
    return _TEMPLATE["path"]


class MariaDB:
    """One mariadbd: start(), kill9(), freeze()/thaw(), stop(); connect()."""

    def __init__(self, workdir, template):
        self.workdir = str(workdir)
        self.datadir = os.path.join(self.workdir, "data")
        shutil.copytree(template, self.datadir, symlinks=True)
        self.port = free_port()
        # a socket path may hold at most ~107 bytes: pytest's tmp paths can be longer
        self.socket_dir = tempfile.mkdtemp(prefix="tq-db-", dir="/tmp")
        self.socket = os.path.join(self.socket_dir, "mysqld.sock")
        self.error_log = os.path.join(self.workdir, "error.log")
        self.proc = None
        self.frozen = False

    def start(self, timeout=60):
        daemon, _ = binaries()
        self.proc = subprocess.Popen([
            daemon, "--no-defaults", "--datadir=" + self.datadir, "--user=root",
            "--port=%d" % self.port, "--bind-address=127.0.0.1", "--socket=" + self.socket,
            "--pid-file=" + os.path.join(self.workdir, "mysqld.pid"),
            "--log-error=" + self.error_log, "--skip-log-bin", "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
            "--max-connections=200", "--innodb-flush-log-at-trx-commit=1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mariadbd exited: %s" % self._log_tail())
            try:
                self.connect().close()
                return self
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        raise RuntimeError("mariadbd did not start in %ds: %s" % (timeout, self._log_tail()))

    def _log_tail(self):
        try:
            with open(self.error_log, encoding="utf-8", errors="replace") as handle:
                return handle.read()[-2000:]
        except OSError:
            return ""

    def connect(self, database=None, **extra):
        import pymysql

        return pymysql.connect(unix_socket=self.socket, user="root", password="",
                               database=database, autocommit=True, charset="utf8mb4",
                               connect_timeout=5, **extra)

    def execute(self, *statements, database=None):
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                rows = None
                for statement in statements:
                    cur.execute(statement)
                    rows = cur.fetchall()
                return rows
        finally:
            conn.close()

    def kill9(self):
        self.thaw()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self):
        if self.frozen:
            self.proc.send_signal(signal.SIGCONT)
            self.frozen = False

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.thaw()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def remove(self):
        self.stop()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb_template(tmp_path_factory):
    if binaries() is None:
        if IN_CI:
            pytest.fail("mariadbd and mariadb-install-db are required in CI")
        pytest.skip("mariadbd is not installed")
    return _template(str(tmp_path_factory.mktemp("mariadb")))


@pytest.fixture
def own_mariadb(mariadb_template, tmp_path):
    """A started MariaDB of this test's own (stopped and removed afterwards)."""
    server = MariaDB(tmp_path / "mariadb", mariadb_template).start()
    yield server
    server.remove()
