"""greenwheel.pool: Group and Pool."""

import time

import pytest

import greenwheel as gw
from greenwheel.pool import Group, Pool, PoolFull


def double(x):
    gw.sleep(0.001 * (x % 3))
    return x * 2


# --- Group ------------------------------------------------------------------------


def test_group_membership_and_join():
    group = Group()
    assert len(group) == 0 and not group.full()
    g = group.spawn(gw.sleep, 0.005)
    h = gw.spawn(gw.sleep, 0.001)
    group.add(h)
    assert g in group and h in group and len(group) == 2
    assert set(group) == {g, h}
    assert group.join() is True
    assert len(group) == 0
    assert g.dead and h.dead
    assert group.wait_available() is None
    assert repr(group).startswith("<Group at 0x")


def test_group_discard_keeps_greenlet_running():
    group = Group()
    g = group.spawn(gw.sleep, 0.002)
    group.discard(g)
    assert g not in group
    assert group.join(timeout=0) is True
    g.join()


def test_group_join_timeout_and_raise_error(quiet_hub):
    group = Group()
    slow = group.spawn(gw.sleep, 10)
    assert group.join(timeout=0.005) is False
    slow.kill()

    def fails():
        raise KeyError("g")

    group.spawn(fails)
    with pytest.raises(KeyError):
        group.join(raise_error=True)


def test_group_from_iterable_and_start():
    gs = [gw.Greenlet(gw.sleep, 0.001) for _ in range(3)]
    group = Group(gs)
    assert len(group) == 3
    for g in gs:
        g.start()
    group.join()
    assert len(group) == 0
    late = gw.Greenlet(lambda: 1)
    group.start(late)
    group.join()
    assert late.value == 1


def test_group_kill_and_killone():
    log = []

    def worker(i):
        try:
            gw.sleep(10)
        except gw.GreenletExit:
            log.append(i)

    group = Group()
    gs = [group.spawn(worker, i) for i in range(4)]
    gw.sleep(0)
    group.killone(gs[0])
    assert log == [0]
    group.killone(gs[0])  # no longer a member: no-op
    group.kill()
    assert sorted(log) == [0, 1, 2, 3]
    assert len(group) == 0

    g = group.spawn(gw.sleep, 10)
    gw.sleep(0)
    group.kill(block=False)
    assert not g.dead
    group.join()
    assert g.dead


def test_group_kill_timeout(quiet_hub):
    def stubborn():
        while True:
            try:
                gw.sleep(10)
            except gw.GreenletExit:
                pass

    group = Group()
    g = group.spawn(stubborn)
    gw.sleep(0)
    start = time.monotonic()
    group.kill(timeout=0.01)
    assert time.monotonic() - start >= 0.01
    assert g in group
    g.kill(KeyError, block=False)
    group.join()


def test_group_map_apply():
    group = Group()
    assert group.map(double, range(6)) == [0, 2, 4, 6, 8, 10]
    assert group.apply(double, (4,)) == 8
    assert group.apply(lambda a, b: a - b, (5,), {"b": 2}) == 3
    results = []
    assert group.apply_cb(double, (1,), callback=results.append) == 2
    g = group.apply_async(double, (3,), callback=results.append)
    assert g.get() == 6
    m = group.map_async(double, [1, 2], callback=results.append)
    assert m.get() == [2, 4]
    assert group.map_cb(double, [5], callback=results.append) == [10]
    gw.sleep(0.01)
    assert sorted(results, key=repr) == sorted([2, 6, [2, 4], [10]], key=repr)


def test_group_apply_from_member_runs_inline():
    group = Group()
    inner = []

    def outer():
        inner.append(gw.getcurrent())
        return group.apply(lambda: gw.getcurrent())

    g = group.spawn(outer)
    assert g.get() is inner[0]


def test_imap_preserves_order_and_imap_unordered_completion_order():
    group = Group()
    assert list(group.imap(double, range(10))) == [x * 2 for x in range(10)]

    def delayed(d):
        gw.sleep(d)
        return d

    assert list(group.imap_unordered(delayed, [0.02, 0.001, 0.01])) == [0.001, 0.01, 0.02]
    assert list(group.imap(lambda a, b: a + b, [1, 2], [10, 20])) == [11, 22]
    assert list(group.imap(double, [])) == []


def test_imap_raises_failures_in_order(quiet_hub):
    group = Group()

    def maybe_fail(x):
        if x == 2:
            raise ValueError(x)
        return x

    it = group.imap(maybe_fail, range(4))
    assert next(it) == 0
    assert next(it) == 1
    with pytest.raises(ValueError):
        next(it)


def test_imap_error_in_iterable(quiet_hub):
    def items():
        yield 1
        raise KeyError("source")

    group = Group()
    with pytest.raises(KeyError):
        list(group.imap_unordered(double, items()))


def test_imap_unordered_maxsize_bounds_unread_results():
    started = []

    def record(x):
        started.append(x)
        return x

    pool = Pool(10)
    it = pool.imap_unordered(record, range(10), maxsize=2)
    gw.sleep(0.01)
    assert len(started) <= 3
    assert sorted(it) == list(range(10))


