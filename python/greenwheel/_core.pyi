"""Type stubs for :mod:`greenwheel._core`, the Rust event loop.

The loop mirrors the interface of gevent's libev/libuv loop objects so that the
hub and the rest of the Python layer read like gevent's.  Everything here is
bound to the OS thread that created the loop, except :meth:`AsyncWatcher.send`,
which any thread may call.
"""

import contextvars
from collections.abc import Callable, Iterable
from typing import Any, Final, Self, TypeVarTuple, final

from _typeshed import ReadableBuffer
from typing_extensions import disjoint_base

__all__ = [
    "__version__",
    "READ",
    "WRITE",
    "monotonic_ns",
    "sleep",
    "_set_current_hub",
    "_yield_to_poll",
    "_frame_cache_info",
    "_greenlet_run",
    "Loop",
    "Callback",
    "TimerWatcher",
    "IoWatcher",
    "SignalWatcher",
    "PhaseWatcher",
    "AsyncWatcher",
    "Timeout",
    "parse_request",
    "parse_chunk_size",
    "HttpParseError",
    "TooManyHeaders",
    "RequestError",
    "TransportAttrs",
    "install_transport_write",
    "TransportIO",
    "RequestHead",
    "RequestParser",
    "ResponseHead",
    "request_environ",
    "response_head",
    "http_date",
    "serve_requests",
    "start_response",
    "write",
    "recv_nowait",
    "send_nowait",
    "AioLoopCore",
    "Handle",
    "TimerHandle",
    "ReadyQueue",
]

__version__: Final[str]

#: Event mask bit: the fd is readable.
READ: Final[int]
#: Event mask bit: the fd is writable.
WRITE: Final[int]

def monotonic_ns() -> int:
    """The monotonic clock the loop uses, in nanoseconds."""

@final
class Callback:
    """A callback queued with :meth:`Loop.run_callback`."""

    callback: Callable[..., Any] | None
    args: tuple[Any, ...] | None
    @property
    def pending(self) -> bool:
        """True until the callback has run or been stopped."""
    def stop(self) -> None:
        """Cancel the callback if it has not run yet."""
    def close(self) -> None:
        """Same as :meth:`stop`."""

class _WatcherBase:
    """Behaviour shared by every watcher type (not a runtime class)."""

    callback: Callable[..., Any] | None
    """Settable: a callable, or None (forget the callback and arguments)."""
    args: tuple[Any, ...] | None
    """Settable: a tuple, or None (no arguments); None without a callback
    (a one-shot timer forgets both once it fired)."""
    @property
    def loop(self) -> Loop:
        """The loop this watcher belongs to."""
    @property
    def active(self) -> bool:
        """True between :meth:`start` and :meth:`stop` (or until a one-shot fired)."""
    @property
    def pending(self) -> bool:
        """True when the watcher's event happened and its callback is queued."""
    ref: bool
    """A watcher with ``ref=False`` does not keep :meth:`Loop.run` from returning."""
    priority: int
    """Settable only while stopped (AttributeError on an active watcher)."""
    def start(self, callback: Callable[..., Any], *args: Any) -> None:
        """Start watching; ``callback(*args)`` runs from the loop on each event."""
    def stop(self) -> None:
        """Stop watching.  Safe to call at any time, also from the callback."""
    def close(self) -> None:
        """Stop and release the callback and arguments."""
    def __enter__(self) -> _WatcherBase: ...
    def __exit__(self, *exc: object) -> None: ...

@final
class TimerWatcher(_WatcherBase):
    """A one-shot or repeating timer; see :meth:`Loop.timer`."""

    @property
    def at(self) -> float:
        """The loop time (seconds, :meth:`Loop.now` scale) the timer is due."""
    @property
    def after(self) -> float:
        """The delay given to :meth:`Loop.timer`."""
    @property
    def repeat(self) -> float:
        """The repeat interval (0 for one-shot)."""
    def start(self, callback: Callable[..., Any], *args: Any, update: bool | None = None) -> None:
        """Arm the timer ``after`` seconds from now (``update`` refreshes the
        loop's clock first, which is the default)."""
    def again(self, callback: Callable[..., Any], *args: Any, update: bool = True) -> None:
        """Re-arm from now with the same delay (restart)."""

