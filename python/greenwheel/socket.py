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

from ._socket import (  # noqa: F401 - re-exported
    SocketType,
    cancel_wait,
    cancel_wait_ex,
    create_connection,
    create_server,
    fromfd,
    getaddrinfo,
    getfqdn,
    gethostbyaddr,
    gethostbyname,
    gethostbyname_ex,
    getnameinfo,
    socket,
    socketpair,
    wait,
    wait_read,
    wait_readwrite,
    wait_write,
)

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
