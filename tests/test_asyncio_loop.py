"""greenwheel.asyncio: asyncio's event loop scheduled by greenwheel's loop."""

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import time

import pytest

import greenwheel as gw
import greenwheel.asyncio as gwa


@pytest.fixture
def loop():
    loop = gwa.new_event_loop()
    yield loop
    if not loop.is_closed():
        loop.close()


def test_public_names():
    assert gwa.__all__ == [
        "EventLoopPolicy",
        "GreenwheelEventLoop",
        "await_",
        "new_event_loop",
        "run",
        "spawn",
        "wrap_greenlet",
    ]
    assert issubclass(gwa.GreenwheelEventLoop, asyncio.AbstractEventLoop)


def test_run_until_complete_returns_the_result_and_raises_the_error(loop):
    async def ok():
        await asyncio.sleep(0)
        return 42

    async def bad():
        await asyncio.sleep(0)
        raise KeyError("k")

    assert loop.run_until_complete(ok()) == 42
    with pytest.raises(KeyError):
        loop.run_until_complete(bad())
    assert not loop.is_running()


def test_callbacks_run_in_batches_in_fifo_order(loop):
    order = []

    def first():
        order.append("a")
        # Scheduled by a callback: waits for the next batch, after "b".
        loop.call_soon(order.append, "c")

    loop.call_soon(first)
    loop.call_soon(order.append, "b")
    loop.call_soon(loop.stop)
    loop.run_forever()
    # stop() ends run_forever after the batch it was called in: "c" is left.
    assert order == ["a", "b"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == ["a", "b", "c"]


def test_stop_before_run_forever_runs_one_batch(loop):
    seen = []
    loop.call_soon(seen.append, 1)
    loop.stop()
    loop.run_forever()
    assert seen == [1]

    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match="stopped before Future completed"):
        loop.run_until_complete(fut)


def test_call_later_is_never_early_and_keeps_deadline_order(loop):
    fired = []
    start = loop.time()
    for delay in (0.03, 0.01, 0.02):
        loop.call_later(delay, lambda d=delay: fired.append((d, loop.time() - start)))
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert [d for d, _ in fired] == [0.01, 0.02, 0.03]
    for delay, elapsed in fired:
        assert elapsed >= delay, fired


def test_call_at_uses_the_loop_clock(loop):
    when = loop.time() + 0.02
    got = []
    loop.call_at(when, lambda: got.append(loop.time()))
    loop.call_at(when + 0.01, loop.stop)
    loop.run_forever()
    assert got and got[0] >= when
    # The loop's time is time.monotonic() (read between two readings of it,
    # not compared within a margin a busy machine could exceed).
    before = time.monotonic()
    assert before <= loop.time() <= time.monotonic()


def test_cancelled_timers_do_not_fire_and_disarm_the_wheel(loop):
    wheel = loop._gw
    before = wheel.timer_count
    fired = []
    handles = [loop.call_later(0.01, fired.append, i) for i in range(100)]
    assert wheel.timer_count == before + 100
    for h in handles:
        h.cancel()
    assert wheel.timer_count == before
    loop.run_until_complete(asyncio.sleep(0.03))
    assert fired == []


def test_close_with_pending_timers_leaves_nothing_armed(loop):
    wheel = loop._gw
    before = wheel.timer_count
    loop.call_later(10, print, "never")
    loop.call_soon(print, "never either")
    loop.close()
    assert wheel.timer_count <= before
    assert loop.is_closed()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)
    loop.close()  # twice is fine


