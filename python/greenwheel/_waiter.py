"""The Waiter under gevent's module name (``gevent._waiter``).

greenwheel keeps :class:`Waiter` beside the hub it serves, in
:mod:`greenwheel._hub`, and :class:`MultipleWaiter` beside :func:`iwait`, the
one user of it, in :mod:`greenwheel._wait`; code written against gevent's
layout (``from gevent._waiter import Waiter, MultipleWaiter``) gets the very
same classes here.  :class:`MultipleWaiter` queues every value switched to it
instead of keeping only the last.
"""

from ._hub import Waiter
from ._wait import _MultipleWaiter as MultipleWaiter  # noqa: F401 - importable by name, as in gevent

__all__ = ["Waiter"]
