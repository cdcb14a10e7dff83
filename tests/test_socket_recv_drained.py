"""socket.recv skips the system call after a read that emptied the queue.

The skip (``_stream_read.drained``) must never lose or delay bytes: these
tests drive the cases where it could.
"""

import random

import pytest

import greenwheel
from greenwheel import socket as gsocket


def test_recv_after_short_read_sees_every_chunk_in_order():
    # A blocking-style handler: recv, answer, recv again.  Chunks arrive
    # both while the reader waits and while it is busy answering.
    a, b = gsocket.socketpair()
    rng = random.Random(19)
    chunks = [bytes([i % 251]) * rng.randint(1, 3000) for i in range(300)]
    got = bytearray()

    def reader():
        while len(got) < sum(map(len, chunks)):
            data = a.recv(65536)
            assert data
            got.extend(data)
            if rng.random() < 0.5:
                greenwheel.sleep(0)

    def writer():
        for c in chunks:
            b.sendall(c)
            if rng.random() < 0.5:
                greenwheel.sleep(0)

    try:
        g = greenwheel.spawn(reader)
        w = greenwheel.spawn(writer)
        greenwheel.joinall([g, w], timeout=30, raise_error=True)
        assert g.dead and w.dead, "reader or writer hung"
        assert bytes(got) == b"".join(chunks)
    finally:
        a.close()
        b.close()


def test_nonblocking_recv_after_short_read_sees_new_data_without_yielding():
    # After a short read the queue was empty; new bytes arrive without the
    # loop polling.  A non-blocking caller must still get them at once.
    a, b = gsocket.socketpair()
    try:
        a.settimeout(5)
        greenwheel.spawn_later(0.01, b.sendall, b"x")
        assert a.recv(10) == b"x"  # read through the wait path: drained
        b.sendall(b"y")  # not yet seen by the loop
        a.settimeout(0.0)
        assert a.recv(10) == b"y"
    finally:
        a.close()
        b.close()


def test_blocking_recv_after_short_read_gets_data_sent_meanwhile():
    a, b = gsocket.socketpair()
    try:
        a.settimeout(5)
        greenwheel.spawn_later(0.01, b.sendall, b"first")
        assert a.recv(10) == b"first"
        b.sendall(b"second")  # already queued when recv starts
        assert a.recv(10) == b"second"
    finally:
        a.close()
        b.close()


def test_datagram_short_read_does_not_skip_the_next_datagram():
    a, b = gsocket.socketpair(gsocket.AF_UNIX, gsocket.SOCK_DGRAM)
    try:
        a.settimeout(5)
        greenwheel.spawn_later(0.01, b.send, b"one")
        assert a.recv(100) == b"one"
        b.send(b"two")
        b.send(b"three")
        assert a.recv(100) == b"two"
        assert a.recv(100) == b"three"
    finally:
        a.close()
        b.close()


def test_recv_within_refuses_bad_arguments_with_type_errors():
    # The watcher's raw method parses its own arguments: wrong ones are
    # TypeErrors naming the argument, the socket stays usable.
    a, b = gsocket.socketpair()
    try:
        greenwheel.spawn_later(0.01, b.sendall, b"x")
        assert a.recv(10) == b"x"  # it waited: the socket's read watcher exists
        watcher = a._stream_read
        hub = greenwheel.get_hub()
        with pytest.raises(TypeError, match="exactly 4 positional arguments"):
            watcher.recv_within(hub, 10)
        with pytest.raises(TypeError, match="argument 'bufsize'"):
            watcher.recv_within(hub, "10", None, (TimeoutError,))
        with pytest.raises(TypeError, match="argument 'timeout'"):
            watcher.recv_within(hub, 10, "soon", (TimeoutError,))
        with pytest.raises(TypeError, match="argument 'timeout_args'"):
            watcher.recv_within(hub, 10, None, [TimeoutError])
        with pytest.raises(TypeError):
            watcher.recv_within(hub=hub, bufsize=10, timeout=None, timeout_args=())
        b.sendall(b"y")
        assert watcher.recv_within(hub, 10, 5.0, (TimeoutError,)) == b"y"
    finally:
        a.close()
        b.close()
