"""Noticing child-process exits without blocking the loop.

The Rust loop has no child watchers, so this module provides them.

How an exit is noticed
----------------------
* ``SIGCHLD``: on the main thread a Python-level ``SIGCHLD`` handler is
  installed (the first time a child is watched).  The handler only sends an
  async watcher of the main hub's loop (thread- and signal-safe); in the hub
  the callback reaps every *watched* pid with ``waitpid(pid, WNOHANG)`` and
  wakes whoever waits for it.  Exits are thus noticed as soon as the loop
  runs, with no periodic wake-ups.
* Polling, as a safety net: a greenlet waiting for a child re-checks its pid
  (``waitpid(pid, WNOHANG)``) every 0.5 s while our handler is installed, and
  every 20-100 ms when it cannot be (another OS thread's hub, or someone
  replaced the handler with the raw ``signal.signal``).  This also covers a
  signal that arrived before the pid was registered.

Only watched pids are reaped, never ``waitpid(-1)``: children started by
code that reaps its own (``os.system``, unpatched ``subprocess``) are left
alone.  A ``SIGCHLD`` handler installed through :func:`greenwheel.signal.signal`
(``signal.signal`` once patched) still runs: in a new greenlet, after the
reaping.
"""

from __future__ import annotations

import os
import signal as _signal_mod
import sys
from time import monotonic

from . import _hub
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = ["watch", "forget", "reap", "wait_child", "install_sigchld"]

SIGCHLD = getattr(_signal_mod, "SIGCHLD", None)


def _original(module, name, default=None):
    monkey = sys.modules.get("greenwheel.monkey")
    if monkey is not None:
        try:
            return monkey.get_original(module, name)
        except (ImportError, AttributeError):
            return default
    return getattr(sys.modules.get(module) or __import__(module), name, default)


_real_waitpid = _original("os", "waitpid")
_real_signal = _original("signal", "signal")
_real_getsignal = _original("signal", "getsignal")
WNOHANG = getattr(os, "WNOHANG", 1)


class _Child:
    """A watched child process: ``status`` is None until it has exited."""

    __slots__ = ("pid", "status", "event", "owned", "reported", "exited_at", "__weakref__")

    def __init__(self, pid, owned):
        from ._event import Event

        self.pid = pid
        self.status = None
        self.event = Event()
        self.owned = owned
        # Whether waitpid(-1) has returned this child's exit already.
        self.reported = False
        #: time.monotonic() when its exit was recorded.
        self.exited_at = None

    # gevent's child-watcher attribute names, for fork_and_watch callbacks.
    @property
    def rpid(self):
        return self.pid if self.status is not None else 0

    @property
    def rstatus(self):
        return self.status if self.status is not None else 0

    def __repr__(self):
        return "<child pid=%s status=%s>" % (self.pid, self.status)


#: pid -> _Child
_children: dict[int, Any] = {}
#: Set and cleared on every reaping pass: wakes ``waitpid(-1)`` style waiters.
_any_change = None

_UNSET = object()
#: The SIGCHLD handler the program installed (through greenwheel.signal).
_child_handler = _UNSET
_installed = False
_async = None
_async_loop = None


def watch(pid, owned=False):
    """Start tracking *pid*; a finished record of a reused pid is replaced."""
    child = _children.get(pid)
    if child is None or (owned and child.status is not None):
        child = _children[pid] = _Child(pid, owned)
    elif owned:
        child.owned = True
    return child


def forget(pid):
    _children.pop(pid, None)


def _record(child, status):
    if child.status is None:
        child.status = status
        child.exited_at = monotonic()
        child.event.set()
        forget_finished(FORGET_AFTER)


#: How long the exit of a child nobody waits for is remembered (seconds).
FORGET_AFTER = 60.0


def forget_finished(older_than):
    """Drop the records of watched children (not ``Popen``'s) that exited
    more than *older_than* seconds ago and were never waited for, so a
    program that forks without waiting does not grow this table forever."""
    cutoff = monotonic() - older_than
    for pid, child in list(_children.items()):
        if not child.owned and child.exited_at is not None and child.exited_at <= cutoff:
            if _children.get(pid) is child:
                del _children[pid]


def reap(pid):
    """Check the watched *pid* without blocking; return its status or None."""
    child = _children.get(pid)
    if child is None:
        return None
    if child.status is not None:
        return child.status
    try:
        rpid, status = _real_waitpid(pid, WNOHANG)
    except ChildProcessError:
        # Reaped behind our back: the status is lost (the stdlib says 0 too).
        rpid, status = pid, 0
    if rpid == pid:
        _record(child, status)
        return status
    return None


def record_foreign(pid, status):
    """A ``waitpid`` done elsewhere returned *pid*: tell whoever watches it."""
    child = _children.get(pid)
    if child is not None:
        _record(child, status)


def _reap_all():
    for pid in list(_children):
        reap(pid)
    event = _any_change
    if event is not None:
        event.set()
        event.clear()


# --- SIGCHLD -----------------------------------------------------------------------------


def _on_main_thread():
    return _hub._get_ident() == _hub._main_thread_ident


