"""greenwheel.server: StreamServer (TCP and TLS) and DatagramServer with real clients."""

import errno
import io
import socket as stdsocket
import ssl as stdssl
import time

import pytest

import greenwheel as gw
from _netutil import ensure_nofile, has_ipv6_loopback, run_in_thread, run_process
from _tls import make_cert
from greenwheel import socket as gsocket
from greenwheel import ssl as gssl
from greenwheel.baseserver import BaseServer, parse_address
from greenwheel.pool import Pool
from greenwheel.server import DatagramServer, StreamServer

LOCALHOST = "127.0.0.1"


def echo(sock, address):
    while True:
        data = sock.recv(65536)
        if not data:
            break
        sock.sendall(data)


def recv_exactly(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk, "unexpected EOF"
        out += chunk
    return out


def roundtrip(port, payload=b"hello", host=LOCALHOST):
    with gsocket.create_connection((host, port)) as sock:
        sock.sendall(payload)
        return recv_exactly(sock, len(payload))


# --- basics ----------------------------------------------------------------------------


def test_parse_address():
    assert parse_address(("127.0.0.1", 80)) == (gsocket.AF_INET, ("127.0.0.1", 80))
    assert parse_address(("::1", 80)) == (gsocket.AF_INET6, ("::1", 80))
    assert parse_address("127.0.0.1:8080") == (gsocket.AF_INET, ("127.0.0.1", 8080))
    assert parse_address("[::1]:8080") == (gsocket.AF_INET6, ("::1", 8080))
    assert parse_address("*:8080") == (gsocket.AF_INET, ("", 8080))
    assert parse_address(8080) == (gsocket.AF_INET6, ("", 8080))
    with pytest.raises(ValueError):
        parse_address("host:notaport")
    with pytest.raises(TypeError):
        parse_address(3.5)


def test_echo_server_lifecycle_and_properties():
    server = StreamServer((LOCALHOST, 0), echo)
    assert not server.started
    server.start()
    try:
        assert server.started and not server.closed
        assert server.server_host == LOCALHOST
        assert server.server_port == server.address[1] > 0
        assert "address=127.0.0.1:%d" % server.server_port in repr(server)
        assert server.socket.fileno() >= 0
        assert roundtrip(server.server_port, b"x" * 100000) == b"x" * 100000
    finally:
        server.stop()
    assert server.closed and not server.started
    with gsocket.socket() as s:
        assert s.connect_ex((LOCALHOST, server.address[1])) == errno.ECONNREFUSED


def test_listener_as_host_port_string():
    with StreamServer("127.0.0.1:0", echo) as server:
        server.start()
        assert roundtrip(server.server_port) == b"hello"


def test_listener_as_bound_socket():
    sock = gsocket.socket()
    sock.bind((LOCALHOST, 0))
    sock.listen(16)
    server = StreamServer(sock, echo)
    assert server.socket is sock
    assert server.address == sock.getsockname()
    server.start()
    assert roundtrip(server.server_port) == b"hello"
    server.stop()
    assert sock.fileno() == -1
    with pytest.raises(TypeError):
        StreamServer(gsocket.socket(), echo, backlog=5)


def test_listener_as_stdlib_socket():
    sock = stdsocket.socket()
    sock.bind((LOCALHOST, 0))
    sock.listen(16)
    server = StreamServer(sock, echo)
    server.start()
    assert roundtrip(server.server_port, b"stdlib listener") == b"stdlib listener"
    server.stop()
    sock.close()


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_ipv6_listener():
    with StreamServer("[::1]:0", echo) as server:
        server.start()
        assert server.family == gsocket.AF_INET6
        assert roundtrip(server.server_port, host="::1") == b"hello"


def test_handle_method_subclass_and_set_handle():
    class Upper(StreamServer):
        def handle(self, sock, address):
            sock.sendall(sock.recv(100).upper())

    with Upper((LOCALHOST, 0)) as server:
        server.start()
        assert roundtrip(server.server_port, b"abc") == b"ABC"
    with pytest.raises(TypeError):
        StreamServer((LOCALHOST, 0))
    server = StreamServer((LOCALHOST, 0), echo)
    server.set_handle(lambda sock, addr: sock.sendall(b"new"))
    server.start()
    with gsocket.create_connection((LOCALHOST, server.server_port)) as c:
        assert recv_exactly(c, 3) == b"new"
    server.stop()


def test_connection_closed_when_handler_returns_and_tcp_nodelay():
    seen = {}

    def handle(sock, address):
        seen["nodelay"] = sock.getsockopt(gsocket.IPPROTO_TCP, gsocket.TCP_NODELAY)
        seen["type"] = type(sock)
        seen["address"] = address
        sock.sendall(b"bye")

    with StreamServer((LOCALHOST, 0), handle) as server:
        server.start()
        with gsocket.create_connection((LOCALHOST, server.server_port)) as c:
            assert recv_exactly(c, 3) == b"bye"
            assert c.recv(10) == b""  # closed by the server after handle()
            assert seen["address"] == c.getsockname()
    assert seen["nodelay"] != 0
    assert seen["type"] is gsocket.socket


def test_handler_errors_do_not_stop_the_server(quiet_hub):
    def handle(sock, address):
        data = sock.recv(10)
        if data == b"boom":
            raise ValueError("handler failed")
        sock.sendall(data)

    with StreamServer((LOCALHOST, 0), handle) as server:
        server.start()
        with gsocket.create_connection((LOCALHOST, server.server_port)) as c:
            c.sendall(b"boom")
            assert c.recv(10) == b""
        assert roundtrip(server.server_port, b"still") == b"still"
    assert "handler failed" in quiet_hub.captured.getvalue()


def test_accept_errors_pause_then_resume(quiet_hub):
    failures = [OSError(errno.EMFILE, "Too many open files")]

    class Flaky(StreamServer):
        min_delay = 0.001

        def do_read(self):
            if failures:
                raise failures.pop()
            return StreamServer.do_read(self)

    with Flaky((LOCALHOST, 0), echo) as server:
        server.start()
        assert roundtrip(server.server_port, b"resumed") == b"resumed"
    assert "Too many open files" in quiet_hub.captured.getvalue()


# --- spawning strategies ----------------------------------------------------------------


def test_spawn_none_runs_handler_in_the_hub():
    def handle(sock, address):
        # No blocking allowed here; the data is sent straight away.
        sock.sendall(b"from the hub")

    with StreamServer((LOCALHOST, 0), handle, spawn=None) as server:
        server.start()
        with gsocket.create_connection((LOCALHOST, server.server_port)) as c:
            assert recv_exactly(c, 12) == b"from the hub"


@pytest.mark.parametrize("spawn", [3, "pool"])
def test_pool_limits_concurrent_handlers(spawn):
    if spawn == "pool":
        spawn = Pool(3)
    active = [0]
    peak = [0]

    def handle(sock, address):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            data = sock.recv(10)
            gw.sleep(0.001)
            sock.sendall(data)
        finally:
            active[0] -= 1

    with StreamServer((LOCALHOST, 0), handle, spawn=spawn) as server:
        server.start()
        assert server.pool is not None and server.pool.size == 3
        jobs = [gw.spawn(roundtrip, server.server_port, b"%d" % i) for i in range(12)]
        gw.joinall(jobs, raise_error=True)
        assert [j.value for j in jobs] == [b"%d" % i for i in range(12)]
    assert peak[0] == 3


def test_max_accept_one_still_serves_everyone():
    class OneAtATime(StreamServer):
        max_accept = 1

    with OneAtATime((LOCALHOST, 0), echo) as server:
        server.start()
        jobs = [gw.spawn(roundtrip, server.server_port, b"m%d" % i) for i in range(20)]
        gw.joinall(jobs, raise_error=True)
        assert all(j.value == b"m%d" % i for i, j in enumerate(jobs))


def test_stop_kills_pooled_handlers_after_timeout():
    started = []

    def handle(sock, address):
        started.append(address)
        sock.recv(10)  # never gets anything

    server = StreamServer((LOCALHOST, 0), handle, spawn=2)
    server.start()
    client = gsocket.create_connection((LOCALHOST, server.server_port))
    while not started:
        gw.sleep(0)
    server.stop(timeout=0.01)
    assert len(server.pool) == 0
    assert client.recv(10) == b""  # handler killed, connection closed
    client.close()


def test_serve_forever_until_stop():
    server = StreamServer((LOCALHOST, 0), echo)
    runner = gw.spawn(server.serve_forever)
    while not server.started:
        gw.sleep(0)
    assert roundtrip(server.server_port) == b"hello"
    server.stop()
    with gw.Timeout(5):
        runner.get()
    assert server.closed


@pytest.mark.parametrize("kind", ["stream", "wsgi", "datagram"])
def test_serve_forever_in_a_greenlet_is_bound_after_one_sleep(kind):
    # As in gevent: binding (even to a host name) does not yield, so after
    # spawning serve_forever and one sleep(0) the socket is bound and a
    # client can connect (and is served once the server runs again).
    from greenwheel.pywsgi import WSGIServer

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    if kind == "stream":
        server = StreamServer(("localhost", 0), echo)
    elif kind == "wsgi":
        server = WSGIServer(("localhost", 0), app, log=None)
    else:
        server = DatagramServer(("localhost", 0), lambda data, address: None)
    runner = gw.spawn(server.serve_forever)
    try:
        gw.sleep(0)
        assert not server.closed
        port = server.server_port
        assert port and server.socket.getsockname()[1] == port
        if kind == "datagram":
            return
        with gsocket.socket() as sock:
            sock.connect((LOCALHOST, port))  # the kernel's backlog takes it
            with gw.Timeout(5):
                if kind == "stream":
                    sock.sendall(b"hi")
                    assert recv_exactly(sock, 2) == b"hi"
                else:
                    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    assert sock.makefile("rb").read().endswith(b"\r\n\r\nok")
    finally:
        server.stop()
        with gw.Timeout(5):
            runner.get()


def test_context_manager_stops():
    with StreamServer((LOCALHOST, 0), echo) as server:
        server.start()
    assert server.closed and not server.started


def test_base_server_is_abstract():
    class Nothing(BaseServer):
        pass

    server = Nothing((LOCALHOST, 0), handle=lambda: None)
    with pytest.raises(NotImplementedError):
        server.do_read()
    server.close()


# --- real clients outside the loop -------------------------------------------------------------


def test_stdlib_clients_in_threads():
    with StreamServer((LOCALHOST, 0), echo) as server:
        server.start()
        port = server.server_port

        def client():
            with stdsocket.create_connection((LOCALHOST, port), timeout=10) as s:
                s.sendall(b"threaded")
                return recv_exactly(s, 8)

        assert run_in_thread(client) == b"threaded"


def test_one_thousand_concurrent_connections_from_a_process():
    n = 1000
    ensure_nofile(n + 200)
    active = [0]
    peak = [0]

    def handle(sock, address):
        active[0] += 1
        peak[0] = max(peak[0], active[0])
        try:
            data = recv_exactly(sock, 6)
            sock.sendall(data[::-1])
            assert sock.recv(1) == b""  # keep the connection until the client closes
        finally:
            active[0] -= 1

    code = (
        "import resource, socket, sys\n"
        "n, port = int(sys.argv[1]), int(sys.argv[2])\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 100)), hard))\n"
        "socks = [socket.create_connection(('127.0.0.1', port), timeout=20) for _ in range(n)]\n"
        "for i, s in enumerate(socks):\n"
        "    s.sendall(b'%06d' % i)\n"
        "ok = 0\n"
        "for i, s in enumerate(socks):\n"
        "    data = b''\n"
        "    while len(data) < 6:\n"
        "        data += s.recv(6 - len(data))\n"
        "    ok += data == (b'%06d' % i)[::-1]\n"
        "for s in socks:\n"
        "    s.close()\n"
        "print(ok)\n"
    )
    server = StreamServer((LOCALHOST, 0), handle, backlog=n)
    server.start()
    try:
        assert run_process(code, n, server.server_port).strip() == str(n)
        with gw.Timeout(10):
            while active[0]:
                gw.sleep(0.001)
    finally:
        server.stop()
    assert peak[0] == n


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"))


def tls_roundtrip(port, cafile, payload=b"secret"):
    ctx = gssl.create_default_context(cafile=cafile)
    with ctx.wrap_socket(
        gsocket.create_connection((LOCALHOST, port)), server_hostname="localhost"
    ) as tls:
        tls.sendall(payload)
        return recv_exactly(tls, len(payload)), tls.version()


def test_tls_server_with_ssl_context(cert):
    certfile, keyfile = cert
    seen = []

    def handle(sock, address):
        seen.append(type(sock))
        echo(sock, address)

    # A plain standard-library context still yields cooperative sockets.
    ctx = stdssl.SSLContext(stdssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    with StreamServer((LOCALHOST, 0), handle, ssl_context=ctx) as server:
        server.start()
        assert server.ssl_enabled
        jobs = [gw.spawn(tls_roundtrip, server.server_port, certfile, b"c%d" % i) for i in range(5)]
        gw.joinall(jobs, raise_error=True)
        assert [j.value[0] for j in jobs] == [b"c%d" % i for i in range(5)]
    assert seen == [gssl.SSLSocket] * 5


def test_tls_server_with_certfile_keyfile_and_thread_client(cert):
    certfile, keyfile = cert
    with StreamServer((LOCALHOST, 0), echo, certfile=certfile, keyfile=keyfile) as server:
        server.start()
        data, version = tls_roundtrip(server.server_port, certfile)
        assert data == b"secret" and version.startswith("TLS")
        port = server.server_port

        def client():
            ctx = stdssl.create_default_context(cafile=certfile)
            raw = stdsocket.create_connection((LOCALHOST, port), timeout=10)
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"from thread")
                return recv_exactly(s, 11)

        assert run_in_thread(client) == b"from thread"


def test_tls_server_survives_a_plaintext_client(cert, quiet_hub):
    certfile, keyfile = cert
    with StreamServer((LOCALHOST, 0), echo, certfile=certfile, keyfile=keyfile) as server:
        server.start()
        with gsocket.create_connection((LOCALHOST, server.server_port)) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
            try:
                while plain.recv(1024):
                    pass
            except ConnectionResetError:
                pass  # the server dropped the connection with our bytes unread
        assert tls_roundtrip(server.server_port, certfile)[0] == b"secret"


def test_ssl_listener_is_rejected(cert):
    ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    sock = gsocket.socket()
    sock.bind((LOCALHOST, 0))
    sock.listen(1)
    tls = ctx.wrap_socket(sock, server_side=True)
    with pytest.raises(TypeError):
        StreamServer(tls, echo)
    tls.close()


def test_tls_handshake_times_out_and_each_failure_is_one_log_line(cert, quiet_hub, capsys):
    # A client that connects and sends nothing must not hold an fd and a
    # greenlet forever, and a failed handshake is the client's business: one
    # line, no traceback.
    certfile, keyfile = cert
    timeouts = []

    def handle(sock, address):
        timeouts.append(sock.gettimeout())
        echo(sock, address)

    assert StreamServer.handshake_timeout == 10.0
    ctx = stdssl.SSLContext(stdssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    for kwargs in ({"certfile": certfile, "keyfile": keyfile}, {"ssl_context": ctx}):
        with StreamServer((LOCALHOST, 0), handle, handshake_timeout=0.5, **kwargs) as server:
            server.start()
            assert server.handshake_timeout == 0.5
            port = server.server_port

            def silent_client(port=port):
                start = time.monotonic()
                with stdsocket.create_connection((LOCALHOST, port), timeout=10) as sock:
                    try:
                        data = sock.recv(1024)
                    except ConnectionResetError:
                        data = b""
                return data, time.monotonic() - start

            def plaintext_client(port=port):
                with stdsocket.create_connection((LOCALHOST, port), timeout=10) as sock:
                    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    try:
                        return sock.recv(1024)
                    except ConnectionResetError:
                        return b""

            data, elapsed = run_in_thread(silent_client)
            assert data == b"" and 0.4 < elapsed < 5, (data, elapsed)
            assert run_in_thread(plaintext_client) == b""
            # A real client still gets through, with the socket's own (no) timeout.
            assert tls_roundtrip(port, certfile)[0] == b"secret"
            assert timeouts == [None]
            timeouts.clear()
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "TLS handshake" in line]
        assert len(lines) == 2, err
        assert "timed out" in lines[0] and "127.0.0.1" in lines[0], lines
        assert "Traceback" not in err and "Traceback" not in quiet_hub.captured.getvalue(), (
            err + quiet_hub.captured.getvalue()
        )


def test_tls_handshake_timeout_none_means_no_limit(cert):
    certfile, keyfile = cert
    server = StreamServer(
        (LOCALHOST, 0), echo, certfile=certfile, keyfile=keyfile, handshake_timeout=None
    )
    assert server.handshake_timeout is None and "handshake_timeout" not in server.ssl_args
    server.close()
    with pytest.raises(ValueError, match="handshake_timeout"):
        StreamServer((LOCALHOST, 0), echo, certfile=certfile, handshake_timeout=-1)


# --- UDP -----------------------------------------------------------------------------------------


class UpperEcho(DatagramServer):
    def handle(self, data, address):
        self.sendto(data.upper(), address)


def test_datagram_server_echo():
    with UpperEcho((LOCALHOST, 0)) as server:
        server.start()
        with gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM) as client:
            client.settimeout(5)
            for word in (b"one", b"two", b"three"):
                client.sendto(word, server.address)
                data, addr = client.recvfrom(100)
                assert data == word.upper() and addr == server.address


