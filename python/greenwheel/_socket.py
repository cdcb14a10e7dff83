"""Cooperative sockets: the implementation behind :mod:`greenwheel.socket`.

:class:`socket` is a subclass of the standard library's ``socket.socket``
whose file descriptor is always non-blocking underneath.  Every blocking-style
call tries the system call first; only when the kernel answers EAGAIN does the
calling greenlet park itself on the loop until the descriptor is ready, then
try again.  Timeouts (``settimeout``) are kept here, not in the C object, and
raise the standard ``socket.timeout`` (``TimeoutError``).

Each socket lazily creates one read watcher and one write watcher and reuses
them for every wait.  A wait parks the greenlet with its own ``switch`` as
the watcher callback (and, with a timeout, ``throw`` on a one-shot timer), so
it allocates nothing else; :meth:`Hub.cancel_wait` finds the greenlet through
the callback's ``__self__``, exactly as for a :class:`Waiter`.

Closing a socket that another greenlet is waiting on detaches the descriptor
at once (this object then behaves as closed), and from the loop throws
``OSError(EBADF, 'File descriptor was closed in another greenlet')`` into the
waiters before the descriptor is really closed, so its number cannot be
reused while anyone still watches it.

Name resolution (``getaddrinfo`` and friends) runs the C library call in a
worker thread (:mod:`greenwheel._threadpool`); numeric look-ups that cannot
block are answered directly.
"""

from __future__ import annotations

import _socket
import os
import socket as __socket__
import sys
from errno import EAGAIN, EALREADY, EBADF, EINPROGRESS, EISCONN, EWOULDBLOCK
from time import monotonic as _monotonic

from ._core import recv_nowait as _recv_nowait
from ._core import send_nowait as _send_nowait
from ._exceptions import ConcurrentObjectUseError
from ._hub import _check_seconds, get_hub

# The OS thread's ident even when this module is first imported after
# greenwheel.monkey replaced _thread.get_ident with a per-greenlet one: hubs
# belong to threads, and comparing a greenlet's ident with hub.thread_ident
# would make close() skip loop.closing_fd().
from ._threadpool import _real_get_ident as _get_ident
from ._threadpool import get_threadpool  # noqa: F401 - kept importable from here
from ._timeout import Timeout
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from socket import AddressFamily, SocketKind
    from typing import Any, TypeAlias

    from _typeshed import ReadableBuffer, WriteableBuffer

    from ._hub import Hub

    #: A file descriptor, or an object with ``fileno()``.
    _FileLike: TypeAlias = int | Any

__all__ = [
    "socket",
    "SocketType",
    "create_connection",
    "create_server",
    "socketpair",
    "fromfd",
    "getaddrinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getnameinfo",
    "getfqdn",
    "wait",
    "wait_read",
    "wait_write",
    "wait_readwrite",
    "cancel_wait",
    "cancel_wait_ex",
]

_timeout_error = __socket__.timeout
_error = OSError
_GLOBAL_DEFAULT_TIMEOUT = __socket__._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]
_TIMED_OUT = (_timeout_error, "timed out")
_NONE = object()

AF_INET = __socket__.AF_INET
AF_INET6 = getattr(__socket__, "AF_INET6", None)
AF_UNIX = getattr(__socket__, "AF_UNIX", None)
SOCK_STREAM = __socket__.SOCK_STREAM
SOL_SOCKET = __socket__.SOL_SOCKET
SO_ERROR = __socket__.SO_ERROR

_READ = 1
_WRITE = 2

# Unbound C methods of the real socket type: calling them directly skips the
# attribute lookup through our class (the fast paths below are one call).
_ss = _socket.socket
_ss_recv = _ss.recv
_ss_recv_into = _ss.recv_into
_ss_recvfrom = _ss.recvfrom
_ss_recvfrom_into = _ss.recvfrom_into
_ss_send = _ss.send
_ss_sendto = _ss.sendto
_ss_sendall = _ss.sendall
_ss_accept = _ss._accept  # type: ignore[attr-defined]
_ss_connect = _ss.connect
_ss_connect_ex = _ss.connect_ex
_ss_bind = _ss.bind
_ss_fileno = _ss.fileno
_ss_close = _ss.close
_ss_detach = _ss.detach
_ss_shutdown = _ss.shutdown
_ss_setblocking = _ss.setblocking
_ss_getsockopt = _ss.getsockopt
_ss_family = _ss.family.__get__
_ss_type = _ss.type.__get__
_ss_proto = _ss.proto.__get__
_ss_recvmsg: Any = getattr(_ss, "recvmsg", None)
_ss_recvmsg_into: Any = getattr(_ss, "recvmsg_into", None)
_ss_sendmsg: Any = getattr(_ss, "sendmsg", None)


