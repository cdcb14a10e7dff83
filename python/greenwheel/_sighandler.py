"""``greenwheel.signal_handler``: run a function in a greenlet when a signal arrives."""

from __future__ import annotations

import sys

from ._hub import get_hub
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ._core import SignalWatcher
    from ._hub import Hub

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
    greenlet_class: Any = None

    if TYPE_CHECKING:
        signalnum: int
        # These are None once cancelled (and, as in gevent, ``ref`` then
        # raises AttributeError).
        hub: Hub
        handler: Callable[..., object]
        args: tuple[Any, ...]
        kwargs: dict[str, Any]
        watcher: SignalWatcher

    def __init__(
        self, signalnum: int, handler: Callable[..., object], *args: Any, **kwargs: Any
    ) -> None:
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
    def ref(self) -> bool:
        """Whether the watcher keeps the loop alive (False by default)."""
        return self.watcher.ref

    @ref.setter
    def ref(self, value: bool) -> None:
        self.watcher.ref = value

    def cancel(self) -> None:
        """Stop delivering the signal to the handler (idempotent)."""
        watcher = self.watcher
        if watcher is not None:
            watcher.stop()
            watcher.close()
        self.watcher = None  # type: ignore[assignment]
        self.handler = None  # type: ignore[assignment]
        self.args = self.kwargs = None  # type: ignore[assignment]
        self.hub = None  # type: ignore[assignment]

    def _start(self) -> None:
        try:
            self.greenlet_class.spawn(self.handle)
        except:  # noqa: E722 - must not escape into the loop
            self.hub.handle_error(None, *sys.exc_info())

    def handle(self) -> None:
        """Run the handler (in its own greenlet)."""
        handler, hub = self.handler, self.hub
        if handler is None:
            return
        try:
            handler(*self.args, **self.kwargs)
        except:  # noqa: E722 - passed on to the main greenlet, as gevent does
            hub.handle_error(None, *sys.exc_info())

    def __repr__(self) -> str:
        return "<%s at 0x%x signalnum=%s handler=%r>" % (
            type(self).__name__,
            id(self),
            self.signalnum,
            self.handler,
        )
