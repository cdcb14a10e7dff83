"""Name resolvers (gevent.resolver): :mod:`.thread` (the default) and :mod:`.blocking`."""

__all__ = []
