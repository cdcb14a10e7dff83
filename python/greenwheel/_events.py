"""The subscriber list and the event classes behind greenwheel.events."""

#: Callables notified of every event, in order.  Add and remove freely.
subscribers = []


def notify(event):
    """Call every subscriber with *event* (a subscriber that raises stops the rest, as in gevent)."""
    for subscriber in list(subscribers):
        subscriber(event)


class PeriodicMonitorThreadStartedEvent:
    """A hub's monitoring thread started: *monitor* is the ``PeriodicMonitoringThread``.

    A subscriber may register more checks with ``monitor.add_monitoring_function``.
    """

    def __init__(self, monitor):
        self.monitor = monitor

    def __repr__(self):
        return "<%s monitor=%r>" % (type(self).__name__, self.monitor)


class EventLoopBlocked:
    """*greenlet* kept its hub's loop from running for at least *blocking_time*
    seconds; *info* is the report (a list of text lines, with the stacks)."""

    def __init__(self, greenlet, blocking_time, info):
        self.greenlet = greenlet
        self.blocking_time = blocking_time
        self.info = info

    def __repr__(self):
        return "<%s greenlet=%r blocking_time=%r>" % (
            type(self).__name__,
            self.greenlet,
            self.blocking_time,
        )