def test_close_a_running_loop_is_refused(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert errors == ["Cannot close a running event loop"]


def test_run_forever_twice_and_nested_are_refused(loop):
    async def nested():
        inner = asyncio.sleep(0)
        try:
            loop.run_until_complete(inner)
        finally:
            inner.close()

    with pytest.raises(RuntimeError, match="already running|another loop"):
        loop.run_until_complete(nested())


def test_call_soon_threadsafe_wakes_the_loop_from_another_thread(loop):
    fut = loop.create_future()

    def worker():
        time.sleep(0.02)
        loop.call_soon_threadsafe(fut.set_result, threading.get_ident())

    t = threading.Thread(target=worker)
    t.start()
    try:
        assert loop.run_until_complete(asyncio.wait_for(fut, 5)) == t.ident
    finally:
        t.join()


def test_run_in_executor(loop):
    async def main():
        return await loop.run_in_executor(None, sum, range(10))

    assert loop.run_until_complete(main()) == 45
    loop.run_until_complete(loop.shutdown_default_executor())


def test_add_reader_and_writer_on_a_socketpair(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    got = []
    try:

        def readable():
            got.append(b.recv(100))
            if len(got) == 2:
                loop.remove_reader(b)
                loop.stop()

        def writable():
            a.send(b"x")
            loop.remove_writer(a)
            loop.call_later(0.01, a.send, b"y")

        loop.add_reader(b, readable)
        loop.add_writer(a, writable)
        loop.run_forever()
        assert got == [b"x", b"y"]
        assert not loop.remove_reader(b)
        assert not loop.remove_writer(a)
    finally:
        a.close()
        b.close()


class _CountingLoop(gwa.GreenwheelEventLoop):
    """Counts the firings of its fds' io watchers."""

    fired = 0

    def _io_fired(self, revents, fd):
        self.fired += 1
        return super()._io_fired(revents, fd)


def test_a_reader_does_not_spin_while_the_loop_is_not_running():
    # Counted as watcher firings, not loop passes: the hub polls with a zero
    # timeout through the last millisecond before a timer (the kernel's poll
    # timeout is in whole milliseconds), so the pass count of a sleep
    # depends on when its last poll returned (CI saw 2,062 passes).
    loop = _CountingLoop()
    a, b = socket.socketpair()
    try:
        calls = []
        loop.add_reader(b, lambda: calls.append(b.recv(10)))
        a.send(b"z")
        # Greenlets run the hub for a while; asyncio is not running, so the
        # readable fd's handle waits (once) for the next run: its watcher
        # fired once and was paused, it does not fire on every pass.
        gw.sleep(0.03)
        assert calls == []
        assert loop.fired == 1, "the reader's watcher fired %d times" % loop.fired
        loop.run_until_complete(asyncio.sleep(0.01))
        assert calls == [b"z"]
        loop.remove_reader(b)
    finally:
        a.close()
        b.close()
        loop.close()


def test_streams_echo_server(loop):
    handled = []

    async def handle(reader, writer):
        try:
            while data := await reader.readline():
                writer.write(data.upper())
                await writer.drain()
            writer.close()
            await writer.wait_closed()
        finally:
            handled[0].set()

    async def main():
        # Server.wait_closed() does not wait for the handlers on 3.11: the
        # test does, or the loop closes under a pending handler task.
        handled.append(asyncio.Event())
        server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 21)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 21)
        replies = []
        for i in range(50):
            writer.write(b"line %d\n" % i)
            await writer.drain()
            replies.append(await reader.readline())
        big = b"z" * 1_000_000 + b"\n"
        writer.write(big)
        replies.append(await reader.readline())
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(handled[0].wait(), 20)
        server.close()
        await server.wait_closed()
        return replies

    replies = loop.run_until_complete(main())
    assert replies[:50] == [b"LINE %d\n" % i for i in range(50)]
    assert replies[50] == b"Z" * 1_000_000 + b"\n"


def test_sock_methods(loop):
    async def main():
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        client = socket.socket()
        client.setblocking(False)
        try:
            accept = asyncio.ensure_future(loop.sock_accept(listener))
            await loop.sock_connect(client, listener.getsockname())
            conn, _ = await accept
            with conn:
                await loop.sock_sendall(client, b"ping" * 10000)
                data = b""
                while len(data) < 40000:
                    data += await loop.sock_recv(conn, 65536)
                return data
        finally:
            client.close()
            listener.close()

    assert loop.run_until_complete(main()) == b"ping" * 10000


def test_exceptions_in_callbacks_go_to_the_exception_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def boom():
        raise ValueError("boom")

    loop.call_soon(boom)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], ValueError)


def test_keyboard_interrupt_in_a_callback_leaves_run_forever(loop):
    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
    # The loop is usable afterwards.
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


def test_get_debug_follows_set_debug_and_futures_see_it(loop):
    # get_debug() is native (asyncio's Future asks it for every future):
    # it reports what set_debug() and the _debug attribute say, and a
    # future made in debug mode records where it was made, as in asyncio.
    assert loop.get_debug() is False
    assert loop.create_future()._source_traceback is None
    loop.set_debug(True)
    assert loop.get_debug() is True
    assert loop.create_future()._source_traceback is not None
    loop._debug = False
    assert loop.get_debug() is False
    assert asyncio.Future(loop=loop)._source_traceback is None


