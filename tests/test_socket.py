"""greenwheel.socket: cooperative sockets against real clients on loopback."""

import errno
import io
import os
import socket as stdsocket
import struct
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import greenwheel as gw
from _netutil import ensure_nofile, has_ipv6_loopback, run_in_thread, run_process
from greenwheel import socket as gsocket
from greenwheel.exceptions import ConcurrentObjectUseError

LOCALHOST = "127.0.0.1"


def listener(family=gsocket.AF_INET, host=LOCALHOST, backlog=1024):
    sock = gsocket.socket(family, gsocket.SOCK_STREAM)
    sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(backlog)
    return sock


def echo_handler(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)


def start_echo_server(sock):
    """Accept forever on *sock*, echoing on every connection; returns the greenlet."""

    def accept_loop():
        while True:
            conn, _ = sock.accept()
            gw.spawn(echo_handler, conn)

    return gw.spawn(accept_loop)


def recv_exactly(sock, n):
    chunks = []
    while n:
        chunk = sock.recv(n)
        assert chunk, "unexpected EOF"
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


# --- module surface ---------------------------------------------------------------


def test_stdlib_names_reexported():
    for name in (
        "AF_INET",
        "SOCK_STREAM",
        "SOL_SOCKET",
        "SO_REUSEADDR",
        "IPPROTO_TCP",
        "TCP_NODELAY",
    ):
        assert getattr(gsocket, name) == getattr(stdsocket, name)
    assert gsocket.error is OSError
    assert gsocket.timeout is stdsocket.timeout
    assert gsocket.herror is stdsocket.herror
    assert gsocket.gaierror is stdsocket.gaierror
    assert gsocket.SocketType is gsocket.socket
    assert gsocket.inet_aton is stdsocket.inet_aton
    for name in (
        "socket",
        "create_connection",
        "getaddrinfo",
        "wait_read",
        "cancel_wait",
        "AF_INET",
    ):
        assert name in gsocket.__all__


def test_socket_is_a_stdlib_socket_with_nonblocking_fd():
    with gsocket.socket() as sock:
        assert isinstance(sock, stdsocket.socket)
        assert sock.family == gsocket.AF_INET and sock.type == gsocket.SOCK_STREAM
        assert sock.gettimeout() is None and sock.getblocking()
        # The descriptor itself never blocks; blocking is emulated on the loop.
        assert os.get_blocking(sock.fileno()) is False
        assert "greenwheel.socket.socket" in repr(sock)
        sock.settimeout(1.5)
        assert sock.gettimeout() == 1.5
        sock.setblocking(False)
        assert sock.gettimeout() == 0.0 and not sock.getblocking()
        sock.setblocking(True)
        assert sock.gettimeout() is None
        with pytest.raises(ValueError):
            sock.settimeout(-1)
        with pytest.raises(TypeError):
            sock.settimeout("1")
    assert sock.fileno() == -1
    assert "[closed]" in repr(sock)


def test_default_timeout_is_honoured():
    old = gsocket.getdefaulttimeout()
    gsocket.setdefaulttimeout(2.5)
    try:
        with gsocket.socket() as sock:
            assert sock.gettimeout() == 2.5
    finally:
        gsocket.setdefaulttimeout(old)


# --- echo ---------------------------------------------------------------------


def test_echo_greenlet_clients():
    server = listener()
    start_echo_server(server)
    port = server.getsockname()[1]

    def client(i):
        with gsocket.create_connection((LOCALHOST, port)) as sock:
            for j in range(20):
                payload = b"%d-%d;" % (i, j) * 50
                sock.sendall(payload)
                assert recv_exactly(sock, len(payload)) == payload
        return i

    jobs = [gw.spawn(client, i) for i in range(50)]
    gw.joinall(jobs, raise_error=True)
    assert sorted(g.value for g in jobs) == list(range(50))
    server.close()


def test_echo_stdlib_clients_in_threads():
    server = listener()
    start_echo_server(server)
    port = server.getsockname()[1]

    def client(tag):
        with stdsocket.create_connection((LOCALHOST, port), timeout=10) as sock:
            sock.sendall(tag * 1000)
            got = b""
            while len(got) < len(tag) * 1000:
                got += sock.recv(65536)
            return got == tag * 1000

    results = [run_in_thread(client, b"t%d" % i) for i in range(3)]
    assert results == [True, True, True]
    server.close()


