"""Idle keep-alive connections that park (WSGIServer.park_idle_after).

A kept-alive connection that has waited ``park_idle_after`` seconds for its
next request gives up its greenlet: the loop watches its socket alone, and
the next request is served by a new greenlet running the same handler.
These tests pin what a user sees of that: the responses, the connection
(the same socket and handler), the greenlets, the idle timeout, the close,
and the servers whose connections never park.

The clients are greenwheel sockets in the test's own hub, so that the
virtual clock (which jumps when every greenlet waits) times idle periods
exactly.
"""

import gc
import io
import weakref

import greenlet
import pytest

import greenwheel as gw
from greenwheel import _core
from greenwheel import socket as gsocket
from greenwheel.pool import Pool
from greenwheel.pywsgi import WSGIHandler, WSGIServer

LOCALHOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


class Recorder:
    """A WSGI app that records, per request, the greenlet and handler serving it."""

    def __init__(self):
        self.greenlets = []
        self.ports = []

    def __call__(self, environ, start_response):
        self.greenlets.append(greenlet.getcurrent())
        self.ports.append(environ["REMOTE_PORT"])
        body = b"n=%d" % len(self.greenlets)
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]


class Server(WSGIServer):
    """A WSGIServer that records the connections it closed."""

    def __init__(self, *args, **kwargs):
        self.closed_connections = []
        WSGIServer.__init__(self, *args, **kwargs)

    def do_close(self, sock, *args):
        self.closed_connections.append(sock)
        WSGIServer.do_close(self, sock, *args)


def serve(app, **kwargs):
    kwargs.setdefault("log", None)
    kwargs.setdefault("error_log", io.StringIO())
    server = kwargs.pop("server_class", Server)((LOCALHOST, 0), app, **kwargs)
    server.start()
    return server


def hang_up(sock, server, connections=1):
    """Close *sock* and wait for the server to close its side."""
    sock.close()
    until(lambda: len(server.closed_connections) >= connections, "the server closed the connection")


def ask(sock):
    """Send one request on *sock* and return the response's body."""
    sock.sendall(REQUEST)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += sock.recv(4096)
    return body


def until(condition, what):
    """Let the hub run until *condition()* holds (bounded, so never a hang)."""
    for _ in range(10_000):
        if condition():
            return
        gw.sleep(0)
    raise AssertionError("never happened: " + what)


def live_connection_greenlets():
    # The greenlets serving connections: a connection's greenlet runs the
    # server's handle through BaseServer.do_handle's spawn.
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, gw.Greenlet) and not o.dead and o.args and callable(o.args[0])
    ]


def test_an_idle_connection_gives_up_its_greenlet_and_the_next_request_gets_a_new_one():
    app = Recorder()
    server = serve(app, park_idle_after=0)
    try:
        sock = gsocket.create_connection((LOCALHOST, server.server_port))
        assert ask(sock) == b"n=1"
        first = app.greenlets[0]
        until(lambda: first.dead, "the first request's greenlet ended")
        assert live_connection_greenlets() == []
        assert ask(sock) == b"n=2"
        assert ask(sock) == b"n=3"
        hang_up(sock, server)
        # One connection throughout, one greenlet per request after an idle wait.
        assert len(set(app.ports)) == 1
        assert len({id(g) for g in app.greenlets}) == 3
        assert all(isinstance(g, gw.Greenlet) for g in app.greenlets)
    finally:
        server.stop()


def test_a_busy_connection_keeps_its_greenlet(virtual_clock):
    # Requests that arrive within park_idle_after never see a park: no time
    # passes on the virtual clock between them.
    app = Recorder()
    server = serve(app)
    assert server.park_idle_after == 0.1
    try:
        sock = gsocket.create_connection((LOCALHOST, server.server_port))
        for n in range(1, 51):
            assert ask(sock) == b"n=%d" % n
        hang_up(sock, server)
        assert len({id(g) for g in app.greenlets}) == 1
    finally:
        server.stop()


def test_a_connection_parks_after_park_idle_after_seconds(virtual_clock):
    app = Recorder()
    server = serve(app, park_idle_after=5)
    try:
        sock = gsocket.create_connection((LOCALHOST, server.server_port))
        ask(sock)
        first = app.greenlets[0]
        gw.sleep(4.9)
        assert not first.dead
        gw.sleep(0.2)
        assert first.dead
        assert ask(sock) == b"n=2"
        hang_up(sock, server)
    finally:
        server.stop()


@pytest.mark.parametrize("park_idle_after", [0, 3])
def test_the_idle_timeout_counts_from_the_response_whether_parked_or_not(
    virtual_clock, park_idle_after
):
    # The connection is closed keepalive_timeout after its last response,
    # exactly, the parked part of the wait included.
    server = serve(Recorder(), park_idle_after=park_idle_after, keepalive_timeout=20)
    try:
        with gsocket.create_connection((LOCALHOST, server.server_port)) as sock:
            ask(sock)
            answered = virtual_clock.now()
            assert sock.recv(100) == b""  # the server's close
            assert virtual_clock.now() - answered == pytest.approx(20, abs=0.01)
        until(lambda: server.closed_connections, "the server closed its side")
        assert len(server.closed_connections) == 1 and server.closed_connections[0].closed
    finally:
        server.stop()


