"""greenwheel.queue: the queues, Channel, and puts/gets from OS threads."""

import queue as stdlib_queue
import threading
import time
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import greenwheel as gw
from greenwheel._abstract_linkable import _may_be_woken_by_threads
from greenwheel.exceptions import InvalidThreadUseError, LoopExit
from greenwheel.queue import (
    Channel,
    Empty,
    Full,
    JoinableQueue,
    LifoQueue,
    PriorityQueue,
    Queue,
    ShutDown,
    SimpleQueue,
    UnboundQueue,
)


def join_threads_cooperatively(threads, limit=10.0):
    deadline = time.monotonic() + limit
    while any(t.is_alive() for t in threads):
        assert time.monotonic() < deadline, "threads did not finish"
        gw.sleep(0.001)


def start_threads(*targets):
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    return threads


# --- basics ---------------------------------------------------------------------------


def test_exceptions_are_the_standard_library_ones():
    assert Empty is stdlib_queue.Empty
    assert Full is stdlib_queue.Full
    assert issubclass(ShutDown, Exception)
    assert JoinableQueue is Queue
    assert issubclass(Queue, SimpleQueue)


@pytest.mark.parametrize("cls", [SimpleQueue, Queue])
def test_fifo_and_introspection(cls):
    q = cls()
    assert q.empty() and not q.full() and q.qsize() == 0 and len(q) == 0
    assert bool(q) is True
    assert q.maxsize is None
    for i in range(5):
        q.put(i)
    assert q.qsize() == 5 and len(q) == 5 and not q.empty() and not q.full()
    assert q.peek() == 0 and q.peek_nowait() == 0
    assert [q.get() for _ in range(5)] == list(range(5))
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=False)
    with pytest.raises(Empty):
        q.peek_nowait()
    assert "maxsize" not in repr(q)


def test_maxsize_full_and_put_nowait():
    q = Queue(2)
    assert q.maxsize == 2
    q.put(1)
    q.put_nowait(2)
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait(3)
    with pytest.raises(Full):
        q.put(3, block=False)
    assert "maxsize=2" in repr(q) and "queue=" in str(q)
    q.maxsize = None
    assert not q.full()
    q.put(3)
    assert q.qsize() == 3


def test_queue_zero_is_unbounded_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning):
        q = Queue(0)
    assert q.maxsize is None
    for i in range(100):
        q.put_nowait(i)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Queue(-1).maxsize is None


def test_items_argument_and_copy():
    q = Queue(None, [1, 2, 3])
    assert q.qsize() == 3 and q.unfinished_tasks == 3
    c = q.copy()
    assert [c.get() for _ in range(3)] == [1, 2, 3]
    assert q.qsize() == 3
    assert SimpleQueue(5, "ab").get() == "a"


def test_get_timeout_raises_empty_after_at_least_the_timeout():
    q = Queue()
    start = time.monotonic()
    with pytest.raises(Empty):
        q.get(timeout=0.02)
    assert time.monotonic() - start >= 0.019
    assert not q.getters
    with pytest.raises(Empty):
        q.peek(timeout=0.001)
    with pytest.raises(ValueError):
        q.get(timeout=-1)


def test_put_timeout_raises_full_and_drops_the_item():
    q = Queue(1)
    q.put("a")
    start = time.monotonic()
    with pytest.raises(Full):
        q.put("b", timeout=0.02)
    assert time.monotonic() - start >= 0.019
    assert not q.putters and q.qsize() == 1 and q.get() == "a"
    with pytest.raises(ValueError):
        q.put("c", timeout=-1)


def test_lifo_and_priority_order():
    lq = LifoQueue()
    for i in range(4):
        lq.put(i)
    assert lq.peek() == 3
    assert [lq.get() for _ in range(4)] == [3, 2, 1, 0]

    pq = PriorityQueue(None, [(5, "e"), (1, "a")])
    for item in [(3, "c"), (2, "b"), (4, "d")]:
        pq.put(item)
    assert [pq.get()[1] for _ in range(5)] == list("abcde")


def test_iteration_stops_at_the_stop_iteration_class():
    q = Queue()
    for item in [1, 2, StopIteration, 3]:
        q.put(item)
    assert list(q) == [1, 2]
    assert next(q) == 3


