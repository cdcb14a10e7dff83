"""The hub: the per-thread greenlet that runs the Rust event loop.

Every other greenlet of a thread has the hub as its parent.  A greenlet blocks
by arranging for the loop to switch back to it later (a callback, a timer, an
fd watcher) and then switching to the hub; the hub runs the loop, and the loop
resumes whoever is due.  When the loop has nothing left to do the hub throws
:class:`LoopExit` into the thread's main greenlet, because whatever it waits
for can no longer happen.

This module also holds the primitives other modules build on and that must
stay importable from here: :func:`get_hub`, :class:`Waiter`, :func:`getcurrent`,
:func:`sleep`.  :func:`wait` and :func:`iwait` are in :mod:`greenwheel._wait`.

Ground rules:
- This is the lowest layer of the Python implementation: it imports only
  ``_core``, ``_config``, ``_exceptions`` and ``_typecheck``, at module level
  or inside functions (``tests/test_layers.py`` checks).  What a hub makes on
  first use from the layers above, its thread pool and its monitoring
  thread, comes from the functions :func:`register_providers` was given (by
  ``greenwheel._providers``); its resolver class from ``config.resolver``.
- Those are looked up when a hub first needs them, never on a switch.
"""

from __future__ import annotations

import _thread
import os
import signal as _signal
import sys
import threading
import time
import traceback
import weakref
from functools import partial
from heapq import heappop, heappush

from greenlet import GreenletExit, getcurrent
from greenlet import error as _GreenletError
from greenlet import greenlet as _RawGreenlet

from . import _core
from ._config import config as _config
from ._config import on_change as _config_on_change
from ._exceptions import (
    BlockingSwitchOutError,
    ConcurrentObjectUseError,
    HubDestroyed,
    InvalidSwitchError,
    LoopExit,
)
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import IO, Any, Literal, NoReturn

    from ._monitor import PeriodicMonitoringThread
    from ._threadpool import ThreadPool

__all__ = [
    "getcurrent",
    "GreenletExit",
    "get_hub",
    "Hub",
    "Waiter",
    "LoopExit",
    "sleep",
    "idle",
    "spawn_raw",
    "kill",
    "reinit",
]

_main_thread_ident = threading.main_thread().ident
# Bound now: greenwheel.monkey may later replace _thread.get_ident with a
# per-greenlet version, but hubs belong to real OS threads.
_get_ident = _thread.get_ident


# --- per-thread hub ---------------------------------------------------------


class _ThreadState(_thread._local):
    # Class attributes are the initial per-thread values, so a new thread sees
    # ``hub is None`` without any __init__ running on the hot get_hub() path.
    hub: Hub | None = None
    # A default loop kept by ``Hub.destroy(destroy_loop=False)`` for the next hub.
    loop: _core.Loop | None = None


_state = _ThreadState()


def get_hub() -> Hub:
    """Return the hub of the calling OS thread, creating it on first use."""
    hub = _state.hub
    if hub is None:
        hub = _hub_class()
        set_hub(hub)
    return hub


def _get_hub_if_exists() -> Hub | None:
    return _state.hub


# gevent's name for it (``gevent.hub._get_hub``): the hub if there is one, no creation.
_get_hub = _get_hub_if_exists


def set_hub(hub: Hub | None) -> None:
    """Make *hub* the calling thread's hub (gevent's ``_hub_local.set_hub``)."""
    _state.hub = hub
    # The Rust fast paths (sleep) keep their own per-thread pointer.
    _core._set_current_hub(hub)


def set_loop(loop: _core.Loop | None) -> None:
    """Give the calling thread's next hub *loop* (gevent's ``_hub_local.set_loop``)."""
    _state.loop = loop


def get_hub_class() -> type[Hub]:
    """The class :func:`get_hub` instantiates for a thread's first hub."""
    return _hub_class


def set_default_hub_class(hubtype: type[Hub]) -> None:
    """Make :func:`get_hub` create *hubtype* (a :class:`Hub` subclass) from now on.

    As in gevent, hubs that already exist are not replaced.
    """
    global _hub_class
    if not (isinstance(hubtype, type) and issubclass(hubtype, Hub)):
        raise TypeError("hub class must be a subclass of greenwheel.hub.Hub, not %r" % (hubtype,))
    _hub_class = hubtype


