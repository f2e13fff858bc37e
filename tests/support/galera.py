"""A throwaway 3-node MariaDB Galera cluster on loopback, for tests and benches.

    cluster = GaleraCluster(base_dir, size=3)
    cluster.start()            # ~30 s: node 1 bootstraps, the others join by SST
    conn = cluster.connect(1)  # PyMySQL, root without password, over TCP
    cluster.kill(2)            # kill -9
    cluster.rejoin(2)          # --wsrep-recover, then back in by IST
    cluster.stop()

Each node is a `mariadbd --no-defaults --user=root` with its own datadir,
socket and four free loopback ports (SQL, group communication, IST, SST).
State transfer is mariabackup (Debian's mariadb-backup): rsync SST fails
under --user=root because its daemon drops to nobody and cannot enter the
datadir. Every full SST waits at least ~13 s (a sleep in the SST script),
so nodes join one after another, each once the previous one is Synced.

The nodes die with the process that started them (PR_SET_PDEATHSIG), so a
test run killed half way leaves no cluster behind; stop() also kills each
node's process group, which holds its SST helpers.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "mariadb-install-db"
NEEDS = (PROVIDER, MARIADBD, "/usr/bin/mariabackup", "/usr/bin/socat")
START_TIMEOUT = 120  # seconds for one node to reach Synced (an SST takes ~15 s)


def missing_parts():
    """The programs a cluster needs that this machine lacks (empty when all are there)."""
    missing = [path for path in NEEDS if not os.path.exists(path)]
    if shutil.which(INSTALL_DB) is None:
        missing.append(INSTALL_DB)
    return missing


def free_ports(count):
    """count distinct free loopback ports (bound to 0 and read back, all held at once)."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            ports.append(sock.getsockname()[1])
    finally:
        for sock in sockets:
            sock.close()
    return ports


