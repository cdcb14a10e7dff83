"""Cooperative sockets (gevent.socket): the standard library interface, where
blocking calls block only the calling greenlet.

Everything the standard :mod:`socket` module exports is available here;
:class:`socket`, the connection helpers and the name-resolution functions are
greenwheel's own (see :mod:`greenwheel._socket`), and :func:`wait_read`,
:func:`wait_write`, :func:`wait_readwrite`, :func:`wait` and
:func:`cancel_wait` are extensions.
"""

import socket as __socket__
from types import ModuleType as _ModuleType

# ``X as X``: explicit re-exports for type checkers (__all__ is computed below).
from ._socket import SocketType as SocketType
from ._socket import cancel_wait as cancel_wait
from ._socket import cancel_wait_ex as cancel_wait_ex
from ._socket import create_connection as create_connection
from ._socket import create_server as create_server
from ._socket import fromfd as fromfd
from ._socket import getaddrinfo as getaddrinfo
from ._socket import getfqdn as getfqdn
from ._socket import gethostbyaddr as gethostbyaddr
from ._socket import gethostbyname as gethostbyname
from ._socket import gethostbyname_ex as gethostbyname_ex
from ._socket import getnameinfo as getnameinfo
from ._socket import socket as socket
from ._socket import socketpair as socketpair
from ._socket import wait as wait
from ._socket import wait_read as wait_read
from ._socket import wait_readwrite as wait_readwrite
from ._socket import wait_write as wait_write
from ._typecheck import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from typing import Any

    # The standard module's names, copied in below, are not visible to a
    # type checker: they type as Any rather than as missing.
    def __getattr__(name: str) -> Any: ...


#: Names greenwheel implements itself rather than re-exporting.
__implements__ = [
    "socket",
    "SocketType",
    "create_connection",
    "create_server",
    "socketpair",
    "fromfd",
    "getaddrinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getnameinfo",
    "getfqdn",
]
#: Names that exist only in greenwheel.
__extensions__ = [
    "wait",
    "wait_read",
    "wait_write",
    "wait_readwrite",
    "cancel_wait",
    "cancel_wait_ex",
]

# Re-export the rest of the standard module: constants, exceptions
# (error, timeout, herror, gaierror), and the helpers that do not block;
# EBADF (the errno cancel_wait_ex carries) is the standard module's too.
__imports__ = []
for _name in list(__socket__.__all__) + ["SocketIO", "errorTab", "CAPI", "EBADF"]:
    if (
        _name in __implements__
        or _name in __extensions__
        or _name in __imports__
        or not hasattr(__socket__, _name)
    ):
        continue
    globals()[_name] = getattr(__socket__, _name)
    __imports__.append(_name)

# The rest of the standard module's namespace (AddressInfo, MsgFlag, EAGAIN...)
# is reachable here too, without being exported.
for _name in dir(__socket__):
    _value = getattr(__socket__, _name)
    if not _name.startswith("_") and _name not in globals() and not isinstance(_value, _ModuleType):
        globals()[_name] = _value
del _name, _value

__all__ = __implements__ + __extensions__ + __imports__
