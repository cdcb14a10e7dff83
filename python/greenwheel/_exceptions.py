"""Exception types shared by the hub, greenlets, timeouts and pools.

They live in one leaf module (importing nothing else from greenwheel) so that
every other module, including ones written later (event, queue, lock, socket),
can import them without creating import cycles.
"""

from __future__ import annotations

from greenlet import GreenletExit

from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "LoopExit",
    "HubDestroyed",
    "BlockingSwitchOutError",
    "InvalidSwitchError",
    "ConcurrentObjectUseError",
    "InvalidThreadUseError",
    "LinkedExited",
    "LinkedCompleted",
    "LinkedFailed",
    "LinkedKilled",
]


class LoopExit(Exception):
    """The event loop ran out of work while a greenlet was still waiting.

    Raised in the main greenlet (the hub's parent): it means the wait can never
    be satisfied, e.g. joining a greenlet that is blocked on something nobody
    will ever provide.  ``args`` is ``(message, hub)`` when the hub raised it.
    """

    @property
    def hub(self) -> Any:
        """The hub whose loop ran dry (None if raised by user code)."""
        return self.args[1] if len(self.args) >= 2 else None

    def __str__(self) -> str:
        # Only the message: the hub's repr is noise in a traceback.
        return str(self.args[0]) if self.args else ""


class HubDestroyed(GreenletExit):
    """Thrown into the hub by :meth:`Hub.destroy` to unwind its loop.

    A GreenletExit so that the hub greenlet dies quietly instead of passing the
    exception on to its parent.
    """


# The AssertionError subclasses follow gevent: they flag programming errors
# (blocking from inside the hub, a stray switch, two greenlets sharing a Waiter).
class BlockingSwitchOutError(AssertionError):
    """A blocking greenwheel call was made from inside the hub (a loop callback)."""


class InvalidSwitchError(AssertionError):
    """A waiting greenlet was resumed by something other than what it waited for."""


class ConcurrentObjectUseError(AssertionError):
    """An object meant for one waiter was waited on by a second greenlet."""


class InvalidThreadUseError(RuntimeError):
    """An object bound to one OS thread's hub was used from another thread."""


# --- The gevent 0.13 link exceptions --------------------------------------
#
# ``greenlet.link()`` with a greenlet receiver raises one of these inside the
# receiver when the linked greenlet ends.  gevent 0.13 had two incompatible
# hierarchies: gevent.greenlet made LinkedKilled a LinkedCompleted (a kill
# *returns* GreenletExit, so it is a success), while gevent.proc made it a
# LinkedFailed.  Old code catches either, so LinkedKilled derives from both:
# ``except LinkedCompleted`` and ``except LinkedFailed`` both keep working.


class LinkedExited(Exception):
    """Base of the exceptions a link raises in a receiving greenlet.

    ``source`` is the greenlet that ended.
    """

    msg = "%r exited"

    def __init__(self, source: Any, msg: str | None = None) -> None:
        self.source = source
        Exception.__init__(self, msg if msg is not None else self.msg % (source,))


class LinkedCompleted(LinkedExited):
    """The linked greenlet returned normally."""

    msg = "%r completed successfully"


class LinkedFailed(LinkedExited):
    """The linked greenlet died with an unhandled exception."""

    msg = "%r failed with %s"

    def __init__(self, source: Any) -> None:
        LinkedExited.__init__(
            self, source, self.msg % (source, _class_name(getattr(source, "exception", None)))
        )


class LinkedKilled(LinkedCompleted, LinkedFailed):
    """The linked greenlet was killed (it ended with a GreenletExit)."""

    msg = "%r returned %s"

    def __init__(self, source: Any) -> None:
        LinkedExited.__init__(
            self, source, self.msg % (source, _class_name(getattr(source, "value", None)))
        )


def _class_name(obj: object) -> str:
    # gevent 0.13 names the exception's class; fall back to its text for
    # objects whose class lookup misbehaves (proxies and the like).
    try:
        return obj.__class__.__name__
    except Exception:  # pragma: no cover - defensive, mirrors gevent 0.13
        return str(obj) or repr(obj)
