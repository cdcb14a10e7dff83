"""Cooperative ``select()`` and ``poll()``: the implementation behind
:mod:`greenwheel.select`.

Both ask the kernel first with a zero timeout (the exact standard library
answer, including ``xlist`` and ``POLLHUP``/``POLLNVAL``).  Only if nothing is
ready do they start loop watchers on the descriptors, park the greenlet until
one fires or the timeout passes, and then ask the kernel again: the loop's
wake-up is just a hint, so a spurious one costs another round, never a wrong
answer.
"""

from __future__ import annotations

import select as __select__
import sys
from errno import EBADF

from greenlet import getcurrent

from ._clock import monotonic as _monotonic  # the clock the waits below run on
from ._exceptions import BlockingSwitchOutError
from ._hub import Waiter, _check_seconds, get_hub, sleep
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = ["select", "poll", "error"]

error = __select__.error
_os_select = __select__.select
_os_poll: Callable[[], __select__.poll] | None = getattr(__select__, "poll", None)

POLLIN = getattr(__select__, "POLLIN", 1)
POLLPRI = getattr(__select__, "POLLPRI", 2)
POLLOUT = getattr(__select__, "POLLOUT", 4)
POLLERR = getattr(__select__, "POLLERR", 8)
POLLHUP = getattr(__select__, "POLLHUP", 16)
POLLNVAL = getattr(__select__, "POLLNVAL", 32)
POLLRDNORM = getattr(__select__, "POLLRDNORM", 64)
POLLRDBAND = getattr(__select__, "POLLRDBAND", 128)
POLLWRNORM = getattr(__select__, "POLLWRNORM", 256)
POLLWRBAND = getattr(__select__, "POLLWRBAND", 512)

_READ = 1
_WRITE = 2
# POLLPRI alone is not watched (the loop has no "urgent data" event); with
# POLLIN it is reported whenever the kernel says so.
_POLL_READ = POLLIN | POLLRDNORM
_POLL_WRITE = POLLOUT | POLLWRNORM | POLLWRBAND


