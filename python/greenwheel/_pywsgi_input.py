"""``wsgi.input``: a request body read off the connection (for :mod:`greenwheel.pywsgi`).

:class:`Input` is one request's body: at most Content-Length bytes, or the
decoded data of a chunked body (chunk sizes, extensions and trailers are
consumed and checked here; size lines are parsed in Rust,
``_core.parse_chunk_size``).  It reads from a *source*: normally the
connection's :class:`~greenwheel._pywsgi_handler.WSGIHandler` (a
``_BodySource``), which provides ``_recv_body(n)``, the receive buffer ``_rbuf`` with its read offset
``_rpos``, ``_input_limits`` and ``headers_sent``; any other binary file is
wrapped in a :class:`_StreamSource` that provides the same.
:class:`_ConnectionFile` is the whole connection as a file (gevent's
``rfile``), for ``read_requestline`` overrides and upgraded connections.

Ground rules:

- Never consume past the end of the body: what follows belongs to the next
  request (pipelining) and stays in the source's buffer.
- A malformed body raises :class:`_InvalidClientInput` (400), one over the
  server's limit :class:`_BodyTooLarge` (413), the end of the connection
  mid-body an ``OSError`` too; every failure is kept in ``Input._error``, from
  which the handler answers and closes the connection.  Nothing here writes
  but the interim ``100 Continue``, and that only before the final response
  has begun.
- A body sent in many tiny pieces costs one growing buffer, not one object
  per piece.
"""

from __future__ import annotations

import re

from ._core import HttpParseError, parse_chunk_size
from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any
    from wsgiref.types import InputStream

    def _input_is_an_input_stream(stream: Input) -> InputStream:
        # mypy checks that Input satisfies PEP 3333's protocol here.
        return stream


#: The default request-line limit (WSGIServer.max_request_line starts from it);
#: chunk size and trailer lines are held to it too.
MAX_REQUEST_LINE = 8192

_CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
# A trailer field: token ":" anything but CR/LF.
_TRAILER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\r\n]*\Z")


class _InvalidClientInput(OSError):
    # Raised by Input when the request body is malformed (400) or too large
    # (413, the subclass); the connection cannot be reused afterwards.
    code = 400


class _BodyTooLarge(_InvalidClientInput):
    code = 413


class _BodySource:
    # The base of what Input reads from directly: the handler, and
    # _StreamSource.  A class test rather than a look for ``_recv_body``:
    # hasattr() on a handler makes and drops a bound method, a few hundred
    # instructions of every request (callgrind).
    __slots__ = ()


class _StreamSource(_BodySource):
    # Adapts a plain binary file object to the source protocol Input uses
    # (a handler provides the same three members).
    __slots__ = ("_file", "_rbuf", "_rpos")

    headers_sent = False
    _input_limits = (None, MAX_REQUEST_LINE, 65536)

    def __init__(self, file):
        self._file = file
        self._rbuf = b""
        self._rpos = 0

    def _recv_body(self, n):
        read1 = getattr(self._file, "read1", None)
        return read1(n) if read1 is not None else self._file.read(n)


class _ConnectionFile:
    """A binary read-only file over a handler's connection (gevent's ``rfile``).

    Reads first take what the handler has buffered but not parsed yet, then
    receive from the socket; the end of the connection is the end of file.
    Used for ``handler.rfile`` (a ``read_requestline`` override reads the
    request line from it) and as ``wsgi.input`` of a request asking for a
    connection upgrade (the rest of the connection belongs to the application).
    """

    __slots__ = ("_handler",)

    def __init__(self, handler):
        self._handler = handler

    closed = False

    def readable(self):
        return True

    def _buffered(self):
        handler = self._handler
        buf = handler._rbuf
        pos = handler._rpos
        return buf[pos:] if pos else buf

    def _set_buffered(self, data):
        handler = self._handler
        handler._rbuf = data
        handler._rpos = 0

    def _recv(self):
        sock = self._handler.socket
        if sock is None:
            return b""
        return sock.recv(self._handler._recv_size)

    def read(self, size=-1):
        data = self._buffered()
        if size is None or size < 0:
            parts = [data]
            while True:
                chunk = self._recv()
                if not chunk:
                    break
                parts.append(chunk)
            self._set_buffered(b"")
            return b"".join(parts)
        while len(data) < size:
            chunk = self._recv()
            if not chunk:
                break
            data += chunk
        self._set_buffered(data[size:])
        return data[:size]

    def read1(self, size=-1):
        data = self._buffered()
        if not data:
            data = self._recv()
        if size is None or size < 0:
            size = len(data)
        self._set_buffered(data[size:])
        return data[:size]

    def readline(self, size=-1):
        data = self._buffered()
        limit = None if size is None or size < 0 else size
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end >= 0:
                end += 1
                break
            if limit is not None and len(data) >= limit:
                end = limit
                break
            start = len(data)
            chunk = self._recv()
            if not chunk:
                end = len(data)
                break
            data += chunk
        if limit is not None and end > limit:
            end = limit
        self._set_buffered(data[end:])
        return data[:end]

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readlines(self, hint=-1):
        return list(self)

    def close(self):
        """Does nothing: the connection is the handler's."""