class cancel_wait_ex(OSError):
    """Raised in a greenlet whose socket was closed by another greenlet."""

    def __init__(self) -> None:
        OSError.__init__(self, EBADF, "File descriptor was closed in another greenlet")


def _os_error(err: int) -> OSError:
    # OSError(errno, msg) picks the specific subclass (ConnectionRefusedError...).
    return OSError(err, os.strerror(err))


def _octets(data: ReadableBuffer) -> memoryview:
    # A flat byte view of a buffer the Rust helpers refuse (a ctypes
    # Structure exports a zero-dimensional buffer with no shape).
    return memoryview(data).cast("B")


# --- waiting ------------------------------------------------------------------


def _block(
    hub: Hub, watcher: Any, deadline: float | None, throw_args: Any, known_unready: bool = False
) -> None:
    """Park the current greenlet until *watcher* (an unstarted io watcher) fires.

    *deadline* is a ``time.monotonic()`` value or None; when it passes,
    ``greenlet.throw(*throw_args)`` is raised instead.  Returning does not
    promise readiness (the caller retries its system call anyway).
    *known_unready*: the caller's last system call on this fd said EAGAIN,
    which lets the loop skip re-arming the kernel registration.
    """
    # All in Rust: the loop switches straight back into us, on readiness or
    # from a wheel entry at the deadline (no timer object, no callbacks); it
    # raises BlockingSwitchOutError / ConcurrentObjectUseError as gevent does.
    watcher.wait(hub, known_unready, deadline, throw_args)


def wait(io: Any, timeout: float | None = None, timeout_exc: Any = _NONE) -> None:
    """Block the current greenlet until the unstarted watcher *io* is ready.

    After *timeout* seconds raise *timeout_exc* (an exception class or
    instance; ``socket.timeout('timed out')`` by default).  If another
    greenlet calls :func:`cancel_wait` on *io*, the error given there is
    raised instead.  Raises ``ConcurrentObjectUseError`` if *io* is active.

    *io* may be any object with the watcher interface (``start(callback,
    *args)``, ``stop()``, ``callback``).  The wait goes through a
    :class:`Waiter`, so a stray ``switch()`` into the waiting greenlet
    raises ``InvalidSwitchError`` instead of passing for readiness.
    """
    if getattr(io, "callback", None) is not None or getattr(io, "active", False):
        raise ConcurrentObjectUseError(
            "This socket is already used by another greenlet: %r" % (io,)
        )
    if timeout_exc is _NONE or timeout_exc is None:
        timeout_exc = _timeout_error("timed out")
    # Started before the watcher: it also interrupts whatever start() may
    # block on (gevent allows any object with a watcher's interface).
    timer = Timeout._start_new_or_dummy(timeout, timeout_exc)
    try:
        get_hub().wait(io)
    finally:
        timer.close()


def _wait_fd(fileno: _FileLike, events: int, timeout: float | None, timeout_exc: Any) -> None:
    hub = get_hub()
    if not isinstance(fileno, int):
        fileno = fileno.fileno()
    io = hub.loop.io(fileno, events)
    try:
        wait(io, timeout, timeout_exc)
    finally:
        io.close()


def wait_read(fileno: _FileLike, timeout: float | None = None, timeout_exc: Any = _NONE) -> None:
    """Block the current greenlet until *fileno* is readable (see :func:`wait`)."""
    _wait_fd(fileno, _READ, timeout, timeout_exc)


def wait_write(
    fileno: _FileLike, timeout: float | None = None, timeout_exc: Any = _NONE, event: Any = _NONE
) -> None:
    """Block the current greenlet until *fileno* is writable (see :func:`wait`)."""
    _wait_fd(fileno, _WRITE, timeout, timeout_exc)


def wait_readwrite(
    fileno: _FileLike, timeout: float | None = None, timeout_exc: Any = _NONE, event: Any = _NONE
) -> None:
    """Block the current greenlet until *fileno* is readable or writable."""
    _wait_fd(fileno, _READ | _WRITE, timeout, timeout_exc)


