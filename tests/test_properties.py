"""Property tests: random programs of spawn/sleep/kill/link/join/timeout.

Each generated program is run on a fresh hub; afterwards every greenlet must
have finished exactly once, every link must have fired exactly once, no sleep
may have ended early, and the spawn order must show in the start order.
Plus leak checks: finished greenlets and their timers must be collectable.
"""

import gc
import time
import weakref

from hypothesis import given
from hypothesis import strategies as st

import greenwheel as gw
from _hubs import destroy_hub
from greenwheel import _core

MS = 0.001

durations = st.integers(min_value=0, max_value=4)
op = st.one_of(
    st.tuples(st.just("spawn"), durations),
    st.tuples(st.just("spawn_later"), durations, durations),
    st.tuples(st.just("sleep"), durations),
    st.tuples(st.just("kill"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("link"), st.integers(0, 30)),
    st.tuples(st.just("join"), st.integers(0, 30), st.one_of(st.none(), durations)),
    st.tuples(st.just("timeout"), durations, durations),
)


class Run:
    """Bookkeeping for one generated program."""

    def __init__(self):
        self.greenlets = []
        self.finished = {}  # index -> times the "finished" rawlink fired
        self.links = {}  # link id -> times fired
        self.started = []  # indexes of spawn()ed greenlets, in start order
        self.early = []  # sleeps that ended early

    def careful_sleep(self, seconds):
        before = time.monotonic()
        gw.sleep(seconds)
        if time.monotonic() - before < seconds:
            self.early.append(seconds)

    def worker(self, index, kind, seconds):
        if kind == "spawn":
            self.started.append(index)
        self.careful_sleep(seconds)
        return index

    def add(self, glet):
        index = len(self.greenlets)
        self.greenlets.append(glet)
        self.finished[index] = 0

        def on_finish(source, index=index):
            self.finished[index] += 1

        glet.rawlink(on_finish)
        return index

    def link(self, glet):
        link_id = len(self.links)
        self.links[link_id] = 0

        def on_link(source, link_id=link_id):
            self.links[link_id] += 1

        glet.link(on_link)


def execute(program):
    run = Run()
    for step in program:
        kind = step[0]
        if kind == "spawn":
            index = len(run.greenlets)
            run.add(gw.spawn(run.worker, index, "spawn", step[1] * MS))
        elif kind == "spawn_later":
            index = len(run.greenlets)
            run.add(gw.spawn_later(step[1] * MS, run.worker, index, "later", step[2] * MS))
        elif kind == "sleep":
            run.careful_sleep(step[1] * MS)
        elif kind == "timeout":
            with gw.Timeout(step[1] * MS, False):
                run.careful_sleep(step[2] * MS)
        elif run.greenlets:
            glet = run.greenlets[step[1] % len(run.greenlets)]
            if kind == "kill":
                glet.kill(block=step[2])
            elif kind == "link":
                run.link(glet)
            elif kind == "join":
                timeout = None if step[2] is None else step[2] * MS
                glet.join(timeout=timeout)
    gw.joinall(run.greenlets)
    # Links are delivered from the hub (callable links in a greenlet of
    # their own): let them all run.
    gw.sleep(0.001)
    gw.sleep(0)
    return run


@given(st.lists(op, max_size=25))
def test_random_programs(program):
    destroy_hub()
    run = execute(program)
    assert all(g.ready() and g.dead for g in run.greenlets)
    assert all(count == 1 for count in run.finished.values()), run.finished
    assert all(count == 1 for count in run.links.values()), run.links
    assert run.early == []
    assert run.started == sorted(run.started)
    for index, glet in enumerate(run.greenlets):
        assert glet.successful()
        # Either it ran to completion or it was killed.
        assert glet.value == index or isinstance(glet.value, gw.GreenletExit)
    destroy_hub()


@given(st.integers(min_value=2, max_value=12), durations)
def test_equal_deadlines_wake_in_arming_order(count, delay):
    destroy_hub()
    woke = []

    def sleeper(i):
        gw.sleep(delay * MS + MS)
        woke.append(i)

    gw.joinall([gw.spawn(sleeper, i) for i in range(count)])
    assert woke == list(range(count))

    woke.clear()
    gw.joinall([gw.spawn_later(delay * MS, woke.append, i) for i in range(count)])
    assert woke == list(range(count))
    destroy_hub()


@given(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=8))
def test_sleep_zero_round_robin(rounds):
    destroy_hub()
    log = []

    def worker(i, n):
        for r in range(n):
            log.append((r, i))
            gw.sleep(0)

    gw.joinall([gw.spawn(worker, i, n) for i, n in enumerate(rounds)])
    # Every ready greenlet runs once per round: the log is sorted by round,
    # and within a round by spawn order.
    assert log == sorted(log)
    destroy_hub()


# --- leaks ----------------------------------------------------------------------------


def settle():
    # The hub is suspended inside whatever callback last switched to us, and
    # that frame (and the loop's dispatch) still references its greenlet or
    # timer; one more pass through the loop lets it move on.
    gw.sleep(0.0001)
    gw.sleep(0)
    gc.collect()


def timer_count():
    settle()
    return sum(1 for obj in gc.get_objects() if type(obj) is _core.TimerWatcher)


def test_finished_greenlets_are_collected():
    refs = []
    for kind in range(5):
        if kind == 0:
            g = gw.spawn(lambda: 1)
        elif kind == 1:
            g = gw.spawn(gw.sleep, 0.001)
        elif kind == 2:
            g = gw.spawn_later(0.001, lambda: 2)
        elif kind == 3:
            g = gw.spawn(gw.sleep, 10)
            gw.sleep(0)
            g.kill()
        else:
            g = gw.Greenlet(lambda: 3)
            g.kill()
        g.link(lambda source: None)
        g.rawlink(lambda source: None)
        g.join()
        refs.append(weakref.ref(g))
        del g
    settle()
    assert [r() for r in refs] == [None] * 5


def test_failed_greenlet_collected(quiet_hub):
    g = gw.spawn(lambda: 1 / 0)
    g.join()
    ref = weakref.ref(g)
    del g
    settle()
    assert ref() is None


def test_timeouts_and_sleeps_release_their_timers():
    baseline = timer_count()
    for _ in range(20):
        with gw.Timeout(1):
            gw.sleep(0.0001)
        with gw.Timeout(0.0001, False):
            gw.sleep(1)
        gw.with_timeout(1, gw.sleep, 0)
        g = gw.spawn(gw.sleep, 10)
        g.join(timeout=0.0001)
        g.kill()
    del g
    t = gw.Timeout(1)
    ref = weakref.ref(t)
    t.start()
    t.close()
    del t
    settle()
    assert ref() is None
    assert timer_count() <= baseline


def test_pool_leaves_nothing_behind():
    from greenwheel.pool import Pool

    pool = Pool(3)
    results = list(pool.imap(lambda x: x, range(20)))
    assert results == list(range(20))
    refs = [weakref.ref(g) for g in [pool.spawn(gw.sleep, 0.0001) for _ in range(5)]]
    pool.join()
    settle()
    assert [r() for r in refs] == [None] * 5
