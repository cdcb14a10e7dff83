"""Run blocking functions in OS threads without blocking the event loop.

The implementation behind :mod:`greenwheel.threadpool` (and the helper the
cooperative socket layer uses for DNS: the C library's look-ups block the
calling thread, so they run here)::

    from greenwheel._threadpool import get_threadpool

    addrinfo = get_threadpool().apply(socket.getaddrinfo, ("example.com", 80))

:meth:`ThreadPool.spawn` (alias :meth:`ThreadPool.submit`) queues
``fn(*args, **kwargs)`` on a worker thread and returns a :class:`ThreadResult`
at once; :meth:`ThreadResult.get` blocks only the calling greenlet until the
outcome is there.  The worker hands the outcome back by sending an async
watcher of the *submitting* thread's loop (the only loop operation that is
thread-safe), so the result is delivered in the hub of that thread and the
waiting greenlet is resumed from there.  While a result is outstanding its
watcher keeps the loop alive, so waiting on it is never mistaken for "nothing
left to do" (``LoopExit``).

Worker threads are real OS threads even when :mod:`threading` is
monkey-patched (they are started with the original ``_thread`` functions),
started lazily up to ``maxsize``; idle workers wait on a queue.
:meth:`ThreadPool.kill` (or a smaller ``maxsize``) retires workers.  One
pool may serve the hubs of many threads.  After ``os.fork()`` the child
starts with no workers and spawns fresh ones on demand.
"""

from __future__ import annotations

import concurrent.futures as _cf
import importlib
import os
import sys
import weakref
from collections import deque
from itertools import islice

from greenlet import getcurrent
from greenlet import greenlet as _RawGreenlet

from ._exceptions import BlockingSwitchOutError, InvalidThreadUseError
from ._hub import DEFAULT_POOL_SIZE, Waiter, _check_seconds, _get_hub_if_exists, get_hub
from ._typecheck import TYPE_CHECKING, Generic, ParamSpec, TypeVar
from ._wait import iwait

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import TracebackType
    from typing import Any

    from ._greenlet import Greenlet
    from ._hub import Hub

_T = TypeVar("_T")
_R = TypeVar("_R")
_P = ParamSpec("_P")

__all__ = ["ThreadPool", "ThreadResult", "ThreadPoolExecutor", "get_threadpool"]


def _original(module_name, name):
    # The real (unpatched) object, even if this module is first imported
    # after greenwheel.monkey patched the standard library.
    monkey = sys.modules.get("greenwheel.monkey")
    if monkey is not None:
        return monkey.get_original(module_name, name)
    return getattr(importlib.import_module(module_name), name)


_start_new_thread = _original("_thread", "start_new_thread")
_allocate_lock = _original("_thread", "allocate_lock")
_real_get_ident = _original("_thread", "get_ident")
# The C SimpleQueue: a real blocking queue between OS threads.
_NativeQueue = _original("queue", "SimpleQueue")
if not isinstance(_NativeQueue, type) or _NativeQueue.__module__ != "_queue":
    import _queue

    _NativeQueue = _queue.SimpleQueue

_PENDING = object()