def cancel_wait(watcher: Any, error: Any = cancel_wait_ex) -> None:
    """Make the greenlet waiting on *watcher* raise *error* (from the hub)."""
    get_hub().cancel_wait(watcher, error)


def _cancel_waits_then_close(hub: Hub, watchers: list[Any], fd: int) -> None:
    # Runs in the hub: wake every waiter with EBADF (each stops its watcher
    # before it goes on), and only then release the descriptor.
    for watcher in watchers:
        hub._cancel_wait(watcher, cancel_wait_ex, True)
    if fd >= 0:
        loop = hub.loop
        if loop is not None:
            loop.closing_fd(fd)
        try:
            os.close(fd)
        except OSError:
            pass


# --- the socket ----------------------------------------------------------------


if TYPE_CHECKING:
    _std_socket = __socket__.socket
else:
    _std_socket = (
        getattr(sys.modules.get("greenwheel.monkey"), "saved", {})
        .get("socket", {})
        .get("socket", __socket__.socket)
    )


#: MSG_DONTWAIT asks the kernel for one attempt: a call with it never waits,
#: even on a socket with a timeout (0 where the platform has no such flag).
_MSG_DONTWAIT = getattr(_socket, "MSG_DONTWAIT", 0)


def _flags_arg(args: tuple[Any, ...], index: int) -> int:
    """The *flags* argument of a call given *args* positionally (0 when absent)."""
    flags = args[index] if len(args) > index else 0
    return flags if isinstance(flags, int) else 0


