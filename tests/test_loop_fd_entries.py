"""The loop's table of fd watchers keeps an fd's entry after its last watcher
stops (a socket stops and restarts its watcher on every wait) and drops it
when the fd is closed through ``Loop.closing_fd``.  These tests drive a raw
``Loop`` through the cases where a kept entry could be stale: an edge for an
fd whose watchers all stopped, an fd number closed without ``closing_fd``
and handed to a new socket, and one fd with several watchers.
"""

import socket
import time

import pytest

from greenwheel._core import READ, WRITE, Loop

WAIT = 10.0


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.destroy()


def run_until(loop, predicate):
    deadline = time.monotonic() + WAIT
    guard = loop.timer(0.05, 0.05)
    guard.start(lambda: None)
    try:
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached"
            loop.run(once=True)
    finally:
        guard.stop()


def test_edge_for_fd_whose_watchers_stopped_wakes_nobody(loop):
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        calls = []
        w = loop.io(a.fileno(), READ)
        w.start(lambda: calls.append(a.recv(10)))
        b.send(b"one")
        run_until(loop, lambda: calls)
        w.stop()
        # The kernel registration stays (stopping is lazy): this edge reaches
        # the loop for an fd whose entry holds no watcher.
        b.send(b"two")
        for _ in range(3):
            loop.run(nowait=True)
        assert calls == [b"one"]
        assert loop.activecnt == 0
        # The same watcher started again sees the bytes still queued.
        w.start(lambda: calls.append(a.recv(10)))
        run_until(loop, lambda: len(calls) == 2)
        assert calls == [b"one", b"two"]
        w.stop()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("announce", [True, False], ids=["closing_fd", "plain_close"])
def test_fd_number_reused_by_a_new_socket(loop, announce):
    a, b = socket.socketpair()
    fd = a.fileno()
    w = loop.io(fd, READ)
    w.start(lambda: None)
    w.stop()
    if announce:
        assert loop.closing_fd(fd) is False
    a.close()
    b.close()
    # Find a new socket on the old number (the kernel hands out the lowest
    # free one, so this is the next socket or one soon after).
    held = []
    try:
        for _ in range(64):
            c, d = socket.socketpair()
            if c.fileno() == fd or d.fileno() == fd:
                break
            held += [c, d]
        else:
            pytest.skip("fd %d was not reused" % fd)
        if d.fileno() == fd:
            c, d = d, c
        c.setblocking(False)
        got = []
        w2 = loop.io(fd, READ)
        w2.start(lambda: got.append(c.recv(10)))
        d.send(b"new")
        run_until(loop, lambda: got)
        assert got == [b"new"]
        w2.stop()
        c.close()
        d.close()
    finally:
        for s in held:
            s.close()


def test_one_fd_several_watchers_each_fire(loop):
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        fired = []
        r1 = loop.io(a.fileno(), READ)
        r2 = loop.io(a.fileno(), READ)
        wr = loop.io(a.fileno(), WRITE)
        r1.start(lambda: (fired.append("r1"), r1.stop()))
        r2.start(lambda: (fired.append("r2"), r2.stop()))
        wr.start(lambda: (fired.append("w"), wr.stop()))
        run_until(loop, lambda: "w" in fired)
        assert fired == ["w"]
        b.send(b"x")
        run_until(loop, lambda: len(fired) == 3)
        assert sorted(fired) == ["r1", "r2", "w"]
        assert loop.activecnt == 0
        # Again with one watcher left on the fd.
        r1.start(lambda: (fired.append("r1 again"), r1.stop()))
        run_until(loop, lambda: len(fired) == 4)
        assert fired[-1] == "r1 again"
    finally:
        a.close()
        b.close()
