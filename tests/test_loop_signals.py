"""greenwheel._core.Loop and POSIX signals, driven directly (no hub).

Signals are sent with os.kill(os.getpid(), ...), either from the main thread
before run() or from a helper thread while run() is blocked in the poll (on
Linux a process-directed signal goes to the main thread, interrupting it).
"""

import ctypes
import os
import signal
import socket
import threading
import time

import pytest

from greenwheel._core import READ, Loop

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")

WAIT = 10.0
LONG = 30.0  # a timer run() must not wait for


def noop(*_args):
    pass


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.destroy()


@pytest.fixture(autouse=True)
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)}
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    yield
    signal.set_wakeup_fd(wakeup)
    for s, h in saved.items():
        signal.signal(s, h)


def kill_later(signum, delay=0.05, loop=None):
    """Send ``signum`` to this process from a thread after ``delay`` seconds;
    with ``loop``, only once that loop is inside run() (a prepare watcher says so)."""
    running = threading.Event()
    if loop is None:
        running.set()
    else:
        prep = loop.prepare(ref=False)
        prep.start(lambda: (running.set(), prep.stop()))

    def body():
        running.wait(WAIT)
        time.sleep(delay)  # most likely blocked in the poll by then
        os.kill(os.getpid(), signum)

    th = threading.Thread(target=body)
    th.start()
    return th


class Boom(Exception):
    pass


class Reraiser:
    def handle_error(self, context, type_, value, tb):
        raise value


class Recorder:
    def __init__(self):
        self.calls = []

    def handle_error(self, context, type_, value, tb):
        self.calls.append((context, type_))


def test_signal_watcher_runs_from_loop(loop):
    prev = signal.getsignal(signal.SIGUSR1)
    w = loop.signal(signal.SIGUSR1, ref=False)
    assert w.signum == signal.SIGUSR1
    got = []

    def on_signal(*args):
        got.append((args, threading.current_thread() is threading.main_thread()))
        loop.break_()

    w.start(on_signal, "a")
    assert w.active
    assert signal.getsignal(signal.SIGUSR1) is not prev  # ours is installed
    keep = loop.timer(LONG)
    keep.start(noop)
    th = kill_later(signal.SIGUSR1)
    start = time.monotonic()
    loop.run()
    th.join()
    assert got == [(("a",), True)]
    assert time.monotonic() - start < WAIT
    keep.stop()
    w.stop()
    assert not w.active
    assert signal.getsignal(signal.SIGUSR1) is prev


def test_signal_before_run_is_delivered_by_next_run(loop):
    w = loop.signal(signal.SIGUSR2, ref=False)
    got = []
    w.start(got.append, 1)
    os.kill(os.getpid(), signal.SIGUSR2)  # Python runs our handler right here
    assert w.pending
    keep = loop.timer(LONG)
    keep.start(noop)
    loop.run(once=True)  # must not block: a signal is pending
    assert got == [1]
    assert not w.pending
    keep.stop()
    w.stop()


def test_repeated_signals_and_two_watchers(loop):
    keep = loop.timer(LONG)  # referenced, so run(nowait=True) polls
    keep.start(noop)
    prev = signal.getsignal(signal.SIGUSR1)
    w1 = loop.signal(signal.SIGUSR1, ref=False)
    w2 = loop.signal(signal.SIGUSR1, ref=False)
    got = []
    w1.start(got.append, 1)
    w2.start(got.append, 2)
    for n in range(3):
        os.kill(os.getpid(), signal.SIGUSR1)
        loop.run(nowait=True)
        assert sorted(got) == sorted([1, 2] * (n + 1))
    # Stopping one keeps the handler for the other.
    installed = signal.getsignal(signal.SIGUSR1)
    w1.stop()
    assert signal.getsignal(signal.SIGUSR1) is installed
    got.clear()
    os.kill(os.getpid(), signal.SIGUSR1)
    loop.run(nowait=True)
    assert got == [2]
    w2.stop()
    assert signal.getsignal(signal.SIGUSR1) is prev
    keep.stop()


def test_previous_python_handler_restored(loop):
    calls = []

    def python_handler(signum, frame):
        calls.append(signum)

    signal.signal(signal.SIGUSR1, python_handler)
    w = loop.signal(signal.SIGUSR1, ref=False)
    w.start(noop)
    os.kill(os.getpid(), signal.SIGUSR1)
    assert calls == []  # the watcher replaced it while active
    w.stop()
    assert signal.getsignal(signal.SIGUSR1) is python_handler
    os.kill(os.getpid(), signal.SIGUSR1)
    assert calls == [signal.SIGUSR1]


def test_destroy_restores_previous_handler():
    prev = signal.getsignal(signal.SIGUSR2)
    lp = Loop()
    w = lp.signal(signal.SIGUSR2, ref=False)
    w.start(noop)
    lp.destroy()
    assert not w.active
    assert signal.getsignal(signal.SIGUSR2) is prev


def test_signal_ref_keeps_loop_alive(loop):
    w = loop.signal(signal.SIGUSR1, ref=True)
    got = []
    w.start(lambda: (got.append(1), w.stop()))
    assert loop.activecnt == 1
    th = kill_later(signal.SIGUSR1)
    loop.run()  # returns only after the watcher stopped itself
    th.join()
    assert got == [1]


def test_signal_default_ref_is_true(loop):
    assert loop.signal(signal.SIGUSR1).ref is True


