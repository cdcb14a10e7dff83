"""greenwheel.asyncio.await_ and wrap_greenlet: greenlets and coroutines waiting for each other."""

import asyncio
import json
import time

import httpx
import pytest
import websockets.asyncio.client as ws_client
import websockets.asyncio.server as ws_server
from greenlet import GreenletExit

import greenwheel as gw
import greenwheel.asyncio as gwa
from greenwheel import socket as gsocket
from greenwheel.pywsgi import WSGIServer


@pytest.fixture
def loop():
    loop = gwa.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    if not loop.is_closed():
        loop.close()


async def _slow(value, delay=0.1):
    await asyncio.sleep(delay)
    return value


def test_await_from_greenlets_blocks_only_each_greenlet(loop):
    # No one runs the loop: the greenlets waiting in await_() make it run.
    start = time.monotonic()
    glets = [gw.spawn(gwa.await_, _slow(i)) for i in range(20)]
    ticks = []

    def ticker():
        while not all(g.ready() for g in glets):
            ticks.append(1)
            gw.sleep(0.01)

    t = gw.spawn(ticker)
    gw.joinall(glets + [t])
    elapsed = time.monotonic() - start
    assert [g.value for g in glets] == list(range(20))
    assert elapsed < 2.0 / 5, "serial 2.0 s, took %.3f s" % elapsed
    assert len(ticks) >= 5, "greenlets did not run meanwhile: %d ticks" % len(ticks)
    assert not loop.is_running()


def test_await_propagates_exceptions_and_accepts_futures_and_tasks(loop):
    async def bad():
        await asyncio.sleep(0)
        raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        gwa.await_(bad())
    fut = loop.create_future()
    loop.call_later(0.01, fut.set_result, "fut")
    assert gwa.await_(fut) == "fut"
    task = loop.create_task(_slow("task", 0.01))
    assert gwa.await_(task) == "task"
    done = loop.create_future()
    done.set_result(5)
    assert gwa.await_(done) == 5


def test_await_while_another_greenlet_runs_the_loop(loop):
    runner = gw.spawn(loop.run_until_complete, _slow("runner", 0.1))
    gw.sleep(0.01)
    assert loop.is_running()
    assert gwa.await_(_slow("awaited", 0.02)) == "awaited"
    assert runner.get() == "runner"


def test_await_in_the_hub_or_a_coroutine_is_refused(loop):
    async def inner():
        coro = _slow(1)
        try:
            gwa.await_(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match="await_"):
        loop.run_until_complete(inner())


def test_await_needs_a_greenwheel_loop():
    other = asyncio.SelectorEventLoop()
    try:
        fut = other.create_future()
        with pytest.raises(TypeError, match="greenwheel"):
            gwa.await_(fut)
    finally:
        other.close()


def test_killing_an_awaiting_greenlet_cancels_the_task_and_leaves_nothing_armed(loop):
    wheel = loop._gw
    before = wheel.timer_count
    seen = []

    async def work():
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled")
            await asyncio.sleep(0.01)  # cleanup that itself awaits
            seen.append("cleaned up")
            raise

    glet = gw.spawn(gwa.await_, work())
    gw.sleep(0.02)
    assert wheel.timer_count > before
    start = time.monotonic()
    glet.kill()
    assert time.monotonic() - start < 1.0
    assert isinstance(glet.value, GreenletExit)
    assert seen == ["cancelled", "cleaned up"]
    assert wheel.timer_count == before
    assert not loop.is_running()


def test_wrap_greenlet_gives_the_value_or_the_exception(loop, quiet_hub):
    def work(x):
        gw.sleep(0.01)
        return x * 2

    def fail():
        gw.sleep(0.01)
        raise OSError("greenlet failed")

    async def main():
        value = await gwa.wrap_greenlet(gw.spawn(work, 21))
        with pytest.raises(OSError, match="greenlet failed"):
            await gwa.wrap_greenlet(gw.spawn(fail))
        return value

    assert loop.run_until_complete(main()) == 42
    assert "greenlet failed" in quiet_hub.captured.getvalue()


def test_a_killed_greenlet_cancels_the_awaiting_task(loop):
    glet = gw.spawn(gw.sleep, 10)

    async def main():
        loop.call_later(0.01, glet.kill, GreenletExit, False)
        await gwa.wrap_greenlet(glet)

    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(main())
    assert glet.dead


def test_cancelling_the_task_kills_the_greenlet(loop):
    exits = []

    def work():
        try:
            gw.sleep(10)
        except GreenletExit:
            exits.append("killed")
            raise

    glet = gw.spawn(work)

    async def waiter():
        await gwa.wrap_greenlet(glet)

    async def main():
        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    loop.run_until_complete(main())
    glet.join(1)
    assert glet.dead and exits == ["killed"]


def test_wrap_greenlet_needs_a_greenwheel_greenlet(loop):
    import greenlet

    async def main():
        gwa.wrap_greenlet(greenlet.greenlet(lambda: None))

    with pytest.raises(TypeError, match="Greenlet"):
        loop.run_until_complete(main())


def test_context_variables_flow_from_the_greenlet_into_the_awaited_coroutine(loop):
    import contextvars

    request_id = contextvars.ContextVar("request_id", default=None)

    async def read_it():
        await asyncio.sleep(0)
        return request_id.get()

    def handler(value):
        request_id.set(value)
        return gwa.await_(read_it())

    glets = [gw.spawn(handler, "req-%d" % i) for i in range(5)]
    gw.joinall(glets)
    assert [g.value for g in glets] == ["req-%d" % i for i in range(5)]
    assert request_id.get() is None


def test_asyncio_server_handlers_call_greenlet_code_and_greenlets_call_asyncio(loop):
    # Both worlds on one loop: an asyncio streams server whose handler runs
    # gevent-style socket code in a greenlet (wrap_greenlet), against a
    # greenwheel StreamServer whose handler greenlets await_() a coroutine.
    import greenwheel.socket as gsocket
    from greenwheel.server import StreamServer

    def green_handler(sock, _addr):
        with sock:
            line = sock.makefile("rb").readline()
            tag = gwa.await_(asyncio.sleep(0.05, b"async+"))  # only this greenlet waits
            sock.sendall(tag + line.upper())

    green_server = StreamServer(("127.0.0.1", 0), green_handler)
    green_server.start()

    def fetch(line):
        with gsocket.create_connection(("127.0.0.1", green_server.server_port)) as conn:
            conn.sendall(line)
            return conn.makefile("rb").readline()

    async def handle(reader, writer):
        line = await reader.readline()
        reply = await gwa.wrap_greenlet(gw.spawn(fetch, line))
        writer.write(reply)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def client(port, i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello %d\n" % i)
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return reply

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        start = time.monotonic()
        replies = await asyncio.gather(*[client(port, i) for i in range(20)])
        elapsed = time.monotonic() - start
        server.close()
        await server.wait_closed()
        return replies, elapsed

    try:
        replies, elapsed = loop.run_until_complete(main())
    finally:
        green_server.stop()
    assert replies == [b"async+HELLO %d\n" % i for i in range(20)]
    # 20 requests each waiting 50 ms: concurrent, not serial (1 s).
    assert elapsed < 1.0 / 5, "serial 1.0 s, took %.3f s" % elapsed


# --- the demonstration: asyncio client libraries called from pywsgi handlers ---

#: Seconds each backend call takes (HTTP: a sleep in the backend; websocket: a
#: sleep in the websocket handler), so that overlap shows in elapsed time.
DELAY = 0.2
REQUESTS = 20


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