def test_echo_client_in_a_separate_process():
    server = listener()
    start_echo_server(server)
    code = (
        "import socket, sys\n"
        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
        "s.sendall(b'from-process' * 100)\n"
        "s.shutdown(socket.SHUT_WR)\n"
        "data = b''\n"
        "while True:\n"
        "    chunk = s.recv(65536)\n"
        "    if not chunk: break\n"
        "    data += chunk\n"
        "print(len(data), data[:12].decode())\n"
    )
    out = run_process(code, server.getsockname()[1])
    assert out.split() == ["1200", "from-process"]
    server.close()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_echo_ipv6():
    server = listener(gsocket.AF_INET6, "::1")
    start_echo_server(server)
    port = server.getsockname()[1]
    with gsocket.create_connection(("::1", port)) as sock:
        assert sock.family == gsocket.AF_INET6
        sock.sendall(b"six")
        assert recv_exactly(sock, 3) == b"six"
    server.close()


def test_one_thousand_concurrent_connections_all_served():
    n = 1000
    ensure_nofile(2 * n + 100)
    server = listener(backlog=n)
    port = server.getsockname()[1]
    open_now = [0]
    peak = [0]
    handlers_ready = []

    def handler(conn):
        open_now[0] += 1
        peak[0] = max(peak[0], open_now[0])
        try:
            with conn:
                data = recv_exactly(conn, 8)
                conn.sendall(data[::-1])
                # Hold the connection until the client hangs up.
                assert conn.recv(1) == b""
        finally:
            open_now[0] -= 1

    def accept_loop():
        while True:
            conn, _ = server.accept()
            handlers_ready.append(gw.spawn(handler, conn))

    acceptor = gw.spawn(accept_loop)
    clients = []

    def connect(i):
        sock = gsocket.create_connection((LOCALHOST, port))
        clients.append((i, sock))

    gw.joinall([gw.spawn(connect, i) for i in range(n)], raise_error=True)
    assert len(clients) == n

    def talk(i, sock):
        msg = b"%08d" % i
        sock.sendall(msg)
        assert recv_exactly(sock, 8) == msg[::-1]

    with gw.Timeout(30):
        gw.joinall([gw.spawn(talk, i, s) for i, s in clients], raise_error=True)
        # Every connection is still open at this point, each with its handler.
        while open_now[0] < n:
            gw.sleep(0)
        assert peak[0] == n
        for _, sock in clients:
            sock.close()
        gw.joinall(handlers_ready, raise_error=True)
    assert open_now[0] == 0
    acceptor.kill()
    server.close()


# --- half-close and EOF --------------------------------------------------------------


def test_half_close_then_read_until_eof():
    server = listener()
    port = server.getsockname()[1]

    def serve_one():
        conn, _ = server.accept()
        with conn:
            received = b""
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                received += chunk
            # The client's write side is shut; ours still works.
            conn.sendall(b"got %d bytes" % len(received))
            conn.shutdown(gsocket.SHUT_WR)

    srv = gw.spawn(serve_one)
    with gsocket.create_connection((LOCALHOST, port)) as sock:
        sock.sendall(b"a" * 100000)
        sock.shutdown(gsocket.SHUT_WR)
        reply = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply == b"got 100000 bytes"
    srv.get()
    server.close()


def test_half_close_with_stdlib_thread_peer():
    server = listener()
    port = server.getsockname()[1]

    def thread_client():
        with stdsocket.create_connection((LOCALHOST, port), timeout=10) as sock:
            sock.sendall(b"ping")
            sock.shutdown(stdsocket.SHUT_WR)
            data = b""
            while True:
                chunk = sock.recv(100)
                if not chunk:
                    return data
                data += chunk

    def serve_one():
        conn, _ = server.accept()
        with conn:
            data = conn.recv(100)
            assert conn.recv(100) == b""
            conn.sendall(data.upper())

    srv = gw.spawn(serve_one)
    assert run_in_thread(thread_client) == b"PING"
    srv.get()
    server.close()


# --- timeouts -------------------------------------------------------------------------


def test_recv_timeout_raises_socket_timeout():
    a, b = gsocket.socketpair()
    a.settimeout(0.05)
    start = time.monotonic()
    with pytest.raises(gsocket.timeout) as info:
        a.recv(10)
    elapsed = time.monotonic() - start
    assert isinstance(info.value, TimeoutError)
    assert str(info.value) == "timed out"
    assert 0.04 <= elapsed < 5
    # The socket is still usable after a timeout.
    b.sendall(b"late")
    assert a.recv(10) == b"late"
    a.close()
    b.close()


