"""The zope.interface descriptions of the loop, its watchers and its callbacks.

gevent publishes these as ``gevent._interfaces`` (``ILoop``, ``IWatcher``,
``ICallback``) for documentation and for checking an event loop
implementation with :func:`zope.interface.verify.verifyObject`. Importing this
module declares that greenwheel's Rust loop classes (and the Python-built stat
and child watchers of :mod:`greenwheel.core`) provide them.
"""

from zope.interface import Attribute, Interface, classImplements

__all__ = ["ICallback", "ILoop", "IWatcher"]

# Interface methods are written without ``self``, as zope.interface expects.


class ILoop(Interface):
    """An event loop: runs callbacks and makes the watchers that wait for
    events (``io``, ``timer``, ``signal``, ``idle``, ``prepare``, ``check``,
    ``fork``, ``async_``, ``child``, ``stat``).

    The watcher factories take *ref* (False: an active watcher does not keep
    :meth:`run` from returning) and usually *priority* (kept for
    compatibility; greenwheel dispatches events in arrival order).
    """

    default = Attribute("True for the main thread's loop (read-only)")

    approx_timer_resolution = Attribute(
        "About the shortest delay a timer can measure, in seconds (read-only)"
    )

    def run(nowait=False, once=False):
        """Dispatch events until nothing referenced is left; *once* makes one
        pass (blocking if needed), *nowait* one pass without blocking."""

    def now():
        """The loop's cached monotonic time, in seconds."""

    def update_now():
        """Refresh the cached time that :meth:`now` returns."""

    def destroy():
        """Stop every watcher and release the loop's operating system
        resources; the loop cannot be used afterwards."""

    def io(fd, events, ref=True, priority=None):
        """A watcher of *fd* becoming readable (1) and/or writable (2)."""

    def closing_fd(fd):
        """Say that *fd* is about to be closed; True if watchers were still
        active on it."""

    def timer(after, repeat=0.0, ref=True, priority=None):
        """A watcher that fires *after* seconds from its start, then every
        *repeat* seconds if that is positive."""

    def signal(signum, ref=True, priority=None):
        """A watcher of the signal *signum*."""

    def idle(ref=True, priority=None):
        """A watcher that fires when the loop has nothing else to do."""

    def prepare(ref=True, priority=None):
        """A watcher that fires before each poll for I/O."""

    def check(ref=True, priority=None):
        """A watcher that fires after each poll for I/O."""

    def fork(ref=True, priority=None):
        """A watcher that fires in the child process after a fork."""

    def async_(ref=True, priority=None):
        """A watcher that any thread can trigger with ``send()``."""

    def child(pid, trace=0, ref=True):
        """A watcher of the child process *pid* exiting."""

    def stat(path, interval=0.0, ref=True, priority=None):
        """A watcher of changes to the file system entry at *path*, checked
        every *interval* seconds."""

    def run_callback(func, *args):
        """Call ``func(*args)`` from the loop soon; returns an
        :class:`ICallback`."""

    def run_callback_threadsafe(func, *args):
        """:meth:`run_callback` for other threads: also wakes the loop."""


class IWatcher(Interface):
    """One kind of event the loop waits for; calls its callback each time it
    happens while started. :meth:`close` it when done."""

    def start(callback, *args, **kwargs):
        """Begin waiting; ``callback(*args)`` runs from the loop on each event."""

    def stop():
        """Stop waiting; :meth:`start` may be called again later."""

    def close():
        """Stop and release the callback and its arguments for good."""


class ICallback(Interface):
    """A function the loop will call soon (see :meth:`ILoop.run_callback`)."""

    pending = Attribute("True until the function has run or been stopped")

    def stop():
        """Cancel the call if it has not happened yet."""

    def close():
        """Same as :meth:`stop`."""


def _declare():
    from . import _core, core

    classImplements(_core.Loop, ILoop)
    classImplements(_core.Callback, ICallback)
    for cls in (
        _core.TimerWatcher,
        _core.IoWatcher,
        _core.SignalWatcher,
        _core.PhaseWatcher,
        _core.AsyncWatcher,
        core._StatWatcher,
        core._ChildWatcher,
    ):
        classImplements(cls, IWatcher)


_declare()