@final
class IoWatcher(_WatcherBase):
    """Readiness of a file descriptor; see :meth:`Loop.io`."""

    @property
    def fd(self) -> int:
        """The file descriptor."""
    @property
    def drained(self) -> bool:
        """True while the last :meth:`read_nowait` emptied the kernel's
        receive queue (a short read) and the loop has not polled since: new
        bytes have an edge still queued, so a wait needs no recv first."""
    def read_nowait(self, bufsize: int, flags: int = 0) -> bytes | None:
        """``recv(bufsize, flags)`` on the non-blocking fd: the bytes (``b""``
        at EOF), or None if it would block; a short read without flags sets
        :attr:`drained`."""
    def recv_within(
        self, hub: Any, bufsize: int, timeout: float | None, timeout_args: tuple[Any, ...], /
    ) -> bytes:
        """A stream socket's ``recv(bufsize)`` bounded by *timeout*: skips
        the read while :attr:`drained`, waits (raising ``*timeout_args`` at
        the deadline) and reads again until bytes or EOF (``b""``)."""
    events: int
    """The event mask (:data:`READ` | :data:`WRITE`)."""
    def start(self, callback: Callable[..., Any], *args: Any, pass_events: bool = False) -> None:
        """Start; with ``pass_events`` the callback gets the ready mask first."""
    def wait(
        self,
        hub: object,
        known_unready: bool = False,
        deadline: float | None = None,
        timeout_args: tuple[Any, ...] | None = None,
    ) -> None:
        """Block the current greenlet (not *hub*) until the fd is ready, then
        stop; the loop switches straight back into it. *known_unready*: the
        caller just got EAGAIN on this fd (which it owns), so the kernel
        registration need not be re-armed. *deadline* (a ``time.monotonic()``
        value) bounds the wait: once it has passed, the greenlet raises
        ``getcurrent().throw(*timeout_args)`` (default ``TimeoutError("timed
        out")``), at once if it already has."""

@final
class AsyncWatcher(_WatcherBase):
    """Wakes the loop from any OS thread; see :meth:`Loop.async_`.

    Unlike the other watchers this object may be shared with other threads:
    :meth:`send` is safe anywhere, the rest raises RuntimeError off the loop's
    thread."""

    def send(self) -> None:
        """Make the watcher pending and wake its loop.  Thread-safe."""
    def send_ignoring_arg(self, _ignored: object) -> None:
        """:meth:`send`, usable as a one-argument callback."""

@final
class SignalWatcher(_WatcherBase):
    """Runs a callback from the loop when a signal arrives; see :meth:`Loop.signal`."""

    @property
    def signum(self) -> int:
        """The signal number."""

@final
class PhaseWatcher(_WatcherBase):
    """An idle, prepare, check or fork watcher; see :meth:`Loop.idle`."""

    @property
    def phase(self) -> str:
        """ "idle" (runs when a pass would otherwise block), "prepare" (before
        each poll), "check" (after each poll) or "fork" (once in the child
        after ``os.fork()``, queued by :meth:`Loop.reinit`)."""