def test_recv_within_bounds_one_call_and_keeps_the_socket_timeout():
    # pywsgi waits for a keep-alive request with its own timeout this way.
    a, b = gsocket.socketpair()
    a.settimeout(30)
    start = time.monotonic()
    with pytest.raises(gsocket.timeout):
        a._recv_within(10, 0.02)
    assert 0.02 <= time.monotonic() - start < 5
    assert a.gettimeout() == 30
    gw.spawn(b.sendall, b"late")
    assert a._recv_within(10, None) == b"late"
    b.close()
    assert a._recv_within(10, 1) == b""
    a.close()


def tcp_pair():
    server = listener()
    client = gsocket.create_connection(server.getsockname())
    conn, _ = server.accept()
    server.close()
    return conn, client


def read_after_a_wait(conn, peer, data, bufsize=100):
    # The first _recv_within of a socket finds nothing and waits: from then
    # on the socket has its read watcher, and reads go through it.
    gw.spawn(peer.sendall, data)
    return conn._recv_within(bufsize, 5)


def test_recv_within_waits_at_once_after_draining_and_still_sees_new_data():
    # A short read emptied the kernel's queue; bytes sent after it, with no
    # loop poll in between, are behind an edge still in the kernel: waiting
    # for it straight away (no recv) must return them, not hang.
    conn, peer = tcp_pair()
    assert read_after_a_wait(conn, peer, b"one") == b"one"
    assert conn._read_event.drained
    peer.sendall(b"two")  # no yield: the loop does not poll
    assert conn._read_event.drained
    assert conn._recv_within(100, 5) == b"two"
    conn.close()
    peer.close()


def test_recv_within_after_a_poll_reads_first():
    # Here the loop polls after the short read, while no one waits: the edge
    # for the new bytes is taken out of the kernel and dropped, so waiting
    # for another one would hang.  The recv must happen first.
    conn, peer = tcp_pair()
    assert read_after_a_wait(conn, peer, b"one") == b"one"
    peer.sendall(b"two")
    gw.sleep(0.01)  # a pass that polls the kernel
    assert not conn._read_event.drained
    assert conn._recv_within(100, 5) == b"two"
    conn.close()
    peer.close()


def test_recv_within_full_reads_and_eof_never_count_as_drained():
    conn, peer = tcp_pair()
    # A read that fills the buffer may have left bytes behind.
    assert read_after_a_wait(conn, peer, b"abcd", bufsize=4) == b"abcd"
    assert not conn._read_event.drained
    peer.sendall(b"efgh")
    assert conn._recv_within(2, 5) == b"ef"
    assert not conn._read_event.drained
    assert conn._recv_within(2, 5) == b"gh"
    # EOF stays readable without another edge: every call returns b"" at once.
    peer.close()
    assert conn._recv_within(100, 5) == b""
    assert not conn._read_event.drained
    assert conn._recv_within(100, 5) == b""
    conn.close()


def test_recv_within_sees_eof_that_came_with_the_last_bytes():
    # Data and FIN arrive together: one edge, already taken by the wait that
    # returns the data.  That short read did not empty the queue (the EOF is
    # still in it), so the next call must read it, not wait for an edge that
    # will never come.
    conn, peer = tcp_pair()
    assert read_after_a_wait(conn, peer, b"one") == b"one"
    peer.sendall(b"last")
    peer.shutdown(gsocket.SHUT_WR)  # no yield: both land before the next poll
    assert conn._recv_within(100, 5) == b"last"
    assert not conn._read_event.drained
    assert conn._recv_within(100, 5) == b""
    conn.close()
    peer.close()


def test_recv_within_sees_a_reset_that_came_with_the_last_bytes():
    conn, peer = tcp_pair()
    assert read_after_a_wait(conn, peer, b"one") == b"one"
    peer.sendall(b"last")
    # SO_LINGER 0: close sends RST instead of FIN.
    peer.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    # Linux drops unread data on RST, so the data may or may not be seen;
    # either way the reset (or EOF) is reported at once.
    with pytest.raises(ConnectionResetError):
        for _ in range(3):
            conn._recv_within(100, 5)
    conn.close()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("send"), st.integers(1, 300)),
            st.tuples(st.just("poll"), st.none()),
            st.tuples(st.just("recv"), st.integers(1, 400)),
            st.tuples(st.just("eof"), st.none()),
        ),
        max_size=25,
    )
)
def test_recv_within_returns_every_byte_sent(ops):
    # Whatever mix of sends, loop polls, reads and the peer's shutdown: each
    # read returns the next bytes of the stream (never waits while some are
    # unread), nothing is lost or repeated, and once the peer has shut down
    # and everything is read, reads return b"" at once.
    conn, peer = tcp_pair()
    read_after_a_wait(conn, peer, b"x")
    sent = received = b""
    eof = False
    for op, arg in ops:
        if op == "send" and not eof:
            chunk = bytes([65 + len(sent) % 26]) * arg
            peer.sendall(chunk)
            sent += chunk
        elif op == "eof" and not eof:
            peer.shutdown(gsocket.SHUT_WR)
            eof = True
        elif op == "poll":
            gw.sleep(0.001)
        elif op == "recv" and len(received) < len(sent):
            data = conn._recv_within(arg, 5)
            assert data and sent[len(received) :].startswith(data)
            received += data
        elif op == "recv" and eof:
            assert conn._recv_within(arg, 5) == b""
    while len(received) < len(sent):
        data = conn._recv_within(4096, 5)
        assert data
        received += data
    assert received == sent
    if eof:
        assert conn._recv_within(4096, 5) == b""
    conn.close()
    peer.close()


