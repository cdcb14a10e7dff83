"""Greenlet trace functions that watch for code that does not yield (gevent's ``_tracer``).

greenlet calls one trace function per OS thread at every switch.  A
:class:`GreenletTracer` installs itself as that function, counts the
switches and remembers the greenlet switched to; the blocking monitor
(:mod:`greenwheel._monitor`) and :func:`greenwheel.util.assert_switches` ask
it whether the thread is stuck in one greenlet.  :class:`HubSwitchTracer`
and :class:`MaxSwitchTracer` time the stretches without a switch (into the
hub, or to any greenlet).

Ground rules:
- A tracer chains: it calls the trace function that was installed before it
  (``previous_trace_function``), so a user's function, or another tracer,
  goes on seeing every switch.
- :meth:`GreenletTracer.kill` puts the previous function back only when this
  tracer is still the thread's trace function and is killed on its own
  thread (``greenlet.settrace`` acts on the calling thread).  Otherwise --
  someone installed a function after it, or another thread kills it -- it
  stays in the chain as a pass-through, so whoever came later keeps working;
  once it becomes the top of the chain again, the next :meth:`kill` above it
  skips it.  Removing tracers in any order never drops a live one.
"""

from time import perf_counter

import greenlet

from ._threadpool import _real_get_ident as _get_ident

__all__ = ["GreenletTracer", "HubSwitchTracer", "MaxSwitchTracer"]


class GreenletTracer:
    """Count the switches of the calling thread and remember the greenlet running.

    Installs itself with ``greenlet.settrace`` when created.
    :attr:`greenlet_switch_counter` counts the trace events since the last
    :meth:`did_block_hub`; :attr:`active_greenlet` is the target of the last
    switch (None after an event that names none, or when told to ignore it).
    """

    def __init__(self):
        self.greenlet_switch_counter = 0
        self.active_greenlet = None
        self._killed = False
        self._thread = _get_ident()
        #: The trace function installed before this one (called after this one).
        self.previous_trace_function = greenlet.settrace(self)

    def _trace(self, event, args):
        # The bookkeeping of one event; subclasses add theirs.
        self.greenlet_switch_counter += 1
        if event in ("switch", "throw"):
            self.active_greenlet = args[1]  # args is (origin, target)
        else:
            self.active_greenlet = None

    def __call__(self, event, args):
        if not self._killed:
            self._trace(event, args)
        previous = self.previous_trace_function
        if previous is not None:
            previous(event, args)

    def kill(self):
        """Stop tracing (see the module documentation for the chain)."""
        if self._killed:
            return
        self._killed = True
        if self._thread == _get_ident() and greenlet.gettrace() is self:
            previous = self.previous_trace_function
            # Tracers killed while something sat above them are pass-throughs
            # now: drop them from the chain too.
            while isinstance(previous, GreenletTracer) and previous._killed:
                previous = previous.previous_trace_function
            greenlet.settrace(previous)
            self.previous_trace_function = None

    def did_block_hub(self, hub):
        """Since the last call: no switch, and a greenlet other than *hub* runs?

        Returns ``(True, that greenlet)`` if so, False otherwise; resets the
        switch count.  May be called from another thread (the monitor's).
        """
        active = self.active_greenlet
        switched = self.greenlet_switch_counter != 0
        self.greenlet_switch_counter = 0
        if switched or active is None or active is hub:
            # It switched, or nothing known runs, or the hub runs (waiting in
            # the kernel is idle, not blocked).
            return False
        return True, active

    def ignore_current_greenlet_blocking(self):
        """Do not report the greenlet running now (until the next switch)."""
        self.active_greenlet = None

    def monitor_current_greenlet_blocking(self):
        """Watch the greenlet running now, as if it had just been switched to."""
        self.active_greenlet = greenlet.getcurrent()


class _HubTracer(GreenletTracer):
    # A tracer that times stretches against *max_blocking_time* for one hub.

    def __init__(self, hub, max_blocking_time):
        self.hub = hub
        self.max_blocking_time = max_blocking_time
        GreenletTracer.__init__(self)

    def kill(self):
        self.hub = None
        GreenletTracer.kill(self)


class HubSwitchTracer(_HubTracer):
    """Blocked means: more than *max_blocking_time* seconds since the last
    switch into the hub."""

    def __init__(self, hub, max_blocking_time):
        self.last_entered_hub = perf_counter()
        _HubTracer.__init__(self, hub, max_blocking_time)

    def _trace(self, event, args):
        GreenletTracer._trace(self, event, args)
        if self.active_greenlet is self.hub:
            self.last_entered_hub = perf_counter()

    def did_block_hub(self, hub):
        if perf_counter() - self.last_entered_hub > self.max_blocking_time:
            return True, self.active_greenlet
        return False


class MaxSwitchTracer(_HubTracer):
    """Blocked means: some stretch between two switches, not counting time in
    the hub, lasted more than *max_blocking_time* seconds."""

    def __init__(self, hub, max_blocking_time):
        self.last_switch = perf_counter()
        #: The longest stretch seen so far, in seconds.
        self.max_blocking = 0.0
        _HubTracer.__init__(self, hub, max_blocking_time)

    def _trace(self, event, args):
        leaving = self.active_greenlet
        GreenletTracer._trace(self, event, args)
        now = perf_counter()
        if leaving is not None and leaving is not self.hub:
            self.max_blocking = max(self.max_blocking, now - self.last_switch)
        self.last_switch = now

    def did_block_hub(self, hub):
        if self.max_blocking == 0:
            # No switch yet: the stretch is still going on.
            self.max_blocking = perf_counter() - self.last_switch
        if self.max_blocking > self.max_blocking_time:
            return True, self.active_greenlet
        return False
