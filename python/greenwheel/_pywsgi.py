"""A fast, hardened WSGI server: the implementation behind :mod:`greenwheel.pywsgi`.

Layout
------
:class:`WSGIServer` is a :class:`~greenwheel.server.StreamServer`; each
accepted connection gets one :class:`WSGIHandler` (reused for every request
on that connection) whose :meth:`~WSGIHandler.handle` loops over
:meth:`~WSGIHandler.handle_one_request` until the connection is done.

Request heads are parsed by ``greenwheel._core.request_environ``, which
runs the Rust ``httparse`` crate: a strict (no obsolete line folding, no bare
CR, no whitespace before the colon, only HTTP/1.0 and 1.1), zero-copy,
SIMD-accelerated parser.  Chunk size lines go through
``greenwheel._core.parse_chunk_size`` (same crate).

The per-request path is kept short on purpose:

- one ``recv`` into a per-connection buffer (``_rbuf`` plus a read offset
  ``_rpos``; pipelined requests are parsed from it without another system
  call or copy);
- one call into Rust parses the head, applies the size limits, decides the
  body framing and builds the environ (a copy of a per-connection template:
  server base environ plus ``REMOTE_ADDR``/``REMOTE_PORT``);
- ``start_response`` checks and encodes the status and headers in one more
  Rust call (``_core.response_head``);
- one ``sendall`` carrying status line, headers and the body when the
  application returns a list (the usual case) or on the first write of a
  streamed body.  Together with ``TCP_NODELAY`` (set by StreamServer on
  accepted sockets) this avoids the Nagle / delayed-ACK stall that costs
  gevent's pywsgi ~40 ms per keep-alive request.

Limits (class attributes of :class:`WSGIServer`, also constructor keywords):
request line length (414), header block size (431), header count (431),
body size (413), a header timeout and an idle keep-alive timeout (the
connection is closed), and an I/O timeout for body reads and response
writes.  Malformed requests, ambiguous framing (Content-Length together with
Transfer-Encoding, duplicate or invalid Content-Length, transfer codings
other than ``chunked``) and bad chunked bodies get 400 and the connection is
closed.  Connections closed by the server while the client may still be
sending are closed "lingering" (shutdown for writing, then drain for a
bounded time) so that the client sees the error response instead of a reset.
"""

import errno
import re
import sys
import time
import traceback
from datetime import datetime
from http.client import HTTPMessage as _HTTPMessage
from http.client import LineTooLong as _LineTooLong
from http.client import parse_headers as _parse_headers
from time import monotonic as _monotonic

from greenlet import GreenletExit

from . import _socket as _gsocket
from ._core import (
    HttpParseError,
    RequestError,
    TooManyHeaders,
    parse_chunk_size,
    request_environ,
    response_bytes,
    response_head,
)
from ._hub import sleep as _sleep
from ._server import StreamServer

__all__ = [
    "WSGIServer",
    "WSGIHandler",
    "Input",
    "LoggingLogAdapter",
    "Environ",
    "SecureEnviron",
    "WSGISecureEnviron",
]

_SHUT_WR = _gsocket.__socket__.SHUT_WR
_timeout_error = _gsocket.__socket__.timeout

#: Default limits (the WSGIServer class attributes start from these).
MAX_REQUEST_LINE = 8192

_CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
# A trailer field: token ":" anything but CR/LF.
_TRAILER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n]*\Z")

