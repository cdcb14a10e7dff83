"""Groups and pools of greenlets.

:class:`Group` tracks running greenlets (each removes itself when it ends) so
they can be joined or killed together, and offers map/imap/apply helpers.
:class:`Pool` is a Group with a size limit: spawning into a full pool blocks
until a member ends.

The small synchronisation helpers at the top (:class:`_Semaphore`,
:class:`_ResultQueue`) are private: they need only the hub; the "group is
empty" flag is a :class:`greenwheel.event.Event`.
"""

from __future__ import annotations

from collections import deque
from queue import Full as _QueueFull

from greenlet import GreenletExit, getcurrent

from ._event import Event
from ._greenlet import Greenlet, joinall
from ._hub import Waiter, get_hub
from ._hub import kill as _kill_raw
from ._timeout import Timeout
from ._typecheck import TYPE_CHECKING, Generic, ParamSpec, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any, NoReturn, Self

    from greenlet import greenlet as _RawGreenlet

_T = TypeVar("_T")
_R = TypeVar("_R")
_P = ParamSpec("_P")

__all__ = ["Group", "Pool", "PoolFull", "IMap", "IMapUnordered"]


# --- private synchronisation helpers ----------------------------------------
#
# All of them wake waiters through loop callbacks: Waiter.switch() must run in
# the hub, and the code releasing a slot may be an ordinary greenlet.


def _wait_on(waiter: Waiter, timeout: float | None) -> bool:
    """Block on *waiter* for at most *timeout*; True if woken, False on timeout."""
    timer = Timeout._start_new_or_dummy(timeout)
    try:
        waiter.get()
        return True
    except Timeout as ex:
        if ex is not timer:
            raise
        return False
    finally:
        timer.cancel()


class _Semaphore:
    """Counting semaphore; the slot limit behind :class:`Pool`."""

    __slots__ = ("counter", "_acquirers", "_watchers", "_notifier")

    def __init__(self, value: int) -> None:
        self.counter = value
        self._acquirers: deque[Waiter] = deque()  # Waiters of greenlets blocked in acquire()
        self._watchers: list[Waiter] = []  # Waiters of greenlets blocked in wait()
        self._notifier: Any = None

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        if self.counter > 0:
            self.counter -= 1
            return True
        if not blocking:
            return False
        waiter = Waiter()
        self._acquirers.append(waiter)
        try:
            # On wake-up the notifier has already taken the slot for us.
            return _wait_on(waiter, timeout)
        finally:
            try:
                self._acquirers.remove(waiter)
            except ValueError:
                pass  # popped by the notifier, which handed us a slot

    def release(self) -> None:
        self.counter += 1
        self._schedule()

    def wait(self, timeout: float | None = None) -> int:
        """Wait until a slot is free without taking it; return the free count."""
        if self.counter > 0:
            return self.counter
        waiter = Waiter()
        self._watchers.append(waiter)
        try:
            _wait_on(waiter, timeout)
        finally:
            if waiter in self._watchers:
                self._watchers.remove(waiter)
        return self.counter

    def _schedule(self) -> None:
        if self._notifier is None and (self._acquirers or self._watchers):
            self._notifier = get_hub().loop.run_callback(self._notify)

    def _notify(self) -> None:
        self._notifier = None
        while self.counter > 0 and self._acquirers:
            self.counter -= 1
            self._acquirers.popleft().switch(True)
        if self.counter > 0 and self._watchers:
            watchers, self._watchers = self._watchers, []
            for waiter in watchers:
                waiter.switch(True)


class _ResultQueue:
    """Unbounded FIFO with a single blocking reader (the imap consumer)."""

    __slots__ = ("_items", "_reader")

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._reader: Waiter | None = None

    def put(self, item: Any) -> None:
        self._items.append(item)
        reader = self._reader
        if reader is not None:
            self._reader = None
            get_hub().loop.run_callback(reader.switch, None)

    def __len__(self) -> int:
        """Results (and failures) waiting for the consumer."""
        return len(self._items)

    qsize = __len__

    def get(self) -> Any:
        while not self._items:
            waiter = self._reader = Waiter()
            try:
                waiter.get()
            finally:
                if self._reader is waiter:
                    self._reader = None
        return self._items.popleft()


# --- imap ---------------------------------------------------------------------


