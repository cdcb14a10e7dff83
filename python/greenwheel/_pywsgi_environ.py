"""The request as the application and the logs see it (for :mod:`greenwheel.pywsgi`).

- The environ classes: :class:`Environ`, :class:`SecureEnviron` (a masked
  repr, for error reports) and :class:`WSGISecureEnviron`.  The environ itself
  is built in Rust (``_core.request_environ``: headers, request keys, a copy
  of the connection's template) and completed by ``WSGIHandler.get_environ``.
- The ``headers`` message of a request: :class:`_OldMessage`
  (``http.client.HTTPMessage`` with gevent's extras), built on first use.
- The logs: :class:`_AccessLog`, the handler's logging methods (the
  access-log line in gevent's format, the error log), and what the server
  writes to (:class:`LoggingLogAdapter` over a ``logging.Logger``,
  :class:`_NoopLog` for a log turned off).
- :func:`format_date_time`, gevent's HTTP date helper.

Ground rules:

- No I/O here but writes to the log objects the server was given.
- Logging never raises into the request: a failing format or write is
  reported through ``_print_unexpected_exc`` and the request goes on.
- A log turned off costs nothing per request: ``log_request`` returns at once
  for :class:`_NoopLog`.
"""

from __future__ import annotations

import time
import traceback
from datetime import datetime
from http.client import HTTPMessage as _HTTPMessage
from http.client import LineTooLong as _LineTooLong
from http.client import parse_headers as _parse_headers

from ._typecheck import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

_WEEKDAYNAME = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHNAME = (
    None,
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def format_date_time(timestamp: float) -> bytes:
    """The HTTP date (RFC 9110 IMF-fixdate) for *timestamp*, as bytes."""
    year, month, day, hh, mm, ss, wd, _y, _z = time.gmtime(timestamp)
    return (
        "%s, %02d %3s %4d %02d:%02d:%02d GMT"
        % (_WEEKDAYNAME[wd], day, _MONTHNAME[month], year, hh, mm, ss)
    ).encode("latin-1")


# The access-log timestamp changes once a second: cache it.  (The Date header
# has its own cache, in Rust: see ``_core.ResponseHead.response_bytes``.)
_log_time_cache = [-1, ""]


def _log_time():
    now = int(time.time())
    if now != _log_time_cache[0]:
        _log_time_cache[1] = str(datetime.fromtimestamp(now))
        _log_time_cache[0] = now
    return _log_time_cache[1]


# --- request headers -----------------------------------------------------------------


class _OldMessage(_HTTPMessage):
    """``http.client.HTTPMessage`` with the extras of gevent's request headers."""

    def getheader(self, name, default=None):
        return self.get(name, default)

    @property
    def headers(self):
        return ["%s: %s\r\n" % (name, value) for name, value in self.items()]

    @property
    def typeheader(self):
        return self.get("content-type")


def _headers_from_file(fp, *args):
    # gevent's MessageClass(fp, seekable): parse a header block from *fp*.
    try:
        return _parse_headers(fp, _class=_OldMessage)
    except _LineTooLong:
        msg = _OldMessage()
        msg.status = "Line too long"
        return msg


# --- environ classes -----------------------------------------------------------------


class Environ(dict):  # type: ignore[type-arg]  # (dict[str, Any] would subscript at run time)
    """A dict for WSGI environs whose copies keep their class (provisional, as in gevent)."""

    __slots__ = ()

    def copy(self):
        return self.__class__(self)

    def iteritems(self):
        return self.items()

    def __reduce_ex__(self, proto):
        return (dict, (), None, None, iter(self.items()))


class SecureEnviron(Environ):
    """An environ whose repr masks values (keys in *whitelist_keys* are shown).

    ``secure_repr``, ``whitelist_keys`` and ``print_masked_keys`` may be set
    per instance; the class defaults are the ``default_*`` attributes.
    """

    default_secure_repr = True
    default_whitelist_keys: tuple[str, ...] = ()
    default_print_masked_keys = True

    __slots__ = ("secure_repr", "whitelist_keys", "print_masked_keys")

    def __getattr__(self, name):
        if name in SecureEnviron.__slots__:
            return getattr(type(self), "default_" + name)
        raise AttributeError(name)

    def __repr__(self):
        if not self.secure_repr:
            return Environ.__repr__(self)
        whitelist = self.whitelist_keys
        if not whitelist:
            return "<pywsgi.SecureEnviron dict (keys: %d) at %s>" % (len(self), id(self))
        print_masked = self.print_masked_keys
        shown = {
            key: (value if key in whitelist else "<MASKED>")
            for key, value in self.items()
            if key in whitelist or print_masked
        }
        text = repr(shown)
        if not print_masked and len(shown) != len(self):
            text = text[:-1] + ", (hidden keys: %d)}" % (len(self) - len(shown))
        return text

    __str__ = __repr__


class WSGISecureEnviron(SecureEnviron):
    """A :class:`SecureEnviron` showing only REMOTE_ADDR, REMOTE_PORT and HTTP_HOST."""

    default_whitelist_keys = ("REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST")
    default_print_masked_keys = False


# --- logs ----------------------------------------------------------------------------


class _NoopLog:
    # What log=None / error_log=None become: a file that discards everything.
    def write(self, *args, **kwargs):
        return None

    def flush(self):
        return None

    def writelines(self, *args, **kwargs):
        return None


class LoggingLogAdapter:
    """A file-like adapter writing to a :class:`logging.Logger` at *level*.

    Other attributes are those of the logger.  Trailing newlines are
    stripped (the logging handlers add their own).
    """

    __slots__ = ("_logger", "_level")

    def __init__(self, logger: Any, level: int = 20) -> None:
        object.__setattr__(self, "_logger", logger)
        object.__setattr__(self, "_level", level)

    def write(self, msg: str) -> None:
        if msg and msg.endswith("\n"):
            msg = msg[:-1]
        self._logger.log(self._level, msg)

    def flush(self) -> None:
        """Nothing to flush."""

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name):
        return getattr(self._logger, name)

    def __setattr__(self, name, value):
        if name in LoggingLogAdapter.__slots__:
            object.__setattr__(self, name, value)
        else:
            setattr(self._logger, name, value)

    def __delattr__(self, name):
        delattr(self._logger, name)


