"""The loop's notification scheduler (rust/py/loop_/sched.rs) and its hub.

The ordering, gevent-order and hand-over behaviour are specified by
test_event.py, test_queue.py, test_lock.py and test_yield_handoff.py; this
file covers what belongs to the scheduler's ownership: it is the loop's, so a
loop that outlives its hub must not notify the dead hub's objects.
"""

import pytest

from _childproc import run_python


@pytest.mark.parametrize("when", ["after", "before"])
def test_objects_of_a_destroyed_hub_are_not_notified_through_the_kept_loop(when):
    # The main thread's default loop outlives hub.destroy(); the next hub
    # uses it.  A greenlet of the destroyed hub parked on an event must not be
    # switched into when the event is set (after the destroy, or just before
    # it with the notification still queued): its hub, its parent, is gone.
    # The event itself keeps working for the new hub.
    proc = run_python(
        """
        import sys
        import greenwheel
        from greenwheel import get_hub, sleep
        from greenwheel.event import Event

        resumed = []
        ev = Event()

        def old_waiter():
            ev.wait()
            resumed.append("old")

        hub1 = get_hub()
        old = greenwheel.spawn(old_waiter)
        sleep(0)  # parked on ev
        loop = hub1.loop
        if sys.argv[1] == "before":
            ev.set()
        hub1.destroy()
        hub2 = get_hub()
        assert hub2 is not hub1 and hub2.loop is loop
        if sys.argv[1] == "after":
            ev.set()
        sleep(0.01)
        new = greenwheel.spawn(lambda: resumed.append(("new", ev.wait(1))))
        new.join(1)
        print("RESUMED", resumed, "OLD_DEAD", old.dead)
        """,
        when,
    )
    out = proc.stdout.strip().splitlines()[-1]
    assert out == "RESUMED [('new', True)] OLD_DEAD False", proc.stdout + proc.stderr
