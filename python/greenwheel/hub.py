"""The per-thread hub and the low-level blocking primitives (gevent.hub)."""

from ._exceptions import LoopExit
from ._hub import (
    GreenletExit,
    Hub,
    Waiter,
    get_hub,
    getcurrent,
    idle,
    iwait,
    kill,
    reinit,
    sleep,
    spawn_raw,
    wait,
)

__all__ = [
    "GreenletExit",
    "Hub",
    "LoopExit",
    "Waiter",
    "get_hub",
    "getcurrent",
    "idle",
    "iwait",
    "kill",
    "reinit",
    "sleep",
    "spawn_raw",
    "wait",
]
