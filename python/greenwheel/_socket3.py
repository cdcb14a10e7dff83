"""The cooperative socket module under gevent's implementation name (``gevent._socket3``).

gevent implements ``gevent.socket`` in ``gevent._socket3`` and re-exports it;
code that names the implementation module (``gevent._socket3.socket`` in an
``isinstance`` check, say) finds greenwheel's socket module's objects here:
the same classes and functions as :mod:`greenwheel.socket`.
"""

from . import socket as _public
from .socket import *  # noqa: F403 - the whole public module, under this name too

__all__ = list(_public.__all__)
