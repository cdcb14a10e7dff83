"""``Group.imap`` / ``imap_unordered``'s iterators under gevent's module name
(``gevent._imap``).

They are greenwheel's own, from :mod:`greenwheel._pool`: each is a greenlet
that spawns the calls (bounded by the pool, and by ``maxsize`` results not
yet consumed) and yields the results in order (:class:`IMap`) or as they
finish (:class:`IMapUnordered`).
"""

from ._pool import IMap, IMapUnordered

__all__ = ["IMapUnordered", "IMap"]
