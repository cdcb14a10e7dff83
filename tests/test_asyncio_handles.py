"""greenwheel.asyncio's native call_soon and handles (rust/py/aio.rs).

Each behaviour is asserted on asyncio's default loop and on greenwheel's in
the same test: the native handles must do what asyncio's Python ones do.
"""

import asyncio
import contextvars
import gc
import re
import weakref
from unittest import mock

import pytest

import greenwheel
import greenwheel._core as core
import greenwheel.asyncio as gwa

LOOPS = {"asyncio": asyncio.new_event_loop, "greenwheel": gwa.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def loop(request):
    loop = LOOPS[request.param]()
    yield loop
    if not loop.is_closed():
        loop.close()


def run_once(loop):
    """Run the loop until the callbacks scheduled so far (and nothing else) ran."""
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    loop.run_until_complete(done)


def callback(*args):
    return args


def test_call_soon_and_call_later_return_the_native_handles():
    loop = gwa.new_event_loop()
    try:
        assert type(loop.call_soon(callback)) is core.Handle
        assert type(loop.call_later(10, callback)) is core.TimerHandle
        assert type(loop.call_at(loop.time() + 10, callback)) is core.TimerHandle
    finally:
        loop.close()


def test_debug_mode_records_where_a_handle_was_made(loop):
    loop.set_debug(True)
    handle = loop.call_soon(callback)  # the line the traceback ends at
    timer = loop.call_later(10, callback)
    for made in (handle, timer):
        last = made._source_traceback[-1]
        assert last.filename == __file__ and last.name.startswith("test_debug_mode")
        assert "created at %s:%d" % (__file__, last.lineno) in repr(made)
    assert handle._source_traceback[-1].lineno + 1 == timer._source_traceback[-1].lineno
    # A handle cancelled in debug mode keeps its call in its repr (asyncio's _repr).
    handle.cancel()
    assert repr(handle).startswith("<Handle cancelled callback() at ")


@pytest.mark.parametrize("method", ["call_soon", "call_later", "call_at"])
def test_debug_mode_refuses_what_asyncio_refuses(loop, method):
    loop.set_debug(True)
    schedule = getattr(loop, method)
    leading = () if method == "call_soon" else (1,)

    async def coroutine_function():
        pass

    with pytest.raises(TypeError, match="coroutines cannot be used with"):
        schedule(*leading, coroutine_function)
    with pytest.raises(TypeError, match="a callable object was expected"):
        schedule(*leading, "not callable")


def test_callbacks_run_in_order_with_their_arguments(loop):
    seen = []
    for i in range(5):
        loop.call_soon(seen.append, i)
    loop.call_soon(lambda *a: seen.append(a), 1, "x", None)
    run_once(loop)
    assert seen == [0, 1, 2, 3, 4, (1, "x", None)]


def test_a_cancelled_handle_does_not_run_and_drops_its_callback(loop):
    seen = []
    handle = loop.call_soon(seen.append, "no")
    assert not handle.cancelled()
    handle.cancel()
    handle.cancel()  # twice is harmless
    assert handle.cancelled() and handle._cancelled
    # asyncio forgets the callback of a cancelled handle (non-debug mode).
    assert handle._callback is None and handle._args is None
    run_once(loop)
    assert seen == []


def test_the_handle_runs_in_its_context(loop):
    var = contextvars.ContextVar("var", default="outer")
    seen = []
    ctx = contextvars.copy_context()
    ctx.run(var.set, "given")
    handle = loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    if hasattr(handle, "get_context"):  # asyncio's Handle has it from 3.12
        assert handle.get_context() is ctx
    var.set("at call_soon")  # no context given: a copy of the current one
    loop.call_soon(lambda: seen.append(var.get()))
    var.set("later")
    run_once(loop)
    assert seen == ["given", "at call_soon"]


def test_the_repr_names_the_callback_as_asyncio_does(loop):
    handle = loop.call_soon(callback, 1, "two")
    # Word for word asyncio's own Handle (3.13 shows the arguments in debug
    # mode only): the class, the callback and where it is defined.
    assert repr(handle) == repr(asyncio.Handle(callback, (1, "two"), loop))
    assert re.fullmatch(r"<Handle callback\(.*\) at .*test_asyncio_handles\.py:\d+>", repr(handle))
    handle.cancel()
    assert repr(handle) == "<Handle cancelled>"


@pytest.mark.parametrize("args", [(), ("one",), ((1, "in a tuple"),), (1, "two")])
def test_a_handle_passes_and_shows_its_arguments_as_asyncio_s_does(loop, args):
    # A single argument is kept without a tuple (rust/py/aio/handles.rs,
    # Args): it is still passed as itself, a tuple one not unpacked, and
    # shown as asyncio shows it, in a one-tuple.
    seen = []

    def take(*got):
        seen.append(got)

    handle = loop.call_soon(take, *args)
    assert handle._args == args
    assert repr(handle) == repr(asyncio.Handle(take, args, loop))
    run_once(loop)
    assert seen == [args]


def test_an_exception_in_a_callback_goes_to_the_exception_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    seen = []

    def boom():
        raise ValueError("boom")

    handle = loop.call_soon(boom)
    loop.call_soon(seen.append, "after")  # the batch goes on
    run_once(loop)
    assert seen == ["after"]
    [context] = contexts
    assert context["handle"] is handle
    assert isinstance(context["exception"], ValueError)
    assert re.fullmatch(r"Exception in callback .*boom\(\) at .*", context["message"])


def test_a_raising_callback_whose_handle_nobody_kept_is_reported_whole(loop):
    # Nobody holds the handle but the loop (a task's step and wake-up): the
    # exception handler still gets it with its call, as asyncio shows it, and
    # the handle stays so after the loop's later callbacks.
    contexts = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))

    def boom(arg):
        raise ValueError(arg)

    loop.call_soon(boom, "x")
    run_once(loop)
    [context] = contexts
    handle = context["handle"]
    assert handle._callback is boom
    assert handle._args == ("x",)
    # 3.13 shows a callback's arguments in a repr only in debug mode.
    assert re.fullmatch(r"<Handle .*boom\(('x')?\) at .*>", repr(handle))
    for _ in range(3):
        run_once(loop)
    assert handle._callback is boom
    assert handle._args == ("x",)
    assert contexts == [context]