_WEEKDAYNAME = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHNAME = (
    None,
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def format_date_time(timestamp):
    """The HTTP date (RFC 9110 IMF-fixdate) for *timestamp*, as bytes."""
    year, month, day, hh, mm, ss, wd, _y, _z = time.gmtime(timestamp)
    return (
        "%s, %02d %3s %4d %02d:%02d:%02d GMT"
        % (_WEEKDAYNAME[wd], day, _MONTHNAME[month], year, hh, mm, ss)
    ).encode("latin-1")


# The access-log timestamp changes once a second: cache it.  (The Date header
# has its own cache, in Rust: see ``_core.response_bytes``.)
_log_time_cache = [-1, ""]


def _log_time():
    now = int(time.time())
    if now != _log_time_cache[0]:
        _log_time_cache[1] = str(datetime.fromtimestamp(now))
        _log_time_cache[0] = now
    return _log_time_cache[1]


# --- errors ----------------------------------------------------------------------------

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


def _error_response(code):
    reason = _REASONS[code]
    body = reason.encode("latin-1")  # just the reason, no newline (as gevent's)
    data = (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (code, reason.encode("latin-1"), len(body), body)
    )
    return "%d %s" % (code, reason), data


_ERRORS = {code: _error_response(code) for code in _REASONS}


class _InvalidClientRequest(ValueError):
    # A request head we refuse: *code* is the HTTP status to answer with.
    def __init__(self, code, message):
        ValueError.__init__(self, message)
        self.code = code
        self.formatted_message = message


class _InvalidClientInput(OSError):
    # Raised by Input when the request body is malformed (400) or too large
    # (413, the subclass); the connection cannot be reused afterwards.
    code = 400


class _BodyTooLarge(_InvalidClientInput):
    code = 413


# --- response bodies --------------------------------------------------------------------


def _as_bytes(data):
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError("WSGI response data must be bytes, not %s" % (type(data).__name__,))


# --- wsgi.input --------------------------------------------------------------------------


class _OldMessage(_HTTPMessage):
    """``http.client.HTTPMessage`` with the extras of gevent's request headers."""

    def getheader(self, name, default=None):
        return self.get(name, default)

    @property
    def headers(self):
        return ["%s: %s\r\n" % (name, value) for name, value in self.items()]

    @property
    def typeheader(self):
        return self.get("content-type")


def _headers_from_file(fp, *args):
    # gevent's MessageClass(fp, seekable): parse a header block from *fp*.
    try:
        return _parse_headers(fp, _class=_OldMessage)
    except _LineTooLong:
        msg = _OldMessage()
        msg.status = "Line too long"
        return msg


class _StreamSource:
    # Adapts a plain binary file object to the source protocol Input uses
    # (a handler provides the same three members).
    __slots__ = ("_file", "_rbuf", "_rpos")

    headers_sent = False
    _input_limits = (None, MAX_REQUEST_LINE, 65536)

    def __init__(self, file):
        self._file = file
        self._rbuf = b""
        self._rpos = 0

    def _recv_body(self, n):
        read1 = getattr(self._file, "read1", None)
        return read1(n) if read1 is not None else self._file.read(n)


class _ConnectionFile:
    """A binary read-only file over a handler's connection (gevent's ``rfile``).

    Reads first take what the handler has buffered but not parsed yet, then
    receive from the socket; the end of the connection is the end of file.
    Used for ``handler.rfile`` (a ``read_requestline`` override reads the
    request line from it) and as ``wsgi.input`` of a request asking for a
    connection upgrade (the rest of the connection belongs to the application).
    """

    __slots__ = ("_handler",)

    def __init__(self, handler):
        self._handler = handler

    closed = False

    def readable(self):
        return True

    def _buffered(self):
        handler = self._handler
        buf = handler._rbuf
        pos = handler._rpos
        return buf[pos:] if pos else buf

    def _set_buffered(self, data):
        handler = self._handler
        handler._rbuf = data
        handler._rpos = 0

    def _recv(self):
        sock = self._handler.socket
        if sock is None:
            return b""
        return sock.recv(self._handler._recv_size)

    def read(self, size=-1):
        data = self._buffered()
        if size is None or size < 0:
            parts = [data]
            while True:
                chunk = self._recv()
                if not chunk:
                    break
                parts.append(chunk)
            self._set_buffered(b"")
            return b"".join(parts)
        while len(data) < size:
            chunk = self._recv()
            if not chunk:
                break
            data += chunk
        self._set_buffered(data[size:])
        return data[:size]

    def read1(self, size=-1):
        data = self._buffered()
        if not data:
            data = self._recv()
        if size is None or size < 0:
            size = len(data)
        self._set_buffered(data[size:])
        return data[:size]

    def readline(self, size=-1):
        data = self._buffered()
        limit = None if size is None or size < 0 else size
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if limit is not None and len(data) >= limit:
                end = limit
                break
            start = len(data)
            chunk = self._recv()
            if not chunk:
                end = len(data)
                break
            data += chunk
        if limit is not None and end > limit:
            end = limit
        self._set_buffered(data[end:])
        return data[:end]

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readlines(self, hint=-1):
        return list(self)

    def close(self):
        """Does nothing: the connection is the handler's."""


class Input:
    """The ``wsgi.input`` stream of one request.

    Reads return only the request body: with a Content-Length, at most that
    many bytes (then EOF); with ``Transfer-Encoding: chunked``, the decoded
    data (chunk framing, extensions and trailers are consumed and checked).
    ``read(n)`` blocks until *n* bytes or the end of the body are there;
    ``readline`` stops after a newline.

    *rfile* is where the bytes come from: normally the connection's
    :class:`WSGIHandler`; any binary file object works too.  If *socket* is
    given, ``100 Continue`` is sent on it before the first read (the client
    sent ``Expect: 100-continue``).

    A malformed chunked body raises an ``OSError`` subclass (the server
    answers 400), a body over the server's limit one for 413; the end of the
    connection before the end of the body raises one too.
    """

    __slots__ = (
        "_src",
        "content_length",
        "position",
        "chunked_input",
        "_chunk_left",
        "_need_crlf",
        "_done",
        "_continue",
        "_error",
    )

    def __init__(self, rfile, content_length, socket=None, chunked_input=False):
        if not hasattr(rfile, "_recv_body"):
            rfile = _StreamSource(rfile)
        self._src = rfile
        self.content_length = content_length or 0
        self.position = 0
        self.chunked_input = chunked_input
        self._chunk_left = 0
        self._need_crlf = False
        self._done = False
        self._continue = socket
        self._error = None

    # -- low level -----------------------------------------------------------------------

    def _fail(self, exc_class, message):
        ex = exc_class(message)
        self._error = ex
        raise ex

    def _recv(self, n):
        try:
            data = self._src._recv_body(n)
        except OSError as ex:
            self._error = ex
            raise
        if not data:
            self._fail(
                _InvalidClientInput,
                "unexpected end of file while reading request body at position %d"
                % (self.position,),
            )
        return data

    def _fill(self):
        # Append freshly received bytes to what is buffered.
        data = self._recv(65536)
        src = self._src
        buf = src._rbuf
        pos = src._rpos
        src._rbuf = buf[pos:] + data if pos < len(buf) else data
        src._rpos = 0

    def _send_continue(self):
        sock = self._continue
        self._continue = None
        if getattr(self._src, "headers_sent", False):
            return  # the final response has begun: too late for an interim one
        try:
            sock.sendall(_CONTINUE_RESPONSE)
        except OSError as ex:
            self._error = ex
            raise

    def _complete(self):
        if self.chunked_input:
            return self._done
        return self.position >= self.content_length

    def _body_buffered(self):
        # True if the rest of a Content-Length body has already been received
        # (a client sending it without waiting for 100 Continue).
        if self.chunked_input:
            return False
        src = self._src
        return self.content_length - self.position <= len(src._rbuf) - src._rpos

    def _discard(self, limit):
        """Read and drop at most *limit* bytes of body; True if the body is then fully read."""
        if self._complete():
            return True
        if self._error is not None:
            return False  # broken stream
        if self._continue is not None:
            if not self._body_buffered():
                # The client was never told to send the body: it may or may not.
                return False
            self._continue = None  # it sent it anyway: drop it, no interim response
        try:
            while limit > 0:
                data = self.read(min(limit, 65536))
                if not data:
                    break
                limit -= len(data)
        except Exception:  # noqa: BLE001 - any failure: the connection is not reusable
            return False
        return self._complete()

    # -- chunked framing -----------------------------------------------------------------

    def _next_chunk(self):
        # At a chunk boundary: consume the CRLF after the previous chunk's data
        # and the next size line.  False once the last chunk (and trailers) are read.
        src = self._src
        if self._need_crlf:
            while len(src._rbuf) - src._rpos < 2:
                self._fill()
            pos = src._rpos
            if src._rbuf[pos : pos + 2] != b"\r\n":
                self._fail(_InvalidClientInput, "chunk data not followed by CRLF")
            src._rpos = pos + 2
            self._need_crlf = False
        max_body, max_line, max_trailers = src._input_limits
        while True:
            buf = src._rbuf
            pos = src._rpos
            if pos < len(buf):
                line = buf[pos : pos + max_line + 2]
                try:
                    parsed = parse_chunk_size(line)
                except HttpParseError:
                    self._fail(_InvalidClientInput, "invalid chunk size line")
                if parsed is not None:
                    break
                if len(line) > max_line:
                    self._fail(_InvalidClientInput, "chunk size line too long")
            self._fill()
        line_length, size = parsed
        if buf[pos] not in _HEX_DIGITS:
            self._fail(_InvalidClientInput, "invalid chunk size line")
        src._rpos = pos + line_length
        if size == 0:
            self._read_trailers(max_trailers, max_line)
            self._done = True
            return False
        if max_body is not None and self.position + size > max_body:
            self._fail(_BodyTooLarge, "request body larger than %d bytes" % (max_body,))
        self._chunk_left = size
        self._need_crlf = True
        return True

    def _read_trailers(self, max_size, max_line):
        # Trailer fields are checked for syntax and dropped (as gevent does).
        # Each line is limited as a request line is (gevent's limit), the
        # whole block as a request head is.
        src = self._src
        total = 0
        while True:
            buf = src._rbuf
            pos = src._rpos
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if len(buf) - pos > max_size - total:
                    self._fail(_InvalidClientInput, "chunked trailers too large")
                if len(buf) - pos > max_line:
                    self._fail(_InvalidClientInput, "chunked trailer line too long")
                self._fill()
                continue
            if end - pos > max_line:
                self._fail(_InvalidClientInput, "chunked trailer line too long")
            src._rpos = end + 2
            if end == pos:
                return
            total += end + 2 - pos
            if total > max_size:
                self._fail(_InvalidClientInput, "chunked trailers too large")
            if not _TRAILER_LINE.match(buf, pos, end):
                self._fail(_InvalidClientInput, "invalid chunked trailer")

    def _chunked_read(self, length, readline):
        if self._done or length == 0:
            return b""
        if self._continue is not None:
            self._send_continue()
        src = self._src
        # One piece is returned as it is (the usual case); more are copied into
        # one bytearray.  Not a list of pieces: a body sent in tiny chunks would
        # cost a bytes object (~40 bytes) per chunk, dozens of times its size.
        first = None
        out = None
        have = 0
        while True:
            left = self._chunk_left
            if left == 0:
                if not self._next_chunk():
                    break
                left = self._chunk_left
            buf = src._rbuf
            pos = src._rpos
            avail = len(buf) - pos
            if avail <= 0:
                buf = src._rbuf = self._recv(65536)
                pos = 0
                avail = len(buf)
            n = avail if avail < left else left
            if length is not None and n > length - have:
                n = length - have
            end = pos + n
            if readline:
                newline = buf.find(b"\n", pos, end)
                if newline >= 0:
                    end = newline + 1
                    n = end - pos
            if out is not None:
                out += buf[pos:end]
            elif first is None:
                first = buf[pos:end]
            else:
                out = bytearray(first)
                first = None
                out += buf[pos:end]
            src._rpos = end
            have += n
            self._chunk_left = left - n
            self.position += n
            if (readline and buf[end - 1] == 10) or (length is not None and have >= length):
                break
        if out is not None:
            return bytes(out)
        return b"" if first is None else first

    # -- the file interface ------------------------------------------------------------

    def read(self, length=None):
        """Up to *length* bytes (all the rest if None or negative); b'' at the end."""
        if self.chunked_input:
            return self._chunked_read(None if length is None or length < 0 else length, False)
        left = self.content_length - self.position
        if length is None or length < 0 or length > left:
            length = left
        if length <= 0:
            return b""
        if self._continue is not None:
            self._send_continue()
        src = self._src
        buf = src._rbuf
        pos = src._rpos
        avail = len(buf) - pos
        if avail >= length:
            end = pos + length
            src._rpos = end
            self.position += length
            return buf[pos:end]
        parts = [buf[pos:]] if avail > 0 else []
        have = avail if avail > 0 else 0
        src._rbuf = b""
        src._rpos = 0
        try:
            while have < length:
                # Never ask for more than the body: nothing past it is consumed.
                data = self._recv(min(length - have, 262144))
                parts.append(data)
                have += len(data)
        finally:
            self.position += have
        return b"".join(parts)

    def readline(self, size=None):
        """One line (up to and including b'\\n'), at most *size* bytes; b'' at the end."""
        if self.chunked_input:
            return self._chunked_read(None if size is None or size < 0 else size, True)
        left = self.content_length - self.position
        limit = left if size is None or size < 0 or size > left else size
        if limit <= 0:
            return b""
        if self._continue is not None:
            self._send_continue()
        src = self._src
        buf = src._rbuf
        pos = src._rpos
        avail = len(buf) - pos
        if avail > 0:
            end = pos + limit if avail > limit else len(buf)
            newline = buf.find(b"\n", pos, end)
            if newline >= 0 or avail >= limit:
                if newline >= 0:
                    end = newline + 1
                src._rpos = end
                self.position += end - pos
                return buf[pos:end]
            parts = [buf[pos:]]
            have = avail
        else:
            parts = []
            have = 0
        src._rbuf = b""
        src._rpos = 0
        try:
            while have < limit:
                data = self._recv(min(limit - have, 65536))
                newline = data.find(b"\n")
                if newline >= 0:
                    cut = newline + 1
                    if cut < len(data):
                        # The rest is still body (we never read past it): keep it.
                        src._rbuf = data
                        src._rpos = cut
                        data = data[:cut]
                    parts.append(data)
                    have += cut
                    break
                parts.append(data)
                have += len(data)
        finally:
            self.position += have
        return b"".join(parts)

    def readlines(self, hint=None):
        """All remaining lines (stopping once *hint* bytes were read, if given)."""
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    next = __next__


# --- the handler ------------------------------------------------------------------------


class WSGIHandler:
    """Serves the HTTP requests of one connection to the WSGI application.

    Created by :meth:`WSGIServer.handle` as ``handler_class(socket, address,
    server)`` for each connection; :meth:`handle` then serves requests until
    the connection is to be closed.  Subclasses may override the steps:

    - :meth:`handle_one_request` reads one request and answers it; returns
      True to go on, None to close, or ``(status, response_bytes)`` to send
      a prepared error response and close;
    - :meth:`read_request` reads and parses one request head (limits,
      framing checks); returns False at a clean end of the connection;
    - :meth:`get_environ` builds the environ (call the base version and add
      keys);
    - :meth:`handle_one_response` / :meth:`run_application` run the app;
    - :meth:`log_request` / :meth:`format_request` write the access log.
    """

    protocol_version = "HTTP/1.1"
    #: Raised for application protocol errors (gevent's name).
    ApplicationError = AssertionError
    #: Socket errors that just mean the client went away: no traceback.
    ignored_socket_errors = (errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ESHUTDOWN)

    # Instance state lives in slots: attribute access is the hottest thing a
    # request does (one dict would also outgrow CPython's shared-key limit).
    # ``__dict__`` stays so that subclasses and users may add attributes.
    __slots__ = (
        "_cl_left",
        "_conn_env",
        "_env",
        "_env_class",
        "_rfile",
        "_fast_timeout",
        "_first",
        "_header_block",
        "_header_list",
        "_headers_msg",
        "_input_limits",
        "_linger",
        "_max_body_size",
        "_max_header_size",
        "_max_headers",
        "_max_request_line",
        "_orig_status",
        "_provided_connection",
        "_provided_te",
        "_rbuf",
        "_recv_size",
        "_requestline",
        "_rpos",
        "_served",
        "_socket_error",
        "application",
        "chunked_input",
        "client_address",
        "close_connection",
        "code",
        "command",
        "connection_upgraded",
        "content_length",
        "environ",
        "expect_continue",
        "headers_sent",
        "path",
        "provided_content_length",
        "provided_date",
        "request_version",
        "response_headers",
        "response_length",
        "response_use_chunked",
        "result",
        "server",
        "socket",
        "status",
        "time_finish",
        "time_start",
        "wsgi_input",
        "__dict__",
        "__weakref__",
    )

    def __init__(self, sock, address, server, rfile=None):
        # Per-request state, reset as each request goes.
        self.status = None  # bytes b'200 OK'
        self._orig_status = None  # str '200 OK'
        self.code = None  # int from the status
        self.response_headers = None  # the application's header list
        self.provided_date = None
        self.provided_content_length = None
        self._provided_connection = None
        self._provided_te = None
        self._cl_left = None
        self._header_block = b""
        self.close_connection = False
        self.time_start = 0
        self.time_finish = 0
        self.headers_sent = False
        self.response_use_chunked = False
        self.connection_upgraded = False
        self.environ = None
        self.application = None
        self._requestline = None
        self.response_length = 0
        self.result = None
        self.wsgi_input = None
        self.content_length = 0
        self.chunked_input = False
        self.expect_continue = False
        self._header_list = ()  # [(name, value), ...] as received
        self._headers_msg = None  # the `headers` message, made on first use
        self.request_version = None  # 'HTTP/1.1'
        self.command = None  # 'GET'
        self.path = None  # the request target, as sent
        self._env = None
        self._socket_error = False
        self._linger = False
        self._served = 0
        self.socket = sock
        self.client_address = address
        self.server = server
        self._rbuf = b""
        self._rpos = 0
        self._fast_timeout = isinstance(sock, _gsocket.socket)
        self._first = True
        self._max_headers = server.max_headers
        self._max_request_line = server.max_request_line
        self._max_header_size = server.max_header_size
        self._max_body_size = server.max_body_size
        self._recv_size = server.recv_size
        self._input_limits = (server.max_body_size, server.max_request_line, server.max_header_size)
        env = server.get_environ()
        if isinstance(address, tuple) and len(address) >= 2:
            env["REMOTE_ADDR"] = str(address[0])
            env["REMOTE_PORT"] = str(address[1])
        env["wsgi.input_terminated"] = True
        self._conn_env = env
        # The server's environ_class (a SecureEnviron, say): the parser
        # copies the template into a dict, _take_request converts it.
        self._env_class = None if type(env) is dict else type(env)
        self._rfile = None

    # -- plumbing ------------------------------------------------------------------------

    def _settimeout(self, value):
        if self._fast_timeout:
            self.socket.timeout = value
        else:
            self.socket.settimeout(value)

    def _recv_body(self, n):
        return self.socket.recv(n)

    def _sendall(self, data):
        try:
            self.socket.sendall(data)
        except OSError:
            self._socket_error = True
            self.close_connection = True
            raise
        self.response_length += len(data)

    # -- the connection loop ------------------------------------------------------------

    def handle(self):
        """Serve requests on the connection until it is to be closed, then close it."""
        try:
            if self.socket is not None:
                # Reading request bodies and sending take io_timeout; waiting
                # for a request head has its own timeouts (read_request).
                self._settimeout(self.server.io_timeout)
            one_request = self._plain_request if self._plain else self.handle_one_request
            while self.socket is not None:
                result = one_request()
                if result is None:
                    break
                if result is True:
                    continue
                self.status, response = result
                self.code = int(str(self.status).split(None, 1)[0])
                self._orig_status = self.status
                self.response_length = 0
                try:
                    self._settimeout(self.server.io_timeout)
                    self._sendall(response)
                except OSError:
                    pass
                self.time_start = self.time_finish = time.time()
                self.log_request()
                self._linger = True
                break
        finally:
            self._close()

    def _close(self):
        sock = self.socket
        if sock is None:
            return
        self.socket = None
        try:
            if self._linger:
                self._linger_close(sock)
        finally:
            try:
                sock.close()
                if getattr(sock, "_io_refs", 0) > 0:
                    # A file made of the connection (``makefile``, by an
                    # application or a handler subclass) defers close() until
                    # that file is closed too, and one kept alive by a
                    # reference cycle would hold the connection open until the
                    # cyclic GC runs: the client would wait for an end that
                    # never comes (websocket-client waits 3 s for it after a
                    # close frame).  The connection is over: close it now, as
                    # gevent does.
                    sock._real_close()
            except OSError:
                pass
        self.wsgi_input = self.environ = self._env = None

    def _linger_close(self, sock):
        # The client may still be sending (a body we refused, pipelined
        # requests): closing now could reset the connection before it reads our
        # response.  Stop writing, then drain for a bounded time and amount.
        timeout = self.server.linger_timeout
        if not timeout or timeout <= 0:
            return
        try:
            sock.shutdown(_SHUT_WR)
        except OSError:
            return
        deadline = _monotonic() + timeout
        drained = 0
        fast = self._fast_timeout
        try:
            while drained < 1 << 20:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    break
                if fast:
                    sock.timeout = remaining
                else:
                    sock.settimeout(remaining)
                data = sock.recv(65536)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass

    #: If set, the environ key that receives the request target exactly as
    #: sent (gunicorn's ``RAW_URI``).  A class attribute rather than a
    #: get_environ override, so that the fused request path stays on.
    raw_uri_key = None

    # True while a class keeps the base versions of the hooks that
    # _plain_request fuses (see __init_subclass__).
    _plain = True
    _PLAIN_HOOKS = ("handle_one_request", "read_request", "get_environ", "read_requestline")
    # True when a subclass overrides read_requestline: handle_one_request
    # then calls it first.
    _custom_requestline = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._plain = all(
            getattr(cls, name) is getattr(WSGIHandler, name) for name in cls._PLAIN_HOOKS
        )
        cls._custom_requestline = cls.read_requestline is not WSGIHandler.read_requestline

    def _plain_request(self):
        # handle_one_request + read_request + get_environ in one frame, used
        # only while those hooks are the base ones: the same prologue
        # (_next_request_head: receiving, limits, refusals), without the hook
        # calls; the usual request (no body, no Expect, no upgrade) also
        # skips get_environ, its wsgi.input being an empty Input.
        if self.socket is None:
            return None
        self._requestline = None
        self.command = None
        self.time_finish = 0
        try:
            head = self._next_request_head()
        except _InvalidClientRequest as ex:
            return self._handle_client_error(ex)
        if head is None:
            return None
        parsed, data = head
        self._take_request(parsed, data)
        env = self._env
        if (
            parsed.content_length != 0
            or parsed.expect_continue
            or "HTTP_UPGRADE" in env
            or "HTTP_CONNECTION" in env
            and env["HTTP_CONNECTION"].lower() == "upgrade"
        ):
            self.environ = self.get_environ()
        else:
            self.environ = env
            self.wsgi_input = env["wsgi.input"] = Input(self, 0)
        self.application = self.server.application
        self.handle_one_response()
        if self.close_connection:
            return None
        return True

    def handle_one_request(self):
        """Read one request and answer it.

        Returns True if the connection stays open for another request, None
        if it must be closed, or ``(status, response_bytes)`` for a request
        that is answered with an error without running the application.
        """
        if self.socket is None:
            return None
        self._requestline = None
        self.command = None
        self.time_finish = 0
        try:
            if self._custom_requestline:
                # The subclass's hook reads the request line; it is put back in
                # front of what is buffered and parsed with the rest of the head.
                try:
                    line = self.read_requestline()
                except OSError:
                    return None
                if not line or self.socket is None:
                    return None
                if isinstance(line, str):
                    line = line.encode("latin-1")
                rest = self._rbuf[self._rpos :]
                self._rbuf = bytes(line) + rest
                self._rpos = 0
            if not self.read_request():
                return None
        except _InvalidClientRequest as ex:
            return self._handle_client_error(ex)
        except ValueError as ex:  # a subclass's read_request refusing the request
            return self._handle_client_error(
                _InvalidClientRequest(400, str(ex) or type(ex).__name__)
            )
        self.environ = self.get_environ()
        self.application = self.server.application
        self.handle_one_response()
        if self.close_connection:
            return None
        return True

    # -- reading the request ------------------------------------------------------------

    def read_request(self):
        """Read and parse one request head; False at a clean end of the connection.

        Sets :attr:`command`, :attr:`path`, :attr:`request_version`,
        :attr:`headers`, :attr:`content_length`, :attr:`chunked_input`,
        :attr:`expect_continue` and :attr:`close_connection`.  Refused
        requests raise ``ValueError`` (a subclass carrying the status code:
        400, 408, 413, 414 or 431).
        """
        head = self._next_request_head()
        if head is None:
            return False
        self._take_request(*head)
        return True

    def _next_request_head(self):
        # The prologue both request paths share: the next request head,
        # received, parsed and checked against the limits.  Returns
        # ``(RequestHead, data)``, *data* being the buffer that starts
        # with the head; None at a clean end of the connection (EOF, idle timeout,
        # reset); raises _InvalidClientRequest for a head to refuse.
        data = self._rbuf
        pos = self._rpos
        self._served += 1
        if not self._served & 31:
            # A client whose requests are always already there (pipelining, a
            # fast sender) never makes recv wait: let the others run now and then.
            _sleep(0)
        if pos < len(data):
            if pos:
                data = data[pos:]
        else:
            # Wait for the next request: the first one of a connection gets
            # header_timeout, later ones the idle keep-alive timeout.
            sock = self.socket
            if self._first:
                self._first = False
                timeout = self.server.header_timeout
            else:
                timeout = self.server.keepalive_timeout
            try:
                if self._fast_timeout:
                    # The socket keeps io_timeout (set once in handle()).
                    data = sock._recv_within(self._recv_size, timeout)
                else:
                    sock.settimeout(timeout)
                    data = sock.recv(self._recv_size)
                    sock.settimeout(self.server.io_timeout)
            except OSError:
                return None  # idle timeout, reset...: just close
            if not data:
                return None
        try:
            parsed = request_environ(data, self._max_headers, self._conn_env, self._input_limits)
            if parsed is None:
                try:
                    parsed = self._read_head(data)
                finally:
                    self._settimeout(self.server.io_timeout)  # _read_head changes it
                if parsed is None:
                    return None
                parsed, data = parsed
        except RequestError as ex:
            self._rbuf = data
            self._rpos = 0
            raise _InvalidClientRequest(*ex.args) from None
        except TooManyHeaders:
            raise _InvalidClientRequest(
                431, "more than %d header fields" % (self._max_headers,)
            ) from None
        except HttpParseError as ex:
            self._rbuf = data
            self._rpos = 0
            raise _InvalidClientRequest(400, "%s: %s" % (ex, self._first_line(data))) from None
        return parsed, data

    def _take_request(self, parsed, data):
        # The environ, the limits and the body framing all come from Rust
        # (``_core.request_environ``, a ``RequestHead``), checked in the
        # order gevent checks them.
        self.command = parsed.method
        self.path = parsed.target
        self.request_version = parsed.version
        self._header_list = parsed.headers
        self._rpos = parsed.head_length
        self._env = parsed.environ
        self.content_length = parsed.content_length
        self.chunked_input = parsed.chunked
        self.close_connection = parsed.close_connection
        self.expect_continue = parsed.expect_continue
        self._headers_msg = None
        self._rbuf = data
        if self._env_class is not None:
            self._env = self._env_class(self._env)
        if self.raw_uri_key is not None:
            self._env[self.raw_uri_key] = self.path

    #: Parses a header block from a binary file into a :attr:`headers`
    #: message (gevent's ``MessageClass``); a subclass's ``read_request``
    #: may use it and assign the result to ``self.headers``.
    MessageClass = staticmethod(_headers_from_file)

    @property
    def headers(self):
        """The request's header fields as an ``http.client.HTTPMessage`` (as
        in gevent): ``get(name)``, ``get_all(name)``, ``items()``, ``in``, all
        case-insensitive, plus gevent's ``getheader(name)``.  Built on first
        use in a request; :attr:`header_list` has the raw ``(name, value)``
        pairs in the order received."""
        msg = self._headers_msg
        if msg is None:
            msg = _OldMessage()
            for name, value in self._header_list:
                msg[name] = value
            self._headers_msg = msg
        return msg

    @headers.setter
    def headers(self, value):
        # A subclass's read_request may assign a message or (name, value) pairs.
        if isinstance(value, _HTTPMessage):
            self._headers_msg = value
            self._header_list = list(value.items())
        else:
            self._header_list = value
            self._headers_msg = None

    @property
    def header_list(self):
        """The request's ``(name, value)`` header pairs, in the order received."""
        return self._header_list

    @staticmethod
    def _first_line(data):
        line = data.lstrip(b"\r\n")[:100].split(b"\n", 1)[0].rstrip(b"\r")
        return repr(line)[2:-1]

    def _read_head(self, data):
        # The slow path: *data* is an incomplete head.  Read until complete,
        # enforcing the size limits and the header timeout.  Returns
        # ``(parsed, data)`` or None if the client went away.
        sock = self.socket
        max_line = self._max_request_line
        max_size = self._max_header_size
        max_headers = self._max_headers
        recv_size = self._recv_size
        fast = self._fast_timeout
        header_timeout = self.server.header_timeout
        if header_timeout is None:
            deadline = None
            self._settimeout(None)  # no header timeout: the head takes what it takes
        else:
            deadline = _monotonic() + header_timeout
        acc = bytearray(data)
        line_seen = False
        while True:
            if not line_seen:
                newline = acc.find(b"\n", 0, max_line + 2)
                if newline >= 0:
                    line_seen = True
                elif len(acc) > max_line + 2 and acc.lstrip(b"\r\n"):
                    self._rbuf = bytes(acc)
                    self._rpos = 0
                    raise _InvalidClientRequest(
                        414, "request line longer than %d bytes" % (max_line,)
                    )
            if len(acc) > max_size:
                self._rbuf = bytes(acc)
                self._rpos = 0
                raise _InvalidClientRequest(431, "request head larger than %d bytes" % (max_size,))
            if deadline is not None:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    raise _InvalidClientRequest(408, "timed out reading the request head")
                if fast:
                    sock.timeout = remaining
                else:
                    sock.settimeout(remaining)
            try:
                chunk = sock.recv(recv_size)
            except _timeout_error:
                raise _InvalidClientRequest(408, "timed out reading the request head") from None
            except OSError:
                return None
            if not chunk:
                return None  # the client gave up mid-head: nobody to answer
            acc += chunk
            if b"\n" in chunk:
                data = bytes(acc)
                parsed = request_environ(data, max_headers, self._conn_env, self._input_limits)
                if parsed is not None:
                    return parsed, data

    def get_environ(self):
        """The WSGI environ of the request just read (a new dict each time).

        A request asking for a connection upgrade (``Connection: upgrade`` or
        ``Upgrade: websocket``, as in gevent) gets the connection itself as
        ``wsgi.input`` (:attr:`rfile`), with ``wsgi.input_terminated`` False.
        """
        env = self._env
        self.wsgi_input = env["wsgi.input"] = Input(
            self,
            self.content_length,
            self.socket if self.expect_continue else None,
            self.chunked_input,
        )
        if self._connection_upgrade_requested():
            env["wsgi.input"] = self.rfile
            env["wsgi.input_terminated"] = False
        return env

    def _connection_upgrade_requested(self):
        env = self._env
        upgrade = env.get("HTTP_UPGRADE")
        if upgrade is not None and upgrade.lower() == "websocket":
            return True
        connection = env.get("HTTP_CONNECTION")
        return connection is not None and connection.lower() == "upgrade"

    @property
    def rfile(self):
        """The connection as a binary file (gevent's ``rfile``): reads take
        the bytes received but not parsed yet first, then the socket."""
        rfile = self._rfile
        if rfile is None:
            rfile = self._rfile = _ConnectionFile(self)
        return rfile

    def read_requestline(self):
        """Read and return the request line (a latin-1 ``str``), as gevent's
        hook: a subclass may override it to look at (or answer) what the
        client sends first; a false return closes the connection.  Only
        called when overridden (the base server parses the head in one go)."""
        return self.rfile.readline(self._max_request_line).decode("latin-1")

    # -- running the application ---------------------------------------------------------

    def handle_one_response(self):
        """Run the application for the current request and send its response."""
        self.time_start = time.time()
        self.status = None
        self.headers_sent = False
        self.result = None
        self.response_use_chunked = False
        self.connection_upgraded = False
        self.response_length = 0
        self._socket_error = False
        self._cl_left = None
        wsgi_input = self.wsgi_input
        try:
            try:
                self.run_application()
            finally:
                if wsgi_input is not None:
                    if wsgi_input._error is not None:
                        self.close_connection = True
                    elif not wsgi_input._complete():
                        if self.close_connection or not wsgi_input._discard(
                            self.server.discard_limit
                        ):
                            # Closing with the body (partly) unread: linger so the
                            # client still gets the response.
                            self.close_connection = True
                            self._linger = True
        except GreenletExit:
            self.close_connection = True
            raise
        except Exception as ex:
            input_error = wsgi_input._error if wsgi_input is not None else None
            if input_error is not None:
                # Reading the request body failed (whatever the application
                # made of that error): the client's fault, not a server error.
                self._client_input_failed(input_error)
            elif self._socket_error or (
                isinstance(ex, OSError) and ex.errno in self.ignored_socket_errors
            ):
                self.close_connection = True  # the client went away
            else:
                self.handle_error(*sys.exc_info())
        except BaseException:
            self.close_connection = True
            raise
        finally:
            self.time_finish = time.time()
            self.log_request()

    def run_application(self):
        """Call the application and send what it returns; close() the result."""
        self.result = self.application(self.environ, self.start_response)
        try:
            self.process_result()
        finally:
            result = self.result
            self.result = None
            if type(result) is not list:  # a list has no close(): skip the lookup
                close = getattr(result, "close", None)
                if close is not None:
                    close()

    def process_result(self):
        """Send the application's result (headers and body)."""
        result = self.result
        if not self.headers_sent and (type(result) is list or type(result) is tuple):
            # The usual case: the whole body is known (see _write_whole).
            if self.status is None:
                if not any(result):
                    return self._no_response()
                raise self.ApplicationError("The application did not call start_response()")
            if len(result) == 1:
                body = result[0]
                if type(body) is not bytes:
                    body = _as_bytes(body)
            elif result:
                body = b"".join(result)
            else:
                body = b""
            self._write_whole(body)
            return
        for data in result:
            if data:
                self.write(data)
        if not self.headers_sent:
            if self.status is None:
                return self._no_response()
            # An iterable that produced nothing: the headers now, framed as
            # for any streamed body (chunked in HTTP/1.1, as in gevent).
            self.write(b"")
        if self.response_use_chunked:
            self._sendall(b"0\r\n\r\n")
        if self._cl_left:
            # Fewer bytes than the promised Content-Length: the client cannot
            # tell where this response ends, so the connection cannot be reused.
            self.close_connection = True

    def _no_response(self):
        # The application returned an empty body without calling
        # start_response: as gevent, send nothing (not an error), but close
        # the connection, since the client still waits for a response.
        self.close_connection = True

    # -- response framing: decided here, and only here ---------------------------------
    #
    # _omit_body says whether the response may carry a body; _make_head
    # decides how the body is delimited and whether the connection stays
    # open, and writes the head.  Every response the application makes goes
    # through them: a whole body (_write_whole) or a streamed one (write).

    def _omit_body(self):
        # HEAD, 1xx, 204 and 304 responses have no body (RFC 9110 6.4.1).
        code = self.code
        return self.command == "HEAD" or code < 200 or code == 204 or code == 304

    def _make_head(self, body_length, body=b""):
        # The response head, with *body* after it in the same bytes object.
        # *body_length* is the whole body's size when known, else None (a
        # streamed body).  The rules, in order:
        # - a response without a body (1xx, 204, 304) has no framing header;
        #   a 101 hands the connection to another protocol, closed when the
        #   application returns;
        # - a Content-Length or Transfer-Encoding the application gave is
        #   its framing, sent as given;
        # - a known length becomes Content-Length (a HEAD response sends the
        #   length its GET would have, when the application produced it);
        # - a streamed body is chunked in HTTP/1.1, and ends with the
        #   connection in HTTP/1.0;
        # then the connection: a client still waiting for 100 Continue cannot
        # keep it, and Connection is sent only when it differs from the
        # protocol's default (close in 1.1, keep-alive in 1.0), unless the
        # application gave one.
        code = self.code
        length = None
        chunked = False
        if code < 200 or code == 204 or code == 304:
            if code == 101:
                self.connection_upgraded = True
                self.close_connection = True
        elif self.provided_content_length is not None or self._provided_te is not None:
            pass
        elif body_length is not None:
            if body_length or self.command != "HEAD":
                length = body_length
        elif self.command == "HEAD":
            pass
        elif self.request_version == "HTTP/1.1":
            self.response_use_chunked = chunked = True
        else:
            self.close_connection = True  # HTTP/1.0: the end of the body is the close
        wsgi_input = self.wsgi_input
        if (
            wsgi_input is not None
            and wsgi_input._continue is not None
            and not wsgi_input._complete()
            and not wsgi_input._body_buffered()
        ):
            # The client waits for 100 Continue that will not come now: it
            # may or may not send the body, so this connection cannot go on.
            # (A client that sent the whole body anyway keeps its connection,
            # as in gevent: the body is dropped from what was received.)
            self.close_connection = True
        if self._provided_connection is not None:
            connection = 0
        elif self.close_connection:
            connection = 1  # Connection: close
        elif self.request_version == "HTTP/1.0":
            connection = 2  # Connection: keep-alive
        else:
            connection = 0
        return response_bytes(
            self.status,
            self._header_block,
            self.provided_date is None,
            length,
            chunked,
            connection,
            body,
        )

    def _write_whole(self, body):
        # The whole body is known (the application returned a list): the
        # head and a body of up to 64 KiB go out in one write.
        length = len(body)
        if self._omit_body():
            if body and self.command != "HEAD":
                # Before the head is marked sent, so that the client gets a 500.
                raise self.ApplicationError("The %s response must have no body" % (self.code,))
            self.headers_sent = True
            self._sendall(self._make_head(length))
            return
        cl_left = self._cl_left
        if cl_left is not None and length > cl_left:
            body = body[:cl_left]  # more than the application's Content-Length
        if len(body) <= 65536:
            data = self._make_head(length, body)
            body = b""
        else:
            data = self._make_head(length)
        if cl_left is not None:
            # After the head, so that it is what the application framed.
            if length > cl_left:
                self._log_length_error()
            cl_left = self._cl_left = cl_left - min(length, cl_left)
            if cl_left:
                self.close_connection = True  # fewer bytes than promised
        self.headers_sent = True
        self._sendall(data)
        if body:
            self._sendall(body)

    def _log_length_error(self):
        self.close_connection = True
        self.log_error(
            "application sent more than its Content-Length (%s) for %s",
            self.provided_content_length,
            self._format_requestline(),
        )

    def write(self, data):
        """The ``write`` callable returned by :meth:`start_response` (PEP 3333)."""
        if data and type(data) is not bytes and not isinstance(data, (bytearray, memoryview)):
            _as_bytes(data)  # raises the TypeError, before anything is sent
        if not self.headers_sent:
            if self.status is None:
                raise self.ApplicationError("The application did not call start_response()")
            # Every check before the head is built and marked sent: an error
            # from here on can still be answered with a 500.
            omit_body = self._omit_body()
            if omit_body and data and self.command != "HEAD":
                raise self.ApplicationError("The %s response must have no body" % (self.code,))
            head = self._make_head(None)
            self.headers_sent = True
            if omit_body:
                self._sendall(head)
                return
            if not data:
                self._sendall(head)
                return
            if self.response_use_chunked:
                self._sendall(b"".join((head, b"%x\r\n" % (len(data),), data, b"\r\n")))
                return
            data = self._clip(data)
            self._sendall(head + data)
            return
        if not data or self._omit_body():
            return
        if self.response_use_chunked:
            self._sendall(b"".join((b"%x\r\n" % (len(data),), data, b"\r\n")))
        else:
            data = self._clip(data)
            if data:
                self._sendall(data)

    def _clip(self, data):
        cl_left = self._cl_left
        if cl_left is None:
            return data
        if len(data) > cl_left:
            self._log_length_error()
            data = data[:cl_left]
        self._cl_left = cl_left - len(data)
        return data

    def start_response(self, status, headers, exc_info=None):
        """The WSGI ``start_response`` callable.

        Checks *status* and *headers* at once (native strings, latin-1, no
        CR/LF: header injection raises ValueError).  With *exc_info* after the
        headers were sent, re-raises that exception.
        """
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.headers_sent:
            raise self.ApplicationError("start_response() called again after the headers were sent")
        # Rust checks and encodes the status and headers (``_core.response_head``,
        # a ``ResponseHead``), with the errors and the order of gevent's checks.
        head = response_head(status, headers)
        code = head.code
        provided_cl = head.content_length
        if provided_cl is not None:
            cl_value = head.content_length_value
            if (code == 204 or code == 304) and cl_value != 0:
                raise self.ApplicationError(
                    "Invalid Content-Length for %s response: %r (must be absent or zero)"
                    % (code, provided_cl)
                )
            self._cl_left = None if self.command == "HEAD" else cl_value
        else:
            self._cl_left = None

        self.status = head.status_bytes
        self._orig_status = head.status
        self.code = code
        self.response_headers = headers
        self._header_block = head.header_block
        self.provided_content_length = provided_cl
        self.provided_date = head.date
        self._provided_connection = head.connection
        self._provided_te = head.transfer_encoding
        if head.connection_close:
            self.close_connection = True
        return self.write

    # -- errors ------------------------------------------------------------------------------

    def _send_error_response_if_possible(self, code):
        self.close_connection = True
        self._linger = True
        if self.headers_sent or self.response_length:
            return  # too late for an error page: closing tells the client
        status, data = _ERRORS[code]
        self._orig_status = status
        self.status = status.encode("latin-1")
        self.code = code
        self.headers_sent = True
        try:
            self._sendall(data)
        except OSError:
            pass

    def _client_input_failed(self, error):
        self.close_connection = True
        code = getattr(error, "code", None)
        if code is None and isinstance(error, _timeout_error):
            code = 408
        if code is None:
            return  # end of file, reset...: nobody to answer
        self._log_client_error(code, str(error) or type(error).__name__)
        self._send_error_response_if_possible(code)
        if code == 408:
            self._linger = False  # a client that stopped sending: no point waiting more

    def handle_error(self, t, v, tb):
        """An application error: log it with its traceback; 500 if still possible."""
        self._log_error(t, v, tb)
        t = v = tb = None
        self._send_error_response_if_possible(500)

    def _log_error(self, t, v, tb):
        # As in gevent, the error goes to the hub's handle_error (which prints
        # it to stderr, and where custom hubs and error reporters see it), with
        # the request's environ, masked, as the context.  An error_log the
        # user chose (not the default stderr, where the hub already printed)
        # gets the traceback too.
        if issubclass(t, GreenletExit):
            return
        server = self.server
        error_log = server.error_log
        if error_log is not sys.stderr and type(error_log) is not _NoopLog:
            try:
                text = "".join(traceback.format_exception(t, v, tb))
            except Exception:  # noqa: BLE001 - never fail while reporting
                text = "%s: %r\n" % (getattr(t, "__name__", t), v)
            self.log_error(
                "Error handling request %s\n%s", self._format_requestline(), text.rstrip("\n")
            )
        context = self.environ
        secure_class = server.secure_environ_class
        if not isinstance(context, secure_class):
            context = secure_class(context if context is not None else ())
        server.loop.handle_error(context, t, v, tb)

    def _handle_client_error(self, ex):
        self.close_connection = True
        self._linger = True
        self._log_client_error(ex.code, ex.formatted_message)
        return _ERRORS[ex.code]

    def _log_client_error(self, code, message):
        self.log_error("Invalid request from %s (%d): %s", self._format_client(), code, message)

    #: Called (in an ``except`` block) when reporting an error itself fails:
    #: prints that failure's traceback.  A subclass may make it raise or log.
    _print_unexpected_exc = staticmethod(traceback.print_exc)

    def log_error(self, msg, *args):
        """Write a line to the server's error log."""
        if args:
            try:
                message = msg % args
            except Exception:  # noqa: BLE001
                self._print_unexpected_exc()
                message = "%r %r" % (msg, args)
        else:
            message = msg
        try:
            self.server.error_log.write(message + "\n")
        except Exception:  # noqa: BLE001
            self._print_unexpected_exc()

    # -- access log --------------------------------------------------------------------

    def _format_client(self):
        address = self.client_address
        if isinstance(address, tuple) and address:
            return "%s:%s" % (address[0], address[1]) if len(address) >= 2 else str(address[0])
        return str(address or "-")

    def _format_requestline(self):
        if self._requestline is not None:
            return self._requestline
        if self.command is None:
            return ""
        return "%s %s %s" % (self.command, self.path, self.request_version)

    @property
    def requestline(self):
        """The request line ('GET /path HTTP/1.1'), rebuilt from the parsed parts."""
        return self._format_requestline() or None

    @requestline.setter
    def requestline(self, value):
        self._requestline = value

    def log_request(self):
        """Write the access-log line for the request (unless logging is off)."""
        log = self.server.log
        if log is None or type(log) is _NoopLog:
            return
        log.write(self.format_request() + "\n")

    def format_request(self):
        """The access-log line (gevent's format: client, time, request line, status, length, seconds)."""
        length = self.response_length or "-"
        if self.time_finish:
            delta = "%.6f" % (self.time_finish - self.time_start)
        else:
            delta = "-"
        address = self.client_address
        client = address[0] if isinstance(address, tuple) else address
        status = self._orig_status or self.status or "000"
        if isinstance(status, bytes):
            status = status.decode("latin-1")
        return '%s - - [%s] "%s" %s %s %s' % (
            client or "-",
            _log_time(),
            self._format_requestline(),
            status.split()[0],
            length,
            delta,
        )


# --- logging helpers ----------------------------------------------------------------------


class _NoopLog:
    # What log=None / error_log=None become: a file that discards everything.
    def write(self, *args, **kwargs):
        return None

    def flush(self):
        return None

    def writelines(self, *args, **kwargs):
        return None


class LoggingLogAdapter:
    """A file-like adapter writing to a :class:`logging.Logger` at *level*.

    Other attributes are those of the logger.  Trailing newlines are
    stripped (the logging handlers add their own).
    """

    __slots__ = ("_logger", "_level")

    def __init__(self, logger, level=20):
        object.__setattr__(self, "_logger", logger)
        object.__setattr__(self, "_level", level)

    def write(self, msg):
        if msg and msg.endswith("\n"):
            msg = msg[:-1]
        self._logger.log(self._level, msg)

    def flush(self):
        """Nothing to flush."""

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._logger, name)

    def __setattr__(self, name, value):
        if name in LoggingLogAdapter.__slots__:
            object.__setattr__(self, name, value)
        else:
            setattr(self._logger, name, value)

    def __delattr__(self, name):
        delattr(self._logger, name)


