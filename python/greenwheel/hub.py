"""The per-thread hub and the low-level blocking primitives (gevent.hub)."""

from ._exceptions import LoopExit
from ._hub import (
    GreenletExit,
    Hub,
    Waiter,
    _get_hub,  # noqa: F401 - gevent.hub._get_hub, used by ported test helpers
    get_hub,
    get_hub_class,
    getcurrent,
    idle,
    kill,
    reinit,
    set_default_hub_class,
    set_hub,
    sleep,
    spawn_raw,
)
from ._sighandler import signal_handler as signal  # gevent's older name for it
from ._wait import iwait, wait

__all__ = [
    "GreenletExit",
    "Hub",
    "LoopExit",
    "Waiter",
    "get_hub",
    "get_hub_class",
    "set_default_hub_class",
    "set_hub",
    "getcurrent",
    "idle",
    "iwait",
    "kill",
    "reinit",
    "signal",
    "sleep",
    "spawn_raw",
    "wait",
]