def test_call_soon_given_to_a_loop_is_its_own_until_deleted(loop):
    # (greenwheel's call_soon is a data descriptor: rust/py/aio/soon_attr.rs.)
    seen = []
    original = loop.call_soon
    loop.call_soon = lambda callback, *args, context=None: seen.append(("own", args))
    loop.call_soon(seen.append, 1)
    assert seen == [("own", (1,))]
    assert "call_soon" in vars(loop)
    del loop.call_soon
    assert "call_soon" not in vars(loop)
    with pytest.raises(AttributeError, match=r"object has no attribute 'call_soon'"):
        del loop.call_soon
    loop.call_soon(seen.append, "queued")
    run_once(loop)
    assert seen == [("own", (1,)), "queued"]
    assert loop.call_soon == original
    assert type(loop).call_soon(loop, seen.append, "unbound") is not None
    run_once(loop)
    assert seen[-1] == "unbound"


def test_a_patched_call_soon_sees_the_task_steps(loop):
    async def yields():
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    with mock.patch.object(loop, "call_soon", wraps=loop.call_soon) as spy:
        loop.run_until_complete(yields())
    # The task's first step and its two wake-ups at least.
    assert spy.call_count >= 3
    assert "call_soon" not in vars(loop)
    loop.run_until_complete(yields())
    assert spy.call_count >= 3


def test_a_loop_class_that_defines_call_soon_is_used():
    calls = []

    class Loop(gwa.GreenwheelEventLoop):
        def call_soon(self, callback, *args, context=None):
            calls.append(callback)
            return super().call_soon(callback, *args, context=context)

    loop = Loop()
    try:
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    assert calls


def test_system_exit_from_a_callback_leaves_run_forever(loop):
    seen = []

    def leave():
        raise SystemExit(3)

    loop.call_soon(leave)
    loop.call_soon(seen.append, "kept")
    with pytest.raises(SystemExit):
        loop.run_forever()
    # The handle after it stays queued and runs next time, as in asyncio.
    run_once(loop)
    assert seen == ["kept"]


