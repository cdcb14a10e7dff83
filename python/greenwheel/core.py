"""gevent.core: the event loop module, for code that reaches the loop by that name.

In gevent, ``gevent.core`` re-exports the loop implementation in use (libev or
libuv). In greenwheel the loop is the Rust :class:`greenwheel._core.Loop`; this
module names it and its watcher constants the way gevent's module does.
"""

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
