"""The per-thread hub accessors under the names of gevent's ``gevent._hub_local``.

gevent keeps the thread's hub, its loop and the hub class in ``_hub_local``;
greenwheel keeps them in :mod:`greenwheel._hub`. These are the same
operations, for ported code and gevent's test support that import them by
gevent's private module name (through ``greenwheel.as_gevent``).
"""

from ._hub import (
    _get_hub_if_exists as get_hub_if_exists,
)
from ._hub import (
    get_hub,
    get_hub_class,
    set_default_hub_class,
    set_hub,
    set_loop,
)

get_hub_noargs = get_hub

__all__ = [
    "get_hub",
    "get_hub_class",
    "get_hub_if_exists",
    "get_hub_noargs",
    "set_default_hub_class",
    "set_hub",
    "set_loop",
]