def test_callbacks_scheduled_by_a_callback_wait_for_the_next_batch(loop):
    order = []

    def first():
        order.append("first")
        loop.call_soon(order.append, "scheduled by first")

    loop.call_soon(first)
    loop.call_soon(order.append, "second")
    run_once(loop)
    while len(order) < 3:
        run_once(loop)
    assert order == ["first", "second", "scheduled by first"]


def test_a_closed_loop_refuses_call_soon(loop):
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.call_soon(callback)


def test_closing_drops_the_pending_handles(loop):
    seen = []
    handle = loop.call_soon(seen.append, "never")
    loop.close()
    assert seen == [] and not handle.cancelled()
    assert len(loop._ready) == 0


def test_a_loop_in_a_cycle_with_its_handles_is_collected():
    loop = gwa.new_event_loop()
    # loop -> ready queue -> handle -> loop, and the loop's own kick timer.
    loop.call_soon(callback, loop)
    loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None


def test_a_kept_handle_keeps_nothing_alive_after_cancel():
    loop = gwa.new_event_loop()
    try:

        class Payload:
            pass

        payload = Payload()
        handle = loop.call_soon(callback, payload)
        gone = weakref.ref(payload)
        del payload
        handle.cancel()
        run_once(loop)
        gc.collect()
        assert gone() is None
    finally:
        loop.close()


def test_the_ready_queue_is_a_deque_for_asyncio_s_uses():
    loop = gwa.new_event_loop()
    try:
        ready = loop._ready
        assert not ready and len(ready) == 0
        marker = asyncio.Handle(callback, (), loop)
        ready.append(marker)
        assert ready and len(ready) == 1
        assert ready.popleft() is marker
        with pytest.raises(IndexError):
            ready.popleft()
        ready.append(marker)
        ready.clear()
        assert len(ready) == 0
        # asyncio's __init__ assigns a fresh deque; a non-empty one would lose work.
        loop._ready = []
        with pytest.raises(RuntimeError):
            loop._ready = [marker]
    finally:
        loop.close()


def test_asyncio_handles_in_the_queue_run_too():
    # Readers and writers (selector_events) make asyncio.Handle objects
    # directly: the batch runs them beside the native ones.
    loop = gwa.new_event_loop()
    try:
        seen = []
        loop._ready.append(asyncio.Handle(seen.append, ("asyncio's",), loop))
        cancelled = asyncio.Handle(seen.append, ("cancelled",), loop)
        cancelled.cancel()
        loop._ready.append(cancelled)
        loop.call_soon(seen.append, "native")
        run_once(loop)
        assert seen == ["asyncio's", "native"]
    finally:
        loop.close()


def test_timers_run_in_deadline_order_and_never_early(loop):
    seen = []

    def fired(name, handle_box):
        seen.append((name, loop.time() >= handle_box[0].when()))

    boxes = {}
    for name, delay in [("c", 0.03), ("a", 0.01), ("b", 0.02)]:
        box = []
        box.append(loop.call_later(delay, fired, name, box))
        boxes[name] = box
    at_box = []
    at_box.append(loop.call_at(loop.time() + 0.005, fired, "at", at_box))
    done = loop.create_future()
    loop.call_later(0.04, done.set_result, None)
    loop.run_until_complete(done)
    assert seen == [("at", True), ("a", True), ("b", True), ("c", True)]


def test_none_for_when_or_delay_is_a_type_error(loop):
    with pytest.raises(TypeError, match="when cannot be None"):
        loop.call_at(None, callback)
    with pytest.raises(TypeError, match="delay must not be None"):
        loop.call_later(None, callback)


def test_a_cancelled_timer_does_not_run(loop):
    seen = []
    timer = loop.call_later(0.001, seen.append, "no")
    assert timer._scheduled
    timer.cancel()
    assert timer.cancelled() and timer._callback is None
    done = loop.create_future()
    loop.call_later(0.01, done.set_result, None)
    loop.run_until_complete(done)
    assert seen == []