@disjoint_base
class Timeout(BaseException):
    """Timeout(seconds=None, exception=None, ref=True, priority=-1)

    Raise *exception* (default: this Timeout) in the greenlet that calls
    :meth:`start` once *seconds* have passed; ``exception=False`` raises it
    too, but a ``with`` block swallows it. ``seconds=None`` never fires.
    Public as :class:`greenwheel.Timeout`."""

    def __new__(
        cls,
        seconds: float | None = None,
        exception: object = None,
        ref: bool = True,
        priority: int = -1,
        _one_shot: bool = False,
    ) -> Timeout: ...
    def __init__(
        self,
        seconds: float | None = None,
        exception: object = None,
        ref: bool = ...,
        priority: int = ...,
        _one_shot: bool = False,
    ) -> None:
        """Sets the arguments when a subclass's constructor calls it."""
    @property
    def pending(self) -> bool:
        """True while armed."""
    @property
    def seconds(self) -> float | None:
        """The seconds given (None: never expires)."""
    exception: object
    """None (raise the Timeout), False (silent in ``with``), a class or an instance."""
    def start(self) -> None:
        """Arm; fires *seconds* from now in the calling greenlet."""
    @classmethod
    def start_new(
        cls,
        timeout: float | Timeout | None = None,
        exception: object = None,
        ref: bool = True,
        _one_shot: bool = False,
    ) -> Timeout:
        """A started Timeout (or *timeout* itself, started, if it is one)."""
    @staticmethod
    def _start_new_or_dummy(
        timeout: float | None, exception: object = None, ref: bool = True
    ) -> Timeout: ...
    def cancel(self) -> None:
        """Disarm; it may be started again."""
    def close(self) -> None:
        """Disarm for good."""
    def __enter__(self) -> Timeout: ...
    def __exit__(self, typ: object = None, value: object = None, tb: object = None) -> bool: ...
    def __lt__(self, other: object, /) -> bool: ...
    def __gt__(self, other: object, /) -> bool: ...

def _set_current_hub(hub: object) -> None:
    """Register *hub* (or None) as this thread's hub for the Rust fast paths
    (called by ``greenwheel._hub``)."""

def _yield_to_poll() -> bool:
    """When the current greenlet was resumed by the dispatch of a kernel
    poll that found other fds ready too, yield until they were dispatched;
    whether it yielded (pywsgi, before each response's first write)."""

def _frame_cache_info() -> tuple[bool, int, int]:
    """``(installed, cached, capacity)`` of the free list that recycles
    CPython's 16 KiB frame-stack chunks between greenlets (installed at
    import unless ``GREENWHEEL_FRAME_CACHE=0``). For tests and diagnostics."""

def _greenlet_run(greenlet: object = ..., /) -> None:
    """The body of ``Greenlet.run`` (that attribute itself): call the
    greenlet's function with its arguments, report the outcome, release the
    function. Without an argument, the current greenlet (the one greenlet is
    starting). Not public API."""

def sleep(seconds: float = 0, ref: bool = True) -> None:
    """Suspend the current greenlet for at least *seconds*; ``sleep(0)`` yields
    to every other ready greenlet once. Public as :func:`greenwheel.sleep`."""