# --- what the layers above provide ----------------------------------------------


def _unregistered() -> NoReturn:
    raise RuntimeError(
        "the hub's thread pool and monitor are not registered: import the greenwheel "
        "package (its __init__ registers them; see greenwheel._providers)"
    )


class _Providers:
    """What a hub makes on first use but cannot import.

    :attr:`Hub.threadpool` and :meth:`Hub.start_periodic_monitoring_thread`
    need classes from modules built on this one (they use :func:`get_hub`,
    :class:`Waiter`...), so this module imports none of them: the module
    ``greenwheel._providers``, which the package imports, fills these slots
    with functions that import what they give on first call.  Each is called
    when a hub first needs a pool or a monitor, never on a switch.
    """

    __slots__ = ("threadpool_class", "shared_threadpool", "monitor_class")

    def __init__(self) -> None:
        #: The default :attr:`Hub.threadpool_class`.
        self.threadpool_class: Callable[[], type[ThreadPool]] = _unregistered
        #: The process-wide pool that hubs with the default class and size share.
        self.shared_threadpool: Callable[[], ThreadPool] = _unregistered
        #: The class of :attr:`Hub.periodic_monitoring_thread`.
        self.monitor_class: Callable[[], type[PeriodicMonitoringThread]] = _unregistered


_provided = _Providers()


def register_providers(
    *,
    threadpool_class: Callable[[], type[ThreadPool]],
    shared_threadpool: Callable[[], ThreadPool],
    monitor_class: Callable[[], type[PeriodicMonitoringThread]],
) -> None:
    """Fill the hub's :class:`_Providers` (done once, by ``greenwheel._providers``)."""
    _provided.threadpool_class = threadpool_class
    _provided.shared_threadpool = shared_threadpool
    _provided.monitor_class = monitor_class


#: Threads of the process-wide pool, and :attr:`Hub.threadpool_size`'s default:
#: a hub left at both the default size and class shares that pool.
DEFAULT_POOL_SIZE = 10


def _main_greenlet_of_thread() -> _RawGreenlet:
    # The hub must hand LoopExit and system errors to the greenlet that
    # started the thread, even if the hub is first needed deep inside a
    # raw greenlet tree; walking up the parents finds it.
    glet = getcurrent()
    while glet.parent is not None:
        glet = glet.parent
    return glet


class _IdentRegistry:
    """Hands out small integers for objects, reusing those of dead objects.

    Backs :attr:`Greenlet.minimal_ident`.  Keyed by weak references so that
    asking for an ident never keeps a greenlet alive.
    """

    __slots__ = ("_idents", "_free", "_next", "__weakref__")

    def __init__(self) -> None:
        self._idents: dict[weakref.ref[Any], int] = {}
        self._free: list[int] = []
        self._next = 0

    def get_ident(self, obj: object) -> int:
        key = weakref.ref(obj)
        ident = self._idents.get(key)
        if ident is not None:
            return ident
        if self._free:
            ident = heappop(self._free)
        else:
            ident = self._next
            self._next += 1
        # The callback holds only a weak reference to the registry: the
        # registry belongs to a hub and must not be kept alive by greenlets.
        self_ref = weakref.ref(self)

        def release(dead_key: weakref.ref[Any], self_ref: weakref.ref[Any] = self_ref) -> None:
            registry = self_ref()
            if registry is not None:
                heappush(registry._free, registry._idents.pop(dead_key))

        key = weakref.ref(obj, release)
        hash(key)  # cache the hash: it is needed again after obj is gone
        self._idents[key] = ident
        return ident

    def __len__(self) -> int:
        return len(self._idents)


