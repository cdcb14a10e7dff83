"""Notifications about the running process (gevent.events, the monitoring part).

Append a callable to :data:`subscribers`; :func:`notify` calls each with the
event.  greenwheel publishes:

- :class:`PeriodicMonitorThreadStartedEvent` when a hub's monitoring thread
  starts (``hub.start_periodic_monitoring_thread()``);
- :class:`EventLoopBlocked` when that thread finds a greenlet that kept the
  loop from running for longer than ``max_blocking_time``.

gevent's ``zope.interface`` declarations and its monkey-patching events are
not provided; the event classes carry the same attributes.
"""

from ._events import EventLoopBlocked, PeriodicMonitorThreadStartedEvent, notify, subscribers

__all__ = ["EventLoopBlocked", "PeriodicMonitorThreadStartedEvent", "notify", "subscribers"]