@final
class Loop:
    """The event loop: timer wheel, epoll/kqueue readiness, callbacks, wake-ups.

    Callbacks (``run_callback``) run FIFO; callbacks queued while the loop is
    dispatching run in a later pass.  An exception raised by any callback is
    passed to ``error_handler.handle_error(context, type, value, tb)``, or
    printed when no handler is set; it is never lost.
    """

    error_handler: Any
    """An object with ``handle_error(context, type, value, tb)``, or None."""
    def __new__(cls, flags: object = None, default: bool | None = None) -> Loop: ...
    @property
    def default(self) -> bool:
        """True for the loop of the main thread (False once destroyed)."""
    @property
    def approx_timer_resolution(self) -> float:
        """The granularity of timers, in seconds."""
    @property
    def ptr(self) -> int:
        """A non-zero identifier while the loop is alive (0 after destroy)."""
    @property
    def iteration(self) -> int:
        """How many passes the loop has made (each runs the callbacks queued before it)."""
    @property
    def pendingcnt(self) -> int:
        """Number of callbacks waiting to run."""
    @property
    def activecnt(self) -> int:
        """Number of referenced active watchers."""
    @property
    def timer_count(self) -> int:
        """Timers armed in the wheel (referenced or not)."""
    @property
    def sigfd(self) -> int:
        """Write end of the loop's signal wake-up pipe (for ``signal.set_wakeup_fd``)."""
    def now(self) -> float:
        """Cached loop time in seconds (monotonic), updated once per iteration."""
    def update_now(self) -> None:
        """Refresh the cached time."""
    def update(self) -> None:
        """Same as :meth:`update_now`."""
    def run(self, nowait: bool = False, once: bool = False) -> bool:
        """Run until no referenced watcher or callback is left, or
        :meth:`break_` is called.  ``once`` polls once (blocking if needed);
        ``nowait`` polls without blocking.  Returns True if referenced work is
        still pending."""
    def break_(self, how: int = ...) -> None:
        """Make :meth:`run` return after the current pass."""
    def make_ready(self, obj: Any, /) -> bool:
        """Queue the notification of *obj* (its ``_single_link()`` /
        ``_notify_links()`` run from the loop soon); False, doing nothing,
        from another thread than the loop's (internal)."""
    def _forget_ready(self) -> None:
        """Drop the objects whose notification is queued (their hub is
        destroyed, the loop kept; internal)."""
    def park(self, hub: Any, /) -> Any:
        """Switch the current greenlet out (to *hub*, or straight to the next
        ready object's single waiter) until something switches back in;
        return the value switched in (internal)."""
    def _use_virtual_clock(self, autojump_threshold: float = 0.0) -> None:
        """For tests: switch to a virtual clock that jumps to the next timer's
        deadline when the loop would otherwise block (after a poll that waited
        ``autojump_threshold`` real seconds and found nothing). One-way."""
    def _advance_clock(self, seconds: float) -> None:
        """For tests: move the virtual clock ahead (RuntimeError on the system clock)."""
    @property
    def _virtual_clock(self) -> bool:
        """True once :meth:`_use_virtual_clock` switched this loop."""
    def _clock_now(self) -> float:
        """The loop's clock now, in seconds (not cached, unlike :meth:`now`)."""
    def run_callback(self, func: Callable[..., Any], *args: Any) -> Callback:
        """Queue ``func(*args)`` to run at the next pass (FIFO)."""
    def run_callback_threadsafe(self, func: Callable[..., Any], *args: Any) -> Callback:
        """:meth:`run_callback` from any OS thread, waking the loop."""
    def start_soon(self, glet: object) -> None:
        """Switch into the unstarted greenlet *glet* at the next pass (FIFO with
        callbacks); skipped if it was started some other way by then."""
    def yield_now(self, hub: object) -> None:
        """Queue a resume of the current greenlet and switch to *hub* (the
        greenlet running this loop); returns when the loop resumes us."""
    def timer(
        self, after: float, repeat: float = 0.0, ref: bool = True, priority: int | None = None
    ) -> TimerWatcher:
        """A timer ``after`` seconds from its start.  Negative means due now;
        NaN raises ValueError; ``inf`` never fires."""
    def io(self, fd: int, events: int, ref: bool = True, priority: int | None = None) -> IoWatcher:
        """Watch ``fd`` for ``events`` (READ, WRITE or both).  A negative fd or a
        bad mask raises ValueError; a closed fd raises OSError(EBADF) at start."""
    def async_(self, ref: bool = True, priority: int | None = None) -> AsyncWatcher:
        """A watcher whose ``send()`` may be called from any thread."""
    # ``async`` (a keyword, so not spelled here) is the same as async_.
    def fork(self, ref: bool = True, priority: int | None = None) -> PhaseWatcher:
        """Runs its callback once in the child process after ``os.fork()``."""
    def child(self, pid: int, trace: int = 0, ref: bool = True) -> Any:
        """A watcher of the child process *pid* exiting
        (``greenwheel.core._ChildWatcher``)."""
    def stat(
        self, path: Any, interval: float = 0.0, ref: bool = True, priority: int | None = None
    ) -> Any:
        """A watcher of changes to the entry at *path*, polled every
        *interval* seconds (``greenwheel.core._StatWatcher``)."""
    def signal(self, signum: int, ref: bool = True, priority: int | None = None) -> SignalWatcher:
        """Run a callback from the loop when ``signum`` arrives (main thread loop only)."""
    def idle(self, ref: bool = True, priority: int | None = None) -> PhaseWatcher:
        """Runs its callback on passes that would otherwise block."""
    def prepare(self, ref: bool = True, priority: int | None = None) -> PhaseWatcher:
        """Runs its callback before each poll."""
    def check(self, ref: bool = True, priority: int | None = None) -> PhaseWatcher:
        """Runs its callback after each poll."""
    def closing_fd(self, fd: int) -> bool:
        """Tell the loop ``fd`` is about to be closed: drops its kernel registration.
        Returns True if watchers were still active on it."""
    def reinit(self) -> None:
        """Re-create the poller after ``os.fork()``, re-registering active watchers."""
    def fileno(self) -> int:
        """The epoll/kqueue descriptor (or -1)."""
    def destroy(self) -> None:
        """Stop every watcher and free the poller; the loop is unusable after.
        Another thread may call it once the loop's own thread has exited."""
    def handle_error(
        self, context: object, type: type[BaseException], value: BaseException, tb: object
    ) -> None:
        """Route an exception to ``error_handler`` (or print it)."""