def test_a_parked_connection_with_no_idle_timeout_waits_for_ever(virtual_clock):
    app = Recorder()
    server = serve(app, park_idle_after=0, keepalive_timeout=None)
    try:
        sock = gsocket.create_connection((LOCALHOST, server.server_port))
        ask(sock)
        gw.sleep(10_000)
        assert ask(sock) == b"n=2"
        hang_up(sock, server)
    finally:
        server.stop()


def test_a_parked_connection_the_client_closes_leaves_nothing_behind():
    handlers = []

    class Handler(WSGIHandler):
        def __init__(self, *args):
            WSGIHandler.__init__(self, *args)
            handlers.append(weakref.ref(self))

    assert Handler._native
    app = Recorder()
    server = serve(app, handler_class=Handler, park_idle_after=0)
    try:
        for n in range(1, 4):
            sock = gsocket.create_connection((LOCALHOST, server.server_port))
            ask(sock)
            until(lambda: app.greenlets[-1].dead, "the connection parked")
            hang_up(sock, server, n)
    finally:
        server.stop()
    closes = server.closed_connections
    assert len(closes) == 3
    assert all(s.closed for s in closes)
    del app.greenlets[:]
    # Nothing of a parked and closed connection is left, not even for the
    # cyclic collector.
    gc.disable()
    try:
        assert [ref() for ref in handlers] == [None, None, None]
    finally:
        gc.enable()
    assert live_connection_greenlets() == []


def test_a_parked_connection_outlives_stop_like_a_waiting_one():
    # Without a pool, stop() closes the listener and leaves the connections
    # being served (gevent's rule): a parked one too.
    app = Recorder()
    server = serve(app, park_idle_after=0)
    sock = gsocket.create_connection((LOCALHOST, server.server_port))
    ask(sock)
    until(lambda: app.greenlets[-1].dead, "the connection parked")
    server.stop()
    assert ask(sock) == b"n=2"
    hang_up(sock, server)


class OwnHandle(Server):
    def handle(self, sock, address):
        return WSGIServer.handle(self, sock, address)


class HandlerOwnHandle(WSGIHandler):
    def handle(self):
        return WSGIHandler.handle(self)


class OwnDoHandle(Server):
    def do_handle(self, *args):
        return WSGIServer.do_handle(self, *args)


@pytest.mark.parametrize(
    "make_kwargs",
    [
        lambda: {"spawn": Pool(10)},
        lambda: {"spawn": 10},
        lambda: {"spawn": lambda *args: gw.spawn(*args)},
        lambda: {"server_class": OwnHandle},
        lambda: {"server_class": OwnDoHandle},
        lambda: {"handler_class": HandlerOwnHandle},
        lambda: {"park_idle_after": None},
    ],
    ids=[
        "pool",
        "pool-size",
        "own-spawn",
        "own-handle",
        "own-do_handle",
        "handler-own-handle",
        "none",
    ],
)
def test_connections_keep_their_greenlet_where_a_server_may_count_on_it(virtual_clock, make_kwargs):
    # A Pool counts connections by their greenlets, and another spawn or an
    # overridden handle()/do_handle() (of the server, or the handler's
    # handle()) may expect one greenlet per connection, or handle() to return
    # at the connection's end: those connections never park.
    app = Recorder()
    kwargs = make_kwargs()
    kwargs.setdefault("park_idle_after", 0)
    server = serve(app, **kwargs)
    try:
        sock = gsocket.create_connection((LOCALHOST, server.server_port))
        ask(sock)
        gw.sleep(5)
        ask(sock)
        hang_up(sock, server)
        assert len({id(g) for g in app.greenlets}) == 1
    finally:
        server.stop()


def test_park_idle_after_is_checked():
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match="park_idle_after must be None or >= 0"):
            WSGIServer((LOCALHOST, 0), Recorder(), park_idle_after=bad)


def test_many_idle_connections_hold_no_greenlet(virtual_clock):
    # The point of parking: an idle keep-alive connection is its socket, its
    # handler and a watcher, not a suspended greenlet with its stacks.
    app = Recorder()
    server = serve(app, park_idle_after=1)
    socks = []
    try:
        for _ in range(50):
            sock = gsocket.create_connection((LOCALHOST, server.server_port))
            socks.append(sock)
            ask(sock)
        gw.sleep(1.5)  # every connection has waited in its greenlet, then parked
        assert all(g.dead for g in app.greenlets)
        assert live_connection_greenlets() == []
        # Nor do they keep their ended greenlets (or those greenlets' stacks).
        ended = [weakref.ref(g) for g in app.greenlets]
        del app.greenlets[:]
        gc.disable()
        try:
            assert [g for g in (ref() for ref in ended) if g is not None] == []
        finally:
            gc.enable()
        watchers = [o for o in gc.get_objects() if type(o) is _core.IoWatcher and o.active]
        # Each connection's read watcher, and the listener's.
        assert len(watchers) == 51
        for n, sock in enumerate(socks):
            assert ask(sock) == b"n=%d" % (1 + n)
        for n, sock in enumerate(socks, 1):
            hang_up(sock, server, n)
    finally:
        for sock in socks:
            sock.close()
        server.stop()
