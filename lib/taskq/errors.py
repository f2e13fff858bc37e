"""One exception hierarchy; each class carries its HTTP status.

`app.py` is the only place that turns these into responses. Anything that is
not a `TaskqError` becomes a generic 500 there and a log line.
"""


class TaskqError(Exception):
    status = 500
    message = "Internal server error"

    def __init__(self, message=None, details=None, summary=None):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        # the answer's `message` where TaskManager (PHP) words the case its own way;
        # `error` keeps taskq's precise text
        self.summary = summary

    def headers(self):
        return []


class BadRequest(TaskqError):
    status = 400
    message = "Bad request"


class ValidationFailed(BadRequest):
    message = "Parameter validation failed"


class Unauthorized(TaskqError):
    status = 401
    message = "Missing or invalid API key"

    def headers(self):  # RFC 9110: a 401 names the scheme it wants
        return [("WWW-Authenticate", 'Bearer realm="taskq"')]


class Forbidden(TaskqError):
    status = 403
    message = "Forbidden"


class NotFound(TaskqError):
    status = 404
    message = "Not found"


class MethodNotAllowed(TaskqError):
    status = 405
    message = "Method not allowed"

    def __init__(self, allow, message=None):
        super().__init__(message)
        self.allow = sorted(allow)

    def headers(self):
        return [("Allow", ", ".join(self.allow))]


class Conflict(TaskqError):
    status = 409
    message = "Conflict"


class LengthRequired(TaskqError):
    status = 411
    message = "Length Required"


class PayloadTooLarge(TaskqError):
    status = 413
    message = "Request body too large"


class Unavailable(TaskqError):
    status = 503
    message = "Database unavailable"
    retry_after = 5

    def headers(self):
        return [("Retry-After", str(self.retry_after))]


class DiskFull(Unavailable):
    """The database has no room for the write; nothing of it was kept."""

    message = ("Database disk is full: nothing was written; free disk space on the "
               "server (or raise the database's size limit), then retry")
    retry_after = 30


class SchemaMissing(Unavailable):
    message = ("Database tables are missing: run the installer "
               "(install.py) or load schema.sql")


class SchemaPending(Unavailable):
    """The files are newer than the database: the upgrade step has not run yet.
    Every route says so (health too, so monitoring sees it) and changes nothing."""

    retry_after = 60

    def __init__(self, database, release, pending):
        from . import __version__

        names = ", ".join(pending) or "v%d" % release
        super().__init__(
            "Database schema v%d is older than this release (%s needs v%d): pending migration%s %s; "
            "run the upgrade: open install.py and press 'Upgrade the database schema', or run "
            "python3 install.py --migrate" % (database, __version__, release,
                                             "" if len(pending) == 1 else "s", names),
            {"status": "upgrade_pending", "schema": {"database": database, "release": release,
                                                     "pending": list(pending)}})


class SchemaNewer(Unavailable):
    """An older release uploaded over a database a newer one migrated: it would
    run old SQL against new tables (and let counters drift), so it refuses."""

    retry_after = 300

    def __init__(self, database, release, needs_release=None):
        upload = "upload release \u2265 %s" % needs_release if needs_release else \
            "upload the newer release again"
        super().__init__(
            "database schema v%d is newer than this release (v%d): %s" % (database, release, upload),
            {"status": "schema_newer", "schema": {"database": database, "release": release,
                                                  "needs_release": needs_release}})


class NotInstalled(Unavailable):
    """No config.ini yet: a fresh upload answers this until the wizard has run,
    so nobody can make keys, types or tasks on a site its owner has not set up."""

    message = ("taskq is not installed yet: open install.py in a browser (or run "
               "python3 install.py) to set it up")
    retry_after = 300


class ConfigError(TaskqError):
    """A config.ini that cannot be used; the message names the key."""

    status = 500
    message = "Invalid configuration"


class TooManyRequests(TaskqError):
    status = 429
    message = "Too many requests"

    def __init__(self, message=None, retry_after=60):
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self):
        return [("Retry-After", str(self.retry_after))]