def get_fileno(obj: Any) -> int:
    """The descriptor of *obj* (an int or an object with ``fileno()``)."""
    if isinstance(obj, int):
        fd = obj
    else:
        try:
            fd = int(obj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError("Invalid file object: %r" % (obj,)) from None
    if fd < 0:
        raise ValueError("Invalid file descriptor: %s" % (fd,))
    return fd


def _park(interest: dict[int, int], deadline: float | None) -> None:
    """Block until one of ``{fd: events}`` looks ready or *deadline* passes.

    Every watcher's callback is the greenlet's own ``switch``: the first to
    fire resumes it, and the ``finally`` stops the rest before any of them
    can fire too.
    """
    hub = get_hub()
    glet = getcurrent()
    if glet is hub:
        raise BlockingSwitchOutError(
            "Impossible to call blocking function in the event loop callback"
        )
    loop = hub.loop
    watchers: list[Any] = []
    timer = None
    closed_fd = False
    try:
        io = loop.io
        switch = glet.switch
        for fd, events in interest.items():
            watcher = io(fd, events)
            watchers.append(watcher)
            try:
                watcher.start(switch)
            except OSError as err:
                if err.errno != EBADF:
                    raise
                # Closed since the kernel was asked: the next question
                # reports it, at once.
                closed_fd = True
                break
        if closed_fd:
            return
        if deadline is not None:
            remaining = deadline - _monotonic()
            if remaining <= 0:
                return
            timer = loop.timer(remaining)
            timer.start(switch)
        hub.switch()
    finally:
        for watcher in watchers:
            watcher.close()
        if timer is not None:
            timer.close()
        if closed_fd:
            # Still a switch point (with every watcher gone, so none of them
            # can resume us in the middle of it).
            sleep(0)


def _sleep_until(deadline: float | None) -> None:
    if deadline is None:
        # Like the OS call with nothing to watch: wait forever (a LoopExit
        # once nothing else can ever happen).
        Waiter().get()
    else:
        sleep(max(0.0, deadline - _monotonic()))


def _kernel_select() -> Callable[..., tuple[list[Any], list[Any], list[Any]]]:
    # select.select as greenwheel.select._original_select names it now: a
    # test (gevent's among them) may replace that to drive the waiting path.
    return getattr(sys.modules.get("greenwheel.select"), "_original_select", _os_select)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else _monotonic() + timeout


def select(
    rlist: Iterable[Any], wlist: Iterable[Any], xlist: Iterable[Any], timeout: float | None = None
) -> tuple[list[Any], list[Any], list[Any]]:
    """``select.select`` that blocks only the calling greenlet.

    The result is exactly what the kernel reports; *xlist* is checked but
    not watched (an exceptional condition alone does not end the wait).
    """
    if timeout is not None:
        timeout = _check_seconds(timeout)
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    if not isinstance(rlist, (list, tuple)):
        rlist = list(rlist)
    if not isinstance(wlist, (list, tuple)):
        wlist = list(wlist)
    if not isinstance(xlist, (list, tuple)):
        xlist = list(xlist)
    kernel_select = _kernel_select()
    result = kernel_select(rlist, wlist, xlist, 0)
    if result[0] or result[1] or result[2] or timeout == 0:
        # A switch point even when nothing needs waiting for: a consumer
        # looping on an always-ready descriptor (or polling with timeout 0)
        # must let the other greenlets run. The answer is the one given
        # before that turn, as the standard select() asks each object's
        # fileno() once per call (and the objects may not expect more).
        sleep(0)
        return result
    interest: dict[int, int] = {}
    for obj in rlist:
        fd = get_fileno(obj)
        interest[fd] = interest.get(fd, 0) | _READ
    for obj in wlist:
        fd = get_fileno(obj)
        interest[fd] = interest.get(fd, 0) | _WRITE
    deadline = _deadline(timeout)
    while True:
        if interest:
            _park(interest, deadline)
        else:
            # Nothing to watch: select() is just a sleep here.
            _sleep_until(deadline)
        result = kernel_select(rlist, wlist, xlist, 0)
        if result[0] or result[1] or result[2]:
            return result
        if deadline is not None and _monotonic() >= deadline:
            return result


class poll:
    """``select.poll`` that blocks only the calling greenlet.

    Same interface as the standard object: :meth:`register`, :meth:`modify`,
    :meth:`unregister`, and :meth:`poll` with a timeout in milliseconds
    (None or negative: wait forever).  Results carry the kernel's real
    event bits.
    """

    def __init__(self) -> None:
        self._fds: dict[int, int] = {}
        self._kernel = _os_poll() if _os_poll is not None else None

    def register(self, fd: Any, eventmask: int = POLLIN | POLLPRI | POLLOUT) -> None:
        fileno = get_fileno(fd)
        if self._kernel is not None:
            self._kernel.register(fileno, eventmask)
        self._fds[fileno] = eventmask

    def modify(self, fd: Any, eventmask: int) -> None:
        fileno = get_fileno(fd)
        if self._kernel is not None:
            self._kernel.modify(fileno, eventmask)
        elif fileno not in self._fds:
            raise FileNotFoundError(2, "No such file or directory")
        self._fds[fileno] = eventmask

    def unregister(self, fd: Any) -> None:
        fileno = get_fileno(fd)
        del self._fds[fileno]
        if self._kernel is not None:
            self._kernel.unregister(fileno)

    def _check(self) -> list[tuple[int, int]]:
        if self._kernel is not None:
            return self._kernel.poll(0)
        # No poll(2) on this platform: derive the answer from select().
        rlist = [fd for fd, mask in self._fds.items() if mask & _POLL_READ]
        wlist = [fd for fd, mask in self._fds.items() if mask & _POLL_WRITE]
        readable, writable, _ = _os_select(rlist, wlist, [], 0)
        events: dict[int, int] = {}
        for fd in readable:
            events[fd] = events.get(fd, 0) | POLLIN
        for fd in writable:
            events[fd] = events.get(fd, 0) | POLLOUT
        return list(events.items())

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        """Wait up to *timeout* milliseconds; return a list of ``(fd, events)``."""
        if timeout is not None:
            timeout = _check_seconds(timeout)
            if timeout < 0:
                timeout = None
            else:
                timeout = timeout / 1000.0
        result = self._check()
        if result or timeout == 0:
            # Always a switch point (see select()), then a fresh answer.
            sleep(0)
            result = self._check()
            if result or timeout == 0:
                return result
        interest = {}
        for fd, mask in self._fds.items():
            events = (_READ if mask & _POLL_READ else 0) | (_WRITE if mask & _POLL_WRITE else 0)
            # A descriptor registered for no readiness at all (only errors and
            # hang-ups, reported anyway) is not watched: its readability would
            # wake us over and over for nothing.
            if events:
                interest[fd] = events
        deadline = _deadline(timeout)
        while True:
            if interest:
                _park(interest, deadline)
            else:
                _sleep_until(deadline)
            result = self._check()
            if result or (deadline is not None and _monotonic() >= deadline):
                return result
