"""greenwheel.os: fork with a re-initialised hub, cooperative waitpid, non-blocking I/O."""

import errno
import os
import signal
import time

import pytest

import greenwheel as gw
import greenwheel.os as gos
from _childproc import retire_default_threadpool

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(autouse=True)
def _no_lingering_workers():
    yield
    retire_default_threadpool()


def _child_exit(code):
    # Never return into pytest from a forked child.
    os._exit(code)


def test_fork_child_runs_greenlets_parent_unaffected(ticker):
    r, w = os.pipe()
    pid = gw.fork()
    if pid == 0:
        try:
            os.close(r)
            done = []
            jobs = [
                gw.spawn(lambda i=i: (gw.sleep(0.05 * (3 - i)), done.append(i))) for i in range(3)
            ]
            gw.joinall(jobs)
            timer_fired = []
            gw.get_hub().loop.timer(0.01).start(timer_fired.append, 1)
            gw.sleep(0.05)
            os.write(w, ("%s %s" % (done, timer_fired)).encode())
            _child_exit(0)
        finally:
            _child_exit(1)
    os.close(w)
    n = len(ticker)
    start = time.monotonic()
    rpid, status = gos.waitpid(pid, 0)  # cooperative: the ticker keeps going
    assert rpid == pid and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert os.read(r, 100).decode() == "[2, 1, 0] [1]"
    os.close(r)
    assert time.monotonic() - start < 5
    assert len(ticker) - n >= 3
    gw.sleep(0.02)  # the parent's hub is fine
    with pytest.raises(ChildProcessError):
        gos.waitpid(pid, 0)


def test_fork_and_watch_calls_back_with_status():
    seen = []
    pid = gos.fork_and_watch(
        lambda watcher: seen.append((watcher.pid, watcher.rpid, watcher.rstatus))
    )
    if pid == 0:
        try:
            gw.sleep(0.05)
        finally:
            _child_exit(7)
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        gw.sleep(0.01)
    assert seen and seen[0][0] == pid and seen[0][1] == pid
    assert os.WEXITSTATUS(seen[0][2]) == 7


def test_forkpty_and_watch_gives_the_pty_and_calls_back_with_status():
    seen = []
    pid, master = gos.forkpty_and_watch(lambda watcher: seen.append(watcher.rstatus))
    if pid == 0:
        try:
            os.write(1, b"child on a pty\n")  # stdout is the pty's slave side
        finally:
            _child_exit(3)
    try:
        output = b""
        gos.make_nonblocking(master)
        while b"\n" not in output:
            try:
                chunk = gos.nb_read(master, 100)
            except OSError:  # EIO: the child closed the slave side
                break
            if not chunk:
                break
            output += chunk
        assert output.startswith(b"child on a pty")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            gw.sleep(0.01)
        assert seen and os.WEXITSTATUS(seen[0]) == 3
    finally:
        os.close(master)


def _checks_in_a_forked_child(body):
    """Run *body* in a forked process and return the list of checks it returned.

    waitpid(-1) must only see children of its own: the forked process's only
    children are the ones *body* forks (pytest has others).
    """
    r, w = os.pipe()
    pid = gw.fork()
    if pid == 0:
        try:
            os.close(r)
            os.write(w, repr(body()).encode())
            _child_exit(0)
        finally:
            _child_exit(1)
    os.close(w)
    try:
        assert gos.waitpid(pid, 0)[1] == 0
        return os.read(r, 200).decode()
    finally:
        os.close(r)


def _waitpid_any_raises_child_process_error():
    try:
        gos.waitpid(-1, 0)
    except ChildProcessError:
        return True
    return False


def test_waitpid_any_child_and_nohang():
    def body():
        ticks = []
        ticker = gw.spawn(lambda: [ticks.append(1) or gw.sleep(0.01) for _ in range(10000)])
        grandchild = os.fork()
        if grandchild == 0:
            try:
                time.sleep(0.15)
            finally:
                _child_exit(5)
        results = [gos.waitpid(grandchild, os.WNOHANG) == (0, 0)]
        rpid, status = gos.waitpid(-1, 0)
        results += [rpid == grandchild, os.WEXITSTATUS(status) == 5, len(ticks) >= 5]
        results.append(_waitpid_any_raises_child_process_error())
        ticker.kill()
        return results

    assert _checks_in_a_forked_child(body) == repr([True] * 5)


def test_waitpid_any_returns_a_watched_child_the_reaper_collected():
    # fork_and_watch's reaper collects the child as soon as it exits; the
    # kernel then has nothing for waitpid(-1), which must still report it
    # once (as gevent does), then raise ChildProcessError.
    def body():
        exited = gw.event.Event()
        grandchild = gos.fork_and_watch(lambda watcher: exited.set())
        if grandchild == 0:
            _child_exit(6)
        results = [exited.wait(5)]
        rpid, status = gos.waitpid(-1, 0)
        results += [rpid == grandchild, os.WEXITSTATUS(status) == 6]
        results.append(_waitpid_any_raises_child_process_error())
        return results

    assert _checks_in_a_forked_child(body) == repr([True] * 4)


