"""greenwheel.util and greenwheel.contextvars: what gevent code uses to debug and port."""

import io
import sys
import threading
import time

import greenlet
import pytest

import greenwheel as gw
from greenwheel import util
from greenwheel.contextvars import ContextVar
from greenwheel.event import Event


def parked_in_util_test(event):
    event.wait()


# --- wrap_errors --------------------------------------------------------------------------


def test_wrap_errors_returns_listed_errors_and_raises_others():
    def parse(text):
        """Parse an int."""
        return int(text)

    wrapped = util.wrap_errors((ValueError, TypeError), parse)
    assert wrapped("12") == 12
    err = wrapped("x")
    assert isinstance(err, ValueError)
    assert isinstance(wrapped(None), TypeError)
    with pytest.raises(ZeroDivisionError):
        util.wrap_errors(ValueError, lambda: 1 / 0)()
    assert str(wrapped) == str(parse) and repr(wrapped) == repr(parse)
    parse.tag = "t"
    assert wrapped.__name__ == "parse" and wrapped.tag == "t"  # other attributes: func's


def test_wrap_errors_in_a_greenlet_is_a_value_not_a_printed_error(capsys):
    job = gw.spawn(util.wrap_errors(ValueError, int), "x")
    job.join()
    assert job.successful()
    assert isinstance(job.value, ValueError)
    assert "Traceback" not in capsys.readouterr().err


# --- format_run_info, print_run_info, GreenletTree ------------------------------------------


def test_format_run_info_shows_threads_and_parked_greenlets():
    event = Event()
    job = gw.spawn(parked_in_util_test, event)
    gw.sleep(0)
    started = threading.Event()
    stop = threading.Event()

    def other_thread():
        started.set()
        stop.wait(30)

    thread = threading.Thread(target=other_thread, name="util-test-thread")
    thread.start()
    started.wait(30)
    try:
        lines = util.format_run_info()
        text = "\n".join(lines)
        me = "Thread 0x%x (%s) (CURRENT)" % (threading.get_ident(), threading.current_thread().name)
        assert me in lines
        assert "Thread 0x%x (util-test-thread)" % (thread.ident,) in lines
        assert "in other_thread" in text  # the other thread's stack
        assert "in test_format_run_info_shows_threads_and_parked_greenlets" in text
        mine = text.split("(CURRENT)")[1].split("Thread 0x")[0].split("* Greenlets")[0]
        assert "greenwheel/_util.py" not in mine  # the caller's stack, not the helper's own frames
        assert repr(job) in text
        assert "in parked_in_util_test" in text
        assert repr(gw.get_hub()) in text

        quiet = "\n".join(util.format_run_info(thread_stacks=False, greenlet_stacks=False))
        assert "...stack elided..." in quiet
        assert repr(job) in quiet
        assert "in parked_in_util_test" not in quiet and "in other_thread" not in quiet
    finally:
        stop.set()
        thread.join(30)
        event.set()
        job.join()


def test_print_run_info_writes_to_the_file():
    out = io.StringIO()
    util.print_run_info(file=out)
    text = out.getvalue()
    assert "* Threads" in text and "* Greenlets" in text
    assert "in test_print_run_info_writes_to_the_file" in text


def test_greenlet_tree_follows_spawners():
    event = Event()
    job = gw.spawn(parked_in_util_test, event)
    gw.sleep(0)
    try:
        forest = util.GreenletTree.forest()
        mine = forest[0]
        assert mine.is_current_tree() and mine.root
        assert mine.greenlet.parent is None
        assert util.GreenletTree.current_tree().greenlet is mine.greenlet

        def find(tree, glet):
            if tree.greenlet is glet:
                return tree
            for child in tree.child_trees:
                found = find(child, glet)
                if found is not None:
                    return found
            return None

        hub_tree = find(mine, gw.get_hub())
        assert hub_tree is not None and not hub_tree.root
        # As in gevent, a greenlet hangs below the one that spawned it (here
        # this test's), not below its parent (the hub).
        assert job.parent is gw.get_hub()
        assert job in [child.greenlet for child in mine.child_trees]
        assert find(hub_tree, job) is None
        lines = mine.format_lines()
        assert lines[0] == repr(mine.greenlet)
        assert any(line.endswith("+--- " + repr(job)) for line in lines)
        assert "in parked_in_util_test" in mine.format()
        assert "Running:" not in str(mine)  # no details
        assert "Running:" not in mine.format({"running_stacks": False})
    finally:
        event.set()
        job.join()


