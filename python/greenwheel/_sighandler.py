"""``greenwheel.signal_handler``: run a function in a greenlet when a signal arrives."""

import sys

from ._hub import get_hub

__all__ = ["signal_handler"]


class signal_handler:
    """signal_handler(signalnum, handler, *args, **kwargs) -> object with ``cancel()``

    Call ``handler(*args, **kwargs)`` in a new greenlet each time the process
    receives *signalnum* (main thread only, as for :func:`signal.signal`).
    The handler may block (sleep, I/O).  An exception it raises is passed to
    the main greenlet (so raising ``SystemExit`` from a ``SIGTERM`` handler
    ends the program).  Keep the returned object and call :meth:`cancel` to
    stop; the watcher does not keep the loop alive by itself (``ref``).
    """

    #: The greenlet class each delivery runs in (default: :class:`greenwheel.Greenlet`).
    greenlet_class = None

    def __init__(self, signalnum, handler, *args, **kwargs):
        if not callable(handler):
            raise TypeError("signal handler must be callable.")
        self.hub = get_hub()
        self.signalnum = signalnum
        self.handler = handler
        self.args = args
        self.kwargs = kwargs
        self.watcher = self.hub.loop.signal(signalnum, ref=False)
        self.watcher.start(self._start)
        if self.greenlet_class is None:
            from ._greenlet import Greenlet

            type(self).greenlet_class = Greenlet

    @property
    def ref(self):
        """Whether the watcher keeps the loop alive (False by default)."""
        return self.watcher.ref

    @ref.setter
    def ref(self, value):
        self.watcher.ref = value

    def cancel(self):
        """Stop delivering the signal to the handler (idempotent)."""
        watcher = self.watcher
        if watcher is not None:
            watcher.stop()
            watcher.close()
        self.watcher = None
        self.handler = None
        self.args = self.kwargs = None
        self.hub = None

    def _start(self):
        try:
            self.greenlet_class.spawn(self.handle)
        except:  # noqa: E722 - must not escape into the loop
            self.hub.handle_error(None, *sys.exc_info())

    def handle(self):
        """Run the handler (in its own greenlet)."""
        handler, hub = self.handler, self.hub
        if handler is None:
            return
        try:
            handler(*self.args, **self.kwargs)
        except:  # noqa: E722 - passed on to the main greenlet, as gevent does
            hub.handle_error(None, *sys.exc_info())

    def __repr__(self):
        return "<%s at 0x%x signalnum=%s handler=%r>" % (
            type(self).__name__,
            id(self),
            self.signalnum,
            self.handler,
        )
