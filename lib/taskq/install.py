"""What install.py does, as functions both of its faces (wizard, shell) call.

- `environment_checks`: what a host must offer, each with the exact fix.
- `validate_settings`: the database form's values, checked field by field.
- `connect_mysql` / `explain_mysql_error`: a connection test whose failures
  read as plain words (access denied, unknown database, host unreachable).
- `prepare_install`: test the database, create or upgrade its schema, revoke
  the API keys already in it that the owner did not keep, and return the
  config.ini text; `install` also writes it with mode 600.
- `config_writable`: whether this process may write config.ini itself (it
  runs as the folder's owner); otherwise the wizard shows the text to upload.

No secret ever goes anywhere but config.ini (mode 600, denied to the web by
the shipped .htaccess) and the wizard's CSRF secret beside it (or, where the
folder is not the script's own, a secret derived from install.py's inode).
"""

import collections
import configparser
import os
import re
import secrets
import sys

from . import config as config_module
from .config import DEFAULTS, PROJECT_ROOT
from .errors import SchemaNewer, TaskqError

MIN_PYTHON = (3, 8)
SECRET_FILE_NAME = ".taskq-install-secret"
DB_KEYS = ("backend", "host", "port", "name", "user", "password", "unix_socket", "sqlite_path")

# `required` False: a failing check is advice (shown, never blocking the next step)
Check = collections.namedtuple("Check", "name ok detail fix required", defaults=(True,))
DEFAULT_SHEBANG = b"#!/usr/bin/env python3"


class InstallError(TaskqError):
    """A step of the installation failed; the message says why in plain words.

    `field` names the form field to blame, when there is one.
    """

    status = 400
    message = "Installation failed"

    def __init__(self, message=None, field=None, details=None):
        super().__init__(message, details)
        self.field = field


def config_path():
    """Where config.ini lives: TASKQ_CONFIG, else the project root."""
    return os.environ.get("TASKQ_CONFIG") or config_module.DEFAULT_CONFIG_PATH


def is_installed(path):
    return os.path.exists(path)


# -- environment checks ------------------------------------------------------
def _module_check(module, package, root):
    try:
        imported = __import__(module)
    except Exception as exc:  # noqa: BLE001 - any import failure is the finding
        return Check("%s importable" % package, False, "cannot be imported: %s" % exc,
                     "Upload the lib/ folder of a taskq bundle built for Python %d.%d (the Python "
                     "running here) completely, keeping its subfolders." % sys.version_info[:2])
    where = os.path.abspath(getattr(imported, "__file__", "") or "")
    origin = "bundled in lib/" if where.startswith(os.path.join(root, "lib") + os.sep) else "installed on this host"
    version = ""
    try:  # jsonschema deprecates __version__; the installed metadata says it too
        from importlib import metadata

        version = metadata.version(package)
    except Exception:  # noqa: BLE001 - the version is only informative
        version = str(getattr(imported, "__version__", ""))
    return Check("%s importable" % package, True, "%s %s" % (version or "", origin), "")


def shipped_bytecode(root):
    """{cache tag: magic number} of the hash-based .pyc files shipped in lib/taskq/__pycache__.

    A bundle ships those (tools/bundle.py: checked hashes for taskq, unchecked
    before); the interpreter writes timestamp-based ones, which are not counted.
    """
    found = {}
    cache = os.path.join(root, "lib", "taskq", "__pycache__")
    try:
        names = sorted(os.listdir(cache))
    except OSError:
        return found
    for name in names:
        parts = name.split(".")
        if len(parts) != 3 or parts[2] != "pyc":
            continue
        try:
            with open(os.path.join(cache, name), "rb") as handle:
                head = handle.read(8)
        except OSError:
            continue
        # PEP 552: magic (4 bytes), flags (4 bytes little endian; bit 0 = hash-based)
        if len(head) == 8 and int.from_bytes(head[4:8], "little") & 1:
            found.setdefault(parts[1], head[:4])
    return found


