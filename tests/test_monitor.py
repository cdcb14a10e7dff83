"""The hub's monitoring thread and greenwheel.events: greenlets that block the loop are reported."""

import io
import os
import subprocess
import sys
import threading
import time

import greenlet
import pytest

import greenwheel as gw
from _childproc import run_python
from greenwheel import config, events


@pytest.fixture
def monitored():
    """Start a monitor (max_blocking_time given by the test); collect events and reports."""
    hub = gw.get_hub()
    seen = []
    stream = io.StringIO()
    saved_stream = hub._exception_stream
    previous_trace = greenlet.gettrace()
    events.subscribers.append(seen.append)
    hub.exception_stream = stream
    monitors = []

    def start(max_blocking_time):
        monitor = hub.start_periodic_monitoring_thread(max_blocking_time)
        monitors.append(monitor)
        return monitor

    start.seen = seen
    start.stream = stream
    try:
        yield start
    finally:
        for monitor in monitors:
            monitor.kill()
        hub.periodic_monitoring_thread = None
        events.subscribers.remove(seen.append)
        hub._exception_stream = saved_stream
        assert greenlet.gettrace() is previous_trace


def blocked(seen):
    return [e for e in seen if isinstance(e, events.EventLoopBlocked)]


def blocking_greenlet_body():
    time.sleep(1.0)  # the real sleep: the whole thread stops


def test_start_is_announced_and_idempotent(monitored):
    monitor = monitored(0.05)
    assert monitor.is_alive()
    assert gw.get_hub().periodic_monitoring_thread is monitor
    assert gw.get_hub().start_periodic_monitoring_thread() is monitor
    started = [e for e in monitored.seen if isinstance(e, events.PeriodicMonitorThreadStartedEvent)]
    assert [e.monitor for e in started] == [monitor]
    assert monitor.thread_ident not in (None, threading.get_ident())


def test_a_greenlet_that_blocks_the_loop_is_reported_at_each_check(monitored):
    # As in gevent: every check that finds no switch since the last one reports
    # (here ~19 checks in the 1 s block; a busy machine may delay some).
    monitor = monitored(0.05)
    job = gw.spawn(blocking_greenlet_body)
    job.join()
    # A check already running when join() returned may still land its report
    # (the event first, then the printed lines), so wait cooperatively for a
    # check that began after the switch: a monitoring function added now only
    # runs in a pass that starts later.
    later_pass = []
    monitor.add_monitoring_function(later_pass.append, 0.05)
    while not later_pass:
        gw.sleep(0.01)
    reports = blocked(monitored.seen)
    assert len(reports) >= 2, reports
    assert {event.greenlet for event in reports} == {job}
    event = reports[0]
    assert event.blocking_time == 0.05 == monitor.max_blocking_time
    text = "\n".join(event.info)
    assert repr(job) in event.info[0]
    assert "in blocking_greenlet_body" in text  # the blocked stack
    # and the same reports printed
    assert monitored.stream.getvalue() == "".join("\n".join(e.info) + "\n" for e in reports)
    # Once the greenlet switched, the reports stop.
    gw.sleep(0.3)
    assert len(blocked(monitored.seen)) == len(reports)


def test_quiet_reports_go_to_the_event_only(monitored):
    monitor = monitored(0.05)
    monitor.print_blocking_reports = False
    gw.spawn(blocking_greenlet_body).join()
    assert len(blocked(monitored.seen)) >= 1
    assert monitored.stream.getvalue() == ""


def test_an_idle_hub_or_a_greenlet_that_yields_is_not_blocking(monitored):
    monitored(0.5)

    def busy_but_polite():
        for _ in range(300):
            end = time.perf_counter() + 0.002
            while time.perf_counter() < end:
                pass
            gw.sleep(0)

    gw.spawn(busy_but_polite).join()
    gw.sleep(1.2)  # the hub waits in the kernel: idle, not blocked
    assert blocked(monitored.seen) == []


