"""Event and AsyncResult: wake every waiting greenlet at once.

Both are :class:`~greenwheel._abstract_linkable.AbstractLinkable`: waiting
greenlets are parked on the object's links and woken from the hub, in the
order they started waiting, some time after :meth:`Event.set` (which itself
never switches).  ``set`` may be called from any OS thread; the wake-up then
travels to the owner hub through its async watcher.
"""

from __future__ import annotations

from types import GenericAlias

from greenlet import getcurrent

from ._abstract_linkable import AbstractLinkable, _discard, _thread_count
from ._hub import _state
from ._timeout import Timeout, _expired
from ._typecheck import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, NoReturn

__all__ = ["Event", "AsyncResult"]

_NONE: Any = object()

_T = TypeVar("_T")


class Event(AbstractLinkable):
    """A flag greenlets can wait for; the greenlet counterpart of :class:`threading.Event`.

    :meth:`set` makes the flag true and wakes every waiting greenlet;
    :meth:`clear` makes it false again.  A greenlet woken by :meth:`set` only
    knows the flag was true *at some point* while it waited (it may have been
    cleared since): :meth:`wait` then still returns True.
    """

    __slots__ = ("_flag",)

    _flag: bool

    def __init__(self) -> None:
        AbstractLinkable.__init__(self)
        self._flag = False

    def __str__(self) -> str:
        return "<{}.{} at 0x{:x} {} _links[{}]>".format(
            type(self).__module__,
            type(self).__name__,
            id(self),
            "set" if self._flag else "clear",
            self.linkcount(),
        )

    def _single_link(self) -> Any:
        # AbstractLinkable._single_link without the ready() check.
        links = self._links
        if len(links) == 1 and not self._raw:
            self._notifying = False
            return links.popleft()
        return None

    def is_set(self) -> bool:
        """Return True if and only if the flag is set."""
        return self._flag

    def isSet(self) -> bool:
        """Alias of :meth:`is_set` (threading's old name)."""
        return self._flag

    def ready(self) -> bool:
        """Alias of :meth:`is_set`, so events work with :func:`greenwheel.wait`."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every waiting greenlet (later, from the hub).

        Safe to call from any OS thread.
        """
        self._flag = True
        # _notify_anywhere(), inlined.
        if self._links and not self._notifying:
            sched = self._sched
            if sched is None or self._raw:
                # Thread waiters or rawlinks among the links.
                self._notify_anywhere()
            else:
                self._notifying = True
                if not sched.make_ready(self):
                    sched.make_ready_from_thread(self)

    def clear(self) -> None:
        """Reset the flag; :meth:`wait` blocks again until the next :meth:`set`."""
        self._flag = False

    def wait(self, timeout: float | Timeout | None = None) -> bool:
        """Block until the flag is set, or *timeout* seconds pass.

        Returns True if the flag was set before or during the wait, False if
        the timeout expired first.
        """
        if self._flag:
            if self._notifying:
                return self._wait_late()
            return True
        current = getcurrent()
        hub = self.hub
        if (
            hub is None
            or (current.parent is not hub and hub.parent is not current)
            or timeout is not None
            or _thread_count()
        ):
            # Not a greenlet of the owner hub's thread (a child of the hub, or
            # the thread's main greenlet), a timeout, or other threads that
            # might be what we wait for: the general path.
            return self._wait_slow(timeout)
        # The hot path: a greenlet of the owner's thread parks until set()
        # (this is _block() and _park() inlined).
        switch = current.switch
        links = self._links
        links.append(switch)
        if self._flag:
            # Set by another thread just now.
            links.remove(switch)
            return True
        try:
            result = self._sched.park(hub)
        except:
            _discard(links, switch)
            raise
        if result is self:
            return True
        return self._not_notified(links, switch, result)

    def _wait_slow(self, timeout: float | Timeout | None) -> bool:
        hub = self.hub
        if hub is None or hub is not _state.hub:
            if not self._capture():
                return self._wait_from_thread(timeout)
        if self._flag:
            return True
        return self._block(timeout)

    def _wait_late(self) -> bool:
        # The flag is set but the waiters are not woken yet: queue up behind
        # them (gevent issue 1520), if we may park here at all.
        hub = self.hub
        if hub is None or hub is not _state.hub:
            if not self._capture() or not self._notifying:
                # Another thread's event, or the pending notification died
                # with its hub: the flag is set, done.
                return True
        return self._block(None, True)

    def _wait_from_thread(self, timeout: Any) -> bool:
        if self._flag:
            return True
        return self._wait_foreign(timeout) is not None or self._flag

    def _reset_internal_locks(self) -> None:
        # threading.Event compatibility (called after fork).
        pass


