"""What a parked greenlet costs, against a bare greenlet.greenlet parked the same way.

The cost of a greenlet parked in ``sleep()`` is its objects plus the slice of
C stack greenlet copies to the heap while it is parked. Both are measured
here in exact bytes (tracemalloc sees greenlet's stack copies), so the
comparison is deterministic; benches/parked_memory.py measures the RSS.
"""

from __future__ import annotations

import gc
import tracemalloc

import greenlet
import pytest

import greenwheel as gw
from greenwheel import Greenlet
from greenwheel import socket as gsocket

N = 200


def _park_bare(n):
    main = greenlet.getcurrent()
    parked = [0]

    def park():
        parked[0] += 1
        main.switch()

    glets = [greenlet.greenlet(park) for _ in range(n)]
    for glet in glets:
        glet.switch()
    assert parked[0] == n
    return glets


def _park_greenwheel(n, spawn=gw.spawn):
    parked = [0]

    def park():
        parked[0] += 1
        gw.sleep(60)

    glets = [spawn(park) for _ in range(n)]
    while parked[0] < n:
        gw.sleep(0)
    return glets


def _measure(park):
    """(traced bytes per greenlet, mean C-stack bytes saved, all parked) for N parked by *park*."""
    warm = park(10)  # warm-up: one-time costs are not the greenlets'
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        glets = park(N)
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # The last one may still own the live stack (nothing ran over it since).
    stack = sum(g._stack_saved for g in glets[:-1]) / (N - 1)
    return traced / N, stack, warm + glets


def test_parked_greenlet_costs_little_more_than_a_bare_greenlet():
    bare_bytes, bare_stack, bare = _measure(_park_bare)
    gw_bytes, gw_stack, parked = _measure(_park_greenwheel)
    try:
        numbers = (
            "greenwheel spawn+sleep: %.0f B traced, %.0f B of C stack; "
            "bare greenlet: %.0f B traced, %.0f B of C stack"
            % (gw_bytes, gw_stack, bare_bytes, bare_stack)
        )
        print(numbers)
        # Before the sleep and Greenlet.run frames were slimmed, the stack
        # slice was 1,712 B more than the bare greenlet's and the whole
        # greenlet 1,936 B more; now about 200 and 350.
        assert gw_stack <= bare_stack + 512, numbers
        assert gw_bytes <= bare_bytes + 700, numbers
    finally:
        gw.killall(parked)
        for glet in bare:
            glet.throw()
    assert all(g.dead for g in parked + bare)


def test_spawn_raw_parked_in_sleep_has_a_bare_greenlets_stack():
    bare_bytes, bare_stack, bare = _measure(_park_bare)
    raw_bytes, raw_stack, parked = _measure(lambda n: _park_greenwheel(n, gw.spawn_raw))
    try:
        numbers = "spawn_raw+sleep: %.0f B of C stack; bare greenlet: %.0f B" % (
            raw_stack,
            bare_stack,
        )
        print(numbers)
        # Was 1,120 B more (sleep's own frames).
        assert raw_stack <= bare_stack + 256, numbers
    finally:
        gw.killall(parked)
        for glet in bare:
            glet.throw()
    assert all(g.dead for g in parked + bare)


# --- the API the savings must keep ----------------------------------------


def _echo(*args, **kwargs):
    return args, kwargs


def test_kwargs_is_a_dict_even_when_none_were_passed_and_is_used_if_filled_in():
    g = Greenlet(_echo, 1)
    assert g.kwargs == {}
    g.kwargs["k"] = 2
    g.start()
    assert g.get() == ((1,), {"k": 2})
    assert g.kwargs == {} and g.args == ()


def test_the_kwargs_dict_passed_is_emptied_when_the_greenlet_ends():
    g = gw.spawn(_echo, k=1)
    kwargs = g.kwargs
    assert kwargs == {"k": 1}
    assert g.get() == ((), {"k": 1})
    # gevent's behaviour: the same dict, emptied (the arguments are released).
    assert g.kwargs is kwargs and kwargs == {}


def test_repr_shows_the_keyword_arguments():
    assert "_echo(1, k=2)" in repr(Greenlet(_echo, 1, k=2))
    g = Greenlet(_echo, 1)
    assert repr(g).endswith(": _echo(1)>")


def test_a_subclass_run_can_call_the_base_run_both_ways():
    seen = []

    class Explicit(Greenlet):
        def run(self):
            seen.append("explicit")
            Greenlet.run(self)

    class Super(Greenlet):
        def run(self):
            seen.append("super")
            super().run()

    assert Explicit.spawn(_echo, 1).get() == ((1,), {})
    assert Super.spawn(_echo, k=2).get() == ((), {"k": 2})
    assert seen == ["explicit", "super"]


def test_calling_run_from_elsewhere_raises_instead_of_running_the_wrong_greenlet():
    g = Greenlet(_echo, 1)
    # From the main greenlet: there is no greenlet being started.
    with pytest.raises(TypeError, match="use start"):
        g.run()
    assert not g.ready()

    def inside():
        # From a running Greenlet: would otherwise run this one again.
        with pytest.raises(TypeError, match="use start"):
            g.run()
        return "ok"

    assert gw.spawn(inside).get() == "ok"
    with pytest.raises(TypeError, match="expects a Greenlet"):
        Greenlet.run(42)
    with pytest.raises(TypeError, match="at most 1 argument"):
        Greenlet.run(g, g)
    g.start()
    assert g.get() == ((1,), {})


def _hub_stack_saved_while_resumed(wait):
    """``hub._stack_saved`` seen by a greenlet right after *wait* returns in it."""
    seen = []

    def waiter():
        wait()
        seen.append(gw.get_hub()._stack_saved)

    glet = gw.spawn(waiter)
    gw.sleep(0)  # it starts, and parks in `wait`
    return glet, seen


def test_a_greenlet_woken_by_io_or_a_timer_copies_none_of_the_hubs_stack():
    # greenlet copies to the heap, and back, whatever part of the hub's stack
    # lies below the base of the greenlet it switches into. Greenlets start
    # from run_callbacks but are woken from the loop pass's I/O and timer
    # dispatch, deeper down; the loop starts them below a pad so that those
    # wake-ups copy nothing (a StreamServer handler had 1,368 bytes copied
    # out and back per request).
    a, b = gsocket.socketpair()
    try:
        by_io, io_seen = _hub_stack_saved_while_resumed(lambda: a.recv(10))
        by_timer, timer_seen = _hub_stack_saved_while_resumed(lambda: gw.sleep(0.001))
        b.sendall(b"x")
        gw.joinall([by_io, by_timer], timeout=10, raise_error=True)
        assert io_seen == [0]
        assert timer_seen == [0]
    finally:
        a.close()
        b.close()