def bytecode_check(root):
    """Does the bundle's bytecode fit the Python running here (its magic number)?"""
    import importlib.util

    name = "Bytecode matches this Python"
    tag = sys.implementation.cache_tag
    shipped = shipped_bytecode(root)
    if not shipped:
        return Check(name, True, "no bytecode shipped (a source copy): Python compiles lib/ "
                     "itself, on every request where it cannot write lib/__pycache__", "")
    if shipped.get(tag) == importlib.util.MAGIC_NUMBER:
        return Check(name, True, "%s bytecode shipped, used as it is" % tag, "")
    built_for = ", ".join(sorted(shipped))
    return Check(name, False, "the bundle's bytecode is for %s, this is %s (Python %d.%d)"
                 % ((built_for, tag) + sys.version_info[:2]),
                 "Build the bundle for this Python (python%d.%d tools/bundle.py --python-version "
                 "%d.%d) and upload its lib/ folder again; with the wrong bytecode every request "
                 "compiles PyMySQL and taskq from source." % (sys.version_info[:2] * 2))


def release_check(root):
    """Does lib/ hold the files of one release (taskq/release.py)?"""
    from . import release

    name = "Files of one release"
    mismatch = release.check(os.path.join(root, "lib"))
    if mismatch is not None:
        return Check(name, False, "lib/taskq/MANIFEST says %s: %s"
                     % (mismatch.release or "unreadable", mismatch.summary), release.FIX)
    manifest = os.path.join(root, "lib", "taskq", release.MANIFEST)
    if not os.path.exists(manifest):
        return Check(name, True, "no lib/taskq/MANIFEST (not an upload of a bundle): not checked", "")
    return Check(name, True, "lib/ holds release %s" % _manifest_release(manifest), "")


def _manifest_release(path):
    from . import release

    with open(path, encoding="utf-8") as handle:
        return release.Manifest.parse(handle.read()).release


def environment_checks(root=PROJECT_ROOT, path=None):
    """What the host must offer before installing; each failing Check says how to fix it."""
    path = path or config_path()
    checks = []
    version = "%d.%d.%d" % sys.version_info[:3]
    if sys.version_info[:2] >= MIN_PYTHON:
        checks.append(Check("Python 3.8 or newer", True, "Python %s" % version, ""))
    else:
        checks.append(Check("Python 3.8 or newer", False, "Python %s" % version,
                            "Ask your host for Python 3.8 or newer, then change the first line of "
                            "install.py and cgi-bin/api.py to point at it."))
    checks.append(_module_check("pymysql", "PyMySQL", root))
    checks.append(_module_check("jsonschema", "jsonschema", root))
    checks.append(bytecode_check(root))
    checks.append(release_check(root))

    api = os.path.join(root, "cgi-bin", "api.py")
    if not os.path.isfile(api):
        checks.append(Check("cgi-bin/api.py executable", False, "the file is missing",
                            "Upload the cgi-bin folder with api.py inside it."))
    else:
        with open(api, "rb") as handle:
            first = handle.readline()
        if first.endswith(b"\r\n"):
            checks.append(Check("cgi-bin/api.py executable", False,
                                "its lines end in Windows line endings (CRLF)",
                                "Upload cgi-bin/api.py again in binary transfer mode (in FileZilla: "
                                "Transfer > Transfer type > Binary); CRLF line endings make Apache "
                                "answer 500."))
        elif not os.access(api, os.X_OK):
            checks.append(Check("cgi-bin/api.py executable", False, "the file may not be executed",
                                "Set the permissions of cgi-bin/api.py to 755 (in FileZilla: right "
                                "click the file > File permissions > 755)."))
        else:
            checks.append(Check("cgi-bin/api.py executable", True, "mode %o" % (os.stat(api).st_mode & 0o777), ""))

    checks.append(config_check(path, root))
    checks.append(sqlite_folder_check(root))
    missing = [name for name in (".htaccess", os.path.join("cgi-bin", ".htaccess"))
               if not os.path.isfile(os.path.join(root, name))]
    if missing:
        checks.append(Check(".htaccess present", False, "missing: %s" % ", ".join(missing),
                            "Upload the .htaccess files too. FTP clients hide files whose name starts "
                            "with a dot: turn on 'show hidden files' (in FileZilla: Server > Force "
                            "showing hidden files). Without them config.ini could be read from the web."))
    else:
        checks.append(Check(".htaccess present", True, ".htaccess and cgi-bin/.htaccess", ""))
    checks.extend(shebang_checks(root))
    return checks


