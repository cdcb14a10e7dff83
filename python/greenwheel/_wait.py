"""Waiting on several objects at once: :func:`wait` and :func:`iwait` (gevent.hub's).

Both take anything with ``rawlink`` (greenlets, events, async results,
thread-pool results...) and use ``unlink`` when the object has it.

Ground rules:
- Built on the hub's primitives (:class:`~greenwheel._hub.Waiter`, the
  loop's timers) and nothing above them: :mod:`greenwheel._greenlet` and the
  thread pool use these functions, so this module must not import them.
- A wait that ends before every object reported (*count* reached, the
  timeout, an exception thrown into the waiting greenlet) unlinks the
  objects still linked, so none of them calls into a finished wait.
- Objects come back in the order they became ready, which is the order the
  hub delivered their notifications.
"""

from __future__ import annotations

import traceback

from ._hub import Waiter, _check_seconds, get_hub
from ._typecheck import TYPE_CHECKING, Generic, TypeVar, overload

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator
    from types import TracebackType
    from typing import Any, Protocol, Self

    from ._hub import Hub

    class _Linkable(Protocol):
        """What :func:`wait` and :func:`iwait` take: anything with ``rawlink``
        (greenlets, events, async results, ...); ``unlink`` is used when present."""

        def rawlink(self, callback: Callable[[Any], object], /) -> object: ...


_L = TypeVar("_L", bound="_Linkable")

__all__ = ["iwait", "wait"]


class _MultipleWaiter(Waiter):
    """A Waiter that queues every value switched to it (for :func:`iwait`).

    Between two ``get()`` calls the reader may do other blocking things, so
    notifications arriving meanwhile must be kept rather than overwritten.
    """

    __slots__ = ("_values",)

    def __init__(self, hub: Hub | None = None) -> None:
        Waiter.__init__(self, hub)
        self._values: list[Any] = []

    def switch(self, value: Any) -> None:
        self._values.append(value)
        Waiter.switch(self, True)

    def get(self) -> Any:
        if not self._values:
            Waiter.get(self)
            Waiter.clear(self)
        return self._values.pop(0)


# --- waiting on several objects -----------------------------------------------


class _WaitIterator(Generic[_L]):
    """Iterator behind :func:`iwait`: yields objects in the order they become ready."""

    def __init__(
        self, objects: Collection[_L], hub: Hub, timeout: float | None, count: int | None
    ) -> None:
        self._hub = hub
        self._waiter = _MultipleWaiter(hub)
        self._switch = self._waiter.switch
        self._timeout = timeout
        self._objects: Collection[_L] = objects
        self._timer: Any = None
        self._begun = False
        total = len(objects)
        self._count = total if count is None else max(0, min(count, total))

    def _begin(self) -> None:
        if self._begun:
            return
        self._begun = True
        # Linking before reading anything means ready objects are reported
        # (from the hub, in link order) rather than polled.
        for obj in self._objects:
            obj.rawlink(self._switch)
        if self._timeout is not None:
            self._timer = self._hub.loop.timer(_check_seconds(self._timeout), 0.0, True, -1)
            self._timer.start(self._switch, self, update=True)

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> _L:
        self._begin()
        if self._count == 0:
            self._cleanup()
            raise StopIteration()
        self._count -= 1
        try:
            item = self._waiter.get()
            self._waiter.clear()
            if item is self:
                # The timer fired.
                self._cleanup()
                raise StopIteration()
            return item  # type: ignore[no-any-return]  # (one of our objects)
        except:  # cleanup then re-raise anything, including GreenletExit
            self._cleanup()
            raise

    def _cleanup(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        objects, self._objects = self._objects, ()
        for obj in objects:
            unlink = getattr(obj, "unlink", None)
            if unlink is not None:
                try:
                    unlink(self._switch)
                except Exception:
                    traceback.print_exc()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()


@overload
def iwait(
    objects: Collection[_L], timeout: float | None = None, count: int | None = None
) -> _WaitIterator[_L]: ...
@overload
def iwait(
    objects: None = None, timeout: float | None = None, count: None = None
) -> Iterator[bool]: ...
def iwait(
    objects: Collection[_L] | None = None, timeout: float | None = None, count: int | None = None
) -> _WaitIterator[_L] | Iterator[bool]:
    """Yield *objects* (things with ``rawlink``/``unlink``) as they become ready.

    Stops after all of them, after *count* of them, or when *timeout* passes.
    With ``objects=None`` waits for the loop to finish (like ``Hub.join``).
    """
    hub = get_hub()
    if objects is None:
        return iter([hub.join(timeout=timeout)])
    return _WaitIterator(objects, hub, timeout, count)


@overload
def wait(
    objects: Iterable[_L], timeout: float | None = None, count: int | None = None
) -> list[_L]: ...
@overload
def wait(objects: None = None, timeout: float | None = None, count: None = None) -> bool: ...
def wait(
    objects: Iterable[_L] | None = None, timeout: float | None = None, count: int | None = None
) -> list[_L] | bool:
    """Block until *objects* (or *count* of them) are ready; return those that are.

    With no *objects*, wait until the loop has nothing left to do and return
    True (False if *timeout* passed first).
    """
    if objects is None:
        return get_hub().join(timeout=timeout)
    # Not list(iwait(...)): iwait wakes the caller once per ready object,
    # while waiting for all of them needs one wake-up in total. The order is
    # the same (the order the objects became ready).
    objects = list(objects)
    total = len(objects)
    needed = total if count is None else max(0, min(count, total))
    if needed == 0:
        return []
    hub = get_hub()
    collector = _Collector(hub, needed)
    timer = None
    try:
        for obj in objects:
            obj.rawlink(collector)
        if timeout is not None:
            timer = hub.loop.timer(_check_seconds(timeout), 0.0, True, -1)
            timer.start(collector.waiter.switch, None, update=True)
        collector.waiter.get()
    finally:
        if timer is not None:
            timer.close()
        done = collector.done
        if len(done) < total:
            collector.needed = -1  # late arrivals are ignored from now on
            finished = {id(obj) for obj in done}
            for obj in objects:
                if id(obj) not in finished:
                    unlink = getattr(obj, "unlink", None)
                    if unlink is not None:
                        unlink(collector)
    return done[:needed]


class _Collector:
    """A link receiver that gathers ready objects and wakes the waiter once
    *needed* of them are in (see :func:`wait`)."""

    __slots__ = ("done", "needed", "waiter")

    def __init__(self, hub: Hub, needed: int) -> None:
        self.done: list[Any] = []
        self.needed = needed
        self.waiter = Waiter(hub)

    def __call__(self, obj: object) -> None:
        done = self.done
        done.append(obj)
        if len(done) == self.needed:
            self.waiter.switch(None)
