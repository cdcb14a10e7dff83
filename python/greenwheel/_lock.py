"""Locks built on the semaphores: Lock, RLock, DummySemaphore.

Import them from :mod:`greenwheel.lock`.
"""

import _thread

from greenlet import getcurrent

from ._semaphore import BoundedSemaphore, Semaphore

__all__ = ["Semaphore", "BoundedSemaphore", "DummySemaphore", "RLock", "Lock"]


class DummySemaphore:
    """DummySemaphore(value=None): the Semaphore API with no limit; nothing ever blocks.

    Lets code take "a semaphore" whether or not the resource it guards is
    actually limited.
    """

    def __init__(self, value=None):
        pass

    def __str__(self):
        return f"<{type(self).__name__}>"

    def locked(self):
        """Never locked: False."""
        return False

    def ready(self):
        """Always acquirable: True."""
        return True

    def release(self):
        """Does nothing."""

    def rawlink(self, callback):
        pass

    def unlink(self, callback):
        pass

    def wait(self, timeout=None):
        """Returns 1 at once."""
        return 1

    def acquire(self, blocking=True, timeout=None):
        """Returns True at once."""
        return True

    def __enter__(self):
        pass

    def __exit__(self, typ, val, tb):
        pass


class RLock:
    """A reentrant mutex: the greenlet holding it may acquire it again.

    Each :meth:`acquire` must be matched by a :meth:`release` from the same
    greenlet; releasing a lock the current greenlet does not hold raises
    :exc:`RuntimeError`.  Same API as :class:`threading.RLock`.
    """

    __slots__ = ("_block", "_owner", "_count", "__weakref__")

    def __init__(self, hub=None):
        self._block = Semaphore(1, hub)
        self._owner = None
        self._count = 0

    def __repr__(self):
        return f"<{type(self).__name__} at 0x{id(self):x} _block={self._block} _count={self._count!r} _owner={self._owner!r})>"

    def acquire(self, blocking=True, timeout=None):
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

    def __enter__(self):
        return self.acquire()

    def release(self):
        """Release once; the lock is free when every acquire has been released."""
        if self._owner is not getcurrent():
            raise RuntimeError(
                f"cannot release un-acquired lock. Owner: {self._owner!r} Current: {getcurrent()!r}"
            )
        self._count = count = self._count - 1
        if not count:
            self._owner = None
            self._block.release()

    def __exit__(self, typ, value, tb):
        self.release()

    def locked(self):
        """True while some greenlet holds the lock."""
        return self._count > 0

    # For threading.Condition.

    def _acquire_restore(self, count_owner):
        count, owner = count_owner
        self._block.acquire()
        self._count = count
        self._owner = owner

    def _release_save(self):
        count = self._count
        self._count = 0
        owner = self._owner
        self._owner = None
        self._block.release()
        return (count, owner)

    def _is_owned(self):
        return self._owner is getcurrent()

    def _at_fork_reinit(self):
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

    def __init__(self):
        BoundedSemaphore.__init__(self, 1)

    def acquire(self, blocking=True, timeout=-1):
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

    def release(self):
        """Release the lock; :exc:`RuntimeError` if it is not locked."""
        if self.counter >= 1:
            raise RuntimeError("release unlocked lock")
        BoundedSemaphore.release(self)

    def __enter__(self):
        return self.acquire()

    def __repr__(self):
        return "<{} {} object at 0x{:x}>".format(
            "locked" if self.locked() else "unlocked",
            type(self).__name__,
            id(self),
        )
