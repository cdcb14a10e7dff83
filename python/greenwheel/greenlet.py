"""The Greenlet class and helpers that operate on groups of greenlets (gevent.greenlet)."""

from ._exceptions import LinkedCompleted, LinkedExited, LinkedFailed, LinkedKilled
from ._greenlet import (
    Greenlet,
    joinall,
    killall,
    spawn,
    spawn_later,
    spawn_link,
    spawn_link_exception,
    spawn_link_value,
)
from ._hub import GreenletExit, getcurrent

__all__ = [
    "Greenlet",
    "GreenletExit",
    "LinkedCompleted",
    "LinkedExited",
    "LinkedFailed",
    "LinkedKilled",
    "getcurrent",
    "joinall",
    "killall",
    "spawn",
    "spawn_later",
    "spawn_link",
    "spawn_link_exception",
    "spawn_link_value",
]
