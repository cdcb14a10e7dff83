"""greenwheel.local: greenlet-local storage with the threading.local interface."""

import copy
import gc
import threading
import weakref

import greenlet as raw_greenlet
import pytest

import greenwheel as gw
from greenwheel.local import local


class Token:
    """Something weakly referenceable to watch dicts being dropped."""


def test_attributes_are_per_greenlet():
    data = local()
    data.number = 42
    log = []

    def other():
        log.append(sorted(data.__dict__.items()))
        data.number = 11
        log.append(data.number)

    gw.spawn(other).join()
    assert log == [[], 11]
    assert data.number == 42
    assert data.__dict__ == {"number": 42}
    assert data.__dict__.setdefault("widgets", []) == []
    assert data.widgets == []


def test_missing_attribute_and_delete():
    data = local()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        data.nope  # noqa: B018
    data.x = 1
    del data.x
    with pytest.raises(AttributeError):
        del data.x
    assert not hasattr(data, "x")
    with pytest.raises(AttributeError):
        data.__dict__ = {}
    with pytest.raises(AttributeError):
        del data.__dict__


def test_plain_local_rejects_init_arguments():
    with pytest.raises(TypeError):
        local(1)
    with pytest.raises(TypeError):
        local(a=1)


class MyLocal(local):
    number = 2
    initialized = 0

    def __init__(self, **kw):
        self.initialized += 1
        self.__dict__.update(kw)

    def squared(self):
        return self.number**2

    @property
    def double(self):
        return self.number * 2

    @double.setter
    def double(self, value):
        self.number = value // 2


def test_subclass_init_runs_once_per_greenlet_with_the_same_arguments():
    data = MyLocal(color="red")
    assert data.initialized == 1 and data.color == "red"
    assert data.number == 2 and data.squared() == 4
    del data.color
    with pytest.raises(AttributeError, match="'MyLocal' object has no attribute 'color'"):
        data.color  # noqa: B018

    def other():
        seen = (data.initialized, data.color, data.number)
        data.number = 5
        return seen + (data.squared(), data.initialized)

    g = gw.spawn(other)
    g.join()
    assert g.value == (1, "red", 2, 25, 1)
    assert data.number == 2 and data.initialized == 1
    assert data.__dict__ == {"initialized": 1}


def test_subclass_positional_arguments_and_descriptors():
    class Args(local):
        def __init__(self, a, b=0):
            self.pair = (a, b)

    data = Args(1, b=2)
    assert gw.spawn(lambda: data.pair).get() == (1, 2)

    m = MyLocal()
    m.double = 10
    assert m.number == 5 and m.double == 10
    assert gw.spawn(lambda: m.double).get() == 4  # the other greenlet's number is the class default


def test_slots_of_a_subclass_are_shared():
    class Slotted(local):
        __slots__ = ("shared",)

    data = Slotted()
    data.shared = 42
    data.private = "main"

    def other():
        data.shared = 11
        return hasattr(data, "private")

    assert gw.spawn(other).get() is False
    assert data.shared == 11 and data.private == "main"


def test_getattr_hook_of_a_subclass():
    class Defaulting(local):
        def __getattr__(self, name):
            return "default-" + name

    data = Defaulting()
    data.real = 1
    assert data.real == 1 and data.missing == "default-missing"


def test_each_greenlet_of_many_sees_its_own_value():
    data = local()
    results = []

    def worker(i):
        data.value = i
        gw.sleep(0)
        results.append(data.value == i)

    gw.joinall([gw.spawn(worker, i) for i in range(20)])
    assert results == [True] * 20


def store_token(data, holder):
    data.token = holder.pop()
    return hasattr(data, "token")


def test_values_dropped_when_a_greenlet_finishes():
    data = local()
    token = Token()
    ref = weakref.ref(token)
    g = gw.spawn(store_token, data, [token])
    del token
    g.join()
    assert g.value is True
    gw.sleep(0)  # links run from the hub
    gc.collect()
    # The greenlet object is still referenced, yet its local dict is gone.
    assert g.dead
    assert ref() is None


def test_values_dropped_when_a_raw_greenlet_is_collected():
    data = local()
    token = Token()
    ref = weakref.ref(token)
    glet = raw_greenlet.greenlet(store_token)
    assert glet.switch(data, [token]) is True
    del token
    gc.collect()
    assert ref() is not None  # the greenlet object still exists
    del glet
    gc.collect()
    assert ref() is None


def test_values_dropped_when_the_local_is_collected():
    data = local()
    token = Token()
    ref = weakref.ref(token)
    g = gw.spawn(store_token, data, [token])
    del token
    g.join()
    assert g.value is True
    local_ref = weakref.ref(data)
    # The greenlet is finished but its links have not run yet: only the
    # local going away can free the value now.
    del data
    gc.collect()
    assert local_ref() is None and ref() is None


def test_locals_in_threads_are_separate():
    data = local()
    data.value = "main"
    results = {}

    def thread_main(name):
        data.value = name
        results[name] = data.value

    threads = [threading.Thread(target=thread_main, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"t0": "t0", "t1": "t1", "t2": "t2"}
    assert data.value == "main"


def test_local_in_the_hub_greenlet():
    data = local()
    data.value = "main"
    seen = []

    def in_hub():
        seen.append(hasattr(data, "value"))
        data.value = "hub"

    gw.get_hub().loop.run_callback(in_hub)
    gw.sleep(0)
    assert seen == [False] and data.value == "main"


def test_copy_keeps_the_values_of_subclass_slots():
    class WithSlots(local):
        __slots__ = ("obj", "unset")
        path = ""

        def __init__(self, obj):
            self.obj = obj

    marker = object()
    original = WithSlots(marker)
    original.path = "123"
    duplicate = copy.copy(original)
    assert duplicate.obj is marker and duplicate.path == "123"
    assert not hasattr(duplicate, "unset")
    duplicate.path = "321"
    assert original.path == "123"


def test_all_local_dicts_for_greenlet():
    from greenwheel.local import all_local_dicts_for_greenlet

    seen = {}

    def body():
        mine = local()
        mine.foo = 42
        seen["id"] = id(mine)
        seen["dicts"] = all_local_dicts_for_greenlet(gw.getcurrent())

    glet = gw.spawn(body)
    glet.join()
    assert seen["dicts"] == [((local, seen["id"]), {"foo": 42})]
    assert all_local_dicts_for_greenlet(glet) == []  # its locals are gone with it


def test_an_unhashable_subclass_works_and_is_forgotten_when_gone():
    from collections.abc import Mapping

    from greenwheel import _local

    class MappingLocal(local, Mapping):
        def __getitem__(self, name):
            return self.d[name]

        def __iter__(self):
            return iter(self.d)

        def __len__(self):
            return len(self.d)

    mapping = MappingLocal()
    mapping.d = {"a": 1}
    assert list(mapping.keys()) == ["a"] and mapping["a"] == 1
    key = id(mapping)
    assert key in _local._all_locals
    del mapping
    gc.collect()
    assert key not in _local._all_locals
