"""greenwheel.asyncio: run_in_executor on the hub's thread pool, and spawn()
for gevent-style blocking code called from coroutines."""

import asyncio
import gc
import os
import threading

import greenlet
import pytest

import greenwheel as gw
import greenwheel.asyncio as gwa
from _childproc import run_python
from greenwheel import socket as gsocket


@pytest.fixture
def loop():
    loop = gwa.new_event_loop()
    yield loop
    if not loop.is_closed():
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


def test_run_in_executor_uses_the_hubs_thread_pool(loop):
    pool = gw.get_hub().threadpool
    release = threading.Event()  # the real one: the worker thread waits on it
    seen = {}

    def work(x):
        seen["thread"] = threading.get_ident()
        release.wait()
        return x * 2

    async def main():
        future = loop.run_in_executor(None, work, 21)
        # The function is the pool's task while it runs (no second pool).
        while len(pool) == 0:
            await asyncio.sleep(0.001)
        assert len(pool) == 1
        release.set()
        return await future

    try:
        assert loop.run_until_complete(asyncio.wait_for(main(), 10)) == 42
    finally:
        release.set()
    assert seen["thread"] != threading.get_ident()
    assert loop._default_executor is None  # asyncio's own executor never made


def test_run_in_executor_raises_the_functions_error(loop):
    def fail():
        raise ValueError("from the thread")

    async def main():
        with pytest.raises(ValueError, match="from the thread"):
            await loop.run_in_executor(None, fail)

    loop.run_until_complete(main())


def test_a_cancelled_executor_future_drops_the_outcome(loop):
    release = threading.Event()
    finished = threading.Event()

    def work():
        release.wait()
        finished.set()
        return "late"

    async def main():
        future = loop.run_in_executor(None, work)
        future.cancel()
        release.set()
        # The thread still runs to its end; its outcome goes nowhere.
        while not finished.is_set():
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)
        return future

    future = loop.run_until_complete(main())
    assert future.cancelled()


def test_run_in_executor_after_shutdown_default_executor_is_refused(loop):
    loop.run_until_complete(loop.shutdown_default_executor())

    async def main():
        loop.run_in_executor(None, int)

    with pytest.raises(RuntimeError, match="shutdown"):
        loop.run_until_complete(main())


def test_an_explicit_executor_is_used_as_asyncio_uses_it(loop):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="mine") as executor:

        async def main():
            return await loop.run_in_executor(executor, lambda: threading.current_thread().name)

        assert loop.run_until_complete(main()).startswith("mine")


def test_spawn_runs_blocking_style_code_without_blocking_the_loop(loop):
    # A greenwheel socket echo: blocking-style calls in a greenlet, while a
    # coroutine keeps ticking on the same loop.
    a, b = gsocket.socketpair()
    ticks = []

    def echo_once():
        data = b.recv(100)
        b.sendall(data.upper())
        return len(data)

    def talk():
        gw.sleep(0.05)  # the loop runs coroutines meanwhile
        a.sendall(b"hello")
        return a.recv(100)

    async def ticker():
        while True:
            ticks.append(loop.time())
            await asyncio.sleep(0.005)

    async def main():
        tick = asyncio.ensure_future(ticker())
        try:
            return await asyncio.gather(gwa.spawn(echo_once), gwa.spawn(talk))
        finally:
            tick.cancel()

    try:
        assert loop.run_until_complete(main()) == [5, b"HELLO"]
    finally:
        a.close()
        b.close()
    assert len(ticks) >= 3, ticks  # the coroutine ran while the greenlets blocked


def test_spawn_raises_the_greenlets_error_and_passes_arguments(loop, quiet_hub):
    def fail(a, *, b):
        raise KeyError((a, b))

    async def main():
        with pytest.raises(KeyError) as info:
            await gwa.spawn(fail, 1, b=2)
        return info.value.args[0]

    assert loop.run_until_complete(main()) == (1, 2)


