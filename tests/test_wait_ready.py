"""wait()/joinall() on objects that are already ready return at once, without a
trip through the loop: a ``Timeout(0)`` around them does not fire (gevent's
test__queue TestChannel.test_zero_max_size relies on it)."""

import greenwheel as gw
from greenwheel.event import AsyncResult, Event


def test_joinall_of_finished_greenlets_needs_no_switch():
    first, second = gw.spawn(lambda: 1), gw.spawn(lambda: 2)
    gw.joinall([first, second])
    with gw.Timeout(0):  # any switch to the hub would raise it
        assert gw.joinall([first, second]) == [first, second]


def test_wait_on_ready_events_returns_them_in_order():
    event, result = Event(), AsyncResult()
    event.set()
    result.set("value")
    with gw.Timeout(0):
        assert gw.wait([result, event]) == [result, event]
        assert gw.wait([result, event], count=1) == [result]


def test_wait_still_blocks_for_objects_not_ready():
    ready, later = Event(), Event()
    ready.set()
    gw.spawn_later(0.01, later.set)
    assert gw.wait([ready, later], timeout=5) == [ready, later]
    pending = Event()
    assert gw.wait([ready, pending], timeout=0.01) == [ready]  # timed out: the ready one
