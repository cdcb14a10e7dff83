"""One greenlet trace function per OS thread, shared by greenwheel's users of it.

greenlet keeps a single trace function per thread.  The blocking monitor,
``util.assert_switches`` and the backdoor each need one; chaining them by
hand ("call the previous one, restore it when done") breaks as soon as they
are removed in another order than they were added: restoring "the previous
one" drops whoever came after.  Here each thread gets one dispatcher that
calls the registered functions in the order they were added, then the
trace function that was installed before greenwheel's (a user's), if any.

Ground rules:
- :func:`add` and :func:`remove` run on any thread; the dispatcher is put in
  place (and taken out, once empty) only from its own thread, since
  ``greenlet.settrace`` acts on the calling thread.  An empty dispatcher
  left installed just forwards to the previous function.
- The function list is replaced, never mutated, so a dispatch in progress
  is not disturbed by an add or a remove.
"""

import greenlet

from ._threadpool import _original

__all__ = ["add", "remove"]

# The standard library's thread-local even after monkey-patching made
# threading.local greenlet-local: the trace function belongs to the thread.
_local = _original("threading", "local")()


class _Dispatcher:
    __slots__ = ("functions", "previous", "__weakref__")

    def __init__(self, previous):
        self.functions = ()
        self.previous = previous

    def __call__(self, event, args):
        for function in self.functions:
            function(event, args)
        previous = self.previous
        if previous is not None:
            previous(event, args)


def add(function):
    """Have ``function(event, args)`` called for the calling thread's switches.

    Returns the dispatcher to pass to :func:`remove`.
    """
    dispatcher = getattr(_local, "dispatcher", None)
    if dispatcher is None or greenlet.gettrace() is not dispatcher:
        # None yet, or someone replaced ours (it goes on running through
        # their chain, if they kept one): install a new one on top.
        dispatcher = _Dispatcher(None)
        dispatcher.previous = greenlet.settrace(dispatcher)
        _local.dispatcher = dispatcher
    dispatcher.functions = dispatcher.functions + (function,)
    return dispatcher


def remove(dispatcher, function):
    """Stop calling *function* (the very object given to :func:`add`: a bound
    method must be kept, not looked up again); uninstall the dispatcher once
    it is empty (own thread only)."""
    dispatcher.functions = tuple(f for f in dispatcher.functions if f is not function)
    if not dispatcher.functions and greenlet.gettrace() is dispatcher:
        greenlet.settrace(dispatcher.previous)
        if getattr(_local, "dispatcher", None) is dispatcher:
            _local.dispatcher = None
