"""The native request loop of pywsgi (``_core.serve_requests``) against the
Python path it stands in for.

The loop serves the usual keep-alive request in Rust and hands everything
else to the handler at the point it sees it (see rust/py/wsgi_serve.rs).  The
model test runs random applications and requests through two servers, one
whose handler takes the native loop and one whose handler (a subclass
overriding a response-side hook) takes the Python fused path for every
request, and asserts that the client receives the same bytes from both, Date
lines aside.  tests/test_pywsgi.py runs its whole suite on both paths too.
"""

import io
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _netutil import run_in_thread
from greenwheel import socket as gsocket
from greenwheel.pywsgi import Input, WSGIHandler, WSGIServer

LOCALHOST = "127.0.0.1"


class PythonPathHandler(WSGIHandler):
    """Every request through the Python fused path (the specification)."""

    def run_application(self):
        return WSGIHandler.run_application(self)


assert WSGIHandler._native and not PythonPathHandler._native and PythonPathHandler._plain


class Boom(Exception):
    pass


# What the application does for the current example (both servers run the
# same one, one after the other).
_behaviour = {}
# One entry per close() of an application's result.
_closes = []


class Bytes(bytes):
    pass


class Closing:
    """An iterable with close(), as Werkzeug's (so Flask's) results are; it
    raises Boom before its item number *raise_at* (len(items): at the end)."""

    def __init__(self, items, raise_at=None, close_raises=False):
        self.items = items
        self.raise_at = raise_at
        self.close_raises = close_raises

    def __iter__(self):
        for i, item in enumerate(self.items):
            if i == self.raise_at:
                raise Boom("mid-way")
            yield item
        if self.raise_at == len(self.items):
            raise Boom("at the end")

    def close(self):
        _closes.append(1)
        if self.close_raises:
            raise Boom("in close")


def model_app(environ, start_response):
    b = _behaviour
    body = environ["wsgi.input"].read()
    pieces = [p.replace(b"<body>", body) for p in b["pieces"]]
    headers = [("Content-Type", "text/plain")]
    declared = b["declared"]
    total = sum(len(p) for p in pieces)
    if declared is not None:
        headers.append(("Content-Length", str(max(total + declared, 0))))
    if b["close"]:
        headers.append(("Connection", "close"))
    mode = b["mode"]
    kind = b["kind"]
    if kind == "late":
        # A generator that starts the response when first iterated.
        def late():
            start_response(b["status"], headers)
            yield from pieces

        return late()
    if mode == "raise_before":
        raise Boom("before start_response")
    if mode != "no_start":
        write = start_response(b["status"], headers)
    if mode == "exc_info":
        try:
            raise Boom("replaced")
        except Boom:
            import sys

            write = start_response("500 Internal Server Error", headers, sys.exc_info())
    if mode == "raise_after":
        raise Boom("after start_response")
    if mode == "write":
        for p in pieces:
            write(p)
        return []
    if kind == "tuple":
        return tuple(pieces)
    if kind == "generator":
        return iter(pieces)
    if kind == "bytearray":
        return [bytearray(p) for p in pieces]
    if kind == "closing":
        return Closing(pieces)
    if kind == "closing_raises":
        return Closing(pieces, close_raises=True)
    if kind == "raising":
        return Closing(pieces, raise_at=b["raise_at"] % (len(pieces) + 1))
    if kind == "subclass":
        return Closing([Bytes(p) for p in pieces])
    if kind == "str":
        return Closing([p.decode("latin-1") for p in pieces])
    if kind == "restart":
        # start_response again from the iteration, before and after the
        # first item (refused once the head was sent).
        def restart():
            for p in pieces:
                start_response("201 Created", headers)
                yield p

        return restart()
    if kind == "write_mid":

        def write_mid():
            for p in pieces:
                yield p
                write(p)

        return write_mid()
    return pieces


def usually(value, *others):
    """*value* about half the time (the usual case must come up often: it is
    the one the native loop serves), else one of *others*."""
    return st.one_of(st.just(value), st.sampled_from(others))


@st.composite
def behaviours(draw):
    return {
        "status": draw(
            usually("200 OK", "201 Created", "204 No Content", "304 Not Modified", "404 Not Found")
        ),
        "pieces": draw(
            st.lists(
                usually(b"hello", b"", b"<body>", b"x" * 70000, b"\xff" * 3),
                max_size=3,
            )
        ),
        # The Content-Length the application gives, relative to its body
        # (None: none given).
        "declared": draw(usually(None, 0, 0, -1, 1)),
        "close": draw(usually(False, True)),
        "mode": draw(
            usually("return", "write", "raise_before", "raise_after", "no_start", "exc_info")
        ),
        "kind": draw(
            st.sampled_from(
                [
                    "list",
                    "tuple",
                    "generator",
                    "bytearray",
                    "closing",
                    "closing_raises",
                    "raising",
                    "subclass",
                    "str",
                    "late",
                    "restart",
                    "write_mid",
                ]
            )
        ),
        "raise_at": draw(st.integers(0, 3)),
    }


