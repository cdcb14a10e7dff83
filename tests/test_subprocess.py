"""greenwheel.subprocess: pipes served by the loop, exits noticed without blocking it."""

import os
import signal
import sys
import time

import pytest

import greenwheel as gw
from greenwheel import subprocess

pytestmark = pytest.mark.timeout(30)


def test_pipeline_cat_into_wc(ticker):
    cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    wc = subprocess.Popen(["wc", "-l"], stdin=cat.stdout, stdout=subprocess.PIPE)
    cat.stdout.close()  # wc owns the read end now

    def feed():
        for i in range(1000):
            cat.stdin.write(b"line %d\n" % i)
            if i % 100 == 0:
                gw.sleep(0.01)
        cat.stdin.close()

    feeder = gw.spawn(feed)
    out, err = wc.communicate(timeout=10)
    feeder.join()
    assert out.strip() == b"1000" and err is None
    assert cat.wait(timeout=5) == 0 and wc.returncode == 0
    assert len(ticker) >= 5


def test_communicate_with_input_and_text_mode():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; data = sys.stdin.read(); print(data.upper()); print('err', file=sys.stderr)",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate("hello\r\nworld")
    assert out == "HELLO\nWORLD\n" and err == "err\n"
    assert proc.returncode == 0
    # A large input does not deadlock against a large output.
    big = b"x" * (1 << 20)
    out, _ = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE).communicate(
        big
    )
    assert out == big


def test_communicate_timeout_then_resume(ticker):
    # The child prints "end" only once the test writes to its control pipe,
    # so the first communicate() must time out, whatever the machine's load.
    control_r, control_w = os.pipe()
    try:
        proc = subprocess.Popen(
            ["sh", "-c", "echo start; read go < /dev/fd/%d; echo end" % control_r],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(control_r,),
        )
        start = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired) as info:
            proc.communicate(timeout=0.1)
        assert info.value.timeout == 0.1
        assert time.monotonic() - start >= 0.1  # never early

        def release_after_ticks(n):
            # Runs only if the loop keeps turning while communicate() waits.
            while len(ticker) < n:
                gw.sleep(0.01)
            os.write(control_w, b"go\n")

        releaser = gw.spawn(release_after_ticks, len(ticker) + 5)
        out, err = proc.communicate(timeout=20)
        assert out == b"start\nend\n" and err == b""
        assert proc.returncode == 0
        releaser.get()
        with pytest.raises(ValueError):
            proc.communicate(b"late input")
    finally:
        os.close(control_r)
        os.close(control_w)


def test_wait_timeout_kill_poll(ticker):
    proc = subprocess.Popen(["sleep", "10"])
    assert proc.poll() is None
    start, ticks = time.monotonic(), len(ticker)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    # Never early; late only by the load (the child's 10 s is far off).
    elapsed = time.monotonic() - start
    assert 0.2 <= elapsed < 5, elapsed
    # The ticker's 10 ms timer is due before the 0.2 s one: it ran meanwhile.
    assert len(ticker) > ticks
    proc.kill()
    assert proc.wait(timeout=5) == -signal.SIGKILL
    assert proc.poll() == -signal.SIGKILL

    quick = subprocess.Popen(["sh", "-c", "exit 7"])
    deadline = time.monotonic() + 5
    while quick.poll() is None and time.monotonic() < deadline:
        gw.sleep(0.01)
    assert quick.returncode == 7


def test_many_children_wait_concurrently(ticker):
    # Ten children, each held until it reads its line from one shared pipe:
    # all ten wait()s are parked at once, and the loop keeps turning.
    control_r, control_w = os.pipe()
    try:
        procs = [
            subprocess.Popen(
                ["sh", "-c", "read go < /dev/fd/%d" % control_r], pass_fds=(control_r,)
            )
            for _ in range(10)
        ]
        waiters = [gw.spawn(p.wait) for p in procs]
        ticks = len(ticker)
        while len(ticker) < ticks + 3:
            gw.sleep(0.01)
        assert not any(w.ready() for w in waiters)
        os.write(control_w, b"go\n" * 10)
        assert len(gw.joinall(waiters, timeout=20, raise_error=True)) == 10
        assert [w.value for w in waiters] == [0] * 10
    finally:
        os.close(control_r)
        os.close(control_w)


