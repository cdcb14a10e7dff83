"""greenwheel.signal_handler and greenwheel.signal (SIGCHLD cooperation)."""

import os
import signal
import time

import pytest

import greenwheel as gw
import greenwheel.signal as gsignal
from greenwheel import subprocess

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def usr1_safety():
    # Should a SIGUSR1 arrive with no handler of ours, it must not kill pytest.
    previous = signal.signal(signal.SIGUSR1, lambda *args: None)
    yield
    signal.signal(signal.SIGUSR1, previous)


def test_signal_handler_runs_in_a_greenlet_while_others_run(ticker, usr1_safety):
    calls = []

    def handler(tag, *, extra):
        calls.append((tag, extra, gw.getcurrent() is not gw.get_hub()))
        gw.sleep(0.05)  # a handler may block: it has its own greenlet
        calls.append("slept")

    watcher = gw.signal_handler(signal.SIGUSR1, handler, "usr1", extra=42)
    assert watcher.ref is False
    n = len(ticker)
    os.kill(os.getpid(), signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while "slept" not in calls and time.monotonic() < deadline:
        gw.sleep(0.01)
    assert calls == [("usr1", 42, True), "slept"]
    assert len(ticker) - n >= 3

    os.kill(os.getpid(), signal.SIGUSR1)
    gw.sleep(0.1)
    assert len(calls) == 4

    watcher.cancel()
    watcher.cancel()  # idempotent
    os.kill(os.getpid(), signal.SIGUSR1)
    gw.sleep(0.05)
    assert len(calls) == 4


def test_signal_handler_needs_a_callable():
    with pytest.raises(TypeError):
        gw.signal_handler(signal.SIGUSR1, "not callable")


def test_signal_handler_exception_reaches_main_greenlet(usr1_safety):
    def boom():
        raise KeyError("from handler")

    watcher = gw.signal_handler(signal.SIGUSR1, boom)
    gw.get_hub().exception_stream = None
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        with pytest.raises(KeyError):
            gw.sleep(0.2)
    finally:
        watcher.cancel()


def test_patched_signal_passes_other_signals_through(usr1_safety):
    def mine(*args):
        pass

    old = gsignal.signal(signal.SIGUSR2, mine)
    try:
        assert signal.getsignal(signal.SIGUSR2) is mine
        assert gsignal.getsignal(signal.SIGUSR2) is mine
    finally:
        gsignal.signal(signal.SIGUSR2, old)
    assert gsignal.SIGUSR1 == signal.SIGUSR1 and gsignal.SIG_DFL == signal.SIG_DFL


def test_sigchld_handler_runs_alongside_child_watching(ticker):
    calls = []

    def on_child(signum, frame):
        calls.append(signum)

    old = gsignal.signal(signal.SIGCHLD, on_child)
    try:
        assert gsignal.getsignal(signal.SIGCHLD) is on_child
        proc = subprocess.Popen(["sh", "-c", "exit 3"])
        assert proc.wait(timeout=5) == 3  # greenwheel still sees the real status
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            gw.sleep(0.01)
        assert calls and calls[0] == signal.SIGCHLD
    finally:
        gsignal.signal(signal.SIGCHLD, old)
    assert gsignal.getsignal(signal.SIGCHLD) == old
    with pytest.raises(TypeError):
        gsignal.signal(signal.SIGCHLD, "bad")


def test_signal_handler_for_sigchld_coexists_with_subprocess(ticker):
    calls = []
    watcher = gw.signal_handler(signal.SIGCHLD, calls.append, "chld")
    try:
        proc = subprocess.Popen(["sh", "-c", "sleep 0.05; exit 2"])
        start = time.monotonic()
        assert proc.wait(timeout=5) == 2
        assert time.monotonic() - start < 1.0  # noticed through SIGCHLD, not the slow poll
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            gw.sleep(0.01)
        assert calls and calls[0] == "chld"
    finally:
        watcher.cancel()
