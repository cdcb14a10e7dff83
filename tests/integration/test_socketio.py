"""Flask-SocketIO in gevent mode on greenwheel, with gevent-websocket.

The server is an unmodified Flask-SocketIO application (``async_mode="gevent"``)
on gevent's pywsgi server with gevent-websocket's ``WebSocketHandler``, run
through the alias (``python -m greenwheel.as_gevent server.py``): every
``gevent`` import in Flask-SocketIO, python-engineio and gevent-websocket gets
greenwheel. The client is python-socketio's (threads and websocket-client) in
this process, on the websocket transport only.
"""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from _childproc import child_env

pytest.importorskip("flask_socketio")
pytest.importorskip("geventwebsocket")
socketio = pytest.importorskip("socketio")
pytestmark = pytest.mark.timeout(90)

MESSAGES = 1000

SERVER = r"""
import sys, time
from flask import Flask, request
from flask_socketio import SocketIO, emit

app = Flask(__name__)
sio = SocketIO(app, async_mode="gevent")
received = []


@sio.on("connect")
def connect(*args):
    # The websocket the handler made for this connection (no polling first).
    ws = request.environ.get("wsgi.websocket")
    print("CONNECT %s" % type(ws).__module__, flush=True)


@sio.on("msg")
def msg(data):
    received.append(data["i"])
    emit("reply", {"i": data["i"]})


@sio.on("burst")
def burst(count):
    for i in range(count):
        emit("push", {"i": i})
    return "sent"


@sio.on("stats")
def stats():
    return {"received": len(received), "in_order": received == list(range(len(received)))}


@sio.on("disconnect")
def disconnect(*args):
    # Wall-clock time, to compare with the client's (same machine).
    print("DISCONNECT %.6f" % time.time(), flush=True)


if __name__ == "__main__":
    import gevent
    from gevent import pywsgi
    from geventwebsocket.handler import WebSocketHandler

    print("GEVENT %s %s" % (gevent.__name__, sio.async_mode), flush=True)
    server = pywsgi.WSGIServer(
        ("127.0.0.1", 0), app, handler_class=WebSocketHandler, log=None
    )
    server.start()
    print("PORT %d" % server.server_port, flush=True)
    server.serve_forever()
"""


class Server:
    def __init__(self, directory):
        script = directory / "sio_server.py"
        script.write_text(SERVER)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "greenwheel.as_gevent", str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        self.lines = []
        self.stderr = []
        self._cond = threading.Condition()
        # Reader threads: the test waits for the server's lines, never on a
        # blocking read that could outlive a dead server.
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream, into):
        for line in stream:
            with self._cond:
                into.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, prefix, timeout=20):
        """The first stdout line starting with *prefix* (waits for it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                remaining = deadline - time.monotonic()
                if (
                    remaining <= 0
                    or self.proc.poll() is not None
                    and not self._threads[0].is_alive()
                ):
                    raise AssertionError(
                        "no %r line from the server; stdout %s; stderr:\n%s"
                        % (prefix, self.lines, "\n".join(self.stderr[-30:]))
                    )
                self._cond.wait(remaining)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(15)
        for thread in self._threads:
            thread.join(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def test_websocket_messages_both_ways_and_a_prompt_disconnect(server):
    assert server.wait_line("GEVENT") == "GEVENT greenwheel gevent"
    port = int(server.wait_line("PORT").split()[1])

    # handle_sigint=False: the client would install its SIGINT handler in the
    # test process for good.
    client = socketio.Client(handle_sigint=False)
    replies, pushes = [], []
    all_replies, all_pushes = threading.Event(), threading.Event()

    @client.on("reply")
    def on_reply(data):
        replies.append(data["i"])
        if len(replies) == MESSAGES:
            all_replies.set()

    @client.on("push")
    def on_push(data):
        pushes.append(data["i"])
        if len(pushes) == MESSAGES:
            all_pushes.set()

    client.connect("http://127.0.0.1:%d" % port, transports=["websocket"], wait_timeout=10)
    try:
        assert client.transport() == "websocket"
        # The server's handler made a gevent-websocket WebSocket (through rfile).
        assert server.wait_line("CONNECT") == "CONNECT geventwebsocket.websocket"

        # Client -> server, each answered: all arrive, in order.
        start = time.monotonic()
        for i in range(MESSAGES):
            client.emit("msg", {"i": i})
        assert all_replies.wait(30), "%d of %d replies" % (len(replies), MESSAGES)
        echo_seconds = time.monotonic() - start
        assert replies == list(range(MESSAGES))
        assert client.call("stats", timeout=10) == {"received": MESSAGES, "in_order": True}

        # Server -> client, a burst the server sends on its own.
        assert client.call("burst", MESSAGES, timeout=30) == "sent"
        assert all_pushes.wait(30), "%d of %d pushes" % (len(pushes), MESSAGES)
        assert pushes == list(range(MESSAGES))
    finally:
        # Wall-clock time (the server's disconnect line is wall-clock too).
        disconnect_at = time.time()
        started = time.monotonic()
        client.disconnect()
        disconnect_call = time.monotonic() - started

    noticed_at = float(server.wait_line("DISCONNECT").split()[1])
    noticed = noticed_at - disconnect_at
    print(
        "%d echoed messages in %.2f s; server noticed the disconnect after %.1f ms;"
        " client.disconnect() took %.1f ms"
        % (MESSAGES, echo_seconds, noticed * 1e3, disconnect_call * 1e3)
    )
    assert noticed < 0.05, "server noticed the disconnect after %.1f ms" % (noticed * 1e3)
    # The stall: websocket-client waited its 3 s close timeout for the
    # server to end the connection.
    assert disconnect_call < 1.0, "client.disconnect() took %.3f s" % disconnect_call
    assert server.proc.poll() is None  # the server lives on
    assert not [line for line in server.stderr if "Traceback" in line], "\n".join(server.stderr)


def _client_frame(payload):
    # A masked text frame, as a websocket client sends (payload < 126 bytes).
    mask = os.urandom(4)
    return (
        bytes([0x81, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def _read_text_frame(sock, buffered):
    # One unmasked short text frame from the server: (payload, rest).
    while len(buffered) < 2 or len(buffered) < 2 + (buffered[1] & 0x7F):
        chunk = sock.recv(65536)
        assert chunk, buffered
        buffered += chunk
    assert buffered[0] == 0x81 and buffered[1] & 0x7F < 126, buffered
    length = buffered[1] & 0x7F
    return buffered[2 : 2 + length], buffered[2 + length :]


def test_server_notices_a_connection_that_just_drops(server):
    # No goodbye at all: the client's TCP connection closes under an open
    # websocket. The server learns it from its read of the connection.
    server.wait_line("GEVENT")
    port = int(server.wait_line("PORT").split()[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        opened, rest = _read_text_frame(sock, rest)
        assert opened.startswith(b"0{"), opened  # engine.io open packet
        sock.sendall(_client_frame(b"40"))  # socket.io: connect to "/"
        connected, rest = _read_text_frame(sock, rest)
        assert connected.startswith(b"40{"), connected
        server.wait_line("CONNECT")
        dropped_at = time.time()
    noticed = float(server.wait_line("DISCONNECT").split()[1]) - dropped_at
    print("server noticed the dropped connection after %.1f ms" % (noticed * 1e3))
    assert noticed < 0.05, "server noticed the dropped connection after %.1f ms" % (noticed * 1e3)
    assert server.proc.poll() is None