def test_closed_attribute():
    a, b = gsocket.socketpair()
    assert not a.closed
    f = a.makefile("rb")
    a.close()
    assert a.closed  # closed for its user, even while makefile() keeps the fd
    f.close()
    assert a.closed and a.fileno() == -1
    b.detach()
    assert b.closed


def test_accept_timeout():
    server = listener()
    server.settimeout(0.02)
    with pytest.raises(gsocket.timeout):
        server.accept()
    server.close()


def test_sendall_timeout_when_peer_does_not_read():
    a, b = gsocket.socketpair()
    a.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_SNDBUF, 4096)
    a.settimeout(0.05)
    start = time.monotonic()
    with pytest.raises(gsocket.timeout):
        a.sendall(b"x" * (16 * 1024 * 1024))
    assert time.monotonic() - start < 5
    a.close()
    b.close()


def test_timeout_does_not_block_other_greenlets():
    a, b = gsocket.socketpair()
    a.settimeout(0.05)
    ticks = []

    def ticker():
        for i in range(5):
            ticks.append(i)
            gw.sleep(0)

    g = gw.spawn(ticker)
    with pytest.raises(gsocket.timeout):
        a.recv(1)
    assert ticks == [0, 1, 2, 3, 4]
    g.join()
    a.close()
    b.close()


def test_nonblocking_socket_raises_blockingioerror():
    a, b = gsocket.socketpair()
    a.setblocking(False)
    with pytest.raises(BlockingIOError):
        a.recv(1)
    with pytest.raises(BlockingIOError):
        a.recv_into(bytearray(1))
    server = listener()
    server.setblocking(False)
    with pytest.raises(BlockingIOError):
        server.accept()
    for s in (a, b, server):
        s.close()


# --- closing while another greenlet waits --------------------------------------------------


def test_close_while_another_greenlet_waits_in_recv():
    a, b = gsocket.socketpair()

    def reader():
        return a.recv(10)

    g = gw.spawn(reader)
    gw.sleep(0)  # the reader is now parked on the loop
    a.close()
    with gw.Timeout(5):
        with pytest.raises(OSError) as info:
            g.get()
    assert info.value.errno == errno.EBADF
    assert "closed in another greenlet" in str(info.value)
    assert a.fileno() == -1
    # The descriptor really got closed: the peer sees EOF.
    assert b.recv(10) == b""
    with pytest.raises(OSError):
        a.recv(1)
    b.close()


def test_close_while_another_greenlet_waits_in_accept():
    server = listener()
    g = gw.spawn(server.accept)
    gw.sleep(0)
    server.close()
    with gw.Timeout(5):
        with pytest.raises(OSError) as info:
            g.get()
    assert info.value.errno == errno.EBADF


def test_close_while_waiting_in_sendall():
    a, b = gsocket.socketpair()
    a.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_SNDBUF, 4096)
    g = gw.spawn(a.sendall, b"y" * (8 * 1024 * 1024))
    gw.sleep(0)
    a.close()
    with gw.Timeout(5):
        with pytest.raises(OSError) as info:
            g.get()
    assert info.value.errno == errno.EBADF
    b.close()


def test_close_without_waiters_is_immediate():
    a, b = gsocket.socketpair()
    a.sendall(b"bye")
    a.close()
    assert b.recv(10) == b"bye"
    assert b.recv(10) == b""
    b.close()


def test_two_greenlets_reading_one_socket_is_an_error():
    a, b = gsocket.socketpair()
    first = gw.spawn(a.recv, 1)
    gw.sleep(0)
    second = gw.spawn(a.recv, 1)
    with pytest.raises(ConcurrentObjectUseError):
        second.get()
    b.sendall(b"!")
    assert first.get() == b"!"
    a.close()
    b.close()