class socket(_std_socket):
    """A ``socket.socket`` whose blocking calls block only the calling greenlet.

    Same constructor and interface as the standard library class.  The
    object belongs to the hub of the thread that created it.
    """

    __slots__ = ("hub", "timeout", "_read_event", "_write_event", "_ref", "_stream_read")

    if TYPE_CHECKING:
        hub: Hub
        #: Seconds, None (block) or 0.0 (non-blocking): a slot, where the
        #: standard socket has a read-only property.
        timeout: float | None
        _read_event: Any
        _write_event: Any
        _ref: bool

    def __init__(
        self,
        family: AddressFamily | int = -1,
        type: SocketKind | int = -1,
        proto: int = -1,
        fileno: int | None = None,
    ) -> None:
        # The base class, not ``__socket__.socket``: once greenwheel.monkey
        # has patched the socket module, that name is this class.
        _std_socket.__init__(self, family, type, proto, fileno)
        self.timeout = _socket.getdefaulttimeout()
        _ss_setblocking(self, False)
        self.hub = get_hub()
        self._read_event = None
        self._write_event = None
        self._ref = True
        # The read watcher of a stream socket, whose short reads mean an
        # empty receive queue (see recv); None for datagram sockets.
        self._stream_read: Any = None

    # -- waiting ---------------------------------------------------------------

    def _watcher(self, events: int) -> Any:
        watcher = self.hub.loop.io(_ss_fileno(self), events)
        if not self._ref:
            watcher.ref = False
        if events == _READ:
            self._read_event = watcher
            if _ss_type(self) & 0xF == SOCK_STREAM:
                self._stream_read = watcher
        else:
            self._write_event = watcher
        return watcher

    def _wait(self, events: int, deadline: float | None, msg: str = "timed out") -> None:
        if events == _READ:
            watcher = self._read_event or self._watcher(_READ)
        else:
            watcher = self._write_event or self._watcher(_WRITE)
        _block(self.hub, watcher, deadline, (_timeout_error, msg))

    def _retry(self, method: Callable[..., Any], args: tuple[Any, ...], events: int) -> Any:
        # Slow path shared by the I/O methods: the first attempt said EAGAIN.
        timeout = self.timeout
        deadline = None if timeout is None else _monotonic() + timeout
        if events == _READ:
            watcher = self._read_event or self._watcher(_READ)
        else:
            watcher = self._write_event or self._watcher(_WRITE)
        hub = self.hub
        while True:
            _block(hub, watcher, deadline, _TIMED_OUT, True)
            try:
                return method(self, *args)
            except BlockingIOError:
                pass

    def _get_ref(self) -> bool:
        return self._ref

    def _set_ref(self, value: bool) -> None:
        value = bool(value)
        self._ref = value
        if _ss_fileno(self) >= 0:
            # Made now rather than at the first wait (setting ref is rare),
            # so both exist with this ref, as in gevent.
            if self._read_event is None:
                self._watcher(_READ)
            if self._write_event is None:
                self._watcher(_WRITE)
        for watcher in (self._read_event, self._write_event):
            if watcher is not None:
                watcher.ref = value

    ref = property(
        _get_ref,
        _set_ref,
        doc="Whether waiting on this socket keeps the loop alive (default True).",
    )

    # -- timeouts -------------------------------------------------------------

    def settimeout(self, value: float | None) -> None:
        """Set the timeout of blocking operations (None: block; 0.0: non-blocking)."""
        if value is not None:
            try:
                to_float = value.__float__
            except AttributeError:
                raise TypeError("Timeout value must be int, float or None") from None
            value = to_float()
            if value != value:
                raise ValueError("Invalid value NaN (not a number)")
            if value < 0.0:
                raise ValueError("Timeout value out of range")
        self.timeout = value

    def gettimeout(self) -> float | None:
        return self.timeout

    def setblocking(self, flag: bool) -> None:
        self.timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self.timeout != 0.0

    # -- receiving -----------------------------------------------------------------

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        # The Rust helper reports "would block" as None: no exception raised
        # and caught on every wait, which costs more than the system call.
        watcher = self._stream_read
        timeout = self.timeout
        # `timeout is None or timeout`: "not 0.0" for the None or float a
        # timeout always is, without comparing None with a float (the
        # interpreter's slow path: both sides' comparisons are tried).
        if watcher is not None and not flags and (timeout is None or timeout):
            # A stream socket that has waited before: all in Rust
            # (IoWatcher.recv_within).  While the last read emptied the queue
            # and the loop has not polled since, a recv could only say EAGAIN
            # (anything newer is behind an edge still in the kernel), so it
            # goes straight to the wait: a blocking handler's usual case,
            # answer then recv the next request.  Not for non-blocking
            # sockets: their caller may poll without ever letting the loop
            # run, and must see new data.
            return watcher.recv_within(self.hub, bufsize, timeout, _TIMED_OUT)
        data = _recv_nowait(self.fileno(), bufsize, flags)
        if data is not None:
            return data
        if self.timeout == 0.0 or flags & _MSG_DONTWAIT:
            raise BlockingIOError(EAGAIN, "Resource temporarily unavailable")
        return self._recv_wait(bufsize, flags, self.timeout)

    def _recv_within(self, bufsize: int, timeout: float | None) -> bytes:
        """``recv(bufsize)`` bounded by *timeout* instead of the socket's own.

        For servers that wait for a client's next request with one timeout
        and do the rest of the connection's I/O with another (pywsgi): the
        socket's timeout is left alone, so it is not set twice per request.
        All in Rust (``IoWatcher.recv_within``): while the last read emptied
        the kernel's queue and the loop has not polled since (``drained``),
        anything sent after it is behind an edge still in the kernel, so it
        waits for the edge at once, skipping a recv that could only say
        EAGAIN (the server's usual case: answer a request, then wait for the
        next one).  Stream sockets only: see ``drained``.
        """
        watcher = self._read_event or self._watcher(_READ)
        return watcher.recv_within(self.hub, bufsize, timeout, _TIMED_OUT)

    def _recv_wait(self, bufsize: int, flags: int, timeout: float | None) -> bytes:
        # recv's slow path: the first attempt said EAGAIN.  Retries go through
        # the Rust helper too (the stdlib method allocates a bufsize buffer
        # and shrinks it on every call).
        deadline = None if timeout is None else _monotonic() + timeout
        watcher = self._read_event or self._watcher(_READ)
        hub = self.hub
        while True:
            _block(hub, watcher, deadline, _TIMED_OUT, True)
            data = watcher.read_nowait(bufsize, flags)
            if data is not None:
                return data

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        try:
            return _ss_recv_into(self, buffer, nbytes, flags)
        except BlockingIOError:
            if self.timeout == 0.0 or flags & _MSG_DONTWAIT:
                raise
        return self._retry(_ss_recv_into, (buffer, nbytes, flags), _READ)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        try:
            return _ss_recvfrom(self, bufsize, flags)
        except BlockingIOError:
            if self.timeout == 0.0 or flags & _MSG_DONTWAIT:
                raise
        return self._retry(_ss_recvfrom, (bufsize, flags), _READ)

    def recvfrom_into(
        self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0
    ) -> tuple[int, Any]:
        try:
            return _ss_recvfrom_into(self, buffer, nbytes, flags)
        except BlockingIOError:
            if self.timeout == 0.0 or flags & _MSG_DONTWAIT:
                raise
        return self._retry(_ss_recvfrom_into, (buffer, nbytes, flags), _READ)

    if _ss_recvmsg is not None:

        def recvmsg(self, *args: Any) -> tuple[bytes, list[Any], int, Any]:
            try:
                return _ss_recvmsg(self, *args)
            except BlockingIOError:
                if self.timeout == 0.0 or _flags_arg(args, 2) & _MSG_DONTWAIT:
                    raise
            return self._retry(_ss_recvmsg, args, _READ)

    if _ss_recvmsg_into is not None:

        def recvmsg_into(self, *args: Any) -> tuple[int, list[Any], int, Any]:
            try:
                return _ss_recvmsg_into(self, *args)
            except BlockingIOError:
                if self.timeout == 0.0 or _flags_arg(args, 2) & _MSG_DONTWAIT:
                    raise
            return self._retry(_ss_recvmsg_into, args, _READ)

    # -- sending --------------------------------------------------------------------

    def send(self, data: ReadableBuffer, flags: int = 0, timeout: Any = _NONE) -> int:
        """Send *data*; return the number of bytes sent.

        *timeout* (a gevent extension) bounds this call instead of the
        socket's own timeout.
        """
        try:
            sent = _send_nowait(self.fileno(), data, flags)
        except BufferError:
            data = _octets(data)
            sent = _send_nowait(self.fileno(), data, flags)
        if sent is not None:
            return sent
        if timeout is _NONE:
            timeout = self.timeout
        elif timeout is not None:
            timeout = _check_seconds(timeout)
        if timeout == 0.0 or flags & _MSG_DONTWAIT:
            raise BlockingIOError(EAGAIN, "Resource temporarily unavailable")
        deadline = None if timeout is None else _monotonic() + timeout
        watcher = self._write_event or self._watcher(_WRITE)
        while True:
            _block(self.hub, watcher, deadline, _TIMED_OUT, True)
            try:
                return _ss_send(self, data, flags)
            except BlockingIOError:
                pass

    def sendto(self, *args: Any) -> int:
        try:
            return _ss_sendto(self, *args)
        except BlockingIOError:
            # sendto(data, address) or sendto(data, flags, address)
            if self.timeout == 0.0 or (len(args) == 3 and _flags_arg(args, 1) & _MSG_DONTWAIT):
                raise
        return self._retry(_ss_sendto, args, _WRITE)

    if _ss_sendmsg is not None:

        def sendmsg(self, *args: Any) -> int:
            try:
                return _ss_sendmsg(self, *args)
            except BlockingIOError:
                if self.timeout == 0.0 or _flags_arg(args, 2) & _MSG_DONTWAIT:
                    raise
            return self._retry(_ss_sendmsg, args, _WRITE)

    def sendall(self, data: ReadableBuffer, flags: int = 0) -> None:
        """Send all of *data*; the timeout bounds the whole call, as in the stdlib."""
        timeout = self.timeout
        if timeout is not None and not timeout:  # 0.0 (see recv)
            return _ss_sendall(self, data, flags)
        try:
            sent = _send_nowait(self.fileno(), data, flags) or 0
        except BufferError:
            data = _octets(data)
            sent = _send_nowait(self.fileno(), data, flags) or 0
        if type(data) is bytes and sent == len(data):
            return None
        with memoryview(data) as view:
            if sent < view.nbytes:
                with view.cast("B") as octets:
                    self._sendall_rest(octets, sent, flags)
        return None

    def _sendall_rest(self, view: memoryview, sent: int, flags: int) -> None:
        total = len(view)
        timeout = self.timeout
        deadline = None if timeout is None else _monotonic() + timeout
        while sent < total:
            # A short (or refused) send means the kernel buffer is full.
            self._wait(_WRITE, deadline)
            try:
                sent += _ss_send(self, view[sent:], flags)
            except BlockingIOError:
                pass

    def _sendfile_use_sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        # The stdlib version waits with a blocking selector; this one parks the
        # greenlet instead.  sendfile() (inherited) falls back to send() when
        # this gives up.
        giveup = __socket__._GiveupOnSendfile  # type: ignore[attr-defined]
        try:
            fileno = file.fileno()
        except (AttributeError, OSError, ValueError) as err:
            raise giveup(err) from None
        try:
            fsize = os.fstat(fileno).st_size
        except OSError as err:
            raise giveup(err) from None
        if not fsize:
            return 0
        blocksize = min(count or fsize, 2**30)
        timeout = self.timeout
        if timeout == 0.0:
            raise ValueError("non-blocking sockets are not supported")
        deadline = None if timeout is None else _monotonic() + timeout
        sockno = _ss_fileno(self)
        total_sent = 0
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        break
                try:
                    sent = os.sendfile(sockno, fileno, offset, blocksize)
                except BlockingIOError:
                    self._wait(_WRITE, deadline)
                    continue
                except OSError as err:
                    if total_sent == 0:
                        # Not a file sendfile() can handle: let send() do it.
                        raise giveup(err) from None
                    raise
                if sent == 0:
                    break  # end of file
                offset += sent
                total_sent += sent
            return total_sent
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset)

    # -- connections -----------------------------------------------------------------

    def accept(self) -> tuple[socket, Any]:
        """Wait for a connection; return ``(greenwheel socket, address)``."""
        try:
            fd, addr = _ss_accept(self)
        except BlockingIOError:
            if self.timeout == 0.0:
                raise
            fd, addr = self._retry(_ss_accept, (), _READ)
        sock = socket(_ss_family(self), _ss_type(self), _ss_proto(self), fd)
        return sock, addr

    def bind(self, address: Any) -> None:
        _ss_bind(self, _resolve_addr(self, address))

    def connect(self, address: Any) -> None:
        self._internal_connect(address)

    def connect_ex(self, address: Any) -> int:
        try:
            self._internal_connect(address)
        except _timeout_error:
            return EAGAIN
        except __socket__.gaierror:
            raise
        except OSError as ex:
            if ex.errno:
                return ex.errno
            raise
        return 0

    def _internal_connect(self, address: Any) -> None:
        address = _resolve_addr(self, address)
        if self.timeout == 0.0:
            _ss_connect(self, address)
            return
        err = _ss_connect_ex(self, address)
        if not err:
            return
        if err not in (EINPROGRESS, EWOULDBLOCK, EALREADY):
            raise _os_error(err)
        timeout = self.timeout
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            self._wait(_WRITE, deadline)
            err = _ss_getsockopt(self, SOL_SOCKET, SO_ERROR)
            if err:
                raise _os_error(err)
            err = _ss_connect_ex(self, address)
            if not err or err == EISCONN:
                return
            if err not in (EINPROGRESS, EWOULDBLOCK, EALREADY):
                raise _os_error(err)

    def shutdown(self, how: int) -> None:
        # As in gevent, a greenlet waiting in the direction being shut down
        # is woken with EBADF rather than left to whatever the kernel reports.
        hub = self.hub
        if how != 1 and self._read_event is not None:
            hub.cancel_wait(self._read_event, cancel_wait_ex)
        if how != 0 and self._write_event is not None:
            hub.cancel_wait(self._write_event, cancel_wait_ex)
        _ss_shutdown(self, how)

    # -- closing ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`close` or :meth:`detach` was called (gevent's attribute)."""
        return self._closed or _ss_fileno(self) < 0

    def _real_close(self, _ss: Any = _ss) -> None:
        # Called by close() once no makefile() stream uses the socket.
        self._drop_events(True)

    def detach(self) -> int:
        """Close the object without closing the descriptor; return the descriptor."""
        self._closed = True
        return self._drop_events(False)  # type: ignore[return-value]  # (closefd false)

    def _drop_events(self, closefd: bool) -> int | None:
        # The detached descriptor (closefd false), else None.
        hub = self.hub
        read_event, write_event = self._read_event, self._write_event
        if (read_event is None and write_event is None) or hub is None:
            # Nothing ever waited: the common, cheap case.
            if closefd:
                fd = _ss_fileno(self)
                if (
                    fd >= 0
                    and hub is not None
                    and hub.loop is not None
                    and hub.thread_ident == _get_ident()
                ):
                    hub.loop.closing_fd(fd)
                _ss_close(self)
                return None
            return _ss_detach(self)
        if hub.thread_ident != _get_ident() or hub.loop is None:
            # Another thread (or a destroyed hub) cannot touch the watchers.
            if closefd:
                _ss_close(self)
                return None
            return _ss_detach(self)
        self._read_event = self._write_event = self._stream_read = None
        waiting = []
        for watcher in (read_event, write_event):
            if watcher is not None:
                if watcher.active:
                    waiting.append(watcher)
                else:
                    watcher.close()
        if not closefd:
            fd = _ss_detach(self)
            if waiting:
                hub.loop.run_callback(_cancel_waits_then_close, hub, waiting, -1)
            return fd
        fd = _ss_fileno(self)
        if not waiting:
            if fd >= 0:
                hub.loop.closing_fd(fd)
            _ss_close(self)
            return None
        # Someone is parked on this descriptor: this object lets go of it now,
        # the waiters are woken from the loop, then the descriptor is closed.
        _ss_detach(self)
        hub.loop.run_callback(_cancel_waits_then_close, hub, waiting, fd)
        return None


