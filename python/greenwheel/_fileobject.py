"""Cooperative file objects over non-blocking descriptors (pipes, ttys, sockets).

:class:`GreenFileIO` is an ``io.RawIOBase`` whose descriptor is put in
non-blocking mode; a read or write that would block parks the calling
greenlet on a loop watcher until the descriptor is ready, then retries.
:func:`open_green` stacks the usual buffered / text layers on top, so the
result behaves like what ``open(fd, mode)`` returns.  Regular files are
always "ready" for the kernel, so for them use the thread pool instead
(:func:`greenwheel.os.tp_read`).
"""

from __future__ import annotations

import io
import os

from ._fileobjectcommon import OpenDescriptor, WriteallMixin
from ._hub import _get_hub_if_exists, get_hub
from ._socket import cancel_wait_ex
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, Self

__all__ = [
    "GreenFileIO",
    "GreenOpenDescriptor",
    "open_green",
    "FileObjectPosix",
    "share_with_child",
]

_READ = 1
_WRITE = 2
_FD_AS_NAME = object()  # GreenFileIO's default name is its descriptor


class GreenFileIO(io.RawIOBase):
    """Raw, unbuffered I/O on *fd* that blocks only the calling greenlet."""

    def __init__(self, fd, mode="rb", closefd=True, name=_FD_AS_NAME):
        io.RawIOBase.__init__(self)
        if not isinstance(fd, int):
            fd = fd.fileno()
        self._fd = fd
        self._closefd = closefd
        self._readable = "r" in mode or "+" in mode
        self._writable = any(c in mode for c in "wax+")
        self._seekable = None
        self.mode = mode
        if name is _FD_AS_NAME:
            self.name = fd
        elif name is not None:  # None: a nameless file (no attribute)
            self.name = name
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
        if self._seekable is None:
            try:
                os.lseek(self.fileno(), 0, os.SEEK_CUR)
            except OSError:
                self._seekable = False
            else:
                self._seekable = True
        return self._seekable

    def seek(self, offset, whence=os.SEEK_SET):
        # A pipe or socket raises what lseek() raises (ESPIPE).
        return os.lseek(self.fileno(), offset, whence)

    def tell(self):
        return os.lseek(self.fileno(), 0, os.SEEK_CUR)

    def truncate(self, size=None):
        if size is None:
            size = self.tell()
        os.ftruncate(self.fileno(), size)
        return size

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
        # Never make a hub here: a new loop's descriptors could take the
        # number of an fd closed behind our back, and we would close them.
        hub = _get_hub_if_exists()
        loop = hub.loop if hub is not None else None
        for watcher in watchers.values():
            if watcher.active and watcher.loop is loop:
                # Another greenlet waits on this descriptor: it gets EBADF.
                hub.cancel_wait(watcher, cancel_wait_ex, True)
            else:
                watcher.close()
        try:
            if fd >= 0 and self._closefd:
                if loop is not None:
                    try:
                        loop.closing_fd(fd)
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
    name=_FD_AS_NAME,
):
    """Like ``open(fd, mode, bufsize, ...)`` but cooperative (see :class:`GreenFileIO`)."""
    text = "b" not in mode
    raw_mode = "".join(c for c in mode if c in "rwax+")
    raw = GreenFileIO(fd, raw_mode + "b", closefd, name)
    return _layered(raw, text, bufsize, encoding, errors, newline, line_buffering, write_through)


def _layered(raw, text, bufsize, encoding, errors, newline, line_buffering, write_through):
    # The buffered and text layers open() would put over *raw*.
    if bufsize is None:
        bufsize = -1
    if bufsize == 1 and text:
        line_buffering = True
    if bufsize in (-1, 1) or (text and bufsize == 0):
        bufsize = io.DEFAULT_BUFFER_SIZE
    if bufsize == 0:
        return raw
    if raw.readable() and raw.writable():
        if raw.seekable():
            buffered = io.BufferedRandom(raw, bufsize)
        else:
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


def _os_flags(desc):
    if desc.updating:
        flags = os.O_RDWR
    elif desc.reading:
        flags = os.O_RDONLY
    else:
        flags = os.O_WRONLY
    if desc.writing:
        flags |= os.O_CREAT | os.O_TRUNC
    elif desc.appending:
        flags |= os.O_CREAT | os.O_APPEND
    elif desc.creating:
        flags |= os.O_CREAT | os.O_EXCL
    return flags | getattr(os, "O_CLOEXEC", 0)