class Hub(_RawGreenlet):
    """The greenlet that runs the event loop of one OS thread.

    Created by :func:`get_hub`.  ``hub.loop`` is the :class:`greenwheel._core.Loop`;
    the loop reports exceptions raised by callbacks to :meth:`handle_error`.
    """

    #: Exceptions that are passed on to the main greenlet instead of only
    #: being printed when they escape a greenlet or a callback.
    SYSTEM_ERROR = (KeyboardInterrupt, SystemExit, SystemError)
    #: Exceptions that are not printed when they escape a greenlet.
    NOT_ERROR = (GreenletExit, SystemExit)

    name = ""
    _hub_counter = 0

    if TYPE_CHECKING:
        #: The event loop (None once the hub is destroyed).
        loop: _core.Loop
        thread_ident: int
        minimal_ident: int
        _exception_stream: IO[str] | Literal[False] | None
        _ident_registry: _IdentRegistry | None
        #: The hub's ready queue for notifications (see _abstract_linkable).
        _greenwheel_scheduler: Any
        # The thread's main greenlet, always (greenlet's stubs allow None).
        parent: _RawGreenlet

    def __init__(self, loop: _core.Loop | None = None, default: bool | None = None) -> None:
        _RawGreenlet.__init__(self, None, _main_greenlet_of_thread())
        self.thread_ident = _get_ident()
        if loop is not None and hasattr(loop, "run"):
            if default is not None:
                raise TypeError("Unexpected argument: default")
            self.loop = loop
        elif _state.loop is not None:
            self.loop = _state.loop
            _state.loop = None
        else:
            if default is None:
                default = self.thread_ident == _main_thread_ident
            self.loop = _core.Loop(default=default)
        # The loop passes every exception raised by a callback to us.
        self.loop.error_handler = self
        self._exception_stream = None
        self._ident_registry = None
        Hub._hub_counter += 1
        self.minimal_ident = Hub._hub_counter
        if self.thread_ident == _main_thread_ident:
            _install_wakeup_fd(self.loop)

    @property
    def main_hub(self) -> bool:
        """True for the hub of the main thread."""
        return self.thread_ident == _main_thread_ident

    #: Size of the pool :attr:`threadpool` makes (as in gevent; set it on
    #: the class or the hub before the pool is first used). Left at the
    #: shared pool's size with the default :attr:`threadpool_class`, the hub
    #: uses the shared pool instead of making one.
    threadpool_size = DEFAULT_POOL_SIZE

    @property
    def threadpool_class(self) -> type[ThreadPool]:
        """The class :attr:`threadpool` instantiates as
        ``threadpool_class(threadpool_size, hub=hub)``."""
        cls = self.__dict__.get("_threadpool_class")
        if cls is None:
            cls = _provided.threadpool_class()
        return cls

    @threadpool_class.setter
    def threadpool_class(self, cls: type[ThreadPool]) -> None:
        self.__dict__["_threadpool_class"] = cls

    @property
    def threadpool(self) -> ThreadPool:
        """The :class:`greenwheel.threadpool.ThreadPool` for blocking calls.

        Hubs share one process-wide pool of 10 threads, unless this hub was
        given a pool, or a :attr:`threadpool_size` or :attr:`threadpool_class`
        of its own: then it makes its own pool on first use, as gevent does.
        """
        pool = self.__dict__.get("_threadpool")
        if pool is None:
            cls = self.threadpool_class
            if self.threadpool_size == DEFAULT_POOL_SIZE and cls is _provided.threadpool_class():
                # Shared, not owned: destroy() leaves it to the other hubs.
                pool = self.__dict__["_threadpool"] = _provided.shared_threadpool()
                return pool
            pool = self.__dict__["_threadpool"] = cls(self.threadpool_size, hub=self)
            self.__dict__["_owns_threadpool"] = True
        return pool

    @threadpool.setter
    def threadpool(self, pool: ThreadPool) -> None:
        self.__dict__["_threadpool"] = pool
        self.__dict__.pop("_owns_threadpool", None)

    @threadpool.deleter
    def threadpool(self) -> None:
        # The next use makes (or shares) one again; a pool this hub made is the caller's to kill.
        self.__dict__.pop("_threadpool", None)
        self.__dict__.pop("_owns_threadpool", None)

    #: gevent's attributes behind :attr:`threadpool` and :attr:`resolver`: None
    #: until the hub first uses one (read by ported code that checks
    #: ``hub._threadpool is not None`` before touching the pool).
    _threadpool = None
    _resolver = None

    @property
    def resolver_class(self) -> type[Any]:
        """The class of :attr:`resolver` (from ``greenwheel.config.resolver``
        unless assigned): see :mod:`greenwheel.resolver`."""
        cls: type[Any] | None = self.__dict__.get("_resolver_class")
        if cls is None:
            # The setting imports the class its value names (gevent's
            # ImportableSetting), so this module need not know the resolvers.
            cls = _config.resolver
        return cls

    @resolver_class.setter
    def resolver_class(self, cls: type[Any]) -> None:
        self.__dict__["_resolver_class"] = cls

    @property
    def resolver(self) -> Any:
        """What ``greenwheel.socket.getaddrinfo`` and friends ask; made on first use."""
        resolver = self.__dict__.get("_resolver")
        if resolver is None:
            resolver = self.__dict__["_resolver"] = self.resolver_class(hub=self)
        return resolver

    @resolver.setter
    def resolver(self, resolver: Any) -> None:
        self.__dict__["_resolver"] = resolver

    @resolver.deleter
    def resolver(self) -> None:
        self.__dict__.pop("_resolver", None)

    @property
    def ident_registry(self) -> _IdentRegistry:
        registry = self._ident_registry
        if registry is None:
            registry = self._ident_registry = _IdentRegistry()
        return registry

    @property
    def exception_stream(self) -> IO[str] | Literal[False]:
        """Where :meth:`print_exception` writes; ``sys.stderr`` unless assigned.

        Resolved at print time so redirected ``sys.stderr`` is honoured.
        Assign a false value to silence error printing.
        """
        stream = self._exception_stream
        return sys.stderr if stream is None else stream

    @exception_stream.setter
    def exception_stream(self, stream: IO[str] | None | Literal[False]) -> None:
        self._exception_stream = stream if stream is not None else False

    @exception_stream.deleter
    def exception_stream(self) -> None:
        self._exception_stream = None  # back to sys.stderr, resolved at print time

    def __repr__(self) -> str:
        loop = self.loop
        if loop is None:
            info = "destroyed"
        else:
            parts = []
            if getattr(loop, "default", False):
                parts.append("default")
            for attr in ("pendingcnt", "activecnt"):
                try:
                    parts.append("%s=%s" % (attr, getattr(loop, attr)))
                except Exception:  # a loop attribute we cannot read is not fatal here
                    pass
            info = " ".join(parts)
        return "<%s %r at 0x%x %s thread_ident=%s>" % (
            type(self).__name__,
            self.name,
            id(self),
            info,
            hex(self.thread_ident),
        )

    # -- error handling -----------------------------------------------------

    @staticmethod
    def _normalize_exception(t: Any, v: Any, tb: Any) -> tuple[Any, Any, Any]:
        # gevent's helper: (type, value, tb) with value an instance, as
        # handle_error may be given a bare type or a string.
        if t is None and v is None:
            t, v, tb = sys.exc_info()
        if isinstance(v, str):
            v = t(v)
        return t, v, tb

    def handle_error(self, context: object, type: Any, value: Any, tb: Any) -> None:
        """Report an exception that escaped a greenlet or a loop callback.

        *context* is what failed (a greenlet, a callback, ...), or None for an
        error of the loop itself.  Prints the traceback unless the type is in
        :attr:`NOT_ERROR`; passes system errors (and context-less errors) on to
        the main greenlet.  Must not raise.
        """
        type, value, tb = self._normalize_exception(type, value, tb)
        if type is HubDestroyed:
            # destroy() unwinds the hub with this; let it keep propagating.
            # Clearing the locals breaks the exception -> traceback -> this
            # frame -> exception cycle, so a destroyed hub is freed at once.
            try:
                raise value.with_traceback(tb)
            finally:
                value = tb = None
        if not issubclass(type, self.NOT_ERROR):
            self.print_exception(context, type, value, tb)
        if context is None or issubclass(type, self.SYSTEM_ERROR):
            self.handle_system_error(type, value, tb)

    def handle_system_error(self, type: Any, value: Any, tb: Any = None) -> None:
        """Raise a system error (KeyboardInterrupt, SystemExit...) in the main greenlet."""
        current = getcurrent()
        if current is self or current is self.parent or self.loop is None:
            self.parent.throw(type, value, tb)
            return
        # Called from an ordinary greenlet (its function raised SystemExit):
        # make sure that greenlet is resumed later so it can finish dying.
        resume = None
        try:
            resume = self.loop.run_callback(current.switch)
        except Exception:
            traceback.print_exc(file=self.exception_stream or sys.stderr)
        try:
            self.parent.throw(type, value, tb)
        finally:
            if resume is not None:
                resume.stop()

    def print_exception(self, context: object, type: Any, value: Any, tb: Any) -> None:
        stream = self.exception_stream
        if not stream:
            return
        try:
            if value is None:
                stream.write("%s\n" % type.__name__)
            else:
                traceback.print_exception(type, value, tb, file=stream)
        except Exception:  # a stream that cannot be written must not take the hub down
            return
        finally:
            del tb
        try:
            stream.write(time.ctime())
            stream.write(" " if context is not None else "\n")
            if context is not None:
                if not isinstance(context, str):
                    try:
                        context = repr(context)
                    except Exception:
                        context = object.__repr__(context)
                stream.write(
                    "%s failed with %s\n\n" % (context, getattr(type, "__name__", "exception"))
                )
        except Exception:  # a broken stream must not take the hub down
            pass

    # -- monitoring ---------------------------------------------------------

    #: The :class:`~greenwheel._monitor.PeriodicMonitoringThread`, once started.
    periodic_monitoring_thread: PeriodicMonitoringThread | None = None

    def start_periodic_monitoring_thread(
        self, max_blocking_time: float | None = None
    ) -> PeriodicMonitoringThread:
        """Start (once) the thread that reports greenlets blocking this hub.

        Call from the hub's own thread.  *max_blocking_time* defaults to
        ``greenwheel.config.max_blocking_time`` (0.1 s).  Returns the
        monitor; see :mod:`greenwheel.events` for the notifications.
        """
        monitor = self.periodic_monitoring_thread
        if monitor is None or not monitor.is_alive():
            monitor = _provided.monitor_class()(self, max_blocking_time)
            if monitor.can_monitor_memory_usage():  # psutil is installed
                monitor.install_monitor_memory_usage()
            self.periodic_monitoring_thread = monitor
        return monitor

    # -- running ------------------------------------------------------------

    def run(self) -> None:
        """Drive the loop; entered by the first switch to the hub.  Never call directly."""
        assert self is getcurrent(), "Do not call Hub.run() directly"
        if self.periodic_monitoring_thread is None and _config.monitor_thread:
            self.start_periodic_monitoring_thread()
        while True:
            loop = self.loop
            try:
                loop.run()
            except HubDestroyed:
                raise
            except BaseException:
                # The loop itself raised (e.g. a signal handler's
                # KeyboardInterrupt during the poll, or a handle_error that
                # failed while the loop reported a callback's error): hand it
                # to the main greenlet and keep the hub alive for when it
                # switches back.
                try:
                    self.handle_error(None, *sys.exc_info())
                except Exception:
                    # A custom handle_error that fails again: print it and go
                    # on, as gevent's loop does; one broken handler must not
                    # stop every greenlet of the thread.
                    stream = self.exception_stream or sys.stderr
                    stream.write("Exception while handling another error\n")
                    traceback.print_exc(file=stream)
                continue
            # Nothing referenced is left in the loop, yet someone switched to
            # us to wait: that wait can never end.
            self.parent.throw(LoopExit("This operation would block forever", self))

    def wait(self, watcher: Any) -> None:
        """Block the current greenlet until *watcher* (not yet started) fires."""
        waiter = Waiter(self)
        watcher.start(waiter.switch, waiter)
        try:
            result = waiter.get()
            if result is not waiter:
                raise InvalidSwitchError(
                    "Invalid switch into %s: got %r (expected %r; waiting on %r with %r)"
                    % (getcurrent(), result, waiter, self, watcher)
                )
        finally:
            watcher.stop()

    def cancel_wait(
        self,
        watcher: Any,
        error: BaseException | type[BaseException],
        close_watcher: bool = False,
    ) -> None:
        """Make a greenlet blocked in :meth:`wait` on *watcher* raise *error*."""
        if watcher is None:
            return
        if watcher.callback is not None:
            self.loop.run_callback(self._cancel_wait, watcher, error, close_watcher)
        elif close_watcher:
            watcher.close()

    def _cancel_wait(
        self, watcher: Any, error: BaseException | type[BaseException], close_watcher: bool
    ) -> None:
        active = watcher.active
        callback = watcher.callback
        if close_watcher:
            watcher.close()
        if active:
            # The callback is the waiting greenlet's ``Waiter.switch``; going
            # through the Waiter copes with the greenlet not waiting yet.
            waiter = getattr(callback, "__self__", None)
            if waiter is not None:
                waiter.throw(error)

    def join(self, timeout: float | None = None) -> bool:
        """Run the loop until it has nothing left to do (True) or *timeout* passes (False).

        Only the main greenlet may call this.
        """
        assert getcurrent() is self.parent, "only possible from the MAIN greenlet"
        if self.dead:
            return True
        waiter = Waiter(self)
        timer = None
        if timeout is not None:
            # ref=False: our own timer must not keep the loop from running dry.
            timer = self.loop.timer(_check_seconds(timeout), 0.0, False)
            timer.start(waiter.switch, None, update=True)
        try:
            try:
                waiter.get()
            except LoopExit:
                return True
        finally:
            if timer is not None:
                timer.close()
        return False

    def destroy(self, destroy_loop: bool | None = None) -> None:
        """Stop the hub and release its loop; the thread gets a new hub on next use.

        The main thread's default loop is kept for the next hub unless
        *destroy_loop* is true.
        """
        loop = self.loop
        if loop is None:
            return
        if destroy_loop is None:
            destroy_loop = not getattr(loop, "default", False)
        if self and getcurrent() is not self:
            # Unwind the running loop; HubDestroyed is a GreenletExit, so the
            # hub dies quietly and control comes straight back here.
            try:
                self.throw(HubDestroyed(destroy_loop))
            except (LoopExit, _GreenletError):
                pass
        loop.error_handler = None
        sched = self.__dict__.get("_greenwheel_scheduler")
        if sched is not None:
            sched.close()  # a kept loop must not notify this hub's objects
        monitor = self.periodic_monitoring_thread
        if monitor is not None:
            self.periodic_monitoring_thread = None
            monitor.kill()
        pool = self.__dict__.pop("_threadpool", None)
        if pool is not None and self.__dict__.get("_owns_threadpool"):
            pool.kill()  # made for this hub (threadpool_size/_class); an assigned one is the caller's
        resolver = self.__dict__.pop("_resolver", None)
        if resolver is not None:
            resolver.close()
        if destroy_loop:
            if self.thread_ident == _main_thread_ident:
                _uninstall_wakeup_fd(loop)
            loop.destroy()
        else:
            _state.loop = loop
        self.loop = None  # type: ignore[assignment]
        if _state.hub is self:
            _state.hub = None
            _core._set_current_hub(None)