@st.composite
def request_streams(draw):
    """One to three requests sent at once; the last asks for the close."""
    n = draw(st.integers(1, 3))
    out = []
    for i in range(n):
        method = draw(usually("GET", "HEAD", "POST"))
        version = draw(usually("HTTP/1.1", "HTTP/1.0"))
        lines = ["%s /p?q=%d %s" % (method, i, version), "Host: x"]
        last = i == n - 1
        if version == "HTTP/1.0":
            if not last:
                lines.append("Connection: keep-alive")
        elif last:
            lines.append("Connection: close")
        body = ""
        if method == "POST":
            body = "hi"
            lines.append("Content-Length: 2")
        out.append("\r\n".join(lines) + "\r\n\r\n" + body)
    return "".join(out).encode("latin-1")


def exchange(port, data):
    def client():
        with gsocket.__socket__.create_connection((LOCALHOST, port), timeout=15) as sock:
            sock.sendall(data)
            chunks = []
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)

    return run_in_thread(client)


def exchange_with(app, data, log=None):
    """What a client sending *data* on one connection gets back from a
    WSGIServer serving *app* (started for this and stopped after)."""
    server = WSGIServer((LOCALHOST, 0), app, log=log)
    server.start()
    try:
        return exchange(server.server_port, data)
    finally:
        server.stop()


_DATE = re.compile(rb"Date: [^\r]*\r\n")


def start(handler_class, **kwargs):
    server = WSGIServer(
        (LOCALHOST, 0),
        model_app,
        handler_class=handler_class,
        log=None,
        error_log=io.StringIO(),
        **kwargs,
    )
    server.start()
    return server


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(behaviour=behaviours(), data=request_streams())
def test_the_native_loop_answers_as_the_python_path(behaviour, data):
    # The native loop, and the native loop parking its connection whenever it
    # waits for bytes (a new greenlet each time they come), against the
    # Python path.
    python = start(PythonPathHandler)
    native = start(WSGIHandler)
    parked = start(WSGIHandler, park_idle_after=0)
    try:
        _behaviour.clear()
        _behaviour.update(behaviour)
        del _closes[:]
        want = exchange(python.server_port, data)
        wanted_error = "Error handling" in python.error_log.getvalue()
        wanted_closes = len(_closes)
        for server in (native, parked):
            del _closes[:]
            got = exchange(server.server_port, data)
            assert _DATE.sub(b"", got) == _DATE.sub(b"", want)
            assert ("Error handling" in server.error_log.getvalue()) == wanted_error
            assert len(_closes) == wanted_closes
    finally:
        native.stop()
        parked.stop()
        python.stop()


