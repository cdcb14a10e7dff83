"""asyncio on greenwheel's loop: one engine for coroutines and greenlets.

* :func:`new_event_loop` / :class:`GreenwheelEventLoop`: an asyncio event
  loop whose callbacks, timers, fd readiness, thread wake-ups and signals run
  on the hub's Rust loop; ``run_forever()`` blocks only the calling greenlet.
* :class:`EventLoopPolicy`: install it to make ``asyncio.run()`` use it; or
  ``asyncio.run(main(), loop_factory=greenwheel.asyncio.new_event_loop)``
  (Python 3.12+), or :func:`run`.
* :func:`await_`: from a greenlet, wait for an awaitable (only that greenlet
  blocks). :func:`wrap_greenlet`: from a coroutine, ``await`` a greenlet.
* :func:`spawn`: from a coroutine, ``await spawn(f, *args)`` runs gevent-style
  blocking code (``greenwheel.socket``, patched libraries) in a new greenlet,
  so it blocks only that greenlet, never the loop.
* ``loop.run_in_executor(None, f)`` runs ``f`` on the hub's thread pool.
"""

from ._asyncio_bridge import await_, spawn, wrap_greenlet
from ._asyncio_loop import EventLoopPolicy, GreenwheelEventLoop, new_event_loop, run

__all__ = [
    "EventLoopPolicy",
    "GreenwheelEventLoop",
    "await_",
    "new_event_loop",
    "run",
    "spawn",
    "wrap_greenlet",
]
