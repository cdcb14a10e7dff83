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

# The submodules ``import gevent`` binds (hub, greenlet, timeout, ...) plus the
# synchronisation modules, so that ``gevent.event.Event`` and friends work
# after ``import greenwheel as gevent`` (their names stay in the submodules).
from . import event, exceptions, greenlet, hub, local, lock, os, queue, timeout  # noqa: F401
from ._config import config
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
from ._hub import Hub, get_hub, idle, iwait, kill, reinit, sleep, spawn_raw, wait
from ._sighandler import signal_handler
from ._timeout import Timeout, with_timeout
from .os import fork

try:
    from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
    from importlib.metadata import version as _version

    __version__ = _version("greenwheel")
except _PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

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
