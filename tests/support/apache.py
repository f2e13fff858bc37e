"""A real Apache httpd (Debian's apache2 binary) on 127.0.0.1, for tests and bench/.

    from support.apache import start_apache, cgi_python_env, prepare_docroot

    docroot = make_docroot()                  # a fresh folder the web user can reach
    ...unzip the bundle into docroot/taskq...
    prepare_docroot(docroot)                  # owned by the user CGI runs as
    server = start_apache(docroot, env=cgi_python_env(workdir))
    server.base_url                           # "http://127.0.0.1:PORT"
    server.stop()

The server gets its own ServerRoot, PidFile, logs, cgid socket and config in
a temporary folder, listens only on 127.0.0.1, loads mpm_event with mod_cgid
(or mpm_prefork with mod_cgi: `start_apache(..., cgi="cgi")`), mod_rewrite,
mod_alias, the authz modules and what Debian enables by default, and serves `docroot` with `AllowOverride All` and nothing else: the
shipped .htaccess files alone decide what runs and what is denied.

Run as root, Apache hands requests to an unprivileged user (www-data), like
a shared host where scripts run as the account that owns the files:
`prepare_docroot` gives the tree to that user and `cgi_python_env` makes a
Python of the running version that this user can execute (the running one
may live under /root, which it cannot enter).

Nothing here imports pytest, so bench/ scripts can use it too
(`sys.path.insert(0, "tests")`, then `from support.apache import ...`).
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

APACHE_BIN = os.environ.get("TASKQ_APACHE_BIN", "/usr/sbin/apache2")
MODULES_DIR = os.environ.get("TASKQ_APACHE_MODULES", "/usr/lib/apache2/modules")
WEB_USER = "www-data"

# (module name, file): Debian's default set and mod_rewrite; the MPM and the
# CGI module come from CGI_MODES.
MODULES = (
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_host_module", "mod_authz_host.so"),
    ("authz_user_module", "mod_authz_user.so"),
    ("authn_core_module", "mod_authn_core.so"),
    ("authn_file_module", "mod_authn_file.so"),
    ("auth_basic_module", "mod_auth_basic.so"),
    ("access_compat_module", "mod_access_compat.so"),
    ("alias_module", "mod_alias.so"),
    ("dir_module", "mod_dir.so"),
    ("autoindex_module", "mod_autoindex.so"),
    ("mime_module", "mod_mime.so"),
    ("env_module", "mod_env.so"),
    ("setenvif_module", "mod_setenvif.so"),
    ("filter_module", "mod_filter.so"),
    ("negotiation_module", "mod_negotiation.so"),
    ("reqtimeout_module", "mod_reqtimeout.so"),
    ("rewrite_module", "mod_rewrite.so"),
)

# How Apache runs CGI scripts: "cgid" (Debian's default: the threaded event
# MPM, scripts forked by the cgid daemon and talking over a Unix socket) or
# "cgi" (the prefork MPM forking each script itself, with pipes; the classic
# shared host). Each is (MPM module, CGI module).
CGI_MODES = {
    "cgid": (("mpm_event_module", "mod_mpm_event.so"), ("cgid_module", "mod_cgid.so")),
    "cgi": (("mpm_prefork_module", "mod_mpm_prefork.so"), ("cgi_module", "mod_cgi.so")),
}


class ApacheUnavailable(RuntimeError):
    """The apache2 binary or one of its modules is not installed."""


class ApacheServer:
    def __init__(self, process, base_url, server_root, error_log_path, access_log_path):
        self.process = process
        self.base_url = base_url
        self.server_root = server_root
        self.error_log_path = error_log_path
        self.access_log_path = access_log_path

    def error_log(self):
        try:
            with open(self.error_log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def stop(self, timeout=15):
        """Stop Apache and its children; safe to call twice."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.server_root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def available(cgi="cgid"):
    """None when Apache can run here with `cgi` (a CGI_MODES key), else the reason it cannot."""
    if not os.access(APACHE_BIN, os.X_OK):
        return "%s is not installed (Debian package apache2)" % APACHE_BIN
    for _, filename in MODULES + CGI_MODES[cgi]:
        if not os.path.exists(os.path.join(MODULES_DIR, filename)):
            return "Apache module %s is missing from %s" % (filename, MODULES_DIR)
    return None


