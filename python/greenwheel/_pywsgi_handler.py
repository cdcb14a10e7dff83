"""WSGIHandler: the HTTP/1.x conversation on one connection (for :mod:`greenwheel.pywsgi`).

One handler serves every request of its connection, in :meth:`WSGIHandler.handle`:

1. the prologue, :meth:`~WSGIHandler._next_request_head`: the next head from
   the buffer or one ``recv`` (header or keep-alive timeout), parsed and
   checked in Rust (the connection's ``_core.RequestParser``, a
   ``RequestHead``: limits, framing, the environ), refusals turned into
   ``_InvalidClientRequest``;
2. the environ (``get_environ``: ``wsgi.input`` an
   :class:`~greenwheel._pywsgi_input.Input`), then the application;
3. ``start_response`` checks and encodes the head in Rust
   (``_core.response_head``, a ``ResponseHead``); the framing is decided by
   :meth:`~WSGIHandler._omit_body` and :meth:`~WSGIHandler._make_head`, and
   a whole body goes out with its head in one write;
4. the rest of an unread body is drained (within ``discard_limit``) so the
   connection can serve the next request; the access log is written.

Ground rules:

- The hooks are gevent's (``handle_one_request``, ``read_request``,
  ``get_environ``, ``read_requestline``, ``handle_one_response``,
  ``run_application``, ``log_request``...).  While a class keeps the base
  versions of the first four, requests take the fused path (inline in
  :meth:`~WSGIHandler.handle`), which must behave exactly as the general
  one: ``tests/test_pywsgi.py`` runs every test on both.
- One home per rule: receiving, limits and refusals of a head in
  ``_next_request_head``, response framing in ``_omit_body``/``_make_head``.
  Change a rule there, not in one of the paths.
- Every check of a response comes before ``headers_sent`` is set, so that a
  failing one can still be answered with a 500; after that, an error can
  only close the connection.
- A refused request is answered with its status and the connection is
  closed lingering (shut for writing, drained for a bounded time), so that
  the client reads the answer rather than a reset.
- State lives in ``__slots__``: attribute access is the hottest thing a
  request does.
"""

from __future__ import annotations

import errno
import sys
import time
import traceback
from http.client import HTTPMessage as _HTTPMessage
from time import monotonic as _monotonic

from greenlet import GreenletExit

from . import _socket as _gsocket
from ._core import (
    HttpParseError,
    RequestError,
    RequestParser,
    TooManyHeaders,
    _yield_to_poll,
    response_head,
)
from ._core import serve_requests as _serve_requests
from ._hub import sleep as _sleep
from ._pywsgi_environ import _AccessLog, _headers_from_file, _NoopLog, _OldMessage
from ._pywsgi_input import Input, _BodySource, _ConnectionFile
from ._server import PARKED, _handle_and_close_when_done
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from _typeshed import OptExcInfo

    from ._core import ResponseHead
    from ._pywsgi_server import WSGIServer

_SHUT_WR = _gsocket.__socket__.SHUT_WR
_UNDECIDED: Any = object()
_timeout_error = _gsocket.__socket__.timeout

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


# --- response bodies ----------------------------------------------------------------


def _as_bytes(data):
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError("WSGI response data must be bytes, not %s" % (type(data).__name__,))


class _Resumed:
    # The result of an application whose iteration the native request loop
    # (rust/py/wsgi_serve.rs) began, handed to the Python path part way: it
    # yields the *items* the loop took and did not send, then raises the
    # *error* the loop got from the result, or yields the rest of *rest*
    # (the result's iterator; None once it was exhausted).  close() closes
    # *result* (None: already closed).  process_result then serves it as it
    # would have served the result itself from the start.
    __slots__ = ("_result", "_items", "_rest", "_error")

    def __init__(self, result, items, rest, error):
        self._result = result
        self._items = items
        self._rest = rest
        self._error = error

    def __iter__(self):
        return self

    def __next__(self):
        items = self._items
        if items:
            return items.pop(0)
        error = self._error
        if error is not None:
            self._error = None
            raise error
        rest = self._rest
        if rest is None:
            raise StopIteration
        return next(rest)

    def close(self):
        result = self._result
        self._result = None
        close = getattr(result, "close", None)
        if close is not None:
            close()


# --- the handler --------------------------------------------------------------------


