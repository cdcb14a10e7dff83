"""How the file objects interpret ``open()``-style arguments (gevent's ``_fileobjectcommon``).

:class:`OpenDescriptor` checks a *mode* / *buffering* / *encoding* /
*errors* / *newline* / *closefd* combination the way the built-in
``open()`` does (same exception types, comparable messages) before anything
is opened, and records what it means (``reading``, ``writing``, ``text``,
``binary``...).  :meth:`OpenDescriptor.opened` then opens the path or
descriptor, or adopts the file object it was given.

:class:`WriteallMixin` adds ``writeall()``: keep writing until every byte is
out (an unbuffered raw stream may write fewer bytes than asked).  With
``atomic_write=True`` an unbuffered binary file from :meth:`opened` has a
``write()`` that never writes short.
"""

import io
import os

from ._fileobject_thread import FileObjectClosed

__all__ = ["OpenDescriptor", "WriteallMixin", "FileObjectClosed"]

_MODE_CHARS = frozenset("rwaxbt+U")


class WriteallMixin:
    """``writeall(data)``: write all of *data* (retrying short writes); returns ``len(data)``."""

    def writeall(self, value):
        view = memoryview(value).cast("B")
        total = len(view)
        write = super().write
        while len(view):
            written = write(view)
            if written is None:  # non-blocking and not ready: try again
                continue
            view = view[written:]
        return total


class _AtomicFileIO(WriteallMixin, io.FileIO):
    """An unbuffered file whose ``write()`` writes everything (``atomic_write``)."""

    def write(self, value):
        return self.writeall(value)


class OpenDescriptor:
    """The meaning of ``open(fobj, mode, buffering, encoding, errors, newline, closefd)``.

    *fobj* is a path, a descriptor or an already open file object.  The
    gevent spellings ``bufsize`` and ``close`` are accepted for *buffering*
    and *closefd* (giving both spellings with different values is a
    TypeError).  Invalid combinations raise ``TypeError`` / ``ValueError``
    at construction, as ``open()`` would.  *atomic_write* asks that an
    unbuffered binary result never write short (see :class:`WriteallMixin`).
    """

    default_buffer_size = io.DEFAULT_BUFFER_SIZE

    def __init__(
        self,
        fobj,
        mode="r",
        bufsize=None,
        close=None,
        encoding=None,
        errors=None,
        newline=None,
        buffering=None,
        closefd=None,
        atomic_write=False,
    ):
        buffering = self._one_of("buffering", buffering, "bufsize", bufsize, -1)
        closefd = self._one_of("closefd", closefd, "close", close, True)
        if isinstance(fobj, os.PathLike):
            fobj = os.fspath(fobj)
        if not isinstance(fobj, (str, bytes, int)) and not hasattr(fobj, "fileno"):
            if not (hasattr(fobj, "read") or hasattr(fobj, "write")):
                raise TypeError("invalid file: %r" % (fobj,))
        if not isinstance(mode, str):
            raise TypeError("invalid mode: %r" % (mode,))
        if not isinstance(buffering, int) or isinstance(buffering, bool):
            raise TypeError("invalid buffering: %r" % (buffering,))
        if encoding is not None and not isinstance(encoding, str):
            raise TypeError("invalid encoding: %r" % (encoding,))
        if errors is not None and not isinstance(errors, str):
            raise TypeError("invalid errors: %r" % (errors,))

        chars = set(mode)
        if not chars <= _MODE_CHARS or len(mode) != len(chars):
            raise ValueError("invalid mode: %r" % (mode,))
        creating = "x" in chars
        reading = "r" in chars
        writing = "w" in chars
        appending = "a" in chars
        updating = "+" in chars
        text = "t" in chars
        binary = "b" in chars
        universal = "U" in chars
        if universal:
            if creating or writing or appending or updating:
                raise ValueError("mode U cannot be combined with 'x', 'w', 'a', or '+'")
            reading = True
        if text and binary:
            raise ValueError("can't have text and binary mode at once")
        if creating + reading + writing + appending > 1:
            raise ValueError("can't have read/write/append mode at once")
        if not (creating or reading or writing or appending):
            raise ValueError("must have exactly one of read/write/append mode")
        if binary and encoding is not None:
            raise ValueError("binary mode doesn't take an encoding argument")
        if binary and errors is not None:
            raise ValueError("binary mode doesn't take an errors argument")
        if binary and newline is not None:
            raise ValueError("binary mode doesn't take a newline argument")
        if newline not in (None, "", "\n", "\r", "\r\n"):
            raise ValueError("illegal newline value: %r" % (newline,))
        if binary and buffering == 1:
            buffering = -1  # line buffering means nothing for bytes (open() warns)

        self._fobj = fobj
        self.mode = mode
        self.fileio_mode = ("x" if creating else "r" if reading else "w" if writing else "a") + (
            "+" if updating else ""
        )
        self.creating = creating
        self.reading = reading
        self.writing = writing
        self.appending = appending
        self.updating = updating
        self.text = text
        self.binary = binary
        self.universal = universal
        self.can_read = reading or updating
        self.can_write = creating or writing or appending or updating
        #: Neither 't' nor 'b' and no encoding or errors: ``str`` I/O, as open() gives.
        self.native = not text and not binary and not encoding and not errors
        self.buffering = buffering
        self.encoding = encoding
        self.errors = errors
        self.newline = newline
        self.closefd = closefd
        self.atomic_write = atomic_write
        self._opened = None

    @staticmethod
    def _one_of(name, value, old_name, old_value, default):
        if value is not None and old_value is not None and value != old_value:
            raise TypeError(
                "Cannot specify both %s=%r and %s=%r" % (name, value, old_name, old_value)
            )
        if value is None:
            value = old_value
        return default if value is None else value

    @property
    def fobj(self):
        """What was given to open: a path, a descriptor or a file object."""
        return self._fobj

    def is_fd(self):
        return isinstance(self._fobj, int)

    def opened(self):
        """The open io object (made once): ``open()``'s result, or the file object given."""
        if self._opened is None:
            self._opened = self._open()
        return self._opened

    def _open(self):
        fobj = self._fobj
        if not isinstance(fobj, (str, bytes, int)):
            return fobj  # already open: used as it is
        binary_mode = "b" in self.mode
        if self.atomic_write and binary_mode and self.buffering == 0:
            return _AtomicFileIO(fobj, self.fileio_mode, self.closefd)
        mode = self.mode.replace("U", "")  # universal newlines are text mode's default
        return open(  # the caller owns the result
            fobj,
            mode,
            self.buffering,
            self.encoding,
            self.errors,
            self.newline,
            self.closefd,
        )

    def __repr__(self):
        return "<%s fobj=%r mode=%r buffering=%r closefd=%r>" % (
            type(self).__name__,
            self._fobj,
            self.mode,
            self.buffering,
            self.closefd,
        )
