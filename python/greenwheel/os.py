"""Cooperative pieces of :mod:`os` (gevent.os).

* :func:`fork` (also :func:`fork_gevent`): ``os.fork()`` after which the
  child's hub is re-initialised (:func:`greenwheel.reinit`) so greenlets and
  the loop work there; :func:`forkpty` likewise.
* :func:`fork_and_watch` (and :func:`forkpty_and_watch`): fork, and in the parent call a callback from the
  hub when the child exits.
* :func:`waitpid`: ``os.waitpid`` that blocks only the calling greenlet (see
  :mod:`greenwheel._child` for how exits are noticed: ``SIGCHLD`` plus a
  polling safety net).
* :func:`tp_read` / :func:`tp_write`: ``os.read`` / ``os.write`` run in the
  hub's thread pool (for descriptors that cannot be non-blocking, e.g.
  regular files).
* :func:`make_nonblocking`, :func:`nb_read`, :func:`nb_write`: for pipes,
  ttys and sockets; a read or write that would block parks the greenlet on
  the loop until the descriptor is ready.

``patch_os()`` installs :func:`fork`, :func:`forkpty` and :func:`waitpid`.
"""

import errno
import os as __os__

from . import _child
from ._hub import get_hub, reinit
from ._typecheck import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__target__ = "os"

__implements__ = ["fork", "waitpid"]
__extensions__ = [
    "fork_gevent",
    "fork_and_watch",
    "forkpty_and_watch",
    "forkpty_gevent",
    "tp_read",
    "tp_write",
    "make_nonblocking",
    "nb_read",
    "nb_write",
]

_read = __os__.read
_write = __os__.write
_real_fork = _child._original("os", "fork")
_real_forkpty = _child._original("os", "forkpty")
_real_waitpid = _child._real_waitpid

ignored_errors = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR)


# --- thread-pool I/O -----------------------------------------------------------------------


def tp_read(fd: int, n: int) -> bytes:
    """``os.read(fd, n)`` in the hub's thread pool; only the calling greenlet waits."""
    return get_hub().threadpool.apply(_read, (fd, n))


def tp_write(fd: int, buf: bytes) -> int:
    """``os.write(fd, buf)`` in the hub's thread pool; only the calling greenlet waits."""
    return get_hub().threadpool.apply(_write, (fd, buf))


# --- non-blocking I/O ------------------------------------------------------------------------


def make_nonblocking(fd: int) -> bool:
    """Put *fd* in non-blocking mode; True if it was blocking before."""
    if not __os__.get_blocking(fd):
        return False
    __os__.set_blocking(fd, False)
    return True


def _wait(fd, events):
    hub = get_hub()
    watcher = hub.loop.io(fd, events)
    try:
        hub.wait(watcher)
    finally:
        watcher.close()


def nb_read(fd: int, n: int) -> bytes:
    """Read at most *n* bytes from the non-blocking *fd*, parking the greenlet while none are ready."""
    while True:
        try:
            return _read(fd, n)
        except OSError as e:
            if e.errno not in ignored_errors:
                raise
        _wait(fd, 1)


def nb_write(fd: int, buf: bytes) -> int:
    """Write *buf* (some of it) to the non-blocking *fd*, parking the greenlet while it is full."""
    while True:
        try:
            return _write(fd, buf)
        except OSError as e:
            if e.errno not in ignored_errors:
                raise
        _wait(fd, 2)


# --- fork --------------------------------------------------------------------------------------


def fork_gevent() -> int:
    """``os.fork()``; in the child the hub is re-initialised (reinit) and works."""
    pid = _real_fork()
    if pid == 0:
        # Already done by greenwheel's os.register_at_fork hook; idempotent.
        reinit()
    return pid


fork = fork_gevent

