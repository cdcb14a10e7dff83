"""greenwheel.fileobject: FileObjectPosix over pipes, FileObjectThread and
FileObjectBlock over anything (regular files above all)."""

import errno
import os
import threading

import pytest

import greenwheel as gw
from greenwheel import fileobject
from greenwheel.fileobject import FileObject, FileObjectBlock, FileObjectPosix, FileObjectThread


def test_public_module():
    assert sorted(fileobject.__all__) == [
        "FileObject",
        "FileObjectBlock",
        "FileObjectClosed",
        "FileObjectPosix",
        "FileObjectThread",
        "GreenFileIO",
    ]
    assert FileObject is FileObjectPosix
    assert issubclass(fileobject.FileObjectClosed, OSError)


# --- FileObjectPosix: a pipe read by one greenlet, written by another ---------------------


def test_posix_pipe_read_waits_only_the_calling_greenlet():
    r, w = os.pipe()
    reader = FileObjectPosix(r, "rb")
    writer = FileObjectPosix(w, "wb", bufsize=0)
    ticks = []

    def ticker():
        for i in range(3):
            ticks.append(i)
            gw.sleep(0)
        writer.write(b"hello\n")

    gw.spawn(ticker)
    assert reader.readline() == b"hello\n"  # parked until the ticker wrote
    assert ticks == [0, 1, 2]
    writer.close()
    assert reader.read() == b""
    reader.close()
    assert reader.closed


# --- FileObjectThread ---------------------------------------------------------------------


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "data.txt"
    p.write_text("one\ntwo\nthree\n")
    return p


def test_thread_reads_and_writes_a_regular_file(path, tmp_path):
    with FileObjectThread(str(path)) as f:  # a path; mode 'r' (text) as in gevent
        assert f.readline() == "one\n"
        assert list(f) == ["two\n", "three\n"]
        assert f.name == str(path) and f.mode == "r"
    assert f.closed

    out = tmp_path / "out.bin"
    with FileObjectThread(out, "wb") as f:  # a PathLike
        f.write(b"abc")
        f.writelines([b"d", b"e"])
        f.flush()
        assert f.tell() == 5
    assert out.read_bytes() == b"abcde"

    fd = os.open(str(path), os.O_RDONLY)
    with FileObjectThread(fd, "rb") as f:  # a descriptor, closed with the object
        f.seek(4)
        assert f.read(3) == b"two"
    with pytest.raises(OSError):
        os.fstat(fd)

    with open(path, "rb") as raw:  # a file object
        f = FileObjectThread(raw)
        assert f.read() == b"one\ntwo\nthree\n"
        f.close()
        assert raw.closed


def test_thread_operations_run_in_a_worker_thread_and_others_keep_running():
    # The read blocks until another greenlet of this thread acts: were it run
    # in this thread, nothing else could run and it would time out.
    released = threading.Event()

    class Slow:
        name = "slow"

        def read(self, n=-1):
            ident = threading.get_ident()
            return (released.wait(30), ident)

        def close(self):
            pass

    f = FileObjectThread(Slow())
    gw.spawn(released.set)
    ok, ident = f.read()
    assert ok, "the read held the loop: the releasing greenlet never ran"
    assert ident != threading.get_ident()
    f.close()


def test_thread_lock_serialises_operations():
    active = []
    overlaps = []

    class Counting:
        def read(self, n=-1):
            return ""

        def readline(self):
            active.append(1)
            if len(active) > 1:
                overlaps.append(len(active))
            threading.Event().wait(0.01)  # long enough for another to start, were it allowed
            active.pop()
            return "x\n"

    f = FileObjectThread(Counting())
    jobs = [gw.spawn(f.readline) for _ in range(4)]
    gw.joinall(jobs, raise_error=True)
    assert [job.value for job in jobs] == ["x\n"] * 4
    assert overlaps == []


def test_thread_close_false_flushes_and_leaves_the_file_open(path):
    fd = os.open(str(path), os.O_RDWR)
    f = FileObjectThread(fd, "rb+", close=False)
    f.seek(0, os.SEEK_END)
    f.write(b"four\n")
    f.close()
    assert os.fstat(fd).st_size == len(b"one\ntwo\nthree\nfour\n")  # flushed, still open
    os.close(fd)


def test_thread_operations_after_close_raise_ebadf(path):
    f = FileObjectThread(str(path))
    f.close()
    f.close()  # twice is fine
    for op in (lambda: f.read(), lambda: f.readline(), lambda: f.fileno(), lambda: next(f)):
        with pytest.raises(fileobject.FileObjectClosed) as info:
            op()
        assert info.value.errno == errno.EBADF
    assert "closed" in repr(f)


def test_thread_bad_arguments(path):
    with pytest.raises(ValueError):
        FileObjectThread(str(path), close=False)  # a path is always ours to close
    with pytest.raises(TypeError):
        FileObjectThread(3.5)
    with pytest.raises(FileNotFoundError):
        FileObjectThread(str(path) + ".missing")


def test_thread_errors_of_the_file_reach_the_caller(tmp_path):
    class Broken:
        def read(self, n=-1):
            raise OSError(errno.EIO, "disk on fire")

    f = FileObjectThread(Broken())
    with pytest.raises(OSError) as info:
        f.read()
    assert info.value.errno == errno.EIO
    # The lock was released: the next call runs (and fails the same way).
    with pytest.raises(OSError):
        f.read()


def test_thread_killed_caller_releases_the_lock():
    gate = threading.Event()
    entered = threading.Event()

    class Gated:
        def read(self, n=-1):
            entered.set()
            gate.wait(30)
            return b"late"

        def readline(self):
            return b"next\n"

    f = FileObjectThread(Gated())
    job = gw.spawn(f.read)
    while not entered.is_set():  # until the read runs in the pool, holding the lock
        gw.sleep(0.001)
    job.kill()
    assert job.dead
    gate.set()
    assert f.readline() == b"next\n"


# --- FileObjectBlock ------------------------------------------------------------------------


def test_block_has_the_same_interface_and_runs_inline(path):
    seen = []

    class Recording:
        def read(self, n=-1):
            seen.append(threading.get_ident())
            return "data"

    with FileObjectBlock(str(path), "rb") as f:
        assert f.readline() == b"one\n"
        assert [line for line in f] == [b"two\n", b"three\n"]
    assert f.closed
    assert FileObjectBlock(Recording()).read() == "data"
    assert seen == [threading.get_ident()]