def test_a_cancel_or_a_fire_disarms_the_wheel_timer():
    loop = gwa.new_event_loop()
    try:
        timers = [loop.call_later(60, callback) for _ in range(5)]
        assert loop._armed_count() == 5
        timers[1].cancel()
        timers[3].cancel()
        assert loop._armed_count() == 3
        assert [t._scheduled for t in timers] == [True, False, True, False, True]
        fired = loop.call_later(0, callback)
        run_once(loop)
        while fired._scheduled:
            run_once(loop)
        assert loop._armed_count() == 3
        for timer in timers:
            timer.cancel()
        assert loop._armed_count() == 0
    finally:
        loop.close()


def test_closing_disarms_pending_timers_and_drops_their_calls():
    loop = gwa.new_event_loop()

    class Payload:
        pass

    payload = Payload()
    timer = loop.call_later(60, callback, payload)
    gone = weakref.ref(payload)
    del payload
    loop.close()
    assert loop._armed_count() == 0 and not timer._scheduled
    del timer
    gc.collect()
    assert gone() is None


def test_timer_handles_compare_hash_and_repr_as_asyncio_s(loop):
    early = loop.call_at(100.0, callback, 1)
    late = loop.call_at(200.0, callback, 1)
    twin = loop.call_at(100.0, callback, 1)
    assert early < late and late > early and early <= twin and early >= twin
    assert early == twin and early != late and hash(early) == hash(twin)
    assert early.when() == 100.0
    assert repr(early) == repr(asyncio.TimerHandle(100.0, callback, (1,), loop))
    assert re.fullmatch(r"<TimerHandle when=100\.0 callback\(.*\) at .*\.py:\d+>", repr(early))
    early.cancel()
    assert early != twin
    assert repr(early) == "<TimerHandle cancelled when=100.0>"
    for timer in (late, twin):
        timer.cancel()


def test_create_task_makes_a_task_of_this_loop_with_its_name_and_context(loop):
    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "given")

    async def read():
        return var.get()

    task = loop.create_task(read(), name="reader", context=ctx)
    assert isinstance(task, asyncio.Task) and task.get_loop() is loop
    assert task.get_name() == "reader"
    assert loop.run_until_complete(task) == "given"


def test_create_task_goes_through_the_task_factory(loop):
    made = []

    def factory(loop_, coro, **kwargs):
        made.append(kwargs)
        return asyncio.Task(coro, loop=loop_, **kwargs)

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def answer():
        return 42

    task = loop.create_task(answer(), name="named")
    assert loop.run_until_complete(task) == 42 and task.get_name() == "named"
    assert made == [{}]
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None


def test_a_closed_loop_refuses_create_task(loop):
    loop.close()

    async def never():
        pass

    coro = never()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.create_task(coro)
    coro.close()


def test_readers_and_writers_fire_and_are_replaced_and_removed_as_asyncio_s(loop):
    import socket

    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        b.setblocking(False)
        seen = []
        loop.add_reader(a, seen.append, "first reader")
        loop.add_reader(a.fileno(), seen.append, "reader")  # replaces, by fd
        loop.add_writer(a, seen.append, "writer")
        run_once(loop)  # writable at once (each pass: level-triggered); nothing to read
        assert set(seen) == {"writer"}
        assert loop.remove_writer(a) is True and loop.remove_writer(a) is False
        b.send(b"x")
        while "reader" not in seen:
            run_once(loop)
        assert seen.count("first reader") == 0
        key = loop._selector.get_key(a)
        assert key.fd == a.fileno() and key.events == 1 and key.data[1] is None
        assert loop.remove_reader(a) is True and loop.remove_reader(a) is False
        with pytest.raises(KeyError):
            loop._selector.get_key(a)
        with pytest.raises(ValueError):
            loop.add_reader(-1, callback)
    finally:
        a.close()
        b.close()


def test_a_cancelled_reader_is_removed_when_its_fd_fires():
    import socket

    loop = gwa.new_event_loop()
    a, b = socket.socketpair()
    try:
        handle = loop._add_reader(a.fileno(), callback)
        handle.cancel()
        b.send(b"x")
        while a.fileno() in loop._selector.get_map():
            run_once(loop)
        assert loop._io_registrations() == {}
    finally:
        loop.close()
        a.close()
        b.close()


def test_closing_the_loop_closes_its_fd_watchers():
    import socket

    loop = gwa.new_event_loop()
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, callback)
        loop.add_writer(b, callback)
        assert len(loop._io_registrations()) == 2
        loop.close()
        assert loop._io_registrations() == {}
    finally:
        a.close()
        b.close()


