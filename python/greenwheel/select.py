"""Cooperative waiting for I/O (gevent.select): :func:`select` and :class:`poll`
block only the calling greenlet.

The rest of the standard :mod:`select` module (``error``, the ``POLL*``
constants...) is re-exported unchanged; note that ``epoll``/``kqueue``
objects from there are the blocking originals.
"""

import select as __select__

# ``X as X``: explicit re-exports for type checkers (__all__ is computed below).
from ._select import get_fileno as get_fileno
from ._select import poll as poll
from ._select import select as select
from ._typecheck import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from typing import Any

    # The standard module's names, copied in below, are not visible to a
    # type checker: they type as Any rather than as missing.
    def __getattr__(name: str) -> Any: ...


#: The standard select(), which greenwheel's asks before (and after) any
#: wait; replace it here to fake the kernel's answers in a test.
_original_select = __select__.select

__implements__ = ["select", "poll"]
__extensions__ = ["get_fileno"]

__imports__ = []
for _name in dir(__select__):
    if _name.startswith("_") or _name in __implements__:
        continue
    globals()[_name] = getattr(__select__, _name)
    __imports__.append(_name)
del _name

__all__ = __implements__ + __imports__
