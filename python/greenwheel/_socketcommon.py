"""The socket helpers under gevent's module name (``gevent._socketcommon``).

gevent splits its socket module into ``_socketcommon`` (what every socket
implementation shares: the waits on a descriptor, cooperative name
resolution, the address resolution a ``connect``/``bind`` needs) and
``_socket3``.  greenwheel has one implementation, :mod:`greenwheel._socket`;
this module gives code that imports gevent's private names
(``from gevent._socketcommon import wait_read, cancel_wait_ex``) the same
objects, plus the standard socket module's constants, as gevent's does.
There is no ``__all__``: it is not meant for ``import *`` (nor is gevent's).
"""

import socket as __socket__

from ._socket import (  # noqa: F401 - re-exported under gevent's module name
    AF_INET,
    AF_INET6,
    _is_ip_literal,
    _resolve_addr,
    cancel_wait,
    cancel_wait_ex,
    getaddrinfo,
    getfqdn,
    gethostbyaddr,
    gethostbyname,
    gethostbyname_ex,
    getnameinfo,
    socket,
    wait,
    wait_read,
    wait_readwrite,
    wait_write,
)

#: The names of the standard module's constants copied here (gevent's name).
__imports__ = []
for _name in __socket__.__all__:
    _value = getattr(__socket__, _name, None)
    # The numeric and text constants (AF_*, SOCK_*, SO_*, EAI_*...), not the
    # functions and classes: those are the cooperative ones above.
    if isinstance(_value, (int, str)) and _name not in globals():
        globals()[_name] = _value
        __imports__.append(_name)
del _name, _value
