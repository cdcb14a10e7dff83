"""Cooperative TLS (gevent.ssl): the standard :mod:`ssl` interface, where
handshakes, reads and writes block only the calling greenlet.

:class:`SSLContext`, :class:`SSLSocket`, :func:`wrap_socket`,
:func:`create_default_context` and :func:`get_server_certificate` are
greenwheel's own (see :mod:`greenwheel._ssl`); everything else (constants,
exceptions, ``SSLObject``, ``MemoryBIO``...) is the standard module's.
Use this module's :class:`SSLContext` (or :func:`create_default_context`):
a standard-library context's ``wrap_socket`` makes blocking sockets.
"""

import ssl as __ssl__
import types as _types

# ``X as X``: explicit re-exports for type checkers (__all__ is computed below).
from ._socket import create_connection as create_connection
from ._ssl import SSLContext as SSLContext
from ._ssl import SSLSocket as SSLSocket
from ._ssl import _create_unverified_context as _create_unverified_context
from ._ssl import create_default_context as create_default_context
from ._ssl import get_server_certificate as get_server_certificate
from ._ssl import wrap_socket as wrap_socket
from ._typecheck import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from typing import Any

    # The standard module's names, copied in below, are not visible to a
    # type checker: they type as Any rather than as missing.
    def __getattr__(name: str) -> Any: ...


__implements__ = [
    "SSLContext",
    "SSLSocket",
    "wrap_socket",
    "create_default_context",
    "get_server_certificate",
    "create_connection",
]

# Helpers the ssl module merely imports; not part of its interface.
_NOT_EXPORTED = {"namedtuple", "socket", "socket_error", "create_connection"}

__imports__ = []
for _name in dir(__ssl__):
    if _name.startswith("_") or _name in __implements__ or _name in _NOT_EXPORTED:
        continue
    _value = getattr(__ssl__, _name)
    if isinstance(_value, _types.ModuleType):
        continue
    globals()[_name] = _value
    __imports__.append(_name)
del _name, _value

# The helpers the standard module has in its namespace without exporting them,
# for code that reaches them through ssl (the green socket class, as after patching).
from collections import namedtuple  # noqa: E402, F401

from ._socket import socket  # noqa: E402, F401

socket_error = OSError

__all__ = __implements__ + __imports__