def test_datagram_server_with_handle_function_and_thread_client():
    received = []

    def handle(data, address):
        received.append(data)
        server.sendto(b"ack:" + data, address)

    server = DatagramServer((LOCALHOST, 0), handle)
    server.start()
    port = server.server_port

    def client():
        with stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM) as s:
            s.settimeout(10)
            s.sendto(b"ping", (LOCALHOST, port))
            return s.recvfrom(100)[0]

    assert run_in_thread(client) == b"ack:ping"
    assert received == [b"ping"]
    server.stop()
    assert server.closed


def test_datagram_server_many_senders():
    with UpperEcho((LOCALHOST, 0)) as server:
        server.start()

        def client(i):
            with gsocket.socket(gsocket.AF_INET, gsocket.SOCK_DGRAM) as s:
                s.settimeout(5)
                s.sendto(b"msg%d" % i, server.address)
                return s.recvfrom(100)[0]

        jobs = [gw.spawn(client, i) for i in range(30)]
        gw.joinall(jobs, raise_error=True)
        assert sorted(j.value for j in jobs) == sorted(b"MSG%d" % i for i in range(30))


def test_server_output_streams_untouched():
    # A server must not write to stdout on the happy path (servers are often
    # run under process managers that treat stdout as data).
    buf = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(buf):
        with StreamServer((LOCALHOST, 0), echo) as server:
            server.start()
            roundtrip(server.server_port)
    assert buf.getvalue() == ""