socket.__module__ = "greenwheel.socket"
SocketType = socket


# --- module functions ---------------------------------------------------------------


def socketpair(
    family: int | None = None, type: int = SOCK_STREAM, proto: int = 0
) -> tuple[socket, socket]:
    """A pair of connected greenwheel sockets (AF_UNIX by default)."""
    if family is None:
        family = AF_UNIX if AF_UNIX is not None else AF_INET
    a, b = _socket.socketpair(family, type, proto)
    return socket(family, type, proto, a.detach()), socket(family, type, proto, b.detach())


def fromfd(fd: _FileLike, family: int, type: int, proto: int = 0) -> socket:
    """A greenwheel socket on a duplicate of *fd*."""
    return socket(family, type, proto, os.dup(fd))


def create_connection(
    address: tuple[str | None, int],
    timeout: float | None = _GLOBAL_DEFAULT_TIMEOUT,
    source_address: Any = None,
    *,
    all_errors: bool = False,
) -> socket:
    """Connect to *address* (``(host, port)``) and return the socket.

    Tries every address ``getaddrinfo`` gives, in order, like the stdlib.
    """
    host, port = address
    errors: list[OSError] = []
    # Through the public module, looked up now: code that replaces
    # greenwheel.socket.socket or .getaddrinfo (mocks, wrappers) is obeyed.
    public = sys.modules.get("greenwheel.socket")
    resolve = getattr(public, "getaddrinfo", getaddrinfo)
    make_socket = getattr(public, "socket", socket)
    for family, socktype, proto, _canonname, sockaddr in resolve(host, port, 0, SOCK_STREAM):
        sock = None
        try:
            sock = make_socket(family, socktype, proto)
            if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            errors.clear()
            return sock
        except OSError as exc:
            if not all_errors:
                errors.clear()
            errors.append(exc)
            if sock is not None:
                sock.close()
        except BaseException:
            if sock is not None:
                sock.close()
            raise
    if errors:
        try:
            if not all_errors:
                raise errors[0]
            raise ExceptionGroup("create_connection failed", errors)  # 3.11+
        finally:
            errors = []
    raise OSError("getaddrinfo returns an empty list")


