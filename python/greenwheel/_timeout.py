"""Timeouts: raise an exception in a greenlet once a deadline passes.

A :class:`Timeout` arms a loop timer whose callback throws into the greenlet
that started it.  Like every greenwheel blocking mechanism it only takes
effect when that greenlet yields to the hub; pure computation is not
interrupted.

A block that takes too long raises the :class:`Timeout` itself::

    >>> from greenwheel import Timeout, sleep
    >>> try:
    ...     with Timeout(0.01):
    ...         sleep(5)
    ... except Timeout as expired:
    ...     print("gave up after", expired)
    gave up after 0.01 seconds

Given ``False`` as its exception, the timeout just ends the block::

    >>> with Timeout(0.01, False):
    ...     sleep(5)
    ...     print("not reached")

:func:`with_timeout` limits one call, with an optional value to return
instead of raising::

    >>> with_timeout(0.01, sleep, 5, timeout_value="too slow")
    'too slow'
"""

from __future__ import annotations

from . import _core
from ._typecheck import TYPE_CHECKING, ParamSpec, TypeVar, overload

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_T = TypeVar("_T")
_V = TypeVar("_V")
_P = ParamSpec("_P")

__all__ = ["Timeout", "with_timeout"]


# Timeout lives in Rust (greenwheel._core.Timeout, shown as
# greenwheel.timeout.Timeout): start and cancel go straight into the timer
# wheel, which is what every blocking call with a timeout pays for.
Timeout = _core.Timeout

# A shared Timeout that never fires: what internal ``timeout=None`` paths
# cancel and close without allocating anything.
_NEVER = Timeout._start_new_or_dummy(None)


_NOT_GIVEN = object()


def _under(timer: Timeout, call: Callable[..., _T], *args: Any) -> _T:
    """Run ``call(*args, None)`` under the Timeout object *timer*.

    gevent accepts a :class:`Timeout` wherever a blocking call takes
    ``timeout=``: the object is started (unless already pending), its own
    seconds apply, and it is cancelled when the call ends; when it expires
    it raises in the waiting greenlet like any Timeout (its own exception,
    if it was made with one). ``call``'s last argument is its timeout.
    """
    if not timer.pending:
        timer.start()
    try:
        return call(*args, None)
    finally:
        timer.cancel()


def _wait_under(timer: Timeout, wait: Callable[..., _T], *args: Any) -> _T | bool:
    """:func:`_under` for a wait that reports a time-out by returning False.

    When *timer* itself expires the wait returns False, as it would for
    seconds; a ``get`` then raises that very object (see :func:`_expired`).
    """
    try:
        return _under(timer, wait, *args)
    except Timeout as ex:
        if ex is not timer:
            raise
        return False


def _expired(timeout: float | Timeout | None) -> Timeout:
    """What a ``get`` that timed out raises: the Timeout object it was given, else a new one."""
    return timeout if isinstance(timeout, Timeout) else Timeout(timeout)


@overload
def with_timeout(
    seconds: float | None,
    function: Callable[..., _T],
    *args: Any,
    timeout_value: _V,
    **kwargs: Any,
) -> _T | _V: ...
@overload
def with_timeout(
    seconds: float | None, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
) -> _T: ...
def with_timeout(seconds: Any, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function(*args, **kwargs)`` with a *seconds* time limit.

    If the limit passes, return the ``timeout_value`` keyword argument (not
    passed on to *function*) when given, else raise :class:`Timeout`.
    """
    timeout_value = kwargs.pop("timeout_value", _NOT_GIVEN)
    timeout = Timeout.start_new(seconds, _one_shot=True)
    try:
        return function(*args, **kwargs)
    except Timeout as ex:
        if ex is timeout and timeout_value is not _NOT_GIVEN:
            return timeout_value
        raise
    finally:
        timeout.cancel()