#: What get_hub() instantiates: Hub, or the class given to set_default_hub_class().
_hub_class = Hub


def _install_wakeup_fd(loop: _core.Loop) -> None:
    # The Rust loop learns about Python-level signals through the C-level
    # wake-up fd; without it a signal arriving during a long poll would only
    # be handled when some other event woke the loop.  An fd installed by
    # someone else (asyncio, an embedding app) is left alone.
    sigfd = getattr(loop, "sigfd", None)
    if sigfd is None or sigfd < 0:
        return
    try:
        previous = _signal.set_wakeup_fd(-1)
        if previous == -1:
            _signal.set_wakeup_fd(sigfd, warn_on_full_buffer=False)
        else:
            _signal.set_wakeup_fd(previous)
    except (ValueError, OSError):
        # Not the main thread of the main interpreter, or a bad fd: signals
        # then simply wake the loop at its next event.
        pass


def _uninstall_wakeup_fd(loop: _core.Loop) -> None:
    # A destroyed loop's pipe must not stay installed: the next hub would
    # see "someone else's" fd and never install its own.
    sigfd = getattr(loop, "sigfd", None)
    if sigfd is None or sigfd < 0:
        return
    try:
        previous = _signal.set_wakeup_fd(-1)
        if previous != sigfd:
            _signal.set_wakeup_fd(previous)
    except (ValueError, OSError):
        pass


