"""greenwheel.asyncio's handles and the cyclic garbage collector.

The loop's native handles are left out of the collector's lists while only
the loop holds them (queued in ``_ready`` or armed in the wheel; see
rust/py/aio/handles.rs). These tests hold that to what users see, on
asyncio's default loop and on greenwheel's alike: the same callbacks run,
and whatever a kept handle is in a reference cycle with is still collected
once the loop lets go of the handle (it ran, was cancelled, or the loop was
closed), and so is a loop abandoned with handles pending.
"""

import asyncio
import gc
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import greenwheel.asyncio as gwa

LOOPS = {"asyncio": asyncio.new_event_loop, "greenwheel": gwa.new_event_loop}


class Payload:
    """What a callback gets; it keeps the handle that will call it."""

    def __init__(self, tag):
        self.tag = tag
        self.handle = None


def record(log, payload):
    log.append(payload.tag)


def settle(loop):
    """Run until the zero-delay handles scheduled so far have run."""
    loop.run_until_complete(asyncio.sleep(0.01))


# kind: "soon" (call_soon), "later" (call_later(0), fires), "far" (an hour
# out, never fires); keep: the payload keeps its handle (a cycle payload ->
# handle -> args -> payload); cancel: cancelled before the loop runs.
OPS = st.lists(
    st.tuples(st.sampled_from(["soon", "later", "far"]), st.booleans(), st.booleans()),
    max_size=12,
)


def play(make, ops, close_before_running):
    loop = make()
    log, refs = [], []
    for tag, (kind, keep, cancel) in enumerate(ops):
        payload = Payload(tag)
        if kind == "soon":
            handle = loop.call_soon(record, log, payload)
        elif kind == "later":
            handle = loop.call_later(0, record, log, payload)
        else:
            handle = loop.call_later(3600, record, log, payload)
        if keep:
            payload.handle = handle
        if cancel:
            handle.cancel()
        refs.append(weakref.ref(payload))
        del payload, handle
    if not close_before_running:
        settle(loop)
    loop.close()
    del loop
    gc.collect()
    return sorted(log), [tag for tag, ref in enumerate(refs) if ref() is not None]


@settings(max_examples=40, deadline=None)
@given(OPS, st.booleans())
def test_kept_handles_in_cycles_are_collected_as_with_asyncio_s_loop(ops, close_before_running):
    expected = play(LOOPS["asyncio"], ops, close_before_running)
    got = play(LOOPS["greenwheel"], ops, close_before_running)
    assert got == expected
    assert got[1] == []  # nothing outlives the loop and its handles


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_a_timer_handle_kept_by_a_sleeper_is_tracked_again_once_it_fires(name):
    # asyncio.sleep keeps its TimerHandle: after the sleep the task, its
    # coroutine and that handle are ordinary garbage when dropped.
    loop = LOOPS[name]()
    try:
        kept = []

        async def sleeper():
            kept.append(asyncio.current_task())
            await asyncio.sleep(0.001)

        loop.run_until_complete(sleeper())
        gone = weakref.ref(kept.pop())
        gc.collect()
        assert gone() is None
    finally:
        loop.close()


def test_a_loop_abandoned_with_handles_pending_is_collected_once_closed():
    loop = gwa.new_event_loop()
    payload = Payload("never")
    payload.handle = loop.call_soon(record, [], payload)
    timer_payload = Payload("never either")
    timer_payload.handle = loop.call_later(3600, record, [], timer_payload)
    refs = [weakref.ref(loop), weakref.ref(payload), weakref.ref(timer_payload)]
    loop.close()
    del loop, payload, timer_payload
    gc.collect()
    assert [ref() for ref in refs] == [None, None, None]


