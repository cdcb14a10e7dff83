"""Greenlet-local storage (gevent.local)."""

from ._local import local

__all__ = ["local"]
