"""The hub: one per thread, loop driving, sleep/idle, Waiter, errors, LoopExit."""

import math
import os
import signal
import sys
import threading
import time

import greenlet
import pytest

import greenwheel as gw
from _hubs import destroy_hub
from greenwheel import _core
from greenwheel.exceptions import BlockingSwitchOutError, ConcurrentObjectUseError
from greenwheel.hub import Waiter

# --- the hub object ----------------------------------------------------------


def test_one_hub_per_thread(hub):
    assert gw.get_hub() is hub
    assert isinstance(hub, gw.Hub)
    assert isinstance(hub.loop, _core.Loop)
    assert hub.loop.error_handler is hub
    assert hub.loop.default
    assert hub.main_hub
    # The hub's parent is the thread's main greenlet.
    assert hub.parent is greenlet.getcurrent()

    seen = {}

    def in_thread():
        other = gw.get_hub()
        seen["hub"] = other
        seen["default"] = other.loop.default
        seen["main_hub"] = other.main_hub
        g = gw.spawn(lambda: 42)
        seen["value"] = g.get()
        other.destroy()

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert seen["hub"] is not hub
    assert seen["default"] is False
    assert seen["main_hub"] is False
    assert seen["value"] == 42


def test_hub_first_used_inside_a_raw_greenlet_still_parents_to_main():
    main = greenlet.getcurrent()
    got = greenlet.greenlet(gw.get_hub).switch()
    assert got.parent is main


def test_hub_repr_and_destroy():
    hub = gw.get_hub()
    text = repr(hub)
    assert text.startswith("<Hub '' at 0x") and "thread_ident=" in text
    gw.sleep(0.001)
    hub.destroy(destroy_loop=True)
    assert hub.loop is None
    assert "destroyed" in repr(hub)
    new = gw.get_hub()
    assert new is not hub
    # Everything works on the new hub.
    assert gw.spawn(lambda: 5).get() == 5


def test_destroy_keeps_default_loop_for_next_hub():
    hub = gw.get_hub()
    loop = hub.loop
    hub.destroy()  # default loop is kept
    new = gw.get_hub()
    assert new.loop is loop
    gw.sleep(0.001)


def test_destroy_while_greenlets_are_blocked():
    g = gw.spawn(gw.sleep, 100)
    gw.sleep(0)
    gw.get_hub().destroy(destroy_loop=True)
    assert gw.spawn(lambda: 1).get() == 1
    del g


def test_wakeup_fd_installed_for_main_hub():
    loop_cls_has_sigfd = hasattr(_core.Loop, "sigfd")
    if not loop_cls_has_sigfd:
        pytest.skip("stand-in loop has no sigfd")
    destroy_hub()
    previous = signal.set_wakeup_fd(-1)
    try:
        hub = gw.get_hub()
        assert signal.set_wakeup_fd(-1) == hub.loop.sigfd
        signal.set_wakeup_fd(hub.loop.sigfd)
        hub.destroy(destroy_loop=True)
        # The destroyed loop's fd is removed again.
        assert signal.set_wakeup_fd(-1) == -1
        # A foreign wake-up fd is respected.
        r, w = os.pipe()
        os.set_blocking(w, False)
        try:
            signal.set_wakeup_fd(w)
            gw.get_hub()
            assert signal.set_wakeup_fd(-1) == w
        finally:
            os.close(r)
            os.close(w)
    finally:
        signal.set_wakeup_fd(previous)


# --- sleep ----------------------------------------------------------------------


def test_sleep_zero_runs_every_ready_greenlet_once():
    log = []

    def worker(name):
        for i in range(3):
            log.append((name, i))
            gw.sleep(0)

    gw.spawn(worker, "a")
    gw.spawn(worker, "b")
    gw.sleep(0)
    assert log == [("a", 0), ("b", 0)]
    gw.sleep(0)
    assert log == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]


@pytest.mark.parametrize("seconds", [0.001, 0.01, 0.03])
def test_sleep_never_wakes_early(seconds):
    for _ in range(3):
        before = time.monotonic()
        gw.sleep(seconds)
        assert time.monotonic() - before >= seconds


def test_negative_sleep_is_a_yield():
    log = []
    gw.spawn(log.append, 1)
    gw.sleep(-5)
    assert log == [1]


@pytest.mark.parametrize("bad", ["1", None, object(), [1]])
def test_sleep_rejects_non_numbers(bad):
    with pytest.raises(TypeError):
        gw.sleep(bad)


def test_sleep_rejects_nan():
    with pytest.raises(ValueError):
        gw.sleep(math.nan)