# --- the rest of the socket interface ------------------------------------------------------


def test_accept_returns_greenwheel_sockets_and_connect_ex():
    server = listener()
    port = server.getsockname()[1]
    client = gsocket.socket()
    g = gw.spawn(server.accept)
    assert client.connect_ex((LOCALHOST, port)) == 0
    conn, addr = g.get()
    assert isinstance(conn, gsocket.socket)
    assert addr == client.getsockname()
    assert conn.gettimeout() is None
    for s in (client, conn, server):
        s.close()
    # Nothing listens there any more.
    with gsocket.socket() as refused:
        assert refused.connect_ex((LOCALHOST, port)) == errno.ECONNREFUSED
    with gsocket.socket() as refused:
        with pytest.raises(ConnectionRefusedError):
            refused.connect((LOCALHOST, port))


def test_connect_resolves_names_without_blocking():
    server = listener()
    start_echo_server(server)
    port = server.getsockname()[1]
    with gsocket.socket() as sock:
        sock.connect(("localhost", port))
        sock.sendall(b"named")
        assert recv_exactly(sock, 5) == b"named"
    server.close()


def test_recv_into_and_makefile():
    a, b = gsocket.socketpair()
    buf = bytearray(10)
    gw.spawn(b.sendall, b"0123456789")
    assert a.recv_into(buf, 4) == 4
    assert bytes(buf[:4]) == b"0123"
    view = memoryview(buf)
    assert a.recv_into(view[4:]) == 6
    assert bytes(buf) == b"0123456789"

    reader = a.makefile("rb")
    writer = b.makefile("wb")
    gw.spawn(lambda: (writer.write(b"line one\nline two\n"), writer.flush()))
    assert reader.readline() == b"line one\n"
    assert reader.readline() == b"line two\n"
    text = a.makefile("r", encoding="utf-8")
    gw.spawn(b.sendall, "héllo\n".encode())
    assert text.readline() == "héllo\n"
    # The socket stays open until its files are closed too.
    a.close()
    assert a.fileno() != -1
    reader.close()
    text.close()
    assert a.fileno() == -1
    writer.close()
    b.close()


def test_udp_sendto_recvfrom_and_recvfrom_into():
    a = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
    b = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
    a.bind((LOCALHOST, 0))
    b.bind((LOCALHOST, 0))
    got = gw.spawn(a.recvfrom, 100)
    gw.sleep(0)
    b.sendto(b"dgram", a.getsockname())
    assert got.get() == (b"dgram", b.getsockname())
    buf = bytearray(20)
    got = gw.spawn(b.recvfrom_into, buf)
    gw.sleep(0)
    a.sendto(b"back", 0, b.getsockname())
    assert got.get() == (4, a.getsockname())
    assert bytes(buf[:4]) == b"back"
    a.close()
    b.close()


def test_sendfile(tmp_path):
    data = os.urandom(300000)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    a, b = gsocket.socketpair()
    server = listener()
    port = server.getsockname()[1]
    accepting = gw.spawn(server.accept)
    client = gsocket.create_connection((LOCALHOST, port))
    conn, _ = accepting.get()

    def read_all():
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    reader = gw.spawn(read_all)
    with open(path, "rb") as f:
        assert client.sendfile(f, offset=100, count=200000) == 200000
        assert f.tell() == 200100
    # A file object without a descriptor falls back to send().
    assert client.sendfile(io.BytesIO(b"tail")) == 4
    client.close()
    assert reader.get() == data[100:200100] + b"tail"
    for s in (conn, server, a, b):
        s.close()


def test_dup_detach_fromfd_and_context_manager():
    a, b = gsocket.socketpair()
    c = a.dup()
    assert isinstance(c, gsocket.socket) and c.fileno() != a.fileno()
    c.sendall(b"via dup")
    assert recv_exactly(b, 7) == b"via dup"
    fd = c.detach()
    assert c.fileno() == -1 and fd >= 0
    d = gsocket.fromfd(fd, gsocket.AF_UNIX, gsocket.SOCK_STREAM)
    os.close(fd)
    d.sendall(b"fromfd")
    assert recv_exactly(b, 6) == b"fromfd"
    with d:
        pass
    assert d.fileno() == -1
    a.close()
    b.close()