def test_reap_children_forgets_exited_children_nobody_waited_for():
    # A program that forks and never waits must not grow the table of
    # watched children forever: os._reap_children(timeout) drops the exits
    # older than timeout (0: all of them); a minute's worth are kept.
    from greenwheel import _child

    exited = gw.event.Event()
    pid = gos.fork_and_watch(lambda watcher: exited.set())
    if pid == 0:
        _child_exit(0)
    try:
        assert exited.wait(10)
        gos._reap_children()
        kept = pid in _child._children
        gos._reap_children(0)
        assert kept and pid not in _child._children
    finally:
        _child.forget(pid)


def test_nonblocking_pipe_io(ticker):
    r, w = os.pipe()
    try:
        assert gos.make_nonblocking(r) is True
        assert gos.make_nonblocking(r) is False
        gos.make_nonblocking(w)
        got = []
        reader = gw.spawn(lambda: got.append(gos.nb_read(r, 100)))
        gw.sleep(0.05)
        assert not got  # parked on the loop, not blocking it
        assert gos.nb_write(w, b"ping") == 4
        reader.join(timeout=5)
        assert got == [b"ping"]

        # A full pipe parks the writer until a reader drains it.
        chunk = b"x" * 65536
        written = []

        def writer():
            total = 0
            while total < 4 * len(chunk):
                total += gos.nb_write(w, chunk[: 4 * len(chunk) - total])
            written.append(total)

        wg = gw.spawn(writer)
        gw.sleep(0.05)
        assert not written
        total = 0
        while total < 4 * len(chunk):
            total += len(gos.nb_read(r, 65536))
        wg.join(timeout=5)
        assert written == [4 * len(chunk)] and total == 4 * len(chunk)
    finally:
        os.close(r)
        os.close(w)


def test_threadpool_read_write(tmp_path, ticker):
    path = tmp_path / "data"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        assert gos.tp_write(fd, b"hello") == 5
        os.lseek(fd, 0, os.SEEK_SET)
        assert gos.tp_read(fd, 10) == b"hello"
    finally:
        os.close(fd)
    with pytest.raises(OSError) as info:
        gos.tp_read(fd, 1)
    assert info.value.errno == errno.EBADF


def test_module_mirrors_os():
    assert gos.path is os.path and gos.getpid is os.getpid
    assert gos.fork is gw.fork
    assert "fork" in gos.__implements__ and "waitpid" in gos.__implements__


def test_a_child_that_exited_before_the_sigchld_handler_is_seen_when_it_is_installed():
    # Its SIGCHLD went to nobody: installing the handler must look at the
    # watched children at once. Deterministic: the grandchild is known to have
    # exited (waitid with WNOWAIT) before the handler goes in.
    from greenwheel import _child

    def body():
        grandchild = os.fork()
        if grandchild == 0:
            _child_exit(4)
        os.waitid(os.P_PID, grandchild, os.WEXITED | os.WNOWAIT)  # exited, not reaped
        watched = _child.watch(grandchild)
        if _child._installed:  # inherited from the parent: start from no handler
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _child._installed = False
        installed = _child.install_sigchld()
        return [installed, watched.status is not None and os.WEXITSTATUS(watched.status) == 4]

    assert _checks_in_a_forked_child(body) == repr([True, True])


def test_exit_announced_to_a_destroyed_hub_is_not_lost():
    # The SIGCHLD handler wakes the loop of the hub that installed it. A
    # child that exits after that hub is destroyed and before the next hub
    # watches it sends its signal to the dead loop; the next watch must
    # still see the exit (it was lost: fork_and_watch's callback never ran).
    from greenwheel import _hub as hub_mod

    first = gw.event.Event()
    pid = gos.fork_and_watch(lambda watcher: first.set())
    if pid == 0:
        _child_exit(0)
    assert first.wait(10)
    gos.waitpid(pid, 0)
    hub_mod.get_hub().destroy(destroy_loop=True)

    pid = os.fork()  # a raw fork: nothing watches it yet
    if pid == 0:
        _child_exit(4)
    # Block until it has exited (without reaping it): its SIGCHLD is sent.
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    seen = []
    done = gw.event.Event()

    def callback(watcher):
        seen.append(os.WEXITSTATUS(watcher.rstatus))
        done.set()

    gos.fork_and_watch(callback, fork=lambda: pid)
    assert done.wait(5), "the exit was never noticed"
    assert seen == [4]
