"""A WSGI server (gevent.pywsgi): :class:`WSGIServer` and :class:`WSGIHandler`.

HTTP/1.0 and 1.1 with keep-alive and pipelining, chunked requests and
responses, ``Expect: 100-continue``, TLS, access and error logs, and limits
against abusive clients.  Request heads are parsed in Rust (httparse).  See
:mod:`greenwheel._pywsgi` for the implementation notes.
"""

from ._pywsgi_environ import (  # noqa: F401 - re-exported
    Environ,
    LoggingLogAdapter,
    SecureEnviron,
    WSGISecureEnviron,
    _NoopLog,
    format_date_time,
)
from ._pywsgi_handler import WSGIHandler
from ._pywsgi_input import MAX_REQUEST_LINE, Input
from ._pywsgi_server import WSGIServer

__all__ = [
    "WSGIServer",
    "WSGIHandler",
    "Input",
    "LoggingLogAdapter",
    "Environ",
    "SecureEnviron",
    "WSGISecureEnviron",
    "format_date_time",
    "MAX_REQUEST_LINE",
]