def test_helpers():
    assert subprocess.call(["true"]) == 0
    assert subprocess.call("exit 3", shell=True) == 3
    assert subprocess.check_call(["true"]) == 0
    with pytest.raises(subprocess.CalledProcessError) as info:
        subprocess.check_call(["false"])
    assert info.value.returncode == 1
    assert subprocess.check_output(["echo", "hi"]) == b"hi\n"
    assert subprocess.check_output("cat", shell=True, input=b"in") == b"in"
    assert subprocess.check_output(["echo", "txt"], text=True) == "txt\n"
    with pytest.raises(subprocess.CalledProcessError) as info:
        subprocess.check_output("echo partial; exit 2", shell=True)
    assert info.value.output == b"partial\n" and info.value.returncode == 2
    done = subprocess.run(["sh", "-c", "echo out; echo err >&2; exit 4"], capture_output=True)
    assert isinstance(done, subprocess.CompletedProcess)
    assert (done.returncode, done.stdout, done.stderr) == (4, b"out\n", b"err\n")
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(["false"], check=True)
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(["sleep", "5"], timeout=0.1)
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.call(["sleep", "5"], timeout=0.1)
    assert subprocess.getoutput("echo hello") == "hello"
    assert subprocess.getstatusoutput("echo bye; exit 5") == (5, "bye")
    with subprocess.Popen(["echo", "ctx"], stdout=subprocess.PIPE) as proc:
        assert proc.stdout.read() == b"ctx\n"
    assert proc.returncode == 0
    assert subprocess.PIPE == -1 and subprocess.DEVNULL == -3 and subprocess.STDOUT == -2
    assert subprocess.run(["echo"], stdout=subprocess.DEVNULL).returncode == 0


def test_readline_streaming_from_a_child():
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-c",
            "import time\nfor i in range(3):\n    print(i)\n    time.sleep(0.05)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    lines = [line.strip() for line in proc.stdout]
    assert lines == ["0", "1", "2"]
    assert proc.wait() == 0
    proc.stdout.close()


def test_exit_noticed_without_sigchld_handler(ticker):
    # Another library replaced the SIGCHLD handler behind greenwheel's back:
    # the polling safety net still notices the exit.
    proc = subprocess.Popen(["sleep", "0.1"])
    previous = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        # Not noticed, the wait would time out (TimeoutExpired).
        assert proc.wait(timeout=5) == 0
    finally:
        signal.signal(signal.SIGCHLD, previous)


def test_popen_is_a_standard_popen():
    import subprocess as std

    assert issubclass(subprocess.Popen, std.Popen)
    proc = subprocess.Popen(["true"])
    assert proc.wait() == 0
    assert proc.pid > 0 and os.getpid() != proc.pid


def test_rawlink_and_wait_on_popen_objects(ticker):
    # gevent's link protocol: wait()/iwait() take Popen objects, and rawlink
    # callbacks get the Popen once its exit status is in, with nobody calling
    # wait() on it themselves.
    seen = []
    quick = subprocess.Popen([sys.executable, "-c", "raise SystemExit(4)"])
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    quick.rawlink(seen.append)
    assert gw.wait([quick, slow], count=1, timeout=30) == [quick]
    assert quick.result.get() == 4 and quick.returncode == 4
    assert seen == [quick]  # links run in the order made: ours before wait()'s
    assert gw.wait([slow], timeout=30) == [slow] and slow.returncode == 0
    linked = gw.event.Event()
    quick.rawlink(lambda popen: (seen.append(popen), linked.set()))  # after the exit
    assert linked.wait(30)
    assert seen == [quick, quick]
    with pytest.raises(TypeError):
        quick.rawlink(42)


def test_fileobject_and_check_output_refuses_check():
    from greenwheel.fileobject import FileObjectPosix

    assert subprocess.FileObject is FileObjectPosix
    with pytest.raises(ValueError, match="check"):
        subprocess.check_output(["true"], check=False)


def _never_exits():
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(3600)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_exit_stops_greenlets_parked_in_the_pipes():
    # communicate() abandoned while its readers wait in the pipes: leaving
    # the with block stops them instead of raising "reentrant call".
    with _never_exits() as popen:
        communicator = gw.spawn(popen.communicate)
        gw.sleep(0)  # communicate() starts its readers
        readers = list(popen._communicating_greenlets)
        assert len(readers) == 2
        gw.sleep(0)  # the readers park in the pipes
        communicator.kill()
        assert not any(r.dead for r in readers)
        popen.kill()
    assert all(r.dead for r in readers)
    assert popen.stdout.closed and popen.stderr.closed
    assert popen.poll() is not None


def test_exit_with_a_foreign_reader_in_a_pipe_closes_it_under_the_reader():
    popen = _never_exits()
    reader = gw.spawn(popen.stdout.read)
    gw.sleep(0)  # the reader parks in the pipe
    assert not reader.dead
    popen.kill()
    try:
        popen.__exit__(None, None, None)  # no RuntimeError escapes
    finally:
        reader.join(10)
    assert reader.dead and isinstance(reader.exception, OSError)
    assert popen.stdout.closed and popen.poll() is not None


def test_popen_works_in_a_native_thread():
    # greenwheel's Popen in another OS thread (which gets a hub of its own):
    # gevent refuses this with TypeError; here it simply works.
    import threading

    out = {}

    def in_thread():
        proc = subprocess.Popen(["echo", "from a thread"], stdout=subprocess.PIPE)
        out["stdout"], _ = proc.communicate()
        out["returncode"] = proc.returncode

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert out == {"stdout": b"from a thread\n", "returncode": 0}
