"""The :mod:`_thread` interface implemented with greenlets (gevent.thread).

A helper for :mod:`greenwheel.monkey` (``patch_thread``): "threads" started
here are greenlets of the calling thread's hub, ``get_ident()`` identifies
the current greenlet, and locks block only the calling greenlet.  To run
greenlets in your own code, use :func:`greenwheel.spawn`.
"""

import _thread as __thread__

from greenlet import GreenletExit, getcurrent

from ._exceptions import LoopExit
from ._greenlet import Greenlet
from ._hub import _get_hub_if_exists, sleep
from ._local import local as _local  # noqa: F401 - in __implements__
from ._lock import Lock as _GreenLock

__target__ = "_thread"

__implements__ = [
    "allocate_lock",
    "get_ident",
    "exit",
    "LockType",
    "stack_size",
    "start_new_thread",
    "_local",
]

error = __thread__.error
_real_get_ident = __thread__.get_ident


def get_ident(gr=None):
    """An integer identifying *gr* (default: the current greenlet)."""
    if gr is None:
        try:
            gr = getcurrent()
        except RuntimeError:
            # The interpreter is finalizing and greenlet has torn down this
            # thread's greenlets (a logging handler's clean-up at exit, say):
            # there is no greenlet identity left, the OS thread's is the truth.
            return _real_get_ident()
    return id(gr)


def _thread_main(function, args, kwargs):
    try:
        function(*args, **kwargs)
    except SystemExit:
        # Ends a thread quietly, as with a real thread.
        pass


def start_new_thread(function, args=(), kwargs=None):
    """Run ``function(*args, **kwargs)`` in a new greenlet; return its ident."""
    if not isinstance(args, tuple):
        raise TypeError("2nd arg must be a tuple")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError("optional 3rd arg must be a dictionary")
    glet = Greenlet.spawn(_thread_main, function, args, kwargs or {})
    return get_ident(glet)


class LockType(_GreenLock):
    """The lock type of a patched :mod:`_thread`: a greenwheel Lock.

    A failed non-blocking acquire yields to the other greenlets, so that a
    loop polling ``lock.acquire(False)`` lets the holder make progress (as
    preemption would with real threads).
    """

    __slots__ = ()

    _OVER_RELEASE_ERROR = __thread__.error

    def acquire(self, blocking=True, timeout=-1):
        try:
            acquired = _GreenLock.acquire(self, blocking, timeout)
        except LoopExit:
            if blocking:
                raise
            acquired = False
        if not acquired and not blocking:
            hub = _get_hub_if_exists()
            if hub is not None and getcurrent() is not hub:
                sleep()
        return acquired

    acquire_lock = acquire

    def release_lock(self):
        self.release()

    def locked_lock(self):
        return self.locked()


allocate_lock = LockType


def exit():
    """End the current "thread" (greenlet)."""
    raise GreenletExit


_native_stack_size = getattr(__thread__, "stack_size", None)


def stack_size(size=None):
    """Greenlets have no stack size of their own: reports (or passes on) the native one."""
    if size is None:
        return _native_stack_size()
    if size == 0 or size > _native_stack_size():
        return _native_stack_size(size)
    if size < 32768:
        raise ValueError("size not valid: %d bytes" % size)
    return _native_stack_size()


if _native_stack_size is None:  # pragma: no cover
    __implements__.remove("stack_size")
    del stack_size

# The old aliases.
allocate = allocate_lock
start_new = start_new_thread
exit_thread = exit
__implements__ += ["allocate", "start_new", "exit_thread"]

# Everything else comes from the real module (TIMEOUT_MAX, interrupt_main, ...).
__imports__ = []
for _name in dir(__thread__):
    if _name.startswith("__") or _name in __implements__ or _name in globals():
        continue
    globals()[_name] = getattr(__thread__, _name)
    __imports__.append(_name)
del _name

__all__ = (
    [name for name in __implements__ if not name.startswith("_")]
    + ["error"]
    + [name for name in __imports__ if not name.startswith("_")]
)