class _Failure:
    """A queued outcome that makes the imap iterator raise instead of yield."""

    __slots__ = ("exc", "raise_exception")

    def __init__(self, exc: Any, raise_exception: Callable[[], object] | None = None) -> None:
        self.exc = exc
        self.raise_exception = raise_exception

    def throw(self) -> NoReturn:
        if self.raise_exception is not None:
            self.raise_exception()
        raise self.exc


class IMapUnordered(Greenlet[None], Generic[_R]):
    """Iterator over ``func(item)`` results in completion order.

    Itself a greenlet: it walks the input, spawning one task per item with
    the group's ``spawn`` (so a Pool bounds the concurrency), while the
    consumer reads results.  *maxsize* bounds how many results may pile up
    unread before spawning pauses.
    """

    def __init__(
        self,
        func: Callable[..., _R],
        iterable: Iterable[Any],
        spawn: Callable[..., Greenlet[Any]],
        maxsize: int | None = None,
        _zipped: bool = False,
    ) -> None:
        Greenlet.__init__(self)
        # (The group's spawn, an instance attribute over the class method.)
        self.spawn = spawn  # type: ignore[method-assign, assignment]
        self.func = func
        self.iterable = iterable
        self._zipped = _zipped
        self.queue = _ResultQueue()
        self._result_slots: _Semaphore | None = _Semaphore(maxsize) if maxsize else None
        self._outstanding = 0
        self._max_index = -1
        self.finished = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> _R:
        if self._result_slots is not None:
            # Taking a result makes room for one more task.
            self._result_slots.release()
        value = self._next_value()
        if isinstance(value, _Failure):
            value.throw()
        return value  # type: ignore[no-any-return]

    def _next_value(self) -> Any:
        return self.queue.get()

    def _run(self) -> None:
        try:
            for item in self.iterable:
                self._max_index += 1
                self._spawn_task(item, self._max_index)
            self._finish(None)
        except BaseException as ex:
            self._finish(ex)
            raise
        finally:
            # Dropped once the input is spawned.
            self.spawn = self.func = self.iterable = None  # type: ignore[method-assign, assignment]

    def _spawn_task(self, item: Any, index: int) -> None:
        if self._result_slots is not None:
            self._result_slots.acquire()
        self._outstanding += 1
        glet = self.spawn(self.func, *item) if self._zipped else self.spawn(self.func, item)
        glet._imap_task_index = index  # type: ignore[attr-defined]
        glet.rawlink(self._on_result)

    def _on_result(self, glet: Greenlet[Any]) -> None:
        self._outstanding -= 1
        if glet.successful():
            self.queue.put(self._success_item(glet))
        else:
            self.queue.put(self._failure_item(glet))
        # The input is exhausted (we are dead) and this was the last task.
        if self._outstanding <= 0 and self.ready() and not self.finished:
            self.finished = True
            self.queue.put(self._end_item())

    def _finish(self, exception: BaseException | None) -> None:
        if self.finished:
            return
        if exception is not None:
            self.finished = True
            self.queue.put(self._self_failure_item(exception))
        elif self._outstanding <= 0:
            self.finished = True
            self.queue.put(self._end_item())

    def _success_item(self, glet: Greenlet[Any]) -> Any:
        return glet.value

    def _failure_item(self, glet: Greenlet[Any]) -> Any:
        return _Failure(glet.exception, glet._raise_exception)

    def _end_item(self) -> Any:
        return _Failure(StopIteration())

    def _self_failure_item(self, exception: BaseException) -> Any:
        return _Failure(exception)


