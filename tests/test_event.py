"""greenwheel.event: Event and AsyncResult, including wake-ups from OS threads."""

import _thread
import sys
import threading
import time

import pytest

import greenwheel as gw
from greenwheel import Timeout
from greenwheel._abstract_linkable import _may_be_woken_by_threads
from greenwheel.event import AsyncResult, Event
from greenwheel.exceptions import BlockingSwitchOutError, LoopExit


def run_threads(targets):
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    return threads


def join_threads_cooperatively(threads, limit=10.0):
    # Joining a thread blocks the hub; poll instead so greenlets keep running.
    deadline = time.monotonic() + limit
    while any(t.is_alive() for t in threads):
        assert time.monotonic() < deadline, "threads did not finish"
        gw.sleep(0.001)


# --- Event: flag ----------------------------------------------------------------


def test_event_flag_methods():
    e = Event()
    assert not e.is_set() and not e.isSet() and not e.ready()
    e.set()
    assert e.is_set() and e.isSet() and e.ready()
    assert e.wait() is True
    assert e.wait(0) is True
    e.clear()
    assert not e.is_set()
    assert "clear" in str(e)


def test_wait_timeout_returns_false_after_at_least_the_timeout():
    e = Event()
    start = time.monotonic()
    assert e.wait(0.02) is False
    assert time.monotonic() - start >= 0.019
    assert e.linkcount() == 0
    assert e.wait(0) is False
    assert e.wait(-1) is False


def test_wait_rejects_bad_timeouts():
    e = Event()
    with pytest.raises(TypeError):
        e.wait("1")
    with pytest.raises(ValueError):
        e.wait(float("nan"))


def test_set_wakes_every_waiter_in_wait_order_from_the_hub():
    e = Event()
    log = []

    def waiter(i):
        log.append(("wait", i))
        assert e.wait() is True
        log.append(("woke", i))

    greenlets = [gw.spawn(waiter, i) for i in range(5)]
    gw.sleep(0)
    assert e.linkcount() == 5
    e.set()
    # set() never switches: nobody has run yet.
    log.append("set returned")
    gw.joinall(greenlets)
    assert log == [("wait", i) for i in range(5)] + ["set returned"] + [
        ("woke", i) for i in range(5)
    ]
    assert e.linkcount() == 0


def test_waiters_woken_by_set_return_true_even_if_cleared_before_they_run():
    e = Event()
    results = []
    greenlets = [gw.spawn(lambda: results.append(e.wait())) for _ in range(3)]
    gw.sleep(0)
    e.set()
    e.clear()
    gw.joinall(greenlets)
    assert results == [True, True, True]
    assert not e.is_set()


def test_waiter_arriving_while_notification_pending_runs_after_blocked_ones():
    # gevent issue 1520: a waiter that finds the flag set while others are
    # about to be woken queues up behind them.
    e = Event()
    log = []

    def blocked(i):
        e.wait()
        log.append(i)

    def late():
        e.wait()
        log.append("late")

    greenlets = [gw.spawn(blocked, i) for i in range(2)]
    gw.sleep(0)
    e.set()
    log.append("set")
    greenlets.append(gw.spawn(late))
    # Make the late greenlet start before the notification runs.
    gw.get_hub().loop.run_callback(lambda: None)
    gw.joinall(greenlets)
    assert log == ["set", 0, 1, "late"]


def test_wake_order_respects_other_queued_callbacks():
    # The notification is queued at set() time: callbacks queued before it
    # run before the waiter, those queued after run after it.
    e = Event()
    log = []

    def waiter():
        e.wait()
        log.append("waiter")

    w = gw.spawn(waiter)
    gw.sleep(0)
    before = gw.spawn(log.append, "before")
    e.set()
    after = gw.spawn(log.append, "after")
    gw.joinall([w, before, after])
    assert log == ["before", "waiter", "after"]


def test_rawlink_callbacks_run_in_the_hub_in_order_and_are_unlinked_first():
    e = Event()
    hub = gw.get_hub()
    log = []

    def cb(i):
        def callback(source):
            assert gw.getcurrent() is hub
            assert source is e
            log.append((i, e.linkcount()))

        return callback

    for i in range(3):
        e.rawlink(cb(i))
    assert e.linkcount() == 3
    e.set()
    gw.sleep(0)
    assert log == [(0, 2), (1, 1), (2, 0)]


def test_rawlink_on_set_event_fires_soon_and_unlink_prevents_calls():
    e = Event()
    e.set()
    log = []
    e.rawlink(log.append)
    assert log == []
    gw.sleep(0)
    assert log == [e]

    e.clear()
    e.rawlink(log.append)
    e.unlink(log.append)
    e.unlink(log.append)  # unlinking twice is harmless
    e.set()
    gw.sleep(0)
    assert log == [e]
    with pytest.raises(TypeError):
        e.rawlink(42)