# --- Waiter -----------------------------------------------------------------

_NONE = object()


class Waiter:
    """One-shot hand-off of a value or exception from the hub to one greenlet.

    A greenlet calls :meth:`get`; the hub (a loop callback) later calls
    :meth:`switch` or :meth:`throw`.  If the hub gets there first the result is
    stored and :meth:`get` returns it without blocking.  Only meant for use
    between a single greenlet and the hub; higher-level primitives (events,
    queues, locks) are built on it.
    """

    __slots__ = ("hub", "greenlet", "value", "_exception")

    if TYPE_CHECKING:
        hub: Hub
        greenlet: _RawGreenlet | None
        value: Any
        _exception: Any

    def __init__(self, hub: Hub | None = None) -> None:
        self.hub = get_hub() if hub is None else hub
        self.greenlet = None
        self.value = None
        self._exception = _NONE

    def clear(self) -> None:
        self.greenlet = None
        self.value = None
        self._exception = _NONE

    def __str__(self) -> str:
        if self._exception is _NONE:
            return "<%s greenlet=%s>" % (type(self).__name__, self.greenlet)
        if self._exception is None:
            return "<%s greenlet=%s value=%r>" % (type(self).__name__, self.greenlet, self.value)
        return "<%s greenlet=%s exc_info=%r>" % (type(self).__name__, self.greenlet, self.exc_info)

    def ready(self) -> bool:
        """True once a value or an exception has been delivered."""
        return self._exception is not _NONE

    def successful(self) -> bool:
        """True once a value (not an exception) has been delivered."""
        return self._exception is None

    @property
    def exc_info(self) -> tuple[Any, ...] | None:
        """The arguments given to :meth:`throw`, or None."""
        exc = self._exception
        return exc if exc is not _NONE else None

    def switch(self, value: Any) -> None:
        """Deliver *value*: resume the waiting greenlet, or store it for :meth:`get`."""
        glet = self.greenlet
        if glet is None:
            self.value = value
            self._exception = None
            return
        if getcurrent() is not self.hub:
            raise AssertionError("Can only use Waiter.switch method from the Hub greenlet")
        switch = glet.switch
        try:
            switch(value)
        except:  # noqa: E722 - whatever the resumed greenlet does must not kill the hub
            self.hub.handle_error(switch, *sys.exc_info())

    def switch_args(self, *args: Any) -> None:
        return self.switch(args)

    def throw(self, *throw_args: Any) -> None:
        """Raise ``throw_args`` in the waiting greenlet, or store them for :meth:`get`."""
        glet = self.greenlet
        if glet is None:
            self._exception = throw_args
            return
        if getcurrent() is not self.hub:
            raise AssertionError("Can only use Waiter.throw method from the Hub greenlet")
        throw = glet.throw
        try:
            throw(*throw_args)
        except:  # noqa: E722 - see switch()
            self.hub.handle_error(throw, *sys.exc_info())

    def get(self) -> Any:
        """Return the delivered value (or raise the exception), blocking until there is one."""
        exc = self._exception
        if exc is not _NONE:
            if exc is None:
                return self.value
            getcurrent().throw(*exc)
        if self.greenlet is not None:
            raise ConcurrentObjectUseError("This Waiter is already used by %r" % (self.greenlet,))
        current = getcurrent()
        hub = self.hub
        if current is hub:
            raise BlockingSwitchOutError(
                "Impossible to call blocking function in the event loop callback"
            )
        self.greenlet = current
        try:
            return hub.switch()
        finally:
            self.greenlet = None

    def __call__(self, source: Any) -> None:
        # Lets a Waiter be used directly as a Greenlet link.
        if source.exception is None:
            self.switch(source.value)
        else:
            self.throw(source.exception)