class IMap(IMapUnordered[_R]):
    """Like :class:`IMapUnordered`, but yields results in input order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._buffered: dict[int, Any] = {}
        self._index = 0
        IMapUnordered.__init__(self, *args, **kwargs)

    def _next_value(self) -> Any:
        try:
            value = self._buffered.pop(self._index)
        except KeyError:
            while True:
                index, value = self.queue.get()
                if index == self._index:
                    break
                self._buffered[index] = value
        self._index += 1
        return value

    def _success_item(self, glet: Greenlet[Any]) -> Any:
        return (glet._imap_task_index, glet.value)  # type: ignore[attr-defined]

    def _failure_item(self, glet: Greenlet[Any]) -> Any:
        return (glet._imap_task_index, IMapUnordered._failure_item(self, glet))  # type: ignore[attr-defined]

    def _end_item(self) -> Any:
        return (self._max_index + 1, IMapUnordered._end_item(self))

    def _self_failure_item(self, exception: BaseException) -> Any:
        return (self._max_index + 1, IMapUnordered._self_failure_item(self, exception))


class _pass_value:
    """Link that calls ``callback(result)`` only for a successful greenlet."""

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[Any], object]) -> None:
        self.callback = callback

    def __call__(self, source: Greenlet[Any]) -> None:
        if source.successful():
            self.callback(source.value)

    def __hash__(self) -> int:
        return hash(self.callback)

    def __eq__(self, other: object) -> bool:
        return self.callback == getattr(other, "callback", other)


# --- Group / Pool ---------------------------------------------------------------


class Group:
    """A set of running greenlets; each one leaves the group when it ends.

    Supports ``len``, ``in``, iteration, and joining/killing them all.
    ``greenlet_class`` (default :class:`Greenlet`) is what :meth:`spawn` makes.
    """

    greenlet_class: type[Greenlet[Any]] = Greenlet

    def __init__(self, *args: Iterable[Greenlet[Any]]) -> None:
        if len(args) > 1:
            raise TypeError("Group() takes at most one iterable of greenlets")
        self.greenlets: set[Any] = set()
        self.dying: set[Any] = set()
        self._empty_event = Event()
        self._empty_event.set()
        if args:
            for glet in args[0]:
                self.add(glet)

    def __repr__(self) -> str:
        return "<%s at 0x%x %s>" % (type(self).__name__, id(self), self.greenlets)

    def __len__(self) -> int:
        return len(self.greenlets)

    def __contains__(self, item: object) -> bool:
        return item in self.greenlets

    def __iter__(self) -> Iterator[Any]:
        return iter(self.greenlets)

    # -- membership ----------------------------------------------------------

    def add(self, greenlet: _RawGreenlet) -> None:
        """Track *greenlet* (best added before it is started)."""
        rawlink = getattr(greenlet, "rawlink", None)
        if rawlink is not None:  # a raw greenlet (e.g. the main one) has none
            rawlink(self._discard)
        self.greenlets.add(greenlet)
        self._empty_event.clear()

    def _discard(self, greenlet: _RawGreenlet) -> None:
        self.greenlets.discard(greenlet)
        self.dying.discard(greenlet)
        if not self.greenlets:
            self._empty_event.set()

    def discard(self, greenlet: _RawGreenlet) -> None:
        """Stop tracking *greenlet* (it keeps running)."""
        self._discard(greenlet)
        unlink = getattr(greenlet, "unlink", None)
        if unlink is not None:
            unlink(self._discard)

    def start(self, greenlet: Greenlet[Any]) -> None:
        """Add the unstarted *greenlet* and start it."""
        self.add(greenlet)
        greenlet.start()

    if TYPE_CHECKING:
        # For the type checker, spawn() runs a function, as with the default
        # greenlet_class (one whose constructor takes other arguments gets
        # them all the same at run time).
        def spawn(
            self, function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
        ) -> Greenlet[_R]:
            """Create a greenlet like ``spawn()`` does, add it and start it."""

        def spawn_later(
            self, seconds: float, function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
        ) -> Greenlet[_R]:
            """Create a greenlet, add it, and start it *seconds* from now."""

        def spawn_link(
            self, function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
        ) -> Greenlet[_R]:
            """:meth:`spawn` and link the new greenlet to the caller (gevent 0.13)."""

        def spawn_link_value(
            self, function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
        ) -> Greenlet[_R]: ...

        def spawn_link_exception(
            self, function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs
        ) -> Greenlet[_R]: ...

    else:

        def spawn(self, *args, **kwargs):
            """Create a greenlet like ``spawn()`` does, add it and start it."""
            greenlet = self.greenlet_class(*args, **kwargs)
            self.start(greenlet)
            return greenlet

        def spawn_later(self, seconds, *args, **kwargs):
            """Create a greenlet, add it, and start it *seconds* from now."""
            greenlet = self.greenlet_class(*args, **kwargs)
            self.add(greenlet)
            greenlet.start_later(seconds)
            return greenlet

        def spawn_link(self, *args, **kwargs):
            """:meth:`spawn` and link the new greenlet to the caller (gevent 0.13)."""
            greenlet = self.spawn(*args, **kwargs)
            greenlet.link()
            return greenlet

        def spawn_link_value(self, *args, **kwargs):
            greenlet = self.spawn(*args, **kwargs)
            greenlet.link_value()
            return greenlet

        def spawn_link_exception(self, *args, **kwargs):
            greenlet = self.spawn(*args, **kwargs)
            greenlet.link_exception()
            return greenlet

    # -- waiting and killing ---------------------------------------------------

    def join(self, timeout: float | None = None, raise_error: bool = False) -> bool:
        """Wait until the group has been empty at least once.

        Returns False if *timeout* passed first.  With *raise_error*, re-raise
        the exception of a greenlet (one that was in the group at the call)
        that failed.
        """
        greenlets = list(self.greenlets) if raise_error else ()
        result = self._empty_event.wait(timeout=timeout)
        for greenlet in greenlets:
            if greenlet.exception is not None:
                raising = getattr(greenlet, "_raise_exception", None)
                if raising is not None:
                    raising()
                raise greenlet.exception
        return result

    def kill(
        self, exception: Any = GreenletExit, block: bool = True, timeout: float | None = None
    ) -> None:
        """Kill every greenlet in the group (waiting for them, unless *block* is false)."""
        timer = Timeout._start_new_or_dummy(timeout)
        try:
            while self.greenlets:
                for greenlet in list(self.greenlets):
                    if greenlet in self.dying:
                        continue
                    kill = getattr(greenlet, "kill", None)
                    if kill is None:
                        _kill_raw(greenlet, exception)
                    else:
                        kill(exception, block=False)
                    self.dying.add(greenlet)
                if not block:
                    break
                joinall(list(self.greenlets))
        except Timeout as ex:
            if ex is not timer:
                raise
        finally:
            timer.cancel()

    def killone(
        self,
        greenlet: Greenlet[Any],
        exception: Any = GreenletExit,
        block: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Kill *greenlet* if it is in the group."""
        if greenlet not in self.dying and greenlet in self.greenlets:
            greenlet.kill(exception, block=False)
            self.dying.add(greenlet)
            if block:
                greenlet.join(timeout)

    def full(self) -> bool:
        """A Group has no limit: never full."""
        return False

    def wait_available(self, timeout: float | None = None) -> int | None:
        """A Group has no limit: returns at once."""
        return None

    # -- mapping helpers ---------------------------------------------------------

    def _apply_immediately(self) -> bool:
        # A member calling apply() on its own group runs the function inline:
        # waiting for a slot held by itself could deadlock a Pool.
        return getcurrent() in self

    def apply(
        self,
        func: Callable[..., _R],
        args: Iterable[Any] | None = None,
        kwds: dict[str, Any] | None = None,
    ) -> _R:
        """Run ``func(*args, **kwds)`` in the group and return its result."""
        args = () if args is None else args
        kwds = {} if kwds is None else kwds
        if self._apply_immediately():
            return func(*args, **kwds)
        return self.spawn(func, *args, **kwds).get()

    def apply_cb(
        self,
        func: Callable[..., _R],
        args: Iterable[Any] | None = None,
        kwds: dict[str, Any] | None = None,
        callback: Callable[[_R], object] | None = None,
    ) -> _R:
        """:meth:`apply`, then ``callback(result)`` in a new greenlet if given."""
        result = self.apply(func, args, kwds)
        if callback is not None:
            Greenlet.spawn(callback, result)
        return result

    def apply_async(
        self,
        func: Callable[..., _R],
        args: Iterable[Any] | None = None,
        kwds: dict[str, Any] | None = None,
        callback: Callable[[_R], object] | None = None,
    ) -> Greenlet[_R]:
        """Start ``func(*args, **kwds)`` and return its greenlet without blocking.

        *callback*, if given, gets the result when it succeeds.
        """
        args = () if args is None else args
        kwds = {} if kwds is None else kwds
        if self.full():
            # spawn() would block: run apply() from a greenlet of its own.
            return Greenlet.spawn(self.apply_cb, func, args, kwds, callback)
        greenlet = self.spawn(func, *args, **kwds)
        if callback is not None:
            greenlet.link(_pass_value(callback))
        return greenlet

    def map(self, func: Callable[[_T], _R], iterable: Iterable[_T]) -> list[_R]:
        """``[func(x) for x in iterable]`` computed concurrently, in input order."""
        greenlets = [self.spawn(func, item) for item in iterable]
        return [greenlet.get() for greenlet in greenlets]

    def map_cb(
        self,
        func: Callable[[_T], _R],
        iterable: Iterable[_T],
        callback: Callable[[list[_R]], object] | None = None,
    ) -> list[_R]:
        result = self.map(func, iterable)
        if callback is not None:
            callback(result)
        return result

    def map_async(
        self,
        func: Callable[[_T], _R],
        iterable: Iterable[_T],
        callback: Callable[[list[_R]], object] | None = None,
    ) -> Greenlet[list[_R]]:
        """:meth:`map` in a new greenlet (returned); *callback* gets the list."""
        return Greenlet.spawn(self.map_cb, func, iterable, callback)

    def _imap(
        self,
        cls: type[IMapUnordered[Any]],
        func: Callable[..., _R],
        iterables: tuple[Iterable[Any], ...],
        maxsize: int | None,
    ) -> Any:
        return cls.spawn(
            func, zip(*iterables, strict=False), spawn=self.spawn, maxsize=maxsize, _zipped=True
        )

    def imap(
        self, func: Callable[..., _R], *iterables: Iterable[Any], maxsize: int | None = None
    ) -> IMap[_R]:
        """Iterator over ``func(*items)`` in input order, computed concurrently."""
        return self._imap(IMap, func, iterables, maxsize)  # type: ignore[no-any-return]

    def imap_unordered(
        self, func: Callable[..., _R], *iterables: Iterable[Any], maxsize: int | None = None
    ) -> IMapUnordered[_R]:
        """Like :meth:`imap`, but yields results as they complete."""
        return self._imap(IMapUnordered, func, iterables, maxsize)  # type: ignore[no-any-return]


