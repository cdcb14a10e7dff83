"""Timeout and with_timeout."""

import math
import re
import time

import pytest

import greenwheel as gw
from greenwheel import Timeout


def test_timeout_raises_itself():
    t = Timeout(0.01)
    t.start()
    start = time.monotonic()
    try:
        with pytest.raises(Timeout) as info:
            gw.sleep(10)
        assert info.value is t
        assert time.monotonic() - start >= 0.01
    finally:
        t.close()


def test_context_manager_and_pending():
    with Timeout(0.01) as t:
        assert t.pending
        gw.sleep(0)
    assert not t.pending

    with pytest.raises(Timeout):
        with Timeout(0.005):
            gw.sleep(1)


def test_exception_false_leaves_block_silently():
    reached = []
    with Timeout(0.005, False):
        gw.sleep(1)
        reached.append("no")
    assert reached == []


def test_exception_class_and_instance():
    with pytest.raises(KeyError):
        with Timeout(0.001, KeyError):
            gw.sleep(1)
    err = ValueError("custom")
    with pytest.raises(ValueError) as info:
        with Timeout(0.001, err):
            gw.sleep(1)
    assert info.value is err


def test_string_exception_raises_timeout_with_message():
    with pytest.raises(Timeout) as info:
        with Timeout(0.001, "too slow"):
            gw.sleep(1)
    assert str(info.value) == "0.001 seconds: too slow"


def test_none_seconds_never_fires():
    t = Timeout()
    t.start()
    assert not t.pending
    gw.sleep(0.005)
    t.cancel()
    with Timeout(None):
        gw.sleep(0.001)
    assert str(Timeout()) == ""


def test_cancel_and_restart():
    t = Timeout(0.005)
    t.start()
    with pytest.raises(AssertionError):
        t.start()
    t.cancel()
    assert not t.pending
    gw.sleep(0.01)  # cancelled: nothing raised
    t.start()
    with pytest.raises(Timeout):
        gw.sleep(1)
    t.close()
    with pytest.raises(AssertionError):
        t.start()  # closed for good


def test_nested_inner_fires_first_outer_untouched():
    with Timeout(0.2) as outer:
        with pytest.raises(Timeout) as info:
            with Timeout(0.005) as inner:
                gw.sleep(1)
        assert info.value is inner
        assert outer.pending
    assert not outer.pending


def test_nested_outer_fires_through_inner():
    with pytest.raises(Timeout) as info:
        with Timeout(0.005) as outer:
            with Timeout(1):
                gw.sleep(2)
    assert info.value is outer


def test_timeout_only_affects_its_greenlet():
    log = []

    def other():
        gw.sleep(0.02)
        log.append("other done")

    g = gw.spawn(other)
    with pytest.raises(Timeout):
        with Timeout(0.005):
            gw.sleep(1)
    g.join()
    assert log == ["other done"]


def test_timeout_of_dead_greenlet_is_harmless(quiet_hub):
    def forgets():
        Timeout(0.001).start()

    gw.spawn(forgets).join()
    gw.sleep(0.01)
    assert quiet_hub.captured.getvalue() == ""


def test_start_new():
    t = Timeout.start_new(0.005)
    assert t.pending
    t.cancel()
    again = Timeout.start_new(t)
    assert again is t and t.pending
    assert Timeout.start_new(t) is t
    t.close()
    custom = Timeout.start_new(0.001, KeyError)
    with pytest.raises(KeyError):
        gw.sleep(1)
    custom.close()


@pytest.mark.parametrize("bad", ["1", [1], object()])
def test_bad_seconds_type(bad):
    with pytest.raises(TypeError):
        Timeout(bad)


def test_nan_seconds():
    with pytest.raises(ValueError):
        Timeout(math.nan)


def test_zero_and_negative_fire_at_next_yield():
    for seconds in (0, -1):
        with pytest.raises(Timeout):
            with Timeout(seconds):
                gw.sleep(0.01)


def test_str_and_repr_like_gevent():
    assert str(Timeout(1)) == "1 second"
    assert str(Timeout(2)) == "2 seconds"
    assert str(Timeout(0.5, False)) == "0.5 seconds (silent)"
    assert str(Timeout(3, KeyError)) == "3 seconds: <class 'KeyError'>"
    t = Timeout(5)
    assert re.fullmatch(r"<Timeout at 0x[0-9a-f]+ seconds=5>", repr(t))
    t.start()
    assert re.fullmatch(r"<Timeout at 0x[0-9a-f]+ seconds=5 pending>", repr(t))
    t.close()
    assert re.fullmatch(
        r"<Timeout at 0x[0-9a-f]+ seconds=1 exception=<class 'KeyError'>>",
        repr(Timeout(1, KeyError)),
    )
    assert Timeout(1).args == ()


def test_timeout_is_base_exception_not_exception():
    caught = []
    try:
        with Timeout(0.001):
            try:
                gw.sleep(1)
            except Exception:  # must not swallow a Timeout
                caught.append("wrong")
    except Timeout:
        caught.append("right")
    assert caught == ["right"]


def test_ordering():
    assert Timeout(1) < 2
    assert Timeout(1) < Timeout(2)
    assert not Timeout(3) < Timeout(2)


def test_with_timeout():
    assert gw.with_timeout(1, lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(Timeout):
        gw.with_timeout(0.001, gw.sleep, 1)
    assert gw.with_timeout(0.001, gw.sleep, 1, timeout_value="late") == "late"
    assert gw.with_timeout(0.001, gw.sleep, 1, timeout_value=None) is None


def test_with_timeout_does_not_swallow_other_timeouts():
    with pytest.raises(Timeout) as info:
        with Timeout(0.001) as outer:
            gw.with_timeout(1, gw.sleep, 2, timeout_value="nope")
    assert info.value is outer


def test_timeout_ref_false_does_not_keep_loop_alive():
    t = Timeout(10, ref=False)
    t.start()
    try:
        with pytest.raises(gw.LoopExit):
            gw.Greenlet(lambda: None).join()
    finally:
        t.close()


def test_timeout_interrupts_join_and_waiter():
    g = gw.spawn(gw.sleep, 10)
    with pytest.raises(Timeout):
        with Timeout(0.002):
            g.join()
    assert not g.ready()
    g.kill()


def test_subclass_init_sets_its_own_arguments():
    # A subclass whose constructor takes other arguments and passes its own
    # to Timeout.__init__ (gevent's test helpers do this): they take effect.
    class Limited(gw.Timeout):
        def __init__(self, seconds, label):
            gw.Timeout.__init__(self, seconds, "limit: %s" % (label,), ref=False)

    timer = Limited(5, "x")
    assert timer.seconds == 5 and timer.exception == "limit: x"
    assert timer.args == ()
    # ref=False took effect: started, it does not keep the loop running.
    timer.start()
    try:
        assert gw.get_hub().join(timeout=2) is True
    finally:
        timer.close()
    with pytest.raises(TypeError, match="must be a number"):
        Limited("soon", "y")


def test_subclass_without_init_keeps_constructor_arguments():
    class Plain(gw.Timeout):
        pass

    error = ValueError("e")
    timer = Plain(0.01, error)
    assert timer.seconds == 0.01 and timer.exception is error
    with pytest.raises(ValueError) as raised, timer:
        gw.sleep(1)
    assert raised.value is error


def test_the_examples_in_the_timeout_module_docstring():
    import doctest

    from greenwheel import _timeout

    failures, tried = doctest.testmod(_timeout)
    assert tried >= 3 and failures == 0