def test_failing_link_is_reported_and_others_still_run(quiet_hub):
    e = Event()
    log = []

    def bad(source):
        raise ValueError("boom")

    e.rawlink(bad)
    e.rawlink(log.append)
    e.set()
    gw.sleep(0)
    assert log == [e]
    assert "ValueError: boom" in quiet_hub.captured.getvalue()


def test_events_work_with_wait_and_iwait():
    a, b = Event(), Event()
    gw.spawn_later(0.005, b.set)
    assert gw.wait([a, b], count=1) == [b]
    a.set()
    assert set(gw.wait([a, b])) == {a, b}
    assert a.linkcount() == 0 and b.linkcount() == 0


def test_killed_waiter_is_unlinked():
    e = Event()
    g = gw.spawn(e.wait)
    gw.sleep(0)
    assert e.linkcount() == 1
    g.kill()
    assert e.linkcount() == 0
    assert isinstance(g.value, gw.GreenletExit)


def test_outer_timeout_interrupts_wait_and_unlinks():
    e = Event()
    t = Timeout(0.005)
    with pytest.raises(Timeout) as info:
        with t:
            e.wait()
    assert info.value is t
    assert e.linkcount() == 0


def test_wait_from_the_hub_is_an_error():
    e = Event()
    errors = []

    def in_hub():
        try:
            e.wait()
        except BlockingSwitchOutError as ex:
            errors.append(ex)

    gw.get_hub().loop.run_callback(in_hub)
    gw.sleep(0)
    assert len(errors) == 1


def test_waiting_forever_raises_loop_exit():
    if _may_be_woken_by_threads():
        pytest.skip("while other threads live, a parked greenlet keeps the loop alive")
    with pytest.raises(LoopExit):
        Event().wait()


def test_ping_pong_keeps_order_and_lets_timers_run():
    # A long ping-pong between two greenlets must not starve timers (the
    # scheduler yields to the loop regularly).
    e1, e2 = Event(), Event()
    stop = Event()
    counts = [0, 0]

    def ping():
        while not stop.is_set():
            e1.set()
            e2.wait()
            e2.clear()
            counts[0] += 1

    def pong():
        while not stop.is_set():
            e1.wait()
            e1.clear()
            counts[1] += 1
            e2.set()

    stopper = gw.spawn_later(0.02, stop.set)
    a, b = gw.spawn(pong), gw.spawn(ping)
    stopper.join()
    e1.set()
    e2.set()
    gw.joinall([a, b])
    assert counts[0] > 10 and abs(counts[0] - counts[1]) <= 1


def test_many_events_chain_in_order():
    events = [Event() for _ in range(50)]
    log = []

    def link(i):
        events[i].wait()
        log.append(i)
        if i + 1 < len(events):
            events[i + 1].set()

    greenlets = [gw.spawn(link, i) for i in reversed(range(50))]
    gw.sleep(0)
    events[0].set()
    gw.joinall(greenlets)
    assert log == list(range(50))


# --- Event and threads ------------------------------------------------------------


def test_set_from_thread_wakes_waiting_main_greenlet():
    e = Event()

    def setter():
        time.sleep(0.01)
        e.set()

    threads = run_threads([setter])
    # No timer or other greenlet keeps the loop busy: the thread must be
    # able to wake us (no LoopExit).
    assert e.wait() is True
    threads[0].join()


def test_many_threads_set_many_events_nothing_lost():
    events = [Event() for _ in range(40)]
    woken = []

    def waiter(i):
        assert events[i].wait() is True
        woken.append(i)

    greenlets = [gw.spawn(waiter, i) for i in range(40)]
    gw.sleep(0)

    def setter(chunk):
        def run():
            for i in chunk:
                events[i].set()
                time.sleep(0)

        return run

    threads = run_threads([setter(range(k, 40, 4)) for k in range(4)])
    gw.joinall(greenlets, timeout=10)
    join_threads_cooperatively(threads)
    assert sorted(woken) == list(range(40))


def test_repeated_set_clear_from_thread_with_greenlet_waiting_each_round():
    go, done = Event(), Event()
    rounds = 200
    seen = []

    def thread_side():
        for _ in range(rounds):
            assert done.wait(5)
            done.clear()
            go.set()

    def greenlet_side():
        for i in range(rounds):
            done.set()
            assert go.wait(5)
            go.clear()
            seen.append(i)

    threads = run_threads([thread_side])
    gw.spawn(greenlet_side).join(timeout=10)
    join_threads_cooperatively(threads)
    assert seen == list(range(rounds))