def create_server(
    address: Any,
    *,
    family: int = AF_INET,
    backlog: int | None = None,
    reuse_port: bool = False,
    dualstack_ipv6: bool = False,
) -> socket:
    """A listening greenwheel TCP socket bound to *address* (as the stdlib's)."""
    if reuse_port and not hasattr(_socket, "SO_REUSEPORT"):
        raise ValueError("SO_REUSEPORT not supported on this platform")
    if dualstack_ipv6:
        if not __socket__.has_dualstack_ipv6():
            raise ValueError("dualstack_ipv6 not supported on this platform")
        if family != AF_INET6:
            raise ValueError("dualstack_ipv6 requires AF_INET6 family")
    sock = socket(family, SOCK_STREAM)
    try:
        if os.name not in ("nt", "cygwin") and hasattr(_socket, "SO_REUSEADDR"):
            try:
                sock.setsockopt(SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            except OSError:
                pass
        if reuse_port:
            sock.setsockopt(SOL_SOCKET, _socket.SO_REUSEPORT, 1)
        if __socket__.has_ipv6 and family == AF_INET6 and hasattr(_socket, "IPV6_V6ONLY"):
            sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 0 if dualstack_ipv6 else 1)
        try:
            sock.bind(address)
        except OSError as err:
            raise OSError(
                err.errno, "%s (while attempting to bind on address %r)" % (err.strerror, address)
            ) from None
        if backlog is None:
            sock.listen()
        else:
            sock.listen(backlog)
        return sock
    except BaseException:
        sock.close()
        raise


