"""Name resolvers (gevent.resolver.thread and gevent.resolver.blocking).

``greenwheel.socket.getaddrinfo`` and its siblings ask the current hub's
``resolver``.  Two are provided:

- :class:`ThreadResolver` (the default): the C library's resolver runs in
  the hub's thread pool, so only the calling greenlet waits; look-ups that
  need no I/O (numeric addresses and ports) are answered directly.
- :class:`BlockingResolver`: calls the C library in the calling thread,
  blocking the whole loop (for programs that want no threads at all).

``greenwheel.config.resolver`` (``GEVENT_RESOLVER``) picks the class for new
hubs: ``"thread"`` or ``"block"``, ``"dnspython"`` (DNS spoken over greenwheel
sockets, :mod:`greenwheel.resolver.dnspython`; needs the dnspython package),
or a class.  gevent's ``"ares"`` is not available here, nor ``"dnspython"``
without dnspython: they fall back to the thread resolver with a
``RuntimeWarning``.

Ground rules: a resolver never caches, and it calls the standard library's
functions as they were before ``greenwheel.monkey`` (calling the patched
ones from a worker thread would recurse).
"""

from __future__ import annotations

from . import _socket as _gs

__all__ = ["BlockingResolver", "ThreadResolver"]


class ThreadResolver:
    """ThreadResolver(hub=None): resolves in the hub's thread pool."""

    def __init__(self, hub=None):
        if hub is None:
            from ._hub import get_hub

            hub = get_hub()
        self.hub = hub

    @property
    def pool(self):
        """The thread pool the look-ups run in (the hub's)."""
        return self.hub.threadpool

    def _call(self, name, *args):
        return self.hub.threadpool.apply(_gs._stdlib(name), args)

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        if (
            (host is None or _gs._is_ip_literal(host))
            and (
                port is None or isinstance(port, int) or (isinstance(port, str) and port.isdigit())
            )
            and not flags & getattr(_gs._socket, "AI_CANONNAME", 0)
        ):
            # Nothing to look up: the C library answers without I/O.
            return _gs._stdlib("getaddrinfo")(host, port, family, type, proto, flags)
        return self._call("getaddrinfo", host, port, family, type, proto, flags)

    def gethostbyname(self, hostname):
        if _gs._is_ip_literal(hostname, (_gs.AF_INET,)):
            return _gs._stdlib("gethostbyname")(hostname)
        return self._call("gethostbyname", hostname)

    def gethostbyname_ex(self, hostname):
        return self._call("gethostbyname_ex", hostname)

    def gethostbyaddr(self, ip_address):
        return self._call("gethostbyaddr", ip_address)

    def getnameinfo(self, sockaddr, flags):
        numeric = getattr(_gs._socket, "NI_NUMERICHOST", 0) | getattr(
            _gs._socket, "NI_NUMERICSERV", 0
        )
        if numeric and flags & numeric == numeric:
            return _gs._stdlib("getnameinfo")(sockaddr, flags)
        return self._call("getnameinfo", sockaddr, flags)

    def close(self):
        """Nothing to release (the pool is the hub's)."""

    def __repr__(self):
        return "<%s at %#x hub=%r>" % (type(self).__name__, id(self), self.hub)


class BlockingResolver:
    """BlockingResolver(hub=None): the C library's resolver, in the calling thread."""

    def __init__(self, hub=None):
        self.hub = hub

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        return _gs._stdlib("getaddrinfo")(host, port, family, type, proto, flags)

    def gethostbyname(self, hostname):
        return _gs._stdlib("gethostbyname")(hostname)

    def gethostbyname_ex(self, hostname):
        return _gs._stdlib("gethostbyname_ex")(hostname)

    def gethostbyaddr(self, ip_address):
        return _gs._stdlib("gethostbyaddr")(ip_address)

    def getnameinfo(self, sockaddr, flags):
        return _gs._stdlib("getnameinfo")(sockaddr, flags)

    def close(self):
        """Nothing to release."""

    def __repr__(self):
        return "<%s at %#x>" % (type(self).__name__, id(self))
