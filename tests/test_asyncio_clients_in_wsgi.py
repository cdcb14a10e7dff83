"""The issue's demonstration, one thread, one loop: a pywsgi WSGI app whose
handler greenlets call asyncio client libraries (httpx's AsyncClient, the
websockets client) through greenwheel.asyncio.await_, against local servers
(a greenwheel WSGI backend and a websockets asyncio server on the same loop).
"""

import asyncio
import json
import time

import httpx
import pytest
import websockets.asyncio.client as ws_client
import websockets.asyncio.server as ws_server

import greenwheel as gw
import greenwheel.asyncio as gwa
from greenwheel import socket as gsocket
from greenwheel.pywsgi import WSGIServer

#: Seconds each backend call takes (HTTP: a sleep in the backend; websocket: a
#: sleep in the websocket handler), so that overlap shows in elapsed time.
DELAY = 0.2
REQUESTS = 20


@pytest.fixture
def loop():
    loop = gwa.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    if not loop.is_closed():
        loop.close()


def _http_get(port, path):
    # A plain HTTP/1.0 GET over a greenwheel socket (blocks only its greenlet).
    with gsocket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET %s HTTP/1.0\r\nHost: test\r\n\r\n" % path.encode())
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body


def test_wsgi_handlers_call_httpx_and_websockets_clients_concurrently(loop):
    # The backend: a greenwheel WSGI app that takes DELAY seconds.
    def backend_app(environ, start_response):
        gw.sleep(DELAY)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"path": environ["PATH_INFO"]}).encode()]

    backend = WSGIServer(("127.0.0.1", 0), backend_app, log=None)
    backend.start()

    # A websockets (asyncio) server on the same loop: answers after DELAY.
    async def shout(connection):
        async for message in connection:
            await asyncio.sleep(DELAY)
            await connection.send(message.upper())

    async def start_ws():
        return await ws_server.serve(shout, "127.0.0.1", 0)

    ws = loop.run_until_complete(start_ws())
    ws_port = ws.sockets[0].getsockname()[1]
    client = httpx.AsyncClient(base_url="http://127.0.0.1:%d" % backend.server_port)

    async def ws_roundtrip(text):
        async with ws_client.connect("ws://127.0.0.1:%d" % ws_port) as connection:
            await connection.send(text)
            return await connection.recv()

    # The front: a WSGI app whose handler greenlets await asyncio clients.
    def front_app(environ, start_response):
        name = environ["PATH_INFO"].strip("/")
        reply = gwa.await_(client.get("/" + name))
        echoed = gwa.await_(ws_roundtrip(name))
        body = json.dumps({"http": reply.json()["path"], "ws": echoed}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    front = WSGIServer(("127.0.0.1", 0), front_app, log=None)
    front.start()
    try:
        start = time.monotonic()
        jobs = [gw.spawn(_http_get, front.server_port, "/n%d" % i) for i in range(REQUESTS)]
        gw.joinall(jobs, timeout=30, raise_error=True)
        elapsed = time.monotonic() - start
        assert all(job.successful() for job in jobs)
        for i, job in enumerate(jobs):
            status, body = job.value
            assert status == b"HTTP/1.1 200 OK", (status, body)
            assert json.loads(body) == {"http": "/n%d" % i, "ws": "N%d" % i}
        # Each request waits 2 x DELAY in sequence; serially 20 would take 8 s.
        serial = REQUESTS * 2 * DELAY
        assert elapsed < serial / 4, "elapsed %.2f s, serial %.1f s" % (elapsed, serial)
    finally:
        front.stop()
        backend.stop()
        ws.close()
        loop.run_until_complete(ws.wait_closed())
        loop.run_until_complete(client.aclose())