class WSGIHandler(_AccessLog, _BodySource):
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
        "_header_list",
        "_headers_msg",
        "_idle_timer",
        "_input_limits",
        "_linger",
        "_max_body_size",
        "_max_header_size",
        "_max_headers",
        "_max_request_line",
        "_orig_status",
        "_park_after",
        "_parser",
        "_rbuf",
        "_recv_size",
        "_requestline",
        "_response",
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

    if TYPE_CHECKING:
        # What the slots hold (None until the first request sets them).
        server: WSGIServer
        socket: Any
        client_address: Any
        application: Any
        environ: Any
        # b'200 OK' once start_response ran; an error answer's status line
        # (a str) when handle_one_request returned one.
        status: Any
        _orig_status: Any
        code: int | None
        response_headers: list[tuple[str, str]] | None
        provided_date: str | None
        provided_content_length: str | None
        _response: ResponseHead | None
        _cl_left: int | None
        time_start: float
        time_finish: float
        result: Any
        wsgi_input: Input | None
        _requestline: str | None
        request_version: str | None
        command: str | None
        path: str | None
        _env: Any
        _headers_msg: Any
        _header_list: Any
        _rfile: Any
        _env_class: Any

    def __init__(self, sock: Any, address: Any, server: WSGIServer, rfile: Any = None) -> None:
        # Per-request state, reset as each request goes.
        self.status = None  # bytes b'200 OK'
        self._orig_status = None  # str '200 OK'
        self.code = None  # int from the status
        self.response_headers = None  # the application's header list
        self.provided_date = None
        self.provided_content_length = None
        self._cl_left = None
        self._response = None  # the ResponseHead of start_response
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
        self._idle_timer = None  # while parked with an idle timeout (_park)
        self._park_after = _UNDECIDED  # decided once, by the first handle()
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
        # The connection's request_environ: the limits converted once.  It
        # holds _conn_env itself, so a subclass may add keys to it in place
        # (gunicorn's worker does).
        self._parser = RequestParser(self._max_headers, env, self._input_limits, self.raw_uri_key)
        # The server's environ_class (a SecureEnviron, say): the parser
        # copies the template into a dict, _next_request_head converts it.
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
        if not self.response_length:
            # A response's first write waits for the other connections the
            # same kernel poll found ready, as in the native request loop:
            # one wake-up of the client for all of their responses
            # (_core._yield_to_poll; rust/py/fastpath.rs says why).
            _yield_to_poll()
        try:
            self.socket.sendall(data)
        except OSError:
            self._socket_error = True
            self.close_connection = True
            raise
        self.response_length += len(data)

    # -- the connection loop ------------------------------------------------------------

    def handle(self) -> Any:
        """Serve requests on the connection until it is to be closed, then close it.

        Returns None, or ``PARKED`` when the connection parked (see _park).
        """
        parked = False
        try:
            if self.socket is not None:
                # Reading request bodies and sending take io_timeout; waiting
                # for a request head has its own timeouts (read_request).
                self._settimeout(self.server.io_timeout)
            plain = self._plain
            # The native request loop (``_core.serve_requests``) serves the
            # usual requests of a handler class that keeps every hook of the
            # request path (_native_hooks), when nothing per-request is to be
            # logged; it hands anything else to the fused path below, one
            # request at a time.  It asks to clear the last request's state
            # once Python served one.
            native = (
                self._native
                # The plain socket class: the loop sends on its fd (not TLS).
                and type(self.socket) is _gsocket.socket
                and self._env_class is None
                and not self._logs_requests()
            )
            # An idle connection parks (see _park) only on the native loop of
            # a server that spawns each connection a default greenlet.
            park_after = self._park_after
            if park_after is _UNDECIDED:
                # Not under an overridden handle(), which may count on this
                # one returning at the connection's end.
                parks = native and type(self).handle is WSGIHandler.handle
                park_after = self._park_after = self.server._park_idle_after() if parks else None
            served_here = False
            while self.socket is not None:
                if native:
                    went = _serve_requests(self, served_here, Input, park_after)
                    if went is None:
                        break
                    if went is PARKED:
                        parked = True
                        return PARKED
                    served_here = True
                    if went is False:
                        # A request it began, finished here (_adopt): its
                        # response is sent.
                        if self.close_connection:
                            break
                        continue
                    # True: the request in _rbuf is one for the fused path.
                if plain:
                    # The fused path: handle_one_request + read_request +
                    # get_environ, inline (a Python call per request less),
                    # used only while those hooks are the base ones.  The same
                    # prologue (_next_request_head: receiving, limits,
                    # refusals); the usual request (no body, no Expect, no
                    # upgrade) also skips get_environ, its wsgi.input being an
                    # empty Input.
                    try:
                        parsed = self._next_request_head()
                    except _InvalidClientRequest as ex:
                        self._requestline = self.command = None  # the log shows no request
                        result = self._handle_client_error(ex)
                    else:
                        if parsed is None:
                            break
                        self._requestline = None
                        self.time_finish = 0
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
                            break
                        # Nothing of this request stays alive while the
                        # connection waits for the next (see _next_request_head).
                        parsed = env = None
                        continue
                else:
                    result = self.handle_one_request()
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
            if not parked:
                self._close()
        return None

    # -- parking an idle connection ------------------------------------------------------
    #
    # A kept-alive connection waiting for its next request is, on a server
    # that gives each connection a greenlet of its own, mostly that greenlet:
    # 10.2 KB per idle connection of which a parked greenlet is 5.9 KB
    # (benches/compare.py, issue 19).  Once the native loop has waited
    # park_idle_after seconds (WSGIServer._park_idle_after says when a
    # server's connections may park), the connection parks: its socket's
    # read watcher calls _unpark from the hub, a timer ends it at the idle
    # timeout, and its greenlet ends without closing it.  The next request
    # gets a new greenlet, which takes up handle() where it left off.  A
    # connection busier than that never parks, so keep-alive traffic pays
    # nothing for it; one that parks before every request costs about 40,000
    # instructions more per request than the 22,000 of one that waits in its
    # greenlet (callgrind, benches/pywsgi_callgrind.py with park_idle_after
    # 0 and 0.1).

    def _park(self, left):
        # Called by the native loop in the connection's greenlet, which then
        # ends: *left* seconds of idle timeout remain (None: no limit).
        self.socket._read_event.start(self._unpark)
        if left is not None:
            try:
                timer = self.server.loop.timer(left)
                timer.start(self._idle_expired)
            except BaseException:
                self.socket._read_event.stop()
                raise
            self._idle_timer = timer
        return PARKED

    def _stop_watching_idle(self):
        socket = self.socket
        watcher = None if socket is None else socket._read_event
        if watcher is not None:
            watcher.stop()
        timer = self._idle_timer
        if timer is not None:
            self._idle_timer = None
            timer.close()

    def _unpark(self):
        # The hub: bytes (or the end) arrived on the parked connection.
        self._stop_watching_idle()
        if self.socket is None:
            return
        server = self.server
        args = (self.socket, self.client_address)
        try:
            server._spawn(_handle_and_close_when_done, self._resume, server.do_close, args)
        except BaseException:
            self._close()
            server.do_close(*args)
            raise

    def _resume(self, _socket, _address):
        return self.handle()

    def _idle_expired(self):
        # The hub: the parked connection's idle timeout passed.
        args = (self.socket, self.client_address)
        self._stop_watching_idle()
        if args[0] is None:
            return
        self._close()
        self.server.do_close(*args)

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

    # True while a class keeps the base versions of the hooks that handle()
    # fuses (see __init_subclass__).
    _plain = True
    _PLAIN_HOOKS = ("handle_one_request", "read_request", "get_environ", "read_requestline")
    # True when a subclass overrides read_requestline: handle_one_request
    # then calls it first.
    _custom_requestline = False

    # True while a class keeps the base versions of every hook the native
    # request loop stands in for (see handle()).
    _native = True
    _NATIVE_HOOKS = _PLAIN_HOOKS + (
        "handle_one_response",
        "run_application",
        "process_result",
        "start_response",
        "write",
        "_next_request_head",
        "_take_head",
        "_begin_response",
        "_respond",
        "_finish_application",
        "_started",
        "_make_head",
        "_omit_body",
        "_sendall",
    )

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._plain = all(
            getattr(cls, name) is getattr(WSGIHandler, name) for name in cls._PLAIN_HOOKS
        )
        cls._native = all(
            getattr(cls, name) is getattr(WSGIHandler, name) for name in cls._NATIVE_HOOKS
        )
        cls._custom_requestline = cls.read_requestline is not WSGIHandler.read_requestline

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
        return self._next_request_head() is not None

    def _next_request_head(self):
        # The prologue both request paths share: the next request head,
        # received, parsed and checked against the limits, taken into the
        # handler's attributes.  Returns its ``RequestHead``; None at a clean
        # end of the connection (EOF, idle timeout, reset); raises
        # _InvalidClientRequest for a head to refuse.
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
            # header_timeout, later ones the idle keep-alive timeout.  The
            # last request's environ, input and headers are done with: an idle
            # keep-alive connection holds none of them while it waits
            # (about 1.9 KB each, issue 19's idle-connection memory).
            self.wsgi_input = self.environ = self._env = self.result = None
            self._header_list = ()
            self._headers_msg = None
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
            parsed = self._parser.parse(data)
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
        self._take_head(parsed, data)
        return parsed

    def _take_head(self, parsed, data):
        # A parsed head (``RequestHead``) becomes the handler's request state;
        # *data* holds it at its start, and whatever follows it.  The environ,
        # the limits and the body framing all come from Rust, checked in the
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
                parsed = self._parser.parse(data)
                if parsed is not None:
                    return parsed, data

    def get_environ(self) -> dict[str, Any]:
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

    def _logs_requests(self):
        # Whether log_request does anything on this connection: the native
        # request loop does not call it.  A subclass that overrides
        # log_request overrides this too, or its requests take the fused path.
        if type(self).log_request is not WSGIHandler.log_request:
            return True
        return type(self.server.log) is not _NoopLog

    def _adopt(self, parsed, data, env, wsgi_input, application, time_start, head, headers):
        # A request the native loop began and hands over part way, the
        # application called (or calling, when it wrote): its state as the
        # Python path would have made it, so that the rest runs here.  *head*
        # is the ResponseHead of the application's start_response (None if
        # not called yet), with its *headers*.
        self._take_head(parsed, data)
        self._requestline = None
        self.time_finish = 0
        self.environ = env
        self.wsgi_input = wsgi_input
        self.application = application
        self._begin_response(time_start)
        if head is not None:
            self._started(head, headers)

    def _reraise(self, error):
        # _respond's step for an application that raised in the native loop.
        raise error

    def handle_one_response(self):
        """Run the application for the current request and send its response."""
        self._begin_response(time.time())
        self._respond(self.run_application)

    def _begin_response(self, time_start):
        # The response state of a new request.
        self.time_start = time_start
        self.status = None
        self.headers_sent = False
        self.result = None
        self.response_use_chunked = False
        self.connection_upgraded = False
        self.response_length = 0
        self._socket_error = False
        self._cl_left = None

    def _respond(self, step, *args):
        # ``step(*args)`` runs (or finishes) the application and sends the
        # response; then the rest of the body is drained, errors are answered
        # (a 500, a 4xx for a failed body read) and the request is logged.
        wsgi_input = self.wsgi_input
        try:
            try:
                step(*args)
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
        self._finish_application(self.application(self.environ, self.start_response))

    def _finish_application(self, result):
        # Send what the application returned, then close() it.
        self.result = result
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
            # The usual case: the whole body is known.
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
            # The head and a body of up to 64 KiB go out in one write.
            length = len(body)
            # A 200 to anything but HEAD always has a body: only other
            # responses ask _omit_body (the call is ~1% of a keep-alive hello
            # world's instructions, callgrind).
            if (self.code != 200 or self.command == "HEAD") and self._omit_body():
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
                # cl_left - min(length, cl_left) without min(): the builtin parses
                # keyword arguments, ~250 instructions per request (callgrind).
                cl_left = self._cl_left = cl_left - length if length < cl_left else 0
                if cl_left:
                    self.close_connection = True  # fewer bytes than promised
            self.headers_sent = True
            self._sendall(data)
            if body:
                self._sendall(body)
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
    # through them: a whole body (process_result) or a streamed one (write).

    def _omit_body(self):
        # HEAD, 1xx, 204 and 304 responses have no body (RFC 9110 6.4.1; the
        # status part is decided in Rust, ResponseHead.bodiless).
        return self.command == "HEAD" or self._response.bodiless

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
        # (The checks read the ResponseHead once: each handler attribute
        # read is a bytecode or two more, and this runs for every response.)
        head = self._response
        length = None
        chunked = False
        if head.bodiless:
            if self.code == 101:
                self.connection_upgraded = True
                self.close_connection = True
        elif head.framed:
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
        if head.connection is not None:
            connection = 0
        elif self.close_connection:
            connection = 1  # Connection: close
        elif self.request_version == "HTTP/1.0":
            connection = 2  # Connection: keep-alive
        else:
            connection = 0
        # The head's status line and header lines, a Date unless the
        # application gave one, the framing decided here, then *body*.
        return head.response_bytes(length, chunked, connection, body)

    def _log_length_error(self):
        self.close_connection = True
        self.log_error(
            "application sent more than its Content-Length (%s) for %s",
            self.provided_content_length,
            self._format_requestline(),
        )

    def write(self, data: bytes) -> None:
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

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], None]:
        """The WSGI ``start_response`` callable.

        Checks *status* and *headers* at once (native strings, latin-1, no
        CR/LF: header injection raises ValueError).  With *exc_info* after the
        headers were sent, re-raises that exception.
        """
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])  # type: ignore[union-attr]
            finally:
                exc_info = None
        elif self.headers_sent:
            raise self.ApplicationError("start_response() called again after the headers were sent")
        # Rust checks and encodes the status and headers (``_core.response_head``,
        # a ``ResponseHead``), with the errors and the order of gevent's checks.
        self._started(response_head(status, headers), headers)
        return self.write

    def _started(self, head, headers):
        # The response state of a checked start_response(status, headers).
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

        # The head itself is kept for the framing (_make_head); the
        # attributes are gevent's.
        self._response = head
        self.status = head.status_bytes
        self._orig_status = head.status
        self.code = code
        self.response_headers = headers
        self.provided_content_length = provided_cl
        self.provided_date = head.date
        if head.connection_close:
            self.close_connection = True

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
            except Exception:  # never fail while reporting
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
