"""An asyncio event loop whose scheduling runs on greenwheel's Rust loop.

:class:`GreenwheelEventLoop` is asyncio's own Unix selector loop (so
transports, protocols, streams, the ``sock_*`` methods, servers, subprocesses
and ``run_in_executor`` are asyncio's proven code) with the parts that wait
replaced by the hub's loop:

* ``call_soon`` handles go to the ``_ready`` queue; a zero-delay wheel timer
  per batch runs them, the way asyncio's ``_run_once`` runs the handles that
  were ready when it started;
* ``call_later`` / ``call_at`` arm a one-shot timer in the loop's timer wheel
  (never early: the wheel and :func:`time.monotonic` read the same clock);
* those three, their handles, the ready queue and the batch runner are native
  (``_core.AioLoopCore``, the loop's Rust base class, rust/py/aio.rs): they
  were half of every ``asyncio.sleep(0)``'s time as asyncio's Python code;
* ``add_reader`` / ``add_writer`` register an io watcher on the loop's poller
  per fd (natively, in the Rust base; :class:`_Registrations` shows them as a
  read-only selector);
* ``call_soon_threadsafe`` wakes the loop through an async watcher instead of
  asyncio's self-pipe;
* signal handlers are signal watchers of the loop, so asyncio and greenwheel
  do not fight over :func:`signal.set_wakeup_fd`.

There is no separate thread or poll: ``run_forever`` blocks only the calling
greenlet and switches to the hub, so greenlets and coroutines interleave on
one loop in one thread. asyncio's handles run (inside the hub) only while the
asyncio loop is *running*: while some greenlet is in ``run_forever`` /
``run_until_complete``, or in :func:`greenwheel.asyncio.await_`.
"""

import asyncio
import selectors
import signal
import socket
import sys
import threading
from asyncio import base_events, events, futures, protocols, selector_events, unix_events

from greenlet import getcurrent

from . import _core
from ._hub import Waiter, _get_hub_if_exists, get_hub

__all__ = ["EventLoopPolicy", "GreenwheelEventLoop", "new_event_loop", "run"]


def _noop():
    pass


class _Registrations(selectors.BaseSelector):
    """The loop's fd registrations seen as a selector, read-only.

    asyncio's selector loop wants a selector, and code that inspects a loop
    asks it for keys (``loop._selector.get_key(sock)``). The registrations
    live in the loop's Rust base (``_add_reader`` / ``_add_writer``, one io
    watcher per fd, rust/py/aio/io.rs); this shows them with asyncio's
    ``(reader, writer)`` key data. It never selects: the hub's loop polls and
    the io watchers dispatch.
    """

    def __init__(self, loop):
        self._loop = loop

    def register(self, fileobj, events, data=None):
        raise RuntimeError("register fds through the loop's add_reader() / add_writer()")

    def unregister(self, fileobj):
        raise RuntimeError("unregister fds through the loop's remove_reader() / remove_writer()")

    def select(self, timeout=None):
        # Nothing is ever pending here: ready fds reach the loop's batches
        # through their watchers.
        return []

    def get_key(self, fileobj):
        fd = selectors._fileobj_to_fd(fileobj)
        try:
            return self.get_map()[fd]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def get_map(self):
        # Keyed by fd (selectors' own map also finds a key by its file object).
        return {
            fd: selectors.SelectorKey(fileobj, fd, events_, data)
            for fd, (fileobj, events_, data) in self._loop._io_registrations().items()
        }


# The event loop a greenlet's await_() uses when none is given: per thread,
# the first greenwheel loop that started running there.
_running = threading.local()


# Stream sockets whose short reads mean the receive queue was emptied.
_STREAM_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


