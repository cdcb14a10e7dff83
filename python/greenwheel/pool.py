"""Groups and size-limited pools of greenlets (gevent.pool)."""

from ._pool import Group, IMap, IMapUnordered, Pool, PoolFull

__all__ = ["Group", "IMap", "IMapUnordered", "Pool", "PoolFull"]
