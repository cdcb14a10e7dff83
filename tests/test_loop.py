"""greenwheel._core.Loop driven directly from Python: no greenlets, no hub.

Every test makes its own Loop and destroys it afterwards. Waiting is always
on an event with a generous bound (a guard timer plus a wall-clock deadline);
timing assertions are lower bounds only ("never early").

"""

import errno
import gc
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenwheel import _core
from greenwheel._core import READ, WRITE, Loop

# --- helpers -----------------------------------------------------------------

WAIT = 10.0  # generous bound for anything that "must happen"


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.destroy()


def noop(*_args):
    pass


def run_until(loop, predicate, timeout=WAIT):
    """Run single passes until ``predicate()``; a guard timer bounds each poll."""
    deadline = time.monotonic() + timeout
    guard = loop.timer(timeout)
    guard.start(noop)
    try:
        while not predicate():
            assert time.monotonic() < deadline, "timed out waiting for the loop"
            loop.run(once=True)
    finally:
        guard.stop()


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Canary:
    """A callable that records its own finalization (pyclasses take no weakrefs)."""

    def __init__(self, died, payload=None):
        self.died = died
        self.payload = payload
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1

    def __del__(self):
        self.died.append(True)


class Recorder:
    """An error handler that records every call."""

    def __init__(self):
        self.calls = []

    def handle_error(self, context, type_, value, tb):
        self.calls.append((context, type_, value, tb))


class Reraiser(Recorder):
    """An error handler that records, then raises the error (run() must unwind)."""

    def handle_error(self, context, type_, value, tb):
        super().handle_error(context, type_, value, tb)
        raise value


class Boom(Exception):
    pass


def boom(*_args):
    raise Boom()


# --- module and loop basics -------------------------------------------------


def test_module_constants_and_clock():
    assert READ == 1 and WRITE == 2
    a = _core.monotonic_ns()
    b = time.monotonic_ns()
    c = _core.monotonic_ns()
    # Same clock as time.monotonic().
    assert a <= b <= c


def test_fresh_loop_properties(loop):
    assert loop.default  # made on the main thread
    assert loop.ptr != 0
    assert loop.fileno() >= 0
    assert loop.sigfd >= 0
    assert loop.activecnt == 0
    assert loop.pendingcnt == 0
    assert loop.error_handler is None
    # Nothing to do: run() returns at once, and reports nothing pending.
    assert loop.run() is False
    assert loop.run(nowait=True) is False
    assert loop.run(once=True) is False


def test_now_is_cached_until_update(loop):
    loop.update_now()
    cached = loop.now()
    time.sleep(0.02)
    assert loop.now() == cached
    loop.update_now()
    assert loop.now() >= cached + 0.02
    assert loop.now() <= time.monotonic()


def test_loop_in_other_thread_is_not_default():
    seen = {}

    def body():
        lp = Loop()
        try:
            seen["default"] = lp.default
            t = lp.timer(0)
            t.start(seen.setdefault, "fired", True)
            lp.run()
        finally:
            lp.destroy()

    th = threading.Thread(target=body)
    th.start()
    th.join(WAIT)
    assert seen == {"default": False, "fired": True}


# --- timers -----------------------------------------------------------------


def test_timer_fires_never_early(loop):
    delays = [0.05, 0.0, 0.02, 0.03, 0.001]
    fired = []
    timers = []
    for d in delays:
        t = loop.timer(d)
        start = time.monotonic()
        t.start(lambda d=d, start=start: fired.append((d, time.monotonic() - start, loop.now())))
        timers.append(t)
        assert t.active
        assert t.after == d
        assert t.repeat == 0
        assert t.at >= start + d
    assert loop.activecnt == len(delays)
    assert loop.run() is False
    assert [d for d, _, _ in fired] == sorted(delays)
    for d, elapsed, _ in fired:
        assert elapsed >= d, f"timer for {d}s fired after only {elapsed}s"
    assert not any(t.active for t in timers)
    assert loop.activecnt == 0
    assert loop.timer_count == 0


@given(st.lists(st.sampled_from([-1.0, 0.0, 0.001, 0.002, 0.003]), min_size=1, max_size=25))
def test_timers_deadline_order_ties_in_arming_order(delays):
    loop = Loop()
    try:
        fired = []
        loop.update_now()
        timers = []
        for i, d in enumerate(delays):
            t = loop.timer(d)
            # update=False: every timer is armed from the same cached now, so
            # equal delays are exact ties.
            t.start(fired.append, i, update=False)
            timers.append(t)
        loop.run()
        expected = sorted(range(len(delays)), key=lambda i: (max(delays[i], 0.0), i))
        assert fired == expected
        assert loop.timer_count == 0
        assert loop.activecnt == 0
    finally:
        loop.destroy()


@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(["start", "stop", "again"]),
            st.sampled_from([-1.0, 0.0, 0.001, 0.002]),
        ),
        max_size=30,
    )
)
def test_timer_start_stop_model(ops):
    """Random start/stop/again sequences: exactly the timers left armed fire,
    in (deadline, last-arming) order, each once."""
    loop = Loop()
    try:
        loop.update_now()
        timers = {}
        armed = {}  # idx -> (delay, seq)
        fired = []
        for seq, (idx, op, delay) in enumerate(ops):
            if idx not in timers:
                timers[idx] = loop.timer(delay)
            t = timers[idx]
            if op == "stop":
                t.stop()
                armed.pop(idx, None)
            else:
                meth = t.start if op == "start" else t.again
                meth(fired.append, idx, update=False)
                armed[idx] = (max(t.after, 0.0), seq)
            assert t.active == (idx in armed)
        assert loop.activecnt == len(armed)
        assert loop.timer_count == len(armed)
        loop.run()
        assert fired == sorted(armed, key=lambda i: armed[i])
        assert loop.activecnt == 0
        assert loop.timer_count == 0
    finally:
        loop.destroy()


def test_timer_update_false_uses_cached_time(loop):
    loop.update_now()
    cached = loop.now()
    time.sleep(0.03)
    t = loop.timer(0.01)
    t.start(noop, update=False)
    assert t.at == pytest.approx(cached + 0.01, abs=1e-6)
    assert t.at < time.monotonic()  # already due: computed from the stale clock
    t2 = loop.timer(0.01)
    t2.start(noop)  # default update=True refreshes the clock first
    assert t2.at >= cached + 0.04
    loop.run()


def test_repeat_timer(loop):
    t = loop.timer(0.01, repeat=0.005)
    assert t.repeat == 0.005
    stamps = []
    start = time.monotonic()

    def tick():
        stamps.append(time.monotonic() - start)
        assert t.active  # a repeating timer stays active while it runs
        if len(stamps) == 5:
            t.stop()

    t.start(tick)
    loop.run()
    assert len(stamps) == 5
    for k, s in enumerate(stamps):
        assert s >= 0.01 + k * 0.005
    assert not t.active
    assert loop.timer_count == 0