def test_thread_can_wait_for_an_event_owned_by_the_hub():
    e = Event()
    g = gw.spawn(e.wait)  # the main thread's hub owns the event from now on
    gw.sleep(0)
    results = []
    threads = run_threads([lambda: results.append(e.wait(5))])
    gw.sleep(0.01)
    e.set()
    g.join()
    join_threads_cooperatively(threads)
    assert results == [True]


def test_thread_wait_on_owned_event_times_out():
    e = Event()
    g = gw.spawn(e.wait)
    gw.sleep(0)
    results = []
    threads = run_threads([lambda: results.append(e.wait(0.01))])
    join_threads_cooperatively(threads)
    assert results == [False]
    e.set()
    g.join()
    assert e.linkcount() == 0


# --- AsyncResult -----------------------------------------------------------------


def test_async_result_value():
    r = AsyncResult()
    assert not r.ready() and not r.successful()
    assert r.value is None and r.exception is None and r.exc_info == ()
    assert "unset" in str(r)
    r.set(100)
    assert r.ready() and r.successful()
    assert r.get() == 100 and r.get_nowait() == 100 and r.wait() == 100
    assert r.value == 100 and r.exception is None
    assert r.result() == 100 and r.done()
    assert r.cancel() is False and r.cancelled() is False


def test_async_result_set_none_is_a_value():
    r = AsyncResult()
    r.set()
    assert r.ready() and r.successful() and r.get() is None


def test_async_result_exception_with_traceback():
    r = AsyncResult()
    try:
        raise RuntimeError("failure")
    except RuntimeError as ex:
        r.set_exception(ex, sys.exc_info())
    assert r.ready() and not r.successful()
    assert isinstance(r.exception, RuntimeError)
    assert r.exc_info[0] is RuntimeError and r.exc_info[2] is not None
    with pytest.raises(RuntimeError, match="failure") as info:
        r.get()
    assert any(
        entry.name == "test_async_result_exception_with_traceback" for entry in info.traceback
    )
    assert r.wait() is None

    r2 = AsyncResult()
    r2.set_exception(KeyError("k"))
    with pytest.raises(KeyError):
        r2.get_nowait()


def test_async_result_get_non_blocking_and_timeout():
    r = AsyncResult()
    with pytest.raises(Timeout):
        r.get_nowait()
    with pytest.raises(Timeout):
        r.get(block=False)
    start = time.monotonic()
    with pytest.raises(Timeout):
        r.get(timeout=0.02)
    assert time.monotonic() - start >= 0.019
    assert r.wait(0.001) is None
    assert r.linkcount() == 0


def test_async_result_wakes_all_waiters_in_order():
    r = AsyncResult()
    log = []

    def getter(i):
        log.append((i, r.get()))

    greenlets = [gw.spawn(getter, i) for i in range(4)]
    waiter = gw.spawn(r.wait)
    gw.sleep(0)
    r.set("v")
    gw.joinall(greenlets + [waiter])
    assert log == [(i, "v") for i in range(4)]
    assert waiter.value == "v"


def test_async_result_as_link_target():
    ok = AsyncResult()
    gw.spawn(lambda: 42).link(ok)
    assert ok.get() == 42

    bad = AsyncResult()
    gw.get_hub().exception_stream = None
    gw.spawn(lambda: 1 / 0).link(bad)
    with pytest.raises(ZeroDivisionError):
        bad.get()
    assert bad.exc_info[0] is ZeroDivisionError


def test_async_result_call_copies_a_source():
    class Source:
        def __init__(self, value=None, exception=None):
            self.value = value
            self.exception = exception

        def successful(self):
            return self.exception is None

    r = AsyncResult()
    r(Source(value=7))
    assert r.get() == 7
    r = AsyncResult()
    r(Source(exception=ValueError("x")))
    with pytest.raises(ValueError):
        r.get()


def test_async_result_set_result_alias_and_result_timeout():
    r = AsyncResult()
    with pytest.raises(Timeout):
        r.result(timeout=0.001)
    r.set_result(3)
    assert r.result() == 3


def test_async_result_set_from_thread():
    results = [AsyncResult() for _ in range(10)]

    def setter():
        for i, r in enumerate(results):
            time.sleep(0.0005)
            if i % 3 == 2:
                r.set_exception(ValueError(i))
            else:
                r.set(i)

    threads = run_threads([setter])
    got = []
    for r in results:
        try:
            got.append(r.get(timeout=5))
        except ValueError as ex:
            got.append(("error", ex.args[0]))
    threads[0].join()
    assert got == [("error", i) if i % 3 == 2 else i for i in range(10)]


def test_thread_gets_an_async_result_set_by_a_greenlet():
    r = AsyncResult()
    g = gw.spawn(r.wait)
    gw.sleep(0)
    results = []
    threads = run_threads([lambda: results.append(r.get(timeout=5))])
    gw.sleep(0.005)
    r.set("from greenlet")
    join_threads_cooperatively(threads)
    g.join()
    assert results == ["from greenlet"]


