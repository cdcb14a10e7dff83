"""greenwheel._core.Loop across os.fork(): reinit() gives the child a working loop.

The child never returns into pytest: it reports through a pipe and its exit
code, and always leaves with os._exit().
"""

import json
import os
import socket
import threading
import time
import traceback

import pytest

from greenwheel._core import READ, Loop

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

WAIT = 10.0


def noop(*_args):
    pass


def run_until(loop, predicate, timeout=WAIT):
    deadline = time.monotonic() + timeout
    guard = loop.timer(timeout)
    guard.start(noop)
    try:
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the loop")
            loop.run(once=True)
    finally:
        guard.stop()


def in_child(body):
    """Run ``body()`` in a forked child; return (exit code, decoded report)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(r)
            report = body()
            os.write(w, json.dumps(report).encode())
            code = 0
        except BaseException:  # noqa: B036 - everything must end in os._exit
            try:
                os.write(w, json.dumps({"error": traceback.format_exc()}).encode())
            except BaseException:  # noqa: B036
                pass
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    return os.waitstatus_to_exitcode(status), (json.loads(data) if data else None)


def test_reinit_in_child_gives_working_loop():
    loop = Loop()
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    try:
        got = []
        # Registered before the fork: reinit() must carry it over.
        io_before = loop.io(a.fileno(), READ)
        io_before.start(lambda: got.append(("before", a.recv(10).decode())))
        aw = loop.async_()
        aw.start(lambda: got.append(("async", None)))
        old_fd = loop.fileno()

        def child():
            loop.reinit()
            report = {"fileno_changed": loop.fileno() != old_fd, "fileno": loop.fileno()}
            start = time.monotonic()
            t = loop.timer(0.02)
            t.start(lambda: got.append(("timer", time.monotonic() - start)))
            io_new = loop.io(c.fileno(), READ)
            io_new.start(lambda: got.append(("new", c.recv(10).decode())))
            b.send(b"x")
            d.send(b"y")
            sender = threading.Timer(0.02, aw.send)
            sender.start()
            run_until(loop, lambda: len(got) >= 4)
            sender.join()
            io_new.stop()
            report["got"] = sorted(map(list, got), key=str)
            report["timer_ok"] = any(k == "timer" and v >= 0.02 for k, v in got)
            return report

        code, report = in_child(child)
        assert code == 0, report
        assert report["fileno_changed"]
        assert report["timer_ok"], report
        kinds = sorted(k for k, _ in report["got"])
        assert kinds == ["async", "before", "new", "timer"], report
        assert ["before", "x"] in report["got"] and ["new", "y"] in report["got"]

        # The parent's loop is unaffected by what the child did.
        assert got == []
        assert loop.fileno() == old_fd
        b.send(b"p")
        aw.send()
        run_until(loop, lambda: len(got) >= 2)
        assert sorted(k for k, _ in got) == ["async", "before"]
        io_before.stop()
        aw.stop()
    finally:
        for s in (a, b, c, d):
            s.close()
        loop.destroy()


def test_reinit_with_pending_work_in_child():
    """A timer armed and a send made before the fork are honoured after reinit()."""
    loop = Loop()
    try:
        got = []
        t = loop.timer(0.01)
        t.start(got.append, "timer")
        aw = loop.async_()
        aw.start(got.append, "async")
        aw.send()
        loop.run_callback(got.append, "callback")

        def child():
            loop.reinit()
            run_until(loop, lambda: len(got) >= 3)
            return sorted(got)

        code, report = in_child(child)
        assert code == 0, report
        assert report == ["async", "callback", "timer"]
        # The parent still owns its copy of the same work.
        run_until(loop, lambda: len(got) >= 3)
        assert sorted(got) == ["async", "callback", "timer"]
        aw.stop()
    finally:
        loop.destroy()


def test_fork_watchers_run_in_the_child_after_reinit():
    loop = Loop()
    try:
        got = []
        fw = loop.fork(ref=False)
        assert fw.phase == "fork" and not fw.ref
        fw.start(got.append, "forked")
        stopped = loop.fork()
        stopped.start(got.append, "stopped")
        stopped.stop()

        def child():
            loop.reinit()
            loop.run(nowait=True)
            return got

        code, report = in_child(child)
        assert code == 0, report
        assert report == ["forked"]
        # Not in the parent, and the unreferenced watcher keeps nothing alive.
        assert loop.activecnt == 0
        loop.run()
        assert got == []
        fw.close()
    finally:
        loop.destroy()


def test_reinit_twice_and_in_parent_is_harmless():
    loop = Loop()
    try:
        loop.reinit()
        loop.reinit()
        got = []
        loop.timer(0).start(got.append, 1)
        loop.run()
        assert got == [1]
    finally:
        loop.destroy()
