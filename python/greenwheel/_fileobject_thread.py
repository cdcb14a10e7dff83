"""File objects for what the loop cannot wait on: regular files (gevent's
FileObjectThread and FileObjectBlock).

The kernel reports a regular file as always ready, so waiting on the loop
buys nothing: a read of a cold file still blocks the whole thread.
:class:`FileObjectThread` runs every operation that may block in the hub's
thread pool, so only the calling greenlet waits.  :class:`FileObjectBlock`
has the same interface and just blocks (for code that wants one type).

Ground rules:
- One operation at a time per file object (``lock=True``, the default): a
  file's position is shared state, and two threads moving it at once would
  interleave reads.  The lock is a greenwheel semaphore, held while the
  worker thread runs, and released however the caller's wait ends.
- After :meth:`close` every operation raises :exc:`FileObjectClosed`
  (``OSError`` with ``EBADF``), as in gevent; closing twice is fine.
"""

import errno
import os

from ._hub import get_hub
from ._semaphore import Semaphore

__all__ = ["FileObjectBlock", "FileObjectClosed", "FileObjectThread"]


_NO_NAME = object()


class FileObjectClosed(OSError):
    """An operation on a closed FileObjectThread / FileObjectBlock."""

    def __init__(self):
        super().__init__(errno.EBADF, "Bad file descriptor (FileObject was closed)")


class _ClosedIO:
    # Stands in for the file once closed: every attribute is the error,
    # except the file's name (if it had one), which outlives it.
    __slots__ = ("_name",)

    def __init__(self, name):
        self._name = name

    @property
    def name(self):
        if self._name is _NO_NAME:
            raise AttributeError("name")
        return self._name

    def __getattr__(self, name):
        if name == "name":  # the property found no name: the file never had one
            raise AttributeError(name)
        raise FileObjectClosed()

    def __bool__(self):
        return False

    def __repr__(self):
        return "<closed %r>" % (None if self._name is _NO_NAME else self._name,)


def _open(fobj, mode, bufsize, close, encoding, errors, newline):
    """The io object to wrap: *fobj* itself if it is one, else ``io.open`` of it."""
    if isinstance(fobj, (str, bytes, os.PathLike)):
        if not close:
            raise ValueError("a file opened from a path is always closed: close must be true")
        return open(fobj, mode, bufsize, encoding, errors, newline)
    if isinstance(fobj, int):
        return open(fobj, mode, bufsize, encoding, errors, newline, closefd=close)
    if not (hasattr(fobj, "read") or hasattr(fobj, "write") or hasattr(fobj, "fileno")):
        raise TypeError("fobj must be a path, a descriptor or a file object, not %r" % (fobj,))
    return fobj


#: Methods that may block, run through :meth:`_FileObjectBase._call`.
_BLOCKING = (
    "flush",
    "read",
    "read1",
    "readinto",
    "readline",
    "readlines",
    "seek",
    "tell",
    "truncate",
    "write",
    "writelines",
)


class _FileObjectBase:
    def __init__(
        self,
        fobj,
        mode="r",
        bufsize=-1,
        close=True,
        encoding=None,
        errors=None,
        newline=None,
        *,
        buffering=None,
        closefd=None,
    ):
        if buffering is not None:
            bufsize = buffering
        if closefd is not None:
            close = closefd
        if bufsize is None:
            bufsize = -1
        self._io = _open(fobj, mode, bufsize, close, encoding, errors, newline)
        self._close = bool(close)

    @property
    def io(self):
        """The wrapped io object (a stand-in raising FileObjectClosed once closed)."""
        return self._io

    @property
    def closed(self):
        return isinstance(self._io, _ClosedIO)

    def __getattr__(self, name):
        # Everything else (name, mode, encoding, fileno, readable...) is the
        # file's own; only blocking operations get a wrapper.
        fobj = self.__dict__.get("_io")
        if fobj is None:  # __init__ failed, or a subclass skipped it
            raise AttributeError(name)
        if name in _BLOCKING:
            method = getattr(fobj, name)

            def call(*args, **kwargs):
                return self._call(method, args, kwargs)

            call.__name__ = name
            return call
        return getattr(fobj, name)

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    next = __next__

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Flush, and close the file unless it was wrapped with ``close=False``."""
        fobj = self._io
        if isinstance(fobj, _ClosedIO):
            return
        self._io = _ClosedIO(getattr(fobj, "name", _NO_NAME))
        self._call(fobj.close if self._close else fobj.flush, (), {})

    def __repr__(self):
        return "<%s at %#x _fobj=%r%s>" % (type(self).__name__, id(self), self._io, self._extra())

    def _extra(self):
        return ""


class FileObjectBlock(_FileObjectBase):
    """FileObjectBlock(fobj, mode='r', bufsize=-1, close=True, encoding=None, errors=None, newline=None)

    A path, descriptor or file object, with :class:`FileObjectThread`'s
    interface, whose operations simply block.
    """

    def _call(self, method, args, kwargs):
        return method(*args, **kwargs)


class FileObjectThread(_FileObjectBase):
    """FileObjectThread(fobj, mode='r', bufsize=-1, close=True, encoding=None, errors=None,
    newline=None, threadpool=None, lock=True)

    A path, descriptor or file object whose blocking operations (read,
    write, readline, seek, flush, close...) run in a thread pool (the
    hub's by default), so that only the calling greenlet waits.  Iterating
    gives lines.  *lock* True (the default) runs one operation at a time;
    it may also be a :class:`greenwheel.lock.Semaphore` shared with other
    objects, or False for no lock.  With *close* false, :meth:`close`
    flushes but leaves the file open.
    """

    def __init__(self, fobj, *args, threadpool=None, lock=True, **kwargs):
        super().__init__(fobj, *args, **kwargs)
        self.threadpool = threadpool if threadpool is not None else get_hub().threadpool
        if lock is True:
            lock = Semaphore()
        elif not lock:
            lock = None
        self.lock = lock

    def _call(self, method, args, kwargs):
        lock = self.lock
        if lock is None:
            return self.threadpool.apply(method, args, kwargs)
        with lock:
            return self.threadpool.apply(method, args, kwargs)

    def _extra(self):
        return " threadpool=%r" % (self.threadpool,)
