"""The loop's virtual clock (``Loop._use_virtual_clock``): time stands still
while greenlets run and jumps to the next deadline when all of them wait.

Every wait built on the loop's timers runs on it, so these tests sleep and
time out for minutes of loop time in milliseconds of real time, and what they
observe (wake order, ``loop.now()``) is exact rather than "about right".
"""

import math
import os
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import greenwheel as gw
import greenwheel.event
import greenwheel.queue
import greenwheel.select
import greenwheel.socket
from greenwheel import _clock

# Real time a test of virtual minutes may take on a busy 2-core machine.
REAL_BOUND = 2.0


def test_a_long_sleep_takes_no_real_time_and_advances_now_exactly(virtual_clock):
    loop = virtual_clock
    start, real = loop.now(), time.monotonic()
    gw.sleep(100)
    assert loop.now() - start == pytest.approx(100, abs=1e-6)
    assert time.monotonic() - real < REAL_BOUND
    assert loop._virtual_clock
    # The uncached reading used for deadlines agrees (the clock stood still).
    assert loop._clock_now() == loop.now()
    assert _clock.monotonic() == loop.now()


def _event_wait(seconds):
    assert gw.event.Event().wait(seconds) is False


def _async_result_get(seconds):
    with pytest.raises(gw.Timeout):
        gw.event.AsyncResult().get(timeout=seconds)


def _queue_get(seconds):
    with pytest.raises(gw.queue.Empty):
        gw.queue.Queue().get(timeout=seconds)


def _joinall(seconds):
    blocked = gw.spawn(gw.event.Event().wait)
    assert gw.joinall([blocked], timeout=seconds) == []
    blocked.kill()


def _timeout_block(seconds):
    with pytest.raises(gw.Timeout):
        with gw.Timeout(seconds):
            gw.event.Event().wait()


def _with_timeout(seconds):
    assert gw.with_timeout(seconds, gw.sleep, 10 * seconds, timeout_value="late") == "late"


def _timer_watcher(seconds):
    fired = gw.event.Event()
    timer = gw.get_hub().loop.timer(seconds)
    timer.start(fired.set)
    fired.wait()


def _socket_recv_timeout(seconds):
    a, b = gw.socket.socketpair()
    with a, b:
        a.settimeout(seconds)
        with pytest.raises(TimeoutError):
            a.recv(1)


def _select_timeout(seconds):
    a, b = gw.socket.socketpair()
    with a, b:
        assert gw.select.select([a], [], [], seconds) == ([], [], [])


WAITS = [
    _event_wait,
    _async_result_get,
    _queue_get,
    _joinall,
    _timeout_block,
    _with_timeout,
    _timer_watcher,
    _socket_recv_timeout,
    _select_timeout,
]


@pytest.mark.parametrize("wait", WAITS, ids=[w.__name__.strip("_") for w in WAITS])
def test_every_timed_wait_runs_on_the_virtual_clock(virtual_clock, wait):
    loop = virtual_clock
    start, real = loop.now(), time.monotonic()
    wait(30)
    elapsed = loop.now() - start
    # The socket's deadline is read on the system clock and converted at the
    # wait: the microseconds between the two readings are all it may lose.
    assert elapsed == pytest.approx(30, abs=1e-3), elapsed
    assert time.monotonic() - real < REAL_BOUND


def test_wake_order_follows_deadlines_not_real_time(virtual_clock):
    loop = virtual_clock
    start = loop.now()
    woke = []

    def sleeper(name, seconds):
        gw.sleep(seconds)
        woke.append((name, round(loop.now() - start, 6)))

    gw.joinall([gw.spawn(sleeper, name, s) for name, s in [("c", 3600), ("a", 1), ("b", 60)]])
    assert woke == [("a", 1.0), ("b", 60.0), ("c", 3600.0)]


@given(
    sleeps=st.lists(st.integers(0, 100_000), max_size=12),
    timers=st.lists(st.integers(0, 100_000), max_size=12),
)
def test_wake_order_and_now_match_the_model(sleeps, timers):
    """Random sleeps (in greenlets) and timer watchers, delays in ms: each
    wakes at exactly its deadline, in deadline order, ties in arming order
    (the timers are armed before the greenlets start sleeping), in a real
    time that does not grow with the virtual span (up to 100 s here)."""
    from _hubs import destroy_hub

    destroy_hub()  # hypothesis runs every example in one test: a fresh hub each
    loop = gw.get_hub().loop
    loop._use_virtual_clock()
    start, real = loop.now(), time.monotonic()
    seen = []

    def record(tag):
        seen.append((tag, loop.now() - start))

    armed = []
    for i, ms in enumerate(timers):
        timer = loop.timer(ms / 1000)
        timer.start(record, ("timer", i))
        armed.append(timer)

    def sleeper(i, ms):
        gw.sleep(ms / 1000)
        record(("sleep", i))

    gw.joinall([gw.spawn(sleeper, i, ms) for i, ms in enumerate(sleeps)])
    if timers:
        # The timers' callbacks have run once the latest of them is due.
        gw.sleep(max(timers) / 1000)
        gw.sleep(0)
    for timer in armed:
        timer.close()

    model = sorted(
        [(ms, 0, i, ("timer", i)) for i, ms in enumerate(timers)]
        + [(ms, 1, i, ("sleep", i)) for i, ms in enumerate(sleeps)]
    )
    assert [tag for tag, _ in seen] == [tag for *_, tag in model]
    for (tag, at), (ms, *_) in zip(seen, model, strict=True):
        assert math.isclose(at, ms / 1000, abs_tol=1e-6), (tag, at, ms)
    assert time.monotonic() - real < REAL_BOUND
    destroy_hub()


