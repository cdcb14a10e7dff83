"""The Rust non-blocking recv/send helpers behind cooperative sockets."""

import errno
import socket

import pytest

from greenwheel._core import recv_nowait, send_nowait


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_would_block_is_none_not_an_exception(pair):
    a, _ = pair
    assert recv_nowait(a.fileno(), 1024) is None


def test_round_trip_and_eof(pair):
    a, b = pair
    assert send_nowait(b.fileno(), b"hello") == 5
    assert send_nowait(b.fileno(), memoryview(b"world")) == 5
    assert send_nowait(b.fileno(), bytearray(b"!")) == 1
    assert recv_nowait(a.fileno(), 3) == b"hel"
    assert recv_nowait(a.fileno(), 65536) == b"loworld!"
    b.shutdown(socket.SHUT_WR)
    assert recv_nowait(a.fileno(), 10) == b""


def test_full_send_buffer_is_none(pair):
    a, b = pair
    chunk = b"x" * 65536
    sent = 0
    while True:
        n = send_nowait(b.fileno(), chunk)
        if n is None:
            break
        sent += n
        assert sent < 1 << 30, "the socket buffer never filled"
    assert sent > 0


def test_bad_input_raises_python_errors(pair):
    a, _ = pair
    with pytest.raises(ValueError):
        recv_nowait(a.fileno(), -1)
    with pytest.raises(OSError) as info:
        recv_nowait(-1, 10)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError) as info:
        send_nowait(-1, b"x")
    assert info.value.errno == errno.EBADF
    with pytest.raises(TypeError):
        send_nowait(a.fileno(), "not bytes")


def test_closed_peer_is_epipe_not_a_signal(pair):
    a, b = pair
    a.close()
    with pytest.raises(OSError) as info:
        for _ in range(10):
            send_nowait(b.fileno(), b"data")
    assert info.value.errno in (errno.EPIPE, errno.ECONNRESET)
