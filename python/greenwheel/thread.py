"""The :mod:`_thread` interface implemented with greenlets (gevent.thread).

A helper for :mod:`greenwheel.monkey` (``patch_thread``): "threads" started
here are greenlets of the calling thread's hub, ``get_ident()`` identifies
the current greenlet, and locks block only the calling greenlet.  To run
greenlets in your own code, use :func:`greenwheel.spawn`.
"""

import _thread as __thread__
import sys

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

# --- Python 3.13+: joinable threads and their handles ----------------------------------------
#
# 3.13's threading no longer joins a thread through a lock the interpreter
# releases (``_set_sentinel``/``_tstate_lock``): it starts threads with
# ``_thread.start_joinable_thread`` and waits on the ``_thread._ThreadHandle``
# that returns, and ``threading._shutdown`` ends with ``_thread._shutdown()``,
# which joins every non-daemon thread.  Green versions of those four names
# make ``threading.Thread`` run on greenlets again.

_real_shutdown = getattr(__thread__, "_shutdown", None)

# Handles of started non-daemon "threads" that have not finished: what
# ``_shutdown`` waits for.  Each removes itself when its greenlet ends.
# (A type comment: see greenwheel.builtins.)
_non_daemon = set()  # type: set[_ThreadHandle]


class _ThreadHandle:
    """``_thread._ThreadHandle`` for a greenlet: its ident, and an Event
    set when the greenlet has finished (or the thread is marked done)."""

    __slots__ = ("_ident", "_done", "_started", "__weakref__")

    def __init__(self, *_args, **_kwargs):
        # The stdlib constructor takes and ignores any arguments too.
        from ._event import Event

        self._ident = None
        self._started = False
        self._done = Event()

    @property
    def ident(self):
        return self._ident

    def is_done(self):
        return self._done.is_set()

    def _set_done(self):
        self._done.set()
        _non_daemon.discard(self)

    def join(self, timeout=None):
        if not self._started:
            raise RuntimeError("thread not started")
        if self._ident == get_ident():
            raise RuntimeError("Cannot join current thread")
        # 3.14 spells "no timeout" -1; a negative timeout elsewhere means 0.
        if timeout is not None and timeout < 0:
            timeout = None if timeout == -1 else 0
        self._done.wait(timeout)

    def __repr__(self):
        return "<%s.%s ident=%r done=%s>" % (
            type(self).__module__,
            type(self).__qualname__,
            self._ident,
            self.is_done(),
        )


def _handle_done(handle):
    def done(_glet):
        handle._set_done()

    return done


def start_joinable_thread(function, handle=None, daemon=True):
    """Run ``function()`` in a new greenlet; return its :class:`_ThreadHandle`.

    Unless *daemon*, :func:`_shutdown` (at interpreter exit) waits for it.
    """
    if handle is None:
        handle = _ThreadHandle()
    elif not isinstance(handle, _ThreadHandle):
        # A threading.Thread built before patch_thread() carries the native
        # handle, whose ident only the C runtime can set.
        raise RuntimeError(
            "this thread was created before greenwheel.monkey.patch_thread(); "
            "create threads after patching"
        )
    elif handle._started:
        raise RuntimeError("thread already started")
    glet = Greenlet.spawn(_thread_main, function, (), {})
    handle._ident = get_ident(glet)
    handle._started = True
    if not daemon:
        _non_daemon.add(handle)
    glet.rawlink(_handle_done(handle))
    return handle


def _make_thread_handle(ident):
    """A handle for a thread already running (the main or a dummy thread)."""
    handle = _ThreadHandle()
    handle._ident = ident
    handle._started = True
    return handle


def _get_main_thread_ident():
    # After patching, threading calls this only in a forked child whose
    # forking greenlet was not a threading.Thread; that greenlet becomes the
    # child's main thread, and threading checks the ident against get_ident().
    return get_ident()


def _shutdown():
    """Wait for every non-daemon greenlet "thread", then for native ones."""
    while _non_daemon:
        handle = next(iter(_non_daemon))
        if handle._ident == get_ident():
            _non_daemon.discard(handle)  # shutdown from inside a thread: not ourselves
            continue
        handle.join()
        _non_daemon.discard(handle)
    if _real_shutdown is not None:
        _real_shutdown()


if sys.version_info >= (3, 13):
    __implements__ += [
        "start_joinable_thread",
        "_ThreadHandle",
        "_make_thread_handle",
        "_get_main_thread_ident",
        "_shutdown",
    ]
else:
    del _ThreadHandle, start_joinable_thread, _make_thread_handle
    del _get_main_thread_ident, _shutdown, _handle_done, _non_daemon, _real_shutdown

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