class HttpParseError(ValueError):
    """A malformed HTTP request head or chunk size."""

class TooManyHeaders(HttpParseError):
    """The request has more header fields than the server allows."""

def parse_request(
    data: bytes | bytearray | memoryview, max_headers: int = 100
) -> tuple[str, str, int, list[tuple[str, str]], int] | None:
    """Parse an HTTP/1.x request head at the start of *data*: None while
    incomplete, else ``(method, target, minor_version, headers, head_length)``
    with latin-1 decoded header names and values (httparse, in Rust)."""

def parse_chunk_size(data: bytes | bytearray | memoryview) -> tuple[int, int] | None:
    """Parse a chunk-size line at the start of *data*: None while incomplete,
    else ``(line_length, chunk_size)``."""

class RequestError(ValueError):
    """A request the server refuses; ``args`` are ``(status, message)``."""

@final
class RequestHead:
    """A parsed and checked request head (what :func:`request_environ` returns)."""

    @property
    def method(self) -> str:
        """The method, as sent."""
    @property
    def target(self) -> str:
        """The request target exactly as sent (latin-1)."""
    @property
    def version(self) -> str:
        """``'HTTP/1.0'`` or ``'HTTP/1.1'``."""
    @property
    def headers(self) -> list[tuple[str, str]]:
        """The header fields as received, latin-1 decoded."""
    @property
    def head_length(self) -> int:
        """Bytes the head took, its blank line included."""
    @property
    def environ(self) -> dict[str, Any]:
        """A copy of the base environ with the request's keys."""
    @property
    def content_length(self) -> int | None:
        """The body's length (0 without one), None for a chunked body."""
    @property
    def chunked(self) -> bool:
        """Whether the body is ``Transfer-Encoding: chunked``."""
    @property
    def close_connection(self) -> bool:
        """Whether the client wants the connection closed after this request."""
    @property
    def expect_continue(self) -> bool:
        """Whether the client waits for ``100 Continue`` before sending the body."""

def request_environ(
    data: bytes | bytearray | memoryview,
    max_headers: int,
    base_env: dict[str, Any],
    limits: tuple[int | None, int | None, int | None],
) -> RequestHead | None:
    """Parse the request head at the start of *data* into a WSGI environ.

    *limits* is ``(max_body_size, max_request_line, max_header_size)``.
    None while incomplete, else a :class:`RequestHead` whose *environ* is a
    copy of *base_env* with the header keys, REQUEST_METHOD, QUERY_STRING,
    PATH_INFO and SERVER_PROTOCOL. Raises RequestError (414, 431, 400 or
    413), TooManyHeaders or HttpParseError."""

@final
class RequestParser:
    """:func:`request_environ` for one connection, its settings converted once.

    *base_env* is held, not copied: a change made to it in place shows in
    the next request's environ.  With *raw_uri_key*, the environ also has
    the request target exactly as sent under that key."""

    def __new__(
        cls,
        max_headers: int,
        base_env: dict[str, Any],
        limits: tuple[int | None, int | None, int | None],
        raw_uri_key: str | None = None,
    ) -> RequestParser: ...
    def parse(self, data: bytes | bytearray | memoryview) -> RequestHead | None:
        """``request_environ(data, max_headers, base_env, limits)``."""

