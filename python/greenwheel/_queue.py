"""Greenlet queues: SimpleQueue, Queue (= JoinableQueue), LifoQueue, PriorityQueue, Channel.

Import them from :mod:`greenwheel.queue`.

A greenlet blocked in :meth:`~SimpleQueue.get` waits in ``getters`` (its own
``switch`` method, no Waiter object); one blocked in :meth:`~SimpleQueue.put`
waits in ``putters``.  Whoever changes the queue hands it to the hub's
scheduler, and the hub then moves items from putters into the queue and from
the queue to getters, in arrival order (see :meth:`SimpleQueue._unlock`).

As in gevent 25.4+, :class:`Queue` is the joinable queue (``task_done`` /
``join``) and :class:`JoinableQueue` is an alias of it; :class:`SimpleQueue`
is the same without task accounting.  ``Queue(0)`` means an unbounded queue
(with a DeprecationWarning): a rendezvous is a :class:`Channel`.

Puts and gets from another OS thread work: a put into an unbounded queue is
done in place and the waiting greenlet is woken through the owner hub's
async watcher; operations that must wait for the owner (a put into a bounded
queue, a get) are carried out by the owner's hub while the thread waits on a
native lock.
"""

from __future__ import annotations

import collections
import sys
import types
from heapq import heapify as _heapify
from heapq import heappop as _heappop
from heapq import heappush as _heappush
from queue import Empty, Full

from greenlet import getcurrent

from ._abstract_linkable import (
    _TIMEDOUT,
    _blocking_from_hub,
    _discard,
    _park,
    _scheduler_for,
    _thread_count,
    _ThreadWaiter,
)
from ._exceptions import InvalidSwitchError, InvalidThreadUseError
from ._hub import _check_seconds, _state, get_hub
from ._timeout import Timeout, _under
from ._typecheck import TYPE_CHECKING, Generic, TypeVar

if sys.version_info >= (3, 13):
    from queue import ShutDown
else:

    class ShutDown(Exception):
        """Raised by put/get on a queue that was :meth:`~Queue.shutdown`."""


if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable
    from typing import Any, Self

    from greenlet import greenlet as _RawGreenlet

    from ._event import Event
    from ._hub import Hub

_T = TypeVar("_T")

__all__ = [
    "Queue",
    "SimpleQueue",
    "PriorityQueue",
    "LifoQueue",
    "JoinableQueue",
    "UnboundQueue",
    "Channel",
    "Empty",
    "Full",
    "ShutDown",
]

_deque = collections.deque

# Markers a thread-side request gets back from the owner's hub.
_FULL = object()
_EMPTY = object()
_SHUTDOWN = object()


class _Putter:
    """A greenlet blocked in put(): its item, and how to resume it."""

    __slots__ = ("item", "greenlet")

    def __init__(self, item: Any, greenlet: _RawGreenlet) -> None:
        self.item = item
        self.greenlet = greenlet

    def __call__(self, queue: Any) -> None:
        # In the hub: the item goes in, then the putter resumes.
        try:
            queue._put(self.item)
        except:  # noqa: E722 - e.g. unorderable items in a PriorityQueue
            self.item = None
            self.greenlet.throw(*sys.exc_info())
            return
        self.item = None
        self.greenlet.switch(queue)


class _ThreadPutter(_ThreadWaiter):
    """A thread blocked in put() on a queue owned by another thread's hub."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        _ThreadWaiter.__init__(self)
        self.item = item

    def __call__(self, queue: Any) -> None:
        if self.claim.acquire(False):
            try:
                queue._put(self.item)
            except BaseException as ex:  # handed to the thread, which raises it
                self.value = ex
            finally:
                self.item = None
                self.done.release()


class _ThreadGetter(_ThreadWaiter):
    """A thread blocked in get()/peek(): the owner's hub takes the item for it."""

    __slots__ = ()

    def __call__(self, queue: Any) -> None:
        # In the owner's hub.  Take first: another thread may have emptied a
        # plain deque since _unlock saw an item.
        take = self.take
        try:
            value = take(queue)
        except IndexError as ex:
            if queue._inline:
                queue.getters.appendleft(self)  # keep our place in line
                return
            value, take = ex, None
        except BaseException as ex:  # handed to the thread, which raises it
            value, take = ex, None
        if self.claim.acquire(False):
            self.value = value
            self.take = take
            self.done.release()
        elif take is SimpleQueue._do_get:
            # The thread gave up meanwhile: the item goes back to the front.
            queue._unget(value)