def test_a_context_that_cannot_be_entered_is_reported_not_raised(loop):
    # The callback runs inside its context (entered and exited around the
    # call); a context that cannot be entered is the callback's failure, for
    # the exception handler, as with asyncio's Handle, and the batch goes on.
    contexts = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    seen = []
    loop.call_soon(seen.append, "never", context=object())
    loop.call_soon(seen.append, "after")
    run_once(loop)
    assert seen == ["after"]
    [context] = contexts
    assert context["message"].startswith("Exception in callback")


def test_timer_handles_are_entries_of_the_hubs_wheel_and_leave_it():
    # call_later/call_at arm the hub loop's wheel directly; a cancel, a fire
    # and close() each take the entry out, and none keeps the hub alive.
    loop = gwa.new_event_loop()
    wheel = loop._gw
    base, active = wheel.timer_count, wheel.activecnt

    def in_wheel():
        # What this loop has in the wheel: its timer handles, and its batch
        # kick while a batch is queued.
        return wheel.timer_count - base - int(loop._drain_queued)

    try:
        timers = [loop.call_later(60, callback) for _ in range(3)]
        assert in_wheel() == 3 and wheel.activecnt == active
        timers[0].cancel()
        assert in_wheel() == 2
        fired = loop.call_later(0, callback)
        assert in_wheel() == 3
        while fired._scheduled:
            run_once(loop)
        assert in_wheel() == 2
    finally:
        loop.close()
    assert wheel.timer_count == base and loop._armed_count() == 0


def test_call_soon_takes_its_arguments_as_asyncio_s(loop):
    with pytest.raises(TypeError):
        loop.call_soon()
    with pytest.raises(TypeError):
        loop.call_soon(callback, bogus=1)
    with pytest.raises(TypeError):
        loop.call_soon(callback, callback=callback)
    seen = []

    def record(*args):
        seen.append((args, VAR.get()))

    context = contextvars.copy_context()
    context.run(VAR.set, "given")
    loop.call_soon(record, "positional")
    loop.call_soon(callback=record)
    loop.call_soon(record, 1, 2, 3, context=context)
    loop.call_soon(record, "context None", context=None)
    run_once(loop)
    assert seen == [
        (("positional",), "unset"),
        ((), "unset"),
        ((1, 2, 3), "given"),
        (("context None",), "unset"),
    ]


VAR = contextvars.ContextVar("VAR", default="unset")


def test_get_debug_follows_set_debug_and_futures_see_it(loop):
    # get_debug() is native (every Future asks it at creation).
    assert loop.get_debug() is False
    loop.set_debug(True)
    assert loop.get_debug() is True
    assert loop.create_future()._source_traceback  # where it was made
    loop.set_debug(False)
    assert loop.get_debug() is False
    assert loop.create_future()._source_traceback is None


def test_create_task_takes_a_name_and_a_context_or_none_as_asyncio_does(loop):
    var = contextvars.ContextVar("var", default="unset")

    async def read():
        return var.get()

    context = contextvars.copy_context()
    context.run(var.set, "given")
    plain = loop.create_task(read(), name=None, context=None)
    named = loop.create_task(read(), name="named", context=context)
    assert plain.get_name().startswith("Task-")
    assert named.get_name() == "named"
    loop.run_until_complete(asyncio.gather(plain, named))
    assert (plain.result(), named.result()) == ("unset", "given")


def test_closing_a_loop_with_a_batch_queued_leaves_nothing_in_the_hubs_wheel():
    # The last batch of run_until_complete (the one that stops the loop)
    # queues another: the kick, armed in the hub's wheel, holds the loop
    # until close() disarms it (the hub may not run again for a long time).
    loop = gwa.new_event_loop()
    seen = []

    async def main():
        # Runs in the stopping batch, and queues "never" after it.
        loop.call_soon(loop.call_soon, seen.append, "never")

    def held_by_the_hub():
        return any(r is loop for r in gc.get_referents(greenwheel.get_hub().loop))

    loop.run_until_complete(main())
    assert loop._drain_queued and held_by_the_hub()
    loop.close()
    assert not loop._drain_queued and not held_by_the_hub()
    assert seen == []
