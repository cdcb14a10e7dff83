"""The thread-pool resolver (gevent.resolver.thread): the default."""

from .._resolver import ThreadResolver as Resolver

__all__ = ["Resolver"]