class Input:
    """The ``wsgi.input`` stream of one request.

    Reads return only the request body: with a Content-Length, at most that
    many bytes (then EOF); with ``Transfer-Encoding: chunked``, the decoded
    data (chunk framing, extensions and trailers are consumed and checked).
    ``read(n)`` blocks until *n* bytes or the end of the body are there;
    ``readline`` stops after a newline.

    *rfile* is where the bytes come from: normally the connection's
    :class:`WSGIHandler`; any binary file object works too.  If *socket* is
    given, ``100 Continue`` is sent on it before the first read (the client
    sent ``Expect: 100-continue``).

    A malformed chunked body raises an ``OSError`` subclass (the server
    answers 400), a body over the server's limit one for 413; the end of the
    connection before the end of the body raises one too.
    """

    __slots__ = (
        "_src",
        "content_length",
        "position",
        "chunked_input",
        "_chunk_left",
        "_need_crlf",
        "_done",
        "_continue",
        "_error",
    )

    def __init__(
        self,
        rfile: Any,
        content_length: int | None,
        socket: Any = None,
        chunked_input: bool = False,
    ) -> None:
        if not isinstance(rfile, _BodySource):
            rfile = _StreamSource(rfile)
        self._src = rfile
        self.content_length = content_length or 0
        self.position = 0
        self.chunked_input = chunked_input
        self._chunk_left = 0
        self._need_crlf = False
        self._done = False
        self._continue = socket
        self._error = None

    # -- low level -----------------------------------------------------------------------

    def _fail(self, exc_class, message):
        ex = exc_class(message)
        self._error = ex
        raise ex

    def _recv(self, n):
        try:
            data = self._src._recv_body(n)
        except OSError as ex:
            self._error = ex
            raise
        if not data:
            self._fail(
                _InvalidClientInput,
                "unexpected end of file while reading request body at position %d"
                % (self.position,),
            )
        return data

    def _fill(self):
        # Append freshly received bytes to what is buffered.
        data = self._recv(65536)
        src = self._src
        buf = src._rbuf
        pos = src._rpos
        src._rbuf = buf[pos:] + data if pos < len(buf) else data
        src._rpos = 0

    def _send_continue(self):
        sock = self._continue
        self._continue = None
        if getattr(self._src, "headers_sent", False):
            return  # the final response has begun: too late for an interim one
        try:
            sock.sendall(_CONTINUE_RESPONSE)
        except OSError as ex:
            self._error = ex
            raise

    def _complete(self):
        if self.chunked_input:
            return self._done
        return self.position >= self.content_length

    def _body_buffered(self):
        # True if the rest of a Content-Length body has already been received
        # (a client sending it without waiting for 100 Continue).
        if self.chunked_input:
            return False
        src = self._src
        return self.content_length - self.position <= len(src._rbuf) - src._rpos

    def _discard(self, limit):
        """Read and drop at most *limit* bytes of body; True if the body is then fully read."""
        if self._complete():
            return True
        if self._error is not None:
            return False  # broken stream
        if self._continue is not None:
            if not self._body_buffered():
                # The client was never told to send the body: it may or may not.
                return False
            self._continue = None  # it sent it anyway: drop it, no interim response
        try:
            while limit > 0:
                data = self.read(min(limit, 65536))
                if not data:
                    break
                limit -= len(data)
        except Exception:  # any failure: the connection is not reusable
            return False
        return self._complete()

    # -- chunked framing -----------------------------------------------------------------

    def _next_chunk(self):
        # At a chunk boundary: consume the CRLF after the previous chunk's data
        # and the next size line.  False once the last chunk (and trailers) are read.
        src = self._src
        if self._need_crlf:
            while len(src._rbuf) - src._rpos < 2:
                self._fill()
            pos = src._rpos
            if src._rbuf[pos : pos + 2] != b"\r\n":
                self._fail(_InvalidClientInput, "chunk data not followed by CRLF")
            src._rpos = pos + 2
            self._need_crlf = False
        max_body, max_line, max_trailers = src._input_limits
        while True:
            buf = src._rbuf
            pos = src._rpos
            if pos < len(buf):
                line = buf[pos : pos + max_line + 2]
                try:
                    parsed = parse_chunk_size(line)
                except HttpParseError:
                    self._fail(_InvalidClientInput, "invalid chunk size line")
                if parsed is not None:
                    break
                if len(line) > max_line:
                    self._fail(_InvalidClientInput, "chunk size line too long")
            self._fill()
        line_length, size = parsed
        if buf[pos] not in _HEX_DIGITS:
            self._fail(_InvalidClientInput, "invalid chunk size line")
        src._rpos = pos + line_length
        if size == 0:
            self._read_trailers(max_trailers, max_line)
            self._done = True
            return False
        if max_body is not None and self.position + size > max_body:
            self._fail(_BodyTooLarge, "request body larger than %d bytes" % (max_body,))
        self._chunk_left = size
        self._need_crlf = True
        return True

    def _read_trailers(self, max_size, max_line):
        # Trailer fields are checked for syntax and dropped (as gevent does).
        # Each line is limited as a request line is (gevent's limit), the
        # whole block as a request head is.
        src = self._src
        total = 0
        while True:
            buf = src._rbuf
            pos = src._rpos
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if len(buf) - pos > max_size - total:
                    self._fail(_InvalidClientInput, "chunked trailers too large")
                if len(buf) - pos > max_line:
                    self._fail(_InvalidClientInput, "chunked trailer line too long")
                self._fill()
                continue
            if end - pos > max_line:
                self._fail(_InvalidClientInput, "chunked trailer line too long")
            src._rpos = end + 2
            if end == pos:
                return
            total += end + 2 - pos
            if total > max_size:
                self._fail(_InvalidClientInput, "chunked trailers too large")
            if not _TRAILER_LINE.match(buf, pos, end):
                self._fail(_InvalidClientInput, "invalid chunked trailer")

    def _chunked_read(self, length, readline):
        if self._done or length == 0:
            return b""
        if self._continue is not None:
            self._send_continue()
        src = self._src
        # One piece is returned as it is (the usual case); more are copied into
        # one bytearray.  Not a list of pieces: a body sent in tiny chunks would
        # cost a bytes object (~40 bytes) per chunk, dozens of times its size.
        first = None
        out = None
        have = 0
        while True:
            left = self._chunk_left
            if left == 0:
                if not self._next_chunk():
                    break
                left = self._chunk_left
            buf = src._rbuf
            pos = src._rpos
            avail = len(buf) - pos
            if avail <= 0:
                buf = src._rbuf = self._recv(65536)
                pos = 0
                avail = len(buf)
            n = avail if avail < left else left
            if length is not None and n > length - have:
                n = length - have
            end = pos + n
            if readline:
                newline = buf.find(b"\n", pos, end)
                if newline >= 0:
                    end = newline + 1
                    n = end - pos
            if out is not None:
                out += buf[pos:end]
            elif first is None:
                first = buf[pos:end]
            else:
                out = bytearray(first)
                first = None
                out += buf[pos:end]
            src._rpos = end
            have += n
            self._chunk_left = left - n
            self.position += n
            if (readline and buf[end - 1] == 10) or (length is not None and have >= length):
                break
        if out is not None:
            return bytes(out)
        return b"" if first is None else first

    # -- the file interface ------------------------------------------------------------

    def read(self, length: int | None = None) -> bytes:
        """Up to *length* bytes (all the rest if None or negative); b'' at the end."""
        if self.chunked_input:
            return self._chunked_read(None if length is None or length < 0 else length, False)
        left = self.content_length - self.position
        if length is None or length < 0 or length > left:
            length = left
        if length <= 0:
            return b""
        if self._continue is not None:
            self._send_continue()
        src = self._src
        buf = src._rbuf
        pos = src._rpos
        avail = len(buf) - pos
        if avail >= length:
            end = pos + length
            src._rpos = end
            self.position += length
            return buf[pos:end]
        parts = [buf[pos:]] if avail > 0 else []
        have = avail if avail > 0 else 0
        src._rbuf = b""
        src._rpos = 0
        try:
            while have < length:
                # Never ask for more than the body: nothing past it is consumed.
                data = self._recv(min(length - have, 262144))
                parts.append(data)
                have += len(data)
        finally:
            self.position += have
        return b"".join(parts)

    def readline(self, size: int | None = None) -> bytes:
        """One line (up to and including b'\\n'), at most *size* bytes; b'' at the end."""
        if self.chunked_input:
            return self._chunked_read(None if size is None or size < 0 else size, True)
        left = self.content_length - self.position
        limit = left if size is None or size < 0 or size > left else size
        if limit <= 0:
            return b""
        if self._continue is not None:
            self._send_continue()
        src = self._src
        buf = src._rbuf
        pos = src._rpos
        avail = len(buf) - pos
        if avail > 0:
            end = pos + limit if avail > limit else len(buf)
            newline = buf.find(b"\n", pos, end)
            if newline >= 0 or avail >= limit:
                if newline >= 0:
                    end = newline + 1
                src._rpos = end
                self.position += end - pos
                return buf[pos:end]
            parts = [buf[pos:]]
            have = avail
        else:
            parts = []
            have = 0
        src._rbuf = b""
        src._rpos = 0
        try:
            while have < limit:
                data = self._recv(min(limit - have, 65536))
                newline = data.find(b"\n")
                if newline >= 0:
                    cut = newline + 1
                    if cut < len(data):
                        # The rest is still body (we never read past it): keep it.
                        src._rbuf = data
                        src._rpos = cut
                        data = data[:cut]
                    parts.append(data)
                    have += cut
                    break
                parts.append(data)
                have += len(data)
        finally:
            self.position += have
        return b"".join(parts)

    def readlines(self, hint: int | None = None) -> list[bytes]:
        """All remaining lines (stopping once *hint* bytes were read, if given)."""
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Input:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    next = __next__
