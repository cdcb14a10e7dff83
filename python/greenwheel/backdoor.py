"""An interactive Python console over TCP for a live process (gevent.backdoor)."""

from ._backdoor import BackdoorServer

__all__ = ["BackdoorServer"]
