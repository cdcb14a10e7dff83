"""greenwheel.ssl: cooperative TLS, client and server side, with a test-made certificate."""

import socket as stdsocket
import ssl as stdssl
import time

import pytest

import greenwheel as gw
from _netutil import run_in_thread, run_process
from _tls import make_cert
from greenwheel import socket as gsocket
from greenwheel import ssl as gssl

LOCALHOST = "127.0.0.1"


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server_context(cert):
    certfile, keyfile = cert
    ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


@pytest.fixture
def client_context(cert):
    return gssl.create_default_context(cafile=cert[0])


def listener():
    sock = gsocket.socket()
    sock.bind((LOCALHOST, 0))
    sock.listen(64)
    return sock


def tls_echo_server(sock, context, connections=1):
    """Serve *connections* TLS echo connections on *sock* in greenlets."""

    def handle(conn):
        with context.wrap_socket(conn, server_side=True) as tls:
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                tls.sendall(data)

    def accept_loop():
        workers = []
        for _ in range(connections):
            conn, _ = sock.accept()
            workers.append(gw.spawn(handle, conn))
        gw.joinall(workers, raise_error=True)

    return gw.spawn(accept_loop)


def recv_exactly(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        assert chunk
        out += chunk
    return out


def test_module_surface():
    assert issubclass(gssl.SSLContext, stdssl.SSLContext)
    assert issubclass(gssl.SSLSocket, gsocket.socket)
    assert gssl.SSLError is stdssl.SSLError
    assert gssl.CERT_REQUIRED == stdssl.CERT_REQUIRED
    assert gssl.PROTOCOL_TLS_CLIENT == stdssl.PROTOCOL_TLS_CLIENT
    assert isinstance(gssl.create_default_context(), gssl.SSLContext)
    with pytest.raises(TypeError):
        gssl.SSLSocket()


def test_round_trip_greenlet_client_and_server(server_context, client_context):
    sock = listener()
    port = sock.getsockname()[1]
    server = tls_echo_server(sock, server_context, connections=5)

    def client(i):
        raw = gsocket.create_connection((LOCALHOST, port))
        with client_context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert isinstance(tls, gssl.SSLSocket)
            assert tls.version().startswith("TLS")
            assert tls.getpeercert()["subject"] == ((("commonName", "localhost"),),)
            for j in range(10):
                msg = b"client %d message %d" % (i, j)
                tls.sendall(msg)
                assert recv_exactly(tls, len(msg)) == msg
        return i

    jobs = [gw.spawn(client, i) for i in range(5)]
    gw.joinall(jobs, raise_error=True)
    server.get()
    sock.close()


def test_large_transfers_both_directions(server_context, client_context):
    # Far more than the socket buffers hold: exercises want-write waits.
    sock = listener()
    port = sock.getsockname()[1]
    server = tls_echo_server(sock, server_context)
    payload = bytes(range(256)) * 8192  # 2 MiB
    raw = gsocket.create_connection((LOCALHOST, port))
    tls = client_context.wrap_socket(raw, server_hostname="localhost")
    reader = gw.spawn(recv_exactly, tls, len(payload))
    tls.sendall(payload)
    assert reader.get() == payload
    tls.close()
    server.get()
    sock.close()


def test_stdlib_client_in_thread_against_greenwheel_server(cert, server_context):
    sock = listener()
    port = sock.getsockname()[1]
    server = tls_echo_server(sock, server_context)

    def client():
        ctx = stdssl.create_default_context(cafile=cert[0])
        with ctx.wrap_socket(
            stdsocket.create_connection((LOCALHOST, port), timeout=10), server_hostname="localhost"
        ) as s:
            s.sendall(b"hello from a thread")
            return recv_exactly(s, 19)

    assert run_in_thread(client) == b"hello from a thread"
    server.get()
    sock.close()


def test_stdlib_client_in_a_process(cert, server_context):
    sock = listener()
    port = sock.getsockname()[1]
    server = tls_echo_server(sock, server_context)
    code = (
        "import socket, ssl, sys\n"
        "ctx = ssl.create_default_context(cafile=sys.argv[2])\n"
        "raw = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
        "with ctx.wrap_socket(raw, server_hostname='localhost') as s:\n"
        "    s.sendall(b'process')\n"
        "    print(s.recv(100).decode(), s.version())\n"
    )
    out = run_process(code, port, cert[0]).split()
    assert out[0] == "process" and out[1].startswith("TLS")
    server.get()
    sock.close()


def test_greenwheel_client_against_stdlib_server_thread(cert):
    certfile, keyfile = cert
    raw_server = stdsocket.socket()
    raw_server.bind((LOCALHOST, 0))
    raw_server.listen(1)
    port = raw_server.getsockname()[1]

    def serve():
        ctx = stdssl.SSLContext(stdssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        raw_server.settimeout(10)
        conn, _ = raw_server.accept()
        with ctx.wrap_socket(conn, server_side=True) as s:
            data = s.recv(100)
            s.sendall(data[::-1])
        return data

    ctx = gssl.create_default_context(cafile=certfile)
    worker = gw.spawn(run_in_thread, serve)
    with ctx.wrap_socket(
        gsocket.create_connection((LOCALHOST, port)), server_hostname="localhost"
    ) as tls:
        tls.sendall(b"abcdef")
        assert recv_exactly(tls, 6) == b"fedcba"
    assert worker.get() == b"abcdef"
    raw_server.close()


def test_server_side_accept_on_wrapped_listener(server_context, client_context):
    sock = listener()
    port = sock.getsockname()[1]
    tls_listener = server_context.wrap_socket(sock, server_side=True)
    assert isinstance(tls_listener, gssl.SSLSocket)

    def serve():
        conn, addr = tls_listener.accept()
        with conn:
            assert isinstance(conn, gssl.SSLSocket) and conn.server_side
            conn.sendall(conn.recv(100).upper())

    g = gw.spawn(serve)
    with client_context.wrap_socket(gsocket.socket(), server_hostname="localhost") as tls:
        tls.connect((LOCALHOST, port))  # connect, then handshake
        tls.sendall(b"shout")
        assert recv_exactly(tls, 5) == b"SHOUT"
    g.get()
    tls_listener.close()


def test_makefile_over_tls(server_context, client_context):
    sock = listener()
    port = sock.getsockname()[1]
    server = tls_echo_server(sock, server_context)
    tls = client_context.wrap_socket(
        gsocket.create_connection((LOCALHOST, port)), server_hostname="localhost"
    )
    f = tls.makefile("rwb")
    f.write(b"first line\nsecond line\n")
    f.flush()
    assert f.readline() == b"first line\n"
    assert f.readline() == b"second line\n"
    f.close()
    tls.close()
    server.get()
    sock.close()


def test_unwrap_back_to_plaintext(server_context, client_context):
    sock = listener()
    port = sock.getsockname()[1]

    def serve():
        conn, _ = sock.accept()
        tls = server_context.wrap_socket(conn, server_side=True)
        assert tls.recv(5) == b"greet"
        plain = tls.unwrap()
        assert plain.recv(5) == b"plain"
        plain.sendall(b"PLAIN")
        plain.close()

    g = gw.spawn(serve)
    tls = client_context.wrap_socket(
        gsocket.create_connection((LOCALHOST, port)), server_hostname="localhost"
    )
    tls.sendall(b"greet")
    plain = tls.unwrap()
    assert plain is tls and tls.version() is None
    plain.sendall(b"plain")
    assert recv_exactly(plain, 5) == b"PLAIN"
    plain.close()
    g.get()
    sock.close()


def test_handshake_timeout(client_context):
    # A peer that accepts TCP but never speaks TLS.
    sock = listener()
    port = sock.getsockname()[1]
    accepted = gw.spawn(sock.accept)
    raw = gsocket.create_connection((LOCALHOST, port), timeout=0.05)
    start = time.monotonic()
    with pytest.raises(gsocket.timeout) as info:
        client_context.wrap_socket(raw, server_hostname="localhost")
    assert "handshake" in str(info.value)
    assert time.monotonic() - start < 5
    conn, _ = accepted.get()
    conn.close()
    sock.close()


def test_read_timeout_and_close_while_waiting(server_context, client_context):
    sock = listener()
    port = sock.getsockname()[1]
    server = tls_echo_server(sock, server_context)
    tls = client_context.wrap_socket(
        gsocket.create_connection((LOCALHOST, port)), server_hostname="localhost"
    )
    tls.settimeout(0.05)
    with pytest.raises(gsocket.timeout):
        tls.recv(10)
    tls.settimeout(None)
    g = gw.spawn(tls.recv, 10)
    gw.sleep(0)
    tls.close()
    with gw.Timeout(5):
        with pytest.raises(OSError):
            g.get()
    server.get()
    sock.close()


def test_certificate_verification_failure(server_context):
    sock = listener()
    port = sock.getsockname()[1]

    def serve():
        conn, _ = sock.accept()
        with pytest.raises((gssl.SSLError, OSError)):
            server_context.wrap_socket(conn, server_side=True)
        conn.close()

    g = gw.spawn(serve)
    strict = gssl.create_default_context()  # does not trust our self-signed cert
    with pytest.raises(gssl.SSLCertVerificationError):
        strict.wrap_socket(
            gsocket.create_connection((LOCALHOST, port)), server_hostname="localhost"
        )
    g.get()
    sock.close()


def test_sni_callback_receives_the_greenwheel_socket(cert, client_context):
    certfile, keyfile = cert
    seen = []
    ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certfile, keyfile)
    ctx.sni_callback = lambda sslsock, name, context: seen.append((type(sslsock), name))
    sock = listener()
    port = sock.getsockname()[1]
    server = tls_echo_server(sock, ctx)
    with client_context.wrap_socket(
        gsocket.create_connection((LOCALHOST, port)), server_hostname="localhost"
    ) as tls:
        tls.sendall(b"x")
        assert tls.recv(1) == b"x"
    server.get()
    assert seen == [(gssl.SSLSocket, "localhost")]
    sock.close()


def test_legacy_wrap_socket_and_get_server_certificate(cert):
    certfile, keyfile = cert
    sock = listener()
    port = sock.getsockname()[1]

    def serve(count):
        for _ in range(count):
            conn, _ = sock.accept()
            try:
                tls = gssl.wrap_socket(conn, certfile=certfile, keyfile=keyfile, server_side=True)
            except (gssl.SSLError, OSError):
                conn.close()
                continue
            with tls:
                data = tls.recv(100)
                if data:
                    tls.sendall(data)

    g = gw.spawn(serve, 2)
    client = gssl.wrap_socket(gsocket.create_connection((LOCALHOST, port)))
    client.sendall(b"legacy")
    assert recv_exactly(client, 6) == b"legacy"
    client.close()
    pem = gssl.get_server_certificate((LOCALHOST, port))
    with open(certfile) as f:
        assert stdssl.PEM_cert_to_DER_cert(pem) == stdssl.PEM_cert_to_DER_cert(f.read())
    g.get()
    sock.close()