def test_repeat_timer_again_restarts(loop):
    t = loop.timer(0.2)
    start = time.monotonic()
    out = {}
    t.start(out.setdefault, "old", True)

    def restart():
        out["again_at"] = time.monotonic()
        t.again(lambda: out.setdefault("fired", time.monotonic()))

    helper = loop.timer(0.05)
    helper.start(restart)
    loop.run()
    assert "old" not in out  # again() replaced the callback
    assert out["fired"] >= out["again_at"] + 0.2
    assert out["fired"] >= start + 0.25
    # again() on an inactive timer simply starts it.
    t.again(out.setdefault, "second", True)
    assert t.active
    loop.run()
    assert out["second"] is True


def test_timer_stop_before_firing(loop):
    died = []
    t = loop.timer(0)
    t.start(Canary(died))
    assert loop.activecnt == 1
    t.stop()
    t.stop()  # idempotent
    assert not t.active
    assert loop.activecnt == 0
    assert loop.timer_count == 0
    assert loop.run() is False


def test_stop_timer_due_in_same_pass(loop):
    fired = []
    t1 = loop.timer(-1)
    t2 = loop.timer(-1)
    t3 = loop.timer(-1)
    t1.start(lambda: (fired.append(1), t2.stop()))
    t2.start(fired.append, 2)
    t3.start(fired.append, 3)
    loop.run(once=True)
    assert fired == [1, 3]
    assert not t2.active
    assert loop.activecnt == 0
    assert loop.timer_count == 0


def test_pending_while_due_in_same_pass(loop):
    seen = []
    t1 = loop.timer(-1)
    t2 = loop.timer(-1)
    loop.update_now()
    t1.start(lambda: seen.append(t2.pending), update=False)
    t2.start(noop, update=False)
    assert not t2.pending
    loop.run(once=True)
    assert seen == [True]
    assert not t2.pending


def test_stop_own_repeat_timer_from_callback(loop):
    t = loop.timer(0, repeat=0.001)
    count = []

    def cb():
        count.append(1)
        t.stop()
        assert not t.active

    t.start(cb)
    loop.run()
    assert count == [1]
    assert loop.timer_count == 0


def test_restart_from_callback_fires_in_later_pass(loop):
    t = loop.timer(-1)
    seen = []

    def cb():
        seen.append(loop.iteration)
        if len(seen) < 3:
            # Re-arming a due-now timer from its own callback must not spin
            # inside one pass: it fires again in a later pass.
            t.start(cb)
            assert t.active

    t.start(cb)
    loop.run()
    assert len(seen) == 3
    assert seen[0] < seen[1] < seen[2]


def test_restart_other_timer_due_in_same_pass(loop):
    """A due timer re-armed by an earlier callback of the same pass fires once,
    with its new callback, in a later pass."""
    fired = []
    t1 = loop.timer(-1)
    t2 = loop.timer(-1)
    loop.update_now()

    def cb():
        fired.append(("t1", loop.iteration))
        t2.start(lambda: fired.append(("t2-new", loop.iteration)))

    t1.start(cb, update=False)
    t2.start(fired.append, "t2-old", update=False)
    loop.run()
    assert [name for name, _ in fired] == ["t1", "t2-new"]
    assert fired[0][1] < fired[1][1]


def test_negative_delay_is_due_now(loop):
    t = loop.timer(-5)
    fired = []
    t.start(fired.append, 1)
    assert t.after == -5
    assert loop.run(nowait=True) is False
    assert fired == [1]


def test_inf_never_fires(loop):
    t = loop.timer(float("inf"))
    t.start(pytest.fail, "an inf timer fired")
    assert t.active
    assert loop.timer_count == 1
    assert loop.run(nowait=True) is True
    assert loop.run(nowait=True) is True
    assert t.active
    t.stop()
    assert loop.timer_count == 0
    assert loop.activecnt == 0


def test_huge_finite_delay_does_not_overflow(loop):
    for d in (1e300, 2.0**70, sys.float_info.max):
        t = loop.timer(d)
        t.start(pytest.fail, "fired")
        assert loop.run(nowait=True) is True
        t.stop()
    assert loop.timer_count == 0


@pytest.mark.parametrize("bad", [float("nan"), -float("nan")])
def test_nan_delay_is_value_error(loop, bad):
    with pytest.raises(ValueError):
        loop.timer(bad)
    with pytest.raises(ValueError):
        loop.timer(1.0, repeat=bad)


@pytest.mark.parametrize("bad", ["1", None, b"1", object(), [1]])
def test_non_number_delay_is_type_error(loop, bad):
    with pytest.raises(TypeError):
        loop.timer(bad)


def test_ints_are_numbers(loop):
    assert loop.timer(1).after == 1
    assert loop.timer(0).after == 0


def test_start_with_non_callable_is_type_error(loop):
    t = loop.timer(0)
    with pytest.raises(TypeError):
        t.start(42)
    assert not t.active
    assert loop.activecnt == 0


def test_timer_args_and_callback_attributes(loop):
    t = loop.timer(0)
    assert t.callback is None
    t.start(noop, 1, 2)
    assert t.callback is noop
    assert t.args == (1, 2)
    assert t.loop is loop
    t.close()
    assert not t.active
    assert t.callback is None


def test_timer_start_arguments_follow_the_python_signature(loop):
    # start(callback, *args, update=None): callback also by keyword, update
    # None means the default (refresh the clock first).
    fired = []
    t = loop.timer(0)
    t.start(callback=fired.append, update=None)
    assert t.args == ()
    t.start(fired.append, "x", update=False)
    assert t.args == ("x",)
    loop.run()
    assert fired == ["x"]
    for call, message in [
        (lambda: t.start(), "missing 1 required positional argument: 'callback'"),
        (lambda: t.start(noop, callback=noop), "multiple values for argument 'callback'"),
        (lambda: t.start(noop, bogus=1), "unexpected keyword argument 'bogus'"),
        (lambda: t.start(noop, update=1), "'update' must be a bool or None"),
        (lambda: t.start(42), "callback must be callable, not int"),
        (lambda: t.stop(1), "takes no arguments"),
    ]:
        with pytest.raises(TypeError, match=message):
            call()
    assert not t.active  # a refused start arms nothing
    with pytest.raises(TypeError):
        type(t).start(object(), noop)  # the descriptor checks self


def test_restarting_a_timer_swaps_its_arguments_without_leaking(loop):
    # The reused watcher keeps the stored call while it is unchanged and
    # releases the old callback and arguments the moment they change.
    t = loop.timer(10)
    first, second = Canary([]), Canary([])
    t.start(noop, first)
    before = sys.getrefcount(first)
    for _ in range(100):
        t.start(noop, first)
        t.stop()
    assert sys.getrefcount(first) == before
    t.start(noop, second)
    assert t.args == (second,)
    assert sys.getrefcount(first) == before - 1
    t.stop()
    assert sys.getrefcount(t) == 2  # the loop let go of the stopped watcher


