"""Small integer idents for objects, under gevent's module name (``gevent._ident``).

:class:`IdentRegistry` is the registry behind ``Greenlet.minimal_ident``
(kept in :mod:`greenwheel._hub` with the hub that owns one): ``get_ident(obj)``
gives each live object the smallest integer not in use, and an object's ident
is free again once the object is gone (the registry holds only weak
references).
"""

from ._hub import _IdentRegistry as IdentRegistry

__all__ = ["IdentRegistry"]