def run_user():
    """The user CGI scripts run as: www-data when we are root, else ourselves."""
    if os.geteuid() == 0:
        return pwd.getpwnam(WEB_USER)
    return pwd.getpwuid(os.geteuid())


def make_docroot(prefix="taskq-docroot-"):
    """A new empty folder under the system temp dir that the web user can enter."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    return path


def prepare_docroot(docroot):
    """Give the tree to the user Apache runs scripts as (only needed as root).

    On a shared host the uploaded files belong to the account that the
    scripts run as, so a mode-600 config.ini and a writable data/ folder are
    the owner's. This makes the test tree look the same."""
    user = run_user()
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(docroot):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in files:
            os.lchown(os.path.join(root, name), user.pw_uid, user.pw_gid)
    _check_reachable(docroot, user)


def _check_reachable(path, user):
    parts = os.path.abspath(path).split(os.sep)
    for depth in range(2, len(parts)):
        parent = os.sep.join(parts[:depth])
        st = os.stat(parent)
        if st.st_uid != user.pw_uid and not st.st_mode & 0o001:
            raise RuntimeError("%s cannot enter %s (mode %o): put the document root elsewhere"
                               % (user.pw_name, parent, st.st_mode & 0o777))


def cgi_python_env(workdir, python=None):
    """Environment for CGI so that `/usr/bin/env python3` runs the tests' Python version.

    Returns {"PATH": ..., "LD_LIBRARY_PATH": ...} naming a `python3` of the
    same version as `python` (default: the running interpreter) and WITHOUT
    its site-packages, like a host's bare Python: the bundle's vendored lib/
    must be all it needs. The interpreter is rebuilt under `workdir` from
    hard links to the real one (a copy when on another file system), so the
    web user can run it even when the real one lives under /root."""
    python = python or sys.executable
    info = subprocess.run(
        [python, "-c", "import sys; print(sys.base_prefix); print(sys.version_info[0]); "
                       "print(sys.version_info[1]); print(sys.executable)"],
        check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout.split("\n")
    base_prefix, major, minor = info[0], info[1], info[2]
    version = "%s.%s" % (major, minor)
    binary = os.path.join(base_prefix, "bin", "python" + version)
    if not os.path.exists(binary):
        raise RuntimeError("no interpreter binary at %s" % binary)
    dest = os.path.join(workdir, "python%s" % version)
    if not os.path.exists(os.path.join(dest, "bin", "python3")):
        _link_interpreter(base_prefix, binary, version, dest)
    _make_traversable(workdir)
    return {"PATH": os.path.join(dest, "bin") + ":/usr/local/bin:/usr/bin:/bin",
            "LD_LIBRARY_PATH": os.path.join(dest, "lib")}


_SKIP_STDLIB = frozenset(("site-packages", "test", "tests", "idlelib", "tkinter", "turtledemo",
                          "ensurepip", "lib2to3"))


def _link(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _link_interpreter(prefix, binary, version, dest):
    os.makedirs(os.path.join(dest, "bin"))
    os.makedirs(os.path.join(dest, "lib"))
    _link(binary, os.path.join(dest, "bin", "python" + version))
    os.symlink("python" + version, os.path.join(dest, "bin", "python3"))
    for name in os.listdir(os.path.join(prefix, "lib")):
        if name.startswith("libpython"):
            _link(os.path.join(prefix, "lib", name), os.path.join(dest, "lib", name))
    stdlib = os.path.join(prefix, "lib", "python" + version)
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in _SKIP_STDLIB and not d.startswith("config-")]
        out = os.path.join(dest, "lib", "python" + version, os.path.relpath(root, stdlib))
        os.makedirs(out, exist_ok=True)
        for name in files:
            _link(os.path.join(root, name), os.path.join(out, name))


def _make_traversable(path):
    for root, dirs, _ in os.walk(path):
        os.chmod(root, 0o755)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(server_root, docroot, port, env, user, without=(), cgi="cgid"):
    lines = ['ServerRoot "%s"' % server_root,
             'PidFile "%s/apache.pid"' % server_root,
             'DefaultRuntimeDir "%s"' % server_root,
             'Mutex file:%s default' % server_root,
             "Listen 127.0.0.1:%d" % port,
             "ServerName 127.0.0.1",
             "Timeout 60",
             "KeepAlive Off"]
    lines += ['LoadModule %s "%s"' % (name, os.path.join(MODULES_DIR, filename))
              for name, filename in CGI_MODES[cgi][:1] + MODULES + CGI_MODES[cgi][1:]
              if name not in without]
    if os.geteuid() == 0:
        lines += ["User %s" % user.pw_name, "Group #%d" % user.pw_gid]
    lines += [
        'ErrorLog "%s/error.log"' % server_root,
        "LogLevel warn",
        'LogFormat "%h %t \\"%r\\" %>s %b %D" timed',
        'CustomLog "%s/access.log" timed' % server_root,
        'TypesConfig "/etc/mime.types"',
    ]
    if cgi == "cgid":
        lines += ['ScriptSock "%s/cgid.sock"' % server_root,
                  "StartServers 2", "ServerLimit 4", "ThreadsPerChild 16", "MaxRequestWorkers 64"]
    else:
        lines += ["StartServers 4", "ServerLimit 32", "MaxRequestWorkers 32"]
    lines += [
        'DocumentRoot "%s"' % docroot,
        "<Directory />",
        "    Options FollowSymLinks",
        "    AllowOverride None",
        "    Require all denied",
        "</Directory>",
        '<Directory "%s">' % docroot,
        "    Options Indexes FollowSymLinks",
        "    AllowOverride All",
        "    Require all granted",
        "</Directory>",
    ]
    for key, value in sorted((env or {}).items()):
        lines.append('SetEnv %s "%s"' % (key, value.replace('"', '\\"')))
    return "\n".join(lines) + "\n"


def start_apache(docroot, port=None, env=None, timeout=20, without=(), extra_conf=None,
                 cgi="cgid"):
    """Start Apache serving `docroot` on 127.0.0.1; returns an ApacheServer once it answers.

    `env` goes to every CGI script (SetEnv), e.g. cgi_python_env(...).
    `extra_conf(server_root)` returns lines appended to the config (mod_wsgi).
    `without` names modules to leave out, e.g. ("rewrite_module",) for a
    host without mod_rewrite. `cgi` picks mod_cgid or mod_cgi (CGI_MODES)."""
    reason = available(cgi)
    if reason:
        raise ApacheUnavailable(reason)
    docroot = os.path.abspath(docroot)
    user = run_user()
    for attempt in range(3):
        chosen = port or free_port()
        server_root = tempfile.mkdtemp(prefix="taskq-apache-")
        os.chmod(server_root, 0o755)
        conf = os.path.join(server_root, "httpd.conf")
        with open(conf, "w", encoding="utf-8") as handle:
            handle.write(_config(server_root, docroot, chosen, env, user, without, cgi))
            if extra_conf is not None:
                handle.write(extra_conf(server_root))
        error_log = os.path.join(server_root, "error.log")
        with open(os.path.join(server_root, "stderr.log"), "wb") as stderr:
            process = subprocess.Popen([APACHE_BIN, "-f", conf, "-DFOREGROUND"],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=stderr, preexec_fn=_die_with_parent,
                                       # prefork signals its whole process group on stop
                                       start_new_session=True,
                                       env={"PATH": "/usr/sbin:/usr/bin:/bin", "LANG": "C"})
        server = ApacheServer(process, "http://127.0.0.1:%d" % chosen, server_root,
                              error_log, os.path.join(server_root, "access.log"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if _answers(server.base_url):
                return server
            time.sleep(0.1)
        output = _read(os.path.join(server_root, "stderr.log")) + server.error_log()
        server.stop()
        if port is None and "Address already in use" in output and attempt < 2:
            continue
        raise RuntimeError("Apache did not start on port %d:\n%s" % (chosen, output))
    raise AssertionError("unreachable")


def _die_with_parent():
    """In the child before exec: SIGTERM when the test process dies, so no Apache outlives it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - only a safety net
        pass


def _answers(base_url):
    try:
        urllib.request.urlopen(base_url + "/", timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def _read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""
