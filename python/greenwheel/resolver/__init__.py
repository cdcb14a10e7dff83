"""Name resolvers (gevent.resolver): :mod:`.thread` (the default), :mod:`.blocking`
and :mod:`.dnspython` (needs the dnspython package)."""

__all__ = []
