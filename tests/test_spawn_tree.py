"""Spawn callbacks and the spawn tree (spawning_greenlet, spawn_tree_locals), as gevent has them."""

import gc

import pytest

import greenwheel as gw
from greenwheel import Greenlet


@pytest.fixture
def spawned():
    calls = []
    Greenlet.add_spawn_callback(calls.append)
    try:
        yield calls
    finally:
        Greenlet.remove_spawn_callback(calls.append)


def test_spawn_callbacks_run_once_per_start_before_the_greenlet(spawned):
    order = []
    glet = Greenlet(lambda: order.append("run"))
    assert spawned == []  # creating is not starting

    def note(g):
        order.append("callback")

    Greenlet.add_spawn_callback(note)
    try:
        glet.start()
        glet.start()  # already started: no second call
        glet.join()
    finally:
        Greenlet.remove_spawn_callback(note)
    assert spawned == [glet]
    assert order == ["callback", "run"]


def test_spawn_callbacks_cover_spawn_later_and_subclasses(spawned):
    class Mine(Greenlet):
        pass

    later = gw.spawn_later(0.001, lambda: None)
    mine = Mine.spawn(lambda: None)
    gw.joinall([later, mine])
    assert spawned == [later, mine]


def test_adding_twice_calls_once_and_removing_is_forgiving(spawned):
    Greenlet.add_spawn_callback(spawned.append)  # already there
    gw.spawn(lambda: None).join()
    assert len(spawned) == 1
    Greenlet.remove_spawn_callback(lambda g: None)  # never added: fine
    with pytest.raises(TypeError):
        Greenlet.add_spawn_callback(42)


def test_a_failing_spawn_callback_propagates_and_the_greenlet_does_not_run():
    ran = []

    def refuse(glet):
        raise ValueError("no spawning now")

    Greenlet.add_spawn_callback(refuse)
    try:
        glet = Greenlet(lambda: ran.append(1))
        with pytest.raises(ValueError, match="no spawning now"):
            glet.start()
    finally:
        Greenlet.remove_spawn_callback(refuse)
    gw.sleep(0)
    assert ran == [] and not glet.started
    glet.start()  # without the callback it starts normally
    glet.join()
    assert ran == [1]


def test_spawning_greenlet_is_a_weak_reference_to_the_spawner():
    main = gw.getcurrent()
    outer = gw.spawn(lambda: gw.spawn(lambda: None))
    outer.join()
    inner = outer.value
    inner.join()
    assert outer.spawning_greenlet() is main
    assert inner.spawning_greenlet() is outer
    del outer
    gw.sleep(0)  # the loop lets go of the finished greenlet (its link notification)
    gc.collect()
    assert inner.spawning_greenlet() is None  # weak: the spawner is gone
    assert Greenlet.spawning_stack is None and Greenlet.spawning_stack_limit == 10


def test_spawn_tree_locals_are_shared_down_a_tree_and_new_for_each_root():
    def child():
        return gw.getcurrent().spawn_tree_locals

    def parent():
        gw.getcurrent().spawn_tree_locals["request"] = "r1"
        kid = gw.spawn(child)
        kid.join()
        return kid.value

    first, second = gw.spawn(parent), gw.spawn(parent)
    gw.joinall([first, second])
    assert first.value is first.spawn_tree_locals == {"request": "r1"}
    assert first.spawn_tree_locals is not second.spawn_tree_locals  # two roots
    # The dict may be replaced.
    glet = Greenlet(lambda: None)
    glet.spawn_tree_locals = {"x": 1}
    assert glet.spawn_tree_locals == {"x": 1}


def test_spawn_raw_greenlets_join_the_spawn_tree():
    # As gevent's spawn_raw: the raw greenlet records who spawned it and has
    # tree locals of its own (a new tree when spawned from the main greenlet),
    # which the greenlets it creates share; the main greenlet gets no dict.
    seen = {}

    def body():
        child = gw.Greenlet()
        seen["shared"] = child.spawn_tree_locals is gw.getcurrent().spawn_tree_locals
        seen["spawner"] = child.spawning_greenlet() is gw.getcurrent()

    first = gw.Greenlet(body)
    first.start()
    first.join()
    raw = gw.spawn_raw(body)
    assert raw.spawning_greenlet() is gw.getcurrent()
    assert raw.spawn_tree_locals == {} and raw.spawn_tree_locals is not first.spawn_tree_locals
    assert raw.loop is gw.get_hub().loop
    gw.sleep(0)
    assert raw.dead and seen == {"shared": True, "spawner": True}
    assert not hasattr(gw.getcurrent(), "spawn_tree_locals")
