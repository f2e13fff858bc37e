"""A local development server: `python3 -m taskq.devserver` (or ./serve).

It serves the same WSGI application with wsgiref's reference server, one
thread per request. It is for trying taskq on your machine and for tests;
production runs the app under CGI, Passenger, gunicorn or mod_wsgi.
"""

import argparse
import signal
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    timeout = 30  # seconds a client may stall mid-request (a body shorter than announced)

    def log_message(self, format, *args):  # noqa: A002 - wsgiref's name
        if self.server.verbose:
            super().log_message(format, *args)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--config", help="config.ini to use (default: TASKQ_CONFIG or the project's)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)

    from .app import Application

    # local development: with no config file, the embedded SQLite default, open to all
    app = Application(config_path=args.config, allow_unconfigured=True)
    config = app.config  # fail now, with a clear message, on a bad config
    server = make_server(args.host, args.port, app, ThreadingWSGIServer, QuietHandler)
    server.verbose = not args.quiet
    where = config.database["sqlite_path"] if config.backend == "sqlite" else config.database["host"]
    print("taskq serving on http://%s:%d/ (backend: %s, %s)" % (args.host, server.server_port,
                                                                 config.backend, where), flush=True)
    if not config.installed:
        print("WARNING: no config.ini: this is the open local-development default; anyone who "
              "can reach this address may create, claim and steer tasks (no API key is needed). "
              "A deployed taskq without config.ini answers 503 until install.py has run.",
              flush=True)
    print("try: curl http://%s:%d/health" % (args.host, server.server_port), flush=True)
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        server.server_close()
    return 0


class _Stopped(Exception):
    """Raised by the SIGTERM handler to leave serve_forever cleanly."""


def _stop(signum, frame):
    raise _Stopped()


if __name__ == "__main__":
    sys.exit(main())
