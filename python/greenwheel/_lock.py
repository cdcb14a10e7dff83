"""Locks built on the semaphores: Lock, RLock, DummySemaphore.

Import them from :mod:`greenwheel.lock`.
"""

from __future__ import annotations

import _thread

from greenlet import getcurrent

from ._semaphore import BoundedSemaphore, Semaphore
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any

    from ._hub import Hub
    from ._timeout import Timeout

__all__ = ["Semaphore", "BoundedSemaphore", "DummySemaphore", "RLock", "Lock"]


class DummySemaphore:
    """DummySemaphore(value=None): the Semaphore API with no limit; nothing ever blocks.

    Lets code take "a semaphore" whether or not the resource it guards is
    actually limited.
    """

    def __init__(self, value: int | None = None) -> None:
        pass

    def __str__(self) -> str:
        return f"<{type(self).__name__}>"

    def locked(self) -> bool:
        """Never locked: False."""
        return False

    def ready(self) -> bool:
        """Always acquirable: True."""
        return True

    def release(self) -> None:
        """Does nothing."""

    def rawlink(self, callback: object) -> None:
        pass

    def unlink(self, callback: object) -> None:
        pass

    def wait(self, timeout: float | Timeout | None = None) -> int:
        """Returns 1 at once."""
        return 1

    def acquire(self, blocking: bool = True, timeout: float | Timeout | None = None) -> bool:
        """Returns True at once."""
        return True

    def __enter__(self) -> None:
        pass

    def __exit__(
        self,
        typ: type[BaseException] | None,
        val: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass


class RLock:
    """A reentrant mutex: the greenlet holding it may acquire it again.

    Each :meth:`acquire` must be matched by a :meth:`release` from the same
    greenlet; releasing a lock the current greenlet does not hold raises
    :exc:`RuntimeError`.  Same API as :class:`threading.RLock`.
    """

    __slots__ = ("_block", "_owner", "_count", "__weakref__")

    _block: Semaphore
    _owner: Any
    _count: int

    def __init__(self, hub: Hub | None = None) -> None:
        self._block = Semaphore(1, hub)
        self._owner = None
        self._count = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at 0x{id(self):x} _block={self._block} _count={self._count!r} _owner={self._owner!r})>"

    def acquire(self, blocking: bool = True, timeout: float | Timeout | None = None) -> bool:
        """Acquire, blocking (up to *timeout* seconds) if another greenlet holds it.

        Returns True if acquired (or already held by the caller), else False.
        """
        me = getcurrent()
        if self._owner is me:
            self._count += 1
            return True
        acquired = self._block.acquire(blocking, timeout)
        if acquired:
            self._owner = me
            self._count = 1
        return acquired

    def __enter__(self) -> bool:
        return self.acquire()

    def release(self) -> None:
        """Release once; the lock is free when every acquire has been released."""
        if self._owner is not getcurrent():
            raise RuntimeError(
                f"cannot release un-acquired lock. Owner: {self._owner!r} Current: {getcurrent()!r}"
            )
        self._count = count = self._count - 1
        if not count:
            self._owner = None
            self._block.release()

    def __exit__(
        self,
        typ: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def locked(self) -> bool:
        """True while some greenlet holds the lock."""
        return self._count > 0

    # For threading.Condition.

    def _acquire_restore(self, count_owner: tuple[int, Any]) -> None:
        count, owner = count_owner
        self._block.acquire()
        self._count = count
        self._owner = owner

    def _release_save(self) -> tuple[int, Any]:
        count = self._count
        self._count = 0
        owner = self._owner
        self._owner = None
        self._block.release()
        return (count, owner)

    def _is_owned(self) -> bool:
        return self._owner is getcurrent()

    def _at_fork_reinit(self) -> None:
        self._block._at_fork_reinit()
        self._owner = None
        self._count = 0


class Lock(BoundedSemaphore):
    """A mutex with the API of :class:`threading.Lock`, blocking only the greenlet.

    Not owned: any greenlet (or thread) may release it.  Releasing an
    unlocked lock raises :exc:`RuntimeError`.
    """

    __slots__ = ()

    _OVER_RELEASE_ERROR = RuntimeError
    _TIMEOUT_MAX = _thread.TIMEOUT_MAX

    def __init__(self) -> None:
        BoundedSemaphore.__init__(self, 1)

    def acquire(self, blocking: bool = True, timeout: float | Timeout | None = -1) -> bool:
        """Acquire the lock; like :meth:`threading.Lock.acquire`.

        ``timeout=-1`` (or None) waits forever; a timeout with
        ``blocking=False`` is a :exc:`ValueError`.
        """
        if timeout == -1:
            timeout = None
        if timeout is not None:
            if not blocking:
                raise ValueError("can't specify a timeout for a non-blocking call")
            if timeout < 0:
                raise ValueError("timeout value must be a non-negative number")
            if timeout > self._TIMEOUT_MAX:
                raise OverflowError("timeout value is too large")
        return BoundedSemaphore.acquire(self, blocking, timeout)

    # (None, as threading.Lock's, where a semaphore's returns the counter.)
    def release(self) -> None:  # type: ignore[override]
        """Release the lock; :exc:`RuntimeError` if it is not locked."""
        if self.counter >= 1:
            raise RuntimeError("release unlocked lock")
        BoundedSemaphore.release(self)

    def __enter__(self) -> bool:  # type: ignore[override]
        return self.acquire()

    def __repr__(self) -> str:
        return "<{} {} object at 0x{:x}>".format(
            "locked" if self.locked() else "unlocked",
            type(self).__name__,
            id(self),
        )
