"""Primitives between real OS threads, under gevent's module name (``gevent._threading``).

After ``patch_all()`` the ``threading`` and ``queue`` modules block only the
calling greenlet; a thread pool's workers, and anything else that hands work
between OS threads, need the originals.  These are the ones greenwheel's
thread pool is built on (:mod:`greenwheel._threadpool`):

- :data:`Lock` is the real ``_thread.allocate_lock`` (patched or not);
- :class:`Queue` is an unbounded queue whose :meth:`~Queue.get` blocks the
  whole OS thread, with an optional timeout (:exc:`EmptyTimeout`), and
  counts unfinished tasks as gevent's does;
- :data:`start_new_thread` and :data:`get_thread_ident` are the real ones.

The lock, the thread functions and the native queue are those greenwheel's
thread pool (:mod:`greenwheel._threadpool`) runs on.
"""

from _queue import Empty as _Empty  # what the C SimpleQueue raises, patched or not

from ._threadpool import _allocate_lock as Lock
from ._threadpool import _NativeQueue
from ._threadpool import _real_get_ident as get_thread_ident  # noqa: F401 - as in gevent
from ._threadpool import _start_new_thread as start_new_thread  # noqa: F401 - as in gevent

__all__ = ["Lock", "Queue", "EmptyTimeout"]


class EmptyTimeout(Exception):
    """:meth:`Queue.get` found no item within its timeout."""


class Queue:
    """An unbounded FIFO queue between OS threads.

    Built on the C ``SimpleQueue`` (a real blocking queue, never the patched
    one).  :attr:`unfinished_tasks` counts the items put and not yet
    :meth:`task_done`.
    """

    __slots__ = ("_items", "_mutex", "unfinished_tasks")

    def __init__(self):
        self._items = _NativeQueue()
        self._mutex = Lock()
        self.unfinished_tasks = 0

    def allocate_cookie(self):
        """What each thread that calls :meth:`get` passes it (gevent's API:
        there a per-thread lock to wait on; here the native queue does the
        waiting, so any object serves)."""
        return Lock()

    def put(self, item):
        """Add *item*; never blocks."""
        with self._mutex:
            self.unfinished_tasks += 1
        self._items.put(item)

    def get(self, cookie=None, timeout=-1):
        """Remove and return the oldest item, blocking this OS thread until there
        is one; *timeout* seconds (-1 or None: no limit) then :exc:`EmptyTimeout`."""
        if timeout is None or timeout == -1:
            return self._items.get()
        if timeout < 0:
            raise ValueError("timeout must be -1 or >= 0, not %r" % (timeout,))
        try:
            return self._items.get(timeout=timeout)
        except _Empty:
            raise EmptyTimeout from None

    def task_done(self):
        """Mark one item taken with :meth:`get` as processed."""
        with self._mutex:
            if self.unfinished_tasks <= 0:
                raise ValueError("task_done() called more times than put()")
            self.unfinished_tasks -= 1

    def qsize(self):
        """How many items wait (a snapshot)."""
        return self._items.qsize()

    def empty(self):
        return self._items.empty()

    def full(self):
        """Never: the queue is unbounded."""
        return False

    def kill(self):
        """Drop the queue without draining it (after ``fork()``, say, when another
        thread may have held its lock); it must not be used afterwards."""
        self._items = None
        self._mutex = None
        self.unfinished_tasks = None