class ThreadResult(Generic[_R]):
    """The outcome of a function submitted to a :class:`ThreadPool`.

    An AsyncResult-like object: :meth:`get`, :meth:`wait`, :meth:`ready`,
    :meth:`successful`, :attr:`value`, :attr:`exception`, and
    :meth:`rawlink` / :meth:`unlink` so that :func:`greenwheel.wait` and
    :func:`greenwheel.iwait` accept it.  Must be waited on in the thread
    that submitted the function (its hub receives the outcome).  Created by
    :meth:`ThreadPool.spawn`; not meant to be instantiated directly.
    """

    __slots__ = (
        "_fn",
        "_args",
        "_kwargs",
        "_watcher",
        "_value",
        "_exc_info",
        "_waiters",
        "_links",
        "_pool",
        "hub",
        "receiver",
        "context",
        "_call_when_ready",
        "__weakref__",
    )

    def __init__(self, *arguments):
        if len(arguments) == 3:
            # gevent's low-level form: ThreadResult(receiver, hub, call_when_ready).
            receiver, hub, call_when_ready = arguments
            self._init(None, None, None, hub, None)
            self.receiver = receiver
            self._call_when_ready = call_when_ready
            return
        self._init(*arguments)

    def _init(self, fn, args, kwargs, hub, pool=None):
        self.receiver = None
        self.context = None
        self._call_when_ready = None
        self._fn = fn
        self._args = args
        self._kwargs = kwargs
        self._value = _PENDING
        self._exc_info = None
        self._waiters = []
        self._links = []
        self._pool = pool
        self.hub = hub
        # ref=True: a greenlet waiting for us must keep the loop running.
        watcher = self._watcher = hub.loop.async_()
        watcher.start(self._on_done)

    # -- worker-thread side ------------------------------------------------

    def _run(self, worker=None):
        fn, args, kwargs = self._fn, self._args, self._kwargs
        self._fn = self._args = self._kwargs = None
        hooked = False
        try:
            if fn is None:  # killed before it ran
                raise _Killed()
            if worker is not None:
                # A failure here (an audit hook refusing sys.setprofile, say)
                # is the function's outcome.
                worker._before_run_task(fn, args, kwargs, self)
                hooked = True
            value = fn(*args, **kwargs)
        except BaseException:  # noqa: B036 - every outcome goes back to the greenlet
            exc_info = sys.exc_info()
            self._exc_info = exc_info
            self._value = None
            del exc_info
        else:
            self._value = value
        finally:
            if hooked:
                try:
                    worker._after_run_task(fn, args, kwargs, self)
                except Exception:
                    worker._report_failure()
            fn = args = kwargs = None
            watcher = self._watcher
            if watcher is not None:
                # The one thread-safe loop operation: wakes the submitting hub.
                try:
                    watcher.send()
                except Exception:  # the hub was destroyed meanwhile
                    pass

    # gevent's form: the worker thread reports through these two.

    def set(self, value):
        """Record *value* (from any thread) and wake the hub (gevent's form)."""
        self._value = value
        self._wake()

    def handle_error(self, context, exc_info):
        """Record a failure (from any thread) and wake the hub (gevent's form)."""
        self.context = context
        self._exc_info = exc_info
        self._value = None
        self._wake()

    def _wake(self):
        watcher = self._watcher
        hub = self.hub
        if hub is not None and hub.thread_ident == _real_get_ident():
            # Set on the hub's own thread: the outcome is delivered after the
            # callbacks queued so far and those they queue (as with libev,
            # which notices such a send at its next poll), not in the middle
            # of them; a greenlet that set it and then ends is joined first.
            hub.loop.run_callback(watcher.send)
        else:
            watcher.send()

    # -- hub side ----------------------------------------------------------

    def _on_done(self):
        watcher = self._watcher
        if watcher is not None:
            self._watcher = None
            watcher.close()
        call_when_ready = self._call_when_ready
        if call_when_ready is not None:
            self._on_done_gevent_form(call_when_ready)
            return
        pool = self._pool
        if pool is not None:
            self._pool = None
            pool._task_done(self)
        # Links first (a Future adopts the outcome there), then the waiters.
        links, self._links = self._links, []
        for link in links:
            try:
                link(self)
            except:  # noqa: E722 - a bad link must not hurt the others
                self.hub.handle_error((link, self), *sys.exc_info())
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.switch(None)

    def _on_done_gevent_form(self, call_when_ready):
        # Both callbacks run here, in the hub; afterwards the value is
        # dropped and the receiver replaced by a no-op, as in gevent.
        self._call_when_ready = _ignore
        try:
            call_when_ready()
            exc_info = self._exc_info
            if exc_info:
                self.hub.handle_error(self.context, *exc_info)
            self.context = None
            if self.receiver is not None:
                self.receiver(self)
        finally:
            self.receiver = _ignore
            self._value = None
            if self._exc_info:
                self._exc_info = (self._exc_info[0], self._exc_info[1], None)

    def ready(self) -> bool:
        """True once the function has returned or raised (and the hub noticed)."""
        return self._watcher is None

    def successful(self) -> bool:
        """True once the function has returned without raising."""
        return self._watcher is None and self._exc_info is None

    @property
    def value(self) -> _R | None:
        """The return value, or None if not ready or the function raised."""
        if self._watcher is None and self._exc_info is None:
            return self._value
        return None

    @property
    def exception(self) -> BaseException | None:
        """The exception the function raised, or None."""
        exc_info = self._exc_info
        return exc_info[1] if exc_info is not None else None

    @property
    def exc_info(
        self,
    ) -> tuple[type[BaseException], BaseException, TracebackType | None] | tuple[()]:
        """``(type, value, traceback)`` of the exception raised, or ``()``."""
        return self._exc_info or ()

    def get(self, block: bool = True, timeout: float | None = None) -> _R:
        """Return the function's result (or raise its exception).

        Blocks the calling greenlet, at most *timeout* seconds if given
        (then :class:`greenwheel.Timeout` is raised).  The function keeps
        running in its thread even if the wait is given up.
        """
        if self._watcher is not None:
            if not block or not self._wait(timeout):
                from ._timeout import Timeout

                raise Timeout()
        exc_info = self._exc_info
        if exc_info is not None:
            raise exc_info[1].with_traceback(exc_info[2])
        return self._value

    def get_nowait(self) -> _R:
        return self.get(block=False)

    def result(self, timeout: float | None = None) -> _R:
        """:meth:`get`, under the name ``concurrent.futures`` uses."""
        return self.get(timeout=timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ready (or *timeout*); return whether it is ready."""
        if self._watcher is None:
            return True
        return self._wait(timeout)

    def _wait(self, timeout: float | None) -> bool:
        # True once ready, False if *timeout* passed first.
        from ._timeout import Timeout

        waiter = Waiter(self.hub)
        if self.hub is not _get_hub_if_exists():
            raise BlockingSwitchOutError(
                "a ThreadResult must be waited on in the thread that submitted it"
            )
        if waiter.hub is getcurrent():
            raise BlockingSwitchOutError(
                "Impossible to call blocking function in the event loop callback"
            )
        self._waiters.append(waiter)
        timer = Timeout._start_new_or_dummy(None if timeout is None else _check_seconds(timeout))
        try:
            waiter.get()
            return True
        except Timeout as ex:
            if ex is not timer:
                raise
            return False
        finally:
            timer.cancel()
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass

    def rawlink(self, callback: Callable[[ThreadResult[_R]], object]) -> None:
        """Call ``callback(self)`` from the hub once ready (at once, from the hub, if it is)."""
        if not callable(callback):
            raise TypeError("Expected callable: %r" % (callback,))
        if self._watcher is None:
            self.hub.loop.run_callback(callback, self)
        else:
            self._links.append(callback)

    link = rawlink

    def unlink(self, callback: object) -> None:
        try:
            self._links.remove(callback)
        except ValueError:
            pass

    def __repr__(self):
        if self._watcher is not None:
            state = "pending"
        elif self._exc_info is None:
            state = "value=%r" % (self._value,)
        else:
            state = "exception=%r" % (self._exc_info[1],)
        return "<%s at 0x%x %s>" % (type(self).__name__, id(self), state)


def _get_thread_profile():
    """The profile function :func:`threading.setprofile` installed (or None)."""
    import threading

    getter = getattr(threading, "getprofile", None)
    return getter() if getter is not None else getattr(threading, "_profile_hook", None)


def _get_thread_trace():
    """The trace function :func:`threading.settrace` installed (or None)."""
    import threading

    getter = getattr(threading, "gettrace", None)
    return getter() if getter is not None else getattr(threading, "_trace_hook", None)


class _WorkerGreenlet(_RawGreenlet):
    """The greenlet a worker thread of a :class:`ThreadPool` runs its functions in.

    ``getcurrent()`` in a pooled function is this object (its repr says
    ``ThreadPoolWorker``).  :meth:`_before_run_task` and
    :meth:`_after_run_task` frame each function: by default they install the
    :mod:`threading` module's profile and trace functions, and clear
    whatever is left afterwards.  A pool subclass may use its own subclass
    (the ``_WorkerGreenlet`` class attribute), as in gevent.
    """

    def __init__(self, threadpool):
        _RawGreenlet.__init__(self)
        self._threadpool = threadpool
        self._thread_ident = _real_get_ident()
        self._stderr = sys.stderr

    def run(self):
        self._threadpool._worker_loop(self)

    def _before_run_task(
        self,
        func,
        args,
        kwargs,
        thread_result,
        _sys=sys,
        _get_thread_profile=_get_thread_profile,
        _get_thread_trace=_get_thread_trace,
    ):
        # Only when there is one: the setters raise audit events even for None.
        profile = _get_thread_profile()
        if profile is not None:
            _sys.setprofile(profile)
        trace = _get_thread_trace()
        if trace is not None:
            _sys.settrace(trace)

    def _after_run_task(self, func, args, kwargs, thread_result, _sys=sys):
        # Whatever the function left (threading's hooks or its own) ends with it.
        if _sys.getprofile() is not None:
            _sys.setprofile(None)
        if _sys.gettrace() is not None:
            _sys.settrace(None)

    def _report_failure(self):
        import traceback

        try:
            traceback.print_exc(file=self._stderr)
        except Exception:
            pass

    def __repr__(self):
        hub = self._threadpool.hub
        return "<ThreadPoolWorker at 0x%x thread_ident=0x%x hub=%s>" % (
            id(self),
            self._thread_ident,
            "<shared>" if hub is None else "<%s at 0x%x>" % (type(hub).__name__, id(hub)),
        )


def _ignore(*_args):
    pass


class _Killed(RuntimeError):
    """The pool was killed before the function could run."""

    def __init__(self):
        RuntimeError.__init__(self, "the thread pool was killed before the function ran")


class ThreadPool:
    """A pool of at most *maxsize* OS worker threads (started lazily).

    The interface follows gevent's ``ThreadPool``: :meth:`spawn` returns an
    AsyncResult-like :class:`ThreadResult`; :meth:`apply`,
    :meth:`apply_async`, :meth:`map`, :meth:`imap`, :meth:`imap_unordered`
    block only the calling greenlet.  Functions run in real threads, so they
    may block as they like (CPU work still holds the GIL).
    """

    def __init__(
        self, maxsize: int = 10, hub: Hub | None = None, idle_task_timeout: float = -1
    ) -> None:
        if hub is None:
            hub = get_hub()
        self._init(maxsize, hub)

    def _init(self, maxsize, hub):
        # hub None: the process-wide pool, which takes work from every thread.
        self._check_size(maxsize)
        self._maxsize = maxsize
        self.hub = hub
        self._owner_ident = None if hub is None else hub.thread_ident
        self._lock = _allocate_lock()
        self._reset()
        _all_pools.add(self)

    @staticmethod
    def _check_size(value):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError("maxsize must be an int, not %r" % (value,))
        if value < 0:
            raise ValueError("maxsize must not be negative: %r" % (value,))

    def _available(self):
        # Idle workers that will take work: each retirement request queued
        # (and not yet taken) will claim one of them instead.  Call with the lock.
        return self._idle - self._retire

    def _foreign_thread(self):
        owner = self._owner_ident
        return owner is not None and owner != _real_get_ident()

    def _reset(self):
        # Also the after-fork hook: the child inherits none of the threads.
        self._queue = _NativeQueue()
        self._threads = 0
        self._idle = 0
        self._unclaimed = 0
        self._retire = 0
        # Results not yet delivered, per submitting hub thread (for join()).
        self._outstanding = {}
        self._pid = os.getpid()

    @property
    def maxsize(self) -> int:
        """The most worker threads this pool starts."""
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        self._check_size(value)
        with self._lock:
            self._maxsize = value
            alive = self._threads - self._retire
            surplus = alive - value
            # Work queued while the pool was smaller (or empty) gets threads now.
            wanted = min(value - alive, self._unclaimed - self._available())
        for _ in range(max(0, surplus)):
            self._stop_one()
        for _ in range(max(0, wanted)):
            self._start_worker()

    @property
    def size(self) -> int:
        """Number of worker threads alive (or starting)."""
        return self._threads - self._retire

    @size.setter
    def size(self, value: int) -> None:
        """Start or retire workers so that *value* are running (at most maxsize)."""
        if value < 0 or value > self._maxsize:
            raise ValueError("size must be between 0 and maxsize (%d)" % self._maxsize)
        current = self.size
        for _ in range(value - current):
            self._start_worker()
        for _ in range(current - value):
            self._stop_one()

    def __len__(self) -> int:
        """Number of functions queued or running."""
        return sum(len(results) for results in self._outstanding.values())

    def free_count(self) -> int:
        """How many more functions could start running at once."""
        return max(0, self._maxsize - len(self))

    # -- submitting --------------------------------------------------------------

    def spawn(self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> ThreadResult[_R]:
        """Queue ``fn(*args, **kwargs)`` on a worker thread; return a :class:`ThreadResult`.

        Only the thread of the pool's hub may submit (as in gevent), except
        to the process-wide pool (:func:`get_threadpool`), which serves
        every thread.  Raises :class:`~greenwheel.exceptions.InvalidThreadUseError`
        otherwise.  With ``maxsize`` 0 the work waits until ``maxsize`` grows.
        """
        if not callable(fn):
            raise TypeError("fn must be callable, not %r" % (fn,))
        if self._foreign_thread():
            raise InvalidThreadUseError(
                "%r belongs to the hub of thread %s; spawn() was called from thread %s"
                % (self, self._owner_ident, _real_get_ident())
            )
        if self._pid != os.getpid():
            self._lock = _allocate_lock()
            self._reset()
        hub = get_hub()
        result: ThreadResult[_R] = ThreadResult(fn, args, kwargs, hub, self)
        self._outstanding.setdefault(hub.thread_ident, set()).add(result)
        with self._lock:
            self._unclaimed += 1
            # Idle workers will each take one queued task; start another
            # thread only for work nobody idle can take.
            start = (
                self._unclaimed > self._available() and self._threads - self._retire < self._maxsize
            )
            if start:
                self._threads += 1
        self._queue.put(result)
        if start:
            try:
                _start_new_thread(self._worker, ())
            except BaseException:
                with self._lock:
                    self._threads -= 1
                raise
        return result

    submit = spawn

    def _start_worker(self):
        with self._lock:
            self._threads += 1
        try:
            _start_new_thread(self._worker, ())
        except BaseException:
            with self._lock:
                self._threads -= 1
            raise

    def _stop_one(self):
        with self._lock:
            self._retire += 1
        self._queue.put(None)

    def _task_done(self, result):
        results = self._outstanding.get(result.hub.thread_ident)
        if results is not None:
            results.discard(result)

    def apply(
        self,
        fn: Callable[..., _R],
        args: Iterable[Any] | None = (),
        kwds: dict[str, Any] | None = None,
    ) -> _R:
        """Run ``fn(*args, **kwds)`` in a worker and return its result.

        Only the calling greenlet waits; exceptions are re-raised here.
        Called from a thread other than the pool's hub's (a worker of this
        pool, say), the function runs at once in the calling thread, as in
        gevent.
        """
        if self._foreign_thread():
            return fn(*(args or ()), **(kwds or {}))
        return self.spawn(fn, *(args or ()), **(kwds or {})).get()

    def apply_async(
        self,
        fn: Callable[..., _R],
        args: Iterable[Any] | None = (),
        kwds: dict[str, Any] | None = None,
        callback: Callable[[_R], object] | None = None,
    ) -> ThreadResult[_R]:
        """Like :meth:`spawn`; *callback* gets the value (from the hub) on success."""
        result = self.spawn(fn, *(args or ()), **(kwds or {}))
        if callback is not None:

            def _on_ready(res, callback=callback):
                if res.successful():
                    callback(res.value)

            result.rawlink(_on_ready)
        return result

    def apply_cb(
        self,
        fn: Callable[..., _R],
        args: Iterable[Any] | None = (),
        kwds: dict[str, Any] | None = None,
        callback: Callable[[_R], object] | None = None,
    ) -> _R:
        """:meth:`apply`, then ``callback(result)`` in the calling greenlet."""
        value = self.apply(fn, args, kwds)
        if callback is not None:
            callback(value)
        return value

    def map(self, fn: Callable[[_T], _R], iterable: Iterable[_T]) -> list[_R]:
        """``[fn(x) for x in iterable]`` with the calls spread over the workers."""
        return [result.get() for result in [self.spawn(fn, item) for item in iterable]]

    def map_async(
        self,
        fn: Callable[[_T], _R],
        iterable: Iterable[_T],
        callback: Callable[[list[_R]], object] | None = None,
    ) -> Greenlet[list[_R]]:
        """:meth:`map` in a new greenlet; returns that greenlet."""
        from ._greenlet import Greenlet

        def run():
            value = self.map(fn, iterable)
            if callback is not None:
                callback(value)
            return value

        return Greenlet.spawn(run)

    def _window(self, maxsize):
        return maxsize if maxsize is not None and maxsize > 0 else max(2 * self._maxsize, 1)

    def imap(
        self, fn: Callable[..., _R], *iterables: Iterable[Any], maxsize: int | None = None
    ) -> Iterator[_R]:
        """An iterator of ``fn(*args)`` for args from ``zip(*iterables)``, in order.

        At most *maxsize* (default twice the pool size) calls are queued ahead
        of the consumer.
        """
        args_iter = zip(*iterables, strict=False)
        window = self._window(maxsize)
        pending = deque(self.spawn(fn, *args) for args in islice(args_iter, window))
        while pending:
            result = pending.popleft()
            value = result.get()
            for args in islice(args_iter, 1):
                pending.append(self.spawn(fn, *args))
            yield value

    def imap_unordered(
        self, fn: Callable[..., _R], *iterables: Iterable[Any], maxsize: int | None = None
    ) -> Iterator[_R]:
        """Like :meth:`imap`, yielding each result as soon as it is ready."""
        args_iter = zip(*iterables, strict=False)
        window = self._window(maxsize)
        pending = {self.spawn(fn, *args) for args in islice(args_iter, window)}
        while pending:
            for result in iwait(list(pending), count=1):
                pending.discard(result)
                for args in islice(args_iter, 1):
                    pending.add(self.spawn(fn, *args))
                yield result.get()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every function submitted from this thread has finished.

        Returns True, or False if *timeout* seconds passed first.
        """
        from ._timeout import Timeout

        hub = get_hub()
        timer = Timeout._start_new_or_dummy(timeout)
        try:
            while True:
                results = self._outstanding.get(hub.thread_ident)
                if not results:
                    return True
                next(iter(results)).wait()
        except Timeout as ex:
            if ex is not timer:
                raise
            return False
        finally:
            timer.cancel()

    def kill(self) -> None:
        """Retire every worker thread once the work already queued is done.

        Does not wait: functions running or queued finish (their results are
        delivered as usual), then the threads exit.  :attr:`size` drops to 0
        at once.  New work may be submitted afterwards; fresh workers then
        start for it.
        """
        with self._lock:
            alive = self._threads - self._retire
        for _ in range(alive):
            self._stop_one()

    def _drop_queued(self):
        # Functions not yet started are dropped: their results raise _Killed.
        dropped = []
        sentinels = 0
        while True:
            try:
                task = self._queue.get_nowait()
            except Exception:  # queue.Empty
                break
            if task is not None:
                dropped.append(task)
                with self._lock:
                    self._unclaimed -= 1
            else:
                sentinels += 1  # a retirement already asked for: keep it
        for _ in range(sentinels):
            self._queue.put(None)
        for task in dropped:
            task._fn = None  # raises _Killed when "run"
            task._run()

    _WorkerGreenlet = _WorkerGreenlet

    def _worker(self):
        # The thread's body: the pool's worker greenlet runs the loop.
        try:
            worker = self._WorkerGreenlet(self)
        except BaseException:  # noqa: B036 - a broken subclass: run without one
            import traceback

            traceback.print_exc()
            worker = None
        if worker is not None:
            worker.switch()
        else:
            self._worker_loop(None)

    def _worker_loop(self, worker):
        queue = self._queue
        lock = self._lock
        while True:
            with lock:
                self._idle += 1
            task = queue.get()
            with lock:
                self._idle -= 1
                if task is not None:
                    self._unclaimed -= 1
            if task is None:
                with lock:
                    self._retire -= 1
                    self._threads -= 1
                return
            task._run(worker)
            task = None

    def __repr__(self):
        return "<%s at 0x%x threads=%d/%d queued=%d>" % (
            type(self).__name__,
            id(self),
            self.size,
            self._maxsize,
            len(self),
        )


# --- concurrent.futures ------------------------------------------------------------


class _GreenFuture(_cf.Future):  # type: ignore[type-arg]
    """A ``concurrent.futures.Future`` whose blocking methods block only the greenlet.

    The outcome is adopted from the :class:`ThreadResult` in the submitting
    hub; :meth:`result` and :meth:`exception` wait on that result
    cooperatively.  :func:`greenwheel.wait` / :func:`greenwheel.iwait`
    accept these futures (``rawlink``).
    """

    def __init__(self):
        self._greenwheel_result = None
        _cf.Future.__init__(self)

    # concurrent.futures.wait() and as_completed() install a waiter in
    # ``_waiters`` and then block the whole OS thread on a real lock.  In the
    # submitting hub's thread, without a patched threading module, that
    # blocks the hub that would deliver the outcome: a deadlock.  Refuse
    # with AttributeError instead, as gevent's futures do.
    @property
    def _waiters(self):
        waiters = self._gw_waiters
        if (
            sys._getframe(1).f_code is _INSTALL_WAITERS_CODE
            and self._state not in _FINISHED_STATES
            and not _threading_patched()
        ):
            result = self._greenwheel_result
            if result is not None and result.hub is _get_hub_if_exists():
                raise AttributeError(
                    "_waiters: concurrent.futures.wait()/as_completed() on a pending "
                    "greenwheel future would block this thread's hub; use "
                    "greenwheel.wait() or monkey-patch threading"
                )
        return waiters

    @_waiters.setter
    def _waiters(self, value):
        self._gw_waiters = value

    def _adopt(self, thread_result):
        if self.done():
            return
        exc = thread_result.exception
        if thread_result.successful():
            self.set_result(thread_result.value)
        elif isinstance(exc, (_CancelledRun, _Killed)):
            # Cancelled before it started (CANCELLED already), or dropped
            # by shutdown(cancel_futures=True) while still queued.
            self.cancel()
            if not self.done():
                self.set_exception(exc)
        else:
            self.set_exception(exc)

    def _wait_green(self, timeout):
        result = self._greenwheel_result
        if self.done() or result is None:
            return
        if result.hub is _get_hub_if_exists() and getcurrent() is not result.hub:
            if not result.wait(timeout):
                raise _cf.TimeoutError()

    def result(self, timeout=None):
        self._wait_green(timeout)
        return _cf.Future.result(self, timeout)

    def exception(self, timeout=None):
        self._wait_green(timeout)
        return _cf.Future.exception(self, timeout)

    def rawlink(self, callback):
        result = self._greenwheel_result
        if result is None or self.done():
            get_hub().loop.run_callback(callback, self)
        else:
            result.rawlink(_FutureLink(callback, self))

    def unlink(self, callback):
        result = self._greenwheel_result
        if result is not None:
            result.unlink(_FutureLink(callback, self))

    def ready(self):
        return self.done()


_INSTALL_WAITERS_CODE = _cf._base._create_and_install_waiters.__code__  # type: ignore[attr-defined]
_FINISHED_STATES = (_cf._base.CANCELLED_AND_NOTIFIED, _cf._base.FINISHED)


def _threading_patched():
    monkey = sys.modules.get("greenwheel.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


class _FutureLink:
    __slots__ = ("callback", "future")

    def __init__(self, callback, future):
        self.callback = callback
        self.future = future

    def __call__(self, _result):
        self.callback(self.future)

    def __eq__(self, other):
        return (
            isinstance(other, _FutureLink)
            and self.callback == other.callback
            and self.future is other.future
        )

    def __hash__(self):
        return hash((self.callback, id(self.future)))


class _CancelledRun(Exception):
    pass


def _run_for_future(future, fn, args, kwargs):
    # In the worker thread.
    if not future.set_running_or_notify_cancel():
        raise _CancelledRun()
    return fn(*args, **kwargs)


class ThreadPoolExecutor(_cf.ThreadPoolExecutor):
    """``concurrent.futures.ThreadPoolExecutor`` on a greenwheel :class:`ThreadPool`.

    Always runs functions in native threads, even when :mod:`threading` is
    monkey-patched.  Its futures' ``result()`` and ``exception()`` block only
    the calling greenlet, and :func:`greenwheel.wait` accepts them.  (With
    :mod:`threading` patched, ``concurrent.futures.wait`` and
    ``as_completed`` are cooperative too.)  Takes the arguments of the
    standard class; *initializer* runs once in each worker thread.
    """

    def __init__(self, max_workers=None, thread_name_prefix="", initializer=None, initargs=()):
        _cf.ThreadPoolExecutor.__init__(
            self, max_workers, thread_name_prefix, initializer, initargs
        )
        self._threadpool = ThreadPool(self._max_workers)
        self._initialized_threads = set()

    def _call(self, future, fn, args, kwargs):
        initializer = self._initializer
        if initializer is not None:
            ident = _real_get_ident()
            if ident not in self._initialized_threads:
                self._initialized_threads.add(ident)
                initializer(*self._initargs)
        return _run_for_future(future, fn, args, kwargs)

    def submit(
        self, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> _cf.Future[_R]:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if self._broken:
            raise _cf.BrokenExecutor(self._broken)
        future = _GreenFuture()
        result = self._threadpool.spawn(self._call, future, fn, args, kwargs)
        future._greenwheel_result = result
        result.rawlink(future._adopt)
        return future

    submit.__doc__ = _cf.Executor.submit.__doc__

    def _adjust_thread_count(self):
        pass  # our pool starts its own threads

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True
        pool = self._threadpool
        if pool is None:
            return
        if cancel_futures:
            pool._drop_queued()  # queued functions are dropped: their futures are cancelled
            pool.kill()
            if wait:
                pool.join()
        elif wait:
            pool.join()
            pool.kill()
        else:
            pool.kill()

    kill = shutdown


# --- the default pool -----------------------------------------------------------------------

_all_pools: weakref.WeakSet[Any] = weakref.WeakSet()
_default_pool = None
_default_lock = _allocate_lock()


def get_threadpool() -> ThreadPool:
    """The process-wide default :class:`ThreadPool` (10 threads at most).

    Also reachable as ``greenwheel.get_hub().threadpool``.
    """
    global _default_pool
    pool = _default_pool
    if pool is None:
        with _default_lock:
            pool = _default_pool
            if pool is None:
                pool = ThreadPool.__new__(ThreadPool)
                pool._init(DEFAULT_POOL_SIZE, None)
                _default_pool = pool
    return pool


def _after_fork_in_child():
    global _default_lock
    _default_lock = _allocate_lock()
    for pool in list(_all_pools):
        pool._lock = _allocate_lock()
        pool._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
