"""greenwheel.threadpool: blocking functions in OS threads, results waited for cooperatively."""

import concurrent.futures as cf
import sys
import threading
import time

import pytest

import greenwheel as gw
from _childproc import retire_default_threadpool, run_python
from greenwheel import socket as gsocket
from greenwheel._threadpool import get_threadpool
from greenwheel.exceptions import InvalidThreadUseError
from greenwheel.threadpool import ThreadPool, ThreadPoolExecutor, ThreadResult

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _no_lingering_workers():
    yield
    retire_default_threadpool()


@pytest.fixture
def pool():
    p = ThreadPool(4)
    yield p
    p.kill()


def _loop_turner(ticker, loop_turned):
    """A greenlet that sets *loop_turned* once the ticker has ticked three
    more times: it gets there only if the loop keeps running."""

    def run(target):
        while len(ticker) < target:
            gw.sleep(0.01)
        loop_turned.set()

    return gw.spawn(run, len(ticker) + 3)


def test_spawn_runs_in_parallel_threads_without_blocking_the_loop(pool, ticker):
    main = threading.get_ident()
    # Only jobs running at the same time get past the barrier (a serial pool
    # breaks it after the timeout), and they end only once the loop has
    # turned while the hub waits for them.
    barrier = threading.Barrier(4)
    loop_turned = threading.Event()

    def job():
        barrier.wait(timeout=20)
        assert loop_turned.wait(timeout=20), "the loop did not run meanwhile"
        return threading.get_ident()

    results = [pool.spawn(job) for _ in range(4)]
    assert all(isinstance(r, ThreadResult) for r in results)
    assert not results[0].ready()
    turner = _loop_turner(ticker, loop_turned)
    idents = [r.get() for r in results]
    turner.get()
    assert main not in idents and len(set(idents)) == 4
    assert pool.size == 4 and pool.maxsize == 4
    assert all(r.ready() and r.successful() for r in results)