def test_cancelling_the_task_kills_the_spawned_greenlet(loop):
    started = gw.event.Event()
    unwound = []

    def body():
        started.set()
        try:
            gw.sleep(60)
        except gw.GreenletExit:
            unwound.append(True)
            raise

    async def main():
        task = asyncio.ensure_future(gwa.spawn(body))
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        while not unwound:
            await asyncio.sleep(0.001)

    loop.run_until_complete(asyncio.wait_for(main(), 5))
    assert unwound == [True]


def test_spawn_outside_a_running_loop_is_refused_before_anything_starts():
    before = gw.get_hub().loop.activecnt
    with pytest.raises(RuntimeError, match="no running event loop"):
        gwa.spawn(gw.sleep, 60)
    assert gw.get_hub().loop.activecnt == before


def test_spawn_on_another_kind_of_loop_is_refused():
    async def main():
        with pytest.raises(TypeError, match="greenwheel asyncio loop"):
            gwa.spawn(int)

    standard = asyncio.new_event_loop()
    try:
        standard.run_until_complete(main())
    finally:
        standard.close()


def test_patched_requests_from_coroutines_overlap_and_leave_the_loop_free():
    # The demonstration: coroutines call a monkey-patched blocking
    # library (requests) through spawn(); ten 0.2 s requests overlap, and a
    # ticking coroutine keeps running meanwhile.
    proc = run_python(
        """
        from greenwheel import monkey
        monkey.patch_all()
        import asyncio, time
        import requests
        import greenwheel as gw
        import greenwheel.asyncio as gwa
        from greenwheel.pywsgi import WSGIServer

        def app(environ, start_response):
            gw.sleep(0.2)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [environ["PATH_INFO"].encode()]

        server = WSGIServer(("127.0.0.1", 0), app, log=None)
        server.start()
        url = "http://127.0.0.1:%d" % server.server_port
        ticks = []

        async def ticker():
            while True:
                ticks.append(1)
                await asyncio.sleep(0.01)

        async def main():
            tick = asyncio.ensure_future(ticker())
            start = time.monotonic()
            with requests.Session() as session:
                texts = await asyncio.gather(
                    *(gwa.spawn(lambda i=i: session.get("%s/%d" % (url, i)).text)
                      for i in range(10))
                )
            elapsed = time.monotonic() - start
            tick.cancel()
            return texts, elapsed

        texts, elapsed = gwa.run(main())
        server.stop()
        print("texts", texts == ["/%d" % i for i in range(10)])
        print("elapsed %.3f serial 2.0" % elapsed)
        print("ticks", len(ticks))
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "texts True" in proc.stdout, proc.stdout
    elapsed = float(proc.stdout.split("elapsed ")[1].split()[0])
    assert elapsed < 1.0, proc.stdout  # serial: 10 x 0.2 s = 2.0 s
    ticks = int(proc.stdout.split("ticks ")[1].split()[0])
    assert ticks >= 5, proc.stdout


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts fds through /proc")
def test_ten_thousand_connections_leave_no_fd_task_or_watcher_behind(loop):
    # An asyncio streams echo server and its clients on greenwheel's loop,
    # 10,000 connections in waves of 100; afterwards the process has the fds,
    # tasks, loop watchers and greenlets it had before.
    connections, wave = 10_000, 100

    async def echo(reader, writer):
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def client(port, i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"%d\n" % i)
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return line == b"%d\n" % i

    async def main():
        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ok = 0
        for first in range(0, connections, wave):
            results = await asyncio.gather(*(client(port, i) for i in range(first, first + wave)))
            ok += sum(results)
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)  # the server's closed handler tasks finish
        return ok, len(asyncio.all_tasks()) - 1  # minus main itself

    gc.collect()
    fds, active = _open_fds(), gw.get_hub().loop.activecnt
    greenlets = sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet))
    ok, tasks_left = loop.run_until_complete(main())
    assert ok == connections
    assert tasks_left == 0
    gc.collect()
    assert _open_fds() == fds
    assert gw.get_hub().loop.activecnt == active
    assert sum(1 for o in gc.get_objects() if isinstance(o, greenlet.greenlet)) <= greenlets