def _sigchld(signum, frame):
    # The real handler: runs on the main thread wherever it happens to be;
    # only the async watcher is safe to touch from here.
    watcher = _async
    if watcher is not None:
        try:
            watcher.send()
        except Exception:  # its loop was destroyed; waiters poll instead
            pass


def _in_hub():
    _reap_all()
    handler = _child_handler
    if callable(handler):
        from ._greenlet import Greenlet

        Greenlet.spawn(handler, SIGCHLD, None)


def _ensure_async():
    """Point the SIGCHLD handler at this hub's loop; True if it pointed elsewhere."""
    global _async, _async_loop
    hub = _hub.get_hub()
    if _async is None or _async_loop is not hub.loop:
        watcher = hub.loop.async_(False)  # not referenced: never keeps the loop alive
        watcher.start(_in_hub)
        _async, _async_loop = watcher, hub.loop
        return True
    return False


def install_sigchld():
    """Make sure our SIGCHLD handler is installed; True if it is (main thread only)."""
    global _installed, _child_handler
    if SIGCHLD is None or not _on_main_thread():
        return False
    retargeted = _ensure_async()
    current = _real_getsignal(SIGCHLD)
    if _installed and current is _sigchld:
        if retargeted:
            # Until now the handler woke a destroyed hub's loop: a child that
            # exited in between was announced to nobody. Look now.
            _reap_all()
        return True
    if _child_handler is _UNSET or (callable(current) and current is not _sigchld):
        # The handler in place (the program's, or one installed over ours
        # with the raw signal.signal) keeps being called: chained from ours.
        _child_handler = current
    if _child_handler is _signal_mod.SIG_IGN:
        # The program wants children auto-reaped: leave that alone.
        return False
    try:
        _real_signal(SIGCHLD, _sigchld)
    except (ValueError, OSError):
        return False
    _installed = True
    # A watched child that exited before the handler was in place sent its
    # SIGCHLD to nobody: look now, or its watchers would wait for a signal
    # that never comes (fork_and_watch of a child that exits at once).
    _reap_all()
    return True


def _handler_active():
    return _installed and _real_getsignal(SIGCHLD) is _sigchld


def get_child_handler():
    if _child_handler is _UNSET:
        return _real_getsignal(SIGCHLD)
    return _child_handler


def set_child_handler(handler):
    """``signal.signal(SIGCHLD, handler)`` for the patched :mod:`signal`."""
    global _child_handler, _installed
    old = get_child_handler()
    if handler is _signal_mod.SIG_IGN:
        _child_handler = handler
        _real_signal(SIGCHLD, handler)
        _installed = False
        return old
    _child_handler = handler
    if not install_sigchld():
        _real_signal(SIGCHLD, handler)
    return old


# --- waiting -----------------------------------------------------------------------------


def _interval(slow):
    # How long a waiter sleeps between direct checks of its pid.
    if _on_main_thread() and (_handler_active() or install_sigchld()):
        return 0.5
    return slow


def wait_child(pid, timeout=None):
    """Block the calling greenlet until the watched *pid* exits; return its status.

    Returns None if *timeout* seconds pass first.
    """
    from ._clock import monotonic  # the clock child.event.wait() runs on

    child = watch(pid)
    deadline = None if timeout is None else monotonic() + timeout
    slow = 0.02
    while True:
        status = reap(pid)
        if status is not None:
            return status
        interval = _interval(slow)
        slow = min(slow * 1.5, 0.1)
        if deadline is not None:
            remaining = deadline - monotonic()
            if remaining <= 0:
                return None
            interval = min(interval, remaining)
        child.event.wait(interval)


def claim_finished(pid):
    """For ``waitpid(-1)``: a watched child that exited and was not yet reported.

    The reaper may collect a watched child before anyone waits for it, and the
    kernel then has nothing left for ``waitpid(-1)``: as in gevent, such a
    child is what ``waitpid(-1)`` returns. Returns ``(pid, status)`` or None.
    """
    if pid != -1:
        return None
    for child in list(_children.values()):
        if child.status is not None and not child.reported:
            child.reported = True
            if not child.owned:
                forget(child.pid)
            return child.pid, child.status
    return None


def wait_any(pid, options):
    """``waitpid(pid, options)`` for pid <= 0 without blocking the loop."""
    global _any_change
    from ._event import Event

    if _any_change is None:
        _any_change = Event()
    slow = 0.02
    while True:
        finished = claim_finished(pid)
        if finished is not None:
            return finished
        try:
            rpid, status = _real_waitpid(pid, options | WNOHANG)
        except ChildProcessError:
            # The reaper may have collected the last child since the check above.
            finished = claim_finished(pid)
            if finished is None:
                raise
            return finished
        if rpid:
            record_foreign(rpid, status)
            reaped = _children.get(rpid)
            if reaped is not None:
                reaped.reported = True
            return rpid, status
        interval = _interval(slow)
        slow = min(slow * 1.5, 0.1)
        _any_change.wait(interval)


def _after_fork_in_child():
    global _async, _async_loop, _any_change
    _children.clear()
    _async = _async_loop = None
    _any_change = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
