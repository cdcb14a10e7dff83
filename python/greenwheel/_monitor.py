"""The monitoring thread of a hub: reports greenlets that block the loop.

A greenlet that computes, or calls something blocking that was not made
cooperative, keeps every other greenlet of its thread waiting.  Started by
``hub.start_periodic_monitoring_thread()`` (or for every hub with
``greenwheel.config.monitor_thread``, ``GEVENT_MONITOR_THREAD_ENABLE`` in the
environment), a real OS thread wakes every ``max_blocking_time`` seconds
(``config.max_blocking_time``, default 0.1) and checks whether the hub's
thread switched greenlets since its last look.  If it did not, and the
greenlet running is not the hub (the hub waiting in the kernel is idle, not
blocked), that greenlet has run for at least a whole period: the thread
prints a report with the stacks to ``hub.exception_stream`` and notifies
:class:`greenwheel.events.EventLoopBlocked` -- at every check until the
greenlet switches, as gevent does.

The thread also runs the functions given to
:meth:`PeriodicMonitoringThread.add_monitoring_function` (the memory check,
when psutil is installed, is one), each at its own period.

Ground rules:
- Nothing is paid while monitoring is off.  While it is on, every switch of
  the hub's thread runs a small greenlet trace function
  (:class:`greenwheel._tracer.GreenletTracer`, chained with any other).
- The thread runs on the standard library's real thread and sleep
  functions, patched or not.  They are this module's globals
  ``start_new_thread`` and ``thread_sleep``, looked up when used (as in
  gevent, whose tests replace them).
- It ends when killed, when its hub is destroyed, collected or false, or
  when a monitoring function raises ``SystemExit``.  Another exception from a
  monitoring function goes to ``hub.handle_error`` (which prints it); the
  thread goes on unless that raises.  After ``fork()`` the hub's
  ``reinit()`` starts the child's thread for the same monitor.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
import weakref
from time import perf_counter

from zope.interface import implementer

from ._config import config
from ._events import (
    EventLoopBlocked,
    IPeriodicMonitorThread,
    MemoryUsageThresholdExceeded,
    MemoryUsageUnderThreshold,
    PeriodicMonitorThreadStartedEvent,
    notify,
)
from ._threadpool import _original

# The real thread identity: after patch_all() threading.get_ident names the
# current greenlet, and the hub's thread_ident is an OS thread's.
from ._threadpool import _real_get_ident as get_thread_ident
from ._tracer import GreenletTracer
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from ._hub import Hub

__all__ = ["PeriodicMonitoringThread"]

start_new_thread = _original("_thread", "start_new_thread")
thread_sleep = _original("time", "sleep")


class MonitorWarning(RuntimeWarning):
    """What the monitor warns with (memory monitoring asked for without psutil)."""


class _MonitorEntry:
    # One function the thread runs: mutable, as the thread keeps its last run here.
    __slots__ = ("function", "period", "last_run_time")

    # A new function is due at the thread's next wake-up, whatever its period.
    def __init__(self, function, period, last_run_time=float("-inf")):
        self.function = function
        self.period = period
        self.last_run_time = last_run_time

    def __eq__(self, other):
        if not isinstance(other, _MonitorEntry):
            return NotImplemented
        return self.function == other.function and self.period == other.period

    def __hash__(self):
        return hash((self.function, self.period))

    def __repr__(self):
        return "<monitoring %r every %r s>" % (self.function, self.period)


@implementer(IPeriodicMonitorThread)
class PeriodicMonitoringThread:
    """The monitoring thread of one hub (see the module documentation).

    *max_blocking_time* fixes this monitor's period and threshold; None
    follows ``config.max_blocking_time`` (read at every wake-up).
    :attr:`print_blocking_reports` false keeps reports to the event only.
    """

    #: Seconds slept when every function is disabled (a period <= 0).
    inactive_sleep_time = 2.0
    #: Shortest sleep between wake-ups, whatever the periods ask for.
    min_sleep_time = 0.005
    #: Shortest period of the memory check (psutil's reading is not cheap).
    min_memory_monitor_period = 2

    def __init__(self, hub: Hub, max_blocking_time: float | None = None) -> None:
        if hub.thread_ident != get_thread_ident():
            # The trace function belongs to the thread that installs it.
            raise RuntimeError("start the monitoring thread from the hub's own thread")
        if max_blocking_time is not None and not max_blocking_time > 0:
            raise ValueError("max_blocking_time must be > 0, not %r" % (max_blocking_time,))
        self._max_blocking_time = max_blocking_time
        self.print_blocking_reports = config.print_blocking_reports
        self._hub_wref = weakref.ref(hub, self._on_hub_gc)
        self.should_run = True
        self.pid = os.getpid()
        self._process = None
        # The usage last seen over config.max_memory_usage (0: under it), and the peak.
        self._memory_exceeded = 0
        self._memory_peak = 0
        period = self.max_blocking_time
        self._monitoring_functions = [_MonitorEntry(self.monitor_blocking, period)]
        self._calculated_sleep_time = period
        self._greenlet_tracer = GreenletTracer()
        try:
            self.monitor_thread_ident = start_new_thread(self, ())
        except BaseException:
            self._greenlet_tracer.kill()
            raise
        notify(PeriodicMonitorThreadStartedEvent(self))

    @property
    def hub(self):
        """The monitored hub (None once it is gone)."""
        return self._hub_wref()

    @property
    def max_blocking_time(self):
        """Seconds without a switch that count as blocking (also the check's period)."""
        fixed = self._max_blocking_time
        return config.max_blocking_time if fixed is None else fixed

    @property
    def thread_ident(self):
        """The monitoring thread's ident (gevent's :attr:`monitor_thread_ident`)."""
        return self.monitor_thread_ident

    def is_alive(self) -> bool:
        """True while the thread runs (not killed, hub alive, same process)."""
        return self.should_run and self._hub_wref() is not None and self.pid == os.getpid()

    # -- what the thread runs ----------------------------------------------------------------

    def monitoring_functions(self):
        """The functions the thread runs, each with ``function`` and ``period``
        attributes: first the blocking check, then those added with
        :meth:`add_monitoring_function` (the memory check among them)."""
        entries = self._monitoring_functions
        period = self.max_blocking_time
        if entries[0].period != period:
            entries[0].period = period
            self._calculated_sleep_time = min(entry.period for entry in entries)
        return entries

    def add_monitoring_function(self, function, period):
        """Call ``function(hub)`` every *period* seconds from the monitoring thread
        (first at its next wake-up); a new *period* for a function already there
        replaces its period; *period* None removes it."""
        if not callable(function):
            raise ValueError("function must be callable, not %r" % (function,))
        # The list is replaced, never changed in place: the thread may be
        # going through the old one.
        if period is None:
            entries = [e for e in self._monitoring_functions if e.function != function]
        elif not period > 0:
            raise ValueError("period must be > 0, not %r" % (period,))
        else:
            entries = []
            found = False
            for entry in self._monitoring_functions:
                if entry.function == function:
                    entry = _MonitorEntry(function, period, entry.last_run_time)
                    found = True
                entries.append(entry)
            if not found:
                entries.append(_MonitorEntry(function, period))
        self._monitoring_functions = entries
        self._calculated_sleep_time = min(entry.period for entry in entries)

    def calculate_sleep_time(self):
        """Seconds until the next wake-up: the shortest period (at least
        :attr:`min_sleep_time`), or :attr:`inactive_sleep_time` if all are off."""
        shortest = self._calculated_sleep_time
        if shortest <= 0:
            return self.inactive_sleep_time
        return max(shortest, self.min_sleep_time)

    def kill(self) -> None:
        """Stop monitoring: the thread ends at its next wake-up, and the trace
        function comes out of the hub thread's chain."""
        if not self.should_run:
            return
        self.should_run = False
        self._greenlet_tracer.kill()

    def _on_hub_gc(self, _ref):
        self.kill()

    def _on_fork(self) -> None:
        # Called by the hub's reinit() in a child after fork(): the thread did
        # not survive it; start the child's own (if the hub's thread is this one).
        pid = os.getpid()
        if pid == self.pid or not self.should_run:
            return
        self.pid = pid
        hub = self.hub
        if hub is None or hub.thread_ident != get_thread_ident():
            self.kill()
            return
        self.monitor_thread_ident = start_new_thread(self, ())

    def __call__(self):
        # The thread's body.
        try:
            while self.should_run:
                functions = self.monitoring_functions()
                thread_sleep(self.calculate_sleep_time())
                hub = self.hub
                # A hub is a greenlet: false before it first runs, and once dead.
                if hub is None or (not hub and hub.dead) or self.pid != os.getpid():
                    # Gone, finished, or this is a forked child's copy of the
                    # object: stop.
                    if self.pid == os.getpid():
                        self.kill()
                    break
                now = perf_counter()
                for entry in functions:
                    period = entry.period
                    if period > 0 and entry.last_run_time + period <= now:
                        entry.last_run_time = now
                        try:
                            entry.function(hub)
                        except SystemExit:
                            raise
                        except Exception:
                            hub.handle_error(self, *sys.exc_info())
                del hub  # do not keep the hub alive while sleeping
        except SystemExit:
            pass

    # -- blocking -----------------------------------------------------------------------------

    def monitor_blocking(self, hub):
        """The blocking check: if a greenlet held *hub*'s thread since the last
        check, report it; returns ``(greenlet, report lines)`` then, else None."""
        did_block = self._greenlet_tracer.did_block_hub(hub)
        if not did_block:
            return None
        active = did_block[1]
        report = self._report_lines(hub, active)
        # The event first: subscribers may edit the report before it is printed.
        notify(EventLoopBlocked(active, self.max_blocking_time, report, hub=hub))
        return self._show_blocking_report(hub, report, active)

    def _show_blocking_report(self, hub, report, active):
        if self.print_blocking_reports:
            stream = hub.exception_stream
            if stream:
                stream.write("\n".join(report) + "\n")
        return (active, report)

    def ignore_current_greenlet_blocking(self):
        """Do not report the greenlet running now (until it switches)."""
        self._greenlet_tracer.ignore_current_greenlet_blocking()

    def monitor_current_greenlet_blocking(self):
        """Watch the greenlet running now again."""
        self._greenlet_tracer.monitor_current_greenlet_blocking()

    def _report_lines(self, hub, active):
        from ._util import GreenletTree

        thread_ident = hub.thread_ident
        # The tree first: drawing it names the greenlets (Greenlet-N), and the
        # header below should show the same names.
        tree_lines = []
        root = hub
        while getattr(root, "parent", None) is not None:
            root = root.parent
        for tree in GreenletTree.forest():
            if tree.greenlet is root:
                tree_lines.append("The greenlets of that thread:")
                tree_lines.extend(tree.format_lines({"running_stacks": True}))
        del root
        lines = [
            "=== greenwheel: %r appears to be blocked: it has run for more than %s s without"
            " switching, blocking %r (reported by the PeriodicMonitoringThread 0x%x) ==="
            % (active, self.max_blocking_time, hub, self.monitor_thread_ident or 0),
            "Its stack (thread 0x%x):" % (thread_ident,),
        ]
        frame = sys._current_frames().get(thread_ident)
        if frame is None:
            lines.append("  (no thread 0x%x in this process)" % (thread_ident,))
        else:
            for entry in traceback.format_stack(frame):
                lines.extend("  " + line for line in entry.rstrip("\n").split("\n"))
        del frame
        return lines + tree_lines

    # -- memory -------------------------------------------------------------------------------

    def _get_process(self):
        """This process as a ``psutil.Process`` (made once), or None without psutil."""
        if self._process is None:
            try:
                import psutil
            except ImportError:
                return None
            self._process = psutil.Process()
        return self._process

    def can_monitor_memory_usage(self) -> bool:
        """True if the memory can be read (psutil is installed)."""
        return self._get_process() is not None

    def install_monitor_memory_usage(self) -> None:
        """Add the memory check (:meth:`monitor_memory_usage`) to the thread's
        functions, every ``config.memory_monitor_period`` seconds; without
        psutil, warn (:class:`MonitorWarning`) instead."""
        if not self.can_monitor_memory_usage():
            warnings.warn(
                "greenwheel cannot monitor memory usage: install psutil", MonitorWarning, 2
            )
            return
        period = max(config.memory_monitor_period, self.min_memory_monitor_period)
        self.add_monitoring_function(self.monitor_memory_usage, period)

    def monitor_memory_usage(self, _hub):
        """Compare the process's memory with ``config.max_memory_usage``.

        Over it, each reading higher than the last one sends
        :class:`~greenwheel.events.MemoryUsageThresholdExceeded`; coming back
        under it sends :class:`~greenwheel.events.MemoryUsageUnderThreshold`
        (with the peak seen meanwhile), as in gevent.  Returns the event sent,
        None if none, -1 if there is no threshold.
        """
        max_allowed = config.max_memory_usage
        if not max_allowed:
            return -1
        info = self._get_process().memory_full_info()
        # USS (the memory only this process holds) where psutil has it.
        usage = getattr(info, "uss", 0) or info.rss
        event = None
        if usage > max_allowed:
            if usage > self._memory_exceeded:
                event = MemoryUsageThresholdExceeded(usage, max_allowed, info)
            self._memory_exceeded = usage
            self._memory_peak = max(self._memory_peak, usage)
        elif self._memory_exceeded:
            event = MemoryUsageUnderThreshold(usage, max_allowed, info, self._memory_peak)
            self._memory_exceeded = self._memory_peak = 0
        if event is not None:
            notify(event)
        return event

    def __repr__(self):
        return "<%s at %#x hub=%r max_blocking_time=%r%s>" % (
            type(self).__name__,
            id(self),
            self._hub_wref(),
            self.max_blocking_time,
            "" if self.is_alive() else " dead",
        )
