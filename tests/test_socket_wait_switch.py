"""A socket's watcher reuses the bound ``switch`` of the greenlet that waited
on it last.  These tests check the reuse never points a wait at the wrong
greenlet (a close from another greenlet must wake the one waiting now) and
never keeps a finished greenlet once the socket is gone.
"""

import gc
import weakref

import pytest

import greenwheel
from greenwheel import socket as gsocket


def test_close_wakes_the_greenlet_waiting_now_not_the_one_before():
    a, b = gsocket.socketpair()
    try:
        # The first greenlet waits on `a`, is woken by data, and finishes.
        first = greenwheel.spawn(a.recv, 10)
        greenwheel.sleep(0.01)
        b.sendall(b"one")
        assert first.get(timeout=10) == b"one"
        # A second greenlet waits on the same socket and watcher.
        errors = []

        def second():
            try:
                a.recv(10)
            except OSError as err:
                errors.append(err)

        glet = greenwheel.spawn(second)
        greenwheel.sleep(0.01)
        assert not glet.dead
        a.close()  # must throw into the waiting greenlet, not the finished one
        glet.join(timeout=10)
        assert glet.dead, "the waiting greenlet was not woken by close()"
        assert len(errors) == 1, errors
    finally:
        a.close()
        b.close()


def test_timeout_after_another_greenlet_waited():
    a, b = gsocket.socketpair()
    try:
        first = greenwheel.spawn(a.recv, 10)
        greenwheel.sleep(0.01)
        b.sendall(b"one")
        assert first.get(timeout=10) == b"one"
        a.settimeout(0.05)
        second = greenwheel.spawn(a.recv, 10)
        with pytest.raises(gsocket.timeout):
            second.get(timeout=10)
    finally:
        a.close()
        b.close()


def test_finished_greenlet_not_kept_after_the_socket_closes():
    a, b = gsocket.socketpair()
    glet = greenwheel.spawn(a.recv, 10)
    greenwheel.sleep(0.01)
    b.sendall(b"x")
    assert glet.get(timeout=10) == b"x"
    ref = weakref.ref(glet)
    del glet
    a.close()
    b.close()
    del a, b
    greenwheel.sleep(0)
    gc.collect()
    assert ref() is None, gc.get_referrers(ref())
