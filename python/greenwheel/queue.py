"""Synchronised queues for greenlets (gevent.queue).

:class:`Queue` is joinable (``task_done``/``join``), :class:`JoinableQueue`
an alias; :class:`SimpleQueue` has no task accounting; :class:`Channel` is
a rendezvous.  :class:`Empty` and :class:`Full` are the standard library's
:class:`queue.Empty` and :class:`queue.Full`.
"""

import queue as __queue__

# ``X as X``: an explicit re-export for type checkers (__all__ is computed below).
from ._queue import Channel as Channel
from ._queue import Empty as Empty
from ._queue import Full as Full
from ._queue import JoinableQueue as JoinableQueue
from ._queue import LifoQueue as LifoQueue
from ._queue import PriorityQueue as PriorityQueue
from ._queue import Queue as Queue
from ._queue import ShutDown as ShutDown
from ._queue import SimpleQueue as SimpleQueue
from ._queue import UnboundQueue as UnboundQueue

#: greenwheel's classes in place of the standard library's.
__implements__ = ["Queue", "PriorityQueue", "LifoQueue", "SimpleQueue"]
#: What the standard module does not have.
__extensions__ = ["JoinableQueue", "Channel", "UnboundQueue"]
#: The standard library's own objects.
__imports__ = ["Empty", "Full"]
# queue.ShutDown is new in 3.13; before that it is greenwheel's own.
if getattr(__queue__, "ShutDown", None) is ShutDown:
    __imports__.append("ShutDown")
else:
    __extensions__.append("ShutDown")

__all__ = __implements__ + __extensions__ + __imports__