def _die_with_parent():
    """preexec_fn: SIGKILL this child when the process that started it dies."""
    import ctypes

    os.setsid()  # its own process group, so stop() reaches the SST helpers too
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Node:
    def __init__(self, cluster, index, ports):
        self.cluster = cluster
        self.index = index
        self.port, self.group_port, self.ist_port, self.sst_port = ports
        self.dir = os.path.join(cluster.base_dir, "node%d" % index)
        self.datadir = os.path.join(self.dir, "data")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.log = os.path.join(self.dir, "error.log")
        self.process = None

    def args(self, *extra):
        cluster = self.cluster
        return [
            MARIADBD, "--no-defaults", "--user=root",
            "--datadir=" + self.datadir, "--socket=" + self.socket,
            "--pid-file=" + os.path.join(self.dir, "mysqld.pid"),
            "--log-error=" + self.log,
            "--bind-address=127.0.0.1", "--port=%d" % self.port,
            "--skip-name-resolve",
            "--wsrep_on=ON", "--wsrep_provider=" + PROVIDER,
            "--wsrep_cluster_name=" + cluster.name,
            "--wsrep_cluster_address=gcomm://" + ",".join(
                "127.0.0.1:%d" % node.group_port for node in cluster.nodes),
            "--wsrep_node_name=node%d" % self.index,
            "--wsrep_node_address=127.0.0.1",
            "--wsrep_node_incoming_address=127.0.0.1:%d" % self.port,
            "--wsrep_provider_options=gmcast.listen_addr=tcp://127.0.0.1:%d;"
            "ist.recv_addr=127.0.0.1:%d;gcache.size=64M" % (self.group_port, self.ist_port),
            "--wsrep_sst_receive_address=127.0.0.1:%d" % self.sst_port,
            "--wsrep_sst_method=mariabackup", "--wsrep_sst_auth=root:",
            "--wsrep_slave_threads=2",
            "--binlog_format=ROW", "--default_storage_engine=InnoDB",
            "--innodb_autoinc_lock_mode=2",
            # durability comes from the other nodes; a log flush per commit
            # would only slow the tests (every node writes to one disk here)
            "--innodb_flush_log_at_trx_commit=2",
            "--performance_schema=OFF", "--max_connections=300",
        ] + list(extra)

    def spawn(self, *extra):
        log = open(os.path.join(self.dir, "stdout.log"), "ab")
        try:
            self.process = subprocess.Popen(self.args(*extra), stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        finally:
            log.close()

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def connect(self, database=None, **extra):
        import pymysql

        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="",
                               database=database, autocommit=True, charset="utf8mb4", **extra)

    def status(self, name):
        """A wsrep status variable (e.g. 'wsrep_local_state_comment'), or None."""
        import pymysql

        conn = pymysql.connect(unix_socket=self.socket, user="root", password="",
                               connect_timeout=2, read_timeout=5)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS LIKE %s", (name,))
                row = cur.fetchone()
                return row[1] if row else None
        finally:
            conn.close()

    def wait_synced(self, timeout=START_TIMEOUT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.alive():
                raise RuntimeError("node %d exited (code %s); its log:\n%s"
                                   % (self.index, self.process.returncode, self.tail()))
            try:
                if self.status("wsrep_local_state_comment") == "Synced":
                    return
            except Exception:  # noqa: BLE001 - not accepting connections yet
                pass
            time.sleep(0.3)
        raise RuntimeError("node %d not Synced after %d s; its log:\n%s"
                           % (self.index, timeout, self.tail()))

    def kill(self):
        """kill -9 the node and whatever SST helper it started."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def recovered_position(self):
        """uuid:seqno from `mariadbd --wsrep-recover` (InnoDB's view after a crash)."""
        marker = "WSREP: Recovered position: "
        before = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        subprocess.run(self.args("--wsrep-recover"), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       preexec_fn=_die_with_parent, timeout=120, check=False)
        with open(self.log, "rb") as handle:
            handle.seek(before)
            text = handle.read().decode("utf-8", "replace")
        for line in reversed(text.splitlines()):
            if marker in line:
                return line.split(marker, 1)[1].strip()
        raise RuntimeError("no recovered position; node %d log:\n%s" % (self.index, text[-3000:]))

    def tail(self, size=4000):
        try:
            with open(self.log, "rb") as handle:
                handle.seek(max(0, os.path.getsize(self.log) - size))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"


class GaleraCluster:
    def __init__(self, base_dir, size=3, name="taskq_test"):
        self.base_dir = str(base_dir)
        self.name = name
        ports = free_ports(4 * size)
        self.nodes = []
        for index in range(1, size + 1):
            self.nodes.append(Node(self, index, ports[4 * (index - 1):4 * index]))

    def node(self, index):
        return self.nodes[index - 1]

    def start(self, size=None):
        """Bootstrap node 1, then join the others one by one (or only the first `size`)."""
        first = self.nodes[0]
        for node in self.nodes:
            os.makedirs(node.datadir, exist_ok=True)
        subprocess.run([INSTALL_DB, "--no-defaults", "--user=root", "--datadir=" + first.datadir,
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, check=True, timeout=120)
        first.spawn("--wsrep-new-cluster")
        first.wait_synced()
        # --skip-name-resolve: TCP clients from 127.0.0.1 need their own account
        self._grant_loopback_root(first)
        for node in self.nodes[1:size]:
            node.spawn()
            node.wait_synced()

    def _grant_loopback_root(self, node):
        import pymysql

        conn = pymysql.connect(unix_socket=node.socket, user="root", password="", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''")
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
        finally:
            conn.close()

    def connect(self, index, database=None, **extra):
        return self.node(index).connect(database, **extra)

    def kill(self, index):
        self.node(index).kill()

    def rejoin(self, index, timeout=START_TIMEOUT):
        """Restart a killed node so it joins by IST: recover its position first.

        A plain restart after kill -9 does a full SST (the datadir's
        grastate.dat says seqno -1); --wsrep_start_position from
        --wsrep-recover lets it fetch only the missed writes (~4 s here).
        """
        node = self.node(index)
        position = node.recovered_position()
        node.spawn("--wsrep_start_position=" + position)
        node.wait_synced(timeout)
        return position

    def stop(self):
        for node in reversed(self.nodes):
            node.kill()

    def cluster_size(self, index=1):
        return int(self.node(index).status("wsrep_cluster_size"))
