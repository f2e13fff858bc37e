"""Reading config.ini: pure parsing plus one file read, no other I/O.

Every key has a default, so a missing file, or a file holding only some
sections, still gives a working service on the embedded SQLite store.
"""

import os

from .errors import ConfigError

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_CONFIG_PATH = os.path.join(PROJECT_ROOT, "config.ini")
DEFAULT_SQLITE_PATH = os.path.join(PROJECT_ROOT, "data", "taskq.sqlite3")

BACKENDS = ("sqlite", "mysql")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
DAY_SECONDS = 86400
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": DAY_SECONDS}

# section -> key -> (kind, default). config.example.ini documents the same
# keys; tests/unit/test_docs.py keeps the two in step.
DEFAULTS = {
    "database": {
        "backend": ("choice:sqlite,mysql", "sqlite"),
        "host": ("str", "localhost"),
        "port": ("int:1:65535", 3306),
        "name": ("str", "taskq"),
        "user": ("str", "taskq"),
        "password": ("str", ""),
        "unix_socket": ("str", ""),
        "ssl": ("choice:auto,on,off", "auto"),
        "ssl_ca": ("str", ""),
        "connect_timeout": ("int:1:300", 10),
        "read_timeout": ("int:1:3600", 15),
        "write_timeout": ("int:1:3600", 15),
        "skip_locked": ("choice:auto,on,off", "auto"),
        "cluster": ("choice:auto,off,galera", "auto"),
        "sqlite_path": ("str", DEFAULT_SQLITE_PATH),
        "busy_timeout": ("int:0:600000", 10000),
        "sqlite_max_bytes": ("int:0:281474976710656", 0),
    },
    "queue": {
        "claim_timeout": ("int:1:31536000", 300),
        "max_attempts": ("int:1:1000", 3),
        "max_lease_seconds": ("int:1:31536000", 86400),
        "history": ("bool", True),
        "schema_validation": ("bool", True),
    },
    "api": {
        "api_key": ("str", ""),
        "max_body_bytes": ("int:1024:1073741824", 1048576),
        "cors_origins": ("list", ()),
    },
    # *_days are durations held in seconds: "30" is days (as before units),
    # "12h", "90m", "3600s", "30d" say their unit
    "retention": {
        "completed_days": ("duration:36500", 30 * DAY_SECONDS),
        "failed_days": ("duration:36500", 90 * DAY_SECONDS),
        "cancelled_days": ("duration:36500", 30 * DAY_SECONDS),
        "history_days": ("duration:36500", 30 * DAY_SECONDS),
        "gc_probability": ("float:0:1", 0.01),
        "gc_batch": ("int:1:10000", 50),
        "gc_time_ms": ("int:0:10000", 50),
    },
    "log": {
        "file": ("str", ""),
        "level": ("choice:debug,info,warning,error", "warning"),
    },
}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class Config:
    """Parsed settings: `config.section["key"]`, every key present."""

    def __init__(self, values, path=None):
        self.path = path
        # False only when load() found no config file: a fresh upload, locked by app.py
        self.installed = True
        self.database = values["database"]
        self.queue = values["queue"]
        self.api = values["api"]
        self.log = values["log"]
        self.retention = values["retention"]

    def retention_seconds(self):
        """{status: seconds} for the finished statuses retention deletes (0 = keep forever)."""
        r = self.retention
        return {"completed": r["completed_days"], "failed": r["failed_days"],
                "cancelled": r["cancelled_days"]}

    @property
    def backend(self):
        return self.database["backend"]

    def mysql_ssl_enabled(self):
        """TLS only costs time on localhost and sockets, so 'auto' skips it there."""
        db = self.database
        if db["ssl"] == "auto":
            return not (db["unix_socket"] or db["host"] in LOCAL_HOSTS)
        return db["ssl"] == "on"


def convert(section, key, kind, raw):
    """Turn one raw INI string into its typed value, or raise ConfigError."""
    raw = raw.strip()
    where = "[%s] %s" % (section, key)
    if kind == "str":
        return raw
    if kind == "bool":
        low = raw.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError("Invalid configuration: %s must be true or false, not %r" % (where, raw))
    if kind == "list":
        return tuple(item.strip() for item in raw.replace("\n", ",").split(",") if item.strip())
    if kind.startswith("int:"):
        _, low, high = kind.split(":")
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError("Invalid configuration: %s must be a whole number, not %r" % (where, raw)) from None
        if not int(low) <= value <= int(high):
            raise ConfigError("Invalid configuration: %s must be between %s and %s, not %d" % (where, low, high, value))
        return value
    if kind.startswith("duration:"):
        return duration(where, raw, int(kind.split(":")[1]))
    if kind.startswith("float:"):
        _, low, high = kind.split(":")
        try:
            number = float(raw)
        except ValueError:
            raise ConfigError("Invalid configuration: %s must be a number, not %r" % (where, raw)) from None
        if not float(low) <= number <= float(high):
            raise ConfigError("Invalid configuration: %s must be between %s and %s, not %s"
                              % (where, low, high, raw))
        return number
    if kind.startswith("choice:"):
        choices = kind[len("choice:"):].split(",")
        low = raw.lower()
        if low not in choices:
            raise ConfigError("Invalid configuration: %s must be one of %s, not %r"
                              % (where, ", ".join(choices), raw))
        return low
    raise AssertionError(kind)