def test_create_server_and_socketpair_types():
    with gsocket.create_server((LOCALHOST, 0)) as server:
        assert isinstance(server, gsocket.socket)
        assert server.getsockopt(gsocket.SOL_SOCKET, gsocket.SO_REUSEADDR)
        port = server.getsockname()[1]
        g = gw.spawn(server.accept)
        with gsocket.create_connection((LOCALHOST, port), timeout=5) as client:
            assert client.gettimeout() == 5
            conn, _ = g.get()
            conn.close()
    a, b = gsocket.socketpair()
    assert isinstance(a, gsocket.socket) and isinstance(b, gsocket.socket)
    assert a.family == gsocket.AF_UNIX
    a.close()
    b.close()


def test_timed_waits_that_end_in_readiness_leave_nothing_armed():
    # A socket timeout is a wheel entry that fires straight into the waiting
    # greenlet: when the data comes first it must be withdrawn, or it would
    # later fire into a greenlet that is doing something else.
    a, b = gsocket.socketpair()
    a.settimeout(30)
    loop = gw.get_hub().loop
    before = loop.timer_count, loop.activecnt

    def pinger():
        for i in range(200):
            b.sendall(b"%03d" % i)
            gw.sleep(0)

    g = gw.spawn(pinger)
    got = b""
    while len(got) < 600:
        got += a.recv(600 - len(got))  # waits (with its deadline) each time
    g.join()
    assert got == b"".join(b"%03d" % i for i in range(200))
    assert (loop.timer_count, loop.activecnt) == before
    # After all those withdrawn deadlines the greenlet sleeps undisturbed.
    start = time.monotonic()
    gw.sleep(0.05)
    assert time.monotonic() - start >= 0.05
    a.close()
    b.close()


def test_timeout_while_another_greenlet_waits_on_the_same_socket():
    a, b = gsocket.socketpair()
    a.settimeout(0.02)

    def second_reader():
        return a.recv(1)

    g = gw.spawn(second_reader)
    gw.sleep(0)  # g now waits on a's read watcher
    with pytest.raises(ConcurrentObjectUseError):
        a.recv(1)
    with pytest.raises(gsocket.timeout):
        g.get()
    a.close()
    b.close()


def test_io_watcher_wait_deadline_errors_and_past_deadlines():
    a, b = gsocket.socketpair()
    hub = gw.get_hub()
    watcher = hub.loop.io(a.fileno(), 1)
    with pytest.raises(ValueError, match="NaN"):
        watcher.wait(hub, False, float("nan"))
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out"):
        watcher.wait(hub, False, start - 1.0)  # already past: at once
    with pytest.raises(KeyError):
        watcher.wait(hub, False, start - 1.0, (KeyError, "custom"))
    with pytest.raises(KeyError):
        watcher.wait(hub, False, time.monotonic() + 0.01, (KeyError("custom"),))
    assert not watcher.active
    assert time.monotonic() - start < 5
    b.sendall(b"x")
    watcher.wait(hub, False, time.monotonic() + 30)  # readiness first: returns
    assert a.recv(1) == b"x"
    watcher.close()
    a.close()
    b.close()


def test_create_connection_tries_every_address_and_reports_errors():
    with gsocket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        gsocket.create_connection((LOCALHOST, port))


# --- waiting on descriptors ------------------------------------------------------------------


def test_wait_read_write_and_timeouts():
    a, b = gsocket.socketpair()
    gsocket.wait_write(a.fileno(), timeout=1)
    gsocket.wait_readwrite(a, timeout=1)
    with pytest.raises(gsocket.timeout):
        gsocket.wait_read(a.fileno(), timeout=0.01)
    with pytest.raises(KeyError):
        gsocket.wait_read(a.fileno(), timeout=0.01, timeout_exc=KeyError("custom"))
    gw.spawn(b.sendall, b"r")
    gsocket.wait_read(a.fileno(), timeout=5)
    assert a.recv(1) == b"r"
    a.close()
    b.close()


def test_cancel_wait_wakes_the_waiter():
    a, b = gsocket.socketpair()
    hub = gw.get_hub()
    watcher = hub.loop.io(a.fileno(), 1)
    g = gw.spawn(gsocket.wait, watcher)
    gw.sleep(0)
    gsocket.cancel_wait(watcher)
    with pytest.raises(OSError) as info:
        g.get()
    assert info.value.errno == errno.EBADF
    watcher.close()
    a.close()
    b.close()