def test_each_thread_with_greenlets_is_its_own_tree():
    seen = {}

    def in_thread():
        glet = greenlet.greenlet(lambda: None)
        roots = [tree.greenlet for tree in util.GreenletTree.forest()]
        seen["main"] = greenlet.getcurrent()
        seen["roots"] = roots
        seen["current"] = util.GreenletTree.current_tree().greenlet
        del glet

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(30)
    assert seen["current"] is seen["main"]
    assert seen["roots"][0] is seen["main"]  # the caller's tree comes first
    assert greenlet.getcurrent() in seen["roots"]


# --- assert_switches -----------------------------------------------------------------------


def test_assert_switches_fails_when_the_body_does_not_yield():
    with pytest.raises(AssertionError, match="did not switch"):
        with util.assert_switches():
            pass
    with util.assert_switches():
        gw.sleep(0)


def test_assert_switches_hub_only_ignores_direct_switches():
    other = greenlet.greenlet(lambda: None)
    with util.assert_switches():
        other.switch()  # into another greenlet and back: not the hub
    other = greenlet.greenlet(lambda: None)
    with pytest.raises(AssertionError, match="the hub"):
        with util.assert_switches(hub_only=True):
            other.switch()
    with util.assert_switches(hub_only=True):
        gw.sleep(0)


def test_assert_switches_max_blocking_time():
    with util.assert_switches(max_blocking_time=10):
        pass  # never switched, but quickly
    with pytest.raises(AssertionError, match="without switching") as info:
        with util.assert_switches(max_blocking_time=0.01):
            time.sleep(0.05)  # blocks the whole thread: no greenlet switch
    assert "To any greenlet in 0.0" in str(info.value)
    assert "(max allowed 0.0100 seconds)" in str(info.value)
    with pytest.raises(
        AssertionError, match="To the hub in .*: the body did not switch to the hub"
    ):
        with util.assert_switches(hub_only=True):
            pass
    # With a time limit too, hub_only still asks for a visit to the hub.
    with pytest.raises(AssertionError, match="did not switch to the hub"):
        with util.assert_switches(max_blocking_time=10, hub_only=True):
            pass
    with util.assert_switches(max_blocking_time=10, hub_only=True):
        gw.sleep(0)


def test_assert_switches_keeps_the_body_exception_and_the_previous_tracer():
    calls = []

    def previous(event, args):
        calls.append(event)

    old = greenlet.settrace(previous)
    try:
        with pytest.raises(KeyError):
            with util.assert_switches():
                raise KeyError("x")
        with util.assert_switches():
            gw.sleep(0)
        assert greenlet.gettrace() is previous
        assert "switch" in calls  # the previous tracer was still called
    finally:
        greenlet.settrace(old)


# --- contextvars and the top level ------------------------------------------------------------

request_id = ContextVar("request_id", default=None)


def test_each_greenlet_has_its_own_context():
    def handler(n):
        request_id.set(n)
        gw.sleep(0)  # the others set theirs meanwhile
        return request_id.get()

    jobs = [gw.spawn(handler, n) for n in range(5)]
    gw.joinall(jobs)
    assert [job.value for job in jobs] == list(range(5))
    assert request_id.get() is None


def test_switch_interval_is_the_interpreters():
    assert gw.getswitchinterval is sys.getswitchinterval
    assert gw.setswitchinterval is sys.setswitchinterval


