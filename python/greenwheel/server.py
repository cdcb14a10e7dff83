"""TCP/TLS and UDP servers (gevent.server): :class:`StreamServer` and
:class:`DatagramServer`; see :mod:`greenwheel._server`."""

from ._server import DatagramServer, StreamServer

__all__ = ["StreamServer", "DatagramServer"]
