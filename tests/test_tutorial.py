"""The classic gevent tutorial examples, run unchanged with ``import greenwheel as gevent``."""

import random

import pytest

import greenwheel as gevent
from greenwheel import Greenlet, Timeout
from greenwheel.pool import Group, Pool


def test_synchronous_vs_asynchronous():
    done = []

    def task(pid):
        gevent.sleep(random.randint(0, 2) * 0.001)
        done.append(pid)

    def synchronous():
        for i in range(5):
            task(i)

    def asynchronous():
        threads = [gevent.spawn(task, i) for i in range(5)]
        gevent.joinall(threads)

    synchronous()
    assert done == [0, 1, 2, 3, 4]
    del done[:]
    asynchronous()
    assert sorted(done) == [0, 1, 2, 3, 4]


def test_explicit_context_switch(capsys):
    def foo():
        print("Running in foo")
        gevent.sleep(0)
        print("Explicit context switch to foo again")

    def bar():
        print("Explicit context to bar")
        gevent.sleep(0)
        print("Implicit context switch back to bar")

    gevent.joinall([gevent.spawn(foo), gevent.spawn(bar)])
    assert capsys.readouterr().out.splitlines() == [
        "Running in foo",
        "Explicit context to bar",
        "Explicit context switch to foo again",
        "Implicit context switch back to bar",
    ]


def test_greenlet_state(capsys):
    def win():
        return "You win!"

    def fail():
        raise Exception("You fail at failing.")

    winner = gevent.spawn(win)
    loser = gevent.spawn(fail)
    assert winner.started and loser.started
    try:
        gevent.joinall([winner, loser])
    except Exception:  # pragma: no cover - joinall does not raise by default
        pytest.fail("joinall raised")
    assert winner.value == "You win!"
    assert loser.value is None
    assert winner.ready() and loser.ready()
    assert winner.successful() and not loser.successful()
    assert str(loser.exception) == "You fail at failing."
    assert "You fail at failing." in capsys.readouterr().err


def test_program_shutdown_with_kill():
    def forever():
        while True:
            gevent.sleep(1)

    g = gevent.spawn(forever)
    gevent.sleep(0)
    g.kill()
    assert g.dead


def test_timeout_started_in_main_interrupts_join():
    timeout = Timeout(0.01)
    timeout.start()

    def wait():
        gevent.sleep(10)

    waiter = gevent.spawn(wait)
    with pytest.raises(Timeout):
        waiter.join()
    timeout.close()
    # Interrupting the join does not stop what was joined.
    assert not waiter.dead
    waiter.kill()


def test_timeout_context_manager_with_custom_exception():
    class TooLong(Exception):
        pass

    with pytest.raises(TooLong):
        with Timeout(0.005, TooLong):
            gevent.sleep(10)


def test_timeout_arguments_on_greenlet_calls():
    def wait():
        gevent.sleep(0.05)

    log = []
    timer = Timeout(0.01).start()
    thread1 = gevent.spawn(wait)
    try:
        thread1.join(timeout=0.005)
    except Timeout:  # pragma: no cover - join swallows its own timeout
        log.append("join raised")
    thread2 = gevent.spawn(wait)
    try:
        thread2.get(timeout=0.005)
    except Timeout:
        log.append("Thread 2 timed out")
    try:
        gevent.with_timeout(0.005, wait)
    except Timeout:
        log.append("Thread 3 timed out")
    assert log == ["Thread 2 timed out", "Thread 3 timed out"]
    assert timer is None  # Timeout.start() returns None, as in gevent
    # Timing out a join or a get leaves the greenlet running.
    gevent.killall([thread1, thread2])


def test_subclassing_greenlet(capsys):
    class MyGreenlet(Greenlet):
        def __init__(self, message, n):
            Greenlet.__init__(self)
            self.message = message
            self.n = n

        def _run(self):
            print(self.message)
            gevent.sleep(self.n)

    g = MyGreenlet("Hi there!", 0.001)
    g.start()
    g.join()
    assert capsys.readouterr().out == "Hi there!\n"


def test_groups(capsys):
    def talk(msg):
        for _ in range(3):
            print(msg)

    g1 = gevent.spawn(talk, "bar")
    g2 = gevent.spawn(talk, "foo")
    g3 = gevent.spawn(talk, "fizz")
    group = Group()
    group.add(g1)
    group.add(g2)
    group.join()
    group.add(g3)
    group.join()
    out = capsys.readouterr().out.split()
    assert out == ["bar"] * 3 + ["foo"] * 3 + ["fizz"] * 3


def test_group_map_imap_unordered(capsys):
    def intensive(n):
        gevent.sleep(0.003 - n * 0.001)
        return "task", n

    group = Group()
    assert group.map(intensive, range(3)) == [("task", 0), ("task", 1), ("task", 2)]
    assert list(Group().imap_unordered(intensive, range(3))) == [
        ("task", 2),
        ("task", 1),
        ("task", 0),
    ]


def test_pool_size_example(capsys):
    pool = Pool(2)

    def hello_from(n):
        print("Size of pool %s" % len(pool))

    pool.map(hello_from, range(3))
    # Same output as gevent: the third job starts once the first two have
    # left the pool.
    assert capsys.readouterr().out.splitlines() == [
        "Size of pool 2",
        "Size of pool 2",
        "Size of pool 1",
    ]


def test_classic_link_exception_in_parent(capsys):
    # gevent 0.13: a supervisor learns about its child's death through
    # LinkedFailed raised inside it.
    def child():
        gevent.sleep(0.001)
        raise ValueError("child died")

    log = []

    def parent():
        try:
            gevent.spawn_link_exception(child)
            gevent.sleep(10)
        except gevent.LinkedFailed as ex:
            log.append(str(ex))

    gevent.spawn(parent).join()
    assert len(log) == 1 and log[0].endswith("failed with ValueError")
    assert "child died" in capsys.readouterr().err


def test_classic_links_to_greenlets():
    log = []

    def receiver():
        try:
            gevent.sleep(10)
        except gevent.LinkedCompleted as ex:
            log.append(ex.source.value)

    r = gevent.spawn(receiver)
    worker = gevent.spawn(lambda: "result")
    worker.link(r)
    r.join()
    assert log == ["result"]


def test_classic_kill_then_links():
    events = []
    g = gevent.spawn(gevent.sleep, 10)
    g.link(lambda source: events.append(("callback", source.successful(), type(source.value))))
    gevent.sleep(0)
    g.kill()
    gevent.sleep(0.001)
    assert events == [("callback", True, gevent.GreenletExit)]


def test_pool_imap_classic():
    pool = Pool(4)
    assert list(pool.imap(lambda x: x * 10, range(8))) == [x * 10 for x in range(8)]
    assert pool.map(str, range(3)) == ["0", "1", "2"]