# --- argument checking ------------------------------------------------------


def _check_seconds(seconds: float) -> float:
    """Return *seconds* as a float, or raise like a bad call should.

    Loop timers would also reject bad values, but only later and from the
    loop; checking here makes the error point at the caller.
    """
    cls = type(seconds)
    if cls is float:
        if seconds != seconds:
            raise ValueError("seconds must not be NaN")
        return seconds
    if cls is int:
        return seconds
    if isinstance(seconds, (str, bytes, bytearray)) or not hasattr(cls, "__float__"):
        raise TypeError("seconds must be a number, not %s" % (cls.__name__,))
    value = float(seconds)
    if value != value:
        raise ValueError("seconds must not be NaN")
    return value


# --- blocking primitives ----------------------------------------------------


# sleep() is the Rust fast path (greenwheel._core.sleep): sleep(0) queues a
# resume of the current greenlet and switches to the hub through greenlet's C
# API, with no Python frame, bound method or callback object per call.
sleep = _core.sleep


def idle(priority: int = 0) -> None:
    """Wait until the loop has nothing more urgent to do (an idle watcher fires)."""
    hub = get_hub()
    watcher = hub.loop.idle()
    if priority:
        watcher.priority = priority
    try:
        hub.wait(watcher)
    finally:
        watcher.close()


