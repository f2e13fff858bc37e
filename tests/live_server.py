"""Real processes for the worker-side tests: a dev server and worker commands.

`LiveServer(config_path)` runs `python -m taskq.devserver` on a free port
(or the given one) (the same WSGI app CGI serves) and stops it on close();
its stderr (request log lines unless quiet) goes to a file the test can read.
Several LiveServers on one config.ini are web nodes on one database.
"""

import os
import select
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "lib")


def python_env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = LIB + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("TASKQ_API_KEY", None)
    env["PYTHONUNBUFFERED"] = "1"  # logs reach their files line by line, on Python 3.8 too
    env.update(extra)
    return env


def closed_port():
    """A local port nothing listens on (bound, then released)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class LiveServer:
    def __init__(self, config_path, log_path, quiet=True, startup=20.0, port=0):
        args = [sys.executable, "-m", "taskq.devserver", "--port", str(port),
                "--config", str(config_path)]
        if quiet:
            args.append("--quiet")
        self.log_path = str(log_path)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._log,
                                     env=python_env(), cwd=ROOT)
        self.url = self._wait_for_url(startup)

    def _wait_for_url(self, startup):
        deadline = time.monotonic() + startup
        buffer = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffer += chunk
                for line in buffer.decode("utf-8", "replace").splitlines():
                    if line.startswith("taskq serving on "):
                        return line.split()[3].rstrip("/")
            elif self.proc.poll() is not None:
                break
        self.close()
        raise RuntimeError("dev server did not start: %r %s" % (buffer, self.log()))

    def log(self):
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    @property
    def port(self):
        return int(self.url.rsplit(":", 1)[1])

    def kill(self):
        """kill -9: the node dies mid-request, answering nothing more."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._log.close()


def start_worker(url, *args, log_path, cwd=None, script=None, env=None):
    """A `python -m taskq.worker` (or `python script`) process; stderr goes to log_path."""
    command = [sys.executable] + ([str(script)] if script else ["-m", "taskq.worker"])
    command += ["--url", url] + [str(a) for a in args]
    log = open(str(log_path), "ab")
    try:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log,
                                env=env or python_env(), cwd=cwd or ROOT)
    finally:
        log.close()


def wait_for(predicate, timeout=30.0, interval=0.05):
    """Poll until predicate() is truthy; returns its value or raises AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within %ss" % timeout)
        time.sleep(interval)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not reaped by its orphaned parent yet) counts as gone
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