def test_imap_queue_reports_unread_results():
    # gevent's imap iterators expose their result queue; len() counts unread results.
    for name in ("imap", "imap_unordered"):
        group = Group()
        it = getattr(group, name)(lambda x: x, range(3))
        assert len(it.queue) == 0
        assert next(it) == 0
        group.join()  # every task has finished
        assert len(it.queue) >= 2
        assert sorted(it) == [1, 2]


# --- Pool -----------------------------------------------------------------------------


def test_pool_limits_concurrency():
    running = []
    peak = []

    def job(i):
        running.append(i)
        peak.append(len(running))
        gw.sleep(0.002)
        running.remove(i)
        return i

    pool = Pool(3)
    assert pool.free_count() == 3 and not pool.full()
    gs = [pool.spawn(job, i) for i in range(10)]
    pool.join()
    assert max(peak) == 3
    assert [g.value for g in gs] == list(range(10))
    assert pool.free_count() == 3


def test_pool_spawn_blocks_while_full():
    pool = Pool(1)
    first = pool.spawn(gw.sleep, 0.01)
    assert pool.full() and pool.free_count() == 0
    start = time.monotonic()
    second = pool.spawn(lambda: "second")
    assert first.dead
    assert time.monotonic() - start >= 0.005
    assert second.get() == "second"


def test_pool_wait_available():
    pool = Pool(1)
    pool.spawn(gw.sleep, 0.005)
    assert pool.wait_available(timeout=0.001) == 0
    assert pool.wait_available() == 1
    assert not pool.full()


def test_pool_add_non_blocking_and_timeout():
    pool = Pool(1)
    pool.spawn(gw.sleep, 0.05)
    with pytest.raises(PoolFull):
        pool.add(gw.Greenlet(print), blocking=False)
    with pytest.raises(PoolFull):
        pool.add(gw.Greenlet(print), timeout=0.001)
    pool.kill()
    assert pool.free_count() == 1


def test_pool_discard_frees_slot_once():
    pool = Pool(2)
    g = pool.spawn(gw.sleep, 0.01)
    pool.discard(g)
    pool.discard(g)
    assert pool.free_count() == 2
    pool.spawn(gw.sleep, 0.001)
    pool.spawn(gw.sleep, 0.001)
    assert pool.full()
    pool.join()
    g.join()
    assert pool.free_count() == 2
    assert pool._semaphore.counter == 2


def test_pool_unbounded_and_zero():
    pool = Pool()
    gs = [pool.spawn(gw.sleep, 0.001) for _ in range(50)]
    assert not pool.full() and pool.free_count() == 1
    assert pool.wait_available() == 1
    pool.join()
    assert all(g.dead for g in gs)

    zero = Pool(0)
    assert zero.full()
    assert zero.wait_available(timeout=0.001) == 0
    with pytest.raises(PoolFull):
        zero.add(gw.Greenlet(print), blocking=False)


def test_pool_bad_size():
    with pytest.raises(ValueError):
        Pool(-1)
    with pytest.raises(TypeError):
        Pool("3")


def test_pool_greenlet_class():
    class Tagged(gw.Greenlet):
        pass

    pool = Pool(2, greenlet_class=Tagged)
    assert isinstance(pool.spawn(lambda: 1), Tagged)


def test_pool_map_and_imap_bounded():
    running = [0]
    peak = [0]

    def job(x):
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        gw.sleep(0.001)
        running[0] -= 1
        return x * x

    pool = Pool(2)
    assert pool.map(job, range(8)) == [x * x for x in range(8)]
    assert list(pool.imap(job, range(8))) == [x * x for x in range(8)]
    assert sorted(pool.imap_unordered(job, range(8))) == sorted(x * x for x in range(8))
    assert peak[0] == 2


def test_pool_apply_async_when_full_does_not_block(virtual_clock):
    pool = Pool(1)
    occupant = pool.spawn(gw.sleep, 1000)
    start = virtual_clock.now()
    g = pool.apply_async(double, (2,))
    # Waiting for the slot would have made the clock jump the 1000 s.
    assert virtual_clock.now() == start
    # Its greenlet waited for the slot: the result comes when the occupant
    # has ended, plus double(2)'s own 2 ms.
    assert g.get() == 4
    assert occupant.ready()
    assert virtual_clock.now() - start == pytest.approx(1000.002, abs=1e-6)


def test_pool_spawn_later_and_spawn_link(quiet_hub):
    pool = Pool(2)
    start = time.monotonic()
    g = pool.spawn_later(0.005, lambda: "later")
    assert g in pool
    assert g.get() == "later" and time.monotonic() - start >= 0.005

    with pytest.raises(gw.LinkedCompleted):
        pool.spawn_link(lambda: 1)
        gw.sleep(1)
    with pytest.raises(gw.LinkedCompleted):
        pool.spawn_link_value(lambda: 1)
        gw.sleep(1)
    with pytest.raises(gw.LinkedFailed):
        pool.spawn_link_exception(lambda: 1 / 0)
        gw.sleep(1)
    pool.join()
    assert pool.free_count() == 2
