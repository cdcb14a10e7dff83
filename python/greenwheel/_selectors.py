"""A cooperative ``selectors`` implementation: the code behind
:mod:`greenwheel.selectors`.

:class:`GeventSelector` keeps its registrations in a kernel selector of its
own (epoll, kqueue or devpoll), whose descriptor becomes readable whenever
one of the registered descriptors is ready.  ``select()`` asks that selector
with a zero timeout, and when nothing is ready parks the greenlet on a single
loop watcher for the selector's descriptor, then asks again.  Waiting thus
costs one watcher however many files are registered, and the answers are the
kernel's own.  Where no such selector exists it falls back to a
``PollSelector`` driven by :class:`greenwheel.select.poll`.
"""

import selectors as __selectors__
from errno import EBADF, EINVAL
from time import monotonic as _monotonic

from ._hub import get_hub, sleep
from ._select import poll as _cooperative_poll
from ._select import select as _cooperative_select
from ._socket import _block, cancel_wait_ex

__all__ = ["GeventSelector", "DefaultSelector"]

EVENT_READ = __selectors__.EVENT_READ
EVENT_WRITE = __selectors__.EVENT_WRITE


def _kernel_selector_class():
    for name in ("EpollSelector", "KqueueSelector", "DevpollSelector"):
        cls = getattr(__selectors__, name, None)
        if cls is not None:
            return cls
    return None


# Chosen at import: greenwheel.monkey's aggressive patching later removes
# EpollSelector & co. from the selectors module.
_KERNEL_SELECTOR_CLASS = _kernel_selector_class()


def _select_method(self, rlist, wlist, xlist, timeout=None):
    """``SelectSelector._select`` once patched: the cooperative ``select``.

    A plain function, unlike the built-in it replaces, so it takes the
    instance argument and drops it.
    """
    return _cooperative_select(rlist, wlist, xlist, timeout)


# How gevent's tests recognise a patched SelectSelector.
_select_method._gevent_monkey = True  # type: ignore[attr-defined]


class _CooperativePollSelector(__selectors__.PollSelector):
    """Fallback: the stdlib PollSelector over greenwheel's cooperative poll."""

    _selector_cls = _cooperative_poll


class _Never(Exception):
    """A timer exception that is never raised (the timer only wakes us)."""


class GeventSelector(__selectors__.BaseSelector):
    """A ``selectors.BaseSelector`` whose ``select()`` blocks only the calling greenlet.

    As with every selector, unregister a file before closing it.
    """

    def __init__(self, hub=None):
        self._hub = hub if hub is not None else get_hub()
        kernel_cls = _KERNEL_SELECTOR_CLASS
        if kernel_cls is None:
            self._selector = _CooperativePollSelector()
            self._watcher = None
        else:
            self._selector = kernel_cls()
            self._watcher = self._hub.loop.io(self._selector.fileno(), 1)

    @property
    def hub(self):
        return self._hub

    def fileno(self):
        return self._selector.fileno() if self._watcher is not None else -1

    def _open(self):
        selector = self._selector
        if selector is None:
            raise RuntimeError("Selector is closed")
        return selector

    def register(self, fileobj, events, data=None):
        try:
            return self._open().register(fileobj, events, data)
        except OSError as err:
            if err.errno not in (EBADF, EINVAL):
                raise
            # A closed descriptor (EINVAL: its number is now the kernel
            # selector's own). The kernel selector already forgot the key.
            raise ValueError("Invalid file descriptor: %r" % (fileobj,)) from err

    def unregister(self, fileobj):
        selector = self._selector
        if selector is None:
            # As the standard selectors: nothing is registered any more.
            raise KeyError("%r is not registered" % (fileobj,))
        return selector.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        selector = self._selector
        if selector is None:
            raise KeyError("%r is not registered" % (fileobj,))
        return selector.modify(fileobj, events, data)

    def get_key(self, fileobj):
        return self._open().get_key(fileobj)

    def get_map(self):
        """The ``{fileobj: SelectorKey}`` mapping; None once closed (as the stdlib)."""
        selector = self._selector
        return None if selector is None else selector.get_map()

    def select(self, timeout=None):
        """Wait up to *timeout* seconds (None: forever); return ``[(key, events)]``."""
        selector = self._open()
        watcher = self._watcher
        if watcher is None:
            return selector.select(timeout)
        ready = selector.select(0)
        polling = timeout is not None and timeout <= 0
        if ready or polling:
            # Always a switch point: a caller looping on ready files (or
            # polling) must let the other greenlets run; then a fresh answer.
            sleep(0)
            if self._selector is not selector:
                raise RuntimeError("Selector is closed")
            ready = selector.select(0)
            if ready or polling:
                return ready
        deadline = None if timeout is None else _monotonic() + timeout
        while True:
            # Timed out by the wait itself (its clock is the loop's, which is
            # not time.monotonic() when a test made it virtual).
            timed_out = False
            try:
                _block(self._hub, watcher, deadline, (_Never,))
            except _Never:
                timed_out = True
            ready = selector.select(0)
            if ready or timed_out:
                return ready

    def close(self):
        selector = self._selector
        if selector is None:
            return
        self._selector = None
        watcher = self._watcher
        self._watcher = None
        if watcher is not None:
            hub = self._hub
            if watcher.active:
                # A greenlet is parked in select(): wake it with EBADF.
                hub.cancel_wait(watcher, cancel_wait_ex, True)
            else:
                watcher.close()
            fd = selector.fileno()
            if hub.loop is not None and fd >= 0:
                hub.loop.closing_fd(fd)
        selector.close()


DefaultSelector = GeventSelector