def test_apply_family_and_errors(pool):
    assert pool.apply(divmod, (7, 2)) == (3, 1)
    assert pool.apply(dict, (), {"a": 1}) == {"a": 1}
    got = []
    result = pool.apply_async(pow, (2, 8), callback=got.append)
    assert result.get() == 256
    gw.sleep(0.01)
    assert got == [256]
    assert pool.apply_cb(pow, (3, 2), callback=got.append) == 9 and got[-1] == 9

    failing = pool.spawn(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.get()
    assert failing.ready() and not failing.successful()
    assert isinstance(failing.exception, ZeroDivisionError)
    assert failing.value is None


def test_map_imap_imap_unordered(pool):
    assert pool.map(lambda x: x * 2, range(10)) == list(range(0, 20, 2))
    assert list(pool.imap(lambda x, y: x + y, range(5), range(5))) == [0, 2, 4, 6, 8]

    def delayed(x):
        time.sleep(0.05 * (4 - x))
        return x

    assert list(pool.imap(delayed, range(4))) == [0, 1, 2, 3]
    unordered = list(pool.imap_unordered(delayed, range(4), maxsize=4))
    assert sorted(unordered) == [0, 1, 2, 3]
    assert unordered[0] == 3  # the quickest came back first (4 threads, 4 calls)
    assert pool.map_async(lambda x: -x, [1, 2]).get() == [-1, -2]


def test_get_timeout_wait_and_wait_many(pool):
    slow = pool.spawn(time.sleep, 0.3)
    with pytest.raises(gw.Timeout):
        slow.get(timeout=0.05)
    with pytest.raises(gw.Timeout):
        slow.get(block=False)
    assert slow.wait(0.01) is False
    assert slow.wait() is True and slow.get() is None

    results = [pool.spawn(time.sleep, d) for d in (0.15, 0.01, 0.05)]
    first = next(gw.iwait(results))
    assert first is results[1]
    done = gw.wait(results, timeout=5)
    assert len(done) == 3


def test_join_kill_and_size(ticker):
    pool = ThreadPool(2)
    assert pool.size == 0  # lazily started
    for _ in range(4):
        pool.spawn(time.sleep, 0.05)
    assert len(pool) == 4
    assert pool.join(timeout=5) is True
    assert len(pool) == 0
    assert pool.size == 2

    # kill(): returns at once; queued work still runs (as in gevent), then
    # the workers retire.
    release = threading.Event()
    blockers = [pool.spawn(release.wait, 10) for _ in range(2)]
    queued = pool.spawn(lambda: "still runs")
    pool.kill()
    assert pool.size == 0
    release.set()
    assert queued.get(timeout=10) == "still runs"
    for b in blockers:
        assert b.get(timeout=10) is True
    deadline = time.monotonic() + 2
    while pool.size and time.monotonic() < deadline:
        gw.sleep(0.01)
    assert pool.size == 0
    # Still usable afterwards.
    assert pool.apply(len, ("abc",)) == 3

    pool.maxsize = 1
    assert pool.maxsize == 1
    pool.kill()


def test_join_timeout(pool):
    pool.spawn(time.sleep, 0.3)
    assert pool.join(timeout=0.05) is False
    assert pool.join() is True


def test_results_reach_hubs_of_other_threads():
    # A real OS thread with its own hub submits work to the process-wide
    # pool; the pool wakes *that* hub when the result is ready.
    pool = get_threadpool()
    out = {}

    def in_thread():
        start = time.monotonic()
        results = [pool.spawn(time.sleep, 0.1) for _ in range(2)]
        out["ready"] = len(gw.wait(results, timeout=20))
        out["elapsed"] = time.monotonic() - start
        out["hub"] = gw.get_hub().main_hub
        gw.get_hub().destroy(destroy_loop=True)

    thread = threading.Thread(target=in_thread)
    thread.start()
    while thread.is_alive():
        gw.sleep(0.01)
    # Woken by the results (0.1 s each), not by the 20 s timeout: the margin
    # is for a loaded machine.
    assert out["ready"] == 2 and out["elapsed"] < 5, out
    assert out["hub"] is False


def test_hub_threadpool_and_resolver(ticker):
    hub = gw.get_hub()
    assert isinstance(hub.threadpool, ThreadPool)
    assert hub.threadpool is gw.get_hub().threadpool
    # Name look-ups go through the pool; the loop keeps ticking.
    infos = gsocket.getaddrinfo("localhost", 80, gsocket.AF_INET, gsocket.SOCK_STREAM)
    assert infos[0][4] == ("127.0.0.1", 80)
    assert gsocket.gethostbyname("localhost") == "127.0.0.1"
    # A pool assigned to the hub is the one used.
    mine = ThreadPool(1)
    calls = []
    real_spawn = mine.spawn

    def spawn(fn, *args, **kwargs):
        calls.append(fn)
        return real_spawn(fn, *args, **kwargs)

    mine.spawn = spawn
    hub.threadpool = mine
    try:
        gsocket.gethostbyname_ex("localhost")
    finally:
        del hub.__dict__["_threadpool"]
        mine.kill()
    assert calls


def test_hub_threadpool_size_and_class_make_the_hubs_own_pool():
    # As in gevent: a hub with its own threadpool_size / threadpool_class
    # builds threadpool_class(threadpool_size, hub=hub) on first use, and
    # destroying the hub retires that pool.
    out = {}

    class Recording(ThreadPool):
        def __init__(self, maxsize, hub=None):
            out["made"] = (maxsize, hub)
            ThreadPool.__init__(self, maxsize, hub=hub)

    def in_thread():
        hub = gw.get_hub()
        assert hub.threadpool_size == 10 and hub.threadpool_class is ThreadPool
        hub.threadpool_size = 3
        hub.threadpool_class = Recording
        pool = hub.threadpool
        out["same"] = pool is hub.threadpool
        out["result"] = pool.apply(sum, ((1, 2, 3),))
        out["maxsize"] = pool.maxsize
        out["pool"] = pool
        hub.destroy(destroy_loop=True)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert out["made"][0] == 3 and out["made"][1] is not None
    assert out["same"] and out["result"] == 6 and out["maxsize"] == 3
    assert out["pool"] is not gw.get_hub().threadpool  # not the shared default
    assert out["pool"].size == 0  # the hub's destroy retired its workers


def test_executor_futures_cooperate(ticker):
    with ThreadPoolExecutor(max_workers=3) as executor:
        assert isinstance(executor, cf.ThreadPoolExecutor)
        # As above: three at once past the barrier, done after the loop turned.
        barrier = threading.Barrier(3)
        loop_turned = threading.Event()

        def job():
            barrier.wait(timeout=20)
            return loop_turned.wait(timeout=20)

        futures = [executor.submit(job) for _ in range(3)]
        assert all(isinstance(f, cf.Future) for f in futures)
        turner = _loop_turner(ticker, loop_turned)
        assert [f.result() for f in futures] == [True] * 3
        turner.get()

        failing = executor.submit(int, "x")
        assert isinstance(failing.exception(), ValueError)
        with pytest.raises(ValueError):
            failing.result()

        slow = executor.submit(time.sleep, 0.3)
        with pytest.raises(cf.TimeoutError):
            slow.result(timeout=0.05)
        assert gw.wait([slow], timeout=5) == [slow]
        assert slow.done()

        assert list(executor.map(abs, [-1, -2, 3])) == [1, 2, 3]
        done_cb = []
        f = executor.submit(pow, 2, 5)
        f.add_done_callback(lambda fut: done_cb.append(fut.result()))
        assert f.result() == 32
        gw.sleep(0.01)
        assert done_cb == [32]
    with pytest.raises(RuntimeError):
        executor.submit(pow, 1, 1)


def test_executor_initializer_and_cancel():
    seen = []
    executor = ThreadPoolExecutor(1, initializer=seen.append, initargs=("init",))
    first = executor.submit(time.sleep, 0.2)
    queued = executor.submit(pow, 2, 2)
    assert queued.cancel() is True
    assert first.result() is None
    assert queued.cancelled()
    executor.shutdown(wait=True)
    assert seen == ["init"]

    executor = ThreadPoolExecutor(1)
    running = executor.submit(time.sleep, 0.2)
    pending = executor.submit(pow, 3, 3)
    gw.sleep(0.02)
    executor.shutdown(wait=True, cancel_futures=True)
    assert running.done() and not running.cancelled()
    assert pending.cancelled()


def test_cf_wait_on_pending_future_in_its_hub_thread_is_refused_not_a_deadlock():
    # Unpatched, concurrent.futures.wait() would block this thread (and so
    # the hub that delivers the outcome) forever: it raises AttributeError.
    release = threading.Event()
    with ThreadPoolExecutor(1) as executor:
        future = executor.submit(lambda: release.wait(10) and 42)
        try:
            with pytest.raises(AttributeError):
                cf.wait((future,))
            with pytest.raises(AttributeError):
                list(cf.as_completed((future,)))
        finally:
            release.set()
        assert future.result(timeout=10) == 42
        # Finished futures work with the module functions.
        done, not_done = cf.wait((future,))
        assert done == {future} and not not_done
        assert list(cf.as_completed((future,))) == [future]


def test_spawn_from_a_thread_other_than_the_pools_hub_is_refused():
    # As in gevent: a pool belongs to the hub (thread) that made it.
    other = ThreadPool(2)
    worker_pool = ThreadPool(1)
    try:
        assert other.hub is gw.get_hub()
        with pytest.raises(InvalidThreadUseError):
            worker_pool.spawn(other.spawn, len, "x").get()
        # apply() from a foreign thread (a worker, even of the same pool)
        # runs the function right there instead.
        assert worker_pool.apply(other.apply, (len, ("xy",))) == 2
        assert worker_pool.apply(lambda: worker_pool.apply(len, ("xyz",))) == 3
    finally:
        other.kill()
        worker_pool.kill()


def test_maxsize_zero_queues_work_until_maxsize_grows():
    pool = ThreadPool(0)
    try:
        assert pool.maxsize == 0 and pool.size == 0
        result = pool.spawn(len, "abc")
        assert not result.wait(0.05)  # a safety net: nothing can run it
        assert pool.size == 0
        pool.maxsize = 1
        assert result.get(timeout=10) == 3
        pool.maxsize = 0
        assert pool.size == 0
    finally:
        pool.kill()
    with pytest.raises(ValueError):
        ThreadPool(-1)
    with pytest.raises(TypeError):
        ThreadPool(1.5)


def test_thread_result_in_gevents_low_level_form():
    # ThreadResult(receiver, hub, call_when_ready): set() or handle_error()
    # from a worker thread wakes the hub, which calls call_when_ready, then
    # receiver(result); the value is dropped afterwards.
    hub = gw.get_hub()
    for outcome in ("value", "error"):
        seen = []
        done = gw.event.Event()
        tr = ThreadResult(
            lambda r, seen=seen, done=done: (seen.append((r.value, r.exception)), done.set()),
            hub,
            lambda seen=seen: seen.append("ready"),
        )
        if outcome == "value":
            thread = threading.Thread(target=tr.set, args=(42,))
        else:
            error = ValueError("boom")
            thread = threading.Thread(
                target=tr.handle_error, args=(("ctx",), (ValueError, error, None))
            )
        errors = []
        hub.handle_error = lambda *args, errors=errors: errors.append(args)
        try:
            thread.start()
            assert done.wait(10)
        finally:
            del hub.handle_error  # the class's method again
            thread.join(10)
        if outcome == "value":
            assert seen == ["ready", (42, None)] and not errors
        else:
            assert seen == ["ready", (None, error)]
            assert errors == [(("ctx",), ValueError, error, None)]
            assert not tr.successful()
        assert tr.value is None and tr.receiver is not None


def test_a_thread_result_set_on_the_hubs_own_thread_waits_for_queued_callbacks():
    # Set from a greenlet, the outcome arrives after the callbacks queued so
    # far, so the setter ending (and whoever joins it) comes first, as when
    # libev notices the send at its next poll.
    hub = gw.get_hub()
    order = []
    delivered = gw.event.Event()
    tr = ThreadResult(None, hub, lambda: (order.append("delivered"), delivered.set()))

    def setter():
        tr.set(42)
        order.append("set")

    gw.spawn(setter).join()
    order.append("joined")
    assert delivered.wait(10)
    assert order == ["set", "joined", "delivered"]


def test_work_submitted_right_after_kill_gets_a_thread():
    # kill() queues a retirement per worker; an idle worker about to take
    # one must not count as available for work submitted after it.
    for _ in range(20):
        pool = ThreadPool(1)
        try:
            assert pool.apply(len, ("a",)) == 1
            pool.kill()
            assert pool.spawn(len, "ab").get(timeout=10) == 2
        finally:
            pool.kill()


def test_threading_profile_and_trace_cover_the_function_in_the_worker():
    from greenwheel import threadpool

    calls = []

    def hook(*_args):
        calls.append(1)

    def task():
        return sys.getprofile(), sys.gettrace()

    pool = ThreadPool(1)
    pool.size = 1  # the worker exists before the hooks are set
    old_profile, old_trace = threading.getprofile(), threading.gettrace()
    try:
        threading.setprofile(hook)
        assert threadpool._get_thread_profile() is hook
        assert pool.apply(task) == (hook, None)
        threading.setprofile(old_profile)
        threading.settrace(hook)
        assert threadpool._get_thread_trace() is hook
        assert pool.apply(task) == (None, hook)
        threading.settrace(old_trace)
        # Hooks a function sets itself end with it.
        assert pool.apply(lambda: sys.setprofile(hook)) is None
        assert pool.apply(task) == (None, None)
    finally:
        threading.setprofile(old_profile)
        threading.settrace(old_trace)
        pool.kill()
    assert calls


def test_a_refused_hook_is_the_functions_outcome_not_a_hang():
    # An audit hook refusing sys.setprofile: the caller gets the error.
    run_python(
        """
        import sys, threading
        threading.setprofile(lambda *args: None)
        from greenwheel.threadpool import ThreadPool

        def audit(event, args):
            if event == "sys.setprofile":
                raise RuntimeError("refused")
        sys.addaudithook(audit)
        pool = ThreadPool(2)
        for _ in range(3):
            try:
                pool.apply(len, ("x",))
            except RuntimeError as ex:
                assert str(ex) == "refused"
            else:
                raise AssertionError("no error")
        threading.setprofile(None)
        assert pool.apply(len, ("xy",)) == 2
        pool.kill()
        """,
        timeout=30,
    )


def test_functions_run_in_the_pools_worker_greenlet_which_subclasses_can_replace():
    from greenlet import getcurrent

    from greenwheel.threadpool import _WorkerGreenlet

    pool = ThreadPool(1)
    try:
        worker = pool.apply(getcurrent)
        assert isinstance(worker, _WorkerGreenlet) and ThreadPool._WorkerGreenlet is _WorkerGreenlet
        text = repr(worker)
        assert "ThreadPoolWorker" in text and "thread_ident=" in text and "hub=" in text
    finally:
        pool.kill()

    seen = []
    fail = [True]

    class Pool(ThreadPool):
        class _WorkerGreenlet(ThreadPool._WorkerGreenlet):
            def _before_run_task(self, func, *args):
                seen.append(("before", func))
                if fail[0]:
                    raise ZeroDivisionError("setup refused")
                ThreadPool._WorkerGreenlet._before_run_task(self, func, *args)

            def _after_run_task(self, func, *args):
                seen.append(("after", func))
                ThreadPool._WorkerGreenlet._after_run_task(self, func, *args)

    pool = Pool(2)
    try:
        # A failing setup is the caller's exception; no slot or worker is lost.
        results = [pool.spawn(len, "abc") for _ in range(3)]
        for result in results:
            with pytest.raises(ZeroDivisionError):
                result.get(timeout=10)
        assert seen == [("before", len)] * 3
        fail[0] = False
        assert pool.apply(len, ("abcd",)) == 4
        assert seen[-2:] == [("before", len), ("after", len)]
        assert pool.join(timeout=10)
    finally:
        pool.kill()