def test_plain_threads_wait_for_each_other_without_any_hub():
    e = Event()
    results = []
    waiters = [threading.Thread(target=lambda: results.append(e.wait(5))) for _ in range(3)]
    for t in waiters:
        t.start()
    setter = threading.Thread(target=lambda: (time.sleep(0.005), e.set()))
    setter.start()
    for t in waiters + [setter]:
        t.join(timeout=10)
    assert results == [True, True, True]


def test_primitives_outlive_a_destroyed_hub():
    # Module-level objects survive hubs: waiters of a destroyed hub are gone
    # for good, and the next hub adopts the objects.
    e, r = Event(), AsyncResult()
    waiting = [gw.spawn(e.wait), gw.spawn(r.get)]
    gw.sleep(0)
    assert e.linkcount() == 1 and r.linkcount() == 1
    gw.get_hub().destroy(destroy_loop=True)
    del waiting
    e.set()  # the stale links belong to a dead hub: nothing to do
    assert gw.spawn(e.wait).get() is True
    e.clear()
    g = gw.spawn(e.wait)
    gw.sleep(0)
    e.set()
    assert g.get() is True
    g = gw.spawn(r.get)
    gw.sleep(0)
    r.set("late")
    assert g.get() == "late"


def test_idle_raw_threads_do_not_prevent_loop_exit():
    # Thread-pool style workers (started with _thread directly, not
    # threading) do not keep a deadlocked wait alive.
    if threading.active_count() > 1:
        pytest.skip("other threading.Thread objects are alive")
    release = _thread.allocate_lock()
    release.acquire()
    done = _thread.allocate_lock()
    done.acquire()

    def idle_worker():
        release.acquire()
        done.release()

    _thread.start_new_thread(idle_worker, ())
    try:
        with pytest.raises(LoopExit):
            Event().wait()
    finally:
        release.release()
        done.acquire()


@pytest.mark.parametrize(
    "steps, expected",
    [
        (["set"], ["w2", "main"]),
        (["set", "spawn"], ["w2", "f", "main"]),
        (["spawn", "set"], ["f", "w2", "main"]),
        (["spawn"], ["f", "main"]),
    ],
)
def test_greenlet_woken_by_an_event_keeps_gevents_order(steps, expected):
    # The main greenlet is resumed by the scheduler's drain (e1's waiter);
    # what it then makes ready and spawns must run before it continues from
    # sleep(0), in the order it did them: in gevent each set() and spawn()
    # queues a loop callback of its own. (The expected lists are gevent
    # 26's output for the same code.)
    e1, e2 = Event(), Event()
    log = []

    def waiter2():
        e2.wait()
        log.append("w2")

    w2 = gw.spawn(waiter2)
    gw.spawn(e1.set)
    e1.wait()
    for step in steps:
        if step == "set":
            e2.set()
        else:
            gw.spawn(log.append, "f")
    gw.sleep(0)
    log.append("main")
    assert log == expected
    w2.kill()  # still waiting on e2 where no step set it


def test_a_timeout_object_as_timeout_is_started_and_raised_by_get():
    # gevent takes a Timeout wherever it takes seconds: get() raises that object.
    timer = gw.Timeout(0.01)
    with pytest.raises(gw.Timeout) as raised:
        AsyncResult().get(timeout=timer)
    assert raised.value is timer and not timer.pending
    # A wait reports the time-out as it would for seconds.
    timer = gw.Timeout(0.01)
    assert Event().wait(timeout=timer) is False and not timer.pending
    assert AsyncResult().wait(timeout=gw.Timeout(0.01)) is None
    # A Timeout made with its own exception raises that exception.
    with pytest.raises(RuntimeError, match="own"):
        Event().wait(timeout=gw.Timeout(0.01, RuntimeError("own")))


def test_a_timeout_object_is_cancelled_when_the_wait_succeeds():
    event = Event()
    gw.spawn(event.set)
    timer = gw.Timeout(5)
    assert event.wait(timeout=timer) is True
    assert not timer.pending
    # One already started keeps its own deadline and is cancelled after.
    result = AsyncResult()
    gw.spawn(result.set, 42)
    timer = gw.Timeout.start_new(5)
    assert result.get(timeout=timer) == 42 and not timer.pending


def test_getting_a_stored_exception_again_does_not_grow_its_traceback():
    import traceback

    result = AsyncResult()
    result.set_exception(ValueError("stored"))
    lengths = []
    for _ in range(3):
        try:
            result.get()
        except ValueError as exc:
            lengths.append(len(traceback.extract_tb(exc.__traceback__)))
    assert lengths == [lengths[0]] * 3