def test_stray_switch_into_wait_read_raises_invalid_switch_error():
    a, b = gsocket.socketpair()
    g = gw.spawn(gsocket.wait_read, a.fileno(), 5)
    gw.sleep(0)  # g now waits for a to become readable
    stray = gw.spawn(g.switch)  # not the loop: a switch nobody asked for
    with pytest.raises(gw.exceptions.InvalidSwitchError):
        g.get(timeout=5)
    # The stray switcher stays parked in its switch into g, which has died
    # (its parent, the hub, got control back): nothing will resume it.
    stray.kill()
    a.close()
    b.close()


def test_wait_takes_any_object_with_the_watcher_interface():
    # A watcher-like object whose start() itself blocks: the timeout, armed
    # first, interrupts it.
    class BlockingStart:
        callback = None

        def start(self, *args):
            gw.sleep(10)

        def stop(self):
            pass

    with gw.Timeout(5):
        with pytest.raises(gsocket.timeout):
            gsocket.wait(BlockingStart(), timeout=0.01)


def test_setting_ref_applies_to_both_watchers_at_once():
    a, b = gsocket.socketpair()
    assert a.ref
    a.ref = False
    assert not a.ref
    # gevent code reads them right after setting ref, before any wait.
    assert a._read_event.ref is False and a._write_event.ref is False
    # An unreferenced socket's wait does not keep the loop alive.
    waiter = gw.spawn(a.recv, 1)
    assert gw.get_hub().join(timeout=5) is True
    waiter.kill()
    a.ref = True
    assert a._read_event.ref is True
    a.close()
    b.close()
    a.ref = False  # closed: nothing to watch, no error


def test_address_resolution_leaves_literal_addresses_alone():
    from greenwheel._socket import _resolve_addr

    class Family6:  # anything with a family attribute
        family = gsocket.AF_INET6

    scoped = ("2607:f8b0:4000:80e::200e", 80, 0, 9)
    assert _resolve_addr(Family6, scoped) is scoped
    with gsocket.socket() as sock:
        plain = ("127.0.0.1", 80)
        assert _resolve_addr(sock, plain) is plain


def test_ebadf_is_exported():
    assert gsocket.EBADF == errno.EBADF == gsocket.cancel_wait_ex().errno


def test_send_and_sendall_take_a_ctypes_structure():
    import ctypes

    class Pair(ctypes.Structure):
        _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int)]

    receiver = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
    receiver.bind((LOCALHOST, 0))
    receiver.settimeout(5)
    sender = gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM)
    sender.connect(receiver.getsockname())
    try:
        for timeout in (None, 1.0):
            sender.settimeout(timeout)
            for method in (sender.sendall, sender.send):
                method(Pair(7, 9))
                assert receiver.recv(64) == bytes(Pair(7, 9))
    finally:
        sender.close()
        receiver.close()


def test_send_timeout_argument_bounds_that_call():
    a, b = gsocket.socketpair()
    a.setblocking(False)
    try:
        while True:  # fill the kernel buffer
            a.send(b"x" * 65536)
    except BlockingIOError:
        pass
    a.settimeout(None)  # the socket itself would wait forever
    with gw.Timeout(5):
        with pytest.raises(gsocket.timeout):
            a.send(b"y", timeout=0.01)
    a.close()
    b.close()
    with pytest.raises(OSError) as info:
        a.send(b"z", timeout=1)
    assert info.value.errno == errno.EBADF