def _tree_locals_for_child_of(spawner: Any) -> dict[Any, Any]:
    """The spawn-tree locals a greenlet spawned by *spawner* shares (gevent's rule).

    A spawner with tree locals shares them. Otherwise a new dict, which a
    spawner that is not a main greenlet keeps, so that everything it spawns
    next shares one tree; a main greenlet stays without (each child a root).
    """
    tree = getattr(spawner, "spawn_tree_locals", None)
    if tree is None:
        tree = {}
        if spawner.parent is not None:
            spawner.spawn_tree_locals = tree
    return tree


#: config.track_greenlet_tree, where spawn_raw looks (kept current by the
#: config, which calls _set_track_tree when the setting is assigned).
_track_tree = _config.track_greenlet_tree


def _set_track_tree(value: bool) -> None:
    global _track_tree
    _track_tree = value


_config_on_change("track_greenlet_tree", _set_track_tree)


def spawn_raw(function: Callable[..., object], *args: Any, **kwargs: Any) -> _RawGreenlet:
    """Start ``function(*args, **kwargs)`` in a bare :class:`greenlet.greenlet`.

    Cheaper than :func:`spawn` but without result, links or join.
    """
    if not callable(function):
        raise TypeError("function must be callable")
    hub = get_hub()
    if kwargs:
        glet = _RawGreenlet(partial(function, *args, **kwargs), hub)
        hub.loop.run_callback(glet.switch)
    else:
        glet = _RawGreenlet(function, hub)
        hub.loop.run_callback(glet.switch, *args)
    if _track_tree:
        # As gevent's spawn_raw: where it sits in the spawn tree (no stack).
        spawner = getcurrent()
        # (Attributes added to a raw greenlet's instance dict.)
        glet.spawning_greenlet = weakref.ref(spawner)  # type: ignore[attr-defined]
        glet.spawn_tree_locals = _tree_locals_for_child_of(spawner)  # type: ignore[attr-defined]
    # gevent's raw greenlets carry their loop, so more of its API takes them.
    glet.loop = hub.loop  # type: ignore[attr-defined]
    return glet


def kill(greenlet: _RawGreenlet, exception: Any = GreenletExit) -> None:
    """Kill *greenlet* asynchronously; the caller is not blocked.

    Works for raw greenlets as well as :class:`Greenlet` objects (for which it
    is ``greenlet.kill(exception, block=False)``).
    """
    if greenlet.dead:
        return
    kill_method = getattr(greenlet, "kill", None)
    if kill_method is not None:
        kill_method(exception=exception, block=False)
    else:
        get_hub().loop.run_callback(greenlet.throw, exception)


def reinit(hub: Hub | None = None) -> None:
    """Make the hub usable in a child process after ``os.fork()``.

    Runs automatically in the child (``os.register_at_fork``); calling it
    again is harmless.
    """
    if hub is None:
        hub = _state.hub
    if hub is None or hub.loop is None:
        return
    hub.loop.reinit()
    monitor = hub.periodic_monitoring_thread
    if monitor is not None:
        # After fork() the monitoring thread is gone: the monitor starts the child's own.
        monitor._on_fork()


def _reinit_after_fork() -> None:
    try:
        reinit()
    except Exception:  # the child must not die in a fork hook; report instead
        traceback.print_exc()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)
