"""Cooperative high-level I/O multiplexing (gevent.selectors).

:class:`GeventSelector` (also :data:`DefaultSelector`) has the interface of
the standard :mod:`selectors` classes but blocks only the calling greenlet.
The rest of the standard module (``SelectorKey``, ``EVENT_READ``,
``BaseSelector``...) is re-exported unchanged.
"""

import selectors as __selectors__
from types import ModuleType as _ModuleType

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

# The rest of the standard module's namespace (ABCMeta, Mapping, namedtuple...:
# what it imports for itself) is reachable here too, without being exported.
for _name in dir(__selectors__):
    _value = getattr(__selectors__, _name)
    if not _name.startswith("_") and _name not in globals() and not isinstance(_value, _ModuleType):
        globals()[_name] = _value
del _name, _value

__all__ = __implements__ + __extensions__ + __imports__
