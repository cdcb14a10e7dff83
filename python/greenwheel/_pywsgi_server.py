"""WSGIServer: a StreamServer serving a WSGI application (for :mod:`greenwheel.pywsgi`).

Ground rules:

- The limits are class attributes, each also a keyword argument, checked
  once when the server is made (ValueError); handlers read them once per
  connection.
- The server's ``environ`` (base keys, ``wsgi.url_scheme``, ``wsgi.errors``,
  SERVER_NAME/PORT once bound) is copied once per connection, by the
  handler, into the template each request's environ is copied from.
- Each accepted connection gets one ``handler_class(socket, address,
  server)`` that serves it to the end; TLS connections finish their
  handshake first, within ``header_timeout``.  A connection idle for
  ``park_idle_after`` seconds may park: its greenlet ends, and the next
  request gets a new one running the same handler (``_park_idle_after``).
"""

from __future__ import annotations

import sys

from . import _socket as _gsocket
from ._greenlet import Greenlet
from ._pywsgi_environ import LoggingLogAdapter, WSGISecureEnviron, _NoopLog
from ._pywsgi_handler import WSGIHandler
from ._pywsgi_input import MAX_REQUEST_LINE
from ._server import BaseServer, StreamServer
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any
    from wsgiref.types import WSGIApplication

_DEFAULT: Any = object()


def _version() -> str:
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

    handler_class: type[WSGIHandler] = WSGIHandler
    #: Object with a ``write`` method receiving access-log lines.
    log: Any = None
    #: Object with ``write``/``writelines``/``flush`` receiving error reports.
    error_log: Any = None
    #: The class of the environ passed to the application (``dict``).
    environ_class: type[dict[str, Any]] = dict
    secure_environ_class: type[dict[str, Any]] = WSGISecureEnviron

    #: Longest request line (method, target, version), in bytes: else 414.
    max_request_line = MAX_REQUEST_LINE
    #: Largest request head (request line and header fields), in bytes: else 431.
    max_header_size = 65536
    #: Most header fields in a request: else 431.
    max_headers = 100
    #: Largest request body, in bytes (None: no limit): else 413.
    max_body_size: int | None = 1 << 30
    #: Seconds a kept-alive connection may sit idle before the next request.
    keepalive_timeout: float | None = 20.0
    #: Seconds for the first request of a connection to start, and for any
    #: request head to arrive completely once it has started (else 408 and close).
    header_timeout: float | None = 10.0
    #: Seconds any single body read or response write may wait.
    io_timeout: float | None = 60.0
    #: Unread request body drained after a response to keep the connection (bytes).
    discard_limit: int | None = 1 << 20
    #: Seconds spent draining a connection the server closes on a client.
    linger_timeout: float | None = 2.0
    #: Bytes asked for per recv.
    recv_size = 65536
    #: Seconds a kept-alive connection waits for its next request in its
    #: greenlet before it parks: the greenlet ends, the loop watches the
    #: socket alone, and the next request starts a new greenlet (None: never).
    #: Only connections spawned a default greenlet each park: not with a
    #: Pool, another spawn, an overridden handle() or do_handle(), or a
    #: handler class that overrides handle() or leaves the native loop.
    park_idle_after: float | None = 0.1

    if TYPE_CHECKING:
        #: The WSGI application every request is served to.
        application: WSGIApplication
        #: The base environ each connection's requests start from.
        environ: dict[str, Any]

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
        "park_idle_after",
    )

    base_env: dict[str, Any] = {
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
        listener: Any,
        application: WSGIApplication | None = None,
        backlog: int | None = None,
        spawn: Any = "default",
        log: Any = "default",
        error_log: Any = "default",
        handler_class: type[WSGIHandler] | None = None,
        environ: dict[str, Any] | None = None,
        max_accept: int | None = None,
        *,
        max_request_line: int = _DEFAULT,
        max_header_size: int = _DEFAULT,
        max_headers: int = _DEFAULT,
        max_body_size: int | None = _DEFAULT,
        keepalive_timeout: float | None = _DEFAULT,
        header_timeout: float | None = _DEFAULT,
        io_timeout: float | None = _DEFAULT,
        discard_limit: int | None = _DEFAULT,
        linger_timeout: float | None = _DEFAULT,
        park_idle_after: float | None = _DEFAULT,
        **ssl_args: Any,
    ) -> None:
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
            park_idle_after=park_idle_after,
        )
        for name, value in given.items():
            if value is not _DEFAULT:
                setattr(self, name, value)
        self._check_limits()

        def _make_log(target: Any, level: int = 20) -> Any:
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

    def _check_limits(self) -> None:
        for name in ("max_request_line", "max_header_size", "max_headers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError("%s must be a positive int, not %r" % (name, value))
        for name in ("max_body_size", "discard_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError("%s must be None or an int >= 0, not %r" % (name, value))
        for name in (
            "keepalive_timeout",
            "header_timeout",
            "io_timeout",
            "linger_timeout",
            "park_idle_after",
        ):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError("%s must be None or >= 0, not %r" % (name, value))
        if self.discard_limit is None:
            self.discard_limit = 1 << 62

    def set_environ(self, environ: dict[str, Any] | None = None) -> None:
        if environ is not None:
            self.environ = environ
        environ_update = getattr(self, "environ", None)
        self.environ = self.environ_class(self.base_env)
        self.environ["wsgi.url_scheme"] = "https" if self.ssl_enabled else "http"
        if environ_update is not None:
            self.environ.update(environ_update)
        if self.environ.get("wsgi.errors") is None:
            self.environ["wsgi.errors"] = self.error_log

    def set_max_accept(self) -> None:
        if self.environ.get("wsgi.multiprocess"):
            self.max_accept = 1

    def get_environ(self) -> dict[str, Any]:
        """A fresh copy of the server's base environ."""
        return self.environ_class(self.environ)

    def init_socket(self) -> None:
        StreamServer.init_socket(self)
        self.update_environ()

    def update_environ(self) -> None:
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

    def wrap_socket_and_handle(self, client_socket: Any, address: Any) -> Any:
        # The TLS handshake is limited by the header timeout (the client's
        # first bytes), unless a handshake_timeout was given explicitly.
        timeout = self.__dict__.get("handshake_timeout", self.header_timeout)
        ssl_socket = self._tls_handshake(client_socket, address, timeout)
        if ssl_socket is None:
            return None
        with ssl_socket:
            return self.handle(ssl_socket, address)

    def _log_handshake_failure(self, address: Any, ex: BaseException) -> None:
        self.error_log.write("TLS handshake with %s failed: %s\n" % (address, ex))

    def handle(self, sock: Any, address: Any) -> Any:
        """Serve one connection with a new :attr:`handler_class` instance."""
        handler = self.handler_class(sock, address, self)
        return handler.handle()

    def _park_idle_after(self) -> float | None:
        # park_idle_after, if this server's connections may park: each is
        # spawned a default greenlet (a Pool counts connections by their
        # greenlets; another spawn may expect one greenlet per connection),
        # by do_handle, into _handle_and_close_when_done, which leaves a
        # parked one open, running this class's handle() (an override may
        # close the connection when the handler returns).
        if (
            self.park_idle_after is None
            or self.pool is not None
            or self._spawn != Greenlet.spawn
            or getattr(getattr(self, "_handle", None), "__func__", None) is not WSGIServer.handle
            or type(self).do_handle is not BaseServer.do_handle
        ):
            return None
        return self.park_idle_after