class _IterateByGet(Generic[_T]):
    """Iteration shared by queues and channels: ``get()`` until it returns
    the ``StopIteration`` class."""

    __slots__ = ()

    if TYPE_CHECKING:

        def get(self, block: bool = True, timeout: float | None = None) -> _T: ...

    else:
        # Subclassing _IterateByGet[_T] at run time (see _typecheck).
        __class_getitem__ = classmethod(types.GenericAlias)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> _T:
        result = self.get()
        if result is StopIteration:
            raise result
        return result

    next = __next__


class SimpleQueue(_IterateByGet[_T]):
    """SimpleQueue(maxsize=None, items=()): a FIFO queue for greenlets.

    *maxsize* None (or <= 0) means unbounded.  ``len()`` is :meth:`qsize`, but
    a queue is always true.  Iterating calls :meth:`get` until it returns the
    ``StopIteration`` class.  Subclasses may override ``_init``, ``_qsize``,
    ``_put``, ``_get`` and ``_peek``, like the standard library's queues.
    """

    __slots__ = (
        "_maxsize",
        "getters",
        "putters",
        "hub",
        "_sched",
        "_unlocking",
        "_raw",
        "queue",
        "is_shutdown",
        "__weakref__",
    )

    if TYPE_CHECKING:
        _maxsize: int
        getters: collections.deque[Any]
        putters: collections.deque[Any]
        hub: Hub | None
        _sched: Any
        _unlocking: bool
        _raw: bool
        #: The storage (a deque unless a subclass's ``_create_queue`` makes another).
        queue: Any
        is_shutdown: bool
    else:
        # SimpleQueue[int] at runtime, as list[int] (typing's version is slower).
        __class_getitem__ = classmethod(types.GenericAlias)

    #: True while ``_qsize()`` is ``len(self.queue)``: hot paths then skip the call.
    _plain_qsize = True
    #: How the hot paths may bypass the storage hooks: 1, the FIFO deque of
    #: this class; 2, the same plus task counting (Queue); 0, call the hooks.
    _inline = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_qsize" in cls.__dict__ or "_init" in cls.__dict__:
            cls._plain_qsize = False
        hooks = ("_init", "_create_queue", "_qsize", "_put", "_get", "_peek")
        if any(name in cls.__dict__ for name in hooks):
            cls._inline = 0

    def __init__(
        self, maxsize: int | None = None, items: Iterable[_T] = (), _warn_depth: int = 2
    ) -> None:
        if maxsize is not None and maxsize <= 0:
            if maxsize == 0:
                import warnings

                warnings.warn(
                    "Queue(0) now equivalent to Queue(None); if you want a channel, use Channel",
                    DeprecationWarning,
                    stacklevel=_warn_depth,
                )
            maxsize = None
        self._maxsize = maxsize if maxsize is not None else -1
        self.getters = _deque()
        self.putters = _deque()
        # Like gevent, the queue belongs to the hub of the thread creating it:
        # other threads' blocking puts and gets are served by that hub.
        self.hub = hub = get_hub()
        self._sched = _scheduler_for(hub)
        self._unlocking = False
        # True while a thread waiter is among the getters: no hand-over then.
        self._raw = False
        self.is_shutdown = False
        self.queue = None
        if items:
            self._init(maxsize, items)
        else:
            self._init(maxsize)

    # -- the storage (stdlib-compatible hooks) ----------------------------------

    def _init(self, maxsize: int | None, items: Iterable[_T] = ()) -> None:
        self.queue = self._create_queue(items)

    def _create_queue(self, items: Iterable[_T] = ()) -> Any:
        return _deque(items)

    def _qsize(self) -> int:
        return len(self.queue)

    def _put(self, item: _T) -> None:
        self.queue.append(item)

    def _get(self) -> _T:
        return self.queue.popleft()

    def _peek(self) -> _T:
        return self.queue[0]

    # -- introspection ------------------------------------------------------------

    @property
    def maxsize(self) -> int | None:
        return self._maxsize if self._maxsize > 0 else None

    @maxsize.setter
    def maxsize(self, value: int | None) -> None:
        self._maxsize = -1 if value is None or value <= 0 else value
        if self.putters:
            self._schedule_unlock()

    def copy(self) -> Self:
        return type(self)(self.maxsize, self.queue)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {hex(id(self))}{self._format()}>"

    def __str__(self) -> str:
        return f"<{type(self).__name__}{self._format()}>"

    def _format(self) -> str:
        result = []
        if self.maxsize is not None:
            result.append(f"maxsize={self.maxsize!r}")
        if getattr(self, "queue", None):
            result.append(f"queue={self.queue!r}")
        if self.getters:
            result.append(f"getters[{len(self.getters)}]")
        if self.putters:
            result.append(f"putters[{len(self.putters)}]")
        if result:
            return " " + " ".join(result)
        return ""

    def qsize(self) -> int:
        """Number of items in the queue."""
        return self._qsize()

    def __len__(self) -> int:
        return self._qsize()

    def __bool__(self) -> bool:
        return True

    def empty(self) -> bool:
        """True if the queue holds no item."""
        return not self._qsize()

    def full(self) -> bool:
        """True if the queue is bounded and holds *maxsize* items."""
        return self._maxsize > 0 and self._qsize() >= self._maxsize

    # -- ownership ------------------------------------------------------------------

    def _owned(self) -> bool:
        """True if the calling thread may park on this queue (adopting it if free)."""
        owner = self.hub
        if owner is not None and owner is not _state.hub:
            if self._sched.alive():
                return False
            self._orphan()
        if self.hub is None:
            # Only after the owner died: the queue starts a new life here.
            hub = _state.hub
            if hub is None:
                hub = get_hub()
            self.hub = hub
            self._sched = _scheduler_for(hub)
        return True

    def _unget(self, item: _T) -> None:
        # Put back an item a thread took but then did not want (it gave up).
        if self._inline:
            self.queue.appendleft(item)
        else:
            tasks = getattr(self, "unfinished_tasks", None)
            self._put(item)
            if tasks is not None:
                self.unfinished_tasks = tasks  # type: ignore[misc]  # (only a Queue has tasks: it has the slot)
        if self.getters:
            self._schedule_unlock()

    def _foreign(self) -> bool:
        """True if another thread's live hub owns the queue (then ops go through it)."""
        owner = self.hub
        if owner is None or owner is _state.hub:
            return False
        if self._sched.alive():
            return True
        self._orphan()
        return False

    def _orphan(self) -> None:
        self.hub = None
        self._sched = None
        self.getters.clear()
        self.putters.clear()
        self._unlocking = False
        self._raw = False

    # -- waking -------------------------------------------------------------------------

    def _schedule_unlock(self) -> None:
        """Have :meth:`_unlock` run from the hub soon.  Any thread."""
        if not self._unlocking:
            sched = self._sched
            if sched is not None:
                self._unlocking = True
                if not sched.make_ready(self):
                    sched.make_ready_from_thread(self)

    def _single_link(self) -> Any:
        # See AbstractLinkable._single_link: one parked getter to wake, nothing else.
        getters = self.getters
        if (
            len(getters) == 1
            and not self._raw
            and not self.putters
            and (len(self.queue) if self._plain_qsize else self._qsize())
        ):
            self._unlocking = False
            return getters.popleft()
        return None

    def _notify_links(self) -> None:
        # Called by the hub's scheduler.
        try:
            self._unlock()
        finally:
            self._unlocking = False
            if not self.getters:
                self._raw = False

    def _unlock(self) -> None:
        # Move items from waiting putters into the queue, and from the queue to
        # waiting getters, in the order they arrived, for as long as possible.
        getters = self.getters
        putters = self.putters
        hub = self.hub
        while True:
            repeat = False
            if putters and (self._maxsize == -1 or self._qsize() < self._maxsize):
                repeat = True
                putter = putters.popleft()
                try:
                    putter(self)
                except:  # noqa: E722
                    hub.handle_error((putter, self), *sys.exc_info())  # type: ignore[union-attr]  # (notified by the owner hub)
            if getters and self._qsize():
                repeat = True
                getter = getters.popleft()
                try:
                    getter(self)
                except:  # noqa: E722
                    hub.handle_error((getter, self), *sys.exc_info())  # type: ignore[union-attr]  # (notified by the owner hub)
            if not repeat:
                return

    def _not_woken(self, waiters: Any, entry: object, result: object) -> bool:
        # Resumed by something other than _unlock: timed out (True) or a bug.
        _discard(waiters, entry)
        if result is _TIMEDOUT:
            return True
        raise InvalidSwitchError(f"Invalid switch into {type(self).__name__}: {result!r}")

    # -- put ----------------------------------------------------------------------------

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        """Put *item* into the queue.

        If the queue is full: with *block* (the default), wait for a free slot,
        at most *timeout* seconds, then raise :class:`Full`; without *block*
        raise :class:`Full` at once.  Safe to call from any OS thread.
        """
        if self.is_shutdown:
            raise ShutDown
        maxsize = self._maxsize
        if maxsize != -1:
            # Bounded: whether there is room must be decided by the owner.
            hub = self.hub
            if hub is not None and hub is not _state.hub and self._foreign():
                return self._put_from_thread(item, block, timeout)
            if (len(self.queue) if self._plain_qsize else self._qsize()) >= maxsize:
                return self._put_blocking(item, block, timeout)
        if block and timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        # Unbounded queues take items from any thread right here (the deque
        # operations are atomic); only the wake-up runs in the owner's hub.
        inline = self._inline
        if inline:
            self.queue.append(item)
            if inline == 2:
                self.unfinished_tasks += 1
        else:
            self._put(item)
        if self.getters and not self._unlocking:
            # _schedule_unlock(), inlined.
            sched = self._sched
            if sched is not None:
                self._unlocking = True
                if not sched.make_ready(self):
                    sched.make_ready_from_thread(self)

    def _put_blocking(self, item: _T, block: bool, timeout: Any) -> None:
        current = getcurrent()
        hub = self.hub
        if hub is not None and current is hub:
            # In a loop callback: we cannot wait, but getters can make room.
            getters = self.getters
            while getters and self._qsize() and self._qsize() >= self._maxsize:
                getters.popleft()(self)
            if self._qsize() < self._maxsize:
                self._put(item)
                return
            raise Full
        if not block:
            raise Full
        if timeout is not None:
            if isinstance(timeout, Timeout):
                return _under(timeout, self._put_blocking, item, block)
            timeout = _check_seconds(timeout)
            if timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
        if not self._owned():
            return self._put_from_thread(item, block, timeout)
        hub = self.hub
        if current is hub:
            raise _blocking_from_hub()
        if self._qsize() < self._maxsize:
            # Room was made while we adopted the queue.
            self._put(item)
            if self.getters:
                self._schedule_unlock()
            return
        putter = _Putter(item, current)
        putters = self.putters
        putters.append(putter)
        if self.getters:
            self._schedule_unlock()
        result = _park(hub, self._sched, putters, putter, current.switch, timeout)  # type: ignore[arg-type]  # (captured above)
        if result is not self and self._not_woken(putters, putter, result):
            raise Full

    def _put_from_thread(self, item: _T, block: bool, timeout: Any) -> None:
        # A bounded queue owned by another thread's hub: the owner decides.
        if not block:
            timeout = 0
        elif timeout is not None:
            timeout = _check_seconds(timeout)
            if timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
        putter = _ThreadPutter(item)
        self._sched.post(self._add_thread_putter, putter, block)
        if not putter.wait(timeout):
            self._sched.post(_discard, self.putters, putter)
            raise Full
        if putter.value is _FULL:
            raise Full
        if putter.value is _SHUTDOWN:
            raise ShutDown
        if putter.value is not None:
            raise putter.value

    def _add_thread_putter(self, putter: _ThreadPutter, block: bool) -> None:
        # In the owner's hub.
        if self.is_shutdown:
            if putter.claim.acquire(False):
                putter.value = _SHUTDOWN
                putter.done.release()
            return
        if self._maxsize == -1 or self._qsize() < self._maxsize:
            putter(self)
            if self.getters:
                self._schedule_unlock()
        elif not block:
            if putter.claim.acquire(False):
                putter.value = _FULL
                putter.done.release()
        else:
            self.putters.append(putter)
            if self.getters:
                self._schedule_unlock()

    def put_nowait(self, item: _T) -> None:
        """Put *item* if there is room right now, else raise :class:`Full`."""
        self.put(item, False)

    # -- get / peek ---------------------------------------------------------------------

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        """Remove and return an item.

        If the queue is empty: with *block* (the default), wait for one, at
        most *timeout* seconds, then raise :class:`Empty`; without *block*
        raise :class:`Empty` at once.  Safe to call from any OS thread.
        """
        if self._inline:
            # A plain deque: popleft() is atomic, so any thread may take an
            # available item right here (a race only makes it fail).
            queue = self.queue
            if queue:
                try:
                    item = queue.popleft()
                except IndexError:
                    pass
                else:
                    if self.putters:
                        self._schedule_unlock()
                    return item
        else:
            hub = self.hub
            if hub is not None and hub is not _state.hub and self._foreign():
                return self._get_from_thread(SimpleQueue._do_get, block, timeout)
            if self._qsize():
                item = self._get()
                if self.putters:
                    self._schedule_unlock()
                return item
        current = getcurrent()
        hub = self.hub
        if (
            hub is None
            or (current.parent is not hub and hub.parent is not current)
            or timeout is not None
            or not block
            or self.is_shutdown
            or _thread_count()
            or not self._inline
        ):
            # Not a greenlet of the owner hub's thread (a child of the hub, or
            # the thread's main greenlet), a timeout, or other threads that
            # might be what we wait for: the general path.
            return self._get_or_peek(self._get, block, timeout)
        # The common blocking get: a greenlet of the owner's thread parks
        # (_get_or_peek and _park, inlined).
        switch = current.switch
        getters = self.getters
        getters.append(switch)
        if self.putters:
            self._schedule_unlock()
        elif self.queue:
            # Another thread put an item just now.
            getters.remove(switch)
            return self._get_or_peek(self._get, block, timeout)
        try:
            result = self._sched.park(hub)
        except:
            _discard(getters, switch)
            raise
        if result is self:
            # Woken by _unlock, which switched straight here: the item is
            # ours, unless another thread just took it.
            try:
                return self.queue.popleft()
            except IndexError:
                return self._get_or_peek(self._get, block, timeout)
        self._not_woken(getters, switch, result)
        raise Empty  # pragma: no cover - _not_woken raised or returned True

    def get_nowait(self) -> _T:
        """Remove and return an item if one is there right now, else raise :class:`Empty`."""
        return self.get(False)

    def peek(self, block: bool = True, timeout: float | None = None) -> _T:
        """Return the next item without removing it; blocks like :meth:`get`."""
        hub = self.hub
        if hub is not None and hub is not _state.hub and self._foreign():
            return self._get_from_thread(SimpleQueue._do_peek, block, timeout)
        if self._qsize():
            return self._peek()
        return self._get_or_peek(self._peek, block, timeout)

    def peek_nowait(self) -> _T:
        """Return the next item if one is there right now, else raise :class:`Empty`."""
        return self.peek(False)

    def _get_or_peek(self, method: Callable[[], _T], block: bool, timeout: Any) -> _T:
        # The general get/peek, for an (apparently) empty queue.
        if block and timeout is not None:
            if isinstance(timeout, Timeout):
                # As in gevent, the Timeout object itself raises (not Empty).
                return _under(timeout, self._get_or_peek, method, block)
            timeout = _check_seconds(timeout)
            if timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
        current = getcurrent()
        hub = self.hub
        if hub is not None and current is hub:
            # In a loop callback: we cannot wait, but putters can fill the queue.
            if self._qsize():
                return method()
            putters = self.putters
            while putters:
                putters.popleft()(self)
                if self._qsize():
                    return method()
            raise Empty
        getting = method == self._get
        if not self._owned():
            if self._inline and not self.is_shutdown:
                try:
                    return SimpleQueue._do_get(self) if getting else self.queue[0]
                except IndexError:
                    pass
            if not block:
                raise Empty
            take = SimpleQueue._do_get if getting else SimpleQueue._do_peek
            return self._get_from_thread(take, block, timeout)
        hub = self.hub
        while True:
            if self._qsize():
                try:
                    item = method()
                except IndexError:  # taken by another thread meanwhile
                    continue
                if getting and self.putters:
                    self._schedule_unlock()
                return item
            if self.is_shutdown:
                raise ShutDown
            if not block:
                raise Empty
            if current is hub:
                raise _blocking_from_hub()
            switch = current.switch
            getters = self.getters
            getters.append(switch)
            if self.putters:
                self._schedule_unlock()
            elif self._qsize():
                # An item arrived while we adopted the queue (another thread).
                getters.remove(switch)
                continue
            result = _park(hub, self._sched, getters, switch, switch, timeout)  # type: ignore[arg-type]  # (captured above)
            if result is not self and self._not_woken(getters, switch, result):
                raise Empty
            # Woken by _unlock, which switched straight here: the item is ours
            # (unless another thread took it: then wait again).
            if self._qsize():
                try:
                    return method()
                except IndexError:
                    pass

    @staticmethod
    def _do_get(queue: SimpleQueue[Any]) -> Any:
        item = queue._get()
        if queue.putters:
            queue._schedule_unlock()
        return item

    @staticmethod
    def _do_peek(queue: SimpleQueue[Any]) -> Any:
        return queue._peek()

    def _get_from_thread(self, take: Callable[[Any], Any], block: bool, timeout: Any) -> _T:
        getter = _ThreadGetter(take)
        if not block:
            timeout = 0
        elif timeout is not None:
            timeout = _check_seconds(timeout)
            if timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")
        self._sched.post(self._add_thread_getter, getter, block)
        if not getter.wait(timeout):
            self._sched.post(_discard, self.getters, getter)
            raise Empty
        value = getter.value
        if value is _EMPTY:
            raise Empty
        if value is _SHUTDOWN:
            raise ShutDown
        if getter.take is None:
            raise value
        return value

    def _add_thread_getter(self, getter: _ThreadGetter, block: bool) -> None:
        # In the owner's hub.
        if self._qsize():
            getter(self)
        elif self.is_shutdown or not block:
            if getter.claim.acquire(False):
                getter.value = _SHUTDOWN if self.is_shutdown else _EMPTY
                getter.done.release()
        else:
            self._raw = True
            self.getters.append(getter)
            if self.putters:
                self._schedule_unlock()


