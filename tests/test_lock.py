"""greenwheel.lock: Semaphore, BoundedSemaphore, DummySemaphore, RLock, Lock."""

import threading
import time

import pytest

import greenwheel as gw
from greenwheel import Timeout
from greenwheel._abstract_linkable import _may_be_woken_by_threads
from greenwheel.exceptions import LoopExit
from greenwheel.lock import BoundedSemaphore, DummySemaphore, Lock, RLock, Semaphore


def join_threads_cooperatively(threads, limit=10.0):
    deadline = time.monotonic() + limit
    while any(t.is_alive() for t in threads):
        assert time.monotonic() < deadline, "threads did not finish"
        gw.sleep(0.001)


# --- Semaphore ---------------------------------------------------------------------------


def test_semaphore_counter():
    s = Semaphore(2)
    assert s.counter == 2 and s.ready() and not s.locked()
    assert s.acquire() is True
    assert s.acquire(blocking=False) is True
    assert s.locked() and not s.ready()
    assert s.acquire(blocking=False) is False
    assert s.release() == 1
    assert s.release() == 2
    # A plain semaphore may be over-released.
    assert s.release() == 3
    assert "counter=3" in str(s)
    with pytest.raises(ValueError):
        Semaphore(-1)
    assert Semaphore().counter == 1 and Semaphore(None).counter == 1


def test_acquire_timeout_returns_false_after_at_least_the_timeout():
    s = Semaphore(0)
    start = time.monotonic()
    assert s.acquire(timeout=0.02) is False
    assert time.monotonic() - start >= 0.019
    assert s.linkcount() == 0 and s.counter == 0
    assert s.acquire(timeout=0) is False


def test_waiters_acquire_in_fifo_order():
    s = Semaphore(0)
    log = []

    def worker(i):
        s.acquire()
        log.append(i)

    greenlets = [gw.spawn(worker, i) for i in range(6)]
    gw.sleep(0)
    assert s.linkcount() == 6
    for _ in range(6):
        s.release()
    gw.joinall(greenlets)
    assert log == list(range(6))
    assert s.counter == 0


def test_release_wakes_only_as_many_as_units():
    s = Semaphore(0)
    log = []
    greenlets = [gw.spawn(lambda i=i: (s.acquire(), log.append(i))) for i in range(3)]
    gw.sleep(0)
    s.release()
    gw.sleep(0)
    gw.sleep(0)
    assert log == [0]
    s.release()
    s.release()
    gw.joinall(greenlets)
    assert log == [0, 1, 2]


def test_mutual_exclusion_with_context_manager():
    s = Semaphore()
    inside = []
    log = []

    def worker(i):
        for _ in range(3):
            with s:
                inside.append(i)
                assert len(inside) == 1
                gw.sleep(0)
                log.append(i)
                inside.pop()

    gw.joinall([gw.spawn(worker, i) for i in range(4)], raise_error=True)
    assert len(log) == 12
    assert s.counter == 1


def test_killed_waiter_does_not_take_a_unit():
    s = Semaphore(0)
    victim = gw.spawn(s.acquire)
    other = gw.spawn(s.acquire)
    gw.sleep(0)
    victim.kill()
    s.release()
    other.join()
    assert other.value is True and s.counter == 0 and s.linkcount() == 0


def test_timeout_exception_while_waiting():
    s = Semaphore(0)
    with Timeout(0.005, False):
        s.acquire()
        raise AssertionError("not reached")
    assert s.linkcount() == 0
    s.release()
    assert s.counter == 1


def test_wait_does_not_acquire():
    s = Semaphore(0)
    waiter = gw.spawn(s.wait)
    acquirer = gw.spawn(s.acquire)
    gw.sleep(0)
    s.release()
    gw.joinall([waiter, acquirer])
    assert acquirer.value is True
    assert waiter.value in (0, 1)
    assert s.counter == 0
    assert Semaphore(3).wait() == 3
    assert Semaphore(0).wait(timeout=0.001) == 0


def test_semaphore_rawlink():
    s = Semaphore(0)
    log = []
    s.rawlink(log.append)
    s.release()
    gw.sleep(0)
    assert log == [s]
    assert s.counter == 1


def test_acquire_forever_raises_loop_exit():
    if _may_be_woken_by_threads():
        pytest.skip("while other threads live, a parked greenlet keeps the loop alive")
    with pytest.raises(LoopExit):
        Semaphore(0).acquire()


# --- BoundedSemaphore --------------------------------------------------------------------


def test_bounded_semaphore_rejects_over_release():
    s = BoundedSemaphore(2)
    with pytest.raises(ValueError):
        s.release()
    s.acquire()
    s.acquire()
    s.release()
    s.release()
    with pytest.raises(ValueError, match="too many"):
        s.release()
    assert s.counter == 2


def test_bounded_semaphore_fifo():
    s = BoundedSemaphore(1)
    log = []

    def worker(i):
        with s:
            log.append(i)
            gw.sleep(0.001)

    gw.joinall([gw.spawn(worker, i) for i in range(5)])
    assert log == list(range(5))


# --- DummySemaphore ----------------------------------------------------------------------


