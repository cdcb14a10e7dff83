"""Micro benchmarks of greenwheel's Python-level operations (pytest-benchmark).

    python -m pytest benches/test_bench_python.py --benchmark-only -q

Not part of the test suite (pytest's testpaths is ``tests/``).  These time
one operation at a time from the main greenlet, which is what profiling a
regression needs; ``benches/compare.py`` is the side-by-side comparison with
other libraries.  Operations whose cost is below the timer's resolution are
timed in batches of :data:`BATCH` and named accordingly.
"""

import importlib

import pytest

import greenwheel

pytest.importorskip("pytest_benchmark")

#: Operations per timed call for the very cheap ones.
BATCH = 1000


def _noop(*_args):
    pass


def _optional(module):
    """A greenwheel submodule that may not exist yet: skip its benchmarks if missing."""
    try:
        return importlib.import_module(f"greenwheel.{module}")
    except ImportError:
        pytest.skip(f"greenwheel.{module} not available")


@pytest.fixture
def hub():
    hub = greenwheel.get_hub()
    greenwheel.sleep(0)  # run anything a previous benchmark left queued
    return hub


def test_sleep0_alone(benchmark, hub):
    # The main greenlet yields to an otherwise idle hub and comes straight back.
    benchmark(greenwheel.sleep, 0)


def test_sleep0_among_100_greenlets(benchmark, hub):
    # Each sleep(0) of the main greenlet lets 100 other yielders run once,
    # so one timed call is 101 switches through the hub.
    stop = []

    def yielder():
        while not stop:
            greenwheel.sleep(0)

    workers = [greenwheel.spawn(yielder) for _ in range(100)]
    greenwheel.sleep(0)
    try:
        benchmark(greenwheel.sleep, 0)
    finally:
        stop.append(True)
        greenwheel.joinall(workers)


def test_spawn_join(benchmark, hub):
    benchmark(lambda: greenwheel.spawn(_noop).join())


def test_spawn_joinall_batch(benchmark, hub):
    spawn = greenwheel.spawn
    benchmark(lambda: greenwheel.joinall([spawn(_noop) for _ in range(BATCH)]))


def test_spawn_raw_batch(benchmark, hub):
    def run():
        for _ in range(BATCH):
            greenwheel.spawn_raw(_noop)
        greenwheel.sleep(0)  # FIFO: every raw greenlet has run when we are back

    benchmark(run)


def test_timeout_start_cancel(benchmark, hub):
    Timeout = greenwheel.Timeout

    def run():
        t = Timeout(10)
        t.start()
        t.cancel()

    benchmark(run)


def test_timeout_context_manager(benchmark, hub):
    Timeout = greenwheel.Timeout

    def run():
        with Timeout(10):
            pass

    benchmark(run)


def test_timer_start_stop(benchmark, hub):
    timer = hub.loop.timer(10.0)

    def run():
        timer.start(_noop)
        timer.stop()

    benchmark(run)


def test_timer_start_stop_1m_pending(benchmark, hub):
    # Same as above with a million timers armed: a flat timer structure
    # makes this cost the same.
    background = [hub.loop.timer(60.0 + i % 3600) for i in range(1_000_000)]
    for t in background:
        t.start(_noop)
    timer = hub.loop.timer(1800.0)

    def run():
        timer.start(_noop)
        timer.stop()

    try:
        benchmark(run)
    finally:
        for t in background:
            t.close()


def test_run_callback_batch(benchmark, hub):
    run_callback = hub.loop.run_callback

    def run():
        for _ in range(BATCH):
            run_callback(_noop)
        greenwheel.sleep(0)  # the loop runs the whole batch, then resumes us

    benchmark(run)


def test_event_ping_pong(benchmark, hub):
    Event = _optional("event").Event
    ping, pong, stop = Event(), Event(), []

    def ponger():
        while True:
            ping.wait()
            ping.clear()
            if stop:
                return
            pong.set()

    worker = greenwheel.spawn(ponger)

    def round_trip():
        ping.set()
        pong.wait()
        pong.clear()

    try:
        benchmark(round_trip)
    finally:
        stop.append(True)
        ping.set()
        worker.join()


def test_queue_ping_pong(benchmark, hub):
    Queue = _optional("queue").Queue
    requests, replies = Queue(), Queue()

    def ponger():
        while True:
            item = requests.get()
            if item is None:
                return
            replies.put(item)

    worker = greenwheel.spawn(ponger)

    def round_trip():
        requests.put(1)
        replies.get()

    try:
        benchmark(round_trip)
    finally:
        requests.put(None)
        worker.join()


def test_queue_put_get_nowait(benchmark, hub):
    queue = _optional("queue").Queue()

    def run():
        queue.put_nowait(1)
        queue.get_nowait()

    benchmark(run)