def test_unreferenced_active_timer_still_fires(loop):
    fired = []
    loop.timer(0).start(fired.append, 1)  # no Python reference kept
    gc.collect()
    loop.run()
    assert fired == [1]


def test_timer_context_manager(loop):
    with loop.timer(10) as t:
        t.start(noop)
        assert t.active
    assert not t.active
    assert loop.activecnt == 0


# --- callbacks --------------------------------------------------------------


@given(st.lists(st.booleans(), max_size=40))
def test_run_callback_fifo_and_stop(stops):
    loop = Loop()
    try:
        ran = []
        cbs = [loop.run_callback(ran.append, i) for i in range(len(stops))]
        assert loop.pendingcnt == len(stops)
        for cb, stop in zip(cbs, stops, strict=True):
            assert cb.pending and bool(cb)
            if stop:
                cb.stop()
                assert not cb.pending
        loop.run()
        assert ran == [i for i, s in enumerate(stops) if not s]
        assert not any(cb.pending for cb in cbs)
        assert loop.pendingcnt == 0
    finally:
        loop.destroy()


def test_callback_attributes(loop):
    cb = loop.run_callback(noop, 1, "a")
    assert cb.callback is noop
    assert cb.args == (1, "a")
    assert cb.pending
    loop.run()
    assert not cb.pending
    assert cb.callback is None
    cb.stop()  # harmless after running
    cb.close()


def test_callback_close_is_stop(loop):
    ran = []
    cb = loop.run_callback(ran.append, 1)
    cb.close()
    loop.run()
    assert ran == []


def test_run_callback_non_callable(loop):
    with pytest.raises(TypeError):
        loop.run_callback(3)
    with pytest.raises(TypeError):
        loop.run_callback(None)
    assert loop.pendingcnt == 0


def test_callbacks_queued_while_dispatching_run_in_later_pass(loop):
    log = []

    def second():
        log.append(("second", loop.iteration))

    def first():
        log.append(("first", loop.iteration))
        loop.run_callback(second)

    loop.run_callback(first)
    before = loop.iteration
    assert loop.run(once=True) is True  # second still queued
    assert log == [("first", before)]
    assert loop.iteration == before + 1
    assert loop.pendingcnt == 1
    assert loop.run(nowait=True) is False
    assert log == [("first", before), ("second", before + 1)]


def test_callback_chain_runs_one_link_per_pass(loop):
    seen = []

    def link(n):
        seen.append(loop.iteration)
        if n:
            loop.run_callback(link, n - 1)

    loop.run_callback(link, 5)
    loop.run()
    assert len(seen) == 6
    assert seen == sorted(set(seen))  # strictly increasing: one per pass


def test_callback_queued_by_timer_runs_after_the_pass(loop):
    log = []
    t = loop.timer(0)
    t.start(lambda: (log.append("timer"), loop.run_callback(log.append, "cb")))
    assert loop.run(once=True) is True
    assert log == ["timer"]
    loop.run(once=True)
    assert log == ["timer", "cb"]


def test_callback_stopped_by_earlier_callback_in_same_pass(loop):
    ran = []
    c2 = None
    loop.run_callback(lambda: (ran.append(1), c2.stop()))
    c2 = loop.run_callback(ran.append, 2)
    loop.run_callback(ran.append, 3)
    loop.run()
    assert ran == [1, 3]


def test_callbacks_keep_loop_running_without_watchers(loop):
    ran = []
    loop.run_callback(ran.append, 1)
    assert loop.activecnt == 0
    assert loop.run() is False
    assert ran == [1]


# --- io ---------------------------------------------------------------------


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_io_read_readiness(loop, pair):
    a, b = pair
    got = []
    w = loop.io(a.fileno(), READ)
    assert w.fd == a.fileno()
    assert w.events == READ

    def on_read():
        got.append(a.recv(100))
        w.stop()

    w.start(on_read)
    assert w.active and loop.activecnt == 1
    assert loop.run(nowait=True) is True  # nothing to read yet
    assert got == []
    b.send(b"hello")
    loop.run()
    assert got == [b"hello"]
    assert loop.activecnt == 0


def test_io_write_readiness_and_pass_events(loop, pair):
    a, _ = pair
    got = []
    w = loop.io(a.fileno(), WRITE)
    w.start(lambda *args: (got.append(args), w.stop()), "x", pass_events=True)
    loop.run()
    assert got == [(WRITE, "x")]


def test_io_both_passes_ready_mask(loop, pair):
    a, b = pair
    masks = []
    w = loop.io(a.fileno(), READ | WRITE)
    w.start(masks.append, pass_events=True)
    loop.run(once=True)
    assert masks == [WRITE]
    b.send(b"x")
    run_until(loop, lambda: READ in masks or (READ | WRITE) in masks)
    assert masks[-1] == READ | WRITE
    w.stop()


def test_io_without_pass_events_gets_only_args(loop, pair):
    a, _ = pair
    got = []
    w = loop.io(a.fileno(), WRITE)
    w.start(lambda *args: got.append(args), 1, 2)
    loop.run(once=True)
    w.stop()
    assert got == [(1, 2)]


def test_io_level_triggered_on_start(loop, pair):
    a, b = pair
    b.send(b"already there")
    got = []
    w = loop.io(a.fileno(), READ)
    w.start(got.append, 1)
    loop.run(once=True)
    assert got == [1]
    w.stop()


def test_io_persistent_watcher_fires_every_pass_until_consumed(loop, pair):
    a, b = pair
    b.send(b"x")
    count = []
    w = loop.io(a.fileno(), READ)
    w.start(count.append, 1)
    for n in range(1, 6):
        loop.run(once=True)
        assert len(count) == n, "unconsumed data must be reported every pass"
    a.recv(10)
    loop.run(nowait=True)
    # The recv happened before this pass; at most the pass that raced it fires.
    settled = len(count)
    loop.run(nowait=True)
    loop.run(nowait=True)
    assert len(count) == settled
    w.stop()


def test_io_new_data_after_consume_fires_again(loop, pair):
    a, b = pair
    got = []
    w = loop.io(a.fileno(), READ)
    w.start(lambda: got.append(a.recv(100)))
    for i in range(5):
        b.send(b"%d" % i)
        run_until(loop, lambda i=i: len(got) == i + 1)
    assert got == [b"0", b"1", b"2", b"3", b"4"]
    w.stop()


