"""Pieces of :mod:`threading` built on greenlets (gevent.threading).

A helper for :mod:`greenwheel.monkey` (``patch_thread``), not for direct
use.  Rather than replacing ``threading.Thread``, the patch swaps the
low-level hooks the standard module is built on: ``_start_new_thread``
(starts a greenlet), ``_allocate_lock``/``Lock`` and ``get_ident``
(greenlet based), ``_set_sentinel`` (a lock released when the greenlet
ends, which is what ``join()`` waits for), ``_CRLock`` (None, so ``RLock``
is the pure-Python one on our locks) and ``_DummyThread`` (removed from
``threading._active`` when its greenlet ends).  ``threading.Thread``,
``Timer``, ``Condition``, ``Semaphore``, ``Barrier``, including subclasses
defined before patching, then all run on greenlets.

Python 3.13 starts and joins threads differently (``_start_joinable_thread``
returns a ``_ThreadHandle`` that ``join()`` waits on, and ``_shutdown`` ends
in ``_thread._shutdown()``); there the green versions of those names from
:mod:`greenwheel.thread` take the place of ``_start_new_thread`` and
``_set_sentinel``.
"""

import threading as __threading__
import weakref

from greenlet import getcurrent

from ._local import local  # noqa: F401 - in __implements__
from .thread import LockType as _LockType
from .thread import get_ident  # noqa: F401 - in __implements__
from .thread import start_new_thread as _start_new_thread  # noqa: F401 - in __implements__

__target__ = "threading"

__implements__ = [
    "local",
    "_allocate_lock",
    "Lock",
    "get_ident",
    "_DummyThread",
]

if hasattr(__threading__, "_start_new_thread"):  # before 3.13
    __implements__.append("_start_new_thread")

if hasattr(__threading__, "_start_joinable_thread"):  # 3.13+: see greenwheel.thread
    from .thread import (  # noqa: F401 - in __implements__
        _get_main_thread_ident,  # in __implements__
        _make_thread_handle,
        _ThreadHandle,
    )
    from .thread import _shutdown as _thread_shutdown  # noqa: F401 - in __implements__
    from .thread import start_joinable_thread as _start_joinable_thread  # noqa: F401

    __implements__ += [
        "_start_joinable_thread",
        "_ThreadHandle",
        "_make_thread_handle",
        "_get_main_thread_ident",
        "_thread_shutdown",
    ]
    _make_handle = _make_thread_handle
else:
    _make_handle = None  # type: ignore[assignment]


def _handle_attr(thread):
    """The name of a 3.13+ thread's ``_ThreadHandle`` attribute, or None.

    3.13.0 calls it ``_handle``; later 3.13 releases and 3.14 renamed it
    ``_os_thread_handle`` (subclasses used ``_handle`` for their own data).
    """
    for name in ("_os_thread_handle", "_handle"):
        value = getattr(thread, name, None)
        if value is not None and hasattr(value, "is_done"):
            return name
    return None


_allocate_lock = _LockType
Lock = _LockType

if hasattr(__threading__, "_set_sentinel"):
    __implements__.append("_set_sentinel")

if hasattr(__threading__, "_CRLock"):
    # threading.RLock() falls back to its pure-Python RLock, built on
    # _allocate_lock and get_ident, when the C one is None.
    _CRLock = None
    __implements__.append("_CRLock")


class _SentinelRelease:
    """Releases a thread's sentinel lock once its greenlet has finished."""

    __slots__ = ("lock", "ref", "__weakref__")

    def __init__(self, lock):
        self.lock = lock
        self.ref = None

    def __call__(self, _source):
        lock = self.lock
        self.lock = None
        _pending_sentinels.discard(self)
        if lock is not None and lock.locked():
            lock.release()


# (Type comments in this module: see greenwheel.builtins.)
_pending_sentinels = set()  # type: set[_SentinelRelease]


def _set_sentinel():
    """The "thread state" lock of the current greenlet.

    ``Thread._bootstrap_inner`` acquires it; it is released when the
    greenlet ends (as the interpreter does for a real thread), and
    ``Thread.join()`` / ``is_alive()`` wait for / check exactly that.
    """
    lock = _LockType()
    glet = getcurrent()
    release = _SentinelRelease(lock)
    rawlink = getattr(glet, "rawlink", None)
    if rawlink is not None:
        rawlink(release)
    else:
        # A raw greenlet: released when it is garbage collected.
        _pending_sentinels.add(release)
        release.ref = weakref.ref(glet, release)
    return lock


def _make_cleanup(key, thread_ref, handle=None):
    def cleanup(_unused):
        if handle is not None:
            handle._set_done()
        active = __threading__._active
        thread = thread_ref()
        if thread is not None and active.get(key) is thread:
            del active[key]

    return cleanup


# Captured now: once patched, ``threading._DummyThread`` is the class below.
_StdDummyThread = __threading__._DummyThread


class _DummyThread(_StdDummyThread):
    """``threading.current_thread()`` of a greenlet not started by threading.

    Unlike the standard one, it leaves ``threading._active`` when its
    greenlet ends, so short-lived greenlets (one per request in a server
    that logs) do not accumulate.
    """

    def __init__(self):
        # What the standard constructor does, except that it registers the
        # thread under ``_active_limbo_lock``: a trace function calling
        # current_thread() runs while Thread._delete() holds that lock (all
        # greenlets of an OS thread share sys.settrace), and would deadlock.
        # A dict store cannot be interleaved by another greenlet anyway.
        __threading__.Thread.__init__(self, name=__threading__._newname("Dummy-%d"), daemon=True)
        self._started.set()
        self._set_ident()
        handle = None
        if _make_handle is not None:
            handle = _make_handle(self._ident)
            setattr(self, _handle_attr(self) or "_handle", handle)
        set_native_id = getattr(self, "_set_native_id", None)
        if set_native_id is not None:
            set_native_id()
        __threading__._active[self._ident] = self
        try:
            glet = getcurrent()
        except RuntimeError:
            # The interpreter is finalizing this thread's greenlets: nothing to link to.
            return
        cleanup = _make_cleanup(self._ident, weakref.ref(self), handle)
        rawlink = getattr(glet, "rawlink", None)
        if rawlink is not None:
            rawlink(cleanup)
        else:
            self._greenwheel_ref = weakref.ref(glet, cleanup)


def main_native_thread():
    """The ``threading`` object of the process's main OS thread."""
    return __threading__.main_thread()


__extensions__ = ["main_native_thread"]
__imports__ = []  # type: list[str]
__all__ = []
