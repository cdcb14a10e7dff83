"""The clock that waits on the calling thread's hub are timed on.

Deadlines that a loop of waits re-checks (``select`` until a deadline,
``communicate`` then ``wait`` within one timeout) must be read on the clock
the waits themselves run on: the loop's. That is the system's monotonic
clock (``time.monotonic()``) unless a test switched the loop to its virtual
clock (``Loop._use_virtual_clock``, see ``rust/py/loop_/virtual_time.rs``),
which jumps ahead when the loop would otherwise block: a deadline read from
``time.monotonic()`` would then never seem to pass, and such a loop would
spin through virtual jumps until the real time ran out.

Users: ``_select`` (select/poll deadlines), ``_selectors`` (stops on the
wait's own timeout instead of re-reading a clock), ``subprocess``
(``communicate`` then ``wait`` in one timeout) and ``_child.wait_child``.

Deliberately left on the system clock:
- socket, ssl and pywsgi read deadlines: ``IoWatcher.wait`` takes
  ``time.monotonic()`` deadlines and turns them into the same remaining time
  on the loop's clock, so they are right on both;
- what measures real time rather than a wait of the loop: the blocking
  detectors (``_monitor``, ``_tracer``, ``_util``), ``_child``'s
  ``exited_at`` bookkeeping, log timestamps (``time.time()``);
- waits for things outside the loop's sight, which take real time whatever
  the loop's clock says: ``_monkey_threads``' join of a thread started
  before patching, gunicorn's graceful-timeout countdown, dnspython's
  resolver lifetime.
"""

from time import monotonic as _system_monotonic

from ._hub import _get_hub_if_exists


def monotonic() -> float:
    """Now on the clock of the calling thread's hub's loop, in seconds.

    ``time.monotonic()`` when there is no hub yet or the loop runs on the
    system clock; the two readings are comparable then.
    """
    hub = _get_hub_if_exists()
    if hub is not None:
        clock_now = getattr(hub.loop, "_clock_now", None)
        if clock_now is not None:
            now: float = clock_now()
            return now
    return _system_monotonic()