def test_dummy_semaphore_never_blocks():
    d = DummySemaphore(5)
    assert d.acquire() is True and d.acquire(False) is True and d.acquire(timeout=1) is True
    assert not d.locked() and d.ready() and d.wait() == 1
    d.release()
    d.rawlink(print)
    d.unlink(print)
    with d:
        pass
    assert str(d) == "<DummySemaphore>"


# --- RLock --------------------------------------------------------------------------------


def test_rlock_is_reentrant_and_owned():
    lock = RLock()
    assert not lock.locked()
    assert lock.acquire() and lock.acquire()
    assert lock.locked() and lock._is_owned()
    lock.release()
    assert lock.locked()
    lock.release()
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()
    with lock:
        with lock:
            assert lock.locked()
    assert "RLock" in repr(lock)


def test_rlock_excludes_other_greenlets_and_checks_owner():
    lock = RLock()
    lock.acquire()
    results = []

    def other():
        results.append(lock.acquire(blocking=False))
        results.append(lock.acquire(timeout=0.005))
        try:
            lock.release()
        except RuntimeError:
            results.append("not owner")
        results.append(lock.acquire())
        lock.release()

    g = gw.spawn(other)
    gw.sleep(0.01)
    assert results == [False, False, "not owner"]
    lock.release()
    g.join()
    assert results == [False, False, "not owner", True]


def test_rlock_condition_helpers():
    lock = RLock()
    lock.acquire()
    lock.acquire()
    state = lock._release_save()
    assert not lock.locked()
    lock._acquire_restore(state)
    assert lock._is_owned() and lock._count == 2
    lock.release()
    lock.release()
    assert not lock.locked() and not lock._is_owned()


# --- Lock --------------------------------------------------------------------------------


def test_lock_has_the_threading_api():
    lock = Lock()
    assert not lock.locked()
    assert lock.acquire() is True
    assert lock.locked()
    assert lock.acquire(False) is False
    assert lock.acquire(timeout=0.001) is False
    with pytest.raises(ValueError):
        lock.acquire(False, 1)
    with pytest.raises(ValueError):
        lock.acquire(timeout=-2)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    with lock as acquired:
        assert acquired is True and lock.locked()
    assert not lock.locked()
    assert lock.acquire(timeout=-1) is True  # -1 means "forever"
    lock.release()
    assert "unlocked" in repr(lock)


def test_lock_fifo_handoff_between_greenlets():
    lock = Lock()
    log = []

    def worker(i):
        with lock:
            log.append(("in", i))
            gw.sleep(0)
            log.append(("out", i))

    gw.joinall([gw.spawn(worker, i) for i in range(4)])
    assert log == [(kind, i) for i in range(4) for kind in ("in", "out")]


def test_lock_released_by_a_thread_wakes_a_greenlet():
    lock = Lock()
    lock.acquire()

    def releaser():
        time.sleep(0.005)
        lock.release()

    t = threading.Thread(target=releaser)
    t.start()
    # No greenlet and no timer keep the loop alive: the thread must wake us.
    assert lock.acquire() is True
    t.join()
    lock.release()


def test_threads_and_greenlets_share_a_lock():
    lock = Lock()
    counter = [0]
    n = 100

    def thread_worker():
        for _ in range(n):
            with lock:
                value = counter[0]
                time.sleep(0)
                counter[0] = value + 1

    def greenlet_worker():
        for _ in range(n):
            with lock:
                value = counter[0]
                gw.sleep(0)
                counter[0] = value + 1

    # Threads start contending first: a plain thread waits as a guest of the
    # main hub rather than making a hub of its own that nobody would run.
    threads = [threading.Thread(target=thread_worker) for _ in range(2)]
    for t in threads:
        t.start()
    g = gw.spawn(greenlet_worker)
    g.join(timeout=20)
    join_threads_cooperatively(threads, limit=20)
    assert counter[0] == 3 * n
    assert not lock.locked()


def test_semaphore_released_from_thread_wakes_waiters_in_order():
    s = Semaphore(0)
    log = []

    def worker(i):
        s.acquire()
        log.append(i)

    greenlets = [gw.spawn(worker, i) for i in range(5)]
    gw.sleep(0)

    def releaser():
        for _ in range(5):
            s.release()
            time.sleep(0.0005)

    t = threading.Thread(target=releaser)
    t.start()
    gw.joinall(greenlets, timeout=10)
    t.join()
    assert log == list(range(5))


def test_plain_threads_share_a_lock_without_any_hub_running():
    # No greenlet ever waits and the main thread just joins: the threads wake
    # each other directly (a plain thread never needs a hub to wait).
    lock = Lock()
    counter = [0]

    def worker():
        for _ in range(200):
            with lock:
                value = counter[0]
                time.sleep(0)
                counter[0] = value + 1

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert counter[0] == 600


def test_plain_thread_acquire_timeout():
    s = Semaphore(0)
    results = []

    def worker():
        start = time.monotonic()
        results.append(s.acquire(timeout=0.02))
        results.append(time.monotonic() - start >= 0.019)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert results == [False, True]
    s.release()
    assert s.counter == 1 and s.linkcount() == 0