def web_user():
    """The name of the user this script runs as (www-data on many shared hosts)."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "uid %d" % os.geteuid()


def config_writable(path):
    """Whether this process should write config.ini itself.

    Only when it runs as the owner of the config folder (suexec-like hosts,
    a shell): then mode 600 leaves the file to the FTP account alone. A
    script running as another user (www-data) in a folder it may write (777,
    group-writable) would leave a file its owner cannot read or edit over
    FTP, so there the wizard shows the text to upload instead.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        owner = os.stat(folder).st_uid
    except OSError:
        return False
    if owner != os.geteuid() or not os.access(folder, os.W_OK | os.X_OK):
        return False
    return not os.path.exists(path) or os.access(path, os.W_OK)


def config_check(path, root):
    folder = os.path.dirname(os.path.abspath(path))
    name = "Config folder writable"
    if not os.path.isdir(folder):
        return Check(name, False, "%s does not exist" % _shown(folder, root),
                     "Create that folder, or set TASKQ_CONFIG to a writable path outside the web root.")
    if config_writable(path):
        return Check(name, True, "config.ini goes in %s" % _shown(folder, root), "")
    return Check(name, False, "scripts run as %s, which does not own %s: the installer will not "
                 "write config.ini there" % (web_user(), _shown(folder, root)),
                 "Nothing to change (no 777 needed): at the end the installer shows config.ini "
                 "and a download button; you upload that file over FTP and it checks that it works.",
                 required=False)


def sqlite_folder_check(root):
    """SQLite needs a folder the web server user may write; MySQL/MariaDB needs none."""
    folder = os.path.join(root, "data")
    name = "SQLite: data/ writable"
    if os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK):
        return Check(name, True, "SQLite can keep its file in data/", "", required=False)
    return Check(name, False, "the web server user (%s) cannot write data/: SQLite needs data/ "
                 "writable by it; MySQL/MariaDB needs no writable folder" % web_user(),
                 "Choose MySQL/MariaDB (nothing to change), or for SQLite make data/ writable for "
                 "%s (ask your host, or set data/ alone to 777; data/ is denied to the web)."
                 % web_user(), required=False)


def _interpreter(first_line, path_env):
    """The interpreter a `#!` line runs, resolved like the kernel and env(1) do, or None."""
    import shutil

    words = first_line[2:].decode("utf-8", "replace").split() if first_line.startswith(b"#!") else []
    if not words:
        return None
    if os.path.basename(words[0]) == "env" and len(words) > 1:
        found = shutil.which(words[1], path=path_env)
        return os.path.realpath(found) if found else None
    return os.path.realpath(words[0])


def shebang_checks(root):
    """Do install.py and cgi-bin/api.py name the same Python as the one running here?

    On a host whose python3 is too old the owner edits both first lines; an
    upgrade upload puts the default back, which this says in words.
    """
    lines = {}
    for rel in ("install.py", os.path.join("cgi-bin", "api.py")):
        try:
            with open(os.path.join(root, rel), "rb") as handle:
                lines[rel] = handle.readline().rstrip(b"\r\n")
        except OSError:
            return []
    path_env = os.environ.get("PATH", os.defpath)
    here = os.path.realpath(sys.executable)
    api_rel = os.path.join("cgi-bin", "api.py")
    api_runs = _interpreter(lines[api_rel], path_env)
    name = "First lines name this Python"
    if api_runs is None or api_runs == here:
        if lines["install.py"] != lines[api_rel]:
            return [Check(name, False, "install.py starts with %s, cgi-bin/api.py with %s"
                          % (lines["install.py"].decode("utf-8", "replace"),
                             lines[api_rel].decode("utf-8", "replace")),
                          "Give both files the same first line; an upgrade upload replaces both "
                          "with %s." % DEFAULT_SHEBANG.decode(), required=False)]
        return [Check(name, True, "%s (%s)" % (lines[api_rel].decode("utf-8", "replace"), here), "")]
    return [Check(name, False, "this page runs %s, but cgi-bin/api.py's first line %s runs %s"
                  % (here, lines[api_rel].decode("utf-8", "replace"), api_runs),
                  "Change the first line of cgi-bin/api.py to #!%s (as install.py's). Uploading a "
                  "new taskq puts %s back in both files: change them again after every upgrade "
                  "(docs/deploy.md, Upgrading)." % (here, DEFAULT_SHEBANG.decode()), required=False)]


