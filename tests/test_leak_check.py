"""conftest's teardown check: a test that ends with a greenlet of its own
still running fails (issue 17), unless marked leaves_greenlets.

Runs a small suite in a child pytest with this directory's conftest, so the
check is seen failing a real test exactly as it would in the suite.
"""

import os
import shutil
import subprocess
import sys

from _childproc import child_env

HERE = os.path.dirname(os.path.abspath(__file__))

SUITE = """
import pytest
import greenwheel as gw


def forever():
    gw.sleep(1000)


def test_leaks_a_sleeper():
    gw.spawn(forever)
    gw.sleep(0)


def test_leaks_one_spawned_but_never_run():
    gw.spawn(forever)


def test_kills_what_it_spawned():
    g = gw.spawn(forever)
    gw.sleep(0)
    g.kill()


def test_handler_finishing_on_ready_io_is_not_a_leak():
    from greenwheel import socket

    a, b = socket.socketpair()
    g = gw.spawn(a.recv, 10)
    gw.sleep(0)
    b.close()  # the EOF is ready: g ends at the loop's next turn
    assert not g.dead


@pytest.mark.leaves_greenlets("on purpose, for this test")
def test_marked():
    gw.spawn(forever)
    gw.sleep(0)


def test_fails_itself():
    gw.spawn(forever)
    gw.sleep(0)
    assert False, "own failure"
"""


def test_a_greenlet_left_running_fails_the_test(tmp_path):
    for name in ("conftest.py", "_hubs.py"):
        shutil.copy(os.path.join(HERE, name), tmp_path / name)
    (tmp_path / "test_suite.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = --strict-markers -p no:cacheprovider -p no:randomly\n"
        "markers =\n    leaves_greenlets(reason): exempt\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "test_suite.py"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert "1 failed, 5 passed, 2 errors" in out, out
    assert "ERROR test_suite.py::test_leaks_a_sleeper" in out, out
    assert "ERROR test_suite.py::test_leaks_one_spawned_but_never_run" in out, out
    # The report says which greenlet and where it is parked.
    assert "the test left 1 greenlet(s) running" in out, out
    assert "test_suite.py:7 in forever" in out, out
    for name in (
        "test_kills_what_it_spawned",
        "test_handler_finishing_on_ready_io_is_not_a_leak",
        "test_marked",
    ):
        assert "PASSED test_suite.py::%s" % name in out, out
    # A test's own failure is reported alone, not buried under a leak error.
    assert "FAILED test_suite.py::test_fails_itself" in out, out
    assert "ERROR test_suite.py::test_fails_itself" not in out, out
