"""The cooperative :func:`sleep` as a :mod:`time` replacement (gevent.time).

``patch_time()`` installs :func:`sleep` as ``time.sleep``; everything else
in :mod:`time` is the standard module's.
"""

import time as __time__

from ._hub import sleep  # noqa: F401 - in __implements__

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