def _shown(folder, root):
    """A folder as a person recognises it: relative to the project when inside it."""
    folder = os.path.abspath(folder)
    if folder == root:
        return "the taskq folder"
    if folder.startswith(root + os.sep):
        return os.path.relpath(folder, root) + "/"
    return folder


# -- settings ----------------------------------------------------------------
def validate_settings(values):
    """Normalised database settings from form or command-line values.

    Raises InstallError naming the first bad field.
    """
    get = lambda key: ("" if values.get(key) is None else str(values.get(key)))  # noqa: E731
    backend = get("backend").strip().lower() or "sqlite"
    if backend not in config_module.BACKENDS:
        raise InstallError("Choose MySQL/MariaDB or SQLite as the database.", "backend")
    for key in DB_KEYS:
        if re.search(r"[\x00-\x1f\x7f]", get(key)):
            raise InstallError("The %s must not contain line breaks or control characters." % _LABELS[key], key)
    settings = {"backend": backend}
    if backend == "sqlite":
        settings["sqlite_path"] = get("sqlite_path").strip()
        return settings
    settings["unix_socket"] = get("unix_socket").strip()
    settings["host"] = get("host").strip() or ("localhost" if settings["unix_socket"] else "")
    if not settings["host"]:
        raise InstallError("Enter the database host (on most shared hosts: localhost).", "host")
    if re.search(r"\s", settings["host"]):
        raise InstallError("The database host must not contain spaces.", "host")
    port = get("port").strip() or "3306"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InstallError("The port must be a number between 1 and 65535 (usually 3306).", "port")
    settings["port"] = int(port)
    settings["name"] = get("name").strip()
    if not settings["name"]:
        raise InstallError("Enter the name of the database (create it first in your hosting control panel).", "name")
    if len(settings["name"]) > 64:
        raise InstallError("A database name has at most 64 characters.", "name")
    settings["user"] = get("user").strip()
    if not settings["user"]:
        raise InstallError("Enter the database user name.", "user")
    password = get("password")
    if password != password.strip():
        raise InstallError("The password must not start or end with a space: config.ini cannot keep it.", "password")
    settings["password"] = password
    return settings


_LABELS = {"backend": "database type", "host": "host", "port": "port", "name": "database name",
           "user": "user name", "password": "password", "unix_socket": "socket path",
           "sqlite_path": "SQLite file path"}


def settings_from_config(cfg):
    """The database settings a Config holds, as validate_settings returns them."""
    db = cfg.database
    if db["backend"] == "sqlite":
        return {"backend": "sqlite", "sqlite_path": db["sqlite_path"]}
    return {key: db[key] for key in DB_KEYS if key != "sqlite_path"}


def new_api_key():
    """A random key that never starts with "-" (a shell option to every command that prints it)."""
    while True:
        key = secrets.token_urlsafe(32)
        if not key.startswith("-"):
            return key