def test_generic_alias():
    assert Queue[int] is not None and Channel[str] is not None


# --- blocking, order, hand-offs ------------------------------------------------------------


def test_blocked_getters_receive_items_in_the_order_they_blocked():
    q = Queue()
    got = []

    def getter(i):
        got.append((i, q.get()))

    greenlets = [gw.spawn(getter, i) for i in range(5)]
    gw.sleep(0)
    assert len(q.getters) == 5
    for item in "abcde":
        q.put(item)
    gw.joinall(greenlets)
    assert got == list(zip(range(5), "abcde", strict=True))


def test_blocked_putters_go_in_in_the_order_they_blocked():
    q = Queue(1)
    q.put(-1)
    greenlets = [gw.spawn(q.put, i) for i in range(5)]
    gw.sleep(0)
    assert len(q.putters) == 5
    assert [q.get() for _ in range(6)] == [-1, 0, 1, 2, 3, 4]
    gw.joinall(greenlets)
    assert all(g.successful() for g in greenlets)


def test_peek_waits_without_consuming():
    q = Queue()
    peeked = gw.spawn(q.peek)
    got = gw.spawn(q.get)
    gw.sleep(0)
    q.put("x")
    gw.joinall([peeked, got])
    assert peeked.value == "x" and got.value == "x" and q.empty()


def test_killed_getter_does_not_swallow_an_item():
    q = Queue()
    victim = gw.spawn(q.get)
    survivor = gw.spawn(q.get)
    gw.sleep(0)
    victim.kill()
    q.put(1)
    survivor.join()
    assert survivor.value == 1 and not q.getters


def test_ping_pong_between_two_greenlets():
    q1, q2 = Queue(), Queue(1)
    n = 500

    def ping():
        for i in range(n):
            q1.put(i)
            assert q2.get() == i

    def pong():
        for _ in range(n):
            q2.put(q1.get())

    gw.joinall([gw.spawn(pong), gw.spawn(ping)], raise_error=True)
    assert q1.empty() and q2.empty()


def test_get_in_main_forever_raises_loop_exit():
    if _may_be_woken_by_threads():
        pytest.skip("while other threads live, a parked greenlet keeps the loop alive")
    with pytest.raises(LoopExit):
        Queue().get()


def test_put_and_get_from_a_loop_callback():
    # In the hub a queue operation cannot wait, but it can hand over to
    # waiting greenlets directly (gevent's behaviour).
    q = Queue(1)
    q.put("first")
    putter = gw.spawn(q.put, "second")
    gw.sleep(0)
    results = []

    def in_hub():
        results.append(q.get_nowait())  # makes room: the putter's item goes in
        results.append(q.get_nowait())
        try:
            q.get_nowait()
        except Empty:
            results.append("empty")

    gw.get_hub().loop.run_callback(in_hub)
    putter.join()
    assert results == ["first", "second", "empty"]

    full = Queue(1)
    full.put(1)
    getter = gw.spawn(lambda: (full.get(), full.get()))
    gw.sleep(0)
    out = []

    def hub_put():
        try:
            full.put_nowait(2)
            out.append("put")
        except Full:
            out.append("full")

    gw.get_hub().loop.run_callback(hub_put)
    assert getter.get() == (1, 2)
    assert out == ["put"]


# --- joinable ----------------------------------------------------------------------------


def test_task_done_and_join():
    q = Queue()
    assert q.join() is True and q.join(0) is True
    for i in range(3):
        q.put(i)
    assert q.unfinished_tasks == 3
    done = []

    def worker():
        for item in q:
            gw.sleep(0.001)
            done.append(item)
            q.task_done()

    w = gw.spawn(worker)
    assert q.join(timeout=0.001) is False
    assert q.join() is True
    assert done == [0, 1, 2] and q.unfinished_tasks == 0
    q.put(StopIteration)
    w.join()
    assert q.unfinished_tasks == 1  # the StopIteration item counts as a task
    q.task_done()
    with pytest.raises(ValueError):
        q.task_done()
    assert not hasattr(SimpleQueue(), "task_done")