class _AccessLog:
    """The handler's logging: the access log and the error log.

    A mixin of :class:`~greenwheel._pywsgi_handler.WSGIHandler`; it reads the
    handler's ``server`` (``log``, ``error_log``), ``client_address``, the
    request line parts (``command``, ``path``, ``request_version``,
    ``_requestline``) and the response's ``status``/``_orig_status``,
    ``response_length``, ``time_start`` and ``time_finish``.
    """

    __slots__ = ()

    def _log_client_error(self, code, message):
        self.log_error("Invalid request from %s (%d): %s", self._format_client(), code, message)

    #: Called (in an ``except`` block) when reporting an error itself fails:
    #: prints that failure's traceback.  A subclass may make it raise or log.
    _print_unexpected_exc = staticmethod(traceback.print_exc)

    def log_error(self, msg, *args):
        """Write a line to the server's error log."""
        if args:
            try:
                message = msg % args
            except Exception:  # never fail while reporting
                self._print_unexpected_exc()
                message = "%r %r" % (msg, args)
        else:
            message = msg
        try:
            self.server.error_log.write(message + "\n")
        except Exception:  # never fail while reporting
            self._print_unexpected_exc()

    # -- the access log --------------------------------------------------------------------

    def _format_client(self):
        address = self.client_address
        if isinstance(address, tuple) and address:
            return "%s:%s" % (address[0], address[1]) if len(address) >= 2 else str(address[0])
        return str(address or "-")

    def _format_requestline(self):
        if self._requestline is not None:
            return self._requestline
        if self.command is None:
            return ""
        return "%s %s %s" % (self.command, self.path, self.request_version)

    @property
    def requestline(self):
        """The request line ('GET /path HTTP/1.1'), rebuilt from the parsed parts."""
        return self._format_requestline() or None

    @requestline.setter
    def requestline(self, value):
        self._requestline = value

    def log_request(self):
        """Write the access-log line for the request (unless logging is off)."""
        log = self.server.log
        if log is None or type(log) is _NoopLog:
            return
        log.write(self.format_request() + "\n")

    def format_request(self):
        """The access-log line (gevent's format: client, time, request line, status, length, seconds)."""
        length = self.response_length or "-"
        if self.time_finish:
            delta = "%.6f" % (self.time_finish - self.time_start)
        else:
            delta = "-"
        address = self.client_address
        client = address[0] if isinstance(address, tuple) else address
        status = self._orig_status or self.status or "000"
        if isinstance(status, bytes):
            status = status.decode("latin-1")
        return '%s - - [%s] "%s" %s %s %s' % (
            client or "-",
            _log_time(),
            self._format_requestline(),
            status.split()[0],
            length,
            delta,
        )