# --- environ classes --------------------------------------------------------------------


class Environ(dict):
    """A dict for WSGI environs whose copies keep their class (provisional, as in gevent)."""

    __slots__ = ()

    def copy(self):
        return self.__class__(self)

    def iteritems(self):
        return self.items()

    def __reduce_ex__(self, proto):
        return (dict, (), None, None, iter(self.items()))


class SecureEnviron(Environ):
    """An environ whose repr masks values (keys in *whitelist_keys* are shown).

    ``secure_repr``, ``whitelist_keys`` and ``print_masked_keys`` may be set
    per instance; the class defaults are the ``default_*`` attributes.
    """

    default_secure_repr = True
    default_whitelist_keys = ()
    default_print_masked_keys = True

    __slots__ = ("secure_repr", "whitelist_keys", "print_masked_keys")

    def __getattr__(self, name):
        if name in SecureEnviron.__slots__:
            return getattr(type(self), "default_" + name)
        raise AttributeError(name)

    def __repr__(self):
        if not self.secure_repr:
            return Environ.__repr__(self)
        whitelist = self.whitelist_keys
        if not whitelist:
            return "<pywsgi.SecureEnviron dict (keys: %d) at %s>" % (len(self), id(self))
        print_masked = self.print_masked_keys
        shown = {
            key: (value if key in whitelist else "<MASKED>")
            for key, value in self.items()
            if key in whitelist or print_masked
        }
        text = repr(shown)
        if not print_masked and len(shown) != len(self):
            text = text[:-1] + ", (hidden keys: %d)}" % (len(self) - len(shown))
        return text

    __str__ = __repr__


