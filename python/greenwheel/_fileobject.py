"""Cooperative file objects over non-blocking descriptors (pipes, ttys, sockets).

:class:`GreenFileIO` is an ``io.RawIOBase`` whose descriptor is put in
non-blocking mode; a read or write that would block parks the calling
greenlet on a loop watcher until the descriptor is ready, then retries.
:func:`open_green` stacks the usual buffered / text layers on top, so the
result behaves like what ``open(fd, mode)`` returns.  Regular files are
always "ready" for the kernel, so for them use the thread pool instead
(:func:`greenwheel.os.tp_read`).
"""

import io
import os

from ._hub import get_hub
from ._socket import cancel_wait_ex

__all__ = ["GreenFileIO", "open_green", "FileObjectPosix", "share_with_child"]

_READ = 1
_WRITE = 2


class GreenFileIO(io.RawIOBase):
    """Raw, unbuffered I/O on *fd* that blocks only the calling greenlet."""

    def __init__(self, fd, mode="rb", closefd=True):
        io.RawIOBase.__init__(self)
        if not isinstance(fd, int):
            fd = fd.fileno()
        self._fd = fd
        self._closefd = closefd
        self._readable = "r" in mode or "+" in mode
        self._writable = any(c in mode for c in "wa+")
        self.mode = mode
        self.name = fd
        self._watchers = {}
        #: True once the descriptor had to be made blocking again (it was
        #: handed to a child process, which shares its file status flags):
        #: then every read or write first waits for readiness on the loop.
        self.shared_blocking = False
        os.set_blocking(fd, False)

    def fileno(self):
        if self._fd < 0:
            raise ValueError("I/O operation on closed file")
        return self._fd

    def readable(self):
        return self._readable

    def writable(self):
        return self._writable

    def seekable(self):
        return False

    def isatty(self):
        return os.isatty(self.fileno())

    def _wait(self, events):
        hub = get_hub()
        key = (id(hub.loop), events)
        watcher = self._watchers.get(key)
        if watcher is None or watcher.loop is not hub.loop:
            watcher = self._watchers[key] = hub.loop.io(self.fileno(), events)
        hub.wait(watcher)
        if self._fd < 0:
            raise cancel_wait_ex()

    def readinto(self, b):
        if not self._readable:
            raise io.UnsupportedOperation("not readable")
        if self.shared_blocking:
            self._wait(_READ)
        while True:
            try:
                return os.readv(self.fileno(), [b])
            except BlockingIOError:
                pass
            except InterruptedError:
                continue
            self._wait(_READ)

    def readall(self):
        chunks = []
        while True:
            data = self.read(io.DEFAULT_BUFFER_SIZE * 8)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    def write(self, b):
        if not self._writable:
            raise io.UnsupportedOperation("not writable")
        if self.shared_blocking:
            self._wait(_WRITE)
        while True:
            try:
                return os.write(self.fileno(), b)
            except BlockingIOError:
                pass
            except InterruptedError:
                continue
            self._wait(_WRITE)

    def close(self):
        if self.closed:
            return
        fd, self._fd = self._fd, -1
        watchers, self._watchers = self._watchers, {}
        hub = get_hub()
        for watcher in watchers.values():
            if watcher.active and watcher.loop is hub.loop:
                # Another greenlet waits on this descriptor: it gets EBADF.
                hub.cancel_wait(watcher, cancel_wait_ex, True)
            else:
                watcher.close()
        try:
            if fd >= 0 and self._closefd:
                try:
                    hub.loop.closing_fd(fd)
                except Exception:
                    pass
                os.close(fd)
        finally:
            io.RawIOBase.close(self)

    def __repr__(self):
        return "<%s fd=%s mode=%r>" % (type(self).__name__, self._fd, self.mode)


def open_green(
    fd,
    mode="rb",
    bufsize=-1,
    closefd=True,
    encoding=None,
    errors=None,
    newline=None,
    line_buffering=False,
    write_through=False,
):
    """Like ``open(fd, mode, bufsize, ...)`` but cooperative (see :class:`GreenFileIO`)."""
    text = "b" not in mode
    raw_mode = mode.replace("t", "").replace("b", "")
    raw = GreenFileIO(fd, raw_mode + "b", closefd)
    if bufsize == 1 and text:
        line_buffering = True
    if bufsize in (-1, 1) or (text and bufsize == 0):
        bufsize = io.DEFAULT_BUFFER_SIZE
    if bufsize == 0:
        return raw
    if raw.readable() and raw.writable():
        buffered = io.BufferedRWPair(raw, raw, bufsize)
    elif raw.writable():
        buffered = io.BufferedWriter(raw, bufsize)
    else:
        buffered = io.BufferedReader(raw, bufsize)
    if not text:
        return buffered
    return io.TextIOWrapper(
        buffered,
        encoding=encoding,
        errors=errors,
        newline=newline,
        line_buffering=line_buffering,
        write_through=write_through,
    )


class FileObjectPosix:
    """FileObjectPosix(fobj, mode='rb', bufsize=-1, close=True, encoding=None, errors=None, newline=None)

    A cooperative file object over a descriptor (or an object with
    ``fileno()``), as in gevent: attribute access goes to the underlying
    ``io`` object (:attr:`io`).  With *close* false the descriptor stays
    open when this object is closed.
    """

    def __init__(
        self, fobj, mode="rb", bufsize=-1, close=True, encoding=None, errors=None, newline=None
    ):
        fd = fobj if isinstance(fobj, int) else fobj.fileno()
        self.fileio = None
        self.io = open_green(fd, mode, bufsize, close, encoding, errors, newline)
        self._close = close

    def __getattr__(self, name):
        return getattr(self.__dict__["io"], name)

    def __iter__(self):
        return iter(self.io)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.io.close()

    @property
    def closed(self):
        return self.io.closed


def _raw_of(obj):
    for _ in range(3):
        if isinstance(obj, GreenFileIO):
            return obj
        obj = getattr(obj, "buffer", None) or getattr(obj, "raw", None) or getattr(obj, "io", None)
        if obj is None:
            return None
    return None


def share_with_child(obj):
    """Prepare *obj* (a descriptor or file object) to become a child's stdio.

    A child shares the descriptor's file status flags; most programs expect
    blocking standard streams, so a non-blocking descriptor is made blocking
    (a greenwheel file object on it then waits on the loop before each call).
    """
    if obj is None or (isinstance(obj, int) and obj < 0):
        return
    try:
        fd = obj if isinstance(obj, int) else obj.fileno()
        if os.get_blocking(fd):
            return
        os.set_blocking(fd, True)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return
    raw = _raw_of(obj)
    if raw is not None:
        raw.shared_blocking = True
