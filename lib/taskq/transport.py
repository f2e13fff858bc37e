"""Reading the request body, and getting rid of what was not read.

Under Apache's mod_cgid the script's stdin and stdout are one Unix socket.
A script that exits with request bytes still unread in that socket makes the
kernel reset it, and Apache loses the answer the script already wrote (curl
exit 18 or 52, "AH00574 ... Connection reset by peer" in the error log). So
every answer whose body taskq did not read (401, 404, 405, 413, any early
error) first discards it: read when it is small, and when it is large stop
reading (shutdown of the socket's read side), empty what is queued, and let
Apache soak up the rest from the client, which it does by itself. mod_cgi
(pipes) needs none of this, and it costs nothing there.

`read_body` also handles what the CGI spec leaves to the script: a body sent
with `Transfer-Encoding: chunked` arrives dechunked and without
CONTENT_LENGTH, to be read to its end, and a body shorter than its declared
length must not run as if it were whole.
"""

from .errors import BadRequest, LengthRequired, PayloadTooLarge

CHUNK = 65536
# Unread bytes discarded by reading; beyond this a Unix socket's read side is shut.
DRAIN_MARGIN = 65536
_READ = "taskq.body_read"  # environ key: bytes of the body read so far
_EOF = "taskq.body_ended"  # environ key: the input ended (or timed out): nothing left to discard


def declared_length(environ):
    """CONTENT_LENGTH as an int (0 when absent); 400 when it is not a length."""
    raw = environ.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
    except ValueError:
        raise BadRequest("Invalid Content-Length header") from None
    if length < 0:
        raise BadRequest("Invalid Content-Length header")
    return length


def is_chunked(environ):
    return (not environ.get("CONTENT_LENGTH")
            and "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower())


def reads_to_end(environ):
    """True when wsgi.input ends where the body ends: CGI (the server closes
    the script's stdin after the body) and servers that say so
    (wsgi.input_terminated, as gunicorn and mod_wsgi do)."""
    return bool(environ.get("wsgi.input_terminated") or environ.get("wsgi.run_once"))


def check_size(environ, limit):
    """413 from the declared length, before a byte of the body is read; 411
    for a chunked body this server cannot find the end of."""
    if is_chunked(environ):
        if not reads_to_end(environ):
            raise LengthRequired("Length Required: send the body with a Content-Length header; "
                                 "this server cannot read a chunked request body")
        return
    if declared_length(environ) > limit:
        raise PayloadTooLarge("Request body exceeds %d bytes" % limit)


def read_body(environ, limit):
    """The whole body as bytes: 413 over `limit`, 400 when it ends before its
    Content-Length (a client that gave up must not have half a request run)."""
    stream = environ["wsgi.input"]
    if is_chunked(environ):
        check_size(environ, limit)
        raw = _read_upto(stream, limit + 1, environ)
        environ[_READ] = len(raw)
        if len(raw) > limit:
            raise PayloadTooLarge("Request body exceeds %d bytes" % limit)
        environ[_EOF] = True
        return raw
    length = declared_length(environ)
    if length > limit:
        raise PayloadTooLarge("Request body exceeds %d bytes" % limit)
    raw = _read_upto(stream, length, environ) if length else b""
    environ[_READ] = len(raw)
    if len(raw) < length:
        raise BadRequest("Request body ended after %d of the %d bytes its Content-Length "
                         "announced; nothing was done" % (len(raw), length))
    return raw


def _read_upto(stream, count, environ):
    """Up to `count` bytes; fewer when the input ends or times out (a dev
    server socket), which is noted in environ."""
    parts, got = [], 0
    while got < count:
        try:
            part = stream.read(min(CHUNK, count - got))
        except OSError:
            part = b""
        if not part:
            environ[_EOF] = True
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def discard_unread(environ, limit):
    """Get rid of the body bytes nobody read, so the answer reaches the client
    (see the module docstring). Never raises."""
    try:
        if environ.get(_EOF):
            return
        if is_chunked(environ):
            if not reads_to_end(environ):
                return
            remaining = None  # to the end, however long
        else:
            remaining = declared_length(environ) - environ.get(_READ, 0)
            if remaining <= 0:
                return
        stream = environ["wsgi.input"]
        if remaining is not None and remaining <= limit + DRAIN_MARGIN:
            while remaining > 0:
                part = stream.read(min(CHUNK, remaining))
                if not part:
                    return
                remaining -= len(part)
            return
        _shut_unix_socket(stream)
    except Exception:  # noqa: BLE001 - the answer matters more than the leftovers
        pass


def _shut_unix_socket(stream):
    """Stop Apache (mod_cgid) writing to us and empty what it already queued;
    it then reads the rest of the upload itself and delivers our answer. Over
    TCP or a pipe there is nothing to do: it would not help."""
    import os
    import stat

    fd = stream.fileno()
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        return
    import _socket

    sock = _socket.socket(fileno=os.dup(fd))
    try:
        if sock.family != _socket.AF_UNIX:
            return
        sock.shutdown(_socket.SHUT_RD)
        sock.settimeout(5)
        while sock.recv(CHUNK):
            pass
    finally:
        sock.close()
