"""Synchronised queues for greenlets (gevent.queue).

:class:`Queue` is joinable (``task_done``/``join``), :class:`JoinableQueue`
an alias; :class:`SimpleQueue` has no task accounting; :class:`Channel` is
a rendezvous.  :class:`Empty` and :class:`Full` are the standard library's
:class:`queue.Empty` and :class:`queue.Full`.
"""

from ._queue import (
    Channel,
    Empty,
    Full,
    JoinableQueue,
    LifoQueue,
    PriorityQueue,
    Queue,
    ShutDown,
    SimpleQueue,
    UnboundQueue,
)

__all__ = [
    "Channel",
    "Empty",
    "Full",
    "JoinableQueue",
    "LifoQueue",
    "PriorityQueue",
    "Queue",
    "ShutDown",
    "SimpleQueue",
    "UnboundQueue",
]