def test_create_future_belongs_to_its_loop_running_or_not(loop):
    # Made while the loop runs, while it does not, and while another loop
    # runs: each future is this loop's.
    other = gwa.new_event_loop()
    try:
        assert loop.create_future().get_loop() is loop

        async def inside():
            return loop.create_future(), other.create_future()

        mine, theirs = loop.run_until_complete(inside())
        assert mine.get_loop() is loop and theirs.get_loop() is other

        async def from_other():
            return loop.create_future()

        assert other.run_until_complete(from_other()).get_loop() is loop
    finally:
        other.close()


def test_debug_mode_logs_slow_callbacks(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    loop.call_soon(time.sleep, 0.03)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_forever()
    assert any("took" in r.getMessage() for r in caplog.records), caplog.records


@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="signals need main thread"
)
def test_signal_handlers_use_the_loops_signal_watchers(loop):
    got = []
    wakeup_before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_before)
    loop.add_signal_handler(signal.SIGUSR1, got.append, "usr1")
    loop.call_later(0.01, os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(0.01, lambda: None)

    async def wait():
        while not got:
            await asyncio.sleep(0.005)

    loop.run_until_complete(asyncio.wait_for(wait(), 5))
    assert got == ["usr1"]
    # asyncio and the hub do not fight over the wake-up fd.
    now = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(now)
    assert now == wakeup_before
    assert loop.remove_signal_handler(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert not loop.remove_signal_handler(signal.SIGUSR1)
    with pytest.raises(RuntimeError, match="cannot be caught"):
        loop.add_signal_handler(signal.SIGKILL, print)
    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, asyncio.sleep)


def test_greenlets_and_coroutines_interleave_on_one_loop(loop):
    ticks = []

    def ticker():
        for _ in range(5):
            ticks.append("g")
            gw.sleep(0.01)

    async def main():
        glet = gw.spawn(ticker)
        for _ in range(5):
            ticks.append("c")
            await asyncio.sleep(0.01)
        return glet

    glet = loop.run_until_complete(main())
    glet.join()
    assert ticks.count("g") == 5 and ticks.count("c") == 5
    # Interleaved, not one after the other: the order shows it, where an
    # elapsed time (0.05 s against 0.1 s serial) has no margin for a busy
    # machine.
    assert "".join(ticks[:4]) in ("cgcg", "gcgc", "cggc", "gccg"), ticks
    last_c = len(ticks) - 1 - ticks[::-1].index("c")
    last_g = len(ticks) - 1 - ticks[::-1].index("g")
    assert ticks.index("g") < last_c and ticks.index("c") < last_g, ticks


def test_run_forever_in_a_greenlet_blocks_only_that_greenlet(loop):
    seen = []
    glet = gw.spawn(loop.run_until_complete, asyncio.sleep(0.05, "done"))
    gw.sleep(0.01)
    assert loop.is_running()
    seen.append("main ran while the loop ran")
    assert glet.get() == "done"
    assert seen
    assert not loop.is_running()


def test_loop_of_another_thread_refuses_to_run(loop):
    errors = []

    def other():
        coro = asyncio.sleep(0)
        try:
            loop.run_until_complete(coro)
        except RuntimeError as exc:
            errors.append(str(exc))
        finally:
            coro.close()

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors and "thread" in errors[0]


def test_greenwheel_run():
    async def main():
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    assert gwa.run(main()) is gwa.GreenwheelEventLoop


def test_policy_makes_asyncio_run_use_greenwheel():
    async def main():
        return type(asyncio.get_running_loop())

    asyncio.set_event_loop_policy(gwa.EventLoopPolicy())
    try:
        assert asyncio.run(main()) is gwa.GreenwheelEventLoop
        new = asyncio.new_event_loop()
        assert isinstance(new, gwa.GreenwheelEventLoop)
        new.close()
    finally:
        asyncio.set_event_loop_policy(None)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.run(loop_factory=) is 3.12+")
def test_asyncio_run_with_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main(), loop_factory=gwa.new_event_loop) is gwa.GreenwheelEventLoop


def test_asyncgens_are_finalized_by_shutdown_asyncgens(loop):
    closed = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def main():
        g = agen()
        assert await g.__anext__() == 1
        return g

    g = loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert closed == [True]
    del g


def test_run_in_executor_turns_concurrent_cancellation_into_asyncio_s(loop):
    # A function on the hub's pool that raises concurrent.futures'
    # CancelledError (a cancelled run_coroutine_threadsafe future, say)
    # reaches the coroutine as asyncio.CancelledError, as with asyncio's
    # own executor futures.
    import concurrent.futures

    def cancelled():
        raise concurrent.futures.CancelledError()

    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(loop.run_in_executor(None, cancelled))
