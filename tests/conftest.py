"""Shared test setup.

Every test gets a fresh hub and loop: whatever a test leaves behind (a
greenlet sleeping forever, an armed timer) is torn down with the hub, so it
cannot wake up inside a later test.
"""

import _thread
import gc
import os
import sys
import time

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
from greenwheel import _threadpool  # noqa: E402

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


@pytest.fixture(autouse=True)
def fresh_hub():
    destroy_hub()
    before = _os_threads()
    yield
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