# --- name resolution ---------------------------------------------------------------

_RESOLVABLE = (AF_INET,) if AF_INET6 is None else (AF_INET, AF_INET6)


def _is_ip_literal(host: Any, families: tuple[int, ...] = _RESOLVABLE) -> bool:
    if not isinstance(host, str):
        return False
    for family in families:
        try:
            __socket__.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def _resolve_addr(sock: Any, address: Any) -> Any:
    # Resolve a host name in an AF_INET/AF_INET6 address tuple without
    # blocking the loop (the C socket would call getaddrinfo itself).
    if type(address) is not tuple or len(address) < 2:
        return address
    # Any object with a family attribute will do (wrappers, test doubles).
    family = _ss_family(sock) if isinstance(sock, _ss) else sock.family
    if family not in _RESOLVABLE:
        return address
    host = address[0]
    if (
        not isinstance(host, str)
        or not host
        or host == "<broadcast>"
        or _is_ip_literal(host, (family,))
    ):
        return address
    sockaddr = getaddrinfo(host, None, family)[0][4]
    if len(sockaddr) == 2:
        return (sockaddr[0], address[1])
    if len(address) > 2:
        return (sockaddr[0], address[1]) + tuple(address[2:])
    return (sockaddr[0], address[1], sockaddr[2], sockaddr[3])


