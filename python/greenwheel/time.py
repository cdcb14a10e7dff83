"""The cooperative :func:`sleep` as a :mod:`time` replacement (gevent.time).

``patch_time()`` installs :func:`sleep` as ``time.sleep``; everything else
in :mod:`time` is the standard module's.
"""

import time as __time__

# ``X as X``: an explicit re-export for type checkers (__all__ is computed below).
from ._hub import sleep as sleep
from ._typecheck import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from typing import Any

    # The standard module's names, copied in below, are not visible to a
    # type checker: they type as Any rather than as missing.
    def __getattr__(name: str) -> Any: ...


__target__ = "time"
__implements__ = ["sleep"]

__imports__ = []
for _name in dir(__time__):
    if _name.startswith("_") or _name in __implements__:
        continue
    globals()[_name] = getattr(__time__, _name)
    __imports__.append(_name)
del _name

__all__ = __implements__ + __imports__
