"""Context variables (gevent.contextvars).

On the Pythons greenwheel supports, the standard library's module already
gives every greenlet its own context (greenlet does that for each one it
starts), so this module is that module's API under gevent's name.
"""

from contextvars import Context, ContextVar, Token, copy_context

__all__ = ["Context", "ContextVar", "Token", "copy_context"]
#: The standard library's objects themselves (gevent's name for such a list).
__imports__ = list(__all__)