def test_io_two_watchers_on_one_fd(loop, pair):
    a, b = pair
    log = []
    r1 = loop.io(a.fileno(), READ)
    r2 = loop.io(a.fileno(), READ)
    wr = loop.io(a.fileno(), WRITE)
    r1.start(log.append, "r1")
    r2.start(log.append, "r2")
    wr.start(log.append, "w")
    assert loop.activecnt == 3
    loop.run(once=True)
    assert log == ["w"]
    wr.stop()
    log.clear()
    b.send(b"x")
    run_until(loop, lambda: log)
    assert sorted(log) == ["r1", "r2"]
    # Stopping one keeps the other registered.
    r1.stop()
    log.clear()
    loop.run(once=True)
    assert log == ["r2"]
    r2.stop()
    assert loop.activecnt == 0


def test_io_stop_other_watcher_during_dispatch(loop, pair):
    a, b = pair
    b.send(b"x")
    log = []
    w1 = loop.io(a.fileno(), READ)
    w2 = loop.io(a.fileno(), READ)
    w1.start(lambda: (log.append(1), w2.stop()))
    w2.start(lambda: (log.append(2), w1.stop()))
    loop.run(once=True)
    assert len(log) == 1, "the first callback stopped the other watcher; it must not run"
    assert w1.active != w2.active
    loop.run(once=True)
    assert len(log) == 2 and log[0] == log[1]


def test_io_stop_watcher_of_other_fd_ready_in_same_pass(loop):
    p1 = socket.socketpair()
    p2 = socket.socketpair()
    try:
        p1[1].send(b"x")
        p2[1].send(b"x")
        log = []
        w1 = loop.io(p1[0].fileno(), READ)
        w2 = loop.io(p2[0].fileno(), READ)
        w1.start(lambda: (log.append(1), w2.stop()))
        w2.start(lambda: (log.append(2), w1.stop()))
        run_until(loop, lambda: log)
        loop.run(nowait=True)
        assert len(log) == 1 or log[0] == log[1]
        w1.stop()
        w2.stop()
    finally:
        for s in p1 + p2:
            s.close()


def test_io_stop_self_during_dispatch(loop, pair):
    a, b = pair
    b.send(b"x")
    count = []
    w = loop.io(a.fileno(), READ)
    w.start(lambda: (count.append(1), w.stop()))
    loop.run()
    loop.run(nowait=True)
    assert count == [1]
    assert not w.active


def test_io_restart_changes_mask(loop, pair):
    a, _ = pair
    got = []
    w = loop.io(a.fileno(), READ)
    w.start(got.append, "read")
    loop.run(nowait=True)
    assert got == []
    with pytest.raises(ValueError):
        w.events = WRITE  # not while active
    w.stop()
    w.events = WRITE
    assert w.events == WRITE
    w.start(got.append, "write")
    loop.run(once=True)
    assert got == ["write"]
    w.stop()


def test_fd_closed_under_active_watcher_wakes_it(loop, pair):
    a, b = pair
    fd = os.dup(a.fileno())
    calls = []
    w = loop.io(fd, READ)

    def cb():
        calls.append(1)
        if len(calls) == 1:
            os.close(fd)  # behind the loop's back, watcher still active

    w.start(cb)
    b.send(b"x")
    try:
        run_until(loop, lambda: len(calls) >= 2, timeout=1.0)
    finally:
        w.stop()
        if len(calls) == 0:
            os.close(fd)


