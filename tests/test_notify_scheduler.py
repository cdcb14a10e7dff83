"""The loop's notification scheduler (rust/py/loop_/sched.rs) and its hub.

The ordering, gevent-order and hand-over behaviour are specified by
test_event.py, test_queue.py, test_lock.py and test_yield_handoff.py; this
file covers what belongs to the scheduler's ownership: it is the loop's, so a
loop that outlives its hub must not notify the dead hub's objects.
"""

from _childproc import run_python


def test_objects_of_a_destroyed_hub_are_not_notified_through_the_kept_loop():
    # The main thread's default loop outlives hub.destroy(); the next hub
    # uses it.  A greenlet of the destroyed hub parked on an event must not be
    # switched into when the event is set later (its hub, its parent, is
    # gone), while the event itself keeps working for the new hub.
    proc = run_python(
        """
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
        hub1.destroy()
        hub2 = get_hub()
        assert hub2 is not hub1 and hub2.loop is loop

        ev.set()
        sleep(0.01)
        new = greenwheel.spawn(lambda: resumed.append(("new", ev.wait(1))))
        new.join(1)
        print("RESUMED", resumed, "OLD_DEAD", old.dead)
        """
    )
    out = proc.stdout.strip().splitlines()[-1]
    assert out == "RESUMED [('new', True)] OLD_DEAD False", proc.stdout + proc.stderr
