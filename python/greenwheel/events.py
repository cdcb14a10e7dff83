"""Notifications about the running process (gevent.events).

Append a callable to :data:`subscribers` (``zope.event``'s list, shared with
any gevent plugin); :func:`notify` calls each with the event. greenwheel
publishes:

- :class:`PeriodicMonitorThreadStartedEvent` when a hub's monitoring thread
  starts (``hub.start_periodic_monitoring_thread()``);
- :class:`EventLoopBlocked` when that thread finds a greenlet that kept the
  loop from running for longer than ``max_blocking_time``;
- the monkey-patching events (:class:`GeventWillPatchAllEvent` and the rest)
  from :mod:`greenwheel.monkey`.

Every event class declares its ``zope.interface`` interface under gevent's
name (``IEventLoopBlocked``, ...).
"""

from ._events import *  # noqa: F403
from ._events import __all__  # noqa: F401
