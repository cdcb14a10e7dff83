"""gevent.core: the event loop module, for code that reaches the loop by that name.

In gevent, ``gevent.core`` re-exports the loop implementation in use (libev or
libuv). In greenwheel the loop is the Rust :class:`greenwheel._core.Loop`; this
module names it and its watcher constants the way gevent's module does.

It also holds the two watcher kinds the Rust loop builds from Python (its
``Loop.stat`` and ``Loop.child`` return them): :class:`_StatWatcher`, which
notices changes to a file system entry by polling :func:`os.stat` from a
repeating timer (greenwheel has no inotify/kqueue file notifications), and
:class:`_ChildWatcher`, which notices a child process's exit through
:mod:`greenwheel._child` (``SIGCHLD`` plus a polling timer).
"""

import abc
import os

from ._core import READ, WRITE
from ._core import Callback as callback  # what loop.run_callback returns
from ._core import Loop as loop  # gevent's name for the loop class

#: The events an io watcher can wait for (gevent's ``core.EVENTS``).
EVENTS = READ | WRITE


def supported_backends():
    """The polling backends greenwheel's loop can use on this platform."""
    import sys

    return ["kqueue"] if sys.platform == "darwin" or "bsd" in sys.platform else ["epoll"]


recommended_backends = supported_backends


class _TimerDrivenWatcher(abc.ABC):
    """What the Python-built watchers share: the watcher protocol (callback,
    args, ref, priority, active, pending, start/stop/close, ``with``) over a
    repeating timer of the loop that calls :meth:`_poll`."""

    _period = 0.0

    def __init__(self, loop, ref=True, priority=None):
        self.loop = loop
        self._ref = bool(ref)
        self._priority = 0 if priority is None else priority
        self._timer = None
        self._callback = None
        self._args = None

    # -- the callback and its arguments, checked as the Rust watchers check them
    @property
    def callback(self):
        return self._callback

    @callback.setter
    def callback(self, value):
        if value is not None and not callable(value):
            raise TypeError("callback must be callable, not %s" % type(value).__name__)
        self._callback = value

    @property
    def args(self):
        return self._args

    @args.setter
    def args(self, value):
        if value is not None and type(value) is not tuple:
            raise TypeError("args must be a tuple or None, not %s" % type(value).__name__)
        self._args = value

    @property
    def ref(self):
        return self._ref

    @ref.setter
    def ref(self, value):
        self._ref = bool(value)
        if self._timer is not None:
            self._timer.ref = self._ref

    @property
    def priority(self):
        return self._priority

    @priority.setter
    def priority(self, value):
        if self.active:
            raise AttributeError("cannot set the priority of an active watcher")
        self._priority = value

    @property
    def active(self):
        return self._timer is not None and self._timer.active

    @property
    def pending(self):
        return False

    def start(self, callback, *args, **kwargs):
        if kwargs:
            raise TypeError("unexpected keyword argument %r" % (next(iter(kwargs)),))
        if not callable(callback):
            raise TypeError("callback must be callable, not %s" % type(callback).__name__)
        self._callback = callback
        self._args = args
        self._started()
        if self._timer is None:
            self._timer = self.loop.timer(self._period, self._period, ref=self._ref)
        self._timer.start(self._poll)

    def _started(self):  # noqa: B027 - an optional hook: most watchers need no baseline
        pass

    @abc.abstractmethod
    def _poll(self):
        """One look at what is watched, from the repeating timer (each subclass's own)."""

    def _fire(self):
        callback, args = self._callback, self._args
        if callback is not None:
            callback(*(args or ()))

    def stop(self):
        if self._timer is not None:
            self._timer.stop()

    def close(self):
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.close()
        self._callback = self._args = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<%s at %#x%s%s callback=%r args=%r>" % (
            type(self).__name__,
            id(self),
            " active" if self.active else "",
            "" if self._ref else " ref=False",
            self._callback,
            self._args,
        )


#: Seconds between stat() calls when ``interval`` is 0, and the least
#: interval accepted (libev's defaults for its polling fallback).
_STAT_DEFAULT_INTERVAL = 5.0
_STAT_MIN_INTERVAL = 0.1


def _stat_or_none(path):
    try:
        return os.stat(path)
    except OSError:
        return None


def _stat_key(result):
    # What counts as a change: a different inode, or the size, mode, link
    # count, owner or times changed; appearing or disappearing too.
    if result is None:
        return None
    return (
        result.st_dev,
        result.st_ino,
        result.st_mode,
        result.st_nlink,
        result.st_uid,
        result.st_gid,
        result.st_size,
        result.st_mtime_ns,
        result.st_ctime_ns,
    )


class _StatWatcher(_TimerDrivenWatcher):
    """``loop.stat(path, interval=0.0, ref=True, priority=None)``.

    Calls back when the entry at *path* changes: it is created, removed, or
    its :func:`os.stat` result differs. Changes are found by polling every
    *interval* seconds (0 means 5 s; less than 0.1 s means 0.1 s; the
    attribute holds the interval in use once started). ``attr`` is the
    latest stat result (None while the entry does not exist), ``prev`` the
    one before the last change.
    """

    def __init__(self, loop, path, interval=0.0, ref=True, priority=None):
        super().__init__(loop, ref, priority)
        self.path = path
        self._paths = os.fsencode(path)
        self.interval = interval
        self.attr = None
        self.prev = None

    def _started(self):
        interval = self.interval
        if not interval:
            interval = _STAT_DEFAULT_INTERVAL
        elif interval < _STAT_MIN_INTERVAL:
            interval = _STAT_MIN_INTERVAL
        if interval != self._period and self._timer is not None:
            self._timer.close()
            self._timer = None
        self.interval = self._period = interval
        self.attr = _stat_or_none(self._paths)

    def _poll(self):
        current = _stat_or_none(self._paths)
        if _stat_key(current) == _stat_key(self.attr):
            return
        self.prev, self.attr = self.attr, current
        self._fire()


class _ChildWatcher(_TimerDrivenWatcher):
    """``loop.child(pid, trace=0, ref=True)``: calls back once the child
    process *pid* (> 0) has exited, with ``rpid`` and ``rstatus`` set (the
    pid and its wait status). The exit is reaped by :mod:`greenwheel._child`
    (its ``SIGCHLD`` handler on the main thread); the watcher looks every
    50 ms. *trace* (libev's stopped/continued reporting) is accepted and
    ignored."""

    _period = 0.05

    def __init__(self, loop, pid, trace=0, ref=True):
        if pid <= 0:
            raise ValueError("child watchers need a specific pid (> 0), not %r" % (pid,))
        super().__init__(loop, ref, None)
        self.pid = pid
        self.trace = trace
        self.rpid = 0
        self.rstatus = 0

    def _started(self):
        from . import _child

        _child.watch(self.pid)
        if _child._on_main_thread():
            _child.install_sigchld()

    def _poll(self):
        from . import _child

        status = _child.reap(self.pid)
        if status is None:
            return
        self.rpid, self.rstatus = self.pid, status
        self.stop()
        self._fire()


embeddable_backends = supported_backends

__all__ = [
    "EVENTS",
    "READ",
    "WRITE",
    "callback",
    "embeddable_backends",
    "loop",
    "recommended_backends",
    "supported_backends",
]
