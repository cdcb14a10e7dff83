"""TCP, TLS and UDP servers: the implementation behind :mod:`greenwheel.server`
and :mod:`greenwheel.baseserver`.

A server keeps one read watcher on its listening socket.  When the loop says
the socket is readable, the watcher's callback (running in the hub) accepts
up to :attr:`BaseServer.max_accept` connections in a row and hands each to
the ``handle`` function in a new greenlet (or a pool's, or directly in the
hub with ``spawn=None``).  Errors from ``accept`` pause accepting for a
growing delay instead of spinning; a full pool pauses it until a slot frees.
"""

from __future__ import annotations

import _socket
import errno
import os
import sys
from collections import deque

from ._event import Event
from ._greenlet import Greenlet
from ._hub import Waiter, get_hub, getcurrent, kill, spawn_raw
from ._socket import _ss_accept, _ss_recvfrom, socket
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Self

    from ._core import Loop

__all__ = ["BaseServer", "StreamServer", "DatagramServer", "parse_address"]

DEFAULT_REUSE_ADDR = None if sys.platform == "win32" else 1

_ss_setsockopt = _socket.socket.setsockopt
_ss_bind = _socket.socket.bind
_TCP_FAMILIES = (_socket.AF_INET,) + ((_socket.AF_INET6,) if hasattr(_socket, "AF_INET6") else ())
_IPPROTO_TCP = _socket.IPPROTO_TCP
_TCP_NODELAY: Any = getattr(_socket, "TCP_NODELAY", None)


# --- small private synchronisation helpers -----------------------------------------


class _Lock:
    """A FIFO greenlet lock (serialises DatagramServer.sendto)."""

    __slots__ = ("_locked", "_waiters")

    def __init__(self) -> None:
        self._locked = False
        self._waiters: deque[Waiter] = deque()

    def acquire(self) -> bool:
        if not self._locked:
            self._locked = True
            return True
        waiter = Waiter()
        self._waiters.append(waiter)
        try:
            waiter.get()  # the releaser handed the lock over to us
        except BaseException:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                self.release()  # handed over, but we are leaving: pass it on
            raise
        return True

    def release(self) -> None:
        if self._waiters:
            get_hub().loop.run_callback(self._waiters.popleft().switch, None)
        else:
            self._locked = False

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- addresses ------------------------------------------------------------------------


def _extract_family(host: str) -> tuple[int, str]:
    if host.startswith("[") and host.endswith("]"):
        return _socket.AF_INET6, host[1:-1]
    return _socket.AF_INET, host


def _parse_address(address: Any) -> tuple[int, Any]:
    if isinstance(address, tuple):
        if not address[0] or ":" in address[0]:
            return _socket.AF_INET6, address
        return _socket.AF_INET, address
    if isinstance(address, int) or (isinstance(address, str) and ":" not in address):
        # Just a port: every interface, IPv6 (and IPv4 where dual-stack).
        return _socket.AF_INET6, ("", int(address))
    if not isinstance(address, str):
        raise TypeError("Expected tuple or string, got %s" % (type(address),))
    host, port = address.rsplit(":", 1)
    family, host = _extract_family(host)
    if host == "*":
        host = ""
    return family, (host, int(port))


def parse_address(address: Any) -> tuple[int, Any]:
    """``(family, address tuple)`` for a tuple, ``'host:port'``, ``'[v6]:port'`` or a port."""
    try:
        return _parse_address(address)
    except ValueError as ex:
        raise ValueError("Failed to parse address %r: %s" % (address, ex)) from None


class _Parked:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PARKED"


#: What a handler returns when its connection parked instead of ending: it
#: watches its socket from the hub and is taken up again by a new greenlet
#: (pywsgi's idle keep-alive connections); the connection stays open.
PARKED: Any = _Parked()


def _handle_and_close_when_done(
    handle: Callable[..., object], close: Callable[..., object], args_tuple: tuple[Any, ...]
) -> object:
    result = None
    try:
        # (socket, address), the usual arguments, as a plain call: CPython
        # 3.11 and 3.12 run ``f(*args)`` in a new C frame of the interpreter
        # (~370 bytes), which greenlet copies to the heap and back on every
        # switch of the handler; a plain call stays in this one.
        if len(args_tuple) == 2:
            result = handle(args_tuple[0], args_tuple[1])
        else:
            result = handle(*args_tuple)
    finally:
        if result is not PARKED:
            close(*args_tuple)
    return None if result is PARKED else result


