"""Logging, imported only when there is something to log.

Under CGI, stderr lands in the web server's error log; `[log] file` sends
lines to a file of the operator's choosing instead.
"""

import logging

_configured = False


def logger(config):
    global _configured
    log = logging.getLogger("taskq")
    if not _configured:
        _configured = True
        path = config.log["file"] if config else ""
        handler = logging.FileHandler(path, encoding="utf-8") if path else logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s taskq[%(process)d] %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel((config.log["level"] if config else "warning").upper())
        log.propagate = False
    return log


def log_exception(config, environ, exc, traceback):
    where = "%s %s" % (environ.get("REQUEST_METHOD", "?"), environ.get("PATH_INFO", ""))
    if traceback:
        logger(config).error("unexpected error on %s", where, exc_info=exc)
    else:
        cause = exc.__cause__ or exc
        tried = getattr(cause, "tried", None)  # the ways a database connect was tried
        if tried and len(tried) > 1:
            cause = "%s; tried %s" % (cause, "; ".join("%s (%s)" % pair for pair in tried))
        logger(config).error("%s on %s: %s", type(exc).__name__, where, cause)