def test_monitoring_functions_are_called_with_the_hub(monitored):
    monitor = monitored(0.05)
    calls = []

    def check(hub):
        calls.append(hub)

    with pytest.raises(ValueError):  # gevent's exception
        monitor.add_monitoring_function(42, 1)
    with pytest.raises(ValueError):
        monitor.add_monitoring_function(check, 0)
    monitor.add_monitoring_function(check, 0.01)
    # The thread's own checks come first, as in gevent.
    builtin = [(monitor.monitor_blocking, 0.05), (monitor.monitor_memory_usage, 5.0)]

    def listed():
        return [(entry.function, entry.period) for entry in monitor.monitoring_functions()]

    assert listed() == builtin + [(check, 0.01)]
    assert monitor.monitoring_functions()[-1].function is check
    assert monitor.monitoring_functions()[-1].period == 0.01
    deadline = time.monotonic() + 20
    while len(calls) < 3 and time.monotonic() < deadline:
        gw.sleep(0.01)
    assert calls[:3] == [gw.get_hub()] * 3
    monitor.add_monitoring_function(check, None)
    assert listed() == builtin


def test_a_failing_monitoring_function_is_printed_and_the_monitor_goes_on(monitored):
    monitor = monitored(0.05)
    calls = []

    def broken(hub):
        calls.append(1)
        raise RuntimeError("monitoring function failed")

    monitor.add_monitoring_function(broken, 0.01)
    deadline = time.monotonic() + 20
    while len(calls) < 2 and time.monotonic() < deadline:
        gw.sleep(0.01)
    assert len(calls) >= 2 and monitor.is_alive()
    assert "RuntimeError: monitoring function failed" in monitored.stream.getvalue()


def test_trace_functions_removed_out_of_order_keep_the_others(monitored):
    from greenwheel import util

    # The monitor starts inside an assert_switches block, which ends first:
    # the monitor's trace function must survive it.
    with util.assert_switches():
        monitored(0.05)
        gw.sleep(0)
    job = gw.spawn(blocking_greenlet_body)
    job.join()
    reports = blocked(monitored.seen)
    assert reports and {event.greenlet for event in reports} == {job}


def test_kill_stops_reporting_and_restores_the_trace_function(monitored):
    monitor = monitored(0.05)
    monitor.kill()
    assert not monitor.is_alive()
    gw.spawn(blocking_greenlet_body).join()
    assert blocked(monitored.seen) == []
    assert "dead" in repr(monitor)
    # A new one can be started after that.
    again = monitored(0.05)
    assert again is not monitor and again.is_alive()


def test_destroying_the_hub_stops_its_monitor():
    out = {}

    def in_thread():
        hub = gw.get_hub()
        monitor = hub.start_periodic_monitoring_thread(0.05)
        gw.sleep(0)
        hub.destroy(destroy_loop=True)
        out["alive"] = monitor.is_alive()
        out["trace"] = greenlet.gettrace()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(30)
    assert out == {"alive": False, "trace": None}


def test_bad_arguments():
    hub = gw.get_hub()
    with pytest.raises(ValueError):
        hub.start_periodic_monitoring_thread(0)
    errors = []

    def from_another_thread():
        try:
            hub.start_periodic_monitoring_thread(0.05)
        except RuntimeError as ex:
            errors.append(ex)

    thread = threading.Thread(target=from_another_thread)
    thread.start()
    thread.join(30)
    assert len(errors) == 1 and "hub's own thread" in str(errors[0])
    assert hub.periodic_monitoring_thread is None


def test_a_forked_child_gets_its_own_monitor_thread(monitored):
    # As in gevent, the child's hub keeps the same monitor object, which
    # starts a thread of its own there (the parent's is not in the child).
    monitor = monitored(0.05)
    r, w = os.pipe()
    pid = gw.fork()
    if pid == 0:
        try:
            os.close(r)
            child_monitor = gw.get_hub().periodic_monitoring_thread
            # (The new thread may get the old one's ident: that names a
            # pthread, whose memory the child may reuse.)  Reports below
            # show that it runs.
            restarted = child_monitor is monitor and child_monitor.is_alive()
            gw.spawn(blocking_greenlet_body).join()
            reports = len(blocked(monitored.seen)) >= 1
            os.write(
                w, ("%s %s %s" % (restarted, child_monitor.max_blocking_time, reports)).encode()
            )
            os._exit(0)
        finally:
            os._exit(1)
    os.close(w)
    from greenwheel import os as gos

    rpid, status = gos.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert os.read(r, 100).decode() == "True 0.05 True"
    os.close(r)
    assert monitor.is_alive()  # the parent's is untouched
    assert blocked(monitored.seen) == []


SCRIPT = """
import time
import greenwheel as gevent
from greenwheel import events
seen = []
events.subscribers.append(seen.append)
def stuck():
    time.sleep(1.0)
gevent.spawn(stuck).join()
hub = gevent.get_hub()
print(hub.periodic_monitoring_thread.max_blocking_time, len(seen))
"""


