"""The base class of the servers (gevent.baseserver)."""

from ._server import BaseServer, parse_address

__all__ = ["BaseServer", "parse_address"]