def test_clear_stack_frames_clears_finished_frames_and_skips_running_ones():
    import inspect
    import weakref

    class Held:
        pass

    refs = []

    def inner():
        obj = Held()
        refs.append(weakref.ref(obj))
        return inspect.currentframe()  # a finished frame still holding obj

    frame = inner()
    held = refs[0]
    mine = Held()
    assert held() is not None
    util.clear_stack_frames(frame)  # inner's frame is done; ours (f_back) is running
    assert held() is None
    assert isinstance(mine, Held)  # our own frame's locals survived


def test_print_run_info_called_straight_from_the_loop():
    # As a loop callback it has no Python caller frame: it must still print.
    out = io.StringIO()
    gw.get_hub().loop.run_callback(util.print_run_info, True, True, None, out)
    gw.sleep(0)
    gw.sleep(0)
    assert "Greenlet" in out.getvalue() or "greenlet" in out.getvalue()


def test_greenlet_tree_text_is_gevents_layout():
    # A spawn tree drawn as gevent draws it: raw greenlets (the hub) first,
    # labels with how each greenlet ended, ':' beside the details of the top
    # level's non-last children, '|' beside their subtrees, the spawn tree
    # locals where they are set, and the greenlet locals that hold values.
    import re

    from greenwheel import local

    class Box(local.local):
        def __init__(self, size):
            self.size = size

    def fails():
        raise ValueError("no")

    def spawns_one():
        Box(16)  # this greenlet's own, gone with it
        child = gw.spawn(fails)
        child.name = "Child"
        str(child)  # as gevent's test does: the label keeps the function's name
        child.join()
        return child

    out = {}

    def in_thread():
        # A thread of its own: its tree holds only this test's greenlets.
        box = Box(7)
        assert box.size == 7
        hub = gw.get_hub()
        hub.print_exception = lambda *args: None  # the expected ValueErrors
        try:
            first = gw.spawn(spawns_one)
            first.name = "First"
            str(first)
            first.join()
            second = gw.spawn(fails)
            second.name = "Second"
            str(second)
            second.spawn_tree_locals["key"] = "value"
            second.join()
            out["text"] = util.GreenletTree.current_tree().format({"running_stacks": False})
        finally:
            hub.destroy(destroy_loop=True)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(30)
    text = out["text"]
    text = re.sub(r"<Hub [^>]*>", "<HUB>", text)
    text = re.sub(r"<greenlet\.greenlet object at [^>]*>", "<MAIN>", text)
    text = re.sub(r"0x[0-9a-f]+", "X", text)
    mine = text.split("\n +--- <HUB>")[0]
    assert mine.splitlines()[:2] == ["<MAIN>", " :    Parent: None"]
    assert " :    Greenlet Locals:" in mine and " :        {'size': 7}" in mine
    assert "{'size': 16}" not in text  # a local of a greenlet that is gone
    tail = text[text.index(" +--- <HUB>") :].splitlines()
    assert tail == [
        " +--- <HUB>",
        " :          Parent: <MAIN>",
        ' +--- <Greenlet "First" at X: spawns_one>; finished with value <Greenlet "Child" at X',
        " :          Parent: <HUB>",
        " |    +--- <Greenlet \"Child\" at X: fails>; finished with exception ValueError('no')",
        " :                Parent: <HUB>",
        " +--- <Greenlet \"Second\" at X: fails>; finished with exception ValueError('no')",
        "            Parent: <HUB>",
        "            Spawn Tree Locals",
        "            {'key': 'value'}",
    ], "\n".join(tail)


def test_greenlet_tree_roots_and_ignored_greenlets():
    # gevent's markers: greenlet_tree_is_root makes a greenlet its thread's
    # root; greenlet_tree_is_ignored leaves one out.
    def outer():
        inner = greenlet.greenlet(util.GreenletTree.current_tree)
        inner.parent.greenlet_tree_is_ignored = True
        inner.greenlet_tree_is_root = True
        return inner.switch()

    tree = greenlet.greenlet(outer).switch()
    text = tree.format({"running_stacks": False})
    lines = text.splitlines()
    assert lines[0].endswith("; not running")  # it returned: finished, and raw
    assert lines[1].startswith(" :    Parent: <greenlet.greenlet object at")
    assert len(lines) == 2 and str(tree) == lines[0]