@final
class ResponseHead:
    """A checked, encoded ``start_response`` (what :func:`response_head` returns)."""

    @property
    def status(self) -> str:
        """The status as a native str."""
    @property
    def status_bytes(self) -> bytes:
        """The status as latin-1 bytes."""
    @property
    def code(self) -> int:
        """The status code."""
    @property
    def header_block(self) -> bytes:
        """Every header line, CRLF-terminated, as latin-1 bytes."""
    @property
    def content_length(self) -> str | None:
        """The Content-Length given, stripped (None when absent)."""
    @property
    def content_length_value(self) -> int | None:
        """That Content-Length as an int (None when absent)."""
    @property
    def date(self) -> str | None:
        """The Date given (None when absent)."""
    @property
    def connection(self) -> str | None:
        """The Connection given (None when absent)."""
    @property
    def transfer_encoding(self) -> str | None:
        """The Transfer-Encoding given (None when absent)."""
    @property
    def connection_close(self) -> bool:
        """Whether the Connection header lists ``close``."""
    @property
    def bodiless(self) -> bool:
        """Whether the status forbids a body (1xx, 204, 304)."""
    @property
    def framed(self) -> bool:
        """Whether a Content-Length or Transfer-Encoding was given."""
    def response_bytes(
        self, content_length: int | None, chunked: bool, connection: int, body: bytes
    ) -> bytes:
        """The response head, then *body*, as one bytes object: this head's
        status line and header lines, a Date of the current second unless one
        was given, a Content-Length line unless *content_length* is None,
        ``Transfer-Encoding: chunked`` if *chunked*, ``Connection: close``
        (*connection* 1) or ``keep-alive`` (2) or none (0), and the blank
        line."""

def response_head(status: str, headers: Iterable[tuple[str, str]]) -> ResponseHead:
    """Check and encode a WSGI ``start_response(status, headers)``.

    Returns a :class:`ResponseHead`; raises UnicodeError for non-str or
    non-latin-1 values and ValueError for CR/LF, a bad status, a bad
    Content-Length, a header name that is not a token or a control
    character in a value or the status, with gevent's messages."""

def http_date(timestamp: int | None = None) -> bytes:
    """The IMF-fixdate (RFC 9110) of *timestamp* (seconds since the epoch,
    up to the end of 9999), or of the current second (cached)."""

def serve_requests(
    handler: Any, clear: bool, input_class: Callable[..., Any], park_after: float | None = None
) -> Any:
    """Serve the usual keep-alive requests of a ``WSGIHandler``'s connection
    in Rust (pywsgi's native request loop).  None: close the connection;
    True: the request in the handler's ``_rbuf`` is one for the Python path;
    False: the handler finished a request the loop began; else what
    ``handler._park(left)`` returned once the connection waited *park_after*
    seconds for a request (``left``: the rest of its idle timeout)."""