class Queue(SimpleQueue[_T]):
    """Queue(maxsize=None, items=(), unfinished_tasks=None): a FIFO queue with
    :meth:`task_done` and :meth:`join`, like :class:`queue.Queue`.

    Every item put counts as an unfinished task until a consumer calls
    :meth:`task_done` for it; :meth:`join` waits until none is left.
    """

    __slots__ = ("_cond", "unfinished_tasks")

    if TYPE_CHECKING:
        _cond: Event | None
        unfinished_tasks: int

    def __init__(
        self,
        maxsize: int | None = None,
        items: Collection[_T] = (),
        unfinished_tasks: int | None = None,
    ) -> None:
        SimpleQueue.__init__(self, maxsize, items, _warn_depth=3)
        # The Event join() waits on; created by the first join().
        self._cond = None
        if unfinished_tasks:
            self.unfinished_tasks = unfinished_tasks
        elif items:
            self.unfinished_tasks = len(items)
        else:
            self.unfinished_tasks = 0

    def copy(self) -> Self:
        return type(self)(self.maxsize, self.queue, self.unfinished_tasks)

    def _format(self) -> str:
        result = SimpleQueue._format(self)
        if self.unfinished_tasks:
            result += f" tasks={self.unfinished_tasks} _cond={self._cond}"
        return result

    def _put(self, item: _T) -> None:
        self.queue.append(item)
        self.unfinished_tasks += 1

    def _did_put_task(self) -> None:
        self.unfinished_tasks += 1

    def task_done(self) -> None:
        """Mark one task (an item got earlier) as processed.

        Raises :exc:`ValueError` if called more often than items were put.
        """
        if self.unfinished_tasks <= 0:
            raise ValueError("task_done() called too many times")
        self.unfinished_tasks -= 1
        if self.unfinished_tasks == 0:
            cond = self._cond
            if cond is not None:
                cond.set()

    def join(self, timeout: float | None = None) -> bool:
        """Block until every item put has been marked done by :meth:`task_done`.

        Returns True, or False if *timeout* seconds passed first.
        """
        cond = self._cond
        if cond is None:
            from ._event import Event

            cond = self._cond = Event()
        if not self.unfinished_tasks:
            return True
        cond.clear()
        if not self.unfinished_tasks:
            return True
        return cond.wait(timeout=timeout)

    def shutdown(self, immediate: bool = False) -> None:
        """Make further puts (and gets, once empty) raise :class:`ShutDown`.

        With *immediate*, the remaining items are dropped (and marked done)
        and gets raise at once.  Every blocked put and get is woken with
        :class:`ShutDown`.
        """
        self.is_shutdown = True
        if immediate:
            while self._qsize():
                self._get()
                self.task_done()
        getters = list(self.getters)
        putters = list(self.putters)
        self.getters.clear()
        self.putters.clear()
        hub = self.hub
        if hub is None:
            return
        loop = hub.loop
        for getter in getters:
            self._wake_with_shutdown(loop, getter)
        for putter in putters:
            self._wake_with_shutdown(loop, putter)

    def _wake_with_shutdown(self, loop: Any, waiter: Any) -> None:
        if isinstance(waiter, _ThreadWaiter):
            if waiter.claim.acquire(False):
                waiter.value = _SHUTDOWN
                waiter.done.release()
            return
        if isinstance(waiter, _Putter):
            glet = waiter.greenlet
        else:
            glet = waiter.__self__
        loop.run_callback(_throw_shutdown, glet)


