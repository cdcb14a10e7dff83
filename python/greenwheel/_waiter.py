"""The Waiter under gevent's module name (``gevent._waiter``).

greenwheel keeps :class:`Waiter` beside the hub it serves, in
:mod:`greenwheel._hub`; code written against gevent's layout
(``from gevent._waiter import Waiter, MultipleWaiter``) gets the very same
classes here.  :class:`MultipleWaiter` is the Waiter that :func:`iwait` uses:
it queues every value switched to it instead of keeping only the last.
"""

from ._hub import Waiter
from ._hub import _MultipleWaiter as MultipleWaiter  # noqa: F401 - importable by name, as in gevent

__all__ = ["Waiter"]
