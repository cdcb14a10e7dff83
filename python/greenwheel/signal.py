"""Cooperative special cases of :mod:`signal` (gevent.signal).

:func:`signal` and :func:`getsignal` are the standard functions, except
for ``SIGCHLD``: greenwheel watches child processes through its own
``SIGCHLD`` handler (see :mod:`greenwheel._child`), so a handler installed
here for ``SIGCHLD`` is remembered and run (in a new greenlet, after
greenwheel has reaped the children it watches) instead of replacing
greenwheel's.  ``SIG_IGN`` is passed through (the kernel then reaps every
child and their exit statuses are lost, as without greenwheel).

``patch_signal()`` installs both in :mod:`signal`.  To run a function in a
greenlet when any signal arrives, see :func:`greenwheel.signal_handler`.
"""

import signal as __signal__

from . import _child

__target__ = "signal"
__implements__ = []
__extensions__ = []

_signal_signal = _child._real_signal
_signal_getsignal = _child._real_getsignal
_SIGCHLD = getattr(__signal__, "SIGCHLD", None)


def getsignal(signalnum):
    """``signal.getsignal``; for ``SIGCHLD`` the handler set through :func:`signal`."""
    if signalnum != _SIGCHLD:
        return _signal_getsignal(signalnum)
    return _child.get_child_handler()


def signal(signalnum, handler):
    """``signal.signal``; for ``SIGCHLD`` the handler runs alongside greenwheel's child watching."""
    if signalnum != _SIGCHLD:
        return _signal_signal(signalnum, handler)
    if handler not in (__signal__.SIG_IGN, __signal__.SIG_DFL) and not callable(handler):
        raise TypeError(
            "signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a callable object"
        )
    return _child.set_child_handler(handler)


if _SIGCHLD is not None:
    __implements__ += ["signal", "getsignal"]
else:  # pragma: no cover
    __extensions__ += ["signal", "getsignal"]

__imports__ = []
for _name in dir(__signal__):
    if _name.startswith("__") or _name in globals():
        continue
    globals()[_name] = getattr(__signal__, _name)
    __imports__.append(_name)
del _name

__all__ = __implements__ + __extensions__ + [n for n in __imports__ if not n.startswith("_")]