def _throw_shutdown(glet: Any) -> None:
    if not glet.dead:
        glet.throw(ShutDown)


# Queue's _put is the deque append plus task counting, which put() inlines.
Queue._inline = 2

#: gevent's name for :class:`Queue` before 25.4.
JoinableQueue = Queue


class UnboundQueue(Queue[_T]):
    """A :class:`Queue` that is never bounded (*maxsize* must be None)."""

    __slots__ = ()

    def __init__(self, maxsize: None = None, items: Collection[_T] = ()) -> None:
        if maxsize is not None:
            raise ValueError("UnboundQueue has no maxsize")
        Queue.__init__(self, maxsize, items)


class PriorityQueue(Queue[_T]):
    """A :class:`Queue` that returns the lowest item first (``(priority, data)`` tuples)."""

    __slots__ = ()

    def _create_queue(self, items: Iterable[_T] = ()) -> Any:
        q = list(items)
        _heapify(q)  # type: ignore[type-var]  # (orderable items: the caller's contract)
        return q

    def _put(self, item: _T) -> None:
        _heappush(self.queue, item)
        self.unfinished_tasks += 1

    def _get(self) -> _T:
        return _heappop(self.queue)


class LifoQueue(Queue[_T]):
    """A :class:`Queue` that returns the most recently added item first."""

    __slots__ = ()

    def _create_queue(self, items: Iterable[_T] = ()) -> Any:
        return list(items)

    def _put(self, item: _T) -> None:
        self.queue.append(item)
        self.unfinished_tasks += 1

    def _get(self) -> _T:
        return self.queue.pop()

    def _peek(self) -> _T:
        return self.queue[-1]