# (The ignore: typeshed does not declare asyncio's private transport class.)
class _SocketTransport(selector_events._SelectorSocketTransport):  # type: ignore[name-defined]
    """asyncio's socket transport, reading at most 64 KiB per ``recv()``.

    asyncio's 256 KiB ``max_size`` makes every ``recv()`` allocate a 256 KiB
    bytes object before shrinking it to what arrived. That is above glibc's
    initial mmap threshold (128 KiB), and the threshold only rises when a
    chunk that big is freed, which a shrunk chunk never is: depending on the
    process's allocation history, each read then costs an mmap, an mremap
    and a munmap (40,000 of each in tcp_echo_protocol, measured with
    ``strace -c``: 37k round trips/s against 110k without them). 64 KiB (what
    libuv, hence uvloop, reads at a time) stays on the heap in every case.
    """

    max_size = 64 * 1024

    # The native reader and writer (one TransportIO, or None once the
    # connection is lost), in slots: the class's write (installed below)
    # reads `_gw_writer` there without a dict lookup. `_gw_reader` is a
    # slot too: nothing here reads `self.__dict__`, which would
    # materialise the instance dict, and CPython 3.11 then no longer
    # specialises method calls on the transport (`transport.write(...)`,
    # `transport.is_closing()`: each took the generic lookup).
    __slots__ = ("_gw_writer", "_gw_reader")

    # Reading into data_received and the write() that sends at once are
    # native (rust/py/aio_transport.rs): four Python frames of every echo
    # round trip. The reader's bound method is an instance attribute
    # shadowing asyncio's _read_ready, set before asyncio's __init__
    # registers it with the loop; write is the class's own (see below).
    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        fd = sock.fileno()
        # The greenwheel loop is told when a read empties the socket (it
        # then needs no epoll_ctl before the next wait): for stream sockets
        # of these families, whose short reads mean an empty queue.
        stream = sock.type == socket.SOCK_STREAM and sock.family in _STREAM_FAMILIES
        attrs = self._gw_attrs = _core.TransportAttrs()
        native = self._gw_reader = self._gw_writer = _core.TransportIO(
            self,
            attrs,
            fd,
            self.max_size,
            selector_events._SelectorSocketTransport.write,
            loop._gw if stream else None,
        )
        self._read_ready = native.read_ready
        super().__init__(loop, sock, protocol, waiter, extra, server)

    def set_protocol(self, protocol):
        super().set_protocol(protocol)
        reader = self._gw_reader  # (None once the connection is lost)
        if reader is not None:
            reader.data_path = not isinstance(protocol, protocols.BufferedProtocol)

    def _call_connection_lost(self, exc):
        try:
            super()._call_connection_lost(exc)
        finally:
            # It refers to the transport: let it go by reference counting.
            if self._gw_reader is not None:
                self._gw_reader = None
                del self._read_ready  # (asyncio's own _read_ready shows again)
            self._gw_writer = None


def _native_attr(name):
    """A property storing asyncio's attribute *name* in the transport's
    ``_core.TransportAttrs``, where the native paths read it without a
    dict lookup (rust/py/aio_transport.rs)."""

    def get(self):
        return getattr(self._gw_attrs, name)

    def set(self, value):
        setattr(self._gw_attrs, name, value)

    return property(get, set, doc=f"asyncio's ``{name}``, stored natively.")


# write(): natively through _gw_writer while it holds a TransportIO,
# else asyncio's. (The ignore: as for the class above.)
_core.install_transport_write(
    _SocketTransport,
    selector_events._SelectorSocketTransport.write,  # type: ignore[attr-defined]
)

# The attributes the native read and write paths read on every call.
for _name in ("_conn_lost", "_eof", "_empty_waiter", "_buffer", "_protocol"):
    setattr(_SocketTransport, _name, _native_attr(_name))
del _name


