"""A fast, hardened WSGI server: the implementation behind :mod:`greenwheel.pywsgi`.

Layout
------
:class:`WSGIServer` is a :class:`~greenwheel.server.StreamServer`; each
accepted connection gets one :class:`WSGIHandler` (reused for every request
on that connection) whose :meth:`~WSGIHandler.handle` loops over
:meth:`~WSGIHandler.handle_one_request` until the connection is done.

This module only gathers the names; the code is split by concern, each
module's header stating its ground rules:

- ``_pywsgi_input``: ``wsgi.input`` (:class:`Input`: Content-Length and
  chunked bodies, ``100 Continue``) and the connection as a file;
- ``_pywsgi_environ``: the environ classes, the request's ``headers``
  message, the access and error logs;
- ``_pywsgi_handler``: :class:`WSGIHandler`, the HTTP/1.x conversation on one
  connection (request prologue, response framing, errors);
- ``_pywsgi_server``: :class:`WSGIServer`, its limits and base environ.

Request heads are parsed by ``greenwheel._core.request_environ`` (through
each connection's ``RequestParser``), which runs the Rust ``httparse`` crate: a strict (no obsolete line folding, no bare
CR, no whitespace before the colon, only HTTP/1.0 and 1.1), zero-copy,
SIMD-accelerated parser.  Chunk size lines go through
``greenwheel._core.parse_chunk_size`` (same crate).

The per-request path is kept short on purpose:

- one ``recv`` into a per-connection buffer (``_rbuf`` plus a read offset
  ``_rpos``; pipelined requests are parsed from it without another system
  call or copy);
- one call into Rust parses the head, applies the size limits, decides the
  body framing and builds the environ (a copy of a per-connection template:
  server base environ plus ``REMOTE_ADDR``/``REMOTE_PORT``), returned as a
  ``RequestHead`` record of named fields;
- ``start_response`` checks and encodes the status and headers in one more
  Rust call (``_core.response_head``, a ``ResponseHead`` record);
- one ``sendall`` carrying status line, headers and the body when the
  application returns a list (the usual case) or on the first write of a
  streamed body.  Together with ``TCP_NODELAY`` (set by StreamServer on
  accepted sockets) this avoids the Nagle / delayed-ACK stall that costs
  gevent's pywsgi ~40 ms per keep-alive request.

Limits (class attributes of :class:`WSGIServer`, also constructor keywords):
request line length (414), header block size (431), header count (431),
body size (413), a header timeout and an idle keep-alive timeout (the
connection is closed), and an I/O timeout for body reads and response
writes.  Malformed requests, ambiguous framing (Content-Length together with
Transfer-Encoding, duplicate or invalid Content-Length, transfer codings
other than ``chunked``) and bad chunked bodies get 400 and the connection is
closed.  Connections closed by the server while the client may still be
sending are closed "lingering" (shutdown for writing, then drain for a
bounded time) so that the client sees the error response instead of a reset.
"""

# Every name the single-module implementation had stays importable from
# here (gevent's tests and ours use some private ones).
from ._pywsgi_environ import (  # noqa: F401 - re-exported
    _MONTHNAME,
    _WEEKDAYNAME,
    Environ,
    LoggingLogAdapter,
    SecureEnviron,
    WSGISecureEnviron,
    _AccessLog,
    _headers_from_file,
    _log_time,
    _log_time_cache,
    _NoopLog,
    _OldMessage,
    format_date_time,
)
from ._pywsgi_handler import (  # noqa: F401 - re-exported
    _ERRORS,
    _REASONS,
    _SHUT_WR,
    WSGIHandler,
    _as_bytes,
    _error_response,
    _InvalidClientRequest,
    _timeout_error,
)
from ._pywsgi_input import (  # noqa: F401 - re-exported
    _CONTINUE_RESPONSE,
    _HEX_DIGITS,
    _TRAILER_LINE,
    MAX_REQUEST_LINE,
    Input,
    _BodyTooLarge,
    _ConnectionFile,
    _InvalidClientInput,
    _StreamSource,
)
from ._pywsgi_server import _DEFAULT, WSGIServer, _version  # noqa: F401 - re-exported

__all__ = [
    "WSGIServer",
    "WSGIHandler",
    "Input",
    "LoggingLogAdapter",
    "Environ",
    "SecureEnviron",
    "WSGISecureEnviron",
]
