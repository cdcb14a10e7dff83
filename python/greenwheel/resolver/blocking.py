"""The blocking resolver (gevent.resolver.blocking): the C library in the calling thread."""

from .._resolver import BlockingResolver as Resolver

__all__ = ["Resolver"]
