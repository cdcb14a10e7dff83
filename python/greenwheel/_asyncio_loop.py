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
* ``add_reader`` / ``add_writer`` register an io watcher on the loop's poller,
  through :class:`_WatcherSelector`, a selector whose registrations are
  watchers;
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
import sys
import threading
from asyncio import base_events, events, unix_events

from greenlet import getcurrent

from . import _core
from ._hub import Waiter, _get_hub_if_exists, get_hub

__all__ = ["EventLoopPolicy", "GreenwheelEventLoop", "new_event_loop", "run"]

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


def _to_watcher_mask(events_):
    return (_core.READ if events_ & _READ else 0) | (_core.WRITE if events_ & _WRITE else 0)


def _noop():
    pass


class _WatcherSelector(selectors._BaseSelectorImpl):
    """A selector whose registrations are io watchers of a greenwheel loop.

    asyncio's selector loop keeps its ``(reader, writer)`` handles in the
    selector keys; this selector keeps that bookkeeping (the base class's) and
    starts one watcher per fd with the registered events. A watcher that fires
    records the fd's ready events and tells the event loop; :meth:`select`
    hands over (and forgets) what was recorded. It never blocks: waiting is
    greenwheel's loop's job.
    """

    def __init__(self, gw_loop, on_ready):
        super().__init__()
        self._gw = gw_loop
        self._on_ready = on_ready  # called (in the hub) after a watcher fired
        self._watchers = {}  # fd -> IoWatcher
        self._events = {}  # fd -> selector events seen since the last select()
        self._paused = set()  # fds whose watcher was stopped while not running
        self.running = False

    def register(self, fileobj, events_, data=None):
        key = super().register(fileobj, events_, data)
        try:
            self._watch(key.fd, events_)
        except BaseException:
            super().unregister(fileobj)
            raise
        return key

    def unregister(self, fileobj):
        key = super().unregister(fileobj)
        self._forget(key.fd)
        return key

    def modify(self, fileobj, events_, data=None):
        # The base class modifies by unregister + register; doing it in place
        # here keeps the fd's watcher object and saves the key churn.
        try:
            key = self._fd_to_key[self._fileobj_lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if events_ != key.events:
            if not events_ or events_ & ~(_READ | _WRITE):
                raise ValueError(f"Invalid events: {events_!r}")
            self._watch(key.fd, events_)
            # Events no longer watched must not be reported.
            seen = self._events.get(key.fd)
            if seen is not None:
                seen &= events_
                if seen:
                    self._events[key.fd] = seen
                else:
                    del self._events[key.fd]
        if events_ != key.events or data is not key.data:
            key = key._replace(events=events_, data=data)
            self._fd_to_key[key.fd] = key
        return key

    def _watch(self, fd, events_):
        old = self._watchers.pop(fd, None)
        if old is not None:
            old.close()
        # ref=False: registrations alone do not keep the hub's loop alive
        # (asyncio keeps it alive while it runs, see GreenwheelEventLoop).
        watcher = self._gw.io(fd, _to_watcher_mask(events_), False)
        self._paused.discard(fd)
        watcher.start(self._fired, fd, pass_events=True)
        self._watchers[fd] = watcher

    def _forget(self, fd):
        watcher = self._watchers.pop(fd, None)
        if watcher is not None:
            watcher.close()
        self._events.pop(fd, None)
        self._paused.discard(fd)

    def _fired(self, revents, fd):
        seen = (_READ if revents & _core.READ else 0) | (_WRITE if revents & _core.WRITE else 0)
        events_ = self._events
        events_[fd] = events_.get(fd, 0) | seen
        self._on_ready()  # (no batch is queued while asyncio is not running)
        if not self.running:
            # Nobody will run the handles until asyncio runs again; the fd stays
            # ready (level-triggered), so stop the watcher rather than have it
            # fire on every pass of the hub meanwhile.
            watcher = self._watchers.get(fd)
            if watcher is not None:
                watcher.stop()
                self._paused.add(fd)

    def resume(self):
        """Restart the watchers stopped while the event loop was not running."""
        self.running = True
        paused, self._paused = self._paused, set()
        for fd in paused:
            watcher = self._watchers.get(fd)
            if watcher is not None:
                watcher.start(self._fired, fd, pass_events=True)

    def select(self, timeout=None):
        """The ``(key, events)`` pairs seen since the last call; never waits
        (greenwheel's loop does the waiting), whatever *timeout* says."""
        if not self._events:
            return []
        seen, self._events = self._events, {}
        ready = []
        fd_to_key = self._fd_to_key
        for fd, events_ in seen.items():
            key = fd_to_key.get(fd)
            if key is not None:
                events_ &= key.events
                if events_:
                    ready.append((key, events_))
        return ready

    def close(self):
        for watcher in self._watchers.values():
            watcher.close()
        self._watchers.clear()
        self._events.clear()
        self._paused.clear()
        super().close()


# The event loop a greenlet's await_() uses when none is given: per thread,
# the first greenwheel loop that started running there.
_running = threading.local()


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
        # (_runners, run_forever plus greenlets in await_(), and _drain_queued
        # start at 0 and False in the Rust base.)
        self._forever = None  # the Waiter of the greenlet in run_forever()
        self._signal_watchers = {}
        self._old_agen_hooks = None
        self._wakeup = None
        # ref=True, started only while running: what keeps the hub's loop
        # from running dry while asyncio waits (run_forever blocks forever,
        # as asyncio's does, until stop()).
        self._keepalive = self._gw.async_(True)
        # Batches run from a zero-delay timer rather than a loop callback: the
        # loop polls the kernel before it dispatches timers, so every batch
        # starts with fresh io events, as asyncio's _run_once does (a burst of
        # loop callbacks may skip the poll for up to a millisecond).
        self._kick = self._gw.timer(0.0, 0.0, False)
        self._aio_setup(self._gw, self._kick, self._drain)
        super().__init__(_WatcherSelector(self._gw, self._io_ready))

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
                future.set_exception(outcome.exception)

        result.rawlink(settle)
        return future

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

    # _drain() (a batch: the io events, then the ready handles) is the Rust
    # base's; it calls these two for what stays in Python:

    def _process_io(self):
        event_list = self._selector.select(0)
        if event_list:
            self._process_events(event_list)

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
        self._selector.resume()
        if self._ready or self._stopping:
            self._schedule_drain()

    def _release(self):
        self._runners -= 1
        if self._runners:
            return
        self._selector.running = False
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
        self._keepalive.close()
        self._kick.close()

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
