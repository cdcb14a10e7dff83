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
from ._sighandler import signal_handler as signal  # gevent's older name for it

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
    "signal",
    "sleep",
    "spawn_raw",
    "wait",
]
