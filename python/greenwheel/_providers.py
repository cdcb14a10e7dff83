"""Where the hub gets what it makes on first use: its thread pool and its monitor.

:mod:`greenwheel._hub` is the lowest layer of the Python implementation; the
thread pool (:mod:`greenwheel._threadpool`) and the monitoring thread
(:mod:`greenwheel._monitor`) are built on it.  So the hub imports neither:
this module, imported by the package's ``__init__`` before anything can ask a
hub for them, registers with the hub a function for each that imports its
module when first called.

Ground rules:
- Importing this module imports nothing above the hub.  ``import greenwheel``
  therefore loads neither the pool nor the monitor (nor what they import:
  ``concurrent.futures``, ``logging``, zope), which keeps the modules loaded
  before ``greenwheel.monkey`` patches few.
- The hub calls these when it first needs a pool or a monitor (hub creation
  or later), never on a switch; after the first, a call finds its module
  already in ``sys.modules``.
- A user's ``Hub.threadpool_class`` / ``hub.threadpool_class`` still wins:
  these give only the defaults.  The resolver is not here: its class comes
  from ``greenwheel.config.resolver``, which imports the class it names.
"""

from __future__ import annotations

from ._hub import register_providers
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from ._monitor import PeriodicMonitoringThread
    from ._threadpool import ThreadPool


def _threadpool_class() -> type[ThreadPool]:
    from ._threadpool import ThreadPool

    return ThreadPool


def _shared_threadpool() -> ThreadPool:
    from ._threadpool import get_threadpool

    return get_threadpool()


def _monitor_class() -> type[PeriodicMonitoringThread]:
    from ._monitor import PeriodicMonitoringThread

    return PeriodicMonitoringThread


register_providers(
    threadpool_class=_threadpool_class,
    shared_threadpool=_shared_threadpool,
    monitor_class=_monitor_class,
)