def _saved_original(name: str) -> Any:
    saved = getattr(sys.modules.get("greenwheel.monkey"), "saved", {}).get("socket", {})
    return saved.get(name, getattr(__socket__, name))


# The standard library's functions as they were when greenwheel was imported.
_ORIGINALS = {
    name: _saved_original(name)
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo")
}


def _stdlib(name: str) -> Any:
    # The standard module's function, looked up at call time (so it can be
    # replaced, e.g. in tests) -- unless greenwheel.monkey has put ours there:
    # calling that from a worker thread would recurse.
    func = getattr(__socket__, name)
    if func is globals().get(name):
        func = _ORIGINALS[name]
    return func


def getaddrinfo(
    host: bytes | str | None,
    port: bytes | str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[tuple[AddressFamily, SocketKind, int, str, tuple[Any, ...]]]:
    """``socket.getaddrinfo`` through the hub's resolver (by default in a worker
    thread; numeric look-ups directly)."""
    return get_hub().resolver.getaddrinfo(host, port, family, type, proto, flags)


def gethostbyname(hostname: str) -> str:
    """``socket.gethostbyname`` through the hub's resolver (IPv4 literals directly)."""
    return get_hub().resolver.gethostbyname(hostname)


def gethostbyname_ex(hostname: str) -> tuple[str, list[str], list[str]]:
    """``socket.gethostbyname_ex`` through the hub's resolver."""
    return get_hub().resolver.gethostbyname_ex(hostname)


def gethostbyaddr(ip_address: str) -> tuple[str, list[str], list[str]]:
    """``socket.gethostbyaddr`` through the hub's resolver."""
    return get_hub().resolver.gethostbyaddr(ip_address)


def getnameinfo(sockaddr: tuple[Any, ...], flags: int) -> tuple[str, str]:
    """``socket.getnameinfo`` through the hub's resolver (purely numeric requests directly)."""
    return get_hub().resolver.getnameinfo(sockaddr, flags)


def getfqdn(name: str = "") -> str:
    """The fully qualified domain name of *name* (the local host if empty)."""
    name = name.strip()
    if not name or name in ("0.0.0.0", "::"):
        name = __socket__.gethostname()
    try:
        hostname, aliases, _ = gethostbyaddr(name)
    except OSError:
        return name
    for candidate in [hostname] + list(aliases):
        if "." in candidate:
            return candidate
    return hostname
