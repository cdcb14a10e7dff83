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


# --- gevent's argument handling: paths, buffering=, OpenDescriptor ------------------------


def test_posix_opens_a_path_with_buffering_and_default_text_mode(tmp_path):
    path = tmp_path / "posix.txt"
    path.write_bytes(b"B" * 15 + "\N{SNOWMAN}\nrest\n".encode())
    with FileObjectPosix(str(path), "r+", buffering=5, encoding="utf-8") as f:
        assert f.name == str(path) and f.mode == "r+"
        f.seek(15)
        assert f.readline() == "\N{SNOWMAN}\n"
    with FileObjectPosix(path, "rb") as f:  # a PathLike; seekable regular file
        assert f.seekable() and f.seek(15) == 15 and f.tell() == 15
        assert f.read(3) == "\N{SNOWMAN}".encode()
    with FileObjectPosix(str(path)) as f:  # mode 'r' by default: text, no read1
        assert isinstance(f.readline(), str)
        assert not hasattr(f, "read1")
    with pytest.raises(TypeError):
        FileObjectPosix(str(path), "r", bufsize=2, buffering=3)
    with pytest.raises(ValueError):
        FileObjectPosix(str(path), "rb", encoding="utf-8")


def test_posix_over_a_file_object_closes_the_object_and_keeps_its_name(tmp_path):
    path = tmp_path / "named.txt"
    path.write_text("line1\n")
    raw = open(path)  # closed through the FileObjectPosix
    f = FileObjectPosix(raw)
    assert f.name == str(path)
    assert f.readline() == "line1\n"
    f.close()
    assert raw.closed and f.name == str(path)


def test_posix_raw_seek_on_a_pipe_raises_what_lseek_raises():
    r, w = os.pipe()
    try:
        f = FileObjectPosix(r, "r", close=False)
        with pytest.raises(OSError) as info:
            f.fileio.seek(0)
        assert info.value.errno == errno.ESPIPE
        assert not f.fileio.seekable()
    finally:
        os.close(r)
        os.close(w)


def test_posix_close_makes_no_hub_that_could_reuse_a_closed_descriptor():
    # Closing an fd behind the file object's back, then closing the object,
    # in a thread with no hub: the close must not create a hub (whose loop
    # would take the freed fd number and then be closed by us).
    out = {}

    def in_thread():
        from greenwheel._hub import _get_hub_if_exists

        r, w = os.pipe()
        f = FileObjectPosix(r, "rb")
        os.close(r)
        os.close(w)
        with pytest.raises(OSError):
            f.close()
        out["hub"] = _get_hub_if_exists()

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(30)
    assert "hub" in out and out["hub"] is None


def test_thread_wraps_an_object_with_only_fileno_and_no_name():
    class Nameless:
        def fileno(self):
            return 0

        def close(self):
            pass

    for cls in (FileObjectThread, FileObjectBlock):
        f = cls(Nameless(), "rb")
        with pytest.raises(AttributeError):
            f.name  # noqa: B018
        f.close()
        with pytest.raises(AttributeError):
            f.name  # noqa: B018


@pytest.mark.parametrize("green", [False, True])
def test_open_descriptor_checks_arguments_as_open_does(green):
    from greenwheel._fileobject import GreenFileIO, GreenOpenDescriptor
    from greenwheel._fileobjectcommon import OpenDescriptor, WriteallMixin

    if green:
        OpenDescriptor = GreenOpenDescriptor  # the class under test
    for kwargs, kind in [
        ({"mode": 42}, TypeError),
        ({"buffering": "nope"}, TypeError),
        ({"encoding": 42}, TypeError),
        ({"errors": 42}, TypeError),
        ({"mode": "aoeug"}, ValueError),
        ({"mode": "wU"}, ValueError),
        ({"mode": "rtb"}, ValueError),
        ({"mode": "rw"}, ValueError),
        ({"mode": "+"}, ValueError),
        ({"mode": "rb", "encoding": "ascii"}, ValueError),
        ({"mode": "rb", "errors": "strict"}, ValueError),
        ({"mode": "rb", "newline": "\n"}, ValueError),
    ]:
        with pytest.raises(kind):
            OpenDescriptor(1, **kwargs)
    desc = OpenDescriptor(1, "r+")
    assert desc.can_read and desc.can_write and desc.native and desc.closefd

    r, w = os.pipe()
    try:
        desc = OpenDescriptor(w, "wb", buffering=0, closefd=False, atomic_write=True)
        assert desc.atomic_write and desc.is_fd()
        fobj = desc.opened()
        assert isinstance(fobj, WriteallMixin) and fobj is desc.opened()
        assert isinstance(fobj, GreenFileIO) == green
        assert fobj.write(b"abc") == 3 and os.read(r, 3) == b"abc"
        fobj.close()
    finally:
        os.close(r)
        os.close(w)