def test_signal_error_goes_to_handler(loop):
    h = Recorder()
    loop.error_handler = h
    w = loop.signal(signal.SIGUSR1, ref=False)

    def fail():
        raise Boom

    w.start(fail)
    keep = loop.timer(LONG)
    keep.start(noop)
    os.kill(os.getpid(), signal.SIGUSR1)
    loop.run(nowait=True)
    assert h.calls == [(w, Boom)]
    w.stop()
    keep.stop()


@pytest.mark.parametrize("bad", [0, -1, 65, 10_000])
def test_bad_signum_is_value_error(loop, bad):
    with pytest.raises(ValueError):
        loop.signal(bad)


def test_signal_watcher_needs_main_thread_loop():
    result = {}

    def body():
        lp = Loop()
        try:
            w = lp.signal(signal.SIGUSR1)
            try:
                w.start(noop)
            except BaseException as e:  # noqa: B036
                result["error"] = type(e)
        finally:
            lp.destroy()

    th = threading.Thread(target=body)
    th.start()
    th.join(WAIT)
    assert result == {"error": ValueError}


# --- SIGINT / KeyboardInterrupt ---------------------------------------------


def _interrupted_run(loop):
    t = loop.timer(LONG)
    fired = []
    t.start(fired.append, 1)
    th = kill_later(signal.SIGINT, loop=loop)
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run()
    finally:
        th.join()
    elapsed = time.monotonic() - start
    assert elapsed < WAIT, f"KeyboardInterrupt took {elapsed:.1f}s"
    assert fired == []
    assert t.active  # the long timer is untouched
    return t


def test_sigint_raises_keyboard_interrupt_promptly(loop):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    t = _interrupted_run(loop)
    # The loop is still usable afterwards.
    t.stop()
    t2 = loop.timer(0)
    t2.start(noop)
    assert loop.run() is False


def test_sigint_with_wakeup_fd_installed(loop):
    signal.set_wakeup_fd(loop.sigfd)
    t = _interrupted_run(loop)
    t.stop()
    # Twice: the pipe was drained, so nothing stale makes run() spin or raise.
    t = _interrupted_run(loop)
    t.stop()
    keep = loop.timer(0.02)
    keep.start(noop)
    assert loop.run() is False


def test_sigint_with_error_handler_goes_to_handler(loop):
    """With an error handler, a KeyboardInterrupt raised by the Python signal
    handler is routed to it (context None) unless it re-raises."""
    loop.error_handler = Reraiser()
    _interrupted_run(loop).stop()
    h = Recorder()
    loop.error_handler = h
    t = loop.timer(LONG)
    t.start(noop)
    stopper = loop.check()
    stopper.start(lambda: h.calls and loop.break_())
    th = kill_later(signal.SIGINT, loop=loop)
    loop.run()
    th.join()
    assert h.calls == [(None, KeyboardInterrupt)]
    t.stop()
    stopper.stop()


def test_keyboard_interrupt_loses_no_io_readiness(loop):
    a, b = socket.socketpair()
    try:
        fired = []
        io = loop.io(a.fileno(), READ)
        io.start(fired.append, "io")
        # ctypes.PyDLL keeps the GIL across the C calls: the write and the
        # signal both land while the loop thread is still in (or just woken
        # from) the poll and cannot run Python code in between.
        libc = ctypes.PyDLL(None)
        libc.write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
        libc.kill.argtypes = [ctypes.c_int, ctypes.c_int]
        polling = threading.Event()

        def thread():
            polling.wait(WAIT)
            time.sleep(0.1)  # let the loop thread enter the poll
            libc.write(b.fileno(), b"x", 1)
            libc.kill(os.getpid(), signal.SIGINT)

        prep = loop.prepare()
        prep.start(polling.set)
        th = threading.Thread(target=thread)
        th.start()
        keep = loop.timer(LONG)
        keep.start(noop)
        try:
            with pytest.raises(KeyboardInterrupt):
                loop.run()
        finally:
            th.join()
            prep.stop()
        keep.stop()
        assert fired == []  # KeyboardInterrupt came first
        # The unread byte must still be reported.
        for _ in range(3):
            loop.run(nowait=True)
        assert fired, "readiness lost"
        io.stop()
    finally:
        a.close()
        b.close()


def test_raising_handler_loses_no_signal(loop):
    got = []
    w1 = loop.signal(signal.SIGUSR1, ref=False)
    w2 = loop.signal(signal.SIGUSR2, ref=False)

    def cb(n):
        got.append(n)
        raise Boom

    w1.start(cb, 1)
    w2.start(cb, 2)
    keep = loop.timer(LONG)
    keep.start(noop)
    os.kill(os.getpid(), signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGUSR2)
    loop.error_handler = Reraiser()
    with pytest.raises(Boom):
        loop.run(nowait=True)
    loop.error_handler = Recorder()
    for _ in range(3):
        loop.run(nowait=True)
    assert sorted(got) == [1, 2]
    w1.stop()
    w2.stop()
    keep.stop()


def test_nowait_dispatches_unrefd_signal(loop):
    w = loop.signal(signal.SIGUSR1, ref=False)
    got = []
    w.start(got.append, 1)
    os.kill(os.getpid(), signal.SIGUSR1)
    loop.run(nowait=True)
    w.stop()
    assert got == [1]