def test_handles_only_the_loop_holds_are_visited_through_it():
    # The collector finds a cycle through an untracked queued handle: the
    # loop's ready queue reports the handle's references for it.
    loop = gwa.new_event_loop()
    try:
        box = []
        loop.call_soon(record, box, Payload("x"))
        referents = gc.get_referents(loop._ready)
        assert any(type(r) is tuple and r and r[0] is box for r in referents)
        settle(loop)
        assert box == ["x"]
    finally:
        loop.close()


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_a_collection_while_the_loop_runs_keeps_queued_work_and_frees_it_once_run(name):
    # While the loop runs, the handles it queues and arms are left out of
    # the collector's walk (handles.rs, what running changes): a collection
    # then keeps all their work alive, and what only they held, in a cycle
    # with a kept handle or not, is freed once they ran.
    loop = LOOPS[name]()
    try:
        log = []

        async def main():
            refs = []
            for tag in range(60):
                payload = Payload(tag)
                if tag % 3 == 0:
                    handle = loop.call_soon(record, log, payload)
                elif tag % 3 == 1:
                    handle = loop.call_later(0.001, record, log, payload)
                else:
                    handle = loop.call_at(loop.time() + 0.002, record, log, payload)
                if tag % 2:
                    payload.handle = handle  # a cycle: payload -> handle -> args
                refs.append(weakref.ref(payload))
                del payload, handle
            gc.collect()
            alive_while_queued = [ref() is not None for ref in refs]
            await asyncio.sleep(0.05)
            gc.collect()
            return alive_while_queued, [ref() is not None for ref in refs]

        queued, after = loop.run_until_complete(main())
        assert queued == [True] * 60
        assert after == [False] * 60
        assert sorted(log) == list(range(60))
    finally:
        loop.close()


@pytest.mark.parametrize("name", sorted(LOOPS))
def test_a_fired_timer_handle_kept_in_a_cycle_is_collected_while_the_loop_runs(name):
    # A timer handle that ran while someone else held it stays untracked
    # for one more batch (handles.rs, fired timer handles); a cycle through
    # it is still found once the loop has run on.
    loop = LOOPS[name]()
    try:

        async def main():
            log = []
            payload = Payload("fired")
            payload.handle = loop.call_later(0.001, record, log, payload)
            ref = weakref.ref(payload)
            del payload
            await asyncio.sleep(0.01)  # the earlier timer runs first
            for _ in range(3):
                await asyncio.sleep(0)  # batches go by
            gc.collect()
            return log, ref() is None

        assert loop.run_until_complete(main()) == (["fired"], True)
    finally:
        loop.close()


# -- call_soon handles reused after they ran (rust/py/aio/handles.rs, spares) --

VAR = __import__("contextvars").ContextVar("VAR", default="unset")

# Per call_soon: keep the handle, keep a weak reference to it, run it in a
# context of its own (VAR set to its tag), cancel it.
SOON = st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()), max_size=8)


def play_soon(make, batches):
    loop = make()
    log, kept, weak = [], [], []

    def seen(tag):
        log.append((tag, VAR.get()))

    try:
        for number, batch in enumerate(batches):
            for index, (keep, weakly, own_context, cancel) in enumerate(batch):
                tag = f"{number}.{index}"
                context = None
                if own_context:
                    context = __import__("contextvars").copy_context()
                    context.run(VAR.set, tag)
                handle = loop.call_soon(seen, tag, context=context)
                if keep:
                    kept.append((tag, handle, context))
                if weakly:
                    weak.append(weakref.ref(handle))
                if cancel:
                    handle.cancel()
                del handle
            # One batch runs them; the next batch's call_soon may reuse them.
            loop.run_until_complete(asyncio.sleep(0))
        # A kept handle is still itself: its call and context, not a later one's.
        kept_state = [
            (tag, h._callback is seen, h._args, h._context is c if c else True)
            for tag, h, c in kept
        ]
        assert len({id(h) for _, h, _ in kept}) == len(kept)
        dead = [ref() is None for ref in weak]
    finally:
        loop.close()
    return log, kept_state, dead


@settings(max_examples=40, deadline=None)
@given(st.lists(SOON, max_size=5))
def test_reused_call_soon_handles_behave_as_asyncio_s_fresh_ones(batches):
    expected = play_soon(LOOPS["asyncio"], batches)
    assert play_soon(LOOPS["greenwheel"], batches) == expected


def test_many_yields_reuse_handles_without_mixing_contexts():
    # 50 tasks, each in its own context, yield 100 times: every handle of
    # a task's step runs in that task's context whichever spare carries it.
    loop = gwa.new_event_loop()
    try:
        seen = {}

        async def yielder(name):
            VAR.set(name)
            for _ in range(100):
                await asyncio.sleep(0)
                seen.setdefault(name, set()).add(VAR.get())

        async def main():
            await asyncio.gather(*[yielder(f"t{i}") for i in range(50)])

        loop.run_until_complete(main())
        assert seen == {f"t{i}": {f"t{i}"} for i in range(50)}
    finally:
        loop.close()


