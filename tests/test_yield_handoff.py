"""`sleep(0)` hands the hub's next step to the yielding greenlet.

While the hub is parked in the switch of a queued resume, a greenlet calling
`sleep(0)` switches straight into the next queued greenlet instead of going
through the hub (one switch per yield instead of two). None of that may be
visible except in speed: the order is the hub's FIFO order, callbacks still
run in the hub, timers and I/O still get their turn, and a killed greenlet
is never resumed by a stale entry.
"""

import time

import greenlet
from hypothesis import given, settings
from hypothesis import strategies as st

import greenwheel as gw
from _hubs import destroy_hub
from greenwheel import socket as gsocket
from greenwheel.exceptions import BlockingSwitchOutError

# One step of a generated greenlet: yield, queue a hub callback, or spawn a
# child that runs its own program.
step = st.recursive(
    st.one_of(st.just(("yield",)), st.just(("callback",))),
    lambda children: st.tuples(st.just("spawn"), st.lists(children, max_size=4)),
    max_leaves=12,
)
programs = st.lists(st.lists(step, max_size=6), min_size=1, max_size=6)


def model_trace(top):
    """The order gevent's hub gives: one FIFO queue of resumes, starts and
    callbacks; a running greenlet keeps going until it yields or ends."""
    trace, queue, counter = [], [], [0]

    def new_id():
        counter[0] += 1
        return counter[0]

    def run(gid, program, pc):
        while pc < len(program):
            op = program[pc]
            pc += 1
            trace.append((gid, pc))
            if op[0] == "yield":
                queue.append(("resume", gid, program, pc))
                return
            if op[0] == "callback":
                queue.append(("call", new_id()))
            else:
                queue.append(("start", new_id(), op[1]))

    for program in top:
        queue.append(("start", new_id(), program))
    while queue:
        entry = queue.pop(0)
        if entry[0] == "call":
            trace.append(("cb", entry[1]))
        elif entry[0] == "start":
            run(entry[1], entry[2], 0)
        else:
            run(entry[1], entry[2], entry[3])
    return trace


def real_trace(top):
    trace, counter = [], [0]
    hub = gw.get_hub()

    def new_id():
        counter[0] += 1
        return counter[0]

    def body(gid, program):
        for pc, op in enumerate(program, 1):
            trace.append((gid, pc))
            if op[0] == "yield":
                gw.sleep(0)
            elif op[0] == "callback":
                hub.loop.run_callback(trace.append, ("cb", new_id()))
            else:
                gw.spawn(body, new_id(), op[1])

    for program in top:
        gw.spawn(body, new_id(), program)
    # Everything the programs queue runs before the loop has nothing left.
    gw.sleep(0.01)
    while hub.loop.pendingcnt:
        gw.sleep(0.01)
    return trace


@settings(max_examples=150, deadline=None)
@given(programs)
def test_yields_callbacks_and_spawns_run_in_fifo_order(top):
    destroy_hub()
    assert real_trace(top) == model_trace(top)


def test_most_yields_do_not_pass_through_the_hub():
    hub = gw.get_hub()
    into_hub = [0]
    stop = []
    yields = [0]

    def tracer(event, args):
        if event == "switch" and args[1] is hub:
            into_hub[0] += 1

    def yielder():
        while not stop:
            gw.sleep(0)
            yields[0] += 1

    workers = [gw.spawn(yielder) for _ in range(20)]
    gw.sleep(0)
    old = greenlet.settrace(tracer)
    try:
        for _ in range(50):
            gw.sleep(0)
    finally:
        greenlet.settrace(old)
    stop.append(True)
    gw.joinall(workers)
    # With hand-off the hub is entered about once per pass (21 yields),
    # through it every yield would enter it once.
    assert yields[0] >= 20 * 50
    assert into_hub[0] * 5 < yields[0]


def test_endless_yielders_do_not_starve_timers_or_io():
    stop = []
    spins = [0]

    def spinner():
        while not stop:
            gw.sleep(0)
            spins[0] += 1

    workers = [gw.spawn(spinner) for _ in range(3)]
    a, b = gsocket.socketpair()
    try:
        started = time.monotonic()
        gw.sleep(0.02)
        assert time.monotonic() - started >= 0.02
        gw.spawn_later(0.01, b.sendall, b"x")
        assert a.recv(1) == b"x"
    finally:
        stop.append(True)
        gw.joinall(workers)
        a.close()
        b.close()
    assert spins[0] > 0


def test_killing_a_greenlet_parked_in_a_yield_leaves_no_stale_resume():
    log = []
    victims = []

    def victim(name):
        try:
            while True:
                gw.sleep(0)
                log.append(name)
        except gw.GreenletExit:
            log.append(name + " killed")
            # A stale resume would end this sleep early.
            before = time.monotonic()
            gw.sleep(0.02)
            log.append(time.monotonic() - before >= 0.02)

    def killer():
        gw.sleep(0)
        gw.sleep(0)
        # The victims are parked in sleep(0) with resumes queued behind us.
        for g in victims:
            g.kill(block=False)
        gw.sleep(0)

    victims.extend(gw.spawn(victim, name) for name in "ab")
    k = gw.spawn(killer)
    gw.joinall(victims + [k])
    assert log.count("a killed") == 1 and log.count("b killed") == 1
    assert log.count(True) == 2 and False not in log
    assert all(g.dead for g in victims)


def test_failure_after_a_handed_off_yield_is_reported_for_that_greenlet(quiet_hub):
    def fails():
        gw.sleep(0)
        raise ValueError("after the yield")

    def yielder():
        for _ in range(5):
            gw.sleep(0)

    others = [gw.spawn(yielder) for _ in range(3)]
    g = gw.spawn(fails)
    gw.joinall(others + [g])
    assert isinstance(g.exception, ValueError)
    assert "ValueError: after the yield" in quiet_hub.captured.getvalue()


def test_callbacks_still_run_in_the_hub_between_handed_off_yields():
    hub = gw.get_hub()
    errors, ran = [], []

    def callback():
        ran.append(greenlet.getcurrent() is hub)
        try:
            gw.sleep(0)
        except BlockingSwitchOutError as ex:
            errors.append(ex)

    def yielder():
        for _ in range(3):
            hub.loop.run_callback(callback)
            gw.sleep(0)

    gw.joinall([gw.spawn(yielder) for _ in range(3)])
    assert ran == [True] * 9
    assert len(errors) == 9