def test_usual_requests_call_no_python_hook_and_the_others_are_handed_over(monkeypatch):
    calls = []

    def counting(name):
        real = getattr(WSGIHandler, name)

        def hook(self, *args):
            calls.append(name)
            return real(self, *args)

        return hook

    for name in ("_adopt", "handle_one_response", "_next_request_head"):
        monkeypatch.setattr(WSGIHandler, name, counting(name))

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        if environ["PATH_INFO"] == "/stream":
            return iter([b"a", b"b"])
        return [b"usual"]

    server = WSGIServer((LOCALHOST, 0), app, log=None)
    server.start()
    try:
        usual = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        got = exchange(
            server.server_port, usual * 3 + b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        assert got.count(b"200 OK") == 4 and got.count(b"usual") == 4
        assert calls == []
        # A streamed body: begun natively, finished by the handler.
        got = exchange(server.server_port, b"GET /stream HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert got.endswith(b"1\r\na\r\n1\r\nb\r\n0\r\n\r\n")
        assert calls == ["_adopt"]
        # A request with a body: the fused path, from the head on.
        del calls[:]
        got = exchange(
            server.server_port,
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
            + usual
            + b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        assert got.count(b"200 OK") == 3
        assert calls == ["_next_request_head", "handle_one_response"]
    finally:
        server.stop()


def test_a_whole_body_iterable_with_close_is_served_natively(monkeypatch):
    # Werkzeug's (so Flask's) result: an iterable with close(), one item of
    # the Content-Length given.  Served without the handler, and closed once
    # per request; a result that is not the usual one (here a second
    # non-empty item) is handed over part way and closed once too.
    adopted = []
    real = WSGIHandler._adopt

    def _adopt(self, *args):
        adopted.append(1)
        return real(self, *args)

    monkeypatch.setattr(WSGIHandler, "_adopt", _adopt)
    closed = []

    class Result:
        def __init__(self, items):
            self.items = items

        def __iter__(self):
            return iter(self.items)

        def close(self):
            closed.append(1)

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        if environ["PATH_INFO"] == "/two":
            return Result([b"he", b"llo"])
        return Result([b"", b"hello", b""])

    usual = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    got = exchange_with(app, usual * 3 + b"GET /two HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert got.count(b"200 OK") == 4 and got.count(b"\r\n\r\nhello") == 4
    assert adopted == [1] and len(closed) == 4


def test_logging_servers_take_the_python_path(monkeypatch):
    # The native loop writes no access log: a server that logs serves every
    # request the Python way, and logs each.
    log = io.StringIO()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    exchange_with(
        app, b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\nConnection: close\r\n\r\n", log=log
    )
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and '"GET /a HTTP/1.1" 200' in lines[0], lines


def test_each_response_has_its_own_head_when_an_application_varies_it():
    # The native loop reuses the last checked head while status and headers
    # have the same texts: a head that changes in any part must show.
    class Loud(str):
        def __str__(self):
            return "LOUD"

    n = [0]
    shared = [("Content-Type", "text/plain"), ("X-N", "0")]

    def app(environ, start_response):
        n[0] += 1
        i = n[0]
        if i == 2:
            shared[1] = ("X-N", "2")  # the same list, changed in place
        headers = shared
        if i == 3:
            headers = tuple(shared)
        if i == 4:
            headers = [("Content-Type", "text/plain"), ("X-N", Loud("4"))]
        status = "200 OK" if i != 5 else "201 Created"
        start_response(status, headers)
        return [b"r%d" % i]

    got = exchange_with(
        app, b"GET / HTTP/1.1\r\n\r\n" * 5 + b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    heads = re.findall(rb"HTTP/1\.1 ([^\r]*)\r\n(.*?)\r\n\r\n", got, re.S)
    assert [status for status, _ in heads] == [b"200 OK"] * 4 + [b"201 Created", b"200 OK"]
    values = [re.search(rb"X-N: (\S+)", h).group(1) for _, h in heads]
    assert values == [b"0", b"2", b"2", b"LOUD", b"2", b"2"]


def test_connections_leave_no_handler_or_start_response_behind():
    # The native start_response refers to its handler (and the application
    # may keep it): once the connections are over, the collector frees both.
    import gc

    from greenwheel import _core

    kept = []

    def app(environ, start_response):
        kept.append(start_response)  # an application that holds on to it
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    server = WSGIServer((LOCALHOST, 0), app, log=None)
    server.start()
    try:
        for _ in range(5):
            exchange(
                server.server_port,
                b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            )
    finally:
        server.stop()
    assert len(kept) == 10 and all(type(s) is _core.start_response for s in kept)

    def alive(kind):
        return [o for o in gc.get_objects() if type(o) is kind]

    # Without the collector: nothing of a finished connection is in a cycle.
    gc.disable()
    try:
        gc.collect()
        del kept[:]
        assert alive(WSGIHandler) == [] and alive(_core.start_response) == []
    finally:
        gc.enable()


def _plain_clients(port, n):
    """n connected stdlib sockets: what they send is in the kernel before
    the loop runs again (none of this yields to it)."""
    return [gsocket.__socket__.create_connection((LOCALHOST, port)) for _ in range(n)]


def _get(sock, path):
    sock.sendall(b"GET %s HTTP/1.1\r\n\r\n" % path)


def _response_or_end(sock, body):
    """The bytes up to the end of a response whose body is *body*, or all
    that came before the connection was closed."""
    from greenwheel.socket import wait_read

    got = b""
    while not got.endswith(b"\r\n\r\n" + body):
        wait_read(sock.fileno(), timeout=10, timeout_exc=AssertionError(f"no response: {got}"))
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def _read_response(sock, body):
    """The bytes up to the end of a response whose body is *body*."""
    got = _response_or_end(sock, body)
    assert got.endswith(b"\r\n\r\n" + body), f"closed after {got}"
    return got


def _waiting_bytes(sock):
    try:
        return sock.recv(1, gsocket.__socket__.MSG_PEEK | gsocket.__socket__.MSG_DONTWAIT)
    except BlockingIOError:
        return b""


def _body_app(seen, peek):
    def app(environ, start_response):
        me = environ["PATH_INFO"]
        seen.append((me, peek(me)))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [me.encode()]

    return app


@pytest.mark.parametrize(
    "handler_class, log",
    [(WSGIHandler, None), (PythonPathHandler, None), (WSGIHandler, "log")],
    ids=["native", "python-path", "logging"],
)
def test_the_responses_of_one_poll_leave_after_all_its_applications_ran(handler_class, log):
    # Two keep-alive connections whose next requests one poll finds ready:
    # neither response is sent before both applications have run (one burst
    # of sends, one wake-up of the client), whichever is dispatched first;
    # on the native loop and the Python handler (a logging server takes it).
    seen = []
    clients = {}
    server = WSGIServer(
        (LOCALHOST, 0),
        _body_app(seen, lambda me: _waiting_bytes(clients[b"/b" if me == "/a" else b"/a"])),
        handler_class=handler_class,
        log=io.StringIO() if log else None,
    )
    server.start()
    a, b = _plain_clients(server.server_port, 2)
    clients.update({b"/a": a, b"/b": b})
    try:
        for path, sock in clients.items():  # each connection's first request
            _get(sock, path)
            _read_response(sock, path)
        del seen[:]
        for path, sock in clients.items():
            _get(sock, path)
        for path, sock in clients.items():
            _read_response(sock, path)
    finally:
        a.close()
        b.close()
        server.stop()
    assert sorted(seen) == [("/a", b""), ("/b", b"")]
    if log:
        assert server.log.getvalue().count(" 200 ") == 4


def test_a_response_does_not_wait_for_callbacks_its_application_queued():
    # As in gevent: what the application queued (a spawn, a callback) runs
    # after its response was sent, when no other connection is waiting.
    from greenwheel import get_hub

    seen = []
    later = []
    clients = []

    def peek(me):
        get_hub().loop.run_callback(lambda: later.append(_waiting_bytes(clients[0])))
        return b""

    server = WSGIServer((LOCALHOST, 0), _body_app(seen, peek), log=None)
    server.start()
    clients.extend(_plain_clients(server.server_port, 1))
    try:
        for _ in range(2):  # the first request, then a keep-alive one
            _get(clients[0], b"/")
            _read_response(clients[0], b"/")
    finally:
        clients[0].close()
        server.stop()
    assert later == [b"H", b"H"]


def test_a_handler_killed_while_its_response_waits_closes_the_result():
    # The first application of the poll returned an iterable with close()
    # (as Flask's); its handler is killed while the response waits for the
    # other connection's application: the result is closed, nothing is
    # sent, and the connection is closed.  The other connection is served.
    import greenlet

    from greenwheel import get_hub

    closed = []
    first = []
    clients = {}
    state = {"kill": False}

    class Result:
        def __init__(self, body):
            self.body = body

        def __iter__(self):
            return iter([self.body])

        def close(self):
            closed.append(self.body)

    def app(environ, start_response):
        me = environ["PATH_INFO"].encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(me)))])
        if state["kill"]:
            if not first:
                first.append((me, greenlet.getcurrent()))
            else:
                # Come back here once the killed handler is done.
                current = greenlet.getcurrent()
                get_hub().loop.run_callback(current.switch)
                first[0][1].throw()
        return Result(me)

    server = WSGIServer((LOCALHOST, 0), app, log=None)
    server.start()
    a, b = _plain_clients(server.server_port, 2)
    clients.update({b"/a": a, b"/b": b})
    try:
        for path, sock in clients.items():
            _get(sock, path)
            _read_response(sock, path)
        del closed[:]
        state["kill"] = True
        for path, sock in clients.items():
            _get(sock, path)
        got = {path: _response_or_end(sock, path) for path, sock in clients.items()}
    finally:
        a.close()
        b.close()
        server.stop()
    killed = first[0][0]
    served = b"/b" if killed == b"/a" else b"/a"
    assert got[killed] == b"" and got[served].endswith(b"\r\n\r\n" + served)
    assert sorted(closed) == [b"/a", b"/b"]


def test_each_request_gets_a_wsgi_input_of_its_own():
    # The native loop serves a bodiless request's wsgi.input again when the
    # last request let go of it (wsgi_serve.rs, new_input): it must be
    # indistinguishable from a new one, whatever the last application did to
    # it, and one an application still holds is never handed out again.
    seen = []
    kept = []

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        seen.append((type(stream), stream.position, stream.content_length, stream.read()))
        n = len(seen)
        if n == 1:
            stream.position = 7  # an application tampering with it
            stream.content_length = 9
        elif n == 2:
            stream.chunked_input = True
        elif n == 3:
            kept.append(stream)
        elif n == 4:
            seen.append(stream is kept[0])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    got = exchange_with(
        app, b"GET / HTTP/1.1\r\n\r\n" * 4 + b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    assert got.count(b"HTTP/1.1 200 OK") == 5
    fresh = (Input, 0, 0, b"")
    assert seen == [fresh, fresh, fresh, fresh, False, fresh]
    assert (kept[0].position, kept[0].content_length, kept[0].read()) == (0, 0, b"")