class _AtomicGreenFileIO(WriteallMixin, GreenFileIO):
    """A GreenFileIO whose ``write()`` never writes short (``atomic_write``)."""

    def write(self, value):
        return self.writeall(value)


class GreenOpenDescriptor(OpenDescriptor):
    """:class:`~greenwheel._fileobjectcommon.OpenDescriptor` whose files are cooperative.

    :meth:`opened` gives the ``open()``-like stack over a :class:`GreenFileIO`
    (:meth:`opened_raw`): a descriptor is used as it is, a path is opened,
    an object with ``fileno()`` lends its descriptor (and keeps it: the raw
    file never closes it) and its name.
    """

    _raw = None

    def opened_raw(self):
        """The cooperative raw file under :meth:`opened`."""
        if self._raw is None:
            self.opened()
        return self._raw

    def _open(self):
        fobj = self.fobj
        if isinstance(fobj, int):
            fd, name, raw_closefd = fobj, _FD_AS_NAME, self.closefd
        elif isinstance(fobj, (str, bytes)):
            if not self.closefd:
                raise ValueError("Cannot use closefd=False with file name")
            fd, name, raw_closefd = os.open(fobj, _os_flags(self), 0o666), fobj, True
        elif hasattr(fobj, "fileno"):
            fd, name, raw_closefd = fobj.fileno(), getattr(fobj, "name", None), False
        else:
            raise TypeError(
                "a cooperative file needs a descriptor, a path or an object with fileno()"
            )
        binary = "b" in self.mode
        cls = (
            _AtomicGreenFileIO
            if self.atomic_write and binary and self.buffering == 0
            else GreenFileIO
        )
        try:
            raw = cls(fd, self.fileio_mode + "b", raw_closefd, name)
        except BaseException:
            if isinstance(fobj, (str, bytes)):
                os.close(fd)
            raise
        self._raw = raw
        return _layered(
            raw, not binary, self.buffering, self.encoding, self.errors, self.newline, False, False
        )


class FileObjectPosix:
    """FileObjectPosix(fobj, mode='r', bufsize=-1, close=True, encoding=None, errors=None,
    newline=None, *, buffering=None, closefd=None, atomic_write=False)

    A cooperative file object, as in gevent: *fobj* is a descriptor (of a
    pipe, tty or socket above all), a path, or an object with ``fileno()``;
    the arguments mean what they mean to ``open()`` (``buffering`` and
    ``closefd`` are accepted for ``bufsize`` and ``close``).  Attribute
    access goes to the underlying ``io`` object (:attr:`io`); :attr:`fileio`
    is the raw :class:`GreenFileIO`.  With *close* false the descriptor
    stays open when this object is closed; a file object given is closed
    with it (its ``close()``) unless *close* is false.
    """

    default_bufsize = io.DEFAULT_BUFFER_SIZE

    def __init__(
        self,
        fobj: Any,
        mode: str = "r",
        bufsize: int | None = None,
        close: bool | None = None,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
        *,
        buffering: int | None = None,
        closefd: bool | None = None,
        atomic_write: bool = False,
    ) -> None:
        desc = GreenOpenDescriptor(
            fobj,
            mode,
            bufsize,
            close,
            encoding,
            errors,
            newline,
            buffering=buffering,
            closefd=closefd,
            atomic_write=atomic_write,
        )
        self.io = desc.opened()
        self.fileio = desc.opened_raw()
        # A file object given keeps its descriptor: closing closes the object.
        self._fobj = None if isinstance(desc.fobj, (int, str, bytes)) else desc.fobj
        self.mode = desc.mode
        self._close = desc.closefd

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["io"], name)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.io)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        fobj, self._fobj = self._fobj, None
        try:
            self.io.close()
        finally:
            if fobj is not None and self._close:
                fobj.close()

    @property
    def closed(self) -> bool:
        return self.io.closed

    def __repr__(self) -> str:
        return "<%s at %#x io=%r>" % (type(self).__name__, id(self), self.io)


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
