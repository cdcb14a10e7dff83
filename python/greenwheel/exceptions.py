"""Exceptions raised by greenwheel (gevent.exceptions)."""

from ._exceptions import (
    BlockingSwitchOutError,
    ConcurrentObjectUseError,
    HubDestroyed,
    InvalidSwitchError,
    InvalidThreadUseError,
    LinkedCompleted,
    LinkedExited,
    LinkedFailed,
    LinkedKilled,
    LoopExit,
)

__all__ = [
    "BlockingSwitchOutError",
    "ConcurrentObjectUseError",
    "HubDestroyed",
    "InvalidSwitchError",
    "InvalidThreadUseError",
    "LinkedCompleted",
    "LinkedExited",
    "LinkedFailed",
    "LinkedKilled",
    "LoopExit",
]
