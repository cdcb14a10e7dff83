"""greenwheel: gevent-style cooperative concurrency on a Rust event loop.

Drop-in for gevent code, modern and classic (0.13-era)::

    import greenwheel as gevent

    def work(n):
        gevent.sleep(0.1)
        return n * 2

    jobs = [gevent.spawn(work, n) for n in range(3)]
    gevent.joinall(jobs)
    print([job.value for job in jobs])

The implementation lives in underscore modules (``_hub``, ``_greenlet``,
``_timeout``, ``_pool``); the public modules (``hub``, ``greenlet``,
``timeout``, ``pool``, ``exceptions``) and this package re-export it.
"""

from sys import getswitchinterval, setswitchinterval

from greenlet import GreenletExit, getcurrent

# _interpreter comes first: importing it refuses an unsupported interpreter
# (a free-threaded build) before the extension module loads. _providers
# tells the hub where its thread pool and monitor come from (the hub cannot
# import them: they are built on it). Then the submodules ``import gevent``
# binds (hub, greenlet, timeout, ...) plus the synchronisation modules, so
# that ``gevent.event.Event`` and friends work after ``import greenwheel as
# gevent`` (their names stay in the submodules).
from . import (  # noqa: F401
    _interpreter,
    _providers,
    event,
    exceptions,
    greenlet,
    hub,
    local,
    lock,
    os,
    queue,
    timeout,
)
from ._config import config

# The version lives in Cargo.toml only (pyproject.toml takes it from there).
from ._core import __version__  # noqa: F401
from ._exceptions import LinkedCompleted, LinkedExited, LinkedFailed, LinkedKilled, LoopExit
from ._greenlet import (
    Greenlet,
    joinall,
    killall,
    spawn,
    spawn_later,
    spawn_link,
    spawn_link_exception,
    spawn_link_value,
)
from ._hub import Hub, get_hub, idle, kill, reinit, sleep, spawn_raw
from ._sighandler import signal_handler
from ._timeout import Timeout, with_timeout
from ._wait import iwait, wait
from .os import fork

__all__ = [
    "Greenlet",
    "GreenletExit",
    "Hub",
    "LinkedCompleted",
    "LinkedExited",
    "LinkedFailed",
    "LinkedKilled",
    "LoopExit",
    "Timeout",
    "config",
    "fork",
    "getcurrent",
    "get_hub",
    "getswitchinterval",
    "idle",
    "iwait",
    "joinall",
    "kill",
    "killall",
    "reinit",
    "setswitchinterval",
    "sleep",
    "spawn",
    "spawn_later",
    "spawn_link",
    "spawn_link_exception",
    "spawn_link_value",
    "spawn_raw",
    "signal_handler",
    "wait",
    "with_timeout",
]