def _switch_to(hub: Any, _timeout: Any) -> Any:
    # Channel waits under a Timeout object (see _timeout._under): the timer is that object's.
    return hub.switch()


class Channel(_IterateByGet[_T]):
    """Channel(maxsize=1): a rendezvous; :meth:`put` blocks until a getter takes the item.

    It never holds an item (``qsize()`` is always 0).  ``balance`` is the
    number of blocked putters minus the number of blocked getters.  Only for
    greenlets of one thread.
    """

    __slots__ = ("getters", "putters", "hub", "_sched", "_unlocking", "__weakref__")

    if TYPE_CHECKING:
        getters: collections.deque[Any]
        putters: collections.deque[Any]
        hub: Hub | None
        _sched: Any
        _unlocking: bool
    else:
        __class_getitem__ = classmethod(types.GenericAlias)

    def __init__(self, maxsize: int = 1) -> None:
        if maxsize != 1:
            raise ValueError("Channels have a maxsize of 1")
        self.getters = _deque()
        self.putters = _deque()
        self.hub = None
        self._sched = None
        self._unlocking = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {hex(id(self))} {self._format()}>"

    def __str__(self) -> str:
        return f"<{type(self).__name__} {self._format()}>"

    def _format(self) -> str:
        result = ""
        if self.getters:
            result += f" getters[{len(self.getters)}]"
        if self.putters:
            result += f" putters[{len(self.putters)}]"
        return result

    @property
    def balance(self) -> int:
        return len(self.putters) - len(self.getters)

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    def full(self) -> bool:
        return True

    def _capture(self) -> Hub:
        hub = _state.hub
        owner = self.hub
        if owner is not hub or hub is None:
            if owner is not None and self._sched.alive():
                raise InvalidThreadUseError(
                    f"{self!r} belongs to the hub of another thread: {owner!r}"
                )
            if hub is None:
                hub = get_hub()
            self.hub = hub
            self._sched = _scheduler_for(hub)
            self.getters.clear()
            self.putters.clear()
            self._unlocking = False
        return hub

    def _schedule_unlock(self) -> None:
        if not self._unlocking:
            self._unlocking = True
            sched = self._sched
            if not sched.make_ready(self):
                sched.make_ready_from_thread(self)

    def _single_link(self) -> Any:
        return None

    def _notify_links(self) -> None:
        try:
            self._unlock()
        finally:
            self._unlocking = False

    def _unlock(self) -> None:
        getters = self.getters
        putters = self.putters
        hub = self.hub
        while putters and getters:
            getter = getters.popleft()
            item, putter = putters.popleft()
            try:
                getter(item)
            except:  # noqa: E722
                hub.handle_error((getter, self), *sys.exc_info())  # type: ignore[union-attr]  # (notified by the owner hub)
            try:
                putter(self)
            except:  # noqa: E722
                hub.handle_error((putter, self), *sys.exc_info())  # type: ignore[union-attr]  # (notified by the owner hub)

    def _wait(self, waiters: Any, entry: object, timeout: Any, hub: Any, switch: Any) -> Any:
        if timeout is None:
            return hub.switch()
        if isinstance(timeout, Timeout):
            # As in gevent, the Timeout object itself raises (not Empty / Full).
            return _under(timeout, _switch_to, hub)
        timer = hub.loop.timer(_check_seconds(timeout))
        timer.start(switch, _TIMEDOUT, update=True)
        try:
            return hub.switch()
        finally:
            timer.close()

    def put(self, item: _T, block: bool = True, timeout: float | None = None) -> None:
        """Hand *item* to a getter, waiting (at most *timeout* seconds) for one.

        Raises :class:`Full` if no getter took it in time (at once without *block*).
        """
        hub = self.hub
        if hub is None or hub is not _state.hub:
            hub = self._capture()
        current = getcurrent()
        if current is hub:
            if self.getters:
                self.getters.popleft()(item)
                return
            raise Full
        if not block:
            timeout = 0
        switch = current.switch
        entry = (item, switch)
        putters = self.putters
        putters.append(entry)
        if self.getters:
            self._schedule_unlock()
        try:
            result = self._wait(putters, entry, timeout, hub, switch)
        except:
            _discard(putters, entry)
            raise
        if result is self:
            return
        _discard(putters, entry)
        if result is _TIMEDOUT:
            raise Full
        raise InvalidSwitchError(f"Invalid switch into Channel.put: {result!r}")

    def put_nowait(self, item: _T) -> None:
        self.put(item, False)

    def get(self, block: bool = True, timeout: float | None = None) -> _T:
        """Take an item from a putter, waiting (at most *timeout* seconds) for one.

        Raises :class:`Empty` if none came in time (at once without *block*).
        """
        hub = self.hub
        if hub is None or hub is not _state.hub:
            hub = self._capture()
        current = getcurrent()
        if current is hub:
            if self.putters:
                item, putter = self.putters.popleft()
                hub.loop.run_callback(putter, self)
                return item
            if not block:
                raise Empty
            raise _blocking_from_hub()
        if not block:
            timeout = 0
        switch = current.switch
        getters = self.getters
        getters.append(switch)
        if self.putters:
            self._schedule_unlock()
        try:
            result = self._wait(getters, switch, timeout, hub, switch)
        except:
            _discard(getters, switch)
            raise
        if result is _TIMEDOUT:
            _discard(getters, switch)
            raise Empty
        return result

    def get_nowait(self) -> _T:
        return self.get(False)