def test_create_connection_uses_the_module_socket_and_getaddrinfo(monkeypatch):
    made = []

    class Refused(BaseException):
        pass

    class FakeSocket:
        def __init__(self, *args):
            self.closed = False
            made.append(self)

        def connect(self, address):
            raise Refused(address)

        def close(self):
            self.closed = True

    def fake_getaddrinfo(host, port, *args):
        return [(gsocket.AF_INET, gsocket.SOCK_STREAM, 0, "", ("192.0.2.1", 9))]

    monkeypatch.setattr(gsocket, "socket", FakeSocket)
    monkeypatch.setattr(gsocket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(Refused):
        gsocket.create_connection(("unresolvable", "port"))
    assert len(made) == 1 and made[0].closed


# --- name resolution -------------------------------------------------------------------------


def test_getaddrinfo_runs_in_a_thread_while_the_loop_keeps_serving(monkeypatch):
    called_in = []
    release = threading.Event()
    real = stdsocket.getaddrinfo

    def slow_getaddrinfo(*args):
        called_in.append(threading.get_ident())
        # Blocks this worker thread until a greenlet (so: the loop) says so.
        assert release.wait(10), "the loop never ran while getaddrinfo was blocked"
        return real(*args)

    monkeypatch.setattr(stdsocket, "getaddrinfo", slow_getaddrinfo)
    progress = []

    def other_work():
        for i in range(3):
            progress.append(i)
            gw.sleep(0)
        release.set()

    g = gw.spawn(other_work)
    result = gsocket.getaddrinfo("localhost", 80, gsocket.AF_INET, gsocket.SOCK_STREAM)
    assert progress == [0, 1, 2]
    assert called_in and called_in[0] != threading.get_ident()
    assert result[0][0] == gsocket.AF_INET
    assert result[0][4] == ("127.0.0.1", 80)
    g.join()


def test_resolver_functions():
    assert gsocket.gethostbyname("localhost") == "127.0.0.1"
    assert gsocket.gethostbyname("127.0.0.1") == "127.0.0.1"
    name, aliases, addresses = gsocket.gethostbyname_ex("localhost")
    assert "127.0.0.1" in addresses
    host, _, addrs = gsocket.gethostbyaddr("127.0.0.1")
    assert isinstance(host, str) and "127.0.0.1" in addrs
    assert gsocket.getnameinfo(
        ("127.0.0.1", 80), gsocket.NI_NUMERICHOST | gsocket.NI_NUMERICSERV
    ) == (
        "127.0.0.1",
        "80",
    )
    host, port = gsocket.getnameinfo(("127.0.0.1", 80), 0)
    assert isinstance(host, str) and port
    assert isinstance(gsocket.getfqdn(), str)
    with pytest.raises(gsocket.gaierror):
        gsocket.getaddrinfo("no-such-host.invalid", 80)
    # Numeric look-ups are answered at once and agree with the stdlib.
    assert gsocket.getaddrinfo("127.0.0.1", 80, 0, gsocket.SOCK_STREAM) == stdsocket.getaddrinfo(
        "127.0.0.1", 80, 0, stdsocket.SOCK_STREAM
    )


# --- the thread pool behind the resolver -------------------------------------------------------


def test_threadpool_apply_submit_and_errors():
    from greenwheel._threadpool import ThreadPool, get_threadpool

    pool = get_threadpool()
    assert pool is get_threadpool() and pool.maxsize >= 2
    main_thread = threading.get_ident()
    assert pool.apply(threading.get_ident) != main_thread
    with pytest.raises(ZeroDivisionError):
        pool.apply(lambda: 1 / 0)

    # Two tasks that each wait for the other: only passes if they really run
    # at the same time, in two threads, while the loop waits for both.
    barrier = threading.Barrier(2, timeout=10)
    small = ThreadPool(2)
    first = small.submit(barrier.wait)
    second = small.submit(barrier.wait)
    assert sorted([first.get(), second.get()]) == [0, 1]
    assert first.ready() and first.successful() and small.size == 2

    release = threading.Event()
    slow = small.submit(release.wait, 10)
    assert not slow.ready()
    assert slow.wait(timeout=0.01) is False
    with pytest.raises(gw.Timeout):
        slow.get(timeout=0.01)
    release.set()
    assert slow.get() is True
    small.kill()
    with pytest.raises(ValueError):
        ThreadPool(-1)  # 0 is allowed (as in gevent): a pool that runs nothing yet


def test_sockets_in_a_thread_with_its_own_hub():
    def in_thread():
        a, b = gsocket.socketpair()
        reader = gw.spawn(a.recv, 10)
        gw.spawn(b.sendall, b"threaded")
        data = reader.get()
        addr = gsocket.gethostbyname("localhost")
        a.close()
        b.close()
        gw.get_hub().destroy()
        return data, addr

    assert run_in_thread(in_thread) == (b"threaded", "127.0.0.1")


def test_msg_dontwait_never_waits_even_with_a_timeout():
    # MSG_DONTWAIT asks for one attempt: EAGAIN is raised, not waited out.
    a, b = gsocket.socketpair()
    try:
        a.settimeout(5)
        b.settimeout(5)
        with pytest.raises(BlockingIOError):
            a.recv(10, gsocket.MSG_DONTWAIT)
        with pytest.raises(BlockingIOError):
            a.recvmsg(10, 0, gsocket.MSG_DONTWAIT)
        with pytest.raises(BlockingIOError):
            a.recv_into(bytearray(10), 10, gsocket.MSG_DONTWAIT)
        with pytest.raises(OSError) as raised:
            while True:  # fill the send buffer, then one more
                a.sendmsg([b"x" * 65536], [], gsocket.MSG_DONTWAIT)
        assert raised.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
        with pytest.raises(BlockingIOError):
            a.send(b"x" * 65536, gsocket.MSG_DONTWAIT)
    finally:
        a.close()
        b.close()