def duration(where, raw, max_days):
    """Seconds from "30" (days: what these keys always meant), "30d", "12h", "90m" or "600s"."""
    unit = raw[-1:].lower()
    number = raw[:-1] if unit in DURATION_UNITS else raw
    try:
        value = int(number.strip())
    except ValueError:
        raise ConfigError("Invalid configuration: %s must be a whole number of days, or one "
                          "with a unit (30d, 12h, 90m, 600s), not %r" % (where, raw)) from None
    seconds = value * DURATION_UNITS.get(unit, DAY_SECONDS)
    if not 0 <= seconds <= max_days * DAY_SECONDS:
        raise ConfigError("Invalid configuration: %s must be between 0 and %d days, not %r"
                          % (where, max_days, raw))
    return seconds


def simple_ini(text):
    """[(section, [(key, value), ...]), ...] for a plainly written INI file, else None.

    Every request reads the config, and importing configparser costs a CGI
    process about 3 ms, so the common file (section headers, `key = value`
    lines, comments, blank lines) is read here. Whatever this does not fully
    understand (indented or continuation lines, [DEFAULT], repeated sections
    or keys, a line without a delimiter) returns None and goes to
    configparser, so both give the same result and the same errors."""
    sections = []
    seen = set()
    keys = None
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if line[0].isspace():
            return None
        if stripped[0] == "[":
            name = stripped[1:-1]
            if (stripped[-1] != "]" or not name or "[" in name or "]" in name
                    or name == "DEFAULT" or name in seen):
                return None
            seen.add(name)
            keys = []
            sections.append((name, keys))
            continue
        if keys is None:
            return None
        cut = min((i for i in (stripped.find("="), stripped.find(":")) if i >= 0), default=-1)
        key = stripped[:cut].rstrip().lower()
        if cut < 0 or not key or any(key == k for k, _ in keys):
            return None
        keys.append((key, stripped[cut + 1:].strip()))
    return sections


def _configparser_sections(text, path):
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=path or "<config>")
    except configparser.Error as exc:
        raise ConfigError("Invalid configuration file: %s" % _describe(exc, configparser)) from None
    return [(section, parser.items(section)) for section in parser.sections()]


def _describe(exc, configparser):
    """What is wrong and on which line, never the line itself (it may hold a
    password) nor the file's path: this message is sent to HTTP clients."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return "line %d comes before any [section] header" % exc.lineno
    if isinstance(exc, configparser.ParsingError):
        return "cannot parse line %s (expected key = value)" % ", ".join(str(n) for n, _ in exc.errors)
    if isinstance(exc, configparser.DuplicateSectionError):
        return "section [%s] appears twice (line %s)" % (exc.section, exc.lineno)
    if isinstance(exc, configparser.DuplicateOptionError):
        return "key %r appears twice in [%s] (line %s)" % (exc.option, exc.section, exc.lineno)
    return "not a valid INI file (%s)" % type(exc).__name__


def parse(text, path=None, base_dir=None):
    """Parse INI text into a Config; unknown sections and keys are errors."""
    sections = simple_ini(text)
    if sections is None:
        sections = _configparser_sections(text, path)
    values = {section: {key: default for key, (_, default) in keys.items()}
              for section, keys in DEFAULTS.items()}
    for section, items in sections:
        if section not in DEFAULTS:
            raise ConfigError("Invalid configuration: unknown section [%s]" % section)
        for key, raw in items:
            if key not in DEFAULTS[section]:
                raise ConfigError("Invalid configuration: unknown key %r in [%s]" % (key, section))
            values[section][key] = convert(section, key, DEFAULTS[section][key][0], raw)
    sqlite_path = values["database"]["sqlite_path"]
    if base_dir and sqlite_path and not os.path.isabs(sqlite_path):
        values["database"]["sqlite_path"] = os.path.join(base_dir, sqlite_path)
    return Config(values, path)


def load(path=None):
    """Read the config file named by TASKQ_CONFIG or beside cgi-bin/; defaults if absent.

    With no file the defaults come back marked `installed = False`: the web app
    then answers 503 "not installed" (only ./serve opts into the open default)."""
    path = path or os.environ.get("TASKQ_CONFIG") or DEFAULT_CONFIG_PATH
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        if os.environ.get("TASKQ_CONFIG"):
            raise ConfigError("Configuration file named by TASKQ_CONFIG does not exist") from None
        config = parse("", None, PROJECT_ROOT)
        config.installed = False
        return config
    except OSError as exc:
        raise ConfigError("Configuration file cannot be read: %s" % exc.strerror) from None
    return parse(text, path, os.path.dirname(os.path.abspath(path)))
