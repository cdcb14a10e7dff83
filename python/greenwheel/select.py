"""Cooperative waiting for I/O (gevent.select): :func:`select` and :class:`poll`
block only the calling greenlet.

The rest of the standard :mod:`select` module (``error``, the ``POLL*``
constants...) is re-exported unchanged; note that ``epoll``/``kqueue``
objects from there are the blocking originals.
"""

import select as __select__

from ._select import get_fileno, poll, select  # noqa: F401 - re-exported

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