def test_sleep_accepts_number_like_values():
    from fractions import Fraction

    gw.sleep(Fraction(1, 1000))
    gw.sleep(True and 0.001)


def test_sleep_unref_does_not_keep_loop_alive():
    with pytest.raises(gw.LoopExit):
        gw.sleep(10, ref=False)


def test_sleep_ended_by_loop_exit_releases_its_wakeup_at_once():
    # The loop has returned when LoopExit reaches the sleeper, so no PyO3
    # call is in progress on this thread: the withdrawn wake-up's reference
    # to the greenlet must still be released right away, not queued in
    # PyO3's deferred-decref pool until some later call.
    me = greenlet.getcurrent()
    gw.sleep(0)
    before = sys.getrefcount(me)
    with pytest.raises(gw.LoopExit):
        gw.sleep(10, ref=False)
    assert sys.getrefcount(me) == before


def test_sleep_interrupted_by_kill_does_not_leave_stray_wakeups():
    log = []

    def sleeper():
        try:
            gw.sleep(0)
            gw.sleep(10)
        except gw.GreenletExit:
            log.append("killed")
            # A stray resume of the first sleep would cut this one short.
            before = time.monotonic()
            gw.sleep(0.02)
            log.append(time.monotonic() - before >= 0.02)

    g = gw.spawn(sleeper)
    gw.sleep(0)
    g.kill(block=True)
    g.join()
    assert log == ["killed", True]


def test_blocking_inside_the_hub_is_an_error(quiet_hub):
    errors = []

    def callback():
        try:
            gw.sleep(0)
        except BlockingSwitchOutError as ex:
            errors.append(ex)

    quiet_hub.loop.run_callback(callback)
    gw.sleep(0.001)
    assert len(errors) == 1


# --- idle -------------------------------------------------------------------------


def test_idle_waits_for_other_callbacks():
    log = []

    def busy():
        for i in range(3):
            log.append(i)
            gw.sleep(0)

    gw.spawn(busy)
    gw.idle()
    log.append("idle")
    gw.sleep(0.001)
    assert log.index("idle") >= 1
    assert sorted(x for x in log if x != "idle") == [0, 1, 2]


# --- LoopExit -------------------------------------------------------------------


def test_loop_exit_when_nothing_can_wake_us():
    g = gw.Greenlet(lambda: None)  # never started
    with pytest.raises(gw.LoopExit) as info:
        g.join()
    assert "This operation would block forever" in str(info.value)
    assert info.value.hub is gw.get_hub()


def test_loop_exit_is_recoverable():
    w = Waiter()
    with pytest.raises(gw.LoopExit):
        w.get()
    # The hub survives and keeps working.
    assert gw.spawn(lambda: "ok").get() == "ok"
    gw.sleep(0.001)


def test_loop_exit_reaches_main_when_a_greenlet_blocks_forever():
    def blocked():
        Waiter().get()

    g = gw.spawn(blocked)
    with pytest.raises(gw.LoopExit):
        g.join()
    # Blocked forever by design; the test ends it.
    g.kill()
    assert g.dead


# --- Waiter ---------------------------------------------------------------------


def test_waiter_value_stored_before_get():
    hub = gw.get_hub()
    w = Waiter()
    assert not w.ready() and not w.successful() and w.exc_info is None
    hub.loop.run_callback(w.switch, "early")
    gw.sleep(0)
    assert w.ready() and w.successful() and w.value == "early"
    assert w.get() == "early"
    assert "value='early'" in str(w)
    w.clear()
    assert not w.ready()


def test_waiter_get_blocks_until_switch():
    hub = gw.get_hub()
    w = Waiter()
    timer = hub.loop.timer(0.01)
    timer.start(w.switch, "hello")
    try:
        assert w.get() == "hello"
    finally:
        timer.close()


def test_waiter_throw():
    hub = gw.get_hub()
    w = Waiter()
    hub.loop.run_callback(w.throw, KeyError, KeyError("k"), None)
    with pytest.raises(KeyError):
        w.get()

    stored = Waiter()
    hub.loop.run_callback(stored.throw, ValueError)
    gw.sleep(0)
    assert stored.ready() and not stored.successful()
    assert stored.exc_info == (ValueError,)
    with pytest.raises(ValueError):
        stored.get()


def test_waiter_only_switchable_from_hub():
    w = Waiter()

    def waiting():
        return w.get()

    g = gw.spawn(waiting)
    gw.sleep(0)
    with pytest.raises(AssertionError):
        w.switch(1)
    gw.get_hub().loop.run_callback(w.switch, 2)
    assert g.get() == 2


