"""Cooperative high-level I/O multiplexing (gevent.selectors).

:class:`GeventSelector` (also :data:`DefaultSelector`) has the interface of
the standard :mod:`selectors` classes but blocks only the calling greenlet.
The rest of the standard module (``SelectorKey``, ``EVENT_READ``,
``BaseSelector``...) is re-exported unchanged.
"""

import selectors as __selectors__

from ._selectors import DefaultSelector, GeventSelector  # noqa: F401 - re-exported

__implements__ = ["DefaultSelector"]
__extensions__ = ["GeventSelector"]

__imports__ = []
for _name in (
    "BaseSelector",
    "SelectorKey",
    "EVENT_READ",
    "EVENT_WRITE",
    "SelectSelector",
    "PollSelector",
    "EpollSelector",
    "DevpollSelector",
    "KqueueSelector",
):
    if hasattr(__selectors__, _name):
        globals()[_name] = getattr(__selectors__, _name)
        __imports__.append(_name)
del _name

__all__ = __implements__ + __extensions__ + __imports__
