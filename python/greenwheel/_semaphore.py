"""Semaphore and BoundedSemaphore.

Import them from :mod:`greenwheel.lock`.  Blocked acquirers are woken in the
order they started waiting, one per available unit, from the hub.  As in
gevent an acquirer that finds the counter positive takes it at once, even if
others are still being woken.
"""

from __future__ import annotations

from ._abstract_linkable import _NOT_TAKEN, AbstractLinkable
from ._hub import _state
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any

    from ._hub import Hub
    from ._timeout import Timeout

__all__ = ["Semaphore", "BoundedSemaphore"]


def _take(semaphore: Semaphore) -> Any:
    # Runs in the owner's hub for a thread that was waiting on a native lock.
    # Check and decrement without a call in between: no other thread can run
    # in the middle (an acquire() elsewhere may have taken the unit before).
    if semaphore.counter > 0:
        semaphore.counter -= 1
        return True
    return _NOT_TAKEN


class Semaphore(AbstractLinkable):
    """Semaphore(value=1): a counter that :meth:`acquire` decrements, blocking at zero.

    :meth:`release` increments it and wakes the longest-waiting acquirer.
    Anyone may release, whether or not it acquired; see
    :class:`BoundedSemaphore` for a version that catches over-releasing.
    A context manager.
    """

    __slots__ = ("counter",)

    counter: int

    _notify_all = False

    def __init__(self, value: int | None = 1, hub: Hub | None = None) -> None:
        if value is None:
            value = 1
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        AbstractLinkable.__init__(self, hub)
        self.counter = value

    def __str__(self) -> str:
        return f"<{type(self).__name__} at 0x{id(self):x} counter={self.counter} _links[{self.linkcount()}]>"

    def locked(self) -> bool:
        """True if :meth:`acquire` would block."""
        return self.counter <= 0

    def ready(self) -> bool:
        """True if :meth:`acquire` would not block."""
        return self.counter > 0

    def release(self) -> int:
        """Increment the counter and wake a waiter, if any.  Returns the counter.

        Safe to call from any OS thread.
        """
        self.counter += 1
        # _notify_anywhere(), inlined.
        if self._links and not self._notifying:
            sched = self._sched
            if sched is None or self._raw:
                # Thread waiters or rawlinks among the links.
                self._notify_anywhere()
            else:
                self._notifying = True
                if not sched.make_ready(self):
                    sched.make_ready_from_thread(self)
        return self.counter

    def acquire(self, blocking: bool = True, timeout: float | Timeout | None = None) -> bool:
        """Decrement the counter, blocking while it is zero.

        Returns True once acquired; False if *blocking* is false and the
        counter is zero, or if *timeout* seconds passed first.
        """
        if self.counter > 0:
            self.counter -= 1
            return True
        if not blocking:
            return False
        hub = self.hub
        if hub is None or hub is not _state.hub:
            if not self._capture():
                return self._acquire_from_thread(timeout)
        while self.counter <= 0:
            if not self._block(timeout):
                return False
        self.counter -= 1
        return True

    def _acquire_from_thread(self, timeout: Any) -> bool:
        # Not a greenlet of the owner's thread: wait on a native lock.  When
        # it is our turn, whoever serves the line (the owner's hub, or the
        # thread that releases) takes the unit for us.
        if self.counter > 0:
            self.counter -= 1
            return True
        return self._wait_foreign(timeout, _take) is not None

    def wait(self, timeout: float | Timeout | None = None) -> int:
        """Wait until the semaphore could be acquired (without acquiring it).

        Returns the counter, which may be 0 again if others acquired first,
        or if *timeout* passed.
        """
        if self.counter > 0:
            return self.counter
        hub = self.hub
        if hub is None or hub is not _state.hub:
            if not self._capture():
                self._wait_foreign(timeout)
                return self.counter
        self._block(timeout)
        return self.counter

    def _give_back(self, _taken: object) -> None:
        # A thread we took a unit for gave up waiting.
        self.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        AbstractLinkable._at_fork_reinit(self)


class BoundedSemaphore(Semaphore):
    """BoundedSemaphore(value=1): a :class:`Semaphore` that raises :exc:`ValueError`
    when released more times than acquired."""

    __slots__ = ("_initial_value",)

    #: What over-releasing raises (Lock uses RuntimeError, like threading).
    _OVER_RELEASE_ERROR: type[Exception] = ValueError

    def __init__(self, value: int | None = 1, hub: Hub | None = None) -> None:
        Semaphore.__init__(self, value, hub)
        self._initial_value = self.counter

    def release(self) -> int:
        """Like :meth:`Semaphore.release`, but raise :exc:`ValueError` when over-released."""
        if self.counter >= self._initial_value:
            raise self._OVER_RELEASE_ERROR("Semaphore released too many times")
        counter = Semaphore.release(self)
        if (
            counter == self._initial_value
            and self.hub is _state.hub
            and not self._links
            and not self._notifying
        ):
            # Nobody holds or awaits us: stop belonging to a hub, so another
            # thread's greenlets may adopt us cheaply.
            self.hub = None
            self._sched = None
        return counter

    def _at_fork_reinit(self) -> None:
        Semaphore._at_fork_reinit(self)
        self.counter = self._initial_value
