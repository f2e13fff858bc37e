"""The app under persistent WSGI servers, for tests and bench/: gunicorn, mod_wsgi, Passenger.

    server = start_documented_gunicorn(site, log) # docs/deploy.md's command, in a bundle
    server = start_mod_wsgi(site, docroot)        # Apache + mod_wsgi (daemon mode)
    server = start_passenger(site, docroot)       # Apache + Passenger
    server.url                                    # "http://127.0.0.1:PORT" (+ mount)
    server.close()

Apache's mod_wsgi and Passenger lines, and the gunicorn command, are the blocks of
docs/deploy.md marked `<!-- tested: NAME -->` (documented()), with the bundle's folder in
place of the docs' /srv/taskq: what the docs print is what runs.

All serve an unpacked upload bundle's `passenger_wsgi:application`, the entry
point a host's Passenger uses too: the module-level app, which keeps one
database connection per concurrent request and reuses it. gunicorn runs in the
tests' interpreter (a bundle for its version); mod_wsgi and Passenger run
Debian's python3 (the one mod_wsgi is built for), so their site carries a
bundle for that version.
"""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MOD_WSGI = "/usr/lib/apache2/modules/mod_wsgi.so"


class Server:
    def __init__(self, url, stop, log_path, pids=None):
        self.url = url
        self._stop = stop
        self.log_path = log_path
        self.pids = pids

    def log(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def close(self):
        self._stop()


def gunicorn_available():
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        return "gunicorn is not installed (requirements-dev.txt)"
    return None


def mod_wsgi_available():
    if not os.path.exists(MOD_WSGI):
        return "%s is missing (Debian package libapache2-mod-wsgi-py3)" % MOD_WSGI
    from support.apache import available

    return available()


DEPLOY_DOC = os.path.join(ROOT, "docs", "deploy.md")
DOC_SITE = "/srv/taskq"  # where docs/deploy.md's snippets have the bundle


def documented(name):
    """The fenced block that docs/deploy.md marks `<!-- tested: name -->`, as printed there."""
    with open(DEPLOY_DOC, encoding="utf-8") as handle:
        text = handle.read()
    found = re.findall(r"^<!-- tested: %s -->\n```[a-z]*\n(.*?)^```$" % re.escape(name), text,
                       re.S | re.M)
    if len(found) != 1:
        raise LookupError("docs/deploy.md has %d blocks marked 'tested: %s'" % (len(found), name))
    return found[0]


def placed(snippet, site):
    """A documented snippet for the bundle at `site`: its /srv/taskq, and nothing else, replaced."""
    assert DOC_SITE in snippet, snippet
    return snippet.replace(DOC_SITE, site)


def mod_wsgi_conf(site, server_root, processes=2, threads=4, root=False, extra_mounts=()):
    """docs/deploy.md's mod_wsgi configuration for the bundle at `site` (the API at /taskq, or
    with `root` the documented line that mounts it at /), after the lines Debian's module
    config supplies; bench/ may ask for other processes x threads and extra mounts."""
    snippet = documented("mod_wsgi")
    if root:
        alias = [line for line in snippet.splitlines() if line.startswith("WSGIScriptAlias ")]
        assert len(alias) == 1, snippet
        snippet = snippet.replace(alias[0] + "\n", documented("mod_wsgi-root"))
    if (processes, threads) != (2, 4):
        assert "processes=2 threads=4" in snippet, snippet
        snippet = snippet.replace("processes=2 threads=4", "processes=%d threads=%d" % (processes, threads))
    return "\n".join([
        'LoadModule wsgi_module "%s"' % MOD_WSGI,
        'WSGISocketPrefix "%s/wsgi"' % server_root,
    ] + ['WSGIScriptAlias %s "%s"' % (path, script) for path, script in extra_mounts]) + "\n" \
        + placed(snippet, site)


def start_mod_wsgi(site, docroot, processes=2, threads=4, extra_mounts=(), root=False):
    """Apache with mod_wsgi in daemon mode serving `site` (config.ini in it) as docs/deploy.md
    prints it: at /taskq, or at / with `root`. Server.url ends with the mount."""
    from support.apache import start_apache

    server = start_apache(docroot, extra_conf=lambda server_root: mod_wsgi_conf(
        site, server_root, processes, threads, root, extra_mounts))
    url = server.base_url + ("" if root else "/taskq")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _answers(url + "/health"):
        time.sleep(0.2)
    return Server(url, server.stop, server.error_log_path)


def start_documented_gunicorn(site, log_path, timeout=30.0):
    """docs/deploy.md's gunicorn command, run by sh for the bundle at `site` on a free port
    (its /srv/taskq and 127.0.0.1:8000 replaced, and nothing else), with the tests' gunicorn."""
    from support.apache import free_port

    command = placed(documented("gunicorn"), site)
    assert "127.0.0.1:8000" in command, command
    url = "http://127.0.0.1:%d" % free_port()
    command = command.replace("127.0.0.1:8000", url[len("http://"):])
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)  # taskq comes from the bundle's lib/, as on a server
    env.pop("TASKQ_CONFIG", None)
    # gunicorn 25+ makes a control socket there: one per server, not one shared under ~
    env["XDG_RUNTIME_DIR"] = os.path.dirname(os.path.abspath(str(log_path)))
    log = open(str(log_path), "wb")
    proc = subprocess.Popen(["sh", "-c", command], stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()

    def stop():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if _answers(url + "/health"):
            return Server(url, stop, str(log_path))
        time.sleep(0.1)
    stop()
    raise RuntimeError("gunicorn did not start:\n%s" % open(str(log_path)).read()[-3000:])


def _answers(url):
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False
    return True


MOD_PASSENGER = "/usr/lib/apache2/modules/mod_passenger.so"
PASSENGER_ROOT = "/usr/lib/ruby/vendor_ruby/phusion_passenger/locations.ini"


def passenger_available():
    for path in (MOD_PASSENGER, PASSENGER_ROOT):
        if not os.path.exists(path):
            return "%s is missing (Debian package libapache2-mod-passenger)" % path
    from support.apache import available

    return available()


def passenger_conf(site, server_root, root=False):
    """docs/deploy.md's Passenger configuration (at /taskq, or with `root` its block for /) for
    the bundle at `site`, after the lines Debian's module config supplies: the app root's
    passenger_wsgi.py and its `application`, as a host's Passenger (cPanel's "Setup Python
    App") finds it."""
    return "\n".join([
        'LoadModule passenger_module "%s"' % MOD_PASSENGER,
        'PassengerRoot "%s"' % PASSENGER_ROOT,
        "PassengerDefaultRuby /usr/bin/ruby",
        'PassengerInstanceRegistryDir "%s"' % server_root,
        "PassengerDisableSecurityUpdateCheck on",
        "PassengerDisableAnonymousTelemetry on",
    ]) + "\n" + placed(documented("passenger-root" if root else "passenger"), site)


def start_passenger(site, docroot, root=False):
    """Apache with mod_passenger serving `site` (config.ini in it) as docs/deploy.md prints
    it: at /taskq, or at / with `root`. Server.url ends with the mount."""
    from support.apache import start_apache

    server = start_apache(docroot, extra_conf=lambda server_root: passenger_conf(
        site, server_root, root))
    url = server.base_url + ("" if root else "/taskq")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _answers(url + "/health"):
        time.sleep(0.3)
    return Server(url, server.stop, server.error_log_path)