def test_waiter_single_user():
    w = Waiter()
    g = gw.spawn(w.get)
    gw.sleep(0)
    with pytest.raises(ConcurrentObjectUseError):
        w.get()
    gw.get_hub().loop.run_callback(w.switch, None)
    g.join()


def test_hub_wait_on_watcher():
    hub = gw.get_hub()
    timer = hub.loop.timer(0.005)
    before = time.monotonic()
    hub.wait(timer)
    assert time.monotonic() - before >= 0.004
    assert not timer.active
    timer.close()


# --- hub.join / wait ------------------------------------------------------------------


def test_hub_join_returns_true_when_everything_is_done():
    log = []
    gw.spawn(lambda: (gw.sleep(0.005), log.append(1)))
    assert gw.get_hub().join() is True
    assert log == [1]
    assert gw.wait() is True


def test_hub_join_timeout():
    sleeper = gw.spawn(gw.sleep, 10)
    assert gw.get_hub().join(timeout=0.01) is False
    assert gw.wait(timeout=0.01) is False
    sleeper.kill()


def test_wait_and_iwait_order_count_timeout():
    a = gw.spawn(gw.sleep, 0.03)
    b = gw.spawn(gw.sleep, 0.001)
    c = gw.spawn(gw.sleep, 0.015)
    assert list(gw.iwait([a, b, c])) == [b, c, a]

    d = gw.spawn(gw.sleep, 0.02)
    e = gw.spawn(lambda: None)
    assert gw.wait([d, e], count=1) == [e]
    assert gw.wait([d], timeout=0.001) == []
    assert gw.wait([d]) == [d]
    sleeper = gw.spawn(gw.sleep, 10)
    with gw.iwait([sleeper], timeout=0.001) as it:
        assert list(it) == []
    sleeper.kill()


# --- error handling -----------------------------------------------------------------


def test_handle_error_prints_traceback_and_context(quiet_hub):
    def broken():
        raise RuntimeError("boom")

    quiet_hub.loop.run_callback(broken)
    gw.sleep(0.001)
    out = quiet_hub.captured.getvalue()
    assert "RuntimeError: boom" in out
    assert "Traceback" in out
    assert "failed with RuntimeError" in out


def test_handle_error_defaults_to_current_stderr(capsys):
    gw.spawn(lambda: 1 / 0).join()
    err = capsys.readouterr().err
    assert "ZeroDivisionError" in err
    assert "failed with ZeroDivisionError" in err


def test_system_exit_from_callback_goes_to_main(quiet_hub):
    def exit_now():
        raise SystemExit(3)

    quiet_hub.loop.run_callback(exit_now)
    with pytest.raises(SystemExit) as info:
        gw.sleep(0.01)
    assert info.value.code == 3
    # SystemExit is not printed (NOT_ERROR), the hub keeps working.
    assert "SystemExit" not in quiet_hub.captured.getvalue()
    gw.sleep(0.001)


def test_keyboard_interrupt_in_greenlet_goes_to_main(quiet_hub):
    def interrupted():
        raise KeyboardInterrupt

    g = gw.spawn(interrupted)
    with pytest.raises(KeyboardInterrupt):
        gw.sleep(0.01)
    g.join()
    assert isinstance(g.exception, KeyboardInterrupt)
    assert "KeyboardInterrupt" in quiet_hub.captured.getvalue()


def test_exception_stream_can_be_silenced(hub, capsys):
    hub.exception_stream = None
    assert hub.exception_stream is not None  # back to the default
    hub.exception_stream = False
    gw.spawn(lambda: 1 / 0).join()
    assert capsys.readouterr().err == ""


# --- spawn_raw / kill / reinit --------------------------------------------------------------


def test_spawn_raw():
    log = []
    g = gw.spawn_raw(lambda *a, **k: log.append((a, k)), 1, 2, x=3)
    assert isinstance(g, greenlet.greenlet) and not isinstance(g, gw.Greenlet)
    h = gw.spawn_raw(log.append, "plain")
    gw.sleep(0)
    assert log == [((1, 2), {"x": 3}), "plain"]
    assert g.dead and h.dead
    with pytest.raises(TypeError):
        gw.spawn_raw("not callable")


