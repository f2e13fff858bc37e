"""The app under persistent WSGI servers, for tests and bench/: gunicorn and mod_wsgi.

    server = start_gunicorn(config_path)          # the project's passenger_wsgi.py
    server = start_mod_wsgi(site, config_path)    # Apache + mod_wsgi (daemon mode)
    server.url                                    # "http://127.0.0.1:PORT" (+ mount)
    server.close()

Both serve `passenger_wsgi:application`, the entry point a host's Passenger
uses too: the module-level app, which keeps one database connection per
concurrent request and reuses it. gunicorn runs in the tests' interpreter
(its packages); mod_wsgi runs Debian's python3 (the one it is built for), so
its site must carry its packages in lib/, as the upload bundle does.
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


def start_gunicorn(config_path, log_path, workers=2, threads=4, timeout=30.0):
    """gunicorn (gthread workers) on a free port, serving the project's passenger_wsgi.py."""
    command = [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "--workers", str(workers),
               "--threads", str(threads), "--chdir", ROOT, "--graceful-timeout", "3"]
    helptext = subprocess.run(command[:3] + ["--help"], stdout=subprocess.PIPE,
                              universal_newlines=True).stdout
    if "--no-control-socket" in helptext:  # gunicorn 25+: a shared socket under ~ otherwise
        command.append("--no-control-socket")
    command.append("passenger_wsgi:application")
    env = dict(os.environ, TASKQ_CONFIG=str(config_path), PYTHONUNBUFFERED="1")
    log = open(str(log_path), "wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
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
    while time.monotonic() < deadline:
        with open(str(log_path), encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        found = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", text)
        booted = len(re.findall(r"Booting worker", text))
        if found and booted >= workers and _answers(found.group(1) + "/health"):
            return Server(found.group(1), stop, str(log_path))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop()
    raise RuntimeError("gunicorn did not start:\n%s" % open(str(log_path)).read()[-3000:])


def mod_wsgi_available():
    if not os.path.exists(MOD_WSGI):
        return "%s is missing (Debian package libapache2-mod-wsgi-py3)" % MOD_WSGI
    from support.apache import available

    return available()


def mod_wsgi_conf(site, server_root, processes=2, threads=4, mount="/wsgi", extra_mounts=()):
    """Apache lines that serve site/passenger_wsgi.py at `mount` in a mod_wsgi daemon
    (and each (mount, script) of extra_mounts in the same daemon)."""
    return "\n".join([
        'LoadModule wsgi_module "%s"' % MOD_WSGI,
        'WSGISocketPrefix "%s/wsgi"' % server_root,
        "WSGIDaemonProcess taskq processes=%d threads=%d python-path=%s display-name=taskq-wsgi"
        % (processes, threads, os.path.join(site, "lib")),
        "WSGIProcessGroup taskq",
        "WSGIApplicationGroup %{GLOBAL}",
        'WSGIScriptAlias %s "%s"' % (mount, os.path.join(site, "passenger_wsgi.py")),
    ] + ['WSGIScriptAlias %s "%s"' % (path, script) for path, script in extra_mounts] + [
        '<Directory "%s">' % site,
        "    AllowOverride None",
        "    Require all granted",
        "</Directory>",
    ]) + "\n"


def start_mod_wsgi(site, docroot, processes=2, threads=4, extra_mounts=()):
    """Apache with mod_wsgi in daemon mode serving `site` (config.ini in it) at /wsgi."""
    from support.apache import start_apache

    server = start_apache(docroot, extra_conf=lambda server_root: mod_wsgi_conf(
        site, server_root, processes, threads, extra_mounts=extra_mounts))
    url = server.base_url + "/wsgi"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _answers(url + "/health"):
        time.sleep(0.2)
    return Server(url, server.stop, server.error_log_path)


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


def passenger_conf(site, server_root, python="/usr/bin/python3", mount="/pax"):
    """Apache lines that serve site/passenger_wsgi.py with Phusion Passenger at `mount`,
    as a host's Passenger (cPanel's "Setup Python App") finds it: the app root's
    passenger_wsgi.py and its `application`."""
    public = os.path.join(site, "public")
    os.makedirs(public, exist_ok=True)
    return "\n".join([
        'LoadModule passenger_module "%s"' % MOD_PASSENGER,
        'PassengerRoot "%s"' % PASSENGER_ROOT,
        "PassengerDefaultRuby /usr/bin/ruby",
        'PassengerInstanceRegistryDir "%s"' % server_root,
        "PassengerDisableSecurityUpdateCheck on",
        "PassengerDisableAnonymousTelemetry on",
        'Alias %s "%s"' % (mount, public),
        '<Location %s>' % mount,
        "    PassengerBaseURI %s" % mount,
        '    PassengerAppRoot "%s"' % site,
        "    PassengerAppType wsgi",
        "    PassengerStartupFile passenger_wsgi.py",
        "    PassengerPython %s" % python,
        "</Location>",
        '<Directory "%s">' % site,
        "    AllowOverride None",
        "    Require all granted",
        "</Directory>",
    ]) + "\n"


def start_passenger(site, docroot):
    """Apache with mod_passenger serving `site` (config.ini in it) at /pax."""
    from support.apache import start_apache

    server = start_apache(docroot, extra_conf=lambda server_root: passenger_conf(site, server_root))
    url = server.base_url + "/pax"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _answers(url + "/health"):
        time.sleep(0.3)
    return Server(url, server.stop, server.error_log_path)