class WSGISecureEnviron(SecureEnviron):
    """A :class:`SecureEnviron` showing only REMOTE_ADDR, REMOTE_PORT and HTTP_HOST."""

    default_whitelist_keys = ("REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST")
    default_print_masked_keys = False


# --- the server -----------------------------------------------------------------------

_DEFAULT = object()


def _version():
    # greenwheel's own release: under the gevent alias, the package's
    # __version__ names the gevent API instead.
    from ._core import __version__

    return __version__


class WSGIServer(StreamServer):
    """A WSGI server (HTTP/1.0 and 1.1, keep-alive, pipelining, TLS) on a StreamServer.

    :param listener: address or listening socket (see StreamServer).
    :param application: the WSGI application.
    :param log: where access-log lines go (an object with ``write``, or a
        :class:`logging.Logger`); ``'default'`` is ``sys.stderr``, None
        turns the access log off.
    :param error_log: where errors go (and ``wsgi.errors``); same choices.
    :param handler_class: the per-connection handler (:class:`WSGIHandler`).
    :param environ: extra keys for every request's environ.
    :param max_accept: connections accepted per loop wake-up.
    :param ssl_args: TLS: ``ssl_context=`` or ``keyfile``/``certfile``/...

    The limits below are class attributes; each may also be given as a
    keyword argument.  A timeout of None means "no limit".
    """

    handler_class = WSGIHandler
    #: Object with a ``write`` method receiving access-log lines.
    log = None
    #: Object with ``write``/``writelines``/``flush`` receiving error reports.
    error_log = None
    #: The class of the environ passed to the application (``dict``).
    environ_class = dict
    secure_environ_class = WSGISecureEnviron

    #: Longest request line (method, target, version), in bytes: else 414.
    max_request_line = MAX_REQUEST_LINE
    #: Largest request head (request line and header fields), in bytes: else 431.
    max_header_size = 65536
    #: Most header fields in a request: else 431.
    max_headers = 100
    #: Largest request body, in bytes (None: no limit): else 413.
    max_body_size = 1 << 30
    #: Seconds a kept-alive connection may sit idle before the next request.
    keepalive_timeout = 20.0
    #: Seconds for the first request of a connection to start, and for any
    #: request head to arrive completely once it has started (else 408 and close).
    header_timeout = 10.0
    #: Seconds any single body read or response write may wait.
    io_timeout = 60.0
    #: Unread request body drained after a response to keep the connection (bytes).
    discard_limit = 1 << 20
    #: Seconds spent draining a connection the server closes on a client.
    linger_timeout = 2.0
    #: Bytes asked for per recv.
    recv_size = 65536

    _LIMITS = (
        "max_request_line",
        "max_header_size",
        "max_headers",
        "max_body_size",
        "keepalive_timeout",
        "header_timeout",
        "io_timeout",
        "discard_limit",
        "linger_timeout",
    )

    base_env = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "greenwheel/%s Python/%d.%d" % ((_version(),) + sys.version_info[:2]),
        "SCRIPT_NAME": "",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }

    def __init__(
        self,
        listener,
        application=None,
        backlog=None,
        spawn="default",
        log="default",
        error_log="default",
        handler_class=None,
        environ=None,
        max_accept=None,
        *,
        max_request_line=_DEFAULT,
        max_header_size=_DEFAULT,
        max_headers=_DEFAULT,
        max_body_size=_DEFAULT,
        keepalive_timeout=_DEFAULT,
        header_timeout=_DEFAULT,
        io_timeout=_DEFAULT,
        discard_limit=_DEFAULT,
        linger_timeout=_DEFAULT,
        **ssl_args,
    ):
        if "handle" in ssl_args:
            import warnings

            warnings.warn(
                "Passing 'handle' kwarg to WSGIServer is deprecated. Did you mean application?",
                DeprecationWarning,
                stacklevel=2,
            )
        if max_accept is not None:
            self.max_accept = max_accept
        StreamServer.__init__(self, listener, backlog=backlog, spawn=spawn, **ssl_args)
        if application is not None:
            self.application = application
        if handler_class is not None:
            self.handler_class = handler_class
        given = dict(
            max_request_line=max_request_line,
            max_header_size=max_header_size,
            max_headers=max_headers,
            max_body_size=max_body_size,
            keepalive_timeout=keepalive_timeout,
            header_timeout=header_timeout,
            io_timeout=io_timeout,
            discard_limit=discard_limit,
            linger_timeout=linger_timeout,
        )
        for name, value in given.items():
            if value is not _DEFAULT:
                setattr(self, name, value)
        self._check_limits()

        def _make_log(target, level=20):
            if target == "default":
                return sys.stderr
            if target is None:
                return _NoopLog()
            if not hasattr(target, "write") and hasattr(target, "log"):
                return LoggingLogAdapter(target, level)
            return target

        self.log = _make_log(log)
        self.error_log = _make_log(error_log, 40)
        self.set_environ(environ)
        self.set_max_accept()

    def _check_limits(self):
        for name in ("max_request_line", "max_header_size", "max_headers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError("%s must be a positive int, not %r" % (name, value))
        for name in ("max_body_size", "discard_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError("%s must be None or an int >= 0, not %r" % (name, value))
        for name in ("keepalive_timeout", "header_timeout", "io_timeout", "linger_timeout"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError("%s must be None or >= 0, not %r" % (name, value))
        if self.discard_limit is None:
            self.discard_limit = 1 << 62

    def set_environ(self, environ=None):
        if environ is not None:
            self.environ = environ
        environ_update = getattr(self, "environ", None)
        self.environ = self.environ_class(self.base_env)
        self.environ["wsgi.url_scheme"] = "https" if self.ssl_enabled else "http"
        if environ_update is not None:
            self.environ.update(environ_update)
        if self.environ.get("wsgi.errors") is None:
            self.environ["wsgi.errors"] = self.error_log

    def set_max_accept(self):
        if self.environ.get("wsgi.multiprocess"):
            self.max_accept = 1

    def get_environ(self):
        """A fresh copy of the server's base environ."""
        return self.environ_class(self.environ)

    def init_socket(self):
        StreamServer.init_socket(self)
        self.update_environ()

    def update_environ(self):
        """Fill in SERVER_NAME and SERVER_PORT (once the socket is bound)."""
        address = self.address
        if isinstance(address, tuple):
            if "SERVER_NAME" not in self.environ:
                try:
                    name = _gsocket.getfqdn(address[0])
                except OSError:
                    name = str(address[0])
                self.environ["SERVER_NAME"] = name
            self.environ.setdefault("SERVER_PORT", str(address[1]))
        else:
            self.environ.setdefault("SERVER_NAME", "")
            self.environ.setdefault("SERVER_PORT", "")

    def wrap_socket_and_handle(self, client_socket, address):
        # The TLS handshake is limited by the header timeout (the client's
        # first bytes), unless a handshake_timeout was given explicitly.
        timeout = self.__dict__.get("handshake_timeout", self.header_timeout)
        ssl_socket = self._tls_handshake(client_socket, address, timeout)
        if ssl_socket is None:
            return None
        with ssl_socket:
            return self.handle(ssl_socket, address)

    def _log_handshake_failure(self, address, ex):
        self.error_log.write("TLS handshake with %s failed: %s\n" % (address, ex))

    def handle(self, sock, address):
        """Serve one connection with a new :attr:`handler_class` instance."""
        handler = self.handler_class(sock, address, self)
        handler.handle()
