"""The builtins, as gevent.builtins has them.

gevent keeps a green ``__import__`` here for old Pythons; on Python 3 the
import system's per-module locks already keep greenlets importing the same
module from seeing it half-initialised, so (as in gevent on Python 3) nothing
is replaced: this module re-exports the standard :mod:`builtins`, for code
that imports ``gevent.builtins``.
"""

import builtins as __gbuiltins__

__target__ = "builtins"
# (Type comments, not annotations, in this module: an annotation would add
# ``__annotations__`` to a namespace that mirrors the standard module's.)
#: Nothing replaced on Python 3.
__implements__ = []  # type: list[str]
__extensions__ = []  # type: list[str]

__imports__ = []
for _name in dir(__gbuiltins__):
    if _name.startswith("__") and _name != "__import__":
        continue
    globals()[_name] = getattr(__gbuiltins__, _name)
    __imports__.append(_name)
del _name

__all__ = __implements__
