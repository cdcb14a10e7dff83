"""Shared test setup.

Every test gets a fresh hub and loop: whatever a test leaves behind (an
armed timer) is torn down with the hub, so it cannot wake up inside a later
test. A test must still clean up after itself: one that ends with an OS
thread or a greenlet of its own still running fails (a greenlet left on
purpose is declared with ``@pytest.mark.leaves_greenlets(reason)``).
"""

import _thread
import gc
import itertools
import os
import sys
import time

import greenlet
import pytest
from hypothesis import HealthCheck, settings

# Run against the source tree without installing it -- unless the suite is
# testing an installed wheel (`make test-wheels`), which must be what imports.
INSTALLED = bool(os.environ.get("GREENWHEEL_TEST_INSTALLED"))
if not INSTALLED:
    sys.path.insert(
        0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")
    )

import greenwheel as gw  # noqa: E402
from _hubs import destroy_hub  # noqa: E402
from greenwheel import _hub, _threadpool  # noqa: E402

if INSTALLED:
    assert "site-packages" in gw.__file__, "not the installed package: %s" % gw.__file__

settings.register_profile(
    "greenwheel",
    # Programs sleep for real (milliseconds), so per-example timing is noise.
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "greenwheel"))


def _os_threads():
    # Threads started through _thread (the thread pool's workers, the
    # monitor), which threading.enumerate() does not list.
    return _thread._count()


_PACKAGE_DIR = os.path.dirname(os.path.abspath(gw.__file__)) + os.sep


def _where(glet):
    """Where a suspended greenlet is parked: its innermost frame, and the
    innermost frames outside greenwheel itself (the test's code that the
    greenlet runs, which is what the author has to look at)."""
    frames = []
    frame = glet.gr_frame
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    shown = []
    for i, frame in enumerate(frames):
        if i == 0 or not frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            shown.append(
                "%s:%d in %s"
                % (
                    os.path.relpath(frame.f_code.co_filename),
                    frame.f_lineno,
                    frame.f_code.co_name,
                )
            )
        if len(shown) == 3:
            break
    return " <- ".join(shown) if shown else "no frame"


def _greenlet_classes(cls=greenlet.greenlet):
    classes = {cls}
    for sub in cls.__subclasses__():
        classes |= _greenlet_classes(sub)
    return classes


def _started_greenlets_of_hub(hub):
    """The greenlets of *hub* that were started and have not finished."""
    objects = gc.get_objects()
    # Pick the greenlets out in C (type() in a set of the greenlet classes,
    # tests' own subclasses included): half the cost of an isinstance loop
    # over the tens of thousands of objects.
    candidates = itertools.compress(
        objects, map(_greenlet_classes().__contains__, map(type, objects))
    )
    del objects
    main = hub.parent
    found = []
    for glet in candidates:
        # bool(): started and not dead; for a greenwheel Greenlet, as in
        # gevent, also one spawned whose start is still pending (the loop
        # turns below run it: if it parks, it is reported).
        if glet is hub or glet is main or not glet:
            continue
        parent = glet.parent
        while parent is not None and parent is not hub:
            parent = parent.parent
        if parent is hub:
            found.append(glet)
    return found


def _greenlets_left_running():
    """Reprs of the greenlets of this thread's hub still running at the end
    of the test: parked in a sleep, an accept loop, a wait that never comes.

    A scan of the gc's objects, only in tests that made a hub: in issue 17's
    measurement it took 6% of the full suite's wall time (22 s of 365 s for
    690 scans on a loaded machine), well below the per-test gc.collect()
    below. A greenlet tracer would cost on every switch instead.
    """
    hub = _hub._get_hub_if_exists()
    if hub is None or hub.loop is None or hub.dead:
        # The test never used a hub (or destroyed it), so nothing of its
        # own can still be running in one.
        return []
    found = _started_greenlets_of_hub(hub)
    # Work that is already due is not a leftover: a handler whose client
    # has just closed finishes as soon as the loop reads the EOF. Let the
    # loop run what is ready -- zero-timeout turns, no timer is waited for,
    # so a greenlet parked in a sleep or a wait that never comes stays
    # caught -- as the thread check below joins threads that are ending.
    # At least two turns even when no greenlet runs: a pywsgi connection
    # parked without one (park_idle_after) whose client has closed needs a
    # turn for its read watcher to spawn the greenlet that reads the EOF
    # and closes it, and one for that greenlet.
    turns = 0
    while turns < 5 and (turns < 2 or any(found)):
        turns += 1
        try:
            gw.sleep(0)
        except Exception:  # a hub the test left unusable: report what is there
            break
    return ["%r parked at %s" % (glet, _where(glet)) for glet in found if glet]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item._greenwheel_call_failed = report.failed
    return report


@pytest.fixture(autouse=True)
def fresh_hub(request):
    destroy_hub()
    before = _os_threads()
    yield
    # A test that ends with a greenlet of its own still running fails: it
    # must kill or join what it started (destroying the hub below would hide
    # it). A test that leaves one on purpose says so with the marker. After
    # a failed test, leftovers are expected and would only bury the failure.
    leaked = []
    if request.node.get_closest_marker("leaves_greenlets") is None and not getattr(
        request.node, "_greenwheel_call_failed", False
    ):
        leaked = _greenlets_left_running()
    destroy_hub()
    # The process-wide default thread pool outlives hubs by design (as
    # gevent's does): retire its workers too; it starts new ones on demand.
    pool = _threadpool._default_pool
    if pool is not None and pool.size:
        pool.kill()
    # Destroying the hub stops its monitor, and the killed pool's workers
    # finish on their own. Wait for that (it is a join, not a guess): a test
    # must not leave a thread behind, and a later fork() in a process with
    # stray threads is unsafe (Python 3.12+ warns about exactly that).
    deadline = time.monotonic() + 10
    while _os_threads() > before and time.monotonic() < deadline:
        time.sleep(0.002)
    left = _os_threads() - before
    assert left <= 0, "the test left %d OS thread(s) running" % left
    # Collect the greenlets the test created while no hub exists, so none of
    # them is resurrected (GreenletExit on dealloc) during the next test.
    gc.collect()
    if leaked:
        pytest.fail(
            "the test left %d greenlet(s) running (kill or join them, or mark the test "
            "leaves_greenlets with the reason):\n  %s" % (len(leaked), "\n  ".join(leaked)),
            pytrace=False,
        )


@pytest.fixture
def hub():
    from greenwheel import get_hub

    return get_hub()


@pytest.fixture
def quiet_hub(hub):
    """The hub with error printing captured into a list of strings."""
    import io

    stream = io.StringIO()
    hub.exception_stream = stream
    hub.captured = stream
    return hub


@pytest.fixture
def ticker():
    """A greenlet counting every 10 ms: proof the loop keeps running while
    something else blocks."""
    ticks = []

    def run():
        while True:
            ticks.append(time.monotonic())
            gw.sleep(0.01)

    glet = gw.spawn(run)
    yield ticks
    glet.kill()


@pytest.fixture
def virtual_clock(hub):
    """The test's loop, switched to its virtual clock: time stands still while
    greenlets run and jumps to the next deadline when all of them wait, so a
    test that sleeps 100 s takes no real time yet sees ``loop.now()``
    advance by exactly 100 (see rust/py/loop_/virtual_time.rs)."""
    hub.loop._use_virtual_clock()
    return hub.loop