# -- config.ini ----------------------------------------------------------------
def render_config(settings, api_key, existing_text=""):
    """config.ini text: the new [database] and api_key, other keys kept from `existing_text`."""
    kept = configparser.ConfigParser(interpolation=None)
    if existing_text:
        kept.read_string(existing_text)
    values = collections.OrderedDict((section, collections.OrderedDict()) for section in DEFAULTS)
    for section in kept.sections():
        if section in values and section != "database":
            for key, raw in kept.items(section):
                if key in DEFAULTS[section]:
                    values[section][key] = raw
    for key in DB_KEYS:
        if key in settings and settings[key] != "" and key in DEFAULTS["database"]:
            values["database"][key] = str(settings[key])
    values["api"]["api_key"] = api_key
    lines = ["; taskq configuration, written by install.py. Every key is described in",
             "; config.example.ini; a key left out takes its default. Keep this file",
             "; private (mode 600): it holds the database password and the API key.", ""]
    for section, keys in values.items():
        if not keys:
            continue
        lines.append("[%s]" % section)
        lines.extend("%s = %s" % (key, value) for key, value in keys.items())
        lines.append("")
    return "\n".join(lines)


def write_private(path, text):
    """Write `text` to `path` with mode 600, atomically (a reader sees old or new, whole)."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, ".%s.%s.tmp" % (os.path.basename(path), secrets.token_hex(6)))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_secret(path):
    """The wizard's CSRF secret, kept beside config.ini (mode 600, a dotfile); made on first use.

    Where the wizard may not write there (config_writable), it is derived from
    install.py's device, inode and change time: stable until install.py is
    uploaded again, and unknown to anyone who cannot list this host's files.
    """
    secret_path = os.path.join(os.path.dirname(os.path.abspath(path)), SECRET_FILE_NAME)
    if not config_writable(path) and not os.path.exists(secret_path):
        import hashlib

        st = os.stat(os.path.join(PROJECT_ROOT, "install.py"))
        seed = "taskq-install:%d:%d:%d:%s" % (st.st_dev, st.st_ino, st.st_ctime_ns, PROJECT_ROOT)
        return hashlib.sha256(seed.encode("utf-8")).hexdigest().encode("ascii")
    try:
        with open(secret_path, encoding="ascii") as handle:
            secret = handle.read().strip()
        if len(secret) >= 32:
            return secret.encode("ascii")
    except FileNotFoundError:
        pass
    secret = secrets.token_hex(32)
    write_private(secret_path, secret + "\n")
    return secret.encode("ascii")


# -- the database ------------------------------------------------------------
def config_for(settings, api_key="", base_dir=PROJECT_ROOT):
    """A parsed Config for these settings (so every value passes config.py's checks)."""
    return config_module.parse(render_config(settings, api_key), base_dir=base_dir)


def connect_mysql(cfg):
    """A PyMySQL connection for a Config, or InstallError in plain words.

    It connects as the store does (store.mysql.connect): `localhost` is the
    server's Unix socket, wherever MySQL, MariaDB or PHP would look for it,
    then TCP to 127.0.0.1.
    """
    import pymysql

    from .store.mysql import connect

    db = cfg.database
    kwargs = dict(charset="utf8mb4", autocommit=True)
    if cfg.mysql_ssl_enabled():
        if db["ssl_ca"]:
            kwargs["ssl"] = {"ca": db["ssl_ca"]}
        else:  # as the store does: the system's certificate authorities
            import ssl

            kwargs["ssl"] = ssl.create_default_context()
    try:
        return connect(db, **kwargs)
    except pymysql.err.MySQLError as exc:
        message = explain_mysql_error(exc, db)
        if _error_code(exc) == 1045 and _anonymous_account_answers(db, exc):
            message = _ANONYMOUS % {"user": db["user"]}
        tried = getattr(exc, "tried", ())
        if len(tried) > 1:
            message += " Tried, in order: %s." % "; ".join("%s (%s)" % pair for pair in tried)
        raise InstallError(message, _blamed_field(exc)) from None
    except (OSError, ValueError) as exc:
        raise InstallError("Cannot connect to the database: %s" % exc) from None


_ANONYMOUS = (
    "Access denied for %(user)r. This server has an anonymous account (''@localhost, a user with "
    "an empty name): unless %(user)r@'localhost' itself exists, that account matches connections "
    "from this machine before %(user)r@'%%' does, and the server checks your password against it. "
    "Remove it (DROP USER ''@'localhost'; mysql_secure_installation does this) or create the user "
    "for localhost too (CREATE USER %(user)r@'localhost' IDENTIFIED BY '...', with the same "
    "privileges); if %(user)r@'localhost' exists, the password is wrong.")


def _anonymous_account_answers(db, refused):
    """Whether an empty user name logs in where `db["user"]` was refused: an
    anonymous account shadows the user (the server picks the account with the
    most specific host first, and 'localhost' beats '%')."""
    import pymysql

    from .store.mysql import connection_routes

    labels = [label for label, _ in getattr(refused, "tried", ())]
    for label, route in connection_routes(db):
        if labels and label != labels[-1]:
            continue  # the route the server answered on
        # PyMySQL replaces an empty user name by the system user's: set it after
        conn = pymysql.connect(user="anonymous", password="", defer_connect=True,
                               connect_timeout=db["connect_timeout"], **route)
        conn.user = ""
        try:
            conn.connect()
        except (pymysql.err.MySQLError, OSError):
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT CURRENT_USER()")
                return cur.fetchone()[0].startswith("@")
        finally:
            conn.close()
    return False


def _error_code(exc):
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _blamed_field(exc):
    return {1045: "password", 1698: "user", 1044: "name", 1049: "name", 2003: "host", 2005: "host",
            2002: "unix_socket"}.get(_error_code(exc))


_NAME_NOT_FOUND = re.compile(r"Errno -[235]\b|Name or service not known|nodename nor servname|"
                             r"getaddrinfo|Temporary failure in name resolution", re.I)


_LOOPBACK_TCP = re.compile(r"@'(127\.0\.0\.1|::1|::ffff:127\.0\.0\.1)'")


def explain_mysql_error(exc, db):
    """One sentence a person can act on, for a PyMySQL error."""
    code = _error_code(exc)
    text = str(exc.args[1]) if len(getattr(exc, "args", ())) > 1 else str(exc)
    where = "%s:%s" % (db["host"], db["port"])
    loopback = _LOOPBACK_TCP.search(text) if code == 1045 else None
    if loopback:
        return ("Access denied for %(user)r coming from %(ip)s over TCP. If the password is right, "
                "the account exists only as %(user)r@'localhost': a server with skip-name-resolve "
                "does not count 127.0.0.1 as localhost, so that account works through the server's "
                "Unix socket only. Use host localhost with the socket (give its path as the socket "
                "if taskq does not find it), or ask your host for the user %(user)r@'127.0.0.1' "
                "with the same password and privileges. Otherwise check the password."
                % {"user": db["user"], "ip": loopback.group(1)})
    if code == 1045:
        return ("Access denied: the database server refused the user name %r with this password. "
                "Check both in your hosting control panel (MySQL databases) and type the password "
                "again." % db["user"])
    if code == 1698:
        return ("Access denied: the database account %r on this machine logs in by Unix user, not "
                "by password (the unix_socket or auth_socket plugin; MariaDB and Ubuntu set up root "
                "this way), so the server only lets in the system user of the same name. Make a "
                "separate database user with a password for taskq, e.g. CREATE USER "
                "'taskq'@'localhost' IDENTIFIED BY '...'; GRANT ALL ON %s.* TO 'taskq'@'localhost', "
                "and enter that user here." % (db["user"], db["name"] or "taskq"))
    if code == 1044:
        return ("Access denied to the database %r for the user %r. In your hosting control panel, "
                "give this user all privileges on this database." % (db["name"], db["user"]))
    if code == 1049:
        return ("Unknown database: no database named %r exists on %s. Create it in your hosting "
                "control panel (or with CREATE DATABASE), or correct the name." % (db["name"], where))
    if code in (1142, 1143, 1227):
        return ("The database user %r may not create or change tables. Give it all privileges on "
                "the database %r (CREATE, ALTER, INDEX, REFERENCES, INSERT, UPDATE, DELETE, SELECT)."
                % (db["user"], db["name"]))
    if code == 2005 or (code == 2003 and _NAME_NOT_FOUND.search(text)):
        return ("Host not found: the name %r does not resolve to any server. Check the host name; "
                "on most shared hosts it is localhost." % db["host"])
    if db.get("unix_socket") and code in (2002, 2003):
        return ("Cannot connect through the socket %s: the file does not exist or refuses the "
                "connection. Check the socket path your host gives, or leave it empty to use host "
                "and port." % db["unix_socket"])
    from .store.mysql import DEFAULT_PORT

    if code in (2002, 2003) and db["host"] == "localhost" and db["port"] == DEFAULT_PORT:
        return ("No database server answers on this machine: neither on a Unix socket where MySQL, "
                "MariaDB and PHP look for one nor at 127.0.0.1:%s. Check that the server is running; "
                "if its socket is elsewhere, give its path as the socket (unix_socket), or give the "
                "host your control panel names." % db["port"])
    if code in (2002, 2003):
        return ("Host unreachable: no database server answers at %s. Check the host and port (on "
                "most shared hosts: localhost and 3306) and that the server is running." % where)
    if code == 2013:
        return ("The database server at %s closed the connection while connecting. If it needs "
                "encrypted connections, set ssl = on in config.ini; otherwise try again." % where)
    return "The database server answered: %s" % text


def prepare_mysql(cfg):
    """Test the connection and bring the schema up to date; returns (from_version, applied)."""
    import pymysql

    from . import migrate

    conn = connect_mysql(cfg)
    try:
        before = migrate.current_version(conn)
        applied = migrate.migrate(conn)
    except pymysql.err.MySQLError as exc:
        raise InstallError(explain_mysql_error(exc, cfg.database), _blamed_field(exc)) from None
    finally:
        conn.close()
    recount(cfg)
    return before, applied


def recount(cfg):
    """Heal the maintained counters (the upgrade step's last act): an older
    release that ran against this database may have let them drift."""
    from .store import open_store

    store = open_store(cfg)
    try:
        return store.recount()
    finally:
        store.close()


def prepare_sqlite(cfg):
    """Open the SQLite store once: it creates its schema itself."""
    from .store.sqlite import SQLiteStore

    path = cfg.database["sqlite_path"]
    try:
        SQLiteStore(cfg).close()  # an older file is upgraded (and recounted) on opening
    except SchemaNewer as exc:
        raise InstallError("%s (%s)." % (exc.message, path), "sqlite_path") from None
    except TaskqError as exc:
        raise InstallError("%s at %s: make its folder writable for the web server." % (exc.message, path),
                           "sqlite_path") from None


def prepare_database(cfg):
    """Create or upgrade the schema of the database `cfg` names, on either backend."""
    if cfg.backend == "mysql":
        prepare_mysql(cfg)
    else:
        prepare_sqlite(cfg)


def _parsed(settings, path, api_key, existing):
    try:
        text = render_config(settings, api_key, existing)
    except configparser.Error:
        raise InstallError("The existing config.ini cannot be read: fix it or delete it, then "
                           "install again.") from None
    return text, config_module.parse(text, path, os.path.dirname(os.path.abspath(path)))


def _existing_text(path):
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def existing_keys(settings, path):
    """The API keys already in the database these settings name (list_keys rows; [] for none).

    It connects as the install will (so a bad password is reported here); a
    database without taskq's tables, or a SQLite file not made yet, holds none.
    """
    _, cfg = _parsed(settings, path, "probe", _existing_text(path))
    if cfg.backend == "sqlite":
        if not os.path.exists(cfg.database["sqlite_path"]):
            return []
        from .store.sqlite import SQLiteStore

        try:
            store = SQLiteStore(cfg)
        except TaskqError:
            return []
        try:
            return store.list_keys()
        finally:
            store.close()
    import pymysql

    conn = connect_mysql(cfg)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES LIKE 'api_keys'")
            if cur.fetchone() is None:
                return []
    except pymysql.err.MySQLError as exc:
        raise InstallError(explain_mysql_error(exc, cfg.database), _blamed_field(exc)) from None
    finally:
        conn.close()
    from .store import open_store

    store = open_store(cfg, check_schema=False)  # an older schema is upgraded only after this
    try:
        return store.list_keys()
    finally:
        store.close()


def prepare_install(settings, path, api_key=None, keep_keys=None):
    """Test the database, create or upgrade its schema, revoke the keys not kept;
    returns (api_key, config.ini text, names of the revoked keys).

    `api_key` None makes a new key. `keep_keys` None keeps every key already in
    the database; otherwise the names to keep (the others are revoked). Keys of
    config.ini outside [database] and api_key are kept. Nothing is written here.
    """
    api_key = api_key or new_api_key()
    text, cfg = _parsed(settings, path, api_key, _existing_text(path))
    prepare_database(cfg)
    revoked = []
    if keep_keys is not None:
        from .store import open_store

        store = open_store(cfg)
        try:
            for row in store.list_keys():
                if row["name"] not in keep_keys and store.revoke_key(row["name"]):
                    revoked.append(row["name"])
        finally:
            store.close()
    return api_key, text, revoked


def write_config(path, text):
    """Write config.ini (mode 600), or InstallError saying where it cannot."""
    try:
        write_private(path, text)
    except OSError as exc:
        raise InstallError("config.ini cannot be written in %s (%s): make that folder writable for "
                           "the web server, or set TASKQ_CONFIG to a writable place."
                           % (os.path.dirname(os.path.abspath(path)), exc.strerror)) from None


def install(settings, path, api_key=None, keep_keys=None):
    """prepare_install, then write config.ini (mode 600); returns the API key."""
    api_key, text, _ = prepare_install(settings, path, api_key, keep_keys)
    write_config(path, text)
    return api_key


def verify_uploaded(path):
    """The config.ini the owner uploaded: does it load, reach its database, carry a key?

    Brings the schema up to date as the install would; returns the Config.
    """
    cfg = config_module.load(path)
    if not cfg.api["api_key"]:
        raise InstallError("The uploaded config.ini has no api_key: upload the file the installer showed.")
    prepare_database(cfg)
    return cfg


def _configured_store(path):
    from .store import open_store

    cfg = config_module.load(path)
    return cfg, open_store(cfg)


def key_command(path, create=None, role=None, revoke=None):
    """`install.py --create-key NAME --role ROLE`, `--revoke-key NAME`, `--list-keys`:
    (lines for standard output, a sentence for standard error)."""
    from . import admin

    cfg, store = _configured_store(path)
    try:
        if create:
            view = admin.make_key(store, create, role)
            return [view["key"]], ("API key %r (%s) created; it is printed once, below:"
                                   % (view["name"], view["role"]))
        if revoke:
            admin.key_name(revoke, "--revoke-key")
            if not store.revoke_key(revoke):
                raise InstallError("No API key is named %r" % revoke)
            return [], "API key %r revoked." % revoke
        rows = store.list_keys()
        lines = ["%-24s %-10s %-13s %-21s %s" % ("NAME", "ROLE", "PREFIX", "CREATED", "LAST USED")]
        lines += ["%-24s %-10s %-13s %-21s %s" % (r["name"], r["role"], r["prefix"], r["created_at"],
                                                   r["last_used_at"] or "never") for r in rows]
        return lines, "%d API key(s); config.ini's api_key is an admin key besides these." % len(rows)
    finally:
        store.close()


def purge_command(path):
    """`install.py --purge`: delete everything older than config.ini's retention days."""
    from . import admin

    cfg, store = _configured_store(path)
    try:
        totals, _ = admin.purge_until(store, cfg, max_rows=10 ** 12)
    finally:
        store.close()
    return "Purged %d row(s): %s." % (sum(totals.values()), ", ".join(
        "%s %d" % item for item in sorted(totals.items())) or "nothing is old enough")


def migrate_configured(path):
    """`install.py --migrate`: bring the configured database up to date; returns a sentence."""
    cfg = config_module.load(path)
    if cfg.backend == "sqlite":
        prepare_sqlite(cfg)
        return "SQLite creates and upgrades its schema itself: %s is ready." % cfg.database["sqlite_path"]
    before, applied = prepare_mysql(cfg)
    if not applied:
        return "The database schema is up to date (version %d)." % before
    return "Applied migration%s %s: the schema is now at version %d." % (
        "" if len(applied) == 1 else "s", ", ".join("%04d" % n for n in applied), applied[-1])