@final
class start_response:
    """The WSGI ``start_response`` the native request loop gives the
    application: the usual call is recorded in Rust, anything else handed to
    the handler's own."""

    def __call__(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> write: ...

@final
class write:
    """The ``write`` callable of :class:`start_response`: the handler frames
    a written body (the request is handed over first)."""

    def __call__(self, data: bytes) -> None: ...

def recv_nowait(fd: int, bufsize: int, flags: int = 0) -> bytes | None:
    """``recv()`` on a non-blocking fd: the bytes read (``b""`` at EOF), or None
    if it would block. Other errors raise OSError with the errno."""

def send_nowait(fd: int, data: ReadableBuffer, flags: int = 0) -> int | None:
    """``send()`` on a non-blocking fd: bytes sent, or None if it would block.
    *data* is bytes or any byte buffer (BufferError for one that is not flat)."""

# --- greenwheel.asyncio's hot path (rust/py/aio.rs) ---------------------------------

_Ts = TypeVarTuple("_Ts")

class _HandleBase:
    """What Handle and TimerHandle share (not a runtime class)."""

    def cancel(self) -> None: ...
    def cancelled(self) -> bool: ...
    def get_context(self) -> contextvars.Context: ...
    def _run(self) -> None: ...
    @property
    def _cancelled(self) -> bool: ...
    @property
    def _callback(self) -> Callable[..., object] | None: ...
    @property
    def _args(self) -> tuple[Any, ...] | None: ...
    @property
    def _context(self) -> contextvars.Context: ...
    @property
    def _loop(self) -> Any: ...
    @property
    def _source_traceback(self) -> list[Any] | None: ...

@final
class Handle(_HandleBase):
    """A callback scheduled by :meth:`AioLoopCore.call_soon` (asyncio's Handle, natively)."""

@final
class TimerHandle(_HandleBase):
    """A callback scheduled by :meth:`AioLoopCore.call_later` / ``call_at``
    (asyncio's TimerHandle, natively), armed in the loop's wheel."""

    def when(self) -> float: ...
    @property
    def _when(self) -> float: ...
    @property
    def _scheduled(self) -> bool: ...
    def __lt__(self, other: object, /) -> bool: ...
    def __le__(self, other: object, /) -> bool: ...
    def __gt__(self, other: object, /) -> bool: ...
    def __ge__(self, other: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class ReadyQueue:
    """An asyncio loop's ``_ready``: the deque operations asyncio uses on it."""

    def append(self, handle: object) -> None: ...
    def popleft(self) -> Any: ...
    def clear(self) -> None: ...
    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...

@disjoint_base
class AioLoopCore:
    """The Rust base class of :class:`greenwheel.asyncio.GreenwheelEventLoop`."""

    def __new__(cls, *_args: Any, **_kwargs: Any) -> Self: ...
    def _aio_setup(self, gw_loop: Loop) -> None: ...
    def call_soon(
        self,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> Handle: ...
    def call_at(
        self,
        when: float | None,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> TimerHandle: ...
    def call_later(
        self,
        delay: float | None,
        callback: Callable[[*_Ts], object],
        *args: *_Ts,
        context: contextvars.Context | None = None,
    ) -> TimerHandle: ...
    def _disarm_timers(self) -> None: ...
    def _armed_count(self) -> int: ...
    def _schedule_drain(self) -> None: ...
    def get_debug(self) -> bool: ...
    def _add_reader(self, fd: Any, callback: Callable[..., object], *args: Any) -> Handle: ...
    def _add_writer(self, fd: Any, callback: Callable[..., object], *args: Any) -> Handle: ...
    def _remove_reader(self, fd: Any) -> bool: ...
    def _remove_writer(self, fd: Any) -> bool: ...
    def _io_fired(self, revents: int, fd: int) -> None: ...
    def _resume_io(self) -> None: ...
    def _close_io(self) -> None: ...
    def _io_registrations(
        self,
    ) -> dict[int, tuple[Any, int, tuple[Handle | None, Handle | None]]]: ...
    def _drain(self) -> None: ...
    def create_future(self) -> Any: ...
    def create_task(
        self, coro: Any, *, name: str | None = None, context: contextvars.Context | None = None
    ) -> Any: ...
    _task_factory: Callable[..., Any] | None
    def _run_ready(self) -> None: ...
    @property
    def _ready(self) -> ReadyQueue: ...
    @_ready.setter
    def _ready(self, value: object) -> None: ...
    _closed: bool
    _debug: bool
    @property
    def _drain_queued(self) -> bool: ...
    _runners: int
    _forever: Any
    _stopping: Any

# --- greenwheel.asyncio's socket transport (rust/py/aio_transport.rs) -------

def install_transport_write(cls: type, base_write: Callable[[Any, Any], object]) -> None:
    """Make ``cls.write`` the native write through the ``_gw_writer`` slot."""

@final
class TransportAttrs:
    """The transport attributes the native paths read, stored natively."""

    def __new__(cls) -> Self: ...
    _conn_lost: Any
    _eof: Any
    _empty_waiter: Any
    _buffer: Any
    _protocol: Any

@final
class TransportIO:
    """A socket transport's ``_read_ready`` (reads into ``data_received``)
    and ``write`` (sends at once when asyncio's would)."""

    def __new__(
        cls,
        transport: Any,
        attrs: TransportAttrs,
        fd: int,
        max_size: int,
        base_write: Callable[[Any, Any], object],
        gw_loop: Loop | None = None,
    ) -> Self: ...
    data_path: bool
    def read_ready(self, /) -> None: ...
    def write(self, data: Any, /) -> None: ...