def test_ready_io_is_served_before_any_jump(virtual_clock):
    loop = virtual_clock
    start = loop.now()
    a, b = gw.socket.socketpair()
    with a, b:

        def write_later():
            gw.sleep(50)
            b.sendall(b"late")

        writer = gw.spawn(write_later)
        a.settimeout(100)
        b.sendall(b"now")
        # Already in the kernel: seen by the zero-timeout poll, no jump.
        assert a.recv(3) == b"now"
        assert loop.now() == start
        # Then only the writer's sleep is left to wake anything: 50 s pass.
        assert a.recv(4) == b"late"
        assert loop.now() - start == pytest.approx(50, abs=1e-6)
        writer.join()


def test_a_threshold_lets_a_slow_peer_answer_before_the_jump(hub):
    # With autojump_threshold, the loop waits that long in real time for I/O
    # before jumping: a peer (here a thread) slower than a zero-timeout poll
    # still gets its answer in before the 10 s timeout.
    loop = hub.loop
    loop._use_virtual_clock(autojump_threshold=30)
    a, b = gw.socket.socketpair()
    with a, b:
        start = loop.now()
        # A plain write from the thread (no greenwheel in that thread). The
        # delay is no synchronisation: written sooner, the data is simply
        # ready at the first poll, and the test passes the same way.
        fd = b.fileno()
        writer = threading.Thread(target=lambda: (time.sleep(0.05), os.write(fd, b"x")))
        writer.start()
        try:
            a.settimeout(10)
            assert a.recv(1) == b"x"
        finally:
            writer.join()
        assert loop.now() == start


def test_thread_pool_work_is_waited_for_in_real_time(virtual_clock):
    # While a thread works for the loop, a jump would fire the timeout the
    # thread is about to beat: the clock follows real time instead.
    loop = virtual_clock
    pool = gw.get_hub().threadpool
    start, real = loop.now(), time.monotonic()
    assert pool.spawn(lambda: time.sleep(0.1) or "done").get(timeout=100) == "done"
    waited = time.monotonic() - real
    # At most the real time waited (none, if the thread was done before the
    # loop first polled).
    assert 0 <= loop.now() - start <= waited + 1e-3, (loop.now() - start, waited)

    # A thread that does not finish in time: the timeout fires after its
    # real duration, at exactly its deadline on the loop's clock.
    release = threading.Event()
    stuck = pool.spawn(release.wait, 30)
    start, real = loop.now(), time.monotonic()
    try:
        with pytest.raises(gw.Timeout):
            stuck.get(timeout=0.3)
    finally:
        release.set()
    assert loop.now() - start == pytest.approx(0.3, abs=1e-6)
    assert time.monotonic() - real >= 0.29
    assert stuck.get(timeout=30) is True


def test_a_busy_loop_still_polls_the_kernel(virtual_clock):
    # The pacing of kernel polls during a burst of sleep(0)s reads real time:
    # on the stopped virtual clock the burst would otherwise never poll, and
    # the reader below would never see its data.
    a, b = gw.socket.socketpair()
    with a, b:
        reader = gw.spawn(a.recv, 1)
        gw.sleep(0)  # the reader parks
        b.sendall(b"x")
        spins = 0
        while not reader.ready():
            gw.sleep(0)
            spins += 1
            assert spins < 1_000_000, "the kernel was never polled"
        assert reader.get() == b"x"


def test_advance_clock_by_hand(virtual_clock):
    loop = virtual_clock
    start = loop.now()
    fired = []
    done = gw.event.Event()
    timer = loop.timer(5)
    timer.start(lambda: (fired.append(loop.now() - start), done.set()))
    loop._advance_clock(10)
    assert loop.now() - start == pytest.approx(10, abs=1e-6)
    assert done.wait(1)  # due already: fires before any jump
    # Late, as a timer is when the loop was busy: it sees the time it ran at.
    assert fired == [pytest.approx(10, abs=1e-6)]
    assert loop.now() - start == pytest.approx(10, abs=1e-6)
    timer.close()


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_bad_durations_are_refused(hub, bad):
    with pytest.raises(ValueError):
        hub.loop._use_virtual_clock(bad)
    hub.loop._use_virtual_clock()
    with pytest.raises(ValueError):
        hub.loop._advance_clock(bad)


def test_the_system_clock_is_the_default_and_cannot_be_advanced(hub):
    loop = hub.loop
    assert not loop._virtual_clock
    with pytest.raises(RuntimeError):
        loop._advance_clock(1)
    # On the system clock, the loop's clock is time.monotonic().
    before = time.monotonic()
    assert before <= loop._clock_now() <= time.monotonic()
    assert before <= _clock.monotonic() <= time.monotonic()


def test_switching_keeps_armed_deadlines(hub):
    # The virtual clock starts at the system clock's reading, so a timer
    # armed before the switch keeps its deadline.
    loop = hub.loop
    fired = gw.event.Event()
    timer = loop.timer(600)
    timer.start(fired.set)
    start, real = loop.now(), time.monotonic()
    loop._use_virtual_clock()
    assert fired.wait(1000)
    assert loop.now() - start == pytest.approx(600, abs=1e-3)
    assert time.monotonic() - real < REAL_BOUND
    timer.close()