# (The ignore: call_soon returns the native Handle of rust/py/aio.rs, which
# offers asyncio.Handle's interface without being its subclass, as uvloop's
# does not either, so the checker sees two incompatible call_soons.)
class GreenwheelEventLoop(_core.AioLoopCore, unix_events.SelectorEventLoop):  # type: ignore[misc]
    """asyncio's event loop, scheduled by greenwheel's loop (see the module docs).

    Bound to the thread that creates it (greenwheel's loops are per thread).
    Its Rust base class (rust/py/aio.rs) holds ``call_soon``, ``call_later``
    and ``call_at``, their handles, the armed timers, the ready queue
    (``_ready``) and the batch runner, and the state they read: ``_closed``,
    ``_debug``, ``_drain_queued`` and ``_runners``.
    """

    def __init__(self):
        self._hub = get_hub()
        self._gw = self._hub.loop
        # Set before the base __init__, which already registers through them.
        # (_runners, run_forever plus greenlets in await_(), starts at 0 in
        # the Rust base; _drain_queued, whether a batch is queued, reads
        # False until one is.)
        self._forever = None  # the Waiter of the greenlet in run_forever()
        self._signal_watchers = {}
        self._old_agen_hooks = None
        self._wakeup = None
        # ref=True, started only while running: what keeps the hub's loop
        # from running dry while asyncio waits (run_forever blocks forever,
        # as asyncio's does, until stop()).
        self._keepalive = self._gw.async_(True)
        # Batches run from a zero-delay entry of the hub's timer wheel (the
        # kick, armed natively) rather than a loop callback: the loop polls
        # the kernel before it dispatches timers, so every batch starts with
        # fresh io events, as asyncio's _run_once does (a burst of loop
        # callbacks may skip the poll for up to a millisecond).
        self._aio_setup(self._gw)
        super().__init__(_Registrations(self))

    # -- run_in_executor(None, ...) runs on the hub's thread pool ------------

    def run_in_executor(self, executor, func, *args):
        """``run_in_executor(None, func, *args)`` runs *func* on the hub's
        :class:`~greenwheel.threadpool.ThreadPool` (``get_hub().threadpool``),
        the pool greenlets use, instead of a second pool of threads; its
        outcome reaches the future on the loop's thread without a
        ``call_soon_threadsafe`` round trip. An explicit *executor*, or one
        set with ``set_default_executor()``, is used as asyncio uses it."""
        if executor is not None or self._default_executor is not None:
            return super().run_in_executor(executor, func, *args)
        self._check_closed()
        if self._debug:
            self._check_callback(func, "run_in_executor")
        # After shutdown_default_executor(), asyncio refuses new work.
        self._check_default_executor()
        future = self.create_future()
        result = self._hub.threadpool.spawn(func, *args)

        def settle(outcome):
            # In the hub: the loop's own thread. A cancelled future only
            # forgets the outcome (a running thread cannot be stopped, as
            # with asyncio's executor).
            if future.cancelled():
                return
            if outcome.successful():
                future.set_result(outcome.value)
            else:
                # concurrent.futures' CancelledError (and InvalidStateError)
                # raised by the function becomes asyncio's, as asyncio's
                # executor futures convert it.
                future.set_exception(futures._convert_future_exc(outcome.exception))

        result.rawlink(settle)
        return future

    # -- transports ----------------------------------------------------------

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        return _SocketTransport(self, sock, protocol, waiter, extra, server)

    # -- the self-pipe is an async watcher ---------------------------------

    def _make_self_pipe(self):
        # call_soon_threadsafe() from another thread appends to _ready (a
        # deque: thread-safe) and sends this watcher, which schedules a batch.
        self._wakeup = self._gw.async_(False)
        self._wakeup.start(self._schedule_drain)

    def _close_self_pipe(self):
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None:
            wakeup.close()

    def _write_to_self(self):
        wakeup = self._wakeup
        if wakeup is not None:
            wakeup.send()

    # -- scheduling ----------------------------------------------------------

    # _schedule_drain(), call_soon(), call_later() and call_at() are the
    # Rust base's.

    def _add_callback(self, handle):
        if not handle._cancelled:
            self._ready.append(handle)
            self._schedule_drain()

    def call_soon_threadsafe(self, callback, *args, context=None):
        self._check_closed()
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        # Not _call_soon(): that schedules through the loop, which only its
        # own thread may touch.
        handle = events.Handle(callback, args, self, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        self._ready.append(handle)
        self._write_to_self()
        return handle

    # _drain() (a batch: the io events, then the ready handles) and the fd
    # registrations (_add_reader, _remove_reader, _add_writer,
    # _remove_writer) are the Rust base's.

    def _run_debug(self, ready):
        for _ in range(len(ready)):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            try:
                self._current_handle = handle
                t0 = self.time()
                handle._run()
                dt = self.time() - t0
                if dt >= self.slow_callback_duration:
                    base_events.logger.warning(
                        "Executing %s took %.3f seconds", base_events._format_handle(handle), dt
                    )
            finally:
                self._current_handle = None

    # -- running -------------------------------------------------------------

    def _acquire(self):
        """Start running (or join those running): handles run from now on."""
        self._check_hub()
        self._runners += 1
        if self._runners > 1:
            return
        self._thread_id = threading.get_ident()
        if getattr(_running, "loop", None) is None:
            _running.loop = self
        self._set_coroutine_origin_tracking(self._debug)
        self._old_agen_hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter_hook, finalizer=self._asyncgen_finalizer_hook
        )
        self._keepalive.start(_noop)
        self._resume_io()
        if self._ready or self._stopping:
            self._schedule_drain()

    def _release(self):
        self._runners -= 1
        if self._runners:
            return
        self._keepalive.stop()
        self._thread_id = None
        if getattr(_running, "loop", None) is self:
            _running.loop = None
        self._set_coroutine_origin_tracking(False)
        hooks, self._old_agen_hooks = self._old_agen_hooks, None
        if hooks is not None:
            sys.set_asyncgen_hooks(*hooks)

    def _check_hub(self):
        hub = self._hub
        if _get_hub_if_exists() is not hub or hub.loop is not self._gw or getcurrent() is hub:
            raise RuntimeError(
                "a greenwheel asyncio loop runs only in a greenlet (not the hub) of the "
                "thread, and with the hub, that created it"
            )

    def _check_running(self):
        # Greenlets blocked in await_() make the loop "running" without making
        # run_forever() unavailable: only another run_forever() is refused.
        if self._forever is not None:
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError("Cannot run the event loop while another loop is running")
        self._check_hub()

    def run_forever(self):
        """Run until :meth:`stop`, blocking only the calling greenlet."""
        self._check_closed()
        self._check_running()
        waiter = Waiter(self._hub)
        self._acquire()
        self._forever = waiter
        try:
            if self._stopping:
                self._schedule_drain()
            waiter.get()
        finally:
            self._forever = None
            self._stopping = False
            self._release()

    def stop(self):
        self._stopping = True
        # A stop() from outside a batch (a greenlet) still ends run_forever()
        # after one batch, as asyncio's does.
        self._schedule_drain()

    def close(self):
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        self._disarm_timers()
        super().close()
        self._close_io()
        self._keepalive.close()

    # -- signals: the loop's signal watchers ----------------------------------

    def add_signal_handler(self, sig, callback, *args):
        if asyncio.iscoroutine(callback) or asyncio.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be added in the main thread")
        handle = events.Handle(callback, args, self, None)
        old = self._signal_watchers.pop(sig, None)
        if old is not None:
            old.close()
        watcher = self._gw.signal(sig, False)
        try:
            watcher.start(self._signal_fired, sig)
        except OSError as exc:
            watcher.close()
            self._signal_handlers.pop(sig, None)
            if exc.errno == 22:  # EINVAL
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise
        except ValueError as exc:
            watcher.close()
            raise RuntimeError(str(exc)) from None
        self._signal_handlers[sig] = handle
        self._signal_watchers[sig] = watcher

    def _signal_fired(self, sig):
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self._add_callback(handle)

    def _handle_signal(self, sig):
        self._signal_fired(sig)

    def remove_signal_handler(self, sig):
        self._check_signal(sig)
        watcher = self._signal_watchers.pop(sig, None)
        if self._signal_handlers.pop(sig, None) is None:
            return False
        if watcher is not None:
            watcher.close()  # puts back the handler found when it started
        # Then the state asyncio documents after removal.
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == 22:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise
        return True


def new_event_loop():
    """A new :class:`GreenwheelEventLoop` on the calling thread's hub."""
    return GreenwheelEventLoop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy, making :class:`GreenwheelEventLoop` loops.

    ``asyncio.set_event_loop_policy(greenwheel.asyncio.EventLoopPolicy())``
    makes ``asyncio.run()`` and ``asyncio.new_event_loop()`` use greenwheel.
    """

    def _loop_factory(self):
        return GreenwheelEventLoop()


def run(main, *, debug=None):
    """``asyncio.run(main)`` on a new :class:`GreenwheelEventLoop`."""
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)


def _thread_running_loop():
    return getattr(_running, "loop", None)