def test_closing_fd(loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    w = loop.io(fd, READ)
    w.start(noop)
    assert loop.closing_fd(fd) is True
    w.stop()
    a.close()
    b.close()
    assert loop.closing_fd(fd) is False
    assert loop.activecnt == 0
    # The fd number is typically reused at once; a new watcher on it works.
    c, d = socket.socketpair()
    try:
        got = []
        w2 = loop.io(c.fileno(), READ)
        w2.start(lambda: got.append(c.recv(10)))
        d.send(b"new")
        run_until(loop, lambda: got)
        assert got == [b"new"]
        w2.stop()
    finally:
        c.close()
        d.close()


def test_closing_fd_of_unwatched_fd(loop, pair):
    assert loop.closing_fd(pair[0].fileno()) is False
    assert loop.closing_fd(10**6) is False


def test_closed_fd_is_ebadf_at_start(loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    a.close()
    b.close()
    w = loop.io(fd, READ)  # creating is fine; the error comes at start()
    with pytest.raises(OSError) as info:
        w.start(noop)
    assert info.value.errno == errno.EBADF
    assert not w.active
    assert loop.activecnt == 0
    assert loop.run(nowait=True) is False


@pytest.mark.parametrize("fd", [-1, -100])
def test_negative_fd_is_value_error(loop, fd):
    with pytest.raises(ValueError):
        loop.io(fd, READ)


@pytest.mark.parametrize("mask", [0, 4, 8, -1, 256, READ | WRITE | 4])
def test_bad_mask_is_value_error(loop, pair, mask):
    with pytest.raises(ValueError):
        loop.io(pair[0].fileno(), mask)


def test_regular_file_is_always_ready(loop):
    with tempfile.TemporaryFile() as f:
        masks = []
        w = loop.io(f.fileno(), READ | WRITE)
        w.start(masks.append, pass_events=True)
        before = time.monotonic()
        guard = loop.timer(WAIT)
        guard.start(noop)
        for _ in range(3):
            loop.run(once=True)
        guard.stop()
        assert time.monotonic() - before < WAIT / 2  # never blocked on the guard
        assert masks == [READ | WRITE] * 3
        w.stop()
        assert loop.run(nowait=True) is False


def test_io_hangup_wakes_reader(loop, pair):
    a, b = pair
    got = []
    w = loop.io(a.fileno(), READ)
    w.start(lambda: (got.append(a.recv(10)), w.stop()))
    b.close()
    loop.run()
    assert got == [b""]


# --- async watchers and thread-safe callbacks ------------------------------


def test_async_send_wakes_blocked_run(loop):
    a = loop.async_()
    guard = loop.timer(WAIT)
    guard.start(noop)
    got = []

    def on_send():
        got.append(threading.current_thread() is threading.main_thread())
        a.stop()
        guard.stop()

    a.start(on_send)
    assert a.active and loop.activecnt == 2
    th = threading.Timer(0.05, a.send)
    th.start()
    start = time.monotonic()
    assert loop.run() is False
    th.join()
    assert got == [True]
    assert time.monotonic() - start < WAIT / 2


def test_async_send_before_run_and_send_ignoring_arg(loop):
    a = loop.async_()
    got = []
    a.start(lambda: (got.append(1), a.stop()))
    a.send_ignoring_arg("whatever")
    assert a.pending
    loop.run()
    assert got == [1]
    assert not a.pending


def test_async_sends_coalesce_but_none_is_lost(loop):
    a = loop.async_()
    n_threads, per_thread = 4, 2000
    sent = [0] * n_threads
    seen = []
    calls = []

    def on_send():
        calls.append(1)
        seen.append(sum(sent))

    a.start(on_send)

    def sender(k):
        for _ in range(per_thread):
            sent[k] += 1
            a.send()

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    total = n_threads * per_thread
    # The last send happens after the last increment, so a callback must
    # eventually observe the full count.
    run_until(loop, lambda: seen and seen[-1] == total)
    for th in threads:
        th.join()
    assert 1 <= len(calls) <= total
    a.stop()


def test_async_send_while_inactive_is_dropped(loop):
    a = loop.async_()
    got = []
    a.send()
    a.start(got.append, 1)  # start() discards sends made while stopped
    loop.run(nowait=True)
    a.stop()
    assert got == []


def test_async_unref_does_not_keep_loop_alive(loop):
    a = loop.async_(ref=False)
    a.start(noop)
    assert loop.activecnt == 0
    assert loop.run() is False
    a.ref = True
    assert loop.activecnt == 1
    a.ref = False
    assert loop.activecnt == 0
    a.stop()


def test_async_start_stop_from_other_thread_is_runtime_error(loop):
    a = loop.async_()
    errors = {}

    def body():
        for name, fn in (("start", lambda: a.start(noop)), ("stop", a.stop)):
            try:
                fn()
            except BaseException as e:  # noqa: B036 - PanicException is a BaseException
                errors[name] = type(e)

    th = threading.Thread(target=body)
    th.start()
    th.join(WAIT)
    assert errors == {"start": RuntimeError, "stop": RuntimeError}
    assert not a.active


def _call_in_thread(fn):
    result = {}

    def body():
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: B036 - PanicException is a BaseException
            result["error"] = e

    th = threading.Thread(target=body)
    th.start()
    th.join(WAIT)
    return result


def test_run_callback_threadsafe_from_threads(loop):
    ran = []
    n = 4
    # Queued from threads while the loop is not running ...
    results = [
        _call_in_thread(lambda k=k: loop.run_callback_threadsafe(ran.append, k)) for k in range(n)
    ]
    assert all("error" not in r for r in results), results
    run_until(loop, lambda: len(ran) == n)
    assert sorted(ran) == list(range(n))
    # ... and from a thread while run() is blocked on a long timer.
    guard = loop.timer(WAIT)
    guard.start(noop)
    errors = []

    def later():
        try:
            loop.run_callback_threadsafe(lambda: (ran.append("woken"), guard.stop()))
        except BaseException as e:  # noqa: B036
            errors.append(e)
            os.kill(os.getpid(), signal.SIGINT)  # do not leave run() blocked

    th = threading.Timer(0.05, later)
    th.start()
    start = time.monotonic()
    try:
        loop.run()
    finally:
        th.join()
        guard.stop()
    assert not errors, errors
    assert ran[-1] == "woken"
    assert time.monotonic() - start < WAIT / 2


def test_run_callback_threadsafe_from_owner_thread(loop):
    ran = []
    loop.run_callback_threadsafe(ran.append, 1)
    loop.run_callback_threadsafe(ran.append, 2)
    loop.run()
    assert ran == [1, 2]


def test_run_callback_threadsafe_returns_a_stoppable_callback(loop):
    # As run_callback: a Callback, pending until it runs; stopping it first
    # cancels the call.
    ran = []
    kept = loop.run_callback_threadsafe(ran.append, "kept")
    dropped = loop.run_callback_threadsafe(ran.append, "dropped")
    assert isinstance(kept, _core.Callback) and kept.pending
    assert kept.args == ("kept",)
    dropped.stop()
    assert not dropped.pending
    loop.run()
    assert ran == ["kept"]
    assert not kept.pending
    # From another thread too.
    from_thread = []
    worker = threading.Thread(
        target=lambda: from_thread.append(loop.run_callback_threadsafe(ran.append, "thread"))
    )
    worker.start()
    worker.join()
    assert isinstance(from_thread[0], _core.Callback)
    run_until(loop, lambda: "thread" in ran)
    assert not from_thread[0].pending


def test_loop_gevent_attributes(loop):
    assert loop.approx_timer_resolution == pytest.approx(0.001)
    # `async`, async_()'s old name (a keyword), is still an attribute.
    aw = getattr(loop, "async")()
    assert isinstance(aw, _core.AsyncWatcher)
    aw.close()
    with pytest.raises(AttributeError, match="no attribute 'bogus'"):
        loop.bogus  # noqa: B018


def test_default_loop_is_no_longer_default_once_destroyed():
    first, second = Loop(default=True), Loop(default=True)
    assert first.default and second.default
    first.destroy()
    assert not first.default and not first.ptr
    second.destroy()
    assert not second.default and not second.ptr


def test_loop_destroy_from_another_thread_after_its_thread_exited():
    made = []
    worker = threading.Thread(target=lambda: made.append(Loop()))
    worker.start()
    worker.join()
    lp = made.pop()
    lp.destroy()  # its thread is gone: nothing can be running it
    assert not lp.ptr


def test_loop_destroy_from_another_thread_while_its_thread_runs_is_refused():
    made, release = [], threading.Event()

    def owner():
        made.append(Loop())
        release.wait(WAIT)
        made[0].destroy()

    worker = threading.Thread(target=owner)
    worker.start()
    try:
        deadline = time.monotonic() + WAIT
        while not made and time.monotonic() < deadline:
            time.sleep(0.001)
        with pytest.raises(RuntimeError, match="another thread"):
            made[0].destroy()
    finally:
        release.set()
        worker.join()
    assert not made[0].ptr


def test_watcher_callback_and_args_can_be_set(loop):
    got = []
    t = loop.timer(0)
    t.start(got.append, 1)
    with pytest.raises(TypeError):
        t.callback = 5
    with pytest.raises(TypeError):
        t.callback = False
    assert t.callback == got.append
    t.args = (2,)
    assert t.args == (2,)
    with pytest.raises(TypeError):
        t.args = [3]
    with pytest.raises(TypeError):
        t.args = 3
    assert t.args == (2,)
    t.callback = lambda *a: got.append(("new",) + a)
    assert t.args == (2,)
    loop.run()
    assert got == [("new", 2)]
    # args = None: called with no arguments, and reads None.
    t.start(got.append, "x")
    t.args = None
    assert t.args is None
    t.callback = lambda: got.append("none")
    loop.run()
    assert got[-1] == "none"
    # callback = None forgets the call.
    t.start(got.append, "y")
    t.callback = None
    assert t.callback is None and t.args is None
    t.stop()


def test_fired_one_shot_timer_forgets_callback_and_args(loop):
    got = []
    t = loop.timer(0)
    t.start(got.append, 1)
    loop.run()
    assert got == [1]
    assert t.callback is None and t.args is None and not t.pending
    # A repeating timer keeps them between firings.
    r = loop.timer(0, repeat=0.001)
    r.start(lambda: (got.append(2), len(got) >= 3 and r.stop()))
    loop.run()
    assert r.callback is not None and r.args == ()
    r.close()


def test_watcher_priority_only_settable_while_stopped(loop):
    t = loop.timer(10)
    assert t.priority == 0
    t.priority = 1
    t.start(noop)
    with pytest.raises(AttributeError):
        t.priority = 2
    assert t.priority == 1
    t.stop()
    t.priority = 2
    assert t.priority == 2


def test_stat_watcher_notices_changes(loop, tmp_path):
    path = tmp_path / "watched"
    path.write_bytes(b"")
    w = loop.stat(str(path), interval=-1)
    assert w.path == str(path) and w._paths == os.fsencode(str(path))
    assert w.interval == -1 and not w.active
    got = []
    w.start(got.append, "changed")
    assert w.active and w.interval == 0.1  # below the minimum: raised to it
    assert w.attr is not None
    loop.run(nowait=True)
    assert got == []
    path.write_bytes(b"x")
    run_until(loop, lambda: got)
    assert got == ["changed"]
    assert w.attr.st_size == 1 and w.prev.st_size == 0
    path.unlink()
    run_until(loop, lambda: len(got) == 2)
    assert w.attr is None and w.prev.st_size == 1
    with pytest.raises(AttributeError):
        w.priority = 1
    w.close()
    assert not w.active and w.callback is None
    with loop.stat(str(path)) as w2:
        w2.start(noop)
        assert w2.interval == 5.0  # 0: the default interval
    assert not w2.active


def test_child_watcher_reports_the_exit(loop):
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    w = loop.child(pid)
    got = []
    w.start(lambda: got.append((w.rpid, w.rstatus)))
    run_until(loop, lambda: got)
    assert got == [(pid, 3 << 8)]
    assert not w.active
    w.close()
    with pytest.raises(ValueError):
        loop.child(0)


def test_run_callback_threadsafe_non_callable(loop):
    with pytest.raises(TypeError):
        loop.run_callback_threadsafe(3)


@pytest.mark.parametrize(
    "call",
    ["timer.start", "timer.stop", "run", "run_callback"],
)
def test_loop_use_from_other_thread_is_runtime_error(loop, call):
    t = loop.timer(10)
    fn = {
        "timer.start": lambda: t.start(noop),
        "timer.stop": t.stop,
        "run": lambda: loop.run(nowait=True),
        "run_callback": lambda: loop.run_callback(noop),
    }[call]
    result = _call_in_thread(fn)
    assert isinstance(result.get("error"), RuntimeError), result


# --- ref / unref / activecnt ------------------------------------------------


def test_run_returns_when_only_unrefd_watchers_remain(loop, pair):
    bg = loop.timer(WAIT, ref=False)
    bg.start(pytest.fail, "unref'd timer fired")
    io = loop.io(pair[0].fileno(), READ, ref=False)
    io.start(noop)
    assert not bg.ref
    fg = loop.timer(0.01)
    fired = []
    fg.start(fired.append, 1)
    assert loop.activecnt == 1
    start = time.monotonic()
    assert loop.run() is False
    assert fired == [1]
    assert time.monotonic() - start < WAIT / 2
    assert bg.active and io.active
    assert loop.run() is False  # returns at once: nothing referenced
    bg.stop()
    io.stop()


def test_ref_setter_on_active_watchers(loop, pair):
    watchers = [
        loop.timer(WAIT),
        loop.io(pair[0].fileno(), READ),
        loop.async_(),
        loop.prepare(),
        loop.check(),
    ]
    for w in watchers:
        w.start(noop)
    n = len(watchers)
    assert loop.activecnt == n
    for k, w in enumerate(watchers):
        w.ref = False
        w.ref = False  # no double counting
        assert not w.ref
        assert loop.activecnt == n - k - 1
    assert loop.run() is False
    for w in watchers:
        w.ref = True
    assert loop.activecnt == n
    # Stopping an unref'd watcher, re-ref'ing a stopped one: count never drifts.
    watchers[0].ref = False
    assert loop.activecnt == n - 1
    for w in watchers:
        w.stop()
    assert loop.activecnt == 0
    for w in watchers:
        w.ref = True
        w.ref = False
        w.ref = True
    assert loop.activecnt == 0


def test_activecnt_tracks_start_stop_and_fire(loop):
    ts = [loop.timer(0) for _ in range(5)]
    for i, t in enumerate(ts):
        t.start(noop)
        t.start(noop)  # restarting an active timer does not double count
        assert loop.activecnt == i + 1
    loop.run()
    assert loop.activecnt == 0
    unref = loop.timer(0, ref=False)
    unref.start(noop)
    assert loop.activecnt == 0
    unref.ref = True
    assert loop.activecnt == 1
    loop.run()
    assert loop.activecnt == 0


# --- break_ -----------------------------------------------------------------


def test_break_from_timer_callback(loop):
    t = loop.timer(0, repeat=0.001)
    count = []

    def cb():
        count.append(1)
        if len(count) == 3:
            loop.break_()

    t.start(cb)
    assert loop.run() is True  # broken out with the repeat timer still active
    assert len(count) == 3
    assert t.active
    # A break_() made outside run() does not affect the next run().
    loop.break_()
    t.stop()
    t2 = loop.timer(0)
    fired = []
    t2.start(fired.append, 1)
    assert loop.run() is False
    assert fired == [1]


def test_break_from_run_callback(loop):
    t = loop.timer(WAIT)
    t.start(noop)
    ran = []
    loop.run_callback(lambda: (ran.append(1), loop.break_()))
    loop.run_callback(ran.append, 2)  # same batch: still runs
    start = time.monotonic()
    assert loop.run() is True
    assert ran == [1, 2]
    assert time.monotonic() - start < WAIT / 2
    t.stop()


# --- phase watchers ---------------------------------------------------------


def test_prepare_check_idle_order(loop):
    log = []
    p = loop.prepare()
    c = loop.check()
    i = loop.idle()
    p.start(log.append, "prepare")
    c.start(log.append, "check")
    i.start(log.append, "idle")
    t = loop.timer(0)
    t.start(log.append, "timer")
    loop.run(once=True)
    assert log[:3] == ["prepare", "timer", "check"]
    log.clear()
    loop.run(once=True)
    assert log == ["prepare", "check", "idle"]  # nothing else happened: idle runs
    for w in (p, c, i):
        w.stop()
    assert loop.activecnt == 0


def test_idle_keeps_loop_from_blocking(loop):
    count = []
    i = loop.idle()

    def cb():
        count.append(1)
        if len(count) == 50:
            i.stop()

    i.start(cb)
    guard = loop.timer(WAIT)
    guard.start(noop)
    start = time.monotonic()
    loop.run(once=True)
    while i.active:
        loop.run(once=True)
    assert time.monotonic() - start < WAIT / 2
    guard.stop()
    assert len(count) == 50


# --- error routing ----------------------------------------------------------


def test_timer_error_goes_to_handler_with_watcher_context(loop):
    h = Recorder()
    loop.error_handler = h
    assert loop.error_handler is h
    t = loop.timer(0)
    t.start(boom)
    after = []
    t2 = loop.timer(0.001)
    t2.start(after.append, 1)
    loop.run()
    assert after == [1]  # the loop kept going
    assert len(h.calls) == 1
    context, type_, value, tb = h.calls[0]
    assert context is t
    assert type_ is Boom
    assert isinstance(value, Boom)
    # tb is the callback's traceback (it reaches into boom()).
    assert [f.name for f in traceback.extract_tb(tb)][-1] == "boom"


def test_callback_error_context_is_the_callback(loop):
    h = Recorder()
    loop.error_handler = h
    cb = loop.run_callback(boom)
    ran = []
    loop.run_callback(ran.append, 1)
    loop.run()
    assert ran == [1]
    assert [c[0] for c in h.calls] == [cb]
    assert h.calls[0][1] is Boom


def test_io_and_async_and_phase_error_contexts(loop, pair):
    h = Recorder()
    loop.error_handler = h
    io = loop.io(pair[0].fileno(), WRITE)
    io.start(lambda: (io.stop(), boom()))
    a = loop.async_()
    a.start(lambda: (a.stop(), boom()))
    a.send()
    p = loop.prepare()
    p.start(lambda: (p.stop(), boom()))
    c = loop.check()
    c.start(lambda: (c.stop(), boom()))
    loop.run()
    contexts = [call[0] for call in h.calls]
    assert len(contexts) == 4
    for w in (io, a, p, c):
        assert any(ctx is w for ctx in contexts), w
    assert all(call[1] is Boom for call in h.calls)


def test_error_without_handler_goes_to_unraisablehook(loop, monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    t = loop.timer(0)
    t.start(boom)
    cb = loop.run_callback(boom)
    ran = []
    loop.run_callback(ran.append, "after")
    loop.run()
    assert ran == ["after"]
    assert len(seen) == 2
    assert {id(u.object) for u in seen} == {id(t), id(cb)}
    assert all(isinstance(u.exc_value, Boom) for u in seen)


def test_error_without_handler_is_printed(loop, monkeypatch, capsys):
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)

    def fail():
        raise Boom("printed-not-lost")

    loop.run_callback(fail)
    loop.run()
    err = capsys.readouterr().err
    assert "printed-not-lost" in err
    assert "Boom" in err


def test_keyboard_interrupt_in_callback_without_handler_propagates(loop):
    def interrupt():
        raise KeyboardInterrupt

    ran = []
    loop.run_callback(interrupt)
    loop.run_callback(ran.append, 1)
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert ran == []
    loop.run()
    assert ran == [1]  # the rest of the queue is not lost


def test_system_exit_in_timer_without_handler_propagates(loop):
    t = loop.timer(0)
    t.start(sys.exit, 3)
    with pytest.raises(SystemExit):
        loop.run()


def test_raising_handler_unwinds_run_and_loses_no_callback(loop):
    h = Reraiser()
    loop.error_handler = h
    ran = []
    loop.run_callback(ran.append, 1)
    loop.run_callback(boom)
    loop.run_callback(ran.append, 2)
    loop.run_callback(ran.append, 3)
    with pytest.raises(Boom):
        loop.run()
    assert ran == [1]
    assert loop.pendingcnt == 2
    loop.error_handler = None
    loop.run()
    assert ran == [1, 2, 3]


def test_raising_handler_unwinds_run_and_loses_no_timer(loop):
    h = Reraiser()
    loop.error_handler = h
    fired = []
    loop.update_now()
    timers = [loop.timer(0) for _ in range(5)]
    for i, t in enumerate(timers):
        t.start(boom if i == 1 else fired.append, i, update=False)
    with pytest.raises(Boom):
        loop.run()
    assert fired == [0]
    assert all(t.active for t in timers[2:])
    loop.error_handler = None
    loop.run()
    assert fired == [0, 2, 3, 4]  # still in order
    assert loop.timer_count == 0
    assert loop.activecnt == 0


def test_raising_handler_in_repeat_timer(loop):
    loop.error_handler = Reraiser()
    t = loop.timer(0, repeat=0.001)
    t.start(boom)
    with pytest.raises(Boom):
        loop.run()
    assert t.active  # a repeat timer stays armed
    t.stop()


def test_raising_handler_loses_no_io_readiness(loop):
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        for _, b in pairs:
            b.send(b"x")  # never consumed: level semantics must keep reporting
        fired = []
        watchers = []
        for k, (a, _) in enumerate(pairs):
            w = loop.io(a.fileno(), READ)
            w.start(lambda k=k: (fired.append(k), boom()))
            watchers.append(w)
        loop.error_handler = Reraiser()
        with pytest.raises(Boom):
            loop.run(once=True)
        loop.error_handler = Recorder()
        for _ in range(3):
            loop.run(once=True)
        assert set(fired) == {0, 1}
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_raising_handler_loses_no_async_send(loop):
    fired = []
    a1 = loop.async_()
    a2 = loop.async_()
    a1.start(lambda: (fired.append(1), boom()))
    a2.start(lambda: (fired.append(2), boom()))
    a1.send()
    a2.send()
    loop.error_handler = Reraiser()
    with pytest.raises(Boom):
        loop.run(once=True)
    loop.error_handler = Recorder()
    for _ in range(3):
        loop.run(nowait=True)
    assert sorted(fired) == [1, 2]


def test_loop_handle_error_routes_to_handler(loop):
    h = Recorder()
    loop.error_handler = h
    try:
        raise Boom()
    except Boom as e:
        loop.handle_error("ctx", type(e), e, e.__traceback__)
    assert len(h.calls) == 1
    assert h.calls[0][0] == "ctx"
    assert h.calls[0][1] is Boom


def test_handler_replaced_and_cleared(loop):
    h1, h2 = Recorder(), Recorder()
    loop.error_handler = h1
    loop.error_handler = h2
    loop.run_callback(boom)
    loop.run()
    assert not h1.calls and len(h2.calls) == 1
    loop.error_handler = None
    assert loop.error_handler is None


# --- resources and garbage collection ---------------------------------------


def test_million_timers_armed_and_cancelled_leave_no_growth(loop):
    def batch(n=10_000, base=1000.0):
        ts = [loop.timer(base + i * 1e-3) for i in range(n)]
        for t in ts:
            t.start(noop)
        loop.run(nowait=True)
        for t in ts:
            t.stop()

    for _ in range(5):  # warm up allocator and the wheel's slab
        batch()
    gc.collect()
    before = rss_bytes()
    for _ in range(95):
        batch()
    gc.collect()
    growth = rss_bytes() - before
    assert loop.timer_count == 0
    assert loop.activecnt == 0
    assert growth < 16 * 1024 * 1024, f"RSS grew by {growth / 1e6:.1f} MB"


def test_fired_timers_leave_no_growth(loop):
    def batch(n=5000):
        for _ in range(n):
            loop.timer(-1).start(noop)
        loop.run()

    for _ in range(3):
        batch()
    gc.collect()
    before = rss_bytes()
    for _ in range(40):
        batch()
    gc.collect()
    assert loop.timer_count == 0
    assert rss_bytes() - before < 16 * 1024 * 1024


@pytest.mark.parametrize("kind", ["timer", "io", "async", "idle", "prepare", "check"])
def test_watcher_and_callback_freed_after_stop(loop, pair, kind):
    died = []
    make = {
        "timer": lambda: loop.timer(WAIT),
        "io": lambda: loop.io(pair[0].fileno(), READ),
        "async": lambda: loop.async_(),
        "idle": lambda: loop.idle(),
        "prepare": lambda: loop.prepare(),
        "check": lambda: loop.check(),
    }[kind]
    w = make()
    w.start(Canary(died), "arg")
    gc.collect()
    assert died == []  # the active watcher keeps its callback alive
    w.stop()
    del w
    gc.collect()
    assert died == [True]
    assert loop.activecnt == 0


def test_close_releases_callback_at_once(loop):
    died = []
    t = loop.timer(WAIT)
    t.start(Canary(died))
    t.close()
    assert died == [True]  # no gc needed
    assert t.callback is None


def test_fired_one_shot_and_ran_callback_are_released(loop):
    died = []
    t = loop.timer(0)
    t.start(Canary(died))
    cb = loop.run_callback(Canary(died))
    loop.run()
    # The Callback object survives, its callable does not.
    assert cb.callback is None
    del t
    gc.collect()
    assert died == [True, True]


def test_stopped_callback_is_released(loop):
    died = []
    cb = loop.run_callback(Canary(died))
    cb.stop()
    assert died == [True]
    loop.run()


class _Holder:
    """Builds loop <-> watcher <-> callback cycles."""

    def __init__(self, died, loop, make):
        self.canary = Canary(died)
        self.loop = loop
        self.watcher = make(loop)
        self.watcher.start(self.cb)

    def cb(self, *args):
        self.canary()


_MAKERS = {
    "timer": lambda lp: lp.timer(WAIT),
    "async": lambda lp: lp.async_(),
    "prepare": lambda lp: lp.prepare(),
}


@pytest.mark.parametrize("kind", sorted(_MAKERS))
@pytest.mark.parametrize("stop", [True, False], ids=["stopped", "active"])
def test_cycle_callback_is_collected(kind, stop):
    died = []
    lp = Loop()
    h = _Holder(died, lp, _MAKERS[kind])
    if stop:
        h.watcher.stop()
    del h, lp
    gc.collect()
    gc.collect()
    assert died == [True]


@pytest.mark.parametrize("kind", sorted(_MAKERS))
@pytest.mark.parametrize("stop", [True, False], ids=["stopped", "active"])
def test_cycle_loop_is_freed(kind, stop):
    gc.collect()
    before = open_fds()
    for _ in range(5):
        died = []
        lp = Loop()
        h = _Holder(died, lp, _MAKERS[kind])
        if stop:
            h.watcher.stop()
        del h, lp
    gc.collect()
    gc.collect()
    assert open_fds() - before == 0, "a loop's epoll/eventfd/pipe fds leaked"


def test_dropped_loop_without_watchers_is_freed():
    before = open_fds()
    for _ in range(10):
        lp = Loop()
        lp.timer(1).start(noop)
        lp.run(nowait=True)
        lp.destroy()
        del lp
    for _ in range(10):
        lp = Loop()
        del lp
    assert open_fds() == before


# --- destroy ----------------------------------------------------------------


def test_destroy(pair):
    lp = Loop()
    t = lp.timer(WAIT)
    t.start(noop)
    io = lp.io(pair[0].fileno(), READ)
    io.start(noop)
    idle = lp.idle()
    idle.start(noop)
    p = lp.prepare()
    p.start(noop)
    c = lp.check()
    c.start(noop)
    assert lp.activecnt == 5
    lp.destroy()
    for w in (t, io, idle, p, c):
        assert not w.active, w
    assert lp.activecnt == 0
    assert lp.fileno() == -1
    assert lp.ptr == 0
    lp.destroy()  # idempotent
    with pytest.raises(RuntimeError):
        lp.run()
    with pytest.raises(RuntimeError):
        lp.run(nowait=True)
    with pytest.raises(RuntimeError):
        t.start(noop)
    with pytest.raises(RuntimeError):
        io.start(noop)
    with pytest.raises(RuntimeError):
        lp.closing_fd(pair[0].fileno())
    with pytest.raises(RuntimeError):
        lp.reinit()
    # Stopping after destroy is harmless.
    for w in (t, io, idle, p, c):
        w.stop()
        w.close()


def test_destroy_releases_fds_and_callbacks():
    died = []
    before = open_fds()
    lp = Loop()
    lp.timer(WAIT).start(Canary(died))
    lp.run_callback(Canary(died))
    lp.destroy()
    # epoll and the signal pipe close at once; the cross-thread waker (shared
    # with AsyncWatchers) may live until the loop object itself is freed.
    assert open_fds() - before <= 1
    gc.collect()
    assert died == [True, True]
    del lp
    assert open_fds() == before


def test_destroy_deactivates_async_watchers():
    lp = Loop()
    a = lp.async_()
    a.start(noop)
    lp.destroy()
    assert not a.active


@pytest.mark.parametrize(
    "what", ["run_callback", "run_callback_threadsafe", "idle", "prepare", "check", "async"]
)
def test_use_after_destroy_raises(what):
    lp = Loop()
    lp.destroy()
    with pytest.raises(RuntimeError):
        if what.startswith("run_callback"):
            getattr(lp, what)(noop)
        else:
            getattr(lp, what if what != "async" else "async_")().start(noop)


# --- the GIL ----------------------------------------------------------------


def test_gil_released_while_waiting(loop):
    counter = [0]
    stop = threading.Event()
    ready = threading.Event()

    def spin():
        ready.set()
        while not stop.is_set():
            counter[0] += 1

    th = threading.Thread(target=spin)
    th.start()
    ready.wait(WAIT)
    t = loop.timer(0.3)
    t.start(noop)
    try:
        start_count = counter[0]
        start = time.monotonic()
        loop.run()
        elapsed = time.monotonic() - start
        progress = counter[0] - start_count
    finally:
        stop.set()
        th.join(WAIT)
    assert elapsed >= 0.3
    # With the GIL held across the poll the thread could not run at all.
    assert progress > 10_000, progress