class AsyncResult(AbstractLinkable, Generic[_T]):
    """A one-shot value (or exception) greenlets can wait for.

    :meth:`set` or :meth:`set_exception` stores the outcome and wakes every
    waiter; :meth:`get` returns the value (or raises the exception), blocking
    until there is one.  Usable as a link target:
    ``greenlet.link(result)`` copies the greenlet's outcome into it.
    """

    __slots__ = ("_value", "_exc_info")

    if not TYPE_CHECKING:
        # AsyncResult[int] at run time, as list[int] (see _typecheck).
        __class_getitem__ = classmethod(GenericAlias)

    _value: _T
    _exc_info: tuple[Any, ...]

    def __init__(self) -> None:
        AbstractLinkable.__init__(self)
        self._value = _NONE
        self._exc_info = ()

    def __str__(self) -> str:
        result = f"<{type(self).__name__} "
        if self._value is not _NONE:
            result += f"value={self._value!r} "
        if self._exc_info:
            result += f"exception={self._exc_info[1]!r} "
        if not self.ready():
            result += "unset "
        return result + f" _links[{self.linkcount()}]>"

    # -- state ----------------------------------------------------------------

    def ready(self) -> bool:
        """True once a value or an exception has been stored."""
        return self._value is not _NONE or bool(self._exc_info)

    def successful(self) -> bool:
        """True once a value (not an exception) has been stored."""
        return self._value is not _NONE

    @property
    def value(self) -> _T | None:
        """The value given to :meth:`set`, or None."""
        value = self._value
        return None if value is _NONE else value

    @property
    def exception(self) -> BaseException | None:
        """The exception given to :meth:`set_exception`, or None."""
        exc_info = self._exc_info
        return exc_info[1] if exc_info else None

    @property
    def exc_info(
        self,
    ) -> tuple[type[BaseException], BaseException, TracebackType | None] | tuple[()]:
        """``(type, value, traceback)`` of the stored exception, or ``()``."""
        return self._exc_info

    # -- setting --------------------------------------------------------------

    def set(self, value: _T = None) -> None:  # type: ignore[assignment]
        """Store *value* and wake every waiter.  Safe to call from any OS thread."""
        self._value = value
        self._notify_anywhere()

    def set_exception(
        self,
        exception: BaseException,
        exc_info: tuple[Any, Any, Any] | None = None,
    ) -> None:
        """Store *exception* (raised by :meth:`get`) and wake every waiter.

        *exc_info*, a ``sys.exc_info()`` triple, supplies the traceback to
        re-raise with.  Safe to call from any OS thread.
        """
        if exc_info:
            self._exc_info = (exc_info[0], exc_info[1], exc_info[2])
        else:
            self._exc_info = (type(exception), exception, None)
        self._notify_anywhere()

    # -- getting --------------------------------------------------------------

    def _raise_exception(self) -> NoReturn:
        _, value, tb = self._exc_info
        if value is None:
            value = self._exc_info[0]()
        # Always from the traceback captured when it was set (None: none), so
        # that getting it again does not keep extending the previous raise's.
        raise value.with_traceback(tb)

    def get(self, block: bool = True, timeout: float | Timeout | None = None) -> _T:
        """Return the stored value or raise the stored exception.

        Blocks until there is one, unless *block* is false.  Raises
        :class:`~greenwheel.Timeout` if *block* is false and nothing is stored
        yet, or when *timeout* seconds pass first.
        """
        value = self._value
        if value is not _NONE:
            return value
        if self._exc_info:
            self._raise_exception()
        if not block:
            raise Timeout()
        hub = self.hub
        if hub is None or hub is not _state.hub:
            if not self._capture():
                if self._wait_foreign(timeout) is None and not self.ready():
                    raise _expired(timeout)
                return self.get(block=False)
        if not self.ready():
            if not self._block(timeout):
                raise _expired(timeout)
        return self.get(block=False)

    def get_nowait(self) -> _T:
        """Like ``get(block=False)``: raise :class:`~greenwheel.Timeout` unless ready."""
        return self.get(block=False)

    def wait(self, timeout: float | Timeout | None = None) -> _T | None:
        """Block until ready or *timeout* passes; return the value (None on an
        exception or a timeout, which is not raised)."""
        hub = self.hub
        if hub is None or hub is not _state.hub:
            if not self._capture():
                if not self.ready():
                    self._wait_foreign(timeout)
                return self.value
        if self.ready():
            if self._notifying:
                self._block(None, True)
            return self.value
        self._block(timeout)
        return self.value

    # -- link protocol and concurrent.futures.Future look-alikes ---------------

    def __call__(self, source: Any) -> None:
        if source.successful():
            self.set(source.value)
        else:
            self.set_exception(source.exception, getattr(source, "exc_info", None))

    def result(self, timeout: float | Timeout | None = None) -> _T:
        return self.get(timeout=timeout)

    set_result = set

    def done(self) -> bool:
        return self.ready()

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False