def test_kill_function_for_raw_and_full_greenlets():
    log = []

    def victim():
        try:
            gw.sleep(10)
        except gw.GreenletExit:
            log.append("raw killed")

    raw = gw.spawn_raw(victim)
    full = gw.spawn(gw.sleep, 10)
    gw.sleep(0)
    gw.kill(raw)
    gw.kill(full)
    full.join()
    gw.sleep(0)
    assert log == ["raw killed"]
    assert raw.dead and full.dead and full.successful()
    gw.kill(raw)  # dead: no-op


def test_reinit_is_harmless():
    gw.reinit()
    gw.sleep(0.001)
    destroy_hub()
    gw.reinit()  # no hub: no-op


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_hub_usable_in_forked_child():
    gw.spawn(gw.sleep, 0.001).join()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            start = time.monotonic()
            results = [
                g.get() for g in [gw.spawn(lambda n: (gw.sleep(0.01), n)[1], i) for i in range(3)]
            ]
            if results == [0, 1, 2] and time.monotonic() - start >= 0.01:
                code = 0
        finally:
            os.write(w, bytes([code]))
            os._exit(code)
    os.close(w)
    try:
        status = os.read(r, 1)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert status == b"\x00"


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs POSIX signals")
def test_python_signal_handler_exception_reaches_main_and_hub_survives(quiet_hub):
    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        timer = threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGUSR1))
        timer.start()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            gw.sleep(5)
        # Delivered promptly, not when the 5 s sleep would have ended.
        assert time.monotonic() - start < 4
        timer.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert gw.spawn(lambda: "alive").get() == "alive"


def test_sleep_argument_errors_are_type_errors():
    with pytest.raises(TypeError, match="at most 2 arguments"):
        gw.sleep(0, True, 1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'secs'"):
        gw.sleep(secs=1)
    with pytest.raises(TypeError, match="multiple values for argument 'seconds'"):
        gw.sleep(0, seconds=0)
    with pytest.raises(TypeError, match="'ref' must be a bool"):
        gw.sleep(0, ref=1)
    # Keywords in any order, as the signature says.
    gw.sleep(ref=True, seconds=0.001)
    assert gw.sleep.__text_signature__ == "(seconds=0, ref=True)"


def test_a_handle_error_that_raises_does_not_stop_the_hub(capfd):
    # A buggy custom handle_error: the failing greenlet's waiters still get its
    # exception, the handler's own error is printed, and the hub keeps running.
    hub = gw.get_hub()

    def bad_handle_error(*args):
        raise AttributeError("the handler is broken")

    class Boom(Exception):
        pass

    def raises():
        raise Boom

    hub.handle_error = bad_handle_error
    try:
        with pytest.raises(Boom):
            gw.spawn(raises).get()
    finally:
        del hub.handle_error
    assert gw.spawn(lambda: 42).get() == 42
    err = capfd.readouterr().err
    assert "Exception while handling another error" in err
    assert "AttributeError: the handler is broken" in err


def test_threadpool_and_resolver_attributes_as_gevent_has_them():
    from greenwheel.threadpool import ThreadPool

    hub = gw.hub.Hub(default=False)
    try:
        assert hub._threadpool is None  # not used yet
        shared = hub.threadpool  # the process-wide pool serves hubs with the defaults
        assert hub._threadpool is shared
        own = ThreadPool(1, hub=hub)
        try:
            hub.threadpool = own
            assert hub._threadpool is own and hub.threadpool is own
            del hub.threadpool
            assert hub._threadpool is None and hub.threadpool is shared
        finally:
            own.kill()
    finally:
        hub.destroy(destroy_loop=True)
    assert shared.apply(sum, ((1, 2),)) == 3  # the shared pool survives a hub's destroy()


def test_destroy_releases_the_resolver_and_keeps_repr_working():
    hub = gw.hub.Hub(default=False)
    try:
        assert hub.resolver is not None and hub.threadpool is not None
    finally:
        hub.destroy(destroy_loop=True)
    assert hub._resolver is None and hub._threadpool is None
    assert "destroyed" in repr(hub)


def test_deleting_exception_stream_restores_stderr(capsys):
    hub = gw.get_hub()
    hub.exception_stream = None  # silenced
    assert not hub.exception_stream
    del hub.exception_stream
    assert hub.exception_stream is sys.stderr


def test_an_unwritable_exception_stream_does_not_break_error_reporting():
    # A greenlet fails while the stream raises on write: its waiters still get
    # the exception and the hub keeps running.
    class Broken:
        def write(self, text):
            raise OSError("stream is gone")

    hub = gw.get_hub()
    hub.exception_stream = Broken()
    try:
        failing = gw.spawn(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failing.get()
        assert gw.spawn(lambda: "still running").get() == "still running"
    finally:
        del hub.exception_stream