# --- the base server ------------------------------------------------------------------


class BaseServer:
    """Common machinery of the servers: listener, accept loop, spawning, stopping.

    :param listener: an address to bind (tuple, ``'host:port'`` string, or a
        port) or an already bound (and, for TCP, listening) socket.
    :param handle: the request handler; if None, the subclass's ``handle``
        method.  When it returns, the connection is closed (:meth:`do_close`).
    :param spawn: how handlers are started: ``'default'`` (a new
        :class:`~greenwheel.Greenlet` each), a :class:`~greenwheel.pool.Pool`
        (no accepting while it is full), an int (a Pool of that size), any
        callable like ``spawn(func, *args)``, or None (run in the hub; the
        handler then must not block).
    """

    #: Initial and maximum pause (seconds) after an accept error.
    min_delay = 0.01
    max_delay = 1
    #: Connections accepted per readiness event at most.
    max_accept = 100
    #: Default for :meth:`stop`'s timeout.
    stop_timeout = 1
    #: errnos of accept errors that close the server instead of pausing it.
    fatal_errors = (errno.EBADF, errno.EINVAL, errno.ENOTSOCK)

    _spawn: Any = Greenlet.spawn

    if TYPE_CHECKING:
        family: int
        #: What the socket is bound to (a ``(host, port)`` tuple for TCP/UDP).
        address: Any
        #: The listening socket (present while the server is open).
        socket: Any
        #: The Pool handlers run in, if any.
        pool: Any
        loop: Loop
        delay: float
        #: The request handler.
        handle: Callable[..., Any]
        _handle: Any
        _stop_event: Event
        _watcher: Any
        _timer: Any
        _pool_waiter: Any

    def __init__(
        self,
        listener: Any,
        handle: Callable[..., object] | None = None,
        spawn: Any = "default",
    ) -> None:
        self._stop_event = Event()
        self._stop_event.set()
        self._watcher = None
        self._timer = None
        self._handle = None
        self._pool_waiter = None
        self.pool = None
        try:
            self.set_listener(listener)
            self.set_spawn(spawn)
            self.set_handle(handle)
            self.delay = self.min_delay
            self.loop = get_hub().loop
            if self.max_accept < 1:
                raise ValueError("max_accept must be positive int: %r" % (self.max_accept,))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args: object) -> None:
        self.stop()

    # -- configuration -------------------------------------------------------------

    def set_listener(self, listener: Any) -> None:
        if hasattr(listener, "accept"):
            if hasattr(listener, "do_handshake"):
                raise TypeError("Expected a regular socket, not SSLSocket: %r" % (listener,))
            if not isinstance(listener, socket):
                # A socket from elsewhere (e.g. the stdlib): work on our own
                # non-blocking duplicate; the caller's object stays usable.
                listener = socket(
                    listener.family, listener.type, listener.proto, os.dup(listener.fileno())
                )
            self.family = listener.family
            self.address = listener.getsockname()
            self.socket = listener
        else:
            self.family, self.address = parse_address(listener)

    def set_spawn(self, spawn: Any) -> None:
        if spawn == "default":
            self.pool = None
            self._spawn = type(self)._spawn
        elif hasattr(spawn, "spawn"):
            self.pool = spawn
            self._spawn = spawn.spawn
        elif isinstance(spawn, int) and not isinstance(spawn, bool):
            from ._pool import Pool

            self.pool = Pool(spawn)
            self._spawn = self.pool.spawn
        else:
            self.pool = None
            self._spawn = spawn
        if hasattr(self.pool, "full"):
            self.full = self.pool.full  # type: ignore[method-assign]

    def set_handle(self, handle: Callable[..., object] | None) -> None:
        if handle is not None:
            self.handle = handle
        if hasattr(self, "handle"):
            self._handle = self.handle
        else:
            raise TypeError("'handle' must be provided")

    # -- accepting -----------------------------------------------------------------

    def _start_accepting_if_started(self, _ignored: object = None) -> None:
        if self.started:
            self.start_accepting()

    def start_accepting(self) -> None:
        if self._watcher is None:
            self._watcher = self.loop.io(self.socket.fileno(), 1)
            self._watcher.start(self._do_read)

    def stop_accepting(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def _resume_when_pool_has_room(self) -> None:
        try:
            self.pool.wait_available()
        finally:
            self._pool_waiter = None
        self._start_accepting_if_started()

    def _pause(self) -> None:
        # After an error: stop accepting for a while, longer each time.
        if self.delay >= 0:
            self.stop_accepting()
            self._timer = self.loop.timer(self.delay)
            self._timer.start(self._start_accepting_if_started)
            self.delay = min(self.max_delay, self.delay * 2)

    def _do_read(self) -> None:
        # The listening socket's watcher callback; runs in the hub.
        for _ in range(self.max_accept):
            if self.full():
                self.stop_accepting()
                if self.pool is not None and self._pool_waiter is None:
                    self._pool_waiter = spawn_raw(self._resume_when_pool_has_room)
                return
            try:
                args = self.do_read()
                self.delay = self.min_delay
                if not args:
                    return
            except Exception:
                self.loop.handle_error(self, *sys.exc_info())
                ex = sys.exc_info()[1]
                if self.is_fatal_error(ex):  # type: ignore[arg-type]  # (in an except)
                    self.close()
                    sys.stderr.write("ERROR: %s failed with %s\n" % (self, str(ex) or repr(ex)))
                    return
                self._pause()
                return
            try:
                self.do_handle(*args)
            except Exception:
                self.loop.handle_error((args[1:], self), *sys.exc_info())
                self._pause()
                return

    def do_read(self) -> tuple[Any, ...] | None:
        """Take one request from the listener; a tuple of handler args, or None."""
        raise NotImplementedError()

    def do_handle(self, *args: Any) -> None:
        spawn = self._spawn
        handle = self._handle
        close = self.do_close
        try:
            if spawn is None:
                _handle_and_close_when_done(handle, close, args)
            else:
                spawn(_handle_and_close_when_done, handle, close, args)
        except BaseException:
            close(*args)
            raise

    def do_close(self, *args: Any) -> None:
        """Release a request's resources once its handler has returned."""

    def full(self) -> bool:
        return False

    def is_fatal_error(self, ex: BaseException) -> bool:
        return isinstance(ex, OSError) and ex.args[0] in self.fatal_errors

    # -- life cycle ------------------------------------------------------------------

    def init_socket(self) -> None:
        """Create, bind (and listen on) the socket if an address was given."""

    @property
    def started(self) -> bool:
        return not self._stop_event.is_set()

    def start(self) -> None:
        """Start accepting (creating and binding the socket first if needed)."""
        self.init_socket()
        self._stop_event.clear()
        try:
            self.start_accepting()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop accepting and close the listening socket."""
        self._stop_event.set()
        try:
            self.stop_accepting()
        finally:
            pool_waiter = self._pool_waiter
            self._pool_waiter = None
            if pool_waiter is not None and not pool_waiter.dead and pool_waiter is not getcurrent():
                kill(pool_waiter)
            sock = self.__dict__.pop("socket", None)
            if sock is not None:
                try:
                    sock.close()
                except Exception:  # closing must not fail the caller
                    pass
            for name in ("handle", "_handle", "_spawn", "full"):
                self.__dict__.pop(name, None)

    @property
    def closed(self) -> bool:
        return "socket" not in self.__dict__

    def stop(self, timeout: float | None = None) -> None:
        """Close the listener; with a pool, wait up to *timeout* for handlers, then kill them."""
        self.close()
        if timeout is None:
            timeout = self.stop_timeout
        if self.pool:
            self.pool.join(timeout=timeout)
            self.pool.kill(block=True, timeout=1)

    def serve_forever(self, stop_timeout: float | None = None) -> None:
        """Start if needed, then block until :meth:`stop` (or :meth:`close`)."""
        if not self.started:
            self.start()
        try:
            self._stop_event.wait()
        finally:
            Greenlet.spawn(self.stop, timeout=stop_timeout).join()

    # -- description ------------------------------------------------------------------

    @property
    def server_host(self) -> Any:
        """The IP address the server is bound to."""
        if isinstance(self.address, tuple):
            return self.address[0]
        return None

    @property
    def server_port(self) -> Any:
        """The port the server is bound to."""
        if isinstance(self.address, tuple):
            return self.address[1]
        return None

    def __repr__(self) -> str:
        return "<%s at %s %s>" % (type(self).__name__, hex(id(self)), self._formatinfo())

    def __str__(self) -> str:
        return "<%s %s>" % (type(self).__name__, self._formatinfo())

    def _formatinfo(self) -> str:
        result = ""
        sock = self.__dict__.get("socket")
        if sock is not None:
            try:
                result = "fileno=%s " % (sock.fileno(),)
            except Exception as ex:
                result = "fileno=%s " % (ex,)
        try:
            if isinstance(self.address, tuple) and len(self.address) == 2:
                result += "address=%s:%s" % self.address
            else:
                result += "address=%s" % (self.address,)
        except Exception as ex:
            result += str(ex) or "<error>"
        handle = self.__dict__.get("handle")
        if handle is not None:
            if getattr(handle, "__self__", None) is self:
                result += " handle=<bound method %s.%s of self>" % (
                    type(self).__name__,
                    handle.__name__,
                )
            else:
                result += " handle=%r" % (handle,)
        return result


# --- TCP / TLS ----------------------------------------------------------------------


class StreamServer(BaseServer):
    """A TCP server: ``handle(socket, address)`` runs for each connection.

    Keyword arguments beyond the documented ones switch TLS on: either
    ``ssl_context=`` (any ``ssl.SSLContext``; connections become cooperative
    :class:`greenwheel.ssl.SSLSocket`) plus ``wrap_socket`` options, or the
    classic ``keyfile``/``certfile``/... of :func:`greenwheel.ssl.wrap_socket`.
    The handshake happens in the handler's greenlet, within
    :attr:`handshake_timeout` (also a keyword argument); a failed handshake is
    one line on stderr, and the connection is closed without calling ``handle``.
    """

    #: Seconds a TLS client has to complete its handshake (None: no limit).
    #: Without a limit, a client that connects and sends nothing would hold a
    #: file descriptor and a greenlet for as long as it likes.  ``handle`` gets
    #: the socket with the timeout it had before the handshake.
    handshake_timeout: float | None = 10.0

    #: listen() backlog for sockets the server creates.  Larger than gevent's
    #: 128: a burst of connections beyond the backlog gets its SYNs dropped
    #: and retried a second later; the kernel caps it at net.core.somaxconn.
    backlog = max(128, getattr(_socket, "SOMAXCONN", 128))
    reuse_addr = DEFAULT_REUSE_ADDR

    if TYPE_CHECKING:
        #: The keyword arguments for wrap_socket (None: no TLS).
        ssl_args: dict[str, Any] | None
        wrap_socket: Callable[..., Any]
        _client_args: tuple[int, int, int]
        _nodelay: bool

    def __init__(
        self,
        listener: Any,
        handle: Callable[..., object] | None = None,
        backlog: int | None = None,
        spawn: Any = "default",
        **ssl_args: Any,
    ) -> None:
        BaseServer.__init__(self, listener, handle=handle, spawn=spawn)
        try:
            if "handshake_timeout" in ssl_args:
                timeout = ssl_args.pop("handshake_timeout")
                if timeout is not None and not (
                    isinstance(timeout, (int, float))
                    and not isinstance(timeout, bool)
                    and timeout > 0
                ):
                    raise ValueError(
                        "handshake_timeout must be None or a positive number of seconds, not %r"
                        % (timeout,)
                    )
                self.handshake_timeout = timeout
            if ssl_args:
                ssl_args.setdefault("server_side", True)
                from . import _ssl

                if "ssl_context" in ssl_args:
                    context = ssl_args.pop("ssl_context")
                    self.wrap_socket = lambda sock, **kw: _ssl._wrap_with_context(
                        context, sock, **kw
                    )
                else:
                    self.wrap_socket = _ssl.wrap_socket
                self.ssl_args = ssl_args
            else:
                self.ssl_args = None
            if backlog is not None:
                if "socket" in self.__dict__:
                    raise TypeError("backlog must be None when a socket instance is passed")
                self.backlog = backlog
        except BaseException:
            self.close()
            raise

    @property
    def ssl_enabled(self) -> bool:
        return self.ssl_args is not None

    def init_socket(self) -> None:
        if "socket" not in self.__dict__:
            self.socket = self.get_listener(self.address, self.backlog, self.family)
            self.address = self.socket.getsockname()
        sock = self.socket
        self._client_args = (sock.family, sock.type, sock.proto)
        self._nodelay = _TCP_NODELAY is not None and sock.family in _TCP_FAMILIES
        if self.ssl_args:
            self._handle = self.wrap_socket_and_handle
        else:
            self._handle = self.handle

    @classmethod
    def get_listener(
        cls, address: Any, backlog: int | None = None, family: int | None = None
    ) -> socket:
        if backlog is None:
            backlog = cls.backlog
        return _tcp_listener(address, backlog=backlog, reuse_addr=cls.reuse_addr, family=family)

    def do_read(self) -> tuple[socket, Any] | None:
        try:
            fd, address = _ss_accept(self.socket)
        except BlockingIOError:
            return None
        family, type_, proto = self._client_args
        client = socket(family, type_, proto, fd)
        if self._nodelay:
            try:
                _ss_setsockopt(client, _IPPROTO_TCP, _TCP_NODELAY, 1)
            except OSError:
                pass
        return client, address

    def do_close(self, sock: Any, *args: Any) -> None:
        sock.close()

    def wrap_socket_and_handle(self, client_socket: Any, address: Any) -> Any:
        ssl_socket = self._tls_handshake(client_socket, address, self.handshake_timeout)
        if ssl_socket is None:
            return None
        with ssl_socket:
            return self.handle(ssl_socket, address)

    def _tls_handshake(self, client_socket: Any, address: Any, timeout: float | None) -> Any:
        # The TLS socket once the handshake is done within *timeout*, or None
        # (logged) if it failed: a client that times out, resets or speaks
        # plaintext is not a server error worth a traceback.
        # (A wrap_socket replaced by the user may take objects that are not
        # sockets: they keep whatever timeout they have.)
        timed = hasattr(client_socket, "settimeout")
        previous = client_socket.gettimeout() if timed else None
        try:
            if timed:
                client_socket.settimeout(timeout)
            ssl_socket = self.wrap_socket(client_socket, **self.ssl_args)  # type: ignore[arg-type]
        except OSError as ex:
            self._log_handshake_failure(address, ex)
            return None
        if timed:
            ssl_socket.settimeout(previous)
        return ssl_socket

    def _log_handshake_failure(self, address: Any, ex: BaseException) -> None:
        sys.stderr.write(
            "TLS handshake with %s failed: %s\n" % (address, str(ex) or type(ex).__name__)
        )


# --- UDP ------------------------------------------------------------------------------


class DatagramServer(BaseServer):
    """A UDP server: ``handle(data, address)`` runs for each datagram.

    Reply with :meth:`sendto` (serialised between handlers).
    """

    reuse_addr = DEFAULT_REUSE_ADDR
    #: Largest datagram read (bytes).
    max_datagram = 65536

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        BaseServer.__init__(self, *args, **kwargs)
        self._writelock = _Lock()

    def init_socket(self) -> None:
        if "socket" not in self.__dict__:
            self.socket = self.get_listener(self.address, self.family)
            self.address = self.socket.getsockname()

    @classmethod
    def get_listener(cls, address: Any, family: int | None = None) -> socket:
        return _udp_socket(address, reuse_addr=cls.reuse_addr, family=family)

    def do_read(self) -> tuple[bytes, Any] | None:
        try:
            data, address = _ss_recvfrom(self.socket, self.max_datagram)
        except BlockingIOError:
            return None
        return data, address

    def sendto(self, *args: Any) -> int:
        with self._writelock:
            return self.socket.sendto(*args)  # type: ignore[no-any-return]


# --- listeners ------------------------------------------------------------------------


def _bind(sock: socket, address: Any) -> None:
    # The C-level bind: a host name is resolved right here, without yielding
    # (as in gevent), so a server spawned in a greenlet has bound its socket
    # by the time that greenlet first yields (a client may connect after one
    # sleep(0)).  Binding happens once per server; a resolver round trip
    # through the thread pool would buy nothing.
    try:
        _ss_bind(sock, address)
    except OSError as ex:
        strerror = getattr(ex, "strerror", None)
        if strerror is not None:
            ex.strerror = strerror + ": " + repr(address)
        raise


def _tcp_listener(
    address: Any,
    backlog: int = 50,
    reuse_addr: int | None = None,
    family: int | None = _socket.AF_INET,
) -> socket:
    """A bound, listening greenwheel TCP socket."""
    sock = socket(family=family or _socket.AF_INET)
    try:
        if reuse_addr is not None:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, reuse_addr)
        _bind(sock, address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _udp_socket(
    address: Any, reuse_addr: int | None = None, family: int | None = _socket.AF_INET
) -> socket:
    """A bound greenwheel UDP socket."""
    sock = socket(family=family or _socket.AF_INET, type=_socket.SOCK_DGRAM)
    try:
        if reuse_addr is not None:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, reuse_addr)
        _bind(sock, address)
    except BaseException:
        sock.close()
        raise
    return sock