class PoolFull(_QueueFull):
    """A full Pool was asked to add a greenlet without blocking (or timed out)."""


class _NoLimit:
    """The semaphore of an unbounded Pool (``size=None``)."""

    __slots__ = ()
    counter = 1

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        return True

    def release(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> int:
        return 1


class Pool(Group):
    """A Group holding at most *size* greenlets.

    :meth:`spawn` / :meth:`add` block while the pool is full.  ``size=None``
    means no limit; ``size=0`` a pool nothing can ever enter.
    """

    def __init__(
        self, size: int | None = None, greenlet_class: type[Greenlet[Any]] | None = None
    ) -> None:
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool):
                raise TypeError("size must be an integer or None, not %r" % (size,))
            if size < 0:
                raise ValueError("size must not be negative: %r" % (size,))
        Group.__init__(self)
        self.size = size
        if greenlet_class is not None:
            self.greenlet_class = greenlet_class
        self._semaphore: _NoLimit | _Semaphore = _NoLimit() if size is None else _Semaphore(size)

    def wait_available(self, timeout: float | None = None) -> int:
        """Wait until a greenlet could be added; return how many could."""
        return self._semaphore.wait(timeout=timeout)

    def full(self) -> bool:
        """True if :meth:`add` would block."""
        return self.free_count() <= 0

    def free_count(self) -> int:
        """How many more greenlets fit (1 for an unbounded pool)."""
        if self.size is None:
            return 1
        return max(0, self.size - len(self))

    def start(
        self, greenlet: Greenlet[Any], blocking: bool = True, timeout: float | None = None
    ) -> None:
        """Add the unstarted *greenlet* (see :meth:`add`) and start it."""
        self.add(greenlet, blocking, timeout)
        greenlet.start()

    def add(
        self, greenlet: _RawGreenlet, blocking: bool = True, timeout: float | None = None
    ) -> None:
        """Track *greenlet*, waiting for room (up to *timeout*) unless not *blocking*.

        Raises :class:`PoolFull` if there is no room in time.
        """
        if not self._semaphore.acquire(blocking=blocking, timeout=timeout):
            raise PoolFull()
        try:
            Group.add(self, greenlet)
        except BaseException:
            self._semaphore.release()
            raise

    def _discard(self, greenlet: _RawGreenlet) -> None:
        # Only a member's departure frees a slot (discard() of a stranger,
        # or a second discard, must not).
        if greenlet in self.greenlets:
            Group._discard(self, greenlet)
            self._semaphore.release()
        else:
            self.dying.discard(greenlet)