if _real_forkpty is not None:

    def forkpty_gevent() -> "tuple[int, int]":
        """``os.forkpty()``, re-initialising the hub in the child."""
        pid, master_fd = _real_forkpty()
        if pid == 0:
            reinit()
        return pid, master_fd

    forkpty = forkpty_gevent
    __implements__.append("forkpty")
else:  # pragma: no cover
    __extensions__.remove("forkpty_gevent")


# (Annotations naming typing's types are in quotes: those types are imported only
# for the type checker, this module's namespace mirroring the standard os.)
def fork_and_watch(
    callback: "Callable[[Any], object] | None" = None,
    loop: object = None,
    ref: bool = False,
    fork: "Callable[[], Any]" = fork_gevent,
) -> "Any":
    """Fork; in the parent, call ``callback(watcher)`` from the hub when the child exits.

    *watcher* has ``pid``, ``rpid`` and ``rstatus`` (the ``waitpid`` status),
    like a libev child watcher.  With ``ref=False`` (the default) the watch
    does not keep the loop alive.  Returns what *fork* returns.
    """
    result = fork()
    pid = result[0] if isinstance(result, tuple) else result
    if pid:
        child = _child.watch(pid)
        if callback is not None:
            child.event.rawlink(lambda _event, child=child, callback=callback: callback(child))
        if ref or not _child.install_sigchld():
            # No SIGCHLD delivery here (or the caller wants the loop kept
            # alive): a greenlet polls for the exit.
            from ._greenlet import Greenlet

            Greenlet.spawn(_child.wait_child, pid)
    return result


if _real_forkpty is not None:

    def forkpty_and_watch(
        callback: "Callable[[Any], object] | None" = None,
        loop: object = None,
        ref: bool = False,
        forkpty: "Callable[[], Any]" = forkpty_gevent,
    ) -> "Any":
        """:func:`fork_and_watch` with :func:`forkpty_gevent`: returns ``(pid, master_fd)``."""
        return fork_and_watch(callback, loop, ref, forkpty)

else:  # pragma: no cover
    __extensions__.remove("forkpty_and_watch")


# --- waitpid -------------------------------------------------------------------------------------


def _reap_children(timeout=60):
    """Forget the children watched by :func:`fork_and_watch` that exited more
    than *timeout* seconds ago and were never waited for (done on every
    child exit with a minute's grace; ``0`` forgets all that have exited)."""
    _child.forget_finished(timeout)


def waitpid(pid: int, options: int) -> "tuple[int, int]":
    """``os.waitpid`` that blocks only the calling greenlet.

    Statuses of children greenwheel watches (``subprocess.Popen``,
    :func:`fork_and_watch`) are shared: waiting here for such a child does
    not take its status away from its ``Popen`` object.
    """
    if pid > 0:
        child = _child._children.get(pid)
        if child is not None and child.status is not None:
            if not child.owned:
                _child.forget(pid)
            return pid, child.status
        if options & _child.WNOHANG:
            rpid, status = _real_waitpid(pid, options)
            if rpid:
                _child.record_foreign(rpid, status)
            return rpid, status
        created = child is None
        if created:
            # Not a child of ours at all: raises ChildProcessError, like os.waitpid.
            rpid, status = _real_waitpid(pid, options | _child.WNOHANG)
            if rpid:
                return rpid, status
        status = _child.wait_child(pid)
        child = _child._children.get(pid)
        if created and child is not None and not child.owned:
            _child.forget(pid)
        return pid, status
    if options & _child.WNOHANG:
        finished = _child.claim_finished(pid)
        if finished is not None:
            return finished
        rpid, status = _real_waitpid(pid, options)
        if rpid:
            _child.record_foreign(rpid, status)
        return rpid, status
    return _child.wait_any(pid, options)


# The rest of the standard module, unchanged.
__imports__ = []
for _name in dir(__os__):
    if _name.startswith("__") or _name in globals():
        continue
    globals()[_name] = getattr(__os__, _name)
    __imports__.append(_name)
del _name

__all__ = __implements__ + __extensions__