def test_join_waiters_all_released():
    q = JoinableQueue(None, [1, 2])
    joiners = [gw.spawn(q.join) for _ in range(3)]
    gw.sleep(0)
    q.get()
    q.task_done()
    q.get()
    q.task_done()
    gw.joinall(joiners)
    assert all(j.value is True for j in joiners)
    assert UnboundQueue().maxsize is None
    with pytest.raises(ValueError):
        UnboundQueue(3)


def test_shutdown():
    q = Queue()
    getter = gw.spawn(q.get)
    gw.sleep(0)
    q.shutdown()
    getter.join()
    assert isinstance(getter.exception, ShutDown)
    with pytest.raises(ShutDown):
        q.put(1)

    q = Queue(1)
    q.put(1)
    putter = gw.spawn(q.put, 2)
    gw.sleep(0)
    q.shutdown(immediate=True)
    putter.join()
    assert isinstance(putter.exception, ShutDown)
    assert q.empty() and q.unfinished_tasks == 0
    with pytest.raises(ShutDown):
        q.get()


# --- stdlib-style subclasses --------------------------------------------------------------


def test_subclass_with_standard_library_hooks():
    class SetQueue(Queue):
        def _init(self, maxsize, items=()):
            self.queue = []
            for item in items:
                self._put(item)

        def _qsize(self):
            return len(self.queue)

        def _put(self, item):
            if item not in self.queue:
                self.queue.append(item)

        def _get(self):
            return self.queue.pop(0)

    q = SetQueue()
    getter = gw.spawn(q.get)
    gw.sleep(0)
    for item in [1, 1, 2, 2, 3]:
        q.put(item)
    getter.join()
    assert getter.value == 1
    assert [q.get(), q.get()] == [2, 3]


# --- Channel -----------------------------------------------------------------------------


def test_channel_is_a_rendezvous():
    c = Channel()
    assert c.qsize() == 0 and c.empty() and c.full() and c.balance == 0
    with pytest.raises(ValueError):
        Channel(0)
    with pytest.raises(Full):
        c.put_nowait(1)
    with pytest.raises(Empty):
        c.get_nowait()
    log = []

    def putter():
        c.put("x")
        log.append("put returned")

    p = gw.spawn(putter)
    gw.sleep(0)
    assert c.balance == 1 and log == []
    assert c.get() == "x"
    p.join()
    assert log == ["put returned"] and c.balance == 0


def test_channel_getters_first_and_iteration():
    c = Channel()
    getters = [gw.spawn(c.get) for _ in range(3)]
    gw.sleep(0)
    assert c.balance == -3
    for i in range(3):
        c.put(i)
    gw.joinall(getters)
    assert [g.value for g in getters] == [0, 1, 2]

    def producer():
        for i in range(3):
            c.put(i)
        c.put(StopIteration)

    gw.spawn(producer)
    assert list(c) == [0, 1, 2]


def test_channel_timeouts():
    c = Channel()
    start = time.monotonic()
    with pytest.raises(Full):
        c.put(1, timeout=0.01)
    with pytest.raises(Empty):
        c.get(timeout=0.01)
    assert time.monotonic() - start >= 0.019
    assert c.balance == 0


# --- threads -----------------------------------------------------------------------------


