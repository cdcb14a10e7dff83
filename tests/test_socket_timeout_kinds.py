"""recv and sendall tell the three kinds of timeout apart (None: wait as long
as it takes; 0.0: never wait; a number: wait that long) after the socket
has already waited once, when recv takes its fast path through the read
watcher.  Each case switches one socket between the kinds.
"""

import time

import pytest

import greenwheel
from greenwheel import socket as gsocket


def waited_once_pair():
    # A pair whose `a` has waited for data once (its read watcher exists and
    # the last read emptied the queue: recv's fast path applies).
    a, b = gsocket.socketpair()
    later = greenwheel.spawn_later(0.01, b.sendall, b"first")
    assert a.recv(100) == b"first"
    later.join()
    return a, b


def test_recv_with_each_kind_of_timeout_after_a_wait():
    a, b = waited_once_pair()
    try:
        a.settimeout(0.0)
        started = time.monotonic()
        with pytest.raises(BlockingIOError):
            a.recv(100)
        assert time.monotonic() - started < 1.0
        a.settimeout(0.05)
        started = time.monotonic()
        with pytest.raises(gsocket.timeout):
            a.recv(100)
        elapsed = time.monotonic() - started
        assert 0.04 <= elapsed < 5.0, elapsed
        a.settimeout(None)
        later = greenwheel.spawn_later(0.05, b.sendall, b"second")
        assert a.recv(100) == b"second"  # waited past the former timeout
        later.join()
    finally:
        a.close()
        b.close()


def test_sendall_with_each_kind_of_timeout_when_the_buffer_is_full():
    a, b = waited_once_pair()
    try:
        a.setblocking(False)
        try:
            while True:  # fill the kernel's buffers
                a.send(b"x" * 65536)
        except BlockingIOError:
            pass
        with pytest.raises(BlockingIOError):
            a.sendall(b"y" * 65536)
        a.settimeout(0.05)
        with pytest.raises(gsocket.timeout):
            a.sendall(b"y" * 65536)
        # None: sendall waits until a reader makes room, then sends it all.
        a.settimeout(None)
        got = []

        def drain():
            while True:
                data = b.recv(1 << 20)
                if not data:
                    return
                got.append(len(data))

        reader = greenwheel.spawn(drain)
        a.sendall(b"z" * 300000)
        a.shutdown(gsocket.SHUT_WR)
        reader.join(timeout=10)
        assert reader.dead
        assert sum(got) >= 300000
    finally:
        a.close()
        b.close()