# -- call_soon calls queued without their handle (handles.rs, detached calls) --

# What Python code can do with the queue meanwhile: pop an entry and look at
# it, then run it or put it back; the rest run in the batch.
QUEUE_OPS = st.lists(st.sampled_from(["soon", "soon-kept", "pop-run", "pop-back"]), max_size=10)


def play_queue(make, ops):
    loop = make()
    log, looked = [], []

    def seen(tag):
        log.append((tag, VAR.get()))

    kept = []
    try:
        for tag, op in enumerate(ops):
            if op.startswith("soon"):
                context = __import__("contextvars").copy_context()
                context.run(VAR.set, tag)
                handle = loop.call_soon(seen, tag, context=context)
                if op == "soon-kept":
                    kept.append(handle)
                del handle, context
            elif loop._ready:
                handle = loop._ready.popleft()
                looked.append((type(handle).__name__, handle._args, handle.cancelled()))
                looked.append(handle._context.run(VAR.get))  # (get_context: 3.12+)
                if op == "pop-run":
                    handle._run()
                else:
                    loop._ready.append(handle)
                del handle
        looked.append(len(loop._ready))
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        loop.close()
    return log, looked, [(h._args, h.cancelled()) for h in kept]


@settings(max_examples=60, deadline=None)
@given(QUEUE_OPS)
def test_calls_queued_without_their_handle_look_and_run_as_asyncio_s(ops):
    expected = play_queue(LOOPS["asyncio"], ops)
    assert play_queue(LOOPS["greenwheel"], ops) == expected


def test_a_burst_of_call_soon_with_dropped_handles_allocates_no_handle_each():
    # Each dropped handle serves the next call_soon: 10,000 queued calls add
    # a handful of GC objects, not 10,000 (the collector's young count is
    # allocations minus frees; asyncio's loop adds one Handle each).
    loop = gwa.new_event_loop()
    try:
        log = []
        append, context = log.append, __import__("contextvars").copy_context()
        gc.disable()
        try:
            before = gc.get_count()[0]
            for i in range(10_000):
                loop.call_soon(append, i, context=context)
            added = gc.get_count()[0] - before
        finally:
            gc.enable()
        assert added < 10
        loop.run_until_complete(asyncio.sleep(0))
        assert log == list(range(10_000))
    finally:
        loop.close()


def raise_tag(tag):
    raise ValueError(tag)


def errors_reported(make):
    loop = make()
    try:
        reports = []
        loop.set_exception_handler(lambda _loop, context: reports.append(context))
        loop.call_soon(raise_tag, "first")
        loop.call_soon(raise_tag, "second")  # the first call's handle is free again
        loop.run_until_complete(asyncio.sleep(0))
        return [
            (r["message"], type(r["exception"]), type(r["handle"]).__name__, r["handle"]._args)
            for r in reports
        ]
    finally:
        loop.close()


def test_a_call_queued_without_its_handle_reports_its_error_with_a_handle():
    expected = errors_reported(LOOPS["asyncio"])
    # (The message shows the arguments before 3.13, and since only in debug
    # mode; the handle has them either way.)
    assert [m.startswith("Exception in callback raise_tag(") for m, *_ in expected] == [True] * 2
    assert [args for *_, args in expected] == [("first",), ("second",)]
    assert errors_reported(LOOPS["greenwheel"]) == expected


def test_a_loop_abandoned_with_calls_queued_without_handles_is_collected():
    # loop -> ready queue -> detached call -> payload -> loop: found as a
    # cycle, as with the handles themselves.
    loop = gwa.new_event_loop()
    payloads = [Payload(tag) for tag in range(3)]
    for payload in payloads:
        payload.loop = loop
        loop.call_soon(record, [], payload)
    refs = [weakref.ref(loop)] + [weakref.ref(p) for p in payloads]
    loop.close()
    del loop, payloads, payload
    gc.collect()
    assert [ref() for ref in refs] == [None] * 4