def test_threads_put_while_greenlets_get_nothing_lost():
    q = Queue()
    per_thread, nthreads = 300, 4

    def producer(k):
        def run():
            for i in range(per_thread):
                q.put((k, i))
                if i % 50 == 0:
                    time.sleep(0)

        return run

    got = []

    def consumer():
        for _ in range(per_thread * nthreads // 2):
            got.append(q.get(timeout=10))

    consumers = [gw.spawn(consumer) for _ in range(2)]
    gw.sleep(0)
    threads = start_threads(*[producer(k) for k in range(nthreads)])
    gw.joinall(consumers, raise_error=True)
    join_threads_cooperatively(threads)
    assert sorted(got) == sorted((k, i) for k in range(nthreads) for i in range(per_thread))
    for k in range(nthreads):
        assert [i for kk, i in got if kk == k] == list(range(per_thread))  # per-producer FIFO
    assert q.unfinished_tasks == per_thread * nthreads


def test_thread_put_into_bounded_queue_blocks_until_greenlets_make_room():
    q = Queue(3)
    n = 200

    def producer():
        for i in range(n):
            q.put(i)
        q.put(StopIteration)

    threads = start_threads(producer)
    got = list(q)
    join_threads_cooperatively(threads)
    assert got == list(range(n))


def test_thread_put_nowait_and_timeout_on_a_full_queue():
    q = Queue(1)  # owned by the main thread's hub, which serves the thread
    q.put("x")
    outcomes = []

    def thread_side():
        try:
            q.put_nowait("y")
        except Full:
            outcomes.append("full")
        try:
            q.put("z", timeout=0.01)
        except Full:
            outcomes.append("timeout")

    threads = start_threads(thread_side)
    join_threads_cooperatively(threads)
    assert outcomes == ["full", "timeout"]
    # The timed-out put must not land later.
    assert q.get() == "x"
    gw.sleep(0.005)
    assert q.empty() and not q.putters


def test_thread_gets_from_a_queue_fed_by_greenlets():
    q = Queue()
    results = []

    def consumer():
        for _ in range(50):
            results.append(q.get(timeout=10))
        try:
            q.get(timeout=0.005)
        except Empty:
            results.append("empty")
        try:
            q.get_nowait()
        except Empty:
            results.append("empty")

    threads = start_threads(consumer)
    for i in range(50):
        q.put(i)
        if i % 10 == 0:
            gw.sleep(0.001)
    join_threads_cooperatively(threads)
    assert results == list(range(50)) + ["empty", "empty"]


# --- property: random producers and consumers ---------------------------------------------

ops = st.lists(
    st.tuples(
        st.sampled_from(["put", "get", "sleep", "put_nowait", "get_nowait"]), st.integers(0, 3)
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    maxsize=st.one_of(st.none(), st.integers(1, 4)),
    producers=st.lists(ops, min_size=1, max_size=4),
    consumers=st.lists(ops, min_size=1, max_size=4),
    kind=st.sampled_from(["Queue", "SimpleQueue", "LifoQueue", "PriorityQueue"]),
)
def test_random_producers_and_consumers_lose_and_duplicate_nothing(
    maxsize, producers, consumers, kind
):
    q = {
        "Queue": Queue,
        "SimpleQueue": SimpleQueue,
        "LifoQueue": LifoQueue,
        "PriorityQueue": PriorityQueue,
    }[kind](maxsize)
    put_items, got_items = [], []
    counter = iter(range(10**6))

    def producer(script):
        for op, n in script:
            if op in ("put", "put_nowait"):
                for _ in range(n + 1):
                    item = next(counter)
                    if op == "put":
                        q.put(item)
                        put_items.append(item)
                    else:
                        try:
                            q.put_nowait(item)
                        except Full:
                            pass
                        else:
                            put_items.append(item)
            elif op == "sleep":
                for _ in range(n):
                    gw.sleep(0)

    def consumer(script):
        for op, n in script:
            if op == "get":
                for i in range(n + 1):
                    # timeout=0 parks for one loop pass: both the wake-up
                    # and the timeout paths run, and no real time passes.
                    try:
                        got_items.append(q.get(timeout=0 if i % 2 else 0.0005))
                    except Empty:
                        pass
            elif op == "get_nowait":
                try:
                    got_items.append(q.get_nowait())
                except Empty:
                    pass
            elif op == "sleep":
                for _ in range(n):
                    gw.sleep(0)

    greenlets = [gw.spawn(producer, s) for s in producers] + [
        gw.spawn(consumer, s) for s in consumers
    ]
    # Producers may block on a full queue once consumers are done: drain.
    while not all(g.dead for g in greenlets[: len(producers)]):
        try:
            got_items.append(q.get(timeout=0))
        except Empty:
            pass
    gw.joinall(greenlets, raise_error=True)
    while not q.empty():
        got_items.append(q.get_nowait())
    assert sorted(got_items) == sorted(put_items)
    assert len(set(got_items)) == len(got_items)
    assert not q.getters and not q.putters
    if maxsize is not None:
        assert q.qsize() <= maxsize


@settings(max_examples=25, deadline=None)
@given(
    maxsize=st.one_of(st.none(), st.integers(1, 5)),
    thread_counts=st.lists(st.integers(0, 60), min_size=1, max_size=3),
    greenlet_counts=st.lists(st.integers(0, 30), max_size=2),
    consumers=st.integers(1, 3),
)
def test_random_thread_and_greenlet_producers_lose_and_duplicate_nothing(
    maxsize, thread_counts, greenlet_counts, consumers
):
    q = Queue(maxsize)
    expected = [("t", k, i) for k, n in enumerate(thread_counts) for i in range(n)]
    expected += [("g", k, i) for k, n in enumerate(greenlet_counts) for i in range(n)]
    got = []

    def thread_producer(k, n):
        def run():
            for i in range(n):
                q.put(("t", k, i))
                if i % 7 == 0:
                    time.sleep(0)

        return run

    def greenlet_producer(k, n):
        for i in range(n):
            q.put(("g", k, i))
            if i % 3 == 0:
                gw.sleep(0)

    def consumer():
        while True:
            item = q.get(timeout=10)
            if item is StopIteration:
                return
            got.append(item)

    consuming = [gw.spawn(consumer) for _ in range(consumers)]
    producing = [gw.spawn(greenlet_producer, k, n) for k, n in enumerate(greenlet_counts)]
    threads = start_threads(*[thread_producer(k, n) for k, n in enumerate(thread_counts)])
    gw.joinall(producing, raise_error=True)
    join_threads_cooperatively(threads)
    for _ in consuming:
        q.put(StopIteration)
    gw.joinall(consuming, raise_error=True)
    assert sorted(got) == sorted(expected)
    # Each producer's items arrive in the order it put them.
    for source in {item[:2] for item in expected}:
        assert [item[2] for item in got if item[:2] == source] == sorted(
            item[2] for item in expected if item[:2] == source
        )
    assert q.empty() and not q.getters and not q.putters


def test_queue_outlives_a_destroyed_hub():
    q, bounded = Queue(), Queue(1)
    bounded.put("kept")
    waiting = [gw.spawn(q.get), gw.spawn(bounded.put, "lost")]
    gw.sleep(0)
    assert len(q.getters) == 1 and len(bounded.putters) == 1
    gw.get_hub().destroy(destroy_loop=True)
    del waiting
    q.put(1)
    assert gw.spawn(q.get).get() == 1
    g = gw.spawn(q.get)
    gw.sleep(0)
    q.put(2)
    assert g.get() == 2
    # The put of the dead greenlet never happened.
    assert bounded.get() == "kept"
    assert bounded.empty()
    g = gw.spawn(bounded.put, "new")
    gw.sleep(0)
    assert bounded.get() == "new"


def test_channel_belongs_to_one_thread():
    c = Channel()
    getter = gw.spawn(c.get)
    gw.sleep(0)
    errors = []

    def other_thread():
        try:
            c.put_nowait(1)
        except InvalidThreadUseError as ex:
            errors.append(ex)

    threads = start_threads(other_thread)
    join_threads_cooperatively(threads)
    assert len(errors) == 1
    c.put(2)
    assert getter.get() == 2


def test_a_timeout_object_as_timeout_raises_itself_from_get_and_put():
    # As in gevent: the Timeout object, not Empty / Full.
    timer = gw.Timeout(0.01)
    with pytest.raises(gw.Timeout) as raised:
        Queue().get(timeout=timer)
    assert raised.value is timer and not timer.pending
    full = Queue(1)
    full.put(1)
    timer = gw.Timeout(0.01)
    with pytest.raises(gw.Timeout) as raised:
        full.put(2, timeout=timer)
    assert raised.value is timer and full.qsize() == 1
    # Satisfied in time: the item, and the timer cancelled.
    q = Queue()
    gw.spawn(q.put, "item")
    timer = gw.Timeout(5)
    assert q.get(timeout=timer) == "item" and not timer.pending


def test_channel_takes_a_timeout_object_too():
    channel = Channel()
    timer = gw.Timeout(0.01)
    with pytest.raises(gw.Timeout) as raised:
        channel.get(timeout=timer)
    assert raised.value is timer and not timer.pending
    timer = gw.Timeout(0.01)
    with pytest.raises(gw.Timeout) as raised:
        channel.put("x", timeout=timer)
    assert raised.value is timer and not channel.putters
