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


class Recorded(Exception):
    def __init__(self, *args):
        super().__init__(*args)
        self.given = args


@pytest.mark.parametrize(
    "timeout_args, kind, given",
    [
        ((Recorded, "x"), Recorded, ("x",)),
        ((Recorded, (1, 2)), Recorded, (1, 2)),
        ((Recorded, None), Recorded, ()),
        ((Recorded, Recorded("made")), Recorded, ("made",)),
        ((Recorded,), Recorded, ()),
        ((gsocket.timeout, "timed out"), TimeoutError, ("timed out",)),
    ],
)
def test_a_timed_out_wait_raises_what_throw_would(timeout_args, kind, given):
    # The wait makes the usual (class, value) error itself rather than
    # throwing it into the waiting greenlet (which costs greenlet a C++
    # exception): the error must be the one `throw` would have raised.
    a, b = gsocket.socketpair()
    hub = greenwheel.get_hub()
    watcher = hub.loop.io(a.fileno(), 1)

    def wait():
        try:
            watcher.wait(hub, False, time.monotonic() + 0.001, timeout_args)
        except BaseException as ex:
            return ex
        return None

    try:
        error = greenwheel.spawn(wait).get()
        assert type(error) is kind
        assert getattr(error, "given", error.args) == given
    finally:
        watcher.close()
        a.close()
        b.close()
