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
:class:`greenwheel.events.EventLoopBlocked`.

Ground rules:
- Nothing is paid while monitoring is off.  While it is on, every switch of
  the hub's thread runs a small greenlet trace function (as with gevent's
  monitor), registered with :mod:`greenwheel._trace`.
- One report per blocking episode: the next one needs a switch in between.
- The thread runs on the standard library's real thread and sleep
  functions, patched or not, and ends when killed, when its hub is
  destroyed or collected, or in a child after ``fork()`` (it is not there).
"""

import collections
import os
import sys
import traceback
import weakref

import greenlet

from . import _trace
from ._config import config
from ._events import (
    EventLoopBlocked,
    MemoryUsageThresholdExceeded,
    MemoryUsageUnderThreshold,
    PeriodicMonitorThreadStartedEvent,
    notify,
)
from ._threadpool import _original

# The real thread identity: after patch_all() threading.get_ident names the
# current greenlet, and the hub's thread_ident is an OS thread's.
from ._threadpool import _real_get_ident as _get_ident

__all__ = ["PeriodicMonitoringThread"]

_start_new_thread = _original("_thread", "start_new_thread")
_allocate_lock = _original("_thread", "allocate_lock")
_sleep = _original("time", "sleep")
_monotonic = _original("time", "monotonic")


class _SwitchTracer:
    # Registered (greenwheel._trace) in the hub's thread: which greenlet runs
    # there, and how many switches happened.
    __slots__ = ("active", "switches")

    def __init__(self):
        self.active = greenlet.getcurrent()
        self.switches = 0

    def __call__(self, event, args):
        if event == "switch" or event == "throw":
            self.active = args[1]
            self.switches += 1


#: One entry of :meth:`PeriodicMonitoringThread.monitoring_functions`.
MonitoringFunction = collections.namedtuple("MonitoringFunction", ["function", "period"])


class PeriodicMonitoringThread:
    """The monitoring thread of one hub (see the module documentation).

    :attr:`max_blocking_time` is the period and the threshold;
    :attr:`print_blocking_reports` false keeps reports to the event only.
    """

    #: Shortest sleep between checks, whatever the periods asked for.
    min_sleep_time = 0.005

    def __init__(self, hub, max_blocking_time=None):
        if hub.thread_ident != _get_ident():
            raise RuntimeError("start the monitoring thread from the hub's own thread")
        if max_blocking_time is None:
            max_blocking_time = config.max_blocking_time
        elif not max_blocking_time > 0:
            raise ValueError("max_blocking_time must be > 0, not %r" % (max_blocking_time,))
        self.max_blocking_time = max_blocking_time
        self.print_blocking_reports = config.print_blocking_reports
        self._hub = weakref.ref(hub)
        self._pid = os.getpid()
        self._killed = False
        self._lock = _allocate_lock()
        self._functions = {}  # function -> [period, next due]
        self._tracer = tracer = _SwitchTracer()
        self._dispatcher = _trace.add(tracer)
        self._last_switches = -1
        self._reported = -1
        self._process = None
        # Memory above config.max_memory_usage was reported and not yet its fall back.
        self._memory_exceeded = False
        self._memory_peak = 0
        self.thread_ident = None
        started = _allocate_lock()
        started.acquire()
        _start_new_thread(self._run, (started,))
        started.acquire()  # thread_ident is set
        notify(PeriodicMonitorThreadStartedEvent(self))

    @property
    def hub(self):
        """The monitored hub (None once it is gone)."""
        return self._hub()

    def is_alive(self):
        """True while the thread runs (not killed, hub alive, same process)."""
        return not self._killed and self._hub() is not None and self._pid == os.getpid()

    @property
    def should_run(self):
        """gevent's name for :meth:`is_alive`."""
        return self.is_alive()

    #: gevent's name for :attr:`thread_ident`.
    @property
    def monitor_thread_ident(self):
        return self.thread_ident

    def add_monitoring_function(self, function, period):
        """Call ``function(hub)`` every *period* seconds from the monitoring
        thread; *period* None removes it."""
        if not callable(function):
            raise TypeError("function must be callable, not %r" % (function,))
        with self._lock:
            if period is None:
                self._functions.pop(function, None)
                return
            if not period > 0:
                raise ValueError("period must be > 0, not %r" % (period,))
            entry = self._functions.get(function)
            # A new function is due at the thread's next wake-up (as in gevent),
            # then every *period*; changing the period keeps its schedule.
            self._functions[function] = [period, entry[1] if entry is not None else 0.0]

    @property
    def _monitoring_functions(self):
        # gevent's attribute (its list of entries), read by its own tests and tools.
        return self.monitoring_functions()

    def monitoring_functions(self):
        """What the thread runs, as ``(function, period)`` pairs with those attribute
        names: first its own checks (blocking; memory, when psutil is installed),
        then those added with :meth:`add_monitoring_function`."""
        builtin = [MonitoringFunction(self.monitor_blocking, self.max_blocking_time)]
        if self._get_process() is not None:
            builtin.append(
                MonitoringFunction(self.monitor_memory_usage, config.memory_monitor_period)
            )
        with self._lock:
            added = [MonitoringFunction(f, entry[0]) for f, entry in self._functions.items()]
        return builtin + added

    def kill(self):
        """Stop monitoring (the thread ends within one period)."""
        self._killed = True
        _trace.remove(self._dispatcher, self._tracer)

    # -- the thread ---------------------------------------------------------------------------

    def _run(self, started):
        self.thread_ident = _get_ident()
        started.release()
        while self.is_alive():
            _sleep(self._sleep_time())
            hub = self._hub()
            if hub is None or not self.is_alive():
                break
            try:
                self.monitor_blocking(hub)
                self._run_functions(hub)
                self._check_memory(hub)
            except Exception:  # the monitor must survive a bad report or function
                self._print_exc(hub)
            del hub

    def _sleep_time(self):
        sleep = self.max_blocking_time
        if config.max_memory_usage and self._get_process() is not None:
            sleep = min(sleep, config.memory_monitor_period)
        with self._lock:
            for period, _ in self._functions.values():
                sleep = min(sleep, period)
        return max(sleep, self.min_sleep_time)

    def monitor_blocking(self, hub):
        """The blocking check the thread runs every ``max_blocking_time``."""
        self._check_blocking(hub)

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

    _next_memory_check = 0.0

    def _check_memory(self, hub):
        now = _monotonic()
        if now < self._next_memory_check:
            return
        self._next_memory_check = now + config.memory_monitor_period
        self.monitor_memory_usage(hub)

    def monitor_memory_usage(self, _hub):
        """Compare the process's memory with ``config.max_memory_usage``.

        Going over sends :class:`~greenwheel.events.MemoryUsageThresholdExceeded`
        once; coming back under sends
        :class:`~greenwheel.events.MemoryUsageUnderThreshold` (with the peak
        seen meanwhile). Returns the usage in bytes, or None when there is no
        threshold or no psutil.
        """
        max_allowed = config.max_memory_usage
        process = self._get_process() if max_allowed else None
        if process is None:
            return None
        info = process.memory_full_info()
        usage = info.rss
        if usage > max_allowed:
            self._memory_peak = max(self._memory_peak, usage)
            if not self._memory_exceeded:
                self._memory_exceeded = True
                notify(MemoryUsageThresholdExceeded(usage, max_allowed, info))
        elif self._memory_exceeded:
            self._memory_exceeded = False
            notify(MemoryUsageUnderThreshold(usage, max_allowed, info, self._memory_peak))
            self._memory_peak = 0
        return usage

    def _check_blocking(self, hub):
        tracer = self._tracer
        switches = tracer.switches
        active = tracer.active
        if (
            switches == self._last_switches
            and switches != self._reported
            and active is not None
            and active is not hub
        ):
            # No switch for a whole period and not idle in the hub: *active*
            # has held the thread for at least max_blocking_time.
            self._reported = switches
            self._report(hub, active)
        self._last_switches = switches

    def _report(self, hub, active):
        from ._util import GreenletTree, _root_of

        lines = [
            "=== greenwheel: %r appears to be blocked: it has run for more than %s s without"
            " switching, blocking %r (reported by the PeriodicMonitoringThread 0x%x) ==="
            % (active, self.max_blocking_time, hub, self.thread_ident or 0),
            "Its stack (thread 0x%x):" % (hub.thread_ident,),
        ]
        frame = sys._current_frames().get(hub.thread_ident)
        if frame is not None:
            for entry in traceback.format_stack(frame):
                lines.extend("  " + line for line in entry.rstrip("\n").split("\n"))
        del frame
        root = _root_of(hub)
        for tree in GreenletTree.forest():
            if tree.greenlet is root:
                lines.append("The greenlets of that thread:")
                lines.extend(tree.format_lines({"running_stacks": True}))
        del root
        if self.print_blocking_reports:
            stream = hub.exception_stream
            if stream:
                stream.write("\n".join(lines) + "\n")
        notify(EventLoopBlocked(active, self.max_blocking_time, lines, hub=hub))

    def _run_functions(self, hub):
        now = _monotonic()
        due = []
        with self._lock:
            for function, entry in self._functions.items():
                if entry[1] <= now:
                    entry[1] = now + entry[0]
                    due.append(function)
        for function in due:
            try:
                function(hub)
            except Exception:
                self._print_exc(hub)

    @staticmethod
    def _print_exc(hub):
        stream = hub.exception_stream or sys.stderr
        try:
            traceback.print_exc(file=stream)
        except Exception:  # a broken stream: nothing more to do
            pass

    def __repr__(self):
        return "<%s at %#x hub=%r max_blocking_time=%r%s>" % (
            type(self).__name__,
            id(self),
            self._hub(),
            self.max_blocking_time,
            "" if self.is_alive() else " dead",
        )