def run_script(**env):
    full = dict(os.environ, **env)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=full, capture_output=True, text=True, timeout=120
    )


def test_the_environment_turns_monitoring_on_for_every_hub():
    done = run_script(GEVENT_MONITOR_THREAD_ENABLE="true", GEVENT_MAX_BLOCKING_TIME="0.05")
    assert done.returncode == 0, done.stderr
    max_blocking_time, events_seen = done.stdout.split()
    assert max_blocking_time == "0.05" and int(events_seen) >= 2  # started + blocked
    assert "appears to be blocked: it has run for more than 0.05 s without switching" in done.stderr
    assert "PeriodicMonitoringThread" in done.stderr
    assert "in stuck" in done.stderr


def test_a_bad_max_blocking_time_in_the_environment_is_a_clear_error():
    done = run_script(GREENWHEEL_MONITOR_THREAD_ENABLE="1", GREENWHEEL_MAX_BLOCKING_TIME="soon")
    assert done.returncode != 0
    assert "GREENWHEEL_MAX_BLOCKING_TIME: not a number of seconds: 'soon'" in done.stderr


def test_the_monitor_starts_after_patch_all():
    # patch_all() makes threading.get_ident name greenlets; the monitor must
    # still see that it is started from the hub's own OS thread.
    code = (
        "from greenwheel import monkey; monkey.patch_all()\n"
        "import greenwheel\n"
        "monitor = greenwheel.get_hub().start_periodic_monitoring_thread()\n"
        "print(monitor.should_run, monitor.monitor_thread_ident != monitor.hub.thread_ident)\n"
        "monitor.kill()\n"
        "print(monitor.should_run)\n"
    )
    done = run_python(code)
    assert done.stdout.split() == ["True", "True", "False"]


def test_memory_events_on_crossing_the_threshold_both_ways(monitored):
    # gevent's semantics: over the threshold, each reading higher than the
    # last sends an event; back under it, one event with the peak.
    import psutil

    monitor = monitored(0.05)
    rss = psutil.Process().memory_full_info().rss
    config.max_memory_usage = 1  # any process is over one byte
    try:
        first = monitor.monitor_memory_usage(gw.get_hub())
        assert isinstance(first, events.MemoryUsageThresholdExceeded)
        assert first.max_allowed == 1 and 1 < first.mem_usage <= rss * 2
        config.max_memory_usage = rss * 4  # back under it
        under = monitor.monitor_memory_usage(gw.get_hub())
        assert isinstance(under, events.MemoryUsageUnderThreshold)
        assert under.max_allowed == rss * 4 and under.max_memory_usage >= first.mem_usage
        assert monitor.monitor_memory_usage(gw.get_hub()) is None  # still under: nothing
        config.max_memory_usage = None
        assert monitor.monitor_memory_usage(gw.get_hub()) == -1  # no threshold: no check
    finally:
        config._values.pop("max_memory_usage", None)  # back to the environment's (unset)
    memory = [
        e
        for e in monitored.seen
        if isinstance(e, (events.MemoryUsageThresholdExceeded, events.MemoryUsageUnderThreshold))
    ]
    assert memory == [first, under]  # what was returned was notified


def test_a_new_monitoring_function_runs_at_the_next_wake_up(monitored):
    # As in gevent: due at once, then every period (here far longer than the test).
    monitor = monitored(0.05)
    called = threading.Event()

    def check(hub):
        called.set()

    monitor.add_monitoring_function(check, 3600)
    try:
        assert called.wait(10)
    finally:
        monitor.add_monitoring_function(check, None)


def test_a_forked_child_gets_its_own_monitor_after_patch_all():
    # reinit() compares the hub's OS thread with the current one: it must use
    # the real ident, not patch_all()'s per-greenlet one.
    code = (
        "from greenwheel import monkey; monkey.patch_all()\n"
        "import os, greenwheel\n"
        "hub = greenwheel.get_hub()\n"
        "parent_monitor = hub.start_periodic_monitoring_thread()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    child_monitor = hub.periodic_monitoring_thread\n"
        "    ok = child_monitor is parent_monitor and child_monitor.is_alive()\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.WEXITSTATUS(status), parent_monitor.should_run)\n"
    )
    done = run_python(code)
    assert done.stdout.split() == ["0", "True"]
